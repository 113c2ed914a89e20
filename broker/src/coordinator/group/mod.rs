//! The group coordinator: Kafka's classic consumer-group protocol and committed offsets,
//! persisted in the compacted internal topic `__consumer_offsets`.
//!
//! # Layout
//! - [`state`]: one group's state machine (membership, generations, rebalances, offsets) —
//!   pure logic over an explicit clock and a [`GroupLog`], tested without I/O.
//! - [`member`]: a member and the JoinGroup/SyncGroup long-poll it may be waiting on.
//! - [`offsets`]: committed offsets and their retention rule.
//! - [`records`]: Kafka's `__consumer_offsets` key/value formats and `partitionFor`.
//! - this module: [`GroupCoordinator`] — the groups of this broker, the `__consumer_offsets`
//!   log they are written to, loading at start-up, timers, metrics.
//!
//! # The path of a JoinGroup
//! `handlers::join_group` turns the request into a [`JoinRequest`] and awaits
//! [`GroupCoordinator::join`]. That checks the coordinator is active, finds or creates the group,
//! and, under the group's mutex (never held across an await), runs `Group::join` with a oneshot
//! sender for the answer. The group answers at once (errors, MEMBER_ID_REQUIRED, a follower's
//! rejoin) or keeps the sender until the rebalance completes — on another member's request or
//! on a timer. After every step the group's next deadline is (re)registered, and the
//! coordinator's background task ([`run`]) runs `Group::tick` when it is due.
//!
//! # Persistence
//! Group metadata (after each completed rebalance) and offsets are records appended, under the
//! group's mutex, to partition `partition_for(group_id)` of `__consumer_offsets` before the
//! request is answered, so an acknowledged commit is in the log. Durability against power loss
//! follows the topic's `flush.*` settings, as in Kafka; a process crash loses nothing the log
//! accepted. At start-up [`GroupCoordinator::load`] replays every partition (the latest record
//! per key wins, tombstones delete) before the coordinator answers; until then group requests
//! get COORDINATOR_LOAD_IN_PROGRESS.
//!
//! # Not implemented
//! The KIP-848 consumer group protocol (ConsumerGroupHeartbeat, ConsumerGroupDescribe,
//! server-side assignors) and share groups (KIP-932) are not served: clients use the classic
//! protocol, which Kafka 4.x still supports. Transactional offset commits (TxnOffsetCommit)
//! come with the transaction coordinator.

pub mod member;
pub mod offsets;
pub mod records;
pub mod state;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use millrace_log::{batch, LogError};
use parking_lot::{Mutex, RwLock};
use prometheus::{Encoder as _, IntCounter, IntGauge, Registry, TextEncoder};
use tokio::sync::{oneshot, watch, Notify};

pub use offsets::CommittedOffset;
pub use records::{partition_for, OFFSETS_TOPIC};
pub use state::{Group, GroupState};

use crate::{
    broker::{now_ms, Broker},
    config::{BrokerConfig, Properties},
    partition::{Partition, TopicPartition},
};

/// Kafka's `GroupCoordinator.NewMemberJoinTimeoutMs`: how long a new member may wait in a join
/// phase before it is dropped (it will retry if it is still alive).
pub const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Longest string the `__consumer_offsets` records can hold (int16 lengths). Flexible requests
/// can carry longer ones; those are refused rather than stored truncated.
const MAX_STORED_STRING: usize = i16::MAX as usize;

/// Room left in a member id for the `-<uuid>` the coordinator appends.
const MAX_INSTANCE_ID: usize = MAX_STORED_STRING - 64;

/// Checks a group id: non-empty where the API needs one, and storable.
fn check_group_id(id: &str, allow_empty: bool) -> Result<(), GroupError> {
    if (id.is_empty() && !allow_empty) || id.len() > MAX_STORED_STRING {
        return Err(GroupError::InvalidGroupId);
    }
    Ok(())
}

/// Largest read while loading `__consumer_offsets`.
const LOAD_READ_BYTES: usize = 1 << 20;

/// The outcomes of group operations that clients see as Kafka error codes;
/// `handlers::error::group_error` maps them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Not started, failed to load, or the group was just removed: find the coordinator again.
    #[error("the group coordinator is not available")]
    CoordinatorNotAvailable,
    /// `__consumer_offsets` is still being loaded.
    #[error("the group coordinator is loading __consumer_offsets")]
    LoadInProgress,
    /// This broker stopped being the coordinator (it is shutting down).
    #[error("this broker is no longer the group coordinator")]
    NotCoordinator,
    /// Empty group id where one is required, or one too long to store.
    #[error("the group id is empty or longer than 32767 bytes")]
    InvalidGroupId,
    /// A field no valid request has (e.g. a `group.instance.id` too long to store).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The member id is not (or no longer) in the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The request's generation is not the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing: rejoin.
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// KIP-394: rejoin with the member id in this response.
    #[error("a member id is required; rejoin with the one given")]
    MemberIdRequired,
    /// KIP-345: another instance with the same `group.instance.id` has taken over.
    #[error("fenced by a newer instance with the same group.instance.id")]
    FencedInstanceId,
    /// The member's protocol type or protocols do not match the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// `session.timeout.ms` outside `group.{min,max}.session.timeout.ms`.
    #[error("session timeout outside group.min.session.timeout.ms..group.max.session.timeout.ms")]
    InvalidSessionTimeout,
    /// `group.max.size` reached.
    #[error("the group has reached group.max.size")]
    GroupMaxSizeReached,
    /// The group has members.
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// The group does not exist.
    #[error("the group does not exist")]
    GroupIdNotFound,
    /// OffsetDelete of a topic the group consumes.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// The commit is too large for one `__consumer_offsets` batch.
    #[error("the offset commit is too large")]
    InvalidCommitOffsetSize,
    /// Writing `__consumer_offsets` failed.
    #[error("could not write to __consumer_offsets: {0}")]
    Storage(String),
}

/// The coordinator's configuration, under Kafka's names.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions` (used when the topic is created).
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.segment.bytes` (used when the topic is created).
    pub offsets_topic_segment_bytes: i64,
    /// `offsets.topic.replication.factor` (used when the topic is created).
    pub offsets_topic_replication_factor: i32,
    /// `offsets.retention.minutes`.
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval: Duration,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout: Duration,
    /// `group.max.size`.
    pub max_size: usize,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
}

impl GroupConfig {
    /// Reads the coordinator's keys from the broker configuration.
    pub fn from_broker(config: &BrokerConfig) -> GroupConfig {
        let none = Properties::default();
        let long = |key: &str| -> i64 {
            config
                .broker_value(&none, key)
                .0
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let ms = |key: &str| Duration::from_millis(u64::try_from(long(key)).unwrap_or(0));
        GroupConfig {
            offsets_topic_partitions: i32::try_from(long("offsets.topic.num.partitions"))
                .unwrap_or(50)
                .max(1),
            offsets_topic_segment_bytes: long("offsets.topic.segment.bytes"),
            offsets_topic_replication_factor: i32::try_from(long(
                "offsets.topic.replication.factor",
            ))
            .unwrap_or(1)
            .max(1),
            offsets_retention: Duration::from_secs(
                u64::try_from(long("offsets.retention.minutes")).unwrap_or(0) * 60,
            ),
            offsets_retention_check_interval: ms("offsets.retention.check.interval.ms")
                .max(Duration::from_millis(1)),
            initial_rebalance_delay: ms("group.initial.rebalance.delay.ms"),
            min_session_timeout: ms("group.min.session.timeout.ms"),
            max_session_timeout: ms("group.max.session.timeout.ms"),
            max_size: usize::try_from(long("group.max.size")).unwrap_or(usize::MAX),
            // Stored as an int16-length string, like every string of the offsets records.
            offset_metadata_max_bytes: usize::try_from(long("offset.metadata.max.bytes"))
                .unwrap_or(4096)
                .min(MAX_STORED_STRING),
        }
    }
}

impl Default for GroupConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_topic_replication_factor: 1,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
            max_size: usize::MAX,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// A point in time, both monotonic (timers) and wall-clock (what records store).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For deadlines.
    pub instant: Instant,
    /// Ms since the Unix epoch, for commit and state timestamps.
    pub wall_ms: i64,
}

impl Now {
    /// The current time.
    pub fn current() -> Now {
        Now {
            instant: Instant::now(),
            wall_ms: now_ms(),
        }
    }
}

/// Where groups persist their records. The real one appends to `__consumer_offsets`; tests
/// record the writes (and can make them fail).
pub trait GroupLog: std::fmt::Debug + Send + Sync {
    /// Appends `(key, value)` records (a `None` value is a tombstone) for `group_id`, all or
    /// nothing, before returning.
    fn append(
        &self,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<(), GroupError>;
}

/// Counters the groups update (Kafka's `group-coordinator-metrics`).
#[derive(Debug, Clone)]
pub struct Counters {
    /// Rebalances started.
    pub rebalances: IntCounter,
    /// Rebalances completed (the group became Stable).
    pub completed_rebalances: IntCounter,
    /// Offsets committed.
    pub offset_commits: IntCounter,
    /// Offsets removed by retention.
    pub offset_expirations: IntCounter,
    /// Offsets removed by OffsetDelete and DeleteGroups.
    pub offset_deletions: IntCounter,
}

impl Counters {
    fn new(registry: Option<&Registry>) -> Counters {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric definition");
            if let Some(r) = registry {
                r.register(Box::new(c.clone()))
                    .expect("metric names are unique");
            }
            c
        };
        Counters {
            rebalances: counter(
                "kafka_coordinator_group_rebalances_total",
                "Rebalances started (group-coordinator-metrics group-rebalance-count)",
            ),
            completed_rebalances: counter(
                "kafka_coordinator_group_completed_rebalances_total",
                "Rebalances completed (group-coordinator-metrics group-completed-rebalance-count)",
            ),
            offset_commits: counter(
                "kafka_coordinator_group_offset_commits_total",
                "Offsets committed (group-coordinator-metrics offset-commit-count)",
            ),
            offset_expirations: counter(
                "kafka_coordinator_group_offset_expirations_total",
                "Offsets expired by offsets.retention.minutes (offset-expiration-count)",
            ),
            offset_deletions: counter(
                "kafka_coordinator_group_offset_deletions_total",
                "Offsets deleted by OffsetDelete or DeleteGroups (offset-deletion-count)",
            ),
        }
    }

    /// Counters registered nowhere, for tests.
    pub fn unregistered() -> Counters {
        Counters::new(None)
    }
}

/// What a group operation may use besides the group.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The time of the operation.
    pub now: Now,
    /// Configuration.
    pub config: &'a GroupConfig,
    /// Where records go.
    pub log: &'a dyn GroupLog,
    /// Metrics.
    pub counters: &'a Counters,
}

// ------------------------------------------------------------------------- request/response

/// A JoinGroup, decoded and with its version's semantics resolved.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id; empty on a first join.
    pub member_id: String,
    /// `group.instance.id` (v5+).
    pub group_instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address (`/ip`).
    pub client_host: String,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout: Duration,
    /// Protocol type.
    pub protocol_type: String,
    /// (name, metadata), in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a first join gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// v9+: the client understands `skip_assignment` (KIP-814).
    pub supports_skip_assignment: bool,
}

/// A member as the leader's JoinGroup answer lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub group_instance_id: Option<String>,
    /// Metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone)]
pub struct JoinResponse {
    /// The error, if any.
    pub error: Option<GroupError>,
    /// The member's id (also on MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// The generation joined; -1 on error.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// KIP-814: the leader must not assign (a static leader rejoined a Stable group).
    pub skip_assignment: bool,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An error answer.
    pub fn error(member_id: String, error: GroupError) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            member_id,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// A SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub group_instance_id: Option<String>,
    /// Generation.
    pub generation: i32,
    /// v5+: the protocol type the member believes in.
    pub protocol_type: Option<String>,
    /// v5+: the protocol name it believes in.
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// A member's assignment from SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAssignment {
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A SyncGroup answer.
pub type SyncResponse = Result<SyncAssignment, GroupError>;

/// One partition's offset in an OffsetCommit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    /// The offset.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Metadata ("" for none).
    pub metadata: String,
}

/// An OffsetCommit, after per-partition validation.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// Member id (empty for a simple consumer).
    pub member_id: String,
    /// Static id.
    pub group_instance_id: Option<String>,
    /// Generation (-1 for a simple consumer).
    pub generation: i32,
    /// v2–v4 `retention_time_ms` when not -1: the old explicit expiry.
    pub retention: Option<Duration>,
    /// What to commit.
    pub offsets: Vec<(TopicPartition, OffsetToCommit)>,
}

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type ("" for offsets-only groups).
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// A member in DescribeGroups.
#[derive(Debug, Clone)]
pub struct MemberSummary {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the selected protocol (Stable groups only).
    pub metadata: Bytes,
    /// Assignment (Stable groups only).
    pub assignment: Bytes,
}

/// A group in DescribeGroups.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    /// State.
    pub state: GroupState,
    /// Protocol type.
    pub protocol_type: String,
    /// Selected protocol (Stable groups only).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberSummary>,
}

// ------------------------------------------------------------------------ the offsets log

/// The `__consumer_offsets` partitions, as a [`GroupLog`].
#[derive(Debug, Default)]
struct OffsetsLog {
    /// By partition index; `Some` where this broker leads the partition.
    partitions: RwLock<Vec<Option<Arc<Partition>>>>,
}

/// Kafka's mapping of append errors for the coordinator (`GroupMetadataManager.storeOffsets`).
fn append_error(e: &LogError) -> GroupError {
    match e {
        LogError::RecordTooLarge { .. } => GroupError::InvalidCommitOffsetSize,
        other => GroupError::Storage(crate::handlers::error::message(other)),
    }
}

impl GroupLog for OffsetsLog {
    fn append(
        &self,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<(), GroupError> {
        if records.is_empty() {
            return Ok(());
        }
        let partition = {
            let partitions = self.partitions.read();
            let n = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
            usize::try_from(partition_for(group_id, n))
                .ok()
                .and_then(|i| partitions.get(i).cloned().flatten())
        };
        let Some(partition) = partition else {
            return Err(GroupError::NotCoordinator);
        };
        let batch: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now_ms,
                key: Some(key.clone()),
                value: value.clone(),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            batch.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| GroupError::Storage(e.to_string()))?;
        let result = {
            let mut log = partition.log.lock();
            let r = log.append_as_leader(&buf, partition.leader_epoch(), now_ms);
            if r.is_ok() {
                // A single node is the whole ISR: the write is committed once appended.
                let leo = log.log_end_offset();
                log.set_high_watermark(leo);
            }
            r
        };
        match result {
            Ok(_) => {
                partition.appended.notify_waiters();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(partition = %partition.tp, error = %e, "__consumer_offsets append failed");
                Err(append_error(&e))
            }
        }
    }
}

// --------------------------------------------------------------------------- the coordinator

const DETACHED: u8 = 0;
const LOADING: u8 = 1;
const ACTIVE: u8 = 2;
const STOPPED: u8 = 3;
const FAILED: u8 = 4;

/// Deadlines of groups, for the background task.
#[derive(Debug, Default)]
struct Timers {
    by_group: HashMap<String, Instant>,
    queue: BTreeSet<(Instant, String)>,
}

/// Scrape-time gauges (Kafka's `GroupMetadataManager` metrics).
#[derive(Debug)]
struct Gauges {
    groups: IntGauge,
    offsets: IntGauge,
    by_state: Vec<(GroupState, IntGauge)>,
}

/// This broker's group coordinator. See the module docs.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    /// DETACHED until `__consumer_offsets` is attached, LOADING until it is replayed, then
    /// ACTIVE; STOPPED at shutdown; FAILED if loading failed.
    status: AtomicU8,
    log: OffsetsLog,
    groups: RwLock<HashMap<String, Arc<Mutex<Group>>>>,
    timers: Mutex<Timers>,
    /// Woken when a deadline earlier than the background task's current one is registered.
    wake: Notify,
    /// Woken by the first [`GroupCoordinator::attach`].
    attached: Notify,
    counters: Counters,
    registry: Registry,
    gauges: Gauges,
}

impl GroupCoordinator {
    /// A coordinator with no offsets topic yet (see [`GroupCoordinator::attach`]).
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let gauges = Gauges {
            groups: gauge(
                "kafka_coordinator_group_groupmetadatamanager_num_groups",
                "Groups on this coordinator (GroupMetadataManager.NumGroups)",
            ),
            offsets: gauge(
                "kafka_coordinator_group_groupmetadatamanager_num_offsets",
                "Committed offsets held (GroupMetadataManager.NumOffsets)",
            ),
            by_state: [
                (
                    GroupState::PreparingRebalance,
                    "preparing_rebalance",
                    "NumGroupsPreparingRebalance",
                ),
                (
                    GroupState::CompletingRebalance,
                    "completing_rebalance",
                    "NumGroupsCompletingRebalance",
                ),
                (GroupState::Stable, "stable", "NumGroupsStable"),
                (GroupState::Dead, "dead", "NumGroupsDead"),
                (GroupState::Empty, "empty", "NumGroupsEmpty"),
            ]
            .into_iter()
            .map(|(state, suffix, jmx)| {
                (
                    state,
                    gauge(
                        &format!(
                            "kafka_coordinator_group_groupmetadatamanager_num_groups_{suffix}"
                        ),
                        &format!(
                            "Groups in state {} (GroupMetadataManager.{jmx})",
                            state.name()
                        ),
                    ),
                )
            })
            .collect(),
        };
        let counters = Counters::new(Some(&registry));
        GroupCoordinator {
            config,
            status: AtomicU8::new(DETACHED),
            log: OffsetsLog::default(),
            groups: RwLock::new(HashMap::new()),
            timers: Mutex::new(Timers::default()),
            wake: Notify::new(),
            attached: Notify::new(),
            counters,
            registry,
            gauges,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Attaches the `__consumer_offsets` partitions this broker leads (by index, `None` where
    /// another broker leads); the first attach starts loading. Leadership of the offsets
    /// partitions does not move between brokers yet (no replication), so later attaches only
    /// refresh the same set.
    pub fn attach(&self, partitions: Vec<Option<Arc<Partition>>>) {
        *self.log.partitions.write() = partitions;
        if self
            .status
            .compare_exchange(DETACHED, LOADING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.attached.notify_one();
        }
    }

    /// Whether this broker coordinates `group_id`: it leads the group's `__consumer_offsets`
    /// partition. Otherwise NOT_COORDINATOR sends the client to FindCoordinator again.
    pub fn check_owner(&self, group_id: &str) -> Result<(), GroupError> {
        let partitions = self.log.partitions.read();
        let n = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
        let owned = usize::try_from(partition_for(group_id, n))
            .ok()
            .and_then(|i| partitions.get(i))
            .is_some_and(Option::is_some);
        if owned {
            Ok(())
        } else {
            Err(GroupError::NotCoordinator)
        }
    }

    /// Whether group requests can be served now; the error says why not.
    pub fn check_available(&self) -> Result<(), GroupError> {
        match self.status.load(Ordering::SeqCst) {
            ACTIVE => Ok(()),
            LOADING => Err(GroupError::LoadInProgress),
            STOPPED => Err(GroupError::NotCoordinator),
            _ => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    fn env(&self, now: Now) -> Env<'_> {
        Env {
            now,
            config: &self.config,
            log: &self.log,
            counters: &self.counters,
        }
    }

    fn group(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups.read().get(id).cloned()
    }

    fn group_or_create(&self, id: &str, wall_ms: i64) -> Arc<Mutex<Group>> {
        if let Some(g) = self.group(id) {
            return g;
        }
        self.groups
            .write()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(id, wall_ms))))
            .clone()
    }

    /// Runs `f` on a group under its lock, then reschedules its timer and drops it if Dead.
    /// Availability is checked again under the lock, so nothing starts waiting after
    /// [`GroupCoordinator::shutdown`] has answered the waiters.
    fn with_group<R>(
        &self,
        arc: &Arc<Mutex<Group>>,
        f: impl FnOnce(&mut Group, &Env<'_>) -> R,
    ) -> Result<R, GroupError> {
        let now = Now::current();
        let (result, id, deadline, dead) = {
            let mut group = arc.lock();
            self.check_available()?;
            let env = self.env(now);
            let result = f(&mut group, &env);
            (
                result,
                group.id().to_string(),
                group.next_deadline(),
                group.state() == GroupState::Dead,
            )
        };
        if dead {
            // Dead is final, so nothing can have revived it since the lock was released.
            let mut groups = self.groups.write();
            if groups.get(&id).is_some_and(|g| Arc::ptr_eq(g, arc)) {
                groups.remove(&id);
            }
            drop(groups);
            self.schedule(&id, None);
        } else {
            self.schedule(&id, deadline);
        }
        Ok(result)
    }

    fn schedule(&self, id: &str, deadline: Option<Instant>) {
        let mut t = self.timers.lock();
        let earliest_before = t.queue.first().map(|(d, _)| *d);
        if let Some(old) = t.by_group.remove(id) {
            t.queue.remove(&(old, id.to_string()));
        }
        if let Some(d) = deadline {
            t.by_group.insert(id.to_string(), d);
            t.queue.insert((d, id.to_string()));
            if earliest_before.is_none_or(|e| d < e) {
                self.wake.notify_one();
            }
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.timers.lock().queue.first().map(|(d, _)| *d)
    }

    /// Runs the timers that are due.
    fn expire_due(&self) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut t = self.timers.lock();
            let mut due = Vec::new();
            while let Some((d, id)) = t.queue.first().cloned() {
                if d > now {
                    break;
                }
                t.queue.remove(&(d, id.clone()));
                t.by_group.remove(&id);
                due.push(id);
            }
            due
        };
        for id in due {
            if let Some(g) = self.group(&id) {
                let _ = self.with_group(&g, |group, env| group.tick(env));
            }
        }
    }

    // ---------------------------------------------------------------------------- loading

    /// Replays `__consumer_offsets` into memory, then activates the coordinator. Returns the
    /// number of groups loaded.
    pub fn load(&self) -> Result<usize, LogError> {
        let started = Instant::now();
        let partitions = self.log.partitions.read().clone();
        let mut loaded: HashMap<String, LoadedGroup> = HashMap::new();
        let mut records = 0usize;
        for p in partitions.iter().flatten() {
            let (mut offset, end) = {
                let log = p.log.lock();
                (log.log_start_offset(), log.high_watermark())
            };
            while offset < end {
                let bytes = p.log.lock().read(offset, LOAD_READ_BYTES, end, true)?;
                if bytes.is_empty() {
                    break;
                }
                for header in batch::batches(&bytes) {
                    let Ok(h) = header else {
                        break;
                    };
                    offset = h.last_offset() + 1;
                    if h.is_control() {
                        continue;
                    }
                    let mut one = Bytes::copy_from_slice(h.bytes());
                    match RecordBatchDecoder::decode(&mut one) {
                        Ok(set) => {
                            for r in set.records {
                                records += 1;
                                replay(&mut loaded, r.key.as_deref(), r.value.as_deref(), &p.tp);
                            }
                        }
                        Err(e) => tracing::warn!(partition = %p.tp, offset = h.base_offset(),
                            error = %e, "skipping undecodable batch in __consumer_offsets"),
                    }
                }
            }
        }
        let now = Instant::now();
        let mut groups = self.groups.write();
        for (id, g) in loaded {
            if g.metadata.is_none() && g.offsets.is_empty() {
                continue;
            }
            let group = Group::from_records(&id, g.metadata, g.offsets, now);
            let deadline = group.next_deadline();
            groups.insert(id.clone(), Arc::new(Mutex::new(group)));
            self.schedule(&id, deadline);
        }
        let count = groups.len();
        drop(groups);
        let _ = self
            .status
            .compare_exchange(LOADING, ACTIVE, Ordering::SeqCst, Ordering::SeqCst);
        tracing::info!(groups = count, records, elapsed = ?started.elapsed(), "loaded __consumer_offsets");
        Ok(count)
    }

    /// Stops the coordinator: every waiting JoinGroup/SyncGroup is answered NOT_COORDINATOR
    /// (clients look for the coordinator again), and later requests get the same.
    pub fn shutdown(&self) {
        self.status.store(STOPPED, Ordering::SeqCst);
        let all: Vec<Arc<Mutex<Group>>> = self.groups.read().values().cloned().collect();
        for g in all {
            g.lock().unload();
        }
    }

    // ------------------------------------------------------------------------ group APIs

    /// JoinGroup: waits until the member's join completes (or fails).
    pub async fn join(&self, req: JoinRequest) -> JoinResponse {
        let member_id = req.member_id.clone();
        match self.join_start(req) {
            Ok(rx) => rx
                .await
                .unwrap_or_else(|_| JoinResponse::error(member_id, GroupError::UnknownMemberId)),
            Err(e) => JoinResponse::error(member_id, e),
        }
    }

    fn join_start(&self, req: JoinRequest) -> Result<oneshot::Receiver<JoinResponse>, GroupError> {
        self.check_available()?;
        check_group_id(&req.group_id, false)?;
        self.check_owner(&req.group_id)?;
        if req
            .group_instance_id
            .as_ref()
            .is_some_and(|i| i.is_empty() || i.len() > MAX_INSTANCE_ID)
        {
            return Err(GroupError::InvalidRequest(
                "group.instance.id is empty or too long",
            ));
        }
        if req.session_timeout < self.config.min_session_timeout
            || req.session_timeout > self.config.max_session_timeout
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        // A group is created by a first join only: a member id for an unknown group is stale.
        let group = if req.member_id.is_empty() {
            self.group_or_create(&req.group_id, now_ms())
        } else {
            self.group(&req.group_id)
                .ok_or(GroupError::UnknownMemberId)?
        };
        let (tx, rx) = oneshot::channel();
        self.with_group(&group, |g, env| g.join(req, tx, env))?;
        Ok(rx)
    }

    /// SyncGroup: waits for the leader's assignment when the group is completing a rebalance.
    pub async fn sync(&self, req: SyncRequest) -> SyncResponse {
        let rx = self.sync_start(req)?;
        rx.await.unwrap_or(Err(GroupError::RebalanceInProgress))
    }

    fn sync_start(&self, req: SyncRequest) -> Result<oneshot::Receiver<SyncResponse>, GroupError> {
        self.check_available()?;
        check_group_id(&req.group_id, false)?;
        self.check_owner(&req.group_id)?;
        let group = self
            .group(&req.group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let (tx, rx) = oneshot::channel();
        self.with_group(&group, |g, env| g.sync(req, tx, env))?;
        Ok(rx)
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        self.check_available()?;
        check_group_id(group_id, false)?;
        self.check_owner(group_id)?;
        let group = self.group(group_id).ok_or(GroupError::UnknownMemberId)?;
        self.with_group(&group, |g, env| {
            g.heartbeat(member_id, group_instance_id, generation, env)
        })?
    }

    /// LeaveGroup of several members (v3+ batches them): the outcome per member.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.check_available()?;
        check_group_id(group_id, false)?;
        self.check_owner(group_id)?;
        let Some(group) = self.group(group_id) else {
            return Ok(vec![Err(GroupError::UnknownMemberId); members.len()]);
        };
        self.with_group(&group, |g, env| {
            if g.state() == GroupState::Dead {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            Ok(members
                .iter()
                .map(|(member, instance)| g.leave(member, instance.as_deref(), env))
                .collect())
        })?
    }

    /// OffsetCommit of partitions the handler has validated.
    pub fn commit_offsets(&self, group_id: &str, req: CommitRequest) -> Result<(), GroupError> {
        self.check_available()?;
        // Offset APIs accept the empty group id, as Kafka does for backward compatibility.
        check_group_id(group_id, true)?;
        self.check_owner(group_id)?;
        let group = match self.group(group_id) {
            Some(g) => g,
            // Only a consumer outside group management creates a group by committing; a
            // positive generation for an unknown group is from a generation long gone.
            None if req.generation < 0 => self.group_or_create(group_id, now_ms()),
            None => return Err(GroupError::IllegalGeneration),
        };
        self.with_group(&group, |g, env| g.commit_offsets(req, env))?
    }

    /// OffsetFetch: the committed offsets of `partitions`, or of every partition the group
    /// has committed when `None`. An unknown group has none.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>, GroupError> {
        self.check_available()?;
        self.check_owner(group_id)?;
        let Some(group) = self.group(group_id) else {
            return Ok(partitions
                .unwrap_or_default()
                .into_iter()
                .map(|tp| (tp, None))
                .collect());
        };
        let g = group.lock();
        Ok(match partitions {
            Some(tps) => tps
                .into_iter()
                .map(|tp| {
                    let o = g.offset(&tp).cloned();
                    (tp, o)
                })
                .collect(),
            None => g
                .offsets()
                .iter()
                .map(|(tp, o)| (tp.clone(), Some(o.clone())))
                .collect(),
        })
    }

    /// OffsetDelete.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<(TopicPartition, Option<GroupError>)>, GroupError> {
        self.check_available()?;
        self.check_owner(group_id)?;
        let group = self.group(group_id).ok_or(GroupError::GroupIdNotFound)?;
        self.with_group(&group, |g, env| g.delete_offsets(partitions, env))?
    }

    /// ListGroups: every group (never the Dead ones), and an error if still loading.
    pub fn list_groups(&self) -> (Option<GroupError>, Vec<GroupListing>) {
        // No __consumer_offsets yet (it is created on the first FindCoordinator): no groups.
        if self.status.load(Ordering::SeqCst) == DETACHED {
            return (None, Vec::new());
        }
        let error = self.check_available().err();
        let all: Vec<Arc<Mutex<Group>>> = self.groups.read().values().cloned().collect();
        let mut out: Vec<GroupListing> = all
            .iter()
            .map(|g| g.lock().listing())
            .filter(|l| l.state != GroupState::Dead)
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        (error, out)
    }

    /// DescribeGroups of one group; `None` if it does not exist.
    pub fn describe_group(&self, group_id: &str) -> Result<Option<GroupSummary>, GroupError> {
        self.check_available()?;
        self.check_owner(group_id)?;
        Ok(self
            .group(group_id)
            .map(|g| g.lock().summary())
            .filter(|s| s.state != GroupState::Dead))
    }

    /// DeleteGroups of one group.
    pub fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        self.check_available()?;
        self.check_owner(group_id)?;
        let group = self.group(group_id).ok_or(GroupError::GroupIdNotFound)?;
        self.with_group(&group, |g, env| g.delete(env))?
    }

    /// One `offsets.retention.check.interval.ms` pass over every group.
    pub fn expire_offsets(&self) -> usize {
        if self.check_available().is_err() {
            return 0;
        }
        let all: Vec<Arc<Mutex<Group>>> = self.groups.read().values().cloned().collect();
        let mut total = 0;
        for g in all {
            match self.with_group(&g, |group, env| group.expire_offsets(env)) {
                Ok(Ok(n)) => total += n,
                Ok(Err(e)) => tracing::warn!(error = %e, "offset expiration failed"),
                Err(_) => return total,
            }
        }
        if total > 0 {
            tracing::info!(offsets = total, "expired committed offsets");
        }
        total
    }

    /// The coordinator's metrics in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let all: Vec<Arc<Mutex<Group>>> = self.groups.read().values().cloned().collect();
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        let mut offsets = 0i64;
        for g in &all {
            let g = g.lock();
            *counts.entry(g.state().name()).or_default() += 1;
            offsets += g.offsets().len() as i64;
        }
        self.gauges.groups.set(all.len() as i64);
        self.gauges.offsets.set(offsets);
        for (state, gauge) in &self.gauges.by_state {
            gauge.set(counts.get(state.name()).copied().unwrap_or(0));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "could not encode group coordinator metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// What replaying `__consumer_offsets` found for one group.
#[derive(Debug, Default)]
struct LoadedGroup {
    metadata: Option<records::GroupValue>,
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
}

/// Applies one record; later records win, tombstones delete.
fn replay(
    loaded: &mut HashMap<String, LoadedGroup>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    at: &TopicPartition,
) {
    let Some(key) = key else {
        return;
    };
    let warn = |e: &records::RecordError| {
        tracing::warn!(partition = %at, error = %e, "skipping undecodable __consumer_offsets record");
    };
    match records::decode_key(key) {
        Ok(records::RecordKey::Offset {
            group,
            topic,
            partition,
        }) => {
            let tp = TopicPartition { topic, partition };
            let entry = loaded.entry(group).or_default();
            match value.map(records::decode_offset_value) {
                Some(Ok(v)) => {
                    entry.offsets.insert(tp, v.into());
                }
                Some(Err(e)) => warn(&e),
                None => {
                    entry.offsets.remove(&tp);
                }
            }
        }
        Ok(records::RecordKey::GroupMetadata { group }) => {
            let entry = loaded.entry(group).or_default();
            match value.map(records::decode_group_value) {
                Some(Ok(v)) => entry.metadata = Some(v),
                Some(Err(e)) => warn(&e),
                None => entry.metadata = None,
            }
        }
        Ok(records::RecordKey::Other(_)) => {}
        Err(e) => warn(&e),
    }
}

/// The coordinator's background work, started by the server: load `__consumer_offsets`, then
/// run group timers and the offsets retention check until shutdown, when waiting requests are
/// answered NOT_COORDINATOR.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    // __consumer_offsets is created on the first FindCoordinator; until then nothing to load.
    while broker.groups.status.load(Ordering::SeqCst) == DETACHED {
        tokio::select! {
            _ = broker.groups.attached.notified() => {}
            _ = shutdown.changed() => {
                broker.groups.shutdown();
                return;
            }
        }
    }
    let b = broker.clone();
    let load = tokio::task::spawn_blocking(move || b.groups.load());
    tokio::select! {
        r = load => match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                broker.groups.status.store(FAILED, Ordering::SeqCst);
                tracing::error!(error = %crate::handlers::error::message(&e),
                    "could not load __consumer_offsets; group requests will fail with COORDINATOR_NOT_AVAILABLE");
                let _ = shutdown.changed().await;
                return;
            }
            Err(e) => {
                broker.groups.status.store(FAILED, Ordering::SeqCst);
                tracing::error!(error = %e, "loading __consumer_offsets failed");
                return;
            }
        },
        _ = shutdown.changed() => {
            broker.groups.shutdown();
            return;
        }
    }
    let coordinator = &broker.groups;
    let mut retention = tokio::time::interval(coordinator.config.offsets_retention_check_interval);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; retention need not run at start-up.
    retention.tick().await;
    loop {
        // Far enough to mean "no timer", near enough not to overflow the timer wheel.
        let next = coordinator
            .next_timer()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => coordinator.expire_due(),
            _ = coordinator.wake.notified() => {}
            _ = retention.tick() => {
                let b = broker.clone();
                let _ = tokio::task::spawn_blocking(move || b.groups.expire_offsets()).await;
            }
            _ = shutdown.changed() => {
                coordinator.shutdown();
                return;
            }
        }
    }
}
