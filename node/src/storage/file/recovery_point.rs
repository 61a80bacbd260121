//! Recovery points, as Kafka's recovery-point-offset-checkpoint: for each partition, the
//! place in its log (a segment and a byte position in it) below which every byte was synced,
//! with its indexes, before the point was written down. Recovery trusts what lies below it
//! (loads it from the indexes, fail-stop on any disagreement) and scans only what lies past
//! it, so a restart reads each partition's tail, not its whole active segment.
//!
//! One file for the data directory, `recovery-points.json`, replaced whole and durably
//! (temporary file, fsync, rename, fsync of the directory). A point is only ever written
//! once the bytes below it are durable, and it is lowered on disk before a truncation or a
//! deletion could leave it above what the partition holds.

use super::{partition_table, read_json_file, StorageError, StorageResult};
use crate::storage::fs::FileSystem;
use myelin_core::metadata::TopicPartition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The recovery points, in the data directory.
pub(super) const RECOVERY_POINTS_FILE: &str = "recovery-points.json";
/// Bytes appended, all partitions together, after which a sync also writes the recovery
/// points: this bounds what a restart after a crash scans, at the cost of one small durable
/// write per that many bytes.
pub(super) const CHECKPOINT_INTERVAL_BYTES: u64 = 128 << 20;
/// The file format's version; another one is refused, not guessed at.
const FORMAT_VERSION: u32 = 1;

/// Where a partition's trusted prefix ends: every segment below `segment_base_offset` whole,
/// and that segment's first `position` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RecoveryPoint {
    pub(super) segment_base_offset: i64,
    pub(super) position: u32,
}

/// The recovery points of every partition that has one.
pub(super) type RecoveryPoints = BTreeMap<TopicPartition, RecoveryPoint>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryPointsDocument {
    version: u32,
    points: Vec<PartitionPoint>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionPoint {
    topic: String,
    partition: i32,
    segment_base_offset: i64,
    position: u32,
}

/// The recovery points in `data_dir`; none when the file does not exist (a data directory
/// written before recovery points, or never synced: everything is scanned). A file that does
/// not parse is an error naming it, never an empty map: trusting nothing would be safe, but
/// a damaged file means something else is wrong with the disk.
pub(super) fn read_recovery_points<F: FileSystem>(
    fs: &F,
    data_dir: &Path,
) -> StorageResult<RecoveryPoints> {
    let path = data_dir.join(RECOVERY_POINTS_FILE);
    let Some(document) = read_json_file::<F, RecoveryPointsDocument>(fs, &path)? else {
        return Ok(RecoveryPoints::new());
    };
    let entries = document.points.into_iter().map(|entry| {
        let point = if entry.segment_base_offset < 0 {
            Err(format!(
                "negative segment base offset {}",
                entry.segment_base_offset
            ))
        } else {
            Ok(RecoveryPoint {
                segment_base_offset: entry.segment_base_offset,
                position: entry.position,
            })
        };
        (TopicPartition::new(entry.topic, entry.partition), point)
    });
    partition_table(&path, document.version, FORMAT_VERSION, entries)
}

/// The file's contents for `points`.
pub(super) fn encode_recovery_points(points: &RecoveryPoints) -> StorageResult<Vec<u8>> {
    let document = RecoveryPointsDocument {
        version: FORMAT_VERSION,
        points: points
            .iter()
            .map(|(partition, point)| PartitionPoint {
                topic: partition.topic.clone(),
                partition: partition.partition,
                segment_base_offset: point.segment_base_offset,
                position: point.position,
            })
            .collect(),
    };
    serde_json::to_vec(&document)
        .map_err(|error| StorageError::io("encode recovery points", std::io::Error::other(error)))
}
