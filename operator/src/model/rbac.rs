//! The brokers' identity and permissions.
//!
//! Brokers need the Kubernetes API for one thing only: the init step reads the label
//! `rack.topologyKey` of the node its pod runs on. Nodes are cluster-scoped, so that takes a
//! ClusterRole; the chart and `deploy/` ship one fixed ClusterRole ([`BROKER_CLUSTER_ROLE`],
//! `get` on nodes) and the operator binds each rack-aware cluster's ServiceAccount to it. No
//! namespaced Role is created because the brokers need no namespaced permission, and without
//! rack awareness the pods do not mount a token at all.

use super::{labels, ClusterModel};
use k8s_openapi::{
    api::{
        core::v1::ServiceAccount,
        rbac::v1::{ClusterRoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

/// The ClusterRole (shipped with the operator) that lets a broker's init step read nodes.
pub const BROKER_CLUSTER_ROLE: &str = "millrace-broker";

impl ClusterModel {
    /// The brokers' ServiceAccount.
    pub fn desired_service_account(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: self.meta(self.names().broker_set()),
            // Pods opt in (only rack-aware ones, for the init step), see the StatefulSet.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }
    }

    /// The binding of the brokers' ServiceAccount to [`BROKER_CLUSTER_ROLE`], when the cluster
    /// is rack-aware.
    ///
    /// Cluster-scoped, so it carries no owner reference (a namespaced owner of a cluster-scoped
    /// object is invalid); it is labelled with the Cluster's name and namespace and the
    /// reconciler's finalizer deletes it with the Cluster.
    pub fn desired_cluster_role_binding(&self) -> Option<ClusterRoleBinding> {
        self.spec.rack.as_ref()?;
        let mut l = self.labels();
        l.insert(labels::NAMESPACE.into(), self.namespace.clone());
        Some(ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(self.names().cluster_role_binding()),
                labels: Some(l),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: BROKER_CLUSTER_ROLE.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: self.names().broker_set(),
                namespace: Some(self.namespace.clone()),
                ..Subject::default()
            }]),
        })
    }
}
