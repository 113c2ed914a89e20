//! Pieces the three resources share.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use std::{borrow::Cow, fmt};

/// The value of one Kafka property in a `config` map: a string or an integer.
///
/// The schema is Kubernetes' int-or-string, so `num.partitions: 3` and `retention.ms: "86400000"`
/// both apply, while a list or an object is refused by the API server at apply time. Booleans are
/// refused too (int-or-string has no boolean arm), so `auto.create.topics.enable: "false"` must be
/// quoted; refusing is better than a watcher that cannot decode the object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// An integer property such as `num.partitions: 3`.
    Int(i64),
    /// Any other property, as Kafka's properties file would hold it.
    String(String),
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigValue::Int(i) => write!(f, "{i}"),
            ConfigValue::String(s) => f.write_str(s),
        }
    }
}

impl From<&str> for ConfigValue {
    fn from(s: &str) -> Self {
        ConfigValue::String(s.to_owned())
    }
}

impl From<i64> for ConfigValue {
    fn from(i: i64) -> Self {
        ConfigValue::Int(i)
    }
}

impl JsonSchema for ConfigValue {
    fn schema_name() -> Cow<'static, str> {
        "ConfigValue".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A property value: a string or an integer (quote booleans).",
            "x-kubernetes-int-or-string": true,
        })
    }
}

/// A key in a Secret of the resource's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key inside the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// SASL mechanisms a listener can require or a client can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    /// SASL/SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// SASL/SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SASL/PLAIN (only sensible over TLS).
    #[serde(rename = "plain")]
    Plain,
}

impl SaslMechanism {
    /// Kafka's name for the mechanism, as in `sasl.enabled.mechanisms`.
    pub fn kafka_name(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::Plain => "PLAIN",
        }
    }
}

/// Condition types and reasons every Millrace resource uses.
pub mod conditions {
    /// The resource is in the state its spec asks for.
    pub const READY: &str = "Ready";
    /// The operator is still moving towards the spec (`reason` says how).
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong that the operator cannot fix by itself (`reason` says what).
    pub const DEGRADED: &str = "Degraded";
}
