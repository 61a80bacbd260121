//! The timeline of a run, for `--html FILE`: one self-contained HTML page that shows the
//! run in a browser, with no network.
//!
//! [`Timeline`] collects typed events while the run goes, from the same structured values
//! the harness hands the trace and the checkers (core inputs and outputs, client events,
//! faults, violations), never by parsing the trace's text. It keeps:
//! - a lane per node and per client;
//! - node-to-node messages: sent (`Output::Send`), delivered (`Input::Peer` at the
//!   receiver, matched to the oldest undelivered message of the same link with the same
//!   label), or lost (never delivered before the run ended); client requests (produce and
//!   fetch) as arrows to the partition's leader as last seen (the client's node for
//!   independent nodes), lost when they got no answer;
//! - fault spans on the lanes they hit, and node down spans from crash to restart;
//! - per partition over time: the leader and its epoch (a leader's appends and `Leaders`
//!   announcements name it), each replica's log end offset (its storage appends, its
//!   recovery), the high watermark (as the leader announces it and as fetches report it)
//!   and the last stable offset (as read_committed fetches report it);
//! - group generations and assignments; transactions from begin to commit, abort or
//!   abandonment; the checkers' violations when they are seen;
//! - the trace line of each item, for click-through.
//!
//! Everything is bounded: past [`MESSAGES_DETAILED_MAX`] messages, further messages are
//! counted per link and [`BUCKET_US`] bucket; past [`RECORDS_MAX`] records, items keep no
//! trace line; past [`SAMPLES_MAX`] partition samples, samples are thinned to one per
//! series and bucket. The page says so whenever it happens.
//!
//! The timeline never feeds back into the run: the trace digest is the same with or
//! without `--html`. (So no `HashMap` here: under madsim, a std `RandomState` draws from
//! the simulation's RNG and would change the run.) The page's script and style are `timeline/timeline.js` and
//! `timeline/timeline.css`, embedded with `include_str!`.

use crate::checkers::Violation;
use crate::history::{ClientEvent, CommitOutcome, PartitionRef, ProduceOutcome};
use crate::scenario::{Fault, Scenario, COPIER_GROUP, GROUP, OUTPUT_TOPIC, TOPIC};
use crate::trace::Source;
use myelin_core::api::{Input, Output, PeerMessage, StorageCommand};
use myelin_core::metadata::TopicPartition;
use myelin_core::replication::{ReplicationMessage, LOG_START_NOT_MOVED};
use myelin_node::runtime::TraceEvent;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// Node-to-node messages kept one by one; later ones are counted per bucket.
pub const MESSAGES_DETAILED_MAX: usize = 30_000;
/// Client requests kept one by one; later ones are counted per bucket.
pub const REQUESTS_DETAILED_MAX: usize = 20_000;
/// Trace lines kept for click-through.
pub const RECORDS_MAX: usize = 60_000;
/// Partition samples (leader, log end offsets, high watermark, last stable offset) kept
/// before thinning.
pub const SAMPLES_MAX: usize = 40_000;
/// The width of a summary bucket, in simulated microseconds.
pub const BUCKET_US: u64 = 100_000;
/// Undelivered messages remembered per link for matching deliveries.
const IN_FLIGHT_PER_LINK_MAX: usize = 4096;
/// Longest trace line kept (Debug texts of large metadata can be long).
const RECORD_CHARS_MAX: usize = 4000;

/// A lane's index: nodes first (node `n` at `n - 1`), then clients.
type LaneIndex = u16;

#[derive(Serialize)]
struct Lane {
    label: String,
    kind: &'static str,
}

/// A node-to-node message or a client request. The most numerous item: one-letter field
/// names keep the page small (the page's script spells them out).
#[derive(Serialize)]
struct Message {
    #[serde(rename = "a")]
    from: LaneIndex,
    #[serde(rename = "b")]
    to: LaneIndex,
    #[serde(rename = "s")]
    sent_us: u64,
    /// When it arrived (a client request: when its answer came back); `None`: lost.
    #[serde(rename = "d", skip_serializing_if = "Option::is_none")]
    delivered_us: Option<u64>,
    #[serde(rename = "l")]
    label: String,
    /// The partition it concerns, if any (for filters).
    #[serde(rename = "p", skip_serializing_if = "Option::is_none")]
    partition: Option<String>,
    #[serde(rename = "r", skip_serializing_if = "Option::is_none")]
    record: Option<u32>,
}

/// Messages past the detail budget, per link and bucket.
#[derive(Serialize, Default, Clone, Copy)]
struct Bucket {
    sent: u32,
    delivered: u32,
}

#[derive(Serialize)]
struct BucketRow {
    from: LaneIndex,
    to: LaneIndex,
    bucket: u64,
    sent: u32,
    delivered: u32,
}

/// A fault or a node's down time, on the lanes it hits.
#[derive(Serialize)]
struct Span {
    kind: String,
    label: String,
    lanes: Vec<LaneIndex>,
    start_us: u64,
    /// `None`: lasted to the end of the run.
    end_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<u32>,
}

/// A moment on a lane: a fail-stop, a node's exit, a stuck client, a skipped fault.
#[derive(Serialize)]
struct Point {
    kind: String,
    lane: Option<LaneIndex>,
    t_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<u32>,
}

/// One partition's state over time; each series holds `(t_us, value)` changes.
#[derive(Serialize, Default)]
struct PartitionSeries {
    /// `(t_us, leader node, epoch)`.
    leader: Vec<(u64, u8, i32)>,
    /// Per node: `(t_us, log end offset)`.
    log_end_offset: BTreeMap<u8, Vec<(u64, i64)>>,
    high_watermark: Vec<(u64, i64)>,
    last_stable_offset: Vec<(u64, i64)>,
}

/// A member's assignment in one generation.
#[derive(Serialize)]
struct Assignment {
    group: &'static str,
    client: u8,
    member: String,
    generation: i32,
    partitions: Vec<i32>,
    start_us: u64,
    end_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<u32>,
}

/// A transaction from its begin to its end.
#[derive(Serialize)]
struct Transaction {
    client: u8,
    txn: String,
    start_us: u64,
    end_us: Option<u64>,
    /// `open`, `committing`, `aborting`, `committed`, `aborted`, `commit-failed`,
    /// `abort-failed`, `abandoned`.
    outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<u32>,
}

#[derive(Serialize)]
struct ViolationMark {
    /// When the checker saw it; `None`: at the final check (drawn at the run's end).
    t_us: Option<u64>,
    seen_us: u64,
    text: String,
    /// Nodes and partitions its text names: the page highlights their events before it.
    nodes: Vec<u8>,
    partitions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<u32>,
}

/// What the page shows. See the module doc.
#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    summary: &'a str,
    end_us: u64,
    bucket_us: u64,
    lanes: &'a [Lane],
    messages: &'a [Message],
    message_buckets: Vec<BucketRow>,
    spans: &'a [Span],
    points: &'a [Point],
    partitions: &'a BTreeMap<String, PartitionSeries>,
    assignments: &'a [Assignment],
    transactions: &'a [Transaction],
    violations: &'a [ViolationMark],
    notes: Vec<String>,
}

/// A produce or fetch a client has under way.
struct PendingRequest {
    message: usize,
}

/// The timeline of one run. See the module doc.
pub struct Timeline {
    nodes: u8,
    cluster: bool,
    lanes: Vec<Lane>,
    /// Each client's partition key and node, from the scenario.
    client_partitions: Vec<(String, u8)>,
    group: &'static str,
    messages: Vec<Message>,
    requests_detailed: usize,
    messages_detailed: usize,
    buckets: BTreeMap<(LaneIndex, LaneIndex, u64), Bucket>,
    /// Per directed node link: detailed messages not yet delivered, oldest first.
    in_flight: BTreeMap<(u8, u8), VecDeque<usize>>,
    /// Produce ops under way, by op id.
    produces: BTreeMap<u64, PendingRequest>,
    spans: Vec<Span>,
    /// Open fault spans, by the fault's number in the scenario.
    open_faults: BTreeMap<usize, usize>,
    /// Open down spans, by node.
    open_downs: BTreeMap<u8, usize>,
    points: Vec<Point>,
    partitions: BTreeMap<String, PartitionSeries>,
    samples: usize,
    assignments: Vec<Assignment>,
    /// Each client's current assignment.
    open_assignments: BTreeMap<u8, usize>,
    transactions: Vec<Transaction>,
    open_transactions: BTreeMap<(u8, String), usize>,
    violations: Vec<ViolationMark>,
    records: Vec<String>,
    records_dropped: u64,
    last_us: u64,
}

impl Timeline {
    /// An empty timeline for `scenario`'s nodes and clients.
    pub fn new(scenario: &Scenario) -> Timeline {
        let mut lanes: Vec<Lane> = (1..=scenario.nodes)
            .map(|node| Lane {
                label: format!("node {node}"),
                kind: "node",
            })
            .collect();
        let mut client_partitions = Vec::new();
        for (index, spec) in scenario.clients.iter().enumerate() {
            lanes.push(Lane {
                label: if spec.role.is_transactional() {
                    format!("client {index}: {}", spec.role.description())
                } else {
                    format!(
                        "client {index}: {} p{}",
                        spec.role.description(),
                        spec.partition
                    )
                },
                kind: "client",
            });
            let key = partition_key(
                scenario.cluster,
                spec.node,
                &TopicPartition {
                    topic: TOPIC.to_string(),
                    partition: spec.partition,
                },
            );
            client_partitions.push((key, spec.node));
        }
        Timeline {
            nodes: scenario.nodes,
            cluster: scenario.cluster,
            lanes,
            client_partitions,
            group: if scenario.transactions {
                COPIER_GROUP
            } else {
                GROUP
            },
            messages: Vec::new(),
            requests_detailed: 0,
            messages_detailed: 0,
            buckets: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            produces: BTreeMap::new(),
            spans: Vec::new(),
            open_faults: BTreeMap::new(),
            open_downs: BTreeMap::new(),
            points: Vec::new(),
            partitions: BTreeMap::new(),
            samples: 0,
            assignments: Vec::new(),
            open_assignments: BTreeMap::new(),
            transactions: Vec::new(),
            open_transactions: BTreeMap::new(),
            violations: Vec::new(),
            records: Vec::new(),
            records_dropped: 0,
            last_us: 0,
        }
    }

    fn node_lane(&self, node: u8) -> Option<LaneIndex> {
        (1..=self.nodes)
            .contains(&node)
            .then(|| LaneIndex::from(node - 1))
    }

    fn client_lane(&self, client: u8) -> Option<LaneIndex> {
        let lane = LaneIndex::from(self.nodes) + LaneIndex::from(client);
        (usize::from(lane) < self.lanes.len()).then_some(lane)
    }

    /// Keeps `line` for click-through, within the budget.
    fn record(&mut self, line: &str) -> Option<u32> {
        if self.records.len() >= RECORDS_MAX {
            self.records_dropped += 1;
            return None;
        }
        let mut line = line.trim_end().to_string();
        if line.len() > RECORD_CHARS_MAX {
            let mut cut = RECORD_CHARS_MAX;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …(cut)");
        }
        self.records.push(line);
        u32::try_from(self.records.len() - 1).ok()
    }

    fn bucket(&mut self, from: LaneIndex, to: LaneIndex, t_us: u64) -> &mut Bucket {
        self.buckets
            .entry((from, to, t_us / BUCKET_US))
            .or_default()
    }

    /// A core event of `node`; `line` is its trace line.
    pub fn core_event(&mut self, t_us: u64, node: u8, event: &TraceEvent<'_>, line: &str) {
        self.last_us = self.last_us.max(t_us);
        match event {
            TraceEvent::Started { recovered, .. } => {
                for partition in recovered.iter() {
                    let end = partition
                        .segments
                        .iter()
                        .rev()
                        .find_map(|s| s.batches.last())
                        .map_or_else(
                            || partition.segments.last().map_or(0, |s| s.base_offset),
                            |batch| batch.header.base_offset + batch.header.offset_count(),
                        );
                    self.log_end_offset(t_us, node, &partition.partition, end);
                }
            }
            TraceEvent::Input(Input::Peer { from, message }) => {
                let Ok(from) = u8::try_from(*from) else {
                    return;
                };
                self.delivered(t_us, from, node, message);
            }
            // Durable replica states: the epochs show through the leaders' appends.
            TraceEvent::Input(_) | TraceEvent::ReplicaStatesPersisted(_) => {}
            TraceEvent::Output(output) => self.output(t_us, node, output, line),
            TraceEvent::FailStop(_) => {
                let record = self.record(line);
                self.points.push(Point {
                    kind: "fail-stop".into(),
                    lane: self.node_lane(node),
                    t_us,
                    record,
                });
            }
        }
    }

    fn output(&mut self, t_us: u64, node: u8, output: &Output, line: &str) {
        match output {
            Output::Send { to, message } => {
                if let PeerMessage::Replication {
                    partition,
                    message:
                        ReplicationMessage::Append {
                            epoch,
                            high_watermark,
                            ..
                        },
                } = message
                {
                    // Only a leader sends appends.
                    self.leader(t_us, node, partition, *epoch);
                    let key = partition_key(self.cluster, node, partition);
                    self.sample_high_watermark(t_us, key, *high_watermark);
                }
                if let PeerMessage::Leaders(led) = message {
                    for (partition, epoch) in led {
                        self.leader(t_us, node, partition, *epoch);
                    }
                }
                let Ok(to) = u8::try_from(*to) else {
                    return;
                };
                self.sent(t_us, node, to, message, line);
            }
            Output::Storage(StorageCommand::Append {
                partition, batch, ..
            }) => self.log_end_offset(t_us, node, partition, batch.last_offset + 1),
            Output::Storage(
                StorageCommand::CreatePartition {
                    partition,
                    base_offset,
                }
                | StorageCommand::RestartLog {
                    partition,
                    base_offset,
                },
            ) => self.log_end_offset(t_us, node, partition, *base_offset),
            Output::Storage(StorageCommand::PersistReplicaState { partition, state })
                if !self.cluster =>
            {
                // A node of its own: it leads every partition it holds.
                self.leader(t_us, node, partition, state.epoch);
            }
            _ => {}
        }
    }

    fn sent(&mut self, t_us: u64, from: u8, to: u8, message: &PeerMessage, line: &str) {
        let (Some(from_lane), Some(to_lane)) = (self.node_lane(from), self.node_lane(to)) else {
            return;
        };
        if self.messages_detailed >= MESSAGES_DETAILED_MAX {
            self.bucket(from_lane, to_lane, t_us).sent += 1;
            return;
        }
        self.messages_detailed += 1;
        let record = self.record(line);
        let partition = match message {
            PeerMessage::Replication { partition, .. } => {
                Some(partition_key(self.cluster, from, partition))
            }
            _ => None,
        };
        self.messages.push(Message {
            from: from_lane,
            to: to_lane,
            sent_us: t_us,
            delivered_us: None,
            label: peer_label(message),
            partition,
            record,
        });
        let index = self.messages.len() - 1;
        let queue = self.in_flight.entry((from, to)).or_default();
        if queue.len() >= IN_FLIGHT_PER_LINK_MAX {
            queue.pop_front();
        }
        queue.push_back(index);
    }

    fn delivered(&mut self, t_us: u64, from: u8, to: u8, message: &PeerMessage) {
        let label = peer_label(message);
        if let Some(queue) = self.in_flight.get_mut(&(from, to)) {
            let messages = &self.messages;
            if let Some(position) = queue
                .iter()
                .position(|&index| messages[index].label == label)
            {
                if let Some(index) = queue.remove(position) {
                    self.messages[index].delivered_us = Some(t_us);
                    return;
                }
            }
        }
        if let (Some(from_lane), Some(to_lane)) = (self.node_lane(from), self.node_lane(to)) {
            self.bucket(from_lane, to_lane, t_us).delivered += 1;
        }
    }

    fn series(&mut self, key: String) -> &mut PartitionSeries {
        self.partitions.entry(key).or_default()
    }

    fn leader(&mut self, t_us: u64, node: u8, partition: &TopicPartition, epoch: i32) {
        let key = partition_key(self.cluster, node, partition);
        let series = self.series(key);
        if series.leader.last().map(|&(_, l, e)| (l, e)) == Some((node, epoch)) {
            return;
        }
        series.leader.push((t_us, node, epoch));
        self.samples += 1;
    }

    fn log_end_offset(&mut self, t_us: u64, node: u8, partition: &TopicPartition, end: i64) {
        let key = partition_key(self.cluster, node, partition);
        let values = self.series(key).log_end_offset.entry(node).or_default();
        self.samples += push_change(values, t_us, end);
    }

    fn sample_high_watermark(&mut self, t_us: u64, key: String, value: i64) {
        let values = &mut self.series(key).high_watermark;
        self.samples += push_change(values, t_us, value);
    }

    fn sample_last_stable_offset(&mut self, t_us: u64, key: String, value: i64) {
        let values = &mut self.series(key).last_stable_offset;
        self.samples += push_change(values, t_us, value);
    }

    /// The node a client's request to `key` goes to: the partition's leader as last seen,
    /// else the client's own node.
    fn serving_node(&self, key: &str, client: u8) -> Option<u8> {
        let own = self
            .client_partitions
            .get(usize::from(client))
            .map(|(_, node)| *node);
        self.partitions
            .get(key)
            .and_then(|series| series.leader.last())
            .map(|&(_, node, _)| node)
            .or(own)
    }

    fn ref_key(&self, partition: &PartitionRef) -> String {
        partition_key(
            self.cluster,
            partition.node,
            &TopicPartition {
                topic: TOPIC.to_string(),
                partition: partition.partition,
            },
        )
    }

    /// A client request from `started_us`: returns the message index, if kept in detail.
    fn request(
        &mut self,
        started_us: u64,
        client: u8,
        key: String,
        label: String,
        line: &str,
    ) -> Option<usize> {
        let from = self.client_lane(client)?;
        let to = self.node_lane(self.serving_node(&key, client)?)?;
        if self.requests_detailed >= REQUESTS_DETAILED_MAX {
            self.bucket(from, to, started_us).sent += 1;
            return None;
        }
        self.requests_detailed += 1;
        let record = self.record(line);
        self.messages.push(Message {
            from,
            to,
            sent_us: started_us,
            delivered_us: None,
            label,
            partition: Some(key),
            record,
        });
        Some(self.messages.len() - 1)
    }

    /// A client event; `line` is its trace line.
    pub fn client_event(&mut self, t_us: u64, client: u8, event: &ClientEvent, line: &str) {
        self.last_us = self.last_us.max(t_us);
        match event {
            ClientEvent::ProduceStarted {
                op, partition, at, ..
            } => {
                let key = self.ref_key(partition);
                let label = format!("produce op {op} to {key}");
                if let Some(message) = self.request(*at, client, key, label, line) {
                    self.produces.insert(*op, PendingRequest { message });
                }
            }
            ClientEvent::ProduceEnded {
                op, outcome, at, ..
            } => {
                let Some(pending) = self.produces.remove(op) else {
                    return;
                };
                let Some(message) = self.messages.get_mut(pending.message) else {
                    return;
                };
                match outcome {
                    ProduceOutcome::Acknowledged { base_offset } => {
                        message.delivered_us = Some(*at);
                        message.label.push_str(&format!(": acked at {base_offset}"));
                    }
                    ProduceOutcome::Refused { error, .. } => {
                        message.delivered_us = Some(*at);
                        message.label.push_str(&format!(": refused {error}"));
                    }
                    ProduceOutcome::Indeterminate { error } => {
                        message.label.push_str(&format!(": no answer ({error})"));
                    }
                }
            }
            ClientEvent::Fetched {
                partition,
                fetch_offset,
                high_watermark,
                records,
                started,
                at,
                ..
            } => {
                let key = self.ref_key(partition);
                let label = format!(
                    "fetch {key} from {fetch_offset}: {} records, hw {high_watermark}",
                    records.len()
                );
                if let Some(index) = self.request(*started, client, key.clone(), label, line) {
                    self.messages[index].delivered_us = Some(*at);
                }
                self.sample_high_watermark(*at, key, *high_watermark);
            }
            ClientEvent::FetchFailed {
                partition,
                fetch_offset,
                failure,
                at,
                ..
            } => {
                let key = self.ref_key(partition);
                let label = format!("fetch {key} from {fetch_offset} failed: {failure:?}");
                self.request(*at, client, key, label, line);
            }
            ClientEvent::OutputFetched {
                partition,
                read_committed,
                high_watermark,
                last_stable_offset,
                at,
                ..
            } => {
                let key = partition_key(
                    true,
                    0,
                    &TopicPartition {
                        topic: OUTPUT_TOPIC.to_string(),
                        partition: *partition,
                    },
                );
                self.sample_high_watermark(*at, key.clone(), *high_watermark);
                if *read_committed {
                    self.sample_last_stable_offset(*at, key, *last_stable_offset);
                }
            }
            ClientEvent::GroupAssigned {
                member,
                generation,
                partitions,
                at,
                ..
            } => {
                self.end_assignment(client, *at);
                let record = self.record(line);
                self.assignments.push(Assignment {
                    group: self.group,
                    client,
                    member: member.clone(),
                    generation: *generation,
                    partitions: partitions.clone(),
                    start_us: *at,
                    end_us: None,
                    record,
                });
                self.open_assignments
                    .insert(client, self.assignments.len() - 1);
            }
            ClientEvent::TxnStarted { txn, at, .. } => {
                let record = self.record(line);
                self.transactions.push(Transaction {
                    client,
                    txn: txn.clone(),
                    start_us: *at,
                    end_us: None,
                    outcome: "open".into(),
                    record,
                });
                self.open_transactions
                    .insert((client, txn.clone()), self.transactions.len() - 1);
            }
            ClientEvent::TxnEndRequested { txn, commit, .. } => {
                if let Some(&index) = self.open_transactions.get(&(client, txn.clone())) {
                    self.transactions[index].outcome =
                        if *commit { "committing" } else { "aborting" }.into();
                }
            }
            ClientEvent::TxnEnded {
                txn,
                commit,
                outcome,
                at,
                ..
            } => {
                if let Some(index) = self.open_transactions.remove(&(client, txn.clone())) {
                    let ended = match (commit, outcome) {
                        (true, CommitOutcome::Acknowledged) => "committed",
                        (false, CommitOutcome::Acknowledged) => "aborted",
                        (true, _) => "commit-failed",
                        (false, _) => "abort-failed",
                    };
                    self.transactions[index].outcome = ended.into();
                    self.transactions[index].end_us = Some(*at);
                }
            }
            ClientEvent::TxnAbandoned { txn, at, .. } => {
                if let Some(index) = self.open_transactions.remove(&(client, txn.clone())) {
                    self.transactions[index].outcome = "abandoned".into();
                    self.transactions[index].end_us = Some(*at);
                }
            }
            _ => {}
        }
    }

    fn end_assignment(&mut self, client: u8, t_us: u64) {
        if let Some(index) = self.open_assignments.remove(&client) {
            self.assignments[index].end_us = Some(t_us);
        }
    }

    /// Something the harness did (`kind` as in the trace); `line` is its trace line.
    pub fn harness_event(&mut self, t_us: u64, source: Source, kind: &str, line: &str) {
        self.last_us = self.last_us.max(t_us);
        let lane = match source {
            Source::Node(node) => self.node_lane(node),
            Source::Client(client) => self.client_lane(client),
            Source::Harness => None,
        };
        match (kind, source) {
            ("crash", Source::Node(node)) => {
                let record = self.record(line);
                self.spans.push(Span {
                    kind: "down".into(),
                    label: format!("node {node} down (crashed)"),
                    lanes: lane.into_iter().collect(),
                    start_us: t_us,
                    end_us: None,
                    record,
                });
                self.open_downs.insert(node, self.spans.len() - 1);
            }
            ("restart", Source::Node(node)) => {
                if let Some(index) = self.open_downs.remove(&node) {
                    self.spans[index].end_us = Some(t_us);
                }
            }
            ("node-exit" | "stuck" | "fault-skipped", _) => {
                let record = self.record(line);
                self.points.push(Point {
                    kind: kind.to_string(),
                    lane,
                    t_us,
                    record,
                });
            }
            _ => {}
        }
    }

    /// Fault `number` of the scenario struck (`struck`: the node it hit, when the harness
    /// chose it then); `line` is the trace line that says so.
    pub fn fault_began(
        &mut self,
        t_us: u64,
        number: usize,
        fault: &Fault,
        struck: Option<u8>,
        line: &str,
    ) {
        // A crash shows as its node's down span.
        if matches!(
            fault,
            Fault::Crash { .. } | Fault::CoordinatorCrash { .. } | Fault::ProduceLeaderCrash { .. }
        ) {
            return;
        }
        let lanes = self.fault_lanes(fault, struck);
        let record = self.record(line);
        let heals_itself = matches!(
            fault,
            Fault::MemberCrash { .. } | Fault::MemberLeave { .. } | Fault::ClientCrash { .. }
        );
        self.spans.push(Span {
            kind: fault.kind().to_string(),
            label: fault.to_string(),
            lanes,
            start_us: t_us,
            end_us: (heals_itself || fault.duration_ms() == 0)
                .then(|| t_us + fault.duration_ms() * 1000),
            record,
        });
        if !heals_itself {
            self.open_faults.insert(number, self.spans.len() - 1);
        }
        if let Fault::MemberCrash { client, .. }
        | Fault::MemberLeave { client, .. }
        | Fault::ClientCrash { client, .. } = fault
        {
            // The member is gone: its assignment ends.
            self.end_assignment(*client, t_us);
        }
    }

    /// Fault `number` healed.
    pub fn fault_healed(&mut self, t_us: u64, number: usize) {
        if let Some(index) = self.open_faults.remove(&number) {
            if self.spans[index].end_us.is_none() {
                self.spans[index].end_us = Some(t_us);
            }
        }
    }

    fn fault_lanes(&self, fault: &Fault, struck: Option<u8>) -> Vec<LaneIndex> {
        let nodes = |list: &[u8]| -> Vec<LaneIndex> {
            list.iter().filter_map(|&n| self.node_lane(n)).collect()
        };
        if let Some(client) = fault.clone().client_mut() {
            return self.client_lane(*client).into_iter().collect();
        }
        match fault {
            Fault::Crash { node, .. }
            | Fault::Pause { node, .. }
            | Fault::Isolate { node, .. }
            | Fault::FsyncFailure { node }
            | Fault::ClockSkew { node, .. } => nodes(&[struck.unwrap_or(*node)]),
            Fault::Split { minority, .. } => nodes(minority),
            Fault::NodeLinkLoss { from, to, .. } => nodes(&[*from, *to]),
            Fault::PacketLoss { .. } => (0..self.lanes.len() as LaneIndex).collect(),
            // The client faults (above), and those that strike the node a client step
            // went to.
            _ => struck.and_then(|n| self.node_lane(n)).into_iter().collect(),
        }
    }

    /// A violation, as the checker saw it at `seen_us`; `line` is its trace line.
    pub fn violation(&mut self, seen_us: u64, violation: &Violation, line: &str) {
        let record = self.record(line);
        let (nodes, partitions) = named_in(&violation.detail, self.nodes);
        let partitions = partitions
            .into_iter()
            .map(|(node, partition)| match node {
                Some(node) if !self.cluster => partition_key(false, node, &partition),
                _ => partition.to_string(),
            })
            .collect();
        self.violations.push(ViolationMark {
            t_us: violation.at,
            seen_us,
            text: violation.to_string(),
            nodes,
            partitions,
            record,
        });
    }

    /// The run panicked (`message`) after the last event seen: marked as a violation at
    /// that time.
    pub fn panicked(&mut self, message: &str) {
        self.violations.push(ViolationMark {
            t_us: Some(self.last_us),
            seen_us: self.last_us,
            text: format!("PANIC after the last event shown: {message}"),
            nodes: Vec::new(),
            partitions: Vec::new(),
            record: None,
        });
    }

    /// The page: `title` and `summary` (the run's report) above the timeline.
    pub fn html(&self, title: &str, summary: &str) -> String {
        let mut notes = Vec::new();
        let end_us = self.last_us.max(1);
        if self.messages_detailed >= MESSAGES_DETAILED_MAX {
            notes.push(format!(
                "The run had more node-to-node messages than the page's budget of {MESSAGES_DETAILED_MAX}: later ones are counted per {} ms bucket and link (sent, delivered), drawn as bars.",
                BUCKET_US / 1000
            ));
        }
        if self.requests_detailed >= REQUESTS_DETAILED_MAX {
            notes.push(format!(
                "The run had more client requests than the page's budget of {REQUESTS_DETAILED_MAX}: later ones are counted per {} ms bucket and client, drawn as bars.",
                BUCKET_US / 1000
            ));
        }
        if self.records_dropped > 0 {
            notes.push(format!(
                "{} items have no trace record (the page keeps at most {RECORDS_MAX}): replay with --trace FILE for all of them.",
                self.records_dropped
            ));
        }
        let thinned;
        let partitions = if self.samples > SAMPLES_MAX {
            notes.push(format!(
                "The run had {} partition samples, more than the page's budget of {SAMPLES_MAX}: each series shows its last value per {} ms bucket.",
                self.samples,
                BUCKET_US / 1000
            ));
            thinned = thin(&self.partitions);
            &thinned
        } else {
            &self.partitions
        };
        let page = Page {
            title,
            summary,
            end_us,
            bucket_us: BUCKET_US,
            lanes: &self.lanes,
            messages: &self.messages,
            message_buckets: self
                .buckets
                .iter()
                .map(|(&(from, to, bucket), counts)| BucketRow {
                    from,
                    to,
                    bucket,
                    sent: counts.sent,
                    delivered: counts.delivered,
                })
                .collect(),
            spans: &self.spans,
            points: &self.points,
            partitions,
            assignments: &self.assignments,
            transactions: &self.transactions,
            violations: &self.violations,
            notes,
        };
        // Inside <script>, "</" would end the element early.
        let data = serde_json::to_string(&page)
            .expect("the timeline always serializes")
            .replace("</", "<\\/");
        // The trace records apart: the page parses them at the first click, not at load.
        let records = serde_json::to_string(&self.records)
            .expect("strings always serialize")
            .replace("</", "<\\/");
        let title = escape_html(title);
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<script id=\"timeline-data\" type=\"application/json\">{data}</script>\n<script id=\"timeline-records\" type=\"application/json\">{records}</script>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n"
        )
    }
}

const SCRIPT: &str = include_str!("timeline/timeline.js");
const STYLE: &str = include_str!("timeline/timeline.css");

/// Appends `(t_us, value)` to a series if the value changed; returns how many it appended.
fn push_change(values: &mut Vec<(u64, i64)>, t_us: u64, value: i64) -> usize {
    if values.last().map(|&(_, last)| last) == Some(value) {
        return 0;
    }
    values.push((t_us, value));
    1
}

/// The name a partition goes by on the page: `topic-p` in a cluster, `node n: topic-p` for
/// independent nodes (each serves a topic of its own under the same name).
fn partition_key(cluster: bool, node: u8, partition: &TopicPartition) -> String {
    if cluster || partition.topic == OUTPUT_TOPIC {
        partition.to_string()
    } else {
        format!("node {node}: {partition}")
    }
}

/// A message's label, the same at the sender and the receiver (the records of an append
/// are left out: the sender names stored bytes, the receiver gets them inline).
fn peer_label(message: &PeerMessage) -> String {
    match message {
        PeerMessage::Replication { partition, message } => match message {
            ReplicationMessage::VoteRequest {
                epoch,
                last_epoch,
                log_end_offset,
            } => format!(
                "VoteRequest {partition} epoch {epoch} (last epoch {last_epoch}, log end {log_end_offset})"
            ),
            ReplicationMessage::VoteResponse { epoch, granted } => {
                format!("VoteResponse {partition} epoch {epoch} granted {granted}")
            }
            ReplicationMessage::Append {
                epoch,
                prev_offset,
                prev_epoch,
                high_watermark,
                log_start_offset,
                ..
            } => {
                // The start DeleteRecords moved, when it did (it travels in every append).
                let log_start = if *log_start_offset == LOG_START_NOT_MOVED {
                    String::new()
                } else {
                    format!(", log start {log_start_offset}")
                };
                format!(
                    "Append {partition} epoch {epoch} after {prev_offset}@{prev_epoch}, high watermark {high_watermark}{log_start}"
                )
            }
            ReplicationMessage::AppendResponse { epoch, outcome } => {
                format!("AppendResponse {partition} epoch {epoch} {outcome:?}")
            }
        },
        PeerMessage::Leaders(led) => {
            let led: Vec<String> = led.iter().map(|(p, e)| format!("{p}@{e}")).collect();
            format!("Leaders [{}]", led.join(", "))
        }
        PeerMessage::Forward { id, .. } => format!("Forward {id}"),
        PeerMessage::Forwarded { id, .. } => format!("Forwarded {id}"),
        PeerMessage::VerifyTxn {
            id,
            transactional_id,
            ..
        } => format!("VerifyTxn {id} {transactional_id}"),
        PeerMessage::TxnVerified { id, .. } => format!("TxnVerified {id}"),
        PeerMessage::WriteTxnMarkers { id, commit, .. } => {
            format!("WriteTxnMarkers {id} commit {commit}")
        }
        PeerMessage::TxnMarkersWritten { id, .. } => format!("TxnMarkersWritten {id}"),
    }
}

/// The nodes (`node N`, `nodes A and B`) and partitions (`topic-P`, `node N partition P`)
/// a violation's text names.
fn named_in(text: &str, node_count: u8) -> (Vec<u8>, Vec<(Option<u8>, TopicPartition)>) {
    let mut nodes = Vec::new();
    let mut partitions = Vec::new();
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':' || c == '(' || c == ')')
        .filter(|word| !word.is_empty())
        .collect();
    for (index, word) in words.iter().enumerate() {
        let number = |offset: usize| {
            words
                .get(index + offset)
                .and_then(|w| w.parse::<u8>().ok())
                .filter(|n| (1..=node_count).contains(n))
        };
        if *word == "node" || *word == "nodes" {
            if let Some(node) = number(1) {
                nodes.push(node);
                if words.get(index + 2) == Some(&"partition") {
                    if let Some(partition) = words.get(index + 3).and_then(|w| w.parse().ok()) {
                        partitions.push((
                            Some(node),
                            TopicPartition {
                                topic: TOPIC.to_string(),
                                partition,
                            },
                        ));
                    }
                }
            }
            if *word == "nodes" && words.get(index + 2) == Some(&"and") {
                nodes.extend(number(3));
            }
        }
        // `topic-P`: a topic's name (letters, digits, `_`, `.`), a dash, a partition.
        if let Some((topic, partition)) = word.rsplit_once('-') {
            let is_topic = topic.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if let (true, Ok(partition)) = (is_topic, partition.parse::<i32>()) {
                partitions.push((
                    None,
                    TopicPartition {
                        topic: topic.to_string(),
                        partition,
                    },
                ));
            }
        }
    }
    nodes.sort_unstable();
    nodes.dedup();
    partitions.sort_by_key(|(node, partition)| (partition.to_string(), *node));
    partitions.dedup();
    (nodes, partitions)
}

/// Each series reduced to its last value per bucket.
fn thin(partitions: &BTreeMap<String, PartitionSeries>) -> BTreeMap<String, PartitionSeries> {
    fn last_per_bucket<T: Copy>(values: &[T], time: impl Fn(&T) -> u64) -> Vec<T> {
        let mut kept: Vec<T> = Vec::new();
        for value in values {
            match kept.last_mut() {
                Some(last) if time(last) / BUCKET_US == time(value) / BUCKET_US => *last = *value,
                _ => kept.push(*value),
            }
        }
        kept
    }
    partitions
        .iter()
        .map(|(key, series)| {
            let thinned = PartitionSeries {
                leader: last_per_bucket(&series.leader, |v| v.0),
                log_end_offset: series
                    .log_end_offset
                    .iter()
                    .map(|(node, values)| (*node, last_per_bucket(values, |v| v.0)))
                    .collect(),
                high_watermark: last_per_bucket(&series.high_watermark, |v| v.0),
                last_stable_offset: last_per_bucket(&series.last_stable_offset, |v| v.0),
            };
            (key.clone(), thinned)
        })
        .collect()
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_violation_names_its_nodes_and_partitions() {
        let (nodes, partitions) = named_in("events-1: nodes 2 and 3 both led epoch 4", 3);
        assert_eq!(nodes, vec![2, 3]);
        assert_eq!(partitions.len(), 1);
        assert_eq!(partitions[0].1.to_string(), "events-1");
        let (_, partitions) = named_in("__cluster_metadata-0: the leader of epoch 1", 3);
        assert_eq!(partitions[0].1.to_string(), "__cluster_metadata-0");
        let (_, partitions) = named_in("at 1.009619 s: read-committed 3-4 ranges", 3);
        assert!(partitions.is_empty(), "{partitions:?}");
        let (nodes, partitions) = named_in("node 1 partition 0 lost offset 7; node 9", 3);
        assert_eq!(nodes, vec![1], "node 9 does not exist");
        assert_eq!(
            partitions,
            vec![(
                Some(1),
                TopicPartition {
                    topic: TOPIC.into(),
                    partition: 0
                }
            )]
        );
    }

    #[test]
    fn thinning_keeps_the_last_value_of_each_bucket() {
        let mut partitions = BTreeMap::new();
        let series = PartitionSeries {
            high_watermark: vec![(0, 1), (10, 2), (BUCKET_US, 3), (BUCKET_US + 5, 4)],
            ..PartitionSeries::default()
        };
        partitions.insert("events-0".to_string(), series);
        let thinned = thin(&partitions);
        assert_eq!(
            thinned["events-0"].high_watermark,
            vec![(10, 2), (BUCKET_US + 5, 4)]
        );
    }

    #[test]
    fn the_page_embeds_its_script_and_escapes_closing_tags() {
        let scenario = Scenario::generate_cluster(1);
        let mut timeline = Timeline::new(&scenario);
        timeline.harness_event(5, Source::Node(1), "crash", "{\"event\":\"</script>\"}");
        timeline.harness_event(9, Source::Node(1), "restart", "{}");
        let page = timeline.html("seed <1>", "summary");
        assert!(page.contains(SCRIPT), "the script is embedded");
        assert!(page.contains("seed &lt;1&gt;"));
        assert_eq!(
            page.matches("</script>").count(),
            3,
            "only the three scripts' ends"
        );
        assert!(
            !page.contains("<link") && !page.contains(" src=") && !page.contains("import("),
            "nothing is fetched"
        );
        assert_eq!(timeline.spans.len(), 1);
        assert_eq!(timeline.spans[0].end_us, Some(9));
    }
}
