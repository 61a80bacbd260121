//! Compressed batches from confluent-kafka (librdkafka) with each codec come back intact.
//!
//! The payloads mix small text, 160 KB highly compressible values and 4 KiB random
//! (incompressible) ones. The producer reports SHA-256 and length of every acknowledged
//! value; the consumer reports the same for what it reads, and both must match at every
//! acknowledged partition and offset, with nothing extra in the topic.

use myelin_tests::clients::{self, python_json};
use myelin_tests::records::{assert_deliveries_consumed, from_summary, log_view};
use myelin_tests::Node;

const MESSAGES: usize = 120;

fn compressed_roundtrip(codec: &str) {
    let node = Node::start(&format!("compression_{codec}"));
    let topic = format!("compressed-{codec}");
    let produced = python_json(
        &node,
        "ck_produce.py",
        &[
            "--topic",
            &topic,
            "--messages",
            &MESSAGES.to_string(),
            "--create-partitions",
            "3",
            "--payload",
            "mixed",
            "--compression",
            codec,
        ],
    );
    let consumed = clients::ck_consume(&node, &topic);

    let deliveries = from_summary(&produced, "deliveries");
    let records = from_summary(&consumed, "records");
    assert_eq!(deliveries.len(), MESSAGES, "acknowledged deliveries");
    assert!(
        records
            .iter()
            .all(|r| r.sha256.is_some() && r.len.is_some()),
        "the consumer must report a digest of every value"
    );
    assert!(
        deliveries.iter().any(|d| d.len >= Some(100_000)),
        "the payload mix must include large values"
    );
    assert_deliveries_consumed(&deliveries, &records);
    assert_eq!(
        log_view(&records),
        log_view(&deliveries),
        "the topic must hold exactly the acknowledged records"
    );
}

#[test]
fn confluent_kafka_gzip_batches_come_back_byte_for_byte() {
    compressed_roundtrip("gzip");
}

#[test]
fn confluent_kafka_snappy_batches_come_back_byte_for_byte() {
    compressed_roundtrip("snappy");
}

#[test]
fn confluent_kafka_lz4_batches_come_back_byte_for_byte() {
    compressed_roundtrip("lz4");
}

#[test]
fn confluent_kafka_zstd_batches_come_back_byte_for_byte() {
    compressed_roundtrip("zstd");
}
