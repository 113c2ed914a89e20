//! Test fixtures: the examples from `deploy/examples/` (so the tests exercise what users see)
//! and a minimal Cluster, with the metadata the API server would have set; [`FakeKafka`].

use crate::{
    kafka::AdminSource,
    topic::{Action, ConfigOp, ConfigSource, ObservedConfig, ObservedTopic, TopicAdmin},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use millrace_crds::{Cluster, ClusterSpec, MirrorMaker};

fn with_server_metadata(meta: &mut ObjectMeta, uid: &str) {
    meta.uid = Some(uid.into());
    meta.generation = Some(1);
    meta.resource_version = Some("1".into());
}

/// `fixtures/full-cluster.yaml`: 3 rack-aware brokers, an internal and a TLS+SCRAM
/// LoadBalancer listener.
pub(crate) fn example_cluster() -> Cluster {
    let mut c: Cluster = serde_yaml::from_str(include_str!("fixtures/full-cluster.yaml"))
        .expect("the example Cluster parses");
    with_server_metadata(&mut c.metadata, "11111111-1111-1111-1111-111111111111");
    c
}

/// `deploy/examples/mirrormaker.yaml`.
pub(crate) fn example_mirror_maker() -> MirrorMaker {
    let mut m: MirrorMaker =
        serde_yaml::from_str(include_str!("../../deploy/examples/mirrormaker.yaml"))
            .expect("the example MirrorMaker parses");
    with_server_metadata(&mut m.metadata, "22222222-2222-2222-2222-222222222222");
    m
}

/// One broker, defaults everywhere, in namespace `ns1`.
pub(crate) fn minimal_cluster(name: &str) -> Cluster {
    let spec: ClusterSpec = serde_json::from_value(serde_json::json!({
        "replicas": 1,
        "storage": {"size": "1Gi"},
    }))
    .expect("minimal spec parses");
    let mut c = Cluster::new(name, spec);
    c.metadata.namespace = Some("ns1".into());
    with_server_metadata(&mut c.metadata, "33333333-3333-3333-3333-333333333333");
    c
}

/// A test double for a Kafka cluster's topics, for the layers that mock their surroundings
/// (planning and reconcile scenarios); the product has no in-memory Kafka, and the end-to-end
/// test runs real brokers. Actions change the topics as Kafka would, so a second pass finds
/// nothing to do.
#[derive(Debug, Default)]
pub(crate) struct FakeKafka {
    state: std::sync::Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    topics: std::collections::BTreeMap<String, ObservedTopic>,
    executed: Vec<Action>,
    deleted: Vec<String>,
    /// Every call fails with this message.
    fail: Option<String>,
    /// Only `execute` fails.
    fail_execute: bool,
    next_id: u32,
}

/// The error of [`FakeKafka`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FakeError(pub String);

impl FakeKafka {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("not poisoned")
    }

    /// The cluster has `topic` (made by someone else).
    pub(crate) fn put(&self, name: &str, topic: ObservedTopic) {
        self.state().topics.insert(name.into(), topic);
    }

    /// The topic as the fake cluster holds it.
    pub(crate) fn get(&self, name: &str) -> Option<ObservedTopic> {
        self.state().topics.get(name).cloned()
    }

    /// Every call fails from now on.
    pub(crate) fn fail_with(&self, message: &str) {
        self.state().fail = Some(message.into());
    }

    /// Describes work again, but every action fails.
    pub(crate) fn fail_execute_only(&self) {
        let mut s = self.state();
        s.fail = None;
        s.fail_execute = true;
    }

    /// The actions executed so far, in order.
    pub(crate) fn executed(&self) -> Vec<Action> {
        self.state().executed.clone()
    }

    /// The topics deleted so far, in order.
    pub(crate) fn deleted(&self) -> Vec<String> {
        self.state().deleted.clone()
    }
}

impl TopicAdmin for FakeKafka {
    type Error = FakeError;

    async fn describe(&self, name: &str) -> Result<Option<ObservedTopic>, FakeError> {
        let s = self.state();
        if let Some(m) = &s.fail {
            return Err(FakeError(m.clone()));
        }
        Ok(s.topics.get(name).cloned())
    }

    async fn execute(&self, action: &Action) -> Result<(), FakeError> {
        let mut s = self.state();
        if let Some(m) = &s.fail {
            return Err(FakeError(m.clone()));
        }
        if s.fail_execute {
            return Err(FakeError("broker said no".into()));
        }
        s.executed.push(action.clone());
        match action {
            Action::Create {
                name,
                partitions,
                replicas,
                config,
            } => {
                s.next_id += 1;
                let topic = ObservedTopic {
                    topic_id: format!("topic-id-{}", s.next_id),
                    partitions: *partitions,
                    replicas: *replicas,
                    config: config
                        .iter()
                        .map(|(k, v)| (k.clone(), topic_config(v)))
                        .collect(),
                };
                s.topics.insert(name.clone(), topic);
            }
            Action::AddPartitions { name, total } => {
                if let Some(t) = s.topics.get_mut(name) {
                    t.partitions = *total;
                }
            }
            Action::AlterConfigs { name, ops } => {
                if let Some(t) = s.topics.get_mut(name) {
                    for op in ops {
                        match op {
                            ConfigOp::Set { key, value } => {
                                t.config.insert(key.clone(), topic_config(value));
                            }
                            ConfigOp::Delete { key } => {
                                t.config.remove(key);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<(), FakeError> {
        let mut s = self.state();
        if let Some(m) = &s.fail {
            return Err(FakeError(m.clone()));
        }
        s.topics.remove(name);
        s.deleted.push(name.into());
        Ok(())
    }
}

fn topic_config(value: &str) -> ObservedConfig {
    ObservedConfig {
        value: value.into(),
        source: ConfigSource::Topic,
    }
}

/// One fake cluster behind every bootstrap address.
impl AdminSource for std::sync::Arc<FakeKafka> {
    type Admin = FakeKafka;
    fn admin(&self, _bootstrap: &str) -> std::sync::Arc<FakeKafka> {
        self.clone()
    }
}
