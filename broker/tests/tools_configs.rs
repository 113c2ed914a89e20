//! `millrace configs` against a real broker; the configs are read back with librdkafka.

mod common;
mod tools_support;

use common::{admin, admin_opts, create_topic, Broker};
use rdkafka::admin::ResourceSpecifier;
use tools_support::tool;

/// (value, source) of one config, as librdkafka's DescribeConfigs sees it; the source as the
/// name of librdkafka's `ConfigSource` variant.
fn config(
    bootstrap: &str,
    resource: ResourceSpecifier<'_>,
    name: &str,
) -> (Option<String>, String) {
    let results =
        futures::executor::block_on(admin(bootstrap).describe_configs([&resource], &admin_opts()))
            .expect("DescribeConfigs");
    let resource = results[0].as_ref().expect("resource described");
    let entry = resource
        .get(name)
        .unwrap_or_else(|| panic!("no config {name}"));
    (entry.value.clone(), format!("{:?}", entry.source))
}

#[test]
fn topic_configs_are_set_described_and_deleted() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "events", 1, &[]);

    let out = tool(
        &broker,
        "configs alter --entity-type topics --entity-name events --add-config retention.ms=60000,cleanup.policy=[compact,delete]",
    );
    assert_eq!(
        out.ok().trim(),
        "Completed updating config for topic events."
    );
    assert_eq!(
        config(
            &bootstrap,
            ResourceSpecifier::Topic("events"),
            "retention.ms"
        ),
        (Some("60000".into()), "DynamicTopic".into())
    );
    assert_eq!(
        config(
            &bootstrap,
            ResourceSpecifier::Topic("events"),
            "cleanup.policy"
        )
        .0
        .as_deref(),
        Some("compact,delete")
    );

    let described = tool(
        &broker,
        "configs describe --entity-type topics --entity-name events",
    );
    let text = described.ok();
    assert!(
        text.starts_with("Dynamic configs for topic events are:"),
        "{text}"
    );
    assert!(text.contains("  retention.ms=60000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=60000"), "{text}");
    // Only the overrides without --all.
    assert_eq!(text.lines().count(), 3, "{text}");

    let all = tool(
        &broker,
        "configs describe --entity-type topics --entity-name events --all --output json",
    )
    .json();
    let entries = all[0]["configs"].as_array().expect("configs");
    let segment = entries
        .iter()
        .find(|e| e["name"] == "segment.bytes")
        .expect("segment.bytes listed with --all");
    assert_eq!(segment["source"], "DEFAULT_CONFIG");
    assert!(entries.len() > 10);

    let deleted = tool(
        &broker,
        "configs delete --entity-type topics --entity-name events --delete-config retention.ms",
    );
    deleted.ok();
    let (_, source) = config(
        &bootstrap,
        ResourceSpecifier::Topic("events"),
        "retention.ms",
    );
    assert_ne!(source, "DynamicTopic", "the override is gone");
    assert_eq!(
        config(
            &bootstrap,
            ResourceSpecifier::Topic("events"),
            "cleanup.policy"
        )
        .1,
        "DynamicTopic"
    );
}

#[test]
fn broker_configs_per_broker_and_cluster_default() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();

    tool(
        &broker,
        "configs alter --entity-type brokers --entity-default --add-config log.retention.ms=7200000",
    )
    .ok();
    let (value, source) = config(&bootstrap, ResourceSpecifier::Broker(1), "log.retention.ms");
    assert_eq!(value.as_deref(), Some("7200000"));
    assert_eq!(source, "DynamicDefaultBroker");

    let json = tool(
        &broker,
        "configs describe --entity-type brokers --entity-default --output json",
    )
    .json();
    assert_eq!(json[0]["entity_type"], "broker");
    assert_eq!(json[0]["configs"][0]["name"], "log.retention.ms");
    assert_eq!(
        json[0]["configs"][0]["source"],
        "DYNAMIC_DEFAULT_BROKER_CONFIG"
    );

    // Broker 1 by id: every config with --all, with where it comes from.
    let all = tool(
        &broker,
        "configs describe --entity-type brokers --entity-name 1 --all",
    );
    assert!(
        all.ok().starts_with("All configs for broker 1 are:"),
        "{all}"
    );
    assert!(all.ok().contains("log.retention.ms=7200000"), "{all}");

    tool(
        &broker,
        "configs delete --entity-type brokers --entity-default --delete-config log.retention.ms",
    )
    .ok();
    let (_, source) = config(&bootstrap, ResourceSpecifier::Broker(1), "log.retention.ms");
    assert_ne!(source, "DynamicDefaultBroker");
}

#[test]
fn invalid_changes_are_refused_with_the_kafka_error() {
    let broker = Broker::start(&[]);
    create_topic(&broker.bootstrap(), "events", 1, &[]);
    let bad = tool(
        &broker,
        "configs alter --entity-type topics --entity-name events --add-config no.such.config=1",
    );
    let stderr = bad.failed();
    assert!(stderr.contains("INVALID_CONFIG"), "{bad}");
    assert!(stderr.contains("What to do:"), "{bad}");

    let missing = tool(
        &broker,
        "configs describe --entity-type topics --entity-name nope",
    );
    assert!(
        missing.failed().contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{missing}"
    );

    let no_name = tool(
        &broker,
        "configs alter --entity-type topics --add-config retention.ms=1",
    );
    assert!(no_name.failed().contains("--entity-name"), "{no_name}");
}
