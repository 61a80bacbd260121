//! One offsets partition as the group coordinator holds it: the records of the offsets log
//! ([`GroupRecord`]), the materialized view every replica applies from them (committed
//! offsets, the last persisted membership of each group, transactional offsets awaiting
//! their marker), and the live groups its leader coordinates once loaded.
//!
//! ## Snapshots
//! The offsets log would grow with every commit forever, and a restart would replay all of
//! it. So the leader, once its shard is quiescent (every appended batch applied, no
//! transactional offsets awaiting a marker) and enough was appended since the last
//! snapshot, writes the whole committed view into the log as a snapshot: `SnapshotStart`,
//! then a `Membership` and `Offsets` records per group restating it, then `SnapshotEnd`, in
//! consecutive batches of one step. Applying a snapshot's records changes nothing (they
//! restate the view), and they also build a staged copy; `SnapshotEnd` replaces the view
//! with that copy. So replaying any suffix of the log that holds a complete snapshot gives
//! the same view as replaying all of it, and every replica may delete its segments wholly
//! below the start of the last snapshot it applied (the broker's retention does). The
//! bookkeeping is `internal_log::SnapshotState`, shared with the transaction coordinator.
//!
//! Invariants:
//! - a snapshot replaces the view only when complete (`SnapshotEnd` after its
//!   `SnapshotStart`; a record of another kind between them, were one ever there, applies
//!   to the view and the staged copy alike); a partial one (a failed append) is dropped at
//!   the next `SnapshotStart`;
//! - a snapshot is written only when quiescent (`ready_for_snapshot`), so its records restate
//!   exactly the view every replica holds at that offset;
//! - a shard whose log starts past offset 0 serves (is loaded) only once it applied a
//!   complete snapshot at or past its log start (`SnapshotState::is_complete`); otherwise
//!   the node stops.

use crate::api::ErrorCode;
use crate::batch::BatchHeader;
use crate::groups::{CommittedOffset, Group, GroupReply, MembershipSnapshot};
use crate::internal_log::{CommitQueue, InternalShard, SnapshotSource, SnapshotState};
use crate::metadata::TopicPartition;
use crate::records::{decode_json_records, CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One committed offset as a record holds it: (partition, offset, metadata).
pub type OffsetEntry = (TopicPartition, i64, Option<String>);

/// One record of the offsets log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRecord {
    Membership {
        group: String,
        snapshot: MembershipSnapshot,
    },
    Offsets {
        group: String,
        at_ms: i64,
        commits: Vec<OffsetEntry>,
        /// The leader epoch of each commit, in order (OffsetCommit v6+). Written only when
        /// one was given; records of earlier versions have none, and a missing epoch is -1
        /// (`leader_epoch_at`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        leader_epochs: Vec<i32>,
    },
    /// The group and its committed state are gone (offsets expired, or DeleteGroups).
    Deleted { group: String },
    /// OffsetDelete: these committed offsets of the group are gone.
    OffsetsDeleted {
        group: String,
        partitions: Vec<TopicPartition>,
    },
    /// A TxnOffsetCommit: written as a transactional batch of the producer, it takes effect
    /// with the transaction's commit marker (and never with an abort).
    TxnOffsets {
        group: String,
        producer_id: i64,
        at_ms: i64,
        commits: Vec<OffsetEntry>,
        /// As in `Offsets`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        leader_epochs: Vec<i32>,
    },
    /// A snapshot of the committed view begins: the `Membership` and `Offsets` records up
    /// to the next `SnapshotEnd` restate it whole (see the module doc).
    SnapshotStart,
    /// The snapshot begun by the last `SnapshotStart` is complete.
    SnapshotEnd,
}

/// What one batch of an offsets partition holds for the materialized view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OffsetsEntry {
    Record(GroupRecord),
    /// A transaction's marker: the producer's pending transactional offsets commit or go.
    Marker {
        producer_id: i64,
        commit: bool,
    },
    /// A `SnapshotStart` record, at `offset`.
    SnapshotStart {
        offset: i64,
    },
}

/// Transactional offsets waiting for their marker: (group, when, commits, leader epochs).
pub(super) type PendingTxnOffsets = Vec<(String, i64, Vec<OffsetEntry>, Vec<i32>)>;

/// The leader epoch of a record's `index`th commit: -1 when none was written.
pub(super) fn leader_epoch_at(leader_epochs: &[i32], index: usize) -> i32 {
    leader_epochs.get(index).copied().unwrap_or(-1)
}

/// A record's `leader_epochs` for commits with these epochs: empty when none is known, so
/// that a commit without one writes the same record as before the field existed.
pub(super) fn leader_epochs_field(epochs: Vec<i32>) -> Vec<i32> {
    if epochs.iter().all(|epoch| *epoch == -1) {
        Vec::new()
    } else {
        epochs
    }
}

/// A group's committed state, as every replica of its offsets partition applies it.
#[derive(Debug, Clone, Default)]
pub(super) struct CommittedGroup {
    pub(super) membership: Option<MembershipSnapshot>,
    pub(super) offsets: BTreeMap<TopicPartition, CommittedOffset>,
}

/// The groups of one offsets partition hosted here. See the module doc.
#[derive(Debug)]
pub(super) struct OffsetsShard {
    /// Batches not applied yet.
    pub(super) log: CommitQueue<OffsetsEntry>,
    /// Applied transactional offsets per producer, waiting for the transaction's marker.
    pub(super) pending_txn_offsets: BTreeMap<i64, PendingTxnOffsets>,
    /// The deliberate defect `CommitOffsetsOnAbort`.
    #[cfg(feature = "defects")]
    pub(super) commit_offsets_on_abort: bool,
    pub(super) committed: BTreeMap<String, CommittedGroup>,
    /// The leader epoch in which this node coordinates the shard's groups.
    pub(super) coordinating: Option<i32>,
    pub(super) live: BTreeMap<String, Group>,
    /// The membership last written per live group (committed or not): only changes are
    /// written.
    pub(super) written: BTreeMap<String, MembershipSnapshot>,
    /// Its snapshots (see the module doc).
    pub(super) snapshots: SnapshotState<BTreeMap<String, CommittedGroup>>,
    /// When each live group last had a record written, on the monotonic clock (expiry waits
    /// past it); a loaded group's counts from its load.
    pub(super) last_write_ms: BTreeMap<String, i64>,
    /// Each live group's last write: (offset its commit must reach, epoch). Replies that
    /// write nothing still wait for it.
    pub(super) last_write: BTreeMap<String, (i64, i32)>,
}

impl InternalShard for OffsetsShard {
    fn on_appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) -> Result<(), String> {
        // Control batches carry no group records (a new leader's epoch marker) or a
        // transaction's marker; all are applied like any batch so that `applied_end` follows
        // the log.
        let entries = if header.is_control() {
            let marker = header
                .is_transactional()
                .then(|| crate::records::control_record_type(bytes))
                .flatten();
            match marker {
                Some(kind @ (CONTROL_TYPE_ABORT | CONTROL_TYPE_COMMIT)) => {
                    vec![OffsetsEntry::Marker {
                        producer_id: header.producer_id,
                        commit: kind == CONTROL_TYPE_COMMIT,
                    }]
                }
                _ => Vec::new(),
            }
        } else {
            decode_json_records::<GroupRecord>(header, bytes)?
                .into_iter()
                .map(|record| match record {
                    GroupRecord::SnapshotStart => OffsetsEntry::SnapshotStart {
                        offset: base_offset,
                    },
                    record => OffsetsEntry::Record(record),
                })
                .collect()
        };
        let ends_snapshot = entries
            .iter()
            .any(|entry| matches!(entry, OffsetsEntry::Record(GroupRecord::SnapshotEnd)));
        self.snapshots.appended(bytes.len(), ends_snapshot);
        self.log.push(base_offset, last_offset, entries);
        Ok(())
    }

    fn truncate(&mut self, offset: i64) {
        self.log.truncate(offset);
    }
}

impl OffsetsShard {
    /// A shard whose log starts at `log_start`, with nothing applied yet.
    pub(super) fn new(log_start: i64) -> Self {
        Self {
            log: CommitQueue::default(),
            pending_txn_offsets: BTreeMap::new(),
            #[cfg(feature = "defects")]
            commit_offsets_on_abort: false,
            committed: BTreeMap::new(),
            coordinating: None,
            live: BTreeMap::new(),
            written: BTreeMap::new(),
            snapshots: SnapshotState::new(log_start),
            last_write_ms: BTreeMap::new(),
            last_write: BTreeMap::new(),
        }
    }

    /// Applies the batches below `committed`, in order.
    pub(super) fn apply_committed(&mut self, committed: i64) {
        for entry in self.log.take_committed(committed) {
            match entry {
                OffsetsEntry::Record(record) => self.apply(record),
                OffsetsEntry::Marker {
                    producer_id,
                    commit,
                } => {
                    #[cfg(feature = "defects")]
                    let commit = commit || self.commit_offsets_on_abort;
                    let offsets = self.pending_txn_offsets.remove(&producer_id);
                    for (group, at_ms, commits, leader_epochs) in offsets.into_iter().flatten() {
                        if commit {
                            self.apply(GroupRecord::Offsets {
                                group,
                                at_ms,
                                commits,
                                leader_epochs,
                            });
                        }
                    }
                }
                OffsetsEntry::SnapshotStart { offset } => self.snapshots.start(offset),
            }
        }
    }

    /// Whether a transaction holds offsets of the group's partition that await its marker.
    pub(super) fn has_pending_txn_offset(
        &self,
        group_id: &str,
        partition: &TopicPartition,
    ) -> bool {
        self.pending_txn_offsets
            .values()
            .flatten()
            .any(|(group, _, commits, _)| {
                group == group_id
                    && commits
                        .iter()
                        .any(|(committed, _, _)| committed == partition)
            })
    }

    fn apply(&mut self, record: GroupRecord) {
        // A snapshot's records (and any other between its start and end) also build its
        // staged view.
        if let Some(staged) = self.snapshots.staged_mut() {
            apply_committed_record(staged, &record);
        }
        match record {
            GroupRecord::TxnOffsets {
                group,
                producer_id,
                at_ms,
                commits,
                leader_epochs,
            } => {
                self.pending_txn_offsets
                    .entry(producer_id)
                    .or_default()
                    .push((group, at_ms, commits, leader_epochs));
            }
            GroupRecord::SnapshotEnd => {
                if let Some(staged) = self.snapshots.end() {
                    self.committed = staged;
                }
            }
            record => apply_committed_record(&mut self.committed, &record),
        }
    }

    /// Becomes the coordinator of the shard's groups: each is restored from its committed
    /// state, every session starting now.
    pub(super) fn load(&mut self, epoch: i32, now_ms: i64) {
        let empty = MembershipSnapshot {
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
        };
        self.live.clear();
        self.written.clear();
        self.last_write_ms.clear();
        self.last_write.clear();
        for (group_id, committed) in &self.committed {
            let snapshot = committed.membership.as_ref().unwrap_or(&empty);
            self.live
                .insert(group_id.clone(), Group::restore(snapshot, now_ms));
            if let Some(snapshot) = &committed.membership {
                self.written.insert(group_id.clone(), snapshot.clone());
            }
            // The commits' timestamps are another process's wall clock: offsets expiry
            // counts from now on this node's monotonic clock instead.
            if !committed.offsets.is_empty() {
                self.last_write_ms.insert(group_id.clone(), now_ms);
            }
        }
        self.coordinating = Some(epoch);
    }

    /// Stops coordinating: the held requests of every live group are answered.
    pub(super) fn unload(&mut self) -> Vec<GroupReply> {
        self.coordinating = None;
        self.written.clear();
        self.last_write_ms.clear();
        self.last_write.clear();
        std::mem::take(&mut self.live)
            .into_values()
            .flat_map(|group| group.abandon(ErrorCode::NotCoordinator))
            .collect()
    }
}

/// Applies a record that changes the committed view (`Membership`, `Offsets`, `Deleted`,
/// `OffsetsDeleted`)
/// to `view`; other records do not touch it.
fn apply_committed_record(view: &mut BTreeMap<String, CommittedGroup>, record: &GroupRecord) {
    match record {
        GroupRecord::Membership { group, snapshot } => {
            view.entry(group.clone()).or_default().membership = Some(snapshot.clone());
        }
        GroupRecord::Offsets {
            group,
            at_ms,
            commits,
            leader_epochs,
        } => {
            let offsets = &mut view.entry(group.clone()).or_default().offsets;
            for (index, (partition, offset, metadata)) in commits.iter().enumerate() {
                offsets.insert(
                    partition.clone(),
                    CommittedOffset {
                        offset: *offset,
                        metadata: metadata.clone(),
                        committed_ms: *at_ms,
                        leader_epoch: leader_epoch_at(leader_epochs, index),
                    },
                );
            }
        }
        GroupRecord::Deleted { group } => {
            view.remove(group);
        }
        GroupRecord::OffsetsDeleted { group, partitions } => {
            if let Some(committed) = view.get_mut(group) {
                for partition in partitions {
                    committed.offsets.remove(partition);
                }
            }
        }
        GroupRecord::TxnOffsets { .. } | GroupRecord::SnapshotStart | GroupRecord::SnapshotEnd => {}
    }
}

impl SnapshotSource for OffsetsShard {
    type Record = GroupRecord;
    type View = BTreeMap<String, CommittedGroup>;

    /// Coordinated and quiescent: every appended batch applied, no transactional offsets
    /// awaiting a marker, no snapshot half applied.
    fn ready_for_snapshot(&self) -> bool {
        self.coordinating.is_some()
            && self.log.is_empty()
            && self.pending_txn_offsets.is_empty()
            && !self.snapshots.in_progress()
    }

    /// The committed view restated (see the module doc).
    fn snapshot_records(&self) -> Vec<GroupRecord> {
        let mut records = vec![GroupRecord::SnapshotStart];
        for (group, committed) in &self.committed {
            if let Some(snapshot) = &committed.membership {
                records.push(GroupRecord::Membership {
                    group: group.clone(),
                    snapshot: snapshot.clone(),
                });
            }
            // One `Offsets` record per commit time, so each offset keeps its own.
            let mut by_time: BTreeMap<i64, (Vec<OffsetEntry>, Vec<i32>)> = BTreeMap::new();
            for (partition, offset) in &committed.offsets {
                let (commits, epochs) = by_time.entry(offset.committed_ms).or_default();
                commits.push((partition.clone(), offset.offset, offset.metadata.clone()));
                epochs.push(offset.leader_epoch);
            }
            for (at_ms, (commits, epochs)) in by_time {
                records.push(GroupRecord::Offsets {
                    group: group.clone(),
                    at_ms,
                    commits,
                    leader_epochs: leader_epochs_field(epochs),
                });
            }
        }
        records.push(GroupRecord::SnapshotEnd);
        records
    }

    fn snapshots(&mut self) -> &mut SnapshotState<Self::View> {
        &mut self.snapshots
    }
}
