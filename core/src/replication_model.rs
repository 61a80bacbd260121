//! A replication group in memory, for the replication tests: the real [`Replica`]s and
//! [`PartitionLog`]s of a few nodes, an in-memory network (a list of messages in flight,
//! delivered in any order or never), syncs, and crashes that lose the unsynced tail and
//! restart a replica from its persisted state. [`Group::verify`] checks the protocol's
//! invariants from outside after every step, under the names the exhaustive search reports:
//! `one-leader-per-epoch`, `high-watermark-monotonic`, `epoch-monotonic`,
//! `committed-prefix-agreed` and `acknowledged-writes-survive` (the simulator's names, where
//! it has them), and `matched-prefix-agreed`, checked as each answer is sent: a replica
//! that tells the leader of its epoch its log matches below an offset holds the leader's
//! batches there (Raft's log matching, as the leader relies on it).
//!
//! Two drivers share it: the property tests in `replication.rs` (random schedules, shrunk
//! by proptest) and the exhaustive search of every schedule of a small scope in
//! `replication_exhaustive.rs`.

use crate::api::Now;
use crate::log::PartitionLog;
use crate::records::{encode_batch, PlainRecord};
use crate::replication::{
    AppendOutcome, Effect, NodeId, Records, Replica, ReplicaContext, ReplicaState,
    ReplicationMessage, ReplicationTimings,
};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;

/// What tells batches apart beyond their offset and epoch: the client append that wrote a
/// data batch (the n of its records' value `w<n>`), `None` for a control batch (the marker).
pub(crate) type Value = Option<u64>;

/// One batch of a node's log, as the invariants see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BatchView {
    pub base_offset: i64,
    pub last_offset: i64,
    pub epoch: i32,
    pub value: Value,
}

impl std::fmt::Display for BatchView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}..={} epoch {} {}",
            self.base_offset,
            self.last_offset,
            self.epoch,
            show(self.value)
        )
    }
}

/// `w<n>`, or `marker`.
fn show(value: Value) -> String {
    value.map_or("marker".to_string(), |append| format!("w{append}"))
}

/// Batches as a list, for a violation's detail.
fn list(batches: &[BatchView]) -> String {
    let batches: Vec<String> = batches.iter().map(ToString::to_string).collect();
    format!("[{}]", batches.join(", "))
}

/// The value of a batch's bytes (see [`Value`]).
pub(crate) fn batch_value(bytes: &Bytes) -> Value {
    let header = crate::batch::read_header(bytes).expect("a stored batch has a header");
    if header.is_control() {
        return None;
    }
    let record = crate::records::decode_records(&header, bytes)
        .expect("the model writes plain batches")
        .into_iter()
        .next()
        .and_then(|record| record.value)
        .expect("the model's records have values");
    let append = std::str::from_utf8(&record)
        .ok()
        .and_then(|value| value.strip_prefix('w')?.parse().ok())
        .expect("the model's values are w<n>");
    Some(append)
}

/// One node: its replica, its log, the bytes "on disk" and what survives a crash.
#[derive(Clone, PartialEq)]
pub(crate) struct Node {
    pub replica: Replica,
    pub log: PartitionLog,
    /// (segment base, position) -> stored bytes (base offset and epoch patched in).
    pub stored: BTreeMap<(i64, u32), Bytes>,
    /// The log's batches as the invariants see them, kept as the log changes.
    pub batches: Vec<BatchView>,
    /// Last persisted replica state.
    pub persisted: ReplicaState,
    /// The persisted DeleteRecords start (`StorageCommand::PersistDeletedBelow`).
    pub deleted_below: Option<i64>,
    /// History for `high-watermark-monotonic`: the highest HWM of this replica's lifetime.
    pub highest_hwm: i64,
    /// History for `epoch-monotonic`: the highest epoch ever persisted, across restarts.
    pub highest_epoch: i32,
    pub up: bool,
}

impl Node {
    /// The batches that start below `end`.
    pub fn batches_below(&self, end: i64) -> &[BatchView] {
        &self.batches[..self
            .batches
            .partition_point(|batch| batch.base_offset < end)]
    }
}

/// A batch below some leader's HWM: committed, so acknowledged to acks=all producers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Committed {
    pub epoch: i32,
    pub value: Value,
    /// The lowest epoch of a leader whose HWM covered it: every leader from that epoch on
    /// must hold it (a deposed leader of an older epoch that has not heard yet need not).
    pub since_epoch: i32,
}

/// An invariant broken, by name, with what broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

fn violation(invariant: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { invariant, detail })
}

/// The deliberate bug a model group runs with (none without the `defects` feature).
#[cfg(feature = "defects")]
pub(crate) type DefectChoice = Option<crate::defects::Defect>;
#[cfg(not(feature = "defects"))]
pub(crate) type DefectChoice = Option<std::convert::Infallible>;

#[cfg(feature = "defects")]
fn set_defect(replica: &mut Replica, defect: DefectChoice) {
    replica.set_defect(defect);
}

#[cfg(not(feature = "defects"))]
fn set_defect(_replica: &mut Replica, defect: DefectChoice) {
    assert!(defect.is_none(), "defects need the `defects` feature");
}

fn patch(bytes: &Bytes, base_offset: i64, epoch: i32) -> Bytes {
    let mut patched = bytes.to_vec();
    patched[..8].copy_from_slice(&base_offset.to_be_bytes());
    patched[12..16].copy_from_slice(&epoch.to_be_bytes());
    Bytes::from(patched)
}

#[derive(Clone)]
pub(crate) struct Group {
    pub nodes: BTreeMap<NodeId, Node>,
    /// Messages in flight: (from, to, message).
    pub network: Vec<(NodeId, NodeId, ReplicationMessage)>,
    pub now_ms: i64,
    pub sequence: u64,
    pub rng: StdRng,
    /// History for `one-leader-per-epoch`.
    pub leaders_by_epoch: BTreeMap<i32, NodeId>,
    /// History for `committed-prefix-agreed` and `acknowledged-writes-survive`: every
    /// offset some leader's HWM covered.
    pub committed: BTreeMap<i64, Committed>,
    /// A `matched-prefix-agreed` violation seen while sending, for `verify` to report.
    pub broken: Option<Violation>,
    /// Client appends made so far (each writes the value `w<n>`).
    pub appends: u64,
    pub timings: ReplicationTimings,
    /// The deliberate bug every replica runs with, if any.
    pub defect: DefectChoice,
}

impl Group {
    pub fn new(size: i32, seed: u64) -> Self {
        Self::with_defect(size, seed, None)
    }

    pub fn with_defect(size: i32, seed: u64, defect: DefectChoice) -> Self {
        Self::with_timings(size, seed, ReplicationTimings::default(), defect)
    }

    pub fn with_timings(
        size: i32,
        seed: u64,
        timings: ReplicationTimings,
        defect: DefectChoice,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let voters: Vec<NodeId> = (1..=size).collect();
        let nodes = voters
            .iter()
            .map(|id| {
                let mut replica = Replica::new(
                    *id,
                    voters.clone(),
                    ReplicaState::default(),
                    timings.clone(),
                    0,
                    &mut rng,
                );
                set_defect(&mut replica, defect);
                (
                    *id,
                    Node {
                        replica,
                        log: PartitionLog::new(0),
                        stored: BTreeMap::new(),
                        batches: Vec::new(),
                        persisted: ReplicaState::default(),
                        deleted_below: None,
                        highest_hwm: 0,
                        highest_epoch: 0,
                        up: true,
                    },
                )
            })
            .collect();
        Self {
            nodes,
            network: Vec::new(),
            now_ms: 0,
            sequence: 0,
            rng,
            leaders_by_epoch: BTreeMap::new(),
            committed: BTreeMap::new(),
            broken: None,
            appends: 0,
            timings,
            defect,
        }
    }

    /// Runs one step of node `id`'s replica and carries out its effects as a driver would:
    /// state persisted, appends read from "disk" and sent inline, batches stored and cut.
    pub fn with_node(
        &mut self,
        id: NodeId,
        step: impl FnOnce(&mut Replica, &mut ReplicaContext<'_>),
    ) {
        let node = self.nodes.get_mut(&id).unwrap();
        if !node.up {
            return;
        }
        let mut effects = Vec::new();
        let mut context = ReplicaContext {
            now: Now::aligned(self.now_ms),
            log: &mut node.log,
            segment_bytes_max: 4096,
            append_sequence: &mut self.sequence,
            rng: &mut self.rng,
            effects: &mut effects,
        };
        step(&mut node.replica, &mut context);
        let mut claims = Vec::new();
        for effect in effects {
            match effect {
                Effect::PersistState(state) => node.persisted = state,
                Effect::Send { to, message } => {
                    let message = match message {
                        ReplicationMessage::Append {
                            epoch,
                            prev_offset,
                            prev_epoch,
                            records: Records::Stored(chunks),
                            high_watermark,
                            log_start_offset,
                        } => {
                            let mut bytes = Vec::new();
                            for chunk in chunks {
                                for ((segment, position), batch) in node
                                    .stored
                                    .range((chunk.segment_base_offset, chunk.position)..)
                                {
                                    if *segment != chunk.segment_base_offset
                                        || *position >= chunk.position + chunk.length
                                    {
                                        break;
                                    }
                                    bytes.extend_from_slice(batch);
                                }
                            }
                            ReplicationMessage::Append {
                                epoch,
                                prev_offset,
                                prev_epoch,
                                records: Records::Inline(Bytes::from(bytes)),
                                high_watermark,
                                log_start_offset,
                            }
                        }
                        other => other,
                    };
                    if let ReplicationMessage::AppendResponse {
                        epoch,
                        outcome:
                            AppendOutcome::Matched {
                                matched_end_offset, ..
                            },
                    } = message
                    {
                        claims.push((to, epoch, matched_end_offset));
                    }
                    self.network.push((id, to, message));
                }
                Effect::Appended { batch, bytes, .. } => {
                    let bytes = patch(
                        &bytes,
                        batch.base_offset,
                        node.log.epoch_at(batch.base_offset).unwrap(),
                    );
                    node.batches.push(BatchView {
                        base_offset: batch.base_offset,
                        last_offset: batch.last_offset,
                        epoch: batch.leader_epoch,
                        value: batch_value(&bytes),
                    });
                    node.stored
                        .insert((batch.segment_base_offset, batch.position), bytes);
                }
                Effect::Truncated { offset, truncation } => {
                    // The cut falls at the start of the batch holding `offset`.
                    node.batches.retain(|batch| batch.last_offset < offset);
                    node.stored.retain(|(segment, position), _| {
                        *segment < truncation.active_segment_base
                            || (*segment == truncation.active_segment_base
                                && *position < truncation.active_segment_bytes)
                    });
                }
                Effect::LogRestarted { base_offset } => unreachable!(
                    "the model never trims a log, so no follower falls behind a log start \
                     (restarted at {base_offset})"
                ),
                Effect::ClientStartMoved { offset } => node.deleted_below = Some(offset),
                Effect::Rolled { .. } | Effect::RoleChanged => {}
            }
        }
        for (leader, epoch, matched_end_offset) in claims {
            let leader_node = &self.nodes[&leader];
            if self.broken.is_some()
                || !leader_node.up
                || !leader_node.replica.is_leader()
                || leader_node.replica.epoch() != epoch
            {
                continue;
            }
            let node = &self.nodes[&id];
            let held = node.batches_below(matched_end_offset);
            let leaders = leader_node.batches_below(matched_end_offset);
            if held != leaders {
                self.broken = Some(Violation {
                    invariant: "matched-prefix-agreed",
                    detail: format!(
                        "node {id} tells leader {leader} of epoch {epoch} that its log \
                         matches below {matched_end_offset}: it holds {}, the leader {}",
                        list(held),
                        list(leaders)
                    ),
                });
            }
        }
    }

    /// Checks the invariants and updates the history they keep; panics on a violation.
    pub fn check(&mut self) {
        if let Err(violation) = self.verify() {
            panic!("{violation}");
        }
    }

    /// Checks every invariant against the current state and the history kept so far, and
    /// adds the current state to that history.
    pub fn verify(&mut self) -> Result<(), Violation> {
        if let Some(violation) = self.broken.take() {
            return Err(violation);
        }
        for (id, node) in &mut self.nodes {
            let entries: usize = node
                .log
                .segments()
                .map(|segment| segment.batches.len())
                .sum();
            let end = node.batches.last().map(|batch| batch.last_offset + 1);
            assert_eq!(
                (
                    node.batches.len(),
                    end.unwrap_or(node.log.log_start_offset())
                ),
                (entries, node.log.log_end_offset()),
                "the model follows node {id}'s log"
            );
            if !node.up {
                continue;
            }
            let hwm = node.log.high_watermark();
            if hwm < node.highest_hwm {
                return violation(
                    "high-watermark-monotonic",
                    format!(
                        "node {id}: HWM moved back from {} to {hwm}",
                        node.highest_hwm
                    ),
                );
            }
            node.highest_hwm = hwm;
            let epoch = node.persisted.epoch;
            if epoch < node.highest_epoch {
                return violation(
                    "epoch-monotonic",
                    format!(
                        "node {id}: persisted epoch moved back from {} to {epoch}",
                        node.highest_epoch
                    ),
                );
            }
            if node.replica.epoch() != epoch {
                return violation(
                    "epoch-monotonic",
                    format!(
                        "node {id}: acts in epoch {} but persisted epoch {epoch}",
                        node.replica.epoch()
                    ),
                );
            }
            node.highest_epoch = epoch;
            if node.replica.is_leader() {
                let epoch = node.replica.epoch();
                let previous = self.leaders_by_epoch.insert(epoch, *id);
                if let Some(other) = previous.filter(|other| other != id) {
                    return violation(
                        "one-leader-per-epoch",
                        format!("nodes {other} and {id} both led epoch {epoch}"),
                    );
                }
                // Everything below a leader's HWM is committed, forever.
                for batch in &node.batches {
                    for offset in batch.base_offset..=batch.last_offset.min(hwm - 1) {
                        let known = self.committed.entry(offset).or_insert(Committed {
                            epoch: batch.epoch,
                            value: batch.value,
                            since_epoch: epoch,
                        });
                        if (known.epoch, known.value) != (batch.epoch, batch.value) {
                            return violation(
                                "committed-prefix-agreed",
                                format!(
                                    "leader {id} holds {batch} at committed offset {offset}, \
                                     committed as {} in epoch {}",
                                    show(known.value),
                                    known.epoch
                                ),
                            );
                        }
                        known.since_epoch = known.since_epoch.min(epoch);
                    }
                }
            }
        }
        for (id, node) in &self.nodes {
            let holds = |offset: i64| {
                let batches = &node.batches;
                batches
                    .get(batches.partition_point(|batch| batch.last_offset < offset))
                    .filter(|batch| batch.base_offset <= offset)
                    .map(|batch| (batch.epoch, batch.value))
            };
            // Any replica's batch at a committed offset below its own HWM is the committed
            // one.
            for (offset, committed) in self.committed.range(..node.log.high_watermark()) {
                let held = holds(*offset);
                if held != Some((committed.epoch, committed.value)) {
                    let held = held.map_or("nothing".to_string(), |(epoch, value)| {
                        format!("{} in epoch {epoch}", show(value))
                    });
                    return violation(
                        "committed-prefix-agreed",
                        format!(
                            "node {id} holds {held} below its HWM at committed offset \
                             {offset}, committed as {} in epoch {}",
                            show(committed.value),
                            committed.epoch
                        ),
                    );
                }
            }
            // A write acknowledged at acks=all (below a leader's HWM) is in the log of every
            // leader from the epoch that committed it on.
            if node.up && node.replica.is_leader() {
                for (offset, committed) in &self.committed {
                    if committed.since_epoch <= node.replica.epoch()
                        && holds(*offset) != Some((committed.epoch, committed.value))
                    {
                        return violation(
                            "acknowledged-writes-survive",
                            format!(
                                "leader {id} of epoch {} lacks {} (epoch {}) at offset \
                                 {offset}, committed since epoch {}",
                                node.replica.epoch(),
                                show(committed.value),
                                committed.epoch,
                                committed.since_epoch
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Delivers the message in flight at `index`.
    pub fn deliver(&mut self, index: usize) {
        let (from, to, message) = self.network.remove(index);
        self.with_node(to, |replica, context| {
            replica.handle(context, from, message)
        });
    }

    /// Delivers every message in flight, oldest first, including those sent meanwhile.
    pub fn deliver_all(&mut self) {
        let mut delivered = 0;
        while !self.network.is_empty() && delivered < 10_000 {
            self.deliver(0);
            delivered += 1;
        }
    }

    /// The first node that believes it leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, node)| node.up && node.replica.is_leader())
            .map(|(id, _)| *id)
    }

    /// Time moves on by `ms` and every replica's timers run.
    pub fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.with_node(id, |replica, context| replica.tick(context));
        }
    }

    /// Time moves on to node `id`'s next timer (if it lies ahead), which runs.
    pub fn fire_timer(&mut self, id: NodeId) {
        self.now_ms = self.now_ms.max(self.nodes[&id].replica.next_wakeup_ms());
        self.with_node(id, |replica, context| replica.tick(context));
    }

    /// A sync of everything node `id` has appended completes.
    pub fn sync(&mut self, id: NodeId) {
        let sequence = self.sequence;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.log.on_synced(sequence);
        }
        self.with_node(id, |replica, context| replica.on_synced(context));
    }

    /// A client appends a batch of `records` records to node `id` (if it leads), valued
    /// `w<n>` for the group's n-th append.
    pub fn produce(&mut self, id: NodeId, records: usize) {
        let value = Bytes::from(format!("w{}", self.appends));
        let records: Vec<PlainRecord> = (0..records)
            .map(|_| PlainRecord {
                key: None,
                value: Some(value.clone()),
            })
            .collect();
        let batch = encode_batch(&records, self.now_ms, 0, -1);
        let header = crate::batch::validate(&batch).unwrap();
        self.with_node(id, |replica, context| {
            replica.append_as_leader(context, &header, batch);
        });
        self.appends += 1;
    }

    /// DeleteRecords at node `id` (its leader): clients read nothing below `offset` there,
    /// persisted, and the new start goes to the followers at once (as the broker does).
    pub fn delete_records(&mut self, id: NodeId, offset: i64) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(node.replica.is_leader(), "DeleteRecords is the leader's");
        if node.log.delete_records_below(offset) {
            node.deleted_below = Some(offset);
        }
        self.with_node(id, |replica, context| replica.heartbeat_now(context));
    }

    /// The node loses everything not durable and restarts from its disk.
    pub fn crash_and_restart(&mut self, id: NodeId) {
        let voters: Vec<NodeId> = self.nodes.keys().copied().collect();
        let now_ms = self.now_ms;
        let node = self.nodes.get_mut(&id).unwrap();
        let durable = node.log.durable_end_offset();
        let mut recovered: Vec<crate::api::RecoveredSegment> = Vec::new();
        for segment in node.log.segments() {
            let batches: Vec<crate::api::RecoveredBatch> = segment
                .batches
                .iter()
                .filter(|batch| batch.last_offset < durable)
                .map(|batch| {
                    let bytes = &node.stored[&(segment.base_offset, batch.position)];
                    crate::api::RecoveredBatch {
                        position: batch.position,
                        header: crate::batch::read_header(bytes).unwrap(),
                        control_type: crate::records::control_record_type(bytes),
                    }
                })
                .collect();
            if batches.is_empty() && !recovered.is_empty() {
                break;
            }
            recovered.push(crate::api::RecoveredSegment {
                base_offset: segment.base_offset,
                batches,
            });
        }
        let kept: std::collections::BTreeSet<(i64, u32)> = recovered
            .iter()
            .flat_map(|segment| {
                segment
                    .batches
                    .iter()
                    .map(move |batch| (segment.base_offset, batch.position))
            })
            .collect();
        node.stored.retain(|key, _| kept.contains(key));
        node.batches.truncate(kept.len());
        let mut rebuilt = PartitionLog::from_recovered(&recovered).unwrap();
        // A restarted replica of a replicated log knows nothing committed until a leader
        // tells it.
        rebuilt.0.reset_high_watermark_to_start();
        if let Some(offset) = node.deleted_below {
            rebuilt.0.restore_deleted_below(offset);
        }
        node.log = rebuilt.0;
        node.highest_hwm = node.log.high_watermark();
        node.replica = Replica::new(
            id,
            voters,
            node.persisted,
            self.timings.clone(),
            now_ms,
            &mut self.rng,
        );
        set_defect(&mut node.replica, self.defect);
        self.network.retain(|(_, to, _)| *to != id);
    }
}
