//! Recovery of a damaged segment tail after a restart.
//!
//! N messages go to a 1-partition topic, one batch each. With the node killed (a crash: the
//! N batches lie past the partition's recovery point, written when the node started), the
//! newest segment file is damaged at its end, and the node is started again on the same
//! data dir:
//! - garbage (or zeros) appended after the last batch: all N records are served and the
//!   next produce gets offset N;
//! - the last 7 bytes cut off (a torn last batch): the last record is dropped, the first
//!   N-1 are served unchanged and the next produce gets offset N-1.
//!
//! After a clean stop the recovery point covers all N batches: cutting the last one is then
//! damage to synced data, and the node refuses to start, naming the file, and cuts nothing.
//!
//! Layout assumption: the partition's log lives in a directory whose name starts with
//! the topic name (`<data-dir>/topics/<topic>-<partition>/`) as files `*.log` named by
//! their 20-digit base offset, and the newest file ends with the last batch's bytes.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use myelin_tests::clients::{self, python_json};
use myelin_tests::records::{assert_deliveries_consumed, from_summary, log_view, Record};
use myelin_tests::wire::XorShift;
use myelin_tests::Node;

const MESSAGES: usize = 20;

/// Produces `count` keyed messages starting at `start`, one batch each.
fn produce(node: &Node, topic: &str, start: usize, count: usize, create: bool) -> Vec<Record> {
    let start = start.to_string();
    let count = count.to_string();
    let mut args = vec![
        "--topic",
        topic,
        "--start",
        &start,
        "--messages",
        &count,
        "--one-per-batch",
    ];
    if create {
        args.extend(["--create-partitions", "1"]);
    }
    from_summary(&python_json(node, "ck_produce.py", &args), "deliveries")
}

fn consume(node: &Node, topic: &str) -> Vec<Record> {
    from_summary(&clients::ck_consume(node, topic), "records")
}

/// The newest `*.log` file (highest base offset) in a directory under `data_dir` whose
/// name starts with `topic`.
fn newest_segment(data_dir: &Path, topic: &str) -> PathBuf {
    let mut partition_dirs = Vec::new();
    collect_dirs_named(data_dir, topic, 4, &mut partition_dirs);
    let mut segments: Vec<PathBuf> = partition_dirs
        .iter()
        .flat_map(|dir| fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort_by_key(|path| path.file_name().map(|n| n.to_os_string()));
    segments.pop().unwrap_or_else(|| {
        panic!(
            "no *.log file in a directory starting with {topic:?} under {}; contents:\n{}",
            data_dir.display(),
            listing(data_dir)
        )
    })
}

fn collect_dirs_named(dir: &Path, prefix: &str, depth: u32, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            out.push(path.clone());
        }
        if depth > 0 {
            collect_dirs_named(&path, prefix, depth - 1, out);
        }
    }
}

fn listing(dir: &Path) -> String {
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            lines.push(format!("  {} ({size} bytes)", path.display()));
            if path.is_dir() && lines.len() < 200 {
                stack.push(path);
            }
        }
    }
    lines.sort();
    lines.join("\n")
}

/// Produces N, stops the node, damages the newest segment with `damage`, restarts it,
/// and returns (records before, records after the restart, the next produced record).
fn damage_and_restart(
    name: &str,
    damage: impl FnOnce(&Path),
) -> (Vec<Record>, Vec<Record>, Record) {
    let mut node = Node::start(name);
    let topic = "torn";
    let deliveries = produce(&node, topic, 0, MESSAGES, true);
    let before = consume(&node, topic);
    assert_eq!(before.len(), MESSAGES, "records before the damage");
    assert_deliveries_consumed(&deliveries, &before);

    // A crash: a torn tail is what a process or power loss mid-write leaves.
    node.kill();
    let segment = newest_segment(node.data_dir(), topic);
    damage(&segment);
    node.restart();

    let after = consume(&node, topic);
    let next = produce(&node, topic, MESSAGES, 1, false);
    let all = consume(&node, topic);
    assert_deliveries_consumed(&next, &all);
    (
        before,
        after,
        next.into_iter().next().expect("one delivery"),
    )
}

/// Cuts the last 7 bytes of `segment`: a torn last batch.
fn cut_last_bytes(segment: &Path) {
    let len = fs::metadata(segment).expect("segment metadata").len();
    assert!(len > 7, "segment {} is too short to cut", segment.display());
    let file = OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open the segment");
    file.set_len(len - 7).expect("truncate the segment");
    file.sync_all().expect("sync the segment");
}

fn append(segment: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(segment)
        .unwrap_or_else(|e| panic!("open {}: {e}", segment.display()));
    file.write_all(bytes).expect("append to the segment");
    file.sync_all().expect("sync the segment");
}

#[test]
fn garbage_after_the_last_batch_is_ignored_and_produce_continues_at_n() {
    let (before, after, next) = damage_and_restart("torn_tail_garbage", |segment| {
        append(segment, &XorShift::new(0x5eed_7a11).bytes(61));
    });
    assert_eq!(
        log_view(&after),
        log_view(&before),
        "all N records must be served unchanged"
    );
    assert_eq!(next.offset, MESSAGES as i64, "the next offset must be N");
}

#[test]
fn zeroed_tail_is_ignored_and_produce_continues_at_n() {
    let (before, after, next) = damage_and_restart("torn_tail_zeros", |segment| {
        append(segment, &[0u8; 4096]);
    });
    assert_eq!(
        log_view(&after),
        log_view(&before),
        "all N records must be served unchanged"
    );
    assert_eq!(next.offset, MESSAGES as i64, "the next offset must be N");
}

#[test]
fn truncated_last_batch_is_dropped_and_produce_continues_after_the_last_intact_offset() {
    let (before, after, next) = damage_and_restart("torn_tail_truncated", cut_last_bytes);
    assert_eq!(
        log_view(&after),
        log_view(&before[..MESSAGES - 1]),
        "the torn last batch must be dropped and every earlier record served unchanged \
         (assumes the newest segment file ends with the last batch)"
    );
    assert_eq!(
        next.offset,
        MESSAGES as i64 - 1,
        "the next offset must follow the last intact record"
    );
}

#[test]
fn a_cut_below_the_recovery_point_of_a_cleanly_stopped_node_stops_it_and_nothing_is_cut() {
    let mut node = Node::start("torn_tail_below_recovery_point");
    let topic = "torn";
    produce(&node, topic, 0, MESSAGES, true);
    node.stop();
    let segment = newest_segment(node.data_dir(), topic);
    cut_last_bytes(&segment);
    let cut = fs::read(&segment).expect("read the segment");

    let (status, log) = node.restart_expecting_exit(Duration::from_secs(20));
    assert!(
        !status.success(),
        "the node must not start: {status}\n{log}"
    );
    let path = segment.display().to_string();
    assert!(
        log.contains(&path) && log.contains("recovery point"),
        "the error must name {path} and its recovery point:\n{log}"
    );
    assert_eq!(
        fs::read(&segment).expect("read the segment again"),
        cut,
        "the segment must be left exactly as it was"
    );
}
