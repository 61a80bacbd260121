//! Cluster metadata and topic administration: Metadata, CreateTopics (also with an explicit
//! replica assignment), DeleteTopics, CreatePartitions, DescribeConfigs and
//! IncrementalAlterConfigs of a topic, DescribeCluster.

use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::connection::Connection;
use crate::error::{Error, Result};

/// What Metadata returned, in plain types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// Node id of the controller (-1 if unknown).
    pub controller_id: i32,
    /// The brokers of the cluster.
    pub brokers: Vec<BrokerMetadata>,
    /// The topics asked for (or all topics). Per-topic errors are in `error_code`.
    pub topics: Vec<TopicMetadata>,
}

/// One broker from Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// One topic from Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id (nil below Metadata v10).
    pub topic_id: Uuid,
    /// Kafka error code for this topic (0 = none; 3 = UNKNOWN_TOPIC_OR_PARTITION).
    pub error_code: i16,
    /// Whether the topic is internal.
    pub is_internal: bool,
    /// The partitions, as returned.
    pub partitions: Vec<PartitionMetadata>,
}

/// One partition from Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Kafka error code for this partition.
    pub error_code: i16,
    /// Leader node id (-1 if none).
    pub leader_id: i32,
    /// Leader epoch (-1 if unknown).
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offline replica node ids.
    pub offline_replicas: Vec<i32>,
}

/// One topic config from DescribeConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config key, e.g. `retention.ms`.
    pub name: String,
    /// Its value (`None` for a sensitive config or one without a value).
    pub value: Option<String>,
    /// True when the topic does not set it (any config source but DYNAMIC_TOPIC_CONFIG):
    /// its value is a default, Kafka's own or one the broker's settings changed
    /// (STATIC_BROKER_CONFIG and the like).
    pub is_default: bool,
    /// True when the config cannot be altered.
    pub read_only: bool,
}

/// What DescribeCluster returned, in plain types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedCluster {
    /// Cluster id.
    pub cluster_id: String,
    /// Node id of the controller (-1 if unknown).
    pub controller_id: i32,
    /// The brokers of the cluster.
    pub brokers: Vec<BrokerMetadata>,
    /// Bit field of the cluster operations this client may perform (bit n = Kafka's
    /// `AclOperation` code n). Always asked for here.
    pub authorized_operations: i32,
}

/// Kafka's config resource type of a topic (DescribeConfigs, AlterConfigs).
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// Kafka's config source DYNAMIC_TOPIC_CONFIG: a value the topic sets.
const CONFIG_SOURCE_DYNAMIC_TOPIC: i8 = 1;
/// IncrementalAlterConfigs operations.
const CONFIG_OP_SET: i8 = 0;
const CONFIG_OP_DELETE: i8 = 1;

impl ClusterMetadata {
    /// The topic named `name`, if present.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The broker with id `node_id`, if present.
    pub fn broker(&self, node_id: i32) -> Option<&BrokerMetadata> {
        self.brokers.iter().find(|b| b.node_id == node_id)
    }
}

impl TopicMetadata {
    /// The partition with index `partition`, if present.
    pub fn partition(&self, partition: i32) -> Option<&PartitionMetadata> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

impl From<MetadataResponse> for ClusterMetadata {
    fn from(r: MetadataResponse) -> Self {
        ClusterMetadata {
            cluster_id: r.cluster_id.map(|s| s.to_string()),
            controller_id: r.controller_id.0,
            brokers: r
                .brokers
                .into_iter()
                .map(|b| BrokerMetadata {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|s| s.to_string()),
                })
                .collect(),
            topics: r
                .topics
                .into_iter()
                .map(|t| TopicMetadata {
                    name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                    topic_id: t.topic_id,
                    error_code: t.error_code,
                    is_internal: t.is_internal,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| PartitionMetadata {
                            partition: p.partition_index,
                            error_code: p.error_code,
                            leader_id: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes.into_iter().map(|n| n.0).collect(),
                            isr: p.isr_nodes.into_iter().map(|n| n.0).collect(),
                            offline_replicas: p.offline_replicas.into_iter().map(|n| n.0).collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

impl Connection {
    /// Metadata for `topics` (`None` = all topics). Never auto-creates topics. Per-topic
    /// errors are reported in [`TopicMetadata::error_code`], not as an `Err`.
    pub async fn metadata(&mut self, topics: Option<&[&str]>) -> Result<ClusterMetadata> {
        let version = self.version(ApiKey::Metadata)?;
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let response = self.send(&request, version).await?;
        Ok(response.into())
    }

    /// Creates a topic. `configs` are topic configs such as `("cleanup.policy", "compact")`.
    /// An existing topic is `Error::Broker` with code 36 (TOPIC_ALREADY_EXISTS).
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(creatable_configs(configs));
        self.create_one_topic(topic).await
    }

    /// Creates a topic whose partition `i` has the replicas `assignment[i]` (node ids, the
    /// first the preferred leader): CreateTopics with `num_partitions` and
    /// `replication_factor` -1. A bad assignment is `Error::Broker` with code 39
    /// (INVALID_REPLICA_ASSIGNMENT).
    pub async fn create_topic_with_assignment(
        &mut self,
        name: &str,
        assignment: &[Vec<i32>],
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                assignment
                    .iter()
                    .zip(0..)
                    .map(|(replicas, partition)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(partition)
                            .with_broker_ids(broker_ids(replicas))
                    })
                    .collect(),
            )
            .with_configs(creatable_configs(configs));
        self.create_one_topic(topic).await
    }

    /// Grows `topic` to `total_count` partitions (CreatePartitions; the broker places the
    /// new partitions). A count not above the current one is `Error::Broker` with code 37
    /// (INVALID_PARTITIONS).
    pub async fn create_partitions(&mut self, topic: &str, total_count: i32) -> Result<()> {
        let version = self.version(ApiKey::CreatePartitions)?;
        let wait = self.config().request_timeout;
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(total_count)
                .with_assignments(None)])
            .with_timeout_ms(duration_ms(wait))
            .with_validate_only(false);
        let response = self.send_with_extra_wait(&request, version, wait).await?;
        let result = response
            .results
            .iter()
            .find(|t| t.name.0.as_str() == topic)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!(
                    "CreatePartitions response lacks topic {topic:?}"
                ))
            })?;
        Error::check(
            ApiKey::CreatePartitions,
            result.error_code,
            result.error_message.as_deref(),
        )
    }

    /// Every config of `topic` with its value (DescribeConfigs), in the broker's order.
    pub async fn describe_topic_configs(&mut self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let version = self.version(ApiKey::DescribeConfigs)?;
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configuration_keys(None),
        ]);
        let response = self.send(&request, version).await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.resource_name.as_str() == topic)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("DescribeConfigs response lacks topic {topic:?}"))
            })?;
        Error::check(
            ApiKey::DescribeConfigs,
            result.error_code,
            result.error_message.as_deref(),
        )?;
        Ok(result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                is_default: c.config_source != CONFIG_SOURCE_DYNAMIC_TOPIC,
                read_only: c.read_only,
            })
            .collect())
    }

    /// Changes configs of `topic` (IncrementalAlterConfigs): `Some(value)` sets a key,
    /// `None` deletes it (back to its default). Keys not named keep their values. An unknown
    /// key or bad value is `Error::Broker` with code 40 (INVALID_CONFIG).
    pub async fn alter_topic_configs(
        &mut self,
        topic: &str,
        changes: &[(&str, Option<&str>)],
    ) -> Result<()> {
        let version = self.version(ApiKey::IncrementalAlterConfigs)?;
        let configs = changes
            .iter()
            .map(|(key, value)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string((*key).to_owned()))
                    .with_config_operation(if value.is_some() {
                        CONFIG_OP_SET
                    } else {
                        CONFIG_OP_DELETE
                    })
                    .with_value(value.map(|v| StrBytes::from_string(v.to_owned())))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TYPE_TOPIC)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configs(configs)])
            .with_validate_only(false);
        let response = self.send(&request, version).await?;
        let result = response
            .responses
            .iter()
            .find(|r| r.resource_name.as_str() == topic)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!(
                    "IncrementalAlterConfigs response lacks topic {topic:?}"
                ))
            })?;
        Error::check(
            ApiKey::IncrementalAlterConfigs,
            result.error_code,
            result.error_message.as_deref(),
        )
    }

    /// The cluster's id, controller and brokers (DescribeCluster, asking for the cluster's
    /// authorized operations).
    pub async fn describe_cluster(&mut self) -> Result<DescribedCluster> {
        let version = self.version(ApiKey::DescribeCluster)?;
        let request =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let response = self.send(&request, version).await?;
        Error::check(
            ApiKey::DescribeCluster,
            response.error_code,
            response.error_message.as_deref(),
        )?;
        Ok(DescribedCluster {
            cluster_id: response.cluster_id.to_string(),
            controller_id: response.controller_id.0,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| BrokerMetadata {
                    node_id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|s| s.to_string()),
                })
                .collect(),
            authorized_operations: response.cluster_authorized_operations,
        })
    }

    /// Sends CreateTopics for the one `topic` and checks its result.
    async fn create_one_topic(&mut self, topic: CreatableTopic) -> Result<()> {
        let version = self.version(ApiKey::CreateTopics)?;
        let wait = self.config().request_timeout;
        let name = topic.name.0.to_string();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(duration_ms(wait));
        let response = self.send_with_extra_wait(&request, version, wait).await?;
        let result = response
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == name)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("CreateTopics response lacks topic {name:?}"))
            })?;
        Error::check(
            ApiKey::CreateTopics,
            result.error_code,
            result.error_message.as_deref(),
        )
    }

    /// Deletes a topic by name.
    pub async fn delete_topic(&mut self, name: &str) -> Result<()> {
        let version = self.version(ApiKey::DeleteTopics)?;
        let wait = self.config().request_timeout;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(duration_ms(wait));
        if version >= 6 {
            request.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
        } else {
            request.topic_names = vec![topic_name(name)];
        }
        let response = self.send_with_extra_wait(&request, version, wait).await?;
        let result = response
            .responses
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("DeleteTopics response lacks topic {name:?}"))
            })?;
        Error::check(
            ApiKey::DeleteTopics,
            result.error_code,
            result.error_message.as_deref(),
        )
    }
}

fn creatable_configs(configs: &[(&str, &str)]) -> Vec<CreatableTopicConfig> {
    configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string((*k).to_owned()))
                .with_value(Some(StrBytes::from_string((*v).to_owned())))
        })
        .collect()
}

fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|&id| BrokerId(id)).collect()
}

pub(crate) fn duration_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
