//! The controller: cluster metadata as a replicated log, as in KRaft.
//!
//! The metadata log is the partition `__cluster_metadata-0`; its voters are every node of the
//! cluster, and its leader is the controller. Each batch holds JSON-encoded
//! [`MetadataRecord`]s (readable with any Kafka consumer tool that can reach the files). Only
//! the controller appends: CreateTopics, DeleteTopics and node registrations sent to another
//! node are forwarded to it (`PeerMessage::Forward`), and its answer comes back
//! (`PeerMessage::Forwarded`) once the records are committed and applied.
//!
//! Every node applies committed records in log order to its [`ClusterMetadata`], persists
//! the result as a snapshot (with the offset it has applied up to), and only then opens or
//! removes the partitions the change gives it. At restart, the snapshot is the starting
//! point and the records past it are replayed as the log commits them again.
//!
//! Partition leadership is not in the log (elections are per partition): every node
//! announces the partitions it leads to every other node, at once on a change and every
//! second, so that any node can name any partition's leader in a Metadata response.
//!
//! Invariants:
//! - a record is applied only once committed (below the metadata log's high watermark), in
//!   offset order, once: the snapshot's `applied_end_offset` says where replay resumes;
//! - the snapshot is persisted before the partitions a change opens or removes;
//! - the controller validates a change against the applied metadata and the records still
//!   pending in its log, so two records never create the same topic or topic id;
//! - a client is told a change succeeded only once it is committed and applied here.

use super::{Broker, PARTITIONS_PER_TOPIC_MAX};
use crate::api::{
    AdminOp, CreateTopic, ErrorCode, Output, PartitionInfo, PeerMessage, RequestId, Response,
    TopicInfo, TopicResult,
};
use crate::batch::{validate_record_set, BatchHeader};
use crate::metadata::{
    assign_replicas, is_valid_topic_name, ClusterMetadata, MetadataRecord, NodeInfo, TopicMetadata,
    TopicPartition,
};
use crate::records::decode_json_records;
use crate::replication::NodeId;
use bytes::Bytes;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// The metadata log's topic (one partition).
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// How often a node re-announces the partitions it leads.
const ANNOUNCE_INTERVAL_MS: i64 = 1_000;
/// How often a node not yet registered asks the controller again.
const REGISTER_RETRY_MS: i64 = 1_000;
/// How long a forwarded admin request waits for the controller's answer.
const FORWARD_TIMEOUT_MS: i64 = 10_000;
/// A node not heard from for this long is left out of Metadata and not named as a leader or
/// coordinator: clients take every listed broker for alive (kafka-python gives up on one it
/// cannot reach). Every live node is heard from at least every announcement interval.
const NODE_LIVENESS_MS: i64 = 3 * ANNOUNCE_INTERVAL_MS;
/// Forward id of requests whose answer nobody waits for (auto-creation, registration).
const UNANSWERED: u64 = 0;

pub fn metadata_partition() -> TopicPartition {
    TopicPartition::new(METADATA_TOPIC, 0)
}

/// Which response an admin request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminKind {
    Create,
    Delete,
    Register,
}

impl AdminKind {
    fn of(op: &AdminOp) -> Self {
        match op {
            AdminOp::CreateTopics(_) => Self::Create,
            AdminOp::DeleteTopics(_) => Self::Delete,
            AdminOp::RegisterNode(_) => Self::Register,
        }
    }

    fn response(self, results: Vec<TopicResult>) -> Option<Response> {
        match self {
            Self::Create => Some(Response::CreateTopics(results)),
            Self::Delete => Some(Response::DeleteTopics(results)),
            Self::Register => None,
        }
    }
}

/// Who waits for an admin operation's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdminOrigin {
    Client { id: RequestId, kind: AdminKind },
    Peer { node: NodeId, id: u64 },
    Nobody,
}

/// An operation the controller appended, waiting for its records to be applied.
#[derive(Debug)]
struct PendingAdmin {
    origin: AdminOrigin,
    results: Vec<TopicResult>,
    commit_end: i64,
    epoch: i32,
}

/// A client's admin request forwarded to the controller.
#[derive(Debug)]
struct ForwardedRequest {
    request: RequestId,
    kind: AdminKind,
    names: Vec<String>,
    deadline_ms: i64,
}

/// A committed-or-not batch of the metadata log, decoded, waiting to be applied.
#[derive(Debug, Clone)]
struct PendingBatch {
    end_offset: i64,
    records: Vec<MetadataRecord>,
}

/// The controller's and the metadata applier's state. See the module doc.
#[derive(Debug, Default)]
pub(super) struct Controller {
    /// Batches at or past the applied end, by base offset.
    pending: BTreeMap<i64, PendingBatch>,
    waiting: Vec<PendingAdmin>,
    forwarded: BTreeMap<u64, ForwardedRequest>,
    next_forward_id: u64,
    /// Leaders other nodes announced: partition -> (epoch, leader).
    known_leaders: BTreeMap<TopicPartition, (i32, NodeId)>,
    next_announce_ms: i64,
    next_register_ms: i64,
    /// When each other node was last heard from (any peer message).
    heard_from: BTreeMap<NodeId, i64>,
}

impl Controller {
    /// Whether `node` is `this_node` or was heard from recently (see `NODE_LIVENESS_MS`).
    pub(super) fn is_live(&self, this_node: NodeId, node: NodeId, now_ms: i64) -> bool {
        node == this_node
            || self
                .heard_from
                .get(&node)
                .is_some_and(|at| now_ms - at <= NODE_LIVENESS_MS)
    }

    /// A partition's (leader epoch, leader): the newer of what this node's replica knows
    /// (`hosted`) and what its leader announced, if that leader is live.
    pub(super) fn live_leader(
        &self,
        this_node: NodeId,
        partition: &TopicPartition,
        hosted: Option<(i32, NodeId)>,
        now_ms: i64,
    ) -> Option<(i32, NodeId)> {
        let announced = self.known_leaders.get(partition).copied();
        hosted
            .max(announced)
            .filter(|(_, leader)| self.is_live(this_node, *leader, now_ms))
    }

    /// Starts from the snapshot; the records of `metadata_log` past its applied end wait to
    /// be committed again.
    pub(super) fn new(metadata: &ClusterMetadata, metadata_log: &Bytes) -> Self {
        let mut controller = Self {
            next_forward_id: UNANSWERED + 1,
            ..Self::default()
        };
        match validate_record_set(metadata_log) {
            Ok(batches) => {
                for (header, bytes) in batches {
                    if header.base_offset >= metadata.applied_end_offset {
                        controller.on_appended(
                            &header,
                            header.base_offset,
                            header.base_offset + header.offset_count() - 1,
                            &bytes,
                        );
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "the recovered metadata log does not parse; replaying none of it");
            }
        }
        controller
    }

    /// A batch reached the metadata log (as leader or follower).
    pub(super) fn on_appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) {
        if header.is_control() {
            return;
        }
        let records =
            decode_json_records::<MetadataRecord>(header, bytes).unwrap_or_else(|reason| {
                tracing::error!(base_offset, %reason, "undecodable metadata batch skipped");
                Vec::new()
            });
        self.pending.insert(
            base_offset,
            PendingBatch {
                end_offset: last_offset + 1,
                records,
            },
        );
    }

    /// The metadata log lost its tail from `offset` on.
    pub(super) fn on_truncated(&mut self, offset: i64) {
        self.pending.split_off(&offset);
    }

    pub(super) fn announce_soon(&mut self) {
        self.next_announce_ms = 0;
    }

    /// A message from `from` arrived.
    pub(super) fn heard_from(&mut self, from: NodeId, now_ms: i64) {
        self.heard_from.insert(from, now_ms);
    }

    pub(super) fn learn_leaders(&mut self, from: NodeId, leaders: Vec<(TopicPartition, i32)>) {
        for (partition, epoch) in leaders {
            let known = self.known_leaders.entry(partition).or_insert((epoch, from));
            if epoch >= known.0 {
                *known = (epoch, from);
            }
        }
    }

    /// The earliest time the controller's timers have work; registration retries only
    /// while this node is not `registered`.
    pub(super) fn next_wakeup_ms(&self, registered: bool) -> Option<i64> {
        let register = (!registered).then_some(self.next_register_ms);
        self.forwarded
            .values()
            .map(|forwarded| forwarded.deadline_ms)
            .chain([self.next_announce_ms])
            .chain(register)
            .min()
    }

    fn pending_records(&self) -> impl Iterator<Item = &MetadataRecord> {
        self.pending.values().flat_map(|batch| batch.records.iter())
    }
}

/// The topics an operation names.
fn topic_names(op: &AdminOp) -> Vec<&str> {
    match op {
        AdminOp::CreateTopics(topics) => topics.iter().map(|topic| topic.name.as_str()).collect(),
        AdminOp::DeleteTopics(names) => names.iter().map(String::as_str).collect(),
        AdminOp::RegisterNode(_) => Vec::new(),
    }
}

/// Failure results for every topic an operation names.
fn admin_failure(op: &AdminOp, error: ErrorCode, message: &str) -> Vec<TopicResult> {
    topic_names(op)
        .into_iter()
        .map(|name| failed_result(name, error, message))
        .collect()
}

fn failed_result(name: &str, error: ErrorCode, message: &str) -> TopicResult {
    let mut result = TopicResult::empty(name);
    result.error = error;
    result.message = Some(message.to_string());
    result
}

impl Broker {
    /// Whether the applied metadata lists this node with its current address.
    pub(super) fn is_registered(&self) -> bool {
        // Called at every wakeup: compare in place rather than build this node's info.
        self.metadata.nodes.iter().any(|node| {
            node.node_id == self.config.node_id
                && node.host == self.config.advertised_host
                && node.port == self.config.advertised_port
        })
    }

    pub(super) fn this_node(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.config.node_id,
            host: self.config.advertised_host.clone(),
            port: self.config.advertised_port,
        }
    }

    /// The controller (the metadata log's leader), if known.
    pub fn controller_id(&self) -> Option<NodeId> {
        self.partitions
            .get(&metadata_partition())
            .and_then(|state| state.replica.leader())
    }

    fn is_controller(&self) -> bool {
        self.controller_id() == Some(self.config.node_id)
    }

    /// Whether `node` is this node or was heard from recently (see `NODE_LIVENESS_MS`).
    pub(super) fn is_live(&self, node: NodeId, now_ms: i64) -> bool {
        self.controller.is_live(self.config.node_id, node, now_ms)
    }

    /// A partition's (leader epoch, leader), from this node's replica or the announcements,
    /// if that leader is live.
    pub(super) fn partition_leader(
        &self,
        partition: &TopicPartition,
        now_ms: i64,
    ) -> Option<(i32, NodeId)> {
        let hosted = super::hosted_leader(&self.partitions, partition);
        self.controller
            .live_leader(self.config.node_id, partition, hosted, now_ms)
    }

    // ----- applying the log -----

    /// Applies every committed batch not applied yet; persists the snapshot, then opens and
    /// removes the partitions the changes give or take from this node.
    pub(super) fn apply_committed_metadata(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        let Some(committed) = self
            .partitions
            .get(&metadata_partition())
            .map(|state| state.log.high_watermark())
        else {
            return;
        };
        let mut changed_topics = BTreeSet::new();
        let mut applied_any = false;
        while let Some(entry) = self.controller.pending.first_entry() {
            if entry.get().end_offset > committed {
                break;
            }
            let batch = entry.remove();
            for record in &batch.records {
                match self.metadata.apply(record) {
                    Ok(()) => match record {
                        MetadataRecord::CreateTopic(topic) => {
                            changed_topics.insert(topic.name.clone());
                        }
                        MetadataRecord::DeleteTopic { name } => {
                            changed_topics.insert(name.clone());
                        }
                        _ => {}
                    },
                    Err(reason) => {
                        tracing::warn!(%reason, "metadata record refused (every node refuses it)")
                    }
                }
            }
            self.metadata.applied_end_offset = batch.end_offset;
            applied_any = true;
        }
        if !applied_any {
            return;
        }
        outputs.push(self.persist_metadata());
        let hosted: BTreeSet<TopicPartition> = self.hosted_partitions().into_iter().collect();
        let stale: Vec<TopicPartition> = self
            .partitions
            .keys()
            .filter(|partition| changed_topics.contains(&partition.topic))
            .filter(|partition| !hosted.contains(*partition))
            .cloned()
            .collect();
        for partition in stale {
            tracing::info!(%partition, "partition removed");
            self.close_partition(&partition, outputs);
        }
        self.controller
            .known_leaders
            .retain(|partition, _| !changed_topics.contains(&partition.topic));
        for partition in hosted {
            if changed_topics.contains(&partition.topic)
                && !self.partitions.contains_key(&partition)
            {
                tracing::info!(%partition, "partition created");
                self.open_partition(now_ms, partition, None, None, outputs);
            }
        }
    }

    // ----- admin operations -----

    /// A client's CreateTopics or DeleteTopics: run here if this node is the controller,
    /// else forwarded to it.
    pub(super) fn admin_request(
        &mut self,
        now_ms: i64,
        id: RequestId,
        op: AdminOp,
        outputs: &mut Vec<Output>,
    ) {
        let kind = AdminKind::of(&op);
        match self.controller_id() {
            Some(controller) if controller == self.config.node_id => {
                self.run_admin(now_ms, op, AdminOrigin::Client { id, kind }, outputs)
            }
            Some(controller) => {
                let forward_id = self.controller.next_forward_id;
                self.controller.next_forward_id += 1;
                let names = topic_names(&op).into_iter().map(String::from).collect();
                self.controller.forwarded.insert(
                    forward_id,
                    ForwardedRequest {
                        request: id,
                        kind,
                        names,
                        deadline_ms: now_ms + FORWARD_TIMEOUT_MS,
                    },
                );
                outputs.push(Output::Send {
                    to: controller,
                    message: PeerMessage::Forward { id: forward_id, op },
                });
            }
            None => {
                let results = admin_failure(&op, ErrorCode::NotController, "no controller yet");
                respond(AdminOrigin::Client { id, kind }, results, outputs);
            }
        }
    }

    pub(super) fn on_forward(
        &mut self,
        now_ms: i64,
        from: NodeId,
        id: u64,
        op: AdminOp,
        outputs: &mut Vec<Output>,
    ) {
        let origin = if id == UNANSWERED {
            AdminOrigin::Nobody
        } else {
            AdminOrigin::Peer { node: from, id }
        };
        if self.is_controller() {
            self.run_admin(now_ms, op, origin, outputs);
        } else {
            let results = admin_failure(&op, ErrorCode::NotController, "not the controller");
            respond(origin, results, outputs);
        }
    }

    pub(super) fn on_forwarded(
        &mut self,
        id: u64,
        results: Vec<TopicResult>,
        outputs: &mut Vec<Output>,
    ) {
        if let Some(forwarded) = self.controller.forwarded.remove(&id) {
            let origin = AdminOrigin::Client {
                id: forwarded.request,
                kind: forwarded.kind,
            };
            respond(origin, results, outputs);
        }
    }

    /// As controller: validates the operation, appends its records, and answers once they
    /// are applied (or at once if nothing is to be written).
    fn run_admin(
        &mut self,
        now_ms: i64,
        op: AdminOp,
        origin: AdminOrigin,
        outputs: &mut Vec<Output>,
    ) {
        let mut records = Vec::new();
        let results = match &op {
            AdminOp::CreateTopics(topics) => topics
                .iter()
                .map(|topic| self.validate_create(topic, &mut records))
                .collect(),
            AdminOp::DeleteTopics(names) => names
                .iter()
                .map(|name| self.validate_delete(name, &mut records))
                .collect(),
            AdminOp::RegisterNode(node) => {
                let record = MetadataRecord::RegisterNode(node.clone());
                let known = self.metadata.nodes.contains(node)
                    || self
                        .controller
                        .pending_records()
                        .any(|pending| *pending == record);
                if !known {
                    records.push(record);
                }
                Vec::new()
            }
        };
        if records.is_empty() {
            respond(origin, results, outputs);
            return;
        }
        match self.append_metadata(now_ms, &records, outputs) {
            Some((commit_end, epoch)) => self.controller.waiting.push(PendingAdmin {
                origin,
                results,
                commit_end,
                epoch,
            }),
            None => respond(
                origin,
                admin_failure(&op, ErrorCode::NotController, "not the controller"),
                outputs,
            ),
        }
    }

    /// Appends one batch of records to the metadata log as its leader; returns the offset
    /// its commit must reach and the epoch, or `None` if this node does not lead it.
    fn append_metadata(
        &mut self,
        now_ms: i64,
        records: &[MetadataRecord],
        outputs: &mut Vec<Output>,
    ) -> Option<(i64, i32)> {
        self.append_internal_batch(now_ms, &metadata_partition(), records, outputs)
    }

    /// Whether `name` exists once the applied metadata and the pending records are applied.
    fn topic_exists_eventually(&self, name: &str) -> bool {
        let mut exists = self.metadata.topics.contains_key(name);
        for record in self.controller.pending_records() {
            match record {
                MetadataRecord::CreateTopic(topic) if topic.name == name => exists = true,
                MetadataRecord::DeleteTopic { name: deleted } if deleted == name => exists = false,
                _ => {}
            }
        }
        exists
    }

    fn validate_create(
        &mut self,
        request: &CreateTopic,
        records: &mut Vec<MetadataRecord>,
    ) -> TopicResult {
        let mut result = TopicResult::empty(&request.name);
        let fail =
            |error: ErrorCode, message: String| failed_result(&request.name, error, &message);
        if !is_valid_topic_name(&request.name) || request.name == METADATA_TOPIC {
            return fail(
                ErrorCode::InvalidTopicException,
                format!("'{}' is not a valid topic name", request.name),
            );
        }
        let created_here = records.iter().any(|record| {
            matches!(record, MetadataRecord::CreateTopic(topic) if topic.name == request.name)
        });
        if created_here || self.topic_exists_eventually(&request.name) {
            return fail(
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
                ErrorCode::InvalidPartitions,
                format!("partition count must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
            );
        }
        let voters = self.config.voters.clone();
        let node_count = voters.len() as i16;
        let replication_factor = if request.replication_factor == -1 {
            node_count.min(3)
        } else {
            request.replication_factor
        };
        if replication_factor < 1 || replication_factor > node_count {
            return fail(ErrorCode::InvalidReplicationFactor, format!("replication factor {replication_factor} is not between 1 and the {node_count} node(s) of the cluster"));
        }
        let mut config = self.config.topic_defaults.clone();
        for (key, value) in &request.configs {
            if let Err(message) = config.set(key, value) {
                return fail(ErrorCode::InvalidConfig, message);
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
        let topic_id = self.fresh_topic_id(records);
        result.topic_id = topic_id;
        // A random start spreads preferred leaders of successive topics over the nodes.
        let start = self.rng.random_range(0..voters.len());
        records.push(MetadataRecord::CreateTopic(TopicMetadata {
            name: request.name.clone(),
            topic_id,
            partition_count,
            config,
            assignments: assign_replicas(&voters, partition_count, replication_factor, start),
        }));
        result
    }

    /// A random, non-zero topic id used by no topic, applied or pending.
    fn fresh_topic_id(&mut self, records: &[MetadataRecord]) -> u128 {
        loop {
            let candidate: u128 = self.rng.random();
            let taken = self.metadata.topic_by_id(candidate).is_some()
                || self
                    .controller
                    .pending_records()
                    .chain(records)
                    .any(|record| {
                        matches!(record, MetadataRecord::CreateTopic(topic) if topic.topic_id == candidate)
                    });
            if candidate != 0 && !taken {
                return candidate;
            }
        }
    }

    fn validate_delete(&self, name: &str, records: &mut Vec<MetadataRecord>) -> TopicResult {
        let deleted_here = records.iter().any(
            |record| matches!(record, MetadataRecord::DeleteTopic { name: deleted } if deleted == name),
        );
        if deleted_here || !self.topic_exists_eventually(name) {
            return failed_result(
                name,
                ErrorCode::UnknownTopicOrPartition,
                &format!("topic '{name}' does not exist"),
            );
        }
        let mut result = TopicResult::empty(name);
        result.topic_id = self
            .metadata
            .topics
            .get(name)
            .map_or(0, |topic| topic.topic_id);
        records.push(MetadataRecord::DeleteTopic {
            name: name.to_string(),
        });
        result
    }

    /// Answers admin operations whose records are applied, fails those whose controller
    /// lost its leadership, and times out forwarded requests.
    pub(super) fn release_admin(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        if !self.controller.waiting.is_empty() {
            let leading_epoch = self
                .partitions
                .get(&metadata_partition())
                .filter(|state| state.replica.is_leader())
                .map(|state| state.replica.epoch());
            let applied_end = self.metadata.applied_end_offset;
            let waiting = std::mem::take(&mut self.controller.waiting);
            for admin in waiting {
                if applied_end >= admin.commit_end {
                    respond(admin.origin, admin.results, outputs);
                } else if leading_epoch != Some(admin.epoch) {
                    let results = admin
                        .results
                        .iter()
                        .map(|result| {
                            failed_result(
                                &result.name,
                                ErrorCode::NotController,
                                "the controller changed before the change was committed",
                            )
                        })
                        .collect();
                    respond(admin.origin, results, outputs);
                } else {
                    self.controller.waiting.push(admin);
                }
            }
        }
        let expired: Vec<u64> = self
            .controller
            .forwarded
            .iter()
            .filter(|(_, forwarded)| forwarded.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(forwarded) = self.controller.forwarded.remove(&id) {
                let results = forwarded
                    .names
                    .iter()
                    .map(|name| {
                        failed_result(
                            name,
                            ErrorCode::RequestTimedOut,
                            "the controller did not answer",
                        )
                    })
                    .collect();
                let origin = AdminOrigin::Client {
                    id: forwarded.request,
                    kind: forwarded.kind,
                };
                respond(origin, results, outputs);
            }
        }
    }

    /// Timers: leader announcements, this node's registration, the cluster id.
    pub(super) fn controller_tick(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        if now_ms >= self.controller.next_announce_ms {
            self.controller.next_announce_ms = now_ms + ANNOUNCE_INTERVAL_MS;
            let led: Vec<(TopicPartition, i32)> = self
                .partitions
                .iter()
                .filter(|(_, state)| state.replica.is_leader())
                .map(|(partition, state)| (partition.clone(), state.replica.epoch()))
                .collect();
            let others = self
                .config
                .voters
                .iter()
                .filter(|node| **node != self.config.node_id);
            for node in others {
                outputs.push(Output::Send {
                    to: *node,
                    message: PeerMessage::Leaders(led.clone()),
                });
            }
        }
        if self.is_registered() || now_ms < self.controller.next_register_ms {
            if self.is_controller() {
                self.ensure_cluster_id(now_ms, outputs);
            }
            return;
        }
        self.controller.next_register_ms = now_ms + REGISTER_RETRY_MS;
        let this_node = self.this_node();
        match self.controller_id() {
            Some(controller) if controller == self.config.node_id => {
                self.ensure_cluster_id(now_ms, outputs);
                self.run_admin(
                    now_ms,
                    AdminOp::RegisterNode(this_node),
                    AdminOrigin::Nobody,
                    outputs,
                );
            }
            Some(controller) => outputs.push(Output::Send {
                to: controller,
                message: PeerMessage::Forward {
                    id: UNANSWERED,
                    op: AdminOp::RegisterNode(this_node),
                },
            }),
            None => {}
        }
    }

    /// As controller: a cluster without an id gets one (the first record of its log).
    fn ensure_cluster_id(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        let pending = self
            .controller
            .pending_records()
            .any(|record| matches!(record, MetadataRecord::InitCluster { .. }));
        if self.metadata.cluster_id.is_empty() && !pending {
            let cluster_id = format!("myelin-{:016x}", self.rng.random::<u64>());
            self.append_metadata(
                now_ms,
                &[MetadataRecord::InitCluster { cluster_id }],
                outputs,
            );
        }
    }

    /// Runs an admin operation nobody waits for (auto-creation) here if this node is the
    /// controller, else forwards it there; without a known controller it is dropped (the
    /// requester asks again).
    pub(super) fn submit_unanswered(
        &mut self,
        now_ms: i64,
        op: AdminOp,
        outputs: &mut Vec<Output>,
    ) {
        match self.controller_id() {
            Some(controller) if controller == self.config.node_id => {
                self.run_admin(now_ms, op, AdminOrigin::Nobody, outputs)
            }
            Some(controller) => outputs.push(Output::Send {
                to: controller,
                message: PeerMessage::Forward { id: UNANSWERED, op },
            }),
            None => {}
        }
    }

    // ----- Metadata, DescribeConfigs -----

    pub(super) fn metadata_request(
        &mut self,
        now_ms: i64,
        topics: Option<Vec<String>>,
        allow_auto_create: bool,
        outputs: &mut Vec<Output>,
    ) -> Response {
        let names: Vec<String> = match topics {
            Some(names) => names,
            None => self.metadata.topics.keys().cloned().collect(),
        };
        let mut infos = Vec::with_capacity(names.len());
        let mut to_create = Vec::new();
        for name in names {
            let mut info = self.topic_info(&name, now_ms);
            if info.error == ErrorCode::UnknownTopicOrPartition
                && allow_auto_create
                && self.config.auto_create_topics
            {
                // Kafka's answer while a topic is being created; clients ask again.
                info.error = ErrorCode::LeaderNotAvailable;
                to_create.push(CreateTopic {
                    name: name.clone(),
                    partition_count: -1,
                    replication_factor: -1,
                    configs: Vec::new(),
                    validate_only: false,
                });
            }
            infos.push(info);
        }
        if !to_create.is_empty() {
            self.submit_unanswered(now_ms, AdminOp::CreateTopics(to_create), outputs);
        }
        let mut nodes: Vec<NodeInfo> = self
            .metadata
            .nodes
            .iter()
            .filter(|node| self.is_live(node.node_id, now_ms))
            .cloned()
            .collect();
        if !nodes.iter().any(|node| node.node_id == self.config.node_id) {
            nodes.push(self.this_node());
            nodes.sort_by_key(|node| node.node_id);
        }
        // Clients send admin requests to the controller they are told of, and must be able
        // to reach it: until the controller is known and listed, this node names itself
        // (it forwards admin requests to the controller anyway).
        let controller_id = self
            .controller_id()
            .filter(|controller| nodes.iter().any(|node| node.node_id == *controller))
            .unwrap_or(self.config.node_id);
        Response::Metadata {
            cluster_id: self.metadata.cluster_id.clone(),
            controller_id,
            nodes,
            topics: infos,
        }
    }

    fn topic_info(&self, name: &str, now_ms: i64) -> TopicInfo {
        let Some(topic) = self.metadata.topics.get(name) else {
            return TopicInfo {
                name: name.to_string(),
                topic_id: 0,
                error: if is_valid_topic_name(name) && name != METADATA_TOPIC {
                    ErrorCode::UnknownTopicOrPartition
                } else {
                    ErrorCode::InvalidTopicException
                },
                partitions: Vec::new(),
            };
        };
        let partitions = (0..topic.partition_count)
            .map(|index| {
                let partition = TopicPartition::new(name, index);
                let replicas = topic.replicas(index, self.config.node_id);
                match self.partition_leader(&partition, now_ms) {
                    Some((leader_epoch, leader)) => PartitionInfo {
                        index,
                        error: ErrorCode::None,
                        leader,
                        leader_epoch,
                        replicas,
                    },
                    None => PartitionInfo {
                        index,
                        error: ErrorCode::LeaderNotAvailable,
                        leader: -1,
                        leader_epoch: -1,
                        replicas,
                    },
                }
            })
            .collect();
        TopicInfo {
            name: name.to_string(),
            topic_id: topic.topic_id,
            error: ErrorCode::None,
            partitions,
        }
    }

    pub(super) fn describe_configs(&self, name: &str) -> TopicResult {
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
}

/// Sends an admin operation's results to whoever waits for them.
fn respond(origin: AdminOrigin, results: Vec<TopicResult>, outputs: &mut Vec<Output>) {
    match origin {
        AdminOrigin::Client { id, kind } => {
            if let Some(response) = kind.response(results) {
                outputs.push(Output::Respond { id, response });
            }
        }
        AdminOrigin::Peer { node, id } => outputs.push(Output::Send {
            to: node,
            message: PeerMessage::Forwarded { id, results },
        }),
        AdminOrigin::Nobody => {}
    }
}
