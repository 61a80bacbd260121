//! What the coordinators' internal logs share (`__consumer_offsets`,
//! `__transaction_state`): what a coordinator sees of its node's replicas of them
//! ([`InternalPartitions`]), replaying the batches recovered from disk, and applying a
//! partition's batches once they are committed, in offset order, exactly once.
//!
//! Invariants (asserted, in every build): batches are applied in offset order and each
//! once; a truncation never cuts what was applied (committed data is never truncated); a
//! batch that does not decode is never skipped: it stops the node ([`CorruptData`]).
//!
//! Snapshots ([`SnapshotState`]): a coordinator's leader writes its whole committed view
//! into the log between a start and an end record, when quiescent and once enough was
//! appended since the last one. Every replica applies the records in between to the view
//! (they restate it) and to a staged copy; the end record swaps the copy in. So replaying
//! any suffix of the log that holds a complete snapshot gives the whole view, and each
//! replica deletes its segments wholly below the last snapshot it applied. A view whose
//! log starts past 0 is whole only once it applied a complete snapshot from there on
//! ([`SnapshotState::is_complete`]); it is never served before.
//!
//! The metadata log (`controller`) takes snapshots the same way, with the same
//! [`SnapshotState`] and writer ([`due_snapshot`]); its view differs in one point: the node
//! persists it whole (`metadata.json`, with the offset it is applied up to), so at restart
//! it lacks nothing below that offset ([`SnapshotState::resuming`]).

use crate::api::CorruptData;
use crate::batch::BatchHeader;
use crate::metadata::TopicPartition;
use bytes::Bytes;
use std::collections::BTreeMap;

/// What a coordinator knows of one partition of its internal topic hosted on its node, as
/// the node's replica of it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStatus {
    /// The replica's high watermark: what is committed and may be applied.
    pub high_watermark: i64,
    /// The replica's leader epoch.
    pub epoch: i32,
    /// Whether this node leads the partition.
    pub leader: bool,
    /// Whether it leads and its high watermark has reached the start of its epoch, so that
    /// everything earlier leaders acknowledged is committed here (`Replica::serves_reads`).
    pub serves_reads: bool,
}

/// A coordinator's narrow view of its node: its internal topic in the applied metadata and
/// the state of the replicas hosted here. The broker implements it over its partitions; a
/// test implements it over a map.
pub trait InternalPartitions {
    /// The internal topic's partition count in the applied metadata, `None` until the topic
    /// is created.
    fn partition_count(&self) -> Option<i32>;
    /// The state of partition `index` of the internal topic, `None` if not hosted here.
    fn status(&self, index: i32) -> Option<ShardStatus>;
}

/// What a coordinator keeps per hosted partition of its internal topic: it follows the
/// partition's log, batch by batch, and loses the tail a truncation cuts.
pub(crate) trait InternalShard {
    /// `Err(reason)` if the batch's records do not decode: the node stops (fail-stop).
    fn on_appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) -> Result<(), String>;
    fn truncate(&mut self, offset: i64);
}

/// A coordinator's hosted partitions of its internal topic, by partition index: `shard`
/// starts hosting `partition`, with the recovered batches below `log_end` replayed into it.
/// A recovered batch that does not parse or decode is corrupt data: the shard is not opened.
pub(crate) fn open_shard<S: InternalShard>(
    shards: &mut BTreeMap<i32, S>,
    partition: &TopicPartition,
    recovered: Option<&Bytes>,
    log_end: i64,
    mut shard: S,
) -> Result<(), CorruptData> {
    replay_recovered(
        partition,
        recovered,
        log_end,
        |header, base, last, bytes| shard.on_appended(header, base, last, bytes),
    )?;
    shards.insert(partition.partition, shard);
    Ok(())
}

/// A batch was appended to hosted partition `partition` (ignored if not hosted).
pub(crate) fn shard_appended<S: InternalShard>(
    shards: &mut BTreeMap<i32, S>,
    partition: &TopicPartition,
    header: &BatchHeader,
    base_offset: i64,
    last_offset: i64,
    bytes: &Bytes,
) -> Result<(), CorruptData> {
    let Some(shard) = shards.get_mut(&partition.partition) else {
        return Ok(());
    };
    shard
        .on_appended(header, base_offset, last_offset, bytes)
        .map_err(|reason| CorruptData {
            partition: partition.clone(),
            offset: base_offset,
            reason: format!("an internal-log batch does not decode: {reason}"),
        })
}

/// Hosted partition `partition` lost its tail from `offset` on (ignored if not hosted).
pub(crate) fn shard_truncated<S: InternalShard>(
    shards: &mut BTreeMap<i32, S>,
    partition: i32,
    offset: i64,
) {
    if let Some(shard) = shards.get_mut(&partition) {
        shard.truncate(offset);
    }
}

/// Calls `on_batch(header, base offset, last offset, bytes)` for each recovered batch of an
/// internal partition that lies below `log_end` (what the log kept). Recovery checked these
/// batches already, so one that does not parse, or whose records do not decode, is corrupt
/// data, reported with the offset where it starts.
pub(crate) fn replay_recovered(
    partition: &TopicPartition,
    recovered: Option<&Bytes>,
    log_end: i64,
    mut on_batch: impl FnMut(&BatchHeader, i64, i64, &Bytes) -> Result<(), String>,
) -> Result<(), CorruptData> {
    let Some(bytes) = recovered else {
        return Ok(());
    };
    // Where the next batch starts: the offset named if it is the corrupt one.
    let mut next_offset = None;
    for batch in crate::batch::record_set_batches(bytes) {
        let corrupt = |offset: Option<i64>, reason: String| CorruptData {
            partition: partition.clone(),
            offset: offset.unwrap_or(0),
            reason,
        };
        let (header, bytes) = batch.map_err(|error| {
            corrupt(
                next_offset,
                format!("a recovered internal-log batch does not parse: {error}"),
            )
        })?;
        let last = header.base_offset + header.offset_count() - 1;
        if last < log_end {
            on_batch(&header, header.base_offset, last, &bytes).map_err(|reason| {
                corrupt(
                    Some(header.base_offset),
                    format!("a recovered internal-log batch does not decode: {reason}"),
                )
            })?;
        }
        next_offset = Some(last + 1);
    }
    Ok(())
}

/// Where one hosted internal partition stands with its snapshots (see the module doc); `V`
/// is the coordinator's committed view.
#[derive(Debug)]
pub(crate) struct SnapshotState<V> {
    /// Where this replica's log starts, as far as its view lacks what lies below: 0 when
    /// the view holds everything below the log's start (see `resuming`).
    log_start: i64,
    /// The snapshot being applied: where it starts, and the view its records build.
    staged: Option<(i64, V)>,
    /// Where the last complete snapshot applied here starts.
    last: Option<i64>,
    /// Bytes appended since the last snapshot ended (or since the shard opened).
    bytes_since: u64,
    /// Bytes the last snapshot written here took: the next waits for twice as many
    /// appended, so that snapshots never dominate the log.
    last_written_bytes: u64,
}

impl<V: Default> SnapshotState<V> {
    /// A shard whose log starts at `log_start`.
    pub(crate) fn new(log_start: i64) -> Self {
        Self {
            log_start,
            staged: None,
            last: None,
            bytes_since: 0,
            last_written_bytes: 0,
        }
    }

    /// A view restored whole below `view_end` (the metadata view its node persisted) over
    /// a log that starts at `log_start`: it lacks nothing if `view_end >= log_start`, and
    /// everything below the log's start otherwise (a log restarted past it).
    pub(crate) fn resuming(view_end: i64, log_start: i64) -> Self {
        Self::new(if view_end >= log_start { 0 } else { log_start })
    }

    /// A batch of `bytes` was appended; it holds a snapshot's end record if `ends_snapshot`.
    pub(crate) fn appended(&mut self, bytes: usize, ends_snapshot: bool) {
        self.bytes_since = if ends_snapshot {
            0
        } else {
            self.bytes_since + bytes as u64
        };
    }

    /// A snapshot's start record at `offset` is applied: a partial snapshot before it (a
    /// failed append) is dropped.
    pub(crate) fn start(&mut self, offset: i64) {
        self.staged = Some((offset, V::default()));
    }

    /// The view the snapshot being applied builds, if one is.
    pub(crate) fn staged_mut(&mut self) -> Option<&mut V> {
        self.staged.as_mut().map(|(_, view)| view)
    }

    /// A snapshot's end record is applied: the view it built, which replaces the view.
    pub(crate) fn end(&mut self) -> Option<V> {
        let (start, view) = self.staged.take()?;
        self.last = Some(start);
        Some(view)
    }

    /// Whether a snapshot is being applied.
    pub(crate) fn in_progress(&self) -> bool {
        self.staged.is_some()
    }

    /// Where the last complete snapshot applied here starts: segments wholly below it may
    /// be deleted.
    pub(crate) fn last(&self) -> Option<i64> {
        self.last
    }

    /// Whether the view holds everything its log says: the log starts at 0, or a complete
    /// snapshot at or past its start was applied.
    pub(crate) fn is_complete(&self) -> bool {
        self.log_start == 0 || self.last.is_some_and(|start| start >= self.log_start)
    }

    /// Before `partition`'s view is served: an incomplete view (see `is_complete`) would
    /// answer from part of the state, so it is corrupt data that stops the node.
    pub(crate) fn check_servable(&self, partition: TopicPartition) -> Result<(), CorruptData> {
        if self.is_complete() {
            return Ok(());
        }
        Err(CorruptData {
            partition,
            offset: self.log_start,
            reason: "the log starts past 0 and holds no complete snapshot from its start on"
                .to_string(),
        })
    }

    /// Whether enough was appended since the last snapshot for the next: `interval_bytes`,
    /// and twice what the last one written here took.
    pub(crate) fn is_due(&self, interval_bytes: u64) -> bool {
        self.bytes_since >= interval_bytes.max(self.last_written_bytes.saturating_mul(2))
    }

    /// A snapshot of `bytes` was written.
    pub(crate) fn written(&mut self, bytes: u64) {
        self.last_written_bytes = bytes;
    }
}

/// Bytes appended to an internal partition after which its leader writes a snapshot, unless
/// configured: half of Kafka's 100 MiB segments of its internal topics.
pub const SNAPSHOT_INTERVAL_BYTES_DEFAULT: u64 = 50 << 20;

/// A snapshot's batches hold about this many bytes of records each (far below any batch
/// limit of the log or of replication).
const SNAPSHOT_BATCH_BYTES_TARGET: usize = 256 << 10;

/// A snapshot's records encoded as batches (stamped `wall_ms`) of about
/// `SNAPSHOT_BATCH_BYTES_TARGET` bytes of JSON each, every record whole, at least one per
/// batch.
fn snapshot_batches<R: serde::Serialize>(records: &[R], wall_ms: i64) -> Vec<Bytes> {
    let mut batches: Vec<Vec<crate::records::PlainRecord>> = Vec::new();
    let mut batch_bytes = 0;
    for record in crate::records::encode_json_records(records) {
        let record_bytes = record.value.as_ref().map_or(0, Bytes::len);
        match batches.last_mut() {
            Some(batch) if batch_bytes + record_bytes <= SNAPSHOT_BATCH_BYTES_TARGET => {
                batch.push(record)
            }
            _ => {
                batch_bytes = 0;
                batches.push(vec![record]);
            }
        }
        batch_bytes += record_bytes;
    }
    batches
        .iter()
        .map(|records| crate::records::encode_batch(records, wall_ms, 0, -1))
        .collect()
}

/// What a coordinator's shard offers the snapshot writer.
pub(crate) trait SnapshotSource {
    /// The record type of its log.
    type Record: serde::Serialize;
    /// The committed view its snapshots restate.
    type View: Default;
    /// Whether this node coordinates the shard and it is quiescent: a snapshot written now
    /// restates exactly what every replica holds at that offset.
    fn ready_for_snapshot(&self) -> bool;
    /// The records of a snapshot of its view, start and end records included.
    fn snapshot_records(&self) -> Vec<Self::Record>;
    fn snapshots(&mut self) -> &mut SnapshotState<Self::View>;
}

/// The snapshots due now among `shards` of `topic` (ready, and `interval_bytes` appended
/// since their last one): for each, its partition and encoded batches (stamped `wall_ms`).
pub(crate) fn due_snapshots<S: SnapshotSource>(
    topic: &str,
    shards: &mut BTreeMap<i32, S>,
    interval_bytes: u64,
    wall_ms: i64,
) -> Vec<(i32, Vec<Bytes>)> {
    shards
        .iter_mut()
        .filter_map(|(index, shard)| {
            due_snapshot(topic, *index, shard, interval_bytes, wall_ms)
                .map(|batches| (*index, batches))
        })
        .collect()
}

/// The snapshot of partition `index` of `topic` if one is due now (`source` ready, and
/// `interval_bytes` appended since its last one): its encoded batches (stamped `wall_ms`).
pub(crate) fn due_snapshot<S: SnapshotSource>(
    topic: &str,
    index: i32,
    source: &mut S,
    interval_bytes: u64,
    wall_ms: i64,
) -> Option<Vec<Bytes>> {
    if !source.ready_for_snapshot() || !source.snapshots().is_due(interval_bytes) {
        return None;
    }
    let batches = snapshot_batches(&source.snapshot_records(), wall_ms);
    let bytes = batches.iter().map(|batch| batch.len() as u64).sum();
    tracing::info!(topic, partition = index, bytes, "writing a snapshot");
    source.snapshots().written(bytes);
    Some(batches)
}

/// The decoded batches of one internal partition waiting for their commit.
#[derive(Debug)]
pub(crate) struct CommitQueue<T> {
    /// By base offset: (end offset, entries).
    pending: BTreeMap<i64, (i64, Vec<T>)>,
    applied_end: i64,
}

impl<T> Default for CommitQueue<T> {
    fn default() -> Self {
        Self {
            pending: BTreeMap::new(),
            applied_end: 0,
        }
    }
}

impl<T> CommitQueue<T> {
    /// A batch appended at `base_offset ..= last_offset`, decoded to `entries` (none for
    /// a batch that carries nothing to apply: it still moves `applied_end`).
    pub(crate) fn push(&mut self, base_offset: i64, last_offset: i64, entries: Vec<T>) {
        self.pending.insert(base_offset, (last_offset + 1, entries));
    }

    /// The log lost its tail from `offset` on.
    pub(crate) fn truncate(&mut self, offset: i64) {
        assert!(
            offset >= self.applied_end,
            "a committed internal-log batch was truncated (at {offset}, applied to {})",
            self.applied_end
        );
        self.pending.split_off(&offset);
    }

    /// Takes the entries of every batch wholly below `committed`, in offset order.
    pub(crate) fn take_committed(&mut self, committed: i64) -> Vec<T> {
        let mut entries = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().0 > committed {
                break;
            }
            let (base_offset, (end_offset, batch)) = entry.remove_entry();
            assert!(
                base_offset >= self.applied_end,
                "internal-log batches are applied in order, once"
            );
            entries.extend(batch);
            self.applied_end = end_offset;
        }
        entries
    }

    /// Where applying has reached: every batch below is applied.
    pub(crate) fn applied_end(&self) -> i64 {
        self.applied_end
    }

    /// Whether every batch pushed was applied.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Test support: `batches` (base offset, last offset, bytes) as recovery hands them to a
/// shard, each header carrying its base offset moved by `shift` (the CRC does not cover it).
#[cfg(test)]
pub(crate) fn stored_log(batches: &[(i64, i64, Bytes)], shift: i64) -> Bytes {
    let mut stored = Vec::new();
    for (base, _, batch) in batches {
        let mut bytes = batch.to_vec();
        bytes[..8].copy_from_slice(&(base + shift).to_be_bytes());
        stored.extend_from_slice(&bytes);
    }
    Bytes::from(stored)
}

/// Test support: the batches of `batches` from `log_start` on as recovery hands them to a
/// shard whose log was trimmed below `log_start`.
#[cfg(test)]
pub(crate) fn stored_log_from(batches: &[(i64, i64, Bytes)], log_start: i64) -> Bytes {
    let kept: Vec<(i64, i64, Bytes)> = batches
        .iter()
        .filter(|(base, _, _)| *base >= log_start)
        .cloned()
        .collect();
    stored_log(&kept, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_apply_in_order_once_they_are_committed() {
        let mut queue = CommitQueue::default();
        queue.push(0, 1, vec!["a", "b"]);
        queue.push(2, 2, vec![]);
        queue.push(3, 4, vec!["c"]);
        assert!(
            queue.take_committed(1).is_empty(),
            "the first batch ends at 2"
        );
        assert_eq!(queue.take_committed(3), vec!["a", "b"]);
        assert_eq!(queue.applied_end(), 3);
        queue.truncate(3);
        assert!(queue.take_committed(10).is_empty());
        assert_eq!(queue.applied_end(), 3);
    }

    #[test]
    #[should_panic(expected = "committed internal-log batch was truncated")]
    fn truncating_applied_batches_is_refused() {
        let mut queue = CommitQueue::default();
        queue.push(0, 0, vec![1]);
        queue.take_committed(1);
        queue.truncate(0);
    }
}
