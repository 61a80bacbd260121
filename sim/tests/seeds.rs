//! The fixed seed range CI runs: every seed in `SEEDS` must pass every invariant, and with
//! real progress: acknowledged writes, records read, and at least one crash of a node.
//! Each seed runs in a process of its own (see `myelin_sim::harness::run_in_process`), two
//! at a time. (Simulation builds only: `cargo sim-test --test seeds`.)
#![cfg(madsim)]

use myelin_sim::checkers::{MIN_ACKNOWLEDGED, MIN_RECORDS_READ};
use myelin_sim::{run_seeds, RunOptions, Scenario};
use std::path::Path;

/// The seeds CI runs on every change.
const SEEDS: std::ops::Range<u64> = 0..200;
/// Simulations run at once.
const JOBS: usize = 2;

#[test]
fn every_seed_of_the_fixed_range_passes_with_progress() {
    let simulator = Path::new(env!("CARGO_BIN_EXE_myelin-sim"));
    let reports = run_seeds(
        SEEDS,
        JOBS,
        Scenario::generate,
        &RunOptions::default(),
        simulator,
    );
    let mut problems = Vec::new();
    for report in &reports {
        println!(
            "seed {:>4}: {} acknowledged, {} read, {} faults, {} crashes, {} checks, digest {:016x}",
            report.scenario.seed,
            report.counts.acknowledged(),
            report.counts.records_read,
            report.faults.total_injected(),
            report.faults.crashes,
            report.checks.total_checks(),
            report.trace_digest
        );
        let made_progress = report.faults.crashes > 0
            && report.counts.acknowledged() >= MIN_ACKNOWLEDGED
            && report.counts.records_read >= MIN_RECORDS_READ;
        problems.extend(report.problem(made_progress));
    }
    let acknowledged: u64 = reports.iter().map(|r| r.counts.acknowledged()).sum();
    let crashes: u64 = reports.iter().map(|r| r.faults.crashes).sum();
    println!(
        "{} seeds: {acknowledged} batches acknowledged, {crashes} crashes, {} failing",
        reports.len(),
        problems.len()
    );
    assert_eq!(reports.len() as u64, SEEDS.end - SEEDS.start);
    assert!(
        problems.is_empty(),
        "{} seed(s) failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
