//! A graceful restart keeps the log: produce N to a 1-partition topic, stop the node
//! (SIGTERM or SIGINT, which must exit 0), start it on the same data dir, read the same
//! N records at the same offsets, then produce M more whose offsets continue at N.

use myelin_tests::clients::{self, python_json};
use myelin_tests::records::{
    assert_deliveries_consumed, assert_keyed_roundtrip, from_summary, keyed_messages, log_view,
};
use myelin_tests::Node;

const FIRST: usize = 100;
const MORE: usize = 50;
const KEYS: usize = 20;

fn produce(
    node: &Node,
    topic: &str,
    start: usize,
    count: usize,
    create: bool,
) -> serde_json::Value {
    let start = start.to_string();
    let count = count.to_string();
    let keys = KEYS.to_string();
    let mut args = vec![
        "--topic",
        topic,
        "--start",
        &start,
        "--messages",
        &count,
        "--keys",
        &keys,
    ];
    if create {
        args.extend(["--create-partitions", "1"]);
    }
    python_json(node, "ck_produce.py", &args)
}

fn restart_keeps_log(name: &str, stop: fn(&mut Node)) {
    let mut node = Node::start(name);
    let topic = "restarted";
    let first = produce(&node, topic, 0, FIRST, true);
    let first_deliveries = from_summary(&first, "deliveries");
    let offsets: Vec<i64> = first_deliveries.iter().map(|d| d.offset).collect();
    assert_eq!(
        offsets,
        (0..FIRST as i64).collect::<Vec<_>>(),
        "a fresh 1-partition topic acknowledges offsets 0..N in order"
    );
    let before = from_summary(&clients::ck_consume(&node, topic), "records");
    assert_keyed_roundtrip(&keyed_messages(0..FIRST, KEYS), &before, 1);

    stop(&mut node);
    node.restart();

    let after = from_summary(&clients::ck_consume(&node, topic), "records");
    assert_eq!(
        log_view(&after),
        log_view(&before),
        "the log must be identical after a restart"
    );

    let more = produce(&node, topic, FIRST, MORE, false);
    let more_deliveries = from_summary(&more, "deliveries");
    assert_eq!(
        more_deliveries.first().map(|d| d.offset),
        Some(FIRST as i64),
        "the first message produced after the restart must get offset N={FIRST}"
    );
    let all = from_summary(&clients::ck_consume(&node, topic), "records");
    assert_keyed_roundtrip(&keyed_messages(0..FIRST + MORE, KEYS), &all, 1);
    assert_deliveries_consumed(&first_deliveries, &all);
    assert_deliveries_consumed(&more_deliveries, &all);
}

#[test]
fn sigterm_restart_keeps_every_message_and_offsets_continue() {
    restart_keeps_log("restart_after_sigterm", Node::stop);
}

#[test]
fn sigint_restart_keeps_every_message_and_offsets_continue() {
    restart_keeps_log("restart_after_sigint", Node::interrupt);
}
