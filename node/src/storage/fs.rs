//! The file-system operations `file::FileStorage` performs, behind a narrow trait.
//!
//! One storage engine, two file systems: the node runs `FileStorage` over the operating
//! system's ([`OsFileSystem`]); the simulator runs the same code over a simulated file
//! system with power-loss semantics (`SimFileSystem` in the `myelin-sim` crate). The trait
//! holds only what the storage engine uses, so that a second implementation has little to
//! model.
//!
//! # Contract
//! Every implementation must honour, as POSIX file systems do:
//! - A write (`write_all_at`, `set_len`, the emptying of a `WriteTruncate` open) is visible
//!   at once to every later read of the same file, through any handle, but durable (it
//!   survives a power loss) only after a later `sync_data` or `sync_all` of that file returns
//!   `Ok`. Until then a power loss may keep any part of it, or none.
//! - `sync_data` makes the file's bytes and its size durable; `sync_all` also the rest of its
//!   metadata.
//! - A directory entry created (`open` in a creating mode, `create_dir`, `create_dir_all`),
//!   renamed (`rename`: its old and its new name) or removed (`remove_file`,
//!   `remove_dir_all`) is durable only after a later `sync_dir` of the directory holding it
//!   returns `Ok`. (The engine renames only within one directory.)
//! - `rename` replaces its target atomically: a reader, or a power loss, sees the old file or
//!   the new one, never a mix.
//! - An open file stays readable and writable after its entry is removed, until the last
//!   handle to it is dropped.
//! - Errors are `io::Error`s whose kinds mean what the operating system's mean; the storage
//!   engine tests for `NotFound` and `AlreadyExists`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How `FileSystem::open` opens a file. Every handle can read and write except a
/// `WriteTruncate` one, which can only write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading and writing (`NotFound` if it is missing).
    ReadWrite,
    /// A new file, for reading and writing (`AlreadyExists` if it is there).
    CreateNew,
    /// The file, created empty if it is missing; existing contents are kept.
    ReadWriteCreate,
    /// The file, created if missing and emptied, for writing only.
    WriteTruncate,
}

/// What an entry of a directory is. Symbolic links are not followed: one is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Other,
}

/// One entry of a directory, as `FileSystem::read_dir` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name, without its directory.
    pub name: OsString,
    pub kind: EntryKind,
}

/// The file-system operations of the storage engine. See the module doc for the contract.
pub trait FileSystem: Send + Sync + 'static {
    type File: FsFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    /// Creates one directory; its parent must exist.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and any missing parents; no error if it exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` names anything; `false` too when that cannot be told (as `Path::exists`).
    fn exists(&self, path: &Path) -> bool;
    /// The entries of a directory (without `.` and `..`), in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// A whole file's contents.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Moves `from` to `to`, replacing `to` atomically if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the entries of directory `path` (created, renamed, removed) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// `sync_data` of every file; on failure, the index of a file whose sync failed. The
    /// files are synced one after another unless the file system does better.
    fn sync_data_of(&self, files: &[&Self::File]) -> Result<(), (usize, io::Error)> {
        for (index, file) in files.iter().enumerate() {
            file.sync_data().map_err(|error| (index, error))?;
        }
        Ok(())
    }
}

/// Files `OsFileSystem::sync_data_of` syncs at once at most.
const PARALLEL_SYNCS_MAX: usize = 16;

/// An open file. Positional reads and writes only: a handle has no cursor, so one can be
/// shared by threads.
// `len` is a fallible query of a file, not a collection's size: an `is_empty` would add
// nothing the engine uses.
#[allow(clippy::len_without_is_empty)]
pub trait FsFile: Send + Sync + 'static {
    /// Fills `buf` from `offset`; `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current size, unsynced writes included.
    fn len(&self) -> io::Result<u64>;
    /// Makes the file's bytes and size durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's bytes and all its metadata durable.
    fn sync_all(&self) -> io::Result<()>;
}

/// The operating system's file system, through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFileSystem;

impl FileSystem for OsFileSystem {
    type File = File;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
            OpenMode::ReadWriteCreate => {
                options.read(true).write(true).create(true).truncate(false)
            }
            OpenMode::WriteTruncate => options.write(true).create(true).truncate(true),
        };
        options.open(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }

    /// In parallel, up to `PARALLEL_SYNCS_MAX` at once: the file system commits concurrent
    /// fsyncs together, so syncing 16 files this way took a fifth of the time of syncing
    /// them in turn on this project's machine (100 files: an eighth), and a sync's cost no
    /// longer grows with the number of partitions written.
    fn sync_data_of(&self, files: &[&File]) -> Result<(), (usize, io::Error)> {
        if files.len() <= 1 {
            return files
                .first()
                .map_or(Ok(()), |file| file.sync_data().map_err(|error| (0, error)));
        }
        let per_thread = files.len().div_ceil(PARALLEL_SYNCS_MAX);
        std::thread::scope(|scope| {
            let workers: Vec<_> = files
                .chunks(per_thread)
                .enumerate()
                .map(|(chunk_index, chunk)| {
                    scope.spawn(move || {
                        for (index, file) in chunk.iter().enumerate() {
                            file.sync_data()
                                .map_err(|error| (chunk_index * per_thread + index, error))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            let mut outcome = Ok(());
            for worker in workers {
                let result = worker.join().unwrap_or_else(|_| {
                    Err((0, io::Error::other("a thread syncing files panicked")))
                });
                if outcome.is_ok() {
                    outcome = result;
                }
            }
            outcome
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        fs::read_dir(path)?
            .map(|entry| {
                let entry = entry?;
                // `DirEntry::file_type` does not follow symbolic links.
                let file_type = entry.file_type()?;
                let kind = if file_type.is_dir() {
                    EntryKind::Dir
                } else if file_type.is_file() {
                    EntryKind::File
                } else {
                    EntryKind::Other
                };
                Ok(DirEntry {
                    name: entry.file_name(),
                    kind,
                })
            })
            .collect()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // On Linux a directory is fsynced through a read-only handle to it.
        File::open(path)?.sync_all()
    }
}

impl FsFile for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_files_are_synced_in_parallel_and_each_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFileSystem;
        let files: Vec<File> = (0..40)
            .map(|index| {
                let file = fs
                    .open(&dir.path().join(format!("{index}")), OpenMode::CreateNew)
                    .unwrap();
                FsFile::write_all_at(&file, format!("file {index}").as_bytes(), 0).unwrap();
                file
            })
            .collect();
        let handles: Vec<&File> = files.iter().collect();
        fs.sync_data_of(&handles).unwrap();
        fs.sync_data_of(&handles[..1]).unwrap();
        fs.sync_data_of(&[]).unwrap();
        for index in 0..40 {
            let text = fs.read(&dir.path().join(format!("{index}"))).unwrap();
            assert_eq!(text, format!("file {index}").into_bytes());
        }
    }
}
