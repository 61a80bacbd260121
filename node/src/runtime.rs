//! The runtime: one task owns the core's `Broker` and drives it.
//!
//! Connection tasks send decoded requests here through a bounded channel and await the
//! answer on a oneshot. The core task feeds each request to `Broker::step`, executes the
//! storage commands it returns in order (appends land in the page cache), and sends the
//! responses. Durability is a group commit: whenever appends are outstanding and no sync is
//! running, one sync starts on a blocking thread and covers every append issued so far; its
//! completion comes back as `Input::Synced`, which releases the acknowledgements waiting for
//! it. Produce requests that arrive during a sync share the next one.
//!
//! The core never reads a clock: this task reads the node's two ([`NodeClock`]) before each
//! step and passes both as `Now`: a monotonic one, which drives every timer in the core, and
//! the wall clock, which only stamps records and decides time-based retention (see
//! `myelin_core::api::Now`). A step of the wall clock (NTP, an operator) so fires no
//! election, session expiry or timeout early and stalls none.
//!
//! [`NodeHooks`] let a driver observe and perturb a node without changing what it does: a
//! [`TraceSink`] sees every core input and output in order, a clock offset skews (or steps)
//! the wall clock the core sees, a sync delay models fsync latency, and the core's configuration can be
//! adjusted before the broker is built. The real binary passes no hooks; the simulator
//! passes all of them.
//!
//! Fail-stop: a storage error ends the node. The real binary exits (status 70). Under the
//! simulator (`cfg(madsim)`) every node shares one process, so the core task stops instead:
//! it answers nothing more, and the simulator treats the node as crashed.

use crate::peer::{PeerReceiver, PeerTransport};
use crate::storage::{read_verified, Storage, StorageError};
use bytes::{Bytes, BytesMut};
use myelin_core::api::{
    BrokerConfig, Input, Now, Output, PeerMessage, ReadChunk, RecoveredPartition, Request,
    RequestId, Response, StorageCommand,
};
use myelin_core::broker::Broker;
use myelin_core::metadata::TopicPartition;
use myelin_core::replication::{NodeId, Records, ReplicationMessage};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Requests queued for the core task at most; senders wait beyond this (backpressure).
pub const CORE_QUEUE_DEPTH: usize = 4096;
/// Events handled per wakeup before the task looks at syncs and timers again.
const EVENTS_PER_WAKEUP_MAX: usize = 512;
/// Longest the core task sleeps without a tick (retention checks run on ticks).
const TICK_INTERVAL_MAX_MS: i64 = 1000;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("the node is shutting down")]
    Stopped,
}

enum CoreEvent {
    Call {
        request: Request,
        reply: oneshot::Sender<Response>,
    },
    Synced {
        through_sequence: u64,
    },
    SyncFailed(StorageError),
    Peer {
        from: NodeId,
        message: PeerMessage,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// What connection tasks hold: a way to call the core and to read stored batches.
#[derive(Clone)]
pub struct NodeHandle {
    events: mpsc::Sender<CoreEvent>,
    storage: Arc<dyn Storage>,
}

impl NodeHandle {
    /// Sends one request to the core and waits for its response.
    pub async fn call(&self, request: Request) -> Result<Response, RuntimeError> {
        let (reply, answer) = oneshot::channel();
        self.events
            .send(CoreEvent::Call { request, reply })
            .await
            .map_err(|_| RuntimeError::Stopped)?;
        answer.await.map_err(|_| RuntimeError::Stopped)
    }

    /// Reads the bytes of fetched batches, as the core described them.
    pub fn read(
        &self,
        partition: &TopicPartition,
        chunk: &ReadChunk,
    ) -> Result<Bytes, StorageError> {
        read_verified(self.storage.as_ref(), partition, chunk)
    }

    /// Asks the core task to finish: it syncs outstanding appends and returns.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.events.send(CoreEvent::Shutdown { done }).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// What a [`TraceSink`] is shown: the core's inputs and outputs, and the node's life events.
#[derive(Debug, Clone, Copy)]
pub enum TraceEvent<'a> {
    /// The broker is about to be built from what storage recovered.
    Started {
        node_id: i32,
        recovered: &'a [RecoveredPartition],
    },
    /// An input about to be fed to `Broker::step`.
    Input(&'a Input),
    /// An output of the step (or of `Broker::new`) just before, in order.
    Output(&'a Output),
    /// Storage failed: the node stops (see the module doc).
    FailStop(&'a StorageError),
}

/// Receives a node's trace; `wall_ms` is the wall clock the core was given.
pub trait TraceSink: Send + Sync {
    fn record(&self, wall_ms: i64, event: TraceEvent<'_>);
}

/// Adjusts a broker's configuration before it is built (see [`NodeHooks`]).
pub type AdjustBrokerConfig = Arc<dyn Fn(&mut BrokerConfig) + Send + Sync>;
/// Draws the delay before one sync (see [`NodeHooks`]).
pub type SyncDelay = Arc<dyn Fn() -> Duration + Send + Sync>;

/// Optional observation and fault hooks; `NodeHooks::default()` is the real node.
#[derive(Clone, Default)]
pub struct NodeHooks {
    /// Sees every core input and output, in order.
    pub trace: Option<Arc<dyn TraceSink>>,
    /// Milliseconds added to the wall clock before the core sees it (clock skew, or a step
    /// of the wall clock); shared, so the driver may change it while the node runs. The
    /// monotonic clock is never offset.
    pub clock_offset_ms: Option<Arc<AtomicI64>>,
    /// Called before each group-commit sync starts; the sync waits that long (fsync
    /// latency). Appends made meanwhile are covered by the same sync.
    pub sync_delay: Option<SyncDelay>,
    /// Adjusts the core's configuration before the broker is built.
    pub adjust_broker_config: Option<AdjustBrokerConfig>,
    /// Seed of the broker's RNG; `None` draws one at random.
    pub broker_rng_seed: Option<u64>,
}

impl NodeHooks {
    /// Shows `event`, which happened at `now`, to the trace sink, if any.
    pub fn trace(&self, now: Now, event: TraceEvent<'_>) {
        if let Some(sink) = &self.trace {
            sink.record(now.wall_ms, event);
        }
    }
}

/// A node's two clocks, read together as the core's [`Now`].
#[derive(Clone)]
pub struct NodeClock {
    /// The monotonic clock's zero: when the node started. `tokio::time::Instant` is the
    /// simulator's virtual clock under madsim, so simulated runs stay deterministic.
    origin: tokio::time::Instant,
    /// The hooks' wall-clock offset, if any.
    wall_offset_ms: Option<Arc<AtomicI64>>,
}

impl NodeClock {
    /// Starts the monotonic clock at zero now.
    pub fn start(hooks: &NodeHooks) -> Self {
        Self {
            origin: tokio::time::Instant::now(),
            wall_offset_ms: hooks.clock_offset_ms.clone(),
        }
    }

    /// Reads both clocks: monotonic milliseconds since the node started, and wall-clock
    /// milliseconds plus the hooks' offset.
    pub fn now(&self) -> Now {
        let monotonic_ms = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX);
        let offset_ms = self
            .wall_offset_ms
            .as_ref()
            .map_or(0, |offset| offset.load(Ordering::Relaxed));
        Now {
            monotonic_ms,
            wall_ms: wall_clock_ms() + offset_ms,
        }
    }
}

/// Milliseconds since the Unix epoch (virtual time under the simulator).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The core task's state besides the broker.
struct CoreTask {
    broker: Broker,
    storage: Arc<dyn Storage>,
    events_sender: mpsc::Sender<CoreEvent>,
    pending: BTreeMap<RequestId, oneshot::Sender<Response>>,
    next_request_id: RequestId,
    /// Sequence of the last append handed to storage.
    appended_sequence: u64,
    /// Sequence covered by the last completed sync.
    synced_sequence: u64,
    sync_in_flight: bool,
    /// The transport to the other nodes; `None` for a single-node cluster.
    peers: Option<PeerTransport<PeerMessage>>,
    hooks: NodeHooks,
    clock: NodeClock,
}

/// Starts the core task and returns the handle connection tasks use. `clock` is the one the
/// broker was built with (`Broker::new` took its first reading).
pub fn start(
    broker: Broker,
    storage: Arc<dyn Storage>,
    initial: Vec<Output>,
    clock: NodeClock,
) -> Result<NodeHandle, StorageError> {
    start_with(broker, storage, initial, None, NodeHooks::default(), clock)
}

/// [`start`], with the peer transport of a cluster and hooks. Messages from peers become
/// `Input::Peer`s, in arrival order. The trace sees `initial` as outputs before anything
/// else runs.
pub fn start_with(
    broker: Broker,
    storage: Arc<dyn Storage>,
    initial: Vec<Output>,
    peers: Option<(PeerTransport<PeerMessage>, PeerReceiver<PeerMessage>)>,
    hooks: NodeHooks,
    clock: NodeClock,
) -> Result<NodeHandle, StorageError> {
    let (events_sender, events) = mpsc::channel(CORE_QUEUE_DEPTH);
    let (peers, peer_receiver) = match peers {
        Some((transport, receiver)) => (Some(transport), Some(receiver)),
        None => (None, None),
    };
    let mut task = CoreTask {
        broker,
        storage: storage.clone(),
        events_sender: events_sender.clone(),
        pending: BTreeMap::new(),
        next_request_id: 1,
        appended_sequence: 0,
        synced_sequence: 0,
        sync_in_flight: false,
        peers,
        hooks,
        clock,
    };
    if task.hooks.trace.is_some() {
        let now = task.clock.now();
        for output in &initial {
            task.hooks.trace(now, TraceEvent::Output(output));
        }
    }
    if let Err(error) = task.execute(initial) {
        // Stored data found corrupt at start (or storage failing): fail-stop, as below.
        tracing::error!(%error, "the node cannot start from its data; it stops");
        task.hooks
            .trace(task.clock.now(), TraceEvent::FailStop(&error));
        return Err(error);
    }
    // Peer messages have their own queue, read before client requests: votes, heartbeats
    // and acknowledgements must not wait behind a flood of produces, or elections churn.
    // (Without peers the receiver is empty for good.)
    let peer_events = peer_receiver.unwrap_or_else(|| mpsc::channel(1).1);
    tokio::spawn(task.run(events, peer_events));
    Ok(NodeHandle {
        events: events_sender,
        storage,
    })
}

impl CoreTask {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<CoreEvent>,
        mut peer_events: PeerReceiver<PeerMessage>,
    ) {
        loop {
            // Timers are due on the monotonic clock (see `Broker::next_wakeup_ms`).
            let now = self.clock.now().monotonic_ms;
            let wake_at = self
                .broker
                .next_wakeup_ms()
                .map_or(now + TICK_INTERVAL_MAX_MS, |at| {
                    at.min(now + TICK_INTERVAL_MAX_MS)
                });
            let sleep_ms = (wake_at - now).max(0) as u64;
            let first = tokio::select! {
                biased;
                Some((from, message)) = peer_events.recv() => Some(CoreEvent::Peer { from, message }),
                event = events.recv() => match event {
                    Some(event) => Some(event),
                    None => return,
                },
                _ = tokio::time::sleep(std::time::Duration::from_millis(sleep_ms)) => None,
            };
            let mut batch = Vec::new();
            batch.extend(first);
            while batch.len() < EVENTS_PER_WAKEUP_MAX {
                match peer_events.try_recv() {
                    Ok((from, message)) => batch.push(CoreEvent::Peer { from, message }),
                    Err(_) => break,
                }
            }
            while batch.len() < EVENTS_PER_WAKEUP_MAX {
                match events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            for event in batch {
                if let Err(error) = self.handle(event).await {
                    self.fail_stop(&error);
                    return;
                }
            }
            if let Err(error) = self.step(Input::Tick) {
                self.fail_stop(&error);
                return;
            }
            self.start_sync_if_needed();
        }
    }

    /// Fail-stop: a storage error leaves the disk in a state we cannot vouch for, so nothing
    /// more is acknowledged. The real node exits; under the simulator the caller returns,
    /// which ends the core task (and with it every pending request) but not the process.
    fn fail_stop(&self, error: &StorageError) {
        tracing::error!(%error, "storage failed; the node stops serving");
        self.hooks
            .trace(self.clock.now(), TraceEvent::FailStop(error));
        #[cfg(not(madsim))]
        std::process::exit(70);
    }

    async fn handle(&mut self, event: CoreEvent) -> Result<(), StorageError> {
        match event {
            CoreEvent::Call { request, reply } => {
                let id = self.next_request_id;
                self.next_request_id += 1;
                self.pending.insert(id, reply);
                self.step(Input::Request { id, request })
            }
            CoreEvent::Synced { through_sequence } => {
                self.sync_in_flight = false;
                self.synced_sequence = through_sequence;
                self.step(Input::Synced { through_sequence })
            }
            CoreEvent::SyncFailed(error) => Err(error),
            CoreEvent::Peer { from, message } => self.step(Input::Peer { from, message }),
            CoreEvent::Shutdown { done } => {
                self.sync_now_blocking()?;
                let _ = done.send(());
                Ok(())
            }
        }
    }

    fn step(&mut self, input: Input) -> Result<(), StorageError> {
        let now = self.clock.now();
        if self.hooks.trace.is_none() {
            let outputs = self.broker.step(now, input);
            return self.execute(outputs);
        }
        self.hooks.trace(now, TraceEvent::Input(&input));
        let outputs = self.broker.step(now, input);
        for output in &outputs {
            self.hooks.trace(now, TraceEvent::Output(output));
        }
        self.execute(outputs)
    }

    fn execute(&mut self, outputs: Vec<Output>) -> Result<(), StorageError> {
        for output in outputs {
            match output {
                Output::FailStop(corrupt) => {
                    return Err(StorageError::CorruptData {
                        location: self.storage.locate(&corrupt.partition, corrupt.offset),
                        offset: corrupt.offset,
                        reason: corrupt.reason,
                    })
                }
                Output::Storage(command) => self.apply(command)?,
                Output::Respond { id, response } => {
                    if let Some(reply) = self.pending.remove(&id) {
                        // The connection may have gone; its response is simply dropped.
                        let _ = reply.send(response);
                    }
                }
                Output::Send { to, message } => self.send(to, message)?,
            }
        }
        Ok(())
    }

    /// Sends a message to a peer, first reading the stored batches an append names.
    fn send(&mut self, to: NodeId, mut message: PeerMessage) -> Result<(), StorageError> {
        let Some(peers) = &self.peers else {
            tracing::warn!(
                to,
                "a message for a peer, but this node has none configured"
            );
            return Ok(());
        };
        if let PeerMessage::Replication {
            partition,
            message: ReplicationMessage::Append { records, .. },
        } = &mut message
        {
            if let Records::Stored(chunks) = records {
                let mut bytes = BytesMut::new();
                for chunk in chunks.iter() {
                    match read_verified(self.storage.as_ref(), partition, chunk) {
                        Ok(read) => bytes.extend_from_slice(&read),
                        Err(error @ StorageError::CorruptData { .. }) => {
                            // Never sent: the follower stays behind (and the partition
                            // under-replicated) rather than copy a damaged batch.
                            tracing::error!(%partition, to, %error, "a stored batch is damaged; not replicated");
                            return Ok(());
                        }
                        Err(error) => return Err(error),
                    }
                }
                *records = Records::Inline(bytes.freeze());
            }
        }
        // A full queue drops the message (counted by the transport): replication retries.
        peers.send(to, message);
        Ok(())
    }

    fn apply(&mut self, command: StorageCommand) -> Result<(), StorageError> {
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
                myelin_core::invariant!(
                    sequence > self.appended_sequence,
                    "append sequences increase"
                );
                self.appended_sequence = sequence;
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
            StorageCommand::PersistReplicaState { partition, state } => {
                self.storage.persist_replica_state(&partition, &state)
            }
            StorageCommand::PersistMetadata(metadata) => self.storage.persist_metadata(&metadata),
        }
    }

    /// Group commit: one sync at a time, covering every append issued before it starts.
    fn start_sync_if_needed(&mut self) {
        if self.sync_in_flight || self.appended_sequence == self.synced_sequence {
            return;
        }
        self.sync_in_flight = true;
        let through_sequence = self.appended_sequence;
        let storage = self.storage.clone();
        let events = self.events_sender.clone();
        let delay = self.hooks.sync_delay.as_ref().map(|delay| delay());
        tokio::spawn(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            // madsim deprecates spawn_blocking (it runs the closure as a plain task), which
            // is right for the simulator's in-memory file system.
            #[cfg_attr(madsim, allow(deprecated))]
            let result = tokio::task::spawn_blocking(move || storage.sync()).await;
            let event = match result {
                Ok(Ok(())) => CoreEvent::Synced { through_sequence },
                Ok(Err(error)) => CoreEvent::SyncFailed(error),
                Err(join_error) => CoreEvent::SyncFailed(StorageError::io(
                    "sync task",
                    std::io::Error::other(join_error.to_string()),
                )),
            };
            let _ = events.send(event).await;
        });
    }

    /// Used at shutdown: sync inline so that everything appended is durable before exit.
    fn sync_now_blocking(&mut self) -> Result<(), StorageError> {
        self.storage.sync()?;
        let through_sequence = self.appended_sequence;
        self.synced_sequence = through_sequence;
        self.step(Input::Synced { through_sequence })
    }
}
