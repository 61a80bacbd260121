//! ListOffsets (api key 2), versions 1-10: offsets by timestamp, or the special timestamps
//! -1 (latest: the high watermark, or the last stable offset for read_committed), -2
//! (earliest) and -3 (the record with the largest timestamp, v7+).
//!
//! -4 (earliest local, v8+) equals earliest here: there is no tiered storage. Every other
//! value goes to the core unchanged, which answers it per partition.

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};
use myelin_core::api::{
    ErrorCode, Isolation, ListOffsetsResult, Request, Response, LIST_OFFSETS_EARLIEST,
};
use myelin_core::metadata::TopicPartition;
use std::collections::{HashMap, VecDeque};

/// Kafka's EARLIEST_LOCAL_TIMESTAMP (KIP-405).
const LIST_OFFSETS_EARLIEST_LOCAL: i64 = -4;
/// Kafka's UNKNOWN_SERVER_ERROR, for a partition the core did not answer (a core bug).
const UNKNOWN_SERVER_ERROR: i16 = -1;

pub(crate) async fn handle(
    context: &ConnectionContext,
    version: i16,
    request: ListOffsetsRequest,
) -> Result<Reply, HandlerError> {
    let isolation = if version >= 2 && request.isolation_level == 1 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let partitions: Vec<(TopicPartition, i64)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |partition| {
                let timestamp = match partition.timestamp {
                    LIST_OFFSETS_EARLIEST_LOCAL => LIST_OFFSETS_EARLIEST,
                    timestamp => timestamp,
                };
                (
                    TopicPartition::new(topic.name.as_str(), partition.partition_index),
                    timestamp,
                )
            })
        })
        .collect();
    let Response::ListOffsets(results) = call(
        context,
        Request::ListOffsets {
            isolation,
            partitions,
        },
    )
    .await?
    else {
        return Err(HandlerError::UnexpectedResponse {
            request: "ListOffsets",
        });
    };

    let mut results_by_partition: HashMap<TopicPartition, VecDeque<ListOffsetsResult>> =
        HashMap::new();
    for result in results {
        results_by_partition
            .entry(result.partition.clone())
            .or_default()
            .push_back(result);
    }
    let mut body = ListOffsetsResponse::default();
    if version >= 2 {
        body.throttle_time_ms = 0;
    }
    body.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut topic_response = ListOffsetsTopicResponse::default();
            topic_response.name = TopicName(topic.name.0.clone());
            topic_response.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let key = TopicPartition::new(topic.name.as_str(), partition.partition_index);
                    let result = results_by_partition
                        .get_mut(&key)
                        .and_then(VecDeque::pop_front);
                    partition_response(version, partition.partition_index, result)
                })
                .collect();
            topic_response
        })
        .collect();
    Ok(Reply::small(body))
}

fn partition_response(
    version: i16,
    partition_index: i32,
    result: Option<ListOffsetsResult>,
) -> ListOffsetsPartitionResponse {
    let mut response = ListOffsetsPartitionResponse::default();
    response.partition_index = partition_index;
    match result {
        Some(result) => {
            response.error_code = result.error.code();
            response.timestamp = result.timestamp;
            response.offset = result.offset;
            // Leader epochs are not tracked yet: every leader is epoch 0, as Metadata says.
            if version >= 4 && result.error == ErrorCode::None {
                response.leader_epoch = 0;
            }
        }
        None => {
            response.error_code = UNKNOWN_SERVER_ERROR;
            response.timestamp = -1;
            response.offset = -1;
        }
    }
    response
}
