//! The error codes a Kafka response carries, wherever its API puts them (top level, per
//! topic, per partition, per group, per member). APIs not listed report none: their errors
//! are not counted in `myelin_request_errors_total` until they are added here.

use kafka_protocol::messages::ResponseKind;

/// `each(item.error_code)` for every item of `items`.
macro_rules! item_codes {
    ($each:ident, $items:expr) => {
        $items.iter().for_each(|item| $each(item.error_code))
    };
}

/// `each(partition.error_code)` for every partition of every topic of `topics`, the
/// partitions being each topic's field `$partitions`.
macro_rules! partition_codes {
    ($each:ident, $topics:expr, $partitions:ident) => {
        $topics
            .iter()
            .flat_map(|topic| &topic.$partitions)
            .for_each(|partition| $each(partition.error_code))
    };
}

/// Calls `each` with every error code in `body`, zeros included.
pub(super) fn for_each_error_code(body: &ResponseKind, mut each: impl FnMut(i16)) {
    match body {
        ResponseKind::Produce(response) => {
            partition_codes!(each, response.responses, partition_responses)
        }
        ResponseKind::Fetch(response) => {
            each(response.error_code);
            partition_codes!(each, response.responses, partitions);
        }
        ResponseKind::ListOffsets(response) => partition_codes!(each, response.topics, partitions),
        ResponseKind::Metadata(response) => {
            each(response.error_code);
            item_codes!(each, response.topics);
            partition_codes!(each, response.topics, partitions);
        }
        ResponseKind::OffsetForLeaderEpoch(response) => {
            partition_codes!(each, response.topics, partitions)
        }
        ResponseKind::OffsetCommit(response) => partition_codes!(each, response.topics, partitions),
        ResponseKind::TxnOffsetCommit(response) => {
            partition_codes!(each, response.topics, partitions)
        }
        ResponseKind::OffsetFetch(response) => {
            each(response.error_code);
            partition_codes!(each, response.topics, partitions);
            item_codes!(each, response.groups);
            for group in &response.groups {
                partition_codes!(each, group.topics, partitions);
            }
        }
        ResponseKind::FindCoordinator(response) => {
            each(response.error_code);
            item_codes!(each, response.coordinators);
        }
        ResponseKind::LeaveGroup(response) => {
            each(response.error_code);
            item_codes!(each, response.members);
        }
        ResponseKind::JoinGroup(response) => each(response.error_code),
        ResponseKind::SyncGroup(response) => each(response.error_code),
        ResponseKind::Heartbeat(response) => each(response.error_code),
        ResponseKind::ListGroups(response) => each(response.error_code),
        ResponseKind::InitProducerId(response) => each(response.error_code),
        ResponseKind::EndTxn(response) => each(response.error_code),
        ResponseKind::AddOffsetsToTxn(response) => each(response.error_code),
        ResponseKind::ApiVersions(response) => each(response.error_code),
        ResponseKind::DescribeGroups(response) => item_codes!(each, response.groups),
        ResponseKind::CreateTopics(response) => item_codes!(each, response.topics),
        ResponseKind::DeleteTopics(response) => item_codes!(each, response.responses),
        ResponseKind::DescribeConfigs(response) => item_codes!(each, response.results),
        ResponseKind::DeleteGroups(response) => item_codes!(each, response.results),
        ResponseKind::CreatePartitions(response) => item_codes!(each, response.results),
        ResponseKind::IncrementalAlterConfigs(response) => item_codes!(each, response.responses),
        ResponseKind::AlterConfigs(response) => item_codes!(each, response.responses),
        ResponseKind::DescribeCluster(response) => each(response.error_code),
        ResponseKind::DeleteRecords(response) => {
            partition_codes!(each, response.topics, partitions)
        }
        ResponseKind::OffsetDelete(response) => {
            each(response.error_code);
            partition_codes!(each, response.topics, partitions);
        }
        ResponseKind::DescribeLogDirs(response) => {
            each(response.error_code);
            item_codes!(each, response.results);
        }
        ResponseKind::DescribeTransactions(response) => {
            item_codes!(each, response.transaction_states)
        }
        ResponseKind::ListTransactions(response) => each(response.error_code),
        ResponseKind::DescribeProducers(response) => {
            partition_codes!(each, response.topics, partitions)
        }
        ResponseKind::AddPartitionsToTxn(response) => {
            each(response.error_code);
            // v4+ by transaction, v0-3 by topic.
            let topics = response
                .results_by_transaction
                .iter()
                .flat_map(|transaction| &transaction.topic_results)
                .chain(&response.results_by_topic_v3_and_below);
            topics
                .flat_map(|topic| &topic.results_by_partition)
                .for_each(|partition| each(partition.partition_error_code));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{AddPartitionsToTxnResponse, FetchResponse};

    fn codes(body: ResponseKind) -> Vec<i16> {
        let mut found = Vec::new();
        for_each_error_code(&body, |code| found.push(code));
        found
    }

    #[test]
    fn codes_are_found_at_the_top_and_per_partition() {
        let fetch = FetchResponse::default()
            .with_error_code(0)
            .with_responses(vec![FetchableTopicResponse::default().with_partitions(
                vec![
                    PartitionData::default().with_error_code(6),
                    PartitionData::default().with_error_code(0),
                ],
            )]);
        assert_eq!(codes(fetch.into()), vec![0, 6, 0]);
        let old_txn =
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(vec![
                AddPartitionsToTxnTopicResult::default().with_results_by_partition(vec![
                    AddPartitionsToTxnPartitionResult::default().with_partition_error_code(48),
                ]),
            ]);
        assert_eq!(codes(old_txn.into()), vec![0, 48]);
    }

    #[test]
    fn transaction_admin_apis_report_their_codes() {
        use kafka_protocol::messages::describe_producers_response::{
            PartitionResponse, TopicResponse,
        };
        use kafka_protocol::messages::describe_transactions_response::TransactionState;
        use kafka_protocol::messages::{
            DescribeProducersResponse, DescribeTransactionsResponse, ListTransactionsResponse,
        };
        let described = DescribeTransactionsResponse::default().with_transaction_states(vec![
            TransactionState::default().with_error_code(105),
            TransactionState::default().with_error_code(0),
        ]);
        assert_eq!(codes(described.into()), vec![105, 0]);
        let listed = ListTransactionsResponse::default().with_error_code(15);
        assert_eq!(codes(listed.into()), vec![15]);
        let producers =
            DescribeProducersResponse::default().with_topics(vec![TopicResponse::default()
                .with_partitions(vec![PartitionResponse::default().with_error_code(6)])]);
        assert_eq!(codes(producers.into()), vec![6]);
    }
}
