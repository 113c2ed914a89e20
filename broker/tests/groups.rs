//! Consumer groups and committed offsets driven by a real client: librdkafka through the
//! `rdkafka` crate, which runs the classic rebalance protocol and the assignors (eager and
//! cooperative) itself. Where librdkafka has no API (OffsetDelete, ListGroups filters, the
//! generation of a group), the tests ask over a raw Kafka-protocol connection.
//!
//! Nothing sleeps to wait for a state: [`settle`] and `wait_until` poll the consumers until the
//! assignment is what the test expects, against a deadline.

mod common;

use std::{
    collections::BTreeSet,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use common::*;
use futures::executor::block_on;
use kafka_protocol::{
    messages::{
        describe_groups_response::DescribedGroup,
        offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic},
        offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics},
        ApiKey, DescribeGroupsRequest, GroupId, HeartbeatRequest, ListGroupsRequest,
        OffsetDeleteRequest, OffsetFetchRequest, TopicName,
    },
    protocol::StrBytes,
};
use rdkafka::{
    client::ClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    error::RDKafkaErrorCode,
    producer::{FutureProducer, FutureRecord},
    Message, Offset, TopicPartitionList,
};

/// Broker settings for group tests: the first rebalance starts at once instead of waiting
/// Kafka's default 3 s for more members.
const BROKER: &[(&str, &str)] = &[("group.initial.rebalance.delay.ms", "0")];

/// Kafka error codes the tests expect by number.
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const ILLEGAL_GENERATION: i16 = 22;

/// Counts what the rebalance callbacks saw.
#[derive(Debug, Default)]
struct Counting {
    /// Rebalance callbacks (assign or revoke).
    rebalances: AtomicUsize,
    /// Partitions revoked, summed over callbacks.
    revoked: AtomicUsize,
}

impl ClientContext for Counting {}

impl ConsumerContext for Counting {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(tpl) = rebalance {
            self.revoked.fetch_add(tpl.count(), Ordering::SeqCst);
        }
    }
}

type GroupConsumer = BaseConsumer<Counting>;

/// A consumer in `group` subscribed to `topic`; manual commits, earliest reset, a short
/// heartbeat so rebalances are noticed quickly.
fn subscribe(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> GroupConsumer {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let consumer: GroupConsumer = config
        .create_with_context(Counting::default())
        .expect("create consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// The partitions of `topic` a consumer owns now.
fn owned(consumer: &GroupConsumer, topic: &str) -> BTreeSet<i32> {
    consumer
        .assignment()
        .expect("assignment")
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect()
}

/// Polls every consumer until together they own each of `partitions` partitions of `topic`
/// exactly once, with the sizes in `sizes` (any order); returns who owns what.
fn settle(
    consumers: &[&GroupConsumer],
    topic: &str,
    partitions: i32,
    sizes: &[usize],
) -> Vec<BTreeSet<i32>> {
    let mut last = Vec::new();
    let mut want_sizes = sizes.to_vec();
    want_sizes.sort_unstable();
    let settled = wait_until(Duration::from_secs(90), || {
        for c in consumers {
            // Serves rebalance callbacks; messages, if any, are not what this waits for.
            let _ = c.poll(Duration::from_millis(20));
        }
        last = consumers.iter().map(|c| owned(c, topic)).collect();
        let total: usize = last.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = last.iter().flatten().copied().collect();
        let mut got_sizes: Vec<usize> = last.iter().map(BTreeSet::len).collect();
        got_sizes.sort_unstable();
        // Disjoint (no partition twice) and complete (none orphaned).
        total == union.len() && union == (0..partitions).collect() && got_sizes == want_sizes
    });
    assert!(
        settled,
        "assignment did not settle to sizes {sizes:?}: {last:?}"
    );
    last
}

/// Produces `value` to `topic`/`partition`; returns its offset.
fn produce(producer: &FutureProducer, topic: &str, partition: i32, value: &str) -> i64 {
    let delivery = producer
        .send_result(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(value),
        )
        .map_err(|(e, _)| e)
        .expect("queue record");
    let (p, offset) = block_on(delivery)
        .expect("delivery future")
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e)
        .expect("delivered");
    assert_eq!(p, partition);
    offset
}

/// Polls until a message arrives; panics after the deadline.
fn next_message(consumer: &GroupConsumer) -> (i32, i64, String) {
    let mut got = None;
    let arrived = wait_until(Duration::from_secs(60), || {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                got = Some((m.partition(), m.offset(), value));
                true
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => false,
        }
    });
    assert!(arrived, "no message within the deadline");
    got.expect("message")
}

/// A consumer with `group.id` = `group` that never joins it: what admin tools use to read or
/// write a group's offsets.
fn outside_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("create consumer")
}

/// The committed offsets of `group` for `topic` partitions `0..n` (-1 when none), via a
/// consumer of that group that does not join it.
fn committed(bootstrap: &str, group: &str, topic: &str, n: i32) -> Vec<i64> {
    let consumer = outside_consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p);
    }
    let result = consumer
        .committed_offsets(tpl, CLIENT_TIMEOUT)
        .expect("OffsetFetch");
    (0..n)
        .map(
            |p| match result.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect()
}

/// Commits `offsets` (partition, offset) of `topic` for `group` without joining it (the
/// simple consumer path: generation -1, no member id).
fn commit_as_simple_consumer(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer = outside_consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .expect("add partition");
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

fn describe(raw: &mut RawConn, group: &str) -> DescribedGroup {
    let version = raw.version_for(ApiKey::DescribeGroups, 5);
    let response = raw.call(
        version,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]),
    );
    response.groups.into_iter().next().expect("one group")
}

/// The group's generation, found the way only the coordinator can tell: a Heartbeat on behalf
/// of `member_id` succeeds for the current generation and fails with ILLEGAL_GENERATION for
/// any other. (DescribeGroups does not report generations.)
fn generation(raw: &mut RawConn, group: &str, member_id: &str) -> i32 {
    let version = raw.version_for(ApiKey::Heartbeat, 4);
    for generation in 1..100 {
        let response = raw.call(
            version,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_member_id(StrBytes::from_string(member_id.to_string()))
                .with_generation_id(generation),
        );
        match response.error_code {
            0 => return generation,
            ILLEGAL_GENERATION => continue,
            other => panic!("heartbeat for generation {generation}: error {other}"),
        }
    }
    panic!("no generation below 100 accepted a heartbeat")
}

fn wait_for_state(raw: &mut RawConn, group: &str, state: &str) {
    let mut last = String::new();
    let reached = wait_until(Duration::from_secs(60), || {
        last = describe(raw, group).group_state.to_string();
        last == state
    });
    assert!(
        reached,
        "group {group} did not reach {state} (last: {last})"
    );
}

/// A broker with the group test settings and one topic; returns it and its bootstrap address.
fn broker_with_topic(topic: &str, partitions: i32) -> (Broker, String) {
    let broker = Broker::start(BROKER);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, topic, partitions, &[]);
    (broker, bootstrap)
}

// ---------------------------------------------------------------------------------- tests

/// Two consumers split a 6-partition topic; a third joins and one leaves, and after each
/// change every partition has exactly one owner. Records then reach the owner of their
/// partition.
#[test]
fn consumers_share_partitions_and_rebalance_on_join_and_leave() {
    let (_broker, bootstrap) = broker_with_topic("shared", 6);
    let a = subscribe(&bootstrap, "split", "shared", &[]);
    let b = subscribe(&bootstrap, "split", "shared", &[]);
    settle(&[&a, &b], "shared", 6, &[3, 3]);

    let c = subscribe(&bootstrap, "split", "shared", &[]);
    settle(&[&a, &b, &c], "shared", 6, &[2, 2, 2]);

    drop(a); // closes the consumer: LeaveGroup, so the others rebalance at once
    let owners = settle(&[&b, &c], "shared", 6, &[3, 3]);

    let producer = producer(&bootstrap, &[]);
    for p in 0..6 {
        produce(&producer, "shared", p, &format!("to-{p}"));
    }
    let mut seen = BTreeSet::new();
    let consumers = [&b, &c];
    let all = wait_until(Duration::from_secs(60), || {
        for (i, consumer) in consumers.iter().enumerate() {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                assert!(
                    owners[i].contains(&m.partition()),
                    "partition {} delivered to a consumer that does not own it",
                    m.partition()
                );
                seen.insert(m.partition());
            }
        }
        seen.len() == 6
    });
    assert!(all, "records of every partition arrive: got {seen:?}");
}

/// A consumer restarted with the same group resumes after its last committed offset.
#[test]
fn restarted_consumer_resumes_from_its_committed_offset() {
    let (_broker, bootstrap) = broker_with_topic("resume", 1);
    let producer = producer(&bootstrap, &[]);
    for i in 0..10 {
        produce(&producer, "resume", 0, &format!("m{i}"));
    }
    let first = subscribe(&bootstrap, "resumers", "resume", &[]);
    let mut last = None;
    for expected in 0..4 {
        let (_, offset, _) = next_message(&first);
        assert_eq!(offset, expected);
        last = Some(offset);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("resume", 0, Offset::Offset(last.expect("consumed") + 1))
        .expect("add");
    first.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(first);
    assert_eq!(committed(&bootstrap, "resumers", "resume", 1), vec![4]);

    let second = subscribe(&bootstrap, "resumers", "resume", &[]);
    let (_, offset, value) = next_message(&second);
    assert_eq!((offset, value.as_str()), (4, "m4"));
}

/// `auto.offset.reset` for a group with no committed offset: `earliest` starts at the log
/// start, `latest` at the end (it never sees records produced before it joined).
#[test]
fn auto_offset_reset_earliest_and_latest() {
    let (_broker, bootstrap) = broker_with_topic("reset", 1);
    let producer = producer(&bootstrap, &[]);
    for i in 0..3 {
        produce(&producer, "reset", 0, &format!("old-{i}"));
    }
    let early = subscribe(
        &bootstrap,
        "early",
        "reset",
        &[("auto.offset.reset", "earliest")],
    );
    assert_eq!(next_message(&early).1, 0);

    let late = subscribe(
        &bootstrap,
        "late",
        "reset",
        &[("auto.offset.reset", "latest")],
    );
    // Keep producing until the consumer, once positioned, sees something: whatever it sees
    // first must be new.
    let mut first = None;
    let got = wait_until(Duration::from_secs(60), || {
        if !owned(&late, "reset").is_empty() {
            produce(&producer, "reset", 0, "new");
        }
        match late.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first = Some(m.offset());
                true
            }
            _ => false,
        }
    });
    assert!(got, "the latest consumer received a new record");
    assert!(
        first.expect("offset") >= 3,
        "latest must skip the 3 old records: {first:?}"
    );
}

/// KIP-345: a static member (`group.instance.id`) that restarts within its session timeout
/// gets its partitions back without a rebalance: the other member sees no rebalance
/// callback, and the group's generation is unchanged.
#[test]
fn static_member_restart_keeps_its_partitions_without_a_rebalance() {
    let (broker, bootstrap) = broker_with_topic("static", 6);
    // A long session so the closed instance is still a member when its successor arrives.
    let static_cfg = [
        ("group.instance.id", "instance-1"),
        ("session.timeout.ms", "30000"),
    ];
    let s = subscribe(&bootstrap, "statics", "static", &static_cfg);
    let d = subscribe(
        &bootstrap,
        "statics",
        "static",
        &[("session.timeout.ms", "30000")],
    );
    let owners = settle(&[&s, &d], "static", 6, &[3, 3]);
    let (static_parts, dynamic_parts) = (owners[0].clone(), owners[1].clone());

    let mut raw = RawConn::connect(broker.kafka_addr());
    let before = describe(&mut raw, "statics");
    assert_eq!(before.group_state.as_str(), "Stable");
    let member_of = |g: &DescribedGroup, static_member: bool| {
        g.members
            .iter()
            .find(|m| m.group_instance_id.is_some() == static_member)
            .map(|m| m.member_id.to_string())
            .expect("member")
    };
    let old_static_id = member_of(&before, true);
    let dynamic_id = member_of(&before, false);
    let generation_before = generation(&mut raw, "statics", &dynamic_id);
    let rebalances_before = d.context().rebalances.load(Ordering::SeqCst);

    // A static member does not send LeaveGroup when it closes (KIP-345).
    drop(s);
    let restarted = subscribe(&bootstrap, "statics", "static", &static_cfg);
    let back = wait_until(Duration::from_secs(60), || {
        let _ = restarted.poll(Duration::from_millis(20));
        let _ = d.poll(Duration::from_millis(20));
        owned(&restarted, "static") == static_parts
    });
    assert!(
        back,
        "the restarted static member did not get {static_parts:?} back"
    );

    assert_eq!(
        owned(&d, "static"),
        dynamic_parts,
        "the other member kept its partitions"
    );
    assert_eq!(
        d.context().rebalances.load(Ordering::SeqCst),
        rebalances_before,
        "the other member saw no rebalance"
    );
    let after = describe(&mut raw, "statics");
    assert_eq!(after.group_state.as_str(), "Stable");
    assert_eq!(after.members.len(), 2);
    assert_ne!(
        member_of(&after, true),
        old_static_id,
        "the new instance has a new member id"
    );
    assert_eq!(
        generation(&mut raw, "statics", &dynamic_id),
        generation_before
    );
}

/// The cooperative-sticky assignor (KIP-429) runs in the client; the broker passes its
/// metadata and assignments through. When a third member joins, the others give up only the
/// partitions that move, not everything as an eager assignor would.
#[test]
fn cooperative_sticky_rebalances_incrementally() {
    let (_broker, bootstrap) = broker_with_topic("coop", 6);
    let cfg = [("partition.assignment.strategy", "cooperative-sticky")];
    let a = subscribe(&bootstrap, "cooperative", "coop", &cfg);
    let b = subscribe(&bootstrap, "cooperative", "coop", &cfg);
    let before = settle(&[&a, &b], "coop", 6, &[3, 3]);
    let revoked_before =
        a.context().revoked.load(Ordering::SeqCst) + b.context().revoked.load(Ordering::SeqCst);

    let c = subscribe(&bootstrap, "cooperative", "coop", &cfg);
    let after = settle(&[&a, &b, &c], "coop", 6, &[2, 2, 2]);
    let revoked = a.context().revoked.load(Ordering::SeqCst)
        + b.context().revoked.load(Ordering::SeqCst)
        - revoked_before;
    assert_eq!(
        revoked, 2,
        "only the two partitions that moved were revoked"
    );
    assert!(
        after[0].is_subset(&before[0]) && after[1].is_subset(&before[1]),
        "sticky"
    );
}

/// ListGroups, DescribeGroups, DeleteGroups, OffsetDelete and lag (log end − committed),
/// through librdkafka's group listing and AdminClient, and raw requests where it has none.
#[test]
fn admin_list_describe_delete_groups_offset_delete_and_lag() {
    let (broker, bootstrap) = broker_with_topic("lag", 2);
    let producer = producer(&bootstrap, &[]);
    for i in 0..10 {
        produce(&producer, "lag", 0, &format!("a{i}"));
    }
    for i in 0..4 {
        produce(&producer, "lag", 1, &format!("b{i}"));
    }
    let member = subscribe(&bootstrap, "admin-g", "lag", &[]);
    settle(&[&member], "lag", 2, &[2]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("lag", 0, Offset::Offset(7))
        .expect("add");
    tpl.add_partition_offset("lag", 1, Offset::Offset(4))
        .expect("add");
    member.commit(&tpl, CommitMode::Sync).expect("commit");
    commit_as_simple_consumer(&bootstrap, "offsets-only", "lag", &[(0, 3)]);

    // ListGroups + DescribeGroups, as librdkafka's group listing does them.
    let list = member
        .fetch_group_list(None, CLIENT_TIMEOUT)
        .expect("list groups");
    let find = |name: &str| list.groups().iter().find(|g| g.name() == name);
    let g = find("admin-g").expect("admin-g listed");
    assert_eq!((g.state(), g.protocol_type()), ("Stable", "consumer"));
    assert_eq!(g.members().len(), 1);
    assert_eq!(g.members()[0].client_host(), "/127.0.0.1");
    assert!(g.members()[0].assignment().is_some_and(|a| !a.is_empty()));
    let simple = find("offsets-only").expect("offsets-only listed");
    assert_eq!((simple.state(), simple.protocol_type()), ("Empty", ""));

    // ListGroups filters (KIP-518 states, KIP-848 types).
    let mut raw = RawConn::connect(broker.kafka_addr());
    let version = raw.version_for(ApiKey::ListGroups, 5);
    assert_eq!(version, 5);
    let listed = |raw: &mut RawConn, states: &[&str], types: &[&str]| -> Vec<String> {
        let request = ListGroupsRequest::default()
            .with_states_filter(
                states
                    .iter()
                    .map(|s| StrBytes::from_string(s.to_string()))
                    .collect(),
            )
            .with_types_filter(
                types
                    .iter()
                    .map(|s| StrBytes::from_string(s.to_string()))
                    .collect(),
            );
        let response = raw.call(version, &request);
        assert_eq!(response.error_code, 0);
        let mut names: Vec<String> = response
            .groups
            .iter()
            .map(|g| g.group_id.0.to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listed(&mut raw, &["Stable"], &[]), vec!["admin-g"]);
    assert_eq!(listed(&mut raw, &["Empty"], &[]), vec!["offsets-only"]);
    assert_eq!(
        listed(&mut raw, &[], &["classic"]),
        vec!["admin-g", "offsets-only"]
    );
    assert!(listed(&mut raw, &[], &["consumer"]).is_empty());

    // Lag: log end offset minus committed offset, per partition.
    let ends: Vec<i64> = (0..2).map(|p| watermarks(&bootstrap, "lag", p).1).collect();
    let commits = committed(&bootstrap, "admin-g", "lag", 2);
    let lag: Vec<i64> = ends.iter().zip(&commits).map(|(e, c)| e - c).collect();
    assert_eq!((commits, lag), (vec![7, 4], vec![3, 0]));

    // OffsetFetch for two groups in one request (v8+).
    let version = raw.version_for(ApiKey::OffsetFetch, 8);
    assert_eq!(version, 8);
    let group_req = |name: &str| {
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(name.to_string())))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(StrBytes::from_static_str("lag")))
                .with_partition_indexes(vec![0, 1])]))
    };
    let response = raw.call(
        version,
        &OffsetFetchRequest::default()
            .with_groups(vec![group_req("admin-g"), group_req("offsets-only")]),
    );
    let offsets: Vec<Vec<i64>> = response
        .groups
        .iter()
        .map(|g| {
            g.topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .collect()
        })
        .collect();
    assert_eq!(offsets, vec![vec![7, 4], vec![3, -1]]);

    // While the member is there: DeleteGroups refuses, OffsetDelete refuses subscribed topics.
    let admin = admin(&bootstrap);
    let deleted = block_on(admin.delete_groups(&["admin-g"], &admin_opts())).expect("DeleteGroups");
    assert_eq!(
        deleted[0].as_ref().map_err(|(_, code)| *code as i32),
        Err(NON_EMPTY_GROUP as i32)
    );
    let offset_delete = |raw: &mut RawConn, partitions: &[i32]| {
        raw.call(
            0,
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("admin-g")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("lag")))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteRequestPartition::default().with_partition_index(*p)
                            })
                            .collect(),
                    )]),
        )
    };
    let response = offset_delete(&mut raw, &[1]);
    assert_eq!(response.error_code, 0);
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        GROUP_SUBSCRIBED_TO_TOPIC
    );

    // Once the member has left, both succeed.
    drop(member);
    wait_for_state(&mut raw, "admin-g", "Empty");
    let response = offset_delete(&mut raw, &[1]);
    assert_eq!(
        (
            response.error_code,
            response.topics[0].partitions[0].error_code
        ),
        (0, 0)
    );
    assert_eq!(committed(&bootstrap, "admin-g", "lag", 2), vec![7, -1]);
    let deleted = block_on(admin.delete_groups(&["admin-g", "never-existed"], &admin_opts()))
        .expect("DeleteGroups");
    assert_eq!(deleted[0], Ok("admin-g".to_string()));
    assert_eq!(
        deleted[1].as_ref().map_err(|(_, code)| *code),
        Err(RDKafkaErrorCode::GroupIdNotFound)
    );
    assert_eq!(committed(&bootstrap, "admin-g", "lag", 2), vec![-1, -1]);
    assert_eq!(describe(&mut raw, "admin-g").group_state.as_str(), "Dead");
}

/// A broker killed with SIGKILL and restarted keeps every committed offset: commits are in
/// `__consumer_offsets` before they are acknowledged, and the coordinator reloads them before
/// answering.
#[test]
fn committed_offsets_survive_sigkill() {
    let (mut broker, bootstrap) = broker_with_topic("durable", 4);
    let producer = producer(&bootstrap, &[]);
    for p in 0..4 {
        for i in 0..30 {
            produce(&producer, "durable", p, &format!("{p}-{i}"));
        }
    }
    // Twenty groups, each committed several times; the last commit must be the one kept.
    for g in 0..20i64 {
        let group = format!("g{g}");
        for round in 0..3 {
            let offsets: Vec<(i32, i64)> = (0..4).map(|p| (p, g + i64::from(p) + round)).collect();
            commit_as_simple_consumer(&bootstrap, &group, "durable", &offsets);
        }
    }
    // And a subscribed consumer that commits what it consumed.
    let live = subscribe(&bootstrap, "live", "durable", &[]);
    settle(&[&live], "durable", 4, &[4]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset("durable", p, Offset::Offset(10 + i64::from(p)))
            .expect("add");
    }
    live.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(live);
    drop(producer);

    broker.kill9();
    broker.restart();

    for g in 0..20i64 {
        let expected: Vec<i64> = (0..4).map(|p| g + p + 2).collect();
        assert_eq!(
            committed(&bootstrap, &format!("g{g}"), "durable", 4),
            expected,
            "group g{g}"
        );
    }
    assert_eq!(
        committed(&bootstrap, "live", "durable", 4),
        vec![10, 11, 12, 13]
    );
    let resumed = subscribe(&bootstrap, "live", "durable", &[]);
    let (partition, offset, _) = next_message(&resumed);
    assert_eq!(
        offset,
        10 + i64::from(partition),
        "resumes at the committed offset"
    );
}

/// `__consumer_offsets` is compacted like any `cleanup.policy=compact` topic; after the cleaner
/// has rewritten it and the broker is killed, reloading still finds every group's latest
/// commit, and a deleted group stays deleted (its tombstones win over its older records).
#[test]
fn compacted_offsets_topic_reloads_the_latest_commits() {
    let mut broker = Broker::start(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "1"),
        ("offsets.topic.segment.bytes", "8192"),
        ("log.cleaner.backoff.ms", "100"),
    ]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "compacted", 2, &[]);
    let keeper = outside_consumer(&bootstrap, "keeper");
    let doomed = outside_consumer(&bootstrap, "doomed");
    for round in 0..300i64 {
        for (consumer, base) in [(&keeper, 0), (&doomed, 1000)] {
            let mut tpl = TopicPartitionList::new();
            for p in 0..2 {
                tpl.add_partition_offset(
                    "compacted",
                    p,
                    Offset::Offset(base + round + i64::from(p)),
                )
                .expect("add");
            }
            consumer.commit(&tpl, CommitMode::Sync).expect("commit");
        }
    }
    drop((keeper, doomed));
    let deleted = block_on(admin(&bootstrap).delete_groups(&["doomed"], &admin_opts()))
        .expect("DeleteGroups");
    assert_eq!(deleted[0], Ok("doomed".to_string()));

    let cleaned = wait_until(Duration::from_secs(60), || {
        let (_, metrics) = broker.http_get("/metrics").expect("metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("kafka_log_cleaner_cleanings_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|n| n >= 1.0)
    });
    assert!(cleaned, "the cleaner compacted __consumer_offsets");

    broker.kill9();
    broker.restart();
    assert_eq!(
        committed(&bootstrap, "keeper", "compacted", 2),
        vec![299, 300]
    );
    assert_eq!(
        committed(&bootstrap, "doomed", "compacted", 2),
        vec![-1, -1]
    );
}
