//! DeleteRecords on a partition's leader. The start clients may read moves at once here
//! (`PartitionLog::delete_records_below`, persisted before anything later leaves:
//! `StorageCommand::PersistDeletedBelow`) and travels in replication: every append carries
//! the leader's start, a follower moves its own up to it (as far as its high watermark) and
//! persists it before it answers, and its answer reports the start it holds (see "Log
//! start" in `crate::replication`). The answer waits until a majority of the partition's
//! replicas, the leader included, hold the new start durably
//! (`Replica::deleted_start_on_majority`), at most the request's timeout.
//!
//! Invariant: once DeleteRecords is answered with success, no leader of the partition
//! serves a record below the new start. A later leader is elected by a majority and serves
//! reads only once a majority answered an append of its epoch; both majorities share a
//! replica holding the start, whose answer makes the leader adopt it in the step its high
//! watermark rises (`Replica::advance_high_watermark`). Before the answer (a timeout, or a
//! leader change: NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT), the delete may have taken
//! effect on some replicas only; a replica holding it passes it on to every later leader
//! it answers, so it is never undone once a majority holds it.

use super::{is_internal_topic, Broker};
use crate::api::{ErrorCode, Now, Output, RequestId, Response, StorageCommand};
use crate::metadata::TopicPartition;

/// Most DeleteRecords requests waiting for their answer; past it a request is refused
/// with REQUEST_TIMED_OUT before anything is deleted (clients retry it).
pub(crate) const WAITING_DELETES_MAX: usize = 1_000;

/// One partition's part of a waiting DeleteRecords.
#[derive(Debug)]
struct DeleteWait {
    /// Index of the partition's entry in the results.
    result: usize,
    /// The start a majority must hold.
    offset: i64,
    /// The leader epoch the start moved in: a leader change answers
    /// NOT_LEADER_OR_FOLLOWER.
    epoch: i32,
}

/// A DeleteRecords request waiting for a majority of each partition's replicas to hold its
/// new start.
#[derive(Debug)]
pub(super) struct WaitingDelete {
    id: RequestId,
    pub(super) deadline_ms: i64,
    results: Vec<(TopicPartition, ErrorCode, i64)>,
    waits: Vec<DeleteWait>,
}

impl Broker {
    /// DeleteRecords: each partition's records below its offset (-1: the high watermark)
    /// are deleted for clients on its leader; answered once a majority holds each new
    /// start, or at `timeout_ms`.
    pub(super) fn delete_records(
        &mut self,
        now: Now,
        id: RequestId,
        timeout_ms: i32,
        partitions: Vec<(TopicPartition, i64)>,
        outputs: &mut Vec<Output>,
    ) {
        if self.waiting_deletes.len() >= WAITING_DELETES_MAX {
            self.counters.waiting_deletes_refused += 1;
            let results = partitions
                .into_iter()
                .map(|(partition, _)| (partition, ErrorCode::RequestTimedOut, -1))
                .collect();
            outputs.push(Output::Respond {
                id,
                response: Response::DeleteRecords(results),
            });
            return;
        }
        let mut results = Vec::with_capacity(partitions.len());
        let mut waits = Vec::new();
        for (index, (partition, offset)) in partitions.into_iter().enumerate() {
            match self.delete_partition_records(now, &partition, offset, outputs) {
                Ok((offset, epoch)) => {
                    waits.push(DeleteWait {
                        result: index,
                        offset,
                        epoch,
                    });
                    results.push((partition, ErrorCode::None, -1));
                }
                Err(error) => results.push((partition, error, -1)),
            }
        }
        self.waiting_deletes.push(WaitingDelete {
            id,
            deadline_ms: now.monotonic_ms + i64::from(timeout_ms.max(0)),
            results,
            waits,
        });
        // Answered after this step's other outputs (the persisted start first), by
        // `release_waiting_deletes`.
    }

    /// Moves one partition's client start on its leader, persists it and pushes it to the
    /// followers; returns the start a majority must hold and the epoch it moved in.
    fn delete_partition_records(
        &mut self,
        now: Now,
        partition: &TopicPartition,
        offset: i64,
        outputs: &mut Vec<Output>,
    ) -> Result<(i64, i32), ErrorCode> {
        if is_internal_topic(&partition.topic) {
            // As Kafka: the internal topics' records are the coordinators' to delete.
            return Err(ErrorCode::InvalidTopicException);
        }
        let high_watermark = self.readable_partition(partition)?.log.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&offset) {
            return Err(ErrorCode::OffsetOutOfRange);
        }
        let state = self
            .partitions
            .get_mut(partition)
            .ok_or(ErrorCode::UnknownTopicOrPartition)?;
        let epoch = state.replica.epoch();
        if state.log.delete_records_below(offset) {
            tracing::info!(%partition, offset, "records deleted below");
            outputs.push(Output::Storage(StorageCommand::PersistDeletedBelow {
                partition: partition.clone(),
                offset,
            }));
            self.drive_replica(now, partition, outputs, |replica, context| {
                replica.heartbeat_now(context)
            });
        }
        Ok((offset, epoch))
    }

    /// After every step while some wait: answers the DeleteRecords whose every partition
    /// is settled (a majority holds its start, its leader changed, or the request's time
    /// is up).
    pub(super) fn release_waiting_deletes(&mut self, now: Now, outputs: &mut Vec<Output>) {
        for mut delete in std::mem::take(&mut self.waiting_deletes) {
            let expired = delete.deadline_ms <= now.monotonic_ms;
            delete.waits.retain(|wait| {
                let (partition, error, low_watermark) = &mut delete.results[wait.result];
                let leading = self
                    .partitions
                    .get(partition)
                    .filter(|state| state.replica.epoch() == wait.epoch)
                    .and_then(|state| {
                        let held = state.replica.deleted_start_on_majority(&state.log)?;
                        Some((held, state.log.client_start_offset()))
                    });
                match leading {
                    None => *error = ErrorCode::NotLeaderOrFollower,
                    Some((held, start)) if held.max(0) >= wait.offset => *low_watermark = start,
                    Some(_) if expired => *error = ErrorCode::RequestTimedOut,
                    Some(_) => return true,
                }
                false
            });
            if delete.waits.is_empty() {
                outputs.push(Output::Respond {
                    id: delete.id,
                    response: Response::DeleteRecords(delete.results),
                });
            } else {
                self.waiting_deletes.push(delete);
            }
        }
    }
}
