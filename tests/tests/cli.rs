//! The `myelin` command-line tool against real nodes: every subcommand's tables and
//! `--json`, and what it changed as other clients (kcat) and the tool itself see it.
//! Subcommands that need admin APIs served by newer nodes (`topics alter`,
//! `topics add-partitions`, topic configs, `groups delete`) are in `cli_admin.rs`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use myelin_tests::cli::{self, wait_for};
use myelin_tests::clients::{self, run, CLIENT_TIMEOUT};
use myelin_tests::node::{cluster_bootstrap, free_port, start_cluster};
use myelin_tests::Node;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

/// The non-empty lines of `text`.
fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// The cells of each line of a table (split on runs of spaces), header first.
fn table(text: &str) -> Vec<Vec<String>> {
    lines(text)
        .into_iter()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Records read with kcat: (partition, offset, key, value).
fn kcat_records(bootstrap: &str, topic: &str) -> Vec<(i32, i64, String, String)> {
    let mut consume = Command::new(clients::kcat());
    consume.args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e"]);
    consume.args(["-f", "%p %o %k %s\\n"]);
    let consumed = run(consume, None, CLIENT_TIMEOUT);
    assert!(
        consumed.status.success(),
        "kcat -C failed\n{}",
        consumed.describe()
    );
    parse_records(&consumed.stdout)
}

/// Lines "partition offset key value" as tuples, sorted by partition and offset.
fn parse_records(text: &str) -> Vec<(i32, i64, String, String)> {
    let mut records: Vec<(i32, i64, String, String)> = lines(text)
        .into_iter()
        .map(|line| {
            let parts: Vec<&str> = line.splitn(4, ' ').collect();
            assert_eq!(parts.len(), 4, "unexpected record line {line:?}");
            (
                parts[0].parse().expect("partition"),
                parts[1].parse().expect("offset"),
                parts[2].to_owned(),
                parts[3].to_owned(),
            )
        })
        .collect();
    records.sort();
    records
}

fn keyed_lines(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| format!("key-{}:{prefix}-{i}\n", i % 7))
        .collect()
}

#[test]
fn without_a_node_the_error_says_to_start_one() {
    let bootstrap = format!("127.0.0.1:{}", free_port());
    for args in [
        vec!["topics", "list", "-b", bootstrap.as_str()],
        vec!["consume", "t", "-b", bootstrap.as_str()],
        vec!["cluster", "status", "-b", bootstrap.as_str()],
    ] {
        let failed = cli::fails(&args);
        assert!(
            failed
                .stderr
                .contains(&format!("cannot reach {bootstrap} (connection refused)"))
                && failed
                    .stderr
                    .contains("is a node running? Start one with `myelin node`"),
            "{}",
            failed.describe()
        );
        assert!(
            !failed.stderr.contains("Stack backtrace"),
            "{}",
            failed.describe()
        );
    }
    // A bootstrap without a port says what the flag wants.
    let failed = cli::fails(&["topics", "list", "-b", "localhost"]);
    assert!(
        failed
            .stderr
            .contains("--bootstrap \"localhost\" is not host:port"),
        "{}",
        failed.describe()
    );
}

#[test]
fn topics_produce_and_consume_on_one_node() {
    let node = Node::start("cli_topics_produce_consume");
    let b = node.bootstrap();
    let b = b.as_str();

    let created = cli::ok(
        &["topics", "create", "events", "--partitions", "3", "-b", b],
        None,
    );
    assert_eq!(
        created.stdout.trim(),
        "created topic events with 3 partition(s), replication factor 1"
    );
    let again = cli::fails(&["topics", "create", "events", "-b", b]);
    assert!(
        again.stderr.contains("topic \"events\" already exists"),
        "{}",
        again.describe()
    );
    // kcat sees the partitions.
    let mut list = Command::new(clients::kcat());
    list.args(["-L", "-b", b, "-t", "events", "-J"]);
    let listed = run(list, None, CLIENT_TIMEOUT);
    let metadata: Value = serde_json::from_str(&listed.stdout).expect("kcat -L -J output");
    assert_eq!(
        metadata["topics"][0]["partitions"].as_array().map(Vec::len),
        Some(3)
    );

    // Table and JSON of `topics list`.
    let rows = table(&cli::ok(&["topics", "list", "-b", b], None).stdout);
    assert_eq!(rows[0], ["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"]);
    assert!(
        rows.contains(&vec!["events".into(), "3".into(), "1".into()]),
        "{rows:?}"
    );
    let listed = cli::json(&["topics", "list", "-b", b]);
    let events = listed["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "events"))
        .expect("events in topics list --json");
    assert_eq!(events["partitions"], 3);
    assert_eq!(events["replication_factor"], 1);

    // Produce keyed lines; the summary goes to stderr.
    let input = keyed_lines("v", 40);
    let produced = cli::ok(
        &["produce", "events", "--key-separator", ":", "-b", b],
        Some(input.as_bytes()),
    );
    assert!(
        produced.stderr.contains("produced 40 records to events"),
        "{}",
        produced.describe()
    );

    // Read back by kcat and by `myelin consume`: the same records, each key on one
    // partition, each key's values in the order produced.
    let by_kcat = kcat_records(b, "events");
    let consumed = cli::ok(
        &[
            "consume",
            "events",
            "--from-beginning",
            "--exit-at-end",
            "-b",
            b,
            "--format",
            "{partition} {offset} {key} {value}",
        ],
        None,
    );
    let by_myelin = parse_records(&consumed.stdout);
    assert_eq!(by_myelin.len(), 40, "{}", consumed.describe());
    assert_eq!(by_myelin, by_kcat);
    let mut partition_of_key: BTreeMap<String, i32> = BTreeMap::new();
    let mut values_of_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (partition, _, key, value) in &by_myelin {
        assert_eq!(
            *partition_of_key.entry(key.clone()).or_insert(*partition),
            *partition,
            "{key} on two partitions"
        );
        let index: usize = value.trim_start_matches("v-").parse().expect("value index");
        values_of_key.entry(key.clone()).or_default().push(index);
    }
    for (key, values) in &values_of_key {
        let mut sorted = values.clone();
        sorted.sort_unstable();
        assert_eq!(values, &sorted, "{key}'s values out of order");
    }

    // The same keys produced by kcat with librdkafka's murmur2 partitioner (Java's) land on
    // the same partitions.
    cli::create_topic(b, "by-kcat", 3);
    let mut kcat_produce = Command::new(clients::kcat());
    kcat_produce.args([
        "-P",
        "-b",
        b,
        "-t",
        "by-kcat",
        "-K",
        ":",
        "-X",
        "topic.partitioner=murmur2_random",
    ]);
    let kcat_input = keyed_lines("k", 14);
    let done = run(kcat_produce, Some(kcat_input.as_bytes()), CLIENT_TIMEOUT);
    assert!(done.status.success(), "{}", done.describe());
    for (partition, _, key, _) in kcat_records(b, "by-kcat") {
        assert_eq!(
            partition_of_key[&key], partition,
            "kcat put {key} on {partition}"
        );
    }

    // --json records, --max-messages, --partition with --offset, headers placeholder.
    let consumed = cli::ok(
        &[
            "consume",
            "events",
            "--from-beginning",
            "-e",
            "--json",
            "-b",
            b,
        ],
        None,
    );
    let records: Vec<Value> = lines(&consumed.stdout)
        .into_iter()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    assert_eq!(records.len(), 40);
    assert!(records.iter().all(|r| r["topic"] == "events"
        && r["key"].as_str().is_some_and(|k| k.starts_with("key-"))
        && r["value"].as_str().is_some_and(|v| v.starts_with("v-"))
        && r["timestamp"].as_i64().is_some_and(|t| t > 0)));
    let few = cli::ok(
        &[
            "consume",
            "events",
            "--from-beginning",
            "--max-messages",
            "5",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(lines(&few.stdout).len(), 5, "{}", few.describe());
    let p1: Vec<_> = by_myelin.iter().filter(|r| r.0 == 1).cloned().collect();
    let from_offset = cli::ok(
        &[
            "consume",
            "events",
            "--partition",
            "1",
            "--offset",
            "2",
            "-e",
            "-b",
            b,
            "-f",
            "{partition} {offset} {key} {value}",
        ],
        None,
    );
    assert_eq!(parse_records(&from_offset.stdout), p1[2..].to_vec());

    // Unkeyed lines spread round robin over the partitions.
    let unkeyed: String = (0..6).map(|i| format!("plain-{i}\n")).collect();
    cli::ok(&["produce", "events", "-b", b], Some(unkeyed.as_bytes()));
    // describe: per partition leader, replicas, in-sync, log start, high watermark.
    let described = cli::json(&["topics", "describe", "events", "-b", b]);
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 3);
    let mut total = 0;
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(p["partition"], i);
        assert_eq!(p["replicas"], serde_json::json!([1]));
        assert_eq!(p["isr"], serde_json::json!([1]));
        assert_eq!(p["log_start_offset"], 0);
        let expected = p1.len() as i64 * i64::from(i == 1) + 2; // 2 unkeyed each
        if i == 1 {
            assert_eq!(p["high_watermark"], expected);
        }
        total += p["high_watermark"].as_i64().expect("high watermark");
    }
    assert_eq!(total, 46);
    let rows = table(&cli::ok(&["topics", "describe", "events", "-b", b], None).stdout);
    assert_eq!(
        rows[1],
        [
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "IN-SYNC",
            "LOG-START",
            "HIGH-WATERMARK"
        ]
    );
    let first_cells: Vec<&str> = rows[2..5].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(first_cells, ["0", "1", "2"], "{rows:?}");
    // Then the configs: the ones set on the topic, or that all are at their defaults.
    assert!(
        rows[5][0] == "Configs:" || rows[5][0] == "CONFIG",
        "{rows:?}"
    );

    // --partition out of range, unknown topics, bad formats: clear errors.
    let bad = cli::fails(&["consume", "nope", "-b", b]);
    assert!(bad.stderr.contains("topic \"nope\" does not exist: create it with `myelin topics create nope --partitions N`"), "{}", bad.describe());
    let bad = cli::fails(&["consume", "events", "--partition", "7", "-b", b]);
    assert!(bad.stderr.contains("no partition 7"), "{}", bad.describe());
    let bad = cli::fails(&["consume", "events", "-f", "{bogus}", "-b", b]);
    assert!(
        bad.stderr.contains("unknown placeholder {bogus}"),
        "{}",
        bad.describe()
    );

    // delete
    let deleted = cli::ok(&["topics", "delete", "by-kcat", "-b", b], None);
    assert_eq!(deleted.stdout.trim(), "deleted topic by-kcat");
    wait_for(WAIT, "by-kcat to be gone", || {
        let gone = cli::run(&["topics", "describe", "by-kcat", "-b", b], None);
        if gone.stderr.contains("does not exist") {
            Ok(())
        } else {
            Err(gone.describe())
        }
    });
}

/// A transactional confluent-kafka producer on topic `argv[2]`: one committed
/// transaction, one aborted, one left open (it prints "open" then waits to be stopped).
const TRANSACTIONAL_PRODUCER: &str = r#"
import sys, time
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "transactional.id": "cli-txn"})
p.init_transactions()
for state, values in [("commit", [b"c1", b"c2"]), ("abort", [b"a1"]), ("open", [b"o1"])]:
    p.begin_transaction()
    for v in values:
        p.produce(sys.argv[2], value=v, partition=0)
    p.flush()
    if state == "commit":
        p.commit_transaction()
    elif state == "abort":
        p.abort_transaction()
print("open", flush=True)
time.sleep(120)
"#;

/// The current UTC time as kafka-consumer-groups.sh users write it: no zone.
fn utc_now_without_zone() -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3N"])
        .output()
        .expect("date -u");
    String::from_utf8_lossy(&date.stdout).trim().to_owned()
}

#[test]
fn kafka_and_kcat_spellings_headers_and_read_committed() {
    let node = Node::start("cli_spellings");
    let b = node.bootstrap();
    let b = b.as_str();
    cli::create_topic(b, "spelled", 2);

    // --acks as Kafka spells it (-1 is all) and as kcat does.
    for acks in ["-1", "1", "all", "0"] {
        let line = format!("acks{acks}\n");
        cli::ok(
            &[
                "produce",
                "spelled",
                "--partition",
                "0",
                "--acks",
                acks,
                "-b",
                b,
            ],
            Some(line.as_bytes()),
        );
    }
    let read_all = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["consume", "spelled", "-e", "-b", b];
        full.extend_from_slice(args);
        let consumed = cli::ok(&full, None);
        lines(&consumed.stdout)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    // acks=0 is not confirmed: wait for its record.
    wait_for(WAIT, "the acks=0 record", || {
        let read = read_all(&["--partition", "0", "--from-beginning"]);
        if read.len() == 4 {
            Ok(())
        } else {
            Err(format!("{read:?}"))
        }
    });

    // Headers and a key from kcat -H, shown by --format and --json.
    let mut kcat = Command::new(clients::kcat());
    kcat.args(["-P", "-b", b, "-t", "spelled", "-p", "1", "-K", ":"]);
    // A repeated header name is kept (Kafka's headers are a list, as kcat -H sends them).
    kcat.args(["-H", "trace=abc", "-H", "source=kcat", "-H", "trace=again"]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let done = run(kcat, Some(b"k1:with-headers\n"), CLIENT_TIMEOUT);
    assert!(done.status.success(), "{}", done.describe());
    let shown = read_all(&[
        "--partition",
        "1",
        "--offset",
        "beginning",
        "--format",
        "{partition}/{offset} {key}={value} [{headers}] {timestamp}",
    ]);
    assert_eq!(shown.len(), 1, "{shown:?}");
    let (text, timestamp) = shown[0].rsplit_once(' ').expect("a timestamp");
    assert_eq!(
        text,
        "1/0 k1=with-headers [trace=abc,source=kcat,trace=again]"
    );
    let timestamp: i64 = timestamp.parse().expect("epoch milliseconds");
    assert!(
        (before - 5_000..before + 60_000).contains(&timestamp),
        "{timestamp} vs {before}"
    );
    let as_json = read_all(&["--partition", "1", "--offset", "0", "--json"]);
    let record: Value = serde_json::from_str(&as_json[0]).expect("a JSON record");
    // In JSON, an object: a repeated name keeps its last value.
    assert_eq!(
        record["headers"],
        serde_json::json!({"trace": "again", "source": "kcat"})
    );
    assert_eq!(record["key"], "k1");
    assert_eq!(record["timestamp"], timestamp);

    // --offset as kcat and kafka-console-consumer.sh spell it.
    let values = |args: &[&str]| -> Vec<String> {
        let mut full = args.to_vec();
        full.extend(["--format", "{value}"]);
        read_all(&full)
    };
    assert_eq!(
        values(&["--partition", "0", "--offset", "-2"]),
        ["acksall", "acks0"]
    );
    assert_eq!(values(&["--partition", "0", "--offset", "-9"]).len(), 4);
    assert_eq!(values(&["--partition", "0", "--offset", "3"]), ["acks0"]);
    assert_eq!(
        values(&["--partition", "0", "--offset", "earliest"]).len(),
        4
    );
    assert!(values(&["--partition", "0", "--offset", "end"]).is_empty());
    assert!(values(&["--offset", "latest"]).is_empty());
    // Without --partition: every partition, here the last record of each.
    let mut last = values(&["--offset", "-1"]);
    last.sort();
    assert_eq!(last, ["acks0", "with-headers"]);
    let bad = cli::fails(&["consume", "spelled", "--offset", "soon", "-b", b]);
    assert!(
        bad.stderr.contains("beginning or end"),
        "{}",
        bad.describe()
    );

    // --to-datetime without a zone is UTC (as kafka-consumer-groups.sh reads it); a date
    // alone is its midnight; --execute is accepted.
    cli::ok(
        &[
            "consume",
            "spelled",
            "--group",
            "dated",
            "--from-beginning",
            "-e",
            "-b",
            b,
        ],
        None,
    );
    std::thread::sleep(Duration::from_millis(1_100));
    let between = utc_now_without_zone();
    std::thread::sleep(Duration::from_millis(1_100));
    cli::ok(
        &["produce", "spelled", "--partition", "0", "-b", b],
        Some(b"later\n"),
    );
    let reset = |at: &str| -> BTreeMap<i64, (Value, Value)> {
        cli::ok(
            &[
                "groups",
                "reset-offsets",
                "dated",
                "--topic",
                "spelled",
                "--to-datetime",
                at,
                "--execute",
                "-b",
                b,
            ],
            None,
        );
        group_offsets(b, "dated")
    };
    let offsets = reset(&between);
    assert_eq!(offsets[&0].0, 4, "{offsets:?}");
    assert_eq!(offsets[&1].0, 1, "{offsets:?}");
    let offsets = reset("2000-01-01");
    assert!(offsets.values().all(|(o, _)| o == 0), "{offsets:?}");
    let offsets = reset("2100-01-01T00:00:00+01:00");
    assert_eq!(
        (offsets[&0].0.clone(), offsets[&1].0.clone()),
        (5.into(), 1.into())
    );
    let bad = cli::fails(&[
        "groups",
        "reset-offsets",
        "dated",
        "--topic",
        "spelled",
        "--to-datetime",
        "2026-02-30",
        "-b",
        b,
    ]);
    assert!(bad.stderr.contains("ISO 8601"), "{}", bad.describe());

    // --isolation read_committed against a transactional confluent-kafka producer.
    cli::create_topic(b, "txn", 1);
    let mut producer = Command::new(clients::python());
    producer.args(["-c", TRANSACTIONAL_PRODUCER, b, "txn"]);
    let producer = clients::StreamingClient::spawn(producer);
    wait_for(WAIT, "the producer's open transaction", || {
        if producer.lines().iter().any(|l| l == "open") {
            Ok(())
        } else {
            Err(format!("{:?}", producer.lines()))
        }
    });
    let txn_values = |isolation: &str| -> Vec<String> {
        let consumed = cli::ok(
            &[
                "consume",
                "txn",
                "--from-beginning",
                "-e",
                "--isolation",
                isolation,
                "-b",
                b,
            ],
            None,
        );
        lines(&consumed.stdout)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(txn_values("read_committed"), ["c1", "c2"]);
    assert_eq!(txn_values("read-committed"), ["c1", "c2"]);
    assert_eq!(txn_values("read_uncommitted"), ["c1", "c2", "a1", "o1"]);
    let _ = producer.kill();
}

#[test]
fn a_closed_stdout_ends_the_tool_quietly() {
    let node = Node::start("cli_closed_stdout");
    let b = node.bootstrap();
    for args in [
        vec!["topics", "list", "--internal", "-b", b.as_str()],
        vec!["cluster", "status", "--json", "-b", b.as_str()],
    ] {
        // stdout is a pipe whose reader is gone before the tool writes (as `| head -0`).
        let mut command = cli::command(&args);
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("start myelin");
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("myelin output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stderr.contains("panicked"),
            "myelin {}: {}\n{stderr}",
            args.join(" "),
            output.status
        );
    }
}

/// `groups describe --json`'s offsets as partition -> (committed, lag).
fn group_offsets(b: &str, group: &str) -> BTreeMap<i64, (Value, Value)> {
    let described = cli::json(&["groups", "describe", group, "-b", b]);
    described["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            (
                o["partition"].as_i64().expect("partition"),
                (o["committed_offset"].clone(), o["lag"].clone()),
            )
        })
        .collect()
}

fn total_lag(b: &str, group: &str) -> i64 {
    group_offsets(b, group)
        .values()
        .map(|(_, lag)| lag.as_i64().expect("lag"))
        .sum()
}

#[test]
fn groups_consume_describe_lag_and_reset_on_one_node() {
    let node = Node::start("cli_groups");
    let b = node.bootstrap();
    let b = b.as_str();
    cli::create_topic(b, "orders", 3);
    cli::produce_keyed(b, "orders", &keyed_lines("o", 20));

    // A group member that reads everything and exits at the end, committing on the way out.
    let consumed = cli::ok(
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--from-beginning",
            "-e",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(lines(&consumed.stdout).len(), 20, "{}", consumed.describe());

    let rows = table(&cli::ok(&["groups", "list", "-b", b], None).stdout);
    assert_eq!(rows[0], ["GROUP", "STATE", "PROTOCOL-TYPE"]);
    assert!(
        rows.contains(&vec!["billing".into(), "Empty".into(), "consumer".into()]),
        "{rows:?}"
    );
    let listed = cli::json(&["groups", "list", "-b", b]);
    assert!(listed["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .any(|g| g["group"] == "billing" && g["state"] == "Empty"));
    // Internal topics stay out of `topics list` unless asked for.
    let topics = cli::ok(&["topics", "list", "-b", b], None).stdout;
    assert!(!topics.contains("__consumer_offsets"), "{topics}");
    let topics = cli::ok(&["topics", "list", "--internal", "-b", b], None).stdout;
    assert!(topics.contains("__consumer_offsets"), "{topics}");
    // As with kafka-topics.sh, the internal topics cannot be deleted (nor grown) by the tool.
    let refused = cli::fails(&["topics", "delete", "__consumer_offsets", "-b", b]);
    assert!(
        refused.stderr.contains("is an internal topic"),
        "{}",
        refused.describe()
    );
    let refused = cli::fails(&[
        "topics",
        "add-partitions",
        "__consumer_offsets",
        "--partitions",
        "99",
        "-b",
        b,
    ]);
    assert!(
        refused.stderr.contains("cannot grow"),
        "{}",
        refused.describe()
    );
    assert!(cli::ok(&["topics", "list", "--internal", "-b", b], None)
        .stdout
        .contains("__consumer_offsets"));

    // Lag 0 after reading everything; lag 7 after 7 more records.
    let offsets = group_offsets(b, "billing");
    assert_eq!(offsets.len(), 3);
    assert!(offsets.values().all(|(_, lag)| lag == 0), "{offsets:?}");
    let described = cli::ok(&["groups", "describe", "billing", "-b", b], None).stdout;
    assert!(
        described.starts_with("Group: billing  state: Empty"),
        "{described}"
    );
    let rows = table(&described);
    assert!(
        rows.contains(
            &[
                "TOPIC",
                "PARTITION",
                "COMMITTED",
                "LOG-END",
                "LAG",
                "MEMBER"
            ]
            .map(String::from)
            .to_vec()
        ),
        "{described}"
    );
    cli::produce_keyed(b, "orders", &keyed_lines("p", 7));
    assert_eq!(total_lag(b, "billing"), 7);

    // A member that stays: it reads the 7, shows up with all 3 partitions, lag goes to 0.
    let mut member = cli::spawn(&["consume", "orders", "--group", "billing", "-b", b]);
    let described = wait_for(
        WAIT,
        "the member to read the 7 new records and commit",
        || {
            let d = cli::json(&["groups", "describe", "billing", "-b", b]);
            let lag: i64 = d["offsets"].as_array().map_or(-1, |o| {
                o.iter().map(|o| o["lag"].as_i64().unwrap_or(-1)).sum()
            });
            if d["state"] == "Stable" && lag == 0 {
                Ok(d)
            } else {
                Err(d.to_string())
            }
        },
    );
    assert_eq!(member.lines().len(), 7);
    let members = described["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["client_id"], "myelin-cli");
    assert_eq!(
        members[0]["assignment"]["orders"],
        serde_json::json!([0, 1, 2])
    );
    assert_eq!(described["protocol"], "range");

    // Offsets cannot be reset under a live member.
    let refused = cli::fails(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
        "-b",
        b,
    ]);
    assert!(
        refused.stderr.contains("has 1 active member(s)")
            && refused.stderr.contains("stop its consumers first"),
        "{}",
        refused.describe()
    );

    // SIGTERM: the member commits, leaves and exits 0; the group is empty at once.
    member.terminate();
    assert!(
        member.wait_for_exit(WAIT),
        "the consumer did not exit on SIGTERM"
    );
    let (_, stderr) = member.kill();
    assert!(!stderr.contains("error"), "{stderr}");
    let state = cli::json(&["groups", "describe", "billing", "-b", b]);
    assert_eq!(state["state"], "Empty", "{state}");

    // Dry run changes nothing; the real reset does, as its table says.
    let dry = cli::ok(
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-earliest",
            "--dry-run",
            "-b",
            b,
        ],
        None,
    );
    assert!(dry.stdout.contains("dry run"), "{}", dry.describe());
    assert_eq!(total_lag(b, "billing"), 0);
    let reset = cli::ok(
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-earliest",
            "-b",
            b,
        ],
        None,
    );
    let rows = table(&reset.stdout);
    assert_eq!(rows[0], ["TOPIC", "PARTITION", "OLD-OFFSET", "NEW-OFFSET"]);
    assert!(rows[1..].iter().all(|r| r[3] == "0"), "{rows:?}");
    assert_eq!(total_lag(b, "billing"), 27);
    let reset = cli::json(&[
        "groups",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-offset",
        "2",
        "-b",
        b,
    ]);
    assert!(
        reset["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .all(|o| o["new_offset"] == 2),
        "{reset}"
    );
    assert_eq!(total_lag(b, "billing"), 27 - 6);
    // A time after every record: the end of each partition.
    cli::ok(
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-datetime",
            "2100-01-01T00:00:00Z",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(total_lag(b, "billing"), 0);
    cli::ok(
        &[
            "groups",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-datetime",
            "2000-01-01T00:00:00Z",
            "-b",
            b,
        ],
        None,
    );
    assert_eq!(total_lag(b, "billing"), 27);
    let replay = cli::ok(
        &["consume", "orders", "--group", "billing", "-e", "-b", b],
        None,
    );
    assert_eq!(lines(&replay.stdout).len(), 27, "{}", replay.describe());

    let missing = cli::fails(&["groups", "describe", "nobody", "-b", b]);
    assert!(
        missing.stderr.contains("group \"nobody\" does not exist"),
        "{}",
        missing.describe()
    );
}

#[test]
fn a_myelin_member_and_a_kcat_member_share_a_group() {
    let node = Node::start("cli_group_interop");
    let b = node.bootstrap();
    let b = b.as_str();
    cli::create_topic(b, "shared", 4);
    cli::produce_keyed(b, "shared", &keyed_lines("s", 40));
    let mut ours = cli::spawn(&[
        "consume",
        "shared",
        "--group",
        "mixed",
        "--from-beginning",
        "-b",
        b,
        "-f",
        "{partition} {offset} {key} {value}",
    ]);
    // librdkafka offers range and roundrobin; the group settles on range, which both speak.
    let mut kcat = Command::new(clients::kcat());
    // -u: unbuffered, so its lines arrive as it reads them.
    kcat.args([
        "-u",
        "-b",
        b,
        "-G",
        "mixed",
        "-X",
        "auto.offset.reset=earliest",
        "-f",
        "%p %o %k %s\\n",
        "shared",
    ]);
    let theirs = myelin_tests::clients::StreamingClient::spawn(kcat);
    let described = wait_for(WAIT, "two members splitting the four partitions", || {
        let d = cli::try_json(&["groups", "describe", "mixed", "-b", b])?;
        let mut assigned: Vec<i64> = d["members"].as_array().map_or(Vec::new(), |m| {
            m.iter()
                .flat_map(|m| {
                    m["assignment"]["shared"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|p| p.as_i64())
                .collect()
        });
        assigned.sort_unstable();
        let read = ours.lines().len() + theirs.lines().len();
        if d["state"] == "Stable"
            && d["members"].as_array().map(Vec::len) == Some(2)
            && assigned == [0, 1, 2, 3]
            && read >= 40
        {
            Ok(d)
        } else {
            Err(format!("{d} read {read}"))
        }
    });
    assert_eq!(described["protocol"], "range");
    let mut all: Vec<String> = ours.lines();
    all.extend(theirs.lines());
    // At least once: a rebalance may hand a partition over before its last commit.
    let mut records = parse_records(&all.join("\n"));
    records.dedup();
    let expected = parse_records(
        &cli::ok(
            &[
                "consume",
                "shared",
                "--from-beginning",
                "-e",
                "-b",
                b,
                "-f",
                "{partition} {offset} {key} {value}",
            ],
            None,
        )
        .stdout,
    );
    assert_eq!(records, expected);
    ours.terminate();
    assert!(
        ours.wait_for_exit(WAIT),
        "myelin consume did not exit on SIGTERM"
    );
    theirs.terminate();
    let _ = theirs.kill();
    let _ = ours.kill();
}

#[test]
fn cluster_status_and_routing_on_three_nodes() {
    let mut nodes = start_cluster("cli_cluster", 3);
    let all = cluster_bootstrap(&mut nodes);
    // One node as bootstrap: the tool must find the leaders and coordinator itself.
    let one = nodes[0].bootstrap();
    let created = cli::ok(
        &[
            "topics",
            "create",
            "replicated",
            "--partitions",
            "3",
            "-b",
            &all,
        ],
        None,
    );
    assert_eq!(
        created.stdout.trim(),
        "created topic replicated with 3 partition(s), replication factor 3"
    );
    let described = cli::json(&["topics", "describe", "replicated", "-b", &one]);
    let leaders: Vec<i64> = described["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["leader"].as_i64().expect("leader"))
        .collect();
    assert!(leaders.iter().all(|l| (1..=3).contains(l)), "{described}");
    for p in described["partitions"].as_array().expect("partitions") {
        assert_eq!(
            p["replicas"].as_array().map(Vec::len),
            Some(3),
            "{described}"
        );
    }
    cli::produce_keyed(&one, "replicated", &keyed_lines("r", 30));
    let consumed = cli::ok(
        &[
            "consume",
            "replicated",
            "--group",
            "g",
            "--from-beginning",
            "-e",
            "-b",
            &one,
        ],
        None,
    );
    assert_eq!(lines(&consumed.stdout).len(), 30, "{}", consumed.describe());
    assert_eq!(total_lag(&one, "g"), 0);
    // Each node lists the groups it coordinates; the tool asks them all.
    for bootstrap in [
        nodes[0].bootstrap(),
        nodes[1].bootstrap(),
        nodes[2].bootstrap(),
    ] {
        let listed = cli::json(&["groups", "list", "-b", &bootstrap]);
        assert!(
            listed["groups"]
                .as_array()
                .expect("groups")
                .iter()
                .any(|g| g["group"] == "g"),
            "{listed}"
        );
    }

    // The offsets topic, created by the first FindCoordinator, may still be electing.
    wait_for(WAIT, "every partition to have a leader", || {
        let s = cli::try_json(&["cluster", "status", "-b", &one])?;
        let unhealthy = s["unhealthy_partitions"].as_array().map_or(1, Vec::len);
        if unhealthy == 0 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let status = cli::ok(&["cluster", "status", "-b", &one], None).stdout;
    let rows = table(&status);
    assert!(rows.iter().any(|r| r[0] == "NODE"), "{status}");
    assert_eq!(
        rows.iter()
            .filter(|r| r.len() >= 2 && r[1].starts_with("127.0.0.1:"))
            .count(),
        3,
        "{status}"
    );
    assert!(
        lines(&status)
            .iter()
            .any(|l| l.starts_with("all ") && l.ends_with(" partitions healthy")),
        "{status}"
    );
    let status = cli::json(&["cluster", "status", "-b", &one]);
    assert_eq!(status["nodes"].as_array().map(Vec::len), Some(3));
    assert!(
        (1..=3).contains(&status["controller"].as_i64().unwrap_or(-1)),
        "{status}"
    );

    // Stop node 3: its partitions are reported under-replicated (and the tool keeps
    // working through the others).
    nodes[2].stop();
    let survivors = nodes[0].bootstrap() + "," + &nodes[1].bootstrap();
    let status = wait_for(
        WAIT,
        "node 3's partitions to show as under-replicated",
        || {
            let s = cli::try_json(&["cluster", "status", "-b", &survivors])?;
            let unhealthy = s["unhealthy_partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let replicated = unhealthy
                .iter()
                .filter(|p| p["topic"] == "replicated" && p["problem"] == "under-replicated")
                .count();
            if s["nodes"].as_array().map(Vec::len) == Some(2) && replicated == 3 {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    );
    assert_eq!(status["down_nodes"], serde_json::json!([3]), "{status}");
    for p in status["unhealthy_partitions"]
        .as_array()
        .expect("unhealthy")
    {
        assert!(
            !p["isr"].as_array().expect("isr").contains(&Value::from(3)),
            "{p}"
        );
    }
    let text = cli::ok(&["cluster", "status", "-b", &survivors], None).stdout;
    assert!(
        text.contains("partitions unhealthy:")
            && text.contains("under-replicated")
            && text.contains("down: node(s) 3 "),
        "{text}"
    );
    // Produce and consume still work, through whichever nodes lead now.
    cli::produce_keyed(&survivors, "replicated", &keyed_lines("after", 6));
    // Lag counts offsets, and a new leader's epoch opens with a control batch: at least 6.
    assert!(total_lag(&survivors, "g") >= 6);
    let consumed = cli::ok(
        &[
            "consume",
            "replicated",
            "--group",
            "g",
            "-e",
            "-b",
            &survivors,
        ],
        None,
    );
    assert_eq!(lines(&consumed.stdout).len(), 6, "{}", consumed.describe());
    assert_eq!(total_lag(&survivors, "g"), 0);
}
