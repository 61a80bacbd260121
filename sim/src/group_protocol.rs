//! The consumer-group client steps that the simulated group members (`group_member.rs`)
//! and the exactly-once copiers (`txn_clients.rs`) share: finding the group's coordinator
//! and connecting to it, and joining and syncing, the leader dealing the partitions
//! round-robin over the sorted member ids. Each caller keeps its own membership state and
//! decides what an error means for it.

use crate::history::ClientEvent;
use crate::workload::{client_config, ClientContext, TOPIC_ALREADY_EXISTS};
use bytes::Bytes;
use myelin_client::{Connection, Error};
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) const SESSION_TIMEOUT_MS: i32 = 1_500;
pub(crate) const REBALANCE_TIMEOUT_MS: i32 = 3_000;
pub(crate) const HEARTBEAT_INTERVAL_MS: u64 = 300;

/// Kafka error codes the group clients react to.
pub(crate) const REBALANCE_IN_PROGRESS: i16 = 27;
/// The group no longer knows this member as it was: rejoin as a new member.
pub(crate) const REJOIN_AS_NEW: [i16; 3] = [
    22, // ILLEGAL_GENERATION
    25, // UNKNOWN_MEMBER_ID
    82, // FENCED_INSTANCE_ID
];
/// The coordinator moved or is loading: find it again.
pub(crate) const FIND_COORDINATOR_AGAIN: [i16; 3] = [
    14, // COORDINATOR_LOAD_IN_PROGRESS
    15, // COORDINATOR_NOT_AVAILABLE
    16, // NOT_COORDINATOR
];

/// A topic a client creates before it looks for its group's coordinator, unless it exists.
pub(crate) struct TopicToCreate<'a> {
    pub name: &'a str,
    pub partitions: i32,
}

/// Asks the bootstrap nodes, in turn, for `group`'s coordinator and connects to it
/// (creating `topic` first when given).
pub(crate) async fn connect_to_coordinator(
    context: &mut ClientContext,
    client_id: &str,
    group: &str,
    topic: Option<TopicToCreate<'_>>,
) -> Option<Connection> {
    let nodes = context
        .cluster
        .clone()
        .unwrap_or_else(|| vec![context.address]);
    for _ in 0..nodes.len() {
        let bootstrap = context.address;
        context.bootstrap_next();
        let Ok(mut connection) = Connection::connect(bootstrap, client_config(client_id)).await
        else {
            continue;
        };
        if let Some(topic) = &topic {
            let replication_factor = nodes.len().min(3) as i16;
            match connection
                .create_topic(topic.name, topic.partitions, replication_factor, &[])
                .await
            {
                Ok(()) => {}
                Err(error) if error.broker_code() == Some(TOPIC_ALREADY_EXISTS) => {}
                Err(_) => continue,
            }
        }
        let Ok(coordinator) = connection.find_coordinator(group).await else {
            continue;
        };
        let Ok(address) =
            format!("{}:{}", coordinator.host, coordinator.port).parse::<SocketAddr>()
        else {
            continue;
        };
        if let Ok(connection) = Connection::connect(address, client_config(client_id)).await {
            return Some(connection);
        }
    }
    None
}

/// Joins `group` and syncs, assigning `partitions` round-robin when this member leads.
/// `member_id` and `generation` take what the join gave (before the sync, so a failed sync
/// is answered under them); the assignment is recorded and its partitions returned.
pub(crate) async fn join_and_sync(
    context: &mut ClientContext,
    coordinator: &mut Connection,
    group: &str,
    member_id: &mut String,
    generation: &mut i32,
    partitions: i32,
) -> Result<Vec<i32>, Error> {
    let joined = coordinator
        .join_group(
            group,
            member_id,
            "consumer",
            &[("round-robin", Bytes::new())],
            SESSION_TIMEOUT_MS,
            REBALANCE_TIMEOUT_MS,
        )
        .await?;
    *member_id = joined.member_id.clone();
    *generation = joined.generation;
    let assignments = if joined.is_leader() {
        assign_round_robin(&joined.members, partitions)
    } else {
        Vec::new()
    };
    let wait = Duration::from_millis(REBALANCE_TIMEOUT_MS as u64);
    let assignment = coordinator
        .sync_group(
            group,
            &joined.member_id,
            joined.generation,
            &assignments,
            wait,
        )
        .await?;
    let assigned = parse_assignment(&assignment);
    context.record(ClientEvent::GroupAssigned {
        client: context.index,
        member: joined.member_id.clone(),
        generation: joined.generation,
        partitions: assigned.clone(),
        at: context.log.now_us(),
    });
    Ok(assigned)
}

/// The leader's assignment: partitions dealt round-robin over the sorted member ids. Each
/// assignment is the partition list as text ("0,3").
fn assign_round_robin(members: &[(String, Bytes)], partitions: i32) -> Vec<(String, Bytes)> {
    let mut ids: Vec<&String> = members.iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut lists: Vec<Vec<String>> = vec![Vec::new(); ids.len()];
    for partition in 0..partitions {
        if let Some(list) = lists.get_mut(partition as usize % ids.len().max(1)) {
            list.push(partition.to_string());
        }
    }
    ids.into_iter()
        .zip(lists)
        .map(|(id, list)| (id.clone(), Bytes::from(list.join(","))))
        .collect()
}

/// A member's assignment as `assign_round_robin` wrote it; anything else assigns nothing.
fn parse_assignment(assignment: &[u8]) -> Vec<i32> {
    std::str::from_utf8(assignment)
        .unwrap_or_default()
        .split(',')
        .filter_map(|text| text.parse().ok())
        .collect()
}
