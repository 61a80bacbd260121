//! Looking at consumer groups from outside: ListGroups (the groups one broker coordinates),
//! DescribeGroups (state, protocol and members of one group, asked of its coordinator) and
//! OffsetFetch of every partition a group committed.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::connection::Connection;
use crate::error::{Error, Result};

/// A group as ListGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group: String,
    /// "consumer" for Kafka consumers; empty for a group that only holds offsets.
    pub protocol_type: String,
    /// "Stable", "Empty", ... (empty below ListGroups v4).
    pub state: String,
}

/// One member as DescribeGroups describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's JoinGroup metadata (for "consumer": its subscription).
    pub metadata: Bytes,
    /// The member's SyncGroup assignment (for "consumer": its partitions).
    pub assignment: Bytes,
}

/// A group as DescribeGroups describes it. A group the coordinator does not know is
/// described in state "Dead" with no members, as Kafka does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    /// The chosen protocol (e.g. the assignor "range").
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

/// A committed offset of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub metadata: Option<String>,
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_owned()))
}

impl Connection {
    /// The groups this broker coordinates (ask every broker for all of a cluster's).
    pub async fn list_groups(&mut self) -> Result<Vec<ListedGroup>> {
        let version = self.version(ApiKey::ListGroups)?;
        let response = self.send(&ListGroupsRequest::default(), version).await?;
        Error::check(ApiKey::ListGroups, response.error_code, None)?;
        Ok(response
            .groups
            .into_iter()
            .map(|g| ListedGroup {
                group: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            })
            .collect())
    }

    /// Describes `group`; this connection must be to its coordinator.
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription> {
        let version = self.version(ApiKey::DescribeGroups)?;
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let response = self.send(&request, version).await?;
        let described = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| {
                Error::UnexpectedResponse(format!("DescribeGroups response lacks {group:?}"))
            })?;
        Error::check(
            ApiKey::DescribeGroups,
            described.error_code,
            described.error_message.as_deref(),
        )?;
        Ok(GroupDescription {
            group: group.to_owned(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members: described
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|id| id.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    metadata: m.member_metadata,
                    assignment: m.member_assignment,
                })
                .collect(),
        })
    }

    /// Every offset `group` has committed, sorted by topic and partition; this connection
    /// must be to its coordinator.
    pub async fn fetch_all_offsets(&mut self, group: &str) -> Result<Vec<CommittedOffset>> {
        let version = self.version(ApiKey::OffsetFetch)?;
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(None);
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::OffsetFetch, response.error_code, None)?;
        let mut offsets = Vec::new();
        for topic in response.topics {
            for partition in topic.partitions {
                Error::check(ApiKey::OffsetFetch, partition.error_code, None)?;
                if partition.committed_offset >= 0 {
                    offsets.push(CommittedOffset {
                        topic: topic.name.0.to_string(),
                        partition: partition.partition_index,
                        offset: partition.committed_offset,
                        metadata: partition.metadata.map(|m| m.to_string()),
                    });
                }
            }
        }
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(offsets)
    }
}
