//! The recorded history of a run: what the simulated clients did and saw, in the order it
//! happened (simulated time in microseconds since the start of the run).
//!
//! Client operations are recorded by the workload as they start and end; core events reach
//! the checkers directly from each node's trace (see `trace` and `checkers`). Record values
//! are unique strings (`c<client>-<op>-<record>`), so a value read names the write it came
//! from.
//!
//! In transaction scenarios every record of the output topic is written inside a
//! transaction, and its value names it: `<payload>@<transaction>`, where the transaction is
//! `xp<client>.<instance>.<number>` for a transactional producer and `xc...` for a copier
//! (an instance is one life of a client, between crashes), and the payload is a producer's own (`r<partition>-<index>`) or, for a copier, the value of
//! the input record it copies. [`split_transactional_value`] takes a value apart.

use crate::scenario::ClientRole;
use std::fmt;

/// Microseconds of simulated time since the start of the run.
pub type Micros = u64;

/// A partition of one node (every node serves one topic, `scenario::TOPIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionRef {
    pub node: u8,
    pub partition: i32,
}

impl fmt::Display for PartitionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} partition {}", self.node, self.partition)
    }
}

/// A record's value as the checkers compare it: UTF-8 (lossy), `None` for a null value.
pub type Value = Option<String>;

/// One record read: its offset and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub offset: i64,
    pub value: Value,
}

impl ReadRecord {
    /// The records of a fetch answer, values read as (lossy) UTF-8 (for the simulated
    /// clients, which exist in simulation builds only).
    #[cfg(madsim)]
    pub(crate) fn all_of(fetched: &myelin_client::FetchedPartition) -> Vec<ReadRecord> {
        fetched
            .records
            .iter()
            .map(|record| ReadRecord {
                offset: record.offset,
                value: record
                    .value
                    .as_ref()
                    .map(|value| String::from_utf8_lossy(value).into_owned()),
            })
            .collect()
    }
}

/// How a produce operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProduceOutcome {
    /// The broker acknowledged the batch at `base_offset`.
    Acknowledged { base_offset: i64 },
    /// The broker refused it with a Kafka error code: it was not written.
    Refused { code: i16, error: String },
    /// No answer (timeout, broken connection, node down): it may or may not be written.
    Indeterminate { error: String },
}

/// One recorded client event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A batch is about to be sent (the first attempt; retries belong to the same op).
    ProduceStarted {
        op: u64,
        client: u8,
        partition: PartitionRef,
        role: ClientRole,
        values: Vec<String>,
        /// (producer id, epoch, base sequence) for an idempotent producer.
        idempotence: Option<(i64, i16, i32)>,
        at: Micros,
    },
    ProduceEnded {
        op: u64,
        attempts: u32,
        outcome: ProduceOutcome,
        at: Micros,
    },
    /// A fetch answered: the records from `fetch_offset` on, below `high_watermark`; the
    /// consumer's next fetch starts at `next_offset` (past the batches it got, control
    /// batches included).
    Fetched {
        client: u8,
        partition: PartitionRef,
        fetch_offset: i64,
        next_offset: i64,
        high_watermark: i64,
        records: Vec<ReadRecord>,
        started: Micros,
        at: Micros,
    },
    /// A fetch failed: a Kafka error code, undecodable bytes, or no answer.
    FetchFailed {
        client: u8,
        partition: PartitionRef,
        fetch_offset: i64,
        failure: FetchFailure,
        at: Micros,
    },
    /// A group member got its assignment for a generation (SyncGroup answered).
    GroupAssigned {
        client: u8,
        member: String,
        generation: i32,
        partitions: Vec<i32>,
        at: Micros,
    },
    /// A group member's OffsetCommit of (partition, next offset) pairs ended.
    OffsetsCommitted {
        client: u8,
        member: String,
        generation: i32,
        offsets: Vec<(i32, i64)>,
        outcome: CommitOutcome,
        started: Micros,
        at: Micros,
    },
    /// A group member's Heartbeat in `generation` ended (a refusal carries the coordinator's
    /// error code).
    Heartbeat {
        client: u8,
        member: String,
        generation: i32,
        outcome: CommitOutcome,
        started: Micros,
        at: Micros,
    },
    /// An OffsetFetch answered with the group's committed offsets (-1: none).
    OffsetsFetched {
        client: u8,
        offsets: Vec<(i32, i64)>,
        started: Micros,
        at: Micros,
    },
    /// A group member, in its assignment of `generation`, read `partition` from
    /// `fetch_offset`: `records`, and its position moved to `next_offset`.
    GroupRead {
        client: u8,
        member: String,
        generation: i32,
        partition: PartitionRef,
        fetch_offset: i64,
        next_offset: i64,
        high_watermark: i64,
        records: Vec<ReadRecord>,
        at: Micros,
    },
    /// A transactional client begins transaction `txn` (before it adds a partition).
    TxnStarted { client: u8, txn: String, at: Micros },
    /// A transactional client wrote a batch to a partition of the output topic inside
    /// transaction `txn` (retries of the same batch included).
    TxnProduced {
        client: u8,
        txn: String,
        partition: i32,
        values: Vec<String>,
        outcome: ProduceOutcome,
        at: Micros,
    },
    /// A copier's TxnOffsetCommit of (input partition, next offset) pairs inside `txn`.
    TxnOffsetsSent {
        client: u8,
        txn: String,
        member: String,
        generation: i32,
        offsets: Vec<(i32, i64)>,
        outcome: CommitOutcome,
        at: Micros,
    },
    /// EndTxn of `txn` is about to be sent for the first time (commit or abort).
    TxnEndRequested {
        client: u8,
        txn: String,
        commit: bool,
        at: Micros,
    },
    /// EndTxn of `txn` ended (after retries of the same result).
    TxnEnded {
        client: u8,
        txn: String,
        commit: bool,
        attempts: u32,
        outcome: CommitOutcome,
        at: Micros,
    },
    /// The client will never end `txn`: it crashed, or it learned it was fenced (its
    /// transaction expired, or a successor took over its transactional id).
    TxnAbandoned {
        client: u8,
        txn: String,
        why: String,
        at: Micros,
    },
    /// A consumer of the output topic fetched its partition: the records delivered from
    /// `fetch_offset` on (control batches, and under read_committed aborted transactions,
    /// left out), up to `next_offset`.
    OutputFetched {
        client: u8,
        partition: i32,
        read_committed: bool,
        fetch_offset: i64,
        next_offset: i64,
        high_watermark: i64,
        last_stable_offset: i64,
        records: Vec<ReadRecord>,
        started: Micros,
        at: Micros,
    },
    /// A copier read its group's committed input offsets (OffsetFetch, require_stable;
    /// -1: none).
    CopierOffsetsFetched {
        client: u8,
        offsets: Vec<(i32, i64)>,
        started: Micros,
        at: Micros,
    },
}

/// A transactional value's (payload, transaction), or `None` for any other value.
pub fn split_transactional_value(value: &str) -> Option<(&str, &str)> {
    value
        .rsplit_once('@')
        .filter(|(_, txn)| txn.starts_with('x'))
}

/// How an OffsetCommit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Acknowledged,
    /// The coordinator answered with a Kafka error code (the commit may still have been
    /// written if the code came after a failover: NOT_COORDINATOR).
    Refused {
        code: i16,
    },
    /// No answer.
    Indeterminate {
        error: String,
    },
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    /// The broker answered with a Kafka error code.
    Broker { code: i16 },
    /// The response arrived but its records did not decode.
    Undecodable { error: String },
    /// Timeout, broken connection, node down.
    NoAnswer { error: String },
}

impl ClientEvent {
    /// When it happened.
    pub fn at(&self) -> Micros {
        match self {
            ClientEvent::ProduceStarted { at, .. }
            | ClientEvent::ProduceEnded { at, .. }
            | ClientEvent::Fetched { at, .. }
            | ClientEvent::FetchFailed { at, .. }
            | ClientEvent::GroupAssigned { at, .. }
            | ClientEvent::OffsetsCommitted { at, .. }
            | ClientEvent::OffsetsFetched { at, .. }
            | ClientEvent::Heartbeat { at, .. }
            | ClientEvent::GroupRead { at, .. }
            | ClientEvent::TxnStarted { at, .. }
            | ClientEvent::TxnProduced { at, .. }
            | ClientEvent::TxnOffsetsSent { at, .. }
            | ClientEvent::TxnEndRequested { at, .. }
            | ClientEvent::TxnEnded { at, .. }
            | ClientEvent::TxnAbandoned { at, .. }
            | ClientEvent::OutputFetched { at, .. }
            | ClientEvent::CopierOffsetsFetched { at, .. } => *at,
        }
    }

    /// A one-line description for the trace.
    pub fn describe(&self) -> String {
        match self {
            ClientEvent::ProduceStarted {
                op,
                partition,
                role,
                values,
                idempotence,
                ..
            } => {
                let first = values.first().map_or("", String::as_str);
                let mut text = format!(
                    "produce op {op} to {partition} ({role:?}): {} record(s) from {first}",
                    values.len()
                );
                if let Some((producer_id, epoch, sequence)) = idempotence {
                    text.push_str(&format!(
                        ", producer {producer_id} epoch {epoch} sequence {sequence}"
                    ));
                }
                text
            }
            ClientEvent::ProduceEnded {
                op,
                attempts,
                outcome,
                ..
            } => format!("produce op {op} ended after {attempts} attempt(s): {outcome:?}"),
            ClientEvent::Fetched {
                partition,
                fetch_offset,
                high_watermark,
                records,
                ..
            } => format!(
                "fetched {partition} from {fetch_offset}: {} record(s), high watermark {high_watermark}",
                records.len()
            ),
            ClientEvent::FetchFailed {
                partition,
                fetch_offset,
                failure,
                ..
            } => format!("fetch of {partition} from {fetch_offset} failed: {failure:?}"),
            ClientEvent::GroupAssigned {
                member,
                generation,
                partitions,
                ..
            } => format!("member {member} assigned {partitions:?} in generation {generation}"),
            ClientEvent::OffsetsCommitted {
                member,
                generation,
                offsets,
                outcome,
                ..
            } => format!(
                "member {member} (generation {generation}) committed {offsets:?}: {outcome:?}"
            ),
            ClientEvent::OffsetsFetched { offsets, .. } => {
                format!("group committed offsets fetched: {offsets:?}")
            }
            ClientEvent::Heartbeat {
                member,
                generation,
                outcome,
                ..
            } => format!("member {member} (generation {generation}) heartbeat: {outcome:?}"),
            ClientEvent::GroupRead {
                member,
                generation,
                partition,
                fetch_offset,
                next_offset,
                records,
                ..
            } => format!(
                "member {member} (generation {generation}) read {} record(s) of {partition} from {fetch_offset} to {next_offset}",
                records.len()
            ),
            ClientEvent::TxnStarted { txn, .. } => format!("transaction {txn} begins"),
            ClientEvent::TxnProduced {
                txn,
                partition,
                values,
                outcome,
                ..
            } => format!(
                "transaction {txn} wrote {} record(s) to output partition {partition}: {outcome:?}",
                values.len()
            ),
            ClientEvent::TxnOffsetsSent {
                txn,
                member,
                generation,
                offsets,
                outcome,
                ..
            } => format!(
                "transaction {txn} committed input offsets {offsets:?} as member {member} (generation {generation}): {outcome:?}"
            ),
            ClientEvent::TxnEndRequested { txn, commit, .. } => format!(
                "transaction {txn}: EndTxn {} sent",
                if *commit { "commit" } else { "abort" }
            ),
            ClientEvent::TxnEnded {
                txn,
                commit,
                attempts,
                outcome,
                ..
            } => format!(
                "transaction {txn}: EndTxn {} ended after {attempts} attempt(s): {outcome:?}",
                if *commit { "commit" } else { "abort" }
            ),
            ClientEvent::TxnAbandoned { txn, why, .. } => {
                format!("transaction {txn} abandoned: {why}")
            }
            ClientEvent::OutputFetched {
                partition,
                read_committed,
                fetch_offset,
                next_offset,
                high_watermark,
                last_stable_offset,
                records,
                ..
            } => format!(
                "fetched output partition {partition} ({}) from {fetch_offset} to {next_offset}: {} record(s), high watermark {high_watermark}, last stable offset {last_stable_offset}",
                if *read_committed { "read_committed" } else { "read_uncommitted" },
                records.len()
            ),
            ClientEvent::CopierOffsetsFetched { offsets, .. } => {
                format!("copier group committed offsets fetched: {offsets:?}")
            }
        }
    }
}

/// Counts over the client history, for the summary and the progress check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryCounts {
    pub produces_attempted: u64,
    pub produce_attempts_sent: u64,
    pub acknowledged_acks_all: u64,
    pub acknowledged_acks_leader: u64,
    pub acknowledged_idempotent: u64,
    /// Of those, acknowledged only after a retry (the first attempt failed or went
    /// unanswered: a leader change, a lost connection).
    #[serde(default)]
    pub acknowledged_idempotent_retried: u64,
    pub refused: u64,
    pub indeterminate: u64,
    pub records_acknowledged: u64,
    pub fetches: u64,
    pub fetches_failed: u64,
    pub records_read: u64,
    #[serde(default)]
    pub group_assignments: u64,
    #[serde(default)]
    pub group_commits_acknowledged: u64,
    #[serde(default)]
    pub group_commits_refused: u64,
    /// Transactions whose commit was acknowledged.
    #[serde(default)]
    pub transactions_committed: u64,
    /// Transactions whose abort was acknowledged.
    #[serde(default)]
    pub transactions_aborted: u64,
    /// Transactions whose EndTxn got no definite answer.
    #[serde(default)]
    pub transactions_in_doubt: u64,
    /// Transactions abandoned by a crashed or fenced client.
    #[serde(default)]
    pub transactions_abandoned: u64,
    /// Of those, abandoned because the client found itself fenced (expired, or taken over).
    #[serde(default)]
    pub transactions_fenced: u64,
}

impl HistoryCounts {
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged_acks_all + self.acknowledged_acks_leader + self.acknowledged_idempotent
    }
}

/// The client history of a run.
#[derive(Debug, Default)]
pub struct History {
    pub events: Vec<ClientEvent>,
    pub counts: HistoryCounts,
    /// Role of each produce op still open, by op id.
    open_produces: std::collections::BTreeMap<u64, (ClientRole, u64)>,
}

impl History {
    pub fn record(&mut self, event: ClientEvent) {
        let counts = &mut self.counts;
        match &event {
            ClientEvent::ProduceStarted {
                op, role, values, ..
            } => {
                counts.produces_attempted += 1;
                self.open_produces.insert(*op, (*role, values.len() as u64));
            }
            ClientEvent::ProduceEnded {
                op,
                attempts,
                outcome,
                ..
            } => {
                counts.produce_attempts_sent += u64::from(*attempts);
                let (role, records) = self
                    .open_produces
                    .remove(op)
                    .unwrap_or((ClientRole::ProducerAcksAll, 0));
                match outcome {
                    ProduceOutcome::Acknowledged { .. } => {
                        counts.records_acknowledged += records;
                        match role {
                            ClientRole::ProducerAcksLeader => counts.acknowledged_acks_leader += 1,
                            ClientRole::IdempotentProducer => {
                                counts.acknowledged_idempotent += 1;
                                if *attempts > 1 {
                                    counts.acknowledged_idempotent_retried += 1;
                                }
                            }
                            _ => counts.acknowledged_acks_all += 1,
                        }
                    }
                    ProduceOutcome::Refused { .. } => counts.refused += 1,
                    ProduceOutcome::Indeterminate { .. } => counts.indeterminate += 1,
                }
            }
            ClientEvent::Fetched { records, .. } => {
                counts.fetches += 1;
                counts.records_read += records.len() as u64;
            }
            ClientEvent::FetchFailed { .. } => {
                counts.fetches += 1;
                counts.fetches_failed += 1;
            }
            ClientEvent::GroupAssigned { .. } => counts.group_assignments += 1,
            ClientEvent::OffsetsCommitted { outcome, .. } => match outcome {
                CommitOutcome::Acknowledged => counts.group_commits_acknowledged += 1,
                _ => counts.group_commits_refused += 1,
            },
            ClientEvent::OffsetsFetched { .. } | ClientEvent::Heartbeat { .. } => {}
            ClientEvent::GroupRead { records, .. } => {
                counts.fetches += 1;
                counts.records_read += records.len() as u64;
            }
            ClientEvent::TxnEnded {
                commit, outcome, ..
            } => match (outcome, commit) {
                (CommitOutcome::Acknowledged, true) => counts.transactions_committed += 1,
                (CommitOutcome::Acknowledged, false) => counts.transactions_aborted += 1,
                _ => counts.transactions_in_doubt += 1,
            },
            ClientEvent::TxnAbandoned { why, .. } => {
                counts.transactions_abandoned += 1;
                if why.contains("fenced") {
                    counts.transactions_fenced += 1;
                }
            }
            ClientEvent::OutputFetched { records, .. } => {
                counts.fetches += 1;
                counts.records_read += records.len() as u64;
            }
            ClientEvent::TxnStarted { .. }
            | ClientEvent::TxnProduced { .. }
            | ClientEvent::TxnOffsetsSent { .. }
            | ClientEvent::TxnEndRequested { .. }
            | ClientEvent::CopierOffsetsFetched { .. } => {}
        }
        self.events.push(event);
    }
}
