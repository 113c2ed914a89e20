//! `millrace perf produce` / `perf consume`: throughput and latency, like
//! `kafka-producer-perf-test.sh` and `kafka-consumer-perf-test.sh`.
//!
//! - produce: sends `--num-records` records of `--record-size` bytes (the same random
//!   uppercase payload each time, as Kafka's tool does), at most `--throughput` records/s
//!   (-1: as fast as possible). Latency is from `send` to acknowledgement, per record.
//! - consume: reads `--messages` records from the start of every partition. Latency is per
//!   poll that returned records: how long the application waited for data.
//!
//! Both print interim lines every `--reporting-interval` ms on stderr and a final summary on
//! stdout (or one JSON document with `--output json`).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::{Args, Subcommand};
use millrace_client::{
    Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord, SeekTo,
};
use serde_json::json;

use super::{connect_with, parse_key_values, report_item, ClusterArgs, OutputArgs, Reported};

/// `millrace perf`.
#[derive(Debug, Args)]
pub struct PerfArgs {
    #[command(subcommand)]
    command: PerfCommand,
}

#[derive(Debug, Subcommand)]
enum PerfCommand {
    /// Produce records as fast as allowed and report throughput and latency.
    Produce(ProduceArgs),
    /// Consume records from the start of a topic and report throughput and latency.
    Consume(ConsumeArgs),
}

#[derive(Debug, Args)]
struct ProduceArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic to write to.
    #[arg(long)]
    topic: String,
    /// How many records to send.
    #[arg(long)]
    num_records: u64,
    /// Bytes per record value.
    #[arg(long)]
    record_size: usize,
    /// Records per second at most; -1 for no limit.
    #[arg(long, allow_hyphen_values = true)]
    throughput: f64,
    /// Producer settings by Kafka name, e.g. `acks=all linger.ms=5 compression.type=lz4`.
    #[arg(long = "producer-props", value_name = "KEY=VALUE", num_args = 1..)]
    producer_props: Vec<String>,
    /// Milliseconds between interim reports on stderr (0: none).
    #[arg(long, default_value_t = 5000)]
    reporting_interval: u64,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct ConsumeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// How many records to read.
    #[arg(long, alias = "num-records")]
    messages: u64,
    /// Give up when no record has arrived for this long.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout: u64,
    /// `max.partition.fetch.bytes`.
    #[arg(long)]
    fetch_size: Option<i32>,
    /// Consumer settings by Kafka name (repeatable).
    #[arg(long = "consumer-props", value_name = "KEY=VALUE", num_args = 1..)]
    consumer_props: Vec<String>,
    /// Milliseconds between interim reports on stderr (0: none).
    #[arg(long, default_value_t = 5000)]
    reporting_interval: u64,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `millrace perf`.
pub async fn run(args: PerfArgs) -> anyhow::Result<()> {
    match args.command {
        PerfCommand::Produce(a) => produce(a).await,
        PerfCommand::Consume(a) => consume(a).await,
    }
}

const MB: f64 = 1024.0 * 1024.0;

/// Latency samples (microseconds) and their summary.
#[derive(Debug, Default)]
struct Latencies {
    micros: Vec<u64>,
}

impl Latencies {
    fn add(&mut self, d: Duration) {
        self.micros
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// (avg, p50, p95, p99, p99.9, max) in milliseconds.
    fn summary(&self) -> [f64; 6] {
        if self.micros.is_empty() {
            return [0.0; 6];
        }
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |q: f64| {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            ms(sorted[rank - 1])
        };
        let avg = sorted.iter().map(|&u| u as f64).sum::<f64>() / sorted.len() as f64 / 1000.0;
        [
            avg,
            at(0.50),
            at(0.95),
            at(0.99),
            at(0.999),
            ms(sorted[sorted.len() - 1]),
        ]
    }
}

/// The final report, in Kafka's words.
fn summary_line(verb: &str, records: u64, bytes: u64, elapsed: Duration, l: [f64; 6]) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "{records} records {verb}, {:.1} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, \
         {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms 99.9th.",
        records as f64 / secs,
        bytes as f64 / MB / secs,
        l[0],
        l[5],
        l[1],
        l[2],
        l[3],
        l[4]
    )
}

fn summary_json(
    verb: &str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    l: [f64; 6],
    errors: u64,
) -> serde_json::Value {
    let secs = elapsed.as_secs_f64().max(1e-9);
    json!({
        verb: records,
        "errors": errors,
        "bytes": bytes,
        "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
        "records_per_sec": records as f64 / secs,
        "mb_per_sec": bytes as f64 / MB / secs,
        "latency_ms": {
            "avg": l[0], "p50": l[1], "p95": l[2], "p99": l[3], "p99_9": l[4], "max": l[5],
        },
    })
}

/// What the produce callbacks record.
#[derive(Debug, Default)]
struct ProduceStats {
    latencies: Latencies,
    acked: u64,
    errors: u64,
    first_error: Option<millrace_client::Error>,
    /// Where the current reporting window started: (index into latencies, time).
    window: Option<(usize, Instant)>,
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    // As with Kafka's producer, a missing topic is created if the broker allows it.
    let mut settings = vec![("allow.auto.create.topics".to_string(), "true".to_string())];
    settings.extend(parse_key_values(&args.producer_props)?);
    let mut config = ProducerConfig::default();
    let client = connect_with(&args.cluster, &settings, |k, v| config.set(k, v)).await?;
    let producer = Producer::new(client, config).await?;
    let payload = Bytes::from(random_payload(args.record_size));
    let stats = Arc::new(Mutex::new(ProduceStats::default()));
    let reporter = spawn_produce_reporter(&stats, args.reporting_interval, args.record_size);

    let start = Instant::now();
    let per_record =
        (args.throughput > 0.0).then(|| Duration::from_secs_f64(1.0 / args.throughput));
    for i in 0..args.num_records {
        if let Some(gap) = per_record {
            // Kafka's throttle: stay on the schedule, without drifting behind it.
            let due = start + gap.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let sent = Instant::now();
        let stats = Arc::clone(&stats);
        producer
            .send_with_callback(
                ProducerRecord::new(args.topic.clone(), payload.clone()),
                move |result| {
                    let mut s = stats
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match result {
                        Ok(_) => {
                            s.latencies.add(sent.elapsed());
                            s.acked += 1;
                        }
                        Err(e) => {
                            s.errors += 1;
                            s.first_error.get_or_insert(e);
                        }
                    }
                },
            )
            .await?;
    }
    producer.flush().await;
    let elapsed = start.elapsed();
    if let Some(r) = reporter {
        r.abort();
    }
    producer.close().await;

    let s = stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bytes = s.acked * args.record_size as u64;
    let l = s.latencies.summary();
    if args.output.json() {
        super::print_json(&summary_json(
            "records_sent",
            s.acked,
            bytes,
            elapsed,
            l,
            s.errors,
        ))?;
    } else {
        outln!("{}", summary_line("sent", s.acked, bytes, elapsed, l));
    }
    if let Some(e) = &s.first_error {
        report_item(e);
        return Err(Reported(format!(
            "{} of {} records failed",
            s.errors, args.num_records
        ))
        .into());
    }
    Ok(())
}

fn spawn_produce_reporter(
    stats: &Arc<Mutex<ProduceStats>>,
    every_ms: u64,
    record_size: usize,
) -> Option<tokio::task::JoinHandle<()>> {
    if every_ms == 0 {
        return None;
    }
    let stats = Arc::clone(stats);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(every_ms));
        tick.tick().await;
        stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .window = Some((0, Instant::now()));
        loop {
            tick.tick().await;
            let mut s = stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (from, since) = s.window.unwrap_or((0, Instant::now()));
            let window = Latencies {
                micros: s.latencies.micros[from..].to_vec(),
            };
            let count = window.micros.len() as u64;
            s.window = Some((s.latencies.micros.len(), Instant::now()));
            drop(s);
            if count == 0 {
                continue;
            }
            let l = window.summary();
            let secs = since.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "{count} records sent, {:.1} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency.",
                count as f64 / secs,
                (count * record_size as u64) as f64 / MB / secs,
                l[0],
                l[5]
            );
        }
    }))
}

/// `len` random uppercase letters (what Kafka's perf tool sends when given no payload file).
fn random_payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let settings: Vec<(String, String)> = parse_key_values(&args.consumer_props)?;
    let mut config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    if let Some(size) = args.fetch_size {
        config.max_partition_fetch_bytes = size;
    }
    let client = connect_with(&args.cluster, &settings, |k, v| config.set(k, v)).await?;
    let mut consumer = Consumer::new(client, config);
    for tp in consumer.assign_topic(&args.topic).await? {
        consumer.seek(tp, SeekTo::Beginning);
    }
    let idle_limit = Duration::from_millis(args.timeout);
    let mut latencies = Latencies::default();
    let (mut records, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    let mut last_data = Instant::now();
    let mut last_report = (Instant::now(), 0u64, 0u64);
    while records < args.messages {
        let polled = Instant::now();
        let batch = consumer.poll(Duration::from_millis(500)).await?;
        if batch.is_empty() {
            if last_data.elapsed() >= idle_limit {
                eprintln!(
                    "No records for {} ms; stopping after {records} records.",
                    args.timeout
                );
                break;
            }
            continue;
        }
        latencies.add(polled.elapsed());
        last_data = Instant::now();
        for r in &batch {
            if records >= args.messages {
                break;
            }
            records += 1;
            bytes += (r.value.as_ref().map_or(0, Bytes::len) + r.key.as_ref().map_or(0, Bytes::len))
                as u64;
        }
        if args.reporting_interval > 0
            && last_report.0.elapsed() >= Duration::from_millis(args.reporting_interval)
        {
            let secs = last_report.0.elapsed().as_secs_f64();
            let (n, b) = (records - last_report.1, bytes - last_report.2);
            eprintln!(
                "{n} records consumed, {:.1} records/sec ({:.2} MB/sec).",
                n as f64 / secs,
                b as f64 / MB / secs
            );
            last_report = (Instant::now(), records, bytes);
        }
    }
    let elapsed = start.elapsed();
    let l = latencies.summary();
    if args.output.json() {
        super::print_json(&summary_json(
            "records_consumed",
            records,
            bytes,
            elapsed,
            l,
            0,
        ))?;
    } else {
        outln!(
            "{}",
            summary_line("consumed", records, bytes, elapsed, l)
                .replace("avg latency", "avg poll latency")
        );
    }
    if records < args.messages {
        return Err(Reported(format!(
            "only {records} of {} records arrived",
            args.messages
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=1000u64 {
            l.add(Duration::from_millis(ms));
        }
        let [avg, p50, p95, p99, p999, max] = l.summary();
        assert_eq!(
            (p50, p95, p99, p999, max),
            (500.0, 950.0, 990.0, 999.0, 1000.0)
        );
        assert!((avg - 500.5).abs() < 1e-9);
        assert_eq!(Latencies::default().summary(), [0.0; 6]);
    }

    #[test]
    fn payload_is_uppercase_letters_of_the_asked_size() {
        let p = random_payload(1024);
        assert_eq!(p.len(), 1024);
        assert!(p.iter().all(u8::is_ascii_uppercase));
    }
}
