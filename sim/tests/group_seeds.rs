//! The fixed range of consumer-group seeds CI runs: a 3-node cluster whose topic is shared
//! by the members of one consumer group, under node crashes, pauses, isolation and splits,
//! and members that crash, leave, pause past their session (zombies) and are cut off. Every
//! seed must keep every invariant (within a generation no partition has two owners, a
//! fenced member's commit is refused, committed offsets never move back or get lost, and the
//! group settles and commits every partition to its end once faults heal, live members own
//! every partition within the session and rebalance timeouts of the heal, and a member
//! paused past its session loses its partitions) with real
//! progress. (Simulation builds only: `cargo sim-test --test group_seeds`; by hand:
//! `cargo sim -- --groups --seeds A..B`.)
#![cfg(madsim)]

use myelin_sim::checkers::MIN_RECORDS_READ;
use myelin_sim::{run_seeds, RunOptions, Scenario};
use std::path::Path;

/// The group seeds CI runs on every change.
const SEEDS: std::ops::Range<u64> = 0..200;
/// Simulations run at once.
const JOBS: usize = 2;

#[test]
fn every_group_seed_of_the_fixed_range_passes_with_progress() {
    let simulator = Path::new(env!("CARGO_BIN_EXE_myelin-sim"));
    let reports = run_seeds(
        SEEDS,
        JOBS,
        Scenario::generate_groups,
        &RunOptions::default(),
        simulator,
    );
    let mut problems = Vec::new();
    for report in &reports {
        let made_progress = report.counts.group_commits_acknowledged > 0
            && report.counts.group_assignments > 0
            && report.counts.records_read >= MIN_RECORDS_READ;
        problems.extend(report.problem(made_progress));
    }
    let injected = |kind: &str| -> u64 {
        reports
            .iter()
            .map(|r| r.faults.injected.get(kind).copied().unwrap_or(0))
            .sum()
    };
    println!(
        "{} group seeds: {} assignments, {} commits acknowledged, {} refused, {} zombie commits (seeds with one: {}); member faults: {} crashes, {} leaves, {} pauses, {} cut off; {} failing",
        reports.len(),
        reports.iter().map(|r| r.counts.group_assignments).sum::<u64>(),
        reports.iter().map(|r| r.counts.group_commits_acknowledged).sum::<u64>(),
        reports.iter().map(|r| r.counts.group_commits_refused).sum::<u64>(),
        reports.iter().map(|r| r.checks.zombie_commits).sum::<u64>(),
        reports.iter().filter(|r| r.checks.zombie_commits > 0).count(),
        injected("member-crash"),
        injected("member-leave"),
        injected("member-pause"),
        injected("member-isolate"),
        problems.len()
    );
    assert_eq!(reports.len() as u64, SEEDS.end - SEEDS.start);
    assert!(
        [
            "member-crash",
            "member-leave",
            "member-pause",
            "member-isolate",
            "crash"
        ]
        .iter()
        .all(|kind| injected(kind) > 0),
        "the range covers every member fault and node crashes"
    );
    assert!(
        problems.is_empty(),
        "{} seed(s) failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
