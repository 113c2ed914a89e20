//! Topic reconciliation, Kubernetes-free: from a desired topic and the topic as the cluster
//! reports it, a [`Plan`] of Kafka Admin actions, and [`sync_topic`] to carry one out through a
//! [`TopicAdmin`].
//!
//! Expected flow of one sync:
//! 1. describe the topic (partitions, replication factor, configs with their source);
//! 2. [`plan`]: create it if missing; otherwise add partitions if more are wanted, and alter only
//!    the configs that differ (set changed keys, delete keys the spec dropped that are set on the
//!    topic), never a full replace;
//! 3. refuse what Kafka cannot do (fewer partitions) or what we do not know (configs outside
//!    [`TOPIC_CONFIG_KEYS`]) with a reason, and report a replication-factor change as pending:
//!    it is a reassignment, which the operator drives separately;
//! 4. execute the actions in order.
//!
//! Guarantees: a plan never deletes a topic, never lowers partitions, and touches only
//! allow-listed config keys. A refusal blocks nothing else: partitions still grow when a config
//! key is refused, so one bad key does not freeze the topic.
//!
//! Two Topic resources naming the same Kafka topic on one cluster are a conflict that
//! [`losing_claims`] settles: the older resource keeps the topic.
//!
//! [`crate::kafka::ClusterAdmin`] implements [`TopicAdmin`] over the Kafka protocol;
//! [`crate::reconcile::topic`] drives it from Topic resources.

use std::{collections::BTreeMap, future::Future};

/// Topic-level configs the operator may set, as Kafka names them. Anything else in a Topic's
/// `config` is refused rather than passed through, so a typo is reported instead of silently
/// ignored (or, worse, applied as a broker-wide default somewhere).
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// The topic a Topic resource asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTopic {
    /// The topic's name in Kafka.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replicas: i32,
    /// Topic configs, values as Kafka's string form.
    pub config: BTreeMap<String, String>,
}

/// Where a config value the cluster reports comes from (Kafka's `ConfigSource`, reduced to what
/// planning needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on this topic (`DYNAMIC_TOPIC_CONFIG`): ours to change or delete.
    Topic,
    /// A broker or cluster default: not the topic's own, never deleted.
    Default,
}

/// One config as the cluster reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedConfig {
    /// The value.
    pub value: String,
    /// Where it comes from.
    pub source: ConfigSource,
}

/// The topic as the cluster reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedTopic {
    /// The topic id.
    pub topic_id: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor (the size of partition 0's replica set; a reassignment in flight can
    /// make partitions differ, which the reassignment logic handles, not this plan).
    pub replicas: i32,
    /// Every config with its source.
    pub config: BTreeMap<String, ObservedConfig>,
}

/// One incremental config change (Kafka's IncrementalAlterConfigs `SET`/`DELETE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    /// Set `key` to `value`.
    Set {
        /// The config key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove the topic's own value of `key`, reverting to the default.
    Delete {
        /// The config key.
        key: String,
    },
}

/// A Kafka Admin action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// CreateTopics.
    Create {
        /// The topic.
        name: String,
        /// Partition count.
        partitions: i32,
        /// Replication factor.
        replicas: i32,
        /// Initial configs (allow-listed only).
        config: BTreeMap<String, String>,
    },
    /// CreatePartitions, to a new total.
    AddPartitions {
        /// The topic.
        name: String,
        /// The new partition count.
        total: i32,
    },
    /// IncrementalAlterConfigs with only the changed keys.
    AlterConfigs {
        /// The topic.
        name: String,
        /// The changes, sorted by key.
        ops: Vec<ConfigOp>,
    },
}

/// Something the plan refuses to do; each becomes a `Degraded` condition with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Kafka cannot remove partitions.
    #[error("partitions cannot decrease from {observed} to {desired}")]
    PartitionDecrease {
        /// The topic's partitions.
        observed: i32,
        /// What the spec asks for.
        desired: i32,
    },
    /// Config keys outside the allow-list.
    #[error("unknown or operator-managed topic config keys: {}", keys.join(", "))]
    UnknownConfig {
        /// The keys, sorted.
        keys: Vec<String>,
    },
}

impl Refusal {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::PartitionDecrease { .. } => "PartitionDecrease",
            Refusal::UnknownConfig { .. } => "UnknownConfig",
        }
    }
}

/// A change that is wanted but is not an Admin call of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The replication factor changes: a reassignment (with throttles) moves replicas.
    ReplicasChange {
        /// The current replication factor.
        from: i32,
        /// The wanted one.
        to: i32,
    },
}

/// What to do to bring a topic to its desired state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Admin actions, in the order to run them.
    pub actions: Vec<Action>,
    /// What was refused, and why.
    pub refusals: Vec<Refusal>,
    /// Changes left to the reassignment logic.
    pub pending: Vec<Pending>,
}

impl Plan {
    /// Nothing to do, nothing refused, nothing pending: the topic is as desired.
    pub fn is_in_sync(&self) -> bool {
        self.actions.is_empty() && self.refusals.is_empty() && self.pending.is_empty()
    }
}

/// Plan the actions that take `observed` (or no topic) to `desired`.
pub fn plan(desired: &DesiredTopic, observed: Option<&ObservedTopic>) -> Plan {
    let mut p = Plan::default();
    let unknown: Vec<String> = desired
        .config
        .keys()
        .filter(|k| !TOPIC_CONFIG_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        p.refusals.push(Refusal::UnknownConfig { keys: unknown });
    }
    let allowed = || {
        desired
            .config
            .iter()
            .filter(|(k, _)| TOPIC_CONFIG_KEYS.contains(&k.as_str()))
    };

    let Some(observed) = observed else {
        p.actions.push(Action::Create {
            name: desired.name.clone(),
            partitions: desired.partitions,
            replicas: desired.replicas,
            config: allowed().map(|(k, v)| (k.clone(), v.clone())).collect(),
        });
        return p;
    };

    if desired.partitions > observed.partitions {
        p.actions.push(Action::AddPartitions {
            name: desired.name.clone(),
            total: desired.partitions,
        });
    } else if desired.partitions < observed.partitions {
        p.refusals.push(Refusal::PartitionDecrease {
            observed: observed.partitions,
            desired: desired.partitions,
        });
    }

    let mut ops: Vec<ConfigOp> = allowed()
        .filter(|(k, v)| {
            observed
                .config
                .get(*k)
                .is_none_or(|o| o.source != ConfigSource::Topic || &o.value != *v)
        })
        .map(|(k, v)| ConfigOp::Set {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    // Keys the spec no longer sets but the topic still has as its own revert to the default;
    // only allow-listed ones, so configs someone set outside the operator on keys we do not
    // manage are left alone.
    ops.extend(
        observed
            .config
            .iter()
            .filter(|(k, o)| {
                o.source == ConfigSource::Topic
                    && TOPIC_CONFIG_KEYS.contains(&k.as_str())
                    && !desired.config.contains_key(*k)
            })
            .map(|(k, _)| ConfigOp::Delete { key: k.clone() }),
    );
    ops.sort_by(|a, b| op_key(a).cmp(op_key(b)));
    if !ops.is_empty() {
        p.actions.push(Action::AlterConfigs {
            name: desired.name.clone(),
            ops,
        });
    }

    if desired.replicas != observed.replicas {
        p.pending.push(Pending::ReplicasChange {
            from: observed.replicas,
            to: desired.replicas,
        });
    }
    p
}

fn op_key(op: &ConfigOp) -> &str {
    match op {
        ConfigOp::Set { key, .. } | ConfigOp::Delete { key } => key,
    }
}

/// The Kafka Admin operations topic reconciliation needs; [`crate::kafka::ClusterAdmin`] is the
/// real one.
pub trait TopicAdmin: Send + Sync {
    /// The error the implementation returns.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The topic's current state, or `None` if it does not exist.
    fn describe(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ObservedTopic>, Self::Error>> + Send;

    /// Run one action.
    fn execute(&self, action: &Action) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Delete the topic; a topic that is already gone counts as deleted.
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Errors from [`sync_topic`].
#[derive(Debug, thiserror::Error)]
pub enum SyncError<E: std::error::Error + 'static> {
    /// Describing the topic failed.
    #[error("failed to describe topic {topic}")]
    Describe {
        /// The topic.
        topic: String,
        /// The admin error.
        #[source]
        source: E,
    },
    /// An action failed; the ones before it took effect.
    #[error("failed to {action} topic {topic}")]
    Execute {
        /// The topic.
        topic: String,
        /// What was being done.
        action: &'static str,
        /// The admin error.
        #[source]
        source: E,
    },
}

/// Describe, plan and execute; returns the plan that was carried out (its refusals and pending
/// changes are for the caller to report).
pub async fn sync_topic<A: TopicAdmin>(
    admin: &A,
    desired: &DesiredTopic,
) -> Result<Plan, SyncError<A::Error>> {
    let observed = admin
        .describe(&desired.name)
        .await
        .map_err(|source| SyncError::Describe {
            topic: desired.name.clone(),
            source,
        })?;
    let p = plan(desired, observed.as_ref());
    for action in &p.actions {
        admin
            .execute(action)
            .await
            .map_err(|source| SyncError::Execute {
                topic: desired.name.clone(),
                action: match action {
                    Action::Create { .. } => "create",
                    Action::AddPartitions { .. } => "add partitions to",
                    Action::AlterConfigs { .. } => "alter configs of",
                },
                source,
            })?;
    }
    Ok(p)
}

/// One Topic resource's claim on a Kafka topic, for [`losing_claims`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The resource, as `namespace/name`.
    pub resource: String,
    /// The Cluster it targets, as `namespace/name`.
    pub cluster: String,
    /// The Kafka topic name it claims.
    pub topic: String,
    /// The resource's creation time in seconds since the epoch.
    pub created: i64,
}

/// Topic resources that claim a Kafka topic another resource already claims, each mapped to the
/// resource that keeps it. The oldest claim on a (cluster, topic) wins (ties broken by resource
/// name, so every replica of the operator agrees); the others get a `Conflict` condition and
/// are not reconciled, so two specs never fight over one topic.
pub fn losing_claims(claims: &[Claim]) -> BTreeMap<String, String> {
    let mut winners: BTreeMap<(&str, &str), &Claim> = BTreeMap::new();
    for c in claims {
        let slot = winners
            .entry((c.cluster.as_str(), c.topic.as_str()))
            .or_insert(c);
        if (c.created, &c.resource) < (slot.created, &slot.resource) {
            *slot = c;
        }
    }
    claims
        .iter()
        .filter_map(|c| {
            let w = winners.get(&(c.cluster.as_str(), c.topic.as_str()))?;
            (w.resource != c.resource).then(|| (c.resource.clone(), w.resource.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::FakeKafka;

    fn desired(partitions: i32, replicas: i32, config: &[(&str, &str)]) -> DesiredTopic {
        DesiredTopic {
            name: "orders".into(),
            partitions,
            replicas,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn observed(
        partitions: i32,
        replicas: i32,
        config: &[(&str, &str, ConfigSource)],
    ) -> ObservedTopic {
        ObservedTopic {
            topic_id: "id".into(),
            partitions,
            replicas,
            config: config
                .iter()
                .map(|(k, v, s)| {
                    (
                        k.to_string(),
                        ObservedConfig {
                            value: v.to_string(),
                            source: *s,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_missing_topic_is_created_with_its_configs() {
        let p = plan(&desired(12, 3, &[("retention.ms", "1000")]), None);
        assert_eq!(
            p.actions,
            [Action::Create {
                name: "orders".into(),
                partitions: 12,
                replicas: 3,
                config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            }]
        );
        assert!(p.refusals.is_empty());
    }

    #[test]
    fn an_unchanged_topic_needs_nothing() {
        let o = observed(
            12,
            3,
            &[
                ("retention.ms", "1000", ConfigSource::Topic),
                ("segment.bytes", "1073741824", ConfigSource::Default),
            ],
        );
        assert!(plan(&desired(12, 3, &[("retention.ms", "1000")]), Some(&o)).is_in_sync());
    }

    #[test]
    fn more_partitions_are_added() {
        let p = plan(&desired(24, 3, &[]), Some(&observed(12, 3, &[])));
        assert_eq!(
            p.actions,
            [Action::AddPartitions {
                name: "orders".into(),
                total: 24
            }]
        );
    }

    #[test]
    fn fewer_partitions_are_refused_with_a_reason() {
        let p = plan(&desired(6, 3, &[]), Some(&observed(12, 3, &[])));
        assert!(p.actions.is_empty());
        assert_eq!(
            p.refusals,
            [Refusal::PartitionDecrease {
                observed: 12,
                desired: 6
            }]
        );
        assert_eq!(
            p.refusals[0].to_string(),
            "partitions cannot decrease from 12 to 6"
        );
        assert_eq!(p.refusals[0].reason(), "PartitionDecrease");
    }

    #[test]
    fn only_changed_and_dropped_keys_are_altered() {
        let o = observed(
            12,
            3,
            &[
                ("retention.ms", "1000", ConfigSource::Topic),
                ("cleanup.policy", "delete", ConfigSource::Topic),
                ("min.insync.replicas", "2", ConfigSource::Topic),
                ("segment.bytes", "1073741824", ConfigSource::Default),
                // Set by someone else on a key we do not manage: left alone.
                (
                    "follower.replication.throttled.replicas",
                    "*",
                    ConfigSource::Topic,
                ),
            ],
        );
        let d = desired(
            12,
            3,
            &[
                ("retention.ms", "2000"),
                ("min.insync.replicas", "2"),
                // Equal to the default but not the topic's own: must be set explicitly.
                ("segment.bytes", "1073741824"),
            ],
        );
        let p = plan(&d, Some(&o));
        assert_eq!(
            p.actions,
            [Action::AlterConfigs {
                name: "orders".into(),
                ops: vec![
                    ConfigOp::Delete {
                        key: "cleanup.policy".into()
                    },
                    ConfigOp::Set {
                        key: "retention.ms".into(),
                        value: "2000".into()
                    },
                    ConfigOp::Set {
                        key: "segment.bytes".into(),
                        value: "1073741824".into()
                    },
                ]
            }]
        );
    }

    #[test]
    fn unknown_keys_are_refused_but_the_rest_still_applies() {
        let p = plan(
            &desired(
                24,
                3,
                &[
                    ("retention.ms", "5"),
                    ("retention.hours", "1"),
                    ("node.id", "2"),
                ],
            ),
            Some(&observed(12, 3, &[])),
        );
        assert_eq!(
            p.refusals,
            [Refusal::UnknownConfig {
                keys: vec!["node.id".into(), "retention.hours".into()]
            }]
        );
        assert_eq!(p.actions.len(), 2, "{:?}", p.actions);
        assert!(matches!(&p.actions[1], Action::AlterConfigs { ops, .. } if ops.len() == 1));
    }

    #[test]
    fn a_replication_factor_change_is_pending_not_an_action() {
        let p = plan(&desired(12, 5, &[]), Some(&observed(12, 3, &[])));
        assert!(p.actions.is_empty());
        assert_eq!(p.pending, [Pending::ReplicasChange { from: 3, to: 5 }]);
        assert!(!p.is_in_sync());
    }

    fn claim(resource: &str, cluster: &str, topic: &str, created: i64) -> Claim {
        Claim {
            resource: resource.into(),
            cluster: cluster.into(),
            topic: topic.into(),
            created,
        }
    }

    #[test]
    fn the_oldest_claim_on_a_topic_wins_and_the_rest_conflict() {
        let claims = [
            claim("ns/orders-copy", "ns/demo", "orders", 200),
            claim("ns/orders", "ns/demo", "orders", 100),
            claim("ns/orders-b", "ns/demo", "orders", 100),
            // Same topic name on another cluster: no conflict.
            claim("ns/orders-other", "ns/other", "orders", 50),
            claim("ns/payments", "ns/demo", "payments", 300),
        ];
        assert_eq!(
            losing_claims(&claims),
            BTreeMap::from([
                ("ns/orders-b".to_string(), "ns/orders".to_string()),
                ("ns/orders-copy".to_string(), "ns/orders".to_string()),
            ])
        );
    }

    #[tokio::test]
    async fn sync_executes_the_plan_in_order() {
        let kafka = FakeKafka::default();
        kafka.put("orders", observed(1, 3, &[]));
        let p = sync_topic(&kafka, &desired(2, 3, &[("retention.ms", "9")]))
            .await
            .expect("sync");
        assert_eq!(kafka.executed(), p.actions);
        assert_eq!(p.actions.len(), 2);
    }

    #[tokio::test]
    async fn a_failed_action_names_the_step() {
        let kafka = FakeKafka::default();
        kafka.fail_with("broker said no");
        let err = sync_topic(&kafka, &desired(2, 3, &[]))
            .await
            .expect_err("fails");
        assert_eq!(err.to_string(), "failed to describe topic orders");
        kafka.fail_execute_only();
        let err = sync_topic(&kafka, &desired(2, 3, &[]))
            .await
            .expect_err("fails");
        assert_eq!(err.to_string(), "failed to create topic orders");
    }
}
