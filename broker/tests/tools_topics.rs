//! `millrace topics` against a real broker; the broker's state is checked with librdkafka.

mod common;
mod tools_support;

use std::time::Duration;

use common::{admin, admin_opts, client_config, Broker};
use rdkafka::{
    admin::ResourceSpecifier,
    consumer::{BaseConsumer, Consumer},
};
use tools_support::tool;

/// Partition counts per topic, as librdkafka sees the cluster (None: topic absent).
fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
}

#[test]
fn create_list_describe_alter_delete() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();

    let out = tool(
        &broker,
        "topics create --topic orders --partitions 3 --replication-factor 1 --config retention.ms=3600000",
    );
    assert_eq!(out.ok().trim(), "Created topic orders.");
    assert_eq!(partition_count(&bootstrap, "orders"), Some(3));
    // The config override reached the broker.
    let configs = futures::executor::block_on(
        admin(&bootstrap).describe_configs([&ResourceSpecifier::Topic("orders")], &admin_opts()),
    )
    .expect("DescribeConfigs");
    let resource = configs[0].as_ref().expect("topic configs");
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("3600000")
    );

    tool(&broker, "topics create --topic audit --partitions 1").ok();
    // Internal topics (`__consumer_offsets`, once the group coordinator made it) are listed
    // unless left out, as kafka-topics does.
    let listed = tool(&broker, "topics list --exclude-internal");
    assert_eq!(listed.ok().lines().collect::<Vec<_>>(), ["audit", "orders"]);
    let listed = tool(&broker, "topics list --output json").json();
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        names.ends_with(&["audit", "orders"])
            && names
                .iter()
                .all(|n| *n == "audit" || *n == "orders" || n.starts_with("__")),
        "{names:?}"
    );

    let described = tool(&broker, "topics describe --topic orders");
    let text = described.ok();
    let header = text.lines().next().expect("topic line");
    assert!(header.starts_with("Topic: orders\tTopicId: "), "{text}");
    assert!(
        header.contains("PartitionCount: 3\tReplicationFactor: 1\tConfigs: retention.ms=3600000"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("\tTopic: orders\tPartition: "))
            .count(),
        3,
        "{text}"
    );
    assert!(
        text.contains("\tTopic: orders\tPartition: 2\tLeader: 1\tReplicas: 1\tIsr: 1"),
        "{text}"
    );

    let json = tool(&broker, "topics describe --topic orders --output json").json();
    assert_eq!(json[0]["name"], "orders");
    assert_eq!(json[0]["partition_count"], 3);
    assert_eq!(json[0]["configs"]["retention.ms"], "3600000");
    assert_eq!(json[0]["partitions"][1]["leader"], 1);
    assert_eq!(json[0]["partitions"][1]["isr"], serde_json::json!([1]));

    // A single healthy broker has nothing under-replicated or unavailable.
    let under = tool(&broker, "topics describe --under-replicated-partitions");
    assert_eq!(under.ok(), "");
    let unavailable = tool(
        &broker,
        "topics describe --unavailable-partitions --output json",
    )
    .json();
    assert!(unavailable
        .as_array()
        .expect("array")
        .iter()
        .all(|t| t["partitions"] == serde_json::json!([])));

    let altered = tool(&broker, "topics alter --topic orders --partitions 5");
    assert!(altered.ok().contains("to 5"));
    assert_eq!(partition_count(&bootstrap, "orders"), Some(5));

    tool(&broker, "topics delete --topic audit").ok();
    assert!(common::wait_until(Duration::from_secs(30), || {
        partition_count(&bootstrap, "audit").is_none()
    }));
    assert_eq!(partition_count(&bootstrap, "orders"), Some(5));
}

#[test]
fn cluster_errors_name_the_kafka_error_and_say_what_to_do() {
    let broker = Broker::start(&[]);
    tool(&broker, "topics create --topic dup --partitions 1").ok();

    let again = tool(&broker, "topics create --topic dup");
    let stderr = again.failed();
    assert!(stderr.contains("TOPIC_ALREADY_EXISTS"), "{again}");
    assert!(stderr.contains("What to do: Pick another name"), "{again}");
    // --if-not-exists turns it into success.
    tool(&broker, "topics create --topic dup --if-not-exists").ok();

    let shrink = tool(&broker, "topics alter --topic dup --partitions 1");
    assert!(shrink.failed().contains("INVALID_PARTITIONS"), "{shrink}");

    let missing = tool(&broker, "topics delete --topic nope");
    assert!(
        missing.failed().contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{missing}"
    );
    tool(&broker, "topics delete --topic nope --if-exists").ok();

    let bad_name = tool(&broker, "topics create --topic bad/name");
    assert!(
        bad_name.failed().contains("INVALID_TOPIC_EXCEPTION"),
        "{bad_name}"
    );

    // Nothing listens here: a connection error, not a hang, and a hint about the flag.
    let nowhere = tools_support::millrace(
        &[
            "topics",
            "list",
            "--bootstrap-server",
            &format!("127.0.0.1:{}", common::free_port()),
        ],
        b"",
    );
    assert!(nowhere.failed().contains("--bootstrap-server"), "{nowhere}");
}

#[test]
fn help_lists_every_tool() {
    let help = tools_support::millrace(&["--help"], b"");
    let text = help.ok();
    for tool in [
        "serve", "topics", "configs", "groups", "produce", "consume", "dump-log", "perf",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(tool)),
            "`{tool}` missing from:\n{text}"
        );
    }
    for sub in [
        ["topics", "--help"],
        ["groups", "--help"],
        ["perf", "--help"],
    ] {
        tools_support::millrace(&sub, b"").ok();
    }
}
