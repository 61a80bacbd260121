//! Every schedule of a small scope of replication, searched exhaustively.
//!
//! The property tests in `replication.rs` draw random schedules; this search takes every
//! one within a bound. It drives the core's own [`crate::replication::Replica`] and
//! [`crate::log::PartitionLog`] through the in-memory group of `replication_model.rs`, and
//! from each state it tries every step the scope allows:
//! - **a timer fires** on one replica: time moves on to that replica's next deadline (if it
//!   lies ahead) and the replica ticks. Elections, heartbeats, append retries and
//!   check-quorum thus happen in any order and at any lateness, never at random: the
//!   election timeout is fixed (min = max), so the seeded RNG decides nothing;
//! - **a message is delivered**: any one in flight, in any order. A message never delivered
//!   is lost; an explicit drop would only reach the same replica states with a shorter
//!   network (no invariant reads the network), and a delivery that changes nothing but the
//!   network is such a drop and is not followed further. Messages are not duplicated: the
//!   replica resends appends and heartbeats itself;
//! - **a sync completes** on a replica with unsynced appends (`on_synced`);
//! - **a client appends** a batch on a replica that believes it leads, stale or not (the
//!   first append writes one record, the second two, so batch boundaries matter);
//! - **a replica crashes**: it restarts from what it persisted, losing its unsynced tail
//!   and the messages addressed to it.
//!
//! **Scope** ([`SCOPE`]): 3 replicas, 2 client appends, 1 crash, 2 timer firings (so at
//! most two elections, epochs up to 2), schedules of up to 11 steps. That is about 2.2
//! million steps into 0.8 million distinct states, some 10 s optimized on one core; one
//! more step or timer firing multiplies it by 3 to 5. 11 steps is the shortest schedule that
//! loses a committed write through a bad vote (elect, append, replicate, sync twice,
//! acknowledge, elect again), so each deliberate replication defect is in scope.
//!
//! **Invariants**, checked in every state reached (see `replication_model.rs`):
//! `one-leader-per-epoch`, `high-watermark-monotonic`, `epoch-monotonic`,
//! `committed-prefix-agreed`, `acknowledged-writes-survive`, `matched-prefix-agreed`, and the
//! replica's and log's own assertions (the optimized profile keeps debug assertions: a
//! panic in a step is reported as `assertion`). A violation prints the schedule
//! that led to it, shrunk (steps taken out while the rest still breaks an invariant) and
//! replayed step by step.
//!
//! **Search.** Depth-first, remembering for each distinct state the fewest steps it was
//! reached in: a state is expanded again only when reached in fewer, so every state within
//! the bound is explored, in memory for one hash per state and one schedule.
//!
//! **Deduplication.** A state is identified by a 64-bit hash of an abstraction that keeps
//! everything that decides the future: per replica, its protocol state with clocks relative
//! to the current time and clamped where the protocol stops telling them apart
//! (`Replica::view`), its persisted state, its log as batches (offsets, epoch, value) with
//! its high watermark, durable end and whether appends await a sync; the multiset of
//! messages in flight (batches likewise, without CRCs and timestamps); the history the
//! invariants keep (leaders by epoch, committed offsets, highest HWM and epoch of each
//! replica) and the budgets spent. Absolute time, timestamps and append sequence numbers
//! decide nothing and are left out. Replicas are interchangeable, so the hash is the least
//! over the renumberings of the replicas (a state and its mirror images count once).
//!
//! **Run.** The two full searches are `#[ignore]`d in plain `cargo test` (minutes
//! unoptimized) and run optimized, in CI too (`tests/run`):
//! `cargo test -p myelin-core --profile exhaustive --features defects replication_exhaustive
//! -- --ignored --nocapture` prints the counts and each defect's shrunk schedule. Bounds
//! can be raised by hand: `MYELIN_EXHAUSTIVE_TIMERS=3`, `..._DEPTH`, `..._APPENDS`,
//! `..._CRASHES`, `..._MAX_EPOCH`. A shallow search (8 steps) runs in every `cargo test`.

use crate::batch::BATCH_HEADER_BYTES;
use crate::replication::{
    AppendOutcome, NodeId, Records, ReplicaView, ReplicationMessage, ReplicationTimings, RoleView,
};
use crate::replication_model::{batch_value, BatchView, DefectChoice, Group, Violation};
// Test-only: the visited map is looked up, never iterated, so its order reaches nothing;
// the wall clock only times the report, never steers the search.
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// The bounds of a search.
#[derive(Debug, Clone, Copy)]
struct Scope {
    replicas: i32,
    /// Client appends, in all.
    appends: u64,
    /// Crashes, in all.
    crashes: u32,
    /// Timer firings, in all (elections, heartbeats, check-quorum, append retries).
    timers: u32,
    /// No election beyond this epoch.
    max_epoch: i32,
    /// Steps in a schedule.
    depth: u32,
}

const SCOPE: Scope = Scope {
    replicas: 3,
    appends: 2,
    crashes: 1,
    timers: 2,
    max_epoch: 2,
    depth: 11,
};

/// Fewer distinct states than this means the search explored far less than it should.
const DISTINCT_STATES_MIN: usize = 500_000;

/// Small round timings: only their order matters (heartbeat < append timeout < election
/// timeout), and an election timeout fixed at one value leaves nothing to the RNG.
fn timings() -> ReplicationTimings {
    ReplicationTimings {
        election_timeout_min_ms: 4,
        election_timeout_max_ms: 4,
        heartbeat_interval_ms: 1,
        append_timeout_ms: 2,
        append_bytes_max: 8 << 20,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Timer(NodeId),
    Deliver(usize),
    Sync(NodeId),
    Append(NodeId),
    Crash(NodeId),
}

#[derive(Clone)]
struct State {
    group: Group,
    timers: u32,
    crashes: u32,
}

impl State {
    fn new(scope: &Scope, defect: DefectChoice) -> Self {
        Self {
            group: Group::with_timings(scope.replicas, 0, timings(), defect),
            timers: 0,
            crashes: 0,
        }
    }

    /// Every step the scope allows from here.
    fn steps(&self, scope: &Scope) -> Vec<Step> {
        let mut steps = Vec::new();
        let network = &self.group.network;
        for (index, message) in network.iter().enumerate() {
            // Identical messages in flight lead to the same state: try one.
            if !network[..index].contains(message) {
                steps.push(Step::Deliver(index));
            }
        }
        for (id, node) in &self.group.nodes {
            let leads = node.replica.is_leader();
            if self.timers < scope.timers && (leads || node.replica.epoch() < scope.max_epoch) {
                steps.push(Step::Timer(*id));
            }
            if node.log.has_unsynced() {
                steps.push(Step::Sync(*id));
            }
            if leads && self.group.appends < scope.appends {
                steps.push(Step::Append(*id));
            }
            if self.crashes < scope.crashes {
                steps.push(Step::Crash(*id));
            }
        }
        steps
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Timer(id) => {
                self.timers += 1;
                self.group.fire_timer(id);
            }
            Step::Deliver(index) => self.group.deliver(index),
            Step::Sync(id) => self.group.sync(id),
            Step::Append(id) => {
                let records = 1 + (self.group.appends % 2) as usize;
                self.group.produce(id, records);
            }
            Step::Crash(id) => {
                self.crashes += 1;
                self.group.crash_and_restart(id);
            }
        }
    }

    /// Applies `step` and checks the invariants; a panic (an assertion of the replica, its
    /// log or the model) is a violation too.
    fn apply_and_verify(&mut self, step: Step) -> Result<(), Violation> {
        catch_unwind(AssertUnwindSafe(|| {
            self.apply(step);
            self.group.verify()
        }))
        .unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_default();
            Err(Violation {
                invariant: "assertion",
                detail,
            })
        })
    }

    /// Whether `self` is `before` after a delivery that changed nothing but removed the
    /// message: the same as losing it, which never delivering it already covers.
    fn lost_a_message(&self, before: &State, to: NodeId) -> bool {
        self.group.network.len() + 1 == before.group.network.len()
            && self.group.nodes[&to] == before.group.nodes[&to]
            && self.group.broken.is_none()
    }

    /// The state's identity for deduplication (see the module doc): the least, over the
    /// renumberings of the replicas, of a hash of the state's abstraction so renumbered.
    /// Parts that hold no node id are hashed once; sets (replicas, messages in flight) are
    /// hashed as sums, which order does not change.
    fn fingerprint(&self, renumberings: &[Vec<NodeId>]) -> u64 {
        let group = &self.group;
        let fixed = sip(&(
            self.timers,
            self.crashes,
            group.appends,
            &group.committed,
            group.leaders_by_epoch.keys().collect::<Vec<_>>(),
        ));
        let nodes: Vec<NodeParts> = group
            .nodes
            .values()
            .map(|node| {
                let view = node.replica.view(group.now_ms);
                let local = sip(&(
                    &node.batches,
                    node.persisted.epoch,
                    node.log.high_watermark(),
                    node.log.durable_end_offset(),
                    node.log.has_unsynced(),
                    node.highest_hwm,
                    node.highest_epoch,
                    node.up,
                ));
                NodeParts::new(&view, node.persisted.voted_for, local)
            })
            .collect();
        let messages: Vec<(NodeId, NodeId, u64)> = group
            .network
            .iter()
            .map(|(from, to, message)| (*from, *to, message_hash(message)))
            .collect();
        // The least is taken over the renumberings that number the replicas in the order of
        // what they hold apart from ids: every mirror image of a state still gets the same
        // fingerprint, and most states need one hash instead of six.
        let ordered = |renumbering: &&Vec<NodeId>| {
            nodes.iter().all(|a| {
                nodes.iter().all(|b| {
                    a.local >= b.local
                        || renumbering[a.own as usize - 1] < renumbering[b.own as usize - 1]
                })
            })
        };
        renumberings
            .iter()
            .filter(ordered)
            .map(|renumbering| {
                let id = |old: NodeId| renumbering[old as usize - 1] as u64;
                let nodes = nodes
                    .iter()
                    .fold(0u64, |sum, node| sum.wrapping_add(mix(node.hash(id))));
                let messages = messages.iter().fold(0u64, |sum, (from, to, hash)| {
                    sum.wrapping_add(mix(fold(fold(*hash, id(*from)), id(*to))))
                });
                let leaders = group
                    .leaders_by_epoch
                    .values()
                    .fold(0u64, |hash, leader| fold(hash, id(*leader)));
                fold(fold(fold(fixed, nodes), messages), leaders)
            })
            .min()
            .expect("at least the identity")
    }

    /// What `step` does from this state, for a printed schedule.
    fn describe(&self, step: Step) -> String {
        match step {
            Step::Timer(id) => {
                let replica = &self.group.nodes[&id].replica;
                let role = if replica.is_leader() {
                    "leader"
                } else {
                    "follower/candidate"
                };
                format!(
                    "timer of node {id} ({role} in epoch {}) at {} ms",
                    replica.epoch(),
                    self.group.now_ms.max(replica.next_wakeup_ms())
                )
            }
            Step::Deliver(index) => {
                let (from, to, message) = &self.group.network[index];
                format!("deliver {from}->{to} {}", describe_message(message))
            }
            Step::Sync(id) => format!("sync on node {id}"),
            Step::Append(id) => format!("client appends w{} on node {id}", self.group.appends),
            Step::Crash(id) => format!("node {id} crashes and restarts"),
        }
    }
}

/// A replica's part of a fingerprint: a hash of what holds no node id, and the node ids.
struct NodeParts {
    local: u64,
    own: NodeId,
    voted_for: Option<NodeId>,
    persisted_vote: Option<NodeId>,
    leader: Option<NodeId>,
    votes: Vec<NodeId>,
    /// Leader: each follower's id and a hash of its progress.
    followers: Vec<(NodeId, u64)>,
}

impl NodeParts {
    fn new(view: &ReplicaView, persisted_vote: Option<NodeId>, local: u64) -> Self {
        let (role, leader, votes, followers) = match &view.role {
            RoleView::Follower {
                leader,
                election_in_ms,
                verified_end_offset,
            } => (
                sip(&(0u8, election_in_ms, verified_end_offset)),
                *leader,
                Vec::new(),
                Vec::new(),
            ),
            RoleView::Candidate {
                votes,
                election_in_ms,
            } => (sip(&(1u8, election_in_ms)), None, votes.clone(), Vec::new()),
            RoleView::Leader {
                heartbeat_in_ms,
                epoch_start_offset,
                followers,
            } => (
                sip(&(2u8, heartbeat_in_ms, epoch_start_offset)),
                None,
                Vec::new(),
                followers
                    .iter()
                    .map(|follower| {
                        let progress = sip(&(
                            follower.next_offset,
                            follower.matched_end_offset,
                            follower.durable_end_offset,
                            follower.append_sent_ago_ms,
                            &follower.in_flight_ends,
                            follower.heard_ago_ms,
                        ));
                        (follower.id, progress)
                    })
                    .collect(),
            ),
        };
        Self {
            local: fold(fold(local, view.epoch as u64), role),
            own: view.node_id,
            voted_for: view.voted_for,
            persisted_vote,
            leader,
            votes,
            followers,
        }
    }

    /// The hash with node ids renumbered by `id` (ids start at 1: 0 is none).
    fn hash(&self, id: impl Fn(NodeId) -> u64) -> u64 {
        let optional = |node: Option<NodeId>| node.map_or(0, &id);
        let votes = self
            .votes
            .iter()
            .fold(0u64, |set, vote| set | 1 << id(*vote));
        let followers = self
            .followers
            .iter()
            .fold(0u64, |sum, (follower, progress)| {
                sum.wrapping_add(mix(fold(*progress, id(*follower))))
            });
        [
            id(self.own),
            optional(self.voted_for),
            optional(self.persisted_vote),
            optional(self.leader),
            votes,
            followers,
        ]
        .into_iter()
        .fold(self.local, fold)
    }
}

fn sip(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// SplitMix64's finalizer: a bijection that spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Folds `word` into `hash`, in order.
fn fold(hash: u64, word: u64) -> u64 {
    mix(hash ^ mix(word))
}

/// The batches an append carries, for a printed schedule.
fn inline_batches(records: &Records) -> Vec<BatchView> {
    let Records::Inline(bytes) = records else {
        return Vec::new();
    };
    crate::batch::validate_record_set(bytes)
        .expect("the model sends valid batches")
        .into_iter()
        .map(|(header, bytes)| BatchView {
            base_offset: header.base_offset,
            last_offset: header.base_offset + i64::from(header.last_offset_delta),
            epoch: header.partition_leader_epoch,
            value: batch_value(&bytes),
        })
        .collect()
}

/// A message's content (node ids aside: they are on the envelope), its batches taken
/// without their CRCs and timestamps.
fn message_hash(message: &ReplicationMessage) -> u64 {
    let mut hasher = DefaultHasher::new();
    match message {
        ReplicationMessage::VoteRequest {
            epoch,
            last_epoch,
            log_end_offset,
        } => (0u8, epoch, last_epoch, log_end_offset).hash(&mut hasher),
        ReplicationMessage::VoteResponse { epoch, granted } => {
            (1u8, epoch, granted).hash(&mut hasher)
        }
        ReplicationMessage::Append {
            epoch,
            prev_offset,
            prev_epoch,
            records,
            high_watermark,
            log_start_offset,
        } => {
            (
                2u8,
                epoch,
                prev_offset,
                prev_epoch,
                high_watermark,
                log_start_offset,
            )
                .hash(&mut hasher);
            if let Records::Inline(bytes) = records {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let header = crate::batch::read_header(rest).expect("a valid batch");
                    let size = header.size_bytes as usize;
                    (
                        header.base_offset,
                        header.partition_leader_epoch,
                        header.attributes,
                        header.last_offset_delta,
                        &rest[BATCH_HEADER_BYTES..size],
                    )
                        .hash(&mut hasher);
                    rest = &rest[size..];
                }
            }
        }
        ReplicationMessage::AppendResponse { epoch, outcome } => {
            (3u8, epoch).hash(&mut hasher);
            match outcome {
                AppendOutcome::Matched {
                    matched_end_offset,
                    durable_end_offset,
                    log_start_offset,
                } => (
                    0u8,
                    matched_end_offset,
                    durable_end_offset,
                    log_start_offset,
                )
                    .hash(&mut hasher),
                AppendOutcome::Mismatch {
                    epoch_hint,
                    offset_hint,
                } => (1u8, epoch_hint, offset_hint).hash(&mut hasher),
            }
        }
    }
    hasher.finish()
}

/// Every renumbering of replicas 1..=n: `renumbering[old - 1]` is old's new id.
fn renumberings(n: i32) -> Vec<Vec<NodeId>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in renumberings(n - 1) {
        for at in 0..=shorter.len() {
            let mut longer = shorter.clone();
            longer.insert(at, n);
            all.push(longer);
        }
    }
    all
}

fn describe_message(message: &ReplicationMessage) -> String {
    match message {
        ReplicationMessage::Append {
            epoch,
            prev_offset,
            prev_epoch,
            records,
            high_watermark,
            ..
        } => {
            let batches: Vec<String> = inline_batches(records)
                .iter()
                .map(ToString::to_string)
                .collect();
            format!(
                "Append {{ epoch: {epoch}, prev: {prev_offset} in epoch {prev_epoch}, \
                 batches: [{}], hwm: {high_watermark} }}",
                batches.join(", ")
            )
        }
        other => format!("{other:?}"),
    }
}

/// What a search found.
struct Outcome {
    /// Steps taken (states reached, counting those reached before).
    explored: u64,
    distinct: usize,
    /// The longest schedule to a new state.
    depth: u32,
    elapsed: Duration,
    /// The first violation found, the length of the schedule that led to it, and that
    /// schedule shrunk and described step by step.
    violation: Option<(Violation, usize, Vec<String>)>,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} states explored, {} distinct, depth {}, {:.1} s",
            self.explored,
            self.distinct,
            self.depth,
            self.elapsed.as_secs_f64()
        )
    }
}

/// A depth-first search that remembers, for each distinct state, the fewest steps it was
/// reached in: a state is expanded again only when reached in fewer, so everything within
/// `depth` steps is explored while memory holds one hash per state and one path.
struct Search<'a> {
    scope: &'a Scope,
    renumberings: Vec<Vec<NodeId>>,
    fewest_steps: HashMap<u64, u32>,
    explored: u64,
    depth: u32,
    path: Vec<Step>,
    violation: Option<(Violation, Vec<Step>)>,
}

impl Search<'_> {
    /// Explores from `state`, reached in `depth` steps; false once a violation is found.
    fn explore(&mut self, state: &State, depth: u32) -> bool {
        for step in state.steps(self.scope) {
            let mut next = state.clone();
            self.explored += 1;
            self.path.push(step);
            if let Err(violation) = next.apply_and_verify(step) {
                self.violation = Some((violation, self.path.clone()));
                return false;
            }
            let lost = match step {
                Step::Deliver(index) => next.lost_a_message(state, state.group.network[index].1),
                _ => false,
            };
            if !lost {
                let steps = depth + 1;
                let new = match self
                    .fewest_steps
                    .entry(next.fingerprint(&self.renumberings))
                {
                    Entry::Vacant(entry) => {
                        entry.insert(steps);
                        true
                    }
                    Entry::Occupied(mut entry) if *entry.get() > steps => {
                        entry.insert(steps);
                        true
                    }
                    Entry::Occupied(_) => false,
                };
                if new {
                    self.depth = self.depth.max(steps);
                    if steps < self.scope.depth && !self.explore(&next, steps) {
                        return false;
                    }
                }
            }
            self.path.pop();
        }
        true
    }
}

fn search(scope: &Scope, defect: DefectChoice) -> Outcome {
    let started = Instant::now();
    let initial = State::new(scope, defect);
    let mut search = Search {
        scope,
        renumberings: renumberings(scope.replicas),
        fewest_steps: HashMap::new(),
        explored: 0,
        depth: 0,
        path: Vec::new(),
        violation: None,
    };
    let fingerprint = initial.fingerprint(&search.renumberings);
    search.fewest_steps.insert(fingerprint, 0);
    search.explore(&initial, 0);
    Outcome {
        explored: search.explored,
        distinct: search.fewest_steps.len(),
        depth: search.depth,
        elapsed: started.elapsed(),
        violation: search.violation.map(|(violation, path)| {
            (
                violation,
                path.len(),
                shrink_and_describe(scope, defect, &path),
            )
        }),
    }
}

/// A step of a schedule as it is replayed: a delivery names its message (not its place in
/// the network), so the schedule keeps its meaning when earlier steps are taken out.
#[derive(Debug, Clone, PartialEq)]
enum Named {
    Deliver(NodeId, NodeId, ReplicationMessage),
    Other(Step),
}

impl State {
    fn name(&self, step: Step) -> Named {
        match step {
            Step::Deliver(index) => {
                let (from, to, message) = self.group.network[index].clone();
                Named::Deliver(from, to, message)
            }
            other => Named::Other(other),
        }
    }

    /// The step `named` names here, if the scope allows it.
    fn resolve(&self, scope: &Scope, named: &Named) -> Option<Step> {
        let step = match named {
            Named::Deliver(from, to, message) => Step::Deliver(
                self.group
                    .network
                    .iter()
                    .position(|(f, t, m)| (f, t, m) == (from, to, message))?,
            ),
            Named::Other(step) => *step,
        };
        self.steps(scope).contains(&step).then_some(step)
    }
}

/// Replays `schedule` until a step breaks an invariant: how many steps that took, and
/// what broke; `None` if a step is not allowed where it comes or nothing breaks.
fn breaks(scope: &Scope, defect: DefectChoice, schedule: &[Named]) -> Option<usize> {
    let mut state = State::new(scope, defect);
    for (taken, named) in schedule.iter().enumerate() {
        let step = state.resolve(scope, named)?;
        if state.apply_and_verify(step).is_err() {
            return Some(taken + 1);
        }
    }
    None
}

/// The schedule `path` found, shrunk (steps taken out one at a time while what is left
/// still breaks an invariant) and described step by step, with what the last step broke.
fn shrink_and_describe(scope: &Scope, defect: DefectChoice, path: &[Step]) -> Vec<String> {
    let mut state = State::new(scope, defect);
    let mut schedule = Vec::new();
    for step in path {
        schedule.push(state.name(*step));
        let _ = state.apply_and_verify(*step);
    }
    'shrinking: loop {
        for skipped in 0..schedule.len() {
            let mut shorter = schedule.clone();
            shorter.remove(skipped);
            if let Some(taken) = breaks(scope, defect, &shorter) {
                shorter.truncate(taken);
                schedule = shorter;
                continue 'shrinking;
            }
        }
        break;
    }
    let mut state = State::new(scope, defect);
    let mut lines = Vec::new();
    for (number, named) in schedule.iter().enumerate() {
        let step = state
            .resolve(scope, named)
            .expect("a shrunk schedule replays");
        lines.push(format!("{:>3}. {}", number + 1, state.describe(step)));
        if let Err(violation) = state.apply_and_verify(step) {
            lines.push(format!("     -> {violation}"));
        }
    }
    lines
}

/// [`SCOPE`], with any bound set by hand through `MYELIN_EXHAUSTIVE_<BOUND>` (`APPENDS`,
/// `CRASHES`, `TIMERS`, `MAX_EPOCH`, `DEPTH`).
fn scope() -> Scope {
    let bound = |name: &str, default: u32| -> u32 {
        std::env::var(format!("MYELIN_EXHAUSTIVE_{name}"))
            .map_or(default, |value| value.parse().expect("a number"))
    };
    Scope {
        appends: bound("APPENDS", SCOPE.appends as u32).into(),
        crashes: bound("CRASHES", SCOPE.crashes),
        timers: bound("TIMERS", SCOPE.timers),
        max_epoch: bound("MAX_EPOCH", SCOPE.max_epoch as u32) as i32,
        depth: bound("DEPTH", SCOPE.depth),
        ..SCOPE
    }
}

/// Runs the search without a defect: no violation, and at least `distinct_min` states.
fn check_every_schedule(scope: &Scope, distinct_min: usize) {
    let outcome = search(scope, None);
    println!("replication, exhaustive, {scope:?}: {outcome}");
    if let Some((violation, found, schedule)) = &outcome.violation {
        panic!(
            "{violation}\nafter {found} steps; the schedule, shrunk:\n{}",
            schedule.join("\n")
        );
    }
    assert!(
        outcome.distinct >= distinct_min,
        "only {} distinct states: the search explores too little",
        outcome.distinct
    );
    assert_eq!(
        outcome.depth, scope.depth,
        "new states up to the depth bound"
    );
}

#[test]
#[ignore = "about 10 s optimized, minutes unoptimized: cargo test -p myelin-core --profile \
            exhaustive replication_exhaustive -- --ignored"]
fn every_schedule_of_a_small_scope_keeps_the_replication_invariants() {
    check_every_schedule(&scope(), DISTINCT_STATES_MIN);
}

/// The same search, shallow enough for every unoptimized `cargo test`: the harness stays
/// exercised between runs of the full one.
#[test]
fn every_schedule_of_a_smaller_scope_keeps_the_replication_invariants() {
    check_every_schedule(&Scope { depth: 8, ..SCOPE }, 10_000);
}

/// Whether the replica's code holds `defect`'s bug, or else where it lies.
#[cfg(feature = "defects")]
fn outside_the_replica(defect: crate::defects::Defect) -> Option<&'static str> {
    use crate::defects::Defect;
    // No wildcard: a new defect must be sorted here.
    match defect {
        Defect::VoteWithoutUpToDateCheck
        | Defect::MinorityHighWatermark
        | Defect::FollowerKeepsDivergentTail => None,
        Defect::AckBeforeFsync => Some("the broker's produce acknowledgement (Broker)"),
        Defect::ReadAboveHighWatermark => Some("the broker's fetch bound (Broker)"),
        Defect::SkipRecoveryCrc
        | Defect::SkipDirectoryFsync
        | Defect::SkipSegmentFsync
        | Defect::SkipReplicaStateFsync => Some("the node's file storage"),
        Defect::ForgetProducerStateOnRestart => Some("the broker's producer state at recovery"),
        Defect::AcceptStaleGenerationCommit | Defect::LoseOffsetsOnFailover => {
            Some("the group coordinator")
        }
        Defect::EmptyAbortedTransactions
        | Defect::LastStableOffsetIgnoresOpenTransactions
        | Defect::CompleteBeforeMarkers
        | Defect::CommitOffsetsOnAbort => Some("transactions (broker, coordinators)"),
    }
}

/// The same search catches each deliberate defect of the replica.
#[cfg(feature = "defects")]
#[test]
#[ignore = "about 6 s optimized: cargo test -p myelin-core --profile exhaustive --features \
            defects replication_exhaustive -- --ignored"]
fn each_replication_defect_is_caught_exhaustively() {
    use crate::defects::Defect;
    let scope = scope();
    let defects = Defect::ALL
        .into_iter()
        .chain(Defect::REPLICATION)
        .chain(Defect::GROUPS)
        .chain(Defect::TRANSACTIONS);
    let mut caught = Vec::new();
    for defect in defects {
        if let Some(place) = outside_the_replica(defect) {
            println!("{defect}: skipped, out of the replica's reach (in {place})");
            continue;
        }
        let outcome = search(&scope, Some(defect));
        let Some((violation, found, schedule)) = &outcome.violation else {
            panic!("{defect} was not caught in {scope:?}: {outcome}");
        };
        println!(
            "{defect}: caught by {} after {found} steps ({outcome}); the schedule, shrunk:\n{}",
            violation.invariant,
            schedule.join("\n")
        );
        caught.push(defect);
    }
    assert_eq!(
        caught,
        Defect::REPLICATION,
        "the replica's defects are its own"
    );
}
