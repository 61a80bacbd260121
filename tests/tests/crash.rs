//! A crash (SIGKILL) under load loses no acknowledged write.
//!
//! A confluent-kafka producer (acks=all, linger 2 ms) streams to a 3-partition topic and
//! prints every delivery report as it arrives. Once it has a few hundred acks and has run
//! for ~1.5 s, the node is killed with SIGKILL, then the producer is killed too. After a
//! restart on the same data dir every acknowledged message must be present at exactly the
//! partition and offset it was acknowledged at, and each partition's offsets must be
//! contiguous from 0 (records written but not acknowledged before the crash may or may
//! not be there).

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use myelin_tests::clients::{self, StreamingClient};
use myelin_tests::records::{by_partition, from_summary};
use myelin_tests::Node;

const MIN_ACKS_BEFORE_CRASH: usize = 300;
const MIN_LOAD_BEFORE_CRASH: Duration = Duration::from_millis(1500);
const MAX_WAIT_FOR_LOAD: Duration = Duration::from_secs(30);

#[test]
fn kill_9_mid_load_keeps_every_acknowledged_message_at_its_offset() {
    let mut node = Node::start("crash_mid_load");
    let topic = "crash-load";
    clients::create_topic(&node, topic, 3);

    let mut stream = clients::python_script(&node, "ck_produce_stream.py");
    stream.args(["--topic", topic, "--duration", "60", "--rate", "4000"]);
    let mut producer = StreamingClient::spawn(stream);
    let started = Instant::now();
    loop {
        let acks = producer
            .lines()
            .iter()
            .filter(|l| l.contains("\"offset\""))
            .count();
        if acks >= MIN_ACKS_BEFORE_CRASH && started.elapsed() >= MIN_LOAD_BEFORE_CRASH {
            break;
        }
        if producer.has_exited() {
            let (lines, stderr) = producer.kill();
            panic!(
                "the producer exited before the crash:\n{}\n{stderr}\n{}",
                lines.join("\n"),
                node.diagnostics()
            );
        }
        if started.elapsed() > MAX_WAIT_FOR_LOAD {
            let (_, stderr) = producer.kill();
            panic!(
                "only {acks} acks after {MAX_WAIT_FOR_LOAD:?}\n{stderr}\n{}",
                node.diagnostics()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }

    node.kill();
    // Let the producer notice the dead broker, then stop it: its remaining in-flight
    // messages were never acknowledged.
    thread::sleep(Duration::from_millis(500));
    let (lines, _stderr) = producer.kill();

    // The last line may be cut short by the kill; every complete one is JSON.
    let acked: Vec<(i32, i64, String)> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|v| {
            Some((
                i32::try_from(v["partition"].as_i64()?).ok()?,
                v["offset"].as_i64()?,
                v["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert!(
        acked.len() >= MIN_ACKS_BEFORE_CRASH,
        "only {} acknowledged messages parsed",
        acked.len()
    );

    eprintln!(
        "crash test: {} acknowledged before the SIGKILL, {} stdout lines in all",
        acked.len(),
        lines.len()
    );

    node.restart();
    let consumed = from_summary(&clients::ck_consume(&node, topic), "records");

    let at: HashMap<(i32, i64), &str> = consumed
        .iter()
        .map(|r| ((r.partition, r.offset), r.value.as_deref().unwrap_or("")))
        .collect();
    let lost: Vec<&(i32, i64, String)> = acked
        .iter()
        .filter(|(p, o, v)| at.get(&(*p, *o)) != Some(&v.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages are missing or different after the crash, e.g. {:?} \
         (found there: {:?})",
        lost.len(),
        acked.len(),
        lost.first(),
        lost.first().and_then(|(p, o, _)| at.get(&(*p, *o)))
    );

    eprintln!(
        "crash test: {} records after recovery ({} more than acknowledged)",
        consumed.len(),
        consumed.len().saturating_sub(acked.len())
    );
    for (partition, records) in by_partition(&consumed) {
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        let dense: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(
            offsets, dense,
            "partition {partition}: offsets after recovery must be contiguous from 0"
        );
    }
    for record in &consumed {
        let value = record.value.as_deref().unwrap_or("");
        assert!(
            value.len() == 8
                && value.starts_with('c')
                && value[1..].bytes().all(|b| b.is_ascii_digit()),
            "a record the producer never sent: {record:?}"
        );
    }
}
