//! The broker's state: configuration, the hosted partitions as the metadata image assigns
//! them, and the operations that change them (topic creation and deletion, config changes,
//! producer ids), which go through the active controller.
//!
//! # Start-up ([`Broker::open`])
//! 1. Read each log dir's clean-shutdown marker and checkpoints, then delete the marker, so that a
//!    crash from here on is recognised at the next start; remove directories left behind by an
//!    interrupted topic deletion.
//! 2. Join the metadata quorum ([`crate::cluster::node`]): open the Raft log, start Raft and the
//!    controller listener.
//! 3. Reconcile with the image the local metadata log holds: open every replica assigned to this
//!    broker (recovering its log if the shutdown was not clean). Later images are reconciled as
//!    they are applied ([`Broker::reconcile`]).
//! 4. Register with the active controller and heartbeat; `/readyz` turns ready once unfenced.
//!
//! # Shutdown ([`Broker::shutdown`])
//! Close every log (flush, producer-state snapshot), write the checkpoints, then write the
//! clean-shutdown marker last: its presence promises that everything before it is on disk.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use kafka_protocol::ResponseError;
use millrace_log::{checkpoint, Log, LogError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    cluster::{
        controller::{ControllerError, ControllerReply, ControllerRequest, CreatedTopic, NewTopic},
        image::{ConfigResource, Endpoint, MetadataImage, Registration, TopicImage},
        node::ClusterNode,
    },
    config::{self, BrokerConfig, ConfigError, Properties},
    coordinator::group::{GroupConfig, GroupCoordinator, OFFSETS_TOPIC},
    metrics::Metrics,
    partition::{Partition, TopicPartition},
};

const CLEAN_SHUTDOWN: &str = ".kafka_cleanshutdown";
const RECOVERY_POINTS: &str = "recovery-point-offset-checkpoint";
const LOG_START_OFFSETS: &str = "log-start-offset-checkpoint";
const HIGH_WATERMARKS: &str = "replication-offset-checkpoint";
/// (topic, partition, offset) rows of a Kafka offset checkpoint file.
type OffsetEntries = Vec<(String, i32, i64)>;
/// Producer ids are reserved from the controller in blocks.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Longest topic name Kafka allows.
const MAX_TOPIC_NAME: usize = 249;
/// How long a metadata change may take to reach this broker's image after it was committed.
const APPLY_DEADLINE: Duration = Duration::from_secs(10);

/// Errors of broker-level operations; [`crate::handlers::error`] maps them to Kafka codes.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The topic does not exist.
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// The topic already exists.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// The topic name is not one Kafka allows.
    #[error("invalid topic name `{name}`: {reason}")]
    InvalidTopic {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A bad partition count.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A bad replication factor or assignment.
    #[error("{0}")]
    InvalidReplication(String),
    /// A config was rejected.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Topic deletion is disabled.
    #[error("topic deletion is disabled (delete.topic.enable=false)")]
    DeletionDisabled,
    /// An internal topic may not be changed this way.
    #[error("topic `{0}` is internal to the broker and cannot be changed by clients")]
    InternalTopic(String),
    /// The controller refused the change, or none was reachable.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// A log operation failed.
    #[error("log of {tp}")]
    Log {
        /// The partition.
        tp: TopicPartition,
        /// The cause.
        #[source]
        source: LogError,
    },
    /// Other I/O.
    #[error("failed to {op} {path}")]
    Io {
        /// What.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A topic as this broker sees it: its metadata, and the partitions it hosts.
#[derive(Debug)]
pub struct Topic {
    /// The metadata.
    pub record: TopicImage,
    /// By index: `Some` where this broker holds a replica.
    pub partitions: Vec<Option<Arc<Partition>>>,
}

impl Topic {
    /// The hosted partition with this index, leader or not.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .and_then(Option::as_ref)
    }

    /// The partition with this index if this broker leads it; else the Kafka error a client
    /// gets (UNKNOWN_TOPIC_OR_PARTITION for an index the topic lacks, NOT_LEADER_OR_FOLLOWER
    /// when another broker leads it or it is offline).
    pub fn led(&self, index: i32) -> Result<&Arc<Partition>, ResponseError> {
        if index < 0 || index >= self.record.partition_count() {
            return Err(ResponseError::UnknownTopicOrPartition);
        }
        match self.partition(index) {
            Some(p) if p.is_leader() => Ok(p),
            _ => Err(ResponseError::NotLeaderOrFollower),
        }
    }

    /// Hosted partitions.
    pub fn hosted(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.partitions.iter().flatten()
    }
}

/// What start-up read from the log dirs, used whenever a partition's existing log is opened.
#[derive(Debug, Default)]
struct Startup {
    clean: HashMap<PathBuf, bool>,
    recovery: HashMap<TopicPartition, i64>,
    starts: HashMap<TopicPartition, i64>,
    hws: HashMap<TopicPartition, i64>,
}

/// The broker.
#[derive(Debug)]
pub struct Broker {
    /// Static configuration.
    pub config: BrokerConfig,
    /// Metrics registry.
    pub metrics: Metrics,
    /// The group coordinator (consumer groups and committed offsets).
    pub groups: GroupCoordinator,
    /// This process in the cluster: Raft, the controller, registration.
    pub cluster: Arc<ClusterNode>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    topic_names: RwLock<HashMap<Uuid, String>>,
    startup: Startup,
    /// One image reconciliation at a time.
    reconciling: Mutex<()>,
    /// The image the hosted partitions were last reconciled with.
    applied: RwLock<Arc<MetadataImage>>,
    reconciled: watch::Sender<u64>,
    /// (next id to hand out, end of the reserved block).
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError {
    let path = path.to_path_buf();
    move |source| BrokerError::Io { op, path, source }
}

/// Topics the broker itself writes (`__consumer_offsets`): clients may read them, but not
/// produce to, delete or grow them, as in Kafka.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// Kafka's topic-name rule: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    let invalid = |reason| {
        Err(BrokerError::InvalidTopic {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("`.` and `..` are not allowed");
    }
    if name.len() > MAX_TOPIC_NAME {
        return invalid("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A reply the request kind did not expect: a bug between two versions of this binary.
fn unexpected(reply: ControllerReply) -> BrokerError {
    BrokerError::Controller(ControllerError::Unavailable(format!(
        "unexpected controller reply {reply:?}"
    )))
}

impl Broker {
    /// Opens the broker: reads the log dirs' shutdown state, joins the metadata quorum, and
    /// opens the partitions the metadata assigns to this broker, in the order the module docs
    /// give.
    pub async fn open(config: BrokerConfig) -> Result<Arc<Broker>, anyhow::Error> {
        for dir in &config.log_dirs {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        let startup = read_startup(&config)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let cluster = ClusterNode::start(&config, shutdown_rx.clone()).await?;
        let (reconciled, _) = watch::channel(0);
        let broker = Arc::new(Broker {
            metrics: Metrics::new(),
            groups: GroupCoordinator::new(GroupConfig::from_broker(&config)),
            cluster,
            topics: RwLock::new(HashMap::new()),
            topic_names: RwLock::new(HashMap::new()),
            startup,
            reconciling: Mutex::new(()),
            applied: RwLock::new(Arc::new(MetadataImage::default())),
            reconciled,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            ready: AtomicBool::new(false),
            shutdown,
            config,
        });
        // Partitions the local metadata already knows open before clients are served.
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.reconcile())
            .await
            .map_err(|e| anyhow::anyhow!("reconcile task failed: {e}"))?;
        tokio::spawn(reconcile_loop(broker.clone(), shutdown_rx.clone()));
        if broker.config.cluster.broker {
            let endpoints = broker
                .config
                .advertised
                .iter()
                .map(|l| Endpoint {
                    name: l.name.clone(),
                    host: l.host.clone(),
                    port: l.port,
                })
                .collect();
            let registration = Registration {
                broker_id: broker.config.node_id,
                incarnation_id: broker.cluster.incarnation_id,
                rack: broker.config.rack.clone(),
                endpoints,
                controller_address: (!broker.config.cluster.controller)
                    .then(|| broker.config.cluster.controller_listener.clone())
                    .flatten(),
            };
            tokio::spawn(broker.cluster.clone().run_broker(
                registration,
                broker.reconciled.subscribe(),
                shutdown_rx,
            ));
        }
        Ok(broker)
    }

    /// The shutdown signal every background task of this broker watches.
    pub fn shutdown_signal(&self) -> &watch::Sender<bool> {
        &self.shutdown
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> String {
        self.cluster.image.current().cluster_id.clone()
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.cluster.image.current()
    }

    /// The dynamic broker-level config defaults.
    pub fn dynamic_broker_configs(&self) -> Properties {
        self.applied.read().dynamic_broker_props()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        let name = self.topic_names.read().get(&id).cloned()?;
        self.topic(&name)
    }

    /// A hosted partition by topic name and index.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.topic(topic)?.partition(partition).cloned()
    }

    /// Whether the cluster has this partition (wherever it is hosted).
    pub fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.topic(topic)
            .is_some_and(|t| (0..t.record.partition_count()).contains(&partition))
    }

    /// All topics, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.topics.read().values().cloned().collect();
        v.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        v
    }

    /// Every hosted partition.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.topics
            .read()
            .values()
            .flat_map(|t| t.hosted().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Marks the broker's listeners up (after start-up) or down (during shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// `/readyz`: listeners up, and — for a broker — registered, unfenced and caught up with
    /// the metadata log up to its own unfencing; a controller-only node once it knows a leader.
    pub fn is_ready(&self) -> bool {
        if !self.ready.load(Ordering::SeqCst) {
            return false;
        }
        if !self.config.cluster.broker {
            return self.cluster.leader().is_some();
        }
        let epoch = self.cluster.broker_epoch();
        epoch != 0
            && self
                .applied
                .read()
                .brokers
                .get(&self.config.node_id)
                .is_some_and(|b| b.epoch == epoch && !b.fenced)
    }

    /// The metadata index this broker's partitions reflect.
    pub fn reconciled_index(&self) -> u64 {
        *self.reconciled.borrow()
    }

    async fn wait_reconciled(&self, index: u64) -> Result<(), BrokerError> {
        let mut rx = self.reconciled.subscribe();
        let reached = tokio::time::timeout(APPLY_DEADLINE, rx.wait_for(|i| *i >= index))
            .await
            .is_ok_and(|r| r.is_ok());
        match reached {
            true => Ok(()),
            false => Err(BrokerError::Controller(ControllerError::Unavailable(format!(
                "the change was committed at metadata index {index}, but this broker has not applied it yet"
            )))),
        }
    }

    /// Sends a request to the active controller and waits until this broker has applied what
    /// it wrote, so the client that asked sees its change in the next response.
    async fn submit(&self, request: ControllerRequest) -> Result<ControllerReply, BrokerError> {
        let envelope = self.cluster.submit(request).await?;
        if let ControllerReply::Failed(e) = envelope.reply {
            return Err(e.into());
        }
        self.wait_reconciled(envelope.index).await?;
        Ok(envelope.reply)
    }

    /// Validates a topic creation here, then has the controller place and create it (unless
    /// `validate_only`, where the controller only checks it).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignments: Vec<(i32, Vec<i32>)>,
        configs: &BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<CreatedTopic, BrokerError> {
        validate_topic_name(name)?;
        let dynamic = self.dynamic_broker_configs();
        let default = |key: &str, fallback: i64| {
            self.config
                .broker_value(&dynamic, key)
                .0
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(fallback)
        };
        let (partitions, replication_factor) = if assignments.is_empty() {
            let p = if partitions == -1 {
                default("num.partitions", 1) as i32
            } else {
                partitions
            };
            let rf = if replication_factor == -1 {
                default("default.replication.factor", 1) as i16
            } else {
                replication_factor
            };
            if p < 1 {
                return Err(BrokerError::InvalidPartitions(format!(
                    "number of partitions must be at least 1, got {p}"
                )));
            }
            if rf < 1 {
                return Err(BrokerError::InvalidReplication(format!(
                    "replication factor must be at least 1, got {rf}"
                )));
            }
            (p, rf)
        } else {
            (-1, -1)
        };
        for (k, v) in configs {
            config::validate_topic_config(k, v)?;
        }
        if self.topic(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        let reply = self
            .submit(ControllerRequest::CreateTopics {
                topics: vec![NewTopic {
                    name: name.to_string(),
                    partitions,
                    replication_factor,
                    assignments,
                    configs: configs.clone(),
                }],
                validate_only,
            })
            .await?;
        match reply {
            ControllerReply::Topics(mut results) if results.len() == 1 => {
                let created = results.remove(0)?;
                if !validate_only {
                    tracing::info!(
                        topic = name,
                        partitions = created.partitions,
                        replication_factor = created.replication_factor,
                        "created topic"
                    );
                }
                Ok(created)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a topic on every broker (each removes its replicas when it applies the record).
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, BrokerError> {
        if !self.config.delete_topic_enable {
            return Err(BrokerError::DeletionDisabled);
        }
        if is_internal_topic(name) {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        match self
            .submit(ControllerRequest::DeleteTopics {
                names: vec![name.to_string()],
            })
            .await?
        {
            ControllerReply::Deleted(mut results) if results.len() == 1 => {
                let id = results.remove(0)?;
                tracing::info!(topic = name, "deleted topic");
                Ok(id)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Grows a topic to `count` partitions, placed like new topics unless `assignments` gives
    /// the new partitions' replicas.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        // The coordinator maps groups to partitions by count: growing the topic would move them.
        if is_internal_topic(name) {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        self.submit(ControllerRequest::CreatePartitions {
            topic: name.to_string(),
            count,
            assignments,
            validate_only,
        })
        .await
        .map(|_| ())
    }

    /// Replaces (`incremental == false`) or edits a topic's config overrides. `changes` maps a
    /// key to `Some(value)` to set or `None` to delete. Every broker applies them to its logs
    /// when it applies the records.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        for (k, v) in changes {
            match v {
                Some(v) => config::validate_topic_config(k, v)?,
                None => {
                    if config::topic_def(k).is_none() {
                        config::validate_topic_config(k, "")?;
                    }
                }
            }
        }
        if self.topic(name).is_none() {
            return Err(BrokerError::UnknownTopic(name.to_string()));
        }
        if validate_only {
            return Ok(());
        }
        self.submit(ControllerRequest::AlterConfigs {
            resource: ConfigResource::Topic(name.to_string()),
            changes: changes.to_vec(),
            incremental,
        })
        .await
        .map(|_| ())
    }

    /// Changes cluster-wide dynamic broker defaults; every broker's logs pick them up.
    pub async fn alter_broker_configs(
        &self,
        changes: &[(String, Option<String>)],
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        for (k, v) in changes {
            config::validate_dynamic_broker_config(
                k,
                v.as_deref()
                    .unwrap_or_else(|| config::def(k).and_then(|d| d.default).unwrap_or("")),
            )?;
        }
        if validate_only {
            return Ok(());
        }
        self.submit(ControllerRequest::AlterConfigs {
            resource: ConfigResource::BrokerDefault,
            changes: changes.to_vec(),
            incremental,
        })
        .await
        .map(|_| ())
    }

    /// Hands out a new producer id from a block the controller reserved for this broker, so an
    /// id is never reused, across restarts and across brokers.
    pub async fn allocate_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            match self
                .submit(ControllerRequest::AllocateProducerIds {
                    broker_id: self.config.node_id,
                    count: PRODUCER_ID_BLOCK,
                })
                .await?
            {
                ControllerReply::ProducerIds { first, count } => *ids = (first, first + count),
                other => return Err(unexpected(other)),
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Creates `__consumer_offsets` if it does not exist yet (as Kafka does on the first
    /// FindCoordinator), with `offsets.topic.replication.factor` capped at the live brokers.
    pub async fn ensure_offsets_topic(&self) -> Result<(), BrokerError> {
        if self.topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let gc = self.groups.config();
        let live = self.image().live_brokers().count().max(1);
        let rf = usize::try_from(gc.offsets_topic_replication_factor)
            .unwrap_or(1)
            .clamp(1, live) as i16;
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                gc.offsets_topic_segment_bytes.to_string(),
            ),
        ]);
        match self
            .create_topic(
                OFFSETS_TOPIC,
                gc.offsets_topic_partitions,
                rf,
                Vec::new(),
                &configs,
                false,
            )
            .await
        {
            Ok(_) | Err(BrokerError::TopicExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------------ applying metadata

    /// Brings the hosted partitions in line with the current image: opens the replicas
    /// assigned to this broker, sets leadership and configs, removes deleted topics' data,
    /// and hands the coordinator its `__consumer_offsets` partitions. Blocking (disk I/O).
    pub fn reconcile(&self) {
        let _turn = self.reconciling.lock();
        let image = self.cluster.image.current();
        let previous = self.applied.read().clone();
        let me = self.config.node_id;
        let dynamic = image.dynamic_broker_props();
        let dynamic_changed = previous.broker_configs != image.broker_configs;
        let old = self.topics.read().clone();
        let mut topics = HashMap::new();
        for (name, t) in &image.topics {
            let before = old.get(name).filter(|o| o.record.id == t.id);
            let log_config = self.config.log_config(&dynamic, &t.overrides());
            let configs_changed =
                dynamic_changed || before.is_none_or(|b| b.record.configs != t.configs);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for (i, state) in t.partitions.iter().enumerate() {
                let index = i as i32;
                if !state.replicas.contains(&me) {
                    partitions.push(None);
                    continue;
                }
                let existing = before.and_then(|b| b.partition(index).cloned());
                let partition = match existing {
                    Some(p) => {
                        if configs_changed {
                            p.log.lock().set_config(log_config.clone());
                        }
                        Some(p)
                    }
                    None => match self.open_partition(t, index, &log_config) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            tracing::error!(topic = %name, partition = index, error = %crate::handlers::error::message(&e), "could not open partition");
                            None
                        }
                    },
                };
                if let Some(p) = &partition {
                    p.set_leadership(state.leader == me, state.leader_epoch);
                }
                partitions.push(partition);
            }
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    record: t.clone(),
                    partitions,
                }),
            );
        }
        for (name, gone) in &old {
            if topics
                .get(name)
                .is_none_or(|t| t.record.id != gone.record.id)
            {
                remove_partitions(gone);
            }
        }
        let hosted: usize = topics.values().map(|t| t.hosted().count()).sum();
        let offsets = topics.get(OFFSETS_TOPIC).map(|t| {
            t.partitions
                .iter()
                .map(|p| p.as_ref().filter(|p| p.is_leader()).cloned())
                .collect::<Vec<_>>()
        });
        *self.topic_names.write() = topics
            .values()
            .map(|t| (t.record.id, t.record.name.clone()))
            .collect();
        *self.topics.write() = topics;
        *self.applied.write() = image.clone();
        self.metrics.partitions.set(hosted as i64);
        if let Some(offsets) = offsets {
            self.groups.attach(offsets);
        }
        self.reconciled.send_replace(image.applied_index);
    }

    fn open_partition(
        &self,
        t: &TopicImage,
        index: i32,
        log_config: &millrace_log::LogConfig,
    ) -> Result<Arc<Partition>, BrokerError> {
        let tp = TopicPartition {
            topic: t.name.clone(),
            partition: index,
        };
        let existing = self
            .config
            .log_dirs
            .iter()
            .map(|d| d.join(tp.dir_name()))
            .find(|p| p.exists());
        let s = &self.startup;
        let (dir, clean) = match existing {
            // A directory from an earlier topic of the same name is not this topic's data.
            Some(dir) if read_partition_topic_id(&dir).is_some_and(|id| id != t.id) => {
                retire_dir(&dir, &tp);
                (self.pick_log_dir().join(tp.dir_name()), true)
            }
            Some(dir) => {
                let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
                let clean = s.clean.get(&parent).copied().unwrap_or(false);
                (dir, clean)
            }
            None => (self.pick_log_dir().join(tp.dir_name()), true),
        };
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        write_partition_metadata(&dir, t.id)?;
        let mut log = Log::open(
            &dir,
            log_config.clone(),
            s.recovery.get(&tp).copied(),
            s.starts.get(&tp).copied(),
            clean,
        )
        .map_err(|source| BrokerError::Log {
            tp: tp.clone(),
            source,
        })?;
        // Without followers, the leader's log is its own ISR: everything in it is committed.
        let leo = log.log_end_offset();
        log.set_high_watermark(s.hws.get(&tp).copied().unwrap_or(leo).max(leo));
        Ok(Arc::new(Partition::new(tp, t.id, log)))
    }

    /// The log dir holding the fewest partitions (Kafka's placement rule for new partitions).
    fn pick_log_dir(&self) -> PathBuf {
        let mut counts: HashMap<PathBuf, usize> = self
            .config
            .log_dirs
            .iter()
            .map(|d| (d.clone(), 0))
            .collect();
        for p in self.all_partitions() {
            if let Some(parent) = p.log.lock().dir().parent() {
                if let Some(c) = counts.get_mut(parent) {
                    *c += 1;
                }
            }
        }
        self.config
            .log_dirs
            .iter()
            .min_by_key(|d| counts.get(*d).copied().unwrap_or(0))
            .cloned()
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Writes the recovery-point, log-start-offset and high-watermark checkpoints of every log dir.
    pub fn write_checkpoints(&self) -> Result<(), BrokerError> {
        let mut per_dir: HashMap<PathBuf, [OffsetEntries; 3]> = HashMap::new();
        for p in self.all_partitions() {
            let log = p.log.lock();
            let parent = log
                .dir()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let e = per_dir.entry(parent).or_default();
            e[0].push((p.tp.topic.clone(), p.tp.partition, log.recovery_point()));
            e[1].push((p.tp.topic.clone(), p.tp.partition, log.log_start_offset()));
            e[2].push((p.tp.topic.clone(), p.tp.partition, log.high_watermark()));
        }
        for dir in &self.config.log_dirs {
            let entries = per_dir.remove(dir).unwrap_or_default();
            for (file, list) in [RECOVERY_POINTS, LOG_START_OFFSETS, HIGH_WATERMARKS]
                .into_iter()
                .zip(entries.iter())
            {
                checkpoint::write_offsets(&dir.join(file), list).map_err(|source| {
                    BrokerError::Log {
                        tp: TopicPartition {
                            topic: file.into(),
                            partition: -1,
                        },
                        source,
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Periodic housekeeping: roll segments past `segment.ms`, apply retention.
    pub fn apply_retention(&self) {
        let now = now_ms();
        for p in self.all_partitions() {
            let mut log = p.log.lock();
            if let Err(e) = log.maybe_roll(now) {
                tracing::warn!(partition = %p.tp, error = %e, "segment roll failed");
            }
            match log.apply_retention(now) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(partition = %p.tp, segments = n, "retention deleted segments")
                }
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "retention failed"),
            }
        }
    }

    /// The log cleaner's tick: one compaction pass over every log whose `cleanup.policy`
    /// includes `compact` and that is due (see [`millrace_log::cleaner`]). Each log's lock is
    /// held only while its pass chooses, swaps cleaned segments in and checkpoints.
    pub fn clean_logs(&self) {
        if !self.config.log_cleaner_enable {
            return;
        }
        for p in self.all_partitions() {
            if !p.log.lock().config().cleanup_compact {
                continue;
            }
            let now = now_ms();
            let m = &self.metrics.cleaner;
            match millrace_log::clean_shared(&p.log, now) {
                Ok(None) => {}
                Ok(Some(stats)) => {
                    m.cleanings.inc();
                    m.bytes_read.inc_by(stats.bytes_read);
                    m.bytes_written.inc_by(stats.bytes_written);
                    m.last_clean.set(now / 1000);
                    tracing::info!(partition = %p.tp, first_dirty = stats.first_dirty_offset, end = stats.end_offset, bytes_read = stats.bytes_read, bytes_written = stats.bytes_written, records_retained = stats.records_retained, records_read = stats.records_read, "cleaned log");
                }
                Err(e) => {
                    m.errors.inc();
                    tracing::warn!(partition = %p.tp, error = %e, "log cleaning failed");
                }
            }
        }
    }

    /// Periodic flush for logs with `flush.ms` set.
    pub fn flush_due(&self) {
        let now = now_ms();
        for p in self.all_partitions() {
            if let Err(e) = p.log.lock().flush_if_due(now) {
                tracing::error!(partition = %p.tp, error = %e, "flush failed");
            }
        }
    }

    /// Clean shutdown of the storage: close logs, checkpoint, then mark the dirs clean.
    pub fn shutdown(&self) -> Result<(), BrokerError> {
        self.set_ready(false);
        for p in self.all_partitions() {
            p.log.lock().close().map_err(|source| BrokerError::Log {
                tp: p.tp.clone(),
                source,
            })?;
        }
        self.write_checkpoints()?;
        for dir in &self.config.log_dirs {
            let marker = dir.join(CLEAN_SHUTDOWN);
            fs::File::create(&marker)
                .and_then(|f| f.sync_all())
                .map_err(io_err("create", &marker))?;
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("fsync", dir))?;
        }
        Ok(())
    }
}

/// Reads each log dir's clean-shutdown marker and checkpoints, then deletes the marker, so a
/// crash from here on is recognised at the next start; removes leftovers of interrupted
/// deletions.
fn read_startup(config: &BrokerConfig) -> Result<Startup, BrokerError> {
    let mut s = Startup::default();
    for dir in &config.log_dirs {
        let marker = dir.join(CLEAN_SHUTDOWN);
        s.clean.insert(dir.clone(), marker.exists());
        for (file, map) in [
            (RECOVERY_POINTS, &mut s.recovery),
            (LOG_START_OFFSETS, &mut s.starts),
            (HIGH_WATERMARKS, &mut s.hws),
        ] {
            let path = dir.join(file);
            if path.exists() {
                for (topic, partition, offset) in
                    checkpoint::read_offsets(&path).map_err(|source| BrokerError::Log {
                        tp: TopicPartition {
                            topic: file.into(),
                            partition: -1,
                        },
                        source,
                    })?
                {
                    map.insert(TopicPartition { topic, partition }, offset);
                }
            }
        }
        if marker.exists() {
            fs::remove_file(&marker).map_err(io_err("remove", &marker))?;
        }
        remove_deleted_dirs(dir);
    }
    Ok(s)
}

/// Reconciles the hosted partitions each time the metadata image advances.
async fn reconcile_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut applied = broker.cluster.image.subscribe();
    loop {
        tokio::select! {
            r = applied.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let b = broker.clone();
        if tokio::task::spawn_blocking(move || b.reconcile())
            .await
            .is_err()
        {
            tracing::error!("metadata reconciliation panicked");
        }
    }
}

/// Removes a deleted topic's local replicas: each directory is renamed `*-delete` first, so a
/// crash before removal leaves a directory start-up removes, never a live-looking partition.
fn remove_partitions(topic: &Topic) {
    for p in topic.hosted() {
        let dir = p.log.lock().dir().to_path_buf();
        retire_dir(&dir, &p.tp);
    }
    tracing::info!(topic = %topic.record.name, "removed the local replicas of a deleted topic");
}

fn retire_dir(dir: &Path, tp: &TopicPartition) {
    let doomed = dir.with_file_name(format!(
        "{}.{}-delete",
        tp.dir_name(),
        Uuid::new_v4().simple()
    ));
    if let Err(e) = fs::rename(dir, &doomed) {
        tracing::warn!(path = %dir.display(), error = %e, "could not rename deleted partition");
        return;
    }
    if let Err(e) = fs::remove_dir_all(&doomed) {
        tracing::warn!(path = %doomed.display(), error = %e, "could not remove deleted partition");
    }
}

/// The topic id in a partition directory's `partition.metadata`, if readable.
fn read_partition_topic_id(dir: &Path) -> Option<Uuid> {
    let text = fs::read_to_string(dir.join("partition.metadata")).ok()?;
    let id = text.lines().find_map(|l| l.strip_prefix("topic_id: "))?;
    crate::metadata::parse_kafka_uuid(id.trim())
}

/// Kafka's `partition.metadata` file: the topic id, so a recreated topic of the same name is
/// never confused with the old one's data.
fn write_partition_metadata(dir: &Path, id: Uuid) -> Result<(), BrokerError> {
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let path = dir.join("partition.metadata");
    let text = format!(
        "version: 0\ntopic_id: {}\n",
        crate::metadata::kafka_uuid_string(id)
    );
    if fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    fs::write(&path, text).map_err(io_err("write", &path))
}

/// Removes `*-delete` directories left by a topic deletion that a crash interrupted.
fn remove_deleted_dirs(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() && path.to_string_lossy().ends_with("-delete") {
            if let Err(err) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %err, "could not remove deleted partition");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_cannot_delete_or_grow_internal_topics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut props = Properties::default();
        props
            .set("log.dirs", &dir.path().display().to_string())
            .expect("valid");
        props
            .set("offsets.topic.num.partitions", "2")
            .expect("valid");
        let broker = Broker::open(BrokerConfig::from_props(props).expect("valid"))
            .await
            .expect("open");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !broker.image().is_live(1) {
            assert!(
                std::time::Instant::now() < deadline,
                "the broker never got unfenced"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        broker.ensure_offsets_topic().await.expect("created");
        let offsets = OFFSETS_TOPIC;
        assert!(broker.topic(offsets).is_some(), "created on demand");
        assert!(matches!(
            broker.delete_topic(offsets).await,
            Err(BrokerError::InternalTopic(_))
        ));
        assert!(matches!(
            broker.create_partitions(offsets, 10, None, false).await,
            Err(BrokerError::InternalTopic(_))
        ));
        assert_eq!(broker.topic(offsets).map(|t| t.partitions.len()), Some(2));
        broker.shutdown_signal().send_replace(true);
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
