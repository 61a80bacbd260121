//! The `myelin` subcommands built on the admin APIs of issue #14 (CreatePartitions,
//! IncrementalAlterConfigs, DescribeConfigs' per-config sources, DeleteGroups): `topics
//! alter`, `topics add-partitions`, the configs of `topics describe`, `groups delete`.
//! The rest of the tool is tested in `cli.rs`. The last test runs every topic and group
//! subcommand once more on a 3-node cluster, through a node that is not (necessarily) the
//! controller, a partition leader or the group's coordinator.

use std::process::Command;
use std::time::Duration;

use myelin_tests::cli::{self, wait_for};
use myelin_tests::clients::{self, run, CLIENT_TIMEOUT};
use myelin_tests::node::start_cluster;
use myelin_tests::Node;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

/// `topics describe --json`'s config `name`: (value, is_default).
fn config(b: &str, topic: &str, name: &str) -> (Value, Value) {
    let described = cli::json(&["topics", "describe", topic, "-b", b]);
    let entry = described["configs"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no config {name} in {described}"))
        .clone();
    (entry["value"].clone(), entry["is_default"].clone())
}

#[test]
fn topics_alter_add_partitions_and_configs() {
    let node = Node::start("cli_admin_topics");
    let b = node.bootstrap();
    let b = b.as_str();
    cli::ok(
        &[
            "topics",
            "create",
            "tuned",
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(
        config(b, "tuned", "retention.ms"),
        (Value::from("3600000"), Value::from(false))
    );
    let described = cli::ok(&["topics", "describe", "tuned", "-b", b], None).stdout;
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["retention.ms", "3600000"]),
        "{described}"
    );

    let altered = cli::ok(
        &[
            "topics",
            "alter",
            "tuned",
            "--config",
            "segment.bytes=1048576",
            "--delete-config",
            "retention.ms",
            "-b",
            b,
        ],
        None,
    );
    assert!(
        altered
            .stdout
            .contains("set segment.bytes=1048576 on topic tuned"),
        "{}",
        altered.describe()
    );
    assert_eq!(
        config(b, "tuned", "segment.bytes"),
        (Value::from("1048576"), Value::from(false))
    );
    assert_eq!(config(b, "tuned", "retention.ms").1, Value::from(true));
    let bad = cli::fails(&[
        "topics",
        "alter",
        "tuned",
        "--config",
        "no.such.config=1",
        "-b",
        b,
    ]);
    assert!(
        bad.stderr.contains("changing topic \"tuned\"'s configs"),
        "{}",
        bad.describe()
    );

    let grown = cli::json(&[
        "topics",
        "add-partitions",
        "tuned",
        "--partitions",
        "5",
        "-b",
        b,
    ]);
    assert_eq!(grown["partitions"], 5);
    let mut list = Command::new(clients::kcat());
    list.args(["-L", "-b", b, "-t", "tuned", "-J"]);
    let listed = run(list, None, CLIENT_TIMEOUT);
    let metadata: Value = serde_json::from_str(&listed.stdout).expect("kcat -L -J output");
    assert_eq!(
        metadata["topics"][0]["partitions"].as_array().map(Vec::len),
        Some(5)
    );
    // The new partitions take records.
    cli::ok(
        &["produce", "tuned", "--partition", "4", "-b", b],
        Some(b"on-four\n"),
    );
    let read = cli::ok(
        &[
            "consume",
            "tuned",
            "--partition",
            "4",
            "--from-beginning",
            "-e",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(read.stdout.trim(), "on-four");
    let shrink = cli::fails(&[
        "topics",
        "add-partitions",
        "tuned",
        "--partitions",
        "3",
        "-b",
        b,
    ]);
    assert!(
        shrink.stderr.contains("has 5 partition(s)"),
        "{}",
        shrink.describe()
    );
}

#[test]
fn groups_delete_refuses_a_live_group_and_deletes_an_empty_one() {
    let node = Node::start("cli_admin_groups");
    let b = node.bootstrap();
    let b = b.as_str();
    cli::create_topic(b, "jobs", 2);
    cli::ok(&["produce", "jobs", "-b", b], Some(b"a\nb\nc\n"));
    let mut member = cli::spawn(&[
        "consume",
        "jobs",
        "--group",
        "workers",
        "--from-beginning",
        "-b",
        b,
    ]);
    wait_for(WAIT, "the member to read the three records", || {
        if member.lines().len() == 3 {
            Ok(())
        } else {
            Err(format!("{:?}", member.lines()))
        }
    });
    let refused = cli::fails(&["groups", "delete", "workers", "-b", b]);
    assert!(
        refused.stderr.contains("has active members"),
        "{}",
        refused.describe()
    );
    // Ctrl-C: the member commits and leaves, so the group is empty at once.
    member.interrupt();
    assert!(
        member.wait_for_exit(WAIT),
        "the consumer did not exit on SIGINT"
    );

    let deleted = cli::ok(&["groups", "delete", "workers", "-b", b], None);
    assert_eq!(deleted.stdout.trim(), "deleted group workers");
    let listed = cli::json(&["groups", "list", "-b", b]);
    assert!(
        !listed["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["group"] == "workers"),
        "{listed}"
    );
    let again = cli::fails(&["groups", "delete", "workers", "-b", b]);
    assert!(
        again.stderr.contains("group \"workers\" does not exist"),
        "{}",
        again.describe()
    );
    // Its offsets went with it: a new member starts from the beginning again.
    let reread = cli::ok(
        &[
            "consume",
            "jobs",
            "--group",
            "workers",
            "--from-beginning",
            "-e",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(reread.stdout.lines().count(), 3, "{}", reread.describe());
}

/// `topics list --json`'s entry for `topic`: (partitions, replication factor), if listed.
fn listed_topic(b: &str, topic: &str) -> Option<(Value, Value)> {
    let listed = cli::json(&["topics", "list", "-b", b]);
    listed["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == topic))
        .map(|t| (t["partitions"].clone(), t["replication_factor"].clone()))
}

/// `groups describe --json`'s total lag of `group`.
fn group_lag(b: &str, group: &str) -> i64 {
    let described = cli::json(&["groups", "describe", group, "-b", b]);
    described["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| o["lag"].as_i64().expect("lag"))
        .sum()
}

#[test]
fn topic_and_group_subcommands_on_three_nodes() {
    let nodes = start_cluster("cli_admin_cluster", 3);
    let bootstraps: Vec<String> = nodes.iter().map(Node::bootstrap).collect();
    // Node 2 alone as bootstrap: the tool finds controller, leaders and coordinator.
    let b = bootstraps[1].as_str();
    cli::ok(
        &[
            "topics",
            "create",
            "fleet",
            "--partitions",
            "2",
            "--replication-factor",
            "3",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(
        listed_topic(b, "fleet"),
        Some((Value::from(2), Value::from(3)))
    );

    // A config change and new partitions reach every node's view.
    cli::ok(
        &[
            "topics",
            "alter",
            "fleet",
            "--config",
            "retention.ms=7200000",
            "-b",
            b,
        ],
        None,
    );
    cli::ok(
        &[
            "topics",
            "add-partitions",
            "fleet",
            "--partitions",
            "4",
            "-b",
            b,
        ],
        None,
    );
    for each in &bootstraps {
        wait_for(WAIT, "every node to report the change", || {
            let described = cli::try_json(&["topics", "describe", "fleet", "-b", each])?;
            let partitions = described["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let led = partitions
                .iter()
                .filter(|p| (1..=3).contains(&p["leader"].as_i64().unwrap_or(-1)))
                .count();
            let retention = described["configs"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == "retention.ms"))
                .map(|c| c["value"].clone());
            if led == 4 && retention == Some(Value::from("7200000")) {
                Ok(())
            } else {
                Err(described.to_string())
            }
        });
    }

    // Records on all four partitions, read by a group; its lag, a reset, its deletion.
    cli::produce_keyed(
        b,
        "fleet",
        &(0..20).map(|i| format!("k{i}:v{i}\n")).collect::<String>(),
    );
    let consumed = cli::ok(
        &[
            "consume",
            "fleet",
            "--group",
            "crew",
            "--from-beginning",
            "-e",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(
        consumed.stdout.lines().count(),
        20,
        "{}",
        consumed.describe()
    );
    assert_eq!(group_lag(b, "crew"), 0);
    let described = cli::ok(&["groups", "describe", "crew", "-b", b], None).stdout;
    assert!(
        described.contains("TOPIC") && described.contains("LAG") && described.contains("fleet"),
        "{described}"
    );
    let reset = cli::json(&[
        "groups",
        "reset-offsets",
        "crew",
        "--topic",
        "fleet",
        "--to-earliest",
        "-b",
        b,
    ]);
    assert!(
        reset["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .all(|o| o["new_offset"] == 0),
        "{reset}"
    );
    assert_eq!(group_lag(b, "crew"), 20);
    let deleted = cli::ok(&["groups", "delete", "crew", "-b", b], None);
    assert_eq!(deleted.stdout.trim(), "deleted group crew");
    let listed = cli::json(&["groups", "list", "-b", b]);
    assert!(
        !listed["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["group"] == "crew"),
        "{listed}"
    );

    let deleted = cli::ok(&["topics", "delete", "fleet", "-b", b], None);
    assert_eq!(deleted.stdout.trim(), "deleted topic fleet");
    for each in &bootstraps {
        wait_for(
            WAIT,
            "every node to forget the topic",
            || match listed_topic(each, "fleet") {
                None => Ok(()),
                Some(found) => Err(format!("{found:?}")),
            },
        );
    }
}
