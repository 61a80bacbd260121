//! The groups spec (`specs/groups/groups.qnt`, module `groups`) replayed against the
//! core's [`Group`] state machine.
//!
//! Each spec action is the `Group` call its header names: `JoinGroup` `Group::join` (no
//! MEMBER_ID_REQUIRED round trip: the spec folds it into the join, so the replay's clients
//! join with `require_member_id` false; the spec's member id `(c, n)`, the n-th id client
//! `c` was given, is the code's `c-<n as 16 hex digits>`, which sorts as the spec's
//! `MEMBER_ORDER`), `SyncGroup` `Group::sync` (the leader's carries the assignment the spec
//! picked, one partition name list per member), `Heartbeat`, `LeaveGroup`, `CommitOffset`
//! `Group::check_commit`, `SessionExpiry` and `RebalanceTimeout` `Group::tick`. What a
//! request names (member id, generation, roster, whether it leads) is the spec client's,
//! read from the state before the step: the clients are the test's side.
//!
//! Time: nothing moves the clock but the two timers. A `SessionExpiry(m)` ticks one session
//! timeout later, after heartbeats from every other member at that time (they change
//! nothing but the member's last contact), so that `m` alone expires; a `RebalanceTimeout`
//! ticks one rebalance timeout later (every member has the same one), after heartbeats from
//! every member. Rebalance timeouts are far longer than a run's session expiries add up to.
//!
//! The coordinator around the group (`broker/coordinator.rs`: the `__consumer_offsets`
//! records, the offsets and membership a new coordinator loads, held replies, failover) is
//! not driven: the broker is another module's, being refactored. The replay keeps a
//! stand-in of it that does what the spec's `finish`, `CommitRecord` and `Failover` say,
//! with the code's own `Group::snapshot` (what is written) and `Group::restore` (what a new
//! coordinator starts from): comparing the offsets log, the applied offsets and the
//! membership checks those two functions and `check_commit`'s verdicts, not the broker's
//! bookkeeping.
//!
//! After every step the replay compares: the group's state, generation, leader, members,
//! the members whose JoinGroup or SyncGroup is held, every member's assignment; the replies
//! the step's `Group` call produced (member, API, error, generation, leader, the leader's
//! roster, assignment, offset commit's partition and offset); and the stand-in's offsets
//! log, applied end, committed offsets, last applied and last written membership, and
//! whether the group is loaded.

use super::{
    boolean, differences, int, list, map, set, string, tuple, variant, Divergence, Replayed,
    SpecRun, State, Trace,
};
use crate::api::{ErrorCode, RequestId};
use crate::groups::{Group, GroupReply, GroupState, JoinRequest, MembershipSnapshot};
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

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

/// The code's member id for the spec's.
fn member_id((client, n): &Member) -> String {
    if *n < 0 {
        String::new()
    } else {
        format!("{client}-{n:016x}")
    }
}

/// The spec's member id for the code's.
fn code_member(member_id: &str) -> Member {
    if member_id.is_empty() {
        return no_member();
    }
    let (client, n) = member_id
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("member id {member_id} is not <client>-<n>"));
    let n = i64::from_str_radix(n, 16)
        .unwrap_or_else(|_| panic!("member id {member_id} does not end in hex"));
    (client.to_string(), n)
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

fn code_snapshot(snapshot: &Option<MembershipSnapshot>) -> Snapshot {
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

/// A record of the offsets log, as the stand-in coordinator writes it.
#[derive(Debug, Clone)]
enum CodeRecord {
    Offsets { partition: String, offset: i64 },
    Membership(Option<MembershipSnapshot>),
}

/// The group, and a stand-in for the coordinator around it (see the module doc).
struct System {
    group: Group,
    now_ms: i64,
    next_request: RequestId,
    /// Who sent each request, to attribute the replies.
    senders: BTreeMap<RequestId, Member>,
    log: Vec<CodeRecord>,
    applied_end: usize,
    committed: BTreeMap<String, i64>,
    membership: Option<MembershipSnapshot>,
    written: Option<MembershipSnapshot>,
    loaded: bool,
    replies: BTreeSet<Reply>,
    /// The group coordinator's defect the stand-in runs with (it lives in the broker).
    #[cfg(feature = "defects")]
    defect: Option<crate::defects::Defect>,
}

impl System {
    fn new() -> Self {
        Self {
            group: Group::new(),
            now_ms: 0,
            next_request: 0,
            senders: BTreeMap::new(),
            log: Vec::new(),
            applied_end: 0,
            committed: PARTITIONS.iter().map(|p| (p.to_string(), -1)).collect(),
            membership: None,
            written: None,
            loaded: false,
            replies: BTreeSet::new(),
            #[cfg(feature = "defects")]
            defect: None,
        }
    }

    fn has_defect(&self, _defect: &str) -> bool {
        #[cfg(feature = "defects")]
        return self.defect.is_some_and(|defect| defect.name() == _defect);
        #[cfg(not(feature = "defects"))]
        false
    }

    fn request(&mut self, sender: &Member) -> RequestId {
        self.next_request += 1;
        self.senders.insert(self.next_request, sender.clone());
        self.next_request
    }

    /// The spec's view of the code's replies.
    fn replies(&self, replies: Vec<GroupReply>) -> BTreeSet<Reply> {
        replies
            .into_iter()
            .map(|reply| match reply {
                GroupReply::Join { id, response } => Reply {
                    member: self.senders[&id].clone(),
                    api: "JoinGroup".into(),
                    error: error_name(response.error),
                    generation: response.generation.into(),
                    leader: code_member(&response.leader),
                    roster: response
                        .members
                        .iter()
                        .map(|(member, _, _)| code_member(member))
                        .collect(),
                    assignment: BTreeSet::new(),
                    partition: String::new(),
                    offset: -1,
                },
                GroupReply::Sync { id, response } => Reply {
                    member: self.senders[&id].clone(),
                    api: "SyncGroup".into(),
                    error: error_name(response.error),
                    // A SyncResponse carries no generation: a successful one is the
                    // group's current generation, as the spec's reply names it.
                    generation: if response.error == ErrorCode::None {
                        self.group.generation().into()
                    } else {
                        -1
                    },
                    leader: no_member(),
                    roster: BTreeSet::new(),
                    assignment: decode_assignment(&response.assignment),
                    partition: String::new(),
                    offset: -1,
                },
            })
            .collect()
    }

    /// Broker::finish_group_operation as the spec's `finish` says: the membership written
    /// if `Group::snapshot` changed (for a loaded group), after `records`.
    fn finish(&mut self, records: Vec<CodeRecord>, replies: BTreeSet<Reply>, creates: bool) {
        let snapshot = self.group.snapshot();
        let loaded = self.loaded || creates;
        self.log.extend(records);
        if loaded && snapshot.is_some() && snapshot != self.written {
            self.log.push(CodeRecord::Membership(snapshot.clone()));
            self.written = snapshot;
        }
        self.loaded = loaded;
        self.replies = replies;
    }

    /// Heartbeats from `members` at the current time: they keep those sessions alive and
    /// change nothing else.
    fn keep_alive(&mut self, members: &[String]) {
        let generation = self.group.generation();
        for member in members {
            self.group.heartbeat(self.now_ms, member, generation);
        }
    }

    fn apply(&mut self, before: &State, state: &State) {
        let c = state.pick("c").map(|c| string(c).to_string());
        let client = || {
            let c = c.as_deref().expect("the action names a client");
            spec_client(before, c)
        };
        match state.action.as_str() {
            "JoinGroup" => {
                let client = client();
                let c = c.as_deref().unwrap_or_default();
                let fresh = client.member == no_member();
                let sender = if fresh {
                    (c.to_string(), client.joins)
                } else {
                    client.member.clone()
                };
                let id = self.request(&sender);
                let request = JoinRequest {
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
                let suffix = u64::try_from(client.joins).expect("joins are counted from 0");
                let replies = self.group.join(self.now_ms, id, request, suffix);
                let replies = self.replies(replies);
                self.finish(Vec::new(), replies, true);
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
                let id = self.request(&client.member);
                let replies = self.group.sync(
                    self.now_ms,
                    id,
                    &member_id(&client.member),
                    client.generation,
                    assignments,
                );
                let replies = self.replies(replies);
                self.finish(Vec::new(), replies, true);
            }
            "Heartbeat" => {
                let client = client();
                let error = self.group.heartbeat(
                    self.now_ms,
                    &member_id(&client.member),
                    client.generation,
                );
                let reply = answer(client.member, "Heartbeat", &error_name(error));
                self.finish(Vec::new(), BTreeSet::from([reply]), false);
            }
            "LeaveGroup" => {
                let client = client();
                let (error, replies) = self.group.leave(self.now_ms, &member_id(&client.member));
                let mut replies = self.replies(replies);
                replies.insert(answer(client.member, "LeaveGroup", &error_name(error)));
                self.finish(Vec::new(), replies, false);
            }
            "SessionExpiry" => {
                let expiring = member_id(&spec_member(state.picked("m")));
                self.now_ms += i64::from(SESSION_TIMEOUT_MS);
                let others: Vec<String> = self
                    .group
                    .member_ids()
                    .filter(|member| *member != expiring)
                    .map(str::to_string)
                    .collect();
                self.keep_alive(&others);
                let replies = self.group.tick(self.now_ms);
                let replies = self.replies(replies);
                self.finish(Vec::new(), replies, false);
            }
            "RebalanceTimeout" => {
                self.now_ms += i64::from(REBALANCE_TIMEOUT_MS);
                let everyone: Vec<String> = self.group.member_ids().map(str::to_string).collect();
                self.keep_alive(&everyone);
                let replies = self.group.tick(self.now_ms);
                let replies = self.replies(replies);
                self.finish(Vec::new(), replies, false);
            }
            "CommitOffset" => {
                let client = client();
                let partition = string(state.picked("p")).to_string();
                let offset = client.position[&partition];
                let member = member_id(&client.member);
                // coordinator.rs under AcceptStaleGenerationCommit: a member's commit is
                // not checked.
                let verdict =
                    if self.has_defect("accept-stale-generation-commit") && !member.is_empty() {
                        Ok(())
                    } else {
                        self.group
                            .check_commit(self.now_ms, &member, client.generation)
                    };
                let error = verdict.err().unwrap_or(ErrorCode::None);
                let records = if error == ErrorCode::None {
                    vec![CodeRecord::Offsets {
                        partition: partition.clone(),
                        offset,
                    }]
                } else {
                    Vec::new()
                };
                let reply = Reply {
                    partition,
                    offset,
                    ..answer(client.member, "OffsetCommit", &error_name(error))
                };
                self.finish(records, BTreeSet::from([reply]), true);
            }
            "Consume" => {
                // The client's alone.
                self.replies.clear();
            }
            "CommitRecord" => {
                let record = self.log[self.applied_end].clone();
                match record {
                    CodeRecord::Offsets { partition, offset } => {
                        self.committed.insert(partition, offset);
                    }
                    CodeRecord::Membership(snapshot) => self.membership = snapshot,
                }
                self.applied_end += 1;
                self.replies.clear();
            }
            "Failover" => {
                // coordinator.rs under LoseOffsetsOnFailover: the new coordinator starts
                // from nothing.
                if self.has_defect("lose-offsets-on-failover") {
                    self.membership = None;
                    for offset in self.committed.values_mut() {
                        *offset = -1;
                    }
                }
                let group = match &self.membership {
                    Some(snapshot) => Group::restore(snapshot, self.now_ms),
                    None => Group::new(),
                };
                // The old coordinator answers what it held NOT_COORDINATOR; the spec's
                // clients learn it by themselves.
                let _ =
                    std::mem::replace(&mut self.group, group).abandon(ErrorCode::NotCoordinator);
                self.log.truncate(self.applied_end);
                self.written = self.membership.clone();
                self.loaded =
                    self.membership.is_some() || self.committed.values().any(|offset| *offset >= 0);
                self.replies.clear();
            }
            other => panic!("the groups replay does not know action {other}"),
        }
    }

    fn abstraction(&self) -> Abstraction {
        let members: BTreeSet<Member> = self.group.member_ids().map(code_member).collect();
        Abstraction {
            state: match self.group.state() {
                GroupState::Empty => "Empty",
                GroupState::PreparingRebalance => "PreparingRebalance",
                GroupState::CompletingRebalance => "CompletingRebalance",
                GroupState::Stable => "Stable",
            }
            .into(),
            generation: self.group.generation().into(),
            leader: self.group.leader().map_or_else(no_member, code_member),
            members,
            awaiting_join: self.group.awaiting_join().map(code_member).collect(),
            awaiting_sync: self.group.awaiting_sync().map(code_member).collect(),
            assignment: self
                .group
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
            offsets_log: self
                .log
                .iter()
                .map(|record| match record {
                    CodeRecord::Offsets { partition, offset } => Record::Offsets {
                        partition: partition.clone(),
                        offset: *offset,
                    },
                    CodeRecord::Membership(snapshot) => Record::Membership(code_snapshot(snapshot)),
                })
                .collect(),
            applied_end: self.applied_end as i64,
            committed: self.committed.clone(),
            membership: code_snapshot(&self.membership),
            written: code_snapshot(&self.written),
            loaded: self.loaded,
            replies: self.replies.clone(),
        }
    }
}

/// Replays `trace`; `defect` is a group coordinator defect the stand-in runs with.
fn replay(trace: &Trace, _defect: Option<&str>) -> Result<Replayed, Box<Divergence>> {
    let mut system = System::new();
    #[cfg(feature = "defects")]
    {
        system.defect = _defect.and_then(crate::defects::Defect::from_name);
    }
    for (index, state) in trace.states.iter().enumerate() {
        if index > 0 {
            system.apply(&trace.states[index - 1], state);
        }
        let spec = spec_abstraction(state);
        let code = system.abstraction();
        if spec != code {
            return Err(Box::new(Divergence {
                trace: trace.path.clone(),
                step: index,
                action: state.action.clone(),
                picks: state.picks_made(),
                differences: differences(&Abstraction::parts(&spec, &code)),
                spec_state: format!("{spec:#?}"),
                code_state: format!("{code:#?}"),
                test: "mbt::groups::groups_spec_traces_replay_on_the_code",
            }));
        }
    }
    Ok(Replayed::Complete {
        steps: trace.states.len() - 1,
    })
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

/// The group coordinator's defects, run by the replay's stand-in coordinator, make some
/// trace of the correct spec diverge.
#[cfg(feature = "defects")]
#[test]
fn group_coordinator_defects_diverge_from_the_spec() {
    for defect in crate::defects::Defect::GROUPS {
        let caught = traces()
            .iter()
            .find_map(|trace| replay(trace, Some(defect.name())).err());
        match caught {
            Some(divergence) => eprintln!(
                "mbt groups: {defect} caught at step {} of {} ({}): {}",
                divergence.step,
                divergence.trace.display(),
                divergence.action,
                divergence.differences.join("; ")
            ),
            None => panic!("{defect}: no trace diverged"),
        }
    }
}
