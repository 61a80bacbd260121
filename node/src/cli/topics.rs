//! `myelin topics`: create, list, describe, alter, add partitions to and delete topics.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use myelin_client::{TopicMetadata, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use serde_json::{json, Value};

use super::client::{existing_topic, Client};
use super::output::{ids, out, outln, print_json, Table};
use super::status::in_sync;
use super::CommonArgs;
use kafka_protocol::ResponseError;

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions.
        #[arg(short, long, default_value_t = 1)]
        partitions: i32,
        /// Replicas per partition; by default the cluster's: min(3, nodes).
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE (repeatable), e.g. --config retention.ms=3600000.
        #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// List topics: name, partitions, replication factor.
    List {
        /// Include internal topics (__consumer_offsets, __transaction_state).
        #[arg(long)]
        internal: bool,
    },
    /// Describe a topic: per partition its leader, replicas, in-sync replicas, log start
    /// and high watermark; and the topic's configs.
    Describe { name: String },
    /// Change a topic's configs: set some (--config k=v), return others to their defaults
    /// (--delete-config k).
    Alter {
        name: String,
        /// A config to set, KEY=VALUE (repeatable).
        #[arg(short, long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
        /// A config to return to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        deletes: Vec<String>,
    },
    /// Grow a topic to a total number of partitions (existing records stay where they are;
    /// keys hash to new places from now on).
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(short, long)]
        partitions: i32,
    },
    /// Delete a topic and its data.
    Delete { name: String },
}

/// `KEY=VALUE` as a pair.
pub fn parse_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let json = args.common.json;
    let mut client = Client::connect(&args.common.bootstrap).await?;
    match args.command {
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            create(
                &mut client,
                json,
                &name,
                partitions,
                replication_factor,
                &configs,
            )
            .await
        }
        TopicsCommand::List { internal } => list(&mut client, json, internal).await,
        TopicsCommand::Describe { name } => describe(&mut client, json, &name).await,
        TopicsCommand::Alter {
            name,
            configs,
            deletes,
        } => alter(&mut client, json, &name, &configs, &deletes).await,
        TopicsCommand::AddPartitions { name, partitions } => {
            add_partitions(&mut client, json, &name, partitions).await
        }
        TopicsCommand::Delete { name } => delete(&mut client, json, &name).await,
    }
}

async fn create(
    client: &mut Client,
    json: bool,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    if partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let configs: Vec<(&str, &str)> = configs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let result = client
        .any()
        .await?
        .create_topic(name, partitions, replication_factor, &configs)
        .await;
    match result {
        Ok(()) => {}
        Err(error) if error.is_broker_error(ResponseError::TopicAlreadyExists) => {
            bail!("topic {name:?} already exists: see it with `myelin topics describe {name}`")
        }
        Err(error) => return Err(error).with_context(|| format!("creating topic {name:?}")),
    }
    // The controller answers once the topic is in its log; wait until a broker shows it.
    let topic = wait_for_topic(client, name).await?;
    let rf = replication_factor_of(&topic);
    if json {
        print_json(&json!({
            "topic": name,
            "partitions": topic.partitions.len(),
            "replication_factor": rf,
        }));
    } else {
        outln!(
            "created topic {name} with {} partition(s), replication factor {rf}",
            topic.partitions.len()
        );
    }
    Ok(())
}

/// Metadata of a just-created topic, once it is visible and every partition has a leader
/// (within the retry bound; after that, as it is).
async fn wait_for_topic(client: &mut Client, name: &str) -> anyhow::Result<TopicMetadata> {
    wait_for_partitions(client, name, 1).await
}

/// Metadata of `name` once it has at least `count` partitions, each with a leader (within
/// the retry bound; after that, as it is).
async fn wait_for_partitions(
    client: &mut Client,
    name: &str,
    count: usize,
) -> anyhow::Result<TopicMetadata> {
    let deadline = std::time::Instant::now() + super::client::RETRY_FOR;
    loop {
        match client.topic(name).await {
            Ok(topic)
                if (topic.partitions.len() >= count
                    && topic.partitions.iter().all(|p| p.leader_id >= 0))
                    || std::time::Instant::now() >= deadline =>
            {
                return Ok(topic)
            }
            Err(error) if std::time::Instant::now() >= deadline => return Err(error),
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

fn replication_factor_of(topic: &TopicMetadata) -> usize {
    topic.partitions.first().map_or(0, |p| p.replicas.len())
}

async fn list(client: &mut Client, json: bool, internal: bool) -> anyhow::Result<()> {
    let metadata = client.metadata(None).await?;
    let mut topics: Vec<&TopicMetadata> = metadata
        .topics
        .iter()
        .filter(|t| internal || !(t.is_internal || t.name.starts_with("__")))
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        let list: Vec<Value> = topics
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "partitions": t.partitions.len(),
                    "replication_factor": replication_factor_of(t),
                    "internal": t.is_internal || t.name.starts_with("__"),
                })
            })
            .collect();
        print_json(&json!({ "topics": list }));
    } else {
        let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"]);
        for t in &topics {
            table.row(vec![
                t.name.clone(),
                t.partitions.len().to_string(),
                replication_factor_of(t).to_string(),
            ]);
        }
        out!("{}", table.render());
    }
    Ok(())
}

/// One partition's description.
struct PartitionRow {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    log_start: Option<i64>,
    high_watermark: Option<i64>,
}

/// Log start and high watermark of one partition, from its leader.
pub async fn watermarks(
    client: &mut Client,
    topic: &str,
    partition: i32,
) -> anyhow::Result<(i64, i64)> {
    let mut ends = [0i64; 2];
    for (end, timestamp) in ends.iter_mut().zip([EARLIEST_TIMESTAMP, LATEST_TIMESTAMP]) {
        let name = topic.to_owned();
        *end = client
            .on_leader(topic, partition, move |conn| {
                let name = name.clone();
                Box::pin(async move { conn.list_offsets(&name, partition, timestamp).await })
            })
            .await?;
    }
    Ok((ends[0], ends[1]))
}

async fn describe(client: &mut Client, json: bool, name: &str) -> anyhow::Result<()> {
    let metadata = client.metadata(Some(&[name])).await?;
    let topic = existing_topic(&metadata, name)?;
    let mut partitions = topic.partitions.clone();
    partitions.sort_by_key(|p| p.partition);
    let live: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id).collect();
    let mut rows = Vec::new();
    for p in &partitions {
        // A partition without a leader has no watermarks to report; show it anyway.
        let marks = if p.leader_id >= 0 {
            watermarks(client, name, p.partition).await.ok()
        } else {
            None
        };
        rows.push(PartitionRow {
            partition: p.partition,
            leader: p.leader_id,
            replicas: p.replicas.clone(),
            isr: in_sync(p, &live),
            log_start: marks.map(|m| m.0),
            high_watermark: marks.map(|m| m.1),
        });
    }
    let rf = replication_factor_of(&topic);
    let configs = match client.any().await?.describe_topic_configs(name).await {
        Ok(configs) => Some(configs),
        Err(error) => {
            eprintln!("warning: cannot read {name:?}'s configs: {error}");
            None
        }
    };
    if json {
        let configs: Option<Vec<Value>> = configs.as_ref().map(|configs| {
            configs
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "value": c.value,
                        "is_default": c.is_default,
                        "read_only": c.read_only,
                    })
                })
                .collect()
        });
        let partitions: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "partition": r.partition,
                    "leader": r.leader,
                    "replicas": r.replicas,
                    "isr": r.isr,
                    "log_start_offset": r.log_start,
                    "high_watermark": r.high_watermark,
                })
            })
            .collect();
        print_json(&json!({
            "topic": name,
            "topic_id": topic.topic_id.to_string(),
            "internal": topic.is_internal,
            "replication_factor": rf,
            "partitions": partitions,
            "configs": configs,
        }));
    } else {
        outln!(
            "Topic: {name}  partitions: {}  replication factor: {rf}",
            rows.len()
        );
        let mut table = Table::new(&[
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "IN-SYNC",
            "LOG-START",
            "HIGH-WATERMARK",
        ]);
        let shown = |o: Option<i64>| o.map_or_else(|| "-".to_owned(), |v| v.to_string());
        for r in &rows {
            table.row(vec![
                r.partition.to_string(),
                if r.leader >= 0 {
                    r.leader.to_string()
                } else {
                    "none".into()
                },
                ids(&r.replicas),
                ids(&r.isr),
                shown(r.log_start),
                shown(r.high_watermark),
            ]);
        }
        out!("{}", table.render());
        if let Some(configs) = &configs {
            let set: Vec<_> = configs.iter().filter(|c| !c.is_default).collect();
            outln!();
            if set.is_empty() {
                outln!("Configs: all {} at their defaults", configs.len());
            } else {
                let mut table = Table::new(&["CONFIG", "VALUE"]);
                for c in &set {
                    table.row(vec![c.name.clone(), c.value.clone().unwrap_or_default()]);
                }
                out!("{}", table.render());
                outln!(
                    "({} more at their defaults; --json lists every config)",
                    configs.len() - set.len()
                );
            }
        }
    }
    Ok(())
}

async fn alter(
    client: &mut Client,
    json: bool,
    name: &str,
    configs: &[(String, String)],
    deletes: &[String],
) -> anyhow::Result<()> {
    if configs.is_empty() && deletes.is_empty() {
        bail!("nothing to change: give --config KEY=VALUE or --delete-config KEY");
    }
    client.topic(name).await?;
    let mut changes: Vec<(&str, Option<&str>)> = configs
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    changes.extend(deletes.iter().map(|k| (k.as_str(), None)));
    client
        .any()
        .await?
        .alter_topic_configs(name, &changes)
        .await
        .with_context(|| format!("changing topic {name:?}'s configs"))?;
    if json {
        let set: serde_json::Map<String, Value> =
            configs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        print_json(&json!({ "topic": name, "set": set, "deleted": deletes }));
    } else {
        for (k, v) in configs {
            outln!("set {k}={v} on topic {name}");
        }
        for k in deletes {
            outln!("returned {k} to its default on topic {name}");
        }
    }
    Ok(())
}

async fn add_partitions(
    client: &mut Client,
    json: bool,
    name: &str,
    total: i32,
) -> anyhow::Result<()> {
    let topic = client.topic(name).await?;
    let current = topic.partitions.len();
    if usize::try_from(total).map_or(true, |total| total <= current) {
        bail!(
            "topic {name:?} has {current} partition(s); --partitions is the new total and must \
             be more than that (partitions cannot be removed)"
        );
    }
    client
        .any()
        .await?
        .create_partitions(name, total)
        .await
        .with_context(|| format!("adding partitions to topic {name:?}"))?;
    let wanted = usize::try_from(total).unwrap_or(usize::MAX);
    let topic = wait_for_partitions(client, name, wanted).await?;
    if json {
        print_json(&json!({ "topic": name, "partitions": topic.partitions.len() }));
    } else {
        outln!(
            "topic {name} now has {} partitions (was {current})",
            topic.partitions.len()
        );
    }
    Ok(())
}

/// Whether `topic` is one of the topics the nodes keep their own state in
/// (`__consumer_offsets`, `__transaction_state`).
fn is_internal(topic: &TopicMetadata) -> bool {
    topic.is_internal
        || matches!(
            topic.name.as_str(),
            "__consumer_offsets" | "__transaction_state"
        )
}

async fn delete(client: &mut Client, json: bool, name: &str) -> anyhow::Result<()> {
    // Say "does not exist" the friendly way rather than as a broker error code.
    let topic = client.topic(name).await?;
    // As kafka-topics.sh: deleting it would lose every group's offsets or every
    // transaction's state (the broker's DeleteTopics is not the place for that guard).
    if is_internal(&topic) {
        bail!(
            "topic {name:?} is an internal topic (the nodes keep consumer groups' offsets and \
             transactions' state there) and cannot be deleted; delete a group with \
             `myelin groups delete GROUP`"
        );
    }
    client
        .any()
        .await?
        .delete_topic(name)
        .await
        .with_context(|| format!("deleting topic {name:?}"))?;
    if json {
        print_json(&json!({ "deleted": name }));
    } else {
        outln!("deleted topic {name}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_key_equals_value() {
        assert_eq!(
            parse_config("retention.ms=1000"),
            Ok(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(parse_config("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_config("novalue").is_err());
        assert!(parse_config("=x").is_err());
    }
}
