//! `millrace groups` against a real broker. The group's members and commits are made by
//! librdkafka consumers, and what the tool changed is read back with librdkafka: the committed
//! offsets, and where a consumer of the group starts next.
//!
//! Skipped (with a message) when the broker does not advertise the consumer-group APIs.

mod common;
mod tools_support;

use std::time::Duration;

use common::{client_config, create_topic, wait_until, Broker};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::FutureRecord,
    Message, Offset, TopicPartitionList,
};
use tools_support::{tool, Run};

const BASE_TS: i64 = 1_700_000_000_000;

/// Topic `orders` with 2 partitions of 10 records each; record i has timestamp BASE_TS + i s.
fn setup(broker: &Broker) {
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "orders", 2, &[]);
    let producer = common::producer(&bootstrap, &[]);
    for p in 0..2 {
        for i in 0..10i64 {
            let value = format!("p{p}-{i}");
            let record = FutureRecord::<(), _>::to("orders")
                .partition(p)
                .payload(&value)
                .timestamp(BASE_TS + i * 1000);
            futures::executor::block_on(producer.send(record, Duration::from_secs(30)))
                .expect("delivered");
        }
    }
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer");
    consumer.subscribe(&["orders"]).expect("subscribe");
    consumer
}

/// Polls until `count` messages arrived; returns (partition, offset) of each.
fn consume(consumer: &BaseConsumer, count: usize) -> Vec<(i32, i64)> {
    let mut got = Vec::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let m = message.expect("consumer error");
                got.push((m.partition(), m.offset()));
            }
            got.len() >= count
        }),
        "consumed {} of {count}",
        got.len()
    );
    got
}

/// The group's committed offsets for orders-0 and orders-1, as librdkafka reads them.
fn committed(bootstrap: &str, group: &str) -> [Offset; 2] {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("orders", 0);
    tpl.add_partition("orders", 1);
    let tpl = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets");
    [0, 1].map(|p| tpl.find_partition("orders", p).expect("partition").offset())
}

/// Waits until the group is in `state` (a member's leave is processed asynchronously).
fn wait_for_state(broker: &Broker, group: &str, state: &str) {
    let line = format!("groups describe --group {group} --state --output json");
    assert!(
        wait_until(Duration::from_secs(60), || tool(broker, &line).json()[0]
            ["state"]
            == state),
        "group {group} never became {state}"
    );
}

fn lines_with<'a>(run: &'a Run, needle: &str) -> Vec<&'a str> {
    run.ok().lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn list_describe_reset_export_import_delete() {
    let broker = Broker::start(&[]);
    if !tools_support::serves_group_apis(&broker) {
        eprintln!("SKIPPED: the broker does not advertise the consumer-group APIs (FindCoordinator, OffsetCommit/Fetch, ListGroups, DescribeGroups, DeleteGroups) in ApiVersions yet");
        return;
    }
    let bootstrap = broker.bootstrap();
    setup(&broker);

    // A live member that has read and committed everything.
    let member = group_consumer(&bootstrap, "billing");
    consume(&member, 20);
    member
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    assert_eq!(
        committed(&bootstrap, "billing"),
        [Offset::Offset(10), Offset::Offset(10)]
    );

    let listed = tool(&broker, "groups list");
    assert!(listed.ok().lines().any(|l| l == "billing"), "{listed}");
    let members = tool(&broker, "groups describe --group billing --members");
    let rows = lines_with(&members, "billing");
    assert_eq!(rows.len(), 1, "{members}");
    assert!(rows[0].contains("orders-0,orders-1"), "{members}");
    let offsets = tool(&broker, "groups describe --group billing");
    let rows = lines_with(&offsets, "orders");
    assert_eq!(rows.len(), 2, "{offsets}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &cols[3..6],
            ["10", "10", "0"],
            "CURRENT-OFFSET LOG-END-OFFSET LAG: {offsets}"
        );
        assert_ne!(cols[6], "-", "the owner is shown: {offsets}");
    }
    let json = tool(&broker, "groups describe --group billing --output json").json();
    assert_eq!(json[0]["state"], "Stable");
    assert_eq!(json[0]["offsets"][0]["lag"], 0);

    // A reset while a member is active would be overwritten by its next commit: refused.
    let busy = tool(
        &broker,
        "groups reset-offsets --group billing --all-topics --to-earliest --execute",
    );
    assert!(busy.failed().contains("inactive"), "{busy}");

    drop(member);
    wait_for_state(&broker, "billing", "Empty");

    // A dry run shows the plan and changes nothing.
    let plan = tool(
        &broker,
        "groups reset-offsets --group billing --topic orders --to-earliest",
    );
    assert_eq!(lines_with(&plan, "orders").len(), 2, "{plan}");
    assert!(plan.stderr.contains("Dry run"), "{plan}");
    assert_eq!(
        committed(&bootstrap, "billing"),
        [Offset::Offset(10), Offset::Offset(10)]
    );

    // --execute: librdkafka sees the new commits, and a new member starts there.
    tool(
        &broker,
        "groups reset-offsets --group billing --topic orders --shift-by -7 --execute",
    )
    .ok();
    assert_eq!(
        committed(&bootstrap, "billing"),
        [Offset::Offset(3), Offset::Offset(3)]
    );
    {
        let next = group_consumer(&bootstrap, "billing");
        let mut first = consume(&next, 2);
        first.sort_unstable();
        // Each partition's first record is at offset 3 (records arrive per partition in order).
        assert!(first.iter().all(|&(_, o)| o >= 3), "{first:?}");
        assert!(
            first.contains(&(0, 3)) || first.contains(&(1, 3)),
            "{first:?}"
        );
    }
    wait_for_state(&broker, "billing", "Empty");

    // Other strategies, on one partition each.
    tool(
        &broker,
        "groups reset-offsets --group billing --topic orders:0 --to-offset 999 --execute",
    )
    .ok();
    tool(
        &broker,
        "groups reset-offsets --group billing --topic orders:1 --to-datetime 2023-11-14T22:13:25.000Z --execute",
    )
    .ok();
    // 999 is past the end: clamped to 10. 2023-11-14T22:13:25Z is BASE_TS + 5 s: offset 5.
    assert_eq!(
        committed(&bootstrap, "billing"),
        [Offset::Offset(10), Offset::Offset(5)]
    );
    tool(
        &broker,
        "groups reset-offsets --group billing --all-topics --to-latest --execute",
    )
    .ok();
    assert_eq!(
        committed(&bootstrap, "billing"),
        [Offset::Offset(10), Offset::Offset(10)]
    );

    // Export, edit, import.
    let exported = tool(&broker, "groups export --group billing");
    assert_eq!(exported.ok(), "orders,0,10\norders,1,10\n");
    let file = std::env::temp_dir().join(format!("millrace-offsets-{}.csv", std::process::id()));
    std::fs::write(&file, "orders,0,4\norders,1,6\n").expect("write csv");
    let path = file.to_str().expect("utf-8");
    tool(
        &broker,
        &format!("groups import --group billing --file {path}"),
    )
    .ok();
    assert_eq!(
        committed(&bootstrap, "billing"),
        [Offset::Offset(10), Offset::Offset(10)],
        "import without --execute is a dry run"
    );
    tool(
        &broker,
        &format!("groups import --group billing --file {path} --execute"),
    )
    .ok();
    assert_eq!(
        committed(&bootstrap, "billing"),
        [Offset::Offset(4), Offset::Offset(6)]
    );
    let _ = std::fs::remove_file(&file);

    // Delete: gone from the list and from the commits.
    let deleted = tool(&broker, "groups delete --group billing");
    assert!(deleted.ok().contains("'billing'"), "{deleted}");
    assert!(!tool(&broker, "groups list")
        .ok()
        .lines()
        .any(|l| l == "billing"));
    assert_eq!(
        committed(&bootstrap, "billing"),
        [Offset::Invalid, Offset::Invalid]
    );
}

#[test]
fn group_errors_name_the_kafka_error() {
    let broker = Broker::start(&[]);
    if !tools_support::serves_group_apis(&broker) {
        eprintln!(
            "SKIPPED: the broker does not advertise the consumer-group APIs in ApiVersions yet"
        );
        return;
    }
    let bootstrap = broker.bootstrap();
    setup(&broker);
    let member = group_consumer(&bootstrap, "busy");
    consume(&member, 1);

    let delete = tool(&broker, "groups delete --group busy");
    let stderr = delete.failed();
    assert!(stderr.contains("NON_EMPTY_GROUP"), "{delete}");
    assert!(
        stderr.contains("What to do: Stop the group's consumers first"),
        "{delete}"
    );

    // Kafka answers a DescribeGroups for an unknown group with state Dead (before v6) or
    // GROUP_ID_NOT_FOUND (v6); either way the tool fails and says so.
    let missing = tool(&broker, "groups describe --group nobody-here");
    let stderr = missing.failed();
    assert!(
        stderr.contains("does not exist") || stderr.contains("GROUP_ID_NOT_FOUND"),
        "{missing}"
    );

    let no_commits = tool(
        &broker,
        "groups reset-offsets --group fresh --topic orders --shift-by 1",
    );
    assert!(
        no_commits.failed().contains("no committed offset"),
        "{no_commits}"
    );
    drop(member);
}
