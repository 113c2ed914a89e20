//! `Cluster`: a set of Millrace brokers, the first `controllers` of which also vote in the
//! Raft metadata quorum (combined mode).
//!
//! The operator turns a `Cluster` into a ConfigMap, Services, a StatefulSet (updated with
//! `OnDelete`: the operator, not the StatefulSet controller, decides when a pod restarts), a
//! PodDisruptionBudget and the brokers' RBAC. Validation that only needs the object itself lives
//! here, in the schema, so nonsense is refused at `kubectl apply` rather than turning into a
//! condition later; checks that need Kafka's view (operator-owned config keys among them) are
//! the operator's and surface as conditions.

use crate::common::{ConfigValue, SaslMechanism};
use k8s_openapi::{
    api::core::v1::{Affinity, ResourceRequirements, Toleration},
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition},
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Ports the operator reserves on every broker; user listeners may not use them.
pub mod ports {
    /// The broker's HTTP admin port: `/metrics`, `/livez`, `/readyz`.
    pub const ADMIN_HTTP: i32 = 8080;
    /// The inter-broker (replication) listener.
    pub const REPLICATION: i32 = 9091;
    /// The controller listener: Raft and the broker↔controller control plane.
    pub const CONTROLLER: i32 = 9093;
}

/// The desired state of a Millrace cluster.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "millrace.io",
    version = "v1alpha1",
    kind = "Cluster",
    plural = "clusters",
    namespaced,
    status = "ClusterStatus",
    shortname = "mrc",
    category = "millrace",
    derive = "PartialEq",
    doc = "A Millrace cluster: Kafka-compatible brokers with a built-in Raft metadata quorum.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // Pod names are `<cluster>-broker-<n>` and the StatefulSet adds a revision-hash label
    // `<cluster>-broker-<hash>`; labels stop at 63 characters.
    validation = Rule::new("size(self.metadata.name) <= 40").message("a Cluster name may be at most 40 characters (its pods and services derive their names from it)")
)]
#[x_kube(
    validation = Rule::new("self.controllers <= self.replicas").message("controllers may not exceed replicas").field_path(".controllers"),
    validation = Rule::new("self.controllers % 2 == 1").message("controllers must be odd: a quorum of 2n+1 voters survives n failures, an even one no more").field_path(".controllers"),
    validation = Rule::new("self.controllers == oldSelf.controllers").message("controllers cannot change yet: quorum reconfiguration is not implemented").field_path(".controllers"),
    validation = Rule::new("self.listeners.all(l, self.listeners.exists_one(m, m.port == l.port))").message("listener ports must be unique").field_path(".listeners")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The Millrace version the brokers run. Picks the operator's default image for that
    /// version unless `image` is set.
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// The broker image, overriding the one `version` picks.
    #[schemars(length(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// How many brokers.
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,

    /// How many of the brokers (the lowest ids) also vote in the Raft metadata quorum. Odd, and
    /// not more than `replicas`.
    #[serde(default = "default_controllers")]
    #[schemars(range(min = 1, max = 9))]
    pub controllers: i32,

    /// Each broker's persistent volume.
    pub storage: Storage,

    /// CPU and memory for each broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Broker properties, by Kafka's names (`log.retention.hours`, `num.partitions`, …). Keys the
    /// operator owns (`node.id`, `process.roles`, `listeners`, `log.dirs`, …) are refused with a
    /// `Ready=False` condition that names the key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub config: BTreeMap<String, ConfigValue>,

    /// The client listeners. Inter-broker replication and the controller quorum have their own
    /// listeners that the operator manages.
    #[serde(default = "default_listeners")]
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub listeners: Vec<Listener>,

    /// Rack awareness: spread brokers over the values of a node label and tell each broker its
    /// rack, so that replicas of a partition land in different racks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Rack>,

    /// Scheduling and metadata for the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplate>,

    /// How the operator restarts brokers when their configuration or image changes.
    #[serde(default)]
    pub rollout: Rollout,

    /// What happens to partition replicas when brokers are added or removed.
    #[serde(default)]
    pub rebalance: Rebalance,
}

fn default_controllers() -> i32 {
    1
}

fn default_listeners() -> Vec<Listener> {
    vec![Listener {
        name: "plain".into(),
        port: 9092,
        type_: ListenerType::Internal,
        tls: false,
        certificate: None,
        authentication: None,
    }]
}

/// A broker's persistent volume (one PersistentVolumeClaim per broker).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.size == oldSelf.size").message("storage.size cannot change yet: volume expansion is not implemented").field_path(".size"),
    validation = Rule::new("has(self.class) == has(oldSelf.class) && (!has(self.class) || self.class == oldSelf.class)").message("storage.class is immutable").field_path(".class")
)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// The claim's size, e.g. `100Gi`.
    pub size: Quantity,
    /// The StorageClass; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Delete the claims (and so the data) when the Cluster is deleted. Off by default: a
    /// deleted Cluster's data stays until someone deletes the claims by hand.
    #[serde(default)]
    pub delete_claim: bool,
}

/// A client listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("!(self.port in [8080, 9091, 9093])").message("ports 8080, 9091 and 9093 are reserved for the admin, replication and controller listeners"),
    validation = Rule::new("!(self.name in ['replication', 'controller'])").message("listener names 'replication' and 'controller' are reserved"),
    validation = Rule::new("!self.tls || has(self.certificate)").message("a TLS listener needs certificate.secretName")
)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// The listener's name, unique in the cluster (Kafka's listener name is its upper case).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]{0,24}$"))]
    pub name: String,
    /// The port brokers listen on inside the pod.
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// How clients reach the listener.
    #[serde(rename = "type")]
    pub type_: ListenerType,
    /// Serve TLS on this listener.
    #[serde(default)]
    pub tls: bool,
    /// The certificate a TLS listener serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ListenerCertificate>,
    /// Require SASL authentication on this listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ListenerAuthentication>,
}

/// How clients reach a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ListenerType {
    /// Inside the Kubernetes cluster, through the bootstrap Service and per-pod DNS names.
    #[serde(rename = "internal")]
    Internal,
    /// From outside, through a NodePort Service per broker plus a bootstrap one.
    #[serde(rename = "nodeport")]
    NodePort,
    /// From outside, through a LoadBalancer Service per broker plus a bootstrap one.
    #[serde(rename = "loadbalancer")]
    LoadBalancer,
}

impl ListenerType {
    /// The name used in the CR and in status.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerType::Internal => "internal",
            ListenerType::NodePort => "nodeport",
            ListenerType::LoadBalancer => "loadbalancer",
        }
    }
}

/// A Secret holding a listener's certificate and key (PEM), e.g. one written by cert-manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerCertificate {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The key of the certificate chain in the Secret.
    #[serde(default = "default_cert_key")]
    pub certificate: String,
    /// The key of the private key in the Secret.
    #[serde(default = "default_key_key")]
    pub key: String,
}

fn default_cert_key() -> String {
    "tls.crt".into()
}

fn default_key_key() -> String {
    "tls.key".into()
}

/// SASL authentication on a listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListenerAuthentication {
    /// The SASL mechanism clients must use.
    #[serde(rename = "type")]
    pub type_: SaslMechanism,
}

/// Rack awareness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rack {
    /// The node label whose value is a broker's rack.
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1, max = 316))]
    pub topology_key: String,
}

/// The default rack label: the zone label the cloud providers set.
pub const DEFAULT_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";

fn default_topology_key() -> String {
    DEFAULT_TOPOLOGY_KEY.into()
}

/// Scheduling and metadata for the broker pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Extra labels on the pods (the operator's own labels win on a clash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Pod affinity and anti-affinity, as in a PodSpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations, as in a PodSpec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// How brokers are restarted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Stop restarting brokers (a roll in progress halts after the current broker).
    #[serde(default)]
    pub pause: bool,
    /// How many brokers may be down at once, for rolls and the PodDisruptionBudget. Only 1 is
    /// supported: more could take every replica of a partition down at once.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1, max = 1))]
    pub max_unavailable: i32,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            pause: false,
            max_unavailable: default_max_unavailable(),
        }
    }
}

fn default_max_unavailable() -> i32 {
    1
}

/// Replica movement when brokers are added or removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rebalance {
    /// Move replicas onto new brokers after a scale-up (a scale-down always drains first).
    #[serde(default = "default_true")]
    pub on_scale: bool,
    /// Replication throttle while replicas move, in bytes per second per broker (e.g. `50Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Quantity>,
}

impl Default for Rebalance {
    fn default() -> Self {
        Rebalance {
            on_scale: true,
            throttle: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// What the operator last saw of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` (reasons such as `RollingUpdate`, `Reassigning`) and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Brokers that exist (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// The broker pods' label selector (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// One entry per broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["id".into()]))]
    pub brokers: Vec<BrokerStatus>,
    /// Where clients connect, per listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub listeners: Vec<ListenerStatus>,
    /// The Kafka cluster id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The node id of the active controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_controller: Option<i32>,
    /// Partitions whose ISR is smaller than their replica set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated_partitions: Option<i32>,
    /// Progress of a running partition reassignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassignment: Option<ReassignmentStatus>,
}

/// One broker as the operator last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// The broker's node id (its pod's ordinal).
    pub id: i32,
    /// The pod's name.
    pub pod: String,
    /// The rack the broker registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// The Millrace version the broker runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the broker's `/readyz` answers ready.
    pub ready: bool,
}

/// Where clients connect to one listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// The listener's type.
    #[serde(rename = "type")]
    pub type_: ListenerType,
    /// A `bootstrap.servers` value for clients, once known (external addresses appear when the
    /// Services get them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
}

/// Progress of a partition reassignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReassignmentStatus {
    /// Partitions the reassignment moves.
    pub partitions_total: i32,
    /// Partitions whose new replicas have all joined the ISR.
    pub partitions_done: i32,
}
