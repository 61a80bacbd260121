//! Fetch (api key 1), versions 4-16: read record batches, long-polling for new data.
//!
//! Topics come by name up to v12 and by UUID from v13 (resolved through the connection's
//! topic-id map; an unknown id answers UNKNOWN_TOPIC_ID without reaching the core). The
//! long-poll wait (`min_bytes`, `max_wait_ms`) happens inside the core: this module just
//! awaits its answer. The core names the stored byte ranges to return; they are read here,
//! in the connection's task, and concatenated per partition. A storage read error costs
//! only that partition (KAFKA_STORAGE_ERROR, no records).
//!
//! Fetch sessions are not kept: every response carries session id 0, which tells clients
//! to send full fetch requests (all four tested clients accept this). Forgotten topics are
//! therefore ignored. For read_committed the core returns only data below the last stable
//! offset, and each partition lists the aborted transactions (producer id, first offset)
//! whose batches may be among the returned ones, which the client drops; for
//! read_uncommitted the list is null, as Kafka sends it.

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError, Reply};
use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use myelin_core::api::{
    ErrorCode, FetchPartition, FetchPartitionResult, Isolation, Request, Response,
};
use myelin_core::metadata::TopicPartition;
use std::collections::HashMap;
use uuid::Uuid;

/// One requested topic, resolved to a name when it can be.
struct RequestedTopic {
    wire_name: StrBytes,
    topic_id: Uuid,
    /// `None`: an id the node does not know.
    name: Option<String>,
    partitions: Vec<i32>,
}

pub(crate) async fn handle(
    context: &ConnectionContext,
    version: i16,
    request: FetchRequest,
) -> Result<Reply, HandlerError> {
    let isolation = if request.isolation_level == 1 {
        Isolation::ReadCommitted
    } else {
        Isolation::ReadUncommitted
    };
    let names_by_id = if version >= 13 {
        let ids: Vec<u128> = request
            .topics
            .iter()
            .map(|topic| topic.topic_id.as_u128())
            .collect();
        context.topic_ids.resolve(context, &ids).await?
    } else {
        HashMap::new()
    };

    let mut requested = Vec::with_capacity(request.topics.len());
    let mut partitions = Vec::new();
    for topic in &request.topics {
        let name = if version >= 13 {
            names_by_id.get(&topic.topic_id.as_u128()).cloned()
        } else {
            Some(topic.topic.as_str().to_string())
        };
        if let Some(name) = &name {
            partitions.extend(topic.partitions.iter().map(|partition| FetchPartition {
                partition: TopicPartition::new(name.clone(), partition.partition),
                fetch_offset: partition.fetch_offset,
                partition_max_bytes: partition.partition_max_bytes,
                // -1 (the field's default before v9) skips the epoch check.
                current_leader_epoch: partition.current_leader_epoch,
            }));
        }
        requested.push(RequestedTopic {
            wire_name: topic.topic.0.clone(),
            topic_id: topic.topic_id,
            name,
            partitions: topic
                .partitions
                .iter()
                .map(|partition| partition.partition)
                .collect(),
        });
    }

    let mut results_by_partition: HashMap<TopicPartition, FetchPartitionResult> = HashMap::new();
    if !partitions.is_empty() {
        let core_request = Request::Fetch {
            max_wait_ms: i64::from(request.max_wait_ms),
            min_bytes: request.min_bytes,
            max_bytes: request.max_bytes,
            isolation,
            partitions,
        };
        let Response::Fetch(results) = call(context, core_request).await? else {
            return Err(HandlerError::UnexpectedResponse { request: "Fetch" });
        };
        results_by_partition.extend(
            results
                .into_iter()
                .map(|result| (result.partition.clone(), result)),
        );
    }

    let mut record_bytes_total = 0usize;
    let mut body = FetchResponse::default();
    body.throttle_time_ms = 0;
    if version >= 7 {
        body.error_code = ErrorCode::None.code();
        body.session_id = 0;
    }
    body.responses = requested
        .into_iter()
        .map(|topic| {
            let topic_bytes_before = record_bytes_total;
            let mut topic_response = FetchableTopicResponse::default();
            if version >= 13 {
                topic_response.topic_id = topic.topic_id;
            } else {
                topic_response.topic = TopicName(topic.wire_name.clone());
            }
            topic_response.partitions = topic
                .partitions
                .iter()
                .map(|&partition_index| {
                    let result = topic.name.as_ref().and_then(|name| {
                        results_by_partition
                            .remove(&TopicPartition::new(name.clone(), partition_index))
                    });
                    let data = partition_data(
                        context,
                        version,
                        isolation,
                        partition_index,
                        &topic,
                        result,
                    );
                    record_bytes_total += data.records.as_ref().map_or(0, Bytes::len);
                    data
                })
                .collect();
            if let Some(name) = &topic.name {
                let topic_bytes = record_bytes_total - topic_bytes_before;
                context.handle.metrics().record_fetched(name, topic_bytes);
            }
            topic_response
        })
        .collect();
    Ok(Reply::Respond {
        body: Box::new(body.into()),
        capacity_hint_bytes: record_bytes_total.saturating_add(1024),
    })
}

fn partition_data(
    context: &ConnectionContext,
    version: i16,
    isolation: Isolation,
    partition_index: i32,
    topic: &RequestedTopic,
    result: Option<FetchPartitionResult>,
) -> PartitionData {
    let mut data = PartitionData::default();
    data.partition_index = partition_index;
    data.preferred_read_replica = BrokerId(-1);
    data.aborted_transactions = match isolation {
        Isolation::ReadCommitted => Some(Vec::new()),
        Isolation::ReadUncommitted => None,
    };
    data.records = Some(Bytes::new());
    let Some(result) = result else {
        data.error_code = if topic.name.is_none() {
            ErrorCode::UnknownTopicId.code()
        } else {
            // The core answers every partition it is given; this is a defensive fallback.
            ErrorCode::UnknownTopicOrPartition.code()
        };
        data.high_watermark = -1;
        data.last_stable_offset = -1;
        data.log_start_offset = -1;
        return data;
    };
    data.error_code = result.error.code();
    data.high_watermark = result.high_watermark;
    data.last_stable_offset = result.last_stable_offset;
    if version >= 5 {
        data.log_start_offset = result.log_start_offset;
    }
    data.aborted_transactions = aborted_transactions(isolation, &result);
    match read_records(context, &result) {
        Ok(records) => data.records = Some(records),
        Err(error) => {
            tracing::warn!(
                peer = %context.peer,
                partition = %result.partition,
                %error,
                "fetch read failed; answering KAFKA_STORAGE_ERROR for the partition"
            );
            data.error_code = ErrorCode::KafkaStorageError.code();
        }
    }
    data
}

/// The partition's aborted transactions as the wire carries them: a list for read_committed
/// (possibly empty), null for read_uncommitted (the core reports none there).
fn aborted_transactions(
    isolation: Isolation,
    result: &FetchPartitionResult,
) -> Option<Vec<AbortedTransaction>> {
    match isolation {
        Isolation::ReadUncommitted => None,
        Isolation::ReadCommitted => Some(
            result
                .aborted_transactions
                .iter()
                .map(|aborted| {
                    let mut wire = AbortedTransaction::default();
                    wire.producer_id = ProducerId(aborted.producer_id);
                    wire.first_offset = aborted.first_offset;
                    wire
                })
                .collect(),
        ),
    }
}

/// The bytes of the core's chunks, concatenated (no copy for a single chunk).
fn read_records(
    context: &ConnectionContext,
    result: &FetchPartitionResult,
) -> Result<Bytes, crate::storage::StorageError> {
    let parts = result
        .chunks
        .iter()
        .map(|chunk| context.handle.read(&result.partition, chunk))
        .collect::<Result<Vec<Bytes>, _>>()?;
    Ok(crate::joined(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};
    use myelin_core::api::AbortedTransaction as CoreAborted;

    #[test]
    fn aborted_transactions_are_listed_for_read_committed_and_null_otherwise() {
        let result = FetchPartitionResult {
            partition: TopicPartition::new("orders", 0),
            error: ErrorCode::None,
            high_watermark: 40,
            last_stable_offset: 30,
            log_start_offset: 0,
            chunks: Vec::new(),
            aborted_transactions: vec![
                CoreAborted {
                    producer_id: 7,
                    first_offset: 3,
                },
                CoreAborted {
                    producer_id: 9,
                    first_offset: 12,
                },
            ],
        };
        for version in 4..=16 {
            let mut partition = PartitionData::default();
            partition.aborted_transactions =
                aborted_transactions(Isolation::ReadCommitted, &result);
            partition.last_stable_offset = result.last_stable_offset;
            partition.records = Some(Bytes::new());
            let mut topic = FetchableTopicResponse::default();
            if version >= 13 {
                topic.topic_id = Uuid::from_u128(5);
            } else {
                topic.topic = TopicName(StrBytes::from_static_str("orders"));
            }
            topic.partitions = vec![partition];
            let mut body = FetchResponse::default();
            body.responses = vec![topic];
            let mut encoded = BytesMut::new();
            body.encode(&mut encoded, version).unwrap();
            let decoded = FetchResponse::decode(&mut encoded.freeze(), version).unwrap();
            let partition = &decoded.responses[0].partitions[0];
            let aborted: Vec<(i64, i64)> = partition
                .aborted_transactions
                .as_ref()
                .expect("a list for read_committed")
                .iter()
                .map(|aborted| (aborted.producer_id.0, aborted.first_offset))
                .collect();
            assert_eq!(aborted, vec![(7, 3), (9, 12)], "v{version}");
            assert_eq!(partition.last_stable_offset, 30);
        }
        assert_eq!(
            aborted_transactions(Isolation::ReadUncommitted, &result),
            None
        );
        let none = FetchPartitionResult {
            aborted_transactions: Vec::new(),
            ..result
        };
        assert_eq!(
            aborted_transactions(Isolation::ReadCommitted, &none),
            Some(Vec::new())
        );
    }

    #[test]
    fn empty_and_error_partitions_encode_for_every_served_version() {
        for version in 4..=16 {
            for isolation in [Isolation::ReadCommitted, Isolation::ReadUncommitted] {
                let mut partition = PartitionData::default();
                partition.partition_index = 3;
                partition.error_code = ErrorCode::UnknownTopicId.code();
                partition.aborted_transactions = match isolation {
                    Isolation::ReadCommitted => Some(Vec::new()),
                    Isolation::ReadUncommitted => None,
                };
                partition.records = Some(Bytes::from_static(b"records"));
                let mut topic = FetchableTopicResponse::default();
                if version >= 13 {
                    topic.topic_id = Uuid::from_u128(5);
                } else {
                    topic.topic = TopicName(StrBytes::from_static_str("orders"));
                }
                topic.partitions = vec![partition];
                let mut body = FetchResponse::default();
                body.responses = vec![topic];
                let mut encoded = BytesMut::new();
                body.encode(&mut encoded, version).unwrap();
                let decoded = FetchResponse::decode(&mut encoded.freeze(), version).unwrap();
                let partition = &decoded.responses[0].partitions[0];
                assert_eq!(partition.records.as_deref(), Some(&b"records"[..]));
                assert_eq!(partition.error_code, 100);
            }
        }
    }
}
