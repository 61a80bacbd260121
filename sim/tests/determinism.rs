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

/// `--html` only watches: the run with a page is the run without one, and the page holds
/// the groups' generations and the transactions of the scenarios that have them.
#[test]
fn the_html_timeline_does_not_change_the_run() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let scenarios = [
        (Scenario::generate_cluster(3), "\"leader\":[["),
        (Scenario::generate_groups(2), "\"generation\":"),
        (
            Scenario::generate_transactions(4),
            "\"outcome\":\"committed\"",
        ),
    ];
    for (scenario, expected) in scenarios {
        let page = dir.join(format!("timeline-seed-{}.html", scenario.seed));
        let without = run(&scenario, &RunOptions::default(), simulator());
        let with = run(
            &scenario,
            &RunOptions::default().with_html(Some(page.clone())),
            simulator(),
        );
        assert_eq!(
            (without.trace_digest, without.trace_events),
            (with.trace_digest, with.trace_events),
            "--html changed the run of seed {}:\n{}\n{}",
            scenario.seed,
            without.summary(),
            with.summary()
        );
        assert_eq!(with.html_error, None);
        let html = std::fs::read_to_string(&page).expect("the page was written");
        assert!(
            html.contains(expected),
            "the page of seed {} lacks {expected}",
            scenario.seed
        );
    }
}
