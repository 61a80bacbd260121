//! The clients of transaction scenarios, built on `myelin-client`'s transactional requests:
//! transactional producers, consume-transform-produce copiers, and consumers of the output
//! topic at both isolation levels.
//!
//! - A **transactional producer** (`ClientRole::TransactionalProducer`, transactional id
//!   `producer-<client>`) writes transactions of 1-3 partitions of [`OUTPUT_TOPIC`], a batch
//!   of random size to each, pauses mid-transaction, then commits (70%) or aborts.
//! - A **copier** (`ClientRole::Copier`, transactional id `copier-<client>`) is a member of
//!   [`COPIER_GROUP`] (the classic protocol, as `group_member` does it); it reads the input
//!   partitions it is assigned read_committed from its group's committed offsets (OffsetFetch
//!   with require_stable, waiting out UNSTABLE_OFFSET_COMMIT), writes each input record's
//!   value to the output inside a transaction together with the input offsets
//!   (AddOffsetsToTxn + TxnOffsetCommit naming its generation and member id), and commits
//!   (80%) or aborts on purpose; after an abort, or any doubt, it rewinds to the committed
//!   offsets.
//! - **Consumers of the output** read one partition from offset 0, each fetch from where the
//!   last one ended, read_committed or read_uncommitted.
//!
//! Every request has the client's own timeout. EndTxn is retried with the same result over
//! a new connection (to wherever the coordinator is then) until it is answered; a
//! transactional batch is resent with the same sequence until it is acknowledged or refused.
//! A fencing answer (the transaction expired, or a successor took the id over) abandons the
//! open transaction and starts a new producer epoch with InitProducerId. A crash (fault
//! `ClientCrash`) drops everything mid-transaction; the next instance's InitProducerId fences
//! the old one. Every transaction's records, offsets and end are recorded (see `history`:
//! values name their transaction) for the transaction checkers.

use crate::group_protocol::{
    self, connect_to_coordinator, FIND_COORDINATOR_AGAIN, HEARTBEAT_INTERVAL_MS,
    REBALANCE_IN_PROGRESS, REJOIN_AS_NEW,
};
use crate::history::{ClientEvent, CommitOutcome, ProduceOutcome, ReadRecord};
use crate::scenario::{
    ClientRole, ClientStep, COPIER_GROUP, INPUT_PARTITIONS, OUTPUT_PARTITIONS, OUTPUT_TOPIC, TOPIC,
    TRANSACTION_TIMEOUT_MS,
};
use crate::workload::{
    client_config, leader_address_of, ClientContext, MemberCommand, TOPIC_ALREADY_EXISTS,
};
use myelin_client::kafka_protocol::messages::ApiKey;
use myelin_client::{
    Connection, Error, FetchOptions, GroupMembership, IsolationLevel, NewRecord,
    TransactionalProducer,
};
use rand::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Kafka error codes the transactional clients react to.
const CONCURRENT_TRANSACTIONS: i16 = 51;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
/// The producer was fenced or lost its transaction: abandon it, take a new epoch.
const FENCED: [i16; 4] = [
    47, // INVALID_PRODUCER_EPOCH
    48, // INVALID_TXN_STATE
    49, // INVALID_PRODUCER_ID_MAPPING
    90, // PRODUCER_FENCED
];
/// Coordinator answers to retry (over a new connection unless CONCURRENT_TRANSACTIONS).
const RETRY: [i16; 4] = [
    14, // COORDINATOR_LOAD_IN_PROGRESS
    15, // COORDINATOR_NOT_AVAILABLE
    16, // NOT_COORDINATOR
    CONCURRENT_TRANSACTIONS,
];
/// Attempts of one EndTxn, one batch or one coordinator request before giving up.
const ATTEMPTS_MAX: u32 = 30;
const FETCH_MAX_WAIT_MS: i32 = 100;

/// Why a transactional step failed.
enum Failure {
    /// The producer was fenced (or lost its transaction): abandon it, new epoch.
    Fenced(Error),
    /// The group fenced the member, or asks it to rejoin: abort, rejoin.
    Rejoin(Error),
    /// Anything else (no answer after retries, a refusal): abort.
    Other,
}

fn classify(error: Error) -> Failure {
    match error.broker_code() {
        Some(code) if FENCED.contains(&code) => Failure::Fenced(error),
        Some(code) if REJOIN_AS_NEW.contains(&code) || code == REBALANCE_IN_PROGRESS => {
            Failure::Rejoin(error)
        }
        _ => Failure::Other,
    }
}

/// What one transactional client knows between requests.
struct TxnClient {
    transactional_id: String,
    /// `p` for producers, `c` for copiers: the prefix of its transactions' names.
    kind: char,
    coordinator: Option<(Connection, i32)>,
    producer: Option<TransactionalProducer>,
    /// Connections to partition leaders, by (topic, partition).
    leaders: BTreeMap<(&'static str, i32), Connection>,
    instance: u32,
    number: u64,
    /// The open transaction's name, once it added a partition.
    open: Option<String>,
}

impl TxnClient {
    fn new(context: &ClientContext, kind: char) -> TxnClient {
        let name = if kind == 'c' { "copier" } else { "producer" };
        TxnClient {
            transactional_id: format!("{name}-{}", context.index),
            kind,
            coordinator: None,
            producer: None,
            leaders: BTreeMap::new(),
            instance: 0,
            number: 0,
            open: None,
        }
    }

    fn client_id(&self) -> String {
        format!("sim-{}", self.transactional_id)
    }

    /// Begins the next transaction: names it and records it.
    fn next_txn(&mut self, context: &ClientContext) -> String {
        self.number += 1;
        let txn = format!(
            "x{}{}.{}.{}",
            self.kind, context.index, self.instance, self.number
        );
        context.record(ClientEvent::TxnStarted {
            client: context.index,
            txn: txn.clone(),
            at: context.log.now_us(),
        });
        self.open = Some(txn.clone());
        txn
    }

    /// A crash: everything in memory is gone (the open transaction is left to the
    /// coordinator); the next instance starts after `down_ms`.
    async fn crash(&mut self, context: &ClientContext, down_ms: u64) {
        if let Some(txn) = self.open.take() {
            context.record(ClientEvent::TxnAbandoned {
                client: context.index,
                txn,
                why: "the client crashed".into(),
                at: context.log.now_us(),
            });
        }
        self.coordinator = None;
        self.producer = None;
        self.leaders.clear();
        self.instance += 1;
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
    }

    /// The producer was fenced: abandon the open transaction, start a new epoch.
    fn fenced(&mut self, context: &ClientContext, error: &Error) {
        if let Some(txn) = self.open.take() {
            context.record(ClientEvent::TxnAbandoned {
                client: context.index,
                txn,
                why: format!("fenced: {error}"),
                at: context.log.now_us(),
            });
        }
        self.producer = None;
    }

    /// Connects to the transaction coordinator (creating the output topic on the way).
    async fn connect_coordinator(&mut self, context: &mut ClientContext) -> bool {
        let nodes = context
            .cluster
            .clone()
            .unwrap_or_else(|| vec![context.address]);
        let client_id = self.client_id();
        for _ in 0..nodes.len() {
            let bootstrap = context.address;
            context.bootstrap_next();
            let Ok(mut connection) =
                Connection::connect(bootstrap, client_config(&client_id)).await
            else {
                continue;
            };
            let replication_factor = nodes.len().min(3) as i16;
            for (topic, partitions) in
                [(TOPIC, INPUT_PARTITIONS), (OUTPUT_TOPIC, OUTPUT_PARTITIONS)]
            {
                match connection
                    .create_topic(topic, partitions, replication_factor, &[])
                    .await
                {
                    Ok(()) => {}
                    Err(error) if error.broker_code() == Some(TOPIC_ALREADY_EXISTS) => {}
                    Err(_) => continue,
                }
            }
            let Ok(coordinator) = connection
                .find_transaction_coordinator(&self.transactional_id)
                .await
            else {
                continue;
            };
            let Ok(address) =
                format!("{}:{}", coordinator.host, coordinator.port).parse::<SocketAddr>()
            else {
                continue;
            };
            if let Ok(connection) = Connection::connect(address, client_config(&client_id)).await {
                self.coordinator = Some((connection, coordinator.node_id));
                return true;
            }
        }
        false
    }

    /// A transaction coordinator connection and an initialized producer; false (after a
    /// backoff) if not yet.
    async fn ready(&mut self, context: &mut ClientContext) -> bool {
        if self.coordinator.is_none() && !self.connect_coordinator(context).await {
            context.backoff().await;
            return false;
        }
        if self.producer.is_some() {
            return true;
        }
        let Some((coordinator, _)) = self.coordinator.as_mut() else {
            return false;
        };
        match TransactionalProducer::init(
            coordinator,
            &self.transactional_id,
            TRANSACTION_TIMEOUT_MS,
        )
        .await
        {
            Ok(mut producer) => {
                producer.options.timeout_ms = 1_500;
                self.producer = Some(producer);
                true
            }
            Err(error) => {
                // CONCURRENT_TRANSACTIONS: the coordinator is aborting the previous
                // instance's transaction; anything else: find the coordinator again.
                if error.broker_code() != Some(CONCURRENT_TRANSACTIONS) {
                    self.coordinator = None;
                }
                context.backoff().await;
                false
            }
        }
    }

    /// A coordinator request with retries: `call` runs with the coordinator connection and
    /// the producer; retriable errors reconnect (the coordinator may have moved).
    async fn coordinator_call<F>(
        &mut self,
        context: &mut ClientContext,
        mut call: F,
    ) -> Result<(), Error>
    where
        F: for<'a> FnMut(
            &'a mut Connection,
            &'a mut TransactionalProducer,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>,
        >,
    {
        let mut last = Error::InvalidArgument("no attempt".into());
        for _ in 0..ATTEMPTS_MAX {
            if self.coordinator.is_none() && !self.connect_coordinator(context).await {
                context.backoff().await;
                continue;
            }
            let (Some((coordinator, _)), Some(producer)) =
                (self.coordinator.as_mut(), self.producer.as_mut())
            else {
                return Err(last);
            };
            match call(coordinator, producer).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let retriable = error.is_retriable()
                        || error.broker_code().is_none_or(|code| RETRY.contains(&code));
                    if !retriable {
                        return Err(error);
                    }
                    if error.broker_code() != Some(CONCURRENT_TRANSACTIONS) {
                        self.coordinator = None;
                    }
                    last = error;
                    context.backoff().await;
                }
            }
        }
        Err(last)
    }

    /// Adds output partitions to the open transaction.
    async fn add_partitions(
        &mut self,
        context: &mut ClientContext,
        partitions: &[i32],
    ) -> Result<(), Error> {
        let list: Vec<(&'static str, i32)> =
            partitions.iter().map(|p| (OUTPUT_TOPIC, *p)).collect();
        self.coordinator_call(context, |coordinator, producer| {
            let list = list.clone();
            Box::pin(async move { producer.add_partitions(coordinator, &list).await })
        })
        .await
    }

    /// Writes `values` as one transactional batch to `partition` of the output, resending
    /// the same batch until it is acknowledged or refused; records the outcome.
    async fn produce(
        &mut self,
        context: &mut ClientContext,
        txn: &str,
        partition: i32,
        values: Vec<String>,
    ) -> ProduceOutcome {
        let records: Vec<NewRecord> = values
            .iter()
            .map(|value| NewRecord::new(value.clone()))
            .collect();
        let batch = match self.producer.as_mut() {
            Some(producer) => producer.batch(OUTPUT_TOPIC, partition, &records),
            None => Err(Error::InvalidArgument("no producer".into())),
        };
        let outcome = match batch {
            Err(error) => ProduceOutcome::Refused {
                code: -1,
                error: error.to_string(),
            },
            Ok(batch) => {
                let mut outcome = ProduceOutcome::Indeterminate {
                    error: "never sent".into(),
                };
                for _ in 0..ATTEMPTS_MAX {
                    if self
                        .leader(context, OUTPUT_TOPIC, partition)
                        .await
                        .is_none()
                    {
                        continue;
                    }
                    let (Some(leader), Some(producer)) = (
                        self.leaders.get_mut(&(OUTPUT_TOPIC, partition)),
                        self.producer.as_ref(),
                    ) else {
                        break;
                    };
                    match producer.send(leader, OUTPUT_TOPIC, partition, &batch).await {
                        Ok(base_offset) => {
                            outcome = ProduceOutcome::Acknowledged { base_offset };
                            break;
                        }
                        Err(error) => {
                            self.leaders.remove(&(OUTPUT_TOPIC, partition));
                            match error.broker_code().filter(|_| !error.is_retriable()) {
                                Some(code) => {
                                    outcome = ProduceOutcome::Refused {
                                        code,
                                        error: error.to_string(),
                                    };
                                    break;
                                }
                                None => {
                                    outcome = ProduceOutcome::Indeterminate {
                                        error: error.to_string(),
                                    };
                                    context.backoff().await;
                                }
                            }
                        }
                    }
                }
                outcome
            }
        };
        context.record(ClientEvent::TxnProduced {
            client: context.index,
            txn: txn.to_string(),
            partition,
            values,
            outcome: outcome.clone(),
            at: context.log.now_us(),
        });
        outcome
    }

    /// A connection to the leader of `topic`/`partition` (cached).
    async fn leader(
        &mut self,
        context: &mut ClientContext,
        topic: &'static str,
        partition: i32,
    ) -> Option<&mut Connection> {
        if !self.leaders.contains_key(&(topic, partition)) {
            let nodes = context
                .cluster
                .clone()
                .unwrap_or_else(|| vec![context.address]);
            let client_id = self.client_id();
            let connection = match leader_address_of(&nodes, topic, partition, &client_id).await {
                Ok(leader) => Connection::connect(leader, client_config(&client_id))
                    .await
                    .ok(),
                Err(_) => None,
            };
            match connection {
                Some(connection) => {
                    self.leaders.insert((topic, partition), connection);
                }
                None => {
                    context.backoff().await;
                    return None;
                }
            }
        }
        self.leaders.get_mut(&(topic, partition))
    }

    /// EndTxn, retried with the same result (over new connections, to wherever the
    /// coordinator is) until answered; recorded. Fires the harness's signal on success.
    async fn end(&mut self, context: &mut ClientContext, txn: &str, commit: bool) -> CommitOutcome {
        context.record(ClientEvent::TxnEndRequested {
            client: context.index,
            txn: txn.to_string(),
            commit,
            at: context.log.now_us(),
        });
        let mut attempts = 0;
        let result = self
            .coordinator_call(context, |coordinator, producer| {
                attempts += 1;
                Box::pin(async move { producer.end(coordinator, commit).await })
            })
            .await;
        let outcome = match &result {
            Ok(()) => CommitOutcome::Acknowledged,
            Err(error) => match error.broker_code() {
                Some(code) => CommitOutcome::Refused { code },
                None => CommitOutcome::Indeterminate {
                    error: error.to_string(),
                },
            },
        };
        if result.is_ok() {
            if let Some((_, node)) = &self.coordinator {
                if let Ok(node) = u8::try_from(*node) {
                    context.signals.of(ClientStep::EndTxnAnswered).fire(node);
                }
            }
        }
        context.record(ClientEvent::TxnEnded {
            client: context.index,
            txn: txn.to_string(),
            commit,
            attempts,
            outcome: outcome.clone(),
            at: context.log.now_us(),
        });
        self.open = None;
        match result {
            Err(error)
                if error
                    .broker_code()
                    .is_some_and(|code| FENCED.contains(&code)) =>
            {
                self.producer = None;
            }
            Err(_) => {
                // In doubt: start over with a new epoch, which settles the transaction.
                self.producer = None;
            }
            Ok(()) => {}
        }
        outcome
    }
}

/// Takes the harness's command, if any.
fn take_command(context: &ClientContext) -> Option<MemberCommand> {
    context
        .command
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take()
}

fn down_ms(command: MemberCommand) -> u64 {
    match command {
        MemberCommand::Crash { down_ms } | MemberCommand::Leave { down_ms } => down_ms,
    }
}

/// Runs a transactional producer until the harness stops it (between transactions).
pub(crate) async fn run_transactional_producer(context: &mut ClientContext) {
    let mut client = TxnClient::new(context, 'p');
    while !context.stopped() {
        if let Some(command) = take_command(context) {
            client.crash(context, down_ms(command)).await;
            continue;
        }
        if !client.ready(context).await {
            continue;
        }
        let txn = client.next_txn(context);
        let count = context.rng.random_range(1..=OUTPUT_PARTITIONS as usize);
        let mut partitions: Vec<i32> = (0..OUTPUT_PARTITIONS).collect();
        while partitions.len() > count {
            partitions.remove(context.rng.random_range(0..partitions.len()));
        }
        if let Err(error) = client.add_partitions(context, &partitions).await {
            match classify(error) {
                Failure::Fenced(error) => client.fenced(context, &error),
                _ => {
                    // The partitions may or may not be in the transaction: end it.
                    client.end(context, &txn, false).await;
                }
            }
            continue;
        }
        let mut failed = None;
        for partition in &partitions {
            let (low, high) = context.spec.records_per_batch;
            let records = context.rng.random_range(low.max(1)..=high.max(low).max(1));
            let values: Vec<String> = (0..records)
                .map(|record| format!("r{partition}-{record}@{txn}"))
                .collect();
            if let ProduceOutcome::Refused { code, error } =
                client.produce(context, &txn, *partition, values).await
            {
                failed = Some((code, error));
                break;
            }
            // Mid-transaction: where crashes and pauses land.
            context.think().await;
            if take_command_peek(context) {
                break;
            }
        }
        if take_command_peek(context) {
            continue;
        }
        if let Some((code, error)) = &failed {
            if FENCED.contains(code) {
                let error = Error::Broker {
                    api: ApiKey::Produce,
                    code: *code,
                    message: Some(error.clone()),
                };
                client.fenced(context, &error);
                continue;
            }
        }
        let commit = failed.is_none() && context.rng.random_bool(0.7);
        client.end(context, &txn, commit).await;
        context.think().await;
    }
}

/// Whether the harness left a command (a crash lands mid-transaction).
fn take_command_peek(context: &ClientContext) -> bool {
    context
        .command
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .is_some()
}

/// A copier's group membership.
#[derive(Default)]
struct Membership {
    coordinator: Option<Connection>,
    member_id: String,
    generation: i32,
    active: bool,
    /// The input partitions assigned in `generation`.
    assigned: Vec<i32>,
    /// Read the committed offsets again before the next transaction (after an abort).
    rewind: bool,
    /// Next input offset to copy, per assigned input partition.
    positions: BTreeMap<i32, i64>,
    next_heartbeat_ms: u64,
}

impl Membership {
    fn rejoin(&mut self, as_new: bool) {
        self.active = false;
        self.positions.clear();
        if as_new {
            self.member_id.clear();
            self.generation = 0;
        }
    }

    fn on_error(&mut self, error: &Error) {
        match error.broker_code() {
            Some(REBALANCE_IN_PROGRESS) => self.rejoin(false),
            Some(code) if REJOIN_AS_NEW.contains(&code) => self.rejoin(true),
            Some(code) if FIND_COORDINATOR_AGAIN.contains(&code) => {
                self.coordinator = None;
                self.active = false;
            }
            _ => {
                if error.breaks_connection() || error.broker_code().is_none() {
                    self.coordinator = None;
                    self.active = false;
                }
            }
        }
    }
}

fn now_ms(context: &ClientContext) -> u64 {
    context.log.now_us() / 1000
}

/// Runs a copier until the harness stops it (between transactions).
pub(crate) async fn run_copier(context: &mut ClientContext) {
    let mut client = TxnClient::new(context, 'c');
    let mut member = Membership::default();
    while !context.stopped() {
        if let Some(command) = take_command(context) {
            client.crash(context, down_ms(command)).await;
            member = Membership::default();
            continue;
        }
        if !client.ready(context).await {
            continue;
        }
        if member.coordinator.is_none() {
            match connect_to_coordinator(context, &client.client_id(), COPIER_GROUP, None).await {
                Some(connection) => member.coordinator = Some(connection),
                None => {
                    context.backoff().await;
                    continue;
                }
            }
        }
        if !member.active {
            if join_and_fetch(context, &mut member).await.is_err() {
                context.backoff().await;
            }
            continue;
        }
        if member.rewind {
            let assigned = member.assigned.clone();
            match fetch_committed(context, &mut member, &assigned).await {
                Ok(positions) => {
                    member.positions = positions;
                    member.rewind = false;
                }
                Err(_) => context.backoff().await,
            }
            continue;
        }
        if now_ms(context) >= member.next_heartbeat_ms {
            member.next_heartbeat_ms = now_ms(context) + HEARTBEAT_INTERVAL_MS;
            let (member_id, generation) = (member.member_id.clone(), member.generation);
            if let Some(coordinator) = member.coordinator.as_mut() {
                if let Err(error) = coordinator
                    .heartbeat(COPIER_GROUP, &member_id, generation)
                    .await
                {
                    member.on_error(&error);
                    continue;
                }
            }
        }
        copy_once(context, &mut client, &mut member).await;
        context.think().await;
    }
}

/// Joins the group, syncs (assigning the input partitions round-robin, as the leader) and
/// reads the committed offsets of the assignment.
async fn join_and_fetch(context: &mut ClientContext, member: &mut Membership) -> Result<(), Error> {
    let Some(coordinator) = member.coordinator.as_mut() else {
        return Ok(());
    };
    let synced = group_protocol::join_and_sync(
        context,
        coordinator,
        COPIER_GROUP,
        &mut member.member_id,
        &mut member.generation,
        INPUT_PARTITIONS,
    )
    .await;
    let assigned = match synced {
        Ok(assigned) => assigned,
        Err(error) => {
            member.on_error(&error);
            return Err(error);
        }
    };
    member.positions = fetch_committed(context, member, &assigned).await?;
    member.assigned = assigned;
    member.rewind = false;
    member.active = true;
    member.next_heartbeat_ms = now_ms(context) + HEARTBEAT_INTERVAL_MS;
    Ok(())
}

/// The group's committed offsets of `partitions`, stable (no transactional commit
/// pending); recorded.
async fn fetch_committed(
    context: &mut ClientContext,
    member: &mut Membership,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, Error> {
    let mut last = Error::InvalidArgument("no attempt".into());
    for _ in 0..ATTEMPTS_MAX {
        let Some(coordinator) = member.coordinator.as_mut() else {
            return Err(last);
        };
        let started = context.log.now_us();
        let fetched = match coordinator
            .fetch_offsets_detailed(COPIER_GROUP, TOPIC, partitions, true)
            .await
        {
            Ok(fetched) => fetched,
            Err(error) => {
                member.on_error(&error);
                return Err(error);
            }
        };
        if fetched
            .iter()
            .any(|offset| offset.error_code == UNSTABLE_OFFSET_COMMIT)
        {
            last = Error::Broker {
                api: ApiKey::OffsetFetch,
                code: UNSTABLE_OFFSET_COMMIT,
                message: None,
            };
            context.backoff().await;
            continue;
        }
        if let Some(bad) = fetched.iter().find(|offset| offset.error_code != 0) {
            let error = Error::Broker {
                api: ApiKey::OffsetFetch,
                code: bad.error_code,
                message: None,
            };
            member.on_error(&error);
            return Err(error);
        }
        let offsets: Vec<(i32, i64)> = fetched.iter().map(|o| (o.partition, o.offset)).collect();
        context.record(ClientEvent::CopierOffsetsFetched {
            client: context.index,
            offsets: offsets.clone(),
            started,
            at: context.log.now_us(),
        });
        let mut positions: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
        for (partition, offset) in offsets {
            if offset >= 0 {
                positions.insert(partition, offset);
            }
        }
        return Ok(positions);
    }
    Err(last)
}

/// One consume-transform-produce transaction: read what is new on the assigned input
/// partitions, write it to the output with the input offsets, commit or abort.
async fn copy_once(context: &mut ClientContext, client: &mut TxnClient, member: &mut Membership) {
    let options = FetchOptions {
        max_wait_ms: FETCH_MAX_WAIT_MS,
        min_bytes: 1,
        max_bytes: context.rng.random_range(512..=4_096),
        isolation: IsolationLevel::ReadCommitted,
    };
    let mut input: Vec<(i32, String)> = Vec::new();
    let mut next_positions: BTreeMap<i32, i64> = BTreeMap::new();
    let positions: Vec<(i32, i64)> = member.positions.iter().map(|(p, o)| (*p, *o)).collect();
    for (partition, position) in positions {
        let Some(leader) = client.leader(context, TOPIC, partition).await else {
            continue;
        };
        match leader.fetch(TOPIC, partition, position, &options).await {
            Ok(fetched) => {
                for record in &fetched.records {
                    if let Some(value) = &record.value {
                        input.push((partition, String::from_utf8_lossy(value).into_owned()));
                    }
                }
                if fetched.next_offset > position {
                    next_positions.insert(partition, fetched.next_offset);
                }
            }
            Err(_) => {
                client.leaders.remove(&(TOPIC, partition));
            }
        }
    }
    if next_positions.is_empty() {
        return;
    }
    let txn = client.next_txn(context);
    // Each input record goes to an output partition of its own choosing.
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (index, (_, value)) in input.iter().enumerate() {
        let partition =
            (index as i32 + context.rng.random_range(0..OUTPUT_PARTITIONS)) % OUTPUT_PARTITIONS;
        by_partition
            .entry(partition)
            .or_default()
            .push(format!("{value}@{txn}"));
    }
    let partitions: Vec<i32> = by_partition.keys().copied().collect();
    let mut failure = None;
    if !partitions.is_empty() {
        if let Err(error) = client.add_partitions(context, &partitions).await {
            failure = Some(classify(error));
        }
    }
    if failure.is_none() {
        for (partition, values) in by_partition {
            if let ProduceOutcome::Refused { code, error } =
                client.produce(context, &txn, partition, values).await
            {
                failure = Some(classify(Error::Broker {
                    api: ApiKey::Produce,
                    code,
                    message: Some(error),
                }));
                break;
            }
        }
    }
    if failure.is_none() {
        if let Err(error) = send_offsets(context, client, member, &txn, &next_positions).await {
            failure = Some(classify(error));
        }
    }
    if take_command_peek(context) {
        return;
    }
    if let Some(Failure::Fenced(error)) = &failure {
        client.fenced(context, error);
        member.rewind = true;
        return;
    }
    let commit = failure.is_none() && context.rng.random_bool(0.8);
    let outcome = client.end(context, &txn, commit).await;
    match (outcome, commit) {
        (CommitOutcome::Acknowledged, true) => member.positions.extend(next_positions),
        // Aborted or in doubt: rewind to what the group committed (which waits, with
        // require_stable, for a transaction in doubt to end).
        _ => member.rewind = true,
    }
    if let Some(Failure::Rejoin(error)) = &failure {
        member.on_error(error);
    }
}

/// AddOffsetsToTxn, then TxnOffsetCommit of the new input positions (as this member of its
/// generation) on the group coordinator; recorded.
async fn send_offsets(
    context: &mut ClientContext,
    client: &mut TxnClient,
    member: &mut Membership,
    txn: &str,
    positions: &BTreeMap<i32, i64>,
) -> Result<(), Error> {
    client
        .coordinator_call(context, |coordinator, producer| {
            Box::pin(async move { producer.add_offsets(coordinator, COPIER_GROUP).await })
        })
        .await?;
    let offsets: Vec<(&str, i32, i64)> = positions.iter().map(|(p, o)| (TOPIC, *p, *o)).collect();
    let membership = GroupMembership {
        member_id: member.member_id.clone(),
        generation: member.generation,
        group_instance_id: None,
    };
    let (Some(producer), Some(coordinator)) =
        (client.producer.as_ref(), member.coordinator.as_mut())
    else {
        return Err(Error::InvalidArgument(
            "no producer or group coordinator".into(),
        ));
    };
    let result = producer
        .commit_offsets(coordinator, COPIER_GROUP, &membership, &offsets)
        .await;
    let outcome = match &result {
        Ok(()) => CommitOutcome::Acknowledged,
        Err(error) => match error.broker_code() {
            Some(code) => CommitOutcome::Refused { code },
            None => CommitOutcome::Indeterminate {
                error: error.to_string(),
            },
        },
    };
    context.record(ClientEvent::TxnOffsetsSent {
        client: context.index,
        txn: txn.to_string(),
        member: member.member_id.clone(),
        generation: member.generation,
        offsets: positions.iter().map(|(p, o)| (*p, *o)).collect(),
        outcome,
        at: context.log.now_us(),
    });
    if let Err(error) = &result {
        if error.breaks_connection()
            || error
                .broker_code()
                .is_some_and(|c| [14, 15, 16].contains(&c))
        {
            member.coordinator = None;
        }
    }
    result
}

/// Runs a consumer of one output partition (read_committed or read_uncommitted).
pub(crate) async fn run_output_consumer(context: &mut ClientContext) {
    let read_committed = context.spec.role == ClientRole::ReadCommittedConsumer;
    let partition = context.spec.partition;
    let options = FetchOptions {
        max_wait_ms: 200,
        min_bytes: 1,
        max_bytes: 16 * 1024,
        isolation: if read_committed {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::ReadUncommitted
        },
    };
    let mut client = TxnClient::new(context, 'r');
    let mut position = 0i64;
    while !context.stopped() {
        let Some(leader) = client.leader(context, OUTPUT_TOPIC, partition).await else {
            continue;
        };
        let started = context.log.now_us();
        match leader
            .fetch(OUTPUT_TOPIC, partition, position, &options)
            .await
        {
            Ok(fetched) => {
                let records = ReadRecord::all_of(&fetched);
                context.record(ClientEvent::OutputFetched {
                    client: context.index,
                    partition,
                    read_committed,
                    fetch_offset: position,
                    next_offset: fetched.next_offset,
                    high_watermark: fetched.high_watermark,
                    last_stable_offset: fetched.last_stable_offset,
                    records,
                    started,
                    at: context.log.now_us(),
                });
                position = fetched.next_offset;
                context.think().await;
            }
            Err(_) => {
                client.leaders.clear();
                context.backoff().await;
            }
        }
    }
}
