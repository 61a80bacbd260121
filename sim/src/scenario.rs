//! A scenario is data: the cluster, the workload and the fault schedule of one run.
//!
//! [`Scenario::generate`] expands a seed into a scenario with `rand` 0.9's `StdRng`, so a
//! seed names a scenario exactly. A scenario also travels as JSON (`--scenario '<json>'`):
//! that is how a shrunk fault schedule, which no seed generates, is replayed. `Display`
//! prints it for people, `Debug` prints the command that replays it (so proptest's
//! "minimal failing input" line is a command to paste).
//!
//! The madsim runtime is seeded with [`Scenario::seed`] too, so network latencies and task
//! interleavings are part of what the seed replays; everything random that the harness
//! itself decides (torn-write sizes, fsync latencies) is either in the scenario or drawn
//! from generators seeded from it.
//!
//! Nodes are numbered from 1 (node `n` has IP 10.0.0.n and Kafka node id n). Two shapes:
//! - independent nodes ([`Scenario::generate`]): each node is a cluster of one with its own
//!   topic, and each client talks to its node;
//! - one cluster ([`Scenario::generate_cluster`], `cluster: true`): 3 or 5 nodes replicate
//!   one topic (replication factor 3), clients bootstrap from a node and follow each
//!   partition's leader, and faults also cut the cluster apart (majority/minority splits,
//!   one-way links between nodes, an isolated leader);
//! - transactions ([`Scenario::generate_transactions`], `transactions: true`): a 3-node
//!   cluster, the input topic [`TOPIC`] (2 partitions) fed by idempotent producers, the
//!   output topic [`OUTPUT_TOPIC`] ([`OUTPUT_PARTITIONS`] partitions) written by
//!   transactional producers and by consume-transform-produce copiers (members of
//!   [`COPIER_GROUP`]), and read by read_committed and read_uncommitted consumers; faults
//!   add crashes and pauses of transactional clients, answers lost on their way to a
//!   client, and a crash or a cut of the transaction coordinator right after an EndTxn.

use crate::simfs::{CrashSpec, Tear, TearMode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The topic every node serves (in transaction scenarios: the copiers' input).
pub const TOPIC: &str = "events";
/// The output topic of transaction scenarios.
pub const OUTPUT_TOPIC: &str = "copied";
/// Partitions of [`OUTPUT_TOPIC`].
pub const OUTPUT_PARTITIONS: i32 = 3;
/// Partitions of the input topic of transaction scenarios.
pub const INPUT_PARTITIONS: i32 = 2;
/// The consumer group of the copiers.
pub const COPIER_GROUP: &str = "sim-copiers";
/// `transaction.timeout.ms` of every transactional client: short, so that a paused client's
/// transaction expires within a run (the coordinator checks timeouts every second).
pub const TRANSACTION_TIMEOUT_MS: i32 = 2_000;

/// Everything one run does. See the module doc.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    /// Seeds the madsim runtime and the harness's own generators.
    pub seed: u64,
    /// Number of nodes (1 or 3).
    pub nodes: u8,
    /// Simulated time the workload and the faults run for; the final checks come after.
    pub duration_ms: u64,
    /// Range of one fsync's latency, in ms (inclusive).
    pub fsync_latency_ms: (u64, u64),
    /// One topic per node.
    pub topics: Vec<TopicSpec>,
    pub clients: Vec<ClientSpec>,
    /// Sorted by `at_ms`.
    pub faults: Vec<ScheduledFault>,
    /// All nodes form one cluster and `topics` holds its one topic (see the module doc).
    #[serde(default)]
    pub cluster: bool,
    /// A cluster whose consumers are the members of one consumer group, `GROUP`.
    #[serde(default)]
    pub groups: bool,
    /// A transaction scenario (see the module doc).
    #[serde(default)]
    pub transactions: bool,
}

/// The topic a node serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub node: u8,
    pub partitions: i32,
    /// `segment.bytes` of the topic (small values make segments roll); `None`: the default.
    pub segment_bytes: Option<u32>,
}

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientRole {
    /// Plain produce with acks=all (-1); a failed batch is not retried.
    ProducerAcksAll,
    /// Plain produce with acks=1; a failed batch is not retried.
    ProducerAcksLeader,
    /// Idempotent producer (acks=all): retries each batch until it is acknowledged.
    IdempotentProducer,
    /// Reads the partition by offset from 0, following the high watermark.
    Consumer,
    /// A member of the consumer group `GROUP`: consumes the partitions the group assigns
    /// it (its `partition` is ignored), from the committed offsets, and commits its
    /// position.
    GroupMember,
    /// Writes transactions of random size to several partitions of [`OUTPUT_TOPIC`],
    /// committing or aborting at random (transactional id `producer-<client>`).
    TransactionalProducer,
    /// A consume-transform-produce copier, member of [`COPIER_GROUP`]: reads its input
    /// partitions read_committed and writes each record's value to [`OUTPUT_TOPIC`] in a
    /// transaction that also commits the input offsets (transactional id `copier-<client>`).
    Copier,
    /// Reads its partition of [`OUTPUT_TOPIC`] read_committed.
    ReadCommittedConsumer,
    /// Reads its partition of [`OUTPUT_TOPIC`] read_uncommitted.
    ReadUncommittedConsumer,
}

impl ClientRole {
    pub fn is_producer(self) -> bool {
        matches!(
            self,
            ClientRole::ProducerAcksAll
                | ClientRole::ProducerAcksLeader
                | ClientRole::IdempotentProducer
                | ClientRole::TransactionalProducer
        )
    }

    /// Transactional clients: they crash, pause and lose answers as clients (faults
    /// `client-*`), and are fenced by their successors.
    pub fn is_transactional(self) -> bool {
        matches!(self, ClientRole::TransactionalProducer | ClientRole::Copier)
    }

    /// Clients whose `partition` is one of [`OUTPUT_TOPIC`]'s.
    pub fn reads_output(self) -> bool {
        matches!(
            self,
            ClientRole::ReadCommittedConsumer | ClientRole::ReadUncommittedConsumer
        )
    }
}

/// The consumer group of group scenarios.
pub const GROUP: &str = "sim-group";

/// One simulated client: its own madsim node (IP 10.0.1.<index + 1>), one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSpec {
    pub node: u8,
    pub partition: i32,
    pub role: ClientRole,
    /// Pause between operations, in ms (inclusive range).
    pub think_ms: (u64, u64),
    /// Records per produced batch (inclusive range).
    pub records_per_batch: (u8, u8),
}

/// Which way a one-way link loss cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkDirection {
    ClientToNode,
    NodeToClient,
}

/// The role a node fault is aimed at: the node that holds it when the fault strikes (as the
/// checkers last saw it: the sender of the newest leader epoch's appends), or the fault's
/// own `node` if nobody is known to hold it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aim {
    /// The leader of a partition of the scenario's topic.
    PartitionLeader { partition: i32 },
    /// The group coordinator of the scenario's consumer group (the leader of its offsets
    /// partition).
    GroupCoordinator,
    /// The controller (the leader of the metadata log).
    Controller,
}

impl fmt::Display for Aim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aim::PartitionLeader { partition } => write!(f, "the leader of partition {partition}"),
            Aim::GroupCoordinator => write!(f, "the group coordinator"),
            Aim::Controller => write!(f, "the controller"),
        }
    }
}

/// One fault. Every fault but an fsync failure heals by itself after its duration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Kill the node (all its tasks), crash its file system (a power loss), restart it after
    /// `down_ms`.
    Crash {
        node: u8,
        down_ms: u64,
        crash: CrashSpec,
        /// Strike the node holding this role instead of `node` (if one is known).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aim: Option<Aim>,
    },
    /// Stop scheduling the node's tasks (a long GC pause, a stopped VM).
    Pause { node: u8, for_ms: u64 },
    /// Cut the node off the network, both ways.
    Isolate {
        node: u8,
        for_ms: u64,
        /// Strike the node holding this role instead of `node` (if one is known).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aim: Option<Aim>,
    },
    /// Cut one direction of the link between a client and its node.
    LinkLoss {
        client: u8,
        direction: LinkDirection,
        for_ms: u64,
    },
    /// Lose packets and add latency on every link (TCP turns loss into delay).
    PacketLoss {
        loss_per_mille: u16,
        latency_ms: (u64, u64),
        for_ms: u64,
    },
    /// The node's next fsync fails: the node fail-stops and is restarted after a crash.
    FsyncFailure { node: u8 },
    /// The node's wall clock is stepped by `offset_ms` (and back at the heal), as NTP or an
    /// operator might; its monotonic clock, which runs the core's timers, is not.
    ClockSkew {
        node: u8,
        offset_ms: i64,
        for_ms: u64,
    },
    /// Cut the `minority` nodes off from the other nodes, both ways (clients still reach
    /// everyone).
    Split { minority: Vec<u8>, for_ms: u64 },
    /// Cut one direction of the link between two nodes.
    NodeLinkLoss { from: u8, to: u8, for_ms: u64 },
    /// A group member stops at once (no LeaveGroup) and starts again, as a new member,
    /// after `down_ms`.
    MemberCrash { client: u8, down_ms: u64 },
    /// A group member leaves the group (LeaveGroup) and joins again after `down_ms`.
    MemberLeave { client: u8, down_ms: u64 },
    /// A group member's tasks stop being scheduled (a long GC pause): when it resumes it
    /// carries on with what it knew, a zombie until the group fences it.
    MemberPause { client: u8, for_ms: u64 },
    /// A group member is cut off from every node.
    MemberIsolate { client: u8, for_ms: u64 },
    /// A transactional client stops at once (its open transaction left behind) and starts
    /// again after `down_ms` as a new instance, whose InitProducerId fences the old one.
    ClientCrash { client: u8, down_ms: u64 },
    /// A transactional client's tasks stop being scheduled for longer than its transaction
    /// timeout: its open transaction expires, and it resumes as a fenced zombie.
    ClientPause { client: u8, for_ms: u64 },
    /// Every answer to a transactional client is lost (its requests still arrive): its
    /// requests time out and are retried over new connections. With `requests_held`, its
    /// requests are held instead, and delivered when the fault heals, late, on the
    /// connections the client gave up on (a delayed EndTxn may then meet the client's next
    /// transaction: KAFKA-17754).
    ClientDeaf {
        client: u8,
        for_ms: u64,
        #[serde(default)]
        requests_held: bool,
    },
    /// Crash the transaction coordinator right after it answers the next EndTxn (from
    /// `at_ms` on): the transaction is prepared, its markers maybe not written.
    CoordinatorCrash { down_ms: u64 },
    /// Cut the transaction coordinator off from the other nodes right after it answers the
    /// next EndTxn: its markers cannot reach the partition leaders.
    CoordinatorSplit { for_ms: u64 },
    /// Crash the node an idempotent producer sends its next batch to (from `at_ms` on),
    /// `after_ms` after the send, and restart it after `down_ms`: the batch may be lost,
    /// held by that leader alone, or replicated but not acknowledged, and the producer
    /// retries it at the next leader, over a log that may have been truncated.
    ProduceLeaderCrash { after_ms: u64, down_ms: u64 },
    /// Cut the node an idempotent producer sends its next batch to off every other node and
    /// client, `after_ms` after the send, for `for_ms`: it may append the batch alone while
    /// another leader is elected, and truncate it when it is back.
    ProduceLeaderIsolate { after_ms: u64, for_ms: u64 },
}

/// A client's step that a fault can be armed to strike right after (at the node that
/// served it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientStep {
    /// A transaction coordinator answered an EndTxn.
    EndTxnAnswered,
    /// An idempotent producer sent a batch to a partition leader.
    ProduceSent,
}

impl ClientStep {
    pub const ALL: [ClientStep; 2] = [ClientStep::EndTxnAnswered, ClientStep::ProduceSent];
}

impl ClientRole {
    /// What the client does, as the scenario's printout says it.
    pub fn description(self) -> &'static str {
        match self {
            ClientRole::ProducerAcksAll => "producer acks=all",
            ClientRole::ProducerAcksLeader => "producer acks=1",
            ClientRole::IdempotentProducer => "idempotent producer",
            ClientRole::Consumer => "consumer by offset",
            ClientRole::GroupMember => "consumer group member",
            ClientRole::TransactionalProducer => "transactional producer (output topic)",
            ClientRole::Copier => "copier (input -> output, exactly once)",
            ClientRole::ReadCommittedConsumer => "read_committed consumer of the output",
            ClientRole::ReadUncommittedConsumer => "read_uncommitted consumer of the output",
        }
    }
}

impl Fault {
    /// A short name, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Pause { .. } => "pause",
            Fault::Isolate { .. } => "isolate",
            Fault::LinkLoss { .. } => "link-loss",
            Fault::PacketLoss { .. } => "packet-loss",
            Fault::FsyncFailure { .. } => "fsync-failure",
            Fault::ClockSkew { .. } => "clock-skew",
            Fault::Split { .. } => "split",
            Fault::NodeLinkLoss { .. } => "node-link-loss",
            Fault::MemberCrash { .. } => "member-crash",
            Fault::MemberLeave { .. } => "member-leave",
            Fault::MemberPause { .. } => "member-pause",
            Fault::MemberIsolate { .. } => "member-isolate",
            Fault::ClientCrash { .. } => "client-crash",
            Fault::ClientPause { .. } => "client-pause",
            Fault::ClientDeaf {
                requests_held: true,
                ..
            } => "client-mute",
            Fault::ClientDeaf { .. } => "client-deaf",
            Fault::CoordinatorCrash { .. } => "coordinator-crash",
            Fault::CoordinatorSplit { .. } => "coordinator-split",
            Fault::ProduceLeaderCrash { .. } => "produce-leader-crash",
            Fault::ProduceLeaderIsolate { .. } => "produce-leader-isolate",
        }
    }

    /// The client step this fault waits for, once its time comes, and how long after that
    /// step it strikes; `None` for faults that strike at their time.
    pub fn trigger(&self) -> Option<(ClientStep, u64)> {
        match self {
            Fault::CoordinatorCrash { .. } | Fault::CoordinatorSplit { .. } => {
                Some((ClientStep::EndTxnAnswered, 0))
            }
            Fault::ProduceLeaderCrash { after_ms, .. }
            | Fault::ProduceLeaderIsolate { after_ms, .. } => {
                Some((ClientStep::ProduceSent, *after_ms))
            }
            _ => None,
        }
    }

    /// How long the fault lasts before it heals (0 for instantaneous ones).
    pub fn duration_ms(&self) -> u64 {
        match self {
            Fault::Crash { down_ms, .. }
            | Fault::MemberCrash { down_ms, .. }
            | Fault::MemberLeave { down_ms, .. }
            | Fault::ClientCrash { down_ms, .. }
            | Fault::CoordinatorCrash { down_ms }
            | Fault::ProduceLeaderCrash { down_ms, .. } => *down_ms,
            Fault::ClientPause { for_ms, .. }
            | Fault::ClientDeaf { for_ms, .. }
            | Fault::CoordinatorSplit { for_ms }
            | Fault::ProduceLeaderIsolate { for_ms, .. }
            | Fault::Pause { for_ms, .. }
            | Fault::MemberPause { for_ms, .. }
            | Fault::MemberIsolate { for_ms, .. }
            | Fault::Isolate { for_ms, .. }
            | Fault::LinkLoss { for_ms, .. }
            | Fault::PacketLoss { for_ms, .. }
            | Fault::ClockSkew { for_ms, .. }
            | Fault::Split { for_ms, .. }
            | Fault::NodeLinkLoss { for_ms, .. } => *for_ms,
            Fault::FsyncFailure { .. } => 0,
        }
    }

    /// The client the fault targets, if it targets one.
    pub fn client_mut(&mut self) -> Option<&mut u8> {
        match self {
            Fault::LinkLoss { client, .. }
            | Fault::MemberCrash { client, .. }
            | Fault::MemberLeave { client, .. }
            | Fault::MemberPause { client, .. }
            | Fault::MemberIsolate { client, .. }
            | Fault::ClientCrash { client, .. }
            | Fault::ClientPause { client, .. }
            | Fault::ClientDeaf { client, .. } => Some(client),
            _ => None,
        }
    }

    /// The same fault lasting `duration_ms` (for shrinking).
    pub fn with_duration_ms(&self, duration_ms: u64) -> Fault {
        let mut fault = self.clone();
        match &mut fault {
            Fault::Crash { down_ms, .. }
            | Fault::MemberCrash { down_ms, .. }
            | Fault::MemberLeave { down_ms, .. }
            | Fault::ClientCrash { down_ms, .. }
            | Fault::CoordinatorCrash { down_ms }
            | Fault::ProduceLeaderCrash { down_ms, .. } => *down_ms = duration_ms,
            Fault::ClientPause { for_ms, .. }
            | Fault::ClientDeaf { for_ms, .. }
            | Fault::CoordinatorSplit { for_ms }
            | Fault::ProduceLeaderIsolate { for_ms, .. }
            | Fault::Pause { for_ms, .. }
            | Fault::MemberPause { for_ms, .. }
            | Fault::MemberIsolate { for_ms, .. }
            | Fault::Isolate { for_ms, .. }
            | Fault::LinkLoss { for_ms, .. }
            | Fault::PacketLoss { for_ms, .. }
            | Fault::ClockSkew { for_ms, .. }
            | Fault::Split { for_ms, .. }
            | Fault::NodeLinkLoss { for_ms, .. } => *for_ms = duration_ms,
            Fault::FsyncFailure { .. } => {}
        }
        fault
    }
}

/// A fault and when it starts, in ms of simulated time from the start of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledFault {
    pub at_ms: u64,
    pub fault: Fault,
}

/// Mixed into a cluster scenario's seed, so that it draws differently from `generate`.
const CLUSTER_SEED_SALT: u64 = 0x6d79_656c_696e_0003;

/// The faults of cluster scenarios.
pub const CLUSTER_FAULT_KINDS: [&str; 9] = [
    "crash",
    "pause",
    "isolate",
    "split",
    "node-link-loss",
    "link-loss",
    "packet-loss",
    "fsync-failure",
    "clock-skew",
];

/// Mixed into a cluster or group scenario's seed to draw which crashes and isolations are
/// aimed at a role (a stream of its own, so the rest of the scenario is as before).
const AIM_SEED_SALT: u64 = 0x6d79_656c_696e_0011;

/// Aims about half of the crashes and isolations of a cluster or group scenario at a role:
/// the leader of a partition of the topic, the controller, or (with a group) the group
/// coordinator.
fn aim_faults(seed: u64, faults: &mut [ScheduledFault], partitions: i32, group: bool) {
    let mut rng = StdRng::seed_from_u64(seed ^ AIM_SEED_SALT);
    for scheduled in faults.iter_mut() {
        let (Fault::Crash { aim, .. } | Fault::Isolate { aim, .. }) = &mut scheduled.fault else {
            continue;
        };
        if !rng.random_bool(0.5) {
            continue;
        }
        let roles = if group { 4 } else { 3 };
        *aim = Some(match rng.random_range(0..roles) {
            0 | 1 => Aim::PartitionLeader {
                partition: rng.random_range(0..partitions.max(1)),
            },
            2 => Aim::Controller,
            _ => Aim::GroupCoordinator,
        });
    }
}

/// Mixed into a cluster scenario's seed to draw the faults that strike a leader right after
/// an idempotent producer's send (a stream of its own, so the rest of the scenario is as
/// before).
const PRODUCE_STRIKE_SEED_SALT: u64 = 0x6d79_656c_696e_0012;

/// Adds one or two faults that strike the leader an idempotent producer just sent a batch
/// to (crash or cut off), so that its retries meet leader changes and truncated logs.
fn add_produce_strikes(
    seed: u64,
    faults: &mut Vec<ScheduledFault>,
    window_ms: (u64, u64),
    nodes: u8,
    clients: u8,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ PRODUCE_STRIKE_SEED_SALT);
    for _ in 0..rng.random_range(1..=2) {
        let kind = if rng.random_bool(0.5) {
            "produce-leader-crash"
        } else {
            "produce-leader-isolate"
        };
        let at_ms = rng.random_range(window_ms.0..window_ms.1);
        let fault = generate_fault(&mut rng, kind, nodes, clients, &[]);
        faults.push(ScheduledFault { at_ms, fault });
    }
    faults.sort_by_key(|fault| fault.at_ms);
}

/// Mixed into a group scenario's seed.
const GROUPS_SEED_SALT: u64 = 0x6d79_656c_696e_0005;

/// The faults of group scenarios: the cluster's, and the members' own.
pub const GROUP_FAULT_KINDS: [&str; 9] = [
    "crash",
    "pause",
    "isolate",
    "split",
    "packet-loss",
    "member-crash",
    "member-leave",
    "member-pause",
    "member-isolate",
];

/// Mixed into a transaction scenario's seed.
const TRANSACTIONS_SEED_SALT: u64 = 0x6d79_656c_696e_0007;

/// The faults of transaction scenarios: the cluster's, the transactional clients' own, and
/// the coordinator's right after an EndTxn.
pub const TRANSACTION_FAULT_KINDS: [&str; 10] = [
    "crash",
    "pause",
    "isolate",
    "split",
    "packet-loss",
    "client-crash",
    "client-pause",
    "client-deaf",
    "coordinator-crash",
    "coordinator-split",
];

/// Every kind of fault, for generators.
pub const FAULT_KINDS: [&str; 7] = [
    "crash",
    "pause",
    "isolate",
    "link-loss",
    "packet-loss",
    "fsync-failure",
    "clock-skew",
];

impl Scenario {
    /// The scenario a seed names. See the module doc.
    pub fn generate(seed: u64) -> Scenario {
        Self::generate_with(seed, None, true)
    }

    /// The benchmark's scenario: `generate`'s workload on `nodes` nodes, without faults.
    pub fn benchmark(seed: u64, nodes: u8, duration_ms: u64) -> Scenario {
        let mut scenario = Self::generate_with(seed, Some(nodes), false);
        scenario.duration_ms = duration_ms;
        scenario
    }

    fn generate_with(seed: u64, nodes: Option<u8>, with_faults: bool) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed);
        let drawn_nodes: u8 = if rng.random_bool(0.4) { 1 } else { 3 };
        let nodes = nodes.unwrap_or(drawn_nodes);
        let duration_ms = rng.random_range(8_000..=12_000);
        let fsync_min = rng.random_range(1..=3);
        let fsync_latency_ms = (fsync_min, fsync_min + rng.random_range(0..=6));
        let mut topics = Vec::new();
        let mut clients = Vec::new();
        for node in 1..=nodes {
            let partitions = rng.random_range(1..=2);
            let segment_bytes = rng
                .random_bool(0.6)
                .then(|| rng.random_range(1_024..=16_384));
            topics.push(TopicSpec {
                node,
                partitions,
                segment_bytes,
            });
            // A hot partition: every producer of the node writes one partition, fast, so
            // appends pile up behind each sync (group commit) and segments roll under load.
            let hot = rng.random_bool(0.25);
            let mut roles = vec![ClientRole::ProducerAcksAll];
            if hot {
                roles.push(ClientRole::ProducerAcksAll);
            }
            if rng.random_bool(0.5) {
                roles.push(ClientRole::ProducerAcksLeader);
            }
            if rng.random_bool(0.7) {
                roles.push(ClientRole::IdempotentProducer);
            }
            roles.push(ClientRole::Consumer);
            if rng.random_bool(0.4) {
                roles.push(ClientRole::Consumer);
            }
            // Producers spread over the partitions; consumers read partitions that have one.
            let mut producer_partitions = Vec::new();
            let first_partition = rng.random_range(0..partitions);
            let mut consumers = 0;
            for role in roles {
                let partition = if role == ClientRole::Consumer {
                    consumers += 1;
                    producer_partitions[(consumers - 1) % producer_partitions.len()]
                } else {
                    let spread = if hot {
                        0
                    } else {
                        producer_partitions.len() as i32
                    };
                    let partition = (first_partition + spread) % partitions;
                    producer_partitions.push(partition);
                    partition
                };
                let think_ms = if role == ClientRole::Consumer {
                    (0, 20)
                } else if hot {
                    (0, rng.random_range(1..=5))
                } else {
                    let low = rng.random_range(2..=20);
                    (low, low + rng.random_range(5..=40))
                };
                clients.push(ClientSpec {
                    node,
                    partition,
                    role,
                    think_ms,
                    records_per_batch: (1, rng.random_range(1..=4)),
                });
            }
        }
        let client_count = clients.len() as u8;
        let fault_count = if with_faults {
            rng.random_range(2..=7)
        } else {
            0
        };
        let faults = schedule_faults(
            &mut rng,
            fault_count,
            (300, duration_ms - 1_500),
            &FAULT_KINDS,
            nodes,
            client_count,
            &[],
        );
        Scenario {
            seed,
            nodes,
            duration_ms,
            fsync_latency_ms,
            topics,
            clients,
            faults,
            cluster: false,
            groups: false,
            transactions: false,
        }
    }

    /// A cluster scenario (see the module doc): 3 or 5 nodes, one replicated topic, clients
    /// spread over the partitions and bootstrap nodes, and node, disk and network faults,
    /// splits of the cluster among them.
    pub fn generate_cluster(seed: u64) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed ^ CLUSTER_SEED_SALT);
        let nodes: u8 = if rng.random_bool(0.7) { 3 } else { 5 };
        let duration_ms = rng.random_range(8_000..=12_000);
        let fsync_min = rng.random_range(1..=3);
        let fsync_latency_ms = (fsync_min, fsync_min + rng.random_range(0..=6));
        let partitions = rng.random_range(1..=3);
        let segment_bytes = rng
            .random_bool(0.5)
            .then(|| rng.random_range(4_096..=32_768));
        let topics = vec![TopicSpec {
            node: 1,
            partitions,
            segment_bytes,
        }];
        let mut clients = Vec::new();
        for partition in 0..partitions {
            let mut roles = vec![ClientRole::ProducerAcksAll, ClientRole::Consumer];
            if rng.random_bool(0.5) {
                roles.push(ClientRole::ProducerAcksLeader);
            }
            if rng.random_bool(0.7) {
                roles.push(ClientRole::IdempotentProducer);
            }
            for role in roles {
                let think_ms = if role == ClientRole::Consumer {
                    (0, 20)
                } else {
                    let low = rng.random_range(2..=15);
                    (low, low + rng.random_range(5..=30))
                };
                clients.push(ClientSpec {
                    node: rng.random_range(1..=nodes),
                    partition,
                    role,
                    think_ms,
                    records_per_batch: (1, rng.random_range(1..=4)),
                });
            }
        }
        let client_count = clients.len() as u8;
        let fault_count = rng.random_range(2..=7);
        let window_ms = (1_500, duration_ms - 1_500);
        let mut faults = schedule_faults(
            &mut rng,
            fault_count,
            window_ms,
            &CLUSTER_FAULT_KINDS,
            nodes,
            client_count,
            &[],
        );
        if clients
            .iter()
            .any(|client| client.role == ClientRole::IdempotentProducer)
        {
            add_produce_strikes(seed, &mut faults, window_ms, nodes, client_count);
        }
        aim_faults(seed, &mut faults, partitions, false);
        Scenario {
            seed,
            nodes,
            duration_ms,
            fsync_latency_ms,
            topics,
            clients,
            faults,
            cluster: true,
            groups: false,
            transactions: false,
        }
    }

    /// A group scenario: a 3-node cluster, one topic of 3 or 4 partitions fed by idempotent
    /// producers, and 3 or 4 members of one consumer group sharing it; node faults, and
    /// members that crash, leave, pause (zombies) and are cut off.
    pub fn generate_groups(seed: u64) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed ^ GROUPS_SEED_SALT);
        let nodes = 3;
        let duration_ms = rng.random_range(10_000..=14_000);
        let fsync_min = rng.random_range(1..=3);
        let fsync_latency_ms = (fsync_min, fsync_min + rng.random_range(0..=6));
        let partitions = rng.random_range(3..=4);
        let topics = vec![TopicSpec {
            node: 1,
            partitions,
            segment_bytes: None,
        }];
        let mut clients = Vec::new();
        for partition in 0..partitions {
            let low = rng.random_range(10..=30);
            clients.push(ClientSpec {
                node: rng.random_range(1..=nodes),
                partition,
                role: ClientRole::IdempotentProducer,
                think_ms: (low, low + rng.random_range(10..=40)),
                records_per_batch: (1, rng.random_range(1..=3)),
            });
        }
        let member_count = rng.random_range(3..=4);
        let mut members = Vec::new();
        for _ in 0..member_count {
            members.push(clients.len() as u8);
            clients.push(ClientSpec {
                node: rng.random_range(1..=nodes),
                partition: 0,
                role: ClientRole::GroupMember,
                think_ms: (0, 10),
                records_per_batch: (1, 1),
            });
        }
        let client_count = clients.len() as u8;
        let fault_count = rng.random_range(3..=8);
        let mut faults = schedule_faults(
            &mut rng,
            fault_count,
            (2_000, duration_ms - 2_000),
            &GROUP_FAULT_KINDS,
            nodes,
            client_count,
            &members,
        );
        aim_faults(seed, &mut faults, partitions, true);
        Scenario {
            seed,
            nodes,
            duration_ms,
            fsync_latency_ms,
            topics,
            clients,
            faults,
            cluster: true,
            groups: true,
            transactions: false,
        }
    }

    /// A transaction scenario (see the module doc): a 3-node cluster, an input topic of 2
    /// partitions fed by idempotent producers, 1-2 transactional producers, 2-3 copiers,
    /// 2-3 read_committed consumers and one read_uncommitted consumer of the output; node
    /// faults, transactional clients that crash, pause past their transaction timeout and
    /// lose answers, and coordinators that crash or are cut off right after an EndTxn.
    pub fn generate_transactions(seed: u64) -> Scenario {
        let mut rng = StdRng::seed_from_u64(seed ^ TRANSACTIONS_SEED_SALT);
        let nodes = 3;
        let duration_ms = rng.random_range(10_000..=14_000);
        let fsync_min = rng.random_range(1..=3);
        let fsync_latency_ms = (fsync_min, fsync_min + rng.random_range(0..=6));
        let topics = vec![TopicSpec {
            node: 1,
            partitions: INPUT_PARTITIONS,
            segment_bytes: None,
        }];
        let mut clients = Vec::new();
        for partition in 0..INPUT_PARTITIONS {
            let low = rng.random_range(15..=40);
            clients.push(ClientSpec {
                node: rng.random_range(1..=nodes),
                partition,
                role: ClientRole::IdempotentProducer,
                think_ms: (low, low + rng.random_range(10..=40)),
                records_per_batch: (1, rng.random_range(1..=3)),
            });
        }
        let mut transactional = Vec::new();
        for _ in 0..rng.random_range(1..=2) {
            transactional.push(clients.len() as u8);
            let low = rng.random_range(10..=60);
            clients.push(ClientSpec {
                node: rng.random_range(1..=nodes),
                partition: 0,
                role: ClientRole::TransactionalProducer,
                think_ms: (low, low + rng.random_range(10..=60)),
                records_per_batch: (1, rng.random_range(1..=4)),
            });
        }
        for _ in 0..rng.random_range(2..=3) {
            transactional.push(clients.len() as u8);
            clients.push(ClientSpec {
                node: rng.random_range(1..=nodes),
                partition: 0,
                role: ClientRole::Copier,
                think_ms: (0, rng.random_range(5..=30)),
                records_per_batch: (1, 1),
            });
        }
        let first_partition = rng.random_range(0..OUTPUT_PARTITIONS);
        let read_committed = rng.random_range(2..=3);
        for number in 0..=read_committed {
            let role = if number < read_committed {
                ClientRole::ReadCommittedConsumer
            } else {
                ClientRole::ReadUncommittedConsumer
            };
            clients.push(ClientSpec {
                node: rng.random_range(1..=nodes),
                partition: (first_partition + number) % OUTPUT_PARTITIONS,
                role,
                think_ms: (0, 20),
                records_per_batch: (1, 1),
            });
        }
        let client_count = clients.len() as u8;
        let fault_count = rng.random_range(3..=7);
        let faults = schedule_faults(
            &mut rng,
            fault_count,
            (2_000, duration_ms - 2_000),
            &TRANSACTION_FAULT_KINDS,
            nodes,
            client_count,
            &transactional,
        );
        Scenario {
            seed,
            nodes,
            duration_ms,
            fsync_latency_ms,
            topics,
            clients,
            faults,
            cluster: true,
            groups: false,
            transactions: true,
        }
    }

    /// The scenario as one line of JSON (what `--scenario` takes).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a scenario always serializes")
    }

    /// Reads a scenario written by [`Scenario::to_json`], and checks it.
    pub fn from_json(json: &str) -> Result<Scenario, String> {
        let mut scenario: Scenario =
            serde_json::from_str(json).map_err(|error| format!("bad scenario JSON: {error}"))?;
        scenario.faults.sort_by_key(|fault| fault.at_ms);
        scenario.check()?;
        Ok(scenario)
    }

    /// Refuses scenarios that name nodes, clients or partitions that do not exist.
    pub fn check(&self) -> Result<(), String> {
        if self.nodes == 0 {
            return Err("a scenario needs at least one node".into());
        }
        let node_ok = |node: u8| (1..=self.nodes).contains(&node);
        for topic in &self.topics {
            if !node_ok(topic.node) || topic.partitions < 1 {
                return Err(format!("bad topic {topic:?}"));
            }
        }
        if self.cluster && self.topics.len() != 1 {
            return Err("a cluster scenario has exactly one topic".into());
        }
        for client in &self.clients {
            let partitions = if client.role.reads_output() {
                OUTPUT_PARTITIONS
            } else {
                self.partitions_of(client.node)
            };
            if !node_ok(client.node) || client.partition < 0 || client.partition >= partitions {
                return Err(format!("bad client {client:?}"));
            }
        }
        for scheduled in &self.faults {
            let ok = match &scheduled.fault {
                Fault::Crash { node, .. }
                | Fault::Pause { node, .. }
                | Fault::Isolate { node, .. }
                | Fault::FsyncFailure { node }
                | Fault::ClockSkew { node, .. } => node_ok(*node),
                Fault::LinkLoss { client, .. } => usize::from(*client) < self.clients.len(),
                Fault::PacketLoss { loss_per_mille, .. } => *loss_per_mille <= 1000,
                Fault::Split { minority, .. } => {
                    self.cluster && minority.iter().all(|node| node_ok(*node))
                }
                Fault::NodeLinkLoss { from, to, .. } => {
                    self.cluster && node_ok(*from) && node_ok(*to) && from != to
                }
                Fault::MemberCrash { client, .. }
                | Fault::MemberLeave { client, .. }
                | Fault::MemberPause { client, .. }
                | Fault::MemberIsolate { client, .. } => self
                    .clients
                    .get(usize::from(*client))
                    .is_some_and(|spec| spec.role == ClientRole::GroupMember),
                Fault::ClientCrash { client, .. }
                | Fault::ClientPause { client, .. }
                | Fault::ClientDeaf { client, .. } => self
                    .clients
                    .get(usize::from(*client))
                    .is_some_and(|spec| spec.role.is_transactional()),
                Fault::CoordinatorCrash { .. } | Fault::CoordinatorSplit { .. } => {
                    self.transactions
                }
                Fault::ProduceLeaderCrash { .. } | Fault::ProduceLeaderIsolate { .. } => {
                    self.cluster
                        && self
                            .clients
                            .iter()
                            .any(|client| client.role == ClientRole::IdempotentProducer)
                }
            };
            if !ok {
                return Err(format!("bad fault {scheduled:?}"));
            }
        }
        Ok(())
    }

    /// Partitions of the topic on `node` (0 if it has none); in a cluster, of its one topic.
    pub fn partitions_of(&self, node: u8) -> i32 {
        self.topics
            .iter()
            .find(|topic| self.cluster || topic.node == node)
            .map_or(0, |topic| topic.partitions)
    }

    /// The topic a client's partition belongs to (the cluster's one topic, in a cluster).
    pub fn topic_of(&self, client: &ClientSpec) -> Option<&TopicSpec> {
        self.topics
            .iter()
            .find(|topic| self.cluster || topic.node == client.node)
    }

    /// Whether [`Scenario::generate`] of its own seed gives exactly this scenario.
    pub fn is_generated(&self) -> bool {
        !self.cluster
            && !self.groups
            && !self.transactions
            && *self == Scenario::generate(self.seed)
    }

    /// The shortest command that replays this scenario (with `defect`, if any).
    pub fn replay_command(&self, defect: Option<&str>) -> String {
        let (features, defect_flag) = match defect {
            Some(name) => (" --features defects", format!(" --defect {name}")),
            None => ("", String::new()),
        };
        if self.is_generated() {
            format!("cargo sim{features} -- --seed {}{defect_flag}", self.seed)
        } else {
            format!(
                "cargo sim{features} -- --scenario '{}'{defect_flag}",
                self.to_json()
            )
        }
    }
}

/// `count` faults at times drawn from `window_ms`, sorted; the first is always a crash, so
/// that every run loses a page cache, the others of `kinds`. Member faults pick one of
/// `members` (client indices).
fn schedule_faults(
    rng: &mut StdRng,
    count: usize,
    window_ms: (u64, u64),
    kinds: &[&str],
    nodes: u8,
    clients: u8,
    members: &[u8],
) -> Vec<ScheduledFault> {
    let mut faults = Vec::with_capacity(count);
    for number in 0..count {
        let at_ms = rng.random_range(window_ms.0..window_ms.1);
        let kind = if number == 0 {
            "crash"
        } else {
            kinds[rng.random_range(0..kinds.len())]
        };
        let fault = generate_fault(rng, kind, nodes, clients, members);
        faults.push(ScheduledFault { at_ms, fault });
    }
    faults.sort_by_key(|fault| fault.at_ms);
    faults
}

fn generate_fault(rng: &mut StdRng, kind: &str, nodes: u8, clients: u8, members: &[u8]) -> Fault {
    let node = rng.random_range(1..=nodes);
    match kind {
        "client-crash" => Fault::ClientCrash {
            client: members[rng.random_range(0..members.len())],
            down_ms: rng.random_range(100..=2_000),
        },
        // Past the transaction timeout and the coordinator's next check of it.
        "client-pause" => Fault::ClientPause {
            client: members[rng.random_range(0..members.len())],
            for_ms: rng.random_range(
                TRANSACTION_TIMEOUT_MS as u64 + 1_500..=TRANSACTION_TIMEOUT_MS as u64 + 3_000,
            ),
        },
        "client-deaf" => Fault::ClientDeaf {
            client: members[rng.random_range(0..members.len())],
            for_ms: rng.random_range(300..=2_500),
            requests_held: rng.random_bool(0.5),
        },
        "coordinator-crash" => Fault::CoordinatorCrash {
            down_ms: rng.random_range(100..=2_000),
        },
        "coordinator-split" => Fault::CoordinatorSplit {
            for_ms: rng.random_range(500..=3_000),
        },
        // From before the batch arrives to after it is replicated (a few round trips).
        "produce-leader-crash" => Fault::ProduceLeaderCrash {
            after_ms: rng.random_range(0..=15),
            down_ms: rng.random_range(100..=2_000),
        },
        "produce-leader-isolate" => Fault::ProduceLeaderIsolate {
            after_ms: rng.random_range(0..=15),
            for_ms: rng.random_range(500..=3_000),
        },
        "member-crash" => Fault::MemberCrash {
            client: members[rng.random_range(0..members.len())],
            down_ms: rng.random_range(200..=3_000),
        },
        "member-leave" => Fault::MemberLeave {
            client: members[rng.random_range(0..members.len())],
            down_ms: rng.random_range(200..=3_000),
        },
        // Longer than a member's session: the group moves on without it.
        "member-pause" => Fault::MemberPause {
            client: members[rng.random_range(0..members.len())],
            for_ms: rng.random_range(2_000..=4_000),
        },
        "member-isolate" => Fault::MemberIsolate {
            client: members[rng.random_range(0..members.len())],
            for_ms: rng.random_range(500..=3_000),
        },
        // Splits and node links need a cluster of at least 3 (cluster scenarios only).
        "split" => {
            let size = rng.random_range(1..=usize::from(nodes) / 2);
            let mut all: Vec<u8> = (1..=nodes).collect();
            let mut minority = Vec::with_capacity(size);
            for _ in 0..size {
                minority.push(all.remove(rng.random_range(0..all.len())));
            }
            minority.sort_unstable();
            Fault::Split {
                minority,
                for_ms: rng.random_range(500..=4_000),
            }
        }
        "node-link-loss" => Fault::NodeLinkLoss {
            from: node,
            to: (node + rng.random_range(1..nodes) - 1) % nodes + 1,
            for_ms: rng.random_range(500..=4_000),
        },
        "crash" => {
            let tear = rng.random_bool(0.5).then(|| Tear {
                mode: if rng.random_bool(0.5) {
                    TearMode::Truncated
                } else {
                    TearMode::ZeroedTail
                },
                kept_per_mille: rng.random_range(0..1000),
            });
            Fault::Crash {
                node,
                down_ms: rng.random_range(50..=2_000),
                crash: CrashSpec {
                    tear,
                    keep_unsynced_directory_ops: rng.random_bool(0.5),
                },
                aim: None,
            }
        }
        "pause" => Fault::Pause {
            node,
            for_ms: rng.random_range(100..=2_500),
        },
        "isolate" => Fault::Isolate {
            node,
            for_ms: rng.random_range(200..=3_000),
            aim: None,
        },
        "link-loss" => Fault::LinkLoss {
            client: rng.random_range(0..clients),
            direction: if rng.random_bool(0.5) {
                LinkDirection::ClientToNode
            } else {
                LinkDirection::NodeToClient
            },
            for_ms: rng.random_range(200..=3_000),
        },
        "packet-loss" => {
            let low = rng.random_range(1..=30);
            Fault::PacketLoss {
                loss_per_mille: rng.random_range(20..=300),
                latency_ms: (low, low + rng.random_range(0..=80)),
                for_ms: rng.random_range(500..=3_000),
            }
        }
        "fsync-failure" => Fault::FsyncFailure { node },
        "clock-skew" => {
            let magnitude = rng.random_range(100..=3_600_000i64);
            Fault::ClockSkew {
                node,
                offset_ms: if rng.random_bool(0.5) {
                    magnitude
                } else {
                    -magnitude
                },
                for_ms: rng.random_range(500..=5_000),
            }
        }
        other => unreachable!("unknown fault kind {other}"),
    }
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash {
                node,
                down_ms,
                crash,
                aim,
            } => {
                match aim {
                    Some(aim) => write!(f, "crash {aim} (else node {node})")?,
                    None => write!(f, "crash node {node}")?,
                }
                write!(f, ", restart after {}", seconds(*down_ms))?;
                match crash.tear {
                    Some(tear) => write!(
                        f,
                        ", tear each file's last unsynced write ({:?}, keep {}.{}%)",
                        tear.mode,
                        tear.kept_per_mille / 10,
                        tear.kept_per_mille % 10
                    )?,
                    None => write!(f, ", drop unsynced writes")?,
                }
                if crash.keep_unsynced_directory_ops {
                    write!(f, ", keep unsynced directory entries")?;
                }
                Ok(())
            }
            Fault::Pause { node, for_ms } => {
                write!(f, "pause node {node} for {}", seconds(*for_ms))
            }
            Fault::Isolate {
                node,
                for_ms,
                aim: None,
            } => write!(f, "isolate node {node} for {}", seconds(*for_ms)),
            Fault::Isolate {
                node,
                for_ms,
                aim: Some(aim),
            } => write!(f, "isolate {aim} (else node {node}) for {}", seconds(*for_ms)),
            Fault::LinkLoss {
                client,
                direction,
                for_ms,
            } => {
                let arrow = match direction {
                    LinkDirection::ClientToNode => "client -> node",
                    LinkDirection::NodeToClient => "node -> client",
                };
                write!(
                    f,
                    "cut link of client {client} ({arrow}) for {}",
                    seconds(*for_ms)
                )
            }
            Fault::PacketLoss {
                loss_per_mille,
                latency_ms,
                for_ms,
            } => write!(
                f,
                "lose {}.{}% of packets, latency {}..{} ms, for {}",
                loss_per_mille / 10,
                loss_per_mille % 10,
                latency_ms.0,
                latency_ms.1,
                seconds(*for_ms)
            ),
            Fault::FsyncFailure { node } => write!(f, "fail the next fsync of node {node}"),
            Fault::ClockSkew {
                node,
                offset_ms,
                for_ms,
            } => write!(
                f,
                "step the wall clock of node {node} by {offset_ms:+} ms for {}",
                seconds(*for_ms)
            ),
            Fault::Split { minority, for_ms } => write!(
                f,
                "split nodes {minority:?} from the rest of the cluster for {}",
                seconds(*for_ms)
            ),
            Fault::NodeLinkLoss { from, to, for_ms } => write!(
                f,
                "cut the link from node {from} to node {to} for {}",
                seconds(*for_ms)
            ),
            Fault::MemberCrash { client, down_ms } => write!(
                f,
                "crash group member client {client}, start it again after {}",
                seconds(*down_ms)
            ),
            Fault::MemberLeave { client, down_ms } => write!(
                f,
                "group member client {client} leaves, joins again after {}",
                seconds(*down_ms)
            ),
            Fault::MemberPause { client, for_ms } => write!(
                f,
                "pause group member client {client} for {}",
                seconds(*for_ms)
            ),
            Fault::MemberIsolate { client, for_ms } => write!(
                f,
                "cut group member client {client} off every node for {}",
                seconds(*for_ms)
            ),
            Fault::ClientCrash { client, down_ms } => write!(
                f,
                "crash transactional client {client} mid-transaction, start a new instance after {}",
                seconds(*down_ms)
            ),
            Fault::ClientPause { client, for_ms } => write!(
                f,
                "pause transactional client {client} for {} (past its transaction timeout)",
                seconds(*for_ms)
            ),
            Fault::ClientDeaf {
                client,
                for_ms,
                requests_held: false,
            } => write!(
                f,
                "lose every answer to transactional client {client} for {}",
                seconds(*for_ms)
            ),
            Fault::ClientDeaf {
                client,
                for_ms,
                requests_held: true,
            } => write!(
                f,
                "hold every request of transactional client {client} for {}, then deliver them late",
                seconds(*for_ms)
            ),
            Fault::CoordinatorCrash { down_ms } => write!(
                f,
                "crash the transaction coordinator right after its next EndTxn answer, restart after {}",
                seconds(*down_ms)
            ),
            Fault::CoordinatorSplit { for_ms } => write!(
                f,
                "cut the transaction coordinator off the other nodes right after its next EndTxn answer, for {}",
                seconds(*for_ms)
            ),
            Fault::ProduceLeaderCrash { after_ms, down_ms } => write!(
                f,
                "crash the leader an idempotent producer sends its next batch to, {after_ms} ms after the send, restart after {}",
                seconds(*down_ms)
            ),
            Fault::ProduceLeaderIsolate { after_ms, for_ms } => write!(
                f,
                "cut off the leader an idempotent producer sends its next batch to, {after_ms} ms after the send, for {}",
                seconds(*for_ms)
            ),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario (seed {}): {} node(s){}, {} of workload, fsync {}..{} ms",
            self.seed,
            self.nodes,
            if self.cluster { " in one cluster" } else { "" },
            seconds(self.duration_ms),
            self.fsync_latency_ms.0,
            self.fsync_latency_ms.1
        )?;
        if self.transactions {
            writeln!(
                f,
                "  transactions: input topic {TOPIC} ({INPUT_PARTITIONS} partitions), output topic {OUTPUT_TOPIC} ({OUTPUT_PARTITIONS} partitions), copier group {COPIER_GROUP}, transaction.timeout.ms {TRANSACTION_TIMEOUT_MS}"
            )?;
        }
        for topic in &self.topics {
            let segment = topic
                .segment_bytes
                .map_or("default segments".to_string(), |bytes| {
                    format!("{bytes}-byte segments")
                });
            writeln!(
                f,
                "  node {}: topic {TOPIC}, {} partition(s), {segment}",
                topic.node, topic.partitions
            )?;
        }
        for (index, client) in self.clients.iter().enumerate() {
            let role = client.role.description();
            if client.role.is_transactional() {
                write!(
                    f,
                    "  client {index}: {role}, bootstrap node {}, pause {}..{} ms",
                    client.node, client.think_ms.0, client.think_ms.1
                )?;
            } else {
                write!(
                    f,
                    "  client {index}: {role} on node {} partition {}, pause {}..{} ms",
                    client.node, client.partition, client.think_ms.0, client.think_ms.1
                )?;
            }
            if client.role.is_producer() {
                write!(
                    f,
                    ", {}..{} records a batch",
                    client.records_per_batch.0, client.records_per_batch.1
                )?;
            }
            writeln!(f)?;
        }
        writeln!(f, "  faults ({}):", self.faults.len())?;
        for scheduled in &self.faults {
            writeln!(
                f,
                "    at {:>9}: {}",
                seconds(scheduled.at_ms),
                scheduled.fault
            )?;
        }
        Ok(())
    }
}

/// The replay command: what proptest prints as a failing input.
impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.replay_command(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_one_scenario() {
        for seed in 0..50 {
            let scenario = Scenario::generate(seed);
            assert_eq!(scenario, Scenario::generate(seed));
            assert!(scenario.check().is_ok(), "{scenario}");
            assert!(matches!(
                scenario
                    .faults
                    .iter()
                    .filter(|f| f.fault.kind() == "crash")
                    .count(),
                1..
            ));
            for consumer in scenario
                .clients
                .iter()
                .filter(|c| c.role == ClientRole::Consumer)
            {
                assert!(
                    scenario
                        .clients
                        .iter()
                        .any(|producer| producer.role.is_producer()
                            && (producer.node, producer.partition)
                                == (consumer.node, consumer.partition)),
                    "a consumer reads a partition nobody writes: {scenario}"
                );
            }
        }
        assert_ne!(Scenario::generate(1), Scenario::generate(2));
    }

    #[test]
    fn a_transaction_seed_names_one_scenario_with_every_kind_of_client() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let scenario = Scenario::generate_transactions(seed);
            assert_eq!(scenario, Scenario::generate_transactions(seed));
            assert!(scenario.check().is_ok(), "{scenario}");
            assert!(scenario.transactions && scenario.cluster && !scenario.groups);
            for role in [
                ClientRole::IdempotentProducer,
                ClientRole::TransactionalProducer,
                ClientRole::Copier,
                ClientRole::ReadCommittedConsumer,
                ClientRole::ReadUncommittedConsumer,
            ] {
                assert!(
                    scenario.clients.iter().any(|client| client.role == role),
                    "no {role:?}: {scenario}"
                );
            }
            kinds.extend(scenario.faults.iter().map(|f| f.fault.kind()));
            let round_trip = Scenario::from_json(&scenario.to_json()).unwrap();
            assert_eq!(round_trip, scenario);
            assert!(scenario.replay_command(None).contains("--scenario"));
        }
        // client-deaf comes in two kinds, client-mute being the other.
        assert_eq!(kinds.len(), TRANSACTION_FAULT_KINDS.len() + 1, "{kinds:?}");
    }

    #[test]
    fn cluster_and_group_seeds_aim_some_faults_at_roles_and_keep_them_in_json() {
        let mut aims = std::collections::BTreeSet::new();
        for seed in 0..100 {
            for scenario in [
                Scenario::generate_cluster(seed),
                Scenario::generate_groups(seed),
            ] {
                for scheduled in &scenario.faults {
                    if let Fault::Crash { aim: Some(aim), .. }
                    | Fault::Isolate { aim: Some(aim), .. } = scheduled.fault
                    {
                        aims.insert(format!("{aim:?}").split(' ').next().map(String::from));
                    }
                }
                assert_eq!(Scenario::from_json(&scenario.to_json()).unwrap(), scenario);
            }
        }
        assert_eq!(aims.len(), 3, "{aims:?}");
        // A fault without an aim reads and writes as before.
        let json = r#"{"crash":{"node":2,"down_ms":100,"crash":{"tear":null,"keep_unsynced_directory_ops":false}}}"#;
        let fault: Fault = serde_json::from_str(json).unwrap();
        assert!(matches!(fault, Fault::Crash { aim: None, .. }));
        assert_eq!(serde_json::to_string(&fault).unwrap(), json);
    }

    #[test]
    fn cluster_seeds_with_an_idempotent_producer_strike_its_leaders_after_a_send() {
        let is_strike = |scheduled: &ScheduledFault| scheduled.fault.trigger().is_some();
        for seed in 0..100 {
            let scenario = Scenario::generate_cluster(seed);
            let idempotent = scenario
                .clients
                .iter()
                .any(|client| client.role == ClientRole::IdempotentProducer);
            let strikes = scenario.faults.iter().filter(|f| is_strike(f)).count();
            if idempotent {
                assert!((1..=2).contains(&strikes), "{scenario}");
            } else {
                assert_eq!(strikes, 0, "{scenario}");
            }
            assert!(scenario.faults.is_sorted_by_key(|f| f.at_ms), "{scenario}");
        }
        // Without an idempotent producer, or outside a cluster, such a fault is refused.
        let mut scenario = (0..)
            .map(Scenario::generate_cluster)
            .find(|scenario| scenario.faults.iter().any(is_strike))
            .unwrap();
        assert!(scenario.check().is_ok());
        for client in &mut scenario.clients {
            if client.role == ClientRole::IdempotentProducer {
                client.role = ClientRole::ProducerAcksAll;
            }
        }
        assert!(scenario.check().is_err());
        let mut single = Scenario::generate(1);
        single.faults.push(ScheduledFault {
            at_ms: 1_000,
            fault: Fault::ProduceLeaderCrash {
                after_ms: 0,
                down_ms: 100,
            },
        });
        assert!(single.check().is_err());
    }

    #[test]
    fn a_scenario_round_trips_through_json() {
        let mut scenario = Scenario::generate(7);
        assert_eq!(Scenario::from_json(&scenario.to_json()).unwrap(), scenario);
        assert!(scenario.replay_command(None).ends_with("--seed 7"));
        scenario.faults.pop();
        let command = scenario.replay_command(Some("ack-before-fsync"));
        assert!(
            command.starts_with("cargo sim --features defects -- --scenario '{"),
            "{command}"
        );
        assert!(command.ends_with("' --defect ack-before-fsync"));
    }
}
