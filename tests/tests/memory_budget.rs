//! Many connections sending large requests at once: the node reads no more request bytes
//! than its budget (`--request-bytes-budget`) while they wait for their answers, so its
//! peak resident memory stays near its idle size plus the budget, and it serves normally
//! afterwards. Without the budget the same load buffers every request at once.
//!
//! Peak resident memory is the process's VmHWM (Linux `/proc/<pid>/status`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use myelin_client::{ClientConfig, Connection, NewRecord, ProduceOptions};
use myelin_tests::{Node, NodeConfig};

const MIB: u64 = 1024 * 1024;
const BUDGET_BYTES: u64 = 32 * MIB;
const CONNECTIONS: usize = 24;
const REQUESTS_PER_CONNECTION: usize = 3;
/// Each request: one batch of one record of this size.
const RECORD_BYTES: usize = 8 * 1024 * 1024;
const TOPIC: &str = "large";

/// A figure of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("unreadable {line:?}"));
    kib * 1024
}

async fn connect(node: &Node) -> Connection {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(120),
        ..ClientConfig::default()
    };
    Connection::connect(node.addr(), config)
        .await
        .expect("connect")
}

/// Sends the load: every connection at once, each its requests one after the other.
async fn flood(node: &Node) {
    let value = Bytes::from(vec![b'x'; RECORD_BYTES]);
    let options = Arc::new(ProduceOptions {
        acks: 1,
        timeout_ms: 120_000,
        ..ProduceOptions::default()
    });
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut connection = connect(node).await;
        let value = value.clone();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..REQUESTS_PER_CONNECTION {
                let record = NewRecord {
                    value: Some(value.clone()),
                    ..NewRecord::default()
                };
                connection
                    .produce(TOPIC, 0, &[record], &options)
                    .await
                    .expect("a large produce is acknowledged");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a producer task");
    }
}

#[test]
fn large_requests_from_many_connections_keep_memory_within_the_budget() {
    let config = NodeConfig {
        extra_args: vec!["--request-bytes-budget".into(), BUDGET_BYTES.to_string()],
        ..NodeConfig::default()
    };
    let mut node = Node::start_with("memory_budget", config);
    let pid = node.pid().expect("the node runs");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let mut admin = connect(&node).await;
        let max_message_bytes = (2 * RECORD_BYTES).to_string();
        admin
            .create_topic(TOPIC, 1, 1, &[("max.message.bytes", &max_message_bytes)])
            .await
            .expect("create the topic");
    });
    let idle = status_bytes(pid, "VmRSS:");
    runtime.block_on(flood(&node));
    let peak = status_bytes(pid, "VmHWM:");
    let sent = (CONNECTIONS * REQUESTS_PER_CONNECTION * RECORD_BYTES) as u64;
    // Frames grow as they arrive (at most doubling), and the allocator keeps some slack.
    let allowed = idle + 3 * BUDGET_BYTES + 3 * RECORD_BYTES as u64 + 48 * MIB;
    println!(
        "peak resident memory {} MiB (idle {} MiB, allowed {} MiB) for {} MiB sent at once",
        peak / MIB,
        idle / MIB,
        allowed / MIB,
        sent / MIB
    );
    assert!(
        peak <= allowed,
        "peak resident memory {} MiB (idle {} MiB) above {} MiB while {} MiB were sent",
        peak / MIB,
        idle / MIB,
        allowed / MIB,
        sent / MIB
    );
    // And it serves normally afterwards.
    runtime.block_on(async {
        let mut connection = connect(&node).await;
        let record = NewRecord {
            value: Some(Bytes::from_static(b"after")),
            ..NewRecord::default()
        };
        let offset = connection
            .produce(TOPIC, 0, &[record], &ProduceOptions::default())
            .await
            .expect("a produce after the load");
        assert_eq!(offset, (CONNECTIONS * REQUESTS_PER_CONNECTION) as i64);
    });
    node.assert_running("after the load");
}
