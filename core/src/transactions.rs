//! The transaction coordinator's state machine: one [`TxnMetadata`] per transactional id,
//! and the decisions Kafka's coordinator makes on it. Pure functions of (state, request,
//! time): the broker (`broker/transactions.rs`) persists what they decide in the replicated
//! topic `__transaction_state`, answers once the record is committed, and writes markers.
//!
//! A transaction goes Empty -> Ongoing (AddPartitionsToTxn / AddOffsetsToTxn) ->
//! PrepareCommit | PrepareAbort (EndTxn, or a timeout, or a new producer's InitProducerId)
//! -> CompleteCommit | CompleteAbort (every partition holds its marker) -> Ongoing again
//! with the next transaction, or Empty after an InitProducerId. PrepareEpochFence is the
//! state shown while an InitProducerId or a timeout fences an open transaction: the epoch is
//! bumped and the transaction aborted under the new epoch. Dead is an id expired after
//! `transactional.id.expiration.ms` without a transaction.
//!
//! Invariants (checked by [`TxnMetadata::check_transition`] on every decision, and by the
//! simulator's checkers from the outside):
//! - only Kafka's transitions happen: Empty <- Empty, CompleteCommit, CompleteAbort;
//!   Ongoing <- Ongoing, Empty, CompleteCommit, CompleteAbort; PrepareCommit <- Ongoing;
//!   PrepareAbort <- Ongoing, PrepareEpochFence; CompleteCommit <- PrepareCommit;
//!   CompleteAbort <- PrepareAbort; Dead <- Empty, CompleteCommit, CompleteAbort;
//!   PrepareEpochFence <- Ongoing;
//! - the producer epoch never decreases for a producer id, and a request with any other
//!   epoch than the current one is fenced (PRODUCER_FENCED): a zombie can neither add to,
//!   nor end, its successor's transaction;
//! - only the producer that asked for the last bump (naming its epoch, KIP-360) may have
//!   its InitProducerId retried into the current epoch: a bump by a new instance, or a
//!   fencing abort, leaves no previous epoch (`last_producer_epoch` -1), so a fenced
//!   producer can never be handed its successor's epoch;
//! - a prepared transaction is never reverted: once PrepareCommit (PrepareAbort) is
//!   committed to the log, the only way on is CompleteCommit (CompleteAbort), after every
//!   partition holds the marker;
//! - every transaction of an id has a number (`txn_number`, one more than the previous one):
//!   partition leaders learn it when they verify a first append and markers carry it, so a
//!   marker delayed from an earlier transaction never ends a later one (see
//!   `partition_txns`).
//!
//! What the older protocol (every client Myelin serves: none uses Kafka's "transaction
//! version 2") still allows, and what Myelin does about it:
//! - A *client's* delayed EndTxn. An EndTxn names only the producer id and epoch, not the
//!   transaction, so one that a client sent, gave up on after a timeout, and retried on a
//!   new connection, if it reaches the coordinator only after the retry succeeded and the
//!   client began its next transaction, ends that next transaction (Kafka's KAFKA-17754): a
//!   commit would make the next transaction's first records visible without the rest.
//!   Kafka's answer, an epoch bump per transaction (KIP-890 part 2), needs the client's
//!   help, which these clients do not give. Myelin's answer needs none: the node numbers
//!   client connections in the order it accepts them, and the coordinator refuses
//!   (NOT_COORDINATOR) a transactional request for an id from a connection older than the
//!   newest it has seen for that id (`transaction_coordinator.rs`,
//!   `is_from_stale_connection`): a client that retried on a new connection has abandoned the old one, so what still
//!   arrives there is late. The numbering is per node, which suffices: a request delayed
//!   on a connection can only reach that connection's node. The cost: a client that spread
//!   one transactional id's requests over two live connections to one broker would be
//!   refused on the older one (none of the four clients does: each sends them on its one
//!   connection to the coordinator).
//! - A delayed *produce* cannot land in a later transaction: partition leaders verify every
//!   transaction's first append with the coordinator (KIP-890 part 1), and a marker voids a
//!   verification in flight.
//! - A delayed *marker* request (coordinator to leader) cannot end a later transaction:
//!   it carries the coordinator's transaction number (see `partition_txns`).

use crate::api::{ErrorCode, TxnState};
use crate::metadata::TopicPartition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Most partitions one transaction may span (Kafka has no limit; an unbounded set would
/// let one client grow the coordinator's memory and its records without end).
pub const PARTITIONS_PER_TRANSACTION_MAX: usize = 10_000;
/// The last usable epoch: at it, a bump allocates a new producer id (as Kafka does).
const PRODUCER_EPOCH_MAX: i16 = i16::MAX - 1;
/// No epoch (Kafka's RecordBatch.NO_PRODUCER_EPOCH).
const NO_PRODUCER_EPOCH: i16 = -1;

/// One transactional id's state, as its `__transaction_state` records hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (-1 if none): a retried InitProducerId (KIP-360)
    /// that names it gets the current epoch back instead of being fenced.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// When the open transaction began (-1 when none is open), on the coordinator's wall
    /// clock (like Kafka's txnStartTimestamp: shown to clients, never a timer's start).
    pub txn_start_ms: i64,
    /// When the id last changed, on the coordinator's wall clock.
    pub updated_ms: i64,
    /// The number of the current (or last) transaction of this id.
    pub txn_number: u64,
}

/// One record of the transaction-state log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnRecord {
    /// The id's whole state after a transition (the last one wins, as in Kafka).
    Metadata(TxnMetadata),
    /// The id expired: forget it.
    Expired { transactional_id: String },
    /// A snapshot of every id's state begins: the `Metadata` records up to the next
    /// `SnapshotEnd` restate them all (see `internal_log::SnapshotState`).
    SnapshotStart,
    /// The snapshot begun by the last `SnapshotStart` is complete.
    SnapshotEnd,
}

/// What the coordinator decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer now with this error; nothing changes.
    Reply(ErrorCode),
    /// Persist `next` (a record in the id's partition), then answer with `reply` once it is
    /// committed.
    Write { next: TxnMetadata, reply: ErrorCode },
}

impl TxnMetadata {
    /// Whether Kafka allows `self.state -> next` (see the module doc).
    pub fn check_transition(from: TxnState, to: TxnState) -> Result<(), String> {
        use TxnState::*;
        let allowed = match to {
            Empty => matches!(from, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(from, Ongoing | Empty | CompleteCommit | CompleteAbort),
            PrepareCommit => from == Ongoing,
            PrepareAbort => matches!(from, Ongoing | PrepareEpochFence),
            CompleteCommit => from == PrepareCommit,
            CompleteAbort => from == PrepareAbort,
            Dead => matches!(from, Empty | CompleteCommit | CompleteAbort),
            PrepareEpochFence => from == Ongoing,
        };
        if allowed {
            Ok(())
        } else {
            Err(format!("transaction state {from:?} may not become {to:?}"))
        }
    }

    /// A fresh id's state: Empty, epoch 0 of a new producer id.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, wall_ms: i64) -> Self {
        Self {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            txn_start_ms: -1,
            updated_ms: wall_ms,
            txn_number: 0,
        }
    }

    /// Whether the id's transaction is between EndTxn and its markers.
    pub fn is_preparing(&self) -> bool {
        matches!(
            self.state,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        )
    }

    /// The epoch bumped by one; at the last epoch, a new producer id at epoch 0.
    fn bumped(&self, new_producer_id: impl FnOnce() -> i64) -> (i64, i16) {
        if self.producer_epoch >= PRODUCER_EPOCH_MAX {
            (new_producer_id(), 0)
        } else {
            (self.producer_id, self.producer_epoch + 1)
        }
    }

    /// The state that aborts the open transaction under a bumped epoch, fencing its
    /// producer (InitProducerId from a new instance, or the transaction's timeout).
    pub fn fenced_abort(&self, wall_ms: i64, new_producer_id: impl FnOnce() -> i64) -> Self {
        let (producer_id, producer_epoch) = self.bumped(new_producer_id);
        let mut next = self.clone();
        // A new producer id would not match the markers of the old one's data: the abort
        // keeps the old id (its epoch is exhausted, so no write of it is accepted anyway).
        if producer_id == self.producer_id {
            next.producer_epoch = producer_epoch;
            // The fenced epoch must not pass for a retry of this bump (as in Kafka's
            // prepareFenceProducerEpoch): its producer is the one being fenced.
            next.last_producer_epoch = NO_PRODUCER_EPOCH;
        }
        next.state = TxnState::PrepareAbort;
        next.updated_ms = wall_ms;
        next
    }

    /// The state after the markers of a prepared transaction are all written.
    pub fn completed(&self, wall_ms: i64) -> Self {
        let mut next = self.clone();
        next.state = if self.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.txn_start_ms = -1;
        next.updated_ms = wall_ms;
        next
    }

    /// Checks the producer id and epoch a client request names.
    fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), ErrorCode> {
        if producer_id != self.producer_id {
            Err(ErrorCode::InvalidProducerIdMapping)
        } else if producer_epoch != self.producer_epoch {
            Err(ErrorCode::ProducerFenced)
        } else {
            Ok(())
        }
    }
}

/// InitProducerId with a transactional id. `expected` is the (producer id, epoch) a
/// resuming producer names (KIP-360, v3+). `pending` says a record of this id is being
/// persisted.
pub fn init_producer_id(
    current: Option<&TxnMetadata>,
    pending: bool,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    wall_ms: i64,
    new_producer_id: impl FnOnce() -> i64,
) -> Decision {
    let Some(current) = current.filter(|current| current.state != TxnState::Dead) else {
        if expected.is_some() {
            return Decision::Reply(ErrorCode::ProducerFenced);
        }
        return Decision::Write {
            next: TxnMetadata::new(transactional_id, new_producer_id(), timeout_ms, wall_ms),
            reply: ErrorCode::None,
        };
    };
    if pending || current.is_preparing() {
        return Decision::Reply(ErrorCode::ConcurrentTransactions);
    }
    if let Some((producer_id, producer_epoch)) = expected {
        let is_current =
            producer_id == current.producer_id && producer_epoch == current.producer_epoch;
        let is_retry = producer_id == current.producer_id
            && producer_epoch == current.last_producer_epoch
            && current.state != TxnState::Ongoing;
        if is_retry {
            // The bump this producer asked for was done; it did not hear the answer.
            return Decision::Reply(ErrorCode::None);
        }
        if !is_current {
            return Decision::Reply(ErrorCode::ProducerFenced);
        }
    }
    if current.state == TxnState::Ongoing {
        // A new instance fences the old one: the open transaction aborts under a bumped
        // epoch; the client retries on CONCURRENT_TRANSACTIONS until the abort completes.
        return Decision::Write {
            next: current.fenced_abort(wall_ms, new_producer_id),
            reply: ErrorCode::ConcurrentTransactions,
        };
    }
    let (producer_id, producer_epoch) = current.bumped(new_producer_id);
    let mut next = current.clone();
    // Only the producer that named the current epoch (KIP-360) may later pass for a retry
    // of this bump. A new instance (no epoch named) fences the old one, whose epoch must
    // then not pass for a retry: it would be handed its successor's epoch (as Kafka's
    // prepareIncrementProducerEpoch does; found by specs/transactions).
    next.last_producer_epoch = if producer_id == current.producer_id && expected.is_some() {
        current.producer_epoch
    } else {
        NO_PRODUCER_EPOCH
    };
    next.producer_id = producer_id;
    next.producer_epoch = producer_epoch;
    next.timeout_ms = timeout_ms;
    next.state = TxnState::Empty;
    next.partitions.clear();
    next.txn_start_ms = -1;
    next.updated_ms = wall_ms;
    Decision::Write {
        next,
        reply: ErrorCode::None,
    }
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): the
/// partitions join the open transaction, which begins here if none is open.
pub fn add_partitions(
    current: Option<&TxnMetadata>,
    pending: bool,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[TopicPartition],
    wall_ms: i64,
) -> Decision {
    let Some(current) = current.filter(|current| current.state != TxnState::Dead) else {
        return Decision::Reply(ErrorCode::InvalidProducerIdMapping);
    };
    if let Err(error) = current.check_producer(producer_id, producer_epoch) {
        return Decision::Reply(error);
    }
    if pending || current.is_preparing() {
        return Decision::Reply(ErrorCode::ConcurrentTransactions);
    }
    let ongoing = current.state == TxnState::Ongoing;
    if ongoing && partitions.iter().all(|p| current.partitions.contains(p)) {
        return Decision::Reply(ErrorCode::None);
    }
    let mut next = current.clone();
    next.partitions.extend(partitions.iter().cloned());
    if next.partitions.len() > PARTITIONS_PER_TRANSACTION_MAX {
        return Decision::Reply(ErrorCode::InvalidRequest);
    }
    if !ongoing {
        next.state = TxnState::Ongoing;
        next.txn_start_ms = wall_ms;
        next.txn_number = current.txn_number + 1;
    }
    next.updated_ms = wall_ms;
    Decision::Write {
        next,
        reply: ErrorCode::None,
    }
}

/// EndTxn: prepare the commit or abort of the open transaction; a retry of a completed
/// end answers NONE, the other end INVALID_TXN_STATE.
pub fn end_transaction(
    current: Option<&TxnMetadata>,
    pending: bool,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    wall_ms: i64,
) -> Decision {
    let Some(current) = current.filter(|current| current.state != TxnState::Dead) else {
        return Decision::Reply(ErrorCode::InvalidProducerIdMapping);
    };
    if let Err(error) = current.check_producer(producer_id, producer_epoch) {
        return Decision::Reply(error);
    }
    if pending {
        return Decision::Reply(ErrorCode::ConcurrentTransactions);
    }
    let same = |wanted_commit: bool| wanted_commit == commit;
    match current.state {
        TxnState::Ongoing => {
            let mut next = current.clone();
            next.state = if commit {
                TxnState::PrepareCommit
            } else {
                TxnState::PrepareAbort
            };
            next.updated_ms = wall_ms;
            Decision::Write {
                next,
                reply: ErrorCode::None,
            }
        }
        TxnState::PrepareCommit if same(true) => Decision::Reply(ErrorCode::ConcurrentTransactions),
        TxnState::PrepareAbort if same(false) => Decision::Reply(ErrorCode::ConcurrentTransactions),
        TxnState::CompleteCommit if same(true) => Decision::Reply(ErrorCode::None),
        TxnState::CompleteAbort if same(false) => Decision::Reply(ErrorCode::None),
        _ => Decision::Reply(ErrorCode::InvalidTxnState),
    }
}

/// A partition leader's question before a transaction's first append to `partition`
/// (KIP-890 part 1): is it part of the producer's open transaction? Returns the error and
/// the transaction's number.
pub fn verify_partition(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    partition: &TopicPartition,
) -> (ErrorCode, u64) {
    let Some(current) = current.filter(|current| current.state != TxnState::Dead) else {
        return (ErrorCode::InvalidProducerIdMapping, 0);
    };
    if let Err(error) = current.check_producer(producer_id, producer_epoch) {
        return (error, current.txn_number);
    }
    if current.is_preparing() {
        return (ErrorCode::ConcurrentTransactions, current.txn_number);
    }
    // A pending AddPartitionsToTxn is not answered yet: the client has not produced under
    // it, so the committed state decides.
    if current.state == TxnState::Ongoing && current.partitions.contains(partition) {
        (ErrorCode::None, current.txn_number)
    } else {
        (ErrorCode::InvalidTxnState, current.txn_number)
    }
}

/// Whether the id's open transaction has outlived its timeout. `began_ms` and `now_ms` are
/// monotonic readings (when the coordinator's node applied the transaction's start, and
/// now), never the record's wall-clock `txn_start_ms`: a step of the wall clock must not
/// abort a transaction early or keep it open for good.
pub fn is_expired_transaction(current: &TxnMetadata, began_ms: i64, now_ms: i64) -> bool {
    current.state == TxnState::Ongoing && now_ms >= began_ms + i64::from(current.timeout_ms)
}

/// Whether an idle id has outlived `transactional.id.expiration.ms` since its last change
/// (`changed_ms`, monotonic like `now_ms`; see [`is_expired_transaction`]).
pub fn is_expired_id(
    current: &TxnMetadata,
    changed_ms: i64,
    now_ms: i64,
    expiration_ms: i64,
) -> bool {
    matches!(
        current.state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    ) && now_ms >= changed_ms + expiration_ms
}

/// The transactional id's partition of `__transaction_state`: Kafka's
/// `abs(transactionalId.hashCode) % partitions`, the same hash as groups.
pub fn transaction_partition_of(transactional_id: &str, partition_count: i32) -> i32 {
    crate::broker::offsets_partition_of(transactional_id, partition_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(name: &str, index: i32) -> TopicPartition {
        TopicPartition::new(name, index)
    }

    fn written(decision: Decision) -> TxnMetadata {
        match decision {
            Decision::Write { next, .. } => next,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn fresh() -> TxnMetadata {
        written(init_producer_id(None, false, "t", 60_000, None, 0, || 7))
    }

    fn ongoing() -> TxnMetadata {
        written(add_partitions(
            Some(&fresh()),
            false,
            7,
            0,
            &[tp("a", 0)],
            10,
        ))
    }

    #[test]
    fn a_new_id_gets_a_producer_and_each_init_bumps_the_epoch() {
        let first = fresh();
        assert_eq!((first.producer_id, first.producer_epoch), (7, 0));
        assert_eq!(first.state, TxnState::Empty);
        let second = written(init_producer_id(
            Some(&first),
            false,
            "t",
            60_000,
            None,
            5,
            || 99,
        ));
        assert_eq!((second.producer_id, second.producer_epoch), (7, 1));
        assert_eq!(
            second.last_producer_epoch, NO_PRODUCER_EPOCH,
            "a new instance's bump is no one's to retry"
        );
        // A producer resuming under its own epoch (KIP-360) may retry its bump.
        let third = written(init_producer_id(
            Some(&second),
            false,
            "t",
            60_000,
            Some((7, 1)),
            6,
            || 99,
        ));
        assert_eq!((third.producer_epoch, third.last_producer_epoch), (2, 1));
        assert_eq!(
            init_producer_id(Some(&third), false, "t", 60_000, Some((7, 1)), 7, || 99),
            Decision::Reply(ErrorCode::None)
        );
    }

    #[test]
    fn a_fenced_producer_never_gets_its_successors_epoch() {
        // Found by specs/transactions (`fencing_by_epoch`): instance A at epoch 0 is fenced
        // when B takes the id over (epoch 1); A, unaware, asks to bump naming epoch 0 and
        // must be fenced, not handed epoch 1.
        let first = fresh();
        let taken_over = written(init_producer_id(
            Some(&first),
            false,
            "t",
            60_000,
            None,
            5,
            || 99,
        ));
        assert_eq!(
            init_producer_id(
                Some(&taken_over),
                false,
                "t",
                60_000,
                Some((7, 0)),
                6,
                || 99
            ),
            Decision::Reply(ErrorCode::ProducerFenced)
        );
        // The same after a fencing abort of an open transaction.
        let fenced = ongoing().fenced_abort(7, || 99);
        let aborted = fenced.completed(8);
        assert_eq!(
            init_producer_id(
                Some(&aborted),
                false,
                "t",
                60_000,
                Some((aborted.producer_id, aborted.producer_epoch - 1)),
                9,
                || 99
            ),
            Decision::Reply(ErrorCode::ProducerFenced)
        );
    }

    #[test]
    fn the_epoch_rolls_over_to_a_new_producer_id() {
        let mut exhausted = fresh();
        exhausted.producer_epoch = PRODUCER_EPOCH_MAX;
        let next = written(init_producer_id(
            Some(&exhausted),
            false,
            "t",
            60_000,
            None,
            5,
            || 99,
        ));
        assert_eq!((next.producer_id, next.producer_epoch), (99, 0));
    }

    #[test]
    fn init_fences_an_open_transaction_by_aborting_it_under_a_bumped_epoch() {
        let open = ongoing();
        let decision = init_producer_id(Some(&open), false, "t", 60_000, None, 20, || 99);
        let Decision::Write { next, reply } = decision else {
            panic!("expected a write")
        };
        assert_eq!(reply, ErrorCode::ConcurrentTransactions);
        assert_eq!(next.state, TxnState::PrepareAbort);
        assert_eq!(next.producer_epoch, 1);
        assert_eq!(
            next.partitions, open.partitions,
            "the abort reaches every partition"
        );
        // The fenced producer can no longer add or end anything.
        assert_eq!(
            add_partitions(Some(&next), false, 7, 0, &[tp("b", 0)], 21),
            Decision::Reply(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            end_transaction(Some(&next), false, 7, 0, true, 21),
            Decision::Reply(ErrorCode::ProducerFenced)
        );
        // The new instance waits for the abort to complete.
        assert_eq!(
            init_producer_id(Some(&next), false, "t", 60_000, None, 22, || 99),
            Decision::Reply(ErrorCode::ConcurrentTransactions)
        );
        let completed = next.completed(30);
        assert_eq!(completed.state, TxnState::CompleteAbort);
        let resumed = written(init_producer_id(
            Some(&completed),
            false,
            "t",
            60_000,
            None,
            31,
            || 99,
        ));
        assert_eq!(resumed.producer_epoch, 2);
    }

    #[test]
    fn kip_360_resume_bumps_the_current_epoch_and_a_retry_gets_it_again() {
        let first = fresh();
        let bumped = written(init_producer_id(
            Some(&first),
            false,
            "t",
            60_000,
            Some((7, 0)),
            1,
            || 99,
        ));
        assert_eq!(bumped.producer_epoch, 1);
        assert_eq!(
            init_producer_id(Some(&bumped), false, "t", 60_000, Some((7, 0)), 2, || 99),
            Decision::Reply(ErrorCode::None),
            "a retry of the bump it did not hear about"
        );
        assert_eq!(
            init_producer_id(Some(&bumped), false, "t", 60_000, Some((7, 5)), 2, || 99),
            Decision::Reply(ErrorCode::ProducerFenced)
        );
    }

    #[test]
    fn end_prepares_once_and_retries_get_kafkas_answers() {
        let open = ongoing();
        assert_eq!(open.txn_number, 1);
        let prepared = written(end_transaction(Some(&open), false, 7, 0, true, 11));
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert_eq!(
            end_transaction(Some(&prepared), false, 7, 0, true, 12),
            Decision::Reply(ErrorCode::ConcurrentTransactions)
        );
        assert_eq!(
            end_transaction(Some(&prepared), false, 7, 0, false, 12),
            Decision::Reply(ErrorCode::InvalidTxnState)
        );
        let complete = prepared.completed(13);
        assert_eq!(
            end_transaction(Some(&complete), false, 7, 0, true, 14),
            Decision::Reply(ErrorCode::None)
        );
        assert_eq!(
            end_transaction(Some(&complete), false, 7, 0, false, 14),
            Decision::Reply(ErrorCode::InvalidTxnState)
        );
        assert_eq!(
            end_transaction(Some(&fresh()), false, 7, 0, true, 14),
            Decision::Reply(ErrorCode::InvalidTxnState),
            "nothing to end"
        );
        let next = written(add_partitions(
            Some(&complete),
            false,
            7,
            0,
            &[tp("b", 1)],
            15,
        ));
        assert_eq!(
            next.txn_number, 2,
            "the next transaction has the next number"
        );
        assert_eq!(
            next.partitions.len(),
            1,
            "it starts with only its own partitions"
        );
    }

    #[test]
    fn verification_admits_only_partitions_of_the_open_transaction() {
        let open = ongoing();
        assert_eq!(
            verify_partition(Some(&open), 7, 0, &tp("a", 0)),
            (ErrorCode::None, 1)
        );
        assert_eq!(
            verify_partition(Some(&open), 7, 0, &tp("a", 1)).0,
            ErrorCode::InvalidTxnState
        );
        assert_eq!(
            verify_partition(Some(&open), 7, 3, &tp("a", 0)).0,
            ErrorCode::ProducerFenced
        );
        assert_eq!(
            verify_partition(Some(&open), 8, 0, &tp("a", 0)).0,
            ErrorCode::InvalidProducerIdMapping
        );
        let complete = written(end_transaction(Some(&open), false, 7, 0, false, 11)).completed(12);
        assert_eq!(
            verify_partition(Some(&complete), 7, 0, &tp("a", 0)).0,
            ErrorCode::InvalidTxnState,
            "a produce delayed past its transaction's end is refused"
        );
    }

    #[test]
    fn every_decision_is_one_of_kafkas_transitions() {
        let open = ongoing();
        let states = [
            fresh(),
            open.clone(),
            written(end_transaction(Some(&open), false, 7, 0, true, 1)),
            written(end_transaction(Some(&open), false, 7, 0, false, 1)),
            written(end_transaction(Some(&open), false, 7, 0, true, 1)).completed(2),
        ];
        for state in &states {
            let decisions = [
                init_producer_id(Some(state), false, "t", 1000, None, 3, || 9),
                add_partitions(Some(state), false, 7, 0, &[tp("z", 0)], 3),
                end_transaction(Some(state), false, 7, 0, true, 3),
                end_transaction(Some(state), false, 7, 0, false, 3),
            ];
            for decision in decisions {
                if let Decision::Write { next, .. } = decision {
                    let through_fence =
                        state.state == TxnState::Ongoing && next.state == TxnState::PrepareAbort;
                    if !through_fence {
                        TxnMetadata::check_transition(state.state, next.state).unwrap();
                    }
                    assert!(next.producer_epoch >= state.producer_epoch);
                }
            }
        }
    }

    #[test]
    fn transactions_expire_after_their_timeout_only() {
        let open = ongoing();
        assert!(!is_expired_transaction(&open, 10, 10 + 59_999));
        assert!(is_expired_transaction(&open, 10, 10 + 60_000));
        assert!(!is_expired_transaction(&fresh(), 10, i64::MAX / 2));
    }
}
