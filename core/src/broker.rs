//! The broker: one node's state machine, composing metadata, partition logs and producer
//! state, and giving each Kafka API its meaning.
//!
//! `Broker::step(now_ms, input) -> outputs` is the only way state changes. Requests that
//! can be answered at once are; a produce waits until its batches are durable (the high
//! watermark passes them), and a fetch waits (long-poll) until `min_bytes` are readable or
//! its deadline passes. Both kinds of waiter are re-examined when a sync completes or a tick
//! arrives.
//!
//! Invariants:
//! - an acks=1/all produce is answered only when every batch it wrote (or duplicated) is
//!   below its partition's high watermark, i.e. durable;
//! - a fetch never returns a batch at or above the high watermark (or the last stable
//!   offset under read_committed; equal to the HWM while no transaction is open);
//! - metadata changes are persisted (`PersistMetadata`) before any output that depends on
//!   them, and before the response that reports them;
//! - iteration that reaches an output is over ordered maps: the same inputs give the same
//!   outputs (the determinism test checks it).

use crate::api::{
    Acks, BrokerConfig, CreateTopic, ErrorCode, FetchPartition, FetchPartitionResult, Input,
    Isolation, ListOffsetsResult, Output, ProducePartition, ProducePartitionResult,
    RecoveredPartition, Request, RequestId, Response, StorageCommand, TopicInfo, TopicResult,
    LIST_OFFSETS_EARLIEST, LIST_OFFSETS_LATEST, LIST_OFFSETS_MAX_TIMESTAMP,
};
use crate::batch::validate_record_set;
use crate::log::PartitionLog;
use crate::metadata::{
    is_valid_topic_name, ClusterMetadata, NodeInfo, TopicConfig, TopicMetadata, TopicPartition,
};
use crate::producers::{ProducerStateTable, SequenceVerdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// Producer ids are reserved durably in blocks of this many.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// Most partitions a topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// How often retention runs.
const RETENTION_CHECK_INTERVAL_MS: i64 = 1_000;

/// One partition's state on this node.
#[derive(Debug, Clone)]
struct PartitionState {
    log: PartitionLog,
    producers: ProducerStateTable,
}

/// A produce waiting for its batches to become durable.
#[derive(Debug)]
struct WaitingProduce {
    id: RequestId,
    results: Vec<ProducePartitionResult>,
    /// (partition, offset the high watermark must reach)
    waits: Vec<(TopicPartition, i64)>,
}

/// A fetch waiting for data (long-poll).
#[derive(Debug)]
struct ParkedFetch {
    id: RequestId,
    deadline_ms: i64,
    min_bytes: i32,
    max_bytes: i32,
    isolation: Isolation,
    partitions: Vec<FetchPartition>,
}

/// One node's broker. See the module doc.
pub struct Broker {
    config: BrokerConfig,
    metadata: ClusterMetadata,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    rng: StdRng,
    next_producer_id: i64,
    append_sequence: u64,
    /// Partitions with appends not yet durable.
    unsynced_partitions: BTreeSet<TopicPartition>,
    waiting_produces: Vec<WaitingProduce>,
    parked_fetches: Vec<ParkedFetch>,
    next_retention_check_ms: i64,
}

impl Broker {
    /// Builds the broker from what storage recovered. `metadata` is `None` on a fresh data
    /// directory. The returned outputs (persisting fresh metadata, creating missing partition
    /// directories, deleting orphaned ones) must be executed before serving.
    pub fn new(
        config: BrokerConfig,
        metadata: Option<ClusterMetadata>,
        recovered: Vec<RecoveredPartition>,
        rng_seed: u64,
        now_ms: i64,
    ) -> (Self, Vec<Output>) {
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let mut outputs = Vec::new();
        let this_node = NodeInfo {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: config.advertised_port,
        };
        let mut metadata = metadata.unwrap_or_else(|| {
            let cluster_id = format!("myelin-{:016x}", rng.random::<u64>());
            ClusterMetadata::new(cluster_id, Vec::new())
        });
        let metadata_changed = metadata.nodes != [this_node.clone()];
        metadata.nodes = vec![this_node];
        // Every id below the persisted block end may have been handed out before a crash.
        let next_producer_id = metadata.producer_id_block_end;

        let mut partitions = BTreeMap::new();
        for recovered_partition in recovered {
            let wanted = metadata
                .topics
                .get(&recovered_partition.partition.topic)
                .is_some_and(|topic| {
                    recovered_partition.partition.partition < topic.partition_count
                });
            #[cfg(feature = "defects")]
            let forget_producers =
                config.defect == Some(crate::defects::Defect::ForgetProducerStateOnRestart);
            #[cfg(not(feature = "defects"))]
            let forget_producers = false;
            let rebuilt = wanted
                .then(|| rebuild_partition(&recovered_partition, forget_producers))
                .and_then(|result| match result {
                    Ok(state) => Some(state),
                    Err(reason) => {
                        tracing::error!(partition = %recovered_partition.partition, %reason,
                            "recovered partition is inconsistent; starting it empty");
                        None
                    }
                });
            match rebuilt {
                Some(state) => {
                    partitions.insert(recovered_partition.partition, state);
                }
                None => {
                    // An orphan (its topic was deleted before the directory was) or
                    // unusable: remove it; a wanted one is re-created below.
                    outputs.push(Output::Storage(StorageCommand::DeletePartition {
                        partition: recovered_partition.partition,
                    }));
                }
            }
        }
        for topic in metadata.topics.values() {
            for index in 0..topic.partition_count {
                let partition = TopicPartition::new(topic.name.clone(), index);
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    partitions.entry(partition.clone())
                {
                    outputs.push(Output::Storage(StorageCommand::CreatePartition {
                        partition,
                        base_offset: 0,
                    }));
                    slot.insert(new_partition_state());
                }
            }
        }
        let broker = Self {
            config,
            metadata,
            partitions,
            rng,
            next_producer_id,
            append_sequence: 0,
            unsynced_partitions: BTreeSet::new(),
            waiting_produces: Vec::new(),
            parked_fetches: Vec::new(),
            next_retention_check_ms: now_ms,
        };
        if metadata_changed {
            outputs.insert(0, broker.persist_metadata());
        }
        (broker, outputs)
    }

    /// Feeds one input; returns what the driver must do, in order.
    pub fn step(&mut self, now_ms: i64, input: Input) -> Vec<Output> {
        let mut outputs = Vec::new();
        match input {
            Input::Request { id, request } => self.on_request(now_ms, id, request, &mut outputs),
            Input::Synced { through_sequence } => {
                let mut advanced = false;
                let synced: Vec<TopicPartition> =
                    self.unsynced_partitions.iter().cloned().collect();
                for partition in synced {
                    if let Some(state) = self.partitions.get_mut(&partition) {
                        state.log.on_synced(through_sequence);
                        // A single replica: what is durable here is committed.
                        let durable = state.log.durable_end_offset();
                        advanced |= state.log.advance_high_watermark(durable);
                        if !state.log.has_unsynced() {
                            self.unsynced_partitions.remove(&partition);
                        }
                    } else {
                        self.unsynced_partitions.remove(&partition);
                    }
                }
                if advanced {
                    self.release_waiting_produces(&mut outputs);
                    self.serve_parked_fetches(now_ms, &mut outputs);
                }
            }
            Input::Tick => {
                self.serve_parked_fetches(now_ms, &mut outputs);
                if now_ms >= self.next_retention_check_ms {
                    self.next_retention_check_ms = now_ms + RETENTION_CHECK_INTERVAL_MS;
                    self.apply_retention(now_ms, &mut outputs);
                }
            }
        }
        outputs
    }

    /// The earliest time at which a `Tick` has work to do.
    pub fn next_wakeup_ms(&self) -> Option<i64> {
        self.parked_fetches
            .iter()
            .map(|fetch| fetch.deadline_ms)
            .chain(std::iter::once(self.next_retention_check_ms))
            .min()
    }

    pub fn metadata(&self) -> &ClusterMetadata {
        &self.metadata
    }

    /// A partition's (log start, high watermark, log end) offsets, for tests and checkers.
    pub fn partition_offsets(&self, partition: &TopicPartition) -> Option<(i64, i64, i64)> {
        self.partitions.get(partition).map(|state| {
            (
                state.log.log_start_offset(),
                state.log.high_watermark(),
                state.log.log_end_offset(),
            )
        })
    }

    fn on_request(
        &mut self,
        now_ms: i64,
        id: RequestId,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        let response = match request {
            Request::Metadata {
                topics,
                allow_auto_create,
            } => self.metadata_request(topics, allow_auto_create, outputs),
            Request::CreateTopics { topics } => {
                let results = topics
                    .iter()
                    .map(|topic| self.create_topic(topic, outputs))
                    .collect();
                Response::CreateTopics(results)
            }
            Request::DeleteTopics { names } => {
                let results = names
                    .iter()
                    .map(|name| self.delete_topic(name, outputs))
                    .collect();
                Response::DeleteTopics(results)
            }
            Request::DescribeConfigs { topics } => Response::DescribeConfigs(
                topics
                    .iter()
                    .map(|name| self.describe_configs(name))
                    .collect(),
            ),
            Request::Produce {
                acks,
                transactional_id,
                partitions,
            } => {
                self.produce(id, acks, transactional_id, partitions, outputs);
                return;
            }
            Request::Fetch {
                max_wait_ms,
                min_bytes,
                max_bytes,
                isolation,
                partitions,
            } => {
                let wait_ms = max_wait_ms.clamp(0, self.config.fetch_wait_max_ms);
                let fetch = ParkedFetch {
                    id,
                    deadline_ms: now_ms + wait_ms,
                    min_bytes,
                    max_bytes,
                    isolation,
                    partitions,
                };
                if let Some(response) = self.try_fetch(&fetch, now_ms) {
                    response
                } else {
                    self.parked_fetches.push(fetch);
                    return;
                }
            }
            Request::ListOffsets {
                isolation,
                partitions,
            } => Response::ListOffsets(
                partitions
                    .into_iter()
                    .map(|(partition, timestamp)| self.list_offset(partition, timestamp, isolation))
                    .collect(),
            ),
            Request::InitProducerId {
                transactional_id,
                producer_id,
                producer_epoch,
            } => self.init_producer_id(transactional_id, producer_id, producer_epoch, outputs),
        };
        outputs.push(Output::Respond { id, response });
    }

    // ----- metadata and topics -----

    fn persist_metadata(&self) -> Output {
        Output::Storage(StorageCommand::PersistMetadata(Box::new(
            self.metadata.clone(),
        )))
    }

    fn metadata_request(
        &mut self,
        topics: Option<Vec<String>>,
        allow_auto_create: bool,
        outputs: &mut Vec<Output>,
    ) -> Response {
        let names: Vec<String> = match topics {
            Some(names) => names,
            None => self.metadata.topics.keys().cloned().collect(),
        };
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            if !self.metadata.topics.contains_key(&name)
                && allow_auto_create
                && self.config.auto_create_topics
                && is_valid_topic_name(&name)
            {
                let request = CreateTopic {
                    name: name.clone(),
                    partition_count: -1,
                    replication_factor: -1,
                    configs: Vec::new(),
                    validate_only: false,
                };
                let created = self.create_topic(&request, outputs);
                if created.error != ErrorCode::None {
                    tracing::warn!(topic = %name, error = ?created.error, "auto-create failed");
                }
            }
            infos.push(self.topic_info(&name));
        }
        Response::Metadata {
            cluster_id: self.metadata.cluster_id.clone(),
            controller_id: self.config.node_id,
            nodes: self.metadata.nodes.clone(),
            topics: infos,
        }
    }

    fn topic_info(&self, name: &str) -> TopicInfo {
        match self.metadata.topics.get(name) {
            Some(topic) => TopicInfo {
                name: name.to_string(),
                topic_id: topic.topic_id,
                error: ErrorCode::None,
                partitions: (0..topic.partition_count)
                    .map(|index| (index, self.config.node_id))
                    .collect(),
            },
            None => TopicInfo {
                name: name.to_string(),
                topic_id: 0,
                error: if is_valid_topic_name(name) {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::InvalidTopicException
                },
                partitions: Vec::new(),
            },
        }
    }

    fn create_topic(&mut self, request: &CreateTopic, outputs: &mut Vec<Output>) -> TopicResult {
        let mut result = TopicResult::empty(&request.name);
        let fail = |mut result: TopicResult, error: ErrorCode, message: String| {
            result.error = error;
            result.message = Some(message);
            result
        };
        if !is_valid_topic_name(&request.name) {
            return fail(
                result,
                ErrorCode::InvalidTopicException,
                format!("'{}' is not a valid topic name", request.name),
            );
        }
        if self.metadata.topics.contains_key(&request.name) {
            return fail(
                result,
                ErrorCode::TopicAlreadyExists,
                format!("topic '{}' already exists", request.name),
            );
        }
        let partition_count = if request.partition_count == -1 {
            self.config.default_partition_count
        } else {
            request.partition_count
        };
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partition_count) {
            return fail(
                result,
                ErrorCode::InvalidPartitions,
                format!("partition count must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            );
        }
        let node_count = self.metadata.nodes.len() as i16;
        let replication_factor = if request.replication_factor == -1 {
            node_count.min(3)
        } else {
            request.replication_factor
        };
        if replication_factor < 1 || replication_factor > node_count {
            return fail(result, ErrorCode::InvalidReplicationFactor, format!("replication factor {replication_factor} is not between 1 and the {node_count} available node(s)"));
        }
        let mut config = self.config.topic_defaults.clone();
        for (key, value) in &request.configs {
            if let Err(message) = config.set(key, value) {
                return fail(result, ErrorCode::InvalidConfig, message);
            }
        }
        result.partition_count = partition_count;
        result.replication_factor = replication_factor;
        result.configs = config
            .entries()
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect();
        if request.validate_only {
            return result;
        }
        let topic_id = self.fresh_topic_id();
        result.topic_id = topic_id;
        self.metadata.topics.insert(
            request.name.clone(),
            TopicMetadata {
                name: request.name.clone(),
                topic_id,
                partition_count,
                config,
                assignments: Vec::new(),
            },
        );
        outputs.push(self.persist_metadata());
        for index in 0..partition_count {
            let partition = TopicPartition::new(request.name.clone(), index);
            outputs.push(Output::Storage(StorageCommand::CreatePartition {
                partition: partition.clone(),
                base_offset: 0,
            }));
            self.partitions.insert(partition, new_partition_state());
        }
        tracing::info!(topic = %request.name, partition_count, "created topic");
        result
    }

    /// A random, non-zero topic id not used by any other topic.
    fn fresh_topic_id(&mut self) -> u128 {
        loop {
            let candidate: u128 = self.rng.random();
            if candidate != 0 && self.metadata.topic_by_id(candidate).is_none() {
                return candidate;
            }
        }
    }

    fn delete_topic(&mut self, name: &str, outputs: &mut Vec<Output>) -> TopicResult {
        let mut result = TopicResult::empty(name);
        let Some(topic) = self.metadata.topics.remove(name) else {
            result.error = ErrorCode::UnknownTopicOrPartition;
            result.message = Some(format!("topic '{name}' does not exist"));
            return result;
        };
        result.topic_id = topic.topic_id;
        outputs.push(self.persist_metadata());
        for index in 0..topic.partition_count {
            let partition = TopicPartition::new(name, index);
            self.partitions.remove(&partition);
            self.unsynced_partitions.remove(&partition);
            outputs.push(Output::Storage(StorageCommand::DeletePartition {
                partition,
            }));
        }
        tracing::info!(topic = %name, "deleted topic");
        result
    }

    fn describe_configs(&self, name: &str) -> TopicResult {
        let mut result = TopicResult::empty(name);
        match self.metadata.topics.get(name) {
            Some(topic) => {
                result.topic_id = topic.topic_id;
                result.partition_count = topic.partition_count;
                result.configs = topic
                    .config
                    .entries()
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value))
                    .collect();
            }
            None => {
                result.error = ErrorCode::UnknownTopicOrPartition;
                result.message = Some(format!("topic '{name}' does not exist"));
            }
        }
        result
    }

    fn topic_config(&self, topic: &str) -> TopicConfig {
        self.metadata.topics.get(topic).map_or_else(
            || self.config.topic_defaults.clone(),
            |topic| topic.config.clone(),
        )
    }

    // ----- produce -----

    fn produce(
        &mut self,
        id: RequestId,
        acks: Acks,
        transactional_id: Option<String>,
        partitions: Vec<ProducePartition>,
        outputs: &mut Vec<Output>,
    ) {
        let mut results = Vec::with_capacity(partitions.len());
        let mut waits = Vec::new();
        for produce in partitions {
            let (result, wait) =
                self.produce_partition(&produce, transactional_id.is_some(), outputs);
            results.push(result);
            waits.extend(wait);
        }
        let waiting = WaitingProduce { id, results, waits };
        // acks=0 gets an immediate answer that the driver does not send: the core still
        // closes every request it was given.
        #[cfg(feature = "defects")]
        let acknowledge_early =
            acks == Acks::All && self.config.defect == Some(crate::defects::Defect::AckBeforeFsync);
        #[cfg(not(feature = "defects"))]
        let acknowledge_early = false;
        if acks == Acks::None || acknowledge_early || self.produce_is_durable(&waiting) {
            outputs.push(Output::Respond {
                id,
                response: Response::Produce(waiting.results),
            });
        } else {
            self.waiting_produces.push(waiting);
        }
    }

    /// Validates, deduplicates and appends one partition's batch. Returns the result and,
    /// when data was written or duplicated, the offset the high watermark must reach.
    fn produce_partition(
        &mut self,
        produce: &ProducePartition,
        transactional: bool,
        outputs: &mut Vec<Output>,
    ) -> (ProducePartitionResult, Option<(TopicPartition, i64)>) {
        let partition = produce.partition.clone();
        let config = self.topic_config(&partition.topic);
        let Some(state) = self.partitions.get_mut(&partition) else {
            return (
                produce_error(partition, ErrorCode::UnknownTopicOrPartition, None),
                None,
            );
        };
        let log_start_offset = state.log.log_start_offset();
        let failed = |error: ErrorCode, message: String| {
            let mut result = produce_error(produce.partition.clone(), error, Some(message));
            result.log_start_offset = log_start_offset;
            (result, None)
        };
        let batches = match validate_record_set(&produce.records) {
            Ok(batches) => batches,
            Err(error) => return failed(ErrorCode::CorruptMessage, error.to_string()),
        };
        let [(header, bytes)] = batches.as_slice() else {
            return failed(
                ErrorCode::InvalidRecord,
                format!(
                    "a produce carries exactly one record batch per partition, not {}",
                    batches.len()
                ),
            );
        };
        if header.size_bytes > config.max_message_bytes {
            return failed(
                ErrorCode::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {}",
                    header.size_bytes, config.max_message_bytes
                ),
            );
        }
        if header.is_control() {
            return failed(
                ErrorCode::InvalidRecord,
                "clients may not write control batches".into(),
            );
        }
        if header.is_transactional() || transactional {
            return failed(
                ErrorCode::InvalidTxnState,
                "transactions are not supported yet".into(),
            );
        }
        let verdict = match state.producers.check(header) {
            Ok(verdict) => verdict,
            Err(error) => {
                return failed(
                    error,
                    format!(
                        "producer {} epoch {} sequence {} refused",
                        header.producer_id, header.producer_epoch, header.base_sequence
                    ),
                )
            }
        };
        let (base_offset, wait_until) = match verdict {
            SequenceVerdict::Duplicate {
                first_offset,
                last_offset,
            } => (first_offset, last_offset + 1),
            SequenceVerdict::Append => {
                if state
                    .log
                    .needs_roll(header.size_bytes, config.segment_bytes)
                {
                    let base_offset = state.log.roll();
                    outputs.push(Output::Storage(StorageCommand::RollSegment {
                        partition: partition.clone(),
                        base_offset,
                    }));
                }
                self.append_sequence += 1;
                let sequence = self.append_sequence;
                // Until replication stamps leader epochs, the batch keeps the client's.
                let appended = state
                    .log
                    .append(header, sequence, header.partition_leader_epoch);
                state.producers.record(header, appended.base_offset);
                outputs.push(Output::Storage(StorageCommand::Append {
                    partition: partition.clone(),
                    batch: appended,
                    bytes: bytes.clone(),
                    sequence,
                }));
                self.unsynced_partitions.insert(partition.clone());
                (appended.base_offset, appended.last_offset + 1)
            }
        };
        let result = ProducePartitionResult {
            partition: partition.clone(),
            error: ErrorCode::None,
            message: None,
            base_offset,
            log_append_time_ms: -1,
            log_start_offset,
        };
        (result, Some((partition, wait_until)))
    }

    fn produce_is_durable(&self, waiting: &WaitingProduce) -> bool {
        waiting.waits.iter().all(|(partition, offset)| {
            self.partitions
                .get(partition)
                .is_none_or(|state| state.log.high_watermark() >= *offset)
        })
    }

    fn release_waiting_produces(&mut self, outputs: &mut Vec<Output>) {
        let waiting = std::mem::take(&mut self.waiting_produces);
        for produce in waiting {
            if self.produce_is_durable(&produce) {
                outputs.push(Output::Respond {
                    id: produce.id,
                    response: Response::Produce(produce.results),
                });
            } else {
                self.waiting_produces.push(produce);
            }
        }
    }

    // ----- fetch -----

    /// Answers a fetch if it has enough data, an error, or has reached its deadline.
    fn try_fetch(&self, fetch: &ParkedFetch, now_ms: i64) -> Option<Response> {
        let mut results = Vec::with_capacity(fetch.partitions.len());
        let mut total_bytes: i64 = 0;
        let mut any_error = false;
        let mut budget = i64::from(fetch.max_bytes.max(0));
        for wanted in &fetch.partitions {
            let result = self.fetch_partition(wanted, fetch.isolation, budget, total_bytes == 0);
            let bytes: i64 = result
                .chunks
                .iter()
                .map(|chunk| i64::from(chunk.length))
                .sum();
            total_bytes += bytes;
            budget = (budget - bytes).max(0);
            any_error |= result.error != ErrorCode::None;
            results.push(result);
        }
        let ready =
            any_error || total_bytes >= i64::from(fetch.min_bytes) || now_ms >= fetch.deadline_ms;
        ready.then_some(Response::Fetch(results))
    }

    fn fetch_partition(
        &self,
        wanted: &FetchPartition,
        isolation: Isolation,
        budget_bytes: i64,
        first_with_data: bool,
    ) -> FetchPartitionResult {
        let mut result = FetchPartitionResult {
            partition: wanted.partition.clone(),
            error: ErrorCode::None,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            chunks: Vec::new(),
        };
        let Some(state) = self.partitions.get(&wanted.partition) else {
            result.error = ErrorCode::UnknownTopicOrPartition;
            return result;
        };
        let log = &state.log;
        result.high_watermark = log.high_watermark();
        result.last_stable_offset = last_stable_offset(log);
        result.log_start_offset = log.log_start_offset();
        let upper_bound = match isolation {
            Isolation::ReadUncommitted => result.high_watermark,
            Isolation::ReadCommitted => result.last_stable_offset,
        };
        let readable_end = log.high_watermark();
        #[cfg(feature = "defects")]
        let (upper_bound, readable_end) =
            if self.config.defect == Some(crate::defects::Defect::ReadAboveHighWatermark) {
                (log.log_end_offset(), log.log_end_offset())
            } else {
                (upper_bound, readable_end)
            };
        if wanted.fetch_offset < log.log_start_offset() || wanted.fetch_offset > readable_end {
            result.error = ErrorCode::OffsetOutOfRange;
            return result;
        }
        let max_bytes = budget_bytes.min(i64::from(wanted.partition_max_bytes.max(0)));
        result.chunks = log.read(
            wanted.fetch_offset,
            upper_bound,
            max_bytes.clamp(0, i64::from(u32::MAX)) as u32,
            first_with_data,
        );
        result
    }

    fn serve_parked_fetches(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        let parked = std::mem::take(&mut self.parked_fetches);
        for fetch in parked {
            match self.try_fetch(&fetch, now_ms) {
                Some(response) => outputs.push(Output::Respond {
                    id: fetch.id,
                    response,
                }),
                None => self.parked_fetches.push(fetch),
            }
        }
    }

    // ----- list offsets -----

    fn list_offset(
        &self,
        partition: TopicPartition,
        timestamp: i64,
        isolation: Isolation,
    ) -> ListOffsetsResult {
        let mut result = ListOffsetsResult {
            partition,
            error: ErrorCode::None,
            timestamp: -1,
            offset: -1,
        };
        let Some(state) = self.partitions.get(&result.partition) else {
            result.error = ErrorCode::UnknownTopicOrPartition;
            return result;
        };
        let log = &state.log;
        let upper_bound = match isolation {
            Isolation::ReadUncommitted => log.high_watermark(),
            Isolation::ReadCommitted => last_stable_offset(log),
        };
        let found = match timestamp {
            LIST_OFFSETS_LATEST => Some((upper_bound, -1)),
            LIST_OFFSETS_EARLIEST => Some((log.log_start_offset(), -1)),
            LIST_OFFSETS_MAX_TIMESTAMP => log.max_timestamp_offset(upper_bound),
            timestamp if timestamp >= 0 => log.offset_for_timestamp(timestamp, upper_bound),
            _ => {
                result.error = ErrorCode::InvalidRequest;
                None
            }
        };
        if let Some((offset, timestamp)) = found {
            result.offset = offset;
            result.timestamp = timestamp;
        }
        result
    }

    // ----- producer ids -----

    fn init_producer_id(
        &mut self,
        transactional_id: Option<String>,
        producer_id: i64,
        producer_epoch: i16,
        outputs: &mut Vec<Output>,
    ) -> Response {
        if transactional_id.is_some() {
            return Response::InitProducerId {
                error: ErrorCode::InvalidRequest,
                producer_id: -1,
                producer_epoch: -1,
            };
        }
        // An idempotent producer may ask to bump its epoch (KIP-360) after an error.
        if producer_id >= 0
            && producer_id < self.next_producer_id
            && (0..i16::MAX - 1).contains(&producer_epoch)
        {
            return Response::InitProducerId {
                error: ErrorCode::None,
                producer_id,
                producer_epoch: producer_epoch + 1,
            };
        }
        if self.next_producer_id >= self.metadata.producer_id_block_end {
            self.metadata.producer_id_block_end = self.next_producer_id + PRODUCER_ID_BLOCK_SIZE;
            outputs.push(self.persist_metadata());
        }
        let allocated = self.next_producer_id;
        self.next_producer_id += 1;
        Response::InitProducerId {
            error: ErrorCode::None,
            producer_id: allocated,
            producer_epoch: 0,
        }
    }

    // ----- retention -----

    fn apply_retention(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        for (partition, state) in &mut self.partitions {
            let config = self
                .metadata
                .topics
                .get(&partition.topic)
                .map_or(&self.config.topic_defaults, |topic| &topic.config);
            for base_offset in state.log.segments_past_retention(
                now_ms,
                config.retention_ms,
                config.retention_bytes,
            ) {
                state.log.delete_oldest_segment(base_offset);
                tracing::info!(%partition, base_offset, "retention deleted segment");
                outputs.push(Output::Storage(StorageCommand::DeleteSegment {
                    partition: partition.clone(),
                    base_offset,
                }));
            }
        }
    }
}

/// With no transactions yet, the last stable offset is the high watermark.
fn last_stable_offset(log: &PartitionLog) -> i64 {
    log.high_watermark()
}

fn new_partition_state() -> PartitionState {
    PartitionState {
        log: PartitionLog::new(0),
        producers: ProducerStateTable::default(),
    }
}

/// Rebuilds a partition's log and, by replaying its batch headers, its producer state
/// (skipped only by the deliberate defect `ForgetProducerStateOnRestart`).
fn rebuild_partition(
    recovered: &RecoveredPartition,
    forget_producers: bool,
) -> Result<PartitionState, crate::log::LogError> {
    let log = PartitionLog::from_recovered(&recovered.segments)?;
    let mut producers = ProducerStateTable::default();
    let replayed = if forget_producers {
        &[][..]
    } else {
        &recovered.segments[..]
    };
    for segment in replayed {
        for batch in &segment.batches {
            producers.record(&batch.header, batch.header.base_offset);
        }
    }
    Ok(PartitionState { log, producers })
}

fn produce_error(
    partition: TopicPartition,
    error: ErrorCode,
    message: Option<String>,
) -> ProducePartitionResult {
    ProducePartitionResult {
        partition,
        error,
        message,
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
    }
}
