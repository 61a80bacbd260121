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
//! - **committed-prefix-agreed** (clusters): after every event, replicas agree on the
//!   committed prefix: a batch a replica holds below a high watermark it is known to agree
//!   with (a leader's own announcement; a follower's match with a leader, up to what was
//!   announced by that leader's epoch) is the same batch, at the same offsets, on every
//!   replica that commits it, and committed batches never overlap (see the `prefix`
//!   module); and at the end, every replica's batches below the final high watermark are
//!   byte-for-byte the same batches at the same offsets, and a majority of replicas holds
//!   all of them.
//! - **epoch-monotonic** (clusters, after every event): the leader epoch and vote a node
//!   persists for a partition never go backwards, across its restarts too: a later persist
//!   names a higher epoch, or the same epoch and the same vote (or a first vote). A state
//!   counts once its write returned (`TraceEvent::ReplicaStatesPersisted`), not when the
//!   core asked for it: a crash or a failed write before that leaves the disk at the state
//!   before, and the node acted on neither (its sends wait for the write).
//! - **high-watermark-majority-durable** (clusters, after every event): when a leader
//!   announces a high watermark above any announced before for that partition, enough of
//!   its followers have reported that offset durable to it (in this epoch, or an earlier
//!   one it also led) to make a majority with the leader. Followers' reports are seen as
//!   they are sent, so the check never blames a leader for a report it could not have had.
//! - **one-owner-per-generation** (groups): within a generation of the consumer group, no
//!   partition is assigned to two members.
//! - **fenced-commits-rejected** (groups): an offset commit naming a generation older than
//!   one some member had already been given its assignment in is never acknowledged (a
//!   zombie's commit is refused), and an acknowledged commit comes from the generation that
//!   owns each of its partitions: the member committing was assigned the partition in the
//!   generation it names.
//! - **expired-member-fenced** (groups): a heartbeat naming a generation older than one some
//!   member had already been given its assignment in is never acknowledged: a member whose
//!   session ended (paused, cut off, or it missed the rebalance) is out of the group, and
//!   (with fenced-commits-rejected) neither its heartbeats nor its commits are accepted.
//! - **consumer-never-backwards** (every run with consumers): within one *assignment* (a
//!   plain consumer's life, until it starts over after OFFSET_OUT_OF_RANGE; a group
//!   member's (member, generation, partition) from one SyncGroup to the next), each read
//!   starts at or after the offset the previous one ended at, and ends after every record
//!   it returned.
//! - **consumer-no-skips** (every run with consumers, at the end): over every range an
//!   assignment moved its position across (a read's fetch offset to its next offset, and a
//!   jump ahead between two reads), the consumer was given every record the final log holds
//!   there. What counts as a record is the final log's say: it holds the data records below
//!   the final high watermark, so the offsets of control batches (leader-change and
//!   transaction markers), of aborted transactions' records (none on the consumers' topic)
//!   and of compacted records (none: no topic is compacted) are legitimate gaps.
//! - **group-consumes-acknowledged** (groups, at the end, once the group stabilized): every
//!   acknowledged record of the final log was read by some member of the group.
//! - **committed-offsets-monotonic** (groups): an acknowledged commit of a partition never
//!   names a lower offset than one acknowledged before it was sent, and an OffsetFetch never
//!   returns less than what was acknowledged before it was sent (no acknowledged commit is
//!   lost, across coordinator failovers included). The workload never resets offsets.
//! - **group-stabilizes** (groups): once faults heal and producers stop, the group settles
//!   and commits every partition up to its high watermark within the deadline: consumption
//!   continues from the committed offsets.
//! - **group-owned-after-heal** (groups, at the end): from the heal (every fault healed,
//!   paused members resumed, crashed members back), within a session timeout + a rebalance
//!   timeout + a heartbeat interval + twice the members' longest retry backoff (the
//!   harness's `OWNED_AFTER_HEAL_MS`), some generation assigns every partition of the topic
//!   to a member whose heartbeat in that generation, sent after the heal, was accepted: a
//!   live member owns each partition.
//! - **expired-member-loses-partitions** (groups, at the end): a member paused longer than
//!   its session timeout (judged only when no node or network fault was in force from a
//!   session before the pause to its end, since a coordinator that moved may start
//!   sessions afresh) never has a heartbeat or commit, sent after it resumed, accepted for
//!   the generation it held when paused; and every partition it held then is assigned in a
//!   later generation to another member, or to itself only after it resumed and rejoined.
//! - **aborted-reads** (transactions; Jepsen's G1a): no record of an aborted transaction
//!   is ever read as committed: not by a read_committed consumer, not in the final
//!   read_committed log. A transaction is aborted for sure once its abort was acknowledged,
//!   or at the end if its client never asked to commit it (crashed, fenced, expired).
//! - **read-committed-isolation** (transactions): a read_committed fetch returns only
//!   records below the last stable offset it reports (itself at most the high watermark),
//!   and never a record of a transaction whose commit had not been requested by then (an
//!   open transaction's data).
//! - **transactions-atomic** (transactions): a transaction's records become visible all
//!   together or not at all: at the end, a transaction with any record in the final
//!   read_committed log has there every record it wrote (in every partition); and an input
//!   offset a copier reads back as committed was sent in a transaction whose commit was
//!   requested (offsets are not visible without their transaction's commit).
//! - **read-committed-no-skips** (transactions): a read_committed consumer never goes
//!   backwards (each fetch starts where the previous one ended) and never skips a committed
//!   record: what it was given from each fetch is exactly the final read_committed log over
//!   that range (gaps only at control batches and aborted records).
//! - **copied-exactly-once** (transactions): at the end, the copiers' committed output holds
//!   each input record exactly once, and nothing else.
//! - **transactions-settle** (transactions): once faults heal and producers stop, the
//!   copiers finish the input (the group's committed offsets reach the input's end) and no
//!   transaction stays open (every output partition's last stable offset reaches its high
//!   watermark) within the deadline.
//! - **progress**: the run acknowledged at least [`MIN_ACKNOWLEDGED`] batches, read at least
//!   [`MIN_RECORDS_READ`] records and injected at least one fault, so an idle run cannot pass.

mod prefix;

use crate::history::{
    split_transactional_value, ClientEvent, CommitOutcome, FetchFailure, Micros, PartitionRef,
    ProduceOutcome, ReadRecord, Value,
};
use crate::scenario::ClientRole;
use crate::simfs::{HeldBatches, StoredBatch};
use myelin_core::api::{ErrorCode, Output, PeerMessage, Response, StorageCommand};
use myelin_core::metadata::TopicPartition;
use myelin_core::replication::{AppendOutcome, ReplicaState, ReplicationMessage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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
    EpochMonotonic,
    HighWatermarkMajorityDurable,
    OneOwnerPerGeneration,
    FencedCommitsRejected,
    CommittedOffsetsMonotonic,
    GroupStabilizes,
    AbortedReads,
    ReadCommittedIsolation,
    TransactionsAtomic,
    ReadCommittedNoSkips,
    CopiedExactlyOnce,
    TransactionsSettle,
    ConsumerNeverBackwards,
    ConsumerNoSkips,
    GroupConsumesAcknowledged,
    ExpiredMemberFenced,
    GroupOwnedAfterHeal,
    ExpiredMemberLosesPartitions,
}

impl Invariant {
    pub const ALL: [Invariant; 30] = [
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
        Invariant::EpochMonotonic,
        Invariant::HighWatermarkMajorityDurable,
        Invariant::OneOwnerPerGeneration,
        Invariant::FencedCommitsRejected,
        Invariant::CommittedOffsetsMonotonic,
        Invariant::GroupStabilizes,
        Invariant::AbortedReads,
        Invariant::ReadCommittedIsolation,
        Invariant::TransactionsAtomic,
        Invariant::ReadCommittedNoSkips,
        Invariant::CopiedExactlyOnce,
        Invariant::TransactionsSettle,
        Invariant::ConsumerNeverBackwards,
        Invariant::ConsumerNoSkips,
        Invariant::GroupConsumesAcknowledged,
        Invariant::ExpiredMemberFenced,
        Invariant::GroupOwnedAfterHeal,
        Invariant::ExpiredMemberLosesPartitions,
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
            Invariant::EpochMonotonic => "epoch-monotonic",
            Invariant::HighWatermarkMajorityDurable => "high-watermark-majority-durable",
            Invariant::OneOwnerPerGeneration => "one-owner-per-generation",
            Invariant::FencedCommitsRejected => "fenced-commits-rejected",
            Invariant::CommittedOffsetsMonotonic => "committed-offsets-monotonic",
            Invariant::GroupStabilizes => "group-stabilizes",
            Invariant::AbortedReads => "aborted-reads",
            Invariant::ReadCommittedIsolation => "read-committed-isolation",
            Invariant::TransactionsAtomic => "transactions-atomic",
            Invariant::ReadCommittedNoSkips => "read-committed-no-skips",
            Invariant::CopiedExactlyOnce => "copied-exactly-once",
            Invariant::TransactionsSettle => "transactions-settle",
            Invariant::ConsumerNeverBackwards => "consumer-never-backwards",
            Invariant::ConsumerNoSkips => "consumer-no-skips",
            Invariant::GroupConsumesAcknowledged => "group-consumes-acknowledged",
            Invariant::ExpiredMemberFenced => "expired-member-fenced",
            Invariant::GroupOwnedAfterHeal => "group-owned-after-heal",
            Invariant::ExpiredMemberLosesPartitions => "expired-member-loses-partitions",
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
    /// Group commits sent naming a generation older than one already assigned (a zombie's
    /// commit): the window fenced-commits-rejected judges.
    #[serde(default)]
    pub zombie_commits: u64,
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
    /// Every assignment, in order: (when, client, member, generation, partitions).
    synced: Vec<(Micros, u8, String, i32, Vec<i32>)>,
    /// Every acknowledged heartbeat and commit, in order: (member, generation, started,
    /// answered, what it was).
    accepted: Vec<(String, i32, Micros, Micros, &'static str)>,
    /// Member pauses, in order: (client, from, to); `to` is `None` while it lasts.
    pauses: Vec<(u8, Micros, Option<Micros>)>,
    /// Node-level faults, in order: (from, until) they could have been in force.
    node_faults: Vec<(Micros, Micros)>,
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

/// One assignment of a consumer: (partition, client, member, generation, the client's
/// assignment number). A plain consumer is member "" and generation 0; its assignment
/// number moves on when it starts over after OFFSET_OUT_OF_RANGE. A group member's moves
/// on with every assignment it receives (a new generation, or the same one again).
type AssignmentKey = (PartitionRef, u8, String, i32, u32);

/// What one assignment read, in order.
#[derive(Debug, Default)]
struct AssignmentReads {
    /// Where the next read must start (the previous read's next offset).
    next: Option<i64>,
    /// (from, to, offsets got): the consumer moved its position from `from` to `to` and
    /// was given these records on the way. A jump ahead between reads is a read that got
    /// nothing.
    reads: Vec<(i64, i64, Vec<i64>)>,
}

/// What the consumer checkers remember.
#[derive(Debug, Default)]
struct ConsumerHistory {
    assignments: BTreeMap<AssignmentKey, AssignmentReads>,
    /// Each client's current assignment number.
    assignment_numbers: BTreeMap<u8, u32>,
    /// Offsets the group's members read, per partition.
    group_read: BTreeMap<PartitionRef, BTreeSet<i64>>,
    /// The run had a consumer group that stabilized (so it must have read everything).
    group_stabilized: bool,
}

/// What the transaction checkers know of one transaction.
#[derive(Debug, Default)]
struct TxnInfo {
    /// EndTxn(commit) was sent (so the transaction may have committed).
    commit_requested: bool,
    abort_requested: bool,
    committed: bool,
    aborted: bool,
    /// (partition, offset, value) of every record whose produce was acknowledged.
    acknowledged: Vec<(i32, i64, String)>,
    /// (input partition, offset) pairs sent in its TxnOffsetCommits (answered or not).
    offsets: Vec<(i32, i64)>,
}

impl TxnInfo {
    /// Aborted for sure: its abort was acknowledged, or (at the end of the run) its commit
    /// was never requested.
    fn aborted_for_sure(&self, at_the_end: bool) -> bool {
        self.aborted || (at_the_end && !self.commit_requested)
    }
}

/// One fetch of a consumer of the output topic, kept for the final checks.
#[derive(Debug, Clone)]
struct OutputRead {
    client: u8,
    partition: i32,
    read_committed: bool,
    fetch_offset: i64,
    next_offset: i64,
    records: Vec<ReadRecord>,
}

/// What the transaction checkers remember.
#[derive(Debug, Default)]
struct TxnHistory {
    txns: BTreeMap<String, TxnInfo>,
    reads: Vec<OutputRead>,
    /// Where each consumer's next fetch of a partition must start.
    positions: BTreeMap<(u8, i32), i64>,
    committed: u64,
    aborted: u64,
}

/// The output topic's partitions as read back at the end, for the transaction checkers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLogs {
    /// Everything up to the high watermark (read_uncommitted).
    pub uncommitted: FinalRead,
    /// Everything delivered read_committed up to the last stable offset.
    pub committed: FinalRead,
}

/// One replica of a partition: (node, topic, partition).
type ReplicaKey = (u8, String, i32);

/// The checkers' state over one run. Feed it with `observe_client` and `observe_core`, in
/// the order events happen, then call `finish`.
#[derive(Debug, Default)]
pub struct Checker {
    writes: BTreeMap<String, WriteInfo>,
    /// Produce ops still open: (partition, role, values).
    open_produces: BTreeMap<u64, (PartitionRef, ClientRole, Vec<String>)>,
    partitions: BTreeMap<PartitionRef, PartitionState>,
    /// Highest high watermark each node's core reported, per partition.
    core_high_watermarks: BTreeMap<(PartitionRef, String), i64>,
    /// The node that sent replication appends in each (partition, leader epoch).
    leaders: BTreeMap<(String, i32, i32), u8>,
    /// The replica state each node last persisted, per (node, topic, partition).
    persisted_states: BTreeMap<ReplicaKey, ReplicaState>,
    /// The durable end each follower reported, per (topic, partition, epoch, follower).
    durable_reports: BTreeMap<(String, i32, i32, u8), i64>,
    /// The replicas seen sending or receiving appends, per (topic, partition).
    replicas: BTreeMap<(String, i32), BTreeSet<u8>>,
    /// The highest high watermark any leader announced, per (topic, partition).
    announced_high_watermarks: BTreeMap<(String, i32), i64>,
    /// Every replica's log, for committed-prefix-agreed after every event (clusters).
    prefixes: prefix::PrefixTracker,
    /// A replicated cluster: offsets may have gaps (leader-change control batches, which
    /// consumers skip; offsets must still increase), and acks=1 is not durable.
    offset_gaps_allowed: bool,
    /// In a cluster, the high watermark a node's core reports is monotonic within the node's
    /// lifetime (a restarted replica learns what is committed from the leader again).
    core_high_watermark_per_lifetime: bool,
    group: GroupHistory,
    consumers: ConsumerHistory,
    txn: TxnHistory,
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
        self.consumers.group_stabilized = outcome.is_ok();
        self.check(Invariant::GroupStabilizes, outcome.is_ok(), None, || {
            format!(
                "after healing, {}",
                outcome.as_ref().err().map_or("", String::as_str)
            )
        });
    }

    /// A group member's task was paused at `at`.
    pub fn member_paused(&mut self, client: u8, at: Micros) {
        self.group.pauses.push((client, at, None));
    }

    /// A paused group member's task resumed at `at`.
    pub fn member_resumed(&mut self, client: u8, at: Micros) {
        if let Some(pause) = self
            .group
            .pauses
            .iter_mut()
            .rev()
            .find(|(paused, _, to)| *paused == client && to.is_none())
        {
            pause.2 = Some(at);
        }
    }

    /// A fault that is not aimed at one client (a node's, the network's) may have been in
    /// force from `from` until `until`: the coordinator may have moved, and a new one
    /// starts its members' sessions afresh.
    pub fn node_fault(&mut self, from: Micros, until: Micros) {
        self.group.node_faults.push((from, until));
    }

    /// group-owned-after-heal (at the end of a group run): within `within` of `healed` (every
    /// fault healed, every member resumed and back from its crash), some generation assigns
    /// every one of the topic's `partitions` to a member whose heartbeat in that generation,
    /// sent after `healed`, was accepted by then: a live member owns each partition.
    pub fn check_group_owned_after_heal(
        &mut self,
        partitions: i32,
        healed: Micros,
        within: Micros,
    ) {
        let deadline = healed + within;
        let group = &self.group;
        let generations: BTreeSet<i32> = group
            .synced
            .iter()
            .map(|(_, _, _, generation, _)| *generation)
            .collect();
        // (generation, owners without such a heartbeat, partitions nobody was assigned)
        let mut closest: Option<(i32, Vec<String>, Vec<i32>)> = None;
        let mut owned = false;
        for generation in generations {
            let unassigned: Vec<i32> = (0..partitions)
                .filter(|partition| !group.owners.contains_key(&(generation, *partition)))
                .collect();
            let owners: BTreeSet<&String> = (0..partitions)
                .filter_map(|partition| group.owners.get(&(generation, partition)))
                .collect();
            let silent: Vec<String> = owners
                .into_iter()
                .filter(|owner| {
                    !group.accepted.iter().any(|(member, g, started, at, what)| {
                        member == *owner
                            && *g == generation
                            && *what == "heartbeat"
                            && *started >= healed
                            && *at <= deadline
                    })
                })
                .cloned()
                .collect();
            if unassigned.is_empty() && silent.is_empty() {
                owned = true;
                break;
            }
            closest = Some((generation, silent, unassigned));
        }
        self.check(Invariant::GroupOwnedAfterHeal, owned, None, || {
            let newest = closest.map_or("no generation was assigned".to_string(), |(generation, silent, unassigned)| {
                format!(
                    "in the newest, generation {generation}, partitions {unassigned:?} were not assigned and owners {silent:?} had no heartbeat accepted"
                )
            });
            format!(
                "no generation owned all {partitions} partitions by live members within {} ms of the heal at {}.{:06} s: {newest}",
                within / 1000,
                healed / 1_000_000,
                healed % 1_000_000
            )
        });
    }

    /// expired-member-loses-partitions (at the end of a group run): a member paused for
    /// longer than `session` (with no node or network fault in force from `session` before
    /// the pause to its end, so the coordinator that timed its session stayed put) has
    /// neither a heartbeat nor a commit accepted, sent after it resumed, for the generation
    /// it held when paused; and every partition it held then is assigned in a later
    /// generation, to another member or to itself after it resumed (rejoined).
    pub fn check_expired_members(&mut self, session: Micros) {
        let pauses = self.group.pauses.clone();
        for (client, from, to) in pauses {
            let Some(to) = to else { continue };
            if to - from <= session
                || self
                    .group
                    .node_faults
                    .iter()
                    .any(|(start, until)| *start <= to && *until + session >= from)
            {
                continue;
            }
            let Some((_, _, member, generation, held)) = self
                .group
                .synced
                .iter()
                .rev()
                .find(|(at, synced, ..)| *synced == client && *at < from)
                .cloned()
            else {
                continue;
            };
            let accepted: Vec<(Micros, &'static str)> = self
                .group
                .accepted
                .iter()
                .filter(|(m, g, started, ..)| *m == member && *g == generation && *started >= to)
                .map(|(_, _, _, at, what)| (*at, *what))
                .collect();
            for (at, what) in accepted {
                self.check(Invariant::ExpiredMemberLosesPartitions, false, Some(at), || {
                    format!(
                        "member {member} (client {client}), paused for {} ms (over its {} ms session) while it held generation {generation}, had a {what} in generation {generation} accepted after it resumed",
                        (to - from) / 1000,
                        session / 1000
                    )
                });
            }
            for partition in held {
                let reassigned = self.group.synced.iter().any(|(at, _, m, g, partitions)| {
                    *g > generation && partitions.contains(&partition) && (*m != member || *at > to)
                });
                self.check(Invariant::ExpiredMemberLosesPartitions, reassigned, None, || {
                    format!(
                        "member {member} (client {client}) held partition {partition} in generation {generation} and was paused for {} ms (over its {} ms session), but no later generation assigned the partition to another member (or to it after it resumed)",
                        (to - from) / 1000,
                        session / 1000
                    )
                });
            }
        }
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
                self.group.synced.push((
                    *at,
                    *client,
                    member.clone(),
                    *generation,
                    partitions.clone(),
                ));
                *self
                    .consumers
                    .assignment_numbers
                    .entry(*client)
                    .or_insert(0) += 1;
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
                if *generation < self.group.newest_generation_before(*started) {
                    self.report.zombie_commits += 1;
                }
                if *outcome != CommitOutcome::Acknowledged {
                    return;
                }
                self.group
                    .accepted
                    .push((member.clone(), *generation, *started, *at, "commit"));
                // Assignments are recorded as they arrive; one recorded before this commit
                // was sent was known to the coordinator before it.
                let newest = self.group.newest_generation_before(*started);
                self.check(Invariant::FencedCommitsRejected, *generation >= newest, Some(*at), || {
                    format!(
                        "member {member} (client {client}) of generation {generation} had a commit of {offsets:?} acknowledged, sent after generation {newest} was assigned"
                    )
                });
                for (partition, offset) in offsets {
                    // The generation that owns the partition: the commit's, and in it, this
                    // member.
                    let owner = self.group.owners.get(&(*generation, *partition)).cloned();
                    self.check(Invariant::FencedCommitsRejected, owner.as_ref() == Some(member), Some(*at), || {
                        format!(
                            "member {member} (client {client}) of generation {generation} had a commit of partition {partition} acknowledged, which {} in generation {generation}",
                            owner.map_or("nobody was assigned".to_string(), |owner| format!("member {owner} owns"))
                        )
                    });
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
            ClientEvent::Heartbeat {
                client,
                member,
                generation,
                outcome: CommitOutcome::Acknowledged,
                started,
                at,
            } => {
                self.group
                    .accepted
                    .push((member.clone(), *generation, *started, *at, "heartbeat"));
                let newest = self.group.newest_generation_before(*started);
                self.check(Invariant::ExpiredMemberFenced, *generation >= newest, Some(*at), || {
                    format!(
                        "member {member} (client {client}) of generation {generation} had a heartbeat acknowledged, sent after generation {newest} was assigned: its session in generation {generation} was over"
                    )
                });
            }
            ClientEvent::GroupRead {
                client,
                member,
                generation,
                partition,
                fetch_offset,
                next_offset,
                high_watermark,
                records,
                at,
            } => {
                let who = format!("member {member} (client {client}, generation {generation})");
                self.observe_records(
                    *partition,
                    &who,
                    *fetch_offset,
                    *high_watermark,
                    records,
                    *at,
                );
                let number = self
                    .consumers
                    .assignment_numbers
                    .get(client)
                    .copied()
                    .unwrap_or(0);
                let key = (*partition, *client, member.clone(), *generation, number);
                let offsets: Vec<i64> = records.iter().map(|record| record.offset).collect();
                self.consumers
                    .group_read
                    .entry(*partition)
                    .or_default()
                    .extend(offsets.iter().copied());
                self.observe_consumer_read(key, &who, *fetch_offset, *next_offset, offsets, *at);
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

    fn observe_transaction(&mut self, event: &ClientEvent) {
        match event {
            ClientEvent::TxnProduced {
                txn,
                partition,
                values,
                outcome,
                ..
            } => {
                let info = self.txn.txns.entry(txn.clone()).or_default();
                if let ProduceOutcome::Acknowledged { base_offset } = outcome {
                    for (index, value) in values.iter().enumerate() {
                        info.acknowledged.push((
                            *partition,
                            base_offset + index as i64,
                            value.clone(),
                        ));
                    }
                }
            }
            ClientEvent::TxnOffsetsSent { txn, offsets, .. } => {
                let info = self.txn.txns.entry(txn.clone()).or_default();
                info.offsets.extend(offsets.iter().copied());
            }
            ClientEvent::TxnEndRequested { txn, commit, .. } => {
                let info = self.txn.txns.entry(txn.clone()).or_default();
                if *commit {
                    info.commit_requested = true;
                } else {
                    info.abort_requested = true;
                }
            }
            ClientEvent::TxnEnded {
                txn,
                commit,
                outcome,
                ..
            } => {
                let info = self.txn.txns.entry(txn.clone()).or_default();
                if *outcome == CommitOutcome::Acknowledged {
                    if *commit {
                        info.committed = true;
                        self.txn.committed += 1;
                    } else {
                        info.aborted = true;
                        self.txn.aborted += 1;
                    }
                }
            }
            ClientEvent::TxnStarted { txn, .. } => {
                self.txn.txns.entry(txn.clone()).or_default();
            }
            ClientEvent::TxnAbandoned { .. } => {}
            ClientEvent::OutputFetched {
                client,
                partition,
                read_committed,
                fetch_offset,
                next_offset,
                high_watermark,
                last_stable_offset,
                records,
                at,
                ..
            } => {
                let (client, partition, at) = (*client, *partition, *at);
                let who = format!(
                    "client {client} ({}) on output partition {partition}",
                    if *read_committed {
                        "read_committed"
                    } else {
                        "read_uncommitted"
                    }
                );
                if *read_committed {
                    let expected = self.txn.positions.get(&(client, partition)).copied();
                    let ok = expected.is_none_or(|expected| expected == *fetch_offset)
                        && next_offset >= fetch_offset;
                    self.check(Invariant::ReadCommittedNoSkips, ok, Some(at), || {
                        format!(
                            "{who} fetched from {fetch_offset} to {next_offset}, but its previous fetch ended at {}",
                            expected.unwrap_or_default()
                        )
                    });
                    self.txn.positions.insert((client, partition), *next_offset);
                    let stable = *last_stable_offset <= *high_watermark;
                    self.check(Invariant::ReadCommittedIsolation, stable, Some(at), || {
                        format!("{who}: last stable offset {last_stable_offset} above the high watermark {high_watermark}")
                    });
                }
                let limit = if *read_committed {
                    *last_stable_offset
                } else {
                    *high_watermark
                };
                let mut previous = fetch_offset - 1;
                for record in records {
                    let offset = record.offset;
                    let below = offset < limit;
                    let invariant = if *read_committed {
                        Invariant::ReadCommittedIsolation
                    } else {
                        Invariant::ReadsBelowHighWatermark
                    };
                    self.check(invariant, below, Some(at), || {
                        format!("{who} read offset {offset}, at or above {limit} (high watermark {high_watermark}, last stable offset {last_stable_offset})")
                    });
                    let in_order = offset > previous && offset < *next_offset;
                    self.check(Invariant::ReadsInOffsetOrder, in_order, Some(at), || {
                        format!("{who} fetched from {fetch_offset} to {next_offset} and got offset {offset} after {previous}")
                    });
                    previous = offset;
                    let txn = record
                        .value
                        .as_deref()
                        .and_then(split_transactional_value)
                        .map(|(_, txn)| txn);
                    let status = txn
                        .and_then(|txn| self.txn.txns.get(txn))
                        .map(|info| (info.aborted_for_sure(false), info.commit_requested));
                    self.check(
                        Invariant::NoPhantomRecords,
                        status.is_some(),
                        Some(at),
                        || {
                            format!(
                                "{who} read {:?} at offset {offset}, which no transaction wrote",
                                record.value
                            )
                        },
                    );
                    let (Some(txn), Some((aborted, requested))) = (txn, status) else {
                        continue;
                    };
                    if !*read_committed {
                        continue;
                    }
                    self.check(Invariant::AbortedReads, !aborted, Some(at), || {
                        format!("{who} read {:?} at offset {offset}, of transaction {txn}, whose abort was acknowledged", record.value)
                    });
                    self.check(Invariant::ReadCommittedIsolation, aborted || requested, Some(at), || {
                        format!("{who} read {:?} at offset {offset}, of transaction {txn}, whose commit had not been requested (an open transaction)", record.value)
                    });
                }
                self.txn.reads.push(OutputRead {
                    client,
                    partition,
                    read_committed: *read_committed,
                    fetch_offset: *fetch_offset,
                    next_offset: *next_offset,
                    records: records.clone(),
                });
            }
            ClientEvent::CopierOffsetsFetched {
                client,
                offsets,
                at,
                ..
            } => {
                for (partition, offset) in offsets {
                    if *offset < 0 {
                        continue;
                    }
                    let sent_by_committing = self.txn.txns.values().any(|info| {
                        info.commit_requested && info.offsets.contains(&(*partition, *offset))
                    });
                    self.check(Invariant::TransactionsAtomic, sent_by_committing, Some(*at), || {
                        format!(
                            "copier client {client} read committed offset {offset} of input partition {partition}, which no transaction whose commit was requested sent"
                        )
                    });
                }
            }
            _ => {}
        }
    }

    /// The final transaction checks, against the output topic read back in full (both
    /// isolation levels, by output partition), the input topic's final logs (empty when
    /// there is no copier: nothing to copy), and whether the copiers finished and every
    /// transaction ended after the faults healed.
    pub fn check_transactions(
        &mut self,
        outputs: &BTreeMap<i32, OutputLogs>,
        inputs: &BTreeMap<PartitionRef, FinalRead>,
        settled: &Result<(), String>,
    ) {
        self.check(Invariant::TransactionsSettle, settled.is_ok(), None, || {
            format!(
                "after healing, {}",
                settled.as_ref().err().map_or("", String::as_str)
            )
        });
        let mut logs: BTreeMap<i32, (&FinalLog, &FinalLog)> = BTreeMap::new();
        for (partition, output) in outputs {
            match (&output.uncommitted, &output.committed) {
                (Ok(uncommitted), Ok(committed)) => {
                    self.check(Invariant::Liveness, true, None, String::new);
                    logs.insert(*partition, (uncommitted, committed));
                }
                (Err(error), _) | (_, Err(error)) => {
                    self.check(Invariant::Liveness, false, None, || {
                        format!("output partition {partition} could not be read back: {error}")
                    });
                }
            }
        }
        // Every record of every transaction, as written and as committed.
        let mut written: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        let mut visible: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        let mut copied: BTreeMap<String, u32> = BTreeMap::new();
        for (partition, (uncommitted, committed)) in &logs {
            let partition = *partition;
            let all: BTreeMap<i64, &Value> = uncommitted
                .records
                .iter()
                .map(|record| (record.offset, &record.value))
                .collect();
            for record in &uncommitted.records {
                let txn = record.value.as_deref().and_then(split_transactional_value);
                let known = txn.is_some_and(|(_, txn)| self.txn.txns.contains_key(txn));
                self.check(Invariant::NoPhantomRecords, known, None, || {
                    format!(
                        "output partition {partition}: the final log has {:?} at offset {}, which no transaction wrote",
                        record.value, record.offset
                    )
                });
                if let Some((_, txn)) = txn {
                    written
                        .entry(txn.to_string())
                        .or_default()
                        .push((partition, record.offset));
                }
            }
            for record in &committed.records {
                let same = all.get(&record.offset) == Some(&&record.value);
                self.check(Invariant::ReadsSurvive, same, None, || {
                    format!(
                        "output partition {partition}: the final read_committed log has {:?} at offset {}, the read_uncommitted one does not",
                        record.value, record.offset
                    )
                });
                let Some((payload, txn)) =
                    record.value.as_deref().and_then(split_transactional_value)
                else {
                    continue;
                };
                visible
                    .entry(txn.to_string())
                    .or_default()
                    .push((partition, record.offset));
                let aborted = self
                    .txn
                    .txns
                    .get(txn)
                    .is_some_and(|info| info.aborted_for_sure(true));
                self.check(Invariant::AbortedReads, !aborted, None, || {
                    format!(
                        "output partition {partition}: the final read_committed log has {:?} at offset {}, of transaction {txn}, which was aborted",
                        record.value, record.offset
                    )
                });
                if txn_is_copier(txn) {
                    *copied.entry(payload.to_string()).or_insert(0) += 1;
                }
            }
        }
        for (txn, visible_records) in &visible {
            let all = written.get(txn).cloned().unwrap_or_default();
            let whole = visible_records.len() == all.len();
            self.check(Invariant::TransactionsAtomic, whole, None, || {
                format!(
                    "transaction {txn}: {} of its {} written record(s) are visible read_committed: {visible_records:?} of {all:?}",
                    visible_records.len(),
                    all.len()
                )
            });
        }
        let committed_records: Vec<(String, i32, i64, String)> = self
            .txn
            .txns
            .iter()
            .filter(|(_, info)| info.committed)
            .flat_map(|(txn, info)| {
                info.acknowledged
                    .iter()
                    .map(move |(p, o, v)| (txn.clone(), *p, *o, v.clone()))
            })
            .collect();
        for (txn, partition, offset, value) in committed_records {
            let found = logs.get(&partition).map(|(_, committed)| {
                committed.records.iter().any(|record| {
                    record.offset == offset && record.value.as_deref() == Some(&value)
                })
            });
            // A partition that could not be read back is reported as such above.
            self.check(
                Invariant::AcknowledgedWritesSurvive,
                found != Some(false),
                None,
                || {
                    format!(
                        "transaction {txn} committed, but its record {value:?} acknowledged at output partition {partition} offset {offset} is not in the final read_committed log"
                    )
                },
            );
        }
        // What consumers read, against the final logs.
        let reads = std::mem::take(&mut self.txn.reads);
        for read in &reads {
            let Some((uncommitted, committed)) = logs.get(&read.partition) else {
                continue;
            };
            let who = format!(
                "client {} ({}) on output partition {}",
                read.client,
                if read.read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
                read.partition
            );
            let log = if read.read_committed {
                committed
            } else {
                uncommitted
            };
            for record in &read.records {
                let found = log
                    .records
                    .iter()
                    .find(|final_record| final_record.offset == record.offset);
                let same = found.is_some_and(|found| found.value == record.value);
                self.check(Invariant::ReadsSurvive, same, None, || {
                    format!(
                        "{who} read {:?} at offset {}, the final log has {:?}",
                        record.value,
                        record.offset,
                        found.map(|found| &found.value)
                    )
                });
            }
            if read.read_committed && read.next_offset <= log.high_watermark {
                let expected: Vec<i64> = log
                    .records
                    .iter()
                    .filter(|record| {
                        record.offset >= read.fetch_offset && record.offset < read.next_offset
                    })
                    .map(|record| record.offset)
                    .collect();
                let got: Vec<i64> = read.records.iter().map(|record| record.offset).collect();
                let skipped: Vec<i64> = expected
                    .iter()
                    .filter(|offset| !got.contains(offset))
                    .copied()
                    .collect();
                self.check(Invariant::ReadCommittedNoSkips, skipped.is_empty(), None, || {
                    format!(
                        "{who} fetched from {} to {} and skipped the committed records at offsets {}",
                        read.fetch_offset,
                        read.next_offset,
                        describe_offsets(&skipped)
                    )
                });
            }
        }
        // The copiers' output: each input record exactly once.
        let mut input: BTreeMap<String, u32> = BTreeMap::new();
        for log in inputs.values().flatten() {
            for value in log.records.iter().filter_map(|record| record.value.clone()) {
                *input.entry(value).or_insert(0) += 1;
            }
        }
        let mut missing = Vec::new();
        for value in input.keys() {
            let count = copied.get(value).copied().unwrap_or(0);
            if count == 0 {
                missing.push(value.clone());
            }
            self.check(Invariant::CopiedExactlyOnce, count <= 1, None, || {
                format!("input record {value:?} was copied {count} times")
            });
        }
        self.check(
            Invariant::CopiedExactlyOnce,
            missing.is_empty(),
            None,
            || {
                format!(
                    "{} input record(s) never copied, e.g. {:?}",
                    missing.len(),
                    missing.iter().take(5).collect::<Vec<_>>()
                )
            },
        );
        for (payload, count) in &copied {
            self.check(
                Invariant::CopiedExactlyOnce,
                input.contains_key(payload),
                None,
                || format!("the copiers' output has {payload:?} ({count} times), which is not in the input"),
            );
        }
        let (committed, aborted) = (self.txn.committed, self.txn.aborted);
        self.check(Invariant::Progress, committed > 0 && aborted > 0, None, || {
            format!("{committed} transaction(s) committed and {aborted} aborted (at least one of each needed)")
        });
    }

    /// consumer-no-skips and group-consumes-acknowledged, against the final logs.
    fn check_consumer_skips(&mut self, finals: &BTreeMap<PartitionRef, FinalRead>) {
        let assignments = std::mem::take(&mut self.consumers.assignments);
        for ((partition, client, member, generation, _), reads) in &assignments {
            let Some(Ok(log)) = finals.get(partition) else {
                continue;
            };
            let who = if member.is_empty() {
                format!("client {client}")
            } else {
                format!("member {member} (client {client}, generation {generation})")
            };
            for (from, to, got) in &reads.reads {
                let start = log.records.partition_point(|record| record.offset < *from);
                let skipped: Vec<i64> = log.records[start..]
                    .iter()
                    .take_while(|record| record.offset < *to)
                    .map(|record| record.offset)
                    .filter(|offset| got.binary_search(offset).is_err())
                    .collect();
                self.check(Invariant::ConsumerNoSkips, skipped.is_empty(), None, || {
                    format!(
                        "{partition}: {who} moved from {from} to {to} without reading the committed records at offsets {}",
                        describe_offsets(&skipped)
                    )
                });
            }
        }
        if !self.consumers.group_stabilized {
            return;
        }
        let mut unread: BTreeMap<PartitionRef, Vec<i64>> = BTreeMap::new();
        for write in self.writes.values() {
            let Some(offset) = write.acknowledged_at else {
                continue;
            };
            let in_final_log = finals.get(&write.partition).is_some_and(|read| {
                read.as_ref().is_ok_and(|log| {
                    log.records
                        .binary_search_by_key(&offset, |record| record.offset)
                        .is_ok()
                })
            });
            // A lost write is acknowledged-writes-survive's to report.
            if !in_final_log {
                continue;
            }
            let read = self
                .consumers
                .group_read
                .get(&write.partition)
                .is_some_and(|offsets| offsets.contains(&offset));
            *self
                .report
                .checks
                .entry(Invariant::GroupConsumesAcknowledged)
                .or_insert(0) += 1;
            if !read {
                unread.entry(write.partition).or_default().push(offset);
            }
        }
        for (partition, mut offsets) in unread {
            offsets.sort_unstable();
            self.check(Invariant::GroupConsumesAcknowledged, false, None, || {
                format!(
                    "{partition}: the group stabilized, but no member ever read the acknowledged records at offsets {}",
                    describe_offsets(&offsets)
                )
            });
        }
    }

    /// committed-prefix-agreed: `compared` batches were compared with the committed ones,
    /// and these disagreed.
    fn prefix_checked(&mut self, compared: u64, found: Vec<prefix::Disagreement>, at: Micros) {
        *self
            .report
            .checks
            .entry(Invariant::CommittedPrefixAgreed)
            .or_insert(0) += compared;
        for (partition, offset, first, node, what) in found {
            self.check(Invariant::CommittedPrefixAgreed, false, Some(at), || {
                format!(
                    "{partition}: below the high watermark, node {first} committed and node {node} holds different batches at offset {offset}: {what}"
                )
            });
        }
    }

    /// Node `node` crashed; its disk kept `kept` (clusters: the replicas' logs for
    /// committed-prefix-agreed).
    pub fn node_crashed(&mut self, node: u8, kept: HeldBatches) {
        if self.offset_gaps_allowed {
            self.prefixes.replica_crashed(node, kept);
        }
    }

    /// The leader of `topic`'s `partition` as last seen: the node that sent appends in the
    /// newest leader epoch (clusters).
    pub fn current_leader(&self, topic: &str, partition: i32) -> Option<u8> {
        self.leaders
            .range(
                (topic.to_string(), partition, i32::MIN)..=(topic.to_string(), partition, i32::MAX),
            )
            .next_back()
            .map(|(_, node)| *node)
    }

    /// Whether the checker follows replicas' logs (and wants `node_crashed`).
    pub fn follows_replicas(&self) -> bool {
        self.offset_gaps_allowed
    }

    /// Node `node` restarted.
    pub fn node_restarted(&mut self, node: u8) {
        if self.core_high_watermark_per_lifetime {
            self.core_high_watermarks
                .retain(|(partition, _), _| partition.node != node);
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
                next_offset,
                high_watermark,
                records,
                started,
                at,
            } => {
                self.observe_client_high_watermark(*partition, *started, *at, *high_watermark);
                let who = format!("client {client}");
                self.observe_records(
                    *partition,
                    &who,
                    *fetch_offset,
                    *high_watermark,
                    records,
                    *at,
                );
                let number = self
                    .consumers
                    .assignment_numbers
                    .get(client)
                    .copied()
                    .unwrap_or(0);
                let key = (*partition, *client, String::new(), 0, number);
                let offsets = records.iter().map(|record| record.offset).collect();
                self.observe_consumer_read(key, &who, *fetch_offset, *next_offset, offsets, *at);
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
                    if !ok {
                        // The consumer starts over from 0: a new assignment.
                        *self
                            .consumers
                            .assignment_numbers
                            .entry(*client)
                            .or_insert(0) += 1;
                    }
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
            | ClientEvent::Heartbeat { .. }
            | ClientEvent::GroupRead { .. } => self.observe_group(event),
            ClientEvent::TxnStarted { .. }
            | ClientEvent::TxnProduced { .. }
            | ClientEvent::TxnOffsetsSent { .. }
            | ClientEvent::TxnEndRequested { .. }
            | ClientEvent::TxnEnded { .. }
            | ClientEvent::TxnAbandoned { .. }
            | ClientEvent::OutputFetched { .. }
            | ClientEvent::CopierOffsetsFetched { .. } => self.observe_transaction(event),
        }
    }

    /// Checks the records one fetch of `partition` from `fetch_offset` returned (by `who`).
    fn observe_records(
        &mut self,
        partition: PartitionRef,
        who: &str,
        fetch_offset: i64,
        high_watermark: i64,
        records: &[ReadRecord],
        at: Micros,
    ) {
        let mut expected = fetch_offset;
        for record in records {
            let (offset, value) = (record.offset, &record.value);
            self.check(Invariant::ReadsBelowHighWatermark, offset < high_watermark, Some(at), || {
                format!(
                    "{partition}: {who} read offset {offset} from a fetch reporting high watermark {high_watermark}"
                )
            });
            let in_order = offset == expected || (self.offset_gaps_allowed && offset > expected);
            self.check(Invariant::ReadsInOffsetOrder, in_order, Some(at), || {
                format!(
                    "{partition}: {who} fetched from {fetch_offset} and got offset {offset} where {expected} comes next"
                )
            });
            expected = offset + 1;
            let written_here = value
                .as_ref()
                .and_then(|value| self.writes.get(value))
                .is_some_and(|write| write.partition == partition);
            self.check(Invariant::NoPhantomRecords, written_here, Some(at), || {
                format!(
                    "{partition}: {who} read {value:?} at offset {offset}, which no client sent there"
                )
            });
            self.observe_at(
                partition,
                offset,
                value,
                format!("{who}'s fetch"),
                at,
                Invariant::ReadsSurvive,
            );
        }
    }

    /// consumer-never-backwards: an assignment's reads follow on from each other; the
    /// ranges they cover are kept for consumer-no-skips.
    fn observe_consumer_read(
        &mut self,
        key: AssignmentKey,
        who: &str,
        fetch_offset: i64,
        next_offset: i64,
        offsets: Vec<i64>,
        at: Micros,
    ) {
        let partition = key.0;
        let reads = self.consumers.assignments.entry(key).or_default();
        let previous = reads.next;
        if let Some(previous) = previous.filter(|previous| fetch_offset > *previous) {
            reads.reads.push((previous, fetch_offset, Vec::new()));
        }
        let forward = previous.is_none_or(|previous| fetch_offset >= previous)
            && next_offset >= fetch_offset
            && offsets.last().is_none_or(|last| *last < next_offset);
        reads.next = Some(next_offset.max(previous.unwrap_or(next_offset)));
        reads.reads.push((fetch_offset, next_offset, offsets));
        self.check(Invariant::ConsumerNeverBackwards, forward, Some(at), || {
            format!(
                "{partition}: {who} read from {fetch_offset} to {next_offset}, after its previous read of the same assignment ended at {}",
                previous.unwrap_or_default()
            )
        });
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
        match output {
            Output::Send {
                to,
                message:
                    PeerMessage::Replication {
                        partition,
                        message:
                            ReplicationMessage::Append {
                                epoch,
                                high_watermark,
                                ..
                            },
                    },
            } => {
                // Only a leader sends appends, so their senders name each epoch's leaders.
                let key = (partition.topic.clone(), partition.partition, *epoch);
                let leader = *self.leaders.entry(key).or_insert(node);
                self.check(
                    Invariant::OneLeaderPerEpoch,
                    leader == node,
                    Some(at),
                    || format!("{partition}: nodes {leader} and {node} both led epoch {epoch}"),
                );
                let to = u8::try_from(*to).unwrap_or(u8::MAX);
                self.observe_announced_high_watermark(
                    partition,
                    *epoch,
                    (node, to),
                    *high_watermark,
                    at,
                );
                let mut found = Vec::new();
                let compared = self.prefixes.leader_announced(
                    node,
                    partition,
                    *epoch,
                    *high_watermark,
                    &mut found,
                );
                self.prefix_checked(compared, found, at);
                return;
            }
            Output::Send {
                message:
                    PeerMessage::Replication {
                        partition,
                        message:
                            ReplicationMessage::AppendResponse {
                                epoch,
                                outcome:
                                    AppendOutcome::Matched {
                                        durable_end_offset,
                                        matched_end_offset,
                                        ..
                                    },
                            },
                    },
                ..
            } => {
                let key = (partition.topic.clone(), partition.partition, *epoch, node);
                let reported = self
                    .durable_reports
                    .entry(key)
                    .or_insert(*durable_end_offset);
                *reported = (*reported).max(*durable_end_offset);
                let mut found = Vec::new();
                let compared = self.prefixes.follower_matched(
                    node,
                    partition,
                    *epoch,
                    *matched_end_offset,
                    &mut found,
                );
                self.prefix_checked(compared, found, at);
                return;
            }
            Output::Storage(command) if self.offset_gaps_allowed => {
                match command {
                    StorageCommand::Append {
                        partition,
                        batch,
                        bytes,
                        ..
                    } => self.prefixes.appended(node, partition, batch, bytes),
                    StorageCommand::Truncate {
                        partition,
                        truncation,
                    } => self.prefixes.truncated(node, partition, truncation),
                    StorageCommand::DeleteSegment {
                        partition,
                        base_offset,
                    } => self.prefixes.segment_deleted(node, partition, *base_offset),
                    StorageCommand::CreatePartition { partition, .. }
                    | StorageCommand::DeletePartition { partition }
                    | StorageCommand::RestartLog { partition, .. } => {
                        self.prefixes.partition_reset(node, partition)
                    }
                    StorageCommand::RollSegment { .. }
                    | StorageCommand::PersistReplicaState { .. }
                    | StorageCommand::PersistMetadata(_)
                    | StorageCommand::PersistDeletedBelow { .. } => {}
                }
                return;
            }
            _ => {}
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
            // Keyed by topic too: transaction scenarios fetch two topics.
            let key = (partition, result.partition.topic.clone());
            let previous = self
                .core_high_watermarks
                .insert(key.clone(), result.high_watermark);
            let ok = previous.is_none_or(|previous| result.high_watermark >= previous);
            if !ok {
                // Keep the highest seen, so one regression is reported once.
                self.core_high_watermarks
                    .insert(key, previous.unwrap_or_default());
            }
            self.check(Invariant::HighWatermarkMonotonic, ok, Some(at), || {
                format!(
                    "{partition} ({}): the core reported high watermark {} after {}",
                    result.partition.topic,
                    result.high_watermark,
                    previous.unwrap_or_default()
                )
            });
        }
    }

    /// A node made `state` durable for `partition` (its storage's write returned): epochs
    /// never go back, and a vote, once cast in an epoch, stays.
    pub fn observe_persisted_state(
        &mut self,
        node: u8,
        partition: &TopicPartition,
        state: ReplicaState,
        at: Micros,
    ) {
        let key = (node, partition.topic.clone(), partition.partition);
        let previous = self.persisted_states.insert(key, state);
        let ok = previous.is_none_or(|previous| {
            state.epoch > previous.epoch
                || (state.epoch == previous.epoch
                    && (previous.voted_for.is_none() || previous.voted_for == state.voted_for))
        });
        self.check(Invariant::EpochMonotonic, ok, Some(at), || {
            format!(
                "{partition}: node {node} persisted {state:?} after {:?}",
                previous.unwrap_or_default()
            )
        });
    }

    /// The leader of `epoch` sent a follower an append announcing `high_watermark`: if
    /// that raises the partition's high watermark, a majority must hold it durably.
    fn observe_announced_high_watermark(
        &mut self,
        partition: &TopicPartition,
        epoch: i32,
        (leader, follower): (u8, u8),
        high_watermark: i64,
        at: Micros,
    ) {
        let key = (partition.topic.clone(), partition.partition);
        let replicas = self.replicas.entry(key.clone()).or_default();
        replicas.insert(leader);
        replicas.insert(follower);
        let announced = self.announced_high_watermarks.entry(key).or_insert(0);
        if high_watermark <= *announced {
            return;
        }
        *announced = high_watermark;
        // A majority of the replicas, the leader counting for itself.
        let followers_needed = replicas.len() / 2;
        // A leader may announce, leading again, a high watermark it reached in an earlier
        // epoch it led: reports to it in any epoch it led up to this one count.
        let topic = &partition.topic;
        let led_by_leader = |reported_epoch: i32| {
            self.leaders
                .get(&(topic.clone(), partition.partition, reported_epoch))
                .is_some_and(|node| *node == leader)
        };
        let durable = replicas
            .iter()
            .filter(|replica| **replica != leader)
            .filter(|follower| {
                (0..=epoch).any(|reported_epoch| {
                    led_by_leader(reported_epoch)
                        && self
                            .durable_reports
                            .get(&(
                                topic.clone(),
                                partition.partition,
                                reported_epoch,
                                **follower,
                            ))
                            .is_some_and(|durable_end| *durable_end >= high_watermark)
                })
            })
            .count();
        self.check(
            Invariant::HighWatermarkMajorityDurable,
            durable >= followers_needed,
            Some(at),
            || {
                format!(
                    "{partition}: the leader of epoch {epoch} announced high watermark {high_watermark}, but only {durable} of its followers (of {followers_needed} needed) had reported it durable in an epoch it led"
                )
            },
        );
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
        self.check_consumer_skips(finals);
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

/// Whether `txn` is a copier's (see `history`: copiers' transactions are `xc...`).
fn txn_is_copier(txn: &str) -> bool {
    txn.starts_with("xc")
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
            next_offset: 2,
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
            next_offset: 1,
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

    /// Node `node` making replica state `(epoch, vote)` of `events-0` durable at `at`.
    fn persisted(
        checker: &mut Checker,
        node: u8,
        (epoch, voted_for): (i32, Option<i32>),
        at: Micros,
    ) {
        let state = ReplicaState { epoch, voted_for };
        checker.observe_persisted_state(node, &TopicPartition::new("events", 0), state, at);
    }

    fn append(to: i32, epoch: i32, high_watermark: i64) -> Output {
        Output::Send {
            to,
            message: PeerMessage::Replication {
                partition: TopicPartition::new("events", 0),
                message: ReplicationMessage::Append {
                    epoch,
                    prev_offset: 0,
                    prev_epoch: 0,
                    records: myelin_core::replication::Records::Inline(Default::default()),
                    high_watermark,
                    log_start_offset: myelin_core::replication::LOG_START_NOT_MOVED,
                },
            },
        }
    }

    fn durable(to: i32, epoch: i32, durable_end_offset: i64) -> Output {
        Output::Send {
            to,
            message: PeerMessage::Replication {
                partition: TopicPartition::new("events", 0),
                message: ReplicationMessage::AppendResponse {
                    epoch,
                    outcome: AppendOutcome::Matched {
                        matched_end_offset: durable_end_offset,
                        durable_end_offset,
                        log_start_offset: myelin_core::replication::LOG_START_NOT_MOVED,
                    },
                },
            },
        }
    }

    fn group_read(
        client: u8,
        generation: i32,
        fetch_offset: i64,
        next_offset: i64,
        records: Vec<ReadRecord>,
    ) -> ClientEvent {
        ClientEvent::GroupRead {
            client,
            member: format!("m{client}"),
            generation,
            partition: P,
            fetch_offset,
            next_offset,
            high_watermark: 4,
            records,
            at: 40,
        }
    }

    fn assigned(client: u8, generation: i32) -> ClientEvent {
        ClientEvent::GroupAssigned {
            client,
            member: format!("m{client}"),
            generation,
            partitions: vec![0],
            at: 35,
        }
    }

    /// A clean group history over the final log a, b, c, d (all acknowledged): member 1
    /// reads 0..2 in generation 1, member 2 reads 2..4 in generation 2.
    fn clean_group() -> Checker {
        let mut checker = Checker::new();
        checker.observe_client(&started(1, &["a", "b", "c", "d"]));
        checker.observe_client(&acked(1, 0));
        checker.observe_client(&assigned(1, 1));
        checker.observe_client(&group_read(1, 1, 0, 1, vec![record(0, "a")]));
        checker.observe_client(&group_read(1, 1, 1, 2, vec![record(1, "b")]));
        checker.observe_client(&assigned(2, 2));
        checker.observe_client(&group_read(
            2,
            2,
            2,
            4,
            vec![record(2, "c"), record(3, "d")],
        ));
        checker.check_group_stabilized(&Ok(()));
        checker
    }

    #[test]
    fn a_consumer_that_skips_or_goes_back_within_an_assignment_is_caught() {
        let finals = final_log(&["a", "b", "c", "d"]);
        let report = clean_group().finish(&finals, progress());
        assert!(report.passed(), "{:?}", report.violations);
        assert!(report.checks[&Invariant::ConsumerNoSkips] >= 3);
        // Member 1 reads 0..2 but was given only offset 0: b is skipped inside a read.
        let mut checker = clean_group();
        checker.observe_client(&assigned(1, 3));
        checker.observe_client(&group_read(1, 3, 0, 2, vec![record(0, "a")]));
        assert_eq!(
            broken(&checker.finish(&finals, progress())),
            vec![Invariant::ConsumerNoSkips]
        );
        // Member 1 jumps from 2 to 3 between two reads: c is skipped between reads.
        let mut checker = clean_group();
        checker.observe_client(&assigned(1, 3));
        checker.observe_client(&group_read(
            1,
            3,
            0,
            2,
            vec![record(0, "a"), record(1, "b")],
        ));
        checker.observe_client(&group_read(1, 3, 3, 4, vec![record(3, "d")]));
        assert_eq!(
            broken(&checker.finish(&finals, progress())),
            vec![Invariant::ConsumerNoSkips]
        );
        // Member 1 reads 0..2, then from 1 again in the same assignment: backwards.
        let mut checker = clean_group();
        checker.observe_client(&assigned(1, 3));
        checker.observe_client(&group_read(
            1,
            3,
            0,
            2,
            vec![record(0, "a"), record(1, "b")],
        ));
        checker.observe_client(&group_read(1, 3, 1, 2, vec![record(1, "b")]));
        assert_eq!(
            broken(&checker.finish(&finals, progress())),
            vec![Invariant::ConsumerNeverBackwards]
        );
        // A plain consumer that skips offset 1 between fetches.
        let mut checker = Checker::new();
        checker.observe_client(&started(1, &["a", "b", "c", "d"]));
        checker.observe_client(&acked(1, 0));
        for (from, to, got) in [
            (0, 1, vec![record(0, "a")]),
            (2, 4, vec![record(2, "c"), record(3, "d")]),
        ] {
            checker.observe_client(&ClientEvent::Fetched {
                client: 7,
                partition: P,
                fetch_offset: from,
                next_offset: to,
                high_watermark: 4,
                records: got,
                started: 20,
                at: 30,
            });
        }
        assert_eq!(
            broken(&checker.finish(&finals, progress())),
            vec![Invariant::ConsumerNoSkips]
        );
    }

    fn commit(client: u8, generation: i32, partition: i32, started: Micros) -> ClientEvent {
        ClientEvent::OffsetsCommitted {
            client,
            member: format!("m{client}"),
            generation,
            offsets: vec![(partition, 2)],
            outcome: CommitOutcome::Acknowledged,
            started,
            at: started + 5,
        }
    }

    #[test]
    fn a_commit_outside_the_owning_generation_is_caught() {
        // Member 1 owns partition 0 in generation 1 and commits it: fine.
        let mut checker = Checker::new();
        checker.observe_client(&assigned(1, 1));
        checker.observe_client(&commit(1, 1, 0, 50));
        assert!(checker.report.violations.is_empty());
        // Member 2 commits partition 0 in generation 1, where member 1 owns it; then member
        // 1 commits partition 1, which nobody was assigned in generation 1.
        checker.observe_client(&commit(2, 1, 0, 60));
        checker.observe_client(&commit(1, 1, 1, 70));
        // Generation 2 is assigned to member 2; member 1's commit of generation 1 after
        // that (a zombie) is acknowledged.
        checker.observe_client(&assigned(2, 2));
        checker.observe_client(&commit(1, 1, 0, 80));
        assert_eq!(
            broken(&checker.report),
            vec![Invariant::FencedCommitsRejected; 3]
        );
        // Only the last commit was sent after a newer generation was assigned.
        assert_eq!(checker.report.zombie_commits, 1);
    }

    #[test]
    fn a_heartbeat_accepted_after_the_session_moved_on_is_caught() {
        let heartbeat = |generation, started| ClientEvent::Heartbeat {
            client: 1,
            member: "m1".into(),
            generation,
            outcome: CommitOutcome::Acknowledged,
            started,
            at: started + 5,
        };
        let mut checker = Checker::new();
        checker.observe_client(&assigned(1, 1));
        checker.observe_client(&heartbeat(1, 50));
        assert!(checker.report.violations.is_empty());
        // Member 1 was paused past its session; generation 2 went to member 2 without it.
        checker.observe_client(&assigned(2, 2));
        checker.observe_client(&heartbeat(1, 60));
        assert_eq!(
            broken(&checker.report),
            vec![Invariant::ExpiredMemberFenced]
        );
    }

    fn assigned_at(client: u8, generation: i32, partitions: Vec<i32>, at: Micros) -> ClientEvent {
        ClientEvent::GroupAssigned {
            client,
            member: format!("m{client}"),
            generation,
            partitions,
            at,
        }
    }

    fn heartbeat_of(client: u8, generation: i32, started: Micros) -> ClientEvent {
        ClientEvent::Heartbeat {
            client,
            member: format!("m{client}"),
            generation,
            outcome: CommitOutcome::Acknowledged,
            started,
            at: started + 5,
        }
    }

    #[test]
    fn a_group_left_unowned_after_the_heal_is_caught() {
        // Two partitions, healed at 1000, deadline 500 later.
        let owned_by = |events: &[ClientEvent]| {
            let mut checker = Checker::new();
            for event in events {
                checker.observe_client(event);
            }
            checker.check_group_owned_after_heal(2, 1_000, 500);
            broken(&checker.report)
        };
        // Generation 2 deals both partitions; both owners heartbeat in it after the heal.
        let good = [
            assigned_at(1, 2, vec![0], 900),
            assigned_at(2, 2, vec![1], 900),
            heartbeat_of(1, 2, 1_100),
            heartbeat_of(2, 2, 1_200),
        ];
        assert!(owned_by(&good).is_empty());
        // Partition 1 is never assigned.
        assert_eq!(
            owned_by(&[assigned_at(1, 2, vec![0], 900), heartbeat_of(1, 2, 1_100)]),
            vec![Invariant::GroupOwnedAfterHeal]
        );
        // Member 2's only heartbeat was sent before the heal (it may have died since).
        assert_eq!(
            owned_by(&[
                assigned_at(1, 2, vec![0], 900),
                assigned_at(2, 2, vec![1], 900),
                heartbeat_of(1, 2, 1_100),
                heartbeat_of(2, 2, 950),
            ]),
            vec![Invariant::GroupOwnedAfterHeal]
        );
        // Member 2's heartbeat came too late.
        assert_eq!(
            owned_by(&[
                assigned_at(1, 2, vec![0], 900),
                assigned_at(2, 2, vec![1], 900),
                heartbeat_of(1, 2, 1_100),
                heartbeat_of(2, 2, 1_600),
            ]),
            vec![Invariant::GroupOwnedAfterHeal]
        );
        // Heartbeats after the heal, but each in a generation where the other partition is
        // not owned.
        assert_eq!(
            owned_by(&[
                assigned_at(1, 2, vec![0], 900),
                heartbeat_of(1, 2, 1_100),
                assigned_at(2, 3, vec![1], 1_150),
                heartbeat_of(2, 3, 1_200),
            ]),
            vec![Invariant::GroupOwnedAfterHeal]
        );
    }

    #[test]
    fn an_expired_member_that_keeps_its_partitions_is_caught() {
        // Member 1 holds partition 0 in generation 1 and is paused from 100 to 400, past
        // its 200 session.
        let expired = |events: &[ClientEvent], node_fault: Option<(Micros, Micros)>| {
            let mut checker = Checker::new();
            checker.observe_client(&assigned_at(1, 1, vec![0], 50));
            checker.observe_client(&assigned_at(2, 1, vec![1], 50));
            checker.member_paused(1, 100);
            checker.member_resumed(1, 400);
            if let Some((from, until)) = node_fault {
                checker.node_fault(from, until);
            }
            for event in events {
                checker.observe_client(event);
            }
            checker.check_expired_members(200);
            broken(&checker.report)
        };
        // The group moves on: generation 2 deals partition 0 to member 2; member 1's
        // heartbeat in generation 1 is refused, it rejoins and gets partition 0 back in
        // generation 3.
        let mut refused = heartbeat_of(1, 1, 410);
        if let ClientEvent::Heartbeat { outcome, .. } = &mut refused {
            *outcome = CommitOutcome::Refused { code: 22 };
        }
        let moved_on = [
            assigned_at(2, 2, vec![0, 1], 350),
            refused,
            assigned_at(1, 3, vec![0], 500),
        ];
        assert!(expired(&moved_on, None).is_empty());
        // Member 1's heartbeat and commit in generation 1 are accepted after it resumed,
        // and no later generation deals partition 0 to anyone else.
        assert_eq!(
            expired(&[heartbeat_of(1, 1, 410), commit(1, 1, 0, 420)], None),
            vec![Invariant::ExpiredMemberLosesPartitions; 3]
        );
        // Only member 1 itself is dealt partition 0 later, by a generation synced before it
        // resumed (so it never rejoined: it is not the member it was).
        assert_eq!(
            expired(&[assigned_at(1, 2, vec![0], 300)], None),
            vec![Invariant::ExpiredMemberLosesPartitions]
        );
        // A node fault around the pause (the coordinator may have moved, restarting the
        // session): the member is not held to it.
        assert!(expired(&[heartbeat_of(1, 1, 410)], Some((150, 250))).is_empty());
    }

    #[test]
    fn an_acknowledged_record_the_group_never_read_is_caught() {
        let mut checker = Checker::new();
        checker.observe_client(&started(1, &["a", "b", "c", "d"]));
        checker.observe_client(&acked(1, 0));
        checker.observe_client(&assigned(1, 1));
        checker.observe_client(&group_read(
            1,
            1,
            0,
            2,
            vec![record(0, "a"), record(1, "b")],
        ));
        checker.check_group_stabilized(&Ok(()));
        assert_eq!(
            broken(&checker.finish(&final_log(&["a", "b", "c", "d"]), progress())),
            vec![Invariant::GroupConsumesAcknowledged]
        );
    }

    /// A batch of one record `value` appended at `base` in `leader_epoch`.
    fn stored(base: i64, leader_epoch: i32, position: u32, value: &str) -> Output {
        let bytes = myelin_client::records::encode_batch(
            &[myelin_client::NewRecord::new(value.to_string()).with_timestamp(0)],
            &myelin_client::BatchOptions::default(),
        )
        .unwrap();
        Output::Storage(StorageCommand::Append {
            partition: TopicPartition::new("events", 0),
            batch: myelin_core::api::AppendedBatch {
                segment_base_offset: 0,
                position,
                base_offset: base,
                last_offset: base,
                max_timestamp: 0,
                leader_epoch,
            },
            bytes,
            sequence: 0,
        })
    }

    #[test]
    fn replicas_disagreeing_below_the_high_watermark_are_caught_as_it_happens() {
        let mut checker = Checker::new();
        checker.for_cluster();
        // Node 1 leads epoch 1 and writes a at 0 and b at 1; node 2 copies a, then holds c
        // (a stale tail of an old leader) at 1, matched only to offset 1.
        checker.observe_core(1, &stored(0, 1, 0, "a"), 1);
        checker.observe_core(1, &stored(1, 1, 100, "b"), 2);
        checker.observe_core(2, &stored(0, 1, 0, "a"), 3);
        checker.observe_core(2, &stored(1, 0, 100, "c"), 4);
        checker.observe_core(2, &durable(1, 1, 2), 5);
        checker.observe_core(3, &durable(1, 1, 2), 5);
        checker.observe_core(1, &append(2, 1, 1), 6);
        checker.observe_core(2, &durable(1, 1, 1), 7);
        assert!(checker.report.violations.is_empty(), "{:?}", checker.report);
        assert!(checker.report.checks[&Invariant::CommittedPrefixAgreed] >= 2);
        // The high watermark reaches 2: node 2's c, which it claims matches, is not b.
        checker.observe_core(1, &append(2, 1, 2), 8);
        checker.observe_core(2, &durable(1, 1, 2), 9);
        assert_eq!(
            broken(&checker.report),
            vec![Invariant::CommittedPrefixAgreed]
        );
        // A crash that loses c, then the right batch: no further violation.
        checker.node_crashed(2, Vec::new());
        checker.observe_core(2, &stored(0, 1, 0, "a"), 10);
        checker.observe_core(2, &stored(1, 1, 100, "b"), 11);
        checker.observe_core(2, &durable(1, 1, 2), 12);
        assert_eq!(checker.report.violations.len(), 1);
    }

    #[test]
    fn a_persisted_epoch_or_vote_going_back_is_caught() {
        let mut checker = Checker::new();
        persisted(&mut checker, 1, (1, None), 1);
        persisted(&mut checker, 1, (1, Some(2)), 2);
        persisted(&mut checker, 1, (2, Some(1)), 3);
        persisted(&mut checker, 2, (1, Some(3)), 3);
        assert!(checker.report.violations.is_empty(), "{:?}", checker.report);
        persisted(&mut checker, 1, (2, Some(3)), 4);
        persisted(&mut checker, 1, (1, Some(1)), 5);
        assert_eq!(
            broken(&checker.report),
            vec![Invariant::EpochMonotonic, Invariant::EpochMonotonic],
            "a second vote in epoch 2, then epoch 1 after 2"
        );
    }

    #[test]
    fn a_high_watermark_without_a_durable_majority_is_caught() {
        let mut checker = Checker::new();
        // Node 1 leads epoch 1 of three replicas; node 2 reports offset 5 durable.
        checker.observe_core(1, &append(2, 1, 0), 1);
        checker.observe_core(1, &append(3, 1, 0), 1);
        checker.observe_core(2, &durable(1, 1, 5), 2);
        checker.observe_core(1, &append(2, 1, 5), 3);
        // Leading again in epoch 3, it may announce what it reached in epoch 1.
        checker.observe_core(1, &append(2, 3, 5), 4);
        assert!(checker.report.violations.is_empty(), "{:?}", checker.report);
        // Node 3 reported 9 durable to another leader (node 2, epoch 2): not to node 1.
        checker.observe_core(2, &append(3, 2, 5), 5);
        checker.observe_core(3, &durable(2, 2, 9), 6);
        checker.observe_core(1, &append(3, 3, 9), 7);
        assert_eq!(
            broken(&checker.report),
            vec![Invariant::HighWatermarkMajorityDurable]
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
            next_offset: 4,
            high_watermark: 5,
            records: vec![record(0, "a"), record(2, "a"), record(3, "zz")],
            started: 20,
            at: 30,
        });
        checker.observe_client(&ClientEvent::Fetched {
            client: 1,
            partition: P,
            fetch_offset: 4,
            next_offset: 4,
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

    // ---- transactions ----

    fn rec(offset: i64, value: &str) -> ReadRecord {
        record(offset, value)
    }

    fn txn_produced(txn: &str, partition: i32, values: &[&str], base_offset: i64) -> ClientEvent {
        ClientEvent::TxnProduced {
            client: 1,
            txn: txn.into(),
            partition,
            values: values.iter().map(|v| v.to_string()).collect(),
            outcome: ProduceOutcome::Acknowledged { base_offset },
            at: 10,
        }
    }

    fn txn_end(txn: &str, commit: bool) -> [ClientEvent; 2] {
        [
            ClientEvent::TxnEndRequested {
                client: 1,
                txn: txn.into(),
                commit,
                at: 20,
            },
            ClientEvent::TxnEnded {
                client: 1,
                txn: txn.into(),
                commit,
                attempts: 1,
                outcome: CommitOutcome::Acknowledged,
                at: 30,
            },
        ]
    }

    fn output_fetch(
        read_committed: bool,
        fetch_offset: i64,
        next_offset: i64,
        last_stable_offset: i64,
        records: Vec<ReadRecord>,
    ) -> ClientEvent {
        ClientEvent::OutputFetched {
            client: 7,
            partition: 0,
            read_committed,
            fetch_offset,
            next_offset,
            high_watermark: 100,
            last_stable_offset,
            records,
            started: 40,
            at: 50,
        }
    }

    fn log_of(records: Vec<ReadRecord>, high_watermark: i64) -> FinalRead {
        Ok(FinalLog {
            log_start_offset: 0,
            high_watermark,
            records,
        })
    }

    /// A history: copier transaction xc2.0.1 copies input "in-0" and "in-1" to output
    /// partition 0 (offsets 0, 1; its marker at 2) and commits input offset 2; producer
    /// transaction xp1.0.1 writes "r0-0" (offset 3) and aborts (marker at 4); a
    /// read_committed consumer reads offsets 0..5.
    fn clean_transactions() -> Checker {
        let mut checker = Checker::new();
        checker.observe_client(&txn_produced(
            "xc2.0.1",
            0,
            &["in-0@xc2.0.1", "in-1@xc2.0.1"],
            0,
        ));
        checker.observe_client(&ClientEvent::TxnOffsetsSent {
            client: 2,
            txn: "xc2.0.1".into(),
            member: "m".into(),
            generation: 1,
            offsets: vec![(0, 2)],
            outcome: CommitOutcome::Acknowledged,
            at: 15,
        });
        for event in txn_end("xc2.0.1", true) {
            checker.observe_client(&event);
        }
        checker.observe_client(&txn_produced("xp1.0.1", 0, &["r0-0@xp1.0.1"], 3));
        for event in txn_end("xp1.0.1", false) {
            checker.observe_client(&event);
        }
        checker
    }

    fn clean_outputs() -> BTreeMap<i32, OutputLogs> {
        BTreeMap::from([(
            0,
            OutputLogs {
                uncommitted: log_of(
                    vec![
                        rec(0, "in-0@xc2.0.1"),
                        rec(1, "in-1@xc2.0.1"),
                        rec(3, "r0-0@xp1.0.1"),
                    ],
                    5,
                ),
                committed: log_of(vec![rec(0, "in-0@xc2.0.1"), rec(1, "in-1@xc2.0.1")], 5),
            },
        )])
    }

    fn inputs(values: &[&str]) -> BTreeMap<PartitionRef, FinalRead> {
        final_log(values)
    }

    fn transaction_violations(
        checker: Checker,
        outputs: &BTreeMap<i32, OutputLogs>,
        input: &[&str],
        settled: Result<(), String>,
    ) -> Vec<Invariant> {
        let mut checker = checker;
        checker.check_transactions(outputs, &inputs(input), &settled);
        let mut found = broken(&checker.finish(&BTreeMap::new(), progress()));
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn a_clean_transaction_history_passes() {
        let mut checker = clean_transactions();
        checker.observe_client(&output_fetch(
            true,
            0,
            5,
            5,
            vec![rec(0, "in-0@xc2.0.1"), rec(1, "in-1@xc2.0.1")],
        ));
        checker.observe_client(&ClientEvent::CopierOffsetsFetched {
            client: 2,
            offsets: vec![(0, 2), (1, -1)],
            started: 60,
            at: 70,
        });
        let found = transaction_violations(checker, &clean_outputs(), &["in-0", "in-1"], Ok(()));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn an_aborted_record_read_as_committed_is_caught() {
        let mut checker = clean_transactions();
        checker.observe_client(&output_fetch(true, 3, 5, 5, vec![rec(3, "r0-0@xp1.0.1")]));
        assert!(checker
            .violations()
            .iter()
            .any(|v| v.invariant == Invariant::AbortedReads));
        // And at the end, in the final read_committed log.
        let mut outputs = clean_outputs();
        outputs.get_mut(&0).unwrap().committed = log_of(
            vec![
                rec(0, "in-0@xc2.0.1"),
                rec(1, "in-1@xc2.0.1"),
                rec(3, "r0-0@xp1.0.1"),
            ],
            5,
        );
        let found =
            transaction_violations(clean_transactions(), &outputs, &["in-0", "in-1"], Ok(()));
        assert_eq!(found, vec![Invariant::AbortedReads]);
    }

    #[test]
    fn open_transaction_data_and_reads_past_the_last_stable_offset_are_caught() {
        let mut checker = Checker::new();
        checker.observe_client(&txn_produced("xp1.0.1", 0, &["r0-0@xp1.0.1"], 0));
        // Read before the commit was requested: an open transaction's data.
        checker.observe_client(&output_fetch(true, 0, 1, 1, vec![rec(0, "r0-0@xp1.0.1")]));
        // Read at the last stable offset.
        for event in txn_end("xp1.0.1", true) {
            checker.observe_client(&event);
        }
        let mut reader = Checker::new();
        reader.observe_client(&txn_produced("xp1.0.1", 0, &["r0-0@xp1.0.1"], 0));
        for event in txn_end("xp1.0.1", true) {
            reader.observe_client(&event);
        }
        reader.observe_client(&output_fetch(true, 0, 1, 0, vec![rec(0, "r0-0@xp1.0.1")]));
        for checker in [checker, reader] {
            let invariants: Vec<Invariant> =
                checker.violations().iter().map(|v| v.invariant).collect();
            assert_eq!(invariants, vec![Invariant::ReadCommittedIsolation]);
        }
    }

    #[test]
    fn a_torn_transaction_and_offsets_without_their_commit_are_caught() {
        let mut checker = clean_transactions();
        checker.observe_client(&txn_produced("xc2.0.2", 1, &["in-2@xc2.0.2"], 0));
        checker.observe_client(&txn_produced("xc2.0.2", 2, &["in-3@xc2.0.2"], 0));
        checker.observe_client(&ClientEvent::TxnOffsetsSent {
            client: 2,
            txn: "xc2.0.2".into(),
            member: "m".into(),
            generation: 1,
            offsets: vec![(0, 4)],
            outcome: CommitOutcome::Acknowledged,
            at: 15,
        });
        for event in txn_end("xc2.0.2", false) {
            checker.observe_client(&event);
        }
        // The aborted transaction's offsets are read back as committed.
        checker.observe_client(&ClientEvent::CopierOffsetsFetched {
            client: 2,
            offsets: vec![(0, 4)],
            started: 60,
            at: 70,
        });
        assert_eq!(
            checker
                .violations()
                .iter()
                .map(|v| v.invariant)
                .collect::<Vec<_>>(),
            vec![Invariant::TransactionsAtomic]
        );
        // A committed transaction visible in one partition only.
        let mut checker = clean_transactions();
        checker.observe_client(&txn_produced("xp1.0.2", 1, &["r1-0@xp1.0.2"], 0));
        checker.observe_client(&txn_produced("xp1.0.2", 2, &["r2-0@xp1.0.2"], 0));
        for event in txn_end("xp1.0.2", true) {
            checker.observe_client(&event);
        }
        let mut outputs = clean_outputs();
        outputs.insert(
            1,
            OutputLogs {
                uncommitted: log_of(vec![rec(0, "r1-0@xp1.0.2")], 2),
                committed: log_of(vec![rec(0, "r1-0@xp1.0.2")], 2),
            },
        );
        outputs.insert(
            2,
            OutputLogs {
                uncommitted: log_of(vec![rec(0, "r2-0@xp1.0.2")], 2),
                committed: log_of(vec![], 2),
            },
        );
        let found = transaction_violations(checker, &outputs, &["in-0", "in-1"], Ok(()));
        assert_eq!(
            found,
            vec![
                Invariant::AcknowledgedWritesSurvive,
                Invariant::TransactionsAtomic
            ]
        );
    }

    #[test]
    fn a_read_committed_consumer_that_skips_or_goes_back_is_caught() {
        let mut checker = clean_transactions();
        // Skips offset 1 (a committed record).
        checker.observe_client(&output_fetch(true, 0, 5, 5, vec![rec(0, "in-0@xc2.0.1")]));
        // Goes back to 0.
        checker.observe_client(&output_fetch(true, 0, 5, 5, vec![]));
        assert_eq!(
            checker
                .violations()
                .iter()
                .map(|v| v.invariant)
                .collect::<Vec<_>>(),
            vec![Invariant::ReadCommittedNoSkips]
        );
        let found = transaction_violations(checker, &clean_outputs(), &["in-0", "in-1"], Ok(()));
        assert_eq!(found, vec![Invariant::ReadCommittedNoSkips]);
    }

    #[test]
    fn a_copy_twice_a_lost_copy_and_an_unsettled_end_are_caught() {
        let found = transaction_violations(
            clean_transactions(),
            &clean_outputs(),
            &["in-0", "in-1", "in-2"],
            Err("output partition 0: last stable offset 3, high watermark 5".into()),
        );
        assert_eq!(
            found,
            vec![Invariant::CopiedExactlyOnce, Invariant::TransactionsSettle]
        );
        let mut checker = clean_transactions();
        checker.observe_client(&txn_produced("xc2.0.2", 0, &["in-1@xc2.0.2"], 5));
        for event in txn_end("xc2.0.2", true) {
            checker.observe_client(&event);
        }
        let mut outputs = clean_outputs();
        let logs = outputs.get_mut(&0).unwrap();
        for log in [&mut logs.uncommitted, &mut logs.committed] {
            let log = log.as_mut().unwrap();
            log.records.push(rec(5, "in-1@xc2.0.2"));
            log.high_watermark = 7;
        }
        let found = transaction_violations(checker, &outputs, &["in-0", "in-1"], Ok(()));
        assert_eq!(found, vec![Invariant::CopiedExactlyOnce]);
    }
}
