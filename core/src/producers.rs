//! Idempotent producers: per partition, each producer's epoch and its last batches'
//! sequence numbers, so that a retried batch is never written twice.
//!
//! A producer gets an id and an epoch from InitProducerId and numbers its records per
//! partition from 0. The broker keeps, for each (partition, producer id), the epoch and the
//! last `RECENT_BATCHES_MAX` batches (Kafka's max.in.flight.requests.per.connection bound).
//!
//! An entry expires once the producer has written nothing for `producer.id.expiration.ms`
//! (by its batches' timestamps, as Kafka does) and has no transaction open here. Those
//! timestamps are the producers' wall clocks, so expiry compares them with the broker's
//! wall clock, not its monotonic one: a wall clock stepped forward may forget an idle
//! producer early, which costs it only the UNKNOWN_PRODUCER_ID below. A
//! producer this partition does not know (expired, or its batches all deleted by
//! retention) and whose batch does not start at sequence 0 gets UNKNOWN_PRODUCER_ID, which
//! clients handle by starting a new epoch, not OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! Invariants:
//! - a batch is appended only if its sequence continues the producer's last one exactly
//!   (or starts at 0 under a new epoch / for a producer not known);
//! - a batch identical in (epoch, first sequence, last sequence) to a recent one is a
//!   duplicate: it is answered with the original offset and never appended again;
//! - an epoch below the producer's current epoch is fenced (INVALID_PRODUCER_EPOCH);
//! - the state is a function of the batches in the log (and of the clock, for expiry), so
//!   replaying the log's batch headers at recovery rebuilds it exactly.

use crate::api::ErrorCode;
use crate::batch::{sequence_add, BatchHeader};
use std::collections::{BTreeMap, VecDeque};

/// Batches remembered per producer for duplicate detection.
pub const RECENT_BATCHES_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecentBatch {
    first_sequence: i32,
    last_sequence: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<RecentBatch>,
    /// The largest timestamp of the producer's batches here: expiry counts from it.
    last_timestamp_ms: i64,
}

/// What to do with a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceVerdict {
    /// New data in sequence: append it.
    Append,
    /// Already written at these offsets: answer with them, append nothing.
    Duplicate { first_offset: i64, last_offset: i64 },
}

/// Per-partition producer state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateTable {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    /// Decides whether a batch is appended, a duplicate, or refused with a Kafka error.
    /// Batches without a producer id are always appended.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceVerdict, ErrorCode> {
        if !header.has_producer_id() {
            return Ok(SequenceVerdict::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return if header.base_sequence == 0 {
                Ok(SequenceVerdict::Append)
            } else {
                Err(ErrorCode::UnknownProducerId)
            };
        };
        if header.producer_epoch < entry.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if header.producer_epoch > entry.epoch {
            // A new epoch restarts the numbering.
            return if header.base_sequence == 0 {
                Ok(SequenceVerdict::Append)
            } else {
                Err(ErrorCode::OutOfOrderSequenceNumber)
            };
        }
        let last_sequence = header.last_sequence();
        if let Some(original) = entry.recent.iter().find(|recent| {
            recent.first_sequence == header.base_sequence && recent.last_sequence == last_sequence
        }) {
            return Ok(SequenceVerdict::Duplicate {
                first_offset: original.first_offset,
                last_offset: original.last_offset,
            });
        }
        // No recent batch left (a truncation removed them): the last sequence is unknown, so
        // any continues it; the batches that set it were never committed.
        let Some(last) = entry.recent.back() else {
            return Ok(SequenceVerdict::Append);
        };
        if header.base_sequence == sequence_add(last.last_sequence, 1) {
            Ok(SequenceVerdict::Append)
        } else {
            Err(ErrorCode::OutOfOrderSequenceNumber)
        }
    }

    /// Records a batch appended at `first_offset` (after `check` said `Append`, or while
    /// replaying the log at recovery).
    pub fn record(&mut self, header: &BatchHeader, first_offset: i64) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                recent: VecDeque::new(),
                last_timestamp_ms: header.max_timestamp,
            });
        entry.last_timestamp_ms = entry.last_timestamp_ms.max(header.max_timestamp);
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.recent.clear();
        }
        // Transaction markers and the broker's own transactional records carry no sequence:
        // they move the epoch (a fencing abort's marker carries the bumped one), nothing else.
        if header.is_control() || header.base_sequence < 0 {
            return;
        }
        if entry.recent.len() == RECENT_BATCHES_MAX {
            entry.recent.pop_front();
        }
        entry.recent.push_back(RecentBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset,
            last_offset: first_offset + i64::from(header.last_offset_delta),
        });
    }

    /// Forgets the producers that wrote nothing for `expiration_ms` before `wall_ms` (the wall
    /// clock, as their batches' timestamps), except those `keep` names (a transaction open
    /// here); returns how many were forgotten.
    pub fn expire(
        &mut self,
        wall_ms: i64,
        expiration_ms: i64,
        keep: impl Fn(i64) -> bool,
    ) -> usize {
        let before = self.producers.len();
        self.producers.retain(|producer_id, entry| {
            wall_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms || keep(*producer_id)
        });
        before - self.producers.len()
    }

    /// Forgets the batches at or above `offset` (the log was truncated there, in
    /// replication). A producer left with no recent batch keeps its epoch; its next
    /// sequence is then accepted as it comes (see `check`).
    pub fn truncate(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.recent.retain(|batch| batch.last_offset < offset);
        }
    }

    /// Each producer's (id, epoch, last sequence, last offset), for DescribeProducers.
    pub fn describe(&self) -> impl Iterator<Item = (i64, i16, i32, i64)> + '_ {
        self.producers.iter().map(|(producer_id, entry)| {
            let last = entry.recent.back();
            (
                *producer_id,
                entry.epoch,
                last.map_or(-1, |batch| batch.last_sequence),
                last.map_or(-1, |batch| batch.last_offset),
            )
        })
    }

    /// Number of producers with state in this partition.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{read_header, test_batches};
    use proptest::prelude::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, record_count: i32) -> BatchHeader {
        read_header(&test_batches::batch(
            record_count,
            0,
            producer_id,
            epoch,
            base_sequence,
        ))
        .unwrap()
    }

    #[test]
    fn in_sequence_batches_append_and_retries_are_duplicates() {
        let mut table = ProducerStateTable::default();
        let first = header(7, 0, 0, 3);
        assert_eq!(table.check(&first), Ok(SequenceVerdict::Append));
        table.record(&first, 100);
        let second = header(7, 0, 3, 2);
        assert_eq!(table.check(&second), Ok(SequenceVerdict::Append));
        table.record(&second, 103);
        assert_eq!(
            table.check(&first),
            Ok(SequenceVerdict::Duplicate {
                first_offset: 100,
                last_offset: 102
            })
        );
    }

    #[test]
    fn gaps_and_old_epochs_get_kafkas_errors() {
        let mut table = ProducerStateTable::default();
        assert_eq!(
            table.check(&header(7, 0, 5, 1)),
            Err(ErrorCode::UnknownProducerId),
            "an unknown producer starts at 0"
        );
        table.record(&header(7, 1, 0, 1), 0);
        assert_eq!(
            table.check(&header(7, 1, 2, 1)),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            table.check(&header(7, 0, 1, 1)),
            Err(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(
            table.check(&header(7, 2, 0, 1)),
            Ok(SequenceVerdict::Append)
        );
        assert_eq!(
            table.check(&header(7, 2, 1, 1)),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn an_idle_producer_expires_unless_a_transaction_is_open_and_then_is_unknown() {
        const EXPIRATION_MS: i64 = 60_000;
        let stamped = |producer_id: i64, sequence: i32, timestamp: i64| {
            read_header(&test_batches::batch(1, timestamp, producer_id, 0, sequence)).unwrap()
        };
        let mut table = ProducerStateTable::default();
        table.record(&stamped(7, 0, 1_000), 0);
        table.record(&stamped(8, 0, 1_000), 1);
        table.record(&stamped(9, 0, 50_000), 2);
        // Not yet: 59.999 s after producer 7's last batch.
        assert_eq!(table.expire(60_999, EXPIRATION_MS, |_| false), 0);
        // 7 expires; 8 is kept by its open transaction; 9 wrote more recently.
        assert_eq!(
            table.expire(61_000, EXPIRATION_MS, |producer| producer == 8),
            1
        );
        assert_eq!(
            table.check(&stamped(7, 1, 70_000)),
            Err(ErrorCode::UnknownProducerId),
            "its next batch meets no state"
        );
        assert_eq!(
            table.check(&stamped(8, 1, 70_000)),
            Ok(SequenceVerdict::Append)
        );
        assert_eq!(
            table.check(&stamped(9, 1, 70_000)),
            Ok(SequenceVerdict::Append)
        );
        assert_eq!(
            table.check(&stamped(7, 0, 70_000)),
            Ok(SequenceVerdict::Append),
            "a new epoch's first batch starts it again"
        );
    }

    #[test]
    fn batches_without_a_producer_id_are_always_appended() {
        let table = ProducerStateTable::default();
        let plain = read_header(&test_batches::plain(2, 0)).unwrap();
        assert_eq!(table.check(&plain), Ok(SequenceVerdict::Append));
    }

    proptest! {
        /// A producer that sends batches in order and retries any of its last five, in any
        /// interleaving, gets every record written exactly once, in order.
        #[test]
        fn retries_never_duplicate_a_record(
            batch_sizes in prop::collection::vec(1i32..5, 1..30),
            retries in prop::collection::vec((any::<prop::sample::Index>(), 0usize..5), 0..40),
        ) {
            let mut table = ProducerStateTable::default();
            let mut log_end = 0i64;
            let mut written: Vec<i32> = Vec::new(); // sequence numbers in log order
            let mut sent: Vec<BatchHeader> = Vec::new();
            let mut sequence = 0;
            let mut retry_iter = retries.into_iter();
            for size in batch_sizes {
                let batch = header(42, 0, sequence, size);
                sequence += size;
                sent.push(batch);
                let mut attempts = vec![batch];
                if let Some((pick, back)) = retry_iter.next() {
                    let window = sent.len().min(RECENT_BATCHES_MAX);
                    let index = sent.len() - 1 - (pick.index(window)).min(back);
                    attempts.push(sent[index]);
                }
                for attempt in attempts {
                    match table.check(&attempt) {
                        Ok(SequenceVerdict::Append) => {
                            table.record(&attempt, log_end);
                            log_end += attempt.offset_count();
                            written.extend(attempt.base_sequence..=attempt.last_sequence());
                        }
                        Ok(SequenceVerdict::Duplicate { first_offset, .. }) => {
                            prop_assert!(first_offset < log_end);
                        }
                        Err(code) => prop_assert!(false, "unexpected {code:?}"),
                    }
                }
            }
            let expected: Vec<i32> = (0..sequence).collect();
            prop_assert_eq!(written, expected);
        }
    }
}
