//! The fixed range of cluster seeds CI runs: 3- and 5-node clusters replicating one topic
//! under crashes, pauses, isolated nodes, majority/minority splits, one-way links, packet
//! loss, fsync failures and clock skew, some aimed at the current leader or controller, and
//! leaders struck right after an idempotent producer's send (its retries must be
//! deduplicated across the new leader and a truncated log). Every seed must pass every
//! invariant (one leader per epoch, no acknowledged acks=all write lost, committed reads
//! never taken back, high watermark monotonic, no duplicates, a leader serving every
//! partition after the faults heal) with real progress. Each seed runs in a process of its own, two at a time. (Simulation builds only:
//! `cargo sim-test --test cluster_seeds`; by hand: `cargo sim -- --cluster --seeds A..B`.)
#![cfg(madsim)]

use myelin_sim::checkers::{MIN_ACKNOWLEDGED, MIN_RECORDS_READ};
use myelin_sim::{run_seeds, RunOptions, Scenario};
use std::path::Path;

/// The cluster seeds CI runs on every change.
const SEEDS: std::ops::Range<u64> = 0..400;
/// Simulations run at once.
const JOBS: usize = 2;

#[test]
fn every_cluster_seed_of_the_fixed_range_passes_with_progress() {
    let simulator = Path::new(env!("CARGO_BIN_EXE_myelin-sim"));
    let reports = run_seeds(
        SEEDS,
        JOBS,
        Scenario::generate_cluster,
        &RunOptions::default(),
        simulator,
    );
    let mut problems = Vec::new();
    for report in &reports {
        let made_progress = report.faults.total_injected() > 0
            && report.counts.acknowledged() >= MIN_ACKNOWLEDGED
            && report.counts.records_read >= MIN_RECORDS_READ;
        problems.extend(report.problem(made_progress));
    }
    let five_nodes = reports.iter().filter(|r| r.scenario.nodes == 5).count();
    let injected = |kind: &str| -> u64 {
        reports
            .iter()
            .map(|r| r.faults.injected.get(kind).copied().unwrap_or(0))
            .sum()
    };
    let splits = injected("split");
    let leader_strikes = injected("produce-leader-crash") + injected("produce-leader-isolate");
    let retried: u64 = reports
        .iter()
        .map(|r| r.counts.acknowledged_idempotent_retried)
        .sum();
    println!(
        "{} cluster seeds ({five_nodes} of 5 nodes): {} batches acknowledged ({retried} idempotent ones after a retry), {} crashes, {splits} splits, {leader_strikes} leaders struck right after an idempotent send, {} failing",
        reports.len(),
        reports.iter().map(|r| r.counts.acknowledged()).sum::<u64>(),
        reports.iter().map(|r| r.faults.crashes).sum::<u64>(),
        problems.len()
    );
    assert_eq!(reports.len() as u64, SEEDS.end - SEEDS.start);
    assert!(
        five_nodes > 0 && splits > 0,
        "the range covers 5-node clusters and splits"
    );
    assert!(
        injected("produce-leader-crash") > 0 && injected("produce-leader-isolate") > 0,
        "the range crashes and cuts off leaders right after idempotent sends"
    );
    assert!(
        retried > 0,
        "idempotent producers retry batches across those faults"
    );
    assert!(
        problems.is_empty(),
        "{} seed(s) failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
