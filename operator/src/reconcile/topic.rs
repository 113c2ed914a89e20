//! The reconcile loop for `Topic`: Kafka topics kept as their resources say, through the Kafka
//! Admin protocol.
//!
//! One pass of [`reconcile_topic`]:
//! 1. the finalizer is added first, so deleting the resource always runs [`cleanup`];
//! 2. a resource that claims a Kafka topic an older resource already claims is a conflict: it
//!    gets `Ready=False`/`Degraded=True` reason `Conflict` and is not acted on;
//! 3. the Cluster is looked up; its internal bootstrap address is where the admin connects;
//! 4. [`sync_topic`] plans against the cluster's topic and carries the plan out (create, add
//!    partitions, incremental config changes). If the resource was already in sync for this
//!    generation, the actions are drift — a change someone made with another tool — and are
//!    reported with a `DriftCorrected` Warning Event as they are undone;
//! 5. the topic is read back and the status written (only when it changed): topic id,
//!    partitions, the topic's own configs, and conditions. Refusals (partition decrease,
//!    unknown config keys) and a replication-factor change (a reassignment, not done yet) are
//!    `Ready=False`/`Degraded=True` with the reason.
//!
//! A healthy Topic is looked at again every `resync`, which is how drift is found.
//!
//! Cleanup: with `deletionPolicy: Delete` the topic is deleted from the cluster (a topic already
//! gone is fine); `Retain` keeps it. A resource that lost a conflict never deletes the topic
//! (it is not its), and neither does any resource whose Cluster is gone or being deleted (the
//! topic goes with it).
//!
//! Kafka errors (cluster unreachable, a refused request) are reported in the status
//! (`Ready=False` reason `KafkaError` with the message) and retried; API errors are returned
//! and retried with backoff.

use super::{
    apply_status, error_chain,
    status::{ready_event, set_blocked, set_condition},
};
use crate::{
    http::Metrics,
    kafka::AdminSource,
    model::bootstrap_servers_for,
    topic::{
        losing_claims, sync_topic, Action as TopicAction, Claim, ConfigOp, DesiredTopic,
        ObservedTopic, Pending, Plan, TopicAdmin,
    },
};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::{
    runtime::{
        controller::{Action, Controller},
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{finalizer, Event as FinalizerEvent},
        reflector::{ObjectRef, Store},
        watcher,
    },
    Api, Client, Resource, ResourceExt,
};
use millrace_crds::{
    common::conditions::{DEGRADED, READY},
    topic::DeletionPolicy,
    Cluster, Topic, TopicStatus,
};
use std::{sync::Arc, time::Duration};
use tracing::{info, warn};

/// The finalizer on every Topic.
pub const TOPIC_FINALIZER: &str = "millrace.io/topic";
/// How soon a Topic is looked at again when the cluster could not be reached or the Cluster
/// does not exist yet.
const RETRY: Duration = Duration::from_secs(15);

/// Errors of one Topic pass that are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// Reading from the API server failed.
    #[error("failed to read {what}")]
    Read {
        /// What was being read.
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the status failed.
    #[error("failed to write the status of Topic {name}")]
    Status {
        /// The Topic.
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Deleting the Kafka topic failed (the finalizer stays, the deletion is retried).
    #[error("failed to delete topic {topic}: {message}")]
    Delete {
        /// The Kafka topic.
        topic: String,
        /// The Kafka error, with its causes.
        message: String,
    },
    /// The object has no namespace (never true for a namespaced resource from the API).
    #[error("Topic {0} has no namespace")]
    NoNamespace(String),
    /// Adding or removing the finalizer failed.
    #[error("finalizer step failed")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<TopicError>>),
}

/// What a Topic pass needs besides the object.
pub struct TopicContext<S: AdminSource> {
    /// The API client.
    pub client: Client,
    /// The Kafka admin of each cluster.
    pub admins: S,
    /// Every Topic the controller sees, for conflict detection.
    pub topics: Store<Topic>,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// The clock, replaceable so tests see fixed timestamps.
    pub now: fn() -> Timestamp,
    /// How often a healthy Topic is compared with its Kafka topic again (drift detection).
    pub resync: Duration,
}

impl<S: AdminSource> std::fmt::Debug for TopicContext<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicContext")
            .field("resync", &self.resync)
            .finish_non_exhaustive()
    }
}

/// Run the Topic controller for one namespace (`None`: all) until `shutdown` completes.
/// Reconciles on Topic changes and on changes of the Cluster a Topic names (so Topics waiting
/// for their Cluster go as soon as it appears).
pub async fn run_topic_controller<S: AdminSource>(
    client: Client,
    namespace: Option<String>,
    admins: S,
    reporter: Reporter,
    metrics: Arc<Metrics>,
    resync: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (topics, clusters): (Api<Topic>, Api<Cluster>) = match namespace.as_deref() {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let controller = Controller::new(topics, watcher::Config::default());
    let store = controller.store();
    let by_cluster = store.clone();
    let ctx = Arc::new(TopicContext {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        admins,
        topics: store,
        metrics,
        now: Timestamp::now,
        resync,
    });
    controller
        .watches(clusters, watcher::Config::default(), move |cluster| {
            let (name, ns) = (cluster.name_any(), cluster.namespace());
            by_cluster
                .state()
                .into_iter()
                .filter(|t| t.spec.cluster == name && t.namespace() == ns)
                .map(|t| ObjectRef::from_obj(&*t))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile_topic, topic_error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %error_chain(&e), "topic controller");
            }
        })
        .await;
}

/// One reconcile pass of a Topic.
pub async fn reconcile_topic<S: AdminSource>(
    topic: Arc<Topic>,
    ctx: Arc<TopicContext<S>>,
) -> Result<Action, TopicError> {
    let ns = topic
        .namespace()
        .ok_or_else(|| TopicError::NoNamespace(topic.name_any()))?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    let _timer = ctx.metrics.reconcile_started();
    finalizer(&api, TOPIC_FINALIZER, topic, |event| async {
        match event {
            FinalizerEvent::Apply(t) => apply(&t, &ctx).await,
            FinalizerEvent::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(|e| TopicError::Finalizer(Box::new(e)))
}

/// Back off and retry.
pub fn topic_error_policy<S: AdminSource>(
    topic: Arc<Topic>,
    error: &TopicError,
    ctx: Arc<TopicContext<S>>,
) -> Action {
    warn!(topic = %topic.name_any(), error = %error_chain(error), "topic reconcile failed");
    ctx.metrics.reconcile_failed();
    Action::requeue(RETRY)
}

/// The resource that keeps the Kafka topic `topic` claims, if it is not `topic` itself.
fn conflict_winner(topic: &Topic, all: &Store<Topic>) -> Option<String> {
    let ns = topic.namespace().unwrap_or_default();
    let claim = |t: &Topic| Claim {
        resource: t.name_any(),
        cluster: t.spec.cluster.clone(),
        topic: t.topic_name().to_string(),
        created: t
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(i64::MAX, |c| c.0.as_second()),
    };
    let mut claims: Vec<Claim> = all
        .state()
        .iter()
        .filter(|t| {
            t.namespace().as_deref() == Some(ns.as_str()) && t.name_any() != topic.name_any()
        })
        .map(|t| claim(t))
        .collect();
    // This pass's own copy of the resource, which the store may not have yet.
    claims.push(claim(topic));
    losing_claims(&claims).remove(&topic.name_any())
}

fn desired(topic: &Topic) -> DesiredTopic {
    DesiredTopic {
        name: topic.topic_name().to_string(),
        partitions: topic.spec.partitions,
        replicas: topic.spec.replicas,
        config: topic
            .spec
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    }
}

async fn apply<S: AdminSource>(topic: &Topic, ctx: &TopicContext<S>) -> Result<Action, TopicError> {
    let ns = topic.namespace().unwrap_or_default();
    let generation = topic.metadata.generation;
    let now = (ctx.now)();
    let current = topic.status.as_ref();

    if let Some(winner) = conflict_winner(topic, &ctx.topics) {
        let message = format!(
            "Kafka topic {} on Cluster {} is already managed by Topic {winner}; this resource is ignored until that one is deleted",
            topic.topic_name(),
            topic.spec.cluster
        );
        write_status(
            topic,
            ctx,
            blocked(current, generation, "Conflict", message, now),
        )
        .await?;
        return Ok(Action::requeue(ctx.resync));
    }

    let Some(cluster) = cluster_of(topic, ctx).await? else {
        let message = format!(
            "Cluster {} does not exist in namespace {ns}",
            topic.spec.cluster
        );
        write_status(
            topic,
            ctx,
            blocked(current, generation, "ClusterNotFound", message, now),
        )
        .await?;
        return Ok(Action::requeue(RETRY));
    };
    let bootstrap = match bootstrap_servers_for(&cluster, None) {
        Ok(b) => b,
        Err(e) => {
            let status = blocked(
                current,
                generation,
                "NoInternalListener",
                e.to_string(),
                now,
            );
            write_status(topic, ctx, status).await?;
            return Ok(Action::await_change());
        }
    };
    let admin = ctx.admins.admin(&bootstrap);
    let desired = desired(topic);

    let kafka_failed = |message: String| {
        ctx.metrics.reconcile_failed();
        blocked(current, generation, "KafkaError", message, now)
    };
    let plan = match sync_topic(&*admin, &desired).await {
        Ok(p) => p,
        Err(e) => {
            warn!(topic = %topic.name_any(), error = %error_chain(&e), "topic sync failed");
            write_status(topic, ctx, kafka_failed(error_chain(&e))).await?;
            return Ok(Action::requeue(RETRY));
        }
    };
    let was_in_sync = current.is_some_and(|s| {
        s.observed_generation == generation
            && super::status::condition(&s.conditions, READY).is_some_and(|c| c.status == "True")
    });
    if was_in_sync && !plan.actions.is_empty() {
        let note = format!(
            "topic {} was changed outside this resource; undone: {}",
            desired.name,
            describe_actions(&plan.actions)
        );
        warn!(topic = %topic.name_any(), %note, "drift");
        let ev = Event {
            type_: EventType::Warning,
            reason: "DriftCorrected".into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        publish(ctx, topic, ev).await;
    } else if !plan.actions.is_empty() {
        info!(topic = %topic.name_any(), actions = %describe_actions(&plan.actions), "topic changed");
    }

    let observed = match admin.describe(&desired.name).await {
        Ok(o) => o,
        Err(e) => {
            write_status(topic, ctx, kafka_failed(error_chain(&e))).await?;
            return Ok(Action::requeue(RETRY));
        }
    };
    let status = synced(current, generation, &desired, &plan, observed.as_ref(), now);
    write_status(topic, ctx, status).await?;
    Ok(Action::requeue(ctx.resync))
}

async fn cleanup<S: AdminSource>(
    topic: &Topic,
    ctx: &TopicContext<S>,
) -> Result<Action, TopicError> {
    let name = topic.topic_name().to_string();
    if topic.spec.deletion_policy == DeletionPolicy::Retain {
        info!(topic = %topic.name_any(), kafka_topic = %name, "deletionPolicy Retain: the topic stays");
        return Ok(Action::await_change());
    }
    if let Some(winner) = conflict_winner(topic, &ctx.topics) {
        info!(topic = %topic.name_any(), %winner, "lost a conflict: the topic is not this resource's to delete");
        return Ok(Action::await_change());
    }
    let cluster = cluster_of(topic, ctx).await?;
    let Some(cluster) = cluster.filter(|c| c.metadata.deletion_timestamp.is_none()) else {
        info!(topic = %topic.name_any(), "the Cluster is gone or going: nothing to delete");
        return Ok(Action::await_change());
    };
    let Ok(bootstrap) = bootstrap_servers_for(&cluster, None) else {
        return Ok(Action::await_change());
    };
    ctx.admins
        .admin(&bootstrap)
        .delete(&name)
        .await
        .map_err(|e| TopicError::Delete {
            topic: name.clone(),
            message: error_chain(&e),
        })?;
    info!(topic = %topic.name_any(), kafka_topic = %name, "deleted the topic (deletionPolicy Delete)");
    Ok(Action::await_change())
}

/// The Cluster the Topic names, if it exists.
async fn cluster_of<S: AdminSource>(
    topic: &Topic,
    ctx: &TopicContext<S>,
) -> Result<Option<Cluster>, TopicError> {
    let ns = topic.namespace().unwrap_or_default();
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    clusters
        .get_opt(&topic.spec.cluster)
        .await
        .map_err(|source| TopicError::Read {
            what: format!("Cluster {}", topic.spec.cluster),
            source,
        })
}

/// `create (12 partitions, RF 3)`, `partitions to 24`, `set retention.ms=…, delete x` — for
/// Events and logs.
fn describe_actions(actions: &[TopicAction]) -> String {
    actions
        .iter()
        .map(|a| match a {
            TopicAction::Create {
                partitions,
                replicas,
                ..
            } => format!("create ({partitions} partitions, replication factor {replicas})"),
            TopicAction::AddPartitions { total, .. } => format!("partitions to {total}"),
            TopicAction::AlterConfigs { ops, .. } => ops
                .iter()
                .map(|op| match op {
                    ConfigOp::Set { key, value } => format!("set {key}={value}"),
                    ConfigOp::Delete { key } => format!("reset {key}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The status of a Topic that cannot be acted on: `Ready=False`, `Degraded=True`, both with
/// `reason`; what the status said about the topic stays.
pub fn blocked(
    current: Option<&TopicStatus>,
    generation: Option<i64>,
    reason: &str,
    message: String,
    now: Timestamp,
) -> TopicStatus {
    let mut s = current.cloned().unwrap_or_default();
    s.observed_generation = generation;
    set_blocked(&mut s.conditions, reason, message, generation, now);
    s
}

/// The status after a sync: what the cluster reports, and whether that is what the spec asks.
pub fn synced(
    current: Option<&TopicStatus>,
    generation: Option<i64>,
    desired: &DesiredTopic,
    plan: &Plan,
    observed: Option<&ObservedTopic>,
    now: Timestamp,
) -> TopicStatus {
    let mut s = current.cloned().unwrap_or_default();
    s.observed_generation = generation;
    s.topic_name = Some(desired.name.clone());
    s.topic_id = observed
        .map(|o| o.topic_id.clone())
        .filter(|id| !id.is_empty());
    s.partitions = observed.map(|o| o.partitions);
    s.observed_config = observed
        .map(|o| {
            o.config
                .iter()
                .filter(|(_, c)| c.source == crate::topic::ConfigSource::Topic)
                .map(|(k, c)| (k.clone(), c.value.clone()))
                .collect()
        })
        .unwrap_or_default();

    let mut problems: Vec<(&str, String)> = plan
        .refusals
        .iter()
        .map(|r| (r.reason(), r.to_string()))
        .collect();
    problems.extend(plan.pending.iter().map(|p| match p {
        Pending::ReplicasChange { from, to } => (
            "ReplicasChangePending",
            format!(
                "replication factor change from {from} to {to} needs a partition reassignment, which this operator version cannot do yet"
            ),
        ),
    }));
    if let Some((reason, _)) = problems.first() {
        let reason = reason.to_string();
        let message = problems
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        set_blocked(&mut s.conditions, &reason, message, generation, now);
    } else {
        let message = format!(
            "topic {} has {} partitions and the configs of the spec",
            desired.name, desired.partitions
        );
        set_condition(
            &mut s.conditions,
            READY,
            true,
            "Synced",
            message,
            generation,
            now,
        );
        set_condition(
            &mut s.conditions,
            DEGRADED,
            false,
            "AsExpected",
            "the topic is as the spec says".into(),
            generation,
            now,
        );
    }
    s
}

async fn write_status<S: AdminSource>(
    topic: &Topic,
    ctx: &TopicContext<S>,
    status: TopicStatus,
) -> Result<(), TopicError> {
    if topic.status.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_status(&ctx.client, topic, &status)
        .await
        .map_err(|source| TopicError::Status {
            name: topic.name_any(),
            source,
        })?;
    let old = topic.status.as_ref().map(|s| s.conditions.as_slice());
    if let Some(ev) = ready_event(old, &status.conditions) {
        publish(ctx, topic, ev).await;
    }
    Ok(())
}

/// An Event is a courtesy: failing to publish one does not fail the pass.
async fn publish<S: AdminSource>(ctx: &TopicContext<S>, topic: &Topic, ev: Event) {
    if let Err(e) = ctx.recorder.publish(&ev, &topic.object_ref(&())).await {
        warn!(topic = %topic.name_any(), error = %e, "failed to publish event");
    }
}

#[cfg(test)]
mod tests;
