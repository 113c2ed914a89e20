//! `millrace configs`: describe, alter and delete dynamic configs of topics and brokers — what
//! `kafka-configs.sh` does, through DescribeConfigs and IncrementalAlterConfigs.

use clap::{Args, Subcommand, ValueEnum};
use millrace_client::{Admin, AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource};
use serde_json::json;

use super::{connect, print_json, ClusterArgs, OutputArgs};

/// `millrace configs`.
#[derive(Debug, Args)]
pub struct ConfigsArgs {
    #[command(subcommand)]
    command: ConfigsCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigsCommand {
    /// Show configs: the dynamic overrides, or with --all every value and where it comes from.
    Describe(DescribeArgs),
    /// Set (--add-config) and remove (--delete-config) dynamic configs.
    Alter(AlterArgs),
    /// Remove dynamic configs, returning them to their defaults.
    Delete(DeleteArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EntityType {
    /// A topic.
    Topics,
    /// A broker (by id), or the default of all brokers (--entity-default).
    Brokers,
}

#[derive(Debug, Args)]
struct EntityArgs {
    /// What kind of entity.
    #[arg(long, value_enum)]
    entity_type: EntityType,
    /// The topic name or broker id.
    #[arg(long)]
    entity_name: Option<String>,
    /// The cluster-wide default for all brokers (brokers only).
    #[arg(long, conflicts_with = "entity_name")]
    entity_default: bool,
}

impl EntityArgs {
    /// The one resource named (alter and delete need exactly one).
    fn resource(&self) -> anyhow::Result<ConfigResource> {
        match (self.entity_type, &self.entity_name, self.entity_default) {
            (EntityType::Topics, Some(name), false) => Ok(ConfigResource::Topic(name.clone())),
            (EntityType::Topics, _, _) => {
                anyhow::bail!("--entity-type topics needs --entity-name TOPIC")
            }
            (EntityType::Brokers, None, true) => Ok(ConfigResource::Broker(None)),
            (EntityType::Brokers, Some(id), false) => {
                Ok(ConfigResource::Broker(Some(id.parse().map_err(|_| {
                    anyhow::anyhow!("--entity-name `{id}` is not a broker id")
                })?)))
            }
            (EntityType::Brokers, _, _) => {
                anyhow::bail!(
                    "--entity-type brokers needs --entity-name BROKER_ID or --entity-default"
                )
            }
        }
    }
}

#[derive(Debug, Args)]
struct DescribeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    entity: EntityArgs,
    /// Every config with its value and source, not only the dynamic overrides.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct AlterArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    entity: EntityArgs,
    /// Configs to set: `k1=v1,k2=[a,b]` (brackets hold list values with commas; repeatable).
    #[arg(long, value_name = "K=V,...")]
    add_config: Vec<String>,
    /// Config names to remove: `k1,k2` (repeatable).
    #[arg(long, value_name = "K,...")]
    delete_config: Vec<String>,
}

#[derive(Debug, Args)]
struct DeleteArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    entity: EntityArgs,
    /// Config names to remove: `k1,k2` (repeatable).
    #[arg(long, value_name = "K,...", required = true)]
    delete_config: Vec<String>,
}

/// Runs `millrace configs`.
pub async fn run(args: ConfigsArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigsCommand::Describe(a) => describe(a).await,
        ConfigsCommand::Alter(a) => {
            let mut ops = Vec::new();
            for list in &a.add_config {
                for (k, v) in split_assignments(list)? {
                    ops.push(AlterConfigOp::Set(k, v));
                }
            }
            ops.extend(names(&a.delete_config).map(AlterConfigOp::Delete));
            alter(&a.cluster, &a.entity, ops).await
        }
        ConfigsCommand::Delete(a) => {
            let ops = names(&a.delete_config).map(AlterConfigOp::Delete).collect();
            alter(&a.cluster, &a.entity, ops).await
        }
    }
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let admin = Admin::new(connect(&args.cluster).await?);
    let resources = match (
        &args.entity.entity_name,
        args.entity.entity_default,
        args.entity.entity_type,
    ) {
        (None, false, EntityType::Topics) => admin
            .list_topics(true)
            .await?
            .into_iter()
            .map(|t| ConfigResource::Topic(t.name))
            .collect(),
        (None, false, EntityType::Brokers) => admin
            .describe_cluster()
            .await?
            .brokers
            .into_iter()
            .map(|b| ConfigResource::Broker(Some(b.id)))
            .collect(),
        _ => vec![args.entity.resource()?],
    };
    let results = admin.describe_configs(&resources, &[]).await?;
    let mut described = Vec::new();
    for (resource, result) in results {
        let entries: Vec<ConfigEntry> = result?
            .into_iter()
            .filter(|e| args.all || is_dynamic(e.source))
            .collect();
        described.push((resource, entries));
    }
    if args.output.json() {
        let doc: Vec<_> = described
            .iter()
            .map(|(resource, entries)| {
                let (kind, name) = entity(resource);
                json!({
                    "entity_type": kind,
                    "entity_name": name,
                    "configs": entries.iter().map(|e| json!({
                        "name": e.name,
                        "value": e.value,
                        "source": e.source.name(),
                        "read_only": e.read_only,
                        "sensitive": e.sensitive,
                        "synonyms": e.synonyms.iter().map(|(n, v, s)| json!({
                            "name": n, "value": v, "source": s.name(),
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        return print_json(&json!(doc));
    }
    for (resource, entries) in described {
        let (kind, name) = entity(&resource);
        let which = if args.all { "All" } else { "Dynamic" };
        let label = if name.is_empty() {
            "default broker".to_string()
        } else {
            format!("{kind} {name}")
        };
        outln!("{which} configs for {label} are:");
        for e in entries {
            let synonyms: Vec<String> = e
                .synonyms
                .iter()
                .map(|(n, v, s)| format!("{}:{}={}", s.name(), n, v.as_deref().unwrap_or("null")))
                .collect();
            outln!(
                "  {}={} sensitive={} synonyms={{{}}}",
                e.name,
                if e.sensitive {
                    "null"
                } else {
                    e.value.as_deref().unwrap_or("null")
                },
                e.sensitive,
                synonyms.join(", ")
            );
        }
    }
    Ok(())
}

async fn alter(
    cluster: &ClusterArgs,
    target: &EntityArgs,
    ops: Vec<AlterConfigOp>,
) -> anyhow::Result<()> {
    if ops.is_empty() {
        anyhow::bail!("nothing to change: give --add-config and/or --delete-config");
    }
    let resource = target.resource()?;
    let admin = Admin::new(connect(cluster).await?);
    admin.alter_configs(&resource, &ops, false).await?;
    let (kind, name) = entity(&resource);
    if name.is_empty() {
        outln!("Completed updating default config for brokers in the cluster.");
    } else {
        outln!("Completed updating config for {kind} {name}.");
    }
    Ok(())
}

fn is_dynamic(source: ConfigSource) -> bool {
    matches!(
        source,
        ConfigSource::DynamicTopic
            | ConfigSource::DynamicBroker
            | ConfigSource::DynamicDefaultBroker
    )
}

fn entity(resource: &ConfigResource) -> (&'static str, String) {
    match resource {
        ConfigResource::Topic(name) => ("topic", name.clone()),
        ConfigResource::Broker(Some(id)) => ("broker", id.to_string()),
        ConfigResource::Broker(None) => ("broker", String::new()),
    }
}

fn names(lists: &[String]) -> impl Iterator<Item = String> + '_ {
    lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// Splits `k1=v1,k2=[a,b]` into pairs; brackets keep commas inside a value (Kafka's syntax).
fn split_assignments(list: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in list.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("`{p}` is not KEY=VALUE"))?;
            let v = v.trim();
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(v);
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_keep_bracketed_lists_whole() {
        let pairs =
            split_assignments("retention.ms=1000, cleanup.policy=[compact,delete]").expect("valid");
        assert_eq!(
            pairs,
            [
                ("retention.ms".to_string(), "1000".to_string()),
                ("cleanup.policy".to_string(), "compact,delete".to_string())
            ]
        );
        assert!(split_assignments("novalue").is_err());
    }
}
