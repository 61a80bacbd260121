//! The error codes a Kafka response carries, wherever its API puts them (top level, per
//! topic, per partition, per group, per member). APIs not listed report none: their errors
//! are not counted in `myelin_request_errors_total` until they are added here.

use kafka_protocol::messages::ResponseKind;

/// Calls `each` with every error code in `body`, zeros included.
pub(super) fn for_each_error_code(body: &ResponseKind, mut each: impl FnMut(i16)) {
    match body {
        ResponseKind::Produce(response) => response
            .responses
            .iter()
            .flat_map(|topic| &topic.partition_responses)
            .for_each(|partition| each(partition.error_code)),
        ResponseKind::Fetch(response) => {
            each(response.error_code);
            response
                .responses
                .iter()
                .flat_map(|topic| &topic.partitions)
                .for_each(|partition| each(partition.error_code));
        }
        ResponseKind::ListOffsets(response) => response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .for_each(|partition| each(partition.error_code)),
        ResponseKind::Metadata(response) => {
            each(response.error_code);
            for topic in &response.topics {
                each(topic.error_code);
                topic
                    .partitions
                    .iter()
                    .for_each(|partition| each(partition.error_code));
            }
        }
        ResponseKind::OffsetForLeaderEpoch(response) => response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .for_each(|partition| each(partition.error_code)),
        ResponseKind::OffsetCommit(response) => response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .for_each(|partition| each(partition.error_code)),
        ResponseKind::TxnOffsetCommit(response) => response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .for_each(|partition| each(partition.error_code)),
        ResponseKind::OffsetFetch(response) => {
            each(response.error_code);
            response
                .topics
                .iter()
                .flat_map(|topic| &topic.partitions)
                .for_each(|partition| each(partition.error_code));
            for group in &response.groups {
                each(group.error_code);
                group
                    .topics
                    .iter()
                    .flat_map(|topic| &topic.partitions)
                    .for_each(|partition| each(partition.error_code));
            }
        }
        ResponseKind::FindCoordinator(response) => {
            each(response.error_code);
            response
                .coordinators
                .iter()
                .for_each(|coordinator| each(coordinator.error_code));
        }
        ResponseKind::JoinGroup(response) => each(response.error_code),
        ResponseKind::SyncGroup(response) => each(response.error_code),
        ResponseKind::Heartbeat(response) => each(response.error_code),
        ResponseKind::LeaveGroup(response) => {
            each(response.error_code);
            response
                .members
                .iter()
                .for_each(|member| each(member.error_code));
        }
        ResponseKind::ListGroups(response) => each(response.error_code),
        ResponseKind::DescribeGroups(response) => response
            .groups
            .iter()
            .for_each(|group| each(group.error_code)),
        ResponseKind::CreateTopics(response) => response
            .topics
            .iter()
            .for_each(|topic| each(topic.error_code)),
        ResponseKind::DeleteTopics(response) => response
            .responses
            .iter()
            .for_each(|topic| each(topic.error_code)),
        ResponseKind::DescribeConfigs(response) => response
            .results
            .iter()
            .for_each(|result| each(result.error_code)),
        ResponseKind::InitProducerId(response) => each(response.error_code),
        ResponseKind::EndTxn(response) => each(response.error_code),
        ResponseKind::AddOffsetsToTxn(response) => each(response.error_code),
        ResponseKind::AddPartitionsToTxn(response) => {
            each(response.error_code);
            response
                .results_by_transaction
                .iter()
                .flat_map(|transaction| &transaction.topic_results)
                .flat_map(|topic| &topic.results_by_partition)
                .for_each(|partition| each(partition.partition_error_code));
        }
        ResponseKind::ApiVersions(response) => each(response.error_code),
        _ => {}
    }
}
