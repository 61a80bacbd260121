//! Storage: where the core's `StorageCommand`s meet a disk.
//!
//! The core decides every offset, position and segment boundary; storage only carries them
//! out and, at start, reports what it found (`recover`). Two implementations share this
//! trait: `file::FileStorage` (segment files, offset and time indexes, fsync) for the real
//! binary, and, in the simulator, an in-memory disk with a crash model.
//!
//! The contract the runtime relies on:
//! - `append` and the other mutating calls take effect in call order; an append is durable
//!   only after a later `sync` returns `Ok` (group commit: one `sync` covers every append
//!   issued before it started, whichever thread issued them).
//! - `persist_metadata` is durable when it returns.
//! - `read` may run on any thread, concurrently with appends and syncs.
//! - A failed `sync` is fatal to the node: after an fsync error the page cache can no longer
//!   be trusted, so the runtime stops the node rather than acknowledge anything.

pub mod file;

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
    /// Cuts the log to `truncation` (see `StorageCommand::Truncate`); durable on return.
    fn truncate(&self, partition: &TopicPartition, truncation: &Truncation) -> StorageResult<()>;
    /// Replaces the partition's replica state; durable on return.
    fn persist_replica_state(
        &self,
        partition: &TopicPartition,
        state: &ReplicaState,
    ) -> StorageResult<()>;
    /// Makes every append issued before this call durable (fsync of data and indexes).
    fn sync(&self) -> StorageResult<()>;
    fn read(&self, partition: &TopicPartition, chunk: &ReadChunk) -> StorageResult<Bytes>;
    fn persist_metadata(&self, metadata: &ClusterMetadata) -> StorageResult<()>;
}
