//! One member of a classic group: what it joined with, what it was assigned, and the long-poll
//! it may be waiting on (a JoinGroup or SyncGroup answered when the rebalance moves on).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{GroupError, JoinResponse, SyncResponse};

/// Where a waiting request's answer goes. Dropping one unanswered is never needed: every path
/// that removes a waiting member answers it first.
pub(crate) type Responder<T> = oneshot::Sender<T>;

/// A member of a group.
#[derive(Debug)]
pub(crate) struct Member {
    /// Member id, given by the coordinator.
    pub id: String,
    /// Static membership id (KIP-345), if the client configured `group.instance.id`.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address as Kafka prints it (`/127.0.0.1`).
    pub client_host: String,
    /// `session.timeout.ms`: how long without a heartbeat before the member is removed.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` for the Java consumer: how long a rebalance waits for the member.
    pub rebalance_timeout: Duration,
    /// Protocol type (`consumer`, …).
    pub protocol_type: String,
    /// Supported protocols (assignors) with their metadata, in the member's preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// The member's assignment in the current generation (empty until the leader's SyncGroup).
    pub assignment: Bytes,
    /// A JoinGroup waiting for the rebalance to complete.
    pub awaiting_join: Option<Responder<JoinResponse>>,
    /// A SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<Responder<SyncResponse>>,
    /// The member is removed if it has not heartbeated by then (see [`Member::can_expire`]).
    pub heartbeat_deadline: Instant,
    /// Joined during the current rebalance and has not yet received a JoinGroup answer. Such a
    /// member expires even while waiting (after Kafka's 5-minute new-member join timeout),
    /// because a client that gave up on its JoinGroup would otherwise stay forever.
    pub is_new: bool,
}

impl Member {
    /// The member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m)
    }

    /// Whether it joined with exactly these protocols (names, order and metadata).
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Its preferred protocol among `candidates` (Kafka's `MemberMetadata.vote`).
    pub fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// Whether the session timer applies now. A member waiting on a JoinGroup or SyncGroup
    /// cannot heartbeat (its connection is busy with the long poll), so the rebalance timeout
    /// governs it instead — except a new member, see [`Member::is_new`].
    pub fn can_expire(&self) -> bool {
        self.is_new || (self.awaiting_join.is_none() && self.awaiting_sync.is_none())
    }

    /// Answers a waiting JoinGroup, if any.
    pub fn answer_join(&mut self, response: JoinResponse) -> bool {
        match self.awaiting_join.take() {
            Some(tx) => {
                // The receiver is gone only if the connection closed; nothing to tell it then.
                let _ = tx.send(response);
                true
            }
            None => false,
        }
    }

    /// Answers a waiting SyncGroup, if any.
    pub fn answer_sync(&mut self, response: SyncResponse) -> bool {
        match self.awaiting_sync.take() {
            Some(tx) => {
                let _ = tx.send(response);
                true
            }
            None => false,
        }
    }

    /// Answers whatever it waits on with `error` (the member is being removed or fenced).
    pub fn answer_all(&mut self, error: GroupError) {
        let id = self.id.clone();
        self.answer_join(JoinResponse::error(id, error.clone()));
        self.answer_sync(Err(error));
    }
}
