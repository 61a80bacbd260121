//! The simulated clients: Kafka-protocol producers and consumers over simulated TCP, built
//! on `myelin-client`, each on its own madsim node.
//!
//! Every operation is recorded in the run's history as it starts and ends (see `history`).
//! Clients keep their own timeouts (madsim's TCP has none), reconnect after a broken
//! connection with a random backoff, and stop between operations once the harness says so.
//! - Plain producers (acks=all or acks=1) send each batch once: a failed batch is left
//!   indeterminate, never resent, so a plain producer's record can appear at most once.
//! - The idempotent producer resends a batch with the same sequence numbers until it is
//!   acknowledged (or refused, after which it starts over with a new producer id).
//! - Consumers read their partition by offset from 0, each fetch from where the last one
//!   ended, and start over from 0 only if their position is refused as out of range.

use crate::harness::RunLog;
use crate::history::{ClientEvent, FetchFailure, PartitionRef, ProduceOutcome, ReadRecord};
use crate::scenario::{ClientRole, ClientSpec, ClientStep, TOPIC};
use myelin_client::{
    ClientConfig, Connection, Error, FetchOptions, IdempotentProducer, NewRecord, ProduceOptions,
};
use rand::rngs::StdRng;
use rand::Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Kafka error code TOPIC_ALREADY_EXISTS.
pub(crate) const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Kafka error code OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;
/// How long the broker may hold a produce for its acknowledgement.
const PRODUCE_TIMEOUT_MS: i32 = 1_500;
/// A consumer's long-poll wait.
const FETCH_MAX_WAIT_MS: i32 = 250;
/// A client's retry backoff after a failure: (shortest, longest) milliseconds.
pub(crate) const BACKOFF_MS: (u64, u64) = (50, 250);

/// Everything one client needs.
pub(crate) struct ClientContext {
    pub index: u8,
    pub spec: ClientSpec,
    pub partitions: i32,
    pub segment_bytes: Option<u32>,
    /// The node whose topic the partition belongs to (node 1 in a cluster: one topic).
    pub topic_node: u8,
    /// The node the client talks to; in a cluster, the one it bootstraps from.
    pub address: SocketAddr,
    /// In a cluster scenario, every node's Kafka address: the client creates the topic with
    /// replication factor `min(3, nodes)` and talks to its partition's leader.
    pub cluster: Option<Vec<SocketAddr>>,
    pub log: Arc<RunLog>,
    pub stop: Arc<AtomicBool>,
    pub rng: StdRng,
    /// What the harness tells a group member or transactional client to do next (crash,
    /// leave).
    pub command: Arc<std::sync::Mutex<Option<MemberCommand>>>,
    /// Fired by a transactional client when the coordinator answers its EndTxn, and by an
    /// idempotent producer when it sends a batch (for the faults that strike the node that
    /// served that step: [`crate::scenario::Fault::trigger`]).
    pub signals: Arc<StepSignals>,
}

/// The harness's hook on one kind of client step ([`ClientStep`]): a fault armed to strike
/// "right after the next such step" learns here which node served it.
#[derive(Debug, Default)]
pub(crate) struct StepSignal {
    armed: AtomicBool,
    fired: Mutex<Option<u8>>,
    pub(crate) notify: tokio::sync::Notify,
}

impl StepSignal {
    /// The next such step fires the signal.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::Relaxed);
    }

    /// Disarms; returns the node whose step fired it, if one did.
    pub(crate) fn take_fired(&self) -> Option<u8> {
        self.fired
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    pub(crate) fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// A step served by `node` (1-based) happened.
    pub(crate) fn fire(&self, node: u8) {
        if self.armed.swap(false, Ordering::Relaxed) {
            *self
                .fired
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(node);
            self.notify.notify_one();
        }
    }
}

/// One [`StepSignal`] per kind of client step.
#[derive(Debug, Default)]
pub(crate) struct StepSignals {
    end_txn_answered: StepSignal,
    produce_sent: StepSignal,
}

impl StepSignals {
    pub(crate) fn of(&self, step: ClientStep) -> &StepSignal {
        match step {
            ClientStep::EndTxnAnswered => &self.end_txn_answered,
            ClientStep::ProduceSent => &self.produce_sent,
        }
    }
}

/// A fault a group member carries out itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberCommand {
    /// Stop at once, without leaving; start again as a new member after `down_ms`.
    Crash { down_ms: u64 },
    /// Leave the group; join again after `down_ms`.
    Leave { down_ms: u64 },
}

impl ClientContext {
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn partition(&self) -> PartitionRef {
        PartitionRef {
            node: self.topic_node,
            partition: self.spec.partition,
        }
    }

    /// The cluster node (1-based) `connection` goes to.
    fn node_of(&self, connection: &Connection) -> Option<u8> {
        let peer = connection.peer_addr().ok()?;
        let position = self
            .cluster
            .as_ref()?
            .iter()
            .position(|node| *node == peer)?;
        u8::try_from(position + 1).ok()
    }

    /// In a cluster, bootstrap from the next node from now on.
    pub(crate) fn bootstrap_next(&mut self) {
        if let Some(nodes) = &self.cluster {
            let at = nodes
                .iter()
                .position(|node| *node == self.address)
                .unwrap_or(0);
            self.address = nodes[(at + 1) % nodes.len()];
        }
    }

    async fn pause_ms(&mut self, range: (u64, u64)) {
        let ms = self.rng.random_range(range.0..=range.1.max(range.0));
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    pub(crate) async fn backoff(&mut self) {
        self.pause_ms(BACKOFF_MS).await;
    }

    pub(crate) async fn think(&mut self) {
        self.pause_ms(self.spec.think_ms).await;
    }

    pub(crate) fn record(&self, event: ClientEvent) {
        self.log.client_event(self.index, event);
    }
}

/// A client's connection, opened (and its topic created) on demand. In a cluster, the
/// topic is created through the bootstrap node and the connection goes to the partition's
/// leader; an error that says leadership moved drops it, to find the leader again.
#[derive(Default)]
struct Session {
    connection: Option<Connection>,
    topic_ready: bool,
}

/// Kafka errors that mean "ask the cluster who leads now".
const LEADERSHIP_MOVED: [i16; 5] = [
    3,  // UNKNOWN_TOPIC_OR_PARTITION (not created here yet)
    5,  // LEADER_NOT_AVAILABLE
    6,  // NOT_LEADER_OR_FOLLOWER
    74, // FENCED_LEADER_EPOCH
    76, // UNKNOWN_LEADER_EPOCH
];

pub(crate) fn client_config(client_id: &str) -> ClientConfig {
    ClientConfig {
        client_id: client_id.to_string(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        max_frame_bytes: 16 * 1024 * 1024,
    }
}

/// The address of `partition`'s leader as the cluster's metadata names it, asking each of
/// `nodes` in turn.
pub(crate) async fn leader_address(
    nodes: &[SocketAddr],
    partition: i32,
    client_id: &str,
) -> Result<SocketAddr, String> {
    leader_address_of(nodes, TOPIC, partition, client_id).await
}

/// The address of the leader of `topic`'s `partition`, as [`leader_address`] finds it.
pub(crate) async fn leader_address_of(
    nodes: &[SocketAddr],
    topic: &str,
    partition: i32,
    client_id: &str,
) -> Result<SocketAddr, String> {
    let mut last_error = String::from("no node to ask");
    for address in nodes {
        let mut connection = match Connection::connect(*address, client_config(client_id)).await {
            Ok(connection) => connection,
            Err(error) => {
                last_error = error.to_string();
                continue;
            }
        };
        let metadata = match connection.metadata(Some(&[topic])).await {
            Ok(metadata) => metadata,
            Err(error) => {
                last_error = error.to_string();
                continue;
            }
        };
        let leader = metadata
            .topic(topic)
            .and_then(|topic| topic.partition(partition))
            .map(|partition| partition.leader_id)
            .filter(|leader| *leader >= 0)
            .and_then(|leader| metadata.broker(leader));
        match leader {
            Some(broker) => match format!("{}:{}", broker.host, broker.port).parse() {
                Ok(leader) => return Ok(leader),
                Err(error) => last_error = format!("leader address: {error}"),
            },
            None => last_error = format!("{address} names no leader for partition {partition}"),
        }
    }
    Err(last_error)
}

impl Session {
    /// The open connection, connecting and creating the topic first if needed; `None` after
    /// a failure (having waited a backoff).
    async fn ready(&mut self, context: &mut ClientContext) -> Option<&mut Connection> {
        let client_id = format!("sim-client-{}", context.index);
        if self.topic_ready && context.cluster.is_some() {
            if self.connection.is_none() {
                let nodes = context.cluster.as_deref().unwrap_or_default();
                let leader = match leader_address(nodes, context.spec.partition, &client_id).await {
                    Ok(leader) => leader,
                    Err(_) => {
                        context.backoff().await;
                        return None;
                    }
                };
                match Connection::connect(leader, client_config(&client_id)).await {
                    Ok(connection) => self.connection = Some(connection),
                    Err(_) => {
                        context.backoff().await;
                        return None;
                    }
                }
            }
            return self.connection.as_mut();
        }
        if self.connection.is_none() {
            match Connection::connect(context.address, client_config(&client_id)).await {
                Ok(connection) => self.connection = Some(connection),
                Err(_) => {
                    context.backoff().await;
                    return None;
                }
            }
        }
        if !self.topic_ready {
            let segment_bytes = context.segment_bytes.map(|bytes| bytes.to_string());
            let configs: Vec<(&str, &str)> = segment_bytes
                .iter()
                .map(|bytes| ("segment.bytes", bytes.as_str()))
                .collect();
            let replication_factor = context
                .cluster
                .as_ref()
                .map_or(1, |nodes| nodes.len().min(3) as i16);
            let connection = self.connection.as_mut()?;
            let result = connection
                .create_topic(TOPIC, context.partitions, replication_factor, &configs)
                .await;
            match result {
                Ok(()) => {}
                Err(error) if error.broker_code() == Some(TOPIC_ALREADY_EXISTS) => {}
                Err(error) => {
                    self.failed(&error);
                    if context.cluster.is_some() {
                        // The bootstrap node may be cut off: try another next time.
                        self.connection = None;
                        context.bootstrap_next();
                    }
                    context.backoff().await;
                    return None;
                }
            }
            self.topic_ready = true;
            if context.cluster.is_some() {
                // That was the bootstrap node: from now on, talk to the partition's leader.
                self.connection = None;
                return None;
            }
        }
        self.connection.as_mut()
    }

    /// Drops the connection if `error` broke it, or said that leadership moved.
    fn failed(&mut self, error: &Error) {
        let moved = error
            .broker_code()
            .is_some_and(|code| LEADERSHIP_MOVED.contains(&code));
        if error.breaks_connection() || moved {
            self.connection = None;
        }
    }
}

/// Runs one client until the harness stops it.
pub(crate) async fn run_client(mut context: ClientContext) {
    match context.spec.role {
        ClientRole::ProducerAcksAll => run_plain_producer(&mut context, -1).await,
        ClientRole::ProducerAcksLeader => run_plain_producer(&mut context, 1).await,
        ClientRole::IdempotentProducer => run_idempotent_producer(&mut context).await,
        ClientRole::Consumer => run_consumer(&mut context).await,
        ClientRole::GroupMember => crate::group_member::run_group_member(&mut context).await,
        ClientRole::TransactionalProducer => {
            crate::txn_clients::run_transactional_producer(&mut context).await
        }
        ClientRole::Copier => crate::txn_clients::run_copier(&mut context).await,
        ClientRole::ReadCommittedConsumer | ClientRole::ReadUncommittedConsumer => {
            crate::txn_clients::run_output_consumer(&mut context).await
        }
    }
}

/// The next batch's values: unique strings naming the client, the op and the record.
fn next_values(context: &mut ClientContext, op: u64) -> Vec<String> {
    let (low, high) = context.spec.records_per_batch;
    let count = context.rng.random_range(low.max(1)..=high.max(low).max(1));
    (0..count)
        .map(|record| format!("c{}-{op}-{record}", context.index))
        .collect()
}

fn records_of(values: &[String]) -> Vec<NewRecord> {
    values
        .iter()
        .map(|value| NewRecord::new(value.clone()))
        .collect()
}

fn produce_outcome(result: Result<i64, Error>) -> ProduceOutcome {
    match result {
        Ok(base_offset) => ProduceOutcome::Acknowledged { base_offset },
        // A retriable refusal (NOT_LEADER_OR_FOLLOWER from a leader that stepped down, a
        // timeout) says nothing of whether the batch was written: another leader may still
        // commit it, as in Kafka.
        Err(error) => match error.broker_code().filter(|_| !error.is_retriable()) {
            Some(code) => ProduceOutcome::Refused {
                code,
                error: error.to_string(),
            },
            None => ProduceOutcome::Indeterminate {
                error: error.to_string(),
            },
        },
    }
}

async fn run_plain_producer(context: &mut ClientContext, acks: i16) {
    let mut session = Session::default();
    let options = ProduceOptions {
        acks,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        ..ProduceOptions::default()
    };
    while !context.stopped() {
        let Some(connection) = session.ready(context).await else {
            continue;
        };
        let op = context.log.next_op();
        let values = next_values(context, op);
        context.record(ClientEvent::ProduceStarted {
            op,
            client: context.index,
            partition: context.partition(),
            role: context.spec.role,
            values: values.clone(),
            idempotence: None,
            at: context.log.now_us(),
        });
        let result = connection
            .produce(
                TOPIC,
                context.spec.partition,
                &records_of(&values),
                &options,
            )
            .await;
        if let Err(error) = &result {
            session.failed(error);
        }
        context.record(ClientEvent::ProduceEnded {
            op,
            attempts: 1,
            outcome: produce_outcome(result),
            at: context.log.now_us(),
        });
        context.think().await;
    }
}

async fn run_idempotent_producer(context: &mut ClientContext) {
    let mut session = Session::default();
    let mut producer: Option<IdempotentProducer> = None;
    while !context.stopped() {
        let Some(connection) = session.ready(context).await else {
            continue;
        };
        if producer.is_none() {
            match connection.init_producer_id(None).await {
                Ok((producer_id, epoch)) => {
                    let mut fresh =
                        IdempotentProducer::new(TOPIC, context.spec.partition, producer_id, epoch);
                    fresh.options.timeout_ms = PRODUCE_TIMEOUT_MS;
                    producer = Some(fresh);
                }
                Err(error) => {
                    session.failed(&error);
                    context.backoff().await;
                    continue;
                }
            }
        }
        let Some(active) = producer.as_mut() else {
            continue;
        };
        let op = context.log.next_op();
        let values = next_values(context, op);
        let batch = match active.batch(&records_of(&values)) {
            Ok(batch) => batch,
            Err(_) => continue,
        };
        context.record(ClientEvent::ProduceStarted {
            op,
            client: context.index,
            partition: context.partition(),
            role: context.spec.role,
            values,
            idempotence: Some((
                active.producer_id(),
                active.producer_epoch(),
                batch.base_sequence,
            )),
            at: context.log.now_us(),
        });
        let mut attempts = 0;
        let outcome = loop {
            let Some(connection) = session.ready(context).await else {
                if context.stopped() {
                    break ProduceOutcome::Indeterminate {
                        error: "stopped while the batch was in doubt".into(),
                    };
                }
                continue;
            };
            attempts += 1;
            if let Some(node) = context.node_of(connection) {
                context.signals.of(ClientStep::ProduceSent).fire(node);
            }
            match active.send(connection, &batch).await {
                Ok(base_offset) => break ProduceOutcome::Acknowledged { base_offset },
                Err(error) => {
                    session.failed(&error);
                    if let (Some(code), false) = (error.broker_code(), error.is_retriable()) {
                        break ProduceOutcome::Refused {
                            code,
                            error: error.to_string(),
                        };
                    }
                    if context.stopped() {
                        break ProduceOutcome::Indeterminate {
                            error: error.to_string(),
                        };
                    }
                    context.backoff().await;
                }
            }
        };
        if matches!(outcome, ProduceOutcome::Refused { .. }) {
            producer = None;
        }
        context.record(ClientEvent::ProduceEnded {
            op,
            attempts,
            outcome,
            at: context.log.now_us(),
        });
        context.think().await;
    }
}

async fn run_consumer(context: &mut ClientContext) {
    let mut session = Session::default();
    let options = FetchOptions {
        max_wait_ms: FETCH_MAX_WAIT_MS,
        min_bytes: 1,
        max_bytes: 64 * 1024,
        ..FetchOptions::default()
    };
    let mut position = 0i64;
    while !context.stopped() {
        let Some(connection) = session.ready(context).await else {
            continue;
        };
        let started = context.log.now_us();
        let result = connection
            .fetch(TOPIC, context.spec.partition, position, &options)
            .await;
        let at = context.log.now_us();
        match result {
            Ok(fetched) => {
                let records = ReadRecord::all_of(&fetched);
                context.record(ClientEvent::Fetched {
                    client: context.index,
                    partition: context.partition(),
                    fetch_offset: position,
                    next_offset: fetched.next_offset,
                    high_watermark: fetched.high_watermark,
                    records,
                    started,
                    at,
                });
                position = fetched.next_offset;
                context.think().await;
            }
            Err(error) => {
                session.failed(&error);
                let failure = match &error {
                    Error::Broker { code, .. } => FetchFailure::Broker { code: *code },
                    Error::Protocol(message) => FetchFailure::Undecodable {
                        error: message.clone(),
                    },
                    other => FetchFailure::NoAnswer {
                        error: other.to_string(),
                    },
                };
                context.record(ClientEvent::FetchFailed {
                    client: context.index,
                    partition: context.partition(),
                    fetch_offset: position,
                    failure,
                    at,
                });
                if error.broker_code() == Some(OFFSET_OUT_OF_RANGE) {
                    position = 0;
                }
                context.backoff().await;
            }
        }
    }
}
