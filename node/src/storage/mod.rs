//! Storage: where the core's `StorageCommand`s meet a disk.
//!
//! The core decides every offset, position and segment boundary; storage only carries them
//! out and, at start, reports what it found (`recover`). One implementation:
//! `file::FileStorage` (segment files, offset and time indexes, fsync), which the real
//! binary runs on the operating system's file system and the simulator on a simulated one
//! with power-loss semantics (see `fs`).
//!
//! The contract the runtime relies on:
//! - `append` and the other mutating calls take effect in call order; an append is durable
//!   only after a later `sync` returns `Ok` (group commit: one `sync` covers every append
//!   issued before it started, whichever thread issued them).
//! - `persist_metadata` and `persist_replica_states` are durable when they return.
//! - `read` may run on any thread, concurrently with appends and syncs.
//! - A failed `sync` is fatal to the node: after an fsync error the page cache can no longer
//!   be trusted, so the runtime stops the node rather than acknowledge anything.

pub mod file;
pub mod fs;

use bytes::Bytes;
use myelin_core::api::{AppendedBatch, ReadChunk, RecoveredPartition};
use myelin_core::log::Truncation;
use myelin_core::metadata::{ClusterMetadata, TopicPartition};
use myelin_core::replication::ReplicaState;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("partition {0} is not open")]
    UnknownPartition(TopicPartition),
    #[error("segment {base_offset} of partition {partition} is not open")]
    UnknownSegment {
        partition: TopicPartition,
        base_offset: i64,
    },
    #[error("metadata file {path} is corrupt: {reason}")]
    CorruptMetadata { path: String, reason: String },
    /// Bytes below a partition's recovery point (synced and checked before) that no longer
    /// read back as they were written: fail-stop, nothing is cut.
    #[error(
        "{path} is damaged at byte {position} (offset {offset}), below its partition's \
         recovery point at byte {recovery_point}: {reason}"
    )]
    DamagedBelowRecoveryPoint {
        path: String,
        position: u64,
        offset: i64,
        recovery_point: u64,
        reason: String,
    },
    /// Stored data the core found wrong (`myelin_core::api::CorruptData`), where it lies.
    #[error("corrupt data in {location} at offset {offset}: {reason}")]
    CorruptData {
        location: String,
        offset: i64,
        reason: String,
    },
}

impl StorageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Reads `chunk` and checks each batch in it as it was checked when written (lengths,
/// CRC-32C): a damaged batch is never sent to a client or a follower. The error names the
/// segment file, the batch's offset and its position in the file.
pub fn read_verified(
    storage: &dyn Storage,
    partition: &TopicPartition,
    chunk: &ReadChunk,
) -> StorageResult<Bytes> {
    let bytes = storage.read(partition, chunk)?;
    let mut checked = 0usize;
    for batch in myelin_core::batch::record_set_batches(&bytes) {
        match batch {
            Ok((_, batch)) => checked += batch.len(),
            Err(error) => {
                // The base offset lies outside the CRC: it may be damaged too.
                let offset = bytes
                    .get(checked..checked + 8)
                    .and_then(|field| field.try_into().ok())
                    .map_or(-1, i64::from_be_bytes);
                let position = u64::from(chunk.position) + checked as u64;
                let location = storage.locate(partition, offset.max(chunk.segment_base_offset));
                return Err(StorageError::CorruptData {
                    location,
                    offset,
                    reason: format!(
                        "the stored batch at position {position} fails its check ({error})"
                    ),
                });
            }
        }
    }
    Ok(bytes)
}

/// What storage found at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// `None` on a fresh data directory.
    pub metadata: Option<ClusterMetadata>,
    pub partitions: Vec<RecoveredPartition>,
}

/// A partition's durable home. See the module doc for the contract.
pub trait Storage: Send + Sync + 'static {
    /// Scans the data directory: validates every segment's tail batch by batch, truncates a
    /// torn tail, rebuilds missing or stale indexes, and reports what it kept.
    fn recover(&self) -> StorageResult<Recovered>;
    fn create_partition(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()>;
    fn delete_partition(&self, partition: &TopicPartition) -> StorageResult<()>;
    /// Writes `bytes` at `batch.position` of segment `batch.segment_base_offset` (always the
    /// active segment's end), with `batch.base_offset` and `batch.leader_epoch` written into
    /// its header (`myelin_core::batch::stored_header_prefix`), and adds
    /// the batch to the segment's offset and time indexes.
    fn append(
        &self,
        partition: &TopicPartition,
        batch: &AppendedBatch,
        bytes: &Bytes,
    ) -> StorageResult<()>;
    fn roll_segment(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()>;
    /// Deletes one whole segment: the oldest (retention) or any but the active one (the
    /// segments after a gap found at recovery).
    fn delete_segment(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()>;
    /// Drops every segment and starts the log over, empty, at `base_offset`, past every
    /// segment held (see `StorageCommand::RestartLog`); durable on return.
    fn restart_log(&self, partition: &TopicPartition, base_offset: i64) -> StorageResult<()>;
    /// Cuts the log to `truncation` (see `StorageCommand::Truncate`); durable on return.
    fn truncate(&self, partition: &TopicPartition, truncation: &Truncation) -> StorageResult<()>;
    /// Replaces the replica states of these partitions, all in one write; durable on
    /// return. A deleted partition's state goes with it (`delete_partition`).
    fn persist_replica_states(
        &self,
        states: &[(TopicPartition, ReplicaState)],
    ) -> StorageResult<()>;
    /// Makes every append issued before this call durable (fsync of data and indexes).
    fn sync(&self) -> StorageResult<()>;
    fn read(&self, partition: &TopicPartition, chunk: &ReadChunk) -> StorageResult<Bytes>;
    fn persist_metadata(&self, metadata: &ClusterMetadata) -> StorageResult<()>;
    /// Where `offset` of `partition` is stored, for error messages: the segment file that
    /// holds it (the partition's directory if no segment does).
    fn locate(&self, partition: &TopicPartition, offset: i64) -> String;
    /// Records, durably, that DeleteRecords deleted the partition's records below
    /// `offset`; recovery reports it (`RecoveredPartition::deleted_below`).
    fn persist_deleted_below(&self, partition: &TopicPartition, offset: i64) -> StorageResult<()>;
    /// The directory holding every partition (DescribeLogDirs names it).
    fn data_dir(&self) -> &std::path::Path;
}
