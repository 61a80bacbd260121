//! committed-prefix-agreed, after every event (clusters).
//!
//! The checker keeps, per replica (node, topic partition), the batches its log holds, from
//! the storage commands its core issues: `Append` adds a batch at the log's end (anything
//! at or above its base offset is gone: the log was cut there), `Truncate` cuts the log at
//! a segment position, `DeleteSegment` drops a segment (retention), `CreatePartition` and
//! `DeletePartition` start over. A crash replaces a replica's batches with what its disk
//! kept (see [`PrefixTracker::replica_crashed`]).
//!
//! A batch is *committed on a replica* once it lies wholly below a bound that replica is
//! known to agree with the committing leader on:
//! - a leader of epoch `e` announcing high watermark `h` (an `Append` it sends): its own
//!   batches below `h`;
//! - a follower answering `Matched { matched_end_offset: m }` in epoch `e`: its batches
//!   below `min(m, H(e))`, where `H(e)` is the highest high watermark announced in epochs up
//!   to `e` (a leader of epoch `e` holds everything committed in epochs up to `e`, and the
//!   follower's log matches that leader's below `m`; a follower that matched only an older
//!   epoch's leader may still hold a divergent tail below a newer epoch's high watermark,
//!   which is legitimate until the new leader's appends reach it).
//!
//! The first replica to commit a batch at an offset defines it; every other replica's
//! committed batch at that offset must be the same batch (same last offset, leader epoch
//! and bytes, the base offset field aside), and committed batches never overlap.
//! Each replica's batches are compared once (a cursor per replica, moved back when its log
//! is cut), so the cost is one map look-up per batch and replica.

use crate::simfs::HeldBatches;
use bytes::Bytes;
use myelin_core::api::AppendedBatch;
use myelin_core::log::Truncation;
use myelin_core::metadata::TopicPartition;
use std::collections::BTreeMap;

/// A replicated partition, by (topic, partition).
type PartitionKey = (String, i32);

/// One batch a replica holds.
#[derive(Debug, Clone)]
pub(crate) struct HeldBatch {
    pub last: i64,
    pub segment: i64,
    pub position: u32,
    pub leader_epoch: i32,
    pub bytes: Bytes,
}

impl HeldBatch {
    /// The same batch, whatever the base offset field of its bytes says (storage writes the
    /// base offset and the leader epoch into the header when it appends).
    fn same_as(&self, other: &HeldBatch) -> bool {
        self.last == other.last
            && self.leader_epoch == other.leader_epoch
            && self.bytes.len() == other.bytes.len()
            && self.bytes.get(16..) == other.bytes.get(16..)
    }
}

#[derive(Debug, Default)]
struct ReplicaLog {
    /// By base offset.
    batches: BTreeMap<i64, HeldBatch>,
    /// Batches below this offset were compared already.
    checked_until: i64,
}

impl ReplicaLog {
    /// Drops every batch from `offset` on.
    fn cut_at(&mut self, offset: i64) {
        self.batches.split_off(&offset);
        self.checked_until = self.checked_until.min(offset);
    }
}

/// A disagreement found: (partition, offset, the node that committed it first, the node
/// that disagrees, what differs).
pub(crate) type Disagreement = (TopicPartition, i64, u8, u8, String);

/// The replicas' logs and the committed batches. See the module doc.
#[derive(Debug, Default)]
pub(crate) struct PrefixTracker {
    replicas: BTreeMap<(u8, PartitionKey), ReplicaLog>,
    /// Per partition: committed batches by base offset, with the node that committed each
    /// first.
    committed: BTreeMap<PartitionKey, BTreeMap<i64, (u8, HeldBatch)>>,
    /// Per partition: the highest high watermark announced in each epoch.
    announced: BTreeMap<PartitionKey, BTreeMap<i32, i64>>,
}

fn key(partition: &TopicPartition) -> PartitionKey {
    (partition.topic.clone(), partition.partition)
}

impl PrefixTracker {
    pub fn appended(
        &mut self,
        node: u8,
        partition: &TopicPartition,
        batch: &AppendedBatch,
        bytes: &Bytes,
    ) {
        let log = self.replicas.entry((node, key(partition))).or_default();
        log.cut_at(batch.base_offset);
        log.batches.insert(
            batch.base_offset,
            HeldBatch {
                last: batch.last_offset,
                segment: batch.segment_base_offset,
                position: batch.position,
                leader_epoch: batch.leader_epoch,
                bytes: bytes.clone(),
            },
        );
    }

    pub fn truncated(&mut self, node: u8, partition: &TopicPartition, truncation: &Truncation) {
        let Some(log) = self.replicas.get_mut(&(node, key(partition))) else {
            return;
        };
        let cut = log
            .batches
            .iter()
            .find(|(_, held)| {
                held.segment > truncation.active_segment_base
                    || truncation.deleted_segments.contains(&held.segment)
                    || (held.segment == truncation.active_segment_base
                        && held.position >= truncation.active_segment_bytes)
            })
            .map(|(base, _)| *base);
        if let Some(cut) = cut {
            log.cut_at(cut);
        }
    }

    pub fn segment_deleted(&mut self, node: u8, partition: &TopicPartition, segment: i64) {
        if let Some(log) = self.replicas.get_mut(&(node, key(partition))) {
            log.batches.retain(|_, held| held.segment != segment);
        }
    }

    pub fn partition_reset(&mut self, node: u8, partition: &TopicPartition) {
        self.replicas.remove(&(node, key(partition)));
    }

    /// Node `node` crashed: its replicas hold what its disk kept.
    pub fn replica_crashed(&mut self, node: u8, kept: HeldBatches) {
        self.replicas.retain(|(replica, _), _| *replica != node);
        for (partition, batches) in kept {
            let log = self.replicas.entry((node, key(&partition))).or_default();
            for (segment, position, base, last, bytes) in batches {
                let leader_epoch = bytes.get(12..16).map_or(-1, |epoch| {
                    i32::from_be_bytes([epoch[0], epoch[1], epoch[2], epoch[3]])
                });
                log.batches.insert(
                    base,
                    HeldBatch {
                        last,
                        segment,
                        position,
                        leader_epoch,
                        bytes: Bytes::from(bytes),
                    },
                );
            }
        }
    }

    /// The leader of `epoch` announced `high_watermark`: its batches below it are committed.
    pub fn leader_announced(
        &mut self,
        leader: u8,
        partition: &TopicPartition,
        epoch: i32,
        high_watermark: i64,
        found: &mut Vec<Disagreement>,
    ) -> u64 {
        let announced = self
            .announced
            .entry(key(partition))
            .or_default()
            .entry(epoch)
            .or_insert(high_watermark);
        *announced = (*announced).max(high_watermark);
        self.commit(leader, partition, high_watermark, found)
    }

    /// A follower's log matches the leader of `epoch` below `matched_end`.
    pub fn follower_matched(
        &mut self,
        follower: u8,
        partition: &TopicPartition,
        epoch: i32,
        matched_end: i64,
        found: &mut Vec<Disagreement>,
    ) -> u64 {
        let committed_by_then = self
            .announced
            .get(&key(partition))
            .and_then(|epochs| epochs.range(..=epoch).map(|(_, hw)| *hw).max());
        match committed_by_then {
            Some(high_watermark) => {
                self.commit(follower, partition, matched_end.min(high_watermark), found)
            }
            None => 0,
        }
    }

    /// Compares `node`'s batches below `bound` not compared yet with the committed ones;
    /// returns how many it compared.
    fn commit(
        &mut self,
        node: u8,
        partition: &TopicPartition,
        bound: i64,
        found: &mut Vec<Disagreement>,
    ) -> u64 {
        let partition_key = key(partition);
        let Some(log) = self.replicas.get_mut(&(node, partition_key.clone())) else {
            return 0;
        };
        if bound <= log.checked_until {
            return 0;
        }
        let committed = self.committed.entry(partition_key).or_default();
        let mut compared = 0;
        for (base, held) in log.batches.range(log.checked_until..) {
            if held.last >= bound {
                break;
            }
            compared += 1;
            log.checked_until = held.last + 1;
            if let Some((first, batch)) = committed.get(base) {
                if !batch.same_as(held) {
                    found.push((
                        partition.clone(),
                        *base,
                        *first,
                        node,
                        format!(
                            "offsets {base}..={} in leader epoch {} ({} bytes) against {base}..={} in leader epoch {} ({} bytes)",
                            batch.last,
                            batch.leader_epoch,
                            batch.bytes.len(),
                            held.last,
                            held.leader_epoch,
                            held.bytes.len()
                        ),
                    ));
                }
                continue;
            }
            let overlapping = committed
                .range(..*base)
                .next_back()
                .filter(|(_, (_, before))| before.last >= *base)
                .or_else(|| {
                    committed
                        .range(base + 1..)
                        .next()
                        .filter(|(after, _)| **after <= held.last)
                });
            if let Some((other_base, (first, other))) = overlapping {
                found.push((
                    partition.clone(),
                    *base,
                    *first,
                    node,
                    format!(
                        "a batch {base}..={} overlapping the committed batch {other_base}..={}",
                        held.last, other.last
                    ),
                ));
                continue;
            }
            committed.insert(*base, (node, held.clone()));
        }
        compared
    }
}
