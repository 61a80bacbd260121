//! File-backed storage: Kafka-like segment files with offset and time indexes, group-committed
//! fsync, and a recovery that truncates a torn tail.
//!
//! This is the `Storage` the real binary runs on, and the simulator too, over its simulated
//! file system.
//! Every file-system call goes through a `storage::fs::FileSystem` (the operating system's,
//! `OsFileSystem`, unless opened with `open_on`), so that the same engine can run over a
//! simulated file system.
//! The core decides every offset, position and segment boundary; this module writes the
//! bytes where it is told, checks that "where" is the end of the active segment, and at start
//! reports what survived.
//!
//! # Layout
//! ```text
//! <data_dir>/metadata.json                 the ClusterMetadata snapshot (serde_json)
//! <data_dir>/metadata.json.tmp             a snapshot being written; removed by recovery
//! <data_dir>/recovery-points.json          each partition's recovery point (see below)
//! <data_dir>/replica-states.json           every partition's epoch and vote (see
//!                                          `replica_states`)
//! <data_dir>/topics/<topic>-<partition>/   one directory per partition (the partition
//!                                          number follows the LAST '-': topics may hold '-')
//!     00000000000000000000.log             batches back to back, base offsets patched in
//!     00000000000000000000.index           8 bytes a batch: relative offset u32 BE
//!                                          (base offset - segment base), position u32 BE
//!     00000000000000000000.timeindex       12 bytes a batch: max timestamp i64 BE,
//!                                          relative offset u32 BE
//! ```
//! Segment files are named by their base offset, zero-padded to 20 digits. Unlike Kafka's
//! sparse indexes, ours are dense: one entry per batch. That makes an index check exact
//! (entry i must point where batch i-1 ends), lets recovery report every batch header without
//! scanning the log, and costs 20 bytes a batch; lookups by offset or time happen in the core,
//! which keeps every batch's metadata in memory anyway. A segment never exceeds 4 GiB
//! (positions are u32).
//!
//! # Writing
//! `append` writes a batch at the position the core chose, which must be the active
//! segment's current size: the 8 patched base-offset bytes, then the rest straight from the
//! request's buffer (two positional writes, no copy of the records), then one entry to each
//! index. The segment joins the dirty list. `sync` takes the dirty list under a short lock,
//! releases it, and fsyncs each listed segment's log plus every partition directory that
//! gained or lost a segment file, so appends, reads and syncs overlap. The index files are not
//! fsynced by a sync: one fsync per partition instead of three is what keeps many partitions
//! from costing throughput, and recovery rebuilds index entries past the recovery point from
//! the log anyway. They are fsynced before a recovery point vouches for them (a roll, writing
//! the recovery points). Syncs run
//! one at a time, so a sync returns only once every append issued before it is durable. After
//! one failed fsync every later sync fails too: the page cache can no longer be trusted.
//!
//! # Recovery points
//! A partition's recovery point (`recovery_point`) is a segment and a byte position in it:
//! every earlier segment and the bytes before the position were durable, indexes included,
//! when the point was written. The points are written (one file, replaced durably) every
//! `CHECKPOINT_INTERVAL_BYTES` appended, at the end of recovery and at a clean shutdown. A
//! roll first makes the old active segment durable, so the point can always be "the active
//! segment, its synced bytes". A truncation, a deletion or a moved empty partition lowers or
//! drops the point on disk before it changes anything.
//!
//! # Recovery rules
//! For each partition directory, segments are taken in base-offset order.
//! - What lies below the partition's recovery point is loaded from the indexes, each entry
//!   checked against its batch's header; a disagreement, or a log that ends before the
//!   point, stops recovery (`StorageError::DamagedBelowRecoveryPoint`, naming the file, the
//!   byte and the offset): those bytes were synced, so they are damaged, and nothing is cut.
//!   Index files that are missing altogether are rebuilt from a scan, which must pass the
//!   point. In the point's segment only the entries below the point are read: those past it
//!   were never synced, and a power loss may have torn them into anything (zeroed, an entry
//!   says offset 0 at position 0), so they are rewritten from the scan of the tail. Batches are not CRC-checked there: every read checks them
//!   (`storage::read_verified`). The bytes of the point's segment past it are scanned and cut
//!   as an active segment's are (below).
//!
//! Past the recovery point (all of a partition without one, as in a data directory written
//! before recovery points):
//! - Every segment but the last is loaded from its indexes when they agree with the log:
//!   whole entries, equal counts, the same relative offsets in both, entry 0 at position 0,
//!   each next entry exactly where the previous batch (its 61-byte header read from the log)
//!   ends, contiguous offsets starting at the segment base, and the last batch ending at the
//!   log's size. Otherwise (missing, truncated or stale indexes) the segment is scanned like
//!   the last one and both indexes are rewritten.
//! - The last (active) segment is always scanned from position 0, each whole batch checked
//!   with `batch::validate` (lengths, CRC-32C) and for offset continuity (the first at the
//!   segment base, each next one at the previous last offset + 1). At the first batch that is
//!   cut short, has a bad header or length, fails its CRC or breaks continuity, the log is
//!   truncated (and fsynced) there, and the indexes are rewritten from the scan unless they
//!   already describe exactly the batches kept.
//! - A non-last segment whose scan stops early is truncated the same way; later segments are
//!   kept, not deleted: storage reports what is on disk and valid, and the core decides what
//!   an offset gap between segments means (it refuses such a log rather than guess).
//! - Stray index files without a `.log` are deleted; other unknown files are left alone.
//! - A partition directory with no segment gets an empty segment at offset 0, because the
//!   core rebuilds a partition with no recovered segment as an empty log whose active segment
//!   is at 0, and appends to it without another `CreatePartition`.
//! - Everything reported is fsynced before `recover` returns, so that batches which were
//!   only in the page cache when the process died are durable before the core counts them as
//!   committed.
//!
//! Invariant: recovery never drops a batch that was synced. Only bytes after the last valid
//! batch of a segment are dropped, and a synced batch is whole, CRC-valid and contiguous with
//! the synced batches before it, so every scan passes it. Garbage on disk (random bytes, empty
//! or partial indexes) is never a panic: at worst it is a truncation of what was not synced.
//!
//! Concurrency: a map of partitions under one mutex, each partition under its own mutex; the
//! map lock is held only to find a partition, a partition's lock only for bookkeeping and
//! an append's writes. Readers clone an `Arc` of the segment's file and read without locks,
//! so a concurrent `delete_segment` cannot break a read in progress. Lock order: the recovery
//! points' lock (held across a truncation or deletion) before the replica states' and the
//! map's; the map lock is
//! never held while taking another; a partition's lock may be held while taking the dirty
//! list's; `sync` holds only its own serializing lock while it fsyncs.

mod layout;
mod recovery;
mod recovery_point;
mod replica_states;
#[cfg(test)]
mod tests;

use super::fs::{EntryKind, FileSystem, FsFile, OpenMode, OsFileSystem};
use super::{Recovered, Storage, StorageError, StorageResult};
use bytes::Bytes;
use layout::{
    check_partition, encode_offset_entry, encode_time_entry, invalid_input,
    parse_partition_dir_name, parse_segment_file_name, partition_dir_name, SegmentFileKind,
    SegmentPaths, OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES,
};
use myelin_core::api::{AppendedBatch, ReadChunk};
use myelin_core::batch::{read_header, stored_header_prefix};
use myelin_core::log::Truncation;
use myelin_core::metadata::{ClusterMetadata, TopicPartition};
use myelin_core::replication::ReplicaState;
use recovery_point::{
    encode_recovery_points, RecoveryPoint, RecoveryPoints, CHECKPOINT_INTERVAL_BYTES,
    RECOVERY_POINTS_FILE,
};
use replica_states::{encode_replica_states, ReplicaStates, REPLICA_STATES_FILE};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

const METADATA_FILE: &str = "metadata.json";
const TOPICS_DIR: &str = "topics";
/// Largest size of a segment: positions inside it are u32.
const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// Segment files under a data directory, on file system `F` (the operating system's unless
/// told otherwise). See the module doc.
pub struct FileStorage<F: FileSystem = OsFileSystem> {
    /// Every file-system operation goes through it (see `storage::fs`).
    fs: F,
    data_dir: PathBuf,
    topics_dir: PathBuf,
    partitions: Mutex<BTreeMap<TopicPartition, PartitionHandle<F::File>>>,
    dirty: Mutex<DirtySet<F::File>>,
    /// Held for a whole sync: syncs run one at a time (see `sync`).
    sync_serial: Mutex<()>,
    /// Set by the first failed fsync; every later sync fails.
    sync_failed: AtomicBool,
    /// Held while a metadata snapshot is written: one writer of the temporary file at a time.
    metadata_serial: Mutex<()>,
    /// The recovery points as last written to disk. Held while new ones are computed and
    /// written, and by a truncation or deletion for as long as it changes a partition, so
    /// that no point above what a partition holds ever reaches the disk.
    /// Lock order: this lock, then the map's, then a partition's.
    recovery_points: Mutex<RecoveryPoints>,
    /// Bytes appended since the recovery points were last written (see `sync`).
    appended_since_checkpoint: AtomicU64,
    /// The replica states as last written to disk; held while new ones are written.
    replica_states: Mutex<ReplicaStates>,
    /// The deliberate bug this storage carries (see `with_defect`).
    #[cfg(feature = "defects")]
    defect: Option<myelin_core::defects::Defect>,
}

/// A segment's `.log` file. Shared with readers, so that a deleted segment stays readable by
/// a read already under way (the open file outlives its directory entry). `H` is the file
/// system's file handle, as in the structs below.
struct SegmentLog<H> {
    path: PathBuf,
    file: H,
}

/// A segment as the partition tracks it.
struct SegmentEntry<H> {
    log: Arc<SegmentLog<H>>,
    /// Bytes of whole batches in the log: where the next append goes (active segment).
    size_bytes: u64,
}

/// The files of the segment that takes appends.
struct ActiveSegment<H> {
    base_offset: i64,
    log: Arc<SegmentLog<H>>,
    offset_index: H,
    time_index: H,
    paths: SegmentPaths,
    /// True while this segment waits in the dirty list; changed only under the dirty lock.
    dirty: AtomicBool,
    /// Bytes of whole batches written to the log (index entries included), set after the
    /// writes: what a sync that starts now covers.
    written_bytes: AtomicU64,
    /// Bytes of the log known durable (their index entries are made durable before a
    /// recovery point is written): the partition's recovery point while this segment is
    /// active (every earlier segment is durable whole).
    synced_bytes: AtomicU64,
}

impl<H> ActiveSegment<H> {
    /// A segment whose first `durable_bytes` are already written and durable.
    fn new(
        base_offset: i64,
        log: Arc<SegmentLog<H>>,
        offset_index: H,
        time_index: H,
        paths: SegmentPaths,
        durable_bytes: u64,
    ) -> Self {
        ActiveSegment {
            base_offset,
            log,
            offset_index,
            time_index,
            paths,
            dirty: AtomicBool::new(false),
            written_bytes: AtomicU64::new(durable_bytes),
            synced_bytes: AtomicU64::new(durable_bytes),
        }
    }
}

struct ActiveState<H> {
    files: Arc<ActiveSegment<H>>,
    /// Entries in each index: the number of batches in the active segment.
    index_entries: u64,
}

/// One partition's open files.
struct PartitionFiles<H> {
    partition: TopicPartition,
    dir: PathBuf,
    /// Every segment by base offset, the active one included (it is the last).
    segments: BTreeMap<i64, SegmentEntry<H>>,
    active: ActiveState<H>,
    /// Set by `delete_partition`, for a caller that found the partition just before.
    deleted: bool,
}

/// A partition's files, shared by the map and whoever works on the partition.
type PartitionHandle<H> = Arc<Mutex<PartitionFiles<H>>>;

/// What the next sync must make durable.
struct DirtySet<H> {
    segments: Vec<Arc<ActiveSegment<H>>>,
    /// Partition directories whose entries changed (segment files created or removed).
    directories: BTreeSet<PathBuf>,
}

// By hand: a derive would require `H: Default`, which file handles are not.
impl<H> Default for DirtySet<H> {
    fn default() -> Self {
        DirtySet {
            segments: Vec::new(),
            directories: BTreeSet::new(),
        }
    }
}

/// Locks a mutex, ignoring poisoning: no critical section here leaves its data half-changed
/// when it panics, since none of them panics between two related writes.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_error(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> StorageError {
    move |source| StorageError::io(context(), source)
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
fn sync_directory<F: FileSystem>(fs: &F, dir: &Path) -> StorageResult<()> {
    fs.sync_dir(dir)
        .map_err(io_error(|| format!("fsync directory {}", dir.display())))
}

fn open_read_write<F: FileSystem>(fs: &F, path: &Path, create_new: bool) -> StorageResult<F::File> {
    let mode = if create_new {
        OpenMode::CreateNew
    } else {
        OpenMode::ReadWrite
    };
    fs.open(path, mode)
        .map_err(io_error(|| format!("open {}", path.display())))
}

/// A whole file's bytes, read through `file` (which the caller holds open).
fn read_all<H: FsFile>(file: &H) -> io::Result<Vec<u8>> {
    let length = file.len()?;
    let length = usize::try_from(length).map_err(io::Error::other)?;
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// Creates the three empty files of a new segment; it becomes the partition's active one.
/// The caller makes the directory entries durable.
// The pair is unpacked by every caller at once; a struct for it would only be renamed.
#[allow(clippy::type_complexity)]
fn create_segment<F: FileSystem>(
    fs: &F,
    dir: &Path,
    base_offset: i64,
) -> StorageResult<(SegmentEntry<F::File>, ActiveState<F::File>)> {
    let paths = SegmentPaths::new(dir, base_offset);
    let log = Arc::new(SegmentLog {
        file: open_read_write(fs, &paths.log, true)?,
        path: paths.log.clone(),
    });
    let offset_index = open_read_write(fs, &paths.offset_index, true)?;
    let time_index = open_read_write(fs, &paths.time_index, true)?;
    let entry = SegmentEntry {
        log: Arc::clone(&log),
        size_bytes: 0,
    };
    let active = ActiveState {
        files: Arc::new(ActiveSegment::new(
            base_offset,
            log,
            offset_index,
            time_index,
            paths,
            0,
        )),
        index_entries: 0,
    };
    Ok((entry, active))
}

/// Where `active`'s durable bytes end: the partition's recovery point.
fn recovery_point_of<H>(active: &ActiveState<H>) -> RecoveryPoint {
    let synced_bytes = active.files.synced_bytes.load(Ordering::Acquire);
    RecoveryPoint {
        segment_base_offset: active.files.base_offset,
        // Segments stay below 4 GiB (see `append`); were one not to, a lower point is safe.
        position: u32::try_from(synced_bytes).unwrap_or(0),
    }
}

/// Makes everything written to `segment` durable, indexes and directory entry included.
fn sync_whole_segment<F: FileSystem>(
    fs: &F,
    segment: &ActiveSegment<F::File>,
    dir: &Path,
) -> StorageResult<()> {
    let written_bytes = segment.written_bytes.load(Ordering::Acquire);
    sync_indexes(segment)?;
    // Once a sync covered the log, it covered its directory entry too.
    if segment.synced_bytes.load(Ordering::Acquire) < written_bytes {
        segment.log.file.sync_data().map_err(io_error(|| {
            format!("fsync {}", segment.paths.log.display())
        }))?;
        sync_directory(fs, dir)?;
        segment
            .synced_bytes
            .fetch_max(written_bytes, Ordering::Release);
    }
    Ok(())
}

/// Makes a segment's index entries durable (`sync` leaves them to the page cache).
fn sync_indexes<H: FsFile>(segment: &ActiveSegment<H>) -> StorageResult<()> {
    for (file, path) in [
        (&segment.offset_index, &segment.paths.offset_index),
        (&segment.time_index, &segment.paths.time_index),
    ] {
        file.sync_data()
            .map_err(io_error(|| format!("fsync {}", path.display())))?;
    }
    Ok(())
}

/// Removes a segment's three files; index files that are already gone are no error.
fn remove_segment_files<F: FileSystem>(fs: &F, dir: &Path, base_offset: i64) -> StorageResult<()> {
    let paths = SegmentPaths::new(dir, base_offset);
    fs.remove_file(&paths.log)
        .map_err(io_error(|| format!("remove {}", paths.log.display())))?;
    for path in [&paths.offset_index, &paths.time_index] {
        match fs.remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(StorageError::io(
                    format!("remove {}", path.display()),
                    error,
                ))
            }
        }
    }
    Ok(())
}

/// Every segment log under data directory `data_dir` on `fs`, by partition and base offset,
/// found by the names recovery looks for. For observers that read what a data directory
/// holds without opening it as storage (the simulator's checkers, after a power loss).
pub fn segment_logs<F: FileSystem>(
    fs: &F,
    data_dir: &Path,
) -> io::Result<BTreeMap<TopicPartition, BTreeMap<i64, PathBuf>>> {
    let topics_dir = data_dir.join(TOPICS_DIR);
    let mut logs = BTreeMap::new();
    for entry in fs.read_dir(&topics_dir)? {
        let partition = entry.name.to_str().and_then(parse_partition_dir_name);
        let Some(partition) = partition.filter(|_| entry.kind == EntryKind::Dir) else {
            continue;
        };
        let dir = topics_dir.join(&entry.name);
        let mut segments = BTreeMap::new();
        for file in fs.read_dir(&dir)? {
            let parsed = file.name.to_str().and_then(parse_segment_file_name);
            if let (Some((base_offset, SegmentFileKind::Log)), EntryKind::File) =
                (parsed, file.kind)
            {
                segments.insert(base_offset, dir.join(&file.name));
            }
        }
        logs.insert(partition, segments);
    }
    Ok(logs)
}

impl FileStorage<OsFileSystem> {
    /// Opens (creating if missing) a data directory on the operating system's file system.
    /// Call `recover` before anything else: the partitions on disk are opened there.
    pub fn open(data_dir: &Path) -> StorageResult<FileStorage> {
        Self::open_on(OsFileSystem, data_dir)
    }
}

impl<F: FileSystem> FileStorage<F> {
    /// Opens (creating if missing) a data directory on file system `fs`. Call `recover`
    /// before anything else: the partitions on disk are opened there.
    pub fn open_on(fs: F, data_dir: &Path) -> StorageResult<FileStorage<F>> {
        let topics_dir = data_dir.join(TOPICS_DIR);
        // Every directory `create_dir_all` is about to make: each one's entry is durable
        // only once its parent is synced (a data dir under new ancestors would otherwise
        // vanish at a power loss, synced batches and all).
        let mut created = Vec::new();
        let mut missing = Some(topics_dir.as_path());
        while let Some(dir) = missing.filter(|dir| !dir.as_os_str().is_empty() && !fs.exists(dir)) {
            created.push(dir.to_path_buf());
            missing = dir.parent();
        }
        fs.create_dir_all(&topics_dir).map_err(io_error(|| {
            format!("create directory {}", topics_dir.display())
        }))?;
        sync_directory(&fs, data_dir)?;
        for dir in &created {
            let parent = dir
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            sync_directory(&fs, parent)?;
        }
        Ok(FileStorage {
            fs,
            data_dir: data_dir.to_path_buf(),
            topics_dir,
            partitions: Mutex::new(BTreeMap::new()),
            dirty: Mutex::new(DirtySet::default()),
            sync_serial: Mutex::new(()),
            sync_failed: AtomicBool::new(false),
            metadata_serial: Mutex::new(()),
            recovery_points: Mutex::new(RecoveryPoints::new()),
            appended_since_checkpoint: AtomicU64::new(0),
            replica_states: Mutex::new(ReplicaStates::new()),
            #[cfg(feature = "defects")]
            defect: None,
        })
    }

    /// This storage with a deliberate bug (feature `defects`, for the simulator): the
    /// storage defects of `myelin_core::defects` act here; any other is ignored. Per
    /// storage, not global: one simulator process runs many nodes.
    #[cfg(feature = "defects")]
    pub fn with_defect(mut self, defect: Option<myelin_core::defects::Defect>) -> Self {
        self.defect = defect;
        self
    }

    /// Whether this storage carries `defect`.
    #[cfg(feature = "defects")]
    fn has_defect(&self, defect: myelin_core::defects::Defect) -> bool {
        self.defect == Some(defect)
    }

    /// The data directory this storage lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn partition_dir(&self, partition: &TopicPartition) -> PathBuf {
        self.topics_dir.join(partition_dir_name(partition))
    }

    /// The partition's files, if open. The map lock is released on return.
    fn partition_files(
        &self,
        partition: &TopicPartition,
    ) -> StorageResult<PartitionHandle<F::File>> {
        lock(&self.partitions)
            .get(partition)
            .cloned()
            .ok_or_else(|| StorageError::UnknownPartition(partition.clone()))
    }

    fn mark_directory_dirty(&self, dir: &Path) {
        #[cfg(feature = "defects")]
        if self.has_defect(myelin_core::defects::Defect::SkipDirectoryFsync) {
            return;
        }
        lock(&self.dirty).directories.insert(dir.to_path_buf());
    }

    /// Reads and parses `metadata.json`; a leftover temporary file is removed.
    fn recover_metadata(&self) -> StorageResult<Option<ClusterMetadata>> {
        self.remove_unfinished_replacement(METADATA_FILE)?;
        read_json_file(&self.fs, &self.data_dir.join(METADATA_FILE))
    }

    /// Removes the temporary file a crash left while `name` was being replaced
    /// (`replace_file`): the rename never happened, so the previous contents hold.
    fn remove_unfinished_replacement(&self, name: &str) -> StorageResult<()> {
        let temp_path = self.data_dir.join(temporary_name(name));
        match self.fs.remove_file(&temp_path) {
            Ok(()) => {
                tracing::warn!(path = %temp_path.display(), "removed an unfinished replacement");
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(StorageError::io(
                format!("remove {}", temp_path.display()),
                error,
            )),
        }
    }

    /// Writes `states` over the replica-states file (durably, unless the deliberate defect
    /// `skip-replica-state-fsync` is on), then makes them the `written` ones.
    fn replace_replica_states(
        &self,
        written: &mut ReplicaStates,
        states: ReplicaStates,
    ) -> StorageResult<()> {
        #[cfg(feature = "defects")]
        let durable = !self.has_defect(myelin_core::defects::Defect::SkipReplicaStateFsync);
        #[cfg(not(feature = "defects"))]
        let durable = true;
        let text = encode_replica_states(&states)?;
        replace_file(
            &self.fs,
            &self.data_dir,
            REPLICA_STATES_FILE,
            &text,
            durable,
        )?;
        *written = states;
        Ok(())
    }
}

impl<F: FileSystem> Storage for FileStorage<F> {
    fn recover(&self) -> StorageResult<Recovered> {
        let (recovered, stats) = self.recover_with_stats()?;
        tracing::info!(
            partitions = stats.partitions,
            segments = stats.segments,
            indexes_rebuilt = stats.indexes_rebuilt,
            segments_truncated = stats.segments_truncated,
            bytes_truncated = stats.bytes_truncated,
            "storage recovered"
        );
        Ok(recovered)
    }

    fn create_partition(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()> {
        check_partition(partition)?;
        if base_offset < 0 {
            return Err(invalid_input(
                format!("create partition {partition}"),
                format!("base offset {base_offset} is negative"),
            ));
        }
        let existing = lock(&self.partitions).get(partition).cloned();
        if let Some(existing) = existing {
            return self.recreate_empty_partition(&existing, base_offset);
        }
        let dir = self.partition_dir(partition);
        match self.fs.create_dir(&dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                // Not recovered (or recovered and deleted since): only an empty leftover is
                // reused, never files whose meaning we do not know.
                let entries = self
                    .fs
                    .read_dir(&dir)
                    .map_err(io_error(|| format!("list {}", dir.display())))?;
                if !entries.is_empty() {
                    return Err(StorageError::io(
                        format!("create partition {partition}"),
                        io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{} exists and is not empty", dir.display()),
                        ),
                    ));
                }
            }
            Err(error) => {
                return Err(StorageError::io(
                    format!("create directory {}", dir.display()),
                    error,
                ))
            }
        }
        sync_directory(&self.fs, &self.topics_dir)?;
        let (entry, active) = create_segment(&self.fs, &dir, base_offset)?;
        // Partitions are created rarely: make the segment files' existence durable now rather
        // than wait for a sync that may not come before the first append.
        sync_directory(&self.fs, &dir)?;
        let files = PartitionFiles {
            partition: partition.clone(),
            dir,
            segments: BTreeMap::from([(base_offset, entry)]),
            active,
            deleted: false,
        };
        lock(&self.partitions).insert(partition.clone(), Arc::new(Mutex::new(files)));
        Ok(())
    }

    fn delete_partition(&self, partition: &TopicPartition) -> StorageResult<()> {
        check_partition(partition)?;
        let mut persisted = lock(&self.recovery_points);
        self.lower_recovery_point(&mut persisted, partition, None)?;
        let removed = lock(&self.partitions).remove(partition);
        if let Some(files) = &removed {
            // Waits for an append in progress; the handles close when the last reader or the
            // dirty list lets go of them.
            lock(files).deleted = true;
        }
        let dir = self.partition_dir(partition);
        match self.fs.remove_dir_all(&dir) {
            Ok(()) => sync_directory(&self.fs, &self.topics_dir)?,
            // Deleting what is not there is done already (the core may repeat a deletion that
            // a crash interrupted).
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(StorageError::io(
                    format!("remove directory {}", dir.display()),
                    error,
                ))
            }
        }
        // After the directory: a crash in between leaves a state without a partition, which
        // recovery drops; the other order could leave a partition without its vote. Written
        // now, so that a partition created again under this name never inherits it.
        let mut written = lock(&self.replica_states);
        if written.contains_key(partition) {
            let mut next = written.clone();
            next.remove(partition);
            self.replace_replica_states(&mut written, next)?;
        }
        Ok(())
    }

    fn append(
        &self,
        partition: &TopicPartition,
        batch: &AppendedBatch,
        bytes: &Bytes,
    ) -> StorageResult<()> {
        let handle = self.partition_files(partition)?;
        let mut guard = lock(&handle);
        let files = &mut *guard;
        if files.deleted {
            return Err(StorageError::UnknownPartition(partition.clone()));
        }
        let context = || {
            format!(
                "append of offset {} at position {} of segment {} of partition {partition}",
                batch.base_offset, batch.position, batch.segment_base_offset
            )
        };
        let active = &mut files.active;
        let segment_base = active.files.base_offset;
        if batch.segment_base_offset != segment_base {
            return Err(
                match files.segments.contains_key(&batch.segment_base_offset) {
                    true => {
                        invalid_input(context(), format!("the active segment is {segment_base}"))
                    }
                    false => StorageError::UnknownSegment {
                        partition: partition.clone(),
                        base_offset: batch.segment_base_offset,
                    },
                },
            );
        }
        let Some(entry) = files.segments.get_mut(&segment_base) else {
            return Err(StorageError::UnknownSegment {
                partition: partition.clone(),
                base_offset: segment_base,
            });
        };
        // Never write anywhere but the end: a mismatch means the core and the disk disagree.
        if u64::from(batch.position) != entry.size_bytes {
            return Err(invalid_input(
                context(),
                format!("the segment's end is at {}", entry.size_bytes),
            ));
        }
        let header =
            read_header(bytes).map_err(|error| invalid_input(context(), error.to_string()))?;
        if header.size_bytes as usize != bytes.len() {
            return Err(invalid_input(
                context(),
                format!(
                    "the batch says {} bytes but {} were given",
                    header.size_bytes,
                    bytes.len()
                ),
            ));
        }
        let end = entry.size_bytes + bytes.len() as u64;
        if end > SEGMENT_BYTES_MAX {
            return Err(invalid_input(context(), "the segment would pass 4 GiB"));
        }
        let relative_offset = batch
            .base_offset
            .checked_sub(segment_base)
            .and_then(|relative| u32::try_from(relative).ok())
            .ok_or_else(|| {
                invalid_input(
                    context(),
                    "the offset is not within 2^32 above the segment base",
                )
            })?;

        let segment = &active.files;
        let position = entry.size_bytes;
        // Two positional writes: the patched header prefix (base offset and leader epoch),
        // then the caller's bytes untouched.
        let prefix = stored_header_prefix(bytes, batch.base_offset, batch.leader_epoch);
        segment
            .log
            .file
            .write_all_at(&prefix, position)
            .and_then(|()| segment.log.file.write_all_at(&bytes[16..], position + 16))
            .map_err(io_error(|| format!("write {}", segment.log.path.display())))?;
        let index_entry = encode_offset_entry(relative_offset, batch.position);
        segment
            .offset_index
            .write_all_at(
                &index_entry,
                active.index_entries * OFFSET_INDEX_ENTRY_BYTES as u64,
            )
            .map_err(io_error(|| {
                format!("write {}", segment.paths.offset_index.display())
            }))?;
        let time_entry = encode_time_entry(batch.max_timestamp, relative_offset);
        segment
            .time_index
            .write_all_at(
                &time_entry,
                active.index_entries * TIME_INDEX_ENTRY_BYTES as u64,
            )
            .map_err(io_error(|| {
                format!("write {}", segment.paths.time_index.display())
            }))?;
        entry.size_bytes = end;
        active.index_entries += 1;
        // After the writes: a sync that reads this covers them.
        segment.written_bytes.store(end, Ordering::Release);
        self.appended_since_checkpoint
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);

        let mut dirty = lock(&self.dirty);
        if !segment.dirty.swap(true, Ordering::Relaxed) {
            dirty.segments.push(Arc::clone(segment));
        }
        Ok(())
    }

    fn roll_segment(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()> {
        let handle = self.partition_files(partition)?;
        let mut files = lock(&handle);
        if files.deleted {
            return Err(StorageError::UnknownPartition(partition.clone()));
        }
        let active_base = files.active.files.base_offset;
        if base_offset <= active_base {
            return Err(invalid_input(
                format!("roll partition {partition} to a segment at {base_offset}"),
                format!("the active segment is at {active_base}; new ones must start above it"),
            ));
        }
        // The partition's recovery point moves to the new segment, which says every earlier
        // segment is durable whole: make the old one so first (a roll comes once per
        // segment, and group commit has usually synced all but its last appends).
        sync_whole_segment(&self.fs, &files.active.files, &files.dir)?;
        let (entry, active) = create_segment(&self.fs, &files.dir, base_offset)?;
        files.segments.insert(base_offset, entry);
        // The old active segment stays readable; if it is still in the dirty list, the list
        // keeps its index files open until the next sync.
        files.active = active;
        let dir = files.dir.clone();
        drop(files);
        self.mark_directory_dirty(&dir);
        Ok(())
    }

    fn delete_segment(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()> {
        let handle = self.partition_files(partition)?;
        let mut files = lock(&handle);
        if files.deleted {
            return Err(StorageError::UnknownPartition(partition.clone()));
        }
        if base_offset == files.active.files.base_offset {
            return Err(invalid_input(
                format!("delete segment {base_offset} of partition {partition}"),
                "it is the active segment",
            ));
        }
        if files.segments.remove(&base_offset).is_none() {
            return Err(StorageError::UnknownSegment {
                partition: partition.clone(),
                base_offset,
            });
        }
        let dir = files.dir.clone();
        drop(files);
        remove_segment_files(&self.fs, &dir, base_offset)?;
        self.mark_directory_dirty(&dir);
        Ok(())
    }

    fn restart_log(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()> {
        let handle = self.partition_files(partition)?;
        let mut persisted = lock(&self.recovery_points);
        let files = lock(&handle);
        if files.deleted {
            return Err(StorageError::UnknownPartition(partition.clone()));
        }
        let active_base = files.active.files.base_offset;
        if base_offset <= active_base {
            return Err(invalid_input(
                format!("restart partition {partition} at {base_offset}"),
                format!("the active segment is at {active_base}; the new start must be past it"),
            ));
        }
        self.start_over_at(&mut persisted, files, base_offset)
    }

    fn truncate(&self, partition: &TopicPartition, truncation: &Truncation) -> StorageResult<()> {
        let handle = self.partition_files(partition)?;
        let mut persisted = lock(&self.recovery_points);
        let mut files = lock(&handle);
        if files.deleted {
            return Err(StorageError::UnknownPartition(partition.clone()));
        }
        let context = || format!("truncate partition {partition} to {truncation:?}");
        let base = truncation.active_segment_base;
        let dir = files.dir.clone();
        if files
            .segments
            .range(..=base)
            .next_back()
            .is_none_or(|(found, _)| *found != base)
        {
            return Err(StorageError::UnknownSegment {
                partition: partition.clone(),
                base_offset: base,
            });
        }
        let later: Vec<i64> = files
            .segments
            .range(base + 1..)
            .map(|(later, _)| *later)
            .collect();
        let named: BTreeSet<i64> = truncation.deleted_segments.iter().copied().collect();
        if later.iter().copied().collect::<BTreeSet<i64>>() != named {
            return Err(invalid_input(
                context(),
                format!("the segments after {base} are {later:?}"),
            ));
        }
        let kept = RecoveryPoint {
            segment_base_offset: base,
            position: truncation.active_segment_bytes,
        };
        self.lower_recovery_point(&mut persisted, partition, Some(kept))?;
        for removed in &later {
            files.segments.remove(removed);
            remove_segment_files(&self.fs, &dir, *removed)?;
        }
        // The cut segment becomes the active one, its indexes cut to the batches it keeps.
        let paths = SegmentPaths::new(&dir, base);
        let offset_index = open_read_write(&self.fs, &paths.offset_index, false)?;
        let time_index = open_read_write(&self.fs, &paths.time_index, false)?;
        let index_bytes = read_all(&offset_index).map_err(io_error(|| {
            format!("read {}", paths.offset_index.display())
        }))?;
        let cut = u64::from(truncation.active_segment_bytes);
        let kept_entries = index_bytes
            .chunks_exact(OFFSET_INDEX_ENTRY_BYTES)
            .take_while(|entry| {
                u64::from(u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]])) < cut
            })
            .count() as u64;
        let Some(entry) = files.segments.get_mut(&base) else {
            return Err(StorageError::UnknownSegment {
                partition: partition.clone(),
                base_offset: base,
            });
        };
        if cut > entry.size_bytes {
            return Err(invalid_input(
                context(),
                format!("segment {base} holds only {} bytes", entry.size_bytes),
            ));
        }
        let log = Arc::clone(&entry.log);
        entry.size_bytes = cut;
        log.file
            .set_len(cut)
            .and_then(|()| log.file.sync_all())
            .map_err(io_error(|| format!("truncate {}", log.path.display())))?;
        offset_index
            .set_len(kept_entries * OFFSET_INDEX_ENTRY_BYTES as u64)
            .and_then(|()| offset_index.sync_all())
            .map_err(io_error(|| {
                format!("truncate {}", paths.offset_index.display())
            }))?;
        time_index
            .set_len(kept_entries * TIME_INDEX_ENTRY_BYTES as u64)
            .and_then(|()| time_index.sync_all())
            .map_err(io_error(|| {
                format!("truncate {}", paths.time_index.display())
            }))?;
        files.active = ActiveState {
            // Everything kept was synced just above.
            files: Arc::new(ActiveSegment::new(
                base,
                log,
                offset_index,
                time_index,
                paths,
                cut,
            )),
            index_entries: kept_entries,
        };
        drop(files);
        sync_directory(&self.fs, &dir)?;
        drop(persisted);
        Ok(())
    }

    fn persist_replica_states(
        &self,
        states: &[(TopicPartition, ReplicaState)],
    ) -> StorageResult<()> {
        let mut written = lock(&self.replica_states);
        let mut next = written.clone();
        next.extend(states.iter().cloned());
        self.replace_replica_states(&mut written, next)
    }

    fn sync(&self) -> StorageResult<()> {
        // One sync at a time: a second caller waits for the first, whose files it would
        // otherwise not see in the (already taken) dirty list, and then covers the rest.
        let _serial = lock(&self.sync_serial);
        if self.sync_failed.load(Ordering::Relaxed) {
            return Err(StorageError::io(
                "sync",
                io::Error::other(
                    "an earlier fsync failed; the page cache can no longer be trusted",
                ),
            ));
        }
        let (segments, directories) = {
            let mut dirty = lock(&self.dirty);
            let segments = std::mem::take(&mut dirty.segments);
            for segment in &segments {
                segment.dirty.store(false, Ordering::Relaxed);
            }
            (segments, std::mem::take(&mut dirty.directories))
        };
        // What each segment held before its fsync began: what the fsync makes durable.
        let covered: Vec<u64> = segments
            .iter()
            .map(|segment| segment.written_bytes.load(Ordering::Acquire))
            .collect();
        let result = self.sync_all_of(&segments, &directories);
        if result.is_err() {
            self.sync_failed.store(true, Ordering::Relaxed);
            return result;
        }
        for (segment, covered) in segments.iter().zip(covered) {
            segment.synced_bytes.fetch_max(covered, Ordering::Release);
        }
        if self.appended_since_checkpoint.load(Ordering::Relaxed) >= CHECKPOINT_INTERVAL_BYTES {
            self.write_recovery_points()?;
        }
        Ok(())
    }

    fn read(&self, partition: &TopicPartition, chunk: &ReadChunk) -> StorageResult<Bytes> {
        let handle = self.partition_files(partition)?;
        let (log, size_bytes) = {
            let files = lock(&handle);
            if files.deleted {
                return Err(StorageError::UnknownPartition(partition.clone()));
            }
            let entry = files
                .segments
                .get(&chunk.segment_base_offset)
                .ok_or_else(|| StorageError::UnknownSegment {
                    partition: partition.clone(),
                    base_offset: chunk.segment_base_offset,
                })?;
            (Arc::clone(&entry.log), entry.size_bytes)
        };
        let start = u64::from(chunk.position);
        let end = start + u64::from(chunk.length);
        if end > size_bytes {
            return Err(invalid_input(
                format!(
                    "read of bytes {start}..{end} of segment {} of partition {partition}",
                    chunk.segment_base_offset
                ),
                format!("the segment holds {size_bytes} bytes"),
            ));
        }
        let mut buffer = vec![0u8; chunk.length as usize];
        log.file
            .read_exact_at(&mut buffer, start)
            .map_err(io_error(|| {
                format!("read {} at {start}", log.path.display())
            }))?;
        Ok(Bytes::from(buffer))
    }

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn persist_deleted_below(&self, partition: &TopicPartition, offset: i64) -> StorageResult<()> {
        let dir = self.partition_dir(partition);
        let bytes = offset.to_string().into_bytes();
        replace_file(&self.fs, &dir, recovery::DELETED_BELOW_FILE, &bytes, true)
    }

    fn locate(&self, partition: &TopicPartition, offset: i64) -> String {
        let Ok(handle) = self.partition_files(partition) else {
            return self.partition_dir(partition).display().to_string();
        };
        let files = lock(&handle);
        match files.segments.range(..=offset).next_back() {
            Some((base_offset, _)) => SegmentPaths::new(&files.dir, *base_offset)
                .log
                .display()
                .to_string(),
            None => files.dir.display().to_string(),
        }
    }

    fn persist_metadata(&self, metadata: &ClusterMetadata) -> StorageResult<()> {
        let _serial = lock(&self.metadata_serial);
        let text = serde_json::to_vec_pretty(metadata)
            .map_err(|error| StorageError::io("encode metadata", io::Error::other(error)))?;
        write_durably(&self.fs, &self.data_dir, METADATA_FILE, &text)
    }
}

/// The JSON document in `path`, if the file exists. One that does not parse is an error,
/// never `None`: a lost snapshot or vote is not a fresh start.
pub(super) fn read_json_file<F: FileSystem, T: serde::de::DeserializeOwned>(
    fs: &F,
    path: &Path,
) -> StorageResult<Option<T>> {
    let text = match fs.read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io(format!("read {}", path.display()), error)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|error| StorageError::CorruptMetadata {
            path: path.display().to_string(),
            reason: error.to_string(),
        })
}

/// The per-partition entries of a versioned data-directory file (`path`), checked: the
/// version must be `supported`, each entry valid (`Err` says why not) and each partition
/// listed once. Anything else is `CorruptMetadata` naming the file, never an empty table.
pub(super) fn partition_table<V>(
    path: &Path,
    version: u32,
    supported: u32,
    entries: impl IntoIterator<Item = (TopicPartition, Result<V, String>)>,
) -> StorageResult<BTreeMap<TopicPartition, V>> {
    let corrupt = |reason: String| StorageError::CorruptMetadata {
        path: path.display().to_string(),
        reason,
    };
    if version != supported {
        return Err(corrupt(format!(
            "version {version} is not the supported {supported}"
        )));
    }
    let mut table = BTreeMap::new();
    for (partition, value) in entries {
        let value = value.map_err(|reason| corrupt(format!("partition {partition}: {reason}")))?;
        if table.insert(partition.clone(), value).is_some() {
            return Err(corrupt(format!("partition {partition} is listed twice")));
        }
    }
    Ok(table)
}

/// Replaces `dir/name` with `bytes`, durably: written aside, synced, then renamed over it, so
/// a crash leaves the old or the new contents, never half of them.
fn write_durably<F: FileSystem>(fs: &F, dir: &Path, name: &str, bytes: &[u8]) -> StorageResult<()> {
    replace_file(fs, dir, name, bytes, true)
}

/// Where `replace_file` writes `name` before renaming it over the file.
fn temporary_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// `write_durably`, or with `durable` false the same steps without an fsync (only the
/// deliberate defect `skip-replica-state-fsync` asks for that).
fn replace_file<F: FileSystem>(
    fs: &F,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> StorageResult<()> {
    let temp_path = dir.join(temporary_name(name));
    let path = dir.join(name);
    let temp = fs
        .open(&temp_path, OpenMode::WriteTruncate)
        .map_err(io_error(|| format!("open {}", temp_path.display())))?;
    // The file was just emptied: writing at 0 is writing it whole.
    temp.write_all_at(bytes, 0)
        .and_then(|()| if durable { temp.sync_all() } else { Ok(()) })
        .map_err(io_error(|| format!("write {}", temp_path.display())))?;
    drop(temp);
    fs.rename(&temp_path, &path).map_err(io_error(|| {
        format!("rename {} to {}", temp_path.display(), path.display())
    }))?;
    if durable {
        sync_directory(fs, dir)?;
    }
    Ok(())
}

impl<F: FileSystem> FileStorage<F> {
    /// Writes every partition's recovery point (see `recovery_point`): where its durable
    /// bytes end. Called by `sync` every `CHECKPOINT_INTERVAL_BYTES` appended, at the end of
    /// recovery, and by the binary at a clean shutdown, after its last sync, so that the next
    /// start scans nothing.
    pub fn write_recovery_points(&self) -> StorageResult<()> {
        let mut persisted = lock(&self.recovery_points);
        self.appended_since_checkpoint.store(0, Ordering::Relaxed);
        let handles: Vec<PartitionHandle<F::File>> =
            lock(&self.partitions).values().cloned().collect();
        let mut points = RecoveryPoints::new();
        for handle in handles {
            let files = lock(&handle);
            if files.deleted {
                continue;
            }
            // The point first, then its index entries made durable: they were written before
            // the log bytes the point counts.
            let point = recovery_point_of(&files.active);
            if persisted.get(&files.partition) != Some(&point) {
                sync_indexes(&files.active.files)?;
            }
            points.insert(files.partition.clone(), point);
        }
        self.replace_recovery_points(&mut persisted, points)
    }

    /// Writes `points` durably over the file, then makes them the `persisted` ones.
    fn replace_recovery_points(
        &self,
        persisted: &mut RecoveryPoints,
        points: RecoveryPoints,
    ) -> StorageResult<()> {
        write_durably(
            &self.fs,
            &self.data_dir,
            RECOVERY_POINTS_FILE,
            &encode_recovery_points(&points)?,
        )?;
        *persisted = points;
        Ok(())
    }

    /// Before `partition` loses bytes or segments: if its recovery point on disk lies past
    /// `keep` (or `keep` is `None`: the partition goes away), lower it on disk first, so a
    /// crash during the change never leaves a point above what the partition holds. The
    /// caller holds `persisted` until the change is done.
    fn lower_recovery_point(
        &self,
        persisted: &mut RecoveryPoints,
        partition: &TopicPartition,
        keep: Option<RecoveryPoint>,
    ) -> StorageResult<()> {
        let Some(current) = persisted.get(partition).copied() else {
            return Ok(());
        };
        let mut points = persisted.clone();
        match keep {
            Some(keep) if keep >= current => return Ok(()),
            Some(keep) => points.insert(partition.clone(), keep),
            None => points.remove(partition),
        };
        self.replace_recovery_points(persisted, points)
    }

    /// `create_partition` on a partition already open: idempotent when it holds just one
    /// empty segment; that segment moves to `base_offset` if it is elsewhere.
    fn recreate_empty_partition(
        &self,
        handle: &PartitionHandle<F::File>,
        base_offset: i64,
    ) -> StorageResult<()> {
        let mut persisted = lock(&self.recovery_points);
        let files = lock(handle);
        let active_base = files.active.files.base_offset;
        let empty = files.segments.len() == 1 && files.active.index_entries == 0 && {
            files
                .segments
                .get(&active_base)
                .is_some_and(|entry| entry.size_bytes == 0)
        };
        if !empty {
            return Err(StorageError::io(
                format!("create partition {} at {base_offset}", files.partition),
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the partition exists and holds data",
                ),
            ));
        }
        if active_base == base_offset {
            return Ok(());
        }
        self.start_over_at(&mut persisted, files, base_offset)
    }

    /// Replaces every segment of the partition with one empty segment at `base_offset`,
    /// which starts past them all. Its recovery point goes first (a point at an old segment
    /// would vouch for what lies below the new, unsynced one); the new segment is durable
    /// before any old one goes: a crash in between leaves old segments, which recovery reads
    /// as a log (the empty new one follows a gap, and recovery drops what follows a gap), or
    /// the new segment alone. The caller holds `persisted` (taken before `files`).
    fn start_over_at(
        &self,
        persisted: &mut RecoveryPoints,
        mut files: MutexGuard<'_, PartitionFiles<F::File>>,
        base_offset: i64,
    ) -> StorageResult<()> {
        let partition = files.partition.clone();
        self.lower_recovery_point(persisted, &partition, None)?;
        let dir = files.dir.clone();
        let (entry, active) = create_segment(&self.fs, &dir, base_offset)?;
        sync_directory(&self.fs, &dir)?;
        let old = std::mem::replace(&mut files.segments, BTreeMap::from([(base_offset, entry)]));
        files.active = active;
        drop(files);
        for old_base in old.keys() {
            remove_segment_files(&self.fs, &dir, *old_base)?;
        }
        sync_directory(&self.fs, &dir)
    }
}

impl<F: FileSystem> FileStorage<F> {
    /// The fsyncs of one sync: each dirty segment's log, then directories.
    fn sync_all_of(
        &self,
        segments: &[Arc<ActiveSegment<F::File>>],
        directories: &BTreeSet<PathBuf>,
    ) -> StorageResult<()> {
        #[cfg(feature = "defects")]
        let skip_logs = self.has_defect(myelin_core::defects::Defect::SkipSegmentFsync);
        #[cfg(not(feature = "defects"))]
        let skip_logs = false;
        if !skip_logs {
            // fdatasync also writes the file size when it grew, which is all the metadata a
            // reader after a crash needs. The indexes wait for a recovery point (see the
            // module doc).
            let logs: Vec<&F::File> = segments.iter().map(|segment| &segment.log.file).collect();
            self.fs.sync_data_of(&logs).map_err(|(index, error)| {
                StorageError::io(
                    format!("fsync {}", segments[index].paths.log.display()),
                    error,
                )
            })?;
        }
        for dir in directories {
            match sync_directory(&self.fs, dir) {
                Ok(()) => {}
                // The partition was deleted since: nothing of it is left to make durable.
                Err(StorageError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}
