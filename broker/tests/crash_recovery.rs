//! Durability across process death, with real processes: the broker is SIGKILLed (no flush, no
//! checkpoint) or SIGTERMed while a librdkafka producer streams into it, restarted on the same data
//! directory, and the log is read back whole.
//!
//! What must hold after every restart:
//! - every message the producer saw acknowledged (acks=all) is readable at the offset it was
//!   acknowledged with;
//! - offsets are contiguous from the low watermark and strictly increasing, so no offset is used
//!   twice;
//! - no message appears twice (the producers here never resend on their own, or are idempotent);
//! - the log goes on at the right offset.

mod common;

use std::{
    collections::HashMap,
    fs::OpenOptions,
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use common::*;
use kafka_protocol::records::Compression;
use rdkafka::{
    client::ClientContext,
    config::FromClientConfigAndContext,
    error::{KafkaError, RDKafkaErrorCode},
    message::DeliveryResult,
    producer::{BaseRecord, FutureRecord, Producer, ProducerContext, ThreadedProducer},
    Message,
};

const TOPIC: &str = "stream";

/// Records every delivery report: the message index (the opaque) and its offset, or the failure.
#[derive(Debug, Default)]
struct Deliveries {
    acked: Mutex<Vec<(u64, i64)>>,
    failed: Mutex<Vec<(u64, String)>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<u64>) {
        match result {
            Ok(message) => self.acked.lock().unwrap().push((*index, message.offset())),
            Err((err, _)) => self.failed.lock().unwrap().push((*index, err.to_string())),
        }
    }
}

impl Deliveries {
    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// The value of message `index`: its index first (to parse back), padded to ~200 bytes.
fn value_of(index: u64) -> Vec<u8> {
    let mut value = format!("msg-{index:010}|").into_bytes();
    value.resize(200, b'a' + (index % 26) as u8);
    value
}

fn index_of(value: &[u8]) -> u64 {
    std::str::from_utf8(&value[4..14])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("not a stream value: {:?}", String::from_utf8_lossy(value)))
}

fn stream_producer(bootstrap: &str, extra: &[(&str, &str)]) -> ThreadedProducer<Deliveries> {
    let mut config = client_config(bootstrap);
    config
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "20000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    ThreadedProducer::from_config_and_context(&config, Deliveries::default())
        .expect("create producer")
}

/// Sends messages 0, 1, 2, … until `stop` is set (or `limit` is reached), backing off while
/// librdkafka's queue is full; returns how many were handed to librdkafka.
fn send_stream(
    producer: &ThreadedProducer<Deliveries>,
    stop: &AtomicBool,
    limit: u64,
    next: &AtomicU64,
) {
    while !stop.load(Ordering::Relaxed) {
        let index = next.load(Ordering::Relaxed);
        if index >= limit {
            return;
        }
        let value = value_of(index);
        let key = index.to_string();
        let record = BaseRecord::with_opaque_to(TOPIC, Box::new(index))
            .partition(0)
            .key(&key)
            .payload(&value);
        match producer.send(record) {
            Ok(()) => {
                next.fetch_add(1, Ordering::Relaxed);
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // The delivery thread drains the queue; try again shortly.
                std::thread::yield_now();
                producer.poll(Duration::from_millis(1));
            }
            Err((err, _)) => panic!("send {index}: {err}"),
        }
    }
}

/// Reads the whole partition after a restart and checks it against the delivery reports.
/// Returns the log as (offset, index) pairs.
fn verify_log(bootstrap: &str, acked: &[(u64, i64)]) -> Vec<(i64, u64)> {
    let (low, high) = watermarks(bootstrap, TOPIC, 0);
    assert_eq!(low, 0, "nothing was deleted, yet the log start moved");
    let messages = read_to_end(bootstrap, TOPIC, 0, 0);
    let log: Vec<(i64, u64)> = messages
        .iter()
        .map(|m| (m.offset(), index_of(m.payload().expect("value"))))
        .collect();
    assert_eq!(log.len() as i64, high, "records read vs high watermark");

    // Offsets: exactly 0..high, so strictly increasing and none used twice.
    for (position, (offset, _)) in log.iter().enumerate() {
        assert_eq!(
            *offset, position as i64,
            "offsets are not contiguous at position {position}"
        );
    }
    // Each message once, and byte-exact.
    let mut where_is: HashMap<u64, i64> = HashMap::new();
    for (m, (offset, index)) in messages.iter().zip(&log) {
        if let Some(first) = where_is.insert(*index, *offset) {
            panic!("message {index} stored twice, at offsets {first} and {offset}");
        }
        assert_eq!(
            m.payload(),
            Some(&value_of(*index)[..]),
            "value at offset {offset}"
        );
        assert_eq!(
            m.key(),
            Some(index.to_string().as_bytes()),
            "key at offset {offset}"
        );
    }
    // Every acknowledged message is there, at the offset it was acknowledged with, in send order.
    let mut acked = acked.to_vec();
    acked.sort_unstable();
    for (index, acked_offset) in &acked {
        assert_eq!(
            where_is.get(index),
            Some(acked_offset),
            "acknowledged message {index} (offset {acked_offset}) is not in the log where it was acknowledged"
        );
    }
    assert!(
        acked.windows(2).all(|w| w[0].1 < w[1].1),
        "acknowledged messages are out of send order"
    );
    log
}

/// Produces one more message after the restart; it must land at the old high watermark.
fn assert_log_continues(bootstrap: &str) {
    let (_, high) = watermarks(bootstrap, TOPIC, 0);
    let producer = producer(bootstrap, &[("acks", "all"), ("linger.ms", "0")]);
    let value = b"after restart";
    let delivery = futures::executor::block_on(
        producer
            .send_result(
                FutureRecord::<[u8], [u8]>::to(TOPIC)
                    .partition(0)
                    .payload(value),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue"),
    )
    .expect("delivery")
    .expect("produce after restart");
    assert_eq!(delivery.offset, high, "first offset after the restart");
    let tail = read_to_end(bootstrap, TOPIC, 0, high);
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].payload(), Some(&value[..]));
}

/// Streams into the broker until at least `acked_before_stop` messages are acknowledged, then
/// calls `stop` on the broker while the producer is still sending. Returns the deliveries once
/// every sent message has a report.
fn stream_then(
    broker: &mut Broker,
    acked_before_stop: usize,
    stop_broker: impl FnOnce(&mut Broker),
) -> Deliveries {
    let bootstrap = broker.bootstrap();
    // No retries: a message is either acknowledged or reported failed, never sent twice, so any
    // duplicate in the log is the broker's doing.
    let producer = stream_producer(
        &bootstrap,
        &[("retries", "0"), ("message.timeout.ms", "5000")],
    );
    let stop = AtomicBool::new(false);
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| send_stream(&producer, &stop, u64::MAX, &next));
        let enough = wait_until(Duration::from_secs(120), || {
            producer.context().acked_count() >= acked_before_stop
        });
        if !enough {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "only {} messages acknowledged in 120 s (failures: {:?})",
                producer.context().acked_count(),
                producer.context().failed.lock().unwrap().first()
            );
        }
        stop_broker(broker);
        stop.store(true, Ordering::Relaxed);
    });
    // Every message handed over gets its report: acknowledged earlier, or failed now that the
    // broker is gone (message.timeout.ms bounds this).
    producer
        .flush(Duration::from_secs(60))
        .expect("flush after the broker stopped");
    assert_eq!(producer.in_flight_count(), 0);
    let sent = next.load(Ordering::Relaxed) as usize;
    let deliveries = std::mem::take(&mut *producer.context().acked.lock().unwrap());
    let failed = std::mem::take(&mut *producer.context().failed.lock().unwrap());
    assert_eq!(
        deliveries.len() + failed.len(),
        sent,
        "a sent message got no delivery report"
    );
    Deliveries {
        acked: Mutex::new(deliveries),
        failed: Mutex::new(failed),
    }
}

#[test]
fn acknowledged_messages_survive_sigkill_mid_stream() {
    let mut broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]);

    let deliveries = stream_then(&mut broker, 20_000, |broker| {
        let status = broker.kill9();
        assert!(!status.success(), "SIGKILL exit status {status}");
    });
    let acked = deliveries.acked.into_inner().unwrap();
    let failed = deliveries.failed.into_inner().unwrap();
    assert!(acked.len() >= 20_000);
    // Evidence that the kill landed mid-stream: messages were still on their way.
    assert!(
        !failed.is_empty(),
        "no message was in flight when the broker was killed"
    );

    broker.restart();
    let log = verify_log(&bootstrap, &acked);
    eprintln!(
        "sigkill: {} acknowledged, {} failed, {} in the log after recovery",
        acked.len(),
        failed.len(),
        log.len()
    );
    assert_log_continues(&bootstrap);
}

#[test]
fn sigterm_mid_stream_exits_zero_and_keeps_every_acknowledged_message() {
    let mut broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]);
    // A second topic with its own configs and partitions, to show metadata survives too.
    create_topic(
        &bootstrap,
        "configured",
        3,
        &[("retention.ms", "7654321"), ("max.message.bytes", "123456")],
    );

    let mut exit = None;
    let deliveries = stream_then(&mut broker, 5_000, |broker| exit = Some(broker.terminate()));
    let exit = exit.expect("terminated");
    assert_eq!(
        exit.code(),
        Some(0),
        "SIGTERM must be a clean shutdown with exit code 0, got {exit}"
    );
    let acked = deliveries.acked.into_inner().unwrap();

    broker.restart();
    verify_log(&bootstrap, &acked);

    let consumer: rdkafka::consumer::BaseConsumer = client_config(&bootstrap)
        .set("group.id", "millrace-tests-never-committed")
        .create()
        .expect("consumer");
    let metadata =
        rdkafka::consumer::Consumer::fetch_metadata(&consumer, Some("configured"), CLIENT_TIMEOUT)
            .expect("metadata");
    assert_eq!(
        metadata.topics()[0].partitions().len(),
        3,
        "partition count after restart"
    );
    let described = futures::executor::block_on(admin(&bootstrap).describe_configs(
        [&rdkafka::admin::ResourceSpecifier::Topic("configured")],
        &admin_opts(),
    ))
    .expect("DescribeConfigs");
    let config = described.into_iter().next().unwrap().expect("config");
    assert_eq!(
        config
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("7654321")
    );
    assert_eq!(
        config
            .get("max.message.bytes")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("123456")
    );
    assert_log_continues(&bootstrap);
}

#[test]
fn idempotent_producer_rides_through_a_sigkill_without_duplicates_or_loss() {
    let mut broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]);
    const TOTAL: u64 = 40_000;
    // The producer lives through the crash: it retries what was in flight, with the same
    // producer id and sequence numbers, once the broker is back. The broker must recognise
    // batches it had already written (producer state recovered from the log) and not append them
    // twice.
    let producer = stream_producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "180000"),
        ],
    );
    let stop = AtomicBool::new(false);
    let next = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| send_stream(&producer, &stop, TOTAL, &next));
        let enough = wait_until(Duration::from_secs(120), || {
            producer.context().acked_count() >= 10_000
        });
        if !enough {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "only {} messages acknowledged in 120 s",
                producer.context().acked_count()
            );
        }
        broker.kill9();
        broker.restart();
    });
    producer.flush(Duration::from_secs(180)).expect("flush");
    let acked = producer.context().acked.lock().unwrap().clone();
    let failed = producer.context().failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} messages failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(acked.len() as u64, TOTAL);

    let log = verify_log(&bootstrap, &acked);
    let indexes: Vec<u64> = log.iter().map(|(_, index)| *index).collect();
    assert_eq!(
        indexes,
        (0..TOTAL).collect::<Vec<_>>(),
        "the log is not exactly messages 0..{TOTAL} in order"
    );
    assert_log_continues(&bootstrap);
}

/// The active (highest base offset) segment file of partition 0.
fn active_segment(broker: &Broker) -> PathBuf {
    let dir = broker.data_dir().join(format!("{TOPIC}-0"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs.pop()
        .unwrap_or_else(|| panic!("no .log segment in {}", dir.display()))
}

fn append_to(path: &PathBuf, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open segment");
    file.write_all(bytes).expect("append to segment");
}

#[test]
fn a_torn_or_corrupt_tail_is_truncated_on_restart_after_sigkill() {
    let mut broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]);
    let producer = stream_producer(&bootstrap, &[]);
    let stop = AtomicBool::new(false);
    let next = AtomicU64::new(0);
    send_stream(&producer, &stop, 1_000, &next);
    producer.flush(Duration::from_secs(60)).expect("flush");
    let acked = producer.context().acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        1_000,
        "failures: {:?}",
        producer.context().failed.lock().unwrap().first()
    );
    drop(producer);

    // 1. A torn write: the first 30 bytes of a batch whose header claims far more.
    broker.kill9();
    let mut torn = Vec::new();
    torn.extend_from_slice(&1_000i64.to_be_bytes()); // base offset
    torn.extend_from_slice(&5_000i32.to_be_bytes()); // batch length, never written
    torn.extend_from_slice(&[0, 0, 0, 0, 2]); // partition leader epoch, magic 2
    torn.extend_from_slice(&[0xAB; 13]);
    append_to(&active_segment(&broker), &torn);
    broker.restart();
    verify_log(&bootstrap, &acked);
    assert_eq!(
        watermarks(&bootstrap, TOPIC, 0),
        (0, 1_000),
        "after a torn tail"
    );

    // 2. A whole batch whose CRC does not match its contents (bit rot in the last write).
    broker.kill9();
    let batch = record_batch(&[&value_of(1_000)], now_ms(), Compression::None, None);
    let mut corrupt = batch.to_vec();
    corrupt[..8].copy_from_slice(&1_000i64.to_be_bytes());
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    append_to(&active_segment(&broker), &corrupt);
    broker.restart();
    verify_log(&bootstrap, &acked);
    assert_eq!(
        watermarks(&bootstrap, TOPIC, 0),
        (0, 1_000),
        "after a corrupt tail batch"
    );

    assert_log_continues(&bootstrap);
}
