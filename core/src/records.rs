//! Records the broker writes itself: leader-epoch markers and internal-log records.
//!
//! Client batches are never decoded or rebuilt (see `batch`). The broker writes a few
//! batches of its own, uncompressed: a control batch that opens each leader epoch, and the
//! records of its internal logs (cluster metadata, group state; one JSON document each).
//! This module encodes those batches and decodes the records inside uncompressed batches
//! (enough for the internal logs).
//!
//! Invariants: every encoded batch passes `batch::validate`; decoding refuses anything that
//! does not fit its declared lengths (never panics on bytes from a disk or a peer).

use crate::batch::{BatchHeader, BATCH_HEADER_BYTES, MAGIC_V2, NO_PRODUCER_ID};
use bytes::Bytes;
use thiserror::Error;

pub use crate::batch::{ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL};
/// Control record type KRaft uses for the record that opens a leader's epoch.
pub const CONTROL_TYPE_LEADER_CHANGE: i16 = 2;

/// One record to encode: key and value, either may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordsError {
    #[error("record batch is compressed; internal logs are written uncompressed")]
    Compressed,
    #[error("record data is truncated or malformed at byte {0}")]
    Malformed(usize),
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_nullable(out: &mut Vec<u8>, bytes: &Option<Bytes>) {
    match bytes {
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
        None => put_varint(out, -1),
    }
}

/// The idempotence fields of a batch's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerFields {
    /// A batch written without idempotence.
    pub const NONE: Self = Self {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Encodes an uncompressed magic-2 batch at base offset 0 (the log assigns the real one).
pub fn encode_batch(
    records: &[PlainRecord],
    timestamp_ms: i64,
    attributes: i16,
    leader_epoch: i32,
) -> Bytes {
    encode_producer_batch(
        records,
        timestamp_ms,
        attributes,
        leader_epoch,
        ProducerFields::NONE,
    )
}

/// Like `encode_batch`, with the producer's idempotence fields set.
pub fn encode_producer_batch(
    records: &[PlainRecord],
    timestamp_ms: i64,
    attributes: i16,
    leader_epoch: i32,
    producer: ProducerFields,
) -> Bytes {
    let mut body = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let mut encoded = vec![0u8]; // record attributes
        put_varint(&mut encoded, 0); // timestamp delta
        put_varint(&mut encoded, index as i64); // offset delta
        put_nullable(&mut encoded, &record.key);
        put_nullable(&mut encoded, &record.value);
        put_varint(&mut encoded, 0); // no headers
        put_varint(&mut body, encoded.len() as i64);
        body.extend_from_slice(&encoded);
    }
    let count = records.len() as i32;
    let mut covered = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    covered.extend_from_slice(&attributes.to_be_bytes());
    covered.extend_from_slice(&(count - 1).max(0).to_be_bytes());
    covered.extend_from_slice(&timestamp_ms.to_be_bytes());
    covered.extend_from_slice(&timestamp_ms.to_be_bytes());
    covered.extend_from_slice(&producer.producer_id.to_be_bytes());
    covered.extend_from_slice(&producer.producer_epoch.to_be_bytes());
    covered.extend_from_slice(&producer.base_sequence.to_be_bytes());
    covered.extend_from_slice(&count.to_be_bytes());
    covered.extend_from_slice(&body);
    let mut out = Vec::with_capacity(17 + 4 + covered.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((4 + 1 + 4 + covered.len()) as i32).to_be_bytes());
    out.extend_from_slice(&leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&crc32c::crc32c(&covered).to_be_bytes());
    out.extend_from_slice(&covered);
    Bytes::from(out)
}

/// The control batch a new leader appends first in its epoch (KRaft's LeaderChange). It
/// gives the epoch an offset of its own, so the leader can commit earlier entries safely
/// (Raft commits an old epoch's entries only through one of the current epoch). Consumers
/// skip control batches.
pub fn leader_change_batch(leader_epoch: i32, timestamp_ms: i64) -> Bytes {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&CONTROL_TYPE_LEADER_CHANGE.to_be_bytes());
    encode_batch(
        &[PlainRecord {
            key: Some(Bytes::from(key)),
            value: None,
        }],
        timestamp_ms,
        ATTRIBUTE_CONTROL,
        leader_epoch,
    )
}

/// Control record type of a transaction's abort marker.
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type of a transaction's commit marker.
pub const CONTROL_TYPE_COMMIT: i16 = 1;
/// The transaction marker a coordinator has a partition leader append (Kafka's
/// EndTransactionMarker): a transactional control batch of the producer, base sequence -1,
/// one record whose key is (version 0, type) and whose value is (version 0, coordinator
/// epoch).
pub fn transaction_marker_batch(
    commit: bool,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Bytes {
    let control_type = if commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&control_type.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    encode_producer_batch(
        &[PlainRecord {
            key: Some(Bytes::from(key)),
            value: Some(Bytes::from(value)),
        }],
        timestamp_ms,
        ATTRIBUTE_CONTROL | ATTRIBUTE_TRANSACTIONAL,
        -1,
        ProducerFields {
            producer_id,
            producer_epoch,
            base_sequence: -1,
        },
    )
}

/// The type in the key of a control batch's first record (0 abort, 1 commit, 2 leader
/// change), read from the batch's bytes (at least up to that key). `None` for a data batch
/// or bytes that do not hold a well-formed control key: never panics on stored bytes.
pub fn control_record_type(batch: &[u8]) -> Option<i16> {
    let header = crate::batch::read_header(batch).ok()?;
    if !header.is_control() || header.record_count < 1 {
        return None;
    }
    let bytes = Bytes::copy_from_slice(&batch[..batch.len().min(BATCH_HEADER_BYTES + 64)]);
    let mut cursor = Cursor {
        bytes: &bytes,
        at: BATCH_HEADER_BYTES,
    };
    cursor.varint().ok()?; // record length
    cursor.at += 1; // record attributes
    cursor.varint().ok()?; // timestamp delta
    cursor.varint().ok()?; // offset delta
    let key = cursor.nullable(&bytes).ok()??;
    if key.len() < 4 {
        return None;
    }
    Some(i16::from_be_bytes([key[2], key[3]]))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn varint(&mut self) -> Result<i64, RecordsError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or(RecordsError::Malformed(self.at))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(RecordsError::Malformed(self.at))
    }

    fn nullable(&mut self, batch: &Bytes) -> Result<Option<Bytes>, RecordsError> {
        let length = self.varint()?;
        if length < 0 {
            return Ok(None);
        }
        let end = self
            .at
            .checked_add(length as usize)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(RecordsError::Malformed(self.at))?;
        let slice = batch.slice(self.at..end);
        self.at = end;
        Ok(Some(slice))
    }
}

/// The records of an internal log (cluster metadata, group state): one JSON document per
/// record value, readable with any Kafka consumer.
pub fn encode_json_records<T: serde::Serialize>(records: &[T]) -> Vec<PlainRecord> {
    records
        .iter()
        .map(|record| PlainRecord {
            key: None,
            value: Some(Bytes::from(
                serde_json::to_vec(record).expect("internal records always encode"),
            )),
        })
        .collect()
}

/// The JSON documents of one batch of an internal log (control batches hold none); an error
/// names what did not decode.
pub fn decode_json_records<T: serde::de::DeserializeOwned>(
    header: &BatchHeader,
    batch: &Bytes,
) -> Result<Vec<T>, String> {
    if header.is_control() {
        return Ok(Vec::new());
    }
    decode_records(header, batch)
        .map_err(|error| error.to_string())?
        .iter()
        .map(|record| {
            let value = record.value.as_deref().unwrap_or_default();
            serde_json::from_slice(value).map_err(|error| error.to_string())
        })
        .collect()
}

/// Decodes the records of one validated, uncompressed batch (keys and values share the
/// batch's memory).
pub fn decode_records(
    header: &BatchHeader,
    batch: &Bytes,
) -> Result<Vec<PlainRecord>, RecordsError> {
    if header.attributes & 0x07 != 0 {
        return Err(RecordsError::Compressed);
    }
    let mut cursor = Cursor {
        bytes: batch,
        at: BATCH_HEADER_BYTES,
    };
    let mut records = Vec::new();
    for _ in 0..header.record_count.max(0) {
        let length = cursor.varint()?;
        let end = cursor
            .at
            .checked_add(usize::try_from(length).map_err(|_| RecordsError::Malformed(cursor.at))?)
            .filter(|end| *end <= batch.len())
            .ok_or(RecordsError::Malformed(cursor.at))?;
        cursor.at += 1; // attributes
        cursor.varint()?; // timestamp delta
        cursor.varint()?; // offset delta
        let key = cursor.nullable(batch)?;
        let value = cursor.nullable(batch)?;
        if cursor.at > end {
            return Err(RecordsError::Malformed(cursor.at));
        }
        cursor.at = end; // headers are not used by internal logs
        records.push(PlainRecord { key, value });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate;

    #[test]
    fn encoded_batches_validate_and_decode_back() {
        let records = vec![
            PlainRecord {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"hello")),
            },
            PlainRecord {
                key: None,
                value: Some(Bytes::from(vec![7u8; 300])),
            },
        ];
        let batch = encode_batch(&records, 42, 0, 5);
        let header = validate(&batch).unwrap();
        assert_eq!(header.record_count, 2);
        assert_eq!(header.partition_leader_epoch, 5);
        assert_eq!(decode_records(&header, &batch).unwrap(), records);
    }

    #[test]
    fn a_leader_change_batch_is_a_valid_control_batch() {
        let batch = leader_change_batch(9, 1);
        let header = validate(&batch).unwrap();
        assert!(header.is_control());
        assert_eq!(header.partition_leader_epoch, 9);
        assert_eq!(header.offset_count(), 1);
    }

    #[test]
    fn truncated_record_data_is_an_error_not_a_panic() {
        let batch = encode_batch(
            &[PlainRecord {
                key: None,
                value: Some(Bytes::from_static(b"value")),
            }],
            0,
            0,
            0,
        );
        let header = validate(&batch).unwrap();
        for cut in BATCH_HEADER_BYTES..batch.len() {
            assert!(decode_records(&header, &batch.slice(..cut)).is_err());
        }
    }
}
