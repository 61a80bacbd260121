//! The data- and group-side admin APIs, driven by confluent-kafka's AdminClient
//! (`tests/clients/ck_admin_data.py`), kafkajs's admin (`tests/js/admin_data.js`) and, for
//! what neither offers (OffsetDelete, DescribeLogDirs), the project's client crate:
//! - ListOffsets by timestamp answers the first *record* at or after it, inside a batch
//!   whose records are out of order (plain and gzip), and the max timestamp answers the
//!   first record holding it;
//! - DeleteGroups deletes an empty group with its offsets (GROUP_ID_NOT_FOUND after,
//!   NON_EMPTY_GROUP while a member is in it); an OffsetCommit's leader epoch comes back
//!   from OffsetFetch;
//! - two consumers started together land in generation 1 (the initial rebalance delay);
//! - a deleted topic's committed offsets go with it (kafkajs's fetchOffsets after the topic
//!   is deleted and created again);
//! - DeleteRecords moves the log start offset: ListOffsets(earliest) reports it, a fetch
//!   below it is OFFSET_OUT_OF_RANGE, and it survives a restart, and on a 3-node cluster
//!   it reaches every replica, and survives its leader's death and return;
//! - OffsetDelete keeps the offsets of a topic a member subscribes to, deletes the others;
//! - DescribeLogDirs names the data directory and each partition's size.

use std::time::Duration;

use bytes::Bytes;
use myelin_client::{ClientConfig, Connection, NewRecord, ProduceOptions};
use myelin_tests::clients::{js_script, python_json, run_json};
use myelin_tests::node::{cluster_bootstrap, start_cluster};
use myelin_tests::{block_on, Node, NodeConfig};
use serde_json::{json, Value};

/// Runs `tests/js/admin_data.js` with `args`; returns its summary.
fn kafkajs(node: &Node, bootstrap: &str, args: &[&str]) -> Value {
    let mut command = js_script(node, "admin_data.js");
    command.args(["--bootstrap", bootstrap]).args(args);
    run_json(node, command)
}

/// What `ck_admin_data.py --steps timestamps,groups` must report, wherever it runs.
fn check_confluent_summary(summary: &Value) {
    // Records 0-4: timestamps 1000, 5000, 3000, 2000, 4000 (one batch); 5-7: 6000, 9000,
    // 7000 (one gzip batch). The first record at or after each timestamp, never the
    // batch's base offset.
    assert_eq!(
        summary["by_timestamp"],
        json!({
            "0": [0, 1000],
            "2500": [1, 5000],
            "4500": [1, 5000],
            "5500": [5, 6000],
            "6500": [6, 9000],
            "9000": [6, 9000],
            "9001": [-1, -1]
        }),
        "{summary}"
    );
    assert_eq!(summary["max_timestamp"], json!([6, 9000]), "{summary}");
    assert_eq!(summary["earliest"], json!(0), "{summary}");
    // Each answer's leader epoch is that of the batch it found (LATEST: the leader's
    // current epoch, at least the last record's), as Kafka answers; nothing found: -1.
    let record_epoch = |offset: &str| {
        summary["record_epochs"][offset]
            .as_i64()
            .unwrap_or_else(|| panic!("record {offset}: {summary}"))
    };
    let listed = &summary["listed_epochs"];
    assert_eq!(
        listed["earliest"],
        json!([0, record_epoch("0")]),
        "{summary}"
    );
    assert_eq!(listed["5500"], json!([5, record_epoch("5")]), "{summary}");
    assert_eq!(
        listed["max_timestamp"],
        json!([6, record_epoch("6")]),
        "{summary}"
    );
    // (librdkafka reads the epoch -1 as none.)
    assert_eq!(listed["9001"], json!([-1, null]), "{summary}");
    assert_eq!(listed["latest"][0], json!(8), "{summary}");
    assert!(
        listed["latest"][1].as_i64() >= Some(record_epoch("7")),
        "{summary}"
    );
    // The committed leader epoch is stored and returned.
    assert_eq!(summary["committed"], json!([4, 0]), "{summary}");
    assert_eq!(summary["deleted"], Value::Null, "{summary}");
    assert_eq!(
        summary["deleted_again"],
        json!("GROUP_ID_NOT_FOUND"),
        "{summary}"
    );
    // librdkafka's "no offset" (-1001): the offsets went with the group.
    assert_eq!(summary["committed_after"], json!(-1001), "{summary}");
    // Kafka answers a group's authorized operations when asked (with no authorizer: all
    // it supports for a group).
    assert_eq!(
        summary["described_group"],
        json!({"state": "STABLE", "members": 1,
               "authorized_operations": ["DELETE", "DESCRIBE", "READ"]}),
        "{summary}"
    );
    assert_eq!(summary["non_empty"], json!("NON_EMPTY_GROUP"), "{summary}");
    assert_eq!(summary["deleted_after_close"], Value::Null, "{summary}");
}

/// Fetches `topic`-0 from `offset` with the client crate.
fn fetch_at(addr: std::net::SocketAddr, topic: &str, offset: i64) -> myelin_client::Result<i64> {
    block_on(async {
        let mut connection = Connection::connect(addr, ClientConfig::default()).await?;
        let fetched = connection
            .fetch(topic, 0, offset, &myelin_client::FetchOptions::default())
            .await?;
        Ok(fetched.log_start_offset)
    })
}

#[test]
fn confluent_kafka_lists_offsets_by_record_timestamp_deletes_groups_and_records() {
    let mut node = Node::start("admin_data_confluent");
    let summary = python_json(
        &node,
        "ck_admin_data.py",
        &[
            "--topic",
            "stamps",
            "--steps",
            "timestamps,groups,delete-records",
            "--delete-before",
            "3",
        ],
    );
    check_confluent_summary(&summary);
    assert_eq!(summary["latest"], json!(8), "{summary}");
    assert_eq!(summary["low_watermark"], json!(3), "{summary}");
    assert_eq!(summary["earliest_after"], json!(3), "{summary}");
    let below = fetch_at(node.addr(), "stamps", 2);
    assert!(
        matches!(below, Err(myelin_client::Error::Broker { code: 1, .. })),
        "{below:?}"
    );
    assert_eq!(fetch_at(node.addr(), "stamps", 3).expect("fetch"), 3);
    // The new log start survives a crash and restart.
    node.kill();
    node.restart();
    let summary = python_json(
        &node,
        "ck_admin_data.py",
        &["--topic", "stamps", "--steps", "earliest"],
    );
    assert_eq!(summary["earliest_now"], json!(3), "{summary}");
}

/// Runs `ck_admin_data.py` against the cluster's running nodes.
fn confluent_on_cluster(nodes: &mut [Node], steps: &str) -> Value {
    let bootstrap = cluster_bootstrap(nodes);
    let running = nodes
        .iter_mut()
        .position(Node::is_running)
        .expect("a running node");
    let mut command = myelin_tests::clients::python_script(&nodes[running], "ck_admin_data.py");
    command.args([
        "--bootstrap",
        &bootstrap,
        "--topic",
        "stamps",
        "--replication-factor",
        "3",
        "--steps",
        steps,
    ]);
    run_json(&nodes[running], command)
}

/// The node id leading `topic`-0 (-1: none) and the brokers listed, as `node` answers.
fn leader_and_brokers(node: &Node, topic: &str) -> (i32, Vec<i32>) {
    block_on(async {
        let mut connection = Connection::connect(node.addr(), ClientConfig::default())
            .await
            .expect("connect");
        let metadata = connection.metadata(Some(&[topic])).await.expect("metadata");
        let leader = metadata
            .topic(topic)
            .and_then(|topic| topic.partition(0))
            .map(|partition| partition.leader_id)
            .expect("the topic's partition");
        let brokers = metadata
            .brokers
            .iter()
            .map(|broker| broker.node_id)
            .collect();
        (leader, brokers)
    })
}

/// Waits until every running node names the same leader of `topic`-0, other than `dead`
/// and among the brokers it lists; returns it.
fn wait_for_one_live_leader(nodes: &mut [Node], topic: &str, dead: Option<i32>) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let views: Vec<(i32, Vec<i32>)> = nodes
            .iter_mut()
            .filter_map(|node| node.is_running().then(|| leader_and_brokers(node, topic)))
            .collect();
        let leader = views[0].0;
        let agreed = views
            .iter()
            .all(|(named, brokers)| *named == leader && brokers.contains(&leader));
        if agreed && leader != -1 && Some(leader) != dead {
            return leader;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the nodes named no one live leader in 30 s: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn confluent_kafka_admin_on_a_three_node_cluster_and_deleted_records_outlive_their_leader() {
    let mut nodes = start_cluster("admin_data_confluent_cluster", 3);
    let summary = confluent_on_cluster(&mut nodes, "timestamps,groups,delete-records");
    check_confluent_summary(&summary);
    assert_eq!(summary["earliest_after"], json!(3), "{summary}");
    // DeleteRecords was answered once a majority persisted the new start, which travels in
    // the leader's appends (see node/src/kafka/delete_records.rs); every replica comes to
    // hold it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let persisted = |node: &Node| {
        std::fs::read_to_string(node.data_dir().join("topics/stamps-0/deleted-below.json"))
            .is_ok_and(|text| text.trim() == "3")
    };
    while !nodes.iter().all(persisted) {
        assert!(
            std::time::Instant::now() < deadline,
            "not every replica persisted the new start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The leader dies: the next one serves from the new start.
    let leader = wait_for_one_live_leader(&mut nodes, "stamps", None);
    let index = usize::try_from(leader - 1).expect("node ids start at 1");
    nodes[index].kill();
    wait_for_one_live_leader(&mut nodes, "stamps", Some(leader));
    let summary = confluent_on_cluster(&mut nodes, "earliest");
    assert_eq!(summary["earliest_now"], json!(3), "{summary}");
    // And so does the cluster once the old leader is back on its data dir, asked at once.
    // librdkafka may bootstrap on the restarted node: were that node to answer Metadata
    // before it heard from its peers, with itself as the only broker and no leader,
    // librdkafka (2.16) would drop the other brokers and keep "no leader" in its cache,
    // and its admin's ListOffsets would answer "No leaders found" for 30 s (3 of 18 runs
    // before the node held Metadata until it knows the cluster: "Knowing the cluster
    // before serving its view" in core/src/controller.rs).
    nodes[index].restart();
    let summary = confluent_on_cluster(&mut nodes, "earliest");
    assert_eq!(summary["earliest_now"], json!(3), "{summary}");
}

#[test]
fn kafkajs_admin_and_two_consumers_started_together_land_in_generation_one() {
    // A longer delay than Kafka's 3 s default, set by the flag: the two consumers' first
    // joins may lie apart on a loaded machine (each newcomer extends the delay anyway).
    let node = Node::start_with(
        "admin_data_kafkajs",
        NodeConfig {
            extra_args: vec!["--group-initial-rebalance-delay-ms".into(), "5000".into()],
            ..NodeConfig::default()
        },
    );
    let summary = kafkajs(
        &node,
        &node.bootstrap(),
        &[
            "--topic",
            "stamps-js",
            "--steps",
            "timestamps,together,delete-groups,delete-records,deleted-topic-offsets",
            "--delete-before",
            "3",
        ],
    );
    // Records 0-4 of partition 0: timestamps 1000, 5000, 3000, 2000, 4000, one batch.
    // Past every record kafkajs answers the high watermark.
    assert_eq!(
        summary["by_timestamp"],
        json!({"0": 0, "2500": 1, "4500": 1, "5001": 5}),
        "{summary}"
    );
    // Both joined within the initial delay: one rebalance, generation 1 for each.
    assert_eq!(
        summary["generations"],
        json!({"a": [1], "b": [1]}),
        "{summary}"
    );
    assert_eq!(
        summary["described"],
        json!({"state": "Stable", "members": 2}),
        "{summary}"
    );
    let assigned: usize = ["a", "b"]
        .iter()
        .map(|name| summary["assigned"][name].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(assigned, 4, "{summary}");
    assert_eq!(summary["deleted"], json!(0), "{summary}");
    assert_eq!(summary["deleted_unknown"], json!(69), "{summary}");
    assert_eq!(summary["earliest_after"], json!(3), "{summary}");
    // A deleted topic's committed offsets go with it: the topic created again has none.
    assert_eq!(summary["gone_offsets"], json!([1, -1]), "{summary}");
}

/// A consumer protocol `Subscription` (v0) of `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut bytes = vec![0, 0];
    bytes.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        bytes.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        bytes.extend_from_slice(topic.as_bytes());
    }
    bytes.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(bytes)
}

#[test]
fn offset_delete_spares_a_subscribed_topic_and_describe_log_dirs_sizes_partitions() {
    let node = Node::start("admin_data_client_crate");
    block_on(async {
        let mut connection = Connection::connect(node.addr(), ClientConfig::default())
            .await
            .expect("connect");
        for topic in ["watched", "other"] {
            connection
                .create_topic(topic, 1, 1, &[])
                .await
                .expect("create");
            connection
                .produce(
                    topic,
                    0,
                    &[NewRecord::new("x"), NewRecord::new("y")],
                    &ProduceOptions::default(),
                )
                .await
                .expect("produce");
        }
        let group = "offset-delete";
        // The first FindCoordinator creates the offsets topic: asked again until it is led.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match connection.find_coordinator(group).await {
                Ok(coordinator) => {
                    assert_eq!(coordinator.port, i32::from(node.addr().port()));
                    break;
                }
                Err(error) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "no coordinator in 30 s: {error}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A member subscribed to `watched` only, in a settled generation.
        let joined = connection
            .join_group(
                group,
                "",
                "consumer",
                &[("range", subscription(&["watched"]))],
                10_000,
                10_000,
            )
            .await
            .expect("join");
        let assignment = vec![(joined.member_id.clone(), Bytes::new())];
        connection
            .sync_group(
                group,
                &joined.member_id,
                joined.generation,
                &assignment,
                Duration::from_secs(10),
            )
            .await
            .expect("sync");
        for topic in ["watched", "other"] {
            connection
                .commit_offsets(
                    group,
                    &joined.member_id,
                    joined.generation,
                    topic,
                    &[(0, 2)],
                )
                .await
                .expect("commit");
        }
        let watched = connection
            .offset_delete(group, "watched", &[0])
            .await
            .expect("offset delete");
        assert_eq!(watched, vec![(0, 86)], "GROUP_SUBSCRIBED_TO_TOPIC");
        let other = connection
            .offset_delete(group, "other", &[0])
            .await
            .expect("offset delete");
        assert_eq!(other, vec![(0, 0)]);
        assert_eq!(
            connection
                .fetch_offsets(group, "watched", &[0])
                .await
                .expect("fetch"),
            vec![(0, 2)]
        );
        let mut connection2 = Connection::connect(node.addr(), ClientConfig::default())
            .await
            .expect("connect");
        assert_eq!(
            connection2
                .fetch_offsets(group, "other", &[0])
                .await
                .expect("fetch"),
            vec![(0, -1)]
        );
        let unknown = connection2
            .offset_delete("no-such-group", "other", &[0])
            .await;
        assert!(
            matches!(unknown, Err(myelin_client::Error::Broker { code: 69, .. })),
            "{unknown:?}"
        );

        let dirs = connection2.describe_log_dirs().await.expect("describe");
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        assert_eq!(dirs[0].log_dir, node.data_dir().display().to_string());
        assert!(
            dirs[0].total_bytes > 0 && dirs[0].usable_bytes >= 0,
            "{dirs:?}"
        );
        for topic in ["watched", "other"] {
            let partition = dirs[0]
                .partitions
                .iter()
                .find(|p| p.topic == topic && p.partition == 0)
                .unwrap_or_else(|| panic!("{topic}-0 missing: {dirs:?}"));
            assert!(partition.size_bytes > 0, "{partition:?}");
            assert_eq!((partition.offset_lag, partition.is_future), (0, false));
        }
    });
}
