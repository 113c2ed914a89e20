//! Broker and topic configuration, under Kafka's own property names.
//!
//! Every key the broker understands is declared once in [`defs`]: its type, default, whether it
//! is a topic config (and then which broker key is its cluster-wide default, as Kafka's
//! `log.retention.ms` is for `retention.ms`), and a validator. Everything else — parsing a
//! properties file, `--override` flags and `MILLRACE_*` variables, answering DescribeConfigs,
//! validating AlterConfigs, producing a [`millrace_log::LogConfig`] for one topic — reads that
//! table, so a key cannot be supported in one place and unknown in another.
//!
//! Precedence, highest first (Kafka's): a topic's own override (`DYNAMIC_TOPIC_CONFIG`), a dynamic
//! broker default set with AlterConfigs on the broker resource (`DYNAMIC_DEFAULT_BROKER_CONFIG`),
//! the static broker config (`STATIC_BROKER_CONFIG`: file, flags, environment), then the default.

mod defs;
mod listener;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

pub use defs::{ConfigDef, ConfigType, DEFS, LISTENER_DEFS};
use listener::ListenerSettings;
pub use listener::{parse_protocol_map, Listener, SecurityProtocol, DEFAULT_PROTOCOL_MAP};
use millrace_log::{LogConfig, TimestampType};

/// A configuration problem, always naming the key so a person can fix it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The key is not one the broker knows.
    #[error("unknown configuration key `{key}`")]
    Unknown {
        /// The offending key.
        key: String,
    },
    /// The value does not parse or is out of range.
    #[error("invalid value `{value}` for configuration `{key}`: {reason}")]
    Invalid {
        /// The offending key.
        key: String,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The key exists but cannot be set where it was set (e.g. a broker key on a topic).
    #[error("configuration `{key}` cannot be set here: {reason}")]
    NotAllowed {
        /// The offending key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The setting asks for something this build does not implement yet.
    #[error("configuration `{key}`: {reason}")]
    NotImplemented {
        /// The offending key.
        key: String,
        /// What is missing.
        reason: String,
    },
    /// A line of a properties file is not `key=value`.
    #[error("line {line} of {path}: expected `key=value`")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
    },
}

/// Where a config value came from, with Kafka's DescribeConfigs source codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic itself.
    DynamicTopic = 1,
    /// Set on this broker at run time.
    DynamicBroker = 2,
    /// Set as a cluster-wide dynamic default.
    DynamicDefaultBroker = 3,
    /// Set in the broker's static configuration.
    StaticBroker = 4,
    /// Kafka's default.
    Default = 5,
}

/// Looks a key up in the table, following Kafka's aliases (`broker.id` for `node.id`).
pub fn def(key: &str) -> Option<&'static ConfigDef> {
    let key = match key {
        "broker.id" => "node.id",
        "log.dir" => "log.dirs",
        other => other,
    };
    DEFS.iter().find(|d| d.name == key)
}

/// Looks up a per-listener key, `listener.name.<listener>.<key>` (Kafka's prefix, which has the
/// listener name in lower case): the listener part and the key's definition.
pub fn listener_def(key: &str) -> Option<(&str, &'static ConfigDef)> {
    let rest = key.strip_prefix("listener.name.")?;
    LISTENER_DEFS.iter().find_map(|d| {
        let listener = rest.strip_suffix(d.name)?.strip_suffix('.')?;
        (!listener.is_empty()).then_some((listener, d))
    })
}

/// The definition of a topic-level key.
pub fn topic_def(key: &str) -> Option<&'static ConfigDef> {
    DEFS.iter()
        .find(|d| d.name == key && d.broker_synonym.is_some())
}

/// Checks a value against its key's type and validator.
pub fn validate(def: &ConfigDef, value: &str) -> Result<(), ConfigError> {
    validate_as(def.name, def, value)
}

/// [`validate`], naming `key` in the error (a per-listener key is named in full).
fn validate_as(key: &str, def: &ConfigDef, value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    match def.ty {
        ConfigType::Boolean => {
            if !matches!(value, "true" | "false") {
                return Err(invalid("expected true or false".into()));
            }
        }
        ConfigType::Int | ConfigType::Long => {
            let n: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("expected an integer".into()))?;
            if def.ty == ConfigType::Int && i32::try_from(n).is_err() {
                return Err(invalid("out of range for a 32-bit integer".into()));
            }
            if n < def.min {
                return Err(invalid(format!("must be at least {}", def.min)));
            }
        }
        ConfigType::Double => {
            let x: f64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("expected a number".into()))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(invalid("must be between 0 and 1".into()));
            }
        }
        ConfigType::String | ConfigType::List | ConfigType::Password => {}
    }
    if let Some(check) = def.check {
        check(value).map_err(invalid)?;
    }
    Ok(())
}

/// A set of `key=value` pairs already validated against the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Validates and sets one key (aliases are stored under the canonical name).
    ///
    /// A per-listener key (`listener.name.<listener>.<key>`) is stored under its full name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let (d, name) = match (def(key), listener_def(key)) {
            (Some(d), _) => (d, d.name),
            (None, Some((_, d))) => (d, key),
            (None, None) => {
                return Err(ConfigError::Unknown {
                    key: key.to_string(),
                })
            }
        };
        validate_as(name, d, value)?;
        self.0.insert(name.to_string(), value.trim().to_string());
        Ok(())
    }

    /// The value of a key, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Removes a key; true if it was set.
    pub fn remove(&mut self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }

    /// All set keys, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Parses a Java-style properties file (`key=value` or `key: value`, `#`/`!` comments).
    pub fn parse_file_text(path: &str, text: &str) -> Result<Properties, ConfigError> {
        let mut props = Properties::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .or_else(|| line.split_once(':'))
                .ok_or_else(|| ConfigError::Syntax {
                    path: path.to_string(),
                    line: i + 1,
                })?;
            props.set(k.trim(), v.trim())?;
        }
        Ok(props)
    }

    /// Reads `MILLRACE_<KEY>` variables: upper case, dots as underscores
    /// (`MILLRACE_LOG_DIRS` sets `log.dirs`). A variable naming no known key is an error.
    pub fn from_env(
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Properties, ConfigError> {
        let mut props = Properties::default();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("MILLRACE_") else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace('_', ".");
            props.set(&key, &value)?;
        }
        Ok(props)
    }

    /// Properties from stored key/value pairs (metadata-log configs), which were validated when
    /// they were set; a key a newer build removed is skipped.
    pub fn from_stored<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Properties {
        let mut p = Properties::default();
        for (k, v) in pairs {
            let _ = p.set(k, v);
        }
        p
    }

    /// Layers `other` over `self`.
    pub fn merge(&mut self, other: &Properties) {
        for (k, v) in other.iter() {
            self.0.insert(k.to_string(), v.to_string());
        }
    }
}

/// The broker's static configuration, resolved from file, flags and environment.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Every explicitly set key (the STATIC_BROKER_CONFIG source).
    pub props: Properties,
    /// `node.id`.
    pub node_id: i32,
    /// `listeners`, less the controller listeners: where Kafka clients connect.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` (defaults to `listeners`, with a wildcard host made concrete).
    pub advertised: Vec<Listener>,
    /// `inter.broker.listener.name`: the listener brokers will use to replicate (there is no
    /// replication between brokers yet; the name is checked and kept).
    pub inter_broker_listener: String,
    /// `log.dirs` (the first is used for metadata; each holds partition directories).
    pub log_dirs: Vec<PathBuf>,
    /// Where the HTTP admin server (`/metrics`, `/livez`, `/readyz`) listens: `admin.listener`
    /// if set, else `0.0.0.0:<admin.http.port>` if that is set, else `admin.listener`'s default.
    pub admin_listener: SocketAddr,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval: Duration,
    /// `log.flush.scheduler.interval.ms`: how often `flush.ms` is checked.
    pub flush_scheduler_interval: Duration,
    /// `log.flush.offset.checkpoint.interval.ms`.
    pub checkpoint_interval: Duration,
    /// `connections.max.idle.ms`.
    pub connections_max_idle: Duration,
    /// `log.cleaner.enable`: run the log cleaner (compaction) at all.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`: how often the cleaner looks for logs to compact.
    pub log_cleaner_backoff: Duration,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// The cluster side: roles, quorum, timeouts.
    pub cluster: ClusterConfig,
}

/// How this node takes part in the cluster (`process.roles`, `controller.quorum.voters`, …).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `process.roles` includes `broker`.
    pub broker: bool,
    /// `process.roles` includes `controller`: a voter of the metadata quorum.
    pub controller: bool,
    /// `controller.quorum.voters`: (node id, controller-listener address). Empty: a quorum of
    /// one in this process.
    pub voters: Vec<(i32, String)>,
    /// Where this node's controller listener binds, if it has one.
    pub controller_listener: Option<String>,
    /// `cluster.id`, if set.
    pub cluster_id: Option<String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout: Duration,
    /// `controller.quorum.request.timeout.ms`.
    pub request_timeout: Duration,
    /// `metadata.log.max.snapshot.interval.records`.
    pub snapshot_interval: u64,
}

impl ClusterConfig {
    /// Whether the quorum is the single-node default (no `controller.quorum.voters`).
    pub fn is_standalone(&self) -> bool {
        self.voters.is_empty()
    }
}

/// The HTTP admin address. An explicit `admin.listener` (host:port) wins over `admin.http.port`
/// (all interfaces), so a test or a pod can pin the address while the file keeps the port the
/// operator rendered.
fn admin_address(props: &Properties) -> Result<SocketAddr, ConfigError> {
    if let (None, Some(port)) = (props.get("admin.listener"), props.get("admin.http.port")) {
        let port: u16 = port.parse().map_err(|_| ConfigError::Invalid {
            key: "admin.http.port".into(),
            value: port.to_string(),
            reason: "expected a port number".into(),
        })?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let admin = props
        .get("admin.listener")
        .or_else(|| def("admin.listener").and_then(|d| d.default))
        .unwrap_or_default();
    admin.parse().map_err(|_| ConfigError::Invalid {
        key: "admin.listener".into(),
        value: admin.to_string(),
        reason: "expected host:port with an IP address, e.g. 127.0.0.1:9180".into(),
    })
}

/// Parses `controller.quorum.voters`: `id@host:port` entries.
fn parse_voters(value: &str) -> Result<Vec<(i32, String)>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: "controller.quorum.voters".into(),
        value: value.to_string(),
        reason,
    };
    let mut out: Vec<(i32, String)> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| invalid(format!("`{item}` is not id@host:port")))?;
        let id: i32 = id
            .parse()
            .ok()
            .filter(|i| *i >= 0)
            .ok_or_else(|| invalid(format!("`{id}` is not a node id")))?;
        if addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(invalid(format!("`{addr}` is not host:port")));
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(invalid(format!("node {id} is listed twice")));
        }
        out.push((id, addr.to_string()));
    }
    Ok(out)
}

impl BrokerConfig {
    /// Resolves the typed configuration from explicitly set properties.
    pub fn from_props(props: Properties) -> Result<BrokerConfig, ConfigError> {
        let get = |key: &str| -> String {
            props
                .get(key)
                .map(str::to_string)
                .or_else(|| def(key).and_then(|d| d.default.map(str::to_string)))
                .unwrap_or_default()
        };
        let long = |key: &str| -> i64 { get(key).parse().unwrap_or(0) };
        let roles = get("process.roles");
        let roles: Vec<&str> = roles.split(',').map(str::trim).collect();
        for r in &roles {
            if !matches!(*r, "broker" | "controller") {
                return Err(ConfigError::Invalid {
                    key: "process.roles".into(),
                    value: roles.join(","),
                    reason: format!("`{r}` is not a role; use broker, controller or both"),
                });
            }
        }
        let listeners_text = get("listeners");
        let resolved = listener::resolve(&ListenerSettings {
            listeners: &listeners_text,
            advertised: props.get("advertised.listeners"),
            protocol_map: props.get("listener.security.protocol.map"),
            controller_names: &get("controller.listener.names"),
            inter_broker: &get("inter.broker.listener.name"),
            broker_role: roles.contains(&"broker"),
        })?;
        let node_id = long("node.id") as i32;
        let voters = parse_voters(&get("controller.quorum.voters"))?;
        let is_controller = roles.contains(&"controller");
        if is_controller && !voters.is_empty() && !voters.iter().any(|(id, _)| *id == node_id) {
            return Err(ConfigError::Invalid {
                key: "controller.quorum.voters".into(),
                value: get("controller.quorum.voters"),
                reason: format!(
                    "this node (node.id={node_id}) has the controller role but is not a voter"
                ),
            });
        }
        if !is_controller && voters.is_empty() {
            return Err(ConfigError::Invalid {
                key: "controller.quorum.voters".into(),
                value: String::new(),
                reason: "a broker-only node needs the voters of the quorum it joins".into(),
            });
        }
        let controller_listener = resolved
            .controller
            .first()
            .map(Listener::bind_addr)
            .or_else(|| {
                voters
                    .iter()
                    .find(|(id, _)| *id == node_id && is_controller)
                    .map(|(_, a)| a.clone())
            });
        if !voters.is_empty() && controller_listener.is_none() {
            return Err(ConfigError::Invalid {
                key: "listeners".into(),
                value: listeners_text,
                reason: "a broker-only node needs a controller listener (e.g. CONTROLLER://host:port) for the metadata log to reach it".into(),
            });
        }
        let admin_listener = admin_address(&props)?;
        let log_dirs = get("log.dirs")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect::<Vec<_>>();
        if log_dirs.is_empty() {
            return Err(ConfigError::Invalid {
                key: "log.dirs".into(),
                value: String::new(),
                reason: "at least one directory is required".into(),
            });
        }
        let ms = |key: &str| Duration::from_millis(long(key).max(0) as u64);
        Ok(BrokerConfig {
            node_id,
            listeners: resolved.broker,
            advertised: resolved.advertised,
            inter_broker_listener: resolved.inter_broker,
            log_dirs,
            admin_listener,
            socket_request_max_bytes: long("socket.request.max.bytes") as usize,
            auto_create_topics: get("auto.create.topics.enable") == "true",
            num_partitions: long("num.partitions") as i32,
            default_replication_factor: long("default.replication.factor") as i16,
            delete_topic_enable: get("delete.topic.enable") == "true",
            retention_check_interval: ms("log.retention.check.interval.ms"),
            flush_scheduler_interval: ms("log.flush.scheduler.interval.ms"),
            checkpoint_interval: ms("log.flush.offset.checkpoint.interval.ms"),
            connections_max_idle: ms("connections.max.idle.ms"),
            log_cleaner_enable: get("log.cleaner.enable") == "true",
            log_cleaner_backoff: ms("log.cleaner.backoff.ms"),
            rack: props.get("broker.rack").map(str::to_string),
            cluster: ClusterConfig {
                broker: roles.contains(&"broker"),
                controller: is_controller,
                voters,
                controller_listener,
                cluster_id: props.get("cluster.id").map(str::to_string),
                heartbeat_interval: ms("broker.heartbeat.interval.ms"),
                session_timeout: ms("broker.session.timeout.ms"),
                election_timeout: ms("controller.quorum.election.timeout.ms"),
                request_timeout: ms("controller.quorum.request.timeout.ms"),
                snapshot_interval: long("metadata.log.max.snapshot.interval.records").max(1) as u64,
            },
            props,
        })
    }

    /// The effective value and source of a broker-level key, given the dynamic broker defaults.
    pub fn broker_value(&self, dynamic: &Properties, key: &str) -> (Option<String>, ConfigSource) {
        if let Some(v) = dynamic.get(key) {
            return (Some(v.to_string()), ConfigSource::DynamicDefaultBroker);
        }
        if let Some(v) = self.props.get(key) {
            return (Some(v.to_string()), ConfigSource::StaticBroker);
        }
        // Kafka's coarser-unit synonyms (log.retention.hours, log.roll.hours) feed the ms keys.
        for (alias, factor) in coarse_synonyms(key) {
            if let Some(v) = dynamic.get(alias).or_else(|| self.props.get(alias)) {
                if let Ok(n) = v.parse::<i64>() {
                    return (
                        Some((n.saturating_mul(*factor)).to_string()),
                        ConfigSource::StaticBroker,
                    );
                }
            }
        }
        (
            def(key).and_then(|d| d.default.map(str::to_string)),
            ConfigSource::Default,
        )
    }

    /// The effective value and source of a topic-level key for a topic with `overrides`.
    pub fn topic_value(
        &self,
        dynamic: &Properties,
        overrides: &Properties,
        key: &str,
    ) -> (Option<String>, ConfigSource) {
        if let Some(v) = overrides.get(key) {
            return (Some(v.to_string()), ConfigSource::DynamicTopic);
        }
        match topic_def(key).and_then(|d| d.broker_synonym) {
            Some(broker_key) => self.broker_value(dynamic, broker_key),
            None => (None, ConfigSource::Default),
        }
    }

    /// The storage configuration of a topic with `overrides`.
    pub fn log_config(&self, dynamic: &Properties, overrides: &Properties) -> LogConfig {
        let val = |key: &str| {
            self.topic_value(dynamic, overrides, key)
                .0
                .unwrap_or_default()
        };
        let long = |key: &str| val(key).parse::<i64>().unwrap_or(-1);
        let opt_ms = |key: &str| {
            let n = long(key);
            (n >= 0 && n != i64::MAX).then(|| Duration::from_millis(n as u64))
        };
        let policy = val("cleanup.policy");
        let flush_messages = match long("flush.messages") {
            n if n <= 0 || n == i64::MAX => None,
            n => Some(n as u64),
        };
        LogConfig {
            segment_bytes: long("segment.bytes").max(1) as u64,
            segment_ms: opt_ms("segment.ms").unwrap_or(Duration::MAX),
            segment_index_bytes: long("segment.index.bytes").max(8) as u64,
            index_interval_bytes: long("index.interval.bytes").max(0) as u64,
            retention_ms: opt_ms("retention.ms"),
            retention_bytes: u64::try_from(long("retention.bytes")).ok(),
            flush_messages,
            flush_ms: opt_ms("flush.ms"),
            max_message_bytes: long("max.message.bytes").max(0) as usize,
            timestamp_type: if val("message.timestamp.type") == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
            cleanup_delete: policy.split(',').any(|p| p.trim() == "delete"),
            cleanup_compact: policy.split(',').any(|p| p.trim() == "compact"),
            delete_retention_ms: opt_ms("delete.retention.ms").unwrap_or(Duration::MAX),
            min_cleanable_dirty_ratio: val("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
            min_compaction_lag_ms: opt_ms("min.compaction.lag.ms").unwrap_or(Duration::ZERO),
            max_compaction_lag_ms: opt_ms("max.compaction.lag.ms").unwrap_or(Duration::MAX),
        }
    }
}

/// `log.retention.hours` and friends, in the units of their `*.ms` key.
fn coarse_synonyms(key: &str) -> &'static [(&'static str, i64)] {
    match key {
        "log.retention.ms" => &[
            ("log.retention.minutes", 60_000),
            ("log.retention.hours", 3_600_000),
        ],
        "log.roll.ms" => &[("log.roll.hours", 3_600_000)],
        _ => &[],
    }
}

/// Validates a topic-level override: the key must be a topic config.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), ConfigError> {
    match topic_def(key) {
        Some(d) => validate(d, value),
        None if def(key).is_some() => Err(ConfigError::NotAllowed {
            key: key.to_string(),
            reason: "it is a broker configuration, not a topic configuration".into(),
        }),
        None => Err(ConfigError::Unknown {
            key: key.to_string(),
        }),
    }
}

/// Validates a dynamic broker-level change: only keys Kafka lets a running cluster change.
pub fn validate_dynamic_broker_config(key: &str, value: &str) -> Result<(), ConfigError> {
    let d = def(key).ok_or_else(|| ConfigError::Unknown {
        key: key.to_string(),
    })?;
    if !d.dynamic {
        return Err(ConfigError::NotAllowed {
            key: key.to_string(),
            reason: "it is read-only at run time; set it in the broker's configuration and restart"
                .into(),
        });
    }
    validate(d, value)
}

/// The configuration reference as Markdown tables (the generated part of
/// `docs/CONFIGURATION.md`).
pub fn render_reference() -> String {
    let mut out = String::from(
        "### Broker configuration\n\n| key | default | dynamic | meaning |\n|---|---|---|---|\n",
    );
    let row = |d: &ConfigDef, default: &str, extra: &str| {
        format!("| `{}` | {} | {} | {} |\n", d.name, default, extra, d.doc)
    };
    let fmt_default = |v: Option<&str>| match v {
        Some(v) if !v.is_empty() => format!("`{v}`"),
        _ => "(unset)".to_string(),
    };
    for d in DEFS.iter().filter(|d| d.broker_synonym.is_none()) {
        out.push_str(&row(
            d,
            &fmt_default(d.default),
            if d.dynamic { "yes" } else { "no" },
        ));
    }
    out.push_str("\n### Per-listener keys\n\nSet as `listener.name.<listener>.<key>`, the listener name in lower case (`listener.name.external.ssl.keystore.type=PEM`). They are accepted so that the configuration the Kubernetes operator renders parses; they only mean something for a TLS or SASL listener, and such a listener stops start-up because TLS and SASL are not implemented yet.\n\n| key | meaning |\n|---|---|\n");
    for d in LISTENER_DEFS {
        out.push_str(&format!(
            "| `listener.name.<listener>.{}` | {} |\n",
            d.name, d.doc
        ));
    }
    out.push_str("\n### Topic configuration\n\nEach topic key takes its default from the broker key named beside it.\n\n| key | broker default from | meaning |\n|---|---|---|\n");
    for d in DEFS.iter().filter(|d| d.broker_synonym.is_some()) {
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            d.name,
            d.broker_synonym.unwrap_or_default(),
            d.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/CONFIGURATION.md carries the rendered table between two markers; regenerate it with
    /// `MILLRACE_BLESS=1 cargo test -p millrace config`.
    #[test]
    fn configuration_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIGURATION.md");
        let doc = std::fs::read_to_string(path).expect("docs/CONFIGURATION.md exists");
        let (begin, end) = ("<!-- BEGIN GENERATED -->\n", "<!-- END GENERATED -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let rendered = render_reference();
        if std::env::var_os("MILLRACE_BLESS").is_some() {
            let updated = format!("{}{}{}", &doc[..start], rendered, &doc[stop..]);
            std::fs::write(path, updated).expect("write docs");
            return;
        }
        assert_eq!(
            &doc[start..stop],
            rendered,
            "docs/CONFIGURATION.md is stale: run MILLRACE_BLESS=1 cargo test -p millrace config"
        );
    }

    #[test]
    fn defaults_give_a_single_node_broker_on_localhost() {
        let c = BrokerConfig::from_props(Properties::default()).expect("defaults are valid");
        assert_eq!(c.node_id, 1);
        assert_eq!(c.listeners[0].bind_addr(), "127.0.0.1:9092");
        assert_eq!(c.advertised[0].host, "127.0.0.1");
        assert_eq!(c.log_dirs, vec![PathBuf::from("./data")]);
        let lc = c.log_config(&Properties::default(), &Properties::default());
        assert_eq!(lc.segment_bytes, 1 << 30);
        assert_eq!(lc.retention_ms, Some(Duration::from_secs(7 * 24 * 3600)));
        assert!(lc.cleanup_delete && !lc.cleanup_compact);
    }

    #[test]
    fn compaction_settings_reach_the_log_config() {
        let c = BrokerConfig::from_props(Properties::default()).expect("defaults are valid");
        assert!(c.log_cleaner_enable);
        assert_eq!(c.log_cleaner_backoff, Duration::from_secs(15));
        let none = Properties::default();
        let lc = c.log_config(&none, &none);
        assert_eq!(lc.delete_retention_ms, Duration::from_secs(24 * 3600));
        assert_eq!(lc.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(lc.min_compaction_lag_ms, Duration::ZERO);
        assert_eq!(lc.max_compaction_lag_ms, Duration::MAX);
        let mut topic = Properties::default();
        for (k, v) in [
            ("cleanup.policy", "compact,delete"),
            ("delete.retention.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("min.compaction.lag.ms", "2000"),
            ("max.compaction.lag.ms", "3000"),
        ] {
            topic.set(k, v).expect("valid");
        }
        let lc = c.log_config(&none, &topic);
        assert!(lc.cleanup_compact && lc.cleanup_delete);
        assert_eq!(lc.delete_retention_ms, Duration::from_secs(1));
        assert_eq!(lc.min_cleanable_dirty_ratio, 0.1);
        assert_eq!(lc.min_compaction_lag_ms, Duration::from_secs(2));
        assert_eq!(lc.max_compaction_lag_ms, Duration::from_secs(3));
    }

    #[test]
    fn unknown_and_invalid_keys_name_the_key() {
        let mut p = Properties::default();
        let e = p.set("log.retention.hourz", "1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown configuration key `log.retention.hourz`"
        );
        let e = p.set("num.partitions", "many").unwrap_err();
        assert!(e.to_string().contains("`num.partitions`"), "{e}");
        let e = validate_topic_config("cleanup.policy", "shred").unwrap_err();
        assert!(e.to_string().contains("cleanup.policy"), "{e}");
        let e = validate_topic_config("node.id", "3").unwrap_err();
        assert!(matches!(e, ConfigError::NotAllowed { .. }));
    }

    #[test]
    fn topic_override_beats_dynamic_default_beats_static() {
        let mut stat = Properties::default();
        stat.set("log.retention.hours", "2").expect("valid");
        let c = BrokerConfig::from_props(stat).expect("valid");
        let none = Properties::default();
        assert_eq!(
            c.topic_value(&none, &none, "retention.ms"),
            (Some("7200000".into()), ConfigSource::StaticBroker)
        );
        let mut dynamic = Properties::default();
        dynamic.set("log.retention.ms", "5000").expect("valid");
        assert_eq!(
            c.topic_value(&dynamic, &none, "retention.ms"),
            (Some("5000".into()), ConfigSource::DynamicDefaultBroker)
        );
        let mut topic = Properties::default();
        topic.set("retention.ms", "-1").expect("valid");
        assert_eq!(c.log_config(&dynamic, &topic).retention_ms, None);
    }

    #[test]
    fn properties_files_and_environment() {
        let p = Properties::parse_file_text("x", "# c\nnode.id=3\nlog.dirs: /tmp/a\n\n")
            .expect("valid");
        assert_eq!(p.get("node.id"), Some("3"));
        assert_eq!(p.get("log.dirs"), Some("/tmp/a"));
        assert!(matches!(
            Properties::parse_file_text("x", "node.id"),
            Err(ConfigError::Syntax { line: 1, .. })
        ));
        let env = vec![
            ("MILLRACE_NUM_PARTITIONS".to_string(), "4".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let p = Properties::from_env(env.into_iter()).expect("valid");
        assert_eq!(p.get("num.partitions"), Some("4"));
    }
}
