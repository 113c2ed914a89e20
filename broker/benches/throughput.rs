//! Throughput, latency and memory of a `millrace` broker, measured with a real librdkafka client.
//!
//! ```text
//! cargo bench -p millrace --bench throughput                      # full run (release broker)
//! MILLRACE_BENCH_JSON=out.json cargo bench -p millrace --bench throughput
//! ```
//!
//! What it measures, all on one partition of a single-node broker, client and broker sharing the
//! machine (as in the issue's reference figures):
//! 1. produce records/s and MB/s (10^6 bytes of record values) with 1 KiB and with 100-byte
//!    records, acks=1 and acks=all, each into its own fresh topic;
//! 2. consume MB/s of the 1 KiB acks=1 topic from offset 0 (the data was just written, so it is
//!    in the page cache);
//! 3. produce latency percentiles (send call to delivery report) at half the rate measured in 1,
//!    for 1 KiB records, acks=1 and acks=all;
//! 4. the broker's resident memory (VmRSS, and the peak VmHWM) after the 1 KiB runs;
//! 5. before all that, what writing the page cache costs the machine at that moment (see
//!    [`page_cache_write_cost`]): every produced byte is such a write, and on a VM that gives
//!    free memory back to its host this cost varied tenfold from one run to the next.
//!
//! The producer is configured as a throughput-minded user would configure librdkafka (see
//! [`producer_config`]); nothing is compressed, and values are incompressible.
//!
//! Knobs (environment variables):
//! - `MILLRACE_BENCH_RECORDS_1K` (default 2,000,000) and `MILLRACE_BENCH_RECORDS_100B`
//!   (default 10,000,000): records per produce run;
//! - `MILLRACE_BENCH_LATENCY_SECS` (default 5): length of each latency run;
//! - `MILLRACE_BENCH_LINGER_MS` (default 5);
//! - `MILLRACE_BENCH_BROKER`: the broker binary (default: the one cargo built for this bench,
//!   `target/release/millrace` under `cargo bench`);
//! - `MILLRACE_BENCH_DIR`: where the broker's temporary data directory goes (default: `$TMPDIR`);
//! - `MILLRACE_BENCH_JSON`: also write the results as JSON to this file.
//!
//! Run by `cargo test --all-targets` (no `--bench` argument), it does a smoke run with a few
//! thousand records against the debug broker instead, and checks that every count adds up.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use common::{create_topic, incompressible, Broker};
use rdkafka::{
    client::ClientContext,
    config::{ClientConfig, FromClientConfigAndContext},
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::DeliveryResult,
    producer::{BaseProducer, BaseRecord, Producer, ProducerContext},
    Message, Offset, TopicPartitionList,
};
use serde_json::json;

/// Settings of one benchmark run.
#[derive(Debug, Clone)]
struct Settings {
    records_1k: u64,
    records_100b: u64,
    latency: Duration,
    linger_ms: u64,
}

impl Settings {
    fn from_env(smoke: bool) -> Settings {
        let var = |name: &str, default: u64| -> u64 {
            match std::env::var(name) {
                Ok(v) => v
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
                Err(_) => default,
            }
        };
        if smoke {
            return Settings {
                records_1k: 5_000,
                records_100b: 10_000,
                latency: Duration::from_millis(500),
                linger_ms: var("MILLRACE_BENCH_LINGER_MS", 5),
            };
        }
        Settings {
            records_1k: var("MILLRACE_BENCH_RECORDS_1K", 2_000_000),
            records_100b: var("MILLRACE_BENCH_RECORDS_100B", 10_000_000),
            latency: Duration::from_secs(var("MILLRACE_BENCH_LATENCY_SECS", 5)),
            linger_ms: var("MILLRACE_BENCH_LINGER_MS", 5),
        }
    }
}

/// The librdkafka producer settings, as a user after throughput would set them.
fn producer_config(bootstrap: &str, acks: &str, linger_ms: u64) -> ClientConfig {
    let mut config = common::client_config(bootstrap);
    config
        .set("acks", acks)
        // Wait up to this long for a batch to fill (the issue's reference figure used 5 ms).
        .set("linger.ms", linger_ms.to_string())
        // Up to 1 MiB per partition batch (librdkafka's default is 1,000,000 bytes) ...
        .set("batch.size", "1048576")
        // ... and let the byte limit, not the default 10,000-message cap, end a batch of small
        // records.
        .set("batch.num.messages", "1000000")
        // Room for a million queued messages (default 100,000), so the sending loop rarely
        // meets QueueFull.
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.type", "none")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "120000");
    config
}

/// Counts delivery reports; with `latencies`, records send-to-report time per message.
#[derive(Debug, Default)]
struct Reports {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Microseconds from send to delivery report, per message (latency runs only).
    latencies: Mutex<Vec<u32>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    /// For latency runs, the send time as nanoseconds since [`epoch`] plus one; 0 for throughput
    /// runs (an integer opaque: no allocation per message).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: usize) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if sent_at != 0 {
                    let nanos = epoch().elapsed().as_nanos() as u64 - (sent_at as u64 - 1);
                    let micros = (nanos / 1000).min(u32::MAX as u64) as u32;
                    self.latencies.lock().unwrap().push(micros);
                }
            }
            Err((err, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| err.to_string());
            }
        }
    }
}

/// The reference point for send timestamps.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The opaque for a message sent now, in a latency run.
fn now_opaque() -> usize {
    epoch().elapsed().as_nanos() as usize + 1
}

/// Values to cycle through: distinct, incompressible.
fn payloads(size: usize) -> Vec<Vec<u8>> {
    (0..64).map(|seed| incompressible(size, seed)).collect()
}

/// Sends one record, serving delivery reports while librdkafka's queue is full.
fn send(producer: &BaseProducer<Reports>, topic: &str, value: &[u8], sent_at: usize) {
    let mut record = BaseRecord::<(), [u8], _>::with_opaque_to(topic, sent_at)
        .partition(0)
        .payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                producer.poll(Duration::from_millis(1));
            }
            Err((err, _)) => panic!("produce: {err}"),
        }
    }
}

fn check_reports(reports: &Reports, expected: u64, what: &str) {
    let failed = reports.failed.load(Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "{what}: {failed} deliveries failed, first: {:?}",
        reports.first_error.lock().unwrap()
    );
    assert_eq!(
        reports.delivered.load(Ordering::Relaxed),
        expected,
        "{what}: delivered"
    );
}

/// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. The kernel
/// reports them in USER_HZ ticks, which is 100 on every Linux architecture we run on.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which may contain spaces) start at index 2 (state).
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("stat tick count");
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds the whole machine has spent busy (all but idle and iowait), from /proc/stat.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .expect("cpu line")
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().expect("/proc/stat tick count"))
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy is everything but idle and iowait.
    let total: f64 = fields.iter().take(8).sum();
    (total - fields[3] - fields[4]) / 100.0
}

/// Wall time plus the CPU the broker and this client used over it, to show which side is the
/// bottleneck when both share two cores.
#[derive(Debug)]
struct Clock {
    broker_pid: String,
    start: Instant,
    broker_cpu: f64,
    client_cpu: f64,
    machine_busy: f64,
}

/// Measurements of one timed interval.
#[derive(Debug, Clone, Copy)]
struct Elapsed {
    seconds: f64,
    /// Percent of one core.
    broker_cpu: f64,
    client_cpu: f64,
    /// CPU used by every other process on the machine (a concurrent build, say), which the
    /// figures of this interval paid for.
    other_cpu: f64,
}

impl Clock {
    fn start(broker: &Broker) -> Clock {
        let broker_pid = broker.pid().to_string();
        Clock {
            broker_cpu: cpu_seconds(&broker_pid),
            client_cpu: cpu_seconds("self"),
            machine_busy: machine_busy_seconds(),
            broker_pid,
            start: Instant::now(),
        }
    }

    fn stop(&self) -> Elapsed {
        let seconds = self.start.elapsed().as_secs_f64();
        let broker = cpu_seconds(&self.broker_pid) - self.broker_cpu;
        let client = cpu_seconds("self") - self.client_cpu;
        let machine = machine_busy_seconds() - self.machine_busy;
        Elapsed {
            seconds,
            broker_cpu: 100.0 * broker / seconds,
            client_cpu: 100.0 * client / seconds,
            other_cpu: (100.0 * (machine - broker - client) / seconds).max(0.0),
        }
    }
}

/// Dirty plus Writeback page-cache memory in MiB, from /proc/meminfo: written data the kernel
/// has not yet put on disk. Once it passes vm.dirty_ratio the kernel throttles writers to disk
/// speed, which a long produce run can reach.
fn unwritten_mib() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    ["Dirty:", "Writeback:"]
        .iter()
        .filter_map(|name| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .sum::<f64>()
        / 1024.0
}

#[derive(Debug, Clone)]
struct Throughput {
    name: String,
    records: u64,
    bytes: u64,
    seconds: f64,
    broker_cpu: f64,
    client_cpu: f64,
    other_cpu: f64,
    /// [`unwritten_mib`] at the end of the run.
    unwritten_mib: f64,
}

impl Throughput {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
}

/// Produces `records` values of `size` bytes as fast as librdkafka takes them; the clock runs
/// from the first send to the last delivery report.
fn produce_run(
    broker: &Broker,
    settings: &Settings,
    topic: &str,
    size: usize,
    records: u64,
    acks: &str,
) -> Throughput {
    create_topic(&broker.bootstrap(), topic, 1, &[]);
    let producer: BaseProducer<Reports> = BaseProducer::from_config_and_context(
        &producer_config(&broker.bootstrap(), acks, settings.linger_ms),
        Reports::default(),
    )
    .expect("producer");
    let values = payloads(size);
    // Connect and fetch metadata before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let clock = Clock::start(broker);
    for i in 0..records {
        send(&producer, topic, &values[i as usize % values.len()], 0);
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    let elapsed = clock.stop();
    check_reports(producer.context(), records, topic);
    Throughput {
        name: format!("produce {} acks={acks}", size_name(size)),
        records,
        bytes: records * size as u64,
        seconds: elapsed.seconds,
        broker_cpu: elapsed.broker_cpu,
        client_cpu: elapsed.client_cpu,
        other_cpu: elapsed.other_cpu,
        unwritten_mib: unwritten_mib(),
    }
}

fn size_name(size: usize) -> String {
    if size == 1024 {
        "1 KiB".into()
    } else {
        format!("{size} B")
    }
}

/// Reads `records` records of `topic` from offset 0; the clock runs from assign to the last one.
fn consume_run(broker: &Broker, topic: &str, records: u64) -> Throughput {
    let consumer: BaseConsumer = common::client_config(&broker.bootstrap())
        .set("group.id", "millrace-bench-never-committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // Large fetches and a deep prefetch queue: a throughput-minded consumer's settings.
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "16777216")
        .set("queued.max.messages.kbytes", "262144")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(0))
        .expect("tpl");
    let clock = Clock::start(broker);
    consumer.assign(&assignment).expect("assign");
    let (mut count, mut bytes, mut next_offset) = (0u64, 0u64, 0i64);
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < records {
        assert!(
            Instant::now() < deadline,
            "consume: {count} of {records} records in 600 s"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                assert_eq!(
                    message.offset(),
                    next_offset,
                    "consume: offsets out of order"
                );
                next_offset += 1;
                count += 1;
                bytes += message.payload_len() as u64;
            }
            Some(Err(err)) => panic!("consume: {err}"),
            None => {}
        }
    }
    let elapsed = clock.stop();
    Throughput {
        name: "consume 1 KiB (page cache)".into(),
        records,
        bytes,
        seconds: elapsed.seconds,
        broker_cpu: elapsed.broker_cpu,
        client_cpu: elapsed.client_cpu,
        other_cpu: elapsed.other_cpu,
        unwritten_mib: unwritten_mib(),
    }
}

#[derive(Debug, Clone)]
struct Latency {
    name: String,
    target_rate: f64,
    achieved_rate: f64,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// The broker's own p99 time per Produce request over the measured part, as the upper
    /// bound of its histogram bucket (see [`ProduceTimes`]).
    broker_p99_ms: f64,
    broker_cpu: f64,
    client_cpu: f64,
    other_cpu: f64,
}

/// The broker's cumulative Produce request-time histogram
/// (`kafka_network_request_total_time_seconds`, arrival to response ready), read from
/// `/metrics`: `(upper bound in seconds, requests at or under it)`, ascending.
#[derive(Debug, Clone, Default)]
struct ProduceTimes(Vec<(f64, u64)>);

impl ProduceTimes {
    fn scrape(broker: &Broker) -> ProduceTimes {
        let (status, body) = broker.http_get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        let prefix = "kafka_network_request_total_time_seconds_bucket{";
        let mut buckets: Vec<(f64, u64)> = body
            .lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .filter(|rest| rest.contains("request=\"Produce\""))
            .filter_map(|rest| {
                let le = rest.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let count = rest.rsplit(' ').next()?.parse().ok()?;
                Some((le, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        ProduceTimes(buckets)
    }

    /// Upper bound, in ms, of the bucket holding the 99th percentile of the requests counted
    /// since `earlier`; NaN if there were none.
    fn p99_ms_since(&self, earlier: &ProduceTimes) -> f64 {
        let before = |le: f64| {
            earlier
                .0
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0, |(_, c)| *c)
        };
        let deltas: Vec<(f64, u64)> = self.0.iter().map(|&(le, c)| (le, c - before(le))).collect();
        let Some(&(_, total)) = deltas.last() else {
            return f64::NAN;
        };
        if total == 0 {
            return f64::NAN;
        }
        deltas
            .iter()
            .find(|(_, c)| *c as f64 >= 0.99 * total as f64)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    }
}

/// Produces 1 KiB records at `rate` per second for `settings.latency` and reports send-to-ack
/// latency percentiles. The first second (or tenth of a short run) is warm-up and not counted.
fn latency_run(
    broker: &Broker,
    settings: &Settings,
    topic: &str,
    acks: &str,
    linger_ms: u64,
    rate: f64,
) -> Latency {
    create_topic(&broker.bootstrap(), topic, 1, &[]);
    let producer: BaseProducer<Reports> = BaseProducer::from_config_and_context(
        &producer_config(&broker.bootstrap(), acks, linger_ms),
        Reports::default(),
    )
    .expect("producer");
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let values = payloads(1024);
    let duration = settings.latency;
    let warmup = (duration / 10).min(Duration::from_secs(1));
    let clock = Clock::start(broker);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut warmup_sent = None;
    let mut broker_times_at_warmup = ProduceTimes::default();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        if warmup_sent.is_none() && elapsed >= warmup {
            warmup_sent = Some(sent);
            broker_times_at_warmup = ProduceTimes::scrape(broker);
        }
        // Pace in 1 ms ticks: at each tick send what the schedule says is due, then serve
        // delivery reports until the next tick. Sending a few records per loop instead made
        // the client spend a whole core polling, which on two cores it takes from the broker.
        let due = (rate * elapsed.as_millis() as f64 / 1000.0) as u64;
        while sent < due {
            send(
                &producer,
                topic,
                &values[sent as usize % values.len()],
                now_opaque(),
            );
            sent += 1;
        }
        let to_next_tick =
            Duration::from_micros(1_000 - u64::from(elapsed.subsec_micros() % 1_000));
        producer.poll(to_next_tick);
    }
    let elapsed = start.elapsed();
    producer.flush(Duration::from_secs(120)).expect("flush");
    let cpu = clock.stop();
    let broker_p99_ms = ProduceTimes::scrape(broker).p99_ms_since(&broker_times_at_warmup);
    check_reports(producer.context(), sent, topic);
    let mut latencies = std::mem::take(&mut *producer.context().latencies.lock().unwrap());
    // Reports arrive in send order on one partition, so the first `warmup_sent` are the warm-up.
    let skip = warmup_sent.unwrap_or(0) as usize;
    let mut measured = latencies.split_off(skip.min(latencies.len()));
    assert!(
        !measured.is_empty(),
        "latency run sent nothing after warm-up"
    );
    measured.sort_unstable();
    let pick = |q: f64| {
        measured[((measured.len() as f64 * q) as usize).min(measured.len() - 1)] as f64 / 1000.0
    };
    Latency {
        name: format!("latency 1 KiB acks={acks} linger={linger_ms}"),
        target_rate: rate,
        achieved_rate: sent as f64 / elapsed.as_secs_f64(),
        samples: measured.len(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        p999_ms: pick(0.999),
        max_ms: *measured.last().unwrap() as f64 / 1000.0,
        broker_p99_ms,
        broker_cpu: cpu.broker_cpu,
        client_cpu: cpu.client_cpu,
        other_cpu: cpu.other_cpu,
    }
}

/// What writing into the page cache costs this machine, in ms per GiB: `(fresh, recycled)`.
/// `fresh` writes `len` bytes (512 MiB in a full run) into a new file in `dir`; the file is then
/// deleted, which frees its pages, and `recycled` writes as much again at once, into the pages
/// just freed.
///
/// Every byte the broker appends is such a write. While the memory is the guest's own, both
/// figures are a copy plus the kernel's page bookkeeping: about 200 ms per GiB each on the
/// project's machines. They are Firecracker VMs with virtio free page reporting, which hands free
/// memory back to the host; the first touch of a page the host took back is also a fault in the
/// host, and `fresh` has read up to 2,479 ms per GiB. The broker pays that for every new byte
/// of log.
fn page_cache_write_cost(dir: &std::path::Path, len: usize) -> (f64, f64) {
    use std::io::Write;
    let chunk = vec![0x5a_u8; 1 << 20];
    let write = |name: &str| {
        let path = dir.join(name);
        let mut file = std::fs::File::create(&path).expect("create the page-cost probe file");
        let start = Instant::now();
        for _ in 0..len / chunk.len() {
            file.write_all(&chunk)
                .expect("write the page-cost probe file");
        }
        let elapsed = start.elapsed();
        drop(file);
        // Deleted before writeback gets to most of it.
        std::fs::remove_file(&path).expect("remove the page-cost probe file");
        elapsed.as_secs_f64() * 1000.0 * ((1u64 << 30) as f64 / len as f64)
    };
    let fresh = write("page-cost-fresh");
    let recycled = write("page-cost-recycled");
    (fresh, recycled)
}

/// (VmRSS, VmHWM) of `pid` in MiB, from /proc.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"))
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let settings = Settings::from_env(smoke);
    let binary: PathBuf = std::env::var_os("MILLRACE_BENCH_BROKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_millrace").into());
    let parent = std::env::var_os("MILLRACE_BENCH_DIR").map(PathBuf::from);
    let broker = Broker::start_binary(binary.clone(), parent.as_deref(), &[]);
    let (fresh_ms, recycled_ms) =
        page_cache_write_cost(&broker.data_dir(), if smoke { 16 << 20 } else { 512 << 20 });
    eprintln!(
        "page cost: writing the page cache takes {fresh_ms:.0} ms per GiB into fresh pages, \
         {recycled_ms:.0} ms per GiB into recycled ones"
    );
    let pid = broker.pid();
    let (rss_start, _) = memory_mib(pid);
    // Client and broker need the machine to themselves: say how busy it was at the start.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1: f64 = load
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    if load1 > 0.5 {
        eprintln!("warning: 1-minute load average is {load1} before the run: figures will be low");
    }
    eprintln!(
        "millrace bench{}: broker {} (pid {pid}), data in {}",
        if smoke { " (smoke run)" } else { "" },
        binary.display(),
        broker.data_dir().display()
    );

    // Warm-up, not reported: the first run otherwise pays for connection set-up, the first
    // segment files and the allocator growing, in both processes.
    let warmup_records = (settings.records_1k / 10).max(1_000);
    produce_run(&broker, &settings, "warmup", 1024, warmup_records, "1");

    let mut runs = Vec::new();
    let p1k_acks1 = produce_run(
        &broker,
        &settings,
        "p1k-acks1",
        1024,
        settings.records_1k,
        "1",
    );
    eprintln!(
        "  {:<28} {:>12.0} records/s",
        p1k_acks1.name,
        p1k_acks1.records_per_sec()
    );
    let (rss_after_1k, _) = memory_mib(pid);
    runs.push(p1k_acks1.clone());
    for (topic, size, records, acks) in [
        ("p1k-acksall", 1024, settings.records_1k, "all"),
        ("p100-acks1", 100, settings.records_100b, "1"),
        ("p100-acksall", 100, settings.records_100b, "all"),
    ] {
        let run = produce_run(&broker, &settings, topic, size, records, acks);
        eprintln!(
            "  {:<28} {:>12.0} records/s",
            run.name,
            run.records_per_sec()
        );
        runs.push(run);
    }
    let consume = consume_run(&broker, "p1k-acks1", settings.records_1k);
    eprintln!("  {:<28} {:>12.1} MB/s", consume.name, consume.mb_per_sec());
    runs.push(consume.clone());

    let mut latencies = Vec::new();
    // At half the rate measured above with the same producer; the last row drops linger to
    // show how much of the latency is the client waiting to fill batches.
    for (topic, acks, linger_ms, max) in [
        ("lat-acks1", "1", settings.linger_ms, &runs[0]),
        ("lat-acksall", "all", settings.linger_ms, &runs[1]),
        ("lat-acksall-nolinger", "all", 0, &runs[1]),
    ] {
        let rate = max.records_per_sec() / 2.0;
        let latency = latency_run(&broker, &settings, topic, acks, linger_ms, rate);
        eprintln!("  {:<28} p99 {:.2} ms", latency.name, latency.p99_ms);
        latencies.push(latency);
    }
    let (rss_end, hwm_end) = memory_mib(pid);

    // The table.
    println!();
    println!(
        "Millrace throughput: one partition, librdkafka {}, linger.ms={}, batch.size=1 MiB, no compression; \
         CPU in % of one core; load average before the run {load1}{}",
        rdkafka::util::get_rdkafka_version().1,
        settings.linger_ms,
        if smoke { "  [SMOKE RUN: tiny counts, debug broker; figures mean nothing]" } else { "" }
    );
    println!();
    println!(
        "{:<30} {:>11} {:>9} {:>13} {:>10} {:>8} {:>8} {:>8} {:>10}  issue target",
        "run", "records", "seconds", "records/s", "MB/s", "broker", "client", "others", "dirty MiB"
    );
    for run in &runs {
        let target = match run.name.as_str() {
            n if n.starts_with("produce 1 KiB") => ">= 1.1 M records/s",
            n if n.starts_with("produce 100 B") => ">= 4 M records/s",
            n if n.starts_with("consume") => ">= 1600 MB/s",
            _ => "",
        };
        println!(
            "{:<30} {:>11} {:>9.2} {:>13.0} {:>10.1} {:>7.0}% {:>7.0}% {:>7.0}% {:>10.0}  {target}",
            run.name,
            run.records,
            run.seconds,
            run.records_per_sec(),
            run.mb_per_sec(),
            run.broker_cpu,
            run.client_cpu,
            run.other_cpu,
            run.unwritten_mib
        );
    }
    println!();
    println!(
        "{:<36} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8}  issue target",
        "latency (send to ack)",
        "rate/s",
        "samples",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "broker p99",
        "broker",
        "client",
        "others"
    );
    for l in &latencies {
        println!(
            "{:<36} {:>9.0} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>7.0}% {:>7.0}% {:>7.0}%  p99 < 5 ms at half the max rate",
            l.name,
            l.achieved_rate,
            l.samples,
            l.p50_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            format!("<= {}", l.broker_p99_ms),
            l.broker_cpu,
            l.client_cpu,
            l.other_cpu
        );
    }
    println!(
        "  broker p99: the broker's own time per Produce request, arrival to response ready, \
         as the upper bound of its /metrics histogram bucket; the rest of the p99 is the \
         client's batching and the machine"
    );
    for l in latencies
        .iter()
        .filter(|l| l.achieved_rate < 0.95 * l.target_rate)
    {
        println!(
            "  note: {} sent {:.0}/s of the {:.0}/s asked: the client fell behind its schedule, so \
             its percentiles include the client's own queueing, not only the broker",
            l.name, l.achieved_rate, l.target_rate
        );
    }
    println!();
    println!(
        "page cost at the start: writing the page cache took {fresh_ms:.0} ms per GiB into fresh pages, \
         {recycled_ms:.0} ms per GiB into recycled ones (each byte produced is such a write: \
         at 1.1 GB/s into fresh pages, {:.0}% of a core)",
        fresh_ms * 1.1e9 / (1u64 << 30) as f64 / 10.0
    );
    println!(
        "broker RSS: {rss_start:.1} MiB at start, {rss_after_1k:.1} MiB after {} x 1 KiB records (target < 200 MB), \
         {rss_end:.1} MiB at the end (peak {hwm_end:.1} MiB)",
        warmup_records + settings.records_1k
    );

    if let Some(path) = std::env::var_os("MILLRACE_BENCH_JSON") {
        let report = json!({
            "smoke": smoke,
            "librdkafka": rdkafka::util::get_rdkafka_version().1,
            "linger_ms": settings.linger_ms,
            "load_average_before": load1,
            "throughput": runs.iter().map(|r| json!({
                "run": r.name, "records": r.records, "bytes": r.bytes, "seconds": r.seconds,
                "records_per_sec": r.records_per_sec(), "mb_per_sec": r.mb_per_sec(),
                "broker_cpu_percent": r.broker_cpu, "client_cpu_percent": r.client_cpu,
                "other_processes_cpu_percent": r.other_cpu,
                "unwritten_page_cache_mib": r.unwritten_mib,
            })).collect::<Vec<_>>(),
            "latency": latencies.iter().map(|l| json!({
                "run": l.name, "target_rate": l.target_rate, "achieved_rate": l.achieved_rate,
                "samples": l.samples, "p50_ms": l.p50_ms, "p99_ms": l.p99_ms,
                "p999_ms": l.p999_ms, "max_ms": l.max_ms, "broker_p99_ms_at_most": l.broker_p99_ms,
                "broker_cpu_percent": l.broker_cpu, "client_cpu_percent": l.client_cpu,
                "other_processes_cpu_percent": l.other_cpu,
            })).collect::<Vec<_>>(),
            "page_cache_write_ms_per_gib": { "fresh": fresh_ms, "recycled": recycled_ms },
            "rss_mib": {
                "start": rss_start, "after_1k_run": rss_after_1k,
                "records_before_after_1k_run": warmup_records + settings.records_1k,
                "end": rss_end, "peak": hwm_end,
            },
        });
        std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json"))
            .unwrap_or_else(|e| panic!("write {}: {e}", PathBuf::from(&path).display()));
        eprintln!("wrote {}", PathBuf::from(&path).display());
    }
}
