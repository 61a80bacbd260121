//! Cluster metadata and topic administration: Metadata, CreateTopics, DeleteTopics.

use std::time::Duration;

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, MetadataRequest, MetadataResponse, TopicName,
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
        let version = self.version(ApiKey::CreateTopics)?;
        let wait = self.config().request_timeout;
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string((*k).to_owned()))
                            .with_value(Some(StrBytes::from_string((*v).to_owned())))
                    })
                    .collect(),
            );
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

pub(crate) fn duration_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
