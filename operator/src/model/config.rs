//! Broker properties.
//!
//! The ConfigMap holds `server.properties` (what every broker shares: the quorum voters, the
//! listener map, `log.dirs`, the user's `spec.config`) and one `node-<n>.properties` per broker
//! (`node.id`, `process.roles`, `listeners`, `advertised.listeners`). The pod's init step, which
//! runs the same image, concatenates `server.properties`, its own node file (chosen by the pod's
//! ordinal) and `broker.rack=<the node's topologyKey label>` into the file the broker starts
//! with. Per-node values are computed here rather than at start so that they are plain data the
//! tests can read.

use super::{fnv1a_hex, ModelError, Names, Observed};
use millrace_crds::{
    cluster::{ports, Listener, ListenerType},
    ClusterSpec,
};
use std::collections::BTreeMap;

/// Keys the operator derives and so refuses in `spec.config`.
pub const OPERATOR_OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.listener.names",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "security.inter.broker.protocol",
    "log.dirs",
    "log.dir",
    "broker.rack",
    "admin.http.port",
];

/// Key prefixes the operator owns: per-listener settings come from `spec.listeners`.
pub const OPERATOR_OWNED_PREFIXES: &[&str] = &["listener.name."];

/// The Raft/control-plane listener, present only on controllers.
const CONTROLLER_LISTENER: &str = "CONTROLLER";
/// The inter-broker listener; replication traffic stays off the client listeners.
const REPLICATION_LISTENER: &str = "REPLICATION";

/// Where each broker's volume is mounted, and its log directory inside it. A subdirectory keeps
/// the log away from `lost+found` on freshly formatted ext4 volumes.
pub(crate) const DATA_MOUNT: &str = "/var/lib/millrace";
pub(crate) const LOG_DIR: &str = "/var/lib/millrace/data";
/// Where the ConfigMap and the per-listener TLS Secrets are mounted.
pub(crate) const CONFIG_MOUNT: &str = "/etc/millrace";
pub(crate) const TLS_MOUNT: &str = "/etc/millrace/tls";
/// Where the init step writes the broker's final properties file.
pub(crate) const RUN_MOUNT: &str = "/var/run/millrace";
pub(crate) const SERVER_PROPERTIES: &str = "/var/run/millrace/server.properties";

/// The rendered broker configuration of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    shared: BTreeMap<String, String>,
    /// Index = node id.
    nodes: Vec<BTreeMap<String, String>>,
    /// External listeners whose address is not known yet for at least one broker.
    pending_external: Vec<String>,
}

impl BrokerConfig {
    pub(crate) fn new(
        names: &Names,
        spec: &ClusterSpec,
        observed: &Observed,
    ) -> Result<Self, ModelError> {
        refuse_operator_owned_keys(spec)?;
        let mut shared = BTreeMap::new();
        let voters = (0..spec.controllers)
            .map(|id| format!("{id}@{}:{}", names.pod_dns(id), ports::CONTROLLER))
            .collect::<Vec<_>>()
            .join(",");
        shared.insert("controller.quorum.voters".into(), voters);
        shared.insert(
            "controller.listener.names".into(),
            CONTROLLER_LISTENER.into(),
        );
        shared.insert(
            "inter.broker.listener.name".into(),
            REPLICATION_LISTENER.into(),
        );
        shared.insert("log.dirs".into(), LOG_DIR.into());
        shared.insert("admin.http.port".into(), ports::ADMIN_HTTP.to_string());
        let mut protocol_map = vec![
            format!("{CONTROLLER_LISTENER}:PLAINTEXT"),
            format!("{REPLICATION_LISTENER}:PLAINTEXT"),
        ];
        for l in &spec.listeners {
            protocol_map.push(format!(
                "{}:{}",
                kafka_listener_name(l),
                security_protocol(l)
            ));
            let prefix = format!("listener.name.{}", l.name);
            if let Some(auth) = &l.authentication {
                shared.insert(
                    format!("{prefix}.sasl.enabled.mechanisms"),
                    auth.type_.kafka_name().into(),
                );
            }
            if l.tls {
                // PEM files from the listener's Secret, mounted under fixed names (see the
                // StatefulSet's volumes), so the keys in the Secret can be anything.
                shared.insert(format!("{prefix}.ssl.keystore.type"), "PEM".into());
                shared.insert(
                    format!("{prefix}.ssl.certificate.location"),
                    format!("{TLS_MOUNT}/{}/tls.crt", l.name),
                );
                shared.insert(
                    format!("{prefix}.ssl.key.location"),
                    format!("{TLS_MOUNT}/{}/tls.key", l.name),
                );
            }
        }
        shared.insert(
            "listener.security.protocol.map".into(),
            protocol_map.join(","),
        );
        for (k, v) in &spec.config {
            shared.insert(k.clone(), v.to_string());
        }

        let mut pending_external = Vec::new();
        for l in spec
            .listeners
            .iter()
            .filter(|l| l.type_ != ListenerType::Internal)
        {
            let known = observed.external_addresses.get(&l.name);
            if (0..spec.replicas).any(|id| known.is_none_or(|m| !m.contains_key(&id))) {
                pending_external.push(l.name.clone());
            }
        }

        let nodes = (0..spec.replicas)
            .map(|id| node_properties(names, spec, observed, id))
            .collect();
        Ok(BrokerConfig {
            shared,
            nodes,
            pending_external,
        })
    }

    /// The properties every broker shares.
    pub fn shared(&self) -> &BTreeMap<String, String> {
        &self.shared
    }

    /// Broker `id`'s own properties.
    pub fn node(&self, id: i32) -> Option<&BTreeMap<String, String>> {
        usize::try_from(id).ok().and_then(|i| self.nodes.get(i))
    }

    /// External listeners that brokers do not advertise yet because Kubernetes has not given
    /// them an address (a node port or a load balancer) that the operator has seen.
    pub fn pending_external_listeners(&self) -> &[String] {
        &self.pending_external
    }

    /// The ConfigMap's data: `server.properties` and one `node-<n>.properties` per broker.
    pub fn config_map_data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::new();
        data.insert(
            "server.properties".to_string(),
            properties_text(&self.shared),
        );
        for (id, node) in self.nodes.iter().enumerate() {
            data.insert(format!("node-{id}.properties"), properties_text(node));
        }
        data
    }

    /// A hash of everything the brokers read, for the pod template's config-hash annotation.
    pub fn hash(&self) -> String {
        let mut all = String::new();
        for (k, v) in self.config_map_data() {
            all.push_str(&k);
            all.push('\0');
            all.push_str(&v);
            all.push('\0');
        }
        fnv1a_hex(all.as_bytes())
    }
}

fn refuse_operator_owned_keys(spec: &ClusterSpec) -> Result<(), ModelError> {
    let keys: Vec<String> = spec
        .config
        .keys()
        .filter(|k| {
            OPERATOR_OWNED_KEYS.contains(&k.as_str())
                || OPERATOR_OWNED_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .cloned()
        .collect();
    if keys.is_empty() {
        Ok(())
    } else {
        Err(ModelError::OperatorOwnedConfig { keys })
    }
}

fn node_properties(
    names: &Names,
    spec: &ClusterSpec,
    observed: &Observed,
    id: i32,
) -> BTreeMap<String, String> {
    let controller = id < spec.controllers;
    let dns = names.pod_dns(id);
    let mut listeners = vec![format!(
        "{REPLICATION_LISTENER}://0.0.0.0:{}",
        ports::REPLICATION
    )];
    let mut advertised = vec![format!(
        "{REPLICATION_LISTENER}://{dns}:{}",
        ports::REPLICATION
    )];
    for l in &spec.listeners {
        let name = kafka_listener_name(l);
        listeners.push(format!("{name}://0.0.0.0:{}", l.port));
        match l.type_ {
            ListenerType::Internal => advertised.push(format!("{name}://{dns}:{}", l.port)),
            // Until Kubernetes allocates the external address the listener is served but not
            // advertised; advertising a guess would send clients to the wrong place.
            ListenerType::NodePort | ListenerType::LoadBalancer => {
                if let Some(addr) = observed
                    .external_addresses
                    .get(&l.name)
                    .and_then(|m| m.get(&id))
                {
                    advertised.push(format!("{name}://{addr}"));
                }
            }
        }
    }
    // Every node listens on the controller port: voters for the quorum, broker-only nodes
    // because a Millrace broker-only node is a Raft learner the active controller pushes the
    // metadata log to (KRaft brokers fetch it instead).
    listeners.push(format!(
        "{CONTROLLER_LISTENER}://0.0.0.0:{}",
        ports::CONTROLLER
    ));
    BTreeMap::from([
        ("node.id".to_string(), id.to_string()),
        (
            "process.roles".to_string(),
            if controller {
                "broker,controller"
            } else {
                "broker"
            }
            .to_string(),
        ),
        ("listeners".to_string(), listeners.join(",")),
        ("advertised.listeners".to_string(), advertised.join(",")),
    ])
}

/// Kafka's listener name for a listener: its name in upper case.
pub(crate) fn kafka_listener_name(l: &Listener) -> String {
    l.name.to_uppercase()
}

fn security_protocol(l: &Listener) -> &'static str {
    match (l.tls, l.authentication.is_some()) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    }
}

/// Render properties in Java's `.properties` syntax, one `key=value` per line, sorted by key.
///
/// Escapes what the format needs: `\`, line breaks and tabs everywhere, a leading space in a
/// value, and `=`, `:`, spaces, `#` and `!` in keys (where they would end the key or start a
/// comment).
pub fn properties_text(props: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in props {
        for c in k.chars() {
            match c {
                '=' | ':' | ' ' | '#' | '!' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => push_escaped(&mut out, c),
            }
        }
        out.push('=');
        for (i, c) in v.chars().enumerate() {
            if i == 0 && c == ' ' {
                out.push_str("\\ ");
            } else {
                push_escaped(&mut out, c);
            }
        }
        out.push('\n');
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        _ => out.push(c),
    }
}
