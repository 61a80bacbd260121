//! The transactions spec (`specs/transactions/transactions.qnt`, module `transactions`)
//! replayed against the core's real [`TransactionCoordinator`], driven alone as the broker
//! drives it (`broker/transactions.rs`), and, per data partition, its
//! `PartitionTransactions` (open transactions, verifications, markers, aborted index, last
//! stable offset) and `ProducerStateTable` (epochs and sequences).
//!
//! The coordinator gets Kafka requests (`InitProducerId`, `AddPartitionsToTxn`, `EndTxn`)
//! through `handle_request`, a partition leader's verification through `verify`, a marker
//! request's answer through `on_markers_written`, and its timer (`Timeout`: the clock moves
//! past the transaction's timeout) through `tick`. The replay's node hosts its one
//! `__transaction_state` partition as leader and commits every batch at once, then
//! `settle`s until the coordinator asks for nothing more (the spec does not model that
//! partition's replication), so a request is answered, and a prepared transaction's
//! markers asked for, within the step, as in the spec. Data partition p is led by node
//! `10 + p`: each marker request names one partition, as the spec's do. The marker
//! requests and verification answers in flight are the network's, kept by the replay.
//!
//! The glue of a data partition's leader lives in the broker (`broker.rs`,
//! `broker/transactions.rs`: which produce needs a verification, the open-or-verified check
//! before an append, writing a marker, the produce error of a failed verification, the
//! read_committed fetch) and is not driven: the replay keeps a stand-in that does what the
//! spec's `DeliverProduce`, `DeliverVerifyAnswer`, `producePartition` and `DeliverMarker`
//! say and asks `PartitionTransactions` and `ProducerStateTable` for every decision. The
//! partition logs are the stand-in's too (a list of data batches and markers): what is
//! compared is which batches and markers the code's decisions let in.
//!
//! A request names what the spec's client knows in the state before the step (its epoch,
//! whether it must bump its epoch: KIP-360's expected epoch); batches are the spec's picks.
//! Verification tokens are per partition in the code and one counter in the spec: the
//! replay pairs them as they are handed out and compares verifications without them.
//!
//! After every step the replay compares: the coordinator's applied state of the
//! transactional id (`transaction_state`: state, producer epoch, last producer epoch,
//! partitions, transaction number) and the partitions whose marker it still awaits; the
//! marker requests in flight and the verification answers in flight; per partition the log
//! (data: epoch and sequence; markers: commit or abort, epoch, transaction number), the
//! open transaction (first offset, epoch, number), the verification (epoch, number), the
//! aborted index, the last marker's number, the producer state's epoch and last sequence,
//! the last stable offset (the high watermark is the log end: replication is not
//! modelled), the read_committed consumer's position and the offsets it was given; and the
//! step's reply (API and error).

use super::{
    boolean, int, list, map, set, string, Divergence, Replay, Replayed, SpecRun, State, Trace,
};
use crate::api::{ErrorCode, TxnState};
use crate::api::{Now, Request, RequestId, Response};
use crate::batch::{BatchHeader, ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL};
use crate::internal_log::{InternalPartitions, ShardStatus};
use crate::metadata::TopicPartition;
use crate::partition_txns::{MarkerAction, PartitionTransactions};
use crate::producers::{ProducerStateTable, SequenceVerdict};
use crate::records::{CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT};
use crate::replication::NodeId;
use crate::transaction_coordinator::{
    TransactionCoordinator, TransactionNode, TxnContext, TxnCoordinatorConfig, TxnOutput,
};
use crate::transactions::TxnMetadata;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub(super) const SPEC: SpecRun = SpecRun {
    protocol: "transactions",
    file: "transactions.qnt",
    main: "transactions",
    traces: 60,
    steps: 25,
};

/// The transactional id's producer id (never bumped past: the spec's epochs stay small).
const PRODUCER_ID: i64 = 7;
const TRANSACTIONAL_ID: &str = "txn";
const TIMEOUT_MS: i32 = 60_000;
const PARTITIONS: [i64; 2] = [0, 1];

fn topic_partition(p: i64) -> TopicPartition {
    TopicPartition::new(
        "t",
        i32::try_from(p).expect("a partition index fits an i32"),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    kind: String,
    epoch: i64,
    /// A data batch's sequence (-1 for a marker).
    seq: i64,
    /// A marker's transaction number (-1 for data: the spec's is a ghost there).
    txn: i64,
    commit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Batch {
    partition: i64,
    epoch: i64,
    seq: i64,
    txn: i64,
    producer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Marker {
    partition: i64,
    txn: i64,
    commit: bool,
    epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct VerifyAnswer {
    batch: Batch,
    error: String,
    txn_number: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionAbstraction {
    log: Vec<Entry>,
    /// (first offset, epoch, transaction number), (-1, -1, -1) for none.
    open: (i64, i64, i64),
    /// (epoch, transaction number), (-1, -1) for none.
    verification: (i64, i64),
    aborted: BTreeSet<(i64, i64)>,
    last_marker_number: i64,
    state_epoch: i64,
    last_sequence: i64,
    last_stable_offset: i64,
    consumer_position: i64,
    /// The offsets the read_committed consumer was given.
    consumed: BTreeSet<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Abstraction {
    txn_state: String,
    producer_epoch: i64,
    last_producer_epoch: i64,
    txn_partitions: BTreeSet<i64>,
    txn_number: i64,
    markers_remaining: BTreeSet<i64>,
    marker_requests: BTreeSet<Marker>,
    verify_answers: BTreeSet<VerifyAnswer>,
    partitions: BTreeMap<i64, PartitionAbstraction>,
    reply: (String, String),
}

impl Abstraction {
    fn parts(spec: &Self, code: &Self) -> Vec<(String, String, String)> {
        let part = |name: String, spec: &dyn std::fmt::Debug, code: &dyn std::fmt::Debug| {
            (name, format!("{spec:?}"), format!("{code:?}"))
        };
        let mut parts = vec![
            part("txnState".into(), &spec.txn_state, &code.txn_state),
            part(
                "producerEpoch".into(),
                &spec.producer_epoch,
                &code.producer_epoch,
            ),
            part(
                "lastProducerEpoch".into(),
                &spec.last_producer_epoch,
                &code.last_producer_epoch,
            ),
            part(
                "txnPartitions".into(),
                &spec.txn_partitions,
                &code.txn_partitions,
            ),
            part("txnNumber".into(), &spec.txn_number, &code.txn_number),
            part(
                "markersRemaining".into(),
                &spec.markers_remaining,
                &code.markers_remaining,
            ),
            part(
                "markerRequests".into(),
                &spec.marker_requests,
                &code.marker_requests,
            ),
            part(
                "verifyAnswers".into(),
                &spec.verify_answers,
                &code.verify_answers,
            ),
            part("reply".into(), &spec.reply, &code.reply),
        ];
        for (p, s) in &spec.partitions {
            let Some(c) = code.partitions.get(p) else {
                continue;
            };
            parts.push(part(format!("partition {p} log"), &s.log, &c.log));
            parts.push(part(format!("partition {p} openTxn"), &s.open, &c.open));
            parts.push(part(
                format!("partition {p} verification"),
                &s.verification,
                &c.verification,
            ));
            parts.push(part(
                format!("partition {p} abortedIndex"),
                &s.aborted,
                &c.aborted,
            ));
            parts.push(part(
                format!("partition {p} lastMarkerNumber"),
                &s.last_marker_number,
                &c.last_marker_number,
            ));
            parts.push(part(
                format!("partition {p} stateEpoch"),
                &s.state_epoch,
                &c.state_epoch,
            ));
            parts.push(part(
                format!("partition {p} last sequence"),
                &s.last_sequence,
                &c.last_sequence,
            ));
            parts.push(part(
                format!("partition {p} last stable offset"),
                &s.last_stable_offset,
                &c.last_stable_offset,
            ));
            parts.push(part(
                format!("partition {p} consumer position"),
                &s.consumer_position,
                &c.consumer_position,
            ));
            parts.push(part(
                format!("partition {p} consumed"),
                &s.consumed,
                &c.consumed,
            ));
        }
        parts
    }
}

// ---------------------------------------------------------------------------------------
// The spec's state

fn per_partition<'a>(state: &'a State, name: &str, p: i64) -> &'a Value {
    map(state.var(name))
        .into_iter()
        .find(|(key, _)| int(key) == p)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("{name} has no partition {p}"))
}

fn spec_batch(value: &Value) -> Batch {
    Batch {
        partition: int(&value["partition"]),
        epoch: int(&value["epoch"]),
        seq: int(&value["seq"]),
        txn: int(&value["txn"]),
        producer: string(&value["producer"]).into(),
    }
}

fn spec_marker(value: &Value) -> Marker {
    Marker {
        partition: int(&value["partition"]),
        txn: int(&value["txn"]),
        commit: boolean(&value["commit"]),
        epoch: int(&value["epoch"]),
    }
}

fn spec_abstraction(state: &State) -> Abstraction {
    let partitions = PARTITIONS
        .iter()
        .map(|&p| {
            let log: Vec<Entry> = list(per_partition(state, "log", p))
                .iter()
                .map(|entry| {
                    let kind = string(&entry["kind"]).to_string();
                    let marker = kind == "marker";
                    Entry {
                        epoch: int(&entry["epoch"]),
                        seq: if marker { -1 } else { int(&entry["seq"]) },
                        txn: if marker { int(&entry["txn"]) } else { -1 },
                        commit: marker && boolean(&entry["commit"]),
                        kind,
                    }
                })
                .collect();
            let open = per_partition(state, "openTxn", p);
            let verification = per_partition(state, "verification", p);
            let open = (
                int(&open["firstOffset"]),
                int(&open["epoch"]),
                int(&open["txnNumber"]),
            );
            let high_watermark = log.len() as i64;
            let partition = PartitionAbstraction {
                // transactions.qnt's lastStableOffset (the correct spec's).
                last_stable_offset: if open.0 >= 0 { open.0 } else { high_watermark },
                log,
                open,
                verification: (int(&verification["epoch"]), int(&verification["txnNumber"])),
                aborted: set(per_partition(state, "abortedIndex", p))
                    .iter()
                    .map(|entry| (int(&entry["first"]), int(&entry["last"])))
                    .collect(),
                last_marker_number: int(per_partition(state, "lastMarkerNumber", p)),
                state_epoch: int(per_partition(state, "stateEpoch", p)),
                last_sequence: set(per_partition(state, "sequences", p))
                    .iter()
                    .map(int)
                    .max()
                    .unwrap_or(-1),
                consumer_position: int(per_partition(state, "consumerPosition", p)),
                consumed: set(state.var("consumed"))
                    .iter()
                    .filter(|read| int(&read["partition"]) == p)
                    .map(|read| int(&read["offset"]))
                    .collect(),
            };
            (p, partition)
        })
        .collect();
    let reply = state.var("reply");
    Abstraction {
        txn_state: string(state.var("txnState")).into(),
        producer_epoch: int(state.var("producerEpoch")),
        last_producer_epoch: int(state.var("lastProducerEpoch")),
        txn_partitions: set(state.var("txnPartitions")).iter().map(int).collect(),
        txn_number: int(state.var("txnNumber")),
        markers_remaining: set(state.var("markersRemaining")).iter().map(int).collect(),
        marker_requests: set(state.var("markerRequests"))
            .iter()
            .map(spec_marker)
            .collect(),
        verify_answers: set(state.var("verifyAnswers"))
            .iter()
            .map(|answer| VerifyAnswer {
                batch: spec_batch(&answer["batch"]),
                error: string(&answer["error"]).into(),
                txn_number: int(&answer["txnNumber"]),
            })
            .collect(),
        partitions,
        reply: (string(&reply["api"]).into(), string(&reply["error"]).into()),
    }
}

/// What a request of spec client `c` names, from the state before the step.
struct Client {
    state: String,
    epoch: i16,
}

fn spec_client(state: &State, c: &str) -> Client {
    let client = map(state.var("clients"))
        .into_iter()
        .find(|(name, _)| string(name) == c)
        .map(|(_, client)| client)
        .unwrap_or_else(|| panic!("no client {c}"));
    Client {
        state: string(&client["state"]).into(),
        epoch: i16::try_from(int(&client["epoch"])).expect("an epoch fits an i16"),
    }
}

// ---------------------------------------------------------------------------------------
// The code's side

/// Kafka's name of an error (`ConcurrentTransactions` -> `CONCURRENT_TRANSACTIONS`).
fn error_name(error: ErrorCode) -> String {
    let mut name = String::new();
    for (index, ch) in format!("{error:?}").chars().enumerate() {
        if ch.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(ch.to_ascii_uppercase());
    }
    name
}

fn state_name(state: TxnState) -> String {
    format!("{state:?}")
}

/// A one-record transactional data batch's header.
fn data_header(batch: &Batch) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        size_bytes: 0,
        partition_leader_epoch: 0,
        attributes: ATTRIBUTE_TRANSACTIONAL,
        last_offset_delta: 0,
        base_timestamp: 0,
        max_timestamp: 0,
        producer_id: PRODUCER_ID,
        producer_epoch: i16::try_from(batch.epoch).expect("an epoch fits an i16"),
        base_sequence: i32::try_from(batch.seq).expect("a sequence fits an i32"),
        record_count: 1,
    }
}

/// A transaction marker's header.
fn marker_header(marker: &Marker) -> BatchHeader {
    BatchHeader {
        attributes: ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL,
        base_sequence: -1,
        ..data_header(&Batch {
            partition: marker.partition,
            epoch: marker.epoch,
            seq: 0,
            txn: marker.txn,
            producer: String::new(),
        })
    }
}

/// A verification answer on its way, with the spec's token and the code's.
#[derive(Debug, Clone)]
struct AnswerInFlight {
    answer: VerifyAnswer,
    spec_token: i64,
    code_token: u64,
}

/// One data partition: the code's transaction and producer state, and the stand-in's log.
#[derive(Debug, Clone, Default)]
struct Partition {
    txns: PartitionTransactions,
    producers: ProducerStateTable,
    log: Vec<Entry>,
    /// The read_committed consumer's position, and the offsets it was given.
    position: i64,
    consumed: BTreeSet<i64>,
}

impl Partition {
    /// A fresh partition, its read_committed view with `defect` (a defect name) if it is
    /// one of `PartitionTransactions`'.
    fn with_defect(_defect: Option<&str>) -> Self {
        #[allow(unused_mut)]
        let mut partition = Self::default();
        #[cfg(feature = "defects")]
        partition
            .txns
            .set_defect(_defect.and_then(crate::defects::Defect::from_name));
        partition
    }
}

/// What the coordinator sees of the replay's node: its one `__transaction_state`
/// partition, led here, and topic `t`, whose partition p is led by node `10 + p` (so that
/// each marker request names one partition, as the spec's do).
struct View {
    status: ShardStatus,
}

impl InternalPartitions for View {
    fn partition_count(&self) -> Option<i32> {
        Some(1)
    }

    fn status(&self, index: i32) -> Option<ShardStatus> {
        (index == 0).then_some(self.status)
    }
}

impl TransactionNode for View {
    fn topic_partition_count(&self, topic: &str) -> Option<i32> {
        (topic == "t").then_some(PARTITIONS.len() as i32)
    }

    fn partition_leader(&self, partition: &TopicPartition) -> Option<NodeId> {
        Some(10 + partition.partition)
    }
}

/// The real transaction coordinator with the replay's node around it, and the data
/// partitions' state, with the stand-in glue of their leaders.
struct System {
    coordinator: TransactionCoordinator,
    view: View,
    /// The `__transaction_state` partition's end (its batches are not kept: the replay
    /// has no failover).
    txn_log_end: i64,
    next_producer_id: i64,
    message_ids: u64,
    next_request: RequestId,
    /// The marker requests in flight, and the coordinator's id of each (the latest, if it
    /// asked again).
    marker_requests: BTreeMap<Marker, u64>,
    answers: Vec<AnswerInFlight>,
    partitions: BTreeMap<i64, Partition>,
    reply: (String, String),
    now_ms: i64,
}

impl System {
    fn new(_defect: Option<&str>) -> Self {
        let coordinator = TransactionCoordinator::new(TxnCoordinatorConfig {
            transaction_timeout_max_ms: TIMEOUT_MS,
            transactional_id_expiration_ms: i64::MAX / 4,
            offsets_partitions: 1,
            snapshot_interval_bytes: crate::internal_log::SNAPSHOT_INTERVAL_BYTES_DEFAULT,
        });
        #[cfg(feature = "defects")]
        let coordinator =
            coordinator.with_defect(_defect.and_then(crate::defects::Defect::from_name));
        let mut system = Self {
            coordinator,
            view: View {
                status: ShardStatus {
                    high_watermark: 0,
                    epoch: 1,
                    leader: true,
                    serves_reads: true,
                },
            },
            txn_log_end: 0,
            next_producer_id: PRODUCER_ID,
            message_ids: 0,
            next_request: 0,
            marker_requests: BTreeMap::new(),
            answers: Vec::new(),
            partitions: PARTITIONS
                .iter()
                .map(|p| (*p, Partition::with_defect(_defect)))
                .collect(),
            reply: (String::new(), String::new()),
            now_ms: 0,
        };
        system
            .coordinator
            .open_shard(0, None, 0, 0)
            .expect("nothing to replay");
        system.drive(|coordinator, context| coordinator.settle(context));
        system
    }

    /// Calls the coordinator with its context and does what it asks, as the broker does;
    /// everything it appends is committed at once (the spec does not model
    /// `__transaction_state`'s replication), then it settles, until it asks for nothing
    /// more. Returns the answers it sent.
    fn drive(
        &mut self,
        call: impl FnOnce(&mut TransactionCoordinator, &mut TxnContext<'_>) -> Vec<TxnOutput>,
    ) -> Vec<Response> {
        let mut context = TxnContext {
            now: Now::aligned(self.now_ms),
            node: &self.view,
            next_producer_id: self.next_producer_id,
            message_ids: &mut self.message_ids,
        };
        let mut outputs = call(&mut self.coordinator, &mut context);
        let mut answers = Vec::new();
        loop {
            let mut appended = false;
            for output in outputs {
                match output {
                    TxnOutput::Respond { response, .. } => answers.push(response),
                    TxnOutput::TakeProducerId(producer_id) => {
                        assert_eq!(producer_id, self.next_producer_id);
                        self.next_producer_id += 1;
                    }
                    TxnOutput::Append {
                        partition,
                        batch,
                        write,
                    } => {
                        assert_eq!(partition, 0);
                        let header = crate::batch::validate(&batch).expect("a valid batch");
                        let base_offset = self.txn_log_end;
                        let last_offset = base_offset + header.offset_count() - 1;
                        self.coordinator
                            .on_appended(0, &header, base_offset, last_offset, &batch)
                            .expect("the coordinator's batches decode");
                        self.txn_log_end = last_offset + 1;
                        let sent = self
                            .coordinator
                            .appended(write, Some((self.txn_log_end, self.view.status.epoch)));
                        answers.extend(sent.into_iter().map(|(_, response)| response));
                        appended = true;
                    }
                    TxnOutput::WriteMarkers {
                        id,
                        markers,
                        partitions,
                        ..
                    } => {
                        for partition in partitions {
                            let marker = Marker {
                                partition: partition.partition.into(),
                                txn: i64::try_from(markers.txn_number).expect("a small number"),
                                commit: markers.commit,
                                epoch: markers.producer_epoch.into(),
                            };
                            self.marker_requests.insert(marker, id);
                        }
                    }
                    other => panic!("the transactions replay does not expect {other:?}"),
                }
            }
            if !appended {
                return answers;
            }
            self.view.status.high_watermark = self.txn_log_end;
            let mut context = TxnContext {
                now: Now::aligned(self.now_ms),
                node: &self.view,
                next_producer_id: self.next_producer_id,
                message_ids: &mut self.message_ids,
            };
            outputs = self.coordinator.settle(&mut context);
        }
    }

    /// Sends a client request to the coordinator; returns its answer (sent once what it
    /// wrote is committed: at once here).
    fn request(&mut self, request: Request) -> Response {
        self.next_request += 1;
        let id = self.next_request;
        let mut answers =
            self.drive(|coordinator, context| coordinator.handle_request(context, id, request));
        assert_eq!(answers.len(), 1, "one answer: {answers:?}");
        answers.remove(0)
    }

    fn metadata(&self) -> Option<&TxnMetadata> {
        self.coordinator.transaction_state(TRANSACTIONAL_ID)
    }

    /// broker.rs last_stable_offset, with the high watermark at the log end.
    fn last_stable_offset(&self, partition: &Partition) -> i64 {
        partition
            .txns
            .last_stable_offset(partition.log.len() as i64)
    }

    /// A read_committed fetch from the consumer's position to the last stable offset, read
    /// as a Kafka consumer reads it: the aborted transactions the fetch reports
    /// (`aborted_between`) make their producer's data skipped from their first offset to
    /// the producer's abort marker.
    fn fetch(&mut self, p: i64) {
        let partition = &self.partitions[&p];
        let start = partition.position;
        let stable = self.last_stable_offset(partition);
        let mut reported = partition.txns.aborted_between(start, stable);
        reported.sort_by_key(|aborted| aborted.first_offset);
        let mut reported = reported.into_iter().peekable();
        let mut aborting = BTreeSet::new();
        let mut given = Vec::new();
        for offset in start..stable {
            while let Some(aborted) = reported.next_if(|aborted| aborted.first_offset <= offset) {
                aborting.insert(aborted.producer_id);
            }
            let entry = &partition.log[usize::try_from(offset).expect("an offset in the log")];
            if entry.kind == "data" {
                if !aborting.contains(&PRODUCER_ID) {
                    given.push(offset);
                }
            } else if !entry.commit {
                aborting.remove(&PRODUCER_ID);
            }
        }
        let partition = self.partitions.get_mut(&p).expect("a data partition");
        partition.consumed.extend(given);
        partition.position = partition.position.max(stable);
    }

    fn reply(&mut self, api: &str, error: &str) {
        self.reply = (api.into(), error.into());
    }

    /// The spec's `producePartition`: the sequence check, the open-or-verified check, the
    /// append.
    fn produce_partition(&mut self, batch: &Batch) {
        let header = data_header(batch);
        let partition = self
            .partitions
            .get_mut(&batch.partition)
            .expect("a data partition");
        let verdict = partition.producers.check(&header);
        let allowed = partition.txns.is_open(PRODUCER_ID, header.producer_epoch)
            || partition
                .txns
                .is_verified(PRODUCER_ID, header.producer_epoch);
        let error = match verdict {
            Ok(SequenceVerdict::Append) if allowed => {
                let offset = partition.log.len() as i64;
                partition.txns.on_batch(&header, offset, None);
                partition.producers.record(&header, offset);
                partition.log.push(Entry {
                    kind: "data".into(),
                    epoch: batch.epoch,
                    seq: batch.seq,
                    txn: -1,
                    commit: false,
                });
                ErrorCode::None
            }
            Ok(SequenceVerdict::Append) => ErrorCode::InvalidTxnState,
            Ok(SequenceVerdict::Duplicate { .. }) => ErrorCode::None,
            Err(error) => error,
        };
        self.reply("Produce", &error_name(error));
    }

    fn take_step(&mut self, before: &State, state: &State) {
        let c = state.pick("c").map(|c| string(c).to_string());
        let client = || spec_client(before, c.as_deref().expect("the action names a client"));
        let again = state.pick("again").is_some_and(boolean);
        self.reply("", "");
        match state.action.as_str() {
            "InitProducerId" => {
                let client = client();
                // A client that must bump its epoch names its current one (KIP-360).
                let (producer_id, producer_epoch) = if client.state == "bump" {
                    (PRODUCER_ID, client.epoch)
                } else {
                    (-1, -1)
                };
                let response = self.request(Request::InitProducerId {
                    transactional_id: Some(TRANSACTIONAL_ID.into()),
                    transaction_timeout_ms: TIMEOUT_MS,
                    producer_id,
                    producer_epoch,
                    connection_id: 0,
                });
                let Response::InitProducerId { error, .. } = response else {
                    panic!("not an InitProducerId answer: {response:?}")
                };
                self.reply("InitProducerId", &error_name(error));
            }
            "AddPartitionsToTxn" => {
                let client = client();
                let p = int(state.picked("p"));
                let response = self.request(Request::AddPartitionsToTxn {
                    transactional_id: TRANSACTIONAL_ID.into(),
                    producer_id: PRODUCER_ID,
                    producer_epoch: client.epoch,
                    partitions: vec![topic_partition(p)],
                    connection_id: 0,
                });
                let Response::AddPartitionsToTxn(results) = response else {
                    panic!("not an AddPartitionsToTxn answer: {response:?}")
                };
                self.reply("AddPartitionsToTxn", &error_name(results[0].1));
            }
            "CommitTxn" | "AbortTxn" => {
                let client = client();
                let response = self.request(Request::EndTxn {
                    transactional_id: TRANSACTIONAL_ID.into(),
                    producer_id: PRODUCER_ID,
                    producer_epoch: client.epoch,
                    commit: state.action == "CommitTxn",
                    connection_id: 0,
                });
                let Response::EndTxn { error } = response else {
                    panic!("not an EndTxn answer: {response:?}")
                };
                self.reply("EndTxn", &error_name(error));
            }
            "Produce" => {
                // The client's alone.
            }
            "Fetch" => {
                self.fetch(int(state.picked("p")));
                self.reply("Fetch", "NONE");
            }
            "Timeout" => {
                // The coordinator's timer, past the transaction's timeout.
                self.now_ms += i64::from(TIMEOUT_MS) + 1_000;
                let answers = self.drive(|coordinator, context| coordinator.tick(context));
                assert!(answers.is_empty(), "{answers:?}");
            }
            "DeliverProduce" => {
                let batch = spec_batch(state.picked("b"));
                let header = data_header(&batch);
                let partition = &self.partitions[&batch.partition];
                let verdict = partition.producers.check(&header);
                let skip_verification = partition.txns.is_open(PRODUCER_ID, header.producer_epoch)
                    || matches!(
                        verdict,
                        Ok(SequenceVerdict::Duplicate { .. })
                            | Err(ErrorCode::InvalidProducerEpoch)
                    );
                if skip_verification {
                    self.produce_partition(&batch);
                } else {
                    let partition = self
                        .partitions
                        .get_mut(&batch.partition)
                        .expect("a data partition");
                    let code_token = partition
                        .txns
                        .begin_verification(PRODUCER_ID, header.producer_epoch)
                        .expect("few verifications in flight");
                    let (results, txn_number) = self.coordinator.verify(
                        &self.view,
                        TRANSACTIONAL_ID,
                        PRODUCER_ID,
                        header.producer_epoch,
                        &[topic_partition(batch.partition)],
                    );
                    let error = results[0].1;
                    // The spec's token for this verification is its partition's after the
                    // step.
                    let spec_token =
                        int(&per_partition(state, "verification", batch.partition)["token"]);
                    self.answers.push(AnswerInFlight {
                        answer: VerifyAnswer {
                            batch,
                            error: error_name(error),
                            txn_number: i64::try_from(txn_number).expect("a small number"),
                        },
                        spec_token,
                        code_token,
                    });
                }
            }
            "DeliverVerifyAnswer" => {
                let picked = state.picked("v");
                let batch = spec_batch(&picked["batch"]);
                let spec_token = int(&picked["token"]);
                let answer = VerifyAnswer {
                    batch: batch.clone(),
                    error: string(&picked["error"]).into(),
                    txn_number: int(&picked["txnNumber"]),
                };
                let index = self
                    .answers
                    .iter()
                    .position(|a| a.answer == answer && a.spec_token == spec_token)
                    .expect("the spec delivers an answer the code gave");
                let in_flight = self.answers.remove(index);
                // The spec's set holds identical answers once.
                self.answers
                    .retain(|a| a.answer != in_flight.answer || a.spec_token != spec_token);
                let partition = self
                    .partitions
                    .get_mut(&batch.partition)
                    .expect("a data partition");
                let txn_number =
                    u64::try_from(in_flight.answer.txn_number).expect("a transaction number");
                if in_flight.answer.error == "NONE"
                    && partition
                        .txns
                        .verified(PRODUCER_ID, in_flight.code_token, txn_number)
                {
                    self.produce_partition(&batch);
                } else {
                    partition
                        .txns
                        .end_verification(PRODUCER_ID, in_flight.code_token);
                    // broker/transactions.rs produce_error_of_verification.
                    let error = match in_flight.answer.error.as_str() {
                        "NONE" => "INVALID_TXN_STATE",
                        "PRODUCER_FENCED" => "INVALID_PRODUCER_EPOCH",
                        "INVALID_PRODUCER_ID_MAPPING" => "INVALID_PRODUCER_ID_MAPPING",
                        "INVALID_TXN_STATE" => "INVALID_TXN_STATE",
                        _ => "NOT_ENOUGH_REPLICAS",
                    };
                    self.reply("Produce", error);
                }
            }
            "DeliverMarker" => {
                let marker = spec_marker(state.picked("m"));
                let id = if again {
                    self.marker_requests[&marker]
                } else {
                    self.marker_requests
                        .remove(&marker)
                        .expect("the spec delivers a marker request the coordinator sent")
                };
                let number = u64::try_from(marker.txn).expect("a transaction number");
                let partition = self
                    .partitions
                    .get_mut(&marker.partition)
                    .expect("a data partition");
                if partition.txns.marker_action(PRODUCER_ID, number) == MarkerAction::Write {
                    let header = marker_header(&marker);
                    let offset = partition.log.len() as i64;
                    let control = if marker.commit {
                        CONTROL_TYPE_COMMIT
                    } else {
                        CONTROL_TYPE_ABORT
                    };
                    partition.txns.on_batch(&header, offset, Some(control));
                    partition.txns.marker_written(PRODUCER_ID, number, 0);
                    partition.producers.record(&header, offset);
                    partition.log.push(Entry {
                        kind: "marker".into(),
                        epoch: marker.epoch,
                        seq: -1,
                        txn: marker.txn,
                        commit: marker.commit,
                    });
                }
                // The partition leader's answer to the coordinator.
                let results = vec![(topic_partition(marker.partition), ErrorCode::None)];
                let answers = self.drive(|coordinator, context| {
                    coordinator.on_markers_written(context.now.wall_ms, id, results)
                });
                assert!(answers.is_empty(), "{answers:?}");
                self.reply("WriteTxnMarkers", "NONE");
            }
            other => panic!("the transactions replay does not know action {other}"),
        }
    }

    fn abstraction(&self) -> Abstraction {
        let metadata = self.metadata();
        let partitions = self
            .partitions
            .iter()
            .map(|(p, partition)| {
                let view = partition.txns.producer_view(PRODUCER_ID);
                let number = |n: Option<u64>| n.map_or(-1, |n| n as i64);
                let producer = partition
                    .producers
                    .describe()
                    .find(|(id, ..)| *id == PRODUCER_ID);
                let abstraction = PartitionAbstraction {
                    log: partition.log.clone(),
                    open: view.open.map_or((-1, -1, -1), |(first, epoch, n)| {
                        (first, epoch.into(), number(n))
                    }),
                    verification: view
                        .verification
                        .map_or((-1, -1), |(epoch, _, n)| (epoch.into(), number(n))),
                    aborted: view.aborted.iter().copied().collect(),
                    last_marker_number: number(view.last_marker_number),
                    state_epoch: producer.map_or(-1, |(_, epoch, ..)| epoch.into()),
                    last_sequence: producer.map_or(-1, |(_, _, sequence, _)| sequence.into()),
                    last_stable_offset: self.last_stable_offset(partition),
                    consumer_position: partition.position,
                    consumed: partition.consumed.clone(),
                };
                (*p, abstraction)
            })
            .collect();
        Abstraction {
            txn_state: metadata.map_or("None".into(), |m| state_name(m.state)),
            producer_epoch: metadata.map_or(-1, |m| m.producer_epoch.into()),
            last_producer_epoch: metadata.map_or(-1, |m| m.last_producer_epoch.into()),
            txn_partitions: metadata.map_or_else(BTreeSet::new, |m| {
                m.partitions
                    .iter()
                    .map(|tp| i64::from(tp.partition))
                    .collect()
            }),
            txn_number: metadata.map_or(0, |m| m.txn_number as i64),
            markers_remaining: self
                .coordinator
                .markers_remaining(TRANSACTIONAL_ID)
                .into_iter()
                .map(|tp| i64::from(tp.partition))
                .collect(),
            marker_requests: self.marker_requests.keys().cloned().collect(),
            verify_answers: self.answers.iter().map(|a| a.answer.clone()).collect(),
            partitions,
            reply: self.reply.clone(),
        }
    }
}

impl Replay for System {
    type Abstraction = Abstraction;
    const TEST: &'static str = "mbt::transactions::transactions_spec_traces_replay_on_the_code";

    fn apply(&mut self, before: &State, state: &State) -> Result<(), String> {
        self.take_step(before, state);
        Ok(())
    }

    fn spec_abstraction(state: &State) -> Abstraction {
        spec_abstraction(state)
    }

    fn code_abstraction(&self) -> Abstraction {
        self.abstraction()
    }

    fn parts(spec: &Abstraction, code: &Abstraction) -> Vec<(String, String, String)> {
        Abstraction::parts(spec, code)
    }
}

/// Replays `trace`; `defect` names a deliberate defect the coordinator and the partitions
/// run with.
fn replay(trace: &Trace, defect: Option<&str>) -> Result<Replayed, Box<Divergence>> {
    super::replay_on(trace, System::new(defect))
}

fn traces() -> &'static [Trace] {
    super::traces(&SPEC)
}

/// Every trace of the spec replays on the code without a divergence.
#[test]
fn transactions_spec_traces_replay_on_the_code() {
    let traces = traces();
    let mut compared = 0;
    for trace in traces {
        match replay(trace, None) {
            Ok(replayed) => compared += replayed.steps(),
            Err(divergence) => panic!("{divergence}"),
        }
    }
    eprintln!(
        "mbt transactions: {} traces, {compared} steps compared",
        traces.len()
    );
}

/// The comparison is not vacuous: a trace whose spec state was altered at one step (the
/// coordinator's transaction number one higher) diverges at that step.
#[test]
fn transactions_replay_reports_an_altered_spec_state() {
    let mut trace = traces()
        .iter()
        .find(|trace| trace.states.len() > 5)
        .expect("a trace of more than 5 states")
        .clone();
    let number = int(trace.states[5].var("txnNumber"));
    trace.states[5].vars.insert(
        "txnNumber".into(),
        serde_json::json!({ "#bigint": (number + 1).to_string() }),
    );
    let divergence = replay(&trace, None).expect_err("the altered state is noticed");
    assert_eq!(divergence.step, 5);
    assert!(
        divergence.differences[0].starts_with("txnNumber:"),
        "{divergence}"
    );
}

/// Each defect of the transaction coordinator and of a partition's read_committed view
/// (`PartitionTransactions`) that the spec models, switched on in the real code, makes some
/// trace of the correct spec diverge.
#[cfg(feature = "defects")]
#[test]
fn transaction_defects_diverge_from_the_spec() {
    use crate::defects::Defect;
    for defect in [
        Defect::CompleteBeforeMarkers,
        Defect::EmptyAbortedTransactions,
        Defect::LastStableOffsetIgnoresOpenTransactions,
    ] {
        super::assert_defect_caught("transactions", defect, traces(), |trace| {
            replay(trace, Some(defect.name()))
        });
    }
}
