//! A node that was down while retention deleted everything it held of a partition catches
//! up when it returns: it drops its old log and starts over at its leader's log start.
//!
//! Three `myelin node` processes; a topic of one partition, replication factor 3, small
//! segments (`segment.bytes`) and a short `retention.ms`, written by confluent-kafka's
//! producer. Node 3 is killed -9; the others take more writes until retention on them has
//! deleted every offset node 3 holds. Node 3 restarts on its data directory and must end
//! with the same log tail as the others, starting past what it held. (The core's
//! `cluster_tests` show the follower's side of this deterministically:
//! `a_follower_behind_the_leaders_log_start_restarts_there_and_catches_up`.)

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use myelin_tests::clients;
use myelin_tests::node::{cluster_bootstrap, cluster_diagnostics, start_cluster, stored_batches};
use myelin_tests::Node;

const TOPIC: &str = "short-lived";
const RETENTION_MS: u64 = 2_000;
const WAIT_LIMIT: Duration = Duration::from_secs(45);

/// The (base offset, last offset, leader epoch) of each batch a node holds, in log order.
fn batches(data_dir: &Path) -> Vec<(i64, i64, i32)> {
    stored_batches(data_dir, TOPIC, 0)
        .0
        .iter()
        .map(|header| {
            (
                header.base_offset,
                header.base_offset + i64::from(header.last_offset_delta),
                header.partition_leader_epoch,
            )
        })
        .collect()
}

fn produce(nodes: &mut [Node], from: usize, start: usize, messages: usize) {
    let bootstrap = cluster_bootstrap(nodes);
    let mut command = clients::python_script(&nodes[from], "ck_produce.py");
    command.args([
        "--bootstrap",
        &bootstrap,
        "--topic",
        TOPIC,
        "--start",
        &start.to_string(),
        "--messages",
        &messages.to_string(),
    ]);
    clients::run_json(&nodes[from], command);
}

/// Polls `done` every 100 ms; panics with the nodes' logs after [`WAIT_LIMIT`].
fn wait_until(nodes: &[Node], what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > WAIT_LIMIT {
            panic!(
                "not within {WAIT_LIMIT:?}: {what}\n{}",
                cluster_diagnostics(nodes)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("retention test: {what} after {:?}", started.elapsed());
}

#[test]
fn a_node_whose_whole_log_expired_while_it_was_down_catches_up_from_the_leaders_log_start() {
    let mut nodes = start_cluster("retention_catch_up", 3);
    let bootstrap = cluster_bootstrap(&mut nodes);
    let mut create = clients::python_script(&nodes[0], "ck_create_topic.py");
    create.args([
        "--bootstrap",
        &bootstrap,
        "--topic",
        TOPIC,
        "--partitions",
        "1",
        "--replication-factor",
        "3",
        "--config",
        "segment.bytes=1024",
        "--config",
        &format!("retention.ms={RETENTION_MS}"),
    ]);
    clients::run_json(&nodes[0], create);
    produce(&mut nodes, 0, 0, 100);
    let data_dirs: Vec<_> = nodes.iter().map(|n| n.data_dir().to_path_buf()).collect();
    wait_until(&nodes, "every node holds the first 100 messages", || {
        data_dirs
            .iter()
            .all(|dir| batches(dir).last().is_some_and(|(_, last, _)| *last == 99))
    });

    nodes[2].kill();
    let held_end = batches(&data_dirs[2])
        .last()
        .map_or(0, |(_, last, _)| last + 1);
    produce(&mut nodes, 0, 100, 200);
    // Once the new messages are past retention too, one more write closes the segments that
    // hold them: every segment node 3 shares with the others becomes deletable.
    thread::sleep(Duration::from_millis(RETENTION_MS + 500));
    produce(&mut nodes, 0, 300, 50);
    wait_until(
        &nodes,
        "retention on the survivors deleted every offset node 3 holds",
        || {
            data_dirs[..2].iter().all(|dir| {
                batches(dir)
                    .first()
                    .is_some_and(|(base, _, _)| *base > held_end)
            })
        },
    );

    // A survivor's outbound queue to node 3 may still hold appends read before retention
    // deleted them; restarting each survivor drops those, so node 3 meets only logs that
    // start past everything it holds.
    for survivor in 0..2 {
        nodes[survivor].kill();
        nodes[survivor].restart();
        let other = 1 - survivor;
        wait_until(
            &nodes,
            &format!("node {} is back in step", survivor + 1),
            || batches(&data_dirs[survivor]).last() == batches(&data_dirs[other]).last(),
        );
    }
    nodes[2].restart();
    wait_until(&nodes, "node 3 holds the survivors' log tail", || {
        let survivor = batches(&data_dirs[0]);
        let returned = batches(&data_dirs[2]);
        let (Some(survivor_last), Some(returned_first)) = (survivor.last(), returned.first())
        else {
            return false;
        };
        returned.last() == Some(survivor_last)
            && survivor
                .iter()
                .filter(|batch| batch.0 >= returned_first.0)
                .eq(returned.iter())
    });
    let returned_first = batches(&data_dirs[2])
        .first()
        .map_or(-1, |(base, _, _)| *base);
    assert!(
        returned_first > held_end,
        "node 3 dropped its expired log (which ended at {held_end}) and restarted past it, \
         at {returned_first}"
    );
    nodes[2].assert_running("after catching up");
    let log = myelin_tests::node::read_lossy(nodes[2].log_path());
    assert!(
        log.contains("lies below its leader's log start: restarted there"),
        "node 3 caught up by restarting its log at the leader's log start:\n{}",
        nodes[2].log_tail()
    );
}
