//! The effect worker: carries out the core's outputs off the core task (see
//! [`EffectExecutor`]).

use super::held_batches::HeldBatches;
use super::{NodeClock, NodeHooks, TraceEvent};
use crate::metrics::Metrics;
use crate::peer::{PeerPayload, PeerTransport};
use crate::storage::{read_verified, Storage, StorageError};
use myelin_core::api::{CorruptData, PeerMessage, Response, StorageCommand};
use myelin_core::metadata::TopicPartition;
use myelin_core::replication::{NodeId, Records, ReplicaState, ReplicationMessage};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// One of the core's outputs on its way to be carried out, in step order (see
/// [`EffectExecutor`]). A response travels with the channel of the request it answers.
pub(super) enum Effect {
    Storage(StorageCommand),
    Reply {
        reply: oneshot::Sender<Response>,
        response: Response,
    },
    Send {
        to: NodeId,
        message: PeerMessage,
    },
    FailStop(CorruptData),
    /// Passed once every effect before it is carried out and released (shutdown).
    Barrier(oneshot::Sender<()>),
}

/// What a batch of effects lets out once its writes are durable, in order.
enum Release {
    Reply(oneshot::Sender<Response>, Response),
    Send(NodeId, PeerMessage),
    Barrier(oneshot::Sender<()>),
}

/// Carries out the core's outputs off the core task, in the order the core produced them,
/// so that no disk I/O (appends, truncations, replica-state and metadata writes, the reads
/// of a replication send) ever blocks a step.
///
/// Replica states are batched: a `PersistReplicaState` only records the state, and one
/// durable write of every recorded state (`Storage::persist_replica_states`) happens before
/// the batch lets anything out, and before any later storage command of a partition whose
/// state is recorded. So an election over a thousand partitions costs one write, not a
/// thousand, and still:
///
/// Invariants (`api::StorageCommand::PersistReplicaState`):
/// - nothing sent or answered after a persist in step order leaves before the state is
///   durable (sends and replies are released only after the batch's write);
/// - no data of a partition is written, cut or dropped before the replica state its core
///   moved to first is durable (a batch stamped with an epoch the disk does not know would
///   let a restarted node vote in that epoch again).
///
/// Fail-stop: the first error stops the worker; nothing of the failing batch is released.
pub(super) struct EffectExecutor {
    storage: Arc<dyn Storage>,
    /// The transport to the other nodes; `None` for a single-node cluster.
    peers: Option<PeerTransport<PeerMessage>>,
    /// Sequence of the last append written.
    written_sequence: u64,
    /// Replica states recorded but not yet written, by partition.
    unwritten_states: BTreeMap<TopicPartition, ReplicaState>,
    /// Batches appended lately, which replication sends take instead of reading them back.
    held: HeldBatches,
    hooks: NodeHooks,
    clock: NodeClock,
    metrics: Arc<Metrics>,
}

/// Effects carried out in one batch at most (more wait for the next).
const EFFECTS_PER_BATCH_MAX: usize = 4096;
/// Steps' effects queued for the worker at most; the core task waits beyond this.
pub(super) const EFFECT_QUEUE_DEPTH: usize = 1024;

/// The effect worker: takes what the core queued, carries it out on a blocking thread, then
/// releases the sends and replies and reports the appends written (a sync may cover them).
pub(super) async fn run_effects(
    mut executor: EffectExecutor,
    mut queue: mpsc::Receiver<Vec<Effect>>,
    written_sequence: watch::Sender<u64>,
    failed: oneshot::Sender<StorageError>,
) {
    while let Some(mut effects) = queue.recv().await {
        while effects.len() < EFFECTS_PER_BATCH_MAX {
            match queue.try_recv() {
                Ok(more) => effects.extend(more),
                Err(_) => break,
            }
        }
        // madsim deprecates spawn_blocking (it runs the closure as a plain task), which is
        // right for the simulator's in-memory file system.
        #[cfg_attr(madsim, allow(deprecated))]
        let joined = tokio::task::spawn_blocking(move || {
            let mut released = Vec::new();
            let result = executor.execute(effects, &mut released);
            (executor, result, released)
        })
        .await;
        let error = match joined {
            Ok((back, Ok(()), released)) => {
                executor = back;
                written_sequence.send_if_modified(|written| {
                    let advanced = *written != executor.written_sequence;
                    *written = executor.written_sequence;
                    advanced
                });
                executor.release(released);
                continue;
            }
            Ok((_, Err(error), _)) => error,
            Err(join_error) => StorageError::io(
                "effect worker",
                std::io::Error::other(join_error.to_string()),
            ),
        };
        let _ = failed.send(error);
        return;
    }
}

impl EffectExecutor {
    pub(super) fn new(
        storage: Arc<dyn Storage>,
        peers: Option<PeerTransport<PeerMessage>>,
        hooks: NodeHooks,
        clock: NodeClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        EffectExecutor {
            storage,
            peers,
            written_sequence: 0,
            unwritten_states: BTreeMap::new(),
            held: HeldBatches::default(),
            hooks,
            clock,
            metrics,
        }
    }

    /// Carries out `effects` here and now, then lets out what they allow (at start, before
    /// the worker runs).
    pub(super) fn execute_now(&mut self, effects: Vec<Effect>) -> Result<(), StorageError> {
        let mut released = Vec::new();
        self.execute(effects, &mut released)?;
        self.release(released);
        Ok(())
    }

    /// Sequence of the last append written.
    pub(super) fn written_sequence(&self) -> u64 {
        self.written_sequence
    }

    /// Carries out `effects` in order, collecting in `released` what may leave once the
    /// batch's replica states are durable; writes them last.
    fn execute(
        &mut self,
        effects: Vec<Effect>,
        released: &mut Vec<Release>,
    ) -> Result<(), StorageError> {
        for effect in effects {
            match effect {
                Effect::Storage(command) => {
                    if data_partition(&command)
                        .is_some_and(|partition| self.unwritten_states.contains_key(partition))
                    {
                        self.write_replica_states()?;
                    }
                    self.apply(command)?;
                }
                Effect::Reply { reply, response } => released.push(Release::Reply(reply, response)),
                Effect::Send { to, message } => {
                    if let Some(message) = self.with_stored_bytes(to, message)? {
                        released.push(Release::Send(to, message));
                    }
                }
                Effect::FailStop(corrupt) => {
                    return Err(StorageError::CorruptData {
                        location: self.storage.locate(&corrupt.partition, corrupt.offset),
                        offset: corrupt.offset,
                        reason: corrupt.reason,
                    })
                }
                Effect::Barrier(passed) => released.push(Release::Barrier(passed)),
            }
        }
        self.write_replica_states()
    }

    /// Makes every recorded replica state durable, in one write.
    fn write_replica_states(&mut self) -> Result<(), StorageError> {
        if self.unwritten_states.is_empty() {
            return Ok(());
        }
        let states: Vec<(TopicPartition, ReplicaState)> =
            std::mem::take(&mut self.unwritten_states)
                .into_iter()
                .collect();
        self.storage.persist_replica_states(&states)?;
        self.hooks.trace(
            self.clock.now(),
            TraceEvent::ReplicaStatesPersisted(&states),
        );
        Ok(())
    }

    /// Lets out what a carried-out batch allows, in order.
    fn release(&self, released: Vec<Release>) {
        for release in released {
            match release {
                // The connection may have gone; its response is simply dropped.
                Release::Reply(reply, response) => {
                    let _ = reply.send(response);
                }
                Release::Send(to, message) => match &self.peers {
                    // A full queue drops the message (counted by the transport): replication
                    // retries.
                    Some(peers) => {
                        peers.send(to, message);
                    }
                    None => tracing::warn!(
                        to,
                        "a message for a peer, but this node has none configured"
                    ),
                },
                Release::Barrier(passed) => {
                    let _ = passed.send(());
                }
            }
        }
    }

    /// `message` with the stored batches a replication append names read in; `None` if one
    /// is damaged (never sent: the follower stays behind, and the partition
    /// under-replicated, rather than copy a damaged batch).
    fn with_stored_bytes(
        &self,
        to: NodeId,
        mut message: PeerMessage,
    ) -> Result<Option<PeerMessage>, StorageError> {
        if let PeerMessage::Replication {
            partition,
            message: ReplicationMessage::Append { records, .. },
        } = &mut message
        {
            if let Records::Stored(chunks) = records {
                let mut parts = Vec::with_capacity(chunks.len());
                for chunk in chunks.iter() {
                    if let Some(held) = self.held.read(partition, chunk) {
                        parts.push(held);
                        continue;
                    }
                    match read_verified(self.storage.as_ref(), partition, chunk) {
                        Ok(read) => parts.push(read),
                        Err(error @ StorageError::CorruptData { .. }) => {
                            tracing::error!(%partition, to, %error, "a stored batch is damaged; not replicated");
                            return Ok(None);
                        }
                        Err(error) => return Err(error),
                    }
                }
                // One part (the usual case) goes as it is; several are joined.
                *records = Records::Inline(crate::joined(parts));
            }
        }
        Ok(Some(message))
    }

    fn apply(&mut self, command: StorageCommand) -> Result<(), StorageError> {
        match &command {
            // Stored bytes changing other than by an append: what is held may no longer be.
            StorageCommand::CreatePartition { partition, .. }
            | StorageCommand::DeletePartition { partition }
            | StorageCommand::DeleteSegment { partition, .. }
            | StorageCommand::Truncate { partition, .. }
            | StorageCommand::RestartLog { partition, .. } => self.held.forget(partition),
            StorageCommand::Append { .. }
            | StorageCommand::RollSegment { .. }
            | StorageCommand::PersistReplicaState { .. }
            | StorageCommand::PersistMetadata(_)
            | StorageCommand::PersistDeletedBelow { .. } => {}
        }
        match command {
            StorageCommand::CreatePartition {
                partition,
                base_offset,
            } => self.storage.create_partition(&partition, base_offset),
            StorageCommand::DeletePartition { partition } => {
                self.storage.delete_partition(&partition)
            }
            StorageCommand::Append {
                partition,
                batch,
                bytes,
                sequence,
            } => {
                self.storage.append(&partition, &batch, &bytes)?;
                self.metrics.appended(bytes.len());
                if self.peers.is_some() {
                    self.held.appended(&partition, &batch, &bytes);
                }
                myelin_core::invariant!(
                    sequence > self.written_sequence,
                    "append sequences increase"
                );
                self.written_sequence = sequence;
                Ok(())
            }
            StorageCommand::RollSegment {
                partition,
                base_offset,
            } => self.storage.roll_segment(&partition, base_offset),
            StorageCommand::DeleteSegment {
                partition,
                base_offset,
            } => self.storage.delete_segment(&partition, base_offset),
            StorageCommand::Truncate {
                partition,
                truncation,
            } => self.storage.truncate(&partition, &truncation),
            StorageCommand::RestartLog {
                partition,
                base_offset,
            } => self.storage.restart_log(&partition, base_offset),
            // Recorded only: written with the batch's others (see `execute`).
            StorageCommand::PersistReplicaState { partition, state } => {
                self.unwritten_states.insert(partition, state);
                Ok(())
            }
            StorageCommand::PersistMetadata(metadata) => self.storage.persist_metadata(&metadata),
            StorageCommand::PersistDeletedBelow { partition, offset } => {
                self.storage.persist_deleted_below(&partition, offset)
            }
        }
    }
}

/// The partition whose stored data a command changes, if any.
fn data_partition(command: &StorageCommand) -> Option<&TopicPartition> {
    match command {
        StorageCommand::CreatePartition { partition, .. }
        | StorageCommand::DeletePartition { partition }
        | StorageCommand::Append { partition, .. }
        | StorageCommand::RollSegment { partition, .. }
        | StorageCommand::DeleteSegment { partition, .. }
        | StorageCommand::Truncate { partition, .. }
        | StorageCommand::RestartLog { partition, .. } => Some(partition),
        StorageCommand::PersistReplicaState { .. }
        | StorageCommand::PersistMetadata(_)
        | StorageCommand::PersistDeletedBelow { .. } => None,
    }
}

/// A replication append's batches go to the peer wire shared, not copied: the leader holds
/// them already (`held_batches`), and each follower's frame takes a reference.
impl PeerPayload for PeerMessage {
    fn shared_bytes(&self) -> Vec<bytes::Bytes> {
        match self {
            PeerMessage::Replication {
                message:
                    ReplicationMessage::Append {
                        records: Records::Inline(bytes),
                        ..
                    },
                ..
            } => vec![bytes.clone()],
            _ => Vec::new(),
        }
    }
}
