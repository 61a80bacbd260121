//! End-to-end tests of `Connection` against a tiny in-process mock broker (real loopback
//! TCP, no Myelin broker needed). The mock keeps an in-memory log per partition, assigns
//! offsets by overwriting the batch base offset (as a real broker does) and deduplicates
//! idempotent batches by (producer id, base sequence).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use myelin_client::kafka_protocol::messages::api_versions_response::ApiVersion;
use myelin_client::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use myelin_client::kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, PartitionData,
};
use myelin_client::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use myelin_client::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use myelin_client::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use myelin_client::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsResponse, FetchResponse,
    InitProducerIdResponse, ListOffsetsResponse, MetadataResponse, ProduceResponse, ProducerId,
    RequestKind, ResponseHeader, ResponseKind, TopicName,
};
use myelin_client::kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use myelin_client::kafka_protocol::ResponseError;
use myelin_client::records::{split_batches, BatchHeader};
use myelin_client::{
    ClientConfig, Compression, Connection, Error, FetchOptions, IdempotentProducer, NewRecord,
    ProduceOptions, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the mock misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Answer ApiVersions > this version with UNSUPPORTED_VERSION in the v0 format.
    ApiVersionsMax(i16),
    /// Answer Metadata with a wrong correlation id.
    WrongCorrelation,
    /// Never answer Metadata.
    SilentMetadata,
    /// Announce a 1 GiB frame for Metadata.
    HugeMetadataFrame,
}

#[derive(Default)]
struct Partition {
    batches: Vec<Bytes>,
    next_offset: i64,
    /// (producer id, base sequence) -> base offset, for deduplication.
    seen: BTreeMap<(i64, i32), i64>,
}

struct State {
    mode: Mode,
    advertised: Vec<(ApiKey, i16, i16)>,
    topics: BTreeMap<String, Vec<Partition>>,
    next_producer_id: i64,
    /// (api key, version) of every request received.
    requests: Vec<(i16, i16)>,
}

type Shared = Arc<Mutex<State>>;

async fn start(mode: Mode, advertised: Vec<(ApiKey, i16, i16)>) -> (SocketAddr, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(State {
        mode,
        advertised,
        topics: BTreeMap::new(),
        next_producer_id: 1000,
        requests: Vec::new(),
    }));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, shared.clone()));
        }
    });
    (addr, state)
}

fn full_range() -> Vec<(ApiKey, i16, i16)> {
    [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::InitProducerId,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
    ]
    .into_iter()
    .map(|k| {
        let r = k.valid_versions();
        (k, r.min, r.max)
    })
    .collect()
}

async fn serve(mut stream: TcpStream, state: Shared) {
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        let mut buf = Bytes::from(frame);
        let header = decode_request_header_from_buffer(&mut buf).unwrap();
        let api = ApiKey::try_from(header.request_api_key).unwrap();
        let version = header.request_api_version;
        let mode = {
            let mut s = state.lock().unwrap();
            s.requests.push((header.request_api_key, version));
            s.mode
        };
        let mut correlation_id = header.correlation_id;
        let mut body_version = version;
        let response = match (api, mode) {
            (ApiKey::ApiVersions, Mode::ApiVersionsMax(max)) if version > max => {
                body_version = 0;
                ResponseKind::ApiVersions(api_versions(&state).with_error_code(35))
            }
            (ApiKey::Metadata, Mode::SilentMetadata) => continue,
            (ApiKey::Metadata, Mode::HugeMetadataFrame) => {
                let _ = stream.write_all(&(1i32 << 30).to_be_bytes()).await;
                let _ = stream.flush().await;
                continue;
            }
            (ApiKey::Metadata, Mode::WrongCorrelation) => {
                correlation_id += 100;
                handle(&state, RequestKind::decode(api, &mut buf, version).unwrap())
            }
            _ => handle(&state, RequestKind::decode(api, &mut buf, version).unwrap()),
        };
        if api == ApiKey::Produce {
            if let ResponseKind::Produce(ref r) = response {
                // acks = 0: no response at all.
                if r.throttle_time_ms == -1 {
                    continue;
                }
            }
        }
        let mut out = BytesMut::new();
        out.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut out, api.response_header_version(version))
            .unwrap();
        response.encode(&mut out, body_version).unwrap();
        let n = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&n.to_be_bytes());
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

fn api_versions(state: &Shared) -> ApiVersionsResponse {
    let s = state.lock().unwrap();
    ApiVersionsResponse::default().with_api_keys(
        s.advertised
            .iter()
            .map(|&(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

fn handle(state: &Shared, request: RequestKind) -> ResponseKind {
    match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions(state)),
        RequestKind::Metadata(req) => {
            let s = state.lock().unwrap();
            let names: Vec<String> = match req.topics {
                None => s.topics.keys().cloned().collect(),
                Some(ts) => ts
                    .into_iter()
                    .map(|t| t.name.unwrap().0.to_string())
                    .collect(),
            };
            let topics = names
                .into_iter()
                .map(|name| {
                    let parts = s.topics.get(&name).map_or(0, |p| p.len());
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(name.clone().into())))
                        .with_error_code(if parts == 0 { 3 } else { 0 })
                        .with_partitions(
                            (0..parts as i32)
                                .map(|i| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(i)
                                        .with_leader_id(BrokerId(1))
                                        .with_replica_nodes(vec![BrokerId(1)])
                                        .with_isr_nodes(vec![BrokerId(1)])
                                })
                                .collect(),
                        )
                })
                .collect();
            ResponseKind::Metadata(
                MetadataResponse::default()
                    .with_brokers(vec![MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host("127.0.0.1".into())
                        .with_port(9092)])
                    .with_controller_id(BrokerId(1))
                    .with_topics(topics),
            )
        }
        RequestKind::CreateTopics(req) => {
            let mut s = state.lock().unwrap();
            let results = req
                .topics
                .into_iter()
                .map(|t| {
                    let name = t.name.0.to_string();
                    let code = if s.topics.contains_key(&name) {
                        36
                    } else {
                        let parts = (0..t.num_partitions)
                            .map(|_| Partition::default())
                            .collect();
                        s.topics.insert(name.clone(), parts);
                        0
                    };
                    CreatableTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(code)
                })
                .collect();
            ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
        }
        RequestKind::InitProducerId(_) => {
            let mut s = state.lock().unwrap();
            s.next_producer_id += 1;
            ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(s.next_producer_id))
                    .with_producer_epoch(0),
            )
        }
        RequestKind::Produce(req) => {
            let mut s = state.lock().unwrap();
            let mut topics = Vec::new();
            for t in req.topic_data {
                let name = t.name.0.to_string();
                let mut parts = Vec::new();
                for p in t.partition_data {
                    let mut resp = PartitionProduceResponse::default().with_index(p.index);
                    match s
                        .topics
                        .get_mut(&name)
                        .and_then(|ps| ps.get_mut(p.index as usize))
                    {
                        None => resp.error_code = 3,
                        Some(part) => resp.base_offset = append(part, p.records.unwrap()),
                    }
                    parts.push(resp);
                }
                topics.push(
                    TopicProduceResponse::default()
                        .with_name(t.name)
                        .with_partition_responses(parts),
                );
            }
            // Marker for "send nothing" (acks = 0), stripped by `serve`.
            let throttle = if req.acks == 0 { -1 } else { 0 };
            ResponseKind::Produce(
                ProduceResponse::default()
                    .with_responses(topics)
                    .with_throttle_time_ms(throttle),
            )
        }
        RequestKind::Fetch(req) => {
            let s = state.lock().unwrap();
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let name = t.topic.0.to_string();
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let mut data =
                                PartitionData::default().with_partition_index(p.partition);
                            match s
                                .topics
                                .get(&name)
                                .and_then(|ps| ps.get(p.partition as usize))
                            {
                                None => data.error_code = 3,
                                Some(part) if p.fetch_offset > part.next_offset => {
                                    data.error_code = 1
                                }
                                Some(part) => {
                                    let mut records = BytesMut::new();
                                    for b in &part.batches {
                                        let h = BatchHeader::parse(b).unwrap();
                                        if h.last_offset() >= p.fetch_offset {
                                            records.extend_from_slice(b);
                                        }
                                    }
                                    data.high_watermark = part.next_offset;
                                    data.last_stable_offset = part.next_offset;
                                    data.log_start_offset = 0;
                                    data.records = Some(records.freeze());
                                }
                            }
                            data
                        })
                        .collect();
                    FetchableTopicResponse::default()
                        .with_topic(t.topic)
                        .with_partitions(partitions)
                })
                .collect();
            ResponseKind::Fetch(FetchResponse::default().with_responses(topics))
        }
        RequestKind::ListOffsets(req) => {
            let s = state.lock().unwrap();
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let part = s.topics.get(&t.name.0.to_string());
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let next = part
                                .and_then(|ps| ps.get(p.partition_index as usize))
                                .map(|x| x.next_offset);
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(if next.is_some() { 0 } else { 3 })
                                .with_offset(match p.timestamp {
                                    -2 => 0,
                                    _ => next.unwrap_or(-1),
                                })
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
        }
        other => panic!("mock broker: unexpected request {other:?}"),
    }
}

/// Appends one produced batch, assigning offsets; idempotent duplicates get their offset.
fn append(part: &mut Partition, records: Bytes) -> i64 {
    let (batches, rest) = split_batches(&records).unwrap();
    assert_eq!((batches.len(), rest), (1, 0), "one whole batch per produce");
    let h = BatchHeader::parse(&batches[0]).unwrap();
    if h.producer_id >= 0 {
        if let Some(&offset) = part.seen.get(&(h.producer_id, h.base_sequence)) {
            return offset;
        }
    }
    let base = part.next_offset;
    let mut b = BytesMut::from(&batches[0][..]);
    b[..8].copy_from_slice(&base.to_be_bytes());
    part.batches.push(b.freeze());
    part.next_offset = base + i64::from(h.last_offset_delta) + 1;
    if h.producer_id >= 0 {
        part.seen.insert((h.producer_id, h.base_sequence), base);
    }
    base
}

fn config() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

fn values(records: &[myelin_client::ConsumedRecord]) -> Vec<&[u8]> {
    records
        .iter()
        .map(|r| r.value.as_deref().unwrap())
        .collect()
}

#[tokio::test]
async fn negotiates_highest_common_version() {
    let mut advertised = full_range();
    for entry in advertised.iter_mut() {
        match entry.0 {
            ApiKey::Produce => *entry = (ApiKey::Produce, 3, 7),
            ApiKey::Fetch => *entry = (ApiKey::Fetch, 4, 11),
            _ => {}
        }
    }
    advertised.retain(|e| e.0 != ApiKey::DeleteTopics);
    let (addr, _) = start(Mode::Normal, advertised).await;
    let mut conn = Connection::connect(addr, config()).await.unwrap();
    assert_eq!(conn.version(ApiKey::Produce).unwrap(), 7);
    assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 11);
    assert_eq!(conn.version(ApiKey::Metadata).unwrap(), 12);
    assert_eq!(conn.version(ApiKey::ListOffsets).unwrap(), 7);
    assert_eq!(conn.version(ApiKey::InitProducerId).unwrap(), 4);
    assert_eq!(conn.version(ApiKey::CreateTopics).unwrap(), 7);
    let err = conn.version(ApiKey::DeleteTopics).unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
    let err = conn.delete_topic("x").await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
    assert!(!conn.is_broken());

    conn.set_version(ApiKey::Fetch, 4).unwrap();
    assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 4);
    assert!(conn.set_version(ApiKey::Fetch, 13).is_err());
    conn.unpin_version(ApiKey::Fetch);
    assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 11);
}

#[tokio::test]
async fn api_versions_falls_back_on_unsupported_version() {
    let mut advertised = full_range();
    advertised[0] = (ApiKey::ApiVersions, 0, 1);
    let (addr, state) = start(Mode::ApiVersionsMax(1), advertised).await;
    let conn = Connection::connect(addr, config()).await.unwrap();
    assert_eq!(conn.version(ApiKey::Fetch).unwrap(), 12);
    let sent = state.lock().unwrap().requests.clone();
    assert_eq!(sent, vec![(18, 3), (18, 1)]);
}

#[tokio::test]
async fn admin_produce_fetch_list_offsets_for_every_version() {
    let (addr, state) = start(Mode::Normal, full_range()).await;
    let mut conn = Connection::connect(addr, config()).await.unwrap();
    conn.create_topic("t", 2, 1, &[("cleanup.policy", "delete")])
        .await
        .unwrap();
    let err = conn.create_topic("t", 2, 1, &[]).await.unwrap_err();
    assert!(
        err.is_broker_error(ResponseError::TopicAlreadyExists),
        "{err}"
    );

    let md = conn.metadata(Some(&["t", "missing"])).await.unwrap();
    assert_eq!(md.topic("t").unwrap().partitions.len(), 2);
    assert_eq!(md.topic("missing").unwrap().error_code, 3);
    assert_eq!(md.broker(1).unwrap().port, 9092);
    assert_eq!(conn.metadata(None).await.unwrap().topics.len(), 1);

    // Exercise each Produce / Fetch / ListOffsets / Metadata version the client supports.
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for (i, version) in (3..=9).enumerate() {
        conn.set_version(ApiKey::Produce, version).unwrap();
        let value = format!("v{version}").into_bytes();
        let options = ProduceOptions {
            compression: [Compression::None, Compression::Gzip, Compression::Zstd][i % 3],
            ..Default::default()
        };
        let offset = conn
            .produce("t", 1, &[NewRecord::kv("k", value.clone())], &options)
            .await
            .unwrap();
        assert_eq!(offset, i as i64);
        expected.push(value);
    }
    for version in 4..=12 {
        conn.set_version(ApiKey::Fetch, version).unwrap();
        let fetched = conn
            .fetch("t", 1, 2, &FetchOptions::default())
            .await
            .unwrap();
        assert_eq!(
            values(&fetched.records),
            expected[2..].to_vec(),
            "v{version}"
        );
        assert_eq!(fetched.records[0].offset, 2);
        assert_eq!(fetched.high_watermark, 7);
        assert_eq!(fetched.next_offset, 7);
    }
    for version in 1..=7 {
        conn.set_version(ApiKey::ListOffsets, version).unwrap();
        assert_eq!(
            conn.list_offsets("t", 1, LATEST_TIMESTAMP).await.unwrap(),
            7
        );
        assert_eq!(
            conn.list_offsets("t", 1, EARLIEST_TIMESTAMP).await.unwrap(),
            0
        );
    }
    for version in 4..=12 {
        conn.set_version(ApiKey::Metadata, version).unwrap();
        assert_eq!(conn.metadata(Some(&["t"])).await.unwrap().topics.len(), 1);
    }

    // Errors carry the Kafka code and leave the connection usable.
    let err = conn
        .fetch("t", 1, 100, &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.is_broker_error(ResponseError::OffsetOutOfRange),
        "{err}"
    );
    let err = conn
        .produce(
            "nope",
            0,
            &[NewRecord::new("x")],
            &ProduceOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.broker_code(), Some(3));
    assert!(!conn.is_broken());

    // acks = 0: nothing to wait for; the next request still pairs up correctly.
    let acks0 = ProduceOptions {
        acks: 0,
        ..Default::default()
    };
    assert_eq!(
        conn.produce("t", 0, &[NewRecord::new("fire")], &acks0)
            .await
            .unwrap(),
        -1
    );
    assert_eq!(
        conn.list_offsets("t", 0, LATEST_TIMESTAMP).await.unwrap(),
        1
    );
    assert!(state.lock().unwrap().requests.len() > 30);
}

#[tokio::test]
async fn idempotent_retry_is_deduplicated() {
    let (addr, _) = start(Mode::Normal, full_range()).await;
    let mut conn = Connection::connect(addr, config()).await.unwrap();
    conn.create_topic("idem", 1, 1, &[]).await.unwrap();
    let mut producer = IdempotentProducer::init(&mut conn, "idem", 0)
        .await
        .unwrap();
    assert!(producer.producer_id() > 1000);
    let a = producer
        .batch(&[NewRecord::new("a"), NewRecord::new("b")])
        .unwrap();
    let first = producer.send(&mut conn, &a).await.unwrap();
    // Reconnect (as after a timeout) and retry the same batch.
    let mut conn = Connection::connect(addr, config()).await.unwrap();
    assert_eq!(producer.send(&mut conn, &a).await.unwrap(), first);
    let second = producer
        .produce(&mut conn, &[NewRecord::new("c")])
        .await
        .unwrap();
    assert_eq!(second, 2);
    assert_eq!(producer.next_sequence(), 3);
    let fetched = conn
        .fetch("idem", 0, 0, &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(values(&fetched.records), vec![&b"a"[..], b"b", b"c"]);
    assert_eq!(fetched.batches[1].base_sequence, 2);
    assert_eq!(fetched.batches[1].producer_id, producer.producer_id());
}

async fn connect_then_metadata(mode: Mode, timeout: Duration) -> (Connection, Error) {
    let (addr, _) = start(mode, full_range()).await;
    let cfg = ClientConfig {
        request_timeout: timeout,
        max_frame_bytes: 1 << 20,
        ..Default::default()
    };
    let mut conn = Connection::connect(addr, cfg).await.unwrap();
    let err = conn.metadata(None).await.unwrap_err();
    (conn, err)
}

#[tokio::test]
async fn wrong_correlation_id_breaks_the_connection() {
    let (mut conn, err) =
        connect_then_metadata(Mode::WrongCorrelation, Duration::from_secs(5)).await;
    assert!(matches!(err, Error::CorrelationMismatch { .. }), "{err}");
    assert!(conn.is_broken());
    let err = conn.list_offsets("t", 0, -1).await.unwrap_err();
    assert!(matches!(err, Error::Broken(_)), "{err}");
}

#[tokio::test]
async fn silent_broker_times_out() {
    let (mut conn, err) =
        connect_then_metadata(Mode::SilentMetadata, Duration::from_millis(200)).await;
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.is_retriable());
    assert!(conn.is_broken());
    assert!(matches!(conn.metadata(None).await, Err(Error::Broken(_))));
}

#[tokio::test]
async fn oversized_frame_is_refused() {
    let (conn, err) = connect_then_metadata(Mode::HugeMetadataFrame, Duration::from_secs(5)).await;
    assert!(
        matches!(err, Error::FrameTooLarge { size, max } if size == 1 << 30 && max == 1 << 20),
        "{err}"
    );
    assert!(conn.is_broken());
}

#[tokio::test]
async fn raw_frames() {
    let (addr, _) = start(Mode::Normal, full_range()).await;
    let mut conn = Connection::connect_raw(addr, config()).await.unwrap();
    assert!(conn.version(ApiKey::Metadata).is_err(), "no handshake yet");
    // A hand-made ApiVersions v0 request: key 18, version 0, correlation 77, null client id.
    let mut payload = Vec::new();
    payload.extend_from_slice(&18i16.to_be_bytes());
    payload.extend_from_slice(&0i16.to_be_bytes());
    payload.extend_from_slice(&77i32.to_be_bytes());
    payload.extend_from_slice(&(-1i16).to_be_bytes());
    conn.send_raw_frame(&payload).await.unwrap();
    let frame = conn.read_raw_frame().await.unwrap();
    assert_eq!(&frame[..4], &77i32.to_be_bytes());
    conn.api_versions().await.unwrap();
    assert_eq!(conn.version(ApiKey::Metadata).unwrap(), 12);
}

#[tokio::test]
async fn connect_refused_is_io_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Connection::connect(addr, config()).await.unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
}
