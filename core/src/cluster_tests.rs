//! Brokers of one cluster wired together in memory: peer messages are delivered by the test,
//! storage is a byte buffer per segment, and every append is synced at the end of a round.
//! These tests follow a request through forwarding, replication, failover and catch-up; the
//! simulator runs the same code under faults at scale.

use crate::api::*;
use crate::batch::{read_header, test_batches};
use crate::broker::Broker;
use crate::metadata::{ClusterMetadata, TopicPartition};
use crate::replication::{NodeId, Records, ReplicaState, ReplicationMessage};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

const START: i64 = 1_000_000;
const ROUND_MS: i64 = 10;
/// A produce's timeout, as clients send it (librdkafka's default request timeout).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// One node's disk: segment bytes, the replica states and the metadata snapshot.
#[derive(Default, Clone)]
struct Disk {
    segments: BTreeMap<TopicPartition, BTreeMap<i64, Vec<u8>>>,
    replica_states: BTreeMap<TopicPartition, ReplicaState>,
    metadata: Option<ClusterMetadata>,
    deleted_below: BTreeMap<TopicPartition, i64>,
}

impl Disk {
    fn apply(&mut self, command: &StorageCommand) {
        match command {
            // A restarted log is a new partition's: one empty segment, its old ones gone.
            StorageCommand::CreatePartition {
                partition,
                base_offset,
            }
            | StorageCommand::RestartLog {
                partition,
                base_offset,
            } => {
                self.segments.insert(
                    partition.clone(),
                    BTreeMap::from([(*base_offset, Vec::new())]),
                );
            }
            StorageCommand::DeletePartition { partition } => {
                self.segments.remove(partition);
                self.replica_states.remove(partition);
                self.deleted_below.remove(partition);
            }
            StorageCommand::PersistDeletedBelow { partition, offset } => {
                self.deleted_below.insert(partition.clone(), *offset);
            }
            StorageCommand::Append {
                partition,
                batch,
                bytes,
                ..
            } => {
                let segment = self
                    .segments
                    .entry(partition.clone())
                    .or_default()
                    .entry(batch.segment_base_offset)
                    .or_default();
                assert_eq!(segment.len(), batch.position as usize, "appends are dense");
                let mut patched = bytes.to_vec();
                patched[..8].copy_from_slice(&batch.base_offset.to_be_bytes());
                patched[12..16].copy_from_slice(&batch.leader_epoch.to_be_bytes());
                segment.extend_from_slice(&patched);
            }
            StorageCommand::RollSegment {
                partition,
                base_offset,
            } => {
                self.segments
                    .entry(partition.clone())
                    .or_default()
                    .insert(*base_offset, Vec::new());
            }
            StorageCommand::DeleteSegment {
                partition,
                base_offset,
            } => {
                if let Some(segments) = self.segments.get_mut(partition) {
                    segments.remove(base_offset);
                }
            }
            StorageCommand::Truncate {
                partition,
                truncation,
            } => {
                let segments = self.segments.entry(partition.clone()).or_default();
                for base in &truncation.deleted_segments {
                    segments.remove(base);
                }
                if let Some(active) = segments.get_mut(&truncation.active_segment_base) {
                    active.truncate(truncation.active_segment_bytes as usize);
                }
            }
            StorageCommand::PersistReplicaState { partition, state } => {
                self.replica_states.insert(partition.clone(), *state);
            }
            StorageCommand::PersistMetadata(metadata) => self.metadata = Some((**metadata).clone()),
        }
    }

    fn read(&self, partition: &TopicPartition, chunk: &ReadChunk) -> Bytes {
        let segment = &self.segments[partition][&chunk.segment_base_offset];
        let start = chunk.position as usize;
        Bytes::copy_from_slice(&segment[start..start + chunk.length as usize])
    }

    /// What storage recovery would report.
    fn recovery(&self) -> Recovery {
        let mut partitions = Vec::new();
        let mut internal_logs: BTreeMap<TopicPartition, Vec<u8>> = BTreeMap::new();
        for (partition, segments) in &self.segments {
            let mut recovered_segments = Vec::new();
            for (base, bytes) in segments {
                let mut batches = Vec::new();
                let mut position = 0usize;
                while position < bytes.len() {
                    let header = read_header(&bytes[position..]).expect("a stored batch");
                    let size = header.size_bytes as usize;
                    if crate::broker::is_internal_topic(&partition.topic) {
                        internal_logs
                            .entry(partition.clone())
                            .or_default()
                            .extend_from_slice(&bytes[position..position + size]);
                    }
                    batches.push(RecoveredBatch {
                        position: position as u32,
                        header,
                        control_type: crate::records::control_record_type(
                            &bytes[position..position + size],
                        ),
                    });
                    position += size;
                }
                recovered_segments.push(RecoveredSegment {
                    base_offset: *base,
                    batches,
                });
            }
            partitions.push(RecoveredPartition {
                partition: partition.clone(),
                segments: recovered_segments,
                replica_state: self.replica_states.get(partition).copied(),
                deleted_below: self.deleted_below.get(partition).copied(),
            });
        }
        Recovery {
            metadata: self.metadata.clone(),
            partitions,
            internal_logs: internal_logs
                .into_iter()
                .map(|(partition, bytes)| (partition, Bytes::from(bytes)))
                .collect(),
        }
    }
}

struct Cluster {
    voters: Vec<NodeId>,
    /// Applied to every node's configuration.
    adjust: fn(&mut BrokerConfig),
    brokers: BTreeMap<NodeId, Broker>,
    disks: BTreeMap<NodeId, Disk>,
    /// Highest append sequence issued per node, synced at the end of each round.
    appended: BTreeMap<NodeId, u64>,
    in_flight: Vec<(NodeId, NodeId, PeerMessage)>,
    responses: BTreeMap<(NodeId, RequestId), Response>,
    /// Monotonic milliseconds, the same on every node.
    now: i64,
    /// How far each node's wall clock is stepped away from `now` (none: not at all).
    wall_steps_ms: BTreeMap<NodeId, i64>,
    next_request: RequestId,
}

fn config(node_id: NodeId, voters: &[NodeId]) -> BrokerConfig {
    BrokerConfig {
        node_id,
        advertised_port: 9000 + node_id,
        voters: voters.to_vec(),
        // Groups form at once, as the tests' schedules were written for.
        group_initial_rebalance_delay_ms: 0,
        ..BrokerConfig::default()
    }
}

impl Cluster {
    fn new(size: i32) -> Self {
        Self::with_config(size, |_| {})
    }

    fn with_config(size: i32, adjust: fn(&mut BrokerConfig)) -> Self {
        let voters: Vec<NodeId> = (1..=size).collect();
        let mut cluster = Self {
            voters: voters.clone(),
            adjust,
            brokers: BTreeMap::new(),
            disks: BTreeMap::new(),
            appended: BTreeMap::new(),
            in_flight: Vec::new(),
            responses: BTreeMap::new(),
            now: START,
            wall_steps_ms: BTreeMap::new(),
            next_request: 1,
        };
        for node in voters {
            cluster.start(node);
        }
        cluster
    }

    fn start(&mut self, node: NodeId) {
        let recovery = self.disks.entry(node).or_default().recovery();
        let mut config = config(node, &self.voters);
        (self.adjust)(&mut config);
        let (broker, outputs) = Broker::new(config, recovery, node as u64, self.now_at(node));
        self.brokers.insert(node, broker);
        self.execute(node, outputs);
    }

    /// Stops a node; its unsynced appends are lost with it (each round syncs everything,
    /// so nothing is unsynced between rounds).
    fn crash(&mut self, node: NodeId) {
        self.brokers.remove(&node);
        self.in_flight
            .retain(|(from, to, _)| *from != node && *to != node);
    }

    fn execute(&mut self, node: NodeId, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::FailStop(corrupt) => panic!("node {node} stopped: {corrupt}"),
                Output::Storage(command) => {
                    if let StorageCommand::Append { sequence, .. } = &command {
                        self.appended.insert(node, *sequence);
                    }
                    self.disks.entry(node).or_default().apply(&command);
                }
                Output::Respond { id, response } => {
                    self.responses.insert((node, id), response);
                }
                Output::Send { to, mut message } => {
                    if let PeerMessage::Replication {
                        partition,
                        message: ReplicationMessage::Append { records, .. },
                    } = &mut message
                    {
                        if let Records::Stored(chunks) = records {
                            let disk = &self.disks[&node];
                            let mut bytes = Vec::new();
                            for chunk in chunks.iter() {
                                bytes.extend_from_slice(&disk.read(partition, chunk));
                            }
                            *records = Records::Inline(Bytes::from(bytes));
                        }
                    }
                    self.in_flight.push((node, to, message));
                }
            }
        }
    }

    /// What node `node`'s clocks read now.
    fn now_at(&self, node: NodeId) -> Now {
        Now {
            monotonic_ms: self.now,
            wall_ms: self.now + self.wall_steps_ms.get(&node).copied().unwrap_or(0),
        }
    }

    fn step(&mut self, node: NodeId, input: Input) {
        let now = self.now_at(node);
        if let Some(broker) = self.brokers.get_mut(&node) {
            let outputs = broker.step(now, input);
            self.execute(node, outputs);
        }
    }

    /// One round: deliver what is in flight, sync every node, tick every node.
    fn round(&mut self) {
        self.now += ROUND_MS;
        for (from, to, message) in std::mem::take(&mut self.in_flight) {
            self.step(to, Input::Peer { from, message });
        }
        let nodes: Vec<NodeId> = self.brokers.keys().copied().collect();
        for node in nodes {
            if let Some(sequence) = self.appended.get(&node).copied() {
                self.step(
                    node,
                    Input::Synced {
                        through_sequence: sequence,
                    },
                );
            }
            self.step(node, Input::Tick);
        }
    }

    fn run_until(&mut self, what: &str, mut done: impl FnMut(&Cluster) -> bool) {
        for _ in 0..1000 {
            if done(self) {
                return;
            }
            self.round();
        }
        panic!("{what}: not reached within 10 simulated seconds");
    }

    fn request(&mut self, node: NodeId, request: Request) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.step(node, Input::Request { id, request });
        id
    }

    /// Sends a request and runs rounds until it is answered.
    fn call(&mut self, node: NodeId, request: Request) -> Response {
        let id = self.request(node, request);
        self.run_until("an answer", |cluster| {
            cluster.responses.contains_key(&(node, id))
        });
        self.responses.remove(&(node, id)).expect("answered")
    }

    /// Runs until every node knows the controller; returns it.
    fn wait_for_controller(&mut self) -> NodeId {
        self.run_until("a controller known to all", |cluster| {
            cluster
                .brokers
                .values()
                .all(|broker| broker.controller_id().is_some())
        });
        self.brokers[&1].controller_id().expect("a controller")
    }

    /// The first voter other than `node`.
    fn another_voter(&self, node: NodeId) -> NodeId {
        self.voters
            .iter()
            .copied()
            .find(|voter| *voter != node)
            .expect("another voter")
    }

    fn leader_of(&self, partition: &TopicPartition) -> Option<NodeId> {
        self.brokers
            .iter()
            .find(|(_, broker)| {
                broker
                    .partition_leadership(partition)
                    .is_some_and(|(_, leading)| leading)
            })
            .map(|(node, _)| *node)
    }
}

fn create_request(name: &str, partitions: i32, replication_factor: i16) -> Request {
    Request::CreateTopics {
        topics: vec![CreateTopic {
            name: name.into(),
            partition_count: partitions,
            replication_factor,
            configs: Vec::new(),
            validate_only: false,
            assignments: Vec::new(),
        }],
    }
}

fn produce(partition: &TopicPartition, records: i32) -> Request {
    Request::Produce {
        acks: Acks::All,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        transactional_id: None,
        partitions: vec![ProducePartition {
            partition: partition.clone(),
            records: test_batches::plain(records, START),
        }],
    }
}

fn fetch(partition: &TopicPartition, offset: i64, current_leader_epoch: i32) -> Request {
    Request::Fetch {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 1 << 20,
        isolation: Isolation::ReadCommitted,
        partitions: vec![FetchPartition {
            partition: partition.clone(),
            fetch_offset: offset,
            partition_max_bytes: 1 << 20,
            current_leader_epoch,
        }],
    }
}

fn produce_result(response: &Response) -> &ProducePartitionResult {
    match response {
        Response::Produce(results) => &results[0],
        other => panic!("expected a produce response, got {other:?}"),
    }
}

#[test]
fn a_three_node_cluster_replicates_fails_over_and_catches_up() {
    let mut cluster = Cluster::new(3);
    let controller = cluster.wait_for_controller();
    let other = cluster
        .voters
        .iter()
        .copied()
        .find(|n| *n != controller)
        .unwrap();

    // CreateTopics sent to a node that is not the controller is forwarded to it.
    match cluster.call(other, create_request("orders", 2, -1)) {
        Response::CreateTopics(results) => {
            assert_eq!(results[0].error, ErrorCode::None, "{results:?}");
            assert_eq!(results[0].replication_factor, 3);
        }
        other => panic!("{other:?}"),
    }
    let partition = TopicPartition::new("orders", 0);
    cluster.run_until("a partition leader", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let leader = cluster.leader_of(&partition).unwrap();
    let follower = cluster
        .voters
        .iter()
        .copied()
        .find(|n| *n != leader)
        .unwrap();

    // Every node lists every node and names the leader.
    cluster.run_until("leaders announced", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.metadata().nodes.len() == 3)
    });
    for node in cluster.voters.clone() {
        match cluster.call(
            node,
            Request::Metadata {
                topics: Some(vec!["orders".into()]),
                allow_auto_create: false,
            },
        ) {
            Response::Metadata { nodes, topics, .. } => {
                assert_eq!(nodes.len(), 3);
                let info = &topics[0].partitions[0];
                assert_eq!(
                    (info.leader, info.replicas.len()),
                    (leader, 3),
                    "node {node}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    // Only the leader takes writes; acks=all is answered once a majority holds the batch.
    let refused = cluster.call(follower, produce(&partition, 1));
    assert_eq!(
        produce_result(&refused).error,
        ErrorCode::NotLeaderOrFollower
    );
    let first = cluster.call(leader, produce(&partition, 3));
    assert_eq!(produce_result(&first).error, ErrorCode::None);
    let first_offset = produce_result(&first).base_offset;
    let replicated = cluster
        .brokers
        .values()
        .filter(|broker| {
            broker
                .partition_offsets(&partition)
                .is_some_and(|(_, _, end)| end >= first_offset + 3)
        })
        .count();
    assert!(replicated >= 2, "acknowledged on a majority");

    // The leader crashes: another takes over with the acknowledged batch.
    cluster.crash(leader);
    cluster.run_until("a new leader", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let new_leader = cluster.leader_of(&partition).unwrap();
    assert_ne!(new_leader, leader);
    let second = cluster.call(new_leader, produce(&partition, 2));
    assert_eq!(produce_result(&second).error, ErrorCode::None);
    let second_offset = produce_result(&second).base_offset;
    assert!(second_offset > first_offset);
    let fetched = cluster.call(new_leader, fetch(&partition, first_offset, -1));
    match fetched {
        Response::Fetch(results) => {
            assert_eq!(results[0].error, ErrorCode::None);
            assert!(results[0].high_watermark >= second_offset + 2);
        }
        other => panic!("{other:?}"),
    }
    // A fetch naming the old epoch is fenced.
    let (old_epoch, _) = cluster.brokers[&new_leader]
        .partition_leadership(&partition)
        .unwrap();
    let fenced = cluster.call(new_leader, fetch(&partition, 0, old_epoch - 1));
    match fenced {
        Response::Fetch(results) => assert_eq!(results[0].error, ErrorCode::FencedLeaderEpoch),
        other => panic!("{other:?}"),
    }

    // The old leader restarts from its disk, rejoins and catches up.
    cluster.start(leader);
    let target = cluster.brokers[&new_leader]
        .partition_offsets(&partition)
        .unwrap();
    cluster.run_until("the restarted node caught up", |cluster| {
        cluster.brokers[&leader]
            .partition_offsets(&partition)
            .is_some_and(|(_, hwm, end)| end >= target.2 && hwm >= target.1)
    });
    let leader_bytes = &cluster.disks[&new_leader].segments[&partition];
    let rejoined_bytes = &cluster.disks[&leader].segments[&partition];
    assert_eq!(
        leader_bytes, rejoined_bytes,
        "the rejoined log equals the leader's"
    );

    // DeleteTopics from any node removes the partitions everywhere.
    admin_ok(
        &mut cluster,
        follower,
        Request::DeleteTopics {
            names: vec!["orders".into()],
        },
    );
    cluster.run_until("the topic is gone everywhere", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.partition_offsets(&partition).is_none())
    });
    let hosted: BTreeSet<&TopicPartition> = cluster.brokers[&1].hosted().collect();
    assert_eq!(hosted.len(), 1, "only the metadata log is left: {hosted:?}");
}

// ----- consumer groups -----

/// Asks `from` for the group's coordinator until one is named.
fn find_coordinator(cluster: &mut Cluster, from: NodeId, group: &str) -> NodeId {
    for _ in 0..1000 {
        let response = cluster.call(
            from,
            Request::FindCoordinator {
                groups: vec![group.into()],
            },
        );
        match response {
            Response::FindCoordinator(results) => match &results[0].node {
                Some(node) if cluster.brokers.contains_key(&node.node_id) => {
                    assert_eq!(results[0].error, ErrorCode::None);
                    return node.node_id;
                }
                _ => cluster.round(),
            },
            other => panic!("{other:?}"),
        }
    }
    panic!("no coordinator for {group}");
}

fn join(member_id: &str) -> Request {
    Request::JoinGroup {
        group_id: "g".into(),
        join: JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 10_000,
            require_member_id: true,
        },
    }
}

/// Creates topic `orders` (one partition), the topic the group tests commit offsets of,
/// and waits until every node knows it (offsets are committed only for partitions that
/// exist).
fn create_orders(cluster: &mut Cluster) {
    let size = cluster.brokers.len();
    cluster.run_until("a controller known to all", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.metadata().nodes.len() == size)
    });
    let replication = size.min(3) as i16;
    match cluster.call(1, create_request("orders", 1, replication)) {
        Response::CreateTopics(results) => assert_eq!(results[0].error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    cluster.run_until("every node knows topic orders", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.metadata().topics.contains_key("orders"))
    });
}

fn commit(member_id: &str, generation: i32, offset: i64) -> Request {
    Request::OffsetCommit {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: None,
        generation,
        commits: vec![OffsetCommitPartition {
            partition: TopicPartition::new("orders", 0),
            offset,
            metadata: None,
            leader_epoch: -1,
        }],
    }
}

fn committed_offset(cluster: &mut Cluster, node: NodeId) -> i64 {
    match cluster.call(
        node,
        Request::OffsetFetch {
            require_stable: false,
            group_id: "g".into(),
            partitions: Some(vec![TopicPartition::new("orders", 0)]),
        },
    ) {
        Response::OffsetFetch { error, partitions } => {
            assert_eq!(error, ErrorCode::None);
            partitions[0].offset
        }
        other => panic!("{other:?}"),
    }
}

fn commit_error(response: Response) -> ErrorCode {
    match response {
        Response::OffsetCommit(results) => results[0].1,
        other => panic!("{other:?}"),
    }
}

/// A deleted topic's committed offsets go with it, at every replica of the group's
/// offsets partition, as in Kafka: a consumer of a topic created again under the same name
/// starts from its reset policy, not from the old topic's offsets.
#[test]
fn a_deleted_topics_committed_offsets_are_deleted_with_it() {
    let mut cluster = Cluster::new(3);
    create_orders(&mut cluster);
    let coordinator = find_coordinator(&mut cluster, 1, "g");
    assert_eq!(
        commit_error(cluster.call(coordinator, commit("", -1, 5))),
        ErrorCode::None
    );
    cluster.run_until("every node applied the commit", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.committed_offset_of("g", &orders()) == 5)
    });
    let other = cluster.another_voter(coordinator);
    admin_ok(
        &mut cluster,
        other,
        Request::DeleteTopics {
            names: vec!["orders".into()],
        },
    );
    cluster.run_until("every node dropped the offsets", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.committed_offset_of("g", &orders()) == -1)
    });
    create_orders(&mut cluster);
    assert_eq!(committed_offset(&mut cluster, coordinator), -1);
}

/// Joins one member to group "g" at `coordinator` and syncs an assignment; returns its id.
fn join_and_sync(cluster: &mut Cluster, coordinator: NodeId) -> String {
    let member_id = match cluster.call(coordinator, join("")) {
        Response::JoinGroup(response) => {
            assert_eq!(response.error, ErrorCode::MemberIdRequired);
            response.member_id
        }
        other => panic!("{other:?}"),
    };
    match cluster.call(coordinator, join(&member_id)) {
        Response::JoinGroup(response) => {
            assert_eq!((response.error, response.generation), (ErrorCode::None, 1));
            assert_eq!(response.leader, member_id);
        }
        other => panic!("{other:?}"),
    }
    let sync = Request::SyncGroup {
        group_id: "g".into(),
        member_id: member_id.clone(),
        group_instance_id: None,
        generation: 1,
        assignments: vec![(member_id.clone(), Bytes::from_static(b"orders-0"))],
    };
    match cluster.call(coordinator, sync) {
        Response::SyncGroup(response) => {
            assert_eq!(response.error, ErrorCode::None);
            assert_eq!(response.assignment, Bytes::from_static(b"orders-0"));
        }
        other => panic!("{other:?}"),
    }
    member_id
}

#[test]
fn a_group_survives_its_coordinators_failover_with_its_offsets_and_generation() {
    let mut cluster = Cluster::new(3);
    create_orders(&mut cluster);
    let coordinator = find_coordinator(&mut cluster, 1, "g");
    let member = join_and_sync(&mut cluster, coordinator);
    assert_eq!(
        commit_error(cluster.call(coordinator, commit(&member, 1, 42))),
        ErrorCode::None
    );
    assert_eq!(committed_offset(&mut cluster, coordinator), 42);
    // Fenced: an older generation, and a stranger.
    assert_eq!(
        commit_error(cluster.call(coordinator, commit(&member, 0, 7))),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        commit_error(cluster.call(coordinator, commit("stranger", 1, 7))),
        ErrorCode::UnknownMemberId
    );
    // Another node is not the coordinator.
    let other = cluster
        .voters
        .iter()
        .copied()
        .find(|node| *node != coordinator)
        .unwrap();
    assert_eq!(
        commit_error(cluster.call(other, commit(&member, 1, 9))),
        ErrorCode::NotCoordinator
    );

    // The coordinator's node fails: another replica of the offsets partition takes over and
    // rebuilds the group from the log.
    cluster.crash(coordinator);
    let survivor = cluster
        .voters
        .iter()
        .copied()
        .find(|node| *node != coordinator)
        .unwrap();
    let successor = find_coordinator(&mut cluster, survivor, "g");
    assert_ne!(successor, coordinator);
    cluster.run_until("the successor has loaded the group", |cluster| {
        cluster.brokers[&successor]
            .coordinated_groups()
            .any(|group| group == "g")
    });
    assert_eq!(committed_offset(&mut cluster, successor), 42);
    match cluster.call(
        successor,
        Request::Heartbeat {
            group_id: "g".into(),
            member_id: member.clone(),
            group_instance_id: None,
            generation: 1,
        },
    ) {
        Response::Heartbeat { error } => assert_eq!(error, ErrorCode::None, "membership restored"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        commit_error(cluster.call(successor, commit(&member, 1, 50))),
        ErrorCode::None
    );
    assert_eq!(
        commit_error(cluster.call(successor, commit(&member, 0, 1))),
        ErrorCode::IllegalGeneration,
        "the generation is restored, so older ones stay fenced"
    );
    assert_eq!(committed_offset(&mut cluster, successor), 50);
}

#[test]
fn a_single_nodes_offsets_survive_a_restart() {
    let mut cluster = Cluster::new(1);
    create_orders(&mut cluster);
    let coordinator = find_coordinator(&mut cluster, 1, "g");
    let member = join_and_sync(&mut cluster, coordinator);
    assert_eq!(
        commit_error(cluster.call(1, commit(&member, 1, 5))),
        ErrorCode::None
    );
    assert_eq!(
        commit_error(cluster.call(1, commit(&member, 1, 8))),
        ErrorCode::None
    );
    cluster.crash(1);
    cluster.start(1);
    cluster.run_until(
        "the restarted node coordinates its groups again",
        |cluster| {
            cluster.brokers[&1]
                .coordinated_groups()
                .any(|group| group == "g")
        },
    );
    assert_eq!(committed_offset(&mut cluster, 1), 8);
    // Clients may read the offsets topic but never write it.
    let internal = TopicPartition::new(crate::broker::OFFSETS_TOPIC, 0);
    match cluster.call(1, produce(&internal, 1)) {
        Response::Produce(results) => {
            assert_eq!(results[0].error, ErrorCode::InvalidTopicException)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_empty_groups_offsets_expire_after_the_retention_and_stay_deleted() {
    let mut cluster = Cluster::with_config(1, |config| config.offsets_retention_ms = 5_000);
    create_orders(&mut cluster);
    let coordinator = find_coordinator(&mut cluster, 1, "g");
    let member = join_and_sync(&mut cluster, coordinator);
    assert_eq!(
        commit_error(cluster.call(1, commit(&member, 1, 5))),
        ErrorCode::None
    );
    // A live group keeps its offsets however long it lives.
    for _ in 0..700 {
        cluster.round();
        if cluster.now % 1_000 == 0 {
            let heartbeat = Request::Heartbeat {
                group_id: "g".into(),
                member_id: member.clone(),
                group_instance_id: None,
                generation: 1,
            };
            assert_eq!(
                cluster.call(1, heartbeat),
                Response::Heartbeat {
                    error: ErrorCode::None
                }
            );
        }
    }
    assert_eq!(committed_offset(&mut cluster, 1), 5);
    let leave = Request::LeaveGroup {
        group_id: "g".into(),
        members: vec![LeavingMember {
            member_id: member.clone(),
            group_instance_id: None,
        }],
    };
    match cluster.call(1, leave) {
        Response::LeaveGroup { error, members } => {
            assert_eq!(error, ErrorCode::None);
            assert_eq!(members[0].1, ErrorCode::None);
        }
        other => panic!("{other:?}"),
    }
    for _ in 0..300 {
        cluster.round();
    }
    assert_eq!(committed_offset(&mut cluster, 1), 5, "not yet: 3 s empty");
    cluster.run_until("the offsets expired", |cluster| {
        !cluster.brokers[&1]
            .coordinated_groups()
            .any(|group| group == "g")
    });
    // The deletion is acknowledged to nobody: it shows once its record is committed.
    let mut offset = committed_offset(&mut cluster, 1);
    for _ in 0..100 {
        if offset == -1 {
            break;
        }
        cluster.round();
        offset = committed_offset(&mut cluster, 1);
    }
    assert_eq!(offset, -1);
    // The deletion is in the log: a restart does not bring the offsets back.
    cluster.crash(1);
    cluster.start(1);
    cluster.run_until("the restarted node coordinates again", |cluster| {
        cluster.brokers[&1]
            .partition_leadership(&TopicPartition::new(crate::broker::OFFSETS_TOPIC, 0))
            .is_some_and(|(_, leading)| leading)
    });
    assert_eq!(committed_offset(&mut cluster, 1), -1);
}

#[test]
fn no_member_learns_a_generations_assignment_before_it_is_replicated() {
    let mut cluster = Cluster::new(3);
    let coordinator = find_coordinator(&mut cluster, 1, "g");
    let a = join_and_sync(&mut cluster, coordinator);
    // b joins; a learns of the rebalance and rejoins: generation 2 with both.
    let b = match cluster.call(coordinator, join("")) {
        Response::JoinGroup(response) => response.member_id,
        other => panic!("{other:?}"),
    };
    let b_join = cluster.request(coordinator, join(&b));
    let heartbeat = Request::Heartbeat {
        group_id: "g".into(),
        member_id: a.clone(),
        group_instance_id: None,
        generation: 1,
    };
    assert_eq!(
        cluster.call(coordinator, heartbeat),
        Response::Heartbeat {
            error: ErrorCode::RebalanceInProgress
        }
    );
    match cluster.call(coordinator, join(&a)) {
        Response::JoinGroup(response) => assert_eq!(response.generation, 2),
        other => panic!("{other:?}"),
    }
    assert!(cluster.responses.contains_key(&(coordinator, b_join)));
    // The coordinator loses its majority: nothing it writes can commit.
    let others: Vec<NodeId> = cluster
        .voters
        .iter()
        .copied()
        .filter(|node| *node != coordinator)
        .collect();
    for node in &others {
        cluster.crash(*node);
    }
    let sync = |member: &str, assignments: Vec<(String, Bytes)>| Request::SyncGroup {
        group_id: "g".into(),
        member_id: member.to_string(),
        group_instance_id: None,
        generation: 2,
        assignments,
    };
    let leader_sync = cluster.request(
        coordinator,
        sync(
            &a,
            vec![
                (a.clone(), Bytes::from_static(b"p0")),
                (b.clone(), Bytes::from_static(b"p1")),
            ],
        ),
    );
    // b syncs after the leader: the group is stable in memory, but its generation is not
    // replicated yet, so b must not be told its assignment.
    let follower_sync = cluster.request(coordinator, sync(&b, Vec::new()));
    for _ in 0..50 {
        cluster.round();
    }
    for id in [leader_sync, follower_sync] {
        match cluster.responses.get(&(coordinator, id)) {
            None => {}
            Some(Response::SyncGroup(response)) => assert_ne!(
                response.error,
                ErrorCode::None,
                "an assignment was given out before its generation was replicated"
            ),
            Some(other) => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_loaded_coordinator_sleeps_until_its_next_deadline() {
    let mut cluster = Cluster::new(3);
    create_orders(&mut cluster);
    let coordinator = find_coordinator(&mut cluster, 1, "g");
    let member = join_and_sync(&mut cluster, coordinator);
    assert_eq!(
        commit_error(cluster.call(coordinator, commit(&member, 1, 42))),
        ErrorCode::None
    );
    cluster.crash(coordinator);
    let survivor = cluster
        .voters
        .iter()
        .copied()
        .find(|node| *node != coordinator)
        .unwrap();
    let successor = find_coordinator(&mut cluster, survivor, "g");
    cluster.run_until("the successor has loaded the group", |cluster| {
        cluster.brokers[&successor]
            .coordinated_groups()
            .any(|group| group == "g")
    });
    for _ in 0..20 {
        cluster.round();
        let broker = &cluster.brokers[&successor];
        let wakeup = broker.next_wakeup_ms().unwrap_or(i64::MAX);
        assert!(
            wakeup > cluster.now,
            "woken at once: {wakeup} <= {}",
            cluster.now
        );
    }
}

#[test]
fn a_lone_member_rejoining_at_once_gets_each_generation_synced() {
    let mut cluster = Cluster::new(1);
    let coordinator = find_coordinator(&mut cluster, 1, "g");
    let member = join_and_sync(&mut cluster, coordinator);
    for generation in 2..6 {
        // Rejoin straight after the sync, before the generation's record is committed.
        let joined = cluster.request(coordinator, join(&member));
        let synced = cluster.request(
            coordinator,
            Request::SyncGroup {
                group_id: "g".into(),
                member_id: member.clone(),
                group_instance_id: None,
                generation,
                assignments: vec![(member.clone(), Bytes::from_static(b"p"))],
            },
        );
        cluster.run_until("the join and the sync are answered", |cluster| {
            cluster.responses.contains_key(&(coordinator, joined))
                && cluster.responses.contains_key(&(coordinator, synced))
        });
        match &cluster.responses[&(coordinator, joined)] {
            Response::JoinGroup(response) => assert_eq!(response.generation, generation),
            other => panic!("{other:?}"),
        }
        match &cluster.responses[&(coordinator, synced)] {
            Response::SyncGroup(response) => assert_eq!(response.error, ErrorCode::None),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn metadata_leaves_out_a_node_not_heard_from() {
    let mut cluster = Cluster::new(3);
    let listed = |cluster: &mut Cluster| match cluster.call(
        1,
        Request::Metadata {
            topics: None,
            allow_auto_create: false,
        },
    ) {
        Response::Metadata { nodes, .. } => nodes
            .iter()
            .map(|node| node.node_id)
            .collect::<Vec<NodeId>>(),
        other => panic!("{other:?}"),
    };
    cluster.run_until("every node registered", |cluster| {
        cluster.brokers[&1].metadata().nodes.len() == 3
    });
    assert_eq!(listed(&mut cluster), vec![1, 2, 3]);
    cluster.crash(3);
    for _ in 0..400 {
        cluster.round();
    }
    assert_eq!(listed(&mut cluster), vec![1, 2], "node 3 is silent");
    cluster.start(3);
    cluster.run_until("node 3 is heard again", |cluster| {
        cluster.brokers.contains_key(&3)
    });
    for _ in 0..200 {
        cluster.round();
    }
    assert_eq!(listed(&mut cluster), vec![1, 2, 3]);
}

/// Metadata of every topic, as a client asks it.
fn metadata_request() -> Request {
    Request::Metadata {
        topics: None,
        allow_auto_create: false,
    }
}

/// The brokers a Metadata answer lists and each partition's leader (-1: none), by topic.
fn brokers_and_leaders(response: &Response) -> (Vec<NodeId>, BTreeMap<String, Vec<NodeId>>) {
    let Response::Metadata { nodes, topics, .. } = response else {
        panic!("{response:?}");
    };
    let brokers = nodes.iter().map(|node| node.node_id).collect();
    let leaders = topics
        .iter()
        .map(|topic| {
            let leaders = topic.partitions.iter().map(|p| p.leader).collect();
            (topic.name.clone(), leaders)
        })
        .collect();
    (brokers, leaders)
}

/// A cluster of three with topic `orders` of three partitions, every node naming every
/// node and every partition's leader.
fn cluster_with_three_leaders() -> Cluster {
    let mut cluster = Cluster::new(3);
    cluster.wait_for_controller();
    admin_ok(&mut cluster, 1, create_request("orders", 3, 3));
    for _ in 0..1000 {
        let every_node_names_every_leader = (1..=3).all(|node| {
            let (brokers, leaders) = brokers_and_leaders(&cluster.call(node, metadata_request()));
            brokers == vec![1, 2, 3] && leaders["orders"].iter().all(|leader| *leader > 0)
        });
        if every_node_names_every_leader {
            return cluster;
        }
        cluster.round();
    }
    panic!("the nodes never named every leader");
}

#[test]
fn a_restarted_node_answers_metadata_only_once_it_knows_every_broker_and_leader() {
    let mut cluster = cluster_with_three_leaders();
    // Node 3 restarts: it knows none of its peers yet, nor the leaders it does not host.
    cluster.crash(3);
    cluster.round();
    cluster.start(3);
    let id = cluster.request(3, metadata_request());
    assert!(
        !cluster.responses.contains_key(&(3, id)),
        "a restarted node answered Metadata before hearing from its peers"
    );
    let find = cluster.request(
        3,
        Request::FindCoordinator {
            groups: vec!["g".into()],
        },
    );
    assert!(!cluster.responses.contains_key(&(3, find)));
    cluster.run_until("node 3 answers", |cluster| {
        cluster.responses.contains_key(&(3, id))
    });
    let (brokers, leaders) = brokers_and_leaders(&cluster.responses[&(3, id)]);
    assert_eq!(
        brokers,
        vec![1, 2, 3],
        "its first answer lists every broker"
    );
    let expected: Vec<NodeId> = (0..3)
        .map(|index| {
            let partition = TopicPartition::new("orders", index);
            cluster.leader_of(&partition).expect("a leader")
        })
        .collect();
    assert_eq!(leaders["orders"], expected, "and every partition's leader");
    // The held FindCoordinator is answered with the Metadata (the offsets topic does not
    // exist yet: COORDINATOR_NOT_AVAILABLE, and its creation is asked for).
    assert!(cluster.responses.contains_key(&(3, find)));
    // Once it knows the cluster, the node answers at once, whatever happens next.
    cluster.crash(1);
    cluster.crash(2);
    let again = cluster.request(3, metadata_request());
    assert!(cluster.responses.contains_key(&(3, again)));
}

#[test]
fn a_node_whose_peers_are_all_down_answers_metadata_with_what_it_knows_after_its_wait() {
    let mut cluster = cluster_with_three_leaders();
    for node in 1..=3 {
        cluster.crash(node);
    }
    cluster.start(1);
    let started_ms = cluster.now;
    let id = cluster.request(1, metadata_request());
    // The wait lasts the longest election timeout and an announcement interval (3 s with
    // the default timings).
    while cluster.now < started_ms + 2_900 {
        cluster.round();
        assert!(
            !cluster.responses.contains_key(&(1, id)),
            "answered {} ms after the start, hearing no peer",
            cluster.now - started_ms
        );
    }
    cluster.run_until("node 1 answers", |cluster| {
        cluster.responses.contains_key(&(1, id))
    });
    assert!(cluster.now <= started_ms + 3_100);
    let (brokers, leaders) = brokers_and_leaders(&cluster.responses[&(1, id)]);
    assert_eq!(brokers, vec![1], "only itself is live");
    assert_eq!(
        leaders["orders"],
        vec![-1, -1, -1],
        "and no partition has a leader"
    );
}

#[test]
fn a_single_node_answers_metadata_from_its_start() {
    let mut cluster = Cluster::new(1);
    let id = cluster.request(1, metadata_request());
    assert!(cluster.responses.contains_key(&(1, id)));
}

// ----- transactions -----

/// Asks `from` for the transactional id's coordinator until one is named.
fn find_txn_coordinator(cluster: &mut Cluster, from: NodeId, transactional_id: &str) -> NodeId {
    for _ in 0..1000 {
        let response = cluster.call(
            from,
            Request::FindTransactionCoordinator {
                transactional_ids: vec![transactional_id.into()],
            },
        );
        match response {
            Response::FindCoordinator(results) => match &results[0].node {
                Some(node) if cluster.brokers.contains_key(&node.node_id) => {
                    return node.node_id;
                }
                _ => cluster.round(),
            },
            other => panic!("{other:?}"),
        }
    }
    panic!("no transaction coordinator for {transactional_id}");
}

/// A transactional producer as a client drives it: it retries what Kafka says to retry
/// and follows its coordinator.
struct TxnClient {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    sequences: BTreeMap<TopicPartition, i32>,
}

impl TxnClient {
    fn init(cluster: &mut Cluster, transactional_id: &str) -> Self {
        let mut client = Self {
            transactional_id: transactional_id.into(),
            producer_id: -1,
            producer_epoch: -1,
            sequences: BTreeMap::new(),
        };
        let (producer_id, producer_epoch) = client.init_producer_id(cluster);
        client.producer_id = producer_id;
        client.producer_epoch = producer_epoch;
        client
    }

    /// InitProducerId, retried while the coordinator answers CONCURRENT_TRANSACTIONS.
    fn init_producer_id(&self, cluster: &mut Cluster) -> (i64, i16) {
        for _ in 0..200 {
            let node = find_txn_coordinator(
                cluster,
                *cluster.voters.first().unwrap(),
                &self.transactional_id,
            );
            let response = cluster.call(
                node,
                Request::InitProducerId {
                    connection_id: 0,
                    transactional_id: Some(self.transactional_id.clone()),
                    transaction_timeout_ms: 60_000,
                    producer_id: -1,
                    producer_epoch: -1,
                },
            );
            match response {
                Response::InitProducerId {
                    error: ErrorCode::None,
                    producer_id,
                    producer_epoch,
                } => return (producer_id, producer_epoch),
                Response::InitProducerId { .. } => cluster.round(),
                other => panic!("{other:?}"),
            }
        }
        panic!("InitProducerId never succeeded");
    }

    fn coordinator(&self, cluster: &mut Cluster) -> NodeId {
        let from = *cluster.brokers.keys().next().unwrap();
        find_txn_coordinator(cluster, from, &self.transactional_id)
    }

    fn add_partitions(&self, cluster: &mut Cluster, partitions: &[TopicPartition]) -> ErrorCode {
        for _ in 0..200 {
            let node = self.coordinator(cluster);
            let response = cluster.call(
                node,
                Request::AddPartitionsToTxn {
                    connection_id: 0,
                    transactional_id: self.transactional_id.clone(),
                    producer_id: self.producer_id,
                    producer_epoch: self.producer_epoch,
                    partitions: partitions.to_vec(),
                },
            );
            let Response::AddPartitionsToTxn(results) = response else {
                panic!("{response:?}")
            };
            match results[0].1 {
                ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::ConcurrentTransactions => cluster.round(),
                error => return error,
            }
        }
        panic!("AddPartitionsToTxn never settled");
    }

    /// Produces `records` transactional records to a partition's leader, retrying what
    /// Kafka clients retry.
    fn produce(
        &mut self,
        cluster: &mut Cluster,
        partition: &TopicPartition,
        records: i32,
    ) -> ProducePartitionResult {
        let sequence = *self.sequences.entry(partition.clone()).or_insert(0);
        let batch = test_batches::transactional(
            records,
            START,
            self.producer_id,
            self.producer_epoch,
            sequence,
        );
        for _ in 0..200 {
            let leader = cluster.leader_of(partition).expect("a leader");
            let response = cluster.call(
                leader,
                Request::Produce {
                    acks: Acks::All,
                    timeout_ms: PRODUCE_TIMEOUT_MS,
                    transactional_id: Some(self.transactional_id.clone()),
                    partitions: vec![ProducePartition {
                        partition: partition.clone(),
                        records: batch.clone(),
                    }],
                },
            );
            let result = produce_result(&response).clone();
            match result.error {
                ErrorCode::NotEnoughReplicas | ErrorCode::NotLeaderOrFollower => cluster.round(),
                ErrorCode::None => {
                    self.sequences.insert(partition.clone(), sequence + records);
                    return result;
                }
                _ => return result,
            }
        }
        panic!("the produce never settled");
    }

    fn end(&self, cluster: &mut Cluster, commit: bool) -> ErrorCode {
        for _ in 0..200 {
            let node = self.coordinator(cluster);
            let response = cluster.call(
                node,
                Request::EndTxn {
                    connection_id: 0,
                    transactional_id: self.transactional_id.clone(),
                    producer_id: self.producer_id,
                    producer_epoch: self.producer_epoch,
                    commit,
                },
            );
            match response {
                Response::EndTxn {
                    error:
                        ErrorCode::NotCoordinator
                        | ErrorCode::CoordinatorLoadInProgress
                        | ErrorCode::ConcurrentTransactions,
                } => cluster.round(),
                Response::EndTxn { error } => return error,
                other => panic!("{other:?}"),
            }
        }
        panic!("EndTxn never settled");
    }
}

fn fetch_with(partition: &TopicPartition, offset: i64, isolation: Isolation) -> Request {
    let Request::Fetch {
        max_wait_ms,
        min_bytes,
        max_bytes,
        partitions,
        ..
    } = fetch(partition, offset, -1)
    else {
        unreachable!()
    };
    Request::Fetch {
        max_wait_ms,
        min_bytes,
        max_bytes,
        isolation,
        partitions,
    }
}

/// A read of a partition from its leader: (last stable offset, high watermark, aborted
/// transactions, bytes returned).
fn read(
    cluster: &mut Cluster,
    partition: &TopicPartition,
    isolation: Isolation,
) -> (i64, i64, Vec<AbortedTransaction>, u32) {
    for _ in 0..500 {
        let leader = cluster.leader_of(partition).expect("a leader");
        let Response::Fetch(results) = cluster.call(leader, fetch_with(partition, 0, isolation))
        else {
            panic!("a fetch response")
        };
        let result = &results[0];
        if result.error == ErrorCode::NotLeaderOrFollower {
            cluster.round();
            continue;
        }
        assert_eq!(result.error, ErrorCode::None);
        let bytes = result.chunks.iter().map(|chunk| chunk.length).sum();
        return (
            result.last_stable_offset,
            result.high_watermark,
            result.aborted_transactions.clone(),
            bytes,
        );
    }
    panic!("{partition} is never readable");
}

/// Runs rounds until the partition's last stable offset reaches its high watermark.
fn wait_stable(
    cluster: &mut Cluster,
    partition: &TopicPartition,
) -> (i64, Vec<AbortedTransaction>) {
    for _ in 0..500 {
        let (lso, hwm, aborted, _) = read(cluster, partition, Isolation::ReadCommitted);
        if lso == hwm {
            return (lso, aborted);
        }
        cluster.round();
    }
    panic!("{partition} never became stable");
}

fn transactional_cluster(size: i32) -> (Cluster, Vec<TopicPartition>) {
    let mut cluster = Cluster::new(size);
    cluster.run_until("a controller known to all", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.metadata().nodes.len() == size as usize)
    });
    let replication = size.min(3) as i16;
    match cluster.call(1, create_request("t", 2, replication)) {
        Response::CreateTopics(results) => assert_eq!(results[0].error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    let partitions = vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)];
    for partition in &partitions {
        cluster.run_until("the partition has a leader", |cluster| {
            cluster.leader_of(partition).is_some()
        });
    }
    (cluster, partitions)
}

#[test]
fn committed_transactions_become_visible_together_and_aborted_ones_are_indexed() {
    let (mut cluster, partitions) = transactional_cluster(3);
    let mut client = TxnClient::init(&mut cluster, "copier-1");
    assert_eq!(
        client.add_partitions(&mut cluster, &partitions),
        ErrorCode::None
    );
    for partition in &partitions {
        assert_eq!(
            client.produce(&mut cluster, partition, 3).error,
            ErrorCode::None
        );
    }
    // Open: read_committed sees nothing of it, read_uncommitted sees it all.
    for partition in &partitions {
        let (lso, hwm, _, committed_bytes) =
            read(&mut cluster, partition, Isolation::ReadCommitted);
        assert!(
            lso < hwm,
            "{partition}: an open transaction holds the LSO back"
        );
        assert_eq!(committed_bytes, 0);
        let (_, _, _, uncommitted_bytes) =
            read(&mut cluster, partition, Isolation::ReadUncommitted);
        assert!(uncommitted_bytes > 0);
    }
    assert_eq!(client.end(&mut cluster, true), ErrorCode::None);
    for partition in &partitions {
        let (lso, aborted) = wait_stable(&mut cluster, partition);
        assert!(lso > 3, "data and marker below the LSO");
        assert!(aborted.is_empty());
    }
    // The next transaction aborts: its records are reported as aborted.
    assert_eq!(
        client.add_partitions(&mut cluster, &partitions[..1]),
        ErrorCode::None
    );
    let written = client.produce(&mut cluster, &partitions[0], 2);
    assert_eq!(written.error, ErrorCode::None);
    assert_eq!(client.end(&mut cluster, false), ErrorCode::None);
    let (_, aborted) = wait_stable(&mut cluster, &partitions[0]);
    assert_eq!(
        aborted,
        vec![AbortedTransaction {
            producer_id: client.producer_id,
            first_offset: written.base_offset
        }]
    );
    assert_eq!(
        client.end(&mut cluster, false),
        ErrorCode::None,
        "a retried abort of a completed abort"
    );
    assert_eq!(client.end(&mut cluster, true), ErrorCode::InvalidTxnState);
}

#[test]
fn a_transactions_first_append_is_verified_with_its_coordinator() {
    let (mut cluster, partitions) = transactional_cluster(3);
    let mut client = TxnClient::init(&mut cluster, "verified");
    // Not added to the transaction: refused.
    assert_eq!(
        client.produce(&mut cluster, &partitions[0], 1).error,
        ErrorCode::InvalidTxnState
    );
    assert_eq!(
        client.add_partitions(&mut cluster, &partitions[..1]),
        ErrorCode::None
    );
    assert_eq!(
        client.produce(&mut cluster, &partitions[1], 1).error,
        ErrorCode::InvalidTxnState,
        "only the added partition"
    );
    assert_eq!(
        client.produce(&mut cluster, &partitions[0], 1).error,
        ErrorCode::None
    );
    assert_eq!(client.end(&mut cluster, true), ErrorCode::None);
    wait_stable(&mut cluster, &partitions[0]);
    // A produce delayed past its transaction's end cannot open a transaction nobody ends.
    assert_eq!(
        client.produce(&mut cluster, &partitions[0], 1).error,
        ErrorCode::InvalidTxnState
    );
    let (lso, hwm, _, _) = read(&mut cluster, &partitions[0], Isolation::ReadCommitted);
    assert_eq!(lso, hwm);
}

#[test]
fn a_new_instance_fences_the_old_and_aborts_its_open_transaction() {
    let (mut cluster, partitions) = transactional_cluster(3);
    let mut old = TxnClient::init(&mut cluster, "shared");
    assert_eq!(
        old.add_partitions(&mut cluster, &partitions[..1]),
        ErrorCode::None
    );
    let written = old.produce(&mut cluster, &partitions[0], 2);
    assert_eq!(written.error, ErrorCode::None);
    let new = TxnClient::init(&mut cluster, "shared");
    assert_eq!(new.producer_id, old.producer_id);
    assert!(new.producer_epoch > old.producer_epoch);
    let (_, aborted) = wait_stable(&mut cluster, &partitions[0]);
    assert_eq!(aborted.len(), 1, "the fenced transaction was aborted");
    assert_eq!(aborted[0].first_offset, written.base_offset);
    assert_eq!(old.end(&mut cluster, true), ErrorCode::ProducerFenced);
    assert_eq!(
        old.add_partitions(&mut cluster, &partitions[..1]),
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        old.produce(&mut cluster, &partitions[0], 1).error,
        ErrorCode::InvalidProducerEpoch
    );
}

#[test]
fn a_prepared_transaction_is_completed_by_the_next_coordinator() {
    let (mut cluster, partitions) = transactional_cluster(3);
    let mut client = TxnClient::init(&mut cluster, "failover");
    assert_eq!(
        client.add_partitions(&mut cluster, &partitions),
        ErrorCode::None
    );
    for partition in &partitions {
        assert_eq!(
            client.produce(&mut cluster, partition, 2).error,
            ErrorCode::None
        );
    }
    let coordinator = client.coordinator(&mut cluster);
    // EndTxn is answered once PrepareCommit is committed; the coordinator dies before it
    // can finish the markers (the in-flight messages die with it).
    let id = cluster.request(
        coordinator,
        Request::EndTxn {
            connection_id: 0,
            transactional_id: client.transactional_id.clone(),
            producer_id: client.producer_id,
            producer_epoch: client.producer_epoch,
            commit: true,
        },
    );
    cluster.run_until("EndTxn answered", |cluster| {
        cluster.responses.contains_key(&(coordinator, id))
    });
    cluster.crash(coordinator);
    for partition in &partitions {
        cluster.run_until("a leader after the crash", |cluster| {
            cluster.leader_of(partition).is_some()
        });
        let (_, aborted) = wait_stable(&mut cluster, partition);
        assert!(aborted.is_empty(), "committed, not aborted");
    }
    let successor = client.coordinator(&mut cluster);
    assert_ne!(successor, coordinator);
    let describe = Request::DescribeTransactions {
        transactional_ids: vec![client.transactional_id.clone()],
    };
    for _ in 0..500 {
        match cluster.call(successor, describe.clone()) {
            Response::DescribeTransactions(described) => {
                assert_eq!(described[0].error, ErrorCode::None);
                if described[0].state == TxnState::CompleteCommit {
                    return;
                }
                assert_eq!(described[0].state, TxnState::PrepareCommit);
            }
            other => panic!("{other:?}"),
        }
        cluster.round();
    }
    panic!("the successor never completed the transaction");
}

#[test]
fn an_expired_transaction_is_aborted_and_its_producer_fenced() {
    let (mut cluster, partitions) = transactional_cluster(1);
    let mut client = TxnClient::init(&mut cluster, "slow");
    let coordinator = client.coordinator(&mut cluster);
    // A short timeout: re-init with it.
    match cluster.call(
        coordinator,
        Request::InitProducerId {
            connection_id: 0,
            transactional_id: Some("slow".into()),
            transaction_timeout_ms: 200,
            producer_id: -1,
            producer_epoch: -1,
        },
    ) {
        Response::InitProducerId {
            error: ErrorCode::None,
            producer_epoch,
            ..
        } => client.producer_epoch = producer_epoch,
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.add_partitions(&mut cluster, &partitions[..1]),
        ErrorCode::None
    );
    assert_eq!(
        client.produce(&mut cluster, &partitions[0], 1).error,
        ErrorCode::None
    );
    let (_, aborted) = wait_stable(&mut cluster, &partitions[0]);
    assert_eq!(aborted.len(), 1, "the coordinator aborted it");
    assert_eq!(client.end(&mut cluster, true), ErrorCode::ProducerFenced);
    match cluster.call(
        coordinator,
        Request::InitProducerId {
            connection_id: 0,
            transactional_id: Some("slow".into()),
            transaction_timeout_ms: 16 * 60 * 1000,
            producer_id: -1,
            producer_epoch: -1,
        },
    ) {
        Response::InitProducerId { error, .. } => {
            assert_eq!(error, ErrorCode::InvalidTransactionTimeout)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn transactional_offsets_take_effect_with_the_commit_marker_only() {
    let (mut cluster, partitions) = transactional_cluster(3);
    let mut client = TxnClient::init(&mut cluster, "offsets");
    let group_coordinator = find_coordinator(&mut cluster, 1, "g");
    let txn_offset_commit = |client: &TxnClient, offset: i64| Request::TxnOffsetCommit {
        transactional_id: client.transactional_id.clone(),
        group_id: "g".into(),
        producer_id: client.producer_id,
        producer_epoch: client.producer_epoch,
        member_id: String::new(),
        group_instance_id: None,
        generation: -1,
        commits: vec![OffsetCommitPartition {
            partition: partitions[0].clone(),
            offset,
            metadata: None,
            leader_epoch: -1,
        }],
    };
    let fetch_stable = Request::OffsetFetch {
        group_id: "g".into(),
        partitions: Some(vec![partitions[0].clone()]),
        require_stable: true,
    };
    for (commit, offset) in [(false, 10), (true, 20)] {
        assert_eq!(
            client.add_partitions(&mut cluster, &partitions[..1]),
            ErrorCode::None
        );
        assert_eq!(
            client.produce(&mut cluster, &partitions[0], 1).error,
            ErrorCode::None
        );
        let coordinator = client.coordinator(&mut cluster);
        match cluster.call(
            coordinator,
            Request::AddOffsetsToTxn {
                connection_id: 0,
                transactional_id: client.transactional_id.clone(),
                producer_id: client.producer_id,
                producer_epoch: client.producer_epoch,
                group_id: "g".into(),
            },
        ) {
            Response::AddOffsetsToTxn { error } => assert_eq!(error, ErrorCode::None),
            other => panic!("{other:?}"),
        }
        match cluster.call(group_coordinator, txn_offset_commit(&client, offset)) {
            Response::TxnOffsetCommit(results) => assert_eq!(results[0].1, ErrorCode::None),
            other => panic!("{other:?}"),
        }
        match cluster.call(group_coordinator, fetch_stable.clone()) {
            Response::OffsetFetch { partitions, .. } => {
                assert_eq!(partitions[0].error, ErrorCode::UnstableOffsetCommit)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            committed_offset(&mut cluster, group_coordinator),
            -1,
            "pending"
        );
        assert_eq!(client.end(&mut cluster, commit), ErrorCode::None);
        let expected = if commit { 20 } else { -1 };
        cluster.run_until("the marker reaches the offsets", |cluster| {
            cluster.brokers[&group_coordinator].committed_offset_of("g", &partitions[0]) == expected
                && cluster.brokers[&group_coordinator].has_no_pending_txn_offsets("g")
        });
    }
}

#[test]
fn a_restarted_node_keeps_its_aborted_transactions_and_open_ones() {
    let (mut cluster, partitions) = transactional_cluster(1);
    let mut client = TxnClient::init(&mut cluster, "restart");
    assert_eq!(
        client.add_partitions(&mut cluster, &partitions[..1]),
        ErrorCode::None
    );
    let aborted_write = client.produce(&mut cluster, &partitions[0], 2);
    assert_eq!(client.end(&mut cluster, false), ErrorCode::None);
    wait_stable(&mut cluster, &partitions[0]);
    assert_eq!(
        client.add_partitions(&mut cluster, &partitions[..1]),
        ErrorCode::None
    );
    let open_write = client.produce(&mut cluster, &partitions[0], 1);
    cluster.round();
    cluster.crash(1);
    cluster.start(1);
    cluster.run_until("the partition leads again", |cluster| {
        cluster.leader_of(&partitions[0]).is_some()
    });
    let (lso, _, aborted, _) = read(&mut cluster, &partitions[0], Isolation::ReadCommitted);
    assert_eq!(
        lso, open_write.base_offset,
        "the open transaction still holds the LSO"
    );
    assert_eq!(aborted[0].first_offset, aborted_write.base_offset);
    // The restarted coordinator still knows the open transaction and can end it.
    assert_eq!(client.end(&mut cluster, true), ErrorCode::None);
    let (lso, _) = wait_stable(&mut cluster, &partitions[0]);
    assert!(lso > open_write.base_offset);
}

#[test]
fn a_delayed_end_txn_on_an_abandoned_connection_does_not_end_the_next_transaction() {
    let (mut cluster, partitions) = transactional_cluster(1);
    let mut client = TxnClient::init(&mut cluster, "late");
    let coordinator = client.coordinator(&mut cluster);
    let end = |client: &TxnClient, connection_id: u64, commit: bool| Request::EndTxn {
        connection_id,
        transactional_id: client.transactional_id.clone(),
        producer_id: client.producer_id,
        producer_epoch: client.producer_epoch,
        commit,
    };
    let add = |client: &TxnClient, connection_id: u64| Request::AddPartitionsToTxn {
        connection_id,
        transactional_id: client.transactional_id.clone(),
        producer_id: client.producer_id,
        producer_epoch: client.producer_epoch,
        partitions: partitions[..1].to_vec(),
    };
    // Transaction 1 on connection 1; its EndTxn times out there and is retried on
    // connection 2, where the client goes on with transaction 2.
    assert!(matches!(
        cluster.call(coordinator, add(&client, 1)),
        Response::AddPartitionsToTxn(results) if results[0].1 == ErrorCode::None
    ));
    assert_eq!(
        client.produce(&mut cluster, &partitions[0], 1).error,
        ErrorCode::None
    );
    assert_eq!(
        cluster.call(coordinator, end(&client, 2, true)),
        Response::EndTxn {
            error: ErrorCode::None
        }
    );
    wait_stable(&mut cluster, &partitions[0]);
    for _ in 0..100 {
        match cluster.call(coordinator, add(&client, 2)) {
            Response::AddPartitionsToTxn(results) if results[0].1 == ErrorCode::None => break,
            Response::AddPartitionsToTxn(results)
                if results[0].1 == ErrorCode::ConcurrentTransactions =>
            {
                cluster.round()
            }
            other => panic!("{other:?}"),
        }
    }
    let second = client.produce(&mut cluster, &partitions[0], 1);
    assert_eq!(second.error, ErrorCode::None);
    // The first EndTxn arrives at last, on the abandoned connection: refused.
    assert_eq!(
        cluster.call(coordinator, end(&client, 1, true)),
        Response::EndTxn {
            error: ErrorCode::NotCoordinator
        }
    );
    for _ in 0..20 {
        cluster.round();
    }
    let (lso, _, _, _) = read(&mut cluster, &partitions[0], Isolation::ReadCommitted);
    assert_eq!(lso, second.base_offset, "transaction 2 is still open");
    assert_eq!(
        cluster.call(coordinator, end(&client, 2, false)),
        Response::EndTxn {
            error: ErrorCode::None
        }
    );
    let (_, aborted) = wait_stable(&mut cluster, &partitions[0]);
    assert_eq!(
        aborted.last().map(|a| a.first_offset),
        Some(second.base_offset)
    );
}

#[test]
fn batches_pipelined_behind_a_transactions_first_batch_wait_for_its_verification() {
    let (mut cluster, partitions) = transactional_cluster(3);
    let client = TxnClient::init(&mut cluster, "pipelined");
    let coordinator = client.coordinator(&mut cluster);
    // A partition led elsewhere than the coordinator: its verification takes a round trip.
    let partition = partitions
        .iter()
        .find(|partition| cluster.leader_of(partition) != Some(coordinator))
        .cloned()
        .unwrap_or_else(|| {
            // Both led by the coordinator: move nothing, the local path is synchronous.
            partitions[0].clone()
        });
    assert_eq!(
        client.add_partitions(&mut cluster, std::slice::from_ref(&partition)),
        ErrorCode::None
    );
    let leader = cluster.leader_of(&partition).unwrap();
    let batch = |sequence: i32| Request::Produce {
        acks: Acks::All,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        transactional_id: Some(client.transactional_id.clone()),
        partitions: vec![ProducePartition {
            partition: partition.clone(),
            records: test_batches::transactional(
                2,
                START,
                client.producer_id,
                client.producer_epoch,
                sequence,
            ),
        }],
    };
    // Three batches in flight at once, as librdkafka pipelines them.
    let ids: Vec<RequestId> = (0..3)
        .map(|n| cluster.request(leader, batch(n * 2)))
        .collect();
    cluster.run_until("every batch answered", |cluster| {
        ids.iter()
            .all(|id| cluster.responses.contains_key(&(leader, *id)))
    });
    let mut offsets = Vec::new();
    for id in ids {
        let response = cluster.responses.remove(&(leader, id)).unwrap();
        let result = produce_result(&response);
        assert_eq!(result.error, ErrorCode::None, "{result:?}");
        offsets.push(result.base_offset);
    }
    assert!(
        offsets.windows(2).all(|pair| pair[1] == pair[0] + 2),
        "{offsets:?}"
    );
}

#[test]
fn add_offsets_to_txn_works_before_the_offsets_topic_exists() {
    let (mut cluster, _) = transactional_cluster(1);
    let client = TxnClient::init(&mut cluster, "fresh-offsets");
    let coordinator = client.coordinator(&mut cluster);
    match cluster.call(
        coordinator,
        Request::AddOffsetsToTxn {
            connection_id: 0,
            transactional_id: client.transactional_id.clone(),
            producer_id: client.producer_id,
            producer_epoch: client.producer_epoch,
            group_id: "g".into(),
        },
    ) {
        Response::AddOffsetsToTxn { error } => assert_eq!(error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    assert_eq!(client.end(&mut cluster, true), ErrorCode::None);
    let describe = Request::DescribeTransactions {
        transactional_ids: vec![client.transactional_id.clone()],
    };
    cluster.run_until("the transaction completes", |cluster| {
        cluster.brokers[&1]
            .metadata()
            .topics
            .contains_key(crate::broker::OFFSETS_TOPIC)
    });
    for _ in 0..500 {
        if let Response::DescribeTransactions(described) =
            cluster.call(coordinator, describe.clone())
        {
            if described[0].state == TxnState::CompleteCommit {
                return;
            }
        }
        cluster.round();
    }
    panic!("the transaction never completed");
}

#[test]
fn a_produce_waits_behind_an_earlier_one_of_its_producer_held_for_verification() {
    let (mut cluster, _) = transactional_cluster(3);
    match cluster.call(1, create_request("u", 6, 3)) {
        Response::CreateTopics(results) => assert_eq!(results[0].error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    let partitions: Vec<TopicPartition> = (0..6)
        .map(|index| TopicPartition::new("u", index))
        .collect();
    for partition in &partitions {
        cluster.run_until("a leader", |cluster| cluster.leader_of(partition).is_some());
    }
    let mut client = TxnClient::init(&mut cluster, "overtaken");
    let coordinator = client.coordinator(&mut cluster);
    // Two partitions with one leader that is not the coordinator.
    let mut by_leader: BTreeMap<NodeId, Vec<TopicPartition>> = BTreeMap::new();
    for partition in &partitions {
        let leader = cluster.leader_of(partition).unwrap();
        if leader != coordinator {
            by_leader.entry(leader).or_default().push(partition.clone());
        }
    }
    let Some((leader, pair)) = by_leader.into_iter().find(|(_, pair)| pair.len() >= 2) else {
        return; // no such pair in this layout: nothing to show
    };
    let (first, second) = (pair[0].clone(), pair[1].clone());
    assert_eq!(
        client.add_partitions(&mut cluster, std::slice::from_ref(&second)),
        ErrorCode::None
    );
    assert_eq!(
        client.produce(&mut cluster, &second, 1).error,
        ErrorCode::None
    );
    assert_eq!(
        client.add_partitions(&mut cluster, std::slice::from_ref(&first)),
        ErrorCode::None
    );
    let batch = |sequence: i32| {
        test_batches::transactional(
            1,
            START,
            client.producer_id,
            client.producer_epoch,
            sequence,
        )
    };
    // R1 opens the transaction in `first` (held for verification) and continues `second`;
    // R2 continues `second` again: it must not overtake R1.
    let r1 = Request::Produce {
        acks: Acks::All,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        transactional_id: Some(client.transactional_id.clone()),
        partitions: vec![
            ProducePartition {
                partition: first.clone(),
                records: batch(0),
            },
            ProducePartition {
                partition: second.clone(),
                records: batch(1),
            },
        ],
    };
    let r2 = Request::Produce {
        acks: Acks::All,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        transactional_id: Some(client.transactional_id.clone()),
        partitions: vec![ProducePartition {
            partition: second.clone(),
            records: batch(2),
        }],
    };
    let ids = [cluster.request(leader, r1), cluster.request(leader, r2)];
    cluster.run_until("both answered", |cluster| {
        ids.iter()
            .all(|id| cluster.responses.contains_key(&(leader, *id)))
    });
    for id in ids {
        match cluster.responses.remove(&(leader, id)).unwrap() {
            Response::Produce(results) => {
                for result in results {
                    assert_eq!(result.error, ErrorCode::None, "{result:?}");
                }
            }
            other => panic!("{other:?}"),
        }
    }
    client.sequences.insert(second, 3);
}

/// A follower down while retention deleted everything it held comes back behind the
/// leader's log start: it must restart its log there and catch up, not stay stuck asking for
/// offsets nobody holds any more.
#[test]
fn a_follower_behind_the_leaders_log_start_restarts_there_and_catches_up() {
    let mut cluster = Cluster::new(3);
    cluster.run_until("a controller known to all", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.controller_id().is_some())
    });
    let create = Request::CreateTopics {
        topics: vec![CreateTopic {
            name: "short".into(),
            partition_count: 1,
            replication_factor: 3,
            configs: vec![
                ("segment.bytes".into(), "1024".into()),
                ("retention.ms".into(), "1000".into()),
            ],
            validate_only: false,
            assignments: Vec::new(),
        }],
    };
    let created = cluster.call(1, create);
    assert!(
        matches!(&created, Response::CreateTopics(results) if results[0].error == ErrorCode::None),
        "{created:?}"
    );
    let partition = TopicPartition::new("short", 0);
    cluster.run_until("a partition leader", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let leader = cluster.leader_of(&partition).expect("a leader");
    let follower = cluster
        .voters
        .iter()
        .copied()
        .find(|n| *n != leader)
        .expect("a follower");
    let written = cluster.call(leader, produce(&partition, 5));
    assert_eq!(produce_result(&written).error, ErrorCode::None);
    cluster.run_until("the follower holds the first batch", |cluster| {
        cluster.brokers[&follower]
            .partition_offsets(&partition)
            .is_some_and(|(_, _, end)| end == 5)
    });

    cluster.crash(follower);
    // Records stamped START; once the clock passes START + retention, every inactive
    // segment is past retention.
    for _ in 0..40 {
        let answer = cluster.call(leader, produce(&partition, 10));
        assert_eq!(produce_result(&answer).error, ErrorCode::None);
    }
    cluster.run_until("retention deleted what the follower held", |cluster| {
        cluster.brokers[&leader]
            .partition_offsets(&partition)
            .is_some_and(|(start, _, _)| start > 5)
    });
    let (leader_start, _, leader_end) = cluster.brokers[&leader]
        .partition_offsets(&partition)
        .expect("hosted");

    cluster.start(follower);
    cluster.run_until(
        "the follower caught up from the leader's log start",
        |cluster| {
            cluster.brokers[&follower]
                .partition_offsets(&partition)
                .is_some_and(|(_, _, end)| end >= leader_end)
        },
    );
    let (follower_start, _, _) = cluster.brokers[&follower]
        .partition_offsets(&partition)
        .expect("hosted");
    assert!(
        follower_start >= leader_start,
        "the follower restarted its log at or past the leader's log start {leader_start}, \
         not at {follower_start}"
    );
}

#[test]
fn wall_clocks_stepped_hours_back_and_forth_elect_no_new_leader_and_stall_no_replication() {
    const HOUR_MS: i64 = 60 * 60 * 1000;
    let mut cluster = Cluster::new(3);
    let controller = cluster.wait_for_controller();
    match cluster.call(controller, create_request("orders", 1, 3)) {
        Response::CreateTopics(results) => assert_eq!(results[0].error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    let partition = TopicPartition::new("orders", 0);
    cluster.run_until("a partition leader", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let leader = cluster.leader_of(&partition).unwrap();
    let epochs = |cluster: &Cluster| -> Vec<(i32, bool)> {
        [partition.clone(), crate::controller::metadata_partition()]
            .iter()
            .flat_map(|p| {
                let brokers = cluster.brokers.values();
                brokers.map(|broker| broker.partition_leadership(p).expect("hosted"))
            })
            .collect()
    };
    let before = epochs(&cluster);
    // For ten seconds of monotonic time (many election timeouts), every node's wall clock
    // jumps by hours, each its own way, every 100 ms.
    let steps_ms = [5 * HOUR_MS, -24 * HOUR_MS, 24 * HOUR_MS, -5 * HOUR_MS, 0];
    for round in 0..1_000usize {
        if round % 10 == 0 {
            for node in cluster.voters.clone() {
                let step_ms = steps_ms[(round / 10 + node as usize) % steps_ms.len()];
                cluster.wall_steps_ms.insert(node, step_ms);
            }
        }
        cluster.round();
    }
    assert_eq!(epochs(&cluster), before, "no election, no lost leadership");
    for broker in cluster.brokers.values() {
        assert_eq!(broker.controller_id(), Some(controller));
    }
    // Replication did not stall: an acks=all produce commits within a few rounds.
    let produced = cluster.call(leader, produce(&partition, 3));
    assert_eq!(produce_result(&produced).error, ErrorCode::None);
}

#[test]
fn the_offsets_log_is_trimmed_below_its_snapshots_and_a_follower_behind_it_rebuilds_from_one() {
    // Segments of 1 KiB: a snapshot every 512 bytes appended.
    let mut cluster = Cluster::with_config(3, |config| config.offsets_segment_bytes = 1024);
    create_orders(&mut cluster);
    let coordinator = find_coordinator(&mut cluster, 1, "g");
    let member = join_and_sync(&mut cluster, coordinator);
    assert_eq!(
        commit_error(cluster.call(coordinator, commit(&member, 1, 1))),
        ErrorCode::None
    );
    let offsets = TopicPartition::new(
        crate::broker::OFFSETS_TOPIC,
        crate::broker::offsets_partition_of("g", BrokerConfig::default().offsets_partitions),
    );
    let follower = cluster.another_voter(coordinator);
    cluster.run_until("the follower holds the first commit", |cluster| {
        cluster.brokers[&follower]
            .partition_offsets(&offsets)
            .zip(cluster.brokers[&coordinator].partition_offsets(&offsets))
            .is_some_and(|((_, _, follower_end), (_, _, leader_end))| follower_end == leader_end)
    });
    let (_, _, follower_end) = cluster.brokers[&follower]
        .partition_offsets(&offsets)
        .expect("hosted");
    cluster.crash(follower);

    for offset in 2..=60 {
        assert_eq!(
            commit_error(cluster.call(coordinator, commit(&member, 1, offset))),
            ErrorCode::None
        );
    }
    let (leader_start, leader_end) =
        run_until_trimmed_past(&mut cluster, coordinator, &offsets, follower_end);
    assert!(
        leader_end - leader_start < 40,
        "the log stays short: {leader_start}..{leader_end}"
    );

    // The follower comes back behind the leader's log start: it restarts its log there
    // and rebuilds the groups' view from the snapshot it then receives.
    cluster.start(follower);
    cluster.run_until("the follower caught up", |cluster| {
        cluster.brokers[&follower]
            .partition_offsets(&offsets)
            .is_some_and(|(_, _, end)| end >= leader_end)
    });
    assert_log_restarted_past(&cluster, follower, &offsets, follower_end);
    assert_eq!(
        cluster.brokers[&follower].committed_offset_of("g", &orders()),
        60
    );

    // The coordinator fails: a successor serves the offsets from its trimmed log (the
    // harness panics if any node fail-stops).
    cluster.crash(coordinator);
    let survivor = cluster
        .voters
        .iter()
        .copied()
        .find(|node| *node != coordinator)
        .expect("a survivor");
    let successor = find_coordinator(&mut cluster, survivor, "g");
    cluster.run_until("the successor has loaded the group", |cluster| {
        cluster.brokers[&successor]
            .coordinated_groups()
            .any(|group| group == "g")
    });
    assert_eq!(committed_offset(&mut cluster, successor), 60);
    // And the old coordinator restarts from its trimmed log.
    cluster.start(coordinator);
    cluster.run_until("the old coordinator applied everything again", |cluster| {
        cluster.brokers[&coordinator].committed_offset_of("g", &orders()) == 60
    });
}

/// Runs until `leader`'s log of `partition` starts past `offset` (retention trimmed it
/// below a snapshot); returns its log start and end.
fn run_until_trimmed_past(
    cluster: &mut Cluster,
    leader: NodeId,
    partition: &TopicPartition,
    offset: i64,
) -> (i64, i64) {
    cluster.run_until("the leader trimmed its log past the offset", |cluster| {
        cluster.brokers[&leader]
            .partition_offsets(partition)
            .is_some_and(|(start, _, _)| start > offset)
    });
    let (start, _, end) = cluster.brokers[&leader]
        .partition_offsets(partition)
        .expect("hosted");
    (start, end)
}

/// `node`'s log of `partition` restarted past `offset`, the end of what it held.
fn assert_log_restarted_past(
    cluster: &Cluster,
    node: NodeId,
    partition: &TopicPartition,
    offset: i64,
) {
    let (start, _, _) = cluster.brokers[&node]
        .partition_offsets(partition)
        .expect("hosted");
    assert!(
        start > offset,
        "{partition} on node {node} restarted past what it held ({start} > {offset})"
    );
}

fn orders() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

// ----- the metadata log's snapshots -----

/// Asks `node` to create (or delete) topic `name`; success expected.
fn admin_ok(cluster: &mut Cluster, node: NodeId, request: Request) {
    match cluster.call(node, request) {
        Response::CreateTopics(results) | Response::DeleteTopics(results) => {
            assert_eq!(results[0].error, ErrorCode::None, "{results:?}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_metadata_log_is_trimmed_below_its_snapshots_and_a_node_kept_down_catches_up() {
    // Segments of 1 KiB: a snapshot every 512 bytes appended.
    let mut cluster = Cluster::with_config(3, |config| config.metadata_segment_bytes = 1024);
    let metadata_log = crate::controller::metadata_partition();
    let controller = cluster.wait_for_controller();
    let follower = cluster.another_voter(controller);
    cluster.run_until("the follower holds the whole metadata log", |cluster| {
        let end = |node: NodeId| cluster.brokers[&node].partition_offsets(&metadata_log);
        end(follower).map(|(_, _, end)| end) == end(controller).map(|(_, _, end)| end)
            && cluster.brokers[&controller]
                .metadata()
                .nodes
                .iter()
                .any(|node| node.node_id == follower)
    });
    let (_, _, follower_end) = cluster.brokers[&follower]
        .partition_offsets(&metadata_log)
        .expect("hosted");
    cluster.crash(follower);

    for index in 0..30 {
        admin_ok(
            &mut cluster,
            controller,
            create_request(&format!("topic-{index}"), 1, 2),
        );
    }
    for index in 0..10 {
        admin_ok(
            &mut cluster,
            controller,
            Request::DeleteTopics {
                names: vec![format!("topic-{index}")],
            },
        );
    }
    let (leader_start, leader_end) =
        run_until_trimmed_past(&mut cluster, controller, &metadata_log, follower_end);
    assert!(
        leader_end - leader_start < leader_end / 2,
        "the log keeps less than half of what was written: {leader_start}..{leader_end}"
    );

    // The follower comes back behind the leader's log start: it restarts its log there and
    // takes the view from the snapshot it then receives, hosting what it gives it.
    cluster.start(follower);
    cluster.run_until("the follower caught up", |cluster| {
        cluster.brokers[&follower]
            .metadata()
            .same_replicated_view(cluster.brokers[&controller].metadata())
    });
    assert_log_restarted_past(&cluster, follower, &metadata_log, follower_end);
    let view = cluster.brokers[&follower].metadata().clone();
    assert_eq!(view.topics.len(), 20);
    for topic in view.topics.values() {
        let partition = TopicPartition::new(topic.name.clone(), 0);
        let hosted = cluster.brokers[&follower]
            .partition_offsets(&partition)
            .is_some();
        assert_eq!(
            hosted,
            topic.assignments[0].contains(&follower),
            "{partition}"
        );
    }

    // It restarts again from its persisted view over its trimmed log; then the controller
    // fails and a successor, whose log is trimmed too, serves (the harness panics if any
    // node fail-stops).
    cluster.crash(follower);
    cluster.start(follower);
    cluster.crash(controller);
    cluster.run_until("a successor leads the metadata log", |cluster| {
        cluster.leader_of(&metadata_log).is_some()
    });
    let successor = cluster.leader_of(&metadata_log).expect("a controller");
    admin_ok(&mut cluster, successor, create_request("after", 1, 2));
    cluster.start(controller);
    cluster.run_until("every node applied the last change", |cluster| {
        cluster
            .brokers
            .values()
            .all(|broker| broker.metadata().topics.contains_key("after"))
    });
}

/// A topic deleted and created again under its name while a node is down: the node comes
/// back to a view whose topic has a new id, and must drop what it held of the old topic,
/// not keep it as the new topic's log (Kafka tells them apart by topic id, KIP-516).
#[test]
fn a_node_down_while_its_topic_is_deleted_and_created_again_drops_the_old_topics_data() {
    let mut cluster = Cluster::new(3);
    let controller = cluster.wait_for_controller();
    let partition = TopicPartition::new("reborn", 0);
    admin_ok(&mut cluster, controller, create_request("reborn", 1, 3));
    cluster.run_until("a partition leader", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let leader = cluster.leader_of(&partition).expect("a leader");
    for _ in 0..5 {
        let written = cluster.call(leader, produce(&partition, 10));
        assert_eq!(produce_result(&written).error, ErrorCode::None);
    }
    let absent = cluster.another_voter(controller);
    let old_end = cluster.brokers[&leader]
        .partition_offsets(&partition)
        .map(|(_, _, end)| end)
        .expect("hosted");
    cluster.run_until("every replica holds the old topic's batches", |cluster| {
        cluster.brokers.values().all(|broker| {
            broker
                .partition_offsets(&partition)
                .is_some_and(|(_, _, end)| end == old_end)
        })
    });
    cluster.crash(absent);

    admin_ok(
        &mut cluster,
        controller,
        Request::DeleteTopics {
            names: vec!["reborn".into()],
        },
    );
    admin_ok(&mut cluster, controller, create_request("reborn", 1, 3));
    cluster.run_until("the new topic's leader", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let leader = cluster.leader_of(&partition).expect("a leader");
    let written = cluster.call(leader, produce(&partition, 2));
    assert_eq!(produce_result(&written).error, ErrorCode::None);

    cluster.start(absent);
    cluster.run_until("the returning node holds the new topic's log", |cluster| {
        let end = |node: NodeId| {
            cluster.brokers[&node]
                .partition_offsets(&partition)
                .map(|(_, _, end)| end)
        };
        cluster.brokers[&absent]
            .metadata()
            .same_replicated_view(cluster.brokers[&controller].metadata())
            && end(absent) == end(leader)
    });
    let leader = cluster.leader_of(&partition).expect("a leader");
    assert_eq!(
        cluster.disks[&absent].segments[&partition], cluster.disks[&leader].segments[&partition],
        "the returning node's log is the new topic's, byte for byte"
    );
}

#[test]
fn stats_show_leaders_follower_progress_and_a_silent_follower_as_out_of_sync() {
    let mut cluster = Cluster::new(3);
    create_orders(&mut cluster);
    let partition = TopicPartition::new("orders", 0);
    cluster.run_until("a partition leader", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let leader = cluster.leader_of(&partition).unwrap();
    let led_by = |cluster: &Cluster, node: NodeId| {
        let now = cluster.now_at(node);
        cluster.brokers[&node]
            .stats(now)
            .led
            .into_iter()
            .find(|led| led.partition == partition)
    };
    // Exactly one node reports it led, with both followers heard from.
    let reported: Vec<NodeId> = cluster
        .voters
        .iter()
        .copied()
        .filter(|node| led_by(&cluster, *node).is_some())
        .collect();
    assert_eq!(reported, vec![leader]);
    let led = led_by(&cluster, leader).unwrap();
    assert_eq!(led.followers.len(), 2);
    assert!(!led.under_replicated(), "{led:?}");
    let now = cluster.now_at(leader);
    assert!(cluster.brokers[&leader].stats(now).counters.leaderships_won >= 1);

    let follower = cluster.another_voter(leader);
    cluster.crash(follower);
    cluster.run_until("the leader sees its follower as out of sync", |cluster| {
        led_by(cluster, leader).is_some_and(|led| led.under_replicated())
    });
    let led = led_by(&cluster, leader).unwrap();
    let silent = led
        .followers
        .iter()
        .find(|progress| progress.node_id == follower)
        .unwrap();
    assert!(!silent.in_sync);
}

fn delete_records_request(partition: &TopicPartition, offset: i64) -> Request {
    Request::DeleteRecords {
        partitions: vec![(partition.clone(), offset)],
        timeout_ms: 30_000,
    }
}

/// DeleteRecords' answer for one partition: (error, low watermark).
fn deleted(response: Response) -> (ErrorCode, i64) {
    match response {
        Response::DeleteRecords(results) => (results[0].1, results[0].2),
        other => panic!("{other:?}"),
    }
}

/// ListOffsets(earliest) on `node`: (error, offset).
fn earliest(cluster: &mut Cluster, node: NodeId, partition: &TopicPartition) -> (ErrorCode, i64) {
    let request = Request::ListOffsets {
        isolation: Isolation::ReadUncommitted,
        partitions: vec![(partition.clone(), crate::api::LIST_OFFSETS_EARLIEST)],
    };
    match cluster.call(node, request) {
        Response::ListOffsets(results) => (results[0].error, results[0].offset),
        other => panic!("{other:?}"),
    }
}

fn fetch_error(response: &Response) -> ErrorCode {
    match response {
        Response::Fetch(results) => results[0].error,
        other => panic!("{other:?}"),
    }
}

#[test]
fn delete_records_past_the_waiting_bound_are_refused_and_counted() {
    let (mut cluster, partition, leader) = orders_with_three_batches();
    // With both followers down no new start reaches a majority: every delete waits.
    for node in [1, 2, 3] {
        if node != leader {
            cluster.crash(node);
        }
    }
    let waiting: Vec<RequestId> = (0..crate::broker::WAITING_DELETES_MAX)
        .map(|_| cluster.request(leader, delete_records_request(&partition, 3)))
        .collect();
    assert!(waiting
        .iter()
        .all(|id| !cluster.responses.contains_key(&(leader, *id))));
    let counters = |cluster: &Cluster| {
        let now = cluster.now_at(leader);
        cluster.brokers[&leader].stats(now).counters
    };
    assert_eq!(counters(&cluster).waiting_deletes_refused, 0);
    let refused = cluster.request(leader, delete_records_request(&partition, 3));
    let answer = cluster
        .responses
        .remove(&(leader, refused))
        .expect("answered at once");
    assert_eq!(deleted(answer).0, ErrorCode::RequestTimedOut);
    assert_eq!(counters(&cluster).waiting_deletes_refused, 1);
}

/// Three nodes, `orders` with one partition replicated three times, led, holding three
/// batches of two records (offsets 0-5): the cluster, the partition and its leader.
fn orders_with_three_batches() -> (Cluster, TopicPartition, NodeId) {
    let mut cluster = Cluster::new(3);
    let controller = cluster.wait_for_controller();
    cluster.call(controller, create_request("orders", 1, 3));
    let partition = orders();
    cluster.run_until("a partition leader", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let leader = cluster.leader_of(&partition).unwrap();
    for _ in 0..3 {
        let produced = cluster.call(leader, produce(&partition, 2));
        assert_eq!(produce_result(&produced).error, ErrorCode::None);
    }
    (cluster, partition, leader)
}

/// ListOffsets on `node` for each asked timestamp: (error, offset, leader epoch).
fn list_offsets(
    cluster: &mut Cluster,
    node: NodeId,
    partition: &TopicPartition,
    asked: &[i64],
) -> Vec<(ErrorCode, i64, i32)> {
    let request = Request::ListOffsets {
        isolation: Isolation::ReadUncommitted,
        partitions: asked.iter().map(|t| (partition.clone(), *t)).collect(),
    };
    match cluster.call(node, request) {
        Response::ListOffsets(results) => results
            .iter()
            .map(|result| (result.error, result.offset, result.leader_epoch))
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// ListOffsets names the leader epoch of each answer, as Kafka does: the epoch of the batch
/// found (earliest, a timestamp, the max timestamp) and the leader's current epoch for
/// latest. Consumers keep it with their position and check it with OffsetForLeaderEpoch
/// (KIP-320): an epoch the log never had reads as truncation there.
#[test]
fn list_offsets_answers_the_leader_epoch_of_each_offset() {
    let (mut cluster, partition, leader) = orders_with_three_batches();
    let (first_epoch, _) = cluster.brokers[&leader]
        .partition_leadership(&partition)
        .unwrap();
    cluster.crash(leader);
    cluster.run_until("a new leader", |cluster| {
        cluster
            .leader_of(&partition)
            .is_some_and(|node| node != leader)
    });
    let next = cluster.leader_of(&partition).unwrap();
    let (next_epoch, _) = cluster.brokers[&next]
        .partition_leadership(&partition)
        .unwrap();
    assert!(next_epoch > first_epoch);
    // Offsets 0-5 were written in the first epoch (stamped START); the next leader's
    // leader-change batch and then two records stamped far in the future, in the next.
    let future = 4_000_000_000_000;
    let later = Request::Produce {
        acks: Acks::All,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        transactional_id: None,
        partitions: vec![ProducePartition {
            partition: partition.clone(),
            records: test_batches::plain(2, future),
        }],
    };
    let produced = cluster.call(next, later);
    let produced = produce_result(&produced);
    assert_eq!(produced.error, ErrorCode::None);
    let (base, end) = (produced.base_offset, produced.base_offset + 2);
    assert_eq!(
        list_offsets(
            &mut cluster,
            next,
            &partition,
            &[
                LIST_OFFSETS_EARLIEST,
                START,
                future,
                LIST_OFFSETS_MAX_TIMESTAMP,
                LIST_OFFSETS_LATEST,
                future + 1,
            ]
        ),
        vec![
            (ErrorCode::None, 0, first_epoch),
            (ErrorCode::None, 0, first_epoch),
            (ErrorCode::None, base, next_epoch),
            (ErrorCode::None, base, next_epoch),
            (ErrorCode::None, end, next_epoch),
            (ErrorCode::None, -1, -1),
        ]
    );
    // OffsetForLeaderEpoch of an epoch older than every batch (a position from before the
    // first one): it ends where the first later epoch starts, as in Kafka, so a consumer
    // there is not taken for truncated.
    let epoch_end = |cluster: &mut Cluster, leader_epoch: i32| {
        let request = Request::OffsetForLeaderEpoch {
            partitions: vec![EpochQuery {
                partition: partition.clone(),
                current_leader_epoch: next_epoch,
                leader_epoch,
            }],
        };
        match cluster.call(next, request) {
            Response::OffsetForLeaderEpoch(ends) => {
                (ends[0].error, ends[0].leader_epoch, ends[0].end_offset)
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        epoch_end(&mut cluster, first_epoch - 1),
        (ErrorCode::None, first_epoch - 1, 0)
    );
    assert_eq!(
        epoch_end(&mut cluster, first_epoch),
        (ErrorCode::None, first_epoch, 6)
    );
    assert_eq!(epoch_end(&mut cluster, -1), (ErrorCode::None, -1, -1));
    // Once every record is deleted, earliest is where the current epoch goes on.
    assert_eq!(
        deleted(cluster.call(next, delete_records_request(&partition, -1))),
        (ErrorCode::None, end)
    );
    assert_eq!(
        list_offsets(&mut cluster, next, &partition, &[LIST_OFFSETS_EARLIEST]),
        vec![(ErrorCode::None, end, next_epoch)]
    );
}

#[test]
fn deleted_records_stay_deleted_at_every_replica_across_a_leader_change_and_a_restart() {
    let (mut cluster, partition, leader) = orders_with_three_batches();
    let follower = cluster.another_voter(leader);
    assert_eq!(
        deleted(cluster.call(follower, delete_records_request(&partition, 3))).0,
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(
        deleted(cluster.call(leader, delete_records_request(&partition, 7))).0,
        ErrorCode::OffsetOutOfRange,
        "beyond the high watermark (6)"
    );
    let offsets = TopicPartition::new(crate::broker::OFFSETS_TOPIC, 0);
    assert_eq!(
        deleted(cluster.call(leader, delete_records_request(&offsets, 0))).0,
        ErrorCode::InvalidTopicException
    );
    assert_eq!(
        deleted(cluster.call(leader, delete_records_request(&partition, 3))),
        (ErrorCode::None, 3)
    );
    assert_eq!(
        earliest(&mut cluster, leader, &partition),
        (ErrorCode::None, 3)
    );
    let below = cluster.call(leader, fetch(&partition, 2, -1));
    assert_eq!(fetch_error(&below), ErrorCode::OffsetOutOfRange);
    let at = cluster.call(leader, fetch(&partition, 3, -1));
    assert_eq!(fetch_error(&at), ErrorCode::None);
    // The answer came once a majority (the leader and a follower, at least) persisted the
    // new start: it travels in the leader's appends.
    let persisted = |cluster: &Cluster| {
        cluster
            .voters
            .iter()
            .filter(|node| cluster.disks[node].deleted_below.get(&partition) == Some(&3))
            .count()
    };
    assert!(
        persisted(&cluster) >= 2,
        "answered before a majority held it"
    );
    // The leader dies at once: the next leader serves from there, and so does a restarted
    // one.
    cluster.crash(leader);
    cluster.run_until("a new leader", |cluster| {
        cluster
            .leader_of(&partition)
            .is_some_and(|node| node != leader)
    });
    let next = cluster.leader_of(&partition).unwrap();
    assert_eq!(
        earliest(&mut cluster, next, &partition),
        (ErrorCode::None, 3)
    );
    cluster.start(leader);
    cluster.crash(next);
    cluster.start(next);
    cluster.run_until("a leader again", |cluster| {
        cluster.leader_of(&partition).is_some()
    });
    let last = cluster.leader_of(&partition).unwrap();
    assert_eq!(
        earliest(&mut cluster, last, &partition),
        (ErrorCode::None, 3)
    );
    // Every replica comes to hold it.
    cluster.run_until("every replica persisted the new start", |cluster| {
        persisted(cluster) == 3
    });
    // -1 deletes up to the high watermark.
    let high_watermark = cluster.brokers[&last]
        .partition_offsets(&partition)
        .map(|(_, high_watermark, _)| high_watermark)
        .unwrap();
    assert_eq!(
        deleted(cluster.call(last, delete_records_request(&partition, -1))),
        (ErrorCode::None, high_watermark)
    );
}

#[test]
fn delete_records_times_out_when_no_majority_can_hold_the_new_start() {
    let (mut cluster, partition, leader) = orders_with_three_batches();
    for node in cluster.voters.clone() {
        if node != leader {
            cluster.crash(node);
        }
    }
    let request = Request::DeleteRecords {
        partitions: vec![(partition.clone(), 3)],
        timeout_ms: 200,
    };
    assert_eq!(
        deleted(cluster.call(leader, request)),
        (ErrorCode::RequestTimedOut, -1)
    );
    // The leader moved its own start (what a timeout leaves: a retry completes it).
    assert_eq!(
        earliest(&mut cluster, leader, &partition),
        (ErrorCode::None, 3)
    );
}

// ----- partition growth and config changes -----

fn alter_request(name: &str, changes: &[(&str, &str)]) -> Request {
    Request::AlterConfigs {
        topics: vec![AlterTopicConfigs {
            name: name.into(),
            changes: changes
                .iter()
                .map(|(key, value)| crate::metadata::ConfigChange {
                    key: key.to_string(),
                    op: crate::metadata::ConfigOp::Set(value.to_string()),
                })
                .collect(),
            replace: false,
            validate_only: false,
        }],
    }
}

fn produce_with(partition: &TopicPartition, acks: Acks) -> Request {
    let Request::Produce {
        timeout_ms,
        transactional_id,
        partitions,
        ..
    } = produce(partition, 2)
    else {
        unreachable!()
    };
    Request::Produce {
        acks,
        timeout_ms,
        transactional_id,
        partitions,
    }
}

/// Produces to `partition` through its leader, retrying while leadership settles; returns
/// the result's error.
fn produce_at_leader(cluster: &mut Cluster, partition: &TopicPartition, acks: Acks) -> ErrorCode {
    cluster.run_until("the partition has a leader", |cluster| {
        cluster.leader_of(partition).is_some()
    });
    let leader = cluster.leader_of(partition).expect("a leader");
    let response = cluster.call(leader, produce_with(partition, acks));
    produce_result(&response).error
}

#[test]
fn grown_partitions_and_changed_configs_reach_every_node_through_snapshots_and_restarts() {
    let mut cluster = Cluster::with_config(3, |config| config.metadata_segment_bytes = 1024);
    let metadata_log = crate::controller::metadata_partition();
    let controller = cluster.wait_for_controller();
    admin_ok(&mut cluster, controller, create_request("orders", 1, 3));
    assert_eq!(
        produce_at_leader(&mut cluster, &orders(), Acks::All),
        ErrorCode::None
    );
    let leader = cluster.leader_of(&orders()).expect("a leader");
    let down = cluster
        .voters
        .clone()
        .into_iter()
        .find(|node| *node != controller && *node != leader)
        .unwrap_or_else(|| cluster.another_voter(leader));
    let (_, _, down_end) = cluster.brokers[&down]
        .partition_offsets(&metadata_log)
        .expect("hosted");
    cluster.crash(down);

    // While it is down: the topic grows and its configs change, and enough else happens
    // for the metadata log to be trimmed below what it held.
    let other = cluster.another_voter(down);
    match cluster.call(
        other,
        Request::CreatePartitions {
            topics: vec![CreatePartitions {
                name: "orders".into(),
                count: 3,
                assignments: None,
                validate_only: false,
            }],
        },
    ) {
        Response::CreatePartitions(results) => assert_eq!(results[0].error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    match cluster.call(
        other,
        alter_request(
            "orders",
            &[
                ("min.insync.replicas", "3"),
                ("max.message.bytes", "100000"),
            ],
        ),
    ) {
        Response::AlterConfigs(results) => assert_eq!(results[0].error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    // Two of three replicas are in sync: acks=all is refused, acks=1 is not.
    for _ in 0..300 {
        cluster.round();
    }
    let grown = TopicPartition::new("orders", 2);
    assert_eq!(
        produce_at_leader(&mut cluster, &grown, Acks::All),
        ErrorCode::NotEnoughReplicas
    );
    assert_eq!(
        produce_at_leader(&mut cluster, &grown, Acks::Leader),
        ErrorCode::None
    );
    for index in 0..30 {
        admin_ok(
            &mut cluster,
            controller,
            create_request(&format!("filler-{index}"), 1, 1),
        );
    }
    run_until_trimmed_past(&mut cluster, controller, &metadata_log, down_end);

    cluster.start(down);
    cluster.run_until(
        "the restarted node took the view from a snapshot",
        |cluster| {
            cluster.brokers[&down]
                .metadata()
                .same_replicated_view(cluster.brokers[&controller].metadata())
        },
    );
    let check = |cluster: &Cluster, node: NodeId| {
        let topic = cluster.brokers[&node].metadata().topics["orders"].clone();
        assert_eq!(topic.partition_count, 3, "node {node}");
        assert_eq!(topic.config.min_insync_replicas, 3, "node {node}");
        assert_eq!(topic.config.max_message_bytes, 100_000, "node {node}");
        for partition in 0..3 {
            let partition = TopicPartition::new("orders", partition);
            assert!(
                cluster.brokers[&node]
                    .partition_offsets(&partition)
                    .is_some(),
                "node {node} hosts {partition}"
            );
        }
    };
    for node in cluster.voters.clone() {
        check(&cluster, node);
    }
    // All three in sync again: acks=all succeeds on the grown partition.
    let mut accepted = false;
    for _ in 0..30 {
        if produce_at_leader(&mut cluster, &grown, Acks::All) == ErrorCode::None {
            accepted = true;
            break;
        }
        cluster.round();
    }
    assert!(accepted, "acks=all with every replica in sync");
    // The persisted view survives a restart of every node.
    for node in cluster.voters.clone() {
        cluster.crash(node);
        cluster.start(node);
    }
    for node in cluster.voters.clone() {
        check(&cluster, node);
    }
}

/// CreateTopics and CreatePartitions place new replicas on the live nodes when there are
/// enough of them, as Kafka places them only on unfenced brokers: with a node down, a
/// topic of replication factor 2 on three nodes gets a leader for every partition at
/// once, instead of partitions placed on the down node waiting for it.
#[test]
fn new_replicas_are_placed_on_live_nodes_when_enough_are_live() {
    let mut cluster = Cluster::new(3);
    let controller = cluster.wait_for_controller();
    let down = cluster.another_voter(controller);
    cluster.crash(down);
    let crashed_at = cluster.now;
    cluster.run_until(
        "the controller no longer counts the crashed node live",
        |cluster| cluster.now > crashed_at + 4_000,
    );
    admin_ok(&mut cluster, controller, create_request("placed", 6, 2));
    match cluster.call(
        controller,
        Request::CreatePartitions {
            topics: vec![crate::api::CreatePartitions {
                name: "placed".into(),
                count: 9,
                assignments: None,
                validate_only: false,
            }],
        },
    ) {
        Response::CreatePartitions(results) => assert_eq!(results[0].error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    let assignments = cluster.brokers[&controller].metadata().topics["placed"]
        .assignments
        .clone();
    assert_eq!(assignments.len(), 9);
    for replicas in &assignments {
        assert_eq!(replicas.len(), 2);
        assert!(!replicas.contains(&down), "{assignments:?}");
    }
    cluster.run_until("every partition has a leader", |cluster| {
        (0..9).all(|index| {
            cluster
                .leader_of(&TopicPartition::new("placed", index))
                .is_some()
        })
    });
    // Fewer live nodes than the factor: every node is a candidate, as before (a
    // partition of three replicas elects with two).
    admin_ok(&mut cluster, controller, create_request("wide", 3, 3));
    let wide = &cluster.brokers[&controller].metadata().topics["wide"].assignments;
    assert!(wide.iter().all(|replicas| replicas.contains(&down)));
}
