//! The transaction coordinator in the broker: transactional ids whose state lives in the
//! replicated topic `__transaction_state`, markers written into every partition of a
//! transaction, and the partition leaders' side of the protocol (verification of a
//! transaction's first append, marker writes).
//!
//! The topic ([`TRANSACTION_STATE_TOPIC`], `transaction_state_partitions` partitions,
//! replicated like any topic) is created the first time a client looks for a transaction
//! coordinator. A transactional id belongs to the partition its id hashes to (Kafka's hash),
//! and its coordinator is that partition's leader. Each batch holds JSON [`TxnRecord`]s:
//! the whole [`TxnMetadata`] of an id after a transition.
//!
//! Every replica applies the committed records in offset order to a view of each id's
//! state. The leader, once its high watermark has reached its epoch, coordinates: it
//! decides each request with the pure functions of [`crate::transactions`], writes the
//! resulting state, and answers once that record is committed (so an answer is never
//! undone by a failover). On taking over, it finishes every transaction it finds prepared
//! (PrepareCommit or PrepareAbort) by writing the missing markers.
//!
//! Markers: once a PrepareCommit/PrepareAbort record is committed, the coordinator asks
//! each partition's leader (`WriteTxnMarkers`, or a call on this node) to append the marker;
//! a leader answers once the marker is committed, like an acks=all write. Partitions not
//! answered are asked again every `MARKER_RETRY_MS`, at whichever node leads them then.
//! When every partition has answered, the coordinator writes CompleteCommit/CompleteAbort.
//!
//! Invariants:
//! - a coordinator's answer that changed an id's state is sent only once the record is
//!   committed in its epoch, and only while it still coordinates: a later coordinator
//!   loads the same state;
//! - a prepared transaction completes only after every one of its partitions holds its
//!   marker, committed (`on_markers_written`);
//! - while an id has a record in flight, requests that would change it answer
//!   CONCURRENT_TRANSACTIONS;
//! - an open transaction past its timeout is aborted under a bumped epoch, fencing its
//!   producer (`transactions_tick`);
//! - a leader appends a transaction's first batch to a partition only after the
//!   coordinator confirmed the partition is in that transaction (`start_verification`),
//!   and a marker that arrived meanwhile voids the confirmation.

use super::{Broker, WaitingProduce, WriteReply};
use crate::api::{
    Acks, DescribedProducers, ErrorCode, ListedTransaction, Output, PeerMessage, ProducePartition,
    ProducePartitionResult, ProducerDescription, Request, RequestId, Response,
    TransactionDescription, TxnState,
};
use crate::batch::BatchHeader;
use crate::internal_log::{replay_recovered, CommitQueue};
use crate::metadata::TopicPartition;
use crate::partition_txns::MarkerAction;
use crate::records::decode_json_records;
use crate::replication::NodeId;
use crate::transactions::{
    self, transaction_partition_of, Decision, TxnMetadata, TxnRecord, TRANSACTION_STATE_TOPIC,
};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// How long a marker request goes unanswered before it is sent again.
const MARKER_RETRY_MS: i64 = 500;
/// How long a leader waits for the coordinator to verify a transaction's first append.
const VERIFY_TIMEOUT_MS: i64 = 5_000;
/// How often open transactions are checked against their timeouts (Kafka: 10 s).
const TIMEOUT_CHECK_INTERVAL_MS: i64 = 1_000;
/// Verifications a leader keeps waiting at once; more are refused (retriable).
const VERIFICATIONS_IN_FLIGHT_MAX: usize = 10_000;
/// Transactional ids one coordinator holds; InitProducerId of a new id beyond it is
/// refused (Kafka has no such limit; memory is finite).
pub const TRANSACTIONAL_IDS_MAX: usize = 100_000;

/// The transactional ids of one `__transaction_state` partition hosted here.
#[derive(Debug, Default)]
struct TxnShard {
    /// Batches not applied yet.
    log: CommitQueue<TxnRecord>,
    committed: BTreeMap<String, TxnMetadata>,
    /// The leader epoch in which this node coordinates the shard's ids.
    coordinating: Option<i32>,
    /// Ids with a record written and not applied yet: the offset its commit must reach.
    writes: BTreeMap<String, i64>,
    /// Prepared transactions whose markers are being written.
    markers: BTreeMap<String, MarkerJob>,
    /// Set when applied state changed: prepared transactions get marker jobs.
    dirty: bool,
}

/// The markers of one prepared transaction.
#[derive(Debug, Clone)]
struct MarkerJob {
    txn_number: u64,
    commit: bool,
    producer_id: i64,
    producer_epoch: i16,
    remaining: BTreeSet<TopicPartition>,
    next_send_ms: i64,
}

/// A marker request in flight.
#[derive(Debug, Clone)]
struct MarkerRequest {
    shard: i32,
    transactional_id: String,
    txn_number: u64,
    sent_ms: i64,
}

/// Replies held until a record is committed.
#[derive(Debug)]
struct HeldTxnReplies {
    shard: i32,
    commit_end: i64,
    epoch: i32,
    replies: Vec<(RequestId, Response)>,
}

/// What continues once a verification is answered.
#[derive(Debug)]
pub(super) enum AfterVerification {
    Produce {
        id: RequestId,
        acks: Acks,
        partitions: Vec<ProducePartition>,
    },
    TxnOffsetCommit {
        id: RequestId,
        request: Request,
    },
}

/// A transaction's first append waiting for the coordinator's answer.
#[derive(Debug)]
struct PendingVerification {
    producer_id: i64,
    deadline_ms: i64,
    /// (partition, producer id, token) of each partition being verified.
    tokens: Vec<(TopicPartition, i64, u64)>,
    then: AfterVerification,
}

/// The transaction coordinator's state on this node (and its partition-leader side).
#[derive(Debug, Default)]
pub(super) struct TxnCoordinator {
    shards: BTreeMap<i32, TxnShard>,
    held: Vec<HeldTxnReplies>,
    marker_requests: BTreeMap<u64, MarkerRequest>,
    next_request_id: u64,
    /// Answers of marker writes this node made for its own coordinator.
    pub(super) local_marker_results: Vec<(u64, Vec<(TopicPartition, ErrorCode)>)>,
    verifications: BTreeMap<u64, PendingVerification>,
    /// How many of `verifications` each producer has waiting: its next produces queue
    /// behind them.
    verifying_producers: BTreeMap<i64, usize>,
    next_timeout_check_ms: i64,
    /// The newest client connection seen per transactional id (this node's numbering).
    newest_connections: BTreeMap<String, u64>,
}

impl TxnCoordinator {
    /// A `__transaction_state` partition is hosted here from now on; `recovered` holds its
    /// stored batches (below `log_end`) to replay.
    pub(super) fn open_shard(&mut self, partition: i32, recovered: Option<&Bytes>, log_end: i64) {
        let mut shard = TxnShard::default();
        replay_recovered(
            TRANSACTION_STATE_TOPIC,
            partition,
            recovered,
            log_end,
            |header, base, last, bytes| shard.on_appended(header, base, last, bytes),
        );
        self.shards.insert(partition, shard);
    }

    pub(super) fn close_shard(&mut self, partition: i32) {
        self.shards.remove(&partition);
    }

    pub(super) fn on_appended(
        &mut self,
        partition: i32,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) {
        if let Some(shard) = self.shards.get_mut(&partition) {
            shard.on_appended(header, base_offset, last_offset, bytes);
        }
    }

    pub(super) fn on_truncated(&mut self, partition: i32, offset: i64) {
        if let Some(shard) = self.shards.get_mut(&partition) {
            shard.log.truncate(offset);
        }
    }

    /// The earliest time the coordinator's timers have work.
    pub(super) fn next_wakeup_ms(&self) -> Option<i64> {
        let coordinating = self
            .shards
            .values()
            .any(|shard| shard.coordinating.is_some());
        self.shards
            .values()
            .flat_map(|shard| shard.markers.values().map(|job| job.next_send_ms))
            .chain(
                self.verifications
                    .values()
                    .map(|verification| verification.deadline_ms),
            )
            .chain(coordinating.then_some(self.next_timeout_check_ms))
            .min()
    }

    /// Whether a request for `transactional_id` came on a connection older than the newest
    /// one this node has seen for that id (a request delayed on a connection its client
    /// gave up on; see `transactions`); remembers the newest. Connection 0 is unknown.
    fn is_from_stale_connection(&mut self, transactional_id: &str, connection_id: u64) -> bool {
        if connection_id == 0 {
            return false;
        }
        match self.newest_connections.get_mut(transactional_id) {
            Some(newest) if connection_id < *newest => true,
            Some(newest) => {
                *newest = connection_id;
                false
            }
            None => {
                if self.newest_connections.len() < TRANSACTIONAL_IDS_MAX {
                    self.newest_connections
                        .insert(transactional_id.to_string(), connection_id);
                }
                false
            }
        }
    }

    /// Whether the producer has a produce waiting for a verification on this node.
    pub(super) fn is_verifying(&self, producer_id: i64) -> bool {
        self.verifying_producers.contains_key(&producer_id)
    }

    /// Takes a waiting verification out (answered or timed out).
    fn take_verification(&mut self, id: u64) -> Option<PendingVerification> {
        let pending = self.verifications.remove(&id)?;
        if let Some(count) = self.verifying_producers.get_mut(&pending.producer_id) {
            *count -= 1;
            if *count == 0 {
                self.verifying_producers.remove(&pending.producer_id);
            }
        }
        Some(pending)
    }

    fn next_id(&mut self) -> u64 {
        self.next_request_id += 1;
        self.next_request_id
    }
}

impl TxnShard {
    fn on_appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) {
        // Control batches (a new leader's epoch marker) carry no records but are applied
        // like any batch so that `applied_end` follows the log.
        let records = decode_json_records::<TxnRecord>(header, bytes).unwrap_or_else(|reason| {
            tracing::error!(base_offset, %reason, "undecodable transaction-state batch skipped");
            Vec::new()
        });
        self.log.push(base_offset, last_offset, records);
    }

    /// Applies the batches below `committed`, in order.
    fn apply_committed(&mut self, committed: i64) {
        let applied_before = self.log.applied_end();
        for record in self.log.take_committed(committed) {
            match record {
                TxnRecord::Metadata(metadata) => {
                    self.committed
                        .insert(metadata.transactional_id.clone(), metadata);
                }
                TxnRecord::Expired { transactional_id } => {
                    self.committed.remove(&transactional_id);
                }
            }
        }
        let applied_end = self.log.applied_end();
        self.dirty |= applied_end != applied_before;
        self.writes
            .retain(|_, commit_end| *commit_end > applied_end);
    }

    fn is_pending(&self, transactional_id: &str) -> bool {
        self.writes.contains_key(transactional_id)
    }
}

/// The transactional id and client connection of a request that changes a transaction.
fn transactional_connection(request: &Request) -> Option<(&str, u64)> {
    match request {
        Request::InitProducerId {
            transactional_id: Some(transactional_id),
            connection_id,
            ..
        }
        | Request::AddPartitionsToTxn {
            transactional_id,
            connection_id,
            ..
        }
        | Request::AddOffsetsToTxn {
            transactional_id,
            connection_id,
            ..
        }
        | Request::EndTxn {
            transactional_id,
            connection_id,
            ..
        } => Some((transactional_id.as_str(), *connection_id)),
        _ => None,
    }
}

/// The shape of the answer to a transactional request (its error is set by `txn_failure`).
fn stale_request_response(request: Request) -> Response {
    match request {
        Request::AddPartitionsToTxn { partitions, .. } => Response::AddPartitionsToTxn(
            partitions
                .into_iter()
                .map(|partition| (partition, ErrorCode::None))
                .collect(),
        ),
        Request::AddOffsetsToTxn { .. } => Response::AddOffsetsToTxn {
            error: ErrorCode::None,
        },
        Request::EndTxn { .. } => Response::EndTxn {
            error: ErrorCode::None,
        },
        _ => Response::InitProducerId {
            error: ErrorCode::None,
            producer_id: -1,
            producer_epoch: -1,
        },
    }
}

/// The answer a held reply gets instead when its record could not be committed.
fn txn_failure(response: Response, error: ErrorCode) -> Response {
    match response {
        Response::InitProducerId { .. } => Response::InitProducerId {
            error,
            producer_id: -1,
            producer_epoch: -1,
        },
        Response::AddPartitionsToTxn(results) => Response::AddPartitionsToTxn(
            results
                .into_iter()
                .map(|(partition, _)| (partition, error))
                .collect(),
        ),
        Response::AddOffsetsToTxn { .. } => Response::AddOffsetsToTxn { error },
        Response::EndTxn { .. } => Response::EndTxn { error },
        other => other,
    }
}

/// The error a produce answers when its transaction's verification failed: the old
/// clients' errors (retriable NOT_ENOUGH_REPLICAS when the coordinator was not reached).
fn produce_error_of_verification(error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch => {
            ErrorCode::InvalidProducerEpoch
        }
        ErrorCode::InvalidProducerIdMapping => ErrorCode::InvalidProducerIdMapping,
        ErrorCode::InvalidTxnState => ErrorCode::InvalidTxnState,
        _ => ErrorCode::NotEnoughReplicas,
    }
}

impl Broker {
    /// Every transaction API except TxnOffsetCommit (a group API, in `coordinator.rs`).
    pub(super) fn transaction_request(
        &mut self,
        now_ms: i64,
        id: RequestId,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        if let Some((transactional_id, connection_id)) = transactional_connection(&request) {
            if self
                .txn_coordinator
                .is_from_stale_connection(transactional_id, connection_id)
            {
                tracing::info!(%transactional_id, connection_id,
                    "a transactional request from a connection older than one already seen for its id: refused");
                let response =
                    txn_failure(stale_request_response(request), ErrorCode::NotCoordinator);
                outputs.push(Output::Respond { id, response });
                return;
            }
        }
        let response = match request {
            Request::FindTransactionCoordinator { transactional_ids } => Response::FindCoordinator(
                self.find_coordinators(now_ms, TRANSACTION_STATE_TOPIC, transactional_ids, outputs),
            ),
            Request::InitProducerId {
                transactional_id: Some(transactional_id),
                transaction_timeout_ms,
                producer_id,
                producer_epoch,
                ..
            } => {
                let expected = (producer_id >= 0).then_some((producer_id, producer_epoch));
                self.init_transactional_producer(
                    now_ms,
                    id,
                    transactional_id,
                    transaction_timeout_ms,
                    expected,
                    outputs,
                );
                return;
            }
            Request::AddPartitionsToTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                ..
            } => {
                self.add_partitions_to_txn(
                    now_ms,
                    id,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    partitions,
                    outputs,
                );
                return;
            }
            Request::AddOffsetsToTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                group_id,
                ..
            } => {
                self.add_offsets_to_txn(
                    now_ms,
                    id,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    group_id,
                    outputs,
                );
                return;
            }
            Request::EndTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                ..
            } => {
                let Some(index) =
                    self.txn_shard_or_reply(id, &transactional_id, outputs, |error| {
                        Response::EndTxn { error }
                    })
                else {
                    return;
                };
                let shard = &self.txn_coordinator.shards[&index];
                let decision = transactions::end_transaction(
                    shard.committed.get(&transactional_id),
                    shard.is_pending(&transactional_id),
                    producer_id,
                    producer_epoch,
                    commit,
                    now_ms,
                );
                self.carry_out(
                    now_ms,
                    id,
                    index,
                    &transactional_id,
                    decision,
                    outputs,
                    |error, _| Response::EndTxn { error },
                );
                return;
            }
            Request::DescribeTransactions { transactional_ids } => Response::DescribeTransactions(
                transactional_ids
                    .into_iter()
                    .map(|transactional_id| self.describe_transaction(transactional_id))
                    .collect(),
            ),
            Request::ListTransactions {
                state_filters,
                producer_id_filters,
                min_duration_ms,
            } => {
                self.list_transactions(now_ms, state_filters, producer_id_filters, min_duration_ms)
            }
            Request::DescribeProducers { partitions } => Response::DescribeProducers(
                partitions
                    .into_iter()
                    .map(|partition| self.describe_producers(partition))
                    .collect(),
            ),
            other => unreachable!("not a transaction request: {other:?}"),
        };
        outputs.push(Output::Respond { id, response });
    }

    /// The `__transaction_state` partition of an id this node coordinates, or why not.
    fn coordinated_txn_shard(&self, transactional_id: &str) -> Result<i32, ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        let topic = self
            .metadata
            .topics
            .get(TRANSACTION_STATE_TOPIC)
            .ok_or(ErrorCode::NotCoordinator)?;
        let index = transaction_partition_of(transactional_id, topic.partition_count);
        let shard = self
            .txn_coordinator
            .shards
            .get(&index)
            .ok_or(ErrorCode::NotCoordinator)?;
        if shard.coordinating.is_some() {
            return Ok(index);
        }
        let leading = self
            .partitions
            .get(&TopicPartition::new(TRANSACTION_STATE_TOPIC, index))
            .is_some_and(|state| state.replica.is_leader());
        Err(if leading {
            ErrorCode::CoordinatorLoadInProgress
        } else {
            ErrorCode::NotCoordinator
        })
    }

    /// The coordinated shard of an id, or answers the request with `failure(error)`.
    fn txn_shard_or_reply(
        &self,
        id: RequestId,
        transactional_id: &str,
        outputs: &mut Vec<Output>,
        failure: impl FnOnce(ErrorCode) -> Response,
    ) -> Option<i32> {
        match self.coordinated_txn_shard(transactional_id) {
            Ok(index) => Some(index),
            Err(error) => {
                outputs.push(Output::Respond {
                    id,
                    response: failure(error),
                });
                None
            }
        }
    }

    fn init_transactional_producer(
        &mut self,
        now_ms: i64,
        id: RequestId,
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        outputs: &mut Vec<Output>,
    ) {
        let failure = |error| Response::InitProducerId {
            error,
            producer_id: -1,
            producer_epoch: -1,
        };
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_timeout_max_ms {
            outputs.push(Output::Respond {
                id,
                response: failure(ErrorCode::InvalidTransactionTimeout),
            });
            return;
        }
        let Some(index) = self.txn_shard_or_reply(id, &transactional_id, outputs, failure) else {
            return;
        };
        let shard = &self.txn_coordinator.shards[&index];
        let current = shard.committed.get(&transactional_id).cloned();
        let pending = shard.is_pending(&transactional_id);
        if current.is_none() && shard.committed.len() >= TRANSACTIONAL_IDS_MAX {
            outputs.push(Output::Respond {
                id,
                response: failure(ErrorCode::CoordinatorNotAvailable),
            });
            return;
        }
        let decision = transactions::init_producer_id(
            current.as_ref(),
            pending,
            &transactional_id,
            timeout_ms,
            expected,
            now_ms,
            || self.allocate_producer_id(outputs),
        );
        self.carry_out(
            now_ms,
            id,
            index,
            &transactional_id,
            decision,
            outputs,
            |error, state| match (error, state) {
                (ErrorCode::None, Some(state)) => Response::InitProducerId {
                    error,
                    producer_id: state.producer_id,
                    producer_epoch: state.producer_epoch,
                },
                _ => failure(error),
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn add_partitions_to_txn(
        &mut self,
        now_ms: i64,
        id: RequestId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        outputs: &mut Vec<Output>,
    ) {
        let each = |error: ErrorCode, partitions: &[TopicPartition]| {
            Response::AddPartitionsToTxn(partitions.iter().map(|p| (p.clone(), error)).collect())
        };
        let Some(index) = self.txn_shard_or_reply(id, &transactional_id, outputs, |error| {
            each(error, &partitions)
        }) else {
            return;
        };
        // Unknown or internal partitions fail the request; the others are not attempted.
        let unknown: BTreeSet<&TopicPartition> = partitions
            .iter()
            .filter(|partition| {
                crate::broker::is_internal_topic(&partition.topic)
                    || !self
                        .metadata
                        .topics
                        .get(&partition.topic)
                        .is_some_and(|topic| {
                            (0..topic.partition_count).contains(&partition.partition)
                        })
            })
            .collect();
        if !unknown.is_empty() {
            let results = partitions
                .iter()
                .map(|partition| {
                    let error = if unknown.contains(partition) {
                        ErrorCode::UnknownTopicOrPartition
                    } else {
                        ErrorCode::OperationNotAttempted
                    };
                    (partition.clone(), error)
                })
                .collect();
            outputs.push(Output::Respond {
                id,
                response: Response::AddPartitionsToTxn(results),
            });
            return;
        }
        let shard = &self.txn_coordinator.shards[&index];
        let decision = transactions::add_partitions(
            shard.committed.get(&transactional_id),
            shard.is_pending(&transactional_id),
            producer_id,
            producer_epoch,
            &partitions,
            now_ms,
        );
        self.carry_out(
            now_ms,
            id,
            index,
            &transactional_id,
            decision,
            outputs,
            |error, _| each(error, &partitions),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn add_offsets_to_txn(
        &mut self,
        now_ms: i64,
        id: RequestId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group_id: String,
        outputs: &mut Vec<Output>,
    ) {
        let Some(index) = self.txn_shard_or_reply(id, &transactional_id, outputs, |error| {
            Response::AddOffsetsToTxn { error }
        }) else {
            return;
        };
        // As in Kafka, the group's partition comes from the configured partition count
        // when the offsets topic does not exist yet (it is created with that count); the
        // client's TxnOffsetCommit will find the group's coordinator there.
        let offsets_partitions = match self.metadata.topics.get(super::OFFSETS_TOPIC) {
            Some(topic) => topic.partition_count,
            None => {
                self.request_internal_topic(now_ms, super::OFFSETS_TOPIC, outputs);
                self.config.offsets_partitions
            }
        };
        let partition = TopicPartition::new(
            super::OFFSETS_TOPIC,
            super::offsets_partition_of(&group_id, offsets_partitions),
        );
        let shard = &self.txn_coordinator.shards[&index];
        let decision = transactions::add_partitions(
            shard.committed.get(&transactional_id),
            shard.is_pending(&transactional_id),
            producer_id,
            producer_epoch,
            &[partition],
            now_ms,
        );
        self.carry_out(
            now_ms,
            id,
            index,
            &transactional_id,
            decision,
            outputs,
            |error, _| Response::AddOffsetsToTxn { error },
        );
    }

    /// Carries out a coordinator decision: answers at once, or writes the new state and
    /// holds the answer until it is committed. `respond` builds the answer from the error
    /// and the state the client should learn (the new one, or the current one).
    #[allow(clippy::too_many_arguments)]
    fn carry_out(
        &mut self,
        now_ms: i64,
        id: RequestId,
        index: i32,
        transactional_id: &str,
        decision: Decision,
        outputs: &mut Vec<Output>,
        respond: impl FnOnce(ErrorCode, Option<&TxnMetadata>) -> Response,
    ) {
        match decision {
            Decision::Reply(error) => {
                let current = self.txn_coordinator.shards[&index]
                    .committed
                    .get(transactional_id);
                outputs.push(Output::Respond {
                    id,
                    response: respond(error, current),
                });
            }
            Decision::Write { next, reply } => {
                let response = respond(reply, Some(&next));
                self.write_txn_record(
                    now_ms,
                    index,
                    transactional_id,
                    TxnRecord::Metadata(next),
                    Some((id, response)),
                    outputs,
                );
            }
        }
    }

    /// Writes one record of an id to its shard's partition; the reply (if any) waits for
    /// its commit.
    fn write_txn_record(
        &mut self,
        now_ms: i64,
        index: i32,
        transactional_id: &str,
        record: TxnRecord,
        reply: Option<(RequestId, Response)>,
        outputs: &mut Vec<Output>,
    ) {
        if let TxnRecord::Metadata(next) = &record {
            let current = self.txn_coordinator.shards[&index]
                .committed
                .get(transactional_id)
                .map_or(TxnState::Empty, |current| current.state);
            let through_fence =
                current == TxnState::Ongoing && next.state == TxnState::PrepareAbort;
            if !through_fence {
                if let Err(reason) = TxnMetadata::check_transition(current, next.state) {
                    // Fresh ids start Empty from nothing; anything else is a bug.
                    assert!(
                        next.state == TxnState::Empty,
                        "{transactional_id}: {reason}"
                    );
                }
            }
        }
        let partition = TopicPartition::new(TRANSACTION_STATE_TOPIC, index);
        match self.append_internal_batch(now_ms, &partition, &[record], outputs) {
            Some((commit_end, epoch)) => {
                if let Some(shard) = self.txn_coordinator.shards.get_mut(&index) {
                    shard
                        .writes
                        .insert(transactional_id.to_string(), commit_end);
                }
                if let Some(reply) = reply {
                    self.txn_coordinator.held.push(HeldTxnReplies {
                        shard: index,
                        commit_end,
                        epoch,
                        replies: vec![reply],
                    });
                }
            }
            None => {
                if let Some((id, response)) = reply {
                    outputs.push(Output::Respond {
                        id,
                        response: txn_failure(response, ErrorCode::NotCoordinator),
                    });
                }
            }
        }
    }

    fn describe_transaction(&self, transactional_id: String) -> TransactionDescription {
        let mut description = TransactionDescription {
            transactional_id,
            error: ErrorCode::None,
            state: TxnState::Empty,
            producer_id: -1,
            producer_epoch: -1,
            timeout_ms: -1,
            start_ms: -1,
            partitions: Vec::new(),
        };
        let index = match self.coordinated_txn_shard(&description.transactional_id) {
            Ok(index) => index,
            Err(error) => {
                description.error = error;
                return description;
            }
        };
        let shard = &self.txn_coordinator.shards[&index];
        match shard.committed.get(&description.transactional_id) {
            Some(state) => {
                description.state = state.state;
                description.producer_id = state.producer_id;
                description.producer_epoch = state.producer_epoch;
                description.timeout_ms = state.timeout_ms;
                description.start_ms = state.txn_start_ms;
                description.partitions = state.partitions.iter().cloned().collect();
            }
            None => description.error = ErrorCode::TransactionalIdNotFound,
        }
        description
    }

    fn list_transactions(
        &self,
        now_ms: i64,
        state_filters: Vec<String>,
        producer_id_filters: Vec<i64>,
        min_duration_ms: i64,
    ) -> Response {
        const STATES: [TxnState; 8] = [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
            TxnState::PrepareEpochFence,
            TxnState::Dead,
        ];
        let unknown_state_filters: Vec<String> = state_filters
            .iter()
            .filter(|name| {
                !STATES
                    .iter()
                    .any(|state| state.kafka_name() == name.as_str())
            })
            .cloned()
            .collect();
        let transactions = self
            .txn_coordinator
            .shards
            .values()
            .filter(|shard| shard.coordinating.is_some())
            .flat_map(|shard| shard.committed.values())
            .filter(|state| {
                state_filters.is_empty()
                    || state_filters
                        .iter()
                        .any(|name| name.as_str() == state.state.kafka_name())
            })
            .filter(|state| {
                producer_id_filters.is_empty() || producer_id_filters.contains(&state.producer_id)
            })
            .filter(|state| {
                min_duration_ms < 0
                    || (state.txn_start_ms >= 0 && now_ms - state.txn_start_ms >= min_duration_ms)
            })
            .map(|state| ListedTransaction {
                transactional_id: state.transactional_id.clone(),
                producer_id: state.producer_id,
                state: state.state,
            })
            .collect();
        Response::ListTransactions {
            error: ErrorCode::None,
            transactions,
            unknown_state_filters,
        }
    }

    fn describe_producers(&self, partition: TopicPartition) -> DescribedProducers {
        match self.led_partition(&partition) {
            Ok(state) => DescribedProducers {
                producers: state
                    .producers
                    .describe()
                    .map(
                        |(producer_id, producer_epoch, last_sequence, _)| ProducerDescription {
                            producer_id,
                            producer_epoch,
                            last_sequence,
                            last_timestamp_ms: -1,
                            coordinator_epoch: -1,
                            current_txn_start_offset: state.txns.open_first_offset(producer_id),
                        },
                    )
                    .collect(),
                partition,
                error: ErrorCode::None,
            },
            Err(error) => DescribedProducers {
                partition,
                error,
                producers: Vec::new(),
            },
        }
    }

    // ----- after every step and on ticks -----

    /// After every step: applies what the transaction-state partitions committed, loads or
    /// drops the ids of partitions whose leadership changed, releases held replies, and
    /// sends the markers that are due.
    pub(super) fn settle_transactions(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        for (index, shard) in &mut self.txn_coordinator.shards {
            let Some(state) = self
                .partitions
                .get(&TopicPartition::new(TRANSACTION_STATE_TOPIC, *index))
            else {
                continue;
            };
            shard.apply_committed(state.log.high_watermark());
            let leading = (state.replica.is_leader()
                && state.replica.serves_reads(&state.log)
                && shard.log.applied_end() >= state.log.high_watermark())
            .then(|| state.replica.epoch());
            if shard.coordinating != leading {
                if shard.coordinating.is_some() {
                    tracing::info!(partition = index, "no longer coordinating its transactions");
                    shard.markers.clear();
                    shard.writes.clear();
                }
                if let Some(epoch) = leading {
                    tracing::info!(
                        partition = index,
                        epoch,
                        ids = shard.committed.len(),
                        "coordinating the transactional ids of a transaction-state partition"
                    );
                    shard.dirty = true;
                }
                shard.coordinating = leading;
            }
            if shard.coordinating.is_some() && std::mem::take(&mut shard.dirty) {
                // Every prepared transaction gets its markers written (those a previous
                // coordinator left unfinished too).
                for (transactional_id, txn) in &shard.committed {
                    let preparing =
                        matches!(txn.state, TxnState::PrepareCommit | TxnState::PrepareAbort);
                    if preparing
                        && !shard.markers.contains_key(transactional_id)
                        && !shard.writes.contains_key(transactional_id)
                    {
                        shard.markers.insert(
                            transactional_id.clone(),
                            MarkerJob {
                                txn_number: txn.txn_number,
                                commit: txn.state == TxnState::PrepareCommit,
                                producer_id: txn.producer_id,
                                producer_epoch: txn.producer_epoch,
                                remaining: txn.partitions.clone(),
                                next_send_ms: now_ms,
                            },
                        );
                    }
                }
            }
        }
        self.release_held_txn_replies(outputs);
        self.send_due_markers(now_ms, outputs);
    }

    fn release_held_txn_replies(&mut self, outputs: &mut Vec<Output>) {
        if self.txn_coordinator.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.txn_coordinator.held);
        for replies in held {
            let shard = self.txn_coordinator.shards.get(&replies.shard);
            let applied = shard.is_some_and(|shard| shard.log.applied_end() >= replies.commit_end);
            let still_leading =
                shard.is_some_and(|shard| shard.coordinating == Some(replies.epoch));
            if applied && still_leading {
                outputs.extend(
                    replies
                        .replies
                        .into_iter()
                        .map(|(id, response)| Output::Respond { id, response }),
                );
            } else if !still_leading {
                outputs.extend(
                    replies
                        .replies
                        .into_iter()
                        .map(|(id, response)| Output::Respond {
                            id,
                            response: txn_failure(response, ErrorCode::NotCoordinator),
                        }),
                );
            } else {
                self.txn_coordinator.held.push(replies);
            }
        }
    }

    /// Sends the marker requests that are due, grouped by partition leader.
    fn send_due_markers(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        let mut due = Vec::new();
        for (index, shard) in &mut self.txn_coordinator.shards {
            let Some(coordinator_epoch) = shard.coordinating else {
                continue;
            };
            for (transactional_id, job) in &mut shard.markers {
                if job.next_send_ms <= now_ms && !job.remaining.is_empty() {
                    job.next_send_ms = now_ms + MARKER_RETRY_MS;
                    due.push((
                        *index,
                        coordinator_epoch,
                        transactional_id.clone(),
                        job.clone(),
                    ));
                }
            }
        }
        for (index, coordinator_epoch, transactional_id, job) in due {
            let mut by_leader: BTreeMap<NodeId, Vec<TopicPartition>> = BTreeMap::new();
            let mut gone = Vec::new();
            for partition in &job.remaining {
                if !self.metadata.topics.contains_key(&partition.topic) {
                    // A deleted topic holds nothing to mark.
                    gone.push((partition.clone(), ErrorCode::UnknownTopicOrPartition));
                    continue;
                }
                if let Some((_, leader)) = self.partition_leader(partition, now_ms) {
                    by_leader.entry(leader).or_default().push(partition.clone());
                }
            }
            if !gone.is_empty() {
                let id = self.txn_coordinator.next_id();
                self.txn_coordinator.marker_requests.insert(
                    id,
                    MarkerRequest {
                        shard: index,
                        transactional_id: transactional_id.clone(),
                        txn_number: job.txn_number,
                        sent_ms: now_ms,
                    },
                );
                self.txn_coordinator.local_marker_results.push((id, gone));
            }
            for (leader, partitions) in by_leader {
                let id = self.txn_coordinator.next_id();
                self.txn_coordinator.marker_requests.insert(
                    id,
                    MarkerRequest {
                        shard: index,
                        transactional_id: transactional_id.clone(),
                        txn_number: job.txn_number,
                        sent_ms: now_ms,
                    },
                );
                let markers = MarkerWrite {
                    coordinator_epoch,
                    txn_number: job.txn_number,
                    producer_id: job.producer_id,
                    producer_epoch: job.producer_epoch,
                    commit: job.commit,
                };
                if leader == self.config.node_id {
                    let reply = WriteReply::Markers {
                        to: self.config.node_id,
                        id,
                    };
                    self.write_markers(now_ms, reply, markers, partitions, outputs);
                } else {
                    outputs.push(Output::Send {
                        to: leader,
                        message: PeerMessage::WriteTxnMarkers {
                            id,
                            coordinator_epoch,
                            txn_number: job.txn_number,
                            producer_id: job.producer_id,
                            producer_epoch: job.producer_epoch,
                            commit: job.commit,
                            partitions,
                        },
                    });
                }
            }
        }
    }

    /// A partition leader's answer to a marker request: the partitions that hold their
    /// marker are done; when none is left, the transaction completes.
    pub(super) fn on_markers_written(
        &mut self,
        now_ms: i64,
        id: u64,
        results: Vec<(TopicPartition, ErrorCode)>,
        outputs: &mut Vec<Output>,
    ) {
        let Some(request) = self.txn_coordinator.marker_requests.remove(&id) else {
            return;
        };
        let Some(shard) = self.txn_coordinator.shards.get_mut(&request.shard) else {
            return;
        };
        let Some(job) = shard.markers.get_mut(&request.transactional_id) else {
            return;
        };
        if job.txn_number != request.txn_number {
            return;
        }
        #[cfg(feature = "defects")]
        if self.config.defect == Some(crate::defects::Defect::CompleteBeforeMarkers) {
            job.remaining.clear();
        }
        for (partition, error) in results {
            match error {
                ErrorCode::None | ErrorCode::UnknownTopicOrPartition => {
                    job.remaining.remove(&partition);
                }
                other => {
                    tracing::debug!(%partition, ?other, "marker not written yet; retrying");
                }
            }
        }
        if !job.remaining.is_empty() {
            return;
        }
        shard.markers.remove(&request.transactional_id);
        let Some(prepared) = shard.committed.get(&request.transactional_id) else {
            return;
        };
        let completed = prepared.completed(now_ms);
        tracing::debug!(transactional_id = %request.transactional_id, state = ?completed.state, "transaction complete");
        self.write_txn_record(
            now_ms,
            request.shard,
            &request.transactional_id,
            TxnRecord::Metadata(completed),
            None,
            outputs,
        );
    }

    /// Timers: verifications that waited too long, open transactions past their timeout,
    /// ids past their expiration, forgotten marker requests.
    pub(super) fn transactions_tick(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        let expired: Vec<u64> = self
            .txn_coordinator
            .verifications
            .iter()
            .filter(|(_, verification)| verification.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(pending) = self.txn_coordinator.take_verification(id) {
                self.finish_verification(now_ms, pending, Vec::new(), 0, outputs);
            }
        }
        if now_ms < self.txn_coordinator.next_timeout_check_ms {
            return;
        }
        self.txn_coordinator.next_timeout_check_ms = now_ms + TIMEOUT_CHECK_INTERVAL_MS;
        self.txn_coordinator
            .marker_requests
            .retain(|_, request| now_ms - request.sent_ms < 60_000);
        let expiration_ms = self.config.transactional_id_expiration_ms;
        let mut work = Vec::new();
        for (index, shard) in &self.txn_coordinator.shards {
            if shard.coordinating.is_none() {
                continue;
            }
            for (transactional_id, txn) in &shard.committed {
                if shard.is_pending(transactional_id) {
                    continue;
                }
                if transactions::is_expired_transaction(txn, now_ms) {
                    work.push((*index, transactional_id.clone(), true));
                } else if transactions::is_expired_id(txn, now_ms, expiration_ms) {
                    work.push((*index, transactional_id.clone(), false));
                }
            }
        }
        for (index, transactional_id, abort) in work {
            let Some(txn) = self.txn_coordinator.shards[&index]
                .committed
                .get(&transactional_id)
                .cloned()
            else {
                continue;
            };
            let record = if abort {
                tracing::info!(%transactional_id, "transaction timed out: aborting it and fencing its producer");
                TxnRecord::Metadata(txn.fenced_abort(now_ms, || self.allocate_producer_id(outputs)))
            } else {
                tracing::info!(%transactional_id, "transactional id expired");
                TxnRecord::Expired {
                    transactional_id: transactional_id.clone(),
                }
            };
            self.write_txn_record(now_ms, index, &transactional_id, record, None, outputs);
        }
    }

    // ----- verification (KIP-890 part 1) -----

    /// Asks the coordinator of `transactional_id` whether the partitions belong to the
    /// producer's open transaction; `then` continues once it answers (or does not in time).
    pub(super) fn start_verification(
        &mut self,
        now_ms: i64,
        transactional_id: &str,
        unverified: Vec<(TopicPartition, i64, i16)>,
        then: AfterVerification,
        outputs: &mut Vec<Output>,
    ) {
        let Some((_, producer_id, producer_epoch)) = unverified.first().cloned() else {
            return;
        };
        let mut tokens = Vec::new();
        for (partition, partition_producer, partition_epoch) in &unverified {
            let token = if (*partition_producer, *partition_epoch) == (producer_id, producer_epoch)
            {
                self.partitions
                    .get_mut(partition)
                    .and_then(|state| state.txns.begin_verification(producer_id, producer_epoch))
            } else {
                None
            };
            // A token of 0 never matches: that partition is refused.
            tokens.push((partition.clone(), producer_id, token.unwrap_or(0)));
        }
        let partitions: Vec<TopicPartition> = unverified
            .iter()
            .map(|(partition, _, _)| partition.clone())
            .collect();
        let pending = PendingVerification {
            producer_id,
            deadline_ms: now_ms + VERIFY_TIMEOUT_MS,
            tokens,
            then,
        };
        let coordinator = self
            .metadata
            .topics
            .get(TRANSACTION_STATE_TOPIC)
            .map(|topic| transaction_partition_of(transactional_id, topic.partition_count))
            .and_then(|index| {
                self.partition_leader(&TopicPartition::new(TRANSACTION_STATE_TOPIC, index), now_ms)
            })
            .map(|(_, leader)| leader);
        match coordinator {
            Some(leader) if leader == self.config.node_id => {
                let (results, txn_number) =
                    self.verify_locally(transactional_id, producer_id, producer_epoch, &partitions);
                self.finish_verification(now_ms, pending, results, txn_number, outputs);
            }
            Some(leader)
                if self.txn_coordinator.verifications.len() < VERIFICATIONS_IN_FLIGHT_MAX =>
            {
                let id = self.txn_coordinator.next_id();
                self.txn_coordinator.verifications.insert(id, pending);
                *self
                    .txn_coordinator
                    .verifying_producers
                    .entry(producer_id)
                    .or_default() += 1;
                outputs.push(Output::Send {
                    to: leader,
                    message: PeerMessage::VerifyTxn {
                        id,
                        transactional_id: transactional_id.to_string(),
                        producer_id,
                        producer_epoch,
                        partitions,
                    },
                });
            }
            _ => self.finish_verification(now_ms, pending, Vec::new(), 0, outputs),
        }
    }

    /// The coordinator's side of a verification.
    fn verify_locally(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> (Vec<(TopicPartition, ErrorCode)>, u64) {
        let index = match self.coordinated_txn_shard(transactional_id) {
            Ok(index) => index,
            Err(error) => return (partitions.iter().map(|p| (p.clone(), error)).collect(), 0),
        };
        let shard = &self.txn_coordinator.shards[&index];
        let current = shard.committed.get(transactional_id);
        let mut txn_number = 0;
        let results = partitions
            .iter()
            .map(|partition| {
                let (error, number) =
                    transactions::verify_partition(current, producer_id, producer_epoch, partition);
                txn_number = number;
                (partition.clone(), error)
            })
            .collect();
        (results, txn_number)
    }

    /// Continues what waited for a verification: partitions the coordinator confirmed
    /// (and no marker voided since) go ahead, the others are refused.
    fn finish_verification(
        &mut self,
        now_ms: i64,
        pending: PendingVerification,
        results: Vec<(TopicPartition, ErrorCode)>,
        txn_number: u64,
        outputs: &mut Vec<Output>,
    ) {
        let mut refused = BTreeMap::new();
        for (partition, producer_id, token) in pending.tokens {
            let error = results
                .iter()
                .find(|(answered, _)| *answered == partition)
                .map_or(ErrorCode::CoordinatorNotAvailable, |(_, error)| *error);
            let state = self.partitions.get_mut(&partition);
            let confirmed = error == ErrorCode::None
                && state.is_some_and(|state| state.txns.verified(producer_id, token, txn_number));
            if !confirmed {
                if let Some(state) = self.partitions.get_mut(&partition) {
                    state.txns.end_verification(producer_id, token);
                }
                // A confirmation voided by a marker meanwhile: that transaction ended.
                let error = if error == ErrorCode::None {
                    ErrorCode::InvalidTxnState
                } else {
                    error
                };
                refused.insert(partition, error);
            }
        }
        match pending.then {
            AfterVerification::Produce {
                id,
                acks,
                partitions,
            } => {
                let refused = refused
                    .into_iter()
                    .map(|(partition, error)| (partition, produce_error_of_verification(error)))
                    .collect();
                self.produce_verified(now_ms, id, acks, true, partitions, &refused, outputs)
            }
            AfterVerification::TxnOffsetCommit { id, request } => {
                let error = refused.values().next().copied();
                self.txn_offset_commit_verified(now_ms, id, request, error, outputs)
            }
        }
    }

    // ----- messages between nodes -----

    pub(super) fn on_transaction_peer(
        &mut self,
        now_ms: i64,
        from: NodeId,
        message: PeerMessage,
        outputs: &mut Vec<Output>,
    ) {
        match message {
            PeerMessage::VerifyTxn {
                id,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            } => {
                let (results, txn_number) = self.verify_locally(
                    &transactional_id,
                    producer_id,
                    producer_epoch,
                    &partitions,
                );
                outputs.push(Output::Send {
                    to: from,
                    message: PeerMessage::TxnVerified {
                        id,
                        txn_number,
                        results,
                    },
                });
            }
            PeerMessage::TxnVerified {
                id,
                txn_number,
                results,
            } => {
                if let Some(pending) = self.txn_coordinator.take_verification(id) {
                    self.finish_verification(now_ms, pending, results, txn_number, outputs);
                }
            }
            PeerMessage::WriteTxnMarkers {
                id,
                coordinator_epoch,
                txn_number,
                producer_id,
                producer_epoch,
                commit,
                partitions,
            } => {
                let markers = MarkerWrite {
                    coordinator_epoch,
                    txn_number,
                    producer_id,
                    producer_epoch,
                    commit,
                };
                self.write_markers(
                    now_ms,
                    WriteReply::Markers { to: from, id },
                    markers,
                    partitions,
                    outputs,
                );
            }
            PeerMessage::TxnMarkersWritten { id, results } => {
                self.on_markers_written(now_ms, id, results, outputs)
            }
            other => unreachable!("not a transaction message: {other:?}"),
        }
    }

    /// A partition leader writes a transaction's markers; the answer goes out once each is
    /// committed (or its partition fails).
    fn write_markers(
        &mut self,
        now_ms: i64,
        reply: WriteReply,
        markers: MarkerWrite,
        partitions: Vec<TopicPartition>,
        outputs: &mut Vec<Output>,
    ) {
        let mut results = Vec::with_capacity(partitions.len());
        let mut waits = Vec::new();
        for partition in partitions {
            let (error, wait) = self.write_marker(now_ms, &partition, &markers, outputs);
            if let Some((offset, epoch)) = wait {
                waits.push(super::ProduceWait {
                    partition: partition.clone(),
                    offset,
                    epoch,
                    result: results.len(),
                });
            }
            results.push(ProducePartitionResult {
                partition,
                error,
                message: None,
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
            });
        }
        let mut waiting = WaitingProduce {
            reply,
            acks: Acks::All,
            results,
            waits,
        };
        if self.settle(&mut waiting) {
            self.answer_write(waiting, outputs);
        } else {
            self.waiting_produces.push(waiting);
        }
    }

    /// One partition's marker: the error, and the offset whose commitment answers it.
    fn write_marker(
        &mut self,
        now_ms: i64,
        partition: &TopicPartition,
        markers: &MarkerWrite,
        outputs: &mut Vec<Output>,
    ) -> (ErrorCode, Option<(i64, i32)>) {
        let state = match self.led_partition(partition) {
            Ok(state) => state,
            Err(error) => return (error, None),
        };
        if let Err(error) = state
            .txns
            .check_coordinator_epoch(markers.producer_id, markers.coordinator_epoch)
        {
            return (error, None);
        }
        let epoch = state.replica.epoch();
        match state
            .txns
            .marker_action(markers.producer_id, markers.txn_number)
        {
            MarkerAction::AlreadyDone => {
                (ErrorCode::None, Some((state.log.log_end_offset(), epoch)))
            }
            MarkerAction::Write => {
                let batch = crate::records::transaction_marker_batch(
                    markers.commit,
                    markers.producer_id,
                    markers.producer_epoch,
                    markers.coordinator_epoch,
                    now_ms,
                );
                match self.append_broker_batch(now_ms, partition, batch, outputs) {
                    Some(wait) => {
                        if let Some(state) = self.partitions.get_mut(partition) {
                            state.txns.marker_written(
                                markers.producer_id,
                                markers.txn_number,
                                markers.coordinator_epoch,
                            );
                        }
                        (ErrorCode::None, Some(wait))
                    }
                    None => (ErrorCode::NotLeaderOrFollower, None),
                }
            }
        }
    }
}

/// What a marker request asks a partition leader to write.
#[derive(Debug, Clone, Copy)]
struct MarkerWrite {
    coordinator_epoch: i32,
    txn_number: u64,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
}
