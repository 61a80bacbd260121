//! `SimFileSystem`: a deterministic in-memory file system with power-loss semantics, for
//! running the real storage engine (`myelin_node::storage::file::FileStorage`) in the
//! simulator. It implements `myelin_node::storage::fs::FileSystem` and honours the contract
//! stated in that module's doc, no more: what the contract leaves open, a power loss decides.
//!
//! ## The model
//! - **Inodes and names.** Every file and directory is an inode (a number); a directory maps
//!   names to inodes. Names are only references: an open handle holds its inode, so it keeps
//!   reading and writing after its name is removed or renamed, and `rename` moves the inode
//!   to its new name. An inode lives while a name (current or durable, see below) or an open
//!   handle refers to it. The root `/` always exists and is durable.
//! - **Files.** Per file: `data`, the bytes every reader sees now (the page cache), and
//!   `durable`, the bytes a power loss keeps for sure. The writes since the last sync (writes
//!   and size changes, in call order) are kept as a log, `unsynced`. Invariant: replaying
//!   `unsynced` over `durable` gives `data`. `sync_data`/`sync_all` replay the log into
//!   `durable` (everything written before the call, nothing after) and empty it.
//! - **Directories.** Per directory: `entries`, the names as seen now, and `durable_entries`,
//!   the names a power loss keeps. `sync_dir` copies the first into the second: creations,
//!   removals and renames in and out of that directory become durable together. A new
//!   directory (`create_dir`, `create_dir_all`) is an entry of its parent like a file:
//!   durable after `sync_dir` of the parent.
//! - **Power loss** ([`SimFileSystem::crash`]): every directory's entries revert to its
//!   durable ones (or, with [`CrashSpec::keep_unsynced_directory_ops`], its current ones
//!   become durable); inodes no durable name reaches are gone. Every surviving file keeps its
//!   durable bytes; with a [`Tear`], each file's unsynced writes but the last reach the disk
//!   whole and the last one is torn: a prefix of it is kept ([`TearMode::Truncated`]), or
//!   the file grows by the whole write but after the prefix only zeros are written where the
//!   write extended the file ([`TearMode::ZeroedTail`]: the size reached the disk, the data
//!   did not). (A file whose last unsynced change is a size change loses all its unsynced
//!   changes.) Every handle opened before the crash is dead: its operations fail.
//! - **Failures.** [`SimFileSystem::fail_next_sync`] makes the next sync (of a file or a
//!   directory) fail ([`SimFileSystem::fail_sync_after`] a later one); after a failed sync every later sync fails too, until the next crash (a
//!   reboot), as the storage engine assumes. A failed sync makes nothing durable.
//!   [`SimFileSystem::fail_reads`] makes the next reads fail.
//!
//! Deterministic: ordered maps only, no clock; a crash's outcome depends only on the state
//! and the [`CrashSpec`]. Paths are absolute (a relative path is taken from `/`); `.` is
//! ignored and `..` is refused. There are no symbolic links, permissions or times.

use myelin_core::batch::scan_batches;
use myelin_core::metadata::TopicPartition;
use myelin_node::storage::file::segment_logs;
use myelin_node::storage::fs::{DirEntry, EntryKind, FileSystem, FsFile, OpenMode};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// How a file's last unsynced write is torn by a power loss.
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

/// What a power loss does to unsynced state (a scenario's crash fault carries one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CrashSpec {
    /// Tear each file's most recent unsynced write instead of dropping its unsynced writes.
    pub tear: Option<Tear>,
    /// Keep every directory's unsynced entries (else revert to the durable ones).
    pub keep_unsynced_directory_ops: bool,
}

/// Counters over a file system's life, for the run's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStats {
    /// Successful fsyncs of files and directories.
    pub syncs: u64,
    pub failed_syncs: u64,
    pub crashes: u64,
    pub torn_writes: u64,
    pub bytes_lost_in_crashes: u64,
}

impl DiskStats {
    /// The counters of two file systems together.
    pub fn add(&mut self, other: &DiskStats) {
        self.syncs += other.syncs;
        self.failed_syncs += other.failed_syncs;
        self.crashes += other.crashes;
        self.torn_writes += other.torn_writes;
        self.bytes_lost_in_crashes += other.bytes_lost_in_crashes;
    }
}

/// What a power loss did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerLossReport {
    /// Bytes of the files' current contents that did not survive as they were: cut off, or
    /// replaced (by zeros of a torn write, or older durable bytes). Files that vanished count
    /// whole.
    pub bytes_lost: u64,
    /// Writes torn rather than lost.
    pub torn_writes: u64,
    /// Files whose name did not survive (their inode is gone).
    pub files_lost: u64,
}

/// One file as [`SimFileSystem::files`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub path: PathBuf,
    /// The size every reader sees now.
    pub len: u64,
    /// The size of the file's durable bytes.
    pub durable_len: u64,
}

type InodeId = u64;
const ROOT: InodeId = 0;

#[derive(Debug, Clone)]
enum Change {
    Write { offset: usize, bytes: Vec<u8> },
    SetLen(usize),
}

impl Change {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Change::Write { offset, bytes } => write_at(data, *offset, bytes),
            Change::SetLen(len) => data.resize(*len, 0),
        }
    }
}

fn write_at(data: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    let end = offset + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset..end].copy_from_slice(bytes);
}

#[derive(Debug, Default)]
struct FileNode {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Change>,
}

impl FileNode {
    /// Makes everything written so far durable.
    fn sync(&mut self) {
        for change in self.unsynced.drain(..) {
            change.apply(&mut self.durable);
        }
        assert_eq!(
            self.durable.len(),
            self.data.len(),
            "simfs: replaying the unsynced writes over the durable bytes must give the current ones"
        );
    }

    /// The bytes a power loss leaves; whether a write was torn.
    fn survivor(&self, tear: Option<Tear>) -> (Vec<u8>, bool) {
        let mut kept = self.durable.clone();
        let (Some(tear), Some((Change::Write { offset, bytes }, before))) =
            (tear, self.unsynced.split_last())
        else {
            return (kept, false);
        };
        for change in before {
            change.apply(&mut kept);
        }
        let prefix = bytes.len() * usize::from(tear.kept_per_mille.min(1000)) / 1000;
        if tear.mode == TearMode::ZeroedTail && kept.len() < offset + bytes.len() {
            kept.resize(offset + bytes.len(), 0);
        }
        write_at(&mut kept, *offset, &bytes[..prefix]);
        (kept, true)
    }
}

#[derive(Debug, Default)]
struct DirNode {
    entries: BTreeMap<OsString, InodeId>,
    durable_entries: BTreeMap<OsString, InodeId>,
}

#[derive(Debug)]
enum Inode {
    File(FileNode),
    Dir(DirNode),
}

impl Inode {
    fn kind(&self) -> EntryKind {
        match self {
            Inode::File(_) => EntryKind::File,
            Inode::Dir(_) => EntryKind::Dir,
        }
    }
}

#[derive(Debug)]
struct State {
    inodes: BTreeMap<InodeId, Inode>,
    next_inode: InodeId,
    /// Open handles per inode (of the current generation).
    open_handles: BTreeMap<InodeId, usize>,
    /// Bumped by every crash: handles of an older generation are dead.
    generation: u64,
    /// Syncs to let succeed before one fails.
    fail_sync_after: Option<u64>,
    /// A sync failed: every later sync fails until the next crash.
    sync_failed: bool,
    /// A sync failed since the last `take_sync_failure`.
    sync_failure_unreported: bool,
    /// How many of the next reads fail.
    failing_reads: u64,
    stats: DiskStats,
}

impl Default for State {
    fn default() -> Self {
        State {
            inodes: BTreeMap::from([(ROOT, Inode::Dir(DirNode::default()))]),
            next_inode: ROOT + 1,
            open_handles: BTreeMap::new(),
            generation: 0,
            fail_sync_after: None,
            sync_failed: false,
            sync_failure_unreported: false,
            failing_reads: 0,
            stats: DiskStats::default(),
        }
    }
}

fn error(kind: io::ErrorKind, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, format!("simulated file system: {what}"))
}

/// A path's names from the root; `..` is refused.
fn components(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(error(
                    io::ErrorKind::InvalidInput,
                    format!("`..` in {}", path.display()),
                ))
            }
        }
    }
    Ok(names)
}

impl State {
    fn dir(&self, id: InodeId) -> Option<&DirNode> {
        match self.inodes.get(&id) {
            Some(Inode::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn dir_mut(&mut self, id: InodeId) -> Option<&mut DirNode> {
        match self.inodes.get_mut(&id) {
            Some(Inode::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn file_mut(&mut self, id: InodeId) -> Option<&mut FileNode> {
        match self.inodes.get_mut(&id) {
            Some(Inode::File(file)) => Some(file),
            _ => None,
        }
    }

    /// The inode a path names now.
    fn lookup(&self, path: &Path) -> io::Result<InodeId> {
        let mut id = ROOT;
        for name in components(path)? {
            let dir = self.dir(id).ok_or_else(|| {
                error(
                    io::ErrorKind::NotADirectory,
                    format!("a component of {} is not a directory", path.display()),
                )
            })?;
            id = *dir
                .entries
                .get(name)
                .ok_or_else(|| error(io::ErrorKind::NotFound, path.display()))?;
        }
        Ok(id)
    }

    /// The directory holding `path` and the last name of `path`.
    fn parent_of<'p>(&self, path: &'p Path) -> io::Result<(InodeId, &'p OsStr)> {
        let mut names = components(path)?;
        let name = names.pop().ok_or_else(|| {
            error(
                io::ErrorKind::InvalidInput,
                format!("{} names the root", path.display()),
            )
        })?;
        let parent: PathBuf = names.iter().collect();
        let id = self.lookup(&Path::new("/").join(parent))?;
        if self.dir(id).is_none() {
            return Err(error(
                io::ErrorKind::NotADirectory,
                format!("the parent of {} is not a directory", path.display()),
            ));
        }
        Ok((id, name))
    }

    /// Whether `inner` is `outer` or lies (by current names) under it.
    fn contains(&self, outer: InodeId, inner: InodeId) -> bool {
        let mut pending = vec![outer];
        while let Some(id) = pending.pop() {
            if id == inner {
                return true;
            }
            if let Some(dir) = self.dir(id) {
                pending.extend(dir.entries.values().copied());
            }
        }
        false
    }

    fn entry(&self, dir: InodeId, name: &OsStr) -> Option<InodeId> {
        self.dir(dir)?.entries.get(name).copied()
    }

    fn add_inode(&mut self, parent: InodeId, name: &OsStr, inode: Inode) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, inode);
        if let Some(dir) = self.dir_mut(parent) {
            dir.entries.insert(name.to_owned(), id);
        }
        id
    }

    /// Takes a sync's turn: `Err` if it is to fail (and then every later one too).
    fn check_sync(&mut self) -> io::Result<()> {
        match self.fail_sync_after {
            Some(0) => {
                self.fail_sync_after = None;
                self.sync_failed = true;
            }
            Some(count) => self.fail_sync_after = Some(count - 1),
            None => {}
        }
        if self.sync_failed {
            self.sync_failure_unreported = true;
            self.stats.failed_syncs += 1;
            return Err(error(io::ErrorKind::Other, "sync failed (injected)"));
        }
        self.stats.syncs += 1;
        Ok(())
    }

    fn check_read(&mut self) -> io::Result<()> {
        if self.failing_reads > 0 {
            self.failing_reads -= 1;
            return Err(error(io::ErrorKind::Other, "read failed (injected)"));
        }
        Ok(())
    }

    /// Drops every inode no name (current or durable) and no open handle refers to.
    fn collect_garbage(&mut self) {
        let mut live = BTreeSet::from([ROOT]);
        live.extend(self.open_handles.keys().copied());
        let mut pending: Vec<InodeId> = live.iter().copied().collect();
        while let Some(id) = pending.pop() {
            if let Some(dir) = self.dir(id) {
                for child in dir.entries.values().chain(dir.durable_entries.values()) {
                    if live.insert(*child) {
                        pending.push(*child);
                    }
                }
            }
        }
        self.inodes.retain(|id, _| live.contains(id));
    }

    fn collect_files(&self, dir: InodeId, path: &Path, out: &mut Vec<FileInfo>) {
        let Some(node) = self.dir(dir) else { return };
        for (name, id) in &node.entries {
            let path = path.join(name);
            match self.inodes.get(id) {
                Some(Inode::File(file)) => out.push(FileInfo {
                    path,
                    len: file.data.len() as u64,
                    durable_len: file.durable.len() as u64,
                }),
                Some(Inode::Dir(_)) => self.collect_files(*id, &path, out),
                None => {}
            }
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The simulation is single-threaded; a poisoned lock means a panic already failed it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A deterministic in-memory file system with power-loss semantics. See the module doc.
/// Clones share one file system.
#[derive(Debug, Clone, Default)]
pub struct SimFileSystem {
    shared: Arc<Shared>,
}

impl SimFileSystem {
    /// Removes `path`'s entry from its parent (a directory's whole subtree goes with it):
    /// `NotADirectory` / `IsADirectory` when it is not of the kind `directory` asks.
    fn unlink(&self, path: &Path, directory: bool) -> io::Result<()> {
        let mut state = self.lock();
        let (parent, name) = state.parent_of(path)?;
        let id = state
            .entry(parent, name)
            .ok_or_else(|| error(io::ErrorKind::NotFound, path.display()))?;
        match (state.dir(id).is_some(), directory) {
            (true, false) => return Err(error(io::ErrorKind::IsADirectory, path.display())),
            (false, true) => return Err(error(io::ErrorKind::NotADirectory, path.display())),
            _ => {}
        }
        if let Some(dir) = state.dir_mut(parent) {
            dir.entries.remove(name);
        }
        state.collect_garbage();
        Ok(())
    }

    /// An empty file system: the root directory only.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// The next sync (`sync_data`, `sync_all` or `sync_dir`) fails, and every one after it
    /// until the next crash.
    pub fn fail_next_sync(&self) {
        self.fail_sync_after(0);
    }

    /// The sync after the next `count` ones fails, and every one after it until the next
    /// crash.
    pub fn fail_sync_after(&self, count: u64) {
        self.lock().fail_sync_after = Some(count);
    }

    /// Whether a sync failed since the last call.
    pub fn take_sync_failure(&self) -> bool {
        std::mem::take(&mut self.lock().sync_failure_unreported)
    }

    /// The next `count` reads (`read_exact_at`, `read`) fail.
    pub fn fail_reads(&self, count: u64) {
        self.lock().failing_reads = count;
    }

    /// Every file reachable by its current name, in path order, with its sizes.
    pub fn files(&self) -> Vec<FileInfo> {
        let state = self.lock();
        let mut files = Vec::new();
        state.collect_files(ROOT, Path::new("/"), &mut files);
        files
    }

    /// The current contents of the file at `path`; `None` if no file is there.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.lookup(path).ok()?;
        match state.inodes.get(&id)? {
            Inode::File(file) => Some(file.data.clone()),
            Inode::Dir(_) => None,
        }
    }

    /// Bytes written but not durable yet, over every file: what a power loss may take.
    pub fn unsynced_bytes(&self) -> u64 {
        let state = self.lock();
        state
            .inodes
            .values()
            .map(|inode| match inode {
                Inode::File(file) => file
                    .unsynced
                    .iter()
                    .map(|change| match change {
                        Change::Write { bytes, .. } => bytes.len() as u64,
                        Change::SetLen(_) => 0,
                    })
                    .sum(),
                Inode::Dir(_) => 0,
            })
            .sum()
    }

    /// A power loss, then a reboot: keeps what the model says survives (see the module doc),
    /// kills every open handle and clears the sync failure. The outcome is fully decided by
    /// `spec`; `_rng` is reserved for choices a later crash model may leave to chance.
    pub fn crash(&self, spec: &CrashSpec, _rng: &mut StdRng) -> PowerLossReport {
        let mut state = self.lock();
        let state = &mut *state;
        let mut report = PowerLossReport::default();
        let before: BTreeMap<InodeId, u64> = state
            .inodes
            .iter()
            .filter_map(|(id, inode)| match inode {
                Inode::File(file) => Some((*id, file.data.len() as u64)),
                Inode::Dir(_) => None,
            })
            .collect();
        for inode in state.inodes.values_mut() {
            if let Inode::Dir(dir) = inode {
                if spec.keep_unsynced_directory_ops {
                    dir.durable_entries = dir.entries.clone();
                } else {
                    dir.entries = dir.durable_entries.clone();
                }
            }
        }
        state.open_handles.clear();
        state.generation += 1;
        state.collect_garbage();
        for (id, len_before) in before {
            let Some(file) = state.file_mut(id) else {
                report.files_lost += 1;
                report.bytes_lost += len_before;
                continue;
            };
            let (kept, torn) = file.survivor(spec.tear);
            report.torn_writes += u64::from(torn);
            report.bytes_lost += bytes_changed(&file.data, &kept);
            file.data = kept.clone();
            file.durable = kept;
            file.unsynced.clear();
        }
        state.fail_sync_after = None;
        state.sync_failed = false;
        state.sync_failure_unreported = false;
        state.stats.crashes += 1;
        state.stats.torn_writes += report.torn_writes;
        state.stats.bytes_lost_in_crashes += report.bytes_lost;
        report
    }

    /// The counters of this file system's life so far.
    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }
}

/// One batch as a data directory holds it: (base offset, last offset, bytes).
pub type StoredBatch = (i64, i64, Vec<u8>);

/// Every partition's whole batches as (segment base offset, position in the segment, base
/// offset, last offset, bytes), in log order (see [`SimFileSystem::held_batches`]).
pub type HeldBatches = Vec<(TopicPartition, Vec<(i64, u32, i64, i64, Vec<u8>)>)>;

impl SimFileSystem {
    /// Every whole, valid batch of every partition of the storage engine's data directory
    /// `data_dir`, with its place: each segment log (found as recovery finds them,
    /// `segment_logs`) scanned with `scan_batches`, the checks recovery's scan makes
    /// (lengths, CRC-32C, offset continuity). Right after a crash, what recovery will keep;
    /// for the checkers' per-replica logs. Nothing here counts as a read of the engine's.
    pub fn held_batches(&self, data_dir: &Path) -> HeldBatches {
        let Ok(logs) = segment_logs(self, data_dir) else {
            // No data directory yet: the node never started.
            return Vec::new();
        };
        logs.into_iter()
            .map(|(partition, segments)| {
                let mut batches = Vec::new();
                for (base, path) in segments {
                    let bytes = self.contents(&path).unwrap_or_default();
                    for batch in scan_batches(&bytes, base).batches {
                        let start = batch.position as usize;
                        let end = start + batch.header.size_bytes as usize;
                        batches.push((
                            base,
                            batch.position,
                            batch.header.base_offset,
                            batch.header.base_offset + i64::from(batch.header.last_offset_delta),
                            bytes[start..end].to_vec(),
                        ));
                    }
                }
                (partition, batches)
            })
            .collect()
    }

    /// Every whole batch `partition` holds in data directory `data_dir`, in log order; `None`
    /// if it has no such partition. For the checkers' final comparison of replicas.
    pub fn batches(&self, data_dir: &Path, partition: &TopicPartition) -> Option<Vec<StoredBatch>> {
        self.held_batches(data_dir)
            .into_iter()
            .find(|(held, _)| held == partition)
            .map(|(_, batches)| {
                batches
                    .into_iter()
                    .map(|(_, _, base, last, bytes)| (base, last, bytes))
                    .collect()
            })
    }
}

/// How many bytes of `now` a power loss did not keep as they were: the bytes beyond the
/// survivor's end and those it holds with other values (zeros of a torn write).
fn bytes_changed(now: &[u8], kept: &[u8]) -> u64 {
    let differing = now.iter().zip(kept).filter(|(a, b)| a != b).count();
    (now.len().saturating_sub(kept.len()) + differing) as u64
}

/// An open file of a [`SimFileSystem`]. Dead after a crash.
#[derive(Debug)]
pub struct SimFile {
    shared: Arc<Shared>,
    inode: InodeId,
    generation: u64,
    readable: bool,
}

impl SimFile {
    /// Runs `f` on the file's inode, if this handle is still alive.
    fn with_file<T>(&self, f: impl FnOnce(&mut State, InodeId) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.shared.lock();
        if state.generation != self.generation {
            return Err(error(
                io::ErrorKind::Other,
                "stale handle: opened before a power loss",
            ));
        }
        assert!(
            matches!(state.inodes.get(&self.inode), Some(Inode::File(_))),
            "simfs: an open handle's inode must live"
        );
        f(&mut state, self.inode)
    }

    fn file(state: &mut State, id: InodeId) -> io::Result<&mut FileNode> {
        state
            .file_mut(id)
            .ok_or_else(|| error(io::ErrorKind::Other, "the handle's file is gone"))
    }

    fn sync(&self) -> io::Result<()> {
        self.with_file(|state, id| {
            state.check_sync()?;
            Self::file(state, id)?.sync();
            Ok(())
        })
    }
}

fn to_usize(value: u64) -> io::Result<usize> {
    usize::try_from(value).map_err(|_| error(io::ErrorKind::InvalidInput, "offset too large"))
}

impl FsFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if !self.readable {
            return Err(error(
                io::ErrorKind::PermissionDenied,
                "the handle is write-only",
            ));
        }
        self.with_file(|state, id| {
            state.check_read()?;
            let file = Self::file(state, id)?;
            let start = to_usize(offset)?;
            let source = start
                .checked_add(buf.len())
                .and_then(|end| file.data.get(start..end))
                .ok_or_else(|| error(io::ErrorKind::UnexpectedEof, "read past the end"))?;
            buf.copy_from_slice(source);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with_file(|state, id| {
            let file = Self::file(state, id)?;
            let offset = to_usize(offset)?;
            offset
                .checked_add(buf.len())
                .ok_or_else(|| error(io::ErrorKind::InvalidInput, "write past usize"))?;
            let change = Change::Write {
                offset,
                bytes: buf.to_vec(),
            };
            change.apply(&mut file.data);
            file.unsynced.push(change);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_file(|state, id| {
            let file = Self::file(state, id)?;
            let change = Change::SetLen(to_usize(len)?);
            change.apply(&mut file.data);
            file.unsynced.push(change);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with_file(|state, id| Ok(Self::file(state, id)?.data.len() as u64))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.generation != self.generation {
            return;
        }
        let last = match state.open_handles.get_mut(&self.inode) {
            Some(count) => {
                *count -= 1;
                *count == 0
            }
            None => false,
        };
        if last {
            state.open_handles.remove(&self.inode);
            state.collect_garbage();
        }
    }
}

impl FileSystem for SimFileSystem {
    type File = SimFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        let mut state = self.lock();
        let (parent, name) = state.parent_of(path)?;
        let id = match (state.entry(parent, name), mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(error(io::ErrorKind::AlreadyExists, path.display()))
            }
            (Some(id), _) => id,
            (None, OpenMode::ReadWrite) => {
                return Err(error(io::ErrorKind::NotFound, path.display()))
            }
            (None, _) => state.add_inode(parent, name, Inode::File(FileNode::default())),
        };
        let file = state
            .file_mut(id)
            .ok_or_else(|| error(io::ErrorKind::IsADirectory, path.display()))?;
        if mode == OpenMode::WriteTruncate && !file.data.is_empty() {
            let change = Change::SetLen(0);
            change.apply(&mut file.data);
            file.unsynced.push(change);
        }
        *state.open_handles.entry(id).or_insert(0) += 1;
        Ok(SimFile {
            shared: Arc::clone(&self.shared),
            inode: id,
            generation: state.generation,
            readable: mode != OpenMode::WriteTruncate,
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let (parent, name) = state.parent_of(path)?;
        if state.entry(parent, name).is_some() {
            return Err(error(io::ErrorKind::AlreadyExists, path.display()));
        }
        state.add_inode(parent, name, Inode::Dir(DirNode::default()));
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let mut id = ROOT;
        for name in components(path)? {
            id = match state.entry(id, name) {
                Some(child) if state.dir(child).is_some() => child,
                Some(_) => {
                    return Err(error(
                        io::ErrorKind::NotADirectory,
                        format!("a component of {} is a file", path.display()),
                    ))
                }
                None => state.add_inode(id, name, Inode::Dir(DirNode::default())),
            };
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().lookup(path).is_ok()
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.lock();
        let id = state.lookup(path)?;
        let dir = state
            .dir(id)
            .ok_or_else(|| error(io::ErrorKind::NotADirectory, path.display()))?;
        Ok(dir
            .entries
            .iter()
            .map(|(name, child)| DirEntry {
                name: name.clone(),
                kind: state
                    .inodes
                    .get(child)
                    .map_or(EntryKind::Other, Inode::kind),
            })
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.lock();
        let id = state.lookup(path)?;
        state.check_read()?;
        match state.inodes.get(&id) {
            Some(Inode::File(file)) => Ok(file.data.clone()),
            _ => Err(error(io::ErrorKind::IsADirectory, path.display())),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.unlink(path, false)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        // Only the entry in the parent goes: until the parent is synced, a power loss brings
        // the directory back with its durable entries.
        self.unlink(path, true)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let (from_parent, from_name) = state.parent_of(from)?;
        let (to_parent, to_name) = state.parent_of(to)?;
        let id = state
            .entry(from_parent, from_name)
            .ok_or_else(|| error(io::ErrorKind::NotFound, from.display()))?;
        if state.contains(id, to_parent) {
            return Err(error(
                io::ErrorKind::InvalidInput,
                format!("{} would move into itself", from.display()),
            ));
        }
        if let Some(target) = state.entry(to_parent, to_name) {
            if target == id {
                return Ok(());
            }
            match (state.inodes.get(&id), state.inodes.get(&target)) {
                (Some(Inode::File(_)), Some(Inode::Dir(_))) => {
                    return Err(error(io::ErrorKind::IsADirectory, to.display()))
                }
                (Some(Inode::Dir(_)), Some(Inode::File(_))) => {
                    return Err(error(io::ErrorKind::NotADirectory, to.display()))
                }
                (Some(Inode::Dir(_)), Some(Inode::Dir(target_dir)))
                    if !target_dir.entries.is_empty() =>
                {
                    return Err(error(io::ErrorKind::DirectoryNotEmpty, to.display()))
                }
                _ => {}
            }
        }
        if let Some(dir) = state.dir_mut(from_parent) {
            dir.entries.remove(from_name);
        }
        if let Some(dir) = state.dir_mut(to_parent) {
            dir.entries.insert(to_name.to_owned(), id);
        }
        state.collect_garbage();
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let id = state.lookup(path)?;
        if state.dir(id).is_none() {
            return Err(error(io::ErrorKind::NotADirectory, path.display()));
        }
        state.check_sync()?;
        if let Some(dir) = state.dir_mut(id) {
            dir.durable_entries = dir.entries.clone();
        }
        state.collect_garbage();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use myelin_client::records::encode_batch;
    use myelin_client::{BatchOptions, NewRecord};
    use myelin_core::api::AppendedBatch;
    use myelin_core::metadata::TopicPartition;
    use myelin_node::storage::file::FileStorage;
    use myelin_node::storage::Storage;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn crash(fs: &SimFileSystem, spec: CrashSpec) -> PowerLossReport {
        fs.crash(&spec, &mut rng())
    }

    /// A file system with a durable directory `/d`.
    fn with_dir() -> SimFileSystem {
        let fs = SimFileSystem::new();
        fs.create_dir(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs
    }

    /// Creates `path` (its entry durable) with `bytes`, synced.
    fn durable_file(fs: &SimFileSystem, path: &str, bytes: &[u8]) {
        let file = fs.open(Path::new(path), OpenMode::CreateNew).unwrap();
        file.write_all_at(bytes, 0).unwrap();
        file.sync_data().unwrap();
        fs.sync_dir(Path::new(path).parent().unwrap()).unwrap();
    }

    fn contents(fs: &SimFileSystem, path: &str) -> Option<Vec<u8>> {
        fs.contents(Path::new(path))
    }

    #[test]
    fn an_unsynced_write_is_lost_and_a_synced_one_kept() {
        for sync in [false, true] {
            let fs = with_dir();
            durable_file(&fs, "/d/f", b"");
            let file = fs.open(Path::new("/d/f"), OpenMode::ReadWrite).unwrap();
            file.write_all_at(b"hello", 0).unwrap();
            if sync {
                file.sync_data().unwrap();
            }
            assert_eq!(fs.unsynced_bytes(), if sync { 0 } else { 5 });
            let report = crash(&fs, CrashSpec::default());
            let expected: &[u8] = if sync { b"hello" } else { b"" };
            assert_eq!(contents(&fs, "/d/f").unwrap(), expected, "sync {sync}");
            assert_eq!(report.bytes_lost, if sync { 0 } else { 5 });
            // The handle died with the power.
            assert!(file.write_all_at(b"x", 0).is_err());
            assert!(file.len().is_err());
        }
    }

    #[test]
    fn a_sync_covers_the_writes_before_it_only() {
        let fs = with_dir();
        durable_file(&fs, "/d/f", b"");
        let file = fs.open(Path::new("/d/f"), OpenMode::ReadWrite).unwrap();
        file.write_all_at(b"AAAA", 0).unwrap();
        file.sync_all().unwrap();
        file.write_all_at(b"BBBB", 4).unwrap();
        file.write_all_at(b"aa", 0).unwrap();
        assert_eq!(contents(&fs, "/d/f").unwrap(), b"aaAABBBB");
        assert_eq!(
            fs.files(),
            vec![FileInfo {
                path: PathBuf::from("/d/f"),
                len: 8,
                durable_len: 4
            }]
        );
        crash(&fs, CrashSpec::default());
        assert_eq!(contents(&fs, "/d/f").unwrap(), b"AAAA");
    }

    #[test]
    fn a_new_file_survives_only_once_its_directory_is_synced() {
        for sync_dir in [false, true] {
            let fs = with_dir();
            let file = fs.open(Path::new("/d/new"), OpenMode::CreateNew).unwrap();
            file.write_all_at(b"data", 0).unwrap();
            file.sync_data().unwrap();
            if sync_dir {
                fs.sync_dir(Path::new("/d")).unwrap();
            }
            let report = crash(&fs, CrashSpec::default());
            assert_eq!(fs.exists(Path::new("/d/new")), sync_dir);
            assert_eq!(report.files_lost, u64::from(!sync_dir));
            if sync_dir {
                assert_eq!(contents(&fs, "/d/new").unwrap(), b"data");
            }
        }
        // Kept when the crash keeps unsynced directory operations.
        let fs = with_dir();
        fs.open(Path::new("/d/new"), OpenMode::CreateNew).unwrap();
        crash(
            &fs,
            CrashSpec {
                keep_unsynced_directory_ops: true,
                ..CrashSpec::default()
            },
        );
        assert_eq!(contents(&fs, "/d/new").unwrap(), b"");
    }

    #[test]
    fn a_new_directory_survives_only_once_its_parent_is_synced() {
        let fs = SimFileSystem::new();
        fs.create_dir_all(Path::new("/a/b")).unwrap();
        fs.sync_dir(Path::new("/a")).unwrap();
        crash(&fs, CrashSpec::default());
        assert!(!fs.exists(Path::new("/a")));
        fs.create_dir_all(Path::new("/a/b")).unwrap();
        fs.sync_dir(Path::new("/a")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        crash(&fs, CrashSpec::default());
        assert!(fs.exists(Path::new("/a/b")));
    }

    #[test]
    fn a_rename_is_durable_after_sync_dir_and_replaces_atomically() {
        for sync_dir in [false, true] {
            let fs = with_dir();
            durable_file(&fs, "/d/target", b"old");
            let temp = fs
                .open(Path::new("/d/target.tmp"), OpenMode::WriteTruncate)
                .unwrap();
            temp.write_all_at(b"new!", 0).unwrap();
            temp.sync_all().unwrap();
            // Both names durable before the rename, so that a crash can show either.
            fs.sync_dir(Path::new("/d")).unwrap();
            fs.rename(Path::new("/d/target.tmp"), Path::new("/d/target"))
                .unwrap();
            // At once, readers see the new file only.
            assert_eq!(contents(&fs, "/d/target").unwrap(), b"new!");
            assert!(!fs.exists(Path::new("/d/target.tmp")));
            // The handle follows the inode to its new name.
            temp.write_all_at(b"?", 3).unwrap();
            assert_eq!(contents(&fs, "/d/target").unwrap(), b"new?");
            if sync_dir {
                fs.sync_dir(Path::new("/d")).unwrap();
            }
            crash(&fs, CrashSpec::default());
            if sync_dir {
                assert_eq!(contents(&fs, "/d/target").unwrap(), b"new!");
                assert!(!fs.exists(Path::new("/d/target.tmp")));
            } else {
                assert_eq!(contents(&fs, "/d/target").unwrap(), b"old");
                assert_eq!(contents(&fs, "/d/target.tmp").unwrap(), b"new!");
            }
        }
    }

    #[test]
    fn a_removed_file_comes_back_unless_its_directory_is_synced() {
        for sync_dir in [false, true] {
            let fs = with_dir();
            durable_file(&fs, "/d/f", b"kept");
            let handle = fs.open(Path::new("/d/f"), OpenMode::ReadWrite).unwrap();
            fs.remove_file(Path::new("/d/f")).unwrap();
            assert!(!fs.exists(Path::new("/d/f")));
            assert_eq!(
                fs.remove_file(Path::new("/d/f")).unwrap_err().kind(),
                io::ErrorKind::NotFound
            );
            // The open handle outlives the entry.
            let mut buf = [0; 4];
            handle.read_exact_at(&mut buf, 0).unwrap();
            assert_eq!(&buf, b"kept");
            handle.write_all_at(b"more", 4).unwrap();
            if sync_dir {
                fs.sync_dir(Path::new("/d")).unwrap();
            }
            crash(&fs, CrashSpec::default());
            assert_eq!(fs.exists(Path::new("/d/f")), !sync_dir);
            if !sync_dir {
                assert_eq!(contents(&fs, "/d/f").unwrap(), b"kept");
            }
        }
    }

    #[test]
    fn a_removed_directory_comes_back_unless_its_parent_is_synced() {
        let fs = with_dir();
        durable_file(&fs, "/d/f", b"x");
        fs.remove_dir_all(Path::new("/d")).unwrap();
        assert!(!fs.exists(Path::new("/d/f")));
        crash(&fs, CrashSpec::default());
        assert_eq!(contents(&fs, "/d/f").unwrap(), b"x");
        fs.remove_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        crash(&fs, CrashSpec::default());
        assert!(!fs.exists(Path::new("/d")));
    }

    #[test]
    fn the_last_unsynced_write_is_torn_as_the_spec_says() {
        for mode in [TearMode::Truncated, TearMode::ZeroedTail] {
            let fs = with_dir();
            durable_file(&fs, "/d/f", b"0123");
            let file = fs.open(Path::new("/d/f"), OpenMode::ReadWrite).unwrap();
            file.write_all_at(b"4567", 4).unwrap();
            file.write_all_at(b"89abcdefgh", 8).unwrap();
            let report = crash(
                &fs,
                CrashSpec {
                    tear: Some(Tear {
                        mode,
                        kept_per_mille: 300,
                    }),
                    keep_unsynced_directory_ops: false,
                },
            );
            assert_eq!(report.torn_writes, 1);
            let expected: &[u8] = match mode {
                TearMode::Truncated => b"0123456789a",
                TearMode::ZeroedTail => b"0123456789a\0\0\0\0\0\0\0",
            };
            assert_eq!(contents(&fs, "/d/f").unwrap(), expected, "{mode:?}");
            // "bcdefgh" is gone in both modes (cut, or zeroed).
            assert_eq!(report.bytes_lost, 7);
        }
    }

    #[test]
    fn a_failed_sync_sticks_until_a_crash() {
        let fs = with_dir();
        durable_file(&fs, "/d/f", b"");
        let file = fs.open(Path::new("/d/f"), OpenMode::ReadWrite).unwrap();
        file.write_all_at(b"lost", 0).unwrap();
        assert!(!fs.take_sync_failure());
        fs.fail_next_sync();
        assert!(file.sync_data().is_err());
        assert!(fs.take_sync_failure());
        assert!(!fs.take_sync_failure());
        assert!(file.sync_all().is_err());
        assert!(fs.sync_dir(Path::new("/d")).is_err());
        assert!(fs.take_sync_failure());
        crash(&fs, CrashSpec::default());
        // Nothing the failed syncs covered became durable.
        assert_eq!(contents(&fs, "/d/f").unwrap(), b"");
        let file = fs.open(Path::new("/d/f"), OpenMode::ReadWrite).unwrap();
        file.write_all_at(b"kept", 0).unwrap();
        file.sync_data().unwrap();
        assert!(!fs.take_sync_failure());
    }

    #[test]
    fn injected_read_failures_fail_the_next_reads() {
        let fs = with_dir();
        durable_file(&fs, "/d/f", b"abc");
        let file = fs.open(Path::new("/d/f"), OpenMode::ReadWrite).unwrap();
        fs.fail_reads(2);
        let mut buf = [0; 3];
        assert!(file.read_exact_at(&mut buf, 0).is_err());
        assert!(fs.read(Path::new("/d/f")).is_err());
        file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"abc");
        assert_eq!(fs.read(Path::new("/d/f")).unwrap(), b"abc");
        assert_eq!(
            file.read_exact_at(&mut buf, 1).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn errors_have_the_kinds_the_engine_tests_for() {
        let fs = with_dir();
        let kind = |result: io::Result<SimFile>| result.unwrap_err().kind();
        assert_eq!(
            kind(fs.open(Path::new("/d/f"), OpenMode::ReadWrite)),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(fs.open(Path::new("/nope/f"), OpenMode::CreateNew)),
            io::ErrorKind::NotFound
        );
        fs.open(Path::new("/d/f"), OpenMode::CreateNew).unwrap();
        assert_eq!(
            kind(fs.open(Path::new("/d/f"), OpenMode::CreateNew)),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            fs.create_dir(Path::new("/d")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.create_dir(Path::new("/d/e")).unwrap();
        assert_eq!(
            fs.rename(Path::new("/d"), Path::new("/d/e/d"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        fs.remove_dir_all(Path::new("/d/e")).unwrap();
        let write_only = fs.open(Path::new("/d/f"), OpenMode::WriteTruncate).unwrap();
        assert!(write_only.read_exact_at(&mut [0; 1], 0).is_err());
        let names: Vec<_> = fs
            .read_dir(Path::new("/"))
            .unwrap()
            .into_iter()
            .map(|entry| (entry.name, entry.kind))
            .collect();
        assert_eq!(names, vec![(OsString::from("d"), EntryKind::Dir)]);
    }

    fn partition() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// Appends a one-record batch at `position` of segment 0; returns its size.
    fn append(storage: &dyn Storage, base_offset: i64, position: u32) -> u32 {
        try_append(storage, 0, base_offset, position).unwrap()
    }

    /// Appends a one-record batch at `position` of segment `segment`; returns its size.
    fn try_append(
        storage: &dyn Storage,
        segment: i64,
        base_offset: i64,
        position: u32,
    ) -> Result<u32, myelin_node::storage::StorageError> {
        let bytes: Bytes = encode_batch(
            &[NewRecord {
                value: Some(Bytes::from(format!("value {base_offset}"))),
                ..Default::default()
            }],
            &BatchOptions::default(),
        )
        .unwrap();
        let batch = AppendedBatch {
            segment_base_offset: segment,
            position,
            base_offset,
            last_offset: base_offset,
            max_timestamp: 0,
            leader_epoch: 0,
        };
        storage.append(&partition(), &batch, &bytes)?;
        Ok(bytes.len() as u32)
    }

    /// A fresh storage on `fs`: one partition, batches 0..3 appended and synced, 3..5
    /// appended after the sync.
    fn write_three_synced_two_not(fs: &SimFileSystem) {
        let storage = FileStorage::open_on(fs.clone(), Path::new("/data")).unwrap();
        storage.recover().unwrap();
        storage.create_partition(&partition(), 0).unwrap();
        let mut position = 0;
        for offset in 0..3 {
            position += append(&storage, offset, position);
        }
        storage.sync().unwrap();
        for offset in 3..5 {
            position += append(&storage, offset, position);
        }
    }

    fn recovered_offsets(fs: &SimFileSystem) -> Vec<i64> {
        let storage = FileStorage::open_on(fs.clone(), Path::new("/data")).unwrap();
        let recovered = storage.recover().unwrap();
        assert_eq!(recovered.partitions.len(), 1);
        recovered.partitions[0]
            .segments
            .iter()
            .flat_map(|segment| segment.batches.iter().map(|batch| batch.header.base_offset))
            .collect()
    }

    #[test]
    fn file_storage_recovers_exactly_the_synced_batches() {
        for tear in [
            None,
            Some(Tear {
                mode: TearMode::Truncated,
                kept_per_mille: 500,
            }),
            Some(Tear {
                mode: TearMode::ZeroedTail,
                kept_per_mille: 500,
            }),
        ] {
            for keep_unsynced_directory_ops in [false, true] {
                let fs = SimFileSystem::new();
                write_three_synced_two_not(&fs);
                assert!(fs.unsynced_bytes() > 0);
                let spec = CrashSpec {
                    tear,
                    keep_unsynced_directory_ops,
                };
                let report = crash(&fs, spec);
                assert!(report.bytes_lost > 0, "{spec:?}");
                assert_eq!(report.torn_writes > 0, tear.is_some(), "{spec:?}");
                // Without a tear exactly the synced batches survive. With one, each file's
                // unsynced writes but the last reach the disk: batch 3 whole, then the
                // header prefix of batch 4 with a torn body, which recovery cuts.
                let expected = match tear {
                    None => vec![0, 1, 2],
                    Some(_) => vec![0, 1, 2, 3],
                };
                assert_eq!(recovered_offsets(&fs), expected, "{spec:?}");
                // Recovery made what it kept durable: a second power loss changes nothing.
                crash(&fs, CrashSpec::default());
                assert_eq!(recovered_offsets(&fs), expected, "{spec:?}");
            }
        }
    }

    #[test]
    fn held_batches_after_a_crash_are_what_recovery_keeps() {
        for tear in [
            None,
            Some(Tear {
                mode: TearMode::ZeroedTail,
                kept_per_mille: 500,
            }),
        ] {
            let fs = SimFileSystem::new();
            write_three_synced_two_not(&fs);
            crash(
                &fs,
                CrashSpec {
                    tear,
                    ..CrashSpec::default()
                },
            );
            let held = fs.held_batches(Path::new("/data"));
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].0, partition());
            let held_offsets: Vec<i64> = held[0].1.iter().map(|batch| batch.2).collect();
            assert_eq!(held_offsets, recovered_offsets(&fs), "{tear:?}");
            let stats = fs.stats();
            assert_eq!((stats.crashes, stats.torn_writes > 0), (1, tear.is_some()));
            assert!(
                stats.syncs > 0 && stats.bytes_lost_in_crashes > 0,
                "{stats:?}"
            );
        }
    }

    #[test]
    fn file_storage_keeps_a_partition_created_before_a_crash() {
        let fs = SimFileSystem::new();
        {
            let storage = FileStorage::open_on(fs.clone(), Path::new("/data")).unwrap();
            storage.recover().unwrap();
            storage.create_partition(&partition(), 0).unwrap();
        }
        crash(&fs, CrashSpec::default());
        assert_eq!(recovered_offsets(&fs), Vec::<i64>::new());
    }

    /// A life of a partition, stopped by a failed sync at any point: every step the engine
    /// takes with the file system. Returns the offsets a successful `sync` covered and every
    /// offset appended; stops at the first error.
    fn partition_life(fs: &SimFileSystem, acked: &mut Vec<i64>, written: &mut Vec<i64>) {
        use myelin_core::log::Truncation;
        use myelin_core::replication::ReplicaState;
        type Res = Result<(), myelin_node::storage::StorageError>;
        let mut run = || -> Res {
            let storage = FileStorage::open_on(fs.clone(), Path::new("/data"))?;
            storage.recover()?;
            storage.create_partition(&partition(), 0)?;
            storage.persist_replica_states(&[(
                partition(),
                ReplicaState {
                    epoch: 1,
                    voted_for: None,
                },
            )])?;
            let mut position = 0;
            let mut sizes = Vec::new();
            for offset in 0..3 {
                written.push(offset);
                let size = try_append(&storage, 0, offset, position)?;
                sizes.push(size);
                position += size;
            }
            storage.sync()?;
            acked.extend(0..3);
            storage.roll_segment(&partition(), 3)?;
            let mut position = 0;
            for offset in 3..5 {
                written.push(offset);
                position += try_append(&storage, 3, offset, position)?;
            }
            storage.sync()?;
            acked.extend(3..5);
            // Back to offset 2: segment 3 goes, segment 0 keeps offsets 0 and 1.
            acked.retain(|offset| *offset < 2);
            storage.truncate(
                &partition(),
                &Truncation {
                    deleted_segments: vec![3],
                    active_segment_base: 0,
                    active_segment_bytes: sizes[0] + sizes[1],
                },
            )?;
            written.push(2);
            try_append(&storage, 0, 2, sizes[0] + sizes[1])?;
            storage.sync()?;
            acked.push(2);
            storage.persist_metadata(&myelin_core::metadata::ClusterMetadata::new(
                "c",
                Vec::new(),
            ))?;
            Ok(())
        };
        let _ = run();
    }

    #[test]
    fn file_storage_recovers_after_a_power_loss_at_any_sync() {
        let specs = [
            CrashSpec::default(),
            CrashSpec {
                tear: None,
                keep_unsynced_directory_ops: true,
            },
            CrashSpec {
                tear: Some(Tear {
                    mode: TearMode::ZeroedTail,
                    kept_per_mille: 500,
                }),
                keep_unsynced_directory_ops: false,
            },
            CrashSpec {
                tear: Some(Tear {
                    mode: TearMode::Truncated,
                    kept_per_mille: 900,
                }),
                keep_unsynced_directory_ops: true,
            },
        ];
        let (mut failure_points, mut gaps) = (0, 0);
        for spec in specs {
            for fail_after in 0.. {
                let fs = SimFileSystem::new();
                fs.fail_sync_after(fail_after);
                let (mut acked, mut written) = (Vec::new(), Vec::new());
                partition_life(&fs, &mut acked, &mut written);
                if !fs.take_sync_failure() {
                    break;
                }
                failure_points += 1;
                crash(&fs, spec);
                let storage = FileStorage::open_on(fs.clone(), Path::new("/data"))
                    .unwrap_or_else(|error| panic!("{spec:?} at {fail_after}: {error}"));
                let recovered = storage
                    .recover()
                    .unwrap_or_else(|error| panic!("{spec:?} at {fail_after}: {error}"));
                let offsets: Vec<i64> = recovered
                    .partitions
                    .iter()
                    .flat_map(|partition| &partition.segments)
                    .flat_map(|segment| segment.batches.iter().map(|b| b.header.base_offset))
                    .collect();
                // The core keeps the log up to its first gap (and deletes the segments
                // after it): that much must hold every acknowledged offset.
                let contiguous: Vec<i64> = offsets
                    .iter()
                    .zip(0..)
                    .take_while(|(offset, expected)| **offset == *expected)
                    .map(|(offset, _)| *offset)
                    .collect();
                assert!(
                    contiguous.starts_with(&acked),
                    "{spec:?} at sync {fail_after}: recovered {offsets:?}, acked {acked:?}"
                );
                assert!(
                    offsets.iter().all(|offset| written.contains(offset)),
                    "{spec:?} at sync {fail_after}: recovered {offsets:?}, written {written:?}"
                );
                if contiguous.len() < offsets.len() {
                    gaps += 1;
                }
            }
        }
        assert!(failure_points > 20, "{failure_points}");
        eprintln!("{failure_points} failure points, {gaps} recoveries with a gap");
    }

    /// Recovery repairs (cuts a torn tail, rewrites indexes) and syncs what it repaired; a
    /// power loss in the middle of a recovery, at any of its syncs, must leave a state the
    /// next recovery handles the same way.
    #[test]
    fn a_power_loss_during_recovery_is_recovered_from() {
        let torn = CrashSpec {
            tear: Some(Tear {
                mode: TearMode::ZeroedTail,
                kept_per_mille: 500,
            }),
            keep_unsynced_directory_ops: false,
        };
        let mut failure_points = 0;
        for fail_after in 0.. {
            let fs = SimFileSystem::new();
            write_three_synced_two_not(&fs);
            crash(&fs, torn);
            fs.fail_sync_after(fail_after);
            let interrupted = FileStorage::open_on(fs.clone(), Path::new("/data"))
                .and_then(|storage| storage.recover().map(|_| ()));
            if !fs.take_sync_failure() {
                interrupted.unwrap();
                break;
            }
            assert!(interrupted.is_err());
            failure_points += 1;
            crash(&fs, torn);
            assert_eq!(
                recovered_offsets(&fs),
                vec![0, 1, 2, 3],
                "at sync {fail_after}"
            );
        }
        assert!(failure_points > 3, "{failure_points}");
    }

    /// Found by this model: `FileStorage::open_on` made durable the entries of the data
    /// directory and of its parent only; ancestors `create_dir_all` created above the parent
    /// stayed unsynced for ever, so a power loss could take the whole data directory,
    /// synced batches included. It now syncs the parent of every directory it creates.
    #[test]
    fn file_storage_keeps_synced_batches_under_a_new_nested_data_dir() {
        let fs = SimFileSystem::new();
        let data_dir = Path::new("/var/lib/myelin/data");
        {
            let storage = FileStorage::open_on(fs.clone(), data_dir).unwrap();
            storage.recover().unwrap();
            storage.create_partition(&partition(), 0).unwrap();
            append(&storage, 0, 0);
            storage.sync().unwrap();
        }
        crash(&fs, CrashSpec::default());
        let storage = FileStorage::open_on(fs.clone(), data_dir).unwrap();
        let recovered = storage.recover().unwrap();
        assert_eq!(
            recovered.partitions.len(),
            1,
            "the synced partition is gone"
        );
    }
}
