//! The groups spec (`specs/groups/groups.qnt`, module `groups`) replayed against the
//! core's real [`GroupCoordinator`], driven alone as the broker drives it
//! (`broker/group_driver.rs`): Kafka requests into `handle_request`, its batches appended
//! to the group's `__consumer_offsets` partition and reported with `appended`, `settle`
//! after every step, `tick` for the timers.
//!
//! Each spec action is the request its header names: `JoinGroup` a `Request::JoinGroup`
//! (no MEMBER_ID_REQUIRED round trip: the spec folds it into the join, so the replay's
//! clients join with `require_member_id` false), `SyncGroup` (the leader's carries the
//! assignment the spec picked, one partition name list per member), `Heartbeat`,
//! `LeaveGroup`, `CommitOffset` an `OffsetCommit` of the client's position, `SessionExpiry`
//! and `RebalanceTimeout` the coordinator's `tick`. What a request names (member id,
//! generation, roster, whether it leads) is the spec client's, read from the state before
//! the step: the clients are the test's side.
//!
//! Member ids: the coordinator makes them, `<client id>-<suffix>`, the suffix drawn from the
//! node's RNG. The replay seeds that RNG, for a fresh member `(c, n)` of the spec (the n-th
//! id client `c` was given), with a seed whose first draw has n in its top byte
//! ([`member_seeds`]), so the code's ids of one client sort as the spec's `MEMBER_ORDER`
//! (the group's leader is its first member in id order).
//!
//! The node around the coordinator is the replay's: the offsets topic has one partition,
//! which it leads, a list of batches (no epoch-opening marker: the spec's offsets are its
//! records) whose high watermark moves one record per `CommitRecord`. A `Failover` closes
//! the shard on the old coordinator and opens it, with the committed batches as recovered
//! bytes, on a new one in the next leader epoch, which `settle` loads. The offsets topic's
//! replication is the replication replay's business.
//!
//! Time: nothing moves the clock but the two timers. A `SessionExpiry(m)` ticks one session
//! timeout later, after heartbeats from every other member at that time (they change
//! nothing but the member's last contact; their replies are not the spec's), so that `m`
//! alone expires; a `RebalanceTimeout` ticks one rebalance timeout later (every member has
//! the same one), after heartbeats from every member. Rebalance timeouts are far longer
//! than a run's session expiries add up to; offsets never expire (the spec has no expiry).
//!
//! After every step the replay compares: the live group's state, generation, leader,
//! members, the members whose JoinGroup or SyncGroup is held, every member's assignment;
//! the replies the step's request or tick produced, sent at once or held until a commit
//! (member, API, error, generation, leader, the leader's roster, assignment, an offset
//! commit's partition and offset); the records appended to the offsets partition (decoded
//! `GroupRecord`s), the coordinator's applied end, the committed offsets
//! (`committed_offset`, what OffsetFetch answers from), the last applied and last written
//! membership, whether the group is live (loaded), and the replies held until a commit with
//! the offset it must reach (as the spec rendered them when held; the keep-alive
//! heartbeats' aside).

use super::{
    boolean, int, list, map, set, string, tuple, variant, Divergence, Replay, Replayed, SpecRun,
    State, Trace,
};
use crate::api::{
    ErrorCode, JoinRequest, LeavingMember, Now, OffsetCommitPartition, Request, RequestId, Response,
};
use crate::group_coordinator::{GroupContext, GroupCoordinator, GroupOutput, GroupRecord};
use crate::groups::{Group, GroupState, MembershipSnapshot};
use crate::internal_log::{InternalPartitions, ShardStatus};
use crate::metadata::TopicPartition;
use crate::records::decode_json_records;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

pub(super) const SPEC: SpecRun = SpecRun {
    protocol: "groups",
    file: "groups.qnt",
    main: "groups",
    traces: 60,
    steps: 25,
};

const PARTITIONS: [&str; 2] = ["p0", "p1"];
/// The shortest session the code allows: each expiry moves the clock by this.
const SESSION_TIMEOUT_MS: i32 = crate::groups::SESSION_TIMEOUT_MIN_MS;
/// Far longer than a run's session expiries add up to.
const REBALANCE_TIMEOUT_MS: i32 = 1_000_000_000;
/// The replay's group.
const GROUP: &str = "g";
/// Longer than any run: the spec does not expire offsets.
const OFFSETS_RETENTION_MS: i64 = i64::MAX / 4;

/// A reply as the coordinator sends it.
type CoordinatorReply = (RequestId, Response);

/// A member id: (client, n), `("", -1)` for none.
type Member = (String, i64);

fn no_member() -> Member {
    (String::new(), -1)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Snapshot {
    generation: i64,
    leader: Member,
    members: BTreeSet<Member>,
    assignment: BTreeMap<Member, BTreeSet<String>>,
}

fn no_snapshot() -> Snapshot {
    Snapshot {
        generation: -1,
        leader: no_member(),
        members: BTreeSet::new(),
        assignment: BTreeMap::new(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Record {
    Offsets { partition: String, offset: i64 },
    Membership(Snapshot),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reply {
    member: Member,
    api: String,
    error: String,
    generation: i64,
    leader: Member,
    roster: BTreeSet<Member>,
    assignment: BTreeSet<String>,
    partition: String,
    offset: i64,
}

/// The spec's `answer(m, api, error)`.
fn answer(member: Member, api: &str, error: &str) -> Reply {
    Reply {
        member,
        api: api.into(),
        error: error.into(),
        generation: -1,
        leader: no_member(),
        roster: BTreeSet::new(),
        assignment: BTreeSet::new(),
        partition: String::new(),
        offset: -1,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Abstraction {
    state: String,
    generation: i64,
    leader: Member,
    members: BTreeSet<Member>,
    awaiting_join: BTreeSet<Member>,
    awaiting_sync: BTreeSet<Member>,
    assignment: BTreeMap<Member, BTreeSet<String>>,
    offsets_log: Vec<Record>,
    applied_end: i64,
    committed: BTreeMap<String, i64>,
    membership: Snapshot,
    written: Snapshot,
    loaded: bool,
    /// Replies held until the offsets log's end reaches the offset with them.
    held: BTreeSet<(Reply, i64)>,
    replies: BTreeSet<Reply>,
}

impl Abstraction {
    fn parts(spec: &Self, code: &Self) -> Vec<(String, String, String)> {
        let part = |name: &str, spec: &dyn std::fmt::Debug, code: &dyn std::fmt::Debug| {
            (name.to_string(), format!("{spec:?}"), format!("{code:?}"))
        };
        vec![
            part("state", &spec.state, &code.state),
            part("generation", &spec.generation, &code.generation),
            part("leader", &spec.leader, &code.leader),
            part("members", &spec.members, &code.members),
            part("awaitingJoin", &spec.awaiting_join, &code.awaiting_join),
            part("awaitingSync", &spec.awaiting_sync, &code.awaiting_sync),
            part("assignment", &spec.assignment, &code.assignment),
            part("offsetsLog", &spec.offsets_log, &code.offsets_log),
            part("appliedEnd", &spec.applied_end, &code.applied_end),
            part("committed", &spec.committed, &code.committed),
            part("membership", &spec.membership, &code.membership),
            part("written", &spec.written, &code.written),
            part("loaded", &spec.loaded, &code.loaded),
            part("held", &spec.held, &code.held),
            part("replies", &spec.replies, &code.replies),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// The spec's state

fn spec_member(value: &Value) -> Member {
    match tuple(value) {
        [client, n] => (string(client).to_string(), int(n)),
        _ => panic!("not a member id: {value}"),
    }
}

fn spec_members(value: &Value) -> BTreeSet<Member> {
    set(value).iter().map(spec_member).collect()
}

fn spec_partitions(value: &Value) -> BTreeSet<String> {
    set(value).iter().map(|p| string(p).to_string()).collect()
}

fn spec_assignment(value: &Value) -> BTreeMap<Member, BTreeSet<String>> {
    map(value)
        .into_iter()
        .map(|(member, partitions)| (spec_member(member), spec_partitions(partitions)))
        .collect()
}

fn spec_snapshot(value: &Value) -> Snapshot {
    Snapshot {
        generation: int(&value["generation"]),
        leader: spec_member(&value["leader"]),
        members: spec_members(&value["members"]),
        assignment: spec_assignment(&value["assignment"]),
    }
}

fn spec_reply(value: &Value) -> Reply {
    Reply {
        member: spec_member(&value["member"]),
        api: string(&value["api"]).into(),
        error: string(&value["error"]).into(),
        generation: int(&value["generation"]),
        leader: spec_member(&value["leader"]),
        roster: spec_members(&value["roster"]),
        assignment: spec_partitions(&value["assignment"]),
        partition: string(&value["partition"]).into(),
        offset: int(&value["offset"]),
    }
}

fn spec_abstraction(state: &State) -> Abstraction {
    Abstraction {
        state: string(state.var("state")).into(),
        generation: int(state.var("generation")),
        leader: spec_member(state.var("leader")),
        members: spec_members(state.var("members")),
        awaiting_join: spec_members(state.var("awaitingJoin")),
        awaiting_sync: spec_members(state.var("awaitingSync")),
        assignment: spec_assignment(state.var("assignment")),
        offsets_log: list(state.var("offsetsLog"))
            .iter()
            .map(|record| match variant(record) {
                ("Offsets", o) => Record::Offsets {
                    partition: string(&o["partition"]).into(),
                    offset: int(&o["offset"]),
                },
                ("Membership", s) => Record::Membership(spec_snapshot(s)),
                (other, _) => panic!("unknown offsets record {other}"),
            })
            .collect(),
        applied_end: int(state.var("appliedEnd")),
        committed: map(state.var("committed"))
            .into_iter()
            .map(|(p, offset)| (string(p).to_string(), int(offset)))
            .collect(),
        membership: spec_snapshot(state.var("membership")),
        written: spec_snapshot(state.var("written")),
        loaded: boolean(state.var("loaded")),
        held: set(state.var("held"))
            .iter()
            .map(|held| (spec_reply(held), int(&held["waitFor"])))
            .collect(),
        replies: set(state.var("replies")).iter().map(spec_reply).collect(),
    }
}

/// The spec's client `c` in `state`.
struct Client {
    member: Member,
    joins: i64,
    generation: i32,
    is_leader: bool,
    roster: BTreeSet<Member>,
    position: BTreeMap<String, i64>,
}

fn spec_client(state: &State, c: &str) -> Client {
    let client = map(state.var("clients"))
        .into_iter()
        .find(|(name, _)| string(name) == c)
        .map(|(_, client)| client)
        .unwrap_or_else(|| panic!("no client {c}"));
    Client {
        member: spec_member(&client["memberId"]),
        joins: int(&client["joins"]),
        generation: i32::try_from(int(&client["generation"])).expect("a generation fits an i32"),
        is_leader: boolean(&client["isLeader"]),
        roster: spec_members(&client["roster"]),
        position: map(&client["position"])
            .into_iter()
            .map(|(p, offset)| (string(p).to_string(), int(offset)))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// The code's side

/// The code's member id for the spec's `(client, n)`: the coordinator makes it,
/// `<client>-<suffix>`, with a suffix drawn from the node's RNG, which the replay seeds so
/// that the suffix's top byte is n (see [`member_seeds`]).
fn member_id((client, n): &Member) -> String {
    if *n < 0 {
        return String::new();
    }
    let n = usize::try_from(*n).expect("n is counted from 0");
    format!("{client}-{:016x}", member_seeds()[n].1)
}

/// For each n < 256, a seed of the node's RNG whose first draw (the member-id suffix the
/// coordinator gives a fresh member) has n in its top byte, and that draw: the code's
/// member ids of one client then sort as the spec's `(client, n)`, its `MEMBER_ORDER`.
fn member_seeds() -> &'static [(u64, u64); 256] {
    static SEEDS: OnceLock<[(u64, u64); 256]> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = [None; 256];
        let mut seed = 0;
        while seeds.iter().any(Option::is_none) {
            let suffix: u64 = StdRng::seed_from_u64(seed).random();
            seeds[usize::try_from(suffix >> 56).unwrap_or(0)].get_or_insert((seed, suffix));
            seed += 1;
        }
        seeds.map(|found| found.unwrap_or_default())
    })
}

/// The spec's member id for the code's: the client, and the suffix's top byte.
fn code_member(member_id: &str) -> Member {
    if member_id.is_empty() {
        return no_member();
    }
    let (client, suffix) = member_id
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("member id {member_id} is not <client>-<suffix>"));
    let suffix = u64::from_str_radix(suffix, 16)
        .unwrap_or_else(|_| panic!("member id {member_id} does not end in hex"));
    (
        client.to_string(),
        i64::try_from(suffix >> 56).unwrap_or(-1),
    )
}

/// An assignment as the replay's leader encodes it: partition names, comma-separated.
fn encode_assignment(partitions: &BTreeSet<String>) -> Bytes {
    let names: Vec<&str> = partitions.iter().map(String::as_str).collect();
    Bytes::from(names.join(","))
}

fn decode_assignment(bytes: &Bytes) -> BTreeSet<String> {
    std::str::from_utf8(bytes)
        .expect("the replay's assignments are text")
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

fn error_name(error: ErrorCode) -> String {
    match error {
        ErrorCode::None => "NONE".into(),
        ErrorCode::UnknownMemberId => "UNKNOWN_MEMBER_ID".into(),
        ErrorCode::IllegalGeneration => "ILLEGAL_GENERATION".into(),
        ErrorCode::RebalanceInProgress => "REBALANCE_IN_PROGRESS".into(),
        other => format!("{other:?}"),
    }
}

fn code_snapshot(snapshot: Option<&MembershipSnapshot>) -> Snapshot {
    let Some(snapshot) = snapshot else {
        return no_snapshot();
    };
    Snapshot {
        generation: snapshot.generation.into(),
        leader: snapshot
            .leader
            .as_deref()
            .map_or_else(no_member, code_member),
        members: snapshot
            .members
            .iter()
            .map(|member| code_member(&member.member_id))
            .collect(),
        assignment: snapshot
            .members
            .iter()
            .map(|member| {
                (
                    code_member(&member.member_id),
                    decode_assignment(&member.assignment),
                )
            })
            .collect(),
    }
}

/// The offsets topic's one partition as the replay's node sees it.
struct OffsetsPartition(ShardStatus);

impl InternalPartitions for OffsetsPartition {
    fn partition_count(&self) -> Option<i32> {
        Some(1)
    }

    fn status(&self, index: i32) -> Option<ShardStatus> {
        (index == 0).then_some(self.0)
    }
}

/// The cluster as the spec sees it: one topic `t`, of partitions `p0` and `p1`.
fn spec_topics() -> crate::metadata::ClusterMetadata {
    let mut metadata = crate::metadata::ClusterMetadata::new("cluster", Vec::new());
    metadata.topics.insert(
        "t".into(),
        crate::metadata::TopicMetadata {
            name: "t".into(),
            topic_id: 1,
            partition_count: 2,
            config: crate::metadata::TopicConfig::default(),
            assignments: Vec::new(),
        },
    );
    metadata
}

/// The data partition the spec names `p`: `p0` is partition 0 of topic `t`.
fn topic_partition(p: &str) -> TopicPartition {
    TopicPartition {
        topic: "t".into(),
        partition: p
            .strip_prefix('p')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("partition {p} is not p<n>")),
    }
}

/// The real group coordinator, hosting the offsets partition of the replay's group, and
/// the node around it: the offsets partition as a list of batches whose high watermark
/// moves when the spec commits a record.
struct System {
    coordinator: GroupCoordinator,
    status: ShardStatus,
    /// The batches appended to the offsets partition, their base offsets set.
    batches: Vec<(i64, Bytes)>,
    /// Every record of the offsets partition, decoded as the spec sees it.
    records: Vec<Record>,
    now_ms: i64,
    next_request: RequestId,
    /// Who sent each request (and an OffsetCommit's partition and offset), to attribute
    /// the replies.
    senders: BTreeMap<RequestId, (Member, String, i64)>,
    /// The heartbeats the replay sends to keep sessions alive: their replies are not the
    /// spec's.
    keep_alives: BTreeSet<RequestId>,
    replies: BTreeSet<Reply>,
    /// The held replies, as the spec saw them when they were held (a SyncGroup answer's
    /// generation is the group's then).
    held: BTreeMap<RequestId, Reply>,
    /// The cluster's topics: `t`, of the spec's partitions `p0` and `p1`.
    metadata: crate::metadata::ClusterMetadata,
    #[cfg(feature = "defects")]
    defect: Option<crate::defects::Defect>,
}

impl System {
    fn new(_defect: Option<&str>) -> Self {
        let mut system = Self {
            coordinator: GroupCoordinator::new(OFFSETS_RETENTION_MS),
            // The spec's coordinator epoch 0 is the partition's leader epoch 1.
            status: ShardStatus {
                high_watermark: 0,
                epoch: 1,
                leader: true,
                serves_reads: true,
            },
            batches: Vec::new(),
            records: Vec::new(),
            metadata: spec_topics(),
            now_ms: 0,
            next_request: 0,
            senders: BTreeMap::new(),
            keep_alives: BTreeSet::new(),
            replies: BTreeSet::new(),
            held: BTreeMap::new(),
            #[cfg(feature = "defects")]
            defect: _defect.and_then(crate::defects::Defect::from_name),
        };
        system.coordinator = system.new_coordinator();
        system
            .coordinator
            .open_shard(0, None, 0, 0)
            .expect("nothing to replay");
        system.settle();
        system
    }

    fn new_coordinator(&self) -> GroupCoordinator {
        let coordinator = GroupCoordinator::new(OFFSETS_RETENTION_MS);
        #[cfg(feature = "defects")]
        let coordinator = coordinator.with_defect(self.defect);
        coordinator
    }

    fn log_end(&self) -> i64 {
        self.records.len() as i64
    }

    fn settle(&mut self) -> Vec<CoordinatorReply> {
        let offsets = OffsetsPartition(self.status);
        let mut rng = StdRng::seed_from_u64(0);
        let context = GroupContext {
            now: Now::aligned(self.now_ms),
            offsets: &offsets,
            rng: &mut rng,
            metadata: &self.metadata,
        };
        self.coordinator.settle(&context)
    }

    /// Does what the coordinator asks, as the broker does (the replay's node leads the
    /// offsets partition): appends its batches and reports them. Returns the replies sent.
    fn execute(&mut self, outputs: Vec<GroupOutput>) -> Vec<CoordinatorReply> {
        let mut replies = Vec::new();
        for output in outputs {
            match output {
                GroupOutput::Respond { id, response } => replies.push((id, response)),
                GroupOutput::Append {
                    partition,
                    batch,
                    write,
                } => {
                    assert_eq!(partition, 0, "the group's offsets partition");
                    let base_offset = self.log_end();
                    let mut bytes = batch.to_vec();
                    bytes[..8].copy_from_slice(&crate::batch::base_offset_bytes(base_offset));
                    let bytes = Bytes::from(bytes);
                    let header = crate::batch::validate(&bytes).expect("a valid batch");
                    let last_offset = base_offset + header.offset_count() - 1;
                    self.coordinator
                        .on_appended(0, &header, base_offset, last_offset, &bytes)
                        .expect("the coordinator's batches decode");
                    let records = decode_json_records::<GroupRecord>(&header, &bytes)
                        .expect("the coordinator's records decode");
                    for record in records {
                        self.records.extend(spec_records(record));
                    }
                    assert_eq!(
                        self.log_end(),
                        last_offset + 1,
                        "one spec record per record"
                    );
                    self.batches.push((base_offset, bytes));
                    replies.extend(
                        self.coordinator
                            .appended(write, Some((last_offset + 1, self.status.epoch))),
                    );
                }
                other => panic!("the groups replay sends no transactional request: {other:?}"),
            }
        }
        replies
    }

    /// Sends `request` from `sender` (the coordinator's RNG seeded with `seed`); returns the
    /// replies sent at once.
    fn send(
        &mut self,
        sender: Member,
        committing: Option<(String, i64)>,
        seed: u64,
        request: Request,
    ) -> Vec<CoordinatorReply> {
        self.next_request += 1;
        let id = self.next_request;
        let (partition, offset) = committing.unwrap_or((String::new(), -1));
        self.senders.insert(id, (sender, partition, offset));
        let offsets = OffsetsPartition(self.status);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut context = GroupContext {
            now: Now::aligned(self.now_ms),
            offsets: &offsets,
            rng: &mut rng,
            metadata: &self.metadata,
        };
        let outputs = self.coordinator.handle_request(&mut context, id, request);
        self.execute(outputs)
    }

    /// The replies of a step: those sent, and those held from now on (the spec's `replies`
    /// counts both), but the replay's keep-alive heartbeats'.
    fn step_replies(
        &mut self,
        sent: Vec<CoordinatorReply>,
        held_before: &BTreeSet<RequestId>,
    ) -> BTreeSet<Reply> {
        let held: Vec<CoordinatorReply> = self
            .coordinator
            .held_replies()
            .map(|(_, reply)| reply)
            .filter(|(id, _)| !held_before.contains(id))
            .cloned()
            .collect();
        for (id, response) in &held {
            let rendered = self.reply((*id, response.clone()));
            self.held.insert(*id, rendered);
        }
        sent.into_iter()
            .chain(held)
            .filter(|(id, _)| !self.keep_alives.contains(id))
            .map(|reply| self.reply(reply))
            .collect()
    }

    fn held_ids(&self) -> BTreeSet<RequestId> {
        self.coordinator
            .held_replies()
            .map(|(_, (id, _))| *id)
            .collect()
    }

    /// The spec's view of one of the coordinator's replies.
    fn reply(&self, (id, response): CoordinatorReply) -> Reply {
        let (member, partition, offset) = self.senders[&id].clone();
        match response {
            Response::JoinGroup(response) => Reply {
                generation: response.generation.into(),
                leader: code_member(&response.leader),
                roster: response
                    .members
                    .iter()
                    .map(|(member, _, _)| code_member(member))
                    .collect(),
                ..answer(member, "JoinGroup", &error_name(response.error))
            },
            Response::SyncGroup(response) => Reply {
                // A SyncResponse carries no generation: a successful one is the group's
                // current generation, as the spec's reply names it.
                generation: if response.error == ErrorCode::None {
                    self.coordinator
                        .live_group(GROUP)
                        .map_or(-1, |group| group.generation().into())
                } else {
                    -1
                },
                assignment: decode_assignment(&response.assignment),
                ..answer(member, "SyncGroup", &error_name(response.error))
            },
            Response::Heartbeat { error } => answer(member, "Heartbeat", &error_name(error)),
            Response::LeaveGroup { error, members } => {
                let error = members.first().map_or(error, |(_, error)| *error);
                answer(member, "LeaveGroup", &error_name(error))
            }
            Response::OffsetCommit(results) => {
                let error = results.first().map_or(ErrorCode::None, |(_, error)| *error);
                Reply {
                    partition,
                    offset,
                    ..answer(member, "OffsetCommit", &error_name(error))
                }
            }
            other => panic!("not a reply the groups replay expects: {other:?}"),
        }
    }

    /// Heartbeats from `members` at the current time: they keep those sessions alive and
    /// change nothing else.
    fn keep_alive(&mut self, members: &[String]) {
        let generation = self
            .coordinator
            .live_group(GROUP)
            .map_or(0, Group::generation);
        for member in members {
            let request = Request::Heartbeat {
                group_id: GROUP.into(),
                member_id: member.clone(),
                group_instance_id: None,
                generation,
            };
            let sent = self.send(code_member(member), None, 0, request);
            self.keep_alives.insert(self.next_request);
            assert!(
                sent.iter().all(|(id, _)| self.keep_alives.contains(id)),
                "a keep-alive heartbeat released other replies: {sent:?}"
            );
        }
    }

    fn live_members(&self) -> Vec<String> {
        self.coordinator
            .live_group(GROUP)
            .map(|group| group.member_ids().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The coordinator's timers at the current time.
    fn tick(&mut self) -> Vec<CoordinatorReply> {
        let outputs = self.coordinator.tick(Now::aligned(self.now_ms));
        self.execute(outputs)
    }

    fn take_step(&mut self, before: &State, state: &State) {
        let c = state.pick("c").map(|c| string(c).to_string());
        let client = || {
            let c = c.as_deref().expect("the action names a client");
            spec_client(before, c)
        };
        let held_before = self.held_ids();
        let sent = match state.action.as_str() {
            "JoinGroup" => {
                let client = client();
                let c = c.as_deref().unwrap_or_default();
                let fresh = client.member == no_member();
                let sender = if fresh {
                    (c.to_string(), client.joins)
                } else {
                    client.member.clone()
                };
                let join = JoinRequest {
                    member_id: if fresh {
                        String::new()
                    } else {
                        member_id(&client.member)
                    },
                    group_instance_id: None,
                    client_id: c.to_string(),
                    client_host: "/127.0.0.1".into(),
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), Bytes::new())],
                    session_timeout_ms: SESSION_TIMEOUT_MS,
                    rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
                    require_member_id: false,
                };
                let seed = if fresh {
                    member_seeds()[usize::try_from(client.joins).expect("joins are counted from 0")]
                        .0
                } else {
                    0
                };
                let request = Request::JoinGroup {
                    group_id: GROUP.into(),
                    join,
                };
                self.send(sender, None, seed, request)
            }
            "SyncGroup" => {
                let client = client();
                let roster = if client.roster.is_empty() {
                    BTreeSet::from([client.member.clone()])
                } else {
                    client.roster.clone()
                };
                let owners: BTreeMap<String, Member> = map(state.picked("owners"))
                    .into_iter()
                    .map(|(p, owner)| (string(p).to_string(), spec_member(owner)))
                    .collect();
                let assignments = if client.is_leader {
                    roster
                        .iter()
                        .map(|member| {
                            let owned = owners
                                .iter()
                                .filter(|(_, owner)| *owner == member)
                                .map(|(p, _)| p.clone())
                                .collect();
                            (member_id(member), encode_assignment(&owned))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let request = Request::SyncGroup {
                    group_id: GROUP.into(),
                    member_id: member_id(&client.member),
                    group_instance_id: None,
                    generation: client.generation,
                    assignments,
                };
                self.send(client.member, None, 0, request)
            }
            "Heartbeat" => {
                let client = client();
                let request = Request::Heartbeat {
                    group_id: GROUP.into(),
                    member_id: member_id(&client.member),
                    group_instance_id: None,
                    generation: client.generation,
                };
                self.send(client.member, None, 0, request)
            }
            "LeaveGroup" => {
                let client = client();
                let request = Request::LeaveGroup {
                    group_id: GROUP.into(),
                    members: vec![LeavingMember {
                        member_id: member_id(&client.member),
                        group_instance_id: None,
                    }],
                };
                self.send(client.member, None, 0, request)
            }
            "SessionExpiry" => {
                let expiring = member_id(&spec_member(state.picked("m")));
                self.now_ms += i64::from(SESSION_TIMEOUT_MS);
                let others: Vec<String> = self
                    .live_members()
                    .into_iter()
                    .filter(|member| *member != expiring)
                    .collect();
                self.keep_alive(&others);
                self.tick()
            }
            "RebalanceTimeout" => {
                self.now_ms += i64::from(REBALANCE_TIMEOUT_MS);
                let everyone = self.live_members();
                self.keep_alive(&everyone);
                self.tick()
            }
            "CommitOffset" => {
                let client = client();
                let partition = string(state.picked("p")).to_string();
                let offset = client.position[&partition];
                let request = Request::OffsetCommit {
                    group_id: GROUP.into(),
                    member_id: member_id(&client.member),
                    group_instance_id: None,
                    generation: client.generation,
                    commits: vec![OffsetCommitPartition {
                        partition: topic_partition(&partition),
                        offset,
                        metadata: None,
                        leader_epoch: -1,
                    }],
                };
                self.send(client.member, Some((partition, offset)), 0, request)
            }
            "Consume" => {
                // The client's alone.
                Vec::new()
            }
            "CommitRecord" => {
                // The replies it releases were the replies of the steps that held them.
                self.status.high_watermark += 1;
                self.settle();
                self.replies.clear();
                return;
            }
            "Failover" => {
                // Another node leads the offsets partition in the next epoch, with what
                // was committed: the old coordinator closes the shard (the requests it
                // held are answered NOT_COORDINATOR; the spec's clients learn it by
                // themselves), the new one opens it with the committed batches and loads
                // its groups.
                self.coordinator.close_shard(0);
                let committed = self.status.high_watermark;
                self.batches
                    .retain(|(base_offset, _)| *base_offset < committed);
                self.records
                    .truncate(usize::try_from(committed).unwrap_or(0));
                let recovered: Vec<u8> = self
                    .batches
                    .iter()
                    .flat_map(|(_, bytes)| bytes.iter().copied())
                    .collect();
                self.coordinator = self.new_coordinator();
                self.coordinator
                    .open_shard(0, Some(&Bytes::from(recovered)), 0, committed)
                    .expect("the recovered batches decode");
                self.status.epoch += 1;
                self.settle();
                self.replies.clear();
                return;
            }
            other => panic!("the groups replay does not know action {other}"),
        };
        let mut sent = sent;
        // The node settles after every step (nothing was committed: it releases nothing).
        sent.extend(self.settle());
        self.replies = self.step_replies(sent, &held_before);
    }

    fn abstraction(&self) -> Abstraction {
        let new_group = Group::new();
        let live = self.coordinator.live_group(GROUP);
        let group = live.unwrap_or(&new_group);
        let (membership, written) = self.coordinator.memberships(GROUP);
        Abstraction {
            state: match group.state() {
                GroupState::Empty => "Empty",
                GroupState::PreparingRebalance => "PreparingRebalance",
                GroupState::CompletingRebalance => "CompletingRebalance",
                GroupState::Stable => "Stable",
            }
            .into(),
            generation: group.generation().into(),
            leader: group.leader().map_or_else(no_member, code_member),
            members: group.member_ids().map(code_member).collect(),
            awaiting_join: group.awaiting_join().map(code_member).collect(),
            awaiting_sync: group.awaiting_sync().map(code_member).collect(),
            assignment: group
                .describe()
                .members
                .iter()
                .map(|member| {
                    (
                        code_member(&member.member_id),
                        decode_assignment(&member.assignment),
                    )
                })
                .collect(),
            offsets_log: self.records.clone(),
            applied_end: self.coordinator.applied_end(0).unwrap_or(-1),
            committed: PARTITIONS
                .iter()
                .map(|p| {
                    let offset = self
                        .coordinator
                        .committed_offset(GROUP, &topic_partition(p));
                    (p.to_string(), offset)
                })
                .collect(),
            membership: code_snapshot(membership),
            written: code_snapshot(written),
            loaded: live.is_some(),
            held: self
                .coordinator
                .held_replies()
                .filter(|(_, (id, _))| !self.keep_alives.contains(id))
                .map(|(commit_end, (id, _))| (self.held[id].clone(), commit_end))
                .collect(),
            replies: self.replies.clone(),
        }
    }
}

/// The spec's records for one of the offsets log's.
fn spec_records(record: GroupRecord) -> Vec<Record> {
    match record {
        GroupRecord::Offsets { commits, .. } => commits
            .into_iter()
            .map(|(partition, offset, _)| Record::Offsets {
                partition: format!("p{}", partition.partition),
                offset,
            })
            .collect(),
        GroupRecord::Membership { snapshot, .. } => {
            vec![Record::Membership(code_snapshot(Some(&snapshot)))]
        }
        other => panic!("a record the spec does not write: {other:?}"),
    }
}

impl Replay for System {
    type Abstraction = Abstraction;
    const TEST: &'static str = "mbt::groups::groups_spec_traces_replay_on_the_code";

    fn apply(&mut self, before: &State, state: &State) -> Result<(), String> {
        self.take_step(before, state);
        Ok(())
    }

    fn spec_abstraction(state: &State) -> Abstraction {
        spec_abstraction(state)
    }

    fn code_abstraction(&self) -> Abstraction {
        self.abstraction()
    }

    fn parts(spec: &Abstraction, code: &Abstraction) -> Vec<(String, String, String)> {
        Abstraction::parts(spec, code)
    }
}

/// Replays `trace`; `defect` is a group coordinator defect the coordinator runs with.
fn replay(trace: &Trace, defect: Option<&str>) -> Result<Replayed, Box<Divergence>> {
    super::replay_on(trace, System::new(defect))
}

fn traces() -> &'static [Trace] {
    super::traces(&SPEC)
}

/// Every trace of the spec replays on the code without a divergence.
#[test]
fn groups_spec_traces_replay_on_the_code() {
    let traces = traces();
    let mut compared = 0;
    for trace in traces {
        match replay(trace, None) {
            Ok(replayed) => compared += replayed.steps(),
            Err(divergence) => panic!("{divergence}"),
        }
    }
    eprintln!(
        "mbt groups: {} traces, {compared} steps compared",
        traces.len()
    );
}

/// The comparison is not vacuous: a trace whose spec state was altered at one step (the
/// group's generation one higher) diverges at that step.
#[test]
fn groups_replay_reports_an_altered_spec_state() {
    let mut trace = traces()
        .iter()
        .find(|trace| trace.states.len() > 5)
        .expect("a trace of more than 5 states")
        .clone();
    let generation = int(trace.states[5].var("generation"));
    trace.states[5].vars.insert(
        "generation".into(),
        serde_json::json!({ "#bigint": (generation + 1).to_string() }),
    );
    let divergence = replay(&trace, None).expect_err("the altered state is noticed");
    assert_eq!(divergence.step, 5);
    assert!(
        divergence.differences[0].starts_with("generation:"),
        "{divergence}"
    );
}

/// The group coordinator's defects, switched on in the real coordinator, make some trace
/// of the correct spec diverge.
#[cfg(feature = "defects")]
#[test]
fn group_coordinator_defects_diverge_from_the_spec() {
    for defect in crate::defects::Defect::GROUPS {
        super::assert_defect_caught("groups", defect, traces(), |trace| {
            replay(trace, Some(defect.name()))
        });
    }
}
