//! The Kafka side of topic reconciliation: [`TopicAdmin`] over the Kafka protocol
//! (`millrace-client`), one [`ClusterAdmin`] per cluster address.
//!
//! Batching, so thousands of Topic resources do not cost thousands of round trips:
//! - **reads** come from a per-cluster snapshot of every topic (one Metadata request for all
//!   topics and one DescribeConfigs request for all their configs). A snapshot serves describes
//!   for [`SNAPSHOT_MAX_AGE`], and is retaken after any write of ours, so a pass always sees its
//!   own changes;
//! - **creates and partition increases** go through a queue: while one CreateTopics (or
//!   CreatePartitions) request is in flight, the ones that arrive wait and then leave together
//!   in the next request. Nothing waits on a timer: a lone change goes out at once.
//!
//! Config changes are one IncrementalAlterConfigs per topic; they are rare and small.

use crate::topic::{Action, ConfigOp, ConfigSource, ObservedConfig, ObservedTopic, TopicAdmin};
use millrace_client::{
    admin::{AlterConfigOp, ConfigResource, NewTopic},
    Admin, Client, ClientConfig,
};
use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};

/// How long a snapshot of the cluster's topics serves describes when nothing was written.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(5);
/// The most items one batched request carries.
const MAX_BATCH: usize = 500;
/// Kafka's TOPIC_ALREADY_EXISTS.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// The error of every Kafka call here. Shared, because one failed batched request is the
/// answer of every caller whose item was in it.
pub type KafkaError = Arc<millrace_client::Error>;

/// Where the Topic controller gets the admin of a cluster. The real one is [`KafkaAdmins`];
/// scenario tests substitute an in-memory one.
pub trait AdminSource: Send + Sync + 'static {
    /// The admin of one cluster.
    type Admin: TopicAdmin + 'static;
    /// The admin for the cluster at `bootstrap` (`host:port,...`), shared by every caller.
    fn admin(&self, bootstrap: &str) -> Arc<Self::Admin>;
}

/// One [`ClusterAdmin`] per bootstrap address, created on first use; clones share them.
#[derive(Clone, Debug, Default)]
pub struct KafkaAdmins {
    admins: Arc<Mutex<HashMap<String, Arc<ClusterAdmin>>>>,
}

impl KafkaAdmins {
    /// Lets go of the admin of the cluster at `bootstrap`, for a deleted Cluster. Its queue
    /// workers and its connection end once the last pass still holding it is done.
    pub fn forget(&self, bootstrap: &str) {
        self.admins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(bootstrap);
    }
}

impl AdminSource for KafkaAdmins {
    type Admin = ClusterAdmin;

    fn admin(&self, bootstrap: &str) -> Arc<ClusterAdmin> {
        let mut admins = self
            .admins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        admins
            .entry(bootstrap.to_string())
            .or_insert_with(|| ClusterAdmin::new(bootstrap))
            .clone()
    }
}

type Reply = oneshot::Sender<Result<(), KafkaError>>;

/// The admin of one cluster: a lazily connected client, the topic snapshot and the write
/// queues.
#[derive(Debug)]
pub struct ClusterAdmin {
    bootstrap: String,
    connection: Arc<AsyncMutex<Option<Admin>>>,
    snapshot: AsyncMutex<Option<Snapshot>>,
    /// Bumped after every write; a snapshot taken before the latest bump is stale.
    writes: Arc<AtomicU64>,
    creates: mpsc::UnboundedSender<(NewTopic, Reply)>,
    grows: mpsc::UnboundedSender<((String, i32), Reply)>,
}

#[derive(Debug)]
struct Snapshot {
    taken: Instant,
    writes_seen: u64,
    topics: Arc<BTreeMap<String, ObservedTopic>>,
}

impl ClusterAdmin {
    /// An admin for the cluster at `bootstrap`; connects on first use, so creating one never
    /// fails. Needs a Tokio runtime (it starts the two queue workers).
    pub fn new(bootstrap: &str) -> Arc<ClusterAdmin> {
        let connection: Arc<AsyncMutex<Option<Admin>>> = Arc::default();
        let writes: Arc<AtomicU64> = Arc::default();
        let (creates, create_rx) = mpsc::unbounded_channel();
        let (grows, grow_rx) = mpsc::unbounded_channel();
        let bootstrap = bootstrap.to_string();
        tokio::spawn(drain(
            create_rx,
            bootstrap.clone(),
            connection.clone(),
            writes.clone(),
            |admin, batch: Vec<NewTopic>| async move {
                let results = admin.create_topics(&batch, false).await?;
                Ok(results
                    .into_iter()
                    .map(|(n, r)| {
                        let r = match r {
                            // Someone else (or a pass from before a restart) created it: the
                            // next describe shows it, and the plan goes on from there.
                            Err(millrace_client::Error::Kafka { code, .. })
                                if code.code() == TOPIC_ALREADY_EXISTS =>
                            {
                                Ok(())
                            }
                            other => other.map(|_| ()),
                        };
                        (n, r)
                    })
                    .collect())
            },
        ));
        tokio::spawn(drain(
            grow_rx,
            bootstrap.clone(),
            connection.clone(),
            writes.clone(),
            |admin, batch: Vec<(String, i32)>| async move {
                admin.create_partitions(&batch, false).await
            },
        ));
        Arc::new(ClusterAdmin {
            bootstrap,
            connection,
            snapshot: AsyncMutex::new(None),
            writes,
            creates,
            grows,
        })
    }

    /// The cluster's topics (internal ones excluded), from a fresh-enough snapshot.
    pub async fn topics(&self) -> Result<Arc<BTreeMap<String, ObservedTopic>>, KafkaError> {
        let mut snapshot = self.snapshot.lock().await;
        let writes = self.writes.load(Ordering::Acquire);
        if let Some(s) = snapshot.as_ref() {
            if s.writes_seen == writes && s.taken.elapsed() < SNAPSHOT_MAX_AGE {
                return Ok(s.topics.clone());
            }
        }
        let admin = connect(&self.bootstrap, &self.connection).await?;
        let listed = admin.list_topics(false).await.map_err(Arc::new)?;
        let names: Vec<String> = listed.iter().map(|t| t.name.clone()).collect();
        let mut configs = admin
            .describe_topic_configs(&names)
            .await
            .map_err(Arc::new)?;
        let mut topics = BTreeMap::new();
        for t in listed {
            // A topic deleted between the two requests has no configs: leave it out, as the
            // next snapshot will.
            let Some(Ok(entries)) = configs.remove(&t.name) else {
                continue;
            };
            let config = entries
                .into_iter()
                .filter_map(|e| {
                    let source = match e.source {
                        millrace_client::admin::ConfigSource::DynamicTopic => ConfigSource::Topic,
                        _ => ConfigSource::Default,
                    };
                    Some((
                        e.name,
                        ObservedConfig {
                            value: e.value?,
                            source,
                        },
                    ))
                })
                .collect();
            topics.insert(
                t.name.clone(),
                ObservedTopic {
                    topic_id: t.id.map(|id| id.to_string()).unwrap_or_default(),
                    partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                    replicas: t
                        .partitions
                        .first()
                        .map_or(0, |p| i32::try_from(p.replicas.len()).unwrap_or(i32::MAX)),
                    config,
                },
            );
        }
        let topics = Arc::new(topics);
        *snapshot = Some(Snapshot {
            taken: Instant::now(),
            writes_seen: writes,
            topics: topics.clone(),
        });
        Ok(topics)
    }

    async fn queued<T>(
        &self,
        queue: &mpsc::UnboundedSender<(T, Reply)>,
        item: T,
    ) -> Result<(), KafkaError> {
        let (tx, rx) = oneshot::channel();
        let closed = || {
            Arc::new(millrace_client::Error::Protocol {
                addr: self.bootstrap.clone(),
                detail: "the admin's request queue stopped".into(),
            })
        };
        queue.send((item, tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

/// What the cluster itself says about its brokers and partitions, for the Cluster's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaView {
    /// The cluster id.
    pub cluster_id: Option<String>,
    /// Each registered (unfenced) broker's rack, by node id.
    pub racks: BTreeMap<i32, Option<String>>,
    /// Partitions whose in-sync replicas are fewer than their replicas, internal topics
    /// included.
    pub under_replicated_partitions: i32,
}

impl ClusterAdmin {
    /// The cluster as it reports itself: DescribeCluster and one Metadata request for every
    /// topic.
    pub async fn view(&self) -> Result<KafkaView, KafkaError> {
        let admin = connect(&self.bootstrap, &self.connection).await?;
        let described = admin.describe_cluster().await.map_err(Arc::new)?;
        let topics = admin.list_topics(true).await.map_err(Arc::new)?;
        let under = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.isr.len() < p.replicas.len())
            .count();
        Ok(KafkaView {
            cluster_id: described.cluster_id,
            racks: described
                .brokers
                .into_iter()
                .map(|b| (b.id, b.rack))
                .collect(),
            under_replicated_partitions: i32::try_from(under).unwrap_or(i32::MAX),
        })
    }
}

impl TopicAdmin for ClusterAdmin {
    type Error = KafkaError;

    async fn describe(&self, name: &str) -> Result<Option<ObservedTopic>, KafkaError> {
        Ok(self.topics().await?.get(name).cloned())
    }

    async fn execute(&self, action: &Action) -> Result<(), KafkaError> {
        match action {
            Action::Create {
                name,
                partitions,
                replicas,
                config,
            } => {
                let topic = NewTopic {
                    name: name.clone(),
                    partitions: *partitions,
                    replication_factor: i16::try_from(*replicas).unwrap_or(i16::MAX),
                    assignments: Vec::new(),
                    configs: config.clone(),
                };
                self.queued(&self.creates, topic).await
            }
            Action::AddPartitions { name, total } => {
                self.queued(&self.grows, (name.clone(), *total)).await
            }
            Action::AlterConfigs { name, ops } => {
                let admin = connect(&self.bootstrap, &self.connection).await?;
                let ops: Vec<AlterConfigOp> = ops
                    .iter()
                    .map(|op| match op {
                        ConfigOp::Set { key, value } => {
                            AlterConfigOp::Set(key.clone(), value.clone())
                        }
                        ConfigOp::Delete { key } => AlterConfigOp::Delete(key.clone()),
                    })
                    .collect();
                let result = admin
                    .alter_configs(&ConfigResource::Topic(name.clone()), &ops, false)
                    .await;
                self.writes.fetch_add(1, Ordering::AcqRel);
                result.map_err(Arc::new)
            }
        }
    }

    async fn delete(&self, name: &str) -> Result<(), KafkaError> {
        let admin = connect(&self.bootstrap, &self.connection).await?;
        let results = admin.delete_topics(&[name.to_string()]).await;
        self.writes.fetch_add(1, Ordering::AcqRel);
        match results.map_err(Arc::new)?.into_iter().next() {
            Some((_, Err(millrace_client::Error::Kafka { code, .. })))
                if code.code() == UNKNOWN_TOPIC_OR_PARTITION =>
            {
                Ok(())
            }
            Some((_, r)) => r.map_err(Arc::new),
            None => Ok(()),
        }
    }
}

/// The connected admin, connecting first if needed. A failed connect is not cached: the next
/// call tries again (the cluster may still be starting).
async fn connect(
    bootstrap: &str,
    connection: &AsyncMutex<Option<Admin>>,
) -> Result<Admin, KafkaError> {
    let mut conn = connection.lock().await;
    if let Some(a) = conn.as_ref() {
        return Ok(a.clone());
    }
    let mut config = ClientConfig::new(bootstrap);
    config.client_id = "millrace-operator".into();
    // A reconcile pass should report an unreachable cluster in seconds, not minutes.
    config.api_timeout = Duration::from_secs(20);
    config.request_timeout = Duration::from_secs(15);
    config.connect_timeout = Duration::from_secs(5);
    let admin = Admin::new(Client::connect(config).await.map_err(Arc::new)?);
    *conn = Some(admin.clone());
    Ok(admin)
}

/// A queue worker: takes whatever is queued (up to [`MAX_BATCH`]), sends it as one request,
/// answers each caller with its own item's result, and repeats.
async fn drain<T, F, Fut>(
    mut rx: mpsc::UnboundedReceiver<(T, Reply)>,
    bootstrap: String,
    connection: Arc<AsyncMutex<Option<Admin>>>,
    writes: Arc<AtomicU64>,
    send: F,
) where
    T: Send + 'static,
    F: Fn(Admin, Vec<T>) -> Fut + Send + 'static,
    Fut:
        Future<Output = millrace_client::Result<Vec<(String, millrace_client::Result<()>)>>> + Send,
{
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<T>, Vec<Reply>) = batch.into_iter().unzip();
        let outcome = match connect(&bootstrap, &connection).await {
            Ok(admin) => send(admin, items).await.map_err(Arc::new),
            Err(e) => Err(e),
        };
        writes.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(results) => {
                for (reply, (_, r)) in replies.into_iter().zip(results) {
                    let _ = reply.send(r.map_err(Arc::new));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_forgotten_admin_ends_its_workers() {
        let admins = KafkaAdmins::default();
        // Nothing listens here; the admin connects only when asked, and is never asked.
        let admin = admins.admin("127.0.0.1:9");
        assert!(Arc::ptr_eq(&admin, &admins.admin("127.0.0.1:9")));
        // The two queue workers hold the connection slot while they run.
        let connection = Arc::downgrade(&admin.connection);
        assert_eq!(connection.strong_count(), 3);

        admins.forget("127.0.0.1:9");
        assert!(!Arc::ptr_eq(&admin, &admins.admin("127.0.0.1:9")));
        admins.forget("127.0.0.1:9");
        drop(admin);
        let deadline = Instant::now() + Duration::from_secs(5);
        while connection.strong_count() > 0 {
            assert!(
                Instant::now() < deadline,
                "the workers still run: {} holders of the connection",
                connection.strong_count()
            );
            tokio::task::yield_now().await;
        }
        assert!(admins.admins.lock().expect("lock").is_empty());
    }
}
