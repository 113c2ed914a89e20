//! The CRDs on a real Kubernetes v1.36 CRD server (apiextensions-apiserver + etcd, built by
//! `operator/tests/setup-k8s-testenv.sh`): they install, the examples in `deploy/examples/` are
//! accepted with strict field validation, and nonsense is refused at apply time with a message a
//! user can act on — including the CEL rules, which no offline check evaluates.
//!
//! Skips (passing, with a message saying why) when the server binaries are absent.

use anyhow::{bail, Context, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    api::{DynamicObject, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::ApiResource,
    Api, Client, Config, CustomResourceExt,
};
use millrace_crds::{Cluster, MirrorMaker, Topic};
use serde_json::{json, Value};
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

const NS: &str = "millrace";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the binaries and the start/stop scripts are, or why the test cannot run.
fn locate() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let cache = std::env::var_os("MILLRACE_K8S_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/millrace-k8s")))
        .ok_or("no HOME or MILLRACE_K8S_CACHE")?;
    let apiext = std::env::var_os("MILLRACE_CRD_APISERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("crd-1.36/bin"));
    let etcd = std::env::var_os("MILLRACE_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("etcd/bin"));
    let testenv = std::env::var_os("MILLRACE_K8S_TESTENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/k8s-testenv"));
    for (what, p) in [
        (
            "apiextensions-apiserver",
            apiext.join("apiextensions-apiserver"),
        ),
        ("etcd", etcd.join("etcd")),
        (
            "start-crd-apiserver-1.36.sh",
            testenv.join("start-crd-apiserver-1.36.sh"),
        ),
    ] {
        if !p.exists() {
            return Err(format!(
                "{what} not found at {} (run operator/tests/setup-k8s-testenv.sh)",
                p.display()
            ));
        }
    }
    Ok((apiext, etcd, testenv))
}

/// Two free loopback ports, the second one above the first (etcd uses EP and EP+1).
fn free_ports() -> Result<(u16, u16)> {
    let api = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    for _ in 0..50 {
        let ep = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if ep < u16::MAX
            && ep != api
            && ep + 1 != api
            && TcpListener::bind(("127.0.0.1", ep + 1)).is_ok()
        {
            return Ok((api, ep));
        }
    }
    bail!("no free port pair for etcd")
}

/// The running server; stopped by its pid files when dropped, even when the test fails.
struct Server {
    run_dir: PathBuf,
    testenv: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(self.testenv.join("stop-control-plane.sh"))
            .arg(&self.run_dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

async fn start() -> Result<Option<(Server, Client)>> {
    let (apiext, etcd, testenv) = match locate() {
        Ok(found) => found,
        Err(why) => {
            eprintln!("SKIPPED crd_server: {why}");
            return Ok(None);
        }
    };
    let (port, etcd_port) = free_ports()?;
    let run_dir =
        std::env::temp_dir().join(format!("millrace-crd-server-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let server = Server {
        run_dir: run_dir.clone(),
        testenv: testenv.clone(),
    };
    let out = Command::new(testenv.join("start-crd-apiserver-1.36.sh"))
        .args([&apiext, &etcd, &run_dir])
        .arg(port.to_string())
        .arg(etcd_port.to_string())
        .output()
        .context("starting the CRD server")?;
    if !out.status.success() {
        let log = std::fs::read_to_string(run_dir.join("apiserver.log")).unwrap_or_default();
        bail!(
            "CRD server did not start: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
    }
    let kubeconfig = Kubeconfig::read_from(run_dir.join("kubeconfig"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Some((server, Client::try_from(config)?)))
}

async fn install_crds(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (file, _) in millrace_crds::all() {
        // The committed files, not the in-memory types: those files are what users install.
        let text = std::fs::read_to_string(workspace_root().join("crds").join(file))?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text)?;
        crds.create(&PostParams::default(), &crd)
            .await
            .with_context(|| format!("creating {file}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in [
        Cluster::crd_name(),
        Topic::crd_name(),
        MirrorMaker::crd_name(),
    ] {
        loop {
            let crd = crds.get(name).await?;
            let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if Instant::now() > deadline {
                bail!("CRD {name} not established within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn api_for(client: &Client, kind: &str) -> Api<DynamicObject> {
    let ar = match kind {
        "Cluster" => ApiResource::erase::<Cluster>(&()),
        "Topic" => ApiResource::erase::<Topic>(&()),
        _ => ApiResource::erase::<MirrorMaker>(&()),
    };
    Api::namespaced_with(client.clone(), NS, &ar)
}

/// Server-side apply with strict field validation, as `kubectl apply --server-side` does.
async fn apply(client: &Client, obj: &Value) -> Result<DynamicObject, String> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    api_for(client, kind)
        .patch(
            name,
            &PatchParams::apply("millrace-test").validation_strict(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => s.message,
            other => other.to_string(),
        })
}

fn examples() -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for f in ["cluster.yaml", "topics.yaml", "mirrormaker.yaml"] {
        let text = std::fs::read_to_string(workspace_root().join("deploy/examples").join(f))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            use serde::Deserialize;
            out.push(Value::deserialize(doc)?);
        }
    }
    Ok(out)
}

fn cluster(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "millrace.io/v1alpha1", "kind": "Cluster",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn topic(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "millrace.io/v1alpha1", "kind": "Topic",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// Apply `obj`, which must be refused with a message containing `expected`.
async fn assert_refused(client: &Client, what: &str, obj: Value, expected: &str) {
    match apply(client, &obj).await {
        Ok(_) => panic!("{what}: accepted, should have been refused"),
        Err(msg) => {
            eprintln!("{what}: refused: {msg}");
            assert!(
                msg.contains(expected),
                "{what}: message {msg:?} does not mention {expected:?}"
            );
        }
    }
}

#[tokio::test]
async fn crds_on_a_v1_36_api_server() -> Result<()> {
    let Some((_server, client)) = start().await? else {
        return Ok(());
    };
    install_crds(&client).await?;

    // Every example is accepted, strictly, and comes back with the schema's defaults filled in.
    for ex in examples()? {
        let name = ex["metadata"]["name"].clone();
        let applied = apply(&client, &ex)
            .await
            .map_err(|m| anyhow::anyhow!("example {name}: {m}"))?;
        eprintln!("accepted example {} {name}", ex["kind"]);
        if ex["kind"] == "Cluster" {
            let spec = &applied.data["spec"];
            assert_eq!(
                spec["rollout"]["pause"], false,
                "defaults are applied: {spec}"
            );
            assert_eq!(spec["listeners"][0]["tls"], false);
        }
    }
    let orders = api_for(&client, "Topic").get("orders").await?;
    assert_eq!(
        orders.data["spec"]["deletionPolicy"], "Delete",
        "default deletionPolicy"
    );

    let good = json!({"replicas": 3, "controllers": 3, "storage": {"size": "1Gi"}});

    // Range, enum, unknown-field and required-field checks.
    let mut negative = good.clone();
    negative["replicas"] = json!(-1);
    assert_refused(&client, "negative replicas", cluster("neg", negative), "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 1").await;
    let mut bad_enum = good.clone();
    bad_enum["listeners"] = json!([{"name": "plain", "port": 9092, "type": "ingress"}]);
    assert_refused(
        &client,
        "bad listener type",
        cluster("enum", bad_enum),
        "Unsupported value: \"ingress\"",
    )
    .await;
    let mut unknown = good.clone();
    unknown["replicaz"] = json!(3);
    assert_refused(
        &client,
        "unknown field",
        cluster("unknown", unknown),
        ".spec.replicaz: field not declared in schema",
    )
    .await;
    assert_refused(
        &client,
        "missing storage",
        cluster("nostorage", json!({"replicas": 1})),
        "spec.storage: Required value",
    )
    .await;
    assert_refused(
        &client,
        "zero partitions",
        topic(
            "zero",
            json!({"cluster": "demo", "partitions": 0, "replicas": 1}),
        ),
        "should be greater than or equal to 1",
    )
    .await;
    assert_refused(
        &client,
        "bad deletionPolicy",
        topic(
            "dp",
            json!({"cluster": "demo", "partitions": 1, "replicas": 1, "deletionPolicy": "Archive"}),
        ),
        "Unsupported value: \"Archive\"",
    )
    .await;
    assert_refused(
        &client,
        "config list value",
        cluster(
            "cfg",
            json!({"replicas": 1, "storage": {"size": "1Gi"}, "config": {"num.partitions": [1]}}),
        ),
        "spec.config.num.partitions",
    )
    .await;

    // CEL rules on creation.
    let mut even = good.clone();
    even["controllers"] = json!(2);
    assert_refused(
        &client,
        "even controllers",
        cluster("even", even),
        "controllers must be odd",
    )
    .await;
    assert_refused(
        &client,
        "controllers > replicas",
        cluster(
            "few",
            json!({"replicas": 1, "controllers": 3, "storage": {"size": "1Gi"}}),
        ),
        "controllers may not exceed replicas",
    )
    .await;
    let mut dup = good.clone();
    dup["listeners"] = json!([{"name": "a", "port": 9092, "type": "internal"}, {"name": "b", "port": 9092, "type": "internal"}]);
    assert_refused(
        &client,
        "duplicate ports",
        cluster("dup", dup),
        "listener ports must be unique",
    )
    .await;
    let mut reserved = good.clone();
    reserved["listeners"] = json!([{"name": "a", "port": 9093, "type": "internal"}]);
    assert_refused(
        &client,
        "reserved port",
        cluster("rsv", reserved),
        "reserved for the admin, replication and controller listeners",
    )
    .await;
    let mut tls = good.clone();
    tls["listeners"] = json!([{"name": "a", "port": 9094, "type": "internal", "tls": true}]);
    assert_refused(
        &client,
        "tls without certificate",
        cluster("tls", tls),
        "a TLS listener needs certificate.secretName",
    )
    .await;
    assert_refused(
        &client,
        "long name",
        cluster(&"x".repeat(41), good.clone()),
        "a Cluster name may be at most 40 characters",
    )
    .await;
    let mm = json!({"apiVersion": "millrace.io/v1alpha1", "kind": "MirrorMaker",
        "metadata": {"name": "both", "namespace": NS},
        "spec": {"source": {"alias": "a", "cluster": "demo", "bootstrapServers": "x:9092"},
                 "target": {"alias": "b", "cluster": "demo"}}});
    assert_refused(
        &client,
        "endpoint with cluster and bootstrapServers",
        mm,
        "set exactly one of cluster or bootstrapServers",
    )
    .await;

    // Transition rules: partitions only grow, identity fields are immutable.
    let t = topic(
        "grow",
        json!({"cluster": "demo", "partitions": 12, "replicas": 3}),
    );
    apply(&client, &t).await.map_err(anyhow::Error::msg)?;
    let mut more = t.clone();
    more["spec"]["partitions"] = json!(24);
    apply(&client, &more).await.map_err(anyhow::Error::msg)?;
    let mut fewer = t.clone();
    fewer["spec"]["partitions"] = json!(6);
    assert_refused(
        &client,
        "decreasing partitions",
        fewer,
        "partitions may not decrease",
    )
    .await;
    let mut moved = more.clone();
    moved["spec"]["cluster"] = json!("other");
    assert_refused(&client, "moving a topic", moved, "cluster is immutable").await;
    let mut renamed = more.clone();
    renamed["spec"]["topicName"] = json!("grow2");
    assert_refused(
        &client,
        "setting topicName later",
        renamed,
        "topicName is immutable",
    )
    .await;
    let c = cluster("ctl", good.clone());
    apply(&client, &c).await.map_err(anyhow::Error::msg)?;
    let mut fewer_ctl = c.clone();
    fewer_ctl["spec"]["controllers"] = json!(1);
    assert_refused(
        &client,
        "changing controllers",
        fewer_ctl,
        "controllers cannot change yet",
    )
    .await;
    let mut bigger = c.clone();
    bigger["spec"]["storage"]["size"] = json!("2Gi");
    assert_refused(
        &client,
        "resizing storage",
        bigger,
        "storage.size cannot change yet",
    )
    .await;

    // The status and scale subresources.
    let clusters = api_for(&client, "Cluster");
    let status = json!({"apiVersion": "millrace.io/v1alpha1", "kind": "Cluster",
        "status": {"observedGeneration": 1, "replicas": 3,
                   "labelSelector": "app.kubernetes.io/component=broker,millrace.io/cluster=ctl",
                   "conditions": [{"type": "Ready", "status": "True", "reason": "BrokersReady",
                                   "message": "3/3 brokers ready", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    clusters
        .patch_status(
            "ctl",
            &PatchParams::apply("millrace-operator").force(),
            &Patch::Apply(&status),
        )
        .await?;
    let scale = clusters.get_scale("ctl").await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    let scale_status = scale.status.context("scale status")?;
    assert_eq!(scale_status.replicas, 3);
    assert_eq!(
        scale_status.selector.as_deref(),
        Some("app.kubernetes.io/component=broker,millrace.io/cluster=ctl")
    );
    // A status write does not touch the spec, and vice versa (the status subresource).
    let after = clusters.get("ctl").await?;
    assert_eq!(after.data["spec"]["replicas"], 3);
    assert_eq!(
        after.data["status"]["conditions"][0]["reason"],
        "BrokersReady"
    );
    Ok(())
}
