//! The broker's state: configuration, the metadata image, the hosted partitions, and the
//! operations that change them (topic creation and deletion, config changes, producer ids).
//!
//! # Start-up
//! 1. Open the metadata store in the first log dir.
//! 2. Read each log dir's clean-shutdown marker and checkpoints, then delete the marker, so that a
//!    crash from here on is recognised at the next start.
//! 3. Open every partition of every topic (recovering its log if the shutdown was not clean) and
//!    remove directories left behind by an interrupted topic deletion.
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
    time::{SystemTime, UNIX_EPOCH},
};

use millrace_log::{checkpoint, Log, LogError};
use parking_lot::{Mutex, RwLock};
use uuid::Uuid;

use crate::{
    config::{self, BrokerConfig, ConfigError, Properties},
    coordinator::group::{self as groups, GroupConfig, GroupCoordinator},
    metadata::{MetadataError, MetadataImage, MetadataStore, TopicRecord},
    metrics::Metrics,
    partition::{Partition, TopicPartition},
};

const CLEAN_SHUTDOWN: &str = ".kafka_cleanshutdown";
const RECOVERY_POINTS: &str = "recovery-point-offset-checkpoint";
const LOG_START_OFFSETS: &str = "log-start-offset-checkpoint";
const HIGH_WATERMARKS: &str = "replication-offset-checkpoint";
/// (topic, partition, offset) rows of a Kafka offset checkpoint file.
type OffsetEntries = Vec<(String, i32, i64)>;
/// Producer ids are reserved in blocks so the metadata file is rewritten once per block.
const PRODUCER_ID_BLOCK: i64 = 1000;
/// Longest topic name Kafka allows.
const MAX_TOPIC_NAME: usize = 249;

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
    /// A log operation failed.
    #[error("log of {tp}")]
    Log {
        /// The partition.
        tp: TopicPartition,
        /// The cause.
        #[source]
        source: LogError,
    },
    /// The metadata store failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
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

/// A hosted topic: its record and its partitions.
#[derive(Debug)]
pub struct Topic {
    /// The metadata record.
    pub record: TopicRecord,
    /// Partitions, by index.
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// The partition with this index, if the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
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
    store: MetadataStore,
    image: RwLock<MetadataImage>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises metadata changes (create/delete/alter): each rewrites the metadata file.
    admin: Mutex<()>,
    /// (next id to hand out, end of the reserved block).
    producer_ids: Mutex<(i64, i64)>,
    ready: AtomicBool,
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
    name == crate::coordinator::group::OFFSETS_TOPIC
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

impl Broker {
    /// Opens the broker's state from its log dirs (see the module docs for the steps).
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        for dir in &config.log_dirs {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        let (store, image) = MetadataStore::open(&config.log_dirs[0])?;
        let dynamic = image.dynamic_broker_props();

        // Per log dir: was the last shutdown clean, and the checkpointed offsets.
        let mut clean = HashMap::new();
        let mut recovery = HashMap::new();
        let mut starts = HashMap::new();
        let mut hws = HashMap::new();
        for dir in &config.log_dirs {
            let marker = dir.join(CLEAN_SHUTDOWN);
            clean.insert(dir.clone(), marker.exists());
            for (file, map) in [
                (RECOVERY_POINTS, &mut recovery),
                (LOG_START_OFFSETS, &mut starts),
                (HIGH_WATERMARKS, &mut hws),
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

        let mut topics = HashMap::new();
        for record in image.topics.values() {
            let overrides = record.overrides();
            let mut partitions = Vec::new();
            for p in 0..record.partitions {
                let tp = TopicPartition {
                    topic: record.name.clone(),
                    partition: p,
                };
                let dir = find_partition_dir(&config.log_dirs, &tp);
                let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
                let was_clean = clean.get(&parent).copied().unwrap_or(false);
                let log = Log::open(
                    &dir,
                    config.log_config(&dynamic, &overrides),
                    recovery.get(&tp).copied(),
                    starts.get(&tp).copied(),
                    was_clean,
                )
                .map_err(|source| BrokerError::Log {
                    tp: tp.clone(),
                    source,
                })?;
                let mut log = log;
                // A single node is its own ISR: everything in the log is committed.
                let leo = log.log_end_offset();
                log.set_high_watermark(hws.get(&tp).copied().unwrap_or(leo).max(leo));
                write_partition_metadata(&dir, record.id)?;
                partitions.push(Arc::new(Partition::new(tp, record.id, log)));
            }
            topics.insert(
                record.name.clone(),
                Arc::new(Topic {
                    record: record.clone(),
                    partitions,
                }),
            );
        }
        let next_pid = image.next_producer_id;
        let broker = Arc::new(Broker {
            metrics: Metrics::new(),
            store,
            image: RwLock::new(image),
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            producer_ids: Mutex::new((next_pid, next_pid)),
            ready: AtomicBool::new(false),
            groups: GroupCoordinator::new(GroupConfig::from_broker(&config)),
            config,
        });
        broker.groups.attach(groups::ensure_offsets_topic(&broker)?);
        Ok(broker)
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> String {
        self.image.read().cluster_id.clone()
    }

    /// A copy of the metadata image.
    pub fn image(&self) -> MetadataImage {
        self.image.read().clone()
    }

    /// The dynamic broker-level config defaults.
    pub fn dynamic_broker_configs(&self) -> Properties {
        self.image.read().dynamic_broker_props()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .values()
            .find(|t| t.record.id == id)
            .cloned()
    }

    /// A partition by topic name and index.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.topic(topic)?.partition(partition).cloned()
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
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Marks the broker ready (after start-up) or not (during shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` reports ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Validates a topic creation and, unless `validate_only`, creates the topic: metadata
    /// first (durably), then the partition directories.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicRecord, BrokerError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.default_partitions()
        } else {
            partitions
        };
        if partitions < 1 {
            return Err(BrokerError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        let replication_factor = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if replication_factor < 1 {
            return Err(BrokerError::InvalidReplication(format!(
                "replication factor must be at least 1, got {replication_factor}"
            )));
        }
        if replication_factor > 1 {
            return Err(BrokerError::InvalidReplication(format!(
                "replication factor {replication_factor} is larger than the 1 available broker"
            )));
        }
        for (k, v) in configs {
            config::validate_topic_config(k, v)?;
        }
        let _guard = self.admin.lock();
        if self.topics.read().contains_key(name) {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor,
            configs: configs.clone(),
        };
        if validate_only {
            return Ok(record);
        }
        let mut image = self.image.read().clone();
        image.topics.insert(name.to_string(), record.clone());
        self.store.save(&image)?;
        let opened = self.open_partitions(&record, 0..partitions, &image);
        *self.image.write() = image;
        let parts = opened?;
        self.topics.write().insert(
            name.to_string(),
            Arc::new(Topic {
                record: record.clone(),
                partitions: parts,
            }),
        );
        self.metrics.partitions.add(i64::from(partitions));
        tracing::info!(topic = name, partitions, "created topic");
        Ok(record)
    }

    fn default_partitions(&self) -> i32 {
        let dynamic = self.dynamic_broker_configs();
        self.config
            .broker_value(&dynamic, "num.partitions")
            .0
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    fn open_partitions(
        &self,
        record: &TopicRecord,
        range: std::ops::Range<i32>,
        image: &MetadataImage,
    ) -> Result<Vec<Arc<Partition>>, BrokerError> {
        let log_config = self
            .config
            .log_config(&image.dynamic_broker_props(), &record.overrides());
        let mut out = Vec::new();
        for p in range {
            let tp = TopicPartition {
                topic: record.name.clone(),
                partition: p,
            };
            let dir = self.pick_log_dir().join(tp.dir_name());
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            write_partition_metadata(&dir, record.id)?;
            let log = Log::open(&dir, log_config.clone(), None, None, true).map_err(|source| {
                BrokerError::Log {
                    tp: tp.clone(),
                    source,
                }
            })?;
            out.push(Arc::new(Partition::new(tp, record.id, log)));
        }
        Ok(out)
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

    /// Deletes a topic: metadata first, then its directories are renamed `*-delete` and removed.
    pub fn delete_topic(&self, name: &str) -> Result<TopicRecord, BrokerError> {
        if !self.config.delete_topic_enable {
            return Err(BrokerError::DeletionDisabled);
        }
        if is_internal_topic(name) {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        let _guard = self.admin.lock();
        let Some(topic) = self.topics.read().get(name).cloned() else {
            return Err(BrokerError::UnknownTopic(name.to_string()));
        };
        let mut image = self.image.read().clone();
        image.topics.remove(name);
        self.store.save(&image)?;
        *self.image.write() = image;
        self.topics.write().remove(name);
        self.metrics.partitions.sub(topic.partitions.len() as i64);
        for p in &topic.partitions {
            let dir = p.log.lock().dir().to_path_buf();
            let doomed = dir.with_file_name(format!(
                "{}.{}-delete",
                p.tp.dir_name(),
                p.topic_id.simple()
            ));
            // Rename first: a crash before removal leaves a `-delete` dir that start-up removes,
            // never a live-looking partition of a deleted topic.
            if let Err(e) = fs::rename(&dir, &doomed) {
                tracing::warn!(path = %dir.display(), error = %e, "could not rename deleted partition");
                continue;
            }
            if let Err(e) = fs::remove_dir_all(&doomed) {
                tracing::warn!(path = %doomed.display(), error = %e, "could not remove deleted partition");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.record.clone())
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        // The coordinator maps groups to partitions by count: growing the topic would move them.
        if is_internal_topic(name) {
            return Err(BrokerError::InternalTopic(name.to_string()));
        }
        let _guard = self.admin.lock();
        let Some(topic) = self.topics.read().get(name).cloned() else {
            return Err(BrokerError::UnknownTopic(name.to_string()));
        };
        let current = topic.record.partitions;
        if count <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic `{name}` has {current} partitions; the new count {count} must be larger"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let mut image = self.image.read().clone();
        let mut record = topic.record.clone();
        record.partitions = count;
        image.topics.insert(name.to_string(), record.clone());
        self.store.save(&image)?;
        let new = self.open_partitions(&record, current..count, &image);
        *self.image.write() = image;
        let mut partitions = topic.partitions.clone();
        partitions.extend(new?);
        self.topics
            .write()
            .insert(name.to_string(), Arc::new(Topic { record, partitions }));
        self.metrics.partitions.add(i64::from(count - current));
        Ok(())
    }

    /// Replaces (`incremental == false`) or edits a topic's config overrides. `changes` maps a
    /// key to `Some(value)` to set or `None` to delete. Applied to the open logs at once.
    pub fn alter_topic_configs(
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
        let _guard = self.admin.lock();
        let Some(topic) = self.topics.read().get(name).cloned() else {
            return Err(BrokerError::UnknownTopic(name.to_string()));
        };
        let mut record = topic.record.clone();
        if !incremental {
            record.configs.clear();
        }
        for (k, v) in changes {
            match v {
                Some(v) => {
                    record.configs.insert(k.clone(), v.trim().to_string());
                }
                None => {
                    record.configs.remove(k);
                }
            }
        }
        if validate_only {
            return Ok(());
        }
        let mut image = self.image.read().clone();
        image.topics.insert(name.to_string(), record.clone());
        self.store.save(&image)?;
        let log_config = self
            .config
            .log_config(&image.dynamic_broker_props(), &record.overrides());
        *self.image.write() = image;
        for p in &topic.partitions {
            p.log.lock().set_config(log_config.clone());
        }
        self.topics.write().insert(
            name.to_string(),
            Arc::new(Topic {
                record,
                partitions: topic.partitions.clone(),
            }),
        );
        Ok(())
    }

    /// Changes cluster-wide dynamic broker defaults; every topic's logs pick them up.
    pub fn alter_broker_configs(
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
        let _guard = self.admin.lock();
        let mut image = self.image.read().clone();
        if !incremental {
            image.broker_configs.clear();
        }
        for (k, v) in changes {
            match v {
                Some(v) => {
                    image.broker_configs.insert(k.clone(), v.trim().to_string());
                }
                None => {
                    image.broker_configs.remove(k);
                }
            }
        }
        self.store.save(&image)?;
        let dynamic = image.dynamic_broker_props();
        *self.image.write() = image;
        for t in self.topics() {
            let lc = self.config.log_config(&dynamic, &t.record.overrides());
            for p in &t.partitions {
                p.log.lock().set_config(lc.clone());
            }
        }
        Ok(())
    }

    /// Hands out a new producer id, reserving a block in the metadata file when needed so an id
    /// is never reused after a restart.
    pub fn allocate_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock();
        if ids.0 >= ids.1 {
            let _guard = self.admin.lock();
            let mut image = self.image.read().clone();
            let start = image.next_producer_id.max(ids.0);
            image.next_producer_id = start + PRODUCER_ID_BLOCK;
            self.store.save(&image)?;
            *self.image.write() = image;
            *ids = (start, start + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
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

/// Where a partition's directory is: the log dir that has it, else the first.
fn find_partition_dir(dirs: &[PathBuf], tp: &TopicPartition) -> PathBuf {
    dirs.iter()
        .map(|d| d.join(tp.dir_name()))
        .find(|p| p.exists())
        .unwrap_or_else(|| dirs[0].join(tp.dir_name()))
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

    #[test]
    fn clients_cannot_delete_or_grow_internal_topics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut props = Properties::default();
        props
            .set("log.dirs", &dir.path().display().to_string())
            .expect("valid");
        props
            .set("offsets.topic.num.partitions", "2")
            .expect("valid");
        let broker = Broker::open(BrokerConfig::from_props(props).expect("valid")).expect("open");
        let offsets = crate::coordinator::group::OFFSETS_TOPIC;
        assert!(broker.topic(offsets).is_some(), "created at start-up");
        assert!(matches!(
            broker.delete_topic(offsets),
            Err(BrokerError::InternalTopic(_))
        ));
        assert!(matches!(
            broker.create_partitions(offsets, 10, false),
            Err(BrokerError::InternalTopic(_))
        ));
        assert_eq!(broker.topic(offsets).map(|t| t.partitions.len()), Some(2));
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
