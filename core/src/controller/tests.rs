//! The controller driven alone: no broker, no replicas. [`Node`] stands in for the node: the
//! metadata log as a list of batches committed by hand, the applied metadata, and who
//! leads the log.

use super::*;
use crate::metadata::{CompressionType, ConfigChange, ConfigOp};
use rand::SeedableRng;

const THIS_NODE: NodeId = 1;
/// Small, so that a few records make a snapshot due.
const SNAPSHOT_INTERVAL_BYTES: u64 = 512;
/// Replication's default.
const ELECTION_TIMEOUT_MAX_MS: i64 = 2_000;

/// What the controller sees of a [`Node`].
struct View {
    metadata: ClusterMetadata,
    controller_id: Option<NodeId>,
    metadata_leader_epoch: Option<i32>,
    hosted: BTreeMap<TopicPartition, (i32, NodeId)>,
    metadata_caught_up: bool,
}

impl ControllerNode for View {
    fn metadata(&self) -> &ClusterMetadata {
        &self.metadata
    }

    fn controller_id(&self) -> Option<NodeId> {
        self.controller_id
    }

    fn metadata_leader_epoch(&self) -> Option<i32> {
        self.metadata_leader_epoch
    }

    fn hosted_leader(&self, partition: &TopicPartition) -> Option<(i32, NodeId)> {
        self.hosted.get(partition).copied()
    }

    fn metadata_caught_up(&self) -> bool {
        self.metadata_caught_up
    }

    fn led_partitions(&self) -> Vec<(TopicPartition, i32)> {
        self.hosted
            .iter()
            .filter(|(_, (_, leader))| *leader == THIS_NODE)
            .map(|(partition, (epoch, _))| (partition.clone(), *epoch))
            .collect()
    }
}

struct Node {
    controller: Controller,
    view: View,
    log_end: i64,
    /// Every batch appended: (base offset, last offset, bytes).
    log: Vec<(i64, i64, Bytes)>,
    rng: StdRng,
    now_ms: i64,
    /// Replies and messages the node was asked to send.
    sent: Vec<ControllerOutput>,
}

impl Node {
    /// Node 1 of three, leading the metadata log in epoch 1 (the controller).
    fn new() -> Self {
        let this_node = NodeInfo {
            node_id: THIS_NODE,
            host: "localhost".into(),
            port: 9092,
        };
        let config = ControllerConfig {
            this_node,
            voters: vec![1, 2, 3],
            default_partition_count: 2,
            topic_defaults: TopicConfig::default(),
            auto_create_topics: true,
            snapshot_interval_bytes: SNAPSHOT_INTERVAL_BYTES,
            election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS,
        };
        let metadata = ClusterMetadata::new(String::new(), Vec::new());
        let now_ms = 1_000;
        Self {
            controller: Controller::new(config, now_ms),
            view: View {
                metadata,
                controller_id: Some(THIS_NODE),
                metadata_leader_epoch: Some(1),
                hosted: BTreeMap::new(),
                metadata_caught_up: true,
            },
            log_end: 0,
            log: Vec::new(),
            rng: StdRng::seed_from_u64(3),
            now_ms,
            sent: Vec::new(),
        }
    }

    /// Calls the controller, executes what it returned; returns how many batches it
    /// appended.
    fn drive(
        &mut self,
        call: impl FnOnce(&mut Controller, &mut ControllerContext<'_>) -> Vec<ControllerOutput>,
    ) -> usize {
        let mut context = ControllerContext {
            now: Now::aligned(self.now_ms),
            node: &self.view,
            rng: &mut self.rng,
        };
        let outputs = call(&mut self.controller, &mut context);
        let mut appended = 0;
        for output in outputs {
            match output {
                ControllerOutput::Append { batch, write } => {
                    let result = self.view.metadata_leader_epoch.map(|epoch| {
                        let header = crate::batch::validate(&batch).expect("a valid batch");
                        let base_offset = self.log_end;
                        self.log_end += header.offset_count();
                        self.controller
                            .on_appended(&header, base_offset, self.log_end - 1, &batch)
                            .expect("the controller's batches decode");
                        self.log.push((base_offset, self.log_end - 1, batch));
                        appended += 1;
                        (self.log_end, epoch)
                    });
                    let replies = self.controller.appended(write, result);
                    self.sent.extend(replies);
                }
                other => self.sent.push(other),
            }
        }
        appended
    }

    fn admin(&mut self, op: AdminOp) -> usize {
        self.drive(|controller, context| controller.admin_request(context, 9, op))
    }

    /// Commits the whole log, applies it, and releases the answers; returns the topics
    /// the change created or deleted.
    fn commit(&mut self) -> Option<BTreeSet<String>> {
        let changed = self
            .controller
            .apply_committed(&mut self.view.metadata, self.log_end);
        self.release();
        changed
    }

    fn release(&mut self) {
        self.drive(|controller, context| controller.release_admin(context));
    }

    /// The results of the one client answer sent.
    fn answer(&mut self) -> Vec<TopicResult> {
        assert_eq!(self.sent.len(), 1, "{:?}", self.sent);
        match self.sent.remove(0) {
            ControllerOutput::Respond {
                id: 9,
                response:
                    Response::CreateTopics(results)
                    | Response::DeleteTopics(results)
                    | Response::CreatePartitions(results)
                    | Response::AlterConfigs(results),
            } => results,
            other => panic!("{other:?}"),
        }
    }
}

fn create(name: &str, partition_count: i32) -> AdminOp {
    AdminOp::CreateTopics(vec![CreateTopic {
        name: name.into(),
        partition_count,
        replication_factor: -1,
        configs: Vec::new(),
        validate_only: false,
        assignments: Vec::new(),
    }])
}

#[test]
fn a_created_topic_is_a_metadata_record_answered_once_applied() {
    let mut node = Node::new();
    assert_eq!(node.admin(create("orders", 3)), 1, "one batch written");
    assert!(
        node.sent.is_empty(),
        "no answer before the record is applied"
    );
    assert!(!node.view.metadata.topics.contains_key("orders"));
    let changed = node.commit().expect("applied");
    assert!(changed.contains("orders"));
    let topic = node.view.metadata.topics["orders"].clone();
    assert_eq!(topic.partition_count, 3);
    for replicas in &topic.assignments {
        assert_eq!(replicas.len(), 3, "replication factor: min(3, nodes)");
        assert!(replicas.iter().all(|node| [1, 2, 3].contains(node)));
    }
    let results = node.answer();
    assert_eq!(results[0].error, ErrorCode::None);
    assert_eq!(results[0].topic_id, topic.topic_id);
    assert_ne!(topic.topic_id, 0);
}

#[test]
fn a_topic_pending_in_the_log_cannot_be_created_twice() {
    let mut node = Node::new();
    node.admin(create("orders", 3));
    assert_eq!(node.admin(create("orders", 1)), 0, "nothing written");
    assert_eq!(node.answer()[0].error, ErrorCode::TopicAlreadyExists);
    assert_eq!(node.admin(create("bad name!", 1)), 0);
    assert_eq!(node.answer()[0].error, ErrorCode::InvalidTopicException);
    assert_eq!(node.admin(create("huge", PARTITIONS_PER_TOPIC_MAX + 1)), 0);
    assert_eq!(node.answer()[0].error, ErrorCode::InvalidPartitions);
}

#[test]
fn a_deleted_topic_leaves_the_metadata_once_applied() {
    let mut node = Node::new();
    node.admin(create("orders", 1));
    node.commit();
    node.answer();
    assert_eq!(node.admin(AdminOp::DeleteTopics(vec!["orders".into()])), 1);
    assert!(node.view.metadata.topics.contains_key("orders"));
    assert!(node.commit().expect("applied").contains("orders"));
    assert!(!node.view.metadata.topics.contains_key("orders"));
    assert_eq!(node.answer()[0].error, ErrorCode::None);
    assert_eq!(node.admin(AdminOp::DeleteTopics(vec!["orders".into()])), 0);
    assert_eq!(node.answer()[0].error, ErrorCode::UnknownTopicOrPartition);
}

fn grow(name: &str, count: i32, assignments: Option<Vec<Vec<NodeId>>>) -> AdminOp {
    AdminOp::CreatePartitions(vec![CreatePartitions {
        name: name.into(),
        count,
        assignments,
        validate_only: false,
    }])
}

fn alter(name: &str, changes: &[(&str, ConfigOp)], replace: bool) -> AdminOp {
    AdminOp::AlterConfigs(vec![AlterTopicConfigs {
        name: name.into(),
        changes: changes
            .iter()
            .map(|(key, op)| ConfigChange {
                key: key.to_string(),
                op: op.clone(),
            })
            .collect(),
        replace,
        validate_only: false,
    }])
}

fn set(value: &str) -> ConfigOp {
    ConfigOp::Set(value.into())
}

/// A topic `orders` of `partitions` partitions, created and applied.
fn node_with_orders(partitions: i32) -> Node {
    let mut node = Node::new();
    node.admin(create("orders", partitions));
    node.commit();
    node.answer();
    node
}

#[test]
fn partitions_grow_through_the_log_keeping_the_existing_ones_and_never_shrink() {
    let mut node = node_with_orders(2);
    let before = node.view.metadata.topics["orders"].clone();
    for (count, error) in [
        (2, ErrorCode::InvalidPartitions),
        (1, ErrorCode::InvalidPartitions),
        (PARTITIONS_PER_TOPIC_MAX + 1, ErrorCode::InvalidPartitions),
    ] {
        assert_eq!(node.admin(grow("orders", count, None)), 0, "{count}");
        assert_eq!(node.answer()[0].error, error, "{count}");
    }
    assert_eq!(node.admin(grow("missing", 3, None)), 0);
    assert_eq!(node.answer()[0].error, ErrorCode::UnknownTopicOrPartition);
    node.admin(create(crate::group_coordinator::OFFSETS_TOPIC, 2));
    node.commit();
    node.answer();
    let internal = grow(crate::group_coordinator::OFFSETS_TOPIC, 3, None);
    assert_eq!(node.admin(internal), 0);
    assert_eq!(node.answer()[0].error, ErrorCode::InvalidRequest);
    let mut validate_only = grow("orders", 4, None);
    if let AdminOp::CreatePartitions(topics) = &mut validate_only {
        topics[0].validate_only = true;
    }
    assert_eq!(node.admin(validate_only), 0, "validate_only writes nothing");
    assert_eq!(node.answer()[0].error, ErrorCode::None);

    assert_eq!(node.admin(grow("orders", 4, None)), 1);
    // The pending growth counts: growing to 4 again is refused before it is applied.
    assert_eq!(node.admin(grow("orders", 4, None)), 0);
    assert_eq!(node.answer()[0].error, ErrorCode::InvalidPartitions);
    let changed = node.commit().expect("applied");
    assert!(changed.contains("orders"));
    assert_eq!(node.answer()[0].error, ErrorCode::None);
    let after = node.view.metadata.topics["orders"].clone();
    assert_eq!(after.partition_count, 4);
    assert_eq!(after.topic_id, before.topic_id);
    assert_eq!(after.assignments[..2], before.assignments[..]);
    assert!(after.assignments[2..]
        .iter()
        .all(|replicas| replicas.len() == 3));
}

#[test]
fn explicit_assignments_of_new_partitions_are_checked_like_kafka() {
    let mut node = node_with_orders(1);
    for bad in [
        vec![vec![1, 2]],                   // replication factor 2, the topic's is 3
        vec![vec![1, 2, 9]],                // no node 9
        vec![vec![1, 1, 2]],                // a duplicate replica
        vec![vec![1, 2, 3], vec![2, 3, 1]], // two assignments for one new partition
    ] {
        assert_eq!(node.admin(grow("orders", 2, Some(bad.clone()))), 0);
        assert_eq!(
            node.answer()[0].error,
            ErrorCode::InvalidReplicaAssignment,
            "{bad:?}"
        );
    }
    assert_eq!(node.admin(grow("orders", 2, Some(vec![vec![3, 1, 2]]))), 1);
    node.commit();
    assert_eq!(node.answer()[0].error, ErrorCode::None);
    assert_eq!(
        node.view.metadata.topics["orders"].assignments[1],
        vec![3, 1, 2]
    );
}

#[test]
fn a_topic_created_with_a_replica_assignment_has_exactly_those_replicas() {
    let mut node = Node::new();
    let with = |assignments: Vec<(i32, Vec<NodeId>)>, partitions: i32| {
        AdminOp::CreateTopics(vec![CreateTopic {
            name: "placed".into(),
            partition_count: partitions,
            replication_factor: -1,
            configs: Vec::new(),
            validate_only: false,
            assignments,
        }])
    };
    for (bad, partitions, error) in [
        (vec![(0, vec![1])], 1, ErrorCode::InvalidRequest),
        (
            vec![(0, vec![1]), (2, vec![2])],
            -1,
            ErrorCode::InvalidReplicaAssignment,
        ),
        (
            vec![(0, vec![1, 2]), (1, vec![2])],
            -1,
            ErrorCode::InvalidReplicaAssignment,
        ),
        (vec![(0, vec![4])], -1, ErrorCode::InvalidReplicaAssignment),
        (
            vec![(0, vec![2, 2])],
            -1,
            ErrorCode::InvalidReplicaAssignment,
        ),
    ] {
        assert_eq!(node.admin(with(bad.clone(), partitions)), 0);
        assert_eq!(node.answer()[0].error, error, "{bad:?}");
    }
    assert_eq!(
        node.admin(with(vec![(1, vec![3, 1]), (0, vec![2, 3])], -1)),
        1
    );
    node.commit();
    let result = node.answer().remove(0);
    assert_eq!(result.error, ErrorCode::None);
    assert_eq!((result.partition_count, result.replication_factor), (2, 2));
    let topic = &node.view.metadata.topics["placed"];
    assert_eq!(topic.assignments, vec![vec![2, 3], vec![3, 1]]);
}

#[test]
fn config_changes_go_through_the_log_with_kafkas_errors() {
    let mut node = node_with_orders(1);
    let defaults = TopicConfig::default();
    assert_eq!(
        node.admin(alter(
            "orders",
            &[
                ("retention.ms", set("1000")),
                ("min.insync.replicas", set("2"))
            ],
            false
        )),
        1
    );
    assert!(node.sent.is_empty(), "answered once applied");
    node.commit();
    assert_eq!(node.answer()[0].error, ErrorCode::None);
    let config = node.view.metadata.topics["orders"].config.clone();
    assert_eq!((config.retention_ms, config.min_insync_replicas), (1000, 2));
    let entries = config.entries(&defaults);
    let entry = |key: &str| entries.iter().find(|entry| entry.0 == key).unwrap().clone();
    assert_eq!(entry("retention.ms"), ("retention.ms", "1000".into(), true));
    assert!(!entry("segment.bytes").2, "a default");

    // Incremental: DELETE goes back to the default, other keys stay.
    node.admin(alter(
        "orders",
        &[("retention.ms", ConfigOp::Delete)],
        false,
    ));
    node.commit();
    node.answer();
    let config = node.view.metadata.topics["orders"].config.clone();
    assert_eq!(
        (config.retention_ms, config.min_insync_replicas),
        (defaults.retention_ms, 2)
    );

    // Whole replacement: keys not named go back to their defaults.
    node.admin(alter("orders", &[("compression.type", set("gzip"))], true));
    node.commit();
    node.answer();
    let config = node.view.metadata.topics["orders"].config.clone();
    assert_eq!(config.min_insync_replicas, 1);
    assert_eq!(config.compression_type, CompressionType::Gzip);
    assert_eq!(
        config.overrides,
        BTreeSet::from(["compression.type".to_string()])
    );

    for (changes, error) in [
        (
            vec![("retention.ms", ConfigOp::Append("5".into()))],
            ErrorCode::InvalidConfig,
        ),
        (vec![("no.such.key", set("1"))], ErrorCode::InvalidConfig),
        (
            vec![("min.insync.replicas", set("0"))],
            ErrorCode::InvalidConfig,
        ),
        (
            vec![("compression.type", set("brotli"))],
            ErrorCode::InvalidConfig,
        ),
        (vec![("segment.bytes", set("10"))], ErrorCode::InvalidConfig),
        (
            vec![("retention.ms", set("1")), ("retention.ms", set("2"))],
            ErrorCode::InvalidRequest,
        ),
    ] {
        assert_eq!(
            node.admin(alter("orders", &changes, false)),
            0,
            "{changes:?}"
        );
        assert_eq!(node.answer()[0].error, error, "{changes:?}");
    }
    // DELETE of a key no topic has: nothing changes, and Kafka's controller answers
    // success (it writes no record for a value that stays unset).
    assert_eq!(
        node.admin(alter("orders", &[("no.such.key", ConfigOp::Delete)], false)),
        0
    );
    assert_eq!(node.answer()[0].error, ErrorCode::None);
    assert_eq!(
        node.admin(alter("missing", &[("retention.ms", set("1"))], false)),
        0
    );
    assert_eq!(node.answer()[0].error, ErrorCode::UnknownTopicOrPartition);
    // APPEND to a list key works as Kafka's does (a value already there is not repeated).
    node.admin(alter(
        "orders",
        &[("cleanup.policy", ConfigOp::Append("delete".into()))],
        false,
    ));
    node.commit();
    assert_eq!(node.answer()[0].error, ErrorCode::None);
}

#[test]
fn a_snapshot_restates_grown_partitions_and_changed_configs() {
    let mut node = node_with_orders(1);
    node.admin(grow("orders", 3, None));
    node.admin(alter(
        "orders",
        &[("max.message.bytes", set("5000"))],
        false,
    ));
    node.commit();
    let view = node.view.metadata.clone();
    let mut rebuilt = ClusterMetadata::default();
    for record in view.snapshot_records() {
        rebuilt.apply(&record).unwrap();
    }
    assert!(rebuilt.same_replicated_view(&view));
    assert_eq!(rebuilt.topics["orders"].partition_count, 3);
    assert_eq!(rebuilt.topics["orders"].config.max_message_bytes, 5000);
}

#[test]
fn a_change_is_refused_when_the_controller_loses_the_log_before_its_commit() {
    let mut node = Node::new();
    node.admin(create("orders", 1));
    node.view.metadata_leader_epoch = None;
    node.view.controller_id = Some(2);
    node.release();
    assert_eq!(node.answer()[0].error, ErrorCode::NotController);
}

#[test]
fn another_node_forwards_admin_requests_to_the_controller() {
    let mut node = Node::new();
    node.view.controller_id = Some(2);
    node.view.metadata_leader_epoch = None;
    assert_eq!(node.admin(create("orders", 1)), 0);
    let forward_id = match node.sent.remove(0) {
        ControllerOutput::Send {
            to: 2,
            message: PeerMessage::Forward { id, op },
        } => {
            assert_eq!(op, create("orders", 1));
            id
        }
        other => panic!("{other:?}"),
    };
    // The controller's answer is the client's.
    let mut result = TopicResult::empty("orders");
    result.topic_id = 7;
    let replies = node
        .controller
        .on_forwarded(forward_id, vec![result.clone()]);
    node.sent.extend(replies);
    assert_eq!(node.answer(), vec![result]);
    // Unanswered, a forwarded request times out.
    node.admin(create("later", 1));
    node.sent.clear();
    node.now_ms += FORWARD_TIMEOUT_MS;
    node.release();
    assert_eq!(node.answer()[0].error, ErrorCode::RequestTimedOut);
}

#[test]
fn without_a_controller_an_admin_request_waits_for_one_to_be_elected() {
    let mut node = Node::new();
    node.view.controller_id = None;
    node.view.metadata_leader_epoch = None;
    assert_eq!(node.admin(create("orders", 1)), 0);
    node.release();
    assert!(node.sent.is_empty(), "{:?}", node.sent);
    assert!(node
        .controller
        .next_wakeup_ms(true)
        .is_some_and(|at| at <= node.now_ms + FORWARD_TIMEOUT_MS));
    // This node is elected: the request runs here and is answered once committed.
    node.view.controller_id = Some(THIS_NODE);
    node.view.metadata_leader_epoch = Some(1);
    assert_eq!(
        node.drive(|controller, context| controller.release_admin(context)),
        1
    );
    assert!(node.sent.is_empty(), "{:?}", node.sent);
    node.commit().expect("applied");
    assert_eq!(node.answer()[0].error, ErrorCode::None);
    assert!(node.view.metadata.topics.contains_key("orders"));
}

#[test]
fn a_request_waiting_for_a_controller_is_forwarded_once_another_node_is_elected() {
    let mut node = Node::new();
    node.view.controller_id = None;
    node.view.metadata_leader_epoch = None;
    node.admin(create("orders", 1));
    node.view.controller_id = Some(2);
    node.release();
    match node.sent.remove(0) {
        ControllerOutput::Send {
            to: 2,
            message: PeerMessage::Forward { op, .. },
        } => assert_eq!(op, create("orders", 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_wait_for_a_controller_is_bounded_in_time_and_in_number() {
    let mut node = Node::new();
    node.view.controller_id = None;
    node.view.metadata_leader_epoch = None;
    for _ in 0..CONTROLLERLESS_WAITING_MAX {
        node.admin(create("orders", 1));
    }
    assert!(node.sent.is_empty());
    // One too many is refused at once, with an error clients retry.
    node.admin(create("orders", 1));
    assert_eq!(node.answer()[0].error, ErrorCode::NotController);
    node.now_ms += FORWARD_TIMEOUT_MS - 1;
    node.release();
    assert!(node.sent.is_empty());
    node.now_ms += 1;
    node.release();
    assert_eq!(node.sent.len(), CONTROLLERLESS_WAITING_MAX);
    for sent in std::mem::take(&mut node.sent) {
        node.sent.push(sent);
        assert_eq!(node.answer()[0].error, ErrorCode::NotController);
    }
}

#[test]
fn a_forward_reaching_a_node_that_is_not_the_controller_is_answered_not_controller() {
    let mut node = Node::new();
    node.view.controller_id = Some(3);
    let written =
        node.drive(|controller, context| controller.on_forward(context, 2, 5, create("orders", 1)));
    assert_eq!(written, 0);
    match node.sent.remove(0) {
        ControllerOutput::Send {
            to: 2,
            message: PeerMessage::Forwarded { id: 5, results },
        } => assert_eq!(results[0].error, ErrorCode::NotController),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_controller_names_the_cluster_and_registers_itself() {
    let mut node = Node::new();
    let written = node.drive(|controller, context| controller.tick(context));
    assert_eq!(written, 2, "InitCluster, then this node's registration");
    node.commit();
    assert!(node.view.metadata.cluster_id.starts_with("myelin-"));
    assert!(node.controller.is_registered(&node.view.metadata));
    // Registered and named: later ticks write nothing.
    node.now_ms += REGISTER_RETRY_MS;
    assert_eq!(
        node.drive(|controller, context| controller.tick(context)),
        0
    );
}

#[test]
fn an_unregistered_node_asks_the_controller_to_register_it() {
    let mut node = Node::new();
    node.view.controller_id = Some(2);
    node.view.metadata_leader_epoch = None;
    node.drive(|controller, context| controller.tick(context));
    let forwarded = node.sent.iter().any(|output| {
        matches!(output, ControllerOutput::Send {
            to: 2,
            message: PeerMessage::Forward { id: UNANSWERED, op: AdminOp::RegisterNode(info) },
        } if info.node_id == THIS_NODE)
    });
    assert!(forwarded, "{:?}", node.sent);
}

#[test]
fn metadata_names_an_announced_leader_only_while_it_is_live() {
    let mut node = Node::new();
    node.admin(create("orders", 1));
    node.commit();
    node.sent.clear();
    node.controller.heard_from(2, node.now_ms);
    node.controller
        .learn_leaders(2, vec![(TopicPartition::new("orders", 0), 4)]);
    let leader = |node: &mut Node| {
        let mut context = ControllerContext {
            now: Now::aligned(node.now_ms),
            node: &node.view,
            rng: &mut node.rng,
        };
        match node
            .controller
            .metadata_request(&mut context, Some(vec!["orders".into()]), false)
        {
            (Response::Metadata { topics, .. }, _) => {
                let partition = &topics[0].partitions[0];
                (partition.error, partition.leader, partition.leader_epoch)
            }
            (other, _) => panic!("{other:?}"),
        }
    };
    assert_eq!(leader(&mut node), (ErrorCode::None, 2, 4));
    node.now_ms += NODE_LIVENESS_MS + 1;
    assert_eq!(leader(&mut node).0, ErrorCode::LeaderNotAvailable);
}

#[test]
fn metadata_of_an_unknown_topic_asks_for_its_creation() {
    let mut node = Node::new();
    let mut context = ControllerContext {
        now: Now::aligned(node.now_ms),
        node: &node.view,
        rng: &mut node.rng,
    };
    let (response, outputs) =
        node.controller
            .metadata_request(&mut context, Some(vec!["fresh".into()]), true);
    match response {
        Response::Metadata { topics, .. } => {
            assert_eq!(topics[0].error, ErrorCode::LeaderNotAvailable)
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        outputs.as_slice(),
        [ControllerOutput::Append { .. }]
    ));
}

#[test]
fn a_metadata_batch_that_does_not_decode_is_corrupt_data_never_skipped() {
    let mut node = Node::new();
    let garbage = crate::batch::test_batches::batch(1, 0, -1, -1, -1);
    let header = crate::batch::validate(&garbage).expect("a valid batch");
    let corrupt = node
        .controller
        .on_appended(&header, 4, 4, &garbage)
        .expect_err("not metadata records");
    assert_eq!(
        (corrupt.partition, corrupt.offset),
        (metadata_partition(), 4)
    );
    assert_eq!(node.controller.pending_records().count(), 0);
}

// ----- snapshots -----

/// A controller named, registered, with topics `a` to `f` created and applied: enough
/// appended for a snapshot to be due.
fn controller_with_topics() -> Node {
    let mut node = Node::new();
    node.drive(|controller, context| controller.tick(context));
    node.commit();
    for name in ["a", "b", "c", "d", "e", "f"] {
        node.admin(create(name, 2));
        node.commit();
    }
    node.sent.clear();
    node
}

/// A controller's tick: the records of the batches it appended.
fn tick_records(node: &mut Node) -> Vec<MetadataRecord> {
    let before = node.log.len();
    node.now_ms += ANNOUNCE_INTERVAL_MS;
    node.drive(|controller, context| controller.tick(context));
    node.log[before..]
        .iter()
        .flat_map(|(_, _, batch)| {
            let header = crate::batch::validate(batch).expect("a valid batch");
            decode_json_records::<MetadataRecord>(&header, batch).expect("metadata records")
        })
        .collect()
}

/// Another node's controller (node 2, a follower) with the view `metadata`.
fn follower(metadata: ClusterMetadata) -> (Controller, ClusterMetadata) {
    let config = ControllerConfig {
        this_node: NodeInfo {
            node_id: 2,
            host: "localhost".into(),
            port: 9093,
        },
        voters: vec![1, 2, 3],
        default_partition_count: 2,
        topic_defaults: TopicConfig::default(),
        auto_create_topics: true,
        snapshot_interval_bytes: SNAPSHOT_INTERVAL_BYTES,
        election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS,
    };
    (Controller::new(config, 0), metadata)
}

/// Appends `batches` to `controller`'s log.
fn feed(controller: &mut Controller, batches: &[(i64, i64, Bytes)]) {
    for (base, last, batch) in batches {
        let header = crate::batch::validate(batch).expect("a valid batch");
        controller
            .on_appended(&header, *base, *last, batch)
            .expect("metadata records");
    }
}

#[test]
fn the_controller_snapshots_its_committed_view_only_when_quiescent() {
    let mut node = controller_with_topics();
    // A change appended but not committed: not quiescent, no snapshot.
    node.admin(create("pending", 1));
    assert!(tick_records(&mut node).is_empty());
    node.commit();
    let start = node.log_end;
    let records = tick_records(&mut node);
    assert_eq!(records, node.view.metadata.snapshot_records());
    assert!(records.len() > 8, "the whole view: {records:?}");
    assert_eq!(node.controller.last_snapshot(), None, "not applied yet");
    let before = node.view.metadata.clone();
    assert_eq!(
        node.commit(),
        Some(BTreeSet::new()),
        "applied, nothing changed"
    );
    assert!(node.view.metadata.same_replicated_view(&before));
    assert_eq!(node.view.metadata.applied_end_offset, node.log_end);
    assert_eq!(node.controller.last_snapshot(), Some(start));
    // The next one waits for the interval (and twice the last snapshot) appended again.
    assert!(tick_records(&mut node).is_empty());
}

#[test]
fn a_follower_behind_the_log_start_takes_its_view_from_a_complete_snapshot_and_drops_a_partial_one()
{
    let mut leader = controller_with_topics();
    let mut stale = leader.view.metadata.clone();
    stale.topics.remove("a");
    stale.topics.remove("b");
    stale.applied_end_offset = 3;
    leader.admin(AdminOp::DeleteTopics(vec!["c".into()]));
    leader.commit();
    let log_start = leader.log_end;
    tick_records(&mut leader);
    leader.commit();
    let snapshot = leader.log.split_off(
        leader
            .log
            .iter()
            .position(|(base, _, _)| *base == log_start)
            .expect("the snapshot's first batch"),
    );
    let (mut controller, mut view) = follower(stale.clone());
    controller.restart_log(&view, log_start);
    assert!(controller.check_servable().is_err(), "not whole");
    // A partial snapshot (its end lost) and a record outside any snapshot: not applied.
    let partial_start = encode_metadata_batch(&[MetadataRecord::SnapshotStart], 0);
    let stray = encode_metadata_batch(&[MetadataRecord::DeleteTopic { name: "d".into() }], 0);
    feed(
        &mut controller,
        &[
            (log_start, log_start, partial_start),
            (log_start + 1, log_start + 1, stray),
        ],
    );
    let shifted: Vec<(i64, i64, Bytes)> = snapshot
        .iter()
        .map(|(base, last, batch)| (base + 2, last + 2, batch.clone()))
        .collect();
    // Up to the snapshot's last batch: nothing applied, the view unchanged.
    feed(&mut controller, &shifted);
    let end = shifted.last().expect("a batch").1 + 1;
    assert_eq!(controller.apply_committed(&mut view, end - 1), None);
    assert_eq!(view, stale);
    let changed = controller.apply_committed(&mut view, end).expect("applied");
    assert!(view.same_replicated_view(&leader.view.metadata));
    assert!(
        view.topics.contains_key("d"),
        "the stray delete was dropped"
    );
    assert_eq!(
        changed,
        BTreeSet::from(["a".to_string(), "b".to_string(), "c".to_string()])
    );
    assert_eq!(view.applied_end_offset, end);
    assert_eq!(view.producer_id_block_end, stale.producer_id_block_end);
    assert_eq!(controller.last_snapshot(), Some(log_start + 2));
    controller
        .check_servable()
        .expect("whole from its log start");
}

#[test]
fn a_restart_replays_the_trimmed_log_from_its_snapshot() {
    let mut leader = controller_with_topics();
    let log_start = leader.log_end;
    tick_records(&mut leader);
    leader.commit();
    leader.admin(create("after", 1));
    leader.commit();
    let stored = crate::internal_log::stored_log_from(&leader.log, log_start);
    // The persisted view lost (a fresh view): the log from its snapshot on rebuilds it.
    let (mut controller, mut view) = follower(ClusterMetadata::default());
    controller
        .replay_recovered(&view, &stored, log_start)
        .expect("decodes");
    controller.apply_committed(&mut view, leader.log_end);
    assert!(view.same_replicated_view(&leader.view.metadata));
    assert!(view.topics.contains_key("after"));
    controller.check_servable().expect("whole");
    // The persisted view whole past the log start: replay resumes at its applied end.
    let mut persisted = leader.view.metadata.clone();
    persisted.applied_end_offset = leader.log[leader.log.len() - 1].0;
    persisted.topics.remove("after");
    let (mut controller, mut view) = follower(persisted);
    controller
        .replay_recovered(&view, &stored, log_start)
        .expect("decodes");
    controller
        .check_servable()
        .expect("whole below its applied end");
    assert_eq!(
        controller.apply_committed(&mut view, leader.log_end),
        Some(BTreeSet::from(["after".to_string()]))
    );
    assert!(view.same_replicated_view(&leader.view.metadata));
}

#[test]
fn a_view_without_a_complete_snapshot_from_its_log_start_is_never_served() {
    let mut leader = controller_with_topics();
    let log_start = leader.log_end;
    // A view named and registered, persisted below the log's start.
    let mut stale = leader.view.metadata.clone();
    stale.applied_end_offset = log_start - 1;
    leader.admin(create("after", 1));
    leader.commit();
    let stored = crate::internal_log::stored_log(&leader.log[leader.log.len() - 1..], 0);
    let mut node = Node::new();
    node.view.metadata = stale;
    node.controller
        .replay_recovered(&node.view.metadata, &stored, log_start)
        .expect("decodes");
    assert_eq!(
        node.controller
            .apply_committed(&mut node.view.metadata, leader.log_end),
        None
    );
    let corrupt = node.controller.check_servable().expect_err("not whole");
    assert_eq!(
        (corrupt.partition, corrupt.offset),
        (metadata_partition(), log_start)
    );
    assert_eq!(node.admin(create("x", 1)), 0, "nothing written");
    assert_eq!(node.answer()[0].error, ErrorCode::NotController);
    assert!(
        tick_records(&mut node).is_empty(),
        "no snapshot of a partial view"
    );
}
