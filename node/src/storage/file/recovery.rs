//! Recovery: what `FileStorage::recover` does to each partition directory. The rules are in
//! the parent module's doc; this file carries them out.

use super::layout::{
    decode_index_prefix, encode_indexes, parse_partition_dir_name, parse_segment_file_name,
    DecodedIndexes, IndexEntry, SegmentFileKind, SegmentPaths, OFFSET_INDEX_ENTRY_BYTES,
    TIME_INDEX_ENTRY_BYTES,
};
use super::recovery_point::{read_recovery_points, RecoveryPoint};
use super::replica_states::{
    read_replica_states, ReplicaStates, LEGACY_REPLICA_STATE_FILE, REPLICA_STATES_FILE,
};
use super::{
    create_segment, io_error, lock, open_read_write, read_json_file, sync_directory,
    temporary_name, ActiveSegment, ActiveState, FileStorage, PartitionFiles, SegmentEntry,
    SegmentLog, SEGMENT_BYTES_MAX,
};
use crate::storage::fs::{EntryKind, FileSystem, FsFile, OpenMode};
use crate::storage::{Recovered, StorageError, StorageResult};
use myelin_core::api::{RecoveredBatch, RecoveredPartition, RecoveredSegment};
use myelin_core::batch::{read_header, validate, BatchError, BatchHeader, BATCH_HEADER_BYTES};
use myelin_core::metadata::TopicPartition;
use myelin_core::records::control_record_type;
use myelin_core::replication::ReplicaState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bytes of a control batch read at recovery to learn its type: the header and the first
/// record's key (markers are about 80 bytes).
const CONTROL_BATCH_READ_BYTES: usize = BATCH_HEADER_BYTES + 64;

/// How a scan checks one whole batch: [`validate`] (lengths, CRC-32C), unless a deliberate
/// defect swaps it (`FileStorage::with_defect`).
type BatchCheck = fn(&[u8]) -> Result<BatchHeader, BatchError>;

/// The deliberate defect `SkipRecoveryCrc`: [`validate`] without the CRC-32C, so a torn
/// batch whose header and length survived is kept.
#[cfg(feature = "defects")]
fn validate_without_crc(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = read_header(bytes)?;
    if header.size_bytes as usize != bytes.len() {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.size_bytes),
            present: bytes.len(),
        });
    }
    Ok(header)
}

/// Counts of what recovery found and repaired (logged; read by tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct RecoveryStats {
    pub(super) partitions: usize,
    pub(super) segments: usize,
    /// Segments whose index files were rewritten (missing, stale or inconsistent).
    pub(super) indexes_rebuilt: usize,
    /// Segments whose log was cut at an invalid batch.
    pub(super) segments_truncated: usize,
    pub(super) bytes_truncated: u64,
    /// Index files without a log, removed.
    pub(super) stray_files_removed: usize,
    /// Bytes loaded below recovery points, from the indexes, without a scan.
    pub(super) bytes_trusted: u64,
    /// Bytes scanned batch by batch (CRC-checked): past recovery points, or everything of a
    /// partition without one.
    pub(super) bytes_scanned: u64,
}

impl<F: FileSystem> FileStorage<F> {
    /// `recover`, with the counts of what it repaired.
    pub(super) fn recover_with_stats(&self) -> StorageResult<(Recovered, RecoveryStats)> {
        let metadata = self.recover_metadata()?;
        let recovery_points = read_recovery_points(&self.fs, &self.data_dir)?;
        self.remove_unfinished_replacement(REPLICA_STATES_FILE)?;
        let stored_states = read_replica_states(&self.fs, &self.data_dir)?;
        let mut replica_states = ReplicaStates::new();
        let mut stats = RecoveryStats::default();
        let mut found = BTreeMap::new();
        let entries = self
            .fs
            .read_dir(&self.topics_dir)
            .map_err(io_error(|| format!("list {}", self.topics_dir.display())))?;
        for entry in entries {
            let path = self.topics_dir.join(&entry.name);
            let is_dir = entry.kind == EntryKind::Dir;
            let partition = entry
                .name
                .to_str()
                .and_then(parse_partition_dir_name)
                .filter(|_| is_dir);
            match partition {
                Some(partition) => {
                    found.insert(partition, path);
                }
                None => {
                    tracing::warn!(path = %path.display(), "ignoring an entry that is not a partition directory");
                }
            }
        }
        let mut partitions = Vec::with_capacity(found.len());
        let mut opened = BTreeMap::new();
        for (partition, dir) in found {
            let point = recovery_points.get(&partition).copied();
            let check = self.batch_check();
            let (mut report, files) =
                recover_partition(&self.fs, &partition, &dir, point, check, &mut stats)?;
            report.replica_state = match stored_states.get(&partition) {
                Some(state) => Some(*state),
                None => read_legacy_replica_state(&self.fs, &dir)?,
            };
            if let Some(state) = report.replica_state {
                replica_states.insert(partition.clone(), state);
            }
            stats.partitions += 1;
            stats.segments += report.segments.len();
            partitions.push(report);
            opened.insert(partition, Arc::new(Mutex::new(files)));
        }
        *lock(&self.partitions) = opened;
        // A state without a partition: its deletion was cut short by a crash. Dropped on disk
        // now, so that a partition created under that name never inherits it.
        let mut written = lock(&self.replica_states);
        if stored_states
            .keys()
            .any(|partition| !replica_states.contains_key(partition))
        {
            self.replace_replica_states(&mut written, replica_states)?;
        } else {
            *written = replica_states;
        }
        drop(written);
        // Everything reported is durable now: the next start need scan none of it (and a
        // point of a partition whose directory is gone is dropped).
        self.write_recovery_points()?;
        Ok((
            Recovered {
                metadata,
                partitions,
            },
            stats,
        ))
    }

    /// How this storage's scans check a batch (see [`BatchCheck`]).
    fn batch_check(&self) -> BatchCheck {
        #[cfg(feature = "defects")]
        if self.has_defect(myelin_core::defects::Defect::SkipRecoveryCrc) {
            return validate_without_crc;
        }
        validate
    }
}

/// Recovers one partition directory: its report for the core and its open files.
fn recover_partition<F: FileSystem>(
    fs: &F,
    partition: &TopicPartition,
    dir: &Path,
    point: Option<RecoveryPoint>,
    check: BatchCheck,
    stats: &mut RecoveryStats,
) -> StorageResult<(RecoveredPartition, PartitionFiles<F::File>)> {
    let base_offsets = list_segments(fs, partition, dir, stats)?;
    let mut segments = BTreeMap::new();
    let mut reports = Vec::with_capacity(base_offsets.len().max(1));
    let mut active = None;
    for (number, &base_offset) in base_offsets.iter().enumerate() {
        let is_last = number + 1 == base_offsets.len();
        let trusted = match point {
            Some(point) if base_offset < point.segment_base_offset => Trusted::Whole,
            Some(point) if base_offset == point.segment_base_offset => {
                Trusted::Prefix(u64::from(point.position))
            }
            _ => Trusted::Nothing,
        };
        let recovered = match trusted {
            Trusted::Nothing => {
                recover_segment(fs, partition, dir, base_offset, is_last, check, stats)?
            }
            trusted => recover_trusted_segment(
                fs,
                partition,
                dir,
                base_offset,
                is_last,
                trusted,
                check,
                stats,
            )?,
        };
        segments.insert(
            base_offset,
            SegmentEntry {
                log: Arc::clone(&recovered.log),
                size_bytes: recovered.size_bytes,
            },
        );
        if let Some((offset_index, time_index)) = recovered.indexes {
            active = Some(ActiveState {
                // Recovery makes everything it reports durable.
                files: Arc::new(ActiveSegment::new(
                    base_offset,
                    recovered.log,
                    offset_index,
                    time_index,
                    SegmentPaths::new(dir, base_offset),
                    recovered.size_bytes,
                )),
                index_entries: recovered.report.batches.len() as u64,
            });
        }
        reports.push(recovered.report);
    }
    let active = match active {
        Some(active) => active,
        None => {
            // The core rebuilds a partition with no segment as an empty log at offset 0 and
            // appends there without asking first: give it that segment.
            tracing::warn!(%partition, "partition directory has no segment; creating an empty one at offset 0");
            let (entry, active) = create_segment(fs, dir, 0)?;
            segments.insert(0, entry);
            reports.push(RecoveredSegment {
                base_offset: 0,
                batches: Vec::new(),
            });
            active
        }
    };
    // Stray removals, truncations and a created segment: make the directory itself durable.
    sync_directory(fs, dir)?;
    let files = PartitionFiles {
        partition: partition.clone(),
        dir: dir.to_path_buf(),
        segments,
        active,
        deleted: false,
    };
    let report = RecoveredPartition {
        partition: partition.clone(),
        segments: reports,
        // Filled in by the caller, from the node-wide file (or a legacy one).
        replica_state: None,
        deleted_below: read_json_file(fs, &dir.join(DELETED_BELOW_FILE))?,
    };
    Ok((report, files))
}

/// In a partition's directory: the offset below which DeleteRecords deleted its records
/// (a JSON number), replaced whole and durably each time it moves.
pub(super) const DELETED_BELOW_FILE: &str = "deleted-below.json";

/// The replica state a data directory written before `REPLICA_STATES_FILE` keeps in the
/// partition's directory, if any. A file that does not parse is an error, not a fresh
/// start: forgetting a vote could elect two leaders in one epoch.
fn read_legacy_replica_state<F: FileSystem>(
    fs: &F,
    dir: &Path,
) -> StorageResult<Option<ReplicaState>> {
    read_json_file(fs, &dir.join(LEGACY_REPLICA_STATE_FILE))
}

/// The base offsets of the segments that have a `.log`, in order. Index files without one
/// are removed; unknown files are left alone.
fn list_segments<F: FileSystem>(
    fs: &F,
    partition: &TopicPartition,
    dir: &Path,
    stats: &mut RecoveryStats,
) -> StorageResult<Vec<i64>> {
    let mut logs = std::collections::BTreeSet::new();
    let mut index_files = Vec::new();
    let entries = fs
        .read_dir(dir)
        .map_err(io_error(|| format!("list {}", dir.display())))?;
    for entry in entries {
        let path = dir.join(&entry.name);
        let is_file = entry.kind == EntryKind::File;
        let parsed = entry
            .name
            .to_str()
            .and_then(parse_segment_file_name)
            .filter(|_| is_file);
        match parsed {
            Some((base_offset, SegmentFileKind::Log)) => {
                logs.insert(base_offset);
            }
            Some((base_offset, _)) => index_files.push((base_offset, path)),
            None if entry.name == LEGACY_REPLICA_STATE_FILE || entry.name == DELETED_BELOW_FILE => {
            }
            // Written aside when a crash came: the old offset stands.
            None if entry.name.to_str() == Some(&temporary_name(DELETED_BELOW_FILE)) => {
                fs.remove_file(&path)
                    .map_err(io_error(|| format!("remove {}", path.display())))?;
            }
            // A replica state written aside when a crash came: the rename never happened,
            // so the old state stands.
            None if entry.name.to_str() == Some(&temporary_name(LEGACY_REPLICA_STATE_FILE)) => {
                fs.remove_file(&path)
                    .map_err(io_error(|| format!("remove {}", path.display())))?;
            }
            None => tracing::warn!(%partition, path = %path.display(), "ignoring an unknown file"),
        }
    }
    for (base_offset, path) in index_files {
        if !logs.contains(&base_offset) {
            tracing::warn!(%partition, path = %path.display(), "removing an index file whose log is gone");
            fs.remove_file(&path)
                .map_err(io_error(|| format!("remove {}", path.display())))?;
            stats.stray_files_removed += 1;
        }
    }
    Ok(logs.into_iter().collect())
}

/// One segment after recovery.
struct SegmentRecovery<H> {
    report: RecoveredSegment,
    log: Arc<SegmentLog<H>>,
    size_bytes: u64,
    /// The index files, kept open for the last segment only (it takes appends).
    indexes: Option<(H, H)>,
}

impl<H> SegmentRecovery<H> {
    fn new(
        base_offset: i64,
        batches: Vec<RecoveredBatch>,
        path: PathBuf,
        log: H,
        size_bytes: u64,
        indexes: Option<(H, H)>,
    ) -> Self {
        SegmentRecovery {
            report: RecoveredSegment {
                base_offset,
                batches,
            },
            log: Arc::new(SegmentLog { path, file: log }),
            size_bytes,
            indexes,
        }
    }
}

fn recover_segment<F: FileSystem>(
    fs: &F,
    partition: &TopicPartition,
    dir: &Path,
    base_offset: i64,
    is_last: bool,
    check: BatchCheck,
    stats: &mut RecoveryStats,
) -> StorageResult<SegmentRecovery<F::File>> {
    let paths = SegmentPaths::new(dir, base_offset);
    let log = open_read_write(fs, &paths.log, false)?;
    let log_bytes = log
        .len()
        .map_err(io_error(|| format!("stat {}", paths.log.display())))?;
    // Missing index files are created empty: an empty index is simply inconsistent with a
    // non-empty log, and right for an empty one.
    let offset_index = open_index(fs, &paths.offset_index)?;
    let time_index = open_index(fs, &paths.time_index)?;
    let indexed = read_indexes(&paths, &offset_index, &time_index, log_bytes)?.into_whole();

    if !is_last {
        let from_indexes = match &indexed {
            Ok(entries) => batches_from_index(
                &log,
                &paths.log,
                base_offset,
                log_bytes,
                entries,
                EntriesPastEnd::Refused,
            )?,
            Err(reason) => Err(reason.clone()),
        };
        match from_indexes {
            Ok(batches) => {
                // Loaded without a scan. The log may still hold appends that were only in the
                // page cache when the process died: make them durable before reporting them.
                sync_data(&log, &paths.log)?;
                return Ok(SegmentRecovery::new(
                    base_offset,
                    batches,
                    paths.log,
                    log,
                    log_bytes,
                    None,
                ));
            }
            Err(reason) => tracing::warn!(
                %partition,
                segment = base_offset,
                %reason,
                "segment indexes are unusable; rebuilding them from a scan of the log"
            ),
        }
    }

    let scan = scan_segment(&log, &paths.log, base_offset, log_bytes, check)?;
    stats.bytes_scanned += log_bytes;
    cut_invalid_tail(
        partition,
        base_offset,
        &log,
        &paths.log,
        log_bytes,
        &scan,
        stats,
    )?;
    log.sync_all()
        .map_err(io_error(|| format!("fsync {}", paths.log.display())))?;

    let scanned = index_entries_of(&scan.batches, base_offset);
    // Indexes that already describe the scanned batches are kept (with the timestamps the
    // appends wrote); anything else is rewritten from the scan.
    let agree = indexed
        .as_ref()
        .is_ok_and(|on_disk| indexes_describe(on_disk, &scanned));
    if agree {
        sync_data(&offset_index, &paths.offset_index)?;
        sync_data(&time_index, &paths.time_index)?;
    } else {
        // (A non-last segment's reason was logged above; a truncation's too.)
        if is_last && scan.stop_reason.is_none() {
            let reason = indexed
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| "they do not describe the batches in the log".to_string());
            tracing::warn!(%partition, segment = base_offset, %reason, "rewriting the active segment's indexes");
        }
        write_indexes(&paths, &offset_index, &time_index, &scanned)?;
        stats.indexes_rebuilt += 1;
    }
    Ok(SegmentRecovery::new(
        base_offset,
        scan.batches,
        paths.log,
        log,
        scan.valid_bytes,
        is_last.then_some((offset_index, time_index)),
    ))
}

/// How much of a segment its partition's recovery point vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trusted {
    /// Nothing: the segment lies past the recovery point, or the partition has none.
    Nothing,
    /// Its first so many bytes: the segment holds the recovery point.
    Prefix(u64),
    /// All of it: the segment lies below the recovery point.
    Whole,
}

/// A segment wholly or partly below its partition's recovery point. Below the point the
/// indexes are trusted, each entry checked against its batch's header (no CRC: reads check
/// every batch again), and any disagreement, or a log that ends before the point, stops
/// recovery with an error naming the file, the byte and the offset: synced data is damaged,
/// and nothing is cut. Index files that are missing altogether are rebuilt from a scan, which
/// must then pass the point. Past the point, the bytes are scanned and a torn tail is cut,
/// as `recover_segment` does.
// Each argument is a different input of one segment's recovery (the same ones as
// `recover_segment`'s, plus the trusted prefix); a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn recover_trusted_segment<F: FileSystem>(
    fs: &F,
    partition: &TopicPartition,
    dir: &Path,
    base_offset: i64,
    is_last: bool,
    trusted: Trusted,
    check: BatchCheck,
    stats: &mut RecoveryStats,
) -> StorageResult<SegmentRecovery<F::File>> {
    let paths = SegmentPaths::new(dir, base_offset);
    let indexes_missing = !fs.exists(&paths.offset_index) || !fs.exists(&paths.time_index);
    let log = open_read_write(fs, &paths.log, false)?;
    let log_bytes = log
        .len()
        .map_err(io_error(|| format!("stat {}", paths.log.display())))?;
    // A whole segment's index entries were all synced at its roll and must end with its
    // log. In the point's segment the entries past the point were never synced: a crash may
    // have torn them into anything (zeroed, an entry says 0), so they are not read.
    let (trusted_bytes, entries_past_point) = match trusted {
        Trusted::Prefix(bytes) => (bytes, EntriesPastEnd::Ignored),
        Trusted::Whole | Trusted::Nothing => (log_bytes, EntriesPastEnd::Refused),
    };
    let damaged = |path: &Path, position: u64, offset: i64, reason: String| {
        StorageError::DamagedBelowRecoveryPoint {
            path: path.display().to_string(),
            position,
            offset,
            recovery_point: trusted_bytes,
            reason,
        }
    };
    let offset_index = open_index(fs, &paths.offset_index)?;
    let time_index = open_index(fs, &paths.time_index)?;
    let decoded = read_indexes(&paths, &offset_index, &time_index, log_bytes)?;
    // Only the entries below the point must decode.
    let usable = match &decoded.damage {
        Some(reason) if entries_past_point == EntriesPastEnd::Refused => Err(reason.clone()),
        _ => Ok(decoded.entries.as_slice()),
    };

    // The batches below the point, from the indexes, or from a scan when they are missing.
    let below = match (usable, indexes_missing) {
        (Ok(entries), false) => {
            match (log_bytes >= trusted_bytes)
                .then(|| {
                    batches_from_index(
                        &log,
                        &paths.log,
                        base_offset,
                        trusted_bytes,
                        entries,
                        entries_past_point,
                    )
                })
                .transpose()?
            {
                Some(Ok(batches)) => Ok(batches),
                Some(Err(reason)) => Err(match &decoded.damage {
                    Some(damage) => format!("{reason} (and {damage})"),
                    None => reason,
                }),
                None => Err(format!(
                    "the log ends at byte {log_bytes}, before the recovery point"
                )),
            }
        }
        (Err(reason), false) => Err(reason),
        (_, true) => {
            tracing::warn!(%partition, segment = base_offset, "index files are missing; rebuilding them from a scan of the log");
            Err("index files are missing".to_string())
        }
    };
    let below = match below {
        Ok(batches) => {
            stats.bytes_trusted += trusted_bytes;
            batches
        }
        Err(index_reason) => {
            // Find out which file is damaged: a scan of the log says whether its batches
            // below the point are whole; if they are, the indexes are what is wrong.
            let scan = scan_segment(&log, &paths.log, base_offset, log_bytes, check)?;
            stats.bytes_scanned += log_bytes;
            if scan.valid_bytes < trusted_bytes {
                let reason = scan.stop_reason.unwrap_or_else(|| {
                    format!("the log ends at byte {log_bytes}, before the recovery point")
                });
                return Err(damaged(
                    &paths.log,
                    scan.valid_bytes,
                    next_offset_after(&scan.batches, base_offset),
                    reason,
                ));
            }
            let below: Vec<RecoveredBatch> = scan
                .batches
                .into_iter()
                .take_while(|batch| u64::from(batch.position) < trusted_bytes)
                .collect();
            if !indexes_missing {
                let entries = decoded.entries.as_slice();
                let first_wrong = below
                    .iter()
                    .zip(entries)
                    .position(|(batch, entry)| {
                        entry.position != batch.position
                            || i64::from(entry.relative_offset)
                                != batch.header.base_offset - base_offset
                    })
                    .unwrap_or(entries.len().min(below.len()));
                return Err(damaged(
                    &paths.offset_index,
                    (first_wrong * OFFSET_INDEX_ENTRY_BYTES) as u64,
                    below
                        .get(first_wrong)
                        .map_or(base_offset, |batch| batch.header.base_offset),
                    index_reason,
                ));
            }
            below
        }
    };

    // Past the point: scanned, and cut at the first invalid batch, as any unsynced tail.
    let tail = scan_segment_from(
        &log,
        &paths.log,
        base_offset,
        trusted_bytes,
        next_offset_after(&below, base_offset),
        log_bytes,
        check,
    )?;
    stats.bytes_scanned += log_bytes - trusted_bytes;
    cut_invalid_tail(
        partition,
        base_offset,
        &log,
        &paths.log,
        log_bytes,
        &tail,
        stats,
    )?;
    if tail.valid_bytes != trusted_bytes || tail.stop_reason.is_some() {
        // Bytes past the point may have been only in the page cache when the process died.
        log.sync_all()
            .map_err(io_error(|| format!("fsync {}", paths.log.display())))?;
    }
    let mut batches = below;
    batches.extend(tail.batches);
    let entries = index_entries_of(&batches, base_offset);
    let agree = !indexes_missing
        && decoded.damage.is_none()
        && indexes_describe(&decoded.entries, &entries);
    if agree {
        if tail.valid_bytes != trusted_bytes {
            sync_data(&offset_index, &paths.offset_index)?;
            sync_data(&time_index, &paths.time_index)?;
        }
    } else {
        // Entries past the point that were not synced, or missing index files.
        write_indexes(&paths, &offset_index, &time_index, &entries)?;
        stats.indexes_rebuilt += 1;
    }
    Ok(SegmentRecovery::new(
        base_offset,
        batches,
        paths.log,
        log,
        tail.valid_bytes,
        is_last.then_some((offset_index, time_index)),
    ))
}

/// Cuts the log where `scan` stopped, if it stopped before the end (the scan only ever
/// covers bytes past the recovery point).
fn cut_invalid_tail<H: FsFile>(
    partition: &TopicPartition,
    base_offset: i64,
    log: &H,
    path: &Path,
    log_bytes: u64,
    scan: &ScanOutcome,
    stats: &mut RecoveryStats,
) -> StorageResult<()> {
    let Some(reason) = &scan.stop_reason else {
        return Ok(());
    };
    tracing::warn!(
        %partition,
        segment = base_offset,
        position = scan.valid_bytes,
        bytes_dropped = log_bytes - scan.valid_bytes,
        %reason,
        "truncating the segment at its first invalid batch"
    );
    log.set_len(scan.valid_bytes).map_err(io_error(|| {
        format!("truncate {} to {}", path.display(), scan.valid_bytes)
    }))?;
    stats.segments_truncated += 1;
    stats.bytes_truncated += log_bytes - scan.valid_bytes;
    Ok(())
}

/// The index entries that describe `batches`.
fn index_entries_of(batches: &[RecoveredBatch], base_offset: i64) -> Vec<IndexEntry> {
    batches
        .iter()
        .map(|batch| IndexEntry {
            relative_offset: relative_offset(batch.header.base_offset, base_offset),
            position: batch.position,
            max_timestamp: batch.header.max_timestamp,
        })
        .collect()
}

/// Whether the indexes on disk hold exactly `entries` (timestamps aside: the appends wrote
/// those, and they are kept).
fn indexes_describe(on_disk: &[IndexEntry], entries: &[IndexEntry]) -> bool {
    on_disk.len() == entries.len()
        && on_disk.iter().zip(entries).all(|(on_disk, found)| {
            on_disk.relative_offset == found.relative_offset && on_disk.position == found.position
        })
}

/// The offset after the last of `batches`, or `base_offset` when there are none.
fn next_offset_after(batches: &[RecoveredBatch], base_offset: i64) -> i64 {
    batches.last().map_or(base_offset, |batch| {
        batch
            .header
            .base_offset
            .saturating_add(batch.header.offset_count())
    })
}

fn open_index<F: FileSystem>(fs: &F, path: &Path) -> StorageResult<F::File> {
    fs.open(path, OpenMode::ReadWriteCreate)
        .map_err(io_error(|| format!("open {}", path.display())))
}

fn sync_data<H: FsFile>(file: &H, path: &Path) -> StorageResult<()> {
    file.sync_data()
        .map_err(io_error(|| format!("fsync {}", path.display())))
}

/// A batch's offset relative to its segment's base. Only called on batches the scan or the
/// index check accepted, which are at most 2^32 - 1 above the base.
fn relative_offset(batch_base_offset: i64, segment_base_offset: i64) -> u32 {
    u32::try_from(batch_base_offset - segment_base_offset).unwrap_or(u32::MAX)
}

/// Reads and decodes both index files: the whole, agreeing entries from their start, and
/// why the rest (if any) is unusable.
fn read_indexes<H: FsFile>(
    paths: &SegmentPaths,
    offset_index: &H,
    time_index: &H,
    log_bytes: u64,
) -> StorageResult<DecodedIndexes> {
    let unusable = |reason: String| DecodedIndexes {
        entries: Vec::new(),
        damage: Some(reason),
    };
    // Every batch is at least a header long, which bounds the entries a log can need (and
    // what we read of a garbage index).
    let entries_max = log_bytes / BATCH_HEADER_BYTES as u64;
    let offset_bytes = match read_whole(
        offset_index,
        &paths.offset_index,
        entries_max * OFFSET_INDEX_ENTRY_BYTES as u64,
    )? {
        Ok(bytes) => bytes,
        Err(reason) => return Ok(unusable(format!("offset index: {reason}"))),
    };
    let time_bytes = match read_whole(
        time_index,
        &paths.time_index,
        entries_max * TIME_INDEX_ENTRY_BYTES as u64,
    )? {
        Ok(bytes) => bytes,
        Err(reason) => return Ok(unusable(format!("time index: {reason}"))),
    };
    Ok(decode_index_prefix(&offset_bytes, &time_bytes))
}

/// A whole file's bytes, or `Ok(Err(reason))` when it is longer than `bytes_max`.
fn read_whole<H: FsFile>(
    file: &H,
    path: &Path,
    bytes_max: u64,
) -> StorageResult<Result<Vec<u8>, String>> {
    let length = file
        .len()
        .map_err(io_error(|| format!("stat {}", path.display())))?;
    if length > bytes_max {
        return Ok(Err(format!(
            "{length} bytes, more than its log could need ({bytes_max})"
        )));
    }
    let mut bytes = vec![0u8; length as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(io_error(|| format!("read {}", path.display())))?;
    Ok(Ok(bytes))
}

/// Rewrites both index files to hold exactly `entries`, durably.
fn write_indexes<H: FsFile>(
    paths: &SegmentPaths,
    offset_index: &H,
    time_index: &H,
    entries: &[IndexEntry],
) -> StorageResult<()> {
    let (offset_bytes, time_bytes) = encode_indexes(entries);
    for (file, path, bytes) in [
        (offset_index, &paths.offset_index, &offset_bytes),
        (time_index, &paths.time_index, &time_bytes),
    ] {
        file.set_len(0)
            .and_then(|()| file.write_all_at(bytes, 0))
            .and_then(|()| file.sync_all())
            .map_err(io_error(|| format!("rewrite {}", path.display())))?;
    }
    Ok(())
}

/// Reads the 61-byte header at `position` (the caller checked it lies within the log).
fn read_header_at<H: FsFile>(
    log: &H,
    path: &Path,
    position: u64,
) -> StorageResult<Result<BatchHeader, String>> {
    let mut bytes = [0u8; BATCH_HEADER_BYTES];
    log.read_exact_at(&mut bytes, position)
        .map_err(io_error(|| {
            format!("read {} at {position}", path.display())
        }))?;
    Ok(read_header(&bytes).map_err(|error| error.to_string()))
}

/// What `batches_from_index` makes of entries after the one whose batch ends at `log_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntriesPastEnd {
    /// They are an error: the indexes must end with the log.
    Refused,
    /// They are not read: `log_bytes` is a recovery point, and what lies past it is scanned.
    Ignored,
}

/// The batches of the first `log_bytes` of a segment, as its indexes describe them, each
/// checked against the header in the log. `Ok(Err(reason))` at the first disagreement.
fn batches_from_index<H: FsFile>(
    log: &H,
    path: &Path,
    base_offset: i64,
    log_bytes: u64,
    entries: &[IndexEntry],
    past_end: EntriesPastEnd,
) -> StorageResult<Result<Vec<RecoveredBatch>, String>> {
    let mut batches = Vec::with_capacity(entries.len());
    let mut expected_position = 0u64;
    let mut expected_offset = base_offset;
    for (number, entry) in entries.iter().enumerate() {
        if past_end == EntriesPastEnd::Ignored && expected_position == log_bytes {
            break;
        }
        if u64::from(entry.position) != expected_position {
            return Ok(Err(format!(
                "entry {number} is at position {}, but the batch before it ends at {expected_position}",
                entry.position
            )));
        }
        if base_offset.checked_add(i64::from(entry.relative_offset)) != Some(expected_offset) {
            return Ok(Err(format!(
                "entry {number} has relative offset {}, but offset {expected_offset} comes next",
                entry.relative_offset
            )));
        }
        if expected_position + BATCH_HEADER_BYTES as u64 > log_bytes {
            return Ok(Err(format!(
                "entry {number} points at {expected_position}, too close to the log's end at {log_bytes}"
            )));
        }
        let header = match read_header_at(log, path, expected_position)? {
            Ok(header) => header,
            Err(reason) => return Ok(Err(format!("entry {number}: {reason}"))),
        };
        if header.base_offset != expected_offset {
            return Ok(Err(format!(
                "entry {number}: the batch says offset {}, the index {expected_offset}",
                header.base_offset
            )));
        }
        let end = expected_position + u64::from(header.size_bytes);
        if end > log_bytes {
            return Ok(Err(format!(
                "entry {number}: the batch ends at {end}, past the log's end at {log_bytes}"
            )));
        }
        let Some(next_offset) = header.base_offset.checked_add(header.offset_count()) else {
            return Ok(Err(format!("entry {number}: offsets overflow")));
        };
        // A control batch's type (a transaction marker's commit or abort) is in its record,
        // past the header: read the whole batch, which is small.
        let control_type = if header.is_control() {
            let mut batch = vec![0u8; (header.size_bytes as usize).min(CONTROL_BATCH_READ_BYTES)];
            log.read_exact_at(&mut batch, expected_position)
                .map_err(io_error(|| {
                    format!("read {} at {expected_position}", path.display())
                }))?;
            control_record_type(&batch)
        } else {
            None
        };
        batches.push(RecoveredBatch {
            position: entry.position,
            header,
            control_type,
        });
        expected_position = end;
        expected_offset = next_offset;
    }
    if expected_position != log_bytes {
        return Ok(Err(format!(
            "the indexed batches end at {expected_position}, but the log is {log_bytes} bytes"
        )));
    }
    Ok(Ok(batches))
}

/// What a scan of a segment's log found.
#[derive(Debug)]
pub(super) struct ScanOutcome {
    pub(super) batches: Vec<RecoveredBatch>,
    /// Bytes of whole, valid batches from the start: where the log is cut.
    pub(super) valid_bytes: u64,
    /// Why the scan stopped before the end of the log, if it did.
    pub(super) stop_reason: Option<String>,
}

/// Reads a segment batch by batch from position 0, validating each whole batch with `check`
/// (lengths, CRC-32C) and offset continuity, up to the end or the first invalid batch.
pub(super) fn scan_segment<H: FsFile>(
    log: &H,
    path: &Path,
    base_offset: i64,
    log_bytes: u64,
    check: BatchCheck,
) -> StorageResult<ScanOutcome> {
    scan_segment_from(log, path, base_offset, 0, base_offset, log_bytes, check)
}

/// `scan_segment` from `start_position`, where the batch at `expected_offset` must begin;
/// `valid_bytes` counts from the start of the log.
fn scan_segment_from<H: FsFile>(
    log: &H,
    path: &Path,
    base_offset: i64,
    start_position: u64,
    expected_offset: i64,
    log_bytes: u64,
    check: BatchCheck,
) -> StorageResult<ScanOutcome> {
    let mut batches = Vec::new();
    let mut position = start_position;
    let mut expected_offset = expected_offset;
    let mut buffer = Vec::new();
    let stop_reason = loop {
        if position == log_bytes {
            break None;
        }
        let remaining = log_bytes - position;
        if remaining < BATCH_HEADER_BYTES as u64 {
            break Some(format!(
                "{remaining} bytes at the end, fewer than a batch header"
            ));
        }
        let header = match read_header_at(log, path, position)? {
            Ok(header) => header,
            Err(reason) => break Some(reason),
        };
        let size_bytes = u64::from(header.size_bytes);
        if size_bytes > remaining {
            break Some(format!(
                "a batch of {size_bytes} bytes is cut short: {remaining} bytes remain"
            ));
        }
        if position + size_bytes > SEGMENT_BYTES_MAX {
            break Some("the batch would end past the 4 GiB segment limit".to_string());
        }
        // Bounded by the file's size, checked just above.
        buffer.clear();
        buffer.resize(size_bytes as usize, 0);
        log.read_exact_at(&mut buffer, position)
            .map_err(io_error(|| {
                format!("read {} at {position}", path.display())
            }))?;
        if let Err(error) = check(&buffer) {
            break Some(error.to_string());
        }
        if header.base_offset != expected_offset {
            break Some(format!(
                "the batch is at offset {}, but offset {expected_offset} comes next",
                header.base_offset
            ));
        }
        if header.base_offset - base_offset > i64::from(u32::MAX) {
            break Some("the batch is more than 2^32 offsets above the segment base".to_string());
        }
        let Some(next_offset) = header.base_offset.checked_add(header.offset_count()) else {
            break Some("the batch's offsets overflow".to_string());
        };
        batches.push(RecoveredBatch {
            // Below 4 GiB: checked against SEGMENT_BYTES_MAX above.
            position: position as u32,
            header,
            control_type: control_record_type(&buffer),
        });
        position += size_bytes;
        expected_offset = next_offset;
    };
    Ok(ScanOutcome {
        batches,
        valid_bytes: position,
        stop_reason,
    })
}
