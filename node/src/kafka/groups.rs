//! The consumer-group APIs of the classic protocol: FindCoordinator (api key 10, v0-6),
//! JoinGroup (11, v0-9), Heartbeat (12, v0-4), LeaveGroup (13, v0-5), SyncGroup (14, v0-5),
//! OffsetCommit (8, v2-9), OffsetFetch (9, v1-9), ListGroups (16, v0-5) and DescribeGroups
//! (15, v0-6).
//!
//! The core coordinates (see `myelin_core::broker` and `groups`); this module translates.
//! Version differences it handles:
//! - FindCoordinator v0-3 carry one key, v4+ a batch (`coordinator_keys`). Only group keys
//!   (type 0) exist here: a transaction key (type 1) is answered COORDINATOR_NOT_AVAILABLE.
//! - JoinGroup before v4 gets a member id at once; from v4 a new member is told
//!   MEMBER_ID_REQUIRED and rejoins with the id it is given (KIP-394).
//! - LeaveGroup v0-2 name one member; v3+ a batch, answered per member.
//! - OffsetFetch v0-7 name one group (a null topic list asks for everything committed);
//!   v8+ a batch of groups, each asked of the core in turn.
//! - DescribeGroups of a group nobody knows answers state "Dead", as Kafka does.
//!
//! The pure translations (`*_request` / `*_response`) are separate from the handlers so
//! the tests can check every advertised version without a running node.

use crate::kafka::dispatch::{call, wire_string, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::describe_groups_response::{
    DescribedGroup as WireDescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup as WireListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use myelin_core::api::{
    CoordinatorResult, DescribedGroup, ErrorCode, FetchedOffset, JoinRequest, LeavingMember,
    ListedGroup, OffsetCommitPartition, Request, Response,
};
use myelin_core::metadata::TopicPartition;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
/// DescribeGroups' "authorized operations not asked for".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

fn unexpected(request: &'static str) -> HandlerError {
    HandlerError::UnexpectedResponse { request }
}

/// The client address as Kafka shows it in DescribeGroups ("/127.0.0.1").
fn client_host(peer: SocketAddr) -> String {
    format!("/{}", peer.ip())
}

// ----- FindCoordinator -----

/// The keys a FindCoordinator asks about, in order.
fn coordinator_keys(version: i16, request: &FindCoordinatorRequest) -> Vec<String> {
    if version >= 4 {
        request
            .coordinator_keys
            .iter()
            .map(|key| key.to_string())
            .collect()
    } else {
        vec![request.key.to_string()]
    }
}

fn find_coordinator_response(
    version: i16,
    keys: &[String],
    key_type: i8,
    results: Vec<CoordinatorResult>,
) -> FindCoordinatorResponse {
    let mut by_key: BTreeMap<String, CoordinatorResult> = results
        .into_iter()
        .map(|result| (result.group_id.clone(), result))
        .collect();
    let coordinators: Vec<Coordinator> = keys
        .iter()
        .map(|key| {
            let mut coordinator = Coordinator::default();
            coordinator.key = wire_string(key.clone());
            let result = by_key.remove(key);
            match result.as_ref().and_then(|result| result.node.as_ref()) {
                Some(node) if key_type == KEY_TYPE_GROUP => {
                    coordinator.node_id = BrokerId(node.node_id);
                    coordinator.host = wire_string(node.host.clone());
                    coordinator.port = node.port;
                    coordinator.error_message = None;
                }
                _ => {
                    let error = result
                        .map(|result| result.error)
                        .filter(|error| *error != ErrorCode::None)
                        .unwrap_or(ErrorCode::CoordinatorNotAvailable);
                    coordinator.node_id = BrokerId(-1);
                    coordinator.port = -1;
                    coordinator.error_code = error.code();
                    coordinator.error_message =
                        Some(StrBytes::from_static_str(if key_type == KEY_TYPE_GROUP {
                            "no coordinator for this group yet"
                        } else {
                            "transactions are not supported yet"
                        }));
                }
            }
            coordinator
        })
        .collect();
    let mut body = FindCoordinatorResponse::default();
    if version >= 4 {
        body.coordinators = coordinators;
        return body;
    }
    if let Some(only) = coordinators.into_iter().next() {
        body.error_code = only.error_code;
        body.node_id = only.node_id;
        body.host = only.host;
        body.port = only.port;
        body.error_message = if version >= 1 {
            only.error_message
        } else {
            None
        };
    }
    body
}

pub(crate) async fn find_coordinator(
    context: &ConnectionContext,
    version: i16,
    request: FindCoordinatorRequest,
) -> Result<Reply, HandlerError> {
    let keys = coordinator_keys(version, &request);
    let results = if request.key_type == KEY_TYPE_GROUP {
        let Response::FindCoordinator(results) = call(
            context,
            Request::FindCoordinator {
                groups: keys.clone(),
            },
        )
        .await?
        else {
            return Err(unexpected("FindCoordinator"));
        };
        results
    } else {
        Vec::new()
    };
    Ok(Reply::small(find_coordinator_response(
        version,
        &keys,
        request.key_type,
        results,
    )))
}

// ----- JoinGroup, SyncGroup, Heartbeat, LeaveGroup -----

fn join_group_request(version: i16, request: &JoinGroupRequest, peer: SocketAddr) -> Request {
    Request::JoinGroup {
        group_id: request.group_id.to_string(),
        join: JoinRequest {
            member_id: request.member_id.to_string(),
            group_instance_id: request
                .group_instance_id
                .as_ref()
                .map(|instance| instance.to_string()),
            client_id: String::new(),
            client_host: client_host(peer),
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|protocol| (protocol.name.to_string(), protocol.metadata.clone()))
                .collect(),
            session_timeout_ms: request.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms: if version >= 1 {
                request.rebalance_timeout_ms
            } else {
                request.session_timeout_ms
            },
            require_member_id: version >= 4,
        },
    }
}

fn join_group_response(
    version: i16,
    protocol_type: &str,
    joined: myelin_core::api::JoinResponse,
) -> JoinGroupResponse {
    let mut body = JoinGroupResponse::default();
    body.error_code = joined.error.code();
    body.generation_id = joined.generation;
    body.protocol_name = if version >= 7 {
        joined.protocol_name.map(wire_string)
    } else {
        Some(wire_string(joined.protocol_name.unwrap_or_default()))
    };
    if version >= 7 && joined.error == ErrorCode::None {
        body.protocol_type = Some(wire_string(protocol_type));
    }
    body.leader = wire_string(joined.leader);
    body.member_id = wire_string(joined.member_id);
    body.members = joined
        .members
        .into_iter()
        .map(|(member_id, instance, metadata)| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = wire_string(member_id);
            if version >= 5 {
                member.group_instance_id = instance.map(wire_string);
            }
            member.metadata = metadata;
            member
        })
        .collect();
    body
}

pub(crate) async fn join_group(
    context: &ConnectionContext,
    version: i16,
    request: JoinGroupRequest,
    client_id: Option<&str>,
) -> Result<Reply, HandlerError> {
    let mut core_request = join_group_request(version, &request, context.peer);
    if let Request::JoinGroup { join, .. } = &mut core_request {
        join.client_id = client_id.unwrap_or_default().to_string();
    }
    let Response::JoinGroup(joined) = call(context, core_request).await? else {
        return Err(unexpected("JoinGroup"));
    };
    Ok(Reply::small(join_group_response(
        version,
        request.protocol_type.as_str(),
        joined,
    )))
}

pub(crate) async fn sync_group(
    context: &ConnectionContext,
    version: i16,
    request: SyncGroupRequest,
) -> Result<Reply, HandlerError> {
    let core_request = Request::SyncGroup {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
        assignments: request
            .assignments
            .iter()
            .map(|assignment| {
                (
                    assignment.member_id.to_string(),
                    assignment.assignment.clone(),
                )
            })
            .collect(),
    };
    let Response::SyncGroup(synced) = call(context, core_request).await? else {
        return Err(unexpected("SyncGroup"));
    };
    let mut body = SyncGroupResponse::default();
    body.error_code = synced.error.code();
    body.assignment = synced.assignment;
    if version >= 5 && synced.error == ErrorCode::None {
        body.protocol_type = request.protocol_type;
        body.protocol_name = request.protocol_name;
    }
    Ok(Reply::small(body))
}

pub(crate) async fn heartbeat(
    context: &ConnectionContext,
    _version: i16,
    request: HeartbeatRequest,
) -> Result<Reply, HandlerError> {
    let core_request = Request::Heartbeat {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
    };
    let Response::Heartbeat { error } = call(context, core_request).await? else {
        return Err(unexpected("Heartbeat"));
    };
    let mut body = HeartbeatResponse::default();
    body.error_code = error.code();
    Ok(Reply::small(body))
}

fn leaving_members(version: i16, request: &LeaveGroupRequest) -> Vec<LeavingMember> {
    if version >= 3 {
        request
            .members
            .iter()
            .map(|member| LeavingMember {
                member_id: member.member_id.to_string(),
                group_instance_id: member
                    .group_instance_id
                    .as_ref()
                    .map(|instance| instance.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            group_instance_id: None,
        }]
    }
}

fn leave_group_response(
    version: i16,
    error: ErrorCode,
    members: Vec<(LeavingMember, ErrorCode)>,
) -> LeaveGroupResponse {
    let mut body = LeaveGroupResponse::default();
    if version >= 3 {
        body.error_code = error.code();
        body.members = members
            .into_iter()
            .map(|(member, error)| {
                let mut response = MemberResponse::default();
                response.member_id = wire_string(member.member_id);
                response.group_instance_id = member.group_instance_id.map(wire_string);
                response.error_code = error.code();
                response
            })
            .collect();
    } else {
        // One member: its error is the request's.
        let member_error = members.first().map_or(ErrorCode::None, |(_, error)| *error);
        body.error_code = if error == ErrorCode::None {
            member_error
        } else {
            error
        }
        .code();
    }
    body
}

pub(crate) async fn leave_group(
    context: &ConnectionContext,
    version: i16,
    request: LeaveGroupRequest,
) -> Result<Reply, HandlerError> {
    let core_request = Request::LeaveGroup {
        group_id: request.group_id.to_string(),
        members: leaving_members(version, &request),
    };
    let Response::LeaveGroup { error, members } = call(context, core_request).await? else {
        return Err(unexpected("LeaveGroup"));
    };
    Ok(Reply::small(leave_group_response(version, error, members)))
}

// ----- OffsetCommit, OffsetFetch -----

fn offset_commit_request(request: &OffsetCommitRequest) -> Request {
    Request::OffsetCommit {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        generation: request.generation_id_or_member_epoch,
        commits: request
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| OffsetCommitPartition {
                        partition: TopicPartition::new(
                            topic.name.as_str(),
                            partition.partition_index,
                        ),
                        offset: partition.committed_offset,
                        metadata: partition
                            .committed_metadata
                            .as_ref()
                            .map(|metadata| metadata.to_string()),
                    })
            })
            .collect(),
    }
}

fn offset_commit_response(
    request: &OffsetCommitRequest,
    results: Vec<(TopicPartition, ErrorCode)>,
) -> OffsetCommitResponse {
    let errors: BTreeMap<TopicPartition, ErrorCode> = results.into_iter().collect();
    let mut body = OffsetCommitResponse::default();
    body.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut response = OffsetCommitResponseTopic::default();
            response.name = topic.name.clone();
            response.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let key = TopicPartition::new(topic.name.as_str(), partition.partition_index);
                    let mut result = OffsetCommitResponsePartition::default();
                    result.partition_index = partition.partition_index;
                    result.error_code = errors
                        .get(&key)
                        .copied()
                        .unwrap_or(ErrorCode::UnknownTopicOrPartition)
                        .code();
                    result
                })
                .collect();
            response
        })
        .collect();
    body
}

pub(crate) async fn offset_commit(
    context: &ConnectionContext,
    _version: i16,
    request: OffsetCommitRequest,
) -> Result<Reply, HandlerError> {
    let Response::OffsetCommit(results) = call(context, offset_commit_request(&request)).await?
    else {
        return Err(unexpected("OffsetCommit"));
    };
    Ok(Reply::small(offset_commit_response(&request, results)))
}

/// One group of an OffsetFetch: (group id, topics and partitions asked for; `None`: all).
type FetchedGroupRequest = (String, Option<Vec<TopicPartition>>);

fn offset_fetch_groups(version: i16, request: &OffsetFetchRequest) -> Vec<FetchedGroupRequest> {
    if version >= 8 {
        request
            .groups
            .iter()
            .map(|group| {
                let partitions = group.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .flat_map(|topic| {
                            topic
                                .partition_indexes
                                .iter()
                                .map(|index| TopicPartition::new(topic.name.as_str(), *index))
                        })
                        .collect()
                });
                (group.group_id.to_string(), partitions)
            })
            .collect()
    } else {
        let partitions = request.topics.as_ref().map(|topics| {
            topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partition_indexes
                        .iter()
                        .map(|index| TopicPartition::new(topic.name.as_str(), *index))
                })
                .collect()
        });
        vec![(request.group_id.to_string(), partitions)]
    }
}

/// The fetched offsets by topic, in first-seen order.
fn by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut topics: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for offset in offsets {
        match topics
            .iter_mut()
            .find(|(topic, _)| *topic == offset.partition.topic)
        {
            Some((_, list)) => list.push(offset),
            None => topics.push((offset.partition.topic.clone(), vec![offset])),
        }
    }
    topics
}

fn wire_metadata(offset: &FetchedOffset) -> Option<StrBytes> {
    Some(wire_string(offset.metadata.clone().unwrap_or_default()))
}

fn offset_fetch_response(
    version: i16,
    groups: Vec<(String, ErrorCode, Vec<FetchedOffset>)>,
) -> OffsetFetchResponse {
    let mut body = OffsetFetchResponse::default();
    if version >= 8 {
        body.groups = groups
            .into_iter()
            .map(|(group_id, error, offsets)| {
                let mut group = OffsetFetchResponseGroup::default();
                group.group_id = GroupId(wire_string(group_id));
                group.error_code = error.code();
                group.topics = by_topic(offsets)
                    .into_iter()
                    .map(|(name, offsets)| {
                        let mut topic = OffsetFetchResponseTopics::default();
                        topic.name = TopicName(wire_string(name));
                        topic.partitions = offsets
                            .iter()
                            .map(|offset| {
                                let mut partition = OffsetFetchResponsePartitions::default();
                                partition.partition_index = offset.partition.partition;
                                partition.committed_offset = offset.offset;
                                partition.metadata = wire_metadata(offset);
                                partition.error_code = offset.error.code();
                                partition
                            })
                            .collect();
                        topic
                    })
                    .collect();
                group
            })
            .collect();
        return body;
    }
    let Some((_, error, offsets)) = groups.into_iter().next() else {
        return body;
    };
    if version >= 2 {
        body.error_code = error.code();
    }
    body.topics = by_topic(offsets)
        .into_iter()
        .map(|(name, offsets)| {
            let mut topic = OffsetFetchResponseTopic::default();
            topic.name = TopicName(wire_string(name));
            topic.partitions = offsets
                .iter()
                .map(|offset| {
                    let mut partition = OffsetFetchResponsePartition::default();
                    partition.partition_index = offset.partition.partition;
                    partition.committed_offset = offset.offset;
                    partition.metadata = wire_metadata(offset);
                    // Before v2 a group-level error is carried by every partition.
                    partition.error_code = if version < 2 && error != ErrorCode::None {
                        error.code()
                    } else {
                        offset.error.code()
                    };
                    partition
                })
                .collect();
            topic
        })
        .collect();
    body
}

pub(crate) async fn offset_fetch(
    context: &ConnectionContext,
    version: i16,
    request: OffsetFetchRequest,
) -> Result<Reply, HandlerError> {
    let mut answered = Vec::new();
    for (group_id, partitions) in offset_fetch_groups(version, &request) {
        let asked = partitions.clone();
        let Response::OffsetFetch { error, partitions } = call(
            context,
            Request::OffsetFetch {
                group_id: group_id.clone(),
                partitions,
            },
        )
        .await?
        else {
            return Err(unexpected("OffsetFetch"));
        };
        // A group-level error still lists the partitions asked for (v0-1 carry it there).
        let partitions = if error != ErrorCode::None && partitions.is_empty() {
            asked
                .unwrap_or_default()
                .into_iter()
                .map(|partition| FetchedOffset {
                    partition,
                    offset: -1,
                    metadata: None,
                    error,
                })
                .collect()
        } else {
            partitions
        };
        answered.push((group_id, error, partitions));
    }
    Ok(Reply::small(offset_fetch_response(version, answered)))
}

// ----- ListGroups, DescribeGroups -----

fn list_groups_response(
    version: i16,
    request: &ListGroupsRequest,
    error: ErrorCode,
    groups: Vec<ListedGroup>,
) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|state| state.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|kind| kind.to_lowercase())
        .collect();
    let mut body = ListGroupsResponse::default();
    body.error_code = error.code();
    body.groups = groups
        .into_iter()
        .filter(|group| states.is_empty() || states.contains(&group.state.name().to_lowercase()))
        // Every group here is a classic one.
        .filter(|_| types.is_empty() || types.iter().any(|kind| kind == "classic"))
        .map(|group| {
            let mut listed = WireListedGroup::default();
            listed.group_id = GroupId(wire_string(group.group_id));
            listed.protocol_type = wire_string(group.protocol_type);
            if version >= 4 {
                listed.group_state = wire_string(group.state.name());
            }
            if version >= 5 {
                listed.group_type = wire_string("classic");
            }
            listed
        })
        .collect();
    body
}

pub(crate) async fn list_groups(
    context: &ConnectionContext,
    version: i16,
    request: ListGroupsRequest,
) -> Result<Reply, HandlerError> {
    let Response::ListGroups { error, groups } = call(context, Request::ListGroups).await? else {
        return Err(unexpected("ListGroups"));
    };
    Ok(Reply::small(list_groups_response(
        version, &request, error, groups,
    )))
}

fn describe_groups_response(version: i16, groups: Vec<DescribedGroup>) -> DescribeGroupsResponse {
    let mut body = DescribeGroupsResponse::default();
    body.groups = groups
        .into_iter()
        .map(|group| {
            let mut described = WireDescribedGroup::default();
            described.group_id = GroupId(wire_string(group.group_id));
            described.error_code = group.error.code();
            if version >= 3 {
                described.authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
            }
            match group.description {
                Some(description) => {
                    described.group_state = wire_string(description.state.name());
                    described.protocol_type = wire_string(description.protocol_type);
                    described.protocol_data = wire_string(description.protocol_name);
                    described.members = description
                        .members
                        .into_iter()
                        .map(|member| {
                            let mut wire = DescribedGroupMember::default();
                            wire.member_id = wire_string(member.member_id);
                            if version >= 4 {
                                wire.group_instance_id = member.group_instance_id.map(wire_string);
                            }
                            wire.client_id = wire_string(member.client_id);
                            wire.client_host = wire_string(member.client_host);
                            wire.member_metadata = member.metadata;
                            wire.member_assignment = member.assignment;
                            wire
                        })
                        .collect();
                }
                None if group.error == ErrorCode::None => {
                    described.group_state = StrBytes::from_static_str("Dead");
                }
                None => {}
            }
            described
        })
        .collect();
    body
}

pub(crate) async fn describe_groups(
    context: &ConnectionContext,
    version: i16,
    request: DescribeGroupsRequest,
) -> Result<Reply, HandlerError> {
    let groups = request
        .groups
        .iter()
        .map(|group| group.to_string())
        .collect();
    let Response::DescribeGroups(described) =
        call(context, Request::DescribeGroups { groups }).await?
    else {
        return Err(unexpected("DescribeGroups"));
    };
    Ok(Reply::small(describe_groups_response(version, described)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::versions::advertised_range;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::{ApiKey, ResponseKind};
    use kafka_protocol::protocol::Encodable;
    use myelin_core::api::{GroupDescription, GroupState, JoinResponse, MemberDescription};
    use myelin_core::metadata::NodeInfo;

    fn peer() -> SocketAddr {
        "127.0.0.1:50000".parse().unwrap()
    }

    fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
        let (min, max) = advertised_range(api_key).expect("advertised");
        min..=max
    }

    fn encodes(body: impl Into<ResponseKind>, version: i16) {
        let body = body.into();
        let mut buffer = BytesMut::new();
        match &body {
            ResponseKind::FindCoordinator(b) => b.encode(&mut buffer, version),
            ResponseKind::JoinGroup(b) => b.encode(&mut buffer, version),
            ResponseKind::LeaveGroup(b) => b.encode(&mut buffer, version),
            ResponseKind::OffsetCommit(b) => b.encode(&mut buffer, version),
            ResponseKind::OffsetFetch(b) => b.encode(&mut buffer, version),
            ResponseKind::ListGroups(b) => b.encode(&mut buffer, version),
            ResponseKind::DescribeGroups(b) => b.encode(&mut buffer, version),
            other => panic!("{other:?}"),
        }
        .unwrap_or_else(|error| panic!("v{version}: {error}"));
    }

    #[test]
    fn join_group_before_v4_needs_no_member_id_round_trip() {
        let mut request = JoinGroupRequest::default();
        request.group_id = GroupId(StrBytes::from_static_str("g"));
        request.session_timeout_ms = 10_000;
        request.rebalance_timeout_ms = 30_000;
        for version in versions(ApiKey::JoinGroup) {
            let Request::JoinGroup { group_id, join } =
                join_group_request(version, &request, peer())
            else {
                panic!("not a join");
            };
            assert_eq!(group_id, "g");
            assert_eq!(join.require_member_id, version >= 4, "v{version}");
            assert_eq!(join.client_host, "/127.0.0.1");
            let expected_rebalance = if version == 0 { 10_000 } else { 30_000 };
            assert_eq!(join.rebalance_timeout_ms, expected_rebalance, "v{version}");
        }
    }

    #[test]
    fn find_coordinator_answers_one_key_before_v4_and_a_batch_from_v4() {
        let node = NodeInfo {
            node_id: 2,
            host: "10.0.0.2".into(),
            port: 9092,
        };
        let results = vec![
            CoordinatorResult {
                group_id: "a".into(),
                error: ErrorCode::None,
                node: Some(node.clone()),
            },
            CoordinatorResult {
                group_id: "b".into(),
                error: ErrorCode::CoordinatorNotAvailable,
                node: None,
            },
        ];
        for version in versions(ApiKey::FindCoordinator) {
            let keys: Vec<String> = if version >= 4 {
                vec!["a".into(), "b".into()]
            } else {
                vec!["a".into()]
            };
            let body = find_coordinator_response(version, &keys, KEY_TYPE_GROUP, results.clone());
            if version >= 4 {
                assert_eq!(body.coordinators.len(), 2);
                assert_eq!(body.coordinators[0].node_id, BrokerId(2));
                assert_eq!(body.coordinators[1].error_code, 15);
            } else {
                assert_eq!(
                    (body.node_id, body.port, body.error_code),
                    (BrokerId(2), 9092, 0)
                );
            }
            encodes(body, version);
            // A transaction key is not served.
            let body = find_coordinator_response(version, &keys, 1, Vec::new());
            let error = if version >= 4 {
                body.coordinators[0].error_code
            } else {
                body.error_code
            };
            assert_eq!(error, ErrorCode::CoordinatorNotAvailable.code());
            encodes(body, version);
        }
    }

    #[test]
    fn every_group_response_encodes_in_every_advertised_version() {
        let joined = JoinResponse {
            error: ErrorCode::None,
            generation: 3,
            protocol_name: Some("range".into()),
            leader: "m1".into(),
            member_id: "m1".into(),
            members: vec![("m1".into(), Some("i1".into()), Bytes::from_static(b"x"))],
        };
        for version in versions(ApiKey::JoinGroup) {
            encodes(
                join_group_response(version, "consumer", joined.clone()),
                version,
            );
        }
        let leaving = vec![(
            LeavingMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
            },
            ErrorCode::UnknownMemberId,
        )];
        for version in versions(ApiKey::LeaveGroup) {
            let body = leave_group_response(version, ErrorCode::None, leaving.clone());
            // Before v3 the one member's error is the request's.
            assert_eq!(body.error_code, if version >= 3 { 0 } else { 25 });
            encodes(body, version);
        }
        let fetched = vec![FetchedOffset {
            partition: TopicPartition::new("orders", 1),
            offset: 42,
            metadata: None,
            error: ErrorCode::None,
        }];
        for version in versions(ApiKey::OffsetFetch) {
            let body = offset_fetch_response(
                version,
                vec![("g".into(), ErrorCode::None, fetched.clone())],
            );
            encodes(body, version);
        }
        let listed = vec![ListedGroup {
            group_id: "g".into(),
            protocol_type: "consumer".into(),
            state: GroupState::Stable,
        }];
        for version in versions(ApiKey::ListGroups) {
            let body = list_groups_response(
                version,
                &ListGroupsRequest::default(),
                ErrorCode::None,
                listed.clone(),
            );
            assert_eq!(body.groups.len(), 1);
            encodes(body, version);
        }
        let described = vec![
            DescribedGroup {
                group_id: "g".into(),
                error: ErrorCode::None,
                description: Some(GroupDescription {
                    state: GroupState::Stable,
                    protocol_type: "consumer".into(),
                    protocol_name: "range".into(),
                    members: vec![MemberDescription {
                        member_id: "m1".into(),
                        group_instance_id: Some("i1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        metadata: Bytes::from_static(b"x"),
                        assignment: Bytes::from_static(b"y"),
                    }],
                }),
            },
            DescribedGroup {
                group_id: "unknown".into(),
                error: ErrorCode::None,
                description: None,
            },
        ];
        for version in versions(ApiKey::DescribeGroups) {
            let body = describe_groups_response(version, described.clone());
            assert_eq!(body.groups[1].group_state.as_str(), "Dead");
            encodes(body, version);
        }
    }

    #[test]
    fn offset_commit_answers_every_partition_it_was_asked() {
        let mut partition =
            kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default(
            );
        partition.partition_index = 4;
        partition.committed_offset = 10;
        partition.committed_metadata = Some(StrBytes::from_static_str("meta"));
        let mut topic =
            kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default();
        topic.name = TopicName(StrBytes::from_static_str("orders"));
        topic.partitions = vec![partition];
        let mut request = OffsetCommitRequest::default();
        request.group_id = GroupId(StrBytes::from_static_str("g"));
        request.generation_id_or_member_epoch = 2;
        request.member_id = StrBytes::from_static_str("m1");
        request.topics = vec![topic];
        let Request::OffsetCommit {
            generation,
            commits,
            ..
        } = offset_commit_request(&request)
        else {
            panic!("not a commit");
        };
        assert_eq!(generation, 2);
        assert_eq!(commits[0].partition, TopicPartition::new("orders", 4));
        assert_eq!(commits[0].metadata.as_deref(), Some("meta"));
        let results = vec![(
            TopicPartition::new("orders", 4),
            ErrorCode::IllegalGeneration,
        )];
        for version in versions(ApiKey::OffsetCommit) {
            let body = offset_commit_response(&request, results.clone());
            assert_eq!(body.topics[0].partitions[0].error_code, 22);
            encodes(body, version);
        }
    }

    #[test]
    fn offset_fetch_reads_one_group_before_v8_and_a_batch_from_v8() {
        let mut request = OffsetFetchRequest::default();
        request.group_id = GroupId(StrBytes::from_static_str("g"));
        request.topics = None;
        assert_eq!(
            offset_fetch_groups(7, &request),
            vec![("g".to_string(), None)]
        );
        let mut group =
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default();
        group.group_id = GroupId(StrBytes::from_static_str("h"));
        let mut topic =
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopics::default();
        topic.name = TopicName(StrBytes::from_static_str("orders"));
        topic.partition_indexes = vec![0, 2];
        group.topics = Some(vec![topic]);
        let mut batched = OffsetFetchRequest::default();
        batched.groups = vec![group];
        assert_eq!(
            offset_fetch_groups(8, &batched),
            vec![(
                "h".to_string(),
                Some(vec![
                    TopicPartition::new("orders", 0),
                    TopicPartition::new("orders", 2)
                ])
            )]
        );
    }
}
