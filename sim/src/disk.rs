//! `SimDisk`: an in-memory [`Storage`] with a crash model, for simulated nodes.
//!
//! The harness owns each node's disk (an `Arc`), so the disk outlives the node's tasks: a
//! simulated crash kills the node and calls [`SimDisk::crash`], a restart runs the node's
//! real recovery against what survived.
//!
//! ## The crash model
//! - Per segment, the bytes written so far are one buffer (the page cache) of which a prefix
//!   is durable; [`Storage::sync`] makes everything written before it durable.
//! - `crash` keeps durable bytes only. With a [`Tear`], the most recent unsynced write of the
//!   disk is torn instead of lost: the unsynced writes before it in its segment survive
//!   whole (the kernel wrote them back), and the last one keeps a prefix
//!   ([`TearMode::Truncated`]) or keeps its full length with everything after the prefix
//!   zeroed ([`TearMode::ZeroedTail`]: the file size reached the disk, the data did not).
//! - Directory operations mirror the file storage: creating and deleting a partition are
//!   durable at once (it fsyncs the directories); rolling a segment and deleting one by
//!   retention are durable at the next sync. At a crash, the ones since the last sync are
//!   either all kept or all undone ([`CrashSpec::keep_unsynced_directory_ops`]).
//! - `persist_metadata`, `persist_replica_state` and `truncate` are durable when they
//!   return (the file storage fsyncs them at once).
//! - [`SimDisk::fail_next_sync`] makes the next sync fail; like the file storage, every sync
//!   after a failed one fails too, until the next crash (a reboot).
//!
//! ## Recovery
//! `recover` scans every segment with [`myelin_core::batch::scan_batches`], the same checks
//! as the file storage's scan (lengths, CRC-32C, offset continuity), cuts each segment at its
//! first invalid batch, makes what it kept durable, and reports it. A partition without
//! segments gets an empty one at offset 0, as the file storage does. One difference: the
//! file storage loads a non-last segment from its index files when they agree with the log,
//! without reading the batches' bodies; this disk keeps no indexes and scans every segment.
//! (With the deliberate defect `SkipRecoveryCrc` the CRC is not checked.)

use bytes::Bytes;
use myelin_core::api::{AppendedBatch, ReadChunk, RecoveredPartition, RecoveredSegment};
use myelin_core::batch::{scan_batches, stored_header_prefix, BatchScan};
use myelin_core::log::Truncation;
use myelin_core::metadata::{ClusterMetadata, TopicPartition};
use myelin_core::replication::ReplicaState;
use myelin_node::storage::{Recovered, Storage, StorageError, StorageResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// One batch as a disk holds it: (base offset, last offset, bytes).
pub type StoredBatch = (i64, i64, Vec<u8>);

/// Every partition's whole batches as (segment base offset, position in the segment, base
/// offset, last offset, bytes), in log order (see [`SimDisk::held_batches`]).
pub type HeldBatches = Vec<(TopicPartition, Vec<(i64, u32, i64, i64, Vec<u8>)>)>;

/// How the last unsynced write is torn by a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TearMode {
    /// Only a prefix of the write reached the disk.
    Truncated,
    /// The file grew by the whole write, but after the prefix only zeroes reached the disk.
    ZeroedTail,
}

/// A torn write: which kind, and how much of the write survives (per mille of its length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tear {
    pub mode: TearMode,
    pub kept_per_mille: u16,
}

/// What a crash does to unsynced state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CrashSpec {
    /// Tear the most recent unsynced write instead of dropping it.
    pub tear: Option<Tear>,
    /// Keep segment rolls and deletions made since the last sync (else undo them).
    pub keep_unsynced_directory_ops: bool,
}

/// What a crash did, for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashReport {
    pub bytes_lost: u64,
    pub torn_writes: u64,
}

/// Counters over a disk's life, for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStats {
    pub appends: u64,
    pub syncs: u64,
    pub failed_syncs: u64,
    pub crashes: u64,
    pub torn_writes: u64,
    pub bytes_lost_in_crashes: u64,
    pub bytes_cut_by_recovery: u64,
}

#[derive(Debug, Clone, Default)]
struct Segment {
    /// Everything written: the page cache's view.
    bytes: Vec<u8>,
    /// The first `durable_len` bytes survive a crash.
    durable_len: usize,
    /// Byte ranges of the unsynced writes, with the disk-wide write number of each.
    unsynced_writes: Vec<(usize, usize, u64)>,
    /// Created by a roll since the last sync: the directory entry is not durable yet.
    created_unsynced: bool,
}

#[derive(Debug, Clone, Default)]
struct PartitionFiles {
    segments: BTreeMap<i64, Segment>,
}

impl PartitionFiles {
    fn active(&mut self) -> Option<(i64, &mut Segment)> {
        self.segments
            .iter_mut()
            .next_back()
            .map(|(base, segment)| (*base, segment))
    }
}

#[derive(Debug, Default)]
struct DiskState {
    metadata: Option<ClusterMetadata>,
    replica_states: BTreeMap<TopicPartition, ReplicaState>,
    partitions: BTreeMap<TopicPartition, PartitionFiles>,
    /// Segments deleted by retention since the last sync (a crash may bring them back).
    unsynced_deletions: Vec<(TopicPartition, i64, Segment)>,
    next_write_number: u64,
    fail_next_sync: bool,
    /// A sync failed: every later sync fails until the next crash.
    sync_failed: bool,
    /// A sync failed since the harness last asked (see `take_sync_failure`).
    sync_failure_unreported: bool,
    #[cfg(feature = "defects")]
    skip_recovery_crc: bool,
    stats: DiskStats,
}

/// An in-memory disk with a crash model. See the module doc.
#[derive(Debug, Default)]
pub struct SimDisk {
    state: Mutex<DiskState>,
}

fn missing_partition(partition: &TopicPartition) -> StorageError {
    StorageError::UnknownPartition(partition.clone())
}

fn invalid(context: String) -> StorageError {
    StorageError::io(
        context,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "refused by the simulated disk",
        ),
    )
}

impl SimDisk {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // The simulation is single-threaded; a poisoned lock means a panic already failed it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The deliberate defect `SkipRecoveryCrc`: recovery checks headers and lengths only.
    #[cfg(feature = "defects")]
    pub fn set_skip_recovery_crc(&self, skip: bool) {
        self.lock().skip_recovery_crc = skip;
    }

    /// The next sync fails (and, as with the file storage, every one after it).
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// Whether a sync failed since the last call (the harness then treats the node as
    /// crashed).
    pub fn take_sync_failure(&self) -> bool {
        std::mem::take(&mut self.lock().sync_failure_unreported)
    }

    /// Bytes written but not yet durable, across all segments.
    pub fn unsynced_bytes(&self) -> u64 {
        let state = self.lock();
        state
            .partitions
            .values()
            .flat_map(|files| files.segments.values())
            .map(|segment| (segment.bytes.len() - segment.durable_len) as u64)
            .sum()
    }

    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }

    /// Power loss: keeps what the crash model says survives. See the module doc.
    pub fn crash(&self, spec: CrashSpec) -> CrashReport {
        let mut state = self.lock();
        let state = &mut *state;
        let mut report = CrashReport::default();
        // The most recent unsynced write of the whole disk, if it is to be torn.
        let torn_write = spec.tear.and_then(|tear| {
            state
                .partitions
                .iter()
                .flat_map(|(partition, files)| {
                    files.segments.iter().filter_map(move |(base, segment)| {
                        segment
                            .unsynced_writes
                            .last()
                            .map(|write| (write.2, partition.clone(), *base))
                    })
                })
                .max_by_key(|(number, _, _)| *number)
                .map(|(_, partition, base)| (partition, base, tear))
        });
        if !spec.keep_unsynced_directory_ops {
            for (partition, base, segment) in state.unsynced_deletions.drain(..) {
                if let Some(files) = state.partitions.get_mut(&partition) {
                    files.segments.entry(base).or_insert(segment);
                }
            }
            for files in state.partitions.values_mut() {
                files.segments.retain(|_, segment| {
                    if segment.created_unsynced {
                        report.bytes_lost += segment.bytes.len() as u64;
                    }
                    !segment.created_unsynced
                });
            }
        }
        state.unsynced_deletions.clear();
        for (partition, files) in state.partitions.iter_mut() {
            for (base, segment) in files.segments.iter_mut() {
                let tear = torn_write
                    .as_ref()
                    .filter(|(torn_partition, torn_base, _)| {
                        torn_partition == partition && torn_base == base
                    })
                    .map(|(_, _, tear)| *tear);
                let written = segment.bytes.len();
                match (tear, segment.unsynced_writes.last().copied()) {
                    (Some(tear), Some((start, end, _))) => {
                        let kept =
                            (end - start) * usize::from(tear.kept_per_mille.min(1000)) / 1000;
                        match tear.mode {
                            TearMode::Truncated => segment.bytes.truncate(start + kept),
                            TearMode::ZeroedTail => {
                                segment.bytes.truncate(end);
                                segment.bytes[start + kept..].fill(0);
                            }
                        }
                        report.torn_writes += 1;
                    }
                    _ => segment.bytes.truncate(segment.durable_len),
                }
                report.bytes_lost += (written - segment.bytes.len()) as u64;
                segment.durable_len = segment.bytes.len();
                segment.unsynced_writes.clear();
                segment.created_unsynced = false;
            }
        }
        state.fail_next_sync = false;
        state.sync_failed = false;
        state.sync_failure_unreported = false;
        state.stats.crashes += 1;
        state.stats.torn_writes += report.torn_writes;
        state.stats.bytes_lost_in_crashes += report.bytes_lost;
        report
    }

    /// Every whole batch a partition holds, in log order: (base offset, last offset, the
    /// batch's bytes); `None` if the disk has no such partition. For the checkers'
    /// comparison of replicas.
    pub fn batches(&self, partition: &TopicPartition) -> Option<Vec<StoredBatch>> {
        let state = self.lock();
        let files = state.partitions.get(partition)?;
        let mut batches = Vec::new();
        for (base, segment) in &files.segments {
            let scan = scan_batches(&segment.bytes, *base);
            for batch in scan.batches {
                let start = batch.position as usize;
                let end = start + batch.header.size_bytes as usize;
                batches.push((
                    batch.header.base_offset,
                    batch.header.base_offset + i64::from(batch.header.last_offset_delta),
                    segment.bytes[start..end].to_vec(),
                ));
            }
        }
        Some(batches)
    }

    /// Every whole batch of every partition, with its place in its segment: what recovery
    /// will find (for the checkers' per-replica logs after a crash).
    pub fn held_batches(&self) -> HeldBatches {
        let state = self.lock();
        state
            .partitions
            .iter()
            .map(|(partition, files)| {
                let mut batches = Vec::new();
                for (base, segment) in &files.segments {
                    let scan = scan(&state, &segment.bytes, *base);
                    for batch in scan.batches {
                        let start = batch.position as usize;
                        let end = start + batch.header.size_bytes as usize;
                        batches.push((
                            *base,
                            batch.position,
                            batch.header.base_offset,
                            batch.header.base_offset + i64::from(batch.header.last_offset_delta),
                            segment.bytes[start..end].to_vec(),
                        ));
                    }
                }
                (partition.clone(), batches)
            })
            .collect()
    }

    /// The durable bytes of a segment (for tests).
    pub fn durable_segment_bytes(
        &self,
        partition: &TopicPartition,
        base_offset: i64,
    ) -> Option<Vec<u8>> {
        let state = self.lock();
        let segment = state
            .partitions
            .get(partition)?
            .segments
            .get(&base_offset)?;
        Some(segment.bytes[..segment.durable_len].to_vec())
    }
}

/// Recovery's scan of one segment (without the CRC check under the `SkipRecoveryCrc`
/// defect).
fn scan(state: &DiskState, bytes: &[u8], base_offset: i64) -> BatchScan {
    #[cfg(feature = "defects")]
    if state.skip_recovery_crc {
        return scan_without_crc(bytes, base_offset);
    }
    let _ = state;
    scan_batches(bytes, base_offset)
}

/// The defect `SkipRecoveryCrc`: `scan_batches` with the CRC check left out.
#[cfg(feature = "defects")]
fn scan_without_crc(bytes: &[u8], base_offset: i64) -> BatchScan {
    use myelin_core::api::RecoveredBatch;
    use myelin_core::batch::{read_header, BATCH_HEADER_BYTES};
    let mut batches = Vec::new();
    let mut position = 0usize;
    let mut expected_offset = base_offset;
    while bytes.len() - position >= BATCH_HEADER_BYTES {
        let Ok(header) = read_header(&bytes[position..]) else {
            break;
        };
        let size = header.size_bytes as usize;
        if size > bytes.len() - position || header.base_offset != expected_offset {
            break;
        }
        batches.push(RecoveredBatch {
            position: position as u32,
            header,
            control_type: myelin_core::records::control_record_type(
                &bytes[position..position + size],
            ),
        });
        position += size;
        expected_offset = header.base_offset + header.offset_count();
    }
    BatchScan {
        batches,
        valid_bytes: position,
        stop_reason: None,
    }
}

impl Storage for SimDisk {
    fn recover(&self) -> StorageResult<Recovered> {
        let mut state = self.lock();
        let mut partitions_on_disk = std::mem::take(&mut state.partitions);
        let mut partitions = Vec::with_capacity(partitions_on_disk.len());
        for (partition, files) in partitions_on_disk.iter_mut() {
            if files.segments.is_empty() {
                files.segments.insert(0, Segment::default());
            }
            let mut segments = Vec::with_capacity(files.segments.len());
            for (base_offset, segment) in files.segments.iter_mut() {
                let scan = scan(&state, &segment.bytes, *base_offset);
                let cut = segment.bytes.len() - scan.valid_bytes;
                state.stats.bytes_cut_by_recovery += cut as u64;
                segment.bytes.truncate(scan.valid_bytes);
                segment.durable_len = segment.bytes.len();
                segment.unsynced_writes.clear();
                segment.created_unsynced = false;
                segments.push(RecoveredSegment {
                    base_offset: *base_offset,
                    batches: scan.batches,
                });
            }
            partitions.push(RecoveredPartition {
                partition: partition.clone(),
                segments,
                replica_state: state.replica_states.get(partition).copied(),
            });
        }
        state.partitions = partitions_on_disk;
        state.unsynced_deletions.clear();
        Ok(Recovered {
            metadata: state.metadata.clone(),
            partitions,
        })
    }

    fn create_partition(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()> {
        let mut state = self.lock();
        let files = PartitionFiles {
            segments: BTreeMap::from([(base_offset, Segment::default())]),
        };
        state.partitions.insert(partition.clone(), files);
        Ok(())
    }

    fn delete_partition(&self, partition: &TopicPartition) -> StorageResult<()> {
        let mut state = self.lock();
        state.partitions.remove(partition);
        state.replica_states.remove(partition);
        state
            .unsynced_deletions
            .retain(|(deleted, _, _)| deleted != partition);
        Ok(())
    }

    fn append(
        &self,
        partition: &TopicPartition,
        batch: &AppendedBatch,
        bytes: &Bytes,
    ) -> StorageResult<()> {
        let mut state = self.lock();
        let write_number = state.next_write_number;
        state.next_write_number += 1;
        state.stats.appends += 1;
        let files = state
            .partitions
            .get_mut(partition)
            .ok_or_else(|| missing_partition(partition))?;
        let (active_base, segment) = files.active().ok_or_else(|| missing_partition(partition))?;
        if active_base != batch.segment_base_offset
            || segment.bytes.len() != batch.position as usize
        {
            return Err(invalid(format!(
                "append to {partition} at segment {} position {}: the active segment is {active_base}, {} bytes long",
                batch.segment_base_offset,
                batch.position,
                segment.bytes.len()
            )));
        }
        if bytes.len() < 16 {
            return Err(invalid(format!(
                "append of {} bytes to {partition}",
                bytes.len()
            )));
        }
        let start = segment.bytes.len();
        segment.bytes.extend_from_slice(&stored_header_prefix(
            bytes,
            batch.base_offset,
            batch.leader_epoch,
        ));
        segment.bytes.extend_from_slice(&bytes[16..]);
        segment
            .unsynced_writes
            .push((start, segment.bytes.len(), write_number));
        Ok(())
    }

    fn roll_segment(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()> {
        let mut state = self.lock();
        let files = state
            .partitions
            .get_mut(partition)
            .ok_or_else(|| missing_partition(partition))?;
        if files
            .segments
            .keys()
            .next_back()
            .is_some_and(|active| *active >= base_offset)
        {
            return Err(invalid(format!(
                "roll {partition} to a segment at {base_offset}"
            )));
        }
        let segment = Segment {
            created_unsynced: true,
            ..Segment::default()
        };
        files.segments.insert(base_offset, segment);
        Ok(())
    }

    fn delete_segment(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()> {
        let mut state = self.lock();
        let files = state
            .partitions
            .get_mut(partition)
            .ok_or_else(|| missing_partition(partition))?;
        if files.segments.keys().next_back() == Some(&base_offset) {
            return Err(invalid(format!(
                "delete the active segment {base_offset} of {partition}"
            )));
        }
        let segment =
            files
                .segments
                .remove(&base_offset)
                .ok_or_else(|| StorageError::UnknownSegment {
                    partition: partition.clone(),
                    base_offset,
                })?;
        state
            .unsynced_deletions
            .push((partition.clone(), base_offset, segment));
        Ok(())
    }

    fn truncate(&self, partition: &TopicPartition, truncation: &Truncation) -> StorageResult<()> {
        let mut state = self.lock();
        let files = state
            .partitions
            .get_mut(partition)
            .ok_or_else(|| missing_partition(partition))?;
        let base = truncation.active_segment_base;
        let later: Vec<i64> = files.segments.range(base + 1..).map(|(b, _)| *b).collect();
        let mut named = truncation.deleted_segments.clone();
        named.sort_unstable();
        if later != named {
            return Err(invalid(format!(
                "truncate {partition} to {truncation:?}: the segments after {base} are {later:?}"
            )));
        }
        for removed in later {
            files.segments.remove(&removed);
        }
        let segment =
            files
                .segments
                .get_mut(&base)
                .ok_or_else(|| StorageError::UnknownSegment {
                    partition: partition.clone(),
                    base_offset: base,
                })?;
        let cut = truncation.active_segment_bytes as usize;
        if cut > segment.bytes.len() {
            return Err(invalid(format!(
                "truncate {partition} segment {base} to {cut} bytes: it has {}",
                segment.bytes.len()
            )));
        }
        // Durable at once, like the file storage's (it fsyncs the cut).
        segment.bytes.truncate(cut);
        segment.durable_len = segment.durable_len.min(cut);
        segment.unsynced_writes.retain(|(_, end, _)| *end <= cut);
        state
            .unsynced_deletions
            .retain(|(deleted, deleted_base, _)| deleted != partition || *deleted_base < base);
        Ok(())
    }

    fn restart_log(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()> {
        let mut state = self.lock();
        let files = state
            .partitions
            .get_mut(partition)
            .ok_or_else(|| missing_partition(partition))?;
        if files.segments.keys().next_back() >= Some(&base_offset) {
            return Err(invalid(format!(
                "restart {partition} at {base_offset}: a segment starts at or past it"
            )));
        }
        // Durable at once, like the file storage's (it syncs the directory).
        files.segments = BTreeMap::from([(base_offset, Segment::default())]);
        state
            .unsynced_deletions
            .retain(|(deleted, _, _)| deleted != partition);
        Ok(())
    }

    fn persist_replica_state(
        &self,
        partition: &TopicPartition,
        replica_state: &ReplicaState,
    ) -> StorageResult<()> {
        self.lock()
            .replica_states
            .insert(partition.clone(), *replica_state);
        Ok(())
    }

    fn sync(&self) -> StorageResult<()> {
        let mut state = self.lock();
        if std::mem::take(&mut state.fail_next_sync) {
            state.sync_failed = true;
            state.sync_failure_unreported = true;
            state.stats.failed_syncs += 1;
        }
        if state.sync_failed {
            return Err(StorageError::io(
                "sync",
                std::io::Error::other("simulated fsync failure"),
            ));
        }
        state.stats.syncs += 1;
        for files in state.partitions.values_mut() {
            for segment in files.segments.values_mut() {
                segment.durable_len = segment.bytes.len();
                segment.unsynced_writes.clear();
                segment.created_unsynced = false;
            }
        }
        state.unsynced_deletions.clear();
        Ok(())
    }

    fn read(&self, partition: &TopicPartition, chunk: &ReadChunk) -> StorageResult<Bytes> {
        let state = self.lock();
        let segment = state
            .partitions
            .get(partition)
            .ok_or_else(|| missing_partition(partition))?
            .segments
            .get(&chunk.segment_base_offset)
            .ok_or_else(|| StorageError::UnknownSegment {
                partition: partition.clone(),
                base_offset: chunk.segment_base_offset,
            })?;
        let start = chunk.position as usize;
        let end = start + chunk.length as usize;
        if end > segment.bytes.len() {
            return Err(invalid(format!(
                "read {partition} segment {} bytes {start}..{end}: the segment is {} bytes long",
                chunk.segment_base_offset,
                segment.bytes.len()
            )));
        }
        Ok(Bytes::copy_from_slice(&segment.bytes[start..end]))
    }

    fn persist_metadata(&self, metadata: &ClusterMetadata) -> StorageResult<()> {
        self.lock().metadata = Some(metadata.clone());
        Ok(())
    }

    fn locate(&self, partition: &TopicPartition, offset: i64) -> String {
        let state = self.lock();
        let segment = state
            .partitions
            .get(partition)
            .and_then(|files| files.segments.range(..=offset).next_back())
            .map(|(base_offset, _)| *base_offset);
        match segment {
            Some(base_offset) => {
                format!("segment {base_offset} of {partition} on the simulated disk")
            }
            None => format!("{partition} on the simulated disk"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_client::records::encode_batch;
    use myelin_client::{BatchOptions, NewRecord};

    fn partition() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// Appends a one-record batch at the end of the active segment; returns its size.
    fn append(disk: &SimDisk, base_offset: i64, segment_base: i64, position: u32) -> u32 {
        let bytes = encode_batch(
            &[NewRecord::new(format!("v{base_offset}"))],
            &BatchOptions::default(),
        )
        .unwrap();
        let batch = AppendedBatch {
            segment_base_offset: segment_base,
            position,
            base_offset,
            last_offset: base_offset,
            max_timestamp: 0,
            leader_epoch: 0,
        };
        disk.append(&partition(), &batch, &bytes).unwrap();
        bytes.len() as u32
    }

    fn recovered_offsets(disk: &SimDisk) -> Vec<i64> {
        let recovered = disk.recover().unwrap();
        recovered.partitions[0]
            .segments
            .iter()
            .flat_map(|segment| segment.batches.iter().map(|batch| batch.header.base_offset))
            .collect()
    }

    #[test]
    fn a_crash_keeps_synced_batches_and_drops_the_rest() {
        let disk = SimDisk::new();
        disk.create_partition(&partition(), 0).unwrap();
        let size = append(&disk, 0, 0, 0);
        disk.sync().unwrap();
        append(&disk, 1, 0, size);
        let report = disk.crash(CrashSpec::default());
        assert_eq!(report.bytes_lost, u64::from(size));
        assert_eq!(recovered_offsets(&disk), vec![0]);
    }

    #[test]
    fn a_torn_write_is_cut_by_recovery_in_both_modes() {
        for mode in [TearMode::Truncated, TearMode::ZeroedTail] {
            let disk = SimDisk::new();
            disk.create_partition(&partition(), 0).unwrap();
            let size = append(&disk, 0, 0, 0);
            let size2 = append(&disk, 1, 0, size);
            append(&disk, 2, 0, size + size2);
            let tear = Tear {
                mode,
                kept_per_mille: 900,
            };
            let report = disk.crash(CrashSpec {
                tear: Some(tear),
                keep_unsynced_directory_ops: false,
            });
            assert_eq!(report.torn_writes, 1);
            // The writes before the torn one survive whole; the torn one is cut.
            assert_eq!(recovered_offsets(&disk), vec![0, 1], "{mode:?}");
        }
    }

    #[test]
    fn a_failed_sync_fails_every_later_sync_until_a_crash() {
        let disk = SimDisk::new();
        disk.create_partition(&partition(), 0).unwrap();
        append(&disk, 0, 0, 0);
        disk.fail_next_sync();
        assert!(disk.sync().is_err());
        assert!(disk.take_sync_failure());
        assert!(disk.sync().is_err());
        disk.crash(CrashSpec::default());
        assert_eq!(recovered_offsets(&disk), Vec::<i64>::new());
        assert!(disk.sync().is_ok());
    }

    #[test]
    fn an_unsynced_roll_is_undone_or_kept_as_the_crash_says() {
        for keep in [false, true] {
            let disk = SimDisk::new();
            disk.create_partition(&partition(), 0).unwrap();
            let size = append(&disk, 0, 0, 0);
            disk.sync().unwrap();
            disk.roll_segment(&partition(), 1).unwrap();
            append(&disk, 1, 1, 0);
            disk.crash(CrashSpec {
                tear: None,
                keep_unsynced_directory_ops: keep,
            });
            let recovered = disk.recover().unwrap();
            let bases: Vec<i64> = recovered.partitions[0]
                .segments
                .iter()
                .map(|segment| segment.base_offset)
                .collect();
            assert_eq!(bases, if keep { vec![0, 1] } else { vec![0] });
            assert!(size > 0);
        }
    }

    #[test]
    fn metadata_is_durable_at_once() {
        let disk = SimDisk::new();
        let metadata = ClusterMetadata::new("c", Vec::new());
        disk.persist_metadata(&metadata).unwrap();
        disk.crash(CrashSpec::default());
        assert_eq!(disk.recover().unwrap().metadata, Some(metadata));
    }
}
