//! The group coordinator driven alone: no broker, no replicas. [`Node`] stands in for the
//! node: it holds one offsets partition's state as a map, appends the coordinator's batches
//! to a plain list, and moves the high watermark and the leadership by hand.

use super::*;
use crate::api::{JoinRequest, OffsetCommitPartition};
use crate::internal_log::ShardStatus;
use rand::SeedableRng;

const GROUP: &str = "g";

/// A node hosting every offsets partition of a one-partition offsets topic.
struct Node {
    coordinator: GroupCoordinator,
    status: ShardStatus,
    /// Every batch appended to the offsets partition: (base offset, last offset, bytes).
    log: Vec<(i64, i64, Bytes)>,
    rng: StdRng,
    /// The cluster's topics: `orders` with four partitions.
    metadata: ClusterMetadata,
    /// The monotonic clock.
    now_ms: i64,
    /// How far the wall clock is stepped away from `now_ms`.
    wall_step_ms: i64,
    next_id: RequestId,
}

/// The view the coordinator gets of a [`Node`]: partition 0 is hosted, in `status`.
struct OneShard(ShardStatus);

impl InternalPartitions for OneShard {
    fn partition_count(&self) -> Option<i32> {
        Some(1)
    }

    fn status(&self, index: i32) -> Option<ShardStatus> {
        (index == 0).then_some(self.0)
    }
}

impl Node {
    fn now(&self) -> Now {
        Now {
            monotonic_ms: self.now_ms,
            wall_ms: self.now_ms + self.wall_step_ms,
        }
    }

    /// A node hosting the offsets partition as a follower, in epoch 1.
    fn new() -> Self {
        let mut coordinator = GroupCoordinator::new(60_000);
        coordinator
            .open_shard(0, None, 0, 0)
            .expect("nothing to replay");
        Self {
            coordinator,
            status: ShardStatus {
                high_watermark: 0,
                epoch: 1,
                leader: false,
                serves_reads: false,
            },
            log: Vec::new(),
            rng: StdRng::seed_from_u64(7),
            metadata: cluster_with_orders(),
            now_ms: 1_000,
            wall_step_ms: 0,
            next_id: 1,
        }
    }

    /// Leads the partition in `epoch`, everything appended committed.
    fn lead(&mut self, epoch: i32) -> Vec<Reply> {
        self.status = ShardStatus {
            high_watermark: self.log_end(),
            epoch,
            leader: true,
            serves_reads: true,
        };
        self.settle()
    }

    fn log_end(&self) -> i64 {
        self.log.last().map_or(0, |(_, last, _)| last + 1)
    }

    /// Appends a batch to the partition and tells the coordinator.
    fn append(&mut self, batch: Bytes) -> (i64, i64) {
        let header = crate::batch::validate(&batch).expect("a valid batch");
        let base_offset = self.log_end();
        let last_offset = base_offset + header.offset_count() - 1;
        self.coordinator
            .on_appended(0, &header, base_offset, last_offset, &batch)
            .expect("the coordinator's batches decode");
        self.log.push((base_offset, last_offset, batch));
        (base_offset, last_offset)
    }

    /// Executes the coordinator's outputs as the broker does; returns the replies sent and
    /// the TxnOffsetCommits to verify.
    fn execute(&mut self, outputs: Vec<GroupOutput>) -> (Vec<Reply>, Vec<GroupOutput>) {
        let mut replies = Vec::new();
        let mut to_verify = Vec::new();
        for output in outputs {
            match output {
                GroupOutput::Respond { id, response } => replies.push((id, response)),
                GroupOutput::Append {
                    partition,
                    batch,
                    write,
                } => {
                    assert_eq!(partition, 0);
                    let appended = self.status.leader.then(|| {
                        let (_, last_offset) = self.append(batch);
                        (last_offset + 1, self.status.epoch)
                    });
                    replies.extend(self.coordinator.appended(write, appended));
                }
                verify @ GroupOutput::VerifyTxnOffsetCommit { .. } => to_verify.push(verify),
            }
        }
        (replies, to_verify)
    }

    /// Sends a request; returns the replies sent at once.
    fn request(&mut self, request: Request) -> (RequestId, Vec<Reply>) {
        let id = self.next_id;
        self.next_id += 1;
        let offsets = OneShard(self.status);
        let mut context = GroupContext {
            now: self.now(),
            offsets: &offsets,
            rng: &mut self.rng,
            metadata: &self.metadata,
        };
        let outputs = self.coordinator.handle_request(&mut context, id, request);
        let (replies, to_verify) = self.execute(outputs);
        assert!(to_verify.is_empty(), "{to_verify:?}");
        (id, replies)
    }

    /// A request's response, once what it wrote (if anything) is committed.
    fn call(&mut self, request: Request) -> Response {
        let (id, mut replies) = self.request(request);
        if replies.is_empty() {
            self.commit_all();
            replies = self.settle();
        }
        assert_eq!(replies.len(), 1, "{replies:?}");
        let (replied, response) = replies.remove(0);
        assert_eq!(replied, id);
        response
    }

    /// A request whose answer waits for its record's commit: commits it, returns the answer.
    fn call_and_commit(&mut self, request: Request) -> Response {
        let (id, replies) = self.request(request);
        assert!(
            replies.is_empty(),
            "answered before its commit: {replies:?}"
        );
        assert!(self.settle().is_empty(), "answered before its commit");
        self.commit_all();
        let mut replies = self.settle();
        assert_eq!(replies.len(), 1, "{replies:?}");
        let (replied, response) = replies.remove(0);
        assert_eq!(replied, id);
        response
    }

    fn commit_all(&mut self) {
        self.status.high_watermark = self.log_end();
    }

    fn settle(&mut self) -> Vec<Reply> {
        let offsets = OneShard(self.status);
        let context = GroupContext {
            now: self.now(),
            offsets: &offsets,
            rng: &mut self.rng,
            metadata: &self.metadata,
        };
        self.coordinator.settle(&context)
    }

    /// Joins one member and syncs its assignment; returns its id.
    fn join_and_sync(&mut self) -> String {
        let member_id = match self.call(join("")) {
            Response::JoinGroup(joined) => {
                assert_eq!(joined.error, ErrorCode::MemberIdRequired);
                joined.member_id
            }
            other => panic!("{other:?}"),
        };
        match self.call(join(&member_id)) {
            Response::JoinGroup(joined) => {
                assert_eq!((joined.error, joined.generation), (ErrorCode::None, 1));
                assert_eq!(joined.leader, member_id);
            }
            other => panic!("{other:?}"),
        }
        let sync = Request::SyncGroup {
            group_id: GROUP.into(),
            member_id: member_id.clone(),
            group_instance_id: None,
            generation: 1,
            assignments: vec![(member_id.clone(), Bytes::from_static(b"orders-0"))],
        };
        // The settled generation is written first: the assignment waits for its commit.
        match self.call_and_commit(sync) {
            Response::SyncGroup(synced) => {
                assert_eq!(synced.error, ErrorCode::None);
                assert_eq!(synced.assignment, Bytes::from_static(b"orders-0"));
            }
            other => panic!("{other:?}"),
        }
        member_id
    }

    fn committed(&mut self) -> i64 {
        match self.call(fetch(false)) {
            Response::OffsetFetch { error, partitions } => {
                assert_eq!(error, ErrorCode::None);
                partitions[0].offset
            }
            other => panic!("{other:?}"),
        }
    }
}

fn join(member_id: &str) -> Request {
    Request::JoinGroup {
        group_id: GROUP.into(),
        join: JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), subscription(&["orders"]))],
            session_timeout_ms: 30_000,
            rebalance_timeout_ms: 10_000,
            require_member_id: true,
        },
    }
}

/// A consumer protocol `Subscription` (v0) of `topics`, as a member's JoinGroup carries it.
fn subscription(topics: &[&str]) -> Bytes {
    let mut bytes = vec![0, 0];
    bytes.extend_from_slice(&i32::try_from(topics.len()).unwrap().to_be_bytes());
    for topic in topics {
        bytes.extend_from_slice(&i16::try_from(topic.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(topic.as_bytes());
    }
    bytes.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(bytes)
}

/// A cluster holding one topic, `orders`, of four partitions.
fn cluster_with_orders() -> ClusterMetadata {
    let mut metadata = ClusterMetadata::new("cluster", Vec::new());
    metadata.topics.insert(
        "orders".into(),
        crate::metadata::TopicMetadata {
            name: "orders".into(),
            topic_id: 1,
            partition_count: 4,
            config: crate::metadata::TopicConfig::default(),
            assignments: Vec::new(),
        },
    );
    metadata
}

fn orders() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

fn commit(member_id: &str, generation: i32, offset: i64) -> Request {
    Request::OffsetCommit {
        group_id: GROUP.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        generation,
        commits: vec![OffsetCommitPartition {
            partition: orders(),
            offset,
            metadata: None,
            leader_epoch: -1,
        }],
    }
}

fn txn_commit(member_id: &str, offset: i64) -> Request {
    Request::TxnOffsetCommit {
        transactional_id: "copier".into(),
        group_id: GROUP.into(),
        producer_id: 5,
        producer_epoch: 0,
        member_id: member_id.into(),
        group_instance_id: None,
        generation: 1,
        commits: vec![OffsetCommitPartition {
            partition: orders(),
            offset,
            metadata: None,
            leader_epoch: -1,
        }],
    }
}

fn fetch(require_stable: bool) -> Request {
    Request::OffsetFetch {
        require_stable,
        group_id: GROUP.into(),
        partitions: Some(vec![orders()]),
    }
}

fn commit_error(response: &Response) -> ErrorCode {
    match response {
        Response::OffsetCommit(results) | Response::TxnOffsetCommit(results) => results[0].1,
        other => panic!("{other:?}"),
    }
}

#[test]
fn groups_hash_to_the_partition_kafka_would_pick() {
    let java_hash = |text: &str| {
        text.encode_utf16().fold(0i32, |hash, unit| {
            hash.wrapping_mul(31).wrapping_add(i32::from(unit))
        })
    };
    assert_eq!(java_hash("a"), 97);
    assert_eq!(java_hash("ab"), 97 * 31 + 98);
    assert_eq!(offsets_partition_of("ab", 50), (97 * 31 + 98) % 50);
    assert_eq!(offsets_partition_of("anything", 1), 0);
    for group in ["", "g", "consumer-group-with-a-long-name", "ünïcode"] {
        assert!((0..8).contains(&offsets_partition_of(group, 8)));
    }
}

#[test]
fn records_round_trip_through_json() {
    for leader_epochs in [Vec::new(), vec![7]] {
        let record = GroupRecord::Offsets {
            group: "g".into(),
            at_ms: 5,
            commits: vec![(TopicPartition::new("t", 1), 42, Some("meta".into()))],
            leader_epochs,
        };
        let bytes = serde_json::to_vec(&record).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<GroupRecord>(&bytes).ok(),
            Some(record)
        );
    }
}

#[test]
fn an_offsets_record_written_before_leader_epochs_decodes_with_none() {
    // Exactly as the previous version wrote its records (commits as 3-tuples, no epochs).
    let old =
        br#"{"Offsets":{"group":"g","at_ms":5,"commits":[[{"topic":"t","partition":1},42,null]]}}"#;
    let record: GroupRecord = serde_json::from_slice(old).expect("an old record decodes");
    let GroupRecord::Offsets {
        commits,
        leader_epochs,
        ..
    } = record
    else {
        panic!("{record:?}")
    };
    assert_eq!(commits, vec![(TopicPartition::new("t", 1), 42, None)]);
    assert_eq!(offsets_shard::leader_epoch_at(&leader_epochs, 0), -1);
    // And a record without an epoch is still written in that form.
    let unchanged = GroupRecord::Offsets {
        group: "g".into(),
        at_ms: 5,
        commits,
        leader_epochs: Vec::new(),
    };
    assert_eq!(serde_json::to_vec(&unchanged).unwrap(), old.to_vec());
}

#[test]
fn a_committed_leader_epoch_is_returned_by_offset_fetch_and_survives_failover() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let mut request = commit(&member, 1, 42);
    if let Request::OffsetCommit { commits, .. } = &mut request {
        commits[0].leader_epoch = 9;
    }
    node.call_and_commit(request);
    let epoch_of = |node: &mut Node| match node.call(fetch(false)) {
        Response::OffsetFetch { partitions, .. } => {
            (partitions[0].offset, partitions[0].leader_epoch)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(epoch_of(&mut node), (42, 9));
    let mut next = next_coordinator(&mut node, 2);
    assert_eq!(epoch_of(&mut next), (42, 9));
    // A commit without an epoch answers -1.
    next.call_and_commit(commit(&member, 1, 43));
    assert_eq!(epoch_of(&mut next), (43, -1));
}

#[test]
fn only_the_loaded_leader_of_the_offsets_partition_coordinates() {
    let mut node = Node::new();
    let not_coordinator = |response: Response| match response {
        Response::JoinGroup(joined) => joined.error,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        not_coordinator(node.call(join(""))),
        ErrorCode::NotCoordinator
    );
    // Leading, but its high watermark has not reached its epoch yet.
    node.status.leader = true;
    assert!(node.settle().is_empty());
    assert_eq!(
        not_coordinator(node.call(join(""))),
        ErrorCode::CoordinatorLoadInProgress
    );
    node.lead(1);
    assert_eq!(
        not_coordinator(node.call(join(""))),
        ErrorCode::MemberIdRequired
    );
    assert_eq!(node.coordinated_groups_now(), vec![GROUP.to_string()]);
}

impl Node {
    fn coordinated_groups_now(&self) -> Vec<String> {
        self.coordinator
            .coordinated_groups()
            .map(String::from)
            .collect()
    }
}

#[test]
fn a_commit_is_acknowledged_once_its_record_is_committed() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let log_end = node.log_end();
    let response = node.call_and_commit(commit(&member, 1, 42));
    assert_eq!(commit_error(&response), ErrorCode::None);
    assert_eq!(node.log_end(), log_end + 1, "one Offsets record written");
    assert_eq!(node.committed(), 42);
    assert_eq!(node.coordinator.committed_offset(GROUP, &orders()), 42);
}

#[test]
fn a_commit_from_an_old_generation_or_a_stranger_is_refused_unwritten() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let log_end = node.log_end();
    let stale = node.call(commit(&member, 0, 7));
    assert_eq!(commit_error(&stale), ErrorCode::IllegalGeneration);
    let stranger = node.call(commit("stranger", 1, 7));
    assert_eq!(commit_error(&stranger), ErrorCode::UnknownMemberId);
    assert_eq!(
        node.log_end(),
        log_end,
        "nothing written for a refused commit"
    );
    assert_eq!(node.committed(), -1);
}

#[test]
fn a_new_leader_replays_offsets_and_generation_from_the_appended_records() {
    let mut leader = Node::new();
    leader.lead(1);
    let member = leader.join_and_sync();
    assert_eq!(
        commit_error(&leader.call_and_commit(commit(&member, 1, 42))),
        ErrorCode::None
    );
    // A follower replica applied the same batches as they were replicated.
    let mut follower = Node::new();
    for (_, _, batch) in leader.log.clone() {
        follower.append(batch);
    }
    follower.commit_all();
    assert!(follower.settle().is_empty());
    assert_eq!(follower.coordinator.committed_offset(GROUP, &orders()), 42);
    // Leadership moves: the old leader stops coordinating, the follower loads the groups.
    leader.status.leader = false;
    assert!(leader.settle().is_empty());
    assert!(leader.coordinated_groups_now().is_empty());
    follower.lead(2);
    assert_eq!(follower.committed(), 42);
    // The generation survived: the member goes on committing in it.
    assert_eq!(
        commit_error(&follower.call_and_commit(commit(&member, 1, 43))),
        ErrorCode::None
    );
    assert_eq!(follower.committed(), 43);
}

#[test]
fn a_held_reply_is_refused_when_leadership_moves_before_its_commit() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let (id, replies) = node.request(commit(&member, 1, 42));
    assert!(replies.is_empty());
    node.status.leader = false;
    let replies = node.settle();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, id);
    assert_eq!(commit_error(&replies[0].1), ErrorCode::NotCoordinator);
}

#[test]
fn a_write_the_node_cannot_append_is_answered_not_coordinator() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    // The replica stepped down within the step, before the coordinator settled.
    node.status.leader = false;
    let (_, replies) = node.request(commit(&member, 1, 42));
    assert_eq!(replies.len(), 1);
    assert_eq!(commit_error(&replies[0].1), ErrorCode::NotCoordinator);
}

/// Sends a TxnOffsetCommit through its verification; returns its answer once committed.
fn txn_offset_commit(node: &mut Node, member: &str, offset: i64) -> Response {
    txn_offset_commit_request(node, txn_commit(member, offset))
}

/// Sends `request` (a TxnOffsetCommit of producer 5, id 99) through its verification;
/// returns its answer once committed.
fn txn_offset_commit_request(node: &mut Node, request: Request) -> Response {
    let offsets = OneShard(node.status);
    let mut context = GroupContext {
        now: node.now(),
        offsets: &offsets,
        rng: &mut node.rng,
        metadata: &node.metadata,
    };
    let outputs = node.coordinator.handle_request(&mut context, 99, request);
    let (replies, mut to_verify) = node.execute(outputs);
    assert!(replies.is_empty());
    let Some(GroupOutput::VerifyTxnOffsetCommit {
        id,
        partition,
        producer_id,
        request,
        ..
    }) = to_verify.pop()
    else {
        panic!("a verification is asked for")
    };
    assert_eq!((id, partition, producer_id), (99, 0, 5));
    let offsets = OneShard(node.status);
    let context = GroupContext {
        now: node.now(),
        offsets: &offsets,
        rng: &mut node.rng,
        metadata: &node.metadata,
    };
    let outputs = node
        .coordinator
        .txn_offset_commit_verified(&context, id, request, None);
    let (replies, _) = node.execute(outputs);
    assert!(replies.is_empty(), "answered before its commit");
    node.commit_all();
    let mut replies = node.settle();
    assert_eq!(replies.len(), 1);
    replies.remove(0).1
}

#[test]
fn transactional_offsets_take_effect_with_the_commit_marker_only() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let answer = txn_offset_commit(&mut node, &member, 42);
    assert_eq!(commit_error(&answer), ErrorCode::None);
    // Pending: a stable read is refused, a plain one sees the previous offset.
    match node.call(fetch(true)) {
        Response::OffsetFetch { partitions, .. } => {
            assert_eq!(partitions[0].error, ErrorCode::UnstableOffsetCommit);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.committed(), -1);
    assert!(!node.coordinator.has_no_pending_txn_offsets(GROUP));
    // The transaction's abort marker discards them.
    node.append(crate::records::transaction_marker_batch(false, 5, 0, 1, 0));
    node.commit_all();
    node.settle();
    assert!(node.coordinator.has_no_pending_txn_offsets(GROUP));
    assert_eq!(node.committed(), -1);
    // The next transaction commits: its offsets take effect with the marker.
    assert_eq!(
        commit_error(&txn_offset_commit(&mut node, &member, 43)),
        ErrorCode::None
    );
    node.append(crate::records::transaction_marker_batch(true, 5, 0, 1, 0));
    assert_eq!(node.committed(), -1, "the marker is not committed yet");
    node.commit_all();
    node.settle();
    assert_eq!(node.committed(), 43);
}

#[test]
fn a_refused_verification_fails_the_txn_offset_commit_unwritten() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let log_end = node.log_end();
    let offsets = OneShard(node.status);
    let context = GroupContext {
        now: node.now(),
        offsets: &offsets,
        rng: &mut node.rng,
        metadata: &node.metadata,
    };
    let outputs = node.coordinator.txn_offset_commit_verified(
        &context,
        7,
        txn_commit(&member, 42),
        Some(ErrorCode::ProducerFenced),
    );
    let (replies, _) = node.execute(outputs);
    assert_eq!(replies.len(), 1);
    assert_eq!(commit_error(&replies[0].1), ErrorCode::ProducerFenced);
    assert_eq!(node.log_end(), log_end);
}

#[test]
fn an_empty_group_expires_after_the_retention_period_with_a_deleted_record() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    assert_eq!(
        commit_error(&node.call_and_commit(commit(&member, 1, 42))),
        ErrorCode::None
    );
    let left = Request::LeaveGroup {
        group_id: GROUP.into(),
        members: vec![crate::api::LeavingMember {
            member_id: member.clone(),
            group_instance_id: None,
        }],
    };
    node.call_and_commit(left);
    let log_end = node.log_end();
    node.now_ms += 60_000 + EXPIRY_CHECK_INTERVAL_MS;
    let outputs = node.coordinator.tick(node.now());
    let (replies, _) = node.execute(outputs);
    assert!(replies.is_empty());
    assert_eq!(node.log_end(), log_end + 1, "a Deleted record written");
    node.commit_all();
    node.settle();
    assert_eq!(node.committed(), -1);
}

#[test]
fn an_offsets_batch_that_does_not_decode_is_corrupt_data_never_skipped() {
    // A valid batch whose records are not group records.
    let garbage = crate::batch::test_batches::batch(1, 0, -1, -1, -1);
    let header = crate::batch::validate(&garbage).expect("a valid batch");
    let mut coordinator = GroupCoordinator::new(60_000);
    let corrupt = coordinator
        .open_shard(0, Some(&garbage), 0, 1)
        .expect_err("replayed from disk");
    assert_eq!(
        (corrupt.partition, corrupt.offset),
        (TopicPartition::new(OFFSETS_TOPIC, 0), 0)
    );
    coordinator
        .open_shard(0, None, 0, 0)
        .expect("nothing to replay");
    let corrupt = coordinator
        .on_appended(0, &header, 5, 5, &garbage)
        .expect_err("replicated");
    assert_eq!(corrupt.offset, 5);
}

#[test]
fn a_wall_clock_step_neither_expires_a_session_early_nor_keeps_it_alive() {
    const HOUR_MS: i64 = 60 * 60 * 1000;
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let tick = |node: &mut Node| {
        let outputs = node.coordinator.tick(node.now());
        node.execute(outputs);
        node.commit_all();
        node.settle();
    };
    // Within the 30 s session, the wall clock jumps a day forward and back: the member
    // stays, and its commits are stamped with the wall clock.
    for (wall_step_ms, offset) in [(24 * HOUR_MS, 1), (-24 * HOUR_MS, 2), (5 * HOUR_MS, 3)] {
        node.now_ms += 9_000;
        node.wall_step_ms = wall_step_ms;
        tick(&mut node);
        let log_end = node.log_end();
        let committed = node.call_and_commit(commit(&member, 1, offset));
        assert_eq!(commit_error(&committed), ErrorCode::None, "still a member");
        let (_, _, batch) = node.log.last().expect("the commit's batch");
        assert_eq!(node.log_end(), log_end + 1);
        let header = crate::batch::read_header(batch).unwrap();
        assert_eq!(header.max_timestamp, node.now().wall_ms);
    }
    // No heartbeat for the session timeout on the monotonic clock, the wall clock stepped
    // back a day: the session expires all the same.
    node.now_ms += 30_000;
    node.wall_step_ms = -24 * HOUR_MS;
    tick(&mut node);
    assert_eq!(
        commit_error(&node.call(commit(&member, 1, 4))),
        ErrorCode::UnknownMemberId
    );
}

/// Advances the clock past the next expiry check and runs the coordinator's timers, then
/// commits and applies what they wrote.
fn tick_and_commit(node: &mut Node) {
    node.now_ms += EXPIRY_CHECK_INTERVAL_MS;
    let outputs = node.coordinator.tick(node.now());
    node.execute(outputs);
    node.commit_all();
    node.settle();
}

/// Replays `batches` (a log that starts at the first one's base offset) into a new
/// coordinator that then leads: what a restart after trimming, or a follower that restarted
/// its log at its leader's log start, sees.
fn replay_led(batches: &[(i64, i64, Bytes)]) -> (GroupCoordinator, Vec<Reply>) {
    let log_start = batches.first().map_or(0, |(base, _, _)| *base);
    let log_end = batches.last().map_or(0, |(_, last, _)| last + 1);
    let mut coordinator = GroupCoordinator::new(60_000);
    coordinator
        .open_shard(
            0,
            Some(&crate::internal_log::stored_log(batches, 0)),
            log_start,
            log_end,
        )
        .expect("the batches decode");
    let offsets = OneShard(ShardStatus {
        high_watermark: log_end,
        epoch: 2,
        leader: true,
        serves_reads: true,
    });
    let mut rng = StdRng::seed_from_u64(1);
    let metadata = cluster_with_orders();
    let context = GroupContext {
        now: Now {
            monotonic_ms: 0,
            wall_ms: 0,
        },
        offsets: &offsets,
        rng: &mut rng,
        metadata: &metadata,
    };
    let replies = coordinator.settle(&context);
    (coordinator, replies)
}

/// A leader that writes a snapshot whenever quiescent, with one member joined and synced.
fn snapshotting_leader() -> (Node, String) {
    let mut node = Node::new();
    node.coordinator.snapshot_interval_bytes = 1;
    node.lead(1);
    let member = node.join_and_sync();
    (node, member)
}

#[test]
fn a_snapshot_restates_the_view_so_the_log_below_it_can_go() {
    let (mut node, member) = snapshotting_leader();
    for offset in 1..=5 {
        let committed = node.call_and_commit(commit(&member, 1, offset));
        assert_eq!(commit_error(&committed), ErrorCode::None);
    }
    assert_eq!(node.coordinator.last_snapshot(0), None);
    let before = node.log_end();
    tick_and_commit(&mut node);
    let snapshot_start = node
        .coordinator
        .last_snapshot(0)
        .expect("a quiescent shard past its interval writes a snapshot");
    assert_eq!(
        snapshot_start, before,
        "the snapshot starts at the log's end"
    );
    let decoded: Vec<GroupRecord> = node
        .log
        .iter()
        .filter(|(base, _, _)| *base >= snapshot_start)
        .flat_map(|(_, _, batch)| {
            let header = crate::batch::read_header(batch).expect("a header");
            crate::records::decode_json_records::<GroupRecord>(&header, batch).expect("decodes")
        })
        .collect();
    assert_eq!(decoded.first(), Some(&GroupRecord::SnapshotStart));
    assert_eq!(decoded.last(), Some(&GroupRecord::SnapshotEnd));
    assert_eq!(node.committed(), 5, "the snapshot changed nothing");

    // A later commit, then the log trimmed below the snapshot: the view is the same.
    let committed = node.call_and_commit(commit(&member, 1, 6));
    assert_eq!(commit_error(&committed), ErrorCode::None);
    let suffix: Vec<_> = node
        .log
        .iter()
        .filter(|(base, _, _)| *base >= snapshot_start)
        .cloned()
        .collect();
    let (replayed, replies) = replay_led(&suffix);
    assert!(replies.is_empty());
    assert!(replayed.coordinated_groups().any(|group| group == GROUP));
    assert_eq!(replayed.committed_offset(GROUP, &orders()), 6);
    let whole = replay_led(&node.log).0;
    assert_eq!(whole.committed_offset(GROUP, &orders()), 6);
    assert_eq!(
        replayed.memberships(GROUP),
        whole.memberships(GROUP),
        "the membership is restored too"
    );
}

#[test]
fn an_incomplete_snapshot_changes_nothing_and_a_log_past_zero_without_one_stops_the_node() {
    let (mut node, member) = snapshotting_leader();
    let committed = node.call_and_commit(commit(&member, 1, 7));
    assert_eq!(commit_error(&committed), ErrorCode::None);
    // A snapshot's start written, but not its end (its next appends failed).
    let start = node.log_end();
    let records = crate::records::encode_json_records(&[GroupRecord::SnapshotStart]);
    node.append(crate::records::encode_batch(&records, 0, 0, -1));
    node.commit_all();
    node.settle();
    assert_eq!(node.committed(), 7, "a partial snapshot replaces nothing");
    assert_eq!(node.coordinator.last_snapshot(0), None);

    // A log that starts there holds no complete snapshot: leading it would serve a part of
    // the groups' state, so the node stops instead.
    let suffix: Vec<_> = node
        .log
        .iter()
        .filter(|(base, _, _)| *base >= start)
        .cloned()
        .collect();
    let (mut replayed, replies) = replay_led(&suffix);
    assert!(replies.is_empty());
    assert_eq!(replayed.coordinated_groups().count(), 0, "not loaded");
    let corrupt = replayed.take_fail_stop().expect("the node stops");
    assert_eq!(
        (corrupt.partition, corrupt.offset),
        (TopicPartition::new(OFFSETS_TOPIC, 0), start)
    );
}

/// Commits of `orders` partition 0 (which exists), of `orders` partition 9 (past its four)
/// and of a topic that does not exist.
fn commits_with_unknown_partitions(offset: i64) -> Vec<OffsetCommitPartition> {
    [
        orders(),
        TopicPartition::new("orders", 9),
        TopicPartition::new("missing", 0),
    ]
    .into_iter()
    .map(|partition| OffsetCommitPartition {
        partition,
        offset,
        metadata: None,
        leader_epoch: -1,
    })
    .collect()
}

/// Every partition the group has an offset for, as OffsetFetch without partitions says.
fn fetch_all(node: &mut Node) -> Vec<(TopicPartition, i64)> {
    let request = Request::OffsetFetch {
        group_id: GROUP.into(),
        partitions: None,
        require_stable: false,
    };
    match node.call(request) {
        Response::OffsetFetch { error, partitions } => {
            assert_eq!(error, ErrorCode::None);
            partitions
                .into_iter()
                .map(|fetched| (fetched.partition, fetched.offset))
                .collect()
        }
        other => panic!("{other:?}"),
    }
}

fn commit_errors(response: &Response) -> Vec<ErrorCode> {
    match response {
        Response::OffsetCommit(results) | Response::TxnOffsetCommit(results) => {
            results.iter().map(|(_, error)| *error).collect()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_commit_to_a_partition_that_does_not_exist_is_answered_unknown_and_not_stored() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let Request::OffsetCommit {
        group_id,
        member_id,
        group_instance_id,
        generation,
        ..
    } = commit(&member, 1, 0)
    else {
        unreachable!("an OffsetCommit")
    };
    let mixed = |offset| Request::OffsetCommit {
        group_id: group_id.clone(),
        member_id: member_id.clone(),
        group_instance_id: group_instance_id.clone(),
        generation,
        commits: commits_with_unknown_partitions(offset),
    };
    let unknown = ErrorCode::UnknownTopicOrPartition;
    assert_eq!(
        commit_errors(&node.call_and_commit(mixed(7))),
        vec![ErrorCode::None, unknown, unknown]
    );
    assert_eq!(fetch_all(&mut node), vec![(orders(), 7)]);
    // A commit naming only partitions that do not exist is answered at once, unwritten;
    // so is one from a stale generation, whose unknown partitions still say so first.
    let log_end = node.log_end();
    let (_, replies) = node.request(Request::OffsetCommit {
        group_id: GROUP.into(),
        member_id: member.clone(),
        group_instance_id: None,
        generation: 1,
        commits: commits_with_unknown_partitions(8).split_off(1),
    });
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(commit_errors(&replies[0].1), vec![unknown, unknown]);
    assert_eq!(node.log_end(), log_end);
    let mut stale = mixed(9);
    if let Request::OffsetCommit { generation, .. } = &mut stale {
        *generation = 0;
    }
    assert_eq!(
        commit_errors(&node.call(stale)),
        vec![ErrorCode::IllegalGeneration, unknown, unknown]
    );
    assert_eq!(node.log_end(), log_end);
    assert_eq!(fetch_all(&mut node), vec![(orders(), 7)]);
}

#[test]
fn a_txn_offset_commit_to_a_partition_that_does_not_exist_is_answered_unknown_and_not_stored() {
    let mut node = Node::new();
    node.lead(1);
    let member = node.join_and_sync();
    let Request::TxnOffsetCommit {
        transactional_id,
        group_id,
        producer_id,
        producer_epoch,
        member_id,
        group_instance_id,
        generation,
        ..
    } = txn_commit(&member, 0)
    else {
        unreachable!("a TxnOffsetCommit")
    };
    let with_commits = |commits| Request::TxnOffsetCommit {
        transactional_id: transactional_id.clone(),
        group_id: group_id.clone(),
        producer_id,
        producer_epoch,
        member_id: member_id.clone(),
        group_instance_id: group_instance_id.clone(),
        generation,
        commits,
    };
    let unknown = ErrorCode::UnknownTopicOrPartition;
    let answer =
        txn_offset_commit_request(&mut node, with_commits(commits_with_unknown_partitions(7)));
    assert_eq!(
        commit_errors(&answer),
        vec![ErrorCode::None, unknown, unknown]
    );
    node.append(crate::records::transaction_marker_batch(true, 5, 0, 1, 0));
    node.commit_all();
    node.settle();
    assert_eq!(fetch_all(&mut node), vec![(orders(), 7)]);
    // Only partitions that do not exist: answered at once, with no verification asked.
    let log_end = node.log_end();
    let (_, replies) = node.request(with_commits(
        commits_with_unknown_partitions(8).split_off(1),
    ));
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(commit_errors(&replies[0].1), vec![unknown, unknown]);
    assert_eq!(node.log_end(), log_end);
}

fn delete_group() -> Request {
    Request::DeleteGroup {
        group_id: GROUP.into(),
    }
}

fn leave(member_id: &str) -> Request {
    Request::LeaveGroup {
        group_id: GROUP.into(),
        members: vec![crate::api::LeavingMember {
            member_id: member_id.into(),
            group_instance_id: None,
        }],
    }
}

fn delete_group_error(response: &Response) -> ErrorCode {
    match response {
        Response::DeleteGroup { error } => *error,
        other => panic!("{other:?}"),
    }
}

/// A follower that applied every batch of `leader`'s log, then leads in `epoch`.
fn next_coordinator(leader: &mut Node, epoch: i32) -> Node {
    let mut follower = Node::new();
    for (_, _, batch) in leader.log.clone() {
        follower.append(batch);
    }
    follower.commit_all();
    assert!(follower.settle().is_empty());
    leader.status.leader = false;
    leader.settle();
    follower.lead(epoch);
    follower
}

#[test]
fn a_group_is_deleted_only_when_empty_and_stays_deleted_at_the_next_coordinator() {
    let mut node = Node::new();
    node.lead(1);
    assert_eq!(
        delete_group_error(&node.call(delete_group())),
        ErrorCode::GroupIdNotFound
    );
    let member = node.join_and_sync();
    assert_eq!(
        commit_error(&node.call_and_commit(commit(&member, 1, 42))),
        ErrorCode::None
    );
    assert_eq!(
        delete_group_error(&node.call(delete_group())),
        ErrorCode::NonEmptyGroup
    );
    assert_eq!(node.committed(), 42, "a refused deletion changes nothing");
    node.call(leave(&member));
    // Answered only once the deletion is committed.
    assert_eq!(
        delete_group_error(&node.call_and_commit(delete_group())),
        ErrorCode::None
    );
    assert_eq!(node.committed(), -1);
    assert!(node.coordinated_groups_now().is_empty());
    let mut next = next_coordinator(&mut node, 2);
    assert!(next.coordinated_groups_now().is_empty());
    assert_eq!(next.committed(), -1);
    assert_eq!(
        delete_group_error(&next.call(delete_group())),
        ErrorCode::GroupIdNotFound
    );
}

fn offset_delete(partitions: Vec<TopicPartition>) -> Request {
    Request::OffsetDelete {
        group_id: GROUP.into(),
        partitions,
    }
}

#[test]
fn offsets_of_a_topic_a_member_subscribes_to_are_kept_and_the_others_deleted_durably() {
    let mut node = Node::new();
    node.metadata.topics.insert(
        "payments".into(),
        crate::metadata::TopicMetadata {
            name: "payments".into(),
            topic_id: 2,
            partition_count: 1,
            config: crate::metadata::TopicConfig::default(),
            assignments: Vec::new(),
        },
    );
    node.lead(1);
    let unknown = node.call(offset_delete(vec![orders()]));
    assert_eq!(
        unknown,
        Response::OffsetDelete {
            error: ErrorCode::GroupIdNotFound,
            partitions: Vec::new()
        }
    );
    let member = node.join_and_sync();
    let payments = TopicPartition::new("payments", 0);
    let both = Request::OffsetCommit {
        group_id: GROUP.into(),
        member_id: member.clone(),
        group_instance_id: None,
        generation: 1,
        commits: [orders(), payments.clone()]
            .into_iter()
            .map(|partition| OffsetCommitPartition {
                partition,
                offset: 7,
                metadata: None,
                leader_epoch: -1,
            })
            .collect(),
    };
    node.call_and_commit(both);
    // The member subscribes to `orders` only.
    let response = node.call_and_commit(offset_delete(vec![orders(), payments.clone()]));
    assert_eq!(
        response,
        Response::OffsetDelete {
            error: ErrorCode::None,
            partitions: vec![
                (orders(), ErrorCode::GroupSubscribedToTopic),
                (payments.clone(), ErrorCode::None)
            ]
        }
    );
    assert_eq!(fetch_all(&mut node), vec![(orders(), 7)]);
    let mut next = next_coordinator(&mut node, 2);
    assert_eq!(fetch_all(&mut next), vec![(orders(), 7)]);
    // Once the group is empty, every topic's offsets may go.
    next.call(leave(&member));
    let response = next.call_and_commit(offset_delete(vec![orders()]));
    assert_eq!(
        response,
        Response::OffsetDelete {
            error: ErrorCode::None,
            partitions: vec![(orders(), ErrorCode::None)]
        }
    );
    assert_eq!(fetch_all(&mut next), Vec::new());
}

/// A leading node whose coordinator delays a new group's first rebalance by `delay_ms`.
fn delaying_leader(delay_ms: i64) -> Node {
    let mut node = Node::new();
    node.coordinator = GroupCoordinator::new(60_000).with_initial_rebalance_delay_ms(delay_ms);
    node.coordinator
        .open_shard(0, None, 0, 0)
        .expect("nothing to replay");
    node.lead(1);
    node
}

/// A member's first JoinGroup round trip: its id, and the id of its held second join.
fn join_held(node: &mut Node) -> (String, RequestId) {
    let member_id = match node.call(join("")) {
        Response::JoinGroup(joined) => joined.member_id,
        other => panic!("{other:?}"),
    };
    let (id, replies) = node.request(join(&member_id));
    assert!(replies.is_empty(), "answered during the delay: {replies:?}");
    (member_id, id)
}

/// The timers at `at_ms`; returns the replies they sent.
fn tick_at(node: &mut Node, at_ms: i64) -> Vec<Reply> {
    node.now_ms = at_ms;
    let outputs = node.coordinator.tick(node.now());
    node.execute(outputs).0
}

fn joined_generations(replies: &[Reply]) -> Vec<(RequestId, i32)> {
    replies
        .iter()
        .map(|(id, response)| match response {
            Response::JoinGroup(joined) => {
                assert_eq!(joined.error, ErrorCode::None);
                (*id, joined.generation)
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_member_alone_waits_the_initial_delay_before_generation_one() {
    let mut node = delaying_leader(3_000);
    let start = node.now_ms;
    let (_, held) = join_held(&mut node);
    assert!(tick_at(&mut node, start + 2_999).is_empty());
    let replies = tick_at(&mut node, start + 3_000);
    assert_eq!(joined_generations(&replies), vec![(held, 1)]);
}

#[test]
fn members_joining_within_the_initial_delay_land_in_one_first_generation() {
    let mut node = delaying_leader(3_000);
    let start = node.now_ms;
    let (_, first) = join_held(&mut node);
    node.now_ms = start + 1_000;
    let (_, second) = join_held(&mut node);
    // A newcomer during the delay extends it by another delay (the rebalance timeout,
    // 10 s, leaves room), and nobody joined during that one: then the generation completes.
    assert!(tick_at(&mut node, start + 3_000).is_empty());
    assert!(tick_at(&mut node, start + 5_999).is_empty());
    let mut replies = joined_generations(&tick_at(&mut node, start + 6_000));
    replies.sort_unstable();
    assert_eq!(replies, vec![(first, 1), (second, 1)]);
}

#[test]
fn newcomers_extend_the_initial_delay_no_further_than_the_rebalance_timeout() {
    let mut node = delaying_leader(3_000);
    let start = node.now_ms;
    let mut held = vec![join_held(&mut node).1];
    // A newcomer every 2.5 s: each delay ends with a newcomer in it and is extended while
    // the 10 s rebalance timeout lasts (3 s, then 3 s, 3 s, then the 1 s left), never longer.
    for at in [2_500, 3_000, 5_000, 6_000, 7_500, 9_000] {
        let replies = tick_at(&mut node, start + at);
        assert!(replies.is_empty(), "completed at {at}: {replies:?}");
        if at % 3_000 != 0 || at == 9_000 {
            held.push(join_held(&mut node).1);
        }
    }
    assert!(tick_at(&mut node, start + 9_999).is_empty());
    let completed = tick_at(&mut node, start + 10_000);
    let mut generations = joined_generations(&completed);
    generations.sort_unstable();
    assert_eq!(
        generations,
        held.into_iter().map(|id| (id, 1)).collect::<Vec<_>>()
    );
}

#[test]
fn sessions_start_anew_when_an_initial_delay_longer_than_them_ends() {
    let mut node = delaying_leader(3_000);
    let start = node.now_ms;
    let short_session = |member_id: &str| match join(member_id) {
        Request::JoinGroup { group_id, mut join } => {
            join.session_timeout_ms = 2_000;
            Request::JoinGroup { group_id, join }
        }
        other => other,
    };
    let mut held = Vec::new();
    for at in [0, 1_000] {
        node.now_ms = start + at;
        let member_id = match node.call(short_session("")) {
            Response::JoinGroup(joined) => joined.member_id,
            other => panic!("{other:?}"),
        };
        let (id, replies) = node.request(short_session(&member_id));
        assert!(replies.is_empty());
        held.push(id);
    }
    assert!(tick_at(&mut node, start + 3_000).is_empty(), "extended");
    let mut generations = joined_generations(&tick_at(&mut node, start + 6_000));
    generations.sort_unstable();
    assert_eq!(generations, vec![(held[0], 1), (held[1], 1)]);
    // Both sessions run from the end of the wait, not from their joins 5-6 s earlier.
    tick_at(&mut node, start + 7_000);
    let group = node.coordinator.live_group(GROUP).expect("the group");
    assert_eq!((group.generation(), group.member_ids().count()), (1, 2));
}
