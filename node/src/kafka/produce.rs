//! Produce (api key 0), versions 3-10: record batches for partitions, addressed by name.
//!
//! The record bytes go to the core untouched (it validates and assigns offsets in place).
//! acks must be 0, 1 or -1; anything else gets INVALID_REQUIRED_ACKS for every partition
//! without reaching the core. With acks=0 the core still answers, but the client gets no
//! response at all, as Kafka does. A transactional producer's batches carry its
//! transactional id (v3+) to the core. No served version knows PRODUCER_FENCED or
//! TRANSACTION_ABORTABLE: a partition gets INVALID_PRODUCER_EPOCH or INVALID_TXN_STATE
//! instead, as Kafka's leaders answer (see `transactions::error_for_version`).

use crate::kafka::dispatch::{call, wire_string, ConnectionContext, HandlerError, Reply};
use crate::kafka::transactions::error_for_version;
use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use myelin_core::api::{
    Acks, ErrorCode, ProducePartition, ProducePartitionResult, Request, Response,
};
use myelin_core::metadata::TopicPartition;
use std::collections::{HashMap, VecDeque};

/// Kafka's UNKNOWN_SERVER_ERROR, for a partition the core did not answer (a core bug).
const UNKNOWN_SERVER_ERROR: i16 = -1;

pub(crate) async fn handle(
    context: &ConnectionContext,
    version: i16,
    request: ProduceRequest,
) -> Result<Reply, HandlerError> {
    let acks = match request.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    };
    let Some(acks) = acks else {
        let body = response(version, &request, |_| {
            Answer::Error(ErrorCode::InvalidRequiredAcks.code())
        });
        return Ok(Reply::small(body));
    };

    let core_request = produce_request(acks, &request);
    let Response::Produce(results) = call(context, core_request).await? else {
        return Err(HandlerError::UnexpectedResponse { request: "Produce" });
    };
    if acks == Acks::None {
        context.handle.metrics().record_produced(&request, None);
        return Ok(Reply::NoResponse);
    }

    // Results in request order per partition (a request may name a partition twice).
    let mut results_by_partition: HashMap<TopicPartition, VecDeque<ProducePartitionResult>> =
        HashMap::new();
    for result in results {
        results_by_partition
            .entry(result.partition.clone())
            .or_default()
            .push_back(result);
    }
    let body = response(version, &request, |partition| {
        match results_by_partition
            .get_mut(partition)
            .and_then(VecDeque::pop_front)
        {
            Some(result) => Answer::Result(result),
            None => Answer::Error(UNKNOWN_SERVER_ERROR),
        }
    });
    context
        .handle
        .metrics()
        .record_produced(&request, Some(&body));
    Ok(Reply::small(body))
}

/// The core request: every partition's record set, untouched, with the transactional id.
fn produce_request(acks: Acks, request: &ProduceRequest) -> Request {
    let partitions: Vec<ProducePartition> = request
        .topic_data
        .iter()
        .flat_map(|topic| {
            topic
                .partition_data
                .iter()
                .map(move |partition| ProducePartition {
                    partition: TopicPartition::new(topic.name.as_str(), partition.index),
                    // A null record set is an empty one: the core refuses it as invalid.
                    records: partition.records.clone().unwrap_or_else(Bytes::new),
                })
        })
        .collect();
    Request::Produce {
        acks,
        timeout_ms: request.timeout_ms,
        transactional_id: request
            .transactional_id
            .as_ref()
            .map(|id| id.as_str().to_string()),
        partitions,
    }
}

enum Answer {
    Result(ProducePartitionResult),
    Error(i16),
}

/// The response, topics and partitions in request order, fields as `version` has them.
fn response(
    version: i16,
    request: &ProduceRequest,
    mut answer: impl FnMut(&TopicPartition) -> Answer,
) -> ProduceResponse {
    let mut body = ProduceResponse::default();
    body.throttle_time_ms = 0;
    body.responses = request
        .topic_data
        .iter()
        .map(|topic| {
            let mut topic_response = TopicProduceResponse::default();
            topic_response.name = TopicName(topic.name.0.clone());
            topic_response.partition_responses = topic
                .partition_data
                .iter()
                .map(|partition| {
                    let key = TopicPartition::new(topic.name.as_str(), partition.index);
                    partition_response(version, partition.index, answer(&key))
                })
                .collect();
            topic_response
        })
        .collect();
    body
}

fn partition_response(version: i16, index: i32, answer: Answer) -> PartitionProduceResponse {
    let mut response = PartitionProduceResponse::default();
    response.index = index;
    match answer {
        Answer::Result(result) => {
            response.error_code = error_for_version(ApiKey::Produce, version, result.error).code();
            response.base_offset = result.base_offset;
            response.log_append_time_ms = result.log_append_time_ms;
            if version >= 5 {
                response.log_start_offset = result.log_start_offset;
            }
            if version >= 8 {
                response.error_message = result.message.map(wire_string);
            }
        }
        Answer::Error(error_code) => {
            response.error_code = error_code;
            response.base_offset = -1;
            response.log_append_time_ms = -1;
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn request() -> ProduceRequest {
        let mut partition = PartitionProduceData::default();
        partition.index = 2;
        partition.records = Some(Bytes::from_static(b"batch"));
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str("orders"));
        topic.partition_data = vec![partition];
        let mut request = ProduceRequest::default();
        request.acks = 1;
        request.topic_data = vec![topic];
        request
    }

    #[test]
    fn responses_encode_for_every_served_version() {
        for version in 3..=10 {
            let body = response(version, &request(), |partition| {
                Answer::Result(ProducePartitionResult {
                    partition: partition.clone(),
                    error: ErrorCode::CorruptMessage,
                    message: Some("bad crc".into()),
                    base_offset: -1,
                    log_append_time_ms: -1,
                    log_start_offset: 0,
                })
            });
            let mut encoded = BytesMut::new();
            body.encode(&mut encoded, version).unwrap();
            let decoded = ProduceResponse::decode(&mut encoded.freeze(), version).unwrap();
            let partition = &decoded.responses[0].partition_responses[0];
            assert_eq!((partition.index, partition.error_code), (2, 2));
            if version >= 8 {
                assert_eq!(partition.error_message.as_deref(), Some("bad crc"));
            }
        }
    }

    #[test]
    fn transaction_errors_newer_than_every_served_version_get_their_older_codes() {
        for version in 3..=10 {
            for (error, expected) in [
                (ErrorCode::ProducerFenced, 47),
                (ErrorCode::TransactionAbortable, 48),
                (ErrorCode::InvalidProducerEpoch, 47),
                (ErrorCode::InvalidTxnState, 48),
            ] {
                let body = response(version, &request(), |partition| {
                    Answer::Result(ProducePartitionResult {
                        partition: partition.clone(),
                        error,
                        message: None,
                        base_offset: -1,
                        log_append_time_ms: -1,
                        log_start_offset: -1,
                    })
                });
                let partition = &body.responses[0].partition_responses[0];
                assert_eq!(partition.error_code, expected, "v{version} {error:?}");
            }
        }
    }

    #[test]
    fn the_transactional_id_reaches_the_core() {
        for version in 3..=10 {
            let mut request = request();
            request.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
            let mut encoded = BytesMut::new();
            request.encode(&mut encoded, version).unwrap();
            let decoded = ProduceRequest::decode(&mut encoded.freeze(), version).unwrap();
            let Request::Produce {
                transactional_id, ..
            } = produce_request(Acks::All, &decoded)
            else {
                panic!("not a produce");
            };
            assert_eq!(transactional_id.as_deref(), Some("tx"), "v{version}");
        }
    }
}
