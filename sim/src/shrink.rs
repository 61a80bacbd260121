//! Shrinking: proptest's `ValueTree` protocol over scenarios, so that a failing scenario
//! shrinks to a short fault schedule.
//!
//! [`ScenarioTree`] is the value tree; [`scenarios`] is a proptest strategy whose values are
//! seed-generated scenarios that shrink through it. A proptest test over [`scenarios`]
//! shrinks a failure by itself and prints the minimal scenario with `Debug`, which is its
//! replay command. [`shrink`] drives the same tree outside a proptest test (for a scenario
//! already known to fail: `--shrink` on the command line, the deliberate-defect tests).
//!
//! Simplifications, tried in this order on the last scenario that still failed: remove
//! half of the faults, then each quarter, ... (delta debugging), then single faults; make a
//! crash plain (no torn write, directory operations undone); halve a fault's duration;
//! remove a client (and the link faults that name it); remove a node no client uses and no
//! fault names; shorten the workload to just after the last fault. A candidate that no longer fails is discarded
//! and the next simplification is tried; one that fails becomes the new starting point.

use crate::scenario::{Fault, Scenario};
use crate::simfs::CrashSpec;
use proptest::prelude::Rng as _;
use proptest::strategy::{NewTree, Strategy, ValueTree};
use proptest::test_runner::TestRunner;

/// Shortest fault duration shrinking goes down to, in ms.
const FAULT_DURATION_MIN_MS: u64 = 50;
/// Shortest workload shrinking goes down to, in ms.
const WORKLOAD_MIN_MS: u64 = 3_000;

/// One way to simplify a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    RemoveFaults { start: usize, count: usize },
    PlainCrash(usize),
    HalveFault(usize),
    RemoveClient(usize),
    RemoveIdleNode(u8),
    ShortenWorkload,
}

/// A scenario and the simpler ones still to try. See the module doc.
#[derive(Clone)]
pub struct ScenarioTree {
    /// The simplest scenario known to fail (the original until a simplification fails).
    accepted: Scenario,
    /// The simplification being tested, if any.
    candidate: Option<Scenario>,
    /// The next simplification of `accepted` to try.
    next_move: usize,
}

impl ScenarioTree {
    pub fn new(scenario: Scenario) -> Self {
        ScenarioTree {
            accepted: scenario,
            candidate: None,
            next_move: 0,
        }
    }

    /// The simplest scenario known to fail.
    pub fn accepted(&self) -> &Scenario {
        &self.accepted
    }

    /// The simplifications of `scenario` worth trying, in order.
    fn moves(scenario: &Scenario) -> Vec<Move> {
        let faults = scenario.faults.len();
        let mut moves = Vec::new();
        // Delta debugging: remove halves, then quarters, ... of the schedule first.
        let mut size = faults / 2;
        while size >= 2 {
            moves.extend((0..faults).step_by(size).map(|start| Move::RemoveFaults {
                start,
                count: size.min(faults - start),
            }));
            size /= 2;
        }
        moves.extend((0..faults).map(|start| Move::RemoveFaults { start, count: 1 }));
        moves.extend((0..faults).map(Move::PlainCrash));
        moves.extend((0..faults).map(Move::HalveFault));
        moves.extend((0..scenario.clients.len()).map(Move::RemoveClient));
        moves.extend((1..=scenario.nodes).rev().map(Move::RemoveIdleNode));
        moves.push(Move::ShortenWorkload);
        moves
    }

    /// `scenario` simplified by `change`, or `None` if it changes nothing.
    fn simplified(scenario: &Scenario, change: Move) -> Option<Scenario> {
        let mut candidate = scenario.clone();
        match change {
            Move::RemoveFaults { start, count } => {
                candidate.faults.drain(start..start + count);
            }
            Move::PlainCrash(number) => match &mut candidate.faults[number].fault {
                Fault::Crash { crash, .. } if *crash != CrashSpec::default() => {
                    *crash = CrashSpec::default();
                }
                _ => return None,
            },
            Move::HalveFault(number) => {
                let scheduled = &mut candidate.faults[number];
                let duration = scheduled.fault.duration_ms();
                if duration <= FAULT_DURATION_MIN_MS {
                    return None;
                }
                scheduled.fault = scheduled
                    .fault
                    .with_duration_ms((duration / 2).max(FAULT_DURATION_MIN_MS));
            }
            Move::RemoveClient(number) => {
                if scenario.clients.len() == 1 {
                    return None;
                }
                candidate.clients.remove(number);
                let removed = number as u8;
                candidate
                    .faults
                    .retain_mut(|scheduled| match scheduled.fault.client_mut() {
                        Some(client) if *client == removed => false,
                        Some(client) => {
                            if *client > removed {
                                *client -= 1;
                            }
                            true
                        }
                        None => true,
                    });
            }
            Move::RemoveIdleNode(node) => {
                let names_node = |fault: &Fault| match fault {
                    Fault::Crash { node: n, .. }
                    | Fault::Pause { node: n, .. }
                    | Fault::Isolate { node: n, .. }
                    | Fault::FsyncFailure { node: n }
                    | Fault::ClockSkew { node: n, .. } => *n == node,
                    Fault::LinkLoss { .. }
                    | Fault::PacketLoss { .. }
                    | Fault::MemberCrash { .. }
                    | Fault::MemberLeave { .. }
                    | Fault::MemberPause { .. }
                    | Fault::MemberIsolate { .. }
                    | Fault::ClientCrash { .. }
                    | Fault::ClientPause { .. }
                    | Fault::ClientDeaf { .. }
                    | Fault::CoordinatorCrash { .. }
                    | Fault::CoordinatorSplit { .. }
                    | Fault::ProduceLeaderCrash { .. }
                    | Fault::ProduceLeaderIsolate { .. } => false,
                    Fault::Split { minority, .. } => minority.contains(&node),
                    Fault::NodeLinkLoss { from, to, .. } => *from == node || *to == node,
                };
                // A cluster's size is part of what is tested (majorities): keep its nodes.
                let idle = !scenario.cluster
                    && scenario.nodes > 1
                    && !scenario.clients.iter().any(|client| client.node == node)
                    && !scenario
                        .faults
                        .iter()
                        .any(|scheduled| names_node(&scheduled.fault));
                if !idle {
                    return None;
                }
                // Remove it and number the nodes after it one lower.
                let renumber = |n: &mut u8| {
                    if *n > node {
                        *n -= 1;
                    }
                };
                candidate.nodes -= 1;
                candidate.topics.retain(|topic| topic.node != node);
                candidate
                    .topics
                    .iter_mut()
                    .for_each(|topic| renumber(&mut topic.node));
                candidate
                    .clients
                    .iter_mut()
                    .for_each(|client| renumber(&mut client.node));
                for scheduled in &mut candidate.faults {
                    match &mut scheduled.fault {
                        Fault::Crash { node: n, .. }
                        | Fault::Pause { node: n, .. }
                        | Fault::Isolate { node: n, .. }
                        | Fault::FsyncFailure { node: n }
                        | Fault::ClockSkew { node: n, .. } => renumber(n),
                        Fault::LinkLoss { .. }
                        | Fault::PacketLoss { .. }
                        | Fault::Split { .. }
                        | Fault::NodeLinkLoss { .. }
                        | Fault::MemberCrash { .. }
                        | Fault::MemberLeave { .. }
                        | Fault::MemberPause { .. }
                        | Fault::MemberIsolate { .. }
                        | Fault::ClientCrash { .. }
                        | Fault::ClientPause { .. }
                        | Fault::ClientDeaf { .. }
                        | Fault::CoordinatorCrash { .. }
                        | Fault::CoordinatorSplit { .. }
                        | Fault::ProduceLeaderCrash { .. }
                        | Fault::ProduceLeaderIsolate { .. } => {}
                    }
                }
            }
            Move::ShortenWorkload => {
                let last_fault_end = scenario
                    .faults
                    .iter()
                    .map(|scheduled| scheduled.at_ms + scheduled.fault.duration_ms())
                    .max()
                    .unwrap_or(0);
                let shorter = (last_fault_end + 1_000).max(WORKLOAD_MIN_MS);
                if shorter >= scenario.duration_ms {
                    return None;
                }
                candidate.duration_ms = shorter;
            }
        }
        // A move may leave a fault without what it needs (a producer-triggered fault
        // without its producer): such a candidate is not a scenario.
        candidate.check().ok()?;
        Some(candidate)
    }

    /// Sets `candidate` to the next simplification of `accepted`; false if none is left.
    fn advance(&mut self) -> bool {
        let moves = Self::moves(&self.accepted);
        while let Some(change) = moves.get(self.next_move) {
            self.next_move += 1;
            if let Some(candidate) = Self::simplified(&self.accepted, *change) {
                self.candidate = Some(candidate);
                return true;
            }
        }
        self.candidate = None;
        false
    }
}

impl ValueTree for ScenarioTree {
    type Value = Scenario;

    fn current(&self) -> Scenario {
        self.candidate
            .clone()
            .unwrap_or_else(|| self.accepted.clone())
    }

    /// The current value failed: keep it and try simplifying it further.
    fn simplify(&mut self) -> bool {
        if let Some(candidate) = self.candidate.take() {
            self.accepted = candidate;
        }
        self.next_move = 0;
        self.advance()
    }

    /// The current value passed: drop it and try the next simplification.
    fn complicate(&mut self) -> bool {
        if self.candidate.is_none() {
            return false;
        }
        self.advance()
    }
}

/// A proptest strategy: scenarios generated from random seeds, shrinking by [`ScenarioTree`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ScenarioStrategy;

impl Strategy for ScenarioStrategy {
    type Tree = ScenarioTree;
    type Value = Scenario;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let seed = runner.rng().next_u64();
        Ok(ScenarioTree::new(Scenario::generate(seed)))
    }
}

impl std::fmt::Debug for ScenarioTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScenarioTree({:?})", self.current())
    }
}

/// Seed-generated scenarios that shrink (see the module doc).
pub fn scenarios() -> ScenarioStrategy {
    ScenarioStrategy
}

/// Shrinks `failing` (known to fail) while `still_fails` says a simpler one fails too,
/// within `runs_max` runs; returns the simplest failing scenario found.
pub fn shrink(
    failing: Scenario,
    runs_max: usize,
    mut still_fails: impl FnMut(&Scenario) -> bool,
) -> Scenario {
    let mut tree = ScenarioTree::new(failing);
    if !tree.simplify() {
        return tree.accepted().clone();
    }
    for _ in 0..runs_max {
        let more = if still_fails(&tree.current()) {
            tree.simplify()
        } else {
            tree.complicate()
        };
        if !more {
            break;
        }
    }
    tree.accepted().clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ClientRole;

    #[test]
    fn shrinking_keeps_only_the_fault_that_matters() {
        // Pretend the run fails exactly when the schedule still has a fault of the first
        // fault's kind on its node.
        let original = Scenario::generate(11);
        let culprit = original.faults[0].fault.kind();
        let fails = |scenario: &Scenario| scenario.faults.iter().any(|f| f.fault.kind() == culprit);
        let shrunk = shrink(original.clone(), 1_000, fails);
        assert_eq!(shrunk.faults.len(), 1, "{shrunk}");
        assert_eq!(shrunk.faults[0].fault.kind(), culprit);
        assert_eq!(shrunk.clients.len(), 1);
        let named_nodes: std::collections::BTreeSet<u8> =
            shrunk.clients.iter().map(|client| client.node).collect();
        assert!(
            usize::from(shrunk.nodes) <= named_nodes.len() + 1,
            "{shrunk}"
        );
        assert!(shrunk.duration_ms <= original.duration_ms);
        assert!(shrunk.check().is_ok());
    }

    #[test]
    fn a_fault_triggered_by_a_producer_keeps_its_producer() {
        // The run fails as long as a leader is struck after an idempotent send: shrinking
        // may drop every other client, never the idempotent producer the fault needs.
        let original = (0..)
            .map(Scenario::generate_cluster)
            .find(|scenario| {
                scenario
                    .faults
                    .iter()
                    .any(|scheduled| scheduled.fault.kind() == "produce-leader-isolate")
            })
            .expect("some cluster seed cuts off a leader after an idempotent send");
        let fails = |scenario: &Scenario| {
            scenario
                .faults
                .iter()
                .any(|scheduled| scheduled.fault.kind() == "produce-leader-isolate")
        };
        let shrunk = shrink(original, 1_000, fails);
        assert!(shrunk.check().is_ok(), "{shrunk}");
        assert_eq!(shrunk.faults.len(), 1, "{shrunk}");
        assert_eq!(shrunk.clients.len(), 1, "{shrunk}");
        assert_eq!(shrunk.clients[0].role, ClientRole::IdempotentProducer);
    }

    #[test]
    fn a_scenario_that_cannot_shrink_is_returned_as_is() {
        let original = Scenario::generate(3);
        let shrunk = shrink(original.clone(), 1_000, |_| false);
        assert_eq!(shrunk, original);
    }
}
