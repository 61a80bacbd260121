//! A transactions smoke run of `myelin-client` against a live single broker:
//!
//! ```sh
//! cargo run -p myelin-client --example txn_smoke -- 127.0.0.1:9092 [topic]
//! ```
//!
//! Commits, aborts and leaves open transactions on one partition, reads them back under
//! read_committed and read_uncommitted, commits offsets inside a transaction (checking
//! OffsetFetch require_stable), fences a producer with a second one of the same
//! transactional id, and checks the error codes the broker answers. Prints each step and
//! exits 1 at the first surprise.

use std::process::ExitCode;
use std::time::Duration;

use myelin_client::{
    ClientConfig, Connection, Error, FetchOptions, GroupMembership, IsolationLevel, NewRecord,
    TransactionalProducer,
};

type Outcome = Result<(), String>;

fn check(ok: bool, what: &str) -> Outcome {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("FAILED: {what}"))
    }
}

fn values(fetched: &myelin_client::FetchedPartition) -> Vec<String> {
    fetched
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn records(prefix: &str, n: usize) -> Vec<NewRecord> {
    (0..n)
        .map(|i| NewRecord::new(format!("{prefix}-{i}")))
        .collect()
}

async fn connect(address: &str) -> Result<Connection, String> {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    Connection::connect(address.to_owned(), config)
        .await
        .map_err(|e| format!("connect to {address}: {e}"))
}

/// Retries `op` while it fails with a transaction-retriable error (at most 50 times).
macro_rules! retrying {
    ($what:expr, $op:expr) => {{
        let mut attempt = 0;
        loop {
            match $op {
                Err(e) if e.is_transaction_retriable() && attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => break other.map_err(|e: Error| format!("{}: {e}", $what)),
            }
        }
    }};
}

async fn run(address: &str, topic: &str) -> Outcome {
    let mut conn = connect(address).await?;
    match conn.create_topic(topic, 1, 1, &[]).await {
        Ok(()) => {}
        Err(e) if e.broker_code() == Some(36) => {}
        Err(e) => return Err(format!("create topic: {e}")),
    }
    let found = retrying!(
        "FindCoordinator",
        conn.find_transaction_coordinator("smoke-tx").await
    )?;
    println!(
        "transaction coordinator: node {} {}:{}",
        found.node_id, found.host, found.port
    );
    let mut coord = connect(&format!("{}:{}", found.host, found.port)).await?;
    let mut producer = retrying!(
        "InitProducerId",
        TransactionalProducer::init(&mut coord, "smoke-tx", 30_000).await
    )?;
    println!(
        "producer id {} epoch {}",
        producer.producer_id(),
        producer.producer_epoch()
    );
    let start = conn
        .list_offsets(topic, 0, myelin_client::LATEST_TIMESTAMP)
        .await
        .map_err(|e| e.to_string())?;

    // Committed, with offsets of a made-up input topic.
    retrying!(
        "AddPartitionsToTxn",
        producer.add_partitions(&mut coord, &[(topic, 0)]).await
    )?;
    producer
        .produce(&mut conn, topic, 0, &records("committed", 3))
        .await
        .map_err(|e| format!("produce: {e}"))?;
    retrying!(
        "AddOffsetsToTxn",
        producer.add_offsets(&mut coord, "smoke-group").await
    )?;
    let group_coordinator = conn
        .find_coordinator("smoke-group")
        .await
        .map_err(|e| e.to_string())?;
    let mut group_conn = connect(&format!(
        "{}:{}",
        group_coordinator.host, group_coordinator.port
    ))
    .await?;
    retrying!(
        "TxnOffsetCommit",
        producer
            .commit_offsets(
                &mut group_conn,
                "smoke-group",
                &GroupMembership::standalone(),
                &[("smoke-input", 0, 42)],
            )
            .await
    )?;
    let pending = group_conn
        .fetch_offsets_detailed("smoke-group", "smoke-input", &[0], true)
        .await
        .map_err(|e| e.to_string())?;
    check(
        pending[0].error_code == 88,
        &format!("require_stable sees UNSTABLE_OFFSET_COMMIT before the commit: {pending:?}"),
    )?;
    retrying!("EndTxn commit", producer.end(&mut coord, true).await)?;
    let mut stable = Vec::new();
    for _ in 0..50 {
        stable = group_conn
            .fetch_offsets_detailed("smoke-group", "smoke-input", &[0], true)
            .await
            .map_err(|e| e.to_string())?;
        if stable[0].error_code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(
        (stable[0].offset, stable[0].error_code) == (42, 0),
        &format!("the transactional offset applies with the commit: {stable:?}"),
    )?;

    // Aborted.
    retrying!(
        "AddPartitionsToTxn",
        producer.add_partitions(&mut coord, &[(topic, 0)]).await
    )?;
    producer
        .produce(&mut conn, topic, 0, &records("aborted", 2))
        .await
        .map_err(|e| format!("produce: {e}"))?;
    retrying!("EndTxn abort", producer.end(&mut coord, false).await)?;

    // Open: hides itself and everything after it from read_committed readers.
    retrying!(
        "AddPartitionsToTxn",
        producer.add_partitions(&mut coord, &[(topic, 0)]).await
    )?;
    producer
        .produce(&mut conn, topic, 0, &records("open", 2))
        .await
        .map_err(|e| format!("produce: {e}"))?;
    let committed = FetchOptions {
        isolation: IsolationLevel::ReadCommitted,
        max_wait_ms: 100,
        ..Default::default()
    };
    let uncommitted = FetchOptions {
        max_wait_ms: 100,
        ..Default::default()
    };
    let mut seen = Vec::new();
    for _ in 0..50 {
        let fetched = conn
            .fetch(topic, 0, start, &committed)
            .await
            .map_err(|e| e.to_string())?;
        seen = values(&fetched);
        if seen.len() >= 3 {
            println!(
                "read_committed: lso {} hwm {} aborted {:?}",
                fetched.last_stable_offset, fetched.high_watermark, fetched.aborted_transactions
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(
        seen == ["committed-0", "committed-1", "committed-2"],
        &format!("read_committed sees the committed transaction only: {seen:?}"),
    )?;
    let all = values(
        &conn
            .fetch(topic, 0, start, &uncommitted)
            .await
            .map_err(|e| e.to_string())?,
    );
    check(
        all.len() == 7,
        &format!("read_uncommitted sees all seven records: {all:?}"),
    )?;

    // A second producer with the same id fences the first and aborts its open transaction.
    let mut second = retrying!(
        "InitProducerId (second)",
        TransactionalProducer::init(&mut coord, "smoke-tx", 30_000).await
    )?;
    check(
        second.producer_epoch() > producer.producer_epoch(),
        "the second producer has a newer epoch",
    )?;
    let fenced = producer.end(&mut coord, true).await;
    let code = fenced.as_ref().err().and_then(Error::broker_code);
    check(
        code == Some(90) || code == Some(47),
        &format!("the first producer's EndTxn is fenced: {fenced:?}"),
    )?;
    let refused = producer
        .produce(&mut conn, topic, 0, &records("zombie", 1))
        .await;
    check(
        refused.as_ref().is_err_and(Error::is_fenced),
        &format!("the first producer's produce is refused: {refused:?}"),
    )?;
    let empty = second.end(&mut coord, true).await;
    check(
        empty.as_ref().err().and_then(Error::broker_code) == Some(48),
        &format!("EndTxn with no open transaction: INVALID_TXN_STATE: {empty:?}"),
    )?;
    retrying!("resume", second.reinit(&mut coord).await)?;
    let stale = producer.reinit(&mut coord).await;
    check(
        stale.as_ref().err().and_then(Error::broker_code) == Some(90),
        &format!("a stale KIP-360 resume is PRODUCER_FENCED: {stale:?}"),
    )?;
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = values(
            &conn
                .fetch(topic, 0, start, &committed)
                .await
                .map_err(|e| e.to_string())?,
        );
        let end = conn
            .list_offsets_isolated(topic, 0, -1, IsolationLevel::ReadCommitted)
            .await
            .map_err(|e| e.to_string())?;
        let hwm = conn
            .list_offsets(topic, 0, -1)
            .await
            .map_err(|e| e.to_string())?;
        if end == hwm {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check(
        seen == ["committed-0", "committed-1", "committed-2"],
        &format!("after the fencing abort read_committed still sees only the commit: {seen:?}"),
    )?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(address) = args.next() else {
        eprintln!("usage: txn_smoke HOST:PORT [TOPIC]");
        return ExitCode::from(2);
    };
    let topic = args.next().unwrap_or_else(|| "txn-smoke".to_owned());
    match run(&address, &topic).await {
        Ok(()) => {
            println!("all checks passed");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
