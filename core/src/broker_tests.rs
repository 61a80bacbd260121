//! Scenario tests of the broker driven through `step`, as a driver would.

use crate::api::*;
use crate::batch::test_batches;
use crate::broker::Broker;
use crate::metadata::TopicPartition;
use bytes::Bytes;
use proptest::prelude::*;

const NOW: i64 = 1_000_000;
/// A produce's timeout, as clients send it (librdkafka's default request timeout).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// A single-node broker whose first outputs (its metadata log's first records) are synced.
fn broker() -> Broker {
    restart(Recovery::default())
}

fn restart(recovery: Recovery) -> Broker {
    let (mut broker, outputs) =
        Broker::new(BrokerConfig::default(), recovery, 7, Now::aligned(NOW));
    sync_all(&mut broker, outputs);
    broker
}

/// Feeds syncs for every append in `outputs` and in what the syncs cause, until nothing new
/// is appended (as a driver's group commit would); returns every output seen.
fn sync_all(broker: &mut Broker, mut outputs: Vec<Output>) -> Vec<Output> {
    let mut synced = 0;
    while let Some(sequence) = last_append_sequence(&outputs).filter(|s| *s > synced) {
        synced = sequence;
        let more = broker.step(
            Now::aligned(NOW),
            Input::Synced {
                through_sequence: sequence,
            },
        );
        outputs.extend(more);
    }
    outputs
}

/// A CreateTopics request for one topic.
fn create_request(
    name: &str,
    partition_count: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> Input {
    Input::Request {
        id: 1,
        request: Request::CreateTopics {
            topics: vec![CreateTopic {
                name: name.into(),
                partition_count,
                replication_factor,
                configs: configs
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
                validate_only: false,
                assignments: Vec::new(),
            }],
        },
    }
}

/// Creates a topic and syncs until the metadata log commits it.
fn create(broker: &mut Broker, name: &str, partition_count: i32) -> Vec<Output> {
    let outputs = broker.step(
        Now::aligned(NOW),
        create_request(name, partition_count, -1, &[]),
    );
    sync_all(broker, outputs)
}

fn produce_request(topic: &str, records: Bytes, acks: Acks) -> Request {
    Request::Produce {
        acks,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        transactional_id: None,
        partitions: vec![ProducePartition {
            partition: TopicPartition::new(topic, 0),
            records,
        }],
    }
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i64, min_bytes: i32) -> Request {
    Request::Fetch {
        max_wait_ms,
        min_bytes,
        max_bytes: 1 << 20,
        isolation: Isolation::ReadCommitted,
        partitions: vec![FetchPartition {
            partition: TopicPartition::new(topic, 0),
            fetch_offset: offset,
            partition_max_bytes: 1 << 20,
            current_leader_epoch: -1,
        }],
    }
}

fn responses(outputs: &[Output]) -> Vec<(RequestId, &Response)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Respond { id, response } => Some((*id, response)),
            Output::Storage(_) | Output::Send { .. } | Output::FailStop(_) => None,
        })
        .collect()
}

fn last_append_sequence(outputs: &[Output]) -> Option<u64> {
    outputs.iter().rev().find_map(|output| match output {
        Output::Storage(StorageCommand::Append { sequence, .. }) => Some(*sequence),
        _ => None,
    })
}

fn produced(response: &Response) -> &ProducePartitionResult {
    match response {
        Response::Produce(results) => &results[0],
        other => panic!("expected a produce response, got {other:?}"),
    }
}

#[test]
/// The view is persisted after the partitions it gives are made: a crash between them
/// leaves orphans that a restart deletes, never a view over data that is not its own (see
/// `apply_committed_metadata`).
fn creating_a_topic_makes_its_partitions_then_persists_the_view() {
    let mut broker = broker();
    let outputs = create(&mut broker, "orders", 3);
    let persisted = outputs
        .iter()
        .position(|o| matches!(o, Output::Storage(StorageCommand::PersistMetadata(_))))
        .expect("the metadata is persisted");
    let created: Vec<usize> = outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Output::Storage(StorageCommand::CreatePartition { .. })))
        .map(|(index, _)| index)
        .collect();
    assert_eq!(created.len(), 3);
    assert!(created.iter().all(|index| *index < persisted));
    let answered = responses(&outputs)[0];
    assert!(
        matches!(answered.1, Response::CreateTopics(results) if results[0].error == ErrorCode::None)
    );
    let again = create(&mut broker, "orders", 3);
    match responses(&again)[0].1 {
        Response::CreateTopics(results) => {
            assert_eq!(results[0].error, ErrorCode::TopicAlreadyExists)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replication_factor_above_the_node_count_is_refused() {
    let mut broker = broker();
    let outputs = broker.step(Now::aligned(NOW), create_request("t", 1, 3, &[]));
    match responses(&outputs)[0].1 {
        Response::CreateTopics(results) => {
            assert_eq!(results[0].error, ErrorCode::InvalidReplicationFactor)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn acks_all_is_answered_only_after_the_sync() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let outputs = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: produce_request("t", test_batches::plain(3, NOW), Acks::All),
        },
    );
    assert!(responses(&outputs).is_empty(), "no ack before durability");
    let sequence = last_append_sequence(&outputs).expect("an append");
    let outputs = broker.step(
        Now::aligned(NOW),
        Input::Synced {
            through_sequence: sequence,
        },
    );
    let answered = responses(&outputs);
    assert_eq!(answered.len(), 1);
    assert_eq!(produced(answered[0].1).base_offset, 0);
    assert_eq!(
        broker.partition_offsets(&TopicPartition::new("t", 0)),
        Some((0, 3, 3))
    );
}

#[test]
fn acks_zero_is_answered_at_once_and_the_data_still_waits_for_the_sync() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let outputs = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: produce_request("t", test_batches::plain(1, NOW), Acks::None),
        },
    );
    assert_eq!(responses(&outputs).len(), 1);
    assert_eq!(
        broker.partition_offsets(&TopicPartition::new("t", 0)),
        Some((0, 0, 1))
    );
}

#[test]
fn a_corrupt_batch_is_refused_and_the_log_is_untouched() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let mut corrupt = test_batches::plain(2, NOW).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let outputs = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: produce_request("t", Bytes::from(corrupt), Acks::All),
        },
    );
    assert!(last_append_sequence(&outputs).is_none());
    assert_eq!(
        produced(responses(&outputs)[0].1).error,
        ErrorCode::CorruptMessage
    );
    assert_eq!(
        broker.partition_offsets(&TopicPartition::new("t", 0)),
        Some((0, 0, 0))
    );
}

#[test]
fn a_produce_to_a_missing_topic_gets_unknown_topic() {
    let mut broker = broker();
    let outputs = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: produce_request("nope", test_batches::plain(1, NOW), Acks::All),
        },
    );
    assert_eq!(
        produced(responses(&outputs)[0].1).error,
        ErrorCode::UnknownTopicOrPartition
    );
}

#[test]
fn a_retried_batch_gets_its_original_offset_only_once_durable() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let batch = test_batches::batch(2, NOW, 0, 0, 0);
    let first = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: produce_request("t", batch.clone(), Acks::All),
        },
    );
    let retry = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 3,
            request: produce_request("t", batch.clone(), Acks::All),
        },
    );
    assert!(
        last_append_sequence(&retry).is_none(),
        "a duplicate is not appended"
    );
    assert!(
        responses(&retry).is_empty(),
        "a duplicate waits for the original's durability"
    );
    let synced = broker.step(
        Now::aligned(NOW),
        Input::Synced {
            through_sequence: last_append_sequence(&first).unwrap(),
        },
    );
    let answered = responses(&synced);
    assert_eq!(answered.len(), 2);
    assert!(answered
        .iter()
        .all(|(_, response)| produced(response).base_offset == 0));
    assert_eq!(
        broker.partition_offsets(&TopicPartition::new("t", 0)),
        Some((0, 2, 2))
    );
    let late = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 4,
            request: produce_request("t", batch, Acks::All),
        },
    );
    assert_eq!(produced(responses(&late)[0].1).base_offset, 0);
}

#[test]
fn a_fetch_long_polls_until_data_is_durable_or_the_deadline() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let outputs = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: fetch_request("t", 0, 500, 1),
        },
    );
    assert!(
        responses(&outputs).is_empty(),
        "nothing to read: the fetch waits"
    );
    assert!(broker.next_wakeup_ms().is_some_and(|at| at <= NOW + 500));
    let produce = broker.step(
        Now::aligned(NOW + 10),
        Input::Request {
            id: 3,
            request: produce_request("t", test_batches::plain(1, NOW), Acks::All),
        },
    );
    let synced = broker.step(
        Now::aligned(NOW + 20),
        Input::Synced {
            through_sequence: last_append_sequence(&produce).unwrap(),
        },
    );
    let answered = responses(&synced);
    assert_eq!(answered.len(), 2, "the produce and the parked fetch");
    match answered.iter().find(|(id, _)| *id == 2).unwrap().1 {
        Response::Fetch(results) => {
            assert_eq!(results[0].high_watermark, 1);
            assert_eq!(results[0].chunks.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    let empty = broker.step(
        Now::aligned(NOW + 30),
        Input::Request {
            id: 4,
            request: fetch_request("t", 1, 500, 1),
        },
    );
    assert!(responses(&empty).is_empty());
    assert!(responses(&broker.step(Now::aligned(NOW + 529), Input::Tick)).is_empty());
    let expired = broker.step(Now::aligned(NOW + 530), Input::Tick);
    match responses(&expired)[0].1 {
        Response::Fetch(results) => assert!(results[0].chunks.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_fetch_beyond_the_high_watermark_is_out_of_range() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let outputs = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: fetch_request("t", 5, 0, 1),
        },
    );
    match responses(&outputs)[0].1 {
        Response::Fetch(results) => assert_eq!(results[0].error, ErrorCode::OffsetOutOfRange),
        other => panic!("{other:?}"),
    }
}

#[test]
fn producer_ids_are_reserved_durably_in_blocks() {
    let mut broker = broker();
    let init = Request::InitProducerId {
        connection_id: 0,
        transaction_timeout_ms: 60_000,
        transactional_id: None,
        producer_id: -1,
        producer_epoch: -1,
    };
    let first = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 1,
            request: init.clone(),
        },
    );
    assert!(matches!(
        first[0],
        Output::Storage(StorageCommand::PersistMetadata(_))
    ));
    let second = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: init,
        },
    );
    assert_eq!(second.len(), 1, "the block is already reserved");
    match (responses(&first)[0].1, responses(&second)[0].1) {
        (
            Response::InitProducerId { producer_id: a, .. },
            Response::InitProducerId { producer_id: b, .. },
        ) => {
            assert_ne!(a, b)
        }
        other => panic!("{other:?}"),
    }
    // After a restart, ids continue above the reserved block.
    let metadata = broker.metadata().clone();
    let mut restarted = restart(Recovery {
        metadata: Some(metadata),
        ..Recovery::default()
    });
    let after = restarted.step(
        Now::aligned(NOW),
        Input::Request {
            id: 3,
            request: Request::InitProducerId {
                connection_id: 0,
                transaction_timeout_ms: 60_000,
                transactional_id: None,
                producer_id: -1,
                producer_epoch: -1,
            },
        },
    );
    match responses(&after)[0].1 {
        Response::InitProducerId { producer_id, .. } => {
            let node_base = 1i64 << crate::broker::PRODUCER_ID_NODE_SHIFT;
            assert!(*producer_id >= node_base + crate::broker::PRODUCER_ID_BLOCK_SIZE)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn retention_deletes_old_segments_on_tick() {
    let mut broker = broker();
    let created = broker.step(
        Now::aligned(NOW),
        create_request(
            "r",
            1,
            1,
            &[("segment.bytes", "1024"), ("retention.ms", "1000")],
        ),
    );
    sync_all(&mut broker, created);
    let mut last_sequence = 0;
    for id in 0..20 {
        let outputs = broker.step(
            Now::aligned(NOW),
            Input::Request {
                id: 10 + id,
                request: produce_request("r", test_batches::plain(10, NOW), Acks::All),
            },
        );
        last_sequence = last_append_sequence(&outputs).unwrap_or(last_sequence);
    }
    broker.step(
        Now::aligned(NOW),
        Input::Synced {
            through_sequence: last_sequence,
        },
    );
    let outputs = broker.step(Now::aligned(NOW + 60_000), Input::Tick);
    let deleted = outputs
        .iter()
        .filter(|o| matches!(o, Output::Storage(StorageCommand::DeleteSegment { .. })))
        .count();
    assert!(deleted > 0);
    let (start, hwm, end) = broker
        .partition_offsets(&TopicPartition::new("r", 0))
        .unwrap();
    assert!(start > 0 && hwm == end && end == 200);
}

/// A random mix of requests, syncs and ticks.
fn arbitrary_inputs() -> impl Strategy<Value = Vec<(i64, Input)>> {
    let input = prop_oneof![
        (1i32..5, 0u8..3).prop_map(|(records, acks)| Input::Request {
            id: 0,
            request: produce_request(
                "d",
                test_batches::plain(records, NOW),
                match acks {
                    0 => Acks::None,
                    1 => Acks::Leader,
                    _ => Acks::All,
                }
            ),
        }),
        (0i64..20, 0i64..200).prop_map(|(offset, wait)| Input::Request {
            id: 0,
            request: fetch_request("d", offset, wait, 1)
        }),
        (0u64..30).prop_map(|through_sequence| Input::Synced { through_sequence }),
        Just(Input::Tick),
        Just(Input::Request {
            id: 0,
            request: Request::InitProducerId {
                connection_id: 0,
                transaction_timeout_ms: 60_000,
                transactional_id: None,
                producer_id: -1,
                producer_epoch: -1
            }
        }),
    ];
    prop::collection::vec((0i64..100, input), 1..60)
}

fn run(inputs: &[(i64, Input)]) -> Vec<Output> {
    let (mut broker, outputs) = Broker::new(
        BrokerConfig::default(),
        Recovery::default(),
        99,
        Now::aligned(NOW),
    );
    let mut outputs = sync_all(&mut broker, outputs);
    outputs.extend(create(&mut broker, "d", 1));
    let mut now = NOW;
    for (index, (advance, input)) in inputs.iter().enumerate() {
        now += advance;
        let mut input = input.clone();
        if let Input::Request { id, .. } = &mut input {
            *id = index as u64 + 100;
        }
        outputs.extend(broker.step(Now::aligned(now), input));
    }
    outputs
}

proptest! {
    /// Determinism: the same input sequence gives the same outputs.
    #[test]
    fn the_same_inputs_give_the_same_outputs(inputs in arbitrary_inputs()) {
        prop_assert_eq!(run(&inputs), run(&inputs));
    }

    /// Every request is answered exactly once, eventually (after a final sync and a late tick).
    #[test]
    fn every_request_gets_exactly_one_response(mut inputs in arbitrary_inputs()) {
        inputs.push((0, Input::Synced { through_sequence: u64::MAX }));
        inputs.push((1_000_000, Input::Tick));
        let outputs = run(&inputs);
        let mut answered: Vec<RequestId> = responses(&outputs).into_iter().map(|(id, _)| id).filter(|id| *id >= 100).collect();
        let asked: Vec<RequestId> = inputs.iter().enumerate().filter(|(_, (_, input))| matches!(input, Input::Request { .. })).map(|(index, _)| index as u64 + 100).collect();
        answered.sort_unstable();
        prop_assert_eq!(answered, asked);
    }
}

/// What storage would report after a restart: every batch `outputs` appended to `topic`,
/// at the offsets the core gave them.
fn recovered_batches(outputs: &[Output], topic: &str) -> Vec<RecoveredBatch> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Storage(StorageCommand::Append {
                partition,
                batch,
                bytes,
                ..
            }) if partition.topic == topic => {
                let mut header = crate::batch::read_header(bytes).unwrap();
                header.base_offset = batch.base_offset;
                header.partition_leader_epoch = batch.leader_epoch;
                Some(RecoveredBatch {
                    position: batch.position,
                    header,
                    control_type: crate::records::control_record_type(bytes),
                })
            }
            _ => None,
        })
        .collect()
}

#[test]
fn producer_state_survives_a_restart_so_a_retry_is_still_a_duplicate() {
    let mut broker = broker();
    let mut outputs = create(&mut broker, "t", 1);
    let batch = test_batches::batch(3, NOW, 5, 0, 0);
    let first = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: produce_request("t", batch.clone(), Acks::All),
        },
    );
    outputs.extend(sync_all(&mut broker, first));
    let batches = recovered_batches(&outputs, "t");
    let recovered = vec![RecoveredPartition {
        partition: TopicPartition::new("t", 0),
        segments: vec![RecoveredSegment {
            base_offset: 0,
            batches,
        }],
        replica_state: None,
        deleted_below: None,
    }];
    let mut restarted = restart(Recovery {
        metadata: Some(broker.metadata().clone()),
        partitions: recovered,
        ..Recovery::default()
    });
    let retry = restarted.step(
        Now::aligned(NOW),
        Input::Request {
            id: 3,
            request: produce_request("t", batch, Acks::All),
        },
    );
    assert!(
        last_append_sequence(&retry).is_none(),
        "the retry is not written again"
    );
    assert_eq!(produced(responses(&retry)[0].1).base_offset, 0);
    let next = test_batches::batch(1, NOW, 5, 0, 3);
    let appended = restarted.step(
        Now::aligned(NOW),
        Input::Request {
            id: 4,
            request: produce_request("t", next, Acks::All),
        },
    );
    assert!(
        last_append_sequence(&appended).is_some(),
        "the next sequence continues"
    );
}

/// The node stops on corrupt data, naming the partition and offset, and asks storage to
/// change nothing of it.
fn assert_fail_stop_leaves_it_as_is(outputs: &[Output], partition: &TopicPartition, offset: i64) {
    let stops: Vec<&CorruptData> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::FailStop(corrupt) => Some(corrupt),
            _ => None,
        })
        .collect();
    assert_eq!(stops.len(), 1, "{outputs:?}");
    assert_eq!((&stops[0].partition, stops[0].offset), (partition, offset));
    let touched = outputs.iter().any(|output| match output {
        Output::Storage(
            StorageCommand::DeletePartition { partition: p }
            | StorageCommand::CreatePartition { partition: p, .. }
            | StorageCommand::Truncate { partition: p, .. }
            | StorageCommand::DeleteSegment { partition: p, .. },
        ) => p == partition,
        _ => false,
    });
    assert!(!touched, "{outputs:?}");
}

#[test]
fn a_recovered_partition_with_an_offset_gap_stops_the_node_and_is_left_as_is() {
    let mut broker = broker();
    let mut outputs = create(&mut broker, "t", 1);
    for (id, sequence) in [(2, 0), (3, 2)] {
        let batch = test_batches::batch(2, NOW, 5, 0, sequence);
        let produced = broker.step(
            Now::aligned(NOW),
            Input::Request {
                id,
                request: produce_request("t", batch, Acks::All),
            },
        );
        outputs.extend(sync_all(&mut broker, produced));
    }
    let mut batches = recovered_batches(&outputs, "t");
    assert_eq!(batches.len(), 2);
    // The second batch claims offset 3 where 2 is due: not what this node wrote.
    batches[1].header.base_offset += 1;
    let partition = TopicPartition::new("t", 0);
    let recovery = Recovery {
        metadata: Some(broker.metadata().clone()),
        partitions: vec![RecoveredPartition {
            partition: partition.clone(),
            segments: vec![RecoveredSegment {
                base_offset: 0,
                batches,
            }],
            replica_state: None,
            deleted_below: None,
        }],
        ..Recovery::default()
    };
    let (_, outputs) = Broker::new(BrokerConfig::default(), recovery, 7, Now::aligned(NOW));
    assert_fail_stop_leaves_it_as_is(&outputs, &partition, 2);
}

#[test]
fn a_recovered_metadata_batch_that_does_not_decode_stops_the_node() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let metadata_partition = crate::controller::metadata_partition();
    let metadata = broker.metadata().clone();
    // The log past the snapshot holds a valid batch whose records are not metadata records.
    let offset = metadata.applied_end_offset;
    let mut garbage = test_batches::batch(1, NOW, -1, -1, -1).to_vec();
    garbage[..8].copy_from_slice(&offset.to_be_bytes());
    let recovery = Recovery {
        metadata: Some(metadata),
        internal_logs: [(metadata_partition.clone(), Bytes::from(garbage))].into(),
        ..Recovery::default()
    };
    let (_, outputs) = Broker::new(BrokerConfig::default(), recovery, 7, Now::aligned(NOW));
    assert_fail_stop_leaves_it_as_is(&outputs, &metadata_partition, offset);
}

/// A broker with topic `t` and an acks=all produce (request 2) written to it at `NOW`, whose
/// sync the caller never reports; returns the broker and the produce's outputs.
fn a_produce_never_synced() -> (Broker, Vec<Output>) {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let written = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: produce_request("t", test_batches::batch(1, NOW, -1, -1, -1), Acks::All),
        },
    );
    (broker, written)
}

#[test]
fn a_produce_not_acknowledged_within_its_timeout_is_answered_request_timed_out() {
    // The batch is written, but its sync never completes.
    let (mut broker, written) = a_produce_never_synced();
    assert!(last_append_sequence(&written).is_some());
    assert!(
        responses(&written).is_empty(),
        "acks=all waits for the sync"
    );
    let deadline = NOW + i64::from(PRODUCE_TIMEOUT_MS);
    assert!(broker.next_wakeup_ms().is_some_and(|at| at <= deadline));
    assert!(responses(&broker.step(Now::aligned(deadline - 1), Input::Tick)).is_empty());
    let expired = broker.step(Now::aligned(deadline), Input::Tick);
    let answered = responses(&expired);
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].0, 2);
    assert_eq!(produced(answered[0].1).error, ErrorCode::RequestTimedOut);
    // The entry is gone: a late sync answers nothing more.
    let late = broker.step(
        Now::aligned(deadline),
        Input::Synced {
            through_sequence: u64::MAX,
        },
    );
    assert!(responses(&late).is_empty(), "{late:?}");
}

#[test]
fn produces_waiting_for_acknowledgement_are_bounded_and_refused_before_writing() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let mut id = 100;
    let mut produce = |broker: &mut Broker| {
        id += 1;
        broker.step(
            Now::aligned(NOW),
            Input::Request {
                id,
                request: produce_request("t", test_batches::batch(1, NOW, -1, -1, -1), Acks::All),
            },
        )
    };
    for _ in 0..crate::broker::WAITING_PRODUCES_MAX {
        assert!(responses(&produce(&mut broker)).is_empty());
    }
    let refused = produce(&mut broker);
    assert!(last_append_sequence(&refused).is_none(), "nothing written");
    assert_eq!(
        produced(responses(&refused)[0].1).error,
        ErrorCode::RequestTimedOut
    );
}

#[test]
fn an_idle_producers_state_expires_and_its_next_batch_is_unknown_producer_id() {
    let mut broker = broker();
    create(&mut broker, "t", 1);
    let first = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 2,
            request: produce_request("t", test_batches::batch(1, NOW, 5, 0, 0), Acks::All),
        },
    );
    sync_all(&mut broker, first);
    let expiration_ms = BrokerConfig::default().producer_id_expiration_ms;
    let later = NOW + expiration_ms + 1_000;
    broker.step(Now::aligned(later), Input::Tick);
    let next = broker.step(
        Now::aligned(later),
        Input::Request {
            id: 3,
            request: produce_request("t", test_batches::batch(1, later, 5, 0, 1), Acks::All),
        },
    );
    assert!(last_append_sequence(&next).is_none(), "nothing written");
    assert_eq!(
        produced(responses(&next)[0].1).error,
        ErrorCode::UnknownProducerId
    );
}

#[test]
fn an_idle_broker_has_no_work_due_until_its_timers() {
    // A driver sleeps until `next_wakeup_ms`: an idle, registered node must not ask to be
    // woken at once, or its core task spins.
    let mut broker = broker();
    broker.step(Now::aligned(NOW), Input::Tick);
    assert!(broker.next_wakeup_ms().is_some_and(|at| at > NOW));
}

// ----- which clock drives what (see `api::Now`) -----

const HOUR_MS: i64 = 60 * 60 * 1000;
/// Steps of the wall clock, applied one after the other: back and forth by hours.
const WALL_CLOCK_STEPS_MS: [i64; 4] = [5 * HOUR_MS, -24 * HOUR_MS, 24 * HOUR_MS, -5 * HOUR_MS];

/// `monotonic_ms` on the monotonic clock, the wall clock stepped by `wall_step_ms`.
fn stepped(monotonic_ms: i64, wall_step_ms: i64) -> Now {
    Now {
        monotonic_ms,
        wall_ms: monotonic_ms + wall_step_ms,
    }
}

#[test]
fn a_wall_clock_step_neither_fires_nor_stalls_a_produce_timeout_or_a_long_poll() {
    // A produce whose sync never completes, and a fetch waiting for what it wrote.
    let (mut broker, waiting) = a_produce_never_synced();
    assert!(responses(&waiting).is_empty());
    let parked = broker.step(
        Now::aligned(NOW),
        Input::Request {
            id: 3,
            request: fetch_request("t", 0, 500, 1),
        },
    );
    assert!(responses(&parked).is_empty());
    for (index, wall_step_ms) in WALL_CLOCK_STEPS_MS.into_iter().enumerate() {
        let monotonic_ms = NOW + 100 * index as i64;
        let ticked = broker.step(stepped(monotonic_ms, wall_step_ms), Input::Tick);
        assert!(
            responses(&ticked).is_empty(),
            "a wall clock stepped by {wall_step_ms} ms expired nothing"
        );
    }
    let long_poll_over = broker.step(stepped(NOW + 500, -24 * HOUR_MS), Input::Tick);
    let answered = responses(&long_poll_over);
    assert_eq!(
        answered.len(),
        1,
        "the fetch's wait is over; the produce's is not"
    );
    assert_eq!(answered[0].0, 3);
    let deadline = NOW + i64::from(PRODUCE_TIMEOUT_MS);
    assert_eq!(
        broker.next_wakeup_ms(),
        Some(NOW + 1_000),
        "retention's next run"
    );
    for wall_step_ms in WALL_CLOCK_STEPS_MS {
        let ticked = broker.step(stepped(deadline - 1, wall_step_ms), Input::Tick);
        assert!(responses(&ticked).is_empty());
    }
    let timed_out = broker.step(stepped(deadline, -24 * HOUR_MS), Input::Tick);
    let answered = responses(&timed_out);
    assert_eq!(answered.len(), 1);
    assert_eq!(produced(answered[0].1).error, ErrorCode::RequestTimedOut);
}

#[test]
fn retention_and_the_timestamps_the_broker_writes_follow_the_wall_clock() {
    let mut broker = broker();
    // The wall clock reads hours away from the monotonic one.
    let wall_ms = NOW + 7 * HOUR_MS;
    let now = Now {
        monotonic_ms: NOW,
        wall_ms,
    };
    let created = broker.step(
        now,
        create_request(
            "r",
            1,
            1,
            &[("segment.bytes", "1024"), ("retention.ms", "3600000")],
        ),
    );
    let metadata_append = created.iter().find_map(|output| match output {
        Output::Storage(StorageCommand::Append { bytes, .. }) => Some(bytes),
        _ => None,
    });
    let header = crate::batch::read_header(metadata_append.expect("the topic's record")).unwrap();
    assert_eq!(header.max_timestamp, wall_ms, "stamped by the wall clock");
    sync_all(&mut broker, created);
    let mut last_sequence = 0;
    for id in 0..20 {
        let outputs = broker.step(
            now,
            Input::Request {
                id: 10 + id,
                request: produce_request("r", test_batches::plain(10, wall_ms), Acks::All),
            },
        );
        last_sequence = last_append_sequence(&outputs).unwrap_or(last_sequence);
    }
    broker.step(
        now,
        Input::Synced {
            through_sequence: last_sequence,
        },
    );
    let deleted = |outputs: &[Output]| {
        outputs
            .iter()
            .filter(|o| matches!(o, Output::Storage(StorageCommand::DeleteSegment { .. })))
            .count()
    };
    // Days pass on the monotonic clock while the wall clock was stepped back: the records
    // are not older than an hour by the wall clock, so nothing is deleted.
    let stepped_back = broker.step(
        Now {
            monotonic_ms: 48 * HOUR_MS,
            wall_ms,
        },
        Input::Tick,
    );
    assert_eq!(deleted(&stepped_back), 0);
    // A second later the wall clock is stepped two hours forward: retention deletes.
    let stepped_forward = broker.step(
        Now {
            monotonic_ms: 48 * HOUR_MS + 1_000,
            wall_ms: wall_ms + 2 * HOUR_MS,
        },
        Input::Tick,
    );
    assert!(deleted(&stepped_forward) > 0);
}
