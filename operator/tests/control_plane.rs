//! The Cluster controller against a real Kubernetes v1.20 control plane (etcd, kube-apiserver,
//! kube-controller-manager, built by `operator/tests/setup-k8s-testenv.sh
//! --with-control-plane-1.20`): server-side apply, owner references, the finalizer, status and
//! Events on a real API server, and the StatefulSet controller creating the broker pods.
//!
//! The controller runs with the Helm chart's RBAC (namespaced mode, watching one namespace) and a
//! token of the chart's ServiceAccount, so a permission the chart forgot fails this test.
//!
//! No broker runs: there is no scheduler or kubelet, so the pods stay Pending and the Cluster
//! stays `Ready=False BrokersNotReady` — which is what this test expects. Pods played by real
//! `millrace` processes come with the multi-broker broker.
//!
//! Skips (passing, with a message saying why) when the control plane binaries are absent.

use anyhow::{Context as _, Result};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Namespace, Pod, Service},
        events::v1::Event,
        rbac::v1::ClusterRoleBinding,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::events::Reporter,
    Api, ResourceExt,
};
use millrace_crds::Cluster;
use millrace_operator::{
    http::Metrics,
    model::Defaults,
    reconcile::{run_cluster_controller, Context, FINALIZER},
};
use serde_json::json;
use std::sync::Arc;

mod common;

use common::{eventually, operator_client, start, workspace_root, DEADLINE, NS};

fn ready_reason(c: &Cluster) -> Option<String> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

#[tokio::test]
async fn cluster_controller_on_a_v1_20_control_plane() -> Result<()> {
    let Some((cp, client, tools)) = start().await? else {
        return Ok(());
    };
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (file, _) in millrace_crds::all() {
        let text = std::fs::read_to_string(workspace_root().join("crds").join(file))?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text)?;
        crds.create(&PostParams::default(), &crd)
            .await
            .with_context(|| format!("creating {file}"))?;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    eventually("the Cluster CRD to be served", || {
        let clusters = clusters.clone();
        async move { Ok(clusters.list(&ListParams::default()).await.ok().map(|_| ())) }
    })
    .await?;

    // The operator acts with the chart's permissions only; the test reads with admin rights.
    let operator = operator_client(&cp, &tools).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ctx = Arc::new(Context::new(
        operator.clone(),
        Defaults::default(),
        Reporter {
            controller: "millrace-operator".into(),
            instance: Some("e2e".into()),
        },
        Arc::new(Metrics::new()?),
    ));
    let controller = tokio::spawn(run_cluster_controller(
        client.clone(),
        Some(NS.into()),
        ctx,
        async {
            let _ = stop_rx.await;
        },
    ));

    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "millrace.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "demo", "namespace": NS},
        "spec": {"replicas": 3, "controllers": 3, "storage": {"size": "1Gi", "deleteClaim": true},
                 "rack": {}, "config": {"min.insync.replicas": 2}}
    }))?;
    clusters.create(&PostParams::default(), &cluster).await?;

    // The StatefulSet controller makes the pods from what the operator applied.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let selector = "app.kubernetes.io/component=broker,millrace.io/cluster=demo";
    eventually("3 broker pods", || {
        let pods = pods.clone();
        async move {
            let l = pods.list(&ListParams::default().labels(selector)).await?;
            Ok((l.items.len() == 3).then_some(()))
        }
    })
    .await?;
    let c = eventually("a status with 3 brokers", || {
        let clusters = clusters.clone();
        async move {
            let c = clusters.get("demo").await?;
            Ok(c.status
                .as_ref()
                .is_some_and(|s| s.brokers.len() == 3)
                .then_some(c))
        }
    })
    .await?;
    assert_eq!(c.finalizers(), [FINALIZER]);
    assert_eq!(
        ready_reason(&c).as_deref(),
        Some("BrokersNotReady"),
        "no kubelet, so no broker is ready"
    );
    assert_eq!(
        c.status.as_ref().and_then(|s| s.observed_generation),
        c.metadata.generation
    );

    let uid = c.uid().context("uid")?;
    let sts: StatefulSet = Api::namespaced(client.clone(), NS)
        .get("demo-broker")
        .await?;
    assert_eq!(sts.owner_references()[0].uid, uid);
    assert_eq!(
        sts.spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref()),
        Some("OnDelete")
    );
    let managers: Vec<_> = sts
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"millrace-operator".to_string()),
        "{managers:?}"
    );
    let cm: ConfigMap = Api::namespaced(client.clone(), NS)
        .get("demo-broker-config")
        .await?;
    let server = cm
        .data
        .as_ref()
        .and_then(|d| d.get("server.properties"))
        .context("server.properties")?;
    assert!(server.contains("min.insync.replicas=2\n"));
    let svc: Service = Api::namespaced(client.clone(), NS)
        .get("demo-brokers")
        .await?;
    assert_eq!(svc.owner_references()[0].uid, uid);
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    crbs.get("millrace-broker-e2e-demo").await?;
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    eventually("a BrokersNotReady Event", || {
        let events = events.clone();
        async move {
            let l = events.list(&ListParams::default()).await?;
            Ok(l.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("BrokersNotReady"))
                .then_some(()))
        }
    })
    .await?;

    // An operator-owned key: refused as a condition, the objects stay as they were.
    clusters
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"config": {"log.dirs": "/tmp"}}})),
        )
        .await?;
    let c = eventually("Ready=False OperatorOwnedConfig", || {
        let clusters = clusters.clone();
        async move {
            let c = clusters.get("demo").await?;
            Ok((ready_reason(&c).as_deref() == Some("OperatorOwnedConfig")).then_some(c))
        }
    })
    .await?;
    let ready = c
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned())
        .context("Ready")?;
    assert_eq!(
        ready.message,
        "spec.config sets a key the operator manages: log.dirs; remove it"
    );
    assert_eq!(ready.observed_generation, c.metadata.generation);

    // Deletion: the finalizer removes what garbage collection cannot, then lets go.
    clusters.delete("demo", &DeleteParams::default()).await?;
    eventually("the Cluster to be gone", || {
        let clusters = clusters.clone();
        async move { Ok(clusters.get_opt("demo").await?.is_none().then_some(())) }
    })
    .await?;
    assert!(crbs.get_opt("millrace-broker-e2e-demo").await?.is_none());

    let _ = stop_tx.send(());
    tokio::time::timeout(DEADLINE, controller)
        .await
        .context("the controller stops on shutdown")??;
    Ok(())
}
