//! The controller: cluster metadata as a replicated log, as in KRaft. A state machine of its
//! own, driven by the broker (or by a test): it reads what it needs of its node through
//! [`ControllerNode`] and returns what the node must do as [`ControllerOutput`]s.
//!
//! The metadata log is the partition `__cluster_metadata-0`; its voters are every node of the
//! cluster, and its leader is the controller. Each batch holds JSON-encoded
//! [`MetadataRecord`]s (readable with any Kafka consumer tool that can reach the files). Only
//! the controller appends: CreateTopics (with or without a replica assignment), DeleteTopics,
//! CreatePartitions, config changes (AlterConfigs, IncrementalAlterConfigs) and node
//! registrations sent to another node are forwarded to it (`PeerMessage::Forward`), and its answer comes back
//! (`PeerMessage::Forwarded`) once the records are committed and applied.
//!
//! Every node applies committed records in log order to its [`ClusterMetadata`]
//! ([`Controller::apply_committed`]); the node persists the result as a snapshot (with the
//! offset it has applied up to), and only then opens or removes the partitions the change
//! gives it. At restart, the snapshot is the starting point and the records past it are
//! replayed as the log commits them again.
//!
//! ## Snapshots
//! The metadata log grows with every topic created or deleted and every registration, so
//! the controller, once quiescent (it leads the log and every batch in it is applied) and
//! `snapshot_interval_bytes` were appended since the last snapshot, writes the committed
//! view into the log: `SnapshotStart`, the view restated as ordinary records
//! (`InitCluster`, a `RegisterNode` per node, a `CreateTopic` per topic), `SnapshotEnd`, in
//! consecutive batches of one step ([`ClusterMetadata::snapshot_records`]). Every replica
//! applies them to its view, where they change nothing, and to a staged copy, which
//! replaces the view at `SnapshotEnd`. A snapshot whose start this replica never applied
//! (a partial one) is dropped. The bookkeeping is the coordinators'
//! (`internal_log::SnapshotState`). Each replica deletes the metadata segments wholly below
//! the last snapshot it applied (`Broker::apply_retention`, [`Controller::last_snapshot`]).
//! A follower whose whole log lies below its leader's log start restarts its log there
//! ([`Controller::restart_log`]): its view, persisted whole below its applied end, then
//! lacks what the trimmed segments held, so it takes no record until a complete snapshot
//! from the new log start replaces it; meanwhile it keeps serving its old view, a committed
//! state like any lagging replica's.
//!
//! Partition leadership is not in the log (elections are per partition): every node
//! announces the partitions it leads to every other node, at once on a change, every
//! second, and at once when it hears from a node it had not heard from lately (a node
//! starting or back from a partition learns the leaders within a round trip), so that any
//! node can name any partition's leader in a Metadata response.
//!
//! ## Knowing the cluster before serving its view
//! A node (re)starting knows nothing of its peers: it would answer Metadata with itself as
//! the only live broker and no leader for the partitions it does not lead, and a client
//! that bootstraps on that answer (librdkafka) drops the other brokers and keeps "no
//! leader" in its cache. Kafka brokers serve clients only once caught up with the cluster
//! metadata; here, a node of a cluster of several *knows the cluster*
//! ([`Controller::knows_cluster`]) once, since it started:
//! - it holds the committed metadata: its replica of the metadata log leads it, or follows a
//!   leader and has reached the high watermark that leader reported
//!   ([`ControllerNode::metadata_caught_up`]), and its view is whole;
//! - it has heard the announcements of a majority of the voters (itself counted), so the
//!   brokers it lists are the live ones a quorum sees; and
//! - it knows a live leader for every partition of the view (from its own replicas or the
//!   announcements): the leaders it names are the cluster's.
//!
//! Waiting for every peer instead would hold every restart for the whole timeout while one
//! node is down; waiting only for leaders would let a node that hosts every partition
//! answer before it heard any announcement. Until then the broker holds the requests whose
//! answer is this view (Metadata, DescribeConfigs, FindCoordinator), bounded in time: at
//! `election_timeout_max_ms + ANNOUNCE_INTERVAL_MS` after the start (by then a partition
//! that lost its leader with this node has elected and announced another) the node knows
//! what it can, and answers with it, so a node whose peers are all down still serves. A
//! cluster of one knows itself from the start. The wait is at start only: once known,
//! never held again (later faults are what liveness filtering is for).
//!
//! ## Driving it
//! - Every batch appended to the metadata log and every truncation of it:
//!   [`Controller::on_appended`], [`Controller::on_truncated`]; after every step, what is
//!   committed: [`Controller::apply_committed`], then [`Controller::release_admin`].
//! - Admin requests: [`Controller::admin_request`]; forwarded ones and their answers:
//!   [`Controller::on_forward`], [`Controller::on_forwarded`]; an operation nobody waits
//!   for (auto-creation): [`Controller::submit_unanswered`]; Metadata and DescribeConfigs:
//!   [`Controller::metadata_request`], [`describe_configs`].
//! - Peers: [`Controller::heard_from`] on every message, [`Controller::learn_leaders`] on an
//!   announcement; this node's replica became a leader: [`Controller::announce_soon`].
//! - After every step until it knows the cluster: [`Controller::check_knows_cluster`].
//! - Timers: [`Controller::tick`] by [`Controller::next_wakeup_ms`].
//! - Outputs are executed in order; an `Append`'s result is reported with
//!   [`Controller::appended`] before the next output.
//!
//! Invariants:
//! - a record is applied only once committed (below the metadata log's high watermark), in
//!   offset order, once: the snapshot's `applied_end_offset` says where replay resumes;
//! - the snapshot is persisted before the partitions a change opens or removes (the node's
//!   part: `Broker::apply_committed_metadata`);
//! - the controller validates a change against the applied metadata and the records still
//!   pending in its log, so two records never create the same topic or topic id, and a
//!   growth or config change is checked against the state the pending ones leave: a topic
//!   never shrinks (INVALID_PARTITIONS), existing partitions keep their replicas, new ones
//!   get `replication factor` distinct known nodes (INVALID_REPLICA_ASSIGNMENT otherwise),
//!   and a config holds only valid values (`TopicConfig::changed`);
//! - a client is told a change succeeded only once it is committed and applied here;
//! - a snapshot is written only when quiescent, so it restates exactly the view every
//!   replica holds at its offset: a replica whose view is whole checks that it equals the
//!   snapshot's (`invariant!`); the view is replaced only by a complete snapshot;
//! - a view that lacks what its log's trimmed segments held (its applied end below the log
//!   start) applies no record but a complete snapshot's, and is never served by the
//!   controller: a metadata leader whose view is not whole stops the node
//!   ([`Controller::check_servable`]; a leader holds every committed record, so only lost
//!   or damaged data gets there), and it refuses admin operations;
//! - a node of several voters names no broker list and no leader to a client before it
//!   knows the cluster or its wait for it is over (see above; the broker holds the
//!   requests), and once it knows it, it never holds a request again.

#[cfg(test)]
mod tests;

use crate::api::{
    AdminOp, AlterTopicConfigs, CorruptData, CreatePartitions, CreateTopic, ErrorCode, Now,
    PartitionInfo, PeerMessage, RequestId, Response, TopicInfo, TopicResult,
};
use crate::batch::BatchHeader;
use crate::internal_log::{due_snapshot, replay_recovered, SnapshotSource, SnapshotState};
use crate::metadata::{
    assign_replicas, is_valid_topic_name, Applied, ClusterMetadata, MetadataRecord, NodeInfo,
    TopicConfig, TopicMetadata, TopicPartition,
};
use crate::records::decode_json_records;
use crate::replication::NodeId;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// The metadata log's topic (one partition).
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// Most partitions a topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// How often a node re-announces the partitions it leads.
const ANNOUNCE_INTERVAL_MS: i64 = 1_000;
/// How often a node not yet registered asks the controller again.
const REGISTER_RETRY_MS: i64 = 1_000;
/// How long a forwarded admin request waits for the controller's answer, and how long a
/// request that arrives while no controller is known waits for one to be elected.
const FORWARD_TIMEOUT_MS: i64 = 10_000;
/// Most client admin requests waiting for a controller to be elected; past it they are
/// answered NOT_CONTROLLER at once (clients retry that).
const CONTROLLERLESS_WAITING_MAX: usize = 64;
/// A node not heard from for this long is left out of Metadata and not named as a leader or
/// coordinator: clients take every listed broker for alive (kafka-python gives up on one it
/// cannot reach). Every live node is heard from at least every announcement interval.
const NODE_LIVENESS_MS: i64 = 3 * ANNOUNCE_INTERVAL_MS;
/// Forward id of requests whose answer nobody waits for (auto-creation, registration).
const UNANSWERED: u64 = 0;

pub fn metadata_partition() -> TopicPartition {
    TopicPartition::new(METADATA_TOPIC, 0)
}

/// What the controller sees of its node.
pub trait ControllerNode {
    /// The applied cluster metadata.
    fn metadata(&self) -> &ClusterMetadata;
    /// The metadata log's leader (the controller) as this node's replica knows it.
    fn controller_id(&self) -> Option<NodeId>;
    /// The epoch in which this node's replica leads the metadata log, if it does.
    fn metadata_leader_epoch(&self) -> Option<i32>;
    /// A hosted partition's (leader epoch, leader) as its replica here knows it.
    fn hosted_leader(&self, partition: &TopicPartition) -> Option<(i32, NodeId)>;
    /// The partitions this node leads, with their epochs (for the announcements).
    fn led_partitions(&self) -> Vec<(TopicPartition, i32)>;
    /// Whether this node's replica of the metadata log has caught up with its group
    /// (`Replica::caught_up`): it holds every record committed when the leader last spoke.
    fn metadata_caught_up(&self) -> bool;
    /// The in-sync replicas of a partition this node leads (`None` if it does not).
    fn led_in_sync(&self, _partition: &TopicPartition, _now_ms: i64) -> Option<Vec<NodeId>> {
        None
    }
}

/// What the controller needs from its node for one call.
pub struct ControllerContext<'a> {
    /// Timers run on `now.monotonic_ms`; the wall clock only stamps metadata batches.
    pub now: Now,
    pub node: &'a dyn ControllerNode,
    /// The node's seeded RNG (topic ids, replica placement, the cluster id).
    pub rng: &'a mut StdRng,
}

/// What the node must do for the controller, in order.
#[derive(Debug)]
pub enum ControllerOutput {
    /// Answer a client request.
    Respond { id: RequestId, response: Response },
    /// Send a message to another node.
    Send { to: NodeId, message: PeerMessage },
    /// Append `batch` (made by the controller) to the metadata log as its leader, then
    /// report the result with [`Controller::appended`].
    Append { batch: Bytes, write: MetadataWrite },
}

/// A write the controller asked for, handed back with its result through
/// [`Controller::appended`].
#[derive(Debug)]
pub struct MetadataWrite {
    /// Who waits for the operation, its results once applied, and its results if the
    /// batch cannot be appended (`None` for the cluster id, which nobody waits for).
    waiting: Option<(AdminOrigin, Vec<TopicResult>, Vec<TopicResult>)>,
}

/// The settings of a controller (from the broker's configuration).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node as it registers itself.
    pub this_node: NodeInfo,
    /// Every node of the cluster (the metadata log's voters).
    pub voters: Vec<NodeId>,
    pub default_partition_count: i32,
    pub topic_defaults: TopicConfig,
    pub auto_create_topics: bool,
    /// The controller writes a snapshot of the metadata every this many bytes appended to
    /// the log (half its segment size; at least 1).
    pub snapshot_interval_bytes: u64,
    /// Replication's longest election timeout: with an announcement interval, how long a
    /// starting node may wait to know the cluster (see the module doc).
    pub election_timeout_max_ms: i64,
}

/// Which response an admin request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminKind {
    Create,
    Delete,
    CreatePartitions,
    AlterConfigs,
    Register,
}

impl AdminKind {
    fn of(op: &AdminOp) -> Self {
        match op {
            AdminOp::CreateTopics(_) => Self::Create,
            AdminOp::DeleteTopics(_) => Self::Delete,
            AdminOp::CreatePartitions(_) => Self::CreatePartitions,
            AdminOp::AlterConfigs(_) => Self::AlterConfigs,
            AdminOp::RegisterNode(_) => Self::Register,
        }
    }

    fn response(self, results: Vec<TopicResult>) -> Option<Response> {
        match self {
            Self::Create => Some(Response::CreateTopics(results)),
            Self::Delete => Some(Response::DeleteTopics(results)),
            Self::CreatePartitions => Some(Response::CreatePartitions(results)),
            Self::AlterConfigs => Some(Response::AlterConfigs(results)),
            Self::Register => None,
        }
    }
}

/// Who waits for an admin operation's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminOrigin {
    Client { id: RequestId, kind: AdminKind },
    Peer { node: NodeId, id: u64 },
    Nobody,
}

/// An operation the controller appended, waiting for its records to be applied.
#[derive(Debug)]
struct PendingAdmin {
    origin: AdminOrigin,
    results: Vec<TopicResult>,
    commit_end: i64,
    epoch: i32,
}

/// A client's admin request forwarded to the controller.
#[derive(Debug)]
struct ForwardedRequest {
    request: RequestId,
    kind: AdminKind,
    names: Vec<String>,
    deadline_ms: i64,
}

/// A client's admin request that arrived while no controller was known.
#[derive(Debug)]
struct ControllerlessRequest {
    request: RequestId,
    op: AdminOp,
    deadline_ms: i64,
}

/// A committed-or-not batch of the metadata log, decoded, waiting to be applied.
#[derive(Debug, Clone)]
struct PendingBatch {
    end_offset: i64,
    records: Vec<MetadataRecord>,
}

/// The controller's and the metadata applier's state. See the module doc.
#[derive(Debug)]
pub struct Controller {
    config: ControllerConfig,
    /// Batches at or past the applied end, by base offset.
    pending: BTreeMap<i64, PendingBatch>,
    waiting: Vec<PendingAdmin>,
    forwarded: BTreeMap<u64, ForwardedRequest>,
    /// Client requests waiting for a controller to be elected (at most
    /// [`CONTROLLERLESS_WAITING_MAX`]), in arrival order.
    controllerless: Vec<ControllerlessRequest>,
    next_forward_id: u64,
    /// Leaders other nodes announced: partition -> (epoch, leader).
    known_leaders: BTreeMap<TopicPartition, (i32, NodeId)>,
    next_announce_ms: i64,
    next_register_ms: i64,
    /// When each other node was last heard from (any peer message).
    heard_from: BTreeMap<NodeId, i64>,
    /// The nodes whose announcement arrived since this node started.
    announced_since_start: BTreeSet<NodeId>,
    /// While this node does not know the cluster yet, when it stops waiting to (monotonic);
    /// `None` once it knows it (see "Knowing the cluster before serving its view").
    cluster_wait_deadline_ms: Option<i64>,
    /// The metadata log's snapshots as this replica applies them (see "Snapshots").
    snapshots: SnapshotState<ClusterMetadata>,
}

impl Controller {
    /// Starts (at `now_ms`, monotonic) with nothing pending: see
    /// [`Controller::replay_recovered`].
    pub fn new(mut config: ControllerConfig, now_ms: i64) -> Self {
        config.snapshot_interval_bytes = config.snapshot_interval_bytes.max(1);
        let alone = config
            .voters
            .iter()
            .all(|voter| *voter == config.this_node.node_id);
        let cluster_wait_deadline_ms =
            (!alone).then(|| now_ms + config.election_timeout_max_ms.max(0) + ANNOUNCE_INTERVAL_MS);
        Self {
            config,
            pending: BTreeMap::new(),
            waiting: Vec::new(),
            forwarded: BTreeMap::new(),
            controllerless: Vec::new(),
            next_forward_id: UNANSWERED + 1,
            known_leaders: BTreeMap::new(),
            next_announce_ms: 0,
            next_register_ms: 0,
            heard_from: BTreeMap::new(),
            announced_since_start: BTreeSet::new(),
            cluster_wait_deadline_ms,
            snapshots: SnapshotState::new(0),
        }
    }

    /// The recovered metadata log, which starts at `log_start`: its records past the
    /// persisted view's applied end wait to be committed again. A batch that does not parse
    /// or decode is corrupt data.
    pub fn replay_recovered(
        &mut self,
        metadata: &ClusterMetadata,
        metadata_log: &Bytes,
        log_start: i64,
    ) -> Result<(), CorruptData> {
        self.snapshots = SnapshotState::resuming(metadata.applied_end_offset, log_start);
        replay_recovered(
            &metadata_partition(),
            Some(metadata_log),
            i64::MAX,
            |header, base_offset, last_offset, bytes| {
                if base_offset < metadata.applied_end_offset {
                    return Ok(());
                }
                self.decode_appended(header, base_offset, last_offset, bytes)
            },
        )
    }

    fn node_id(&self) -> NodeId {
        self.config.this_node.node_id
    }

    /// This node as it registers itself.
    pub fn this_node(&self) -> NodeInfo {
        self.config.this_node.clone()
    }

    /// Whether the applied metadata lists this node with its current address.
    pub fn is_registered(&self, metadata: &ClusterMetadata) -> bool {
        metadata.nodes.contains(&self.config.this_node)
    }

    // ----- the metadata log -----

    /// A batch reached the metadata log (as leader or follower). One whose records do not
    /// decode is corrupt data: the node stops rather than skip a change every other node
    /// applies.
    pub fn on_appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) -> Result<(), CorruptData> {
        self.decode_appended(header, base_offset, last_offset, bytes)
            .map_err(|reason| CorruptData {
                partition: metadata_partition(),
                offset: base_offset,
                reason: format!("a metadata batch does not decode: {reason}"),
            })
    }

    fn decode_appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) -> Result<(), String> {
        if header.is_control() {
            self.snapshots.appended(bytes.len(), false);
            return Ok(());
        }
        let records = decode_json_records::<MetadataRecord>(header, bytes)?;
        self.snapshots
            .appended(bytes.len(), records.contains(&MetadataRecord::SnapshotEnd));
        self.pending.insert(
            base_offset,
            PendingBatch {
                end_offset: last_offset + 1,
                records,
            },
        );
        Ok(())
    }

    /// The metadata log lost its tail from `offset` on.
    pub fn on_truncated(&mut self, offset: i64) {
        self.pending.split_off(&offset);
    }

    /// This replica's metadata log was dropped and starts over, empty, at `log_start` (it
    /// lay below its leader's log start): `metadata`, whole below its applied end, lacks
    /// what lay between, so it waits for a complete snapshot (see "Snapshots").
    pub fn restart_log(&mut self, metadata: &ClusterMetadata, log_start: i64) {
        crate::invariant!(
            self.pending
                .keys()
                .all(|base_offset| *base_offset < log_start),
            "the metadata log restarted at {log_start} below a batch it holds"
        );
        self.pending.clear();
        self.snapshots = SnapshotState::resuming(metadata.applied_end_offset, log_start);
    }

    /// Where the last complete snapshot applied here starts: the metadata segments wholly
    /// below it may be deleted.
    pub fn last_snapshot(&self) -> Option<i64> {
        self.snapshots.last()
    }

    /// Before this node acts as the controller on its view: a view that lacks what its
    /// log's trimmed segments held would validate changes against part of the state, so
    /// it is corrupt data that stops the node.
    pub fn check_servable(&self) -> Result<(), CorruptData> {
        self.snapshots.check_servable(metadata_partition())
    }

    /// Applies every batch below `committed` not applied yet to `metadata`, in order;
    /// returns the topics created, deleted or changed, or `None` if nothing was applied
    /// (then there is nothing to persist). Leaders announced for those topics are
    /// forgotten. A view that is not whole takes nothing but a complete snapshot.
    pub fn apply_committed(
        &mut self,
        metadata: &mut ClusterMetadata,
        committed: i64,
    ) -> Option<BTreeSet<String>> {
        let mut changed_topics = BTreeSet::new();
        // Topics only grown keep the leaders announced for their partitions.
        let mut grown_topics = BTreeSet::new();
        let mut applied_any = false;
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().end_offset > committed {
                break;
            }
            let (base_offset, batch) = entry.remove_entry();
            for (offset, record) in (base_offset..).zip(&batch.records) {
                self.apply_record(
                    metadata,
                    offset,
                    record,
                    &mut changed_topics,
                    &mut grown_topics,
                );
            }
            if self.snapshots.is_complete() {
                metadata.applied_end_offset = batch.end_offset;
                applied_any = true;
            }
        }
        if !applied_any {
            return None;
        }
        let recreated: BTreeSet<&String> = changed_topics.difference(&grown_topics).collect();
        self.known_leaders
            .retain(|partition, _| !recreated.contains(&partition.topic));
        Some(changed_topics)
    }

    /// Applies the committed record at `offset` to `metadata` (if whole) and to the
    /// snapshot being staged (if one is).
    fn apply_record(
        &mut self,
        metadata: &mut ClusterMetadata,
        offset: i64,
        record: &MetadataRecord,
        changed_topics: &mut BTreeSet<String>,
        grown_topics: &mut BTreeSet<String>,
    ) {
        match record {
            MetadataRecord::SnapshotStart => self.snapshots.start(offset),
            MetadataRecord::SnapshotEnd => {
                let whole = self.snapshots.is_complete();
                // None: its start lies before this log (a partial snapshot), dropped.
                let Some(staged) = self.snapshots.end() else {
                    return;
                };
                crate::invariant!(
                    !whole || metadata.same_replicated_view(&staged),
                    "the metadata snapshot ending at {offset} differs from the view it restates"
                );
                let replaced = metadata.replace_replicated_view(staged);
                grown_topics.retain(|topic| !replaced.contains(topic));
                changed_topics.extend(replaced);
            }
            record => {
                if let Some(staged) = self.snapshots.staged_mut() {
                    if let Err(reason) = staged.apply(record) {
                        tracing::warn!(%reason, "snapshot record refused (every node refuses it)");
                    }
                }
                if !self.snapshots.is_complete() {
                    return;
                }
                match metadata.apply(record) {
                    Ok(Applied::Changed) => match record {
                        MetadataRecord::CreateTopic(topic) => {
                            grown_topics.remove(&topic.name);
                            changed_topics.insert(topic.name.clone());
                        }
                        MetadataRecord::DeleteTopic { name } => {
                            grown_topics.remove(name);
                            changed_topics.insert(name.clone());
                        }
                        MetadataRecord::CreatePartitions { name, .. } => {
                            // Created or recreated in this same pass: not only grown.
                            let first_change = changed_topics.insert(name.clone());
                            if first_change {
                                grown_topics.insert(name.clone());
                            }
                        }
                        // A config change opens or removes nothing; the broker reads
                        // configs from the view (and refreshes what it caches of them).
                        _ => {}
                    },
                    Ok(Applied::Restated) => {}
                    Err(reason) => {
                        tracing::warn!(%reason, "metadata record refused (every node refuses it)")
                    }
                }
            }
        }
    }

    fn pending_records(&self) -> impl Iterator<Item = &MetadataRecord> {
        self.pending.values().flat_map(|batch| batch.records.iter())
    }

    // ----- liveness and leaders -----

    /// Whether `node` is this node or was heard from recently (see `NODE_LIVENESS_MS`).
    pub fn is_live(&self, node: NodeId, now_ms: i64) -> bool {
        node == self.node_id()
            || self
                .heard_from
                .get(&node)
                .is_some_and(|at| now_ms - at <= NODE_LIVENESS_MS)
    }

    /// The nodes new replicas are placed on, in voter order: the live ones when there are
    /// at least `replication_factor` of them, as Kafka places replicas only on unfenced
    /// brokers (a partition placed on a down node with replication factor 2 could elect no
    /// leader until that node returns); otherwise every voter, since a partition commits by
    /// majority and gets a leader once a majority of its replicas is up. With every voter
    /// live this is the voter list, so placement is as it always was.
    fn placement_nodes(&self, replication_factor: usize, now_ms: i64) -> Vec<NodeId> {
        let live: Vec<NodeId> = self
            .config
            .voters
            .iter()
            .copied()
            .filter(|node| self.is_live(*node, now_ms))
            .collect();
        if live.len() >= replication_factor {
            live
        } else {
            self.config.voters.clone()
        }
    }

    /// A partition's (leader epoch, leader): the newer of what this node's replica knows
    /// (`hosted`) and what its leader announced, if that leader is live.
    pub fn live_leader(
        &self,
        partition: &TopicPartition,
        hosted: Option<(i32, NodeId)>,
        now_ms: i64,
    ) -> Option<(i32, NodeId)> {
        let announced = self.known_leaders.get(partition).copied();
        hosted
            .max(announced)
            .filter(|(_, leader)| self.is_live(*leader, now_ms))
    }

    /// This node's replica became a leader: announce it at the next tick.
    pub fn announce_soon(&mut self) {
        self.next_announce_ms = 0;
    }

    /// A message from `from` arrived. A node not heard from lately (starting, or back from
    /// a partition) is told the leaders here at once rather than at the next interval.
    pub fn heard_from(&mut self, from: NodeId, now_ms: i64) {
        if !self.is_live(from, now_ms) {
            self.announce_soon();
        }
        self.heard_from.insert(from, now_ms);
    }

    /// `from` announced the partitions it leads.
    pub fn learn_leaders(&mut self, from: NodeId, leaders: Vec<(TopicPartition, i32)>) {
        if self.cluster_wait_deadline_ms.is_some() {
            self.announced_since_start.insert(from);
        }
        for (partition, epoch) in leaders {
            let known = self.known_leaders.entry(partition).or_insert((epoch, from));
            if epoch >= known.0 {
                *known = (epoch, from);
            }
        }
    }

    /// The earliest time the controller's timers have work; registration retries only
    /// while this node is not `registered`.
    pub fn next_wakeup_ms(&self, registered: bool) -> Option<i64> {
        let register = (!registered).then_some(self.next_register_ms);
        self.forwarded
            .values()
            .map(|forwarded| forwarded.deadline_ms)
            .chain(
                self.controllerless
                    .iter()
                    .map(|waiting| waiting.deadline_ms),
            )
            .chain([self.next_announce_ms])
            .chain(register)
            .chain(self.cluster_wait_deadline_ms)
            .min()
    }

    // ----- knowing the cluster -----

    /// Whether this node knows the cluster, or has waited long enough for it: only then
    /// may it answer with its view (see "Knowing the cluster before serving its view").
    pub fn knows_cluster(&self) -> bool {
        self.cluster_wait_deadline_ms.is_none()
    }

    /// After every step while this node does not know the cluster: whether it knows it
    /// now, or its wait is over. Once true, always true.
    pub fn check_knows_cluster(&mut self, context: &ControllerContext<'_>) -> bool {
        let Some(deadline_ms) = self.cluster_wait_deadline_ms else {
            return true;
        };
        let now_ms = context.now.monotonic_ms;
        let caught_up = self.caught_up_with_cluster(context.node, now_ms);
        if !caught_up && now_ms < deadline_ms {
            return false;
        }
        if caught_up {
            tracing::info!(
                node = self.node_id(),
                "caught up with the cluster; serving its view"
            );
        } else {
            tracing::warn!(
                node = self.node_id(),
                announced = ?self.announced_since_start,
                "did not catch up with the cluster in time; serving what this node knows"
            );
        }
        self.cluster_wait_deadline_ms = None;
        self.announced_since_start.clear();
        true
    }

    /// The three conditions of "Knowing the cluster before serving its view".
    fn caught_up_with_cluster(&self, node: &dyn ControllerNode, now_ms: i64) -> bool {
        let majority = self.config.voters.len() / 2 + 1;
        let announced = self
            .announced_since_start
            .iter()
            .filter(|voter| self.config.voters.contains(voter))
            .count()
            + 1;
        if announced < majority || !node.metadata_caught_up() || !self.snapshots.is_complete() {
            return false;
        }
        node.metadata().topics.values().all(|topic| {
            (0..topic.partition_count).all(|index| {
                let partition = TopicPartition::new(topic.name.clone(), index);
                let hosted = node.hosted_leader(&partition);
                self.live_leader(&partition, hosted, now_ms).is_some()
            })
        })
    }

    // ----- admin operations -----

    /// A client's CreateTopics or DeleteTopics: run here if this node is the controller,
    /// else forwarded to it; while no controller is known (a cluster starting, an election),
    /// it waits for one (see [`Controller::release_admin`]).
    pub fn admin_request(
        &mut self,
        context: &mut ControllerContext<'_>,
        id: RequestId,
        op: AdminOp,
    ) -> Vec<ControllerOutput> {
        let mut outputs = Vec::new();
        let kind = AdminKind::of(&op);
        match context.node.controller_id() {
            Some(controller) if controller == self.node_id() => {
                self.run_admin(context, op, AdminOrigin::Client { id, kind }, &mut outputs)
            }
            Some(controller) => {
                let forward_id = self.next_forward_id;
                self.next_forward_id += 1;
                let names = topic_names(&op).into_iter().map(String::from).collect();
                self.forwarded.insert(
                    forward_id,
                    ForwardedRequest {
                        request: id,
                        kind,
                        names,
                        deadline_ms: context.now.monotonic_ms + FORWARD_TIMEOUT_MS,
                    },
                );
                outputs.push(ControllerOutput::Send {
                    to: controller,
                    message: PeerMessage::Forward { id: forward_id, op },
                });
            }
            None if self.controllerless.len() < CONTROLLERLESS_WAITING_MAX => {
                self.controllerless.push(ControllerlessRequest {
                    request: id,
                    op,
                    deadline_ms: context.now.monotonic_ms + FORWARD_TIMEOUT_MS,
                });
            }
            None => {
                let results = admin_failure(
                    &op,
                    ErrorCode::NotController,
                    "no controller yet, and too many requests wait for one",
                );
                respond(AdminOrigin::Client { id, kind }, results, &mut outputs);
            }
        }
        outputs
    }

    /// An admin operation another node forwarded (`id` 0: nobody waits for the answer).
    pub fn on_forward(
        &mut self,
        context: &mut ControllerContext<'_>,
        from: NodeId,
        id: u64,
        op: AdminOp,
    ) -> Vec<ControllerOutput> {
        let mut outputs = Vec::new();
        let origin = if id == UNANSWERED {
            AdminOrigin::Nobody
        } else {
            AdminOrigin::Peer { node: from, id }
        };
        if context.node.controller_id() == Some(self.node_id()) {
            self.run_admin(context, op, origin, &mut outputs);
        } else {
            let results = admin_failure(&op, ErrorCode::NotController, "not the controller");
            respond(origin, results, &mut outputs);
        }
        outputs
    }

    /// The controller's answer to a request this node forwarded.
    pub fn on_forwarded(&mut self, id: u64, results: Vec<TopicResult>) -> Vec<ControllerOutput> {
        let mut outputs = Vec::new();
        if let Some(forwarded) = self.forwarded.remove(&id) {
            let origin = AdminOrigin::Client {
                id: forwarded.request,
                kind: forwarded.kind,
            };
            respond(origin, results, &mut outputs);
        }
        outputs
    }

    /// Runs an admin operation nobody waits for (auto-creation) here if this node is the
    /// controller, else forwards it there; without a known controller it is dropped (the
    /// requester asks again).
    pub fn submit_unanswered(
        &mut self,
        context: &mut ControllerContext<'_>,
        op: AdminOp,
    ) -> Vec<ControllerOutput> {
        let mut outputs = Vec::new();
        match context.node.controller_id() {
            Some(controller) if controller == self.node_id() => {
                self.run_admin(context, op, AdminOrigin::Nobody, &mut outputs)
            }
            Some(controller) => outputs.push(ControllerOutput::Send {
                to: controller,
                message: PeerMessage::Forward { id: UNANSWERED, op },
            }),
            None => {}
        }
        outputs
    }

    /// As controller: validates the operation, asks for its records to be appended, and
    /// answers once they are applied (or at once if nothing is to be written).
    fn run_admin(
        &mut self,
        context: &mut ControllerContext<'_>,
        op: AdminOp,
        origin: AdminOrigin,
        outputs: &mut Vec<ControllerOutput>,
    ) {
        if !self.snapshots.is_complete() {
            let results = admin_failure(
                &op,
                ErrorCode::NotController,
                "the controller's metadata view is not whole",
            );
            respond(origin, results, outputs);
            return;
        }
        let metadata = context.node.metadata();
        let now_ms = context.now.monotonic_ms;
        let mut records = Vec::new();
        let results = match &op {
            AdminOp::CreateTopics(topics) => topics
                .iter()
                .map(|topic| {
                    self.validate_create(metadata, context.rng, now_ms, topic, &mut records)
                })
                .collect(),
            AdminOp::DeleteTopics(names) => names
                .iter()
                .map(|name| self.validate_delete(metadata, name, &mut records))
                .collect(),
            AdminOp::CreatePartitions(topics) => {
                let eventual = self.eventual_view(metadata);
                topics
                    .iter()
                    .map(|topic| {
                        self.validate_create_partitions(
                            &eventual,
                            context.rng,
                            now_ms,
                            topic,
                            &mut records,
                        )
                    })
                    .collect()
            }
            AdminOp::AlterConfigs(topics) => {
                let eventual = self.eventual_view(metadata);
                topics
                    .iter()
                    .map(|topic| self.validate_alter_configs(&eventual, topic, &mut records))
                    .collect()
            }
            AdminOp::RegisterNode(node) => {
                let record = MetadataRecord::RegisterNode(node.clone());
                let known = metadata.nodes.contains(node)
                    || self.pending_records().any(|pending| *pending == record);
                if !known {
                    records.push(record);
                }
                Vec::new()
            }
        };
        if records.is_empty() {
            respond(origin, results, outputs);
            return;
        }
        let failure = admin_failure(&op, ErrorCode::NotController, "not the controller");
        outputs.push(ControllerOutput::Append {
            batch: encode_metadata_batch(&records, context.now.wall_ms),
            write: MetadataWrite {
                waiting: Some((origin, results, failure)),
            },
        });
    }

    /// The node appended a write's batch (`Some((offset its commit must reach, epoch))`) or
    /// could not (`None`: it does not lead the metadata log).
    pub fn appended(
        &mut self,
        write: MetadataWrite,
        appended: Option<(i64, i32)>,
    ) -> Vec<ControllerOutput> {
        let mut outputs = Vec::new();
        let Some((origin, results, failure)) = write.waiting else {
            return outputs;
        };
        match appended {
            Some((commit_end, epoch)) => self.waiting.push(PendingAdmin {
                origin,
                results,
                commit_end,
                epoch,
            }),
            None => respond(origin, failure, &mut outputs),
        }
        outputs
    }

    /// The view once the pending records are applied too: what the next change must be
    /// checked against.
    fn eventual_view(&self, metadata: &ClusterMetadata) -> ClusterMetadata {
        let mut view = metadata.clone();
        for record in self.pending_records() {
            // A pending record that will be refused is refused here too: no change.
            let _ = view.apply(record);
        }
        view
    }

    /// CreatePartitions of one topic: grows it (never shrinks), placing the new partitions
    /// like CreateTopics does unless the client places them.
    fn validate_create_partitions(
        &self,
        eventual: &ClusterMetadata,
        rng: &mut StdRng,
        now_ms: i64,
        request: &CreatePartitions,
        records: &mut Vec<MetadataRecord>,
    ) -> TopicResult {
        let fail =
            |error: ErrorCode, message: String| failed_result(&request.name, error, &message);
        let named_here = records.iter().any(|record| {
            matches!(record, MetadataRecord::CreatePartitions { name, .. } if *name == request.name)
        });
        let topic = match topic_to_change(eventual, &request.name, named_here) {
            Ok(topic) => topic,
            Err(failed) => return failed,
        };
        if crate::broker::is_internal_topic(&request.name) {
            // Its coordinators hash keys over its partition count: growing it would move
            // every group and transactional id away from its state.
            return fail(
                ErrorCode::InvalidRequest,
                format!("internal topic '{}' cannot grow", request.name),
            );
        }
        let current = topic.partition_count;
        if request.count <= current {
            let message = if request.count == current {
                format!("Topic already has {current} partitions.")
            } else {
                format!(
                    "Topic currently has {current} partitions, which is higher than the requested {}.",
                    request.count
                )
            };
            return fail(ErrorCode::InvalidPartitions, message);
        }
        if request.count > PARTITIONS_PER_TOPIC_MAX {
            return fail(
                ErrorCode::InvalidPartitions,
                format!("partition count must be at most {PARTITIONS_PER_TOPIC_MAX}"),
            );
        }
        // A single node's topic from before replication lists no replicas: all on it.
        let mut assignments: Vec<Vec<NodeId>> = (0..current)
            .map(|partition| topic.replicas(partition, self.node_id()))
            .collect();
        let replication_factor = assignments.first().map_or(1, Vec::len);
        let added = (request.count - current) as usize;
        let new_partitions = match &request.assignments {
            Some(given) => {
                if given.len() != added {
                    return fail(
                        ErrorCode::InvalidReplicaAssignment,
                        format!(
                            "Attempted to add {added} additional partition(s), but {} assignment(s) were given.",
                            given.len()
                        ),
                    );
                }
                for replicas in given {
                    if let Err(message) = self.check_replicas(replicas, replication_factor) {
                        return fail(ErrorCode::InvalidReplicaAssignment, message);
                    }
                }
                given.clone()
            }
            None => {
                let start = rng.random_range(0..self.config.voters.len());
                let nodes = self.placement_nodes(replication_factor, now_ms);
                assign_replicas(
                    &nodes,
                    request.count - current,
                    replication_factor as i16,
                    start % nodes.len(),
                )
            }
        };
        let mut result = TopicResult::empty(&request.name);
        result.topic_id = topic.topic_id;
        result.partition_count = request.count;
        if request.validate_only {
            return result;
        }
        assignments.extend(new_partitions);
        records.push(MetadataRecord::CreatePartitions {
            name: request.name.clone(),
            assignments,
        });
        result
    }

    /// One partition's replicas as a client placed them: `replication_factor` distinct
    /// nodes of the cluster.
    fn check_replicas(&self, replicas: &[NodeId], replication_factor: usize) -> Result<(), String> {
        if replicas.len() != replication_factor {
            return Err(format!(
                "Inconsistent replication factor: {} replica(s) where the others have {replication_factor}",
                replicas.len()
            ));
        }
        if let Some(unknown) = replicas
            .iter()
            .find(|node| !self.config.voters.contains(node))
        {
            return Err(format!("node {unknown} is not in the cluster"));
        }
        let distinct: BTreeSet<&NodeId> = replicas.iter().collect();
        if distinct.len() != replicas.len() {
            return Err(format!("duplicate replicas in {replicas:?}"));
        }
        Ok(())
    }

    /// AlterConfigs or IncrementalAlterConfigs of one topic.
    fn validate_alter_configs(
        &self,
        eventual: &ClusterMetadata,
        request: &AlterTopicConfigs,
        records: &mut Vec<MetadataRecord>,
    ) -> TopicResult {
        let fail =
            |error: ErrorCode, message: String| failed_result(&request.name, error, &message);
        let named_here = records.iter().any(|record| {
            matches!(record, MetadataRecord::AlterTopicConfig { name, .. } if *name == request.name)
        });
        let topic = match topic_to_change(eventual, &request.name, named_here) {
            Ok(topic) => topic,
            Err(failed) => return failed,
        };
        let config = match topic.config.changed(
            &request.changes,
            request.replace,
            &self.config.topic_defaults,
        ) {
            Ok(config) => config,
            Err(error) => {
                let code = if error.invalid_request {
                    ErrorCode::InvalidRequest
                } else {
                    ErrorCode::InvalidConfig
                };
                return fail(code, error.message);
            }
        };
        let mut result = TopicResult::empty(&request.name);
        result.topic_id = topic.topic_id;
        if request.validate_only || config == topic.config {
            return result;
        }
        records.push(MetadataRecord::AlterTopicConfig {
            name: request.name.clone(),
            config,
        });
        result
    }

    /// Whether `name` exists once the applied metadata and the pending records are applied.
    fn topic_exists_eventually(&self, metadata: &ClusterMetadata, name: &str) -> bool {
        let mut exists = metadata.topics.contains_key(name);
        for record in self.pending_records() {
            match record {
                MetadataRecord::CreateTopic(topic) if topic.name == name => exists = true,
                MetadataRecord::DeleteTopic { name: deleted } if deleted == name => exists = false,
                _ => {}
            }
        }
        exists
    }

    fn validate_create(
        &self,
        metadata: &ClusterMetadata,
        rng: &mut StdRng,
        now_ms: i64,
        request: &CreateTopic,
        records: &mut Vec<MetadataRecord>,
    ) -> TopicResult {
        let mut result = TopicResult::empty(&request.name);
        let fail =
            |error: ErrorCode, message: String| failed_result(&request.name, error, &message);
        if !is_valid_topic_name(&request.name) || request.name == METADATA_TOPIC {
            return fail(
                ErrorCode::InvalidTopicException,
                format!("'{}' is not a valid topic name", request.name),
            );
        }
        let created_here = records.iter().any(|record| {
            matches!(record, MetadataRecord::CreateTopic(topic) if topic.name == request.name)
        });
        if created_here || self.topic_exists_eventually(metadata, &request.name) {
            return fail(
                ErrorCode::TopicAlreadyExists,
                format!("topic '{}' already exists", request.name),
            );
        }
        let explicit = match self.explicit_assignment(request) {
            Ok(explicit) => explicit,
            Err((error, message)) => return fail(error, message),
        };
        let partition_count = if let Some(explicit) = &explicit {
            explicit.len() as i32
        } else if request.partition_count == -1 {
            self.config.default_partition_count
        } else {
            request.partition_count
        };
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partition_count) {
            return fail(
                ErrorCode::InvalidPartitions,
                format!("partition count must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            );
        }
        let voters = &self.config.voters;
        let node_count = voters.len() as i16;
        let replication_factor = if let Some(first) = explicit.as_ref().and_then(|e| e.first()) {
            first.len() as i16
        } else if request.replication_factor == -1 {
            node_count.min(3)
        } else {
            request.replication_factor
        };
        if replication_factor < 1 || replication_factor > node_count {
            return fail(ErrorCode::InvalidReplicationFactor, format!("replication factor {replication_factor} is not between 1 and the {node_count} node(s) of the cluster"));
        }
        let mut config = self.config.topic_defaults.clone();
        for (key, value) in &request.configs {
            if let Err(message) = config.set(key, value) {
                return fail(ErrorCode::InvalidConfig, message);
            }
        }
        result.partition_count = partition_count;
        result.replication_factor = replication_factor;
        result.configs = config_entries(&config, &self.config.topic_defaults);
        if request.validate_only {
            return result;
        }
        let topic_id = self.fresh_topic_id(metadata, rng, records);
        result.topic_id = topic_id;
        // A random start spreads preferred leaders of successive topics over the nodes.
        let start = rng.random_range(0..voters.len());
        records.push(MetadataRecord::CreateTopic(TopicMetadata {
            name: request.name.clone(),
            topic_id,
            partition_count,
            config,
            assignments: explicit.unwrap_or_else(|| {
                let nodes = self.placement_nodes(replication_factor as usize, now_ms);
                let start = start % nodes.len();
                assign_replicas(&nodes, partition_count, replication_factor, start)
            }),
        }));
        result
    }

    /// A CreateTopics' explicit replica assignment, checked as Kafka does, in partition
    /// order; `None` if the client gave none.
    fn explicit_assignment(
        &self,
        request: &CreateTopic,
    ) -> Result<Option<Vec<Vec<NodeId>>>, (ErrorCode, String)> {
        if request.assignments.is_empty() {
            return Ok(None);
        }
        if request.partition_count != -1 || request.replication_factor != -1 {
            return Err((
                ErrorCode::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        if request.assignments.len() > PARTITIONS_PER_TOPIC_MAX as usize {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("partition count must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            ));
        }
        let mut assignments = request.assignments.clone();
        assignments.sort_by_key(|(partition, _)| *partition);
        let numbered = assignments
            .iter()
            .zip(0..)
            .all(|((partition, _), expected)| *partition == expected);
        if !numbered {
            return Err((
                ErrorCode::InvalidReplicaAssignment,
                "partitions should be a consecutive 0-based integer sequence".into(),
            ));
        }
        let replication_factor = assignments[0].1.len();
        if replication_factor == 0 {
            return Err((
                ErrorCode::InvalidReplicaAssignment,
                "a partition has no replicas".into(),
            ));
        }
        for (_, replicas) in &assignments {
            self.check_replicas(replicas, replication_factor)
                .map_err(|message| (ErrorCode::InvalidReplicaAssignment, message))?;
        }
        Ok(Some(
            assignments
                .into_iter()
                .map(|(_, replicas)| replicas)
                .collect(),
        ))
    }

    /// A random, non-zero topic id used by no topic, applied or pending.
    fn fresh_topic_id(
        &self,
        metadata: &ClusterMetadata,
        rng: &mut StdRng,
        records: &[MetadataRecord],
    ) -> u128 {
        loop {
            let candidate: u128 = rng.random();
            let taken = metadata.topic_by_id(candidate).is_some()
                || self.pending_records().chain(records).any(|record| {
                    matches!(record, MetadataRecord::CreateTopic(topic) if topic.topic_id == candidate)
                });
            if candidate != 0 && !taken {
                return candidate;
            }
        }
    }

    fn validate_delete(
        &self,
        metadata: &ClusterMetadata,
        name: &str,
        records: &mut Vec<MetadataRecord>,
    ) -> TopicResult {
        let deleted_here = records.iter().any(
            |record| matches!(record, MetadataRecord::DeleteTopic { name: deleted } if deleted == name),
        );
        if deleted_here || !self.topic_exists_eventually(metadata, name) {
            return failed_result(
                name,
                ErrorCode::UnknownTopicOrPartition,
                &format!("topic '{name}' does not exist"),
            );
        }
        let mut result = TopicResult::empty(name);
        result.topic_id = metadata.topics.get(name).map_or(0, |topic| topic.topic_id);
        records.push(MetadataRecord::DeleteTopic {
            name: name.to_string(),
        });
        result
    }

    /// After every step: answers admin operations whose records are applied, fails those
    /// whose controller lost its leadership, times out forwarded requests, and runs (or
    /// forwards) the requests that waited for a controller once one is known.
    pub fn release_admin(&mut self, context: &mut ControllerContext<'_>) -> Vec<ControllerOutput> {
        let mut outputs = self.release_controllerless(context);
        if !self.waiting.is_empty() {
            let leading_epoch = context.node.metadata_leader_epoch();
            let applied_end = context.node.metadata().applied_end_offset;
            let waiting = std::mem::take(&mut self.waiting);
            for admin in waiting {
                if applied_end >= admin.commit_end {
                    respond(admin.origin, admin.results, &mut outputs);
                } else if leading_epoch != Some(admin.epoch) {
                    let results = admin
                        .results
                        .iter()
                        .map(|result| {
                            failed_result(
                                &result.name,
                                ErrorCode::NotController,
                                "the controller changed before the change was committed",
                            )
                        })
                        .collect();
                    respond(admin.origin, results, &mut outputs);
                } else {
                    self.waiting.push(admin);
                }
            }
        }
        let now_ms = context.now.monotonic_ms;
        let expired: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, forwarded)| forwarded.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(forwarded) = self.forwarded.remove(&id) {
                let results = forwarded
                    .names
                    .iter()
                    .map(|name| {
                        failed_result(
                            name,
                            ErrorCode::RequestTimedOut,
                            "the controller did not answer",
                        )
                    })
                    .collect();
                let origin = AdminOrigin::Client {
                    id: forwarded.request,
                    kind: forwarded.kind,
                };
                respond(origin, results, &mut outputs);
            }
        }
        outputs
    }

    /// The requests that waited for a controller: run or forwarded once one is known,
    /// answered NOT_CONTROLLER (which clients retry) once their wait is over.
    fn release_controllerless(
        &mut self,
        context: &mut ControllerContext<'_>,
    ) -> Vec<ControllerOutput> {
        let mut outputs = Vec::new();
        if self.controllerless.is_empty() {
            return outputs;
        }
        let controller_known = context.node.controller_id().is_some();
        for waiting in std::mem::take(&mut self.controllerless) {
            if controller_known {
                outputs.extend(self.admin_request(context, waiting.request, waiting.op));
            } else if waiting.deadline_ms <= context.now.monotonic_ms {
                let origin = AdminOrigin::Client {
                    id: waiting.request,
                    kind: AdminKind::of(&waiting.op),
                };
                let results = admin_failure(
                    &waiting.op,
                    ErrorCode::NotController,
                    "no controller was elected in time",
                );
                respond(origin, results, &mut outputs);
            } else {
                self.controllerless.push(waiting);
            }
        }
        outputs
    }

    /// Timers: leader announcements, this node's registration, the cluster id.
    pub fn tick(&mut self, context: &mut ControllerContext<'_>) -> Vec<ControllerOutput> {
        let now_ms = context.now.monotonic_ms;
        let mut outputs = Vec::new();
        if now_ms >= self.next_announce_ms {
            self.next_announce_ms = now_ms + ANNOUNCE_INTERVAL_MS;
            let led = context.node.led_partitions();
            let others = self
                .config
                .voters
                .iter()
                .filter(|node| **node != self.node_id());
            for node in others {
                outputs.push(ControllerOutput::Send {
                    to: *node,
                    message: PeerMessage::Leaders(led.clone()),
                });
            }
        }
        let is_controller = context.node.controller_id() == Some(self.node_id());
        if is_controller {
            self.write_snapshot_if_due(context, &mut outputs);
        }
        if self.is_registered(context.node.metadata()) || now_ms < self.next_register_ms {
            if is_controller {
                self.ensure_cluster_id(context, &mut outputs);
            }
            return outputs;
        }
        self.next_register_ms = now_ms + REGISTER_RETRY_MS;
        let this_node = self.this_node();
        match context.node.controller_id() {
            Some(controller) if controller == self.node_id() => {
                self.ensure_cluster_id(context, &mut outputs);
                self.run_admin(
                    context,
                    AdminOp::RegisterNode(this_node),
                    AdminOrigin::Nobody,
                    &mut outputs,
                );
            }
            Some(controller) => outputs.push(ControllerOutput::Send {
                to: controller,
                message: PeerMessage::Forward {
                    id: UNANSWERED,
                    op: AdminOp::RegisterNode(this_node),
                },
            }),
            None => {}
        }
        outputs
    }

    /// As controller: a cluster without an id gets one (the first record of its log).
    fn ensure_cluster_id(
        &mut self,
        context: &mut ControllerContext<'_>,
        outputs: &mut Vec<ControllerOutput>,
    ) {
        let pending = self
            .pending_records()
            .any(|record| matches!(record, MetadataRecord::InitCluster { .. }));
        if context.node.metadata().cluster_id.is_empty() && !pending && self.snapshots.is_complete()
        {
            let cluster_id = format!("myelin-{:016x}", context.rng.random::<u64>());
            outputs.push(ControllerOutput::Append {
                batch: encode_metadata_batch(
                    &[MetadataRecord::InitCluster { cluster_id }],
                    context.now.wall_ms,
                ),
                write: MetadataWrite { waiting: None },
            });
        }
    }

    /// As controller: a snapshot of the committed view, if quiescent and due (see
    /// "Snapshots").
    fn write_snapshot_if_due(
        &mut self,
        context: &mut ControllerContext<'_>,
        outputs: &mut Vec<ControllerOutput>,
    ) {
        let view = context.node.metadata();
        let mut source = MetadataSnapshot {
            ready: context.node.metadata_leader_epoch().is_some()
                && self.pending.is_empty()
                && !view.cluster_id.is_empty(),
            view,
            snapshots: &mut self.snapshots,
        };
        let Some(batches) = due_snapshot(
            METADATA_TOPIC,
            0,
            &mut source,
            self.config.snapshot_interval_bytes,
            context.now.wall_ms,
        ) else {
            return;
        };
        outputs.extend(batches.into_iter().map(|batch| ControllerOutput::Append {
            batch,
            write: MetadataWrite { waiting: None },
        }));
    }

    // ----- Metadata, DescribeConfigs -----

    /// A Metadata request (any node answers it); unknown topics are created if asked and
    /// allowed.
    pub fn metadata_request(
        &mut self,
        context: &mut ControllerContext<'_>,
        topics: Option<Vec<String>>,
        allow_auto_create: bool,
    ) -> (Response, Vec<ControllerOutput>) {
        let metadata = context.node.metadata();
        let now_ms = context.now.monotonic_ms;
        let names: Vec<String> = match topics {
            Some(names) => names,
            None => metadata.topics.keys().cloned().collect(),
        };
        let mut infos = Vec::with_capacity(names.len());
        let mut to_create = Vec::new();
        for name in names {
            let mut info = self.topic_info(context.node, &name, now_ms);
            if info.error == ErrorCode::UnknownTopicOrPartition
                && allow_auto_create
                && self.config.auto_create_topics
            {
                // Kafka's answer while a topic is being created; clients ask again.
                info.error = ErrorCode::LeaderNotAvailable;
                to_create.push(CreateTopic {
                    name: name.clone(),
                    partition_count: -1,
                    replication_factor: -1,
                    configs: Vec::new(),
                    validate_only: false,
                    assignments: Vec::new(),
                });
            }
            infos.push(info);
        }
        let mut nodes: Vec<NodeInfo> = metadata
            .nodes
            .iter()
            .filter(|node| self.is_live(node.node_id, now_ms))
            .cloned()
            .collect();
        if !nodes.iter().any(|node| node.node_id == self.node_id()) {
            nodes.push(self.this_node());
            nodes.sort_by_key(|node| node.node_id);
        }
        // Clients send admin requests to the controller they are told of, and must be able
        // to reach it: until the controller is known and listed, this node names itself
        // (it forwards admin requests to the controller anyway).
        let controller_id = context
            .node
            .controller_id()
            .filter(|controller| nodes.iter().any(|node| node.node_id == *controller))
            .unwrap_or(self.node_id());
        let response = Response::Metadata {
            cluster_id: metadata.cluster_id.clone(),
            controller_id,
            nodes,
            topics: infos,
        };
        let outputs = if to_create.is_empty() {
            Vec::new()
        } else {
            self.submit_unanswered(context, AdminOp::CreateTopics(to_create))
        };
        (response, outputs)
    }

    fn topic_info(&self, node: &dyn ControllerNode, name: &str, now_ms: i64) -> TopicInfo {
        let Some(topic) = node.metadata().topics.get(name) else {
            return TopicInfo {
                name: name.to_string(),
                topic_id: 0,
                error: if is_valid_topic_name(name) && name != METADATA_TOPIC {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::InvalidTopicException
                },
                partitions: Vec::new(),
            };
        };
        let partitions = (0..topic.partition_count)
            .map(|index| {
                let partition = TopicPartition::new(name, index);
                let replicas = topic.replicas(index, self.node_id());
                let hosted = node.hosted_leader(&partition);
                let isr = node
                    .led_in_sync(&partition, now_ms)
                    .unwrap_or_else(|| replicas.clone());
                match self.live_leader(&partition, hosted, now_ms) {
                    Some((leader_epoch, leader)) => PartitionInfo {
                        index,
                        error: ErrorCode::None,
                        leader,
                        leader_epoch,
                        replicas,
                        isr,
                    },
                    None => PartitionInfo {
                        index,
                        error: ErrorCode::LeaderNotAvailable,
                        leader: -1,
                        leader_epoch: -1,
                        replicas,
                        isr,
                    },
                }
            })
            .collect();
        TopicInfo {
            name: name.to_string(),
            topic_id: topic.topic_id,
            error: ErrorCode::None,
            partitions,
        }
    }
}

/// What the controller offers the snapshot writer (`internal_log::due_snapshot`).
struct MetadataSnapshot<'a> {
    /// The controller leads the metadata log and every batch in it is applied.
    ready: bool,
    view: &'a ClusterMetadata,
    snapshots: &'a mut SnapshotState<ClusterMetadata>,
}

impl SnapshotSource for MetadataSnapshot<'_> {
    type Record = MetadataRecord;
    type View = ClusterMetadata;

    /// Quiescent, whole, and no snapshot half applied.
    fn ready_for_snapshot(&self) -> bool {
        self.ready && self.snapshots.is_complete() && !self.snapshots.in_progress()
    }

    fn snapshot_records(&self) -> Vec<MetadataRecord> {
        self.view.snapshot_records()
    }

    fn snapshots(&mut self) -> &mut SnapshotState<ClusterMetadata> {
        self.snapshots
    }
}

/// A topic's configuration as DescribeConfigs answers it (`defaults`: the node's topic
/// defaults, which tell the keys the topic sets from the others).
pub fn describe_configs(
    metadata: &ClusterMetadata,
    defaults: &TopicConfig,
    name: &str,
) -> TopicResult {
    let mut result = TopicResult::empty(name);
    match metadata.topics.get(name) {
        Some(topic) => {
            result.topic_id = topic.topic_id;
            result.partition_count = topic.partition_count;
            result.configs = config_entries(&topic.config, defaults);
        }
        None => {
            result.error = ErrorCode::UnknownTopicOrPartition;
            result.message = Some(format!("topic '{name}' does not exist"));
        }
    }
    result
}

/// The topic a CreatePartitions or config change names, or its failed result: named twice
/// in one request (INVALID_REQUEST), or unknown.
fn topic_to_change<'a>(
    eventual: &'a ClusterMetadata,
    name: &str,
    named_twice: bool,
) -> Result<&'a TopicMetadata, TopicResult> {
    if named_twice {
        let message = format!("topic '{name}' is named twice");
        return Err(failed_result(name, ErrorCode::InvalidRequest, &message));
    }
    eventual.topics.get(name).ok_or_else(|| {
        let message = format!("topic '{name}' does not exist");
        failed_result(name, ErrorCode::UnknownTopicOrPartition, &message)
    })
}

/// A config's entries as results carry them.
fn config_entries(config: &TopicConfig, defaults: &TopicConfig) -> Vec<(String, String, bool)> {
    config
        .entries(defaults)
        .into_iter()
        .map(|(key, value, set)| (key.to_string(), value, set))
        .collect()
}

/// One batch of controller-written records, as the broker's internal writes are encoded.
fn encode_metadata_batch(records: &[MetadataRecord], wall_ms: i64) -> Bytes {
    let encoded = crate::records::encode_json_records(records);
    crate::records::encode_batch(&encoded, wall_ms, 0, -1)
}

/// The topics an operation names.
fn topic_names(op: &AdminOp) -> Vec<&str> {
    match op {
        AdminOp::CreateTopics(topics) => topics.iter().map(|topic| topic.name.as_str()).collect(),
        AdminOp::DeleteTopics(names) => names.iter().map(String::as_str).collect(),
        AdminOp::CreatePartitions(topics) => {
            topics.iter().map(|topic| topic.name.as_str()).collect()
        }
        AdminOp::AlterConfigs(topics) => topics.iter().map(|topic| topic.name.as_str()).collect(),
        AdminOp::RegisterNode(_) => Vec::new(),
    }
}

/// Failure results for every topic an operation names.
fn admin_failure(op: &AdminOp, error: ErrorCode, message: &str) -> Vec<TopicResult> {
    topic_names(op)
        .into_iter()
        .map(|name| failed_result(name, error, message))
        .collect()
}

fn failed_result(name: &str, error: ErrorCode, message: &str) -> TopicResult {
    let mut result = TopicResult::empty(name);
    result.error = error;
    result.message = Some(message.to_string());
    result
}

/// Sends an admin operation's results to whoever waits for them.
fn respond(origin: AdminOrigin, results: Vec<TopicResult>, outputs: &mut Vec<ControllerOutput>) {
    match origin {
        AdminOrigin::Client { id, kind } => {
            if let Some(response) = kind.response(results) {
                outputs.push(ControllerOutput::Respond { id, response });
            }
        }
        AdminOrigin::Peer { node, id } => outputs.push(ControllerOutput::Send {
            to: node,
            message: PeerMessage::Forwarded { id, results },
        }),
        AdminOrigin::Nobody => {}
    }
}
