//! Consumer groups: the membership and rebalance state machine of Kafka's classic group
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), one [`Group`] per group id.
//!
//! The coordinator (`group_coordinator.rs`) owns one [`Group`] per group it coordinates,
//! persists each group's [`MembershipSnapshot`] and committed offsets in the replicated
//! offsets log, and restores groups from it after a failover. Everything here is a pure
//! function of its inputs (time and member-id suffixes come from the caller), so it runs
//! under the simulator unchanged.
//!
//! The protocol, per group:
//! - **Joining.** A member without an id is given one and told MEMBER_ID_REQUIRED; it joins
//!   again with that id. A join moves the group to `PreparingRebalance`, which waits until
//!   every known member has (re)joined or the rebalance timeout passes; members that did
//!   not rejoin are dropped. A rebalance that starts in an empty group first waits
//!   the initial delay (Kafka's group.initial.rebalance.delay.ms, `InitialJoin`), even with
//!   everyone joined, and again for each delay in which a newcomer joined before the first
//!   generation, never past the rebalance timeout: consumers started together land in one
//!   generation. Then the generation increases, the first protocol every member
//!   supports (in the leader's order of preference) is chosen, a leader is picked (the old
//!   one if it rejoined), and every waiting join is answered; the leader's answer lists the
//!   members and their metadata. The group is then `CompletingRebalance`.
//! - **Syncing.** The leader's SyncGroup carries every member's assignment; it makes the
//!   group `Stable` and answers every member waiting in SyncGroup with its own assignment.
//! - **Staying.** Heartbeats keep a member's session alive and tell it when a rebalance has
//!   started (REBALANCE_IN_PROGRESS: rejoin). A member whose session expires is removed, and
//!   the group rebalances. LeaveGroup removes members at once.
//! - **Static members** (`group.instance.id`) keep their place across restarts: a rejoin
//!   with a known instance id and a new member id replaces (fences) the old member id, and
//!   in a stable group with unchanged protocols it gets the current assignment back without
//!   a rebalance.
//!
//! Invariants (checked by `check_invariants` in debug and simulation builds):
//! - the generation never decreases, and increases exactly when a rebalance completes;
//! - in `Stable` and `CompletingRebalance` the leader is a member, and every member joined
//!   the current generation;
//! - a request naming another generation, or an unknown or fenced member id, is refused
//!   (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) and changes nothing;
//! - an instance id names at most one member;
//! - an offset commit from a member is accepted only from a current member, in the current
//!   generation, outside the completing phase of a rebalance (a fenced member's commit is refused); a commit
//!   without a member (a standalone consumer) only while the group has no members;
//! - only `Stable` and `Empty` groups have a snapshot: a rebalance in flight is never
//!   persisted, so a generation's assignments exist in the log only once all are known.

use crate::api::{ErrorCode, RequestId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Longest metadata string an offset commit may carry (Kafka's offset.metadata.max.bytes).
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// An offset a group committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub metadata: Option<String>,
    pub committed_ms: i64,
    /// The leader epoch the consumer committed with (-1: none given).
    pub leader_epoch: i32,
}

/// A group's membership as the coordinator persists it in the offsets log (after a
/// completed rebalance, or once empty), and as a new coordinator loads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipSnapshot {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

/// One member in a [`MembershipSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// Bounds on a member's session timeout (Kafka's group.min/max.session.timeout.ms).
pub const SESSION_TIMEOUT_MIN_MS: i32 = 1_000;
pub const SESSION_TIMEOUT_MAX_MS: i32 = 1_800_000;
/// Most members a group holds, those told MEMBER_ID_REQUIRED and not back yet included
/// (Kafka's group.max.size); a newcomer past it is refused GROUP_MAX_SIZE_REACHED.
pub const GROUP_SIZE_MAX: usize = 1_000;

/// Where a group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// Every state, in Kafka's order.
    pub const ALL: [GroupState; 4] = [
        Self::Empty,
        Self::PreparingRebalance,
        Self::CompletingRebalance,
        Self::Stable,
    ];

    /// The name Kafka's tools show.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// A JoinGroup, as the coordinator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// The client's address, as DescribeGroups shows it.
    pub client_host: String,
    pub protocol_type: String,
    /// (protocol name, member metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4 and later: a member without an id is told MEMBER_ID_REQUIRED and
    /// rejoins with the id it is given. Older clients are given an id and joined at once.
    pub require_member_id: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: ErrorCode,
    pub generation: i32,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member, its instance id and its metadata for the chosen
    /// protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// The answer to a SyncGroup (the member's assignment) or a Heartbeat / LeaveGroup (an
/// error code only; the assignment is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: ErrorCode,
    pub assignment: Bytes,
}

/// Answers the coordinator gives, to requests it may have held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupReply {
    Join {
        id: RequestId,
        response: JoinResponse,
    },
    Sync {
        id: RequestId,
        response: SyncResponse,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    protocols: Vec<(String, Bytes)>,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    last_heard_ms: i64,
    assignment: Bytes,
    /// A JoinGroup held until the rebalance completes.
    awaiting_join: Option<RequestId>,
    /// A SyncGroup held until the leader syncs.
    awaiting_sync: Option<RequestId>,
}

/// One consumer group. See the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    /// Members told MEMBER_ID_REQUIRED, until their session timeout: by id, when they
    /// are forgotten if they have not joined again.
    pending_members: BTreeMap<String, i64>,
    /// Instance id -> member id, for static members.
    static_members: BTreeMap<String, String>,
    rebalance_deadline_ms: i64,
    /// When the group last became empty (offsets expire relative to it).
    empty_since_ms: Option<i64>,
    /// Kafka's group.initial.rebalance.delay.ms, as the coordinator last set it.
    initial_rebalance_delay_ms: i64,
    /// The initial delay of a rebalance that began in an empty group (Kafka's
    /// InitialDelayedJoin), while it runs.
    initial_join: Option<InitialJoin>,
}

/// A rebalance of an empty group waits `delay_ms` (its deadline is the group's
/// `rebalance_deadline_ms`) before completing, however many members have joined; when it
/// ends and a new member joined meanwhile (only before the group's first generation), it
/// waits again, min(configured delay, `remaining_ms`), and `remaining_ms` shrinks by the
/// delay just waited, so the whole wait stays within the rebalance timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InitialJoin {
    delay_ms: i64,
    remaining_ms: i64,
    new_member_added: bool,
}

impl Default for Group {
    fn default() -> Self {
        Self::new()
    }
}

impl Group {
    pub fn new() -> Self {
        Self {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            rebalance_deadline_ms: 0,
            empty_since_ms: None,
            initial_rebalance_delay_ms: 0,
            initial_join: None,
        }
    }

    /// Kafka's group.initial.rebalance.delay.ms for the rebalances this group starts while
    /// empty (see `InitialJoin`); 0 completes them as soon as every member joined.
    pub fn set_initial_rebalance_delay_ms(&mut self, delay_ms: i64) {
        self.initial_rebalance_delay_ms = delay_ms.max(0);
    }

    /// Whether an OffsetCommit may be accepted: from a current member of the current
    /// generation of a group not between its join and sync phases, or (`member_id` empty, `generation` -1) from a
    /// standalone consumer while the group has no members. A member's commit keeps its
    /// session alive. The commit itself is applied by the coordinator once it is replicated.
    pub fn check_commit(
        &mut self,
        now_ms: i64,
        member_id: &str,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        if member_id.is_empty() && generation < 0 {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ErrorCode::UnknownMemberId)
            };
        }
        self.check_member(member_id, generation)?;
        // As in Kafka: a member of the current generation may commit while a rebalance is
        // being prepared (consumers commit what they processed before they rejoin), not
        // between the join and the sync, when no assignment of the generation is known.
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heard_ms = now_ms;
        }
        Ok(())
    }

    /// Since when the group has had no members (`None` while it has some).
    pub fn empty_since_ms(&self) -> Option<i64> {
        self.empty_since_ms.filter(|_| self.members.is_empty())
    }

    /// The membership to persist: `Some` only in the states a coordinator writes to the
    /// offsets log (`Stable`, with every assignment, and `Empty`).
    pub fn snapshot(&self) -> Option<MembershipSnapshot> {
        if !matches!(self.state, GroupState::Stable | GroupState::Empty) {
            return None;
        }
        Some(MembershipSnapshot {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(member_id, member)| MemberSnapshot {
                    member_id: member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    session_timeout_ms: member.session_timeout_ms,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    protocols: member.protocols.clone(),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        })
    }

    /// A group as a new coordinator loads it from its last persisted membership: stable
    /// (or empty), every member's session starting now.
    pub fn restore(snapshot: &MembershipSnapshot, now_ms: i64) -> Self {
        let mut group = Self::new();
        group.generation = snapshot.generation;
        group.protocol_type = snapshot.protocol_type.clone();
        for member in &snapshot.members {
            if let Some(instance) = &member.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            group.members.insert(
                member.member_id.clone(),
                Member {
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    protocols: member.protocols.clone(),
                    session_timeout_ms: member.session_timeout_ms,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    last_heard_ms: now_ms,
                    assignment: member.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                },
            );
        }
        if group.members.is_empty() {
            group.empty_since_ms = Some(now_ms);
        } else {
            group.state = GroupState::Stable;
            group.protocol_name = snapshot.protocol_name.clone();
            group.leader = snapshot
                .leader
                .clone()
                .filter(|leader| group.members.contains_key(leader))
                .or_else(|| group.members.keys().next().cloned());
        }
        group.check_invariants();
        group
    }

    /// The coordinator stops coordinating this group (it lost the offsets partition's
    /// leadership): every held request is answered with `error`.
    pub fn abandon(self, error: ErrorCode) -> Vec<GroupReply> {
        let mut replies = Vec::new();
        for (member_id, member) in self.members {
            if let Some(held) = member.awaiting_join {
                replies.push(GroupReply::Join {
                    id: held,
                    response: join_error(error, &member_id),
                });
            }
            if let Some(held) = member.awaiting_sync {
                replies.push(GroupReply::Sync {
                    id: held,
                    response: SyncResponse {
                        error,
                        assignment: Bytes::new(),
                    },
                });
            }
        }
        replies
    }

    /// What DescribeGroups shows.
    pub fn describe(&self) -> GroupDescription {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.clone(),
            members: self
                .members
                .iter()
                .map(|(member_id, member)| MemberDescription {
                    member_id: member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: member
                        .protocols
                        .iter()
                        .find(|(name, _)| *name == protocol)
                        .map(|(_, metadata)| metadata.clone())
                        .unwrap_or_default(),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// Whether a member may be consuming `topic`, as Kafka's `isSubscribedToTopic`
    /// decides it: a consumer group whose members' subscriptions (in the chosen protocol's
    /// metadata) all parse answers from them; any other group with members, or one whose
    /// subscriptions are not known (no protocol chosen yet, metadata that does not parse),
    /// counts as subscribed.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        if self.members.is_empty() {
            return false;
        }
        let subscribed = || -> Option<bool> {
            if self.protocol_type.as_deref() != Some("consumer") {
                return None;
            }
            let chosen = self.protocol_name.as_deref()?;
            let mut any = false;
            for member in self.members.values() {
                let (_, metadata) = member.protocols.iter().find(|(name, _)| name == chosen)?;
                any |= subscription_topics(metadata)?.iter().any(|t| t == topic);
            }
            Some(any)
        };
        subscribed().unwrap_or(true)
    }

    /// The members whose JoinGroup is held (the model-based tests compare them).
    #[cfg(test)]
    pub(crate) fn awaiting_join(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, member)| member.awaiting_join.is_some())
            .map(|(member_id, _)| member_id.as_str())
    }

    /// The members whose SyncGroup is held (the model-based tests compare them).
    #[cfg(test)]
    pub(crate) fn awaiting_sync(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, member)| member.awaiting_sync.is_some())
            .map(|(member_id, _)| member_id.as_str())
    }

    /// The earliest time `tick` has work: a rebalance deadline or a session expiry.
    pub fn next_wakeup_ms(&self) -> Option<i64> {
        let rebalance =
            (self.state == GroupState::PreparingRebalance).then_some(self.rebalance_deadline_ms);
        let sessions = self
            .members
            .values()
            .filter(|member| member.awaiting_join.is_none())
            .map(|member| member.last_heard_ms + member.session_timeout_ms);
        let pending = self.pending_members.values().copied();
        rebalance.into_iter().chain(sessions).chain(pending).min()
    }

    /// A JoinGroup. `fresh_suffix` makes a new member id unique (the caller draws it from
    /// its seeded RNG). Returns the replies due now (this join's, or every held join when
    /// the rebalance completes at once).
    pub fn join(
        &mut self,
        now_ms: i64,
        id: RequestId,
        request: JoinRequest,
        fresh_suffix: u64,
    ) -> Vec<GroupReply> {
        let refuse = |error: ErrorCode, member_id: &str| {
            vec![GroupReply::Join {
                id,
                response: join_error(error, member_id),
            }]
        };
        if !(SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&request.session_timeout_ms)
        {
            return refuse(ErrorCode::InvalidSessionTimeout, &request.member_id);
        }
        if request.protocols.is_empty()
            || self
                .protocol_type
                .as_ref()
                .is_some_and(|known| *known != request.protocol_type && !self.members.is_empty())
            || (!self.members.is_empty()
                && self.common_protocol(Some(&request.protocols)).is_none())
        {
            return refuse(ErrorCode::InconsistentGroupProtocol, &request.member_id);
        }
        let newcomer = request.member_id.is_empty()
            && request
                .group_instance_id
                .as_ref()
                .is_none_or(|instance| !self.static_members.contains_key(instance));
        if newcomer && self.members.len() + self.pending_members.len() >= GROUP_SIZE_MAX {
            return refuse(ErrorCode::GroupMaxSizeReached, "");
        }
        let mut member_id = request.member_id.clone();
        if let Some(instance) = &request.group_instance_id {
            // A static member: a new member id (a restart) takes over the old one.
            if member_id.is_empty() {
                member_id = format!("{instance}-{fresh_suffix:016x}");
            }
            if let Some(old) = self.static_members.get(instance).cloned() {
                if old != member_id {
                    if !request.member_id.is_empty() {
                        return refuse(ErrorCode::FencedInstanceId, &request.member_id);
                    }
                    return self.replace_static_member(now_ms, id, &old, member_id, request);
                }
            }
        } else if member_id.is_empty() {
            let fresh = format!("{}-{fresh_suffix:016x}", request.client_id);
            if request.require_member_id {
                let forget_at = now_ms + i64::from(request.session_timeout_ms);
                self.pending_members.insert(fresh.clone(), forget_at);
                return refuse(ErrorCode::MemberIdRequired, &fresh);
            }
            member_id = fresh;
        } else if !self.members.contains_key(&member_id)
            && self.pending_members.remove(&member_id).is_none()
        {
            return refuse(ErrorCode::UnknownMemberId, &member_id);
        }
        if !self.members.contains_key(&member_id)
            && self.state == GroupState::PreparingRebalance
            && self.generation == 0
        {
            if let Some(initial) = &mut self.initial_join {
                initial.new_member_added = true;
            }
        }
        let member = self
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                group_instance_id: request.group_instance_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                protocols: Vec::new(),
                session_timeout_ms: 0,
                rebalance_timeout_ms: 0,
                last_heard_ms: now_ms,
                assignment: Bytes::new(),
                awaiting_join: None,
                awaiting_sync: None,
            });
        member.protocols = request.protocols;
        member.session_timeout_ms = i64::from(request.session_timeout_ms);
        member.rebalance_timeout_ms = i64::from(request.rebalance_timeout_ms);
        member.last_heard_ms = now_ms;
        member.awaiting_join = Some(id);
        self.empty_since_ms = None;
        if let Some(instance) = request.group_instance_id {
            self.static_members.insert(instance, member_id.clone());
        }
        self.protocol_type = Some(request.protocol_type);
        let mut replies = Vec::new();
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now_ms, &mut replies);
        }
        self.maybe_complete_join(&mut replies);
        self.check_invariants();
        replies
    }

    /// A static member restarted with a new member id: the old id is fenced. In a stable
    /// group with unchanged protocols the new id gets the current generation and assignment
    /// back without a rebalance; otherwise it joins as usual.
    fn replace_static_member(
        &mut self,
        now_ms: i64,
        id: RequestId,
        old: &str,
        new_id: String,
        request: JoinRequest,
    ) -> Vec<GroupReply> {
        let Some(mut member) = self.members.remove(old) else {
            return Vec::new();
        };
        let unchanged = member.protocols == request.protocols;
        member.last_heard_ms = now_ms;
        member.awaiting_sync = None;
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new_id.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        let mut replies = Vec::new();
        if let Some(held) = member.awaiting_join.take() {
            // The old incarnation's held join is answered as fenced.
            replies.push(GroupReply::Join {
                id: held,
                response: join_error(ErrorCode::FencedInstanceId, old),
            });
        }
        if self.state == GroupState::Stable && unchanged {
            self.members.insert(new_id.clone(), member);
            replies.push(GroupReply::Join {
                id,
                response: JoinResponse {
                    error: ErrorCode::None,
                    generation: self.generation,
                    protocol_name: self.protocol_name.clone(),
                    leader: self.leader.clone().unwrap_or_default(),
                    member_id: new_id,
                    members: Vec::new(),
                },
            });
            self.check_invariants();
            return replies;
        }
        self.members.insert(new_id.clone(), member);
        let mut request = request;
        request.member_id = new_id;
        replies.extend(self.join(now_ms, id, request, 0));
        replies
    }

    /// A SyncGroup. The leader's carries the assignments (member id -> assignment).
    pub fn sync(
        &mut self,
        now_ms: i64,
        id: RequestId,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Vec<GroupReply> {
        let reply = |error: ErrorCode| {
            vec![GroupReply::Sync {
                id,
                response: SyncResponse {
                    error,
                    assignment: Bytes::new(),
                },
            }]
        };
        if let Err(error) = self.check_member(member_id, generation) {
            return reply(error);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heard_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance | GroupState::Empty => {
                reply(ErrorCode::RebalanceInProgress)
            }
            GroupState::Stable => {
                let assignment = self.members[member_id].assignment.clone();
                vec![GroupReply::Sync {
                    id,
                    response: SyncResponse {
                        error: ErrorCode::None,
                        assignment,
                    },
                }]
            }
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.awaiting_sync = Some(id);
                }
                if self.leader.as_deref() != Some(member_id) {
                    return Vec::new();
                }
                let mut assigned: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                let mut replies = Vec::new();
                for (id_of_member, member) in &mut self.members {
                    member.assignment = assigned.remove(id_of_member).unwrap_or_default();
                    if let Some(held) = member.awaiting_sync.take() {
                        replies.push(GroupReply::Sync {
                            id: held,
                            response: SyncResponse {
                                error: ErrorCode::None,
                                assignment: member.assignment.clone(),
                            },
                        });
                    }
                }
                self.state = GroupState::Stable;
                self.check_invariants();
                replies
            }
        }
    }

    /// A Heartbeat: the error code to answer with.
    pub fn heartbeat(&mut self, now_ms: i64, member_id: &str, generation: i32) -> ErrorCode {
        if let Err(error) = self.check_member(member_id, generation) {
            return error;
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_heard_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// A request from a static member: FENCED_INSTANCE_ID if its instance id now names
    /// another member id (a newer incarnation replaced it), as Kafka answers.
    pub fn check_instance(&self, member_id: &str, instance: Option<&str>) -> Result<(), ErrorCode> {
        match instance.and_then(|instance| self.static_members.get(instance)) {
            Some(current) if current != member_id => Err(ErrorCode::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// The member id a static member's instance id names.
    pub fn member_of_instance(&self, instance: &str) -> Option<&str> {
        self.static_members.get(instance).map(String::as_str)
    }

    /// A LeaveGroup for one member: removes it (held requests are answered) and rebalances.
    pub fn leave(&mut self, now_ms: i64, member_id: &str) -> (ErrorCode, Vec<GroupReply>) {
        if !self.members.contains_key(member_id) {
            return (ErrorCode::UnknownMemberId, Vec::new());
        }
        let mut replies = Vec::new();
        self.remove_member(member_id, &mut replies);
        self.after_departure(now_ms, &mut replies);
        self.check_invariants();
        (ErrorCode::None, replies)
    }

    /// Timers: expired sessions leave; a rebalance whose deadline passed completes with the
    /// members that rejoined.
    pub fn tick(&mut self, now_ms: i64) -> Vec<GroupReply> {
        let mut replies = Vec::new();
        self.pending_members
            .retain(|_, forget_at_ms| *forget_at_ms > now_ms);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| {
                member.awaiting_join.is_none()
                    && now_ms >= member.last_heard_ms + member.session_timeout_ms
            })
            .map(|(member_id, _)| member_id.clone())
            .collect();
        if !expired.is_empty() {
            for member_id in &expired {
                tracing::debug!(member = %member_id, "group member's session expired");
                self.remove_member(member_id, &mut replies);
            }
            self.after_departure(now_ms, &mut replies);
        }
        if self.state == GroupState::PreparingRebalance && now_ms >= self.rebalance_deadline_ms {
            if let Some(initial) = self.initial_join.take() {
                if initial.new_member_added && initial.remaining_ms > 0 {
                    // Kafka's InitialDelayedJoin: newcomers during the wait extend it.
                    let delay_ms = self.initial_rebalance_delay_ms.min(initial.remaining_ms);
                    self.initial_join = Some(InitialJoin {
                        delay_ms,
                        remaining_ms: (initial.remaining_ms - initial.delay_ms).max(0),
                        new_member_added: false,
                    });
                    self.rebalance_deadline_ms = now_ms + delay_ms;
                    self.check_invariants();
                    return replies;
                }
                // The wait may outlast a session: as Kafka does when a join completes, every
                // member's session starts anew.
                for member in self.members.values_mut() {
                    if member.awaiting_join.is_some() {
                        member.last_heard_ms = now_ms;
                    }
                }
            }
            // Members that did not rejoin in time are dropped.
            let late: Vec<String> = self
                .members
                .iter()
                .filter(|(_, member)| member.awaiting_join.is_none())
                .map(|(member_id, _)| member_id.clone())
                .collect();
            for member_id in &late {
                self.remove_member(member_id, &mut replies);
            }
            if self.members.is_empty() {
                // Nobody rejoined: the group rests as when its last member leaves (empty
                // since now, for offsets retention; no protocol, as a restore of its
                // snapshot has none).
                self.after_departure(now_ms, &mut replies);
            } else {
                self.complete_join(&mut replies);
            }
        }
        self.check_invariants();
        replies
    }

    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), ErrorCode> {
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    fn remove_member(&mut self, member_id: &str, replies: &mut Vec<GroupReply>) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.group_instance_id {
            self.static_members.remove(instance);
        }
        if let Some(held) = member.awaiting_join {
            replies.push(GroupReply::Join {
                id: held,
                response: join_error(ErrorCode::UnknownMemberId, member_id),
            });
        }
        if let Some(held) = member.awaiting_sync {
            replies.push(GroupReply::Sync {
                id: held,
                response: SyncResponse {
                    error: ErrorCode::UnknownMemberId,
                    assignment: Bytes::new(),
                },
            });
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// After members left: an empty group rests; otherwise the rest rebalance.
    fn after_departure(&mut self, now_ms: i64, replies: &mut Vec<GroupReply>) {
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.leader = None;
            self.protocol_name = None;
            self.empty_since_ms = Some(now_ms);
            self.initial_join = None;
            return;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now_ms, replies);
        }
        self.maybe_complete_join(replies);
    }

    fn prepare_rebalance(&mut self, now_ms: i64, replies: &mut Vec<GroupReply>) {
        // Members waiting in SyncGroup must rejoin.
        for member in self.members.values_mut() {
            if let Some(held) = member.awaiting_sync.take() {
                replies.push(GroupReply::Sync {
                    id: held,
                    response: SyncResponse {
                        error: ErrorCode::RebalanceInProgress,
                        assignment: Bytes::new(),
                    },
                });
            }
        }
        let timeout = self
            .members
            .values()
            .map(|member| member.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.rebalance_deadline_ms = now_ms + timeout;
        // A rebalance of an empty group first waits for more members (Kafka's
        // InitialDelayedJoin, as its coordinator starts one for every empty group).
        self.initial_join =
            (self.state == GroupState::Empty && self.initial_rebalance_delay_ms > 0).then(|| {
                self.rebalance_deadline_ms = now_ms + self.initial_rebalance_delay_ms;
                InitialJoin {
                    delay_ms: self.initial_rebalance_delay_ms,
                    remaining_ms: (timeout - self.initial_rebalance_delay_ms).max(0),
                    new_member_added: false,
                }
            });
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase once every member has rejoined.
    fn maybe_complete_join(&mut self, replies: &mut Vec<GroupReply>) {
        let everyone = self
            .members
            .values()
            .all(|member| member.awaiting_join.is_some());
        // The initial delay is waited out whole, as Kafka's never completes early.
        if self.state == GroupState::PreparingRebalance
            && everyone
            && !self.members.is_empty()
            && self.initial_join.is_none()
        {
            self.complete_join(replies);
        }
    }

    fn complete_join(&mut self, replies: &mut Vec<GroupReply>) {
        self.initial_join = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.leader = None;
            return;
        }
        self.generation += 1;
        if self
            .leader
            .as_ref()
            .is_none_or(|leader| !self.members.contains_key(leader))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.protocol_name = self.common_protocol(None);
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let roster: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(member_id, member)| {
                let metadata = member
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == protocol)
                    .map(|(_, metadata)| metadata.clone())
                    .unwrap_or_default();
                (
                    member_id.clone(),
                    member.group_instance_id.clone(),
                    metadata,
                )
            })
            .collect();
        for (member_id, member) in &mut self.members {
            member.assignment = Bytes::new();
            if let Some(held) = member.awaiting_join.take() {
                replies.push(GroupReply::Join {
                    id: held,
                    response: JoinResponse {
                        error: ErrorCode::None,
                        generation: self.generation,
                        protocol_name: self.protocol_name.clone(),
                        leader: leader.clone(),
                        member_id: member_id.clone(),
                        members: if *member_id == leader {
                            roster.clone()
                        } else {
                            Vec::new()
                        },
                    },
                });
            }
        }
        self.state = GroupState::CompletingRebalance;
    }

    /// The first protocol (in the leader's order, or the first member's) that every member
    /// (and `candidate`, a joining member's protocols) supports.
    fn common_protocol(&self, candidate: Option<&[(String, Bytes)]>) -> Option<String> {
        let preference = self
            .leader
            .as_ref()
            .and_then(|leader| self.members.get(leader))
            .or_else(|| self.members.values().next())
            .map(|member| member.protocols.as_slice())
            .or(candidate)?;
        preference
            .iter()
            .map(|(name, _)| name)
            .find(|name| {
                self.members
                    .values()
                    .map(|member| member.protocols.as_slice())
                    .chain(candidate)
                    .all(|protocols| protocols.iter().any(|(offered, _)| offered == *name))
            })
            .cloned()
    }

    /// Asserts the module's invariants (debug and simulation builds).
    fn check_invariants(&self) {
        if !crate::INVARIANT_CHECKS {
            return;
        }
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        ) {
            let leader = self.leader.as_ref().expect("a settled group has a leader");
            assert!(self.members.contains_key(leader), "the leader is a member");
            assert!(self.generation > 0);
        }
        assert!(
            self.initial_join.is_none() || self.state == GroupState::PreparingRebalance,
            "only a rebalance waits out the initial delay"
        );
        let mut instances = BTreeSet::new();
        for member in self.members.values() {
            if let Some(instance) = &member.group_instance_id {
                assert!(
                    instances.insert(instance),
                    "an instance id names one member"
                );
            }
        }
    }
}

fn join_error(error: ErrorCode, member_id: &str) -> JoinResponse {
    JoinResponse {
        error,
        generation: -1,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_string(),
        members: Vec::new(),
    }
}

/// The topics of a consumer protocol `Subscription` (Kafka's ConsumerProtocolSubscription,
/// every version: an `i16` version, then an array of topic names), or `None` if the bytes
/// are not one.
fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
        *bytes = rest;
        Some(head)
    }
    let mut bytes = metadata;
    take(&mut bytes, 2)?;
    let count = i32::from_be_bytes(take(&mut bytes, 4)?.try_into().ok()?);
    // Each name takes at least its two length bytes: a count beyond that is not a list.
    let count = usize::try_from(count)
        .ok()
        .filter(|n| *n <= bytes.len() / 2)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i16::from_be_bytes(take(&mut bytes, 2)?.try_into().ok()?);
        let name = take(&mut bytes, usize::try_from(len).ok()?)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn request(member_id: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: instance.map(String::from),
            client_id: "consumer".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: vec![
                ("range".into(), Bytes::from_static(b"r")),
                ("roundrobin".into(), Bytes::from_static(b"rr")),
            ],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 5_000,
            require_member_id: true,
        }
    }

    fn join_response(replies: &[GroupReply], id: RequestId) -> &JoinResponse {
        replies
            .iter()
            .find_map(|reply| match reply {
                GroupReply::Join { id: held, response } if *held == id => Some(response),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no join answer for {id} in {replies:?}"))
    }

    fn sync_response(replies: &[GroupReply], id: RequestId) -> &SyncResponse {
        replies
            .iter()
            .find_map(|reply| match reply {
                GroupReply::Sync { id: held, response } if *held == id => Some(response),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no sync answer for {id} in {replies:?}"))
    }

    /// Joins a dynamic member through the MEMBER_ID_REQUIRED round trip; returns its id and
    /// the replies of its second join.
    fn join_dynamic(group: &mut Group, id: RequestId, suffix: u64) -> (String, Vec<GroupReply>) {
        let first = group.join(NOW, id, request("", None), suffix);
        let required = join_response(&first, id);
        assert_eq!(required.error, ErrorCode::MemberIdRequired);
        let member_id = required.member_id.clone();
        let replies = group.join(NOW, id + 1, request(&member_id, None), 0);
        (member_id, replies)
    }

    #[test]
    fn a_group_is_bounded_and_forgets_members_that_never_came_back_for_their_id() {
        let mut group = Group::new();
        // Newcomers told MEMBER_ID_REQUIRED who never join again fill the group ...
        for suffix in 0..GROUP_SIZE_MAX as u64 {
            let replies = group.join(NOW, suffix, request("", None), suffix);
            assert_eq!(
                join_response(&replies, suffix).error,
                ErrorCode::MemberIdRequired
            );
        }
        let full = group.join(NOW, 9_000_000, request("", None), 9_000_000);
        assert_eq!(
            join_response(&full, 9_000_000).error,
            ErrorCode::GroupMaxSizeReached
        );
        // ... until their session timeout passes.
        assert!(group.next_wakeup_ms().is_some_and(|at| at <= NOW + 10_000));
        group.tick(NOW + 10_000);
        let (member_id, replies) = join_dynamic(&mut group, 9_000_001, 9_000_001);
        assert_eq!(join_response(&replies, 9_000_002).error, ErrorCode::None);
        assert!(!member_id.is_empty());
    }

    #[test]
    fn two_members_join_sync_and_get_their_assignments() {
        let mut group = Group::new();
        let (a, replies) = join_dynamic(&mut group, 10, 1);
        // Alone, `a` completes the rebalance at once and leads generation 1.
        let joined = join_response(&replies, 11);
        assert_eq!((joined.error, joined.generation), (ErrorCode::None, 1));
        assert_eq!(joined.leader, a);
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        // `b` joins: a rebalance starts; `a` learns it from its heartbeat and rejoins.
        let (b, replies) = join_dynamic(&mut group, 20, 2);
        assert!(replies.is_empty(), "b waits for a to rejoin");
        assert_eq!(group.heartbeat(NOW, &a, 1), ErrorCode::RebalanceInProgress);
        let replies = group.join(NOW, 30, request(&a, None), 0);
        let to_a = join_response(&replies, 30);
        let to_b = join_response(&replies, 21);
        assert_eq!((to_a.generation, to_b.generation), (2, 2));
        assert_eq!(to_a.members.len(), 2, "the leader sees every member");
        assert!(to_b.members.is_empty());
        // The follower's sync waits for the leader's.
        assert!(group.sync(NOW, 40, &b, 2, Vec::new()).is_empty());
        let replies = group.sync(
            NOW,
            41,
            &a,
            2,
            vec![
                (a.clone(), Bytes::from_static(b"p0")),
                (b.clone(), Bytes::from_static(b"p1")),
            ],
        );
        assert_eq!(
            sync_response(&replies, 41).assignment,
            Bytes::from_static(b"p0")
        );
        assert_eq!(
            sync_response(&replies, 40).assignment,
            Bytes::from_static(b"p1")
        );
        assert_eq!(group.state(), GroupState::Stable);
        assert_eq!(group.heartbeat(NOW, &b, 2), ErrorCode::None);
    }

    #[test]
    fn an_old_generation_and_an_unknown_member_are_refused() {
        let mut group = Group::new();
        let (a, _) = join_dynamic(&mut group, 10, 1);
        assert_eq!(group.heartbeat(NOW, &a, 0), ErrorCode::IllegalGeneration);
        assert_eq!(
            group.heartbeat(NOW, "stranger", 1),
            ErrorCode::UnknownMemberId
        );
        let replies = group.sync(NOW, 12, &a, 7, Vec::new());
        assert_eq!(
            sync_response(&replies, 12).error,
            ErrorCode::IllegalGeneration
        );
        let replies = group.join(NOW, 13, request("made-up", None), 0);
        assert_eq!(
            join_response(&replies, 13).error,
            ErrorCode::UnknownMemberId
        );
    }

    #[test]
    fn an_expired_session_removes_the_member_and_the_rest_rebalance() {
        let mut group = Group::new();
        let (a, _) = join_dynamic(&mut group, 10, 1);
        let (b, _) = join_dynamic(&mut group, 20, 2);
        let replies = group.join(NOW, 30, request(&a, None), 0);
        join_response(&replies, 30);
        group.sync(NOW, 31, &a, 2, Vec::new());
        // `a` keeps heartbeating; `b` goes silent past its session timeout.
        assert_eq!(group.heartbeat(NOW + 9_000, &a, 2), ErrorCode::None);
        group.tick(NOW + 10_001);
        assert_eq!(group.member_ids().collect::<Vec<_>>(), vec![a.as_str()]);
        assert_eq!(
            group.heartbeat(NOW + 10_001, &b, 2),
            ErrorCode::UnknownMemberId
        );
        assert_eq!(
            group.heartbeat(NOW + 10_001, &a, 2),
            ErrorCode::RebalanceInProgress
        );
        let replies = group.join(NOW + 10_002, 40, request(&a, None), 0);
        assert_eq!(join_response(&replies, 40).generation, 3);
    }

    #[test]
    fn a_member_that_does_not_rejoin_in_time_is_dropped_at_the_deadline() {
        let mut group = Group::new();
        let (a, _) = join_dynamic(&mut group, 10, 1);
        let (_b, replies) = join_dynamic(&mut group, 20, 2);
        assert!(replies.is_empty());
        assert_eq!(group.next_wakeup_ms(), Some(NOW + 5_000));
        let replies = group.tick(NOW + 5_000);
        let to_b = join_response(&replies, 21);
        assert_eq!((to_b.error, to_b.generation), (ErrorCode::None, 2));
        assert!(!group.member_ids().any(|member| member == a));
    }

    #[test]
    fn a_group_emptied_at_the_rebalance_deadline_rests_as_if_its_last_member_left() {
        let mut group = Group::new();
        let (a, _) = join_dynamic(&mut group, 10, 1);
        group.sync(NOW, 12, &a, 1, vec![(a.clone(), Bytes::from_static(b"p0"))]);
        let (b, _) = join_dynamic(&mut group, 20, 2);
        group.leave(NOW, &b);
        // `a` never rejoins: it is dropped at the deadline, and the group is empty.
        group.tick(NOW + 5_000);
        assert_eq!(group.state(), GroupState::Empty);
        // Offsets retention counts from here, as for a group whose last member left.
        assert_eq!(group.empty_since_ms(), Some(NOW + 5_000));
        // A new coordinator restores what was persisted, no protocol included (found by the
        // groups model-based test: a stale protocol name made the restored group's
        // membership differ from the one written, so it was written again).
        let snapshot = group.snapshot().expect("an empty group is persisted");
        assert_eq!(snapshot.protocol_name, None);
        assert_eq!(
            Group::restore(&snapshot, NOW + 6_000).snapshot(),
            Some(snapshot)
        );
    }

    #[test]
    fn leaving_rebalances_the_rest_and_an_empty_group_rests() {
        let mut group = Group::new();
        let (a, _) = join_dynamic(&mut group, 10, 1);
        let (code, _) = group.leave(NOW, &a);
        assert_eq!(code, ErrorCode::None);
        assert_eq!(group.state(), GroupState::Empty);
        assert_eq!(group.leave(NOW, &a).0, ErrorCode::UnknownMemberId);
    }

    #[test]
    fn a_static_member_restarting_keeps_its_assignment_without_a_rebalance() {
        let mut group = Group::new();
        let replies = group.join(NOW, 10, request("", Some("host-1")), 1);
        let first = join_response(&replies, 10).clone();
        assert_eq!((first.error, first.generation), (ErrorCode::None, 1));
        group.sync(
            NOW,
            11,
            &first.member_id,
            1,
            vec![(first.member_id.clone(), Bytes::from_static(b"p0"))],
        );
        assert_eq!(group.state(), GroupState::Stable);
        // Restarted: same instance id, no member id.
        let replies = group.join(NOW + 100, 12, request("", Some("host-1")), 2);
        let again = join_response(&replies, 12);
        assert_eq!(
            (again.error, again.generation),
            (ErrorCode::None, 1),
            "no rebalance"
        );
        assert_ne!(again.member_id, first.member_id);
        let replies = group.sync(NOW + 100, 13, &again.member_id.clone(), 1, Vec::new());
        assert_eq!(
            sync_response(&replies, 13).assignment,
            Bytes::from_static(b"p0")
        );
        // The old incarnation is fenced.
        assert_eq!(
            group.heartbeat(NOW + 100, &first.member_id, 1),
            ErrorCode::UnknownMemberId
        );
        let replies = group.join(NOW + 100, 14, request(&first.member_id, Some("host-1")), 0);
        assert_eq!(
            join_response(&replies, 14).error,
            ErrorCode::FencedInstanceId
        );
        // So are its syncs, heartbeats and commits that name the instance.
        assert_eq!(
            group.check_instance(&first.member_id, Some("host-1")),
            Err(ErrorCode::FencedInstanceId)
        );
        assert_eq!(
            group.check_instance(&again.member_id, Some("host-1")),
            Ok(())
        );
        assert_eq!(group.check_instance(&first.member_id, None), Ok(()));
    }

    #[test]
    fn members_without_a_common_protocol_are_refused() {
        let mut group = Group::new();
        join_dynamic(&mut group, 10, 1);
        let mut odd = request("", None);
        odd.protocols = vec![("sticky".into(), Bytes::new())];
        let replies = group.join(NOW, 20, odd, 2);
        assert_eq!(
            join_response(&replies, 20).error,
            ErrorCode::InconsistentGroupProtocol
        );
    }

    #[test]
    fn commits_are_fenced_by_generation_and_membership() {
        let mut group = Group::new();
        // A standalone consumer may commit to a group without members.
        assert_eq!(group.check_commit(NOW, "", -1), Ok(()));
        let (a, _) = join_dynamic(&mut group, 10, 1);
        // Generation 1 is completing, not stable yet.
        assert_eq!(
            group.check_commit(NOW, &a, 1),
            Err(ErrorCode::RebalanceInProgress)
        );
        group.sync(NOW, 12, &a, 1, Vec::new());
        assert_eq!(group.check_commit(NOW, &a, 1), Ok(()));
        // A rebalance being prepared still takes the current generation's commits (made on
        // revocation), until the generation changes.
        join_dynamic(&mut group, 20, 2);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        assert_eq!(group.check_commit(NOW, &a, 1), Ok(()));
        // An old generation, a stranger, and a standalone commit to a live group are refused.
        assert_eq!(
            group.check_commit(NOW, &a, 0),
            Err(ErrorCode::IllegalGeneration)
        );
        assert_eq!(
            group.check_commit(NOW, "stranger", 1),
            Err(ErrorCode::UnknownMemberId)
        );
        assert_eq!(
            group.check_commit(NOW, "", -1),
            Err(ErrorCode::UnknownMemberId)
        );
    }

    #[test]
    fn an_old_client_is_given_a_member_id_without_the_round_trip() {
        let mut group = Group::new();
        let mut old = request("", None);
        old.require_member_id = false;
        let replies = group.join(NOW, 10, old, 7);
        let joined = join_response(&replies, 10);
        assert_eq!((joined.error, joined.generation), (ErrorCode::None, 1));
        assert_eq!(joined.member_id, format!("consumer-{:016x}", 7));
    }

    #[test]
    fn a_group_is_empty_since_its_last_member_left() {
        let mut group = Group::new();
        let (a, _) = join_dynamic(&mut group, 10, 1);
        assert_eq!(group.empty_since_ms(), None);
        group.leave(NOW + 10, &a);
        assert_eq!(group.empty_since_ms(), Some(NOW + 10));
    }

    #[test]
    fn a_restored_group_is_the_persisted_one_with_fresh_sessions() {
        let mut group = Group::new();
        let (a, _) = join_dynamic(&mut group, 10, 1);
        let (b, _) = join_dynamic(&mut group, 20, 2);
        group.join(NOW, 30, request(&a, None), 0);
        assert_eq!(
            group.snapshot(),
            None,
            "a rebalance in flight is not persisted"
        );
        group.sync(NOW, 31, &a, 2, vec![(b.clone(), Bytes::from_static(b"p1"))]);
        let snapshot = group.snapshot().expect("a stable group is persisted");
        let later = NOW + 60_000;
        let mut restored = Group::restore(&snapshot, later);
        assert_eq!(restored.state(), GroupState::Stable);
        assert_eq!(
            (restored.generation(), restored.leader()),
            (2, Some(a.as_str()))
        );
        assert_eq!(restored.snapshot(), Some(snapshot));
        // Sessions start at the load: nobody expires at once.
        assert!(restored.tick(later + 1).is_empty());
        assert_eq!(restored.heartbeat(later + 1, &b, 2), ErrorCode::None);
        let replies = restored.sync(later + 1, 40, &b, 2, Vec::new());
        assert_eq!(
            sync_response(&replies, 40).assignment,
            Bytes::from_static(b"p1")
        );
        // Held requests are answered when the coordinator gives the group up.
        assert_eq!(
            restored.heartbeat(later + 2, &b, 1),
            ErrorCode::IllegalGeneration
        );
        restored.leave(later + 2, &a);
        let replies = restored.join(later + 2, 50, request(&b, None), 0);
        assert_eq!(join_response(&replies, 50).generation, 3);
        let held = restored.abandon(ErrorCode::NotCoordinator);
        assert!(held.is_empty(), "{held:?}");
    }
}
