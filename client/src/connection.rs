//! One TCP connection to one broker: framing, correlation ids, timeouts and version
//! negotiation.
//!
//! A Kafka frame is a big-endian `i32` length followed by that many bytes. A request frame
//! holds a request header and the request body; a response frame a response header (whose
//! correlation id must match the request's) and the response body. Requests are strictly
//! sequential on a connection: `send` writes one request and reads its response.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::error::{Error, Result};

/// Kafka error code UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

/// The API versions this client implements: `(api, min, max)`. For each request the
/// connection uses the highest version in both this range and the broker's advertised range.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 4, 12),
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    // v2 adds fenced brokers, which only KRaft controllers report.
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 1, 3),
    (ApiKey::JoinGroup, 4, 7),
    (ApiKey::SyncGroup, 3, 5),
    (ApiKey::Heartbeat, 3, 4),
    (ApiKey::LeaveGroup, 3, 5),
    (ApiKey::OffsetCommit, 7, 8),
    (ApiKey::OffsetFetch, 6, 7),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    // Transactions v1 ("v0-3 all have the same meaning"); v4+ of AddPartitionsToTxn is the
    // brokers' batched form, EndTxn v5 belongs to transactions v2.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
];

/// The version range this client implements for `api`, if any.
pub fn client_version_range(api: ApiKey) -> Option<(i16, i16)> {
    CLIENT_VERSIONS
        .iter()
        .find(|(key, _, _)| *key == api)
        .map(|&(_, min, max)| (min, max))
}

/// Connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `client_id` in every request header.
    pub client_id: String,
    /// Deadline for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Deadline for one request/response round trip. Requests that ask the broker to wait
    /// (Fetch `max_wait_ms`, Produce / CreateTopics / DeleteTopics `timeout_ms`) get that
    /// wait added on top.
    pub request_timeout: Duration,
    /// Largest response frame accepted; a larger announced length is refused before any
    /// allocation and breaks the connection.
    pub max_frame_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: "myelin-client".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: 100 * 1024 * 1024,
        }
    }
}

/// A connection to one broker. See the [crate docs](crate) for an example.
///
/// Any I/O error, timeout, oversized frame or correlation mismatch marks the connection
/// broken (the byte stream can no longer be trusted); later calls fail with
/// [`Error::Broken`]. Open a new connection to continue.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    config: ClientConfig,
    next_correlation_id: i32,
    /// Broker's advertised `(min, max)` per api key, from ApiVersions.
    broker_versions: BTreeMap<i16, (i16, i16)>,
    /// Versions pinned with [`Connection::set_version`].
    pinned: BTreeMap<i16, i16>,
    broken: Option<String>,
}

impl Connection {
    /// Connects and performs the ApiVersions handshake (v3, falling back to the broker's
    /// highest version if it answers UNSUPPORTED_VERSION).
    // `Debug` is a supertrait of madsim's `ToSocketAddrs` but not of tokio's.
    #[allow(clippy::implied_bounds_in_impls)]
    pub async fn connect(
        addr: impl ToSocketAddrs + Debug,
        config: ClientConfig,
    ) -> Result<Connection> {
        let mut conn = Connection::connect_raw(addr, config).await?;
        conn.api_versions().await?;
        Ok(conn)
    }

    /// Connects without any handshake: no versions are known, so only [`Connection::send`]
    /// (with explicit versions) and the raw frame methods are useful until
    /// [`Connection::api_versions`] is called. Meant for tests of malformed input.
    #[allow(clippy::implied_bounds_in_impls)]
    pub async fn connect_raw(
        addr: impl ToSocketAddrs + Debug,
        config: ClientConfig,
    ) -> Result<Connection> {
        let what = format!("connect to {addr:?}");
        let stream =
            match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(Error::Timeout {
                        op: what,
                        after: config.connect_timeout,
                    })
                }
            };
        // Latency matters more than packet count for a request/response client.
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            config,
            next_correlation_id: 0,
            broker_versions: BTreeMap::new(),
            pinned: BTreeMap::new(),
            broken: None,
        })
    }

    /// Sends ApiVersions and records the broker's supported version ranges (replacing any
    /// recorded before). Returns the broker's response.
    pub async fn api_versions(&mut self) -> Result<ApiVersionsResponse> {
        let mut version = 3;
        let response = loop {
            let mut request = ApiVersionsRequest::default();
            if version >= 3 {
                request = request
                    .with_client_software_name(StrBytes::from_static_str("myelin-client"))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    )));
            }
            let (correlation_id, frame) =
                self.round_trip(&request, version, Duration::ZERO).await?;
            let decoded =
                decode_response::<ApiVersionsResponse>(frame.clone(), version, correlation_id);
            let decoded = self.note(decoded);
            if version == 0 || matches!(&decoded, Ok(r) if r.error_code != UNSUPPORTED_VERSION) {
                break decoded?;
            }
            // A broker that does not know this version answers UNSUPPORTED_VERSION in the v0
            // body format, listing its own range: retry with the highest version both know.
            let Ok(v0) = decode_response::<ApiVersionsResponse>(frame, 0, correlation_id) else {
                break decoded?;
            };
            if v0.error_code != UNSUPPORTED_VERSION {
                break decoded?;
            }
            let broker_max = v0
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                .map_or(0, |k| k.max_version);
            version = broker_max.clamp(0, version - 1);
        };
        Error::check(ApiKey::ApiVersions, response.error_code, None)?;
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(response)
    }

    /// The broker's advertised version range for `api` (`None` if not advertised or no
    /// handshake was made).
    pub fn broker_version_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.broker_versions.get(&(api as i16)).copied()
    }

    /// The version this connection uses for `api`: a pinned version if any, else the highest
    /// version supported by both the broker and this client.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        if let Some(v) = self.pinned.get(&(api as i16)) {
            return Ok(*v);
        }
        let unsupported = |detail: String| Error::UnsupportedVersion { api, detail };
        let (cmin, cmax) = client_version_range(api)
            .ok_or_else(|| unsupported("not implemented by this client".into()))?;
        let (bmin, bmax) = self
            .broker_version_range(api)
            .ok_or_else(|| unsupported("not advertised by the broker".into()))?;
        let (min, max) = (cmin.max(bmin), cmax.min(bmax));
        if min > max {
            return Err(unsupported(format!(
                "client supports {cmin}..={cmax}, broker {bmin}..={bmax}"
            )));
        }
        Ok(max)
    }

    /// Pins the version used by the helpers for `api` (e.g. to exercise an old version).
    /// It must be inside this client's range; the broker's range is not checked, so a test
    /// can also see how the broker handles a version it does not advertise.
    pub fn set_version(&mut self, api: ApiKey, version: i16) -> Result<()> {
        match client_version_range(api) {
            Some((min, max)) if (min..=max).contains(&version) => {
                self.pinned.insert(api as i16, version);
                Ok(())
            }
            range => Err(Error::UnsupportedVersion {
                api,
                detail: format!("version {version} is outside the client's range {range:?}"),
            }),
        }
    }

    /// Removes a version pinned with [`Connection::set_version`].
    pub fn unpin_version(&mut self, api: ApiKey) {
        self.pinned.remove(&(api as i16));
    }

    /// The configuration this connection was opened with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The broker's address.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        Ok(self.stream.peer_addr()?)
    }

    /// True once an earlier failure made the connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Sends `request` at `version` and waits for its response (within the request timeout).
    pub async fn send<Req: Request>(
        &mut self,
        request: &Req,
        version: i16,
    ) -> Result<Req::Response> {
        self.send_with_extra_wait(request, version, Duration::ZERO)
            .await
    }

    /// Like [`Connection::send`], with `extra` added to the request timeout (for requests
    /// that ask the broker to wait).
    pub async fn send_with_extra_wait<Req: Request>(
        &mut self,
        request: &Req,
        version: i16,
        extra: Duration,
    ) -> Result<Req::Response> {
        let (correlation_id, frame) = self.round_trip(request, version, extra).await?;
        let response = decode_response::<Req::Response>(frame, version, correlation_id);
        self.note(response)
    }

    /// Writes a request and reads the response frame; returns the correlation id and frame.
    async fn round_trip<Req: Request>(
        &mut self,
        request: &Req,
        version: i16,
        extra: Duration,
    ) -> Result<(i32, Bytes)> {
        let correlation_id = self.write_request(request, version).await?;
        let op = || format!("{:?} v{version} response", api_name::<Req>());
        let after = self.config.request_timeout.saturating_add(extra);
        let max = self.config.max_frame_bytes;
        let frame = io_timeout(op, after, read_frame(&mut self.stream, max)).await;
        Ok((correlation_id, self.note(frame)?))
    }

    /// Sends `request` and does not wait for a response (Produce with acks = 0). Returns the
    /// correlation id used.
    pub async fn send_without_response<Req: Request>(
        &mut self,
        request: &Req,
        version: i16,
    ) -> Result<i32> {
        self.write_request(request, version).await
    }

    /// Writes `payload` as one frame (a length prefix is added) and flushes. The bytes are
    /// not checked: this is for tests that send malformed requests.
    pub async fn send_raw_frame(&mut self, payload: &[u8]) -> Result<()> {
        self.check_usable()?;
        let len = i32::try_from(payload.len())
            .map_err(|_| Error::InvalidArgument("frame longer than i32::MAX".into()))?;
        let mut frame = BytesMut::with_capacity(4 + payload.len());
        frame.put_i32(len);
        frame.put_slice(payload);
        let after = self.config.request_timeout;
        let written = io_timeout(
            || "raw frame write".to_owned(),
            after,
            write_frame(&mut self.stream, &frame),
        )
        .await;
        self.note(written)
    }

    /// Reads one frame (without its length prefix), within the request timeout.
    pub async fn read_raw_frame(&mut self) -> Result<Bytes> {
        self.check_usable()?;
        let after = self.config.request_timeout;
        let max = self.config.max_frame_bytes;
        let frame = io_timeout(
            || "raw frame read".to_owned(),
            after,
            read_frame(&mut self.stream, max),
        )
        .await;
        self.note(frame)
    }

    /// Encodes and writes one request; returns its correlation id.
    async fn write_request<Req: Request>(&mut self, request: &Req, version: i16) -> Result<i32> {
        self.check_usable()?;
        let correlation_id = self.next_correlation_id;
        let frame = encode_request(correlation_id, &self.config.client_id, request, version)?;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let op = || format!("{:?} v{version} request", api_name::<Req>());
        let after = self.config.request_timeout;
        let written = io_timeout(op, after, write_frame(&mut self.stream, &frame)).await;
        self.note(written)?;
        Ok(correlation_id)
    }

    fn check_usable(&self) -> Result<()> {
        match &self.broken {
            Some(reason) => Err(Error::Broken(reason.clone())),
            None => Ok(()),
        }
    }

    /// Marks the connection broken if `result` is an error that desynchronises the stream.
    fn note<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.breaks_connection() && self.broken.is_none() {
                tracing::debug!(error = %e, "myelin-client: connection broken");
                self.broken = Some(e.to_string());
            }
        }
        result
    }
}

/// Runs `fut` under a deadline, turning expiry into [`Error::Timeout`].
async fn io_timeout<T>(
    op: impl FnOnce() -> String,
    after: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout { op: op(), after }),
    }
}

fn api_name<Req: Request>() -> ApiKey {
    // Every `Request` type carries a valid key.
    ApiKey::try_from(Req::KEY).unwrap_or(ApiKey::ApiVersions)
}

/// Encodes a complete request frame: length prefix, request header (with the header
/// version `version` calls for) and body.
pub fn encode_request<Req: Request>(
    correlation_id: i32,
    client_id: &str,
    request: &Req,
    version: i16,
) -> Result<BytesMut> {
    let api = api_name::<Req>();
    let VersionRange { min, max } = <Req as Message>::VERSIONS;
    if !(min..=max).contains(&version) {
        return Err(Error::UnsupportedVersion {
            api,
            detail: format!("the codec supports {min}..={max}, asked for {version}"),
        });
    }
    let header = RequestHeader::default()
        .with_request_api_key(Req::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    let mut buf = BytesMut::new();
    buf.put_i32(0); // length, filled in below
    header
        .encode(&mut buf, <Req as HeaderVersion>::header_version(version))
        .map_err(|e| Error::protocol(&format!("encode {api:?} v{version} header"), e))?;
    request
        .encode(&mut buf, version)
        .map_err(|e| Error::protocol(&format!("encode {api:?} v{version} request"), e))?;
    let len = i32::try_from(buf.len() - 4)
        .map_err(|_| Error::InvalidArgument(format!("{api:?} request larger than i32::MAX")))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Decodes a response frame (without its length prefix): checks the correlation id, decodes
/// the body at `version` and refuses trailing bytes.
pub fn decode_response<Resp: Decodable + HeaderVersion>(
    mut frame: Bytes,
    version: i16,
    expected_correlation_id: i32,
) -> Result<Resp> {
    let header = ResponseHeader::decode(&mut frame, Resp::header_version(version))
        .map_err(|e| Error::protocol("decode response header", e))?;
    if header.correlation_id != expected_correlation_id {
        return Err(Error::CorrelationMismatch {
            expected: expected_correlation_id,
            received: header.correlation_id,
        });
    }
    let response = Resp::decode(&mut frame, version)
        .map_err(|e| Error::protocol(&format!("decode v{version} response body"), e))?;
    if !frame.is_empty() {
        return Err(Error::Protocol(format!(
            "{} unexpected bytes after the v{version} response body",
            frame.len()
        )));
    }
    Ok(response)
}

/// Reads one length-prefixed frame, refusing lengths outside `0..=max_frame_bytes` before
/// allocating.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<Bytes> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).await?;
    let len = i32::from_be_bytes(len);
    let size = usize::try_from(len).map_err(|_| Error::FrameTooLarge {
        size: i64::from(len),
        max: max_frame_bytes,
    })?;
    if size > max_frame_bytes {
        return Err(Error::FrameTooLarge {
            size: i64::from(len),
            max: max_frame_bytes,
        });
    }
    let mut frame = vec![0u8; size];
    reader.read_exact(&mut frame).await?;
    Ok(Bytes::from(frame))
}

/// Writes an already length-prefixed frame and flushes (simulated TCP sends on flush only).
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> Result<()> {
    writer.write_all(frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    #[test]
    fn request_frame_has_length_prefix_and_header() {
        let frame = encode_request(7, "me", &MetadataRequest::default(), 9).unwrap();
        let len = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(len as usize, frame.len() - 4);
        let mut body = frame.freeze().slice(4..);
        let header = decode_request_header_from_buffer(&mut body).unwrap();
        assert_eq!(header.request_api_key, ApiKey::Metadata as i16);
        assert_eq!(header.request_api_version, 9);
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some("me"));
        let decoded = MetadataRequest::decode(&mut body, 9).unwrap();
        assert_eq!(decoded, MetadataRequest::default());
        assert!(body.is_empty());
    }

    #[test]
    fn version_outside_codec_range_is_refused() {
        let err = encode_request(0, "me", &ApiVersionsRequest::default(), 99).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
    }

    fn response_frame(
        correlation_id: i32,
        header_version: i16,
        body: &impl Encodable,
        version: i16,
    ) -> Bytes {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, header_version)
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn response_decoding_checks_correlation_and_trailing_bytes() {
        let body = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
            .with_api_key(3)
            .with_min_version(0)
            .with_max_version(12)]);
        // ApiVersions v3 uses response header v0 although the body is flexible.
        let frame = response_frame(5, 0, &body, 3);
        let decoded: ApiVersionsResponse = decode_response(frame.clone(), 3, 5).unwrap();
        assert_eq!(decoded, body);

        let err = decode_response::<ApiVersionsResponse>(frame.clone(), 3, 6).unwrap_err();
        assert!(
            matches!(
                err,
                Error::CorrelationMismatch {
                    expected: 6,
                    received: 5
                }
            ),
            "{err}"
        );
        assert!(err.breaks_connection());

        let mut long = BytesMut::from(&frame[..]);
        long.extend_from_slice(&[0, 0]);
        let err = decode_response::<ApiVersionsResponse>(long.freeze(), 3, 5).unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert!(!err.breaks_connection());

        // Truncated frames are protocol errors, not panics.
        for cut in 0..frame.len() {
            assert!(decode_response::<ApiVersionsResponse>(frame.slice(..cut), 3, 5).is_err());
        }
        // Flexible response header (v1) for Metadata v9+.
        let md = MetadataResponse::default();
        let frame = response_frame(1, 1, &md, 9);
        assert_eq!(
            decode_response::<MetadataResponse>(frame, 9, 1).unwrap(),
            md
        );
    }

    #[tokio::test]
    async fn frames_round_trip_and_limits_are_enforced() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut frame = BytesMut::new();
        frame.put_i32(3);
        frame.put_slice(b"abc");
        write_frame(&mut a, &frame).await.unwrap();
        assert_eq!(
            read_frame(&mut b, 3).await.unwrap(),
            Bytes::from_static(b"abc")
        );

        // Too large: refused from the length alone (the payload was never written).
        a.write_all(&1_000_000i32.to_be_bytes()).await.unwrap();
        let err = read_frame(&mut b, 1000).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::FrameTooLarge {
                    size: 1_000_000,
                    max: 1000
                }
            ),
            "{err}"
        );

        // Negative length.
        a.write_all(&(-5i32).to_be_bytes()).await.unwrap();
        let err = read_frame(&mut b, 1000).await.unwrap_err();
        assert!(
            matches!(err, Error::FrameTooLarge { size: -5, .. }),
            "{err}"
        );

        // Empty frame is fine at the framing level.
        a.write_all(&0i32.to_be_bytes()).await.unwrap();
        assert!(read_frame(&mut b, 1000).await.unwrap().is_empty());

        // End of stream mid-frame is an I/O error.
        a.write_all(&10i32.to_be_bytes()).await.unwrap();
        a.write_all(b"xy").await.unwrap();
        drop(a);
        let err = read_frame(&mut b, 1000).await.unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err}");
    }

    #[test]
    fn client_versions_are_within_codec_ranges() {
        for &(api, min, max) in CLIENT_VERSIONS {
            let codec = api.valid_versions();
            assert!(codec.min <= min && max <= codec.max, "{api:?}");
            assert!(min <= max);
        }
    }
}
