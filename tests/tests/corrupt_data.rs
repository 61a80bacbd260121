//! Corrupt stored data (real processes, real files), never repaired by skipping, deleting or
//! rewriting it:
//! - a node whose metadata log holds a batch that is whole and CRC-valid but whose records
//!   are not metadata records refuses to start, naming the segment file and the offset;
//! - a byte flipped in an old segment of a stopped node (which recovery loads from its
//!   index without reading the batches) is never served after the restart: that fetch
//!   answers KAFKA_STORAGE_ERROR, the log names the file and offset, the rest of the log is
//!   served.
//!
//! The damaged file is left exactly as it was. Layout assumption:
//! `<data-dir>/topics/<topic>-<partition>/<20-digit base offset>.log`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use myelin_client::records::{encode_batch, BatchOptions, NewRecord};
use myelin_client::{ClientConfig, Connection, FetchOptions};
use myelin_core::batch::{scan_batches, stored_header_prefix};
use myelin_tests::clients::python_json;
use myelin_tests::records::from_summary;
use myelin_tests::{Node, NodeConfig};

/// KAFKA_STORAGE_ERROR.
const KAFKA_STORAGE_ERROR: i16 = 56;

/// A partition's segments (base offset, path), oldest first.
fn segments(data_dir: &Path, partition_dir: &str) -> Vec<(i64, PathBuf)> {
    let dir = data_dir.join("topics").join(partition_dir);
    let mut segments: Vec<(i64, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .filter_map(|path| {
            let base = path.file_stem()?.to_str()?.parse().ok()?;
            Some((base, path))
        })
        .collect();
    segments.sort();
    segments
}

/// The metadata log's newest segment and its base offset.
fn newest_metadata_segment(data_dir: &Path) -> (PathBuf, i64) {
    let (base, path) = segments(data_dir, "__cluster_metadata-0")
        .pop()
        .expect("the metadata log has a segment");
    (path, base)
}

#[test]
fn a_metadata_batch_that_does_not_decode_stops_the_node_and_the_file_is_left_as_it_was() {
    let mut node = Node::start("corrupt_data_metadata");
    wait_for_cluster_id(&node);
    node.stop();

    let (segment, base_offset) = newest_metadata_segment(node.data_dir());
    let mut bytes = fs::read(&segment).expect("read the segment");
    let scan = scan_batches(&bytes, base_offset);
    assert!(scan.stop_reason.is_none(), "{:?}", scan.stop_reason);
    let last = scan.batches.last().expect("the metadata log has records");
    let next_offset = last.header.base_offset + last.header.offset_count();
    // A whole, CRC-valid batch at the next offset, in the last batch's epoch, whose one
    // record is not JSON.
    let record = NewRecord {
        value: Some(b"not a metadata record".to_vec().into()),
        ..NewRecord::default()
    };
    let batch = encode_batch(&[record], &BatchOptions::default()).expect("encode");
    let mut batch = batch.to_vec();
    let prefix = stored_header_prefix(&batch, next_offset, last.header.partition_leader_epoch);
    batch[..16].copy_from_slice(&prefix);
    bytes.extend_from_slice(&batch);
    fs::write(&segment, &bytes).expect("write the segment");

    let (status, log) = node.restart_expecting_exit(Duration::from_secs(20));
    assert!(
        !status.success(),
        "the node must not start: {status}\n{log}"
    );
    let path = segment.display().to_string();
    assert!(
        log.contains(&path) && log.contains(&format!("offset {next_offset}")),
        "the error must name {path} and offset {next_offset}:\n{log}"
    );
    assert_eq!(
        fs::read(&segment).expect("read the segment again"),
        bytes,
        "the segment must be left exactly as it was"
    );
    // It stops again, the same way, on every start: nothing was repaired.
    let (again, _) = node.restart_expecting_exit(Duration::from_secs(20));
    assert!(!again.success());
}

/// Waits until the node reports a cluster id: its metadata log holds its first records
/// (the cluster id, this node's registration), committed and applied.
fn wait_for_cluster_id(node: &Node) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut connection) =
                Connection::connect(node.addr(), ClientConfig::default()).await
            {
                if let Ok(metadata) = connection.metadata(Some(&[])).await {
                    if metadata.cluster_id.is_some_and(|id| !id.is_empty()) {
                        return;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no cluster id within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Fetches `topic`-0 from `offset` over the Kafka API.
fn fetch(
    node: &Node,
    topic: &str,
    offset: i64,
) -> myelin_client::Result<myelin_client::FetchedPartition> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut connection = Connection::connect(node.addr(), ClientConfig::default()).await?;
        connection
            .fetch(topic, 0, offset, &FetchOptions::default())
            .await
    })
}

#[test]
fn a_byte_flipped_in_an_old_segment_is_never_served_and_the_file_is_left_as_it_was() {
    let topic = "flipped";
    let config = NodeConfig {
        extra_args: vec!["--segment-bytes".into(), "4096".into()],
        ..NodeConfig::default()
    };
    let mut node = Node::start_with("corrupt_data_flipped", config);
    let args = [
        "--topic",
        topic,
        "--start",
        "0",
        "--messages",
        "200",
        "--one-per-batch",
        "--create-partitions",
        "1",
    ];
    let deliveries = from_summary(&python_json(&node, "ck_produce.py", &args), "deliveries");
    assert_eq!(deliveries.len(), 200);
    node.stop();

    let segments = segments(node.data_dir(), &format!("{topic}-0"));
    assert!(segments.len() >= 3, "small segments roll: {segments:?}");
    let (_, oldest) = &segments[0];
    let (second_base, _) = segments[1];
    let mut bytes = fs::read(oldest).expect("read the oldest segment");
    let scan = scan_batches(&bytes, 0);
    assert!(scan.batches.len() >= 2);
    // Flip a byte inside the second batch's records (past its 61-byte header).
    let damaged = &scan.batches[1];
    let at = damaged.position as usize + 61 + 3;
    bytes[at] ^= 0x40;
    fs::write(oldest, &bytes).expect("write the segment");

    node.restart();
    let served = fetch(&node, topic, damaged.header.base_offset);
    match served {
        Err(error) => assert_eq!(
            error.broker_code(),
            Some(KAFKA_STORAGE_ERROR),
            "the damaged batch's fetch: {error}"
        ),
        Ok(fetched) => panic!(
            "the damaged batch was served: {} records from offset {}",
            fetched.records.len(),
            damaged.header.base_offset
        ),
    }
    // The rest of the log is served, and the node still runs.
    let later = fetch(&node, topic, second_base).expect("a later segment is served");
    assert_eq!(
        later.records.first().map(|record| record.offset),
        Some(second_base)
    );
    node.assert_running("after serving a damaged batch");
    let log = fs::read_to_string(node.log_path()).expect("read the node log");
    let path = oldest.display().to_string();
    assert!(log.contains(&path), "the log must name {path}:\n{log}");
    assert_eq!(
        fs::read(oldest).expect("read the segment again"),
        bytes,
        "the segment must be left exactly as it was"
    );
}
