//! A native load generator on librdkafka, for tests/bench/native.py: produces `--messages`
//! records of `--size` bytes (acks=all) round-robin over the partitions of an existing
//! topic, as fast as librdkafka takes them, then consumes them back from the beginning
//! (assign, no group). Prints one JSON object with the seconds of each phase.
//!
//! Usage: myelin-native-bench --bootstrap HOST:PORT --topic T --partitions N
//!        [--messages M] [--size BYTES] [--phase produce|consume|both]

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

struct Options {
    bootstrap: String,
    topic: String,
    partitions: i32,
    messages: u64,
    size_bytes: usize,
    phase: String,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        bootstrap: "127.0.0.1:9092".into(),
        topic: String::new(),
        partitions: 1,
        messages: 1_000_000,
        size_bytes: 1024,
        phase: "both".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap" => options.bootstrap = value,
            "--topic" => options.topic = value,
            "--partitions" => options.partitions = value.parse().context("--partitions")?,
            "--messages" => options.messages = value.parse().context("--messages")?,
            "--size" => options.size_bytes = value.parse().context("--size")?,
            "--phase" => options.phase = value,
            other => bail!("unknown flag {other}"),
        }
    }
    if options.topic.is_empty() {
        bail!("--topic is required");
    }
    Ok(options)
}

/// Seconds to produce every message, acks=all, counted until the last delivery report.
fn produce(options: &Options) -> Result<f64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .context("creating the producer")?;
    let payload = vec![0x5Au8; options.size_bytes];
    let start = Instant::now();
    for index in 0..options.messages {
        let partition = (index % options.partitions as u64) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(&options.topic)
            .payload(&payload[..])
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, returned)) => {
                    if !matches!(
                        error.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        bail!("produce: {error}");
                    }
                    record = returned;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        if index % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .context("flushing the producer")?;
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds to read every message back from the beginning, and the value bytes read.
fn consume(options: &Options) -> Result<(f64, u64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap)
        .set("group.id", "myelin-native-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("queued.max.messages.kbytes", "1048576")
        .create()
        .context("creating the consumer")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..options.partitions {
        assignment.add_partition_offset(&options.topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut received = 0u64;
    let mut value_bytes = 0u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    let start = Instant::now();
    while received < options.messages {
        if Instant::now() > deadline {
            bail!("consume timed out after {received} of {} messages", options.messages);
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                received += 1;
                value_bytes += message.payload_len() as u64;
            }
            Some(Err(error)) => bail!("consume: {error}"),
            None => {}
        }
    }
    Ok((start.elapsed().as_secs_f64(), value_bytes))
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let mut result = serde_json::Map::new();
    if options.phase != "consume" {
        let seconds = produce(&options)?;
        result.insert("produce_s".into(), seconds.into());
    }
    if options.phase != "produce" {
        let (seconds, value_bytes) = consume(&options)?;
        result.insert("consume_s".into(), seconds.into());
        result.insert("consumed_bytes".into(), value_bytes.into());
    }
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}
