//! The fixed range of transaction seeds CI runs: a 3-node cluster where transactional
//! producers commit and abort transactions over several partitions, copiers in one consumer
//! group copy an input topic to an output topic exactly once (read_committed input, output
//! and input offsets in one transaction), and read_committed and read_uncommitted consumers
//! read the output; under node crashes, pauses, isolation and splits, transactional clients
//! that crash mid-transaction, pause past their transaction timeout and lose answers, and
//! coordinators that crash or are cut off right after an EndTxn. Every seed must keep every
//! invariant (no aborted or open data read as committed, transactions visible all together
//! or not at all, no skipped committed record, each input record copied exactly once, and
//! every transaction ended and the input copied once faults heal) with real progress.
//! (Simulation builds only: `cargo sim-test --test transaction_seeds`; by hand:
//! `cargo sim -- --transactions --seeds A..B`.)
#![cfg(madsim)]

use myelin_sim::checkers::MIN_RECORDS_READ;
use myelin_sim::{run_seeds, RunOptions, Scenario};
use std::path::Path;

/// The transaction seeds CI runs on every change.
const SEEDS: std::ops::Range<u64> = 0..200;
/// Simulations run at once.
const JOBS: usize = 2;

#[test]
fn every_transaction_seed_of_the_fixed_range_passes_with_progress() {
    let simulator = Path::new(env!("CARGO_BIN_EXE_myelin-sim"));
    let started = std::time::Instant::now();
    let reports = run_seeds(
        SEEDS,
        JOBS,
        Scenario::generate_transactions,
        &RunOptions::default(),
        simulator,
    );
    let mut problems = Vec::new();
    for report in &reports {
        let made_progress = report.counts.transactions_committed > 0
            && report.counts.transactions_aborted > 0
            && report.counts.records_read >= MIN_RECORDS_READ;
        problems.extend(report.problem(made_progress));
    }
    let injected = |kind: &str| -> u64 {
        reports
            .iter()
            .map(|r| r.faults.injected.get(kind).copied().unwrap_or(0))
            .sum()
    };
    let sum = |count: fn(&myelin_sim::RunReport) -> u64| -> u64 { reports.iter().map(count).sum() };
    println!(
        "{} transaction seeds in {:.1} s: {} committed, {} aborted, {} in doubt, {} abandoned ({} fenced); faults: {} coordinator crashes, {} coordinator splits, {} client crashes, {} client pauses (expirations), {} deaf clients, {} mute clients (late requests), {} node crashes; {} failing",
        reports.len(),
        started.elapsed().as_secs_f64(),
        sum(|r| r.counts.transactions_committed),
        sum(|r| r.counts.transactions_aborted),
        sum(|r| r.counts.transactions_in_doubt),
        sum(|r| r.counts.transactions_abandoned),
        sum(|r| r.counts.transactions_fenced),
        injected("coordinator-crash"),
        injected("coordinator-split"),
        injected("client-crash"),
        injected("client-pause"),
        injected("client-deaf"),
        injected("client-mute"),
        injected("crash"),
        problems.len()
    );
    assert_eq!(reports.len() as u64, SEEDS.end - SEEDS.start);
    assert!(
        [
            "coordinator-crash",
            "coordinator-split",
            "client-crash",
            "client-pause",
            "client-deaf",
            "client-mute",
            "crash"
        ]
        .iter()
        .all(|kind| injected(kind) > 0),
        "the range covers coordinator failovers, client crashes, expirations and node crashes"
    );
    assert!(
        sum(|r| r.counts.transactions_fenced) > 0,
        "some transactional client found itself fenced (an expired transaction, a successor)"
    );
    assert!(
        problems.is_empty(),
        "{} seed(s) failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
