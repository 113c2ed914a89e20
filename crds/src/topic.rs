//! `Topic`: a Kafka topic on a [`Cluster`](crate::Cluster) in the same namespace.
//!
//! Partitions only grow, which the schema enforces with a transition rule; a changed replica
//! count becomes a reassignment; deleting the resource deletes the topic unless
//! `deletionPolicy: Retain`.

use crate::common::ConfigValue;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The desired state of a topic.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "millrace.io",
    version = "v1alpha1",
    kind = "Topic",
    plural = "topics",
    namespaced,
    status = "TopicStatus",
    shortname = "mrt",
    category = "millrace",
    derive = "PartialEq",
    doc = "A Kafka topic on a Millrace Cluster in the same namespace.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
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
#[x_kube(
    validation = Rule::new("self.partitions >= oldSelf.partitions").message("partitions may not decrease (Kafka cannot remove partitions)").field_path(".partitions"),
    validation = Rule::new("self.cluster == oldSelf.cluster").message("cluster is immutable: a topic cannot move between clusters").field_path(".cluster"),
    validation = Rule::new("has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)").message("topicName is immutable").field_path(".topicName")
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// The name of the Cluster, in this namespace, that holds the topic.
    #[schemars(length(min = 1, max = 63))]
    pub cluster: String,
    /// The topic's name in Kafka; `metadata.name` when unset (set it for names that are not
    /// valid Kubernetes names, such as ones with `_` or upper case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    #[x_kube(validation = Rule::new("self != '.' && self != '..'").message("'.' and '..' are not valid topic names"))]
    pub topic_name: Option<String>,
    /// How many partitions. May grow, never shrink.
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,
    /// How many replicas each partition has. A change becomes a reassignment.
    #[schemars(range(min = 1, max = 32767))]
    pub replicas: i32,
    /// Topic properties, by Kafka's names (`retention.ms`, `cleanup.policy`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    pub config: BTreeMap<String, ConfigValue>,
    /// What deleting this resource does to the topic.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

impl Topic {
    /// The topic's name in Kafka.
    pub fn topic_name(&self) -> &str {
        self.spec
            .topic_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

/// What deleting a Topic resource does to the Kafka topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the topic and its data.
    #[default]
    Delete,
    /// Keep the topic; only the resource goes.
    Retain,
}

/// What the operator last saw of the topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` (e.g. `Reassigning`) and `Degraded` (e.g. `PartitionDecrease`,
    /// `Conflict` when another Topic claims the same topic).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The topic's id in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// The topic's name in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic's partition count as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// The topic configs the cluster reported, non-default ones only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observed_config: BTreeMap<String, String>,
}
