//! Log compaction against a real broker process: librdkafka writes many updates to a few keys of
//! a `cleanup.policy=compact` topic, the broker's cleaner compacts the sealed segments, and a
//! full read returns exactly the latest value per key at its original offset; a tombstone
//! survives the first pass and disappears once its delete horizon (`delete.retention.ms`) passed.
//!
//! Nothing sleeps to wait for the cleaner: every wait polls a full read against a deadline. The
//! broker runs its cleaner every 100 ms and rolls quiet segments after `segment.ms`, so the last
//! records written leave the (never cleaned) active segment without further writes.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    consumer_at, create_topic, now_ms, producer, wait_until, watermarks, Broker, RawConn,
    CLIENT_TIMEOUT,
};
use kafka_protocol::records::RecordBatchDecoder;
use rdkafka::{
    consumer::Consumer,
    producer::{FutureProducer, FutureRecord},
    Message, Offset,
};

/// (offset, key, value) of one record as read back; `None` value is a tombstone.
type Row = (i64, String, Option<String>);

/// How long the cleaner gets to converge. Generous: debug builds, two shared cores.
const CLEAN_TIMEOUT: Duration = Duration::from_secs(90);

fn start_broker() -> Broker {
    Broker::start(&[
        ("log.cleaner.backoff.ms", "100"),
        // Quiet partitions roll after segment.ms on this check, so their last records become
        // cleanable without another write.
        ("log.retention.check.interval.ms", "100"),
    ])
}

fn create_compacted(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) {
    let mut configs = vec![
        ("cleanup.policy", "compact"),
        ("segment.bytes", "1024"),
        ("segment.ms", "300"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    configs.extend_from_slice(extra);
    create_topic(bootstrap, topic, 1, &configs);
}

/// Sends one record and returns its offset.
fn send(producer: &FutureProducer, topic: &str, key: &str, value: Option<&str>) -> i64 {
    let mut record = FutureRecord::<str, str>::to(topic).key(key).partition(0);
    if let Some(value) = value {
        record = record.payload(value);
    }
    futures::executor::block_on(producer.send(record, CLIENT_TIMEOUT))
        .unwrap_or_else(|(e, _)| panic!("send {key}: {e}"))
        .offset
}

fn text(bytes: Option<Bytes>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// One stored batch as a raw Fetch returns it.
#[derive(Debug)]
struct StoredBatch {
    last_offset: i64,
    /// The delete horizon the cleaner stamped (attribute bit 6, carried in `baseTimestamp`).
    delete_horizon: Option<i64>,
    rows: Vec<Row>,
}

/// Reads the whole partition with raw Fetch requests, batch by batch: what is stored, gaps and
/// all, including what clients hide (empty batches, delete horizons).
fn stored_batches(raw: &mut RawConn, topic: &str) -> Vec<StoredBatch> {
    let mut batches = Vec::new();
    let mut offset = 0;
    loop {
        let data = raw.fetch(topic, 0, offset);
        assert_eq!(data.error_code, 0, "Fetch at {offset}");
        let mut records = data.records.clone().unwrap_or_default();
        if records.is_empty() || offset >= data.high_watermark {
            return batches;
        }
        while !records.is_empty() {
            let header = records.slice(..61.min(records.len()));
            let attributes = i16::from_be_bytes([header[21], header[22]]);
            let base = i64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
            let delta = i32::from_be_bytes(header[23..27].try_into().expect("4 bytes"));
            let base_timestamp = i64::from_be_bytes(header[27..35].try_into().expect("8 bytes"));
            let set = RecordBatchDecoder::decode(&mut records).expect("decode stored batch");
            let last_offset = base + i64::from(delta);
            batches.push(StoredBatch {
                last_offset,
                delete_horizon: (attributes & 0x40 != 0).then_some(base_timestamp),
                rows: set
                    .records
                    .into_iter()
                    .map(|r| (r.offset, text(r.key).unwrap_or_default(), text(r.value)))
                    .collect(),
            });
            offset = last_offset + 1;
        }
    }
}

fn rows_of(batches: &[StoredBatch]) -> Vec<Row> {
    batches
        .iter()
        .flat_map(|b| b.rows.iter().cloned())
        .collect()
}

/// A full read with librdkafka from the beginning to the high watermark. Compaction leaves
/// gaps, so it reads until the record just below the high watermark, which every test here keeps
/// (it is the latest value of its key).
fn read_with_librdkafka(bootstrap: &str, topic: &str) -> Vec<Row> {
    let (_, high) = watermarks(bootstrap, topic, 0);
    let consumer = consumer_at(bootstrap, topic, 0, Offset::Beginning, &[]);
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut rows: Vec<Row> = Vec::new();
    while rows.last().is_none_or(|r| r.0 < high - 1) {
        let now = Instant::now();
        assert!(
            now < deadline,
            "read {} records, then nothing: {rows:?}",
            rows.len()
        );
        match consumer.poll(deadline - now) {
            Some(Ok(m)) => rows.push((
                m.offset(),
                m.key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default(),
                m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
            )),
            Some(Err(e)) => panic!("consumer error after {} records: {e}", rows.len()),
            None => {}
        }
    }
    consumer.unassign().expect("unassign");
    rows
}

/// The value of an unlabelled counter or gauge in the `/metrics` text.
fn metric(broker: &Broker, name: &str) -> f64 {
    let (status, body) = broker.http_get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[test]
fn many_updates_to_few_keys_compact_to_the_latest_value_per_key_at_its_original_offset() {
    let broker = start_broker();
    let bootstrap = broker.bootstrap();
    let topic = "compacted-table";
    create_compacted(&bootstrap, topic, &[]);

    // Batched and lz4-compressed by librdkafka, so the cleaner drops records from inside
    // compressed batches and re-encodes the survivors.
    let producer = producer(
        &bootstrap,
        &[("compression.type", "lz4"), ("linger.ms", "5")],
    );
    let values: Vec<(String, String)> = (0..300)
        .map(|i| (format!("key-{}", i % 5), format!("value-{i:03}")))
        .collect();
    let deliveries: Vec<_> = values
        .iter()
        .map(|(k, v)| {
            let record = FutureRecord::to(topic)
                .key(k.as_str())
                .payload(v.as_str())
                .partition(0);
            match producer.send_result(record) {
                Ok(delivery) => delivery,
                Err((e, _)) => panic!("enqueue {k}: {e}"),
            }
        })
        .collect();
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for ((key, value), delivery) in values.iter().zip(deliveries) {
        let delivered = futures::executor::block_on(delivery)
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("delivery of {key}: {e}"));
        latest.insert(key.clone(), (delivered.offset, value.clone()));
    }
    let mut expected: Vec<Row> = latest
        .into_iter()
        .map(|(k, (o, v))| (o, k, Some(v)))
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 5);

    let mut raw = RawConn::connect(broker.kafka_addr());
    let mut seen = Vec::new();
    let compacted = wait_until(CLEAN_TIMEOUT, || {
        seen = rows_of(&stored_batches(&mut raw, topic));
        seen == expected
    });
    assert!(
        compacted,
        "not compacted to {expected:?} within {CLEAN_TIMEOUT:?}; last read {} records: {seen:?}",
        seen.len()
    );

    assert_eq!(read_with_librdkafka(&bootstrap, topic), expected);
    let (low, high) = watermarks(&bootstrap, topic, 0);
    assert_eq!((low, high), (0, 300), "compaction moves neither watermark");
    assert!(metric(&broker, "kafka_log_cleaner_cleanings_total") >= 1.0);
    assert!(
        metric(&broker, "kafka_log_cleaner_bytes_written_total")
            < metric(&broker, "kafka_log_cleaner_bytes_read_total")
    );
    assert!(metric(&broker, "kafka_log_cleaner_last_clean_timestamp_seconds") > 0.0);
}

#[test]
fn a_tombstone_survives_the_first_pass_and_disappears_after_delete_retention_ms() {
    let broker = start_broker();
    let bootstrap = broker.bootstrap();
    let topic = "compacted-deletes";
    let retention_ms = 3000;
    create_compacted(
        &bootstrap,
        topic,
        &[("delete.retention.ms", &retention_ms.to_string())],
    );
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    let deleted = send(&producer, topic, "deleted", Some("a"));
    let kept = send(&producer, topic, "kept", Some("b"));
    let tombstone = send(&producer, topic, "deleted", None);
    assert_eq!((deleted, kept, tombstone), (0, 1, 2));

    // First pass: the deleted key's value goes, its tombstone stays and gets a delete horizon.
    let mut raw = RawConn::connect(broker.kafka_addr());
    let mut horizon = None;
    let mut seen = Vec::new();
    let first_pass = wait_until(CLEAN_TIMEOUT, || {
        let batches = stored_batches(&mut raw, topic);
        seen = rows_of(&batches);
        horizon = batches
            .iter()
            .find(|b| b.last_offset == tombstone)
            .and_then(|b| b.delete_horizon);
        horizon.is_some()
    });
    assert!(
        first_pass,
        "no pass stamped a delete horizon; last read {seen:?}"
    );
    let horizon = horizon.expect("horizon");
    assert_eq!(
        seen,
        vec![
            (kept, "kept".to_string(), Some("b".to_string())),
            (tombstone, "deleted".to_string(), None),
        ]
    );
    assert!(horizon > now_ms() - 60_000 && horizon <= now_ms() + retention_ms);

    // A pass needs dirty data to run, as in Kafka: keep writing a filler record while watching
    // for the tombstone to go. It must still be there whenever the horizon has not passed.
    let mut fillers = 0;
    let mut last_filler = 0;
    let gone = wait_until(CLEAN_TIMEOUT, || {
        last_filler = send(&producer, topic, "filler", Some(&format!("f{fillers}")));
        fillers += 1;
        seen = rows_of(&stored_batches(&mut raw, topic));
        let present = seen.iter().any(|r| r.0 == tombstone);
        if !present {
            assert!(
                now_ms() >= horizon,
                "the tombstone was removed before its delete horizon"
            );
        }
        !present
    });
    assert!(gone, "tombstone still present; last read {seen:?}");

    // What a consumer reading from the start now sees: the kept key and the fillers' latest,
    // no trace of the deleted key.
    let rows = read_with_librdkafka(&bootstrap, topic);
    assert!(rows.iter().all(|r| r.1 != "deleted"), "{rows:?}");
    assert!(rows.contains(&(kept, "kept".to_string(), Some("b".to_string()))));
    assert_eq!(rows.last().map(|r| r.0), Some(last_filler));
}
