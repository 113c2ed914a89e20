//! The client's view of the cluster: brokers, topics, partitions and their leaders.

use std::{collections::BTreeMap, fmt};

use kafka_protocol::messages::MetadataResponse;

use crate::error::KafkaCode;

/// A topic's partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A topic id (KIP-516), shown as Kafka shows it: URL-safe base64 without padding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    /// Whether this is the all-zero id, which means "no id".
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut held = 0;
        for &byte in &self.0 {
            bits = (bits << 8) | u32::from(byte);
            held += 8;
            while held >= 6 {
                held -= 6;
                let index = ((bits >> held) & 63) as usize;
                write!(f, "{}", char::from(ALPHABET[index]))?;
            }
        }
        if held > 0 {
            let index = ((bits << (6 - held)) & 63) as usize;
            write!(f, "{}", char::from(ALPHABET[index]))?;
        }
        Ok(())
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

/// A broker as the cluster advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// `node.id`.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition's replicas and leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id; `None` while the partition has no leader.
    pub leader: Option<i32>,
    /// Leader epoch (-1 if the broker does not say).
    pub leader_epoch: i32,
    /// Every replica, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas on failed log directories.
    pub offline: Vec<i32>,
    /// A partition-level error (e.g. LEADER_NOT_AVAILABLE).
    pub error: Option<KafkaCode>,
}

impl PartitionMetadata {
    /// Fewer in-sync replicas than replicas.
    pub fn is_under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    /// No leader: nothing can be read or written.
    pub fn is_unavailable(&self) -> bool {
        self.leader.is_none()
    }
}

/// One topic's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id, if the broker reports ids (Metadata v10+).
    pub id: Option<TopicId>,
    /// Internal topics (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Partitions, ordered by index.
    pub partitions: Vec<PartitionMetadata>,
    /// A topic-level error (e.g. UNKNOWN_TOPIC_OR_PARTITION).
    pub error: Option<KafkaCode>,
}

/// A snapshot of the cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The controller (in KRaft clusters, a broker that forwards to it).
    pub controller_id: Option<i32>,
    /// Brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name: every topic when the last full refresh listed them, else those asked for.
    pub topics: BTreeMap<String, TopicMetadata>,
}

impl Metadata {
    /// Folds a Metadata response in. Brokers and cluster facts are replaced; topics are
    /// replaced for those the response describes, and, when it answered a request for every
    /// topic (`complete`), topics it does not list are forgotten (they were deleted).
    pub(crate) fn apply(&mut self, response: &MetadataResponse, complete: bool) {
        self.cluster_id = response.cluster_id.as_ref().map(|s| s.to_string());
        self.controller_id = Some(response.controller_id.0).filter(|&id| id >= 0);
        self.brokers = response
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerInfo {
                        id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        if complete {
            self.topics.clear();
        }
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: Some(p.leader_id.0).filter(|&id| id >= 0),
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error: KafkaCode::from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let id = TopicId(*topic.topic_id.as_bytes());
            self.topics.insert(
                name.clone(),
                TopicMetadata {
                    name,
                    id: (!id.is_zero()).then_some(id),
                    internal: topic.is_internal,
                    partitions,
                    error: KafkaCode::from_code(topic.error_code),
                },
            );
        }
    }

    /// The partition's metadata, if known.
    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionMetadata> {
        self.topics
            .get(&tp.topic)?
            .partitions
            .iter()
            .find(|p| p.partition == tp.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_print_as_kafka_prints_them() {
        // Kafka's Uuid.toString() of 0x0001..0f10 bytes.
        let id = TopicId([
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
            0x0e, 0x0f,
        ]);
        assert_eq!(id.to_string(), "AAECAwQFBgcICQoLDA0ODw");
        assert_eq!(TopicId([0xff; 16]).to_string(), "_____________________w");
    }
}
