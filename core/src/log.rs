//! A partition's log: offsets, batches, segments and the high watermark, as metadata.
//!
//! The log holds no record bytes. It knows, for every batch, which offsets it covers, in
//! which segment it sits and at which byte position, so it can decide where an append goes
//! and which byte ranges answer a fetch; storage holds the bytes.
//!
//! Vocabulary (Kafka's):
//! - log start offset: the first offset still retained;
//! - log end offset (LEO): the offset the next appended record gets;
//! - high watermark (HWM): offsets below it are durable (and, once replicated, committed);
//!   consumers never see data at or above it.
//!
//! Invariants (checked by `check_invariants` in debug and simulation builds after every
//! mutation):
//! - offsets are dense and increasing: each batch starts at the previous batch's last
//!   offset + 1, each segment's first batch at the segment's base offset;
//! - positions are dense: each batch starts where the previous one in its segment ended,
//!   and a segment's size is the end of its last batch;
//! - `log_start_offset <= high_watermark <= log_end_offset`;
//! - the high watermark never moves backwards (truncation below it is refused);
//! - only whole segments are deleted by retention, never the active one, and only below the
//!   high watermark.

use crate::api::{AppendedBatch, ReadChunk, RecoveredSegment};
use crate::batch::BatchHeader;
use std::collections::VecDeque;
use thiserror::Error;

/// One batch's place in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntry {
    pub base_offset: i64,
    pub last_offset: i64,
    pub position: u32,
    pub size_bytes: u32,
    pub max_timestamp: i64,
    /// Epoch of the leader that first appended the batch (Kafka's partition leader epoch).
    pub leader_epoch: i32,
}

impl BatchEntry {
    fn end_position(&self) -> u32 {
        self.position + self.size_bytes
    }
}

/// One segment file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub base_offset: i64,
    pub batches: Vec<BatchEntry>,
}

impl Segment {
    fn new(base_offset: i64) -> Self {
        Self {
            base_offset,
            batches: Vec::new(),
        }
    }

    pub fn size_bytes(&self) -> u32 {
        self.batches.last().map_or(0, BatchEntry::end_position)
    }

    /// The offset after this segment's last batch (its base offset while empty).
    pub fn next_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.base_offset, |batch| batch.last_offset + 1)
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.batches.iter().map(|batch| batch.max_timestamp).max()
    }

    /// Index of the batch that holds `offset`, if any.
    fn batch_index_of(&self, offset: i64) -> Option<usize> {
        let index = self
            .batches
            .partition_point(|batch| batch.base_offset <= offset)
            .checked_sub(1)?;
        (self.batches[index].last_offset >= offset).then_some(index)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LogError {
    #[error("recovered segment {segment_base} has a batch at offset {found}, expected {expected}")]
    OffsetGap {
        segment_base: i64,
        expected: i64,
        found: i64,
    },
    #[error(
        "recovered segment {segment_base} has a batch at position {found}, expected {expected}"
    )]
    PositionGap {
        segment_base: i64,
        expected: u32,
        found: u32,
    },
    #[error("recovered segments are not in increasing base-offset order at {0}")]
    SegmentOrder(i64),
    #[error("cannot truncate to {offset}: the high watermark is {high_watermark}")]
    TruncateBelowHighWatermark { offset: i64, high_watermark: i64 },
    #[error("cannot restart the log at {offset}: it holds offsets up to {log_end_offset}")]
    RestartWithinLog { offset: i64, log_end_offset: i64 },
}

impl LogError {
    /// The offset the error is about (for a position, the segment's base offset).
    pub fn offset(&self) -> i64 {
        match self {
            LogError::OffsetGap { expected, .. } => *expected,
            LogError::PositionGap { segment_base, .. } => *segment_base,
            LogError::SegmentOrder(base_offset) => *base_offset,
            LogError::TruncateBelowHighWatermark { offset, .. }
            | LogError::RestartWithinLog { offset, .. } => *offset,
        }
    }
}

/// What a truncation asks storage to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Segments removed whole, by base offset.
    pub deleted_segments: Vec<i64>,
    /// The segment that becomes active, and its new size.
    pub active_segment_base: i64,
    pub active_segment_bytes: u32,
}

/// A partition's log metadata. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLog {
    segments: VecDeque<Segment>,
    log_start_offset: i64,
    /// DeleteRecords moved the start clients see here (at most the high watermark when
    /// moved); the records below it in the first kept segment are never served. `None`
    /// while no DeleteRecords reached this replica.
    deleted_below: Option<i64>,
    high_watermark: i64,
    /// Offsets below this are on this replica's disk durably.
    durable_end_offset: i64,
    /// Appends not yet known durable: (append sequence, log end offset after it).
    unsynced: VecDeque<(u64, i64)>,
}

impl PartitionLog {
    /// An empty log whose first offset will be `base_offset`.
    pub fn new(base_offset: i64) -> Self {
        Self {
            segments: VecDeque::from([Segment::new(base_offset)]),
            log_start_offset: base_offset,
            deleted_below: None,
            high_watermark: base_offset,
            durable_end_offset: base_offset,
            unsynced: VecDeque::new(),
        }
    }

    /// Rebuilds a log from what storage recovered. Everything recovered is durable (storage
    /// syncs during recovery), so the high watermark is the log end offset.
    ///
    /// A segment that does not start where the one before it ends follows a gap: a crash
    /// kept a roll but lost the tail before it (possible where the file system persists
    /// metadata before data). Offsets must stay dense, so that segment and every later one
    /// are dropped; their base offsets are returned, for storage to delete them.
    pub fn from_recovered(segments: &[RecoveredSegment]) -> Result<(Self, Vec<i64>), LogError> {
        let Some(first) = segments.first() else {
            return Ok((Self::new(0), Vec::new()));
        };
        let mut rebuilt = VecDeque::new();
        let mut previous_end: Option<i64> = None;
        let mut dropped = Vec::new();
        for recovered in segments {
            if previous_end.is_some_and(|end| recovered.base_offset < end) {
                return Err(LogError::SegmentOrder(recovered.base_offset));
            }
            if !dropped.is_empty() || previous_end.is_some_and(|end| recovered.base_offset > end) {
                dropped.push(recovered.base_offset);
                continue;
            }
            let mut segment = Segment::new(recovered.base_offset);
            for batch in &recovered.batches {
                let expected_offset = segment.next_offset();
                if batch.header.base_offset != expected_offset {
                    return Err(LogError::OffsetGap {
                        segment_base: recovered.base_offset,
                        expected: expected_offset,
                        found: batch.header.base_offset,
                    });
                }
                let expected_position = segment.size_bytes();
                if batch.position != expected_position {
                    return Err(LogError::PositionGap {
                        segment_base: recovered.base_offset,
                        expected: expected_position,
                        found: batch.position,
                    });
                }
                segment
                    .batches
                    .push(entry_for(&batch.header, batch.position));
            }
            previous_end = Some(segment.next_offset());
            rebuilt.push_back(segment);
        }
        let log_end_offset = previous_end.unwrap_or(first.base_offset);
        let log = Self {
            segments: rebuilt,
            log_start_offset: first.base_offset,
            deleted_below: None,
            high_watermark: log_end_offset,
            durable_end_offset: log_end_offset,
            unsynced: VecDeque::new(),
        };
        log.check_invariants();
        Ok((log, dropped))
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The first offset clients may read (Kafka's log start offset, the low watermark):
    /// the stored log's start, or past it where DeleteRecords deleted records.
    pub fn client_start_offset(&self) -> i64 {
        self.deleted_below
            .unwrap_or(self.log_start_offset)
            .clamp(self.log_start_offset, self.log_end_offset())
    }

    /// Where DeleteRecords moved the client start, if it ever did on this replica.
    pub fn deleted_below(&self) -> Option<i64> {
        self.deleted_below
    }

    /// The start DeleteRecords guarantees here, as replication carries it: where it moved
    /// the client start, or the stored log's start if retention went further; `None` if
    /// no DeleteRecords reached this replica.
    pub fn deleted_start(&self) -> Option<i64> {
        self.deleted_below
            .map(|offset| offset.max(self.log_start_offset))
    }

    /// DeleteRecords: clients read nothing below `offset` any more, which must not lie
    /// beyond the high watermark. Returns whether the DeleteRecords start moved (then it
    /// must be persisted), even where retention had already deleted past it. The stored
    /// segments wholly below it go with retention (`segments_below`).
    pub fn delete_records_below(&mut self, offset: i64) -> bool {
        assert!(
            offset <= self.high_watermark,
            "records are deleted only below the high watermark"
        );
        let moved = match self.deleted_start() {
            Some(start) => offset > start,
            None => offset > 0,
        };
        if moved {
            self.deleted_below = Some(offset);
        }
        moved
    }

    /// A start persisted by DeleteRecords, restored at recovery (reads clamp it to the log
    /// end).
    pub fn restore_deleted_below(&mut self, offset: i64) {
        self.deleted_below = Some(self.deleted_below.unwrap_or(offset).max(offset));
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active_segment().next_offset()
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    pub fn active_segment(&self) -> &Segment {
        self.segments
            .back()
            .expect("a partition log always has an active segment")
    }

    /// Total bytes across segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments
            .iter()
            .map(|segment| u64::from(segment.size_bytes()))
            .sum()
    }

    /// Whether a batch of `size_bytes` must go into a new segment first.
    pub fn needs_roll(&self, size_bytes: u32, segment_bytes_max: u32) -> bool {
        let active = self.active_segment();
        !active.batches.is_empty()
            && u64::from(active.size_bytes()) + u64::from(size_bytes) > u64::from(segment_bytes_max)
    }

    /// Starts a new, empty active segment at the log end offset; returns its base offset.
    pub fn roll(&mut self) -> i64 {
        let base_offset = self.log_end_offset();
        self.segments.push_back(Segment::new(base_offset));
        self.check_invariants();
        base_offset
    }

    /// Places a validated batch at the end of the active segment and records that it waits
    /// for append `sequence` to become durable.
    /// `leader_epoch` is stamped on the batch (the driver writes it into the header).
    pub fn append(
        &mut self,
        header: &BatchHeader,
        sequence: u64,
        leader_epoch: i32,
    ) -> AppendedBatch {
        let base_offset = self.log_end_offset();
        let segment = self
            .segments
            .back_mut()
            .expect("a partition log always has an active segment");
        let mut entry = entry_for(header, segment.size_bytes());
        entry.base_offset = base_offset;
        entry.last_offset = base_offset + i64::from(header.last_offset_delta);
        entry.leader_epoch = leader_epoch;
        segment.batches.push(entry);
        let appended = AppendedBatch {
            segment_base_offset: segment.base_offset,
            position: entry.position,
            base_offset,
            last_offset: entry.last_offset,
            max_timestamp: entry.max_timestamp,
            leader_epoch,
        };
        crate::invariant!(
            self.unsynced
                .back()
                .is_none_or(|(last, _)| *last < sequence),
            "append sequences increase"
        );
        self.unsynced.push_back((sequence, entry.last_offset + 1));
        self.check_invariants();
        appended
    }

    /// Offsets below this are durable on this replica.
    pub fn durable_end_offset(&self) -> i64 {
        self.durable_end_offset
    }

    /// Appends up to `through_sequence` are durable: the durable end offset follows.
    /// Returns whether it moved. The high watermark is the replication protocol's to move
    /// (`advance_high_watermark`); a single replica advances it to the durable end.
    pub fn on_synced(&mut self, through_sequence: u64) -> bool {
        let mut advanced = false;
        while let Some(&(sequence, end_offset)) = self.unsynced.front() {
            if sequence > through_sequence {
                break;
            }
            self.unsynced.pop_front();
            if end_offset > self.durable_end_offset {
                self.durable_end_offset = end_offset;
                advanced = true;
            }
        }
        self.check_invariants();
        advanced
    }

    /// Raises the high watermark to `offset` (never lowers it, never past the log end).
    /// Returns whether it moved.
    pub fn advance_high_watermark(&mut self, offset: i64) -> bool {
        let target = offset.min(self.log_end_offset());
        if target <= self.high_watermark {
            return false;
        }
        self.high_watermark = target;
        self.check_invariants();
        true
    }

    /// At the recovery of a replicated log: what was committed is unknown until a leader
    /// says, so the high watermark starts at the log start (for a lone replica, everything
    /// recovered is committed and this is not called).
    pub fn reset_high_watermark_to_start(&mut self) {
        self.high_watermark = self.log_start_offset;
    }

    /// Epoch of the leader that wrote the last batch, or -1 for an empty log.
    pub fn last_epoch(&self) -> i32 {
        self.segments
            .iter()
            .rev()
            .find_map(|segment| segment.batches.last())
            .map_or(-1, |batch| batch.leader_epoch)
    }

    /// The segment whose range starts at or before `offset` (the one that would hold it).
    fn segment_for(&self, offset: i64) -> Option<&Segment> {
        let index = self
            .segments
            .partition_point(|segment| segment.base_offset <= offset)
            .checked_sub(1)?;
        Some(&self.segments[index])
    }

    /// The batch holding `offset`, if the log holds it.
    fn batch_at(&self, offset: i64) -> Option<&BatchEntry> {
        let segment = self.segment_for(offset)?;
        segment
            .batch_index_of(offset)
            .map(|batch| &segment.batches[batch])
    }

    /// Epoch of the batch holding `offset`, if the log holds it.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.batch_at(offset).map(|batch| batch.leader_epoch)
    }

    /// The offset after the last batch a chunk (from `read`) ends with.
    pub fn offset_after(&self, chunk: &ReadChunk) -> Option<i64> {
        let segment = self.segment_for(chunk.segment_base_offset)?;
        let end = chunk.position + chunk.length;
        let batch = segment
            .batches
            .partition_point(|batch| batch.position < end)
            .checked_sub(1)?;
        let batch = &segment.batches[batch];
        (batch.end_position() == end).then_some(batch.last_offset + 1)
    }

    /// Base offset of the batch holding `offset`, if the log holds it. Replication sends
    /// whole batches, so where it resumes must be a batch's first offset.
    pub fn batch_base_offset(&self, offset: i64) -> Option<i64> {
        self.batch_at(offset).map(|batch| batch.base_offset)
    }

    /// Kafka's OffsetsForLeaderEpoch: the end offset of `epoch` in this log, i.e. the first
    /// offset written under a later epoch, or the log end offset if none. Used to find where
    /// a follower's log diverges from the leader's.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> i64 {
        self.segments
            .iter()
            .flat_map(|segment| segment.batches.iter())
            .find(|batch| batch.leader_epoch > epoch)
            .map_or_else(|| self.log_end_offset(), |batch| batch.base_offset)
    }

    /// Kafka's OffsetForLeaderEpoch as a leader answers it: the largest epoch at or below
    /// `epoch` that wrote batches here and the offset where it ends (the first offset of a
    /// later epoch, or the log end). If every batch here is of a later epoch (the earlier
    /// ones were deleted, or never here), `epoch` itself, ending where the first later
    /// epoch starts, no earlier than the log start, as Kafka's leader-epoch cache answers;
    /// a consumer whose position is there or before is not truncated. `None` for a
    /// negative (undefined) epoch.
    pub fn epoch_end(&self, epoch: i32) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        let found = self
            .segments
            .iter()
            .flat_map(|segment| segment.batches.iter())
            .take_while(|batch| batch.leader_epoch <= epoch)
            .last()
            .map(|batch| batch.leader_epoch);
        Some(match found {
            Some(found) => (found, self.end_offset_for_epoch(found)),
            None => (
                epoch,
                self.end_offset_for_epoch(epoch)
                    .max(self.client_start_offset()),
            ),
        })
    }

    /// Whether the log has appends that wait for a sync.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// The byte ranges that answer a fetch from `fetch_offset`: whole batches, in order,
    /// none reaching `upper_bound` (exclusive; the HWM or LSO), at most `max_bytes` unless
    /// `at_least_one_batch` (Kafka returns one whole batch even if it is larger).
    /// `fetch_offset` must lie in `[log_start_offset, log_end_offset]`.
    pub fn read(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        max_bytes: u32,
        at_least_one_batch: bool,
    ) -> Vec<ReadChunk> {
        let mut chunks: Vec<ReadChunk> = Vec::new();
        let mut total_bytes: u64 = 0;
        let first_segment = self
            .segments
            .partition_point(|segment| segment.base_offset <= fetch_offset)
            .saturating_sub(1);
        for segment in self.segments.iter().skip(first_segment) {
            let start = if segment.base_offset >= fetch_offset {
                0
            } else {
                match segment.batch_index_of(fetch_offset) {
                    Some(index) => index,
                    None => continue,
                }
            };
            for batch in &segment.batches[start..] {
                if batch.last_offset >= upper_bound {
                    return chunks;
                }
                let would_be = total_bytes + u64::from(batch.size_bytes);
                let first_of_response = chunks.is_empty() && at_least_one_batch;
                if would_be > u64::from(max_bytes) && !first_of_response {
                    return chunks;
                }
                total_bytes = would_be;
                match chunks.last_mut() {
                    Some(last)
                        if last.segment_base_offset == segment.base_offset
                            && last.position + last.length == batch.position =>
                    {
                        last.length += batch.size_bytes;
                    }
                    _ => chunks.push(ReadChunk {
                        segment_base_offset: segment.base_offset,
                        position: batch.position,
                        length: batch.size_bytes,
                    }),
                }
            }
        }
        chunks
    }

    /// The first batch below `upper_bound` whose newest record is at or after
    /// `timestamp_ms`, and where it is stored. The record asked for lies inside it: the
    /// core indexes batches, so the node reads the batch and finds the record.
    pub fn batch_at_timestamp(
        &self,
        timestamp_ms: i64,
        upper_bound: i64,
    ) -> Option<(BatchEntry, ReadChunk)> {
        self.stored_batches_below(upper_bound)
            .find(|(_, batch)| batch.max_timestamp >= timestamp_ms)
            .map(|(chunk, batch)| (batch, chunk))
    }

    /// The first batch below `upper_bound` holding the newest timestamp, and where it is
    /// stored (the node finds the first record with that timestamp inside it).
    pub fn batch_with_max_timestamp(&self, upper_bound: i64) -> Option<(BatchEntry, ReadChunk)> {
        self.stored_batches_below(upper_bound).fold(
            None,
            |best: Option<(BatchEntry, ReadChunk)>, candidate| match best {
                Some(best) if best.0.max_timestamp >= candidate.1.max_timestamp => Some(best),
                _ => Some((candidate.1, candidate.0)),
            },
        )
    }

    /// The batches from the log start offset up to `upper_bound`, each with its chunk.
    fn stored_batches_below(
        &self,
        upper_bound: i64,
    ) -> impl Iterator<Item = (ReadChunk, BatchEntry)> + '_ {
        let log_start = self.client_start_offset();
        self.segments
            .iter()
            .flat_map(|segment| {
                segment.batches.iter().map(|batch| {
                    let chunk = ReadChunk {
                        segment_base_offset: segment.base_offset,
                        position: batch.position,
                        length: batch.size_bytes,
                    };
                    (chunk, *batch)
                })
            })
            .skip_while(move |(_, batch)| batch.last_offset < log_start)
            .take_while(move |(_, batch)| batch.last_offset < upper_bound)
    }

    /// The oldest segments that retention removes now: whole, inactive segments below the
    /// high watermark that are older than `retention_ms` or beyond `retention_bytes`. Age
    /// compares the records' timestamps with `wall_ms`, the wall clock (see `api::Now`).
    pub fn segments_past_retention(
        &self,
        wall_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> Vec<i64> {
        let mut expired = Vec::new();
        let mut remaining_bytes = self.size_bytes();
        let inactive = self.segments.len().saturating_sub(1);
        for segment in self.segments.iter().take(inactive) {
            if segment.next_offset() > self.high_watermark {
                break;
            }
            let too_old = retention_ms >= 0
                && segment
                    .max_timestamp()
                    .is_some_and(|newest| newest < wall_ms.saturating_sub(retention_ms));
            let too_big = retention_bytes >= 0
                && remaining_bytes - u64::from(segment.size_bytes()) >= retention_bytes as u64;
            if !(too_old || too_big) {
                break;
            }
            remaining_bytes -= u64::from(segment.size_bytes());
            expired.push(segment.base_offset);
        }
        expired
    }

    /// The oldest segments that lie wholly below `offset` and the high watermark, the active
    /// one never among them: what an internal log may drop below a snapshot.
    pub fn segments_below(&self, offset: i64) -> Vec<i64> {
        let bound = offset.min(self.high_watermark);
        let inactive = self.segments.len().saturating_sub(1);
        self.segments
            .iter()
            .take(inactive)
            .take_while(|segment| segment.next_offset() <= bound)
            .map(|segment| segment.base_offset)
            .collect()
    }

    /// Drops the oldest segment, which must be `base_offset` and not the active one.
    pub fn delete_oldest_segment(&mut self, base_offset: i64) {
        assert!(
            self.segments.len() > 1,
            "the active segment is never deleted"
        );
        let removed = self
            .segments
            .pop_front()
            .expect("checked: more than one segment");
        assert_eq!(
            removed.base_offset, base_offset,
            "segments are deleted oldest first"
        );
        self.log_start_offset = self.segments[0].base_offset;
        self.check_invariants();
    }

    /// Drops the whole log and starts it over, empty, at `offset`, which lies past its end:
    /// a follower that fell behind its leader's log start, where retention deleted
    /// everything this log holds (see `replication`). Refused at or below the log end: no
    /// offset this log holds is skipped.
    pub fn restart_at(&mut self, offset: i64) -> Result<(), LogError> {
        let log_end_offset = self.log_end_offset();
        if offset <= log_end_offset {
            return Err(LogError::RestartWithinLog {
                offset,
                log_end_offset,
            });
        }
        let deleted_below = self.deleted_below;
        *self = Self::new(offset);
        self.deleted_below = deleted_below;
        self.check_invariants();
        Ok(())
    }

    /// Removes every offset at or above `offset` (a divergent tail, in replication).
    /// Refused below the high watermark: committed data is never truncated.
    pub fn truncate_to(&mut self, offset: i64) -> Result<Truncation, LogError> {
        if offset < self.high_watermark {
            return Err(LogError::TruncateBelowHighWatermark {
                offset,
                high_watermark: self.high_watermark,
            });
        }
        let mut deleted_segments = Vec::new();
        while self.segments.len() > 1 && self.active_segment().base_offset >= offset {
            if let Some(segment) = self.segments.pop_back() {
                deleted_segments.push(segment.base_offset);
            }
        }
        let active = self
            .segments
            .back_mut()
            .expect("a partition log always has an active segment");
        // A batch that straddles `offset` cannot be split: the cut falls at its start.
        active.batches.retain(|batch| batch.base_offset < offset);
        if active
            .batches
            .last()
            .is_some_and(|batch| batch.last_offset >= offset)
        {
            active.batches.pop();
        }
        let log_end_offset = self.log_end_offset();
        self.unsynced.retain(|(_, end)| *end <= log_end_offset);
        self.durable_end_offset = self.durable_end_offset.min(log_end_offset);
        let truncation = Truncation {
            deleted_segments,
            active_segment_base: self.active_segment().base_offset,
            active_segment_bytes: self.active_segment().size_bytes(),
        };
        self.check_invariants();
        Ok(truncation)
    }

    /// Asserts the module's invariants (debug and simulation builds).
    pub fn check_invariants(&self) {
        if !crate::INVARIANT_CHECKS {
            return;
        }
        assert!(!self.segments.is_empty(), "a log has an active segment");
        assert_eq!(self.segments[0].base_offset, self.log_start_offset);
        let mut expected_offset = self.log_start_offset;
        for segment in &self.segments {
            assert_eq!(
                segment.base_offset, expected_offset,
                "segments are contiguous"
            );
            let mut expected_position = 0;
            for batch in &segment.batches {
                assert_eq!(batch.base_offset, expected_offset, "offsets are dense");
                assert!(batch.last_offset >= batch.base_offset);
                assert_eq!(batch.position, expected_position, "positions are dense");
                expected_offset = batch.last_offset + 1;
                expected_position = batch.end_position();
            }
        }
        assert!(self.log_start_offset <= self.high_watermark);
        assert!(self.high_watermark <= self.log_end_offset());
        assert!(self.durable_end_offset <= self.log_end_offset());
    }
}

fn entry_for(header: &BatchHeader, position: u32) -> BatchEntry {
    BatchEntry {
        base_offset: header.base_offset,
        last_offset: header.base_offset + i64::from(header.last_offset_delta),
        position,
        size_bytes: header.size_bytes,
        max_timestamp: header.max_timestamp,
        leader_epoch: header.partition_leader_epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{read_header, test_batches};
    use proptest::prelude::*;

    fn header(record_count: i32, timestamp: i64) -> BatchHeader {
        read_header(&test_batches::plain(record_count, timestamp)).unwrap()
    }

    /// What a single replica does when a sync completes: its durable end is committed.
    fn sync_through(log: &mut PartitionLog, sequence: u64) -> bool {
        log.on_synced(sequence);
        log.advance_high_watermark(log.durable_end_offset())
    }

    /// Appends batches of the given record counts, syncing each; rolls at `segment_bytes`.
    fn log_with(record_counts: &[i32], segment_bytes: u32) -> PartitionLog {
        let mut log = PartitionLog::new(0);
        for (index, count) in record_counts.iter().enumerate() {
            let header = header(*count, index as i64 * 10);
            if log.needs_roll(header.size_bytes, segment_bytes) {
                log.roll();
            }
            log.append(&header, index as u64 + 1, 0);
            sync_through(&mut log, index as u64 + 1);
        }
        log
    }

    #[test]
    fn appends_get_dense_offsets_and_positions() {
        let log = log_with(&[3, 1, 5], 1 << 20);
        let batches = &log.active_segment().batches;
        assert_eq!(
            batches
                .iter()
                .map(|b| (b.base_offset, b.last_offset))
                .collect::<Vec<_>>(),
            vec![(0, 2), (3, 3), (4, 8)]
        );
        assert_eq!(batches[1].position, batches[0].size_bytes);
        assert_eq!(log.log_end_offset(), 9);
        assert_eq!(log.high_watermark(), 9);
    }

    #[test]
    fn the_high_watermark_waits_for_the_sync() {
        let mut log = PartitionLog::new(0);
        log.append(&header(2, 0), 1, 0);
        log.append(&header(2, 0), 2, 0);
        assert_eq!(log.high_watermark(), 0);
        assert!(log.read(0, log.high_watermark(), u32::MAX, true).is_empty());
        assert!(sync_through(&mut log, 1));
        assert_eq!(log.high_watermark(), 2);
        assert!(!sync_through(&mut log, 1));
        sync_through(&mut log, 2);
        assert_eq!(log.high_watermark(), 4);
    }

    #[test]
    fn a_read_from_inside_a_batch_starts_at_that_batch() {
        let log = log_with(&[3, 3, 3], 1 << 20);
        let chunks = log.read(4, log.high_watermark(), u32::MAX, true);
        let batches = &log.active_segment().batches;
        assert_eq!(
            chunks,
            vec![ReadChunk {
                segment_base_offset: 0,
                position: batches[1].position,
                length: batches[1].size_bytes + batches[2].size_bytes,
            }]
        );
    }

    #[test]
    fn max_bytes_bounds_a_read_but_one_batch_always_fits() {
        let log = log_with(&[3, 3, 3], 1 << 20);
        let one = log.active_segment().batches[0].size_bytes;
        assert_eq!(log.read(0, 9, one, true)[0].length, one);
        assert_eq!(log.read(0, 9, 1, true)[0].length, one);
        assert!(log.read(0, 9, 1, false).is_empty());
    }

    #[test]
    fn segments_roll_by_size_and_reads_cross_them() {
        let one = header(1, 0).size_bytes;
        let log = log_with(&[1, 1, 1, 1, 1], one * 2);
        assert_eq!(log.segments().count(), 3);
        let chunks = log.read(1, log.high_watermark(), u32::MAX, true);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].segment_base_offset, 0);
        assert_eq!(chunks[1].segment_base_offset, 2);
        assert_eq!(chunks[2].segment_base_offset, 4);
    }

    #[test]
    fn timestamps_find_the_first_batch_at_or_after() {
        let log = log_with(&[2, 2, 2], 1 << 20); // timestamps 0, 10, 20
        let found = |found: Option<(BatchEntry, ReadChunk)>| {
            found.map(|(batch, chunk)| (batch.base_offset, batch.max_timestamp, chunk.position))
        };
        let one = header(2, 0).size_bytes;
        assert_eq!(found(log.batch_at_timestamp(5, 6)), Some((2, 10, one)));
        assert_eq!(found(log.batch_at_timestamp(20, 6)), Some((4, 20, 2 * one)));
        assert_eq!(found(log.batch_at_timestamp(21, 6)), None);
        assert_eq!(
            found(log.batch_at_timestamp(20, 4)),
            None,
            "below the bound only"
        );
        assert_eq!(
            found(log.batch_with_max_timestamp(6)),
            Some((4, 20, 2 * one))
        );
    }

    #[test]
    fn retention_deletes_whole_old_segments_but_never_the_active_one() {
        let one = header(1, 0).size_bytes;
        let mut log = log_with(&[1, 1, 1, 1, 1], one * 2); // segments at 0, 2, 4; ts 0..40
        assert_eq!(log.segments_past_retention(1_000, 100, -1), vec![0, 2]);
        assert_eq!(
            log.segments_past_retention(1_000, -1, i64::from(one)),
            vec![0, 2]
        );
        assert_eq!(
            log.segments_past_retention(1_000, -1, i64::from(3 * one)),
            vec![0]
        );
        assert!(log.segments_past_retention(35, 100, -1).is_empty());
        log.delete_oldest_segment(0);
        assert_eq!(log.log_start_offset(), 2);
        assert_eq!(log.read(2, 5, u32::MAX, true)[0].segment_base_offset, 2);
    }

    #[test]
    fn truncation_drops_the_tail_above_the_high_watermark_only() {
        let one = header(1, 0).size_bytes;
        let mut log = PartitionLog::new(0);
        for sequence in 1..=5 {
            if log.needs_roll(one, one * 2) {
                log.roll();
            }
            log.append(&header(1, 0), sequence, 0);
        }
        sync_through(&mut log, 2);
        assert!(log.truncate_to(1).is_err());
        let truncation = log.truncate_to(3).unwrap();
        assert_eq!(truncation.deleted_segments, vec![4]);
        assert_eq!(truncation.active_segment_base, 2);
        assert_eq!(truncation.active_segment_bytes, one);
        assert_eq!(log.log_end_offset(), 3);
        sync_through(&mut log, 5);
        assert_eq!(
            log.high_watermark(),
            3,
            "truncated appends never count as synced"
        );
    }

    #[test]
    fn recovery_rebuilds_the_same_log() {
        use crate::api::RecoveredBatch;
        let one = header(2, 0).size_bytes;
        let original = log_with(&[2, 2, 2], one * 2);
        let recovered: Vec<RecoveredSegment> = original
            .segments()
            .map(|segment| RecoveredSegment {
                base_offset: segment.base_offset,
                batches: segment
                    .batches
                    .iter()
                    .map(|batch| {
                        let mut header = header(2, batch.max_timestamp);
                        header.base_offset = batch.base_offset;
                        RecoveredBatch {
                            position: batch.position,
                            header,
                            control_type: None,
                        }
                    })
                    .collect(),
            })
            .collect();
        let rebuilt = PartitionLog::from_recovered(&recovered).unwrap();
        assert_eq!(rebuilt.0, original);
        let mut gap = recovered.clone();
        gap[1].batches[0].header.base_offset += 1;
        assert!(PartitionLog::from_recovered(&gap).is_err());
    }

    #[test]
    fn leader_epochs_locate_where_logs_diverge() {
        let mut log = PartitionLog::new(0);
        for (sequence, epoch) in [(1, 1), (2, 1), (3, 3), (4, 4)] {
            log.append(&header(2, 0), sequence, epoch);
        }
        assert_eq!(log.last_epoch(), 4);
        assert_eq!(log.epoch_at(3), Some(1));
        assert_eq!(log.epoch_at(4), Some(3));
        assert_eq!(log.epoch_at(8), None);
        assert_eq!(
            log.end_offset_for_epoch(1),
            4,
            "epoch 1 ends where epoch 3 starts"
        );
        assert_eq!(
            log.end_offset_for_epoch(2),
            4,
            "an unknown epoch ends at the next one"
        );
        assert_eq!(log.end_offset_for_epoch(4), 8);
        assert_eq!(PartitionLog::new(0).last_epoch(), -1);
    }

    #[test]
    fn an_epochs_end_names_the_largest_epoch_at_or_below_the_one_asked() {
        let mut log = PartitionLog::new(0);
        for (sequence, epoch) in [(1, 2), (2, 2), (3, 5)] {
            log.append(&header(2, 0), sequence, epoch);
        }
        assert_eq!(
            log.epoch_end(1),
            Some((1, 0)),
            "older than anything here: it ends where the first later epoch starts"
        );
        assert_eq!(log.epoch_end(-1), None, "undefined");
        assert_eq!(log.epoch_end(2), Some((2, 4)));
        assert_eq!(
            log.epoch_end(4),
            Some((2, 4)),
            "epochs 3 and 4 wrote nothing"
        );
        assert_eq!(log.epoch_end(5), Some((5, 6)));
        assert_eq!(log.epoch_end(9), Some((5, 6)));
    }

    #[test]
    fn the_high_watermark_only_rises_and_stays_within_the_log() {
        let mut log = PartitionLog::new(0);
        log.append(&header(3, 0), 1, 0);
        assert!(log.advance_high_watermark(2));
        assert!(!log.advance_high_watermark(1), "never backwards");
        assert!(log.advance_high_watermark(99));
        assert_eq!(log.high_watermark(), 3, "never past the log end");
        assert_eq!(log.durable_end_offset(), 0, "durability is tracked apart");
    }

    proptest! {
        /// Any sequence of appends and rolls keeps offsets dense, and a read from any
        /// offset returns exactly the batches from the one holding it up to the bound.
        #[test]
        fn reads_from_any_offset_return_the_right_batches(
            record_counts in prop::collection::vec(1i32..20, 1..40),
            segment_batches in 1u32..6,
            fetch_pick in any::<prop::sample::Index>(),
        ) {
            let one = header(1, 0).size_bytes;
            let log = log_with(&record_counts, one * 3 * segment_batches);
            let end = log.log_end_offset();
            prop_assert_eq!(end, record_counts.iter().map(|c| i64::from(*c)).sum::<i64>());
            let fetch_offset = fetch_pick.index(end as usize) as i64;
            let chunks = log.read(fetch_offset, end, u32::MAX, true);
            // Expected: every batch whose last offset is >= fetch_offset.
            let expected: Vec<(i64, u32)> = log
                .segments()
                .flat_map(|s| s.batches.iter().map(move |b| (s.base_offset, *b)))
                .filter(|(_, b)| b.last_offset >= fetch_offset)
                .map(|(segment, b)| (segment, b.position))
                .collect();
            let returned: Vec<(i64, u32)> = chunks
                .iter()
                .flat_map(|chunk| {
                    log.segments()
                        .find(|s| s.base_offset == chunk.segment_base_offset)
                        .into_iter()
                        .flat_map(move |s| s.batches.iter())
                        .filter(move |b| {
                            b.position >= chunk.position && b.position < chunk.position + chunk.length
                        })
                        .map(move |b| (chunk.segment_base_offset, b.position))
                })
                .collect();
            prop_assert_eq!(returned, expected);
        }

        /// Truncating anywhere at or above the high watermark leaves a log whose end is the
        /// start of the batch holding the cut.
        #[test]
        fn truncation_keeps_a_valid_prefix(
            record_counts in prop::collection::vec(1i32..10, 1..30),
            synced_pick in any::<prop::sample::Index>(),
            cut_pick in any::<prop::sample::Index>(),
        ) {
            let one = header(1, 0).size_bytes;
            let mut log = PartitionLog::new(0);
            for (index, count) in record_counts.iter().enumerate() {
                let header = header(*count, 0);
                if log.needs_roll(header.size_bytes, one * 4) {
                    log.roll();
                }
                log.append(&header, index as u64 + 1, 0);
            }
            sync_through(&mut log, synced_pick.index(record_counts.len() + 1) as u64);
            let hwm = log.high_watermark();
            let end = log.log_end_offset();
            let cut = hwm + cut_pick.index((end - hwm + 1) as usize) as i64;
            log.truncate_to(cut).unwrap();
            prop_assert!(log.log_end_offset() <= cut);
            prop_assert!(log.log_end_offset() >= hwm);
            log.check_invariants();
        }
    }
}
