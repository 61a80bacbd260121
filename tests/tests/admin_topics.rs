//! The topic admin APIs as Kafka's admin clients use them: CreatePartitions,
//! IncrementalAlterConfigs, AlterConfigs, DescribeConfigs, CreateTopics with a replica
//! assignment, DescribeCluster and authorized operations, driven by confluent-kafka's
//! AdminClient (`tests/clients/ck_admin_topics.py`) and kafkajs's admin
//! (`tests/js/admin_topics.js`) against one node and a 3-node cluster; and that changed
//! configs take effect on the partitions already hosted (max.message.bytes in the scripts;
//! retention.ms, compression.type and min.insync.replicas here, through the project's
//! client crate, whose admin functions are exercised on the way).

use std::time::Duration;

use bytes::Bytes;
use myelin_client::{
    ClientConfig, Compression, Connection, FetchOptions, NewRecord, ProduceOptions,
    EARLIEST_TIMESTAMP,
};
use myelin_tests::clients::{self, python_json, run_json};
use myelin_tests::node::{cluster_bootstrap, cluster_diagnostics, start_cluster};
use myelin_tests::Node;
use serde_json::{json, Value};

const WAIT_LIMIT: Duration = Duration::from_secs(30);
/// Kafka's NOT_ENOUGH_REPLICAS.
const NOT_ENOUGH_REPLICAS: i16 = 19;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn connect(address: &str) -> Connection {
    Connection::connect(address, ClientConfig::default())
        .await
        .unwrap_or_else(|error| panic!("connect to {address}: {error}"))
}

/// Waits until every node of the cluster lists all of them and knows the cluster id: the
/// cluster has formed (a controller, every node registered).
fn wait_for_cluster(addresses: &[String]) {
    runtime().block_on(async {
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        for address in addresses {
            loop {
                let mut conn = connect(address).await;
                let formed = conn.describe_cluster().await.is_ok_and(|cluster| {
                    !cluster.cluster_id.is_empty() && cluster.brokers.len() == addresses.len()
                });
                if formed {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the cluster did not form"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
}

/// What the confluent-kafka script reports on any cluster: the checks shared by both sizes.
fn check_confluent_kafka_summary(summary: &Value, replication_factor: usize) {
    let field = |name: &str| &summary[name];
    assert_eq!(field("create"), "OK", "{summary}");
    assert_eq!(field("grow_validate_only"), "OK");
    assert_eq!(
        field("partitions_after_validate_only"),
        2,
        "validate_only changes nothing"
    );
    assert_eq!(field("grow"), "OK");
    assert_eq!(field("shrink"), "INVALID_PARTITIONS");
    let partitions = field("partitions").as_object().expect("partitions");
    assert_eq!(partitions.len(), 4);
    for partition in partitions.values() {
        assert_eq!(
            partition["replicas"].as_array().map(Vec::len),
            Some(replication_factor),
            "{partition}"
        );
    }
    assert_eq!(field("produce_new_partition")["outcome"], "OK");
    assert_eq!(field("read_new_partition"), &json!(["into-partition-3"]));

    assert_eq!(field("incremental_set"), "OK");
    let configs = field("configs_after_incremental");
    assert_eq!(configs["max.message.bytes"]["value"], "2000");
    assert_eq!(
        configs["max.message.bytes"]["source"],
        "DYNAMIC_TOPIC_CONFIG"
    );
    assert_eq!(configs["max.message.bytes"]["is_default"], false);
    // librdkafka asks for synonyms: the topic's value, then the broker setting it falls
    // back to, as Kafka names them.
    assert_eq!(
        configs["max.message.bytes"]["synonyms"],
        json!([
            ["max.message.bytes", "2000", "DYNAMIC_TOPIC_CONFIG"],
            ["message.max.bytes", "1048588", "DEFAULT_CONFIG"]
        ])
    );
    assert_eq!(
        configs["segment.bytes"]["synonyms"],
        json!([["log.segment.bytes", "1073741824", "DEFAULT_CONFIG"]])
    );
    assert_eq!(configs["retention.ms"]["value"], "3600000");
    assert_eq!(configs["segment.bytes"]["source"], "DEFAULT_CONFIG");
    assert_eq!(configs["segment.bytes"]["is_default"], true);
    assert_eq!(configs["min.insync.replicas"]["value"], "1");
    assert_eq!(configs["compression.type"]["value"], "producer");
    assert_eq!(
        field("produce_too_large")["outcome"],
        "MSG_SIZE_TOO_LARGE",
        "max.message.bytes lowered to 2000 refuses a 5000-byte record"
    );
    assert_eq!(field("append_to_non_list"), "INVALID_CONFIG");
    assert_eq!(field("unknown_key"), "INVALID_CONFIG");
    assert_eq!(field("broker_resource"), "INVALID_REQUEST");

    assert_eq!(field("alter_whole"), "OK");
    let configs = field("configs_after_alter");
    assert_eq!(configs["retention.ms"]["value"], "7200000");
    assert_eq!(
        configs["max.message.bytes"]["is_default"], true,
        "AlterConfigs replaces the whole config: keys not given go back to defaults"
    );
    assert_eq!(configs["max.message.bytes"]["value"], "1048588");

    assert_eq!(field("create_placed"), "OK");
    assert_eq!(field("create_unknown_node"), "INVALID_REPLICA_ASSIGNMENT");
    for call in ["create_twice", "grow_twice", "delete_twice"] {
        assert_eq!(field(call), "INVALID_REQUEST", "{call}: {summary}");
    }
    assert_eq!(
        field("after_twice"),
        &json!({"created": false, "partitions": 4, "deleted": false}),
        "a topic named twice is left alone"
    );

    let cluster = field("cluster");
    assert!(cluster["cluster_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("myelin-")));
    assert!(cluster["controller"].as_i64().is_some_and(|id| id >= 1));
    assert_eq!(
        cluster["authorized_operations"],
        json!([
            "ALTER",
            "ALTER_CONFIGS",
            "CLUSTER_ACTION",
            "CREATE",
            "DESCRIBE",
            "DESCRIBE_CONFIGS",
            "IDEMPOTENT_WRITE"
        ])
    );
    assert_eq!(
        field("topic_authorized_operations"),
        &json!([
            "ALTER",
            "ALTER_CONFIGS",
            "CREATE",
            "DELETE",
            "DESCRIBE",
            "DESCRIBE_CONFIGS",
            "READ",
            "WRITE"
        ])
    );
    assert_eq!(field("described_partitions"), 4);
    let broker = field("broker_configs");
    assert_eq!(
        broker.as_object().map(|configs| configs.len()),
        Some(7),
        "{broker}"
    );
    assert_eq!(
        broker["message.max.bytes"],
        json!({"value": "1048588", "source": "DEFAULT_CONFIG", "read_only": true})
    );
    assert_eq!(broker["log.segment.bytes"]["value"], "1073741824");
}

fn check_kafkajs_summary(summary: &Value, assignment: &Value, nodes: &[i64]) {
    assert_eq!(summary["create"], "OK", "{summary}");
    assert_eq!(summary["grow"], "OK");
    assert_eq!(summary["shrink"], "INVALID_PARTITIONS");
    assert_eq!(summary["partitions"].as_object().map(|p| p.len()), Some(3));
    assert_eq!(summary["alter"], "OK");
    assert_eq!(summary["configs"]["retention.ms"]["value"], "5400000");
    assert_eq!(summary["configs"]["retention.ms"]["isDefault"], false);
    assert_eq!(summary["configs"]["max.message.bytes"]["isDefault"], true);
    assert_eq!(summary["create_placed"], "OK");
    for (partition, replicas) in assignment
        .as_array()
        .expect("assignment")
        .iter()
        .enumerate()
    {
        assert_eq!(
            &summary["placed_partitions"][partition.to_string()]["replicas"],
            replicas
        );
    }
    assert_eq!(summary["cluster"]["brokers"], json!(nodes));
    assert!(summary["cluster"]["clusterId"].is_string());
}

#[test]
fn admin_clients_drive_topic_admin_on_one_node() {
    let node = Node::start("admin_topics_one_node");
    let assignment = json!([[1], [1]]);
    let summary = python_json(
        &node,
        "ck_admin_topics.py",
        &[
            "--topic",
            "ck-admin",
            "--assignment",
            &assignment.to_string(),
            "--unknown-node",
            "7",
        ],
    );
    check_confluent_kafka_summary(&summary, 1);
    assert_eq!(summary["placed_partitions"]["1"]["replicas"], json!([1]));
    assert_eq!(summary["cluster"]["nodes"], json!([1]));

    let mut command = clients::js_script(&node, "admin_topics.js");
    command.args([
        "--topic",
        "js-admin",
        "--assignment",
        &assignment.to_string(),
    ]);
    let summary = run_json(&node, command);
    check_kafkajs_summary(&summary, &assignment, &[1]);
}

#[test]
fn admin_clients_drive_topic_admin_on_three_nodes() {
    let mut nodes = start_cluster("admin_topics_cluster", 3);
    let bootstrap = cluster_bootstrap(&mut nodes);
    wait_for_cluster(&nodes.iter().map(Node::bootstrap).collect::<Vec<_>>());
    let assignment = json!([[1, 2], [2, 3], [3, 1]]);
    let mut command = clients::python_script(&nodes[0], "ck_admin_topics.py");
    command.args([
        "--bootstrap",
        &bootstrap,
        "--topic",
        "ck-admin",
        "--replication-factor",
        "3",
        "--assignment",
        &assignment.to_string(),
        "--unknown-node",
        "9",
    ]);
    let summary = run_json(&nodes[0], command);
    check_confluent_kafka_summary(&summary, 3);
    for (partition, replicas) in assignment
        .as_array()
        .expect("assignment")
        .iter()
        .enumerate()
    {
        assert_eq!(
            &summary["placed_partitions"][partition.to_string()]["replicas"],
            replicas,
            "Metadata shows the assigned replicas"
        );
    }
    assert_eq!(summary["cluster"]["nodes"], json!([1, 2, 3]));

    let mut command = clients::js_script(&nodes[1], "admin_topics.js");
    command.args([
        "--bootstrap",
        &bootstrap,
        "--topic",
        "js-admin",
        "--replication-factor",
        "3",
        "--assignment",
        &assignment.to_string(),
    ]);
    let summary = run_json(&nodes[1], command);
    check_kafkajs_summary(&summary, &assignment, &[1, 2, 3]);
}

/// `retention.ms` lowered on a topic of several small segments: the next retention pass
/// deletes the old ones (the log start moves past 0).
#[test]
fn lowered_retention_deletes_old_segments() {
    let node = Node::start("admin_topics_retention");
    runtime().block_on(async {
        let mut conn = connect(&node.bootstrap()).await;
        conn.create_topic("short", 1, 1, &[("segment.bytes", "1024")])
            .await
            .expect("create");
        let value = Bytes::from(vec![b'r'; 300]);
        for _ in 0..12 {
            conn.produce(
                "short",
                0,
                &[NewRecord::new(value.clone())],
                &ProduceOptions::default(),
            )
            .await
            .expect("produce");
        }
        assert_eq!(
            conn.list_offsets("short", 0, EARLIEST_TIMESTAMP)
                .await
                .expect("earliest"),
            0,
            "the default retention keeps everything"
        );
        conn.alter_topic_configs("short", &[("retention.ms", Some("1"))])
            .await
            .expect("alter");
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        loop {
            let start = conn
                .list_offsets("short", 0, EARLIEST_TIMESTAMP)
                .await
                .expect("earliest");
            if start > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "retention.ms=1 deleted no segment\n{}",
                node.diagnostics()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Back to the default: the key reads as a default again.
        conn.alter_topic_configs("short", &[("retention.ms", None)])
            .await
            .expect("delete the key");
        let configs = conn
            .describe_topic_configs("short")
            .await
            .expect("describe");
        let retention = configs
            .iter()
            .find(|entry| entry.name == "retention.ms")
            .expect("retention.ms");
        assert!(retention.is_default, "{retention:?}");
        let segment = configs
            .iter()
            .find(|e| e.name == "segment.bytes")
            .expect("segment");
        assert_eq!(
            (segment.value.as_deref(), segment.is_default),
            (Some("1024"), false)
        );
    });
}

/// `compression.type=gzip`: a batch produced uncompressed is stored, and fetched, gzip
/// compressed, its records intact.
#[test]
fn compression_type_recompresses_produced_batches() {
    let node = Node::start("admin_topics_compression");
    runtime().block_on(async {
        let mut conn = connect(&node.bootstrap()).await;
        conn.create_topic("squeezed", 1, 1, &[])
            .await
            .expect("create");
        conn.alter_topic_configs("squeezed", &[("compression.type", Some("gzip"))])
            .await
            .expect("alter");
        let records: Vec<NewRecord> = (0..5)
            .map(|index| {
                NewRecord::kv(format!("k{index}"), format!("value {index} ").repeat(50))
                    .with_header("h", Some(Bytes::from(format!("{index}"))))
                    .with_timestamp(1_700_000_000_000 + index)
            })
            .collect();
        let options = ProduceOptions {
            compression: Compression::None,
            ..ProduceOptions::default()
        };
        let base = conn
            .produce("squeezed", 0, &records, &options)
            .await
            .expect("produce");
        let fetched = conn
            .fetch("squeezed", 0, base, &FetchOptions::default())
            .await
            .expect("fetch");
        assert_eq!(fetched.batches.len(), 1);
        assert_eq!(fetched.batches[0].compression(), Some(Compression::Gzip));
        assert_eq!(fetched.records.len(), records.len());
        for (got, sent) in fetched.records.iter().zip(&records) {
            assert_eq!(got.key, sent.key);
            assert_eq!(got.value, sent.value);
            assert_eq!(got.timestamp, sent.timestamp.expect("set"));
            assert_eq!(got.headers, sent.headers);
        }
        // Back to `producer`: batches are stored as sent.
        conn.alter_topic_configs("squeezed", &[("compression.type", None)])
            .await
            .expect("alter back");
        let next = conn
            .produce("squeezed", 0, &records, &options)
            .await
            .expect("produce");
        let fetched = conn
            .fetch("squeezed", 0, next, &FetchOptions::default())
            .await
            .expect("fetch");
        assert_eq!(fetched.batches[0].compression(), Some(Compression::None));
    });
}

/// `min.insync.replicas=3` with one node of three stopped: acks=all is refused with
/// NOT_ENOUGH_REPLICAS and appends nothing, acks=1 is accepted. Also the client crate's
/// DescribeCluster, CreatePartitions and assignment functions on a cluster.
#[test]
fn min_insync_replicas_refuses_acks_all_with_a_node_down() {
    let mut nodes = start_cluster("admin_topics_min_isr", 3);
    let addresses: Vec<String> = nodes.iter().map(Node::bootstrap).collect();
    wait_for_cluster(&addresses);
    let leader = runtime().block_on(async {
        let mut conn = connect(&addresses[0]).await;
        let cluster = conn.describe_cluster().await.expect("describe cluster");
        assert_eq!(cluster.brokers.len(), 3, "{cluster:?}");
        assert!(cluster.authorized_operations > 0);
        conn.create_topic_with_assignment(
            "guarded",
            &[vec![1, 2, 3]],
            &[("min.insync.replicas", "3")],
        )
        .await
        .expect("create");
        conn.create_partitions("guarded", 2).await.expect("grow");
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        loop {
            let metadata = conn.metadata(Some(&["guarded"])).await.expect("metadata");
            let topic = metadata.topic("guarded").expect("listed");
            if let Some(partition) = topic.partition(0).filter(|p| p.leader_id > 0) {
                assert_eq!(partition.replicas, vec![1, 2, 3]);
                assert_eq!(topic.partitions.len(), 2);
                return partition.leader_id;
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let stopped = if leader == 3 { 2 } else { 3 };
    nodes[stopped - 1].stop();
    let leader_address = addresses[leader as usize - 1].clone();
    runtime().block_on(async {
        let mut conn = connect(&leader_address).await;
        let record = [NewRecord::kv("k", "v")];
        let all = ProduceOptions::default();
        let one = ProduceOptions {
            acks: 1,
            ..ProduceOptions::default()
        };
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        // The leader counts the stopped node out of sync once it has not heard from it for
        // an election timeout; until then acks=all may still succeed.
        loop {
            match conn.produce("guarded", 0, &record, &all).await {
                Err(error) if error.broker_code() == Some(NOT_ENOUGH_REPLICAS) => break,
                Ok(_) => {}
                Err(error) => panic!("acks=all: {error}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "acks=all never refused\n{}",
                cluster_diagnostics(&nodes)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let end = conn.list_offsets("guarded", 0, -1).await.expect("latest");
        let refused = conn.produce("guarded", 0, &record, &all).await;
        assert_eq!(
            refused.map_err(|e| e.broker_code()),
            Err(Some(NOT_ENOUGH_REPLICAS))
        );
        let base = conn
            .produce("guarded", 0, &record, &one)
            .await
            .expect("acks=1");
        assert_eq!(base, end, "the refused produce appended nothing");
        // The leader's Metadata reports the in-sync replicas it checked against.
        let metadata = conn.metadata(Some(&["guarded"])).await.expect("metadata");
        let partition = metadata
            .topic("guarded")
            .and_then(|topic| topic.partition(0))
            .expect("partition 0")
            .clone();
        assert_eq!(partition.isr.len(), 2, "{partition:?}");
        assert!(!partition.isr.contains(&(stopped as i32)), "{partition:?}");
    });
}

/// Metadata's authorized operations as Kafka answers them without an authorizer: every
/// operation of the resource type when asked (topics from v8, the cluster in v8-10), and
/// Kafka's "not requested" value otherwise.
#[test]
fn metadata_reports_authorized_operations_only_when_asked() {
    use myelin_client::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use myelin_client::kafka_protocol::messages::{MetadataRequest, TopicName};
    use myelin_client::kafka_protocol::protocol::StrBytes;

    const NOT_REQUESTED: i32 = i32::MIN;
    // READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
    const TOPIC_OPERATIONS: i32 = 3576;
    // CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
    // IDEMPOTENT_WRITE.
    const CLUSTER_OPERATIONS: i32 = 8096;
    let node = Node::start("admin_topics_authorized_operations");
    runtime().block_on(async {
        let mut conn = connect(&node.bootstrap()).await;
        conn.create_topic("described", 1, 1, &[])
            .await
            .expect("create");
        let request = |asked: bool| {
            MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("described"))))]))
                .with_allow_auto_topic_creation(false)
                .with_include_cluster_authorized_operations(asked)
                .with_include_topic_authorized_operations(asked)
        };
        for version in [8, 10] {
            let asked = conn.send(&request(true), version).await.expect("metadata");
            assert_eq!(asked.cluster_authorized_operations, CLUSTER_OPERATIONS);
            assert_eq!(
                asked.topics[0].topic_authorized_operations,
                TOPIC_OPERATIONS
            );
            let not_asked = conn.send(&request(false), version).await.expect("metadata");
            assert_eq!(not_asked.cluster_authorized_operations, NOT_REQUESTED);
            assert_eq!(
                not_asked.topics[0].topic_authorized_operations,
                NOT_REQUESTED
            );
        }
        let topics_only = request(false).with_include_topic_authorized_operations(true);
        let asked = conn.send(&topics_only, 12).await.expect("metadata v12");
        assert_eq!(
            asked.topics[0].topic_authorized_operations,
            TOPIC_OPERATIONS
        );
    });
}
