//! `myelin produce TOPIC`: one record per line of stdin.
//!
//! Lines are batched per partition (at most [`BATCH_RECORDS`] records or [`BATCH_BYTES`]
//! bytes, and sent once stdin pauses for [`LINGER`]) and each batch goes to its partition's
//! leader. Without `--partition`, a keyed record goes where Kafka's default partitioner puts
//! it (murmur2 of the key), so the same key lands on the same partition whichever Kafka
//! client produced it; unkeyed records go round robin. A batch that fails is reported on
//! stderr with its partition and record count; the others are still sent, and the exit
//! code says whether all were.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use myelin_client::partitioner::partition_for_key;
use myelin_client::{NewRecord, ProduceOptions};
use serde_json::json;
use tokio::sync::mpsc;

use super::client::{check_partition, existing_topic, Client, RETRY_FOR};
use super::output::print_json;
use super::CommonArgs;
use kafka_protocol::ResponseError;

/// Most records in one batch.
pub const BATCH_RECORDS: usize = 1_000;
/// Most value and key bytes in one batch (well under the node's default 1 MiB batch limit).
pub const BATCH_BYTES: usize = 512 * 1024;
/// How long stdin may pause before what is pending is sent.
pub const LINGER: Duration = Duration::from_millis(50);
/// Longest line accepted (a record larger than this could not be stored anyway).
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;
/// Lines read ahead of the sender.
const READ_AHEAD: usize = 4_096;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Acks {
    /// Every in-sync replica (a majority of the replicas, in Myelin); also spelled -1.
    #[value(alias = "-1")]
    All,
    /// The leader only.
    #[value(name = "1")]
    Leader,
    /// No acknowledgement (nothing can be reported).
    #[value(name = "0")]
    None,
}

impl Acks {
    /// The Produce request's acks.
    pub fn code(self) -> i16 {
        match self {
            Acks::All => -1,
            Acks::Leader => 1,
            Acks::None => 0,
        }
    }
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The topic (created if the node auto-creates topics).
    pub topic: String,
    /// Split each line at the first SEP: the key before it, the value after (a line
    /// without SEP has no key).
    #[arg(short = 'K', long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Send every record to this partition.
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// Acknowledgement to wait for: all (or -1), 1 or 0.
    #[arg(long, value_enum, default_value = "all", allow_hyphen_values = true)]
    pub acks: Acks,
}

/// Records waiting for one partition.
#[derive(Default)]
struct Pending {
    records: Vec<NewRecord>,
    bytes: usize,
}

/// Outcome counts.
#[derive(Default)]
struct Tally {
    produced: usize,
    failed: usize,
    per_partition: BTreeMap<i32, usize>,
}

/// `line` as a record: split at the first `separator` into key and value.
pub fn record_of(line: &[u8], separator: Option<&[u8]>) -> NewRecord {
    if let Some(sep) = separator.filter(|s| !s.is_empty()) {
        if let Some(at) = line.windows(sep.len()).position(|w| w == sep) {
            return NewRecord::kv(
                Bytes::copy_from_slice(&line[..at]),
                Bytes::copy_from_slice(&line[at + sep.len()..]),
            );
        }
    }
    NewRecord::new(Bytes::copy_from_slice(line))
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.common.bootstrap).await?;
    let topic = args.topic.clone();
    let partitions = partition_count(&mut client, &topic).await?;
    check_partition(&topic, partitions, args.partition)?;
    let options = Arc::new(ProduceOptions {
        acks: args.acks.code(),
        ..ProduceOptions::default()
    });
    let lines = read_stdin_lines();
    let mut lines = lines;
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut pending: BTreeMap<i32, Pending> = BTreeMap::new();
    let mut tally = Tally::default();
    let mut next_round_robin = 0i32;
    loop {
        let line = match tokio::time::timeout(LINGER, lines.recv()).await {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(error))) => {
                flush_all(&mut client, &topic, &options, &mut pending, &mut tally).await;
                return Err(error).context("reading stdin");
            }
            Ok(None) => break,
            Err(_) => {
                flush_all(&mut client, &topic, &options, &mut pending, &mut tally).await;
                continue;
            }
        };
        let record = record_of(&line, separator);
        let partition = match (args.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => {
                let p = next_round_robin;
                next_round_robin = (next_round_robin + 1) % partitions;
                p
            }
        };
        let size = line.len() + 64;
        let batch = pending.entry(partition).or_default();
        batch.records.push(record);
        batch.bytes += size;
        if batch.records.len() >= BATCH_RECORDS || batch.bytes >= BATCH_BYTES {
            let batch = std::mem::take(batch);
            send(&mut client, &topic, partition, &options, batch, &mut tally).await;
        }
    }
    flush_all(&mut client, &topic, &options, &mut pending, &mut tally).await;
    if args.common.json {
        print_json(&json!({
            "topic": topic,
            "produced": tally.produced,
            "failed": tally.failed,
            "partitions": tally.per_partition,
        }));
    }
    eprintln!("produced {} records to {topic}", tally.produced);
    if tally.failed > 0 {
        bail!(
            "{} records were not produced (see the errors above)",
            tally.failed
        );
    }
    Ok(())
}

/// The topic's partition count, waiting a moment for one the node is auto-creating.
async fn partition_count(client: &mut Client, topic: &str) -> anyhow::Result<i32> {
    let deadline = std::time::Instant::now() + RETRY_FOR;
    loop {
        let metadata = client.metadata_auto_create(topic).await?;
        let creating = metadata
            .topic(topic)
            .is_some_and(|t| t.error_code == ResponseError::LeaderNotAvailable.code());
        if creating && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let found = existing_topic(&metadata, topic)?;
        let count = i32::try_from(found.partitions.len()).context("partition count")?;
        if count == 0 {
            bail!("topic {topic:?} has no partitions");
        }
        return Ok(count);
    }
}

async fn flush_all(
    client: &mut Client,
    topic: &str,
    options: &Arc<ProduceOptions>,
    pending: &mut BTreeMap<i32, Pending>,
    tally: &mut Tally,
) {
    for (partition, batch) in std::mem::take(pending) {
        if !batch.records.is_empty() {
            send(client, topic, partition, options, batch, tally).await;
        }
    }
}

async fn send(
    client: &mut Client,
    topic: &str,
    partition: i32,
    options: &Arc<ProduceOptions>,
    batch: Pending,
    tally: &mut Tally,
) {
    let count = batch.records.len();
    let records = Arc::new(batch.records);
    let (name, options) = (topic.to_owned(), Arc::clone(options));
    let result = client
        .on_leader(topic, partition, move |conn| {
            let (name, records, options) =
                (name.clone(), Arc::clone(&records), Arc::clone(&options));
            Box::pin(async move { conn.produce(&name, partition, &records, &options).await })
        })
        .await;
    match result {
        Ok(_) => {
            tally.produced += count;
            *tally.per_partition.entry(partition).or_default() += count;
        }
        Err(error) => {
            tally.failed += count;
            eprintln!("error: {count} records to {topic}/{partition} not produced: {error:#}");
        }
    }
}

/// Lines of stdin (without their line ending), read on a thread of their own so a slow
/// terminal never blocks the sender's timers.
fn read_stdin_lines() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            let read = (&mut input)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut line);
            let item = match read {
                Ok(0) => break,
                Ok(_) if line.len() > MAX_LINE_BYTES && !line.ends_with(b"\n") => Err(
                    std::io::Error::other(format!("a line is longer than {MAX_LINE_BYTES} bytes")),
                ),
                Ok(_) => {
                    if line.ends_with(b"\n") {
                        line.pop();
                        if line.ends_with(b"\r") {
                            line.pop();
                        }
                    }
                    Ok(line)
                }
                Err(error) => Err(error),
            };
            let failed = item.is_err();
            if sender.blocking_send(item).is_err() || failed {
                break;
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProduceArgs,
    }

    #[test]
    fn acks_take_all_minus_one_one_and_zero() {
        use clap::Parser;
        for (text, acks) in [("all", -1), ("-1", -1), ("1", 1), ("0", 0)] {
            let cli = Cli::try_parse_from(["produce", "t", "--acks", text]).unwrap();
            assert_eq!(cli.args.acks.code(), acks, "{text}");
        }
        assert!(Cli::try_parse_from(["produce", "t", "--acks", "2"]).is_err());
    }

    #[test]
    fn a_line_splits_at_the_first_separator() {
        let r = record_of(b"k1:v:1", Some(b":"));
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v:1"[..]));
        let r = record_of(b"key=>value", Some(b"=>"));
        assert_eq!(r.key.as_deref(), Some(&b"key"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"value"[..]));
        let r = record_of(b"no separator", Some(b":"));
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"no separator"[..]));
        let r = record_of(b"a:b", None);
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"a:b"[..]));
    }
}
