//! The reconcile loop for `Cluster`.
//!
//! [`reconcile_cluster`] is one pass, written as the list of its steps (Strimzi's
//! `KafkaReconciler`). Expected flow:
//! 1. the finalizer is added before anything is created (kube's `finalizer` helper), so that a
//!    deletion always runs [`cleanup`];
//! 2. the broker pods are read (their readiness feeds the status) and, for external listeners,
//!    the addresses Kubernetes allocated (Services, and nodes for NodePort);
//! 3. [`ClusterModel::from_crd`] validates the spec; a refusal (an operator-owned config key, …)
//!    becomes `Ready=False`/`Degraded=True` with the refusal's reason and a Warning Event, and
//!    nothing is applied: the brokers keep their last good objects;
//! 4. each desired object is applied with server-side apply under one field manager
//!    ([`FIELD_MANAGER`]), forcing ownership of the fields we set;
//! 5. the status is computed from the StatefulSet the apply returned and the broker pods, and
//!    written only when it changed; a changed `Ready` condition is also an Event.
//!
//! Cleanup (the Cluster is being deleted): delete the cluster-scoped ClusterRoleBinding (it
//! cannot be garbage-collected through an owner reference), and the brokers' volume claims when
//! `storage.deleteClaim` is set. Everything namespaced goes by garbage collection.
//!
//! Errors: API errors are returned and retried with backoff by [`error_policy`]; refusals are not
//! errors (retrying cannot fix them) and wait for the next change of the resource.

pub mod status;
mod steps;
pub mod topic;

use crate::{
    http::Metrics,
    kafka::{AdminSource, KafkaAdmins, KafkaView},
    model::{bootstrap_servers_for, labels, ClusterModel, Defaults, Names},
};
use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service},
        rbac::v1::ClusterRoleBinding,
    },
    jiff::Timestamp,
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{
        controller::{Action, Controller},
        events::{Recorder, Reporter},
        finalizer::{finalizer, Event as FinalizerEvent},
        reflector::ObjectRef,
        watcher,
    },
    Api, Client, Resource, ResourceExt,
};
use millrace_crds::{common::conditions::READY, Cluster, ClusterStatus};
use std::{sync::Arc, time::Duration};
use tracing::{info, warn};

/// The one field manager every apply uses.
pub const FIELD_MANAGER: &str = "millrace-operator";
/// The finalizer on every Cluster.
pub const FINALIZER: &str = "millrace.io/cleanup";
/// How long a pass waits for the cluster to describe itself over Kafka.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a healthy cluster is looked at again without a watch event.
const RESYNC: Duration = Duration::from_secs(300);

/// Errors of one reconcile pass; each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Applying a desired object failed.
    #[error("failed to apply {kind} {name}")]
    Apply {
        /// The object's kind.
        kind: &'static str,
        /// The object's name.
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Reading observed state failed.
    #[error("failed to read {what}")]
    Read {
        /// What was being read.
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("failed to write the status of Cluster {name}")]
    Status {
        /// The Cluster.
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Deleting what garbage collection does not delete failed.
    #[error("failed to clean up {what} of Cluster {name}")]
    Cleanup {
        /// What was being deleted.
        what: &'static str,
        /// The Cluster.
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The object has no namespace (never true for a namespaced resource from the API).
    #[error("Cluster {0} has no namespace")]
    NoNamespace(String),
    /// Adding or removing the finalizer failed.
    #[error("finalizer step failed")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

/// What a reconcile pass needs besides the object.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Image defaults.
    pub defaults: Defaults,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// The clock, replaceable so tests see fixed timestamps.
    pub now: fn() -> Timestamp,
    /// The Kafka side, for the status fields only the cluster knows (cluster id, the brokers'
    /// registered racks, under-replicated partitions); `None` leaves them out.
    pub kafka: Option<KafkaAdmins>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context publishing Events as `reporter`.
    pub fn new(
        client: Client,
        defaults: Defaults,
        reporter: Reporter,
        metrics: Arc<Metrics>,
    ) -> Self {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            defaults,
            metrics,
            now: Timestamp::now,
            kafka: None,
        }
    }
}

/// Run the Cluster controller for one namespace (`None`: all) until `shutdown` completes:
/// reconciles on changes of Clusters and of the objects they own, and on broker pod changes
/// (readiness feeds the status).
pub async fn run_cluster_controller(
    client: Client,
    namespace: Option<String>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    let ours =
        watcher::Config::default().labels(&format!("{}=millrace-operator", labels::MANAGED_BY));
    let broker_pods = watcher::Config::default().labels(&format!(
        "{}=broker,{}",
        labels::COMPONENT,
        labels::CLUSTER
    ));
    Controller::new(api::<Cluster>(&client, ns), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, ns), ours.clone())
        .owns(api::<ConfigMap>(&client, ns), ours.clone())
        .owns(api::<Service>(&client, ns), ours)
        .watches(api::<Pod>(&client, ns), broker_pods, |pod| {
            let cluster = pod.labels().get(labels::CLUSTER)?.clone();
            Some(ObjectRef::<Cluster>::new(&cluster).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile_cluster, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %error_chain(&e), "controller");
            }
        })
        .await;
}

/// One reconcile pass of a Cluster.
pub async fn reconcile_cluster(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cluster.name_any()))?;
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    let _timer = ctx.metrics.reconcile_started();
    finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            FinalizerEvent::Apply(c) => apply(&c, &ctx).await,
            FinalizerEvent::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The controller's error policy: back off and retry. A failed step is usually transient (API
/// server restart, conflict); the resource itself was valid or the model would have refused it.
pub fn error_policy(cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(cluster = %cluster.name_any(), error = %error_chain(error), "reconcile failed");
    ctx.metrics.reconcile_failed();
    Action::requeue(Duration::from_secs(15))
}

async fn apply(cluster: &Cluster, ctx: &Context) -> Result<Action, Error> {
    let name = cluster.name_any();
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let names = Names::new(&name, &ns);
    let generation = cluster.metadata.generation;
    let client = &ctx.client;
    let now = (ctx.now)();

    let pods = steps::broker_pods(client, &names, &ns).await?;
    let observed = steps::observe_external(client, cluster, &names, &ns, &pods).await?;
    let model = match ClusterModel::from_crd(cluster, &ctx.defaults, &observed) {
        Ok(m) => m,
        Err(refusal) => {
            let status = status::refused(
                cluster.status.as_ref(),
                generation,
                refusal.reason(),
                refusal.to_string(),
                now,
            );
            write_status(cluster, ctx, status).await?;
            return Ok(Action::await_change());
        }
    };

    steps::service_account(client, &model).await?;
    steps::cluster_role_binding(client, &model).await?;
    steps::config_map(client, &model).await?;
    steps::services(client, &model).await?;
    let pdb = steps::pod_disruption_budget(client, &model).await?;
    let sts = steps::stateful_set(client, &model).await?;

    let kafka = kafka_view(cluster, ctx, &pods).await;
    let seen = status::Seen {
        sts: &sts,
        pods: &pods,
        kafka: kafka.as_ref(),
        pdb,
    };
    let status = status::applied(cluster.status.as_ref(), generation, &model, &seen, now);
    let ready = status::condition(&status.conditions, READY).is_some_and(|c| c.status == "True");
    write_status(cluster, ctx, status).await?;
    info!(cluster = %name, ready, "reconciled");
    Ok(if ready {
        Action::requeue(RESYNC)
    } else {
        // Broker pods and the StatefulSet are watched, so readiness changes trigger a pass;
        // this only bounds the wait if an event is missed.
        Action::requeue(Duration::from_secs(60))
    })
}

/// The cluster's own view of itself, once a broker is ready; `None` (and a log line) when it
/// cannot be had within [`KAFKA_TIMEOUT`]: the status then keeps what it said before.
async fn kafka_view(cluster: &Cluster, ctx: &Context, pods: &[Pod]) -> Option<KafkaView> {
    let admins = ctx.kafka.as_ref()?;
    if !pods.iter().any(status::pod_ready) {
        return None;
    }
    let bootstrap = bootstrap_servers_for(cluster, None).ok()?;
    match tokio::time::timeout(KAFKA_TIMEOUT, admins.admin(&bootstrap).view()).await {
        Ok(Ok(view)) => Some(view),
        Ok(Err(e)) => {
            warn!(cluster = %cluster.name_any(), error = %error_chain(&e), "could not describe the cluster over Kafka");
            None
        }
        Err(_) => {
            warn!(cluster = %cluster.name_any(), "describing the cluster over Kafka timed out");
            None
        }
    }
}

/// Write `status` if it differs from the current one, and publish an Event when `Ready`
/// changed (so `kubectl describe` tells the story without repeating it every pass).
async fn write_status(
    cluster: &Cluster,
    ctx: &Context,
    status: ClusterStatus,
) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let name = cluster.name_any();
    apply_status(&ctx.client, cluster, &status)
        .await
        .map_err(|source| Error::Status {
            name: name.clone(),
            source,
        })?;

    let old = cluster.status.as_ref().map(|s| s.conditions.as_slice());
    if let Some(ev) = status::ready_event(old, &status.conditions) {
        // An Event is a courtesy: failing to publish one must not fail the reconcile.
        if let Err(e) = ctx.recorder.publish(&ev, &cluster.object_ref(&())).await {
            warn!(cluster = %name, error = %e, "failed to publish event");
        }
    }
    Ok(())
}

async fn cleanup(cluster: &Cluster, ctx: &Context) -> Result<Action, Error> {
    let name = cluster.name_any();
    let ns = cluster.namespace().unwrap_or_default();
    if let (Some(admins), Ok(bootstrap)) = (&ctx.kafka, bootstrap_servers_for(cluster, None)) {
        admins.forget(&bootstrap);
    }
    let names = crate::model::Names::new(&name, &ns);
    let crbs: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    match crbs
        .delete(&names.cluster_role_binding(), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(source) => {
            return Err(Error::Cleanup {
                what: "the broker ClusterRoleBinding",
                name,
                source,
            })
        }
    }
    if cluster.spec.storage.delete_claim {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        let selector = format!(
            "{}={name},{}=broker",
            crate::model::labels::CLUSTER,
            crate::model::labels::COMPONENT
        );
        pvcs.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await
        .map_err(|source| Error::Cleanup {
            what: "the broker volume claims",
            name: name.clone(),
            source,
        })?;
        info!(cluster = %name, "deleted the brokers' volume claims (storage.deleteClaim)");
    }
    Ok(Action::await_change())
}

/// Server-side apply of `status` as the status of `object`, under [`FIELD_MANAGER`].
pub(crate) async fn apply_status<K>(
    client: &Client,
    object: &K,
    status: &impl serde::Serialize,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// `error: cause: cause` on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests;
