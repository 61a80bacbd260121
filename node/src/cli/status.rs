//! `myelin cluster status`: the live nodes, the controller, and every partition without a
//! leader or with fewer in-sync replicas than replicas.

use clap::Args;
use myelin_client::PartitionMetadata;
use serde_json::{json, Value};

use super::client::Client;
use super::output::{ids, out, outln, print_json, Table};
use super::CommonArgs;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The in-sync replicas of `partition` that are live: Myelin commits by majority and
/// reports every replica as in sync, but leaves a node it has not heard from for a few
/// seconds out of Metadata's brokers, so a replica on a node missing there is not in sync.
pub fn in_sync(partition: &PartitionMetadata, live_nodes: &[i32]) -> Vec<i32> {
    partition
        .isr
        .iter()
        .copied()
        .filter(|id| live_nodes.contains(id) && !partition.offline_replicas.contains(id))
        .collect()
}

/// The nodes that hold replicas but are not among `live`: nodes that are down (or cut off
/// from the node that answered), in id order.
pub fn down_nodes(topics: &[myelin_client::TopicMetadata], live: &[i32]) -> Vec<i32> {
    let mut down: Vec<i32> = topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .flat_map(|p| p.replicas.iter().copied())
        .filter(|id| !live.contains(id))
        .collect();
    down.sort_unstable();
    down.dedup();
    down
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(&args.common.bootstrap).await?;
    let metadata = client.metadata(None).await?;
    let mut brokers = metadata.brokers.clone();
    brokers.sort_by_key(|b| b.node_id);
    let live: Vec<i32> = brokers.iter().map(|b| b.node_id).collect();
    let down = down_nodes(&metadata.topics, &live);
    let mut unhealthy = Vec::new();
    let mut total = 0;
    let mut topics = metadata.topics.clone();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for topic in &topics {
        let mut partitions = topic.partitions.clone();
        partitions.sort_by_key(|p| p.partition);
        for p in partitions {
            total += 1;
            let isr = in_sync(&p, &live);
            let problem = if p.leader_id < 0 {
                Some("no leader")
            } else if isr.len() < p.replicas.len() {
                Some("under-replicated")
            } else {
                None
            };
            if let Some(problem) = problem {
                unhealthy.push((topic.name.clone(), PartitionMetadata { isr, ..p }, problem));
            }
        }
    }
    if args.common.json {
        let nodes: Vec<Value> = brokers
            .iter()
            .map(|b| json!({ "id": b.node_id, "host": b.host, "port": b.port }))
            .collect();
        let problems: Vec<Value> = unhealthy
            .iter()
            .map(|(topic, p, problem)| {
                json!({
                    "topic": topic,
                    "partition": p.partition,
                    "leader": p.leader_id,
                    "replicas": p.replicas,
                    "isr": p.isr,
                    "problem": problem,
                })
            })
            .collect();
        print_json(&json!({
            "cluster_id": metadata.cluster_id,
            "controller": metadata.controller_id,
            "nodes": nodes,
            "down_nodes": down,
            "partitions": total,
            "unhealthy_partitions": problems,
        }));
        return Ok(());
    }
    if let Some(id) = &metadata.cluster_id {
        outln!("Cluster: {id}");
    }
    let controller = if metadata.controller_id >= 0 {
        metadata.controller_id.to_string()
    } else {
        "none".to_owned()
    };
    outln!("Controller: {controller}");
    outln!();
    let mut nodes = Table::new(&["NODE", "ADDRESS", "ROLE"]);
    for b in &brokers {
        let role = if b.node_id == metadata.controller_id {
            "controller"
        } else {
            ""
        };
        nodes.row(vec![
            b.node_id.to_string(),
            format!("{}:{}", b.host, b.port),
            role.to_owned(),
        ]);
    }
    out!("{}", nodes.render());
    if !down.is_empty() {
        outln!(
            "down: node(s) {} (holding replicas, not among the live nodes)",
            ids(&down)
        );
    }
    outln!();
    if unhealthy.is_empty() {
        outln!("all {total} partitions healthy");
    } else {
        outln!("{} of {total} partitions unhealthy:", unhealthy.len());
        let mut table = Table::new(&[
            "TOPIC",
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "IN-SYNC",
            "PROBLEM",
        ]);
        for (topic, p, problem) in &unhealthy {
            table.row(vec![
                topic.clone(),
                p.partition.to_string(),
                if p.leader_id >= 0 {
                    p.leader_id.to_string()
                } else {
                    "none".into()
                },
                ids(&p.replicas),
                ids(&p.isr),
                (*problem).to_owned(),
            ]);
        }
        out!("{}", table.render());
    }
    Ok(())
}
