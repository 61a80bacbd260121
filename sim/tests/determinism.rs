//! Determinism: the same scenario gives the same trace, run after run, and different seeds
//! give different traces. (Simulation builds only: `cargo sim-test`.)
#![cfg(madsim)]

use myelin_sim::{run, RunOptions, Scenario};
use std::path::Path;

fn simulator() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_myelin-sim"))
}

#[test]
fn one_seed_twice_gives_one_trace() {
    let scenarios = [
        Scenario::generate(3),
        Scenario::generate(8),
        Scenario::generate_cluster(3),
        Scenario::generate_cluster(16),
        Scenario::generate_groups(2),
        Scenario::generate_transactions(4),
    ];
    for scenario in scenarios {
        let seed = scenario.seed;
        let first = run(&scenario, &RunOptions::default(), simulator());
        let second = run(&scenario, &RunOptions::default(), simulator());
        assert!(first.trace_events > 1_000, "{}", first.summary());
        assert_eq!(
            (first.trace_digest, first.trace_events),
            (second.trace_digest, second.trace_events),
            "seed {seed} replayed differently:\n{}\n{}",
            first.summary(),
            second.summary()
        );
    }
}

#[test]
fn two_seeds_give_two_traces() {
    let first = run(&Scenario::generate(1), &RunOptions::default(), simulator());
    let second = run(&Scenario::generate(2), &RunOptions::default(), simulator());
    assert!(first.trace_events > 1_000 && second.trace_events > 1_000);
    assert_ne!(first.trace_digest, second.trace_digest);
}
