//! Topic administration: CreateTopics (api key 19, v2-7, replica assignments included),
//! DeleteTopics (20, v1-6) and CreatePartitions (37, v0-3). Topic configs are in `configs`.
//!
//! The core's controller validates names, partition counts, replication factors, replica
//! assignments and configs (`myelin_core::controller`); this module only translates.
//! Results keep the order of the request.

use crate::kafka::configs::config_source;
use crate::kafka::dispatch::{call, wire_string, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use myelin_core::api::{CreatePartitions, CreateTopic, ErrorCode, Request, Response, TopicResult};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// Kafka's UNKNOWN_SERVER_ERROR, for a topic the core did not answer (a core bug).
pub(crate) const UNKNOWN_SERVER_ERROR: i16 = -1;

/// Core results by topic name, each name's results in the order the core gave them.
fn by_name(results: Vec<TopicResult>) -> HashMap<String, VecDeque<TopicResult>> {
    let mut by_name: HashMap<String, VecDeque<TopicResult>> = HashMap::new();
    for result in results {
        by_name
            .entry(result.name.clone())
            .or_default()
            .push_back(result);
    }
    by_name
}

/// The core's per-topic results of `request` (none asked when it names no topic), by
/// name; `unpack` takes them out of the response kind the request expects.
pub(crate) async fn topic_results(
    context: &ConnectionContext,
    request: Option<Request>,
    name: &'static str,
    unpack: fn(Response) -> Option<Vec<TopicResult>>,
) -> Result<HashMap<String, VecDeque<TopicResult>>, HandlerError> {
    let Some(request) = request else {
        return Ok(HashMap::new());
    };
    let response = call(context, request).await?;
    let results = unpack(response).ok_or(HandlerError::UnexpectedResponse { request: name })?;
    Ok(by_name(results))
}

pub(crate) fn take_result(
    results: &mut HashMap<String, VecDeque<TopicResult>>,
    name: &str,
) -> Option<TopicResult> {
    results.get_mut(name).and_then(VecDeque::pop_front)
}

pub(crate) async fn create_topics(
    context: &ConnectionContext,
    version: i16,
    request: CreateTopicsRequest,
) -> Result<Reply, HandlerError> {
    let to_create: Vec<CreateTopic> = request
        .topics
        .iter()
        .map(|topic| CreateTopic {
            name: topic.name.as_str().to_string(),
            partition_count: topic.num_partitions,
            replication_factor: topic.replication_factor,
            // A null value asks for the default, which is what leaving the key out does.
            configs: topic
                .configs
                .iter()
                .filter_map(|config| {
                    config
                        .value
                        .as_ref()
                        .map(|value| (config.name.as_str().to_string(), value.as_str().to_string()))
                })
                .collect(),
            validate_only: request.validate_only,
            assignments: topic
                .assignments
                .iter()
                .map(|assignment| {
                    let replicas = assignment.broker_ids.iter().map(|id| id.0).collect();
                    (assignment.partition_index, replicas)
                })
                .collect(),
        })
        .collect();
    let request_to_core =
        (!to_create.is_empty()).then_some(Request::CreateTopics { topics: to_create });
    let mut results =
        topic_results(
            context,
            request_to_core,
            "CreateTopics",
            |response| match response {
                Response::CreateTopics(results) => Some(results),
                _ => None,
            },
        )
        .await?;

    let mut body = CreateTopicsResponse::default();
    body.throttle_time_ms = 0;
    body.topics = request
        .topics
        .iter()
        .map(|topic| {
            let mut response = CreatableTopicResult::default();
            response.name = TopicName(topic.name.0.clone());
            response.error_message = None;
            let Some(result) = take_result(&mut results, topic.name.as_str()) else {
                response.error_code = UNKNOWN_SERVER_ERROR;
                if version >= 5 {
                    response.configs = None;
                }
                return response;
            };
            response.error_code = result.error.code();
            response.error_message = result.message.map(wire_string);
            if version >= 7 {
                response.topic_id = Uuid::from_u128(result.topic_id);
            }
            if version >= 5 {
                if result.error == ErrorCode::None {
                    response.num_partitions = result.partition_count;
                    response.replication_factor = result.replication_factor;
                    response.configs = Some(
                        result
                            .configs
                            .into_iter()
                            .map(|(name, value, set)| created_config(name, value, set))
                            .collect(),
                    );
                } else {
                    response.num_partitions = -1;
                    response.replication_factor = -1;
                    response.configs = None;
                }
            }
            response
        })
        .collect();
    Ok(Reply::small(body))
}

fn created_config(name: String, value: String, explicitly_set: bool) -> CreatableTopicConfigs {
    let mut config = CreatableTopicConfigs::default();
    config.config_source = config_source(explicitly_set);
    config.name = wire_string(name);
    config.value = Some(wire_string(value));
    config.read_only = false;
    config.is_sensitive = false;
    config
}

/// One topic a DeleteTopics request names.
struct DeleteTarget {
    /// `None`: an id the node does not know.
    name: Option<String>,
    requested_id: Uuid,
}

pub(crate) async fn delete_topics(
    context: &ConnectionContext,
    version: i16,
    request: DeleteTopicsRequest,
) -> Result<Reply, HandlerError> {
    let targets: Vec<DeleteTarget> = if version >= 6 {
        let ids: Vec<u128> = request
            .topics
            .iter()
            .filter(|topic| topic.name.is_none())
            .map(|topic| topic.topic_id.as_u128())
            .collect();
        let names_by_id = if ids.is_empty() {
            HashMap::new()
        } else {
            context.topic_ids.resolve(context, &ids).await?
        };
        request
            .topics
            .iter()
            .map(|topic| DeleteTarget {
                name: match &topic.name {
                    Some(name) => Some(name.as_str().to_string()),
                    None => names_by_id.get(&topic.topic_id.as_u128()).cloned(),
                },
                requested_id: topic.topic_id,
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| DeleteTarget {
                name: Some(name.as_str().to_string()),
                requested_id: Uuid::nil(),
            })
            .collect()
    };

    let names: Vec<String> = targets
        .iter()
        .filter_map(|target| target.name.clone())
        .collect();
    let request_to_core = (!names.is_empty()).then_some(Request::DeleteTopics { names });
    let mut results =
        topic_results(
            context,
            request_to_core,
            "DeleteTopics",
            |response| match response {
                Response::DeleteTopics(results) => Some(results),
                _ => None,
            },
        )
        .await?;

    let mut body = DeleteTopicsResponse::default();
    body.throttle_time_ms = 0;
    body.responses = targets
        .into_iter()
        .map(|target| {
            let mut response = DeletableTopicResult::default();
            let Some(name) = target.name else {
                response.name = None;
                response.topic_id = target.requested_id;
                response.error_code = ErrorCode::UnknownTopicId.code();
                return response;
            };
            match take_result(&mut results, &name) {
                Some(result) => {
                    response.error_code = result.error.code();
                    if version >= 5 {
                        response.error_message = result.message.map(wire_string);
                    }
                    if version >= 6 {
                        response.topic_id = if result.topic_id != 0 {
                            Uuid::from_u128(result.topic_id)
                        } else {
                            target.requested_id
                        };
                    }
                }
                None => response.error_code = UNKNOWN_SERVER_ERROR,
            }
            response.name = Some(TopicName(wire_string(name)));
            response
        })
        .collect();
    Ok(Reply::small(body))
}

pub(crate) async fn create_partitions(
    context: &ConnectionContext,
    _version: i16,
    request: CreatePartitionsRequest,
) -> Result<Reply, HandlerError> {
    let topics: Vec<CreatePartitions> = request
        .topics
        .iter()
        .map(|topic| CreatePartitions {
            name: topic.name.as_str().to_string(),
            count: topic.count,
            assignments: topic.assignments.as_ref().map(|assignments| {
                assignments
                    .iter()
                    .map(|assignment| assignment.broker_ids.iter().map(|id| id.0).collect())
                    .collect()
            }),
            validate_only: request.validate_only,
        })
        .collect();
    let request_to_core = (!topics.is_empty()).then_some(Request::CreatePartitions { topics });
    let mut results =
        topic_results(
            context,
            request_to_core,
            "CreatePartitions",
            |response| match response {
                Response::CreatePartitions(results) => Some(results),
                _ => None,
            },
        )
        .await?;
    let mut body = CreatePartitionsResponse::default();
    body.throttle_time_ms = 0;
    body.results = request
        .topics
        .iter()
        .map(|topic| {
            let mut response = CreatePartitionsTopicResult::default();
            response.name = topic.name.clone();
            match take_result(&mut results, topic.name.as_str()) {
                Some(result) => {
                    response.error_code = result.error.code();
                    response.error_message = result.message.map(wire_string);
                }
                None => response.error_code = UNKNOWN_SERVER_ERROR,
            }
            response
        })
        .collect();
    Ok(Reply::small(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    #[test]
    fn created_topic_results_encode_for_every_served_version() {
        for version in 2..=7 {
            let mut result = CreatableTopicResult::default();
            result.name = TopicName(StrBytes::from_static_str("orders"));
            result.error_message = None;
            if version >= 5 {
                result.num_partitions = 3;
                result.replication_factor = 1;
                result.configs = Some(vec![created_config(
                    "retention.ms".into(),
                    "1000".into(),
                    true,
                )]);
            }
            if version >= 7 {
                result.topic_id = Uuid::from_u128(11);
            }
            let mut body = CreateTopicsResponse::default();
            body.topics = vec![result];
            let mut encoded = BytesMut::new();
            body.encode(&mut encoded, version).unwrap();
            let decoded = CreateTopicsResponse::decode(&mut encoded.freeze(), version).unwrap();
            assert_eq!(decoded.topics[0].name.as_str(), "orders");
        }
    }
}
