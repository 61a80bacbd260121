//! Consumer groups with real clients: three confluent-kafka, kafka-python or kafkajs
//! consumers share a 6-partition topic in one group, on one node and on a 3-node cluster
//! whose group coordinator is killed -9 mid-run.
//!
//! The consumer scripts (`tests/clients/ck_group_consume.py`, `kp_group_consume.py`,
//! `tests/js/group_consume.js`) share one command line and print one JSON event per line
//! with a wall-clock timestamp: assigned, revoked / lost, every message, every commit the
//! broker acknowledged, and closed. They commit explicit offsets synchronously every 20
//! messages or 200 ms (auto-commit off) and spend 2 ms per message, so a backlog builds up
//! and every step below happens while they consume and commit.
//!
//! The run: create the topic; produce 3,000 keyed messages and keep a producer streaming
//! 150 messages/s (acks=all, idempotent); start three consumers and wait until the six
//! partitions are split among them, one owner each, and each consumed and committed since;
//! (cluster: kill -9 the coordinator's node, wait until every consumer commits again and a
//! surviving node coordinates the group); close one consumer with SIGTERM (it commits and
//! leaves) and wait until its partitions moved to the other two; kill -9 another and wait
//! until its partitions moved to the last one (after its 6 s session timeout); stop the
//! producer and wait until everything acknowledged is consumed; close the last consumer;
//! produce 600 more; start a fresh consumer of the group and wait until it consumed them.
//!
//! The checks over the whole history ([`check_history`], with unit tests below that show
//! each check failing on a history that breaks it):
//! - no loss: every acknowledged message is consumed, at the partition and offset it was
//!   acknowledged at;
//! - one owner: per partition, the spans between a consumer's assignment and its revocation
//!   (its kill, for the killed one) never overlap across consumers, unless the earlier one
//!   had been cut off from the group and is fenced: none of its commits is acknowledged
//!   during the overlap;
//! - acknowledged commits never go backwards on a partition, and none is lost: whenever a
//!   consumer starts on a partition it starts at or after the last commit acknowledged for
//!   it (duplicates reach back only to the last commit) and not beyond the next offset
//!   anyone had consumed (no gap); within one assignment offsets run on without a skip;
//! - the fresh consumer starts every partition exactly at the last acknowledged commit.
//!
//! "No gap" and "without a skip" allow passing over offsets that hold no acknowledged
//! message: each new leader epoch opens with a control batch, which clients never hand to
//! the application, so after a leader change a partition's offsets have a hole.

use std::cell::{Ref, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use myelin_tests::clients::{self, StreamingClient, CLIENT_TIMEOUT};
use myelin_tests::node::{cluster_bootstrap, logs_dir, read_lossy, start_cluster, stored_batches};
use myelin_tests::records::from_summary;
use myelin_tests::{workspace_root, Node};
use serde_json::Value;

const PARTITIONS: i32 = 6;
const KEYS: usize = 60;
const INITIAL_MESSAGES: usize = 3000;
const FINAL_MESSAGES: usize = 600;
const STREAM_RATE: &str = "150";
const SESSION_TIMEOUT_MS: &str = "6000";
const DELAY_MS: &str = "2";
/// How long each step may take on one node (the slowest, a kill -9, waits out a 6 s session).
const WAIT: Duration = Duration::from_secs(30);
/// The same on a cluster, where a leader or the coordinator may move first.
const CLUSTER_WAIT: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, Copy)]
enum Library {
    ConfluentKafka,
    KafkaPython,
    Kafkajs,
}

impl Library {
    fn label(self) -> &'static str {
        match self {
            Library::ConfluentKafka => "confluent_kafka",
            Library::KafkaPython => "kafka_python",
            Library::Kafkajs => "kafkajs",
        }
    }

    fn consumer(self, bootstrap: &str, topic: &str, group: &str, name: &str) -> Command {
        let root = workspace_root();
        let mut command = match self {
            Library::ConfluentKafka => {
                let mut command = Command::new(clients::python());
                command.arg(root.join("tests/clients/ck_group_consume.py"));
                command
            }
            Library::KafkaPython => {
                let mut command = Command::new(clients::python());
                command.arg(root.join("tests/clients/kp_group_consume.py"));
                command
            }
            Library::Kafkajs => {
                let mut command = Command::new(clients::node_js());
                command.arg(root.join("tests/js/group_consume.js"));
                command
            }
        };
        command.args(["--bootstrap", bootstrap, "--topic", topic, "--group", group]);
        command.args([
            "--client-name",
            name,
            "--session-timeout-ms",
            SESSION_TIMEOUT_MS,
        ]);
        command.args(["--delay-ms", DELAY_MS]);
        command
    }
}

/// Wall-clock seconds, the clock the consumer scripts stamp their events with.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// Events and the checks on a whole history (pure, unit-tested at the end of the file).

/// One line a consumer printed.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    consumer: usize,
    kind: String,
    ts: f64,
    partition: i32,
    offset: i64,
    partitions: Vec<i32>,
    value: String,
}

fn parse_event(consumer: usize, line: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some(Event {
        consumer,
        kind: v["event"].as_str()?.to_string(),
        ts: v["ts"].as_f64()?,
        partition: v["partition"].as_i64().map_or(-1, |p| p as i32),
        offset: v["offset"].as_i64().unwrap_or(-1),
        partitions: v["partitions"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_i64)
                    .map(|p| p as i32)
                    .collect()
            })
            .unwrap_or_default(),
        value: v["value"].as_str().unwrap_or_default().to_string(),
    })
}

/// An acknowledged message: where the producer was told it is stored.
#[derive(Debug, Clone, PartialEq)]
struct Produced {
    partition: i32,
    offset: i64,
    value: String,
}

/// Everything [`check_history`] looks at.
struct History {
    /// Every consumer's events, ordered by timestamp (each consumer's own order kept).
    events: Vec<Event>,
    /// Per consumer, when it stopped owning anything at the latest: its exit, or the moment
    /// just before it was killed.
    ends: Vec<f64>,
    produced: Vec<Produced>,
    /// The consumer that must start every partition exactly at the last commit.
    fresh: Option<usize>,
    names: Vec<String>,
}

/// Figures of a history that passed.
#[derive(Debug, Default)]
struct Stats {
    messages: usize,
    redelivered: usize,
    starts: usize,
    commits: usize,
    failed_commits: usize,
    assignments: usize,
    stray: usize,
    /// Spans of one partition that overlapped while the earlier holder was cut off (fenced).
    fenced_overlaps: usize,
    /// Messages such a cut-off holder processed meanwhile (left out of the other checks).
    zombie_messages: usize,
}

fn check_history(history: &History) -> Result<Stats, String> {
    let name = |consumer: usize| {
        history
            .names
            .get(consumer)
            .cloned()
            .unwrap_or_else(|| format!("consumer {consumer}"))
    };
    let mut stats = Stats::default();
    // The acknowledged offsets of each partition. A consumer may pass over other offsets
    // without reading anything there: the log also holds control batches (each new leader
    // epoch opens with one), which clients do not hand to the application.
    let mut acknowledged: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for p in &history.produced {
        acknowledged
            .entry(p.partition)
            .or_default()
            .insert(p.offset);
    }
    let skips_acknowledged = |partition: i32, from: i64, to: i64| -> Option<i64> {
        (from < to)
            .then(|| {
                acknowledged
                    .get(&partition)?
                    .range(from..to)
                    .next()
                    .copied()
            })
            .flatten()
    };

    // One owner: spans from an assignment to the revocation (or the consumer's end).
    let mut spans: BTreeMap<i32, Vec<(f64, f64, usize)>> = BTreeMap::new();
    for consumer in 0..history.ends.len() {
        let mut open: BTreeMap<i32, f64> = BTreeMap::new();
        for e in history.events.iter().filter(|e| e.consumer == consumer) {
            match e.kind.as_str() {
                "assigned" => {
                    stats.assignments += 1;
                    for (partition, since) in std::mem::take(&mut open) {
                        spans
                            .entry(partition)
                            .or_default()
                            .push((since, e.ts, consumer));
                    }
                    open = e.partitions.iter().map(|p| (*p, e.ts)).collect();
                }
                "revoked" | "lost" => {
                    for partition in &e.partitions {
                        if let Some(since) = open.remove(partition) {
                            spans
                                .entry(*partition)
                                .or_default()
                                .push((since, e.ts, consumer));
                        }
                    }
                }
                _ => {}
            }
        }
        for (partition, since) in open {
            spans
                .entry(partition)
                .or_default()
                .push((since, history.ends[consumer], consumer));
        }
    }
    // Two spans of one partition may overlap only when the earlier holder had been cut off
    // from the group (it could not reach any coordinator and its session expired, so the
    // group moved on without it, as Kafka's classic protocol does): such a member may still
    // process what it fetched, but the broker must fence it, so none of its commits may be
    // acknowledged while the other one holds the partition.
    for (partition, list) in &spans {
        for (a_start, a_end, a) in list {
            for (b_start, b_end, b) in list {
                if a == b || b_start < a_start || b_start >= a_end {
                    continue;
                }
                let until = a_end.min(*b_end);
                let during = |kind: &str| {
                    history
                        .events
                        .iter()
                        .filter(|e| e.consumer == *a && e.kind == kind)
                        .filter(|e| e.ts > *b_start && e.ts < until)
                        .count()
                };
                let commits = during("committed");
                if commits > 0 {
                    return Err(format!(
                        "partition {partition} had two owners: {} was assigned it at \
                         {b_start:.3} while {} held it (since {a_start:.3}, until {until:.3}), \
                         and {commits} commits of the latter were acknowledged meanwhile",
                        name(*b),
                        name(*a)
                    ));
                }
                stats.fenced_overlaps += 1;
            }
        }
    }
    // A message read by such a cut-off member after another member took its partition is
    // not consumption: the checks below leave it out (its reader's commits were fenced).
    let cut_off = |e: &Event| -> bool {
        let Some(list) = spans.get(&e.partition) else {
            return false;
        };
        let Some(own) = list
            .iter()
            .find(|(start, end, c)| *c == e.consumer && *start <= e.ts && e.ts <= *end)
        else {
            return false;
        };
        list.iter().any(|(start, end, c)| {
            *c != e.consumer && *start > own.0 && *start <= e.ts && e.ts < *end
        })
    };

    // Commits and where each consumer starts and goes on, in time order.
    let mut last_commit: HashMap<i32, i64> = HashMap::new();
    let mut frontier: HashMap<i32, i64> = HashMap::new(); // next offset after all consumed
    let mut position: HashMap<(usize, i32), i64> = HashMap::new(); // within an assignment
    let mut seen: HashSet<(i32, i64)> = HashSet::new();
    for e in &history.events {
        match e.kind.as_str() {
            "assigned" | "revoked" | "lost" => position.retain(|(c, _), _| *c != e.consumer),
            "commit_failed" => stats.failed_commits += 1,
            "stray" => stats.stray += 1,
            "committed" => {
                stats.commits += 1;
                let before = last_commit.get(&e.partition).copied().unwrap_or(0);
                if e.offset < before {
                    return Err(format!(
                        "partition {}: {} got a commit of offset {} acknowledged after a commit \
                         of {before} had been",
                        e.partition,
                        name(e.consumer),
                        e.offset
                    ));
                }
                last_commit.insert(e.partition, e.offset);
            }
            "message" if cut_off(e) => stats.zombie_messages += 1,
            "message" => {
                stats.messages += 1;
                let committed = last_commit.get(&e.partition).copied().unwrap_or(0);
                let next = frontier.get(&e.partition).copied().unwrap_or(0);
                match position.get(&(e.consumer, e.partition)) {
                    None => {
                        stats.starts += 1;
                        // Where the consumer should start: the last commit (the fresh one),
                        // or anywhere from there up to what had been consumed.
                        let upto = if history.fresh == Some(e.consumer) {
                            committed
                        } else {
                            next.max(committed)
                        };
                        let skipped = skips_acknowledged(e.partition, upto, e.offset);
                        if e.offset < committed || skipped.is_some() {
                            return Err(format!(
                                "{} started partition {} at offset {}, but the last acknowledged \
                                 commit was {committed} and the next offset nobody had consumed \
                                 {next}{}",
                                name(e.consumer),
                                e.partition,
                                e.offset,
                                if history.fresh == Some(e.consumer) {
                                    " (it is the fresh consumer: it must start at the commit)"
                                } else {
                                    ""
                                }
                            ));
                        }
                    }
                    Some(expected) => {
                        if let Some(skipped) = skips_acknowledged(e.partition, *expected, e.offset)
                        {
                            return Err(format!(
                                "{} read partition {} offset {} after offset {} within one \
                                 assignment, passing over acknowledged offset {skipped}",
                                name(e.consumer),
                                e.partition,
                                e.offset,
                                expected - 1
                            ));
                        }
                        if e.offset < *expected {
                            return Err(format!(
                                "{} read partition {} offset {} after offset {} within one \
                                 assignment",
                                name(e.consumer),
                                e.partition,
                                e.offset,
                                expected - 1
                            ));
                        }
                    }
                }
                if !seen.insert((e.partition, e.offset)) {
                    stats.redelivered += 1;
                    if e.offset < committed {
                        return Err(format!(
                            "{} read partition {} offset {} again, below the acknowledged commit \
                             {committed}",
                            name(e.consumer),
                            e.partition,
                            e.offset
                        ));
                    }
                }
                position.insert((e.consumer, e.partition), e.offset + 1);
                frontier.insert(e.partition, next.max(e.offset + 1));
            }
            _ => {}
        }
    }

    // No loss, and every consumed record is the one acknowledged at its offset.
    let consumed_at: HashSet<(i32, i64)> = history
        .events
        .iter()
        .filter(|e| e.kind == "message" && !cut_off(e))
        .map(|e| (e.partition, e.offset))
        .collect();
    let produced_at: HashMap<(i32, i64), &Produced> = history
        .produced
        .iter()
        .map(|p| ((p.partition, p.offset), p))
        .collect();
    let missing: Vec<&Produced> = history
        .produced
        .iter()
        .filter(|p| !consumed_at.contains(&(p.partition, p.offset)))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} acknowledged messages were never consumed, e.g. {:?}",
            missing.len(),
            history.produced.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    for e in history.events.iter().filter(|e| e.kind == "message") {
        if let Some(p) = produced_at.get(&(e.partition, e.offset)) {
            if p.value != e.value {
                return Err(format!(
                    "{} read {:?} at partition {} offset {}, where {:?} was acknowledged",
                    name(e.consumer),
                    e.value,
                    e.partition,
                    e.offset,
                    p.value
                ));
            }
        }
    }
    Ok(stats)
}

// ---------------------------------------------------------------------------------------
// The processes.

/// One line per batch of a partition on a node's disk (offsets, leader epoch, producer id and
/// sequence, record count), in log order, for the failure files.
fn stored_batch_lines(data_dir: &std::path::Path, topic: &str, partition: i32) -> Vec<String> {
    let (headers, stops) = stored_batches(data_dir, topic, partition);
    let mut lines: Vec<String> = headers
        .iter()
        .map(|h| {
            format!(
                "{}..={} epoch {} producer {} seq {} records {}",
                h.base_offset,
                h.base_offset + i64::from(h.last_offset_delta),
                h.partition_leader_epoch,
                h.producer_id,
                h.base_sequence,
                h.record_count
            )
        })
        .collect();
    lines.extend(stops.into_iter().map(|stop| format!("({stop})")));
    lines
}

enum Fate {
    Running(StreamingClient),
    Closed,
    Killed,
}

/// One consumer process and, once it is gone, what it printed.
struct Consumer {
    /// Its index in `Run::consumers`, which its events carry.
    index: usize,
    name: String,
    fate: Fate,
    lines: Vec<String>,
    stderr: String,
    /// When it stopped owning anything at the latest (exit or kill), wall clock.
    end: f64,
    /// Its events so far, and how many of its lines they come from: each line is parsed
    /// once, as the waits look at the events ten times a second.
    parsed: RefCell<(usize, Vec<Event>)>,
}

impl Consumer {
    fn lines(&self) -> Vec<String> {
        match &self.fate {
            Fate::Running(client) => client.lines(),
            Fate::Closed | Fate::Killed => self.lines.clone(),
        }
    }

    fn events(&self) -> Ref<'_, Vec<Event>> {
        {
            let mut parsed = self.parsed.borrow_mut();
            let new = match &self.fate {
                Fate::Running(client) => client.lines_from(parsed.0),
                Fate::Closed | Fate::Killed => self
                    .lines
                    .get(parsed.0..)
                    .map(<[String]>::to_vec)
                    .unwrap_or_default(),
            };
            parsed.0 += new.len();
            let index = self.index;
            parsed
                .1
                .extend(new.iter().filter_map(|line| parse_event(index, line)));
        }
        Ref::map(self.parsed.borrow(), |parsed| &parsed.1)
    }

    fn is_running(&self) -> bool {
        matches!(self.fate, Fate::Running(_))
    }

    /// The current assignment and when it was made: the last "assigned", minus whatever was
    /// revoked or lost since.
    fn assignment(&self) -> Option<(f64, BTreeSet<i32>)> {
        let mut current: Option<(f64, BTreeSet<i32>)> = None;
        for e in self.events().iter() {
            match e.kind.as_str() {
                "assigned" => current = Some((e.ts, e.partitions.iter().copied().collect())),
                "revoked" | "lost" => {
                    if let Some((_, owned)) = current.as_mut() {
                        for partition in &e.partitions {
                            owned.remove(partition);
                        }
                    }
                }
                _ => {}
            }
        }
        current
    }

    /// Whether it consumed a message and had a commit acknowledged after `since`.
    fn consumed_and_committed_since(&self, since: f64) -> bool {
        let events = self.events();
        let after = |kind: &str| events.iter().any(|e| e.kind == kind && e.ts > since);
        after("message") && after("committed")
    }

    fn exited(&mut self) -> bool {
        match &mut self.fate {
            Fate::Running(client) => client.has_exited(),
            Fate::Closed | Fate::Killed => false,
        }
    }

    /// SIGTERM, then waits until it has committed, left the group and exited 0.
    fn close(&mut self, wait: Duration) -> Result<(), String> {
        let Fate::Running(mut client) = std::mem::replace(&mut self.fate, Fate::Closed) else {
            panic!("{} is not running", self.name);
        };
        client.terminate();
        let exited = client.wait_for_exit(wait);
        self.end = now();
        let (lines, stderr) = client.kill();
        self.lines = lines;
        self.stderr = stderr;
        let closed = self
            .lines
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|v| v["event"] == "closed");
        match closed {
            _ if !exited => Err(format!(
                "{} did not exit within {wait:?} of SIGTERM",
                self.name
            )),
            None => Err(format!("{} exited without closing cleanly", self.name)),
            Some(v) if v["final_commit_ok"] != Value::Bool(true) => Err(format!(
                "{}: its last commit before leaving was not acknowledged",
                self.name
            )),
            Some(_) => Ok(()),
        }
    }

    /// SIGKILL: no commit, no LeaveGroup.
    fn kill(&mut self) {
        let Fate::Running(client) = std::mem::replace(&mut self.fate, Fate::Killed) else {
            panic!("{} is not running", self.name);
        };
        self.end = now();
        let (lines, stderr) = client.kill();
        self.lines = lines;
        self.stderr = stderr;
    }

    /// Its events other than messages (which are summarised), and its stderr tail.
    fn describe(&self) -> String {
        let lines = self.lines();
        let mut text = format!("--- {} ({} lines) ---\n", self.name, lines.len());
        let mut run: Option<(i32, i64, i64, usize)> = None; // partition, first, last, count
        let flush = |text: &mut String, run: &mut Option<(i32, i64, i64, usize)>| {
            if let Some((partition, first, last, count)) = run.take() {
                let _ = writeln!(text, "  messages p{partition} {first}..={last} ({count})");
            }
        };
        for line in &lines {
            match parse_event(0, line) {
                Some(e) if e.kind == "message" => match run.as_mut() {
                    Some((partition, _, last, count))
                        if *partition == e.partition && *last + 1 == e.offset =>
                    {
                        *last = e.offset;
                        *count += 1;
                    }
                    _ => {
                        flush(&mut text, &mut run);
                        run = Some((e.partition, e.offset, e.offset, 1));
                    }
                },
                _ => {
                    flush(&mut text, &mut run);
                    let _ = writeln!(text, "  {line}");
                }
            }
        }
        flush(&mut text, &mut run);
        let stderr: Vec<&str> = self.stderr.lines().collect();
        let tail = &stderr[stderr.len().saturating_sub(30)..];
        let _ = writeln!(
            text,
            "--- {} stderr (last lines) ---\n{}",
            self.name,
            tail.join("\n")
        );
        text
    }
}

struct Run {
    library: Library,
    label: String,
    topic: String,
    group: String,
    nodes: Vec<Node>,
    /// Indexes of nodes this test killed.
    killed_nodes: BTreeSet<usize>,
    consumers: Vec<Consumer>,
    stream: Option<StreamingClient>,
    stream_lines: Vec<String>,
    stream_stderr: String,
    /// The stream producer's acknowledged messages so far, and how many lines they come from.
    stream_parsed: RefCell<(usize, Vec<Produced>)>,
    /// Acknowledged by the batch producer (ck_produce.py).
    batch_produced: Vec<Produced>,
    wait: Duration,
    started: Instant,
    timeline: Vec<String>,
}

impl Run {
    fn new(library: Library, cluster: bool) -> Run {
        let label = format!(
            "{}{}",
            library.label(),
            if cluster { "_cluster" } else { "" }
        );
        let log_name = format!("consumer_groups.{label}");
        let nodes = if cluster {
            start_cluster(&log_name, 3)
        } else {
            vec![Node::start(&log_name)]
        };
        Run {
            library,
            topic: format!("groups-{label}"),
            group: format!("group-{label}"),
            label,
            nodes,
            killed_nodes: BTreeSet::new(),
            consumers: Vec::new(),
            stream: None,
            stream_lines: Vec::new(),
            stream_stderr: String::new(),
            stream_parsed: RefCell::new((0, Vec::new())),
            batch_produced: Vec::new(),
            wait: if cluster { CLUSTER_WAIT } else { WAIT },
            started: Instant::now(),
            timeline: Vec::new(),
        }
    }

    fn mark(&mut self, what: &str) {
        let line = format!("{:6.2}s {what}", self.started.elapsed().as_secs_f64());
        eprintln!("consumer_groups {}: {line}", self.label);
        self.timeline.push(line);
    }

    fn bootstrap(&mut self) -> String {
        cluster_bootstrap(&mut self.nodes)
    }

    /// A Python client script run against every running node.
    fn script(&mut self, script: &str) -> Command {
        let mut command = Command::new(clients::python());
        command
            .arg(workspace_root().join("tests/clients").join(script))
            .arg("--bootstrap")
            .arg(self.bootstrap());
        command
    }

    /// Runs a Python client script to completion and returns its JSON summary.
    fn run_script(&mut self, script: &str, args: &[&str]) -> Value {
        let mut command = self.script(script);
        command.args(args);
        let shown = format!("{command:?}");
        let finished = clients::run(command, None, CLIENT_TIMEOUT);
        if !finished.status.success() {
            self.fail(&format!("client failed: {shown}\n{}", finished.describe()));
        }
        clients::parse_summary(&finished.stdout)
            .unwrap_or_else(|| self.fail(&format!("no JSON summary from {shown}")))
    }

    fn diagnostics(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "--- timeline ---\n{}", self.timeline.join("\n"));
        let consumed: HashSet<(i32, i64)> = self
            .events()
            .iter()
            .filter(|e| e.kind == "message")
            .map(|e| (e.partition, e.offset))
            .collect();
        let mut missing: BTreeMap<i32, (usize, i64)> = BTreeMap::new();
        for p in self.produced() {
            if !consumed.contains(&(p.partition, p.offset)) {
                let entry = missing.entry(p.partition).or_insert((0, p.offset));
                entry.0 += 1;
                entry.1 = entry.1.min(p.offset);
            }
        }
        let _ = writeln!(
            text,
            "--- acknowledged but not consumed (so far), per partition: (count, lowest offset) ---\n{missing:?}"
        );
        for consumer in &self.consumers {
            text.push_str(&consumer.describe());
        }
        let acks = self.stream_lines.len();
        let _ = writeln!(
            text,
            "--- stream producer: {acks} lines, last: {:?}\n{}",
            self.stream_lines.last(),
            self.stream_stderr
        );
        for node in &self.nodes {
            let _ = writeln!(text, "{}", node.diagnostics());
        }
        let _ = writeln!(
            text,
            "(full outputs and the batches on disk: {}/consumer_groups.{}.*)",
            logs_dir().display(),
            self.label
        );
        text
    }

    fn fail(&mut self, what: &str) -> ! {
        // Stopped clients give up their stderr for the report.
        for consumer in &mut self.consumers {
            if consumer.is_running() {
                consumer.kill();
            }
        }
        if let Some(stream) = self.stream.take() {
            let (lines, stderr) = stream.kill();
            self.stream_lines = lines;
            self.stream_stderr = stderr;
        }
        self.save_outputs();
        panic!("{:?}: {what}\n{}", self.library, self.diagnostics());
    }

    /// Writes every consumer's output, the stream producer's and each node's batch headers of
    /// the topic to target/e2e-logs for a closer look.
    fn save_outputs(&self) {
        let save = |what: &str, text: String| {
            let path = logs_dir().join(format!("consumer_groups.{}.{what}", self.label));
            let _ = std::fs::write(path, text);
        };
        save(
            "stream.out",
            format!(
                "{}\n--- stderr ---\n{}",
                self.stream_lines().join("\n"),
                self.stream_stderr
            ),
        );
        let mut batches = String::new();
        for (index, node) in self.nodes.iter().enumerate() {
            for partition in 0..PARTITIONS {
                let _ = writeln!(batches, "node {} partition {partition}:", index + 1);
                for line in stored_batch_lines(node.data_dir(), &self.topic, partition) {
                    let _ = writeln!(batches, "  {line}");
                }
            }
        }
        save("batches.txt", batches);
        for consumer in &self.consumers {
            let path = logs_dir().join(format!(
                "consumer_groups.{}.{}.out",
                self.label, consumer.name
            ));
            let text = format!(
                "{}\n--- stderr ---\n{}",
                consumer.lines().join("\n"),
                consumer.stderr
            );
            let _ = std::fs::write(path, text);
        }
    }

    /// Polls `done` until it holds; fails the test after the step's wait limit, or at once
    /// if a node or a consumer that should be running has exited.
    fn wait_until(&mut self, what: &str, done: impl Fn(&Run) -> bool) {
        let deadline = Instant::now() + self.wait;
        loop {
            if done(self) {
                self.mark(&format!("done: {what}"));
                return;
            }
            for index in 0..self.nodes.len() {
                if !self.killed_nodes.contains(&index) && !self.nodes[index].is_running() {
                    let log = read_lossy(self.nodes[index].log_path());
                    let hint = if log.contains("shutting down") {
                        " (its log ends with a clean shutdown: something outside this test \
                         sent it SIGTERM or SIGINT)"
                    } else {
                        ""
                    };
                    self.fail(&format!(
                        "node {} exited while waiting{hint}: {what}",
                        index + 1
                    ));
                }
            }
            for index in 0..self.consumers.len() {
                if self.consumers[index].exited() {
                    let name = self.consumers[index].name.clone();
                    self.consumers[index].kill();
                    self.fail(&format!("consumer {name} exited while waiting: {what}"));
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("not within {:?}: {what}", self.wait));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn create_topic(&mut self) {
        let replication = if self.nodes.len() >= 3 { "3" } else { "1" };
        let topic = self.topic.clone();
        let partitions = PARTITIONS.to_string();
        self.run_script(
            "ck_create_topic.py",
            &[
                "--topic",
                &topic,
                "--partitions",
                &partitions,
                "--replication-factor",
                replication,
            ],
        );
    }

    /// Produces keyed messages `start..start + count` (acks=all, every one acknowledged).
    fn produce(&mut self, start: usize, count: usize) {
        let topic = self.topic.clone();
        let summary = self.run_script(
            "ck_produce.py",
            &[
                "--topic",
                &topic,
                "--messages",
                &count.to_string(),
                "--start",
                &start.to_string(),
                "--keys",
                &KEYS.to_string(),
            ],
        );
        self.batch_produced
            .extend(
                from_summary(&summary, "deliveries")
                    .into_iter()
                    .map(|r| Produced {
                        partition: r.partition,
                        offset: r.offset,
                        value: r.value.expect("keyed values are text"),
                    }),
            );
        self.mark(&format!("produced messages {start}..{}", start + count));
    }

    fn start_stream(&mut self) {
        let topic = self.topic.clone();
        let mut command = self.script("ck_produce_stream.py");
        command.args([
            "--topic",
            &topic,
            "--rate",
            STREAM_RATE,
            "--duration",
            "600",
        ]);
        command.args(["--keys", &KEYS.to_string(), "--idempotence"]);
        command.args(["--message-timeout-ms", "60000"]);
        self.stream = Some(StreamingClient::spawn(command));
        self.mark("stream producer started");
    }

    /// SIGTERM to the stream producer, which waits for its outstanding deliveries.
    fn stop_stream(&mut self) {
        let mut stream = self.stream.take().expect("a running stream producer");
        stream.terminate();
        let exited = stream.wait_for_exit(self.wait);
        let (lines, stderr) = stream.kill();
        self.stream_lines = lines;
        self.stream_stderr = stderr;
        if !exited {
            self.fail("the stream producer did not stop within the wait limit");
        }
        let summary = self.stream_lines.last().cloned().unwrap_or_default();
        self.mark(&format!("stream producer stopped: {summary}"));
    }

    fn stream_lines(&self) -> Vec<String> {
        match &self.stream {
            Some(stream) => stream.lines(),
            None => self.stream_lines.clone(),
        }
    }

    /// Every message acknowledged so far.
    fn produced(&self) -> Vec<Produced> {
        let mut parsed = self.stream_parsed.borrow_mut();
        let new = match &self.stream {
            Some(stream) => stream.lines_from(parsed.0),
            None => self
                .stream_lines
                .get(parsed.0..)
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
        };
        parsed.0 += new.len();
        parsed.1.extend(new.iter().filter_map(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            Some(Produced {
                partition: v["partition"].as_i64()? as i32,
                offset: v["offset"].as_i64()?,
                value: v["value"].as_str()?.to_string(),
            })
        }));
        self.batch_produced
            .iter()
            .chain(&parsed.1)
            .cloned()
            .collect()
    }

    fn start_consumer(&mut self, name: &str) {
        let bootstrap = self.bootstrap();
        let command = self
            .library
            .consumer(&bootstrap, &self.topic, &self.group, name);
        self.consumers.push(Consumer {
            index: self.consumers.len(),
            name: name.to_string(),
            fate: Fate::Running(StreamingClient::spawn(command)),
            lines: Vec::new(),
            stderr: String::new(),
            end: f64::INFINITY,
            parsed: RefCell::new((0, Vec::new())),
        });
        self.mark(&format!("consumer {name} started"));
    }

    fn close_consumer(&mut self, index: usize) {
        let wait = self.wait;
        if let Err(problem) = self.consumers[index].close(wait) {
            self.fail(&problem);
        }
        let name = self.consumers[index].name.clone();
        self.mark(&format!("consumer {name} closed (SIGTERM)"));
    }

    fn kill_consumer(&mut self, index: usize) {
        self.consumers[index].kill();
        let name = self.consumers[index].name.clone();
        self.mark(&format!("consumer {name} killed (SIGKILL)"));
    }

    /// Whether the running consumers split the six partitions, one owner each, every one
    /// assigned after `since`, and each consumed and had a commit acknowledged since.
    fn settled_since(&self, since: f64) -> bool {
        let mut owned = Vec::new();
        for consumer in self.consumers.iter().filter(|c| c.is_running()) {
            match consumer.assignment() {
                Some((at, partitions))
                    if at > since
                        && !partitions.is_empty()
                        && consumer.consumed_and_committed_since(at) =>
                {
                    owned.extend(partitions)
                }
                _ => return false,
            }
        }
        owned.sort_unstable();
        owned == (0..PARTITIONS).collect::<Vec<_>>()
    }

    fn events(&self) -> Vec<Event> {
        let mut events: Vec<Event> = self
            .consumers
            .iter()
            .flat_map(|consumer| consumer.events().clone())
            .collect();
        events.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        events
    }

    /// Whether every acknowledged message has been consumed by someone.
    fn all_consumed(&self) -> bool {
        let mut consumed: HashSet<(i32, i64)> = HashSet::new();
        for consumer in &self.consumers {
            consumed.extend(
                consumer
                    .events()
                    .iter()
                    .filter(|e| e.kind == "message")
                    .map(|e| (e.partition, e.offset)),
            );
        }
        self.produced()
            .iter()
            .all(|p| consumed.contains(&(p.partition, p.offset)))
    }

    /// The group as the cluster describes it: (coordinator node id, state, member ids).
    fn describe_group(&mut self) -> (i32, String, Vec<String>) {
        let group = self.group.clone();
        let summary = self.run_script("ck_group_coordinator.py", &["--group", &group]);
        let coordinator = summary["coordinator"].as_i64().unwrap_or(-1) as i32;
        let state = summary["state"].as_str().unwrap_or_default().to_string();
        let members = summary["members"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|m| m.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        (coordinator, state, members)
    }

    /// Checks the whole history; prints its figures.
    fn check(&mut self, fresh: usize) {
        self.save_outputs();
        let history = History {
            events: self.events(),
            ends: self.consumers.iter().map(|c| c.end).collect(),
            produced: self.produced(),
            fresh: Some(fresh),
            names: self.consumers.iter().map(|c| c.name.clone()).collect(),
        };
        match check_history(&history) {
            Ok(stats) => eprintln!(
                "consumer_groups {}: {} acknowledged messages; {} consumed, {} of them again \
                 after a handover; {} partition starts; {} assignments; {} commits acknowledged, \
                 {} failed; {} stray messages skipped; {} overlaps with a fenced member, which \
                 processed {} messages meanwhile; {:.1}s",
                self.label,
                history.produced.len(),
                stats.messages,
                stats.redelivered,
                stats.starts,
                stats.assignments,
                stats.commits,
                stats.failed_commits,
                stats.stray,
                stats.fenced_overlaps,
                stats.zombie_messages,
                self.started.elapsed().as_secs_f64()
            ),
            Err(problem) => self.fail(&problem),
        }
    }
}

/// One scenario at a time: each runs up to three nodes and five client processes, which is
/// all two cores can time fairly (session timeouts are wall-clock).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The scenario of the module doc.
fn share_a_topic(library: Library, cluster: bool) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut run = Run::new(library, cluster);
    run.create_topic();
    run.produce(0, INITIAL_MESSAGES);
    run.start_stream();
    let label = library.label();
    for index in 0..3 {
        run.start_consumer(&format!("{label}-{index}"));
    }
    run.wait_until(
        "three consumers own the six partitions, one owner each, and consume and commit",
        |run| run.settled_since(0.0),
    );
    let (_, state, members) = run.describe_group();
    if state != "STABLE" || members.len() != 3 {
        run.fail(&format!(
            "the group should be stable with 3 members: {state} {members:?}"
        ));
    }

    if cluster {
        let (coordinator, _, _) = run.describe_group();
        let Some(index) = usize::try_from(coordinator - 1)
            .ok()
            .filter(|index| *index < run.nodes.len())
        else {
            run.fail(&format!(
                "the coordinator is no node of the cluster: {coordinator}"
            ));
        };
        let killed_at = now();
        run.nodes[index].kill();
        run.killed_nodes.insert(index);
        run.mark(&format!("coordinator node {coordinator} killed (SIGKILL)"));
        run.wait_until(
            "every consumer consumes and has a commit acknowledged after the coordinator died",
            |run| {
                run.settled_since(0.0)
                    && run
                        .consumers
                        .iter()
                        .filter(|c| c.is_running())
                        .all(|c| c.consumed_and_committed_since(killed_at))
            },
        );
        let (successor, state, members) = run.describe_group();
        if successor == coordinator || state != "STABLE" || members.len() != 3 {
            run.fail(&format!(
                "after the coordinator's node died the group should have a new coordinator and \
                 stay stable with 3 members: coordinator {successor}, {state} {members:?}"
            ));
        }
        run.mark(&format!("node {successor} coordinates the group"));
    }

    let closed_at = now();
    run.close_consumer(0);
    run.wait_until(
        "the closed consumer's partitions moved to the other two",
        |run| run.settled_since(closed_at),
    );

    let killed_at = now();
    run.kill_consumer(1);
    run.wait_until(
        "the killed consumer's partitions moved to the last one",
        |run| run.settled_since(killed_at),
    );

    run.stop_stream();
    run.wait_until("everything acknowledged is consumed", Run::all_consumed);
    run.close_consumer(2);

    // A fresh consumer of the group resumes exactly from the committed offsets.
    run.produce(INITIAL_MESSAGES, FINAL_MESSAGES);
    run.start_consumer(&format!("{label}-fresh"));
    run.wait_until(
        "the fresh consumer consumed what was produced since",
        Run::all_consumed,
    );
    run.close_consumer(3);
    run.check(3);
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

// ---------------------------------------------------------------------------------------
// The checks fail on histories that break them.

mod history_checks {
    use super::*;

    fn ev(consumer: usize, ts: f64, kind: &str) -> Event {
        Event {
            consumer,
            kind: kind.to_string(),
            ts,
            partition: -1,
            offset: -1,
            partitions: Vec::new(),
            value: String::new(),
        }
    }

    fn assigned(consumer: usize, ts: f64, partitions: &[i32]) -> Event {
        Event {
            partitions: partitions.to_vec(),
            ..ev(consumer, ts, "assigned")
        }
    }

    fn revoked(consumer: usize, ts: f64, partitions: &[i32]) -> Event {
        Event {
            partitions: partitions.to_vec(),
            ..ev(consumer, ts, "revoked")
        }
    }

    fn message(consumer: usize, ts: f64, partition: i32, offset: i64) -> Event {
        Event {
            partition,
            offset,
            value: format!("v{partition}-{offset}"),
            ..ev(consumer, ts, "message")
        }
    }

    fn committed(consumer: usize, ts: f64, partition: i32, offset: i64) -> Event {
        Event {
            partition,
            offset,
            ..ev(consumer, ts, "committed")
        }
    }

    fn produced(partition: i32, offsets: std::ops::Range<i64>) -> Vec<Produced> {
        offsets
            .map(|offset| Produced {
                partition,
                offset,
                value: format!("v{partition}-{offset}"),
            })
            .collect()
    }

    /// Consumer 0 reads 0..4 of partition 0 and commits 3, then is killed; consumer 1
    /// takes over from the commit (reading 3 again) and reads on; consumer 2 is the fresh
    /// one and starts at consumer 1's last commit.
    fn good() -> History {
        History {
            events: vec![
                assigned(0, 1.0, &[0]),
                message(0, 1.1, 0, 0),
                message(0, 1.2, 0, 1),
                message(0, 1.3, 0, 2),
                committed(0, 1.4, 0, 3),
                message(0, 1.5, 0, 3),
                assigned(1, 9.0, &[0]),
                message(1, 9.1, 0, 3),
                message(1, 9.2, 0, 4),
                message(1, 9.3, 0, 5),
                committed(1, 9.4, 0, 6),
                revoked(1, 9.5, &[0]),
                assigned(2, 10.0, &[0]),
                message(2, 10.1, 0, 6),
            ],
            ends: vec![2.0, 9.6, 11.0],
            produced: produced(0, 0..7),
            fresh: Some(2),
            names: vec!["a".into(), "b".into(), "fresh".into()],
        }
    }

    fn check_fails(history: History, expected: &str) {
        match check_history(&history) {
            Ok(stats) => panic!("the check passed ({stats:?}), expected: {expected}"),
            Err(problem) => assert!(
                problem.contains(expected),
                "expected a failure about {expected:?}, got: {problem}"
            ),
        }
    }

    #[test]
    fn a_good_history_passes() {
        let stats = check_history(&good()).expect("a good history");
        assert_eq!(stats.messages, 8);
        assert_eq!(stats.redelivered, 1);
        assert_eq!(stats.starts, 3);
        assert_eq!(stats.commits, 2);
    }

    #[test]
    fn a_lost_message_fails() {
        let mut history = good();
        history.produced.extend(produced(0, 7..8));
        check_fails(history, "never consumed");
    }

    #[test]
    fn a_wrong_record_at_an_acknowledged_offset_fails() {
        let mut history = good();
        history.produced[4].value = "something else".into();
        check_fails(history, "was acknowledged");
    }

    #[test]
    fn two_owners_at_once_fail() {
        // Consumer 0 still held partition 0 when consumer 1 got it, and had a commit
        // acknowledged meanwhile: the broker took both for owners.
        let mut history = good();
        history.ends[0] = 9.5;
        history.events.insert(8, committed(0, 9.15, 0, 4));
        check_fails(history, "two owners");
    }

    #[test]
    fn a_cut_off_member_still_processing_but_fenced_passes() {
        // Consumer 0 could not reach the group any more and was replaced; it still read
        // offset 4, but no commit of it was acknowledged after consumer 1 took over.
        let mut history = good();
        history.ends[0] = 9.5;
        history.events.insert(8, message(0, 9.15, 0, 4));
        let stats = check_history(&history).expect("a fenced zombie");
        assert_eq!((stats.fenced_overlaps, stats.zombie_messages), (1, 1));
    }

    #[test]
    fn a_message_only_a_cut_off_member_read_is_lost() {
        let mut history = good();
        history.ends[0] = 9.5;
        history.events.insert(8, message(0, 9.15, 0, 7));
        history.produced.extend(produced(0, 7..8));
        check_fails(history, "never consumed");
    }

    #[test]
    fn a_start_below_the_last_commit_fails() {
        // Consumer 1 starts at 2 although 3 was committed: an acknowledged commit was lost.
        let mut history = good();
        history.events[7] = message(1, 9.1, 0, 2);
        history.events.insert(8, message(1, 9.15, 0, 3));
        check_fails(history, "started partition 0 at offset 2");
    }

    #[test]
    fn a_start_beyond_what_was_consumed_fails() {
        let mut history = good();
        history.events[7] = message(1, 9.1, 0, 5); // skips 4
        history.events.remove(8);
        check_fails(history, "the next offset nobody had consumed 4");
    }

    #[test]
    fn a_skip_within_an_assignment_fails() {
        let mut history = good();
        history.events.remove(8); // consumer 1 reads 3, then 5
        check_fails(history, "offset 5 after offset 3");
    }

    #[test]
    fn passing_over_an_offset_without_an_acknowledged_message_passes() {
        // Offset 4 holds a control batch (a new leader epoch's marker): no one reads it.
        let mut history = good();
        history.events.remove(8);
        history.produced.remove(4);
        check_history(&history).expect("a gap without acknowledged messages");
        // The same at the start of an assignment, and for the fresh consumer: offset 6 (the
        // last commit) holds a marker, the fresh consumer starts at 7.
        let mut history = good();
        history.produced[6].offset = 7;
        history.produced[6].value = "v0-7".into();
        history.events[13] = message(2, 10.1, 0, 7);
        check_history(&history).expect("a start past a marker");
    }

    #[test]
    fn a_lost_message_is_found_even_when_nobody_passed_over_it() {
        let mut history = good();
        history.produced.extend(produced(1, 0..1));
        check_fails(history, "never consumed");
    }

    #[test]
    fn a_commit_going_backwards_fails() {
        let mut history = good();
        history.events[10] = committed(1, 9.4, 0, 2);
        check_fails(history, "commit of offset 2");
    }

    #[test]
    fn a_fresh_consumer_past_the_commit_fails() {
        // The fresh consumer starts at 7 although 6 was committed and holds a message.
        let mut history = good();
        history.produced.extend(produced(0, 7..8));
        history.events[13] = message(2, 10.1, 0, 7);
        check_fails(history, "started partition 0 at offset 7");
    }

    #[test]
    fn a_fresh_consumer_not_at_the_commit_fails() {
        // The fresh consumer reads 5 again although 6 was committed.
        let mut history = good();
        history.events[13] = message(2, 10.1, 0, 5);
        history.events.push(message(2, 10.2, 0, 6));
        check_fails(history, "started partition 0 at offset 5");
    }
}
