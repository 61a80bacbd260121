//! The broker's side of transactions: it drives its transaction coordinator
//! ([`crate::transaction_coordinator`]) and plays the partition leaders' part of the
//! protocol: a transaction's first append to a partition is verified with the coordinator
//! (KIP-890 part 1), and marker writes (`WriteTxnMarkers`) are appended and answered once
//! committed.
//!
//! Invariants:
//! - a leader appends a transaction's first batch to a partition only after the
//!   coordinator confirmed the partition is in that transaction (`start_verification`),
//!   and a marker that arrived meanwhile voids the confirmation;
//! - a marker answer says a partition holds its marker only once it is committed there
//!   (`write_markers` waits like an acks=all produce).

use super::{Broker, TxnNodeView, WaitingProduce, WriteReply, WriteTerms};
use crate::api::{
    DescribedProducers, ErrorCode, Now, Output, PeerMessage, ProducePartition,
    ProducePartitionResult, ProducerDescription, Request, RequestId, Response,
};
use crate::group_coordinator::OFFSETS_TOPIC;
use crate::metadata::TopicPartition;
use crate::partition_txns::MarkerAction;
use crate::replication::NodeId;
use crate::transaction_coordinator::{MarkerWrite, TransactionCoordinator, TxnContext, TxnOutput};
use crate::transactions::{transaction_partition_of, TRANSACTION_STATE_TOPIC};
use std::collections::BTreeMap;

/// How long a leader waits for the coordinator to verify a transaction's first append.
const VERIFY_TIMEOUT_MS: i64 = 5_000;
/// Verifications a leader keeps waiting at once; more are refused (retriable).
const VERIFICATIONS_IN_FLIGHT_MAX: usize = 10_000;

/// What continues once a verification is answered.
#[derive(Debug)]
pub(super) enum AfterVerification {
    Produce {
        id: RequestId,
        terms: WriteTerms,
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

/// The verifications this node's partition leaders wait for.
#[derive(Debug, Default)]
pub(super) struct Verifications {
    waiting: BTreeMap<u64, PendingVerification>,
    /// How many of `waiting` each producer has: its next produces queue behind them.
    producers: BTreeMap<i64, usize>,
}

impl Verifications {
    /// Whether the producer has a produce waiting for a verification on this node.
    pub(super) fn is_verifying(&self, producer_id: i64) -> bool {
        self.producers.contains_key(&producer_id)
    }

    fn insert(&mut self, id: u64, pending: PendingVerification) {
        *self.producers.entry(pending.producer_id).or_default() += 1;
        self.waiting.insert(id, pending);
    }

    /// Takes a waiting verification out (answered or timed out).
    fn take(&mut self, id: u64) -> Option<PendingVerification> {
        let pending = self.waiting.remove(&id)?;
        if let Some(count) = self.producers.get_mut(&pending.producer_id) {
            *count -= 1;
            if *count == 0 {
                self.producers.remove(&pending.producer_id);
            }
        }
        Some(pending)
    }

    pub(super) fn next_deadline_ms(&self) -> Option<i64> {
        self.waiting
            .values()
            .map(|verification| verification.deadline_ms)
            .min()
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
    /// Every transaction API except TxnOffsetCommit (a group API): FindCoordinator of a
    /// transactional id and DescribeProducers (a partition leader's) are answered here, the
    /// others by the coordinator.
    pub(super) fn transaction_request(
        &mut self,
        now: Now,
        id: RequestId,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        let response = match request {
            Request::FindTransactionCoordinator { transactional_ids } => Response::FindCoordinator(
                self.find_coordinators(now, TRANSACTION_STATE_TOPIC, transactional_ids, outputs),
            ),
            Request::DescribeProducers { partitions } => Response::DescribeProducers(
                partitions
                    .into_iter()
                    .map(|partition| self.describe_producers(partition))
                    .collect(),
            ),
            request => {
                let txn_outputs = self.drive_txn_coordinator(now, |coordinator, context| {
                    coordinator.handle_request(context, id, request)
                });
                self.execute_txn_outputs(now, txn_outputs, outputs);
                return;
            }
        };
        outputs.push(Output::Respond { id, response });
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

    // ----- driving the coordinator -----

    /// Calls the transaction coordinator with its view of this node.
    fn drive_txn_coordinator<R>(
        &mut self,
        now: Now,
        call: impl FnOnce(&mut TransactionCoordinator, &mut TxnContext<'_>) -> R,
    ) -> R {
        let node = TxnNodeView::new(now, &self.metadata, &self.partitions, &self.controller);
        let mut context = TxnContext {
            now,
            node: &node,
            next_producer_id: self.next_producer_id,
            message_ids: &mut self.txn_message_ids,
        };
        call(&mut self.txn_coordinator, &mut context)
    }

    /// Carries out the coordinator's outputs in order, reporting each append back before
    /// the next.
    fn execute_txn_outputs(
        &mut self,
        now: Now,
        txn_outputs: Vec<TxnOutput>,
        outputs: &mut Vec<Output>,
    ) {
        for txn_output in txn_outputs {
            match txn_output {
                TxnOutput::Respond { id, response } => {
                    outputs.push(Output::Respond { id, response })
                }
                TxnOutput::TakeProducerId(taken) => {
                    let allocated = self.allocate_producer_id(outputs);
                    crate::invariant!(
                        allocated == taken,
                        "the coordinator took producer id {taken}, the node handed out {allocated}"
                    );
                }
                TxnOutput::Append {
                    partition,
                    batch,
                    write,
                } => {
                    let partition = TopicPartition::new(TRANSACTION_STATE_TOPIC, partition);
                    let appended = self.append_broker_batch(now, &partition, batch, outputs);
                    let replies = self.txn_coordinator.appended(write, appended);
                    outputs.extend(
                        replies
                            .into_iter()
                            .map(|(id, response)| Output::Respond { id, response }),
                    );
                }
                TxnOutput::CreateOffsetsTopic => {
                    self.request_internal_topic(now, OFFSETS_TOPIC, outputs)
                }
                TxnOutput::WriteMarkers {
                    leader,
                    id,
                    markers,
                    partitions,
                } => {
                    if leader == self.config.node_id {
                        let reply = WriteReply::Markers {
                            to: self.config.node_id,
                            id,
                        };
                        self.write_markers(now, reply, markers, partitions, outputs);
                    } else {
                        outputs.push(Output::Send {
                            to: leader,
                            message: PeerMessage::WriteTxnMarkers {
                                id,
                                coordinator_epoch: markers.coordinator_epoch,
                                txn_number: markers.txn_number,
                                producer_id: markers.producer_id,
                                producer_epoch: markers.producer_epoch,
                                commit: markers.commit,
                                partitions,
                            },
                        });
                    }
                }
                TxnOutput::MarkersAnswered { id, results } => {
                    self.local_marker_results.push((id, results))
                }
            }
        }
    }

    /// After every step: see `TransactionCoordinator::settle`.
    pub(super) fn settle_transactions(&mut self, now: Now, outputs: &mut Vec<Output>) {
        let txn_outputs =
            self.drive_txn_coordinator(now, |coordinator, context| coordinator.settle(context));
        self.execute_txn_outputs(now, txn_outputs, outputs);
        if let Some(corrupt) = self.txn_coordinator.take_fail_stop() {
            outputs.push(Output::FailStop(corrupt));
        }
    }

    /// A partition leader's answer to one of this node's marker requests.
    pub(super) fn on_markers_written(
        &mut self,
        now: Now,
        id: u64,
        results: Vec<(TopicPartition, ErrorCode)>,
        outputs: &mut Vec<Output>,
    ) {
        let txn_outputs = self
            .txn_coordinator
            .on_markers_written(now.wall_ms, id, results);
        self.execute_txn_outputs(now, txn_outputs, outputs);
    }

    /// Timers: verifications that waited too long, then the coordinator's.
    pub(super) fn transactions_tick(&mut self, now: Now, outputs: &mut Vec<Output>) {
        let expired: Vec<u64> = self
            .verifications
            .waiting
            .iter()
            .filter(|(_, verification)| verification.deadline_ms <= now.monotonic_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(pending) = self.verifications.take(id) {
                self.finish_verification(now, pending, Vec::new(), 0, outputs);
            }
        }
        let txn_outputs =
            self.drive_txn_coordinator(now, |coordinator, context| coordinator.tick(context));
        self.execute_txn_outputs(now, txn_outputs, outputs);
    }

    /// The coordinator's answer to a verification asked of this node.
    fn verify_locally(
        &mut self,
        now: Now,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> (Vec<(TopicPartition, ErrorCode)>, u64) {
        self.drive_txn_coordinator(now, |coordinator, context| {
            coordinator.verify(
                context.node,
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            )
        })
    }

    // ----- verification (KIP-890 part 1) -----

    /// Asks the coordinator of `transactional_id` whether the partitions belong to the
    /// producer's open transaction; `then` continues once it answers (or does not in time).
    pub(super) fn start_verification(
        &mut self,
        now: Now,
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
            deadline_ms: now.monotonic_ms + VERIFY_TIMEOUT_MS,
            tokens,
            then,
        };
        let coordinator = self
            .metadata
            .topics
            .get(TRANSACTION_STATE_TOPIC)
            .map(|topic| transaction_partition_of(transactional_id, topic.partition_count))
            .and_then(|index| {
                self.partition_leader(&TopicPartition::new(TRANSACTION_STATE_TOPIC, index), now)
            })
            .map(|(_, leader)| leader);
        match coordinator {
            Some(leader) if leader == self.config.node_id => {
                let (results, txn_number) = self.verify_locally(
                    now,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    &partitions,
                );
                self.finish_verification(now, pending, results, txn_number, outputs);
            }
            Some(leader) if self.verifications.waiting.len() < VERIFICATIONS_IN_FLIGHT_MAX => {
                // One numbering with the coordinator's marker requests (see `TxnContext`).
                self.txn_message_ids += 1;
                let id = self.txn_message_ids;
                self.verifications.insert(id, pending);
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
            _ => self.finish_verification(now, pending, Vec::new(), 0, outputs),
        }
    }

    /// Continues what waited for a verification: partitions the coordinator confirmed
    /// (and no marker voided since) go ahead, the others are refused.
    fn finish_verification(
        &mut self,
        now: Now,
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
                terms,
                partitions,
            } => {
                let refused = refused
                    .into_iter()
                    .map(|(partition, error)| (partition, produce_error_of_verification(error)))
                    .collect();
                self.produce_verified(now, id, terms, true, partitions, &refused, outputs)
            }
            AfterVerification::TxnOffsetCommit { id, request } => {
                let error = refused.values().next().copied();
                self.txn_offset_commit_verified(now, id, request, error, outputs)
            }
        }
    }

    // ----- messages between nodes -----

    pub(super) fn on_transaction_peer(
        &mut self,
        now: Now,
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
                    now,
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
                if let Some(pending) = self.verifications.take(id) {
                    self.finish_verification(now, pending, results, txn_number, outputs);
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
                    now,
                    WriteReply::Markers { to: from, id },
                    markers,
                    partitions,
                    outputs,
                );
            }
            PeerMessage::TxnMarkersWritten { id, results } => {
                self.on_markers_written(now, id, results, outputs)
            }
            other => unreachable!("not a transaction message: {other:?}"),
        }
    }

    /// A partition leader writes a transaction's markers; the answer goes out once each is
    /// committed (or its partition fails).
    fn write_markers(
        &mut self,
        now: Now,
        reply: WriteReply,
        markers: MarkerWrite,
        partitions: Vec<TopicPartition>,
        outputs: &mut Vec<Output>,
    ) {
        let mut results = Vec::with_capacity(partitions.len());
        let mut waits = Vec::new();
        for partition in partitions {
            let (error, wait) = self.write_marker(now, &partition, &markers, outputs);
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
            terms: WriteTerms::MARKERS,
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
        now: Now,
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
                    now.wall_ms,
                );
                match self.append_broker_batch(now, partition, batch, outputs) {
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
