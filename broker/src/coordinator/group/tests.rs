//! The group state machine against Kafka's rules, with an explicit clock and an in-memory log.
//! Each test names the rule it checks: Kafka's classic `GroupCoordinator` behaviour, or the
//! KIP that introduced it.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::ConsumerProtocolSubscription,
    protocol::{Encodable, StrBytes},
};
use millrace_log::{Log, LogConfig};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    records::{self, RecordKey},
    *,
};
use crate::partition::Partition;

/// Records every append; `fail` makes the next appends fail.
#[derive(Debug, Default)]
struct MemLog {
    records: Mutex<Vec<(String, Bytes, Option<Bytes>)>>,
    fail: AtomicBool,
}

impl GroupLog for MemLog {
    fn append(
        &self,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
        _now_ms: i64,
    ) -> Result<(), GroupError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(GroupError::Storage("injected failure".into()));
        }
        let mut all = self.records.lock();
        for (k, v) in records {
            all.push((group_id.to_string(), k.clone(), v.clone()));
        }
        Ok(())
    }
}

impl MemLog {
    /// The last group metadata record written.
    fn last_group_value(&self) -> Option<Option<records::GroupValue>> {
        self.records.lock().iter().rev().find_map(|(_, k, v)| {
            matches!(records::decode_key(k), Ok(RecordKey::GroupMetadata { .. })).then(|| {
                v.as_ref()
                    .map(|v| records::decode_group_value(v).expect("valid group value"))
            })
        })
    }

    fn count(&self) -> usize {
        self.records.lock().len()
    }
}

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

/// One group, its log and a clock that only moves when told to.
struct T {
    group: Group,
    log: MemLog,
    config: GroupConfig,
    counters: Counters,
    now: Now,
}

impl T {
    fn new() -> T {
        T::with_config(GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupConfig::default()
        })
    }

    fn with_config(config: GroupConfig) -> T {
        T {
            group: Group::new("g", 1_000_000),
            log: MemLog::default(),
            config,
            counters: Counters::unregistered(),
            now: Now {
                instant: Instant::now(),
                wall_ms: 1_000_000,
            },
        }
    }

    fn run<R>(&mut self, f: impl FnOnce(&mut Group, &Env<'_>) -> R) -> R {
        let env = Env {
            now: self.now,
            config: &self.config,
            log: &self.log,
            counters: &self.counters,
        };
        f(&mut self.group, &env)
    }

    fn advance(&mut self, d: Duration) {
        self.now.instant += d;
        self.now.wall_ms += i64::try_from(d.as_millis()).expect("small");
    }

    fn tick(&mut self) {
        self.run(|g, env| g.tick(env));
    }

    fn join(&mut self, req: JoinRequest) -> oneshot::Receiver<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        self.run(|g, env| g.join(req, tx, env));
        rx
    }

    fn sync(
        &mut self,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> oneshot::Receiver<SyncResponse> {
        let req = SyncRequest {
            group_id: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            generation,
            protocol_type: None,
            protocol_name: None,
            assignments,
        };
        let (tx, rx) = oneshot::channel();
        self.run(|g, env| g.sync(req, tx, env));
        rx
    }

    fn heartbeat(&mut self, member: &str, generation: i32) -> Result<(), GroupError> {
        self.run(|g, env| g.heartbeat(member, None, generation, env))
    }

    /// Forms a Stable group of `n` dynamic members; returns their ids, leader first.
    fn stable(&mut self, n: usize) -> Vec<String> {
        let mut rxs: Vec<_> = (0..n)
            .map(|i| self.join(req("", &format!("c{i}"))))
            .collect();
        // Initial delay of 0: one tick ends it, a second ends the extension new members earn.
        self.tick();
        self.tick();
        let joined: Vec<JoinResponse> = rxs.iter_mut().map(answered).collect();
        let generation = joined[0].generation;
        let leader = joined[0].leader.clone();
        let mut ids: Vec<String> = joined.iter().map(|r| r.member_id.clone()).collect();
        ids.sort_by_key(|id| *id != leader);
        let assignments = ids
            .iter()
            .map(|id| (id.clone(), Bytes::from(format!("assigned-{id}"))))
            .collect();
        let mut rxs: Vec<_> = ids[1..]
            .iter()
            .map(|id| self.sync(id, generation, Vec::new()))
            .collect();
        rxs.push(self.sync(&leader, generation, assignments));
        for rx in &mut rxs {
            answered(rx).expect("synced");
        }
        assert_eq!(self.group.state(), GroupState::Stable);
        ids
    }

    /// A Stable consumer group of one member subscribed to `orders`, with offsets committed
    /// for `orders` and for `old`, a topic it no longer subscribes to; returns the member id.
    fn subscribed_to_orders_with_old_offsets() -> (T, String) {
        let mut t = T::new();
        let mut a = t.join(JoinRequest {
            protocols: vec![("range".into(), subscription(&["orders"]))],
            ..req("", "a")
        });
        t.tick();
        let id = answered(&mut a).member_id;
        answered(&mut t.sync(&id, 1, vec![(id.clone(), Bytes::new())])).expect("sync");
        t.run(|g, env| g.commit_offsets(commit(&id, 1, &[("orders", 0, 1), ("old", 0, 2)]), env))
            .expect("commit");
        (t, id)
    }
}

fn req(member: &str, client: &str) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"range-meta"))],
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

fn static_req(member: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.into()),
        ..req(member, instance)
    }
}

fn answered<R: std::fmt::Debug>(rx: &mut oneshot::Receiver<R>) -> R {
    rx.try_recv().expect("answered")
}

fn waiting<R>(rx: &mut oneshot::Receiver<R>) -> bool {
    matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

/// Consumer-protocol subscription metadata (version 0) for `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.to_string()))
                .collect(),
        )
        .encode(&mut buf, 0)
        .expect("encode subscription");
    buf.freeze()
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition,
    }
}

fn commit(member: &str, generation: i32, offsets: &[(&str, i32, i64)]) -> CommitRequest {
    CommitRequest {
        member_id: member.into(),
        group_instance_id: None,
        generation,
        retention: None,
        offsets: offsets
            .iter()
            .map(|(t, p, o)| {
                (
                    tp(t, *p),
                    OffsetToCommit {
                        offset: *o,
                        leader_epoch: -1,
                        metadata: String::new(),
                    },
                )
            })
            .collect(),
    }
}

// ----------------------------------------------------------------------------- joining

/// KIP-394: a v4+ first join gets MEMBER_ID_REQUIRED with its id, and is only a member once it
/// rejoins with it; an id that is never used expires after the session timeout.
#[test]
fn kip394_first_join_gets_member_id_required() {
    let mut t = T::new();
    let mut rx = t.join(JoinRequest {
        require_known_member_id: true,
        ..req("", "c1")
    });
    let r = answered(&mut rx);
    assert_eq!(r.error, Some(GroupError::MemberIdRequired));
    assert!(r.member_id.starts_with("c1-"), "{}", r.member_id);
    assert!(t.group.member_ids().is_empty());
    assert_eq!(t.group.state(), GroupState::Empty);

    let mut rx = t.join(JoinRequest {
        require_known_member_id: true,
        ..req(&r.member_id, "c1")
    });
    assert!(waiting(&mut rx), "joined, waiting for the initial delay");
    t.tick();
    let joined = answered(&mut rx);
    assert_eq!(joined.error, None);
    assert_eq!(
        (joined.generation, joined.member_id.as_str()),
        (1, r.member_id.as_str())
    );
    assert_eq!(joined.leader, r.member_id);
    assert_eq!(
        joined.members.len(),
        1,
        "the leader gets every member's metadata"
    );

    // A pending id nobody claims goes away after the session timeout.
    let mut rx = t.join(JoinRequest {
        require_known_member_id: true,
        ..req("", "c2")
    });
    let ghost = answered(&mut rx).member_id;
    t.advance(SESSION);
    t.tick();
    let mut rx = t.join(JoinRequest {
        require_known_member_id: true,
        ..req(&ghost, "c2")
    });
    assert_eq!(answered(&mut rx).error, Some(GroupError::UnknownMemberId));
}

/// `group.initial.rebalance.delay.ms`: the first rebalance of an empty group waits the delay,
/// and each delay in which a new member arrived is followed by another, within the rebalance
/// timeout (Kafka's InitialDelayedJoin).
#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let mut t = T::with_config(GroupConfig {
        initial_rebalance_delay: Duration::from_secs(3),
        ..GroupConfig::default()
    });
    let mut a = t.join(req("", "a"));
    t.advance(Duration::from_secs(2));
    let mut b = t.join(req("", "b"));
    t.advance(Duration::from_secs(1));
    t.tick();
    assert!(
        waiting(&mut a) && waiting(&mut b),
        "extended: a member arrived during the delay"
    );
    t.advance(Duration::from_secs(2));
    t.tick();
    assert!(waiting(&mut a), "the extension runs its full 3 s");
    t.advance(Duration::from_secs(1));
    t.tick();
    let (ra, rb) = (answered(&mut a), answered(&mut b));
    assert_eq!((ra.generation, rb.generation), (1, 1));
    assert_eq!(ra.leader, ra.member_id, "the first member leads");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty(), "followers get no member list");
}

/// A join phase completes as soon as every member has rejoined, without waiting for the
/// rebalance timeout; members learn of the rebalance from their heartbeats.
#[test]
fn rebalance_completes_when_all_members_rejoin() {
    let mut t = T::new();
    let ids = t.stable(2);
    let mut c = t.join(req("", "c3"));
    assert_eq!(t.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        t.heartbeat(&ids[0], 1),
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(
        t.heartbeat(&ids[1], 1),
        Err(GroupError::RebalanceInProgress)
    );
    let mut a = t.join(req(&ids[0], "c0"));
    assert!(waiting(&mut a) && waiting(&mut c));
    let mut b = t.join(req(&ids[1], "c1"));
    let (ra, rb, rc) = (answered(&mut a), answered(&mut b), answered(&mut c));
    assert_eq!((ra.generation, rb.generation, rc.generation), (2, 2, 2));
    assert_eq!(ra.leader, ids[0], "the leader rejoined, so it stays leader");
    assert_eq!(ra.members.len(), 3);
    assert_eq!(t.group.state(), GroupState::CompletingRebalance);
}

/// Dynamic members that do not rejoin within the rebalance timeout are removed, and a leader
/// that did not rejoin is replaced by one that did (Kafka's onCompleteJoin).
#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let mut t = T::new();
    let ids = t.stable(3);
    // A follower's rejoin with new metadata starts a rebalance the leader sleeps through.
    let mut b = t.join(JoinRequest {
        protocols: vec![("range".into(), Bytes::from_static(b"new-meta"))],
        ..req(&ids[1], "c1")
    });
    let mut c = t.join(req(&ids[2], "c2"));
    // The leader is alive (it heartbeats) but does not rejoin.
    for _ in 0..3 {
        t.advance(Duration::from_secs(9));
        assert_eq!(
            t.heartbeat(&ids[0], 1),
            Err(GroupError::RebalanceInProgress)
        );
    }
    t.advance(REBALANCE - Duration::from_secs(27) - Duration::from_millis(1));
    t.tick();
    assert!(waiting(&mut b));
    t.advance(Duration::from_millis(1));
    t.tick();
    let rb = answered(&mut b);
    answered(&mut c);
    assert_eq!(rb.generation, 2);
    assert_ne!(rb.leader, ids[0], "the old leader did not rejoin");
    assert_eq!(t.group.member_ids().len(), 2);
    assert_eq!(t.heartbeat(&ids[0], 2), Err(GroupError::UnknownMemberId));
}

/// A Stable follower rejoining with unchanged metadata gets the current generation back
/// without a rebalance; the leader rejoining always triggers one (it is how the Java client
/// asks for a rebalance when topic metadata changes).
#[test]
fn follower_rejoin_with_same_metadata_does_not_rebalance() {
    let mut t = T::new();
    let ids = t.stable(2);
    let mut b = t.join(req(&ids[1], "c1"));
    let rb = answered(&mut b);
    assert_eq!((rb.error, rb.generation), (None, 1));
    assert_eq!(t.group.state(), GroupState::Stable);
    let mut a = t.join(req(&ids[0], "c0"));
    assert!(waiting(&mut a));
    assert_eq!(t.group.state(), GroupState::PreparingRebalance);
}

/// Protocol selection: among the protocols every member supports, the most preferred wins; a
/// member with no protocol in common, or another protocol type, gets
/// INCONSISTENT_GROUP_PROTOCOL.
#[test]
fn protocol_selection_and_inconsistent_protocols() {
    let mut t = T::new();
    let both = vec![
        ("cooperative-sticky".to_string(), Bytes::from_static(b"cs")),
        ("range".to_string(), Bytes::from_static(b"r")),
    ];
    let mut a = t.join(JoinRequest {
        protocols: both.clone(),
        ..req("", "a")
    });
    let mut b = t.join(JoinRequest {
        protocols: vec![("range".to_string(), Bytes::from_static(b"r2"))],
        ..req("", "b")
    });
    let mut c = t.join(JoinRequest {
        protocols: vec![("roundrobin".to_string(), Bytes::new())],
        ..req("", "c")
    });
    assert_eq!(
        answered(&mut c).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    let mut d = t.join(JoinRequest {
        protocol_type: "connect".into(),
        protocols: both,
        ..req("", "d")
    });
    assert_eq!(
        answered(&mut d).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    t.tick();
    t.tick();
    let ra = answered(&mut a);
    answered(&mut b);
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    // The leader receives each member's metadata for the chosen protocol, byte for byte.
    let metas: Vec<&[u8]> = ra.members.iter().map(|m| &m.metadata[..]).collect();
    assert_eq!(metas, vec![&b"r"[..], &b"r2"[..]]);
}

/// `group.max.size`: a new member beyond the limit gets GROUP_MAX_SIZE_REACHED.
#[test]
fn group_max_size_is_enforced() {
    let mut t = T::with_config(GroupConfig {
        initial_rebalance_delay: Duration::ZERO,
        max_size: 2,
        ..GroupConfig::default()
    });
    t.stable(2);
    let mut c = t.join(req("", "c3"));
    assert_eq!(
        answered(&mut c).error,
        Some(GroupError::GroupMaxSizeReached)
    );
    assert_eq!(t.group.state(), GroupState::Stable);
}

// ------------------------------------------------------------------------------ syncing

/// SyncGroup: followers wait for the leader; the leader's assignment is written to the log
/// before anyone receives it; each member gets exactly the bytes the leader gave it (the
/// assignor, eager or cooperative, runs in the client).
#[test]
fn leaders_assignment_is_stored_then_handed_out() {
    let mut t = T::new();
    let mut a = t.join(req("", "a"));
    let mut b = t.join(req("", "b"));
    t.tick();
    t.tick();
    let (ra, rb) = (answered(&mut a), answered(&mut b));
    let (leader, follower) = (ra.member_id.clone(), rb.member_id.clone());
    let mut fs = t.sync(&follower, 1, Vec::new());
    assert!(waiting(&mut fs), "the follower waits for the leader");
    let before = t.log.count();
    let mut ls = t.sync(
        &leader,
        1,
        vec![
            (leader.clone(), Bytes::from_static(b"L")),
            (follower.clone(), Bytes::from_static(b"F")),
            ("stranger".into(), Bytes::from_static(b"X")),
        ],
    );
    assert_eq!(&answered(&mut ls).expect("leader").assignment[..], b"L");
    assert_eq!(&answered(&mut fs).expect("follower").assignment[..], b"F");
    assert_eq!(t.log.count(), before + 1);
    let stored = t.log.last_group_value().flatten().expect("group record");
    assert_eq!(stored.generation, 1);
    assert_eq!(stored.protocol.as_deref(), Some("range"));
    assert_eq!(stored.members.len(), 2, "the stranger is not recorded");
    assert_eq!(t.group.state(), GroupState::Stable);
    // Syncing again in Stable returns the same assignment.
    let mut again = t.sync(&follower, 1, Vec::new());
    assert_eq!(&answered(&mut again).expect("stable").assignment[..], b"F");
}

/// SyncGroup errors: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS.
#[test]
fn sync_errors() {
    let mut t = T::new();
    let ids = t.stable(2);
    assert_eq!(
        answered(&mut t.sync("nobody", 1, vec![])),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        answered(&mut t.sync(&ids[1], 7, vec![])),
        Err(GroupError::IllegalGeneration)
    );
    t.join(req("", "c3"));
    assert_eq!(
        answered(&mut t.sync(&ids[1], 1, vec![])),
        Err(GroupError::RebalanceInProgress)
    );
}

/// A waiting follower's SyncGroup is answered REBALANCE_IN_PROGRESS when a new rebalance
/// starts before the leader's assignment arrives.
#[test]
fn waiting_sync_is_cancelled_by_a_new_rebalance() {
    let mut t = T::new();
    let mut a = t.join(req("", "a"));
    let mut b = t.join(req("", "b"));
    t.tick();
    t.tick();
    answered(&mut a);
    let follower = answered(&mut b).member_id;
    let mut fs = t.sync(&follower, 1, Vec::new());
    t.join(req("", "c"));
    assert_eq!(answered(&mut fs), Err(GroupError::RebalanceInProgress));
}

/// If storing the assignment fails, the members get the error and the group rebalances
/// (Kafka's resetAndPropagateAssignmentError).
#[test]
fn failed_assignment_store_fails_the_sync_and_rebalances() {
    let mut t = T::new();
    let mut a = t.join(req("", "a"));
    t.tick();
    let leader = answered(&mut a).member_id;
    t.log.fail.store(true, Ordering::SeqCst);
    let mut s = t.sync(&leader, 1, vec![(leader.clone(), Bytes::from_static(b"L"))]);
    assert!(matches!(answered(&mut s), Err(GroupError::Storage(_))));
    assert_eq!(t.group.state(), GroupState::PreparingRebalance);
}

/// A member that never sends its SyncGroup is removed after the rebalance timeout and the
/// group rebalances without it (Kafka's pending-sync expiration).
#[test]
fn members_that_never_sync_are_removed() {
    let mut t = T::new();
    // A rebalance timeout shorter than the session, so the sync deadline comes first.
    let quick = Duration::from_secs(5);
    let mut a = t.join(JoinRequest {
        rebalance_timeout: quick,
        ..req("", "a")
    });
    let mut b = t.join(JoinRequest {
        rebalance_timeout: quick,
        ..req("", "b")
    });
    t.tick();
    t.tick();
    let leader = answered(&mut a).member_id;
    let follower = answered(&mut b).member_id;
    let mut fs = t.sync(&follower, 1, Vec::new());
    t.advance(quick);
    t.tick();
    assert_eq!(answered(&mut fs), Err(GroupError::RebalanceInProgress));
    assert_eq!(t.group.member_ids(), vec![follower.clone()]);
    assert_ne!(t.group.leader(), Some(leader.as_str()));
}

// --------------------------------------------------------------- heartbeats, leaving

/// `session.timeout.ms`: a member without heartbeats is removed and the group rebalances;
/// heartbeats keep the others in.
#[test]
fn session_timeout_removes_silent_members() {
    let mut t = T::new();
    let ids = t.stable(2);
    t.advance(SESSION / 2);
    t.heartbeat(&ids[0], 1).expect("alive");
    t.advance(SESSION / 2);
    t.tick();
    assert_eq!(t.group.member_ids(), vec![ids[0].clone()]);
    assert_eq!(t.group.state(), GroupState::PreparingRebalance);
    let mut a = t.join(req(&ids[0], "c0"));
    let ra = answered(&mut a);
    assert_eq!((ra.generation, ra.members.len()), (2, 1));
}

/// Heartbeat errors: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION.
#[test]
fn heartbeat_errors() {
    let mut t = T::new();
    let ids = t.stable(1);
    assert_eq!(t.heartbeat("nobody", 1), Err(GroupError::UnknownMemberId));
    assert_eq!(t.heartbeat(&ids[0], 0), Err(GroupError::IllegalGeneration));
    assert_eq!(t.heartbeat(&ids[0], 1), Ok(()));
}

/// LeaveGroup: a leaving member triggers a rebalance at once; when the last member leaves the
/// group becomes Empty with a new generation, which is stored.
#[test]
fn leaving_members_rebalance_and_the_last_one_empties_the_group() {
    let mut t = T::new();
    let ids = t.stable(2);
    t.run(|g, env| g.leave(&ids[1], None, env)).expect("leave");
    assert_eq!(t.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        t.run(|g, env| g.leave("nobody", None, env)),
        Err(GroupError::UnknownMemberId)
    );
    let mut a = t.join(req(&ids[0], "c0"));
    assert_eq!(answered(&mut a).generation, 2);
    t.run(|g, env| g.leave(&ids[0], None, env)).expect("leave");
    assert_eq!(t.group.state(), GroupState::Empty);
    assert_eq!(t.group.generation(), 3);
    let stored = t
        .log
        .last_group_value()
        .flatten()
        .expect("empty group stored");
    assert_eq!((stored.generation, stored.members.len()), (3, 0));
    assert_eq!(stored.protocol, None);
}

// ------------------------------------------------------------------- static membership

/// Forms a Stable group of a static member `s1` and a dynamic member; returns
/// (static member id, dynamic member id, leader id).
fn static_group(t: &mut T) -> (String, String, String) {
    let mut s = t.join(static_req("", "s1"));
    let mut d = t.join(req("", "d1"));
    t.tick();
    t.tick();
    let (rs, rd) = (answered(&mut s), answered(&mut d));
    let assignments = vec![
        (rs.member_id.clone(), Bytes::from_static(b"static-parts")),
        (rd.member_id.clone(), Bytes::from_static(b"dynamic-parts")),
    ];
    let leader = rs.leader.clone();
    let mut syncs = vec![
        t.sync(
            &rd.member_id,
            1,
            if leader == rd.member_id {
                assignments.clone()
            } else {
                vec![]
            },
        ),
        t.sync(
            &rs.member_id,
            1,
            if leader == rs.member_id {
                assignments
            } else {
                vec![]
            },
        ),
    ];
    for s in &mut syncs {
        answered(s).expect("synced");
    }
    (rs.member_id, rd.member_id, leader)
}

/// KIP-345: a static member that restarts (joins with no member id and its
/// `group.instance.id`) while the group is Stable gets a new member id, the same generation and
/// its old assignment, without a rebalance; the old member id is fenced.
#[test]
fn kip345_static_member_restart_keeps_assignment_without_rebalance() {
    let mut t = T::new();
    let (old_id, dynamic, leader) = static_group(&mut t);
    let rebalances = t.counters.rebalances.get();
    let mut rejoin = t.join(static_req("", "s1"));
    let r = answered(&mut rejoin);
    assert_eq!(r.error, None);
    assert_ne!(r.member_id, old_id);
    assert_eq!(r.generation, 1, "same generation: no rebalance");
    assert_eq!(
        r.leader, leader,
        "the old leader id, so it does not assign again"
    );
    assert_eq!(t.group.state(), GroupState::Stable);
    assert_eq!(t.counters.rebalances.get(), rebalances);
    let mut s = t.sync(&r.member_id, 1, Vec::new());
    assert_eq!(
        &answered(&mut s).expect("assignment").assignment[..],
        b"static-parts"
    );
    // The replaced instance is fenced; the dynamic member never noticed.
    let fenced = t.run(|g, env| g.heartbeat(&old_id, Some("s1"), 1, env));
    assert_eq!(fenced, Err(GroupError::FencedInstanceId));
    assert_eq!(t.heartbeat(&dynamic, 1), Ok(()));
    let stored = t.log.last_group_value().flatten().expect("stored");
    assert!(stored
        .members
        .iter()
        .any(|m| m.member_id == r.member_id && m.group_instance_id.as_deref() == Some("s1")));
}

/// KIP-345: a static member is not dropped by a rebalance it sleeps through (only its session
/// timeout removes it), so a restart within the session keeps its place.
#[test]
fn kip345_static_member_survives_a_rebalance_it_misses() {
    let mut t = T::new();
    let (static_id, dynamic, _) = static_group(&mut t);
    let mut d = t.join(JoinRequest {
        protocols: vec![("range".into(), Bytes::from_static(b"changed"))],
        ..req(&dynamic, "d1")
    });
    // The static member's process is alive but slow to rejoin: it still heartbeats.
    for _ in 0..3 {
        t.advance(Duration::from_secs(9));
        let hb = t.run(|g, env| g.heartbeat(&static_id, Some("s1"), 1, env));
        assert_eq!(hb, Err(GroupError::RebalanceInProgress));
    }
    t.advance(REBALANCE - Duration::from_secs(27));
    t.tick();
    let rd = answered(&mut d);
    assert_eq!(rd.generation, 2);
    assert!(
        t.group.member_ids().contains(&static_id),
        "static member kept"
    );
    // Without heartbeats it goes once its session is over.
    t.advance(SESSION);
    t.tick();
    assert!(!t.group.member_ids().contains(&static_id));
}

/// KIP-345: LeaveGroup with only a `group.instance.id` removes that static member (the admin
/// path, `kafka-consumer-groups --delete --members`).
#[test]
fn kip345_leave_by_instance_id() {
    let mut t = T::new();
    let (static_id, _, _) = static_group(&mut t);
    t.run(|g, env| g.leave("", Some("s1"), env))
        .expect("removed");
    assert!(!t.group.member_ids().contains(&static_id));
    assert_eq!(
        t.run(|g, env| g.leave("", Some("s1"), env)),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        t.run(|g, env| g.leave("not-s1", Some("s2"), env)),
        Err(GroupError::UnknownMemberId)
    );
}

/// KIP-345: an old instance still using its replaced member id is fenced on every API.
#[test]
fn kip345_replaced_instance_is_fenced_everywhere() {
    let mut t = T::new();
    let (old_id, _, _) = static_group(&mut t);
    let mut rejoin = t.join(static_req("", "s1"));
    answered(&mut rejoin);
    let mut j = t.join(static_req(&old_id, "s1"));
    assert_eq!(answered(&mut j).error, Some(GroupError::FencedInstanceId));
    let req = SyncRequest {
        group_id: "g".into(),
        member_id: old_id.clone(),
        group_instance_id: Some("s1".into()),
        generation: 1,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![],
    };
    let (tx, mut rx) = oneshot::channel();
    t.run(|g, env| g.sync(req, tx, env));
    assert_eq!(answered(&mut rx), Err(GroupError::FencedInstanceId));
    let mut c = commit(&old_id, 1, &[("t", 0, 1)]);
    c.group_instance_id = Some("s1".into());
    assert_eq!(
        t.run(|g, env| g.commit_offsets(c, env)),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(
        t.run(|g, env| g.leave(&old_id, Some("s1"), env)),
        Err(GroupError::FencedInstanceId)
    );
}

// ------------------------------------------------------------------------------ offsets

/// OffsetCommit: the simple consumer path (generation -1, no member id) commits to an empty
/// group; members must give their generation; a commit is on the log before it is applied.
#[test]
fn offset_commit_rules() {
    let mut t = T::new();
    t.run(|g, env| g.commit_offsets(commit("", -1, &[("t", 0, 5)]), env))
        .expect("simple consumer commit");
    assert_eq!(t.group.offset(&tp("t", 0)).map(|o| o.offset), Some(5));
    let ids = t.stable(1);
    assert_eq!(
        t.run(|g, env| g.commit_offsets(commit("", -1, &[("t", 0, 6)]), env)),
        Err(GroupError::UnknownMemberId),
        "a group with members only takes commits from them"
    );
    assert_eq!(
        t.run(|g, env| g.commit_offsets(commit(&ids[0], 0, &[("t", 0, 6)]), env)),
        Err(GroupError::IllegalGeneration)
    );
    t.run(|g, env| g.commit_offsets(commit(&ids[0], 1, &[("t", 0, 7)]), env))
        .expect("member commit");
    assert_eq!(t.group.offset(&tp("t", 0)).map(|o| o.offset), Some(7));
    t.log.fail.store(true, Ordering::SeqCst);
    assert!(t
        .run(|g, env| g.commit_offsets(commit(&ids[0], 1, &[("t", 0, 8)]), env))
        .is_err());
    assert_eq!(
        t.group.offset(&tp("t", 0)).map(|o| o.offset),
        Some(7),
        "a failed write changes nothing"
    );
}

/// A member that has its new generation but not yet its assignment gets REBALANCE_IN_PROGRESS
/// for a commit (Kafka 2.x+); during PreparingRebalance commits of the old generation succeed
/// (so an eager consumer can commit before revoking).
#[test]
fn commits_during_rebalances() {
    let mut t = T::new();
    let ids = t.stable(2);
    t.join(req("", "c3"));
    t.run(|g, env| g.commit_offsets(commit(&ids[0], 1, &[("t", 0, 1)]), env))
        .expect("commit while preparing");
    let mut a = t.join(req(&ids[0], "c0"));
    let mut b = t.join(req(&ids[1], "c1"));
    assert_eq!(answered(&mut a).generation, 2);
    answered(&mut b);
    assert_eq!(
        t.run(|g, env| g.commit_offsets(commit(&ids[0], 2, &[("t", 0, 2)]), env)),
        Err(GroupError::RebalanceInProgress)
    );
}

/// KIP-211 retention: offsets of an empty consumer group expire `offsets.retention.minutes`
/// after the group became empty (not after the commit); the group then has nothing left and
/// is removed with a tombstone.
#[test]
fn kip211_offsets_expire_after_the_group_is_empty() {
    let mut t = T::new();
    let ids = t.stable(1);
    t.run(|g, env| g.commit_offsets(commit(&ids[0], 1, &[("t", 0, 3), ("t", 1, 4)]), env))
        .expect("commit");
    t.advance(Duration::from_secs(10 * 24 * 3600));
    assert_eq!(t.run(|g, env| g.expire_offsets(env)), Ok(0), "Stable: kept");
    t.run(|g, env| g.leave(&ids[0], None, env)).expect("leave");
    assert_eq!(t.group.state(), GroupState::Empty);
    t.advance(t.config.offsets_retention - Duration::from_millis(1));
    assert_eq!(t.run(|g, env| g.expire_offsets(env)), Ok(0));
    t.advance(Duration::from_millis(1));
    assert_eq!(t.run(|g, env| g.expire_offsets(env)), Ok(2));
    assert_eq!(t.group.state(), GroupState::Dead);
    assert_eq!(t.log.last_group_value(), Some(None), "group tombstone");
}

/// KIP-211: a Stable consumer group keeps offsets of topics it subscribes to, and loses those
/// of other topics `offsets.retention.minutes` after their commit.
#[test]
fn kip211_stable_group_expires_only_unsubscribed_topics() {
    let (mut t, id) = T::subscribed_to_orders_with_old_offsets();
    t.advance(t.config.offsets_retention);
    t.heartbeat(&id, 1).expect("alive");
    assert_eq!(t.run(|g, env| g.expire_offsets(env)), Ok(1));
    assert!(t.group.offset(&tp("orders", 0)).is_some());
    assert!(t.group.offset(&tp("old", 0)).is_none());
}

/// OffsetCommit v2–v4's explicit retention still expires at its own time.
#[test]
fn explicit_retention_time_is_honoured() {
    let mut t = T::new();
    let mut c = commit("", -1, &[("t", 0, 1)]);
    c.retention = Some(Duration::from_secs(60));
    t.run(|g, env| g.commit_offsets(c, env)).expect("commit");
    t.advance(Duration::from_secs(59));
    assert_eq!(t.run(|g, env| g.expire_offsets(env)), Ok(0));
    t.advance(Duration::from_secs(1));
    assert_eq!(t.run(|g, env| g.expire_offsets(env)), Ok(1));
}

/// KIP-496 OffsetDelete: refused per partition for topics an active consumer group subscribes
/// to (GROUP_SUBSCRIBED_TO_TOPIC), allowed for others, and for everything once empty.
#[test]
fn kip496_offset_delete() {
    let (mut t, id) = T::subscribed_to_orders_with_old_offsets();
    let results = t
        .run(|g, env| g.delete_offsets(vec![tp("orders", 0), tp("old", 0)], env))
        .expect("delete");
    assert_eq!(
        results,
        vec![
            (tp("orders", 0), Some(GroupError::GroupSubscribedToTopic)),
            (tp("old", 0), None)
        ]
    );
    assert!(t.group.offset(&tp("old", 0)).is_none());
    t.run(|g, env| g.leave(&id, None, env)).expect("leave");
    let results = t
        .run(|g, env| g.delete_offsets(vec![tp("orders", 0)], env))
        .expect("delete");
    assert_eq!(results, vec![(tp("orders", 0), None)]);
    assert!(t.group.offsets().is_empty());
}

/// DeleteGroups: NON_EMPTY_GROUP while members remain; an empty group's offsets and metadata
/// are tombstoned and it becomes Dead.
#[test]
fn delete_group_only_when_empty() {
    let mut t = T::new();
    let ids = t.stable(1);
    t.run(|g, env| g.commit_offsets(commit(&ids[0], 1, &[("t", 0, 3)]), env))
        .expect("commit");
    assert_eq!(
        t.run(|g, env| g.delete(env)),
        Err(GroupError::NonEmptyGroup)
    );
    t.run(|g, env| g.leave(&ids[0], None, env)).expect("leave");
    t.run(|g, env| g.delete(env)).expect("delete");
    assert_eq!(t.group.state(), GroupState::Dead);
    let tombstones = t
        .log
        .records
        .lock()
        .iter()
        .rev()
        .take(2)
        .filter(|(_, _, v)| v.is_none())
        .count();
    assert_eq!(tombstones, 2, "offset and group tombstones");
}

// --------------------------------------------------------------------- loading, shutdown

/// Coordinator failover/restart: a group loaded from its records is Stable with its
/// generation, members and assignments; members that come back just heartbeat, the others
/// expire after their session.
#[test]
fn loaded_group_resumes_and_expires_absent_members() {
    let mut t = T::new();
    let ids = t.stable(2);
    let value = t.log.last_group_value().flatten().expect("stored");
    let now = t.now.instant;
    t.group = Group::from_records("g", Some(value), Default::default(), now);
    assert_eq!(t.group.state(), GroupState::Stable);
    assert_eq!(t.group.generation(), 1);
    assert_eq!(t.group.leader(), Some(ids[0].as_str()));
    assert_eq!(
        t.group.assignment(&ids[1]).map(|a| a.to_vec()),
        Some(format!("assigned-{}", ids[1]).into_bytes())
    );
    t.advance(SESSION / 2);
    t.heartbeat(&ids[0], 1).expect("back");
    t.advance(SESSION / 2);
    t.tick();
    assert_eq!(t.group.member_ids(), vec![ids[0].clone()]);
}

/// Shutdown answers every waiting JoinGroup with NOT_COORDINATOR, so clients look for the
/// coordinator again instead of hanging.
#[test]
fn unload_answers_waiting_requests() {
    let mut t = T::with_config(GroupConfig {
        initial_rebalance_delay: Duration::from_secs(3),
        ..GroupConfig::default()
    });
    let mut a = t.join(req("", "a"));
    t.group.unload();
    assert_eq!(answered(&mut a).error, Some(GroupError::NotCoordinator));
    assert_eq!(t.group.state(), GroupState::Dead);
}

/// The real path: commits and group metadata appended to `__consumer_offsets` partitions on
/// disk are found again by a new coordinator that loads them (a broker restart).
#[test]
fn coordinator_reloads_offsets_and_groups_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let partitions = |n: i32, clean: bool| -> Vec<Arc<Partition>> {
        (0..n)
            .map(|p| {
                let tp = TopicPartition {
                    topic: OFFSETS_TOPIC.into(),
                    partition: p,
                };
                let config = LogConfig {
                    cleanup_delete: false,
                    cleanup_compact: true,
                    ..LogConfig::default()
                };
                let mut log = Log::open(&dir.path().join(tp.dir_name()), config, None, None, clean)
                    .expect("open log");
                let leo = log.log_end_offset();
                log.set_high_watermark(leo);
                Arc::new(Partition::new(tp, Uuid::nil(), log))
            })
            .collect()
    };
    let config = GroupConfig {
        offsets_topic_partitions: 3,
        initial_rebalance_delay: Duration::ZERO,
        ..GroupConfig::default()
    };
    let first = GroupCoordinator::new(config.clone());
    first.attach(partitions(3, true).into_iter().map(Some).collect());
    first.load().expect("load empty");
    for (group, offset) in [("alpha", 10), ("beta", 20), ("gamma", 30)] {
        first
            .commit_offsets(
                group,
                commit("", -1, &[("t", 0, offset), ("t", 1, offset + 1)]),
            )
            .expect("commit");
    }
    first
        .commit_offsets("alpha", commit("", -1, &[("t", 0, 11)]))
        .expect("recommit");
    first.delete_group("gamma").expect("delete");
    drop(first);

    let second = GroupCoordinator::new(config);
    // Opened as after a crash: the logs were never closed.
    second.attach(partitions(3, false).into_iter().map(Some).collect());
    assert_eq!(second.check_available(), Err(GroupError::LoadInProgress));
    assert_eq!(second.load().expect("load"), 2);
    let alpha = second
        .fetch_offsets("alpha", Some(vec![tp("t", 0), tp("t", 1)]))
        .expect("fetch");
    let offsets: Vec<Option<i64>> = alpha
        .iter()
        .map(|(_, o)| o.as_ref().map(|o| o.offset))
        .collect();
    assert_eq!(
        offsets,
        vec![Some(11), Some(11)],
        "the latest commit of each partition wins"
    );
    let beta = second.fetch_offsets("beta", None).expect("fetch");
    assert_eq!(beta.len(), 2);
    assert_eq!(
        second
            .describe_group("gamma")
            .expect("describe")
            .map(|g| g.state),
        None
    );
    let (error, listed) = second.list_groups();
    assert_eq!(error, None);
    let names: Vec<&str> = listed.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(names, vec!["alpha", "beta"]);
}

/// Checks made before any group is touched: COORDINATOR_LOAD_IN_PROGRESS until loaded,
/// INVALID_GROUP_ID, INVALID_SESSION_TIMEOUT (`group.{min,max}.session.timeout.ms`),
/// UNKNOWN_MEMBER_ID for a member id in an unknown group, ILLEGAL_GENERATION for a member
/// commit to an unknown group, NOT_COORDINATOR after shutdown.
#[test]
fn coordinator_request_checks() {
    use futures::executor::block_on;
    let c = GroupCoordinator::new(GroupConfig::default());
    let join = |group: &str, member: &str, session: Duration| JoinRequest {
        group_id: group.into(),
        session_timeout: session,
        ..req(member, "c")
    };
    assert_eq!(
        block_on(c.join(join("g", "", SESSION))).error,
        Some(GroupError::CoordinatorNotAvailable),
        "no __consumer_offsets attached yet"
    );
    // One __consumer_offsets partition, led here: this coordinator owns every group.
    let dir = tempfile::tempdir().expect("tempdir");
    let tp = TopicPartition {
        topic: OFFSETS_TOPIC.into(),
        partition: 0,
    };
    let log = Log::open(
        &dir.path().join(tp.dir_name()),
        LogConfig::default(),
        None,
        None,
        true,
    )
    .expect("open log");
    let partition = Arc::new(Partition::new(tp, Uuid::nil(), log));
    c.attach(vec![Some(partition.clone())]);
    assert_eq!(
        block_on(c.join(join("g", "", SESSION))).error,
        Some(GroupError::LoadInProgress)
    );
    c.load().expect("load");
    assert_eq!(
        block_on(c.join(join("", "", SESSION))).error,
        Some(GroupError::InvalidGroupId)
    );
    let long = "x".repeat(40_000);
    assert_eq!(
        block_on(c.join(join(&long, "", SESSION))).error,
        Some(GroupError::InvalidGroupId)
    );
    for session in [Duration::from_secs(5), Duration::from_secs(1801)] {
        assert_eq!(
            block_on(c.join(join("g", "", session))).error,
            Some(GroupError::InvalidSessionTimeout)
        );
    }
    assert_eq!(
        block_on(c.join(join("unknown", "stale-member", SESSION))).error,
        Some(GroupError::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat("unknown", "m", None, 1),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        c.commit_offsets("unknown", commit("m", 3, &[("t", 0, 1)])),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(c.delete_group("unknown"), Err(GroupError::GroupIdNotFound));
    assert_eq!(c.describe_group("unknown").map(|g| g.is_none()), Ok(true));
    // Another broker leads the group's partition: clients are sent to FindCoordinator.
    c.attach(vec![None]);
    assert_eq!(
        block_on(c.join(join("g", "", SESSION))).error,
        Some(GroupError::NotCoordinator)
    );
    c.attach(vec![Some(partition)]);
    c.shutdown();
    assert_eq!(
        c.heartbeat("g", "m", None, 1),
        Err(GroupError::NotCoordinator)
    );
}
