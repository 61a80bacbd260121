//! The broker: one node's state machine, composing the cluster metadata, replicated
//! partition logs and producer state, and giving each Kafka API its meaning.
//!
//! `Broker::step(now, input) -> outputs` is the only way state changes. Every partition
//! hosted here is a [`Replica`] of its replication group (see [`crate::replication`]); so is
//! the metadata log, `__cluster_metadata-0`, whose voters are every node of the cluster and
//! whose leader is the controller (see [`crate::controller`]). A single node is a cluster of one:
//! every group has one voter, which leads at once. The controller, the group coordinator
//! and the transaction coordinator are state machines of their own ([`crate::controller`],
//! [`crate::group_coordinator`], [`crate::transaction_coordinator`]) that the broker drives
//! (`broker/controller_driver.rs`, `broker/group_driver.rs`, `broker/transactions.rs`).
//!
//! Requests that can be answered at once are. A produce waits: acks=all until its batches
//! are below the high watermark (held durably by a majority of the partition's replicas),
//! acks=1 until the leader holds them durably, at most its `timeout_ms` (then the
//! partitions still waiting answer REQUEST_TIMED_OUT). A fetch waits (long-poll) until
//! `min_bytes` are readable or its deadline passes. DeleteRecords waits until a majority of
//! each partition's replicas hold the new start, at most its `timeout_ms`
//! (`broker/delete_records.rs`). Until a node of several knows the cluster, the requests
//! answered from the cluster view wait (see the controller's "Knowing the cluster before
//! serving its view"). Waiters are re-examined after every step; every kind is bounded in
//! number ([`WAITING_PRODUCES_MAX`], `PARKED_FETCHES_MAX`, `WAITING_DELETES_MAX`,
//! `HELD_FOR_CLUSTER_VIEW_MAX`).
//!
//! Each step's [`Now`] carries two clocks. Deadlines (produce timeouts, long-polls,
//! verifications, when retention runs) and every state machine's timers are on the
//! monotonic one; the wall clock stamps the batches the broker writes (markers,
//! internal-log records) and is what retention and producer-state expiry compare record
//! timestamps with. [`Now`] says which clock drives what.
//!
//! Stored data that is not what it should be (a recovered partition whose batches do not
//! follow each other, an internal-log batch that does not decode) is never skipped or
//! emptied: the step returns [`Output::FailStop`] and the node stops.
//!
//! Invariants:
//! - only a partition's leader accepts produces, fetches and offset lookups; the others
//!   answer NOT_LEADER_OR_FOLLOWER, and a fetch naming an older leader epoch is
//!   FENCED_LEADER_EPOCH; a new leader serves reads only once its high watermark reaches
//!   the start of its epoch, so the high watermark clients see never moves back;
//! - an acks=all produce is answered with success only when every batch it wrote (or
//!   duplicated) is below its partition's high watermark, in the leader epoch it was written
//!   in; if leadership changes first, that partition's result is NOT_LEADER_OR_FOLLOWER
//!   (the client retries; idempotence makes the retry safe);
//! - a fetch never returns a batch at or above the high watermark (or the last stable
//!   offset under read_committed; equal to the HWM while no transaction is open);
//! - metadata changes take effect only once committed in the metadata log, are persisted
//!   (`PersistMetadata`) before any output that depends on them, and every node applies the
//!   same records in the same order;
//! - iteration that reaches an output is over ordered maps: the same inputs give the same
//!   outputs (the determinism test checks it).

mod controller_driver;
mod coordinator_lookup;
mod delete_records;
#[cfg(test)]
pub(crate) use delete_records::WAITING_DELETES_MAX;
mod group_driver;
mod stats;
mod transactions;

use crate::api::{
    Acks, BrokerConfig, CorruptData, ErrorCode, FetchPartition, FetchPartitionResult, Input,
    Isolation, ListOffsetsResult, Now, Output, PeerMessage, ProducePartition,
    ProducePartitionResult, RecoveredPartition, Recovery, Request, RequestId, Response,
    StorageCommand, LIST_OFFSETS_EARLIEST, LIST_OFFSETS_LATEST, LIST_OFFSETS_MAX_TIMESTAMP,
};
use crate::batch::validate_record_set;
use crate::controller::{Controller, ControllerConfig};
use crate::group_coordinator::GroupCoordinator;
use crate::internal_log::{InternalPartitions, ShardStatus};
use crate::log::PartitionLog;
use crate::metadata::{ClusterMetadata, TopicConfig, TopicPartition};
use crate::partition_txns::PartitionTransactions;
use crate::producers::{ProducerStateTable, SequenceVerdict};
use crate::replication::{Effect, NodeId, Replica, ReplicaContext, ReplicaState};
use crate::transaction_coordinator::{
    TransactionCoordinator, TransactionNode, TxnCoordinatorConfig,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};

pub use crate::controller::{METADATA_TOPIC, PARTITIONS_PER_TOPIC_MAX};
pub use crate::group_coordinator::{offsets_partition_of, GroupRecord, OFFSETS_TOPIC};
use crate::transactions::TRANSACTION_STATE_TOPIC;
pub use stats::{BrokerCounters, BrokerStats, LedPartition};

/// Whether a topic is internal: written by the broker only, never by clients.
pub fn is_internal_topic(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == METADATA_TOPIC || topic == TRANSACTION_STATE_TOPIC
}

/// Producer ids are reserved durably in blocks of this many.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// A node's producer ids are `node_id << PRODUCER_ID_NODE_SHIFT | counter`, so nodes never
/// hand out the same id without asking each other.
pub const PRODUCER_ID_NODE_SHIFT: u32 = 40;
/// How often retention runs.
const RETENTION_CHECK_INTERVAL_MS: i64 = 1_000;
/// Most produces waiting for their acknowledgement; past it a produce is refused with
/// REQUEST_TIMED_OUT before anything is written (clients retry it).
pub(crate) const WAITING_PRODUCES_MAX: usize = 10_000;
/// Most fetches long-polling at once; past it a fetch is answered at once with what there
/// is (as if its wait were over).
const PARKED_FETCHES_MAX: usize = 10_000;
/// Most requests held until this node knows the cluster; past it they are answered at once
/// with what the node knows (the wait lasts a few seconds after a start, see
/// `Broker::holds_for_cluster_view`).
const HELD_FOR_CLUSTER_VIEW_MAX: usize = 1_024;

/// One partition's state on this node.
#[derive(Debug, Clone)]
struct PartitionState {
    log: PartitionLog,
    producers: ProducerStateTable,
    /// Open transactions, the last stable offset and the aborted-transaction index.
    txns: PartitionTransactions,
    replica: Replica,
    segment_bytes: u32,
    /// The id of the topic this partition was opened for (0 for the metadata log): a topic
    /// deleted and created again under its name has a new one, and this data is not its.
    topic_id: u128,
}

/// One partition's part of a waiting produce.
#[derive(Debug)]
struct ProduceWait {
    partition: TopicPartition,
    /// Offset the high watermark (acks=all) or the durable end (acks=1) must reach.
    offset: i64,
    /// The leader epoch the batch was written (or found) in.
    epoch: i32,
    /// Index of the partition's entry in `results`.
    result: usize,
}

/// Who hears about a produce-like write once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteReply {
    /// A client's Produce.
    Client(RequestId),
    /// A coordinator's WriteTxnMarkers (`to` may be this node).
    Markers { to: NodeId, id: u64 },
}

/// A produce (or a marker write) waiting for its batches to be committed.
#[derive(Debug)]
struct WaitingProduce {
    reply: WriteReply,
    terms: WriteTerms,
    results: Vec<ProducePartitionResult>,
    waits: Vec<ProduceWait>,
}

/// What a write waits for, and until when.
#[derive(Debug, Clone, Copy)]
pub(super) struct WriteTerms {
    acks: Acks,
    /// Past it, the partitions still waiting are answered REQUEST_TIMED_OUT.
    deadline_ms: i64,
}

impl WriteTerms {
    /// A client's produce: its acks and timeout (Kafka's `timeout_ms`; a negative one
    /// counts as 0, so an unmet acks=all is answered at the next tick).
    fn of_produce(acks: Acks, timeout_ms: i32, now: Now) -> Self {
        Self {
            acks,
            deadline_ms: now.monotonic_ms + i64::from(timeout_ms.max(0)),
        }
    }

    /// This node's own writes (transaction markers): acks=all, waiting as long as the
    /// partition keeps its leader (the coordinator resends what is not answered).
    pub(super) const MARKERS: WriteTerms = WriteTerms {
        acks: Acks::All,
        deadline_ms: i64::MAX,
    };
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
    controller: Controller,
    group_coordinator: GroupCoordinator,
    txn_coordinator: TransactionCoordinator,
    /// The verifications of transactions' first appends this node's leaders wait for.
    verifications: transactions::Verifications,
    /// The numbering of this node's transaction messages (marker requests, verifications).
    txn_message_ids: u64,
    /// Answers of marker writes this node made for its own coordinator, fed to it after the
    /// step that settled them.
    local_marker_results: Vec<(u64, Vec<(TopicPartition, ErrorCode)>)>,
    /// When each internal topic's creation was last asked for (see `coordinator_lookup`).
    internal_topics_requested_ms: BTreeMap<&'static str, i64>,
    rng: StdRng,
    next_producer_id: i64,
    append_sequence: u64,
    /// Partitions with appends not yet durable.
    unsynced_partitions: BTreeSet<TopicPartition>,
    waiting_produces: Vec<WaitingProduce>,
    parked_fetches: Vec<ParkedFetch>,
    /// DeleteRecords answers waiting for a majority to hold the new start.
    waiting_deletes: Vec<delete_records::WaitingDelete>,
    /// Requests answered from the cluster view, held until this node knows the cluster
    /// (at most [`HELD_FOR_CLUSTER_VIEW_MAX`]), in arrival order.
    held_for_cluster_view: Vec<(RequestId, Request)>,
    /// Set when a step may have let a waiter through (a high watermark or durable end
    /// moved, leadership changed, a partition went away): waiters are re-examined only
    /// then, not after every peer message.
    progressed: bool,
    next_retention_check_ms: i64,
    /// The monotonic reading of the last step: no later step may read less.
    last_monotonic_ms: i64,
    /// Events counted for the node's metrics ([`Broker::stats`]); nothing decides by them.
    counters: BrokerCounters,
}

/// The partitions of one internal topic hosted here, as its coordinator sees them.
struct InternalPartitionsView<'a> {
    topic: &'static str,
    metadata: &'a ClusterMetadata,
    partitions: &'a BTreeMap<TopicPartition, PartitionState>,
}

impl InternalPartitions for InternalPartitionsView<'_> {
    fn partition_count(&self) -> Option<i32> {
        self.metadata
            .topics
            .get(self.topic)
            .map(|topic| topic.partition_count)
    }

    fn status(&self, index: i32) -> Option<ShardStatus> {
        let state = self
            .partitions
            .get(&TopicPartition::new(self.topic, index))?;
        Some(ShardStatus {
            high_watermark: state.log.high_watermark(),
            epoch: state.replica.epoch(),
            leader: state.replica.is_leader(),
            serves_reads: state.replica.serves_reads(&state.log),
        })
    }
}

/// What the transaction coordinator sees of this node.
struct TxnNodeView<'a> {
    transaction_state: InternalPartitionsView<'a>,
    now: Now,
    controller: &'a Controller,
}

impl<'a> TxnNodeView<'a> {
    fn new(
        now: Now,
        metadata: &'a ClusterMetadata,
        partitions: &'a BTreeMap<TopicPartition, PartitionState>,
        controller: &'a Controller,
    ) -> Self {
        Self {
            transaction_state: InternalPartitionsView {
                topic: TRANSACTION_STATE_TOPIC,
                metadata,
                partitions,
            },
            now,
            controller,
        }
    }
}

impl InternalPartitions for TxnNodeView<'_> {
    fn partition_count(&self) -> Option<i32> {
        self.transaction_state.partition_count()
    }

    fn status(&self, index: i32) -> Option<ShardStatus> {
        self.transaction_state.status(index)
    }
}

impl TransactionNode for TxnNodeView<'_> {
    fn topic_partition_count(&self, topic: &str) -> Option<i32> {
        self.transaction_state
            .metadata
            .topics
            .get(topic)
            .map(|topic| topic.partition_count)
    }

    fn partition_leader(&self, partition: &TopicPartition) -> Option<NodeId> {
        let hosted = hosted_leader(self.transaction_state.partitions, partition);
        self.controller
            .live_leader(partition, hosted, self.now.monotonic_ms)
            .map(|(_, leader)| leader)
    }
}

/// A hosted partition's (leader epoch, leader) as its replica here knows it.
fn hosted_leader(
    partitions: &BTreeMap<TopicPartition, PartitionState>,
    partition: &TopicPartition,
) -> Option<(i32, NodeId)> {
    partitions.get(partition).and_then(|state| {
        state
            .replica
            .leader()
            .map(|leader| (state.replica.epoch(), leader))
    })
}

/// What decides whether a partition's waiters can move: (high watermark, durable end,
/// epoch, leading).
type Progress = (i64, i64, i32, bool);

impl Broker {
    /// Builds the broker from what storage recovered (`Recovery::default()` on a fresh data
    /// directory). The returned outputs (persisting metadata, creating missing partition
    /// directories, deleting orphaned ones, a lone voter's first election) must be executed
    /// before serving.
    pub fn new(
        config: BrokerConfig,
        recovery: Recovery,
        rng_seed: u64,
        now: Now,
    ) -> (Self, Vec<Output>) {
        let rng = StdRng::seed_from_u64(rng_seed);
        let mut outputs = Vec::new();
        let metadata = recovery
            .metadata
            .unwrap_or_else(|| ClusterMetadata::new(String::new(), Vec::new()));
        // Ids below the persisted block end may have been handed out before a crash.
        let node_base = i64::from(config.node_id.max(0)) << PRODUCER_ID_NODE_SHIFT;
        let next_producer_id = metadata.producer_id_block_end.max(node_base);
        let mut internal_logs = recovery.internal_logs;
        let metadata_log = internal_logs
            .remove(&crate::controller::metadata_partition())
            .unwrap_or_default();
        let controller_config = ControllerConfig {
            this_node: crate::metadata::NodeInfo {
                node_id: config.node_id,
                host: config.advertised_host.clone(),
                port: config.advertised_port,
            },
            voters: config.voters.clone(),
            default_partition_count: config.default_partition_count,
            topic_defaults: config.topic_defaults.clone(),
            auto_create_topics: config.auto_create_topics,
            snapshot_interval_bytes: u64::from(config.metadata_segment_bytes / 2),
            election_timeout_max_ms: config.replication.election_timeout_max_ms,
        };
        let metadata_log_start = recovery
            .partitions
            .iter()
            .find(|recovered| recovered.partition == crate::controller::metadata_partition())
            .and_then(|recovered| recovered.segments.first())
            .map_or(0, |segment| segment.base_offset);
        let mut controller = Controller::new(controller_config, now.monotonic_ms);
        let corrupt_metadata_log = controller
            .replay_recovered(&metadata, &metadata_log, metadata_log_start)
            .err();
        let group_coordinator = GroupCoordinator::new(config.offsets_retention_ms)
            .with_snapshot_interval_bytes(u64::from(config.offsets_segment_bytes / 2))
            .with_initial_rebalance_delay_ms(config.group_initial_rebalance_delay_ms);
        #[cfg(feature = "defects")]
        let group_coordinator = group_coordinator.with_defect(config.defect);
        let txn_coordinator = TransactionCoordinator::new(TxnCoordinatorConfig {
            transaction_timeout_max_ms: config.transaction_timeout_max_ms,
            transactional_id_expiration_ms: config.transactional_id_expiration_ms,
            offsets_partitions: config.offsets_partitions,
            snapshot_interval_bytes: u64::from(config.transaction_state_segment_bytes / 2),
        });
        #[cfg(feature = "defects")]
        let txn_coordinator = txn_coordinator.with_defect(config.defect);
        let mut broker = Self {
            config,
            metadata,
            partitions: BTreeMap::new(),
            controller,
            group_coordinator,
            txn_coordinator,
            verifications: transactions::Verifications::default(),
            txn_message_ids: 0,
            local_marker_results: Vec::new(),
            internal_topics_requested_ms: BTreeMap::new(),
            rng,
            next_producer_id,
            append_sequence: 0,
            unsynced_partitions: BTreeSet::new(),
            waiting_produces: Vec::new(),
            parked_fetches: Vec::new(),
            waiting_deletes: Vec::new(),
            held_for_cluster_view: Vec::new(),
            progressed: false,
            next_retention_check_ms: now.monotonic_ms,
            last_monotonic_ms: now.monotonic_ms,
            counters: BrokerCounters::default(),
        };
        if let Some(corrupt) = corrupt_metadata_log {
            outputs.push(Output::FailStop(corrupt));
            return (broker, outputs);
        }
        let mut recovered: BTreeMap<TopicPartition, RecoveredPartition> = recovery
            .partitions
            .into_iter()
            .map(|partition| (partition.partition.clone(), partition))
            .collect();
        for partition in broker.hosted_partitions() {
            let found = recovered.remove(&partition);
            let records = internal_logs.remove(&partition);
            broker.open_partition(now, partition, found, records.as_ref(), &mut outputs);
        }
        // Orphans: their topic was deleted (or this node dropped from it) before the
        // directory was removed.
        for partition in recovered.into_keys() {
            outputs.push(Output::Storage(StorageCommand::DeletePartition {
                partition,
            }));
        }
        broker.after_step(now, &mut outputs);
        (broker, outputs)
    }

    /// Feeds one input; returns what the driver must do, in order.
    pub fn step(&mut self, now: Now, input: Input) -> Vec<Output> {
        // A driver passing the wall clock as the monotonic one would let a clock step fire
        // or stall every timer.
        crate::invariant!(
            now.monotonic_ms >= self.last_monotonic_ms,
            "the monotonic clock went back from {} ms to {} ms",
            self.last_monotonic_ms,
            now.monotonic_ms
        );
        self.last_monotonic_ms = now.monotonic_ms;
        let mut outputs = Vec::new();
        match input {
            Input::Request { id, request } => self.on_request(now, id, request, &mut outputs),
            Input::Synced { through_sequence } => {
                self.progressed = true;
                let synced: Vec<TopicPartition> =
                    self.unsynced_partitions.iter().cloned().collect();
                for partition in synced {
                    let still_unsynced = self.partitions.get_mut(&partition).map(|state| {
                        state.log.on_synced(through_sequence);
                        state.log.has_unsynced()
                    });
                    if still_unsynced != Some(true) {
                        self.unsynced_partitions.remove(&partition);
                    }
                    self.drive_replica(now, &partition, &mut outputs, |replica, context| {
                        replica.on_synced(context)
                    });
                }
            }
            Input::Tick => {
                // Long-polls expire on ticks.
                self.progressed = true;
                let due: Vec<TopicPartition> = self
                    .partitions
                    .iter()
                    .filter(|(_, state)| state.replica.next_wakeup_ms() <= now.monotonic_ms)
                    .map(|(partition, _)| partition.clone())
                    .collect();
                for partition in due {
                    self.drive_replica(now, &partition, &mut outputs, |replica, context| {
                        replica.tick(context)
                    });
                }
                self.expire_waiting_produces(now, &mut outputs);
                self.controller_tick(now, &mut outputs);
                self.coordinator_tick(now, &mut outputs);
                self.transactions_tick(now, &mut outputs);
                if now.monotonic_ms >= self.next_retention_check_ms {
                    // Retention and the expiry of idle producers' state.
                    self.next_retention_check_ms = now.monotonic_ms + RETENTION_CHECK_INTERVAL_MS;
                    self.apply_retention(now, &mut outputs);
                }
            }
            Input::Peer { from, message } => self.on_peer(now, from, message, &mut outputs),
        }
        self.after_step(now, &mut outputs);
        outputs
    }

    /// The earliest monotonic time (`Now::monotonic_ms`) at which a `Tick` has work to do.
    pub fn next_wakeup_ms(&self) -> Option<i64> {
        self.parked_fetches
            .iter()
            .map(|fetch| fetch.deadline_ms)
            .chain(
                self.waiting_produces
                    .iter()
                    .map(|produce| produce.terms.deadline_ms),
            )
            .chain(self.waiting_deletes.iter().map(|delete| delete.deadline_ms))
            .chain(
                self.partitions
                    .values()
                    .map(|state| state.replica.next_wakeup_ms()),
            )
            .chain(self.controller.next_wakeup_ms(self.is_registered()))
            .chain(self.group_coordinator.next_wakeup_ms())
            .chain(self.txn_coordinator.next_wakeup_ms())
            .chain(self.verifications.next_deadline_ms())
            .chain(std::iter::once(self.next_retention_check_ms))
            .min()
    }

    pub fn metadata(&self) -> &ClusterMetadata {
        &self.metadata
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
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

    /// A hosted partition's leader epoch and whether this node leads it, for checkers.
    pub fn partition_leadership(&self, partition: &TopicPartition) -> Option<(i32, bool)> {
        self.partitions
            .get(partition)
            .map(|state| (state.replica.epoch(), state.replica.is_leader()))
    }

    /// The groups this node coordinates now, for tests and checkers.
    pub fn coordinated_groups(&self) -> impl Iterator<Item = &str> {
        self.group_coordinator.coordinated_groups()
    }

    /// Every hosted partition, the metadata log included.
    pub fn hosted(&self) -> impl Iterator<Item = &TopicPartition> {
        self.partitions.keys()
    }

    // ----- partitions and their replicas -----

    /// The partitions this node hosts according to the applied metadata: the metadata log
    /// and every partition whose replicas include this node.
    fn hosted_partitions(&self) -> Vec<TopicPartition> {
        let node = self.config.node_id;
        let mut hosted = vec![crate::controller::metadata_partition()];
        for topic in self.metadata.topics.values() {
            for index in 0..topic.partition_count {
                if topic.replicas(index, node).contains(&node) {
                    hosted.push(TopicPartition::new(topic.name.clone(), index));
                }
            }
        }
        hosted
    }

    /// The voters of a partition's replication group.
    fn voters_of(&self, partition: &TopicPartition) -> Vec<NodeId> {
        if partition.topic == METADATA_TOPIC {
            return self.config.voters.clone();
        }
        self.metadata
            .topics
            .get(&partition.topic)
            .map_or_else(Vec::new, |topic| {
                topic.replicas(partition.partition, self.config.node_id)
            })
    }

    /// Starts hosting a partition: from what storage recovered, or empty (then storage is
    /// told to create it). A new partition's preferred leader stands for election at once.
    /// `records` are the stored batches of an offsets partition, for its groups' state.
    fn open_partition(
        &mut self,
        now: Now,
        partition: TopicPartition,
        recovered: Option<RecoveredPartition>,
        records: Option<&bytes::Bytes>,
        outputs: &mut Vec<Output>,
    ) {
        let voters = self.voters_of(&partition);
        if !voters.contains(&self.config.node_id) {
            return;
        }
        let segment_bytes = if partition.topic == METADATA_TOPIC {
            self.config.metadata_segment_bytes
        } else {
            self.topic_config(&partition.topic).segment_bytes
        };
        let mut replica_state = ReplicaState::default();
        let rebuilt = recovered.map(|recovered| {
            replica_state = recovered.replica_state.unwrap_or_default();
            match rebuild_partition(&recovered, self.forget_producers()) {
                Ok(RebuiltPartition {
                    log,
                    producers,
                    txns,
                    dropped,
                }) => {
                    // A gap between segments (a roll persisted, the tail before it lost):
                    // what follows the gap is not part of the log; storage cuts it.
                    if !dropped.is_empty() {
                        tracing::warn!(%partition, ?dropped, "segments after an offset gap dropped");
                        outputs.push(Output::Storage(StorageCommand::Truncate {
                            partition: partition.clone(),
                            truncation: crate::log::Truncation {
                                deleted_segments: dropped,
                                active_segment_base: log.active_segment().base_offset,
                                active_segment_bytes: log.active_segment().size_bytes(),
                            },
                        }));
                    }
                    Ok((log, producers, txns))
                }
                Err(reason) => {
                    outputs.push(Output::FailStop(CorruptData {
                        partition: partition.clone(),
                        offset: reason.offset(),
                        reason: format!("the recovered partition is inconsistent: {reason}"),
                    }));
                    Err(())
                }
            }
        });
        // Corrupt: the node stops; the partition is neither opened nor emptied.
        let Ok(rebuilt) = rebuilt.transpose() else {
            return;
        };
        let fresh = rebuilt.is_none();
        #[cfg_attr(not(feature = "defects"), allow(unused_mut))]
        let (mut log, producers, mut txns) = rebuilt.unwrap_or_else(|| {
            outputs.push(Output::Storage(StorageCommand::CreatePartition {
                partition: partition.clone(),
                base_offset: 0,
            }));
            (
                PartitionLog::new(0),
                ProducerStateTable::default(),
                PartitionTransactions::default(),
            )
        });
        if voters.len() > 1 {
            // What is committed is unknown until a leader says; a lone voter's durable log
            // is all committed.
            log.reset_high_watermark_to_start();
        }
        let mut replica = Replica::new(
            self.config.node_id,
            voters.clone(),
            replica_state,
            self.config.replication.clone(),
            now.monotonic_ms,
            &mut self.rng,
        );
        if fresh && voters.first() == Some(&self.config.node_id) {
            replica.expedite_election(now.monotonic_ms);
        }
        #[cfg(feature = "defects")]
        {
            replica.set_defect(self.config.defect);
            txns.set_defect(self.config.defect);
        }
        let shard = if partition.topic == OFFSETS_TOPIC {
            self.group_coordinator.open_shard(
                partition.partition,
                records,
                log.log_start_offset(),
                log.log_end_offset(),
            )
        } else if partition.topic == TRANSACTION_STATE_TOPIC {
            self.txn_coordinator.open_shard(
                partition.partition,
                records,
                log.log_start_offset(),
                log.log_end_offset(),
            )
        } else {
            Ok(())
        };
        if let Err(corrupt) = shard {
            outputs.push(Output::FailStop(corrupt));
            return;
        }
        let topic_id = self.topic_id_of(&partition.topic);
        self.partitions.insert(
            partition.clone(),
            PartitionState {
                log,
                producers,
                txns,
                replica,
                segment_bytes,
                topic_id,
            },
        );
        self.drive_replica(now, &partition, outputs, |replica, context| {
            if replica.next_wakeup_ms() <= context.now.monotonic_ms {
                replica.tick(context);
            }
        });
    }

    /// The id the view gives `topic` (0 if it has none: the metadata log, or a topic gone).
    fn topic_id_of(&self, topic: &str) -> u128 {
        self.metadata
            .topics
            .get(topic)
            .map_or(0, |topic| topic.topic_id)
    }

    /// Whether a hosted partition holds the data of a topic the view no longer has under
    /// its name (deleted, then created again with a new id).
    fn holds_an_older_topic(&self, partition: &TopicPartition) -> bool {
        self.partitions.get(partition).is_some_and(|state| {
            partition.topic != METADATA_TOPIC
                && state.topic_id != self.topic_id_of(&partition.topic)
        })
    }

    /// Stops hosting a partition and removes its data.
    fn close_partition(&mut self, partition: &TopicPartition, outputs: &mut Vec<Output>) {
        if self.partitions.remove(partition).is_some() {
            self.progressed = true;
            if partition.topic == OFFSETS_TOPIC {
                self.group_coordinator.close_shard(partition.partition);
            } else if partition.topic == TRANSACTION_STATE_TOPIC {
                self.txn_coordinator.close_shard(partition.partition);
            }
            self.unsynced_partitions.remove(partition);
            outputs.push(Output::Storage(StorageCommand::DeletePartition {
                partition: partition.clone(),
            }));
        }
    }

    #[cfg(feature = "defects")]
    fn forget_producers(&self) -> bool {
        self.config.defect == Some(crate::defects::Defect::ForgetProducerStateOnRestart)
    }

    #[cfg(not(feature = "defects"))]
    fn forget_producers(&self) -> bool {
        false
    }

    /// Runs `f` on a hosted partition's replica and turns its effects into outputs.
    fn drive_replica<R>(
        &mut self,
        now: Now,
        partition: &TopicPartition,
        outputs: &mut Vec<Output>,
        f: impl FnOnce(&mut Replica, &mut ReplicaContext<'_>) -> R,
    ) -> Option<R> {
        let state = self.partitions.get_mut(partition)?;
        let before = progress_of(state);
        let mut effects = Vec::new();
        let mut context = ReplicaContext {
            now,
            log: &mut state.log,
            segment_bytes_max: state.segment_bytes,
            append_sequence: &mut self.append_sequence,
            rng: &mut self.rng,
            effects: &mut effects,
        };
        let result = f(&mut state.replica, &mut context);
        let after = progress_of(state);
        if after.0 != before.0 {
            state.txns.on_high_watermark(after.0);
        }
        self.progressed |= after != before;
        for effect in effects {
            self.apply_effect(partition, effect, outputs);
        }
        Some(result)
    }

    fn apply_effect(
        &mut self,
        partition: &TopicPartition,
        effect: Effect,
        outputs: &mut Vec<Output>,
    ) {
        match effect {
            Effect::PersistState(state) => {
                outputs.push(Output::Storage(StorageCommand::PersistReplicaState {
                    partition: partition.clone(),
                    state,
                }))
            }
            Effect::Send { to, message } => outputs.push(Output::Send {
                to,
                message: PeerMessage::Replication {
                    partition: partition.clone(),
                    message,
                },
            }),
            Effect::Rolled { base_offset } => {
                outputs.push(Output::Storage(StorageCommand::RollSegment {
                    partition: partition.clone(),
                    base_offset,
                }))
            }
            Effect::Appended {
                header,
                batch,
                bytes,
                sequence,
            } => {
                if let Some(state) = self.partitions.get_mut(partition) {
                    state.producers.record(&header, batch.base_offset);
                    let control_type = header
                        .is_control()
                        .then(|| crate::records::control_record_type(&bytes))
                        .flatten();
                    state
                        .txns
                        .on_batch(&header, batch.base_offset, control_type);
                }
                let decoded = if partition.topic == METADATA_TOPIC {
                    self.controller.on_appended(
                        &header,
                        batch.base_offset,
                        batch.last_offset,
                        &bytes,
                    )
                } else if partition.topic == OFFSETS_TOPIC {
                    self.group_coordinator.on_appended(
                        partition.partition,
                        &header,
                        batch.base_offset,
                        batch.last_offset,
                        &bytes,
                    )
                } else if partition.topic == TRANSACTION_STATE_TOPIC {
                    self.txn_coordinator.on_appended(
                        partition.partition,
                        &header,
                        batch.base_offset,
                        batch.last_offset,
                        &bytes,
                    )
                } else {
                    Ok(())
                };
                if let Err(corrupt) = decoded {
                    outputs.push(Output::FailStop(corrupt));
                }
                self.unsynced_partitions.insert(partition.clone());
                outputs.push(Output::Storage(StorageCommand::Append {
                    partition: partition.clone(),
                    batch,
                    bytes,
                    sequence,
                }));
            }
            Effect::Truncated { offset, truncation } => {
                if let Some(state) = self.partitions.get_mut(partition) {
                    state.producers.truncate(offset);
                    state.txns.truncate(offset);
                }
                if partition.topic == METADATA_TOPIC {
                    self.controller.on_truncated(offset);
                } else if partition.topic == OFFSETS_TOPIC {
                    self.group_coordinator
                        .on_truncated(partition.partition, offset);
                } else if partition.topic == TRANSACTION_STATE_TOPIC {
                    self.txn_coordinator
                        .on_truncated(partition.partition, offset);
                }
                outputs.push(Output::Storage(StorageCommand::Truncate {
                    partition: partition.clone(),
                    truncation,
                }));
            }
            Effect::ClientStartMoved { offset } => {
                tracing::debug!(%partition, offset, "records deleted below, as another replica holds");
                outputs.push(Output::Storage(StorageCommand::PersistDeletedBelow {
                    partition: partition.clone(),
                    offset,
                }));
            }
            Effect::LogRestarted { base_offset } => {
                // The internal logs are trimmed below their snapshots: a coordinator's view
                // starts over with its log; the metadata view waits for a snapshot.
                let restarted = if partition.topic == METADATA_TOPIC {
                    self.controller.restart_log(&self.metadata, base_offset);
                    Ok(())
                } else if partition.topic == OFFSETS_TOPIC {
                    self.group_coordinator
                        .restart_shard(partition.partition, base_offset)
                } else if partition.topic == TRANSACTION_STATE_TOPIC {
                    self.txn_coordinator
                        .restart_shard(partition.partition, base_offset)
                } else {
                    Ok(())
                };
                if let Err(corrupt) = restarted {
                    outputs.push(Output::FailStop(corrupt));
                }
                if let Some(state) = self.partitions.get_mut(partition) {
                    state.txns.delete_below(base_offset);
                }
                tracing::info!(
                    %partition,
                    base_offset,
                    "this replica's whole log lies below its leader's log start: restarted there"
                );
                outputs.push(Output::Storage(StorageCommand::RestartLog {
                    partition: partition.clone(),
                    base_offset,
                }));
            }
            // Waiters are re-examined after every step; leadership is announced by the
            // controller's tick.
            Effect::RoleChanged => {
                if self
                    .partitions
                    .get(partition)
                    .is_some_and(|state| state.replica.is_leader())
                {
                    // A replica reports a role change as leader only when it became one.
                    self.counters.leaderships_won += 1;
                    self.controller.announce_soon();
                }
            }
        }
    }

    /// After every step: apply what the metadata log committed, then answer the waiters
    /// whose condition now holds (or whose partition changed leader).
    fn after_step(&mut self, now: Now, outputs: &mut Vec<Output>) {
        self.apply_committed_metadata(now, outputs);
        self.release_held_for_cluster_view(now, outputs);
        self.release_admin(now, outputs);
        self.settle_groups(now, outputs);
        self.settle_transactions(now, outputs);
        if !self.waiting_deletes.is_empty() {
            self.release_waiting_deletes(now, outputs);
        }
        if std::mem::take(&mut self.progressed) {
            if !self.waiting_produces.is_empty() {
                self.release_waiting_produces(outputs);
            }
            if !self.parked_fetches.is_empty() {
                self.serve_parked_fetches(now, outputs);
            }
        }
        // Markers this node wrote for its own coordinator: their answers come back now, and
        // what they complete is written in the same step.
        while !self.local_marker_results.is_empty() {
            let results = std::mem::take(&mut self.local_marker_results);
            for (id, results) in results {
                self.on_markers_written(now, id, results, outputs);
            }
            self.settle_transactions(now, outputs);
        }
    }

    fn on_peer(&mut self, now: Now, from: NodeId, message: PeerMessage, outputs: &mut Vec<Output>) {
        if from == self.config.node_id || !self.config.voters.contains(&from) {
            tracing::warn!(from, "message from a node outside the cluster ignored");
            return;
        }
        self.controller.heard_from(from, now.monotonic_ms);
        match message {
            PeerMessage::Replication { partition, message } => {
                // A partition not hosted (yet: its topic's creation is not applied here) drops
                // the message; the leader resends.
                self.drive_replica(now, &partition, outputs, |replica, context| {
                    replica.handle(context, from, message)
                });
            }
            PeerMessage::Leaders(leaders) => self.controller.learn_leaders(from, leaders),
            PeerMessage::Forward { id, op } => self.on_forward(now, from, id, op, outputs),
            PeerMessage::Forwarded { id, results } => self.on_forwarded(now, id, results, outputs),
            message @ (PeerMessage::VerifyTxn { .. }
            | PeerMessage::TxnVerified { .. }
            | PeerMessage::WriteTxnMarkers { .. }
            | PeerMessage::TxnMarkersWritten { .. }) => {
                self.on_transaction_peer(now, from, message, outputs)
            }
        }
    }

    /// Whether `request` is answered from the cluster view (the live brokers, partition
    /// leaders, topics and their configs, coordinators) and so waits until this node knows
    /// the cluster (see the controller's "Knowing the cluster before serving its view").
    /// Requests about this node's own replicas (Produce, Fetch, ListOffsets, ...) are not:
    /// a restarted node leads nothing and says so (NOT_LEADER_OR_FOLLOWER), which sends
    /// the client to Metadata, which waits.
    fn holds_for_cluster_view(&self, request: &Request) -> bool {
        let from_the_view = matches!(
            request,
            Request::Metadata { .. }
                | Request::DescribeConfigs { .. }
                | Request::FindCoordinator { .. }
                | Request::FindTransactionCoordinator { .. }
        );
        from_the_view
            && !self.controller.knows_cluster()
            && self.held_for_cluster_view.len() < HELD_FOR_CLUSTER_VIEW_MAX
    }

    /// After every step: once this node knows the cluster (or its wait is over), the
    /// requests held for it are answered, in arrival order.
    fn release_held_for_cluster_view(&mut self, now: Now, outputs: &mut Vec<Output>) {
        if self.controller.knows_cluster() && self.held_for_cluster_view.is_empty() {
            return;
        }
        let knows = self.check_knows_cluster(now);
        if !knows {
            return;
        }
        for (id, request) in std::mem::take(&mut self.held_for_cluster_view) {
            self.on_request(now, id, request, outputs);
        }
    }

    fn on_request(&mut self, now: Now, id: RequestId, request: Request, outputs: &mut Vec<Output>) {
        if self.holds_for_cluster_view(&request) {
            self.held_for_cluster_view.push((id, request));
            return;
        }
        let response = match request {
            Request::Metadata {
                topics,
                allow_auto_create,
            } => self.metadata_request(now, topics, allow_auto_create, outputs),
            Request::CreateTopics { topics } => {
                self.admin_request(now, id, crate::api::AdminOp::CreateTopics(topics), outputs);
                return;
            }
            Request::DeleteTopics { names } => {
                self.admin_request(now, id, crate::api::AdminOp::DeleteTopics(names), outputs);
                return;
            }
            Request::CreatePartitions { topics } => {
                let op = crate::api::AdminOp::CreatePartitions(topics);
                self.admin_request(now, id, op, outputs);
                return;
            }
            Request::AlterConfigs { topics } => {
                let op = crate::api::AdminOp::AlterConfigs(topics);
                self.admin_request(now, id, op, outputs);
                return;
            }
            Request::DescribeConfigs { topics } => Response::DescribeConfigs(
                topics
                    .iter()
                    .map(|name| self.describe_configs(name))
                    .collect(),
            ),
            Request::Produce {
                acks,
                timeout_ms,
                transactional_id,
                partitions,
            } => {
                let terms = WriteTerms::of_produce(acks, timeout_ms, now);
                self.produce(now, id, terms, transactional_id, partitions, outputs);
                return;
            }
            Request::Fetch {
                max_wait_ms,
                min_bytes,
                max_bytes,
                isolation,
                partitions,
            } => {
                let wait_ms = if self.parked_fetches.len() >= PARKED_FETCHES_MAX {
                    self.counters.parked_fetches_refused += 1;
                    0
                } else {
                    max_wait_ms.clamp(0, self.config.fetch_wait_max_ms)
                };
                let fetch = ParkedFetch {
                    id,
                    deadline_ms: now.monotonic_ms + wait_ms,
                    min_bytes,
                    max_bytes,
                    isolation,
                    partitions,
                };
                if let Some(response) = self.try_fetch(&fetch, now) {
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
                transactional_id: None,
                producer_id,
                producer_epoch,
                ..
            } => self.init_producer_id(producer_id, producer_epoch, outputs),
            request @ (Request::InitProducerId { .. }
            | Request::FindTransactionCoordinator { .. }
            | Request::AddPartitionsToTxn { .. }
            | Request::AddOffsetsToTxn { .. }
            | Request::EndTxn { .. }
            | Request::DescribeTransactions { .. }
            | Request::ListTransactions { .. }
            | Request::DescribeProducers { .. }) => {
                self.transaction_request(now, id, request, outputs);
                return;
            }
            Request::DescribeLogDirs => Response::DescribeLogDirs(self.hosted_partition_sizes()),
            Request::DeleteRecords {
                partitions,
                timeout_ms,
            } => {
                self.delete_records(now, id, timeout_ms, partitions, outputs);
                return;
            }
            Request::OffsetForLeaderEpoch { partitions } => Response::OffsetForLeaderEpoch(
                partitions
                    .into_iter()
                    .map(|query| self.epoch_end(query))
                    .collect(),
            ),
            group_request => {
                self.group_request(now, id, group_request, outputs);
                return;
            }
        };
        outputs.push(Output::Respond { id, response });
    }

    fn topic_config(&self, topic: &str) -> TopicConfig {
        self.metadata.topics.get(topic).map_or_else(
            || self.config.topic_defaults.clone(),
            |topic| topic.config.clone(),
        )
    }

    /// The partition a client may read: led by this node, whose high watermark has caught
    /// up with its epoch (see `Replica::serves_reads`).
    fn readable_partition(&self, partition: &TopicPartition) -> Result<&PartitionState, ErrorCode> {
        let state = self.led_partition(partition)?;
        if state.replica.serves_reads(&state.log) {
            Ok(state)
        } else {
            Err(ErrorCode::NotLeaderOrFollower)
        }
    }

    /// The partition a client may use: hosted, led by this node, and not internal.
    fn led_partition(&self, partition: &TopicPartition) -> Result<&PartitionState, ErrorCode> {
        if partition.topic == METADATA_TOPIC {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        match self.partitions.get(partition) {
            Some(state) if state.replica.is_leader() => Ok(state),
            Some(_) => Err(ErrorCode::NotLeaderOrFollower),
            None if self
                .metadata
                .topics
                .get(&partition.topic)
                .is_some_and(|topic| (0..topic.partition_count).contains(&partition.partition)) =>
            {
                Err(ErrorCode::NotLeaderOrFollower)
            }
            None => Err(ErrorCode::UnknownTopicOrPartition),
        }
    }

    // ----- produce -----

    fn produce(
        &mut self,
        now: Now,
        id: RequestId,
        terms: WriteTerms,
        transactional_id: Option<String>,
        partitions: Vec<ProducePartition>,
        outputs: &mut Vec<Output>,
    ) {
        if terms.acks != Acks::None && self.waiting_produces.len() >= WAITING_PRODUCES_MAX {
            // Refused before anything is written, so a retry cannot duplicate it.
            self.counters.waiting_produces_refused += 1;
            let results = partitions
                .into_iter()
                .map(|produce| {
                    let message = "too many produces wait for their acknowledgement here";
                    produce_error(
                        produce.partition,
                        ErrorCode::RequestTimedOut,
                        Some(message.into()),
                    )
                })
                .collect();
            outputs.push(Output::Respond {
                id,
                response: Response::Produce(results),
            });
            return;
        }
        // A transaction's first append to a partition waits for the coordinator to confirm
        // that the partition is in the producer's open transaction (KIP-890 part 1).
        // A produce of a producer whose earlier produce waits for a verification waits
        // behind it (whole), or it would overtake batches held there and break the
        // producer's sequence in a partition both write to.
        if let Some(transactional_id) = &transactional_id {
            let behind_a_verification = partitions
                .iter()
                .filter_map(|produce| crate::batch::read_header(&produce.records).ok())
                .any(|header| self.verifications.is_verifying(header.producer_id));
            let unverified: Vec<(TopicPartition, i64, i16)> = partitions
                .iter()
                .filter_map(|produce| self.needs_verification(produce, behind_a_verification))
                .collect();
            if !unverified.is_empty() {
                let transactional_id = transactional_id.clone();
                let then = transactions::AfterVerification::Produce {
                    id,
                    terms,
                    partitions,
                };
                self.start_verification(now, &transactional_id, unverified, then, outputs);
                return;
            }
        }
        self.produce_verified(
            now,
            id,
            terms,
            transactional_id.is_some(),
            partitions,
            &BTreeMap::new(),
            outputs,
        );
    }

    /// Appends a produce whose transactional partitions are verified; `refused` holds the
    /// partitions whose verification failed, with the error they answer.
    #[allow(clippy::too_many_arguments)]
    fn produce_verified(
        &mut self,
        now: Now,
        id: RequestId,
        terms: WriteTerms,
        transactional: bool,
        partitions: Vec<ProducePartition>,
        refused: &BTreeMap<TopicPartition, ErrorCode>,
        outputs: &mut Vec<Output>,
    ) {
        let mut results = Vec::with_capacity(partitions.len());
        let mut waits = Vec::new();
        for produce in partitions {
            let (result, wait) = match refused.get(&produce.partition) {
                Some(error) => (produce_error(produce.partition.clone(), *error, None), None),
                None => self.produce_partition(now, &produce, terms.acks, transactional, outputs),
            };
            if let Some((offset, epoch)) = wait {
                waits.push(ProduceWait {
                    partition: produce.partition.clone(),
                    offset,
                    epoch,
                    result: results.len(),
                });
            }
            results.push(result);
        }
        let mut waiting = WaitingProduce {
            reply: WriteReply::Client(id),
            terms,
            results,
            waits,
        };
        let acks = terms.acks;
        // acks=0 gets an immediate answer that the driver does not send: the core still
        // closes every request it was given.
        #[cfg(feature = "defects")]
        let acknowledge_early =
            acks == Acks::All && self.config.defect == Some(crate::defects::Defect::AckBeforeFsync);
        #[cfg(not(feature = "defects"))]
        let acknowledge_early = false;
        if acks == Acks::None || acknowledge_early || self.settle(&mut waiting) {
            self.answer_write(waiting, outputs);
        } else {
            self.waiting_produces.push(waiting);
        }
    }

    /// The (partition, producer id, epoch) of a transactional batch that must be verified
    /// first: one that would open a transaction in a partition this node leads, or any, when
    /// the producer has a produce waiting for a verification here.
    fn needs_verification(
        &self,
        produce: &ProducePartition,
        behind_a_verification: bool,
    ) -> Option<(TopicPartition, i64, i16)> {
        let state = self.led_partition(&produce.partition).ok()?;
        let header = crate::batch::read_header(&produce.records).ok()?;
        if !header.is_transactional() || header.is_control() || !header.has_producer_id() {
            return None;
        }
        if state
            .txns
            .is_open(header.producer_id, header.producer_epoch)
            && !behind_a_verification
        {
            return None;
        }
        // A retry of a batch already written is answered from the producer state, and a
        // fenced epoch at once. Anything else waits for the verification, a batch whose
        // sequence does not follow yet too: it may be pipelined behind a first batch that
        // is itself waiting (its verification answers after the first's).
        match state.producers.check(&header) {
            Ok(SequenceVerdict::Duplicate { .. }) | Err(ErrorCode::InvalidProducerEpoch) => None,
            _ => Some((
                produce.partition.clone(),
                header.producer_id,
                header.producer_epoch,
            )),
        }
    }

    /// Validates, deduplicates and appends one partition's batch. Returns the result and,
    /// when data was written or duplicated, the offset to wait for and the leader epoch.
    fn produce_partition(
        &mut self,
        now: Now,
        produce: &ProducePartition,
        acks: Acks,
        transactional: bool,
        outputs: &mut Vec<Output>,
    ) -> (ProducePartitionResult, Option<(i64, i32)>) {
        let partition = produce.partition.clone();
        let config = self.topic_config(&partition.topic);
        let max_message_bytes = config.max_message_bytes;
        let state = match self.led_partition(&partition) {
            Ok(state) => state,
            Err(error) => return (produce_error(partition, error, None), None),
        };
        let log_start_offset = state.log.log_start_offset();
        let epoch = state.replica.epoch();
        let failed = |error: ErrorCode, message: String| {
            let mut result = produce_error(produce.partition.clone(), error, Some(message));
            result.log_start_offset = log_start_offset;
            (result, None)
        };
        // Kafka checks this before anything else of the batch, and only for acks=all.
        if acks == Acks::All {
            let in_sync = state.replica.in_sync_replicas(now.monotonic_ms).len();
            if in_sync < usize::try_from(config.min_insync_replicas).unwrap_or(usize::MAX) {
                return failed(
                    ErrorCode::NotEnoughReplicas,
                    format!(
                        "{in_sync} in-sync replica(s), fewer than min.insync.replicas {}",
                        config.min_insync_replicas
                    ),
                );
            }
        }
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
        if header.size_bytes > max_message_bytes {
            return failed(
                ErrorCode::MessageTooLarge,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {}",
                    header.size_bytes, max_message_bytes
                ),
            );
        }
        if header.is_control() {
            return failed(
                ErrorCode::InvalidRecord,
                "clients may not write control batches".into(),
            );
        }
        if is_internal_topic(&partition.topic) {
            return failed(
                ErrorCode::InvalidTopicException,
                format!("{} is internal: only the broker writes it", partition.topic),
            );
        }
        if header.is_transactional() != transactional {
            return failed(
                ErrorCode::InvalidRecord,
                "transactional batches come with a transactional id, and only they do".into(),
            );
        }
        if header.is_transactional() && !header.has_producer_id() {
            return failed(
                ErrorCode::InvalidRecord,
                "a transactional batch needs a producer id".into(),
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
        if header.is_transactional()
            && verdict == SequenceVerdict::Append
            && !state
                .txns
                .is_open(header.producer_id, header.producer_epoch)
            && !state
                .txns
                .is_verified(header.producer_id, header.producer_epoch)
        {
            // Only reachable if the verification was voided in between (a marker for the
            // producer): the transaction it was verified for has ended.
            return failed(
                ErrorCode::InvalidTxnState,
                "the transaction ended before this batch could be appended".into(),
            );
        }
        let (base_offset, wait_until) = match verdict {
            SequenceVerdict::Duplicate {
                first_offset,
                last_offset,
            } => (first_offset, last_offset + 1),
            SequenceVerdict::Append => {
                let recompressor = self.config.recompressor;
                let stored = stored_batch(&config, recompressor, header, bytes);
                let (header, bytes) = match stored {
                    Ok(stored) => stored,
                    Err((error, message)) => return failed(error, message),
                };
                let appended = self
                    .drive_replica(now, &partition, outputs, |replica, context| {
                        replica.append_as_leader(context, &header, bytes)
                    })
                    .flatten();
                let Some(appended) = appended else {
                    return (
                        produce_error(partition, ErrorCode::NotLeaderOrFollower, None),
                        None,
                    );
                };
                (appended.base_offset, appended.last_offset + 1)
            }
        };
        let result = ProducePartitionResult {
            partition,
            error: ErrorCode::None,
            message: None,
            base_offset,
            log_append_time_ms: -1,
            log_start_offset,
        };
        (result, Some((wait_until, epoch)))
    }

    /// Settles what can be settled of a waiting produce: a partition whose leader changed
    /// gets NOT_LEADER_OR_FOLLOWER; one that reached its offset is done. Returns whether
    /// nothing is left to wait for.
    fn settle(&self, waiting: &mut WaitingProduce) -> bool {
        let acks = waiting.terms.acks;
        let results = &mut waiting.results;
        waiting.waits.retain(|wait| {
            let state = self
                .partitions
                .get(&wait.partition)
                .filter(|state| state.replica.is_leader() && state.replica.epoch() == wait.epoch);
            let Some(state) = state else {
                let result = &mut results[wait.result];
                result.error = ErrorCode::NotLeaderOrFollower;
                result.message = Some("leadership changed before the write was committed".into());
                result.base_offset = -1;
                return false;
            };
            let reached = match acks {
                Acks::All => state.log.high_watermark(),
                Acks::Leader | Acks::None => state.log.durable_end_offset(),
            };
            reached < wait.offset
        });
        waiting.waits.is_empty()
    }

    /// Answers a settled write: a client's produce response, or a coordinator's marker
    /// results (this node's own coordinator hears them after the step).
    fn answer_write(&mut self, waiting: WaitingProduce, outputs: &mut Vec<Output>) {
        match waiting.reply {
            WriteReply::Client(id) => outputs.push(Output::Respond {
                id,
                response: Response::Produce(waiting.results),
            }),
            WriteReply::Markers { to, id } => {
                let results: Vec<(TopicPartition, ErrorCode)> = waiting
                    .results
                    .into_iter()
                    .map(|result| (result.partition, result.error))
                    .collect();
                if to == self.config.node_id {
                    self.local_marker_results.push((id, results));
                } else {
                    outputs.push(Output::Send {
                        to,
                        message: PeerMessage::TxnMarkersWritten { id, results },
                    });
                }
            }
        }
    }

    /// Answers the produces whose deadline passed: the partitions still waiting get
    /// REQUEST_TIMED_OUT (their batches stay written and may still commit, as in Kafka).
    fn expire_waiting_produces(&mut self, now: Now, outputs: &mut Vec<Output>) {
        if !self
            .waiting_produces
            .iter()
            .any(|produce| produce.terms.deadline_ms <= now.monotonic_ms)
        {
            return;
        }
        let waiting = std::mem::take(&mut self.waiting_produces);
        for mut produce in waiting {
            if self.settle(&mut produce) {
                self.answer_write(produce, outputs);
                continue;
            }
            if produce.terms.deadline_ms > now.monotonic_ms {
                self.waiting_produces.push(produce);
                continue;
            }
            for wait in std::mem::take(&mut produce.waits) {
                let result = &mut produce.results[wait.result];
                result.error = ErrorCode::RequestTimedOut;
                result.message = Some("not acknowledged within the request's timeout".into());
                result.base_offset = -1;
            }
            self.answer_write(produce, outputs);
        }
    }

    fn release_waiting_produces(&mut self, outputs: &mut Vec<Output>) {
        let waiting = std::mem::take(&mut self.waiting_produces);
        for mut produce in waiting {
            if self.settle(&mut produce) {
                self.answer_write(produce, outputs);
            } else {
                self.waiting_produces.push(produce);
            }
        }
    }

    // ----- fetch -----

    /// Answers a fetch if it has enough data, an error, or has reached its deadline.
    fn try_fetch(&self, fetch: &ParkedFetch, now: Now) -> Option<Response> {
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
        let ready = any_error
            || total_bytes >= i64::from(fetch.min_bytes)
            || now.monotonic_ms >= fetch.deadline_ms;
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
            aborted_transactions: Vec::new(),
        };
        let state = match self.readable_partition(&wanted.partition) {
            Ok(state) => state,
            Err(error) => {
                result.error = error;
                return result;
            }
        };
        if let Err(error) = check_leader_epoch(wanted.current_leader_epoch, &state.replica) {
            result.error = error;
            return result;
        }
        let log = &state.log;
        result.high_watermark = log.high_watermark();
        result.last_stable_offset = last_stable_offset(state);
        result.log_start_offset = log.client_start_offset();
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
        if wanted.fetch_offset < log.client_start_offset() || wanted.fetch_offset > readable_end {
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
        if isolation == Isolation::ReadCommitted {
            result.aborted_transactions =
                state.txns.aborted_between(wanted.fetch_offset, upper_bound);
        }
        result
    }

    fn serve_parked_fetches(&mut self, now: Now, outputs: &mut Vec<Output>) {
        let parked = std::mem::take(&mut self.parked_fetches);
        for fetch in parked {
            match self.try_fetch(&fetch, now) {
                Some(response) => outputs.push(Output::Respond {
                    id: fetch.id,
                    response,
                }),
                None => self.parked_fetches.push(fetch),
            }
        }
    }

    // ----- list offsets -----

    /// DescribeLogDirs: each hosted partition's size and lag, the metadata log excepted
    /// (Kafka keeps it apart from the data log directories).
    fn hosted_partition_sizes(&self) -> Vec<crate::api::HostedPartitionSize> {
        self.partitions
            .iter()
            .filter(|(partition, _)| partition.topic != METADATA_TOPIC)
            .map(|(partition, state)| crate::api::HostedPartitionSize {
                partition: partition.clone(),
                size_bytes: state.log.size_bytes(),
                offset_lag: (state.log.high_watermark() - state.log.log_end_offset()).max(0),
            })
            .collect()
    }

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
            leader_epoch: -1,
            batch: None,
        };
        let state = match self.readable_partition(&result.partition) {
            Ok(state) => state,
            Err(error) => {
                result.error = error;
                return result;
            }
        };
        let log = &state.log;
        let upper_bound = match isolation {
            Isolation::ReadUncommitted => log.high_watermark(),
            Isolation::ReadCommitted => last_stable_offset(state),
        };
        let in_batch = |(batch, chunk): (crate::log::BatchEntry, crate::api::ReadChunk)| {
            let offset = batch.base_offset.max(log.client_start_offset());
            (offset, batch.max_timestamp, batch.leader_epoch, Some(chunk))
        };
        let current_epoch = state.replica.epoch();
        let found = match timestamp {
            LIST_OFFSETS_LATEST => Some((upper_bound, -1, current_epoch, None)),
            LIST_OFFSETS_EARLIEST => {
                let start = log.client_start_offset();
                let epoch = log.epoch_at(start).unwrap_or(current_epoch);
                Some((start, -1, epoch, None))
            }
            LIST_OFFSETS_MAX_TIMESTAMP => log.batch_with_max_timestamp(upper_bound).map(in_batch),
            timestamp if timestamp >= 0 => {
                log.batch_at_timestamp(timestamp, upper_bound).map(in_batch)
            }
            _ => {
                result.error = ErrorCode::InvalidRequest;
                None
            }
        };
        if let Some((offset, timestamp, leader_epoch, batch)) = found {
            result.offset = offset;
            result.timestamp = timestamp;
            result.leader_epoch = leader_epoch;
            result.batch = batch;
        }
        result
    }

    /// One partition of an OffsetForLeaderEpoch: the leader's own current epoch ends at its
    /// log end; an older one where the next epoch's first batch begins.
    fn epoch_end(&self, query: crate::api::EpochQuery) -> crate::api::EpochEnd {
        let mut answer = crate::api::EpochEnd {
            partition: query.partition,
            error: ErrorCode::None,
            leader_epoch: -1,
            end_offset: -1,
        };
        let state = match self.readable_partition(&answer.partition) {
            Ok(state) => state,
            Err(error) => {
                answer.error = error;
                return answer;
            }
        };
        if let Err(error) = check_leader_epoch(query.current_leader_epoch, &state.replica) {
            answer.error = error;
            return answer;
        }
        let current = state.replica.epoch();
        let found = if query.leader_epoch >= current {
            Some((current, state.log.log_end_offset()))
        } else {
            state.log.epoch_end(query.leader_epoch)
        };
        if let Some((epoch, end_offset)) = found {
            answer.leader_epoch = epoch;
            answer.end_offset = end_offset;
        }
        answer
    }

    // ----- producer ids -----

    /// InitProducerId of an idempotent producer (a transactional one goes to the
    /// transaction coordinator).
    fn init_producer_id(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        outputs: &mut Vec<Output>,
    ) -> Response {
        // An idempotent producer may ask to bump its epoch (KIP-360) after an error; its id
        // may come from any node.
        if producer_id >= 0 && (0..i16::MAX - 1).contains(&producer_epoch) {
            return Response::InitProducerId {
                error: ErrorCode::None,
                producer_id,
                producer_epoch: producer_epoch + 1,
            };
        }
        Response::InitProducerId {
            error: ErrorCode::None,
            producer_id: self.allocate_producer_id(outputs),
            producer_epoch: 0,
        }
    }

    /// A producer id no node has handed out (the block it comes from is reserved durably
    /// first).
    fn allocate_producer_id(&mut self, outputs: &mut Vec<Output>) -> i64 {
        if self.next_producer_id >= self.metadata.producer_id_block_end {
            self.metadata.producer_id_block_end = self.next_producer_id + PRODUCER_ID_BLOCK_SIZE;
            outputs.push(self.persist_metadata());
        }
        let allocated = self.next_producer_id;
        self.next_producer_id += 1;
        allocated
    }

    /// Appends a batch the broker wrote (internal records, a transaction marker) to a
    /// partition this node leads; returns the offset its commit must reach and the epoch.
    fn append_broker_batch(
        &mut self,
        now: Now,
        partition: &TopicPartition,
        batch: bytes::Bytes,
        outputs: &mut Vec<Output>,
    ) -> Option<(i64, i32)> {
        let header = crate::batch::validate(&batch).expect("an encoded batch is valid");
        let appended = self
            .drive_replica(now, partition, outputs, |replica, context| {
                replica.append_as_leader(context, &header, batch)
            })
            .flatten()?;
        let epoch = self.partitions.get(partition)?.replica.epoch();
        Some((appended.last_offset + 1, epoch))
    }

    fn persist_metadata(&self) -> Output {
        Output::Storage(StorageCommand::PersistMetadata(Box::new(
            self.metadata.clone(),
        )))
    }

    // ----- retention -----

    fn apply_retention(&mut self, now: Now, outputs: &mut Vec<Output>) {
        for (partition, state) in &mut self.partitions {
            let txns = &state.txns;
            let expired = state.producers.expire(
                now.wall_ms,
                self.config.producer_id_expiration_ms,
                |producer_id| txns.open_first_offset(producer_id) >= 0,
            );
            if expired > 0 {
                tracing::debug!(%partition, expired, "idle producers' state expired");
            }
            // An internal log loses the segments wholly below the last snapshot this
            // replica applied (see `internal_log::SnapshotState`).
            let last_snapshot = if partition.topic == METADATA_TOPIC {
                self.controller.last_snapshot()
            } else if partition.topic == OFFSETS_TOPIC {
                self.group_coordinator.last_snapshot(partition.partition)
            } else if partition.topic == TRANSACTION_STATE_TOPIC {
                self.txn_coordinator.last_snapshot(partition.partition)
            } else {
                None
            };
            let doomed = if is_internal_topic(&partition.topic) {
                last_snapshot
                    .map(|start| state.log.segments_below(start))
                    .unwrap_or_default()
            } else {
                let config = self
                    .metadata
                    .topics
                    .get(&partition.topic)
                    .map_or(&self.config.topic_defaults, |topic| &topic.config);
                let expired = state.log.segments_past_retention(
                    now.wall_ms,
                    config.retention_ms,
                    config.retention_bytes,
                );
                // Both are the oldest segments: the longer list covers the other.
                let deleted = match state.log.deleted_below() {
                    Some(_) => state.log.segments_below(state.log.client_start_offset()),
                    None => Vec::new(),
                };
                if deleted.len() > expired.len() {
                    deleted
                } else {
                    expired
                }
            };
            for base_offset in doomed {
                state.log.delete_oldest_segment(base_offset);
                state.txns.delete_below(state.log.log_start_offset());
                tracing::info!(%partition, base_offset, "retention deleted segment");
                outputs.push(Output::Storage(StorageCommand::DeleteSegment {
                    partition: partition.clone(),
                    base_offset,
                }));
            }
        }
    }
}

fn progress_of(state: &PartitionState) -> Progress {
    (
        state.log.high_watermark(),
        state.log.durable_end_offset(),
        state.replica.epoch(),
        state.replica.is_leader(),
    )
}

/// Kafka's leader-epoch check of a fetch: an older epoch than the leader's is fenced (the
/// client's metadata is stale), a newer one is not known here yet.
fn check_leader_epoch(client_epoch: i32, replica: &Replica) -> Result<(), ErrorCode> {
    match client_epoch {
        epoch if epoch < 0 => Ok(()),
        epoch if epoch < replica.epoch() => Err(ErrorCode::FencedLeaderEpoch),
        epoch if epoch > replica.epoch() => Err(ErrorCode::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}

/// The last stable offset: the high watermark, held back by the earliest transaction
/// whose outcome is not committed yet.
fn last_stable_offset(state: &PartitionState) -> i64 {
    state.txns.last_stable_offset(state.log.high_watermark())
}

/// A partition rebuilt from what storage recovered.
struct RebuiltPartition {
    log: PartitionLog,
    producers: ProducerStateTable,
    txns: PartitionTransactions,
    /// Segments dropped after an offset gap (see `PartitionLog::from_recovered`).
    dropped: Vec<i64>,
}

/// Rebuilds a partition's log and, by replaying its batch headers, its producer state
/// (skipped only by the deliberate defect `ForgetProducerStateOnRestart`) and its
/// transactions (open ones, aborted ones: markers report their type).
fn rebuild_partition(
    recovered: &RecoveredPartition,
    forget_producers: bool,
) -> Result<RebuiltPartition, crate::log::LogError> {
    let (mut log, dropped) = PartitionLog::from_recovered(&recovered.segments)?;
    if let Some(offset) = recovered.deleted_below {
        log.restore_deleted_below(offset);
    }
    let mut producers = ProducerStateTable::default();
    let mut txns = PartitionTransactions::default();
    let kept = recovered
        .segments
        .iter()
        .filter(|segment| !dropped.contains(&segment.base_offset));
    for segment in kept {
        for batch in &segment.batches {
            if !forget_producers {
                producers.record(&batch.header, batch.header.base_offset);
            }
            txns.on_batch(&batch.header, batch.header.base_offset, batch.control_type);
        }
    }
    txns.delete_below(log.log_start_offset());
    Ok(RebuiltPartition {
        log,
        producers,
        txns,
        dropped,
    })
}

/// The batch as its topic stores it: in the topic's `compression.type` codec when that is
/// not `producer` and differs from the batch's, as Kafka's broker recompresses (the
/// records, their offsets and timestamps, the producer fields and the transactional flag
/// kept; length and CRC new). The recompressed batch must still fit `max.message.bytes`.
fn stored_batch(
    config: &TopicConfig,
    recompressor: Option<crate::api::Recompressor>,
    header: &crate::batch::BatchHeader,
    bytes: &bytes::Bytes,
) -> Result<(crate::batch::BatchHeader, bytes::Bytes), (ErrorCode, String)> {
    let unchanged = Ok((*header, bytes.clone()));
    let Some(codec) = config.compression_type.batch_codec() else {
        return unchanged;
    };
    if header.codec() == codec {
        return unchanged;
    }
    let Some(crate::api::Recompressor(recompress)) = recompressor else {
        return Err((
            ErrorCode::InvalidRecord,
            "this broker cannot recompress batches".into(),
        ));
    };
    let stored = recompress(bytes, codec).map_err(|reason| {
        (
            ErrorCode::CorruptMessage,
            format!("the batch cannot be recompressed: {reason}"),
        )
    })?;
    let stored_header = crate::batch::validate(&stored).map_err(|error| {
        (
            ErrorCode::CorruptMessage,
            format!("the recompressed batch is invalid: {error}"),
        )
    })?;
    if stored_header.size_bytes > config.max_message_bytes {
        return Err((
            ErrorCode::MessageTooLarge,
            format!(
                "batch of {} bytes once recompressed exceeds max.message.bytes {}",
                stored_header.size_bytes, config.max_message_bytes
            ),
        ));
    }
    Ok((stored_header, stored))
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
