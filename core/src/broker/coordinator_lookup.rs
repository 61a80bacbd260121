//! Where a coordinator is: FindCoordinator for groups (`__consumer_offsets`) and
//! transactional ids (`__transaction_state`) names the leader of the key's partition of
//! that internal topic, and asks the controller to create the topic the first time.

use super::Broker;
use crate::api::{AdminOp, CoordinatorResult, CreateTopic, ErrorCode, Now, Output};
use crate::group_coordinator::{offsets_partition_of, OFFSETS_TOPIC};
use crate::metadata::TopicPartition;

/// How long a requested creation of an internal topic is left to finish before asking again.
const INTERNAL_TOPIC_REQUEST_INTERVAL_MS: i64 = 1_000;

impl Broker {
    /// FindCoordinator of groups (`OFFSETS_TOPIC`) or transactional ids
    /// (`TRANSACTION_STATE_TOPIC`): the leader of the key's partition of that internal topic,
    /// which is created the first time it is asked for.
    pub(super) fn find_coordinators(
        &mut self,
        now: Now,
        topic: &'static str,
        keys: Vec<String>,
        outputs: &mut Vec<Output>,
    ) -> Vec<CoordinatorResult> {
        let Some(partition_count) = self
            .metadata
            .topics
            .get(topic)
            .map(|topic| topic.partition_count)
        else {
            self.request_internal_topic(now, topic, outputs);
            return keys
                .into_iter()
                .map(|group_id| CoordinatorResult {
                    group_id,
                    error: ErrorCode::CoordinatorNotAvailable,
                    node: None,
                })
                .collect();
        };
        keys.into_iter()
            .map(|group_id| {
                let index = offsets_partition_of(&group_id, partition_count);
                let leader = self.partition_leader(&TopicPartition::new(topic, index), now);
                tracing::debug!(key = %group_id, topic, partition = index, ?leader, "coordinator lookup");
                let node = leader
                    .and_then(|(_, leader)| {
                        self.metadata
                            .nodes
                            .iter()
                            .find(|node| node.node_id == leader)
                            .cloned()
                            .or_else(|| (leader == self.config.node_id).then(|| self.this_node()))
                    });
                CoordinatorResult {
                    group_id,
                    error: if node.is_some() {
                        ErrorCode::None
                    } else {
                        ErrorCode::CoordinatorNotAvailable
                    },
                    node,
                }
            })
            .collect()
    }

    /// Asks the controller to create an internal topic (at most once a second).
    pub(super) fn request_internal_topic(
        &mut self,
        now: Now,
        topic: &'static str,
        outputs: &mut Vec<Output>,
    ) {
        if self
            .internal_topics_requested_ms
            .get(topic)
            .is_some_and(|at| now.monotonic_ms < at + INTERNAL_TOPIC_REQUEST_INTERVAL_MS)
        {
            return;
        }
        self.internal_topics_requested_ms
            .insert(topic, now.monotonic_ms);
        let (partition_count, segment_bytes) = if topic == OFFSETS_TOPIC {
            (
                self.config.offsets_partitions,
                self.config.offsets_segment_bytes,
            )
        } else {
            (
                self.config.transaction_state_partitions,
                self.config.transaction_state_segment_bytes,
            )
        };
        let configs = vec![("segment.bytes".to_string(), segment_bytes.to_string())];
        let op = AdminOp::CreateTopics(vec![CreateTopic {
            name: topic.to_string(),
            partition_count,
            replication_factor: -1,
            configs,
            validate_only: false,
            assignments: Vec::new(),
        }]);
        self.submit_unanswered(now, op, outputs);
    }
}
