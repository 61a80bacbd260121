//! `myelin groups`: list consumer groups, describe one (members, assignments, committed
//! offsets and lag), reset a group's offsets while it has no members.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use myelin_client::consumer_protocol::decode_assignment;
use myelin_client::{GroupDescription, ListedGroup};
use serde_json::{json, Value};

use super::client::{broker_error, Client};
use kafka_protocol::ResponseError;

use super::output::{out, outln, print_json, Table};
use super::topics::watermarks;
use super::CommonArgs;

#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List the consumer groups: name, state, protocol type.
    List,
    /// Describe a group: its state, its members and their partitions, and per partition the
    /// committed offset, the log end offset and the lag.
    Describe { group: String },
    /// Set a group's committed offsets of a topic (only while the group has no members).
    #[command(group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (only while it has no members).
    Delete { group: String },
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    pub group: String,
    /// The topic whose offsets to reset (every partition).
    #[arg(long)]
    pub topic: String,
    /// To each partition's log start.
    #[arg(long)]
    pub to_earliest: bool,
    /// To each partition's high watermark (skip everything there now).
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset in every partition (kept within the log start and high watermark).
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// To the first record at or after this time: ISO 8601 (2026-12-06T10:00:00Z,
    /// 2026-12-06T11:00:00+01:00; without a zone, UTC; a date alone, its midnight UTC) or
    /// milliseconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_datetime)]
    pub to_datetime: Option<i64>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Commit the new offsets (the default; accepted for kafka-consumer-groups.sh habits).
    #[arg(long, conflicts_with = "dry_run")]
    pub execute: bool,
}

pub async fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let json = args.common.json;
    let mut client = Client::connect(&args.common.bootstrap).await?;
    match args.command {
        GroupsCommand::List => list(&mut client, json).await,
        GroupsCommand::Describe { group } => describe(&mut client, json, &group).await,
        GroupsCommand::ResetOffsets(reset) => reset_offsets(&mut client, json, &reset).await,
        GroupsCommand::Delete { group } => delete(&mut client, json, &group).await,
    }
}

async fn list(client: &mut Client, json: bool) -> anyhow::Result<()> {
    client.metadata(Some(&[])).await?;
    // Each broker lists only the groups it coordinates.
    let mut groups: BTreeMap<String, ListedGroup> = BTreeMap::new();
    for id in client.broker_ids() {
        let listed = match client.node(id).await {
            Ok(conn) => conn.list_groups().await.map_err(anyhow::Error::from),
            Err(error) => Err(error),
        };
        match listed {
            Ok(listed) => groups.extend(listed.into_iter().map(|g| (g.group.clone(), g))),
            Err(error) => eprintln!("warning: node {id} did not list its groups: {error:#}"),
        }
    }
    if json {
        let list: Vec<Value> = groups
            .values()
            .map(
                |g| json!({ "group": g.group, "state": g.state, "protocol_type": g.protocol_type }),
            )
            .collect();
        print_json(&json!({ "groups": list }));
    } else {
        let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
        for g in groups.values() {
            table.row(vec![
                g.group.clone(),
                g.state.clone(),
                g.protocol_type.clone(),
            ]);
        }
        out!("{}", table.render());
    }
    Ok(())
}

async fn describe_group(client: &mut Client, group: &str) -> anyhow::Result<GroupDescription> {
    let name = group.to_owned();
    client
        .on_coordinator(group, move |conn| {
            let name = name.clone();
            Box::pin(async move { conn.describe_group(&name).await })
        })
        .await
}

async fn committed_offsets(
    client: &mut Client,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let name = group.to_owned();
    let offsets = client
        .on_coordinator(group, move |conn| {
            let name = name.clone();
            Box::pin(async move { conn.fetch_all_offsets(&name).await })
        })
        .await?;
    Ok(offsets
        .into_iter()
        .map(|o| ((o.topic, o.partition), o.offset))
        .collect())
}

fn missing_group(group: &str) -> anyhow::Error {
    anyhow::anyhow!("group {group:?} does not exist: see the groups with `myelin groups list`")
}

async fn describe(client: &mut Client, json: bool, group: &str) -> anyhow::Result<()> {
    let description = describe_group(client, group).await?;
    let committed = committed_offsets(client, group).await?;
    if description.state == "Dead" && committed.is_empty() {
        return Err(missing_group(group));
    }
    // Partition -> owning member.
    let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut assignments = Vec::new();
    for member in &description.members {
        let assigned = if description.protocol_type == "consumer" {
            decode_assignment(&member.assignment).unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        for (topic, partitions) in &assigned {
            for p in partitions {
                owners.insert((topic.clone(), *p), member.member_id.clone());
            }
        }
        assignments.push(assigned);
    }
    let partitions: BTreeSet<(String, i32)> =
        committed.keys().chain(owners.keys()).cloned().collect();
    let mut rows = Vec::new();
    for (topic, partition) in partitions {
        let log_end = watermarks(client, &topic, partition)
            .await
            .ok()
            .map(|m| m.1);
        let offset = committed.get(&(topic.clone(), partition)).copied();
        let lag = match (offset, log_end) {
            (Some(c), Some(end)) => Some((end - c).max(0)),
            // Nothing committed: everything up to the end is still to be read.
            (None, Some(end)) => Some(end),
            _ => None,
        };
        let owner = owners.get(&(topic.clone(), partition)).cloned();
        rows.push((topic, partition, offset, log_end, lag, owner));
    }
    if json {
        let members: Vec<Value> = description
            .members
            .iter()
            .zip(&assignments)
            .map(|(m, assigned)| {
                json!({
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "host": m.client_host,
                    "assignment": assigned,
                })
            })
            .collect();
        let offsets: Vec<Value> = rows
            .iter()
            .map(|(topic, partition, offset, log_end, lag, owner)| {
                json!({
                    "topic": topic,
                    "partition": partition,
                    "committed_offset": offset,
                    "log_end_offset": log_end,
                    "lag": lag,
                    "member_id": owner,
                })
            })
            .collect();
        print_json(&json!({
            "group": group,
            "state": description.state,
            "protocol_type": description.protocol_type,
            "protocol": description.protocol,
            "members": members,
            "offsets": offsets,
        }));
        return Ok(());
    }
    outln!(
        "Group: {group}  state: {}  protocol: {}  members: {}",
        description.state,
        match (
            description.protocol_type.as_str(),
            description.protocol.as_str()
        ) {
            ("", _) => "-".to_owned(),
            (kind, "") => kind.to_owned(),
            (kind, protocol) => format!("{kind}/{protocol}"),
        },
        description.members.len()
    );
    if !description.members.is_empty() {
        outln!();
        let mut table = Table::new(&["MEMBER", "CLIENT-ID", "HOST", "PARTITIONS"]);
        for (m, assigned) in description.members.iter().zip(&assignments) {
            let partitions = assigned
                .iter()
                .map(|(topic, ps)| {
                    let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                    format!("{topic}:{}", ps.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ");
            table.row(vec![
                m.member_id.clone(),
                m.client_id.clone(),
                m.client_host.clone(),
                partitions,
            ]);
        }
        out!("{}", table.render());
    }
    outln!();
    let mut table = Table::new(&[
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "LOG-END",
        "LAG",
        "MEMBER",
    ]);
    let shown = |o: &Option<i64>| o.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for (topic, partition, offset, log_end, lag, owner) in &rows {
        table.row(vec![
            topic.clone(),
            partition.to_string(),
            shown(offset),
            shown(log_end),
            shown(lag),
            owner.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out!("{}", table.render());
    Ok(())
}

async fn reset_offsets(client: &mut Client, json: bool, args: &ResetArgs) -> anyhow::Result<()> {
    let group = args.group.as_str();
    let description = describe_group(client, group).await?;
    if !description.members.is_empty() || !matches!(description.state.as_str(), "Empty" | "Dead") {
        bail!(
            "group {group:?} has {} active member(s) (state {}): stop its consumers first; \
             offsets can only be reset while the group is empty",
            description.members.len(),
            description.state
        );
    }
    let topic = client.topic(&args.topic).await?;
    let committed = committed_offsets(client, group).await?;
    let mut partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    partitions.sort_unstable();
    let mut changes = Vec::new();
    for partition in partitions {
        let (start, end) = watermarks(client, &args.topic, partition).await?;
        let new = if args.to_earliest {
            start
        } else if args.to_latest {
            end
        } else if let Some(offset) = args.to_offset {
            let kept = offset.clamp(start, end);
            if kept != offset {
                eprintln!(
                    "warning: {}/{partition} holds offsets {start} to {end}; offset {offset} \
                     becomes {kept}",
                    args.topic
                );
            }
            kept
        } else if let Some(at) = args.to_datetime {
            let name = args.topic.clone();
            let found = client
                .on_leader(&args.topic, partition, move |conn| {
                    let name = name.clone();
                    Box::pin(async move { conn.list_offsets(&name, partition, at).await })
                })
                .await?;
            // No record at or after that time: the end, as Kafka's tool does.
            if found < 0 {
                end
            } else {
                found
            }
        } else {
            bail!("say where to: --to-earliest, --to-latest, --to-offset N or --to-datetime T");
        };
        let old = committed.get(&(args.topic.clone(), partition)).copied();
        changes.push((partition, old, new));
    }
    if !args.dry_run {
        let offsets: Vec<(i32, i64)> = changes.iter().map(|(p, _, new)| (*p, *new)).collect();
        let (name, topic_name) = (group.to_owned(), args.topic.clone());
        client
            .on_coordinator(group, move |conn| {
                let (name, topic_name, offsets) =
                    (name.clone(), topic_name.clone(), offsets.clone());
                // As an empty group: no member id, generation -1.
                Box::pin(async move {
                    conn.commit_offsets(&name, "", -1, &topic_name, &offsets)
                        .await
                })
            })
            .await
            .with_context(|| format!("committing the new offsets of group {group:?}"))?;
    }
    if json {
        let list: Vec<Value> = changes
            .iter()
            .map(|(p, old, new)| {
                json!({ "topic": args.topic, "partition": p, "old_offset": old, "new_offset": new })
            })
            .collect();
        print_json(&json!({ "group": group, "dry_run": args.dry_run, "offsets": list }));
    } else {
        let mut table = Table::new(&["TOPIC", "PARTITION", "OLD-OFFSET", "NEW-OFFSET"]);
        for (p, old, new) in &changes {
            table.row(vec![
                args.topic.clone(),
                p.to_string(),
                old.map_or_else(|| "-".to_owned(), |o| o.to_string()),
                new.to_string(),
            ]);
        }
        out!("{}", table.render());
        if args.dry_run {
            outln!("(dry run: nothing committed)");
        }
    }
    Ok(())
}

async fn delete(client: &mut Client, json: bool, group: &str) -> anyhow::Result<()> {
    let name = group.to_owned();
    let deleted = client
        .on_coordinator(group, move |conn| {
            let name = name.clone();
            Box::pin(async move {
                // A per-group code becomes an error so a moved coordinator is retried.
                let results = conn.delete_groups(&[&name]).await?;
                let code = results
                    .iter()
                    .find(|(g, _)| *g == name)
                    .map_or(0, |(_, code)| *code);
                if code == 0 {
                    Ok(())
                } else {
                    Err(myelin_client::Error::Broker {
                        api: kafka_protocol::messages::ApiKey::DeleteGroups,
                        code,
                        message: None,
                    })
                }
            })
        })
        .await;
    match deleted {
        Ok(()) => {}
        Err(error) if broker_error(&error) == Some(ResponseError::GroupIdNotFound) => {
            return Err(missing_group(group))
        }
        Err(error) if broker_error(&error) == Some(ResponseError::NonEmptyGroup) => bail!(
            "group {group:?} has active members: stop its consumers first; a group can only \
             be deleted while it is empty"
        ),
        Err(error) => return Err(error).with_context(|| format!("deleting group {group:?}")),
    }
    if json {
        print_json(&json!({ "deleted": group }));
    } else {
        outln!("deleted group {group}");
    }
    Ok(())
}

/// Milliseconds since the Unix epoch of an ISO 8601 time: `2026-12-06T10:00:00Z`,
/// `2026-12-06T11:00:00.250+01:00` (also `+0100` or `+01`), `2026-12-06T10:00:00` and
/// `2026-12-06T10:00` (no zone: UTC, as Kafka's kafka-consumer-groups.sh reads it), a date
/// alone (`2026-12-06`: its midnight, UTC), a space instead of the `T`; or a plain number of
/// milliseconds since the epoch.
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        format!(
            "expected an ISO 8601 time like 2026-12-06T10:00:00Z, 2026-12-06T11:00:00+01:00, \
             2026-12-06T10:00:00 (UTC) or 2026-12-06, or milliseconds since the epoch; got {text:?}"
        )
    };
    let number = |part: &str, digits: std::ops::RangeInclusive<usize>| -> Result<i64, String> {
        if digits.contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (date, rest) = match text.split_once(['T', 't', ' ']) {
        Some((date, rest)) => (date, Some(rest.trim())),
        None => (text, None),
    };
    let date_parts: Vec<&str> = date.split('-').collect();
    let [year, month, day] = date_parts[..] else {
        return Err(bad());
    };
    let (year, month, day) = (
        number(year, 4..=4)?,
        number(month, 1..=2)?,
        number(day, 1..=2)?,
    );
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad());
    }
    let (mut hour, mut minute, mut second, mut millis, mut offset_minutes) = (0, 0, 0, 0, 0);
    if let Some(rest) = rest {
        // The zone: Z, +HH:MM, +HHMM or +HH (or -), else none (UTC).
        let (clock, zone) = if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
            (clock, None)
        } else if let Some(at) = rest.rfind(['+', '-']) {
            (&rest[..at], Some(&rest[at..]))
        } else {
            (rest, None)
        };
        if let Some(zone) = zone {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let zone = zone[1..].replace(':', "");
            let (h, m) = match zone.len() {
                2 => (number(&zone, 2..=2)?, 0),
                4 => (number(&zone[..2], 2..=2)?, number(&zone[2..], 2..=2)?),
                _ => return Err(bad()),
            };
            if h > 23 || m > 59 {
                return Err(bad());
            }
            offset_minutes = sign * (h * 60 + m);
        }
        let (hms, fraction) = clock.split_once(['.', ',']).unwrap_or((clock, ""));
        let clock_parts: Vec<&str> = hms.split(':').collect();
        match clock_parts[..] {
            [h, m] => (hour, minute) = (number(h, 2..=2)?, number(m, 2..=2)?),
            [h, m, s] => {
                (hour, minute, second) = (number(h, 2..=2)?, number(m, 2..=2)?, number(s, 2..=2)?)
            }
            _ => return Err(bad()),
        }
        if !fraction.is_empty() {
            if clock_parts.len() != 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            millis = format!("{fraction:0<3}")[..3].parse().map_err(|_| bad())?;
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(bad());
        }
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March = 0
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_to_epoch_milliseconds() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("2000-03-01T00:00:00Z"), Ok(951_868_800_000));
        assert_eq!(
            parse_datetime("2026-12-06T10:00:00Z"),
            Ok(1_796_551_200_000)
        );
        assert_eq!(
            parse_datetime("2026-12-06T11:00:00.250+01:00"),
            Ok(1_796_551_200_250)
        );
        assert_eq!(parse_datetime("1796551200000"), Ok(1_796_551_200_000));
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2026-13-06T10:00:00Z").is_err());
        assert!(parse_datetime("2026-02-30T10:00:00Z").is_err());
        assert!(parse_datetime("2026-12-06T25:00:00Z").is_err());
        assert!(parse_datetime("2026-12-06T10:00:00+1").is_err());
    }

    #[test]
    fn datetimes_without_a_zone_are_utc_and_other_iso_forms_parse() {
        let ten_utc = 1_796_551_200_000;
        // No zone: UTC, as kafka-consumer-groups.sh --to-datetime reads it.
        assert_eq!(parse_datetime("2026-12-06T10:00:00"), Ok(ten_utc));
        assert_eq!(parse_datetime("2026-12-06T10:00:00.000"), Ok(ten_utc));
        assert_eq!(parse_datetime("2026-12-06T10:00"), Ok(ten_utc));
        assert_eq!(parse_datetime("2026-12-06 10:00:00"), Ok(ten_utc));
        assert_eq!(parse_datetime("2026-12-06T11:00:00+0100"), Ok(ten_utc));
        assert_eq!(parse_datetime("2026-12-06T11:00:00+01"), Ok(ten_utc));
        assert_eq!(parse_datetime("2026-12-06T05:30:00-04:30"), Ok(ten_utc));
        // A date alone: its midnight, UTC.
        assert_eq!(parse_datetime("2026-12-06"), Ok(ten_utc - 10 * 3_600_000));
        assert_eq!(parse_datetime("2024-02-29"), Ok(1_709_164_800_000));
    }
}
