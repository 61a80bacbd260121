//! The harness: runs one [`Scenario`] in a fresh madsim runtime and reports what happened.
//!
//! Layout of a run (all simulated; IPs are madsim's virtual ones):
//! - node `n` is a madsim node at 10.0.0.n:9092 whose init task is
//!   `myelin_node::run_node_with`, the node crate's own server, over the node's own storage
//!   engine (`FileStorage`) opened at every start on a `SimFileSystem` the harness keeps, so
//!   the file system survives kill and restart;
//! - client `c` is a madsim node at 10.0.1.(c+1) running one `workload` client;
//! - the supervisor (madsim's main task) injects the fault schedule, heals each fault after
//!   its duration, and restarts nodes: after a scheduled crash, and after a fail-stop (an
//!   injected fsync failure stops the node's core; the supervisor notices through the file
//!   system, crashes it (a power loss) and restarts the node);
//! - at the end of the workload: stop the clients, heal everything, crash and restart every
//!   node once more, and read every partition back from a verifier node at 10.0.2.1;
//! - the checkers see every client event and core output as it happens, and the final
//!   logs at the end.

use crate::checkers::{CheckReport, Checker, FinalLog, FinalRead, OutputLogs, Progress};
use crate::group_protocol::{HEARTBEAT_INTERVAL_MS, REBALANCE_TIMEOUT_MS, SESSION_TIMEOUT_MS};
use crate::history::{ClientEvent, History, HistoryCounts, PartitionRef, ReadRecord};
use crate::scenario::{
    Aim, ClientRole, ClientStep, Fault, LinkDirection, Scenario, COPIER_GROUP, GROUP,
    OUTPUT_PARTITIONS, OUTPUT_TOPIC, TOPIC,
};
use crate::simfs::{CrashSpec, DiskStats, SimFileSystem, StoredBatch};
use crate::timeline::Timeline;
use crate::trace::{Source, Trace};
use crate::workload::{
    run_client, ClientContext, MemberCommand, StepSignals, BACKOFF_MS, TOPIC_ALREADY_EXISTS,
};
use madsim::net::NetSim;
use madsim::runtime::{Handle, Runtime};
use madsim::task::NodeId;
use myelin_client::{
    ClientConfig, Connection, FetchOptions, IsolationLevel, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use myelin_node::config::NodeConfig;
use myelin_node::runtime::{NodeHooks, SyncDelay, TraceEvent, TraceSink};
use myelin_node::storage::file::FileStorage;
use myelin_node::storage::Storage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Kafka error code UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// The Kafka port of every simulated node.
const KAFKA_PORT: u16 = 9092;
/// The peer port of every node of a cluster scenario.
const PEER_PORT: u16 = 9093;
/// Where each node's storage engine keeps its data, on the node's simulated file system.
const DATA_DIR: &str = "/data";
/// How often the supervisor looks for fail-stopped nodes.
const SUPERVISOR_POLL_MS: u64 = 20;
/// How long a fail-stopped node stays down before its restart.
const FAIL_STOP_RESTART_MS: u64 = 300;
/// How long clients get to finish their last operation once told to stop.
const CLIENT_STOP_GRACE: Duration = Duration::from_secs(30);
/// How long followers get, after the final read and write, to catch up before replicas
/// are compared.
const REPLICAS_SETTLE: Duration = Duration::from_secs(3);
/// How long the final read-back may take.
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(30);
/// Partitions of the offsets topic in simulated clusters.
const SIM_OFFSETS_PARTITIONS: i32 = 2;
/// segment.bytes of the simulated offsets and transaction-state topics: a snapshot every
/// 2 KiB appended.
const SIM_INTERNAL_SEGMENT_BYTES: u32 = 4096;
/// segment.bytes of the simulated metadata log, the smallest a topic may have: a run
/// writes only about 1 KiB of metadata (the cluster id, each node's registration, the
/// workload's topic, leader changes), so its controller snapshots after 512 bytes and
/// every replica trims the first segment within the run.
const SIM_METADATA_SEGMENT_BYTES: u32 = myelin_core::metadata::SEGMENT_BYTES_MIN;
/// Wall time a child process gets for one run (a normal run takes well under a second).
const CHILD_WALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Simulated time allowed beyond the scenario's duration before madsim gives up.
/// group-owned-after-heal's deadline, from the heal: a session timeout (a member that died
/// before the heal is expired by then), a rebalance timeout (the longest a rebalance waits
/// for members to rejoin), and the members' own slack: a heartbeat interval (to learn of
/// the rebalance and to send the heartbeat that shows they own their partitions) and the
/// longest retry backoff, once for the join and once for the sync.
const OWNED_AFTER_HEAL_MS: u64 = SESSION_TIMEOUT_MS as u64
    + REBALANCE_TIMEOUT_MS as u64
    + HEARTBEAT_INTERVAL_MS
    + 2 * BACKOFF_MS.1;
const TIME_LIMIT_SLACK: Duration = Duration::from_secs(300);

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write the trace as JSON lines to this file.
    pub trace_path: Option<PathBuf>,
    /// Write the run as an HTML timeline to this file (see `timeline`).
    pub html_path: Option<PathBuf>,
    /// A deliberate defect to run with (feature `defects`).
    #[cfg(feature = "defects")]
    pub defect: Option<myelin_core::defects::Defect>,
}

impl RunOptions {
    /// Options that write the trace to `trace_path`, if given.
    // The update is needless only without the `defects` feature (no `defect` field).
    #[allow(clippy::needless_update)]
    pub fn with_trace(trace_path: Option<PathBuf>) -> RunOptions {
        RunOptions {
            trace_path,
            ..RunOptions::default()
        }
    }

    /// The same options with a deliberate defect.
    #[cfg(feature = "defects")]
    pub fn with_defect(mut self, defect: myelin_core::defects::Defect) -> RunOptions {
        self.defect = Some(defect);
        self
    }

    /// The same options with an HTML timeline written to `html_path`, if given.
    pub fn with_html(mut self, html_path: Option<PathBuf>) -> RunOptions {
        self.html_path = html_path;
        self
    }

    /// The same options without a trace file or HTML page (for runs that repeat a
    /// scenario).
    pub fn without_trace(&self) -> RunOptions {
        let mut options = self.clone();
        options.trace_path = None;
        options.html_path = None;
        options
    }

    /// The defect's name, if any (for replay commands).
    pub fn defect_name(&self) -> Option<&'static str> {
        #[cfg(feature = "defects")]
        return self.defect.map(|defect| defect.name());
        #[cfg(not(feature = "defects"))]
        None
    }
}

/// Faults as the supervisor carried them out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Injected, by kind (a fault whose target was already down is skipped).
    pub injected: BTreeMap<String, u64>,
    pub skipped: u64,
    /// Nodes killed with a disk crash during the workload (scheduled or after a fail-stop).
    pub crashes: u64,
    pub fail_stops: u64,
    pub restarts: u64,
    /// Of the injected faults, those aimed at a role (see `scenario::Aim`).
    #[serde(default)]
    pub aimed: u64,
}

impl FaultCounts {
    pub fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }
}

/// Everything a run found out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: Scenario,
    pub defect: Option<String>,
    pub counts: HistoryCounts,
    pub faults: FaultCounts,
    pub disk: DiskStats,
    pub checks: CheckReport,
    pub trace_events: u64,
    pub trace_digest: u64,
    pub simulated: Duration,
    pub wall: Duration,
    /// The run panicked (a node's assertion, a madsim deadlock, ...): a failure too.
    pub panic: Option<String>,
    pub trace_error: Option<String>,
    /// Why the `--html` page could not be written, if it could not.
    #[serde(default)]
    pub html_error: Option<String>,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.panic.is_none() && self.checks.passed()
    }

    /// What makes this run a failure, for shrinking: the invariants it broke and "panic",
    /// lack of progress aside (a simpler scenario may fail only for doing less).
    pub fn failure_signature(&self) -> std::collections::BTreeSet<String> {
        let mut signature: std::collections::BTreeSet<String> = self
            .checks
            .violations
            .iter()
            .filter(|violation| violation.invariant != crate::checkers::Invariant::Progress)
            .map(|violation| violation.invariant.name().to_string())
            .collect();
        if self.panic.is_some() {
            signature.insert("panic".into());
        }
        signature
    }

    /// Whether `other` fails in a way this run failed too (see `failure_signature`).
    pub fn fails_like(&self, other: &RunReport) -> bool {
        !self
            .failure_signature()
            .is_disjoint(&other.failure_signature())
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        self.scenario.replay_command(self.defect.as_deref())
    }

    /// What a seed sweep reports about this run: its failure with the replay command, or
    /// that too little happened (`made_progress` false), or nothing.
    pub fn problem(&self, made_progress: bool) -> Option<String> {
        if !self.passed() {
            Some(format!(
                "{}\n  replay: {}",
                self.summary(),
                self.replay_command()
            ))
        } else if !made_progress {
            Some(format!("too little happened:\n{}", self.summary()))
        } else {
            None
        }
    }

    /// The summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let counts = &self.counts;
        let faults = &self.faults;
        let mut text = String::new();
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        text.push_str(&format!(
            "run {verdict}: seed {}{}, {:.1} s simulated in {:.2} s wall\n",
            self.scenario.seed,
            self.defect
                .as_ref()
                .map(|d| format!(" with defect {d}"))
                .unwrap_or_default(),
            self.simulated.as_secs_f64(),
            self.wall.as_secs_f64()
        ));
        text.push_str(&format!(
            "  operations: {} produces attempted ({} sends), {} acknowledged (acks=all {}, acks=1 {}, idempotent {}; {} records), {} refused, {} indeterminate\n",
            counts.produces_attempted,
            counts.produce_attempts_sent,
            counts.acknowledged(),
            counts.acknowledged_acks_all,
            counts.acknowledged_acks_leader,
            counts.acknowledged_idempotent,
            counts.records_acknowledged,
            counts.refused,
            counts.indeterminate
        ));
        text.push_str(&format!(
            "  reads: {} fetches ({} failed), {} records read\n",
            counts.fetches, counts.fetches_failed, counts.records_read
        ));
        if self.scenario.groups {
            text.push_str(&format!(
                "  group: {} assignments, {} commits acknowledged, {} refused or unanswered, {} zombie commits (naming a superseded generation)\n",
                counts.group_assignments,
                counts.group_commits_acknowledged,
                counts.group_commits_refused,
                self.checks.zombie_commits
            ));
        }
        if self.scenario.transactions {
            text.push_str(&format!(
                "  transactions: {} committed, {} aborted, {} in doubt, {} abandoned ({} fenced)\n",
                counts.transactions_committed,
                counts.transactions_aborted,
                counts.transactions_in_doubt,
                counts.transactions_abandoned,
                counts.transactions_fenced
            ));
        }
        let kinds: Vec<String> = faults
            .injected
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        text.push_str(&format!(
            "  faults: {} injected ({}; {} aimed at a role), {} skipped; {} crashes ({} after fail-stop), {} restarts; disk: {} fsyncs, {} failed, {} torn writes, {} bytes lost\n",
            faults.total_injected(),
            kinds.join(", "),
            faults.aimed,
            faults.skipped,
            faults.crashes,
            faults.fail_stops,
            faults.restarts,
            self.disk.syncs,
            self.disk.failed_syncs,
            self.disk.torn_writes,
            self.disk.bytes_lost_in_crashes
        ));
        text.push_str(&format!(
            "  checks: {}/{} invariants held, {} individual checks, {} violation(s)\n",
            self.checks.invariants_held(),
            crate::checkers::Invariant::ALL.len(),
            self.checks.total_checks(),
            self.checks.violations.len()
        ));
        text.push_str(&format!(
            "  trace: {} events, digest {:016x}\n",
            self.trace_events, self.trace_digest
        ));
        if let Some(panic) = &self.panic {
            text.push_str(&format!("  PANIC: {panic}\n"));
        }
        if let Some(error) = &self.trace_error {
            text.push_str(&format!("  trace file error: {error}\n"));
        }
        if let Some(error) = &self.html_error {
            text.push_str(&format!("  html file error: {error}\n"));
        }
        for violation in self.checks.violations.iter().take(20) {
            text.push_str(&format!("  VIOLATION {violation}\n"));
        }
        if self.checks.violations.len() > 20 {
            text.push_str(&format!(
                "  ... and {} more violations\n",
                self.checks.violations.len() - 20
            ));
        }
        text
    }
}

/// The run's shared record: client history, checkers and trace, in event order.
pub(crate) struct RunLog {
    start: Instant,
    state: Mutex<RunLogState>,
}

struct RunLogState {
    history: History,
    checker: Checker,
    trace: Trace,
    /// Collected only for `--html`; it never changes what the run does.
    timeline: Option<SharedTimeline>,
    next_op: u64,
    violations_traced: usize,
}

impl RunLogState {
    /// Writes violations found since the last call into the trace.
    fn trace_new_violations(&mut self, t_us: u64) {
        let violations = self.checker.violations();
        for violation in &violations[self.violations_traced..] {
            self.trace
                .line(t_us, Source::Harness, None, "check", &violation.to_string());
            if let Some(timeline) = &self.timeline {
                lock_timeline(timeline).violation(t_us, violation, self.trace.last_line());
            }
        }
        self.violations_traced = violations.len();
    }
}

impl RunLog {
    fn new(trace: Trace, timeline: Option<SharedTimeline>) -> Self {
        RunLog {
            start: Instant::now(),
            state: Mutex::new(RunLogState {
                history: History::default(),
                checker: Checker::new(),
                trace,
                timeline,
                next_op: 0,
                violations_traced: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RunLogState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Simulated microseconds since the start of the run.
    pub(crate) fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// A fresh produce op id.
    pub(crate) fn next_op(&self) -> u64 {
        let mut state = self.lock();
        state.next_op += 1;
        state.next_op
    }

    /// Records a client event: trace, checkers, history.
    pub(crate) fn client_event(&self, client: u8, event: ClientEvent) {
        let t_us = self.now_us();
        let mut state = self.lock();
        state.trace.line(
            t_us,
            Source::Client(client),
            None,
            "client",
            &event.describe(),
        );
        if let Some(timeline) = &state.timeline {
            lock_timeline(timeline).client_event(t_us, client, &event, state.trace.last_line());
        }
        state.checker.observe_client(&event);
        state.trace_new_violations(t_us);
        state.history.record(event);
    }

    /// Records something the harness did.
    fn harness_event(&self, source: Source, kind: &str, text: &str) {
        let t_us = self.now_us();
        let mut state = self.lock();
        state.trace.line(t_us, source, None, kind, text);
        if let Some(timeline) = &state.timeline {
            lock_timeline(timeline).harness_event(t_us, source, kind, state.trace.last_line());
        }
    }

    /// Fault `number` struck (after the trace line that says so); `struck`: the node the
    /// harness chose for it then.
    fn fault_began(&self, number: usize, fault: &Fault, struck: Option<u8>) {
        let t_us = self.now_us();
        let state = self.lock();
        if let Some(timeline) = &state.timeline {
            lock_timeline(timeline).fault_began(
                t_us,
                number,
                fault,
                struck,
                state.trace.last_line(),
            );
        }
    }

    /// Fault `number` healed.
    fn fault_healed(&self, number: usize) {
        let t_us = self.now_us();
        if let Some(timeline) = &self.lock().timeline {
            lock_timeline(timeline).fault_healed(t_us, number);
        }
    }

    fn core_event(&self, node: u8, now_ms: i64, event: &TraceEvent<'_>) {
        let t_us = self.now_us();
        let mut state = self.lock();
        state.trace.core_event(t_us, node, now_ms, event);
        if let Some(timeline) = &state.timeline {
            lock_timeline(timeline).core_event(t_us, node, event, state.trace.last_line());
        }
        match event {
            TraceEvent::Output(output) => {
                state.checker.observe_core(node, output, t_us);
                state.trace_new_violations(t_us);
            }
            TraceEvent::ReplicaStatesPersisted(states) => {
                for (partition, replica_state) in states.iter() {
                    state
                        .checker
                        .observe_persisted_state(node, partition, *replica_state, t_us);
                }
                state.trace_new_violations(t_us);
            }
            TraceEvent::Input(_) | TraceEvent::Started { .. } | TraceEvent::FailStop(_) => {}
        }
    }
}

/// The run's timeline, for `--html`: shared with `run_in_process`, which writes the page
/// of a run that panicked.
type SharedTimeline = Arc<Mutex<Timeline>>;

fn lock_timeline(timeline: &SharedTimeline) -> MutexGuard<'_, Timeline> {
    timeline
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A node's trace sink: forwards to the run's log.
struct NodeTraceSink {
    node: u8,
    log: Arc<RunLog>,
}

impl TraceSink for NodeTraceSink {
    fn record(&self, now_ms: i64, event: TraceEvent<'_>) {
        self.log.core_event(self.node, now_ms, &event);
    }
}

/// A simulated myelin node as the supervisor sees it.
struct SimNode {
    id: NodeId,
    /// The node's disk: outlives the node's tasks, crashed when the node is.
    fs: SimFileSystem,
    /// Draws what the crash model leaves to chance, from the scenario's seed.
    crash_rng: StdRng,
    clock_offset_ms: Arc<AtomicI64>,
    up: bool,
    paused: bool,
}

fn node_ip(node: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, node))
}

fn client_ip(client: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, client + 1))
}

/// A seed for one purpose, derived from the scenario's.
fn derived_seed(seed: u64, purpose: u64, index: u64) -> u64 {
    let mut hash = crate::trace::Fnv1a64::default();
    hash.update(&seed.to_le_bytes());
    hash.update(&purpose.to_le_bytes());
    hash.update(&index.to_le_bytes());
    hash.value()
}

/// Creates node `index` with its file system and hooks; its init task opens the node's
/// storage engine on that file system and runs the node crate's server over it.
fn create_node(
    handle: &Handle,
    scenario: &Scenario,
    index: u8,
    log: &Arc<RunLog>,
    options: &RunOptions,
) -> SimNode {
    let fs = SimFileSystem::new();
    let clock_offset_ms = Arc::new(AtomicI64::new(0));
    let (fsync_low, fsync_high) = scenario.fsync_latency_ms;
    let fsync_rng = Arc::new(Mutex::new(StdRng::seed_from_u64(derived_seed(
        scenario.seed,
        1,
        u64::from(index),
    ))));
    let sync_delay: SyncDelay = Arc::new(move || {
        let mut rng = fsync_rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Duration::from_millis(rng.random_range(fsync_low..=fsync_high.max(fsync_low)))
    });
    #[cfg(feature = "defects")]
    let defect = options.defect;
    #[cfg(not(feature = "defects"))]
    let _ = options;
    // Two offsets partitions are enough to spread groups and keep the simulation lean;
    // small segments of the internal logs (the coordinators' and the metadata log) make
    // their leaders snapshot and every replica trim them within a run.
    let adjust_broker_config = Some(
        Arc::new(move |config: &mut myelin_core::api::BrokerConfig| {
            config.offsets_partitions = SIM_OFFSETS_PARTITIONS;
            config.offsets_segment_bytes = SIM_INTERNAL_SEGMENT_BYTES;
            config.transaction_state_segment_bytes = SIM_INTERNAL_SEGMENT_BYTES;
            config.metadata_segment_bytes = SIM_METADATA_SEGMENT_BYTES;
            // Groups complete their first rebalance as soon as every member joined, as the
            // pinned guide runs and every seed's schedule were made with.
            config.group_initial_rebalance_delay_ms = 0;
            #[cfg(feature = "defects")]
            {
                config.defect = defect;
            }
        }) as Arc<dyn Fn(&mut myelin_core::api::BrokerConfig) + Send + Sync>,
    );
    let hooks = NodeHooks {
        trace: Some(Arc::new(NodeTraceSink {
            node: index,
            log: log.clone(),
        })),
        clock_offset_ms: Some(clock_offset_ms.clone()),
        sync_delay: Some(sync_delay),
        adjust_broker_config,
        broker_rng_seed: None,
    };
    let mut config = NodeConfig {
        listen: SocketAddr::new(node_ip(index), KAFKA_PORT),
        node_id: i32::from(index),
        ..NodeConfig::default()
    };
    if scenario.cluster {
        config.peer_listen = Some(SocketAddr::new(node_ip(index), PEER_PORT));
        config.peers = (1..=scenario.nodes)
            .map(|node| (i32::from(node), SocketAddr::new(node_ip(node), PEER_PORT)))
            .collect();
    }
    let starts = Arc::new(AtomicU64::new(0));
    let seed = scenario.seed;
    let node_fs = fs.clone();
    let node_log = log.clone();
    let node = handle
        .create_node()
        .name(format!("myelin-{index}"))
        .ip(node_ip(index))
        .init(move || {
            let start = starts.fetch_add(1, Ordering::Relaxed);
            let mut hooks = hooks.clone();
            hooks.broker_rng_seed = Some(derived_seed(seed, 2, u64::from(index) << 32 | start));
            let config = config.clone();
            let fs = node_fs.clone();
            let log = node_log.clone();
            async move {
                let result = match FileStorage::open_on(fs, Path::new(DATA_DIR)) {
                    Ok(storage) => {
                        #[cfg(feature = "defects")]
                        let storage = storage.with_defect(defect);
                        let storage: Arc<dyn Storage> = Arc::new(storage);
                        myelin_node::run_node_with(config, storage, std::future::pending(), hooks)
                            .await
                            .map_err(|error| format!("{error:#}"))
                    }
                    Err(error) => Err(format!("opening the data directory: {error}")),
                };
                if let Err(error) = result {
                    log.harness_event(Source::Node(index), "node-exit", &error);
                }
            }
        })
        .build();
    SimNode {
        id: node.id(),
        fs,
        crash_rng: StdRng::seed_from_u64(derived_seed(scenario.seed, 3, u64::from(index))),
        clock_offset_ms,
        up: true,
        paused: false,
    }
}

/// What the supervisor does at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Inject(usize),
    /// Fault `number`, armed for a client step, strikes `node`, the node that served it.
    Strike {
        number: usize,
        node: u8,
    },
    Heal(usize),
    Restart(u8),
}

/// Network clogs in force, counted so that overlapping faults heal correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Clog {
    Node(u8),
    /// A client cut off from every node.
    Client(u8),
    Link {
        client: u8,
        to_node: bool,
    },
    /// The link from one node to another (cluster scenarios).
    NodeLink {
        from: u8,
        to: u8,
    },
    /// Everything sent to a client (its requests still go out).
    ClientIn(u8),
    /// Everything a client sends (held on its connections, delivered after the heal).
    ClientOut(u8),
}

/// What a `ClientDeaf` fault cuts: the answers to the client, or its requests.
fn client_deaf_clog(client: u8, requests_held: bool) -> Clog {
    if requests_held {
        Clog::ClientOut(client)
    } else {
        Clog::ClientIn(client)
    }
}

struct Supervisor<'a> {
    scenario: &'a Scenario,
    handle: Handle,
    log: Arc<RunLog>,
    nodes: Vec<SimNode>,
    client_ids: Vec<NodeId>,
    clogs: BTreeMap<Clog, u32>,
    packet_loss_active: u32,
    agenda: BTreeMap<(u64, u64), Action>,
    agenda_sequence: u64,
    faults: FaultCounts,
    /// Each client's command slot (used by group members).
    member_commands: Vec<Arc<Mutex<Option<MemberCommand>>>>,
    /// Group members paused now.
    paused_clients: std::collections::BTreeSet<u8>,
    /// When the last member crash (or leave) ends: the member is back.
    members_back_ms: u64,
    /// Fired by the client steps faults are armed for ([`Fault::trigger`]).
    signals: Arc<StepSignals>,
    /// Faults waiting for their client step, in schedule order.
    armed: BTreeMap<ClientStep, std::collections::VecDeque<usize>>,
    /// The node each isolation (aimed, or armed for a client step) struck.
    struck: BTreeMap<usize, u8>,
}

impl Supervisor<'_> {
    fn now_ms(&self) -> u64 {
        self.log.now_us() / 1000
    }

    fn schedule(&mut self, at_ms: u64, action: Action) {
        self.agenda_sequence += 1;
        self.agenda.insert((at_ms, self.agenda_sequence), action);
    }

    fn node(&mut self, index: u8) -> &mut SimNode {
        &mut self.nodes[usize::from(index) - 1]
    }

    fn note(&self, source: Source, kind: &str, text: &str) {
        self.log.harness_event(source, kind, text);
    }

    /// Kills node `index` and crashes its disk (if it is up); returns whether it was.
    fn crash(&mut self, index: u8, spec: CrashSpec, why: &str) -> bool {
        let handle = self.handle.clone();
        let node = self.node(index);
        if !node.up {
            return false;
        }
        handle.kill(node.id);
        let report = node.fs.crash(&spec, &mut node.crash_rng);
        node.up = false;
        node.paused = false;
        let fs = node.fs.clone();
        let mut state = self.log.lock();
        if state.checker.follows_replicas() {
            state
                .checker
                .node_crashed(index, fs.held_batches(Path::new(DATA_DIR)));
        }
        drop(state);
        self.note(
            Source::Node(index),
            "crash",
            &format!(
                "{why}: killed, disk crashed ({} bytes lost, {} torn writes)",
                report.bytes_lost, report.torn_writes
            ),
        );
        true
    }

    fn restart(&mut self, index: u8) {
        let handle = self.handle.clone();
        let node = self.node(index);
        if node.up {
            return;
        }
        handle.restart(node.id);
        node.up = true;
        self.faults.restarts += 1;
        self.log.lock().checker.node_restarted(index);
        self.note(Source::Node(index), "restart", "restarted");
    }

    fn clog(&mut self, clog: Clog) {
        let count = self.clogs.entry(clog).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.apply_clog(clog, true);
        }
    }

    fn unclog(&mut self, clog: Clog) {
        let Some(count) = self.clogs.get_mut(&clog) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.clogs.remove(&clog);
            self.apply_clog(clog, false);
        }
    }

    fn apply_clog(&self, clog: Clog, clogged: bool) {
        let net = NetSim::current();
        match clog {
            Clog::Node(index) => {
                let id = self.nodes[usize::from(index) - 1].id;
                if clogged {
                    net.clog_node(id);
                } else {
                    net.unclog_node(id);
                }
            }
            Clog::Client(client) => {
                let id = self.client_ids[usize::from(client)];
                if clogged {
                    net.clog_node(id);
                } else {
                    net.unclog_node(id);
                }
            }
            Clog::ClientIn(client) => {
                let id = self.client_ids[usize::from(client)];
                if clogged {
                    net.clog_node_in(id);
                } else {
                    net.unclog_node_in(id);
                }
            }
            Clog::ClientOut(client) => {
                let id = self.client_ids[usize::from(client)];
                if clogged {
                    net.clog_node_out(id);
                } else {
                    net.unclog_node_out(id);
                }
            }
            Clog::NodeLink { from, to } => {
                let from = self.nodes[usize::from(from) - 1].id;
                let to = self.nodes[usize::from(to) - 1].id;
                if clogged {
                    net.clog_link(from, to);
                } else {
                    net.unclog_link(from, to);
                }
            }
            Clog::Link { client, to_node } => {
                let client_id = self.client_ids[usize::from(client)];
                let node = self.scenario.clients[usize::from(client)].node;
                let node_id = self.nodes[usize::from(node) - 1].id;
                let (from, to) = if to_node {
                    (client_id, node_id)
                } else {
                    (node_id, client_id)
                };
                if clogged {
                    net.clog_link(from, to);
                } else {
                    net.unclog_link(from, to);
                }
            }
        }
    }

    fn link_clog(&self, client: u8, direction: LinkDirection) -> Clog {
        Clog::Link {
            client,
            to_node: direction == LinkDirection::ClientToNode,
        }
    }

    /// Carries out fault `number` of the schedule; returns whether it took effect.
    fn inject(&mut self, number: usize) -> bool {
        let fault = self.scenario.faults[number].fault.clone();
        let now = self.now_ms();
        let injected = match &fault {
            Fault::Crash {
                node,
                down_ms,
                crash,
                aim,
            } => {
                let node = self.aimed_node(*aim, *node);
                let crashed = self.crash(node, *crash, "scheduled crash");
                if crashed {
                    self.faults.crashes += 1;
                    self.schedule(now + down_ms, Action::Restart(node));
                }
                crashed
            }
            Fault::Pause { node, .. } => {
                let handle = self.handle.clone();
                let target = self.node(*node);
                let pausable = target.up && !target.paused;
                if pausable {
                    handle.pause(target.id);
                    target.paused = true;
                }
                pausable
            }
            Fault::Isolate { node, aim, .. } => {
                let node = self.aimed_node(*aim, *node);
                self.struck.insert(number, node);
                self.clog(Clog::Node(node));
                true
            }
            Fault::Split { .. } | Fault::NodeLinkLoss { .. } => {
                for clog in node_link_clogs(self.scenario.nodes, &fault) {
                    self.clog(clog);
                }
                true
            }
            Fault::LinkLoss {
                client, direction, ..
            } => {
                let clog = self.link_clog(*client, *direction);
                self.clog(clog);
                true
            }
            Fault::PacketLoss {
                loss_per_mille,
                latency_ms,
                ..
            } => {
                self.packet_loss_active += 1;
                let rate = f64::from(*loss_per_mille) / 1000.0;
                let latency = Duration::from_millis(latency_ms.0)
                    ..Duration::from_millis(latency_ms.1.max(latency_ms.0 + 1));
                NetSim::current().update_config(|config| {
                    config.packet_loss_rate = rate;
                    config.send_latency = latency;
                });
                true
            }
            Fault::FsyncFailure { node } => {
                let target = self.node(*node);
                if target.up {
                    target.fs.fail_next_sync();
                }
                target.up
            }
            Fault::ClockSkew {
                node, offset_ms, ..
            } => {
                self.node(*node)
                    .clock_offset_ms
                    .store(*offset_ms, Ordering::Relaxed);
                true
            }
            Fault::MemberCrash { client, down_ms } => {
                self.command_member(*client, MemberCommand::Crash { down_ms: *down_ms })
            }
            Fault::MemberLeave { client, down_ms } => {
                self.command_member(*client, MemberCommand::Leave { down_ms: *down_ms })
            }
            Fault::MemberPause { client, .. } => {
                let fresh = self.paused_clients.insert(*client);
                if fresh {
                    self.handle.pause(self.client_ids[usize::from(*client)]);
                    let at = self.log.now_us();
                    self.log.lock().checker.member_paused(*client, at);
                }
                fresh
            }
            Fault::MemberIsolate { client, .. } => {
                self.clog(Clog::Client(*client));
                true
            }
            Fault::ClientCrash { client, down_ms } => {
                self.command_member(*client, MemberCommand::Crash { down_ms: *down_ms })
            }
            Fault::ClientPause { client, .. } => {
                let fresh = self.paused_clients.insert(*client);
                if fresh {
                    self.handle.pause(self.client_ids[usize::from(*client)]);
                    let at = self.log.now_us();
                    self.log.lock().checker.member_paused(*client, at);
                }
                fresh
            }
            Fault::ClientDeaf {
                client,
                requests_held,
                ..
            } => {
                self.clog(client_deaf_clog(*client, *requests_held));
                true
            }
            Fault::CoordinatorCrash { .. }
            | Fault::CoordinatorSplit { .. }
            | Fault::ProduceLeaderCrash { .. }
            | Fault::ProduceLeaderIsolate { .. } => {
                // Carried out after its client step (`step_taken`, then `strike`).
                if let Some((step, _)) = fault.trigger() {
                    self.armed.entry(step).or_default().push_back(number);
                    self.signals.of(step).arm();
                }
                self.note(Source::Harness, "fault-armed", &fault.to_string());
                return true;
            }
        };
        if injected {
            *self
                .faults
                .injected
                .entry(fault.kind().to_string())
                .or_insert(0) += 1;
            let duration_us = fault.duration_ms() * 1000;
            if fault.clone().client_mut().is_none() {
                let at = self.log.now_us();
                self.log.lock().checker.node_fault(at, at + duration_us);
            }
            if matches!(
                fault,
                Fault::MemberCrash { .. } | Fault::MemberLeave { .. } | Fault::ClientCrash { .. }
            ) {
                self.members_back_ms = self.members_back_ms.max(now + fault.duration_ms());
            }
            if let Fault::Crash { aim: Some(_), .. } | Fault::Isolate { aim: Some(_), .. } = fault {
                self.faults.aimed += 1;
            }
            let duration = fault.duration_ms();
            let heals_itself = matches!(
                fault,
                Fault::Crash { .. }
                    | Fault::MemberCrash { .. }
                    | Fault::MemberLeave { .. }
                    | Fault::ClientCrash { .. }
            );
            if duration > 0 && !heals_itself {
                self.schedule(now + duration, Action::Heal(number));
            }
        } else {
            self.faults.skipped += 1;
        }
        let verdict = if injected { "fault" } else { "fault-skipped" };
        self.note(Source::Harness, verdict, &fault.to_string());
        if injected {
            let struck = self.struck.get(&number).copied();
            self.log.fault_began(number, &fault, struck);
        }
        injected
    }

    /// The node a fault aimed at `aim` strikes: the role's holder as the checkers last saw
    /// it, else `node`.
    fn aimed_node(&self, aim: Option<Aim>, node: u8) -> u8 {
        let Some(aim) = aim else {
            return node;
        };
        let group = if self.scenario.transactions {
            COPIER_GROUP
        } else {
            GROUP
        };
        let (topic, partition) = match aim {
            Aim::PartitionLeader { partition } => (TOPIC, partition),
            Aim::GroupCoordinator => (
                myelin_core::broker::OFFSETS_TOPIC,
                myelin_core::broker::offsets_partition_of(group, SIM_OFFSETS_PARTITIONS),
            ),
            Aim::Controller => (myelin_core::broker::METADATA_TOPIC, 0),
        };
        let holder = self
            .log
            .lock()
            .checker
            .current_leader(topic, partition)
            .filter(|holder| (1..=self.scenario.nodes).contains(holder));
        self.note(
            Source::Harness,
            "aim",
            &match holder {
                Some(holder) => format!("{aim} is node {holder}"),
                None => format!("{aim} is not known: node {node} instead"),
            },
        );
        holder.unwrap_or(node)
    }

    /// Undoes fault `number` (which was injected).
    fn heal(&mut self, number: usize) {
        let fault = self.scenario.faults[number].fault.clone();
        match &fault {
            Fault::Pause { node, .. } => {
                let handle = self.handle.clone();
                let target = self.node(*node);
                if target.paused {
                    handle.resume(target.id);
                    target.paused = false;
                }
            }
            Fault::Isolate { node, .. } => {
                let node = self.struck.get(&number).copied().unwrap_or(*node);
                self.unclog(Clog::Node(node));
            }
            Fault::ProduceLeaderIsolate { .. } => {
                if let Some(node) = self.struck.get(&number).copied() {
                    self.unclog(Clog::Node(node));
                }
            }
            Fault::Split { .. } | Fault::NodeLinkLoss { .. } => {
                for clog in node_link_clogs(self.scenario.nodes, &fault) {
                    self.unclog(clog);
                }
            }
            Fault::LinkLoss {
                client, direction, ..
            } => {
                let clog = self.link_clog(*client, *direction);
                self.unclog(clog);
            }
            Fault::PacketLoss { .. } => {
                self.packet_loss_active = self.packet_loss_active.saturating_sub(1);
                if self.packet_loss_active == 0 {
                    NetSim::current()
                        .update_config(|config| *config = madsim::net::Config::default());
                }
            }
            Fault::ClockSkew { node, .. } => {
                self.node(*node).clock_offset_ms.store(0, Ordering::Relaxed);
            }
            Fault::MemberPause { client, .. } | Fault::ClientPause { client, .. } => {
                self.resume_client(*client)
            }
            Fault::MemberIsolate { client, .. } => self.unclog(Clog::Client(*client)),
            Fault::ClientDeaf {
                client,
                requests_held,
                ..
            } => self.unclog(client_deaf_clog(*client, *requests_held)),
            Fault::CoordinatorSplit { .. } => {
                if let Some(node) = self.struck.get(&number).copied() {
                    for clog in coordinator_split_clogs(self.scenario.nodes, node) {
                        self.unclog(clog);
                    }
                }
            }
            Fault::Crash { .. }
            | Fault::FsyncFailure { .. }
            | Fault::MemberCrash { .. }
            | Fault::MemberLeave { .. }
            | Fault::ClientCrash { .. }
            | Fault::CoordinatorCrash { .. }
            | Fault::ProduceLeaderCrash { .. } => {}
        }
        self.note(Source::Harness, "heal", &fault.to_string());
        self.log.fault_healed(number);
    }

    /// A client step armed faults wait for was served by `node`: the first fault armed
    /// for it strikes that node after its delay (`Action::Strike`).
    fn step_taken(&mut self, step: ClientStep, node: u8) {
        let Some(armed) = self.armed.get_mut(&step) else {
            return;
        };
        let Some(number) = armed.pop_front() else {
            return;
        };
        if !armed.is_empty() {
            self.signals.of(step).arm();
        }
        let delay_ms = self.scenario.faults[number]
            .fault
            .trigger()
            .map_or(0, |(_, delay_ms)| delay_ms);
        let now = self.now_ms();
        self.schedule(now + delay_ms, Action::Strike { number, node });
    }

    /// Carries out fault `number`, armed for a client step, on `node`, the node that served
    /// the step.
    fn strike(&mut self, number: usize, node: u8) {
        let fault = self.scenario.faults[number].fault.clone();
        let now = self.now_ms();
        let injected = match &fault {
            Fault::CoordinatorCrash { down_ms } | Fault::ProduceLeaderCrash { down_ms, .. } => {
                let why = if matches!(fault, Fault::CoordinatorCrash { .. }) {
                    "crash of the transaction coordinator right after an EndTxn"
                } else {
                    "crash of the leader right after an idempotent producer's send"
                };
                let crashed = self.crash(node, CrashSpec::default(), why);
                if crashed {
                    self.faults.crashes += 1;
                    self.schedule(now + down_ms, Action::Restart(node));
                }
                crashed
            }
            Fault::CoordinatorSplit { for_ms } => {
                for clog in coordinator_split_clogs(self.scenario.nodes, node) {
                    self.clog(clog);
                }
                self.struck.insert(number, node);
                self.schedule(now + for_ms, Action::Heal(number));
                true
            }
            Fault::ProduceLeaderIsolate { for_ms, .. } => {
                self.clog(Clog::Node(node));
                self.struck.insert(number, node);
                self.schedule(now + for_ms, Action::Heal(number));
                true
            }
            _ => false,
        };
        if injected {
            *self
                .faults
                .injected
                .entry(fault.kind().to_string())
                .or_insert(0) += 1;
            let at = self.log.now_us();
            self.log
                .lock()
                .checker
                .node_fault(at, at + fault.duration_ms() * 1000);
        } else {
            self.faults.skipped += 1;
        }
        let verdict = if injected { "fault" } else { "fault-skipped" };
        self.note(
            Source::Harness,
            verdict,
            &format!("{fault}: node {node} served the step"),
        );
        if injected {
            self.log.fault_began(number, &fault, Some(node));
        }
    }

    /// Hands a group member a command it carries out itself; false if one is pending.
    fn command_member(&mut self, client: u8, command: MemberCommand) -> bool {
        let Some(slot) = self.member_commands.get(usize::from(client)) else {
            return false;
        };
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(command);
        true
    }

    fn resume_client(&mut self, client: u8) {
        if self.paused_clients.remove(&client) {
            self.handle.resume(self.client_ids[usize::from(client)]);
            let at = self.log.now_us();
            self.log.lock().checker.member_resumed(client, at);
        }
    }

    /// Crashes and schedules the restart of nodes whose storage failed (fail-stop).
    fn handle_fail_stops(&mut self) {
        let now = self.now_ms();
        for index in 1..=self.scenario.nodes {
            if self.node(index).fs.take_sync_failure()
                && self.crash(
                    index,
                    CrashSpec::default(),
                    "fail-stop after a failed fsync",
                )
            {
                self.faults.crashes += 1;
                self.faults.fail_stops += 1;
                self.schedule(now + FAIL_STOP_RESTART_MS, Action::Restart(index));
                let at = self.log.now_us();
                self.log
                    .lock()
                    .checker
                    .node_fault(at, at + FAIL_STOP_RESTART_MS * 1000);
            }
        }
    }

    /// Runs the schedule until `end_ms`.
    async fn run_schedule(&mut self, end_ms: u64) {
        for (number, scheduled) in self.scenario.faults.iter().enumerate() {
            self.agenda_sequence += 1;
            self.agenda.insert(
                (scheduled.at_ms, self.agenda_sequence),
                Action::Inject(number),
            );
        }
        loop {
            self.handle_fail_stops();
            let now = self.now_ms();
            while let Some(entry) = self.agenda.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let action = entry.remove();
                match action {
                    Action::Inject(number) => {
                        self.inject(number);
                    }
                    Action::Strike { number, node } => self.strike(number, node),
                    Action::Heal(number) => self.heal(number),
                    Action::Restart(index) => self.restart(index),
                }
            }
            let fired = ClientStep::ALL.into_iter().find_map(|step| {
                let node = self.signals.of(step).take_fired()?;
                Some((step, node))
            });
            if let Some((step, node)) = fired {
                self.step_taken(step, node);
                continue;
            }
            if now >= end_ms {
                // Faults still armed found no client step in time (or struck too late).
                let armed: usize = self.armed.values().map(|armed| armed.len()).sum();
                let striking = self
                    .agenda
                    .values()
                    .filter(|action| matches!(action, Action::Strike { .. }))
                    .count();
                self.faults.skipped += (armed + striking) as u64;
                self.armed.clear();
                for step in ClientStep::ALL {
                    self.signals.of(step).take_fired();
                }
                return;
            }
            let next = self
                .agenda
                .first_key_value()
                .map_or(end_ms, |((at, _), _)| *at)
                .min(end_ms)
                .min(now + SUPERVISOR_POLL_MS);
            let sleep = tokio::time::sleep(Duration::from_millis(next.saturating_sub(now).max(1)));
            // Wake up as soon as an armed client step is taken: "right after" it.
            let signals = self.signals.clone();
            let end_txn = signals.of(ClientStep::EndTxnAnswered);
            let produce = signals.of(ClientStep::ProduceSent);
            tokio::select! {
                _ = sleep => {}
                _ = end_txn.notify.notified(), if end_txn.is_armed() => {}
                _ = produce.notify.notified(), if produce.is_armed() => {}
            }
        }
    }

    /// Heals every fault still in force and restarts every node that is down.
    fn heal_everything(&mut self) {
        let pending: Vec<Action> = std::mem::take(&mut self.agenda).into_values().collect();
        for action in pending {
            match action {
                Action::Heal(number) => self.heal(number),
                Action::Restart(_) | Action::Inject(_) | Action::Strike { .. } => {}
            }
        }
        let clogs: Vec<Clog> = self.clogs.keys().copied().collect();
        for clog in clogs {
            self.clogs.insert(clog, 1);
            self.unclog(clog);
        }
        NetSim::current().update_config(|config| *config = madsim::net::Config::default());
        self.packet_loss_active = 0;
        let paused: Vec<u8> = self.paused_clients.iter().copied().collect();
        for client in paused {
            self.resume_client(client);
        }
        self.handle_fail_stops();
        for index in 1..=self.scenario.nodes {
            let handle = self.handle.clone();
            let node = self.node(index);
            node.clock_offset_ms.store(0, Ordering::Relaxed);
            if node.paused {
                handle.resume(node.id);
                node.paused = false;
            }
            self.restart(index);
        }
    }
}

/// The links between a coordinator's node and every other node, both ways.
fn coordinator_split_clogs(nodes: u8, node: u8) -> Vec<Clog> {
    node_link_clogs(
        nodes,
        &Fault::Split {
            minority: vec![node],
            for_ms: 0,
        },
    )
}

/// The node-to-node links a split or a one-way link loss cuts.
fn node_link_clogs(nodes: u8, fault: &Fault) -> Vec<Clog> {
    match fault {
        Fault::Split { minority, .. } => {
            let mut clogs = Vec::new();
            for inside in minority {
                for outside in (1..=nodes).filter(|node| !minority.contains(node)) {
                    clogs.push(Clog::NodeLink {
                        from: *inside,
                        to: outside,
                    });
                    clogs.push(Clog::NodeLink {
                        from: outside,
                        to: *inside,
                    });
                }
            }
            clogs
        }
        Fault::NodeLinkLoss { from, to, .. } => vec![Clog::NodeLink {
            from: *from,
            to: *to,
        }],
        _ => Vec::new(),
    }
}

/// The Kafka addresses of every node.
fn kafka_addresses(nodes: u8) -> Vec<SocketAddr> {
    (1..=nodes)
        .map(|node| SocketAddr::new(node_ip(node), KAFKA_PORT))
        .collect()
}

/// Retries `attempt` every 200 ms until it succeeds or [`FINAL_READ_DEADLINE`] passes.
async fn retry_until_deadline<T, F, Attempt>(what: &str, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Attempt,
    Attempt: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + FINAL_READ_DEADLINE;
    let mut last_error = String::from("never tried");
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "{what} within {FINAL_READ_DEADLINE:?}; last error: {last_error}"
            ));
        }
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                last_error = error;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The address serving `partition`: in a cluster its leader, else the topic's own node.
async fn serving_address(
    scenario: &Scenario,
    topic_node: u8,
    partition: i32,
) -> Result<SocketAddr, String> {
    if scenario.cluster {
        crate::workload::leader_address(&kafka_addresses(scenario.nodes), partition, "sim-verifier")
            .await
    } else {
        Ok(SocketAddr::new(node_ip(topic_node), KAFKA_PORT))
    }
}

fn verifier_config(max_frame_bytes: usize) -> ClientConfig {
    ClientConfig {
        client_id: "sim-verifier".into(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        max_frame_bytes,
    }
}

/// Produces one acks=all record to every partition of a healed cluster, through its leader;
/// each partition's outcome is `Err` if no write was acknowledged within the deadline.
async fn write_after_heal(scenario: Scenario) -> Vec<(PartitionRef, Result<(), String>)> {
    let mut outcomes = Vec::new();
    for key in partition_refs(&scenario) {
        let outcome = retry_until_deadline("no acks=all write acknowledged after healing", || {
            produce_once(&scenario, key.node, key.partition)
        })
        .await;
        outcomes.push((key, outcome));
    }
    outcomes
}

/// Every replica's stored batches of one partition, by node.
type ReplicaBatches = Vec<(u8, Vec<StoredBatch>)>;

/// Waits for clients to stop, noting those that do not within their grace period.
async fn await_clients(log: &RunLog, clients: Vec<(u8, madsim::task::JoinHandle<()>)>) {
    for (index, client) in clients {
        if tokio::time::timeout(CLIENT_STOP_GRACE, client)
            .await
            .is_err()
        {
            log.harness_event(
                Source::Client(index),
                "stuck",
                "the client did not stop within its grace period",
            );
        }
    }
}

/// Waits (up to the final deadline) until the group has committed every partition up to its
/// high watermark.
async fn await_group_caught_up(scenario: Scenario, group: &'static str) -> Result<(), String> {
    retry_until_deadline(
        "the group did not commit every partition up to its high watermark",
        || group_caught_up(&scenario, group),
    )
    .await
}

async fn group_caught_up(scenario: &Scenario, group: &str) -> Result<(), String> {
    let text = |error: myelin_client::Error| error.to_string();
    let partitions: Vec<i32> = (0..scenario.partitions_of(1)).collect();
    let mut ends = BTreeMap::new();
    for partition in &partitions {
        let leader = serving_address(scenario, 1, *partition).await?;
        let mut connection = Connection::connect(leader, verifier_config(1 << 20))
            .await
            .map_err(text)?;
        let end = connection
            .list_offsets(TOPIC, *partition, LATEST_TIMESTAMP)
            .await
            .map_err(text)?;
        ends.insert(*partition, end);
    }
    let mut bootstrap =
        Connection::connect(kafka_addresses(scenario.nodes)[0], verifier_config(1 << 20))
            .await
            .map_err(text)?;
    let coordinator = bootstrap.find_coordinator(group).await.map_err(text)?;
    let address: SocketAddr = format!("{}:{}", coordinator.host, coordinator.port)
        .parse()
        .map_err(|error| format!("coordinator address: {error}"))?;
    let mut connection = Connection::connect(address, verifier_config(1 << 20))
        .await
        .map_err(text)?;
    let committed = connection
        .fetch_offsets(group, TOPIC, &partitions)
        .await
        .map_err(text)?;
    let behind: Vec<String> = committed
        .iter()
        // Nothing committed (-1) means starting at 0: caught up on an empty partition.
        .filter(|(partition, offset)| (*offset).max(0) < ends.get(partition).copied().unwrap_or(0))
        .map(|(partition, offset)| {
            format!(
                "partition {partition} committed at {offset} of {}",
                ends.get(partition).copied().unwrap_or(0)
            )
        })
        .collect();
    if behind.is_empty() {
        Ok(())
    } else {
        Err(behind.join(", "))
    }
}

/// Group members and copiers keep running after the producers stop, until they caught up.
fn outlives_producers(role: ClientRole) -> bool {
    matches!(role, ClientRole::GroupMember | ClientRole::Copier)
}

/// Every partition of the scenario's topics.
fn partition_refs(scenario: &Scenario) -> Vec<PartitionRef> {
    scenario
        .topics
        .iter()
        .flat_map(|topic| {
            (0..topic.partitions).map(|partition| PartitionRef {
                node: topic.node,
                partition,
            })
        })
        .collect()
}

async fn produce_once(scenario: &Scenario, topic_node: u8, partition: i32) -> Result<(), String> {
    let leader = serving_address(scenario, topic_node, partition).await?;
    let mut connection = Connection::connect(leader, verifier_config(16 * 1024 * 1024))
        .await
        .map_err(|error| error.to_string())?;
    let options = myelin_client::ProduceOptions {
        acks: -1,
        timeout_ms: 2_000,
        ..myelin_client::ProduceOptions::default()
    };
    connection
        .produce(
            TOPIC,
            partition,
            &[myelin_client::NewRecord::new("verifier-after-heal")],
            &options,
        )
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Reads every partition of every node back, from offset 0 to the high watermark.
async fn read_everything(scenario: Scenario) -> BTreeMap<PartitionRef, FinalRead> {
    let mut finals = BTreeMap::new();
    for key in partition_refs(&scenario) {
        let read = retry_until_deadline("no complete read", || async {
            let address = serving_address(&scenario, key.node, key.partition).await?;
            read_partition(
                address,
                TOPIC,
                key.partition,
                IsolationLevel::ReadUncommitted,
            )
            .await
        })
        .await;
        finals.insert(key, read);
    }
    finals
}

/// Reads `topic`'s `partition` from its start to its high watermark (read_uncommitted)
/// or its last stable offset (read_committed: what is delivered, aborted records left out).
async fn read_partition(
    address: SocketAddr,
    topic: &str,
    partition: i32,
    isolation: IsolationLevel,
) -> Result<FinalLog, String> {
    let config = verifier_config(64 * 1024 * 1024);
    let text = |error: myelin_client::Error| error.to_string();
    let mut connection = Connection::connect(address, config).await.map_err(text)?;
    let high_watermark = match connection
        .list_offsets_isolated(topic, partition, LATEST_TIMESTAMP, isolation)
        .await
    {
        Ok(offset) => offset,
        // No client ever created the topic (or the node lost it): an empty log, against
        // which the checkers judge whatever was acknowledged or read there.
        Err(error) if error.broker_code() == Some(UNKNOWN_TOPIC_OR_PARTITION) => {
            return Ok(FinalLog {
                log_start_offset: 0,
                high_watermark: 0,
                records: Vec::new(),
            })
        }
        Err(error) => return Err(text(error)),
    };
    let log_start_offset = connection
        .list_offsets(topic, partition, EARLIEST_TIMESTAMP)
        .await
        .map_err(text)?;
    let options = FetchOptions {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1024 * 1024,
        isolation,
    };
    let mut records = Vec::new();
    let mut position = log_start_offset;
    while position < high_watermark {
        let fetched = connection
            .fetch(topic, partition, position, &options)
            .await
            .map_err(text)?;
        if fetched.next_offset <= position {
            return Err(format!(
                "a fetch from {position} made no progress (high watermark {high_watermark})"
            ));
        }
        records.extend(fetched.records.iter().map(|record| {
            ReadRecord {
                offset: record.offset,
                value: record
                    .value
                    .as_ref()
                    .map(|value| String::from_utf8_lossy(value).into_owned()),
            }
        }));
        position = fetched.next_offset;
    }
    Ok(FinalLog {
        log_start_offset,
        high_watermark,
        records,
    })
}

/// Waits (up to the final deadline) until no transaction is open on the output topic (each
/// partition's last stable offset is its high watermark), then reads every output partition
/// back at both isolation levels.
async fn settle_and_read_outputs(
    scenario: Scenario,
) -> (Result<(), String>, BTreeMap<i32, OutputLogs>) {
    // The output exists even if no client lived to create it (a shrunk scenario).
    let created = retry_until_deadline("the output topic could not be created", || {
        create_output_topic(&scenario)
    })
    .await;
    if let Err(error) = created {
        return (Err(error), BTreeMap::new());
    }
    let settled = retry_until_deadline("a transaction stayed open on the output", || {
        outputs_settled(&scenario)
    })
    .await;
    let mut outputs = BTreeMap::new();
    for partition in 0..OUTPUT_PARTITIONS {
        let read = |isolation| {
            let scenario = &scenario;
            retry_until_deadline("no complete read of the output", move || async move {
                let address = output_leader(scenario, partition).await?;
                read_partition(address, OUTPUT_TOPIC, partition, isolation).await
            })
        };
        let uncommitted = read(IsolationLevel::ReadUncommitted).await;
        let committed = read(IsolationLevel::ReadCommitted).await;
        outputs.insert(
            partition,
            OutputLogs {
                uncommitted,
                committed,
            },
        );
    }
    (settled, outputs)
}

async fn create_output_topic(scenario: &Scenario) -> Result<(), String> {
    let mut connection =
        Connection::connect(kafka_addresses(scenario.nodes)[0], verifier_config(1 << 20))
            .await
            .map_err(|error| error.to_string())?;
    let replication_factor = scenario.nodes.min(3) as i16;
    match connection
        .create_topic(OUTPUT_TOPIC, OUTPUT_PARTITIONS, replication_factor, &[])
        .await
    {
        Ok(()) => Ok(()),
        Err(error) if error.broker_code() == Some(TOPIC_ALREADY_EXISTS) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

async fn output_leader(scenario: &Scenario, partition: i32) -> Result<SocketAddr, String> {
    crate::workload::leader_address_of(
        &kafka_addresses(scenario.nodes),
        OUTPUT_TOPIC,
        partition,
        "sim-verifier",
    )
    .await
}

/// Whether every output partition's last stable offset has reached its high watermark.
async fn outputs_settled(scenario: &Scenario) -> Result<(), String> {
    let text = |error: myelin_client::Error| error.to_string();
    let mut open = Vec::new();
    for partition in 0..OUTPUT_PARTITIONS {
        let address = output_leader(scenario, partition).await?;
        let mut connection = Connection::connect(address, verifier_config(1 << 20))
            .await
            .map_err(text)?;
        let high_watermark = connection
            .list_offsets(OUTPUT_TOPIC, partition, LATEST_TIMESTAMP)
            .await
            .map_err(text)?;
        let last_stable_offset = connection
            .list_offsets_isolated(
                OUTPUT_TOPIC,
                partition,
                LATEST_TIMESTAMP,
                IsolationLevel::ReadCommitted,
            )
            .await
            .map_err(text)?;
        if last_stable_offset < high_watermark {
            open.push(format!(
                "output partition {partition}: last stable offset {last_stable_offset}, high watermark {high_watermark}"
            ));
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(open.join(", "))
    }
}

/// Runs the scenario of every seed in `seeds` (`generate` names it), `jobs` at a time, each
/// in a child process (see [`run`]); the reports come back in seed order.
pub fn run_seeds(
    seeds: std::ops::Range<u64>,
    jobs: usize,
    generate: fn(u64) -> Scenario,
    options: &RunOptions,
    exe: &std::path::Path,
) -> Vec<RunReport> {
    let next = AtomicU64::new(seeds.start);
    let reports: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    return;
                }
                let report = run(&generate(seed), options, exe);
                reports
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(report);
            });
        }
    });
    let mut reports = reports
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    reports.sort_by_key(|report| report.scenario.seed);
    reports
}

/// Runs `scenario` in a child process (`exe --scenario <json> --report-json ...`, where
/// `exe` is the `myelin-sim` binary) and returns the report it prints. This is how sweeps,
/// shrinking and the tests run scenarios; see [`run_in_process`] for why.
pub fn run(scenario: &Scenario, options: &RunOptions, exe: &std::path::Path) -> RunReport {
    let wall_start = std::time::Instant::now();
    let mut command = std::process::Command::new(exe);
    command
        .arg("--scenario")
        .arg(scenario.to_json())
        .arg("--report-json");
    if let Some(path) = &options.trace_path {
        command.arg("--trace").arg(path);
    }
    if let Some(path) = &options.html_path {
        command.arg("--html").arg(path);
    }
    if let Some(defect) = options.defect_name() {
        command.arg("--defect").arg(defect);
    }
    let failed = |why: String| RunReport::failed(scenario, options, why, wall_start.elapsed());
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return failed(format!("cannot run {}: {error}", exe.display())),
    };
    // Read both pipes on threads of their own, so that a large report or a chatty log
    // never blocks the child.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn std::io::Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn std::io::Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if wall_start.elapsed() > CHILD_WALL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("the simulation process took more than {CHILD_WALL_TIMEOUT:?} of wall time and was killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(error) => break Err(format!("waiting for the simulation process: {error}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let status = match status {
        Ok(status) => status,
        Err(why) => return failed(why),
    };
    match stdout.lines().last().map(serde_json::from_str::<RunReport>) {
        Some(Ok(report)) => report,
        _ => failed(format!(
            "the simulation process ended with {status} and no report; its stderr ends with: {}",
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        )),
    }
}

impl RunReport {
    /// The report of a run that could not report for itself.
    fn failed(
        scenario: &Scenario,
        options: &RunOptions,
        panic: String,
        wall: Duration,
    ) -> RunReport {
        RunReport {
            scenario: scenario.clone(),
            defect: options.defect_name().map(String::from),
            counts: HistoryCounts::default(),
            faults: FaultCounts::default(),
            disk: DiskStats::default(),
            checks: CheckReport::default(),
            trace_events: 0,
            trace_digest: 0,
            simulated: Duration::ZERO,
            wall,
            panic: Some(panic),
            trace_error: None,
            html_error: None,
        }
    }
}

/// Runs `scenario` in a fresh madsim runtime seeded with its seed, on a fresh thread of this
/// process. A panic inside the run becomes a failed report.
///
/// Only the first run of a process is guaranteed to replay exactly: some state that
/// decides task interleavings is process-wide and not reset by madsim. tokio's `select!`
/// draws from a thread-local generator seeded from a process-wide counter, and std's
/// `HashMap` keys are seeded by madsim only in a thread's first runtime. A fresh thread per
/// run settles the second, not the first; so every caller that runs more than one
/// scenario goes through [`run`], one child process per scenario. The determinism test
/// checks the result.
pub fn run_in_process(scenario: &Scenario, options: &RunOptions) -> RunReport {
    let wall_start = std::time::Instant::now();
    let timeline: Option<SharedTimeline> = options
        .html_path
        .as_ref()
        .map(|_| Arc::new(Mutex::new(Timeline::new(scenario))));
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(format!("sim-seed-{}", scenario.seed))
            .spawn_scoped(scope, || {
                run_in_runtime(scenario, options, timeline.clone())
            })
            .expect("spawning a simulation thread")
            .join()
    });
    let wall = wall_start.elapsed();
    match outcome {
        Ok(mut report) => {
            report.wall = wall;
            report
        }
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            let mut report = RunReport::failed(scenario, options, message.clone(), wall);
            // The page of a run that panicked: what happened up to the panic.
            if let (Some(timeline), Some(path)) = (&timeline, &options.html_path) {
                let mut timeline = lock_timeline(timeline);
                timeline.panicked(&message);
                report.html_error = write_html(&timeline, &report, path).err();
            }
            report
        }
    }
}

fn run_in_runtime(
    scenario: &Scenario,
    options: &RunOptions,
    timeline: Option<SharedTimeline>,
) -> RunReport {
    let mut runtime = Runtime::with_seed_and_config(scenario.seed, madsim::Config::default());
    runtime.set_time_limit(Duration::from_millis(scenario.duration_ms) + TIME_LIMIT_SLACK);
    let writer: Option<Box<dyn Write + Send>> = match &options.trace_path {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Some(Box::new(std::io::BufWriter::new(file))),
            Err(error) => panic!("cannot create trace file {}: {error}", path.display()),
        },
        None => None,
    };
    let scenario = scenario.clone();
    let options = options.clone();
    runtime.block_on(async move { supervise(scenario, options, writer, timeline).await })
}

async fn supervise(
    scenario: Scenario,
    options: RunOptions,
    writer: Option<Box<dyn Write + Send>>,
    timeline: Option<SharedTimeline>,
) -> RunReport {
    let handle = Handle::current();
    let log = Arc::new(RunLog::new(Trace::new(writer), timeline));
    if scenario.cluster {
        log.lock().checker.for_cluster();
    }
    log.harness_event(Source::Harness, "scenario", &scenario.to_json());
    let nodes: Vec<SimNode> = (1..=scenario.nodes)
        .map(|index| create_node(&handle, &scenario, index, &log, &options))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Group members (and copiers) outlive the producers: they must catch up once faults
    // heal.
    let stop_members = Arc::new(AtomicBool::new(false));
    let signals = Arc::new(StepSignals::default());
    let mut client_ids = Vec::new();
    let mut clients = Vec::new();
    let mut members = Vec::new();
    let mut member_commands = Vec::new();
    for (index, spec) in scenario.clients.iter().enumerate() {
        let index = index as u8;
        let node = handle
            .create_node()
            .name(format!("client-{index}"))
            .ip(client_ip(index))
            .build();
        client_ids.push(node.id());
        let topic = scenario.topic_of(spec);
        let context = ClientContext {
            index,
            spec: spec.clone(),
            partitions: topic.map_or(1, |topic| topic.partitions),
            segment_bytes: topic.and_then(|topic| topic.segment_bytes),
            topic_node: topic.map_or(spec.node, |topic| topic.node),
            address: SocketAddr::new(node_ip(spec.node), KAFKA_PORT),
            cluster: scenario.cluster.then(|| kafka_addresses(scenario.nodes)),
            log: log.clone(),
            stop: if outlives_producers(spec.role) {
                stop_members.clone()
            } else {
                stop.clone()
            },
            rng: StdRng::seed_from_u64(derived_seed(scenario.seed, 3, u64::from(index))),
            command: Arc::new(Mutex::new(None)),
            signals: signals.clone(),
        };
        member_commands.push(context.command.clone());
        let task = node.spawn(run_client(context));
        if outlives_producers(spec.role) {
            members.push((index, task));
        } else {
            clients.push((index, task));
        }
    }
    let mut supervisor = Supervisor {
        scenario: &scenario,
        handle: handle.clone(),
        log: log.clone(),
        nodes,
        client_ids,
        clogs: BTreeMap::new(),
        packet_loss_active: 0,
        agenda: BTreeMap::new(),
        agenda_sequence: 0,
        faults: FaultCounts::default(),
        member_commands,
        paused_clients: std::collections::BTreeSet::new(),
        members_back_ms: 0,
        signals,
        armed: BTreeMap::new(),
        struck: BTreeMap::new(),
    };
    supervisor.run_schedule(scenario.duration_ms).await;

    // The workload ends: stop the clients, heal, then one more crash of every node.
    stop.store(true, Ordering::Relaxed);
    supervisor.heal_everything();
    let heal_us = log.now_us();
    await_clients(&log, clients).await;
    // With the producers stopped and every fault healed, the group must settle and commit
    // every partition to its end.
    let copiers = scenario
        .clients
        .iter()
        .any(|client| client.role == ClientRole::Copier);
    let group_outcome = if scenario.groups || (scenario.transactions && copiers) {
        let group = if scenario.transactions {
            COPIER_GROUP
        } else {
            GROUP
        };
        let watcher = handle
            .create_node()
            .name("group-watcher")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)))
            .build();
        let outcome = watcher
            .spawn(await_group_caught_up(scenario.clone(), group))
            .await
            .unwrap_or_else(|_| Err("the group watcher failed".into()));
        Some(outcome)
    } else {
        None
    };
    // group-owned-after-heal judges the members until the heal (and the last member's
    // return) plus its deadline: they run at least that long.
    let group_healed_us = if scenario.groups && !scenario.transactions {
        let healed_us = heal_us.max(supervisor.members_back_ms * 1000);
        let until = healed_us + OWNED_AFTER_HEAL_MS * 1000;
        let now = log.now_us();
        if until > now {
            tokio::time::sleep(Duration::from_micros(until - now)).await;
        }
        Some(healed_us)
    } else {
        None
    };
    stop_members.store(true, Ordering::Relaxed);
    await_clients(&log, members).await;
    supervisor.handle_fail_stops();
    for index in 1..=scenario.nodes {
        supervisor.crash(index, CrashSpec::default(), "final crash");
        supervisor.restart(index);
    }
    let verifier = handle
        .create_node()
        .name("verifier")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)))
        .build();
    let finals = verifier
        .spawn(read_everything(scenario.clone()))
        .await
        .unwrap_or_default();
    let transaction_outcome = if scenario.transactions {
        let outcome = verifier
            .spawn(settle_and_read_outputs(scenario.clone()))
            .await
            .unwrap_or_else(|_| (Err("the output reader failed".into()), BTreeMap::new()));
        Some(outcome)
    } else {
        None
    };
    // A healed cluster must also take writes: one acks=all record per partition, through
    // its leader, within the deadline; then a pause lets followers finish catching up
    // before their logs are compared.
    let writes_after_heal = if scenario.cluster {
        let written = verifier
            .spawn(write_after_heal(scenario.clone()))
            .await
            .unwrap_or_default();
        tokio::time::sleep(REPLICAS_SETTLE).await;
        written
    } else {
        Vec::new()
    };
    let replica_logs: Vec<(PartitionRef, ReplicaBatches)> = if scenario.cluster {
        finals
            .keys()
            .map(|partition| {
                let topic_partition =
                    myelin_core::metadata::TopicPartition::new(TOPIC, partition.partition);
                let replicas = supervisor
                    .nodes
                    .iter()
                    .zip(1u8..)
                    .filter_map(|(node, index)| {
                        node.fs
                            .batches(Path::new(DATA_DIR), &topic_partition)
                            .map(|batches| (index, batches))
                    })
                    .collect();
                (*partition, replicas)
            })
            .collect()
    } else {
        Vec::new()
    };
    let simulated = log.start.elapsed();
    let mut disk = DiskStats::default();
    for node in &supervisor.nodes {
        disk.add(&node.fs.stats());
    }
    let faults = supervisor.faults.clone();
    drop(supervisor);
    let t_us = log.now_us();
    let mut state = log.lock();
    let counts = state.history.counts;
    let progress = Progress {
        acknowledged: counts.acknowledged(),
        records_read: counts.records_read,
        faults_injected: faults.total_injected(),
    };
    let mut checker = std::mem::take(&mut state.checker);
    for (partition, replicas) in &replica_logs {
        if let Some(Ok(final_log)) = finals.get(partition) {
            checker.check_replicas(*partition, final_log.high_watermark, replicas);
        }
    }
    for (partition, outcome) in &writes_after_heal {
        checker.check_write_after_heal(*partition, outcome);
    }
    match (&group_outcome, &transaction_outcome) {
        (copied, Some((settled, outputs))) => {
            let settled = match (copied, settled) {
                (Some(Err(error)), _) => {
                    Err(format!("the copiers did not finish the input: {error}"))
                }
                (_, settled) => settled.clone(),
            };
            // Without copiers (a shrunk scenario), nobody copies the input.
            let inputs = if copiers {
                finals.clone()
            } else {
                BTreeMap::new()
            };
            checker.check_transactions(outputs, &inputs, &settled);
        }
        (Some(outcome), None) => checker.check_group_stabilized(outcome),
        (None, None) => {}
    }
    if let Some(healed_us) = group_healed_us {
        checker.check_group_owned_after_heal(
            scenario.partitions_of(1),
            healed_us,
            OWNED_AFTER_HEAL_MS * 1000,
        );
        checker.check_expired_members(SESSION_TIMEOUT_MS as u64 * 1000);
    }
    let checks = checker.finish(&finals, progress);
    let state = &mut *state;
    for violation in &checks.violations[state.violations_traced..] {
        state
            .trace
            .line(t_us, Source::Harness, None, "check", &violation.to_string());
        if let Some(timeline) = &state.timeline {
            lock_timeline(timeline).violation(t_us, violation, state.trace.last_line());
        }
    }
    let trace_error = state.trace.finish().err();
    let mut report = RunReport {
        scenario: scenario.clone(),
        defect: options.defect_name().map(String::from),
        counts,
        faults,
        disk,
        checks,
        trace_events: state.trace.events(),
        trace_digest: state.trace.digest(),
        simulated,
        wall: Duration::ZERO,
        panic: None,
        trace_error,
        html_error: None,
    };
    if let (Some(timeline), Some(path)) = (&state.timeline, &options.html_path) {
        report.html_error = write_html(&lock_timeline(timeline), &report, path).err();
    }
    report
}

/// Writes the run's timeline page to `path`.
fn write_html(timeline: &Timeline, report: &RunReport, path: &Path) -> Result<(), String> {
    let title = format!(
        "myelin-sim seed {}{}{}: {}",
        report.scenario.seed,
        if report.scenario.transactions {
            " (transactions)"
        } else if report.scenario.groups {
            " (groups)"
        } else if report.scenario.cluster {
            " (cluster)"
        } else {
            ""
        },
        report
            .defect
            .as_ref()
            .map(|defect| format!(" with defect {defect}"))
            .unwrap_or_default(),
        if report.passed() { "passed" } else { "FAILED" }
    );
    let summary = format!(
        "{}{}replay: {}\n",
        report.scenario,
        report.summary(),
        report.replay_command()
    );
    std::fs::write(path, timeline.html(&title, &summary))
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}
