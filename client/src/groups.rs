//! Consumer-group requests of the classic protocol: FindCoordinator, JoinGroup (with the
//! MEMBER_ID_REQUIRED round trip done here), SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit and OffsetFetch; and the group admin requests DeleteGroups and OffsetDelete.
//! Each is one request on this connection, which must be to the group's coordinator (except
//! FindCoordinator); the caller runs the member's loop.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::topic_name;
use crate::connection::Connection;
use crate::error::{Error, Result};

/// Kafka error code MEMBER_ID_REQUIRED.
const MEMBER_ID_REQUIRED: i16 = 79;

/// A group's coordinator, as FindCoordinator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// A completed JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedGroup {
    pub generation: i32,
    pub member_id: String,
    pub leader: String,
    pub protocol: Option<String>,
    /// For the leader: every member's id and metadata; empty for the others.
    pub members: Vec<(String, Bytes)>,
}

impl JoinedGroup {
    pub fn is_leader(&self) -> bool {
        self.leader == self.member_id
    }
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn group_id(group: &str) -> GroupId {
    GroupId(text(group))
}

impl Connection {
    /// The coordinator of `group`.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<Coordinator> {
        self.find_coordinator_of(group, 0).await
    }

    /// FindCoordinator for `key` of `key_type` (0 = group, 1 = transactional id).
    pub async fn find_coordinator_of(&mut self, key: &str, key_type: i8) -> Result<Coordinator> {
        let version = self.version(ApiKey::FindCoordinator)?;
        let request = FindCoordinatorRequest::default()
            .with_key(text(key))
            .with_key_type(key_type);
        let response = self.send(&request, version).await?;
        Error::check(
            ApiKey::FindCoordinator,
            response.error_code,
            response.error_message.as_deref(),
        )?;
        Ok(Coordinator {
            node_id: response.node_id.0,
            host: response.host.to_string(),
            port: response.port,
        })
    }

    /// Joins `group` (`member_id` empty the first time), doing the MEMBER_ID_REQUIRED round
    /// trip. Waits up to the rebalance timeout for the rebalance to complete.
    pub async fn join_group(
        &mut self,
        group: &str,
        member_id: &str,
        protocol_type: &str,
        protocols: &[(&str, Bytes)],
        session_timeout_ms: i32,
        rebalance_timeout_ms: i32,
    ) -> Result<JoinedGroup> {
        let version = self.version(ApiKey::JoinGroup)?;
        let wait = Duration::from_millis(u64::try_from(rebalance_timeout_ms).unwrap_or(0));
        let mut member_id = member_id.to_owned();
        for _ in 0..2 {
            let request = JoinGroupRequest::default()
                .with_group_id(group_id(group))
                .with_session_timeout_ms(session_timeout_ms)
                .with_rebalance_timeout_ms(rebalance_timeout_ms)
                .with_member_id(text(&member_id))
                .with_protocol_type(text(protocol_type))
                .with_protocols(
                    protocols
                        .iter()
                        .map(|(name, metadata)| {
                            JoinGroupRequestProtocol::default()
                                .with_name(text(name))
                                .with_metadata(metadata.clone())
                        })
                        .collect(),
                );
            let response = self.send_with_extra_wait(&request, version, wait).await?;
            if response.error_code == MEMBER_ID_REQUIRED && member_id.is_empty() {
                member_id = response.member_id.to_string();
                continue;
            }
            Error::check(ApiKey::JoinGroup, response.error_code, None)?;
            return Ok(JoinedGroup {
                generation: response.generation_id,
                member_id: response.member_id.to_string(),
                leader: response.leader.to_string(),
                protocol: response.protocol_name.map(|name| name.to_string()),
                members: response
                    .members
                    .into_iter()
                    .map(|member| (member.member_id.to_string(), member.metadata))
                    .collect(),
            });
        }
        Err(Error::UnexpectedResponse(
            "JoinGroup asked for a member id twice".into(),
        ))
    }

    /// Syncs a generation; the leader passes every member's assignment. Returns this
    /// member's assignment.
    pub async fn sync_group(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: &[(String, Bytes)],
        wait: Duration,
    ) -> Result<Bytes> {
        let version = self.version(ApiKey::SyncGroup)?;
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(text(member_id))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(member, assignment)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(text(member))
                            .with_assignment(assignment.clone())
                    })
                    .collect(),
            );
        let response = self.send_with_extra_wait(&request, version, wait).await?;
        Error::check(ApiKey::SyncGroup, response.error_code, None)?;
        Ok(response.assignment)
    }

    pub async fn heartbeat(&mut self, group: &str, member_id: &str, generation: i32) -> Result<()> {
        let version = self.version(ApiKey::Heartbeat)?;
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(text(member_id));
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::Heartbeat, response.error_code, None)
    }

    pub async fn leave_group(&mut self, group: &str, member_id: &str) -> Result<()> {
        let version = self.version(ApiKey::LeaveGroup)?;
        let request = LeaveGroupRequest::default()
            .with_group_id(group_id(group))
            .with_members(vec![
                MemberIdentity::default().with_member_id(text(member_id))
            ]);
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::LeaveGroup, response.error_code, None)?;
        for member in &response.members {
            Error::check(ApiKey::LeaveGroup, member.error_code, None)?;
        }
        Ok(())
    }

    /// Commits `offsets` ((partition, next offset to read)) of `topic`, as a member
    /// (`member_id` empty and generation -1 for a standalone consumer). The first
    /// partition's error, if any, is the result (the coordinator accepts all or none).
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<()> {
        let version = self.version(ApiKey::OffsetCommit)?;
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(text(member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(partition, offset)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*partition)
                                .with_committed_offset(*offset)
                        })
                        .collect(),
                )]);
        let response = self.send(&request, version).await?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                Error::check(ApiKey::OffsetCommit, partition.error_code, None)?;
            }
        }
        Ok(())
    }

    /// The group's committed offsets of `partitions` of `topic` (-1: none committed).
    pub async fn fetch_offsets(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>> {
        let version = self.version(ApiKey::OffsetFetch)?;
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions.to_vec())]));
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::OffsetFetch, response.error_code, None)?;
        let mut offsets = Vec::new();
        for found in &response.topics {
            for partition in &found.partitions {
                Error::check(ApiKey::OffsetFetch, partition.error_code, None)?;
                offsets.push((partition.partition_index, partition.committed_offset));
            }
        }
        Ok(offsets)
    }

    /// DeleteGroups: deletes `groups` (each must be empty) with their committed offsets.
    /// This connection must be to the groups' coordinator. Returns each group's Kafka error
    /// code (0 = deleted; 69 GROUP_ID_NOT_FOUND, 68 NON_EMPTY_GROUP, 16 NOT_COORDINATOR, ...),
    /// in the broker's order; only a request-level failure is an `Err`.
    pub async fn delete_groups(&mut self, groups: &[&str]) -> Result<Vec<(String, i16)>> {
        let version = self.version(ApiKey::DeleteGroups)?;
        let request = DeleteGroupsRequest::default()
            .with_groups_names(groups.iter().map(|group| group_id(group)).collect());
        let response = self.send(&request, version).await?;
        Ok(response
            .results
            .into_iter()
            .map(|result| (result.group_id.0.to_string(), result.error_code))
            .collect())
    }

    /// OffsetDelete: removes `group`'s committed offsets of `partitions` of `topic`. This
    /// connection must be to the group's coordinator. A group-level error (69
    /// GROUP_ID_NOT_FOUND, 16 NOT_COORDINATOR, ...) is an `Err`; otherwise each partition's
    /// Kafka error code (0 = deleted; 86 GROUP_SUBSCRIBED_TO_TOPIC when a member of the group
    /// is subscribed to the topic).
    pub async fn offset_delete(
        &mut self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i16)>> {
        let version = self.version(ApiKey::OffsetDelete)?;
        let request = OffsetDeleteRequest::default()
            .with_group_id(group_id(group))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&partition| {
                            OffsetDeleteRequestPartition::default().with_partition_index(partition)
                        })
                        .collect(),
                )]);
        let response = self.send(&request, version).await?;
        Error::check(ApiKey::OffsetDelete, response.error_code, None)?;
        Ok(response
            .topics
            .into_iter()
            .filter(|found| found.name.0.as_str() == topic)
            .flat_map(|found| found.partitions)
            .map(|partition| (partition.partition_index, partition.error_code))
            .collect())
    }
}
