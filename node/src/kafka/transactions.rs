//! The transaction APIs: AddPartitionsToTxn (api key 24, v0-3), AddOffsetsToTxn (25, v0-3),
//! EndTxn (26, v0-3), TxnOffsetCommit (28, v0-3), DescribeProducers (61, v0),
//! DescribeTransactions (65, v0) and ListTransactions (66, v0-1). A transactional client's
//! other calls live elsewhere: FindCoordinator with key type 1 in `groups`, InitProducerId in
//! `producer_id`, transactional Produce in `produce`, read_committed Fetch in `fetch`.
//!
//! The core coordinates (TxnOffsetCommit goes to the group coordinator, the rest to the
//! transaction coordinator); this module translates. Version differences it handles:
//! - PRODUCER_FENCED (90, KIP-588) is known to AddPartitionsToTxn, AddOffsetsToTxn and EndTxn
//!   clients from v2 and to InitProducerId clients from v4; older versions get
//!   INVALID_PRODUCER_EPOCH (47), as Kafka sends them. No TxnOffsetCommit or Produce version
//!   served here announces it: those always get 47 (Kafka's log layer answers a stale epoch
//!   with 47 there). See `error_for_version`.
//! - TRANSACTION_ABORTABLE (120, KIP-890) came with versions beyond those served here
//!   (AddPartitionsToTxn v5, AddOffsetsToTxn v4, EndTxn v4, TxnOffsetCommit v4, Produce v11):
//!   every client here gets INVALID_TXN_STATE (48) instead, Kafka's answer to older clients.
//! - AddPartitionsToTxn v0-3 name one transaction; v4+ is the broker-to-broker batched form
//!   (verification) and is not advertised. EndTxn v4+ is not advertised either: v5 belongs to
//!   "transaction v2" (an epoch bump per transaction), which no tested client uses.
//! - TxnOffsetCommit v3 carries the consumer's generation, member id and instance id
//!   (KIP-447); before v3 the core gets member id "" and generation -1 (no membership check).
//!   The committed leader epoch (v2+) is not kept, as for OffsetCommit.
//! - ListTransactions v1 adds a duration filter: only transactions open at least that long.
//!
//! Results keep the order of the request. The pure translations (`*_request` /
//! `*_response`) are separate from the handlers so the tests can check every advertised
//! version without a running node.

use crate::kafka::dispatch::{call, wire_string, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use myelin_core::api::{
    DescribedProducers, ErrorCode, ListedTransaction, OffsetCommitPartition, Request, Response,
    TransactionDescription,
};
use myelin_core::metadata::TopicPartition;
use std::collections::BTreeMap;

fn unexpected(request: &'static str) -> HandlerError {
    HandlerError::UnexpectedResponse { request }
}

/// The first version of `api_key` whose clients know PRODUCER_FENCED (KIP-588), if any
/// version this node serves does.
fn producer_fenced_since(api_key: ApiKey) -> Option<i16> {
    match api_key {
        ApiKey::InitProducerId => Some(4),
        ApiKey::AddPartitionsToTxn | ApiKey::AddOffsetsToTxn | ApiKey::EndTxn => Some(2),
        _ => None,
    }
}

/// The core's `error` as a client of `api_key` at `version` must receive it: the
/// transaction errors newer than its version become the older codes Kafka sends instead.
pub(crate) fn error_for_version(api_key: ApiKey, version: i16, error: ErrorCode) -> ErrorCode {
    match error {
        ErrorCode::ProducerFenced
            if producer_fenced_since(api_key).is_none_or(|since| version < since) =>
        {
            ErrorCode::InvalidProducerEpoch
        }
        // Only versions beyond those served here know TRANSACTION_ABORTABLE (KIP-890).
        ErrorCode::TransactionAbortable => ErrorCode::InvalidTxnState,
        other => other,
    }
}

/// Topics and their partitions, in the order of the request, as core partitions.
fn partitions_of<'a>(
    topics: impl IntoIterator<Item = (&'a str, &'a [i32])>,
) -> Vec<TopicPartition> {
    topics
        .into_iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .map(move |&partition| TopicPartition::new(topic, partition))
        })
        .collect()
}

// ----- AddPartitionsToTxn -----

fn add_partitions_request(request: &AddPartitionsToTxnRequest) -> Request {
    Request::AddPartitionsToTxn {
        connection_id: 0,
        transactional_id: request.v3_and_below_transactional_id.to_string(),
        producer_id: request.v3_and_below_producer_id.0,
        producer_epoch: request.v3_and_below_producer_epoch,
        partitions: partitions_of(
            request
                .v3_and_below_topics
                .iter()
                .map(|topic| (topic.name.as_str(), topic.partitions.as_slice())),
        ),
    }
}

fn add_partitions_response(
    version: i16,
    request: &AddPartitionsToTxnRequest,
    results: Vec<(TopicPartition, ErrorCode)>,
) -> AddPartitionsToTxnResponse {
    let errors: BTreeMap<TopicPartition, ErrorCode> = results.into_iter().collect();
    let mut body = AddPartitionsToTxnResponse::default();
    body.throttle_time_ms = 0;
    body.results_by_topic_v3_and_below = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            let mut topic_result = AddPartitionsToTxnTopicResult::default();
            topic_result.name = topic.name.clone();
            topic_result.results_by_partition = topic
                .partitions
                .iter()
                .map(|&partition_index| {
                    let key = TopicPartition::new(topic.name.as_str(), partition_index);
                    // The core answers every partition; a missing one is retriable.
                    let error = errors
                        .get(&key)
                        .copied()
                        .unwrap_or(ErrorCode::CoordinatorNotAvailable);
                    let mut result = AddPartitionsToTxnPartitionResult::default();
                    result.partition_index = partition_index;
                    result.partition_error_code =
                        error_for_version(ApiKey::AddPartitionsToTxn, version, error).code();
                    result
                })
                .collect();
            topic_result
        })
        .collect();
    body
}

pub(crate) async fn add_partitions_to_txn(
    context: &ConnectionContext,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> Result<Reply, HandlerError> {
    let Response::AddPartitionsToTxn(results) =
        call(context, add_partitions_request(&request)).await?
    else {
        return Err(unexpected("AddPartitionsToTxn"));
    };
    Ok(Reply::small(add_partitions_response(
        version, &request, results,
    )))
}

// ----- AddOffsetsToTxn, EndTxn -----

fn add_offsets_request(request: &AddOffsetsToTxnRequest) -> Request {
    Request::AddOffsetsToTxn {
        connection_id: 0,
        transactional_id: request.transactional_id.to_string(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        group_id: request.group_id.to_string(),
    }
}

fn add_offsets_response(version: i16, error: ErrorCode) -> AddOffsetsToTxnResponse {
    let mut body = AddOffsetsToTxnResponse::default();
    body.throttle_time_ms = 0;
    body.error_code = error_for_version(ApiKey::AddOffsetsToTxn, version, error).code();
    body
}

pub(crate) async fn add_offsets_to_txn(
    context: &ConnectionContext,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> Result<Reply, HandlerError> {
    let Response::AddOffsetsToTxn { error } = call(context, add_offsets_request(&request)).await?
    else {
        return Err(unexpected("AddOffsetsToTxn"));
    };
    Ok(Reply::small(add_offsets_response(version, error)))
}

fn end_txn_request(request: &EndTxnRequest) -> Request {
    Request::EndTxn {
        connection_id: 0,
        transactional_id: request.transactional_id.to_string(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        commit: request.committed,
    }
}

/// v0-3 carry only the error (the new producer id and epoch are v5, transaction v2).
fn end_txn_response(version: i16, error: ErrorCode) -> EndTxnResponse {
    let mut body = EndTxnResponse::default();
    body.throttle_time_ms = 0;
    body.error_code = error_for_version(ApiKey::EndTxn, version, error).code();
    body
}

pub(crate) async fn end_txn(
    context: &ConnectionContext,
    version: i16,
    request: EndTxnRequest,
) -> Result<Reply, HandlerError> {
    let Response::EndTxn { error } = call(context, end_txn_request(&request)).await? else {
        return Err(unexpected("EndTxn"));
    };
    Ok(Reply::small(end_txn_response(version, error)))
}

// ----- TxnOffsetCommit -----

fn txn_offset_commit_request(version: i16, request: &TxnOffsetCommitRequest) -> Request {
    // Group metadata exists from v3 (KIP-447); before, the coordinator checks no membership.
    let (member_id, group_instance_id, generation) = if version >= 3 {
        (
            request.member_id.to_string(),
            request
                .group_instance_id
                .as_ref()
                .map(|instance| instance.to_string()),
            request.generation_id,
        )
    } else {
        (String::new(), None, -1)
    };
    Request::TxnOffsetCommit {
        transactional_id: request.transactional_id.to_string(),
        group_id: request.group_id.to_string(),
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
        member_id,
        group_instance_id,
        generation,
        commits: request
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| OffsetCommitPartition {
                        partition: TopicPartition::new(
                            topic.name.as_str(),
                            partition.partition_index,
                        ),
                        offset: partition.committed_offset,
                        metadata: partition
                            .committed_metadata
                            .as_ref()
                            .map(|metadata| metadata.to_string()),
                        // -1 below v2, which lacks the field.
                        leader_epoch: partition.committed_leader_epoch,
                    })
            })
            .collect(),
    }
}

fn txn_offset_commit_response(
    version: i16,
    request: &TxnOffsetCommitRequest,
    results: Vec<(TopicPartition, ErrorCode)>,
) -> TxnOffsetCommitResponse {
    let errors: BTreeMap<TopicPartition, ErrorCode> = results.into_iter().collect();
    let mut body = TxnOffsetCommitResponse::default();
    body.throttle_time_ms = 0;
    body.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut response = TxnOffsetCommitResponseTopic::default();
            response.name = topic.name.clone();
            response.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let key = TopicPartition::new(topic.name.as_str(), partition.partition_index);
                    // The core answers every partition; a missing one is retriable.
                    let error = errors
                        .get(&key)
                        .copied()
                        .unwrap_or(ErrorCode::CoordinatorNotAvailable);
                    let mut result = TxnOffsetCommitResponsePartition::default();
                    result.partition_index = partition.partition_index;
                    result.error_code =
                        error_for_version(ApiKey::TxnOffsetCommit, version, error).code();
                    result
                })
                .collect();
            response
        })
        .collect();
    body
}

pub(crate) async fn txn_offset_commit(
    context: &ConnectionContext,
    version: i16,
    request: TxnOffsetCommitRequest,
) -> Result<Reply, HandlerError> {
    let Response::TxnOffsetCommit(results) =
        call(context, txn_offset_commit_request(version, &request)).await?
    else {
        return Err(unexpected("TxnOffsetCommit"));
    };
    Ok(Reply::small(txn_offset_commit_response(
        version, &request, results,
    )))
}

// ----- DescribeTransactions, ListTransactions, DescribeProducers -----

fn describe_transactions_request(request: &DescribeTransactionsRequest) -> Request {
    Request::DescribeTransactions {
        transactional_ids: request
            .transactional_ids
            .iter()
            .map(|id| id.to_string())
            .collect(),
    }
}

/// One transactional id's entry; with an error only the id and the error, as Kafka sends.
fn described_state(
    id: &TransactionalId,
    answer: Option<&TransactionDescription>,
) -> DescribedState {
    let mut state = DescribedState::default();
    state.transactional_id = id.clone();
    // The core answers every id; a missing one is retriable.
    let Some(described) = answer.filter(|described| described.error == ErrorCode::None) else {
        state.error_code = answer
            .map_or(ErrorCode::CoordinatorNotAvailable, |described| {
                described.error
            })
            .code();
        return state;
    };
    state.error_code = ErrorCode::None.code();
    state.transaction_state = wire_string(described.state.kafka_name());
    state.transaction_timeout_ms = described.timeout_ms;
    state.transaction_start_time_ms = described.start_ms;
    state.producer_id = ProducerId(described.producer_id);
    state.producer_epoch = described.producer_epoch;
    let mut topics: Vec<TopicData> = Vec::new();
    for partition in &described.partitions {
        match topics
            .iter_mut()
            .find(|topic| topic.topic.as_str() == partition.topic)
        {
            Some(topic) => topic.partitions.push(partition.partition),
            None => {
                let mut topic = TopicData::default();
                topic.topic = TopicName(wire_string(partition.topic.clone()));
                topic.partitions = vec![partition.partition];
                topics.push(topic);
            }
        }
    }
    state.topics = topics;
    state
}

fn describe_transactions_response(
    request: &DescribeTransactionsRequest,
    described: Vec<TransactionDescription>,
) -> DescribeTransactionsResponse {
    // Looked up, not consumed: an id asked twice is answered twice, the same way.
    let by_id: BTreeMap<&str, &TransactionDescription> = described
        .iter()
        .map(|description| (description.transactional_id.as_str(), description))
        .collect();
    let mut body = DescribeTransactionsResponse::default();
    body.throttle_time_ms = 0;
    body.transaction_states = request
        .transactional_ids
        .iter()
        .map(|id| described_state(id, by_id.get(id.as_str()).copied()))
        .collect();
    body
}

pub(crate) async fn describe_transactions(
    context: &ConnectionContext,
    _version: i16,
    request: DescribeTransactionsRequest,
) -> Result<Reply, HandlerError> {
    let Response::DescribeTransactions(described) =
        call(context, describe_transactions_request(&request)).await?
    else {
        return Err(unexpected("DescribeTransactions"));
    };
    Ok(Reply::small(describe_transactions_response(
        &request, described,
    )))
}

fn list_transactions_request(request: &ListTransactionsRequest) -> Request {
    Request::ListTransactions {
        state_filters: request
            .state_filters
            .iter()
            .map(|state| state.to_string())
            .collect(),
        producer_id_filters: request.producer_id_filters.iter().map(|id| id.0).collect(),
        min_duration_ms: request.duration_filter,
    }
}

fn list_transactions_response(
    error: ErrorCode,
    transactions: Vec<ListedTransaction>,
    unknown_state_filters: Vec<String>,
) -> ListTransactionsResponse {
    let mut body = ListTransactionsResponse::default();
    body.throttle_time_ms = 0;
    body.error_code = error.code();
    body.unknown_state_filters = unknown_state_filters.into_iter().map(wire_string).collect();
    body.transaction_states = transactions
        .into_iter()
        .map(|transaction| {
            let mut state = ListedState::default();
            state.transactional_id = TransactionalId(wire_string(transaction.transactional_id));
            state.producer_id = ProducerId(transaction.producer_id);
            state.transaction_state = wire_string(transaction.state.kafka_name());
            state
        })
        .collect();
    body
}

pub(crate) async fn list_transactions(
    context: &ConnectionContext,
    _version: i16,
    request: ListTransactionsRequest,
) -> Result<Reply, HandlerError> {
    let Response::ListTransactions {
        error,
        transactions,
        unknown_state_filters,
    } = call(context, list_transactions_request(&request)).await?
    else {
        return Err(unexpected("ListTransactions"));
    };
    Ok(Reply::small(list_transactions_response(
        error,
        transactions,
        unknown_state_filters,
    )))
}

fn describe_producers_request(request: &DescribeProducersRequest) -> Request {
    Request::DescribeProducers {
        partitions: partitions_of(
            request
                .topics
                .iter()
                .map(|topic| (topic.name.as_str(), topic.partition_indexes.as_slice())),
        ),
    }
}

fn producer_state(producer: &myelin_core::api::ProducerDescription) -> ProducerState {
    let mut state = ProducerState::default();
    state.producer_id = ProducerId(producer.producer_id);
    state.producer_epoch = i32::from(producer.producer_epoch);
    state.last_sequence = producer.last_sequence;
    state.last_timestamp = producer.last_timestamp_ms;
    state.coordinator_epoch = producer.coordinator_epoch;
    state.current_txn_start_offset = producer.current_txn_start_offset;
    state
}

fn describe_producers_response(
    request: &DescribeProducersRequest,
    described: Vec<DescribedProducers>,
) -> DescribeProducersResponse {
    let by_partition: BTreeMap<&TopicPartition, &DescribedProducers> = described
        .iter()
        .map(|partition| (&partition.partition, partition))
        .collect();
    let mut body = DescribeProducersResponse::default();
    body.throttle_time_ms = 0;
    body.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut topic_response = TopicResponse::default();
            topic_response.name = topic.name.clone();
            topic_response.partitions = topic
                .partition_indexes
                .iter()
                .map(|&partition_index| {
                    let key = TopicPartition::new(topic.name.as_str(), partition_index);
                    let mut partition = PartitionResponse::default();
                    partition.partition_index = partition_index;
                    // The core answers every partition; a missing one is unknown here.
                    let (error, producers) = match by_partition.get(&key) {
                        Some(described) => (described.error, described.producers.as_slice()),
                        None => (ErrorCode::UnknownTopicOrPartition, &[][..]),
                    };
                    partition.error_code = error.code();
                    if error != ErrorCode::None {
                        partition.error_message = Some(wire_string(format!(
                            "cannot describe the producers of {key}: {error:?}"
                        )));
                    }
                    partition.active_producers = producers.iter().map(producer_state).collect();
                    partition
                })
                .collect();
            topic_response
        })
        .collect();
    body
}

pub(crate) async fn describe_producers(
    context: &ConnectionContext,
    _version: i16,
    request: DescribeProducersRequest,
) -> Result<Reply, HandlerError> {
    let Response::DescribeProducers(described) =
        call(context, describe_producers_request(&request)).await?
    else {
        return Err(unexpected("DescribeProducers"));
    };
    Ok(Reply::small(describe_producers_response(
        &request, described,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::test_support::{over_the_wire, text, versions};
    use bytes::BytesMut;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{GroupId, RequestKind};
    use kafka_protocol::protocol::Encodable;
    use myelin_core::api::{ProducerDescription, TxnState};

    fn txn_id(value: &'static str) -> TransactionalId {
        TransactionalId(text(value))
    }

    #[test]
    fn producer_fenced_reaches_only_the_versions_that_know_it() {
        let cases = [
            (ApiKey::InitProducerId, Some(4)),
            (ApiKey::AddPartitionsToTxn, Some(2)),
            (ApiKey::AddOffsetsToTxn, Some(2)),
            (ApiKey::EndTxn, Some(2)),
            (ApiKey::TxnOffsetCommit, None),
            (ApiKey::Produce, None),
        ];
        for (api_key, since) in cases {
            for version in versions(api_key) {
                let fenced = error_for_version(api_key, version, ErrorCode::ProducerFenced);
                let expected = match since {
                    Some(since) if version >= since => ErrorCode::ProducerFenced,
                    _ => ErrorCode::InvalidProducerEpoch,
                };
                assert_eq!(fenced, expected, "{api_key:?} v{version}");
                assert_eq!(
                    error_for_version(api_key, version, ErrorCode::TransactionAbortable),
                    ErrorCode::InvalidTxnState,
                    "{api_key:?} v{version}"
                );
                for passed in [
                    ErrorCode::None,
                    ErrorCode::ConcurrentTransactions,
                    ErrorCode::InvalidProducerIdMapping,
                    ErrorCode::InvalidTxnState,
                    ErrorCode::NotCoordinator,
                    ErrorCode::InvalidProducerEpoch,
                ] {
                    assert_eq!(error_for_version(api_key, version, passed), passed);
                }
            }
        }
    }

    fn add_partitions(version: i16) -> AddPartitionsToTxnRequest {
        let mut orders = AddPartitionsToTxnTopic::default();
        orders.name = TopicName(text("orders"));
        orders.partitions = vec![0, 2];
        let mut payments = AddPartitionsToTxnTopic::default();
        payments.name = TopicName(text("payments"));
        payments.partitions = vec![1];
        let mut request = AddPartitionsToTxnRequest::default();
        request.v3_and_below_transactional_id = txn_id("tx");
        request.v3_and_below_producer_id = ProducerId(7);
        request.v3_and_below_producer_epoch = 3;
        request.v3_and_below_topics = vec![orders, payments];
        over_the_wire(&request, version)
    }

    #[test]
    fn add_partitions_to_txn_passes_every_partition_and_answers_each_in_request_order() {
        for version in versions(ApiKey::AddPartitionsToTxn) {
            let request = add_partitions(version);
            let core = add_partitions_request(&request);
            assert_eq!(
                core,
                Request::AddPartitionsToTxn {
                    connection_id: 0,
                    transactional_id: "tx".into(),
                    producer_id: 7,
                    producer_epoch: 3,
                    partitions: vec![
                        TopicPartition::new("orders", 0),
                        TopicPartition::new("orders", 2),
                        TopicPartition::new("payments", 1),
                    ],
                },
                "v{version}"
            );
            // The core's answers in another order; one partition left unanswered.
            let results = vec![
                (
                    TopicPartition::new("payments", 1),
                    ErrorCode::ProducerFenced,
                ),
                (TopicPartition::new("orders", 0), ErrorCode::None),
            ];
            let body = over_the_wire(
                &add_partitions_response(version, &request, results),
                version,
            );
            let answers: Vec<(&str, i32, i16)> = body
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|topic| {
                    topic.results_by_partition.iter().map(|partition| {
                        (
                            topic.name.as_str(),
                            partition.partition_index,
                            partition.partition_error_code,
                        )
                    })
                })
                .collect();
            let fenced = if version >= 2 { 90 } else { 47 };
            assert_eq!(
                answers,
                vec![("orders", 0, 0), ("orders", 2, 15), ("payments", 1, fenced)],
                "v{version}"
            );
        }
    }

    #[test]
    fn add_offsets_and_end_txn_translate_and_answer_every_version() {
        for version in versions(ApiKey::AddOffsetsToTxn) {
            let mut request = AddOffsetsToTxnRequest::default();
            request.transactional_id = txn_id("tx");
            request.producer_id = ProducerId(7);
            request.producer_epoch = 3;
            request.group_id = GroupId(text("group"));
            let request = over_the_wire(&request, version);
            assert_eq!(
                add_offsets_request(&request),
                Request::AddOffsetsToTxn {
                    connection_id: 0,
                    transactional_id: "tx".into(),
                    producer_id: 7,
                    producer_epoch: 3,
                    group_id: "group".into(),
                }
            );
            for (error, expected) in [
                (ErrorCode::None, 0),
                (ErrorCode::ConcurrentTransactions, 51),
                (
                    ErrorCode::ProducerFenced,
                    if version >= 2 { 90 } else { 47 },
                ),
            ] {
                let body = over_the_wire(&add_offsets_response(version, error), version);
                assert_eq!(body.error_code, expected, "v{version}");
            }
        }
        for version in versions(ApiKey::EndTxn) {
            for committed in [true, false] {
                let mut request = EndTxnRequest::default();
                request.transactional_id = txn_id("tx");
                request.producer_id = ProducerId(7);
                request.producer_epoch = 3;
                request.committed = committed;
                let request = over_the_wire(&request, version);
                assert_eq!(
                    end_txn_request(&request),
                    Request::EndTxn {
                        connection_id: 0,
                        transactional_id: "tx".into(),
                        producer_id: 7,
                        producer_epoch: 3,
                        commit: committed,
                    }
                );
            }
            for (error, expected) in [
                (ErrorCode::None, 0),
                (ErrorCode::InvalidTxnState, 48),
                (
                    ErrorCode::ProducerFenced,
                    if version >= 2 { 90 } else { 47 },
                ),
                (ErrorCode::TransactionAbortable, 48),
            ] {
                let body = over_the_wire(&end_txn_response(version, error), version);
                assert_eq!(body.error_code, expected, "v{version}");
            }
        }
    }

    fn txn_commit(version: i16) -> TxnOffsetCommitRequest {
        let mut partition = TxnOffsetCommitRequestPartition::default();
        partition.partition_index = 1;
        partition.committed_offset = 42;
        if version >= 2 {
            partition.committed_leader_epoch = 5;
        }
        partition.committed_metadata = Some(text("meta"));
        let mut other = TxnOffsetCommitRequestPartition::default();
        other.partition_index = 2;
        other.committed_offset = 7;
        other.committed_metadata = None;
        let mut topic = TxnOffsetCommitRequestTopic::default();
        topic.name = TopicName(text("orders"));
        topic.partitions = vec![partition, other];
        let mut request = TxnOffsetCommitRequest::default();
        request.transactional_id = txn_id("tx");
        request.group_id = GroupId(text("group"));
        request.producer_id = ProducerId(7);
        request.producer_epoch = 3;
        if version >= 3 {
            request.generation_id = 4;
            request.member_id = text("member");
            request.group_instance_id = Some(text("instance"));
        }
        request.topics = vec![topic];
        over_the_wire(&request, version)
    }

    #[test]
    fn txn_offset_commit_sends_group_metadata_from_v3_and_none_before() {
        for version in versions(ApiKey::TxnOffsetCommit) {
            let request = txn_commit(version);
            let (member_id, group_instance_id, generation) = if version >= 3 {
                ("member".to_string(), Some("instance".to_string()), 4)
            } else {
                (String::new(), None, -1)
            };
            assert_eq!(
                txn_offset_commit_request(version, &request),
                Request::TxnOffsetCommit {
                    transactional_id: "tx".into(),
                    group_id: "group".into(),
                    producer_id: 7,
                    producer_epoch: 3,
                    member_id,
                    group_instance_id,
                    generation,
                    commits: vec![
                        OffsetCommitPartition {
                            partition: TopicPartition::new("orders", 1),
                            offset: 42,
                            metadata: Some("meta".into()),
                            leader_epoch: if version >= 2 { 5 } else { -1 },
                        },
                        OffsetCommitPartition {
                            partition: TopicPartition::new("orders", 2),
                            offset: 7,
                            metadata: None,
                            leader_epoch: -1,
                        },
                    ],
                },
                "v{version}"
            );
        }
    }

    #[test]
    fn txn_offset_commit_answers_each_partition_and_never_says_producer_fenced() {
        for version in versions(ApiKey::TxnOffsetCommit) {
            let request = txn_commit(version);
            let results = vec![
                (TopicPartition::new("orders", 2), ErrorCode::ProducerFenced),
                (TopicPartition::new("orders", 1), ErrorCode::None),
            ];
            let body = txn_offset_commit_response(version, &request, results);
            let body = over_the_wire(&body, version);
            let answers: Vec<(&str, i32, i16)> = body
                .topics
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(|p| (topic.name.as_str(), p.partition_index, p.error_code))
                })
                .collect();
            assert_eq!(answers, vec![("orders", 1, 0), ("orders", 2, 47)]);
            // Unanswered partitions are retriable.
            let body = over_the_wire(
                &txn_offset_commit_response(version, &request, Vec::new()),
                version,
            );
            assert!(body.topics[0].partitions.iter().all(|p| p.error_code == 15));
        }
    }

    #[test]
    fn describe_transactions_answers_each_id_in_request_order() {
        let mut request = DescribeTransactionsRequest::default();
        request.transactional_ids = vec![txn_id("open"), txn_id("gone"), txn_id("lost")];
        let request = over_the_wire(&request, 0);
        assert_eq!(
            describe_transactions_request(&request),
            Request::DescribeTransactions {
                transactional_ids: vec!["open".into(), "gone".into(), "lost".into()]
            }
        );
        let described = vec![
            TransactionDescription {
                transactional_id: "gone".into(),
                error: ErrorCode::TransactionalIdNotFound,
                state: TxnState::Empty,
                producer_id: -1,
                producer_epoch: -1,
                timeout_ms: -1,
                start_ms: -1,
                partitions: Vec::new(),
            },
            TransactionDescription {
                transactional_id: "open".into(),
                error: ErrorCode::None,
                state: TxnState::Ongoing,
                producer_id: 7,
                producer_epoch: 3,
                timeout_ms: 60_000,
                start_ms: 1_000,
                partitions: vec![
                    TopicPartition::new("orders", 0),
                    TopicPartition::new("__consumer_offsets", 4),
                    TopicPartition::new("orders", 2),
                ],
            },
        ];
        let body = over_the_wire(&describe_transactions_response(&request, described), 0);
        let states = &body.transaction_states;
        assert_eq!(states.len(), 3);
        let open = &states[0];
        assert_eq!(
            (
                open.transactional_id.as_str(),
                open.error_code,
                open.transaction_state.as_str(),
                open.transaction_timeout_ms,
                open.transaction_start_time_ms,
                open.producer_id.0,
                open.producer_epoch,
            ),
            ("open", 0, "Ongoing", 60_000, 1_000, 7, 3)
        );
        let topics: Vec<(&str, &[i32])> = open
            .topics
            .iter()
            .map(|topic| (topic.topic.as_str(), topic.partitions.as_slice()))
            .collect();
        assert_eq!(
            topics,
            vec![("orders", &[0, 2][..]), ("__consumer_offsets", &[4][..])]
        );
        assert_eq!(
            (states[1].transactional_id.as_str(), states[1].error_code),
            ("gone", 105)
        );
        assert!(states[1].topics.is_empty());
        assert_eq!(
            (states[2].transactional_id.as_str(), states[2].error_code),
            ("lost", 15)
        );
    }

    #[test]
    fn list_transactions_passes_the_filters_and_lists_states_by_kafka_name() {
        for version in versions(ApiKey::ListTransactions) {
            let mut request = ListTransactionsRequest::default();
            request.state_filters = vec![text("Ongoing"), text("Nonsense")];
            request.producer_id_filters = vec![ProducerId(7)];
            if version >= 1 {
                request.duration_filter = 5_000;
            }
            let request = over_the_wire(&request, version);
            assert_eq!(
                list_transactions_request(&request),
                Request::ListTransactions {
                    state_filters: vec!["Ongoing".into(), "Nonsense".into()],
                    producer_id_filters: vec![7],
                    min_duration_ms: if version >= 1 { 5_000 } else { -1 },
                }
            );
            let listed = vec![ListedTransaction {
                transactional_id: "tx".into(),
                producer_id: 7,
                state: TxnState::PrepareCommit,
            }];
            let body = list_transactions_response(ErrorCode::None, listed, vec!["Nonsense".into()]);
            let body = over_the_wire(&body, version);
            assert_eq!(body.error_code, 0);
            assert_eq!(body.unknown_state_filters, vec![text("Nonsense")]);
            let states: Vec<(&str, i64, &str)> = body
                .transaction_states
                .iter()
                .map(|s| {
                    (
                        s.transactional_id.as_str(),
                        s.producer_id.0,
                        s.transaction_state.as_str(),
                    )
                })
                .collect();
            assert_eq!(states, vec![("tx", 7, "PrepareCommit")]);
        }
    }

    #[test]
    fn describe_producers_answers_each_partition_in_request_order() {
        let mut orders = TopicRequest::default();
        orders.name = TopicName(text("orders"));
        orders.partition_indexes = vec![0, 1];
        let mut request = DescribeProducersRequest::default();
        request.topics = vec![orders];
        let request = over_the_wire(&request, 0);
        assert_eq!(
            describe_producers_request(&request),
            Request::DescribeProducers {
                partitions: vec![
                    TopicPartition::new("orders", 0),
                    TopicPartition::new("orders", 1)
                ]
            }
        );
        let described = vec![
            DescribedProducers {
                partition: TopicPartition::new("orders", 1),
                error: ErrorCode::NotLeaderOrFollower,
                producers: Vec::new(),
            },
            DescribedProducers {
                partition: TopicPartition::new("orders", 0),
                error: ErrorCode::None,
                producers: vec![ProducerDescription {
                    producer_id: 7,
                    producer_epoch: 3,
                    last_sequence: 41,
                    last_timestamp_ms: 1_700,
                    coordinator_epoch: 2,
                    current_txn_start_offset: 30,
                }],
            },
        ];
        let body = over_the_wire(&describe_producers_response(&request, described), 0);
        let partitions = &body.topics[0].partitions;
        assert_eq!(
            (partitions[0].partition_index, partitions[0].error_code),
            (0, 0)
        );
        assert_eq!(partitions[0].error_message, None);
        let producer = &partitions[0].active_producers[0];
        assert_eq!(
            (
                producer.producer_id.0,
                producer.producer_epoch,
                producer.last_sequence,
                producer.last_timestamp,
                producer.coordinator_epoch,
                producer.current_txn_start_offset,
            ),
            (7, 3, 41, 1_700, 2, 30)
        );
        assert_eq!(
            (partitions[1].partition_index, partitions[1].error_code),
            (1, 6)
        );
        assert!(partitions[1].error_message.is_some());
        assert!(partitions[1].active_producers.is_empty());
    }

    // ----- Hostile input -----

    /// Every transaction request of `version`, fields of that version set.
    fn every_transaction_request(version: i16) -> Vec<(ApiKey, RequestKind)> {
        let mut requests = Vec::new();
        let supports = |api_key| versions(api_key).contains(&version);
        if supports(ApiKey::AddPartitionsToTxn) {
            requests.push((ApiKey::AddPartitionsToTxn, add_partitions(version).into()));
        }
        if supports(ApiKey::AddOffsetsToTxn) {
            let mut request = AddOffsetsToTxnRequest::default();
            request.transactional_id = txn_id("tx");
            request.group_id = GroupId(text("group"));
            requests.push((ApiKey::AddOffsetsToTxn, request.into()));
        }
        if supports(ApiKey::EndTxn) {
            let mut request = EndTxnRequest::default();
            request.transactional_id = txn_id("tx");
            request.committed = true;
            requests.push((ApiKey::EndTxn, request.into()));
        }
        if supports(ApiKey::TxnOffsetCommit) {
            requests.push((ApiKey::TxnOffsetCommit, txn_commit(version).into()));
        }
        if supports(ApiKey::DescribeTransactions) {
            let mut request = DescribeTransactionsRequest::default();
            request.transactional_ids = vec![txn_id("a"), txn_id("b")];
            requests.push((ApiKey::DescribeTransactions, request.into()));
        }
        if supports(ApiKey::ListTransactions) {
            let mut request = ListTransactionsRequest::default();
            request.state_filters = vec![text("Ongoing")];
            request.producer_id_filters = vec![ProducerId(7)];
            requests.push((ApiKey::ListTransactions, request.into()));
        }
        if supports(ApiKey::DescribeProducers) {
            let mut topic = TopicRequest::default();
            topic.name = TopicName(text("orders"));
            topic.partition_indexes = vec![0, 1];
            let mut request = DescribeProducersRequest::default();
            request.topics = vec![topic];
            requests.push((ApiKey::DescribeProducers, request.into()));
        }
        requests
    }

    /// What the handler would do with a decoded request, the core's answer made up from
    /// the request itself: translate, answer, encode. Must return, never panic.
    fn translate_and_answer(version: i16, request: RequestKind) {
        let mut buffer = BytesMut::new();
        // An encoding error is allowed (it closes the connection); a panic is not.
        let _ = match request {
            RequestKind::AddPartitionsToTxn(request) => {
                let Request::AddPartitionsToTxn { partitions, .. } =
                    add_partitions_request(&request)
                else {
                    panic!("not an AddPartitionsToTxn");
                };
                let results = partitions
                    .into_iter()
                    .map(|partition| (partition, ErrorCode::ProducerFenced))
                    .collect();
                add_partitions_response(version, &request, results).encode(&mut buffer, version)
            }
            RequestKind::AddOffsetsToTxn(request) => {
                let _ = add_offsets_request(&request);
                add_offsets_response(version, ErrorCode::None).encode(&mut buffer, version)
            }
            RequestKind::EndTxn(request) => {
                let _ = end_txn_request(&request);
                end_txn_response(version, ErrorCode::None).encode(&mut buffer, version)
            }
            RequestKind::TxnOffsetCommit(request) => {
                let Request::TxnOffsetCommit { commits, .. } =
                    txn_offset_commit_request(version, &request)
                else {
                    panic!("not a TxnOffsetCommit");
                };
                let results = commits
                    .into_iter()
                    .map(|commit| (commit.partition, ErrorCode::None))
                    .collect();
                txn_offset_commit_response(version, &request, results).encode(&mut buffer, version)
            }
            RequestKind::DescribeTransactions(request) => {
                let Request::DescribeTransactions { transactional_ids } =
                    describe_transactions_request(&request)
                else {
                    panic!("not a DescribeTransactions");
                };
                let described = transactional_ids
                    .into_iter()
                    .map(|transactional_id| TransactionDescription {
                        transactional_id,
                        error: ErrorCode::None,
                        state: TxnState::Ongoing,
                        producer_id: 1,
                        producer_epoch: 0,
                        timeout_ms: 1,
                        start_ms: 0,
                        partitions: vec![TopicPartition::new("t", 0)],
                    })
                    .collect();
                describe_transactions_response(&request, described).encode(&mut buffer, version)
            }
            RequestKind::ListTransactions(request) => {
                let Request::ListTransactions { state_filters, .. } =
                    list_transactions_request(&request)
                else {
                    panic!("not a ListTransactions");
                };
                list_transactions_response(ErrorCode::None, Vec::new(), state_filters)
                    .encode(&mut buffer, version)
            }
            RequestKind::DescribeProducers(request) => {
                let Request::DescribeProducers { partitions } =
                    describe_producers_request(&request)
                else {
                    panic!("not a DescribeProducers");
                };
                let described = partitions
                    .into_iter()
                    .map(|partition| DescribedProducers {
                        partition,
                        error: ErrorCode::None,
                        producers: Vec::new(),
                    })
                    .collect();
                describe_producers_response(&request, described).encode(&mut buffer, version)
            }
            other => panic!("not a transaction request: {other:?}"),
        };
    }

    #[test]
    fn corrupted_transaction_requests_are_refused_or_answered_never_a_panic() {
        use crate::kafka::precheck::decode_corrupted_requests;
        let mut decoded_count = 0;
        for version in 0..=3 {
            decoded_count +=
                decode_corrupted_requests(version, every_transaction_request(version), |request| {
                    translate_and_answer(version, request)
                });
        }
        // The test proves something only if many corrupted requests got through decoding.
        assert!(decoded_count > 1_000, "only {decoded_count} decoded");
    }
}
