//! Listeners, resolved together the way Kafka resolves them: `listeners`,
//! `advertised.listeners`, `listener.security.protocol.map`, `controller.listener.names` and
//! `inter.broker.listener.name`.
//!
//! A listener's *name* is free (`PLAIN`, `REPLICATION`, `CLIENT`, …); its *security protocol*
//! comes from `listener.security.protocol.map`. Names are case-insensitive and kept in upper
//! case, as Kafka's `ListenerName.normalised` keeps them. Only PLAINTEXT is implemented: a
//! listener mapped to SSL, SASL_PLAINTEXT or SASL_SSL stops start-up with an error that says so,
//! rather than serving plaintext where the operator asked for encryption.
//!
//! The checks, in order (each error names the listener and the key to fix):
//! 1. every name in `listeners` is unique and has an entry in the protocol map;
//! 2. its protocol is PLAINTEXT;
//! 3. a broker has at least one listener that is not a controller listener;
//! 4. `advertised.listeners` names only listeners of `listeners`, and no controller listener;
//! 5. `inter.broker.listener.name` is an advertised broker listener.

use std::fmt;

use super::ConfigError;

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No encryption, no authentication: the only one implemented.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Parses a protocol name, case-insensitively as Kafka's `SecurityProtocol.forName`.
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Kafka's default `listener.security.protocol.map`: each protocol is a listener name for itself.
pub const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// Parses `listener.security.protocol.map` (`NAME:PROTOCOL,...`); names come back upper case.
/// The error is the reason, for [`ConfigError::Invalid`].
pub fn parse_protocol_map(value: &str) -> Result<Vec<(String, SecurityProtocol)>, String> {
    let mut out: Vec<(String, SecurityProtocol)> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, protocol) = item
            .split_once(':')
            .ok_or_else(|| format!("`{item}` is not NAME:PROTOCOL"))?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty() {
            return Err(format!("`{item}` has no listener name"));
        }
        let protocol = SecurityProtocol::parse(protocol.trim()).ok_or_else(|| {
            format!(
                "`{}` is not a security protocol; use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                protocol.trim()
            )
        })?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("listener `{name}` is mapped twice"));
        }
        out.push((name, protocol));
    }
    Ok(out)
}

/// One listener, `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name, upper case (`PLAINTEXT`, `PLAIN`, `REPLICATION`, `CONTROLLER`).
    pub name: String,
    /// Host as written (may be empty or 0.0.0.0 for all interfaces).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Listener {
    /// Parses a `NAME://host:port,...` list (syntax only; names must be unique).
    pub fn parse_list(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        };
        let mut out: Vec<Listener> = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let expected = || invalid(format!("`{item}` is not NAME://host:port"));
            let (name, rest) = item.split_once("://").ok_or_else(expected)?;
            let (host, port) = rest.rsplit_once(':').ok_or_else(expected)?;
            let port: u16 = port
                .parse()
                .map_err(|_| invalid(format!("`{port}` is not a port")))?;
            let name = name.trim().to_ascii_uppercase();
            if name.is_empty() {
                return Err(expected());
            }
            if out.iter().any(|l| l.name == name) {
                return Err(invalid(format!("listener `{name}` is listed twice")));
            }
            out.push(Listener {
                name,
                host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
                port,
            });
        }
        if out.is_empty() {
            return Err(invalid("at least one listener is required".into()));
        }
        Ok(out)
    }

    /// The address to bind.
    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        if host.contains(':') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// What [`resolve`] reads: the effective (explicit or default) value of each key, and whether
/// the two keys whose defaults depend on other keys were set explicitly.
#[derive(Debug)]
pub(super) struct ListenerSettings<'a> {
    /// `listeners`.
    pub listeners: &'a str,
    /// `advertised.listeners`, if set.
    pub advertised: Option<&'a str>,
    /// `listener.security.protocol.map`, if set.
    pub protocol_map: Option<&'a str>,
    /// `controller.listener.names`.
    pub controller_names: &'a str,
    /// `inter.broker.listener.name`.
    pub inter_broker: &'a str,
    /// `process.roles` includes `broker`.
    pub broker_role: bool,
}

/// The listeners of one node, checked.
#[derive(Debug)]
pub(super) struct Resolved {
    /// Controller listeners (named in `controller.listener.names`).
    pub controller: Vec<Listener>,
    /// Kafka listeners, in `listeners` order.
    pub broker: Vec<Listener>,
    /// What is registered for clients (defaults to the Kafka listeners, a wildcard host
    /// advertised as `localhost`).
    pub advertised: Vec<Listener>,
    /// `inter.broker.listener.name`, upper case.
    pub inter_broker: String,
}

fn names(list: &[Listener]) -> String {
    list.iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Resolves and checks the listener keys (see the module docs for the checks).
pub(super) fn resolve(s: &ListenerSettings<'_>) -> Result<Resolved, ConfigError> {
    let controller_names: Vec<String> = s
        .controller_names
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect();
    let is_controller = |l: &Listener| controller_names.contains(&l.name);
    let protocol_map = match s.protocol_map {
        Some(v) => parse_protocol_map(v).map_err(|reason| ConfigError::Invalid {
            key: "listener.security.protocol.map".into(),
            value: v.to_string(),
            reason,
        })?,
        None => {
            // Kafka (KRaft): with the default map, controller listeners not in it are PLAINTEXT.
            let mut m = parse_protocol_map(DEFAULT_PROTOCOL_MAP).expect("the default map parses");
            for n in &controller_names {
                if !m.iter().any(|(name, _)| name == n) {
                    m.push((n.clone(), SecurityProtocol::Plaintext));
                }
            }
            m
        }
    };

    let all = Listener::parse_list("listeners", s.listeners)?;
    for l in &all {
        let Some((_, protocol)) = protocol_map.iter().find(|(n, _)| *n == l.name) else {
            return Err(ConfigError::Invalid {
                key: "listeners".into(),
                value: s.listeners.to_string(),
                reason: format!(
                    "listener `{}` has no security protocol: add `{}:PLAINTEXT` to listener.security.protocol.map",
                    l.name, l.name
                ),
            });
        };
        if *protocol != SecurityProtocol::Plaintext {
            return Err(ConfigError::NotImplemented {
                key: "listeners".into(),
                reason: format!(
                    "listener `{}` is mapped to {protocol} in listener.security.protocol.map, but TLS and SASL are not implemented yet: only PLAINTEXT listeners can be served",
                    l.name
                ),
            });
        }
    }
    let (controller, broker): (Vec<Listener>, Vec<Listener>) =
        all.into_iter().partition(|l| is_controller(l));
    if broker.is_empty() && s.broker_role {
        return Err(ConfigError::Invalid {
            key: "listeners".into(),
            value: s.listeners.to_string(),
            reason: "a broker needs at least one listener that is not a controller listener (controller.listener.names)".into(),
        });
    }

    let advertised = match s.advertised {
        Some(v) => {
            let list = Listener::parse_list("advertised.listeners", v)?;
            for l in &list {
                let reason = if is_controller(l) {
                    format!("`{}` is a controller listener (controller.listener.names); clients are only given broker listeners", l.name)
                } else if !broker.iter().any(|b| b.name == l.name) {
                    format!(
                        "`{}` is not a listener in `listeners` (which has {})",
                        l.name,
                        names(&broker)
                    )
                } else {
                    continue;
                };
                return Err(ConfigError::Invalid {
                    key: "advertised.listeners".into(),
                    value: v.to_string(),
                    reason,
                });
            }
            list
        }
        None => broker
            .iter()
            .map(|l| Listener {
                host: match l.host.as_str() {
                    "" | "0.0.0.0" | "::" => "localhost".to_string(),
                    h => h.to_string(),
                },
                ..l.clone()
            })
            .collect(),
    };

    let inter_broker = s.inter_broker.trim().to_ascii_uppercase();
    // Kafka checks this against the advertised listeners: the others cannot reach it there.
    if s.broker_role && !advertised.iter().any(|l| l.name == inter_broker) {
        return Err(ConfigError::Invalid {
            key: "inter.broker.listener.name".into(),
            value: s.inter_broker.to_string(),
            reason: format!(
                "`{inter_broker}` must name an advertised listener of `listeners` (this node advertises {}; the default is PLAINTEXT)",
                names(&advertised)
            ),
        });
    }
    Ok(Resolved {
        controller,
        broker,
        advertised,
        inter_broker,
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use crate::config::{BrokerConfig, ConfigError, Properties};

    /// What the Kubernetes operator renders for node 0 of a 3-node cluster (server.properties
    /// followed by node-0.properties), less the SASL_SSL listener.
    const RENDERED: &str = "\
admin.http.port=8080
auto.create.topics.enable=false
controller.listener.names=CONTROLLER
controller.quorum.voters=0@demo-broker-0.demo-brokers.millrace.svc:9093,1@demo-broker-1.demo-brokers.millrace.svc:9093,2@demo-broker-2.demo-brokers.millrace.svc:9093
default.replication.factor=3
inter.broker.listener.name=REPLICATION
listener.security.protocol.map=CONTROLLER:PLAINTEXT,REPLICATION:PLAINTEXT,PLAIN:PLAINTEXT
log.dirs=/var/lib/millrace/data
log.retention.hours=168
min.insync.replicas=2
num.partitions=6
advertised.listeners=REPLICATION://demo-broker-0.demo-brokers.millrace.svc:9091,PLAIN://demo-broker-0.demo-brokers.millrace.svc:9092
listeners=REPLICATION://0.0.0.0:9091,PLAIN://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093
node.id=0
process.roles=broker,controller
";

    fn config(text: &str) -> Result<BrokerConfig, ConfigError> {
        BrokerConfig::from_props(Properties::parse_file_text("test", text)?)
    }

    fn names(list: &[super::Listener]) -> Vec<&str> {
        list.iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn the_operators_rendering_resolves() {
        let c = config(RENDERED).expect("valid");
        assert_eq!(names(&c.listeners), ["REPLICATION", "PLAIN"]);
        assert_eq!(names(&c.advertised), ["REPLICATION", "PLAIN"]);
        assert_eq!(c.advertised[1].port, 9092);
        assert_eq!(c.inter_broker_listener, "REPLICATION");
        assert_eq!(
            c.cluster.controller_listener.as_deref(),
            Some("0.0.0.0:9093")
        );
        assert_eq!(c.cluster.voters.len(), 3);
        assert_eq!(
            c.admin_listener,
            "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn a_tls_or_sasl_listener_stops_start_up_naming_it() {
        let text = RENDERED
            .replace("PLAIN:PLAINTEXT", "PLAIN:PLAINTEXT,EXTERNAL:SASL_SSL")
            .replace(
                "CONTROLLER://0.0.0.0:9093",
                "EXTERNAL://0.0.0.0:9094,CONTROLLER://0.0.0.0:9093",
            )
            + "listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-512\n\
               listener.name.external.ssl.certificate.location=/etc/millrace/tls/external/tls.crt\n\
               listener.name.external.ssl.key.location=/etc/millrace/tls/external/tls.key\n\
               listener.name.external.ssl.keystore.type=PEM\n";
        let e = config(&text).unwrap_err();
        assert!(matches!(e, ConfigError::NotImplemented { .. }), "{e:?}");
        let message = e.to_string();
        assert!(message.contains("`EXTERNAL`"), "{message}");
        assert!(message.contains("SASL_SSL"), "{message}");
        assert!(
            message.contains("TLS and SASL are not implemented yet"),
            "{message}"
        );
        // The default map makes SSL a listener name for SSL: refused the same way.
        let e = config("listeners=PLAINTEXT://:9092,SSL://:9093").unwrap_err();
        assert!(e.to_string().contains("`SSL` is mapped to SSL"), "{e}");
    }

    #[test]
    fn a_listener_missing_from_the_map_is_invalid_naming_it() {
        let e = config("listeners=PLAINTEXT://:9092,CLIENT://:9094").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "listeners"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("listener `CLIENT` has no security protocol"),
            "{e}"
        );
    }

    #[test]
    fn names_are_case_insensitive_and_kept_upper_case() {
        let c = config(
            "listener.security.protocol.map=plain:plaintext,Internal:PLAINTEXT\n\
             listeners=Plain://127.0.0.1:9092,internal://127.0.0.1:9091\n\
             inter.broker.listener.name=internal\n",
        )
        .expect("valid");
        assert_eq!(names(&c.listeners), ["PLAIN", "INTERNAL"]);
        assert_eq!(c.inter_broker_listener, "INTERNAL");
    }

    #[test]
    fn the_inter_broker_listener_must_be_advertised() {
        // Kafka's default, PLAINTEXT, is not among these listeners.
        let e = config(
            "listener.security.protocol.map=PLAIN:PLAINTEXT\nlisteners=PLAIN://127.0.0.1:9092\n",
        )
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "inter.broker.listener.name"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("`PLAINTEXT` must name an advertised listener"),
            "{e}"
        );
        let e = config(&RENDERED.replace(
            "inter.broker.listener.name=REPLICATION",
            "inter.broker.listener.name=CONTROLLER",
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("advertises REPLICATION, PLAIN"),
            "{e}"
        );
    }

    #[test]
    fn advertised_listeners_name_kafka_listeners_only() {
        let e = config(&RENDERED.replace(
            "PLAIN://demo-broker-0.demo-brokers.millrace.svc:9092",
            "OTHER://demo-broker-0:9092",
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`OTHER` is not a listener in `listeners`"),
            "{e}"
        );
        let e = config(&RENDERED.replace(
            "PLAIN://demo-broker-0.demo-brokers.millrace.svc:9092",
            "CONTROLLER://demo-broker-0:9093",
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`CONTROLLER` is a controller listener"),
            "{e}"
        );
        let e = config("listeners=PLAINTEXT://:9092,plaintext://:9093").unwrap_err();
        assert!(e.to_string().contains("`PLAINTEXT` is listed twice"), "{e}");
    }

    #[test]
    fn protocol_map_syntax_is_checked_when_set() {
        let mut p = Properties::default();
        for (value, reason) in [
            ("PLAIN", "`PLAIN` is not NAME:PROTOCOL"),
            ("PLAIN:TLS", "`TLS` is not a security protocol"),
            ("A:PLAINTEXT,a:SSL", "listener `A` is mapped twice"),
        ] {
            let e = p.set("listener.security.protocol.map", value).unwrap_err();
            assert!(e.to_string().contains(reason), "{value}: {e}");
        }
    }

    #[test]
    fn admin_listener_wins_over_admin_http_port() {
        let addr = |text: &str| config(text).expect("valid").admin_listener.to_string();
        assert_eq!(addr(""), "127.0.0.1:9180");
        assert_eq!(addr("admin.http.port=8080"), "0.0.0.0:8080");
        assert_eq!(
            addr("admin.http.port=8080\nadmin.listener=127.0.1.2:8080"),
            "127.0.1.2:8080"
        );
        let e = Properties::default()
            .set("admin.http.port", "70000")
            .unwrap_err();
        assert!(e.to_string().contains("`admin.http.port`"), "{e}");
    }

    #[test]
    fn per_listener_keys_are_known_under_their_full_name() {
        let mut p = Properties::default();
        p.set("listener.name.external.ssl.keystore.type", "PEM")
            .expect("valid");
        assert_eq!(
            p.get("listener.name.external.ssl.keystore.type"),
            Some("PEM")
        );
        let e = p
            .set("listener.name.external.ssl.keystore.type", "BKS")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("`listener.name.external.ssl.keystore.type`"),
            "{e}"
        );
        for unknown in [
            "listener.name..ssl.key.location",
            "listener.name.external.ssl.truststore.type",
            "ssl.key.location",
        ] {
            assert!(
                matches!(p.set(unknown, "x"), Err(ConfigError::Unknown { .. })),
                "{unknown}"
            );
        }
    }
}
