//! Kafka record batches (magic 2), read and checked without being rebuilt.
//!
//! A record batch is the unit of storage, replication and fetch: the broker never decodes the
//! records inside (they may be compressed with any codec) and never re-encodes them. It reads
//! the fixed 61-byte header, checks the lengths and the CRC-32C, and later overwrites the
//! 8-byte base offset, which lies outside the CRC, as the batch is written.
//!
//! Invariants checked here:
//! - a batch is accepted only with magic 2, a batch length that matches the bytes present,
//!   a record count consistent with `last_offset_delta`, and a CRC-32C that matches the bytes
//!   from the attributes field to the end;
//! - the same checks run on produce and again on recovery (the pair of assertions across the
//!   disk boundary).

use bytes::Bytes;
use thiserror::Error;

/// Bytes before the batch-length field ends: base offset (8) + batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed record-batch header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// The only record-batch format this broker stores.
pub const MAGIC_V2: i8 = 2;

const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORD_COUNT: usize = 57;

/// Bits 0-2 of the attributes: the compression codec.
pub const ATTRIBUTE_CODEC_MASK: i16 = 0b111;
/// Attribute bit of a transactional batch.
pub const ATTRIBUTE_TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit of a control batch.
pub const ATTRIBUTE_CONTROL: i16 = 1 << 5;

/// Producer id of a batch written without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;

/// Why a batch was refused. Each maps to a Kafka error code at the wire edge.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("record batch is {0} bytes, shorter than the {BATCH_HEADER_BYTES}-byte header")]
    TooShort(usize),
    #[error("record batch magic is {0}, only magic 2 is supported")]
    UnsupportedMagic(i8),
    #[error("record batch length field says {declared} bytes but {present} are present")]
    LengthMismatch { declared: i64, present: usize },
    #[error(
        "record batch CRC-32C mismatch: header says {expected:#010x}, bytes give {actual:#010x}"
    )]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("record batch has {record_count} records but last offset delta {last_offset_delta}")]
    BadRecordCount {
        record_count: i32,
        last_offset_delta: i32,
    },
}

/// The header fields of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch in bytes, including the 12-byte log overhead.
    pub size_bytes: u32,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Offsets the batch occupies: `base_offset ..= base_offset + last_offset_delta`.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    /// The compression codec of the records (attribute bits 0-2: 0 none, 1 gzip, 2 snappy,
    /// 3 lz4, 4 zstd).
    pub fn codec(&self) -> u8 {
        (self.attributes & ATTRIBUTE_CODEC_MASK) as u8
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// Sequence number of the last record, wrapping as Kafka does at `i32::MAX`.
    pub fn last_sequence(&self) -> i32 {
        sequence_add(self.base_sequence, self.last_offset_delta)
    }
}

/// Kafka sequence arithmetic: sequences wrap from `i32::MAX` back to 0.
pub fn sequence_add(sequence: i32, increment: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(increment);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(word)
}

/// Reads the header fields of the batch at the start of `bytes` without checking the CRC.
///
/// `bytes` must hold at least the header; the batch body may be absent (recovery reads
/// headers alone to rebuild producer state).
pub fn read_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    if bytes.len() < BATCH_HEADER_BYTES {
        return Err(BatchError::TooShort(bytes.len()));
    }
    let magic = bytes[OFFSET_MAGIC] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let batch_length = read_i32(bytes, OFFSET_BATCH_LENGTH);
    let size = i64::from(batch_length) + LOG_OVERHEAD as i64;
    if size < BATCH_HEADER_BYTES as i64 {
        return Err(BatchError::LengthMismatch {
            declared: size,
            present: bytes.len(),
        });
    }
    let header = BatchHeader {
        base_offset: read_i64(bytes, 0),
        size_bytes: size as u32,
        partition_leader_epoch: read_i32(bytes, OFFSET_PARTITION_LEADER_EPOCH),
        attributes: read_i16(bytes, OFFSET_ATTRIBUTES),
        last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA),
        base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
        max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
        producer_id: read_i64(bytes, OFFSET_PRODUCER_ID),
        producer_epoch: read_i16(bytes, OFFSET_PRODUCER_EPOCH),
        base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE),
        record_count: read_i32(bytes, OFFSET_RECORD_COUNT),
    };
    let counts_agree = header.last_offset_delta >= 0
        && (header.record_count == header.last_offset_delta + 1
            // Compaction may leave fewer records than offsets; never more.
            || (header.record_count >= 0 && header.record_count <= header.last_offset_delta + 1));
    if !counts_agree {
        return Err(BatchError::BadRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Checks one whole batch: header fields, exact length and CRC-32C.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = read_header(bytes)?;
    if header.size_bytes as usize != bytes.len() {
        return Err(BatchError::LengthMismatch {
            declared: i64::from(header.size_bytes),
            present: bytes.len(),
        });
    }
    let expected = read_i32(bytes, OFFSET_CRC) as u32;
    let actual = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..]);
    if expected != actual {
        return Err(BatchError::CrcMismatch { expected, actual });
    }
    Ok(header)
}

/// Splits a produce request's record set into its batches, validating each.
pub fn validate_record_set(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    record_set_batches(records).collect()
}

/// A record set's batches in order, each validated; the first invalid one ends it with its
/// error (so a caller knows which batches before it were whole).
pub fn record_set_batches(
    records: &Bytes,
) -> impl Iterator<Item = Result<(BatchHeader, Bytes), BatchError>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= records.len() {
            return None;
        }
        let rest = &records[at..];
        let batch = if rest.len() < LOG_OVERHEAD {
            Err(BatchError::TooShort(rest.len()))
        } else {
            let declared = i64::from(read_i32(rest, OFFSET_BATCH_LENGTH)) + LOG_OVERHEAD as i64;
            if declared < BATCH_HEADER_BYTES as i64 || declared > rest.len() as i64 {
                Err(BatchError::LengthMismatch {
                    declared,
                    present: rest.len(),
                })
            } else {
                let end = at + declared as usize;
                validate(&records[at..end]).map(|header| {
                    let bytes = records.slice(at..end);
                    at = end;
                    (header, bytes)
                })
            }
        };
        if batch.is_err() {
            at = records.len();
        }
        Some(batch)
    })
}

/// The 8 bytes that replace a batch's base offset as it is written (outside the CRC).
pub fn base_offset_bytes(base_offset: i64) -> [u8; 8] {
    base_offset.to_be_bytes()
}

/// Bytes of a batch's header that storage rewrites: the first 16 (base offset, batch length,
/// partition leader epoch), with the base offset and leader epoch the log gave the batch.
/// Both fields lie outside the CRC, so the batch stays valid. `bytes` is a whole batch.
pub fn stored_header_prefix(bytes: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    prefix[..8].copy_from_slice(&base_offset_bytes(base_offset));
    prefix[8..12].copy_from_slice(&bytes[8..12]);
    prefix[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    prefix
}

/// What [`scan_batches`] found in a segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchScan {
    /// The whole, valid batches from position 0, in order.
    pub batches: Vec<crate::api::RecoveredBatch>,
    /// Bytes those batches cover: where a torn or corrupt tail is cut.
    pub valid_bytes: usize,
    /// Why the scan stopped before the end of `bytes`, if it did.
    pub stop_reason: Option<String>,
}

/// Largest segment: positions are `u32`.
const SEGMENT_BYTES_MAX: u64 = 1 << 32;

/// Scans a segment's bytes batch by batch from position 0, as recovery does: each whole
/// batch is checked with [`validate`] (header, exact length, CRC-32C) and for offset
/// continuity (the first at `segment_base_offset`, each next at the previous last offset + 1,
/// none more than 2^32 - 1 above the base), up to the end or the first batch that fails.
/// A pure function of the bytes, shared by every storage that recovers segments.
pub fn scan_batches(bytes: &[u8], segment_base_offset: i64) -> BatchScan {
    let mut batches = Vec::new();
    let mut position = 0usize;
    let mut expected_offset = segment_base_offset;
    let stop_reason = loop {
        if position == bytes.len() {
            break None;
        }
        let remaining = bytes.len() - position;
        if remaining < BATCH_HEADER_BYTES {
            break Some(format!(
                "{remaining} bytes at the end, fewer than a batch header"
            ));
        }
        let header = match read_header(&bytes[position..]) {
            Ok(header) => header,
            Err(error) => break Some(error.to_string()),
        };
        let size_bytes = header.size_bytes as usize;
        if size_bytes > remaining {
            break Some(format!(
                "a batch of {size_bytes} bytes is cut short: {remaining} bytes remain"
            ));
        }
        if (position + size_bytes) as u64 > SEGMENT_BYTES_MAX {
            break Some("the batch would end past the 4 GiB segment limit".to_string());
        }
        if let Err(error) = validate(&bytes[position..position + size_bytes]) {
            break Some(error.to_string());
        }
        if header.base_offset != expected_offset {
            break Some(format!(
                "the batch is at offset {}, but offset {expected_offset} comes next",
                header.base_offset
            ));
        }
        if header.base_offset - segment_base_offset > i64::from(u32::MAX) {
            break Some("the batch is more than 2^32 offsets above the segment base".to_string());
        }
        let Some(next_offset) = header.base_offset.checked_add(header.offset_count()) else {
            break Some("the batch's offsets overflow".to_string());
        };
        batches.push(crate::api::RecoveredBatch {
            // Below 4 GiB: checked against SEGMENT_BYTES_MAX above.
            position: position as u32,
            header,
            control_type: crate::records::control_record_type(
                &bytes[position..position + size_bytes],
            ),
        });
        position += size_bytes;
        expected_offset = next_offset;
    };
    BatchScan {
        batches,
        valid_bytes: position,
        stop_reason,
    }
}

#[cfg(test)]
pub(crate) mod test_batches {
    //! Builders of valid record batches for tests (uncompressed, minimal records).
    use super::*;
    use crate::records::{encode_producer_batch, PlainRecord, ProducerFields};

    /// A batch of `record_count` records (values `v0`, `v1`, ...) with the given producer
    /// fields.
    pub fn batch(
        record_count: i32,
        timestamp: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Bytes {
        let records: Vec<PlainRecord> = (0..record_count)
            .map(|index| PlainRecord {
                key: None,
                value: Some(Bytes::from(format!("v{index}"))),
            })
            .collect();
        let producer = ProducerFields {
            producer_id,
            producer_epoch,
            base_sequence,
        };
        encode_producer_batch(&records, timestamp, 0, 0, producer)
    }

    /// A transactional batch of `record_count` records of the producer.
    pub fn transactional(
        record_count: i32,
        timestamp: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Bytes {
        let records: Vec<PlainRecord> = (0..record_count)
            .map(|index| PlainRecord {
                key: None,
                value: Some(Bytes::from(format!("t{index}"))),
            })
            .collect();
        let producer = ProducerFields {
            producer_id,
            producer_epoch,
            base_sequence,
        };
        encode_producer_batch(&records, timestamp, ATTRIBUTE_TRANSACTIONAL, 0, producer)
    }

    /// A non-idempotent batch.
    pub fn plain(record_count: i32, timestamp: i64) -> Bytes {
        batch(record_count, timestamp, NO_PRODUCER_ID, -1, -1)
    }
}

#[cfg(test)]
mod tests {
    use super::test_batches::*;
    use super::*;

    #[test]
    fn a_built_batch_validates_and_reports_its_header() {
        let bytes = batch(3, 1_000, 7, 2, 10);
        let header = validate(&bytes).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.offset_count(), 3);
        assert_eq!(header.producer_id, 7);
        assert_eq!(header.producer_epoch, 2);
        assert_eq!(header.base_sequence, 10);
        assert_eq!(header.last_sequence(), 12);
        assert_eq!(header.max_timestamp, 1_000);
        assert_eq!(header.size_bytes as usize, bytes.len());
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let bytes = plain(2, 5);
        for at in OFFSET_ATTRIBUTES..bytes.len() {
            let mut corrupt = bytes.to_vec();
            corrupt[at] ^= 0x01;
            assert!(
                validate(&corrupt).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
    }

    #[test]
    fn the_base_offset_is_outside_the_crc() {
        let mut bytes = plain(2, 5).to_vec();
        bytes[..8].copy_from_slice(&base_offset_bytes(12345));
        assert_eq!(validate(&bytes).unwrap().base_offset, 12345);
    }

    #[test]
    fn truncated_and_overlong_batches_are_refused() {
        let bytes = plain(2, 5);
        assert!(validate(&bytes[..bytes.len() - 1]).is_err());
        assert!(validate(&bytes[..10]).is_err());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(validate(&longer).is_err());
        assert!(validate_record_set(&Bytes::from(longer)).is_err());
    }

    #[test]
    fn a_record_set_splits_into_its_batches() {
        let mut set = plain(2, 5).to_vec();
        set.extend_from_slice(&plain(4, 6));
        let batches = validate_record_set(&Bytes::from(set)).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1].0.record_count, 4);
    }

    #[test]
    fn a_scan_keeps_whole_contiguous_batches_and_stops_at_the_first_bad_one() {
        let mut segment = Vec::new();
        for (base_offset, count) in [(100i64, 2i32), (102, 3)] {
            let mut bytes = plain(count, 5).to_vec();
            bytes[..8].copy_from_slice(&base_offset_bytes(base_offset));
            segment.extend_from_slice(&bytes);
        }
        let whole = segment.len();
        let scan = scan_batches(&segment, 100);
        assert_eq!(scan.batches.len(), 2);
        assert_eq!(scan.valid_bytes, whole);
        assert_eq!(scan.stop_reason, None);
        assert_eq!(scan.batches[1].header.base_offset, 102);

        // A torn tail: half a batch more.
        let extra = plain(1, 5);
        segment.extend_from_slice(&extra[..extra.len() / 2]);
        let scan = scan_batches(&segment, 100);
        assert_eq!((scan.batches.len(), scan.valid_bytes), (2, whole));
        assert!(scan.stop_reason.is_some());

        // A whole batch with a zeroed tail fails its CRC.
        segment.truncate(whole);
        let mut zeroed = extra.to_vec();
        zeroed[..8].copy_from_slice(&base_offset_bytes(105));
        let length = zeroed.len();
        zeroed[length - 4..].fill(0);
        segment.extend_from_slice(&zeroed);
        let scan = scan_batches(&segment, 100);
        assert_eq!((scan.batches.len(), scan.valid_bytes), (2, whole));

        // A batch at the wrong offset breaks continuity.
        assert_eq!(scan_batches(&segment[..whole], 99).batches.len(), 0);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(sequence_add(i32::MAX, 1), 0);
        assert_eq!(sequence_add(i32::MAX - 1, 3), 1);
    }
}
