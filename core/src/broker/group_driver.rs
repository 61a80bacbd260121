//! How the broker drives its group coordinator ([`crate::group_coordinator`]): it routes
//! the group APIs to it with a view of the offsets partitions hosted here, executes what it
//! asks (appends to offsets partitions, a TxnOffsetCommit's verification with the
//! transaction coordinator) and feeds back the results.

use super::transactions::AfterVerification;
use super::{Broker, InternalPartitionsView};
use crate::api::{ErrorCode, Now, Output, Request, RequestId, Response};
use crate::group_coordinator::{GroupContext, GroupCoordinator, GroupOutput, OFFSETS_TOPIC};
use crate::metadata::TopicPartition;

impl Broker {
    /// The committed offset of a group's partition as this node applied it (-1 if none),
    /// for tests and checkers.
    pub fn committed_offset_of(&self, group_id: &str, partition: &TopicPartition) -> i64 {
        self.group_coordinator.committed_offset(group_id, partition)
    }

    /// Whether no transaction holds offsets of the group awaiting its marker here.
    pub fn has_no_pending_txn_offsets(&self, group_id: &str) -> bool {
        self.group_coordinator.has_no_pending_txn_offsets(group_id)
    }

    /// Every group API: FindCoordinator is answered here, the others by the coordinator.
    pub(super) fn group_request(
        &mut self,
        now: Now,
        id: RequestId,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        if let Request::FindCoordinator { groups } = request {
            let found = self.find_coordinators(now, OFFSETS_TOPIC, groups, outputs);
            outputs.push(Output::Respond {
                id,
                response: Response::FindCoordinator(found),
            });
            return;
        }
        let group_outputs = self.drive_group_coordinator(now, |coordinator, context| {
            coordinator.handle_request(context, id, request)
        });
        self.execute_group_outputs(now, group_outputs, outputs);
    }

    /// Continues a TxnOffsetCommit once the transaction coordinator confirmed (or refused)
    /// that the offsets partition is in the producer's transaction.
    pub(super) fn txn_offset_commit_verified(
        &mut self,
        now: Now,
        id: RequestId,
        request: Request,
        verification_error: Option<ErrorCode>,
        outputs: &mut Vec<Output>,
    ) {
        let group_outputs = self.drive_group_coordinator(now, |coordinator, context| {
            coordinator.txn_offset_commit_verified(context, id, request, verification_error)
        });
        self.execute_group_outputs(now, group_outputs, outputs);
    }

    /// After every step: see `GroupCoordinator::settle`.
    pub(super) fn settle_groups(&mut self, now: Now, outputs: &mut Vec<Output>) {
        let replies =
            self.drive_group_coordinator(now, |coordinator, context| coordinator.settle(context));
        outputs.extend(
            replies
                .into_iter()
                .map(|(id, response)| Output::Respond { id, response }),
        );
        if let Some(corrupt) = self.group_coordinator.take_fail_stop() {
            outputs.push(Output::FailStop(corrupt));
        }
    }

    /// Timers of the coordinated groups.
    pub(super) fn coordinator_tick(&mut self, now: Now, outputs: &mut Vec<Output>) {
        let group_outputs = self.group_coordinator.tick(now);
        self.execute_group_outputs(now, group_outputs, outputs);
    }

    /// Topics the applied metadata no longer holds: see
    /// `GroupCoordinator::on_topics_deleted`.
    pub(super) fn groups_on_topics_deleted(
        &mut self,
        now: Now,
        topics: &std::collections::BTreeSet<String>,
        outputs: &mut Vec<Output>,
    ) {
        let group_outputs = self.group_coordinator.on_topics_deleted(now, topics);
        self.execute_group_outputs(now, group_outputs, outputs);
    }

    /// Calls the group coordinator with its view of this node.
    fn drive_group_coordinator<R>(
        &mut self,
        now: Now,
        call: impl FnOnce(&mut GroupCoordinator, &mut GroupContext<'_>) -> R,
    ) -> R {
        let offsets = InternalPartitionsView {
            topic: OFFSETS_TOPIC,
            metadata: &self.metadata,
            partitions: &self.partitions,
        };
        let mut context = GroupContext {
            now,
            offsets: &offsets,
            rng: &mut self.rng,
            metadata: &self.metadata,
        };
        call(&mut self.group_coordinator, &mut context)
    }

    /// Carries out the coordinator's outputs in order, reporting each append back before
    /// the next.
    fn execute_group_outputs(
        &mut self,
        now: Now,
        group_outputs: Vec<GroupOutput>,
        outputs: &mut Vec<Output>,
    ) {
        for group_output in group_outputs {
            match group_output {
                GroupOutput::Respond { id, response } => {
                    outputs.push(Output::Respond { id, response })
                }
                GroupOutput::Append {
                    partition,
                    batch,
                    write,
                } => {
                    let partition = TopicPartition::new(OFFSETS_TOPIC, partition);
                    let appended = self.append_broker_batch(now, &partition, batch, outputs);
                    let replies = self.group_coordinator.appended(write, appended);
                    outputs.extend(
                        replies
                            .into_iter()
                            .map(|(id, response)| Output::Respond { id, response }),
                    );
                }
                GroupOutput::VerifyTxnOffsetCommit {
                    id,
                    partition,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    request,
                } => {
                    let partition = TopicPartition::new(OFFSETS_TOPIC, partition);
                    // The replica knows the transaction is open once a batch of it is there:
                    // no need to ask its coordinator again.
                    let open = self
                        .partitions
                        .get(&partition)
                        .is_some_and(|state| state.txns.is_open(producer_id, producer_epoch));
                    if open {
                        self.txn_offset_commit_verified(now, id, request, None, outputs);
                    } else {
                        let unverified = vec![(partition, producer_id, producer_epoch)];
                        let then = AfterVerification::TxnOffsetCommit { id, request };
                        self.start_verification(now, &transactional_id, unverified, then, outputs);
                    }
                }
            }
        }
    }
}
