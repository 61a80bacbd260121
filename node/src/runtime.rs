//! The runtime: one task owns the core's `Broker` and drives it; another carries out what
//! it decides.
//!
//! Connection tasks send decoded requests here through a bounded channel and await the
//! answer on a oneshot. The core task feeds each request to `Broker::step` and queues the
//! step's outputs, in order, for the effect worker ([`EffectExecutor`]), which carries them
//! out on a blocking thread: storage commands (appends land in the page cache), the reads
//! of replication sends, then the sends and replies. So no disk I/O ever blocks a step,
//! and one slow disk operation stalls no election, heartbeat or client of another
//! partition. Replica-state writes are batched: one durable write for all the partitions a
//! batch of steps moved, made before anything that depends on it leaves (see
//! [`EffectExecutor`] for the invariants).
//!
//! Durability is a group commit: whenever the worker has written appends that no sync
//! covers and no sync is running, one sync starts on a blocking thread and covers every
//! append written so far; its completion comes back as `Input::Synced`, which releases the
//! acknowledgements waiting for it. Produce requests that arrive during a sync share the
//! next one.
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
//! Fail-stop: a storage error ends the node (nothing of the effect batch that failed is let
//! out). The real binary exits (status 70). Under the simulator (`cfg(madsim)`) every node
//! shares one process, so the core task stops instead: it answers nothing more, and the
//! simulator treats the node as crashed.

mod effects;
mod held_batches;

use crate::metrics::Metrics;
use crate::peer::{PeerReceiver, PeerTransport};
use crate::storage::{read_verified, Storage, StorageError};
use bytes::Bytes;
use effects::{run_effects, Effect, EffectExecutor, EFFECT_QUEUE_DEPTH};
use myelin_core::api::{
    BrokerConfig, Input, Now, Output, PeerMessage, ReadChunk, RecoveredPartition, Request,
    RequestId, Response,
};
use myelin_core::broker::{Broker, BrokerStats};
use myelin_core::metadata::TopicPartition;
use myelin_core::replication::{NodeId, ReplicaState};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

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

/// Scrapes waiting for the core's snapshot at most; more wait to queue (see `metrics`).
const STATS_QUEUE_DEPTH: usize = 16;

/// What connection tasks hold: a way to call the core and to read stored batches.
#[derive(Clone)]
pub struct NodeHandle {
    events: mpsc::Sender<CoreEvent>,
    /// Snapshots asked of the core task (read without a step; see `Broker::stats`).
    stats: mpsc::Sender<oneshot::Sender<BrokerStats>>,
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
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

    /// The core's summary for the metrics, read between steps (never a step itself).
    pub async fn stats(&self) -> Result<BrokerStats, RuntimeError> {
        let (reply, answer) = oneshot::channel();
        self.stats
            .send(reply)
            .await
            .map_err(|_| RuntimeError::Stopped)?;
        answer.await.map_err(|_| RuntimeError::Stopped)
    }

    /// The node's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Reads the bytes of fetched batches, as the core described them.
    pub fn read(
        &self,
        partition: &TopicPartition,
        chunk: &ReadChunk,
    ) -> Result<Bytes, StorageError> {
        read_verified(self.storage.as_ref(), partition, chunk)
    }

    /// The data directory the node's storage keeps its partitions in.
    pub fn data_dir(&self) -> &std::path::Path {
        self.storage.data_dir()
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
    /// These replica states are durable now (one write; see the effect worker).
    ReplicaStatesPersisted(&'a [(TopicPartition, ReplicaState)]),
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
    /// Where the core's outputs go, in step order, to be carried out off this task.
    effects: mpsc::Sender<Vec<Effect>>,
    /// Sequence of the last append the effect worker has written (a sync covers it).
    written_sequence: watch::Receiver<u64>,
    /// The effect worker's error, once it fails; `None` after it was taken.
    worker_failed: Option<oneshot::Receiver<StorageError>>,
    /// Sequence covered by the last completed sync.
    synced_sequence: u64,
    sync_in_flight: bool,
    /// `Metrics::appended_bytes` when the last sync started (its group-commit size).
    synced_bytes: u64,
    metrics: Arc<Metrics>,
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
/// else runs; they are carried out before this returns.
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
    let (effects, effect_queue) = mpsc::channel(EFFECT_QUEUE_DEPTH);
    let (written_sender, written_sequence) = watch::channel(0);
    let (failure_sender, worker_failed) = oneshot::channel();
    let metrics = Arc::new(Metrics::default());
    let mut executor = EffectExecutor::new(
        storage.clone(),
        peers,
        hooks.clone(),
        clock.clone(),
        metrics.clone(),
    );
    let mut task = CoreTask {
        broker,
        storage: storage.clone(),
        events_sender: events_sender.clone(),
        pending: BTreeMap::new(),
        next_request_id: 1,
        effects,
        written_sequence,
        worker_failed: Some(worker_failed),
        synced_sequence: 0,
        sync_in_flight: false,
        synced_bytes: 0,
        metrics: metrics.clone(),
        hooks,
        clock,
    };
    if task.hooks.trace.is_some() {
        let now = task.clock.now();
        for output in &initial {
            task.hooks.trace(now, TraceEvent::Output(output));
        }
    }
    // Carried out here, before anything is served: what the core rebuilt from disk (e.g. a
    // cut tail) is on disk again before the first request.
    let initial = task.effects_of(initial);
    if let Err(error) = executor.execute_now(initial) {
        // Stored data found corrupt at start (or storage failing): fail-stop, as below.
        tracing::error!(%error, "the node cannot start from its data; it stops");
        task.hooks
            .trace(task.clock.now(), TraceEvent::FailStop(&error));
        return Err(error);
    }
    written_sender.send_replace(executor.written_sequence());
    // Peer messages have their own queue, read before client requests: votes, heartbeats
    // and acknowledgements must not wait behind a flood of produces, or elections churn.
    // (Without peers the receiver is empty for good.)
    let peer_events = peer_receiver.unwrap_or_else(|| mpsc::channel(1).1);
    tokio::spawn(run_effects(
        executor,
        effect_queue,
        written_sender,
        failure_sender,
    ));
    let (stats, stats_requests) = mpsc::channel(STATS_QUEUE_DEPTH);
    tokio::spawn(task.run(events, peer_events, stats_requests));
    Ok(NodeHandle {
        events: events_sender,
        stats,
        storage,
        metrics,
    })
}

impl CoreTask {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<CoreEvent>,
        mut peer_events: PeerReceiver<PeerMessage>,
        mut stats_requests: mpsc::Receiver<oneshot::Sender<BrokerStats>>,
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
                Some(error) = worker_failure(&mut self.worker_failed) => {
                    self.fail_stop(&error);
                    return;
                }
                Some((from, message)) = peer_events.recv() => Some(CoreEvent::Peer { from, message }),
                // A scrape: answered from the broker as it stands, with no step (and so no
                // trace event, nothing the core decides differently).
                Some(reply) = stats_requests.recv() => {
                    let _ = reply.send(self.broker.stats(self.clock.now()));
                    continue;
                }
                event = events.recv() => match event {
                    Some(event) => Some(event),
                    None => return,
                },
                // More appends written: a sync may start (below).
                Ok(()) = self.written_sequence.changed() => None,
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
            if let Err(error) = self.step(Input::Tick).await {
                self.fail_stop(&error);
                return;
            }
            self.start_sync_if_needed();
        }
    }

    /// Fail-stop: a storage error leaves the disk in a state we cannot vouch for, so nothing
    /// more is acknowledged. The real node exits; under the simulator the caller returns,
    /// which ends the core task (and with it every pending request, and the effect worker
    /// once its queue closes) but not the process.
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
                self.step(Input::Request { id, request }).await
            }
            CoreEvent::Synced { through_sequence } => {
                self.sync_in_flight = false;
                self.synced_sequence = through_sequence;
                self.step(Input::Synced { through_sequence }).await
            }
            CoreEvent::SyncFailed(error) => Err(error),
            CoreEvent::Peer { from, message } => self.step(Input::Peer { from, message }).await,
            CoreEvent::Shutdown { done } => {
                let (barrier, passed) = oneshot::channel();
                self.submit(vec![Effect::Barrier(barrier)]).await?;
                if passed.await.is_err() {
                    return Err(self.worker_error().await);
                }
                self.sync_now_blocking().await?;
                let _ = done.send(());
                Ok(())
            }
        }
    }

    async fn step(&mut self, input: Input) -> Result<(), StorageError> {
        let now = self.clock.now();
        if self.hooks.trace.is_none() {
            let outputs = self.broker.step(now, input);
            let effects = self.effects_of(outputs);
            return self.submit(effects).await;
        }
        self.hooks.trace(now, TraceEvent::Input(&input));
        let outputs = self.broker.step(now, input);
        for output in &outputs {
            self.hooks.trace(now, TraceEvent::Output(output));
        }
        let effects = self.effects_of(outputs);
        self.submit(effects).await
    }

    /// The effects of a step's outputs: a response picks up its request's reply channel
    /// (none if the request was answered already or came from no client).
    fn effects_of(&mut self, outputs: Vec<Output>) -> Vec<Effect> {
        outputs
            .into_iter()
            .filter_map(|output| match output {
                Output::FailStop(corrupt) => Some(Effect::FailStop(corrupt)),
                Output::Storage(command) => Some(Effect::Storage(command)),
                Output::Respond { id, response } => self
                    .pending
                    .remove(&id)
                    .map(|reply| Effect::Reply { reply, response }),
                Output::Send { to, message } => Some(Effect::Send { to, message }),
            })
            .collect()
    }

    /// Queues `effects` for the worker; waits while its queue is full (backpressure).
    async fn submit(&mut self, effects: Vec<Effect>) -> Result<(), StorageError> {
        if effects.is_empty() {
            return Ok(());
        }
        if self.effects.send(effects).await.is_err() {
            return Err(self.worker_error().await);
        }
        Ok(())
    }

    /// Why the effect worker stopped.
    async fn worker_error(&mut self) -> StorageError {
        worker_failure(&mut self.worker_failed)
            .await
            .unwrap_or_else(|| {
                StorageError::io(
                    "effect worker",
                    std::io::Error::other("stopped without an error"),
                )
            })
    }

    /// Group commit: one sync at a time, covering every append written before it starts.
    fn start_sync_if_needed(&mut self) {
        let through_sequence = *self.written_sequence.borrow();
        if self.sync_in_flight || through_sequence == self.synced_sequence {
            return;
        }
        self.sync_in_flight = true;
        // The bytes written since the last sync started: about what this one covers (the
        // worker may be writing more meanwhile; they count for the next).
        let appended_bytes = self.metrics.appended_bytes();
        let bytes = appended_bytes - self.synced_bytes;
        self.synced_bytes = appended_bytes;
        let appends = through_sequence - self.synced_sequence;
        let metrics = self.metrics.clone();
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
            let result = tokio::task::spawn_blocking(move || {
                let started = tokio::time::Instant::now();
                let synced = storage.sync();
                metrics.synced(started.elapsed(), appends, bytes);
                synced
            })
            .await;
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

    /// Used at shutdown, once the worker has carried out everything: sync inline so that
    /// everything appended is durable before exit.
    async fn sync_now_blocking(&mut self) -> Result<(), StorageError> {
        let through_sequence = *self.written_sequence.borrow();
        self.storage.sync()?;
        self.synced_sequence = through_sequence;
        self.step(Input::Synced { through_sequence }).await
    }
}

/// The effect worker's error, once it has failed; pending until then, and for good once
/// taken (or if the worker ended without one).
async fn worker_failure(
    failed: &mut Option<oneshot::Receiver<StorageError>>,
) -> Option<StorageError> {
    let Some(receiver) = failed else {
        return std::future::pending().await;
    };
    let error = receiver.await.ok();
    *failed = None;
    error
}
