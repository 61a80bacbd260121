//! Replication: one Raft-family protocol for every replicated log, in Kafka's vocabulary.
//!
//! Each partition (and the cluster-metadata log) is its own replication group of `voters`.
//! Raft's terms are Kafka's **leader epochs**, its commit index is the **high watermark**
//! (HWM), and a log's last index + 1 is its **log end offset** (LEO). Every batch carries
//! the epoch of the leader that first wrote it (`partitionLeaderEpoch` in its header).
//!
//! The protocol, per group:
//! - **Election.** A replica that hears nothing from a leader for a randomized election
//!   timeout becomes a candidate: it bumps the epoch, votes for itself (durably, before
//!   asking anyone) and asks the others. A voter grants at most one vote per epoch, and only
//!   to a candidate whose log is at least as up to date as its own: a higher last epoch, or
//!   the same last epoch and a log end offset at least as large. A majority makes a leader.
//! - **A new epoch opens with a marker.** The new leader appends a control batch
//!   (`records::leader_change_batch`) in its epoch. The HWM only advances to an offset whose
//!   batch belongs to the current epoch (Raft's rule against committing an older epoch's
//!   entries by counting replicas), and the marker makes that possible at once. A leader
//!   whose log is empty has no older entries to commit, and a lone voter's durable log is
//!   committed as it stands: neither writes the marker.
//! - **Replication is pushed.** The leader sends each follower the batches after its
//!   `next_offset` with the epoch of the batch before them (`prev_epoch`). A follower whose
//!   log does not hold that batch in that epoch answers with a hint (its epoch there), and
//!   the leader moves `next_offset` back to where its own log ends that epoch (Kafka's
//!   OffsetsForLeaderEpoch), strictly decreasing until the logs agree. A follower truncates
//!   its divergent tail when a batch arrives at an offset where it holds a different epoch.
//! - **Appends are pipelined, and bounded.** At most `APPENDS_IN_FLIGHT_MAX` appends with
//!   data await their answers per follower (checked where one is sent). An append counts as
//!   answered once the follower says it holds its end (`matched_end_offset`), whichever
//!   message says so; a follower's other reports (durable ends after its syncs, heartbeat
//!   answers) answer no append, so they never open the pipeline further.
//! - **Commitment is durable and majority-based.** Followers report how far their log
//!   matches the leader's and how far it is durable (fsynced). The HWM is the largest offset
//!   that a majority (the leader included) holds durably, in the current epoch. acks=all
//!   waits for the HWM; acks=1 for the leader's own durable end.
//! - **Check quorum.** A leader that has not heard from a majority within the maximum
//!   election timeout steps down, so an isolated leader stops accepting writes.
//! - **Log start.** DeleteRecords moves the first offset clients may read on a leader
//!   (`PartitionLog::delete_records_below`, never above its high watermark). The start
//!   travels in replication, as Kafka's fetch response carries the log start offset: every
//!   append carries the leader's (`log_start_offset`, [`LOG_START_NOT_MOVED`] if none), a
//!   follower moves its own up to it as far as its own high watermark
//!   ([`Effect::ClientStartMoved`]: persisted before anything later is sent) and reports the
//!   start it holds in every `Matched` answer; a leader takes the highest start its
//!   followers report, as far as its high watermark, in the step that raises it. Below a
//!   high watermark every replica holds the same batches, so a start there names the same
//!   records on every replica; above it a tail may still be cut, so no replica moves its
//!   start there. Retention is not carried: each replica applies it by itself.
//! - **Clocks.** Election deadlines, heartbeats, check quorum and append retries run on the
//!   monotonic clock (`now_ms` here; `ReplicaContext::now.monotonic_ms`), so a stepped wall
//!   clock neither starts an election nor silences a leader; the wall clock only stamps a
//!   new leader's epoch marker (see `api::Now`).
//!
//! Invariants (asserted with `invariant!`, on in debug and simulation builds; the simulator
//! also checks them from outside):
//! - at most one leader per epoch: a replica votes once per epoch, durably;
//! - the epoch never decreases on a replica, and is persisted before it is acted upon;
//! - the HWM never moves backwards within a replica's lifetime and never passes what a
//!   majority holds durably (leader) or what the leader reported and this replica
//!   verified (follower);
//! - a replica never truncates below its HWM: committed data is never removed (a follower
//!   whose whole log lies below its leader's log start drops it and starts over there, as
//!   retention removed it on the leader: `restart_behind_log_start`);
//! - logs agree on their committed prefix: same offset and epoch means same batch;
//! - a replica's DeleteRecords start never passes its high watermark when it moves, and never
//!   moves back (it is persisted); once a majority holds a start, every later leader holds
//!   it before it serves a read: it serves none before its high watermark reaches its
//!   epoch's start, which takes answers from a majority, one of which holds the start
//!   ([`Replica::deleted_start_on_majority`], what DeleteRecords' answer waits for).

use crate::api::{Now, ReadChunk};
use crate::batch::{validate_record_set, BatchHeader};
use crate::log::{PartitionLog, Truncation};
use crate::records::leader_change_batch;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The `prev_epoch` of an append that starts at the leader's log start: no batch precedes it.
pub const LOG_START_EPOCH: i32 = -1;
/// The `log_start_offset` of a replica where DeleteRecords never moved the start.
pub const LOG_START_NOT_MOVED: i64 = -1;

/// A node's id, as Kafka numbers brokers.
pub type NodeId = i32;

/// Timers and sizes of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationTimings {
    pub election_timeout_min_ms: i64,
    pub election_timeout_max_ms: i64,
    pub heartbeat_interval_ms: i64,
    /// An unanswered append is resent after this long.
    pub append_timeout_ms: i64,
    /// Most record bytes in one append message (at least one batch is always sent).
    pub append_bytes_max: u32,
}

impl Default for ReplicationTimings {
    fn default() -> Self {
        Self {
            // KRaft's order of magnitude: long enough that a busy node (a flood of produces,
            // fsyncs, two cores shared by three nodes) is not mistaken for a dead one.
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            heartbeat_interval_ms: 100,
            append_timeout_ms: 500,
            append_bytes_max: 8 << 20,
        }
    }
}

/// Batches in an append: the core names stored byte ranges; the driver reads them and sends
/// the bytes inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Records {
    Stored(Vec<ReadChunk>),
    Inline(Bytes),
}

/// What replicas of one group say to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationMessage {
    VoteRequest {
        epoch: i32,
        last_epoch: i32,
        log_end_offset: i64,
    },
    VoteResponse {
        epoch: i32,
        granted: bool,
    },
    /// The batches from `prev_offset` on; the batch before them is in `prev_epoch`
    /// ([`LOG_START_EPOCH`] when `prev_offset` is the start of the leader's log).
    /// `log_start_offset` is where DeleteRecords moved the start clients may read on the
    /// leader ([`LOG_START_NOT_MOVED`] if it never did), as Kafka's fetch response carries
    /// the log start (see "Log start" in the module doc).
    Append {
        epoch: i32,
        prev_offset: i64,
        prev_epoch: i32,
        records: Records,
        high_watermark: i64,
        log_start_offset: i64,
    },
    AppendResponse {
        epoch: i32,
        outcome: AppendOutcome,
    },
}

impl ReplicationMessage {
    pub fn epoch(&self) -> i32 {
        match self {
            Self::VoteRequest { epoch, .. }
            | Self::VoteResponse { epoch, .. }
            | Self::Append { epoch, .. }
            | Self::AppendResponse { epoch, .. } => *epoch,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's below `matched_end_offset` and is durable
    /// below `durable_end_offset`; DeleteRecords' start on it is `log_start_offset`, durably
    /// ([`LOG_START_NOT_MOVED`] if none; see "Log start" in the module doc).
    Matched {
        matched_end_offset: i64,
        durable_end_offset: i64,
        log_start_offset: i64,
    },
    /// The follower does not hold `prev_offset - 1` in `prev_epoch`; it holds `epoch_hint`
    /// there (or ends before, at `offset_hint`).
    Mismatch { epoch_hint: i32, offset_hint: i64 },
}

/// One follower as its leader sees it ([`Replica::follower_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgressView {
    pub node_id: NodeId,
    /// The end of the follower's log known to match the leader's.
    pub acknowledged_end_offset: i64,
    /// Heard from within the check-quorum window.
    pub in_sync: bool,
}

/// What must survive a restart: the epoch and the vote cast in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub epoch: i32,
    pub voted_for: Option<NodeId>,
}

/// What the owner of a replica must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Make the replica state durable before any later `Send`.
    PersistState(ReplicaState),
    Send {
        to: NodeId,
        message: ReplicationMessage,
    },
    /// The active segment rolled to a new one at `base_offset`.
    Rolled { base_offset: i64 },
    /// A batch was placed in the log; storage must write it (numbered `sequence`).
    Appended {
        header: BatchHeader,
        batch: crate::api::AppendedBatch,
        bytes: Bytes,
        sequence: u64,
    },
    /// The log lost its tail from `offset` on; storage must cut it.
    Truncated { offset: i64, truncation: Truncation },
    /// The log was dropped whole and starts over, empty, at `base_offset` (a follower behind
    /// its leader's log start); storage must do the same.
    LogRestarted { base_offset: i64 },
    /// The first offset clients may read moved to `offset`, learnt from another replica
    /// (see "Log start" in the module doc); it must be durable before anything later is
    /// sent (`StorageCommand::PersistDeletedBelow`).
    ClientStartMoved { offset: i64 },
    /// Leadership changed (this replica became or stopped being leader, or learned of a
    /// new leader): waiting requests must be re-examined.
    RoleChanged,
}

/// What a replica borrows from its owner for one step.
pub struct ReplicaContext<'a> {
    /// Timers run on `now.monotonic_ms`; the wall clock only stamps a new leader's marker.
    pub now: Now,
    pub log: &'a mut PartitionLog,
    pub segment_bytes_max: u32,
    /// The owner's append counter (shared by all logs of a node, for group commit).
    pub append_sequence: &'a mut u64,
    pub rng: &'a mut StdRng,
    pub effects: &'a mut Vec<Effect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FollowerProgress {
    next_offset: i64,
    matched_end_offset: i64,
    durable_end_offset: i64,
    /// When the oldest unanswered append was sent, or the last append was answered if later
    /// (an answer restarts the timer; `append_timeout_ms` without one restarts the pipeline).
    append_sent_ms: Option<i64>,
    /// The highest DeleteRecords start the follower reported holding durably in this epoch.
    log_start_offset: i64,
    /// The end offsets of the appends with data sent and not answered yet, oldest first.
    /// An answer is known by what it says the follower holds: every append ending at or
    /// below its `matched_end_offset` arrived. Counting answers instead would let the
    /// follower's other reports (its durable end after each sync, heartbeat answers) open
    /// the pipeline past its bound.
    in_flight_ends: VecDeque<i64>,
    last_heard_ms: i64,
}

impl FollowerProgress {
    fn in_flight(&self) -> u32 {
        self.in_flight_ends.len() as u32
    }
}

/// Appends with data a leader sends a follower before it waits for an answer.
const APPENDS_IN_FLIGHT_MAX: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Follower {
        leader: Option<NodeId>,
    },
    Candidate {
        votes: BTreeSet<NodeId>,
    },
    Leader {
        followers: BTreeMap<NodeId, FollowerProgress>,
    },
}

/// One replica of one replication group. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    node_id: NodeId,
    voters: Vec<NodeId>,
    state: ReplicaState,
    role: Role,
    election_deadline_ms: i64,
    heartbeat_due_ms: i64,
    /// Follower: offsets below this are known to match the current leader's log.
    verified_end_offset: i64,
    /// Follower: the high watermark the current leader last reported (`None` until it has
    /// reported one in this replica's lifetime; see [`Replica::caught_up`]).
    leader_high_watermark: Option<i64>,
    /// Leader: the log end offset when it was elected. Everything committed before lies
    /// below it, so once the high watermark reaches it, the HWM is at least as high as any
    /// an earlier leader reported.
    epoch_start_offset: i64,
    timings: ReplicationTimings,
    /// A deliberate bug for the model tests and the simulator (feature `defects` only).
    #[cfg(feature = "defects")]
    defect: Option<crate::defects::Defect>,
}

impl Replica {
    /// A replica restarting (or starting) as a follower with no known leader.
    pub fn new(
        node_id: NodeId,
        mut voters: Vec<NodeId>,
        state: ReplicaState,
        timings: ReplicationTimings,
        now_ms: i64,
        rng: &mut StdRng,
    ) -> Self {
        voters.sort_unstable();
        voters.dedup();
        assert!(
            voters.contains(&node_id),
            "a replica is one of its group's voters"
        );
        let mut replica = Self {
            node_id,
            voters,
            state,
            role: Role::Follower { leader: None },
            election_deadline_ms: now_ms,
            heartbeat_due_ms: now_ms,
            verified_end_offset: 0,
            leader_high_watermark: None,
            epoch_start_offset: 0,
            timings,
            #[cfg(feature = "defects")]
            defect: None,
        };
        // A lone voter need not wait: nobody else can lead.
        if replica.voters.len() > 1 {
            replica.reset_election_deadline(now_ms, rng);
        }
        replica
    }

    pub fn epoch(&self) -> i32 {
        self.state.epoch
    }

    /// Runs this replica with a deliberate bug (feature `defects` only).
    #[cfg(feature = "defects")]
    pub fn set_defect(&mut self, defect: Option<crate::defects::Defect>) {
        self.defect = defect;
    }

    /// Whether this replica runs with `defect` (always false without the feature).
    fn has_defect(&self, _defect: DefectName) -> bool {
        #[cfg(feature = "defects")]
        return self.defect == Some(_defect.into());
        #[cfg(not(feature = "defects"))]
        false
    }

    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader { .. })
    }

    /// Whether this replica leads and its high watermark has reached the start of its
    /// epoch: only then may it serve reads, or a consumer could see the high watermark move
    /// back across a failover (Raft: a leader commits an entry of its term before reads).
    pub fn serves_reads(&self, log: &PartitionLog) -> bool {
        self.is_leader() && log.high_watermark() >= self.epoch_start_offset
    }

    /// As leader, each follower's progress as this leader sees it (empty otherwise); read
    /// only. A follower is in sync when heard from within the check-quorum window
    /// (`election_timeout_max_ms`, the window `tick` counts a quorum in): Myelin commits by
    /// majority, and this window stands in for Kafka's `replica.lag.time.max.ms` wherever
    /// an ISR is reported or checked (`in_sync_replicas`, metrics).
    pub fn follower_progress(&self, now_ms: i64) -> Vec<FollowerProgressView> {
        let Role::Leader { followers } = &self.role else {
            return Vec::new();
        };
        followers
            .iter()
            .map(|(id, progress)| FollowerProgressView {
                node_id: *id,
                acknowledged_end_offset: progress.matched_end_offset,
                in_sync: now_ms - progress.last_heard_ms <= self.timings.election_timeout_max_ms,
            })
            .collect()
    }

    /// As leader: the replicas in sync, this one and the followers `follower_progress`
    /// counts in sync, by node id; empty when not leading. What acks=all checks against a
    /// topic's `min.insync.replicas`, and what Metadata reports as the ISR.
    pub fn in_sync_replicas(&self, now_ms: i64) -> Vec<NodeId> {
        if !self.is_leader() {
            return Vec::new();
        }
        let mut in_sync: Vec<NodeId> = self
            .follower_progress(now_ms)
            .into_iter()
            .filter(|follower| follower.in_sync)
            .map(|follower| follower.node_id)
            .chain([self.node_id])
            .collect();
        in_sync.sort_unstable();
        in_sync
    }

    /// Whether this replica has caught up with its group: it leads and serves reads, or it
    /// follows a known leader and its high watermark has reached the one that leader last
    /// reported (it holds everything committed when the leader last spoke). A restarted
    /// replica is not caught up until its leader has spoken.
    pub fn caught_up(&self, log: &PartitionLog) -> bool {
        match &self.role {
            Role::Leader { .. } => self.serves_reads(log),
            Role::Follower { leader: Some(_) } => self
                .leader_high_watermark
                .is_some_and(|reported| log.high_watermark() >= reported),
            _ => false,
        }
    }

    /// As leader: the DeleteRecords start a majority of the voters (this one included)
    /// hold durably, as the followers reported it in this epoch ([`LOG_START_NOT_MOVED`]
    /// below a majority); `None` when not leading. Once DeleteRecords' start is held by
    /// a majority, every later leader holds it before it serves a read (see "Log start").
    pub fn deleted_start_on_majority(&self, log: &PartitionLog) -> Option<i64> {
        let Role::Leader { followers } = &self.role else {
            return None;
        };
        let mut starts: Vec<i64> = followers
            .values()
            .map(|progress| progress.log_start_offset)
            .chain([deleted_start(log)])
            .collect();
        starts.sort_unstable_by(|a, b| b.cmp(a));
        Some(starts[self.majority() - 1])
    }

    /// As leader: sends every follower an append now (a heartbeat if nothing is new), so
    /// that a moved log start travels at once rather than at the next heartbeat.
    pub fn heartbeat_now(&mut self, context: &mut ReplicaContext<'_>) {
        if self.is_leader() {
            self.heartbeat_due_ms = self.heartbeat_due_ms.min(context.now.monotonic_ms);
            self.tick(context);
        }
    }

    /// The leader this replica knows of in its epoch, itself included.
    pub fn leader(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader { .. } => Some(self.node_id),
            Role::Follower { leader } => *leader,
            Role::Candidate { .. } => None,
        }
    }

    /// Starts an election two heartbeat intervals from now instead of waiting out a
    /// timeout: used by a new partition's preferred leader, so that a topic has leaders
    /// soon after creation. Not at once: the other voters open the partition only when
    /// they apply the topic's creation, which the metadata log's leader tells them with
    /// its next append or heartbeat after the commit; a vote request that arrives before
    /// finds no replica and is dropped, and the election then waits a whole timeout.
    /// Safe at any time (an election is always allowed), only faster.
    pub fn expedite_election(&mut self, now_ms: i64) {
        if !self.is_leader() && self.leader().is_none() {
            let soon = now_ms + 2 * self.timings.heartbeat_interval_ms;
            self.election_deadline_ms = self.election_deadline_ms.min(soon);
        }
    }

    /// The earliest time a `tick` has work to do.
    pub fn next_wakeup_ms(&self) -> i64 {
        match &self.role {
            Role::Leader { followers } if !followers.is_empty() => self.heartbeat_due_ms,
            Role::Leader { .. } => i64::MAX,
            _ => self.election_deadline_ms,
        }
    }

    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    fn reset_election_deadline(&mut self, now_ms: i64, rng: &mut StdRng) {
        let timeout = rng.random_range(
            self.timings.election_timeout_min_ms..=self.timings.election_timeout_max_ms,
        );
        self.election_deadline_ms = now_ms + timeout;
    }

    fn persist(&mut self, context: &mut ReplicaContext<'_>, state: ReplicaState) {
        crate::invariant!(state.epoch >= self.state.epoch, "the epoch never decreases");
        self.state = state;
        context.effects.push(Effect::PersistState(state));
    }

    /// Timers: elections for followers and candidates, heartbeats and check-quorum for
    /// leaders.
    pub fn tick(&mut self, context: &mut ReplicaContext<'_>) {
        let now_ms = context.now.monotonic_ms;
        match &self.role {
            Role::Leader { followers } => {
                if now_ms < self.heartbeat_due_ms {
                    return;
                }
                let heard = followers
                    .values()
                    .filter(|progress| {
                        now_ms - progress.last_heard_ms <= self.timings.election_timeout_max_ms
                    })
                    .count()
                    + 1;
                if heard < self.majority() {
                    tracing::debug!(
                        node = self.node_id,
                        epoch = self.state.epoch,
                        "leader lost its quorum; stepping down"
                    );
                    self.become_follower(context, None, true);
                    return;
                }
                self.heartbeat_due_ms = now_ms + self.timings.heartbeat_interval_ms;
                let due: Vec<NodeId> = followers.keys().copied().collect();
                for follower in due {
                    self.send_append(context, follower, true);
                }
            }
            _ => {
                if now_ms >= self.election_deadline_ms {
                    self.start_election(context);
                }
            }
        }
    }

    fn start_election(&mut self, context: &mut ReplicaContext<'_>) {
        let epoch = self.state.epoch + 1;
        self.persist(
            context,
            ReplicaState {
                epoch,
                voted_for: Some(self.node_id),
            },
        );
        self.role = Role::Candidate {
            votes: BTreeSet::from([self.node_id]),
        };
        self.reset_election_deadline(context.now.monotonic_ms, context.rng);
        if self.majority() == 1 {
            self.become_leader(context);
            return;
        }
        let request = ReplicationMessage::VoteRequest {
            epoch,
            last_epoch: context.log.last_epoch(),
            log_end_offset: context.log.log_end_offset(),
        };
        for &voter in self.voters.iter().filter(|voter| **voter != self.node_id) {
            context.effects.push(Effect::Send {
                to: voter,
                message: request.clone(),
            });
        }
    }

    fn become_leader(&mut self, context: &mut ReplicaContext<'_>) {
        let log_end_offset = context.log.log_end_offset();
        self.epoch_start_offset = log_end_offset;
        let followers = self
            .voters
            .iter()
            .filter(|voter| **voter != self.node_id)
            .map(|voter| {
                (
                    *voter,
                    FollowerProgress {
                        next_offset: log_end_offset,
                        matched_end_offset: 0,
                        durable_end_offset: 0,
                        append_sent_ms: None,
                        log_start_offset: LOG_START_NOT_MOVED,
                        in_flight_ends: VecDeque::new(),
                        last_heard_ms: context.now.monotonic_ms,
                    },
                )
            })
            .collect();
        self.role = Role::Leader { followers };
        tracing::debug!(
            node = self.node_id,
            epoch = self.state.epoch,
            "became leader"
        );
        context.effects.push(Effect::RoleChanged);
        // The marker commits earlier epochs' entries; with none (an empty log) or with no
        // one to count (a lone voter: its durable log is committed) it is not needed, and
        // clients of a fresh partition see their first record at its first offset.
        if self.majority() > 1 && context.log.log_end_offset() > context.log.log_start_offset() {
            let marker = leader_change_batch(self.state.epoch, context.now.wall_ms);
            let header = crate::batch::validate(&marker).expect("the marker batch is valid");
            self.append_as_leader(context, &header, marker);
        }
        self.heartbeat_due_ms = context.now.monotonic_ms;
        self.tick(context);
    }

    /// Steps down to follower. The election timer restarts only where Raft restarts it
    /// (a leader heard from, a lost quorum): a vote request in a newer epoch must not
    /// restart it, or candidates with stale logs could keep the most up-to-date replica
    /// from ever standing.
    fn become_follower(
        &mut self,
        context: &mut ReplicaContext<'_>,
        leader: Option<NodeId>,
        restart_election_timer: bool,
    ) {
        let was = self.leader();
        let was_leader = self.is_leader();
        if was != leader {
            self.leader_high_watermark = None;
        }
        self.role = Role::Follower { leader };
        self.verified_end_offset = context.log.high_watermark();
        if restart_election_timer || was_leader {
            self.reset_election_deadline(context.now.monotonic_ms, context.rng);
        }
        if was_leader || was != leader {
            context.effects.push(Effect::RoleChanged);
        }
    }

    /// Appends a batch as leader, stamped with the current epoch; `None` if not leader.
    pub fn append_as_leader(
        &mut self,
        context: &mut ReplicaContext<'_>,
        header: &BatchHeader,
        bytes: Bytes,
    ) -> Option<crate::api::AppendedBatch> {
        if !self.is_leader() {
            return None;
        }
        let appended = append_to_log(context, header, bytes, self.state.epoch);
        if self.majority() == 1 {
            return Some(appended);
        }
        // Push the new batch at once to followers with room in their pipeline.
        let idle: Vec<NodeId> = match &self.role {
            Role::Leader { followers } => followers
                .iter()
                .filter(|(_, progress)| progress.in_flight() < APPENDS_IN_FLIGHT_MAX)
                .map(|(id, _)| *id)
                .collect(),
            _ => Vec::new(),
        };
        for follower in idle {
            self.send_append(context, follower, false);
        }
        Some(appended)
    }

    /// Sends `follower` the batches after its `next_offset`, pipelined: up to
    /// `APPENDS_IN_FLIGHT_MAX` appends may await their answers, `next_offset` moving past
    /// each as it is sent. With nothing to send, a `heartbeat` sends an empty append at the
    /// last offset known to match. An append unanswered for `append_timeout_ms` restarts
    /// the pipeline from the matched end.
    fn send_append(&mut self, context: &mut ReplicaContext<'_>, follower: NodeId, heartbeat: bool) {
        let epoch = self.state.epoch;
        let high_watermark = context.log.high_watermark();
        let log_start_offset = deleted_start(context.log);
        let append_timeout_ms = self.timings.append_timeout_ms;
        let append_bytes_max = self.timings.append_bytes_max;
        let Role::Leader { followers } = &mut self.role else {
            return;
        };
        let Some(progress) = followers.get_mut(&follower) else {
            return;
        };
        let log = &*context.log;
        if progress
            .append_sent_ms
            .is_some_and(|sent| context.now.monotonic_ms - sent >= append_timeout_ms)
        {
            progress.next_offset = progress.matched_end_offset;
            progress.in_flight_ends.clear();
            progress.append_sent_ms = None;
        }
        let clamped = progress
            .next_offset
            .clamp(log.log_start_offset(), log.log_end_offset());
        // A divergence hint may name an offset inside a batch: resume at that batch's start,
        // since `prev_offset` must be where the first sent batch begins.
        progress.next_offset = log.batch_base_offset(clamped).unwrap_or(clamped);
        let can_send = progress.in_flight() < APPENDS_IN_FLIGHT_MAX
            && progress.next_offset < log.log_end_offset();
        let (prev_offset, chunks) = if can_send {
            let chunks = log.read(
                progress.next_offset,
                log.log_end_offset(),
                append_bytes_max,
                true,
            );
            let prev_offset = progress.next_offset;
            if let Some(end) = chunks.last().and_then(|chunk| log.offset_after(chunk)) {
                progress.next_offset = end;
                progress.in_flight_ends.push_back(end);
                crate::invariant!(
                    progress.in_flight() <= APPENDS_IN_FLIGHT_MAX,
                    "at most {APPENDS_IN_FLIGHT_MAX} appends in flight to node {follower}"
                );
                progress
                    .append_sent_ms
                    .get_or_insert(context.now.monotonic_ms);
            }
            (prev_offset, chunks)
        } else if heartbeat {
            // While appends are in flight, `next_offset` is ahead of the follower's log:
            // the heartbeat checks the matched end instead.
            let prev_offset = if progress.in_flight() > 0 {
                progress
                    .matched_end_offset
                    .clamp(log.log_start_offset(), log.log_end_offset())
            } else {
                progress.next_offset
            };
            (
                log.batch_base_offset(prev_offset).unwrap_or(prev_offset),
                Vec::new(),
            )
        } else {
            return;
        };
        let prev_epoch = if prev_offset == log.log_start_offset() {
            LOG_START_EPOCH
        } else {
            // `LOG_START_EPOCH` makes a follower behind it drop its log: it must never stand
            // for an epoch this log failed to find (`prev_offset - 1` lies within the log).
            let held = log.epoch_at(prev_offset - 1);
            crate::invariant!(
                held.is_some(),
                "no epoch for offset {} inside the log",
                prev_offset - 1
            );
            held.unwrap_or(LOG_START_EPOCH)
        };
        context.effects.push(Effect::Send {
            to: follower,
            message: ReplicationMessage::Append {
                epoch,
                prev_offset,
                prev_epoch,
                records: Records::Stored(chunks),
                high_watermark,
                log_start_offset,
            },
        });
    }

    /// The log's durable end moved (a sync completed): the leader may commit more; a
    /// follower reports its new durable end to the leader.
    pub fn on_synced(&mut self, context: &mut ReplicaContext<'_>) {
        match &self.role {
            Role::Leader { .. } => self.advance_high_watermark(context),
            Role::Follower {
                leader: Some(leader),
            } => {
                let leader = *leader;
                context.effects.push(Effect::Send {
                    to: leader,
                    message: ReplicationMessage::AppendResponse {
                        epoch: self.state.epoch,
                        outcome: AppendOutcome::Matched {
                            matched_end_offset: self.verified_end_offset,
                            durable_end_offset: context
                                .log
                                .durable_end_offset()
                                .min(self.verified_end_offset),
                            log_start_offset: deleted_start(context.log),
                        },
                    },
                });
            }
            _ => {}
        }
    }

    /// Leader: the HWM is the largest offset a majority holds durably, if it is in the
    /// current epoch.
    fn advance_high_watermark(&mut self, context: &mut ReplicaContext<'_>) {
        let Role::Leader { followers } = &self.role else {
            return;
        };
        let mut durable: Vec<i64> = followers
            .values()
            .map(|progress| progress.durable_end_offset.min(progress.matched_end_offset))
            .collect();
        durable.push(context.log.durable_end_offset());
        durable.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = if self.has_defect(DefectName::MinorityHighWatermark) {
            context.log.durable_end_offset()
        } else {
            durable[self.majority() - 1]
        };
        let reported = followers
            .values()
            .map(|progress| progress.log_start_offset)
            .max()
            .unwrap_or(LOG_START_NOT_MOVED);
        if candidate > context.log.high_watermark()
            && context.log.epoch_at(candidate - 1) == Some(self.state.epoch)
        {
            context.log.advance_high_watermark(candidate);
        }
        // In the same step as the high watermark, so a new leader serves no read (it
        // waits for its high watermark to reach its epoch's start) below a start its
        // followers hold.
        adopt_client_start(context, reported);
    }

    /// Handles a message from another replica of the group.
    pub fn handle(
        &mut self,
        context: &mut ReplicaContext<'_>,
        from: NodeId,
        message: ReplicationMessage,
    ) {
        if !self.voters.contains(&from) || from == self.node_id {
            tracing::warn!(
                node = self.node_id,
                from,
                "message from a non-voter ignored"
            );
            return;
        }
        // Stale messages die here, in one place; a newer epoch makes us a follower.
        let epoch = message.epoch();
        if epoch > self.state.epoch {
            self.persist(
                context,
                ReplicaState {
                    epoch,
                    voted_for: None,
                },
            );
            let leader = matches!(message, ReplicationMessage::Append { .. }).then_some(from);
            self.become_follower(context, leader, leader.is_some());
        } else if epoch < self.state.epoch {
            let reply = match message {
                ReplicationMessage::VoteRequest { .. } => Some(ReplicationMessage::VoteResponse {
                    epoch: self.state.epoch,
                    granted: false,
                }),
                ReplicationMessage::Append { .. } => Some(ReplicationMessage::AppendResponse {
                    epoch: self.state.epoch,
                    outcome: AppendOutcome::Mismatch {
                        epoch_hint: -1,
                        offset_hint: 0,
                    },
                }),
                _ => None,
            };
            if let Some(message) = reply {
                context.effects.push(Effect::Send { to: from, message });
            }
            return;
        }
        match message {
            ReplicationMessage::VoteRequest {
                last_epoch,
                log_end_offset,
                ..
            } => self.on_vote_request(context, from, last_epoch, log_end_offset),
            ReplicationMessage::VoteResponse { granted, .. } => {
                self.on_vote_response(context, from, granted)
            }
            ReplicationMessage::Append {
                prev_offset,
                prev_epoch,
                records,
                high_watermark,
                log_start_offset,
                ..
            } => {
                let leader = LeaderState {
                    high_watermark,
                    log_start_offset,
                };
                self.on_append(context, from, prev_offset, prev_epoch, records, leader)
            }
            ReplicationMessage::AppendResponse { outcome, .. } => {
                self.on_append_response(context, from, outcome)
            }
        }
    }

    fn on_vote_request(
        &mut self,
        context: &mut ReplicaContext<'_>,
        candidate: NodeId,
        last_epoch: i32,
        log_end_offset: i64,
    ) {
        let free_to_vote = match self.state.voted_for {
            None => !self.is_leader() && self.leader().is_none(),
            Some(voted) => voted == candidate,
        };
        let up_to_date = (last_epoch, log_end_offset)
            >= (context.log.last_epoch(), context.log.log_end_offset())
            || self.has_defect(DefectName::VoteWithoutUpToDateCheck);
        let granted = free_to_vote && up_to_date;
        if granted {
            if self.state.voted_for != Some(candidate) {
                let epoch = self.state.epoch;
                self.persist(
                    context,
                    ReplicaState {
                        epoch,
                        voted_for: Some(candidate),
                    },
                );
            }
            self.reset_election_deadline(context.now.monotonic_ms, context.rng);
        }
        context.effects.push(Effect::Send {
            to: candidate,
            message: ReplicationMessage::VoteResponse {
                epoch: self.state.epoch,
                granted,
            },
        });
    }

    fn on_vote_response(&mut self, context: &mut ReplicaContext<'_>, voter: NodeId, granted: bool) {
        let majority = self.majority();
        let Role::Candidate { votes } = &mut self.role else {
            return;
        };
        if granted {
            votes.insert(voter);
        }
        if votes.len() >= majority {
            self.become_leader(context);
        }
    }

    /// A follower whose whole log lies below its leader's log start `leader_log_start`
    /// drops it and starts over, empty, there (Kafka's truncate-fully-and-start-at). What it
    /// drops is either committed, and deleted by retention on the leader too, or a tail above
    /// its HWM that the leader's log does not hold: its tail above the HWM goes first, as a
    /// truncation, so that what derives from the log (producer state, transaction indexes)
    /// forgets it; then the committed rest goes as retention would take it.
    fn restart_behind_log_start(
        &mut self,
        context: &mut ReplicaContext<'_>,
        leader_log_start: i64,
    ) {
        let high_watermark = context.log.high_watermark();
        if context.log.log_end_offset() > high_watermark {
            match context.log.truncate_to(high_watermark) {
                Ok(truncation) => context.effects.push(Effect::Truncated {
                    offset: high_watermark,
                    truncation,
                }),
                Err(error) => unreachable!("truncating to the HWM is always allowed: {error}"),
            }
        }
        match context.log.restart_at(leader_log_start) {
            Ok(()) => context.effects.push(Effect::LogRestarted {
                base_offset: leader_log_start,
            }),
            Err(error) => unreachable!("checked: the leader's log start is past this log: {error}"),
        }
    }

    fn on_append(
        &mut self,
        context: &mut ReplicaContext<'_>,
        leader: NodeId,
        prev_offset: i64,
        prev_epoch: i32,
        records: Records,
        leader_state: LeaderState,
    ) {
        let leader_high_watermark = leader_state.high_watermark;
        crate::invariant!(
            !self.is_leader(),
            "two leaders in epoch {}",
            self.state.epoch
        );
        if self.is_leader() {
            return;
        }
        if self.leader() != Some(leader) {
            self.become_follower(context, Some(leader), true);
        }
        self.leader_high_watermark = Some(leader_high_watermark);
        self.reset_election_deadline(context.now.monotonic_ms, context.rng);
        let epoch = self.state.epoch;
        let reply = |outcome| Effect::Send {
            to: leader,
            message: ReplicationMessage::AppendResponse { epoch, outcome },
        };
        let log_end_offset = context.log.log_end_offset();
        if prev_offset > log_end_offset && prev_epoch == LOG_START_EPOCH {
            // The leader's log starts past everything held here: retention deleted it there,
            // and the leader can send nothing this log could follow.
            self.restart_behind_log_start(context, prev_offset);
        } else if prev_offset > log_end_offset {
            context.effects.push(reply(AppendOutcome::Mismatch {
                epoch_hint: context.log.last_epoch(),
                offset_hint: log_end_offset,
            }));
            return;
        }
        // Below the log start or the HWM, the prefix is committed and so agrees.
        let checkable = prev_offset > context.log.log_start_offset()
            && prev_offset > context.log.high_watermark();
        if checkable {
            let held = context.log.epoch_at(prev_offset - 1).unwrap_or(-1);
            if held != prev_epoch {
                context.effects.push(reply(AppendOutcome::Mismatch {
                    epoch_hint: held,
                    offset_hint: prev_offset - 1,
                }));
                return;
            }
        }
        let bytes = match records {
            Records::Inline(bytes) => bytes,
            Records::Stored(chunks) if chunks.is_empty() => Bytes::new(),
            Records::Stored(_) => {
                tracing::error!("an append arrived with stored records: a driver bug");
                return;
            }
        };
        let batches = match validate_record_set(&bytes) {
            Ok(batches) => batches,
            Err(error) => {
                tracing::warn!(%error, leader, "append with an invalid batch ignored");
                return;
            }
        };
        let mut verified_end = prev_offset;
        for (header, batch) in batches {
            if header.base_offset != verified_end {
                tracing::warn!(
                    expected = verified_end,
                    found = header.base_offset,
                    "append with an offset gap ignored from there"
                );
                break;
            }
            let end = header.base_offset + header.offset_count();
            if header.base_offset < context.log.log_start_offset() {
                // This replica's own retention deleted it: committed, so it agrees (replicas
                // trim on their own, and a leader may resend from below here).
                verified_end = end;
                continue;
            }
            if header.base_offset < context.log.log_end_offset() {
                match context.log.epoch_at(header.base_offset) {
                    Some(held)
                        if held == header.partition_leader_epoch
                            || self.has_defect(DefectName::FollowerKeepsDivergentTail) =>
                    {
                        verified_end = end;
                        continue;
                    }
                    _ => match context.log.truncate_to(header.base_offset) {
                        Ok(truncation) => context.effects.push(Effect::Truncated {
                            offset: header.base_offset,
                            truncation,
                        }),
                        Err(error) => {
                            crate::invariant!(
                                false,
                                "replication would truncate committed data: {error}"
                            );
                            tracing::error!(%error, "refusing to truncate committed data");
                            return;
                        }
                    },
                }
            }
            if header.base_offset != context.log.log_end_offset() {
                break;
            }
            append_to_log(context, &header, batch, header.partition_leader_epoch);
            verified_end = end;
        }
        // Within one leader's epoch a verified prefix stays verified: an append that checks
        // an earlier point (a heartbeat while others are in flight) does not shrink it.
        self.verified_end_offset = self.verified_end_offset.max(verified_end);
        context
            .log
            .advance_high_watermark(leader_high_watermark.min(verified_end));
        adopt_client_start(context, leader_state.log_start_offset);
        context.effects.push(reply(AppendOutcome::Matched {
            matched_end_offset: verified_end,
            durable_end_offset: context.log.durable_end_offset().min(verified_end),
            log_start_offset: deleted_start(context.log),
        }));
    }

    fn on_append_response(
        &mut self,
        context: &mut ReplicaContext<'_>,
        follower: NodeId,
        outcome: AppendOutcome,
    ) {
        let Role::Leader { followers } = &mut self.role else {
            return;
        };
        let Some(progress) = followers.get_mut(&follower) else {
            return;
        };
        progress.last_heard_ms = context.now.monotonic_ms;
        match outcome {
            AppendOutcome::Matched {
                matched_end_offset,
                durable_end_offset,
                log_start_offset,
            } => {
                progress.log_start_offset = progress.log_start_offset.max(log_start_offset);
                progress.matched_end_offset = progress.matched_end_offset.max(matched_end_offset);
                progress.durable_end_offset = progress
                    .durable_end_offset
                    .max(durable_end_offset.min(matched_end_offset));
                progress.next_offset = progress.next_offset.max(matched_end_offset);
                let mut retired = false;
                while progress
                    .in_flight_ends
                    .front()
                    .is_some_and(|end| *end <= matched_end_offset)
                {
                    progress.in_flight_ends.pop_front();
                    retired = true;
                }
                // The timer restarts only when an append was answered: answers that retire
                // none (heartbeats, durable-end reports) must not keep a lost append's
                // pipeline waiting forever.
                if retired {
                    progress.append_sent_ms =
                        (!progress.in_flight_ends.is_empty()).then_some(context.now.monotonic_ms);
                }
            }
            AppendOutcome::Mismatch {
                epoch_hint,
                offset_hint,
            } => {
                let epoch_end = context.log.end_offset_for_epoch(epoch_hint);
                // Strictly back: the next attempt checks an earlier offset.
                let next = epoch_end.min(offset_hint).min(progress.next_offset - 1);
                progress.next_offset = next.max(context.log.log_start_offset());
                // What is in flight was sent after a point that does not match.
                progress.in_flight_ends.clear();
                progress.append_sent_ms = None;
            }
        }
        let behind = progress.next_offset < context.log.log_end_offset();
        self.advance_high_watermark(context);
        if behind {
            self.send_append(context, follower, false);
        }
    }
}

/// The replication defects by name, so that the checks compile without the `defects`
/// feature (where they are always false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefectName {
    VoteWithoutUpToDateCheck,
    MinorityHighWatermark,
    FollowerKeepsDivergentTail,
}

#[cfg(feature = "defects")]
impl From<DefectName> for crate::defects::Defect {
    fn from(name: DefectName) -> Self {
        match name {
            DefectName::VoteWithoutUpToDateCheck => Self::VoteWithoutUpToDateCheck,
            DefectName::MinorityHighWatermark => Self::MinorityHighWatermark,
            DefectName::FollowerKeepsDivergentTail => Self::FollowerKeepsDivergentTail,
        }
    }
}

/// Where DeleteRecords moved `log`'s client start, as replication messages carry it.
fn deleted_start(log: &PartitionLog) -> i64 {
    log.deleted_start().unwrap_or(LOG_START_NOT_MOVED)
}

/// What a leader's append says of its log besides the batches.
#[derive(Debug, Clone, Copy)]
struct LeaderState {
    high_watermark: i64,
    log_start_offset: i64,
}

/// Moves the first offset clients may read here up to a DeleteRecords start another
/// replica holds (`reported`), as far as this replica's high watermark: below it the log is
/// committed, the same on every replica, so the start means the same records here; above
/// it this replica's tail may still be cut. The rest follows as the high watermark rises
/// (the start is repeated in every append and answer).
fn adopt_client_start(context: &mut ReplicaContext<'_>, reported: i64) {
    let offset = reported.min(context.log.high_watermark());
    if offset > deleted_start(context.log) && context.log.delete_records_below(offset) {
        context.effects.push(Effect::ClientStartMoved { offset });
    }
}

/// Places a batch at the log's end (rolling first if it does not fit) with `leader_epoch`.
fn append_to_log(
    context: &mut ReplicaContext<'_>,
    header: &BatchHeader,
    bytes: Bytes,
    leader_epoch: i32,
) -> crate::api::AppendedBatch {
    if context
        .log
        .needs_roll(header.size_bytes, context.segment_bytes_max)
    {
        let base_offset = context.log.roll();
        context.effects.push(Effect::Rolled { base_offset });
    }
    *context.append_sequence += 1;
    let sequence = *context.append_sequence;
    let batch = context.log.append(header, sequence, leader_epoch);
    context.effects.push(Effect::Appended {
        header: *header,
        batch,
        bytes,
        sequence,
    });
    batch
}

/// A replica's state as the exhaustive search (`replication_exhaustive.rs`) identifies it:
/// everything that decides its next steps, with its clocks relative to the current time
/// and clamped where the protocol stops telling them apart (a deadline already passed, a
/// follower unheard for longer than check-quorum allows, an append older than its timeout).
/// Fields the role never reads are left out; so are the timings and the defect, the same
/// for every state of a search.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReplicaView {
    pub node_id: NodeId,
    pub epoch: i32,
    pub voted_for: Option<NodeId>,
    pub role: RoleView,
}

#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RoleView {
    Follower {
        leader: Option<NodeId>,
        election_in_ms: i64,
        verified_end_offset: i64,
    },
    Candidate {
        votes: Vec<NodeId>,
        election_in_ms: i64,
    },
    Leader {
        heartbeat_in_ms: i64,
        epoch_start_offset: i64,
        followers: Vec<FollowerView>,
    },
}

#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FollowerView {
    pub id: NodeId,
    pub next_offset: i64,
    pub matched_end_offset: i64,
    pub durable_end_offset: i64,
    pub append_sent_ago_ms: Option<i64>,
    pub in_flight_ends: Vec<i64>,
    pub heard_ago_ms: i64,
}

#[cfg(test)]
impl Replica {
    /// This replica's [`ReplicaView`] at `now_ms`.
    pub(crate) fn view(&self, now_ms: i64) -> ReplicaView {
        let until = |deadline: i64| (deadline - now_ms).max(0);
        let role = match &self.role {
            Role::Follower { leader } => RoleView::Follower {
                leader: *leader,
                election_in_ms: until(self.election_deadline_ms),
                verified_end_offset: self.verified_end_offset,
            },
            Role::Candidate { votes } => RoleView::Candidate {
                votes: votes.iter().copied().collect(),
                election_in_ms: until(self.election_deadline_ms),
            },
            Role::Leader { followers } => RoleView::Leader {
                heartbeat_in_ms: until(self.heartbeat_due_ms),
                epoch_start_offset: self.epoch_start_offset,
                followers: followers
                    .iter()
                    .map(|(id, progress)| FollowerView {
                        id: *id,
                        next_offset: progress.next_offset,
                        matched_end_offset: progress.matched_end_offset,
                        durable_end_offset: progress.durable_end_offset,
                        append_sent_ago_ms: progress
                            .append_sent_ms
                            .map(|sent| (now_ms - sent).min(self.timings.append_timeout_ms)),
                        in_flight_ends: progress.in_flight_ends.iter().copied().collect(),
                        heard_ago_ms: (now_ms - progress.last_heard_ms)
                            .min(self.timings.election_timeout_max_ms + 1),
                    })
                    .collect(),
            },
        };
        ReplicaView {
            node_id: self.node_id,
            epoch: self.state.epoch,
            voted_for: self.state.voted_for,
            role,
        }
    }
}

#[cfg(test)]
mod tests {
    //! A group of replicas on an in-memory network with loss, reordering, crashes and
    //! restarts (`replication_model.rs`), driven by random schedules and checked after every
    //! step against the module's invariants.
    use super::NodeId;
    use crate::replication_model::Group;
    use proptest::prelude::*;

    impl Group {
        fn apply(&mut self, action: &Action) {
            match action {
                Action::Advance(ms) => self.advance(i64::from(*ms)),
                Action::Deliver(pick) => {
                    if !self.network.is_empty() {
                        self.deliver(pick.index(self.network.len()));
                    }
                }
                Action::Drop(pick) => {
                    if !self.network.is_empty() {
                        self.network.remove(pick.index(self.network.len()));
                    }
                }
                Action::Sync(node) => self.sync((*node % self.nodes.len() as u8) as NodeId + 1),
                Action::Produce(records) => {
                    if let Some(id) = self.leader() {
                        // Batches of several records: replication must resume at batch
                        // starts, whatever offset a divergence hint names.
                        self.produce(id, 1 + usize::from(records % 3));
                    }
                }
                Action::Crash(node) => {
                    let id = (*node % self.nodes.len() as u8) as NodeId + 1;
                    self.crash_and_restart(id);
                }
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Action {
        Advance(u16),
        Deliver(prop::sample::Index),
        Drop(prop::sample::Index),
        Sync(u8),
        Produce(u8),
        Crash(u8),
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            3 => (1u16..400).prop_map(Action::Advance),
            12 => any::<prop::sample::Index>().prop_map(Action::Deliver),
            1 => any::<prop::sample::Index>().prop_map(Action::Drop),
            4 => any::<u8>().prop_map(Action::Sync),
            4 => any::<u8>().prop_map(Action::Produce),
            1 => any::<u8>().prop_map(Action::Crash),
        ]
    }

    #[test]
    fn a_lone_voter_leads_at_once_and_commits_what_is_durable() {
        let mut group = Group::new(1, 1);
        group.apply(&Action::Advance(1));
        assert_eq!(group.leader(), Some(1));
        group.apply(&Action::Produce(0));
        assert_eq!(group.nodes[&1].log.high_watermark(), 0, "not durable yet");
        group.apply(&Action::Sync(0));
        assert_eq!(
            group.nodes[&1].log.high_watermark(),
            1,
            "the batch, and no marker: a lone voter needs none"
        );
        group.check();
    }

    #[test]
    fn three_replicas_elect_a_leader_and_commit_on_a_durable_majority() {
        let mut group = Group::new(3, 7);
        for _ in 0..200 {
            group.apply(&Action::Advance(10));
            group.deliver_all();
            group.check();
            if group.leader().is_some() {
                break;
            }
        }
        let leader = group.leader().expect("a leader is elected");
        group.apply(&Action::Produce(0));
        for _ in 0..5 {
            for node in 0..3 {
                group.apply(&Action::Sync(node));
            }
            group.deliver_all();
        }
        group.check();
        // An empty log's first leader writes no marker: the batch is at offset 0.
        assert_eq!(group.nodes[&leader].log.high_watermark(), 1);
        group.apply(&Action::Advance(110));
        group.deliver_all();
        for node in group.nodes.values() {
            assert_eq!(node.log.high_watermark(), 1, "followers learn the HWM");
        }
    }

    /// Three replicas with a leader and `batches` batches committed on every replica.
    fn group_with_committed_batches(seed: u64, batches: u8) -> (Group, NodeId) {
        let mut group = Group::new(3, seed);
        for _ in 0..200 {
            group.apply(&Action::Advance(10));
            group.deliver_all();
            if group.leader().is_some() {
                break;
            }
        }
        let leader = group.leader().expect("a leader is elected");
        for _ in 0..batches {
            group.apply(&Action::Produce(0));
        }
        for _ in 0..5 {
            for node in 0..3 {
                group.apply(&Action::Sync(node));
            }
            group.deliver_all();
        }
        group.apply(&Action::Advance(110));
        group.deliver_all();
        for node in group.nodes.values() {
            assert_eq!(node.log.high_watermark(), i64::from(batches));
        }
        (group, leader)
    }

    #[test]
    fn followers_learn_the_deleted_start_from_the_leaders_append_and_persist_it() {
        let (mut group, leader) = group_with_committed_batches(7, 3);
        assert_eq!(
            group.nodes[&leader]
                .replica
                .deleted_start_on_majority(&group.nodes[&leader].log),
            Some(super::LOG_START_NOT_MOVED)
        );
        group.delete_records(leader, 2);
        // The leader's heartbeat carries the start; each follower moves to it, persists it
        // and reports it back.
        group.deliver_all();
        for (id, node) in &group.nodes {
            assert_eq!(node.log.client_start_offset(), 2, "node {id}");
            assert_eq!(node.deleted_below, Some(2), "node {id} persisted it");
        }
        let leader_node = &group.nodes[&leader];
        assert_eq!(
            leader_node
                .replica
                .deleted_start_on_majority(&leader_node.log),
            Some(2)
        );
        group.check();
    }

    #[test]
    fn a_new_leader_serves_no_read_below_a_start_a_majority_holds() {
        let (mut group, old_leader) = group_with_committed_batches(7, 3);
        let mut others = group.nodes.keys().copied().filter(|id| *id != old_leader);
        let (holder, lagging) = (others.next().unwrap(), others.next().unwrap());
        // The lagging replica hears nothing of the delete; the holder does.
        group.delete_records(old_leader, 2);
        group.network.retain(|(_, to, _)| *to != lagging);
        group.deliver_all();
        let leader_node = &group.nodes[&old_leader];
        assert_eq!(
            leader_node
                .replica
                .deleted_start_on_majority(&leader_node.log),
            Some(2),
            "a majority holds the start: DeleteRecords would be answered"
        );
        assert_eq!(group.nodes[&holder].deleted_below, Some(2));
        assert_eq!(group.nodes[&lagging].log.client_start_offset(), 0);
        // The leader dies; the lagging replica stands first and the holder elects it.
        group.nodes.get_mut(&old_leader).unwrap().up = false;
        group.fire_timer(lagging);
        group.deliver_all();
        assert_eq!(group.leader(), Some(lagging));
        let mut served = false;
        for _ in 0..20 {
            for node in 0..3 {
                group.apply(&Action::Sync(node));
                let new_leader = &group.nodes[&lagging];
                if new_leader.replica.serves_reads(&new_leader.log) {
                    served = true;
                    assert_eq!(
                        new_leader.log.client_start_offset(),
                        2,
                        "the new leader serves reads below the start a majority held"
                    );
                }
            }
            group.deliver_all();
        }
        assert!(served, "the new leader came to serve reads");
        assert_eq!(group.nodes[&lagging].deleted_below, Some(2));
        group.check();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
        /// Whatever the schedule of message loss, reordering, syncs, crashes and restarts:
        /// one leader per epoch, HWMs never move back, committed batches are never lost and
        /// every replica agrees on them.
        #[test]
        fn replication_invariants_hold_under_any_schedule(
            size in prop::sample::select(vec![1i32, 3, 5]),
            seed in any::<u64>(),
            actions in prop::collection::vec(action(), 1..300),
        ) {
            let mut group = Group::new(size, seed);
            for action in &actions {
                group.apply(action);
                group.check();
            }
        }

        /// After the faults stop, a leader is elected and new writes commit.
        #[test]
        fn a_quiet_network_elects_a_leader_and_commits(
            seed in any::<u64>(),
            actions in prop::collection::vec(action(), 0..150),
        ) {
            let mut group = Group::new(3, seed);
            for action in &actions {
                group.apply(action);
            }
            // Elections take 1 to 2 s and a split vote costs another: a leader must be
            // there within 7.5 s (several elections), then a write must commit.
            let mut committed_before = None;
            let mut rounds_after_write = 0;
            for round in 0..700 {
                group.apply(&Action::Advance(25));
                group.deliver_all();
                for node in 0..3 {
                    group.apply(&Action::Sync(node));
                }
                group.deliver_all();
                group.check();
                match (committed_before, group.leader()) {
                    (None, Some(leader)) if round >= 100 => {
                        committed_before = Some(group.nodes[&leader].log.high_watermark());
                        group.apply(&Action::Produce(0));
                    }
                    (None, None) => prop_assert!(round < 300, "no leader after healing"),
                    (Some(_), _) => rounds_after_write += 1,
                    _ => {}
                }
                if rounds_after_write == 300 {
                    break;
                }
            }
            let committed_before = committed_before.unwrap_or_default();
            let leader = group.leader().expect("a leader");
            let leader_log = &group.nodes[&leader].log;
            prop_assert!(leader_log.high_watermark() > committed_before);
            // Every replica caught up: same log end and high watermark as the leader.
            for (id, node) in &group.nodes {
                prop_assert_eq!(
                    (node.log.log_end_offset(), node.log.high_watermark()),
                    (leader_log.log_end_offset(), leader_log.high_watermark()),
                    "node {} did not catch up", id
                );
            }
        }
    }

    /// Each deliberate replication defect breaks an invariant the model checks, and proptest
    /// shrinks the failing schedule to a short one. (Feature `defects` only.)
    #[cfg(feature = "defects")]
    #[test]
    fn each_replication_defect_is_caught_and_shrunk() {
        use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
        for defect in crate::defects::Defect::REPLICATION {
            // A fixed RNG: whether a defect is found, and how far it shrinks, must not
            // depend on the run (a randomly seeded runner made this test flaky: seeds 1, 2
            // and 3 each find all three defects and shrink them below the bound).
            let mut runner = TestRunner::new_with_rng(
                Config {
                    cases: 3000,
                    max_shrink_iters: 20_000,
                    failure_persistence: None,
                    ..Config::default()
                },
                TestRng::from_seed(RngAlgorithm::ChaCha, &[1; 32]),
            );
            let strategy = (
                prop::sample::select(vec![3i32, 5]),
                any::<u64>(),
                prop::collection::vec(action(), 1..300),
            );
            let result = runner.run(&strategy, |(size, seed, actions)| {
                let mut group = Group::with_defect(size, seed, Some(defect));
                for action in &actions {
                    group.apply(action);
                    group.check();
                }
                Ok(())
            });
            match result {
                Err(TestError::Fail(reason, (_, _, actions))) => {
                    eprintln!(
                        "{defect}: caught ({reason}), shrunk to {} actions",
                        actions.len()
                    );
                    assert!(
                        actions.len() <= 150,
                        "{defect}: shrunk only to {} actions",
                        actions.len()
                    );
                }
                other => panic!("{defect} was not caught: {other:?}"),
            }
        }
    }
}
