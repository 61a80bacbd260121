//! The peer wire format: the handshake, frames, and reads and writes bounded in time.
//!
//! Handshake (dialer to acceptor, once): [`HANDSHAKE_MAGIC`], [`PROTOCOL_VERSION`] as a
//! big-endian u16 and the dialer's node id as a big-endian i32: [`HANDSHAKE_BYTES`] bytes.
//!
//! Frame (both ways, any number): a big-endian u32 length, then that many bytes of a
//! [`Frame`] encoded by bincode (its default options: variable-length integers, little
//! endian, no trailing bytes). Decoding is limited to the frame's own length, so a length
//! field inside the bytes cannot make bincode allocate more than the frame holds.

use super::NodeId;
use crate::frame::{write_frame, SplicedFrame, SplicingBuf};
use bincode::Options;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first bytes of every peer connection.
pub const HANDSHAKE_MAGIC: [u8; 4] = *b"MYLN";
/// Version of this wire format; the acceptor refuses any other.
pub const PROTOCOL_VERSION: u16 = 1;
/// Magic (4), protocol version (2) and node id (4).
pub const HANDSHAKE_BYTES: usize = 10;
/// The length prefix of a frame.
pub const FRAME_LENGTH_BYTES: usize = 4;
/// A frame's buffer grows by at most this much per read, whatever the announced length.
const FRAME_READ_CHUNK_BYTES: usize = 64 * 1024;
/// The encoded (not spliced) bytes a frame buffer has room for at first.
const FRAME_BUFFER_BYTES: usize = 4 * 1024;

/// What a frame carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame<M> {
    /// A message from the dialer to the acceptor.
    Message(M),
    /// Keepalive, both ways; the acceptor's first one also acknowledges the handshake.
    Ping,
}

/// Why a connection is closed; every case closes only that connection.
#[derive(Debug, Error)]
pub enum WireError {
    #[error("bad handshake magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { version: u16 },
    #[error("node id {node_id} is not a configured peer")]
    UnknownNode { node_id: NodeId },
    #[error("handshake not complete within {timeout_ms} ms")]
    HandshakeTimeout { timeout_ms: u64 },
    #[error("connect not complete within {timeout_ms} ms")]
    ConnectTimeout { timeout_ms: u64 },
    #[error("nothing received for {timeout_ms} ms")]
    Silent { timeout_ms: u64 },
    #[error("frame length {length} exceeds the {frame_bytes_max}-byte limit")]
    FrameTooLong { length: u64, frame_bytes_max: usize },
    #[error("the frame would encode longer than the {frame_bytes_max}-byte limit")]
    EncodedTooLong { frame_bytes_max: usize },
    #[error("connection closed inside a handshake or frame")]
    Truncated,
    #[error("undecodable frame: {reason}")]
    Decode { reason: String },
    #[error("unencodable frame: {reason}")]
    Encode { reason: String },
    #[error("unexpected {what} frame")]
    Unexpected { what: &'static str },
    #[error("write not complete within {timeout_ms} ms")]
    WriteTimeout { timeout_ms: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl WireError {
    /// Whether the peer sent something it must not (as opposed to a failing network).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            WireError::BadMagic { .. }
                | WireError::UnsupportedVersion { .. }
                | WireError::UnknownNode { .. }
                | WireError::FrameTooLong { .. }
                | WireError::Decode { .. }
                | WireError::Unexpected { .. }
        )
    }
}

/// The bincode options of frames, limited to `bytes_max` bytes.
fn codec(bytes_max: usize) -> impl Options {
    bincode::DefaultOptions::new().with_limit(bytes_max as u64)
}

/// The handshake a dialer with id `node_id` sends.
pub fn encode_handshake(node_id: NodeId) -> [u8; HANDSHAKE_BYTES] {
    let mut bytes = [0u8; HANDSHAKE_BYTES];
    bytes[..4].copy_from_slice(&HANDSHAKE_MAGIC);
    bytes[4..6].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bytes[6..].copy_from_slice(&node_id.to_be_bytes());
    bytes
}

/// Checks the magic and the version of a handshake; returns the dialer's node id.
pub fn decode_handshake(bytes: &[u8; HANDSHAKE_BYTES]) -> Result<NodeId, WireError> {
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != HANDSHAKE_MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion { version });
    }
    Ok(NodeId::from_be_bytes([
        bytes[6], bytes[7], bytes[8], bytes[9],
    ]))
}

/// Appends `frame`, length prefix included, to `buffer`; the byte buffers of `shared` are
/// spliced into it, not copied, when bincode writes them (see [`SplicingBuf`]). A frame that
/// would encode longer than `frame_bytes_max` is an error and leaves `buffer` as it was.
pub(crate) fn encode_frame<M: Serialize>(
    buffer: &mut SplicingBuf,
    frame: &Frame<M>,
    shared: Vec<Bytes>,
    frame_bytes_max: usize,
) -> Result<(), WireError> {
    // Sized first (a walk that copies nothing), so that a refused frame writes nothing and
    // the length prefix goes first. The write below is then unlimited: with a limit, bincode
    // would size the frame a second time before writing it.
    let length = codec(frame_bytes_max)
        .serialized_size(frame)
        .map_err(|error| encode_error(*error, frame_bytes_max))?;
    // The limit keeps the body at most `frame_bytes_max`, which `PeerConfig::validate`
    // keeps within a u32.
    let length =
        u32::try_from(length).map_err(|_| WireError::EncodedTooLong { frame_bytes_max })?;
    for bytes in shared {
        buffer.splice_also(bytes);
    }
    let start = buffer.offset();
    buffer.put_u32(length);
    bincode::DefaultOptions::new()
        .serialize_into(&mut *buffer, frame)
        .map_err(|error| encode_error(*error, frame_bytes_max))?;
    // The same walk as the sizing: a difference would be a bug in an encoder, and the frames
    // after this one would be misread.
    myelin_core::invariant!(
        buffer.offset() - start == FRAME_LENGTH_BYTES + length as usize,
        "a peer frame encodes to the length it was sized at"
    );
    Ok(())
}

fn encode_error(error: bincode::ErrorKind, frame_bytes_max: usize) -> WireError {
    match error {
        bincode::ErrorKind::SizeLimit => WireError::EncodedTooLong { frame_bytes_max },
        other => WireError::Encode {
            reason: other.to_string(),
        },
    }
}

/// Decodes a frame's bytes (without the length prefix).
pub fn decode_frame<M: DeserializeOwned>(bytes: &[u8]) -> Result<Frame<M>, WireError> {
    codec(bytes.len())
        .deserialize(bytes)
        .map_err(|error| WireError::Decode {
            reason: error.to_string(),
        })
}

/// Reads a handshake, which must arrive whole within `timeout_ms`; returns the dialer's
/// node id (not yet checked against the configured peers).
pub async fn read_handshake<R: AsyncRead + Unpin>(
    reader: &mut R,
    timeout_ms: u64,
) -> Result<NodeId, WireError> {
    let mut bytes = [0u8; HANDSHAKE_BYTES];
    let read = async {
        match reader.read_exact(&mut bytes).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(WireError::Truncated)
            }
            Err(error) => Err(WireError::Io(error)),
        }
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), read).await {
        Ok(result) => result?,
        Err(_elapsed) => return Err(WireError::HandshakeTimeout { timeout_ms }),
    }
    decode_handshake(&bytes)
}

/// Reads one frame (without its length prefix). `Ok(None)` is a clean end of stream between
/// frames. Each read must return something within `silence_timeout_ms`. The length is
/// checked against `frame_bytes_max` before anything is allocated, and the buffer then
/// grows only as bytes arrive.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: usize,
    silence_timeout_ms: u64,
) -> Result<Option<Bytes>, WireError> {
    let mut length_bytes = [0u8; FRAME_LENGTH_BYTES];
    let first = read_some(reader, &mut &mut length_bytes[..], silence_timeout_ms).await?;
    if first == 0 {
        return Ok(None);
    }
    let mut filled = first;
    while filled < FRAME_LENGTH_BYTES {
        let count = read_some(reader, &mut &mut length_bytes[filled..], silence_timeout_ms).await?;
        if count == 0 {
            return Err(WireError::Truncated);
        }
        filled += count;
    }
    let length = u32::from_be_bytes(length_bytes);
    if u64::from(length) > frame_bytes_max as u64 {
        return Err(WireError::FrameTooLong {
            length: u64::from(length),
            frame_bytes_max,
        });
    }
    let length = length as usize;
    // Filled by reads into its spare capacity: never zeroed first.
    let mut frame = BytesMut::with_capacity(length.min(FRAME_READ_CHUNK_BYTES));
    while frame.len() < length {
        let wanted = (length - frame.len()).min(FRAME_READ_CHUNK_BYTES);
        frame.reserve(wanted);
        let count = read_some(reader, &mut (&mut frame).limit(wanted), silence_timeout_ms).await?;
        if count == 0 {
            return Err(WireError::Truncated);
        }
    }
    Ok(Some(frame.freeze()))
}

/// One read that must return within `silence_timeout_ms`; 0 is the end of the stream.
async fn read_some<R: AsyncRead + Unpin, B: BufMut>(
    reader: &mut R,
    buffer: &mut B,
    silence_timeout_ms: u64,
) -> Result<usize, WireError> {
    let silence_timeout = Duration::from_millis(silence_timeout_ms);
    match tokio::time::timeout(silence_timeout, reader.read_buf(buffer)).await {
        Ok(result) => Ok(result?),
        Err(_elapsed) => Err(WireError::Silent {
            timeout_ms: silence_timeout_ms,
        }),
    }
}

/// Writes and flushes `frame` within `timeout_ms` (simulated TCP sends nothing before the
/// flush; real TCP ignores it).
pub(crate) async fn write_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &SplicedFrame,
    timeout_ms: u64,
) -> Result<(), WireError> {
    let write = async {
        write_frame(writer, frame).await?;
        writer.flush().await
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), write).await {
        Ok(result) => Ok(result?),
        Err(_elapsed) => Err(WireError::WriteTimeout { timeout_ms }),
    }
}

/// A buffer to encode frames into (with [`encode_frame`]).
pub(crate) fn frame_buffer() -> SplicingBuf {
    SplicingBuf::new(FRAME_BUFFER_BYTES, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_round_trip_and_bad_ones_are_refused() {
        let bytes = encode_handshake(-7);
        assert_eq!(&bytes[..4], b"MYLN");
        assert_eq!(decode_handshake(&bytes).unwrap(), -7);

        let mut bad_magic = bytes;
        bad_magic[0] = b'X';
        assert!(matches!(
            decode_handshake(&bad_magic),
            Err(WireError::BadMagic { .. })
        ));
        let mut bad_version = bytes;
        bad_version[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
        assert!(matches!(
            decode_handshake(&bad_version),
            Err(WireError::UnsupportedVersion { .. })
        ));
    }

    /// `frame` encoded alone, as one buffer.
    fn encoded<M: Serialize>(
        frame: &Frame<M>,
        shared: Vec<Bytes>,
        frame_bytes_max: usize,
    ) -> Bytes {
        let mut buffer = frame_buffer();
        encode_frame(&mut buffer, frame, shared, frame_bytes_max).unwrap();
        buffer.finish().into_contiguous()
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_not_encoded() {
        let mut buffer = frame_buffer();
        encode_frame(
            &mut buffer,
            &Frame::Message("hello".to_string()),
            Vec::new(),
            64,
        )
        .unwrap();
        encode_frame::<String>(&mut buffer, &Frame::Ping, Vec::new(), 64).unwrap();
        let before = buffer.offset();
        let error = encode_frame(
            &mut buffer,
            &Frame::Message("x".repeat(100)),
            Vec::new(),
            64,
        )
        .unwrap_err();
        assert!(matches!(error, WireError::EncodedTooLong { .. }), "{error}");
        assert_eq!(buffer.offset(), before, "a refused frame writes nothing");
        let buffer = buffer.finish().into_contiguous();
        let length = u32::from_be_bytes(buffer[..4].try_into().unwrap()) as usize;
        let first: Frame<String> = decode_frame(&buffer[4..4 + length]).unwrap();
        assert_eq!(first, Frame::Message("hello".to_string()));
        let second: Frame<String> = decode_frame(&buffer[8 + length..]).unwrap();
        assert_eq!(second, Frame::Ping);
        assert_eq!(buffer.len(), 8 + length + 1, "nothing after the ping");
    }

    #[test]
    fn shared_bytes_are_spliced_into_the_frame_not_copied() {
        type Message = (u32, Bytes, Bytes);
        let big = Bytes::from(vec![7u8; crate::frame::SPLICE_BYTES_MIN + 1]);
        let small = Bytes::from(vec![9u8; 10]);
        let frame: Frame<Message> = Frame::Message((5, big.clone(), small.clone()));

        let mut buffer = frame_buffer();
        encode_frame(
            &mut buffer,
            &frame,
            vec![big.clone(), small.clone()],
            1 << 20,
        )
        .unwrap();
        let spliced = buffer.finish();
        assert!(
            spliced
                .segments()
                .iter()
                .any(|segment| segment.as_ptr() == big.as_ptr()),
            "the long buffer is a segment of its own, not a copy"
        );
        assert!(
            spliced
                .segments()
                .iter()
                .all(|segment| segment.as_ptr() != small.as_ptr()),
            "a short buffer is copied"
        );
        let spliced = spliced.into_contiguous();
        assert_eq!(
            spliced,
            encoded(&frame, Vec::new(), 1 << 20),
            "byte for byte the copy"
        );
        let decoded: Frame<Message> = decode_frame(&spliced[FRAME_LENGTH_BYTES..]).unwrap();
        assert_eq!(decoded, frame);
    }

    #[test]
    fn admin_operations_round_trip_between_peers() {
        use myelin_core::api::{
            AdminOp, AlterTopicConfigs, CreatePartitions, CreateTopic, PeerMessage,
        };
        use myelin_core::metadata::{ConfigChange, ConfigOp};
        let create = |assignments: Vec<(i32, Vec<i32>)>| CreateTopic {
            name: "orders".into(),
            partition_count: -1,
            replication_factor: -1,
            configs: vec![("retention.ms".into(), "1".into())],
            validate_only: false,
            assignments,
        };
        let ops = [
            AdminOp::CreateTopics(vec![create(Vec::new()), create(vec![(0, vec![1, 2])])]),
            AdminOp::CreatePartitions(vec![CreatePartitions {
                name: "orders".into(),
                count: 3,
                assignments: Some(vec![vec![2, 3]]),
                validate_only: true,
            }]),
            AdminOp::AlterConfigs(vec![AlterTopicConfigs {
                name: "orders".into(),
                changes: vec![
                    ConfigChange {
                        key: "retention.ms".into(),
                        op: ConfigOp::Set("5".into()),
                    },
                    ConfigChange {
                        key: "segment.bytes".into(),
                        op: ConfigOp::Delete,
                    },
                ],
                replace: false,
                validate_only: false,
            }]),
        ];
        for op in ops {
            let message = Frame::Message(PeerMessage::Forward { id: 3, op });
            let buffer = encoded(&message, Vec::new(), 1 << 20);
            let decoded: Frame<PeerMessage> = decode_frame(&buffer[4..]).unwrap();
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn decoding_never_trusts_lengths_inside_the_bytes() {
        // Variant 0 (Message) of a Vec<u8> claiming 2^62 elements: refused, not allocated.
        let mut bytes = vec![0u8, 0xfd];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode_frame::<Vec<u8>>(&bytes).is_err());
        // Trailing bytes and unknown variants are errors too.
        assert!(decode_frame::<u8>(&[0, 1, 2]).is_err());
        assert!(decode_frame::<u8>(&[9]).is_err());
        assert!(decode_frame::<u8>(&[]).is_err());
    }

    #[tokio::test]
    async fn frame_reads_stop_at_the_limit_and_at_truncation() {
        let mut oversized: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0];
        let error = read_frame(&mut oversized, 1024, 1000).await.unwrap_err();
        assert!(matches!(error, WireError::FrameTooLong { .. }), "{error}");

        let mut truncated: &[u8] = &[0, 0, 0, 8, 1, 2];
        let error = read_frame(&mut truncated, 1024, 1000).await.unwrap_err();
        assert!(matches!(error, WireError::Truncated), "{error}");

        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 1024, 1000).await.unwrap().is_none());

        let mut whole: &[u8] = &[0, 0, 0, 2, 7, 8, 0, 0, 0, 0];
        assert_eq!(
            read_frame(&mut whole, 1024, 1000).await.unwrap(),
            Some(Bytes::from_static(&[7, 8]))
        );
        assert_eq!(
            read_frame(&mut whole, 1024, 1000).await.unwrap(),
            Some(Bytes::new())
        );
    }
}
