//! The broker's inputs and outputs: the whole contract between the core and its driver.
//!
//! Requests here are Kafka's APIs reduced to their meaning (one partition list, no wire
//! versions); the node translates the wire format to and from these types. Storage commands
//! describe what must reach the disk; storage completions come back as inputs.

use crate::batch::BatchHeader;
pub use crate::groups::{
    GroupDescription, GroupState, JoinRequest, JoinResponse, MemberDescription, SyncResponse,
};
use crate::metadata::{ClusterMetadata, NodeInfo, TopicConfig, TopicPartition};
use crate::replication::{NodeId, ReplicationMessage, ReplicationTimings};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// When a step happens, read from the node's two clocks at once.
///
/// Which clock drives what (the one place this is decided):
/// - `monotonic_ms` drives every timer, deadline, timeout and expiry: elections, heartbeats,
///   leader liveness, produce `timeout_ms`, long-poll deadlines, group sessions and
///   rebalances, transaction timeouts, the controller's and the coordinators' periodic work,
///   when retention runs. Throughout the core a bare `now_ms` is this reading.
/// - `wall_ms` only stamps what the broker writes (batch timestamps of internal-log records
///   and markers, offset-commit and transaction timestamps, which are persisted and read by
///   other nodes and clients) and decides time-based retention, which compares record
///   timestamps (wall-clock values set by producers) with it.
///
/// A wall clock may be stepped backwards or forwards (NTP, an operator); a monotonic one
/// never moves back, so a step of the wall clock neither fires nor stalls a timer. A timer
/// whose start was read from disk or from another node (a transaction's start, an offset
/// commit) is restarted on the monotonic clock when this node loads it: monotonic readings
/// mean nothing across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds since an arbitrary origin fixed when the node's process started; never
    /// decreases from one step to the next.
    pub monotonic_ms: i64,
    /// Milliseconds since the Unix epoch, as the node's wall clock says; may jump either way.
    pub wall_ms: i64,
}

impl Now {
    /// Both clocks read `ms`: for tests (and tools) where the two never drift apart.
    pub fn aligned(ms: i64) -> Self {
        Self {
            monotonic_ms: ms,
            wall_ms: ms,
        }
    }
}

/// The driver's handle for a client request, echoed in the response.
pub type RequestId = u64;

/// Kafka error codes the core produces (numeric values are Kafka's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(i16)]
pub enum ErrorCode {
    None = 0,
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    LeaderNotAvailable = 5,
    MessageTooLarge = 10,
    RequestTimedOut = 7,
    NotLeaderOrFollower = 6,
    OffsetMetadataTooLarge = 12,
    CoordinatorLoadInProgress = 14,
    CoordinatorNotAvailable = 15,
    NotCoordinator = 16,
    InvalidTopicException = 17,
    RecordListTooLarge = 18,
    NotEnoughReplicas = 19,
    InvalidRequiredAcks = 21,
    IllegalGeneration = 22,
    InconsistentGroupProtocol = 23,
    InvalidGroupId = 24,
    UnknownMemberId = 25,
    InvalidSessionTimeout = 26,
    RebalanceInProgress = 27,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    InvalidReplicationFactor = 38,
    InvalidReplicaAssignment = 39,
    InvalidConfig = 40,
    NotController = 41,
    InvalidRequest = 42,
    OutOfOrderSequenceNumber = 45,
    DuplicateSequenceNumber = 46,
    InvalidProducerEpoch = 47,
    InvalidTxnState = 48,
    UnsupportedForMessageFormat = 43,
    OperationNotAttempted = 55,
    KafkaStorageError = 56,
    UnknownProducerId = 59,
    NonEmptyGroup = 68,
    GroupIdNotFound = 69,
    GroupSubscribedToTopic = 86,
    MemberIdRequired = 79,
    GroupMaxSizeReached = 81,
    FencedInstanceId = 82,
    UnknownTopicId = 100,
    FencedLeaderEpoch = 74,
    UnknownLeaderEpoch = 76,
    InvalidRecord = 87,
    UnstableOffsetCommit = 88,
    ProducerFenced = 90,
    InvalidProducerIdMapping = 49,
    InvalidTransactionTimeout = 50,
    ConcurrentTransactions = 51,
    TransactionCoordinatorFenced = 52,
    TransactionalIdNotFound = 105,
    UnsupportedEndpointType = 115,
    TransactionAbortable = 120,
}

impl ErrorCode {
    pub fn code(self) -> i16 {
        self as i16
    }
}

/// Where the acknowledgement of a produce waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acks {
    /// acks=0: no response at all.
    None,
    /// acks=1: the leader holds the batch durably.
    Leader,
    /// acks=all (-1): every in-sync replica holds it durably (the leader alone, single node).
    All,
}

/// Which records a fetch or ListOffsets may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

/// Kafka's special ListOffsets timestamps.
pub const LIST_OFFSETS_LATEST: i64 = -1;
pub const LIST_OFFSETS_EARLIEST: i64 = -2;
pub const LIST_OFFSETS_MAX_TIMESTAMP: i64 = -3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopic {
    pub name: String,
    /// -1 takes the broker's default.
    pub partition_count: i32,
    /// -1 takes the default; anything above the node count is refused.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
    pub validate_only: bool,
    /// An explicit replica assignment, `(partition index, replicas)` as the client sent
    /// it (then the partition count and replication factor are -1); empty: placed by the
    /// controller. Never skipped when empty: peers exchange this in bincode, which has no
    /// field names to tell a skipped field.
    #[serde(default)]
    pub assignments: Vec<(i32, Vec<NodeId>)>,
}

/// CreatePartitions for one topic: grow it to `count` partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePartitions {
    pub name: String,
    pub count: i32,
    /// The replicas of each new partition, if the client places them.
    pub assignments: Option<Vec<Vec<NodeId>>>,
    pub validate_only: bool,
}

/// AlterConfigs (`replace`: keys not named go back to their defaults) or
/// IncrementalAlterConfigs of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterTopicConfigs {
    pub name: String,
    pub changes: Vec<crate::metadata::ConfigChange>,
    pub replace: bool,
    pub validate_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    pub partition: TopicPartition,
    /// The record set exactly as the client sent it.
    pub records: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: TopicPartition,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// The leader epoch the client believes current (-1: unknown, no check). An older one
    /// is FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH.
    pub current_leader_epoch: i32,
}

/// A client request, already decoded by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `topics = None` lists every topic; named missing topics auto-create if allowed.
    Metadata {
        topics: Option<Vec<String>>,
        allow_auto_create: bool,
    },
    CreateTopics {
        topics: Vec<CreateTopic>,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    DescribeConfigs {
        topics: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<CreatePartitions>,
    },
    AlterConfigs {
        topics: Vec<AlterTopicConfigs>,
    },
    Produce {
        acks: Acks,
        /// How long the produce may wait for its acknowledgement: past it, the partitions
        /// still waiting are answered REQUEST_TIMED_OUT (the data stays written).
        timeout_ms: i32,
        transactional_id: Option<String>,
        partitions: Vec<ProducePartition>,
    },
    Fetch {
        max_wait_ms: i64,
        min_bytes: i32,
        max_bytes: i32,
        isolation: Isolation,
        partitions: Vec<FetchPartition>,
    },
    ListOffsets {
        isolation: Isolation,
        /// (partition, timestamp or one of the `LIST_OFFSETS_*` constants)
        partitions: Vec<(TopicPartition, i64)>,
    },
    InitProducerId {
        transactional_id: Option<String>,
        /// transaction.timeout.ms of a transactional producer (ignored without an id).
        transaction_timeout_ms: i32,
        /// -1/-1 for a new producer; an existing id and epoch asks for an epoch bump
        /// (KIP-360; for a transactional id, a resume that must match the current epoch).
        producer_id: i64,
        producer_epoch: i16,
        /// The client connection this came on, numbered by the node in the order it
        /// accepted them (0: unknown). See `transactions` on delayed requests.
        connection_id: u64,
    },
    /// Coordinator lookups of transactional ids (key type 1); one result per key.
    FindTransactionCoordinator {
        transactional_ids: Vec<String>,
    },
    /// The partitions join the producer's transaction (starting it if none is open).
    AddPartitionsToTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
        /// The client connection this came on, numbered by the node in the order it
        /// accepted them (0: unknown). See `transactions` on delayed requests.
        connection_id: u64,
    },
    /// The group's offsets partition joins the producer's transaction.
    AddOffsetsToTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group_id: String,
        /// The client connection this came on, numbered by the node in the order it
        /// accepted them (0: unknown). See `transactions` on delayed requests.
        connection_id: u64,
    },
    /// Commit (`commit = true`) or abort the producer's open transaction.
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        /// The client connection this came on, numbered by the node in the order it
        /// accepted them (0: unknown). See `transactions` on delayed requests.
        connection_id: u64,
    },
    /// Offsets committed inside a transaction, sent to the group's coordinator; they take
    /// effect with the transaction's commit marker. `member_id` empty and `generation` -1
    /// when the client sends no group metadata (before v3, or a standalone producer).
    TxnOffsetCommit {
        transactional_id: String,
        group_id: String,
        producer_id: i64,
        producer_epoch: i16,
        member_id: String,
        group_instance_id: Option<String>,
        generation: i32,
        commits: Vec<OffsetCommitPartition>,
    },
    DescribeTransactions {
        transactional_ids: Vec<String>,
    },
    /// This node's coordinated transactions; empty filters match everything.
    ListTransactions {
        state_filters: Vec<String>,
        producer_id_filters: Vec<i64>,
        /// Only transactions open at least this long (v1; -1: no filter).
        min_duration_ms: i64,
    },
    /// The active producers of partitions this node leads.
    DescribeProducers {
        partitions: Vec<TopicPartition>,
    },
    /// Coordinator lookups of consumer groups (key type 0); one result per key.
    FindCoordinator {
        groups: Vec<String>,
    },
    JoinGroup {
        group_id: String,
        join: JoinRequest,
    },
    SyncGroup {
        group_id: String,
        member_id: String,
        /// A static member's `group.instance.id` (v3+): a replaced incarnation is fenced.
        group_instance_id: Option<String>,
        generation: i32,
        /// The leader's assignments (member id, assignment); empty from the others.
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation: i32,
    },
    /// Members leaving, each by member id (or, for a static member, by instance id alone).
    LeaveGroup {
        group_id: String,
        members: Vec<LeavingMember>,
    },
    /// `member_id` empty and `generation` -1: a standalone consumer's commit.
    OffsetCommit {
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation: i32,
        commits: Vec<OffsetCommitPartition>,
    },
    /// `partitions = None` asks for every partition the group committed. With
    /// `require_stable`, a partition with transactional offsets awaiting their marker
    /// answers UNSTABLE_OFFSET_COMMIT.
    OffsetFetch {
        group_id: String,
        partitions: Option<Vec<TopicPartition>>,
        require_stable: bool,
    },
    ListGroups,
    DescribeGroups {
        groups: Vec<String>,
    },
    /// DescribeLogDirs: every partition this node hosts (the metadata log excepted).
    DescribeLogDirs,
    /// DeleteRecords: each partition's records below the offset (-1: the high watermark)
    /// are deleted for clients, on its leader; answered once a majority of each
    /// partition's replicas hold the new start, at most `timeout_ms` later (then
    /// REQUEST_TIMED_OUT for the partitions still waiting).
    DeleteRecords {
        partitions: Vec<(TopicPartition, i64)>,
        timeout_ms: i32,
    },
    /// DeleteGroups, one group per request (the node splits Kafka's list): an empty group
    /// is deleted with its committed offsets; GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP.
    DeleteGroup {
        group_id: String,
    },
    /// OffsetDelete: the group's committed offsets of `partitions` are deleted, except
    /// those of topics a live member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC).
    OffsetDelete {
        group_id: String,
        partitions: Vec<TopicPartition>,
    },
    /// Where each asked epoch ends in the leader's log (consumers check their position
    /// after a leader change; KIP-320).
    OffsetForLeaderEpoch {
        partitions: Vec<EpochQuery>,
    },
}

/// One partition of an OffsetForLeaderEpoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochQuery {
    pub partition: TopicPartition,
    /// The leader epoch the client believes current (-1: no check), as in Fetch.
    pub current_leader_epoch: i32,
    /// The epoch whose end offset is asked.
    pub leader_epoch: i32,
}

/// The answer for one partition: the largest epoch at or below the asked one that wrote
/// to the log, and the offset where it ends (-1 and -1 when no such epoch is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochEnd {
    pub partition: TopicPartition,
    pub error: ErrorCode,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// One member of a LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub partition: TopicPartition,
    pub offset: i64,
    pub metadata: Option<String>,
    /// The leader epoch of the record the offset points after (OffsetCommit v6+,
    /// TxnOffsetCommit v2+); -1 when not given. OffsetFetch returns it.
    pub leader_epoch: i32,
}

/// The coordinator of one group, as FindCoordinator answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorResult {
    pub group_id: String,
    pub error: ErrorCode,
    /// The coordinator's node; `None` with an error.
    pub node: Option<NodeInfo>,
}

/// One partition of an OffsetFetch answer; offset -1 when the group committed none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub partition: TopicPartition,
    pub offset: i64,
    pub metadata: Option<String>,
    /// The committed leader epoch (-1: none).
    pub leader_epoch: i32,
    pub error: ErrorCode,
}

/// One group of a ListGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// One group of a DescribeGroups answer (`description` is `None` with an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: ErrorCode,
    pub description: Option<GroupDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: u128,
    pub error: ErrorCode,
    /// Empty when `error` is set.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition in a Metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub index: i32,
    /// LEADER_NOT_AVAILABLE while no leader is known (then `leader` is -1).
    pub error: ErrorCode,
    pub leader: NodeId,
    pub leader_epoch: i32,
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas as the partition's leader sees them when this node leads it
    /// (`Replica::in_sync_replicas`, what acks=all checks `min.insync.replicas` against);
    /// otherwise every replica: the leader's view is not shared with other nodes.
    pub isr: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicResult {
    pub name: String,
    pub topic_id: u128,
    pub error: ErrorCode,
    pub message: Option<String>,
    pub partition_count: i32,
    pub replication_factor: i16,
    /// (key, value, set on the topic rather than a default).
    pub configs: Vec<(String, String, bool)>,
}

impl Request {
    /// Stamps the client connection a transactional request came on (see
    /// `connection_id`); other requests are returned as they are.
    pub fn on_connection(mut self, connection: u64) -> Self {
        match &mut self {
            Request::InitProducerId { connection_id, .. }
            | Request::AddPartitionsToTxn { connection_id, .. }
            | Request::AddOffsetsToTxn { connection_id, .. }
            | Request::EndTxn { connection_id, .. } => *connection_id = connection,
            _ => {}
        }
        self
    }
}

impl TopicResult {
    /// A result for `name` with no error and nothing filled in yet.
    pub fn empty(name: &str) -> Self {
        Self {
            name: name.to_string(),
            topic_id: 0,
            error: ErrorCode::None,
            message: None,
            partition_count: -1,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResult {
    pub partition: TopicPartition,
    pub error: ErrorCode,
    pub message: Option<String>,
    /// Offset of the first record written (or of the original write, for a duplicate).
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

/// Bytes of one segment that the driver reads from storage to answer a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadChunk {
    pub segment_base_offset: i64,
    pub position: u32,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResult {
    pub partition: TopicPartition,
    pub error: ErrorCode,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Whole batches, in offset order; the driver concatenates their bytes.
    pub chunks: Vec<ReadChunk>,
    /// read_committed only: the aborted transactions whose records may be among the
    /// returned batches (a consumer drops that producer's batches from `first_offset` up to
    /// its abort marker).
    pub aborted_transactions: Vec<AbortedTransaction>,
}

/// An aborted transaction of one partition, as Fetch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// Kafka's transaction states, as the coordinator holds them (see `transactions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    PrepareEpochFence,
    Dead,
}

impl TxnState {
    /// The name Kafka's admin APIs use.
    pub fn kafka_name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
            TxnState::Dead => "Dead",
        }
    }
}

/// One transactional id of a DescribeTransactions answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    /// NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS or TRANSACTIONAL_ID_NOT_FOUND.
    pub error: ErrorCode,
    pub state: TxnState,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the open transaction began (-1 if none).
    pub start_ms: i64,
    pub partitions: Vec<TopicPartition>,
}

/// One transaction of a ListTransactions answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

/// One producer of a partition, as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDescription {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    pub coordinator_epoch: i32,
    /// The first offset of the producer's open transaction here (-1 if none).
    pub current_txn_start_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedProducers {
    pub partition: TopicPartition,
    pub error: ErrorCode,
    pub producers: Vec<ProducerDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsResult {
    pub partition: TopicPartition,
    pub error: ErrorCode,
    pub timestamp: i64,
    pub offset: i64,
    /// Kafka's leader epoch of the answer (-1: none): the batch's epoch for a timestamp or
    /// MAX_TIMESTAMP, the leader's current epoch for latest, the epoch of the batch holding
    /// the log start for earliest (the current epoch if the log holds none). Consumers
    /// keep it with their position and check it with OffsetForLeaderEpoch (KIP-320).
    pub leader_epoch: i32,
    /// For a timestamp or MAX_TIMESTAMP: the batch holding the answer. The core indexes
    /// batches, not records, so `offset` and `timestamp` are then the batch's (its base
    /// offset, or the log start offset if later, and its max timestamp): the node reads
    /// the batch and answers its first record at or after the timestamp asked (with the
    /// max timestamp), at or past `offset`.
    pub batch: Option<ReadChunk>,
}

/// One hosted partition in a DescribeLogDirs answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedPartitionSize {
    pub partition: TopicPartition,
    /// Bytes of its log (the segments' batches).
    pub size_bytes: u64,
    /// How far its log end is behind its high watermark (Kafka's offset lag: 0 on a
    /// leader, and on a follower that holds everything committed).
    pub offset_lag: i64,
}

/// The core's answer to a `Request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Metadata {
        cluster_id: String,
        controller_id: i32,
        nodes: Vec<NodeInfo>,
        topics: Vec<TopicInfo>,
    },
    CreateTopics(Vec<TopicResult>),
    DeleteTopics(Vec<TopicResult>),
    DescribeConfigs(Vec<TopicResult>),
    CreatePartitions(Vec<TopicResult>),
    AlterConfigs(Vec<TopicResult>),
    Produce(Vec<ProducePartitionResult>),
    Fetch(Vec<FetchPartitionResult>),
    ListOffsets(Vec<ListOffsetsResult>),
    InitProducerId {
        error: ErrorCode,
        producer_id: i64,
        producer_epoch: i16,
    },
    FindCoordinator(Vec<CoordinatorResult>),
    JoinGroup(JoinResponse),
    SyncGroup(SyncResponse),
    Heartbeat {
        error: ErrorCode,
    },
    /// The request's error, and each member's.
    LeaveGroup {
        error: ErrorCode,
        members: Vec<(LeavingMember, ErrorCode)>,
    },
    OffsetCommit(Vec<(TopicPartition, ErrorCode)>),
    /// A group-level error (NOT_COORDINATOR, ...) or one result per partition.
    OffsetFetch {
        error: ErrorCode,
        partitions: Vec<FetchedOffset>,
    },
    ListGroups {
        error: ErrorCode,
        groups: Vec<ListedGroup>,
    },
    DescribeGroups(Vec<DescribedGroup>),
    DescribeLogDirs(Vec<HostedPartitionSize>),
    /// Per partition: the error, and the low watermark (the new log start offset).
    DeleteRecords(Vec<(TopicPartition, ErrorCode, i64)>),
    DeleteGroup {
        error: ErrorCode,
    },
    /// A group-level error, or one result per partition.
    OffsetDelete {
        error: ErrorCode,
        partitions: Vec<(TopicPartition, ErrorCode)>,
    },
    OffsetForLeaderEpoch(Vec<EpochEnd>),
    AddPartitionsToTxn(Vec<(TopicPartition, ErrorCode)>),
    AddOffsetsToTxn {
        error: ErrorCode,
    },
    EndTxn {
        error: ErrorCode,
    },
    TxnOffsetCommit(Vec<(TopicPartition, ErrorCode)>),
    DescribeTransactions(Vec<TransactionDescription>),
    ListTransactions {
        error: ErrorCode,
        transactions: Vec<ListedTransaction>,
        /// State filters that name no known state.
        unknown_state_filters: Vec<String>,
    },
    DescribeProducers(Vec<DescribedProducers>),
}

/// What a batch append tells storage, beyond the bytes, so it can keep its indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedBatch {
    pub segment_base_offset: i64,
    /// Byte position of the batch inside its segment.
    pub position: u32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// Epoch of the leader that first wrote the batch: storage writes it into the batch's
    /// partitionLeaderEpoch field (bytes 12..16, outside the CRC), as it writes the base offset.
    pub leader_epoch: i32,
}

/// Work for the storage layer. The driver executes these in order, before it sends any
/// response that follows them in the same output list.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageCommand {
    /// Make the partition's directory and its first segment, at `base_offset`.
    CreatePartition {
        partition: TopicPartition,
        base_offset: i64,
    },
    /// Remove the partition's directory and everything in it.
    DeletePartition { partition: TopicPartition },
    /// Write `bytes` at the end of the active segment, with its first 8 bytes replaced by
    /// the base offset (the in-place patch: the base offset lies outside the CRC). Not
    /// durable until a later sync completes; `sequence` numbers appends in issue order.
    Append {
        partition: TopicPartition,
        batch: AppendedBatch,
        bytes: Bytes,
        sequence: u64,
    },
    /// Close the active segment and start a new, empty one at `base_offset`.
    RollSegment {
        partition: TopicPartition,
        base_offset: i64,
    },
    /// Delete a whole segment (retention); it is below the log start offset now.
    DeleteSegment {
        partition: TopicPartition,
        base_offset: i64,
    },
    /// Cut the partition's log to `truncation` (a divergent tail, in replication): delete
    /// the segments named in `truncation.deleted_segments`, cut the segment
    /// `truncation.active_segment_base` to `truncation.active_segment_bytes` bytes (and its
    /// indexes to match); it becomes the active segment. Durable when done.
    Truncate {
        partition: TopicPartition,
        truncation: crate::log::Truncation,
    },
    /// Drop every segment of the partition and start its log over, empty, at `base_offset`
    /// (a follower behind its leader's log start: everything it held is below what the
    /// leader's retention kept). Durable when done.
    RestartLog {
        partition: TopicPartition,
        base_offset: i64,
    },
    /// Replace the partition's persisted replica state (epoch and vote), durably, before
    /// any later `Send` or `Respond` leaves and before any later storage command of this
    /// partition is carried out. A driver may write many partitions' states at once (the
    /// node batches a whole election wave into one write).
    PersistReplicaState {
        partition: TopicPartition,
        state: crate::replication::ReplicaState,
    },
    /// Replace the persisted metadata snapshot, durably, before anything later is sent.
    PersistMetadata(Box<crate::metadata::ClusterMetadata>),
    /// Persist, durably, that clients read nothing of the partition below `offset`
    /// (DeleteRecords), before anything later is sent; recovery returns it
    /// (`RecoveredPartition::deleted_below`).
    PersistDeletedBelow {
        partition: TopicPartition,
        offset: i64,
    },
}

/// A metadata change that only the metadata log's leader (the controller) may make; other
/// nodes forward it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminOp {
    CreateTopics(Vec<CreateTopic>),
    DeleteTopics(Vec<String>),
    CreatePartitions(Vec<CreatePartitions>),
    AlterConfigs(Vec<AlterTopicConfigs>),
    /// A node asks to be listed with its client address.
    RegisterNode(NodeInfo),
}

/// What nodes say to each other (the peer transport carries these, serde-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// A message of one partition's replication group (the metadata log included).
    Replication {
        partition: TopicPartition,
        message: ReplicationMessage,
    },
    /// The partitions the sender leads, with their epochs; sent to every node, so that
    /// nodes without a replica of a partition can still name its leader.
    Leaders(Vec<(TopicPartition, i32)>),
    /// An admin operation for the controller; `id` comes back in `Forwarded`.
    Forward {
        id: u64,
        op: AdminOp,
    },
    Forwarded {
        id: u64,
        results: Vec<TopicResult>,
    },
    /// A partition leader asks a transaction coordinator, before a transaction's first
    /// transactional append to these partitions, whether they belong to the producer's
    /// ongoing transaction (Kafka's KIP-890 part 1 verification).
    VerifyTxn {
        id: u64,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
    },
    /// The coordinator's answer to `VerifyTxn`: one error per partition, and the number the
    /// coordinator gave the ongoing transaction (its markers carry the same number).
    TxnVerified {
        id: u64,
        txn_number: u64,
        results: Vec<(TopicPartition, ErrorCode)>,
    },
    /// A transaction coordinator asks a partition leader to end a transaction there with a
    /// commit or abort marker; the answer comes once each marker is committed (like acks=all).
    WriteTxnMarkers {
        id: u64,
        coordinator_epoch: i32,
        txn_number: u64,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        partitions: Vec<TopicPartition>,
    },
    TxnMarkersWritten {
        id: u64,
        results: Vec<(TopicPartition, ErrorCode)>,
    },
}

/// An input to `Broker::step`.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Request {
        id: RequestId,
        request: Request,
    },
    /// Every append with `sequence <= through_sequence` is durable.
    Synced {
        through_sequence: u64,
    },
    /// Time passed: expire long-polls, apply retention, run replication timers.
    Tick,
    /// A message from another node.
    Peer {
        from: NodeId,
        message: PeerMessage,
    },
}

/// Stored data that is not what this node (or its leader) wrote: an internal-log batch whose
/// records do not decode, a recovered partition whose batches do not follow each other.
/// The node stops rather than skip, delete or rewrite it ([`Output::FailStop`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition {partition}, offset {offset}: {reason}")]
pub struct CorruptData {
    pub partition: TopicPartition,
    /// The first offset found wrong (for a batch, its base offset).
    pub offset: i64,
    pub reason: String,
}

/// An output of `Broker::step`.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Stop the node (after the outputs before this one): stored data is corrupt. Nothing
    /// after it in the same step may be carried out.
    FailStop(CorruptData),
    Storage(StorageCommand),
    Respond {
        id: RequestId,
        response: Response,
    },
    /// Send `message` to node `to`. Replication appends name stored byte ranges
    /// (`Records::Stored`): the driver reads them and sends the bytes inline. Delivery is
    /// best effort: the protocols retry.
    Send {
        to: NodeId,
        message: PeerMessage,
    },
}

/// A batch found on disk at startup, as storage recovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredBatch {
    pub position: u32,
    pub header: BatchHeader,
    /// For a control batch, the type in its record's key (0 abort, 1 commit, 2 leader
    /// change; see `records::control_record_type`): transaction markers rebuild each
    /// partition's transaction index at recovery. `None` for data batches.
    pub control_type: Option<i16>,
}

/// A segment found on disk at startup; its batches are in offset order and CRC-valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSegment {
    pub base_offset: i64,
    pub batches: Vec<RecoveredBatch>,
}

/// A partition found on disk at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredPartition {
    pub partition: TopicPartition,
    /// In base-offset order; the last one is the active segment.
    pub segments: Vec<RecoveredSegment>,
    /// The replica state last persisted for the partition; `None` if never persisted.
    pub replica_state: Option<crate::replication::ReplicaState>,
    /// The offset below which DeleteRecords deleted the records, if it ever did.
    pub deleted_below: Option<i64>,
}

/// Everything storage recovered, as the broker is built from it.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// The last persisted metadata snapshot; `None` on a fresh data directory.
    pub metadata: Option<ClusterMetadata>,
    pub partitions: Vec<RecoveredPartition>,
    /// The batches of each internal partition (the metadata log and the offsets topic's
    /// partitions; see `broker::is_internal_topic`), concatenated in offset order: the core
    /// holds no record bytes, but rebuilds the state these logs hold by replaying them.
    pub internal_logs: std::collections::BTreeMap<TopicPartition, Bytes>,
}

/// Re-encodes one record batch's records with another codec (the attribute codec, 0-4):
/// the same records, header fields and offsets, the batch length and CRC recomputed. Pure
/// computation, supplied by the node (which links the codecs); the core calls it for
/// topics whose `compression.type` is not `producer` (see `metadata::CompressionType`).
#[derive(Clone, Copy)]
pub struct Recompressor(pub fn(&Bytes, u8) -> Result<Bytes, String>);

impl std::fmt::Debug for Recompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recompressor")
    }
}

/// Every node links the same codecs: configurations compare equal whatever the function.
impl PartialEq for Recompressor {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Recompressor {}

/// Configuration of a broker, fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    pub node_id: i32,
    /// Address clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub auto_create_topics: bool,
    pub default_partition_count: i32,
    /// Defaults for topics that set nothing.
    pub topic_defaults: TopicConfig,
    /// Upper bound on a fetch's wait, whatever the client asks.
    pub fetch_wait_max_ms: i64,
    /// Every node of the cluster (this one included): the voters of the metadata log and
    /// the nodes that topics' replicas are assigned to.
    pub voters: Vec<NodeId>,
    pub replication: ReplicationTimings,
    /// Partitions of the offsets topic, `__consumer_offsets`, when it is created.
    pub offsets_partitions: i32,
    /// How long a group's committed offsets outlive its last member (Kafka's
    /// offsets.retention.minutes, default 7 days).
    pub offsets_retention_ms: i64,
    /// How long a rebalance that starts in an empty group waits for more members before
    /// completing, extended by each newcomer up to the rebalance timeout (Kafka's
    /// group.initial.rebalance.delay.ms, default 3 s), on the monotonic clock.
    pub group_initial_rebalance_delay_ms: i64,
    /// segment.bytes of the offsets topic when it is created (Kafka's
    /// offsets.topic.segment.bytes, 100 MiB). Its leaders write a snapshot every half of it
    /// appended, and each replica drops the segments below its last snapshot.
    pub offsets_segment_bytes: u32,
    /// segment.bytes of the metadata log, `__cluster_metadata` (100 MiB, as the other
    /// internal logs; Kafka's metadata.log.segment.bytes is 1 GiB, but it snapshots every
    /// 20 MiB). The controller writes a snapshot every half of it appended, and each
    /// replica drops the segments below its last snapshot.
    pub metadata_segment_bytes: u32,
    /// Partitions of the transaction-state topic, `__transaction_state`, when it is created.
    pub transaction_state_partitions: i32,
    /// segment.bytes of the transaction-state topic when it is created (Kafka's
    /// transaction.state.log.segment.bytes, 100 MiB); snapshots and trimming as for
    /// `offsets_segment_bytes`.
    pub transaction_state_segment_bytes: u32,
    /// The largest transaction.timeout.ms a producer may ask for (Kafka's
    /// transaction.max.timeout.ms, 15 minutes).
    pub transaction_timeout_max_ms: i32,
    /// How long a transactional id outlives its last transaction (Kafka's
    /// transactional.id.expiration.ms, 7 days).
    pub transactional_id_expiration_ms: i64,
    /// How long a partition keeps an idle idempotent producer's state (Kafka's
    /// producer.id.expiration.ms, 1 day); then its next batch gets UNKNOWN_PRODUCER_ID
    /// unless it starts a new sequence.
    pub producer_id_expiration_ms: i64,
    /// Stores batches in a topic's `compression.type`; without it (a core built alone, in
    /// tests) batches are stored as produced and such topics refuse produces.
    pub recompressor: Option<Recompressor>,
    /// A deliberate bug for the simulator's checkers to catch (feature `defects` only).
    #[cfg(feature = "defects")]
    pub defect: Option<crate::defects::Defect>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            auto_create_topics: true,
            default_partition_count: 1,
            topic_defaults: TopicConfig::default(),
            fetch_wait_max_ms: 30_000,
            voters: vec![1],
            replication: ReplicationTimings::default(),
            offsets_partitions: 8,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            group_initial_rebalance_delay_ms: 3_000,
            offsets_segment_bytes: 100 << 20,
            metadata_segment_bytes: 100 << 20,
            transaction_state_partitions: 8,
            transaction_state_segment_bytes: 100 << 20,
            transaction_timeout_max_ms: 15 * 60 * 1000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
            recompressor: None,
            #[cfg(feature = "defects")]
            defect: None,
        }
    }
}
