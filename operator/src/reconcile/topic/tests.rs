//! Topic reconcile scenarios: the API server is mocked (every request asserted, in order, as in
//! the Cluster scenarios) and the Kafka cluster is [`FakeKafka`]; the end-to-end test on the
//! control plane runs the same loop against real brokers.

use super::*;
use crate::{
    fixtures::{minimal_cluster, FakeKafka},
    reconcile::tests::{fixed_now, ApiServer},
    topic::{ConfigSource, ObservedConfig},
};
use http::{Method, StatusCode};
use kube::runtime::reflector;
use serde_json::{json, Value};

const TOPICS: &str = "/apis/millrace.io/v1alpha1/namespaces/ns1/topics";
const CLUSTER_KF: &str = "/apis/millrace.io/v1alpha1/namespaces/ns1/clusters/kf";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns1/events";
const RESYNC: Duration = Duration::from_secs(120);

fn topic(name: &str, spec: Value) -> Topic {
    let mut t: Topic = serde_json::from_value(json!({
        "apiVersion": "millrace.io/v1alpha1",
        "kind": "Topic",
        "metadata": {
            "name": name,
            "namespace": "ns1",
            "uid": format!("uid-{name}"),
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": "2027-01-15T07:00:00Z",
            "finalizers": [TOPIC_FINALIZER],
        },
        "spec": spec,
    }))
    .expect("a valid Topic");
    t.metadata.finalizers = Some(vec![TOPIC_FINALIZER.into()]);
    t
}

fn orders() -> Topic {
    topic(
        "orders",
        json!({"cluster": "kf", "partitions": 3, "replicas": 1, "config": {"retention.ms": 3600000}}),
    )
}

struct Scenario {
    ctx: Arc<TopicContext<Arc<FakeKafka>>>,
    server: ApiServer,
    kafka: Arc<FakeKafka>,
}

/// A context whose store holds `others` (the Topics the watch has seen).
fn scenario(kafka: Arc<FakeKafka>, others: &[Topic]) -> Scenario {
    let (client, server) = ApiServer::new();
    let (reader, mut writer) = reflector::store::<Topic>();
    for t in others {
        writer.apply_watcher_event(&watcher::Event::Apply(t.clone()));
    }
    let reporter = Reporter {
        controller: "millrace-operator".into(),
        instance: Some("test".into()),
    };
    let ctx = TopicContext {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        admins: kafka.clone(),
        topics: reader,
        metrics: Arc::new(Metrics::new().expect("metrics")),
        now: fixed_now,
        resync: RESYNC,
    };
    Scenario {
        ctx: Arc::new(ctx),
        server,
        kafka,
    }
}

impl Scenario {
    async fn expect_cluster(&mut self) {
        self.server
            .expect(Method::GET, CLUSTER_KF, |_| {
                serde_json::to_value(minimal_cluster("kf")).expect("serializable")
            })
            .await;
    }

    /// Expect the status apply of `name`; returns the status written.
    async fn expect_status(&mut self, t: &Topic) -> Value {
        let mut obj = serde_json::to_value(t).expect("serializable");
        let seen = self
            .server
            .expect(
                Method::PATCH,
                &format!("{TOPICS}/{}/status", t.name_any()),
                move |body| {
                    obj["status"] = body["status"].clone();
                    obj
                },
            )
            .await;
        assert!(
            seen.query.contains("fieldManager=millrace-operator")
                && seen.query.contains("force=true"),
            "{}",
            seen.query
        );
        seen.body["status"].clone()
    }

    /// Expect the JSON patch of `name` that adds (`op: "add"`) or removes (`"remove"`) our
    /// finalizer.
    async fn expect_finalizer_patch(&mut self, name: &str, op: &str) {
        let seen = self
            .server
            .expect(Method::PATCH, &format!("{TOPICS}/{name}"), |_| {
                serde_json::to_value(orders()).expect("serializable")
            })
            .await;
        assert!(
            seen.body
                .as_array()
                .is_some_and(|ops| ops.iter().any(|o| o["op"] == op)),
            "a finalizer {op}: {}",
            seen.body
        );
    }

    async fn expect_event(&mut self, reason: &str, kind: &str) -> Value {
        let e = self.server.expect(Method::POST, EVENTS, Value::clone).await;
        assert_eq!(e.body["reason"], reason, "{}", e.body);
        assert_eq!(e.body["type"], kind, "{}", e.body);
        e.body
    }

    async fn finish(self, task: tokio::task::JoinHandle<Result<Action, TopicError>>) -> Action {
        let action = task.await.expect("join").expect("reconcile");
        drop(self.ctx);
        self.server.expect_no_more().await;
        action
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn with_status(mut t: Topic, status: &Value) -> Topic {
    t.status = Some(serde_json::from_value(status.clone()).expect("status parses"));
    t
}

#[tokio::test]
async fn first_pass_adds_only_the_finalizer() {
    let mut s = scenario(Arc::default(), &[]);
    let mut t = orders();
    t.metadata.finalizers = None;
    let task = tokio::spawn(reconcile_topic(Arc::new(t.clone()), s.ctx.clone()));
    s.expect_finalizer_patch("orders", "add").await;
    let kafka = s.kafka.clone();
    assert_eq!(s.finish(task).await, Action::await_change());
    assert!(
        kafka.executed().is_empty(),
        "nothing touches Kafka before the finalizer is on"
    );
}

#[tokio::test]
async fn creation_creates_the_topic_then_writes_status_and_an_event() {
    let mut s = scenario(Arc::default(), &[]);
    let t = orders();
    let task = tokio::spawn(reconcile_topic(Arc::new(t.clone()), s.ctx.clone()));
    s.expect_cluster().await;
    let status = s.expect_status(&t).await;
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["topicName"], "orders");
    assert_eq!(status["topicId"], "topic-id-1");
    assert_eq!(status["partitions"], 3);
    assert_eq!(status["observedConfig"], json!({"retention.ms": "3600000"}));
    let ready = condition(&status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("True"), &json!("Synced"))
    );
    assert_eq!(ready["lastTransitionTime"], "2027-01-15T08:00:00Z");
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    s.expect_event("Synced", "Normal").await;
    let kafka = s.kafka.clone();
    assert_eq!(s.finish(task).await, Action::requeue(RESYNC));
    assert_eq!(
        kafka.executed(),
        [TopicAction::Create {
            name: "orders".into(),
            partitions: 3,
            replicas: 1,
            config: [("retention.ms".to_string(), "3600000".to_string())].into(),
        }]
    );
}

/// Runs a first pass and returns the Topic with the status it wrote.
async fn synced_once(kafka: &Arc<FakeKafka>, t: Topic) -> Topic {
    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t.clone()), s.ctx.clone()));
    s.expect_cluster().await;
    let status = s.expect_status(&t).await;
    s.expect_event("Synced", "Normal").await;
    s.finish(task).await;
    with_status(t, &status)
}

#[tokio::test]
async fn an_unchanged_topic_costs_one_read_and_no_write() {
    let kafka: Arc<FakeKafka> = Arc::default();
    let t = synced_once(&kafka, orders()).await;
    let before = kafka.executed().len();

    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t), s.ctx.clone()));
    s.expect_cluster().await;
    assert_eq!(s.finish(task).await, Action::requeue(RESYNC));
    assert_eq!(kafka.executed().len(), before, "no Kafka change either");
}

#[tokio::test]
async fn a_spec_change_grows_partitions_and_alters_only_changed_configs() {
    let kafka: Arc<FakeKafka> = Arc::default();
    let mut t = synced_once(&kafka, orders()).await;
    t.metadata.generation = Some(2);
    t.spec.partitions = 6;
    t.spec.config = [
        ("retention.ms".to_string(), 3_600_000.into()),
        ("cleanup.policy".to_string(), "compact".into()),
    ]
    .into();

    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t.clone()), s.ctx.clone()));
    s.expect_cluster().await;
    let status = s.expect_status(&t).await;
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["partitions"], 6);
    assert_eq!(
        status["observedConfig"],
        json!({"cleanup.policy": "compact", "retention.ms": "3600000"})
    );
    assert_eq!(condition(&status, "Ready")["status"], "True");
    // Same Ready reason as before: no Event.
    s.finish(task).await;
    assert_eq!(
        kafka.executed()[1..],
        [
            TopicAction::AddPartitions {
                name: "orders".into(),
                total: 6
            },
            TopicAction::AlterConfigs {
                name: "orders".into(),
                ops: vec![ConfigOp::Set {
                    key: "cleanup.policy".into(),
                    value: "compact".into()
                }],
            },
        ]
    );
}

#[tokio::test]
async fn drift_is_corrected_and_reported() {
    let kafka: Arc<FakeKafka> = Arc::default();
    let t = synced_once(&kafka, orders()).await;
    // Someone changes the topic with another tool.
    let mut changed = kafka.get("orders").expect("created");
    changed.config.insert(
        "retention.ms".into(),
        ObservedConfig {
            value: "1".into(),
            source: ConfigSource::Topic,
        },
    );
    kafka.put("orders", changed);

    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t), s.ctx.clone()));
    s.expect_cluster().await;
    let event = s.expect_event("DriftCorrected", "Warning").await;
    assert_eq!(
        event["note"],
        "topic orders was changed outside this resource; undone: set retention.ms=3600000"
    );
    // The status is unchanged (the topic is back as it was): no write.
    s.finish(task).await;
    assert_eq!(
        kafka.get("orders").expect("exists").config["retention.ms"].value,
        "3600000"
    );
}

#[tokio::test]
async fn a_partition_decrease_and_a_replica_change_are_refused_in_the_status() {
    let kafka: Arc<FakeKafka> = Arc::default();
    let mut t = synced_once(&kafka, orders()).await;
    let before = kafka.executed().len();
    t.metadata.generation = Some(2);
    t.spec.partitions = 1; // the API server refuses this; a stale or forced spec can still say it
    t.spec.replicas = 3;

    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t.clone()), s.ctx.clone()));
    s.expect_cluster().await;
    let status = s.expect_status(&t).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "PartitionDecrease");
    assert_eq!(
        ready["message"],
        "partitions cannot decrease from 3 to 1; replication factor change from 1 to 3 needs a partition reassignment, which this operator version cannot do yet"
    );
    assert_eq!(condition(&status, "Degraded")["status"], "True");
    assert_eq!(status["partitions"], 3, "the status tells the truth");
    s.expect_event("PartitionDecrease", "Warning").await;
    s.finish(task).await;
    assert_eq!(
        kafka.executed().len(),
        before,
        "nothing was changed in Kafka"
    );
}

#[tokio::test]
async fn a_second_resource_for_the_same_topic_is_a_conflict_and_touches_nothing() {
    let kafka: Arc<FakeKafka> = Arc::default();
    let winner = orders();
    let mut loser = topic(
        "orders-again",
        json!({"cluster": "kf", "topicName": "orders", "partitions": 9, "replicas": 1}),
    );
    loser.metadata.creation_timestamp =
        Some(serde_json::from_value(json!("2027-01-15T07:30:00Z")).expect("a timestamp"));
    let mut s = scenario(kafka.clone(), &[winner]);
    let task = tokio::spawn(reconcile_topic(Arc::new(loser.clone()), s.ctx.clone()));
    let status = s.expect_status(&loser).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "Conflict");
    assert_eq!(
        ready["message"],
        "Kafka topic orders on Cluster kf is already managed by Topic orders; this resource is ignored until that one is deleted"
    );
    s.expect_event("Conflict", "Warning").await;
    s.finish(task).await;
    assert!(kafka.executed().is_empty());

    // Deleting the loser leaves the topic alone whatever its policy.
    kafka.put(
        "orders",
        crate::topic::ObservedTopic {
            topic_id: "x".into(),
            partitions: 3,
            replicas: 1,
            config: Default::default(),
        },
    );
    loser.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        fixed_now(),
    ));
    let mut s = scenario(kafka.clone(), &[orders()]);
    let task = tokio::spawn(reconcile_topic(Arc::new(loser), s.ctx.clone()));
    s.expect_finalizer_patch("orders-again", "remove").await;
    s.finish(task).await;
    assert!(kafka.deleted().is_empty());
}

#[tokio::test]
async fn a_missing_cluster_and_a_kafka_failure_are_reported() {
    let kafka: Arc<FakeKafka> = Arc::default();
    let t = orders();
    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t.clone()), s.ctx.clone()));
    s.server
        .expect_code(Method::GET, CLUSTER_KF, StatusCode::NOT_FOUND, |_| {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
        })
        .await;
    let status = s.expect_status(&t).await;
    assert_eq!(condition(&status, "Ready")["reason"], "ClusterNotFound");
    assert_eq!(
        condition(&status, "Ready")["message"],
        "Cluster kf does not exist in namespace ns1"
    );
    s.expect_event("ClusterNotFound", "Warning").await;
    assert_eq!(s.finish(task).await, Action::requeue(RETRY));

    kafka.fail_with("could not connect to kf-bootstrap.ns1.svc:9092");
    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t.clone()), s.ctx.clone()));
    s.expect_cluster().await;
    let status = s.expect_status(&t).await;
    assert_eq!(condition(&status, "Ready")["reason"], "KafkaError");
    assert_eq!(
        condition(&status, "Ready")["message"],
        "failed to describe topic orders: could not connect to kf-bootstrap.ns1.svc:9092"
    );
    s.expect_event("KafkaError", "Warning").await;
    assert_eq!(s.finish(task).await, Action::requeue(RETRY));
}

async fn delete_with(policy: &str) -> Arc<FakeKafka> {
    let kafka: Arc<FakeKafka> = Arc::default();
    let mut t = topic(
        "orders",
        json!({"cluster": "kf", "partitions": 3, "replicas": 1, "deletionPolicy": policy}),
    );
    t = synced_once(&kafka, t).await;
    t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        fixed_now(),
    ));
    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t), s.ctx.clone()));
    if policy == "Delete" {
        s.expect_cluster().await;
    }
    s.expect_finalizer_patch("orders", "remove").await;
    s.finish(task).await;
    kafka
}

#[tokio::test]
async fn deletion_policy_delete_deletes_the_topic() {
    let kafka = delete_with("Delete").await;
    assert_eq!(kafka.deleted(), ["orders"]);
    assert!(kafka.get("orders").is_none());
}

#[tokio::test]
async fn deletion_policy_retain_keeps_the_topic() {
    let kafka = delete_with("Retain").await;
    assert!(kafka.deleted().is_empty());
    assert!(kafka.get("orders").is_some());
}

#[tokio::test]
async fn an_unknown_config_key_is_refused_and_the_rest_still_happens() {
    let kafka: Arc<FakeKafka> = Arc::default();
    let t = topic(
        "orders",
        json!({"cluster": "kf", "partitions": 3, "replicas": 1,
               "config": {"retention.msec": 1, "retention.ms": 60000}}),
    );
    let mut s = scenario(kafka.clone(), &[]);
    let task = tokio::spawn(reconcile_topic(Arc::new(t.clone()), s.ctx.clone()));
    s.expect_cluster().await;
    let status = s.expect_status(&t).await;
    let ready = condition(&status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("UnknownConfig"))
    );
    assert_eq!(
        ready["message"],
        "unknown or operator-managed topic config keys: retention.msec"
    );
    assert_eq!(status["observedConfig"], json!({"retention.ms": "60000"}));
    s.expect_event("UnknownConfig", "Warning").await;
    s.finish(task).await;
    assert_eq!(
        kafka.executed(),
        [TopicAction::Create {
            name: "orders".into(),
            partitions: 3,
            replicas: 1,
            config: [("retention.ms".to_string(), "60000".to_string())].into(),
        }],
        "the topic is created without the refused key"
    );
}
