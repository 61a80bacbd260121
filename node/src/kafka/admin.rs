//! Topic administration: CreateTopics (api key 19, v2-7, replica assignments included),
//! DeleteTopics (20, v1-6) and CreatePartitions (37, v0-3). Topic configs are in `configs`.
//!
//! The core's controller validates names, partition counts, replication factors, replica
//! assignments and configs (`myelin_core::controller`); this module only translates.
//! Results keep the order of the request. A topic named more than once in one request is
//! answered once, INVALID_REQUEST ("Duplicate topic name."), and left alone, as Kafka's
//! controller does (`ControllerApis`): clients such as librdkafka refuse a response that
//! names a topic twice.

use crate::kafka::configs::BrokerDefaults;
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
use std::collections::{HashMap, HashSet, VecDeque};
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

/// Kafka's message for a topic named twice in one request.
const DUPLICATE_TOPIC: &str = "Duplicate topic name.";

/// The keys that occur more than once in `keys`.
fn duplicated<K: Eq + std::hash::Hash + Clone>(keys: impl IntoIterator<Item = K>) -> HashSet<K> {
    let mut seen = HashSet::new();
    keys.into_iter()
        .filter(|key| !seen.insert(key.clone()))
        .collect()
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
    let duplicates = duplicated(request.topics.iter().map(|topic| topic.name.as_str()));
    let to_create: Vec<CreateTopic> = request
        .topics
        .iter()
        .filter(|topic| !duplicates.contains(topic.name.as_str()))
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

    let defaults = BrokerDefaults::of(&context.topic_defaults);
    let mut body = CreateTopicsResponse::default();
    body.throttle_time_ms = 0;
    let mut answered = HashSet::new();
    body.topics = request
        .topics
        .iter()
        .filter(|topic| {
            let name = topic.name.as_str();
            !duplicates.contains(name) || answered.insert(name)
        })
        .map(|topic| {
            let mut response = CreatableTopicResult::default();
            response.name = TopicName(topic.name.0.clone());
            response.error_message = None;
            let duplicate = duplicates.contains(topic.name.as_str());
            let result = if duplicate {
                None
            } else {
                take_result(&mut results, topic.name.as_str())
            };
            let Some(result) = result else {
                response.error_code = if duplicate {
                    response.error_message = Some(wire_string(DUPLICATE_TOPIC));
                    ErrorCode::InvalidRequest.code()
                } else {
                    UNKNOWN_SERVER_ERROR
                };
                if version >= 5 {
                    response.num_partitions = -1;
                    response.replication_factor = -1;
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
                            .map(|(name, value, set)| created_config(&defaults, name, value, set))
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

/// One config of a created topic, its source as DescribeConfigs tells it.
fn created_config(
    defaults: &BrokerDefaults,
    name: String,
    value: String,
    explicitly_set: bool,
) -> CreatableTopicConfigs {
    let mut config = CreatableTopicConfigs::default();
    config.config_source = defaults.source(&name, explicitly_set);
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
    /// Named by its id (DeleteTopics v6+), not by its name.
    by_id: bool,
}

/// What makes two DeleteTopics targets the same topic: its name once known, else its id.
#[derive(Clone, PartialEq, Eq, Hash)]
enum DeleteKey {
    Name(String),
    Id(Uuid),
}

impl DeleteTarget {
    fn key(&self) -> DeleteKey {
        match &self.name {
            Some(name) => DeleteKey::Name(name.clone()),
            None => DeleteKey::Id(self.requested_id),
        }
    }
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
                by_id: topic.name.is_none(),
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| DeleteTarget {
                name: Some(name.as_str().to_string()),
                requested_id: Uuid::nil(),
                by_id: false,
            })
            .collect()
    };

    // A topic named twice (by name, by id, or both) is answered once and not deleted.
    let duplicates = duplicated(targets.iter().map(DeleteTarget::key));
    let names: Vec<String> = targets
        .iter()
        .filter(|target| !duplicates.contains(&target.key()))
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
    let mut answered = HashSet::new();
    body.responses = targets
        .into_iter()
        .filter(|target| {
            let key = target.key();
            !duplicates.contains(&key) || answered.insert(key)
        })
        .map(|target| {
            let mut response = DeletableTopicResult::default();
            if duplicates.contains(&target.key()) {
                response.name = target.name.map(|name| TopicName(wire_string(name)));
                response.topic_id = target.requested_id;
                response.error_code = ErrorCode::InvalidRequest.code();
                if version >= 5 {
                    response.error_message = Some(wire_string(if target.by_id {
                        "Duplicate topic id."
                    } else {
                        DUPLICATE_TOPIC
                    }));
                }
                return response;
            }
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
    let duplicates = duplicated(request.topics.iter().map(|topic| topic.name.as_str()));
    let topics: Vec<CreatePartitions> = request
        .topics
        .iter()
        .filter(|topic| !duplicates.contains(topic.name.as_str()))
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
    let mut answered = HashSet::new();
    body.results = request
        .topics
        .iter()
        .filter(|topic| {
            let name = topic.name.as_str();
            !duplicates.contains(name) || answered.insert(name)
        })
        .map(|topic| {
            let mut response = CreatePartitionsTopicResult::default();
            response.name = topic.name.clone();
            if duplicates.contains(topic.name.as_str()) {
                response.error_code = ErrorCode::InvalidRequest.code();
                response.error_message = Some(wire_string(DUPLICATE_TOPIC));
                return response;
            }
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
                let defaults = BrokerDefaults::of(&Default::default());
                result.configs = Some(vec![created_config(
                    &defaults,
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
