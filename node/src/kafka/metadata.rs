//! Metadata (api key 3), versions 0-13: the nodes, the topics and their partition leaders.
//!
//! Request semantics by version: v0 sends an array where empty means "every topic"; from
//! v1 a null array means every topic and an empty one none; v4 adds
//! `allow_auto_topic_creation` (earlier versions auto-create as the broker allows); v10+
//! may name topics by id only (resolved through the connection's topic-id map). The
//! response carries topic UUIDs from v10: clients use them for Fetch v13+.
//!
//! Also DescribeCluster (api key 60, v0-1): the cluster id, the controller and the live
//! brokers, as Metadata lists them (endpoint type 1, brokers, only: a node is no separate
//! controller endpoint, so 2 answers UNSUPPORTED_ENDPOINT_TYPE, as a Kafka broker does).
//!
//! A node of a cluster that has just started answers both only once it knows the cluster
//! (its peers, the partitions' leaders), at most a few seconds after its start: the core
//! holds them ("Knowing the cluster before serving its view" in core/src/controller.rs).
//!
//! Authorized operations: no authorizer is configured, so, as Kafka without one, every
//! operation of the resource type is allowed; when a client asks (Metadata v8+ per topic,
//! v8-10 for the cluster; DescribeCluster), the bit field lists all of them (bit n set for
//! Kafka's `AclOperation` code n); when it does not ask, the field holds Kafka's
//! "not requested" value, `i32::MIN`.

use crate::kafka::dispatch::{call, wire_string, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use myelin_core::api::{ErrorCode, PartitionInfo, Request, Response, TopicInfo};
use myelin_core::metadata::NodeInfo;
use uuid::Uuid;

/// What Kafka's `AclEntry.supportedOperations` lists for a topic (READ 3, WRITE 4, CREATE 5,
/// DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11), as a bit field:
/// all allowed without an authorizer.
const TOPIC_AUTHORIZED_OPERATIONS: i32 = operations(&[3, 4, 5, 6, 7, 8, 10, 11]);
/// The same for the cluster (CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
/// DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12).
const CLUSTER_AUTHORIZED_OPERATIONS: i32 = operations(&[5, 7, 8, 9, 10, 11, 12]);
/// DescribeCluster's endpoint type of brokers.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub(crate) const fn operations(codes: &[u8]) -> i32 {
    let mut bits = 0;
    let mut index = 0;
    while index < codes.len() {
        bits |= 1 << codes[index];
        index += 1;
    }
    bits
}

/// One topic the client asked about.
enum Wanted {
    Name(String),
    Id(u128),
}

pub(crate) async fn handle(
    context: &ConnectionContext,
    version: i16,
    request: MetadataRequest,
) -> Result<Reply, HandlerError> {
    let wanted: Option<Vec<Wanted>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|topic| match topic.name {
                    Some(name) => Wanted::Name(name.as_str().to_string()),
                    None => Wanted::Id(topic.topic_id.as_u128()),
                })
                .collect(),
        ),
    };
    let allow_auto_create = if version >= 4 {
        request.allow_auto_topic_creation
    } else {
        true
    };

    let names: Option<Vec<String>> = wanted.as_ref().map(|wanted| {
        wanted
            .iter()
            .filter_map(|topic| match topic {
                Wanted::Name(name) => Some(name.clone()),
                Wanted::Id(_) => None,
            })
            .collect()
    });
    let response = call(
        context,
        Request::Metadata {
            topics: names,
            allow_auto_create,
        },
    )
    .await?;
    let Response::Metadata {
        cluster_id,
        controller_id,
        nodes,
        mut topics,
    } = response
    else {
        return Err(HandlerError::UnexpectedResponse {
            request: "Metadata",
        });
    };
    context.topic_ids.learn(&topics);

    // Topics asked for by id: resolve them and ask the core about their names too.
    let ids: Vec<u128> = wanted
        .iter()
        .flatten()
        .filter_map(|topic| match topic {
            Wanted::Id(id) => Some(*id),
            Wanted::Name(_) => None,
        })
        .collect();
    if !ids.is_empty() {
        let names_by_id = context.topic_ids.resolve(context, &ids).await?;
        let resolved: Vec<String> = ids
            .iter()
            .filter_map(|id| names_by_id.get(id).cloned())
            .collect();
        if !resolved.is_empty() {
            if let Response::Metadata { topics: by_id, .. } = call(
                context,
                Request::Metadata {
                    topics: Some(resolved),
                    allow_auto_create: false,
                },
            )
            .await?
            {
                topics.extend(
                    by_id
                        .into_iter()
                        .filter(|topic| ids.contains(&topic.topic_id)),
                );
            }
        }
        for id in ids.iter().filter(|id| !names_by_id.contains_key(id)) {
            topics.push(TopicInfo {
                name: String::new(),
                topic_id: *id,
                error: ErrorCode::UnknownTopicId,
                partitions: Vec::new(),
            });
        }
    }

    let mut body = MetadataResponse::default();
    body.brokers = nodes.iter().map(broker).collect();
    if version >= 2 {
        body.cluster_id = Some(wire_string(cluster_id));
    }
    if version >= 1 {
        body.controller_id = BrokerId(controller_id);
    }
    if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        body.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    let topic_operations = version >= 8 && request.include_topic_authorized_operations;
    body.topics = topics
        .into_iter()
        .map(|topic| {
            let mut response = topic_response(version, topic);
            if topic_operations {
                response.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
            }
            response
        })
        .collect();
    Ok(Reply::small(body))
}

pub(crate) async fn describe_cluster(
    context: &ConnectionContext,
    version: i16,
    request: DescribeClusterRequest,
) -> Result<Reply, HandlerError> {
    let mut body = DescribeClusterResponse::default();
    body.throttle_time_ms = 0;
    body.error_message = None;
    if version >= 1 {
        body.endpoint_type = request.endpoint_type;
        if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
            body.error_code = ErrorCode::UnsupportedEndpointType.code();
            body.error_message = Some(wire_string(format!(
                "endpoint type {} is not served; brokers (1) are",
                request.endpoint_type
            )));
            return Ok(Reply::small(body));
        }
    }
    let Response::Metadata {
        cluster_id,
        controller_id,
        nodes,
        ..
    } = call(
        context,
        Request::Metadata {
            topics: Some(Vec::new()),
            allow_auto_create: false,
        },
    )
    .await?
    else {
        return Err(HandlerError::UnexpectedResponse {
            request: "DescribeCluster",
        });
    };
    body.cluster_id = wire_string(cluster_id);
    body.controller_id = BrokerId(controller_id);
    body.brokers = nodes
        .iter()
        .map(|node| {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(node.node_id);
            broker.host = wire_string(node.host.clone());
            broker.port = node.port;
            broker.rack = None;
            broker
        })
        .collect();
    if request.include_cluster_authorized_operations {
        body.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    Ok(Reply::small(body))
}

fn broker(node: &NodeInfo) -> MetadataResponseBroker {
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(node.node_id);
    broker.host = wire_string(node.host.clone());
    broker.port = node.port;
    broker
}

fn topic_response(version: i16, topic: TopicInfo) -> MetadataResponseTopic {
    let mut response = MetadataResponseTopic::default();
    response.error_code = topic.error.code();
    // is_internal exists from v1; clients must not produce to the offsets topic.
    if version >= 1 {
        response.is_internal = myelin_core::broker::is_internal_topic(&topic.name);
    }
    // Unknown ids have no name: null from v10 (where the name is nullable), "" before.
    response.name = if topic.name.is_empty() && version >= 10 {
        None
    } else {
        Some(TopicName(wire_string(topic.name)))
    };
    if version >= 10 {
        response.topic_id = Uuid::from_u128(topic.topic_id);
    }
    response.partitions = topic
        .partitions
        .into_iter()
        .map(|partition| partition_response(version, partition))
        .collect();
    response
}

fn partition_response(version: i16, info: PartitionInfo) -> MetadataResponsePartition {
    let mut partition = MetadataResponsePartition::default();
    partition.error_code = info.error.code();
    partition.partition_index = info.index;
    partition.leader_id = BrokerId(info.leader);
    if version >= 7 {
        partition.leader_epoch = info.leader_epoch;
    }
    // Commitment is by majority, not by ISR; the ISR reported is the leader's view of the
    // replicas it heard from recently, when this node leads the partition (see
    // `PartitionInfo::isr`).
    partition.isr_nodes = info.isr.into_iter().map(BrokerId).collect();
    partition.replica_nodes = info.replicas.into_iter().map(BrokerId).collect();
    partition.offline_replicas = Vec::new();
    partition
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};

    #[test]
    fn topic_entries_encode_and_decode_for_every_version() {
        for version in 0..=13 {
            let mut body = MetadataResponse::default();
            body.brokers = vec![broker(&NodeInfo {
                node_id: 1,
                host: "127.0.0.1".into(),
                port: 9092,
            })];
            body.topics = vec![
                topic_response(
                    version,
                    TopicInfo {
                        name: "orders".into(),
                        topic_id: 7,
                        error: ErrorCode::None,
                        partitions: (0..2)
                            .map(|index| PartitionInfo {
                                index,
                                error: ErrorCode::None,
                                leader: index + 1,
                                leader_epoch: 4,
                                replicas: vec![1, 2, 3],
                                isr: vec![1, 2],
                            })
                            .collect(),
                    },
                ),
                topic_response(
                    version,
                    TopicInfo {
                        name: String::new(),
                        topic_id: 9,
                        error: ErrorCode::UnknownTopicId,
                        partitions: vec![],
                    },
                ),
            ];
            let mut encoded = BytesMut::new();
            body.encode(&mut encoded, version).unwrap();
            let decoded = MetadataResponse::decode(&mut encoded.freeze(), version).unwrap();
            assert_eq!(decoded.topics[0].partitions.len(), 2);
            assert_eq!(*decoded.topics[0].partitions[1].leader_id, 2);
            assert_eq!(decoded.topics[0].partitions[1].replica_nodes.len(), 3);
            assert_eq!(decoded.topics[0].partitions[1].isr_nodes.len(), 2);
            if version >= 7 {
                assert_eq!(decoded.topics[0].partitions[1].leader_epoch, 4);
            }
            if version >= 10 {
                assert_eq!(decoded.topics[0].topic_id, Uuid::from_u128(7));
                assert_eq!(decoded.topics[1].name, None);
            }
        }
    }
}
