//! Names and encodings of the files under a data directory: partition directories, segment
//! file names, and the two index entry formats. Pure functions, no I/O.

use super::super::{StorageError, StorageResult};
use myelin_core::metadata::TopicPartition;
use std::path::{Path, PathBuf};

/// Bytes of one `.index` entry: relative offset u32 BE, position u32 BE.
pub(super) const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
/// Bytes of one `.timeindex` entry: max timestamp i64 BE, relative offset u32 BE.
pub(super) const TIME_INDEX_ENTRY_BYTES: usize = 12;
/// Digits of a segment file's base offset, zero-padded (Kafka's width: fits any i64).
const SEGMENT_NAME_DIGITS: usize = 20;

/// The three files of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SegmentFileKind {
    Log,
    OffsetIndex,
    TimeIndex,
}

impl SegmentFileKind {
    fn extension(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::OffsetIndex => "index",
            Self::TimeIndex => "timeindex",
        }
    }
}

/// Paths of one segment's files.
#[derive(Debug, Clone)]
pub(super) struct SegmentPaths {
    pub(super) log: PathBuf,
    pub(super) offset_index: PathBuf,
    pub(super) time_index: PathBuf,
}

impl SegmentPaths {
    pub(super) fn new(partition_dir: &Path, base_offset: i64) -> Self {
        let path = |kind| partition_dir.join(segment_file_name(base_offset, kind));
        Self {
            log: path(SegmentFileKind::Log),
            offset_index: path(SegmentFileKind::OffsetIndex),
            time_index: path(SegmentFileKind::TimeIndex),
        }
    }
}

/// `00000000000000001234.log` and its siblings.
pub(super) fn segment_file_name(base_offset: i64, kind: SegmentFileKind) -> String {
    format!(
        "{base_offset:0width$}.{}",
        kind.extension(),
        width = SEGMENT_NAME_DIGITS
    )
}

/// The inverse of `segment_file_name`; `None` for any other name.
pub(super) fn parse_segment_file_name(name: &str) -> Option<(i64, SegmentFileKind)> {
    let (stem, extension) = name.split_once('.')?;
    let kind = [
        SegmentFileKind::Log,
        SegmentFileKind::OffsetIndex,
        SegmentFileKind::TimeIndex,
    ]
    .into_iter()
    .find(|kind| kind.extension() == extension)?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let base_offset = stem.parse::<i64>().ok()?;
    Some((base_offset, kind))
}

/// `<topic>-<partition>`, as Kafka names partition directories.
pub(super) fn partition_dir_name(partition: &TopicPartition) -> String {
    format!("{}-{}", partition.topic, partition.partition)
}

/// The inverse of `partition_dir_name`. Topic names may contain '-', so the partition
/// number is what follows the last one; it must be written canonically (no sign, no
/// leading zeros), or the name would not round-trip to the same directory.
pub(super) fn parse_partition_dir_name(name: &str) -> Option<TopicPartition> {
    let (topic, number) = name.rsplit_once('-')?;
    if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let partition = number.parse::<i32>().ok()?;
    if partition.to_string() != number || check_topic_name(topic).is_err() {
        return None;
    }
    Some(TopicPartition::new(topic, partition))
}

/// Refuses names that would escape the topics directory or not name one directory.
/// (The core validates topic names against Kafka's rules; this is the storage-side guard.)
pub(super) fn check_topic_name(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic == "." || topic == ".." {
        return Err(format!("topic name {topic:?} cannot name a directory"));
    }
    if topic.contains(['/', '\\', '\0']) {
        return Err(format!(
            "topic name {topic:?} contains a path separator or NUL"
        ));
    }
    Ok(())
}

/// Checks a partition before its name becomes a path.
pub(super) fn check_partition(partition: &TopicPartition) -> StorageResult<()> {
    let reason = check_topic_name(&partition.topic).err().or_else(|| {
        (partition.partition < 0)
            .then(|| format!("partition number {} is negative", partition.partition))
    });
    match reason {
        None => Ok(()),
        Some(reason) => Err(invalid_input(format!("partition {partition}"), reason)),
    }
}

/// A contract violation by the caller, as a `StorageError` with context.
pub(super) fn invalid_input(context: impl Into<String>, reason: impl Into<String>) -> StorageError {
    StorageError::io(
        context,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, reason.into()),
    )
}

pub(super) fn encode_offset_entry(
    relative_offset: u32,
    position: u32,
) -> [u8; OFFSET_INDEX_ENTRY_BYTES] {
    let mut entry = [0u8; OFFSET_INDEX_ENTRY_BYTES];
    entry[..4].copy_from_slice(&relative_offset.to_be_bytes());
    entry[4..].copy_from_slice(&position.to_be_bytes());
    entry
}

pub(super) fn encode_time_entry(
    max_timestamp: i64,
    relative_offset: u32,
) -> [u8; TIME_INDEX_ENTRY_BYTES] {
    let mut entry = [0u8; TIME_INDEX_ENTRY_BYTES];
    entry[..8].copy_from_slice(&max_timestamp.to_be_bytes());
    entry[8..].copy_from_slice(&relative_offset.to_be_bytes());
    entry
}

/// One batch's entries in both indexes, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexEntry {
    pub(super) relative_offset: u32,
    pub(super) position: u32,
    pub(super) max_timestamp: i64,
}

/// The two index files' contents decoded, checking only what the bytes alone can tell (whole
/// entries, equal counts, the same relative offset in both): the entries from the start that
/// pass, and why the rest (if any) did not. Recovery below a recovery point needs only the entries the point
/// vouches for: those past it were never synced, and a crash may have torn them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DecodedIndexes {
    pub(super) entries: Vec<IndexEntry>,
    pub(super) damage: Option<String>,
}

impl DecodedIndexes {
    /// The entries when both files decoded whole, else why not.
    pub(super) fn into_whole(self) -> Result<Vec<IndexEntry>, String> {
        match self.damage {
            None => Ok(self.entries),
            Some(reason) => Err(reason),
        }
    }
}

pub(super) fn decode_index_prefix(offset_index: &[u8], time_index: &[u8]) -> DecodedIndexes {
    let offset_entries = offset_index.chunks_exact(OFFSET_INDEX_ENTRY_BYTES);
    let time_entries = time_index.chunks_exact(TIME_INDEX_ENTRY_BYTES);
    let mut damage = if !offset_entries.remainder().is_empty() {
        Some(format!(
            "offset index is {} bytes, not a whole number of {OFFSET_INDEX_ENTRY_BYTES}-byte entries",
            offset_index.len()
        ))
    } else if !time_entries.remainder().is_empty() {
        Some(format!(
            "time index is {} bytes, not a whole number of {TIME_INDEX_ENTRY_BYTES}-byte entries",
            time_index.len()
        ))
    } else if offset_entries.len() != time_entries.len() {
        Some(format!(
            "offset index has {} entries, time index {}",
            offset_entries.len(),
            time_entries.len()
        ))
    } else {
        None
    };
    let mut entries = Vec::with_capacity(offset_entries.len().min(time_entries.len()));
    for (number, (offset_entry, time_entry)) in offset_entries.zip(time_entries).enumerate() {
        let relative_offset = u32_at(offset_entry, 0);
        let position = u32_at(offset_entry, 4);
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&time_entry[..8]);
        let time_relative_offset = u32_at(time_entry, 8);
        if time_relative_offset != relative_offset {
            damage = Some(format!(
                "entry {number}: offset index says relative offset {relative_offset}, \
                 time index {time_relative_offset}"
            ));
            break;
        }
        entries.push(IndexEntry {
            relative_offset,
            position,
            max_timestamp: i64::from_be_bytes(timestamp),
        });
    }
    DecodedIndexes { entries, damage }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Encodes entries into the two index files' contents.
pub(super) fn encode_indexes(entries: &[IndexEntry]) -> (Vec<u8>, Vec<u8>) {
    let mut offset_index = Vec::with_capacity(entries.len() * OFFSET_INDEX_ENTRY_BYTES);
    let mut time_index = Vec::with_capacity(entries.len() * TIME_INDEX_ENTRY_BYTES);
    for entry in entries {
        offset_index.extend_from_slice(&encode_offset_entry(entry.relative_offset, entry.position));
        time_index.extend_from_slice(&encode_time_entry(
            entry.max_timestamp,
            entry.relative_offset,
        ));
    }
    (offset_index, time_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_strangers_are_ignored() {
        let name = segment_file_name(1234, SegmentFileKind::TimeIndex);
        assert_eq!(name, "00000000000000001234.timeindex");
        assert_eq!(
            parse_segment_file_name(&name),
            Some((1234, SegmentFileKind::TimeIndex))
        );
        assert_eq!(
            parse_segment_file_name(&segment_file_name(i64::MAX, SegmentFileKind::Log)),
            Some((i64::MAX, SegmentFileKind::Log))
        );
        for stranger in [
            "1234.log",
            "0000000000000000123x.log",
            "00000000000000001234.log.swp",
            "00000000000000001234.snapshot",
            "99999999999999999999.log",
            "metadata.json",
        ] {
            assert_eq!(parse_segment_file_name(stranger), None, "{stranger}");
        }
    }

    #[test]
    fn partition_dir_names_split_at_the_last_dash() {
        let partition = TopicPartition::new("my-topic.v2-x", 17);
        let name = partition_dir_name(&partition);
        assert_eq!(name, "my-topic.v2-x-17");
        assert_eq!(parse_partition_dir_name(&name), Some(partition));
        // A topic may itself end in '-'.
        assert_eq!(
            parse_partition_dir_name("topic--3"),
            Some(TopicPartition::new("topic-", 3))
        );
        for stranger in ["topic", "topic-", "-3", "topic-+3", "topic-03", "topic-3a"] {
            assert_eq!(parse_partition_dir_name(stranger), None, "{stranger}");
        }
    }

    fn decode_whole(offset_index: &[u8], time_index: &[u8]) -> Result<Vec<IndexEntry>, String> {
        decode_index_prefix(offset_index, time_index).into_whole()
    }

    #[test]
    fn index_entries_round_trip_and_mismatches_are_reported() {
        let entries = vec![
            IndexEntry {
                relative_offset: 0,
                position: 0,
                max_timestamp: -1,
            },
            IndexEntry {
                relative_offset: 3,
                position: 90,
                max_timestamp: 1_700_000_000_000,
            },
        ];
        let (offset_index, time_index) = encode_indexes(&entries);
        assert_eq!(decode_whole(&offset_index, &time_index), Ok(entries));
        assert!(decode_whole(&offset_index[..7], &time_index).is_err());
        assert!(decode_whole(&offset_index, &time_index[..12]).is_err());
        let mut other_time_index = time_index.clone();
        other_time_index[23] ^= 1;
        assert!(decode_whole(&offset_index, &other_time_index).is_err());
    }

    #[test]
    fn a_torn_index_tail_keeps_the_whole_agreeing_entries_before_it() {
        let entries: Vec<IndexEntry> = (0..3)
            .map(|number| IndexEntry {
                relative_offset: number * 2,
                position: number * 100,
                max_timestamp: 7,
            })
            .collect();
        let (offset_index, time_index) = encode_indexes(&entries);
        // The offset index cut inside its last entry: two whole entries remain.
        let cut = decode_index_prefix(&offset_index[..20], &time_index);
        assert_eq!(cut.entries, entries[..2]);
        assert!(cut.damage.is_some());
        // The time index's last entry zeroed: its relative offset disagrees.
        let mut zeroed = time_index.clone();
        zeroed[24..].fill(0);
        let torn = decode_index_prefix(&offset_index, &zeroed);
        assert_eq!(torn.entries, entries[..2]);
        assert!(torn.damage.unwrap().starts_with("entry 2:"));
        let whole = decode_index_prefix(&offset_index, &time_index);
        assert_eq!((whole.entries, whole.damage), (entries, None));
    }
}
