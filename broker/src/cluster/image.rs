//! The metadata log's records and the image every node builds by applying them.
//!
//! The controller quorum replicates [`MetadataBatch`]es; each is applied atomically, in log
//! order, to a [`MetadataImage`]. Records are typed and named after KRaft's
//! (`RegisterBrokerRecord`, `TopicRecord`, `PartitionRecord`, `PartitionChangeRecord`, …) but
//! encoded with serde: both ends are this binary, and the log is never read by anything else.
//!
//! Applying never fails: the active controller validates a change against the image before it
//! proposes the records, and a record that no longer fits (a partition change for a topic that
//! was deleted in between) is skipped, so every node reaches the same image from the same log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Properties;

/// No leader: the partition is offline.
pub const NO_LEADER: i32 = -1;

/// One listener a broker advertises to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Listener name (`PLAINTEXT`).
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

/// What a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    /// The cluster-wide dynamic broker defaults (Kafka's broker resource with an empty name).
    BrokerDefault,
    /// A topic's overrides.
    Topic(String),
}

/// What a broker registers with: the request it sends and the record the controller writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// `node.id`.
    pub broker_id: i32,
    /// Random per process start: tells a restart from a duplicate registration.
    pub incarnation_id: Uuid,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Advertised client listeners.
    pub endpoints: Vec<Endpoint>,
    /// Where its controller listener (gRPC) is, for a broker-only node (a Raft learner).
    pub controller_address: Option<String>,
}

/// One record of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// The cluster id, written once by the first active controller.
    ClusterId {
        /// 22-character base64 of a random UUID, as Kafka prints them.
        cluster_id: String,
    },
    /// A feature's finalized level (`metadata.version` and friends).
    FeatureLevel {
        /// Feature name.
        name: String,
        /// Level.
        level: i16,
    },
    /// A broker (re-)registers. It starts fenced; its epoch is the log index of this record.
    RegisterBroker(Registration),
    /// The broker's heartbeats stopped (or it shut down): it leads nothing until unfenced.
    FenceBroker {
        /// Broker id.
        broker_id: i32,
        /// The registration epoch this applies to.
        epoch: u64,
    },
    /// The broker heartbeats and has caught up with the metadata log.
    UnfenceBroker {
        /// Broker id.
        broker_id: i32,
        /// The registration epoch this applies to.
        epoch: u64,
    },
    /// A topic is created (its partitions follow as [`MetadataRecord::Partition`]).
    Topic {
        /// Name.
        name: String,
        /// Id (KIP-516).
        topic_id: Uuid,
    },
    /// A partition is created with its assignment.
    Partition {
        /// Topic id.
        topic_id: Uuid,
        /// Partition index (the next one: partitions are created in order).
        partition: i32,
        /// Replicas, preferred leader first.
        replicas: Vec<i32>,
        /// In-sync replicas.
        isr: Vec<i32>,
        /// Leader, or [`NO_LEADER`].
        leader: i32,
    },
    /// A partition's leader and/or ISR change; a leader change bumps the leader epoch.
    PartitionChange {
        /// Topic id.
        topic_id: Uuid,
        /// Partition index.
        partition: i32,
        /// New leader, or [`NO_LEADER`].
        leader: i32,
        /// New ISR.
        isr: Vec<i32>,
    },
    /// A topic and all its partitions are removed.
    RemoveTopic {
        /// Topic id.
        topic_id: Uuid,
    },
    /// A config is set (`Some`) or removed (`None`).
    Config {
        /// What it applies to.
        resource: ConfigResource,
        /// Key.
        name: String,
        /// Value.
        value: Option<String>,
    },
    /// A block of producer ids is handed to a broker; ids below `next_producer_id` are used.
    ProducerIds {
        /// The broker that got the block.
        broker_id: i32,
        /// First id after the block.
        next_producer_id: i64,
    },
}

/// What the quorum replicates: records applied together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    /// The records, in order.
    pub records: Vec<MetadataRecord>,
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// Broker id.
    pub id: i32,
    /// The process incarnation that registered.
    pub incarnation_id: Uuid,
    /// The log index of the registration record.
    pub epoch: u64,
    /// Rack.
    pub rack: Option<String>,
    /// Client listeners.
    pub endpoints: Vec<Endpoint>,
    /// gRPC controller-listener address, if any.
    pub controller_address: Option<String>,
    /// Fenced brokers lead nothing and are left out of Metadata responses.
    pub fenced: bool,
}

impl BrokerRegistration {
    /// Its advertised address for `listener`: what a client that came in on that listener is
    /// given (none: the broker is left out of that client's answer, as in Kafka).
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == listener)
    }
}

/// A partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Leader, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped on every leader change (KIP-101/KIP-320).
    pub leader_epoch: i32,
    /// Bumped on every change.
    pub partition_epoch: i32,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Name.
    pub name: String,
    /// Id.
    pub id: Uuid,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
    /// Partitions, by index.
    pub partitions: Vec<PartitionState>,
}

impl TopicImage {
    /// The overrides as validated [`Properties`] (values were validated when set).
    pub fn overrides(&self) -> Properties {
        Properties::from_stored(&self.configs)
    }

    /// Partition count.
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }

    /// Replication factor (of partition 0; all partitions share it).
    pub fn replication_factor(&self) -> i16 {
        self.partitions
            .first()
            .map(|p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX))
            .unwrap_or(0)
    }

    /// A partition by index.
    pub fn partition(&self, index: i32) -> Option<&PartitionState> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// The state of the cluster, as of `applied_index` of the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The last log index applied (0 before any).
    pub applied_index: u64,
    /// Cluster id (empty until the first controller writes it).
    pub cluster_id: String,
    /// Finalized feature levels.
    pub features: BTreeMap<String, i16>,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Topic names by id.
    pub topic_names: BTreeMap<Uuid, String>,
    /// Dynamic cluster-wide broker config defaults.
    pub broker_configs: BTreeMap<String, String>,
    /// Producer ids below this are handed out.
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// The dynamic broker defaults as [`Properties`].
    pub fn dynamic_broker_props(&self) -> Properties {
        Properties::from_stored(&self.broker_configs)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicImage> {
        self.topic_names.get(&id).and_then(|n| self.topics.get(n))
    }

    /// Unfenced brokers, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether `id` is registered and unfenced.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    fn topic_mut(&mut self, id: Uuid) -> Option<&mut TopicImage> {
        let name = self.topic_names.get(&id)?;
        self.topics.get_mut(name)
    }

    /// Applies the batch at log index `index`.
    pub fn apply(&mut self, index: u64, batch: &MetadataBatch) {
        for record in &batch.records {
            self.apply_record(index, record);
        }
        self.applied_index = self.applied_index.max(index);
    }

    fn apply_record(&mut self, index: u64, record: &MetadataRecord) {
        match record {
            MetadataRecord::ClusterId { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
            }
            MetadataRecord::FeatureLevel { name, level } => {
                self.features.insert(name.clone(), *level);
            }
            MetadataRecord::RegisterBroker(r) => {
                self.brokers.insert(
                    r.broker_id,
                    BrokerRegistration {
                        id: r.broker_id,
                        incarnation_id: r.incarnation_id,
                        epoch: index,
                        rack: r.rack.clone(),
                        endpoints: r.endpoints.clone(),
                        controller_address: r.controller_address.clone(),
                        fenced: true,
                    },
                );
            }
            MetadataRecord::FenceBroker { broker_id, epoch }
            | MetadataRecord::UnfenceBroker { broker_id, epoch } => {
                let fenced = matches!(record, MetadataRecord::FenceBroker { .. });
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    if b.epoch == *epoch {
                        b.fenced = fenced;
                    }
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        configs: BTreeMap::new(),
                        partitions: Vec::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
            } => {
                if let Some(t) = self.topic_mut(*topic_id) {
                    if usize::try_from(*partition).ok() == Some(t.partitions.len()) {
                        t.partitions.push(PartitionState {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: 0,
                            partition_epoch: 0,
                        });
                    }
                }
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
            } => {
                let Some(p) = self.topic_mut(*topic_id).and_then(|t| {
                    usize::try_from(*partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                }) else {
                    return;
                };
                if p.leader != *leader {
                    p.leader = *leader;
                    p.leader_epoch += 1;
                }
                p.isr = isr.clone();
                p.partition_epoch += 1;
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => {
                let map = match resource {
                    ConfigResource::BrokerDefault => Some(&mut self.broker_configs),
                    ConfigResource::Topic(topic) => {
                        self.topics.get_mut(topic).map(|t| &mut t.configs)
                    }
                };
                if let Some(map) = map {
                    match value {
                        Some(v) => {
                            map.insert(name.clone(), v.clone());
                        }
                        None => {
                            map.remove(name);
                        }
                    }
                }
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: Vec<MetadataRecord>) -> MetadataBatch {
        MetadataBatch { records }
    }

    fn register(id: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker(Registration {
            broker_id: id,
            incarnation_id: Uuid::new_v4(),
            rack: Some(format!("r{id}")),
            endpoints: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            controller_address: None,
        })
    }

    #[test]
    fn brokers_register_fenced_and_fencing_is_per_epoch() {
        let mut image = MetadataImage::default();
        image.apply(5, &batch(vec![register(1)]));
        assert!(image.brokers[&1].fenced, "a new registration starts fenced");
        assert_eq!(image.brokers[&1].epoch, 5);
        image.apply(
            6,
            &batch(vec![MetadataRecord::UnfenceBroker {
                broker_id: 1,
                epoch: 5,
            }]),
        );
        assert!(image.is_live(1));
        // The broker restarts (new epoch 7); a late fence for epoch 5 must not touch it.
        image.apply(7, &batch(vec![register(1)]));
        image.apply(
            8,
            &batch(vec![MetadataRecord::UnfenceBroker {
                broker_id: 1,
                epoch: 7,
            }]),
        );
        image.apply(
            9,
            &batch(vec![MetadataRecord::FenceBroker {
                broker_id: 1,
                epoch: 5,
            }]),
        );
        assert!(image.is_live(1));
        assert_eq!(image.applied_index, 9);
    }

    #[test]
    fn topics_partitions_changes_and_removal() {
        let mut image = MetadataImage::default();
        let id = Uuid::new_v4();
        image.apply(
            1,
            &batch(vec![
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: id,
                },
                MetadataRecord::Partition {
                    topic_id: id,
                    partition: 0,
                    replicas: vec![1, 2],
                    isr: vec![1],
                    leader: 1,
                },
                MetadataRecord::Partition {
                    topic_id: id,
                    partition: 1,
                    replicas: vec![2, 1],
                    isr: vec![2],
                    leader: 2,
                },
                // Out of order: skipped, never a hole.
                MetadataRecord::Partition {
                    topic_id: id,
                    partition: 5,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                },
                MetadataRecord::Config {
                    resource: ConfigResource::Topic("t".into()),
                    name: "retention.ms".into(),
                    value: Some("10".into()),
                },
            ]),
        );
        let t = &image.topics["t"];
        assert_eq!(t.partition_count(), 2);
        assert_eq!(t.replication_factor(), 2);
        assert_eq!(t.configs["retention.ms"], "10");
        image.apply(
            2,
            &batch(vec![MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 1,
                leader: NO_LEADER,
                isr: vec![2],
            }]),
        );
        let p = &image.topics["t"].partitions[1];
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (NO_LEADER, 1, 1)
        );
        image.apply(
            3,
            &batch(vec![MetadataRecord::RemoveTopic { topic_id: id }]),
        );
        assert!(image.topics.is_empty() && image.topic_names.is_empty());
        // A change for the removed topic is skipped.
        image.apply(
            4,
            &batch(vec![MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: 1,
                isr: vec![1],
            }]),
        );
        assert!(image.topics.is_empty());
    }

    #[test]
    fn image_round_trips_through_json() {
        let mut image = MetadataImage::default();
        image.apply(
            1,
            &batch(vec![
                register(3),
                MetadataRecord::ClusterId {
                    cluster_id: "abc".into(),
                },
            ]),
        );
        let json = serde_json::to_vec(&image).expect("serialize");
        let back: MetadataImage = serde_json::from_slice(&json).expect("parse");
        assert_eq!(back, image);
    }
}
