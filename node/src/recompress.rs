//! Broker-side recompression: a topic whose `compression.type` is not `producer` stores
//! every produced batch in that codec (Kafka's behaviour). The core decides when
//! (`myelin_core::broker`, `stored_batch`) and calls this pure function through
//! `BrokerConfig::recompressor`; it lives here because the node links the codecs.
//!
//! The records inside a magic-2 batch are encoded the same whatever the codec; only the
//! bytes after the 61-byte header are compressed. So a batch is recompressed by
//! decompressing those bytes and compressing them again: the header (base offset, leader
//! epoch, offsets delta, timestamps, producer id, epoch, base sequence, record count, the
//! transactional and control bits) is kept byte for byte, except the codec bits, the batch
//! length and the CRC-32C, which are recomputed. Decompression stops at
//! [`DECOMPRESSED_BYTES_MAX`], so a small batch that expands without bound is refused
//! rather than exhausting memory.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use myelin_core::api::Recompressor;
use myelin_core::batch::{validate, ATTRIBUTE_CODEC_MASK, BATCH_HEADER_BYTES};
use std::io::Read;

/// The most bytes a batch's records may decompress to.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Byte offsets of the header fields rewritten (Kafka's `DefaultRecordBatch` layout).
const OFFSET_LENGTH: usize = 8;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
/// Bytes before the length field's count starts (base offset and the length itself).
const LOG_OVERHEAD: usize = 12;

/// What the core is given.
pub fn recompressor() -> Recompressor {
    Recompressor(recompress)
}

/// `batch` (one whole, valid magic-2 batch) with its records in `codec` (0-4).
pub fn recompress(batch: &Bytes, codec: u8) -> Result<Bytes, String> {
    let header = validate(batch).map_err(|error| error.to_string())?;
    if header.codec() == codec {
        return Ok(batch.clone());
    }
    let records = decompress(header.codec(), &batch[BATCH_HEADER_BYTES..])?;
    let compressed = compress(codec, &records)?;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + compressed.len());
    out.put_slice(&batch[..BATCH_HEADER_BYTES]);
    out.put_slice(&compressed);
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| "the recompressed batch is too large".to_string())?;
    out[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([batch[OFFSET_ATTRIBUTES], batch[OFFSET_ATTRIBUTES + 1]]);
    let attributes = (attributes & !ATTRIBUTE_CODEC_MASK) | i16::from(codec);
    out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

fn decompress(codec: u8, compressed: &[u8]) -> Result<Vec<u8>, String> {
    let bounded = |reader: &mut dyn Read| -> Result<Vec<u8>, String> {
        let mut records = Vec::new();
        reader
            .take(DECOMPRESSED_BYTES_MAX as u64 + 1)
            .read_to_end(&mut records)
            .map_err(|error| format!("cannot decompress: {error}"))?;
        if records.len() > DECOMPRESSED_BYTES_MAX {
            return Err(format!(
                "the records decompress to more than {DECOMPRESSED_BYTES_MAX} bytes"
            ));
        }
        Ok(records)
    };
    match codec {
        0 => Ok(compressed.to_vec()),
        1 => bounded(&mut flate2::read::GzDecoder::new(compressed)),
        2 => decompress_snappy(compressed),
        3 => {
            let mut decoder = lz4::Decoder::new(compressed)
                .map_err(|error| format!("cannot decompress lz4: {error}"))?;
            bounded(&mut decoder)
        }
        4 => {
            let mut decoder = zstd::stream::read::Decoder::new(compressed)
                .map_err(|error| format!("cannot decompress zstd: {error}"))?;
            bounded(&mut decoder)
        }
        other => Err(format!("unknown compression codec {other}")),
    }
}

/// Kafka's snappy: xerial framing (a 16-byte magic header, then blocks of a big-endian
/// length and raw snappy), or raw snappy without the header, as Kafka's reader accepts.
fn decompress_snappy(compressed: &[u8]) -> Result<Vec<u8>, String> {
    const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER_BYTES: usize = 16;
    let raw_block = |block: &[u8], total: usize| -> Result<Vec<u8>, String> {
        let length = snap::raw::decompress_len(block).map_err(|error| error.to_string())?;
        if total + length > DECOMPRESSED_BYTES_MAX {
            return Err(format!(
                "the records decompress to more than {DECOMPRESSED_BYTES_MAX} bytes"
            ));
        }
        snap::raw::Decoder::new()
            .decompress_vec(block)
            .map_err(|error| format!("cannot decompress snappy: {error}"))
    };
    if !compressed.starts_with(XERIAL_MAGIC) {
        return raw_block(compressed, 0);
    }
    let mut rest = compressed
        .get(XERIAL_HEADER_BYTES..)
        .ok_or("a truncated snappy header")?;
    let mut records = Vec::new();
    while !rest.is_empty() {
        let (length, tail) = rest.split_at_checked(4).ok_or("a truncated snappy block")?;
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        let (block, tail) = tail
            .split_at_checked(length)
            .ok_or("a truncated snappy block")?;
        records.extend(raw_block(block, records.len())?);
        rest = tail;
    }
    Ok(records)
}

fn compress(codec: u8, records: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = BytesMut::new();
    let write = |buf: &mut BytesMut| -> anyhow::Result<()> {
        buf.put_slice(records);
        Ok(())
    };
    let result = match codec {
        0 => {
            out.put_slice(records);
            Ok(())
        }
        1 => Gzip::compress(&mut out, write),
        2 => Snappy::compress(&mut out, write),
        3 => Lz4::compress(&mut out, write),
        4 => Zstd::compress(&mut out, write),
        other => return Err(format!("unknown compression codec {other}")),
    };
    result.map_err(|error| format!("cannot compress: {error}"))?;
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_client::records::encode_batch;
    use myelin_client::{BatchOptions, Compression, NewRecord};

    fn sample(compression: Compression) -> Bytes {
        let records = [
            NewRecord::kv("k1", "v1".repeat(100))
                .with_header("h", Some(Bytes::from_static(b"x")))
                .with_timestamp(1_000),
            NewRecord::kv("k2", "v2").with_timestamp(1_005),
        ];
        let options = BatchOptions {
            compression,
            producer_id: 7,
            producer_epoch: 3,
            base_sequence: 11,
            transactional: true,
        };
        encode_batch(&records, &options).unwrap()
    }

    #[test]
    fn every_codec_pair_keeps_records_and_header_fields() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for from in codecs {
            let original = sample(from);
            let expected = myelin_client::records::decode_batch(&original).unwrap();
            for to in codecs {
                let stored = recompress(&original, to as u8).unwrap();
                let header = validate(&stored).unwrap();
                assert_eq!(header.codec(), to as u8, "{from:?} -> {to:?}");
                let decoded = myelin_client::records::decode_batch(&stored).unwrap();
                assert_eq!(decoded.records, expected.records, "{from:?} -> {to:?}");
                let (a, b) = (decoded.header, expected.header);
                assert_eq!(
                    (
                        a.producer_id,
                        a.producer_epoch,
                        a.base_sequence,
                        a.record_count
                    ),
                    (
                        b.producer_id,
                        b.producer_epoch,
                        b.base_sequence,
                        b.record_count
                    )
                );
                assert_eq!(
                    (a.base_timestamp, a.max_timestamp),
                    (b.base_timestamp, b.max_timestamp)
                );
                assert_eq!(a.last_offset_delta, b.last_offset_delta);
                assert!(decoded.header.is_transactional());
            }
        }
    }

    #[test]
    fn a_batch_that_expands_without_bound_is_refused() {
        let mut zeros = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut zeros, &vec![0u8; DECOMPRESSED_BYTES_MAX + 1]).unwrap();
        let compressed = zeros.finish().unwrap();
        assert!(decompress(1, &compressed).is_err());
        assert!(decompress(1, b"not gzip").is_err());
        assert!(decompress(2, b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\xff").is_err());
        assert!(decompress(7, b"").is_err());
    }
}
