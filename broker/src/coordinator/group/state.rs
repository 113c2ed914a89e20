//! One classic group's state machine: membership, generations, the rebalance protocol and the
//! group's committed offsets. Pure logic over an explicit clock and a [`GroupLog`] to persist
//! to, so every rule can be tested without a network or a disk.
//!
//! # States (Kafka's `GroupState`)
//!
//! ```text
//!            first join                 all members joined          leader's SyncGroup
//!   Empty ───────────────▶ Preparing ──(or rebalance timeout)──▶ Completing ─────────────▶ Stable
//!     ▲                    Rebalance ◀──────────────────────────  Rebalance ◀── join/leave ──┘
//!     └── last member gone ───┘  ▲                                    │   (new generation)
//!                                └──── join, leave, expiry ───────────┘
//!   Empty ──(DeleteGroups, or offsets expired)──▶ Dead
//! ```
//!
//! # Expected flow of a rebalance
//! 1. A join, leave or session expiry moves the group to PreparingRebalance. Waiting SyncGroups
//!    are answered REBALANCE_IN_PROGRESS. From Empty the first rebalance waits
//!    `group.initial.rebalance.delay.ms`, extended while new members keep arriving, up to the
//!    rebalance timeout; otherwise it waits until every member has rejoined or the largest
//!    rebalance timeout passes.
//! 2. Completing the join removes dynamic members that did not rejoin (static ones stay,
//!    KIP-345), elects a leader among those that did, bumps the generation, selects the
//!    protocol every member supports with the most votes, and answers every JoinGroup — the
//!    leader's with all members' metadata.
//! 3. The leader's SyncGroup carries the assignment. It is written to `__consumer_offsets`
//!    before anyone is answered; then every waiting SyncGroup gets its member's assignment and
//!    the group is Stable. A member that does not sync within the rebalance timeout is removed.
//!
//! # Guarantees
//! - Every JoinGroup/SyncGroup left waiting is answered exactly once: on completion, with an
//!   error when the member is removed or fenced, or with NOT_COORDINATOR at shutdown.
//! - A committed offset is in the log before the commit is acknowledged; a group's assignment
//!   is in the log before any member receives it.
//! - Dead is final: a Dead group is dropped and a new one is created by the next join/commit.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    time::{Duration, Instant},
};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::{messages::ConsumerProtocolSubscription, protocol::Decodable};
use uuid::Uuid;

use super::{
    member::{Member, Responder},
    offsets::CommittedOffset,
    records::{self, GroupValue, MemberValue},
    CommitRequest, Env, GroupError, GroupListing, GroupSummary, JoinRequest, JoinResponse,
    JoinedMember, MemberSummary, SyncAssignment, SyncRequest, SyncResponse,
    NEW_MEMBER_JOIN_TIMEOUT,
};
use crate::partition::TopicPartition;

/// The protocol type of Kafka consumers, whose metadata this broker can read.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Kafka's group states, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (possibly committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignment.
    Stable,
    /// Removed; about to be dropped.
    Dead,
}

impl GroupState {
    /// The name Kafka reports in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The pending completion of a join phase.
#[derive(Debug, Clone, Copy)]
struct JoinTimer {
    deadline: Instant,
    /// Set for the first rebalance of an empty group (Kafka's `InitialDelayedJoin`): it only
    /// completes at the deadline, and extends itself while new members arrive.
    initial: Option<InitialDelay>,
}

#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    /// This delay.
    delay: Duration,
    /// How much of the rebalance timeout is left for further extensions.
    remaining: Duration,
}

/// A classic group.
#[derive(Debug)]
pub struct Group {
    id: String,
    state: GroupState,
    /// Wall-clock time the group entered its state (`currentStateTimestamp`); offsets of an
    /// empty group expire counting from it. `None` for groups loaded from old records.
    state_timestamp_ms: Option<i64>,
    /// Invariant: bumped exactly once per completed join phase.
    generation: i32,
    /// Set by the first member; `None` for a group that only stores offsets.
    protocol_type: Option<String>,
    /// The selected protocol (assignor) of the current generation.
    protocol_name: Option<String>,
    /// Invariant: `Some` and a key of `members` whenever `members` is non-empty.
    leader: Option<String>,
    /// Members by id, in join order (the first is the leader of last resort).
    members: IndexMap<String, Member>,
    /// `group.instance.id` → member id (KIP-345).
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED (KIP-394), with their deadline to rejoin.
    pending_members: HashMap<String, Instant>,
    /// Members that must still send their SyncGroup for this generation.
    pending_sync: HashSet<String>,
    join_timer: Option<JoinTimer>,
    /// When members in `pending_sync` are removed.
    sync_deadline: Option<Instant>,
    /// A member joined during the initial delay, so it may extend once more.
    new_member_added: bool,
    /// Topics the members subscribe to, read from consumer-protocol metadata; `None` if unknown.
    subscribed_topics: Option<BTreeSet<String>>,
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
}

/// Saturating `Duration` → ms for records.
fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, wall_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: Some(wall_ms),
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            join_timer: None,
            sync_deadline: None,
            new_member_added: false,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
        }
    }

    /// A group as loaded from `__consumer_offsets`: its last metadata record (if any) and its
    /// offsets. Members get a full session from `now` to come back, as on Kafka's coordinator
    /// failover; those that don't are expired and the group rebalances.
    pub fn from_records(
        id: &str,
        value: Option<GroupValue>,
        offsets: BTreeMap<TopicPartition, CommittedOffset>,
        now: Instant,
    ) -> Group {
        let mut g = Group::new(id, 0);
        g.state_timestamp_ms = None;
        g.offsets = offsets;
        let Some(v) = value else {
            return g;
        };
        g.protocol_type = Some(v.protocol_type).filter(|t| !t.is_empty());
        g.generation = v.generation;
        g.protocol_name = v.protocol;
        g.state_timestamp_ms = v.current_state_timestamp;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        for m in v.members {
            let session = Duration::from_millis(u64::try_from(m.session_timeout_ms).unwrap_or(0));
            let member = Member {
                id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: session,
                rebalance_timeout: Duration::from_millis(
                    u64::try_from(m.rebalance_timeout_ms).unwrap_or(0),
                ),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline: now + session,
                is_new: false,
            };
            if let Some(instance) = m.group_instance_id {
                g.static_members.insert(instance, m.member_id.clone());
            }
            g.members.insert(m.member_id, member);
        }
        g.leader = v
            .leader
            .filter(|l| g.members.contains_key(l))
            .or_else(|| g.members.keys().next().cloned());
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g.subscribed_topics = g.compute_subscribed_topics();
        g
    }

    // ------------------------------------------------------------------------------ accessors

    /// The group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The current leader.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Member ids, in join order.
    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// A member's current assignment.
    pub fn assignment(&self, member_id: &str) -> Option<&Bytes> {
        self.members.get(member_id).map(|m| &m.assignment)
    }

    /// The committed offset of a partition.
    pub fn offset(&self, tp: &TopicPartition) -> Option<&CommittedOffset> {
        self.offsets.get(tp)
    }

    /// Every committed offset.
    pub fn offsets(&self) -> &BTreeMap<TopicPartition, CommittedOffset> {
        &self.offsets
    }

    /// ListGroups' view.
    pub fn listing(&self) -> GroupListing {
        GroupListing {
            group_id: self.id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            state: self.state,
        }
    }

    /// DescribeGroups' view: metadata and assignments only once Stable, as Kafka reports them.
    pub fn summary(&self) -> GroupSummary {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol).cloned().unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// The earliest time [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self
            .members
            .values()
            .filter(|m| m.can_expire())
            .map(|m| m.heartbeat_deadline);
        let join = self
            .join_timer
            .filter(|_| self.state == GroupState::PreparingRebalance)
            .map(|t| t.deadline);
        let sync = self.sync_deadline.filter(|_| !self.pending_sync.is_empty());
        members
            .chain(self.pending_members.values().copied())
            .chain(join)
            .chain(sync)
            .min()
    }

    // ------------------------------------------------------------------- membership helpers

    fn transition(&mut self, state: GroupState, env: &Env<'_>) {
        self.state = state;
        self.state_timestamp_ms = Some(env.now.wall_ms);
    }

    fn is_static_member_fenced(&self, instance: Option<&str>, member_id: &str) -> bool {
        instance
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member; the leader passes to the longest-standing member.
    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let member = self.members.shift_remove(id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// The largest rebalance timeout of the members: how long a join phase may wait.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Whether a member with these protocols may (re)join: its protocol type matches and at
    /// least one protocol is supported by every other member.
    fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
        except: Option<&str>,
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let mut others = self
            .members
            .values()
            .filter(|m| Some(m.id.as_str()) != except)
            .peekable();
        if others.peek().is_none() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let others: Vec<&Member> = others.collect();
        protocols
            .iter()
            .any(|(name, _)| others.iter().all(|m| m.metadata(name).is_some()))
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, the one most
    /// members prefer; ties go to the one the leader prefers.
    fn select_protocol(&self) -> Option<String> {
        let first = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next())?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.metadata(name).is_some()))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some(choice) = m.vote(&candidates) {
                *votes.entry(choice).or_default() += 1;
            }
        }
        // Candidates are in the leader's preference order: the first maximum wins ties.
        let mut best: Option<(&str, usize)> = None;
        for c in &candidates {
            let n = votes.get(c).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| n > most) {
                best = Some((c, n));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// The topics the members subscribe to, if every member's metadata is consumer-protocol
    /// metadata this broker can read.
    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let mut metadata = m.metadata(protocol)?.clone();
            if metadata.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            if version < 0 {
                return None;
            }
            let _ = bytes::Buf::get_i16(&mut metadata);
            // Newer versions only append fields: read them as the newest version we know.
            let subscription =
                ConsumerProtocolSubscription::decode(&mut metadata, version.min(3)).ok()?;
            topics.extend(subscription.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    fn subscribed_to(&self, topic: &str) -> bool {
        // Unknown subscriptions count as subscribed, as in Kafka: never delete what may be used.
        self.subscribed_topics
            .as_ref()
            .is_none_or(|topics| topics.contains(topic))
    }

    /// Members' metadata for the selected protocol, as the leader receives it.
    fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn current_generation_response(
        &self,
        member_id: &str,
        members: Vec<JoinedMember>,
    ) -> JoinResponse {
        JoinResponse {
            error: None,
            member_id: member_id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            members,
        }
    }

    /// The metadata record of the group, with `assignments` overriding members' current ones.
    fn group_value(&self, assignments: Option<&HashMap<String, Bytes>>) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: millis(m.rebalance_timeout),
                    session_timeout_ms: millis(m.session_timeout),
                    subscription: m.metadata(&protocol).cloned().unwrap_or_default(),
                    assignment: assignments
                        .and_then(|a| a.get(&m.id).cloned())
                        .unwrap_or_else(|| m.assignment.clone()),
                })
                .collect(),
        }
    }

    fn store(
        &self,
        env: &Env<'_>,
        assignments: Option<&HashMap<String, Bytes>>,
    ) -> Result<(), GroupError> {
        let value = records::encode_group_value(&self.group_value(assignments));
        env.log.append(
            &self.id,
            &[(records::group_key(&self.id), Some(value))],
            env.now.wall_ms,
        )
    }

    // ------------------------------------------------------------------------- rebalancing

    fn maybe_prepare_rebalance(&mut self, env: &Env<'_>, reason: &str) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(env, reason);
        }
    }

    fn prepare_rebalance(&mut self, env: &Env<'_>, reason: &str) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(GroupError::RebalanceInProgress);
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let now = env.now.instant;
        let rebalance_timeout = self.rebalance_timeout();
        self.join_timer = Some(if self.state == GroupState::Empty {
            let delay = env.config.initial_rebalance_delay;
            JoinTimer {
                deadline: now + delay,
                initial: Some(InitialDelay {
                    delay,
                    remaining: rebalance_timeout.saturating_sub(delay),
                }),
            }
        } else {
            JoinTimer {
                deadline: now + rebalance_timeout,
                initial: None,
            }
        });
        tracing::info!(
            group = %self.id,
            from = self.state.name(),
            generation = self.generation,
            reason,
            "preparing to rebalance group"
        );
        self.transition(GroupState::PreparingRebalance, env);
        env.counters.rebalances.inc();
        self.try_complete_join(env);
    }

    /// Completes the join phase now if every member has rejoined (not during the initial delay,
    /// which always runs its course so more members can arrive).
    fn try_complete_join(&mut self, env: &Env<'_>) {
        if self.state == GroupState::PreparingRebalance
            && self.join_timer.is_none_or(|t| t.initial.is_none())
            && self.all_members_joined()
        {
            self.complete_join(env);
        }
    }

    /// Kafka's `onCompleteJoin`: see step 2 of the module docs.
    fn complete_join(&mut self, env: &Env<'_>) {
        self.join_timer = None;
        self.new_member_added = false;
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in not_rejoined {
            tracing::info!(group = %self.id, member = %id, "removing member that did not rejoin");
            if let Some(mut m) = self.remove_member(&id) {
                m.answer_all(GroupError::UnknownMemberId);
            }
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined are left: wait for them (or for their
            // sessions to expire) for another rebalance timeout.
            self.join_timer = Some(JoinTimer {
                deadline: env.now.instant + self.rebalance_timeout(),
                initial: None,
            });
            return;
        }
        self.generation += 1;
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, env);
            self.subscribed_topics = self.compute_subscribed_topics();
            tracing::info!(group = %self.id, generation = self.generation, "group is now empty");
            // Losing this record is harmless: an empty generation has no assignment to keep.
            if let Err(e) = self.store(env, None) {
                tracing::warn!(group = %self.id, error = %e, "could not store empty group metadata");
            }
            return;
        }
        self.protocol_name = self.select_protocol();
        self.subscribed_topics = self.compute_subscribed_topics();
        self.transition(GroupState::CompletingRebalance, env);
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or(""),
            "group joined; waiting for the leader's assignment"
        );
        let all = self.current_member_metadata();
        let leader = self.leader.clone().unwrap_or_default();
        let now = env.now.instant;
        let template = self.current_generation_response("", Vec::new());
        for m in self.members.values_mut() {
            let members = if m.id == leader {
                all.clone()
            } else {
                Vec::new()
            };
            m.answer_join(JoinResponse {
                member_id: m.id.clone(),
                members,
                ..template.clone()
            });
            m.heartbeat_deadline = now + m.session_timeout;
            m.is_new = false;
            self.pending_sync.insert(m.id.clone());
        }
        self.sync_deadline = Some(now + self.rebalance_timeout());
    }

    /// Keeps the leader if it rejoined, else picks any member that did; false if none did.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .map(|m| m.id.clone())
        {
            Some(new_leader) => {
                self.leader = Some(new_leader);
                true
            }
            None => false,
        }
    }

    fn reset_and_propagate_assignment_error(&mut self, error: GroupError) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.answer_sync(Err(error.clone()));
        }
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
    }

    /// Removes a member (leave or expiry) and moves the rebalance on.
    fn remove_member_and_update(&mut self, id: &str, env: &Env<'_>, reason: &str) {
        if let Some(mut m) = self.remove_member(id) {
            m.answer_all(GroupError::UnknownMemberId);
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(env, reason)
            }
            GroupState::PreparingRebalance => self.try_complete_join(env),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // --------------------------------------------------------------------------- JoinGroup

    /// Handles a JoinGroup; `responder` is answered now or when the rebalance completes.
    pub fn join(&mut self, req: JoinRequest, responder: Responder<JoinResponse>, env: &Env<'_>) {
        if !self.accept_joining_member(&req.member_id, env.config.max_size) {
            // Kafka removes the member too: it may be an existing one after group.max.size was
            // lowered, and the group must shrink to the limit.
            if self.members.contains_key(&req.member_id) {
                self.remove_member_and_update(&req.member_id, env, "group is full");
            }
            let _ = responder.send(JoinResponse::error(
                String::new(),
                GroupError::GroupMaxSizeReached,
            ));
        } else if req.member_id.is_empty() {
            self.join_new_member(req, responder, env);
        } else {
            self.join_current_member(req, responder, env);
        }
        self.try_complete_join(env);
    }

    fn accept_joining_member(&self, member_id: &str, max_size: usize) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            // Counting members that rejoined lets the last ones to rejoin be the ones refused.
            GroupState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || self
                        .members
                        .values()
                        .filter(|m| m.awaiting_join.is_some())
                        .count()
                        < max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max_size
            }
        }
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        responder: Responder<JoinResponse>,
        env: &Env<'_>,
    ) {
        if self.state == GroupState::Dead {
            let _ = responder.send(JoinResponse::error(
                String::new(),
                GroupError::CoordinatorNotAvailable,
            ));
            return;
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols, None) {
            let _ = responder.send(JoinResponse::error(
                String::new(),
                GroupError::InconsistentGroupProtocol,
            ));
            return;
        }
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let new_id = format!("{prefix}-{}", Uuid::new_v4());
        match &req.group_instance_id {
            Some(instance) => match self.static_members.get(instance).cloned() {
                Some(old_id) => self.replace_static_member(&old_id, new_id, req, responder, env),
                None => self.add_member_and_rebalance(new_id, req, responder, env),
            },
            None if req.require_known_member_id => {
                // KIP-394: hand out the id first, so a client that times out and retries
                // rejoins as the same member instead of leaving a ghost behind.
                self.pending_members
                    .insert(new_id.clone(), env.now.instant + req.session_timeout);
                let _ = responder.send(JoinResponse::error(new_id, GroupError::MemberIdRequired));
            }
            None => self.add_member_and_rebalance(new_id, req, responder, env),
        }
    }

    fn join_current_member(
        &mut self,
        req: JoinRequest,
        responder: Responder<JoinResponse>,
        env: &Env<'_>,
    ) {
        let member_id = req.member_id.clone();
        let fail = |responder: Responder<JoinResponse>, e| {
            let _ = responder.send(JoinResponse::error(member_id.clone(), e));
        };
        if self.state == GroupState::Dead {
            return fail(responder, GroupError::CoordinatorNotAvailable);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols, Some(&member_id)) {
            return fail(responder, GroupError::InconsistentGroupProtocol);
        }
        if self.pending_members.contains_key(&member_id) {
            if req.group_instance_id.is_some() {
                // Pending ids are only handed to dynamic members; let it start over.
                self.pending_members.remove(&member_id);
                return fail(responder, GroupError::UnknownMemberId);
            }
            self.pending_members.remove(&member_id);
            return self.add_member_and_rebalance(member_id.clone(), req, responder, env);
        }
        let instance = req.group_instance_id.as_deref();
        if self.is_static_member_fenced(instance, &member_id) {
            return fail(responder, GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(&member_id)
            || instance.is_some_and(|i| !self.static_members.contains_key(i))
        {
            return fail(responder, GroupError::UnknownMemberId);
        }
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        let matches = self
            .members
            .get(&member_id)
            .is_some_and(|m| m.matches(&req.protocols));
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(req, responder, env, "member rejoining")
            }
            GroupState::CompletingRebalance if matches => {
                // It missed its JoinGroup answer: give it the same one again.
                let members = if is_leader {
                    self.current_member_metadata()
                } else {
                    Vec::new()
                };
                let _ = responder.send(self.current_generation_response(&member_id, members));
            }
            GroupState::CompletingRebalance => {
                self.update_member_and_rebalance(req, responder, env, "member metadata changed")
            }
            // A leader's rejoin is how a consumer asks for a rebalance (e.g. new partitions of
            // a subscribed topic), so it always triggers one.
            GroupState::Stable if is_leader => {
                self.update_member_and_rebalance(req, responder, env, "leader rejoining")
            }
            GroupState::Stable if !matches => {
                self.update_member_and_rebalance(req, responder, env, "member metadata changed")
            }
            GroupState::Stable => {
                let _ = responder.send(self.current_generation_response(&member_id, Vec::new()));
            }
            GroupState::Empty | GroupState::Dead => fail(responder, GroupError::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        req: JoinRequest,
        responder: Responder<JoinResponse>,
        env: &Env<'_>,
    ) {
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        tracing::debug!(group = %self.id, member = %id, "adding member");
        self.add_member(Member {
            id,
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(responder),
            awaiting_sync: None,
            // A new member cannot heartbeat before its first JoinGroup answer; bound the wait.
            heartbeat_deadline: env.now.instant + NEW_MEMBER_JOIN_TIMEOUT,
            is_new: true,
        });
        self.maybe_prepare_rebalance(env, "new member joined");
    }

    fn update_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        responder: Responder<JoinResponse>,
        env: &Env<'_>,
        reason: &str,
    ) {
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.answer_join(JoinResponse::error(
                m.id.clone(),
                GroupError::RebalanceInProgress,
            ));
            m.protocols = req.protocols;
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.awaiting_join = Some(responder);
        }
        self.maybe_prepare_rebalance(env, reason);
    }

    /// KIP-345: a static member restarting with an unknown member id takes over its old
    /// identity. A Stable group whose protocol stays the same keeps its generation and
    /// assignment: the member gets them back without a rebalance.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
        responder: Responder<JoinResponse>,
        env: &Env<'_>,
    ) {
        let Some(mut member) = self.members.shift_remove(old_id) else {
            let _ = responder.send(JoinResponse::error(new_id, GroupError::UnknownMemberId));
            return;
        };
        // The old instance, if it is still around and waiting, is told it has been replaced.
        member.answer_all(GroupError::FencedInstanceId);
        let old_leader = self.leader.clone();
        let instance = req.group_instance_id.clone().unwrap_or_default();
        let saved = (
            member.protocols.clone(),
            member.session_timeout,
            member.rebalance_timeout,
        );
        member.id = new_id.clone();
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.heartbeat_deadline = env.now.instant + req.session_timeout;
        self.static_members.insert(instance.clone(), new_id.clone());
        if old_leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);

        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                match self.store(env, None) {
                    Ok(()) => {
                        tracing::info!(group = %self.id, instance = %instance, member = %new_id,
                            "static member rejoined; keeping its assignment");
                        let members = if req.supports_skip_assignment {
                            self.current_member_metadata()
                        } else {
                            Vec::new()
                        };
                        let mut response = self.current_generation_response(&new_id, members);
                        // The old leader id, so that a rejoining leader does not think it must
                        // assign again: a Stable group would not pass a new assignment on.
                        response.leader = old_leader.unwrap_or_default();
                        response.skip_assignment = req.supports_skip_assignment;
                        let _ = responder.send(response);
                    }
                    Err(e) => {
                        // Undo: the old member id stays the one on record.
                        if let Some(mut m) = self.members.shift_remove(&new_id) {
                            m.id = old_id.to_string();
                            (m.protocols, m.session_timeout, m.rebalance_timeout) = saved;
                            self.members.insert(old_id.to_string(), m);
                        }
                        self.static_members.insert(instance, old_id.to_string());
                        if self.leader.as_deref() == Some(new_id.as_str()) {
                            self.leader = Some(old_id.to_string());
                        }
                        if self.pending_sync.remove(&new_id) {
                            self.pending_sync.insert(old_id.to_string());
                        }
                        let _ = responder.send(JoinResponse::error(new_id, e));
                    }
                }
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.awaiting_join = Some(responder);
                }
                self.maybe_prepare_rebalance(env, "static member rejoined with other protocols");
            }
            GroupState::PreparingRebalance => {
                // Joins the rebalance under its new id.
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.awaiting_join = Some(responder);
                }
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = responder.send(JoinResponse::error(new_id, GroupError::UnknownMemberId));
            }
        }
    }

    // --------------------------------------------------------------------------- SyncGroup

    /// Handles a SyncGroup; `responder` is answered now or when the leader's assignment is in.
    pub fn sync(&mut self, req: SyncRequest, responder: Responder<SyncResponse>, env: &Env<'_>) {
        let fail = |responder: Responder<SyncResponse>, e| {
            let _ = responder.send(Err(e));
        };
        if self.state == GroupState::Dead {
            return fail(responder, GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return fail(responder, GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(&req.member_id) {
            return fail(responder, GroupError::UnknownMemberId);
        }
        if req.generation != self.generation {
            return fail(responder, GroupError::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| self.protocol_name.as_ref() != Some(n))
        {
            return fail(responder, GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(responder, GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(responder, GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.answer_sync(Err(GroupError::RebalanceInProgress));
                    m.awaiting_sync = Some(responder);
                }
                self.remove_pending_sync(&req.member_id);
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    self.complete_sync(req.assignments, env);
                }
            }
            GroupState::Stable => {
                self.remove_pending_sync(&req.member_id);
                let now = env.now.instant;
                let answer = SyncAssignment {
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: Bytes::new(),
                };
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.heartbeat_deadline = now + m.session_timeout;
                    let _ = responder.send(Ok(SyncAssignment {
                        assignment: m.assignment.clone(),
                        ..answer
                    }));
                }
            }
        }
    }

    /// The leader's assignment: persist it, then hand it out (step 3 of the module docs).
    fn complete_sync(&mut self, assignments: Vec<(String, Bytes)>, env: &Env<'_>) {
        // Members the leader left out get an empty assignment; unknown ids are ignored.
        let mut map: HashMap<String, Bytes> = assignments
            .into_iter()
            .filter(|(id, _)| self.members.contains_key(id))
            .collect();
        for id in self.members.keys() {
            map.entry(id.clone()).or_default();
        }
        if let Err(e) = self.store(env, Some(&map)) {
            tracing::warn!(group = %self.id, error = %e, "could not store the group's assignment");
            self.reset_and_propagate_assignment_error(e);
            self.maybe_prepare_rebalance(env, "storing the assignment failed");
            return;
        }
        let now = env.now.instant;
        let (protocol_type, protocol_name) =
            (self.protocol_type.clone(), self.protocol_name.clone());
        for m in self.members.values_mut() {
            m.assignment = map.remove(&m.id).unwrap_or_default();
            let answered = m.answer_sync(Ok(SyncAssignment {
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment: m.assignment.clone(),
            }));
            if answered {
                m.heartbeat_deadline = now + m.session_timeout;
            }
        }
        self.transition(GroupState::Stable, env);
        env.counters.completed_rebalances.inc();
        tracing::info!(group = %self.id, generation = self.generation, "group is stable");
    }

    // --------------------------------------------------------------- Heartbeat, LeaveGroup

    /// Handles a Heartbeat: keeps the member's session alive, and tells it when to rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        env: &Env<'_>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(group_instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        let state = self.state;
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                m.heartbeat_deadline = env.now.instant + m.session_timeout;
                Ok(())
            }
            GroupState::PreparingRebalance => {
                m.heartbeat_deadline = env.now.instant + m.session_timeout;
                Err(GroupError::RebalanceInProgress)
            }
        }
    }

    /// Handles one member of a LeaveGroup. An empty member id with a `group.instance.id`
    /// removes that static member (KIP-345's administrative removal).
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        env: &Env<'_>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if member_id.is_empty() {
            let current = group_instance_id
                .and_then(|i| self.static_members.get(i))
                .cloned()
                .ok_or(GroupError::UnknownMemberId)?;
            self.remove_member_and_update(&current, env, "static member removed");
            return Ok(());
        }
        if self.pending_members.remove(member_id).is_some() {
            self.try_complete_join(env);
            return Ok(());
        }
        if self.is_static_member_fenced(group_instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        tracing::info!(group = %self.id, member = %member_id, "member left");
        self.remove_member_and_update(member_id, env, "member left");
        Ok(())
    }

    // ------------------------------------------------------------------------------ timers

    /// Runs whatever timers are due at `env.now`: pending members that never rejoined,
    /// expired sessions, members that never synced, and the end of a join phase.
    pub fn tick(&mut self, env: &Env<'_>) {
        let now = env.now.instant;
        let before = self.pending_members.len();
        self.pending_members.retain(|_, deadline| *deadline > now);
        if self.pending_members.len() != before {
            self.try_complete_join(env);
        }

        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.can_expire() && m.heartbeat_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member's session expired");
            self.remove_member_and_update(&id, env, "session timeout");
        }

        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            if matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) && !self.pending_sync.is_empty()
            {
                let laggards: Vec<String> = self.pending_sync.drain().collect();
                for id in &laggards {
                    if let Some(mut m) = self.remove_member(id) {
                        m.answer_all(GroupError::UnknownMemberId);
                    }
                }
                tracing::info!(group = %self.id, members = ?laggards, "removed members that did not sync");
                self.prepare_rebalance(env, "members did not send SyncGroup in time");
            }
        }

        if self.state == GroupState::PreparingRebalance {
            if let Some(timer) = self.join_timer.filter(|t| t.deadline <= now) {
                match timer.initial {
                    Some(initial) if self.new_member_added && !initial.remaining.is_zero() => {
                        self.new_member_added = false;
                        let delay = env.config.initial_rebalance_delay.min(initial.remaining);
                        self.join_timer = Some(JoinTimer {
                            deadline: now + delay,
                            initial: Some(InitialDelay {
                                delay,
                                remaining: initial.remaining.saturating_sub(initial.delay),
                            }),
                        });
                    }
                    _ => self.complete_join(env),
                }
            }
        }
    }

    /// Shutdown: every waiting request learns this broker is no longer the coordinator.
    pub fn unload(&mut self) {
        for m in self.members.values_mut() {
            m.answer_all(GroupError::NotCoordinator);
        }
        self.state = GroupState::Dead;
    }

    // ----------------------------------------------------------------------------- offsets

    /// Handles OffsetCommit for partitions the caller has already validated. A negative
    /// generation on an empty group is the simple consumer path (a consumer using `assign`).
    pub fn commit_offsets(&mut self, req: CommitRequest, env: &Env<'_>) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let as_member = if req.generation < 0 && self.state == GroupState::Empty {
            false
        } else {
            if self.is_static_member_fenced(req.group_instance_id.as_deref(), &req.member_id) {
                return Err(GroupError::FencedInstanceId);
            }
            if !self.members.contains_key(&req.member_id) {
                return Err(GroupError::UnknownMemberId);
            }
            if req.generation != self.generation {
                return Err(GroupError::IllegalGeneration);
            }
            match self.state {
                // The member has the new generation but not yet its assignment.
                GroupState::CompletingRebalance => return Err(GroupError::RebalanceInProgress),
                GroupState::Stable | GroupState::PreparingRebalance => true,
                GroupState::Empty | GroupState::Dead => return Err(GroupError::UnknownMemberId),
            }
        };
        if req.offsets.is_empty() {
            return Ok(());
        }
        let now_ms = env.now.wall_ms;
        let expire = req
            .retention
            .map(|r| now_ms.saturating_add(i64::try_from(r.as_millis()).unwrap_or(i64::MAX)));
        let committed: Vec<(TopicPartition, CommittedOffset)> = req
            .offsets
            .into_iter()
            .map(|(tp, o)| {
                let c = CommittedOffset {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: expire,
                };
                (tp, c)
            })
            .collect();
        let batch: Vec<(Bytes, Option<Bytes>)> = committed
            .iter()
            .map(|(tp, c)| {
                (
                    records::offset_key(&self.id, &tp.topic, tp.partition),
                    Some(records::encode_offset_value(&c.to_value())),
                )
            })
            .collect();
        env.log.append(&self.id, &batch, now_ms)?;
        env.counters.offset_commits.inc_by(committed.len() as u64);
        self.offsets.extend(committed);
        if as_member {
            if let Some(m) = self.members.get_mut(&req.member_id) {
                m.heartbeat_deadline = env.now.instant + m.session_timeout;
            }
        }
        Ok(())
    }

    /// OffsetDelete (KIP-496): only offsets of topics the group does not consume, unless it
    /// is empty. Returns the per-partition outcome.
    pub fn delete_offsets(
        &mut self,
        partitions: Vec<TopicPartition>,
        env: &Env<'_>,
    ) -> Result<Vec<(TopicPartition, Option<GroupError>)>, GroupError> {
        let consumer = self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE);
        let results: Vec<(TopicPartition, Option<GroupError>)> = match self.state {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => partitions.into_iter().map(|tp| (tp, None)).collect(),
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable
                if consumer =>
            {
                partitions
                    .into_iter()
                    .map(|tp| {
                        let e = self
                            .subscribed_to(&tp.topic)
                            .then_some(GroupError::GroupSubscribedToTopic);
                        (tp, e)
                    })
                    .collect()
            }
            _ => return Err(GroupError::NonEmptyGroup),
        };
        let doomed: Vec<&TopicPartition> = results
            .iter()
            .filter(|(tp, e)| e.is_none() && self.offsets.contains_key(tp))
            .map(|(tp, _)| tp)
            .collect();
        let tombstones: Vec<(Bytes, Option<Bytes>)> = doomed
            .iter()
            .map(|tp| (records::offset_key(&self.id, &tp.topic, tp.partition), None))
            .collect();
        env.log.append(&self.id, &tombstones, env.now.wall_ms)?;
        env.counters.offset_deletions.inc_by(doomed.len() as u64);
        let doomed: Vec<TopicPartition> = doomed.into_iter().cloned().collect();
        for tp in &doomed {
            self.offsets.remove(tp);
        }
        Ok(results)
    }

    /// DeleteGroups: an empty group's offsets and metadata are tombstoned and it becomes Dead.
    pub fn delete(&mut self, env: &Env<'_>) -> Result<(), GroupError> {
        match self.state {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(GroupError::NonEmptyGroup),
        }
        let mut tombstones: Vec<(Bytes, Option<Bytes>)> = self
            .offsets
            .keys()
            .map(|tp| (records::offset_key(&self.id, &tp.topic, tp.partition), None))
            .collect();
        tombstones.push((records::group_key(&self.id), None));
        env.log.append(&self.id, &tombstones, env.now.wall_ms)?;
        env.counters
            .offset_deletions
            .inc_by(self.offsets.len() as u64);
        self.offsets.clear();
        for (_, mut m) in self.members.drain(..) {
            m.answer_all(GroupError::CoordinatorNotAvailable);
        }
        self.transition(GroupState::Dead, env);
        tracing::info!(group = %self.id, "deleted group");
        Ok(())
    }

    /// `offsets.retention.minutes` (KIP-211): an empty group's offsets expire that long after
    /// it became empty; a Stable consumer group's offsets of topics it no longer subscribes to
    /// expire that long after their commit; a group that only stores offsets (no protocol)
    /// loses each that long after its commit. An empty group left with no offsets is removed.
    /// Returns how many offsets expired.
    pub fn expire_offsets(&mut self, env: &Env<'_>) -> Result<usize, GroupError> {
        let now_ms = env.now.wall_ms;
        let retention = env.config.offsets_retention;
        let expired: Vec<TopicPartition> = match (self.protocol_type.as_deref(), self.state) {
            (Some(_), GroupState::Empty) => self
                .offsets
                .iter()
                .filter(|(_, o)| {
                    let base = self.state_timestamp_ms.unwrap_or(o.commit_timestamp_ms);
                    o.expired(now_ms, base, retention)
                })
                .map(|(tp, _)| tp.clone())
                .collect(),
            (Some(CONSUMER_PROTOCOL_TYPE), GroupState::Stable)
                if self.subscribed_topics.is_some() =>
            {
                self.offsets
                    .iter()
                    .filter(|(tp, o)| {
                        !self.subscribed_to(&tp.topic)
                            && o.expired(now_ms, o.commit_timestamp_ms, retention)
                    })
                    .map(|(tp, _)| tp.clone())
                    .collect()
            }
            (None, _) => self
                .offsets
                .iter()
                .filter(|(_, o)| o.expired(now_ms, o.commit_timestamp_ms, retention))
                .map(|(tp, _)| tp.clone())
                .collect(),
            _ => Vec::new(),
        };
        let dead = self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && expired.len() == self.offsets.len();
        let mut tombstones: Vec<(Bytes, Option<Bytes>)> = expired
            .iter()
            .map(|tp| (records::offset_key(&self.id, &tp.topic, tp.partition), None))
            .collect();
        if dead {
            tombstones.push((records::group_key(&self.id), None));
        }
        env.log.append(&self.id, &tombstones, now_ms)?;
        for tp in &expired {
            self.offsets.remove(tp);
        }
        env.counters.offset_expirations.inc_by(expired.len() as u64);
        if dead {
            tracing::info!(group = %self.id, "removing empty group with no offsets left");
            self.transition(GroupState::Dead, env);
        }
        Ok(expired.len())
    }
}
