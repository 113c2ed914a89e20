//! The model: pure functions from a custom resource (plus what the operator observed) to the
//! Kubernetes objects that should exist. Nothing here holds a client or does I/O, so every
//! function is tested with plain values, and the reconcile loop only applies what it gets.
//!
//! [`ClusterModel::from_crd`] validates a `Cluster` once (names, operator-owned config keys) and
//! the `desired_*` methods build one object each:
//!
//! | method | object | name |
//! | --- | --- | --- |
//! | [`ClusterModel::desired_config_map`] | broker properties | `<c>-broker-config` |
//! | [`ClusterModel::desired_headless_service`] | pod DNS for peers | `<c>-brokers` |
//! | [`ClusterModel::desired_bootstrap_service`] | internal `bootstrap.servers` | `<c>-bootstrap` |
//! | [`ClusterModel::desired_external_services`] | NodePort / LoadBalancer | `<c>-<listener>-bootstrap`, `<c>-broker-<n>-<listener>` |
//! | [`ClusterModel::desired_stateful_set`] | the brokers | `<c>-broker` |
//! | [`ClusterModel::desired_pod_disruption_budget`] | voluntary disruptions | `<c>-broker` |
//! | [`ClusterModel::desired_service_account`], [`ClusterModel::desired_cluster_role_binding`] | broker RBAC | `<c>-broker`, `millrace-broker-<ns>-<c>` |
//!
//! Every namespaced object carries a controller owner reference to the `Cluster`, so deleting the
//! Cluster garbage-collects them. The ClusterRoleBinding is cluster-scoped and cannot be owned by
//! a namespaced object; the reconciler's finalizer deletes it.

mod config;
mod mirror_maker;
mod observed;
mod rbac;
mod services;
mod stateful_set;

pub use config::{properties_text, BrokerConfig, OPERATOR_OWNED_KEYS, OPERATOR_OWNED_PREFIXES};
pub use mirror_maker::{bootstrap_servers_for, MirrorMakerModel};
pub use rbac::BROKER_CLUSTER_ROLE;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use millrace_crds::{
    cluster::{Listener, ListenerType},
    Cluster,
};
use std::collections::BTreeMap;

/// Label keys the operator sets.
pub mod labels {
    /// The Cluster a resource belongs to; part of every selector.
    pub const CLUSTER: &str = "millrace.io/cluster";
    /// What the object is for (`broker`, `mirror-maker`).
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// Always `millrace`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// The custom resource's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// Always `millrace-operator`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The StatefulSet controller's per-pod label, used to address one broker.
    pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
    /// The namespace of the Cluster that owns a cluster-scoped object.
    pub const NAMESPACE: &str = "millrace.io/namespace";
}

/// Annotation on the pod template with a hash of the broker configuration, so a roll can tell
/// which pods run an old configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "millrace.io/config-hash";

/// Settings that come from the operator's deployment rather than from the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// Image repository for brokers and mirrors; the tag is the version.
    pub image_repository: String,
    /// The version used when a resource sets neither `version` nor `image`.
    pub version: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            image_repository: "millrace".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// Why a resource cannot be turned into objects. Each variant becomes a `Ready=False` condition
/// whose reason is [`ModelError::reason`]; the user has to change the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The object has no namespace/name/uid (never true for an object read from the API).
    #[error("{kind} has no metadata.{field}")]
    MissingMetadata {
        /// The resource's kind.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// `spec.config` sets keys the operator derives itself.
    #[error("spec.config sets {} the operator manages: {}; remove {}", if keys.len() == 1 { "a key" } else { "keys" }, keys.join(", "), if keys.len() == 1 { "it" } else { "them" })]
    OperatorOwnedConfig {
        /// The offending keys, sorted.
        keys: Vec<String>,
    },
    /// A MirrorMaker endpoint names a listener its Cluster does not have.
    #[error("Cluster {cluster} has no listener {listener}")]
    UnknownListener {
        /// The Cluster.
        cluster: String,
        /// The listener asked for.
        listener: String,
    },
    /// A MirrorMaker endpoint's Cluster has no internal listener to connect through.
    #[error("Cluster {cluster} has no internal listener; name one with `listener`")]
    NoInternalListener {
        /// The Cluster.
        cluster: String,
    },
}

impl ModelError {
    /// The condition reason (CamelCase, as Kubernetes expects).
    pub fn reason(&self) -> &'static str {
        match self {
            ModelError::MissingMetadata { .. } => "InvalidMetadata",
            ModelError::OperatorOwnedConfig { .. } => "OperatorOwnedConfig",
            ModelError::UnknownListener { .. } => "UnknownListener",
            ModelError::NoInternalListener { .. } => "NoInternalListener",
        }
    }
}

/// What the operator observed that the objects depend on but the spec does not say: the
/// addresses external clients reach each broker at, known only once Kubernetes has allocated a
/// node port or a load balancer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `listener name → broker id → host:port` for external listeners.
    pub external_addresses: BTreeMap<String, BTreeMap<i32, String>>,
}

/// A validated `Cluster`, ready to generate objects from.
#[derive(Clone, Debug)]
pub struct ClusterModel {
    name: String,
    namespace: String,
    owner: OwnerReference,
    spec: millrace_crds::ClusterSpec,
    image: String,
    version: String,
    config: BrokerConfig,
}

impl ClusterModel {
    /// Validate `cluster` and build the model. Fails, with an error meant for a condition, when
    /// the resource asks for something the operator refuses.
    pub fn from_crd(
        cluster: &Cluster,
        defaults: &Defaults,
        observed: &Observed,
    ) -> Result<Self, ModelError> {
        let missing = |field| ModelError::MissingMetadata {
            kind: "Cluster",
            field,
        };
        let name = cluster.metadata.name.clone().ok_or(missing("name"))?;
        let namespace = cluster
            .metadata
            .namespace
            .clone()
            .ok_or(missing("namespace"))?;
        let owner = cluster.controller_owner_ref(&()).ok_or(missing("uid"))?;
        let spec = cluster.spec.clone();
        let version = spec
            .version
            .clone()
            .unwrap_or_else(|| defaults.version.clone());
        let image = spec
            .image
            .clone()
            .unwrap_or_else(|| format!("{}:{}", defaults.image_repository, version));
        let names = Names::new(&name, &namespace);
        let config = BrokerConfig::new(&names, &spec, observed)?;
        Ok(ClusterModel {
            name,
            namespace,
            owner,
            spec,
            image,
            version,
            config,
        })
    }

    /// The Cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Cluster's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The object names derived from the Cluster's.
    pub fn names(&self) -> Names {
        Names::new(&self.name, &self.namespace)
    }

    /// The broker configuration this model renders.
    pub fn broker_config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The label selector of the broker pods, as `status.labelSelector` shows it.
    pub fn label_selector_string(&self) -> String {
        self.names().broker_selector()
    }

    /// Labels that select this cluster's broker pods. Kept minimal and stable: a StatefulSet's
    /// selector is immutable.
    fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::CLUSTER.to_string(), self.name.clone()),
            (labels::COMPONENT.to_string(), "broker".to_string()),
        ])
    }

    /// Labels on every object of this cluster.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.selector_labels();
        l.insert(labels::NAME.into(), "millrace".into());
        l.insert(labels::INSTANCE.into(), self.name.clone());
        l.insert(labels::MANAGED_BY.into(), "millrace-operator".into());
        l
    }

    /// Metadata for a namespaced object owned by the Cluster.
    fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// The listener called `name`.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.spec.listeners.iter().find(|l| l.name == name)
    }

    fn listeners(&self) -> &[Listener] {
        &self.spec.listeners
    }

    fn external_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners()
            .iter()
            .filter(|l| l.type_ != ListenerType::Internal)
    }
}

/// Names of the objects and DNS names derived from a Cluster's name and namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    cluster: String,
    namespace: String,
}

impl Names {
    /// Names for the Cluster `cluster` in `namespace`.
    pub fn new(cluster: &str, namespace: &str) -> Self {
        Names {
            cluster: cluster.into(),
            namespace: namespace.into(),
        }
    }

    /// The label selector (as a string) of the cluster's broker pods.
    pub fn broker_selector(&self) -> String {
        format!(
            "{}=broker,{}={}",
            labels::COMPONENT,
            labels::CLUSTER,
            self.cluster
        )
    }

    /// The label selector (as a string) of every object the operator made for the cluster.
    pub fn cluster_selector(&self) -> String {
        format!("{}={}", labels::CLUSTER, self.cluster)
    }

    /// The StatefulSet, the PodDisruptionBudget and the ServiceAccount.
    pub fn broker_set(&self) -> String {
        format!("{}-broker", self.cluster)
    }

    /// The headless Service that gives each pod a DNS name.
    pub fn headless_service(&self) -> String {
        format!("{}-brokers", self.cluster)
    }

    /// The ClusterIP Service for internal clients' `bootstrap.servers`.
    pub fn bootstrap_service(&self) -> String {
        format!("{}-bootstrap", self.cluster)
    }

    /// The ConfigMap with the broker properties.
    pub fn config_map(&self) -> String {
        format!("{}-broker-config", self.cluster)
    }

    /// Broker `id`'s pod.
    pub fn pod(&self, id: i32) -> String {
        format!("{}-broker-{id}", self.cluster)
    }

    /// Broker `id`'s stable DNS name: `<cluster>-broker-<n>.<cluster>-brokers.<ns>.svc`.
    pub fn pod_dns(&self, id: i32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod(id),
            self.headless_service(),
            self.namespace
        )
    }

    /// The bootstrap Service's DNS name.
    pub fn bootstrap_dns(&self) -> String {
        format!("{}.{}.svc", self.bootstrap_service(), self.namespace)
    }

    /// The bootstrap Service of an external listener.
    pub fn external_bootstrap_service(&self, listener: &str) -> String {
        format!("{}-{listener}-bootstrap", self.cluster)
    }

    /// Broker `id`'s Service on an external listener.
    pub fn external_broker_service(&self, listener: &str, id: i32) -> String {
        format!("{}-{listener}", self.pod(id))
    }

    /// The cluster-scoped binding of the brokers' ServiceAccount to the node-reader role; the
    /// namespace is part of the name because Cluster names repeat across namespaces.
    pub fn cluster_role_binding(&self) -> String {
        format!("millrace-broker-{}-{}", self.namespace, self.cluster)
    }
}

/// A stable 64-bit FNV-1a hash, hex-encoded. Stable across Rust versions and processes, unlike
/// `DefaultHasher`, so the config-hash annotation does not change when the operator is rebuilt.
pub(crate) fn fnv1a_hex(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
pub(crate) mod tests;
