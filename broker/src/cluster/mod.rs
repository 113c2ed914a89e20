//! Cluster metadata: the metadata log's records and image, the Raft quorum that replicates it,
//! the active controller's duties, and the broker's side of the control plane.

pub mod controller;
pub mod image;
pub mod node;
pub mod placement;
pub mod raft;
