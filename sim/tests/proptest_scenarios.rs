//! proptest generates scenarios (from random seeds) and runs them; a failure shrinks to a
//! minimal fault schedule (`myelin_sim::shrink`), and proptest prints it with `Debug`,
//! which is its replay command (`cargo sim -- --scenario '<json>'`).
//! (Simulation builds only: `cargo sim-test --test proptest_scenarios`.)
#![cfg(madsim)]

use myelin_sim::shrink::scenarios;
use myelin_sim::{run, RunOptions};
use proptest::prelude::*;
use std::path::Path;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_scenarios_keep_every_invariant(scenario in scenarios()) {
        let report = run(&scenario, &RunOptions::default(), Path::new(env!("CARGO_BIN_EXE_myelin-sim")));
        prop_assert!(report.passed(), "{}", report.summary());
    }
}
