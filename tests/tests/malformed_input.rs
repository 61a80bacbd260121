//! Malformed and unexpected input on a raw TCP connection must neither crash the node
//! nor damage its data.
//!
//! Each test starts a node, stores 30 messages in a 1-partition topic with confluent-kafka,
//! sends one kind of bad input, checks the broker's specific answer where the protocol
//! defines one, and then checks that the process is still alive and that a normal client
//! still reads every earlier record unchanged.

use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use myelin_tests::clients::{self, python_json};
use myelin_tests::records::{from_summary, log_view, Record};
use myelin_tests::wire::{
    decode_response, framed, raw_header_v1, record_batch, Conn, Reply, XorShift, BATCH_CRC_RANGE,
};
use myelin_tests::{Node, NodeConfig};

const SEED_TOPIC: &str = "seeded";
const SEED_MESSAGES: usize = 30;
/// How long the broker may take to close a connection it must reject.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const CORRUPT_MESSAGE: i16 = 2;
const UNSUPPORTED_VERSION: i16 = 35;

/// A node holding known data, to check after each bad input.
struct Seeded {
    node: Node,
    records: Vec<Record>,
}

impl Seeded {
    fn start(name: &str) -> Seeded {
        Seeded::start_with(name, NodeConfig::default())
    }

    fn start_with(name: &str, config: NodeConfig) -> Seeded {
        let node = Node::start_with(name, config);
        python_json(
            &node,
            "ck_produce.py",
            &[
                "--topic",
                SEED_TOPIC,
                "--messages",
                &SEED_MESSAGES.to_string(),
                "--create-partitions",
                "1",
            ],
        );
        let records = from_summary(&clients::ck_consume(&node, SEED_TOPIC), "records");
        assert_eq!(records.len(), SEED_MESSAGES, "seed records");
        Seeded { node, records }
    }

    /// The node is alive and a normal client reads exactly the seeded records.
    fn assert_still_serving(&mut self, after: &str) {
        self.node.assert_running(after);
        let now = from_summary(&clients::ck_consume(&self.node, SEED_TOPIC), "records");
        assert_eq!(
            log_view(&now),
            log_view(&self.records),
            "after {after}: the earlier records must be served unchanged"
        );
    }

    fn conn(&self) -> Conn {
        Conn::connect(self.node.addr())
    }
}

fn topic_name(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

#[test]
fn random_bytes_do_not_crash_the_node() {
    let mut seeded = Seeded::start("malformed_random_bytes");
    let mut rng = XorShift::new(0x0bad_c0de);
    for _ in 0..20 {
        let mut conn = seeded.conn();
        let len = 1 + rng.below(16 * 1024) as usize;
        // The broker may close the connection while we are still writing.
        let _ = conn.send(&rng.bytes(len));
        conn.shutdown_write();
        let _ = conn.read_reply(Duration::from_millis(500));
    }
    seeded.assert_still_serving("random byte streams");
}

#[test]
fn random_frames_with_real_api_keys_do_not_crash_the_node() {
    let mut seeded = Seeded::start("malformed_random_frames");
    let mut rng = XorShift::new(0xf00d_f00d);
    let keys = [
        0i16, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18, 19, 22, 24, 25, 26, 28, 32, 61, 65, 66,
    ];
    for correlation_id in 0..60 {
        let api_key = keys[rng.below(keys.len() as u64) as usize];
        let version = rng.below(14) as i16;
        let mut payload = raw_header_v1(api_key, version, correlation_id);
        let body_len = rng.below(300) as usize;
        payload.extend(rng.bytes(body_len));
        let mut conn = seeded.conn();
        let _ = conn.send(&framed(&payload));
        conn.shutdown_write();
        let _ = conn.read_reply(Duration::from_millis(300));
    }
    seeded.assert_still_serving("random request bodies");
}

#[test]
fn frame_length_of_2_gib_is_rejected_without_waiting_for_the_body() {
    let mut seeded = Seeded::start("malformed_2gib_frame");
    let mut conn = seeded.conn();
    conn.send(&0x7fff_ffffu32.to_be_bytes())
        .expect("send the length prefix");
    let _ = conn.send(b"\x00\x03\x00\x04");
    assert!(
        conn.closed_within(CLOSE_TIMEOUT),
        "the broker must close a connection announcing a 2 GiB frame, not wait for it"
    );
    seeded.assert_still_serving("a 2 GiB frame length");
}

#[test]
fn negative_frame_length_is_rejected() {
    let mut seeded = Seeded::start("malformed_negative_frame");
    let mut conn = seeded.conn();
    conn.send(&0xffff_ffffu32.to_be_bytes())
        .expect("send the length prefix");
    assert!(
        conn.closed_within(CLOSE_TIMEOUT),
        "the broker must close a connection announcing a negative frame length"
    );
    seeded.assert_still_serving("a negative frame length");
}

#[test]
fn truncated_frame_then_close_leaves_the_node_serving() {
    let mut seeded = Seeded::start("malformed_truncated_frame");
    for _ in 0..3 {
        let mut conn = seeded.conn();
        let mut partial = 100u32.to_be_bytes().to_vec();
        partial.extend(&raw_header_v1(3, 4, 7)[..6]);
        conn.send(&partial).expect("send a partial frame");
        drop(conn);
    }
    seeded.assert_still_serving("truncated frames");
}

#[test]
fn produce_with_a_bad_crc_gets_corrupt_message_and_leaves_the_log_untouched() {
    let mut seeded = Seeded::start("malformed_bad_crc");
    let produce = |records: bytes::Bytes| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(SEED_TOPIC))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])])
    };
    let good = record_batch(&[("raw-key", "raw-value-1"), ("raw-key", "raw-value-2")]);
    let mut bad = good.clone();
    bad[BATCH_CRC_RANGE.start] ^= 0xff;

    let mut conn = seeded.conn();
    let response: ProduceResponse = conn.call(ApiKey::Produce, 7, 1, &produce(bad.freeze()));
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(
        partition.error_code, CORRUPT_MESSAGE,
        "a batch with a wrong CRC must get CORRUPT_MESSAGE: {partition:?}"
    );
    seeded.assert_still_serving("a produce with a bad CRC");

    // Control: the same batch with its CRC intact is accepted at the next offset, so the
    // rejection above was about the CRC and nothing else.
    let mut conn = seeded.conn();
    let response: ProduceResponse = conn.call(ApiKey::Produce, 7, 2, &produce(good.freeze()));
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "the intact batch: {partition:?}");
    assert_eq!(partition.base_offset, SEED_MESSAGES as i64);
    let now = from_summary(&clients::ck_consume(&seeded.node, SEED_TOPIC), "records");
    assert_eq!(
        log_view(&now[..SEED_MESSAGES]),
        log_view(&seeded.records),
        "earlier records unchanged"
    );
    let appended: Vec<Option<&str>> = now[SEED_MESSAGES..]
        .iter()
        .map(|r| r.value.as_deref())
        .collect();
    assert_eq!(appended, [Some("raw-value-1"), Some("raw-value-2")]);
}

#[test]
fn unknown_api_key_does_not_crash_the_node() {
    let mut seeded = Seeded::start("malformed_unknown_api_key");
    let mut conn = seeded.conn();
    conn.send(&framed(&raw_header_v1(9999, 0, 42)))
        .expect("send the request");
    conn.shutdown_write();
    if let Reply::Frame(frame) = conn.read_reply(CLOSE_TIMEOUT) {
        assert!(
            frame.len() >= 4 && frame[..4] == 42i32.to_be_bytes(),
            "a response to an unknown api key must carry its correlation id"
        );
    }
    seeded.assert_still_serving("an unknown api key");
}

#[test]
fn unknown_metadata_version_does_not_crash_the_node() {
    let mut seeded = Seeded::start("malformed_unknown_version");
    let mut conn = seeded.conn();
    conn.send(&framed(&raw_header_v1(ApiKey::Metadata as i16, 99, 43)))
        .expect("send the request");
    conn.shutdown_write();
    if let Reply::Frame(frame) = conn.read_reply(CLOSE_TIMEOUT) {
        assert!(
            frame.len() >= 4 && frame[..4] == 43i32.to_be_bytes(),
            "a response to Metadata v99 must carry its correlation id"
        );
    }
    seeded.assert_still_serving("Metadata v99");
}

#[test]
fn api_versions_with_an_unknown_version_gets_unsupported_version_and_the_key_list() {
    let mut seeded = Seeded::start("malformed_api_versions_v99");
    let mut conn = seeded.conn();
    conn.send(&framed(&raw_header_v1(ApiKey::ApiVersions as i16, 99, 44)))
        .expect("send the request");
    let frame = match conn.read_reply(CLOSE_TIMEOUT) {
        Reply::Frame(frame) => frame,
        other => panic!("ApiVersions v99 must be answered (in the v0 format): {other:?}"),
    };
    // The answer to an unknown ApiVersions version uses response header v0 and body v0.
    let response: ApiVersionsResponse = decode_response(ApiKey::ApiVersions, 0, 44, frame);
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    assert!(
        response
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::ApiVersions as i16),
        "the error response must still list the supported api keys: {response:?}"
    );
    seeded.assert_still_serving("ApiVersions v99");
}

#[test]
fn missing_topic_with_auto_create_off_is_unknown_topic_or_partition() {
    let mut seeded = Seeded::start_with(
        "malformed_missing_topic",
        NodeConfig {
            auto_create_topics: Some(false),
            ..NodeConfig::default()
        },
    );
    let missing = topic_name("no-such-topic");
    let metadata_request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(missing.clone()))
        ]))
        .with_allow_auto_topic_creation(true);
    let mut conn = seeded.conn();

    let metadata: MetadataResponse = conn.call(ApiKey::Metadata, 4, 1, &metadata_request);
    assert_eq!(metadata.topics.len(), 1, "{metadata:?}");
    assert_eq!(
        metadata.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "Metadata for a missing topic with auto-create off: {metadata:?}"
    );

    let fetch_request = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(missing.clone())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let fetch: FetchResponse = conn.call(ApiKey::Fetch, 11, 2, &fetch_request);
    let error = fetch
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code);
    assert_eq!(
        error,
        Some(UNKNOWN_TOPIC_OR_PARTITION),
        "Fetch from a missing topic with auto-create off: {fetch:?}"
    );

    // Neither request may have created the topic.
    let again: MetadataResponse = conn.call(ApiKey::Metadata, 4, 3, &metadata_request);
    assert_eq!(
        again.topics.first().map(|t| t.error_code),
        Some(UNKNOWN_TOPIC_OR_PARTITION),
        "the topic must still not exist: {again:?}"
    );
    seeded.assert_still_serving("requests for a missing topic");
}
