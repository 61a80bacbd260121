//! A simulated consumer-group member (`ClientRole::GroupMember`), built on `myelin-client`.
//!
//! One task runs the classic protocol's member loop, one request at a time, the way a
//! client's consumer does it: find the coordinator, join (the leader assigns the topic's
//! partitions round-robin over the sorted member ids), sync, fetch the committed offsets of
//! its partitions, then consume them from their leaders, committing its positions after
//! reading and heartbeating every `HEARTBEAT_INTERVAL_MS`. Errors steer it as they steer a
//! real consumer: REBALANCE_IN_PROGRESS rejoins, ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID
//! rejoin as a new member, NOT_COORDINATOR and lost connections find the coordinator again.
//!
//! A paused member (fault `MemberPause`) resumes mid-loop and commits what it read before
//! it notices it was fenced: the zombie commit the coordinator must refuse. Every
//! assignment, commit and offset fetch is recorded for the group checkers.

use crate::group_protocol::{
    self, connect_to_coordinator, TopicToCreate, FIND_COORDINATOR_AGAIN, HEARTBEAT_INTERVAL_MS,
    REBALANCE_IN_PROGRESS, REJOIN_AS_NEW,
};
use crate::history::{ClientEvent, CommitOutcome, PartitionRef, ReadRecord};
use crate::scenario::{GROUP, TOPIC};
use crate::workload::{client_config, leader_address, ClientContext, MemberCommand};
use myelin_client::{Connection, Error, FetchOptions};
use std::collections::BTreeMap;
use std::time::Duration;

/// Commits happen after reading, at most this often.
const COMMIT_INTERVAL_MS: u64 = 100;
const FETCH_MAX_WAIT_MS: i32 = 200;

/// What one member knows.
#[derive(Default)]
struct Member {
    coordinator: Option<Connection>,
    member_id: String,
    generation: i32,
    /// Joined and synced in `generation`, with `positions` known.
    active: bool,
    /// Next offset to read, per assigned partition.
    positions: BTreeMap<i32, i64>,
    /// Positions as last committed (only changes are committed).
    committed: BTreeMap<i32, i64>,
    /// Connections to partition leaders.
    fetchers: BTreeMap<i32, Connection>,
    next_partition: usize,
    next_heartbeat_ms: u64,
    next_commit_ms: u64,
}

impl Member {
    /// Forgets the membership (keeping the member id to rejoin with, unless `as_new`).
    fn rejoin(&mut self, as_new: bool) {
        self.active = false;
        self.positions.clear();
        self.committed.clear();
        if as_new {
            self.member_id.clear();
            self.generation = 0;
        }
    }

    /// Steers the loop after a group request failed.
    fn on_group_error(&mut self, error: &Error) {
        match error.broker_code() {
            Some(REBALANCE_IN_PROGRESS) => self.rejoin(false),
            Some(code) if REJOIN_AS_NEW.contains(&code) => self.rejoin(true),
            Some(code) if FIND_COORDINATOR_AGAIN.contains(&code) => self.coordinator = None,
            _ => {
                if error.breaks_connection() || error.broker_code().is_none() {
                    self.coordinator = None;
                }
            }
        }
    }
}

fn now_ms(context: &ClientContext) -> u64 {
    context.log.now_us() / 1000
}

/// Runs one group member until the harness stops it.
pub(crate) async fn run_group_member(context: &mut ClientContext) {
    let mut member = Member::default();
    let client_id = format!("sim-member-{}", context.index);
    while !context.stopped() {
        let command = context
            .command
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(command) = command {
            carry_out(&mut member, command).await;
            continue;
        }
        if member.coordinator.is_none() {
            let topic = TopicToCreate {
                name: TOPIC,
                partitions: context.partitions,
            };
            match connect_to_coordinator(context, &client_id, GROUP, Some(topic)).await {
                Some(connection) => member.coordinator = Some(connection),
                None => {
                    context.backoff().await;
                    continue;
                }
            }
        }
        if !member.active {
            if join_and_sync(context, &mut member).await.is_err() {
                context.backoff().await;
            }
            continue;
        }
        consume_one(context, &mut member, &client_id).await;
        if commit_if_due(context, &mut member).await.is_err() {
            context.backoff().await;
            continue;
        }
        if now_ms(context) >= member.next_heartbeat_ms {
            member.next_heartbeat_ms = now_ms(context) + HEARTBEAT_INTERVAL_MS;
            let (group, member_id, generation) =
                (GROUP, member.member_id.clone(), member.generation);
            if let Some(coordinator) = member.coordinator.as_mut() {
                let started = context.log.now_us();
                let result = coordinator.heartbeat(group, &member_id, generation).await;
                context.record(ClientEvent::Heartbeat {
                    client: context.index,
                    member: member_id,
                    generation,
                    outcome: commit_outcome(&result),
                    started,
                    at: context.log.now_us(),
                });
                if let Err(error) = result {
                    member.on_group_error(&error);
                }
            }
        }
        context.think().await;
    }
}

/// A crash drops everything without a word; a leave says so first.
async fn carry_out(member: &mut Member, command: MemberCommand) {
    let down_ms = match command {
        MemberCommand::Crash { down_ms } => down_ms,
        MemberCommand::Leave { down_ms } => {
            if !member.member_id.is_empty() {
                let member_id = member.member_id.clone();
                if let Some(coordinator) = member.coordinator.as_mut() {
                    let _ = coordinator.leave_group(GROUP, &member_id).await;
                }
            }
            down_ms
        }
    };
    *member = Member::default();
    tokio::time::sleep(Duration::from_millis(down_ms)).await;
}

/// Joins, syncs (assigning, as the leader) and fetches the committed offsets of the
/// member's partitions.
async fn join_and_sync(context: &mut ClientContext, member: &mut Member) -> Result<(), Error> {
    let partitions = context.partitions;
    let Some(coordinator) = member.coordinator.as_mut() else {
        return Ok(());
    };
    let synced = group_protocol::join_and_sync(
        context,
        coordinator,
        GROUP,
        &mut member.member_id,
        &mut member.generation,
        partitions,
    )
    .await;
    let assigned = match synced {
        Ok(assigned) => assigned,
        Err(error) => {
            member.on_group_error(&error);
            return Err(error);
        }
    };
    let started = context.log.now_us();
    let fetched = coordinator.fetch_offsets(GROUP, TOPIC, &assigned).await;
    let offsets = match fetched {
        Ok(offsets) => offsets,
        Err(error) => {
            member.on_group_error(&error);
            return Err(error);
        }
    };
    context.record(ClientEvent::OffsetsFetched {
        client: context.index,
        offsets: offsets.clone(),
        started,
        at: context.log.now_us(),
    });
    member.positions = assigned.iter().map(|partition| (*partition, 0)).collect();
    for (partition, offset) in offsets {
        if offset >= 0 {
            member.positions.insert(partition, offset);
        }
    }
    member.committed = member.positions.clone();
    member.active = true;
    member.next_heartbeat_ms = now_ms(context) + HEARTBEAT_INTERVAL_MS;
    Ok(())
}

/// Reads the next assigned partition once, from its leader.
async fn consume_one(context: &mut ClientContext, member: &mut Member, client_id: &str) {
    let assigned: Vec<i32> = member.positions.keys().copied().collect();
    if assigned.is_empty() {
        return;
    }
    let partition = assigned[member.next_partition % assigned.len()];
    member.next_partition += 1;
    let fetcher = match member.fetchers.entry(partition) {
        std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::btree_map::Entry::Vacant(entry) => {
            let nodes = context
                .cluster
                .clone()
                .unwrap_or_else(|| vec![context.address]);
            let Ok(leader) = leader_address(&nodes, partition, client_id).await else {
                return;
            };
            let Ok(connection) = Connection::connect(leader, client_config(client_id)).await else {
                return;
            };
            entry.insert(connection)
        }
    };
    let position = member.positions.get(&partition).copied().unwrap_or(0);
    let options = FetchOptions {
        max_wait_ms: FETCH_MAX_WAIT_MS,
        min_bytes: 1,
        max_bytes: 64 * 1024,
        ..FetchOptions::default()
    };
    match fetcher.fetch(TOPIC, partition, position, &options).await {
        Ok(fetched) => {
            let records = ReadRecord::all_of(&fetched);
            context.record(ClientEvent::GroupRead {
                client: context.index,
                member: member.member_id.clone(),
                generation: member.generation,
                partition: PartitionRef {
                    node: context.topic_node,
                    partition,
                },
                fetch_offset: position,
                next_offset: fetched.next_offset,
                high_watermark: fetched.high_watermark,
                records,
                at: context.log.now_us(),
            });
            member.positions.insert(partition, fetched.next_offset);
        }
        Err(_) => {
            // Leadership moved, or the connection broke: find the leader again next time.
            member.fetchers.remove(&partition);
        }
    }
}

/// How a group request ended, as the history records it.
fn commit_outcome(result: &Result<(), Error>) -> CommitOutcome {
    match result {
        Ok(()) => CommitOutcome::Acknowledged,
        Err(error) => match error.broker_code() {
            Some(code) => CommitOutcome::Refused { code },
            None => CommitOutcome::Indeterminate {
                error: error.to_string(),
            },
        },
    }
}

/// Commits the positions that moved, at most every `COMMIT_INTERVAL_MS`.
async fn commit_if_due(context: &mut ClientContext, member: &mut Member) -> Result<(), Error> {
    if now_ms(context) < member.next_commit_ms || member.positions == member.committed {
        return Ok(());
    }
    member.next_commit_ms = now_ms(context) + COMMIT_INTERVAL_MS;
    let offsets: Vec<(i32, i64)> = member
        .positions
        .iter()
        .filter(|(partition, offset)| member.committed.get(partition) != Some(offset))
        .map(|(partition, offset)| (*partition, *offset))
        .collect();
    let Some(coordinator) = member.coordinator.as_mut() else {
        return Ok(());
    };
    let started = context.log.now_us();
    let result = coordinator
        .commit_offsets(GROUP, &member.member_id, member.generation, TOPIC, &offsets)
        .await;
    let outcome = commit_outcome(&result);
    context.record(ClientEvent::OffsetsCommitted {
        client: context.index,
        member: member.member_id.clone(),
        generation: member.generation,
        offsets: offsets.clone(),
        outcome,
        started,
        at: context.log.now_us(),
    });
    match result {
        Ok(()) => {
            member.committed.extend(offsets);
            Ok(())
        }
        Err(error) => {
            member.on_group_error(&error);
            Err(error)
        }
    }
}
