//! Transactions with real clients, on one node and on a 3-node cluster.
//!
//! The transactional producer scripts (`tests/clients/ck_txn_produce.py`,
//! `kp_txn_produce.py`, `tests/js/txn_produce.js`) share one command line and print one JSON
//! line per event (see `ck_txn_produce.py`); `ck_txn_consume.py` reads a whole topic under
//! an isolation level; `ck_committed_offsets.py` fetches a group's committed offsets with
//! require_stable; `ck_txn_copier.py` is Kafka's transactions system-test copier.
//!
//! Per client, on one node and on a cluster (replication factor 3):
//! 1. A zombie producer opens a transaction; a second producer with the same transactional
//!    id fences it (its next send and its commit fail), then runs four transactions of ten
//!    messages over three partitions, each also committing a consumer group's offset
//!    (TxnOffsetCommit): commit, abort, commit, and one left open (the process exits hard).
//!    Plain messages are produced after it. A read_committed reader sees exactly the two
//!    committed transactions and the plain messages that precede the open transaction in
//!    their partition: nothing of the zombie, the aborted or the open transaction, and no
//!    plain message behind the open one. A read_uncommitted reader sees every acknowledged
//!    message, each at the offset it was acknowledged at.
//! 2. Another producer holds a transaction open (its messages acknowledged); plain messages
//!    produced meanwhile behind it stay hidden from read_committed until it commits; then
//!    both appear.
//! 3. The coordinator aborts the open transaction of 1 at its timeout: the plain messages
//!    behind it appear, its own never do; the group's committed offset is the one the last
//!    committed transaction wrote (not the aborted or the open one's).
//!
//! Kafka's transactions system test (copiers under kill -9) is `transactions_copier.rs`.

mod txn_support;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use myelin_tests::clients::StreamingClient;
use txn_support::*;

/// The scenario of the module doc for one client.
fn transactions_scenario(library: Library, cluster: bool) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let label = format!(
        "{}{}",
        library.label(),
        if cluster { "_cluster" } else { "" }
    );
    let mut env = Env::new(&label, cluster);
    let open_topic = format!("txn-open-{label}");
    let held_topic = format!("txn-held-{label}");
    let group = format!("txn-offsets-{label}");
    env.create_topic(&open_topic, 3);
    env.create_topic(&held_topic, 3);

    // The group has no offset yet. Asking also creates `__consumer_offsets` (FindCoordinator
    // of the group): Myelin answers AddOffsetsToTxn COORDINATOR_NOT_AVAILABLE until it exists,
    // which kafkajs does not retry (its transaction fails), where Kafka derives the partition
    // from the configured partition count and never refuses.
    let before = env.committed_offsets(&group, &open_topic, "0");
    if before["0"].as_i64().is_some_and(|offset| offset >= 0) {
        env.fail(&format!("a fresh group has a committed offset: {before}"));
    }

    // 1. A fenced zombie, then commit, abort, commit, and a transaction left open.
    let bootstrap = env.bootstrap();
    let mut producer = library.txn_producer(&bootstrap);
    producer.args([
        "--topic",
        &open_topic,
        "--transactional-id",
        &format!("txn-{label}"),
        "--pattern",
        "cacx",
        "--messages",
        &TXN_MESSAGES.to_string(),
        "--fence",
        "--offsets-group",
        &group,
        "--transaction-timeout-ms",
        &OPEN_TIMEOUT_MS.to_string(),
    ]);
    let lines = env.run_ok("producer-cacx", producer);
    let opened = Instant::now();
    let run = parse_txn_run(&lines);
    env.mark("producer: zombie fenced; committed, aborted, committed, left one open");
    // The producer of 2 starts now: its hold overlaps the checks of 1.
    let mut held = library.txn_producer(&bootstrap);
    held.args([
        "--topic",
        &held_topic,
        "--transactional-id",
        &format!("txn-held-{label}"),
        "--pattern",
        "c",
        "--messages",
        &TXN_MESSAGES.to_string(),
        "--start",
        "100",
        "--hold",
        &HOLD_SECONDS.to_string(),
    ]);
    let shown = format!("{held:?}");
    let mut held = StreamingClient::spawn(held);
    let outcomes: Vec<&str> = run.transactions.iter().map(|(o, _)| o.as_str()).collect();
    if outcomes != ["committed", "aborted", "committed", "open"] {
        env.fail(&format!(
            "the transactions ended {outcomes:?}, not committed, aborted, committed, open"
        ));
    }
    if run.zombie.is_empty() || !run.fenced_stages.iter().any(|s| s == "commit") {
        env.fail(&format!(
            "the zombie should have written ({} records acknowledged) and then failed to \
             commit once fenced (fenced stages: {:?})",
            run.zombie.len(),
            run.fenced_stages
        ));
    }
    for (index, (_, records)) in run.transactions.iter().enumerate() {
        if records.len() != TXN_MESSAGES {
            env.fail(&format!(
                "transaction {index}: {} of {TXN_MESSAGES} messages acknowledged",
                records.len()
            ));
        }
    }
    let plain = env.produce_plain(&open_topic, 5000, PLAIN_MESSAGES);
    let (rc, ru) = env.consume_both(&open_topic);
    let open_for = opened.elapsed();
    let origin = origins(&run, &plain, "plain message");
    let committed: Vec<Rec> = [&run.transactions[0].1, &run.transactions[2].1]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let open = run.transactions[3].1.clone();
    let plain_visible = visible_before(&plain, &open);
    assert!(
        plain_visible.len() < plain.len(),
        "some plain message must lie behind the open transaction"
    );
    let expected: Vec<Rec> = committed.iter().chain(&plain_visible).cloned().collect();
    if let Err(problem) = check_view(&rc.records, &expected, &origin) {
        env.fail(&format!(
            "read_committed while transaction 3 is open ({open_for:?} after the producer left \
             it, timeout {OPEN_TIMEOUT_MS} ms; {} plain messages behind it must stay hidden): \
             {problem}",
            plain.len() - plain_visible.len()
        ));
    }
    let everything: Vec<Rec> = run
        .zombie
        .iter()
        .chain(run.transactions.iter().flat_map(|(_, records)| records))
        .chain(&plain)
        .cloned()
        .collect();
    if let Err(problem) = check_view(&ru.records, &everything, &origin) {
        env.fail(&format!(
            "read_uncommitted should read every acknowledged message: {problem}"
        ));
    }

    // 2. A transaction held open hides what is written behind it until it commits.
    let held_started = Instant::now();
    while !held.lines().iter().any(|line| line.contains("\"holding\"")) {
        if held.has_exited() || held_started.elapsed() > WAIT {
            let (lines, stderr) = held.kill();
            env.fail(&format!(
                "the held transaction's messages were never acknowledged: {shown}\n{}\n--- stderr ---\n{stderr}",
                lines.join("\n")
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
    env.mark("held producer: transaction acknowledged, holding");
    let plain_held = env.produce_plain(&held_topic, 7000, PLAIN_MESSAGES);
    let during = env.consume(&held_topic, "read_committed");
    let checked_at = wall_clock();
    if !held.wait_for_exit(Duration::from_secs(HOLD_SECONDS) + WAIT) {
        env.fail("the held producer did not finish");
    }
    let (lines, stderr) = held.kill();
    let finished_ok = lines
        .last()
        .is_some_and(|line| line.contains("\"summary\""));
    env.outputs.push(format!(
        "--- held producer: {shown}\n{}\n--- stderr ---\n{stderr}",
        lines.join("\n")
    ));
    if !finished_ok {
        env.fail("the held producer failed");
    }
    let held_run = parse_txn_run(&lines);
    env.mark("held producer committed");
    let held_records = held_run
        .transactions
        .first()
        .map(|(_, records)| records.clone())
        .unwrap_or_default();
    let origin = origins(&held_run, &plain_held, "plain message");
    let visible = visible_before(&plain_held, &held_records);
    assert!(
        visible.len() < plain_held.len(),
        "some plain message must lie behind the held transaction"
    );
    if let Err(problem) = check_view(&during.records, &visible, &origin) {
        env.fail(&format!(
            "read_committed while a transaction is held open ({} plain messages behind it must \
             stay hidden): {problem}",
            plain_held.len() - visible.len()
        ));
    }
    // The check above is sound only if the reader finished before the hold ended.
    if let Some(holding) = held_run.holding_ts {
        if checked_at > holding + HOLD_SECONDS as f64 {
            env.fail(&format!(
                "the read_committed reader finished {:.1} s after the hold began, after its end: \
                 the machine is too slow for this check (raise HOLD_SECONDS)",
                checked_at - holding
            ));
        }
    }
    let after = env.consume(&held_topic, "read_committed");
    let everything: Vec<Rec> = held_records.iter().chain(&plain_held).cloned().collect();
    if let Err(problem) = check_view(&after.records, &everything, &origin) {
        env.fail(&format!(
            "read_committed after the held transaction committed: {problem}"
        ));
    }

    // 3. The coordinator aborts the open transaction at its timeout.
    let origin = origins(&run, &plain, "plain message");
    let expected: Vec<Rec> = committed.iter().chain(&plain).cloned().collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let view = env.consume(&open_topic, "read_committed");
        match check_view(&view.records, &expected, &origin) {
            Ok(()) => break,
            Err(problem) if Instant::now() > deadline => env.fail(&format!(
                "read_committed {:?} after transaction 3 was left open with a timeout of \
                 {OPEN_TIMEOUT_MS} ms: {problem}",
                opened.elapsed()
            )),
            Err(_) => {
                env.check_nodes(None);
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
    env.mark(&format!(
        "the open transaction was aborted by its timeout, {:?} after it was left",
        opened.elapsed()
    ));
    let offsets = env.committed_offsets(&group, &open_topic, "0");
    let want = 3 * TXN_MESSAGES as i64;
    if offsets["0"].as_i64() != Some(want) {
        env.fail(&format!(
            "the group's offset should be {want}, where the last committed transaction (2) put \
             it, not transaction 1's (aborted, {}) or 3's (timed out, {}): {offsets}",
            2 * TXN_MESSAGES,
            4 * TXN_MESSAGES
        ));
    }
}

#[test]
fn confluent_kafka_transactions_are_atomic_isolated_and_fenced_on_one_node() {
    transactions_scenario(Library::ConfluentKafka, false);
}

#[test]
fn kafka_python_transactions_are_atomic_isolated_and_fenced_on_one_node() {
    transactions_scenario(Library::KafkaPython, false);
}

#[test]
fn kafkajs_transactions_are_atomic_isolated_and_fenced_on_one_node() {
    transactions_scenario(Library::Kafkajs, false);
}

#[test]
fn confluent_kafka_transactions_are_atomic_isolated_and_fenced_on_a_cluster() {
    transactions_scenario(Library::ConfluentKafka, true);
}

#[test]
fn kafka_python_transactions_are_atomic_isolated_and_fenced_on_a_cluster() {
    transactions_scenario(Library::KafkaPython, true);
}

#[test]
fn kafkajs_transactions_are_atomic_isolated_and_fenced_on_a_cluster() {
    transactions_scenario(Library::Kafkajs, true);
}

// ---------------------------------------------------------------------------------------
// The checks fail on views that break them.

mod view_checks {
    use super::*;

    fn r(partition: i32, offset: i64, value: &str) -> Rec {
        Rec {
            partition,
            offset,
            value: value.to_string(),
        }
    }

    #[test]
    fn visible_before_keeps_what_precedes_the_open_transaction_per_partition() {
        let records = [r(0, 1, "a"), r(0, 5, "b"), r(1, 9, "c"), r(2, 0, "d")];
        let open = [r(0, 3, "x"), r(0, 4, "y"), r(2, 0, "z")];
        assert_eq!(
            visible_before(&records, &open),
            vec![r(0, 1, "a"), r(1, 9, "c")]
        );
    }

    #[test]
    fn check_view_accepts_exactly_the_expected_records() {
        let expected = [r(0, 1, "a"), r(1, 2, "b")];
        let view = [r(1, 2, "b"), r(0, 1, "a")];
        assert!(check_view(&view, &expected, &HashMap::new()).is_ok());
    }

    #[test]
    fn check_view_refuses_an_extra_a_missing_a_moved_or_a_duplicated_record() {
        let expected = [r(0, 1, "a"), r(1, 2, "b")];
        let origin: HashMap<String, String> =
            [("x".to_string(), "aborted transaction 1".to_string())].into();
        let extra = [r(0, 1, "a"), r(1, 2, "b"), r(0, 3, "x")];
        let err = check_view(&extra, &expected, &origin).unwrap_err();
        assert!(err.contains("aborted transaction 1"), "{err}");
        assert!(check_view(&[r(0, 1, "a")], &expected, &origin).is_err());
        assert!(check_view(&[r(0, 1, "a"), r(1, 3, "b")], &expected, &origin).is_err());
        assert!(check_view(
            &[r(0, 1, "a"), r(1, 2, "b"), r(1, 2, "b")],
            &expected,
            &origin
        )
        .is_err());
    }
}
