//! `millrace groups`: list, describe (members, assignments, committed offsets, lag) and delete
//! consumer groups, and reset, export and import their committed offsets — what
//! `kafka-consumer-groups.sh` does.
//!
//! Offset resets follow Kafka's rules: a plan is computed and printed (a dry run) unless
//! `--execute` is given; targets outside the log are clamped to its start or end; the group
//! must have no active members, because a running consumer would overwrite the reset with its
//! next commit.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use clap::{Args, Subcommand};
use millrace_client::{Admin, GroupDescription, OffsetSpec, TopicPartition};
use serde_json::json;

use super::{
    connect, finish, json_error, print_json, print_table, report_item, ClusterArgs, OutputArgs,
    Reported,
};

/// `millrace groups`.
#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Debug, Subcommand)]
enum GroupsCommand {
    /// List groups.
    List(ListArgs),
    /// Describe groups: committed offsets and lag (default), members, or state.
    Describe(DescribeArgs),
    /// Delete groups (they must have no active members).
    Delete(DeleteArgs),
    /// Plan (dry run) or --execute a reset of committed offsets.
    ResetOffsets(ResetArgs),
    /// Write committed offsets as CSV: `topic,partition,offset` per line.
    Export(ExportArgs),
    /// Plan (dry run) or --execute setting committed offsets from a CSV file.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Show each group's state too.
    #[arg(long)]
    state: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct DescribeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Group to describe (repeatable).
    #[arg(long = "group", required_unless_present = "all_groups")]
    groups: Vec<String>,
    /// Describe every group.
    #[arg(long)]
    all_groups: bool,
    /// Show members and their assignments instead of offsets.
    #[arg(long, conflicts_with = "state")]
    members: bool,
    /// Show the group's state, coordinator and assignor instead of offsets.
    #[arg(long)]
    state: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Group to delete (repeatable).
    #[arg(long = "group", required = true)]
    groups: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("strategy").required(true).args(["to_earliest", "to_latest", "to_datetime", "shift_by", "to_offset", "from_file"])))]
struct ResetArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The group whose offsets to reset.
    #[arg(long)]
    group: String,
    /// `TOPIC` (all partitions) or `TOPIC:P1,P2` (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:P,...]")]
    topics: Vec<String>,
    /// Every partition the group has committed offsets for.
    #[arg(long, conflicts_with = "topics")]
    all_topics: bool,
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// To the first offset at or after a time: `YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM]` (no zone
    /// means UTC) or milliseconds since the epoch.
    #[arg(long, value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// Move the committed offsets by N (negative moves back).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// To this offset.
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the offsets in a CSV file of `topic,partition,offset` lines (as `export` writes).
    #[arg(long, value_name = "FILE")]
    from_file: Option<std::path::PathBuf>,
    /// Commit the new offsets (without it, only the plan is shown).
    #[arg(long)]
    execute: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The group.
    #[arg(long)]
    group: String,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct ImportArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The group.
    #[arg(long)]
    group: String,
    /// CSV of `topic,partition,offset` lines.
    #[arg(long, value_name = "FILE")]
    file: std::path::PathBuf,
    /// Commit the offsets (without it, only the plan is shown).
    #[arg(long)]
    execute: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `millrace groups`.
pub async fn run(args: GroupsArgs) -> anyhow::Result<()> {
    match args.command {
        GroupsCommand::List(a) => list(a).await,
        GroupsCommand::Describe(a) => describe(a).await,
        GroupsCommand::Delete(a) => delete(a).await,
        GroupsCommand::ResetOffsets(a) => reset(a).await,
        GroupsCommand::Export(a) => export(a).await,
        GroupsCommand::Import(a) => {
            reset(ResetArgs {
                cluster: a.cluster,
                group: a.group,
                topics: Vec::new(),
                all_topics: false,
                to_earliest: false,
                to_latest: false,
                to_datetime: None,
                shift_by: None,
                to_offset: None,
                from_file: Some(a.file),
                execute: a.execute,
                output: a.output,
            })
            .await
        }
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let groups = admin.list_groups().await?;
    if args.output.json() {
        return print_json(&json!(groups
            .iter()
            .map(
                |g| json!({"group": g.group_id, "protocol_type": g.protocol_type, "state": g.state})
            )
            .collect::<Vec<_>>()));
    }
    if args.state {
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                vec![
                    g.group_id.clone(),
                    g.state.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        print_table(&["GROUP", "STATE"], &rows);
    } else {
        for g in groups {
            outln!("{}", g.group_id);
        }
    }
    Ok(())
}

/// One row of the offsets view.
struct OffsetRow {
    tp: TopicPartition,
    current: Option<i64>,
    log_end: Option<i64>,
    member: Option<(String, String, String)>,
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let ids = if args.all_groups {
        admin
            .list_groups()
            .await?
            .into_iter()
            .map(|g| g.group_id)
            .collect()
    } else {
        args.groups.clone()
    };
    let mut failures = 0;
    let mut json_out = Vec::new();
    for (id, result) in admin.describe_groups(&ids).await? {
        let group = match result {
            Ok(g) => g,
            Err(e) => {
                report_item(&e);
                failures += 1;
                if args.output.json() {
                    json_out.push(json!({"group": id, "failure": json_error(&e)}));
                }
                continue;
            }
        };
        if group.state == "Dead" {
            eprintln!("Error: Consumer group '{id}' does not exist.");
            failures += 1;
            continue;
        }
        let rows = if args.members || args.state {
            Vec::new()
        } else {
            offset_rows(&admin, &group).await?
        };
        if args.output.json() {
            json_out.push(group_json(&group, &rows));
            continue;
        }
        if args.state {
            print_table(
                &[
                    "GROUP",
                    "COORDINATOR",
                    "ASSIGNMENT-STRATEGY",
                    "STATE",
                    "#MEMBERS",
                ],
                &[vec![
                    group.group_id.clone(),
                    group.coordinator.clone(),
                    group.protocol.clone(),
                    group.state.clone(),
                    group.members.len().to_string(),
                ]],
            );
        } else if args.members {
            let rows: Vec<Vec<String>> = group
                .members
                .iter()
                .map(|m| {
                    vec![
                        group.group_id.clone(),
                        m.member_id.clone(),
                        m.client_host.clone(),
                        m.client_id.clone(),
                        m.assignment.len().to_string(),
                        m.assignment
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                    ]
                })
                .collect();
            if rows.is_empty() {
                outln!("Consumer group '{}' has no active members.", group.group_id);
            } else {
                print_table(
                    &[
                        "GROUP",
                        "CONSUMER-ID",
                        "HOST",
                        "CLIENT-ID",
                        "#PARTITIONS",
                        "ASSIGNMENT",
                    ],
                    &rows,
                );
            }
        } else {
            if group.members.is_empty() {
                outln!("Consumer group '{}' has no active members.", group.group_id);
            }
            let dash = || "-".to_string();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let lag = match (r.current, r.log_end) {
                        (Some(c), Some(e)) => (e - c).max(0).to_string(),
                        _ => dash(),
                    };
                    let (member, host, client) =
                        r.member.clone().unwrap_or_else(|| (dash(), dash(), dash()));
                    vec![
                        group.group_id.clone(),
                        r.tp.topic.clone(),
                        r.tp.partition.to_string(),
                        r.current.map_or_else(dash, |c| c.to_string()),
                        r.log_end.map_or_else(dash, |c| c.to_string()),
                        lag,
                        member,
                        host,
                        client,
                    ]
                })
                .collect();
            print_table(
                &[
                    "GROUP",
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "CONSUMER-ID",
                    "HOST",
                    "CLIENT-ID",
                ],
                &table,
            );
        }
        outln!();
    }
    if args.output.json() {
        print_json(&json!(json_out))?;
    }
    if failures > 0 {
        return Err(Reported(format!("{failures} group(s) could not be described")).into());
    }
    Ok(())
}

/// Committed offsets, log end offsets and owners of every partition the group has committed
/// or is assigned.
async fn offset_rows(admin: &Admin, group: &GroupDescription) -> anyhow::Result<Vec<OffsetRow>> {
    let committed = admin.list_group_offsets(&group.group_id, None).await?;
    let mut owners: BTreeMap<TopicPartition, (String, String, String)> = BTreeMap::new();
    for m in &group.members {
        for tp in &m.assignment {
            owners.insert(
                tp.clone(),
                (
                    m.member_id.clone(),
                    m.client_host.clone(),
                    m.client_id.clone(),
                ),
            );
        }
    }
    let partitions: BTreeSet<TopicPartition> =
        committed.keys().chain(owners.keys()).cloned().collect();
    let specs: Vec<(TopicPartition, OffsetSpec)> = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let mut log_ends = BTreeMap::new();
    for (tp, result) in admin.list_offsets(&specs).await {
        match result {
            Ok(listed) => {
                log_ends.insert(tp, listed.offset);
            }
            // A deleted topic's offsets can outlive it; show what is known.
            Err(e) => tracing::debug!(%tp, error = %e, "no log end offset"),
        }
    }
    Ok(partitions
        .into_iter()
        .map(|tp| OffsetRow {
            current: committed.get(&tp).map(|c| c.offset),
            log_end: log_ends.get(&tp).copied(),
            member: owners.get(&tp).cloned(),
            tp,
        })
        .collect())
}

fn group_json(group: &GroupDescription, rows: &[OffsetRow]) -> serde_json::Value {
    json!({
        "group": group.group_id,
        "state": group.state,
        "protocol_type": group.protocol_type,
        "assignment_strategy": group.protocol,
        "coordinator": group.coordinator,
        "members": group.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "host": m.client_host,
            "assignment": m.assignment.iter().map(|tp| json!({"topic": tp.topic, "partition": tp.partition})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "offsets": rows.iter().map(|r| json!({
            "topic": r.tp.topic,
            "partition": r.tp.partition,
            "current_offset": r.current,
            "log_end_offset": r.log_end,
            "lag": r.current.zip(r.log_end).map(|(c, e)| (e - c).max(0)),
            "consumer_id": r.member.as_ref().map(|m| &m.0),
            "host": r.member.as_ref().map(|m| &m.1),
            "client_id": r.member.as_ref().map(|m| &m.2),
        })).collect::<Vec<_>>(),
    })
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let results = admin.delete_groups(&args.groups).await?;
    let deleted: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(g, _)| g)
        .collect();
    if !deleted.is_empty() {
        let names: Vec<String> = deleted.iter().map(|g| format!("'{g}'")).collect();
        outln!(
            "Deletion of requested consumer groups ({}) was successful.",
            names.join(", ")
        );
    }
    finish(results, "group deletions")
}

async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let group = &args.group;
    let committed: BTreeMap<TopicPartition, i64> = admin
        .list_group_offsets(group, None)
        .await?
        .into_iter()
        .map(|(tp, c)| (tp, c.offset))
        .collect();

    // The partitions, and for --from-file the offsets too.
    let file_offsets = match &args.from_file {
        Some(path) => Some(read_csv(path)?),
        None => None,
    };
    let partitions: Vec<TopicPartition> = if let Some(offsets) = &file_offsets {
        offsets.keys().cloned().collect()
    } else if args.all_topics {
        committed.keys().cloned().collect()
    } else if args.topics.is_empty() {
        anyhow::bail!("name the partitions to reset: --topic TOPIC[:P,...] or --all-topics");
    } else {
        let mut out = Vec::new();
        for spec in &args.topics {
            out.extend(topic_partitions(&admin, spec).await?);
        }
        out
    };
    if partitions.is_empty() {
        anyhow::bail!(
            "group `{group}` has no committed offsets to reset; name partitions with --topic"
        );
    }

    let bounds = log_bounds(&admin, &partitions).await?;
    let mut plan: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    if let Some(offsets) = file_offsets {
        plan = offsets;
    } else if args.to_earliest {
        plan = partitions
            .iter()
            .map(|tp| (tp.clone(), bounds[tp].0))
            .collect();
    } else if args.to_latest {
        plan = partitions
            .iter()
            .map(|tp| (tp.clone(), bounds[tp].1))
            .collect();
    } else if let Some(text) = &args.to_datetime {
        let at = parse_datetime(text)?;
        let specs: Vec<_> = partitions
            .iter()
            .map(|tp| (tp.clone(), OffsetSpec::Timestamp(at)))
            .collect();
        for (tp, result) in admin.list_offsets(&specs).await {
            let listed = result?;
            // No record at or after the time: the end of the log, as Kafka does.
            let offset = if listed.offset < 0 {
                bounds[&tp].1
            } else {
                listed.offset
            };
            plan.insert(tp, offset);
        }
    } else if let Some(shift) = args.shift_by {
        for tp in &partitions {
            let current = committed.get(tp).with_context(|| {
                format!("cannot shift {tp}: group `{group}` has no committed offset for it")
            })?;
            plan.insert(tp.clone(), clamp(current + shift, bounds[tp]));
        }
    } else if let Some(offset) = args.to_offset {
        plan = partitions
            .iter()
            .map(|tp| (tp.clone(), clamp(offset, bounds[tp])))
            .collect();
    }

    if args.execute {
        ensure_inactive(&admin, group).await?;
        let results = admin.alter_group_offsets(group, &plan).await?;
        print_plan(group, &plan, &committed, args.output.json())?;
        return finish(results, "offset commits");
    }
    print_plan(group, &plan, &committed, args.output.json())?;
    eprintln!("Dry run: nothing was changed. Add --execute to commit these offsets.");
    Ok(())
}

fn print_plan(
    group: &str,
    plan: &BTreeMap<TopicPartition, i64>,
    committed: &BTreeMap<TopicPartition, i64>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return print_json(&json!(plan
            .iter()
            .map(|(tp, o)| json!({
                "group": group,
                "topic": tp.topic,
                "partition": tp.partition,
                "previous_offset": committed.get(tp),
                "new_offset": o,
            }))
            .collect::<Vec<_>>()));
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(tp, o)| {
            vec![
                group.to_string(),
                tp.topic.clone(),
                tp.partition.to_string(),
                committed
                    .get(tp)
                    .map_or_else(|| "-".into(), |c| c.to_string()),
                o.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "PREVIOUS-OFFSET",
            "NEW-OFFSET",
        ],
        &rows,
    );
    Ok(())
}

/// Refuses to touch a group that has members: they would overwrite the new offsets.
async fn ensure_inactive(admin: &Admin, group: &str) -> anyhow::Result<()> {
    let described = admin.describe_groups(&[group.to_string()]).await?;
    if let Some((_, Ok(g))) = described.into_iter().next() {
        if !(g.state == "Empty" || g.state == "Dead" || g.members.is_empty()) {
            return Err(Reported(format!(
                "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}. Stop its consumers first.",
                g.state
            ))
            .into());
        }
    }
    Ok(())
}

/// `TOPIC` → every partition; `TOPIC:1,2` → those.
async fn topic_partitions(admin: &Admin, spec: &str) -> anyhow::Result<Vec<TopicPartition>> {
    match spec.split_once(':') {
        Some((topic, list)) => list
            .split(',')
            .map(|p| {
                let p: i32 = p
                    .trim()
                    .parse()
                    .with_context(|| format!("`{p}` in `{spec}` is not a partition number"))?;
                Ok(TopicPartition::new(topic, p))
            })
            .collect(),
        None => Ok(admin
            .client()
            .partitions(spec)
            .await?
            .iter()
            .map(|p| TopicPartition::new(spec, p.partition))
            .collect()),
    }
}

/// (log start, log end) of each partition.
async fn log_bounds(
    admin: &Admin,
    partitions: &[TopicPartition],
) -> anyhow::Result<BTreeMap<TopicPartition, (i64, i64)>> {
    let mut specs = Vec::new();
    for tp in partitions {
        specs.push((tp.clone(), OffsetSpec::Earliest));
    }
    let earliest = admin.list_offsets(&specs).await;
    let latest = admin
        .list_offsets(
            &specs
                .iter()
                .map(|(tp, _)| (tp.clone(), OffsetSpec::Latest))
                .collect::<Vec<_>>(),
        )
        .await;
    let mut out = BTreeMap::new();
    for ((tp, start), (_, end)) in earliest.into_iter().zip(latest) {
        out.insert(tp, (start?.offset, end?.offset));
    }
    Ok(out)
}

fn clamp(offset: i64, (start, end): (i64, i64)) -> i64 {
    offset.clamp(start, end.max(start))
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let committed = admin.list_group_offsets(&args.group, None).await?;
    let mut csv = String::new();
    for (tp, c) in committed {
        csv.push_str(&format!("{},{},{}\n", tp.topic, tp.partition, c.offset));
    }
    match &args.file {
        Some(path) => std::fs::write(path, csv)
            .with_context(|| format!("failed to write {}", path.display()))?,
        None => super::stdout_write(csv.as_bytes()),
    }
    Ok(())
}

/// Reads `topic,partition,offset` lines (blank lines and `#` comments skipped).
fn read_csv(path: &std::path::Path) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    parse_csv(&text).with_context(|| format!("in {}", path.display()))
}

fn parse_csv(text: &str) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Topic names cannot contain commas, so the last two fields are partition and offset.
        let mut fields = line.rsplitn(3, ',');
        let (Some(offset), Some(partition), Some(topic)) =
            (fields.next(), fields.next(), fields.next())
        else {
            anyhow::bail!("line {}: `{line}` is not topic,partition,offset", n + 1);
        };
        let partition: i32 = partition
            .trim()
            .parse()
            .with_context(|| format!("line {}: bad partition", n + 1))?;
        let offset: i64 = offset
            .trim()
            .parse()
            .with_context(|| format!("line {}: bad offset", n + 1))?;
        if offset < 0 {
            anyhow::bail!("line {}: offset {offset} is negative", n + 1);
        }
        out.insert(TopicPartition::new(topic.trim(), partition), offset);
    }
    Ok(out)
}

/// Parses `YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM]` (UTC without a zone) or epoch milliseconds.
pub fn parse_datetime(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!("`{text}` is not YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM] or epoch milliseconds")
    };
    let (date, time) = text.split_once('T').ok_or_else(bad)?;
    let (time, offset_minutes) = if let Some(t) = time.strip_suffix('Z') {
        (t, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (t, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        (t, sign * (h * 60 + m))
    } else {
        (time, 0)
    };
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<anyhow::Result<_>>()?;
    if d.len() != 3
        || t.len() != 3
        || !(1..=12).contains(&d[1])
        || !(1..=31).contains(&d[2])
        || t[0] > 23
        || t[1] > 59
        || t[2] > 60
    {
        return Err(bad());
    }
    let millis: i64 = format!("{:0<3}", &frac[..frac.len().min(3)])
        .parse()
        .map_err(|_| bad())?;
    let days = days_from_civil(d[0], d[1], d[2]);
    let seconds = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2] - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_kafka_writes_them() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").expect("epoch"), 0);
        assert_eq!(
            parse_datetime("2024-02-29T12:30:15.250Z").expect("leap day"),
            1_709_209_815_250
        );
        assert_eq!(
            parse_datetime("2024-02-29T14:30:15.25+02:00").expect("offset"),
            1_709_209_815_250
        );
        assert_eq!(
            parse_datetime("1709209815250").expect("millis"),
            1_709_209_815_250
        );
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2024-13-01T00:00:00").is_err());
    }

    #[test]
    fn csv_round_trips_and_reports_bad_lines() {
        let parsed = parse_csv("# exported\norders,0,42\norders,1,7\n\n").expect("valid");
        assert_eq!(parsed[&TopicPartition::new("orders", 0)], 42);
        assert_eq!(parsed.len(), 2);
        let e = parse_csv("orders,zero,1").expect_err("bad partition");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn resets_are_clamped_to_the_log() {
        assert_eq!(clamp(-5, (10, 20)), 10);
        assert_eq!(clamp(99, (10, 20)), 20);
        assert_eq!(clamp(15, (10, 20)), 15);
    }
}
