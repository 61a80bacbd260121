//! A three-node cluster loses no acknowledged write when a partition's leader is killed -9.
//!
//! Three `myelin node` processes form one cluster on loopback. A topic with 3 partitions
//! and replication factor 3 is created through confluent-kafka's AdminClient; an idempotent
//! confluent-kafka producer (acks=all) streams numbered messages and prints every delivery
//! report. Mid-stream the leader of partition 0 is killed with SIGKILL. The test shows:
//! - producing resumes: partition 0 keeps acknowledging messages after the kill (a new
//!   leader was elected and the client followed it);
//! - every acknowledged message is read back from the survivors exactly once, at the
//!   partition and offset it was acknowledged at, and each partition holds the producer's
//!   messages in the order it sent them (idempotence: retries neither duplicate nor reorder);
//! - the killed node restarts on its data directory and catches up: its log of every
//!   partition becomes batch-for-batch equal to the other nodes'.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use myelin_tests::clients::{self, StreamingClient};
use myelin_tests::node::{cluster_bootstrap, cluster_diagnostics, start_cluster, stored_batches};
use myelin_tests::records::{by_partition, from_summary};
use myelin_tests::Node;
use serde_json::Value;

const TOPIC: &str = "failover";
const PARTITIONS: i32 = 3;
const ACKS_BEFORE_KILL: usize = 500;
const ACKS_AFTER_KILL_ON_PARTITION_0: usize = 200;
const WAIT_LIMIT: Duration = Duration::from_secs(45);

/// A client script run against the given bootstrap list (the last `--bootstrap` wins).
fn script_at(node: &Node, bootstrap: &str, script: &str, args: &[&str]) -> Command {
    let mut command = clients::python_script(node, script);
    command.args(args).arg("--bootstrap").arg(bootstrap);
    command
}

/// The acknowledged messages among a producer's lines: (partition, offset, value).
fn acknowledged(lines: &[String]) -> Vec<(i32, i64, String)> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| {
            Some((
                i32::try_from(v["partition"].as_i64()?).ok()?,
                v["offset"].as_i64()?,
                v["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Each partition's leader as the cluster's metadata names it.
fn leaders(nodes: &mut [Node]) -> BTreeMap<i32, i32> {
    let bootstrap = cluster_bootstrap(nodes);
    let index = (0..nodes.len())
        .find(|index| nodes[*index].is_running())
        .expect("a running node");
    let running = &nodes[index];
    let command = script_at(running, &bootstrap, "ck_leaders.py", &["--topic", TOPIC]);
    let summary = clients::run_json(running, command);
    summary["leaders"]
        .as_object()
        .expect("a leaders object")
        .iter()
        .map(|(partition, leader)| {
            (
                partition.parse().expect("a partition number"),
                leader.as_i64().expect("a leader id") as i32,
            )
        })
        .collect()
}

/// Every batch of a partition on a node's disk: (base offset, last offset, leader epoch,
/// size, producer id, first sequence), in log order.
fn batch_summaries(data_dir: &Path, partition: i32) -> Vec<(i64, i64, i32, u32, i64, i32)> {
    stored_batches(data_dir, TOPIC, partition)
        .0
        .iter()
        .map(|header| {
            (
                header.base_offset,
                header.base_offset + i64::from(header.last_offset_delta),
                header.partition_leader_epoch,
                header.size_bytes,
                header.producer_id,
                header.base_sequence,
            )
        })
        .collect()
}

#[test]
fn killing_a_partition_leader_loses_no_acknowledged_write_and_the_node_catches_up() {
    let mut nodes = start_cluster("cluster_failover", 3);
    let bootstrap = cluster_bootstrap(&mut nodes);
    let partitions = PARTITIONS.to_string();
    clients::run_json(
        &nodes[0],
        script_at(
            &nodes[0],
            &bootstrap,
            "ck_create_topic.py",
            &[
                "--topic",
                TOPIC,
                "--partitions",
                &partitions,
                "--replication-factor",
                "3",
            ],
        ),
    );

    let mut stream = script_at(&nodes[0], &bootstrap, "ck_produce_stream.py", &[]);
    stream.args([
        "--topic",
        TOPIC,
        "--duration",
        "120",
        "--rate",
        "2000",
        "--idempotence",
        "--message-timeout-ms",
        "60000",
    ]);
    let mut producer = StreamingClient::spawn(stream);
    let started = Instant::now();
    while acknowledged(&producer.lines()).len() < ACKS_BEFORE_KILL {
        if producer.has_exited() || started.elapsed() > WAIT_LIMIT {
            let (lines, stderr) = producer.kill();
            panic!(
                "too few acks before the kill:\n{}\n{stderr}\n{}",
                lines.join("\n"),
                cluster_diagnostics(&nodes)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }

    // Kill -9 the leader of partition 0 (asking again while an election is in flight).
    let asked = Instant::now();
    let mut leader = leaders(&mut nodes).get(&0).copied().unwrap_or(-1);
    while leader < 1 && asked.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(200));
        leader = leaders(&mut nodes).get(&0).copied().unwrap_or(-1);
    }
    assert!(
        leader >= 1,
        "partition 0 has no leader before the kill\n{}",
        cluster_diagnostics(&nodes)
    );
    let victim = (leader - 1) as usize;
    let lines_at_kill = producer.lines().len();
    nodes[victim].kill();
    eprintln!("cluster test: killed node {leader}, the leader of partition 0, after {lines_at_kill} lines");

    // Producing resumes: partition 0 acknowledges again, through its new leader.
    let killed_at = Instant::now();
    loop {
        let lines = producer.lines();
        let resumed = acknowledged(&lines[lines_at_kill.min(lines.len())..])
            .iter()
            .filter(|(partition, _, _)| *partition == 0)
            .count();
        if resumed >= ACKS_AFTER_KILL_ON_PARTITION_0 {
            eprintln!(
                "cluster test: partition 0 resumed after {:?}",
                killed_at.elapsed()
            );
            break;
        }
        if producer.has_exited() || killed_at.elapsed() > WAIT_LIMIT {
            let (lines, stderr) = producer.kill();
            panic!(
                "partition 0 did not resume after its leader was killed ({resumed} acks):\n{}\n{stderr}\n{}",
                lines[lines.len().saturating_sub(20)..].join("\n"),
                cluster_diagnostics(&nodes)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let (lines, _stderr) = producer.kill();
    let acked = acknowledged(&lines);
    let new_leader = leaders(&mut nodes).get(&0).copied().unwrap_or(-1);
    assert!(
        new_leader >= 1 && new_leader != leader,
        "partition 0 has no new leader ({new_leader})\n{}",
        cluster_diagnostics(&nodes)
    );

    // Every acknowledged message, exactly once, where it was acknowledged, in order.
    let survivors = cluster_bootstrap(&mut nodes);
    let reader = if victim == 0 { 1 } else { 0 };
    let consume = script_at(
        &nodes[reader],
        &survivors,
        "ck_consume.py",
        &["--topic", TOPIC],
    );
    let consumed = from_summary(&clients::run_json(&nodes[reader], consume), "records");
    let at: HashMap<(i32, i64), &str> = consumed
        .iter()
        .map(|r| ((r.partition, r.offset), r.value.as_deref().unwrap_or("")))
        .collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(partition, offset, value)| {
            at.get(&(*partition, *offset)) != Some(&value.as_str())
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages are missing or moved, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    let mut seen = HashSet::new();
    for record in &consumed {
        let value = record.value.as_deref().unwrap_or("");
        assert!(seen.insert(value), "{value} was written twice: {record:?}");
    }
    for (partition, records) in by_partition(&consumed) {
        let sequence: Vec<u64> = records
            .iter()
            .map(|r| {
                let value = r.value.as_deref().unwrap_or("");
                value
                    .strip_prefix('c')
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or_else(|| panic!("a record the producer never sent: {r:?}"))
            })
            .collect();
        assert!(
            sequence.windows(2).all(|pair| pair[0] < pair[1]),
            "partition {partition}: messages out of production order"
        );
    }
    eprintln!(
        "cluster test: {} acknowledged, {} read back",
        acked.len(),
        consumed.len()
    );

    // The killed node restarts and catches up: every partition's log equals the others'.
    nodes[victim].restart();
    let restarted_at = Instant::now();
    loop {
        let differing: Vec<i32> = (0..PARTITIONS)
            .filter(|partition| {
                let logs: Vec<_> = nodes
                    .iter()
                    .map(|node| batch_summaries(node.data_dir(), *partition))
                    .collect();
                logs.iter().any(|log| log != &logs[0])
            })
            .collect();
        if differing.is_empty() {
            eprintln!(
                "cluster test: node {leader} caught up after {:?}",
                restarted_at.elapsed()
            );
            break;
        }
        if restarted_at.elapsed() > WAIT_LIMIT {
            let sizes: Vec<_> = (0..PARTITIONS)
                .map(|p| {
                    nodes
                        .iter()
                        .map(|node| batch_summaries(node.data_dir(), p).len())
                        .collect::<Vec<_>>()
                })
                .collect();
            panic!(
                "the restarted node did not catch up: partitions {differing:?} differ \
                 (batches per node per partition: {sizes:?})\n{}",
                cluster_diagnostics(&nodes)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    let total: usize = (0..PARTITIONS)
        .map(|p| batch_summaries(nodes[victim].data_dir(), p).len())
        .sum();
    assert!(
        total > 0,
        "the restarted node holds the partitions' batches"
    );
}
