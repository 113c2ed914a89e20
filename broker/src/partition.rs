//! One partition this broker hosts: its log, and the wake-up that long-polling fetches wait on.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use millrace_log::Log;
use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

/// A topic partition, named as Kafka names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Kafka's directory name for the partition: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A hosted partition.
#[derive(Debug)]
pub struct Partition {
    /// Which partition.
    pub tp: TopicPartition,
    /// Its topic's id.
    pub topic_id: Uuid,
    /// The log. A std-style mutex: appends and reads hold it for one page-cache copy, never
    /// across an await, so a tokio mutex would only add cost.
    pub log: Mutex<Log>,
    /// Woken after every append, so a fetch waiting for `min_bytes` re-checks at once.
    pub appended: Notify,
    /// The leader epoch from the metadata image, stamped on batches appended as leader.
    leader_epoch: AtomicI32,
    /// Whether this broker leads the partition (per the metadata image).
    leader: AtomicBool,
}

impl Partition {
    /// Wraps an opened log.
    pub fn new(tp: TopicPartition, topic_id: Uuid, log: Log) -> Partition {
        Partition {
            tp,
            topic_id,
            log: Mutex::new(log),
            appended: Notify::new(),
            leader_epoch: AtomicI32::new(0),
            leader: AtomicBool::new(false),
        }
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::SeqCst)
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Applies the leadership the metadata image gives this broker.
    pub fn set_leadership(&self, leader: bool, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::SeqCst);
        self.leader.store(leader, Ordering::SeqCst);
    }
}
