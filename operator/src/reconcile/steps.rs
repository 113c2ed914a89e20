//! One function per reconcile step; each applies the model's objects with server-side apply.

use super::{status::PdbApi, Error, FIELD_MANAGER};
use crate::model::{ClusterModel, Names, Observed};
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Node, Pod, Service, ServiceAccount},
        rbac::v1::ClusterRoleBinding,
    },
    NamespaceResourceScope,
};
use kube::{
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams},
    Api, Client, Resource,
};
use millrace_crds::{cluster::ListenerType, Cluster};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeSet;
use std::fmt::Debug;

/// Server-side apply `obj` in the model's namespace, forcing our field ownership: the operator is
/// the one writer of these objects, and a conflict means someone edited them by hand.
async fn apply_namespaced<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: kind_of::<K>(),
        name,
        source,
    })
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    // Resource::kind is a Cow built from a static str for every k8s-openapi type.
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(k) => k,
        std::borrow::Cow::Owned(_) => "object",
    }
}

pub(super) async fn service_account(
    client: &Client,
    m: &ClusterModel,
) -> Result<ServiceAccount, Error> {
    apply_namespaced(client, m.namespace(), &m.desired_service_account()).await
}

pub(super) async fn cluster_role_binding(client: &Client, m: &ClusterModel) -> Result<(), Error> {
    let Some(crb) = m.desired_cluster_role_binding() else {
        return Ok(());
    };
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let name = crb.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crb),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "ClusterRoleBinding",
        name,
        source,
    })?;
    Ok(())
}

pub(super) async fn config_map(client: &Client, m: &ClusterModel) -> Result<ConfigMap, Error> {
    apply_namespaced(client, m.namespace(), &m.desired_config_map()).await
}

pub(super) async fn services(client: &Client, m: &ClusterModel) -> Result<Vec<Service>, Error> {
    let mut all = vec![m.desired_headless_service()];
    all.extend(m.desired_bootstrap_service());
    all.extend(m.desired_external_services());
    let mut out = Vec::with_capacity(all.len());
    for svc in &all {
        out.push(apply_namespaced(client, m.namespace(), svc).await?);
    }
    Ok(out)
}

/// Apply the PodDisruptionBudget as `policy/v1`, or as `policy/v1beta1` on a server that has
/// only that (before Kubernetes 1.21; the fields are the same). A server with neither does not
/// stop the reconcile: the status reports it.
pub(super) async fn pod_disruption_budget(
    client: &Client,
    m: &ClusterModel,
) -> Result<PdbApi, Error> {
    let pdb = m.desired_pod_disruption_budget();
    let missing =
        |e: &Error| matches!(e, Error::Apply { source: kube::Error::Api(s), .. } if s.code == 404);
    match apply_namespaced(client, m.namespace(), &pdb).await {
        Ok(_) => return Ok(PdbApi::V1),
        Err(e) if missing(&e) => {}
        Err(e) => return Err(e),
    }
    let ar = ApiResource {
        group: "policy".into(),
        version: "v1beta1".into(),
        api_version: "policy/v1beta1".into(),
        kind: "PodDisruptionBudget".into(),
        plural: "poddisruptionbudgets".into(),
    };
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let mut obj = serde_json::to_value(&pdb).map_err(|e| Error::Apply {
        kind: "PodDisruptionBudget",
        name: name.clone(),
        source: kube::Error::SerdeError(e),
    })?;
    obj["apiVersion"] = "policy/v1beta1".into();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), m.namespace(), &ar);
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|source| Error::Apply {
            kind: "PodDisruptionBudget",
            name,
            source,
        });
    match applied {
        Ok(_) => Ok(PdbApi::V1beta1),
        Err(e) if missing(&e) => Ok(PdbApi::Unavailable),
        Err(e) => Err(e),
    }
}

pub(super) async fn stateful_set(client: &Client, m: &ClusterModel) -> Result<StatefulSet, Error> {
    apply_namespaced(client, m.namespace(), &m.desired_stateful_set()).await
}

/// The cluster's broker pods: their readiness feeds the status, their nodes the NodePort
/// addresses.
pub(super) async fn broker_pods(
    client: &Client,
    names: &Names,
    ns: &str,
) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&names.broker_selector()))
        .await
        .map(|l| l.items)
        .map_err(|source| Error::Read {
            what: "the broker pods",
            source,
        })
}

/// The external addresses Kubernetes allocated so far: the cluster's Services (for load-balancer
/// ingress and node ports) and, for NodePort listeners, the nodes the brokers run on. No request
/// at all for a cluster without external listeners.
pub(super) async fn observe_external(
    client: &Client,
    cluster: &Cluster,
    names: &Names,
    ns: &str,
    pods: &[Pod],
) -> Result<Observed, Error> {
    let listeners = &cluster.spec.listeners;
    if listeners.iter().all(|l| l.type_ == ListenerType::Internal) {
        return Ok(Observed::default());
    }
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let services = services
        .list(&ListParams::default().labels(&names.cluster_selector()))
        .await
        .map_err(|source| Error::Read {
            what: "the cluster's Services",
            source,
        })?
        .items;
    let mut nodes = Vec::new();
    if listeners.iter().any(|l| l.type_ == ListenerType::NodePort) {
        let node_names: BTreeSet<&str> = pods
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.as_deref())
            .collect();
        let api: Api<Node> = Api::all(client.clone());
        for n in node_names {
            if let Some(node) = api.get_opt(n).await.map_err(|source| Error::Read {
                what: "the brokers' nodes",
                source,
            })? {
                nodes.push(node);
            }
        }
    }
    Ok(Observed::from_objects(cluster, &services, pods, &nodes))
}
