//! Checkers: the invariants a run must keep, checked over the recorded history as it grows
//! and once more, at the end, against every partition read back in full.
//!
//! The end of a run heals every fault, crashes every node once more (dropping everything
//! unsynced) and restarts it, then reads each partition from offset 0 to its high
//! watermark: the *final log*. Durability claims are judged against that log, so a write
//! acknowledged but only in the page cache cannot pass for durable.
//!
//! ## Invariants
//! - **acknowledged-writes-survive**: a batch acknowledged at base offset `o` (acks=all,
//!   acks=1 and idempotent alike: a single node acknowledges only durable batches; in a
//!   cluster, acks=1 promises only the leader's copy and is not held to it) has its
//!   records at `o, o+1, ...` whenever they are read, and in the final log.
//! - **reads-survive**: a record read at offset `o` is the record at `o` forever after, and
//!   in the final log: nothing read is later truncated or replaced.
//! - **reads-below-high-watermark**: every record a fetch returns lies below the high
//!   watermark that fetch reports.
//! - **reads-in-offset-order**: a fetch from offset `f` returns records `f, f+1, ...` with
//!   no gap, duplicate or reordering; and the final log is dense from 0 to its high
//!   watermark.
//! - **no-duplicates**: no record value appears at two offsets (idempotent producers retry
//!   batches, which must be deduplicated; plain producers never resend one).
//! - **high-watermark-monotonic**: the high watermark of a partition never moves backwards:
//!   neither in the core's fetch responses (across restarts; in a cluster, within each
//!   node's lifetime), nor as clients see it (a
//!   fetch that starts after another ended reports a high watermark at least as high), and
//!   a consumer's position, always at or below a high watermark it saw, never becomes out
//!   of range.
//! - **no-phantom-records**: every record read (or in the final log) decodes and is one a
//!   client sent to that partition.
//! - **idempotent-sequences-accepted**: an idempotent producer that sends its batches in
//!   order, retrying each until acknowledged, is never refused with a sequence or epoch
//!   error.
//! - **liveness**: once faults heal and nodes restart, every partition can be read back (in
//!   a cluster: a leader is elected and serves it, and takes an acks=all write, within the
//!   final deadline).
//! - **one-leader-per-epoch** (clusters): at most one node sends replication appends for a
//!   partition in one leader epoch.
//! - **committed-prefix-agreed** (clusters): at the end, every replica's batches below the
//!   final high watermark are byte-for-byte the same batches at the same offsets, and a
//!   majority of replicas holds all of them.
//! - **one-owner-per-generation** (groups): within a generation of the consumer group, no
//!   partition is assigned to two members.
//! - **fenced-commits-rejected** (groups): an offset commit naming a generation older than
//!   one some member had already been given its assignment in is never acknowledged (a
//!   zombie's commit is refused).
//! - **committed-offsets-monotonic** (groups): an acknowledged commit of a partition never
//!   names a lower offset than one acknowledged before it was sent, and an OffsetFetch never
//!   returns less than what was acknowledged before it was sent (no acknowledged commit is
//!   lost, across coordinator failovers included). The workload never resets offsets.
//! - **group-stabilizes** (groups): once faults heal and producers stop, the group settles
//!   and commits every partition up to its high watermark within the deadline: consumption
//!   continues from the committed offsets.
//! - **progress**: the run acknowledged at least [`MIN_ACKNOWLEDGED`] batches, read at least
//!   [`MIN_RECORDS_READ`] records and injected at least one fault, so an idle run cannot pass.

use crate::disk::StoredBatch;
use crate::history::{
    ClientEvent, CommitOutcome, FetchFailure, Micros, PartitionRef, ProduceOutcome, ReadRecord,
    Value,
};
use crate::scenario::ClientRole;
use myelin_core::api::{ErrorCode, Output, PeerMessage, Response};
use myelin_core::replication::ReplicationMessage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Fewest acknowledged batches a run must have.
pub const MIN_ACKNOWLEDGED: u64 = 20;
/// Fewest records the consumers must have read.
pub const MIN_RECORDS_READ: u64 = 20;
/// Fewest faults a run must have injected.
pub const MIN_FAULTS_INJECTED: u64 = 1;

/// The invariants, in report order. See the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    AcknowledgedWritesSurvive,
    ReadsSurvive,
    ReadsBelowHighWatermark,
    ReadsInOffsetOrder,
    NoDuplicates,
    HighWatermarkMonotonic,
    NoPhantomRecords,
    IdempotentSequencesAccepted,
    Liveness,
    Progress,
    OneLeaderPerEpoch,
    CommittedPrefixAgreed,
    OneOwnerPerGeneration,
    FencedCommitsRejected,
    CommittedOffsetsMonotonic,
    GroupStabilizes,
}

impl Invariant {
    pub const ALL: [Invariant; 16] = [
        Invariant::AcknowledgedWritesSurvive,
        Invariant::ReadsSurvive,
        Invariant::ReadsBelowHighWatermark,
        Invariant::ReadsInOffsetOrder,
        Invariant::NoDuplicates,
        Invariant::HighWatermarkMonotonic,
        Invariant::NoPhantomRecords,
        Invariant::IdempotentSequencesAccepted,
        Invariant::Liveness,
        Invariant::Progress,
        Invariant::OneLeaderPerEpoch,
        Invariant::CommittedPrefixAgreed,
        Invariant::OneOwnerPerGeneration,
        Invariant::FencedCommitsRejected,
        Invariant::CommittedOffsetsMonotonic,
        Invariant::GroupStabilizes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Invariant::AcknowledgedWritesSurvive => "acknowledged-writes-survive",
            Invariant::ReadsSurvive => "reads-survive",
            Invariant::ReadsBelowHighWatermark => "reads-below-high-watermark",
            Invariant::ReadsInOffsetOrder => "reads-in-offset-order",
            Invariant::NoDuplicates => "no-duplicates",
            Invariant::HighWatermarkMonotonic => "high-watermark-monotonic",
            Invariant::NoPhantomRecords => "no-phantom-records",
            Invariant::IdempotentSequencesAccepted => "idempotent-sequences-accepted",
            Invariant::Liveness => "liveness",
            Invariant::Progress => "progress",
            Invariant::OneLeaderPerEpoch => "one-leader-per-epoch",
            Invariant::CommittedPrefixAgreed => "committed-prefix-agreed",
            Invariant::OneOwnerPerGeneration => "one-owner-per-generation",
            Invariant::FencedCommitsRejected => "fenced-commits-rejected",
            Invariant::CommittedOffsetsMonotonic => "committed-offsets-monotonic",
            Invariant::GroupStabilizes => "group-stabilizes",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    /// Simulated time it was seen (`None`: at the final check).
    pub at: Option<Micros>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(
                f,
                "[{}] at {}.{:06} s: {}",
                self.invariant,
                at / 1_000_000,
                at % 1_000_000,
                self.detail
            ),
            None => write!(
                f,
                "[{}] at the final check: {}",
                self.invariant, self.detail
            ),
        }
    }
}

/// A partition as read back at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalLog {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub records: Vec<ReadRecord>,
}

/// What the final read-back got for one partition.
pub type FinalRead = Result<FinalLog, String>;

/// Progress the run made besides the client history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub acknowledged: u64,
    pub records_read: u64,
    pub faults_injected: u64,
}

/// The checkers' verdict on a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckReport {
    /// Individual checks made, per invariant.
    pub checks: BTreeMap<Invariant, u64>,
    pub violations: Vec<Violation>,
}

impl CheckReport {
    /// Invariants with no violation.
    pub fn invariants_held(&self) -> usize {
        Invariant::ALL
            .iter()
            .filter(|invariant| !self.violations.iter().any(|v| v.invariant == **invariant))
            .count()
    }

    pub fn total_checks(&self) -> u64 {
        self.checks.values().sum()
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Who wrote a value, and whether it was acknowledged.
#[derive(Debug, Clone)]
struct WriteInfo {
    partition: PartitionRef,
    acknowledged_at: Option<i64>,
}

/// What was seen at one offset first, and by whom.
#[derive(Debug, Clone)]
struct Observed {
    value: Value,
    by: String,
}

#[derive(Debug, Default)]
struct PartitionState {
    at_offset: BTreeMap<i64, Observed>,
    offset_of_value: BTreeMap<String, i64>,
    /// Client-side high watermarks: (fetch end, highest high watermark of fetches ended by
    /// then), in order of end.
    client_high_watermarks: Vec<(Micros, i64)>,
}

/// What the group checkers remember.
#[derive(Debug, Default)]
struct GroupHistory {
    /// (generation, partition) -> the member assigned it.
    owners: BTreeMap<(i32, i32), String>,
    /// (when, generation) of every assignment a member received, in order.
    assignments: Vec<(Micros, i32)>,
    /// Per partition: (when acknowledged, offset) of every acknowledged commit, in order.
    acknowledged: BTreeMap<i32, Vec<(Micros, i64)>>,
}

impl GroupHistory {
    /// The newest generation a member had been assigned in before `before`.
    fn newest_generation_before(&self, before: Micros) -> i32 {
        self.assignments
            .iter()
            .take_while(|(at, _)| *at < before)
            .map(|(_, generation)| *generation)
            .max()
            .unwrap_or(0)
    }

    /// The highest offset of `partition` acknowledged before `before`.
    fn acknowledged_before(&self, partition: i32, before: Micros) -> Option<i64> {
        self.acknowledged
            .get(&partition)?
            .iter()
            .take_while(|(at, _)| *at < before)
            .map(|(_, offset)| *offset)
            .max()
    }
}

/// The checkers' state over one run. Feed it with `observe_client` and `observe_core`, in
/// the order events happen, then call `finish`.
#[derive(Debug, Default)]
pub struct Checker {
    writes: BTreeMap<String, WriteInfo>,
    /// Produce ops still open: (partition, role, values).
    open_produces: BTreeMap<u64, (PartitionRef, ClientRole, Vec<String>)>,
    partitions: BTreeMap<PartitionRef, PartitionState>,
    /// Highest high watermark each node's core reported, per partition.
    core_high_watermarks: BTreeMap<PartitionRef, i64>,
    /// The node that sent replication appends in each (partition, leader epoch).
    leaders: BTreeMap<(String, i32, i32), u8>,
    /// A replicated cluster: offsets may have gaps (leader-change control batches, which
    /// consumers skip; offsets must still increase), and acks=1 is not durable.
    offset_gaps_allowed: bool,
    /// In a cluster, the high watermark a node's core reports is monotonic within the node's
    /// lifetime (a restarted replica learns what is committed from the leader again).
    core_high_watermark_per_lifetime: bool,
    group: GroupHistory,
    report: CheckReport,
}

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks for a replicated cluster: offsets may have gaps (control batches), and the
    /// core's high watermark is monotonic within each node's lifetime.
    pub fn for_cluster(&mut self) {
        self.offset_gaps_allowed = true;
        self.core_high_watermark_per_lifetime = true;
    }

    /// At the end of a cluster run: every replica's batches of `partition`, as (node, batches
    /// as (base offset, last offset, bytes)), against the final high watermark.
    pub fn check_replicas(
        &mut self,
        partition: PartitionRef,
        high_watermark: i64,
        replicas: &[(u8, Vec<StoredBatch>)],
    ) {
        let mut first_seen: BTreeMap<i64, (u8, &[u8])> = BTreeMap::new();
        let mut complete = 0;
        for (node, batches) in replicas {
            let committed: Vec<&StoredBatch> = batches
                .iter()
                .filter(|(_, last, _)| *last < high_watermark)
                .collect();
            if committed
                .last()
                .is_some_and(|(_, last, _)| *last + 1 >= high_watermark)
                || high_watermark == 0
            {
                complete += 1;
            }
            for (base, _, bytes) in committed {
                let (first_node, first_bytes) = *first_seen.entry(*base).or_insert((*node, bytes));
                self.check(Invariant::CommittedPrefixAgreed, first_bytes == bytes.as_slice(), None, || {
                    format!(
                        "{partition}: nodes {first_node} and {node} hold different batches at offset {base}, below the high watermark {high_watermark}"
                    )
                });
            }
        }
        self.check(
            Invariant::CommittedPrefixAgreed,
            complete > replicas.len() / 2,
            None,
            || {
                format!(
                    "{partition}: only {complete} of the replicas hold everything below the high watermark {high_watermark}"
                )
            },
        );
    }

    /// At the end of a cluster run: whether an acks=all write to `partition` was
    /// acknowledged within the deadline after every fault healed.
    pub fn check_write_after_heal(
        &mut self,
        partition: PartitionRef,
        outcome: &Result<(), String>,
    ) {
        self.check(Invariant::Liveness, outcome.is_ok(), None, || {
            format!(
                "{partition}: after healing, {}",
                outcome.as_ref().err().map_or("", String::as_str)
            )
        });
    }

    /// At the end of a group run: whether the group caught up after every fault healed.
    pub fn check_group_stabilized(&mut self, outcome: &Result<(), String>) {
        self.check(Invariant::GroupStabilizes, outcome.is_ok(), None, || {
            format!(
                "after healing, {}",
                outcome.as_ref().err().map_or("", String::as_str)
            )
        });
    }

    /// committed-offsets-monotonic: `offset` of `partition`, in an operation sent at
    /// `started`, is at least every commit acknowledged before then.
    fn check_not_behind_commits(
        &mut self,
        partition: i32,
        offset: i64,
        started: Micros,
        at: Micros,
        detail: impl FnOnce(i64) -> String,
    ) {
        let before = self.group.acknowledged_before(partition, started);
        self.check(
            Invariant::CommittedOffsetsMonotonic,
            before.is_none_or(|before| offset >= before),
            Some(at),
            || detail(before.unwrap_or_default()),
        );
    }

    fn observe_group(&mut self, event: &ClientEvent) {
        match event {
            ClientEvent::GroupAssigned {
                client,
                member,
                generation,
                partitions,
                at,
            } => {
                for partition in partitions {
                    let owner = self
                        .group
                        .owners
                        .entry((*generation, *partition))
                        .or_insert_with(|| member.clone())
                        .clone();
                    self.check(Invariant::OneOwnerPerGeneration, owner == *member, Some(*at), || {
                        format!(
                            "partition {partition} is assigned to member {owner} and to member {member} (client {client}) in generation {generation}"
                        )
                    });
                }
                self.group.assignments.push((*at, *generation));
            }
            ClientEvent::OffsetsCommitted {
                client,
                member,
                generation,
                offsets,
                outcome,
                started,
                at,
            } => {
                if *outcome != CommitOutcome::Acknowledged {
                    return;
                }
                // Assignments are recorded as they arrive; one recorded before this commit
                // was sent was known to the coordinator before it.
                let newest = self.group.newest_generation_before(*started);
                self.check(Invariant::FencedCommitsRejected, *generation >= newest, Some(*at), || {
                    format!(
                        "member {member} (client {client}) of generation {generation} had a commit of {offsets:?} acknowledged, sent after generation {newest} was assigned"
                    )
                });
                for (partition, offset) in offsets {
                    self.check_not_behind_commits(*partition, *offset, *started, *at, |before| {
                        format!(
                            "partition {partition}: member {member} (client {client}) had offset {offset} acknowledged, below {before} acknowledged before it was sent"
                        )
                    });
                    self.group
                        .acknowledged
                        .entry(*partition)
                        .or_default()
                        .push((*at, *offset));
                }
            }
            ClientEvent::OffsetsFetched {
                client,
                offsets,
                started,
                at,
            } => {
                for (partition, offset) in offsets {
                    self.check_not_behind_commits(*partition, *offset, *started, *at, |before| {
                        format!(
                            "partition {partition}: client {client} fetched committed offset {offset}, but {before} was acknowledged before it asked"
                        )
                    });
                }
            }
            _ => {}
        }
    }

    /// Node `node` restarted.
    pub fn node_restarted(&mut self, node: u8) {
        if self.core_high_watermark_per_lifetime {
            self.core_high_watermarks
                .retain(|partition, _| partition.node != node);
        }
    }

    fn check(
        &mut self,
        invariant: Invariant,
        ok: bool,
        at: Option<Micros>,
        detail: impl FnOnce() -> String,
    ) {
        *self.report.checks.entry(invariant).or_insert(0) += 1;
        if !ok {
            self.report.violations.push(Violation {
                invariant,
                at,
                detail: detail(),
            });
        }
    }

    /// Violations found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.report.violations
    }

    /// Notes that `value` is at `offset` of `partition` (seen by `by`), checking it against
    /// what was seen there before and where else the value was seen.
    fn observe_at(
        &mut self,
        partition: PartitionRef,
        offset: i64,
        value: &Value,
        by: String,
        at: Micros,
        invariant: Invariant,
    ) {
        let state = self.partitions.entry(partition).or_default();
        let previous = state.at_offset.get(&offset).cloned();
        let duplicate = value.as_ref().and_then(|value| {
            state
                .offset_of_value
                .get(value)
                .filter(|seen| **seen != offset)
                .copied()
        });
        if previous.is_none() {
            state.at_offset.insert(
                offset,
                Observed {
                    value: value.clone(),
                    by: by.clone(),
                },
            );
        }
        if let Some(value) = value {
            state.offset_of_value.entry(value.clone()).or_insert(offset);
        }
        let same = previous.as_ref().is_none_or(|seen| seen.value == *value);
        self.check(invariant, same, Some(at), || {
            let seen = previous.expect("checked: a previous observation differs");
            format!(
                "{partition} offset {offset}: {by} has {value:?}, but {} had {:?} there",
                seen.by, seen.value
            )
        });
        self.check(
            Invariant::NoDuplicates,
            duplicate.is_none(),
            Some(at),
            || {
                format!(
                    "{partition}: {value:?} is at offset {offset} ({by}) and also at offset {}",
                    duplicate.unwrap_or_default()
                )
            },
        );
    }

    /// Feeds one client event, in the order events happen.
    pub fn observe_client(&mut self, event: &ClientEvent) {
        match event {
            ClientEvent::ProduceStarted {
                op,
                partition,
                role,
                values,
                ..
            } => {
                for value in values {
                    self.writes.insert(
                        value.clone(),
                        WriteInfo {
                            partition: *partition,
                            acknowledged_at: None,
                        },
                    );
                }
                self.open_produces
                    .insert(*op, (*partition, *role, values.clone()));
            }
            ClientEvent::ProduceEnded {
                op, outcome, at, ..
            } => {
                let Some((partition, role, values)) = self.open_produces.remove(op) else {
                    return;
                };
                match outcome {
                    // In a cluster, acks=1 means only the leader held the batch: a failover
                    // may lose it (as in Kafka), so it promises nothing the checks can hold.
                    ProduceOutcome::Acknowledged { .. }
                        if self.offset_gaps_allowed && role == ClientRole::ProducerAcksLeader => {}
                    ProduceOutcome::Acknowledged { base_offset } => {
                        for (index, value) in values.iter().enumerate() {
                            let offset = base_offset + index as i64;
                            if let Some(write) = self.writes.get_mut(value) {
                                write.acknowledged_at = Some(offset);
                            }
                            self.observe_at(
                                partition,
                                offset,
                                &Some(value.clone()),
                                format!("the acknowledgement of produce op {op}"),
                                *at,
                                Invariant::AcknowledgedWritesSurvive,
                            );
                        }
                    }
                    ProduceOutcome::Refused { code, error } => {
                        let sequence_error = [
                            ErrorCode::OutOfOrderSequenceNumber,
                            ErrorCode::DuplicateSequenceNumber,
                            ErrorCode::InvalidProducerEpoch,
                            ErrorCode::UnknownProducerId,
                        ]
                        .iter()
                        .any(|refusal| refusal.code() == *code);
                        let ok = !(role == ClientRole::IdempotentProducer && sequence_error);
                        self.check(
                            Invariant::IdempotentSequencesAccepted,
                            ok,
                            Some(*at),
                            || format!("{partition}: idempotent produce op {op} refused: {error}"),
                        );
                    }
                    ProduceOutcome::Indeterminate { .. } => {}
                }
            }
            ClientEvent::Fetched {
                client,
                partition,
                fetch_offset,
                high_watermark,
                records,
                started,
                at,
            } => {
                self.observe_client_high_watermark(*partition, *started, *at, *high_watermark);
                let mut expected = *fetch_offset;
                for record in records {
                    let (offset, value) = (record.offset, &record.value);
                    self.check(Invariant::ReadsBelowHighWatermark, offset < *high_watermark, Some(*at), || {
                        format!(
                            "{partition}: client {client} read offset {offset} from a fetch reporting high watermark {high_watermark}"
                        )
                    });
                    let in_order =
                        offset == expected || (self.offset_gaps_allowed && offset > expected);
                    self.check(Invariant::ReadsInOffsetOrder, in_order, Some(*at), || {
                        format!(
                            "{partition}: client {client} fetched from {fetch_offset} and got offset {offset} where {expected} comes next"
                        )
                    });
                    expected = offset + 1;
                    let written_here = value
                        .as_ref()
                        .and_then(|value| self.writes.get(value))
                        .is_some_and(|write| write.partition == *partition);
                    self.check(Invariant::NoPhantomRecords, written_here, Some(*at), || {
                        format!(
                            "{partition}: client {client} read {value:?} at offset {offset}, which no client sent there"
                        )
                    });
                    self.observe_at(
                        *partition,
                        offset,
                        value,
                        format!("client {client}'s fetch"),
                        *at,
                        Invariant::ReadsSurvive,
                    );
                }
            }
            ClientEvent::FetchFailed {
                client,
                partition,
                fetch_offset,
                failure,
                at,
            } => match failure {
                FetchFailure::Broker { code } => {
                    let ok = *code != ErrorCode::OffsetOutOfRange.code();
                    self.check(Invariant::HighWatermarkMonotonic, ok, Some(*at), || {
                        format!(
                            "{partition}: client {client}'s position {fetch_offset}, below a high watermark it saw, is now out of range"
                        )
                    });
                }
                FetchFailure::Undecodable { error } => {
                    self.check(Invariant::NoPhantomRecords, false, Some(*at), || {
                        format!(
                            "{partition}: client {client}'s fetch from {fetch_offset} returned undecodable records: {error}"
                        )
                    });
                }
                FetchFailure::NoAnswer { .. } => {}
            },
            ClientEvent::GroupAssigned { .. }
            | ClientEvent::OffsetsCommitted { .. }
            | ClientEvent::OffsetsFetched { .. }
            | ClientEvent::GroupRead { .. } => self.observe_group(event),
        }
    }

    /// Real-time order: a fetch that started after another ended must not report a lower
    /// high watermark.
    fn observe_client_high_watermark(
        &mut self,
        partition: PartitionRef,
        started: Micros,
        ended: Micros,
        high_watermark: i64,
    ) {
        let state = self.partitions.entry(partition).or_default();
        let ended_before = state
            .client_high_watermarks
            .partition_point(|(end, _)| *end < started);
        let floor = ended_before
            .checked_sub(1)
            .map(|index| state.client_high_watermarks[index].1);
        let running_max = state
            .client_high_watermarks
            .last()
            .map_or(high_watermark, |(_, max)| (*max).max(high_watermark));
        state.client_high_watermarks.push((ended, running_max));
        self.check(
            Invariant::HighWatermarkMonotonic,
            floor.is_none_or(|floor| high_watermark >= floor),
            Some(ended),
            || {
                format!(
                    "{partition}: a fetch reported high watermark {high_watermark}, below the {} an earlier fetch reported",
                    floor.unwrap_or_default()
                )
            },
        );
    }

    /// Feeds one output of node `node`'s core.
    pub fn observe_core(&mut self, node: u8, output: &Output, at: Micros) {
        if let Output::Send {
            message:
                PeerMessage::Replication {
                    partition,
                    message: ReplicationMessage::Append { epoch, .. },
                },
            ..
        } = output
        {
            // Only a leader sends appends, so their senders name each epoch's leaders.
            let key = (partition.topic.clone(), partition.partition, *epoch);
            let leader = *self.leaders.entry(key).or_insert(node);
            self.check(
                Invariant::OneLeaderPerEpoch,
                leader == node,
                Some(at),
                || format!("{partition}: nodes {leader} and {node} both led epoch {epoch}"),
            );
            return;
        }
        let Output::Respond {
            response: Response::Fetch(results),
            ..
        } = output
        else {
            return;
        };
        for result in results {
            if result.error != ErrorCode::None {
                continue;
            }
            let partition = PartitionRef {
                node,
                partition: result.partition.partition,
            };
            let previous = self
                .core_high_watermarks
                .insert(partition, result.high_watermark);
            let ok = previous.is_none_or(|previous| result.high_watermark >= previous);
            if !ok {
                // Keep the highest seen, so one regression is reported once.
                self.core_high_watermarks
                    .insert(partition, previous.unwrap_or_default());
            }
            self.check(Invariant::HighWatermarkMonotonic, ok, Some(at), || {
                format!(
                    "{partition}: the core reported high watermark {} after {}",
                    result.high_watermark,
                    previous.unwrap_or_default()
                )
            });
        }
    }

    /// The final check, against every partition read back; consumes the checker.
    pub fn finish(
        mut self,
        finals: &BTreeMap<PartitionRef, FinalRead>,
        progress: Progress,
    ) -> CheckReport {
        for (partition, read) in finals {
            let log = match read {
                Ok(log) => log,
                Err(error) => {
                    self.check(Invariant::Liveness, false, None, || {
                        format!("{partition} could not be read back: {error}")
                    });
                    continue;
                }
            };
            self.check(Invariant::Liveness, true, None, String::new);
            self.check_final_log(*partition, log);
        }
        self.check(
            Invariant::Progress,
            progress.acknowledged >= MIN_ACKNOWLEDGED,
            None,
            || {
                format!(
                    "only {} batches acknowledged (at least {MIN_ACKNOWLEDGED} needed)",
                    progress.acknowledged
                )
            },
        );
        self.check(
            Invariant::Progress,
            progress.records_read >= MIN_RECORDS_READ,
            None,
            || {
                format!(
                    "only {} records read (at least {MIN_RECORDS_READ} needed)",
                    progress.records_read
                )
            },
        );
        self.check(
            Invariant::Progress,
            progress.faults_injected >= MIN_FAULTS_INJECTED,
            None,
            || {
                format!(
                    "only {} faults injected (at least {MIN_FAULTS_INJECTED} needed)",
                    progress.faults_injected
                )
            },
        );
        self.report
    }

    fn check_final_log(&mut self, partition: PartitionRef, log: &FinalLog) {
        let dense = if self.offset_gaps_allowed {
            log.log_start_offset == 0
                && log
                    .records
                    .windows(2)
                    .all(|pair| pair[0].offset < pair[1].offset)
                && log
                    .records
                    .last()
                    .is_none_or(|last| last.offset < log.high_watermark)
        } else {
            log.log_start_offset == 0
                && log.records.len() as i64 == log.high_watermark
                && log
                    .records
                    .iter()
                    .enumerate()
                    .all(|(index, record)| record.offset == index as i64)
        };
        self.check(Invariant::ReadsInOffsetOrder, dense, None, || {
            let offsets: Vec<i64> = log.records.iter().map(|record| record.offset).collect();
            format!(
                "{partition}: the final log (start {}, high watermark {}) is not dense from 0: offsets {}",
                log.log_start_offset,
                log.high_watermark,
                describe_offsets(&offsets)
            )
        });
        let mut final_values: BTreeMap<i64, &Value> = BTreeMap::new();
        let mut final_offset_of: BTreeMap<&str, i64> = BTreeMap::new();
        for record in &log.records {
            final_values.insert(record.offset, &record.value);
            let written_here = record
                .value
                .as_ref()
                .and_then(|value| self.writes.get(value))
                .is_some_and(|write| write.partition == partition);
            self.check(Invariant::NoPhantomRecords, written_here, None, || {
                format!(
                    "{partition}: the final log has {:?} at offset {}, which no client sent there",
                    record.value, record.offset
                )
            });
            if let Some(value) = &record.value {
                let first = *final_offset_of
                    .entry(value.as_str())
                    .or_insert(record.offset);
                self.check(
                    Invariant::NoDuplicates,
                    first == record.offset,
                    None,
                    || {
                        format!(
                            "{partition}: the final log has {value:?} at offsets {first} and {}",
                            record.offset
                        )
                    },
                );
            }
        }
        let observed: Vec<(i64, Observed)> = self
            .partitions
            .get(&partition)
            .map(|state| {
                state
                    .at_offset
                    .iter()
                    .map(|(o, seen)| (*o, seen.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (offset, seen) in observed {
            let acknowledged = seen
                .value
                .as_ref()
                .and_then(|value| self.writes.get(value))
                .is_some_and(|write| write.acknowledged_at == Some(offset));
            let invariant = if acknowledged {
                Invariant::AcknowledgedWritesSurvive
            } else {
                Invariant::ReadsSurvive
            };
            let found = final_values.get(&offset).copied();
            self.check(invariant, found == Some(&seen.value), None, || {
                format!(
                    "{partition} offset {offset}: {} had {:?}, the final log has {}",
                    seen.by,
                    seen.value,
                    found.map_or("nothing".to_string(), |value| format!("{value:?}"))
                )
            });
        }
    }
}

/// Offsets as ranges: "0..=41, 45..=60".
fn describe_offsets(offsets: &[i64]) -> String {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &offset in offsets {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == offset => *end = offset,
            _ => ranges.push((offset, offset)),
        }
    }
    let text: Vec<String> = ranges
        .iter()
        .map(|(start, end)| format!("{start}..={end}"))
        .collect();
    if text.is_empty() {
        "none".into()
    } else {
        text.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PartitionRef = PartitionRef {
        node: 1,
        partition: 0,
    };

    fn started(op: u64, values: &[&str]) -> ClientEvent {
        ClientEvent::ProduceStarted {
            op,
            client: 0,
            partition: P,
            role: ClientRole::ProducerAcksAll,
            values: values.iter().map(|v| v.to_string()).collect(),
            idempotence: None,
            at: 0,
        }
    }

    fn acked(op: u64, base_offset: i64) -> ClientEvent {
        ClientEvent::ProduceEnded {
            op,
            attempts: 1,
            outcome: ProduceOutcome::Acknowledged { base_offset },
            at: 10,
        }
    }

    fn record(offset: i64, value: &str) -> ReadRecord {
        ReadRecord {
            offset,
            value: Some(value.to_string()),
        }
    }

    fn final_log(values: &[&str]) -> BTreeMap<PartitionRef, FinalRead> {
        let records: Vec<ReadRecord> = values
            .iter()
            .enumerate()
            .map(|(offset, value)| record(offset as i64, value))
            .collect();
        BTreeMap::from([(
            P,
            Ok(FinalLog {
                log_start_offset: 0,
                high_watermark: records.len() as i64,
                records,
            }),
        )])
    }

    fn progress() -> Progress {
        Progress {
            acknowledged: 100,
            records_read: 100,
            faults_injected: 1,
        }
    }

    fn broken(report: &CheckReport) -> Vec<Invariant> {
        report.violations.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let mut checker = Checker::new();
        checker.observe_client(&started(1, &["a", "b"]));
        checker.observe_client(&acked(1, 0));
        checker.observe_client(&ClientEvent::Fetched {
            client: 1,
            partition: P,
            fetch_offset: 0,
            high_watermark: 2,
            records: vec![record(0, "a"), record(1, "b")],
            started: 20,
            at: 30,
        });
        let report = checker.finish(&final_log(&["a", "b"]), progress());
        assert!(report.passed(), "{:?}", report.violations);
        assert_eq!(report.invariants_held(), Invariant::ALL.len());
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let mut checker = Checker::new();
        checker.observe_client(&started(1, &["a"]));
        checker.observe_client(&acked(1, 0));
        checker.observe_client(&started(2, &["b"]));
        checker.observe_client(&acked(2, 1));
        let report = checker.finish(&final_log(&["a"]), progress());
        assert_eq!(broken(&report), vec![Invariant::AcknowledgedWritesSurvive]);
    }

    #[test]
    fn a_read_above_the_high_watermark_later_lost_is_caught() {
        let mut checker = Checker::new();
        checker.observe_client(&started(1, &["a"]));
        checker.observe_client(&ClientEvent::Fetched {
            client: 1,
            partition: P,
            fetch_offset: 0,
            high_watermark: 0,
            records: vec![record(0, "a")],
            started: 20,
            at: 30,
        });
        let report = checker.finish(&final_log(&[]), progress());
        assert_eq!(
            broken(&report),
            vec![Invariant::ReadsBelowHighWatermark, Invariant::ReadsSurvive]
        );
    }

    #[test]
    fn gaps_duplicates_phantoms_and_regressions_are_caught() {
        let mut checker = Checker::new();
        checker.observe_client(&started(1, &["a", "b"]));
        checker.observe_client(&ClientEvent::Fetched {
            client: 1,
            partition: P,
            fetch_offset: 0,
            high_watermark: 5,
            records: vec![record(0, "a"), record(2, "a"), record(3, "zz")],
            started: 20,
            at: 30,
        });
        checker.observe_client(&ClientEvent::Fetched {
            client: 1,
            partition: P,
            fetch_offset: 4,
            high_watermark: 4,
            records: vec![],
            started: 40,
            at: 50,
        });
        let violations = broken(&checker.finish(&BTreeMap::new(), Progress::default()));
        for invariant in [
            Invariant::ReadsInOffsetOrder,
            Invariant::NoDuplicates,
            Invariant::NoPhantomRecords,
            Invariant::HighWatermarkMonotonic,
            Invariant::Progress,
        ] {
            assert!(
                violations.contains(&invariant),
                "{invariant} not caught: {violations:?}"
            );
        }
    }
}
