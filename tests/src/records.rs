//! The message scheme shared with the client scripts, and the checks on records.
//!
//! Keyed message `i` over `k` keys has key `key-{i % k:02}` and value
//! `m{i:06}-{key}` (mirrored in `tests/clients/e2e_common.py` and `tests/js/produce.js`).
//! Client scripts report records as JSON objects with partition, offset, key, value (text
//! when short UTF-8), sha256 and len of the value; kcat output is parsed from
//! `-f '%p %o %k %s\n'`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// One produced (acknowledged) or consumed record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The value as text when it is short UTF-8 (every keyed message is).
    pub value: Option<String>,
    /// Hex SHA-256 of the value bytes, when the reporting client computed it.
    pub sha256: Option<String>,
    /// Length of the value in bytes, when the reporting client reported it.
    pub len: Option<u64>,
}

/// Key and value of keyed message `index` spread over `keys` keys.
pub fn keyed_message(index: usize, keys: usize) -> (String, String) {
    let key = format!("key-{:02}", index % keys);
    let value = format!("m{index:06}-{key}");
    (key, value)
}

/// Keyed messages `range` over `keys` keys, in production order.
pub fn keyed_messages(range: std::ops::Range<usize>, keys: usize) -> Vec<(String, String)> {
    range.map(|i| keyed_message(i, keys)).collect()
}

/// The production index encoded in a keyed message's value (`m000123-key-03` -> 123).
pub fn keyed_index(value: &str) -> Option<usize> {
    value.strip_prefix('m')?.get(..6)?.parse().ok()
}

/// The records in array `field` ("records" or "deliveries") of a client's JSON summary.
pub fn from_summary(summary: &Value, field: &str) -> Vec<Record> {
    let items = summary[field]
        .as_array()
        .unwrap_or_else(|| panic!("summary has no `{field}` array: {summary}"));
    items
        .iter()
        .map(|item| Record {
            partition: item["partition"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or_else(|| panic!("record without partition: {item}")),
            offset: item["offset"]
                .as_i64()
                .unwrap_or_else(|| panic!("record without offset: {item}")),
            key: item["key"].as_str().map(str::to_string),
            value: item["value"].as_str().map(str::to_string),
            sha256: item["sha256"].as_str().map(str::to_string),
            len: item["len"].as_u64(),
        })
        .collect()
}

/// The partition count a consumer script reported.
pub fn partition_count(summary: &Value) -> i64 {
    summary["partitions"]
        .as_i64()
        .unwrap_or_else(|| panic!("summary has no partition count: {summary}"))
}

/// Parses kcat consumer output printed with `-f '%p %o %k %s\n'` (keys and values
/// without spaces or newlines).
pub fn parse_kcat(output: &str) -> Vec<Record> {
    output
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.splitn(4, ' ').collect();
            assert_eq!(fields.len(), 4, "unexpected kcat line {line:?}");
            Record {
                partition: fields[0]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad partition in kcat line {line:?}")),
                offset: fields[1]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad offset in kcat line {line:?}")),
                key: (!fields[2].is_empty()).then(|| fields[2].to_string()),
                value: Some(fields[3].to_string()),
                sha256: None,
                len: Some(fields[3].len() as u64),
            }
        })
        .collect()
}

/// Checks a keyed round trip through a fresh topic with `partitions` partitions:
/// every expected message consumed exactly once with its key; each key in one partition;
/// every partition used; per partition the offsets are 0, 1, 2, ... in consumption order;
/// per key the values come in production order.
pub fn assert_keyed_roundtrip(expected: &[(String, String)], consumed: &[Record], partitions: i32) {
    // Exactly once, with the right key.
    let mut by_value: HashMap<&str, &Record> = HashMap::new();
    for record in consumed {
        let value = record
            .value
            .as_deref()
            .unwrap_or_else(|| panic!("consumed a record without a text value: {record:?}"));
        if let Some(previous) = by_value.insert(value, record) {
            panic!("value {value:?} consumed twice: {previous:?} and {record:?}");
        }
    }
    for (key, value) in expected {
        let record = by_value
            .get(value.as_str())
            .unwrap_or_else(|| panic!("message {value:?} was never consumed"));
        assert_eq!(
            record.key.as_deref(),
            Some(key.as_str()),
            "message {value:?} came back with the wrong key"
        );
    }
    assert_eq!(
        consumed.len(),
        expected.len(),
        "consumed {} records but produced {}",
        consumed.len(),
        expected.len()
    );

    // Same key, same partition; every partition used and none beyond the topic's.
    let mut partition_of_key: HashMap<&str, i32> = HashMap::new();
    for record in consumed {
        let key = record.key.as_deref().expect("checked above");
        let first = *partition_of_key.entry(key).or_insert(record.partition);
        assert_eq!(
            first, record.partition,
            "key {key:?} appeared in partitions {first} and {}",
            record.partition
        );
    }
    let used: BTreeSet<i32> = consumed.iter().map(|r| r.partition).collect();
    let all: BTreeSet<i32> = (0..partitions).collect();
    assert_eq!(
        used, all,
        "records should spread over all {partitions} partitions"
    );

    // Per partition: offsets 0, 1, 2, ... in the order consumed.
    for (partition, records) in by_partition(consumed) {
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        let dense: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(
            offsets, dense,
            "partition {partition}: offsets must run 0, 1, 2, ... in consumption order"
        );
    }

    // Per key: production order.
    let mut last_index: HashMap<&str, usize> = HashMap::new();
    for (_, records) in by_partition(consumed) {
        for record in records {
            let key = record.key.as_deref().expect("checked above");
            let value = record.value.as_deref().expect("checked above");
            let index = keyed_index(value)
                .unwrap_or_else(|| panic!("value {value:?} is not a keyed message"));
            if let Some(previous) = last_index.insert(key, index) {
                assert!(
                    previous < index,
                    "key {key:?}: message {index} was stored after message {previous}"
                );
            }
        }
    }
}

/// Checks that every acknowledged delivery was consumed at the partition and offset it
/// was acknowledged at, with the same key and value bytes.
pub fn assert_deliveries_consumed(deliveries: &[Record], consumed: &[Record]) {
    let at: HashMap<(i32, i64), &Record> = consumed
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    for delivery in deliveries {
        let record = at
            .get(&(delivery.partition, delivery.offset))
            .unwrap_or_else(|| {
                panic!(
                    "acknowledged record at partition {} offset {} was not consumed: {delivery:?}",
                    delivery.partition, delivery.offset
                )
            });
        assert_eq!(
            record.key, delivery.key,
            "key at partition {} offset {}",
            delivery.partition, delivery.offset
        );
        if delivery.value.is_some() || record.value.is_some() {
            assert_eq!(
                record.value, delivery.value,
                "value at partition {} offset {}",
                delivery.partition, delivery.offset
            );
        }
        if let (Some(sent), Some(got)) = (&delivery.sha256, &record.sha256) {
            assert_eq!(
                (got, record.len),
                (sent, delivery.len),
                "value bytes (sha256, len) at partition {} offset {}",
                delivery.partition,
                delivery.offset
            );
        }
    }
}

/// Records grouped by partition, each group in the order given.
pub fn by_partition(records: &[Record]) -> BTreeMap<i32, Vec<&Record>> {
    let mut groups: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for record in records {
        groups.entry(record.partition).or_default().push(record);
    }
    groups
}

/// One row of [`log_view`]: (partition, offset, key, value, sha256).
pub type LogEntry = (i32, i64, Option<String>, Option<String>, Option<String>);

/// (partition, offset, key, value, sha256) of each record, sorted by partition and offset:
/// what must stay identical when the same log is read again.
pub fn log_view(records: &[Record]) -> Vec<LogEntry> {
    let mut view: Vec<LogEntry> = records
        .iter()
        .map(|r| {
            (
                r.partition,
                r.offset,
                r.key.clone(),
                r.value.clone(),
                r.sha256.clone(),
            )
        })
        .collect();
    view.sort();
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64, index: usize) -> Record {
        let (key, value) = keyed_message(index, 4);
        Record {
            partition,
            offset,
            key: Some(key),
            value: Some(value),
            sha256: None,
            len: None,
        }
    }

    /// keys 0 and 2 in partition 0, keys 1 and 3 in partition 1.
    fn good() -> Vec<Record> {
        vec![
            rec(0, 0, 0),
            rec(0, 1, 2),
            rec(0, 2, 4),
            rec(1, 0, 1),
            rec(1, 1, 3),
            rec(1, 2, 5),
        ]
    }

    #[test]
    fn keyed_message_matches_the_python_scheme() {
        assert_eq!(
            keyed_message(123, 20),
            ("key-03".to_string(), "m000123-key-03".to_string())
        );
        assert_eq!(keyed_index("m000123-key-03"), Some(123));
    }

    #[test]
    fn a_correct_roundtrip_passes() {
        assert_keyed_roundtrip(&keyed_messages(0..6, 4), &good(), 2);
    }

    #[test]
    #[should_panic(expected = "consumed twice")]
    fn a_duplicate_fails() {
        let mut records = good();
        records.push(rec(1, 3, 5));
        assert_keyed_roundtrip(&keyed_messages(0..6, 4), &records, 2);
    }

    #[test]
    #[should_panic(expected = "never consumed")]
    fn a_lost_message_fails() {
        let mut records = good();
        records.pop();
        assert_keyed_roundtrip(&keyed_messages(0..6, 4), &records, 2);
    }

    #[test]
    #[should_panic(expected = "stored after")]
    fn reordering_within_a_key_fails() {
        let records = vec![
            rec(0, 0, 4),
            rec(0, 1, 2),
            rec(0, 2, 0),
            rec(1, 0, 1),
            rec(1, 1, 3),
            rec(1, 2, 5),
        ];
        assert_keyed_roundtrip(&keyed_messages(0..6, 4), &records, 2);
    }

    #[test]
    #[should_panic(expected = "appeared in partitions")]
    fn a_key_in_two_partitions_fails() {
        let records = vec![
            rec(0, 0, 0),
            rec(0, 1, 2),
            rec(0, 2, 4),
            rec(1, 0, 1),
            rec(1, 1, 3),
            rec(0, 3, 5),
        ];
        assert_keyed_roundtrip(&keyed_messages(0..6, 4), &records, 2);
    }

    #[test]
    #[should_panic(expected = "offsets must run")]
    fn an_offset_gap_fails() {
        let mut records = good();
        records[2].offset = 7;
        assert_keyed_roundtrip(&keyed_messages(0..6, 4), &records, 2);
    }

    #[test]
    fn kcat_lines_parse() {
        let records = parse_kcat("2 17 key-03 m000123-key-03\n0 0  m000001-x\n");
        assert_eq!(records[0].partition, 2);
        assert_eq!(records[0].offset, 17);
        assert_eq!(records[0].key.as_deref(), Some("key-03"));
        assert_eq!(records[0].value.as_deref(), Some("m000123-key-03"));
        assert_eq!(records[1].key, None);
    }
}
