//! The operator end to end on a real Kubernetes v1.20 control plane, with pods played by real
//! processes (DESIGN.md §3, layer 5; the kubelet is `common::kubelet`):
//! - `helm install` of the chart (CRDs, RBAC, the operator Deployment); the operator runs as the
//!   Deployment's pod, i.e. the real `millrace-operator` binary with the chart's env and a token
//!   of the chart's ServiceAccount, so the chart's RBAC is what it has;
//! - a 4-broker rack-aware `Cluster` (3 controllers, 1 broker-only node) becomes Ready: its pods
//!   run the real `millrace` binary,
//!   first `kube-init` (which reads the node's zone with the broker ServiceAccount the operator
//!   bound), then the broker with the properties the operator rendered;
//! - `Topic`s create, grow, reconfigure, get their drift undone, refuse a decrease, conflict,
//!   retain and delete, each checked with an independent Kafka client (confluent-kafka);
//! - deleting the Cluster garbage-collects its pods, whose processes stop.
//!
//! Skips (passing, with a message) when the control plane, helm, kubectl, a working `unshare -m`
//! (root), python's confluent-kafka or the `millrace` binary (built by `cargo test --workspace`)
//! are missing.

mod common;

use anyhow::{bail, Context as _, Result};
use common::{eventually, eventually_within, kubelet, start, workspace_root, NS};
use k8s_openapi::api::{core::v1::Pod, events::v1::Event, rbac::v1::ClusterRoleBinding};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    Api,
};
use millrace_crds::{Cluster, Topic};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

const BOOTSTRAP: &str = "demo-bootstrap.e2e.svc:9092";
/// Waits that include broker start-up get longer than the shared deadline on a loaded machine.
const SLOW: Duration = Duration::from_secs(180);

/// The `millrace` binary next to this test's own directory (`target/<profile>/`).
fn millrace_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("millrace");
    bin.exists().then_some(bin)
}

/// The real python interpreter (not a shim that needs the test's environment).
fn python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys, confluent_kafka; print(sys.executable)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

struct Checker {
    setup: kubelet::Setup,
    python: PathBuf,
}

impl Checker {
    /// Run `kafka_check.py args` inside the pod network; its JSON answer.
    async fn run(&self, args: &[&str]) -> Result<Value> {
        let script = workspace_root().join("operator/tests/kafka_check.py");
        let mut all = vec![script.to_string_lossy().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let out = self.setup.command(&self.python, &all, &[]).output().await?;
        if !out.status.success() {
            bail!(
                "kafka_check.py {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    async fn describe(&self, topic: &str) -> Result<Value> {
        self.run(&["describe", BOOTSTRAP, topic]).await
    }
}

/// The Ready condition's (status, reason) of a status' conditions.
fn ready(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> (String, String) {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

fn topic_ready(t: &Topic) -> (String, String) {
    t.status
        .as_ref()
        .map(|s| ready(&s.conditions))
        .unwrap_or_default()
}

/// Wait until Topic `name` is at `generation` with Ready (status, reason).
async fn topic_state(
    topics: &Api<Topic>,
    name: &str,
    generation: i64,
    want: (&str, &str),
) -> Result<Topic> {
    eventually(
        &format!("Topic {name} generation {generation} Ready={want:?}"),
        || {
            let topics = topics.clone();
            async move {
                let t = topics.get(name).await?;
                let r = topic_ready(&t);
                Ok(
                    (t.status.as_ref().and_then(|s| s.observed_generation) == Some(generation)
                        && (r.0.as_str(), r.1.as_str()) == want)
                        .then_some(t),
                )
            }
        },
    )
    .await
}

fn helm(tools: &Path, kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(tools.join("helm"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("helm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_brokers_and_topics_on_a_v1_20_control_plane() -> Result<()> {
    let (Some(millrace), Some(python)) = (millrace_binary(), python()) else {
        eprintln!(
            "SKIPPED end_to_end: the millrace binary (cargo build -p millrace) or python3 with confluent-kafka is missing"
        );
        return Ok(());
    };
    // Each pod's processes get a private mount namespace (for the pod network's hosts file),
    // which takes root (or CAP_SYS_ADMIN).
    if !Command::new("unshare")
        .args(["-m", "--", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!(
            "SKIPPED end_to_end: `unshare -m` does not work here (it needs root and util-linux)"
        );
        return Ok(());
    }
    let Some((cp, client, tools)) = start().await? else {
        return Ok(());
    };
    let kubeconfig = cp.run_dir.join("kubeconfig");
    let root = std::env::temp_dir().join(format!("millrace-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    eprintln!("end_to_end: pod directories and logs in {}", root.display());

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;

    // The pod network: brokers at 127.0.77.1-4 (the bootstrap Service resolves to broker 0),
    // the operator at 127.0.77.10.
    let mut addresses = BTreeMap::new();
    for i in 0..4 {
        let mut names = vec![format!("demo-broker-{i}.demo-brokers.{NS}.svc")];
        if i == 0 {
            names.push(format!("demo-bootstrap.{NS}.svc"));
        }
        addresses.insert(
            format!("{NS}/demo-broker-{i}"),
            (format!("127.0.77.{}", i + 1), names),
        );
    }
    addresses.insert(
        "millrace-system/millrace-".to_string(),
        ("127.0.77.10".to_string(), vec![]),
    );
    let setup = kubelet::Setup {
        root: root.clone(),
        admin_kubeconfig: kubeconfig.clone(),
        kubectl: tools.join("kubectl"),
        millrace,
        operator: PathBuf::from(env!("CARGO_BIN_EXE_millrace-operator")),
        addresses,
        // Test speed: drift is looked for every 2 s instead of 2 min.
        operator_env: vec![("MILLRACE_OPERATOR_TOPIC_RESYNC_SECONDS".into(), "2".into())],
        nodes: ["a", "b", "c"]
            .iter()
            .map(|z| (format!("node-{z}"), format!("zone-{z}")))
            .collect(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (kubelet_task, pids) = kubelet::start(client.clone(), setup.clone(), stop_rx).await?;
    let kafka = Checker { setup, python };

    // helm install: CRDs, RBAC for namespace e2e only, the operator Deployment.
    let chart = workspace_root().join("charts/millrace");
    helm(
        &tools,
        &kubeconfig,
        &[
            "install",
            "millrace",
            &chart.to_string_lossy(),
            "--namespace",
            "millrace-system",
            "--create-namespace",
            "--set",
            &format!("watchNamespaces={{{NS}}}"),
        ],
    )?;
    let system_pods: Api<Pod> = Api::namespaced(client.clone(), "millrace-system");
    eventually("the operator pod to be ready", || {
        let pods = system_pods.clone();
        async move {
            let l = pods.list(&ListParams::default()).await?;
            Ok(l.items
                .iter()
                .any(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .then_some(()))
        }
    })
    .await?;

    // A 4-broker, rack-aware Cluster: 3 controllers and a broker-only node.
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "millrace.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "demo", "namespace": NS},
        "spec": {"replicas": 4, "controllers": 3, "storage": {"size": "1Gi", "deleteClaim": true},
                 "rack": {}}
    }))?;
    clusters.create(&PostParams::default(), &cluster).await?;
    let started = Instant::now();
    let c = eventually_within(SLOW, "Cluster demo Ready=True", || {
        let clusters = clusters.clone();
        async move {
            let c = clusters.get("demo").await?;
            let r = c
                .status
                .as_ref()
                .map(|s| ready(&s.conditions))
                .unwrap_or_default();
            Ok((r == ("True".to_string(), "BrokersReady".to_string())).then_some(c))
        }
    })
    .await?;
    eprintln!(
        "end_to_end: Cluster Ready {:?} after creation",
        started.elapsed()
    );
    let status = c.status.as_ref().context("status")?;
    assert_eq!(status.brokers.len(), 4);
    assert!(
        status.brokers.iter().all(|b| b.ready),
        "{:?}",
        status.brokers
    );
    assert_eq!(status.observed_generation, c.metadata.generation);
    // v1.20 has no policy/v1: the budget went in as v1beta1, which the status says.
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .context("Degraded")?;
    assert_eq!(degraded.status, "False");
    assert!(
        degraded.message.contains("policy/v1beta1"),
        "{}",
        degraded.message
    );

    // Every broker registered with its node's zone, read by kube-init from the API server.
    let described = kafka.run(&["cluster", BOOTSTRAP]).await?;
    let brokers: Vec<(i64, String, i64, String)> = described["brokers"]
        .as_array()
        .context("brokers")?
        .iter()
        .map(|b| {
            (
                b["id"].as_i64().unwrap_or(-1),
                b["host"].as_str().unwrap_or_default().to_string(),
                b["port"].as_i64().unwrap_or(-1),
                b["rack"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        brokers,
        (0..4)
            .map(|i| (
                i,
                format!("demo-broker-{i}.demo-brokers.{NS}.svc"),
                9092,
                format!("zone-{}", ["a", "b", "c"][i as usize % 3])
            ))
            .collect::<Vec<_>>()
    );

    // The status tells what the cluster itself says: its id and where each broker registered.
    let c = eventually(
        "the Cluster status to show the Kafka cluster id and racks",
        || {
            let clusters = clusters.clone();
            async move {
                let c = clusters.get("demo").await?;
                let s = c.status.as_ref();
                Ok((s.is_some_and(|s| s.cluster_id.is_some())
                    && s.is_some_and(|s| s.brokers.iter().all(|b| b.rack.is_some())))
                .then_some(c))
            }
        },
    )
    .await?;
    let status = c.status.as_ref().context("status")?;
    assert_eq!(
        status.cluster_id.as_deref(),
        described["clusterId"].as_str(),
        "the cluster id Kafka clients see"
    );
    let racks: Vec<Option<&str>> = status.brokers.iter().map(|b| b.rack.as_deref()).collect();
    assert_eq!(
        racks,
        [
            Some("zone-a"),
            Some("zone-b"),
            Some("zone-c"),
            Some("zone-a")
        ]
    );
    assert_eq!(status.under_replicated_partitions, Some(0));

    // A Topic is created as specified.
    let topics: Api<Topic> = Api::namespaced(client.clone(), NS);
    let orders: Topic = serde_json::from_value(json!({
        "apiVersion": "millrace.io/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders", "namespace": NS},
        "spec": {"cluster": "demo", "partitions": 3, "replicas": 3,
                 "config": {"retention.ms": 3600000}}
    }))?;
    topics.create(&PostParams::default(), &orders).await?;
    let t = topic_state(&topics, "orders", 1, ("True", "Synced")).await?;
    let ts = t.status.as_ref().context("status")?;
    assert_eq!(ts.partitions, Some(3));
    assert!(
        ts.topic_id.as_ref().is_some_and(|id| !id.is_empty()),
        "{ts:?}"
    );
    let d = kafka.describe("orders").await?;
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(3), "{d}");
    assert!(
        d["partitions"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|r| r.as_array().map(Vec::len) == Some(3))),
        "3 replicas each: {d}"
    );
    assert_eq!(d["config"], json!({"retention.ms": "3600000"}));

    // It grows and is reconfigured.
    topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"partitions": 6,
                "config": {"retention.ms": 3600000, "cleanup.policy": "compact"}}})),
        )
        .await?;
    let t = topic_state(&topics, "orders", 2, ("True", "Synced")).await?;
    assert_eq!(t.status.as_ref().and_then(|s| s.partitions), Some(6));
    let d = kafka.describe("orders").await?;
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(6), "{d}");
    assert_eq!(
        d["config"],
        json!({"retention.ms": "3600000", "cleanup.policy": "compact"})
    );

    // A change made with another tool is undone and reported.
    assert_eq!(
        kafka
            .run(&["set", BOOTSTRAP, "orders", "retention.ms", "1"])
            .await?,
        json!("ok")
    );
    eventually("the drift on orders to be undone", || {
        let kafka = &kafka;
        async move {
            let d = kafka.describe("orders").await?;
            Ok((d["config"]["retention.ms"] == "3600000").then_some(()))
        }
    })
    .await?;
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let drift = eventually("a DriftCorrected Event", || {
        let events = events.clone();
        async move {
            let l = events.list(&ListParams::default()).await?;
            Ok(l.items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("DriftCorrected")))
        }
    })
    .await?;
    assert_eq!(
        drift.note.as_deref(),
        Some("topic orders was changed outside this resource; undone: set retention.ms=3600000")
    );
    assert_eq!(
        drift.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("orders")
    );

    // v1.20 does not enforce the CRD's CEL rules, so a decrease gets through the API server;
    // the operator refuses it and changes nothing.
    topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"partitions": 2}})),
        )
        .await?;
    let t = topic_state(&topics, "orders", 3, ("False", "PartitionDecrease")).await?;
    assert_eq!(t.status.as_ref().and_then(|s| s.partitions), Some(6));
    assert_eq!(
        kafka.describe("orders").await?["partitions"]
            .as_array()
            .map(Vec::len),
        Some(6)
    );
    topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"partitions": 6}})),
        )
        .await?;
    topic_state(&topics, "orders", 4, ("True", "Synced")).await?;

    // A second resource for the same Kafka topic is a conflict and changes nothing.
    let copy: Topic = serde_json::from_value(json!({
        "apiVersion": "millrace.io/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders-copy", "namespace": NS},
        "spec": {"cluster": "demo", "topicName": "orders", "partitions": 9, "replicas": 3}
    }))?;
    topics.create(&PostParams::default(), &copy).await?;
    topic_state(&topics, "orders-copy", 1, ("False", "Conflict")).await?;
    assert_eq!(
        kafka.describe("orders").await?["partitions"]
            .as_array()
            .map(Vec::len),
        Some(6)
    );

    // deletionPolicy: Retain keeps the topic; the conflicting copy's deletion leaves it too.
    let keep: Topic = serde_json::from_value(json!({
        "apiVersion": "millrace.io/v1alpha1", "kind": "Topic",
        "metadata": {"name": "keep", "namespace": NS},
        "spec": {"cluster": "demo", "partitions": 1, "replicas": 1, "deletionPolicy": "Retain"}
    }))?;
    topics.create(&PostParams::default(), &keep).await?;
    topic_state(&topics, "keep", 1, ("True", "Synced")).await?;
    for name in ["keep", "orders-copy"] {
        topics.delete(name, &DeleteParams::default()).await?;
        eventually(&format!("Topic {name} to be gone"), || {
            let topics = topics.clone();
            async move { Ok(topics.get_opt(name).await?.is_none().then_some(())) }
        })
        .await?;
    }
    assert!(kafka.describe("keep").await?.is_object(), "retained");
    assert_eq!(
        kafka.describe("orders").await?["partitions"]
            .as_array()
            .map(Vec::len),
        Some(6),
        "the loser of a conflict does not delete the winner's topic"
    );

    // deletionPolicy: Delete (the default) deletes it.
    topics.delete("orders", &DeleteParams::default()).await?;
    eventually("Topic orders to be gone", || {
        let topics = topics.clone();
        async move { Ok(topics.get_opt("orders").await?.is_none().then_some(())) }
    })
    .await?;
    eventually("topic orders to be deleted from Kafka", || {
        let kafka = &kafka;
        async move { Ok(kafka.describe("orders").await?.is_null().then_some(())) }
    })
    .await?;

    // Deleting the Cluster: its pods go by garbage collection and their processes stop.
    let broker_pids: Vec<u32> = {
        let p = pids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.iter()
            .filter(|(k, _)| k.starts_with(&format!("{NS}/")))
            .map(|(_, pid)| *pid)
            .collect()
    };
    assert_eq!(broker_pids.len(), 4);
    clusters.delete("demo", &DeleteParams::default()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    eventually_within(
        SLOW,
        "the Cluster, its pods and their processes to be gone",
        || {
            let (clusters, pods, broker_pids) = (clusters.clone(), pods.clone(), &broker_pids);
            async move {
                let gone = clusters.get_opt("demo").await?.is_none()
                    && pods.list(&ListParams::default()).await?.items.is_empty()
                    && broker_pids.iter().all(|p| !kubelet::pid_alive(*p));
                Ok(gone.then_some(()))
            }
        },
    )
    .await?;
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    assert!(crbs
        .get_opt(&format!("millrace-broker-{NS}-demo"))
        .await?
        .is_none());

    let _ = stop_tx.send(true);
    tokio::time::timeout(SLOW, kubelet_task)
        .await
        .context("the kubelet stops")???;
    drop(cp);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
