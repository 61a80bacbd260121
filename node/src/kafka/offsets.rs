//! ListOffsets (api key 2), versions 1-10: offsets by timestamp, or the special timestamps
//! -1 (latest: the high watermark, or the last stable offset for read_committed), -2
//! (earliest) and -3 (the record with the largest timestamp, v7+).
//!
//! -4 (earliest local, v8+) equals earliest here: there is no tiered storage. Every other
//! value goes to the core unchanged, which answers it per partition.
//!
//! A timestamp is answered with the first *record* whose timestamp is at or after it, and
//! -3 with the first record holding the largest timestamp, as Kafka does. The core indexes
//! batches, so it names the batch that holds the answer; this module reads that batch
//! (CRC-checked, decompressed: `myelin_client::records::decode_batch`) and picks the record.
//! In a batch with log-append time every record has the batch's max timestamp.
//! Each answer (v4+) carries the core's leader epoch: the found batch's, or the leader's
//! current one for latest (see `ListOffsetsResult::leader_epoch`).

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};
use myelin_client::records::{decode_batch, DecodedBatch};
use myelin_core::api::{
    ErrorCode, Isolation, ListOffsetsResult, Request, Response, LIST_OFFSETS_EARLIEST,
    LIST_OFFSETS_MAX_TIMESTAMP,
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
                        .and_then(VecDeque::pop_front)
                        .map(|result| find_record(context, result, partition.timestamp));
                    partition_response(version, partition.partition_index, result)
                })
                .collect();
            topic_response
        })
        .collect();
    Ok(Reply::small(body))
}

/// A core answer naming a batch, refined to the record asked for (see the module doc).
fn find_record(
    context: &ConnectionContext,
    mut result: ListOffsetsResult,
    asked: i64,
) -> ListOffsetsResult {
    let Some(chunk) = result.batch.take() else {
        return result;
    };
    let batch = context
        .handle
        .read(&result.partition, &chunk)
        .map_err(|error| error.to_string())
        .and_then(|bytes| decode_batch(&bytes).map_err(|error| error.to_string()));
    match batch {
        Ok(batch) => {
            if let Some((offset, timestamp)) = record_at(&batch, asked, result.offset) {
                result.offset = offset;
                result.timestamp = timestamp;
            }
        }
        Err(error) => {
            tracing::error!(partition = %result.partition, %error, "ListOffsets could not read a batch");
            result.error = ErrorCode::KafkaStorageError;
            result.offset = -1;
            result.timestamp = -1;
            result.leader_epoch = -1;
        }
    }
    result
}

/// The (offset, timestamp) of the record `asked` names in `batch`, at or past `from`:
/// the first whose timestamp is at or after `asked`, or for MAX_TIMESTAMP the first with
/// the batch's largest timestamp.
fn record_at(batch: &DecodedBatch, asked: i64, from: i64) -> Option<(i64, i64)> {
    let timestamped = batch
        .records
        .iter()
        .filter(|r| r.offset >= from)
        .map(|record| {
            let timestamp = if batch.header.is_log_append_time() {
                batch.header.max_timestamp
            } else {
                record.timestamp
            };
            (record.offset, timestamp)
        });
    if asked == LIST_OFFSETS_MAX_TIMESTAMP {
        // The first of the largest: `max_by_key` would keep the last.
        timestamped.fold(None, |best, (offset, timestamp)| match best {
            Some((_, best_timestamp)) if best_timestamp >= timestamp => best,
            _ => Some((offset, timestamp)),
        })
    } else {
        let mut timestamped = timestamped;
        timestamped.find(|(_, timestamp)| *timestamp >= asked)
    }
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
            if version >= 4 {
                response.leader_epoch = result.leader_epoch;
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

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_client::records::{encode_batch, BatchOptions};
    use myelin_client::{Compression, NewRecord};

    /// One batch of records with these timestamps, at base offset 0.
    fn batch(timestamps: &[i64], compression: Compression) -> DecodedBatch {
        let records: Vec<NewRecord> = timestamps
            .iter()
            .map(|timestamp| NewRecord::new("v").with_timestamp(*timestamp))
            .collect();
        let options = BatchOptions {
            compression,
            ..BatchOptions::default()
        };
        decode_batch(&encode_batch(&records, &options).unwrap()).unwrap()
    }

    #[test]
    fn a_timestamp_finds_the_first_record_at_or_after_it_inside_the_batch() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let batch = batch(&[100, 300, 200, 400, 400], compression);
            assert_eq!(record_at(&batch, 150, 0), Some((1, 300)));
            assert_eq!(record_at(&batch, 100, 0), Some((0, 100)));
            assert_eq!(record_at(&batch, 400, 0), Some((3, 400)));
            assert_eq!(record_at(&batch, 401, 0), None);
            // Records below the log start are never answered.
            assert_eq!(record_at(&batch, 100, 2), Some((2, 200)));
            // The first record holding the largest timestamp.
            assert_eq!(
                record_at(&batch, LIST_OFFSETS_MAX_TIMESTAMP, 0),
                Some((3, 400))
            );
        }
    }

    #[test]
    fn with_log_append_time_every_record_has_the_batchs_max_timestamp() {
        let mut batch = batch(&[100, 300, 200], Compression::None);
        batch.header.attributes |= 1 << 3;
        batch.header.max_timestamp = 500;
        assert_eq!(record_at(&batch, 150, 0), Some((0, 500)));
        assert_eq!(
            record_at(&batch, LIST_OFFSETS_MAX_TIMESTAMP, 0),
            Some((0, 500))
        );
    }
}
