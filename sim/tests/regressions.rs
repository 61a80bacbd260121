//! Scenarios that once failed, kept as replay files under `sim/scenarios/` and run on every
//! change. (Simulation builds only: `cargo sim-test --test regressions`.)
//!
//! - `segment-roll-gap.json`: a crash kept a segment roll but lost the unsynced tail of the
//!   segment before it, leaving an offset gap between segments; recovery now drops what
//!   follows the gap (`PartitionLog::from_recovered`) and storage cuts it.
//! - `group-sync-before-replicated.json` (group seed 45): a member syncing after its group's
//!   leader got generation 3's assignment before the generation was replicated; after a
//!   failover a new coordinator made another generation 3. Every reply about a group now
//!   waits for the group's last write to commit.
//! - `txn-marker-cut-by-truncation.json` (transaction seed 1488): a deposed leader wrote a
//!   delayed commit marker, truncated it as a follower, and, leader again, answered the
//!   coordinator's retry of that marker "already done" without writing it: a committed
//!   transaction torn across partitions. A truncation now restores the producer's last
//!   marker number (`PartitionTransactions::truncate`); core test
//!   `a_marker_cut_by_truncation_is_written_again_when_its_coordinator_retries`.
//! - `txn-verified-by-a-deposed-coordinator.json` (transaction seed 811): a coordinator
//!   aborted a transaction whose first append to a partition was still waiting for its
//!   verification; the leader answered the abort "already done" since nothing was written
//!   there, and a deposed coordinator, cut off until then, confirmed the verification: the
//!   late append opened a transaction no marker would end (its last stable offset stuck,
//!   committed transactions torn). A marker is now written wherever its transaction was
//!   added (`PartitionTransactions::marker_action`); core test
//!   `a_marker_is_written_where_its_transaction_wrote_nothing`.
//! - `follower-resent-below-its-log-start.json` (group seed 113, with the coordinators'
//!   logs trimmed below their snapshots): a leader resent a follower batches that the
//!   follower's own retention had already deleted; finding no epoch there, the follower
//!   tried to truncate committed data. A batch below a replica's log start is committed and
//!   agrees (`Replica::on_append`).
#![cfg(madsim)]

use myelin_sim::{run, RunOptions, Scenario};
use std::path::Path;

#[test]
fn every_recorded_scenario_passes() {
    let simulator = Path::new(env!("CARGO_BIN_EXE_myelin-sim"));
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .expect("sim/scenarios exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no scenario files in {}",
        directory.display()
    );
    for file in files {
        let json = std::fs::read_to_string(&file).expect("a readable scenario file");
        let scenario = Scenario::from_json(&json)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let report = run(&scenario, &RunOptions::default(), simulator);
        assert!(
            report.passed(),
            "{} fails again:\n{}",
            file.display(),
            report.summary()
        );
        assert!(
            report.faults.crashes > 0,
            "{}: no crash happened",
            file.display()
        );
    }
}
