//! The active controller: turns requests from brokers into metadata records, and fences
//! brokers whose heartbeats stop.
//!
//! # Contract
//! - Only the Raft leader acts; every other node answers [`ControllerReply::NotController`]
//!   with the leader it knows, and the broker retries there.
//! - Changes are planned against the image and written one at a time (a lock), after
//!   `ensure_linearizable` has made the local image current, so each plan sees every earlier
//!   write and two plans never race (two creations of one topic cannot both pass).
//! - Heartbeats are not written to the log: the controller keeps each broker's last heartbeat
//!   in memory, and writes only the transitions (fence, unfence). A new leader gives every
//!   broker a fresh session before it fences anyone.
//! - Planning ([`plan`] and the `*_records` functions) is pure: a function of the image and
//!   the request, unit-tested without a quorum.
//!
//! # Leadership without replication (yet)
//! Followers do not replicate until the replication issue lands, so a new partition's ISR is
//! its leader alone. Fencing the leader leaves the partition offline (leader −1, ISR kept) —
//! electing a replica with an empty log would silently lose data — and unfencing the broker
//! brings it back as leader with a bumped leader epoch.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    image::{
        ConfigResource, MetadataBatch, MetadataImage, MetadataRecord, Registration, NO_LEADER,
    },
    placement::{self, Candidate, PlacementError},
    raft::{store::SharedImage, NodeId, Raft},
};

/// How many producer ids one [`ControllerRequest::AllocateProducerIds`] hands out at most.
pub const MAX_PRODUCER_ID_BLOCK: i64 = 1_000_000;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    /// Name (validated by the broker that received the request).
    pub name: String,
    /// Partition count (resolved from defaults by the broker).
    pub partitions: i32,
    /// Replication factor (resolved from defaults by the broker).
    pub replication_factor: i16,
    /// Explicit assignment (partition → replicas); empty: place automatically.
    pub assignments: Vec<(i32, Vec<i32>)>,
    /// Config overrides (validated by the broker).
    pub configs: BTreeMap<String, String>,
}

/// A request to the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// A broker starts: it is registered fenced, with a new epoch.
    RegisterBroker(Registration),
    /// A broker is alive, and has applied the metadata log up to `applied_index`.
    Heartbeat {
        /// Broker id.
        broker_id: i32,
        /// Registration epoch.
        epoch: u64,
        /// Last applied metadata log index.
        applied_index: u64,
    },
    /// A broker stops cleanly: fence it now instead of after the session timeout.
    ControlledShutdown {
        /// Broker id.
        broker_id: i32,
        /// Registration epoch.
        epoch: u64,
    },
    /// CreateTopics.
    CreateTopics {
        /// The topics.
        topics: Vec<NewTopic>,
        /// Check only.
        validate_only: bool,
    },
    /// DeleteTopics.
    DeleteTopics {
        /// Topic names.
        names: Vec<String>,
    },
    /// CreatePartitions.
    CreatePartitions {
        /// Topic.
        topic: String,
        /// New total count.
        count: i32,
        /// Replicas of each new partition, if given.
        assignments: Option<Vec<Vec<i32>>>,
        /// Check only.
        validate_only: bool,
    },
    /// AlterConfigs / IncrementalAlterConfigs (values validated by the broker).
    AlterConfigs {
        /// What to change.
        resource: ConfigResource,
        /// Key → `Some(value)` to set, `None` to delete.
        changes: Vec<(String, Option<String>)>,
        /// `false`: the changes replace every existing override.
        incremental: bool,
    },
    /// A block of producer ids for a broker.
    AllocateProducerIds {
        /// Broker id.
        broker_id: i32,
        /// Block size.
        count: i64,
    },
}

/// A created topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTopic {
    /// Its id.
    pub id: Uuid,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
}

/// Why the controller refused something; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControllerError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_REPLICA_ASSIGNMENT.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// DUPLICATE_BROKER_REGISTRATION.
    #[error("{0}")]
    DuplicateBrokerRegistration(String),
    /// STALE_BROKER_EPOCH.
    #[error("{0}")]
    StaleBrokerEpoch(String),
    /// NOT_CONTROLLER / REQUEST_TIMED_OUT: no controller could take the request in time.
    #[error("{0}")]
    Unavailable(String),
}

impl From<PlacementError> for ControllerError {
    fn from(e: PlacementError) -> ControllerError {
        match e {
            PlacementError::InvalidReplicationFactor(m) => {
                ControllerError::InvalidReplicationFactor(m)
            }
            PlacementError::InvalidReplicaAssignment(m) => {
                ControllerError::InvalidReplicaAssignment(m)
            }
        }
    }
}

/// The controller's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerReply {
    /// This node is not the active controller; try `leader`.
    NotController {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// Registered with this epoch.
    Registered {
        /// The broker epoch (log index of the registration).
        epoch: u64,
    },
    /// Heartbeat answer.
    Heartbeat {
        /// Still fenced.
        fenced: bool,
        /// The epoch is not the current registration: register again.
        reregister: bool,
    },
    /// Per-topic results of CreateTopics, in request order.
    Topics(Vec<Result<CreatedTopic, ControllerError>>),
    /// Per-name results of DeleteTopics, in request order.
    Deleted(Vec<Result<Uuid, ControllerError>>),
    /// A change that was applied (or validated) without a specific answer.
    Done,
    /// Producer ids `[first, first + count)`.
    ProducerIds {
        /// First id.
        first: i64,
        /// How many.
        count: i64,
    },
    /// Refused.
    Failed(ControllerError),
}

/// A reply and the metadata log index the broker must have applied before answering its
/// client (0: nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reply.
    pub reply: ControllerReply,
    /// The log index of the write.
    pub index: u64,
}

// ------------------------------------------------------------------------------- planning

/// Placement candidates: the unfenced brokers.
fn candidates(image: &MetadataImage) -> Vec<Candidate> {
    image
        .live_brokers()
        .map(|b| Candidate {
            id: b.id,
            rack: b.rack.clone(),
        })
        .collect()
}

fn all_assignments(image: &MetadataImage) -> Vec<Vec<i32>> {
    image
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().map(|p| p.replicas.clone()))
        .collect()
}

/// The leader and ISR of a new partition: its first live replica, alone (see module docs).
fn initial_leadership(image: &MetadataImage, replicas: &[i32]) -> (i32, Vec<i32>) {
    match replicas.iter().find(|r| image.is_live(**r)) {
        Some(&leader) => (leader, vec![leader]),
        None => (
            NO_LEADER,
            replicas.first().map(|r| vec![*r]).unwrap_or_default(),
        ),
    }
}

fn partition_records(
    image: &MetadataImage,
    topic_id: Uuid,
    first: i32,
    lists: Vec<Vec<i32>>,
) -> Vec<MetadataRecord> {
    lists
        .into_iter()
        .zip(first..)
        .map(|(replicas, partition)| {
            let (leader, isr) = initial_leadership(image, &replicas);
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
            }
        })
        .collect()
}

/// Records that take `broker_id` out of leadership and ISRs (it is being fenced or has
/// re-registered). A partition whose only ISR member it is goes offline.
pub fn fence_records(image: &MetadataImage, broker_id: i32) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader != broker_id && !p.isr.contains(&broker_id) {
                continue;
            }
            let others: Vec<i32> = p.isr.iter().copied().filter(|r| *r != broker_id).collect();
            let (leader, isr) = if others.is_empty() {
                (NO_LEADER, p.isr.clone())
            } else if p.leader == broker_id || p.leader == NO_LEADER {
                let next = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| others.contains(r) && image.is_live(*r))
                    .unwrap_or(NO_LEADER);
                (next, others)
            } else {
                (p.leader, others)
            };
            if leader != p.leader || isr != p.isr {
                out.push(MetadataRecord::PartitionChange {
                    topic_id: t.id,
                    partition: i as i32,
                    leader,
                    isr,
                });
            }
        }
    }
    out
}

/// Records that give `broker_id`, now unfenced, the leadership of every offline partition
/// whose ISR holds it.
pub fn unfence_records(image: &MetadataImage, broker_id: i32) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader == NO_LEADER && p.isr.contains(&broker_id) {
                out.push(MetadataRecord::PartitionChange {
                    topic_id: t.id,
                    partition: i as i32,
                    leader: broker_id,
                    isr: p.isr.clone(),
                });
            }
        }
    }
    out
}

/// What a planned change writes, and how to answer once it is committed at index `i`.
pub struct Plan {
    /// Records to write (empty: nothing to write).
    pub records: Vec<MetadataRecord>,
    /// The answer, given the committed log index.
    pub reply: Box<dyn FnOnce(u64) -> ControllerReply + Send>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl Plan {
    fn answer(reply: ControllerReply) -> Plan {
        Plan {
            records: Vec::new(),
            reply: Box::new(move |_| reply),
        }
    }

    fn write(records: Vec<MetadataRecord>, reply: ControllerReply) -> Plan {
        Plan {
            records,
            reply: Box::new(move |_| reply),
        }
    }
}

/// Plans a request against `image`. Heartbeats are planned by the controller runtime, which
/// holds the heartbeat times.
pub fn plan(image: &MetadataImage, request: ControllerRequest) -> Plan {
    match request {
        ControllerRequest::RegisterBroker(registration) => {
            // The old incarnation's leaderships end with it.
            let fenced = fence_records(image, registration.broker_id);
            let mut records = vec![MetadataRecord::RegisterBroker(registration)];
            records.extend(fenced);
            Plan {
                records,
                reply: Box::new(|epoch| ControllerReply::Registered { epoch }),
            }
        }
        ControllerRequest::Heartbeat { .. } => Plan::answer(ControllerReply::Failed(
            ControllerError::Unavailable("heartbeats are not planned".into()),
        )),
        ControllerRequest::ControlledShutdown { broker_id, epoch } => {
            match image.brokers.get(&broker_id) {
                Some(b) if b.epoch == epoch && !b.fenced => {
                    let mut records = vec![MetadataRecord::FenceBroker { broker_id, epoch }];
                    records.extend(fence_records(image, broker_id));
                    Plan::write(records, ControllerReply::Done)
                }
                _ => Plan::answer(ControllerReply::Done),
            }
        }
        ControllerRequest::CreateTopics {
            topics,
            validate_only,
        } => plan_create_topics(image, topics, validate_only),
        ControllerRequest::DeleteTopics { names } => {
            let mut records = Vec::new();
            let mut results = Vec::new();
            let mut seen = BTreeSet::new();
            for name in names {
                match image.topics.get(&name) {
                    Some(t) if seen.insert(t.id) => {
                        records.push(MetadataRecord::RemoveTopic { topic_id: t.id });
                        results.push(Ok(t.id));
                    }
                    Some(t) => results.push(Ok(t.id)),
                    None => results.push(Err(ControllerError::UnknownTopic(name))),
                }
            }
            Plan::write(records, ControllerReply::Deleted(results))
        }
        ControllerRequest::CreatePartitions {
            topic,
            count,
            assignments,
            validate_only,
        } => match plan_create_partitions(image, &topic, count, assignments) {
            Ok(records) if !validate_only => Plan::write(records, ControllerReply::Done),
            Ok(_) => Plan::answer(ControllerReply::Done),
            Err(e) => Plan::answer(ControllerReply::Failed(e)),
        },
        ControllerRequest::AlterConfigs {
            resource,
            changes,
            incremental,
        } => {
            let existing = match &resource {
                ConfigResource::BrokerDefault => &image.broker_configs,
                ConfigResource::Topic(name) => match image.topics.get(name) {
                    Some(t) => &t.configs,
                    None => {
                        return Plan::answer(ControllerReply::Failed(
                            ControllerError::UnknownTopic(name.clone()),
                        ))
                    }
                },
            };
            let mut records = Vec::new();
            if !incremental {
                for key in existing.keys() {
                    if !changes.iter().any(|(k, _)| k == key) {
                        records.push(MetadataRecord::Config {
                            resource: resource.clone(),
                            name: key.clone(),
                            value: None,
                        });
                    }
                }
            }
            for (name, value) in changes {
                records.push(MetadataRecord::Config {
                    resource: resource.clone(),
                    name,
                    // Stored as validated: without the surrounding whitespace.
                    value: value.map(|v| v.trim().to_string()),
                });
            }
            Plan::write(records, ControllerReply::Done)
        }
        ControllerRequest::AllocateProducerIds { broker_id, count } => {
            let count = count.clamp(1, MAX_PRODUCER_ID_BLOCK);
            let first = image.next_producer_id;
            Plan::write(
                vec![MetadataRecord::ProducerIds {
                    broker_id,
                    next_producer_id: first + count,
                }],
                ControllerReply::ProducerIds { first, count },
            )
        }
    }
}

fn plan_create_topics(image: &MetadataImage, topics: Vec<NewTopic>, validate_only: bool) -> Plan {
    let mut existing = all_assignments(image);
    let live = candidates(image);
    let registered: Vec<i32> = image.brokers.keys().copied().collect();
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut names = BTreeSet::new();
    for t in topics {
        if image.topics.contains_key(&t.name) || !names.insert(t.name.clone()) {
            results.push(Err(ControllerError::TopicExists(t.name)));
            continue;
        }
        let lists = if t.assignments.is_empty() {
            placement::assign(
                &live,
                &existing,
                usize::try_from(t.partitions).unwrap_or(0),
                usize::try_from(t.replication_factor).unwrap_or(0),
            )
        } else {
            placement::validate_manual(&registered, &t.assignments, 0, None)
        };
        let lists = match lists {
            Ok(l) => l,
            Err(e) => {
                results.push(Err(e.into()));
                continue;
            }
        };
        let id = Uuid::new_v4();
        let created = CreatedTopic {
            id,
            partitions: lists.len() as i32,
            replication_factor: lists.first().map(|l| l.len() as i16).unwrap_or(0),
        };
        existing.extend(lists.iter().cloned());
        records.push(MetadataRecord::Topic {
            name: t.name.clone(),
            topic_id: id,
        });
        records.extend(partition_records(image, id, 0, lists));
        for (name, value) in t.configs {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic(t.name.clone()),
                name,
                value: Some(value),
            });
        }
        results.push(Ok(created));
    }
    if validate_only {
        records.clear();
    }
    Plan::write(records, ControllerReply::Topics(results))
}

fn plan_create_partitions(
    image: &MetadataImage,
    topic: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let t = image
        .topics
        .get(topic)
        .ok_or_else(|| ControllerError::UnknownTopic(topic.to_string()))?;
    let current = t.partition_count();
    if count <= current {
        return Err(ControllerError::InvalidPartitions(format!(
            "topic `{topic}` has {current} partitions; the new count {count} must be larger"
        )));
    }
    let rf = usize::try_from(t.replication_factor()).unwrap_or(1).max(1);
    let lists = match assignments {
        Some(lists) => {
            if lists.len() != (count - current) as usize {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "{} assignments were given for {} new partitions",
                    lists.len(),
                    count - current
                )));
            }
            let registered: Vec<i32> = image.brokers.keys().copied().collect();
            let indexed: Vec<(i32, Vec<i32>)> = (current..).zip(lists).collect();
            placement::validate_manual(&registered, &indexed, current, Some(rf))?
        }
        None => placement::assign(
            &candidates(image),
            &all_assignments(image),
            (count - current) as usize,
            rf,
        )?,
    };
    Ok(partition_records(image, t.id, current, lists))
}

// ------------------------------------------------------------------------------- runtime

/// The controller runtime on a voter.
pub struct Controller {
    node_id: NodeId,
    raft: Raft,
    image: Arc<SharedImage>,
    session_timeout: Duration,
    cluster_id: Option<String>,
    /// Last heartbeat per broker, as seen by this node while leader.
    heartbeats: Mutex<HashMap<i32, Instant>>,
    /// One planned write at a time.
    write: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller over the local Raft node.
    pub fn new(
        node_id: NodeId,
        raft: Raft,
        image: Arc<SharedImage>,
        session_timeout: Duration,
        cluster_id: Option<String>,
    ) -> Controller {
        Controller {
            node_id,
            raft,
            image,
            session_timeout,
            cluster_id,
            heartbeats: Mutex::new(HashMap::new()),
            write: tokio::sync::Mutex::new(()),
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn not_controller(&self) -> Envelope {
        Envelope {
            reply: ControllerReply::NotController {
                leader: self.leader(),
            },
            index: 0,
        }
    }

    /// Handles a request if this node is the active controller.
    pub async fn handle(&self, request: ControllerRequest) -> Envelope {
        if self.leader() != Some(self.node_id) {
            return self.not_controller();
        }
        if let ControllerRequest::Heartbeat {
            broker_id,
            epoch,
            applied_index,
        } = &request
        {
            // Most heartbeats change nothing: answer them from the applied image, without the
            // lock and the quorum round trip. Anything else (unfence, an unknown epoch, which a
            // lagging image could cause) takes the full path below.
            let image = self.image.current();
            let plan = self.heartbeat(&image, *broker_id, *epoch, *applied_index);
            let reply = (plan.reply)(image.applied_index);
            if plan.records.is_empty()
                && matches!(
                    reply,
                    ControllerReply::Heartbeat {
                        reregister: false,
                        ..
                    }
                )
            {
                return Envelope {
                    reply,
                    index: image.applied_index,
                };
            }
        }
        let _turn = self.write.lock().await;
        // The image must hold every committed write before a plan reads it.
        if self.raft.ensure_linearizable().await.is_err() {
            return self.not_controller();
        }
        if let ControllerRequest::RegisterBroker(Registration {
            broker_id,
            controller_address: Some(addr),
            ..
        }) = &request
        {
            self.ensure_learner(*broker_id, addr).await;
        }
        let image = self.image.current();
        let plan = match request {
            ControllerRequest::Heartbeat {
                broker_id,
                epoch,
                applied_index,
            } => self.heartbeat(&image, broker_id, epoch, applied_index),
            ControllerRequest::RegisterBroker(r)
                if self.is_duplicate(&image, r.broker_id, r.incarnation_id) =>
            {
                Plan::answer(ControllerReply::Failed(
                    ControllerError::DuplicateBrokerRegistration(format!(
                        "another process is registered as broker {} and still heartbeating; is node.id unique?",
                        r.broker_id
                    )),
                ))
            }
            other => plan(&image, other),
        };
        self.commit(plan, image.applied_index).await
    }

    /// Writes a plan's records (if any) and answers.
    async fn commit(&self, plan: Plan, applied: u64) -> Envelope {
        if plan.records.is_empty() {
            return Envelope {
                reply: (plan.reply)(applied),
                index: applied,
            };
        }
        let mut records = self.bootstrap_records(&self.image.current());
        records.extend(plan.records);
        match self.raft.client_write(MetadataBatch { records }).await {
            Ok(r) => Envelope {
                reply: (plan.reply)(r.log_id.index),
                index: r.log_id.index,
            },
            Err(e) => {
                tracing::warn!(error = %e, "metadata write failed");
                self.not_controller()
            }
        }
    }

    /// A broker that is not a voter follows the metadata log as a Raft learner.
    async fn ensure_learner(&self, broker_id: i32, addr: &str) {
        let id = broker_id as NodeId;
        let known = self.raft.metrics().borrow().membership_config.clone();
        if known.membership().get_node(&id).is_some() {
            return;
        }
        match self
            .raft
            .add_learner(id, openraft::BasicNode::new(addr), false)
            .await
        {
            Ok(_) => tracing::info!(
                broker = broker_id,
                address = addr,
                "added broker as a metadata learner"
            ),
            Err(e) => {
                tracing::warn!(broker = broker_id, error = %e, "could not add broker as a metadata learner")
            }
        }
    }

    fn is_duplicate(&self, image: &MetadataImage, broker_id: i32, incarnation: Uuid) -> bool {
        let Some(b) = image.brokers.get(&broker_id) else {
            return false;
        };
        if b.incarnation_id == incarnation || b.fenced {
            return false;
        }
        self.heartbeats
            .lock()
            .get(&broker_id)
            .is_some_and(|t| t.elapsed() < self.session_timeout)
    }

    fn heartbeat(&self, image: &MetadataImage, broker_id: i32, epoch: u64, applied: u64) -> Plan {
        let Some(b) = image.brokers.get(&broker_id) else {
            return Plan::answer(ControllerReply::Heartbeat {
                fenced: true,
                reregister: true,
            });
        };
        if b.epoch != epoch {
            return Plan::answer(ControllerReply::Heartbeat {
                fenced: true,
                reregister: true,
            });
        }
        self.heartbeats.lock().insert(broker_id, Instant::now());
        if b.fenced && applied >= epoch {
            let mut records = vec![MetadataRecord::UnfenceBroker { broker_id, epoch }];
            records.extend(unfence_records(image, broker_id));
            return Plan::write(
                records,
                ControllerReply::Heartbeat {
                    fenced: false,
                    reregister: false,
                },
            );
        }
        Plan::answer(ControllerReply::Heartbeat {
            fenced: b.fenced,
            reregister: false,
        })
    }

    /// The leader's background duties until `shutdown`: write the cluster id once, and fence
    /// brokers whose session expired.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let tick =
            (self.session_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading = false;
        let mut metrics = self.raft.metrics();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                r = metrics.changed() => {
                    // Act at once on a leadership change; other metric changes wait for the tick.
                    let is_leader = r.is_ok() && self.leader() == Some(self.node_id);
                    if is_leader == leading {
                        continue;
                    }
                }
                _ = shutdown.changed() => return,
            }
            let is_leader = self.leader() == Some(self.node_id);
            if is_leader && !leading {
                // A new term: every registered broker gets a full session from now.
                let now = Instant::now();
                let image = self.image.current();
                let mut hb = self.heartbeats.lock();
                hb.clear();
                for id in image.brokers.keys() {
                    hb.insert(*id, now);
                }
                tracing::info!(node = self.node_id, "became the active controller");
            }
            leading = is_leader;
            if !is_leader {
                continue;
            }
            if let Err(e) = self.duties().await {
                tracing::debug!(error = %e, "controller duties deferred");
            }
        }
    }

    /// The records the first write of a new cluster starts with: its id and feature levels.
    fn bootstrap_records(&self, image: &MetadataImage) -> Vec<MetadataRecord> {
        if !image.cluster_id.is_empty() {
            return Vec::new();
        }
        let cluster_id = self
            .cluster_id
            .clone()
            .unwrap_or_else(|| crate::metadata::kafka_uuid_string(Uuid::new_v4()));
        vec![
            MetadataRecord::ClusterId { cluster_id },
            MetadataRecord::FeatureLevel {
                name: "metadata.version".into(),
                level: 1,
            },
        ]
    }

    async fn duties(&self) -> Result<(), String> {
        let _turn = self.write.lock().await;
        self.raft
            .ensure_linearizable()
            .await
            .map_err(|e| e.to_string())?;
        let image = self.image.current();
        let mut records = self.bootstrap_records(&image);
        let expired: Vec<(i32, u64)> = {
            let hb = self.heartbeats.lock();
            image
                .live_brokers()
                .filter(|b| {
                    hb.get(&b.id)
                        .is_none_or(|t| t.elapsed() >= self.session_timeout)
                })
                .map(|b| (b.id, b.epoch))
                .collect()
        };
        let mut fenced_image = (*image).clone();
        for (broker_id, epoch) in expired {
            tracing::warn!(broker = broker_id, "broker session expired; fencing it");
            let batch = MetadataBatch {
                records: {
                    let mut r = vec![MetadataRecord::FenceBroker { broker_id, epoch }];
                    r.extend(fence_records(&fenced_image, broker_id));
                    r
                },
            };
            fenced_image.apply(fenced_image.applied_index, &batch);
            records.extend(batch.records);
        }
        if records.is_empty() {
            return Ok(());
        }
        self.raft
            .client_write(MetadataBatch { records })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_brokers(racks: &[(i32, &str)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (i, (id, rack)) in racks.iter().enumerate() {
            let index = i as u64 + 1;
            image.apply(
                index,
                &MetadataBatch {
                    records: vec![
                        MetadataRecord::RegisterBroker(Registration {
                            broker_id: *id,
                            incarnation_id: Uuid::new_v4(),
                            rack: Some(rack.to_string()),
                            endpoints: vec![],
                            controller_address: None,
                        }),
                        MetadataRecord::UnfenceBroker {
                            broker_id: *id,
                            epoch: index,
                        },
                    ],
                },
            );
        }
        image
    }

    fn step(image: &mut MetadataImage, request: ControllerRequest) -> ControllerReply {
        let p = plan(image, request);
        apply(image, p)
    }

    fn apply(image: &mut MetadataImage, plan: Plan) -> ControllerReply {
        let index = image.applied_index + 1;
        image.apply(
            index,
            &MetadataBatch {
                records: plan.records,
            },
        );
        (plan.reply)(index)
    }

    fn create(name: &str, partitions: i32, rf: i16) -> ControllerRequest {
        ControllerRequest::CreateTopics {
            topics: vec![NewTopic {
                name: name.into(),
                partitions,
                replication_factor: rf,
                assignments: vec![],
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            }],
            validate_only: false,
        }
    }

    #[test]
    fn topics_are_created_once_with_leaders_and_configs() {
        let mut image = image_with_brokers(&[(1, "a"), (2, "b"), (3, "c")]);
        let reply = step(&mut image, create("t", 6, 3));
        let ControllerReply::Topics(results) = reply else {
            panic!("unexpected {reply:?}")
        };
        assert_eq!(results[0].as_ref().map(|c| c.partitions), Ok(6));
        let t = &image.topics["t"];
        assert_eq!(t.configs["retention.ms"], "1000");
        for p in &t.partitions {
            assert_eq!(p.replicas.len(), 3);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, vec![p.leader]);
        }
        let again = step(&mut image, create("t", 1, 1));
        assert_eq!(
            again,
            ControllerReply::Topics(vec![Err(ControllerError::TopicExists("t".into()))])
        );
        let too_big = step(&mut image, create("u", 1, 4));
        assert!(matches!(
            too_big,
            ControllerReply::Topics(ref r) if matches!(r[0], Err(ControllerError::InvalidReplicationFactor(_)))
        ));
    }

    #[test]
    fn fencing_takes_partitions_offline_and_unfencing_brings_them_back() {
        let mut image = image_with_brokers(&[(1, "a"), (2, "b")]);
        step(&mut image, create("t", 4, 1));
        let led_by_1: Vec<usize> = image.topics["t"]
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.leader == 1)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(led_by_1.len(), 2, "leaders are balanced");
        let epoch = image.brokers[&1].epoch;
        let mut records = vec![MetadataRecord::FenceBroker {
            broker_id: 1,
            epoch,
        }];
        records.extend(fence_records(&image, 1));
        image.apply(100, &MetadataBatch { records });
        for i in &led_by_1 {
            let p = &image.topics["t"].partitions[*i];
            assert_eq!((p.leader, p.leader_epoch), (NO_LEADER, 1));
            assert_eq!(p.isr, vec![1], "the last ISR member is kept");
        }
        let mut records = vec![MetadataRecord::UnfenceBroker {
            broker_id: 1,
            epoch,
        }];
        records.extend(unfence_records(&image, 1));
        image.apply(101, &MetadataBatch { records });
        for i in &led_by_1 {
            let p = &image.topics["t"].partitions[*i];
            assert_eq!((p.leader, p.leader_epoch), (1, 2));
        }
    }

    #[test]
    fn partitions_grow_and_never_shrink() {
        let mut image = image_with_brokers(&[(1, "a"), (2, "b")]);
        step(&mut image, create("t", 2, 2));
        let grow = |count, assignments| ControllerRequest::CreatePartitions {
            topic: "t".into(),
            count,
            assignments,
            validate_only: false,
        };
        assert!(matches!(
            step(&mut image, grow(2, None)),
            ControllerReply::Failed(ControllerError::InvalidPartitions(_))
        ));
        assert!(matches!(
            step(&mut image, grow(3, Some(vec![vec![1, 9]]))),
            ControllerReply::Failed(ControllerError::InvalidReplicaAssignment(_))
        ));
        assert_eq!(step(&mut image, grow(4, None)), ControllerReply::Done);
        assert_eq!(image.topics["t"].partition_count(), 4);
        assert!(image.topics["t"]
            .partitions
            .iter()
            .all(|p| p.replicas.len() == 2));
    }

    #[test]
    fn config_replacement_removes_keys_not_given() {
        let mut image = image_with_brokers(&[(1, "a")]);
        step(&mut image, create("t", 1, 1));
        let alter = ControllerRequest::AlterConfigs {
            resource: ConfigResource::Topic("t".into()),
            changes: vec![("segment.ms".into(), Some("5000".into()))],
            incremental: false,
        };
        step(&mut image, alter);
        assert_eq!(
            image.topics["t"].configs,
            BTreeMap::from([("segment.ms".into(), "5000".into())])
        );
    }
}
