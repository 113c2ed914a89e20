//! The Raft layer: openraft's type configuration, the on-disk log and state machine
//! ([`store`]), and the gRPC transport ([`network`]).

pub mod network;
pub mod store;

use serde::{Deserialize, Serialize};

use super::image::MetadataBatch;

/// Node ids are Kafka node ids (`node.id`, non-negative) widened to openraft's `u64`.
pub type NodeId = u64;

/// What applying a batch answers: nothing beyond the log index the caller already gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied;

openraft::declare_raft_types!(
    /// Millrace's metadata quorum: batches of metadata records, nodes addressed by their
    /// controller-listener address.
    pub TypeConfig:
        D = MetadataBatch,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// The running Raft node.
pub type Raft = openraft::Raft<TypeConfig>;
