//! Kafka framing, request decoding and response encoding.
//!
//! A request frame is a 4-byte big-endian length followed by that many bytes: the request
//! header (api key, api version, correlation id, client id, tagged fields from header v2)
//! and the body. The length is checked before anything is allocated, and the frame buffer
//! then grows only as bytes arrive, so a client that announces a large frame and stalls
//! holds little memory until the request timeout closes it.
//!
//! Decoding peeks the api key and version first: anything the node does not advertise is
//! refused before the decoder runs (ApiVersions gets the UNSUPPORTED_VERSION answer Kafka
//! gives, in the v0 body), and the body passes `precheck` before `kafka-protocol` sees it.
//!
//! A response frame is the length, the response header (v1 for flexible versions, else v0;
//! ApiVersions always v0) and the body encoded for the version the client asked for.

use crate::frame::{SplicedFrame, SplicingBuf};
use crate::kafka::precheck::{check_request_body, PrecheckError};
use crate::kafka::versions::{advertised_range, api_versions_response, UNSUPPORTED_VERSION};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Api key (2), api version (2) and correlation id (4): the least a request frame holds.
pub(crate) const FRAME_BYTES_MIN: usize = 8;
/// The frame buffer grows by at most this much per read, whatever the announced length.
const FRAME_READ_CHUNK_BYTES: usize = 1 << 20;

/// Why reading a frame failed; every case closes the connection.
#[derive(Debug, Error)]
pub(crate) enum FrameError {
    #[error("negative frame length {length}")]
    NegativeLength { length: i32 },
    #[error("frame length {length} is below the {FRAME_BYTES_MIN}-byte minimum")]
    TooShort { length: i32 },
    #[error("frame length {length} exceeds the {frame_bytes_max}-byte limit")]
    TooLong { length: i32, frame_bytes_max: usize },
    #[error("frame not complete within {timeout_ms} ms")]
    Timeout { timeout_ms: u128 },
    #[error("connection closed inside a frame")]
    Truncated,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks an announced frame length; returns it as a buffer size.
pub(crate) fn check_frame_length(length: i32, frame_bytes_max: usize) -> Result<usize, FrameError> {
    if length < 0 {
        return Err(FrameError::NegativeLength { length });
    }
    let size = length as usize;
    if size < FRAME_BYTES_MIN {
        return Err(FrameError::TooShort { length });
    }
    if size > frame_bytes_max {
        return Err(FrameError::TooLong {
            length,
            frame_bytes_max,
        });
    }
    Ok(size)
}

/// The bytes of requests read and not yet answered, across every connection of a listener:
/// a connection reads a frame's body only once its length is admitted, and waits (reading
/// nothing more) while the budget is spent. One frame is admitted even if it is larger
/// than the whole budget (alone).
#[derive(Debug, Clone)]
pub(crate) struct RequestBudget {
    permits: Arc<Semaphore>,
    bytes: u32,
    /// Frames that had to wait for the budget (the node's metrics read it).
    waits: Arc<AtomicU64>,
}

/// Budget held by one request until its answer is ready.
pub(crate) type BudgetPermit = OwnedSemaphorePermit;

impl RequestBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        Self {
            permits: Arc::new(Semaphore::new(bytes as usize)),
            bytes,
            waits: Arc::default(),
        }
    }

    /// Counts the frames that wait for the budget in `waits`.
    pub(crate) fn counting_waits_in(mut self, waits: Arc<AtomicU64>) -> Self {
        self.waits = waits;
        self
    }

    /// Waits until `size` bytes fit in the budget.
    pub(crate) async fn admit(&self, size: usize) -> BudgetPermit {
        let wanted = u32::try_from(size).unwrap_or(u32::MAX).min(self.bytes);
        if let Ok(permit) = self.permits.clone().try_acquire_many_owned(wanted) {
            return permit;
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// Bytes not held by any request now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// Reads one frame (without its length prefix) once the budget admits its length, and
/// returns it with its share of the budget. `Ok(None)` is a clean end of stream between
/// frames. Waiting for a frame to start has no limit (idle connections are fine), nor has
/// waiting for the budget (others' requests release it as they are answered); the frame's
/// length, then its body, must each arrive within `request_timeout`.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: usize,
    request_timeout: Duration,
    budget: &RequestBudget,
) -> Result<Option<(Bytes, BudgetPermit)>, FrameError> {
    let mut length_bytes = [0u8; 4];
    if reader.read(&mut length_bytes[..1]).await? == 0 {
        return Ok(None);
    }
    let timed_out = |_| FrameError::Timeout {
        timeout_ms: request_timeout.as_millis(),
    };
    tokio::time::timeout(
        request_timeout,
        read_exact_or_truncated(reader, &mut length_bytes[1..]),
    )
    .await
    .map_err(timed_out)??;
    let size = check_frame_length(i32::from_be_bytes(length_bytes), frame_bytes_max)?;
    let permit = budget.admit(size).await;
    let body = async {
        let mut frame = BytesMut::with_capacity(size.min(FRAME_READ_CHUNK_BYTES));
        while frame.len() < size {
            let missing = size - frame.len();
            frame.reserve(missing.min(FRAME_READ_CHUNK_BYTES));
            let read = (&mut *reader)
                .take(missing as u64)
                .read_buf(&mut frame)
                .await?;
            if read == 0 {
                return Err(FrameError::Truncated);
            }
        }
        Ok(frame.freeze())
    };
    let frame = tokio::time::timeout(request_timeout, body)
        .await
        .map_err(timed_out)??;
    Ok(Some((frame, permit)))
}

async fn read_exact_or_truncated<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut [u8],
) -> Result<(), FrameError> {
    match reader.read_exact(buffer).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(FrameError::Truncated)
        }
        Err(error) => Err(FrameError::Io(error)),
    }
}

/// Why a frame could not be turned into a request; every case closes the connection.
#[derive(Debug, Error)]
pub(crate) enum DecodeError {
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("{api_key:?} is not served by this node")]
    NotServed { api_key: ApiKey },
    #[error("{api_key:?} v{version} is outside the served range {version_min}..={version_max}")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        version_min: i16,
        version_max: i16,
    },
    #[error("malformed {api_key:?} v{version} request header: {reason}")]
    Header {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("malformed {api_key:?} v{version} request body: {reason}")]
    Body {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A request ready for dispatch.
#[derive(Debug)]
pub(crate) struct DecodedRequest {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// What a well-formed frame turned out to be.
#[derive(Debug)]
pub(crate) enum DecodedFrame {
    Request(Box<DecodedRequest>),
    /// An ApiVersions request of a version the node does not know: the client expects an
    /// UNSUPPORTED_VERSION answer listing what the node serves, and will retry with that.
    UnsupportedApiVersions {
        correlation_id: i32,
        version: i16,
    },
}

/// The api key, api version and correlation id at the start of a frame.
pub(crate) fn peek_request_prefix(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let prefix = frame.get(..FRAME_BYTES_MIN)?;
    Some((
        i16::from_be_bytes([prefix[0], prefix[1]]),
        i16::from_be_bytes([prefix[2], prefix[3]]),
        i32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]),
    ))
}

/// Decodes a frame whose length `check_frame_length` accepted.
pub(crate) fn decode_frame(frame: Bytes) -> Result<DecodedFrame, DecodeError> {
    let Some((api_key_code, version, correlation_id)) = peek_request_prefix(&frame) else {
        // check_frame_length guarantees the prefix; stay total anyway.
        return Err(DecodeError::UnknownApiKey { api_key: -1 });
    };
    let api_key = ApiKey::try_from(api_key_code).map_err(|()| DecodeError::UnknownApiKey {
        api_key: api_key_code,
    })?;
    let Some((version_min, version_max)) = advertised_range(api_key) else {
        return Err(DecodeError::NotServed { api_key });
    };
    if !(version_min..=version_max).contains(&version) {
        if api_key == ApiKey::ApiVersions {
            return Ok(DecodedFrame::UnsupportedApiVersions {
                correlation_id,
                version,
            });
        }
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            version_min,
            version_max,
        });
    }

    let mut buffer = frame;
    let header =
        decode_request_header_from_buffer(&mut buffer).map_err(|error| DecodeError::Header {
            api_key,
            version,
            reason: error.to_string(),
        })?;
    check_request_body(api_key, version, &buffer).map_err(|error: PrecheckError| {
        DecodeError::Body {
            api_key,
            version,
            reason: error.to_string(),
        }
    })?;
    let body =
        RequestKind::decode(api_key, &mut buffer, version).map_err(|error| DecodeError::Body {
            api_key,
            version,
            reason: error.to_string(),
        })?;
    Ok(DecodedFrame::Request(Box::new(DecodedRequest {
        api_key,
        version,
        header,
        body,
    })))
}

/// Encodes a whole response frame: length prefix, header, body for `version`.
/// `capacity_hint_bytes` sizes the buffer up front (fetch responses carry record bytes). A
/// fetch response's record bytes are spliced into the frame, not copied (`frame`).
pub(crate) fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    capacity_hint_bytes: usize,
) -> anyhow::Result<SplicedFrame> {
    // ApiVersions answers with header v0 even for v3+ (whose request header is v2), so that
    // a client can parse it before it knows what the broker speaks.
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let to_splice = fetched_records(body);
    let spliced_bytes: usize = to_splice.iter().map(Bytes::len).sum();
    let mut frame = SplicingBuf::new(
        capacity_hint_bytes
            .saturating_sub(spliced_bytes)
            .saturating_add(64),
        to_splice,
    );
    frame.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut frame, header_version)?;
    match body {
        // Encoded through the splicing buffer: its records are not copied.
        ResponseKind::Fetch(fetch) => fetch.encode(&mut frame, version)?,
        other => other.encode(frame.encoded_mut(), version)?,
    }
    let frame_bytes = frame.offset();
    let length = i32::try_from(frame_bytes - 4)
        .map_err(|_| anyhow::anyhow!("response of {frame_bytes} bytes does not fit a frame"))?;
    frame
        .encoded_range(0..4)
        .copy_from_slice(&length.to_be_bytes());
    Ok(frame.finish())
}

/// The record buffers of a fetch response (none for any other response).
fn fetched_records(body: &ResponseKind) -> Vec<Bytes> {
    let ResponseKind::Fetch(fetch) = body else {
        return Vec::new();
    };
    fetch
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .filter_map(|partition| partition.records.clone())
        .collect()
}

/// The answer to an ApiVersions request of an unknown version: error 35 and the served
/// APIs, in the v0 body under header v0, as Kafka does.
pub(crate) fn encode_unsupported_api_versions(correlation_id: i32) -> anyhow::Result<SplicedFrame> {
    let body = ResponseKind::ApiVersions(api_versions_response(UNSUPPORTED_VERSION));
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body, 256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, StrBytes};

    const FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;

    /// A request frame without its length prefix, as `read_frame` returns it.
    fn frame_bytes(header: &RequestHeader, body: &RequestKind) -> Bytes {
        let mut frame = BytesMut::new();
        encode_request_header_into_buffer(&mut frame, header).unwrap();
        body.encode(&mut frame, header.request_api_version).unwrap();
        frame.freeze()
    }

    fn header(api_key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
        let mut header = RequestHeader::default();
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_static_str("codec-test"));
        header
    }

    #[test]
    fn frame_lengths_below_minimum_negative_or_above_limit_are_refused() {
        assert!(matches!(
            check_frame_length(-1, FRAME_BYTES_MAX),
            Err(FrameError::NegativeLength { .. })
        ));
        assert!(matches!(
            check_frame_length(i32::MIN, FRAME_BYTES_MAX),
            Err(FrameError::NegativeLength { .. })
        ));
        assert!(matches!(
            check_frame_length(0, FRAME_BYTES_MAX),
            Err(FrameError::TooShort { .. })
        ));
        assert!(matches!(
            check_frame_length(7, FRAME_BYTES_MAX),
            Err(FrameError::TooShort { .. })
        ));
        assert!(matches!(
            check_frame_length(i32::MAX, FRAME_BYTES_MAX),
            Err(FrameError::TooLong { .. })
        ));
        assert!(matches!(
            check_frame_length(1025, 1024),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(check_frame_length(8, FRAME_BYTES_MAX).unwrap(), 8);
        assert_eq!(check_frame_length(1024, 1024).unwrap(), 1024);
    }

    fn unlimited() -> RequestBudget {
        RequestBudget::new(usize::MAX)
    }

    #[tokio::test]
    async fn a_frame_is_read_only_once_the_budget_admits_it_and_releases_it_when_done() {
        // Two 16-byte frames, a budget of 24 bytes: the second waits for the first.
        let waits = Arc::new(AtomicU64::new(0));
        let budget = RequestBudget::new(24).counting_waits_in(waits.clone());
        let frame: &[u8] = &[0, 0, 0, 16, 0, 18, 0, 3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut first_stream = frame;
        let mut second_stream = frame;
        let (_, first_permit) =
            read_frame(&mut first_stream, 1024, Duration::from_secs(1), &budget)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(budget.available(), 8);
        let second = read_frame(&mut second_stream, 1024, Duration::from_secs(1), &budget);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err(),
            "the second frame waits while the budget is spent"
        );
        drop(first_permit);
        let (body, _) = second.await.unwrap().unwrap();
        assert_eq!(body.len(), 16);
        assert_eq!(
            waits.load(Ordering::Relaxed),
            1,
            "only the second frame waited"
        );
        // A frame larger than the whole budget is admitted alone.
        let mut large: &[u8] = &[
            0, 0, 0, 40, 0, 18, 0, 3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let (body, _permit) = read_frame(&mut large, 1024, Duration::from_secs(1), &budget)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((body.len(), budget.available()), (40, 0));
    }

    #[tokio::test]
    async fn an_oversized_frame_is_refused_after_reading_only_its_length() {
        // 2 GiB announced; the rest of the stream would be garbage. The reader must stop
        // after the 4-byte length, having allocated nothing for the body.
        let mut stream: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8];
        let result = read_frame(
            &mut stream,
            FRAME_BYTES_MAX,
            Duration::from_secs(1),
            &unlimited(),
        )
        .await;
        assert!(
            matches!(result, Err(FrameError::TooLong { .. })),
            "{result:?}"
        );
        assert_eq!(
            stream.len(),
            8,
            "nothing after the length prefix was consumed"
        );
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_clean_end_of_stream_is_not_an_error() {
        let mut stream: &[u8] = &[
            0, 0, 0, 8, 0, 18, 0, 3, 0, 0, 0, 7, 0, 0, 0, 10, 0, 3, 0, 0, 0, 0, 0, 1, 0,
        ];
        let first = read_frame(
            &mut stream,
            FRAME_BYTES_MAX,
            Duration::from_secs(1),
            &unlimited(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(&first.0[..], &[0, 18, 0, 3, 0, 0, 0, 7]);
        let second = read_frame(
            &mut stream,
            FRAME_BYTES_MAX,
            Duration::from_secs(1),
            &unlimited(),
        )
        .await;
        assert!(matches!(second, Err(FrameError::Truncated)), "{second:?}");
        let mut empty: &[u8] = &[];
        assert!(read_frame(
            &mut empty,
            FRAME_BYTES_MAX,
            Duration::from_secs(1),
            &unlimited()
        )
        .await
        .unwrap()
        .is_none());
    }

    #[tokio::test]
    async fn a_started_frame_that_stalls_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &[0, 0, 0, 100, 0, 18])
            .await
            .unwrap();
        let result = read_frame(
            &mut server,
            FRAME_BYTES_MAX,
            Duration::from_millis(50),
            &unlimited(),
        )
        .await;
        assert!(
            matches!(result, Err(FrameError::Timeout { .. })),
            "{result:?}"
        );
        drop(client);
    }

    #[test]
    fn unsupported_api_versions_reply_is_a_v0_body_listing_the_served_apis() {
        let mut frame = encode_unsupported_api_versions(77)
            .unwrap()
            .into_contiguous();
        let length = frame.get_i32() as usize;
        assert_eq!(length, frame.len());
        let header = ResponseHeader::decode(&mut frame, 0).unwrap();
        assert_eq!(header.correlation_id, 77);
        let response = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
        assert_eq!(response.error_code, UNSUPPORTED_VERSION);
        assert!(
            frame.is_empty(),
            "v0 body has no throttle time or tagged fields"
        );
        let versions = response
            .api_keys
            .iter()
            .find(|entry| entry.api_key == ApiKey::ApiVersions as i16)
            .unwrap();
        assert_eq!((versions.min_version, versions.max_version), (0, 4));
        assert_eq!(
            response.api_keys.len(),
            crate::kafka::versions::ADVERTISED_APIS.len()
        );
    }

    #[test]
    fn api_versions_of_a_future_version_is_answered_without_decoding() {
        // v9 with a body this node cannot parse: only the prefix is looked at.
        let frame = Bytes::from_static(&[0, 18, 0, 9, 0, 0, 0, 5, 0xde, 0xad]);
        match decode_frame(frame).unwrap() {
            DecodedFrame::UnsupportedApiVersions {
                correlation_id,
                version,
            } => assert_eq!((correlation_id, version), (5, 9)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_unserved_apis_and_unadvertised_versions_are_refused() {
        let unknown = Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 1]);
        assert!(matches!(
            decode_frame(unknown),
            Err(DecodeError::UnknownApiKey { api_key: 0x7f00 })
        ));
        // WriteTxnMarkers (27): a broker-to-broker API this node does not serve.
        let write_markers = Bytes::from_static(&[0, 27, 0, 1, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(
            decode_frame(write_markers),
            Err(DecodeError::NotServed { .. })
        ));
        let produce_v13 = Bytes::from_static(&[0, 0, 0, 13, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(
            decode_frame(produce_v13),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        // AddPartitionsToTxn v4 (brokers' verification) and EndTxn v5 (transactions v2).
        for frame in [
            Bytes::from_static(&[0, 24, 0, 4, 0, 0, 0, 1, 0, 0]),
            Bytes::from_static(&[0, 26, 0, 5, 0, 0, 0, 1, 0, 0]),
        ] {
            assert!(matches!(
                decode_frame(frame),
                Err(DecodeError::UnsupportedVersion { .. })
            ));
        }
    }

    #[test]
    fn metadata_requests_round_trip_for_flexible_and_non_flexible_versions() {
        for version in [1, 4, 8, 9, 12, 13] {
            let mut request = MetadataRequest::default();
            request.topics = None;
            let frame = frame_bytes(
                &header(ApiKey::Metadata, version, 40 + i32::from(version)),
                &request.clone().into(),
            );
            let DecodedFrame::Request(decoded) = decode_frame(frame).unwrap() else {
                panic!("not a request")
            };
            assert_eq!(decoded.api_key, ApiKey::Metadata);
            assert_eq!(decoded.version, version);
            assert_eq!(decoded.header.correlation_id, 40 + i32::from(version));
            assert_eq!(decoded.header.client_id.as_deref(), Some("codec-test"));
            assert!(
                matches!(decoded.body, RequestKind::Metadata(ref body) if body.topics.is_none())
            );
        }
    }

    #[test]
    fn fetched_records_are_spliced_into_the_frame_not_copied_and_the_bytes_are_the_same() {
        use kafka_protocol::messages::fetch_response::{
            FetchResponse, FetchableTopicResponse, PartitionData,
        };
        use kafka_protocol::messages::TopicName;
        let records: Vec<Bytes> = [10_000usize, 100, 5_000]
            .iter()
            .enumerate()
            .map(|(index, &length)| Bytes::from(vec![index as u8 + 1; length]))
            .collect();
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName(crate::kafka::dispatch::wire_string("t"));
        topic.partitions = records
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                let mut partition = PartitionData::default();
                partition.partition_index = index as i32;
                partition.records = Some(bytes.clone());
                partition
            })
            .collect();
        let mut fetch = FetchResponse::default();
        fetch.responses = vec![topic];
        let body = ResponseKind::Fetch(fetch);
        for version in [4, 11, 12] {
            let frame = encode_response(ApiKey::Fetch, version, 9, &body, 0).unwrap();
            let segments = frame.segments().to_vec();
            for large in [&records[0], &records[2]] {
                assert!(
                    segments
                        .iter()
                        .any(|segment| segment.as_ptr() == large.as_ptr()),
                    "v{version}: a large record buffer goes out as it is"
                );
            }
            assert!(
                !segments
                    .iter()
                    .any(|segment| segment.as_ptr() == records[1].as_ptr()),
                "v{version}: a small one is copied"
            );
            let mut copied = BytesMut::new();
            copied.put_i32(0);
            let mut header = ResponseHeader::default();
            header.correlation_id = 9;
            header
                .encode(&mut copied, ApiKey::Fetch.response_header_version(version))
                .unwrap();
            body.encode(&mut copied, version).unwrap();
            let length = (copied.len() - 4) as i32;
            copied[..4].copy_from_slice(&length.to_be_bytes());
            assert_eq!(frame.into_contiguous(), copied.freeze(), "v{version}");
        }
    }

    #[test]
    fn metadata_responses_carry_the_header_their_version_needs() {
        for (version, flexible) in [(4, false), (8, false), (9, true), (13, true)] {
            let response = ResponseKind::Metadata(MetadataResponse::default());
            let mut frame = encode_response(ApiKey::Metadata, version, 1234, &response, 0)
                .unwrap()
                .into_contiguous();
            let length = frame.get_i32() as usize;
            assert_eq!(length, frame.len());
            let header_version = if flexible { 1 } else { 0 };
            let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
            assert_eq!(header.correlation_id, 1234);
            MetadataResponse::decode(&mut frame, version).unwrap();
            assert!(
                frame.is_empty(),
                "v{version}: header and body consumed exactly"
            );
        }
    }

    #[test]
    fn a_hostile_array_count_closes_the_connection_instead_of_allocating() {
        // Metadata v1, header then a topics count of i32::MAX and no topics.
        let mut frame = BytesMut::new();
        encode_request_header_into_buffer(&mut frame, &header(ApiKey::Metadata, 1, 1)).unwrap();
        frame.put_i32(i32::MAX);
        let result = decode_frame(frame.freeze());
        assert!(
            matches!(result, Err(DecodeError::Body { .. })),
            "{result:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            // Every served API (the group and transaction APIs as well), and one that is not.
            api_key in proptest::sample::select(
                crate::kafka::versions::ADVERTISED_APIS
                    .iter()
                    .map(|api| api.api_key as i16)
                    .chain([27])
                    .collect::<Vec<i16>>(),
            ),
            version in 0i16..20,
            well_formed_header in proptest::prelude::any::<bool>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let mut frame = BytesMut::new();
            frame.put_i16(api_key);
            frame.put_i16(version);
            frame.put_i32(1);
            if well_formed_header {
                // A null client id and an empty tagged-field section (header v2; under
                // header v1 the zero becomes the body's first byte): random bodies then
                // reach the body decoders.
                frame.put_slice(&[0xff, 0xff, 0x00]);
            }
            frame.put_slice(&body);
            let _ = decode_frame(frame.freeze());
        }
    }
}
