//! Shared by the transaction tests (`transactions.rs`, `transactions_copier.rs`): the
//! records clients report, the checks on a reader's view, and the environment (nodes,
//! client runs, diagnostics).

#![allow(dead_code)] // each test file uses its part

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use myelin_tests::clients::{self, CLIENT_TIMEOUT};
use myelin_tests::node::{cluster_bootstrap, logs_dir, read_lossy, start_cluster};
use myelin_tests::{workspace_root, Node};
use serde_json::Value;

/// Messages per transaction of the producer scripts.
pub const TXN_MESSAGES: usize = 10;
/// Plain (non-transactional) messages produced behind an open transaction.
pub const PLAIN_MESSAGES: usize = 30;
/// The timeout of the transaction left open: long enough for the checks made while it is
/// open (a few seconds), short enough that the test does not wait long for its abort.
pub const OPEN_TIMEOUT_MS: u64 = 12_000;
/// How long the held transaction stays open.
pub const HOLD_SECONDS: u64 = 12;
/// Bound of each wait of the tests.
pub const WAIT: Duration = Duration::from_secs(60);

/// One scenario at a time: they time transactions by the wall clock on two shared cores.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone, Copy)]
pub enum Library {
    ConfluentKafka,
    KafkaPython,
    Kafkajs,
}

impl Library {
    pub fn label(self) -> &'static str {
        match self {
            Library::ConfluentKafka => "confluent_kafka",
            Library::KafkaPython => "kafka_python",
            Library::Kafkajs => "kafkajs",
        }
    }

    pub fn txn_producer(self, bootstrap: &str) -> Command {
        let root = workspace_root();
        let mut command = match self {
            Library::ConfluentKafka => {
                let mut command = Command::new(clients::python());
                command.arg(root.join("tests/clients/ck_txn_produce.py"));
                command
            }
            Library::KafkaPython => {
                let mut command = Command::new(clients::python());
                command.arg(root.join("tests/clients/kp_txn_produce.py"));
                command
            }
            Library::Kafkajs => {
                let mut command = Command::new(clients::node_js());
                command.arg(root.join("tests/js/txn_produce.js"));
                command
            }
        };
        command.args(["--bootstrap", bootstrap]);
        command
    }
}

// ---------------------------------------------------------------------------------------
// Records and the checks on a reader's view (pure, unit-tested at the end of the file).

/// A record as acknowledged to a producer or read by a consumer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

pub fn rec(v: &Value) -> Option<Rec> {
    Some(Rec {
        partition: i32::try_from(v["partition"].as_i64()?).ok()?,
        offset: v["offset"].as_i64()?,
        value: v["value"].as_str()?.to_string(),
    })
}

pub fn recs(v: &Value) -> Vec<Rec> {
    v.as_array()
        .map(|items| items.iter().filter_map(rec).collect())
        .unwrap_or_default()
}

/// The records of `records` a read_committed reader may see while `open` (a transaction's
/// acknowledged records) is undecided: those of partitions it did not write to, and those
/// before its first record in the others.
pub fn visible_before(records: &[Rec], open: &[Rec]) -> Vec<Rec> {
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    for r in open {
        let entry = first.entry(r.partition).or_insert(r.offset);
        *entry = (*entry).min(r.offset);
    }
    records
        .iter()
        .filter(|r| first.get(&r.partition).is_none_or(|f| r.offset < *f))
        .cloned()
        .collect()
}

/// Checks that a reader's `view` holds exactly `expected`: each value once, at the partition
/// and offset it was acknowledged at, nothing else. `origin` names where a value came from
/// (e.g. "aborted transaction 1"), for the message.
pub fn check_view(
    view: &[Rec],
    expected: &[Rec],
    origin: &HashMap<String, String>,
) -> Result<(), String> {
    let want: BTreeMap<&str, &Rec> = expected.iter().map(|r| (r.value.as_str(), r)).collect();
    let mut seen: BTreeMap<&str, &Rec> = BTreeMap::new();
    let mut problems = Vec::new();
    for r in view {
        if let Some(previous) = seen.insert(r.value.as_str(), r) {
            problems.push(format!("read twice: {previous:?} and {r:?}"));
            continue;
        }
        match want.get(r.value.as_str()) {
            None => problems.push(format!(
                "read but not expected ({}): {r:?}",
                origin
                    .get(&r.value)
                    .map(String::as_str)
                    .unwrap_or("never acknowledged")
            )),
            Some(w) if (w.partition, w.offset) != (r.partition, r.offset) => problems.push(
                format!("read at another place than acknowledged: read {r:?}, acknowledged {w:?}"),
            ),
            Some(_) => {}
        }
    }
    for r in expected {
        if !seen.contains_key(r.value.as_str()) {
            problems.push(format!(
                "expected but not read ({}): {r:?}",
                origin.get(&r.value).map(String::as_str).unwrap_or("?")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let count = problems.len();
    problems.truncate(15);
    Err(format!(
        "{count} problems (read {}, expected {}), e.g.:\n  {}",
        view.len(),
        expected.len(),
        problems.join("\n  ")
    ))
}

/// What a transactional producer script printed.
#[derive(Debug, Default)]
pub struct TxnRun {
    /// Per transaction: (outcome, acknowledged records).
    pub transactions: Vec<(String, Vec<Rec>)>,
    pub zombie: Vec<Rec>,
    pub fenced_stages: Vec<String>,
    /// The wall-clock time of the "holding" line, if any.
    pub holding_ts: Option<f64>,
    pub summary: Option<Value>,
}

pub fn parse_txn_run(lines: &[String]) -> TxnRun {
    let mut run = TxnRun::default();
    for v in lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
    {
        match v["event"].as_str() {
            Some("transaction") => run.transactions.push((
                v["outcome"].as_str().unwrap_or_default().to_string(),
                recs(&v["deliveries"]),
            )),
            Some("zombie_open") => run.zombie = recs(&v["deliveries"]),
            Some("fenced") => run
                .fenced_stages
                .push(v["stage"].as_str().unwrap_or_default().to_string()),
            Some("holding") => run.holding_ts = v["ts"].as_f64(),
            Some("summary") => run.summary = Some(v),
            _ => {}
        }
    }
    run
}

// ---------------------------------------------------------------------------------------
// The environment: nodes, client runs, diagnostics.

pub struct Env {
    pub label: String,
    pub nodes: Vec<Node>,
    pub started: Instant,
    pub timeline: Vec<String>,
    /// Outputs of client runs, for failure messages.
    pub outputs: Vec<String>,
}

/// A consumer script's view: the records read and its final line.
pub struct View {
    pub records: Vec<Rec>,
    pub done: Value,
}

impl Env {
    pub fn new(label: &str, cluster: bool) -> Env {
        let log_name = format!("transactions.{label}");
        let nodes = if cluster {
            start_cluster(&log_name, 3)
        } else {
            vec![Node::start(&log_name)]
        };
        Env {
            label: label.to_string(),
            nodes,
            started: Instant::now(),
            timeline: Vec::new(),
            outputs: Vec::new(),
        }
    }

    pub fn mark(&mut self, what: &str) {
        let line = format!("{:6.2}s {what}", self.started.elapsed().as_secs_f64());
        eprintln!("transactions {}: {line}", self.label);
        self.timeline.push(line);
    }

    pub fn bootstrap(&mut self) -> String {
        cluster_bootstrap(&mut self.nodes)
    }

    pub fn replication(&self) -> String {
        self.nodes.len().min(3).to_string()
    }

    pub fn python(&mut self, script: &str, args: &[&str]) -> Command {
        let mut command = Command::new(clients::python());
        command
            .arg(workspace_root().join("tests/clients").join(script))
            .arg("--bootstrap")
            .arg(self.bootstrap())
            .args(args);
        command
    }

    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "--- timeline ---\n{}", self.timeline.join("\n"));
        for output in self.outputs.iter().rev().take(4).rev() {
            let _ = writeln!(text, "{output}");
        }
        for node in &self.nodes {
            let _ = writeln!(text, "{}", node.diagnostics());
        }
        let _ = writeln!(
            text,
            "(node logs and client outputs: {}/transactions.{}.*)",
            logs_dir().display(),
            self.label
        );
        text
    }

    pub fn fail(&self, what: &str) -> ! {
        panic!("{}: {what}\n{}", self.label, self.diagnostics());
    }

    /// Keeps a finished client's output for the failure messages and in target/e2e-logs.
    pub fn keep_output(&mut self, name: &str, shown: &str, finished: &clients::Finished) {
        let text = format!("--- {name}: {shown}\n{}", finished.describe());
        let path = logs_dir().join(format!("transactions.{}.{name}.out", self.label));
        let _ = std::fs::write(
            path,
            format!(
                "{shown}\n{}\n--- stderr ---\n{}",
                finished.stdout, finished.stderr
            ),
        );
        self.outputs.push(text);
    }

    /// Runs a client to completion; fails the test unless it exits 0. Returns its stdout lines.
    pub fn run_ok(&mut self, name: &str, command: Command) -> Vec<String> {
        let shown = format!("{command:?}");
        let finished = clients::run(command, None, CLIENT_TIMEOUT);
        self.keep_output(name, &shown, &finished);
        if !finished.status.success() {
            self.fail(&format!("client {name} failed"));
        }
        finished.stdout.lines().map(str::to_string).collect()
    }

    pub fn create_topic(&mut self, topic: &str, partitions: u32) {
        let replication = self.replication();
        let partitions = partitions.to_string();
        let command = self.python(
            "ck_create_topic.py",
            &[
                "--topic",
                topic,
                "--partitions",
                &partitions,
                "--replication-factor",
                &replication,
            ],
        );
        self.run_ok(&format!("create-{topic}"), command);
    }

    /// Produces keyed messages `start..start + count` without a transaction (acks=all).
    pub fn produce_plain(&mut self, topic: &str, start: usize, count: usize) -> Vec<Rec> {
        let command = self.python(
            "ck_produce.py",
            &[
                "--topic",
                topic,
                "--start",
                &start.to_string(),
                "--messages",
                &count.to_string(),
            ],
        );
        let lines = self.run_ok(&format!("plain-{topic}-{start}"), command);
        let summary = lines
            .last()
            .and_then(|line| serde_json::from_str::<Value>(line).ok())
            .unwrap_or_default();
        let deliveries = recs(&summary["deliveries"]);
        if deliveries.len() != count {
            self.fail(&format!(
                "{} of {count} plain messages acknowledged",
                deliveries.len()
            ));
        }
        self.mark(&format!("produced {count} plain messages to {topic}"));
        deliveries
    }

    pub fn consume_command(&mut self, topic: &str, isolation: &str) -> Command {
        self.python(
            "ck_txn_consume.py",
            &[
                "--topic",
                topic,
                "--isolation",
                isolation,
                "--idle",
                "1.5",
                "--timeout",
                "120",
            ],
        )
    }

    pub fn view(&mut self, name: &str, shown: &str, finished: &clients::Finished) -> View {
        self.keep_output(name, shown, finished);
        if !finished.status.success() {
            self.fail(&format!("consumer {name} failed"));
        }
        let lines: Vec<Value> = finished
            .stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let records = lines
            .iter()
            .filter(|v| v["event"] == "message")
            .filter_map(rec)
            .collect();
        let done = lines.last().cloned().unwrap_or_default();
        if done["event"] != "done" {
            self.fail(&format!("consumer {name} printed no done line"));
        }
        View { records, done }
    }

    /// Reads the whole topic under `isolation`.
    pub fn consume(&mut self, topic: &str, isolation: &str) -> View {
        let command = self.consume_command(topic, isolation);
        let shown = format!("{command:?}");
        let finished = clients::run(command, None, Duration::from_secs(180));
        let view = self.view(&format!("{isolation}-{topic}"), &shown, &finished);
        self.mark(&format!(
            "{isolation} reader of {topic}: {} records",
            view.records.len()
        ));
        view
    }

    /// Reads the whole topic under read_committed and read_uncommitted at once.
    pub fn consume_both(&mut self, topic: &str) -> (View, View) {
        let committed = self.consume_command(topic, "read_committed");
        let uncommitted = self.consume_command(topic, "read_uncommitted");
        let shown = (format!("{committed:?}"), format!("{uncommitted:?}"));
        let (a, b) = thread::scope(|scope| {
            let a = scope.spawn(|| clients::run(committed, None, CLIENT_TIMEOUT));
            let b = scope.spawn(|| clients::run(uncommitted, None, CLIENT_TIMEOUT));
            (
                a.join().expect("read_committed reader"),
                b.join().expect("read_uncommitted reader"),
            )
        });
        let rc = self.view(&format!("read_committed-{topic}"), &shown.0, &a);
        let ru = self.view(&format!("read_uncommitted-{topic}"), &shown.1, &b);
        self.mark(&format!(
            "readers of {topic}: read_committed {} records, read_uncommitted {}",
            rc.records.len(),
            ru.records.len()
        ));
        (rc, ru)
    }

    /// A group's committed offsets (OffsetFetch with require_stable).
    pub fn committed_offsets(&mut self, group: &str, topic: &str, partitions: &str) -> Value {
        let command = self.python(
            "ck_committed_offsets.py",
            &[
                "--group",
                group,
                "--topic",
                topic,
                "--partitions",
                partitions,
            ],
        );
        let lines = self.run_ok(&format!("offsets-{group}"), command);
        let summary: Value = lines
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_default();
        self.mark(&format!(
            "committed offsets of {group}: {}",
            summary["offsets"]
        ));
        summary["offsets"].clone()
    }

    /// Fails the test if a node that should run has exited.
    pub fn check_nodes(&mut self, killed: Option<usize>) {
        for index in 0..self.nodes.len() {
            if Some(index) != killed && !self.nodes[index].is_running() {
                let log = read_lossy(self.nodes[index].log_path());
                let hint = if log.contains("shutting down") {
                    " (its log ends with a clean shutdown: something outside this test sent it \
                     SIGTERM or SIGINT)"
                } else {
                    ""
                };
                self.fail(&format!("node {} exited{hint}", index + 1));
            }
        }
    }
}

/// Wall-clock seconds, the clock the client scripts stamp their lines with.
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

pub fn origins(run: &TxnRun, plain: &[Rec], plain_name: &str) -> HashMap<String, String> {
    let mut origin = HashMap::new();
    for r in &run.zombie {
        origin.insert(
            r.value.clone(),
            "the fenced zombie's transaction".to_string(),
        );
    }
    for (index, (outcome, records)) in run.transactions.iter().enumerate() {
        for r in records {
            origin.insert(r.value.clone(), format!("{outcome} transaction {index}"));
        }
    }
    for r in plain {
        origin.insert(r.value.clone(), plain_name.to_string());
    }
    origin
}
