//! The group coordinator: consumer groups whose state lives in a replicated log, as in
//! Kafka's `__consumer_offsets`.
//!
//! The offsets topic ([`OFFSETS_TOPIC`], `offsets_partitions` partitions, replicated like
//! any topic) is created by the controller the first time a client looks for a
//! coordinator. A group belongs to the partition its id hashes to (Kafka's hash, so the
//! mapping is the one Kafka tools expect), and its coordinator is that partition's leader.
//! Each batch of the partition holds JSON-encoded [`GroupRecord`]s:
//! - `Membership`: a group's members, generation and assignments, written whenever the
//!   group settles (`Stable`, after the leader's SyncGroup) or empties;
//! - `Offsets`: an accepted OffsetCommit;
//! - `Deleted`: the group's offsets expired (it stayed empty for the retention period).
//!
//! Every replica of an offsets partition applies its committed records, in offset order, to
//! a materialized view ([`OffsetsShard`]): committed offsets and the last persisted
//! membership of each group. The leader, once its high watermark has reached its epoch (so
//! that everything earlier leaders acknowledged is applied), loads live [`Group`]s from that
//! view and coordinates them; on losing the leadership it drops them, answering held
//! requests NOT_COORDINATOR. Clients then ask FindCoordinator again and reach the new
//! leader, which has loaded the same state from the log.
//!
//! Invariants:
//! - an OffsetCommit is acknowledged only once its record is committed in the offsets
//!   partition, in the epoch it was written in, and applied here; OffsetFetch reads only
//!   applied records, so an acknowledged commit survives any coordinator failover;
//! - a commit is accepted only from a current member of the current generation of a stable
//!   group (or a standalone consumer of a memberless group): checked by `Group::check_commit`
//!   before the record is written;
//! - the replies of an operation that changed a group's persisted membership (a SyncGroup
//!   that settled a generation) are held until that `Membership` record is committed, and
//!   so is every later reply about the group until then (another member's SyncGroup in the
//!   now stable group): a member learns its assignment only once a new coordinator would
//!   load it too, so within a generation no two members are ever given the same partition
//!   by different coordinators (the simulator found the second half missing);
//! - records are applied in offset order, once, on every replica (asserted always, in
//!   `internal_log::CommitQueue`);
//! - only the leader of the group's offsets partition, loaded in its current epoch, answers
//!   group requests; the others answer NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS.

use super::internal_log::{replay_recovered, CommitQueue};
use super::{Broker, METADATA_TOPIC};
use crate::api::{
    AdminOp, CoordinatorResult, CreateTopic, DescribedGroup, ErrorCode, FetchedOffset,
    JoinResponse, ListedGroup, OffsetCommitPartition, Output, Request, RequestId, Response,
    SyncResponse,
};
use crate::batch::BatchHeader;
use crate::groups::{
    CommittedOffset, Group, GroupReply, MembershipSnapshot, OFFSET_METADATA_MAX_BYTES,
};
use crate::metadata::TopicPartition;
use crate::records::{decode_json_records, CONTROL_TYPE_ABORT, CONTROL_TYPE_COMMIT};
use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The internal topic holding group state and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often empty groups are checked for expired offsets.
const EXPIRY_CHECK_INTERVAL_MS: i64 = 1_000;
/// How long a requested creation of an internal topic is left to finish before asking again.
const INTERNAL_TOPIC_REQUEST_INTERVAL_MS: i64 = 1_000;

/// Whether a topic is internal: written by the broker only, never by clients.
pub fn is_internal_topic(topic: &str) -> bool {
    topic == OFFSETS_TOPIC
        || topic == METADATA_TOPIC
        || topic == crate::transactions::TRANSACTION_STATE_TOPIC
}

/// The offsets partition a group belongs to: Kafka's `abs(groupId.hashCode) % partitions`.
pub fn offsets_partition_of(group_id: &str, partition_count: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partition_count.max(1)
}

/// One record of the offsets log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRecord {
    Membership {
        group: String,
        snapshot: MembershipSnapshot,
    },
    Offsets {
        group: String,
        at_ms: i64,
        commits: Vec<(TopicPartition, i64, Option<String>)>,
    },
    Deleted {
        group: String,
    },
    /// A TxnOffsetCommit: written as a transactional batch of the producer, it takes effect
    /// with the transaction's commit marker (and never with an abort).
    TxnOffsets {
        group: String,
        producer_id: i64,
        at_ms: i64,
        commits: Vec<(TopicPartition, i64, Option<String>)>,
    },
}

/// What one batch of an offsets partition holds for the materialized view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OffsetsEntry {
    Record(GroupRecord),
    /// A transaction's marker: the producer's pending transactional offsets commit or go.
    Marker {
        producer_id: i64,
        commit: bool,
    },
}

/// Transactional offsets waiting for their marker: (group, when, commits).
type PendingTxnOffsets = Vec<(String, i64, Vec<(TopicPartition, i64, Option<String>)>)>;

/// A group's committed state, as every replica of its offsets partition applies it.
#[derive(Debug, Clone, Default)]
struct CommittedGroup {
    membership: Option<MembershipSnapshot>,
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
}

/// The groups of one offsets partition hosted here. See the module doc.
#[derive(Debug, Default)]
pub(super) struct OffsetsShard {
    /// Batches not applied yet.
    log: CommitQueue<OffsetsEntry>,
    /// Applied transactional offsets per producer, waiting for the transaction's marker.
    pending_txn_offsets: BTreeMap<i64, PendingTxnOffsets>,
    /// The deliberate defect `CommitOffsetsOnAbort`.
    #[cfg(feature = "defects")]
    commit_offsets_on_abort: bool,
    committed: BTreeMap<String, CommittedGroup>,
    /// The leader epoch in which this node coordinates the shard's groups.
    coordinating: Option<i32>,
    live: BTreeMap<String, Group>,
    /// The membership last written per live group (committed or not): only changes are
    /// written.
    written: BTreeMap<String, MembershipSnapshot>,
    /// When each live group last had a record written (expiry waits past it).
    last_write_ms: BTreeMap<String, i64>,
    /// Each live group's last write: (offset its commit must reach, epoch). Replies that
    /// write nothing still wait for it.
    last_write: BTreeMap<String, (i64, i32)>,
}

/// Replies held until a record is committed.
#[derive(Debug)]
struct HeldReplies {
    shard: i32,
    commit_end: i64,
    epoch: i32,
    replies: Vec<(RequestId, Response)>,
}

/// The coordinator's state on this node.
#[derive(Debug, Default)]
pub(super) struct Coordinator {
    shards: BTreeMap<i32, OffsetsShard>,
    held: Vec<HeldReplies>,
    next_expiry_check_ms: i64,
    /// When each internal topic's creation was last asked for.
    internal_topics_requested_ms: BTreeMap<&'static str, i64>,
}

impl Coordinator {
    /// An offsets partition is hosted here from now on; `recovered` holds its stored
    /// batches (below `log_end`) to replay.
    pub(super) fn open_shard(
        &mut self,
        partition: i32,
        recovered: Option<&Bytes>,
        log_end: i64,
        #[cfg(feature = "defects")] defect: Option<crate::defects::Defect>,
    ) {
        let mut shard = OffsetsShard::default();
        #[cfg(feature = "defects")]
        {
            shard.commit_offsets_on_abort =
                defect == Some(crate::defects::Defect::CommitOffsetsOnAbort);
        }
        replay_recovered(
            OFFSETS_TOPIC,
            partition,
            recovered,
            log_end,
            |header, base, last, bytes| shard.on_appended(header, base, last, bytes),
        );
        self.shards.insert(partition, shard);
    }

    pub(super) fn close_shard(&mut self, partition: i32) {
        self.shards.remove(&partition);
    }

    pub(super) fn on_appended(
        &mut self,
        partition: i32,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) {
        if let Some(shard) = self.shards.get_mut(&partition) {
            shard.on_appended(header, base_offset, last_offset, bytes);
        }
    }

    pub(super) fn on_truncated(&mut self, partition: i32, offset: i64) {
        if let Some(shard) = self.shards.get_mut(&partition) {
            shard.log.truncate(offset);
        }
    }

    pub(super) fn coordinated_groups(&self) -> impl Iterator<Item = &str> {
        self.shards
            .values()
            .filter(|shard| shard.coordinating.is_some())
            .flat_map(|shard| shard.live.keys().map(String::as_str))
    }

    /// The earliest time the coordinator's timers have work.
    pub(super) fn next_wakeup_ms(&self) -> Option<i64> {
        self.shards
            .values()
            .filter(|shard| shard.coordinating.is_some())
            .flat_map(|shard| {
                shard
                    .live
                    .values()
                    .filter_map(Group::next_wakeup_ms)
                    .chain([self.next_expiry_check_ms])
            })
            .min()
    }
}

impl OffsetsShard {
    fn on_appended(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) {
        // Control batches carry no group records (a new leader's epoch marker) or a
        // transaction's marker; all are applied like any batch so that `applied_end` follows
        // the log.
        let entries = if header.is_control() {
            let marker = header
                .is_transactional()
                .then(|| crate::records::control_record_type(bytes))
                .flatten();
            match marker {
                Some(kind @ (CONTROL_TYPE_ABORT | CONTROL_TYPE_COMMIT)) => {
                    vec![OffsetsEntry::Marker {
                        producer_id: header.producer_id,
                        commit: kind == CONTROL_TYPE_COMMIT,
                    }]
                }
                _ => Vec::new(),
            }
        } else {
            decode_json_records::<GroupRecord>(header, bytes)
                .unwrap_or_else(|reason| {
                    tracing::error!(base_offset, %reason, "undecodable offsets batch skipped");
                    Vec::new()
                })
                .into_iter()
                .map(OffsetsEntry::Record)
                .collect()
        };
        self.log.push(base_offset, last_offset, entries);
    }

    /// Applies the batches below `committed`, in order.
    fn apply_committed(&mut self, committed: i64) {
        for entry in self.log.take_committed(committed) {
            match entry {
                OffsetsEntry::Record(record) => self.apply(record),
                OffsetsEntry::Marker {
                    producer_id,
                    commit,
                } => {
                    #[cfg(feature = "defects")]
                    let commit = commit || self.commit_offsets_on_abort;
                    let offsets = self.pending_txn_offsets.remove(&producer_id);
                    for (group, at_ms, commits) in offsets.into_iter().flatten() {
                        if commit {
                            self.apply(GroupRecord::Offsets {
                                group,
                                at_ms,
                                commits,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Whether a transaction holds offsets of the group's partition that await its marker.
    fn has_pending_txn_offset(&self, group_id: &str, partition: &TopicPartition) -> bool {
        self.pending_txn_offsets
            .values()
            .flatten()
            .any(|(group, _, commits)| {
                group == group_id
                    && commits
                        .iter()
                        .any(|(committed, _, _)| committed == partition)
            })
    }

    fn apply(&mut self, record: GroupRecord) {
        match record {
            GroupRecord::TxnOffsets {
                group,
                producer_id,
                at_ms,
                commits,
            } => {
                self.pending_txn_offsets
                    .entry(producer_id)
                    .or_default()
                    .push((group, at_ms, commits));
            }
            GroupRecord::Membership { group, snapshot } => {
                self.committed.entry(group).or_default().membership = Some(snapshot);
            }
            GroupRecord::Offsets {
                group,
                at_ms,
                commits,
            } => {
                let offsets = &mut self.committed.entry(group).or_default().offsets;
                for (partition, offset, metadata) in commits {
                    offsets.insert(
                        partition,
                        CommittedOffset {
                            offset,
                            metadata,
                            committed_ms: at_ms,
                        },
                    );
                }
            }
            GroupRecord::Deleted { group } => {
                self.committed.remove(&group);
            }
        }
    }

    /// Becomes the coordinator of the shard's groups: each is restored from its committed
    /// state, every session starting now.
    fn load(&mut self, epoch: i32, now_ms: i64) {
        let empty = MembershipSnapshot {
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
        };
        self.live.clear();
        self.written.clear();
        self.last_write_ms.clear();
        self.last_write.clear();
        for (group_id, committed) in &self.committed {
            let snapshot = committed.membership.as_ref().unwrap_or(&empty);
            self.live
                .insert(group_id.clone(), Group::restore(snapshot, now_ms));
            if let Some(snapshot) = &committed.membership {
                self.written.insert(group_id.clone(), snapshot.clone());
            }
            let last_commit = committed
                .offsets
                .values()
                .map(|offset| offset.committed_ms)
                .max();
            if let Some(last_commit) = last_commit {
                self.last_write_ms.insert(group_id.clone(), last_commit);
            }
        }
        self.coordinating = Some(epoch);
    }

    /// Stops coordinating: the held requests of every live group are answered.
    fn unload(&mut self) -> Vec<GroupReply> {
        self.coordinating = None;
        self.written.clear();
        self.last_write_ms.clear();
        self.last_write.clear();
        std::mem::take(&mut self.live)
            .into_values()
            .flat_map(|group| group.abandon(ErrorCode::NotCoordinator))
            .collect()
    }
}

/// A group reply as the broker's response.
fn group_response(reply: GroupReply) -> (RequestId, Response) {
    match reply {
        GroupReply::Join { id, response } => (id, Response::JoinGroup(response)),
        GroupReply::Sync { id, response } => (id, Response::SyncGroup(response)),
    }
}

/// The answer a held reply gets instead when its record could not be committed.
fn as_failure(response: Response, error: ErrorCode) -> Response {
    match response {
        Response::JoinGroup(joined) => Response::JoinGroup(join_failure(error, joined.member_id)),
        Response::SyncGroup(_) => Response::SyncGroup(SyncResponse {
            error,
            assignment: Bytes::new(),
        }),
        Response::Heartbeat { .. } => Response::Heartbeat { error },
        Response::LeaveGroup { members, .. } => Response::LeaveGroup {
            error,
            members: members
                .into_iter()
                .map(|(member, _)| (member, error))
                .collect(),
        },
        Response::OffsetCommit(results) => Response::OffsetCommit(
            results
                .into_iter()
                .map(|(partition, _)| (partition, error))
                .collect(),
        ),
        Response::TxnOffsetCommit(results) => Response::TxnOffsetCommit(
            results
                .into_iter()
                .map(|(partition, _)| (partition, error))
                .collect(),
        ),
        other => other,
    }
}

fn join_failure(error: ErrorCode, member_id: String) -> JoinResponse {
    JoinResponse {
        error,
        generation: -1,
        protocol_name: None,
        leader: String::new(),
        member_id,
        members: Vec::new(),
    }
}

/// The same error for every part of a group request.
fn group_error(request: Request, error: ErrorCode) -> Response {
    match request {
        Request::FindCoordinator { groups } => Response::FindCoordinator(
            groups
                .into_iter()
                .map(|group_id| CoordinatorResult {
                    group_id,
                    error,
                    node: None,
                })
                .collect(),
        ),
        Request::JoinGroup { join, .. } => Response::JoinGroup(join_failure(error, join.member_id)),
        Request::SyncGroup { .. } => Response::SyncGroup(SyncResponse {
            error,
            assignment: Bytes::new(),
        }),
        Request::Heartbeat { .. } => Response::Heartbeat { error },
        Request::LeaveGroup { members, .. } => Response::LeaveGroup {
            error,
            members: members.into_iter().map(|member| (member, error)).collect(),
        },
        Request::OffsetCommit { commits, .. } => Response::OffsetCommit(
            commits
                .into_iter()
                .map(|commit| (commit.partition, error))
                .collect(),
        ),
        Request::TxnOffsetCommit { commits, .. } => Response::TxnOffsetCommit(
            commits
                .into_iter()
                .map(|commit| (commit.partition, error))
                .collect(),
        ),
        Request::OffsetFetch { .. } => Response::OffsetFetch {
            error,
            partitions: Vec::new(),
        },
        Request::DescribeGroups { groups } => Response::DescribeGroups(
            groups
                .into_iter()
                .map(|group_id| DescribedGroup {
                    group_id,
                    error,
                    description: None,
                })
                .collect(),
        ),
        Request::ListGroups => Response::ListGroups {
            error,
            groups: Vec::new(),
        },
        other => unreachable!("not a group request: {other:?}"),
    }
}

/// The group a request is about (FindCoordinator, ListGroups and DescribeGroups name none
/// or several).
fn group_of(request: &Request) -> Option<&str> {
    match request {
        Request::JoinGroup { group_id, .. }
        | Request::SyncGroup { group_id, .. }
        | Request::Heartbeat { group_id, .. }
        | Request::LeaveGroup { group_id, .. }
        | Request::OffsetCommit { group_id, .. }
        | Request::OffsetFetch { group_id, .. }
        | Request::TxnOffsetCommit { group_id, .. } => Some(group_id),
        _ => None,
    }
}

impl Broker {
    /// The committed offset of a group's partition as this node applied it (-1 if none),
    /// for tests and checkers.
    pub fn committed_offset_of(&self, group_id: &str, partition: &TopicPartition) -> i64 {
        self.coordinator
            .shards
            .values()
            .filter_map(|shard| shard.committed.get(group_id))
            .filter_map(|group| group.offsets.get(partition))
            .map(|committed| committed.offset)
            .next()
            .unwrap_or(-1)
    }

    /// Whether no transaction holds offsets of the group awaiting its marker here.
    pub fn has_no_pending_txn_offsets(&self, group_id: &str) -> bool {
        self.coordinator.shards.values().all(|shard| {
            shard
                .pending_txn_offsets
                .values()
                .flatten()
                .all(|(group, _, _)| group != group_id)
        })
    }

    /// Every group API. See the module doc.
    pub(super) fn group_request(
        &mut self,
        now_ms: i64,
        id: RequestId,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        let response = match request {
            Request::FindCoordinator { groups } => Response::FindCoordinator(
                self.find_coordinators(now_ms, OFFSETS_TOPIC, groups, outputs),
            ),
            Request::ListGroups => self.list_groups(),
            Request::DescribeGroups { groups } => self.describe_groups(groups),
            request => {
                let Some(group_id) = group_of(&request).map(String::from) else {
                    unreachable!("every other group request names its group")
                };
                if group_id.is_empty() {
                    group_error(request, ErrorCode::InvalidGroupId)
                } else {
                    match self.coordinated_shard(&group_id) {
                        Ok(shard) if matches!(request, Request::TxnOffsetCommit { .. }) => {
                            self.txn_offset_commit(now_ms, id, shard, group_id, request, outputs);
                            return;
                        }
                        Ok(shard) => {
                            self.coordinate(now_ms, id, shard, group_id, request, outputs);
                            return;
                        }
                        Err(error) => group_error(request, error),
                    }
                }
            }
        };
        outputs.push(Output::Respond { id, response });
    }

    /// The offsets partition of a group this node coordinates, or why not.
    fn coordinated_shard(&self, group_id: &str) -> Result<i32, ErrorCode> {
        let topic = self
            .metadata
            .topics
            .get(OFFSETS_TOPIC)
            .ok_or(ErrorCode::NotCoordinator)?;
        let index = offsets_partition_of(group_id, topic.partition_count);
        let shard = self
            .coordinator
            .shards
            .get(&index)
            .ok_or(ErrorCode::NotCoordinator)?;
        if shard.coordinating.is_some() {
            return Ok(index);
        }
        let leading = self
            .partitions
            .get(&TopicPartition::new(OFFSETS_TOPIC, index))
            .is_some_and(|state| state.replica.is_leader());
        Err(if leading {
            ErrorCode::CoordinatorLoadInProgress
        } else {
            ErrorCode::NotCoordinator
        })
    }

    /// FindCoordinator of groups (`OFFSETS_TOPIC`) or transactional ids
    /// (`TRANSACTION_STATE_TOPIC`): the leader of the key's partition of that internal topic,
    /// which is created the first time it is asked for.
    pub(super) fn find_coordinators(
        &mut self,
        now_ms: i64,
        topic: &'static str,
        keys: Vec<String>,
        outputs: &mut Vec<Output>,
    ) -> Vec<CoordinatorResult> {
        let Some(partition_count) = self
            .metadata
            .topics
            .get(topic)
            .map(|topic| topic.partition_count)
        else {
            self.request_internal_topic(now_ms, topic, outputs);
            return keys
                .into_iter()
                .map(|group_id| CoordinatorResult {
                    group_id,
                    error: ErrorCode::CoordinatorNotAvailable,
                    node: None,
                })
                .collect();
        };
        keys.into_iter()
            .map(|group_id| {
                let index = offsets_partition_of(&group_id, partition_count);
                let leader = self.partition_leader(&TopicPartition::new(topic, index), now_ms);
                tracing::debug!(key = %group_id, topic, partition = index, ?leader, "coordinator lookup");
                let node = leader
                    .and_then(|(_, leader)| {
                        self.metadata
                            .nodes
                            .iter()
                            .find(|node| node.node_id == leader)
                            .cloned()
                            .or_else(|| (leader == self.config.node_id).then(|| self.this_node()))
                    });
                CoordinatorResult {
                    group_id,
                    error: if node.is_some() {
                        ErrorCode::None
                    } else {
                        ErrorCode::CoordinatorNotAvailable
                    },
                    node,
                }
            })
            .collect()
    }

    /// Asks the controller to create an internal topic (at most once a second).
    pub(super) fn request_internal_topic(
        &mut self,
        now_ms: i64,
        topic: &'static str,
        outputs: &mut Vec<Output>,
    ) {
        if self
            .coordinator
            .internal_topics_requested_ms
            .get(topic)
            .is_some_and(|at| now_ms < at + INTERNAL_TOPIC_REQUEST_INTERVAL_MS)
        {
            return;
        }
        self.coordinator
            .internal_topics_requested_ms
            .insert(topic, now_ms);
        let partition_count = if topic == OFFSETS_TOPIC {
            self.config.offsets_partitions
        } else {
            self.config.transaction_state_partitions
        };
        let op = AdminOp::CreateTopics(vec![CreateTopic {
            name: topic.to_string(),
            partition_count,
            replication_factor: -1,
            configs: Vec::new(),
            validate_only: false,
        }]);
        self.submit_unanswered(now_ms, op, outputs);
    }

    fn list_groups(&self) -> Response {
        let groups = self
            .coordinator
            .shards
            .values()
            .flat_map(|shard| shard.live.iter())
            .map(|(group_id, group)| ListedGroup {
                group_id: group_id.clone(),
                protocol_type: group.protocol_type().unwrap_or_default().to_string(),
                state: group.state(),
            })
            .collect();
        Response::ListGroups {
            error: ErrorCode::None,
            groups,
        }
    }

    fn describe_groups(&self, groups: Vec<String>) -> Response {
        let described = groups
            .into_iter()
            .map(|group_id| match self.coordinated_shard(&group_id) {
                Ok(index) => {
                    let description = self.coordinator.shards[&index]
                        .live
                        .get(&group_id)
                        .map(Group::describe);
                    DescribedGroup {
                        group_id,
                        error: ErrorCode::None,
                        description,
                    }
                }
                Err(error) => DescribedGroup {
                    group_id,
                    error,
                    description: None,
                },
            })
            .collect();
        Response::DescribeGroups(described)
    }

    /// A request for a group this node coordinates (shard `index`).
    fn coordinate(
        &mut self,
        now_ms: i64,
        id: RequestId,
        index: i32,
        group_id: String,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        let suffix: u64 = self.rng.random();
        let Some(shard) = self.coordinator.shards.get_mut(&index) else {
            return;
        };
        let mut replies: Vec<(RequestId, Response)> = Vec::new();
        let mut records = Vec::new();
        match request {
            Request::JoinGroup { join, .. } => {
                let group = shard.live.entry(group_id.clone()).or_default();
                replies.extend(
                    group
                        .join(now_ms, id, join, suffix)
                        .into_iter()
                        .map(group_response),
                );
            }
            Request::SyncGroup {
                member_id,
                group_instance_id,
                generation,
                assignments,
                ..
            } => {
                let group = shard.live.entry(group_id.clone()).or_default();
                match group.check_instance(&member_id, group_instance_id.as_deref()) {
                    Ok(()) => replies.extend(
                        group
                            .sync(now_ms, id, &member_id, generation, assignments)
                            .into_iter()
                            .map(group_response),
                    ),
                    Err(error) => replies.push((
                        id,
                        Response::SyncGroup(SyncResponse {
                            error,
                            assignment: Bytes::new(),
                        }),
                    )),
                }
            }
            Request::Heartbeat {
                member_id,
                group_instance_id,
                generation,
                ..
            } => {
                let error =
                    shard
                        .live
                        .get_mut(&group_id)
                        .map_or(ErrorCode::UnknownMemberId, |group| {
                            match group.check_instance(&member_id, group_instance_id.as_deref()) {
                                Ok(()) => group.heartbeat(now_ms, &member_id, generation),
                                Err(error) => error,
                            }
                        });
                replies.push((id, Response::Heartbeat { error }));
            }
            Request::LeaveGroup { members, .. } => {
                let mut results = Vec::with_capacity(members.len());
                for member in members {
                    let error = match shard.live.get_mut(&group_id) {
                        Some(group) => {
                            let member_id = if member.member_id.is_empty() {
                                member
                                    .group_instance_id
                                    .as_deref()
                                    .and_then(|instance| group.member_of_instance(instance))
                                    .unwrap_or_default()
                                    .to_string()
                            } else {
                                member.member_id.clone()
                            };
                            let (error, held) = group.leave(now_ms, &member_id);
                            replies.extend(held.into_iter().map(group_response));
                            error
                        }
                        None => ErrorCode::UnknownMemberId,
                    };
                    results.push((member, error));
                }
                replies.push((
                    id,
                    Response::LeaveGroup {
                        error: ErrorCode::None,
                        members: results,
                    },
                ));
            }
            Request::OffsetCommit {
                member_id,
                group_instance_id,
                generation,
                commits,
                ..
            } => {
                let group = shard.live.entry(group_id.clone()).or_default();
                let instance = group_instance_id.as_deref();
                #[cfg(feature = "defects")]
                let fenced = if self.config.defect
                    == Some(crate::defects::Defect::AcceptStaleGenerationCommit)
                    && !member_id.is_empty()
                {
                    Ok(())
                } else {
                    group
                        .check_instance(&member_id, instance)
                        .and_then(|()| group.check_commit(now_ms, &member_id, generation))
                };
                #[cfg(not(feature = "defects"))]
                let fenced = group
                    .check_instance(&member_id, instance)
                    .and_then(|()| group.check_commit(now_ms, &member_id, generation));
                let checked = fenced.and_then(|()| {
                    let too_large = commits.iter().any(|commit| {
                        commit
                            .metadata
                            .as_ref()
                            .is_some_and(|text| text.len() > OFFSET_METADATA_MAX_BYTES)
                    });
                    if too_large {
                        Err(ErrorCode::OffsetMetadataTooLarge)
                    } else {
                        Ok(())
                    }
                });
                let error = checked.err().unwrap_or(ErrorCode::None);
                let results = commits
                    .iter()
                    .map(|commit| (commit.partition.clone(), error))
                    .collect();
                if error == ErrorCode::None && !commits.is_empty() {
                    records.push(GroupRecord::Offsets {
                        group: group_id.clone(),
                        at_ms: now_ms,
                        commits: commits
                            .into_iter()
                            .map(
                                |OffsetCommitPartition {
                                     partition,
                                     offset,
                                     metadata,
                                 }| (partition, offset, metadata),
                            )
                            .collect(),
                    });
                }
                replies.push((id, Response::OffsetCommit(results)));
            }
            Request::OffsetFetch {
                partitions,
                require_stable,
                ..
            } => {
                let committed = shard.committed.get(&group_id);
                let fetched = match partitions {
                    Some(partitions) => partitions
                        .into_iter()
                        .map(|partition| {
                            if require_stable && shard.has_pending_txn_offset(&group_id, &partition)
                            {
                                let mut unstable = fetched_offset(partition, None);
                                unstable.error = ErrorCode::UnstableOffsetCommit;
                                return unstable;
                            }
                            let found = committed.and_then(|group| group.offsets.get(&partition));
                            fetched_offset(partition, found)
                        })
                        .collect(),
                    None => committed
                        .map(|group| {
                            group
                                .offsets
                                .iter()
                                .map(|(partition, found)| {
                                    fetched_offset(partition.clone(), Some(found))
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                replies.push((
                    id,
                    Response::OffsetFetch {
                        error: ErrorCode::None,
                        partitions: fetched,
                    },
                ));
            }
            other => unreachable!("not a coordinated request: {other:?}"),
        }
        self.finish_group_operation(now_ms, index, &group_id, records, replies, outputs);
    }

    /// TxnOffsetCommit: offsets committed inside a transaction. The member is fenced as an
    /// OffsetCommit would be (KIP-447, when the client names its generation); the offsets
    /// partition must be in the producer's open transaction, which the transaction
    /// coordinator confirms before the first such write (as for any partition).
    fn txn_offset_commit(
        &mut self,
        now_ms: i64,
        id: RequestId,
        index: i32,
        group_id: String,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        let Request::TxnOffsetCommit {
            transactional_id,
            producer_id,
            producer_epoch,
            member_id,
            group_instance_id,
            generation,
            commits,
            ..
        } = &request
        else {
            unreachable!("a TxnOffsetCommit")
        };
        let Some(shard) = self.coordinator.shards.get_mut(&index) else {
            return;
        };
        let group = shard.live.entry(group_id).or_default();
        let fenced = if member_id.is_empty() && *generation < 0 {
            Ok(())
        } else {
            group
                .check_instance(member_id, group_instance_id.as_deref())
                .and_then(|()| group.check_commit(now_ms, member_id, *generation))
        };
        let too_large = commits.iter().any(|commit| {
            commit
                .metadata
                .as_ref()
                .is_some_and(|text| text.len() > OFFSET_METADATA_MAX_BYTES)
        });
        let checked = if too_large {
            fenced.and(Err(ErrorCode::OffsetMetadataTooLarge))
        } else {
            fenced
        };
        if let Err(error) = checked {
            outputs.push(Output::Respond {
                id,
                response: group_error(request, error),
            });
            return;
        }
        let partition = TopicPartition::new(OFFSETS_TOPIC, index);
        let open = self
            .partitions
            .get(&partition)
            .is_some_and(|state| state.txns.is_open(*producer_id, *producer_epoch));
        if open {
            self.txn_offset_commit_verified(now_ms, id, request, None, outputs);
        } else {
            let transactional_id = transactional_id.clone();
            let unverified = vec![(partition, *producer_id, *producer_epoch)];
            let then = super::transactions::AfterVerification::TxnOffsetCommit { id, request };
            self.start_verification(now_ms, &transactional_id, unverified, then, outputs);
        }
    }

    /// Writes a verified TxnOffsetCommit as a transactional batch of the producer in the
    /// group's offsets partition (or answers the verification's error); the answer waits for
    /// the record's commit.
    pub(super) fn txn_offset_commit_verified(
        &mut self,
        now_ms: i64,
        id: RequestId,
        request: Request,
        verification_error: Option<ErrorCode>,
        outputs: &mut Vec<Output>,
    ) {
        if let Some(error) = verification_error {
            let error = match error {
                ErrorCode::ProducerFenced
                | ErrorCode::InvalidProducerIdMapping
                | ErrorCode::InvalidTxnState => error,
                // The coordinator was not reached or is busy: the client retries.
                _ => ErrorCode::CoordinatorLoadInProgress,
            };
            outputs.push(Output::Respond {
                id,
                response: group_error(request, error),
            });
            return;
        }
        let Request::TxnOffsetCommit {
            group_id,
            producer_id,
            producer_epoch,
            commits,
            ..
        } = request
        else {
            unreachable!("a TxnOffsetCommit")
        };
        let Ok(index) = self.coordinated_shard(&group_id) else {
            let response = Response::TxnOffsetCommit(
                commits
                    .into_iter()
                    .map(|commit| (commit.partition, ErrorCode::NotCoordinator))
                    .collect(),
            );
            outputs.push(Output::Respond { id, response });
            return;
        };
        let response = Response::TxnOffsetCommit(
            commits
                .iter()
                .map(|commit| (commit.partition.clone(), ErrorCode::None))
                .collect(),
        );
        let record = GroupRecord::TxnOffsets {
            group: group_id.clone(),
            producer_id,
            at_ms: now_ms,
            commits: commits
                .into_iter()
                .map(
                    |OffsetCommitPartition {
                         partition,
                         offset,
                         metadata,
                     }| (partition, offset, metadata),
                )
                .collect(),
        };
        let batch = crate::records::encode_producer_batch(
            &crate::records::encode_json_records(&[record]),
            now_ms,
            crate::records::ATTRIBUTE_TRANSACTIONAL,
            -1,
            crate::records::ProducerFields {
                producer_id,
                producer_epoch,
                base_sequence: -1,
            },
        );
        let partition = TopicPartition::new(OFFSETS_TOPIC, index);
        match self.append_broker_batch(now_ms, &partition, batch, outputs) {
            Some((commit_end, epoch)) => {
                if let Some(shard) = self.coordinator.shards.get_mut(&index) {
                    shard.last_write_ms.insert(group_id.clone(), now_ms);
                    shard.last_write.insert(group_id, (commit_end, epoch));
                }
                self.coordinator.held.push(HeldReplies {
                    shard: index,
                    commit_end,
                    epoch,
                    replies: vec![(id, response)],
                });
            }
            None => outputs.push(Output::Respond {
                id,
                response: as_failure(response, ErrorCode::NotCoordinator),
            }),
        }
    }

    /// After an operation on a group: writes its records (and its membership, if that
    /// changed), then sends the replies, or holds them until what was written is committed.
    fn finish_group_operation(
        &mut self,
        now_ms: i64,
        index: i32,
        group_id: &str,
        mut records: Vec<GroupRecord>,
        replies: Vec<(RequestId, Response)>,
        outputs: &mut Vec<Output>,
    ) {
        let Some(shard) = self.coordinator.shards.get_mut(&index) else {
            return;
        };
        let changed = shard
            .live
            .get(group_id)
            .and_then(Group::snapshot)
            .filter(|snapshot| shard.written.get(group_id) != Some(snapshot));
        if let Some(snapshot) = changed {
            shard.written.insert(group_id.to_string(), snapshot.clone());
            records.push(GroupRecord::Membership {
                group: group_id.to_string(),
                snapshot,
            });
        }
        if records.is_empty() {
            // An answer may reveal what an earlier write changed (a SyncGroup of a group the
            // leader's sync settled answers with the new assignment): it waits for that write.
            let in_flight = shard
                .last_write
                .get(group_id)
                .filter(|(commit_end, _)| *commit_end > shard.log.applied_end())
                .copied();
            match in_flight {
                Some((commit_end, epoch)) => self.coordinator.held.push(HeldReplies {
                    shard: index,
                    commit_end,
                    epoch,
                    replies,
                }),
                None => outputs.extend(
                    replies
                        .into_iter()
                        .map(|(id, response)| Output::Respond { id, response }),
                ),
            }
            return;
        }
        shard.last_write_ms.insert(group_id.to_string(), now_ms);
        match self.append_group_records(now_ms, index, &records, outputs) {
            Some((commit_end, epoch)) => {
                if let Some(shard) = self.coordinator.shards.get_mut(&index) {
                    shard
                        .last_write
                        .insert(group_id.to_string(), (commit_end, epoch));
                }
                self.coordinator.held.push(HeldReplies {
                    shard: index,
                    commit_end,
                    epoch,
                    replies,
                })
            }
            None => outputs.extend(replies.into_iter().map(|(id, response)| Output::Respond {
                id,
                response: as_failure(response, ErrorCode::NotCoordinator),
            })),
        }
    }

    /// Appends records to an offsets partition as its leader; returns the offset its commit
    /// must reach and the epoch, or `None` if this node does not lead it.
    fn append_group_records(
        &mut self,
        now_ms: i64,
        index: i32,
        records: &[GroupRecord],
        outputs: &mut Vec<Output>,
    ) -> Option<(i64, i32)> {
        self.append_internal_batch(
            now_ms,
            &TopicPartition::new(OFFSETS_TOPIC, index),
            records,
            outputs,
        )
    }

    /// After every step: applies what the offsets partitions committed, loads or drops the
    /// groups of the partitions whose leadership changed, and releases held replies.
    pub(super) fn settle_groups(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        let mut abandoned = Vec::new();
        for (index, shard) in &mut self.coordinator.shards {
            let Some(state) = self
                .partitions
                .get(&TopicPartition::new(OFFSETS_TOPIC, *index))
            else {
                continue;
            };
            shard.apply_committed(state.log.high_watermark());
            let leading = (state.replica.is_leader()
                && state.replica.serves_reads(&state.log)
                && shard.log.applied_end() >= state.log.high_watermark())
            .then(|| state.replica.epoch());
            if shard.coordinating != leading {
                if shard.coordinating.is_some() {
                    tracing::info!(partition = index, "no longer coordinating its groups");
                    abandoned.extend(shard.unload());
                }
                if let Some(epoch) = leading {
                    #[cfg(feature = "defects")]
                    if self.config.defect == Some(crate::defects::Defect::LoseOffsetsOnFailover)
                        && epoch > 1
                    {
                        shard.committed.clear();
                    }
                    tracing::info!(
                        partition = index,
                        epoch,
                        groups = shard.committed.len(),
                        "coordinating the groups of an offsets partition"
                    );
                    shard.load(epoch, now_ms);
                }
            }
        }
        outputs.extend(abandoned.into_iter().map(|reply| {
            let (id, response) = group_response(reply);
            Output::Respond { id, response }
        }));
        if self.coordinator.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.coordinator.held);
        for replies in held {
            let shard = self.coordinator.shards.get(&replies.shard);
            let applied = shard.is_some_and(|shard| shard.log.applied_end() >= replies.commit_end);
            let still_leading =
                shard.is_some_and(|shard| shard.coordinating == Some(replies.epoch));
            if applied && still_leading {
                outputs.extend(
                    replies
                        .replies
                        .into_iter()
                        .map(|(id, response)| Output::Respond { id, response }),
                );
            } else if !still_leading {
                outputs.extend(
                    replies
                        .replies
                        .into_iter()
                        .map(|(id, response)| Output::Respond {
                            id,
                            response: as_failure(response, ErrorCode::NotCoordinator),
                        }),
                );
            } else {
                self.coordinator.held.push(replies);
            }
        }
    }

    /// Timers of the coordinated groups: sessions, rebalance deadlines, offsets expiry.
    pub(super) fn coordinator_tick(&mut self, now_ms: i64, outputs: &mut Vec<Output>) {
        let expiry_due = now_ms >= self.coordinator.next_expiry_check_ms;
        if expiry_due {
            self.coordinator.next_expiry_check_ms = now_ms + EXPIRY_CHECK_INTERVAL_MS;
        }
        let retention_ms = self.config.offsets_retention_ms;
        let mut work = Vec::new();
        for (index, shard) in &mut self.coordinator.shards {
            if shard.coordinating.is_none() {
                continue;
            }
            for (group_id, group) in &mut shard.live {
                if group.next_wakeup_ms().is_some_and(|at| at <= now_ms) {
                    let replies: Vec<_> =
                        group.tick(now_ms).into_iter().map(group_response).collect();
                    work.push((*index, group_id.clone(), Vec::new(), replies));
                }
            }
            if !expiry_due {
                continue;
            }
            let expired: Vec<String> = shard
                .live
                .iter()
                .filter(|(group_id, group)| {
                    group.empty_since_ms().is_some_and(|since| {
                        let last_write =
                            shard.last_write_ms.get(*group_id).copied().unwrap_or(since);
                        now_ms >= since.max(last_write) + retention_ms
                    })
                })
                .map(|(group_id, _)| group_id.clone())
                .collect();
            for group_id in expired {
                tracing::info!(group = %group_id, "group offsets expired");
                shard.live.remove(&group_id);
                shard.written.remove(&group_id);
                let known = shard.committed.contains_key(&group_id);
                if known {
                    work.push((
                        *index,
                        group_id.clone(),
                        vec![GroupRecord::Deleted { group: group_id }],
                        Vec::new(),
                    ));
                }
            }
        }
        for (index, group_id, records, replies) in work {
            self.finish_group_operation(now_ms, index, &group_id, records, replies, outputs);
        }
    }
}

fn fetched_offset(partition: TopicPartition, found: Option<&CommittedOffset>) -> FetchedOffset {
    FetchedOffset {
        partition,
        offset: found.map_or(-1, |committed| committed.offset),
        metadata: found.and_then(|committed| committed.metadata.clone()),
        error: ErrorCode::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_hash_to_the_partition_kafka_would_pick() {
        let java_hash = |text: &str| {
            text.encode_utf16().fold(0i32, |hash, unit| {
                hash.wrapping_mul(31).wrapping_add(i32::from(unit))
            })
        };
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("ab"), 97 * 31 + 98);
        assert_eq!(offsets_partition_of("ab", 50), (97 * 31 + 98) % 50);
        assert_eq!(offsets_partition_of("anything", 1), 0);
        for group in ["", "g", "consumer-group-with-a-long-name", "ünïcode"] {
            assert!((0..8).contains(&offsets_partition_of(group, 8)));
        }
    }

    #[test]
    fn records_round_trip_through_json() {
        let record = GroupRecord::Offsets {
            group: "g".into(),
            at_ms: 5,
            commits: vec![(TopicPartition::new("t", 1), 42, Some("meta".into()))],
        };
        let bytes = serde_json::to_vec(&record).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<GroupRecord>(&bytes).ok(),
            Some(record)
        );
    }
}
