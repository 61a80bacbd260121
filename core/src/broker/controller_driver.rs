//! How the broker drives its controller ([`crate::controller`]): the controller's view of
//! this node, executing its outputs (appending its batches to the metadata log and
//! reporting each back), and the node's part of applying the metadata log: persisting the
//! snapshot, then opening and removing the partitions a change gives or takes.

use super::{hosted_leader, Broker, PartitionState};
use crate::api::{AdminOp, Now, Output, RequestId, Response, TopicResult};
use crate::controller::{
    metadata_partition, Controller, ControllerContext, ControllerNode, ControllerOutput,
};
use crate::metadata::{ClusterMetadata, NodeInfo, TopicPartition};
use crate::replication::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// What the controller sees of this node.
struct ControllerView<'a> {
    metadata: &'a ClusterMetadata,
    partitions: &'a BTreeMap<TopicPartition, PartitionState>,
}

impl ControllerNode for ControllerView<'_> {
    fn metadata(&self) -> &ClusterMetadata {
        self.metadata
    }

    fn controller_id(&self) -> Option<NodeId> {
        self.partitions
            .get(&metadata_partition())
            .and_then(|state| state.replica.leader())
    }

    fn metadata_leader_epoch(&self) -> Option<i32> {
        self.partitions
            .get(&metadata_partition())
            .filter(|state| state.replica.is_leader())
            .map(|state| state.replica.epoch())
    }

    fn hosted_leader(&self, partition: &TopicPartition) -> Option<(i32, NodeId)> {
        hosted_leader(self.partitions, partition)
    }

    fn metadata_caught_up(&self) -> bool {
        self.partitions
            .get(&metadata_partition())
            .is_some_and(|state| state.replica.caught_up(&state.log))
    }

    fn led_in_sync(&self, partition: &TopicPartition, now_ms: i64) -> Option<Vec<NodeId>> {
        self.partitions
            .get(partition)
            .filter(|state| state.replica.is_leader())
            .map(|state| state.replica.in_sync_replicas(now_ms))
    }

    fn led_partitions(&self) -> Vec<(TopicPartition, i32)> {
        self.partitions
            .iter()
            .filter(|(_, state)| state.replica.is_leader())
            .map(|(partition, state)| (partition.clone(), state.replica.epoch()))
            .collect()
    }
}

impl Broker {
    /// Whether the applied metadata lists this node with its current address.
    pub(super) fn is_registered(&self) -> bool {
        self.controller.is_registered(&self.metadata)
    }

    pub(super) fn this_node(&self) -> NodeInfo {
        self.controller.this_node()
    }

    /// The controller (the metadata log's leader), if known.
    pub fn controller_id(&self) -> Option<NodeId> {
        self.partitions
            .get(&metadata_partition())
            .and_then(|state| state.replica.leader())
    }

    /// A partition's (leader epoch, leader), from this node's replica or the announcements,
    /// if that leader is live.
    pub(super) fn partition_leader(
        &self,
        partition: &TopicPartition,
        now: Now,
    ) -> Option<(i32, NodeId)> {
        let hosted = hosted_leader(&self.partitions, partition);
        self.controller
            .live_leader(partition, hosted, now.monotonic_ms)
    }

    /// Whether this node knows the cluster now (see `Controller::check_knows_cluster`).
    pub(super) fn check_knows_cluster(&mut self, now: Now) -> bool {
        self.drive_controller(now, |controller, context| {
            controller.check_knows_cluster(context)
        })
    }

    /// Applies every committed metadata batch not applied yet; opens and removes the
    /// partitions the changes give or take from this node, then persists the view. In that
    /// order: a crash between them leaves the older view over the newer partitions, which
    /// a restart sorts out (orphans deleted, a partition of an older topic id recreated as
    /// its records are applied again); the other order could leave the newer view over an
    /// older topic's data, taken for the new topic's.
    pub(super) fn apply_committed_metadata(&mut self, now: Now, outputs: &mut Vec<Output>) {
        let Some((committed, leading)) = self.partitions.get(&metadata_partition()).map(|state| {
            let replica = &state.replica;
            (
                state.log.high_watermark(),
                replica.is_leader() && replica.serves_reads(&state.log),
            )
        }) else {
            return;
        };
        let changed_topics = self
            .controller
            .apply_committed(&mut self.metadata, committed);
        // Everything committed is applied: a leading controller's view must be whole.
        if leading {
            if let Err(corrupt) = self.controller.check_servable() {
                outputs.push(Output::FailStop(corrupt));
            }
        }
        let Some(changed_topics) = changed_topics else {
            return;
        };
        let hosted: BTreeSet<TopicPartition> = self.hosted_partitions().into_iter().collect();
        let stale: Vec<TopicPartition> = self
            .partitions
            .keys()
            .filter(|partition| changed_topics.contains(&partition.topic))
            .filter(|partition| {
                !hosted.contains(*partition) || self.holds_an_older_topic(partition)
            })
            .cloned()
            .collect();
        for partition in stale {
            tracing::info!(%partition, "partition removed");
            self.close_partition(&partition, outputs);
        }
        for partition in hosted {
            if changed_topics.contains(&partition.topic)
                && !self.partitions.contains_key(&partition)
            {
                tracing::info!(%partition, "partition created");
                self.open_partition(now, partition, None, None, outputs);
            }
        }
        // Committed offsets of a deleted topic go with it.
        let deleted: BTreeSet<String> = changed_topics
            .iter()
            .filter(|topic| !self.metadata.topics.contains_key(*topic))
            .cloned()
            .collect();
        if !deleted.is_empty() {
            self.groups_on_topics_deleted(now, &deleted, outputs);
        }
        // A segment.bytes change applies to the next roll of every hosted partition.
        for (partition, state) in &mut self.partitions {
            if let Some(topic) = self.metadata.topics.get(&partition.topic) {
                state.segment_bytes = topic.config.segment_bytes;
            }
        }
        outputs.push(self.persist_metadata());
    }

    /// A client's CreateTopics or DeleteTopics.
    pub(super) fn admin_request(
        &mut self,
        now: Now,
        id: RequestId,
        op: AdminOp,
        outputs: &mut Vec<Output>,
    ) {
        let controller_outputs = self.drive_controller(now, |controller, context| {
            controller.admin_request(context, id, op)
        });
        self.execute_controller_outputs(now, controller_outputs, outputs);
    }

    pub(super) fn on_forward(
        &mut self,
        now: Now,
        from: NodeId,
        id: u64,
        op: AdminOp,
        outputs: &mut Vec<Output>,
    ) {
        let controller_outputs = self.drive_controller(now, |controller, context| {
            controller.on_forward(context, from, id, op)
        });
        self.execute_controller_outputs(now, controller_outputs, outputs);
    }

    pub(super) fn on_forwarded(
        &mut self,
        now: Now,
        id: u64,
        results: Vec<TopicResult>,
        outputs: &mut Vec<Output>,
    ) {
        let controller_outputs = self.controller.on_forwarded(id, results);
        self.execute_controller_outputs(now, controller_outputs, outputs);
    }

    /// After every step: see `Controller::release_admin`.
    pub(super) fn release_admin(&mut self, now: Now, outputs: &mut Vec<Output>) {
        let controller_outputs =
            self.drive_controller(now, |controller, context| controller.release_admin(context));
        self.execute_controller_outputs(now, controller_outputs, outputs);
    }

    /// Timers: leader announcements, this node's registration, the cluster id.
    pub(super) fn controller_tick(&mut self, now: Now, outputs: &mut Vec<Output>) {
        let controller_outputs =
            self.drive_controller(now, |controller, context| controller.tick(context));
        self.execute_controller_outputs(now, controller_outputs, outputs);
    }

    /// Runs an admin operation nobody waits for (auto-creation) at the controller.
    pub(super) fn submit_unanswered(&mut self, now: Now, op: AdminOp, outputs: &mut Vec<Output>) {
        let controller_outputs = self.drive_controller(now, |controller, context| {
            controller.submit_unanswered(context, op)
        });
        self.execute_controller_outputs(now, controller_outputs, outputs);
    }

    pub(super) fn metadata_request(
        &mut self,
        now: Now,
        topics: Option<Vec<String>>,
        allow_auto_create: bool,
        outputs: &mut Vec<Output>,
    ) -> Response {
        let (response, controller_outputs) = self.drive_controller(now, |controller, context| {
            controller.metadata_request(context, topics, allow_auto_create)
        });
        self.execute_controller_outputs(now, controller_outputs, outputs);
        response
    }

    pub(super) fn describe_configs(&self, name: &str) -> TopicResult {
        crate::controller::describe_configs(&self.metadata, &self.config.topic_defaults, name)
    }

    /// Calls the controller with its view of this node.
    fn drive_controller<R>(
        &mut self,
        now: Now,
        call: impl FnOnce(&mut Controller, &mut ControllerContext<'_>) -> R,
    ) -> R {
        let node = ControllerView {
            metadata: &self.metadata,
            partitions: &self.partitions,
        };
        let mut context = ControllerContext {
            now,
            node: &node,
            rng: &mut self.rng,
        };
        call(&mut self.controller, &mut context)
    }

    /// Carries out the controller's outputs in order, reporting each append back before
    /// the next.
    fn execute_controller_outputs(
        &mut self,
        now: Now,
        controller_outputs: Vec<ControllerOutput>,
        outputs: &mut Vec<Output>,
    ) {
        for controller_output in controller_outputs {
            match controller_output {
                ControllerOutput::Respond { id, response } => {
                    outputs.push(Output::Respond { id, response })
                }
                ControllerOutput::Send { to, message } => {
                    outputs.push(Output::Send { to, message })
                }
                ControllerOutput::Append { batch, write } => {
                    let appended =
                        self.append_broker_batch(now, &metadata_partition(), batch, outputs);
                    let replies = self.controller.appended(write, appended);
                    self.execute_controller_outputs(now, replies, outputs);
                }
            }
        }
    }
}
