//! One function per reconcile step; each applies the model's objects with server-side apply.

use super::{Error, FIELD_MANAGER};
use crate::model::ClusterModel;
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Pod, Service, ServiceAccount},
        policy::v1::PodDisruptionBudget,
        rbac::v1::ClusterRoleBinding,
    },
    NamespaceResourceScope,
};
use kube::{
    api::{ListParams, Patch, PatchParams},
    Api, Client, Resource,
};
use serde::{de::DeserializeOwned, Serialize};
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

pub(super) async fn pod_disruption_budget(
    client: &Client,
    m: &ClusterModel,
) -> Result<PodDisruptionBudget, Error> {
    apply_namespaced(client, m.namespace(), &m.desired_pod_disruption_budget()).await
}

pub(super) async fn stateful_set(client: &Client, m: &ClusterModel) -> Result<StatefulSet, Error> {
    apply_namespaced(client, m.namespace(), &m.desired_stateful_set()).await
}

pub(super) async fn broker_pods(client: &Client, m: &ClusterModel) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), m.namespace());
    api.list(&ListParams::default().labels(&m.label_selector_string()))
        .await
        .map(|l| l.items)
        .map_err(|source| Error::Read {
            what: "the broker pods",
            source,
        })
}
