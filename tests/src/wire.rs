//! Hand-made Kafka frames on a raw `TcpStream`, for the malformed-input tests.
//!
//! Well-formed requests are built with the `kafka-protocol` crate's types so the tests
//! can change exactly one thing (a CRC, a version, an api key) and nothing else.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// What came back on a connection.
#[derive(Debug)]
pub enum Reply {
    /// One whole response frame (without its length prefix).
    Frame(Bytes),
    /// The peer closed (or reset) the connection before a whole frame arrived.
    Closed,
    /// Nothing conclusive arrived before the timeout.
    TimedOut,
}

/// A raw client connection.
pub struct Conn {
    stream: TcpStream,
}

impl Conn {
    /// Connects to `addr` (bounded by 10 s).
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("set write timeout");
        Conn { stream }
    }

    /// Writes `bytes`. Errors are returned: a broker may close a connection it dislikes.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Closes the write half, so the broker sees end-of-stream.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads one response frame, or reports that the connection closed or stayed silent.
    pub fn read_reply(&mut self, timeout: Duration) -> Reply {
        let deadline = Instant::now() + timeout;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if buf.len() >= 4 {
                let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                if len >= 0 && buf.len() >= 4 + len as usize {
                    return Reply::Frame(Bytes::copy_from_slice(&buf[4..4 + len as usize]));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Reply::TimedOut;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return Reply::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Reply::TimedOut
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Reply::Closed,
            }
        }
    }

    /// Reads until the broker closes the connection; true if it did within `timeout`.
    /// Any response bytes on the way are discarded.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Sends a well-formed request and decodes the response, checking its correlation id.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        request: &Req,
    ) -> Resp {
        let frame = request_frame(api_key, version, correlation_id, request);
        self.send(&frame)
            .unwrap_or_else(|e| panic!("sending {api_key:?} v{version}: {e}"));
        match self.read_reply(Duration::from_secs(15)) {
            Reply::Frame(frame) => decode_response(api_key, version, correlation_id, frame),
            other => panic!("no response to {api_key:?} v{version}: {other:?}"),
        }
    }
}

/// A request header the way the clients send it.
pub fn request_header(api_key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("myelin-e2e-raw")))
}

/// A complete request frame (length prefix, header, body).
pub fn request_frame<Req: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Vec<u8> {
    let mut body = BytesMut::new();
    request_header(api_key, version, correlation_id)
        .encode(&mut body, api_key.request_header_version(version))
        .expect("encode request header");
    request
        .encode(&mut body, version)
        .expect("encode request body");
    framed(&body)
}

/// A request header v1 (api key, version, correlation id, client id) for any api key
/// and version, including ones the protocol does not define.
pub fn raw_header_v1(api_key: i16, version: i16, correlation_id: i32) -> Vec<u8> {
    let client_id = b"myelin-e2e-raw";
    let mut out = Vec::new();
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    out.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    out.extend_from_slice(client_id);
    out
}

/// `payload` with its 4-byte big-endian length prefix.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a response frame, asserting the correlation id.
pub fn decode_response<Resp: Decodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> Resp {
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .unwrap_or_else(|e| panic!("decode {api_key:?} v{version} response header: {e}"));
    assert_eq!(
        header.correlation_id, correlation_id,
        "{api_key:?} v{version}: response carries another correlation id"
    );
    Resp::decode(&mut frame, version)
        .unwrap_or_else(|e| panic!("decode {api_key:?} v{version} response body: {e}"))
}

/// One uncompressed magic-2 record batch holding `messages` (key, value) pairs, without
/// a producer id (base sequence -1).
pub fn record_batch(messages: &[(&str, &str)]) -> BytesMut {
    let records: Vec<Record> = messages
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes, and
            // derives the batch's base sequence from the first record: offset - 1 keeps
            // every record in one batch with base sequence -1 (no producer id).
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf
}

/// Byte range of the CRC-32C field in a magic-2 record batch (after base offset 8,
/// batch length 4, partition leader epoch 4 and magic 1).
pub const BATCH_CRC_RANGE: std::ops::Range<usize> = 17..21;

/// A small deterministic pseudo-random generator (xorshift64*), so failures reproduce.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn record_batch_is_one_batch_without_a_sequence() {
        let batch = record_batch(&[("k", "v1"), ("k", "v2"), ("k", "v3")]);
        let infos = RecordBatchDecoder::decode_batch_info(&mut batch.freeze()).unwrap();
        assert_eq!(infos.len(), 1, "{infos:?}");
        assert_eq!(infos[0].record_count, 3);
        assert_eq!(infos[0].base_sequence, -1);
        assert_eq!(infos[0].producer_id, -1);
    }

    #[test]
    fn a_flipped_crc_byte_fails_decoding() {
        let mut batch = record_batch(&[("k", "v")]);
        assert!(RecordBatchDecoder::decode_all(&mut batch.clone().freeze()).is_ok());
        batch[BATCH_CRC_RANGE.start] ^= 0xff;
        assert!(RecordBatchDecoder::decode_all(&mut batch.freeze()).is_err());
    }
}
