//! The group coordinator: consumer groups whose state lives in a replicated log, as in
//! Kafka's `__consumer_offsets`. A state machine of its own, driven by the broker (or by a
//! test) without touching the node's partitions: it reads what it needs of them through
//! [`InternalPartitions`] and returns what the node must do as [`GroupOutput`]s.
//!
//! The offsets topic ([`OFFSETS_TOPIC`], `offsets_partitions` partitions, replicated like
//! any topic) is created by the controller the first time a client looks for a
//! coordinator. A group belongs to the partition its id hashes to (Kafka's hash, so the
//! mapping is the one Kafka tools expect), and its coordinator is that partition's leader.
//! Each batch of the partition holds JSON-encoded [`GroupRecord`]s:
//! - `Membership`: a group's members, generation and assignments, written whenever the
//!   group settles (`Stable`, after the leader's SyncGroup) or empties;
//! - `Offsets`: an accepted OffsetCommit;
//! - `Deleted`: the group's offsets expired (it stayed empty for the retention period);
//! - `TxnOffsets`: a TxnOffsetCommit, taking effect with its transaction's commit marker;
//! - `SnapshotStart` / `SnapshotEnd`: around a snapshot of the committed view, restated as
//!   `Membership` and `Offsets` records, which the leader writes every
//!   `snapshot_interval_bytes` appended (when quiescent), so that each replica's retention
//!   deletes the segments below it (`last_snapshot`) and the log stays bounded (see
//!   `offsets_shard`).
//!
//! Every replica of an offsets partition applies its committed records, in offset order, to
//! a materialized view (`OffsetsShard`): committed offsets and the last persisted
//! membership of each group. The leader, once its high watermark has reached its epoch (so
//! that everything earlier leaders acknowledged is applied), loads live [`Group`]s from that
//! view and coordinates them; on losing the leadership it drops them, answering held
//! requests NOT_COORDINATOR. Clients then ask FindCoordinator again and reach the new
//! leader, which has loaded the same state from the log.
//!
//! Clocks (see `api::Now`): sessions, rebalance and pending-member timeouts and offsets
//! expiry run on the monotonic clock; offset commits and the batches are stamped with the
//! wall clock. A loaded group's timers start at its load: every session begins anew, and
//! offsets expiry counts from the load, not from the commits' timestamps (another
//! process's wall clock), so a coordinator failover or restart only ever retains offsets
//! longer.
//!
//! ## Driving it
//! - The node hosts an offsets partition: [`GroupCoordinator::open_shard`] (with the stored
//!   batches to replay); it stops: [`GroupCoordinator::close_shard`].
//! - Every batch appended to a hosted offsets partition (by this coordinator, by
//!   replication, a transaction marker) is reported with [`GroupCoordinator::on_appended`],
//!   every truncation with [`GroupCoordinator::on_truncated`].
//! - Requests go to [`GroupCoordinator::handle_request`] (FindCoordinator excepted: the
//!   node answers where a group lives); timers to [`GroupCoordinator::tick`] by
//!   [`GroupCoordinator::next_wakeup_ms`]; after every step of the node,
//!   [`GroupCoordinator::settle`] applies what was committed, loads or drops groups as
//!   leadership moved, and releases the replies whose records are committed.
//! - The outputs are executed in order. `Append` asks the node to append a batch to an
//!   offsets partition it leads; the node reports the result with
//!   [`GroupCoordinator::appended`] before executing the next output.
//!   `VerifyTxnOffsetCommit` asks the node to confirm with the transaction coordinator that
//!   the offsets partition is in the producer's transaction, then to call
//!   [`GroupCoordinator::txn_offset_commit_verified`].
//!
//! Invariants:
//! - an OffsetCommit is acknowledged only once its record is committed in the offsets
//!   partition, in the epoch it was written in, and applied here; OffsetFetch reads only
//!   applied records, so an acknowledged commit survives any coordinator failover;
//! - offsets are stored only for partitions that exist in the cluster metadata
//!   (`GroupContext::metadata`); the others are answered UNKNOWN_TOPIC_OR_PARTITION, as
//!   Kafka's broker does before its coordinator sees the commit;
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
//! - DeleteGroups deletes only a group without members (NON_EMPTY_GROUP otherwise,
//!   GROUP_ID_NOT_FOUND for one not known), and OffsetDelete never the offsets of a topic a
//!   member may be consuming (GROUP_SUBSCRIBED_TO_TOPIC, `Group::is_subscribed_to`); both
//!   write their record (`Deleted`, `OffsetsDeleted`) and answer once it is committed, so a
//!   later coordinator never loads what was deleted.

mod offsets_shard;
#[cfg(test)]
mod tests;

pub use offsets_shard::GroupRecord;

use crate::api::{
    CoordinatorResult, CorruptData, DescribedGroup, ErrorCode, FetchedOffset, JoinResponse,
    ListedGroup, Now, OffsetCommitPartition, Request, RequestId, Response, SyncResponse,
};
use crate::batch::BatchHeader;
use crate::groups::{CommittedOffset, Group, GroupReply, GroupState, OFFSET_METADATA_MAX_BYTES};
use crate::internal_log::{
    due_snapshots, open_shard, shard_appended, shard_truncated, InternalPartitions,
    SNAPSHOT_INTERVAL_BYTES_DEFAULT,
};
use crate::metadata::{ClusterMetadata, TopicPartition};
use bytes::Bytes;
use offsets_shard::OffsetsShard;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// The internal topic holding group state and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often empty groups are checked for expired offsets.
const EXPIRY_CHECK_INTERVAL_MS: i64 = 1_000;

/// The offsets partition a group belongs to: Kafka's `abs(groupId.hashCode) % partitions`.
pub fn offsets_partition_of(group_id: &str, partition_count: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partition_count.max(1)
}

/// A reply to a client request.
pub type Reply = (RequestId, Response);

/// What the coordinator needs from its node for one call.
pub struct GroupContext<'a> {
    /// Sessions, rebalances and offsets expiry run on `now.monotonic_ms`; the wall clock
    /// only stamps offset commits and the offsets log's batches.
    pub now: Now,
    /// The offsets topic as the node sees it.
    pub offsets: &'a dyn InternalPartitions,
    /// The node's seeded RNG (new member ids).
    pub rng: &'a mut StdRng,
    /// The cluster's topics: offsets are committed only for partitions that exist.
    pub metadata: &'a ClusterMetadata,
}

/// What the node must do for the coordinator, in order.
#[derive(Debug)]
pub enum GroupOutput {
    /// Answer a client request.
    Respond { id: RequestId, response: Response },
    /// Append `batch` (made by the coordinator) to offsets partition `partition` as its
    /// leader, then report the result with [`GroupCoordinator::appended`].
    Append {
        partition: i32,
        batch: Bytes,
        write: GroupWrite,
    },
    /// A TxnOffsetCommit passed the group's checks: the node confirms that offsets
    /// partition `partition` is in the producer's open transaction (asking the transaction
    /// coordinator unless its replica knows), then calls
    /// [`GroupCoordinator::txn_offset_commit_verified`].
    VerifyTxnOffsetCommit {
        id: RequestId,
        partition: i32,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        request: Request,
    },
}

/// A write the coordinator asked for, handed back with its result through
/// [`GroupCoordinator::appended`].
#[derive(Debug)]
pub struct GroupWrite {
    partition: i32,
    /// The group written (none for a snapshot).
    group_id: Option<String>,
    /// When to stamp as the group's last write once the batch is appended (a TxnOffsetCommit;
    /// a group operation stamps it before asking).
    stamp_ms: Option<i64>,
    /// Answers sent once the batch is committed.
    replies: Vec<Reply>,
}

/// Replies held until a record is committed.
#[derive(Debug)]
struct HeldReplies {
    shard: i32,
    commit_end: i64,
    epoch: i32,
    replies: Vec<Reply>,
}

/// The group coordinator of one node. See the module doc.
#[derive(Debug)]
pub struct GroupCoordinator {
    /// How long an empty group's offsets are kept after its last write.
    offsets_retention_ms: i64,
    #[cfg(feature = "defects")]
    defect: Option<crate::defects::Defect>,
    shards: BTreeMap<i32, OffsetsShard>,
    held: Vec<HeldReplies>,
    next_expiry_check_ms: i64,
    snapshot_interval_bytes: u64,
    /// Kafka's group.initial.rebalance.delay.ms (see `Group::set_initial_rebalance_delay_ms`).
    initial_rebalance_delay_ms: i64,
    /// A shard found unable to serve (its log starts past 0 with no snapshot applied): the
    /// node must stop (`take_fail_stop`).
    fail_stop: Option<CorruptData>,
}

impl GroupCoordinator {
    pub fn new(offsets_retention_ms: i64) -> Self {
        Self {
            offsets_retention_ms,
            #[cfg(feature = "defects")]
            defect: None,
            shards: BTreeMap::new(),
            held: Vec::new(),
            next_expiry_check_ms: 0,
            snapshot_interval_bytes: SNAPSHOT_INTERVAL_BYTES_DEFAULT,
            initial_rebalance_delay_ms: 0,
            fail_stop: None,
        }
    }

    /// A rebalance that starts in an empty group waits `delay_ms` for more members first
    /// (Kafka's group.initial.rebalance.delay.ms; 0, the default here, waits not at all).
    pub fn with_initial_rebalance_delay_ms(mut self, delay_ms: i64) -> Self {
        self.initial_rebalance_delay_ms = delay_ms;
        self
    }

    /// Writes a snapshot of an offsets partition every `bytes` appended to it (at least 1).
    pub fn with_snapshot_interval_bytes(mut self, bytes: u64) -> Self {
        self.snapshot_interval_bytes = bytes.max(1);
        self
    }

    /// Runs with a deliberate defect (`AcceptStaleGenerationCommit`, `LoseOffsetsOnFailover`,
    /// `CommitOffsetsOnAbort`); others are ignored here.
    #[cfg(feature = "defects")]
    pub fn with_defect(mut self, defect: Option<crate::defects::Defect>) -> Self {
        self.defect = defect;
        self
    }

    #[cfg(feature = "defects")]
    fn has_defect(&self, defect: crate::defects::Defect) -> bool {
        self.defect == Some(defect)
    }

    // ----- the offsets partitions hosted here -----

    /// An offsets partition is hosted here from now on; `recovered` holds its stored
    /// batches (from `log_start`, below `log_end`) to replay.
    /// A recovered batch that does not decode is corrupt data (the shard is not opened).
    pub fn open_shard(
        &mut self,
        partition: i32,
        recovered: Option<&Bytes>,
        log_start: i64,
        log_end: i64,
    ) -> Result<(), CorruptData> {
        #[cfg_attr(not(feature = "defects"), allow(unused_mut))]
        let mut shard = OffsetsShard::new(log_start);
        #[cfg(feature = "defects")]
        {
            shard.commit_offsets_on_abort =
                self.has_defect(crate::defects::Defect::CommitOffsetsOnAbort);
        }
        open_shard(
            &mut self.shards,
            &TopicPartition::new(OFFSETS_TOPIC, partition),
            recovered,
            log_end,
            shard,
        )
    }

    pub fn close_shard(&mut self, partition: i32) {
        self.shards.remove(&partition);
    }

    /// This replica's log of offsets partition `partition` was dropped and starts over,
    /// empty, at `log_start` (it lay below its leader's log start): so does its view, which
    /// the leader's log rebuilds from its snapshot on.
    pub fn restart_shard(&mut self, partition: i32, log_start: i64) -> Result<(), CorruptData> {
        if self.shards.remove(&partition).is_none() {
            return Ok(());
        }
        self.open_shard(partition, None, log_start, log_start)
    }

    /// Where the last complete snapshot this replica applied of offsets partition
    /// `partition` starts: its segments wholly below may be deleted.
    pub fn last_snapshot(&self, partition: i32) -> Option<i64> {
        self.shards.get(&partition)?.snapshots.last()
    }

    /// A shard that cannot serve what its log says (see `settle`): the node must stop.
    pub fn take_fail_stop(&mut self) -> Option<CorruptData> {
        self.fail_stop.take()
    }

    /// A batch was appended to hosted offsets partition `partition`.
    pub fn on_appended(
        &mut self,
        partition: i32,
        header: &BatchHeader,
        base_offset: i64,
        last_offset: i64,
        bytes: &Bytes,
    ) -> Result<(), CorruptData> {
        shard_appended(
            &mut self.shards,
            &TopicPartition::new(OFFSETS_TOPIC, partition),
            header,
            base_offset,
            last_offset,
            bytes,
        )
    }

    /// Hosted offsets partition `partition` lost its tail from `offset` on.
    pub fn on_truncated(&mut self, partition: i32, offset: i64) {
        shard_truncated(&mut self.shards, partition, offset);
    }

    // ----- what it holds, for the node, tests and checkers -----

    /// The groups coordinated here now.
    pub fn coordinated_groups(&self) -> impl Iterator<Item = &str> {
        self.shards
            .values()
            .filter(|shard| shard.coordinating.is_some())
            .flat_map(|shard| shard.live.keys().map(String::as_str))
    }

    /// The state and member count of each group coordinated here (for the node's metrics).
    pub fn group_summaries(&self) -> impl Iterator<Item = (GroupState, usize)> + '_ {
        self.shards
            .values()
            .filter(|shard| shard.coordinating.is_some())
            .flat_map(|shard| shard.live.values())
            .map(|group| (group.state(), group.member_ids().count()))
    }

    /// The committed offset of a group's partition as applied here (-1 if none).
    pub fn committed_offset(&self, group_id: &str, partition: &TopicPartition) -> i64 {
        self.shards
            .values()
            .filter_map(|shard| shard.committed.get(group_id))
            .filter_map(|group| group.offsets.get(partition))
            .map(|committed| committed.offset)
            .next()
            .unwrap_or(-1)
    }

    /// Whether no transaction holds offsets of the group awaiting its marker here.
    pub fn has_no_pending_txn_offsets(&self, group_id: &str) -> bool {
        self.shards.values().all(|shard| {
            shard
                .pending_txn_offsets
                .values()
                .flatten()
                .all(|(group, _, _, _)| group != group_id)
        })
    }

    /// A live group coordinated here (the model-based tests compare it).
    #[cfg(test)]
    pub(crate) fn live_group(&self, group_id: &str) -> Option<&Group> {
        self.shards
            .values()
            .find_map(|shard| shard.live.get(group_id))
    }

    /// A group's last applied membership (what a new coordinator restores) and its last
    /// written one, committed or not (the model-based tests compare them).
    #[cfg(test)]
    pub(crate) fn memberships(
        &self,
        group_id: &str,
    ) -> (
        Option<&crate::groups::MembershipSnapshot>,
        Option<&crate::groups::MembershipSnapshot>,
    ) {
        let applied = self
            .shards
            .values()
            .filter_map(|shard| shard.committed.get(group_id))
            .find_map(|group| group.membership.as_ref());
        let written = self
            .shards
            .values()
            .find_map(|shard| shard.written.get(group_id));
        (applied, written)
    }

    /// Where hosted offsets partition `partition`'s applied records end.
    #[cfg(test)]
    pub(crate) fn applied_end(&self, partition: i32) -> Option<i64> {
        self.shards
            .get(&partition)
            .map(|shard| shard.log.applied_end())
    }

    /// The replies held until a write's commit, each with the offset that commit must
    /// reach (the model-based tests compare them).
    #[cfg(test)]
    pub(crate) fn held_replies(&self) -> impl Iterator<Item = (i64, &Reply)> {
        self.held.iter().flat_map(|held| {
            held.replies
                .iter()
                .map(move |reply| (held.commit_end, reply))
        })
    }

    /// The earliest time the coordinator's timers have work.
    pub fn next_wakeup_ms(&self) -> Option<i64> {
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

    // ----- requests -----

    /// Every group API but FindCoordinator (answered by the node, which knows where each
    /// offsets partition is led).
    pub fn handle_request(
        &mut self,
        context: &mut GroupContext<'_>,
        id: RequestId,
        request: Request,
    ) -> Vec<GroupOutput> {
        let response = match request {
            Request::ListGroups => self.list_groups(),
            Request::DescribeGroups { groups } => self.describe_groups(context, groups),
            request => {
                let Some(group_id) = group_of(&request).map(String::from) else {
                    unreachable!("every other group request names its group: {request:?}")
                };
                if commits_only_unknown_partitions(&request, context.metadata) {
                    // As Kafka's broker does before it asks its coordinator: nothing of the
                    // group is looked at, nothing is written.
                    group_error(request, ErrorCode::UnknownTopicOrPartition)
                } else if group_id.is_empty() {
                    answer_unknown_partitions(
                        group_error(request, ErrorCode::InvalidGroupId),
                        context.metadata,
                    )
                } else {
                    match self.coordinated_shard(context.offsets, &group_id) {
                        Ok(shard) if matches!(request, Request::TxnOffsetCommit { .. }) => {
                            return self.txn_offset_commit(context, id, shard, group_id, request);
                        }
                        Ok(shard) => return self.coordinate(context, id, shard, group_id, request),
                        Err(error) => {
                            answer_unknown_partitions(group_error(request, error), context.metadata)
                        }
                    }
                }
            }
        };
        vec![GroupOutput::Respond { id, response }]
    }

    /// The offsets partition of a group coordinated here, or why not.
    fn coordinated_shard(
        &self,
        offsets: &dyn InternalPartitions,
        group_id: &str,
    ) -> Result<i32, ErrorCode> {
        let partition_count = offsets.partition_count().ok_or(ErrorCode::NotCoordinator)?;
        let index = offsets_partition_of(group_id, partition_count);
        let shard = self.shards.get(&index).ok_or(ErrorCode::NotCoordinator)?;
        if shard.coordinating.is_some() {
            return Ok(index);
        }
        let leading = offsets.status(index).is_some_and(|status| status.leader);
        Err(if leading {
            ErrorCode::CoordinatorLoadInProgress
        } else {
            ErrorCode::NotCoordinator
        })
    }

    fn list_groups(&self) -> Response {
        let groups = self
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

    fn describe_groups(&self, context: &GroupContext<'_>, groups: Vec<String>) -> Response {
        let described = groups
            .into_iter()
            .map(
                |group_id| match self.coordinated_shard(context.offsets, &group_id) {
                    Ok(index) => {
                        let description =
                            self.shards[&index].live.get(&group_id).map(Group::describe);
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
                },
            )
            .collect();
        Response::DescribeGroups(described)
    }
    /// A request for a group this node coordinates (shard `index`).
    fn coordinate(
        &mut self,
        context: &mut GroupContext<'_>,
        id: RequestId,
        index: i32,
        group_id: String,
        request: Request,
    ) -> Vec<GroupOutput> {
        let now = context.now;
        let now_ms = now.monotonic_ms;
        // Drawn for every coordinated request, as the node always has: the RNG's sequence
        // (and so every later draw) stays what it was.
        let suffix: u64 = context.rng.random();
        #[cfg(feature = "defects")]
        let accept_stale_commit =
            self.has_defect(crate::defects::Defect::AcceptStaleGenerationCommit);
        let Some(shard) = self.shards.get_mut(&index) else {
            return Vec::new();
        };
        let mut replies: Vec<(RequestId, Response)> = Vec::new();
        let mut records = Vec::new();
        match request {
            Request::JoinGroup { join, .. } => {
                let group = shard.live.entry(group_id.clone()).or_default();
                group.set_initial_rebalance_delay_ms(self.initial_rebalance_delay_ms);
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
                let fenced = if accept_stale_commit && !member_id.is_empty() {
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
                let known = known_partitions(commits, context.metadata);
                if error == ErrorCode::None && !known.is_empty() {
                    let (commits, leader_epochs) = offset_entries(known);
                    records.push(GroupRecord::Offsets {
                        group: group_id.clone(),
                        at_ms: now.wall_ms,
                        commits,
                        leader_epochs,
                    });
                }
                let response = Response::OffsetCommit(results);
                replies.push((id, answer_unknown_partitions(response, context.metadata)));
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
            Request::DeleteGroup { .. } => {
                let error = match shard.live.get(&group_id) {
                    None => ErrorCode::GroupIdNotFound,
                    Some(group) if group.state() != GroupState::Empty => ErrorCode::NonEmptyGroup,
                    Some(_) => ErrorCode::None,
                };
                if error == ErrorCode::None {
                    // Written like an expiry: every replica drops the group's committed state,
                    // and a later coordinator never loads it.
                    shard.live.remove(&group_id);
                    shard.written.remove(&group_id);
                    records.push(GroupRecord::Deleted {
                        group: group_id.clone(),
                    });
                }
                replies.push((id, Response::DeleteGroup { error }));
            }
            Request::OffsetDelete { partitions, .. } => {
                let response = match shard.live.get(&group_id) {
                    None => Response::OffsetDelete {
                        error: ErrorCode::GroupIdNotFound,
                        partitions: Vec::new(),
                    },
                    // As Kafka: a group with members that is not a consumer group may lose
                    // no offsets.
                    Some(group)
                        if group.state() != GroupState::Empty
                            && group.protocol_type() != Some("consumer") =>
                    {
                        Response::OffsetDelete {
                            error: ErrorCode::NonEmptyGroup,
                            partitions: Vec::new(),
                        }
                    }
                    Some(group) => {
                        let results: Vec<(TopicPartition, ErrorCode)> = partitions
                            .into_iter()
                            .map(|partition| {
                                let error = if group.is_subscribed_to(&partition.topic) {
                                    ErrorCode::GroupSubscribedToTopic
                                } else {
                                    ErrorCode::None
                                };
                                (partition, error)
                            })
                            .collect();
                        let committed = shard.committed.get(&group_id);
                        let deleted: Vec<TopicPartition> = results
                            .iter()
                            .filter(|(partition, error)| {
                                *error == ErrorCode::None
                                    && committed
                                        .is_some_and(|group| group.offsets.contains_key(partition))
                            })
                            .map(|(partition, _)| partition.clone())
                            .collect();
                        if !deleted.is_empty() {
                            records.push(GroupRecord::OffsetsDeleted {
                                group: group_id.clone(),
                                partitions: deleted,
                            });
                        }
                        Response::OffsetDelete {
                            error: ErrorCode::None,
                            partitions: results,
                        }
                    }
                };
                replies.push((id, response));
            }
            other => unreachable!("not a coordinated request: {other:?}"),
        }
        self.finish_group_operation(now, index, &group_id, records, replies)
    }

    /// TxnOffsetCommit: offsets committed inside a transaction. The member is fenced as an
    /// OffsetCommit would be (KIP-447, when the client names its generation); the offsets
    /// partition must be in the producer's open transaction, which the transaction
    /// coordinator confirms before the first such write (as for any partition).
    fn txn_offset_commit(
        &mut self,
        context: &GroupContext<'_>,
        id: RequestId,
        index: i32,
        group_id: String,
        request: Request,
    ) -> Vec<GroupOutput> {
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
        let now_ms = context.now.monotonic_ms;
        let Some(shard) = self.shards.get_mut(&index) else {
            return Vec::new();
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
            return vec![GroupOutput::Respond {
                id,
                response: answer_unknown_partitions(group_error(request, error), context.metadata),
            }];
        }
        let transactional_id = transactional_id.clone();
        let (producer_id, producer_epoch) = (*producer_id, *producer_epoch);
        vec![GroupOutput::VerifyTxnOffsetCommit {
            id,
            partition: index,
            transactional_id,
            producer_id,
            producer_epoch,
            request,
        }]
    }

    /// Writes a verified TxnOffsetCommit as a transactional batch of the producer in the
    /// group's offsets partition (or answers the verification's error); the answer waits for
    /// the record's commit.
    pub fn txn_offset_commit_verified(
        &mut self,
        context: &GroupContext<'_>,
        id: RequestId,
        request: Request,
        verification_error: Option<ErrorCode>,
    ) -> Vec<GroupOutput> {
        let now = context.now;
        if let Some(error) = verification_error {
            let error = match error {
                ErrorCode::ProducerFenced
                | ErrorCode::InvalidProducerIdMapping
                | ErrorCode::InvalidTxnState => error,
                // The coordinator was not reached or is busy: the client retries.
                _ => ErrorCode::CoordinatorLoadInProgress,
            };
            return vec![GroupOutput::Respond {
                id,
                response: answer_unknown_partitions(group_error(request, error), context.metadata),
            }];
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
        let Ok(index) = self.coordinated_shard(context.offsets, &group_id) else {
            let response = Response::TxnOffsetCommit(
                commits
                    .into_iter()
                    .map(|commit| (commit.partition, ErrorCode::NotCoordinator))
                    .collect(),
            );
            return vec![GroupOutput::Respond {
                id,
                response: answer_unknown_partitions(response, context.metadata),
            }];
        };
        let response = answer_unknown_partitions(
            Response::TxnOffsetCommit(
                commits
                    .iter()
                    .map(|commit| (commit.partition.clone(), ErrorCode::None))
                    .collect(),
            ),
            context.metadata,
        );
        let known = known_partitions(commits, context.metadata);
        if known.is_empty() {
            // Every partition's topic went away since the request arrived: nothing to write.
            return vec![GroupOutput::Respond { id, response }];
        }
        let (commits, leader_epochs) = offset_entries(known);
        let record = GroupRecord::TxnOffsets {
            group: group_id.clone(),
            producer_id,
            at_ms: now.wall_ms,
            commits,
            leader_epochs,
        };
        let batch = crate::records::encode_producer_batch(
            &crate::records::encode_json_records(&[record]),
            now.wall_ms,
            crate::records::ATTRIBUTE_TRANSACTIONAL,
            -1,
            crate::records::ProducerFields {
                producer_id,
                producer_epoch,
                base_sequence: -1,
            },
        );
        vec![GroupOutput::Append {
            partition: index,
            batch,
            write: GroupWrite {
                partition: index,
                group_id: Some(group_id),
                stamp_ms: Some(now.monotonic_ms),
                replies: vec![(id, response)],
            },
        }]
    }

    /// The node appended a write's batch (`Some((offset its commit must reach, epoch))`) or
    /// could not (`None`: it does not lead the partition); returns the replies to send now.
    pub fn appended(&mut self, write: GroupWrite, appended: Option<(i64, i32)>) -> Vec<Reply> {
        let GroupWrite {
            partition,
            group_id,
            stamp_ms,
            replies,
        } = write;
        let Some((commit_end, epoch)) = appended else {
            return replies
                .into_iter()
                .map(|(id, response)| (id, as_failure(response, ErrorCode::NotCoordinator)))
                .collect();
        };
        if let (Some(shard), Some(group_id)) = (self.shards.get_mut(&partition), group_id) {
            if let Some(at_ms) = stamp_ms {
                shard.last_write_ms.insert(group_id.clone(), at_ms);
            }
            shard.last_write.insert(group_id, (commit_end, epoch));
        }
        if replies.is_empty() {
            return Vec::new();
        }
        self.held.push(HeldReplies {
            shard: partition,
            commit_end,
            epoch,
            replies,
        });
        Vec::new()
    }

    /// After an operation on a group: writes its records (and its membership, if that
    /// changed), then sends the replies, or holds them until what was written is committed.
    fn finish_group_operation(
        &mut self,
        now: Now,
        index: i32,
        group_id: &str,
        mut records: Vec<GroupRecord>,
        replies: Vec<Reply>,
    ) -> Vec<GroupOutput> {
        let Some(shard) = self.shards.get_mut(&index) else {
            return Vec::new();
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
            // (That write's result is known here: the node reports each append before this
            // coordinator is called again, and within one call a group's operation that
            // writes nothing never follows one that writes.)
            let in_flight = shard
                .last_write
                .get(group_id)
                .filter(|(commit_end, _)| *commit_end > shard.log.applied_end())
                .copied();
            return match in_flight {
                Some((commit_end, epoch)) => {
                    self.held.push(HeldReplies {
                        shard: index,
                        commit_end,
                        epoch,
                        replies,
                    });
                    Vec::new()
                }
                None => replies
                    .into_iter()
                    .map(|(id, response)| GroupOutput::Respond { id, response })
                    .collect(),
            };
        }
        shard
            .last_write_ms
            .insert(group_id.to_string(), now.monotonic_ms);
        let encoded = crate::records::encode_json_records(&records);
        vec![GroupOutput::Append {
            partition: index,
            batch: crate::records::encode_batch(&encoded, now.wall_ms, 0, -1),
            write: GroupWrite {
                partition: index,
                group_id: Some(group_id.to_string()),
                stamp_ms: None,
                replies,
            },
        }]
    }

    // ----- after every step, and timers -----

    /// After every step of the node: applies what the offsets partitions committed, loads or
    /// drops the groups of the partitions whose leadership changed, and releases held
    /// replies (answered NOT_COORDINATOR if leadership moved before their commit).
    pub fn settle(&mut self, context: &GroupContext<'_>) -> Vec<Reply> {
        let now_ms = context.now.monotonic_ms;
        #[cfg(feature = "defects")]
        let lose_offsets_on_failover =
            self.has_defect(crate::defects::Defect::LoseOffsetsOnFailover);
        let mut replies = Vec::new();
        for (index, shard) in &mut self.shards {
            let Some(status) = context.offsets.status(*index) else {
                continue;
            };
            shard.apply_committed(status.high_watermark);
            let leading = (status.leader
                && status.serves_reads
                && shard.log.applied_end() >= status.high_watermark)
                .then_some(status.epoch);
            if shard.coordinating != leading {
                if shard.coordinating.is_some() {
                    tracing::info!(partition = index, "no longer coordinating its groups");
                    replies.extend(shard.unload().into_iter().map(group_response));
                }
                if let Some(epoch) = leading {
                    let partition = TopicPartition::new(OFFSETS_TOPIC, *index);
                    if let Err(corrupt) = shard.snapshots.check_servable(partition) {
                        self.fail_stop.get_or_insert(corrupt);
                        continue;
                    }
                    #[cfg(feature = "defects")]
                    if lose_offsets_on_failover && epoch > 1 {
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
        if self.held.is_empty() {
            return replies;
        }
        let held = std::mem::take(&mut self.held);
        for held_replies in held {
            let shard = self.shards.get(&held_replies.shard);
            let applied =
                shard.is_some_and(|shard| shard.log.applied_end() >= held_replies.commit_end);
            let still_leading =
                shard.is_some_and(|shard| shard.coordinating == Some(held_replies.epoch));
            if applied && still_leading {
                replies.extend(held_replies.replies);
            } else if !still_leading {
                replies.extend(
                    held_replies.replies.into_iter().map(|(id, response)| {
                        (id, as_failure(response, ErrorCode::NotCoordinator))
                    }),
                );
            } else {
                self.held.push(held_replies);
            }
        }
        replies
    }

    /// Timers of the coordinated groups: sessions, rebalance deadlines, offsets expiry.
    pub fn tick(&mut self, now: Now) -> Vec<GroupOutput> {
        let now_ms = now.monotonic_ms;
        let expiry_due = now_ms >= self.next_expiry_check_ms;
        if expiry_due {
            self.next_expiry_check_ms = now_ms + EXPIRY_CHECK_INTERVAL_MS;
        }
        let retention_ms = self.offsets_retention_ms;
        let mut work = Vec::new();
        for (index, shard) in &mut self.shards {
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
        let mut outputs = Vec::new();
        for (index, group_id, records, replies) in work {
            outputs.extend(self.finish_group_operation(now, index, &group_id, records, replies));
        }
        if expiry_due {
            outputs.extend(self.snapshots_due(now));
        }
        outputs
    }

    /// Topics deleted from the cluster (as this node applied the metadata): every
    /// coordinated group loses its committed offsets of their partitions, one
    /// `OffsetsDeleted` record per group, as Kafka's coordinator does when partitions are
    /// deleted; so a topic created again under the same name is not read from the old
    /// topic's offsets. Groups coordinated elsewhere are cleaned by their coordinator.
    pub fn on_topics_deleted(&mut self, now: Now, topics: &BTreeSet<String>) -> Vec<GroupOutput> {
        let mut work = Vec::new();
        for (index, shard) in &self.shards {
            if shard.coordinating.is_none() {
                continue;
            }
            for (group_id, committed) in &shard.committed {
                let partitions: Vec<TopicPartition> = committed
                    .offsets
                    .keys()
                    .filter(|partition| topics.contains(&partition.topic))
                    .cloned()
                    .collect();
                if !partitions.is_empty() {
                    tracing::info!(group = %group_id, ?partitions, "offsets of deleted partitions removed");
                    let record = GroupRecord::OffsetsDeleted {
                        group: group_id.clone(),
                        partitions,
                    };
                    work.push((*index, group_id.clone(), record));
                }
            }
        }
        let mut outputs = Vec::new();
        for (index, group_id, record) in work {
            outputs.extend(self.finish_group_operation(
                now,
                index,
                &group_id,
                vec![record],
                Vec::new(),
            ));
        }
        outputs
    }

    /// Snapshots of the coordinated offsets partitions that are due (see `offsets_shard`).
    fn snapshots_due(&mut self, now: Now) -> Vec<GroupOutput> {
        due_snapshots(
            OFFSETS_TOPIC,
            &mut self.shards,
            self.snapshot_interval_bytes,
            now.wall_ms,
        )
        .into_iter()
        .flat_map(|(partition, batches)| {
            batches.into_iter().map(move |batch| GroupOutput::Append {
                partition,
                batch,
                write: GroupWrite {
                    partition,
                    group_id: None,
                    stamp_ms: None,
                    replies: Vec::new(),
                },
            })
        })
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
        Response::OffsetCommit(results) => Response::OffsetCommit(commit_failure(results, error)),
        Response::TxnOffsetCommit(results) => {
            Response::TxnOffsetCommit(commit_failure(results, error))
        }
        Response::DeleteGroup { .. } => Response::DeleteGroup { error },
        Response::OffsetDelete { .. } => Response::OffsetDelete {
            error,
            partitions: Vec::new(),
        },
        other => other,
    }
}

/// A failed commit's results: a partition that does not exist still says so.
fn commit_failure(
    results: Vec<(TopicPartition, ErrorCode)>,
    error: ErrorCode,
) -> Vec<(TopicPartition, ErrorCode)> {
    results
        .into_iter()
        .map(|(partition, previous)| match previous {
            ErrorCode::UnknownTopicOrPartition => (partition, previous),
            _ => (partition, error),
        })
        .collect()
}

/// Whether an OffsetCommit or TxnOffsetCommit names partitions, none of which exists.
fn commits_only_unknown_partitions(request: &Request, metadata: &ClusterMetadata) -> bool {
    match request {
        Request::OffsetCommit { commits, .. } | Request::TxnOffsetCommit { commits, .. } => {
            !commits.is_empty()
                && commits
                    .iter()
                    .all(|commit| !metadata.contains_partition(&commit.partition))
        }
        _ => false,
    }
}

/// The commits of partitions that exist: only those are written.
fn known_partitions(
    commits: Vec<OffsetCommitPartition>,
    metadata: &ClusterMetadata,
) -> Vec<OffsetCommitPartition> {
    commits
        .into_iter()
        .filter(|commit| metadata.contains_partition(&commit.partition))
        .collect()
}

/// Kafka answers UNKNOWN_TOPIC_OR_PARTITION for a committed partition that does not exist,
/// whatever it answers for the others (its broker checks before its coordinator does).
fn answer_unknown_partitions(response: Response, metadata: &ClusterMetadata) -> Response {
    let mark = |results: Vec<(TopicPartition, ErrorCode)>| {
        results
            .into_iter()
            .map(|(partition, error)| {
                if metadata.contains_partition(&partition) {
                    (partition, error)
                } else {
                    (partition, ErrorCode::UnknownTopicOrPartition)
                }
            })
            .collect()
    };
    match response {
        Response::OffsetCommit(results) => Response::OffsetCommit(mark(results)),
        Response::TxnOffsetCommit(results) => Response::TxnOffsetCommit(mark(results)),
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
        Request::DeleteGroup { .. } => Response::DeleteGroup { error },
        Request::OffsetDelete { .. } => Response::OffsetDelete {
            error,
            partitions: Vec::new(),
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
        | Request::TxnOffsetCommit { group_id, .. }
        | Request::DeleteGroup { group_id }
        | Request::OffsetDelete { group_id, .. } => Some(group_id),
        _ => None,
    }
}

/// An OffsetFetch answer for one partition: what was committed, or -1.
fn fetched_offset(partition: TopicPartition, found: Option<&CommittedOffset>) -> FetchedOffset {
    FetchedOffset {
        partition,
        offset: found.map_or(-1, |committed| committed.offset),
        metadata: found.and_then(|committed| committed.metadata.clone()),
        leader_epoch: found.map_or(-1, |committed| committed.leader_epoch),
        error: ErrorCode::None,
    }
}

/// A commit's partitions as the offsets log records them: the entries and their leader
/// epochs (see `GroupRecord::Offsets`).
fn offset_entries(
    commits: Vec<OffsetCommitPartition>,
) -> (Vec<offsets_shard::OffsetEntry>, Vec<i32>) {
    let (entries, epochs) = commits
        .into_iter()
        .map(
            |OffsetCommitPartition {
                 partition,
                 offset,
                 metadata,
                 leader_epoch,
             }| ((partition, offset, metadata), leader_epoch),
        )
        .unzip();
    (entries, offsets_shard::leader_epochs_field(epochs))
}
