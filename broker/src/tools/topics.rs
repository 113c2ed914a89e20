//! `millrace topics`: create, list, describe, alter (add partitions) and delete topics — what
//! `kafka-topics.sh` does, with the same output shapes.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use millrace_client::{Admin, ConfigResource, ConfigSource, NewTopic, TopicMetadata};
use serde_json::json;

use super::{connect, finish, parse_key_values, print_json, ClusterArgs, OutputArgs, Reported};

/// `millrace topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List(ListArgs),
    /// Describe topics: partitions, leaders, replicas, in-sync replicas, config overrides.
    Describe(DescribeArgs),
    /// Add partitions to a topic (partitions can only grow).
    Alter(AlterArgs),
    /// Delete topics.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// Partition count (default: the broker's num.partitions).
    #[arg(long)]
    partitions: Option<i32>,
    /// Replication factor (default: the broker's default.replication.factor).
    #[arg(long)]
    replication_factor: Option<i16>,
    /// A topic config override, `KEY=VALUE` (repeatable), e.g. `--config retention.ms=86400000`.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// Succeed without changes if the topic exists.
    #[arg(long)]
    if_not_exists: bool,
    /// Check the request with the cluster without creating the topic.
    #[arg(long)]
    validate_only: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Leave out internal topics (`__consumer_offsets`, ...).
    #[arg(long)]
    exclude_internal: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct DescribeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic to describe (repeatable; default: all).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Only partitions with fewer in-sync replicas than replicas.
    #[arg(long)]
    under_replicated_partitions: bool,
    /// Only partitions without a leader.
    #[arg(long)]
    unavailable_partitions: bool,
    /// Leave out internal topics.
    #[arg(long)]
    exclude_internal: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct AlterArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// The new, larger, partition count.
    #[arg(long)]
    partitions: i32,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic to delete (repeatable).
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    /// Succeed without changes for topics that do not exist.
    #[arg(long)]
    if_exists: bool,
}

/// Runs `millrace topics`.
pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    match args.command {
        TopicsCommand::Create(a) => create(a).await,
        TopicsCommand::List(a) => list(a).await,
        TopicsCommand::Describe(a) => describe(a).await,
        TopicsCommand::Alter(a) => alter(a).await,
        TopicsCommand::Delete(a) => delete(a).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let configs = parse_key_values(&args.configs)?
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    let topic = NewTopic {
        name: args.topic.clone(),
        partitions: args.partitions.unwrap_or(-1),
        replication_factor: args.replication_factor.unwrap_or(-1),
        assignments: Vec::new(),
        configs,
    };
    let results = admin.create_topics(&[topic], args.validate_only).await?;
    for (name, result) in results {
        match result {
            Ok(_) if args.validate_only => outln!("Topic {name} can be created (validated only)."),
            Ok(_) => outln!("Created topic {name}."),
            Err(e) if args.if_not_exists && is(&e, "TOPIC_ALREADY_EXISTS") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let topics = admin.list_topics(!args.exclude_internal).await?;
    if args.output.json() {
        return print_json(&json!(topics.iter().map(|t| &t.name).collect::<Vec<_>>()));
    }
    for t in topics {
        outln!("{}", t.name);
    }
    Ok(())
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let topics: Vec<TopicMetadata> = admin
        .describe_topics(&args.topics)
        .await?
        .into_iter()
        .filter(|t| !(args.exclude_internal && t.internal))
        .collect();
    let mut failed = Vec::new();
    let filtered = args.under_replicated_partitions || args.unavailable_partitions;
    let mut out = Vec::new();
    for topic in &topics {
        if let Some(code) = topic.error {
            failed.push((topic.name.clone(), code));
            continue;
        }
        let partitions: Vec<_> = topic
            .partitions
            .iter()
            .filter(|p| {
                !filtered
                    || (args.under_replicated_partitions && p.is_under_replicated())
                    || (args.unavailable_partitions && p.is_unavailable())
            })
            .collect();
        // Only topic-level overrides are listed, as kafka-topics does.
        let overrides = if filtered {
            BTreeMap::new()
        } else {
            topic_overrides(&admin, &topic.name).await?
        };
        out.push((topic, partitions, overrides));
    }
    if args.output.json() {
        let doc: Vec<_> = out
            .iter()
            .map(|(t, partitions, configs)| {
                json!({
                    "name": t.name,
                    "id": t.id.map(|id| id.to_string()),
                    "internal": t.internal,
                    "partition_count": t.partitions.len(),
                    "replication_factor": replication_factor(t),
                    "configs": configs,
                    "partitions": partitions.iter().map(|p| json!({
                        "partition": p.partition,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "offline": p.offline,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!(doc))?;
    } else {
        for (t, partitions, configs) in &out {
            if !filtered {
                let configs: Vec<String> =
                    configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                outln!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    t.name,
                    t.id.map_or_else(|| "-".to_string(), |id| id.to_string()),
                    t.partitions.len(),
                    replication_factor(t),
                    configs.join(",")
                );
            }
            for p in partitions {
                let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                let mut line = format!(
                    "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                    t.name,
                    p.partition,
                    p.leader
                        .map_or_else(|| "none".to_string(), |l| l.to_string()),
                    ids(&p.replicas),
                    ids(&p.isr)
                );
                if !p.offline.is_empty() {
                    line.push_str(&format!("\tOffline: {}", ids(&p.offline)));
                }
                outln!("{line}");
            }
        }
    }
    if !failed.is_empty() {
        for (name, code) in &failed {
            eprintln!("Error: describe topic `{name}`: {code}");
            eprintln!("  What to do: {}", code.hint());
        }
        return Err(Reported(format!("{} topic(s) could not be described", failed.len())).into());
    }
    Ok(())
}

/// The topic's config overrides (values set on the topic itself).
async fn topic_overrides(admin: &Admin, topic: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let results = admin
        .describe_configs(&[ConfigResource::Topic(topic.to_string())], &[])
        .await?;
    let mut out = BTreeMap::new();
    for (_, result) in results {
        for entry in result? {
            if entry.source == ConfigSource::DynamicTopic {
                out.insert(entry.name, entry.value.unwrap_or_default());
            }
        }
    }
    Ok(out)
}

fn replication_factor(t: &TopicMetadata) -> usize {
    t.partitions.first().map_or(0, |p| p.replicas.len())
}

async fn alter(args: AlterArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let results = admin
        .create_partitions(&[(args.topic.clone(), args.partitions)], false)
        .await?;
    finish(results, "topics")?;
    outln!(
        "Increased the partition count of topic {} to {}.",
        args.topic,
        args.partitions
    );
    Ok(())
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let results = admin.delete_topics(&args.topics).await?;
    let results: Vec<_> = results
        .into_iter()
        .filter(|(_, r)| {
            !(args.if_exists
                && r.as_ref()
                    .is_err_and(|e| is(e, "UNKNOWN_TOPIC_OR_PARTITION")))
        })
        .collect();
    for (name, result) in &results {
        if result.is_ok() {
            outln!("Deleted topic {name}.");
        }
    }
    finish(results, "topic deletions")
}

/// Whether the error carries this Kafka error name.
fn is(e: &millrace_client::Error, name: &str) -> bool {
    e.kafka_name().as_deref() == Some(name)
}
