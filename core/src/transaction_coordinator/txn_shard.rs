//! One `__transaction_state` partition as the transaction coordinator holds it: the state
//! of each transactional id as applied from the committed records, the ids with a record in
//! flight, and the marker jobs of the prepared transactions its leader finishes.
//!
//! Snapshots (`internal_log::SnapshotState`): the leader, when quiescent, restates every
//! id's state between `SnapshotStart` and `SnapshotEnd`; `SnapshotEnd` swaps in the staged
//! copy, and every replica deletes its segments below its last snapshot. A restated record
//! equal to the id's state is no transition: it starts no timer anew (an idle id still
//! expires, an open transaction still times out).

use crate::batch::BatchHeader;
use crate::internal_log::{CommitQueue, InternalShard, SnapshotSource, SnapshotState};
use crate::metadata::TopicPartition;
use crate::records::decode_json_records;
use crate::transactions::{TxnMetadata, TxnRecord};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// The transactional ids of one `__transaction_state` partition hosted here.
#[derive(Debug)]
pub(super) struct TxnShard {
    /// Batches not applied yet: each record with its batch's base offset.
    pub(super) log: CommitQueue<(i64, TxnRecord)>,
    /// Its snapshots (see the module doc).
    pub(super) snapshots: SnapshotState<BTreeMap<String, TxnMetadata>>,
    pub(super) committed: BTreeMap<String, TxnMetadata>,
    /// The leader epoch in which this node coordinates the shard's ids.
    pub(super) coordinating: Option<i32>,
    /// Ids with a record written and not applied yet: the offset its commit must reach.
    pub(super) writes: BTreeMap<String, i64>,
    /// Prepared transactions whose markers are being written.
    pub(super) markers: BTreeMap<String, MarkerJob>,
    /// Set when applied state changed: prepared transactions get marker jobs.
    pub(super) dirty: bool,
    /// Each id's timers on this node's monotonic clock.
    pub(super) timers: BTreeMap<String, IdTimers>,
}

/// When this node applied the start of an id's open transaction and the id's last change,
/// on its monotonic clock: a transaction's timeout and an id's expiration count from there.
/// The records' own timestamps are another process's wall clock, so a node that loads the
/// records (at start, or as a new coordinator) starts the timers when it applies them.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdTimers {
    /// The transaction `began_ms` belongs to.
    txn_number: u64,
    pub(super) began_ms: i64,
    pub(super) changed_ms: i64,
}

/// The markers of one prepared transaction.
#[derive(Debug, Clone)]
pub(super) struct MarkerJob {
    pub(super) txn_number: u64,
    pub(super) commit: bool,
    pub(super) producer_id: i64,
    pub(super) producer_epoch: i16,
    pub(super) remaining: BTreeSet<TopicPartition>,
    pub(super) next_send_ms: i64,
}

impl InternalShard for TxnShard {
    fn on_appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) -> Result<(), String> {
        // Control batches (a new leader's epoch marker) carry no records but are applied
        // like any batch so that `applied_end` follows the log.
        let records = decode_json_records::<TxnRecord>(header, bytes)?;
        let ends_snapshot = records.contains(&TxnRecord::SnapshotEnd);
        self.snapshots.appended(bytes.len(), ends_snapshot);
        let records = records
            .into_iter()
            .map(|record| (base_offset, record))
            .collect();
        self.log.push(base_offset, last_offset, records);
        Ok(())
    }

    fn truncate(&mut self, offset: i64) {
        self.log.truncate(offset);
    }
}

impl TxnShard {
    /// A shard whose log starts at `log_start`, with nothing applied yet.
    pub(super) fn new(log_start: i64) -> Self {
        Self {
            log: CommitQueue::default(),
            snapshots: SnapshotState::new(log_start),
            committed: BTreeMap::new(),
            coordinating: None,
            writes: BTreeMap::new(),
            markers: BTreeMap::new(),
            dirty: false,
            timers: BTreeMap::new(),
        }
    }

    /// Applies the batches below `committed`, in order, at monotonic time `now_ms`.
    pub(super) fn apply_committed(&mut self, committed: i64, now_ms: i64) {
        let applied_before = self.log.applied_end();
        for (offset, record) in self.log.take_committed(committed) {
            if let Some(staged) = self.snapshots.staged_mut() {
                match &record {
                    TxnRecord::Metadata(metadata) => {
                        staged.insert(metadata.transactional_id.clone(), metadata.clone());
                    }
                    TxnRecord::Expired { transactional_id } => {
                        staged.remove(transactional_id);
                    }
                    TxnRecord::SnapshotStart | TxnRecord::SnapshotEnd => {}
                }
            }
            match record {
                TxnRecord::SnapshotStart => self.snapshots.start(offset),
                TxnRecord::SnapshotEnd => {
                    if let Some(staged) = self.snapshots.end() {
                        self.committed = staged;
                        let committed = &self.committed;
                        self.timers.retain(|id, _| committed.contains_key(id));
                    }
                }
                // Restated by a snapshot: no transition, no timer starts anew.
                TxnRecord::Metadata(metadata)
                    if self.snapshots.in_progress()
                        && self.committed.get(&metadata.transactional_id) == Some(&metadata) => {}
                TxnRecord::Metadata(metadata) => {
                    let timers = self
                        .timers
                        .entry(metadata.transactional_id.clone())
                        .or_insert(IdTimers {
                            txn_number: metadata.txn_number,
                            began_ms: now_ms,
                            changed_ms: now_ms,
                        });
                    if timers.txn_number != metadata.txn_number {
                        // The next transaction began: its timeout counts from here.
                        timers.txn_number = metadata.txn_number;
                        timers.began_ms = now_ms;
                    }
                    timers.changed_ms = now_ms;
                    self.committed
                        .insert(metadata.transactional_id.clone(), metadata);
                }
                TxnRecord::Expired { transactional_id } => {
                    self.timers.remove(&transactional_id);
                    self.committed.remove(&transactional_id);
                }
            }
        }
        let applied_end = self.log.applied_end();
        self.dirty |= applied_end != applied_before;
        self.writes
            .retain(|_, commit_end| *commit_end > applied_end);
    }

    pub(super) fn is_pending(&self, transactional_id: &str) -> bool {
        self.writes.contains_key(transactional_id)
    }
}

impl SnapshotSource for TxnShard {
    type Record = TxnRecord;
    type View = BTreeMap<String, TxnMetadata>;

    /// Coordinated and quiescent: every appended batch applied, no snapshot half applied.
    fn ready_for_snapshot(&self) -> bool {
        self.coordinating.is_some()
            && self.log.is_empty()
            && self.writes.is_empty()
            && !self.snapshots.in_progress()
    }

    /// Every id's state restated.
    fn snapshot_records(&self) -> Vec<TxnRecord> {
        std::iter::once(TxnRecord::SnapshotStart)
            .chain(self.committed.values().cloned().map(TxnRecord::Metadata))
            .chain(std::iter::once(TxnRecord::SnapshotEnd))
            .collect()
    }

    fn snapshots(&mut self) -> &mut SnapshotState<Self::View> {
        &mut self.snapshots
    }
}
