//! Transactions with real clients, on one node and on a 3-node cluster.
//!
//! The transactional producer scripts (`tests/clients/ck_txn_produce.py`,
//! `kp_txn_produce.py`, `tests/js/txn_produce.js`) share one command line and print one JSON
//! line per event (see `ck_txn_produce.py`); `ck_txn_consume.py` reads a whole topic under
//! an isolation level; `ck_committed_offsets.py` fetches a group's committed offsets with
//! require_stable; `ck_txn_copier.py` is Kafka's transactions system-test copier.
//!
//! Per client, on one node and on a cluster (replication factor 3):
//! 1. A zombie producer opens a transaction; a second producer with the same transactional
//!    id fences it (its next send and its commit fail), then runs four transactions of ten
//!    messages over three partitions, each also committing a consumer group's offset
//!    (TxnOffsetCommit): commit, abort, commit, and one left open (the process exits hard).
//!    Plain messages are produced after it. A read_committed reader sees exactly the two
//!    committed transactions and the plain messages that precede the open transaction in
//!    their partition: nothing of the zombie, the aborted or the open transaction, and no
//!    plain message behind the open one. A read_uncommitted reader sees every acknowledged
//!    message, each at the offset it was acknowledged at.
//! 2. Another producer holds a transaction open (its messages acknowledged); plain messages
//!    produced meanwhile behind it stay hidden from read_committed until it commits; then
//!    both appear.
//! 3. The coordinator aborts the open transaction of 1 at its timeout: the plain messages
//!    behind it appear, its own never do; the group's committed offset is the one the last
//!    committed transaction wrote (not the aborted or the open one's).
//!
//! And Kafka's transactions system test: two copiers (consume-transform-produce, exactly
//! once) copy 20,000 records from a 2-partition topic to a 3-partition one in transactions
//! of 500 with random aborts while each node of the cluster and each copier is killed -9
//! and restarted in turn; the output read committed equals the input as a set, with no
//! duplicate, and the group's committed offsets are the input's end offsets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::process::Command;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use myelin_tests::clients::{self, StreamingClient, CLIENT_TIMEOUT};
use myelin_tests::node::{cluster_bootstrap, logs_dir, read_lossy, start_cluster, stored_batches};
use myelin_tests::{workspace_root, Node};
use serde_json::Value;

/// Messages per transaction of the producer scripts.
const TXN_MESSAGES: usize = 10;
/// Plain (non-transactional) messages produced behind an open transaction.
const PLAIN_MESSAGES: usize = 30;
/// The timeout of the transaction left open: long enough for the checks made while it is
/// open (a few seconds), short enough that the test does not wait long for its abort.
const OPEN_TIMEOUT_MS: u64 = 12_000;
/// How long the held transaction stays open.
const HOLD_SECONDS: u64 = 10;
/// Bound of each wait of the tests.
const WAIT: Duration = Duration::from_secs(60);

/// One scenario at a time: they time transactions by the wall clock on two shared cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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

    fn txn_producer(self, bootstrap: &str) -> Command {
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
struct Rec {
    partition: i32,
    offset: i64,
    value: String,
}

fn rec(v: &Value) -> Option<Rec> {
    Some(Rec {
        partition: i32::try_from(v["partition"].as_i64()?).ok()?,
        offset: v["offset"].as_i64()?,
        value: v["value"].as_str()?.to_string(),
    })
}

fn recs(v: &Value) -> Vec<Rec> {
    v.as_array()
        .map(|items| items.iter().filter_map(rec).collect())
        .unwrap_or_default()
}

/// The records of `records` a read_committed reader may see while `open` (a transaction's
/// acknowledged records) is undecided: those of partitions it did not write to, and those
/// before its first record in the others.
fn visible_before(records: &[Rec], open: &[Rec]) -> Vec<Rec> {
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
fn check_view(
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
struct TxnRun {
    /// Per transaction: (outcome, acknowledged records).
    transactions: Vec<(String, Vec<Rec>)>,
    zombie: Vec<Rec>,
    fenced_stages: Vec<String>,
    /// The wall-clock time of the "holding" line, if any.
    holding_ts: Option<f64>,
    summary: Option<Value>,
}

fn parse_txn_run(lines: &[String]) -> TxnRun {
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

struct Env {
    label: String,
    nodes: Vec<Node>,
    started: Instant,
    timeline: Vec<String>,
    /// Outputs of client runs, for failure messages.
    outputs: Vec<String>,
}

/// A consumer script's view: the records read and its final line.
struct View {
    records: Vec<Rec>,
    done: Value,
}

impl Env {
    fn new(label: &str, cluster: bool) -> Env {
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

    fn mark(&mut self, what: &str) {
        let line = format!("{:6.2}s {what}", self.started.elapsed().as_secs_f64());
        eprintln!("transactions {}: {line}", self.label);
        self.timeline.push(line);
    }

    fn bootstrap(&mut self) -> String {
        cluster_bootstrap(&mut self.nodes)
    }

    fn replication(&self) -> String {
        self.nodes.len().min(3).to_string()
    }

    fn python(&mut self, script: &str, args: &[&str]) -> Command {
        let mut command = Command::new(clients::python());
        command
            .arg(workspace_root().join("tests/clients").join(script))
            .arg("--bootstrap")
            .arg(self.bootstrap())
            .args(args);
        command
    }

    fn diagnostics(&self) -> String {
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

    fn fail(&self, what: &str) -> ! {
        panic!("{}: {what}\n{}", self.label, self.diagnostics());
    }

    /// Keeps a finished client's output for the failure messages and in target/e2e-logs.
    fn keep_output(&mut self, name: &str, shown: &str, finished: &clients::Finished) {
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
    fn run_ok(&mut self, name: &str, command: Command) -> Vec<String> {
        let shown = format!("{command:?}");
        let finished = clients::run(command, None, CLIENT_TIMEOUT);
        self.keep_output(name, &shown, &finished);
        if !finished.status.success() {
            self.fail(&format!("client {name} failed"));
        }
        finished.stdout.lines().map(str::to_string).collect()
    }

    fn create_topic(&mut self, topic: &str, partitions: u32) {
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
    fn produce_plain(&mut self, topic: &str, start: usize, count: usize) -> Vec<Rec> {
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

    fn consume_command(&mut self, topic: &str, isolation: &str) -> Command {
        self.python(
            "ck_txn_consume.py",
            &[
                "--topic",
                topic,
                "--isolation",
                isolation,
                "--idle",
                "2",
                "--timeout",
                "120",
            ],
        )
    }

    fn view(&mut self, name: &str, shown: &str, finished: &clients::Finished) -> View {
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
    fn consume(&mut self, topic: &str, isolation: &str) -> View {
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
    fn consume_both(&mut self, topic: &str) -> (View, View) {
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
    fn committed_offsets(&mut self, group: &str, topic: &str, partitions: &str) -> Value {
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
    fn check_nodes(&mut self, killed: Option<usize>) {
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
fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

fn origins(run: &TxnRun, plain: &[Rec], plain_name: &str) -> HashMap<String, String> {
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

/// The scenario of the module doc for one client.
fn transactions_scenario(library: Library, cluster: bool) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let label = format!(
        "{}{}",
        library.label(),
        if cluster { "_cluster" } else { "" }
    );
    let mut env = Env::new(&label, cluster);
    let open_topic = format!("txn-open-{label}");
    let held_topic = format!("txn-held-{label}");
    let group = format!("txn-offsets-{label}");
    env.create_topic(&open_topic, 3);
    env.create_topic(&held_topic, 3);

    // The group has no offset yet. Asking also creates `__consumer_offsets` (FindCoordinator
    // of the group): Myelin answers AddOffsetsToTxn COORDINATOR_NOT_AVAILABLE until it exists,
    // which kafkajs does not retry (its transaction fails), where Kafka derives the partition
    // from the configured partition count and never refuses.
    let before = env.committed_offsets(&group, &open_topic, "0");
    if before["0"].as_i64().is_some_and(|offset| offset >= 0) {
        env.fail(&format!("a fresh group has a committed offset: {before}"));
    }

    // 1. A fenced zombie, then commit, abort, commit, and a transaction left open.
    let bootstrap = env.bootstrap();
    let mut producer = library.txn_producer(&bootstrap);
    producer.args([
        "--topic",
        &open_topic,
        "--transactional-id",
        &format!("txn-{label}"),
        "--pattern",
        "cacx",
        "--messages",
        &TXN_MESSAGES.to_string(),
        "--fence",
        "--offsets-group",
        &group,
        "--transaction-timeout-ms",
        &OPEN_TIMEOUT_MS.to_string(),
    ]);
    let lines = env.run_ok("producer-cacx", producer);
    let opened = Instant::now();
    let run = parse_txn_run(&lines);
    env.mark("producer: zombie fenced; committed, aborted, committed, left one open");
    let outcomes: Vec<&str> = run.transactions.iter().map(|(o, _)| o.as_str()).collect();
    if outcomes != ["committed", "aborted", "committed", "open"] {
        env.fail(&format!(
            "the transactions ended {outcomes:?}, not committed, aborted, committed, open"
        ));
    }
    if run.zombie.is_empty() || !run.fenced_stages.iter().any(|s| s == "commit") {
        env.fail(&format!(
            "the zombie should have written ({} records acknowledged) and then failed to \
             commit once fenced (fenced stages: {:?})",
            run.zombie.len(),
            run.fenced_stages
        ));
    }
    for (index, (_, records)) in run.transactions.iter().enumerate() {
        if records.len() != TXN_MESSAGES {
            env.fail(&format!(
                "transaction {index}: {} of {TXN_MESSAGES} messages acknowledged",
                records.len()
            ));
        }
    }
    let plain = env.produce_plain(&open_topic, 5000, PLAIN_MESSAGES);
    let (rc, ru) = env.consume_both(&open_topic);
    let open_for = opened.elapsed();
    let origin = origins(&run, &plain, "plain message");
    let committed: Vec<Rec> = [&run.transactions[0].1, &run.transactions[2].1]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let open = run.transactions[3].1.clone();
    let plain_visible = visible_before(&plain, &open);
    assert!(
        plain_visible.len() < plain.len(),
        "some plain message must lie behind the open transaction"
    );
    let expected: Vec<Rec> = committed.iter().chain(&plain_visible).cloned().collect();
    if let Err(problem) = check_view(&rc.records, &expected, &origin) {
        env.fail(&format!(
            "read_committed while transaction 3 is open ({open_for:?} after the producer left \
             it, timeout {OPEN_TIMEOUT_MS} ms; {} plain messages behind it must stay hidden): \
             {problem}",
            plain.len() - plain_visible.len()
        ));
    }
    let everything: Vec<Rec> = run
        .zombie
        .iter()
        .chain(run.transactions.iter().flat_map(|(_, records)| records))
        .chain(&plain)
        .cloned()
        .collect();
    if let Err(problem) = check_view(&ru.records, &everything, &origin) {
        env.fail(&format!(
            "read_uncommitted should read every acknowledged message: {problem}"
        ));
    }

    // 2. A transaction held open hides what is written behind it until it commits.
    let mut held = library.txn_producer(&bootstrap);
    held.args([
        "--topic",
        &held_topic,
        "--transactional-id",
        &format!("txn-held-{label}"),
        "--pattern",
        "c",
        "--messages",
        &TXN_MESSAGES.to_string(),
        "--start",
        "100",
        "--hold",
        &HOLD_SECONDS.to_string(),
    ]);
    let shown = format!("{held:?}");
    let mut held = StreamingClient::spawn(held);
    let started = Instant::now();
    while !held.lines().iter().any(|line| line.contains("\"holding\"")) {
        if held.has_exited() || started.elapsed() > WAIT {
            let (lines, stderr) = held.kill();
            env.fail(&format!(
                "the held transaction's messages were never acknowledged: {shown}\n{}\n--- stderr ---\n{stderr}",
                lines.join("\n")
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
    env.mark("held producer: transaction acknowledged, holding");
    let plain_held = env.produce_plain(&held_topic, 7000, PLAIN_MESSAGES);
    let during = env.consume(&held_topic, "read_committed");
    let checked_at = wall_clock();
    if !held.wait_for_exit(Duration::from_secs(HOLD_SECONDS) + WAIT) {
        env.fail("the held producer did not finish");
    }
    let (lines, stderr) = held.kill();
    let finished_ok = lines
        .last()
        .is_some_and(|line| line.contains("\"summary\""));
    env.outputs.push(format!(
        "--- held producer: {shown}\n{}\n--- stderr ---\n{stderr}",
        lines.join("\n")
    ));
    if !finished_ok {
        env.fail("the held producer failed");
    }
    let held_run = parse_txn_run(&lines);
    env.mark("held producer committed");
    let held_records = held_run
        .transactions
        .first()
        .map(|(_, records)| records.clone())
        .unwrap_or_default();
    let origin = origins(&held_run, &plain_held, "plain message");
    let visible = visible_before(&plain_held, &held_records);
    assert!(
        visible.len() < plain_held.len(),
        "some plain message must lie behind the held transaction"
    );
    if let Err(problem) = check_view(&during.records, &visible, &origin) {
        env.fail(&format!(
            "read_committed while a transaction is held open ({} plain messages behind it must \
             stay hidden): {problem}",
            plain_held.len() - visible.len()
        ));
    }
    // The check above is sound only if the reader finished before the hold ended.
    if let Some(holding) = held_run.holding_ts {
        if checked_at > holding + HOLD_SECONDS as f64 {
            env.fail(&format!(
                "the read_committed reader finished {:.1} s after the hold began, after its end: \
                 the machine is too slow for this check (raise HOLD_SECONDS)",
                checked_at - holding
            ));
        }
    }
    let after = env.consume(&held_topic, "read_committed");
    let everything: Vec<Rec> = held_records.iter().chain(&plain_held).cloned().collect();
    if let Err(problem) = check_view(&after.records, &everything, &origin) {
        env.fail(&format!(
            "read_committed after the held transaction committed: {problem}"
        ));
    }

    // 3. The coordinator aborts the open transaction at its timeout.
    let origin = origins(&run, &plain, "plain message");
    let expected: Vec<Rec> = committed.iter().chain(&plain).cloned().collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let view = env.consume(&open_topic, "read_committed");
        match check_view(&view.records, &expected, &origin) {
            Ok(()) => break,
            Err(problem) if Instant::now() > deadline => env.fail(&format!(
                "read_committed {:?} after transaction 3 was left open with a timeout of \
                 {OPEN_TIMEOUT_MS} ms: {problem}",
                opened.elapsed()
            )),
            Err(_) => {
                env.check_nodes(None);
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
    env.mark(&format!(
        "the open transaction was aborted by its timeout, {:?} after it was left",
        opened.elapsed()
    ));
    let offsets = env.committed_offsets(&group, &open_topic, "0");
    let want = 3 * TXN_MESSAGES as i64;
    if offsets["0"].as_i64() != Some(want) {
        env.fail(&format!(
            "the group's offset should be {want}, where the last committed transaction (2) put \
             it, not transaction 1's (aborted, {}) or 3's (timed out, {}): {offsets}",
            2 * TXN_MESSAGES,
            4 * TXN_MESSAGES
        ));
    }
}

#[test]
fn confluent_kafka_transactions_are_atomic_isolated_and_fenced_on_one_node() {
    transactions_scenario(Library::ConfluentKafka, false);
}

#[test]
fn kafka_python_transactions_are_atomic_isolated_and_fenced_on_one_node() {
    transactions_scenario(Library::KafkaPython, false);
}

#[test]
fn kafkajs_transactions_are_atomic_isolated_and_fenced_on_one_node() {
    transactions_scenario(Library::Kafkajs, false);
}

#[test]
fn confluent_kafka_transactions_are_atomic_isolated_and_fenced_on_a_cluster() {
    transactions_scenario(Library::ConfluentKafka, true);
}

#[test]
fn kafka_python_transactions_are_atomic_isolated_and_fenced_on_a_cluster() {
    transactions_scenario(Library::KafkaPython, true);
}

#[test]
fn kafkajs_transactions_are_atomic_isolated_and_fenced_on_a_cluster() {
    transactions_scenario(Library::Kafkajs, true);
}

// ---------------------------------------------------------------------------------------
// Kafka's transactions system test: copiers under node and copier kills.

const COPY_INPUT: &str = "copy-input";
const COPY_OUTPUT: &str = "copy-output";
const COPY_GROUP: &str = "copy-group";
const COPY_RECORDS: usize = 20_000;
const COPIERS: usize = 2;
/// Records per second per copier: the copy lasts about a minute, so every fault lands in it.
const COPY_RATE: &str = "150";

/// Checks that `output` holds each input value exactly once and nothing else.
fn check_copy(input: &[Rec], output: &[Rec]) -> Result<(), String> {
    let want: BTreeSet<&str> = input.iter().map(|r| r.value.as_str()).collect();
    let mut places: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for r in output {
        places
            .entry(r.value.as_str())
            .or_default()
            .push((r.partition, r.offset));
    }
    let duplicated: Vec<_> = places.iter().filter(|(_, at)| at.len() > 1).collect();
    let unexpected: Vec<_> = places
        .keys()
        .filter(|value| !want.contains(*value))
        .collect();
    let missing: Vec<_> = want
        .iter()
        .filter(|value| !places.contains_key(*value))
        .collect();
    if duplicated.is_empty() && unexpected.is_empty() && missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the output ({} records) is not the input ({} records) exactly once: {} values \
         duplicated, e.g. {:?}; {} missing, e.g. {:?}; {} never in the input, e.g. {:?}",
        output.len(),
        input.len(),
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)],
        missing.len(),
        &missing[..missing.len().min(10)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)],
    ))
}

/// Each partition's log end offset on a node's disk, by partition directory name
/// (`topic-partition`), internal topics included.
fn log_ends(node: &Node) -> BTreeMap<String, i64> {
    let mut ends = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(node.data_dir().join("topics")) else {
        return ends;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = partition.parse() else {
            continue;
        };
        let end = stored_batches(node.data_dir(), topic, partition)
            .0
            .last()
            .map_or(0, |h| h.base_offset + i64::from(h.last_offset_delta) + 1);
        ends.insert(name, end);
    }
    ends
}

/// One copier's processes: the current one and those before it (killed or finished).
struct Copier {
    index: usize,
    runs: usize,
    client: Option<StreamingClient>,
    /// Finished processes: (name, stdout lines, stderr, how it ended).
    past: Vec<(String, Vec<String>, String, String)>,
}

impl Copier {
    fn transactional_id(&self) -> String {
        format!("copier-{}", self.index)
    }

    fn name(&self) -> String {
        format!("copier-{}.run{}", self.index, self.runs)
    }

    fn start(&mut self, env: &mut Env, end_offsets: &str) {
        self.runs += 1;
        let seed = (self.index * 100 + self.runs).to_string();
        let command = env.python(
            "ck_txn_copier.py",
            &[
                "--input-topic",
                COPY_INPUT,
                "--output-topic",
                COPY_OUTPUT,
                "--group",
                COPY_GROUP,
                "--transactional-id",
                &self.transactional_id(),
                "--client-name",
                &self.name(),
                "--transaction-size",
                "500",
                "--abort-probability",
                "0.1",
                "--seed",
                &seed,
                "--end-offsets",
                end_offsets,
                "--max-rate",
                COPY_RATE,
                "--session-timeout-ms",
                "6000",
                "--max-seconds",
                "400",
            ],
        );
        self.client = Some(StreamingClient::spawn(command));
        env.mark(&format!("{} started", self.name()));
    }

    /// Kills the current process (SIGKILL) and keeps its output.
    fn stop(&mut self, fate: &str) {
        if let Some(client) = self.client.take() {
            let (lines, stderr) = client.kill();
            self.past
                .push((self.name(), lines, stderr, fate.to_string()));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.client
            .as_ref()
            .map(StreamingClient::lines)
            .unwrap_or_default()
    }

    /// Transactions the current process committed.
    fn committed(&self) -> usize {
        self.lines()
            .iter()
            .filter(|line| line.contains("\"event\": \"committed\""))
            .count()
    }

    /// Transactions committed by every process of this copier.
    fn committed_total(&self) -> usize {
        self.committed()
            + self
                .past
                .iter()
                .flat_map(|(_, lines, _, _)| lines)
                .filter(|line| line.contains("\"event\": \"committed\""))
                .count()
    }

    /// None while running; else whether it finished with a "done" line.
    fn exited(&mut self) -> Option<bool> {
        let client = self.client.as_mut()?;
        if !client.has_exited() {
            return None;
        }
        self.stop("exited");
        let (_, lines, _, fate) = self.past.last_mut().expect("just stopped");
        let done = lines
            .last()
            .is_some_and(|line| line.contains("\"event\": \"done\""));
        *fate = if done { "finished" } else { "failed" }.to_string();
        Some(done)
    }

    fn describe(&self) -> String {
        let mut text = String::new();
        for (name, lines, stderr, fate) in &self.past {
            let events: Vec<&String> = lines
                .iter()
                .filter(|line| !line.contains("\"progress\""))
                .collect();
            let _ = writeln!(
                text,
                "--- {name} ({fate}): last events ---\n{}",
                events[events.len().saturating_sub(12)..]
                    .iter()
                    .map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let stderr: Vec<&str> = stderr.lines().collect();
            let _ = writeln!(
                text,
                "--- {name} stderr (last lines) ---\n{}",
                stderr[stderr.len().saturating_sub(15)..].join("\n")
            );
            let path = logs_dir().join(format!("transactions.copier.{name}.out"));
            let _ = std::fs::write(
                path,
                format!("{}\n--- stderr ---\n{stderr:?}", lines.join("\n")),
            );
        }
        text
    }
}

struct CopyRun {
    env: Env,
    copiers: Vec<Copier>,
    end_offsets: String,
}

impl CopyRun {
    fn fail(&mut self, what: &str) -> ! {
        for copier in &mut self.copiers {
            copier.stop("killed by the failing test");
        }
        let copiers: String = self.copiers.iter().map(Copier::describe).collect();
        self.env.fail(&format!("{what}\n{copiers}"));
    }

    fn committed_total(&self) -> usize {
        self.copiers.iter().map(Copier::committed_total).sum()
    }

    /// Polls `done` until it holds; fails after [`WAIT`] (or `limit`), or at once if a node
    /// (other than `down`) or a copier exits unexpectedly.
    fn wait_until(
        &mut self,
        what: &str,
        down: Option<usize>,
        limit: Duration,
        done: impl Fn(&CopyRun) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            if done(self) {
                self.env.mark(&format!("done: {what}"));
                return;
            }
            for index in 0..self.copiers.len() {
                match self.copiers[index].exited() {
                    Some(false) => {
                        self.fail(&format!("copier {index} failed while waiting: {what}"))
                    }
                    Some(true) => self.env.mark(&format!("copier {index} finished")),
                    None => {}
                }
            }
            for index in 0..self.env.nodes.len() {
                if Some(index) != down && !self.env.nodes[index].is_running() {
                    self.fail(&format!("node {} exited while waiting: {what}", index + 1));
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("not within {limit:?}: {what}"));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn copying(&self) -> bool {
        self.copiers.iter().any(|c| c.client.is_some())
    }

    /// Kill -9 a node, restart it after a moment, wait until it holds every partition's log
    /// up to where the survivors held it at the restart, and a copier commits again.
    fn bounce_node(&mut self, index: usize) {
        if !self.copying() {
            self.fail("the copiers finished before the faults: slow them down (COPY_RATE)");
        }
        self.env.nodes[index].kill();
        self.env
            .mark(&format!("node {} killed (SIGKILL)", index + 1));
        let before = self.committed_total();
        self.wait_until(
            "a copier commits while the node is down",
            Some(index),
            WAIT,
            |run| run.committed_total() > before,
        );
        self.env.nodes[index].restart();
        self.env.mark(&format!("node {} restarted", index + 1));
        let mut target: BTreeMap<String, i64> = BTreeMap::new();
        for (other, node) in self.env.nodes.iter().enumerate() {
            if other == index {
                continue;
            }
            for (partition, end) in log_ends(node) {
                let entry = target.entry(partition).or_insert(end);
                *entry = (*entry).min(end);
            }
        }
        self.wait_until(
            &format!("node {} caught up", index + 1),
            None,
            WAIT,
            |run| {
                let ends = log_ends(&run.env.nodes[index]);
                target
                    .iter()
                    .all(|(partition, end)| ends.get(partition).copied().unwrap_or(0) >= *end)
            },
        );
        let before = self.committed_total();
        self.wait_until("a copier commits after the restart", None, WAIT, |run| {
            run.committed_total() > before
        });
    }

    /// Kill -9 a copier, restart it with the same transactional id, wait until it commits.
    fn bounce_copier(&mut self, index: usize) {
        if self.copiers[index].client.is_none() {
            self.fail(&format!(
                "copier {index} finished before its kill: slow the copiers down (COPY_RATE)"
            ));
        }
        self.copiers[index].stop("killed -9");
        self.env.mark(&format!("copier {index} killed (SIGKILL)"));
        let end_offsets = self.end_offsets.clone();
        self.copiers[index].start(&mut self.env, &end_offsets);
        self.wait_until(
            &format!("the restarted copier {index} commits"),
            None,
            WAIT,
            |run| run.copiers[index].committed() > 0,
        );
    }
}

#[test]
fn transactional_copiers_copy_exactly_once_while_nodes_and_copiers_are_killed() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut env = Env::new("copier", true);
    env.create_topic(COPY_INPUT, 2);
    env.create_topic(COPY_OUTPUT, 3);
    let produced = env.produce_plain(COPY_INPUT, 0, COPY_RECORDS);
    let input = env.consume(COPY_INPUT, "read_committed");
    if let Err(problem) = check_view(&input.records, &produced, &HashMap::new()) {
        env.fail(&format!("the input as produced: {problem}"));
    }
    let end: BTreeMap<String, i64> = input.done["end_offsets"]
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(p, o)| Some((p.clone(), o.as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    let end_offsets = end
        .iter()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut run = CopyRun {
        env,
        copiers: (0..COPIERS)
            .map(|index| Copier {
                index,
                runs: 0,
                client: None,
                past: Vec::new(),
            })
            .collect(),
        end_offsets: end_offsets.clone(),
    };
    for index in 0..COPIERS {
        run.copiers[index].start(&mut run.env, &end_offsets);
    }
    run.wait_until("both copiers commit transactions", None, WAIT, |run| {
        run.copiers.iter().all(|c| c.committed() > 0)
    });

    run.bounce_node(0);
    run.bounce_copier(0);
    run.bounce_node(1);
    run.bounce_copier(1);
    run.bounce_node(2);
    if !run.copying() {
        run.fail("the copiers finished during the faults: slow them down (COPY_RATE)");
    }
    run.env
        .mark("every node and copier was killed and restarted once; the copy goes on");

    run.wait_until(
        "both copiers finish: the group's offsets reached the input's end",
        None,
        Duration::from_secs(300),
        |run| !run.copying(),
    );
    for copier in &run.copiers {
        let _ = copier.describe(); // saves the outputs to target/e2e-logs
    }
    let output = run.env.consume(COPY_OUTPUT, "read_committed");
    if let Err(problem) = check_copy(&input.records, &output.records) {
        run.fail(&problem);
    }
    let offsets = run.env.committed_offsets(COPY_GROUP, COPY_INPUT, "0,1");
    let committed: BTreeMap<String, i64> = offsets
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(p, o)| Some((p.clone(), o.as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    if committed != end {
        run.fail(&format!(
            "the group's committed offsets {committed:?} should be the input's end offsets {end:?}"
        ));
    }
    let transactions: usize = run.committed_total();
    run.env.mark(&format!(
        "the output is the input exactly once ({} records, {transactions} transactions committed)",
        output.records.len()
    ));
}

// ---------------------------------------------------------------------------------------
// The checks fail on views that break them.

mod view_checks {
    use super::*;

    fn r(partition: i32, offset: i64, value: &str) -> Rec {
        Rec {
            partition,
            offset,
            value: value.to_string(),
        }
    }

    #[test]
    fn check_copy_refuses_a_missing_a_duplicated_or_a_foreign_value() {
        let input = [r(0, 0, "a"), r(1, 0, "b")];
        assert!(check_copy(&input, &[r(2, 5, "b"), r(0, 9, "a")]).is_ok());
        assert!(check_copy(&input, &[r(2, 5, "b")]).is_err());
        assert!(check_copy(&input, &[r(2, 5, "b"), r(0, 9, "a"), r(1, 1, "a")]).is_err());
        assert!(check_copy(&input, &[r(2, 5, "b"), r(0, 9, "a"), r(1, 1, "c")]).is_err());
    }

    #[test]
    fn visible_before_keeps_what_precedes_the_open_transaction_per_partition() {
        let records = [r(0, 1, "a"), r(0, 5, "b"), r(1, 9, "c"), r(2, 0, "d")];
        let open = [r(0, 3, "x"), r(0, 4, "y"), r(2, 0, "z")];
        assert_eq!(
            visible_before(&records, &open),
            vec![r(0, 1, "a"), r(1, 9, "c")]
        );
    }

    #[test]
    fn check_view_accepts_exactly_the_expected_records() {
        let expected = [r(0, 1, "a"), r(1, 2, "b")];
        let view = [r(1, 2, "b"), r(0, 1, "a")];
        assert!(check_view(&view, &expected, &HashMap::new()).is_ok());
    }

    #[test]
    fn check_view_refuses_an_extra_a_missing_a_moved_or_a_duplicated_record() {
        let expected = [r(0, 1, "a"), r(1, 2, "b")];
        let origin: HashMap<String, String> =
            [("x".to_string(), "aborted transaction 1".to_string())].into();
        let extra = [r(0, 1, "a"), r(1, 2, "b"), r(0, 3, "x")];
        let err = check_view(&extra, &expected, &origin).unwrap_err();
        assert!(err.contains("aborted transaction 1"), "{err}");
        assert!(check_view(&[r(0, 1, "a")], &expected, &origin).is_err());
        assert!(check_view(&[r(0, 1, "a"), r(1, 3, "b")], &expected, &origin).is_err());
        assert!(check_view(
            &[r(0, 1, "a"), r(1, 2, "b"), r(1, 2, "b")],
            &expected,
            &origin
        )
        .is_err());
    }
}
