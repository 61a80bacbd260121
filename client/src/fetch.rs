//! Fetch and ListOffsets.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, ListOffsetsRequest};

use crate::admin::topic_name;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::records::{
    control_record_type, decode_batch, split_batches, BatchHeader, ConsumedRecord,
    ControlRecordType, DecodedBatch,
};

/// ListOffsets timestamp meaning "the latest offset" (the high watermark, or the last stable
/// offset under read_committed).
pub const LATEST_TIMESTAMP: i64 = -1;
/// ListOffsets timestamp meaning "the earliest offset" (the log start offset).
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// ListOffsets timestamp meaning "the record with the largest timestamp" (the first such
/// record; ListOffsets v7+).
pub const MAX_TIMESTAMP: i64 = -3;

/// Which records a fetch may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Everything up to the high watermark.
    #[default]
    ReadUncommitted,
    /// Only up to the last stable offset; aborted transactions are dropped.
    ReadCommitted,
}

impl IsolationLevel {
    fn code(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Fetch parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// How long the broker may wait for `min_bytes` (added to the request timeout).
    /// Default 500 ms.
    pub max_wait_ms: i32,
    /// Bytes the broker should wait for. Default 1.
    pub min_bytes: i32,
    /// Response size limit, also used as the partition limit. Default 1 MiB.
    pub max_bytes: i32,
    /// Isolation level. Default read_uncommitted.
    pub isolation: IsolationLevel,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1024 * 1024,
            isolation: IsolationLevel::ReadUncommitted,
        }
    }
}

/// A transaction the broker reports as aborted (read_committed fetches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer of the aborted transaction.
    pub producer_id: i64,
    /// The first offset of the aborted transaction.
    pub first_offset: i64,
}

/// One partition's fetch result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset (-1 if the broker does not know).
    pub last_stable_offset: i64,
    /// Log start offset (-1 if unknown).
    pub log_start_offset: i64,
    /// Data records at or after the fetch offset, in order. Control records are skipped;
    /// under read_committed, records of aborted transactions are dropped too.
    pub records: Vec<ConsumedRecord>,
    /// Headers of every whole batch in the response, control and aborted ones included.
    pub batches: Vec<BatchHeader>,
    /// Aborted transactions reported by the broker.
    pub aborted_transactions: Vec<AbortedTransaction>,
    /// Where the next fetch should start: after the last whole batch returned, or the
    /// fetch offset if there was none.
    pub next_offset: i64,
}

impl Connection {
    /// Fetches from one partition starting at `offset`. A partition (or top-level) error is
    /// `Error::Broker` with its Kafka code, e.g. 1 for OFFSET_OUT_OF_RANGE.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        options: &FetchOptions,
    ) -> Result<FetchedPartition> {
        let version = self.version(ApiKey::Fetch)?;
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(options.max_wait_ms)
            .with_min_bytes(options.min_bytes)
            .with_max_bytes(options.max_bytes)
            .with_isolation_level(options.isolation.code())
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(options.max_bytes)])]);
        let wait = Duration::from_millis(u64::try_from(options.max_wait_ms).unwrap_or(0));
        let response = self.send_with_extra_wait(&request, version, wait).await?;
        Error::check(ApiKey::Fetch, response.error_code, None)?;
        let data = response
            .responses
            .into_iter()
            .filter(|t| t.topic.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("Fetch response lacks {topic}/{partition}"))
            })?;
        Error::check(ApiKey::Fetch, data.error_code, None)?;
        let aborted: Vec<AbortedTransaction> = data
            .aborted_transactions
            .unwrap_or_default()
            .into_iter()
            .map(|a| AbortedTransaction {
                producer_id: a.producer_id.0,
                first_offset: a.first_offset,
            })
            .collect();
        let mut fetched = assemble(
            data.records.unwrap_or_default(),
            offset,
            options.isolation,
            &aborted,
        )?;
        fetched.high_watermark = data.high_watermark;
        fetched.last_stable_offset = data.last_stable_offset;
        fetched.log_start_offset = data.log_start_offset;
        fetched.aborted_transactions = aborted;
        Ok(fetched)
    }

    /// ListOffsets (read_uncommitted) for one partition: the offset for `timestamp` (the
    /// first record whose timestamp is at or after it; -1 if none), or [`LATEST_TIMESTAMP`]
    /// / [`EARLIEST_TIMESTAMP`] / [`MAX_TIMESTAMP`].
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64> {
        self.list_offsets_isolated(topic, partition, timestamp, IsolationLevel::ReadUncommitted)
            .await
    }

    /// ListOffsets with an isolation level (needs ListOffsets v2+ for read_committed).
    pub async fn list_offsets_isolated(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        isolation: IsolationLevel,
    ) -> Result<i64> {
        let (offset, _) = self
            .list_offset_and_timestamp(topic, partition, timestamp, isolation)
            .await?;
        Ok(offset)
    }

    /// ListOffsets for one partition, answering `(offset, timestamp)`: the timestamp is the
    /// found record's (for a timestamp or [`MAX_TIMESTAMP`]; -1 for the latest and earliest
    /// offsets, and when no record qualifies, with offset -1).
    pub async fn list_offset_and_timestamp(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        isolation: IsolationLevel,
    ) -> Result<(i64, i64)> {
        let version = self.version(ApiKey::ListOffsets)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation.code())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let response = self.send(&request, version).await?;
        let result = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("ListOffsets response lacks {topic}/{partition}"))
            })?;
        Error::check(ApiKey::ListOffsets, result.error_code, None)?;
        Ok((result.offset, result.timestamp))
    }
}

/// Turns a partition's raw record bytes into a [`FetchedPartition`] (offsets from the
/// response header are left at -1): decodes whole batches, keeps those
/// [`delivered_batches`] delivers and drops their records before `fetch_offset`.
pub fn assemble(
    records: Bytes,
    fetch_offset: i64,
    isolation: IsolationLevel,
    aborted: &[AbortedTransaction],
) -> Result<FetchedPartition> {
    let (raw_batches, _partial) = split_batches(&records)?;
    let batches: Vec<DecodedBatch> = raw_batches
        .iter()
        .map(decode_batch)
        .collect::<Result<_>>()?;
    let delivered = delivered_batches(&batches, isolation, aborted);
    let mut out = FetchedPartition {
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        records: Vec::new(),
        batches: batches.iter().map(|b| b.header).collect(),
        aborted_transactions: Vec::new(),
        next_offset: batches
            .last()
            .map_or(fetch_offset, |b| b.header.next_offset().max(fetch_offset)),
    };
    for (batch, keep) in batches.into_iter().zip(delivered) {
        if keep {
            out.records.extend(
                batch
                    .records
                    .into_iter()
                    .filter(|r| r.offset >= fetch_offset),
            );
        }
    }
    Ok(out)
}

/// Which of one fetch response's batches (of one partition, in offset order) a consumer
/// delivers to its application, as Kafka's consumers decide it: never a control batch; under
/// read_uncommitted every other batch; under read_committed not the transactional batches of
/// an aborted transaction either.
///
/// `aborted` is the response's `aborted_transactions` (producer id, first offset), in any
/// order. Kafka's broker lists every aborted transaction that overlaps the fetched range,
/// including one that began before the fetch offset, so the filter needs no state across
/// fetches: an aborted transaction whose data spans several fetches is listed in each.
/// Walking the batches in order, every listed transaction whose first offset is at or
/// before the batch's last offset marks its producer aborted; that producer's
/// transactional batches are dropped until its ABORT marker (a control record with
/// type 0), which clears the mark. Its later transactions, committed or not listed, are
/// delivered.
pub fn delivered_batches(
    batches: &[DecodedBatch],
    isolation: IsolationLevel,
    aborted: &[AbortedTransaction],
) -> Vec<bool> {
    let mut pending: Vec<AbortedTransaction> = aborted.to_vec();
    pending.sort_by_key(|a| (a.first_offset, a.producer_id));
    let mut pending = pending.into_iter().peekable();
    let mut aborted_producers = BTreeSet::new();
    batches
        .iter()
        .map(|batch| {
            let header = &batch.header;
            if isolation == IsolationLevel::ReadCommitted && header.producer_id >= 0 {
                while let Some(a) = pending.next_if(|a| a.first_offset <= header.last_offset()) {
                    aborted_producers.insert(a.producer_id);
                }
                if header.is_control() {
                    let is_abort = batch
                        .records
                        .first()
                        .and_then(control_record_type)
                        .is_some_and(|t| t == ControlRecordType::Abort);
                    if is_abort {
                        aborted_producers.remove(&header.producer_id);
                    }
                } else if header.is_transactional()
                    && aborted_producers.contains(&header.producer_id)
                {
                    return false;
                }
            }
            !header.is_control()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode_batch, BatchOptions, NewRecord};
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// A data batch at `base` with `n` records, optionally transactional.
    fn data(base: i64, n: usize, producer_id: i64, transactional: bool) -> Bytes {
        let records: Vec<NewRecord> = (0..n)
            .map(|i| NewRecord::new(format!("{}", base + i as i64)).with_timestamp(1))
            .collect();
        let options = BatchOptions {
            producer_id,
            producer_epoch: 0,
            base_sequence: if producer_id >= 0 { 0 } else { -1 },
            transactional,
            ..Default::default()
        };
        let bytes = encode_batch(&records, &options).unwrap();
        let mut b = BytesMut::from(&bytes[..]);
        b[..8].copy_from_slice(&base.to_be_bytes()); // outside the CRC, like the broker
        b.freeze()
    }

    /// A control batch (transaction marker) at `offset`.
    fn marker(offset: i64, producer_id: i64, commit: bool) -> Bytes {
        let key: [u8; 4] = [0, 0, 0, u8::from(commit)];
        let record = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 1,
            key: Some(Bytes::copy_from_slice(&key)),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            [&record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        let mut b = BytesMut::new();
        for p in parts {
            b.extend_from_slice(p);
        }
        b.freeze()
    }

    fn values(p: &FetchedPartition) -> Vec<String> {
        p.records
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn drops_records_before_fetch_offset_and_reports_next_offset() {
        let bytes = concat(&[data(10, 3, -1, false), data(13, 2, -1, false)]);
        let p = assemble(bytes, 11, IsolationLevel::ReadUncommitted, &[]).unwrap();
        assert_eq!(values(&p), ["11", "12", "13", "14"]);
        assert_eq!(p.next_offset, 15);
        assert_eq!(p.batches.len(), 2);
        let empty = assemble(Bytes::new(), 7, IsolationLevel::ReadUncommitted, &[]).unwrap();
        assert_eq!((empty.records.len(), empty.next_offset), (0, 7));
    }

    #[test]
    fn read_committed_drops_aborted_transactions_and_markers() {
        // pid 1: aborted txn at 0..=1, marker at 2. pid 2: committed txn at 3, marker at 4.
        // pid 1 again: non-aborted txn at 5 (after its abort marker), marker at 6.
        let bytes = concat(&[
            data(0, 2, 1, true),
            marker(2, 1, false),
            data(3, 1, 2, true),
            marker(4, 2, true),
            data(5, 1, 1, true),
            marker(6, 1, true),
        ]);
        let aborted = [AbortedTransaction {
            producer_id: 1,
            first_offset: 0,
        }];
        let committed =
            assemble(bytes.clone(), 0, IsolationLevel::ReadCommitted, &aborted).unwrap();
        assert_eq!(values(&committed), ["3", "5"]);
        assert_eq!(committed.next_offset, 7);
        assert_eq!(committed.batches.len(), 6);

        let uncommitted = assemble(bytes, 0, IsolationLevel::ReadUncommitted, &aborted).unwrap();
        assert_eq!(values(&uncommitted), ["0", "1", "3", "5"]);
    }

    fn aborted(producer_id: i64, first_offset: i64) -> AbortedTransaction {
        AbortedTransaction {
            producer_id,
            first_offset,
        }
    }

    fn committed(parts: &[Bytes], fetch_offset: i64, list: &[AbortedTransaction]) -> Vec<String> {
        let p = assemble(
            concat(parts),
            fetch_offset,
            IsolationLevel::ReadCommitted,
            list,
        )
        .unwrap();
        values(&p)
    }

    #[test]
    fn aborted_transaction_spanning_several_fetches_is_dropped_in_each() {
        // The log: pid 1's aborted transaction at 0..=1, 2..=3 and 5, pid 2 (idempotent,
        // not transactional) at 4, pid 1's ABORT marker at 6, plain data at 7.
        let log = [
            data(0, 2, 1, true),
            data(2, 2, 1, true),
            data(4, 1, 2, false),
            data(5, 1, 1, true),
            marker(6, 1, false),
            data(7, 1, -1, false),
        ];
        let list = [aborted(1, 0)];
        // Fetch 1 ends inside the transaction (max bytes), before its marker.
        assert!(committed(&log[..2], 0, &list).is_empty());
        // Fetch 2 starts inside it: the broker lists it again (its first offset is before
        // the fetch offset).
        assert_eq!(committed(&log[2..4], 4, &list), ["4"]);
        // Fetch 3 starts mid-batch, still inside it, and reaches past the marker.
        assert_eq!(committed(&log[1..], 3, &list), ["4", "7"]);
        // Fetch 4 holds only the marker and later data.
        assert_eq!(committed(&log[4..], 6, &list), ["7"]);
        // The whole log in one fetch.
        assert_eq!(committed(&log, 0, &list), ["4", "7"]);
        // read_uncommitted sees everything but the marker.
        let p = assemble(concat(&log), 0, IsolationLevel::ReadUncommitted, &list).unwrap();
        assert_eq!(values(&p), ["0", "1", "2", "3", "4", "5", "7"]);
    }

    #[test]
    fn committed_transaction_after_an_aborted_one_of_the_same_producer_is_kept() {
        let log = [
            data(0, 2, 1, true),
            marker(2, 1, false),
            data(3, 2, 1, true),
            marker(5, 1, true),
            // A second aborted transaction of the same producer, then a committed one.
            data(6, 1, 1, true),
            marker(7, 1, false),
            data(8, 1, 1, true),
            marker(9, 1, true),
        ];
        let list = [aborted(1, 6), aborted(1, 0)];
        assert_eq!(committed(&log, 0, &list), ["3", "4", "8"]);
        // Fetched from the committed transaction on: only the later abort is listed.
        assert_eq!(committed(&log[2..], 3, &[aborted(1, 6)]), ["3", "4", "8"]);
        // A commit marker does not end an abort (only the ABORT marker does).
        let odd = [data(0, 1, 1, true), marker(1, 1, true), data(2, 1, 1, true)];
        assert!(committed(&odd, 0, &[aborted(1, 0)]).is_empty());
    }

    #[test]
    fn interleaved_producers_are_filtered_independently() {
        // pid 1 aborts, pid 2 commits, pid 3 aborts, a plain producer writes in between.
        let log = [
            data(0, 1, 1, true),
            data(1, 1, 2, true),
            data(2, 1, -1, false),
            data(3, 1, 1, true),
            data(4, 1, 3, true),
            data(5, 1, 2, true),
            marker(6, 1, false),
            data(7, 1, 3, true),
            marker(8, 2, true),
            data(9, 1, 1, true), // pid 1's next transaction, committed below
            marker(10, 3, false),
            marker(11, 1, true),
        ];
        let list = [aborted(3, 4), aborted(1, 0)];
        assert_eq!(committed(&log, 0, &list), ["1", "2", "5", "9"]);
        // Marker and data batches never surface as records, and headers are all reported.
        let p = assemble(concat(&log), 0, IsolationLevel::ReadCommitted, &list).unwrap();
        assert_eq!(p.batches.len(), log.len());
        assert_eq!(p.next_offset, 12);
        // The decision per batch, directly.
        let decoded: Vec<DecodedBatch> = log.iter().map(|b| decode_batch(b).unwrap()).collect();
        let keep = delivered_batches(&decoded, IsolationLevel::ReadCommitted, &list);
        assert_eq!(
            keep,
            [false, true, true, false, false, true, false, false, false, true, false, false]
        );
        let keep = delivered_batches(&decoded, IsolationLevel::ReadUncommitted, &list);
        assert_eq!(keep.iter().filter(|k| **k).count(), 8);
    }

    #[test]
    fn partial_trailing_batch_is_ignored() {
        let full = data(0, 2, -1, false);
        let next = data(2, 2, -1, false);
        let bytes = concat(&[full, next.slice(..next.len() - 1)]);
        let p = assemble(bytes, 0, IsolationLevel::ReadUncommitted, &[]).unwrap();
        assert_eq!(values(&p), ["0", "1"]);
        assert_eq!(p.next_offset, 2);
    }
}
