//! One partition's view of transactions: which producers have a transaction open here
//! (from their first transactional batch to their marker), the last stable offset, and the
//! index of aborted transactions that read_committed fetches return.
//!
//! Every replica keeps it, built from the batches in its log as they are appended (or
//! replayed at recovery: a marker's type comes from its control record), so a new leader
//! has it at once.
//!
//! Invariants:
//! - the last stable offset is the first offset of the earliest transaction that is open or
//!   whose marker is not yet below the high watermark, and never above the high watermark:
//!   read_committed never sees a record whose transaction's outcome is not committed;
//! - every transaction that aborted after writing data here is in the aborted index, with
//!   its first offset and its marker's offset, until retention deletes it all;
//! - the index follows the log: truncating the log at `offset` undoes exactly the batches
//!   at or above it (a transaction whose marker is cut is open again);
//! - a transaction's first append is made only after the coordinator verified it
//!   (`begin_verification` / `verified`); the verification stands for the rest of that
//!   transaction (pipelined produces share it) and only the producer's next marker ends it,
//!   so data never lands after the marker that ended its transaction;
//! - a marker carrying an older transaction number than the open (or verified)
//!   transaction's is stale and not written (`marker_action`): a delayed marker never ends
//!   a later transaction;
//! - any other marker is written, even where its transaction wrote nothing: it voids a
//!   verification still in flight there, so a late confirmation (from a deposed
//!   coordinator) cannot open a transaction that no marker will end.

use crate::api::AbortedTransaction;
use crate::batch::BatchHeader;
use crate::records::{CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT};
use std::collections::{BTreeMap, VecDeque};

/// Open verifications kept per partition (one per producer in flight).
const VERIFICATIONS_MAX: usize = 10_000;

/// A transaction open in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenTxn {
    first_offset: i64,
    producer_epoch: i16,
    /// The coordinator's number for it, when this node verified it (unknown after a
    /// failover or a restart).
    txn_number: Option<u64>,
}

/// A transaction whose marker is written but not yet below the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EndedTxn {
    producer_id: i64,
    open: OpenTxn,
    marker_offset: i64,
    aborted: bool,
    /// Set when this node wrote the marker as leader (`marker_written`): the producer's
    /// `last_marker_number` before it, restored if a truncation cuts the marker.
    marker_number_before: Option<Option<u64>>,
}

/// An aborted transaction of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AbortedEntry {
    producer_id: i64,
    first_offset: i64,
    /// The abort marker's offset.
    last_offset: i64,
}

/// A verification in flight for a producer: its epoch and a token that a marker voids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verification {
    producer_epoch: i16,
    token: u64,
    txn_number: Option<u64>,
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct PartitionTransactions {
    open: BTreeMap<i64, OpenTxn>,
    ended: Vec<EndedTxn>,
    aborted: VecDeque<AbortedEntry>,
    verifications: BTreeMap<i64, Verification>,
    next_token: u64,
    /// The transaction number of each producer's last marker written by this node.
    last_marker_number: BTreeMap<i64, u64>,
    /// The coordinator epoch of each producer's last marker written by this node: a marker
    /// from an older coordinator is fenced (TRANSACTION_COORDINATOR_FENCED).
    coordinator_epochs: BTreeMap<i64, i32>,
    /// A deliberate defect of the read_committed view (see `core/src/defects.rs`).
    #[cfg(feature = "defects")]
    defect: Option<crate::defects::Defect>,
}

/// What a marker request should do in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerAction {
    /// Append the marker.
    Write,
    /// The marker is stale: this node already wrote it (or a later transaction's), or a
    /// later transaction is open or verified here. Answer once what is written is
    /// committed.
    AlreadyDone,
}

impl PartitionTransactions {
    /// Switches on a deliberate defect (only those of this type take effect:
    /// `LastStableOffsetIgnoresOpenTransactions`, `EmptyAbortedTransactions`).
    #[cfg(feature = "defects")]
    pub fn set_defect(&mut self, defect: Option<crate::defects::Defect>) {
        self.defect = defect;
    }

    /// Takes a batch appended at `base_offset` into account (`control_type` as
    /// `records::control_record_type` reads it).
    pub fn on_batch(&mut self, header: &BatchHeader, base_offset: i64, control_type: Option<i16>) {
        if !header.is_transactional() || !header.has_producer_id() {
            return;
        }
        let producer_id = header.producer_id;
        if header.is_control() {
            let aborted = match control_type {
                Some(CONTROL_TYPE_ABORT) => true,
                Some(CONTROL_TYPE_COMMIT) => false,
                _ => return,
            };
            self.verifications.remove(&producer_id);
            if let Some(open) = self.open.remove(&producer_id) {
                self.ended.push(EndedTxn {
                    producer_id,
                    open,
                    marker_offset: base_offset,
                    aborted,
                    marker_number_before: None,
                });
                if aborted {
                    self.aborted.push_back(AbortedEntry {
                        producer_id,
                        first_offset: open.first_offset,
                        last_offset: base_offset,
                    });
                }
            }
            return;
        }
        let verified_number = self
            .verifications
            .get(&producer_id)
            .filter(|verification| verification.producer_epoch == header.producer_epoch)
            .and_then(|verification| verification.txn_number);
        self.open.entry(producer_id).or_insert(OpenTxn {
            first_offset: base_offset,
            producer_epoch: header.producer_epoch,
            txn_number: verified_number,
        });
    }

    /// The last stable offset under high watermark `high_watermark`.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        #[cfg(feature = "defects")]
        if self.defect == Some(crate::defects::Defect::LastStableOffsetIgnoresOpenTransactions) {
            return high_watermark;
        }
        let open = self.open.values().map(|open| open.first_offset);
        let unreplicated = self
            .ended
            .iter()
            .filter(|ended| ended.marker_offset >= high_watermark)
            .map(|ended| ended.open.first_offset);
        open.chain(unreplicated)
            .fold(high_watermark, |lowest, first| lowest.min(first))
    }

    /// Forgets ended transactions whose markers are committed (they no longer hold the last
    /// stable offset back and can no longer be truncated away).
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.ended
            .retain(|ended| ended.marker_offset >= high_watermark);
    }

    /// The log was truncated at `offset`: undo what the batches at or above it did.
    pub fn truncate(&mut self, offset: i64) {
        self.open.retain(|_, open| open.first_offset < offset);
        let (cut, kept): (Vec<EndedTxn>, Vec<EndedTxn>) = self
            .ended
            .drain(..)
            .partition(|ended| ended.marker_offset >= offset);
        self.ended = kept;
        // Newest first, so that a producer's number goes back to what it was before the
        // oldest cut marker.
        for ended in cut.into_iter().rev() {
            if ended.open.first_offset < offset {
                self.open.insert(ended.producer_id, ended.open);
            }
            // A marker this node wrote (as a leader about to learn it was deposed) is gone:
            // its transaction is open again and its marker must be written again, so the
            // number must not make that marker look stale (`marker_action`).
            match ended.marker_number_before {
                Some(Some(number)) => {
                    self.last_marker_number.insert(ended.producer_id, number);
                }
                Some(None) => {
                    self.last_marker_number.remove(&ended.producer_id);
                }
                None => {}
            }
        }
        self.aborted.retain(|entry| entry.last_offset < offset);
    }

    /// Retention deleted everything below `log_start_offset`.
    pub fn delete_below(&mut self, log_start_offset: i64) {
        while self
            .aborted
            .front()
            .is_some_and(|entry| entry.last_offset < log_start_offset)
        {
            self.aborted.pop_front();
        }
    }

    /// The aborted transactions a read_committed fetch of `[from, to)` must report: those
    /// with records there.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTransaction> {
        #[cfg(feature = "defects")]
        if self.defect == Some(crate::defects::Defect::EmptyAbortedTransactions) {
            return Vec::new();
        }
        self.aborted
            .iter()
            .filter(|entry| entry.last_offset >= from && entry.first_offset < to)
            .map(|entry| AbortedTransaction {
                producer_id: entry.producer_id,
                first_offset: entry.first_offset,
            })
            .collect()
    }

    /// Whether the producer has a transaction open here under `producer_epoch`: its batches
    /// need no verification.
    pub fn is_open(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.open
            .get(&producer_id)
            .is_some_and(|open| open.producer_epoch == producer_epoch)
    }

    /// The first offset of the producer's open transaction here (-1 if none).
    pub fn open_first_offset(&self, producer_id: i64) -> i64 {
        self.open
            .get(&producer_id)
            .map_or(-1, |open| open.first_offset)
    }

    /// Starts a verification of the producer's next transactional append; returns the
    /// token `verified` checks, or `None` when too many are in flight. Produces pipelined
    /// behind the first one share its token: only a marker (or another epoch) ends it.
    pub fn begin_verification(&mut self, producer_id: i64, producer_epoch: i16) -> Option<u64> {
        if let Some(verification) = self.verifications.get(&producer_id) {
            if verification.producer_epoch == producer_epoch {
                return Some(verification.token);
            }
        } else if self.verifications.len() >= VERIFICATIONS_MAX {
            return None;
        }
        self.next_token += 1;
        self.verifications.insert(
            producer_id,
            Verification {
                producer_epoch,
                token: self.next_token,
                txn_number: None,
            },
        );
        Some(self.next_token)
    }

    /// The coordinator answered a verification: whether it still stands (no marker for the
    /// producer came in between). The transaction's number is kept for its first append.
    pub fn verified(&mut self, producer_id: i64, token: u64, txn_number: u64) -> bool {
        match self.verifications.get_mut(&producer_id) {
            Some(verification) if verification.token == token => {
                verification.txn_number = Some(txn_number);
                true
            }
            _ => false,
        }
    }

    /// Whether the coordinator confirmed the producer's transaction here (under this epoch)
    /// and no marker voided it since.
    pub fn is_verified(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.verifications
            .get(&producer_id)
            .is_some_and(|verification| {
                verification.producer_epoch == producer_epoch && verification.txn_number.is_some()
            })
    }

    /// A verification failed (an error, a timeout): the next append asks again.
    pub fn end_verification(&mut self, producer_id: i64, token: u64) {
        if self
            .verifications
            .get(&producer_id)
            .is_some_and(|verification| {
                verification.token == token && verification.txn_number.is_none()
            })
        {
            self.verifications.remove(&producer_id);
        }
    }

    /// What a marker for transaction `txn_number` of the producer should do here.
    ///
    /// A marker is written even when the transaction wrote nothing here (as Kafka does):
    /// its first append may still be waiting for a verification that a deposed
    /// coordinator will confirm, and only a marker in the log voids that verification
    /// and carries a fencing abort's bumped epoch to every replica (simulator transaction
    /// seed 811, `sim/scenarios/txn-verified-by-a-deposed-coordinator.json`).
    pub fn marker_action(&self, producer_id: i64, txn_number: u64) -> MarkerAction {
        let stale_by_open = self
            .open
            .get(&producer_id)
            .is_some_and(|open| open.txn_number.is_some_and(|number| txn_number < number));
        let stale_by_verification = self
            .verifications
            .get(&producer_id)
            .and_then(|verification| verification.txn_number)
            .is_some_and(|number| txn_number < number);
        let stale_by_marker = self
            .last_marker_number
            .get(&producer_id)
            .is_some_and(|number| txn_number <= *number);
        if stale_by_open || stale_by_verification || stale_by_marker {
            MarkerAction::AlreadyDone
        } else {
            MarkerAction::Write
        }
    }

    /// This node wrote the marker of transaction `txn_number` of the producer, for the
    /// coordinator of `coordinator_epoch`.
    pub fn marker_written(&mut self, producer_id: i64, txn_number: u64, coordinator_epoch: i32) {
        let before = self.last_marker_number.get(&producer_id).copied();
        if let Some(ended) = self
            .ended
            .iter_mut()
            .rev()
            .find(|ended| ended.producer_id == producer_id)
        {
            ended.marker_number_before = Some(before);
        }
        let number = self.last_marker_number.entry(producer_id).or_default();
        *number = (*number).max(txn_number);
        let epoch = self
            .coordinator_epochs
            .entry(producer_id)
            .or_insert(coordinator_epoch);
        *epoch = (*epoch).max(coordinator_epoch);
    }

    /// Refuses a marker from a coordinator older than one that already wrote here.
    pub fn check_coordinator_epoch(
        &self,
        producer_id: i64,
        coordinator_epoch: i32,
    ) -> Result<(), crate::api::ErrorCode> {
        match self.coordinator_epochs.get(&producer_id) {
            Some(known) if coordinator_epoch < *known => {
                Err(crate::api::ErrorCode::TransactionCoordinatorFenced)
            }
            _ => Ok(()),
        }
    }
}

/// One producer's part of a partition's transactions, as the model-based tests compare it
/// (`mbt/transactions.rs`).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerView {
    /// The open transaction: first offset, producer epoch, transaction number if verified.
    pub open: Option<(i64, i16, Option<u64>)>,
    /// The verification in flight or confirmed: producer epoch, token, transaction number.
    pub verification: Option<(i16, u64, Option<u64>)>,
    /// The aborted index: (first offset, abort marker offset).
    pub aborted: Vec<(i64, i64)>,
    pub last_marker_number: Option<u64>,
}

#[cfg(test)]
impl PartitionTransactions {
    pub(crate) fn producer_view(&self, producer_id: i64) -> ProducerView {
        ProducerView {
            open: self
                .open
                .get(&producer_id)
                .map(|open| (open.first_offset, open.producer_epoch, open.txn_number)),
            verification: self.verifications.get(&producer_id).map(|verification| {
                (
                    verification.producer_epoch,
                    verification.token,
                    verification.txn_number,
                )
            }),
            aborted: self
                .aborted
                .iter()
                .filter(|entry| entry.producer_id == producer_id)
                .map(|entry| (entry.first_offset, entry.last_offset))
                .collect(),
            last_marker_number: self.last_marker_number.get(&producer_id).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::read_header;
    use crate::records::{
        encode_producer_batch, transaction_marker_batch, PlainRecord, ProducerFields,
    };

    fn data(producer_id: i64, count: i32) -> BatchHeader {
        let records: Vec<PlainRecord> = (0..count)
            .map(|_| PlainRecord {
                key: None,
                value: None,
            })
            .collect();
        let bytes = encode_producer_batch(
            &records,
            0,
            crate::records::ATTRIBUTE_TRANSACTIONAL,
            0,
            ProducerFields {
                producer_id,
                producer_epoch: 0,
                base_sequence: 0,
            },
        );
        read_header(&bytes).unwrap()
    }

    fn marker(producer_id: i64, commit: bool) -> (BatchHeader, Option<i16>) {
        let bytes = transaction_marker_batch(commit, producer_id, 0, 0, 0);
        (
            read_header(&bytes).unwrap(),
            crate::records::control_record_type(&bytes),
        )
    }

    #[test]
    fn the_last_stable_offset_waits_for_open_and_unreplicated_transactions() {
        let mut txns = PartitionTransactions::default();
        assert_eq!(txns.last_stable_offset(10), 10);
        txns.on_batch(&data(1, 2), 10, None);
        txns.on_batch(&data(2, 1), 12, None);
        assert_eq!(txns.last_stable_offset(13), 10);
        let (header, kind) = marker(1, true);
        txns.on_batch(&header, 13, kind);
        assert_eq!(
            txns.last_stable_offset(13),
            10,
            "the marker is not committed yet"
        );
        assert_eq!(txns.last_stable_offset(14), 12, "producer 2 is still open");
        txns.on_high_watermark(14);
        let (header, kind) = marker(2, false);
        txns.on_batch(&header, 14, kind);
        assert_eq!(txns.last_stable_offset(15), 15);
        assert_eq!(
            txns.aborted_between(0, 15),
            vec![AbortedTransaction {
                producer_id: 2,
                first_offset: 12
            }]
        );
        assert!(txns.aborted_between(15, 20).is_empty());
    }

    #[test]
    fn a_marker_cut_by_truncation_is_written_again_when_its_coordinator_retries() {
        // Simulator transaction seed 1488: a deposed leader appended a delayed marker for
        // transaction 9, then truncated it as a follower; leader again, it answered the
        // coordinator's retry "already done" without writing it, and the committed
        // transaction stayed open here until the producer's next (abort) marker ended it.
        let mut txns = PartitionTransactions::default();
        txns.on_batch(&data(1, 1), 0, None);
        let (header, kind) = marker(1, true);
        txns.on_batch(&header, 1, kind);
        txns.marker_written(1, 8, 1);
        txns.on_batch(&data(1, 1), 2, None);
        txns.on_high_watermark(3);
        txns.on_batch(&header, 3, kind);
        txns.marker_written(1, 9, 1);
        assert_eq!(txns.marker_action(1, 9), MarkerAction::AlreadyDone);
        txns.truncate(3);
        assert!(txns.is_open(1, 0));
        assert_eq!(txns.marker_action(1, 9), MarkerAction::Write);
        // The number of the marker that survived still makes older markers stale.
        assert_eq!(txns.marker_action(1, 8), MarkerAction::AlreadyDone);
    }

    #[test]
    fn truncation_reopens_a_transaction_whose_marker_is_cut() {
        let mut txns = PartitionTransactions::default();
        txns.on_batch(&data(1, 1), 0, None);
        let (header, kind) = marker(1, false);
        txns.on_batch(&header, 1, kind);
        assert_eq!(txns.aborted_between(0, 2).len(), 1);
        txns.truncate(1);
        assert!(txns.aborted_between(0, 2).is_empty());
        assert!(txns.is_open(1, 0));
        assert_eq!(txns.last_stable_offset(1), 0);
        txns.truncate(0);
        assert!(!txns.is_open(1, 0));
        assert_eq!(txns.last_stable_offset(0), 0);
    }

    #[test]
    fn pipelined_first_appends_share_one_verification() {
        let mut txns = PartitionTransactions::default();
        let first = txns.begin_verification(1, 0).unwrap();
        let second = txns.begin_verification(1, 0).unwrap();
        assert_eq!(first, second);
        assert!(txns.verified(1, first, 7));
        txns.on_batch(&data(1, 1), 0, None);
        assert!(
            txns.verified(1, second, 7),
            "the first append does not void the second"
        );
        txns.end_verification(1, second);
        assert!(
            txns.is_verified(1, 0),
            "a confirmed verification stays until a marker"
        );
        let (header, kind) = marker(1, true);
        txns.on_batch(&header, 1, kind);
        assert!(!txns.is_verified(1, 0));
        let other_epoch = txns.begin_verification(1, 1).unwrap();
        assert_ne!(other_epoch, first);
    }

    #[test]
    fn a_marker_voids_a_verification_in_flight() {
        let mut txns = PartitionTransactions::default();
        let token = txns.begin_verification(1, 0).unwrap();
        let (header, kind) = marker(1, false);
        txns.on_batch(&header, 0, kind);
        assert!(!txns.verified(1, token, 3));
        let token = txns.begin_verification(1, 0).unwrap();
        assert!(txns.verified(1, token, 4));
        txns.on_batch(&data(1, 1), 1, None);
        assert_eq!(
            txns.marker_action(1, 3),
            MarkerAction::AlreadyDone,
            "stale marker"
        );
        assert_eq!(txns.marker_action(1, 4), MarkerAction::Write);
        txns.marker_written(1, 4, 2);
        assert_eq!(
            txns.check_coordinator_epoch(1, 1),
            Err(crate::api::ErrorCode::TransactionCoordinatorFenced)
        );
        assert_eq!(txns.check_coordinator_epoch(1, 2), Ok(()));
        assert_eq!(
            txns.marker_action(1, 4),
            MarkerAction::AlreadyDone,
            "written already"
        );
        assert_eq!(
            txns.marker_action(1, 5),
            MarkerAction::Write,
            "the next transaction's marker, though it wrote nothing here"
        );
    }

    #[test]
    fn a_marker_is_written_where_its_transaction_wrote_nothing() {
        // Simulator transaction seed 811: a coordinator aborted a transaction whose first
        // append here was still waiting for its verification, which a deposed coordinator
        // confirmed later. Answering the abort "already done" without a marker left the
        // verification standing, and the late append opened a transaction no marker would
        // ever end.
        let mut txns = PartitionTransactions::default();
        let token = txns.begin_verification(1, 0).unwrap();
        assert_eq!(txns.marker_action(1, 5), MarkerAction::Write);
        let (header, kind) = marker(1, false);
        txns.on_batch(&header, 0, kind);
        txns.marker_written(1, 5, 4);
        assert!(!txns.verified(1, token, 5), "the marker voided it");
        assert_eq!(txns.last_stable_offset(1), 1);
        assert!(
            txns.aborted_between(0, 1).is_empty(),
            "nothing to abort here"
        );
        assert_eq!(txns.marker_action(1, 5), MarkerAction::AlreadyDone);
        // A verification confirmed for a later transaction makes an older marker stale.
        let token = txns.begin_verification(1, 0).unwrap();
        assert!(txns.verified(1, token, 7));
        assert_eq!(txns.marker_action(1, 6), MarkerAction::AlreadyDone);
        assert_eq!(txns.marker_action(1, 7), MarkerAction::Write);
    }

    #[test]
    fn retention_drops_aborted_transactions_below_the_log_start() {
        let mut txns = PartitionTransactions::default();
        for (producer, at) in [(1, 0), (2, 2)] {
            txns.on_batch(&data(producer, 1), at, None);
            let (header, kind) = marker(producer, false);
            txns.on_batch(&header, at + 1, kind);
        }
        txns.delete_below(2);
        assert_eq!(txns.aborted_between(0, 10).len(), 1);
    }
}
