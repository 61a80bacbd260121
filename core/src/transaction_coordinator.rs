//! The transaction coordinator: transactional ids whose state lives in the replicated topic
//! `__transaction_state`, and the markers that end each transaction in every partition it
//! touched. A state machine of its own, driven by the broker (or by a test): it reads what
//! it needs of the node through [`TransactionNode`] and returns what the node must do as
//! [`TxnOutput`]s. The partition leaders' side of the protocol (verifying a transaction's
//! first append, writing markers) is the broker's (`broker/transactions.rs`).
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
//! each partition's leader (`TxnOutput::WriteMarkers`: a `WriteTxnMarkers` message, or a
//! call on its own node) to append the marker; a leader answers once the marker is
//! committed, like an acks=all write. Partitions not answered are asked again every
//! `MARKER_RETRY_MS`, at whichever node leads them then. When every partition has answered
//! ([`TransactionCoordinator::on_markers_written`]), the coordinator writes
//! CompleteCommit/CompleteAbort.
//!
//! Clocks (see `api::Now`): a transaction's timeout, an idle id's expiration and marker
//! retries run on the monotonic clock; the records' `txn_start_ms` and `updated_ms` (shown
//! by DescribeTransactions and ListTransactions, as Kafka's) and the batches are stamped
//! with the wall clock. Timeout and expiration count from when this node *applied* the
//! record that began the transaction or last changed the id (`txn_shard::IdTimers`), never
//! from the record's timestamps, which are another process's wall clock: a node that loads
//! the log (at start, or as a follower turned coordinator) restarts those timers then, so
//! after a failover an open transaction may live up to one timeout longer, never shorter.
//!
//! ## Driving it
//! - Hosting a `__transaction_state` partition: [`TransactionCoordinator::open_shard`] and
//!   [`TransactionCoordinator::close_shard`]; each batch appended to one and each truncation
//!   are reported with [`TransactionCoordinator::on_appended`] and
//!   [`TransactionCoordinator::on_truncated`].
//! - Requests: [`TransactionCoordinator::handle_request`] (InitProducerId of a
//!   transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions,
//!   ListTransactions); a partition leader's verification:
//!   [`TransactionCoordinator::verify`]; marker answers:
//!   [`TransactionCoordinator::on_markers_written`]; timers:
//!   [`TransactionCoordinator::tick`]; after every step of the node:
//!   [`TransactionCoordinator::settle`].
//! - Outputs are executed in order; an `Append`'s result is reported with
//!   [`TransactionCoordinator::appended`] before the next output.
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
//!   producer (`tick`);
//! - a request from a client connection older than one already seen for its id is refused
//!   (`is_from_stale_connection`): a late EndTxn never ends the next transaction.

#[cfg(test)]
mod tests;
mod txn_shard;

use crate::api::{
    CorruptData, ErrorCode, ListedTransaction, Now, Request, RequestId, Response,
    TransactionDescription, TxnState,
};
use crate::batch::BatchHeader;
use crate::group_coordinator::{offsets_partition_of, OFFSETS_TOPIC};
use crate::internal_log::{
    due_snapshots, open_shard, shard_appended, shard_truncated, InternalPartitions,
};
use crate::metadata::TopicPartition;
use crate::replication::NodeId;
use crate::transactions::{
    self, transaction_partition_of, Decision, TxnMetadata, TxnRecord, TRANSACTION_STATE_TOPIC,
};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use txn_shard::{MarkerJob, TxnShard};

/// How long a marker request goes unanswered before it is sent again.
const MARKER_RETRY_MS: i64 = 500;
/// How often open transactions are checked against their timeouts (Kafka: 10 s).
const TIMEOUT_CHECK_INTERVAL_MS: i64 = 1_000;
/// How long a marker request is remembered without an answer.
const MARKER_REQUEST_FORGOTTEN_MS: i64 = 60_000;
/// Transactional ids one coordinator holds; InitProducerId of a new id beyond it is
/// refused (Kafka has no such limit; memory is finite).
pub const TRANSACTIONAL_IDS_MAX: usize = 100_000;

/// A reply to a client request.
pub type Reply = (RequestId, Response);

/// What the transaction coordinator sees of its node: `__transaction_state` (as
/// [`InternalPartitions`]), the applied metadata's topics, and who leads a partition.
pub trait TransactionNode: InternalPartitions {
    /// A topic's partition count in the applied metadata, `None` if it does not exist.
    fn topic_partition_count(&self, topic: &str) -> Option<i32>;
    /// The leader of a partition as the node knows it (its replica, or the leaders'
    /// announcements), if that leader is live.
    fn partition_leader(&self, partition: &TopicPartition) -> Option<NodeId>;
}

/// What the coordinator needs from its node for one call.
pub struct TxnContext<'a> {
    /// Timeouts, expiry and marker retries run on `now.monotonic_ms`; the wall clock only
    /// stamps the `__transaction_state` records (`txn_start_ms`, `updated_ms`) and batches.
    pub now: Now,
    pub node: &'a dyn TransactionNode,
    /// The producer id the node hands out next. Each one the coordinator takes is reported,
    /// in order, as [`TxnOutput::TakeProducerId`] (the node reserves its block durably).
    pub next_producer_id: i64,
    /// The node's numbering of its transaction messages: marker requests here and its
    /// partition leaders' verifications share one sequence.
    pub message_ids: &'a mut u64,
}

impl TxnContext<'_> {
    fn take_producer_id(&mut self, outputs: &mut Vec<TxnOutput>) -> i64 {
        let producer_id = self.next_producer_id;
        self.next_producer_id += 1;
        outputs.push(TxnOutput::TakeProducerId(producer_id));
        producer_id
    }

    fn next_message_id(&mut self) -> u64 {
        *self.message_ids += 1;
        *self.message_ids
    }
}

/// What a marker request asks a partition leader to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerWrite {
    pub coordinator_epoch: i32,
    pub txn_number: u64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
}

/// What the node must do for the coordinator, in order.
#[derive(Debug)]
pub enum TxnOutput {
    /// Answer a client request.
    Respond { id: RequestId, response: Response },
    /// The coordinator handed out this producer id, the node's next: the node advances its
    /// counter (reserving a new block durably first when one runs out).
    TakeProducerId(i64),
    /// Append `batch` (made by the coordinator) to `__transaction_state` partition
    /// `partition` as its leader, then report the result with
    /// [`TransactionCoordinator::appended`].
    Append {
        partition: i32,
        batch: Bytes,
        write: TxnWrite,
    },
    /// Ask the controller for the offsets topic (AddOffsetsToTxn before any group has a
    /// coordinator).
    CreateOffsetsTopic,
    /// Have `leader` (maybe this node) write a transaction's markers in `partitions`; its
    /// answer comes back through [`TransactionCoordinator::on_markers_written`] with `id`.
    WriteMarkers {
        leader: NodeId,
        id: u64,
        markers: MarkerWrite,
        partitions: Vec<TopicPartition>,
    },
    /// Marker request `id` is answered already (its partitions' topics are gone): feed
    /// `results` to [`TransactionCoordinator::on_markers_written`] after this step.
    MarkersAnswered {
        id: u64,
        results: Vec<(TopicPartition, ErrorCode)>,
    },
}

/// A record write the coordinator asked for, handed back with its result through
/// [`TransactionCoordinator::appended`].
#[derive(Debug)]
pub struct TxnWrite {
    partition: i32,
    /// The id written (none for a snapshot).
    transactional_id: Option<String>,
    /// The answer sent once the record is committed.
    reply: Option<Reply>,
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
    replies: Vec<Reply>,
}

/// The limits and settings of a transaction coordinator (from the broker's configuration).
#[derive(Debug, Clone, Copy)]
pub struct TxnCoordinatorConfig {
    pub transaction_timeout_max_ms: i32,
    pub transactional_id_expiration_ms: i64,
    /// The offsets topic's partition count once created (AddOffsetsToTxn before then).
    pub offsets_partitions: i32,
    /// A partition's leader writes a snapshot of its ids every this many bytes appended.
    pub snapshot_interval_bytes: u64,
}

/// The transaction coordinator of one node. See the module doc.
#[derive(Debug)]
pub struct TransactionCoordinator {
    config: TxnCoordinatorConfig,
    #[cfg(feature = "defects")]
    defect: Option<crate::defects::Defect>,
    shards: BTreeMap<i32, TxnShard>,
    held: Vec<HeldTxnReplies>,
    marker_requests: BTreeMap<u64, MarkerRequest>,
    next_timeout_check_ms: i64,
    /// The newest client connection seen per transactional id (this node's numbering).
    newest_connections: BTreeMap<String, u64>,
    snapshot_interval_bytes: u64,
    /// A shard found unable to serve (its log starts past 0 with no snapshot applied): the
    /// node must stop (`take_fail_stop`).
    fail_stop: Option<CorruptData>,
}

impl TransactionCoordinator {
    pub fn new(config: TxnCoordinatorConfig) -> Self {
        Self {
            config,
            #[cfg(feature = "defects")]
            defect: None,
            shards: BTreeMap::new(),
            held: Vec::new(),
            marker_requests: BTreeMap::new(),
            next_timeout_check_ms: 0,
            newest_connections: BTreeMap::new(),
            snapshot_interval_bytes: config.snapshot_interval_bytes.max(1),
            fail_stop: None,
        }
    }

    /// Runs with a deliberate defect (`CompleteBeforeMarkers`); others are ignored here.
    #[cfg(feature = "defects")]
    pub fn with_defect(mut self, defect: Option<crate::defects::Defect>) -> Self {
        self.defect = defect;
        self
    }

    // ----- the transaction-state partitions hosted here -----

    /// A `__transaction_state` partition is hosted here from now on; `recovered` holds its
    /// stored batches (from `log_start`, below `log_end`) to replay.
    /// A recovered batch that does not decode is corrupt data (the shard is not opened).
    pub fn open_shard(
        &mut self,
        partition: i32,
        recovered: Option<&Bytes>,
        log_start: i64,
        log_end: i64,
    ) -> Result<(), CorruptData> {
        open_shard(
            &mut self.shards,
            &TopicPartition::new(TRANSACTION_STATE_TOPIC, partition),
            recovered,
            log_end,
            TxnShard::new(log_start),
        )
    }

    pub fn close_shard(&mut self, partition: i32) {
        self.shards.remove(&partition);
    }

    /// This replica's log of partition `partition` was dropped and starts over, empty, at
    /// `log_start` (it lay below its leader's log start): so does its view, which the
    /// leader's log rebuilds from its snapshot on.
    pub fn restart_shard(&mut self, partition: i32, log_start: i64) -> Result<(), CorruptData> {
        if self.shards.remove(&partition).is_none() {
            return Ok(());
        }
        self.open_shard(partition, None, log_start, log_start)
    }

    /// Where the last complete snapshot this replica applied of partition `partition`
    /// starts: its segments wholly below may be deleted.
    pub fn last_snapshot(&self, partition: i32) -> Option<i64> {
        self.shards.get(&partition)?.snapshots.last()
    }

    /// A shard that cannot serve what its log says (see `settle`): the node must stop.
    pub fn take_fail_stop(&mut self) -> Option<CorruptData> {
        self.fail_stop.take()
    }

    /// A batch was appended to hosted partition `partition`.
    pub fn on_appended(
        &mut self,
        partition: i32,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) -> Result<(), CorruptData> {
        shard_appended(
            &mut self.shards,
            &TopicPartition::new(TRANSACTION_STATE_TOPIC, partition),
            header,
            base_offset,
            last_offset,
            bytes,
        )
    }

    /// Hosted partition `partition` lost its tail from `offset` on.
    pub fn on_truncated(&mut self, partition: i32, offset: i64) {
        shard_truncated(&mut self.shards, partition, offset);
    }

    /// The earliest time the coordinator's timers have work.
    pub fn next_wakeup_ms(&self) -> Option<i64> {
        let coordinating = self
            .shards
            .values()
            .any(|shard| shard.coordinating.is_some());
        self.shards
            .values()
            .flat_map(|shard| shard.markers.values().map(|job| job.next_send_ms))
            .chain(coordinating.then_some(self.next_timeout_check_ms))
            .min()
    }

    /// An id's state as applied here, for tests and checkers.
    pub fn transaction_state(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.shards
            .values()
            .find_map(|shard| shard.committed.get(transactional_id))
    }

    /// The partitions whose marker a prepared transaction still awaits (the model-based
    /// tests compare them).
    #[cfg(test)]
    pub(crate) fn markers_remaining(&self, transactional_id: &str) -> Vec<&TopicPartition> {
        self.shards
            .values()
            .filter_map(|shard| shard.markers.get(transactional_id))
            .flat_map(|job| job.remaining.iter())
            .collect()
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

    // ----- requests -----

    /// Every transaction API a coordinator answers: InitProducerId of a transactional id,
    /// AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions, ListTransactions.
    pub fn handle_request(
        &mut self,
        context: &mut TxnContext<'_>,
        id: RequestId,
        request: Request,
    ) -> Vec<TxnOutput> {
        if let Some((transactional_id, connection_id)) = transactional_connection(&request) {
            if self.is_from_stale_connection(transactional_id, connection_id) {
                tracing::info!(%transactional_id, connection_id,
                    "a transactional request from a connection older than one already seen for its id: refused");
                let response =
                    txn_failure(stale_request_response(request), ErrorCode::NotCoordinator);
                return vec![TxnOutput::Respond { id, response }];
            }
        }
        let mut outputs = Vec::new();
        let response = match request {
            Request::InitProducerId {
                transactional_id: Some(transactional_id),
                transaction_timeout_ms,
                producer_id,
                producer_epoch,
                ..
            } => {
                let expected = (producer_id >= 0).then_some((producer_id, producer_epoch));
                self.init_transactional_producer(
                    context,
                    id,
                    transactional_id,
                    transaction_timeout_ms,
                    expected,
                    &mut outputs,
                );
                return outputs;
            }
            Request::AddPartitionsToTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                ..
            } => {
                self.add_partitions_to_txn(
                    context,
                    id,
                    transactional_id,
                    (producer_id, producer_epoch),
                    partitions,
                    &mut outputs,
                );
                return outputs;
            }
            Request::AddOffsetsToTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                group_id,
                ..
            } => {
                self.add_offsets_to_txn(
                    context,
                    id,
                    transactional_id,
                    (producer_id, producer_epoch),
                    group_id,
                    &mut outputs,
                );
                return outputs;
            }
            Request::EndTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                ..
            } => {
                let Some(index) = self.shard_or_reply(
                    context.node,
                    id,
                    &transactional_id,
                    &mut outputs,
                    |error| Response::EndTxn { error },
                ) else {
                    return outputs;
                };
                let shard = &self.shards[&index];
                let decision = transactions::end_transaction(
                    shard.committed.get(&transactional_id),
                    shard.is_pending(&transactional_id),
                    producer_id,
                    producer_epoch,
                    commit,
                    context.now.wall_ms,
                );
                self.carry_out(
                    context.now.wall_ms,
                    id,
                    index,
                    &transactional_id,
                    decision,
                    &mut outputs,
                    |error, _| Response::EndTxn { error },
                );
                return outputs;
            }
            Request::DescribeTransactions { transactional_ids } => Response::DescribeTransactions(
                transactional_ids
                    .into_iter()
                    .map(|transactional_id| {
                        self.describe_transaction(context.node, transactional_id)
                    })
                    .collect(),
            ),
            Request::ListTransactions {
                state_filters,
                producer_id_filters,
                min_duration_ms,
            } => self.list_transactions(
                context.now.wall_ms,
                state_filters,
                producer_id_filters,
                min_duration_ms,
            ),
            other => unreachable!("not a transaction coordinator's request: {other:?}"),
        };
        outputs.push(TxnOutput::Respond { id, response });
        outputs
    }

    /// The `__transaction_state` partition of an id coordinated here, or why not.
    fn coordinated_shard(
        &self,
        node: &dyn TransactionNode,
        transactional_id: &str,
    ) -> Result<i32, ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        let partition_count = node.partition_count().ok_or(ErrorCode::NotCoordinator)?;
        let index = transaction_partition_of(transactional_id, partition_count);
        let shard = self.shards.get(&index).ok_or(ErrorCode::NotCoordinator)?;
        if shard.coordinating.is_some() {
            return Ok(index);
        }
        let leading = node.status(index).is_some_and(|status| status.leader);
        Err(if leading {
            ErrorCode::CoordinatorLoadInProgress
        } else {
            ErrorCode::NotCoordinator
        })
    }

    /// The coordinated shard of an id, or answers the request with `failure(error)`.
    fn shard_or_reply(
        &self,
        node: &dyn TransactionNode,
        id: RequestId,
        transactional_id: &str,
        outputs: &mut Vec<TxnOutput>,
        failure: impl FnOnce(ErrorCode) -> Response,
    ) -> Option<i32> {
        match self.coordinated_shard(node, transactional_id) {
            Ok(index) => Some(index),
            Err(error) => {
                outputs.push(TxnOutput::Respond {
                    id,
                    response: failure(error),
                });
                None
            }
        }
    }

    fn init_transactional_producer(
        &mut self,
        context: &mut TxnContext<'_>,
        id: RequestId,
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        outputs: &mut Vec<TxnOutput>,
    ) {
        let failure = |error| Response::InitProducerId {
            error,
            producer_id: -1,
            producer_epoch: -1,
        };
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_timeout_max_ms {
            outputs.push(TxnOutput::Respond {
                id,
                response: failure(ErrorCode::InvalidTransactionTimeout),
            });
            return;
        }
        let Some(index) =
            self.shard_or_reply(context.node, id, &transactional_id, outputs, failure)
        else {
            return;
        };
        let shard = &self.shards[&index];
        let current = shard.committed.get(&transactional_id).cloned();
        let pending = shard.is_pending(&transactional_id);
        if current.is_none() && shard.committed.len() >= TRANSACTIONAL_IDS_MAX {
            outputs.push(TxnOutput::Respond {
                id,
                response: failure(ErrorCode::CoordinatorNotAvailable),
            });
            return;
        }
        let wall_ms = context.now.wall_ms;
        let decision = transactions::init_producer_id(
            current.as_ref(),
            pending,
            &transactional_id,
            timeout_ms,
            expected,
            wall_ms,
            || context.take_producer_id(outputs),
        );
        self.carry_out(
            wall_ms,
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

    fn add_partitions_to_txn(
        &mut self,
        context: &TxnContext<'_>,
        id: RequestId,
        transactional_id: String,
        (producer_id, producer_epoch): (i64, i16),
        partitions: Vec<TopicPartition>,
        outputs: &mut Vec<TxnOutput>,
    ) {
        let each = |error: ErrorCode, partitions: &[TopicPartition]| {
            Response::AddPartitionsToTxn(partitions.iter().map(|p| (p.clone(), error)).collect())
        };
        let Some(index) =
            self.shard_or_reply(context.node, id, &transactional_id, outputs, |error| {
                each(error, &partitions)
            })
        else {
            return;
        };
        // Unknown or internal partitions fail the request; the others are not attempted.
        let unknown: BTreeSet<&TopicPartition> = partitions
            .iter()
            .filter(|partition| {
                crate::broker::is_internal_topic(&partition.topic)
                    || !context
                        .node
                        .topic_partition_count(&partition.topic)
                        .is_some_and(|count| (0..count).contains(&partition.partition))
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
            outputs.push(TxnOutput::Respond {
                id,
                response: Response::AddPartitionsToTxn(results),
            });
            return;
        }
        let respond = |error, _: Option<&TxnMetadata>| each(error, &partitions);
        let request = (id, index, transactional_id.as_str());
        let producer = (producer_id, producer_epoch);
        self.add_to_transaction(context, request, producer, &partitions, outputs, respond);
    }

    fn add_offsets_to_txn(
        &mut self,
        context: &TxnContext<'_>,
        id: RequestId,
        transactional_id: String,
        (producer_id, producer_epoch): (i64, i16),
        group_id: String,
        outputs: &mut Vec<TxnOutput>,
    ) {
        let Some(index) =
            self.shard_or_reply(context.node, id, &transactional_id, outputs, |error| {
                Response::AddOffsetsToTxn { error }
            })
        else {
            return;
        };
        // As in Kafka, the group's partition comes from the configured partition count
        // when the offsets topic does not exist yet (it is created with that count); the
        // client's TxnOffsetCommit will find the group's coordinator there.
        let offsets_partitions = match context.node.topic_partition_count(OFFSETS_TOPIC) {
            Some(count) => count,
            None => {
                outputs.push(TxnOutput::CreateOffsetsTopic);
                self.config.offsets_partitions
            }
        };
        let partition = TopicPartition::new(
            OFFSETS_TOPIC,
            offsets_partition_of(&group_id, offsets_partitions),
        );
        let respond = |error, _: Option<&TxnMetadata>| Response::AddOffsetsToTxn { error };
        let request = (id, index, transactional_id.as_str());
        let producer = (producer_id, producer_epoch);
        self.add_to_transaction(context, request, producer, &[partition], outputs, respond);
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn once their partitions are known: the
    /// coordinator's decision for `(request id, shard, transactional id)`, carried out.
    fn add_to_transaction(
        &mut self,
        context: &TxnContext<'_>,
        (id, index, transactional_id): (RequestId, i32, &str),
        (producer_id, producer_epoch): (i64, i16),
        partitions: &[TopicPartition],
        outputs: &mut Vec<TxnOutput>,
        respond: impl FnOnce(ErrorCode, Option<&TxnMetadata>) -> Response,
    ) {
        let shard = &self.shards[&index];
        let decision = transactions::add_partitions(
            shard.committed.get(transactional_id),
            shard.is_pending(transactional_id),
            producer_id,
            producer_epoch,
            partitions,
            context.now.wall_ms,
        );
        self.carry_out(
            context.now.wall_ms,
            id,
            index,
            transactional_id,
            decision,
            outputs,
            respond,
        );
    }

    /// Carries out a coordinator decision: answers at once, or writes the new state and
    /// holds the answer until it is committed. `respond` builds the answer from the error
    /// and the state the client should learn (the new one, or the current one).
    #[allow(clippy::too_many_arguments)]
    fn carry_out(
        &mut self,
        wall_ms: i64,
        id: RequestId,
        index: i32,
        transactional_id: &str,
        decision: Decision,
        outputs: &mut Vec<TxnOutput>,
        respond: impl FnOnce(ErrorCode, Option<&TxnMetadata>) -> Response,
    ) {
        match decision {
            Decision::Reply(error) => {
                let current = self.shards[&index].committed.get(transactional_id);
                outputs.push(TxnOutput::Respond {
                    id,
                    response: respond(error, current),
                });
            }
            Decision::Write { next, reply } => {
                let response = respond(reply, Some(&next));
                outputs.push(self.write_txn_record(
                    wall_ms,
                    index,
                    transactional_id,
                    TxnRecord::Metadata(next),
                    Some((id, response)),
                ));
            }
        }
    }

    /// Asks for one record of an id to be written to its shard's partition; the reply (if
    /// any) waits for its commit.
    fn write_txn_record(
        &self,
        wall_ms: i64,
        index: i32,
        transactional_id: &str,
        record: TxnRecord,
        reply: Option<Reply>,
    ) -> TxnOutput {
        if let TxnRecord::Metadata(next) = &record {
            let current = self.shards[&index]
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
        let encoded = crate::records::encode_json_records(&[record]);
        TxnOutput::Append {
            partition: index,
            batch: crate::records::encode_batch(&encoded, wall_ms, 0, -1),
            write: TxnWrite {
                partition: index,
                transactional_id: Some(transactional_id.to_string()),
                reply,
            },
        }
    }

    /// The node appended a write's record (`Some((offset its commit must reach, epoch))`)
    /// or could not (`None`: it does not lead the partition); returns the replies to send
    /// now.
    pub fn appended(&mut self, write: TxnWrite, appended: Option<(i64, i32)>) -> Vec<Reply> {
        let TxnWrite {
            partition,
            transactional_id,
            reply,
        } = write;
        let Some((commit_end, epoch)) = appended else {
            return reply
                .into_iter()
                .map(|(id, response)| (id, txn_failure(response, ErrorCode::NotCoordinator)))
                .collect();
        };
        if let (Some(shard), Some(transactional_id)) =
            (self.shards.get_mut(&partition), transactional_id)
        {
            shard.writes.insert(transactional_id, commit_end);
        }
        if let Some(reply) = reply {
            self.held.push(HeldTxnReplies {
                shard: partition,
                commit_end,
                epoch,
                replies: vec![reply],
            });
        }
        Vec::new()
    }

    fn describe_transaction(
        &self,
        node: &dyn TransactionNode,
        transactional_id: String,
    ) -> TransactionDescription {
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
        let index = match self.coordinated_shard(node, &description.transactional_id) {
            Ok(index) => index,
            Err(error) => {
                description.error = error;
                return description;
            }
        };
        let shard = &self.shards[&index];
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
        wall_ms: i64,
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
                    || (state.txn_start_ms >= 0 && wall_ms - state.txn_start_ms >= min_duration_ms)
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

    // ----- a partition leader's verification (KIP-890 part 1) -----

    /// The coordinator's side of a verification: whether each partition is in the
    /// producer's open transaction, and that transaction's number.
    pub fn verify(
        &self,
        node: &dyn TransactionNode,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> (Vec<(TopicPartition, ErrorCode)>, u64) {
        let index = match self.coordinated_shard(node, transactional_id) {
            Ok(index) => index,
            Err(error) => return (partitions.iter().map(|p| (p.clone(), error)).collect(), 0),
        };
        let shard = &self.shards[&index];
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

    // ----- after every step, markers and timers -----

    /// After every step of the node: applies what the transaction-state partitions
    /// committed, loads or drops the ids of partitions whose leadership changed, releases
    /// held replies, and asks for the markers that are due.
    pub fn settle(&mut self, context: &mut TxnContext<'_>) -> Vec<TxnOutput> {
        let now_ms = context.now.monotonic_ms;
        for (index, shard) in &mut self.shards {
            let Some(status) = context.node.status(*index) else {
                continue;
            };
            shard.apply_committed(status.high_watermark, now_ms);
            let leading = (status.leader
                && status.serves_reads
                && shard.log.applied_end() >= status.high_watermark)
                .then_some(status.epoch);
            if shard.coordinating != leading {
                if shard.coordinating.is_some() {
                    tracing::info!(partition = index, "no longer coordinating its transactions");
                    shard.markers.clear();
                    shard.writes.clear();
                }
                let partition = TopicPartition::new(TRANSACTION_STATE_TOPIC, *index);
                if let Err(corrupt) =
                    leading.map_or(Ok(()), |_| shard.snapshots.check_servable(partition))
                {
                    self.fail_stop.get_or_insert(corrupt);
                    shard.coordinating = None;
                    continue;
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
        let mut outputs = self.release_held_replies();
        self.ask_for_due_markers(context, &mut outputs);
        outputs
    }

    fn release_held_replies(&mut self) -> Vec<TxnOutput> {
        let mut outputs = Vec::new();
        if self.held.is_empty() {
            return outputs;
        }
        let held = std::mem::take(&mut self.held);
        for replies in held {
            let shard = self.shards.get(&replies.shard);
            let applied = shard.is_some_and(|shard| shard.log.applied_end() >= replies.commit_end);
            let still_leading =
                shard.is_some_and(|shard| shard.coordinating == Some(replies.epoch));
            if applied && still_leading {
                outputs.extend(
                    replies
                        .replies
                        .into_iter()
                        .map(|(id, response)| TxnOutput::Respond { id, response }),
                );
            } else if !still_leading {
                outputs.extend(replies.replies.into_iter().map(|(id, response)| {
                    TxnOutput::Respond {
                        id,
                        response: txn_failure(response, ErrorCode::NotCoordinator),
                    }
                }));
            } else {
                self.held.push(replies);
            }
        }
        outputs
    }

    /// Asks for the marker writes that are due, grouped by partition leader.
    fn ask_for_due_markers(&mut self, context: &mut TxnContext<'_>, outputs: &mut Vec<TxnOutput>) {
        let now_ms = context.now.monotonic_ms;
        let mut due = Vec::new();
        for (index, shard) in &mut self.shards {
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
                if context
                    .node
                    .topic_partition_count(&partition.topic)
                    .is_none()
                {
                    // A deleted topic holds nothing to mark.
                    gone.push((partition.clone(), ErrorCode::UnknownTopicOrPartition));
                    continue;
                }
                if let Some(leader) = context.node.partition_leader(partition) {
                    by_leader.entry(leader).or_default().push(partition.clone());
                }
            }
            let request = MarkerRequest {
                shard: index,
                transactional_id: transactional_id.clone(),
                txn_number: job.txn_number,
                sent_ms: now_ms,
            };
            if !gone.is_empty() {
                let id = context.next_message_id();
                self.marker_requests.insert(id, request.clone());
                outputs.push(TxnOutput::MarkersAnswered { id, results: gone });
            }
            for (leader, partitions) in by_leader {
                let id = context.next_message_id();
                self.marker_requests.insert(id, request.clone());
                outputs.push(TxnOutput::WriteMarkers {
                    leader,
                    id,
                    markers: MarkerWrite {
                        coordinator_epoch,
                        txn_number: job.txn_number,
                        producer_id: job.producer_id,
                        producer_epoch: job.producer_epoch,
                        commit: job.commit,
                    },
                    partitions,
                });
            }
        }
    }

    /// A partition leader's answer to marker request `id`: the partitions that hold their
    /// marker are done; when none is left, the transaction completes.
    pub fn on_markers_written(
        &mut self,
        wall_ms: i64,
        id: u64,
        results: Vec<(TopicPartition, ErrorCode)>,
    ) -> Vec<TxnOutput> {
        #[cfg(feature = "defects")]
        let complete_before_markers =
            self.defect == Some(crate::defects::Defect::CompleteBeforeMarkers);
        let Some(request) = self.marker_requests.remove(&id) else {
            return Vec::new();
        };
        let Some(shard) = self.shards.get_mut(&request.shard) else {
            return Vec::new();
        };
        let Some(job) = shard.markers.get_mut(&request.transactional_id) else {
            return Vec::new();
        };
        if job.txn_number != request.txn_number {
            return Vec::new();
        }
        #[cfg(feature = "defects")]
        if complete_before_markers {
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
            return Vec::new();
        }
        shard.markers.remove(&request.transactional_id);
        let Some(prepared) = shard.committed.get(&request.transactional_id) else {
            return Vec::new();
        };
        let completed = prepared.completed(wall_ms);
        tracing::debug!(transactional_id = %request.transactional_id, state = ?completed.state, "transaction complete");
        vec![self.write_txn_record(
            wall_ms,
            request.shard,
            &request.transactional_id,
            TxnRecord::Metadata(completed),
            None,
        )]
    }

    /// Timers: open transactions past their timeout, ids past their expiration, forgotten
    /// marker requests.
    pub fn tick(&mut self, context: &mut TxnContext<'_>) -> Vec<TxnOutput> {
        let now_ms = context.now.monotonic_ms;
        let wall_ms = context.now.wall_ms;
        let mut outputs = Vec::new();
        if now_ms < self.next_timeout_check_ms {
            return outputs;
        }
        self.next_timeout_check_ms = now_ms + TIMEOUT_CHECK_INTERVAL_MS;
        self.marker_requests
            .retain(|_, request| now_ms - request.sent_ms < MARKER_REQUEST_FORGOTTEN_MS);
        let expiration_ms = self.config.transactional_id_expiration_ms;
        let mut work = Vec::new();
        for (index, shard) in &self.shards {
            if shard.coordinating.is_none() {
                continue;
            }
            for (transactional_id, txn) in &shard.committed {
                if shard.is_pending(transactional_id) {
                    continue;
                }
                let Some(timers) = shard.timers.get(transactional_id) else {
                    continue;
                };
                if transactions::is_expired_transaction(txn, timers.began_ms, now_ms) {
                    work.push((*index, transactional_id.clone(), true));
                } else if transactions::is_expired_id(txn, timers.changed_ms, now_ms, expiration_ms)
                {
                    work.push((*index, transactional_id.clone(), false));
                }
            }
        }
        for (index, transactional_id, abort) in work {
            let Some(txn) = self.shards[&index]
                .committed
                .get(&transactional_id)
                .cloned()
            else {
                continue;
            };
            let record = if abort {
                tracing::info!(%transactional_id, "transaction timed out: aborting it and fencing its producer");
                TxnRecord::Metadata(
                    txn.fenced_abort(wall_ms, || context.take_producer_id(&mut outputs)),
                )
            } else {
                tracing::info!(%transactional_id, "transactional id expired");
                TxnRecord::Expired {
                    transactional_id: transactional_id.clone(),
                }
            };
            let write = self.write_txn_record(wall_ms, index, &transactional_id, record, None);
            outputs.push(write);
        }
        outputs.extend(self.snapshots_due(wall_ms));
        outputs
    }

    /// Snapshots of the coordinated partitions that are due (see `txn_shard`).
    fn snapshots_due(&mut self, wall_ms: i64) -> Vec<TxnOutput> {
        due_snapshots(
            TRANSACTION_STATE_TOPIC,
            &mut self.shards,
            self.snapshot_interval_bytes,
            wall_ms,
        )
        .into_iter()
        .flat_map(|(partition, batches)| {
            batches.into_iter().map(move |batch| TxnOutput::Append {
                partition,
                batch,
                write: TxnWrite {
                    partition,
                    transactional_id: None,
                    reply: None,
                },
            })
        })
        .collect()
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
