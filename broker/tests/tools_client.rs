//! The `millrace-client` library against a real broker process: admin calls, the producer
//! (every codec, idempotence, acks), the consumer (assign, seek, poll), and what a client must
//! survive (pipelined requests, a broker restart). Everything the client writes is read back
//! with librdkafka, and everything it reads was written with librdkafka.

mod common;
mod tools_support;

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use common::{create_topic, read_to_end, watermarks, Broker};
use kafka_protocol::messages::{
    metadata_request::MetadataRequestTopic, ApiKey, MetadataRequest, TopicName,
};
use millrace_client::{
    Acks, Admin, Client, ClientConfig, Compression, ConfigResource, Consumer, ConsumerConfig,
    NewTopic, OffsetReset, OffsetSpec, Producer, ProducerConfig, ProducerRecord, SeekTo, Target,
    TopicPartition,
};
use rdkafka::{producer::FutureRecord, Message};
use tools_support::block_on;

async fn connect(broker: &Broker) -> Client {
    Client::connect(ClientConfig::new(&broker.bootstrap()))
        .await
        .expect("connect")
}

#[test]
fn admin_calls_change_what_librdkafka_sees() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    block_on(async {
        let client = connect(&broker).await;
        let admin = Admin::new(client.clone());

        let cluster = admin.describe_cluster().await.expect("describe cluster");
        assert!(cluster
            .cluster_id
            .as_deref()
            .is_some_and(|id| !id.is_empty()));
        assert_eq!(cluster.brokers.len(), 1);
        assert_eq!(cluster.brokers[0].addr(), bootstrap);

        let topics = [
            NewTopic {
                name: "a".into(),
                partitions: 2,
                replication_factor: 1,
                ..Default::default()
            },
            NewTopic {
                name: "bad name".into(),
                partitions: 1,
                replication_factor: 1,
                ..Default::default()
            },
            NewTopic {
                name: "b".into(),
                partitions: 1,
                replication_factor: 1,
                configs: BTreeMap::from([("retention.ms".to_string(), "123456".to_string())]),
                ..Default::default()
            },
        ];
        let results = admin
            .create_topics(&topics, false)
            .await
            .expect("CreateTopics");
        assert!(results[0].1.is_ok() && results[2].1.is_ok(), "{results:?}");
        let bad = results[1].1.as_ref().expect_err("invalid name");
        assert_eq!(bad.kafka_name().as_deref(), Some("INVALID_TOPIC_EXCEPTION"));

        let configs = admin
            .describe_configs(
                &[ConfigResource::Topic("b".into())],
                &["retention.ms".into()],
            )
            .await
            .expect("describe");
        let entries = configs[0].1.as_ref().expect("configs");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].value.as_deref(), Some("123456"));

        admin
            .create_partitions(&[("a".into(), 4)], false)
            .await
            .expect("CreatePartitions")[0]
            .1
            .as_ref()
            .expect("grown");
        let described = admin
            .describe_topics(&["a".into(), "missing".into()])
            .await
            .expect("describe");
        assert_eq!(described[0].partitions.len(), 4);
        assert_eq!(
            described[1].error.map(|c| c.name()).as_deref(),
            Some("UNKNOWN_TOPIC_OR_PARTITION")
        );

        admin
            .delete_topics(&["b".into()])
            .await
            .expect("DeleteTopics")[0]
            .1
            .as_ref()
            .expect("deleted");
        let names: Vec<String> = admin
            .list_topics(false)
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["a"]);
    });

    // Records and offsets: written by librdkafka, trimmed and looked up by the client.
    let producer = common::producer(&bootstrap, &[]);
    for i in 0..10i64 {
        let record = FutureRecord::<(), _>::to("a")
            .partition(0)
            .payload("x")
            .timestamp(1_000_000 + i * 10);
        futures::executor::block_on(producer.send(record, Duration::from_secs(30)))
            .expect("delivered");
    }
    block_on(async {
        let admin = Admin::new(connect(&broker).await);
        let tp = TopicPartition::new("a", 0);
        let offsets = admin
            .list_offsets(&[(tp.clone(), OffsetSpec::Earliest)])
            .await;
        assert_eq!(offsets[0].1.as_ref().expect("earliest").offset, 0);
        let at = admin
            .list_offsets(&[(tp.clone(), OffsetSpec::Timestamp(1_000_045))])
            .await;
        assert_eq!(at[0].1.as_ref().expect("by time").offset, 5);
        let deleted = admin.delete_records(&[(tp.clone(), 4)]).await;
        assert_eq!(*deleted[0].1.as_ref().expect("deleted"), 4);
        let latest = admin.list_offsets(&[(tp, OffsetSpec::Latest)]).await;
        assert_eq!(latest[0].1.as_ref().expect("latest").offset, 10);
    });
    assert_eq!(watermarks(&bootstrap, "a", 0), (4, 10));
}

#[test]
fn producer_writes_what_librdkafka_reads_with_every_codec() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "codecs", 1, &[]);
    let mut expected = Vec::new();
    block_on(async {
        let client = connect(&broker).await;
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let config = ProducerConfig {
                compression: codec,
                linger: Duration::from_millis(20),
                ..ProducerConfig::default()
            };
            let producer = Producer::new(client.clone(), config)
                .await
                .expect("producer");
            assert!(
                producer.producer_id().is_some(),
                "idempotent by default with acks=all"
            );
            let mut deliveries = Vec::new();
            for i in 0..200 {
                let value = format!("{codec:?}-{i}-{}", "y".repeat(i % 50));
                let record = ProducerRecord::new("codecs", value.clone())
                    .key(format!("k{i}"))
                    .header("codec", format!("{codec:?}"));
                deliveries.push(producer.send(record).await.expect("queued"));
                expected.push(value);
            }
            let mut offsets = Vec::new();
            for d in deliveries {
                offsets.push(d.await.expect("delivered").offset);
            }
            assert!(
                offsets.windows(2).all(|w| w[1] == w[0] + 1),
                "offsets in order: {offsets:?}"
            );
            producer.close().await;
        }
    });
    let messages = read_to_end(&bootstrap, "codecs", 0, 0);
    let values: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().expect("value")).into_owned())
        .collect();
    assert_eq!(values, expected, "each record once, in order");
    assert_eq!(messages[5].key(), Some(&b"k5"[..]));
}

#[test]
fn acks_zero_and_one_and_keyed_partitioning() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "acks", 3, &[]);
    block_on(async {
        let client = connect(&broker).await;
        for acks in [Acks::None, Acks::Leader] {
            let producer = Producer::new(
                client.clone(),
                ProducerConfig {
                    acks,
                    ..ProducerConfig::default()
                },
            )
            .await
            .expect("producer");
            assert_eq!(producer.producer_id(), None, "idempotence needs acks=all");
            let mut last = None;
            for i in 0..30 {
                last = Some(
                    producer
                        .send(ProducerRecord::new("acks", format!("{acks:?}-{i}")).key("same-key"))
                        .await
                        .expect("queued"),
                );
            }
            let delivered = last.expect("sent").await.expect("delivered");
            match acks {
                Acks::None => assert_eq!(delivered.offset, -1, "acks=0 learns no offsets"),
                _ => assert!(delivered.offset >= 29),
            }
            producer.close().await;
        }
    });
    // One key, one partition: Kafka's murmur2 partitioner.
    let expected_partition = millrace_client::records::partition_for_key(b"same-key", 3);
    // acks=0 writes are not confirmed: wait until all 60 are there.
    assert!(common::wait_until(Duration::from_secs(30), || watermarks(
        &bootstrap,
        "acks",
        expected_partition
    )
    .1 == 60));
    let counts: Vec<i64> = (0..3)
        .map(|p| watermarks(&bootstrap, "acks", p).1)
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 60, "{counts:?}");
}

#[test]
fn consumer_assigns_seeks_and_polls() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "reads", 2, &[]);
    let producer = common::producer(&bootstrap, &[("compression.type", "zstd")]);
    for p in 0..2 {
        for i in 0..50i64 {
            let value = format!("p{p}-{i}");
            let record = FutureRecord::to("reads")
                .partition(p)
                .key("k")
                .payload(&value)
                .timestamp(5_000_000 + i * 100);
            futures::executor::block_on(producer.send(record, Duration::from_secs(30)))
                .expect("delivered");
        }
    }
    block_on(async {
        let client = connect(&broker).await;
        let config = ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            max_partition_fetch_bytes: 512,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::new(client, config);
        let assigned = consumer.assign_topic("reads").await.expect("assign");
        assert_eq!(assigned.len(), 2);

        // Small fetches (512 bytes): many rounds, each partition in order, nothing lost.
        let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.values().map(Vec::len).sum::<usize>() < 100 {
            assert!(std::time::Instant::now() < deadline, "read {seen:?}");
            for r in consumer
                .poll(Duration::from_millis(500))
                .await
                .expect("poll")
            {
                assert_eq!(
                    r.value,
                    Some(Bytes::from(format!("p{}-{}", r.partition, r.offset)))
                );
                seen.entry(r.partition).or_default().push(r.offset);
            }
        }
        for offsets in seen.values() {
            assert_eq!(*offsets, (0..50).collect::<Vec<i64>>());
        }
        let tp0 = TopicPartition::new("reads", 0);
        assert_eq!(consumer.position(&tp0), Some(50));
        assert_eq!(consumer.high_watermark(&tp0), Some(50));

        // Seek by offset, by time, to the end.
        consumer.assign([tp0.clone()]);
        consumer.seek(tp0.clone(), SeekTo::Offset(42));
        let first = consumer.poll(Duration::from_secs(10)).await.expect("poll");
        assert_eq!(first.first().map(|r| r.offset), Some(42));
        consumer.seek(tp0.clone(), SeekTo::Timestamp(5_000_000 + 1_050));
        let by_time = consumer.poll(Duration::from_secs(10)).await.expect("poll");
        assert_eq!(by_time.first().map(|r| r.offset), Some(11));
        consumer.seek(tp0.clone(), SeekTo::End);
        assert!(consumer
            .poll(Duration::from_millis(300))
            .await
            .expect("poll")
            .is_empty());
        assert_eq!(consumer.position(&tp0), Some(50));

        // Out of range with auto.offset.reset=earliest: back to the start.
        consumer.seek(tp0.clone(), SeekTo::Offset(9_999));
        let reset = consumer.poll(Duration::from_secs(10)).await.expect("poll");
        assert_eq!(reset.first().map(|r| r.offset), Some(0));
    });
}

#[test]
fn pipelined_requests_on_one_connection_get_their_own_answers() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    for i in 0..20 {
        create_topic(&bootstrap, &format!("t{i}"), i % 4 + 1, &[]);
    }
    block_on(async {
        let client = connect(&broker).await;
        let node = client.node(Target::Any).await.expect("node");
        // Versions: the highest both sides implement.
        assert_eq!(node.versions().negotiate(ApiKey::Fetch), Some(12));
        assert_eq!(node.versions().negotiate(ApiKey::Produce), Some(12));
        assert_eq!(node.versions().negotiate(ApiKey::Metadata), Some(12));
        // 200 requests in flight at once on the one connection; each answer must describe the
        // topic its own request asked for.
        let requests = (0..200).map(|i| {
            let client = client.clone();
            let node = node.clone();
            async move {
                let name = format!("t{}", i % 20);
                let response = client
                    .send(&node, |_| {
                        MetadataRequest::default()
                            .with_topics(Some(vec![MetadataRequestTopic::default()
                                .with_name(Some(TopicName(name.clone().into())))]))
                    })
                    .await
                    .expect("metadata");
                (name, response)
            }
        });
        let handles: Vec<_> = requests.map(tokio::spawn).collect();
        for handle in handles {
            let (name, response) = handle.await.expect("task");
            assert_eq!(response.topics.len(), 1);
            let topic = &response.topics[0];
            assert_eq!(
                topic.name.as_ref().map(|n| n.0.to_string()),
                Some(name.clone())
            );
            let index: usize = name[1..].parse().expect("index");
            assert_eq!(topic.partitions.len(), index % 4 + 1);
        }
    });
}

#[test]
fn the_client_survives_a_broker_restart() {
    let mut broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "durable", 1, &[]);
    block_on(async {
        let client = connect(&broker).await;
        let producer = Producer::new(client.clone(), ProducerConfig::default())
            .await
            .expect("producer");
        producer
            .send(ProducerRecord::new("durable", "before"))
            .await
            .expect("queued")
            .await
            .expect("delivered");
        assert!(broker.terminate().success());
        broker.restart();
        // The pooled connection is dead; the next send reconnects (and retries) by itself.
        let after = producer
            .send(ProducerRecord::new("durable", "after"))
            .await
            .expect("queued")
            .await
            .expect("delivered after restart");
        assert_eq!(after.offset, 1);
        producer.close().await;

        let admin = Admin::new(client);
        if tools_support::serves_group_apis(&broker) {
            admin.list_groups().await.expect("groups listed");
        } else {
            // Not advertised: a typed error naming the API, not a hang or a broken connection.
            let error = admin.list_groups().await.expect_err("no group APIs");
            assert!(
                matches!(
                    error,
                    millrace_client::Error::UnsupportedApi {
                        api: ApiKey::ListGroups,
                        ..
                    }
                ),
                "{error}"
            );
        }
    });
    let values: Vec<Vec<u8>> = read_to_end(&bootstrap, "durable", 0, 0)
        .iter()
        .map(|m| m.payload().expect("value").to_vec())
        .collect();
    assert_eq!(values, [b"before".to_vec(), b"after".to_vec()]);
}
