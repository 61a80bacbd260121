//! DeleteRecords (api key 21, v0-2): each partition's records below an offset (-1: the high
//! watermark) are deleted on its leader, which answers the new low watermark
//! (`Broker::delete_records`: OFFSET_OUT_OF_RANGE beyond the high watermark,
//! NOT_LEADER_OR_FOLLOWER off the leader).
//!
//! What the answer promises: the leader has persisted the new log start offset. Kafka
//! answers only once every live replica's log start reached it; here the followers learn it
//! at the leader's next retention check (every replica repeats it to the others at each
//! check, so a later leader learns it from any replica that has it). Until then a leader
//! change to a replica that has not learned it serves the deleted records again, until it
//! does.

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
    let Response::DeleteRecords(results) =
        call(context, Request::DeleteRecords { partitions }).await?
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
