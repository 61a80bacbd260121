//! The embedded protocol of Kafka consumer groups (protocol type `"consumer"`): a member's
//! subscription (JoinGroup metadata) and its assignment (SyncGroup), each a big-endian
//! `i16` version followed by `ConsumerProtocolSubscription` / `ConsumerProtocolAssignment`
//! at that version, and the `range` assignor, so a member of this client and members of
//! Java, librdkafka or kafkajs clients can share one group.
//!
//! A newer version than the schema knows is read as the newest known one (Kafka's rule:
//! later versions only append fields).

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use crate::admin::topic_name;
use crate::error::{Error, Result};

/// The name of the range assignor, as every Kafka client spells it.
pub const RANGE_ASSIGNOR: &str = "range";
/// The version this client writes (topics, user data and owned partitions).
const WRITE_VERSION: i16 = 1;

/// A member's subscription: the topics it wants.
pub fn encode_subscription(topics: &[&str]) -> Result<Bytes> {
    let subscription = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string((*t).to_owned()))
            .collect(),
    );
    encode_versioned(&subscription)
}

/// The topics of a subscription another member sent.
pub fn decode_subscription(metadata: &[u8]) -> Result<Vec<String>> {
    let subscription: ConsumerProtocolSubscription = decode_versioned(metadata, "subscription")?;
    Ok(subscription.topics.iter().map(|t| t.to_string()).collect())
}

/// An assignment: partitions per topic.
pub fn encode_assignment(assignment: &BTreeMap<String, Vec<i32>>) -> Result<Bytes> {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(topic, partitions)| {
                AssignedPartitions::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(partitions.clone())
            })
            .collect(),
    );
    encode_versioned(&assignment)
}

/// The partitions per topic of an assignment (empty bytes: nothing assigned, which is what
/// a coordinator hands a member the leader gave nothing).
pub fn decode_assignment(bytes: &[u8]) -> Result<BTreeMap<String, Vec<i32>>> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    let assignment: ConsumerProtocolAssignment = decode_versioned(bytes, "assignment")?;
    let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for topic in assignment.assigned_partitions {
        partitions
            .entry(topic.topic.0.to_string())
            .or_default()
            .extend(topic.partitions);
    }
    Ok(partitions)
}

/// Kafka's range assignor: per topic, its subscribers sorted by member id share the
/// partitions in contiguous ranges, the first `partitions % members` getting one more.
/// `members` are (member id, subscribed topics); `partition_counts` the topics' partition
/// counts (a topic missing there is assigned to nobody). Every member gets an entry.
pub fn assign_range(
    members: &[(String, Vec<String>)],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut result: BTreeMap<String, BTreeMap<String, Vec<i32>>> = members
        .iter()
        .map(|(id, _)| (id.clone(), BTreeMap::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let mut subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(id, _)| id)
            .collect();
        subscribers.sort();
        subscribers.dedup();
        let n = subscribers.len() as i32;
        if n == 0 || count <= 0 {
            continue;
        }
        let (per_member, extra) = (count / n, count % n);
        for (i, member) in (0..).zip(subscribers) {
            let start = per_member * i + i.min(extra);
            let length = per_member + i32::from(i < extra);
            if length > 0 {
                result
                    .entry(member.clone())
                    .or_default()
                    .insert(topic.clone(), (start..start + length).collect());
            }
        }
    }
    result
}

fn encode_versioned<M: Encodable>(message: &M) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(WRITE_VERSION);
    message
        .encode(&mut buf, WRITE_VERSION)
        .map_err(|e| Error::protocol("encoding consumer protocol", e))?;
    Ok(buf.freeze())
}

fn decode_versioned<M: Decodable + Message>(bytes: &[u8], what: &str) -> Result<M> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err(Error::Protocol(format!(
            "consumer {what} shorter than its version"
        )));
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(Error::Protocol(format!(
            "consumer {what} has version {version}"
        )));
    }
    let version = version.min(M::VERSIONS.max);
    M::decode(&mut buf, version)
        .map_err(|e| Error::protocol(&format!("decoding consumer {what}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter()
            .map(|(id, topics)| {
                (
                    id.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let bytes = encode_subscription(&["a", "b"]).unwrap();
        assert_eq!(&bytes[..2], &[0, 1]); // version 1, big-endian
        assert_eq!(decode_subscription(&bytes).unwrap(), vec!["a", "b"]);
        let assignment =
            BTreeMap::from([("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]);
        let bytes = encode_assignment(&assignment).unwrap();
        assert_eq!(decode_assignment(&bytes).unwrap(), assignment);
        assert!(decode_assignment(&[]).unwrap().is_empty());
        assert!(decode_subscription(&[0]).is_err());
    }

    #[test]
    fn reads_a_java_v0_subscription() {
        // version 0, topics: ["t"], user_data: null (length -1)
        let bytes = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode_subscription(&bytes).unwrap(), vec!["t"]);
    }

    #[test]
    fn range_assignor_gives_contiguous_ranges_extra_to_the_first() {
        let counts = BTreeMap::from([("t".to_string(), 7), ("u".to_string(), 2)]);
        let assigned = assign_range(
            &members(&[("c", &["t"]), ("a", &["t", "u"]), ("b", &["t", "u"])]),
            &counts,
        );
        assert_eq!(assigned["a"]["t"], vec![0, 1, 2]);
        assert_eq!(assigned["b"]["t"], vec![3, 4]);
        assert_eq!(assigned["c"]["t"], vec![5, 6]);
        assert_eq!(assigned["a"]["u"], vec![0]);
        assert_eq!(assigned["b"]["u"], vec![1]);
        assert!(!assigned["c"].contains_key("u"));
        // More members than partitions: the last ones get nothing but still an entry.
        let assigned = assign_range(
            &members(&[("x", &["u"]), ("y", &["u"]), ("z", &["u"])]),
            &counts,
        );
        assert_eq!(assigned["x"]["u"], vec![0]);
        assert_eq!(assigned["y"]["u"], vec![1]);
        assert!(assigned["z"].is_empty());
    }
}
