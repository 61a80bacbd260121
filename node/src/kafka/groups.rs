//! The consumer-group APIs of the classic protocol: FindCoordinator (api key 10, v0-6),
//! JoinGroup (11, v0-9), Heartbeat (12, v0-4), LeaveGroup (13, v0-5), SyncGroup (14, v0-5),
//! OffsetCommit (8, v2-9), OffsetFetch (9, v1-9), ListGroups (16, v0-5) and DescribeGroups
//! (15, v0-6).
//!
//! The core coordinates (see `myelin_core::broker` and `groups`); this module translates.
//! Version differences it handles:
//! - FindCoordinator v0-3 carry one key, v4+ a batch (`coordinator_keys`). Group keys (type
//!   0) ask the core for group coordinators, transactional ids (type 1, from v1) for
//!   transaction coordinators; an unknown key type is answered INVALID_REQUEST, as Kafka does.
//! - JoinGroup before v4 gets a member id at once; from v4 a new member is told
//!   MEMBER_ID_REQUIRED and rejoins with the id it is given (KIP-394). JoinGroup v0 has no
//!   rebalance timeout: the session timeout stands in, as in Kafka.
//! - LeaveGroup v0-2 name one member; v3+ a batch, answered per member.
//! - Static membership (group instance ids) reaches the core through JoinGroup and
//!   LeaveGroup only; SyncGroup, Heartbeat and OffsetCommit identify members by id.
//! - OffsetCommit starts at v2 and OffsetFetch at v1: the crate no longer decodes the
//!   versions Kafka 4 removed (KIP-896), and no tested client sends them.
//! - OffsetFetch v1-7 name one group (from v2 a null topic list asks for everything
//!   committed); v8+ a batch of groups, each asked of the core in turn.
//! - DescribeGroups of a group nobody knows answers state "Dead" with no error before v6
//!   and GROUP_ID_NOT_FOUND from v6 (KIP-1043), as Kafka does.
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
    CoordinatorResult, DescribedGroup, ErrorCode, FetchedOffset, JoinRequest, JoinResponse,
    LeavingMember, ListedGroup, OffsetCommitPartition, Request, Response, SyncResponse,
};
use myelin_core::metadata::{NodeInfo, TopicPartition};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// FindCoordinator key types (KIP-98): a consumer group, a transactional id.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// DescribeGroups' "authorized operations not asked for".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// What a group's authorized operations are when asked for: with no authorizer, every one
/// Kafka's `AclEntry.supportedOperations` lists for a group that applies here (READ 3,
/// DELETE 6, DESCRIBE 8), as a bit field; Kafka 4 adds DESCRIBE_CONFIGS and ALTER_CONFIGS
/// for its group configs, which do not exist here.
const GROUP_AUTHORIZED_OPERATIONS: i32 = crate::kafka::metadata::operations(&[3, 6, 8]);

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

/// One key's entry: its coordinator, or an error with node id -1, host "" and port -1.
fn coordinator_entry(key: &str, answer: Result<&NodeInfo, (ErrorCode, String)>) -> Coordinator {
    let mut coordinator = Coordinator::default();
    coordinator.key = wire_string(key);
    match answer {
        Ok(node) => {
            coordinator.node_id = BrokerId(node.node_id);
            coordinator.host = wire_string(node.host.clone());
            coordinator.port = node.port;
            coordinator.error_message = None;
        }
        Err((error, message)) => {
            coordinator.node_id = BrokerId(-1);
            coordinator.host = StrBytes::default();
            coordinator.port = -1;
            coordinator.error_code = error.code();
            coordinator.error_message = Some(wire_string(message));
        }
    }
    coordinator
}

/// What a key of `key_type` is, in error messages; `None` for a key type Kafka lacks.
fn key_kind(key_type: i8) -> Option<&'static str> {
    match key_type {
        KEY_TYPE_GROUP => Some("group"),
        KEY_TYPE_TRANSACTION => Some("transactional id"),
        _ => None,
    }
}

/// The answer for `keys` of `key_type`, given the core's `results` for them (group keys
/// and transactional ids alike come back as `CoordinatorResult`s named by their key).
fn find_coordinator_response(
    version: i16,
    keys: &[String],
    key_type: i8,
    results: &[CoordinatorResult],
) -> FindCoordinatorResponse {
    // Looked up, not consumed: a key asked twice in one batch gets the same answer twice.
    let by_key: BTreeMap<&str, &CoordinatorResult> = results
        .iter()
        .map(|result| (result.group_id.as_str(), result))
        .collect();
    let coordinators: Vec<Coordinator> = keys
        .iter()
        .map(|key| {
            let answer = match key_kind(key_type) {
                Some(kind) => match by_key.get(key.as_str()) {
                    Some(CoordinatorResult {
                        error: ErrorCode::None,
                        node: Some(node),
                        ..
                    }) => Ok(node),
                    Some(CoordinatorResult { error, .. }) if *error != ErrorCode::None => Err((
                        *error,
                        format!("no coordinator for {kind} {key}: {error:?}"),
                    )),
                    // The core answers every key; a missing or node-less answer is retriable.
                    _ => Err((
                        ErrorCode::CoordinatorNotAvailable,
                        format!("no coordinator for {kind} {key} yet"),
                    )),
                },
                None => Err((
                    ErrorCode::InvalidRequest,
                    format!("unknown coordinator key type {key_type}"),
                )),
            };
            coordinator_entry(key, answer)
        })
        .collect();
    let mut body = FindCoordinatorResponse::default();
    if version >= 4 {
        body.coordinators = coordinators;
        return body;
    }
    // v0-3 carry exactly one key, at the top level (key itself is not echoed).
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

/// The core request for `keys` of `key_type`; `None` when there is nothing to ask (no keys,
/// or a key type Kafka does not define).
fn find_coordinator_core_request(key_type: i8, keys: &[String]) -> Option<Request> {
    if keys.is_empty() {
        return None;
    }
    match key_type {
        KEY_TYPE_GROUP => Some(Request::FindCoordinator {
            groups: keys.to_vec(),
        }),
        KEY_TYPE_TRANSACTION => Some(Request::FindTransactionCoordinator {
            transactional_ids: keys.to_vec(),
        }),
        _ => None,
    }
}

pub(crate) async fn find_coordinator(
    context: &ConnectionContext,
    version: i16,
    request: FindCoordinatorRequest,
) -> Result<Reply, HandlerError> {
    let keys = coordinator_keys(version, &request);
    let results = match find_coordinator_core_request(request.key_type, &keys) {
        Some(core_request) => {
            let Response::FindCoordinator(results) = call(context, core_request).await? else {
                return Err(unexpected("FindCoordinator"));
            };
            results
        }
        None => Vec::new(),
    };
    Ok(Reply::small(find_coordinator_response(
        version,
        &keys,
        request.key_type,
        &results,
    )))
}

// ----- JoinGroup, SyncGroup, Heartbeat, LeaveGroup -----

/// `client_id` comes from the request header; DescribeGroups shows it with the peer's host.
fn join_group_request(
    version: i16,
    request: &JoinGroupRequest,
    client_id: &str,
    peer: SocketAddr,
) -> Request {
    Request::JoinGroup {
        group_id: request.group_id.to_string(),
        join: JoinRequest {
            member_id: request.member_id.to_string(),
            group_instance_id: request
                .group_instance_id
                .as_ref()
                .map(|instance| instance.to_string()),
            client_id: client_id.to_string(),
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
    joined: JoinResponse,
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
    let core_request = join_group_request(
        version,
        &request,
        client_id.unwrap_or_default(),
        context.peer,
    );
    let Response::JoinGroup(joined) = call(context, core_request).await? else {
        return Err(unexpected("JoinGroup"));
    };
    Ok(Reply::small(join_group_response(
        version,
        request.protocol_type.as_str(),
        joined,
    )))
}

fn sync_group_request(request: &SyncGroupRequest) -> Request {
    Request::SyncGroup {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request
            .group_instance_id
            .as_ref()
            .map(|instance| instance.to_string()),
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
    }
}

/// The answer to a SyncGroup. From v5 it names the protocol type and name, which the
/// client checks against its own: the core does not return them, and a successful sync
/// means they match the group's, so the request's are echoed.
fn sync_group_response(
    version: i16,
    request: &SyncGroupRequest,
    synced: SyncResponse,
) -> SyncGroupResponse {
    let mut body = SyncGroupResponse::default();
    body.error_code = synced.error.code();
    body.assignment = synced.assignment;
    if version >= 5 && synced.error == ErrorCode::None {
        body.protocol_type = request.protocol_type.clone();
        body.protocol_name = request.protocol_name.clone();
    }
    body
}

pub(crate) async fn sync_group(
    context: &ConnectionContext,
    version: i16,
    request: SyncGroupRequest,
) -> Result<Reply, HandlerError> {
    let Response::SyncGroup(synced) = call(context, sync_group_request(&request)).await? else {
        return Err(unexpected("SyncGroup"));
    };
    Ok(Reply::small(sync_group_response(version, &request, synced)))
}

fn heartbeat_request(request: &HeartbeatRequest) -> Request {
    Request::Heartbeat {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request
            .group_instance_id
            .as_ref()
            .map(|instance| instance.to_string()),
        generation: request.generation_id,
    }
}

/// Every Heartbeat version answers an error code alone (throttle time from v1 stays 0).
fn heartbeat_response(error: ErrorCode) -> HeartbeatResponse {
    let mut body = HeartbeatResponse::default();
    body.error_code = error.code();
    body
}

pub(crate) async fn heartbeat(
    context: &ConnectionContext,
    _version: i16,
    request: HeartbeatRequest,
) -> Result<Reply, HandlerError> {
    let Response::Heartbeat { error } = call(context, heartbeat_request(&request)).await? else {
        return Err(unexpected("Heartbeat"));
    };
    Ok(Reply::small(heartbeat_response(error)))
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
        group_instance_id: request
            .group_instance_id
            .as_ref()
            .map(|instance| instance.to_string()),
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
                        // -1 below v6, which lacks the field.
                        leader_epoch: partition.committed_leader_epoch,
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

/// Whether offsets awaiting a transaction's marker are answered UNSTABLE_OFFSET_COMMIT
/// (KIP-447, v7+; a partition-level error in both the one-group and the batched form).
fn requires_stable(version: i16, request: &OffsetFetchRequest) -> bool {
    version >= 7 && request.require_stable
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
                                partition.committed_leader_epoch = offset.leader_epoch;
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
                    // Encoded from v5 on.
                    partition.committed_leader_epoch = offset.leader_epoch;
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
                require_stable: requires_stable(version, &request),
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
                    leader_epoch: -1,
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

/// DescribeGroups' answer; `include_authorized_operations` as the request (v3+) asks, as
/// Kafka answers it: for every group described without error, unknown ones included.
fn describe_groups_response(
    version: i16,
    include_authorized_operations: bool,
    groups: Vec<DescribedGroup>,
) -> DescribeGroupsResponse {
    let mut body = DescribeGroupsResponse::default();
    body.groups = groups
        .into_iter()
        .map(|group| {
            let mut described = WireDescribedGroup::default();
            described.error_code = group.error.code();
            if version >= 3 {
                let asked = include_authorized_operations
                    && matches!(group.error, ErrorCode::None | ErrorCode::GroupIdNotFound);
                described.authorized_operations = if asked {
                    GROUP_AUTHORIZED_OPERATIONS
                } else {
                    AUTHORIZED_OPERATIONS_OMITTED
                };
            }
            // An unknown group: the core says so with no description and no error (or,
            // should it ever, GROUP_ID_NOT_FOUND); each version has its own way to tell.
            let unknown = group.description.is_none()
                && matches!(group.error, ErrorCode::None | ErrorCode::GroupIdNotFound);
            if unknown && version >= 6 {
                described.error_code = ErrorCode::GroupIdNotFound.code();
                described.error_message =
                    Some(wire_string(format!("group {} not found", group.group_id)));
            } else if unknown {
                // Before v6 Kafka describes an unknown group as a dead one, without error.
                described.error_code = ErrorCode::None.code();
                described.group_state = StrBytes::from_static_str("Dead");
            }
            described.group_id = GroupId(wire_string(group.group_id));
            if let Some(description) = group.description {
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
    Ok(Reply::small(describe_groups_response(
        version,
        request.include_authorized_operations,
        described,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::test_support::{over_the_wire, text, versions};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::leave_group_request::MemberIdentity;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{ApiKey, RequestKind};
    use kafka_protocol::protocol::Encodable;
    use myelin_core::api::{GroupDescription, GroupState, MemberDescription};

    fn peer() -> SocketAddr {
        "127.0.0.1:50000".parse().unwrap()
    }

    fn group(value: &'static str) -> GroupId {
        GroupId(text(value))
    }

    fn stable_description() -> GroupDescription {
        GroupDescription {
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
        }
    }

    // ----- FindCoordinator -----

    fn find_coordinator_request(version: i16, key_type: i8) -> FindCoordinatorRequest {
        let mut request = FindCoordinatorRequest::default();
        if version >= 4 {
            request.coordinator_keys = vec![text("a"), text("b"), text("a")];
        } else {
            request.key = text("a");
        }
        if version >= 1 {
            request.key_type = key_type;
        }
        over_the_wire(&request, version)
    }

    #[test]
    fn find_coordinator_reads_one_key_before_v4_and_a_batch_from_v4() {
        for version in versions(ApiKey::FindCoordinator) {
            let request = find_coordinator_request(version, KEY_TYPE_GROUP);
            let expected: &[&str] = if version >= 4 {
                &["a", "b", "a"]
            } else {
                &["a"]
            };
            assert_eq!(coordinator_keys(version, &request), expected, "v{version}");
        }
    }

    #[test]
    fn find_coordinator_answers_each_key_with_its_node_or_an_error_without_a_node() {
        let node = NodeInfo {
            node_id: 2,
            host: "10.0.0.2".into(),
            port: 9092,
        };
        let results = vec![
            CoordinatorResult {
                group_id: "a".into(),
                error: ErrorCode::None,
                node: Some(node),
            },
            CoordinatorResult {
                group_id: "b".into(),
                error: ErrorCode::CoordinatorNotAvailable,
                node: None,
            },
        ];
        for version in versions(ApiKey::FindCoordinator) {
            let request = find_coordinator_request(version, KEY_TYPE_GROUP);
            let keys = coordinator_keys(version, &request);
            let body = find_coordinator_response(version, &keys, KEY_TYPE_GROUP, &results);
            let body = over_the_wire(&body, version);
            if version >= 4 {
                let answers: Vec<(&str, i32, &str, i32, i16)> = body
                    .coordinators
                    .iter()
                    .map(|c| {
                        (
                            c.key.as_str(),
                            c.node_id.0,
                            c.host.as_str(),
                            c.port,
                            c.error_code,
                        )
                    })
                    .collect();
                // A key asked twice is answered twice, the same way.
                assert_eq!(
                    answers,
                    vec![
                        ("a", 2, "10.0.0.2", 9092, 0),
                        ("b", -1, "", -1, 15),
                        ("a", 2, "10.0.0.2", 9092, 0),
                    ]
                );
                assert_eq!(body.coordinators[0].error_message, None);
            } else {
                assert_eq!(
                    (
                        body.node_id.0,
                        body.host.as_str(),
                        body.port,
                        body.error_code
                    ),
                    (2, "10.0.0.2", 9092, 0),
                    "v{version}"
                );
            }
        }
    }

    #[test]
    fn find_coordinator_of_a_group_the_core_did_not_answer_is_retriable() {
        for version in versions(ApiKey::FindCoordinator) {
            let keys = vec!["orphan".to_string()];
            let body = find_coordinator_response(version, &keys, KEY_TYPE_GROUP, &[]);
            let body = over_the_wire(&body, version);
            let (node_id, port, error) = if version >= 4 {
                let only = &body.coordinators[0];
                (only.node_id.0, only.port, only.error_code)
            } else {
                (body.node_id.0, body.port, body.error_code)
            };
            assert_eq!((node_id, port, error), (-1, -1, 15), "v{version}");
        }
    }

    #[test]
    fn find_coordinator_asks_the_core_for_groups_or_transactional_ids_by_key_type() {
        let keys = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            find_coordinator_core_request(KEY_TYPE_GROUP, &keys),
            Some(Request::FindCoordinator {
                groups: keys.clone()
            })
        );
        assert_eq!(
            find_coordinator_core_request(KEY_TYPE_TRANSACTION, &keys),
            Some(Request::FindTransactionCoordinator {
                transactional_ids: keys.clone()
            })
        );
        assert_eq!(find_coordinator_core_request(7, &keys), None);
        assert_eq!(find_coordinator_core_request(KEY_TYPE_GROUP, &[]), None);
        // v0 has no key type: its default (0) is a group.
        let request = find_coordinator_request(0, KEY_TYPE_TRANSACTION);
        assert_eq!(request.key_type, KEY_TYPE_GROUP);
    }

    #[test]
    fn find_coordinator_answers_transactional_ids_like_groups_in_every_version() {
        let node = NodeInfo {
            node_id: 3,
            host: "10.0.0.3".into(),
            port: 9093,
        };
        // Key types exist from v1; kafka-python sends v6 (batched), librdkafka v2.
        for version in 1..=*versions(ApiKey::FindCoordinator).end() {
            let request = find_coordinator_request(version, KEY_TYPE_TRANSACTION);
            let keys = coordinator_keys(version, &request);
            let results = vec![
                CoordinatorResult {
                    group_id: "a".into(),
                    error: ErrorCode::None,
                    node: Some(node.clone()),
                },
                CoordinatorResult {
                    group_id: "b".into(),
                    error: ErrorCode::CoordinatorLoadInProgress,
                    node: None,
                },
            ];
            let body = find_coordinator_response(version, &keys, request.key_type, &results);
            let body = over_the_wire(&body, version);
            if version >= 4 {
                let answers: Vec<(&str, i32, i32, i16)> = body
                    .coordinators
                    .iter()
                    .map(|c| (c.key.as_str(), c.node_id.0, c.port, c.error_code))
                    .collect();
                assert_eq!(
                    answers,
                    vec![("a", 3, 9093, 0), ("b", -1, -1, 14), ("a", 3, 9093, 0)]
                );
            } else {
                assert_eq!(
                    (
                        body.node_id.0,
                        body.host.as_str(),
                        body.port,
                        body.error_code
                    ),
                    (3, "10.0.0.3", 9093, 0),
                    "v{version}"
                );
            }
            // A transactional id the core left unanswered is retriable, never a node.
            let body = find_coordinator_response(version, &keys, request.key_type, &[]);
            let body = over_the_wire(&body, version);
            let (node_id, error) = if version >= 4 {
                (
                    body.coordinators[0].node_id.0,
                    body.coordinators[0].error_code,
                )
            } else {
                (body.node_id.0, body.error_code)
            };
            assert_eq!((node_id, error), (-1, 15), "v{version}");
        }
    }

    #[test]
    fn find_coordinator_of_an_unknown_key_type_never_names_a_node() {
        // Key types exist from v1.
        for version in 1..=*versions(ApiKey::FindCoordinator).end() {
            let request = find_coordinator_request(version, 7);
            let keys = coordinator_keys(version, &request);
            let body = find_coordinator_response(version, &keys, request.key_type, &[]);
            let body = over_the_wire(&body, version);
            let message = "unknown coordinator key type 7";
            if version >= 4 {
                assert_eq!(body.coordinators.len(), 3);
                for coordinator in &body.coordinators {
                    assert_eq!((coordinator.node_id.0, coordinator.error_code), (-1, 42));
                    assert_eq!(coordinator.error_message.as_deref(), Some(message));
                }
            } else {
                assert_eq!((body.node_id.0, body.error_code), (-1, 42));
                assert_eq!(body.error_message.as_deref(), Some(message));
            }
        }
    }

    // ----- JoinGroup, SyncGroup, Heartbeat, LeaveGroup -----

    fn join_request(version: i16) -> JoinGroupRequest {
        let mut protocol = JoinGroupRequestProtocol::default();
        protocol.name = text("range");
        protocol.metadata = Bytes::from_static(b"meta");
        let mut request = JoinGroupRequest::default();
        request.group_id = group("g");
        request.session_timeout_ms = 10_000;
        if version >= 1 {
            request.rebalance_timeout_ms = 30_000;
        }
        request.member_id = text("m1");
        if version >= 5 {
            request.group_instance_id = Some(text("i1"));
        }
        request.protocol_type = text("consumer");
        request.protocols = vec![protocol];
        if version >= 8 {
            request.reason = Some(text("rejoining"));
        }
        over_the_wire(&request, version)
    }

    #[test]
    fn join_group_before_v4_needs_no_member_id_round_trip() {
        for version in versions(ApiKey::JoinGroup) {
            let Request::JoinGroup { group_id, join } =
                join_group_request(version, &join_request(version), "client", peer())
            else {
                panic!("not a join");
            };
            assert_eq!(group_id, "g");
            assert_eq!(join.require_member_id, version >= 4, "v{version}");
            assert_eq!(join.member_id, "m1");
            assert_eq!(join.client_id, "client");
            assert_eq!(join.client_host, "/127.0.0.1");
            assert_eq!(join.protocol_type, "consumer");
            assert_eq!(
                join.protocols,
                vec![("range".to_string(), Bytes::from_static(b"meta"))]
            );
            assert_eq!(join.session_timeout_ms, 10_000);
            // v0 has no rebalance timeout: the session timeout stands in.
            let expected_rebalance = if version == 0 { 10_000 } else { 30_000 };
            assert_eq!(join.rebalance_timeout_ms, expected_rebalance, "v{version}");
            let expected_instance = (version >= 5).then(|| "i1".to_string());
            assert_eq!(join.group_instance_id, expected_instance, "v{version}");
        }
    }

    #[test]
    fn join_group_client_host_is_shown_as_kafka_shows_it() {
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert_eq!(client_host(peer()), "/127.0.0.1");
        assert_eq!(client_host(v6), "/::1");
    }

    #[test]
    fn join_group_response_carries_what_each_version_has() {
        let joined = JoinResponse {
            error: ErrorCode::None,
            generation: 3,
            protocol_name: Some("range".into()),
            leader: "m1".into(),
            member_id: "m1".into(),
            members: vec![("m1".into(), Some("i1".into()), Bytes::from_static(b"x"))],
        };
        for version in versions(ApiKey::JoinGroup) {
            let body = join_group_response(version, "consumer", joined.clone());
            let body = over_the_wire(&body, version);
            assert_eq!(body.generation_id, 3);
            assert_eq!(body.protocol_name.as_deref(), Some("range"));
            let protocol_type = (version >= 7).then_some("consumer");
            assert_eq!(body.protocol_type.as_deref(), protocol_type, "v{version}");
            assert_eq!(body.members.len(), 1);
            let instance = (version >= 5).then_some("i1");
            assert_eq!(
                body.members[0].group_instance_id.as_deref(),
                instance,
                "v{version}"
            );
            assert!(!body.skip_assignment);
        }
    }

    #[test]
    fn join_group_member_id_required_gives_the_id_in_every_version() {
        let refused = JoinResponse {
            error: ErrorCode::MemberIdRequired,
            generation: -1,
            protocol_name: None,
            leader: String::new(),
            member_id: "assigned".into(),
            members: Vec::new(),
        };
        for version in versions(ApiKey::JoinGroup) {
            let body = join_group_response(version, "consumer", refused.clone());
            let body = over_the_wire(&body, version);
            assert_eq!(body.error_code, 79);
            assert_eq!(body.member_id.as_str(), "assigned");
            // Non-nullable before v7: an empty name, never null.
            let name = if version >= 7 { None } else { Some("") };
            assert_eq!(body.protocol_name.as_deref(), name, "v{version}");
            assert_eq!(body.protocol_type, None);
        }
    }

    fn sync_request(version: i16) -> SyncGroupRequest {
        let mut assignment = SyncGroupRequestAssignment::default();
        assignment.member_id = text("m2");
        assignment.assignment = Bytes::from_static(b"for m2");
        let mut request = SyncGroupRequest::default();
        request.group_id = group("g");
        request.generation_id = 4;
        request.member_id = text("m1");
        if version >= 3 {
            request.group_instance_id = Some(text("i1"));
        }
        if version >= 5 {
            request.protocol_type = Some(text("consumer"));
            request.protocol_name = Some(text("range"));
        }
        request.assignments = vec![assignment];
        over_the_wire(&request, version)
    }

    #[test]
    fn sync_group_passes_the_leaders_assignments_and_answers_each_version() {
        for version in versions(ApiKey::SyncGroup) {
            let request = sync_request(version);
            assert_eq!(
                sync_group_request(&request),
                Request::SyncGroup {
                    group_id: "g".into(),
                    member_id: "m1".into(),
                    group_instance_id: request
                        .group_instance_id
                        .as_ref()
                        .map(|instance| instance.to_string()),
                    generation: 4,
                    assignments: vec![("m2".into(), Bytes::from_static(b"for m2"))],
                }
            );
            let synced = SyncResponse {
                error: ErrorCode::None,
                assignment: Bytes::from_static(b"for m1"),
            };
            let body = over_the_wire(&sync_group_response(version, &request, synced), version);
            assert_eq!(body.assignment, Bytes::from_static(b"for m1"));
            let (protocol_type, protocol_name) = if version >= 5 {
                (Some("consumer"), Some("range"))
            } else {
                (None, None)
            };
            assert_eq!(body.protocol_type.as_deref(), protocol_type, "v{version}");
            assert_eq!(body.protocol_name.as_deref(), protocol_name, "v{version}");
            let failed = SyncResponse {
                error: ErrorCode::RebalanceInProgress,
                assignment: Bytes::new(),
            };
            let body = over_the_wire(&sync_group_response(version, &request, failed), version);
            assert_eq!(body.error_code, 27);
            assert_eq!(body.protocol_type, None);
        }
    }

    #[test]
    fn heartbeat_translates_and_answers_every_version() {
        for version in versions(ApiKey::Heartbeat) {
            let mut request = HeartbeatRequest::default();
            request.group_id = group("g");
            request.generation_id = 2;
            request.member_id = text("m1");
            if version >= 3 {
                request.group_instance_id = Some(text("i1"));
            }
            let request = over_the_wire(&request, version);
            assert_eq!(
                heartbeat_request(&request),
                Request::Heartbeat {
                    group_id: "g".into(),
                    member_id: "m1".into(),
                    group_instance_id: request
                        .group_instance_id
                        .as_ref()
                        .map(|instance| instance.to_string()),
                    generation: 2,
                }
            );
            let body = over_the_wire(&heartbeat_response(ErrorCode::RebalanceInProgress), version);
            assert_eq!(body.error_code, 27);
        }
    }

    #[test]
    fn leave_group_names_one_member_before_v3_and_a_batch_from_v3() {
        for version in versions(ApiKey::LeaveGroup) {
            let mut request = LeaveGroupRequest::default();
            request.group_id = group("g");
            if version >= 3 {
                let mut dynamic = MemberIdentity::default();
                dynamic.member_id = text("m1");
                let mut fixed = MemberIdentity::default();
                fixed.group_instance_id = Some(text("i2"));
                request.members = vec![dynamic, fixed];
            } else {
                request.member_id = text("m1");
            }
            let request = over_the_wire(&request, version);
            let mut expected = vec![LeavingMember {
                member_id: "m1".into(),
                group_instance_id: None,
            }];
            if version >= 3 {
                expected.push(LeavingMember {
                    member_id: String::new(),
                    group_instance_id: Some("i2".into()),
                });
            }
            assert_eq!(leaving_members(version, &request), expected, "v{version}");
        }
    }

    #[test]
    fn leave_group_answers_per_member_from_v3_and_with_the_members_error_before() {
        let leaving = vec![(
            LeavingMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
            },
            ErrorCode::UnknownMemberId,
        )];
        for version in versions(ApiKey::LeaveGroup) {
            let body = leave_group_response(version, ErrorCode::None, leaving.clone());
            let body = over_the_wire(&body, version);
            if version >= 3 {
                assert_eq!(body.error_code, 0);
                assert_eq!(body.members[0].member_id.as_str(), "m1");
                assert_eq!(body.members[0].group_instance_id.as_deref(), Some("i1"));
                assert_eq!(body.members[0].error_code, 25);
            } else {
                assert_eq!(body.error_code, 25, "v{version}");
            }
            // A group-level error wins over the members'.
            let body = leave_group_response(version, ErrorCode::NotCoordinator, leaving.clone());
            assert_eq!(over_the_wire(&body, version).error_code, 16);
        }
    }

    // ----- OffsetCommit, OffsetFetch -----

    fn commit_request(version: i16) -> OffsetCommitRequest {
        let mut partition = OffsetCommitRequestPartition::default();
        partition.partition_index = 4;
        partition.committed_offset = 10;
        if version >= 6 {
            partition.committed_leader_epoch = 3;
        }
        partition.committed_metadata = Some(text("meta"));
        let mut unnamed = partition.clone();
        unnamed.partition_index = 5;
        unnamed.committed_metadata = None;
        let mut topic = OffsetCommitRequestTopic::default();
        topic.name = TopicName(text("orders"));
        topic.partitions = vec![partition, unnamed];
        let mut request = OffsetCommitRequest::default();
        request.group_id = group("g");
        request.generation_id_or_member_epoch = 2;
        request.member_id = text("m1");
        if version >= 7 {
            request.group_instance_id = Some(text("i1"));
        }
        if version <= 4 {
            request.retention_time_ms = 60_000;
        }
        request.topics = vec![topic];
        over_the_wire(&request, version)
    }

    #[test]
    fn offset_commit_passes_every_partition_and_answers_each_one() {
        for version in versions(ApiKey::OffsetCommit) {
            let request = commit_request(version);
            assert_eq!(
                offset_commit_request(&request),
                Request::OffsetCommit {
                    group_id: "g".into(),
                    member_id: "m1".into(),
                    group_instance_id: request
                        .group_instance_id
                        .as_ref()
                        .map(|instance| instance.to_string()),
                    generation: 2,
                    commits: vec![
                        OffsetCommitPartition {
                            partition: TopicPartition::new("orders", 4),
                            offset: 10,
                            metadata: Some("meta".into()),
                            leader_epoch: if version >= 6 { 3 } else { -1 },
                        },
                        OffsetCommitPartition {
                            partition: TopicPartition::new("orders", 5),
                            offset: 10,
                            metadata: None,
                            leader_epoch: if version >= 6 { 3 } else { -1 },
                        },
                    ],
                },
                "v{version}"
            );
            // A partition the core left out is answered anyway, never dropped.
            let results = vec![(
                TopicPartition::new("orders", 4),
                ErrorCode::IllegalGeneration,
            )];
            let body = offset_commit_response(&request, results);
            let body = over_the_wire(&body, version);
            assert_eq!(body.topics[0].name.as_str(), "orders");
            let errors: Vec<(i32, i16)> = body.topics[0]
                .partitions
                .iter()
                .map(|partition| (partition.partition_index, partition.error_code))
                .collect();
            assert_eq!(errors, vec![(4, 22), (5, 3)], "v{version}");
        }
    }

    #[test]
    fn offset_fetch_reads_one_group_before_v8_and_a_batch_from_v8() {
        let asked = vec![
            TopicPartition::new("orders", 0),
            TopicPartition::new("orders", 2),
        ];
        for version in versions(ApiKey::OffsetFetch) {
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                let mut topic = OffsetFetchRequestTopics::default();
                topic.name = TopicName(text("orders"));
                topic.partition_indexes = vec![0, 2];
                let mut named = OffsetFetchRequestGroup::default();
                named.group_id = group("g");
                named.topics = Some(vec![topic]);
                let mut everything = OffsetFetchRequestGroup::default();
                everything.group_id = group("h");
                everything.topics = None;
                request.groups = vec![named, everything];
            } else {
                let mut topic = OffsetFetchRequestTopic::default();
                topic.name = TopicName(text("orders"));
                topic.partition_indexes = vec![0, 2];
                request.group_id = group("g");
                request.topics = Some(vec![topic]);
            }
            let request = over_the_wire(&request, version);
            let mut expected = vec![("g".to_string(), Some(asked.clone()))];
            if version >= 8 {
                expected.push(("h".to_string(), None));
            }
            assert_eq!(
                offset_fetch_groups(version, &request),
                expected,
                "v{version}"
            );
        }
        // From v2 a null topic list asks for every committed partition.
        for version in 2..=7 {
            let mut request = OffsetFetchRequest::default();
            request.group_id = group("g");
            request.topics = None;
            let request = over_the_wire(&request, version);
            assert_eq!(
                offset_fetch_groups(version, &request),
                vec![("g".to_string(), None)]
            );
        }
    }

    #[test]
    fn offset_fetch_answers_offsets_and_errors_where_each_version_puts_them() {
        let fetched = vec![
            FetchedOffset {
                partition: TopicPartition::new("orders", 1),
                offset: 42,
                metadata: Some("meta".into()),
                leader_epoch: 7,
                error: ErrorCode::None,
            },
            FetchedOffset {
                partition: TopicPartition::new("orders", 2),
                offset: -1,
                metadata: None,
                leader_epoch: -1,
                error: ErrorCode::None,
            },
        ];
        for version in versions(ApiKey::OffsetFetch) {
            let groups = vec![("g".to_string(), ErrorCode::None, fetched.clone())];
            let body = over_the_wire(&offset_fetch_response(version, groups), version);
            let (rows, error) = if version >= 8 {
                assert_eq!(body.groups[0].group_id.as_str(), "g");
                let rows = body.groups[0].topics.iter().flat_map(|topic| {
                    topic.partitions.iter().map(|p| {
                        let metadata = p.metadata.as_deref().unwrap_or("null");
                        let row = (p.partition_index, p.committed_offset, metadata);
                        (topic.name.as_str(), row, p.committed_leader_epoch)
                    })
                });
                (rows.collect::<Vec<_>>(), body.groups[0].error_code)
            } else {
                let rows = body.topics.iter().flat_map(|topic| {
                    topic.partitions.iter().map(|p| {
                        let metadata = p.metadata.as_deref().unwrap_or("null");
                        let row = (p.partition_index, p.committed_offset, metadata);
                        (topic.name.as_str(), row, p.committed_leader_epoch)
                    })
                });
                (rows.collect::<Vec<_>>(), body.error_code)
            };
            // No metadata reads as "" (never null); the leader epoch from v5 on.
            let epoch = if version >= 5 { 7 } else { -1 };
            assert_eq!(
                rows,
                vec![
                    ("orders", (1, 42, "meta"), epoch),
                    ("orders", (2, -1, ""), -1)
                ],
                "v{version}"
            );
            assert_eq!(error, 0);
        }
    }

    #[test]
    fn offset_fetch_unstable_offsets_are_a_partition_error_from_v7() {
        let fetched = vec![
            FetchedOffset {
                partition: TopicPartition::new("orders", 0),
                offset: -1,
                metadata: None,
                leader_epoch: -1,
                error: ErrorCode::UnstableOffsetCommit,
            },
            FetchedOffset {
                partition: TopicPartition::new("orders", 1),
                offset: 12,
                metadata: None,
                leader_epoch: -1,
                error: ErrorCode::None,
            },
        ];
        for version in versions(ApiKey::OffsetFetch) {
            let mut request = OffsetFetchRequest::default();
            if version >= 7 {
                request.require_stable = true;
            }
            let request = over_the_wire(&request, version);
            assert_eq!(requires_stable(version, &request), version >= 7);
            if version < 7 {
                continue;
            }
            let groups = vec![("g".to_string(), ErrorCode::None, fetched.clone())];
            let body = over_the_wire(&offset_fetch_response(version, groups), version);
            let (errors, group_error): (Vec<(i32, i64, i16)>, i16) = if version >= 8 {
                let group = &body.groups[0];
                let rows = group.topics[0]
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset, p.error_code));
                (rows.collect(), group.error_code)
            } else {
                let rows = body.topics[0]
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset, p.error_code));
                (rows.collect(), body.error_code)
            };
            assert_eq!(errors, vec![(0, -1, 88), (1, 12, 0)], "v{version}");
            assert_eq!(group_error, 0, "v{version}");
        }
    }

    #[test]
    fn offset_fetch_group_error_is_top_level_from_v2_and_on_each_partition_before() {
        let failed = vec![FetchedOffset {
            partition: TopicPartition::new("orders", 0),
            offset: -1,
            metadata: None,
            leader_epoch: -1,
            error: ErrorCode::None,
        }];
        for version in versions(ApiKey::OffsetFetch) {
            let groups = vec![("g".to_string(), ErrorCode::NotCoordinator, failed.clone())];
            let body = over_the_wire(&offset_fetch_response(version, groups), version);
            if version >= 8 {
                assert_eq!(body.groups[0].error_code, 16);
            } else if version >= 2 {
                assert_eq!(body.error_code, 16);
            } else {
                assert_eq!(body.topics[0].partitions[0].error_code, 16);
            }
        }
    }

    // ----- ListGroups, DescribeGroups -----

    #[test]
    fn list_groups_filters_by_state_from_v4_and_by_group_type_from_v5() {
        let listed = vec![
            ListedGroup {
                group_id: "stable".into(),
                protocol_type: "consumer".into(),
                state: GroupState::Stable,
            },
            ListedGroup {
                group_id: "empty".into(),
                protocol_type: "connect".into(),
                state: GroupState::Empty,
            },
        ];
        for version in versions(ApiKey::ListGroups) {
            let request = over_the_wire(&ListGroupsRequest::default(), version);
            let body = list_groups_response(version, &request, ErrorCode::None, listed.clone());
            let body = over_the_wire(&body, version);
            assert_eq!(body.groups.len(), 2, "v{version}: no filter");
            let state = if version >= 4 { "Stable" } else { "" };
            assert_eq!(body.groups[0].group_state.as_str(), state);
            assert_eq!(body.groups[1].protocol_type.as_str(), "connect");
            if version >= 4 {
                // Kafka compares state names without regard to case.
                let mut request = ListGroupsRequest::default();
                request.states_filter = vec![text("stable")];
                let body = list_groups_response(version, &request, ErrorCode::None, listed.clone());
                let ids: Vec<&str> = body.groups.iter().map(|g| g.group_id.as_str()).collect();
                assert_eq!(ids, vec!["stable"], "v{version}");
            }
            if version >= 5 {
                // Every group here is a classic one (KIP-848 group types, not protocol types).
                assert_eq!(body.groups[0].group_type.as_str(), "classic");
                for (filter, count) in [("Classic", 2), ("consumer", 0)] {
                    let mut request = ListGroupsRequest::default();
                    request.types_filter = vec![text(filter)];
                    let body =
                        list_groups_response(version, &request, ErrorCode::None, listed.clone());
                    assert_eq!(body.groups.len(), count, "v{version} {filter}");
                }
            }
        }
    }

    #[test]
    fn describe_groups_describes_members_with_what_each_version_has() {
        let described = vec![DescribedGroup {
            group_id: "g".into(),
            error: ErrorCode::None,
            description: Some(stable_description()),
        }];
        for version in versions(ApiKey::DescribeGroups) {
            let body = describe_groups_response(version, false, described.clone());
            let body = over_the_wire(&body, version);
            let group = &body.groups[0];
            assert_eq!(
                (
                    group.group_id.as_str(),
                    group.error_code,
                    group.group_state.as_str(),
                    group.protocol_type.as_str(),
                    group.protocol_data.as_str()
                ),
                ("g", 0, "Stable", "consumer", "range")
            );
            // Absent before v3 (the decoder fills in the same "unknown").
            assert_eq!(group.authorized_operations, i32::MIN);
            let member = &group.members[0];
            assert_eq!(
                (
                    member.member_id.as_str(),
                    member.client_id.as_str(),
                    member.client_host.as_str()
                ),
                ("m1", "c", "/127.0.0.1")
            );
            assert_eq!(member.member_metadata, Bytes::from_static(b"x"));
            assert_eq!(member.member_assignment, Bytes::from_static(b"y"));
            let instance = (version >= 4).then_some("i1");
            assert_eq!(member.group_instance_id.as_deref(), instance, "v{version}");
        }
    }

    #[test]
    fn describe_groups_of_an_unknown_group_is_dead_before_v6_and_not_found_from_v6() {
        let unknown = |error| {
            vec![DescribedGroup {
                group_id: "nobody".into(),
                error,
                description: None,
            }]
        };
        for version in versions(ApiKey::DescribeGroups) {
            for error in [ErrorCode::None, ErrorCode::GroupIdNotFound] {
                let body = describe_groups_response(version, false, unknown(error));
                let body = over_the_wire(&body, version);
                let group = &body.groups[0];
                assert_eq!(group.group_id.as_str(), "nobody");
                if version >= 6 {
                    assert_eq!(group.error_code, 69);
                    assert_eq!(
                        group.error_message.as_deref(),
                        Some("group nobody not found")
                    );
                    assert_eq!(group.group_state.as_str(), "");
                } else {
                    assert_eq!((group.error_code, group.group_state.as_str()), (0, "Dead"));
                }
            }
            // Any other error passes as it is, in every version.
            let body = describe_groups_response(version, true, unknown(ErrorCode::NotCoordinator));
            let group = &over_the_wire(&body, version).groups[0];
            assert_eq!((group.error_code, group.group_state.as_str()), (16, ""));
            assert_eq!(
                group.authorized_operations,
                i32::MIN,
                "no operations with an error"
            );
        }
    }

    #[test]
    fn describe_groups_answers_authorized_operations_when_asked_from_v3() {
        let described = vec![
            DescribedGroup {
                group_id: "g".into(),
                error: ErrorCode::None,
                description: Some(stable_description()),
            },
            DescribedGroup {
                group_id: "nobody".into(),
                error: ErrorCode::None,
                description: None,
            },
        ];
        for version in versions(ApiKey::DescribeGroups) {
            for asked in [false, true] {
                let body = describe_groups_response(version, asked, described.clone());
                let body = over_the_wire(&body, version);
                let expected = if asked && version >= 3 {
                    // READ, DELETE, DESCRIBE.
                    0b1_0100_1000
                } else {
                    i32::MIN
                };
                for group in &body.groups {
                    assert_eq!(group.authorized_operations, expected, "v{version} {asked}");
                }
            }
        }
    }

    // ----- Hostile input -----

    /// Every group request of `version`, fields of that version set.
    fn every_group_request(version: i16) -> Vec<(ApiKey, RequestKind)> {
        let mut requests = Vec::new();
        let supports = |api_key| versions(api_key).contains(&version);
        if supports(ApiKey::FindCoordinator) {
            let request = find_coordinator_request(version, KEY_TYPE_GROUP);
            requests.push((ApiKey::FindCoordinator, request.into()));
        }
        if supports(ApiKey::JoinGroup) {
            requests.push((ApiKey::JoinGroup, join_request(version).into()));
        }
        if supports(ApiKey::SyncGroup) {
            requests.push((ApiKey::SyncGroup, sync_request(version).into()));
        }
        if supports(ApiKey::Heartbeat) {
            let mut request = HeartbeatRequest::default();
            request.group_id = group("g");
            request.member_id = text("m1");
            requests.push((ApiKey::Heartbeat, request.into()));
        }
        if supports(ApiKey::LeaveGroup) {
            let mut request = LeaveGroupRequest::default();
            request.group_id = group("g");
            if version >= 3 {
                let mut member = MemberIdentity::default();
                member.member_id = text("m1");
                request.members = vec![member];
            } else {
                request.member_id = text("m1");
            }
            requests.push((ApiKey::LeaveGroup, request.into()));
        }
        if supports(ApiKey::OffsetCommit) {
            requests.push((ApiKey::OffsetCommit, commit_request(version).into()));
        }
        if supports(ApiKey::OffsetFetch) {
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                let mut topic = OffsetFetchRequestTopics::default();
                topic.name = TopicName(text("orders"));
                topic.partition_indexes = vec![0, 1];
                let mut named = OffsetFetchRequestGroup::default();
                named.group_id = group("g");
                named.topics = Some(vec![topic]);
                request.groups = vec![named];
            } else {
                let mut topic = OffsetFetchRequestTopic::default();
                topic.name = TopicName(text("orders"));
                topic.partition_indexes = vec![0, 1];
                request.group_id = group("g");
                request.topics = Some(vec![topic]);
            }
            requests.push((ApiKey::OffsetFetch, request.into()));
        }
        if supports(ApiKey::ListGroups) {
            let mut request = ListGroupsRequest::default();
            if version >= 4 {
                request.states_filter = vec![text("Stable")];
            }
            requests.push((ApiKey::ListGroups, request.into()));
        }
        if supports(ApiKey::DescribeGroups) {
            let mut request = DescribeGroupsRequest::default();
            request.groups = vec![group("g"), group("h")];
            requests.push((ApiKey::DescribeGroups, request.into()));
        }
        requests
    }

    /// What the handler would do with a decoded request, the core's answer made up from
    /// the request itself: translate, answer, encode. Must return, never panic.
    fn translate_and_answer(version: i16, request: RequestKind) {
        let mut buffer = BytesMut::new();
        // An encoding error is allowed (it closes the connection); a panic is not.
        let _ = match request {
            RequestKind::FindCoordinator(request) => {
                let keys = coordinator_keys(version, &request);
                let results: Vec<CoordinatorResult> = keys
                    .iter()
                    .map(|key| CoordinatorResult {
                        group_id: key.clone(),
                        error: ErrorCode::None,
                        node: Some(NodeInfo {
                            node_id: 1,
                            host: "localhost".into(),
                            port: 9092,
                        }),
                    })
                    .collect();
                find_coordinator_response(version, &keys, request.key_type, &results)
                    .encode(&mut buffer, version)
            }
            RequestKind::JoinGroup(request) => {
                let Request::JoinGroup { join, .. } =
                    join_group_request(version, &request, "c", peer())
                else {
                    panic!("not a join");
                };
                let joined = JoinResponse {
                    error: ErrorCode::None,
                    generation: 1,
                    protocol_name: join.protocols.first().map(|(name, _)| name.clone()),
                    leader: join.member_id.clone(),
                    member_id: join.member_id.clone(),
                    members: vec![(join.member_id, join.group_instance_id, Bytes::new())],
                };
                join_group_response(version, &join.protocol_type, joined)
                    .encode(&mut buffer, version)
            }
            RequestKind::SyncGroup(request) => {
                let _ = sync_group_request(&request);
                let synced = SyncResponse {
                    error: ErrorCode::None,
                    assignment: Bytes::new(),
                };
                sync_group_response(version, &request, synced).encode(&mut buffer, version)
            }
            RequestKind::Heartbeat(request) => {
                let _ = heartbeat_request(&request);
                heartbeat_response(ErrorCode::None).encode(&mut buffer, version)
            }
            RequestKind::LeaveGroup(request) => {
                let members = leaving_members(version, &request)
                    .into_iter()
                    .map(|member| (member, ErrorCode::None))
                    .collect();
                leave_group_response(version, ErrorCode::None, members).encode(&mut buffer, version)
            }
            RequestKind::OffsetCommit(request) => {
                let Request::OffsetCommit { commits, .. } = offset_commit_request(&request) else {
                    panic!("not a commit");
                };
                let results = commits
                    .into_iter()
                    .map(|commit| (commit.partition, ErrorCode::None))
                    .collect();
                offset_commit_response(&request, results).encode(&mut buffer, version)
            }
            RequestKind::OffsetFetch(request) => {
                let groups = offset_fetch_groups(version, &request)
                    .into_iter()
                    .map(|(group_id, partitions)| {
                        let fetched = partitions
                            .unwrap_or_default()
                            .into_iter()
                            .map(|partition| FetchedOffset {
                                partition,
                                offset: 0,
                                metadata: None,
                                leader_epoch: -1,
                                error: ErrorCode::None,
                            })
                            .collect();
                        (group_id, ErrorCode::None, fetched)
                    })
                    .collect();
                offset_fetch_response(version, groups).encode(&mut buffer, version)
            }
            RequestKind::ListGroups(request) => {
                let listed = vec![ListedGroup {
                    group_id: "g".into(),
                    protocol_type: "consumer".into(),
                    state: GroupState::Stable,
                }];
                list_groups_response(version, &request, ErrorCode::None, listed)
                    .encode(&mut buffer, version)
            }
            RequestKind::DescribeGroups(request) => {
                let described = request
                    .groups
                    .iter()
                    .map(|group_id| DescribedGroup {
                        group_id: group_id.to_string(),
                        error: ErrorCode::None,
                        description: Some(stable_description()),
                    })
                    .collect();
                describe_groups_response(version, false, described).encode(&mut buffer, version)
            }
            other => panic!("not a group request: {other:?}"),
        };
    }

    #[test]
    fn corrupted_group_requests_are_refused_or_answered_never_a_panic() {
        use crate::kafka::precheck::decode_corrupted_requests;
        let mut decoded_count = 0;
        for version in 0..=9 {
            decoded_count +=
                decode_corrupted_requests(version, every_group_request(version), |request| {
                    translate_and_answer(version, request)
                });
        }
        // The test proves something only if many corrupted requests got through decoding.
        assert!(decoded_count > 1_000, "only {decoded_count} decoded");
    }
}
