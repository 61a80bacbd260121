//! Batches this node appended lately, held in memory as they were stored, so that a
//! replication send takes them from there instead of reading them back from the segment
//! files (and checking their CRC again: they never left memory).
//!
//! Only a node with peers holds batches (a single node replicates nothing). A batch is
//! held as storage wrote it (its header's base offset and leader epoch rewritten,
//! `batch::stored_header_prefix`), in a buffer of its own, keyed by where it was stored. Its
//! own buffer, not a slice of the request it came in: a slice would keep the whole request
//! alive (other partitions' batches too, refused ones included), and the bound below would
//! count a fraction of what it holds. So a batch is copied once when appended, and a
//! replication send of one batch (to each follower) clones it without a copy. A chunk is
//! served from memory only when held batches cover it exactly, back to back; anything else
//! is read from disk as before. Bounded by bytes, oldest dropped first; a partition's
//! batches are dropped whenever its stored bytes are cut, rolled away or deleted, so that a
//! position is never served with bytes it no longer holds.

use bytes::{Bytes, BytesMut};
use myelin_core::api::{AppendedBatch, ReadChunk};
use myelin_core::batch::stored_header_prefix;
use myelin_core::metadata::TopicPartition;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Bytes held at most, all partitions together: enough for the batches a leader appended
/// since its followers last fetched, under load.
pub(super) const HELD_BYTES_MAX: usize = 32 << 20;
/// Larger batches are not held: reading one back costs little next to its size, and a few
/// would fill the bound.
const HELD_BATCH_BYTES_MAX: usize = HELD_BYTES_MAX / 4;
/// Bytes of a batch's header storage rewrites.
const PREFIX_BYTES: usize = 16;

/// Where a batch is stored: its segment and its byte position in it.
type Place = (i64, u32);

struct HeldBatch {
    /// The batch as stored.
    bytes: Bytes,
    /// When it was added: tells an eviction that the entry was replaced since.
    generation: u64,
}

#[derive(Default)]
pub(super) struct HeldBatches {
    by_partition: HashMap<TopicPartition, BTreeMap<Place, HeldBatch>>,
    /// Held batches, oldest first, for eviction.
    order: VecDeque<(TopicPartition, Place, u64)>,
    held_bytes: usize,
    next_generation: u64,
}

impl HeldBatches {
    /// Holds a batch just appended (`bytes` as it came, before storage rewrote its header).
    pub(super) fn appended(
        &mut self,
        partition: &TopicPartition,
        batch: &AppendedBatch,
        bytes: &Bytes,
    ) {
        if bytes.len() < PREFIX_BYTES || bytes.len() > HELD_BATCH_BYTES_MAX {
            return;
        }
        let place = (batch.segment_base_offset, batch.position);
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut stored = BytesMut::with_capacity(bytes.len());
        stored.extend_from_slice(&stored_header_prefix(
            bytes,
            batch.base_offset,
            batch.leader_epoch,
        ));
        stored.extend_from_slice(&bytes[PREFIX_BYTES..]);
        let held = HeldBatch {
            bytes: stored.freeze(),
            generation,
        };
        let batches = self.by_partition.entry(partition.clone()).or_default();
        if let Some(replaced) = batches.insert(place, held) {
            self.held_bytes -= replaced.bytes.len();
        }
        self.held_bytes += bytes.len();
        self.order.push_back((partition.clone(), place, generation));
        while self.held_bytes > HELD_BYTES_MAX {
            let Some((partition, place, generation)) = self.order.pop_front() else {
                break;
            };
            let Some(batches) = self.by_partition.get_mut(&partition) else {
                continue;
            };
            if batches
                .get(&place)
                .is_some_and(|held| held.generation == generation)
            {
                if let Some(evicted) = batches.remove(&place) {
                    self.held_bytes -= evicted.bytes.len();
                }
            }
            if batches.is_empty() {
                self.by_partition.remove(&partition);
            }
        }
    }

    /// Forgets every batch of `partition` (its stored bytes changed other than by an
    /// append). Their entries in `order` are skipped when they come up.
    pub(super) fn forget(&mut self, partition: &TopicPartition) {
        if let Some(batches) = self.by_partition.remove(partition) {
            self.held_bytes -= batches.values().map(|held| held.bytes.len()).sum::<usize>();
        }
    }

    /// The stored bytes of `chunk`, if held batches cover it exactly: the batch itself when
    /// it is one (no copy), else the batches concatenated.
    pub(super) fn read(&self, partition: &TopicPartition, chunk: &ReadChunk) -> Option<Bytes> {
        let batches = self.by_partition.get(partition)?;
        let end = u64::from(chunk.position) + u64::from(chunk.length);
        let mut covering = Vec::new();
        let mut next = u64::from(chunk.position);
        for ((segment, position), held) in
            batches.range((chunk.segment_base_offset, chunk.position)..)
        {
            if next >= end || *segment != chunk.segment_base_offset || u64::from(*position) != next
            {
                break;
            }
            covering.push(&held.bytes);
            next += held.bytes.len() as u64;
        }
        if next != end || covering.is_empty() {
            return None;
        }
        if let [single] = covering.as_slice() {
            return Some((*single).clone());
        }
        let mut bytes = BytesMut::with_capacity(chunk.length as usize);
        for held in covering {
            bytes.extend_from_slice(held);
        }
        Some(bytes.freeze())
    }

    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.held_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(position: u32, base_offset: i64) -> AppendedBatch {
        AppendedBatch {
            segment_base_offset: 0,
            position,
            base_offset,
            last_offset: base_offset,
            max_timestamp: 0,
            leader_epoch: 3,
        }
    }

    fn chunk(position: u32, length: u32) -> ReadChunk {
        ReadChunk {
            segment_base_offset: 0,
            position,
            length,
        }
    }

    /// Bytes standing for a batch of `length` (the header fields storage rewrites read 0).
    fn batch_bytes(length: usize, fill: u8) -> Bytes {
        let mut bytes = vec![fill; length];
        bytes[..16].fill(0);
        Bytes::from(bytes)
    }

    #[test]
    fn chunks_held_back_to_back_are_served_with_the_stored_header_and_others_are_not() {
        let partition = TopicPartition::new("t", 0);
        let mut held = HeldBatches::default();
        let (first, second) = (batch_bytes(100, 1), batch_bytes(50, 2));
        held.appended(&partition, &batch(0, 7), &first);
        held.appended(&partition, &batch(100, 8), &second);
        let both = held.read(&partition, &chunk(0, 150)).unwrap();
        assert_eq!(
            &both[..8],
            &7i64.to_be_bytes(),
            "the base offset storage wrote"
        );
        assert_eq!(
            &both[12..16],
            &3i32.to_be_bytes(),
            "the leader epoch storage wrote"
        );
        assert_eq!(&both[16..100], &first[16..]);
        assert_eq!(&both[100..108], &8i64.to_be_bytes());
        assert_eq!(&both[116..], &second[16..]);
        let one = held.read(&partition, &chunk(100, 50)).unwrap();
        assert_eq!(one.len(), 50);
        assert_eq!(
            one.as_ptr(),
            held.read(&partition, &chunk(100, 50)).unwrap().as_ptr(),
            "one batch is served from its held buffer, not copied"
        );
        assert_ne!(one.as_ptr(), second.as_ptr(), "held in a buffer of its own");
        assert_eq!(held.read(&partition, &chunk(0, 100)).unwrap().len(), 100);
        assert!(
            held.read(&partition, &chunk(0, 120)).is_none(),
            "not a batch end"
        );
        assert!(
            held.read(&partition, &chunk(10, 90)).is_none(),
            "not a batch start"
        );
        assert!(
            held.read(&partition, &chunk(0, 200)).is_none(),
            "past what is held"
        );
        assert!(held
            .read(&TopicPartition::new("t", 1), &chunk(0, 100))
            .is_none());
        held.forget(&partition);
        assert!(held.read(&partition, &chunk(0, 100)).is_none());
        assert_eq!(held.held_bytes(), 0);
    }

    #[test]
    fn the_oldest_batches_go_first_beyond_the_bound() {
        let partition = TopicPartition::new("t", 0);
        let mut held = HeldBatches::default();
        let length = HELD_BYTES_MAX / 4;
        for index in 0..6u32 {
            let position = index * length as u32;
            held.appended(
                &partition,
                &batch(position, i64::from(index)),
                &batch_bytes(length, 9),
            );
        }
        assert_eq!(held.held_bytes(), HELD_BYTES_MAX);
        assert!(held.read(&partition, &chunk(0, length as u32)).is_none());
        assert!(held
            .read(&partition, &chunk(length as u32, length as u32))
            .is_none());
        assert!(held
            .read(&partition, &chunk(2 * length as u32, length as u32))
            .is_some());
        // A batch stored again at a place (after a truncation) replaces the one held there.
        held.appended(
            &partition,
            &batch(5 * length as u32, 50),
            &batch_bytes(length, 9),
        );
        assert_eq!(held.held_bytes(), HELD_BYTES_MAX);
        let replaced = held
            .read(&partition, &chunk(5 * length as u32, length as u32))
            .unwrap();
        assert_eq!(&replaced[..8], &50i64.to_be_bytes());
    }
}
