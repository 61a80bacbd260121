//! The replication spec (`specs/replication/replication.qnt`, module `replication3`)
//! replayed against three real [`Replica`]s and their [`PartitionLog`]s, driven through the
//! in-memory harness of the replication tests (`replication_model::Group`).
//!
//! Each spec action is the call the spec's header names: `election_timeout` a tick past the
//! replica's election deadline, `heartbeat` a leader's tick at its heartbeat due time (past
//! the append timeout for exactly the followers the spec picked as `expired`),
//! `quorum_lost` a leader's tick after the longest election timeout without answers,
//! `client_append` `append_as_leader` of a one-record batch, `sync` a sync of everything
//! appended then `on_synced`, `crash` the harness's crash and restart (keeping the messages
//! in flight to the node, as the spec does), `deliver` / `duplicate` / `lose` one message
//! of the network handed to `Replica::handle` (or dropped).
//!
//! Time: each node has its own clock, moved only when one of its timers must fire, so a
//! timer of one node never fires because another's had to. The timings make the spec's
//! nondeterministic timers exact: the election timeout is one fixed, huge value (a leader
//! never loses its quorum at a heartbeat, only at `quorum_lost`), heartbeats are 1 ms apart
//! and the append timeout is far longer than any run's heartbeats add up to, so an append
//! expires only when a `heartbeat` step says so.
//!
//! After every step the replay compares, per replica: epoch, vote, role, known leader,
//! votes (a candidate), the leader's progress per follower (next offset, matched end,
//! durable end, appends in flight), the follower's verified end, the leader's epoch start
//! offset, the log (epoch and value of each offset), durable end and high watermark; and
//! the network: the set of messages in flight, fields and carried batches included.

use super::{int, list, map, set, variant, Divergence, Replay, Replayed, SpecRun, Trace};
use crate::replication::{
    AppendOutcome, NodeId, Records, ReplicationMessage, ReplicationTimings, RoleView,
};
use crate::replication_model::{batch_value, DefectChoice, Group};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub(super) const SPEC: SpecRun = SpecRun {
    protocol: "replication",
    file: "replication.qnt",
    main: "replication3",
    traces: 30,
    steps: 60,
};

const REPLICAS: i32 = 3;
/// Every election timeout (min = max): longer than any replay's clocks move otherwise.
const ELECTION_TIMEOUT_MS: i64 = 1_000_000_000_000;
/// Far longer than a run's heartbeats (1 ms each) add up to.
const APPEND_TIMEOUT_MS: i64 = 1_000_000_000;
/// The spec's `NONE`.
const NONE: i64 = -1;
/// The spec's value of a leader-change marker; client batch n (from 1) has value n.
const MARKER: i64 = 0;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    epoch: i64,
    value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Progress {
    next_offset: i64,
    matched_end_offset: i64,
    durable_end_offset: i64,
    in_flight_ends: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Matched {
        matched_end_offset: i64,
        durable_end_offset: i64,
    },
    Mismatch {
        epoch_hint: i64,
        offset_hint: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Message {
    VoteRequest {
        epoch: i64,
        last_epoch: i64,
        log_end_offset: i64,
    },
    VoteResponse {
        epoch: i64,
        granted: bool,
    },
    Append {
        epoch: i64,
        prev_offset: i64,
        prev_epoch: i64,
        records: Vec<Entry>,
        high_watermark: i64,
    },
    AppendResponse {
        epoch: i64,
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Envelope {
    from: i64,
    to: i64,
    message: Message,
}

/// One replica as the replay compares it. Fields a role does not read are left out
/// (`None`): the spec keeps a stale verified end or epoch start there, the code too, but
/// neither acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReplicaAbstraction {
    epoch: i64,
    voted_for: i64,
    role: String,
    leader: i64,
    votes: BTreeSet<i64>,
    followers: BTreeMap<i64, Progress>,
    /// A follower's.
    verified_end_offset: Option<i64>,
    /// A leader's.
    epoch_start_offset: Option<i64>,
    log: Vec<Entry>,
    durable_end_offset: i64,
    high_watermark: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupAbstraction {
    replicas: BTreeMap<i64, ReplicaAbstraction>,
    network: BTreeSet<Envelope>,
}

impl GroupAbstraction {
    /// (what, spec, code) for each replica field and the network.
    fn parts(spec: &Self, code: &Self) -> Vec<(String, String, String)> {
        let mut parts = Vec::new();
        for (id, spec_replica) in &spec.replicas {
            let Some(code_replica) = code.replicas.get(id) else {
                parts.push((format!("replica {id}"), "present".into(), "absent".into()));
                continue;
            };
            let mut field = |name: &str, spec: String, code: String| {
                parts.push((format!("replica {id} {name}"), spec, code));
            };
            let (s, c) = (spec_replica, code_replica);
            field("epoch", format!("{}", s.epoch), format!("{}", c.epoch));
            field(
                "voted_for",
                format!("{}", s.voted_for),
                format!("{}", c.voted_for),
            );
            field("role", s.role.clone(), c.role.clone());
            field("leader", format!("{}", s.leader), format!("{}", c.leader));
            field("votes", format!("{:?}", s.votes), format!("{:?}", c.votes));
            field(
                "followers",
                format!("{:?}", s.followers),
                format!("{:?}", c.followers),
            );
            field(
                "verified_end_offset",
                format!("{:?}", s.verified_end_offset),
                format!("{:?}", c.verified_end_offset),
            );
            field(
                "epoch_start_offset",
                format!("{:?}", s.epoch_start_offset),
                format!("{:?}", c.epoch_start_offset),
            );
            field("log", format!("{:?}", s.log), format!("{:?}", c.log));
            field(
                "durable_end_offset",
                format!("{}", s.durable_end_offset),
                format!("{}", c.durable_end_offset),
            );
            field(
                "high_watermark",
                format!("{}", s.high_watermark),
                format!("{}", c.high_watermark),
            );
        }
        let only_spec: Vec<&Envelope> = spec.network.difference(&code.network).collect();
        let only_code: Vec<&Envelope> = code.network.difference(&spec.network).collect();
        parts.push((
            "network (messages only one side has)".into(),
            format!("{only_spec:?}"),
            format!("{only_code:?}"),
        ));
        parts
    }
}

// ---------------------------------------------------------------------------------------
// The spec's state

fn spec_entry(value: &Value) -> Entry {
    Entry {
        epoch: int(&value["epoch"]),
        value: int(&value["value"]),
    }
}

fn spec_message(value: &Value) -> Message {
    let (tag, m) = variant(value);
    match tag {
        "VoteRequest" => Message::VoteRequest {
            epoch: int(&m["epoch"]),
            last_epoch: int(&m["last_epoch"]),
            log_end_offset: int(&m["log_end_offset"]),
        },
        "VoteResponse" => Message::VoteResponse {
            epoch: int(&m["epoch"]),
            granted: super::boolean(&m["granted"]),
        },
        "Append" => Message::Append {
            epoch: int(&m["epoch"]),
            prev_offset: int(&m["prev_offset"]),
            prev_epoch: int(&m["prev_epoch"]),
            records: list(&m["records"]).iter().map(spec_entry).collect(),
            high_watermark: int(&m["high_watermark"]),
        },
        "AppendResponse" => Message::AppendResponse {
            epoch: int(&m["epoch"]),
            outcome: match variant(&m["outcome"]) {
                ("Matched", o) => Outcome::Matched {
                    matched_end_offset: int(&o["matched_end_offset"]),
                    durable_end_offset: int(&o["durable_end_offset"]),
                },
                ("Mismatch", o) => Outcome::Mismatch {
                    epoch_hint: int(&o["epoch_hint"]),
                    offset_hint: int(&o["offset_hint"]),
                },
                (other, _) => panic!("unknown append outcome {other}"),
            },
        },
        other => panic!("unknown replication message {other}"),
    }
}

fn spec_envelope(value: &Value) -> Envelope {
    Envelope {
        from: int(&value["from"]),
        to: int(&value["to"]),
        message: spec_message(&value["message"]),
    }
}

fn spec_abstraction(state: &super::State) -> GroupAbstraction {
    let per_replica = |name: &str| -> BTreeMap<i64, Value> {
        map(state.var(name))
            .into_iter()
            .map(|(k, v)| (int(k), v.clone()))
            .collect()
    };
    let epoch = per_replica("epoch");
    let voted_for = per_replica("voted_for");
    let role = per_replica("role");
    let leader = per_replica("leader");
    let votes = per_replica("votes");
    let followers = per_replica("followers");
    let verified = per_replica("verified_end_offset");
    let epoch_start = per_replica("epoch_start_offset");
    let log = per_replica("log");
    let durable = per_replica("durable_end_offset");
    let high_watermark = per_replica("high_watermark");
    let replicas = epoch
        .keys()
        .map(|id| {
            let role_name = variant(&role[id]).0.to_string();
            let replica = ReplicaAbstraction {
                epoch: int(&epoch[id]),
                voted_for: int(&voted_for[id]),
                leader: int(&leader[id]),
                votes: set(&votes[id]).iter().map(int).collect(),
                followers: map(&followers[id])
                    .into_iter()
                    .map(|(f, p)| {
                        (
                            int(f),
                            Progress {
                                next_offset: int(&p["next_offset"]),
                                matched_end_offset: int(&p["matched_end_offset"]),
                                durable_end_offset: int(&p["durable_end_offset"]),
                                in_flight_ends: list(&p["in_flight_ends"])
                                    .iter()
                                    .map(int)
                                    .collect(),
                            },
                        )
                    })
                    .collect(),
                verified_end_offset: (role_name == "Follower").then(|| int(&verified[id])),
                epoch_start_offset: (role_name == "Leader").then(|| int(&epoch_start[id])),
                log: list(&log[id]).iter().map(spec_entry).collect(),
                durable_end_offset: int(&durable[id]),
                high_watermark: int(&high_watermark[id]),
                role: role_name,
            };
            (*id, replica)
        })
        .collect();
    GroupAbstraction {
        replicas,
        network: set(state.var("network"))
            .iter()
            .map(spec_envelope)
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// The code's state

/// The spec's value of a batch: `None` (the marker) is 0, the harness's n-th client append
/// (`w<n>`, from 0) is n + 1.
fn spec_value(value: Option<u64>) -> i64 {
    value.map_or(MARKER, |append| append as i64 + 1)
}

fn code_message(message: &ReplicationMessage) -> Message {
    match message {
        ReplicationMessage::VoteRequest {
            epoch,
            last_epoch,
            log_end_offset,
        } => Message::VoteRequest {
            epoch: (*epoch).into(),
            last_epoch: (*last_epoch).into(),
            log_end_offset: *log_end_offset,
        },
        ReplicationMessage::VoteResponse { epoch, granted } => Message::VoteResponse {
            epoch: (*epoch).into(),
            granted: *granted,
        },
        ReplicationMessage::Append {
            epoch,
            prev_offset,
            prev_epoch,
            records,
            high_watermark,
            // The spec has no DeleteRecords: the start never moves.
            log_start_offset: _,
        } => {
            let Records::Inline(bytes) = records else {
                panic!("the harness sends appends with their bytes inline");
            };
            let batches =
                crate::batch::validate_record_set(bytes).expect("an append carries valid batches");
            Message::Append {
                epoch: (*epoch).into(),
                prev_offset: *prev_offset,
                prev_epoch: (*prev_epoch).into(),
                records: batches
                    .iter()
                    .map(|(header, batch)| Entry {
                        epoch: header.partition_leader_epoch.into(),
                        value: spec_value(batch_value(batch)),
                    })
                    .collect(),
                high_watermark: *high_watermark,
            }
        }
        ReplicationMessage::AppendResponse { epoch, outcome } => Message::AppendResponse {
            epoch: (*epoch).into(),
            outcome: match outcome {
                AppendOutcome::Matched {
                    matched_end_offset,
                    durable_end_offset,
                    log_start_offset: _,
                } => Outcome::Matched {
                    matched_end_offset: *matched_end_offset,
                    durable_end_offset: *durable_end_offset,
                },
                AppendOutcome::Mismatch {
                    epoch_hint,
                    offset_hint,
                } => Outcome::Mismatch {
                    epoch_hint: (*epoch_hint).into(),
                    offset_hint: *offset_hint,
                },
            },
        },
    }
}

fn code_envelope((from, to, message): &(NodeId, NodeId, ReplicationMessage)) -> Envelope {
    Envelope {
        from: (*from).into(),
        to: (*to).into(),
        message: code_message(message),
    }
}

fn code_abstraction(group: &Group, clocks: &BTreeMap<NodeId, i64>) -> GroupAbstraction {
    let replicas = group
        .nodes
        .iter()
        .map(|(id, node)| {
            let view = node.replica.view(clocks[id]);
            let mut replica = ReplicaAbstraction {
                epoch: view.epoch.into(),
                voted_for: view.voted_for.map_or(NONE, i64::from),
                role: String::new(),
                leader: node.replica.leader().map_or(NONE, i64::from),
                votes: BTreeSet::new(),
                followers: BTreeMap::new(),
                verified_end_offset: None,
                epoch_start_offset: None,
                log: node
                    .batches
                    .iter()
                    .map(|batch| Entry {
                        epoch: batch.epoch.into(),
                        value: spec_value(batch.value),
                    })
                    .collect(),
                durable_end_offset: node.log.durable_end_offset(),
                high_watermark: node.log.high_watermark(),
            };
            assert_eq!(
                node.log.log_end_offset(),
                node.batches.len() as i64,
                "the harness writes one-record batches: one batch per offset"
            );
            match view.role {
                RoleView::Follower {
                    verified_end_offset,
                    ..
                } => {
                    replica.role = "Follower".into();
                    replica.verified_end_offset = Some(verified_end_offset);
                }
                RoleView::Candidate { votes, .. } => {
                    replica.role = "Candidate".into();
                    replica.votes = votes.into_iter().map(i64::from).collect();
                }
                RoleView::Leader {
                    epoch_start_offset,
                    followers,
                    ..
                } => {
                    replica.role = "Leader".into();
                    replica.epoch_start_offset = Some(epoch_start_offset);
                    replica.followers = followers
                        .into_iter()
                        .map(|f| {
                            (
                                i64::from(f.id),
                                Progress {
                                    next_offset: f.next_offset,
                                    matched_end_offset: f.matched_end_offset,
                                    durable_end_offset: f.durable_end_offset,
                                    in_flight_ends: f.in_flight_ends.clone(),
                                },
                            )
                        })
                        .collect();
                }
            }
            (i64::from(*id), replica)
        })
        .collect();
    GroupAbstraction {
        replicas,
        network: group.network.iter().map(code_envelope).collect(),
    }
}

// ---------------------------------------------------------------------------------------
// The replay

/// The code's side of a replay: the harness and each node's clock.
struct System {
    group: Group,
    clocks: BTreeMap<NodeId, i64>,
}

impl System {
    fn new(defect: DefectChoice) -> Self {
        let timings = ReplicationTimings {
            election_timeout_min_ms: ELECTION_TIMEOUT_MS,
            election_timeout_max_ms: ELECTION_TIMEOUT_MS,
            heartbeat_interval_ms: 1,
            append_timeout_ms: APPEND_TIMEOUT_MS,
            append_bytes_max: 1 << 20,
        };
        let group = Group::with_timings(REPLICAS, 0, timings, defect);
        let clocks = group.nodes.keys().map(|id| (*id, 0)).collect();
        Self { group, clocks }
    }

    /// Runs `step` on node `id` at `now_ms` (its clock moves there).
    fn at(&mut self, id: NodeId, now_ms: i64, step: impl FnOnce(&mut Group, NodeId)) {
        let clock = self.clocks.get_mut(&id).expect("a replica of the group");
        *clock = (*clock).max(now_ms);
        self.group.now_ms = *clock;
        step(&mut self.group, id);
    }

    fn now(&self, id: NodeId) -> i64 {
        self.clocks[&id]
    }

    /// The index of a message in flight that the spec's envelope stands for.
    fn find(&self, envelope: &Envelope) -> Option<usize> {
        self.group
            .network
            .iter()
            .position(|sent| code_envelope(sent) == *envelope)
    }

    /// Removes every copy of the spec's envelope from the network: the spec's network is a
    /// set, in which identical copies are one.
    fn remove_all(&mut self, envelope: &Envelope) {
        self.group
            .network
            .retain(|sent| code_envelope(sent) != *envelope);
    }

    /// Applies one spec step. `Err` says why the code cannot be driven to take it.
    fn take_step(&mut self, state: &super::State) -> Result<(), String> {
        let node = |name: &str| -> NodeId {
            i32::try_from(int(state.picked(name))).expect("a node id fits an i32")
        };
        match state.action.as_str() {
            "election_timeout" => {
                let r = node("r");
                let deadline = self.group.nodes[&r].replica.next_wakeup_ms();
                self.at(r, deadline, |group, id| group.fire_timer(id));
            }
            "heartbeat" => {
                let r = node("r");
                let expired: BTreeSet<NodeId> = set(state.picked("expired"))
                    .iter()
                    .map(|f| i32::try_from(int(f)).expect("a node id fits an i32"))
                    .collect();
                let now = self.heartbeat_time(r, &expired)?;
                self.at(r, now, |group, id| {
                    group.with_node(id, |replica, context| replica.tick(context))
                });
            }
            "quorum_lost" => {
                let r = node("r");
                // Every follower unheard for longer than the longest election timeout.
                let now = self.now(r) + ELECTION_TIMEOUT_MS + 1;
                self.at(r, now, |group, id| {
                    group.with_node(id, |replica, context| replica.tick(context))
                });
            }
            "client_append" => {
                let r = node("r");
                self.at(r, self.now(r), |group, id| group.produce(id, 1));
            }
            "sync" => {
                let r = node("r");
                self.at(r, self.now(r), |group, id| group.sync(id));
            }
            "crash" => {
                let r = node("r");
                // The harness drops the messages in flight to the node; the spec keeps them.
                let kept: Vec<_> = self
                    .group
                    .network
                    .iter()
                    .filter(|(_, to, _)| *to == r)
                    .cloned()
                    .collect();
                self.at(r, self.now(r), |group, id| group.crash_and_restart(id));
                self.group.network.extend(kept);
            }
            "deliver" | "duplicate" | "lose" => {
                let envelope = spec_envelope(state.picked("e"));
                let index = self.find(&envelope).ok_or_else(|| {
                    format!("the spec takes {envelope:?}, which the code never sent")
                })?;
                let (from, to, message) = self.group.network[index].clone();
                if state.action != "duplicate" {
                    self.remove_all(&envelope);
                }
                if state.action != "lose" {
                    self.at(to, self.now(to), |group, id| {
                        group.with_node(id, |replica, context| {
                            replica.handle(context, from, message)
                        })
                    });
                }
            }
            other => panic!("the replication replay does not know action {other}"),
        }
        Ok(())
    }

    /// When leader `r` must tick so that the appends to exactly `expired` have timed out
    /// (their oldest unanswered append is `APPEND_TIMEOUT_MS` old) and no other's has: at
    /// its heartbeat due time, later if some must expire. `Err` if no time does it (a
    /// follower that must not expire has waited at least as long as one that must).
    fn heartbeat_time(&self, r: NodeId, expired: &BTreeSet<NodeId>) -> Result<i64, String> {
        let replica = &self.group.nodes[&r].replica;
        let now = self.now(r).max(replica.next_wakeup_ms());
        let RoleView::Leader { followers, .. } = replica.view(now).role else {
            panic!("the spec's heartbeat is a leader's");
        };
        // How long each follower's oldest unanswered append has waited (clamped at the
        // timeout, where it makes no difference any more).
        let waited: BTreeMap<NodeId, i64> = followers
            .iter()
            .filter_map(|f| Some((f.id, f.append_sent_ago_ms?)))
            .collect();
        let wait = expired
            .iter()
            .map(|f| APPEND_TIMEOUT_MS - waited.get(f).copied().unwrap_or(APPEND_TIMEOUT_MS))
            .max()
            .unwrap_or(0)
            .max(0);
        let expires = |f: &NodeId| waited.get(f).is_some_and(|w| w + wait >= APPEND_TIMEOUT_MS);
        let wrong: Vec<&NodeId> = waited
            .keys()
            .filter(|f| expires(f) != expired.contains(f))
            .collect();
        if wrong.is_empty() {
            Ok(now + wait)
        } else {
            Err(format!(
                "the spec expires the appends to {expired:?} alone; the code's clock cannot \
                 (oldest unanswered append per follower, ms ago: {waited:?})"
            ))
        }
    }
}

impl Replay for System {
    type Abstraction = GroupAbstraction;
    const TEST: &'static str = "mbt::replication::replication_spec_traces_replay_on_the_code";

    fn apply(&mut self, _before: &super::State, state: &super::State) -> Result<(), String> {
        self.take_step(state)
    }

    fn spec_abstraction(state: &super::State) -> GroupAbstraction {
        spec_abstraction(state)
    }

    fn code_abstraction(&self) -> GroupAbstraction {
        code_abstraction(&self.group, &self.clocks)
    }

    fn parts(spec: &GroupAbstraction, code: &GroupAbstraction) -> Vec<(String, String, String)> {
        GroupAbstraction::parts(spec, code)
    }
}

/// Replays `trace` with every replica running `defect`.
fn replay(trace: &Trace, defect: DefectChoice) -> Result<Replayed, Box<Divergence>> {
    super::replay_on(trace, System::new(defect))
}

fn traces() -> &'static [Trace] {
    super::traces(&SPEC)
}

/// Every trace of the spec replays on the code without a divergence.
#[test]
fn replication_spec_traces_replay_on_the_code() {
    let traces = traces();
    let mut compared = 0;
    let mut stopped = Vec::new();
    for trace in traces {
        match replay(trace, None) {
            Ok(replayed) => {
                compared += replayed.steps();
                if let Replayed::Stopped { reason, .. } = replayed {
                    stopped.push(format!("{}: {reason}", trace.path.display()));
                }
            }
            Err(divergence) => panic!("{divergence}"),
        }
    }
    let steps: usize = traces.iter().map(|trace| trace.states.len() - 1).sum();
    eprintln!(
        "mbt replication: {} traces, {compared} of their {steps} steps compared, {} traces \
         stopped early",
        traces.len(),
        stopped.len()
    );
    for line in &stopped {
        eprintln!("  stopped: {line}");
    }
    // A replay stops at a heartbeat that expires one follower's appends and not another's
    // sent at the same time (about a third of the runs, late on average): most steps must
    // still be compared.
    assert!(
        compared * 4 >= steps * 3,
        "only {compared} of {steps} steps compared: {stopped:#?}"
    );
}

/// The comparison is not vacuous: a trace whose spec state was altered at one step (a
/// replica's epoch one higher) diverges at that step.
#[test]
fn replication_replay_reports_an_altered_spec_state() {
    let mut trace = traces()
        .iter()
        .find(|trace| trace.states.len() > 5)
        .expect("a trace of more than 5 states")
        .clone();
    let state = &mut trace.states[5];
    let mut epochs = state.var("epoch").clone();
    let first = &mut epochs["#map"][0][1];
    *first = serde_json::json!({ "#bigint": (int(first) + 1).to_string() });
    state.vars.insert("epoch".into(), epochs);
    let divergence = replay(&trace, None).expect_err("the altered state is noticed");
    assert_eq!(divergence.step, 5);
    assert!(
        divergence.differences[0].starts_with("replica 1 epoch:"),
        "{divergence}"
    );
}

/// Each replication defect makes some trace of the correct spec diverge from the code.
#[cfg(feature = "defects")]
#[test]
fn replication_defects_diverge_from_the_spec() {
    for defect in crate::defects::Defect::REPLICATION {
        super::assert_defect_caught("replication", defect, traces(), |trace| {
            replay(trace, Some(defect))
        });
    }
}
