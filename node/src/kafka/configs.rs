//! Topic configs: DescribeConfigs (api key 32, v1-4), IncrementalAlterConfigs (44, v0-1)
//! and AlterConfigs (33, v0-2).
//!
//! Keys, values and their bounds are the core's (`myelin_core::metadata::TopicConfig`);
//! changes go through the controller and the metadata log, so every node applies them and
//! they survive restarts. Here: the wire's resource types and operations. Only TOPIC
//! resources change. A BROKER resource naming this node describes the broker settings the
//! topic keys fall back to (`log.retention.ms`, `message.max.bytes`, ...: the node's topic
//! defaults), read-only; the empty name (Kafka's cluster-wide dynamic defaults, which do
//! not exist here) an empty list; another node's id INVALID_REQUEST, as Kafka answers
//! them. Altering a BROKER resource answers INVALID_REQUEST, since a node's settings come
//! from its flags and config file and none can change at run time. Any other
//! resource type answers INVALID_REQUEST. A resource named twice in one request answers
//! INVALID_REQUEST, both times, as Kafka does. validate_only checks and changes nothing.
//!
//! A topic key not set on the topic takes the node's default, which Kafka names after the
//! broker setting it comes from: DescribeConfigs' source is DEFAULT_CONFIG, or
//! STATIC_BROKER_CONFIG when the node's flags or file changed it; asked for synonyms (v1+,
//! as librdkafka always asks), each key lists the topic's own value (DYNAMIC_TOPIC_CONFIG)
//! if it has one, then that broker setting (`log.retention.ms`, `message.max.bytes`, ...).

use crate::kafka::admin::{take_result, topic_results, UNKNOWN_SERVER_ERROR};
use crate::kafka::dispatch::{wire_string, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    alter_configs_response, AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use myelin_core::api::{AlterTopicConfigs, ErrorCode, Request, Response, TopicResult};
use myelin_core::metadata::{ConfigChange, ConfigOp, TopicConfig};
use std::collections::{BTreeMap, HashMap};

/// Config resource types (Kafka's `ConfigResource.Type`).
const RESOURCE_TYPE_TOPIC: i8 = 2;
const RESOURCE_TYPE_BROKER: i8 = 4;
/// Config sources (Kafka's `DescribeConfigsResponse.ConfigSource`).
const CONFIG_SOURCE_DYNAMIC_TOPIC: i8 = 1;
const CONFIG_SOURCE_STATIC_BROKER: i8 = 4;
const CONFIG_SOURCE_DEFAULT: i8 = 5;

/// Each topic key and the broker setting it falls back to (Kafka's topic config synonyms;
/// for retention.ms the one in ms, as the node's own setting).
const BROKER_SYNONYMS: [(&str, &str); 7] = [
    ("retention.ms", "log.retention.ms"),
    ("retention.bytes", "log.retention.bytes"),
    ("segment.bytes", "log.segment.bytes"),
    ("max.message.bytes", "message.max.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("compression.type", "compression.type"),
    ("cleanup.policy", "log.cleanup.policy"),
];

/// The broker setting topic key `name` falls back to.
fn broker_synonym(name: &str) -> Option<&'static str> {
    BROKER_SYNONYMS
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, broker)| *broker)
}

/// The node's topic defaults as DescribeConfigs tells them: by topic key, the broker
/// setting's value and source (DEFAULT_CONFIG, or STATIC_BROKER_CONFIG when the node's
/// flags or file changed it).
pub(crate) struct BrokerDefaults(BTreeMap<&'static str, (String, i8)>);

impl BrokerDefaults {
    pub(crate) fn of(node: &TopicConfig) -> Self {
        let builtin = TopicConfig::default();
        let builtin: BTreeMap<&str, String> = builtin
            .entries(&builtin)
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect();
        Self(
            node.entries(node)
                .into_iter()
                .map(|(key, value, _)| {
                    let source = if builtin.get(key) == Some(&value) {
                        CONFIG_SOURCE_DEFAULT
                    } else {
                        CONFIG_SOURCE_STATIC_BROKER
                    };
                    (key, (value, source))
                })
                .collect(),
        )
    }

    /// The broker setting `name` falls back to: its name, value and source.
    fn fallback(&self, name: &str) -> Option<(&'static str, &str, i8)> {
        let (value, source) = self.0.get(name)?;
        Some((broker_synonym(name)?, value.as_str(), *source))
    }

    /// The source of topic key `name` (Kafka's: that of its first synonym, the most
    /// specific one): the topic's own value, else the broker setting it falls back to.
    pub(crate) fn source(&self, name: &str, set_on_topic: bool) -> i8 {
        if set_on_topic {
            CONFIG_SOURCE_DYNAMIC_TOPIC
        } else {
            self.fallback(name)
                .map_or(CONFIG_SOURCE_DEFAULT, |(_, _, source)| source)
        }
    }

    /// Every broker setting a topic key falls back to: name, value and source.
    fn broker_entries(&self) -> impl Iterator<Item = (&'static str, &str, i8)> {
        self.0.keys().filter_map(|key| self.fallback(key))
    }
}

/// One broker setting of a DescribeConfigs BROKER resource: read-only (no broker setting
/// changes at run time), its own only synonym when asked.
fn described_broker_config(
    version: i16,
    name: &str,
    value: &str,
    source: i8,
    include_synonyms: bool,
) -> DescribeConfigsResourceResult {
    let mut config = DescribeConfigsResourceResult::default();
    if version >= 3 {
        config.config_type = broker_config_type(name);
        config.documentation = None;
    }
    if include_synonyms {
        config.synonyms = vec![synonym(name, value, source)];
    }
    config.name = wire_string(name);
    config.value = Some(wire_string(value));
    config.read_only = true;
    config.config_source = source;
    config.is_sensitive = false;
    config
}

/// One synonym of a described config.
fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    let mut synonym = DescribeConfigsSynonym::default();
    synonym.name = wire_string(name);
    synonym.value = Some(wire_string(value));
    synonym.source = source;
    synonym
}

/// Kafka's `ConfigType` of each broker setting described here: that of its topic key.
fn broker_config_type(name: &str) -> i8 {
    BROKER_SYNONYMS
        .iter()
        .find(|(_, broker)| *broker == name)
        .map_or(0, |(key, _)| config_type(key))
}

pub(crate) async fn describe_configs(
    context: &ConnectionContext,
    version: i16,
    request: DescribeConfigsRequest,
) -> Result<Reply, HandlerError> {
    let topics: Vec<String> = request
        .resources
        .iter()
        .filter(|resource| resource.resource_type == RESOURCE_TYPE_TOPIC)
        .map(|resource| resource.resource_name.as_str().to_string())
        .collect();
    let request_to_core = (!topics.is_empty()).then_some(Request::DescribeConfigs { topics });
    let mut results =
        topic_results(
            context,
            request_to_core,
            "DescribeConfigs",
            |response| match response {
                Response::DescribeConfigs(results) => Some(results),
                _ => None,
            },
        )
        .await?;

    let defaults = BrokerDefaults::of(&context.topic_defaults);
    let synonyms = version >= 1 && request.include_synonyms;
    let mut body = DescribeConfigsResponse::default();
    body.throttle_time_ms = 0;
    body.results = request
        .resources
        .iter()
        .map(|resource| {
            let mut response = DescribeConfigsResult::default();
            response.resource_type = resource.resource_type;
            response.resource_name = resource.resource_name.clone();
            response.error_message = None;
            match resource.resource_type {
                RESOURCE_TYPE_TOPIC => match take_result(&mut results, resource.resource_name.as_str()) {
                    Some(result) => {
                        response.error_code = result.error.code();
                        response.error_message = result.message.map(wire_string);
                        let wanted = resource.configuration_keys.as_ref();
                        response.configs = result
                            .configs
                            .into_iter()
                            .filter(|(name, _, _)| {
                                wanted.is_none_or(|keys| keys.iter().any(|key| key.as_str() == name))
                            })
                            .map(|(name, value, set)| {
                                described_config(version, name, value, set, &defaults, synonyms)
                            })
                            .collect();
                    }
                    None => response.error_code = UNKNOWN_SERVER_ERROR,
                },
                RESOURCE_TYPE_BROKER => {
                    let name = resource.resource_name.as_str();
                    if name.is_empty() {
                        response.error_code = ErrorCode::None.code();
                    } else if name.parse::<i32>().ok() == Some(context.node_id) {
                        response.error_code = ErrorCode::None.code();
                        let wanted = resource.configuration_keys.as_ref();
                        response.configs = defaults
                            .broker_entries()
                            .filter(|(name, _, _)| {
                                wanted.is_none_or(|keys| keys.iter().any(|key| key.as_str() == *name))
                            })
                            .map(|(name, value, source)| {
                                described_broker_config(version, name, value, source, synonyms)
                            })
                            .collect();
                    } else {
                        response.error_code = ErrorCode::InvalidRequest.code();
                        response.error_message = Some(wire_string(format!(
                            "Unexpected broker id, expected {} or empty string, but received {name}",
                            context.node_id
                        )));
                    }
                }
                other => {
                    response.error_code = ErrorCode::InvalidRequest.code();
                    response.error_message = Some(wire_string(format!(
                        "config resource type {other} is not supported; only topics (2) and brokers (4)"
                    )));
                }
            }
            response
        })
        .collect();
    Ok(Reply::small(body))
}

fn described_config(
    version: i16,
    name: String,
    value: String,
    set_on_topic: bool,
    defaults: &BrokerDefaults,
    include_synonyms: bool,
) -> DescribeConfigsResourceResult {
    let mut config = DescribeConfigsResourceResult::default();
    if version >= 3 {
        config.config_type = config_type(&name);
        config.documentation = None;
    }
    let fallback = defaults.fallback(&name);
    config.config_source = defaults.source(&name, set_on_topic);
    if include_synonyms {
        if set_on_topic {
            config
                .synonyms
                .push(synonym(&name, &value, CONFIG_SOURCE_DYNAMIC_TOPIC));
        }
        if let Some((broker_name, broker_value, source)) = fallback {
            config
                .synonyms
                .push(synonym(broker_name, broker_value, source));
        }
    }
    config.name = wire_string(name);
    config.value = Some(wire_string(value));
    config.read_only = false;
    config.is_sensitive = false;
    config
}

/// Kafka's `ConfigType` of each topic key the core knows (0 = unknown).
fn config_type(name: &str) -> i8 {
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const STRING: i8 = 2;
    const LIST: i8 = 7;
    match name {
        "retention.ms" | "retention.bytes" => LONG,
        "segment.bytes" | "max.message.bytes" | "min.insync.replicas" => INT,
        "cleanup.policy" => LIST,
        "compression.type" => STRING,
        _ => 0,
    }
}

/// One resource of an AlterConfigs or IncrementalAlterConfigs request, in plain terms.
struct AlterTarget {
    resource_type: i8,
    name: StrBytes,
    /// The topic's changes, or why the resource is refused before the core sees it.
    changes: Result<Vec<ConfigChange>, (ErrorCode, String)>,
}

impl AlterTarget {
    /// A resource and its (operation, key, value) changes.
    fn new<'a>(
        resource_type: i8,
        name: &StrBytes,
        configs: impl Iterator<Item = (i8, &'a StrBytes, Option<&'a StrBytes>)>,
    ) -> Self {
        let changes = if resource_type == RESOURCE_TYPE_TOPIC {
            configs
                .map(|(operation, key, value)| {
                    let op = config_op(operation, key.as_str(), value)?;
                    Ok(ConfigChange {
                        key: key.to_string(),
                        op,
                    })
                })
                .collect()
        } else {
            Err(refused_resource(resource_type))
        };
        Self {
            resource_type,
            name: name.clone(),
            changes,
        }
    }
}

/// Answers each target: topics through the core's controller, the rest refused here.
async fn alter(
    context: &ConnectionContext,
    targets: &[AlterTarget],
    replace: bool,
    validate_only: bool,
) -> Result<Vec<(i16, Option<String>)>, HandlerError> {
    let mut named: HashMap<(i8, &str), usize> = HashMap::new();
    for target in targets {
        *named
            .entry((target.resource_type, target.name.as_str()))
            .or_default() += 1;
    }
    let duplicate = |target: &AlterTarget| named[&(target.resource_type, target.name.as_str())] > 1;
    let topics: Vec<AlterTopicConfigs> = targets
        .iter()
        .filter(|target| !duplicate(target))
        .filter_map(|target| match &target.changes {
            Ok(changes) if target.resource_type == RESOURCE_TYPE_TOPIC => Some(AlterTopicConfigs {
                name: target.name.to_string(),
                changes: changes.clone(),
                replace,
                validate_only,
            }),
            _ => None,
        })
        .collect();
    let request_to_core = (!topics.is_empty()).then_some(Request::AlterConfigs { topics });
    let mut results =
        topic_results(
            context,
            request_to_core,
            "AlterConfigs",
            |response| match response {
                Response::AlterConfigs(results) => Some(results),
                _ => None,
            },
        )
        .await?;
    Ok(targets
        .iter()
        .map(|target| {
            if duplicate(target) {
                let message = format!("resource '{}' is named more than once", target.name);
                return (ErrorCode::InvalidRequest.code(), Some(message));
            }
            match &target.changes {
                Err((error, message)) => (error.code(), Some(message.clone())),
                Ok(_) => match take_result(&mut results, target.name.as_str()) {
                    Some(TopicResult { error, message, .. }) => (error.code(), message),
                    None => (UNKNOWN_SERVER_ERROR, None),
                },
            }
        })
        .collect())
}

/// Why a resource other than a topic cannot change.
fn refused_resource(resource_type: i8) -> (ErrorCode, String) {
    let message = if resource_type == RESOURCE_TYPE_BROKER {
        "broker configs cannot change at run time: set them in the node's config file".to_string()
    } else {
        format!("config resource type {resource_type} is not supported; only topics (2) change")
    };
    (ErrorCode::InvalidRequest, message)
}

/// IncrementalAlterConfigs' operations (Kafka's `AlterConfigOp.OpType`).
fn config_op(
    operation: i8,
    name: &str,
    value: Option<&StrBytes>,
) -> Result<ConfigOp, (ErrorCode, String)> {
    let value = || {
        value.map(|value| value.to_string()).ok_or_else(|| {
            (
                ErrorCode::InvalidRequest,
                format!("Null value not supported for : {name}"),
            )
        })
    };
    Ok(match operation {
        0 => ConfigOp::Set(value()?),
        1 => ConfigOp::Delete,
        2 => ConfigOp::Append(value()?),
        3 => ConfigOp::Subtract(value()?),
        other => {
            return Err((
                ErrorCode::InvalidRequest,
                format!("unknown config operation {other} for {name}"),
            ))
        }
    })
}

pub(crate) async fn incremental_alter_configs(
    context: &ConnectionContext,
    _version: i16,
    request: IncrementalAlterConfigsRequest,
) -> Result<Reply, HandlerError> {
    let targets: Vec<AlterTarget> = request
        .resources
        .iter()
        .map(|resource| {
            let configs = resource
                .configs
                .iter()
                .map(|config| (config.config_operation, &config.name, config.value.as_ref()));
            AlterTarget::new(resource.resource_type, &resource.resource_name, configs)
        })
        .collect();
    let answers = alter(context, &targets, false, request.validate_only).await?;
    let mut body = IncrementalAlterConfigsResponse::default();
    body.throttle_time_ms = 0;
    body.responses = targets
        .iter()
        .zip(answers)
        .map(|(target, (error_code, message))| {
            let mut response = AlterConfigsResourceResponse::default();
            response.error_code = error_code;
            response.error_message = message.map(wire_string);
            response.resource_type = target.resource_type;
            response.resource_name = target.name.clone();
            response
        })
        .collect();
    Ok(Reply::small(body))
}

pub(crate) async fn alter_configs(
    context: &ConnectionContext,
    _version: i16,
    request: AlterConfigsRequest,
) -> Result<Reply, HandlerError> {
    let targets: Vec<AlterTarget> = request
        .resources
        .iter()
        .map(|resource| {
            // AlterConfigs sets every key it names (SET, operation 0).
            let configs = resource
                .configs
                .iter()
                .map(|config| (0, &config.name, config.value.as_ref()));
            AlterTarget::new(resource.resource_type, &resource.resource_name, configs)
        })
        .collect();
    let answers = alter(context, &targets, true, request.validate_only).await?;
    let mut body = AlterConfigsResponse::default();
    body.throttle_time_ms = 0;
    body.responses = targets
        .iter()
        .zip(answers)
        .map(|(target, (error_code, message))| {
            let mut response = alter_configs_response::AlterConfigsResourceResponse::default();
            response.error_code = error_code;
            response.error_message = message.map(wire_string);
            response.resource_type = target.resource_type;
            response.resource_name = target.name.clone();
            response
        })
        .collect();
    Ok(Reply::small(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_configs_encode_for_every_served_version() {
        for version in 1..=4 {
            let mut result = DescribeConfigsResult::default();
            result.resource_type = RESOURCE_TYPE_TOPIC;
            result.resource_name = StrBytes::from_static_str("orders");
            result.error_message = None;
            let defaults = BrokerDefaults::of(&TopicConfig::default());
            result.configs = vec![described_config(
                version,
                "retention.ms".into(),
                "1000".into(),
                false,
                &defaults,
                version >= 1,
            )];
            let decoded = over_the_wire(result, version);
            let config = &decoded.results[0].configs[0];
            assert_eq!(config.value.as_deref(), Some("1000"));
            assert_eq!(config.config_source, CONFIG_SOURCE_DEFAULT);
            assert_eq!(config.synonyms.len(), 1, "v{version}");
        }
    }

    /// A response holding `result`, encoded and decoded at `version`.
    fn over_the_wire(result: DescribeConfigsResult, version: i16) -> DescribeConfigsResponse {
        let mut body = DescribeConfigsResponse::default();
        body.results = vec![result];
        crate::kafka::test_support::over_the_wire(&body, version)
    }

    #[test]
    fn broker_settings_describe_read_only_with_their_sources() {
        let mut node = TopicConfig::default();
        node.set("retention.ms", "1000").unwrap();
        let defaults = BrokerDefaults::of(&node);
        let entries: Vec<_> = defaults.broker_entries().collect();
        assert!(entries.contains(&("log.retention.ms", "1000", CONFIG_SOURCE_STATIC_BROKER)));
        assert!(entries.contains(&("message.max.bytes", "1048588", CONFIG_SOURCE_DEFAULT)));
        assert_eq!(entries.len(), 7, "{entries:?}");
        for version in 1..=4 {
            let mut result = DescribeConfigsResult::default();
            result.resource_type = RESOURCE_TYPE_BROKER;
            result.resource_name = StrBytes::from_static_str("1");
            result.configs = entries
                .iter()
                .map(|(name, value, source)| {
                    described_broker_config(version, name, value, *source, true)
                })
                .collect();
            let decoded = over_the_wire(result, version);
            let config = &decoded.results[0].configs[0];
            assert!(config.read_only);
            assert_eq!(config.synonyms.len(), 1);
        }
    }

    /// (name, value, source) of each synonym.
    fn synonyms(config: &DescribeConfigsResourceResult) -> Vec<(String, String, i8)> {
        config
            .synonyms
            .iter()
            .map(|synonym| {
                let value = synonym.value.as_deref().unwrap_or_default().to_string();
                (synonym.name.to_string(), value, synonym.source)
            })
            .collect()
    }

    #[test]
    fn synonyms_name_the_topics_value_then_the_broker_setting_it_falls_back_to() {
        let builtin = BrokerDefaults::of(&TopicConfig::default());
        let set = described_config(4, "retention.ms".into(), "5".into(), true, &builtin, true);
        assert_eq!(set.config_source, CONFIG_SOURCE_DYNAMIC_TOPIC);
        assert_eq!(
            synonyms(&set),
            vec![
                (
                    "retention.ms".into(),
                    "5".into(),
                    CONFIG_SOURCE_DYNAMIC_TOPIC
                ),
                (
                    "log.retention.ms".into(),
                    "604800000".into(),
                    CONFIG_SOURCE_DEFAULT
                ),
            ]
        );
        let unasked = described_config(4, "retention.ms".into(), "5".into(), true, &builtin, false);
        assert!(unasked.synonyms.is_empty());
        // A default the node's flags changed: the broker's static config, as Kafka's
        // server.properties.
        let mut node = TopicConfig::default();
        node.set("segment.bytes", "4096").unwrap();
        let flagged = BrokerDefaults::of(&node);
        let default = described_config(
            4,
            "segment.bytes".into(),
            "4096".into(),
            false,
            &flagged,
            true,
        );
        assert_eq!(default.config_source, CONFIG_SOURCE_STATIC_BROKER);
        assert_eq!(
            synonyms(&default),
            vec![(
                "log.segment.bytes".into(),
                "4096".into(),
                CONFIG_SOURCE_STATIC_BROKER
            )]
        );
        let untouched = described_config(
            4,
            "max.message.bytes".into(),
            "1048588".into(),
            false,
            &flagged,
            true,
        );
        assert_eq!(untouched.config_source, CONFIG_SOURCE_DEFAULT);
        assert_eq!(synonyms(&untouched)[0].0, "message.max.bytes");
    }
}
