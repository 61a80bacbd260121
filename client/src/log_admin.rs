//! Administration of partitions' data: DeleteRecords (moves a partition's log start offset)
//! and DescribeLogDirs (where a broker keeps its partitions and how large they are).

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DescribeLogDirsRequest};

use crate::admin::{duration_ms, topic_name};
use crate::connection::Connection;
use crate::error::{Error, Result};

/// One log directory of a broker, as DescribeLogDirs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirDescription {
    /// The directory's path on the broker.
    pub log_dir: String,
    /// Kafka error code for this directory (0 = none).
    pub error_code: i16,
    /// The file system's size in bytes (-1 if unknown, or below DescribeLogDirs v4).
    pub total_bytes: i64,
    /// Bytes free for the broker on that file system (-1 if unknown, or below v4).
    pub usable_bytes: i64,
    /// The partitions in this directory.
    pub partitions: Vec<LogDirPartition>,
}

/// One partition of a [`LogDirDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Bytes the partition's log holds on disk.
    pub size_bytes: i64,
    /// How far this replica is behind its leader's log end (0 on the leader).
    pub offset_lag: i64,
    /// Whether this is a future replica being moved between directories.
    pub is_future: bool,
}

impl Connection {
    /// DeleteRecords: moves the log start offset of `topic`/`partition` to `before_offset`
    /// (-1 = the high watermark), deleting every record below it. This connection must be
    /// to the partition's leader. Returns the partition's new low watermark (log start
    /// offset). A partition error is `Error::Broker` (1 OFFSET_OUT_OF_RANGE beyond the high
    /// watermark, 6 NOT_LEADER_OR_FOLLOWER, 3 UNKNOWN_TOPIC_OR_PARTITION, ...).
    pub async fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        before_offset: i64,
    ) -> Result<i64> {
        let version = self.version(ApiKey::DeleteRecords)?;
        let wait = self.config().request_timeout;
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(duration_ms(wait))
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(before_offset)])]);
        let response = self.send_with_extra_wait(&request, version, wait).await?;
        let result = response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!(
                    "DeleteRecords response lacks {topic}/{partition}"
                ))
            })?;
        Error::check(ApiKey::DeleteRecords, result.error_code, None)?;
        Ok(result.low_watermark)
    }

    /// DescribeLogDirs of every partition this broker hosts: its log directories with each
    /// partition's size and lag. A request-level error (DescribeLogDirs v3+) is an `Err`;
    /// a directory's error is in [`LogDirDescription::error_code`].
    pub async fn describe_log_dirs(&mut self) -> Result<Vec<LogDirDescription>> {
        let version = self.version(ApiKey::DescribeLogDirs)?;
        // No topic list: every partition.
        let request = DescribeLogDirsRequest::default().with_topics(None);
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::DescribeLogDirs, response.error_code, None)?;
        Ok(response
            .results
            .into_iter()
            .map(|dir| LogDirDescription {
                log_dir: dir.log_dir.to_string(),
                error_code: dir.error_code,
                total_bytes: dir.total_bytes,
                usable_bytes: dir.usable_bytes,
                partitions: dir
                    .topics
                    .into_iter()
                    .flat_map(|topic| {
                        let name = topic.name.0.to_string();
                        topic.partitions.into_iter().map(move |p| LogDirPartition {
                            topic: name.clone(),
                            partition: p.partition_index,
                            size_bytes: p.partition_size,
                            offset_lag: p.offset_lag,
                            is_future: p.is_future_key,
                        })
                    })
                    .collect(),
            })
            .collect())
    }
}
