//! `myelin consume TOPIC`: print a topic's records, alone or as a member of a consumer
//! group.
//!
//! Alone it reads every partition (or `--partition N`) from the end, from the beginning
//! (`--from-beginning`) or from `--offset N`. With `--group G` it is an ordinary member of
//! a Kafka consumer group (protocol type "consumer", the range assignor, so Java,
//! librdkafka or kafkajs consumers can share the group): it joins through the group's
//! coordinator, the leader computes the assignment, it starts each partition at the
//! group's committed offset (else at the beginning with `--from-beginning`, else at the
//! end), heartbeats while it reads, rejoins when the group rebalances, commits what it
//! printed every [`COMMIT_INTERVAL`] and when it stops, and leaves the group on exit
//! (`--max-messages`, `--exit-at-end`, Ctrl-C or SIGTERM). The default isolation is
//! read_uncommitted, as in Kafka's Java consumer (librdkafka's is read_committed).
//!
//! Each record is printed with `--format` (placeholders below, then a newline), or with
//! `--json` as one JSON object per line.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use myelin_client::consumer_protocol::{
    assign_range, decode_assignment, decode_subscription, encode_assignment, encode_subscription,
    RANGE_ASSIGNOR,
};
use myelin_client::{
    ConsumedRecord, FetchOptions, IsolationLevel, JoinedGroup, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use serde_json::json;

use super::client::{broker_error, check_partition, Client};
use super::CommonArgs;
use kafka_protocol::ResponseError;

/// How often a group member heartbeats (a third of its session, as Kafka's clients do).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// The member's session: missing heartbeats this long, it is dropped from the group.
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How long the coordinator waits for every member to rejoin in a rebalance.
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
/// How often a group member commits what it printed.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a fetch waits for records (split between the partitions read).
const FETCH_WAIT_MS: i32 = 500;
/// Rebalances in a row that may fail before the consumer gives up.
const MAX_JOIN_ATTEMPTS: usize = 20;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Isolation {
    /// Everything up to the high watermark, open and aborted transactions included.
    #[value(name = "read_uncommitted", alias = "read-uncommitted")]
    ReadUncommitted,
    /// Only committed transactions, up to the last stable offset.
    #[value(name = "read_committed", alias = "read-committed")]
    ReadCommitted,
}

impl Isolation {
    fn level(self) -> IsolationLevel {
        match self {
            Isolation::ReadUncommitted => IsolationLevel::ReadUncommitted,
            Isolation::ReadCommitted => IsolationLevel::ReadCommitted,
        }
    }
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    pub topic: String,
    /// Start where the log starts (when the group has no committed offset).
    #[arg(long)]
    pub from_beginning: bool,
    /// Consume as a member of this consumer group (committing offsets).
    #[arg(short, long)]
    pub group: Option<String>,
    /// Read only this partition.
    #[arg(short, long, conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Where to start in each partition read (the one of --partition, else every one): an
    /// offset N, -N (N records before the end, as kcat's -o -N), beginning (or earliest)
    /// or end (or latest).
    #[arg(
        short,
        long,
        value_name = "OFFSET",
        value_parser = parse_start,
        allow_hyphen_values = true,
        conflicts_with_all = ["from_beginning", "group"]
    )]
    pub offset: Option<Start>,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    pub max_messages: Option<u64>,
    /// Stop once every partition read has been read to its end (like kcat -e).
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
    /// Which records to see.
    #[arg(long, value_enum, default_value = "read_uncommitted")]
    pub isolation: Isolation,
    /// How to print a record: {value} {key} {partition} {offset} {timestamp} {headers}
    /// {topic}; \n \t \\ escapes; {{ and }} for braces. A newline follows each record.
    #[arg(short, long, default_value = "{value}")]
    pub format: String,
}

/// Where `--offset` starts a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The log start.
    Beginning,
    /// The end (only records produced from now on).
    End,
    /// This offset.
    Offset(i64),
    /// This many records before the end (never before the log start).
    BeforeEnd(i64),
}

/// Parses `--offset`: `N`, `-N`, `beginning`/`earliest`, `end`/`latest`.
pub fn parse_start(text: &str) -> Result<Start, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "beginning" | "earliest" | "oldest" => Ok(Start::Beginning),
        "end" | "latest" | "newest" => Ok(Start::End),
        other => match other.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Start::Offset(n)),
            Ok(n) => Ok(Start::BeforeEnd(n.checked_neg().unwrap_or(i64::MAX))),
            Err(_) => Err(format!(
                "expected an offset N, -N (N before the end), beginning or end; got {text:?}"
            )),
        },
    }
}

/// One piece of a `--format` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Key,
    Value,
    Partition,
    Offset,
    Timestamp,
    Headers,
    Topic,
}

/// Parses a `--format` string.
pub fn parse_format(format: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(format!(
                                "unclosed {{{name} in --format (write {{{{ for a brace)"
                            ))
                        }
                    }
                }
                let piece = match name.as_str() {
                    "key" => Piece::Key,
                    "value" => Piece::Value,
                    "partition" => Piece::Partition,
                    "offset" => Piece::Offset,
                    "timestamp" => Piece::Timestamp,
                    "headers" => Piece::Headers,
                    "topic" => Piece::Topic,
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}} in --format; use {{key}} {{value}} \
                             {{partition}} {{offset}} {{timestamp}} {{headers}} {{topic}}"
                        ))
                    }
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
            }
            '}' => return Err("a lone } in --format (write }} for a brace)".into()),
            '\\' => match chars.next() {
                Some('n') => text.push('\n'),
                Some('t') => text.push('\t'),
                Some('\\') => text.push('\\'),
                Some(other) => {
                    text.push('\\');
                    text.push(other);
                }
                None => text.push('\\'),
            },
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn lossy(bytes: &Option<Bytes>) -> String {
    bytes
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Headers as `k1=v1,k2=v2` (a null value prints as the bare key).
fn headers_text(headers: &[(String, Option<Bytes>)]) -> String {
    headers
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={}", String::from_utf8_lossy(v)),
            None => k.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `record` printed with `pieces`, without the newline.
pub fn render(pieces: &[Piece], topic: &str, partition: i32, record: &ConsumedRecord) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Key => out.push_str(&lossy(&record.key)),
            Piece::Value => out.push_str(&lossy(&record.value)),
            Piece::Partition => out.push_str(&partition.to_string()),
            Piece::Offset => out.push_str(&record.offset.to_string()),
            Piece::Timestamp => out.push_str(&record.timestamp.to_string()),
            Piece::Headers => out.push_str(&headers_text(&record.headers)),
            Piece::Topic => out.push_str(topic),
        }
    }
    out
}

fn record_json(topic: &str, partition: i32, record: &ConsumedRecord) -> serde_json::Value {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(text(v))))
        .collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": text(&record.key),
        "value": text(&record.value),
        "headers": headers,
    })
}

/// Where a partition is read from, and where its end was last seen.
#[derive(Debug, Clone, Copy)]
struct Position {
    next: i64,
    end: Option<i64>,
}

/// The group membership of a `--group` consumer.
struct Member {
    group: String,
    member_id: String,
    generation: i32,
    /// Offsets printed and not yet committed.
    uncommitted: bool,
    last_heartbeat: Instant,
    last_commit: Instant,
}

/// Why the read loop stopped.
enum Stop {
    Done,
    Rejoin,
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let pieces = parse_format(&args.format).map_err(anyhow::Error::msg)?;
    let mut client = Client::connect(&args.common.bootstrap).await?;
    let topic = client.topic(&args.topic).await?;
    let partition_count = i32::try_from(topic.partitions.len()).context("partition count")?;
    check_partition(&args.topic, partition_count, args.partition)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        myelin_node::shutdown_signal().await;
        flag.store(true, Ordering::SeqCst);
    });
    let mut consumer = Consumer {
        args: &args,
        pieces,
        printed: 0,
        stop,
        out: std::io::BufWriter::new(std::io::stdout().lock()),
    };
    match &args.group {
        None => {
            let partitions: Vec<i32> = match args.partition {
                Some(p) => vec![p],
                None => (0..partition_count).collect(),
            };
            let mut positions = BTreeMap::new();
            for p in partitions {
                let next = match args.offset {
                    Some(Start::Offset(offset)) => offset,
                    Some(Start::Beginning) => {
                        start_offset(&mut client, &args.topic, p, true, args.isolation).await?
                    }
                    Some(Start::End) => {
                        start_offset(&mut client, &args.topic, p, false, args.isolation).await?
                    }
                    Some(Start::BeforeEnd(back)) => {
                        let start =
                            start_offset(&mut client, &args.topic, p, true, args.isolation).await?;
                        let end = start_offset(&mut client, &args.topic, p, false, args.isolation)
                            .await?;
                        end.saturating_sub(back).max(start)
                    }
                    None => {
                        start_offset(
                            &mut client,
                            &args.topic,
                            p,
                            args.from_beginning,
                            args.isolation,
                        )
                        .await?
                    }
                };
                positions.insert(p, Position { next, end: None });
            }
            consumer.read(&mut client, &mut positions, None).await?;
        }
        Some(group) => consumer.consume_in_group(&mut client, group).await?,
    }
    consumer.out.flush().ok();
    Ok(())
}

/// The earliest or latest offset of a partition (the latest is the last stable offset
/// under read_committed, as Kafka's consumers ask it).
async fn start_offset(
    client: &mut Client,
    topic: &str,
    partition: i32,
    from_beginning: bool,
    isolation: Isolation,
) -> anyhow::Result<i64> {
    let timestamp = if from_beginning {
        EARLIEST_TIMESTAMP
    } else {
        LATEST_TIMESTAMP
    };
    let isolation = isolation.level();
    let name = topic.to_owned();
    client
        .on_leader(topic, partition, move |conn| {
            let name = name.clone();
            Box::pin(async move {
                conn.list_offsets_isolated(&name, partition, timestamp, isolation)
                    .await
            })
        })
        .await
}

struct Consumer<'a> {
    args: &'a ConsumeArgs,
    pieces: Vec<Piece>,
    printed: u64,
    stop: Arc<AtomicBool>,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl Consumer<'_> {
    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
            || self
                .args
                .max_messages
                .is_some_and(|max| self.printed >= max)
    }

    /// Reads `positions` until done (or, in a group, until a rebalance).
    async fn read(
        &mut self,
        client: &mut Client,
        positions: &mut BTreeMap<i32, Position>,
        mut member: Option<&mut Member>,
    ) -> anyhow::Result<Stop> {
        let topic = self.args.topic.clone();
        let isolation = self.args.isolation.level();
        let wait = (FETCH_WAIT_MS / i32::try_from(positions.len().max(1)).unwrap_or(1)).max(10);
        let options = FetchOptions {
            max_wait_ms: wait,
            isolation,
            ..FetchOptions::default()
        };
        loop {
            if self.should_stop() {
                return Ok(Stop::Done);
            }
            if self.args.exit_at_end
                && positions
                    .values()
                    .all(|p| p.end.is_some_and(|end| p.next >= end))
            {
                return Ok(Stop::Done);
            }
            if let Some(member) = member.as_deref_mut() {
                if let Some(stop) = self.keep_membership(client, member, positions).await? {
                    return Ok(stop);
                }
            }
            for (&partition, position) in positions.iter_mut() {
                if self.should_stop() {
                    break;
                }
                let (name, offset) = (topic.clone(), position.next);
                let fetched = client
                    .on_leader(&topic, partition, move |conn| {
                        let name = name.clone();
                        Box::pin(
                            async move { conn.fetch(&name, partition, offset, &options).await },
                        )
                    })
                    .await;
                let fetched = match fetched {
                    Ok(fetched) => fetched,
                    Err(error) if broker_error(&error) == Some(ResponseError::OffsetOutOfRange) => {
                        let next = start_offset(
                            client,
                            &topic,
                            partition,
                            self.args.from_beginning,
                            self.args.isolation,
                        )
                        .await?;
                        eprintln!(
                            "{topic}/{partition}: offset {offset} is out of range; continuing at {next}"
                        );
                        position.next = next;
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                for record in &fetched.records {
                    if self
                        .args
                        .max_messages
                        .is_some_and(|max| self.printed >= max)
                    {
                        break;
                    }
                    let line = if self.args.common.json {
                        record_json(&topic, partition, record).to_string()
                    } else {
                        render(&self.pieces, &topic, partition, record)
                    };
                    if writeln!(self.out, "{line}").is_err() {
                        // stdout closed (e.g. `| head`): stop as if interrupted.
                        self.stop.store(true, Ordering::SeqCst);
                        break;
                    }
                    self.printed += 1;
                    position.next = record.offset + 1;
                }
                if self.args.max_messages.is_none_or(|max| self.printed < max) {
                    position.next = position.next.max(fetched.next_offset);
                }
                position.end = Some(match isolation {
                    IsolationLevel::ReadCommitted if fetched.last_stable_offset >= 0 => {
                        fetched.last_stable_offset
                    }
                    _ => fetched.high_watermark,
                });
                if !fetched.records.is_empty() {
                    if let Some(member) = member.as_deref_mut() {
                        member.uncommitted = true;
                    }
                }
                if self.out.flush().is_err() {
                    self.stop.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Heartbeats and commits when due; `Some(Rejoin)` when the group is rebalancing.
    async fn keep_membership(
        &mut self,
        client: &mut Client,
        member: &mut Member,
        positions: &BTreeMap<i32, Position>,
    ) -> anyhow::Result<Option<Stop>> {
        if member.uncommitted && member.last_commit.elapsed() >= COMMIT_INTERVAL {
            if let Err(error) = commit(client, member, &self.args.topic, positions).await {
                if rejoin_code(&error) {
                    return Ok(Some(Stop::Rejoin));
                }
                return Err(error);
            }
        }
        if member.last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL {
            let (group, id, generation) = (
                member.group.clone(),
                member.member_id.clone(),
                member.generation,
            );
            let result = client
                .on_coordinator(&member.group, move |conn| {
                    let (group, id) = (group.clone(), id.clone());
                    Box::pin(async move { conn.heartbeat(&group, &id, generation).await })
                })
                .await;
            member.last_heartbeat = Instant::now();
            match result {
                Ok(()) => {}
                Err(error) if rejoin_code(&error) => {
                    if broker_error(&error) == Some(ResponseError::RebalanceInProgress) {
                        // Commit what was printed under this generation before giving it up.
                        let _ = commit(client, member, &self.args.topic, positions).await;
                    } else {
                        member.generation = -1;
                        if broker_error(&error) == Some(ResponseError::UnknownMemberId) {
                            member.member_id.clear();
                        }
                    }
                    return Ok(Some(Stop::Rejoin));
                }
                Err(error) => return Err(error).context("heartbeat"),
            }
        }
        Ok(None)
    }

    async fn consume_in_group(&mut self, client: &mut Client, group: &str) -> anyhow::Result<()> {
        let mut member = Member {
            group: group.to_owned(),
            member_id: String::new(),
            generation: -1,
            uncommitted: false,
            last_heartbeat: Instant::now(),
            last_commit: Instant::now(),
        };
        let result = self.group_loop(client, &mut member).await;
        // Leave even after a failure, so the group rebalances now rather than after the
        // session timeout.
        if !member.member_id.is_empty() {
            let (group, id) = (member.group.clone(), member.member_id.clone());
            let left = client
                .on_coordinator(&member.group, move |conn| {
                    let (group, id) = (group.clone(), id.clone());
                    Box::pin(async move { conn.leave_group(&group, &id).await })
                })
                .await;
            if let Err(error) = left {
                eprintln!(
                    "warning: could not leave group {:?}: {error:#}",
                    member.group
                );
            }
        }
        result
    }

    async fn group_loop(&mut self, client: &mut Client, member: &mut Member) -> anyhow::Result<()> {
        let mut failed_joins = 0;
        loop {
            if self.should_stop() {
                return Ok(());
            }
            let assigned = match join(client, member, &self.args.topic).await {
                Ok(assigned) => {
                    failed_joins = 0;
                    assigned
                }
                Err(error) if rejoin_code(&error) && failed_joins < MAX_JOIN_ATTEMPTS => {
                    failed_joins += 1;
                    continue;
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("joining group {:?}", member.group))
                }
            };
            member.last_heartbeat = Instant::now();
            member.last_commit = Instant::now();
            let mut positions = BTreeMap::new();
            let committed = if assigned.is_empty() {
                Vec::new()
            } else {
                let (group, topic, partitions) = (
                    member.group.clone(),
                    self.args.topic.clone(),
                    assigned.clone(),
                );
                client
                    .on_coordinator(&member.group, move |conn| {
                        let (group, topic, partitions) =
                            (group.clone(), topic.clone(), partitions.clone());
                        Box::pin(
                            async move { conn.fetch_offsets(&group, &topic, &partitions).await },
                        )
                    })
                    .await?
            };
            for p in assigned {
                let next = match committed.iter().find(|(q, _)| *q == p) {
                    Some((_, offset)) if *offset >= 0 => *offset,
                    _ => {
                        start_offset(
                            client,
                            &self.args.topic,
                            p,
                            self.args.from_beginning,
                            self.args.isolation,
                        )
                        .await?
                    }
                };
                positions.insert(p, Position { next, end: None });
            }
            let stop = if positions.is_empty() && !self.args.exit_at_end {
                self.idle(client, member, &positions).await?
            } else {
                self.read(client, &mut positions, Some(member)).await?
            };
            if let Stop::Done = stop {
                if member.uncommitted {
                    commit(client, member, &self.args.topic, &positions)
                        .await
                        .context("committing offsets on exit")?;
                }
                return Ok(());
            }
        }
    }

    /// A member with no partitions: heartbeat until something changes.
    async fn idle(
        &mut self,
        client: &mut Client,
        member: &mut Member,
        positions: &BTreeMap<i32, Position>,
    ) -> anyhow::Result<Stop> {
        loop {
            if self.should_stop() {
                return Ok(Stop::Done);
            }
            if let Some(stop) = self.keep_membership(client, member, positions).await? {
                return Ok(stop);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// True for the errors after which a member rejoins its group.
fn rejoin_code(error: &anyhow::Error) -> bool {
    matches!(
        broker_error(error),
        Some(
            ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::RebalanceInProgress
        )
    )
}

/// Commits the positions of `positions` as `member`.
async fn commit(
    client: &mut Client,
    member: &mut Member,
    topic: &str,
    positions: &BTreeMap<i32, Position>,
) -> anyhow::Result<()> {
    let offsets: Vec<(i32, i64)> = positions.iter().map(|(p, pos)| (*p, pos.next)).collect();
    if offsets.is_empty() {
        member.uncommitted = false;
        return Ok(());
    }
    let (group, id, generation, topic) = (
        member.group.clone(),
        member.member_id.clone(),
        member.generation,
        topic.to_owned(),
    );
    client
        .on_coordinator(&member.group, move |conn| {
            let (group, id, topic, offsets) =
                (group.clone(), id.clone(), topic.clone(), offsets.clone());
            Box::pin(async move {
                conn.commit_offsets(&group, &id, generation, &topic, &offsets)
                    .await
            })
        })
        .await?;
    member.uncommitted = false;
    member.last_commit = Instant::now();
    Ok(())
}

/// One rebalance: JoinGroup, the leader's range assignment, SyncGroup. Returns this
/// member's partitions of `topic`.
async fn join(client: &mut Client, member: &mut Member, topic: &str) -> anyhow::Result<Vec<i32>> {
    let subscription = encode_subscription(&[topic])?;
    let (group, id) = (member.group.clone(), member.member_id.clone());
    let joined: anyhow::Result<JoinedGroup> = client
        .on_coordinator(&member.group, move |conn| {
            let (group, id, subscription) = (group.clone(), id.clone(), subscription.clone());
            Box::pin(async move {
                conn.join_group(
                    &group,
                    &id,
                    "consumer",
                    &[(RANGE_ASSIGNOR, subscription)],
                    SESSION_TIMEOUT_MS,
                    REBALANCE_TIMEOUT_MS,
                )
                .await
            })
        })
        .await;
    let joined = match joined {
        Ok(joined) => joined,
        Err(error) => {
            if broker_error(&error) == Some(ResponseError::UnknownMemberId) {
                member.member_id.clear();
            }
            return Err(error);
        }
    };
    member.member_id = joined.member_id.clone();
    member.generation = joined.generation;
    if joined
        .protocol
        .as_deref()
        .is_some_and(|p| p != RANGE_ASSIGNOR)
    {
        bail!(
            "group {:?} chose assignor {:?}; this consumer only speaks {RANGE_ASSIGNOR:?}",
            member.group,
            joined.protocol
        );
    }
    let assignments = if joined.is_leader() {
        leader_assignments(client, &joined).await?
    } else {
        Vec::new()
    };
    let (group, id, generation) = (
        member.group.clone(),
        member.member_id.clone(),
        member.generation,
    );
    let assignment = client
        .on_coordinator(&member.group, move |conn| {
            let (group, id, assignments) = (group.clone(), id.clone(), assignments.clone());
            let wait = Duration::from_millis(REBALANCE_TIMEOUT_MS as u64);
            Box::pin(async move {
                conn.sync_group(&group, &id, generation, &assignments, wait)
                    .await
            })
        })
        .await?;
    let assigned = decode_assignment(&assignment)?;
    Ok(assigned.get(topic).cloned().unwrap_or_default())
}

/// The leader's range assignment of every member's subscribed topics.
async fn leader_assignments(
    client: &mut Client,
    joined: &JoinedGroup,
) -> anyhow::Result<Vec<(String, Bytes)>> {
    let mut members = Vec::new();
    for (id, metadata) in &joined.members {
        // A member whose subscription does not decode subscribes to nothing.
        members.push((
            id.clone(),
            decode_subscription(metadata).unwrap_or_default(),
        ));
    }
    let mut topics: Vec<&str> = members
        .iter()
        .flat_map(|(_, topics)| topics.iter().map(String::as_str))
        .collect();
    topics.sort_unstable();
    topics.dedup();
    let metadata = client.metadata(Some(&topics)).await?;
    let counts: BTreeMap<String, i32> = metadata
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .map(|t| {
            (
                t.name.clone(),
                i32::try_from(t.partitions.len()).unwrap_or(0),
            )
        })
        .collect();
    assign_range(&members, &counts)
        .into_iter()
        .map(|(id, assigned)| Ok((id, encode_assignment(&assigned)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ConsumedRecord {
        ConsumedRecord {
            offset: 42,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![
                ("h".into(), Some(Bytes::from_static(b"1"))),
                ("n".into(), None),
            ],
        }
    }

    #[test]
    fn every_placeholder_renders() {
        let pieces =
            parse_format("{topic}/{partition}@{offset} {key}={value} {timestamp} [{headers}]")
                .unwrap();
        assert_eq!(
            render(&pieces, "t", 3, &record()),
            "t/3@42 k=v 1700000000000 [h=1,n]"
        );
    }

    #[test]
    fn braces_and_escapes() {
        let pieces = parse_format("{{{value}}}\\t\\n\\\\").unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Text("{".into()),
                Piece::Value,
                Piece::Text("}\t\n\\".into())
            ]
        );
        assert_eq!(render(&pieces, "t", 0, &record()), "{v}\t\n\\");
        let null_key = ConsumedRecord {
            key: None,
            ..record()
        };
        assert_eq!(
            render(&parse_format("[{key}]").unwrap(), "t", 0, &null_key),
            "[]"
        );
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn parse(args: &[&str]) -> Result<ConsumeArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("consume").chain(args.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn offsets_take_kcat_and_kafka_forms() {
        for (text, start) in [
            ("5", Start::Offset(5)),
            ("0", Start::Offset(0)),
            ("-3", Start::BeforeEnd(3)),
            ("beginning", Start::Beginning),
            ("earliest", Start::Beginning),
            ("end", Start::End),
            ("latest", Start::End),
        ] {
            assert_eq!(parse_start(text), Ok(start), "{text}");
            // As the flag, a negative number too, and without --partition.
            let args = parse(&["t", "--offset", text]).unwrap();
            assert_eq!(args.offset, Some(start), "{text}");
        }
        assert!(parse_start("soon").is_err());
        assert!(parse(&["t", "--offset", "1", "--group", "g"]).is_err());
        assert!(parse(&["t", "--offset", "1", "--from-beginning"]).is_err());
    }

    #[test]
    fn isolation_takes_both_spellings() {
        for spelling in ["read_committed", "read-committed"] {
            let args = parse(&["t", "--isolation", spelling]).unwrap();
            assert!(matches!(args.isolation, Isolation::ReadCommitted));
        }
        let args = parse(&["t"]).unwrap();
        assert!(matches!(args.isolation, Isolation::ReadUncommitted));
    }

    #[test]
    fn bad_formats_are_refused_with_the_placeholders_listed() {
        let error = parse_format("{nope}").unwrap_err();
        assert!(
            error.contains("{nope}") && error.contains("{value}"),
            "{error}"
        );
        assert!(parse_format("{value").is_err());
        assert!(parse_format("a } b").is_err());
    }
}
