//! DescribeLogDirs (api key 35, v1-4): the node's one log directory (its data directory)
//! with each hosted partition's size in bytes and offset lag (how far its log end is behind
//! its high watermark; 0 on a leader), `is_future_key` false (partitions never move between
//! directories). From v4 the file system's total and usable bytes (statvfs; -1 when it
//! cannot be read, as Kafka answers when unknown). A null topic list asks for every
//! partition; a named partition this node does not host is left out, as Kafka does.

use crate::kafka::dispatch::{call, wire_string, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use myelin_core::api::{HostedPartitionSize, Request, Response};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub(crate) async fn describe_log_dirs(
    context: &ConnectionContext,
    version: i16,
    request: DescribeLogDirsRequest,
) -> Result<Reply, HandlerError> {
    let Response::DescribeLogDirs(hosted) = call(context, Request::DescribeLogDirs).await? else {
        return Err(HandlerError::UnexpectedResponse {
            request: "DescribeLogDirs",
        });
    };
    let wanted: Option<BTreeSet<(String, i32)>> = request.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (topic.topic.to_string(), *partition))
            })
            .collect()
    });
    let data_dir = context.handle.data_dir();
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = wire_string(data_dir.display().to_string());
    result.topics = topics_of(hosted, wanted.as_ref());
    if version >= 4 {
        let (total, usable) = file_system_bytes(data_dir).unwrap_or((-1, -1));
        result.total_bytes = total;
        result.usable_bytes = usable;
    }
    let mut body = DescribeLogDirsResponse::default();
    body.results = vec![result];
    Ok(Reply::small(body))
}

/// The hosted partitions asked for (`None`: all), grouped by topic in name order.
fn topics_of(
    hosted: Vec<HostedPartitionSize>,
    wanted: Option<&BTreeSet<(String, i32)>>,
) -> Vec<DescribeLogDirsTopic> {
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for partition in hosted {
        let key = (
            partition.partition.topic.clone(),
            partition.partition.partition,
        );
        if wanted.is_some_and(|wanted| !wanted.contains(&key)) {
            continue;
        }
        let mut described = DescribeLogDirsPartition::default();
        described.partition_index = key.1;
        described.partition_size = i64::try_from(partition.size_bytes).unwrap_or(i64::MAX);
        described.offset_lag = partition.offset_lag;
        described.is_future_key = false;
        by_topic.entry(key.0).or_default().push(described);
    }
    by_topic
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = DescribeLogDirsTopic::default();
            topic.name = TopicName(wire_string(name));
            topic.partitions = partitions;
            topic
        })
        .collect()
}

/// (total, usable) bytes of the file system holding `path`, from statvfs.
// The statvfs fields are u64 here but narrower on other targets.
#[allow(clippy::useless_conversion)]
fn file_system_bytes(path: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` only writes the struct it is given; all-zero bytes are a valid
    // value of that plain C struct, and `path` is a NUL-terminated string that outlives
    // the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let status = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if status != 0 {
        return None;
    }
    let fragment = u64::from(stat.f_frsize);
    let total = u64::from(stat.f_blocks).checked_mul(fragment)?;
    let usable = u64::from(stat.f_bavail).checked_mul(fragment)?;
    Some((i64::try_from(total).ok()?, i64::try_from(usable).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_core::metadata::TopicPartition;

    #[test]
    fn partitions_are_grouped_by_topic_and_filtered_by_the_request() {
        let hosted = vec![
            HostedPartitionSize {
                partition: TopicPartition::new("orders", 0),
                size_bytes: 100,
                offset_lag: 0,
            },
            HostedPartitionSize {
                partition: TopicPartition::new("orders", 1),
                size_bytes: 200,
                offset_lag: 3,
            },
            HostedPartitionSize {
                partition: TopicPartition::new("audit", 0),
                size_bytes: 7,
                offset_lag: 0,
            },
        ];
        let all = topics_of(hosted.clone(), None);
        let rows: Vec<(String, i32, i64, i64)> = all
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|p| {
                    let name = topic.name.to_string();
                    (name, p.partition_index, p.partition_size, p.offset_lag)
                })
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("audit".into(), 0, 7, 0),
                ("orders".into(), 0, 100, 0),
                ("orders".into(), 1, 200, 3)
            ]
        );
        let wanted = BTreeSet::from([("orders".to_string(), 1), ("gone".to_string(), 0)]);
        let some = topics_of(hosted, Some(&wanted));
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].partitions.len(), 1);
        assert_eq!(some[0].partitions[0].partition_index, 1);
    }

    #[test]
    fn the_file_system_of_a_real_directory_has_a_size() {
        let dir = std::env::temp_dir();
        let (total, usable) = file_system_bytes(&dir).expect("statvfs of the temp directory");
        assert!(
            total > 0 && (0..=total).contains(&usable),
            "{total} {usable}"
        );
        assert_eq!(file_system_bytes(Path::new("/no/such/directory")), None);
    }
}
