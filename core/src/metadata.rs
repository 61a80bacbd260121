//! Cluster metadata: the nodes, the topics, their partitions and per-topic configuration.
//!
//! [`ClusterMetadata`] is the state the metadata log's records ([`MetadataRecord`]) build,
//! applied by [`crate::controller`]; the broker hands it to storage
//! (`StorageCommand::PersistMetadata`) whenever it changes, before anything that depends on
//! the change.
//!
//! Invariants:
//! - applying a record that restates the view (an `InitCluster`, `RegisterNode` or
//!   `CreateTopic` the view already holds, as a snapshot in the metadata log writes them)
//!   changes nothing and is accepted ([`Applied::Restated`]); a record that contradicts the
//!   view (another cluster id, a topic name or id taken by another topic) is still refused;
//! - topic names are unique and valid Kafka names; a topic id is non-zero and never reused
//!   for another topic (it is drawn from the caller's seeded RNG and checked for collisions);
//! - a topic's partition count only grows (`CreatePartitions` restates the existing
//!   partitions' replicas unchanged, or is refused); its config changes only whole
//!   (`AlterTopicConfig`), so every node holds the same one;
//! - `next_producer_id <= producer_id_block_end`, and the persisted block end is never handed
//!   out again after a restart, so producer ids are unique across restarts.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Identifies one partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A node of the cluster as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// Per-topic settings, with Kafka's names at the wire edge (`retention.ms` and so on).
/// Every key, its parsing and its bounds live here ([`TopicConfig::set`]); the controller
/// validates CreateTopics configs and config changes with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Delete whole segments whose newest record is older than this; -1 keeps forever.
    pub retention_ms: i64,
    /// Delete the oldest segments while the partition is larger than this; -1: no limit.
    pub retention_bytes: i64,
    /// A segment rolls when the next batch would take it past this size.
    pub segment_bytes: u32,
    /// Largest batch accepted, in bytes.
    pub max_message_bytes: u32,
    /// An acks=all produce needs at least this many in-sync replicas (the leader's view).
    /// Left out of the encoding at its default, so records of topics that never set it
    /// read as before.
    #[serde(
        default = "min_insync_replicas_default",
        skip_serializing_if = "is_min_insync_replicas_default"
    )]
    pub min_insync_replicas: i32,
    /// The codec produced batches are stored in.
    #[serde(default, skip_serializing_if = "CompressionType::is_producer")]
    pub compression_type: CompressionType,
    /// The keys a config change (AlterConfigs) set on the topic. Keys given at creation
    /// are not listed (so that a topic's record reads as before this existed): they are
    /// told from the defaults by their value ([`TopicConfig::entries`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub overrides: BTreeSet<String>,
}

fn min_insync_replicas_default() -> i32 {
    1
}

fn is_min_insync_replicas_default(value: &i32) -> bool {
    *value == min_insync_replicas_default()
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            max_message_bytes: 1_048_588,
            min_insync_replicas: min_insync_replicas_default(),
            compression_type: CompressionType::Producer,
            overrides: BTreeSet::new(),
        }
    }
}

/// A topic's `compression.type`: the codec the broker stores produced batches in
/// (`Producer`: as the producer sent them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompressionType {
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    const NAMES: [(&'static str, CompressionType); 6] = [
        ("producer", CompressionType::Producer),
        ("uncompressed", CompressionType::Uncompressed),
        ("gzip", CompressionType::Gzip),
        ("snappy", CompressionType::Snappy),
        ("lz4", CompressionType::Lz4),
        ("zstd", CompressionType::Zstd),
    ];

    pub fn is_producer(&self) -> bool {
        *self == CompressionType::Producer
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, codec)| *codec == self)
            .map_or("producer", |(name, _)| name)
    }

    fn parse(value: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, codec)| *codec)
    }

    /// The record-batch attribute codec (bits 0-2) batches are stored with, if the topic
    /// imposes one.
    pub fn batch_codec(self) -> Option<u8> {
        match self {
            CompressionType::Producer => None,
            CompressionType::Uncompressed => Some(0),
            CompressionType::Gzip => Some(1),
            CompressionType::Snappy => Some(2),
            CompressionType::Lz4 => Some(3),
            CompressionType::Zstd => Some(4),
        }
    }
}

/// The configuration keys a topic accepts, in Kafka's spelling.
pub const TOPIC_CONFIG_KEYS: [&str; 7] = [
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "max.message.bytes",
    "cleanup.policy",
    "min.insync.replicas",
    "compression.type",
];

/// Smallest segment size accepted, so that a segment always holds at least a header.
pub const SEGMENT_BYTES_MIN: u32 = 1024;
/// The largest `max.message.bytes`: one batch must fit in one replication message (a
/// leader sends at least one whole batch per append); the node's peer frames are sized for
/// it (a compile-time check next to `node::peer::FRAME_BYTES_MAX_DEFAULT`).
pub const MESSAGE_BYTES_MAX: u32 = 32 << 20;

/// One change of an IncrementalAlterConfigs (Kafka's `AlterConfigOp.OpType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set(String),
    /// Back to the node's default.
    Delete,
    /// Add to a list-valued key (`cleanup.policy`).
    Append(String),
    /// Remove from a list-valued key.
    Subtract(String),
}

/// A change of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub key: String,
    pub op: ConfigOp,
}

/// Why a config change is refused: Kafka's INVALID_REQUEST (`invalid_request`, the request
/// itself is malformed: a key named twice) or INVALID_CONFIG (a key or value the topic does
/// not take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub invalid_request: bool,
    pub message: String,
}

impl ConfigError {
    fn invalid_config(message: String) -> Self {
        Self {
            invalid_request: false,
            message,
        }
    }
}

/// The keys whose values are lists (Kafka's `ConfigDef.Type.LIST`): the only ones APPEND
/// and SUBTRACT apply to.
const LIST_KEYS: [&str; 1] = ["cleanup.policy"];

impl TopicConfig {
    /// Applies one `key=value` override, as CreateTopics and AlterConfigs send them.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let parse_i64 = |value: &str| {
            value
                .parse::<i64>()
                .map_err(|_| format!("{key}: '{value}' is not an integer"))
        };
        match key {
            // As Kafka: -1 keeps forever, anything below is refused (retention.bytes has
            // no lower bound there: any negative value means no limit).
            "retention.ms" => {
                let ms = parse_i64(value)?;
                if ms < -1 {
                    return Err(format!(
                        "Invalid value {value} for configuration retention.ms: Value must be at least -1"
                    ));
                }
                self.retention_ms = ms;
            }
            "retention.bytes" => self.retention_bytes = parse_i64(value)?,
            "segment.bytes" => {
                let bytes = parse_i64(value)?;
                if bytes < i64::from(SEGMENT_BYTES_MIN) || bytes > i64::from(i32::MAX) {
                    return Err(format!(
                        "segment.bytes must be between {SEGMENT_BYTES_MIN} and {}",
                        i32::MAX
                    ));
                }
                self.segment_bytes = bytes as u32;
            }
            "max.message.bytes" => {
                let bytes = parse_i64(value)?;
                if bytes < 0 || bytes > i64::from(MESSAGE_BYTES_MAX) {
                    return Err(format!(
                        "max.message.bytes must be between 0 and {MESSAGE_BYTES_MAX} (a batch must fit in one replication message)"
                    ));
                }
                self.max_message_bytes = bytes as u32;
            }
            "cleanup.policy" => {
                if value != "delete" {
                    return Err("cleanup.policy: only 'delete' is supported".into());
                }
            }
            // Kafka accepts any value >= 1, above the replication factor too (then no
            // acks=all produce succeeds).
            "min.insync.replicas" => {
                let replicas = parse_i64(value)?;
                if !(1..=i64::from(i32::MAX)).contains(&replicas) {
                    return Err(format!(
                        "Invalid value {value} for configuration min.insync.replicas: Value must be at least 1"
                    ));
                }
                self.min_insync_replicas = replicas as i32;
            }
            "compression.type" => {
                self.compression_type = CompressionType::parse(value).ok_or_else(|| {
                    format!(
                        "Invalid value {value} for configuration compression.type: String must be one of: {}",
                        CompressionType::NAMES.map(|(name, _)| name).join(", ")
                    )
                })?;
            }
            _ => return Err(format!("unknown topic config '{key}'")),
        }
        Ok(())
    }

    /// Takes `key` back to its value in `defaults` (the node's topic defaults).
    pub fn reset(&mut self, key: &str, defaults: &TopicConfig) -> Result<(), String> {
        match key {
            "retention.ms" => self.retention_ms = defaults.retention_ms,
            "retention.bytes" => self.retention_bytes = defaults.retention_bytes,
            "segment.bytes" => self.segment_bytes = defaults.segment_bytes,
            "max.message.bytes" => self.max_message_bytes = defaults.max_message_bytes,
            "cleanup.policy" => {}
            "min.insync.replicas" => self.min_insync_replicas = defaults.min_insync_replicas,
            "compression.type" => self.compression_type = defaults.compression_type,
            _ => return Err(format!("unknown topic config '{key}'")),
        }
        self.overrides.remove(key);
        Ok(())
    }

    /// The current value of `key`.
    fn value(&self, key: &str) -> Option<String> {
        TOPIC_CONFIG_KEYS
            .into_iter()
            .zip(self.values())
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// The value of every key, in the order of [`TOPIC_CONFIG_KEYS`].
    fn values(&self) -> [String; TOPIC_CONFIG_KEYS.len()] {
        [
            self.retention_ms.to_string(),
            self.retention_bytes.to_string(),
            self.segment_bytes.to_string(),
            self.max_message_bytes.to_string(),
            "delete".to_string(),
            self.min_insync_replicas.to_string(),
            self.compression_type.name().to_string(),
        ]
    }

    /// This config changed as an AlterConfigs asks: `replace` (the legacy AlterConfigs)
    /// starts from `defaults`, so keys not named go back to them; otherwise
    /// (IncrementalAlterConfigs) from this config. A key named twice is an invalid
    /// request, as in Kafka; APPEND and SUBTRACT apply to list keys only.
    pub fn changed(
        &self,
        changes: &[ConfigChange],
        replace: bool,
        defaults: &TopicConfig,
    ) -> Result<TopicConfig, ConfigError> {
        let mut seen = BTreeSet::new();
        if let Some(twice) = changes.iter().find(|change| !seen.insert(&change.key)) {
            return Err(ConfigError {
                invalid_request: true,
                message: format!("Error due to duplicate config keys: {}", twice.key),
            });
        }
        let mut config = if replace {
            defaults.clone()
        } else {
            self.clone()
        };
        if replace {
            config.overrides.clear();
        }
        for ConfigChange { key, op } in changes {
            if !matches!(op, ConfigOp::Delete) {
                config.overrides.insert(key.clone());
            }
            let result = match op {
                ConfigOp::Set(value) => config.set(key, value),
                // As Kafka's controller: deleting a key the topic cannot have leaves it
                // unset, a change of nothing, and succeeds.
                ConfigOp::Delete if !TOPIC_CONFIG_KEYS.contains(&key.as_str()) => Ok(()),
                ConfigOp::Delete => config.reset(key, defaults),
                ConfigOp::Append(items) | ConfigOp::Subtract(items) => {
                    if !TOPIC_CONFIG_KEYS.contains(&key.as_str()) {
                        Err(format!("unknown topic config '{key}'"))
                    } else if !LIST_KEYS.contains(&key.as_str()) {
                        let verb = if matches!(op, ConfigOp::Append(_)) {
                            "APPEND"
                        } else {
                            "SUBTRACT"
                        };
                        Err(format!(
                            "Can't {verb} to key {key} because its type is not LIST."
                        ))
                    } else {
                        let mut list: Vec<String> = config
                            .value(key)
                            .unwrap_or_default()
                            .split(',')
                            .filter(|item| !item.is_empty())
                            .map(str::to_string)
                            .collect();
                        for item in items.split(',').filter(|item| !item.is_empty()) {
                            if matches!(op, ConfigOp::Append(_)) {
                                if !list.iter().any(|known| known == item) {
                                    list.push(item.to_string());
                                }
                            } else {
                                list.retain(|known| known != item);
                            }
                        }
                        config.set(key, &list.join(","))
                    }
                }
            };
            result.map_err(ConfigError::invalid_config)?;
        }
        Ok(config)
    }

    /// Every supported key with its value and whether it is set on the topic (a config
    /// change set it, or its value differs from `defaults`, the node's) rather than a
    /// default, for DescribeConfigs and CreateTopics' answer.
    pub fn entries(&self, defaults: &TopicConfig) -> Vec<(&'static str, String, bool)> {
        TOPIC_CONFIG_KEYS
            .into_iter()
            .zip(self.values())
            .zip(defaults.values())
            .map(|((key, value), default)| {
                let set = self.overrides.contains(key) || value != default;
                (key, value, set)
            })
            .collect()
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    /// Kafka's topic UUID, as 128 bits; never zero.
    pub topic_id: u128,
    pub partition_count: i32,
    pub config: TopicConfig,
    /// The replicas of each partition, preferred leader first. Empty on a single node that
    /// predates replication: every partition is then on this node alone.
    #[serde(default)]
    pub assignments: Vec<Vec<i32>>,
}

impl TopicMetadata {
    /// The replicas of one partition.
    pub fn replicas(&self, partition: i32, this_node: i32) -> Vec<i32> {
        usize::try_from(partition)
            .ok()
            .and_then(|index| self.assignments.get(index))
            .cloned()
            .unwrap_or_else(|| vec![this_node])
    }
}

/// A change to the cluster metadata: the records of the replicated metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The first record of a cluster's metadata log: the cluster's id.
    InitCluster {
        cluster_id: String,
    },
    /// A node announces where clients reach it.
    RegisterNode(NodeInfo),
    CreateTopic(TopicMetadata),
    DeleteTopic {
        name: String,
    },
    /// A topic's whole configuration after an AlterConfigs.
    AlterTopicConfig {
        name: String,
        config: TopicConfig,
    },
    /// A topic grew to `assignments.len()` partitions; `assignments` lists every
    /// partition's replicas, the existing ones unchanged.
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
    },
    /// A snapshot of the committed view begins: the records up to the next `SnapshotEnd`
    /// restate it whole (see `controller`, "Snapshots").
    SnapshotStart,
    /// The snapshot begun by the last `SnapshotStart` is complete.
    SnapshotEnd,
}

/// What applying a record did to the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The view changed.
    Changed,
    /// The record restates what the view holds (or marks a snapshot): nothing changed.
    Restated,
}

/// Spreads `partition_count` partitions of `replication_factor` replicas over `nodes`,
/// round robin from `start`, so that preferred leaders (first replicas) spread evenly.
pub fn assign_replicas(
    nodes: &[i32],
    partition_count: i32,
    replication_factor: i16,
    start: usize,
) -> Vec<Vec<i32>> {
    let count = nodes.len();
    (0..partition_count.max(0) as usize)
        .map(|partition| {
            (0..replication_factor.max(0) as usize)
                .map(|replica| nodes[(start + partition + replica) % count])
                .collect()
        })
        .collect()
}

/// Everything the cluster knows about itself, persisted as one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    pub nodes: Vec<NodeInfo>,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// This node's own producer-id counter (not replicated: each node hands out ids in its
    /// own range): ids below this may have been handed out; the next block starts here.
    pub producer_id_block_end: i64,
    /// Metadata-log offsets below this are applied to this snapshot.
    #[serde(default)]
    pub applied_end_offset: i64,
}

impl ClusterMetadata {
    pub fn new(cluster_id: impl Into<String>, nodes: Vec<NodeInfo>) -> Self {
        Self {
            cluster_id: cluster_id.into(),
            nodes,
            topics: BTreeMap::new(),
            producer_id_block_end: 0,
            applied_end_offset: 0,
        }
    }

    /// Whether the partition exists: its topic is known and has that many partitions.
    pub fn contains_partition(&self, partition: &TopicPartition) -> bool {
        self.topics
            .get(&partition.topic)
            .is_some_and(|topic| (0..topic.partition_count).contains(&partition.partition))
    }

    pub fn topic_by_id(&self, topic_id: u128) -> Option<&TopicMetadata> {
        self.topics
            .values()
            .find(|topic| topic.topic_id == topic_id)
    }

    /// Applies one committed metadata record. A record that no longer applies (a topic
    /// created twice, deleted twice) is refused with the reason and changes nothing: every
    /// replica refuses the same records, so they all stay equal. A record that restates the
    /// view (a snapshot's) is accepted and changes nothing.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<Applied, String> {
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if self.cluster_id == *cluster_id {
                    return Ok(Applied::Restated);
                }
                if !self.cluster_id.is_empty() {
                    return Err(format!("the cluster already has id {}", self.cluster_id));
                }
                self.cluster_id = cluster_id.clone();
                Ok(Applied::Changed)
            }
            MetadataRecord::RegisterNode(node) => {
                match self
                    .nodes
                    .iter_mut()
                    .find(|known| known.node_id == node.node_id)
                {
                    Some(known) if known == node => return Ok(Applied::Restated),
                    Some(known) => *known = node.clone(),
                    None => {
                        self.nodes.push(node.clone());
                        self.nodes.sort_by_key(|known| known.node_id);
                    }
                }
                Ok(Applied::Changed)
            }
            MetadataRecord::CreateTopic(topic) => {
                if let Some(existing) = self.topics.get(&topic.name) {
                    if existing == topic {
                        return Ok(Applied::Restated);
                    }
                    return Err(format!("topic '{}' already exists", topic.name));
                }
                if self.topic_by_id(topic.topic_id).is_some() || topic.topic_id == 0 {
                    return Err(format!("topic id of '{}' is zero or taken", topic.name));
                }
                self.topics.insert(topic.name.clone(), topic.clone());
                Ok(Applied::Changed)
            }
            MetadataRecord::DeleteTopic { name } => self
                .topics
                .remove(name)
                .map(|_| Applied::Changed)
                .ok_or_else(|| format!("topic '{name}' does not exist")),
            MetadataRecord::AlterTopicConfig { name, config } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| format!("topic '{name}' does not exist"))?;
                if topic.config == *config {
                    return Ok(Applied::Restated);
                }
                topic.config = config.clone();
                Ok(Applied::Changed)
            }
            MetadataRecord::CreatePartitions { name, assignments } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| format!("topic '{name}' does not exist"))?;
                if topic.assignments == *assignments {
                    return Ok(Applied::Restated);
                }
                let kept = usize::try_from(topic.partition_count).unwrap_or(0);
                let grows = assignments.len() > kept
                    && (topic.assignments.is_empty()
                        || assignments.get(..kept) == Some(&topic.assignments[..]));
                let count = i32::try_from(assignments.len()).ok().filter(|_| grows);
                let Some(count) = count else {
                    return Err(format!(
                        "topic '{name}' cannot go from {} to {} partitions",
                        topic.partition_count,
                        assignments.len()
                    ));
                };
                topic.partition_count = count;
                topic.assignments = assignments.clone();
                Ok(Applied::Changed)
            }
            MetadataRecord::SnapshotStart | MetadataRecord::SnapshotEnd => Ok(Applied::Restated),
        }
    }

    /// The records of a snapshot of the replicated view, markers included: applied to an
    /// empty view they build this one (the node's own producer-id counter and applied end
    /// are not replicated, so not restated).
    pub fn snapshot_records(&self) -> Vec<MetadataRecord> {
        let mut records = vec![MetadataRecord::SnapshotStart];
        if !self.cluster_id.is_empty() {
            records.push(MetadataRecord::InitCluster {
                cluster_id: self.cluster_id.clone(),
            });
        }
        records.extend(self.nodes.iter().cloned().map(MetadataRecord::RegisterNode));
        records.extend(
            self.topics
                .values()
                .cloned()
                .map(MetadataRecord::CreateTopic),
        );
        records.push(MetadataRecord::SnapshotEnd);
        records
    }

    /// Whether the replicated parts of two views (cluster id, nodes, topics) are equal.
    pub fn same_replicated_view(&self, other: &ClusterMetadata) -> bool {
        self.cluster_id == other.cluster_id
            && self.nodes == other.nodes
            && self.topics == other.topics
    }

    /// Takes the replicated parts of `other` (a snapshot's view); returns the topics that
    /// differ between the two (created, deleted or changed).
    pub fn replace_replicated_view(&mut self, other: ClusterMetadata) -> BTreeSet<String> {
        let changed = self
            .topics
            .iter()
            .filter(|(name, topic)| other.topics.get(*name) != Some(*topic))
            .chain(
                other
                    .topics
                    .iter()
                    .filter(|(name, topic)| self.topics.get(*name) != Some(*topic)),
            )
            .map(|(name, _)| name.clone())
            .collect();
        self.cluster_id = other.cluster_id;
        self.nodes = other.nodes;
        self.topics = other.topics;
        changed
    }
}

/// Kafka's rule for topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rule() {
        assert!(is_valid_topic_name("orders.v1_a-b"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name(".."));
        assert!(!is_valid_topic_name("a/b"));
        assert!(!is_valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn replicas_spread_round_robin_with_leaders_spread() {
        let assignments = assign_replicas(&[1, 2, 3], 6, 3, 0);
        let leaders: Vec<i32> = assignments.iter().map(|replicas| replicas[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert!(assignments.iter().all(|replicas| {
            let mut unique = replicas.clone();
            unique.sort_unstable();
            unique.dedup();
            unique.len() == 3
        }));
        assert_eq!(
            assign_replicas(&[1, 2, 3, 4, 5], 2, 3, 4),
            vec![vec![5, 1, 2], vec![1, 2, 3]]
        );
    }

    #[test]
    fn metadata_records_apply_or_are_refused_without_change() {
        let mut metadata = ClusterMetadata::new("c", Vec::new());
        let topic = TopicMetadata {
            name: "t".into(),
            topic_id: 9,
            partition_count: 1,
            config: TopicConfig::default(),
            assignments: vec![vec![1]],
        };
        metadata
            .apply(&MetadataRecord::CreateTopic(topic.clone()))
            .unwrap();
        let before = metadata.clone();
        let mut other = topic.clone();
        other.topic_id = 10;
        assert!(metadata.apply(&MetadataRecord::CreateTopic(other)).is_err());
        let mut same_id = topic;
        same_id.name = "u".into();
        assert!(metadata
            .apply(&MetadataRecord::CreateTopic(same_id))
            .is_err());
        assert!(metadata
            .apply(&MetadataRecord::InitCluster {
                cluster_id: "d".into()
            })
            .is_err());
        assert_eq!(metadata, before);
        metadata
            .apply(&MetadataRecord::RegisterNode(NodeInfo {
                node_id: 2,
                host: "h".into(),
                port: 1,
            }))
            .unwrap();
        assert_eq!(metadata.nodes.len(), 1);
        metadata
            .apply(&MetadataRecord::DeleteTopic { name: "t".into() })
            .unwrap();
        assert!(metadata
            .apply(&MetadataRecord::DeleteTopic { name: "t".into() })
            .is_err());
    }

    #[test]
    fn records_restating_the_view_are_no_ops_and_a_snapshot_rebuilds_it() {
        let mut metadata = ClusterMetadata::new("c", Vec::new());
        let node = NodeInfo {
            node_id: 2,
            host: "h".into(),
            port: 1,
        };
        let topic = TopicMetadata {
            name: "t".into(),
            topic_id: 9,
            partition_count: 2,
            config: TopicConfig::default(),
            assignments: vec![vec![2], vec![2]],
        };
        metadata.apply(&MetadataRecord::RegisterNode(node)).unwrap();
        metadata.apply(&MetadataRecord::CreateTopic(topic)).unwrap();
        metadata.producer_id_block_end = 5000;
        metadata.applied_end_offset = 7;
        let records = metadata.snapshot_records();
        assert_eq!(records.first(), Some(&MetadataRecord::SnapshotStart));
        assert_eq!(records.last(), Some(&MetadataRecord::SnapshotEnd));
        let before = metadata.clone();
        for record in &records {
            assert_eq!(metadata.apply(record), Ok(Applied::Restated), "{record:?}");
        }
        assert_eq!(metadata, before, "restating changes nothing");
        let mut rebuilt = ClusterMetadata::default();
        for record in &records {
            rebuilt.apply(record).unwrap();
        }
        assert!(rebuilt.same_replicated_view(&metadata));
        assert_ne!(
            rebuilt, metadata,
            "the node's own counters are not replicated"
        );
        let mut stale = ClusterMetadata::new("c", Vec::new());
        stale.producer_id_block_end = 3000;
        let changed = stale.replace_replicated_view(rebuilt);
        assert_eq!(changed, BTreeSet::from(["t".to_string()]));
        assert!(stale.same_replicated_view(&metadata));
        assert_eq!(stale.producer_id_block_end, 3000, "kept");
    }

    #[test]
    fn topic_config_overrides_parse_and_refuse_nonsense() {
        let mut config = TopicConfig::default();
        config.set("retention.ms", "1000").unwrap();
        config.set("segment.bytes", "4096").unwrap();
        assert_eq!(config.retention_ms, 1000);
        assert_eq!(config.segment_bytes, 4096);
        assert!(config.set("segment.bytes", "10").is_err());
        assert!(config.set("retention.ms", "soon").is_err());
        config.set("retention.ms", "-1").unwrap();
        assert!(
            config.set("retention.ms", "-2").is_err(),
            "Kafka's lower bound is -1"
        );
        assert_eq!(config.retention_ms, -1);
        assert!(config.set("cleanup.policy", "compact").is_err());
        assert!(config.set("no.such.key", "1").is_err());
        // A batch must fit in one replication message.
        config
            .set("max.message.bytes", &MESSAGE_BYTES_MAX.to_string())
            .unwrap();
        assert_eq!(config.max_message_bytes, MESSAGE_BYTES_MAX);
        assert!(config
            .set("max.message.bytes", &(MESSAGE_BYTES_MAX + 1).to_string())
            .is_err());
    }
}
