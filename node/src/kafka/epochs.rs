//! OffsetForLeaderEpoch (api key 23), versions 2-4: where a leader epoch ends in a
//! partition's log. Consumers ask it after a leader change to check that their position
//! was not truncated away (KIP-320); kafka-python 3 and librdkafka stop reading a partition
//! whose new leader cannot answer it.
//!
//! Requests from replicas (`replica_id` >= 0, v3+) do not exist here (replication has its
//! own protocol), so every request is answered as a consumer's: by the leader, within the
//! high watermark's log. Results keep the order of the request.

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use myelin_core::api::{EpochEnd, EpochQuery, ErrorCode, Request, Response};
use myelin_core::metadata::TopicPartition;
use std::collections::HashMap;

fn epoch_queries(request: &OffsetForLeaderEpochRequest) -> Vec<EpochQuery> {
    request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| EpochQuery {
                partition: TopicPartition::new(topic.topic.as_str(), partition.partition),
                current_leader_epoch: partition.current_leader_epoch,
                leader_epoch: partition.leader_epoch,
            })
        })
        .collect()
}

fn epoch_response(
    request: &OffsetForLeaderEpochRequest,
    results: Vec<EpochEnd>,
) -> OffsetForLeaderEpochResponse {
    let mut by_partition: HashMap<TopicPartition, EpochEnd> = results
        .into_iter()
        .map(|result| (result.partition.clone(), result))
        .collect();
    let mut body = OffsetForLeaderEpochResponse::default();
    body.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut result = OffsetForLeaderTopicResult::default();
            result.topic = topic.topic.clone();
            result.partitions = topic
                .partitions
                .iter()
                .map(|asked| {
                    let key = TopicPartition::new(topic.topic.as_str(), asked.partition);
                    let mut answer = EpochEndOffset::default();
                    answer.partition = asked.partition;
                    match by_partition.remove(&key) {
                        Some(found) => {
                            answer.error_code = found.error.code();
                            answer.leader_epoch = found.leader_epoch;
                            answer.end_offset = found.end_offset;
                        }
                        None => {
                            answer.error_code = ErrorCode::UnknownTopicOrPartition.code();
                            answer.leader_epoch = -1;
                            answer.end_offset = -1;
                        }
                    }
                    answer
                })
                .collect();
            result
        })
        .collect();
    body
}

pub(crate) async fn handle(
    context: &ConnectionContext,
    _version: i16,
    request: OffsetForLeaderEpochRequest,
) -> Result<Reply, HandlerError> {
    let partitions = epoch_queries(&request);
    let Response::OffsetForLeaderEpoch(results) =
        call(context, Request::OffsetForLeaderEpoch { partitions }).await?
    else {
        return Err(HandlerError::UnexpectedResponse {
            request: "OffsetForLeaderEpoch",
        });
    };
    Ok(Reply::small(epoch_response(&request, results)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn request() -> OffsetForLeaderEpochRequest {
        let mut partition = OffsetForLeaderPartition::default();
        partition.partition = 2;
        partition.current_leader_epoch = 7;
        partition.leader_epoch = 5;
        let mut missing = partition.clone();
        missing.partition = 9;
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = TopicName(StrBytes::from_static_str("orders"));
        topic.partitions = vec![partition, missing];
        let mut request = OffsetForLeaderEpochRequest::default();
        request.topics = vec![topic];
        request
    }

    #[test]
    fn every_asked_partition_is_answered_in_every_version() {
        let request = request();
        let queries = epoch_queries(&request);
        assert_eq!(
            queries[0],
            EpochQuery {
                partition: TopicPartition::new("orders", 2),
                current_leader_epoch: 7,
                leader_epoch: 5,
            }
        );
        let found = EpochEnd {
            partition: TopicPartition::new("orders", 2),
            error: ErrorCode::None,
            leader_epoch: 4,
            end_offset: 120,
        };
        let body = epoch_response(&request, vec![found]);
        let answers = &body.topics[0].partitions;
        assert_eq!(
            (
                answers[0].leader_epoch,
                answers[0].end_offset,
                answers[0].error_code
            ),
            (4, 120, 0)
        );
        assert_eq!(
            answers[1].error_code,
            ErrorCode::UnknownTopicOrPartition.code()
        );
        for version in 2..=4 {
            body.encode(&mut BytesMut::new(), version)
                .unwrap_or_else(|error| panic!("v{version}: {error}"));
        }
    }
}
