//! Record batches (magic 2): building them for Produce and taking them apart after Fetch.
//!
//! Encoding goes through `kafka_protocol::records::RecordBatchEncoder`, decoding through
//! `RecordBatchDecoder` (which checks the CRC-32C and decompresses). This module adds what a
//! client needs around them: exactly one batch per produce call with the idempotence fields
//! set, splitting fetched bytes into whole batches (a fetch response may end with a partial
//! batch, which is ignored), batch header access, and control-record recognition.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

pub use kafka_protocol::records::Compression;

use crate::error::{Error, Result};

/// Size of a magic-2 batch header, from the base offset to the record count inclusive.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before the batch-length field's coverage starts (base offset + batch length).
const LOG_OVERHEAD: usize = 12;
/// The smallest possible encoded record (length, attributes, timestamp delta, offset delta,
/// key length, value length, header count: one byte each).
const MIN_RECORD_LEN: usize = 7;
/// Upper bound on the record count of a compressed batch, checked before the decoder
/// reserves memory for that many records.
pub const MAX_RECORDS_PER_COMPRESSED_BATCH: usize = 1 << 20;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Record key (`None` = null key).
    pub key: Option<Bytes>,
    /// Record value (`None` = null value, a tombstone).
    pub value: Option<Bytes>,
    /// Record headers, in order. (Duplicate header keys collapse into the last one: the
    /// codec stores headers in a map.)
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation timestamp in ms; `None` = the clock when the batch is encoded (virtual time
    /// under madsim).
    pub timestamp: Option<i64>,
}

impl NewRecord {
    /// A record with a value and no key.
    pub fn new(value: impl Into<Bytes>) -> Self {
        NewRecord {
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// A record with a key and a value.
    pub fn kv(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        NewRecord {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    /// Sets the creation timestamp (ms).
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

impl<K: Into<Bytes>, V: Into<Bytes>> From<(K, V)> for NewRecord {
    fn from((key, value): (K, V)) -> Self {
        NewRecord::kv(key, value)
    }
}

/// Batch-level fields of a batch to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Codec for the records section.
    pub compression: Compression,
    /// Producer id, or -1 for a non-idempotent batch.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Set the transactional attribute bit.
    pub transactional: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            compression: Compression::None,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            transactional: false,
        }
    }
}

/// Encodes `records` as exactly one magic-2 record batch with base offset 0 (the broker
/// assigns real offsets) and partition leader epoch -1.
pub fn encode_batch(records: &[NewRecord], options: &BatchOptions) -> Result<Bytes> {
    if records.is_empty() {
        return Err(Error::InvalidArgument(
            "a batch needs at least one record".into(),
        ));
    }
    if records.len() > i32::MAX as usize {
        return Err(Error::InvalidArgument(
            "too many records for one batch".into(),
        ));
    }
    let now = now_ms();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: options.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: options.producer_id,
            producer_epoch: options.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while `offset - sequence` stays
            // constant, and writes the first record's sequence as the base sequence.
            sequence: options.base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp.unwrap_or(now),
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: options.compression,
        },
    )
    .map_err(|e| Error::protocol("encode record batch", e))?;
    let buf = buf.freeze();
    let (batches, rest) = split_batches(&buf)?;
    if batches.len() != 1 || rest != 0 {
        return Err(Error::Protocol(format!(
            "encoder produced {} batches and {rest} stray bytes, expected one batch",
            batches.len()
        )));
    }
    Ok(buf)
}

/// The fixed header of a magic-2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Length of the batch after the length field.
    pub batch_length: i32,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Format version (always 2 here).
    pub magic: i8,
    /// CRC-32C of the bytes from the attributes to the end.
    pub crc: u32,
    /// Attribute bits (codec, timestamp type, transactional, control).
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id (-1 if none).
    pub producer_id: i64,
    /// Producer epoch (-1 if none).
    pub producer_epoch: i16,
    /// Sequence of the first record (-1 if none).
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the first [`BATCH_HEADER_LEN`] bytes of `data`.
    pub fn parse(data: &[u8]) -> Result<BatchHeader> {
        if data.len() < BATCH_HEADER_LEN {
            return Err(Error::Protocol(format!(
                "record batch header needs {BATCH_HEADER_LEN} bytes, have {}",
                data.len()
            )));
        }
        let mut b = &data[..BATCH_HEADER_LEN];
        Ok(BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            partition_leader_epoch: b.get_i32(),
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            record_count: b.get_i32(),
        })
    }

    /// The codec of the records section (`None` for an unknown codec id).
    pub fn compression(&self) -> Option<Compression> {
        match self.attributes & ATTR_COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Whether the timestamps are log-append times.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset following this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Total encoded size including the base offset and length fields.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
}

/// Splits `data` into whole batches (zero-copy). Returns the batches and the number of
/// trailing bytes that do not form a whole batch (a fetch response may be cut mid-batch).
/// Errors on a batch whose length field is impossible or whose magic is not 2.
pub fn split_batches(data: &Bytes) -> Result<(Vec<Bytes>, usize)> {
    let mut batches = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= LOG_OVERHEAD {
        let mut len_field = &data[pos + 8..pos + LOG_OVERHEAD];
        let batch_length = len_field.get_i32();
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(Error::Protocol(format!(
                "record batch at byte {pos} has impossible length {batch_length}"
            )));
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        if data.len() - pos < total {
            break;
        }
        let magic = data[pos + 16] as i8;
        if magic != 2 {
            return Err(Error::Protocol(format!(
                "record batch at byte {pos} has magic {magic}; only magic 2 is supported"
            )));
        }
        batches.push(data.slice(pos..pos + total));
        pos += total;
    }
    Ok((batches, data.len() - pos))
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp (ms); see the batch header for its type.
    pub timestamp: i64,
    /// Key (`None` = null).
    pub key: Option<Bytes>,
    /// Value (`None` = null).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// One decoded batch: its header and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// The batch header.
    pub header: BatchHeader,
    /// The records, with absolute offsets.
    pub records: Vec<ConsumedRecord>,
}

/// Decodes one whole batch (as returned by [`split_batches`]): checks the CRC, decompresses,
/// and decodes the records.
pub fn decode_batch(batch: &Bytes) -> Result<DecodedBatch> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(Error::Protocol(format!(
            "record batch is {} bytes but its header says {}",
            batch.len(),
            header.total_len()
        )));
    }
    let count = usize::try_from(header.record_count)
        .map_err(|_| Error::Protocol(format!("negative record count {}", header.record_count)))?;
    // The decoder reserves `count` records up front: bound it by what the bytes can hold.
    let body_len = batch.len() - BATCH_HEADER_LEN;
    let limit = match header.compression() {
        Some(Compression::None) => body_len / MIN_RECORD_LEN,
        _ => MAX_RECORDS_PER_COMPRESSED_BATCH,
    };
    if count > limit {
        return Err(Error::Protocol(format!(
            "record batch claims {count} records in {body_len} bytes"
        )));
    }
    let mut buf = batch.clone();
    // The decoder keeps a record's headers in a map, which merges repeated keys; Kafka's
    // headers are a list (kcat -H a=1 -H a=2 sends both). Keep the record bytes (after
    // decompression) to read the headers again where there are any.
    let raw_records = std::cell::RefCell::new(Bytes::new());
    let decompress = |records: &mut Bytes, compression: Compression| {
        use kafka_protocol::compression::{Decompressor, Gzip, Lz4, None as Plain, Snappy, Zstd};
        let whole = |b: &mut Bytes| Ok(b.split_to(b.len()));
        let bytes = match compression {
            Compression::None => Plain::decompress(records, whole),
            Compression::Gzip => Gzip::decompress(records, whole),
            Compression::Snappy => Snappy::decompress(records, whole),
            Compression::Lz4 => Lz4::decompress(records, whole),
            Compression::Zstd => Zstd::decompress(records, whole),
        }?;
        *raw_records.borrow_mut() = bytes.clone();
        Ok(bytes)
    };
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress))
        .map_err(|e| Error::protocol("decode record batch", e))?;
    if set.records.len() != count {
        return Err(Error::Protocol(format!(
            "record batch header says {count} records, decoded {}",
            set.records.len()
        )));
    }
    let mut records: Vec<ConsumedRecord> = set
        .records
        .into_iter()
        .map(|r| ConsumedRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect(),
        })
        .collect();
    if records.iter().any(|r| !r.headers.is_empty()) {
        let listed = record_headers(raw_records.into_inner(), records.len())
            .map_err(|e| Error::Protocol(format!("record headers: {e}")))?;
        for (record, headers) in records.iter_mut().zip(listed) {
            record.headers = headers;
        }
    }
    Ok(DecodedBatch { header, records })
}

/// Reads a zig-zag varint (at most 10 bytes).
fn varint(buf: &mut Bytes) -> std::result::Result<i64, String> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err("truncated varint".into());
        }
        let byte = buf.get_u8();
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// `len` bytes (after a varint length; -1 is null) from `buf`.
fn sized(buf: &mut Bytes) -> std::result::Result<Option<Bytes>, String> {
    let len = varint(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| "length overflows".to_owned())?;
    if buf.remaining() < len {
        return Err(format!("{len} bytes announced, {} left", buf.remaining()));
    }
    Ok(Some(buf.split_to(len)))
}

/// One record's headers.
type Headers = Vec<(String, Option<Bytes>)>;

/// The headers of each of the `count` records in `records` (a batch's record bytes, after
/// decompression), as the list they are on the wire: repeated keys kept, in order.
fn record_headers(mut records: Bytes, count: usize) -> std::result::Result<Vec<Headers>, String> {
    let mut all = Vec::with_capacity(count);
    for _ in 0..count {
        let mut record = sized(&mut records)?.ok_or("a record of length -1")?;
        if !record.has_remaining() {
            return Err("an empty record".into());
        }
        record.advance(1); // attributes
        varint(&mut record)?; // timestamp delta
        varint(&mut record)?; // offset delta
        sized(&mut record)?; // key
        sized(&mut record)?; // value
        let count = varint(&mut record)?;
        let count = usize::try_from(count).map_err(|_| format!("{count} headers"))?;
        let mut headers = Vec::with_capacity(count.min(record.remaining()));
        for _ in 0..count {
            let key = sized(&mut record)?.ok_or("a null header key")?;
            let key = String::from_utf8(key.to_vec()).map_err(|e| e.to_string())?;
            headers.push((key, sized(&mut record)?));
        }
        all.push(headers);
    }
    Ok(all)
}

/// Splits and decodes every whole batch in `data`; a trailing partial batch is ignored.
pub fn decode_batches(data: &Bytes) -> Result<Vec<DecodedBatch>> {
    let (batches, _partial) = split_batches(data)?;
    batches.iter().map(decode_batch).collect()
}

/// The kind of a control record (transaction marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecordType {
    /// The transaction was aborted.
    Abort,
    /// The transaction was committed.
    Commit,
    /// Another control type (the value is the type field).
    Other(i16),
}

/// Reads the type of a control record from its key (version i16, type i16).
pub fn control_record_type(record: &ConsumedRecord) -> Option<ControlRecordType> {
    let key = record.key.as_ref()?;
    if key.len() < 4 {
        return None;
    }
    let mut k = &key[..4];
    let _version = k.get_i16();
    Some(match k.get_i16() {
        0 => ControlRecordType::Abort,
        1 => ControlRecordType::Commit,
        other => ControlRecordType::Other(other),
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_header_keys_are_all_kept_in_order() {
        // One record: attributes, timestamp and offset deltas 0, a null key, value "v", and
        // the headers a=1, a=null, b=2 (zig-zag varints: -1 is 1, n >= 0 is 2n).
        let body: &[u8] = &[
            0, 0, 0, 1, 2, b'v', 6, 2, b'a', 2, b'1', 2, b'a', 1, 2, b'b', 2, b'2',
        ];
        let mut records = vec![u8::try_from(body.len() * 2).unwrap()];
        records.extend_from_slice(body);
        let headers = record_headers(Bytes::from(records), 1).unwrap();
        assert_eq!(
            headers,
            vec![vec![
                ("a".to_owned(), Some(Bytes::from_static(b"1"))),
                ("a".to_owned(), None),
                ("b".to_owned(), Some(Bytes::from_static(b"2"))),
            ]]
        );
        // Cut short anywhere: an error, never a panic.
        let mut whole = vec![u8::try_from(body.len() * 2).unwrap()];
        whole.extend_from_slice(body);
        for cut in 0..whole.len() {
            assert!(record_headers(Bytes::copy_from_slice(&whole[..cut]), 1).is_err());
        }
    }

    fn sample() -> Vec<NewRecord> {
        vec![
            NewRecord::kv("k0", "v0").with_timestamp(1_000),
            NewRecord::new("v1")
                .with_header("h", Some(Bytes::from_static(b"x")))
                .with_header("empty", None)
                .with_timestamp(1_005),
            NewRecord {
                key: Some(Bytes::from_static(b"k2")),
                value: None,
                headers: vec![],
                timestamp: Some(999),
            },
        ]
    }

    #[test]
    fn round_trip_all_codecs() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let options = BatchOptions {
                compression,
                producer_id: 42,
                producer_epoch: 3,
                base_sequence: 17,
                transactional: false,
            };
            let bytes = encode_batch(&sample(), &options).unwrap();
            let batches = decode_batches(&bytes).unwrap();
            assert_eq!(batches.len(), 1, "{compression:?}");
            let b = &batches[0];
            assert_eq!(b.header.base_offset, 0);
            assert_eq!(b.header.magic, 2);
            assert_eq!(b.header.compression(), Some(compression));
            assert_eq!(b.header.producer_id, 42);
            assert_eq!(b.header.producer_epoch, 3);
            assert_eq!(b.header.base_sequence, 17);
            assert_eq!(b.header.record_count, 3);
            assert_eq!(b.header.last_offset_delta, 2);
            assert_eq!(b.header.base_timestamp, 999);
            assert_eq!(b.header.max_timestamp, 1_005);
            assert_eq!(b.header.partition_leader_epoch, -1);
            assert!(!b.header.is_transactional() && !b.header.is_control());
            assert_eq!(b.header.total_len(), bytes.len());

            let r = &b.records;
            assert_eq!(r.len(), 3);
            assert_eq!((r[0].offset, r[1].offset, r[2].offset), (0, 1, 2));
            assert_eq!(r[0].key.as_deref(), Some(&b"k0"[..]));
            assert_eq!(r[0].value.as_deref(), Some(&b"v0"[..]));
            assert_eq!(r[0].timestamp, 1_000);
            assert_eq!(r[1].key, None);
            assert_eq!(
                r[1].headers,
                vec![
                    ("h".to_owned(), Some(Bytes::from_static(b"x"))),
                    ("empty".to_owned(), None)
                ]
            );
            assert_eq!(r[2].value, None);
            assert_eq!(r[2].timestamp, 999);
        }
    }

    #[test]
    fn non_idempotent_batch_is_one_batch_with_sequence_minus_one() {
        let records: Vec<NewRecord> = (0..50).map(|i| NewRecord::new(format!("v{i}"))).collect();
        let bytes = encode_batch(&records, &BatchOptions::default()).unwrap();
        let batches = decode_batches(&bytes).unwrap();
        assert_eq!(batches.len(), 1);
        let h = batches[0].header;
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );
        assert_eq!(h.record_count, 50);
        assert!(
            h.base_timestamp > 0,
            "default timestamp comes from the clock"
        );
    }

    #[test]
    fn transactional_bit_and_sequence_wrap() {
        let options = BatchOptions {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: i32::MAX,
            transactional: true,
            ..Default::default()
        };
        let bytes = encode_batch(&[NewRecord::new("a"), NewRecord::new("b")], &options).unwrap();
        let batches = decode_batches(&bytes).unwrap();
        assert_eq!(batches.len(), 1);
        assert!(batches[0].header.is_transactional());
        assert_eq!(batches[0].header.base_sequence, i32::MAX);
    }

    #[test]
    fn empty_batch_is_refused() {
        assert!(matches!(
            encode_batch(&[], &BatchOptions::default()),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn split_ignores_partial_trailing_batch() {
        let a = encode_batch(&[NewRecord::new("a")], &BatchOptions::default()).unwrap();
        let b = encode_batch(&[NewRecord::new("bb")], &BatchOptions::default()).unwrap();
        let mut joined = BytesMut::new();
        joined.extend_from_slice(&a);
        joined.extend_from_slice(&b);
        joined.extend_from_slice(&a[..a.len() - 5]);
        let joined = joined.freeze();
        let (batches, rest) = split_batches(&joined).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(rest, a.len() - 5);
        assert_eq!(decode_batches(&joined).unwrap().len(), 2);
        // Fewer bytes than a length field: also just "partial".
        assert_eq!(split_batches(&a.slice(..7)).unwrap(), (vec![], 7));
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let good = encode_batch(&[NewRecord::kv("k", "v")], &BatchOptions::default()).unwrap();

        // Flipped payload byte: CRC mismatch.
        let mut bad = BytesMut::from(&good[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            decode_batches(&bad.freeze()),
            Err(Error::Protocol(_))
        ));

        // Wrong magic.
        let mut bad = BytesMut::from(&good[..]);
        bad[16] = 1;
        assert!(matches!(
            split_batches(&bad.freeze()),
            Err(Error::Protocol(_))
        ));

        // Impossible length.
        let mut bad = BytesMut::from(&good[..]);
        bad[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(matches!(
            split_batches(&bad.freeze()),
            Err(Error::Protocol(_))
        ));

        // Huge record count (the CRC does not cover it being checked first).
        let mut bad = BytesMut::from(&good[..]);
        bad[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_batches(&bad.freeze()),
            Err(Error::Protocol(_))
        ));

        // Negative record count.
        let mut bad = BytesMut::from(&good[..]);
        bad[57..61].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            decode_batches(&bad.freeze()),
            Err(Error::Protocol(_))
        ));

        // Truncated header.
        assert!(BatchHeader::parse(&good[..20]).is_err());
    }

    #[test]
    fn control_record_types() {
        let mk = |key: &'static [u8]| ConsumedRecord {
            offset: 0,
            timestamp: 0,
            key: Some(Bytes::from_static(key)),
            value: None,
            headers: vec![],
        };
        assert_eq!(
            control_record_type(&mk(&[0, 0, 0, 0])),
            Some(ControlRecordType::Abort)
        );
        assert_eq!(
            control_record_type(&mk(&[0, 0, 0, 1])),
            Some(ControlRecordType::Commit)
        );
        assert_eq!(
            control_record_type(&mk(&[0, 0, 0, 5])),
            Some(ControlRecordType::Other(5))
        );
        assert_eq!(control_record_type(&mk(&[0, 0])), None);
    }
}
