//! The broker driven by a real, independent Kafka client: librdkafka through the `rdkafka` crate
//! (built from its bundled sources, so nothing needs installing). Where librdkafka hides what the
//! broker said (exact error codes, error messages, how a batch was stored), the test also asks over
//! a raw Kafka-protocol connection.
//!
//! Each test starts its own broker on a fresh data directory; see `common/mod.rs`.

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use futures::executor::block_on;
use kafka_protocol::{
    messages::{
        alter_configs_request::{AlterConfigsResource, AlterableConfig},
        describe_cluster_request::DescribeClusterRequest,
        incremental_alter_configs_request as incremental,
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        AlterConfigsRequest, ApiKey, IncrementalAlterConfigsRequest, InitProducerIdRequest,
        ListOffsetsRequest, TopicName,
    },
    protocol::StrBytes,
    records::{Compression, RecordBatchDecoder},
};
use rdkafka::{
    admin::{
        AlterConfig, ConfigResource, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
        TopicReplication,
    },
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    Message, Offset, Timestamp, TopicPartitionList,
};

/// Kafka error codes the tests expect by number (librdkafka maps some of them to its own).
const MESSAGE_TOO_LARGE: i16 = 10;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const INVALID_CONFIG: i16 = 40;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

/// Produces one record and waits for its delivery report; returns (partition, offset) or the
/// error librdkafka reported.
fn send(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
) -> Result<(i32, i64), KafkaError> {
    let delivery = producer.send_result(record).map_err(|(err, _)| err)?;
    match block_on(delivery).expect("delivery future dropped") {
        Ok(d) => Ok((d.partition, d.offset)),
        Err((err, _)) => Err(err),
    }
}

/// Produces `value` to partition 0 of `topic` and expects success; returns the offset.
fn send_value(producer: &FutureProducer, topic: &str, value: &[u8]) -> i64 {
    let (partition, offset) = send(
        producer,
        FutureRecord::to(topic).partition(0).payload(value),
    )
    .unwrap_or_else(|e| panic!("produce to {topic} failed: {e}"));
    assert_eq!(partition, 0);
    offset
}

/// The topic's configuration as DescribeConfigs returns it.
fn describe_topic(bootstrap: &str, topic: &str) -> ConfigResource {
    let results = block_on(
        admin(bootstrap).describe_configs([&ResourceSpecifier::Topic(topic)], &admin_opts()),
    )
    .expect("DescribeConfigs request");
    assert_eq!(results.len(), 1);
    results
        .into_iter()
        .next()
        .unwrap()
        .expect("DescribeConfigs result")
}

fn config_value(resource: &ConfigResource, name: &str) -> String {
    resource
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from DescribeConfigs"))
        .value
        .clone()
        .unwrap_or_else(|| panic!("{name} has a null value"))
}

fn producer_for_test(bootstrap: &str) -> FutureProducer {
    producer(bootstrap, &[("linger.ms", "0")])
}

fn metadata_consumer(bootstrap: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", "millrace-tests-never-committed")
        .create()
        .expect("create consumer")
}

/// Names of the directories under `log.dirs`.
fn partition_dirs(broker: &Broker) -> Vec<String> {
    std::fs::read_dir(broker.data_dir())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the `*.log` segment files of one partition directory, sorted.
fn segment_files(broker: &Broker, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(broker.data_dir().join(dir))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".log"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// -------------------------------------------------------------------------------------------
// Produce and consume

struct Sent {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, Option<Vec<u8>>)>,
    timestamp: i64,
}

#[test]
fn keys_headers_and_timestamps_read_back_exactly() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "events", 1, &[]);
    let base = 1_700_000_000_000i64;
    let sent = [
        Sent {
            key: Some(b"user-1".to_vec()),
            value: Some(b"hello".to_vec()),
            headers: vec![
                ("trace-id", Some(b"abc-123".to_vec())),
                ("null-header", None),
                ("binary", Some(vec![0, 1, 2, 254, 255])),
            ],
            timestamp: base,
        },
        Sent {
            key: None,
            value: Some(b"a record without a key".to_vec()),
            headers: vec![],
            timestamp: base + 1,
        },
        Sent {
            // A tombstone: key, null value. Duplicate header keys keep their order.
            key: Some(b"user-2".to_vec()),
            value: None,
            headers: vec![("dup", Some(b"1".to_vec())), ("dup", Some(b"2".to_vec()))],
            timestamp: base - 5_000,
        },
        Sent {
            key: Some(vec![0, 255, 1, 254]),
            value: Some(incompressible(10_000, 7)),
            headers: vec![("k", Some(b"v".to_vec()))],
            timestamp: base + 10,
        },
    ];
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    for (i, s) in sent.iter().enumerate() {
        let mut record = FutureRecord::<[u8], [u8]>::to("events")
            .partition(0)
            .timestamp(s.timestamp);
        if let Some(key) = &s.key {
            record = record.key(key);
        }
        if let Some(value) = &s.value {
            record = record.payload(value);
        }
        if !s.headers.is_empty() {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &s.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            record = record.headers(headers);
        }
        assert_eq!(send(&producer, record).expect("produce"), (0, i as i64));
    }

    let consumer = consumer_at(&bootstrap, "events", 0, Offset::Beginning, &[]);
    let received = consume(&consumer, sent.len(), CLIENT_TIMEOUT);
    for (i, (s, m)) in sent.iter().zip(&received).enumerate() {
        assert_eq!(m.topic(), "events");
        assert_eq!(m.partition(), 0);
        assert_eq!(m.offset(), i as i64, "offset of message {i}");
        assert_eq!(m.key(), s.key.as_deref(), "key of message {i}");
        assert_eq!(m.payload(), s.value.as_deref(), "value of message {i}");
        assert_eq!(
            m.timestamp(),
            Timestamp::CreateTime(s.timestamp),
            "timestamp of message {i}"
        );
        let headers: Vec<(String, Option<Vec<u8>>)> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let expected: Vec<(String, Option<Vec<u8>>)> = s
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(headers, expected, "headers of message {i}");
    }
}

/// Payloads that compress well (so librdkafka keeps the codec) yet differ byte by byte,
/// including every byte value.
fn compressible_payload(i: usize) -> Vec<u8> {
    let mut value = format!("record {i:06} of the codec test; ")
        .repeat(1 + i % 40)
        .into_bytes();
    value.extend((0..=255u8).cycle().skip(i % 256).take(512 + i * 7 % 2048));
    value
}

/// Checks, over a raw Fetch, that every stored batch of `topic` carries `compression` and that
/// the records decode to `values` at offsets 0, 1, 2, …
fn assert_stored_compressed(
    broker: &Broker,
    topic: &str,
    compression: Compression,
    values: &[Vec<u8>],
) {
    let mut raw = RawConn::connect(broker.kafka_addr());
    let data = raw.fetch(topic, 0, 0);
    assert_eq!(data.error_code, 0, "{topic}: fetch error");
    let mut bytes = data.records.clone().expect("records");
    let batches = RecordBatchDecoder::decode_batch_info(&mut bytes).expect("batch headers");
    assert!(!batches.is_empty(), "{topic}: no batches fetched");
    for batch in &batches {
        assert_eq!(
            batch.compression, compression,
            "{topic}: codec of a stored batch"
        );
    }
    let fetched = fetched_values(&data);
    assert_eq!(fetched.len(), values.len(), "{topic}: records in raw fetch");
    for (i, (offset, value)) in fetched.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(
            value.as_deref(),
            Some(&values[i][..]),
            "{topic}: raw value {i}"
        );
    }
}

/// librdkafka produces with `codec`; an rdkafka consumer reads every key and value back
/// byte-exact; the stored batches still carry the codec (the brief: batches are stored as
/// received, not recompressed or stored uncompressed).
fn librdkafka_codec_round_trip(codec: &str, compression: Compression) {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    let topic = format!("codec-{codec}");
    create_topic(&bootstrap, &topic, 1, &[]);
    // linger lets several records share a batch, so batches hold many compressed records.
    let producer = producer(
        &bootstrap,
        &[("compression.type", codec), ("linger.ms", "20")],
    );
    let values: Vec<Vec<u8>> = (0..300).map(compressible_payload).collect();
    let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("key-{i}").into_bytes()).collect();
    let pending: Vec<_> = values
        .iter()
        .zip(&keys)
        .map(|(value, key)| {
            producer
                .send_result(
                    FutureRecord::<[u8], [u8]>::to(&topic)
                        .partition(0)
                        .key(key)
                        .payload(value),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for (i, delivery) in pending.into_iter().enumerate() {
        let delivered = block_on(delivery)
            .expect("delivery")
            .unwrap_or_else(|(e, _)| panic!("{codec}: {e}"));
        assert_eq!(delivered.offset, i as i64, "{codec}: offset of record {i}");
    }

    let consumer = consumer_at(&bootstrap, &topic, 0, Offset::Beginning, &[]);
    let received = consume(&consumer, values.len(), CLIENT_TIMEOUT);
    for (i, m) in received.iter().enumerate() {
        assert_eq!(m.offset(), i as i64, "{codec}: offset");
        assert_eq!(m.key(), Some(&keys[i][..]), "{codec}: key of record {i}");
        assert_eq!(
            m.payload(),
            Some(&values[i][..]),
            "{codec}: value of record {i}"
        );
    }
    assert_stored_compressed(&broker, &topic, compression, &values);
}

#[test]
fn gzip_from_librdkafka_round_trips_byte_exact() {
    librdkafka_codec_round_trip("gzip", Compression::Gzip);
}

#[test]
fn snappy_from_librdkafka_round_trips_byte_exact() {
    librdkafka_codec_round_trip("snappy", Compression::Snappy);
}

/// librdkafka compresses with LZ4 only when the broker advertises FindCoordinator (its marker for
/// "Kafka >= 0.8.2", see rdkafka_feature.c); otherwise it silently sends LZ4-configured batches
/// uncompressed, and this test sees codec None in the log.
#[test]
fn lz4_from_librdkafka_round_trips_byte_exact() {
    librdkafka_codec_round_trip("lz4", Compression::Lz4);
}

#[test]
fn zstd_from_librdkafka_round_trips_byte_exact() {
    librdkafka_codec_round_trip("zstd", Compression::Zstd);
}

/// The other direction: batches compressed by an independent encoder (the kafka-protocol crate)
/// with each codec are stored as they are and decoded by librdkafka byte-exact. This covers LZ4
/// whatever librdkafka decides to send.
#[test]
fn batches_compressed_by_another_encoder_are_served_byte_exact_to_librdkafka() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    let mut raw = RawConn::connect(broker.kafka_addr());
    for (codec, compression) in [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let topic = format!("raw-{codec}");
        create_topic(&bootstrap, &topic, 1, &[]);
        let values: Vec<Vec<u8>> = (0..200).map(compressible_payload).collect();
        // Four batches of 50 records.
        for (n, chunk) in values.chunks(50).enumerate() {
            let refs: Vec<&[u8]> = chunk.iter().map(|v| &v[..]).collect();
            let response = raw.produce(
                &topic,
                0,
                -1,
                record_batch(&refs, now_ms(), compression, None),
            );
            assert_eq!(response.error_code, 0, "{codec}: produce batch {n}");
            assert_eq!(
                response.base_offset,
                50 * n as i64,
                "{codec}: base offset of batch {n}"
            );
        }
        let consumer = consumer_at(&bootstrap, &topic, 0, Offset::Beginning, &[]);
        let received = consume(&consumer, values.len(), CLIENT_TIMEOUT);
        for (i, m) in received.iter().enumerate() {
            assert_eq!(m.offset(), i as i64, "{codec}: offset");
            assert_eq!(
                m.payload(),
                Some(&values[i][..]),
                "{codec}: value of record {i}"
            );
        }
        assert_stored_compressed(&broker, &topic, compression, &values);
    }
}

#[test]
fn acks_0_1_and_all_each_store_what_was_sent() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "acks", 1, &[]);
    let mut expected = Vec::new();
    for acks in ["0", "1", "all"] {
        let producer = producer(&bootstrap, &[("acks", acks), ("linger.ms", "1")]);
        let values: Vec<Vec<u8>> = (0..100)
            .map(|i| format!("acks={acks} #{i}").into_bytes())
            .collect();
        let pending: Vec<_> = values
            .iter()
            .map(|v| {
                producer
                    .send_result(
                        FutureRecord::<[u8], [u8]>::to("acks")
                            .partition(0)
                            .payload(v),
                    )
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
            })
            .collect();
        for (i, delivery) in pending.into_iter().enumerate() {
            let delivered = block_on(delivery)
                .expect("delivery")
                .unwrap_or_else(|(e, _)| panic!("acks={acks}: {e}"));
            if acks != "0" {
                // With acks=0 the broker sends no response, so librdkafka cannot know offsets.
                assert_eq!(
                    delivered.offset,
                    (expected.len() + i) as i64,
                    "acks={acks}: offset"
                );
            }
        }
        expected.extend(values);
    }
    // acks=0 returns before the broker has stored anything: wait for the log to show it.
    let total = expected.len() as i64;
    assert!(
        wait_until(CLIENT_TIMEOUT, || watermarks(&bootstrap, "acks", 0).1
            == total),
        "high watermark never reached {total}: {:?}",
        watermarks(&bootstrap, "acks", 0)
    );
    let received = read_to_end(&bootstrap, "acks", 0, 0);
    let values: Vec<&[u8]> = received
        .iter()
        .map(|m| m.payload().unwrap_or_default())
        .collect();
    let expected: Vec<&[u8]> = expected.iter().map(|v| &v[..]).collect();
    assert_eq!(values, expected);

    // On the wire, acks=0 means no Produce response at all: the next response on the connection
    // answers the request after it.
    let mut raw = RawConn::connect(broker.kafka_addr());
    let version = raw.version_for(ApiKey::Produce, 12);
    raw.send(
        version,
        &produce_request(
            "acks",
            0,
            0,
            record_batch(&[b"raw acks=0"], now_ms(), Compression::None, None),
        ),
    );
    let list = list_offsets(&mut raw, "acks", -1);
    assert_eq!(list.error_code, 0);
    assert!(
        wait_until(CLIENT_TIMEOUT, || watermarks(&bootstrap, "acks", 0).1
            == total + 1),
        "raw acks=0 record not stored"
    );
}

// -------------------------------------------------------------------------------------------
// Message size limits

#[test]
fn one_mib_messages_round_trip_with_raised_max_message_bytes() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "big", 1, &[("max.message.bytes", "2097152")]);
    let producer = producer(
        &bootstrap,
        &[
            ("message.max.bytes", "4194304"),
            ("linger.ms", "0"),
            ("compression.type", "none"),
        ],
    );
    let values: Vec<Vec<u8>> = (0..3).map(|i| incompressible(1 << 20, 100 + i)).collect();
    for (i, value) in values.iter().enumerate() {
        assert_eq!(send_value(&producer, "big", value), i as i64);
    }
    let consumer = consumer_at(&bootstrap, "big", 0, Offset::Beginning, &[]);
    let received = consume(&consumer, values.len(), CLIENT_TIMEOUT);
    for (i, m) in received.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert!(
            m.payload() == Some(&values[i][..]),
            "1 MiB value {i} differs"
        );
    }
}

#[test]
fn messages_over_the_limit_get_message_too_large_and_nothing_is_stored() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "capped", 1, &[("max.message.bytes", "100000")]);
    create_topic(&bootstrap, "default-limit", 1, &[]);
    // The client's own limit is far above the broker's, so the refusal must come from the broker.
    let producer = producer(
        &bootstrap,
        &[
            ("message.max.bytes", "10485760"),
            ("linger.ms", "0"),
            ("compression.type", "none"),
        ],
    );
    let too_large = |topic: &str, len: usize| {
        let value = incompressible(len, len as u64);
        match send(
            &producer,
            FutureRecord::to(topic).partition(0).payload(&value[..]),
        ) {
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {}
            other => {
                panic!("{topic}: {len}-byte record: expected MessageSizeTooLarge, got {other:?}")
            }
        }
    };
    too_large("capped", 200_000);
    // The broker default message.max.bytes is 1048588: a 1 MiB value plus batch overhead is over.
    too_large("default-limit", 1 << 20);
    assert_eq!(
        watermarks(&bootstrap, "capped", 0),
        (0, 0),
        "capped: something was stored"
    );
    assert_eq!(
        watermarks(&bootstrap, "default-limit", 0),
        (0, 0),
        "default-limit: something was stored"
    );

    // The exact error code, over the wire.
    let mut raw = RawConn::connect(broker.kafka_addr());
    let batch = record_batch(
        &[&incompressible(200_000, 1)],
        now_ms(),
        Compression::None,
        None,
    );
    let response = raw.produce("capped", 0, -1, batch);
    assert_eq!(
        response.error_code, MESSAGE_TOO_LARGE,
        "raw Produce over max.message.bytes"
    );

    // Under the limit still works, and the limit is read at run time: raising it lets the same
    // record through without a restart.
    assert_eq!(
        send_value(&producer, "capped", &incompressible(50_000, 3)),
        0
    );
    let big = incompressible(200_000, 4);
    alter_topic(&bootstrap, "capped", &[("max.message.bytes", "300000")]);
    assert_eq!(send_value(&producer, "capped", &big), 1);
    let received = read_to_end(&bootstrap, "capped", 0, 0);
    assert_eq!(received.len(), 2);
    assert!(received[1].payload() == Some(&big[..]));
}

// -------------------------------------------------------------------------------------------
// ListOffsets

fn list_offsets(
    raw: &mut RawConn,
    topic: &str,
    timestamp: i64,
) -> kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse {
    // v7 is the first version that knows MAX_TIMESTAMP (-3).
    let version = raw.version_for(ApiKey::ListOffsets, 7);
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp)])]);
    let response = raw.call(version, &request);
    assert_eq!(response.topics.len(), 1);
    let partitions = response.topics.into_iter().next().unwrap().partitions;
    assert_eq!(partitions.len(), 1);
    partitions.into_iter().next().unwrap()
}

#[test]
fn list_offsets_by_time_earliest_latest_and_max_timestamp() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "times", 1, &[]);
    let base = 1_600_000_000_000i64;
    // Offsets 0..5; the largest timestamp sits in the middle (offset 3).
    let timestamps = [1_000, 2_000, 3_000, 9_000, 4_000, 5_000].map(|t| base + t);
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    for (i, ts) in timestamps.iter().enumerate() {
        let value = format!("at {ts}");
        let (_, offset) = send(
            &producer,
            FutureRecord::to("times")
                .partition(0)
                .payload(value.as_bytes())
                .timestamp(*ts),
        )
        .expect("produce");
        assert_eq!(offset, i as i64);
    }

    let consumer = metadata_consumer(&bootstrap);
    // Kafka's rule: the earliest offset whose timestamp is >= the target.
    for (target, expected) in [
        (base, Offset::Offset(0)),
        (base + 1_000, Offset::Offset(0)),
        (base + 1_500, Offset::Offset(1)),
        (base + 3_000, Offset::Offset(2)),
        (base + 4_500, Offset::Offset(3)),
        (base + 9_000, Offset::Offset(3)),
        (base + 9_001, Offset::End),
    ] {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset("times", 0, Offset::Offset(target))
            .unwrap();
        let answer = consumer
            .offsets_for_times(query, CLIENT_TIMEOUT)
            .expect("offsets_for_times");
        let elem = answer
            .find_partition("times", 0)
            .expect("partition in answer");
        assert_eq!(elem.error(), Ok(()), "offsets_for_times({target}) error");
        assert_eq!(
            elem.offset(),
            expected,
            "offsets_for_times(base + {})",
            target - base
        );
    }
    assert_eq!(
        consumer
            .fetch_watermarks("times", 0, CLIENT_TIMEOUT)
            .expect("watermarks"),
        (0, 6)
    );

    let mut raw = RawConn::connect(broker.kafka_addr());
    let earliest = list_offsets(&mut raw, "times", -2);
    assert_eq!((earliest.error_code, earliest.offset), (0, 0), "EARLIEST");
    let latest = list_offsets(&mut raw, "times", -1);
    assert_eq!((latest.error_code, latest.offset), (0, 6), "LATEST");
    let max = list_offsets(&mut raw, "times", -3);
    assert_eq!(
        (max.error_code, max.offset, max.timestamp),
        (0, 3, base + 9_000),
        "MAX_TIMESTAMP"
    );
}

// -------------------------------------------------------------------------------------------
// Idempotence

#[test]
fn idempotent_producer_delivers_each_message_once_in_order() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "idem", 1, &[]);
    let producer = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("max.in.flight.requests.per.connection", "5"),
        ],
    );
    let values: Vec<Vec<u8>> = (0..3000)
        .map(|i| format!("idem-{i}").into_bytes())
        .collect();
    let pending: Vec<_> = values
        .iter()
        .map(|v| {
            producer
                .send_result(
                    FutureRecord::<[u8], [u8]>::to("idem")
                        .partition(0)
                        .payload(v),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for (i, delivery) in pending.into_iter().enumerate() {
        let delivered = block_on(delivery)
            .expect("delivery")
            .unwrap_or_else(|(e, _)| panic!("{e}"));
        assert_eq!(delivered.offset, i as i64, "delivery offset of message {i}");
    }
    let received = read_to_end(&bootstrap, "idem", 0, 0);
    assert_eq!(received.len(), values.len());
    for (i, m) in received.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert_eq!(m.payload(), Some(&values[i][..]), "message at offset {i}");
    }
}

/// (producer id, epoch) from InitProducerId, non-transactional.
fn init_producer_id(raw: &mut RawConn) -> (i64, i16) {
    let version = raw.version_for(ApiKey::InitProducerId, 4);
    let response = raw.call(
        version,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    );
    assert_eq!(response.error_code, 0, "InitProducerId error");
    assert!(
        response.producer_id.0 >= 0,
        "producer id {:?}",
        response.producer_id
    );
    assert!(
        response.producer_epoch >= 0,
        "producer epoch {}",
        response.producer_epoch
    );
    (response.producer_id.0, response.producer_epoch)
}

#[test]
fn idempotent_retry_of_a_batch_is_answered_without_a_second_append() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "retry", 1, &[]);
    let mut raw = RawConn::connect(broker.kafka_addr());
    let (pid, epoch) = init_producer_id(&mut raw);

    let first = record_batch(
        &[b"a0", b"a1", b"a2"],
        now_ms(),
        Compression::None,
        Some((pid, epoch, 0)),
    );
    let response = raw.produce("retry", 0, -1, first.clone());
    assert_eq!(
        (response.error_code, response.base_offset),
        (0, 0),
        "first send"
    );
    // A retry of the same batch (as after a lost response): success, the original offset, no append.
    let response = raw.produce("retry", 0, -1, first);
    assert_eq!(
        (response.error_code, response.base_offset),
        (0, 0),
        "duplicate send"
    );
    assert_eq!(
        watermarks(&bootstrap, "retry", 0),
        (0, 3),
        "the duplicate was appended"
    );

    let second = record_batch(
        &[b"b0", b"b1"],
        now_ms(),
        Compression::None,
        Some((pid, epoch, 3)),
    );
    let response = raw.produce("retry", 0, -1, second);
    assert_eq!(
        (response.error_code, response.base_offset),
        (0, 3),
        "next batch"
    );
    let values: Vec<Vec<u8>> = read_to_end(&bootstrap, "retry", 0, 0)
        .iter()
        .map(|m| m.payload().unwrap_or_default().to_vec())
        .collect();
    assert_eq!(
        values,
        [&b"a0"[..], b"a1", b"a2", b"b0", b"b1"].map(<[u8]>::to_vec)
    );
}

#[test]
fn idempotent_sequence_gap_is_rejected_out_of_order() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "gap", 1, &[]);
    let mut raw = RawConn::connect(broker.kafka_addr());
    let (pid, epoch) = init_producer_id(&mut raw);
    let batch = |seq: i32, value: &[u8]| {
        record_batch(
            &[value],
            now_ms(),
            Compression::None,
            Some((pid, epoch, seq)),
        )
    };

    assert_eq!(raw.produce("gap", 0, -1, batch(0, b"s0")).error_code, 0);
    let response = raw.produce("gap", 0, -1, batch(5, b"s5"));
    assert_eq!(
        response.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER,
        "sequence 5 after 0"
    );
    assert_eq!(
        watermarks(&bootstrap, "gap", 0),
        (0, 1),
        "the out-of-order batch was appended"
    );
    let response = raw.produce("gap", 0, -1, batch(1, b"s1"));
    assert_eq!(
        (response.error_code, response.base_offset),
        (0, 1),
        "the in-order batch after the gap"
    );
}

// -------------------------------------------------------------------------------------------
// Topic administration

#[test]
fn metadata_auto_creates_topics_and_describes_this_broker() {
    let broker = Broker::start(&[("num.partitions", "3")]);
    let bootstrap = broker.bootstrap();
    // librdkafka consumers ask Metadata not to create topics unless told otherwise.
    let consumer: BaseConsumer = client_config(&bootstrap)
        .set("group.id", "millrace-tests-never-committed")
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("create consumer");
    // Kafka may answer the first request with LEADER_NOT_AVAILABLE while it creates the topic.
    let mut partitions = 0;
    let mut last_seen = String::new();
    assert!(
        wait_until(CLIENT_TIMEOUT, || {
            let metadata = consumer
                .fetch_metadata(Some("made-on-demand"), CLIENT_TIMEOUT)
                .expect("metadata");
            let topic = &metadata.topics()[0];
            partitions = topic.partitions().len();
            last_seen = format!(
                "topic error {:?}, partitions {:?}",
                topic.error(),
                topic
                    .partitions()
                    .iter()
                    .map(|p| (p.id(), p.leader(), p.error()))
                    .collect::<Vec<_>>()
            );
            topic.error().is_none()
                && topic
                    .partitions()
                    .iter()
                    .all(|p| p.error().is_none() && p.leader() == 1)
        }),
        "auto-created topic never became usable; last metadata: {last_seen}"
    );
    assert_eq!(
        partitions, 3,
        "num.partitions=3 applies to auto-created topics"
    );

    let metadata = consumer
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata");
    let brokers: Vec<(i32, String, i32)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect();
    assert_eq!(
        brokers,
        [(
            1,
            "127.0.0.1".to_string(),
            broker.kafka_addr().port() as i32
        )]
    );

    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    let (partition, offset) = send(
        &producer,
        FutureRecord::to("made-on-demand")
            .partition(2)
            .payload(&b"p2"[..]),
    )
    .expect("produce to partition 2");
    assert_eq!((partition, offset), (2, 0));

    let mut raw = RawConn::connect(broker.kafka_addr());
    let version = raw.version_for(ApiKey::DescribeCluster, 0);
    let cluster = raw.call(version, &DescribeClusterRequest::default());
    assert_eq!(cluster.error_code, 0);
    assert!(!cluster.cluster_id.is_empty(), "empty cluster id");
    assert_eq!(cluster.controller_id.0, 1);
    let described: Vec<(i32, String, i32)> = cluster
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.host.to_string(), b.port))
        .collect();
    assert_eq!(described, brokers, "DescribeCluster and Metadata disagree");
}

#[test]
fn create_topics_validate_only_creates_nothing() {
    let broker = Broker::start(&[("auto.create.topics.enable", "false")]);
    let bootstrap = broker.bootstrap();
    let admin = admin(&bootstrap);
    let validate = admin_opts().validate_only(true);

    let checked =
        NewTopic::new("checked", 3, TopicReplication::Fixed(1)).set("retention.ms", "60000");
    let results = block_on(admin.create_topics([&checked], &validate)).expect("CreateTopics");
    assert_eq!(
        results,
        vec![Ok("checked".to_string())],
        "validate_only of a valid topic"
    );
    // Validation is real: an invalid config fails it.
    let bad = NewTopic::new("checked", 3, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let results = block_on(admin.create_topics([&bad], &validate)).expect("CreateTopics");
    assert_eq!(
        results,
        vec![Err((
            "checked".to_string(),
            RDKafkaErrorCode::InvalidConfig
        ))]
    );

    let consumer = metadata_consumer(&bootstrap);
    let metadata = consumer
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata");
    assert!(
        metadata.topics().iter().all(|t| t.name() != "checked"),
        "validate_only created the topic"
    );
    let metadata = consumer
        .fetch_metadata(Some("checked"), CLIENT_TIMEOUT)
        .expect("metadata");
    assert_eq!(
        metadata.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    assert!(
        partition_dirs(&broker)
            .iter()
            .all(|d| !d.starts_with("checked-")),
        "validate_only left partition directories: {:?}",
        partition_dirs(&broker)
    );

    let results = block_on(admin.create_topics([&checked], &admin_opts())).expect("CreateTopics");
    assert_eq!(results, vec![Ok("checked".to_string())]);
    let metadata = consumer
        .fetch_metadata(Some("checked"), CLIENT_TIMEOUT)
        .expect("metadata");
    assert_eq!(metadata.topics()[0].error(), None);
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
    let results = block_on(admin.create_topics([&checked], &admin_opts())).expect("CreateTopics");
    assert_eq!(
        results,
        vec![Err((
            "checked".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );
}

#[test]
fn create_partitions_increases_the_partition_count() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "grow", 1, &[]);
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    assert_eq!(send_value(&producer, "grow", b"before"), 0);

    let admin = admin(&bootstrap);
    let results =
        block_on(admin.create_partitions([&NewPartitions::new("grow", 4)], &admin_opts()))
            .expect("CreatePartitions");
    assert_eq!(results, vec![Ok("grow".to_string())]);
    let consumer = metadata_consumer(&bootstrap);
    let metadata = consumer
        .fetch_metadata(Some("grow"), CLIENT_TIMEOUT)
        .expect("metadata");
    let mut ids: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3]);

    // A new producer (the first one's metadata cache still says one partition).
    let (partition, offset) = send(
        &producer_for_test(&bootstrap),
        FutureRecord::to("grow").partition(3).payload(&b"new"[..]),
    )
    .expect("produce to the new partition");
    assert_eq!((partition, offset), (3, 0));
    let received = consume(
        &consumer_at(&bootstrap, "grow", 3, Offset::Beginning, &[]),
        1,
        CLIENT_TIMEOUT,
    );
    assert_eq!(received[0].payload(), Some(&b"new"[..]));
    let received = read_to_end(&bootstrap, "grow", 0, 0);
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].payload(),
        Some(&b"before"[..]),
        "partition 0 changed"
    );

    // Partitions only grow.
    let results =
        block_on(admin.create_partitions([&NewPartitions::new("grow", 2)], &admin_opts()))
            .expect("CreatePartitions");
    assert_eq!(
        results,
        vec![Err((
            "grow".to_string(),
            RDKafkaErrorCode::InvalidPartitions
        ))]
    );
}

#[test]
fn delete_topics_removes_the_topic_and_its_data() {
    let broker = Broker::start(&[("auto.create.topics.enable", "false")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "doomed", 1, &[]);
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    for i in 0..10 {
        send_value(&producer, "doomed", format!("old-{i}").as_bytes());
    }
    assert!(partition_dirs(&broker).contains(&"doomed-0".to_string()));

    let admin = admin(&bootstrap);
    let results = block_on(admin.delete_topics(&["doomed"], &admin_opts())).expect("DeleteTopics");
    assert_eq!(results, vec![Ok("doomed".to_string())]);
    let consumer = metadata_consumer(&bootstrap);
    let metadata = consumer
        .fetch_metadata(Some("doomed"), CLIENT_TIMEOUT)
        .expect("metadata");
    assert_eq!(
        metadata.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition),
        "deleted topic still in metadata"
    );
    // Kafka renames a deleted partition's directory before removing it later; either way the
    // live directory must go.
    assert!(
        wait_until(CLIENT_TIMEOUT, || !partition_dirs(&broker)
            .contains(&"doomed-0".to_string())),
        "doomed-0 still on disk: {:?}",
        partition_dirs(&broker)
    );

    // A topic created again under the same name starts empty.
    create_topic(&bootstrap, "doomed", 1, &[]);
    assert_eq!(watermarks(&bootstrap, "doomed", 0), (0, 0));
    assert_eq!(send_value(&producer, "doomed", b"new life"), 0);
    let received = read_to_end(&bootstrap, "doomed", 0, 0);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].payload(), Some(&b"new life"[..]));

    let results =
        block_on(admin.delete_topics(&["never-existed"], &admin_opts())).expect("DeleteTopics");
    assert_eq!(
        results,
        vec![Err((
            "never-existed".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
}

// -------------------------------------------------------------------------------------------
// Configs

/// AlterConfigs through librdkafka, for the success path. The rdkafka crate (0.39) reports every
/// resource as Ok whatever the broker answered (`AlterConfigsFuture` never reads the per-resource
/// error), so callers must read the result back with DescribeConfigs; errors are checked with
/// [`raw_alter`] instead.
fn alter_topic(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (key, value) in configs {
        alter = alter.set(key, value);
    }
    let results = block_on(admin(bootstrap).alter_configs([&alter], &admin_opts()))
        .expect("AlterConfigs request");
    assert_eq!(results.len(), 1);
}

/// AlterConfigs (the non-incremental API) over the wire: (error code, error message).
fn raw_alter(raw: &mut RawConn, topic: &str, configs: &[(&str, &str)]) -> (i16, String) {
    let version = raw.version_for(ApiKey::AlterConfigs, 2);
    let response = raw.call(
        version,
        &AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                configs
                    .iter()
                    .map(|(name, value)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(name.to_string()))
                            .with_value(Some(StrBytes::from_string(value.to_string())))
                    })
                    .collect(),
            )]),
    );
    assert_eq!(response.responses.len(), 1);
    let result = &response.responses[0];
    (
        result.error_code,
        result
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

fn incremental_alter(
    raw: &mut RawConn,
    topic: &str,
    configs: &[(&str, i8, Option<&str>)],
) -> (i16, Option<String>) {
    let version = raw.version_for(ApiKey::IncrementalAlterConfigs, 1);
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                configs
                    .iter()
                    .map(|(name, op, value)| {
                        incremental::AlterableConfig::default()
                            .with_name(StrBytes::from_string(name.to_string()))
                            .with_config_operation(*op)
                            .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    let response = raw.call(version, &request);
    assert_eq!(response.responses.len(), 1);
    let result = &response.responses[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[test]
fn alter_configs_then_describe_configs_reads_them_back() {
    let broker = Broker::start(&[("num.partitions", "2")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "cfg", 1, &[("retention.ms", "3600000")]);

    let described = describe_topic(&bootstrap, "cfg");
    assert_eq!(config_value(&described, "retention.ms"), "3600000");
    assert_eq!(
        described.get("retention.ms").unwrap().source,
        ConfigSource::DynamicTopic
    );
    assert_eq!(config_value(&described, "cleanup.policy"), "delete");

    alter_topic(
        &bootstrap,
        "cfg",
        &[("retention.ms", "7200000"), ("max.message.bytes", "500000")],
    );
    let described = describe_topic(&bootstrap, "cfg");
    assert_eq!(config_value(&described, "retention.ms"), "7200000");
    assert_eq!(config_value(&described, "max.message.bytes"), "500000");
    assert_eq!(
        described.get("max.message.bytes").unwrap().source,
        ConfigSource::DynamicTopic
    );

    // AlterConfigs replaces the whole set: what it leaves out returns to the broker default
    // (log.retention.hours=168).
    alter_topic(&bootstrap, "cfg", &[("max.message.bytes", "600000")]);
    let described = describe_topic(&bootstrap, "cfg");
    assert_eq!(config_value(&described, "max.message.bytes"), "600000");
    assert_eq!(config_value(&described, "retention.ms"), "604800000");
    assert_ne!(
        described.get("retention.ms").unwrap().source,
        ConfigSource::DynamicTopic
    );

    // IncrementalAlterConfigs changes only what it names: SET (0) and DELETE (1).
    let mut raw = RawConn::connect(broker.kafka_addr());
    let (code, message) =
        incremental_alter(&mut raw, "cfg", &[("retention.ms", 0, Some("1000000"))]);
    assert_eq!(code, 0, "incremental SET: {message:?}");
    let described = describe_topic(&bootstrap, "cfg");
    assert_eq!(config_value(&described, "retention.ms"), "1000000");
    assert_eq!(config_value(&described, "max.message.bytes"), "600000");
    let (code, message) = incremental_alter(&mut raw, "cfg", &[("max.message.bytes", 1, None)]);
    assert_eq!(code, 0, "incremental DELETE: {message:?}");
    let described = describe_topic(&bootstrap, "cfg");
    assert_eq!(config_value(&described, "max.message.bytes"), "1048588");
    assert_eq!(config_value(&described, "retention.ms"), "1000000");

    // Broker configs are described too, with the values the broker was started with.
    let results = block_on(
        admin(&bootstrap).describe_configs([&ResourceSpecifier::Broker(1)], &admin_opts()),
    )
    .expect("DescribeConfigs broker");
    let broker_config = results.into_iter().next().unwrap().expect("broker config");
    assert_eq!(config_value(&broker_config, "num.partitions"), "2");
}

#[test]
fn invalid_config_values_are_rejected_with_invalid_config_naming_the_key() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "strict", 1, &[("retention.ms", "3600000")]);

    // Error codes and messages over the wire: the rdkafka crate drops AlterConfigs errors, and
    // librdkafka never surfaces the message, which must name the key.
    let mut raw = RawConn::connect(broker.kafka_addr());
    for (key, value) in [("retention.ms", "not-a-number"), ("no.such.config", "1")] {
        let (code, message) = raw_alter(&mut raw, "strict", &[(key, value)]);
        assert_eq!(
            code, INVALID_CONFIG,
            "AlterConfigs {key}={value}: {message}"
        );
        assert!(
            message.contains(key),
            "AlterConfigs error message does not name {key}: {message:?}"
        );
    }
    let bad =
        NewTopic::new("born-bad", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "shred");
    let results =
        block_on(admin(&bootstrap).create_topics([&bad], &admin_opts())).expect("CreateTopics");
    assert_eq!(
        results,
        vec![Err((
            "born-bad".to_string(),
            RDKafkaErrorCode::InvalidConfig
        ))]
    );

    let (code, message) =
        incremental_alter(&mut raw, "strict", &[("segment.bytes", 0, Some("-5"))]);
    assert_eq!(code, INVALID_CONFIG);
    let message = message.unwrap_or_default();
    assert!(
        message.contains("segment.bytes"),
        "IncrementalAlterConfigs error message does not name the key: {message:?}"
    );

    // Nothing was half-applied.
    let described = describe_topic(&bootstrap, "strict");
    assert_eq!(config_value(&described, "retention.ms"), "3600000");
    assert_ne!(config_value(&described, "segment.bytes"), "-5");
    let metadata = metadata_consumer(&bootstrap)
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata");
    assert!(
        metadata.topics().iter().all(|t| t.name() != "born-bad"),
        "invalid topic was created"
    );
}

// -------------------------------------------------------------------------------------------
// Retention and DeleteRecords, observed through ListOffsets

/// Produces `count` records of `size` bytes with timestamp `timestamp`, one request each.
fn produce_sized(
    producer: &FutureProducer,
    topic: &str,
    count: usize,
    size: usize,
    timestamp: i64,
) {
    for i in 0..count {
        let value = incompressible(size, i as u64);
        send(
            producer,
            FutureRecord::to(topic)
                .partition(0)
                .payload(&value[..])
                .timestamp(timestamp),
        )
        .unwrap_or_else(|e| panic!("produce to {topic}: {e}"));
    }
}

/// Reads everything retention has left of partition 0, from the low watermark to the high
/// watermark: (low watermark, (offset, value) per record). Retention may move the low watermark
/// between the ListOffsets and the Fetch; the fetch then gets OFFSET_OUT_OF_RANGE and the read
/// starts over from the new low watermark.
fn read_retained(broker: &Broker, topic: &str) -> (i64, Vec<(i64, Option<bytes::Bytes>)>) {
    let mut raw = RawConn::connect(broker.kafka_addr());
    let mut result = None;
    let done = wait_until(CLIENT_TIMEOUT, || {
        let (low, high) = watermarks(&broker.bootstrap(), topic, 0);
        let mut records = Vec::new();
        let mut next = low;
        while next < high {
            let data = raw.fetch(topic, 0, next);
            if data.error_code == OFFSET_OUT_OF_RANGE {
                return false;
            }
            assert_eq!(data.error_code, 0, "fetch {topic} at {next}");
            let fetched: Vec<_> = fetched_values(&data)
                .into_iter()
                .filter(|(offset, _)| *offset >= next)
                .collect();
            assert!(
                !fetched.is_empty(),
                "fetch {topic} at {next} below {high} returned nothing"
            );
            next = fetched.last().unwrap().0 + 1;
            records.extend(fetched);
        }
        result = Some((low, records));
        true
    });
    assert!(
        done,
        "{topic}: the log start kept moving for {CLIENT_TIMEOUT:?}"
    );
    result.unwrap()
}

#[test]
fn retention_ms_deletes_expired_segments_and_moves_the_low_watermark() {
    let broker = Broker::start(&[("log.retention.check.interval.ms", "200")]);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "expiring",
        1,
        &[("retention.ms", "60000"), ("segment.bytes", "1048576")],
    );
    let producer = producer(
        &bootstrap,
        &[("linger.ms", "0"), ("compression.type", "none")],
    );
    // 40 x 100 KiB stamped an hour ago: about four closed segments, all past retention.
    produce_sized(&producer, "expiring", 40, 100 << 10, now_ms() - 3_600_000);
    // Fresh records land in the active segment, which retention must keep.
    let fresh: Vec<Vec<u8>> = (0..5).map(|i| format!("fresh-{i}").into_bytes()).collect();
    for value in &fresh {
        send_value(&producer, "expiring", value);
    }
    assert!(
        wait_until(CLIENT_TIMEOUT, || watermarks(&bootstrap, "expiring", 0).0
            > 0),
        "low watermark never moved; segments: {:?}",
        segment_files(&broker, "expiring-0")
    );
    let (low, high) = watermarks(&bootstrap, "expiring", 0);
    assert_eq!(high, 45);
    assert!(
        low <= 40,
        "retention deleted fresh records: low watermark {low}"
    );
    assert!(
        !segment_files(&broker, "expiring-0").contains(&format!("{:020}.log", 0)),
        "first segment file still present: {:?}",
        segment_files(&broker, "expiring-0")
    );
    // What is left runs from the low watermark to the end without a gap, and is intact.
    let (low, rest) = read_retained(&broker, "expiring");
    let offsets: Vec<i64> = rest.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (low..45).collect::<Vec<_>>());
    let tail: Vec<&[u8]> = rest[rest.len() - 5..]
        .iter()
        .map(|(_, value)| value.as_deref().unwrap())
        .collect();
    assert_eq!(tail, fresh.iter().map(|v| &v[..]).collect::<Vec<_>>());
}

#[test]
fn retention_bytes_keeps_the_partition_near_its_size_limit() {
    let broker = Broker::start(&[("log.retention.check.interval.ms", "200")]);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "bounded",
        1,
        &[("retention.bytes", "1048576"), ("segment.bytes", "1048576")],
    );
    let producer = producer(
        &bootstrap,
        &[("linger.ms", "0"), ("compression.type", "none")],
    );
    // 50 x 100 KiB: about five segments of ten records for a 1 MiB budget.
    produce_sized(&producer, "bounded", 50, 100 << 10, now_ms());
    // Kafka deletes the oldest segments while the rest still hold retention.bytes: here that
    // leaves one to two segments (10 to 20 records).
    assert!(
        wait_until(CLIENT_TIMEOUT, || {
            let (low, high) = watermarks(&bootstrap, "bounded", 0);
            high - low <= 25
        }),
        "retention.bytes never applied: watermarks {:?}, segments {:?}",
        watermarks(&bootstrap, "bounded", 0),
        segment_files(&broker, "bounded-0")
    );
    let (low, high) = watermarks(&bootstrap, "bounded", 0);
    assert_eq!(high, 50);
    assert!(
        high - low >= 10,
        "retention.bytes deleted too much: {} records left",
        high - low
    );
    let (low, rest) = read_retained(&broker, "bounded");
    let offsets: Vec<i64> = rest.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (low..50).collect::<Vec<_>>());
    for (offset, value) in &rest {
        assert_eq!(
            value.as_deref(),
            Some(&incompressible(100 << 10, *offset as u64)[..]),
            "value at offset {offset}"
        );
    }
}

#[test]
fn segment_ms_rolls_the_active_segment_so_retention_can_delete_it() {
    let broker = Broker::start(&[("log.retention.check.interval.ms", "200")]);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "rolling",
        1,
        &[("retention.ms", "60000"), ("segment.ms", "100")],
    );
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    let old = now_ms() - 3_600_000;
    // Keep appending expired records until segment.ms has rolled at least once.
    let mut sent = 0;
    assert!(
        wait_until(CLIENT_TIMEOUT, || {
            produce_sized(&producer, "rolling", 1, 100, old);
            sent += 1;
            segment_files(&broker, "rolling-0").len() >= 2
        }),
        "segment.ms=100 never rolled a segment: {:?}",
        segment_files(&broker, "rolling-0")
    );
    assert!(
        wait_until(CLIENT_TIMEOUT, || watermarks(&bootstrap, "rolling", 0).0
            > 0),
        "expired, rolled segments were never deleted: {:?}",
        segment_files(&broker, "rolling-0")
    );
    // The log goes on at the right offset. Retention may still be deleting the other expired
    // segments meanwhile, so read only the fresh record, which it must keep.
    assert_eq!(send_value(&producer, "rolling", b"after"), sent);
    let (low, high) = watermarks(&bootstrap, "rolling", 0);
    assert_eq!(high, sent + 1);
    assert!(
        low <= sent,
        "retention deleted the fresh record: low watermark {low}"
    );
    let rest = read_to_end(&bootstrap, "rolling", 0, sent);
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (rest[0].offset(), rest[0].payload()),
        (sent, Some(&b"after"[..]))
    );
}

#[test]
fn delete_records_moves_the_low_watermark_and_survives_a_restart() {
    let mut broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "trim", 1, &[]);
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    for i in 0..10 {
        send_value(&producer, "trim", format!("t-{i}").as_bytes());
    }
    let admin = admin(&bootstrap);
    let delete_before = |offset: Offset| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("trim", 0, offset).unwrap();
        // librdkafka reports a failure either for the whole request or for the partition.
        let code = |e: KafkaError| {
            e.rdkafka_error_code()
                .unwrap_or_else(|| panic!("DeleteRecords: {e}"))
        };
        let result = block_on(admin.delete_records(&tpl, &admin_opts())).map_err(code)?;
        let elem = result
            .find_partition("trim", 0)
            .expect("partition in result");
        elem.error().map(|()| elem.offset()).map_err(code)
    };
    assert_eq!(delete_before(Offset::Offset(4)), Ok(Offset::Offset(4)));
    assert_eq!(watermarks(&bootstrap, "trim", 0), (4, 10));
    let consumer = consumer_at(&bootstrap, "trim", 0, Offset::Beginning, &[]);
    let rest = consume(&consumer, 6, CLIENT_TIMEOUT);
    assert_eq!(rest[0].offset(), 4);
    assert_eq!(rest[0].payload(), Some(&b"t-4"[..]));
    let mut raw = RawConn::connect(broker.kafka_addr());
    let below = raw.fetch("trim", 0, 2);
    assert_eq!(
        below.error_code, OFFSET_OUT_OF_RANGE,
        "fetch below the log start offset"
    );
    // Beyond the high watermark is an error and changes nothing.
    assert_eq!(
        delete_before(Offset::Offset(20)),
        Err(RDKafkaErrorCode::OffsetOutOfRange),
        "DeleteRecords beyond the high watermark"
    );
    assert_eq!(watermarks(&bootstrap, "trim", 0), (4, 10));

    let status = broker.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM exit status");
    broker.restart();
    assert_eq!(
        watermarks(&bootstrap, "trim", 0),
        (4, 10),
        "log start offset lost by a clean restart"
    );

    assert_eq!(delete_before(Offset::End), Ok(Offset::Offset(10)));
    assert_eq!(watermarks(&bootstrap, "trim", 0), (10, 10));
}

// -------------------------------------------------------------------------------------------
// Fetch long poll

#[test]
fn a_waiting_fetch_is_answered_when_a_record_arrives() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "waiting", 1, &[]);
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);

    // The consumer's fetches wait up to 20 s; the record must come well before that, which only
    // happens if the append wakes the waiting fetch.
    let consumer = consumer_at(
        &bootstrap,
        "waiting",
        0,
        Offset::Beginning,
        &[
            ("fetch.wait.max.ms", "20000"),
            ("socket.timeout.ms", "60000"),
            ("fetch.min.bytes", "1"),
        ],
    );
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "an empty topic returned a message"
    );
    send_value(&producer, "waiting", b"wake up");
    let received = consume(&consumer, 1, Duration::from_secs(15));
    assert_eq!(
        (received[0].offset(), received[0].payload()),
        (0, Some(&b"wake up"[..]))
    );

    // The same over the wire: the Fetch is on the socket before the record is produced.
    let mut raw = RawConn::connect(broker.kafka_addr());
    let pending = raw.send_fetch("waiting", 0, 1, 20_000, 1);
    send_value(&producer, "waiting", b"second");
    raw.set_read_timeout(Duration::from_secs(15));
    let data = raw.receive_fetch(pending);
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 2);
    let values: HashMap<i64, Option<bytes::Bytes>> = fetched_values(&data).into_iter().collect();
    assert_eq!(
        values.get(&1).cloned().flatten().as_deref(),
        Some(&b"second"[..])
    );
}
