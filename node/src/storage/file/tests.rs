//! Tests of `FileStorage`: round trips, torn tails, rebuilt indexes, garbage on disk, and
//! concurrency. Batches come from a minimal local builder of valid magic-2 batches.

use super::layout::{segment_file_name, SegmentFileKind};
use super::recovery::RecoveryStats;
use super::*;
use crate::storage::fs::DirEntry;
use myelin_core::api::{RecoveredBatch, RecoveredPartition, RecoveredSegment};
use myelin_core::batch::{validate, BatchHeader};
use myelin_core::metadata::NodeInfo;
use proptest::prelude::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::atomic::AtomicUsize;
use tempfile::TempDir;

/// A valid magic-2 batch whose records section is `payload_bytes` opaque bytes (storage never
/// looks inside records), base offset 0 as a client sends it.
fn build_batch(
    record_count: i32,
    payload_bytes: usize,
    timestamp: i64,
    producer_id: i64,
    base_sequence: i32,
) -> Bytes {
    let mut body = Vec::new(); // from the attributes on: what the CRC covers
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(record_count - 1).to_be_bytes());
    body.extend_from_slice(&timestamp.to_be_bytes());
    body.extend_from_slice(&(timestamp + 5).to_be_bytes());
    body.extend_from_slice(&producer_id.to_be_bytes());
    body.extend_from_slice(&3i16.to_be_bytes());
    body.extend_from_slice(&base_sequence.to_be_bytes());
    body.extend_from_slice(&record_count.to_be_bytes());
    body.extend((0..payload_bytes).map(|index| (index * 7 + payload_bytes) as u8));
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes());
    batch.extend_from_slice(&((4 + 1 + 4 + body.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&9i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    batch.extend_from_slice(&body);
    Bytes::from(batch)
}

/// Drives one partition the way the core would: tracks the active segment, its end and the
/// next offset, and remembers what it wrote.
struct Writer {
    partition: TopicPartition,
    segment_base_offset: i64,
    position: u32,
    next_offset: i64,
    /// Every batch written, with its bytes as they are on disk (base offset patched).
    written: Vec<(AppendedBatch, Bytes)>,
}

impl Writer {
    fn create<F: FileSystem>(storage: &FileStorage<F>, partition: TopicPartition) -> Writer {
        storage.create_partition(&partition, 0).unwrap();
        Writer::create_at(&partition, 0)
    }

    /// A writer of a partition whose (empty) active segment is at `base_offset` already.
    fn create_at(partition: &TopicPartition, base_offset: i64) -> Writer {
        Writer {
            partition: partition.clone(),
            segment_base_offset: base_offset,
            position: 0,
            next_offset: base_offset,
            written: Vec::new(),
        }
    }

    fn append<F: FileSystem>(
        &mut self,
        storage: &FileStorage<F>,
        record_count: i32,
        payload_bytes: usize,
    ) -> AppendedBatch {
        let sequence = self.next_offset as i32;
        let bytes = build_batch(
            record_count,
            payload_bytes,
            1_000 + self.next_offset,
            42,
            sequence,
        );
        let batch = AppendedBatch {
            segment_base_offset: self.segment_base_offset,
            position: self.position,
            base_offset: self.next_offset,
            last_offset: self.next_offset + i64::from(record_count) - 1,
            max_timestamp: 1_005 + self.next_offset,
            leader_epoch: WRITER_LEADER_EPOCH,
        };
        storage.append(&self.partition, &batch, &bytes).unwrap();
        let mut on_disk = bytes.to_vec();
        on_disk[..8].copy_from_slice(&self.next_offset.to_be_bytes());
        on_disk[12..16].copy_from_slice(&WRITER_LEADER_EPOCH.to_be_bytes());
        self.written.push((batch, Bytes::from(on_disk)));
        self.position += bytes.len() as u32;
        self.next_offset = batch.last_offset + 1;
        batch
    }

    fn roll<F: FileSystem>(&mut self, storage: &FileStorage<F>) {
        storage
            .roll_segment(&self.partition, self.next_offset)
            .unwrap();
        self.segment_base_offset = self.next_offset;
        self.position = 0;
    }

    /// What recovery should report for the batches written so far, minus `dropped_tail`
    /// trailing batches.
    fn expected(&self, segment_bases: &[i64], keep: usize) -> RecoveredPartition {
        let segments = segment_bases
            .iter()
            .map(|&base_offset| RecoveredSegment {
                base_offset,
                batches: self
                    .written
                    .iter()
                    .take(keep)
                    .filter(|(batch, _)| batch.segment_base_offset == base_offset)
                    .map(|(batch, bytes)| RecoveredBatch {
                        position: batch.position,
                        header: validate(bytes).unwrap(),
                        control_type: myelin_core::records::control_record_type(bytes),
                    })
                    .collect(),
            })
            .collect();
        RecoveredPartition {
            partition: self.partition.clone(),
            segments,
            replica_state: None,
            deleted_below: None,
        }
    }

    fn segment_paths(&self, storage: &FileStorage, base_offset: i64) -> SegmentPaths {
        SegmentPaths::new(&storage.partition_dir(&self.partition), base_offset)
    }

    fn segment_paths_in(&self, dir: &TempDir, base_offset: i64) -> SegmentPaths {
        let partition_dir = dir
            .path()
            .join(TOPICS_DIR)
            .join(layout::partition_dir_name(&self.partition));
        SegmentPaths::new(&partition_dir, base_offset)
    }
}

/// Removes the recovery points, as in a data directory written before them: recovery then
/// scans and repairs as it did.
fn forget_recovery_points(dir: &TempDir) {
    fs::remove_file(dir.path().join(RECOVERY_POINTS_FILE)).unwrap();
}

fn reopen(dir: &TempDir) -> (FileStorage, Recovered, RecoveryStats) {
    let storage = FileStorage::open(dir.path()).unwrap();
    let (recovered, stats) = storage.recover_with_stats().unwrap();
    (storage, recovered, stats)
}

fn fresh() -> (TempDir, FileStorage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = FileStorage::open(dir.path()).unwrap();
    storage.recover().unwrap();
    (dir, storage)
}

fn chunk_of(batch: &AppendedBatch, bytes: &Bytes) -> ReadChunk {
    ReadChunk {
        segment_base_offset: batch.segment_base_offset,
        position: batch.position,
        length: bytes.len() as u32,
    }
}

fn append_garbage(path: &Path, garbage: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(garbage).unwrap();
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// Three segments of a few batches each, synced.
fn three_segments() -> (TempDir, Writer) {
    let (dir, storage) = fresh();
    let writer = write_three_segments(&storage);
    (dir, writer)
}

/// Writes and syncs the three segments of `three_segments` to a fresh `storage`.
fn write_three_segments(storage: &FileStorage) -> Writer {
    let mut writer = Writer::create(storage, TopicPartition::new("orders.v1-eu", 3));
    for segment in 0..3 {
        if segment > 0 {
            writer.roll(storage);
        }
        for batch in 0..4 {
            writer.append(storage, 1 + batch, 10 + 30 * batch as usize);
        }
    }
    storage.sync().unwrap();
    writer
}

const THREE_SEGMENT_BASES: [i64; 3] = [0, 10, 20];

#[test]
fn synced_batches_round_trip_across_segments_through_the_indexes() {
    let (dir, writer) = three_segments();
    let (storage, recovered, stats) = reopen(&dir);
    assert_eq!(recovered.metadata, None);
    assert_eq!(
        recovered.partitions,
        vec![writer.expected(&THREE_SEGMENT_BASES, usize::MAX)]
    );
    assert_eq!(
        stats.indexes_rebuilt, 0,
        "clean indexes are used as they are"
    );
    assert_eq!(stats.segments_truncated, 0);
    assert_eq!(stats.segments, 3);
    for (batch, bytes) in &writer.written {
        assert_eq!(
            &storage
                .read(&writer.partition, &chunk_of(batch, bytes))
                .unwrap(),
            bytes
        );
    }
}

#[test]
fn appends_continue_at_the_recovered_end_of_the_active_segment() {
    let (dir, mut writer) = three_segments();
    let (storage, _, _) = reopen(&dir);
    writer.append(&storage, 2, 50);
    storage.sync().unwrap();
    drop(storage);
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(
        recovered.partitions,
        vec![writer.expected(&THREE_SEGMENT_BASES, usize::MAX)]
    );
    assert_eq!(stats.indexes_rebuilt, 0);
}

#[test]
fn read_returns_the_written_bytes_with_the_base_offset_patched() {
    let (_dir, storage) = fresh();
    let mut writer = Writer::create(&storage, TopicPartition::new("t", 0));
    writer.append(&storage, 3, 20);
    writer.append(&storage, 2, 0);
    let (batch, bytes) = writer.written[1].clone();
    let read = storage
        .read(&writer.partition, &chunk_of(&batch, &bytes))
        .unwrap();
    assert_eq!(read, bytes);
    assert_eq!(validate(&read).unwrap().base_offset, 3);
    // Both batches in one chunk, as a fetch asks for them.
    let both = ReadChunk {
        segment_base_offset: 0,
        position: 0,
        length: (writer.written[0].1.len() + bytes.len()) as u32,
    };
    let read = storage.read(&writer.partition, &both).unwrap();
    assert_eq!(&read[..writer.written[0].1.len()], &writer.written[0].1[..]);
    // Past the end, an unknown segment or partition: errors, not short reads.
    let past = ReadChunk {
        length: both.length + 1,
        ..both
    };
    assert!(storage.read(&writer.partition, &past).is_err());
    let elsewhere = ReadChunk {
        segment_base_offset: 7,
        ..both
    };
    assert!(matches!(
        storage.read(&writer.partition, &elsewhere),
        Err(StorageError::UnknownSegment { base_offset: 7, .. })
    ));
    assert!(matches!(
        storage.read(&TopicPartition::new("t", 1), &both),
        Err(StorageError::UnknownPartition(_))
    ));
}

#[test]
fn an_append_anywhere_but_the_end_of_the_active_segment_is_refused() {
    let (_dir, storage) = fresh();
    let mut writer = Writer::create(&storage, TopicPartition::new("t", 0));
    let first = writer.append(&storage, 1, 10);
    writer.roll(&storage);
    let bytes = build_batch(1, 10, 0, -1, -1);
    let wrong_position = AppendedBatch {
        segment_base_offset: 1,
        position: 5,
        base_offset: 1,
        last_offset: 1,
        max_timestamp: 0,
        leader_epoch: 0,
    };
    assert!(storage
        .append(&writer.partition, &wrong_position, &bytes)
        .is_err());
    let old_segment = AppendedBatch {
        segment_base_offset: 0,
        position: writer.written[0].1.len() as u32,
        ..wrong_position
    };
    assert!(storage
        .append(&writer.partition, &old_segment, &bytes)
        .is_err());
    let truncated_bytes = bytes.slice(..bytes.len() - 1);
    let right_place = AppendedBatch {
        position: 0,
        ..wrong_position
    };
    assert!(storage
        .append(&writer.partition, &right_place, &truncated_bytes)
        .is_err());
    // Nothing was written by the refusals: the right append still lands at 0.
    storage
        .append(&writer.partition, &right_place, &bytes)
        .unwrap();
    assert_eq!(
        file_len(&writer.segment_paths(&storage, 1).log),
        bytes.len() as u64
    );
    assert_eq!(first.position, 0);
}

#[test]
fn garbage_after_the_last_batch_is_truncated_and_every_batch_before_it_kept() {
    let (dir, writer) = three_segments();
    let storage = FileStorage::open(dir.path()).unwrap();
    let log = writer.segment_paths(&storage, 20).log;
    let clean_len = file_len(&log);
    append_garbage(&log, &[0xAB; 300]);
    drop(storage);
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(
        recovered.partitions,
        vec![writer.expected(&THREE_SEGMENT_BASES, usize::MAX)]
    );
    assert_eq!(stats.segments_truncated, 1);
    assert_eq!(stats.bytes_truncated, 300);
    assert_eq!(file_len(&log), clean_len);
}

#[test]
fn a_partial_last_batch_is_dropped() {
    for cut in [1u64, 60, 64, 0] {
        let (dir, writer) = three_segments();
        let storage = FileStorage::open(dir.path()).unwrap();
        let log = writer.segment_paths(&storage, 20).log;
        let last_len = writer.written.last().unwrap().1.len() as u64;
        // 0 stands for "all but the last byte".
        let cut = if cut == 0 { last_len - 1 } else { cut };
        let start_of_last = file_len(&log) - last_len;
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(start_of_last + cut)
            .unwrap();
        drop(storage);
        let (_, recovered, stats) = reopen(&dir);
        let kept = writer.written.len() - 1;
        assert_eq!(
            recovered.partitions,
            vec![writer.expected(&THREE_SEGMENT_BASES, kept)],
            "cut {cut}"
        );
        assert_eq!(stats.segments_truncated, 1);
        assert_eq!(file_len(&log), start_of_last);
        // The indexes were rewritten to match: a second recovery changes nothing, and scans
        // nothing (the first one left every partition's recovery point at its end).
        let (_, again, stats) = reopen(&dir);
        assert_eq!(again.partitions, recovered.partitions);
        let clean = RecoveryStats {
            partitions: 1,
            segments: 3,
            bytes_trusted: THREE_SEGMENT_BASES
                .iter()
                .map(|&base| file_len(&writer.segment_paths_in(&dir, base).log))
                .sum(),
            ..RecoveryStats::default()
        };
        assert_eq!(stats, clean);
    }
}

#[test]
fn a_flipped_byte_drops_the_batch_it_is_in_and_everything_after() {
    let (dir, writer) = three_segments();
    let storage = FileStorage::open(dir.path()).unwrap();
    let log_path = writer.segment_paths(&storage, 20).log;
    // The second of the last segment's four batches.
    let (victim, victim_bytes) = writer.written[writer.written.len() - 3].clone();
    let at = u64::from(victim.position) + victim_bytes.len() as u64 - 2;
    let log = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log_path)
        .unwrap();
    let mut byte = [0u8; 1];
    log.read_exact_at(&mut byte, at).unwrap();
    log.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    drop((log, storage));
    let (_, recovered, stats) = reopen(&dir);
    let kept = writer.written.len() - 3;
    assert_eq!(
        recovered.partitions,
        vec![writer.expected(&THREE_SEGMENT_BASES, kept)]
    );
    assert_eq!(stats.segments_truncated, 1);
    assert_eq!(file_len(&log_path), u64::from(victim.position));
}

#[test]
fn a_missing_or_corrupt_index_of_an_old_segment_is_rebuilt_with_identical_results() {
    let (dir, writer) = three_segments();
    let expected = vec![writer.expected(&THREE_SEGMENT_BASES, usize::MAX)];
    let storage = FileStorage::open(dir.path()).unwrap();
    let first = writer.segment_paths(&storage, 0);
    let second = writer.segment_paths(&storage, 10);
    let original_index = fs::read(&first.offset_index).unwrap();
    let original_time_index = fs::read(&second.time_index).unwrap();
    drop(storage);

    type Damage<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let damages: Vec<Damage> = vec![
        (
            "deleted offset index",
            Box::new(|| fs::remove_file(&first.offset_index).unwrap()),
        ),
        (
            "deleted time index",
            Box::new(|| fs::remove_file(&second.time_index).unwrap()),
        ),
        (
            "empty offset index",
            Box::new(|| fs::write(&first.offset_index, b"").unwrap()),
        ),
        (
            "partial last entry",
            Box::new(|| append_garbage(&first.offset_index, &[1, 2, 3])),
        ),
        (
            "one entry too many",
            Box::new(|| append_garbage(&first.offset_index, &[0; 8])),
        ),
        (
            "position off by one",
            Box::new(|| {
                let mut index = original_index.clone();
                index[8 + 7] ^= 1;
                fs::write(&first.offset_index, index).unwrap();
            }),
        ),
        (
            "relative offset changed",
            Box::new(|| {
                let mut index = original_index.clone();
                index[8 + 3] ^= 4;
                fs::write(&first.offset_index, index).unwrap();
            }),
        ),
        (
            "random bytes",
            Box::new(|| fs::write(&first.offset_index, [0x5A; 1000]).unwrap()),
        ),
    ];
    for (damage, apply) in damages {
        // Damage past any recovery point (below one, it stops recovery: see the tests of
        // recovery points).
        forget_recovery_points(&dir);
        apply();
        let (_, recovered, stats) = reopen(&dir);
        assert_eq!(recovered.partitions, expected, "{damage}");
        assert_eq!(stats.indexes_rebuilt, 1, "{damage}");
        assert_eq!(stats.segments_truncated, 0, "{damage}");
        assert_eq!(
            fs::read(&first.offset_index).unwrap(),
            original_index,
            "{damage}"
        );
        assert_eq!(
            fs::read(&second.time_index).unwrap(),
            original_time_index,
            "{damage}"
        );
        let (_, _, stats) = reopen(&dir);
        assert_eq!(
            stats.indexes_rebuilt, 0,
            "{damage}: the rebuilt index is used next time"
        );
    }
}

#[test]
fn an_old_segment_with_a_torn_tail_is_cut_there_and_later_segments_are_kept() {
    let (dir, writer) = three_segments();
    let storage = FileStorage::open(dir.path()).unwrap();
    let middle = writer.segment_paths(&storage, 10);
    let middle_len = file_len(&middle.log);
    append_garbage(&middle.log, &[7; 100]);
    drop(storage);
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(
        recovered.partitions,
        vec![writer.expected(&THREE_SEGMENT_BASES, usize::MAX)]
    );
    assert_eq!(stats.segments_truncated, 1);
    // Its indexes already described exactly the batches kept.
    assert_eq!(stats.indexes_rebuilt, 0);
    assert_eq!(file_len(&middle.log), middle_len);
}

#[test]
fn garbage_files_never_panic_recovery() {
    let (dir, writer) = three_segments();
    let storage = FileStorage::open(dir.path()).unwrap();
    let partition_dir = storage.partition_dir(&writer.partition);
    let first = writer.segment_paths(&storage, 0);
    // Random bytes over a whole old segment, an empty active segment's worth of garbage.
    let noise: Vec<u8> = (0..5000u32)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&first.log, &noise).unwrap();
    fs::write(&first.offset_index, &noise[..13]).unwrap();
    fs::write(writer.segment_paths(&storage, 20).log, &noise[..60]).unwrap();
    // Stray index files without a log, an unknown file, a garbage partition directory.
    fs::write(
        partition_dir.join(segment_file_name(99, SegmentFileKind::OffsetIndex)),
        b"x",
    )
    .unwrap();
    fs::write(
        partition_dir.join(segment_file_name(99, SegmentFileKind::TimeIndex)),
        b"",
    )
    .unwrap();
    fs::write(partition_dir.join("notes.txt"), b"hello").unwrap();
    fs::create_dir(dir.path().join(TOPICS_DIR).join("no_partition_number")).unwrap();
    fs::write(dir.path().join(TOPICS_DIR).join("file-0"), b"not a dir").unwrap();
    drop(storage);
    let (_, recovered, stats) = reopen(&dir);
    let mut expected = writer.expected(&THREE_SEGMENT_BASES, usize::MAX);
    expected.segments[0].batches.clear();
    expected.segments[2].batches.clear();
    assert_eq!(recovered.partitions, vec![expected]);
    assert_eq!(stats.stray_files_removed, 2);
    assert_eq!(file_len(&first.log), 0);
    assert!(!partition_dir
        .join(segment_file_name(99, SegmentFileKind::OffsetIndex))
        .exists());
    assert!(partition_dir.join("notes.txt").exists());
}

#[test]
fn a_partition_directory_without_segments_gets_an_empty_one_at_zero() {
    let (dir, storage) = fresh();
    fs::create_dir(dir.path().join(TOPICS_DIR).join("empty-topic-2")).unwrap();
    drop(storage);
    let (storage, recovered, _) = reopen(&dir);
    let partition = TopicPartition::new("empty-topic", 2);
    assert_eq!(
        recovered.partitions,
        vec![RecoveredPartition {
            partition: partition.clone(),
            segments: vec![RecoveredSegment {
                base_offset: 0,
                batches: vec![]
            }],
            replica_state: None,
            deleted_below: None,
        }]
    );
    // The core appends there straight away; and a CreatePartition for it is idempotent.
    storage.create_partition(&partition, 0).unwrap();
    let mut writer = Writer {
        partition,
        segment_base_offset: 0,
        position: 0,
        next_offset: 0,
        written: Vec::new(),
    };
    writer.append(&storage, 1, 1);
}

#[test]
fn create_partition_is_idempotent_while_empty_and_refuses_to_overwrite_data() {
    let (_dir, storage) = fresh();
    let partition = TopicPartition::new("t", 0);
    storage.create_partition(&partition, 5).unwrap();
    storage.create_partition(&partition, 5).unwrap();
    // Still empty: it may move.
    storage.create_partition(&partition, 0).unwrap();
    let mut writer = Writer {
        partition: partition.clone(),
        segment_base_offset: 0,
        position: 0,
        next_offset: 0,
        written: Vec::new(),
    };
    writer.append(&storage, 1, 1);
    assert!(storage.create_partition(&partition, 0).is_err());
    assert!(storage
        .create_partition(&TopicPartition::new("..", 0), 0)
        .is_err());
    assert!(storage
        .create_partition(&TopicPartition::new("a/b", 0), 0)
        .is_err());
}

#[test]
fn delete_segment_removes_its_files_but_never_the_active_one() {
    let (dir, writer) = three_segments();
    let (storage, _, _) = reopen(&dir);
    let first = writer.segment_paths(&storage, 0);
    let (batch, bytes) = writer.written[0].clone();
    assert!(
        storage.delete_segment(&writer.partition, 20).is_err(),
        "the active segment"
    );
    assert!(matches!(
        storage.delete_segment(&writer.partition, 11),
        Err(StorageError::UnknownSegment {
            base_offset: 11,
            ..
        })
    ));
    storage.delete_segment(&writer.partition, 0).unwrap();
    storage.sync().unwrap();
    for path in [&first.log, &first.offset_index, &first.time_index] {
        assert!(!path.exists(), "{}", path.display());
    }
    assert!(matches!(
        storage.read(&writer.partition, &chunk_of(&batch, &bytes)),
        Err(StorageError::UnknownSegment { base_offset: 0, .. })
    ));
    drop(storage);
    let (_, recovered, stats) = reopen(&dir);
    let mut expected = writer.expected(&THREE_SEGMENT_BASES, usize::MAX);
    expected.segments.remove(0);
    assert_eq!(recovered.partitions, vec![expected]);
    assert_eq!(stats.indexes_rebuilt, 0);
}

#[test]
fn delete_partition_removes_its_directory_and_a_recreated_one_starts_empty() {
    let (dir, writer) = three_segments();
    let (storage, _, _) = reopen(&dir);
    let other = Writer::create(&storage, TopicPartition::new("orders.v1-eu", 4));
    storage.delete_partition(&writer.partition).unwrap();
    assert!(!storage.partition_dir(&writer.partition).exists());
    assert!(storage.partition_dir(&other.partition).exists());
    assert!(matches!(
        storage.append(
            &writer.partition,
            &writer.written[0].0,
            &writer.written[0].1
        ),
        Err(StorageError::UnknownPartition(_))
    ));
    // Deleting again is a no-op (a crash may have interrupted the first one).
    storage.delete_partition(&writer.partition).unwrap();
    storage.sync().unwrap();
    drop(storage);
    let (storage, recovered, _) = reopen(&dir);
    assert_eq!(recovered.partitions, vec![other.expected(&[0], 0)]);
    storage.create_partition(&writer.partition, 0).unwrap();
}

fn sample_metadata() -> ClusterMetadata {
    let mut metadata = ClusterMetadata::new(
        "myelin-0123",
        vec![NodeInfo {
            node_id: 1,
            host: "127.0.0.1".into(),
            port: 9092,
        }],
    );
    metadata.topics.insert(
        "orders".into(),
        myelin_core::metadata::TopicMetadata {
            name: "orders".into(),
            topic_id: u128::MAX - 17,
            partition_count: 3,
            config: Default::default(),
            assignments: Vec::new(),
        },
    );
    metadata.producer_id_block_end = 4000;
    metadata
}

#[test]
fn metadata_persists_durably_and_replaces_the_previous_snapshot() {
    let (dir, storage) = fresh();
    storage
        .persist_metadata(&ClusterMetadata::new("old", vec![]))
        .unwrap();
    let metadata = sample_metadata();
    storage.persist_metadata(&metadata).unwrap();
    assert!(!dir.path().join(temporary_name(METADATA_FILE)).exists());
    drop(storage);
    // A snapshot that was being written when the process died is ignored and removed.
    fs::write(
        dir.path().join(temporary_name(METADATA_FILE)),
        b"{\"cluster_id\": \"half",
    )
    .unwrap();
    let (_, recovered, _) = reopen(&dir);
    assert_eq!(recovered.metadata, Some(metadata));
    assert!(!dir.path().join(temporary_name(METADATA_FILE)).exists());
}

#[test]
fn corrupt_metadata_is_an_error_naming_the_file() {
    let (dir, storage) = fresh();
    storage.persist_metadata(&sample_metadata()).unwrap();
    let path = dir.path().join(METADATA_FILE);
    let text = fs::read(&path).unwrap();
    fs::write(&path, &text[..text.len() / 2]).unwrap();
    let storage = FileStorage::open(dir.path()).unwrap();
    match storage.recover() {
        Err(StorageError::CorruptMetadata {
            path: named,
            reason,
        }) => {
            assert_eq!(named, path.display().to_string());
            assert!(!reason.is_empty());
        }
        other => panic!("expected CorruptMetadata, got {other:?}"),
    }
}

#[test]
fn reads_and_syncs_run_concurrently_with_appends() {
    let (dir, storage) = fresh();
    let storage = Arc::new(storage);
    let partition = TopicPartition::new("busy", 0);
    let mut writer = Writer::create(&storage, partition.clone());
    let published: Arc<Mutex<Vec<(AppendedBatch, Bytes)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (storage, published, done, reads) = (
            storage.clone(),
            published.clone(),
            done.clone(),
            reads.clone(),
        );
        let partition = partition.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            while !done.load(Ordering::Relaxed) {
                let visible = lock(&published).clone();
                if visible.is_empty() {
                    std::thread::yield_now();
                    continue;
                }
                next = (next + 1) % visible.len();
                let (batch, bytes) = &visible[next];
                // A segment may have been deleted by retention under us; any other error is a bug.
                match storage.read(&partition, &chunk_of(batch, bytes)) {
                    Ok(read) => assert_eq!(&read, bytes),
                    Err(StorageError::UnknownSegment { .. }) => {}
                    Err(error) => panic!("read failed: {error}"),
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let syncer = {
        let (storage, done) = (storage.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                storage.sync().unwrap();
            }
        })
    };
    let mut deleted_batches = 0;
    for index in 0..400 {
        if index % 50 == 49 {
            writer.roll(&storage);
        }
        if index % 100 == 99 {
            let oldest = *lock(&storage.partitions)[&partition]
                .lock()
                .unwrap()
                .segments
                .keys()
                .next()
                .unwrap();
            storage.delete_segment(&partition, oldest).unwrap();
            deleted_batches += writer
                .written
                .iter()
                .filter(|(batch, _)| batch.segment_base_offset == oldest)
                .count();
        }
        writer.append(&storage, 1 + index % 3, index as usize % 200);
        lock(&published).push(writer.written.last().unwrap().clone());
    }
    while reads.load(Ordering::Relaxed) < 1000 {
        std::thread::yield_now();
    }
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    syncer.join().unwrap();
    storage.sync().unwrap();
    drop(storage);
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(stats.indexes_rebuilt + stats.segments_truncated, 0);
    let batches: usize = recovered.partitions[0]
        .segments
        .iter()
        .map(|segment| segment.batches.len())
        .sum();
    assert_eq!(
        batches,
        400 - deleted_batches,
        "all but the deleted segments"
    );
    assert!(deleted_batches > 0);
}

#[test]
fn file_storage_is_send_and_sync() {
    fn assert_storage<T: Storage>() {}
    assert_storage::<FileStorage>();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever prefix of the active segment survives a crash, recovery keeps exactly the
    /// batches that lie wholly before the cut, and the earlier segments whole.
    #[test]
    fn recovery_keeps_exactly_the_batches_wholly_before_the_cut(
        earlier in proptest::collection::vec((1i32..4, 0usize..200), 1..6),
        last in proptest::collection::vec((1i32..4, 0usize..300), 1..12),
        cut_fraction in 0.0f64..=1.0,
    ) {
        let (dir, storage) = fresh();
        let mut writer = Writer::create(&storage, TopicPartition::new("prop", 0));
        for &(records, payload) in &earlier {
            writer.append(&storage, records, payload);
        }
        writer.roll(&storage);
        let first_in_last = writer.written.len();
        for &(records, payload) in &last {
            writer.append(&storage, records, payload);
        }
        storage.sync().unwrap();
        let last_base = writer.segment_base_offset;
        let log = writer.segment_paths(&storage, last_base).log;
        drop(storage);
        let full = file_len(&log);
        let cut = (full as f64 * cut_fraction).floor() as u64;
        OpenOptions::new().write(true).open(&log).unwrap().set_len(cut).unwrap();

        let (_, recovered, _) = reopen(&dir);
        let wholly_before = writer.written[first_in_last..]
            .iter()
            .take_while(|(batch, bytes)| u64::from(batch.position) + bytes.len() as u64 <= cut)
            .count();
        let expected = writer.expected(&[0, last_base], first_in_last + wholly_before);
        prop_assert_eq!(&recovered.partitions, &vec![expected]);
        let kept_bytes: u64 = writer.written[first_in_last..first_in_last + wholly_before]
            .iter()
            .map(|(_, bytes)| bytes.len() as u64)
            .sum();
        prop_assert_eq!(file_len(&log), kept_bytes);
    }
}

#[test]
fn the_header_builder_matches_the_core_checks() {
    let bytes = build_batch(3, 17, 100, 42, 7);
    let header: BatchHeader = validate(&bytes).unwrap();
    assert_eq!(header.record_count, 3);
    assert_eq!(header.max_timestamp, 105);
    assert_eq!(header.producer_id, 42);
}

#[test]
fn open_creates_a_missing_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    let storage = FileStorage::open(&data_dir).unwrap();
    assert!(data_dir.join(TOPICS_DIR).is_dir());
    let recovered = storage.recover().unwrap();
    assert_eq!(recovered.metadata, None);
    assert!(recovered.partitions.is_empty());
    assert_eq!(storage.data_dir(), data_dir);
}

/// The leader epoch the test writer stamps on its batches.
const WRITER_LEADER_EPOCH: i32 = 3;

#[test]
fn a_truncation_cuts_mid_segment_and_across_segments_and_appends_continue() {
    let (dir, storage) = fresh();
    let mut writer = Writer::create(&storage, TopicPartition::new("t", 0));
    writer.append(&storage, 2, 10); // offsets 0..2
    let kept_end = writer.append(&storage, 1, 10); // offset 2
    writer.append(&storage, 1, 10); // offset 3: cut
    writer.roll(&storage); // segment 4
    writer.append(&storage, 3, 10);
    storage.sync().unwrap();
    let cut_bytes = kept_end.position + writer.written[1].1.len() as u32;
    storage
        .truncate(
            &writer.partition,
            &Truncation {
                deleted_segments: vec![4],
                active_segment_base: 0,
                active_segment_bytes: cut_bytes,
            },
        )
        .unwrap();
    // The writer continues where the cut left the log.
    writer.written.truncate(2);
    writer.segment_base_offset = 0;
    writer.position = cut_bytes;
    writer.next_offset = 3;
    writer.append(&storage, 2, 10);
    storage.sync().unwrap();
    drop(storage);
    let (_storage, recovered, _) = reopen(&dir);
    assert_eq!(recovered.partitions, vec![writer.expected(&[0], 3)]);
    let on_disk = fs::read(writer_log_path(&dir, &writer, 0)).unwrap();
    let expected: Vec<u8> = writer
        .written
        .iter()
        .flat_map(|(_, bytes)| bytes.to_vec())
        .collect();
    assert_eq!(
        on_disk, expected,
        "the cut segment holds exactly the kept and new batches"
    );
    assert!(!writer_log_path(&dir, &writer, 4).exists());
}

fn writer_log_path(dir: &TempDir, writer: &Writer, base_offset: i64) -> PathBuf {
    dir.path()
        .join(TOPICS_DIR)
        .join(layout::partition_dir_name(&writer.partition))
        .join(segment_file_name(base_offset, SegmentFileKind::Log))
}

#[test]
fn replica_states_survive_a_reopen_and_a_corrupt_file_is_an_error() {
    let (dir, storage) = fresh();
    let partitions: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
    for partition in &partitions {
        storage.create_partition(partition, 0).unwrap();
    }
    let state = |epoch| ReplicaState {
        epoch,
        voted_for: Some(2),
    };
    storage
        .persist_replica_states(&[
            (partitions[0].clone(), state(7)),
            (partitions[1].clone(), state(8)),
        ])
        .unwrap();
    // A later write keeps the states it does not name.
    storage
        .persist_replica_states(&[(partitions[1].clone(), state(9))])
        .unwrap();
    drop(storage);
    let (_storage, recovered, _) = reopen(&dir);
    let states: Vec<Option<ReplicaState>> = recovered
        .partitions
        .iter()
        .map(|partition| partition.replica_state)
        .collect();
    assert_eq!(states, vec![Some(state(7)), Some(state(9)), None]);
    let path = dir.path().join(REPLICA_STATES_FILE);
    fs::write(&path, b"{\"version\": 1, \"states\": [{\"topic\"").unwrap();
    let storage = FileStorage::open(dir.path()).unwrap();
    match storage.recover() {
        Err(StorageError::CorruptMetadata { path: reported, .. }) => {
            assert!(reported.ends_with(REPLICA_STATES_FILE))
        }
        other => panic!("a corrupt replica state must not be ignored: {other:?}"),
    }
}

#[test]
fn many_replica_states_cost_one_durable_write() {
    let fs = RecordingFs::default();
    let dir = tempfile::tempdir().unwrap();
    let storage = FileStorage::open_on(fs.clone(), dir.path()).unwrap();
    storage.recover().unwrap();
    let states: Vec<(TopicPartition, ReplicaState)> = (0..100)
        .map(|p| {
            let partition = TopicPartition::new("t", p);
            storage.create_partition(&partition, 0).unwrap();
            (
                partition,
                ReplicaState {
                    epoch: 1,
                    voted_for: Some(1),
                },
            )
        })
        .collect();
    let before = lock(&fs.calls).len();
    storage.persist_replica_states(&states).unwrap();
    let calls = lock(&fs.calls)[before..].to_vec();
    let kinds: Vec<&str> = calls
        .iter()
        .filter_map(|call| call.split(' ').next())
        .collect();
    assert_eq!(
        kinds,
        vec!["open", "rename", "sync_dir"],
        "one file written aside, renamed, its directory synced: {calls:?}"
    );
}

#[test]
fn a_deleted_partition_takes_its_replica_state_with_it() {
    let (dir, storage) = fresh();
    let partition = TopicPartition::new("t", 0);
    storage.create_partition(&partition, 0).unwrap();
    let state = ReplicaState {
        epoch: 4,
        voted_for: Some(3),
    };
    storage
        .persist_replica_states(&[(partition.clone(), state)])
        .unwrap();
    storage.delete_partition(&partition).unwrap();
    storage.create_partition(&partition, 0).unwrap();
    drop(storage);
    let (_storage, recovered, _) = reopen(&dir);
    assert_eq!(
        recovered.partitions[0].replica_state, None,
        "a partition created again under the name starts without the old vote"
    );
}

#[test]
fn a_replica_state_whose_partition_is_gone_is_dropped_at_recovery() {
    let (dir, storage) = fresh();
    let partition = TopicPartition::new("t", 0);
    storage.create_partition(&partition, 0).unwrap();
    storage
        .persist_replica_states(&[(
            partition.clone(),
            ReplicaState {
                epoch: 4,
                voted_for: None,
            },
        )])
        .unwrap();
    let partition_dir = storage.partition_dir(&partition);
    drop(storage);
    // A crash between removing the directory and rewriting the states.
    fs::remove_dir_all(&partition_dir).unwrap();
    let (storage, recovered, _) = reopen(&dir);
    assert!(recovered.partitions.is_empty());
    storage.create_partition(&partition, 0).unwrap();
    drop(storage);
    let (_storage, recovered, _) = reopen(&dir);
    assert_eq!(recovered.partitions[0].replica_state, None);
}

#[test]
fn a_legacy_replica_state_file_is_read_until_the_node_wide_file_names_the_partition() {
    let (dir, storage) = fresh();
    let partition = TopicPartition::new("t", 0);
    storage.create_partition(&partition, 0).unwrap();
    let legacy_path = storage
        .partition_dir(&partition)
        .join(replica_states::LEGACY_REPLICA_STATE_FILE);
    drop(storage);
    fs::write(&legacy_path, br#"{"epoch": 5, "voted_for": 2}"#).unwrap();
    let (storage, recovered, _) = reopen(&dir);
    let legacy = ReplicaState {
        epoch: 5,
        voted_for: Some(2),
    };
    assert_eq!(recovered.partitions[0].replica_state, Some(legacy));
    let newer = ReplicaState {
        epoch: 6,
        voted_for: None,
    };
    storage
        .persist_replica_states(&[(partition.clone(), newer)])
        .unwrap();
    drop(storage);
    let (_storage, recovered, _) = reopen(&dir);
    assert_eq!(recovered.partitions[0].replica_state, Some(newer));
}

/// The operating system's file system, recording the calls made to it: shows that the engine
/// runs over any `FileSystem` and makes its directory entries durable through it.
#[derive(Clone, Default)]
struct RecordingFs {
    calls: Arc<Mutex<Vec<String>>>,
}

impl RecordingFs {
    fn record(&self, call: String) {
        lock(&self.calls).push(call);
    }

    fn saw(&self, call: &str) -> bool {
        lock(&self.calls).iter().any(|seen| seen == call)
    }
}

impl FileSystem for RecordingFs {
    type File = <OsFileSystem as FileSystem>::File;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File> {
        self.record(format!("open {} {mode:?}", path.display()));
        OsFileSystem.open(path, mode)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("create_dir {}", path.display()));
        OsFileSystem.create_dir(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.record(format!("create_dir_all {}", path.display()));
        OsFileSystem.create_dir_all(path)
    }

    fn exists(&self, path: &Path) -> bool {
        OsFileSystem.exists(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.record(format!("read_dir {}", path.display()));
        OsFileSystem.read_dir(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.record(format!("read {}", path.display()));
        OsFileSystem.read(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.record(format!("remove_file {}", path.display()));
        OsFileSystem.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.record(format!("remove_dir_all {}", path.display()));
        OsFileSystem.remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(format!("rename {} {}", from.display(), to.display()));
        OsFileSystem.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("sync_dir {}", path.display()));
        OsFileSystem.sync_dir(path)
    }
}

#[test]
fn storage_runs_over_any_file_system_and_syncs_directories_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RecordingFs::default();
    let storage = FileStorage::open_on(fs.clone(), dir.path()).unwrap();
    storage.recover().unwrap();
    let mut writer = Writer::create(&storage, TopicPartition::new("t", 0));
    writer.append(&storage, 2, 10);
    writer.roll(&storage);
    writer.append(&storage, 1, 10);
    storage.sync().unwrap();
    storage.persist_metadata(&sample_metadata()).unwrap();

    let partition_dir = storage.partition_dir(&writer.partition);
    let rolled = SegmentPaths::new(&partition_dir, 2);
    assert!(fs.saw(&format!("open {} CreateNew", rolled.log.display())));
    // The rolled segment's entries, and the metadata snapshot's rename.
    assert!(fs.saw(&format!("sync_dir {}", partition_dir.display())));
    assert!(fs.saw(&format!("sync_dir {}", dir.path().display())));
    drop(storage);

    let again = RecordingFs::default();
    let storage = FileStorage::open_on(again.clone(), dir.path()).unwrap();
    let (recovered, stats) = storage.recover_with_stats().unwrap();
    assert_eq!(recovered.metadata, Some(sample_metadata()));
    assert_eq!(recovered.partitions, vec![writer.expected(&[0, 2], 2)]);
    assert_eq!(stats.indexes_rebuilt, 0);
    assert!(again.saw(&format!("read_dir {}", partition_dir.display())));
}

#[test]
fn a_damaged_batch_is_never_read_out_and_the_error_names_the_file_and_offset() {
    let (_dir, storage) = fresh();
    let mut writer = Writer::create(&storage, TopicPartition::new("t", 0));
    writer.append(&storage, 2, 100);
    let second = writer.append(&storage, 2, 100);
    storage.sync().unwrap();
    let whole = ReadChunk {
        segment_base_offset: 0,
        position: 0,
        length: writer.position,
    };
    let read = crate::storage::read_verified(&storage, &writer.partition, &whole).unwrap();
    assert_eq!(read.len(), writer.position as usize);
    // A bit flipped inside the second batch's records: its CRC no longer matches.
    let log = writer.segment_paths(&storage, 0).log;
    let mut bytes = fs::read(&log).unwrap();
    bytes[second.position as usize + 70] ^= 0x01;
    fs::write(&log, &bytes).unwrap();
    match crate::storage::read_verified(&storage, &writer.partition, &whole) {
        Err(StorageError::CorruptData {
            location, offset, ..
        }) => {
            assert_eq!(offset, second.base_offset);
            assert_eq!(Path::new(&location), log.as_path());
        }
        other => panic!("a damaged batch must not be read out: {other:?}"),
    }
    // The batch before it still reads.
    let first = ReadChunk {
        length: second.position,
        ..whole
    };
    assert!(crate::storage::read_verified(&storage, &writer.partition, &first).is_ok());
}

#[test]
fn restart_log_replaces_every_segment_with_an_empty_one_past_them_and_appends_go_on_there() {
    let (dir, writer) = three_segments();
    let (storage, _, _) = reopen(&dir);
    let end = writer.next_offset;
    assert!(
        storage.restart_log(&writer.partition, 20).is_err(),
        "a start at or below the active segment's base is refused"
    );
    storage.restart_log(&writer.partition, end + 100).unwrap();
    for base in THREE_SEGMENT_BASES {
        let paths = writer.segment_paths(&storage, base);
        for path in [&paths.log, &paths.offset_index, &paths.time_index] {
            assert!(!path.exists(), "{}", path.display());
        }
    }
    let mut restarted = Writer::create_at(&writer.partition, end + 100);
    restarted.append(&storage, 3, 20);
    storage.sync().unwrap();
    drop(storage);
    let (_, recovered, _) = reopen(&dir);
    assert_eq!(
        recovered.partitions,
        vec![restarted.expected(&[end + 100], usize::MAX)]
    );
}

/// Three synced segments with recovery points written at their end, then `tail_batches` more
/// batches appended and synced past them: the shape of a restart after a crash.
fn three_segments_with_a_recovery_point(tail_batches: i32) -> (TempDir, Writer, u64) {
    let (dir, storage) = fresh();
    let mut writer = write_three_segments(&storage);
    storage.write_recovery_points().unwrap();
    let point = u64::from(writer.position);
    for batch in 0..tail_batches {
        writer.append(&storage, 2, 50 + batch as usize);
    }
    storage.sync().unwrap();
    (dir, writer, point)
}

fn expect_damaged_below_recovery_point(dir: &TempDir, path: &Path) -> (u64, i64) {
    let storage = FileStorage::open(dir.path()).unwrap();
    match storage.recover() {
        Err(StorageError::DamagedBelowRecoveryPoint {
            path: reported,
            position,
            offset,
            ..
        }) => {
            assert_eq!(reported, path.display().to_string());
            (position, offset)
        }
        other => panic!("damage below the recovery point must stop recovery: {other:?}"),
    }
}

#[test]
fn a_restart_scans_only_what_lies_past_each_recovery_point() {
    let (dir, writer, point) = three_segments_with_a_recovery_point(3);
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(
        recovered.partitions,
        vec![writer.expected(&THREE_SEGMENT_BASES, usize::MAX)]
    );
    let active_len = file_len(&writer.segment_paths_in(&dir, 20).log);
    assert_eq!(stats.bytes_scanned, active_len - point);
    assert_eq!(stats.indexes_rebuilt, 0);
    // That recovery moved the point to the end: the next one scans nothing.
    let (_, again, stats) = reopen(&dir);
    assert_eq!(again.partitions, recovered.partitions);
    assert_eq!(stats.bytes_scanned, 0);
}

#[test]
fn a_torn_tail_past_the_recovery_point_is_cut_and_everything_below_it_kept() {
    let (dir, writer, point) = three_segments_with_a_recovery_point(2);
    let log = writer.segment_paths_in(&dir, 20).log;
    let last_len = writer.written.last().unwrap().1.len() as u64;
    let start_of_last = file_len(&log) - last_len;
    let file = OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(start_of_last + 30).unwrap();
    drop(file);
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(
        recovered.partitions,
        vec![writer.expected(&THREE_SEGMENT_BASES, writer.written.len() - 1)]
    );
    assert_eq!(stats.segments_truncated, 1);
    assert!(file_len(&log) >= point);
    assert_eq!(file_len(&log), start_of_last);
}

#[test]
fn index_entries_torn_past_the_recovery_point_are_rebuilt_not_taken_for_damage() {
    // Index entries past the point were never synced: a power loss may cut one short or
    // zero it, and recovery rebuilds them from the scan of the log past the point.
    type Tear = fn(&mut Vec<u8>, &mut Vec<u8>);
    let tears: [(&str, Tear); 4] = [
        ("offset index cut inside its last entry", |offset, _| {
            offset.truncate(offset.len() - 3)
        }),
        ("time index's last entry zeroed", |_, time| {
            let len = time.len();
            time[len - 12..].fill(0)
        }),
        // Both zeroed: the entries agree, and say offset 0 at position 0.
        ("both last entries zeroed", |offset, time| {
            let (offset_len, time_len) = (offset.len(), time.len());
            offset[offset_len - 8..].fill(0);
            time[time_len - 12..].fill(0)
        }),
        // The low byte of the last position zeroed: a position below the point.
        ("the last position's low byte zeroed", |offset, _| {
            let len = offset.len();
            offset[len - 1] = 0
        }),
    ];
    for (tear, damage) in tears {
        let (dir, writer, point) = three_segments_with_a_recovery_point(2);
        let active = writer.segment_paths_in(&dir, 20);
        let mut offset_index = fs::read(&active.offset_index).unwrap();
        let mut time_index = fs::read(&active.time_index).unwrap();
        damage(&mut offset_index, &mut time_index);
        fs::write(&active.offset_index, &offset_index).unwrap();
        fs::write(&active.time_index, &time_index).unwrap();
        let (_, recovered, stats) = reopen(&dir);
        assert_eq!(
            recovered.partitions,
            vec![writer.expected(&THREE_SEGMENT_BASES, usize::MAX)],
            "{tear}"
        );
        assert_eq!(stats.indexes_rebuilt, 1, "{tear}");
        assert_eq!(
            stats.bytes_scanned,
            file_len(&active.log) - point,
            "{tear}: only the tail is scanned"
        );
    }
}

#[test]
fn a_damaged_batch_header_below_the_recovery_point_stops_recovery_and_nothing_is_cut() {
    for base in THREE_SEGMENT_BASES {
        let (dir, writer, _) = three_segments_with_a_recovery_point(1);
        let log = writer.segment_paths_in(&dir, base).log;
        let mut bytes = fs::read(&log).unwrap();
        let (second, _) = writer
            .written
            .iter()
            .filter(|(batch, _)| batch.segment_base_offset == base)
            .nth(1)
            .unwrap();
        // The batch's length field: the index no longer matches the headers.
        bytes[second.position as usize + 11] ^= 0x10;
        fs::write(&log, &bytes).unwrap();
        let (position, offset) = expect_damaged_below_recovery_point(&dir, &log);
        assert_eq!(position, u64::from(second.position), "segment {base}");
        assert_eq!(offset, second.base_offset, "segment {base}");
        assert_eq!(
            fs::read(&log).unwrap(),
            bytes,
            "the segment is left as it was"
        );
    }
}

#[test]
fn a_log_shorter_than_its_recovery_point_stops_recovery() {
    let (dir, writer, point) = three_segments_with_a_recovery_point(0);
    let log = writer.segment_paths_in(&dir, 20).log;
    let file = OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(point - 1).unwrap();
    drop(file);
    expect_damaged_below_recovery_point(&dir, &log);
    assert_eq!(file_len(&log), point - 1, "nothing is cut further");
}

#[test]
fn an_index_that_disagrees_below_the_recovery_point_stops_recovery_and_a_missing_one_is_rebuilt() {
    let (dir, writer, _) = three_segments_with_a_recovery_point(1);
    let expected = vec![writer.expected(&THREE_SEGMENT_BASES, usize::MAX)];
    let first = writer.segment_paths_in(&dir, 0);
    let original_index = fs::read(&first.offset_index).unwrap();
    let mut index = original_index.clone();
    index[8 + 7] ^= 1; // entry 1's position
    fs::write(&first.offset_index, &index).unwrap();
    let (position, offset) = expect_damaged_below_recovery_point(&dir, &first.offset_index);
    assert_eq!(position, 8);
    assert_eq!(offset, writer.written[1].0.base_offset);
    assert_eq!(fs::read(&first.offset_index).unwrap(), index);

    fs::remove_file(&first.offset_index).unwrap();
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(recovered.partitions, expected);
    assert_eq!(stats.indexes_rebuilt, 1);
    assert_eq!(fs::read(&first.offset_index).unwrap(), original_index);
}

#[test]
fn recovery_points_that_do_not_parse_stop_recovery_naming_the_file() {
    for garbage in [
        &b"{\"version\": 1, \"points\": ["[..],
        b"{\"version\": 9, \"points\": []}",
    ] {
        let (dir, _writer, _) = three_segments_with_a_recovery_point(0);
        let path = dir.path().join(RECOVERY_POINTS_FILE);
        fs::write(&path, garbage).unwrap();
        let storage = FileStorage::open(dir.path()).unwrap();
        match storage.recover() {
            Err(StorageError::CorruptMetadata { path: reported, .. }) => {
                assert_eq!(reported, path.display().to_string())
            }
            other => panic!("unreadable recovery points must stop recovery: {other:?}"),
        }
    }
}

#[test]
fn a_truncation_below_the_recovery_point_lowers_it_first() {
    let (dir, writer, _) = three_segments_with_a_recovery_point(0);
    let storage = FileStorage::open(dir.path()).unwrap();
    storage.recover().unwrap();
    // Cut segment 10 after its first batch; segment 20 goes.
    let first_of_ten = &writer.written[4].1;
    storage
        .truncate(
            &writer.partition,
            &Truncation {
                deleted_segments: vec![20],
                active_segment_base: 10,
                active_segment_bytes: first_of_ten.len() as u32,
            },
        )
        .unwrap();
    drop(storage);
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(recovered.partitions, vec![writer.expected(&[0, 10], 5)]);
    assert_eq!(
        stats.bytes_scanned, 0,
        "the lowered point covers what was kept"
    );
}

#[test]
fn a_deleted_and_recreated_partition_trusts_nothing_of_the_old_one() {
    let (dir, writer, _) = three_segments_with_a_recovery_point(0);
    let storage = FileStorage::open(dir.path()).unwrap();
    storage.recover().unwrap();
    storage.delete_partition(&writer.partition).unwrap();
    let mut again = Writer::create(&storage, writer.partition.clone());
    again.append(&storage, 1, 10);
    // Not synced, and no point written since: the next recovery must scan it.
    drop(storage);
    let (_, recovered, stats) = reopen(&dir);
    assert_eq!(recovered.partitions, vec![again.expected(&[0], 1)]);
    assert_eq!(stats.bytes_trusted, 0);
}

#[test]
fn a_replica_states_file_of_another_version_a_repeated_or_an_invalid_entry_stops_recovery() {
    let entry = |epoch: i32| {
        format!(r#"{{"topic": "t", "partition": 0, "epoch": {epoch}, "voted_for": null}}"#)
    };
    for (document, expected) in [
        (
            format!(r#"{{"version": 2, "states": [{}]}}"#, entry(1)),
            "version 2",
        ),
        (
            format!(
                r#"{{"version": 1, "states": [{}, {}]}}"#,
                entry(1),
                entry(2)
            ),
            "listed twice",
        ),
        (
            format!(r#"{{"version": 1, "states": [{}]}}"#, entry(-1)),
            "negative epoch",
        ),
    ] {
        let (dir, storage) = fresh();
        storage
            .create_partition(&TopicPartition::new("t", 0), 0)
            .unwrap();
        drop(storage);
        fs::write(dir.path().join(REPLICA_STATES_FILE), &document).unwrap();
        let storage = FileStorage::open(dir.path()).unwrap();
        match storage.recover() {
            Err(StorageError::CorruptMetadata { path, reason }) => {
                assert!(path.ends_with(REPLICA_STATES_FILE), "{path}");
                assert!(reason.contains(expected), "{reason} (expected {expected})");
            }
            other => panic!("{document}: recovery must stop, got {other:?}"),
        }
    }
}
