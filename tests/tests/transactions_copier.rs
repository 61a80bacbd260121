//! Kafka's transactions system test with real clients, on a 3-node cluster: two copiers
//! (`tests/clients/ck_txn_copier.py`, confluent-kafka: consume-transform-produce, exactly
//! once) copy 20,000 records from a 2-partition topic to a 3-partition one in transactions
//! of 500 with random aborts, while each node of the cluster and each copier is killed -9
//! and restarted in turn; the output read committed equals the input as a set, with no
//! duplicate, and the group's committed offsets are the input's end offsets.
//!
//! It found three broker bugs, all fixed: transactional batches pipelined behind a
//! verification, in one partition and across requests, refused OUT_OF_ORDER_SEQUENCE; and
//! (with the simulator) a marker skipped where a transaction wrote nothing. Two failures
//! are the client's own and are handled as an application must (see `ClientFailure`):
//! librdkafka's fatal "sequence desynchronization" after a leader dies mid-write, and its
//! send_offsets_to_transaction hanging past its timeout after the group coordinator was
//! killed; the copier is restarted, at most three times per run. On failure the batches on every node's disk
//! and each copier's output are written to target/e2e-logs (LIBRDKAFKA_DEBUG=eos,msg adds
//! the client's trace). Alone: `cargo test -p myelin-tests --test transactions_copier`.

mod txn_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use myelin_tests::clients::StreamingClient;
use myelin_tests::node::{logs_dir, stored_batches};
use myelin_tests::Node;
use txn_support::*;

// ---------------------------------------------------------------------------------------
// Kafka's transactions system test: copiers under node and copier kills.

const COPY_INPUT: &str = "copy-input";
const COPY_OUTPUT: &str = "copy-output";
const COPY_GROUP: &str = "copy-group";
const COPY_RECORDS: usize = 20_000;
const COPIERS: usize = 2;
/// Records per second per copier: the copy lasts about a minute, so every fault lands in it.
const COPY_RATE: &str = "200";
/// Copier restarts tolerated after a known client failure (`ClientFailure`), over the whole
/// run (each is seen in about one run of six).
const CLIENT_FAILURE_RESTARTS_MAX: usize = 3;

/// A copier's exit that is librdkafka's own failure, not the broker's. An application's
/// only way on is a new producer with the same transactional id, whose InitProducerId
/// fences the dead one and aborts its transaction.
#[derive(Debug, Clone, Copy)]
enum ClientFailure {
    /// Fatal "sequence desynchronization" (OUT_OF_ORDER_SEQUENCE_NUMBER on the first batch
    /// in flight after a write that failed in transport and may have been persisted). The
    /// client rebuilds the retried batches with other bounds, which no broker can take as
    /// duplicates; it happens against Kafka too when a leader dies (confluent-kafka-go#830,
    /// librdkafka#3584).
    SequenceDesynchronization,
    /// A transactional call that outlived its own timeout (the copier's guard exits 4):
    /// send_offsets_to_transaction waits forever once the group coordinator it cached, killed,
    /// has left the Metadata's brokers (librdkafka#5511, fixed after 2.16; #5456). Kafka
    /// leaves a dead broker out of Metadata too (after broker.session.timeout.ms).
    CallHung,
}

impl ClientFailure {
    /// The known failure a copier's last output line reports, if any.
    fn of_last_line(line: &str) -> Option<Self> {
        if line.contains("OUT_OF_ORDER_SEQUENCE_NUMBER")
            && line.contains("sequence desynchronization")
        {
            Some(Self::SequenceDesynchronization)
        } else if line.contains("client call hung past its") {
            Some(Self::CallHung)
        } else {
            None
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::SequenceDesynchronization => "librdkafka's fatal sequence desynchronization",
            Self::CallHung => "a transactional call hung past its timeout (librdkafka#5511)",
        }
    }
}

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
    /// Restarts after a known client failure (see `ClientFailure`).
    client_failure_restarts: usize,
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

    /// The known client failure its last process exited with, if any.
    fn client_failure(&self) -> Option<ClientFailure> {
        let (_, lines, _, _) = self.past.last()?;
        ClientFailure::of_last_line(lines.last()?)
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
            let tail: Vec<&str> = stderr.lines().collect();
            let _ = writeln!(
                text,
                "--- {name} stderr (last lines) ---\n{}",
                tail[tail.len().saturating_sub(15)..].join("\n")
            );
            let path = logs_dir().join(format!("transactions.copier.{name}.out"));
            let _ = std::fs::write(
                path,
                format!("{}\n--- stderr ---\n{stderr}", lines.join("\n")),
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
        self.save_batches();
        let copiers: String = self.copiers.iter().map(Copier::describe).collect();
        self.env.fail(&format!("{what}\n{copiers}"));
    }

    /// Writes every node's batch headers of the two topics to target/e2e-logs.
    fn save_batches(&self) {
        let mut text = String::new();
        for (index, node) in self.env.nodes.iter().enumerate() {
            for (topic, partitions) in [(COPY_INPUT, 2), (COPY_OUTPUT, 3)] {
                for partition in 0..partitions {
                    let _ = writeln!(text, "node {} {topic}-{partition}:", index + 1);
                    let (headers, stops) = stored_batches(node.data_dir(), topic, partition);
                    for h in headers {
                        let _ = writeln!(
                            text,
                            "  {}..={} leader epoch {} producer {} epoch {} seq {}..={} \
                             transactional {} control {}",
                            h.base_offset,
                            h.base_offset + i64::from(h.last_offset_delta),
                            h.partition_leader_epoch,
                            h.producer_id,
                            h.producer_epoch,
                            h.base_sequence,
                            h.last_sequence(),
                            h.is_transactional(),
                            h.is_control()
                        );
                    }
                    for stop in stops {
                        let _ = writeln!(text, "  ({stop})");
                    }
                }
            }
        }
        let path = logs_dir().join("transactions.copier.batches.txt");
        let _ = std::fs::write(&path, text);
        eprintln!("batches on disk: {}", path.display());
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
                    Some(false) => match self.copiers[index].client_failure() {
                        Some(failure) => self.restart_after_client_failure(index, failure, what),
                        None => self.fail(&format!("copier {index} failed while waiting: {what}")),
                    },
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

    /// A copier that exited with a known client failure (see [`ClientFailure`]) is
    /// restarted with the same transactional id, as an application must. At most
    /// [`CLIENT_FAILURE_RESTARTS_MAX`] times per run.
    fn restart_after_client_failure(&mut self, index: usize, failure: ClientFailure, what: &str) {
        let restarts: usize = self.copiers.iter().map(|c| c.client_failure_restarts).sum();
        if restarts >= CLIENT_FAILURE_RESTARTS_MAX {
            self.fail(&format!(
                "copier {index}: {} ({restarts} restarts after client failures already) \
                 while waiting: {what}",
                failure.describe()
            ));
        }
        self.copiers[index].client_failure_restarts += 1;
        self.env.mark(&format!(
            "copier {index}: {}; restarting it",
            failure.describe()
        ));
        let end_offsets = self.end_offsets.clone();
        self.copiers[index].start(&mut self.env, &end_offsets);
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
                client_failure_restarts: 0,
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

mod copy_checks {
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
}
