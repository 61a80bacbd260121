//! The transaction coordinator driven alone: no broker, no replicas. [`Node`] stands in for
//! the node: one `__transaction_state` partition kept as a list of batches whose high
//! watermark and leadership move by hand, a map of topics and of their leaders, and the
//! node's producer-id counter.

use super::*;
use crate::internal_log::ShardStatus;

const ID: &str = "copier";
const FIRST_PRODUCER_ID: i64 = 4_000;

/// What the coordinator sees of a [`Node`].
struct View {
    status: ShardStatus,
    topics: BTreeMap<String, i32>,
    leaders: BTreeMap<TopicPartition, NodeId>,
}

impl InternalPartitions for View {
    fn partition_count(&self) -> Option<i32> {
        Some(1)
    }

    fn status(&self, index: i32) -> Option<ShardStatus> {
        (index == 0).then_some(self.status)
    }
}

impl TransactionNode for View {
    fn topic_partition_count(&self, topic: &str) -> Option<i32> {
        self.topics.get(topic).copied()
    }

    fn partition_leader(&self, partition: &TopicPartition) -> Option<NodeId> {
        self.leaders.get(partition).copied()
    }
}

/// What the node was asked to do besides answering and appending.
#[derive(Debug, Default)]
struct Asked {
    markers: Vec<(NodeId, u64, MarkerWrite, Vec<TopicPartition>)>,
    answered: Vec<(u64, Vec<(TopicPartition, ErrorCode)>)>,
    offsets_topic: bool,
}

struct Node {
    coordinator: TransactionCoordinator,
    view: View,
    log: Vec<(i64, i64, Bytes)>,
    next_producer_id: i64,
    message_ids: u64,
    /// The monotonic clock.
    now_ms: i64,
    /// How far the wall clock is stepped away from `now_ms`.
    wall_step_ms: i64,
    next_request: RequestId,
    asked: Asked,
}

fn orders(partition: i32) -> TopicPartition {
    TopicPartition::new("orders", partition)
}

impl Node {
    /// Hosts the transaction-state partition as a follower in epoch 1; topic `orders` has
    /// two partitions, led by node 2.
    fn new() -> Self {
        let mut coordinator = TransactionCoordinator::new(TxnCoordinatorConfig {
            transaction_timeout_max_ms: 60_000,
            transactional_id_expiration_ms: 7 * 24 * 3_600_000,
            offsets_partitions: 4,
            snapshot_interval_bytes: crate::internal_log::SNAPSHOT_INTERVAL_BYTES_DEFAULT,
        });
        coordinator
            .open_shard(0, None, 0, 0)
            .expect("nothing to replay");
        Self {
            coordinator,
            view: View {
                status: ShardStatus {
                    high_watermark: 0,
                    epoch: 1,
                    leader: false,
                    serves_reads: false,
                },
                topics: BTreeMap::from([("orders".to_string(), 2)]),
                leaders: BTreeMap::from([(orders(0), 2), (orders(1), 2)]),
            },
            log: Vec::new(),
            next_producer_id: FIRST_PRODUCER_ID,
            message_ids: 0,
            now_ms: 1_000,
            wall_step_ms: 0,
            next_request: 1,
            asked: Asked::default(),
        }
    }

    fn log_end(&self) -> i64 {
        self.log.last().map_or(0, |(_, last, _)| last + 1)
    }

    fn append(&mut self, batch: Bytes) {
        let header = crate::batch::validate(&batch).expect("a valid batch");
        let base_offset = self.log_end();
        let last_offset = base_offset + header.offset_count() - 1;
        self.coordinator
            .on_appended(0, &header, base_offset, last_offset, &batch)
            .expect("the coordinator's batches decode");
        self.log.push((base_offset, last_offset, batch));
    }

    /// Leads the partition in `epoch`, everything appended committed.
    fn lead(&mut self, epoch: i32) -> Vec<Reply> {
        self.view.status = ShardStatus {
            high_watermark: self.log_end(),
            epoch,
            leader: true,
            serves_reads: true,
        };
        self.settle()
    }

    fn commit_all(&mut self) {
        self.view.status.high_watermark = self.log_end();
    }

    /// Calls the coordinator with its context, then executes what it returned.
    fn drive(
        &mut self,
        call: impl FnOnce(&mut TransactionCoordinator, &mut TxnContext<'_>) -> Vec<TxnOutput>,
    ) -> Vec<Reply> {
        let mut context = TxnContext {
            now: Now {
                monotonic_ms: self.now_ms,
                wall_ms: self.now_ms + self.wall_step_ms,
            },
            node: &self.view,
            next_producer_id: self.next_producer_id,
            message_ids: &mut self.message_ids,
        };
        let outputs = call(&mut self.coordinator, &mut context);
        self.execute(outputs)
    }

    fn execute(&mut self, outputs: Vec<TxnOutput>) -> Vec<Reply> {
        let mut replies = Vec::new();
        for output in outputs {
            match output {
                TxnOutput::Respond { id, response } => replies.push((id, response)),
                TxnOutput::TakeProducerId(producer_id) => {
                    assert_eq!(producer_id, self.next_producer_id);
                    self.next_producer_id += 1;
                }
                TxnOutput::Append {
                    partition,
                    batch,
                    write,
                } => {
                    assert_eq!(partition, 0);
                    let appended = self.view.status.leader.then(|| {
                        self.append(batch);
                        (self.log_end(), self.view.status.epoch)
                    });
                    replies.extend(self.coordinator.appended(write, appended));
                }
                TxnOutput::CreateOffsetsTopic => self.asked.offsets_topic = true,
                TxnOutput::WriteMarkers {
                    leader,
                    id,
                    markers,
                    partitions,
                } => self.asked.markers.push((leader, id, markers, partitions)),
                TxnOutput::MarkersAnswered { id, results } => {
                    self.asked.answered.push((id, results))
                }
            }
        }
        replies
    }

    fn settle(&mut self) -> Vec<Reply> {
        self.drive(|coordinator, context| coordinator.settle(context))
    }

    /// Runs the timers, then commits and applies what they wrote.
    fn tick_and_commit(&mut self) {
        self.drive(|coordinator, context| coordinator.tick(context));
        self.commit_all();
        self.settle();
    }

    /// A request's answer, once the record it wrote (if any) is committed.
    fn call(&mut self, request: Request) -> Response {
        let id = self.next_request;
        self.next_request += 1;
        let mut replies =
            self.drive(|coordinator, context| coordinator.handle_request(context, id, request));
        if replies.is_empty() {
            assert!(self.settle().is_empty(), "answered before its commit");
            self.commit_all();
            replies = self.settle();
        }
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0].0, id);
        replies.remove(0).1
    }

    /// InitProducerId; returns (producer id, epoch).
    fn init(&mut self, connection_id: u64) -> (i64, i16) {
        match self.call(init_request(connection_id)) {
            Response::InitProducerId {
                error: ErrorCode::None,
                producer_id,
                producer_epoch,
            } => (producer_id, producer_epoch),
            other => panic!("{other:?}"),
        }
    }

    fn state(&self) -> TxnState {
        self.coordinator
            .transaction_state(ID)
            .map_or(TxnState::Empty, |txn| txn.state)
    }
}

fn init_request(connection_id: u64) -> Request {
    Request::InitProducerId {
        transactional_id: Some(ID.into()),
        transaction_timeout_ms: 10_000,
        producer_id: -1,
        producer_epoch: -1,
        connection_id,
    }
}

fn add(producer: (i64, i16), partitions: Vec<TopicPartition>) -> Request {
    Request::AddPartitionsToTxn {
        transactional_id: ID.into(),
        producer_id: producer.0,
        producer_epoch: producer.1,
        partitions,
        connection_id: 0,
    }
}

fn end(producer: (i64, i16), commit: bool, connection_id: u64) -> Request {
    Request::EndTxn {
        transactional_id: ID.into(),
        producer_id: producer.0,
        producer_epoch: producer.1,
        commit,
        connection_id,
    }
}

fn add_error(response: Response) -> ErrorCode {
    match response {
        Response::AddPartitionsToTxn(results) => results[0].1,
        other => panic!("{other:?}"),
    }
}

fn end_error(response: Response) -> ErrorCode {
    match response {
        Response::EndTxn { error } => error,
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_the_loaded_leader_of_the_transaction_state_partition_coordinates() {
    let mut node = Node::new();
    let error = |response| match response {
        Response::InitProducerId { error, .. } => error,
        other => panic!("{other:?}"),
    };
    assert_eq!(error(node.call(init_request(0))), ErrorCode::NotCoordinator);
    node.view.status.leader = true;
    assert_eq!(
        error(node.call(init_request(0))),
        ErrorCode::CoordinatorLoadInProgress
    );
    node.lead(1);
    assert_eq!(node.init(0), (FIRST_PRODUCER_ID, 0));
}

#[test]
fn a_transaction_commits_through_prepare_markers_and_complete() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    assert_eq!(node.state(), TxnState::Empty);
    assert_eq!(
        add_error(node.call(add(producer, vec![orders(0)]))),
        ErrorCode::None
    );
    assert_eq!(node.state(), TxnState::Ongoing);
    assert!(node.asked.markers.is_empty());
    assert_eq!(
        end_error(node.call(end(producer, true, 0))),
        ErrorCode::None
    );
    assert_eq!(node.state(), TxnState::PrepareCommit);
    // Once PrepareCommit is committed, the partition's leader is asked for the marker.
    let (leader, id, markers, partitions) = node.asked.markers.pop().expect("markers asked for");
    assert_eq!((leader, partitions), (2, vec![orders(0)]));
    assert_eq!(
        (
            markers.commit,
            markers.producer_id,
            markers.coordinator_epoch
        ),
        (true, producer.0, 1)
    );
    // Unanswered, it is asked again after the retry interval.
    node.now_ms += MARKER_RETRY_MS;
    node.settle();
    assert_eq!(node.asked.markers.len(), 1);
    let retried_id = node.asked.markers[0].1;
    // The first request's answer completes the transaction.
    let log_end = node.log_end();
    node.drive(|coordinator, context| {
        coordinator.on_markers_written(context.now.wall_ms, id, vec![(orders(0), ErrorCode::None)])
    });
    assert_eq!(node.log_end(), log_end + 1, "CompleteCommit written");
    node.commit_all();
    node.settle();
    assert_eq!(node.state(), TxnState::CompleteCommit);
    // A late answer to the retry changes nothing.
    let log_end = node.log_end();
    node.drive(|coordinator, context| {
        coordinator.on_markers_written(
            context.now.wall_ms,
            retried_id,
            vec![(orders(0), ErrorCode::None)],
        )
    });
    assert_eq!(node.log_end(), log_end);
}

#[test]
fn a_transaction_completes_only_once_every_partition_holds_its_marker() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    node.view.leaders.insert(orders(1), 3);
    node.call(add(producer, vec![orders(0), orders(1)]));
    node.call(end(producer, false, 0));
    assert_eq!(node.asked.markers.len(), 2, "one request per leader");
    let ids: Vec<(u64, TopicPartition)> = node
        .asked
        .markers
        .iter()
        .map(|(_, id, _, partitions)| (*id, partitions[0].clone()))
        .collect();
    let log_end = node.log_end();
    let (first, first_partition) = ids[0].clone();
    node.drive(|coordinator, context| {
        coordinator.on_markers_written(
            context.now.wall_ms,
            first,
            vec![(first_partition, ErrorCode::None)],
        )
    });
    assert_eq!(
        node.log_end(),
        log_end,
        "one partition still lacks its marker"
    );
    let (second, second_partition) = ids[1].clone();
    node.drive(|coordinator, context| {
        coordinator.on_markers_written(
            context.now.wall_ms,
            second,
            vec![(second_partition, ErrorCode::NotLeaderOrFollower)],
        )
    });
    assert_eq!(
        node.log_end(),
        log_end,
        "a failed marker write is retried, not counted"
    );
    node.now_ms += MARKER_RETRY_MS;
    node.settle();
    let (_, retry, _, partitions) = node.asked.markers.last().cloned().expect("retried");
    assert_eq!(partitions, vec![orders(1)]);
    node.drive(|coordinator, context| {
        coordinator.on_markers_written(
            context.now.wall_ms,
            retry,
            vec![(orders(1), ErrorCode::None)],
        )
    });
    node.commit_all();
    node.settle();
    assert_eq!(node.state(), TxnState::CompleteAbort);
}

#[test]
fn a_fenced_producer_is_refused_after_a_new_instance_initializes() {
    let mut node = Node::new();
    node.lead(1);
    let zombie = node.init(0);
    let successor = node.init(0);
    assert_eq!(successor, (zombie.0, zombie.1 + 1), "the epoch is bumped");
    assert_eq!(
        add_error(node.call(add(zombie, vec![orders(0)]))),
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        end_error(node.call(end(zombie, true, 0))),
        ErrorCode::ProducerFenced
    );
    assert_eq!(
        add_error(node.call(add(successor, vec![orders(0)]))),
        ErrorCode::None
    );
}

#[test]
fn a_request_from_an_older_connection_than_one_seen_is_refused() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(2);
    node.call(add(producer, vec![orders(0)]));
    // An EndTxn delayed on a connection its client gave up on.
    assert_eq!(
        end_error(node.call(end(producer, false, 1))),
        ErrorCode::NotCoordinator
    );
    assert_eq!(node.state(), TxnState::Ongoing);
    assert_eq!(
        end_error(node.call(end(producer, true, 2))),
        ErrorCode::None
    );
}

#[test]
fn unknown_and_internal_partitions_fail_the_whole_add() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    let log_end = node.log_end();
    let internal = TopicPartition::new(TRANSACTION_STATE_TOPIC, 0);
    match node.call(add(producer, vec![orders(0), orders(7), internal])) {
        Response::AddPartitionsToTxn(results) => assert_eq!(
            results.iter().map(|(_, error)| *error).collect::<Vec<_>>(),
            vec![
                ErrorCode::OperationNotAttempted,
                ErrorCode::UnknownTopicOrPartition,
                ErrorCode::UnknownTopicOrPartition
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(node.log_end(), log_end, "nothing written");
}

#[test]
fn add_offsets_before_the_offsets_topic_exists_asks_for_it() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    let request = Request::AddOffsetsToTxn {
        transactional_id: ID.into(),
        producer_id: producer.0,
        producer_epoch: producer.1,
        group_id: "g".into(),
        connection_id: 0,
    };
    match node.call(request) {
        Response::AddOffsetsToTxn { error } => assert_eq!(error, ErrorCode::None),
        other => panic!("{other:?}"),
    }
    assert!(node.asked.offsets_topic);
    let partition = TopicPartition::new(OFFSETS_TOPIC, offsets_partition_of("g", 4));
    let txn = node.coordinator.transaction_state(ID).expect("known");
    assert!(txn.partitions.contains(&partition));
}

#[test]
fn verification_confirms_only_the_partitions_of_the_open_transaction() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    node.call(add(producer, vec![orders(0)]));
    let (results, txn_number) = node.coordinator.verify(
        &node.view,
        ID,
        producer.0,
        producer.1,
        &[orders(0), orders(1)],
    );
    assert_eq!(results[0], (orders(0), ErrorCode::None));
    assert_ne!(results[1].1, ErrorCode::None, "not in the transaction");
    assert!(txn_number > 0);
    let (stale, _) =
        node.coordinator
            .verify(&node.view, ID, producer.0, producer.1 - 1, &[orders(0)]);
    assert_ne!(stale[0].1, ErrorCode::None, "an older epoch is refused");
    // Another node's view: it does not coordinate the id.
    node.view.status.leader = false;
    node.settle();
    let (elsewhere, _) =
        node.coordinator
            .verify(&node.view, ID, producer.0, producer.1, &[orders(0)]);
    assert_eq!(elsewhere[0].1, ErrorCode::NotCoordinator);
}

#[test]
fn a_new_coordinator_finishes_the_prepared_transaction_it_loads() {
    let mut leader = Node::new();
    leader.lead(1);
    let producer = leader.init(0);
    leader.call(add(producer, vec![orders(0)]));
    leader.call(end(producer, true, 0));
    // The coordinator fails before any marker is answered; a follower replica has the log.
    let mut follower = Node::new();
    for (_, _, batch) in leader.log.clone() {
        follower.append(batch);
    }
    follower.commit_all();
    follower.settle();
    assert!(
        follower.asked.markers.is_empty(),
        "a follower writes no markers"
    );
    follower.lead(2);
    let (_, id, markers, partitions) = follower.asked.markers.pop().expect("markers asked for");
    assert_eq!(partitions, vec![orders(0)]);
    assert_eq!((markers.commit, markers.coordinator_epoch), (true, 2));
    follower.drive(|coordinator, context| {
        coordinator.on_markers_written(context.now.wall_ms, id, vec![(orders(0), ErrorCode::None)])
    });
    follower.commit_all();
    follower.settle();
    assert_eq!(follower.state(), TxnState::CompleteCommit);
}

#[test]
fn an_answer_is_refused_when_leadership_moves_before_its_record_commits() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    let replies = node.drive(|coordinator, context| {
        coordinator.handle_request(context, 77, add(producer, vec![orders(0)]))
    });
    assert!(replies.is_empty());
    node.view.status.leader = false;
    let replies = node.settle();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, 77);
    assert_eq!(add_error(replies[0].1.clone()), ErrorCode::NotCoordinator);
}

#[test]
fn markers_for_a_deleted_topic_are_answered_at_once() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    node.call(add(producer, vec![orders(0)]));
    node.view.topics.remove("orders");
    node.call(end(producer, false, 0));
    assert!(node.asked.markers.is_empty());
    let (id, results) = node.asked.answered.pop().expect("answered without asking");
    assert_eq!(
        results,
        vec![(orders(0), ErrorCode::UnknownTopicOrPartition)]
    );
    node.drive(|coordinator, context| {
        coordinator.on_markers_written(context.now.wall_ms, id, results)
    });
    node.commit_all();
    node.settle();
    assert_eq!(node.state(), TxnState::CompleteAbort);
}

#[test]
fn an_open_transaction_past_its_timeout_is_aborted_under_a_bumped_epoch() {
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    node.call(add(producer, vec![orders(0)]));
    node.now_ms += 10_000 + TIMEOUT_CHECK_INTERVAL_MS;
    node.tick_and_commit();
    let txn = node.coordinator.transaction_state(ID).expect("known");
    assert_eq!(txn.state, TxnState::PrepareAbort);
    assert!(txn.producer_epoch > producer.1, "the producer is fenced");
    assert_eq!(
        end_error(node.call(end(producer, true, 0))),
        ErrorCode::ProducerFenced
    );
}

#[test]
fn a_transaction_state_log_that_does_not_parse_or_decode_is_corrupt_data_never_skipped() {
    let config = TxnCoordinatorConfig {
        transaction_timeout_max_ms: 60_000,
        transactional_id_expiration_ms: 60_000,
        offsets_partitions: 1,
        snapshot_interval_bytes: crate::internal_log::SNAPSHOT_INTERVAL_BYTES_DEFAULT,
    };
    // A valid batch whose records are not transaction records, then a torn one.
    let garbage = crate::batch::test_batches::batch(2, 0, -1, -1, -1);
    let mut recovered = garbage.to_vec();
    recovered.extend_from_slice(&garbage[..20]);
    let mut coordinator = TransactionCoordinator::new(config);
    let corrupt = coordinator
        .open_shard(0, Some(&Bytes::from(recovered.clone())), 0, 10)
        .expect_err("does not decode");
    assert_eq!(
        (corrupt.partition, corrupt.offset),
        (TopicPartition::new(TRANSACTION_STATE_TOPIC, 0), 0)
    );
    // Below the log end only the torn batch is read: it does not parse, at offset 2.
    let mut coordinator = TransactionCoordinator::new(config);
    let torn_after_one = Bytes::from(recovered);
    let corrupt = coordinator
        .open_shard(0, Some(&torn_after_one), 0, 0)
        .expect_err("does not parse");
    assert_eq!(corrupt.offset, 2);
}

#[test]
fn a_transaction_times_out_on_the_monotonic_clock_counted_from_its_load_at_a_new_coordinator() {
    const HOUR_MS: i64 = 60 * 60 * 1000;
    let tick = |node: &mut Node| {
        node.drive(|coordinator, context| coordinator.tick(context));
        node.commit_all();
        node.settle();
    };
    let state = |node: &Node| node.coordinator.transaction_state(ID).expect("known").state;
    let mut node = Node::new();
    node.lead(1);
    let producer = node.init(0);
    node.call(add(producer, vec![orders(0)]));
    let started = node.coordinator.transaction_state(ID).expect("known");
    assert_eq!(
        started.txn_start_ms, node.now_ms,
        "the record holds the wall clock"
    );
    // Nine of its ten seconds pass while the wall clock jumps by a day either way.
    for wall_step_ms in [24 * HOUR_MS, -24 * HOUR_MS, 5 * HOUR_MS] {
        node.now_ms += 3_000;
        node.wall_step_ms = wall_step_ms;
        tick(&mut node);
        assert_eq!(
            state(&node),
            TxnState::Ongoing,
            "wall clock at {wall_step_ms} ms"
        );
    }

    // A new coordinator (another process, its monotonic clock near zero, its wall clock a
    // day ahead) loads the open transaction: its timeout counts from the load.
    let mut successor = Node::new();
    for (_, _, batch) in node.log.clone() {
        successor.append(batch);
    }
    successor.now_ms = 50;
    successor.wall_step_ms = 24 * HOUR_MS;
    successor.lead(2);
    successor.now_ms += 9_999;
    tick(&mut successor);
    assert_eq!(state(&successor), TxnState::Ongoing);
    // The next timeout check (one a second), past the ten seconds, the wall clock a day
    // behind: the transaction is aborted all the same.
    successor.now_ms += TIMEOUT_CHECK_INTERVAL_MS;
    successor.wall_step_ms = -24 * HOUR_MS;
    tick(&mut successor);
    assert_eq!(
        state(&successor),
        TxnState::PrepareAbort,
        "timed out, fenced"
    );
}

#[test]
fn a_snapshot_restates_every_id_restarts_no_timer_and_a_log_from_it_is_whole() {
    let mut node = Node::new();
    node.coordinator.snapshot_interval_bytes = 1;
    node.lead(1);
    let producer = node.init(0);
    node.call(add(producer, vec![orders(0)]));
    let began_ms = node.now_ms;
    let before = node.coordinator.transaction_state(ID).cloned();
    assert_eq!(node.state(), TxnState::Ongoing);

    node.now_ms += TIMEOUT_CHECK_INTERVAL_MS;
    let start = node.log_end();
    node.tick_and_commit();
    assert_eq!(node.coordinator.last_snapshot(0), Some(start));
    assert_eq!(node.coordinator.transaction_state(ID).cloned(), before);

    // A log that starts at the snapshot (its replica trimmed below it) holds every id.
    let stored = crate::internal_log::stored_log_from(&node.log, start);
    let mut replayed = Node::new();
    replayed.coordinator.close_shard(0);
    replayed
        .coordinator
        .open_shard(0, Some(&stored), start, node.log_end())
        .expect("the snapshot decodes");
    replayed.view.status = ShardStatus {
        high_watermark: node.log_end(),
        epoch: 2,
        leader: true,
        serves_reads: true,
    };
    replayed.settle();
    assert!(replayed.coordinator.take_fail_stop().is_none());
    assert_eq!(replayed.coordinator.transaction_state(ID).cloned(), before);

    // The open transaction still times out 10 s after it began, not after the snapshot.
    node.now_ms = began_ms + 10_000 + TIMEOUT_CHECK_INTERVAL_MS / 2;
    node.tick_and_commit();
    assert_eq!(node.state(), TxnState::PrepareAbort);
}

#[test]
fn a_transaction_state_log_past_zero_without_a_snapshot_stops_the_node() {
    let mut node = Node::new();
    node.lead(1);
    node.init(0);
    // The same batches as if the log started at 100: no snapshot among them.
    let stored = crate::internal_log::stored_log(&node.log, 100);
    let mut replayed = Node::new();
    replayed.coordinator.close_shard(0);
    replayed
        .coordinator
        .open_shard(0, Some(&stored), 100, node.log_end() + 100)
        .expect("the batches decode");
    replayed.view.status = ShardStatus {
        high_watermark: node.log_end() + 100,
        epoch: 2,
        leader: true,
        serves_reads: true,
    };
    replayed.settle();
    let corrupt = replayed
        .coordinator
        .take_fail_stop()
        .expect("the node stops");
    assert_eq!(
        (corrupt.partition, corrupt.offset),
        (TopicPartition::new(TRANSACTION_STATE_TOPIC, 0), 100)
    );
}

#[test]
fn a_snapshot_does_not_postpone_an_idle_ids_expiration() {
    let mut node = Node::new();
    node.coordinator.snapshot_interval_bytes = 1;
    node.coordinator.config.transactional_id_expiration_ms = 5_000;
    node.lead(1);
    node.init(0);
    let changed_ms = node.now_ms;
    node.now_ms += TIMEOUT_CHECK_INTERVAL_MS;
    let start = node.log_end();
    node.tick_and_commit();
    assert_eq!(node.coordinator.last_snapshot(0), Some(start));
    assert!(node.coordinator.transaction_state(ID).is_some());
    node.now_ms = changed_ms + 5_000 + TIMEOUT_CHECK_INTERVAL_MS / 2;
    node.tick_and_commit();
    assert_eq!(
        node.coordinator.transaction_state(ID),
        None,
        "expired 5 s after its last change, the snapshot notwithstanding"
    );
}
