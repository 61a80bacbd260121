//! DeleteRecords (api key 21, v0-2): each partition's records below an offset (-1: the high
//! watermark) are deleted on its leader, which answers the new low watermark
//! (`Broker::delete_records` in core/src/broker/delete_records.rs: OFFSET_OUT_OF_RANGE
//! beyond the high watermark, NOT_LEADER_OR_FOLLOWER off the leader).
//!
//! What the answer promises: a majority of the partition's replicas, the leader included,
//! hold the new log start durably. The start travels in replication, as Kafka's fetch
//! response carries the log start offset: every append carries the leader's, a follower
//! persists it before it answers, and its answer reports it back. Any later leader is
//! elected by a majority and serves reads only once a majority answered it, so it holds
//! the new start before it serves a read: the deleted records are never served again.
//! Kafka waits for every in-sync replica instead; a majority is what makes every later
//! leader hold it here (any replica may be elected, not only in-sync ones). The request's
//! `timeout_ms` bounds the wait: past it, REQUEST_TIMED_OUT (the delete may then hold on
//! some replicas only, and takes effect everywhere once a replica holding it answers a
//! leader; a retry completes it).

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use myelin_core::api::{ErrorCode, Request, Response};
use myelin_core::metadata::TopicPartition;
use std::collections::BTreeMap;

pub(crate) async fn delete_records(
    context: &ConnectionContext,
    _version: i16,
    request: DeleteRecordsRequest,
) -> Result<Reply, HandlerError> {
    let partitions: Vec<(TopicPartition, i64)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |p| {
                (
                    TopicPartition::new(topic.name.as_str(), p.partition_index),
                    p.offset,
                )
            })
        })
        .collect();
    let Response::DeleteRecords(results) = call(
        context,
        Request::DeleteRecords {
            partitions,
            timeout_ms: request.timeout_ms,
        },
    )
    .await?
    else {
        return Err(HandlerError::UnexpectedResponse {
            request: "DeleteRecords",
        });
    };
    let answered: BTreeMap<TopicPartition, (ErrorCode, i64)> = results
        .into_iter()
        .map(|(partition, error, low_watermark)| (partition, (error, low_watermark)))
        .collect();
    let mut body = DeleteRecordsResponse::default();
    body.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut result = DeleteRecordsTopicResult::default();
            result.partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let key = TopicPartition::new(topic.name.as_str(), p.partition_index);
                    let (error, low_watermark) = answered
                        .get(&key)
                        .copied()
                        .unwrap_or((ErrorCode::UnknownTopicOrPartition, -1));
                    let mut partition = DeleteRecordsPartitionResult::default();
                    partition.partition_index = p.partition_index;
                    partition.error_code = error.code();
                    partition.low_watermark = low_watermark;
                    partition
                })
                .collect();
            result.name = topic.name;
            result
        })
        .collect();
    Ok(Reply::small(body))
}
