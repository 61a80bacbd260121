//! The checkers catch real bugs: each deliberate defect (`myelin_core::defects`) is caught
//! by some seed of the fixed range, shrinks to a short fault schedule, and that schedule
//! passes without the defect. The replication defects run in cluster scenarios, the group
//! coordinator's in group scenarios, the transaction protocol's in transaction scenarios. (Simulation builds with the feature only:
//! `cargo sim-test --features defects --test defects`.)
#![cfg(all(madsim, feature = "defects"))]

use myelin_core::defects::Defect;
use myelin_sim::shrink::shrink;
use myelin_sim::{run, RunOptions, RunReport, Scenario};
use std::path::Path;
use std::sync::Mutex;

/// The range the defects must be caught in: the one CI runs.
const SEEDS: std::ops::Range<u64> = 0..200;
/// Most runs a shrink may take.
const SHRINK_RUNS_MAX: usize = 150;
/// What "a short schedule" means.
const SHRUNK_FAULTS_MAX: usize = 3;

fn simulator() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_myelin-sim"))
}

fn with_defect(defect: Defect) -> RunOptions {
    RunOptions {
        defect: Some(defect),
        ..RunOptions::default()
    }
}

/// The scenarios a defect is hunted in: cluster ones for the replication defects, group
/// ones for the group coordinator's, transaction ones for the transaction protocol's.
fn scenario_for(defect: Defect, seed: u64) -> Scenario {
    if Defect::REPLICATION.contains(&defect) {
        Scenario::generate_cluster(seed)
    } else if Defect::GROUPS.contains(&defect) {
        Scenario::generate_groups(seed)
    } else if Defect::TRANSACTIONS.contains(&defect) {
        Scenario::generate_transactions(seed)
    } else {
        Scenario::generate(seed)
    }
}

/// Finds the first seed that catches `defect`, shrinks it, and checks the result.
fn catch_and_shrink(defect: Defect) -> Result<String, String> {
    let options = with_defect(defect);
    let caught: Option<RunReport> = SEEDS
        .map(|seed| run(&scenario_for(defect, seed), &options, simulator()))
        .find(|report| !report.failure_signature().is_empty());
    let Some(caught) = caught else {
        return Err(format!("{defect}: no seed in {SEEDS:?} caught it"));
    };
    let shrunk = shrink(caught.scenario.clone(), SHRINK_RUNS_MAX, |candidate| {
        run(candidate, &options, simulator()).fails_like(&caught)
    });
    let shrunk_report = run(&shrunk, &options, simulator());
    if !shrunk_report.fails_like(&caught) {
        return Err(format!(
            "{defect}: the shrunk scenario does not fail:\n{}",
            shrunk_report.summary()
        ));
    }
    if shrunk.faults.len() > SHRUNK_FAULTS_MAX {
        return Err(format!(
            "{defect}: shrunk only to {} faults:\n{shrunk}",
            shrunk.faults.len()
        ));
    }
    let healthy = run(&shrunk, &RunOptions::default(), simulator());
    if !healthy.failure_signature().is_empty() {
        return Err(format!(
            "{defect}: the shrunk scenario fails without the defect too:\n{}",
            healthy.summary()
        ));
    }
    Ok(format!(
        "{defect}: caught by seed {} ({}), shrunk from {} to {} fault(s):\n{shrunk}  first violation: {}\n  replay: {}",
        caught.scenario.seed,
        caught.failure_signature().into_iter().collect::<Vec<_>>().join(", "),
        caught.scenario.faults.len(),
        shrunk.faults.len(),
        shrunk_report
            .checks
            .violations
            .first()
            .map_or_else(|| "panic".to_string(), |v| v.to_string()),
        shrunk_report.replay_command()
    ))
}

#[test]
fn every_deliberate_defect_is_caught_and_shrinks_to_a_short_schedule() {
    let results: Mutex<Vec<(Defect, Result<String, String>)>> = Mutex::new(Vec::new());
    let defects: Vec<Defect> = Defect::ALL
        .into_iter()
        .chain(Defect::REPLICATION)
        .chain(Defect::GROUPS)
        .chain(Defect::TRANSACTIONS)
        .collect();
    std::thread::scope(|scope| {
        for half in defects.chunks(defects.len().div_ceil(2)) {
            let results = &results;
            scope.spawn(move || {
                for defect in half {
                    let outcome = catch_and_shrink(*defect);
                    results.lock().unwrap().push((*defect, outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(defect, _)| *defect);
    let mut failures = Vec::new();
    for (_, outcome) in results {
        match outcome {
            Ok(text) => println!("{text}"),
            Err(text) => failures.push(text),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
