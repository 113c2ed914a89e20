//! `MirrorMaker`: mirrors topics, their configs and consumer-group offsets from one
//! Kafka-compatible cluster to another, run as a Deployment of `millrace mirror`.

use crate::common::{SaslMechanism, SecretKeyRef};
use k8s_openapi::{
    api::core::v1::ResourceRequirements, apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a mirror.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "millrace.io",
    version = "v1alpha1",
    kind = "MirrorMaker",
    plural = "mirrormakers",
    namespaced,
    status = "MirrorMakerStatus",
    shortname = "mrm",
    category = "millrace",
    derive = "PartialEq",
    doc = "A mirror of topics and consumer-group offsets between two Kafka-compatible clusters.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source.alias"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.alias"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.source.alias != self.target.alias").message("source and target need different aliases"))]
#[serde(rename_all = "camelCase")]
pub struct MirrorMakerSpec {
    /// The cluster to copy from.
    pub source: MirrorEndpoint,
    /// The cluster to copy to.
    pub target: MirrorEndpoint,
    /// Which topics to mirror (regular expressions over topic names).
    #[serde(default = "Patterns::everything")]
    pub topics: Patterns,
    /// Which consumer groups' offsets to translate (regular expressions over group ids).
    #[serde(default = "Patterns::everything")]
    pub groups: Patterns,
    /// How mirrored topics are named on the target.
    #[serde(default)]
    pub replication_policy: ReplicationPolicy,
    /// Keep the target topics' configs and partition counts in step with the source.
    #[serde(default = "default_true")]
    pub sync_topic_configs: bool,
    /// Consumer-offset translation.
    #[serde(default)]
    pub checkpoints: Checkpoints,
    /// Heartbeats that let clients and tools see the mirror is alive.
    #[serde(default)]
    pub heartbeats: Heartbeats,
    /// How many mirror processes share the work.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// The image; the operator's default Millrace image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// CPU and memory for each mirror container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_true() -> bool {
    true
}

fn default_replicas() -> i32 {
    1
}

/// One end of a mirror: a Cluster in this namespace, or any Kafka-compatible cluster by its
/// bootstrap servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.cluster) != has(self.bootstrapServers)").message("set exactly one of cluster or bootstrapServers"))]
#[serde(rename_all = "camelCase")]
pub struct MirrorEndpoint {
    /// A short name for this cluster; the prefix policy names mirrored topics `<alias>.<topic>`.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9_-]{1,32}$"))]
    pub alias: String,
    /// A Millrace Cluster in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub cluster: Option<String>,
    /// The listener of `cluster` to use; its first internal listener when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// Bootstrap servers of any Kafka-compatible cluster, `host:port[,host:port…]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^,\s]+:[0-9]+(,[^,\s]+:[0-9]+)*$"))]
    pub bootstrap_servers: Option<String>,
    /// Connect with TLS.
    #[serde(default)]
    pub tls: bool,
    /// SASL credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

/// SASL credentials from Secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The SASL mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: SecretKeyRef,
    /// The password.
    pub password: SecretKeyRef,
}

/// Include and exclude patterns; a name is selected when it matches an include and no exclude.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Patterns {
    /// Regular expressions a name must fully match one of.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub include: Vec<String>,
    /// Regular expressions that exclude a name even when it is included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub exclude: Vec<String>,
}

impl Patterns {
    fn everything() -> Self {
        Patterns {
            include: vec![".*".into()],
            exclude: Vec::new(),
        }
    }
}

/// How mirrored topics are named on the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReplicationPolicy {
    /// `<source alias>.<topic>`: no clash with the target's own topics, and loops are detected.
    #[default]
    #[serde(rename = "prefix")]
    Prefix,
    /// The source's name unchanged: for migrations and one-way backups.
    #[serde(rename = "identity")]
    Identity,
}

/// Consumer-offset translation (MirrorMaker 2's checkpoints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoints {
    /// Emit checkpoints.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between checkpoints.
    #[serde(default = "default_checkpoint_interval")]
    #[schemars(range(min = 1, max = 86400))]
    pub interval_seconds: i32,
    /// Also commit the translated offsets to the target's consumer groups (only for groups with
    /// no active members on the target).
    #[serde(default)]
    pub sync_group_offsets: bool,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints {
            enabled: true,
            interval_seconds: default_checkpoint_interval(),
            sync_group_offsets: false,
        }
    }
}

fn default_checkpoint_interval() -> i32 {
    60
}

/// Heartbeats from the mirror to the target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeats {
    /// Emit heartbeats.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between heartbeats.
    #[serde(default = "default_heartbeat_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Heartbeats {
            enabled: true,
            interval_seconds: default_heartbeat_interval(),
        }
    }
}

fn default_heartbeat_interval() -> i32 {
    1
}

/// What the operator last saw of the mirror.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorMakerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Mirror processes that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Source topics being mirrored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrored_topics: Vec<String>,
    /// Records behind the source, summed over all mirrored partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}
