//! DeleteGroups (api key 42, v0-2) and OffsetDelete (47, v0): the group admin requests.
//!
//! Kafka's DeleteGroups names several groups; the core takes one per request (each is
//! written to its own offsets partition and answered once that record is committed), so
//! the groups are asked one after another and answered in the request's order. The
//! semantics (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, GROUP_SUBSCRIBED_TO_TOPIC, durability)
//! are the group coordinator's (`core/src/group_coordinator.rs`).

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};
use myelin_core::api::{ErrorCode, Request, Response};
use myelin_core::metadata::TopicPartition;
use std::collections::BTreeMap;

/// At most this many groups per DeleteGroups: each waits for its own commit, one after
/// another, so a larger list would hold the connection's pipeline for long.
const DELETE_GROUPS_MAX: usize = 1_000;

pub(crate) async fn delete_groups(
    context: &ConnectionContext,
    _version: i16,
    request: DeleteGroupsRequest,
) -> Result<Reply, HandlerError> {
    let mut body = DeleteGroupsResponse::default();
    for (index, group) in request.groups_names.into_iter().enumerate() {
        let error = if index >= DELETE_GROUPS_MAX {
            ErrorCode::RequestTimedOut
        } else {
            let group_id = group.0.to_string();
            match call(context, Request::DeleteGroup { group_id }).await? {
                Response::DeleteGroup { error } => error,
                _ => {
                    return Err(HandlerError::UnexpectedResponse {
                        request: "DeleteGroups",
                    })
                }
            }
        };
        let mut result = DeletableGroupResult::default();
        result.group_id = group;
        result.error_code = error.code();
        body.results.push(result);
    }
    Ok(Reply::small(body))
}

pub(crate) async fn offset_delete(
    context: &ConnectionContext,
    _version: i16,
    request: OffsetDeleteRequest,
) -> Result<Reply, HandlerError> {
    let partitions: Vec<TopicPartition> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |p| TopicPartition::new(topic.name.as_str(), p.partition_index))
        })
        .collect();
    let group_id = request.group_id.0.to_string();
    let Response::OffsetDelete {
        error,
        partitions: results,
    } = call(
        context,
        Request::OffsetDelete {
            group_id,
            partitions,
        },
    )
    .await?
    else {
        return Err(HandlerError::UnexpectedResponse {
            request: "OffsetDelete",
        });
    };
    let mut body = OffsetDeleteResponse::default();
    body.error_code = error.code();
    if error == ErrorCode::None {
        let by_partition: BTreeMap<TopicPartition, ErrorCode> = results.into_iter().collect();
        body.topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let mut answered = OffsetDeleteResponseTopic::default();
                answered.partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let key = TopicPartition::new(topic.name.as_str(), p.partition_index);
                        let mut partition = OffsetDeleteResponsePartition::default();
                        partition.partition_index = p.partition_index;
                        partition.error_code = by_partition
                            .get(&key)
                            .copied()
                            .unwrap_or(ErrorCode::None)
                            .code();
                        partition
                    })
                    .collect();
                answered.name = topic.name;
                answered
            })
            .collect();
    }
    Ok(Reply::small(body))
}
