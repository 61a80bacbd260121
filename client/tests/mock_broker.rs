//! End-to-end tests of `Connection` against a tiny in-process mock broker (real loopback
//! TCP, no Myelin broker needed). The mock keeps an in-memory log per partition, assigns
//! offsets by overwriting the batch base offset (as a real broker does) and deduplicates
//! idempotent batches by (producer id, base sequence).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use myelin_client::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use myelin_client::kafka_protocol::messages::api_versions_response::ApiVersion;
use myelin_client::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use myelin_client::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use myelin_client::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use myelin_client::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use myelin_client::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use myelin_client::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use myelin_client::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use myelin_client::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use myelin_client::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use myelin_client::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use myelin_client::kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, ApiKey, ApiVersionsResponse, BrokerId,
    CreateTopicsResponse, DeleteGroupsResponse, DeleteRecordsResponse, EndTxnResponse,
    FetchResponse, FindCoordinatorResponse, InitProducerIdResponse, ListOffsetsResponse,
    MetadataResponse, OffsetDeleteResponse, OffsetFetchResponse, ProduceResponse, ProducerId,
    RequestKind, ResponseHeader, ResponseKind, TopicName, TxnOffsetCommitResponse,
};
use myelin_client::kafka_protocol::protocol::{
    decode_request_header_from_buffer, Encodable, StrBytes,
};
use myelin_client::kafka_protocol::records::{
    Compression as Codec, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use myelin_client::kafka_protocol::ResponseError;
use myelin_client::records::{split_batches, BatchHeader};
use myelin_client::{
    AbortedTransaction as Aborted, ClientConfig, Compression, Connection, Error, FetchOptions,
    GroupMembership, IdempotentProducer, IsolationLevel, NewRecord, ProduceOptions,
    TransactionalProducer, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
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
    /// (producer id, epoch, base sequence) -> base offset, for deduplication.
    seen: BTreeMap<(i64, i16, i32), i64>,
    /// Producer id -> first offset of its open transaction here.
    open: BTreeMap<i64, i64>,
    /// Aborted transactions: (producer id, first offset, offset of the ABORT marker).
    aborted: Vec<(i64, i64, i64)>,
}

/// A transactional id's state in the mock coordinator (a small model, not Kafka's).
#[derive(Default)]
struct Txn {
    producer_id: i64,
    epoch: i16,
    partitions: Vec<(String, i32)>,
    /// Offsets committed in the open transaction: (group, topic, partition) -> offset.
    pending_offsets: BTreeMap<(String, String, i32), i64>,
    ongoing: bool,
}

struct State {
    mode: Mode,
    port: i32,
    advertised: Vec<(ApiKey, i16, i16)>,
    topics: BTreeMap<String, Vec<Partition>>,
    next_producer_id: i64,
    /// (api key, version) of every request received.
    requests: Vec<(i16, i16)>,
    /// Transactional requests as decoded, in order (FindCoordinator, InitProducerId, the
    /// transaction APIs, OffsetFetch and the transactional id of each Produce).
    seen: Vec<RequestKind>,
    txns: BTreeMap<String, Txn>,
    /// Committed offsets: (group, topic, partition) -> offset.
    offsets: BTreeMap<(String, String, i32), i64>,
    /// Error codes to answer instead of handling, once each, per api key.
    inject: Vec<(ApiKey, i16)>,
}

type Shared = Arc<Mutex<State>>;

async fn start(mode: Mode, advertised: Vec<(ApiKey, i16, i16)>) -> (SocketAddr, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(State {
        mode,
        port: i32::from(addr.port()),
        advertised,
        topics: BTreeMap::new(),
        next_producer_id: 1000,
        requests: Vec::new(),
        seen: Vec::new(),
        txns: BTreeMap::new(),
        offsets: BTreeMap::new(),
        inject: Vec::new(),
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

/// `full_range` plus what transactions need, with the ranges a transactions-v1 broker
/// advertises.
fn transactional_range() -> Vec<(ApiKey, i16, i16)> {
    let mut range = full_range();
    range.extend([
        (ApiKey::FindCoordinator, 0, 6),
        (ApiKey::OffsetFetch, 1, 9),
        (ApiKey::AddPartitionsToTxn, 0, 3),
        (ApiKey::AddOffsetsToTxn, 0, 3),
        (ApiKey::EndTxn, 0, 3),
        (ApiKey::TxnOffsetCommit, 0, 3),
    ]);
    for entry in range.iter_mut() {
        if entry.0 == ApiKey::InitProducerId {
            *entry = (ApiKey::InitProducerId, 0, 4);
        }
    }
    range
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
                handle(
                    &state,
                    RequestKind::decode(api, &mut buf, version).unwrap(),
                    version,
                )
            }
            _ => {
                let request = RequestKind::decode(api, &mut buf, version).unwrap();
                assert!(buf.is_empty(), "{api:?} v{version}: trailing request bytes");
                let injected = {
                    let mut s = state.lock().unwrap();
                    let found = s.inject.iter().position(|(key, _)| *key == api);
                    found.map(|i| s.inject.remove(i).1)
                };
                match injected {
                    Some(code) => injected_error(api, code),
                    None => handle(&state, request, version),
                }
            }
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

/// The next offset of a partition the mock holds.
fn log_end(state: &State, topic: &TopicName, partition: i32) -> Option<i64> {
    state
        .topics
        .get(topic.0.as_str())
        .and_then(|partitions| partitions.get(usize::try_from(partition).ok()?))
        .map(|partition| partition.next_offset)
}

fn handle(state: &Shared, request: RequestKind, version: i16) -> ResponseKind {
    if matches!(
        request,
        RequestKind::FindCoordinator(_)
            | RequestKind::InitProducerId(_)
            | RequestKind::AddPartitionsToTxn(_)
            | RequestKind::AddOffsetsToTxn(_)
            | RequestKind::EndTxn(_)
            | RequestKind::TxnOffsetCommit(_)
            | RequestKind::OffsetFetch(_)
    ) {
        state.lock().unwrap().seen.push(request.clone());
    }
    if let Some(r) = transactional(state, &request, version) {
        return r;
    }
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
            if req.transactional_id.is_some() {
                s.seen.push(RequestKind::Produce(req.clone()));
            }
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
                                    let lso = part
                                        .open
                                        .values()
                                        .copied()
                                        .min()
                                        .unwrap_or(part.next_offset);
                                    let committed = req.isolation_level == 1;
                                    let limit = if committed { lso } else { part.next_offset };
                                    let mut records = BytesMut::new();
                                    for b in &part.batches {
                                        let h = BatchHeader::parse(b).unwrap();
                                        if h.last_offset() >= p.fetch_offset
                                            && h.base_offset < limit
                                        {
                                            records.extend_from_slice(b);
                                        }
                                    }
                                    data.high_watermark = part.next_offset;
                                    data.last_stable_offset = lso;
                                    data.log_start_offset = 0;
                                    data.records = Some(records.freeze());
                                    if committed {
                                        // Kafka lists the aborted transactions overlapping
                                        // the fetched range.
                                        data.aborted_transactions = Some(
                                            part.aborted
                                                .iter()
                                                .filter(|(_, first, marker)| {
                                                    *marker >= p.fetch_offset && *first < limit
                                                })
                                                .map(|(pid, first, _)| {
                                                    AbortedTransaction::default()
                                                        .with_producer_id(ProducerId(*pid))
                                                        .with_first_offset(*first)
                                                })
                                                .collect(),
                                        );
                                    }
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
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let next = log_end(&s, &t.name, p.partition_index);
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
        RequestKind::DeleteRecords(req) => {
            let s = state.lock().unwrap();
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .into_iter()
                        .map(|p| {
                            let end = log_end(&s, &t.name, p.partition_index);
                            let (error, low) = match (end, p.offset) {
                                (None, _) => (3, -1),
                                (Some(end), -1) => (0, end),
                                (Some(end), offset) if offset > end => (1, -1),
                                (Some(_), offset) => (0, offset),
                            };
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error)
                                .with_low_watermark(low)
                        })
                        .collect();
                    DeleteRecordsTopicResult::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
        }
        // Groups named "busy" have members, "missing" do not exist; topic "watched" is
        // subscribed to.
        RequestKind::DeleteGroups(req) => {
            let results = req
                .groups_names
                .into_iter()
                .map(|group| {
                    let error = match group.0.as_str() {
                        "busy" => 68,
                        "missing" => 69,
                        _ => 0,
                    };
                    DeletableGroupResult::default()
                        .with_group_id(group)
                        .with_error_code(error)
                })
                .collect();
            ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
        }
        RequestKind::OffsetDelete(req) => {
            if req.group_id.0.as_str() == "missing" {
                return ResponseKind::OffsetDelete(
                    OffsetDeleteResponse::default().with_error_code(69),
                );
            }
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let error = if t.name.0.as_str() == "watched" {
                        86
                    } else {
                        0
                    };
                    OffsetDeleteResponseTopic::default()
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(error)
                                })
                                .collect(),
                        )
                        .with_name(t.name)
                })
                .collect();
            ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_topics(topics))
        }
        other => panic!("mock broker: unexpected request {other:?}"),
    }
}

/// Appends one produced batch, assigning offsets; idempotent duplicates get their offset.
fn append(part: &mut Partition, records: Bytes) -> i64 {
    let (batches, rest) = split_batches(&records).unwrap();
    assert_eq!((batches.len(), rest), (1, 0), "one whole batch per produce");
    let h = BatchHeader::parse(&batches[0]).unwrap();
    let key = (h.producer_id, h.producer_epoch, h.base_sequence);
    if h.producer_id >= 0 {
        if let Some(&offset) = part.seen.get(&key) {
            return offset;
        }
    }
    let base = part.next_offset;
    let mut b = BytesMut::from(&batches[0][..]);
    b[..8].copy_from_slice(&base.to_be_bytes());
    part.batches.push(b.freeze());
    part.next_offset = base + i64::from(h.last_offset_delta) + 1;
    if h.producer_id >= 0 {
        part.seen.insert(key, base);
    }
    if h.is_transactional() && !h.is_control() {
        part.open.entry(h.producer_id).or_insert(base);
    }
    base
}

/// Appends a transaction marker for `producer_id` and closes its transaction here.
fn write_marker(part: &mut Partition, producer_id: i64, epoch: i16, commit: bool) {
    let Some(first) = part.open.remove(&producer_id) else {
        return;
    };
    let offset = part.next_offset;
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 1,
        key: Some(Bytes::copy_from_slice(&[0, 0, 0, u8::from(commit)])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Codec::None,
        },
    )
    .unwrap();
    part.batches.push(buf.freeze());
    part.next_offset = offset + 1;
    if !commit {
        part.aborted.push((producer_id, first, offset));
    }
}

/// The error a broker answers with `code` for `api` (the whole request failed).
fn injected_error(api: ApiKey, code: i16) -> ResponseKind {
    match api {
        ApiKey::FindCoordinator => ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1)),
        ),
        ApiKey::InitProducerId => ResponseKind::InitProducerId(
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::AddOffsetsToTxn => {
            ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        ApiKey::EndTxn => ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code)),
        ApiKey::OffsetFetch => {
            ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_error_code(code))
        }
        other => panic!("mock broker: no injected error for {other:?}"),
    }
}

/// PRODUCER_FENCED from v`fenced_from` on, INVALID_PRODUCER_EPOCH below.
fn fenced(version: i16, fenced_from: i16) -> i16 {
    if version >= fenced_from {
        90
    } else {
        47
    }
}

/// The mock transaction coordinator (and group coordinator for transactional offsets).
/// `None` for requests it does not handle.
fn transactional(state: &Shared, request: &RequestKind, version: i16) -> Option<ResponseKind> {
    let mut s = state.lock().unwrap();
    let s = &mut *s;
    Some(match request {
        RequestKind::FindCoordinator(_) => ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(s.port),
        ),
        RequestKind::InitProducerId(req) if req.transactional_id.is_some() => {
            let id = req.transactional_id.clone().unwrap().0.to_string();
            s.next_producer_id += 1;
            let fresh_id = s.next_producer_id;
            let txn = s.txns.entry(id).or_insert_with(|| Txn {
                producer_id: fresh_id,
                epoch: -1,
                ..Default::default()
            });
            let resume = req.producer_id.0 >= 0;
            let mut response = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            if resume && (req.producer_id.0, req.producer_epoch) != (txn.producer_id, txn.epoch) {
                response.error_code = fenced(version, 4);
            } else {
                // Fence the earlier producer: abort its open transaction.
                for (topic, partition) in std::mem::take(&mut txn.partitions) {
                    if let Some(part) = s
                        .topics
                        .get_mut(&topic)
                        .and_then(|ps| ps.get_mut(partition as usize))
                    {
                        write_marker(part, txn.producer_id, txn.epoch + 1, false);
                    }
                }
                txn.pending_offsets.clear();
                txn.ongoing = false;
                txn.epoch += 1;
                response.producer_id = ProducerId(txn.producer_id);
                response.producer_epoch = txn.epoch;
            }
            ResponseKind::InitProducerId(response)
        }
        RequestKind::AddPartitionsToTxn(req) => {
            let id = req.v3_and_below_transactional_id.0.to_string();
            let code = match s.txns.get_mut(&id) {
                None => 49, // INVALID_PRODUCER_ID_MAPPING
                Some(t) if t.producer_id != req.v3_and_below_producer_id.0 => 49,
                Some(t) if t.epoch != req.v3_and_below_producer_epoch => fenced(version, 2),
                Some(t) => {
                    t.ongoing = true;
                    for topic in &req.v3_and_below_topics {
                        for p in &topic.partitions {
                            let tp = (topic.name.0.to_string(), *p);
                            if !t.partitions.contains(&tp) {
                                t.partitions.push(tp);
                            }
                        }
                    }
                    0
                }
            };
            ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
                    req.v3_and_below_topics
                        .iter()
                        .map(|topic| {
                            AddPartitionsToTxnTopicResult::default()
                                .with_name(topic.name.clone())
                                .with_results_by_partition(
                                    topic
                                        .partitions
                                        .iter()
                                        .map(|p| {
                                            AddPartitionsToTxnPartitionResult::default()
                                                .with_partition_index(*p)
                                                .with_partition_error_code(code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::AddOffsetsToTxn(req) => {
            let code = match s.txns.get_mut(&req.transactional_id.0.to_string()) {
                None => 49,
                Some(t) if t.producer_id != req.producer_id.0 => 49,
                Some(t) if t.epoch != req.producer_epoch => fenced(version, 2),
                Some(t) => {
                    t.ongoing = true;
                    0
                }
            };
            ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
        }
        RequestKind::EndTxn(req) => {
            let code = match s.txns.get_mut(&req.transactional_id.0.to_string()) {
                None => 49,
                Some(t) if t.producer_id != req.producer_id.0 => 49,
                Some(t) if t.epoch != req.producer_epoch => fenced(version, 2),
                Some(t) if !t.ongoing => 48, // INVALID_TXN_STATE
                Some(t) => {
                    for (topic, partition) in std::mem::take(&mut t.partitions) {
                        if let Some(part) = s
                            .topics
                            .get_mut(&topic)
                            .and_then(|ps| ps.get_mut(partition as usize))
                        {
                            write_marker(part, t.producer_id, t.epoch, req.committed);
                        }
                    }
                    let pending = std::mem::take(&mut t.pending_offsets);
                    if req.committed {
                        s.offsets.extend(pending);
                    }
                    t.ongoing = false;
                    0
                }
            };
            ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code))
        }
        RequestKind::TxnOffsetCommit(req) => {
            let group = req.group_id.0.to_string();
            let txn = s.txns.get_mut(&req.transactional_id.0.to_string());
            let code = match txn {
                None => 49,
                Some(t) if t.epoch != req.producer_epoch => fenced(version, 2),
                Some(t) => {
                    for topic in &req.topics {
                        for p in &topic.partitions {
                            t.pending_offsets.insert(
                                (group.clone(), topic.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                    }
                    0
                }
            };
            ResponseKind::TxnOffsetCommit(
                TxnOffsetCommitResponse::default().with_topics(
                    req.topics
                        .iter()
                        .map(|topic| {
                            TxnOffsetCommitResponseTopic::default()
                                .with_name(topic.name.clone())
                                .with_partitions(
                                    topic
                                        .partitions
                                        .iter()
                                        .map(|p| {
                                            TxnOffsetCommitResponsePartition::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::OffsetFetch(req) => {
            let group = req.group_id.0.to_string();
            let topics = req.topics.clone().unwrap_or_default();
            let pending = |topic: &str, partition: i32| {
                s.txns.values().any(|t| {
                    t.pending_offsets
                        .contains_key(&(group.clone(), topic.to_owned(), partition))
                })
            };
            ResponseKind::OffsetFetch(
                OffsetFetchResponse::default().with_topics(
                    topics
                        .iter()
                        .map(|topic| {
                            let name = topic.name.0.to_string();
                            OffsetFetchResponseTopic::default()
                                .with_name(topic.name.clone())
                                .with_partitions(
                                    topic
                                        .partition_indexes
                                        .iter()
                                        .map(|&p| {
                                            let unstable = req.require_stable && pending(&name, p);
                                            let offset = s
                                                .offsets
                                                .get(&(group.clone(), name.clone(), p))
                                                .copied()
                                                .unwrap_or(-1);
                                            OffsetFetchResponsePartition::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(if unstable {
                                                    -1
                                                } else {
                                                    offset
                                                })
                                                .with_error_code(if unstable { 88 } else { 0 })
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        _ => return None,
    })
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

fn text_values(records: &[myelin_client::ConsumedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

fn isolated(isolation: IsolationLevel) -> FetchOptions {
    FetchOptions {
        isolation,
        ..Default::default()
    }
}

#[tokio::test]
async fn transactions_commit_abort_and_read_committed() {
    let (addr, state) = start(Mode::Normal, transactional_range()).await;
    let mut conn = Connection::connect(addr, config()).await.unwrap();
    conn.create_topic("out", 2, 1, &[]).await.unwrap();

    let coordinator = conn.find_transaction_coordinator("tx").await.unwrap();
    assert_eq!(
        (coordinator.node_id, coordinator.port),
        (1, i32::from(addr.port()))
    );
    assert_eq!(conn.version(ApiKey::AddPartitionsToTxn).unwrap(), 3);
    assert_eq!(conn.version(ApiKey::TxnOffsetCommit).unwrap(), 3);
    let mut producer = TransactionalProducer::init(&mut conn, "tx", 30_000)
        .await
        .unwrap();
    assert_eq!(producer.producer_epoch(), 0);
    assert!(!producer.in_transaction());

    // Transaction 1: two partitions and an offset commit, committed.
    producer
        .add_partitions(&mut conn, &[("out", 0), ("out", 1), ("out", 0)])
        .await
        .unwrap();
    producer
        .produce(
            &mut conn,
            "out",
            0,
            &[NewRecord::new("a"), NewRecord::new("b")],
        )
        .await
        .unwrap();
    producer
        .produce(&mut conn, "out", 1, &[NewRecord::new("c")])
        .await
        .unwrap();
    producer.add_offsets(&mut conn, "g").await.unwrap();
    let member = GroupMembership {
        member_id: "m-1".into(),
        generation: 3,
        group_instance_id: Some("i-1".into()),
    };
    producer
        .commit_offsets(&mut conn, "g", &member, &[("in", 0, 5), ("in", 1, 7)])
        .await
        .unwrap();
    assert_eq!(
        producer.transaction_partitions().collect::<Vec<_>>(),
        [("out", 0), ("out", 1)]
    );
    // Pending transactional offsets: unstable under require_stable, invisible otherwise.
    let stable = conn
        .fetch_offsets_detailed("g", "in", &[0, 1], true)
        .await
        .unwrap();
    assert!(stable.iter().all(|o| o.error_code == 88), "{stable:?}");
    let plain = conn
        .fetch_offsets_detailed("g", "in", &[0], false)
        .await
        .unwrap();
    assert_eq!((plain[0].offset, plain[0].error_code), (-1, 0));
    producer.end(&mut conn, true).await.unwrap();
    assert!(!producer.in_transaction());
    let stable = conn
        .fetch_offsets_detailed("g", "in", &[0, 1], true)
        .await
        .unwrap();
    assert_eq!(
        stable
            .iter()
            .map(|o| (o.offset, o.error_code))
            .collect::<Vec<_>>(),
        [(5, 0), (7, 0)]
    );

    // Transaction 2: aborted.
    producer
        .add_partitions(&mut conn, &[("out", 0)])
        .await
        .unwrap();
    let batch = producer
        .batch("out", 0, &[NewRecord::new("x1"), NewRecord::new("x2")])
        .unwrap();
    assert_eq!(
        batch.base_sequence, 2,
        "sequences continue across transactions"
    );
    producer.send(&mut conn, "out", 0, &batch).await.unwrap();
    producer.end(&mut conn, false).await.unwrap();

    // Transaction 3: left open, then committed.
    producer
        .add_partitions(&mut conn, &[("out", 0)])
        .await
        .unwrap();
    producer
        .produce(&mut conn, "out", 0, &[NewRecord::new("d")])
        .await
        .unwrap();
    let open = conn
        .fetch("out", 0, 0, &isolated(IsolationLevel::ReadCommitted))
        .await
        .unwrap();
    assert_eq!(text_values(&open.records), ["a", "b"]);
    assert_eq!(
        open.aborted_transactions,
        [Aborted {
            producer_id: producer.producer_id(),
            first_offset: 3
        }]
    );
    assert_eq!((open.last_stable_offset, open.high_watermark), (6, 7));
    let uncommitted = conn
        .fetch("out", 0, 0, &isolated(IsolationLevel::ReadUncommitted))
        .await
        .unwrap();
    assert_eq!(
        text_values(&uncommitted.records),
        ["a", "b", "x1", "x2", "d"]
    );
    producer.end(&mut conn, true).await.unwrap();
    let done = conn
        .fetch("out", 0, 0, &isolated(IsolationLevel::ReadCommitted))
        .await
        .unwrap();
    assert_eq!(text_values(&done.records), ["a", "b", "d"]);
    assert_eq!(done.next_offset, 8);
    // Fetching from inside the aborted transaction still drops it.
    let mid = conn
        .fetch("out", 0, 4, &isolated(IsolationLevel::ReadCommitted))
        .await
        .unwrap();
    assert_eq!(text_values(&mid.records), ["d"]);
    let p1 = conn
        .fetch("out", 1, 0, &isolated(IsolationLevel::ReadCommitted))
        .await
        .unwrap();
    assert_eq!(text_values(&p1.records), ["c"]);

    // What went over the wire: key type 1, the transactional id on every Produce, the
    // KIP-447 fields of TxnOffsetCommit v3, the transactional bit on every batch.
    let seen = state.lock().unwrap().seen.clone();
    let mut produces = 0;
    for request in &seen {
        match request {
            RequestKind::FindCoordinator(r) => {
                assert_eq!((r.key.as_str(), r.key_type), ("tx", 1));
            }
            RequestKind::InitProducerId(r) => {
                assert_eq!(r.transactional_id.as_ref().unwrap().0.as_str(), "tx");
                assert_eq!(r.transaction_timeout_ms, 30_000);
                assert_eq!((r.producer_id.0, r.producer_epoch), (-1, -1));
            }
            RequestKind::TxnOffsetCommit(r) => {
                assert_eq!((r.member_id.as_str(), r.generation_id), ("m-1", 3));
                assert_eq!(r.group_instance_id.as_deref(), Some("i-1"));
                assert_eq!(r.topics.len(), 1);
                assert_eq!(r.topics[0].partitions.len(), 2);
            }
            RequestKind::AddPartitionsToTxn(r) => {
                assert_eq!(r.v3_and_below_producer_id.0, producer.producer_id());
                let n: usize = r
                    .v3_and_below_topics
                    .iter()
                    .map(|t| t.partitions.len())
                    .sum();
                assert!(n == 1 || n == 2, "duplicates are sent once");
            }
            RequestKind::Produce(r) => {
                produces += 1;
                assert_eq!(r.transactional_id.as_ref().unwrap().0.as_str(), "tx");
                let records = r.topic_data[0].partition_data[0].records.clone().unwrap();
                let h = BatchHeader::parse(&records).unwrap();
                assert!(h.is_transactional());
                assert_eq!(h.producer_id, producer.producer_id());
            }
            _ => {}
        }
    }
    assert_eq!(produces, 4);
    // AddPartitionsToTxn once per transaction; EndTxn three times; one AddOffsetsToTxn.
    let count = |pred: fn(&RequestKind) -> bool| seen.iter().filter(|r| pred(r)).count();
    assert_eq!(
        count(|r| matches!(r, RequestKind::AddPartitionsToTxn(_))),
        3
    );
    assert_eq!(count(|r| matches!(r, RequestKind::EndTxn(_))), 3);
    assert_eq!(count(|r| matches!(r, RequestKind::AddOffsetsToTxn(_))), 1);
}

#[tokio::test]
async fn fencing_and_error_codes_come_back_unchanged() {
    let (addr, state) = start(Mode::Normal, transactional_range()).await;
    let mut conn = Connection::connect(addr, config()).await.unwrap();
    conn.create_topic("out", 1, 1, &[]).await.unwrap();
    let mut first = TransactionalProducer::init(&mut conn, "tx", 60_000)
        .await
        .unwrap();
    first
        .add_partitions(&mut conn, &[("out", 0)])
        .await
        .unwrap();
    first
        .produce(&mut conn, "out", 0, &[NewRecord::new("zombie")])
        .await
        .unwrap();

    // A second producer with the same transactional id fences the first (and the mock
    // aborts the open transaction).
    let mut second = TransactionalProducer::init(&mut conn, "tx", 60_000)
        .await
        .unwrap();
    assert_eq!(second.producer_id(), first.producer_id());
    assert_eq!(second.producer_epoch(), first.producer_epoch() + 1);
    let err = first.end(&mut conn, true).await.unwrap_err();
    assert_eq!(err.broker_code(), Some(90), "{err}"); // PRODUCER_FENCED (EndTxn v3)
    assert!(
        first.in_transaction(),
        "a failed EndTxn leaves the transaction as it was"
    );
    conn.set_version(ApiKey::EndTxn, 1).unwrap();
    let err = first.end(&mut conn, false).await.unwrap_err();
    assert_eq!(err.broker_code(), Some(47), "{err}"); // INVALID_PRODUCER_EPOCH below v2
    conn.unpin_version(ApiKey::EndTxn);
    let err = first
        .add_partitions(&mut conn, &[("out", 1)])
        .await
        .unwrap_err();
    assert_eq!(err.broker_code(), Some(90), "{err}");
    let err = first.add_offsets(&mut conn, "g").await.unwrap_err();
    assert_eq!(err.broker_code(), Some(90), "{err}");
    // KIP-360 resume with a stale epoch is fenced too.
    let err = first.reinit(&mut conn).await.unwrap_err();
    assert_eq!(err.broker_code(), Some(90), "{err}");

    // EndTxn with no open transaction: INVALID_TXN_STATE.
    let err = second.end(&mut conn, true).await.unwrap_err();
    assert_eq!(err.broker_code(), Some(48), "{err}");
    // Resume with the current epoch bumps it and restarts sequences.
    second.batch("out", 0, &[NewRecord::new("s")]).unwrap();
    let before = second.producer_epoch();
    second.reinit(&mut conn).await.unwrap();
    assert_eq!(second.producer_epoch(), before + 1);
    assert_eq!(second.next_sequence("out", 0), 0);
    conn.set_version(ApiKey::InitProducerId, 2).unwrap();
    let err = second.reinit(&mut conn).await.unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
    conn.unpin_version(ApiKey::InitProducerId);

    // Whole-request errors, exactly as answered.
    state.lock().unwrap().inject.extend([
        (ApiKey::EndTxn, 51),          // CONCURRENT_TRANSACTIONS
        (ApiKey::AddOffsetsToTxn, 16), // NOT_COORDINATOR
        (ApiKey::FindCoordinator, 14), // COORDINATOR_LOAD_IN_PROGRESS
        (ApiKey::InitProducerId, 51),
        (ApiKey::OffsetFetch, 16),
    ]);
    second
        .add_partitions(&mut conn, &[("out", 0)])
        .await
        .unwrap();
    let err = second.end(&mut conn, true).await.unwrap_err();
    assert_eq!(err.broker_code(), Some(51), "{err}");
    assert!(second.in_transaction());
    let err = second.add_offsets(&mut conn, "g").await.unwrap_err();
    assert_eq!(err.broker_code(), Some(16), "{err}");
    assert_eq!(second.transaction_groups().count(), 0);
    let err = conn.find_transaction_coordinator("tx").await.unwrap_err();
    assert_eq!(err.broker_code(), Some(14), "{err}");
    let err = TransactionalProducer::init(&mut conn, "tx", 1000)
        .await
        .unwrap_err();
    assert_eq!(err.broker_code(), Some(51), "{err}");
    let err = conn
        .fetch_offsets_detailed("g", "out", &[0], true)
        .await
        .unwrap_err();
    assert_eq!(err.broker_code(), Some(16), "{err}");
    assert!(!conn.is_broken());
    second.end(&mut conn, true).await.unwrap();
}

#[tokio::test]
async fn every_transaction_api_version_is_well_formed() {
    let (addr, state) = start(Mode::Normal, transactional_range()).await;
    let mut conn = Connection::connect(addr, config()).await.unwrap();
    conn.create_topic("out", 1, 1, &[]).await.unwrap();
    let mut producer = TransactionalProducer::init(&mut conn, "tx", 60_000)
        .await
        .unwrap();
    for version in 0..=3 {
        for api in [
            ApiKey::AddPartitionsToTxn,
            ApiKey::AddOffsetsToTxn,
            ApiKey::EndTxn,
            ApiKey::TxnOffsetCommit,
        ] {
            conn.set_version(api, version).unwrap();
        }
        conn.set_version(ApiKey::FindCoordinator, version.max(1))
            .unwrap();
        conn.find_transaction_coordinator("tx").await.unwrap();
        producer
            .add_partitions(&mut conn, &[("out", 0)])
            .await
            .unwrap();
        producer
            .produce(
                &mut conn,
                "out",
                0,
                &[NewRecord::new(format!("v{version}"))],
            )
            .await
            .unwrap();
        producer.add_offsets(&mut conn, "g").await.unwrap();
        let member = GroupMembership {
            member_id: "m".into(),
            generation: 1,
            group_instance_id: None,
        };
        let with_member = producer
            .commit_offsets(&mut conn, "g", &member, &[("in", 0, version.into())])
            .await;
        if version < 3 {
            assert!(
                matches!(with_member, Err(Error::UnsupportedVersion { .. })),
                "v{version}"
            );
            producer
                .commit_offsets(
                    &mut conn,
                    "g",
                    &GroupMembership::standalone(),
                    &[("in", 0, version.into())],
                )
                .await
                .unwrap();
        } else {
            with_member.unwrap();
        }
        producer.end(&mut conn, true).await.unwrap();
    }
    for version in 0..=4 {
        conn.set_version(ApiKey::InitProducerId, version).unwrap();
        let (_, epoch) = conn
            .init_transactional_producer_id("tx2", 1000, None)
            .await
            .unwrap();
        assert_eq!(epoch, version);
    }
    conn.set_version(ApiKey::OffsetFetch, 6).unwrap();
    let err = conn
        .fetch_offsets_detailed("g", "in", &[0], true)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
    let plain = conn
        .fetch_offsets_detailed("g", "in", &[0], false)
        .await
        .unwrap();
    assert_eq!((plain[0].offset, plain[0].error_code), (3, 0));
    let fetched = conn
        .fetch("out", 0, 0, &isolated(IsolationLevel::ReadCommitted))
        .await
        .unwrap();
    assert_eq!(text_values(&fetched.records), ["v0", "v1", "v2", "v3"]);
    let versions: Vec<(i16, i16)> = state.lock().unwrap().requests.clone();
    for key in [24, 25, 26, 28] {
        let used: Vec<i16> = versions
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect();
        assert!((0..=3).all(|v| used.contains(&v)), "api {key}: {used:?}");
    }
}

#[tokio::test]
async fn data_and_group_admin_requests_for_every_version() {
    let mut advertised = full_range();
    advertised.extend([
        (ApiKey::DeleteRecords, 0, 2),
        (ApiKey::DeleteGroups, 0, 2),
        (ApiKey::OffsetDelete, 0, 0),
    ]);
    let (addr, _state) = start(Mode::Normal, advertised).await;
    let mut conn = Connection::connect(addr, config()).await.unwrap();
    conn.create_topic("t", 1, 1, &[]).await.unwrap();
    for _ in 0..3 {
        conn.produce("t", 0, &[NewRecord::new("v")], &ProduceOptions::default())
            .await
            .unwrap();
    }
    for version in 0..=2 {
        conn.set_version(ApiKey::DeleteRecords, version).unwrap();
        assert_eq!(
            conn.delete_records("t", 0, 2).await.unwrap(),
            2,
            "v{version}"
        );
        assert_eq!(
            conn.delete_records("t", 0, -1).await.unwrap(),
            3,
            "v{version}"
        );
        let beyond = conn.delete_records("t", 0, 4).await.unwrap_err();
        assert!(
            beyond.is_broker_error(ResponseError::OffsetOutOfRange),
            "{beyond}"
        );
        conn.set_version(ApiKey::DeleteGroups, version).unwrap();
        assert_eq!(
            conn.delete_groups(&["idle", "busy", "missing"])
                .await
                .unwrap(),
            vec![
                ("idle".into(), 0),
                ("busy".into(), 68),
                ("missing".into(), 69)
            ],
            "v{version}"
        );
    }
    assert_eq!(
        conn.offset_delete("g", "watched", &[0, 1]).await.unwrap(),
        vec![(0, 86), (1, 86)]
    );
    assert_eq!(
        conn.offset_delete("g", "t", &[0]).await.unwrap(),
        vec![(0, 0)]
    );
    let missing = conn.offset_delete("missing", "t", &[0]).await.unwrap_err();
    assert!(
        missing.is_broker_error(ResponseError::GroupIdNotFound),
        "{missing}"
    );
}
