//! Leader election over a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles.
//!
//! Expected flow:
//! 1. [`LeaderElector::acquire`] reads the Lease every `retry` until it is free, expired or ours,
//!    then writes itself in as holder. The write carries the Lease's `resourceVersion`, so of two
//!    replicas racing for an expired lease one gets a conflict and stays a follower.
//! 2. [`LeaderElector::hold`] renews every `renew` and returns once the lease is lost: someone
//!    else holds it, or no renewal succeeded for a whole lease duration. The caller then stops
//!    reconciling and exits, as client-go's leader election does: a restart is the simplest way
//!    to drop every piece of in-flight state.
//! 3. On shutdown [`LeaderElector::release`] clears the holder so a standby takes over at once
//!    instead of after the lease expires.
//!
//! Assumptions: clocks of the replicas agree to well within the lease duration (the Lease
//! records wall-clock renew times, as in Kubernetes' own components).

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    api::{Patch, PatchParams, PostParams},
    Api, Client,
};
use std::time::Duration;
use tracing::{info, warn};

/// What to do with a Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder let it expire): take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and is renewing.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decide from the Lease's spec (`None`: no Lease yet) what `me` should do at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match &spec.renew_time {
        Some(MicroTime(renewed)) if *renewed + duration > now => Decision::Follow {
            holder: holder.to_string(),
        },
        _ => Decision::Acquire,
    }
}

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the Lease failed.
    #[error("failed to {what} the leader Lease {name}")]
    Lease {
        /// What was being done.
        what: &'static str,
        /// The Lease.
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Takes and holds one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew: Duration,
    retry: Duration,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// An elector for Lease `namespace/name`, identifying as `identity` (the pod name).
    /// Timings are client-go's defaults: 15 s lease, renew every 5 s, retry every 2 s.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
            retry: Duration::from_secs(2),
        }
    }

    fn err(&self, what: &'static str) -> impl FnOnce(kube::Error) -> Error + '_ {
        move |source| Error::Lease {
            what,
            name: self.name.clone(),
            source,
        }
    }

    /// One attempt: take or renew the lease if [`decide`] allows. `Ok(true)` when we hold it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(self.err("read"))?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Another replica created it first.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err("create")(e)),
            };
        };
        let old = lease.spec.clone().unwrap_or_default();
        let (acquired, transitions) = match decision {
            Decision::Follow { .. } => return Ok(false),
            Decision::Renew => (
                old.acquire_time.map(|t| t.0).unwrap_or(now),
                old.lease_transitions.unwrap_or(0),
            ),
            Decision::Acquire => (now, old.lease_transitions.unwrap_or(0) + 1),
        };
        lease.spec = Some(self.spec(now, acquired, transitions));
        // replace() sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err("update")(e)),
        }
    }

    fn spec(&self, now: Timestamp, acquired: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.lease_duration.as_secs()).unwrap_or(15),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Wait until this replica holds the lease.
    pub async fn acquire(&self) {
        let mut said = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(false) if !said => {
                    info!(lease = %self.name, "another replica leads; standing by");
                    said = true;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %crate::reconcile::error_chain(&e), "leader election"),
            }
            tokio::time::sleep(self.retry).await;
        }
    }

    /// Renew until the lease is lost; returns when it is.
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.name, "lost the leader lease to another replica");
                    return;
                }
                Err(e) => {
                    warn!(error = %crate::reconcile::error_chain(&e), "failed to renew the leader lease");
                    if last_renewed.elapsed() >= self.lease_duration {
                        warn!(lease = %self.name, "leader lease expired without renewal");
                        return;
                    }
                }
            }
        }
    }

    /// Give the lease up (best effort) so a standby takes over without waiting for expiry.
    pub async fn release(&self) {
        let patch = serde_json::json!({"spec": {"holderIdentity": null, "renewTime": null}});
        if let Err(e) = self
            .api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(error = %e, "failed to release the leader lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid")
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t(renewed))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn no_lease_or_no_holder_is_free() {
        assert_eq!(decide(None, "a", t(100)), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", t(100)),
            Decision::Acquire
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&held_by("a", 0)), "a", t(1000)),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_lease_of_another_is_followed_until_it_expires() {
        let l = held_by("b", 100);
        assert_eq!(
            decide(Some(&l), "a", t(114)),
            Decision::Follow { holder: "b".into() }
        );
        assert_eq!(decide(Some(&l), "a", t(115)), Decision::Acquire);
    }
}
