//! The Millrace operator.
//!
//! Layout (the model/loop split of Strimzi, the scenario tests of controller-rs):
//! - [`model`]: pure functions from a custom resource to the Kubernetes objects it needs;
//! - [`topic`]: Kubernetes-free planning of topic changes (create, add partitions, config);
//! - [`reconcile`]: the loop that applies the model with server-side apply, keeps status and
//!   conditions, and owns the finalizer;
//! - [`leader`]: leader election over a coordination.k8s.io Lease, so only one replica acts;
//! - [`http`]: `/metrics` and `/healthz`.
//!
//! A reconcile of a `Cluster` goes: watch event → [`reconcile::reconcile_cluster`] →
//! [`model::ClusterModel::from_crd`] (refusals become a `Ready=False` condition) → one apply per
//! desired object → status patch.

#![deny(clippy::unwrap_used)]

pub mod http;
pub mod kafka;
pub mod leader;
pub mod model;
pub mod reconcile;
pub mod topic;

#[cfg(test)]
mod fixtures;
