//! A structural walk of request bodies, run before `kafka-protocol` decodes them.
//!
//! Why: the crate's decoder calls `Vec::with_capacity(count)` with the array count read from
//! the wire. A 20-byte request claiming two billion topics would make it ask the allocator
//! for hundreds of gigabytes, and an allocation failure aborts the whole process. Kafka's
//! own decoder refuses an array count larger than the bytes left in the buffer; this walk
//! applies the same rule to every array, string and byte field, so that whatever the decoder
//! allocates is bounded by the frame (itself bounded by `frame_bytes_max`).
//!
//! The schemas below list, per API, the non-tagged fields and the versions that carry them,
//! mirroring the Kafka message definitions the crate was generated from. Tagged fields are
//! skipped by their declared size. The tests encode requests of every advertised version
//! with the crate and check that the walk consumes exactly those bytes.

use kafka_protocol::messages::ApiKey;
use thiserror::Error;

/// Why a request body failed the walk.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum PrecheckError {
    #[error("request body ends inside a field")]
    Truncated,
    #[error("{what} of {count} exceeds the {remaining} bytes left in the frame")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: usize,
    },
    #[error("negative length {0}")]
    NegativeLength(i64),
    #[error("varint longer than 5 bytes")]
    VarintTooLong,
    #[error("{0:?} has no request schema")]
    NoSchema(ApiKey),
}

/// The wire shape of one field, as far as the walk needs it. Strings and byte fields cover
/// their nullable forms too: the encodings differ only in the length's meaning.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Int8,
    Int16,
    Int32,
    Int64,
    Uuid,
    Boolean,
    String,
    Bytes,
    Int32Array,
    Int64Array,
    StringArray,
    StructArray(&'static [Field]),
}

/// A field and the (inclusive) request versions that carry it.
#[derive(Debug, Clone, Copy)]
struct Field {
    shape: Shape,
    version_min: i16,
    version_max: i16,
}

const fn field(shape: Shape, version_min: i16, version_max: i16) -> Field {
    Field {
        shape,
        version_min,
        version_max,
    }
}

/// Present in every version the walk is used for.
const fn always(shape: Shape) -> Field {
    field(shape, 0, i16::MAX)
}

const fn since(shape: Shape, version_min: i16) -> Field {
    field(shape, version_min, i16::MAX)
}

use Shape::*;

const API_VERSIONS: &[Field] = &[since(String, 3), since(String, 3)];

const METADATA_TOPIC: &[Field] = &[since(Uuid, 10), always(String)];
const METADATA: &[Field] = &[
    always(StructArray(METADATA_TOPIC)),
    since(Boolean, 4),
    field(Boolean, 8, 10),
    since(Boolean, 8),
];

const PRODUCE_PARTITION: &[Field] = &[always(Int32), always(Bytes)];
const PRODUCE_TOPIC: &[Field] = &[
    field(String, 0, 12),
    since(Uuid, 13),
    always(StructArray(PRODUCE_PARTITION)),
];
const PRODUCE: &[Field] = &[
    always(String),
    always(Int16),
    always(Int32),
    always(StructArray(PRODUCE_TOPIC)),
];

const FETCH_PARTITION: &[Field] = &[
    always(Int32),
    since(Int32, 9),
    always(Int64),
    since(Int32, 12),
    since(Int64, 5),
    always(Int32),
];
const FETCH_TOPIC: &[Field] = &[
    field(String, 0, 12),
    since(Uuid, 13),
    always(StructArray(FETCH_PARTITION)),
];
const FORGOTTEN_TOPIC: &[Field] = &[field(String, 0, 12), since(Uuid, 13), always(Int32Array)];
const FETCH: &[Field] = &[
    field(Int32, 0, 14),
    always(Int32),
    always(Int32),
    always(Int32),
    always(Int8),
    since(Int32, 7),
    since(Int32, 7),
    always(StructArray(FETCH_TOPIC)),
    since(StructArray(FORGOTTEN_TOPIC), 7),
    since(String, 11),
];

const LIST_OFFSETS_PARTITION: &[Field] = &[always(Int32), since(Int32, 4), always(Int64)];
const LIST_OFFSETS_TOPIC: &[Field] = &[always(String), always(StructArray(LIST_OFFSETS_PARTITION))];
const LIST_OFFSETS: &[Field] = &[
    always(Int32),
    since(Int8, 2),
    always(StructArray(LIST_OFFSETS_TOPIC)),
    since(Int32, 10),
];

const INIT_PRODUCER_ID: &[Field] = &[
    always(String),
    always(Int32),
    since(Int64, 3),
    since(Int16, 3),
];

const CREATE_TOPICS_ASSIGNMENT: &[Field] = &[always(Int32), always(Int32Array)];
const CREATE_TOPICS_CONFIG: &[Field] = &[always(String), always(String)];
const CREATE_TOPICS_TOPIC: &[Field] = &[
    always(String),
    always(Int32),
    always(Int16),
    always(StructArray(CREATE_TOPICS_ASSIGNMENT)),
    always(StructArray(CREATE_TOPICS_CONFIG)),
];
const CREATE_TOPICS: &[Field] = &[
    always(StructArray(CREATE_TOPICS_TOPIC)),
    always(Int32),
    always(Boolean),
];

const DELETE_TOPICS_STATE: &[Field] = &[always(String), always(Uuid)];
const DELETE_TOPICS: &[Field] = &[
    since(StructArray(DELETE_TOPICS_STATE), 6),
    field(StringArray, 0, 5),
    always(Int32),
];

const DESCRIBE_CONFIGS_RESOURCE: &[Field] = &[always(Int8), always(String), always(StringArray)];
const DESCRIBE_CONFIGS: &[Field] = &[
    always(StructArray(DESCRIBE_CONFIGS_RESOURCE)),
    always(Boolean),
    since(Boolean, 3),
];

const CREATE_PARTITIONS_ASSIGNMENT: &[Field] = &[always(Int32Array)];
const CREATE_PARTITIONS_TOPIC: &[Field] = &[
    always(String),
    always(Int32),
    always(StructArray(CREATE_PARTITIONS_ASSIGNMENT)),
];
const CREATE_PARTITIONS: &[Field] = &[
    always(StructArray(CREATE_PARTITIONS_TOPIC)),
    always(Int32),
    always(Boolean),
];

const ALTER_CONFIGS_CONFIG: &[Field] = &[always(String), always(String)];
const ALTER_CONFIGS_RESOURCE: &[Field] = &[
    always(Int8),
    always(String),
    always(StructArray(ALTER_CONFIGS_CONFIG)),
];
const ALTER_CONFIGS: &[Field] = &[always(StructArray(ALTER_CONFIGS_RESOURCE)), always(Boolean)];

const INCREMENTAL_ALTER_CONFIGS_CONFIG: &[Field] = &[always(String), always(Int8), always(String)];
const INCREMENTAL_ALTER_CONFIGS_RESOURCE: &[Field] = &[
    always(Int8),
    always(String),
    always(StructArray(INCREMENTAL_ALTER_CONFIGS_CONFIG)),
];
const INCREMENTAL_ALTER_CONFIGS: &[Field] = &[
    always(StructArray(INCREMENTAL_ALTER_CONFIGS_RESOURCE)),
    always(Boolean),
];

const DESCRIBE_CLUSTER: &[Field] = &[always(Boolean), since(Int8, 1), since(Boolean, 2)];

const FIND_COORDINATOR: &[Field] = &[field(String, 0, 3), since(Int8, 1), since(StringArray, 4)];

const JOIN_GROUP_PROTOCOL: &[Field] = &[always(String), always(Bytes)];
const JOIN_GROUP: &[Field] = &[
    always(String),
    always(Int32),
    since(Int32, 1),
    always(String),
    since(String, 5),
    always(String),
    always(StructArray(JOIN_GROUP_PROTOCOL)),
    since(String, 8),
];

const SYNC_GROUP_ASSIGNMENT: &[Field] = &[always(String), always(Bytes)];
const SYNC_GROUP: &[Field] = &[
    always(String),
    always(Int32),
    always(String),
    since(String, 3),
    since(String, 5),
    since(String, 5),
    always(StructArray(SYNC_GROUP_ASSIGNMENT)),
];

const HEARTBEAT: &[Field] = &[
    always(String),
    always(Int32),
    always(String),
    since(String, 3),
];

const LEAVE_GROUP_MEMBER: &[Field] = &[always(String), always(String), since(String, 5)];
const LEAVE_GROUP: &[Field] = &[
    always(String),
    field(String, 0, 2),
    since(StructArray(LEAVE_GROUP_MEMBER), 3),
];

const OFFSET_COMMIT_PARTITION: &[Field] = &[
    always(Int32),
    always(Int64),
    since(Int32, 6),
    always(String),
];
const OFFSET_COMMIT_TOPIC: &[Field] =
    &[always(String), always(StructArray(OFFSET_COMMIT_PARTITION))];
const OFFSET_COMMIT: &[Field] = &[
    always(String),
    always(Int32),
    always(String),
    since(String, 7),
    field(Int64, 2, 4),
    always(StructArray(OFFSET_COMMIT_TOPIC)),
];

const OFFSET_FETCH_TOPIC: &[Field] = &[always(String), always(Int32Array)];
const OFFSET_FETCH_GROUP: &[Field] = &[
    always(String),
    since(String, 9),
    since(Int32, 9),
    always(StructArray(OFFSET_FETCH_TOPIC)),
];
const OFFSET_FETCH: &[Field] = &[
    field(String, 0, 7),
    field(StructArray(OFFSET_FETCH_TOPIC), 0, 7),
    since(StructArray(OFFSET_FETCH_GROUP), 8),
    since(Boolean, 7),
];

const EPOCH_PARTITION: &[Field] = &[always(Int32), always(Int32), always(Int32)];
const EPOCH_TOPIC: &[Field] = &[always(String), always(StructArray(EPOCH_PARTITION))];
const OFFSET_FOR_LEADER_EPOCH: &[Field] = &[since(Int32, 3), always(StructArray(EPOCH_TOPIC))];

const LIST_GROUPS: &[Field] = &[since(StringArray, 4), since(StringArray, 5)];

const DESCRIBE_GROUPS: &[Field] = &[always(StringArray), since(Boolean, 3)];

const TXN_TOPIC: &[Field] = &[always(String), always(Int32Array)];
const ADD_PARTITIONS_TO_TXN_TRANSACTION: &[Field] = &[
    always(String),
    always(Int64),
    always(Int16),
    always(Boolean),
    always(StructArray(TXN_TOPIC)),
];
const ADD_PARTITIONS_TO_TXN: &[Field] = &[
    since(StructArray(ADD_PARTITIONS_TO_TXN_TRANSACTION), 4),
    field(String, 0, 3),
    field(Int64, 0, 3),
    field(Int16, 0, 3),
    field(StructArray(TXN_TOPIC), 0, 3),
];

const ADD_OFFSETS_TO_TXN: &[Field] =
    &[always(String), always(Int64), always(Int16), always(String)];

const END_TXN: &[Field] = &[
    always(String),
    always(Int64),
    always(Int16),
    always(Boolean),
];

const TXN_OFFSET_COMMIT_PARTITION: &[Field] = &[
    always(Int32),
    always(Int64),
    since(Int32, 2),
    always(String),
];
const TXN_OFFSET_COMMIT_TOPIC: &[Field] = &[
    always(String),
    always(StructArray(TXN_OFFSET_COMMIT_PARTITION)),
];
const TXN_OFFSET_COMMIT: &[Field] = &[
    always(String),
    always(String),
    always(Int64),
    always(Int16),
    since(Int32, 3),
    since(String, 3),
    since(String, 3),
    always(StructArray(TXN_OFFSET_COMMIT_TOPIC)),
];

const DESCRIBE_PRODUCERS: &[Field] = &[always(StructArray(TXN_TOPIC))];

const DESCRIBE_TRANSACTIONS: &[Field] = &[always(StringArray)];

const LIST_TRANSACTIONS: &[Field] = &[
    always(StringArray),
    always(Int64Array),
    since(Int64, 1),
    since(String, 2),
];

const DELETE_GROUPS: &[Field] = &[always(StringArray)];

const OFFSET_DELETE_PARTITION: &[Field] = &[always(Int32)];
const OFFSET_DELETE_TOPIC: &[Field] =
    &[always(String), always(StructArray(OFFSET_DELETE_PARTITION))];
const OFFSET_DELETE: &[Field] = &[always(String), always(StructArray(OFFSET_DELETE_TOPIC))];

const DELETE_RECORDS_PARTITION: &[Field] = &[always(Int32), always(Int64)];
const DELETE_RECORDS_TOPIC: &[Field] = &[
    always(String),
    always(StructArray(DELETE_RECORDS_PARTITION)),
];
const DELETE_RECORDS: &[Field] = &[always(StructArray(DELETE_RECORDS_TOPIC)), always(Int32)];

const DESCRIBE_LOG_DIRS_TOPIC: &[Field] = &[always(String), always(Int32Array)];
const DESCRIBE_LOG_DIRS: &[Field] = &[always(StructArray(DESCRIBE_LOG_DIRS_TOPIC))];

fn schema(api_key: ApiKey) -> Option<&'static [Field]> {
    Some(match api_key {
        ApiKey::ApiVersions => API_VERSIONS,
        ApiKey::Metadata => METADATA,
        ApiKey::Produce => PRODUCE,
        ApiKey::Fetch => FETCH,
        ApiKey::ListOffsets => LIST_OFFSETS,
        ApiKey::InitProducerId => INIT_PRODUCER_ID,
        ApiKey::CreateTopics => CREATE_TOPICS,
        ApiKey::DeleteTopics => DELETE_TOPICS,
        ApiKey::DescribeConfigs => DESCRIBE_CONFIGS,
        ApiKey::CreatePartitions => CREATE_PARTITIONS,
        ApiKey::AlterConfigs => ALTER_CONFIGS,
        ApiKey::IncrementalAlterConfigs => INCREMENTAL_ALTER_CONFIGS,
        ApiKey::DescribeCluster => DESCRIBE_CLUSTER,
        ApiKey::FindCoordinator => FIND_COORDINATOR,
        ApiKey::JoinGroup => JOIN_GROUP,
        ApiKey::SyncGroup => SYNC_GROUP,
        ApiKey::Heartbeat => HEARTBEAT,
        ApiKey::LeaveGroup => LEAVE_GROUP,
        ApiKey::OffsetCommit => OFFSET_COMMIT,
        ApiKey::OffsetFetch => OFFSET_FETCH,
        ApiKey::ListGroups => LIST_GROUPS,
        ApiKey::OffsetForLeaderEpoch => OFFSET_FOR_LEADER_EPOCH,
        ApiKey::DescribeGroups => DESCRIBE_GROUPS,
        ApiKey::AddPartitionsToTxn => ADD_PARTITIONS_TO_TXN,
        ApiKey::AddOffsetsToTxn => ADD_OFFSETS_TO_TXN,
        ApiKey::EndTxn => END_TXN,
        ApiKey::TxnOffsetCommit => TXN_OFFSET_COMMIT,
        ApiKey::DescribeProducers => DESCRIBE_PRODUCERS,
        ApiKey::DescribeTransactions => DESCRIBE_TRANSACTIONS,
        ApiKey::ListTransactions => LIST_TRANSACTIONS,
        ApiKey::DeleteGroups => DELETE_GROUPS,
        ApiKey::OffsetDelete => OFFSET_DELETE,
        ApiKey::DeleteRecords => DELETE_RECORDS,
        ApiKey::DescribeLogDirs => DESCRIBE_LOG_DIRS,
        _ => return None,
    })
}

/// Walks the body of an `api_key` request of `version` (the bytes after the header).
/// Returns how many bytes the body's fields take; trailing bytes are the caller's business.
pub(crate) fn check_request_body(
    api_key: ApiKey,
    version: i16,
    body: &[u8],
) -> Result<usize, PrecheckError> {
    let fields = schema(api_key).ok_or(PrecheckError::NoSchema(api_key))?;
    // Flexible versions (compact lengths, tagged fields) are those with request header v2.
    let flexible = api_key.request_header_version(version) >= 2;
    let mut walker = Walker {
        rest: body,
        version,
        flexible,
    };
    walker.walk_struct(fields)?;
    Ok(body.len() - walker.rest.len())
}

struct Walker<'a> {
    rest: &'a [u8],
    version: i16,
    flexible: bool,
}

impl Walker<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], PrecheckError> {
        if self.rest.len() < count {
            return Err(PrecheckError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Ok(taken)
    }

    fn skip(&mut self, count: u64, what: &'static str) -> Result<(), PrecheckError> {
        let count = self.bounded(count, what)?;
        self.take(count).map(|_| ())
    }

    /// Refuses a count larger than the bytes left: every element takes at least one byte.
    fn bounded(&self, count: u64, what: &'static str) -> Result<usize, PrecheckError> {
        let remaining = self.rest.len();
        if count > remaining as u64 {
            return Err(PrecheckError::CountTooLarge {
                what,
                count,
                remaining,
            });
        }
        Ok(count as usize)
    }

    fn read_i16(&mut self) -> Result<i16, PrecheckError> {
        let bytes = self.take(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn read_i32(&mut self) -> Result<i32, PrecheckError> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn read_unsigned_varint(&mut self) -> Result<u64, PrecheckError> {
        let mut value: u64 = 0;
        for index in 0..5 {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(PrecheckError::VarintTooLong)
    }

    /// The element or byte count of a length-prefixed field; `None` for null.
    fn read_length(&mut self, short_length: bool) -> Result<Option<u64>, PrecheckError> {
        if self.flexible {
            // Compact encoding: length + 1, zero for null.
            let encoded = self.read_unsigned_varint()?;
            return Ok(encoded.checked_sub(1));
        }
        let length = if short_length {
            i64::from(self.read_i16()?)
        } else {
            i64::from(self.read_i32()?)
        };
        match length {
            -1 => Ok(None),
            length if length < 0 => Err(PrecheckError::NegativeLength(length)),
            length => Ok(Some(length as u64)),
        }
    }

    fn walk_struct(&mut self, fields: &[Field]) -> Result<(), PrecheckError> {
        for field in fields {
            if (field.version_min..=field.version_max).contains(&self.version) {
                self.walk_field(field.shape)?;
            }
        }
        if self.flexible {
            self.skip_tagged_fields()?;
        }
        Ok(())
    }

    fn walk_field(&mut self, shape: Shape) -> Result<(), PrecheckError> {
        match shape {
            Int8 | Boolean => self.take(1).map(|_| ()),
            Int16 => self.take(2).map(|_| ()),
            Int32 => self.take(4).map(|_| ()),
            Int64 => self.take(8).map(|_| ()),
            Uuid => self.take(16).map(|_| ()),
            String => match self.read_length(true)? {
                Some(length) => self.skip(length, "string length"),
                None => Ok(()),
            },
            Bytes => match self.read_length(false)? {
                Some(length) => self.skip(length, "byte length"),
                None => Ok(()),
            },
            Int32Array => match self.read_length(false)? {
                Some(count) => {
                    let count = self.bounded(count, "array count")?;
                    (0..count).try_for_each(|_| self.take(4).map(|_| ()))
                }
                None => Ok(()),
            },
            Int64Array => match self.read_length(false)? {
                Some(count) => {
                    let count = self.bounded(count, "array count")?;
                    (0..count).try_for_each(|_| self.take(8).map(|_| ()))
                }
                None => Ok(()),
            },
            StringArray => match self.read_length(false)? {
                Some(count) => {
                    let count = self.bounded(count, "array count")?;
                    (0..count).try_for_each(|_| self.walk_field(String))
                }
                None => Ok(()),
            },
            StructArray(fields) => match self.read_length(false)? {
                Some(count) => {
                    let count = self.bounded(count, "array count")?;
                    (0..count).try_for_each(|_| self.walk_struct(fields))
                }
                None => Ok(()),
            },
        }
    }

    fn skip_tagged_fields(&mut self) -> Result<(), PrecheckError> {
        let count = self.read_unsigned_varint()?;
        let count = self.bounded(count, "tagged field count")?;
        for _ in 0..count {
            self.read_unsigned_varint()?;
            let size = self.read_unsigned_varint()?;
            self.skip(size, "tagged field size")?;
        }
        Ok(())
    }
}

/// For the API modules' tests: encodes each request at `version`, then replaces each byte
/// in turn by values that make lengths huge, negative, null or zero and strings invalid
/// UTF-8; what passes this precheck and decodes is handed to `answer` (which must not
/// panic). Returns how many corrupted requests decoded, so a test can show it exercised
/// something.
#[cfg(test)]
pub(crate) fn decode_corrupted_requests(
    version: i16,
    requests: Vec<(ApiKey, kafka_protocol::messages::RequestKind)>,
    mut answer: impl FnMut(kafka_protocol::messages::RequestKind),
) -> usize {
    use kafka_protocol::messages::RequestKind;
    let mut decoded_count = 0;
    for (api_key, request) in requests {
        let mut encoded = bytes::BytesMut::new();
        request
            .encode(&mut encoded, version)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        for index in 0..encoded.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
                let mut corrupted = encoded.clone();
                corrupted[index] = value;
                if check_request_body(api_key, version, &corrupted).is_err() {
                    continue;
                }
                let mut bytes = corrupted.freeze();
                if let Ok(request) = RequestKind::decode(api_key, &mut bytes, version) {
                    decoded_count += 1;
                    answer(request);
                }
            }
        }
    }
    decoded_count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::versions::ADVERTISED_APIS;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid as TopicUuid;

    fn name(text: &str) -> TopicName {
        TopicName(StrBytes::from_string(text.to_string()))
    }

    /// A request of `api_key` with every array populated and optional fields set, encoded
    /// for `version`, fields a version lacks left at their defaults.
    fn populated_request(api_key: ApiKey, version: i16) -> RequestKind {
        let id = TopicUuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        match api_key {
            ApiKey::ApiVersions => {
                let mut request = ApiVersionsRequest::default();
                if version >= 3 {
                    request.client_software_name = StrBytes::from_static_str("test");
                    request.client_software_version = StrBytes::from_static_str("1.0");
                }
                request.into()
            }
            ApiKey::Metadata => {
                let mut request = MetadataRequest::default();
                let mut topic = metadata_request::MetadataRequestTopic::default();
                topic.name = Some(name("orders"));
                if version >= 10 {
                    topic.topic_id = id;
                }
                request.topics = Some(vec![topic.clone(), topic]);
                if version >= 4 {
                    request.allow_auto_topic_creation = false;
                }
                if (8..=10).contains(&version) {
                    request.include_cluster_authorized_operations = true;
                }
                if version >= 8 {
                    request.include_topic_authorized_operations = true;
                }
                request.into()
            }
            ApiKey::Produce => {
                let mut partition = produce_request::PartitionProduceData::default();
                partition.index = 3;
                partition.records = Some(Bytes::from_static(b"0123456789abcdef"));
                let mut topic = produce_request::TopicProduceData::default();
                if version <= 12 {
                    topic.name = name("orders");
                } else {
                    topic.topic_id = id;
                }
                topic.partition_data = vec![partition.clone(), partition];
                let mut request = ProduceRequest::default();
                request.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
                request.acks = -1;
                request.timeout_ms = 1000;
                request.topic_data = vec![topic];
                request.into()
            }
            ApiKey::Fetch => {
                let mut partition = fetch_request::FetchPartition::default();
                partition.partition = 1;
                partition.fetch_offset = 42;
                partition.partition_max_bytes = 1 << 20;
                if version >= 9 {
                    partition.current_leader_epoch = 0;
                }
                if version >= 12 {
                    partition.last_fetched_epoch = 0;
                }
                if version >= 5 {
                    partition.log_start_offset = 0;
                }
                let mut topic = fetch_request::FetchTopic::default();
                let mut forgotten = fetch_request::ForgottenTopic::default();
                if version <= 12 {
                    topic.topic = name("orders");
                    forgotten.topic = name("gone");
                } else {
                    topic.topic_id = id;
                    forgotten.topic_id = id;
                }
                forgotten.partitions = vec![0, 1, 2];
                topic.partitions = vec![partition.clone(), partition];
                let mut request = FetchRequest::default();
                request.max_wait_ms = 500;
                request.min_bytes = 1;
                request.max_bytes = 1 << 20;
                request.isolation_level = 1;
                request.topics = vec![topic];
                if version >= 7 {
                    request.session_id = 0;
                    request.session_epoch = -1;
                    request.forgotten_topics_data = vec![forgotten];
                }
                if version >= 11 {
                    request.rack_id = StrBytes::from_static_str("rack-a");
                }
                if version >= 12 {
                    request.cluster_id = Some(StrBytes::from_static_str("cluster"));
                }
                request.into()
            }
            ApiKey::ListOffsets => {
                let mut partition = list_offsets_request::ListOffsetsPartition::default();
                partition.partition_index = 2;
                partition.timestamp = -2;
                let mut topic = list_offsets_request::ListOffsetsTopic::default();
                topic.name = name("orders");
                topic.partitions = vec![partition.clone(), partition];
                let mut request = ListOffsetsRequest::default();
                if version >= 2 {
                    request.isolation_level = 1;
                }
                if version >= 10 {
                    request.timeout_ms = 1000;
                }
                request.topics = vec![topic];
                request.into()
            }
            ApiKey::InitProducerId => {
                let mut request = InitProducerIdRequest::default();
                request.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
                request.transaction_timeout_ms = 60_000;
                request.into()
            }
            ApiKey::CreateTopics => {
                let mut assignment = create_topics_request::CreatableReplicaAssignment::default();
                assignment.partition_index = 0;
                assignment.broker_ids = vec![BrokerId(1), BrokerId(2)];
                let mut config = create_topics_request::CreatableTopicConfig::default();
                config.name = StrBytes::from_static_str("retention.ms");
                config.value = Some(StrBytes::from_static_str("1000"));
                let mut topic = create_topics_request::CreatableTopic::default();
                topic.name = name("orders");
                topic.num_partitions = 3;
                topic.replication_factor = 1;
                topic.assignments = vec![assignment];
                topic.configs = vec![config.clone(), config];
                let mut request = CreateTopicsRequest::default();
                request.topics = vec![topic];
                request.timeout_ms = 1000;
                request.validate_only = true;
                request.into()
            }
            ApiKey::DeleteTopics => {
                let mut request = DeleteTopicsRequest::default();
                if version >= 6 {
                    let mut state = delete_topics_request::DeleteTopicState::default();
                    state.name = Some(name("orders"));
                    state.topic_id = id;
                    request.topics = vec![state.clone(), state];
                } else {
                    request.topic_names = vec![name("orders"), name("payments")];
                }
                request.timeout_ms = 1000;
                request.into()
            }
            ApiKey::DescribeConfigs => {
                let mut resource = describe_configs_request::DescribeConfigsResource::default();
                resource.resource_type = 2;
                resource.resource_name = StrBytes::from_static_str("orders");
                resource.configuration_keys = Some(vec![StrBytes::from_static_str("retention.ms")]);
                let mut request = DescribeConfigsRequest::default();
                request.resources = vec![resource];
                request.include_synonyms = true;
                if version >= 3 {
                    request.include_documentation = true;
                }
                request.into()
            }
            ApiKey::CreatePartitions => {
                let mut assignment =
                    create_partitions_request::CreatePartitionsAssignment::default();
                assignment.broker_ids = vec![BrokerId(1), BrokerId(2)];
                let mut topic = create_partitions_request::CreatePartitionsTopic::default();
                topic.name = name("orders");
                topic.count = 4;
                topic.assignments = Some(vec![assignment.clone(), assignment]);
                let mut request = CreatePartitionsRequest::default();
                request.topics = vec![topic.clone(), topic];
                request.timeout_ms = 1000;
                request.validate_only = true;
                request.into()
            }
            ApiKey::AlterConfigs => {
                let mut config = alter_configs_request::AlterableConfig::default();
                config.name = StrBytes::from_static_str("retention.ms");
                config.value = Some(StrBytes::from_static_str("1000"));
                let mut resource = alter_configs_request::AlterConfigsResource::default();
                resource.resource_type = 2;
                resource.resource_name = StrBytes::from_static_str("orders");
                resource.configs = vec![config.clone(), config];
                let mut request = AlterConfigsRequest::default();
                request.resources = vec![resource.clone(), resource];
                request.validate_only = true;
                request.into()
            }
            ApiKey::IncrementalAlterConfigs => {
                let mut config = incremental_alter_configs_request::AlterableConfig::default();
                config.name = StrBytes::from_static_str("retention.ms");
                config.config_operation = 0;
                config.value = Some(StrBytes::from_static_str("1000"));
                let mut resource =
                    incremental_alter_configs_request::AlterConfigsResource::default();
                resource.resource_type = 2;
                resource.resource_name = StrBytes::from_static_str("orders");
                resource.configs = vec![config.clone(), config];
                let mut request = IncrementalAlterConfigsRequest::default();
                request.resources = vec![resource.clone(), resource];
                request.validate_only = true;
                request.into()
            }
            ApiKey::DescribeCluster => {
                let mut request = DescribeClusterRequest::default();
                request.include_cluster_authorized_operations = true;
                if version >= 1 {
                    request.endpoint_type = 1;
                }
                request.into()
            }
            ApiKey::FindCoordinator => {
                let mut request = FindCoordinatorRequest::default();
                if version <= 3 {
                    request.key = StrBytes::from_static_str("group");
                } else {
                    request.coordinator_keys = vec![
                        StrBytes::from_static_str("a"),
                        StrBytes::from_static_str("b"),
                    ];
                }
                if version >= 1 {
                    request.key_type = 1;
                }
                request.into()
            }
            ApiKey::JoinGroup => {
                let mut protocol = join_group_request::JoinGroupRequestProtocol::default();
                protocol.name = StrBytes::from_static_str("range");
                protocol.metadata = Bytes::from_static(b"meta");
                let mut request = JoinGroupRequest::default();
                request.group_id = GroupId(StrBytes::from_static_str("group"));
                request.session_timeout_ms = 10_000;
                if version >= 1 {
                    request.rebalance_timeout_ms = 20_000;
                }
                request.member_id = StrBytes::from_static_str("member");
                if version >= 5 {
                    request.group_instance_id = Some(StrBytes::from_static_str("instance"));
                }
                request.protocol_type = StrBytes::from_static_str("consumer");
                request.protocols = vec![protocol.clone(), protocol];
                if version >= 8 {
                    request.reason = Some(StrBytes::from_static_str("why"));
                }
                request.into()
            }
            ApiKey::SyncGroup => {
                let mut assignment = sync_group_request::SyncGroupRequestAssignment::default();
                assignment.member_id = StrBytes::from_static_str("member");
                assignment.assignment = Bytes::from_static(b"assigned");
                let mut request = SyncGroupRequest::default();
                request.group_id = GroupId(StrBytes::from_static_str("group"));
                request.generation_id = 3;
                request.member_id = StrBytes::from_static_str("member");
                if version >= 3 {
                    request.group_instance_id = Some(StrBytes::from_static_str("instance"));
                }
                if version >= 5 {
                    request.protocol_type = Some(StrBytes::from_static_str("consumer"));
                    request.protocol_name = Some(StrBytes::from_static_str("range"));
                }
                request.assignments = vec![assignment.clone(), assignment];
                request.into()
            }
            ApiKey::Heartbeat => {
                let mut request = HeartbeatRequest::default();
                request.group_id = GroupId(StrBytes::from_static_str("group"));
                request.generation_id = 3;
                request.member_id = StrBytes::from_static_str("member");
                if version >= 3 {
                    request.group_instance_id = Some(StrBytes::from_static_str("instance"));
                }
                request.into()
            }
            ApiKey::LeaveGroup => {
                let mut request = LeaveGroupRequest::default();
                request.group_id = GroupId(StrBytes::from_static_str("group"));
                if version <= 2 {
                    request.member_id = StrBytes::from_static_str("member");
                } else {
                    let mut member = leave_group_request::MemberIdentity::default();
                    member.member_id = StrBytes::from_static_str("member");
                    member.group_instance_id = Some(StrBytes::from_static_str("instance"));
                    if version >= 5 {
                        member.reason = Some(StrBytes::from_static_str("why"));
                    }
                    request.members = vec![member.clone(), member];
                }
                request.into()
            }
            ApiKey::OffsetCommit => {
                let mut partition = offset_commit_request::OffsetCommitRequestPartition::default();
                partition.partition_index = 1;
                partition.committed_offset = 42;
                if version >= 6 {
                    partition.committed_leader_epoch = 2;
                }
                partition.committed_metadata = Some(StrBytes::from_static_str("meta"));
                let mut topic = offset_commit_request::OffsetCommitRequestTopic::default();
                topic.name = name("orders");
                topic.partitions = vec![partition.clone(), partition];
                let mut request = OffsetCommitRequest::default();
                request.group_id = GroupId(StrBytes::from_static_str("group"));
                request.generation_id_or_member_epoch = 3;
                request.member_id = StrBytes::from_static_str("member");
                if version >= 7 {
                    request.group_instance_id = Some(StrBytes::from_static_str("instance"));
                }
                if version <= 4 {
                    request.retention_time_ms = 1000;
                }
                request.topics = vec![topic];
                request.into()
            }
            ApiKey::OffsetFetch => {
                let mut request = OffsetFetchRequest::default();
                if version <= 7 {
                    let mut topic = offset_fetch_request::OffsetFetchRequestTopic::default();
                    topic.name = name("orders");
                    topic.partition_indexes = vec![0, 1];
                    request.group_id = GroupId(StrBytes::from_static_str("group"));
                    request.topics = Some(vec![topic.clone(), topic]);
                } else {
                    let mut topic = offset_fetch_request::OffsetFetchRequestTopics::default();
                    topic.name = name("orders");
                    topic.partition_indexes = vec![0, 1];
                    let mut group = offset_fetch_request::OffsetFetchRequestGroup::default();
                    group.group_id = GroupId(StrBytes::from_static_str("group"));
                    if version >= 9 {
                        group.member_id = Some(StrBytes::from_static_str("member"));
                        group.member_epoch = 4;
                    }
                    group.topics = Some(vec![topic.clone(), topic]);
                    request.groups = vec![group.clone(), group];
                }
                if version >= 7 {
                    request.require_stable = true;
                }
                request.into()
            }
            ApiKey::ListGroups => {
                let mut request = ListGroupsRequest::default();
                if version >= 4 {
                    request.states_filter = vec![StrBytes::from_static_str("Stable")];
                }
                if version >= 5 {
                    request.types_filter = vec![StrBytes::from_static_str("classic")];
                }
                request.into()
            }
            ApiKey::DescribeGroups => {
                let mut request = DescribeGroupsRequest::default();
                request.groups = vec![
                    GroupId(StrBytes::from_static_str("a")),
                    GroupId(StrBytes::from_static_str("b")),
                ];
                if version >= 3 {
                    request.include_authorized_operations = true;
                }
                request.into()
            }
            ApiKey::OffsetForLeaderEpoch => {
                let mut partition =
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
                partition.partition = 1;
                partition.current_leader_epoch = 3;
                partition.leader_epoch = 2;
                let mut topic = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
                topic.topic = name("orders");
                topic.partitions = vec![partition.clone(), partition];
                let mut request = OffsetForLeaderEpochRequest::default();
                if version >= 3 {
                    request.replica_id = BrokerId(-1);
                }
                request.topics = vec![topic];
                request.into()
            }
            ApiKey::AddPartitionsToTxn => {
                let mut topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
                topic.name = name("orders");
                topic.partitions = vec![0, 1];
                let mut request = AddPartitionsToTxnRequest::default();
                request.v3_and_below_transactional_id =
                    TransactionalId(StrBytes::from_static_str("tx"));
                request.v3_and_below_producer_id = ProducerId(7);
                request.v3_and_below_producer_epoch = 2;
                request.v3_and_below_topics = vec![topic.clone(), topic];
                request.into()
            }
            ApiKey::AddOffsetsToTxn => {
                let mut request = AddOffsetsToTxnRequest::default();
                request.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
                request.producer_id = ProducerId(7);
                request.producer_epoch = 2;
                request.group_id = GroupId(StrBytes::from_static_str("group"));
                request.into()
            }
            ApiKey::EndTxn => {
                let mut request = EndTxnRequest::default();
                request.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
                request.producer_id = ProducerId(7);
                request.producer_epoch = 2;
                request.committed = true;
                request.into()
            }
            ApiKey::TxnOffsetCommit => {
                let mut partition =
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
                partition.partition_index = 1;
                partition.committed_offset = 42;
                if version >= 2 {
                    partition.committed_leader_epoch = 3;
                }
                partition.committed_metadata = Some(StrBytes::from_static_str("meta"));
                let mut topic = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
                topic.name = name("orders");
                topic.partitions = vec![partition.clone(), partition];
                let mut request = TxnOffsetCommitRequest::default();
                request.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
                request.group_id = GroupId(StrBytes::from_static_str("group"));
                request.producer_id = ProducerId(7);
                request.producer_epoch = 2;
                if version >= 3 {
                    request.generation_id = 4;
                    request.member_id = StrBytes::from_static_str("member");
                    request.group_instance_id = Some(StrBytes::from_static_str("instance"));
                }
                request.topics = vec![topic];
                request.into()
            }
            ApiKey::DescribeProducers => {
                let mut topic = describe_producers_request::TopicRequest::default();
                topic.name = name("orders");
                topic.partition_indexes = vec![0, 1];
                let mut request = DescribeProducersRequest::default();
                request.topics = vec![topic.clone(), topic];
                request.into()
            }
            ApiKey::DescribeTransactions => {
                let mut request = DescribeTransactionsRequest::default();
                request.transactional_ids = vec![
                    TransactionalId(StrBytes::from_static_str("a")),
                    TransactionalId(StrBytes::from_static_str("b")),
                ];
                request.into()
            }
            ApiKey::ListTransactions => {
                let mut request = ListTransactionsRequest::default();
                request.state_filters = vec![StrBytes::from_static_str("Ongoing")];
                request.producer_id_filters = vec![ProducerId(7), ProducerId(8)];
                if version >= 1 {
                    request.duration_filter = 1000;
                }
                request.into()
            }
            ApiKey::DeleteGroups => {
                let mut request = DeleteGroupsRequest::default();
                request.groups_names = vec![
                    GroupId(StrBytes::from_static_str("a")),
                    GroupId(StrBytes::from_static_str("b")),
                ];
                request.into()
            }
            ApiKey::OffsetDelete => {
                let mut partition = offset_delete_request::OffsetDeleteRequestPartition::default();
                partition.partition_index = 1;
                let mut topic = offset_delete_request::OffsetDeleteRequestTopic::default();
                topic.name = name("orders");
                topic.partitions = vec![partition.clone(), partition];
                let mut request = OffsetDeleteRequest::default();
                request.group_id = GroupId(StrBytes::from_static_str("g"));
                request.topics = vec![topic.clone(), topic];
                request.into()
            }
            ApiKey::DeleteRecords => {
                let mut partition = delete_records_request::DeleteRecordsPartition::default();
                partition.partition_index = 1;
                partition.offset = 42;
                let mut topic = delete_records_request::DeleteRecordsTopic::default();
                topic.name = name("orders");
                topic.partitions = vec![partition.clone(), partition];
                let mut request = DeleteRecordsRequest::default();
                request.topics = vec![topic.clone(), topic];
                request.timeout_ms = 1000;
                request.into()
            }
            ApiKey::DescribeLogDirs => {
                let mut topic = describe_log_dirs_request::DescribableLogDirTopic::default();
                topic.topic = name("orders");
                topic.partitions = vec![0, 1];
                let mut request = DescribeLogDirsRequest::default();
                request.topics = Some(vec![topic.clone(), topic]);
                request.into()
            }
            other => panic!("no populated request for {other:?}"),
        }
    }

    #[test]
    fn walk_consumes_exactly_the_body_of_every_advertised_request_version() {
        for api in ADVERTISED_APIS {
            for version in api.version_min..=api.version_max {
                let request = populated_request(api.api_key, version);
                let mut body = BytesMut::new();
                request
                    .encode(&mut body, version)
                    .unwrap_or_else(|error| panic!("{:?} v{version}: {error}", api.api_key));
                let consumed = check_request_body(api.api_key, version, &body)
                    .unwrap_or_else(|error| panic!("{:?} v{version}: {error}", api.api_key));
                assert_eq!(consumed, body.len(), "{:?} v{version}", api.api_key);
                // Every proper prefix is refused, never accepted and never a panic.
                for cut in 0..body.len() {
                    let truncated = check_request_body(api.api_key, version, &body[..cut]);
                    assert!(truncated.is_err(), "{:?} v{version} cut {cut}", api.api_key);
                }
            }
        }
    }

    #[test]
    fn an_array_count_beyond_the_frame_is_refused_before_any_decoding() {
        // Metadata v1: topics array count i32::MAX, then nothing.
        let body = i32::MAX.to_be_bytes();
        assert!(matches!(
            check_request_body(ApiKey::Metadata, 1, &body),
            Err(PrecheckError::CountTooLarge { count, .. }) if count == i32::MAX as u64
        ));
        // Metadata v12 (compact): a varint count of 2^32 - 1.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            check_request_body(ApiKey::Metadata, 12, &body),
            Err(PrecheckError::CountTooLarge { .. })
        ));
        // A negative (non-null) array length.
        let body = (-2i32).to_be_bytes();
        assert_eq!(
            check_request_body(ApiKey::Metadata, 1, &body),
            Err(PrecheckError::NegativeLength(-2))
        );
    }

    #[test]
    fn the_broker_to_broker_add_partitions_form_is_walked_too() {
        // AddPartitionsToTxn v4+ is not advertised, but its schema is right all the same.
        for version in 4..=5 {
            let mut topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
            topic.name = name("orders");
            topic.partitions = vec![0, 1];
            let mut transaction =
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default();
            transaction.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
            transaction.producer_id = ProducerId(7);
            transaction.verify_only = true;
            transaction.topics = vec![topic];
            let mut request = AddPartitionsToTxnRequest::default();
            request.transactions = vec![transaction];
            let mut body = BytesMut::new();
            RequestKind::from(request)
                .encode(&mut body, version)
                .unwrap();
            assert_eq!(
                check_request_body(ApiKey::AddPartitionsToTxn, version, &body),
                Ok(body.len())
            );
        }
    }

    #[test]
    fn a_producer_id_filter_count_beyond_the_frame_is_refused() {
        // ListTransactions v0: no state filters, then 2^32 - 2 producer ids (compact count).
        let body = [0x01, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(
            check_request_body(ApiKey::ListTransactions, 0, &body),
            Err(PrecheckError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn null_arrays_and_strings_pass_the_walk() {
        // Metadata v1 with a null topic list (all topics).
        assert_eq!(
            check_request_body(ApiKey::Metadata, 1, &(-1i32).to_be_bytes()),
            Ok(4)
        );
        // Metadata v12 with a null topic list, allow-auto-create, include-topic-ops, no tags.
        assert_eq!(
            check_request_body(ApiKey::Metadata, 12, &[0, 1, 0, 0]),
            Ok(4)
        );
    }
}
