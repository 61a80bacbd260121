//! Consumer groups with real clients: confluent-kafka, kafka-python and kafkajs consumers
//! share a 6-partition topic in one group, on one node and on a 3-node cluster whose group
//! coordinator is killed -9 mid-run.
//!
//! Each consumer script (`tests/clients/{ck,kp}_group_consume.py`, `tests/js/group_consume.js`)
//! prints its assignments, every message, and every commit the broker acknowledged, with a
//! wall-clock timestamp. The run: produce, start three consumers and wait until the six
//! partitions are split among them with one owner each; (cluster: kill -9 the coordinator's
//! node, produce more, and see consumption and commits go on); close one consumer (it
//! commits and leaves) and see its partitions move to the other two; produce; kill -9
//! another and see its partitions move to the last one after its session times out;
//! produce; close the last one; then a fresh consumer of the group must start exactly at
//! the committed offsets. The checks over the whole history:
//! - nothing produced is lost: every message is consumed at least once;
//! - whenever a consumer starts on a partition (the fresh one included), it starts exactly
//!   at the last commit acknowledged for that partition when it was assigned it: at the
//!   first record there (offsets skip control batches): duplicates reach back only to the
//!   last commit, and nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use myelin_client::{ClientConfig, Connection};
use myelin_tests::clients::{self, StreamingClient};
use myelin_tests::node::{cluster_bootstrap, start_cluster};
use myelin_tests::records::keyed_message;
use myelin_tests::Node;
use serde_json::Value;

const PARTITIONS: i32 = 6;
const KEYS: usize = 24;
const WAIT_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
enum Library {
    ConfluentKafka,
    KafkaPython,
    Kafkajs,
}

impl Library {
    fn consumer(self, node: &Node, bootstrap: &str, topic: &str, name: &str) -> Command {
        let mut command = match self {
            Library::ConfluentKafka => clients::python_script(node, "ck_group_consume.py"),
            Library::KafkaPython => clients::python_script(node, "kp_group_consume.py"),
            Library::Kafkajs => clients::js_script(node, "group_consume.js"),
        };
        command
            .args(["--bootstrap", bootstrap, "--topic", topic])
            .args(["--group", &format!("{topic}-group"), "--name", name]);
        command
    }
}

/// One event a consumer printed.
#[derive(Debug, Clone)]
struct Event {
    consumer: usize,
    kind: String,
    ts: f64,
    partition: i32,
    offset: i64,
    partitions: Vec<i32>,
    value: String,
}

fn parse_events(consumer: usize, lines: &[String]) -> Vec<Event> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|v| Event {
            consumer,
            kind: v["event"].as_str().unwrap_or_default().to_string(),
            ts: v["ts"].as_f64().unwrap_or_default(),
            partition: v["partition"].as_i64().unwrap_or(-1) as i32,
            offset: v["offset"].as_i64().unwrap_or(-1),
            partitions: v["partitions"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|p| p.as_i64())
                        .map(|p| p as i32)
                        .collect()
                })
                .unwrap_or_default(),
            value: v["value"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// A consumer process and, once it is gone, what it printed.
struct Consumer {
    name: String,
    running: Option<StreamingClient>,
    lines: Vec<String>,
    stderr: String,
}

impl Consumer {
    fn start(library: Library, node: &Node, bootstrap: &str, topic: &str, name: &str) -> Self {
        let command = library.consumer(node, bootstrap, topic, name);
        Consumer {
            name: name.to_string(),
            running: Some(StreamingClient::spawn(command)),
            lines: Vec::new(),
            stderr: String::new(),
        }
    }

    fn lines(&self) -> Vec<String> {
        match &self.running {
            Some(client) => client.lines(),
            None => self.lines.clone(),
        }
    }

    /// Its current assignment: the last one, unless revoked since (None before any).
    fn assignment(&self) -> Option<Vec<i32>> {
        let mut current = None;
        for event in parse_events(0, &self.lines()) {
            match event.kind.as_str() {
                "assigned" => current = Some(event.partitions),
                "revoked" => current = Some(Vec::new()),
                _ => {}
            }
        }
        current
    }

    fn is_live(&self) -> bool {
        self.running.is_some()
    }

    /// SIGTERM, then waits until it has committed, left the group and exited.
    fn close(&mut self) {
        let mut client = self.running.take().expect("a running consumer");
        client.terminate();
        let exited = client.wait_for_exit(WAIT_LIMIT);
        let (lines, stderr) = client.kill();
        assert!(
            exited && lines.iter().any(|line| line.contains("\"closed\"")),
            "{} did not close cleanly:\n{}\n{stderr}",
            self.name,
            lines.join("\n")
        );
        self.lines = lines;
        self.stderr = stderr;
    }

    /// SIGKILL: no commit, no LeaveGroup.
    fn kill(&mut self) {
        let client = self.running.take().expect("a running consumer");
        let (lines, stderr) = client.kill();
        self.lines = lines;
        self.stderr = stderr;
    }

    fn describe(&self) -> String {
        let lines = self.lines();
        let shown: Vec<&String> = lines
            .iter()
            .filter(|line| !line.contains("\"message\""))
            .collect();
        let mut last_read: BTreeMap<i32, (i64, f64)> = BTreeMap::new();
        for event in parse_events(0, &lines) {
            if event.kind == "message" {
                last_read.insert(event.partition, (event.offset, event.ts));
            }
        }
        format!(
            "--- {} ({} lines; last offset read per partition, with its time: {last_read:?}; other events:)\n{}\n--- stderr\n{}",
            self.name,
            lines.len(),
            shown
                .iter()
                .map(|line| line.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            self.stderr
        )
    }
}

struct Run {
    library: Library,
    topic: String,
    nodes: Vec<Node>,
    consumers: Vec<Consumer>,
    produced: usize,
}

impl Run {
    fn bootstrap(&mut self) -> String {
        cluster_bootstrap(&mut self.nodes)
    }

    fn any_node(&mut self) -> usize {
        (0..self.nodes.len())
            .find(|index| self.nodes[*index].is_running())
            .expect("a running node")
    }

    fn diagnostics(&self) -> String {
        let consumers: Vec<String> = self.consumers.iter().map(Consumer::describe).collect();
        let nodes: Vec<String> = self.nodes.iter().map(Node::diagnostics).collect();
        format!("{}\n{}", consumers.join("\n"), nodes.join("\n"))
    }

    fn wait_until(&mut self, what: &str, done: impl Fn(&Run) -> bool) {
        let deadline = Instant::now() + WAIT_LIMIT;
        while !done(self) {
            if Instant::now() > deadline {
                // Stopped consumers give up their stderr for the report.
                for consumer in &mut self.consumers {
                    if consumer.is_live() {
                        consumer.kill();
                    }
                }
                panic!(
                    "{:?}: {what}: not within {WAIT_LIMIT:?}\n{}",
                    self.library,
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn create_topic(&mut self, replication_factor: i16) {
        let bootstrap = self.bootstrap();
        let index = self.any_node();
        let mut command = clients::python_script(&self.nodes[index], "ck_create_topic.py");
        command.args([
            "--bootstrap",
            &bootstrap,
            "--topic",
            &self.topic,
            "--partitions",
            &PARTITIONS.to_string(),
            "--replication-factor",
            &replication_factor.to_string(),
        ]);
        clients::run_json(&self.nodes[index], command);
    }

    /// Produces the next `count` keyed messages (acks=all, every one acknowledged).
    fn produce(&mut self, count: usize) {
        let bootstrap = self.bootstrap();
        let index = self.any_node();
        let mut command = clients::python_script(&self.nodes[index], "ck_produce.py");
        command.args([
            "--bootstrap",
            &bootstrap,
            "--topic",
            &self.topic,
            "--messages",
            &count.to_string(),
            "--start",
            &self.produced.to_string(),
            "--keys",
            &KEYS.to_string(),
        ]);
        clients::run_json(&self.nodes[index], command);
        self.produced += count;
    }

    fn start_consumer(&mut self, name: &str) {
        let bootstrap = self.bootstrap();
        let index = self.any_node();
        let consumer = Consumer::start(
            self.library,
            &self.nodes[index],
            &bootstrap,
            &self.topic,
            name,
        );
        self.consumers.push(consumer);
    }

    fn events(&self) -> Vec<Event> {
        let mut events: Vec<Event> = self
            .consumers
            .iter()
            .enumerate()
            .flat_map(|(index, consumer)| parse_events(index, &consumer.lines()))
            .collect();
        events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        events
    }

    /// Whether the live consumers' assignments split the six partitions, one owner each.
    fn one_owner_each(&self) -> bool {
        let mut owned = Vec::new();
        for consumer in self.consumers.iter().filter(|c| c.is_live()) {
            match consumer.assignment() {
                Some(partitions) if !partitions.is_empty() => owned.extend(partitions),
                _ => return false,
            }
        }
        owned.sort_unstable();
        owned == (0..PARTITIONS).collect::<Vec<_>>()
    }

    /// Whether every message produced so far has been consumed by someone.
    fn all_consumed(&self) -> bool {
        let consumed: BTreeSet<String> = self
            .events()
            .into_iter()
            .filter(|event| event.kind == "message")
            .map(|event| event.value)
            .collect();
        (0..self.produced).all(|index| consumed.contains(&keyed_message(index, KEYS).1))
    }

    fn commits_after(&self, ts: f64) -> usize {
        self.events()
            .iter()
            .filter(|event| event.kind == "committed" && event.ts > ts)
            .count()
    }
}

/// The node id of the group's coordinator, asked of any running node.
fn coordinator_of(nodes: &mut [Node], group: &str) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let addresses: Vec<_> = nodes
        .iter_mut()
        .filter_map(|node| node.is_running().then(|| node.addr()))
        .collect();
    runtime.block_on(async {
        for address in addresses {
            let Ok(mut connection) = Connection::connect(address, ClientConfig::default()).await
            else {
                continue;
            };
            if let Ok(coordinator) = connection.find_coordinator(group).await {
                return coordinator.node_id;
            }
        }
        panic!("no node names the coordinator of {group}");
    })
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

/// The checks of the module doc, over every consumer's history.
fn check_history(run: &Run) {
    let events = run.events();
    let diagnostics = || run.diagnostics();
    // No loss.
    let consumed: BTreeSet<&str> = events
        .iter()
        .filter(|event| event.kind == "message")
        .map(|event| event.value.as_str())
        .collect();
    let missing: Vec<usize> = (0..run.produced)
        .filter(|index| !consumed.contains(keyed_message(*index, KEYS).1.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{:?}: {} produced messages never consumed (first {:?})\n{}",
        run.library,
        missing.len(),
        missing.first(),
        diagnostics()
    );
    // Every data offset of each partition (with nothing lost, every one was consumed; the
    // gaps are control batches, such as a new leader's epoch marker).
    let mut data_offsets: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for event in events.iter().filter(|event| event.kind == "message") {
        data_offsets
            .entry(event.partition)
            .or_default()
            .insert(event.offset);
    }
    // Where each consumer started each partition, against what was committed before.
    let mut last_commit: BTreeMap<i32, i64> = BTreeMap::new();
    let mut started: BTreeSet<(usize, i32)> = BTreeSet::new();
    // The commits acknowledged when each consumer was last assigned its partitions: where a
    // new owner must start (a client may commit its own earlier progress afterwards and
    // still start from what it fetched at the assignment).
    let mut commits_at_assignment: BTreeMap<usize, BTreeMap<i32, i64>> = BTreeMap::new();
    let mut duplicates = 0usize;
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut handovers = 0usize;
    for event in &events {
        match event.kind.as_str() {
            "assigned" | "revoked" => {
                started.retain(|(consumer, _)| *consumer != event.consumer);
                commits_at_assignment.insert(event.consumer, last_commit.clone());
            }
            "committed" => {
                let known = last_commit.entry(event.partition).or_insert(-1);
                *known = (*known).max(event.offset);
            }
            "message" => {
                if !seen.insert(event.value.as_str()) {
                    duplicates += 1;
                }
                if started.insert((event.consumer, event.partition)) {
                    handovers += 1;
                    let committed = commits_at_assignment
                        .get(&event.consumer)
                        .and_then(|commits| commits.get(&event.partition))
                        .copied()
                        .unwrap_or(0)
                        .max(0);
                    // The first record at or after the commit: no earlier (duplicates reach
                    // back only to the commit), no later (nothing skipped).
                    let expected = data_offsets[&event.partition]
                        .range(committed..)
                        .next()
                        .copied();
                    assert!(
                        Some(event.offset) == expected,
                        "{:?}: {} started partition {} at offset {}: the last acknowledged commit was {committed}, so it should have started at {expected:?}\n{}",
                        run.library,
                        run.consumers[event.consumer].name,
                        event.partition,
                        event.offset,
                        diagnostics()
                    );
                }
            }
            _ => {}
        }
    }
    println!(
        "{:?}: {} messages produced, {} consumed ({duplicates} again after a handover), {handovers} partition starts",
        run.library,
        run.produced,
        seen.len()
    );
}

/// One scenario at a time: each runs up to three nodes and four client processes, which is
/// all two cores can time fairly (session timeouts are wall-clock).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The whole scenario of the module doc; `cluster` runs it on three nodes and kills the
/// coordinator's node once the group is settled.
fn share_a_topic(library: Library, cluster: bool) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let label = format!("{library:?}").to_lowercase();
    let topic = format!("groups-{label}{}", if cluster { "-cluster" } else { "" });
    let nodes = if cluster {
        start_cluster(&format!("consumer_groups.{label}"), 3)
    } else {
        vec![Node::start(&format!("consumer_groups.{label}"))]
    };
    let mut run = Run {
        library,
        topic: topic.clone(),
        nodes,
        consumers: Vec::new(),
        produced: 0,
    };
    run.create_topic(if cluster { 3 } else { 1 });
    run.produce(900);
    for index in 0..3 {
        run.start_consumer(&format!("{label}-{index}"));
    }
    run.wait_until(
        "three consumers own the six partitions, one owner each",
        |run| run.one_owner_each() && run.consumers.iter().all(|c| c.assignment().is_some()),
    );

    if cluster {
        let group = format!("{topic}-group");
        let coordinator = coordinator_of(&mut run.nodes, &group);
        let killed_at = now();
        run.nodes[(coordinator - 1) as usize].kill();
        run.produce(600);
        run.wait_until(
            "consumption and commits go on after the coordinator's node died",
            |run| run.all_consumed() && run.commits_after(killed_at + 1.0) > 0,
        );
        let successor = coordinator_of(&mut run.nodes, &group);
        assert_ne!(successor, coordinator, "a new coordinator took over");
    }

    run.consumers[0].close();
    run.wait_until(
        "the closed consumer's partitions moved to the other two",
        |run| run.one_owner_each(),
    );
    run.produce(600);
    run.wait_until("everything produced so far is consumed", Run::all_consumed);

    run.consumers[1].kill();
    run.produce(600);
    run.wait_until(
        "the killed consumer's partitions moved to the last one, which consumed everything",
        |run| run.one_owner_each() && run.all_consumed(),
    );
    run.consumers[2].close();

    // A fresh consumer of the group resumes from the committed offsets.
    run.produce(300);
    run.start_consumer(&format!("{label}-fresh"));
    run.wait_until(
        "the fresh consumer consumed what was produced since",
        |run| run.all_consumed(),
    );
    run.consumers[3].close();
    check_history(&run);
}

#[test]
fn confluent_kafka_consumers_share_a_topic_and_resume_from_commits() {
    share_a_topic(Library::ConfluentKafka, false);
}

#[test]
fn kafka_python_consumers_share_a_topic_and_resume_from_commits() {
    share_a_topic(Library::KafkaPython, false);
}

#[test]
fn kafkajs_consumers_share_a_topic_and_resume_from_commits() {
    share_a_topic(Library::Kafkajs, false);
}

#[test]
fn confluent_kafka_group_survives_its_coordinator_killed_on_a_cluster() {
    share_a_topic(Library::ConfluentKafka, true);
}

#[test]
fn kafka_python_group_survives_its_coordinator_killed_on_a_cluster() {
    share_a_topic(Library::KafkaPython, true);
}

#[test]
fn kafkajs_group_survives_its_coordinator_killed_on_a_cluster() {
    share_a_topic(Library::Kafkajs, true);
}
