//! Test harness shared by the integration tests (and the throughput benchmark).
//!
//! Every test runs a real `millrace` process: [`Broker::start`] gives it a fresh temporary data
//! directory and free loopback ports, and returns once `/readyz` answers 200. The broker's stdout
//! and stderr go to `broker.log` in that directory; when a test panics, [`Broker`]'s `Drop` prints
//! the log so the failure can be read next to the assertion that caught it.
//!
//! The other helpers talk to the broker the ways a user would: rdkafka clients
//! ([`producer`], [`consumer_at`], [`admin`]) and, for what no client exposes (raw error codes,
//! malformed frames), a blocking Kafka-protocol connection ([`RawConn`]) built on the
//! `kafka-protocol` crate.
//!
//! Nothing here sleeps to wait for a state: [`wait_until`] polls a condition against a deadline.

// Each test binary compiles this module separately and uses a different subset of it.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        fetch_response::PartitionData,
        produce_request::{PartitionProduceData, TopicProduceData},
        produce_response::PartitionProduceResponse,
        ApiKey, ApiVersionsRequest, FetchRequest, ProduceRequest, RequestHeader, ResponseHeader,
        TopicName,
    },
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes},
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    },
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer},
    message::OwnedMessage,
    producer::FutureProducer,
    Message, Offset, TopicPartitionList,
};

/// How long a broker gets to become ready. Generous: tests run in parallel on two cores with a
/// debug build, and a restart may have to recover a log.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Default deadline for client round trips in tests.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `cond` until it returns true or `timeout` passes; returns whether it became true.
///
/// The pause between polls backs off from 5 ms to 100 ms: it paces the polling, it is never the
/// thing the test waits on.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A loopback port that was free a moment ago: bind port 0, read the port, release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A `millrace serve` process owned by one test.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    // Held for its Drop: the directory (data and log) is removed when the broker goes away.
    dir: tempfile::TempDir,
    /// The loopback address every listener of this broker binds (`127.0.0.1` unless a
    /// cluster test gives each broker its own 127.0.0.x host).
    host: String,
    kafka_port: u16,
    admin_port: u16,
    overrides: Vec<(String, String)>,
    /// Extra command-line arguments after `serve` (e.g. `--config FILE`).
    args: Vec<String>,
    /// Environment variables for the broker (e.g. `MILLRACE_*` settings).
    env: Vec<(String, String)>,
    /// Whether the harness passes its own `listeners`, `admin.listener` and `log.dirs`
    /// (false: the test's configuration file gives them; see [`Broker::bare`]).
    own_settings: bool,
    /// Where the admin server is when it is not on `host:admin_port` (see [`Broker::set_admin_addr`]).
    admin_override: Option<SocketAddr>,
    /// A command the binary runs under (e.g. `ip netns exec NS`), which must exec it, so the
    /// PID the harness signals is the broker's.
    wrapper: Vec<String>,
    binary: PathBuf,
}

impl Broker {
    /// Starts the broker built for this test run with `overrides` (Kafka property names) on top of
    /// the harness's own settings (listener ports and `log.dirs`), and waits until it is ready.
    pub fn start(overrides: &[(&str, &str)]) -> Broker {
        Broker::start_binary(env!("CARGO_BIN_EXE_millrace").into(), None, overrides)
    }

    /// Like [`Broker::start`], with extra arguments after `serve` and extra environment variables.
    pub fn start_with(overrides: &[(&str, &str)], args: &[&str], env: &[(&str, &str)]) -> Broker {
        let mut broker = Broker::new(env!("CARGO_BIN_EXE_millrace").into(), None, overrides);
        broker.args = args.iter().map(|a| a.to_string()).collect();
        broker.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        broker.spawn();
        broker.wait_ready();
        broker
    }

    /// Like [`Broker::start`], with an explicit binary and an optional parent for the temporary
    /// directory (the benchmark uses a release build and may want a particular disk).
    pub fn start_binary(
        binary: PathBuf,
        parent_dir: Option<&Path>,
        overrides: &[(&str, &str)],
    ) -> Broker {
        let mut broker = Broker::new(binary, parent_dir, overrides);
        broker.spawn();
        broker.wait_ready();
        broker
    }

    fn new(binary: PathBuf, parent_dir: Option<&Path>, overrides: &[(&str, &str)]) -> Broker {
        let dir = match parent_dir {
            Some(parent) => tempfile::Builder::new()
                .prefix("millrace-")
                .tempdir_in(parent),
            None => tempfile::Builder::new().prefix("millrace-").tempdir(),
        }
        .expect("create temp dir");
        // Two calls can hand back the same just-released port: make sure they differ.
        let kafka_port = free_port();
        let admin_port = std::iter::repeat_with(free_port)
            .find(|p| *p != kafka_port)
            .expect("a second free port");
        Broker {
            child: None,
            dir,
            host: "127.0.0.1".into(),
            kafka_port,
            admin_port,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: Vec::new(),
            env: Vec::new(),
            own_settings: true,
            admin_override: None,
            wrapper: Vec::new(),
            binary,
        }
    }

    /// A broker on its own loopback `host` with fixed ports, not started yet: a cluster
    /// member ([`Broker::launch`] starts it without waiting, [`Broker::wait_ready`] waits).
    pub fn at(host: &str, kafka_port: u16, admin_port: u16, overrides: &[(&str, &str)]) -> Broker {
        let mut broker = Broker::new(env!("CARGO_BIN_EXE_millrace").into(), None, overrides);
        broker.host = host.to_string();
        broker.kafka_port = kafka_port;
        broker.admin_port = admin_port;
        broker
    }

    /// Leaves out the harness's own settings (`listeners`, `admin.listener`, `log.dirs`): the
    /// broker runs from exactly what the test gives it (a `--config` file in [`Broker::dir`],
    /// its own overrides). `host`, the Kafka port and the admin port must still say where the
    /// broker can be reached.
    pub fn bare(mut self) -> Broker {
        self.own_settings = false;
        self
    }

    /// Sets the command-line arguments after `serve` (e.g. `--config FILE`), for the next start.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Says where the admin server listens, when the test's configuration moves it off
    /// `host:admin_port` (from the next [`Broker::wait_ready`] on).
    pub fn set_admin_addr(&mut self, addr: SocketAddr) {
        self.admin_override = Some(addr);
    }

    /// The broker's temporary directory (it holds `data/` and `broker.log`; a test may put its
    /// configuration file there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the broker inside network namespace `ns` (`ip netns exec`), for network faults.
    pub fn in_netns(mut self, ns: &str) -> Broker {
        self.wrapper = ["ip", "netns", "exec", ns].map(String::from).to_vec();
        self
    }

    /// Starts the process without waiting for it to be ready.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.spawn();
    }

    /// `host:port` of the Kafka listener, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.host, self.kafka_port)
    }

    /// The Kafka listener's socket address, for raw connections.
    pub fn kafka_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host.parse().expect("IP host"), self.kafka_port)
    }

    fn admin_addr(&self) -> SocketAddr {
        self.admin_override.unwrap_or_else(|| {
            SocketAddr::new(self.host.parse().expect("IP host"), self.admin_port)
        })
    }

    /// Base URL of the HTTP admin listener (`/livez`, `/readyz`, `/metrics`).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr())
    }

    /// The directory passed as `log.dirs`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file that collects the broker's stdout and stderr, over every (re)start.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// Everything the broker has written to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// PID of the running process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is not running").id()
    }

    /// `GET path` on the admin listener: (status code, body).
    pub fn http_get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(self.admin_addr(), path)
    }

    /// Whether this node reports itself the active controller (the metadata quorum's Raft
    /// leader) in `/metrics`.
    pub fn is_active_controller(&self) -> bool {
        self.http_get("/metrics").is_ok_and(|(code, body)| {
            code == 200
                && body.contains("\nkafka_controller_kafkacontroller_active_controller_count 1\n")
        })
    }

    /// Sends SIGKILL (no chance to flush or checkpoint) and reaps the process.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is not running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("send SIGKILL");
        child.wait().expect("wait for killed broker")
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    ///
    /// Panics (after killing it) if the broker has not exited within [`READY_TIMEOUT`].
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is not running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
        let mut status = None;
        let exited = wait_until(READY_TIMEOUT, || {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("broker did not exit within {READY_TIMEOUT:?} of SIGTERM");
        }
        status.expect("exit status")
    }

    /// Starts the broker again on the same data directory and ports; waits until ready.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart() needs the broker stopped first"
        );
        self.spawn();
        self.wait_ready();
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open broker log");
        writeln!(&log, "---- harness: starting {}", self.binary.display()).expect("write log");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.arg("serve").args(&self.args);
        let own = self.own_settings.then(|| {
            [
                (
                    "listeners".to_string(),
                    format!("PLAINTEXT://{}:{}", self.host, self.kafka_port),
                ),
                ("admin.listener".to_string(), self.admin_addr().to_string()),
                (
                    "log.dirs".to_string(),
                    self.data_dir().to_str().expect("utf-8 path").to_string(),
                ),
            ]
        });
        // The test's overrides come last so that a test can replace the harness's settings.
        for (key, value) in own.iter().flatten().chain(self.overrides.iter()) {
            cmd.arg("--override").arg(format!("{key}={value}"));
        }
        // The broker also reads MILLRACE_* variables: keep the developer's environment out of it.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MILLRACE_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log));
        self.child = Some(cmd.spawn().expect("spawn millrace"));
    }

    /// Waits until `/readyz` answers 200; panics if the process exits or the deadline passes.
    pub fn wait_ready(&mut self) {
        let mut exited = None;
        let ready = wait_until(READY_TIMEOUT, || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                exited = Some(status);
                return true;
            }
            matches!(self.http_get("/readyz"), Ok((200, _)))
        });
        if let Some(status) = exited {
            self.child = None;
            panic!("broker exited during start-up with {status}");
        }
        assert!(
            ready,
            "broker not ready (/readyz != 200) within {READY_TIMEOUT:?}"
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "==== broker log ({}) ====\n{}\n==== end of broker log ====",
                self.log_path().display(),
                tail(&self.log(), 200)
            );
        }
    }
}

/// Runs `millrace` with `args` in `dir` and expects it to exit by itself (a refused
/// configuration, a tool); returns its output. Panics, after killing it, if it is still running
/// after [`READY_TIMEOUT`]. `MILLRACE_*` variables of the developer's environment are left out;
/// `env` is added.
pub fn run_to_exit(args: &[String], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_millrace"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MILLRACE_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .envs(env.iter().copied())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn millrace");
    let exited = wait_until(READY_TIMEOUT, || {
        child.try_wait().expect("try_wait").is_some()
    });
    if !exited {
        let _ = child.kill();
        let output = child.wait_with_output().expect("output");
        panic!(
            "millrace {args:?} kept running; it should have exited by itself.\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    child.wait_with_output().expect("output")
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A minimal HTTP/1.1 GET: (status code, body). Enough for the admin endpoints.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

// ---------------------------------------------------------------------------------------------
// rdkafka clients

/// Client settings every test client shares.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("client.id", "millrace-tests");
    config
}

/// A FutureProducer with `extra` settings applied over [`client_config`].
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = client_config(bootstrap);
    config.set("message.timeout.ms", "30000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("create producer")
}

/// A consumer assigned to `topic`/`partition` at `offset`. There are no consumer groups yet:
/// rdkafka wants a `group.id`, but nothing subscribes or commits.
pub fn consumer_at(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: Offset,
    extra: &[(&str, &str)],
) -> BaseConsumer {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", "millrace-tests-never-committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("create consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, offset)
        .expect("add partition");
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// Polls `consumer` until it has returned `count` messages; panics on a consumer error or when
/// `timeout` passes first (reporting how many arrived).
pub fn consume(consumer: &BaseConsumer, count: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let mut messages = Vec::with_capacity(count);
    let deadline = Instant::now() + timeout;
    while messages.len() < count {
        let now = Instant::now();
        assert!(
            now < deadline,
            "consumed {} of {count} messages within {timeout:?}",
            messages.len()
        );
        match consumer.poll(deadline - now) {
            Some(Ok(message)) => messages.push(message.detach()),
            Some(Err(err)) => panic!("consumer error after {} messages: {err}", messages.len()),
            None => {}
        }
    }
    messages
}

/// Reads `topic`/`partition` from `from` up to (not including) the high watermark.
pub fn read_to_end(bootstrap: &str, topic: &str, partition: i32, from: i64) -> Vec<OwnedMessage> {
    let (_, high) = watermarks(bootstrap, topic, partition);
    if high <= from {
        return Vec::new();
    }
    let consumer = consumer_at(bootstrap, topic, partition, Offset::Offset(from), &[]);
    let mut messages = consume(&consumer, (high - from) as usize, CLIENT_TIMEOUT * 4);
    messages.retain(|m| m.offset() < high);
    messages
}

/// (low, high) watermarks, i.e. ListOffsets earliest and latest.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "millrace-tests-never-committed")
        .create()
        .expect("create consumer");
    consumer
        .fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
        .expect("fetch_watermarks")
}

/// An AdminClient for `bootstrap`.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap)
        .create()
        .expect("create admin client")
}

/// AdminOptions with a request timeout, so a broker that never answers fails the test.
pub fn admin_opts() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(CLIENT_TIMEOUT))
}

/// Creates `topic` with `partitions` partitions and topic `configs`; panics on any error.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results =
        futures::executor::block_on(admin(bootstrap).create_topics([&new_topic], &admin_opts()))
            .expect("CreateTopics request");
    assert_eq!(results.len(), 1);
    if let Err((name, code)) = &results[0] {
        panic!("creating topic {name} failed: {code:?}");
    }
}

/// Payload bytes that do not compress (xorshift), so sizes stay what the test asks for.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// Raw Kafka protocol

/// A blocking Kafka-protocol connection for what no client library exposes: exact error codes,
/// malformed frames, unsupported versions.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    next_correlation_id: i32,
    /// The broker's ApiVersions answer (api key -> (min, max)), fetched on first use.
    versions: Option<HashMap<i16, (i16, i16)>>,
}

impl RawConn {
    /// Connects with a read timeout of [`CLIENT_TIMEOUT`].
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("set_read_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        RawConn {
            stream,
            next_correlation_id: 1,
            versions: None,
        }
    }

    /// The version to speak for `api`: `preferred`, or the broker's maximum if that is lower.
    /// Panics if the broker does not support a version up to `preferred` at all.
    pub fn version_for(&mut self, api: ApiKey, preferred: i16) -> i16 {
        if self.versions.is_none() {
            let response = self.call(
                3,
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("millrace-tests"))
                    .with_client_software_version(StrBytes::from_static_str("0")),
            );
            assert_eq!(response.error_code, 0, "ApiVersions v3 error");
            self.versions = Some(
                response
                    .api_keys
                    .iter()
                    .map(|k| (k.api_key, (k.min_version, k.max_version)))
                    .collect(),
            );
        }
        let versions = self.versions.as_ref().expect("versions");
        let (min, max) = *versions
            .get(&(api as i16))
            .unwrap_or_else(|| panic!("broker does not advertise {api:?}"));
        let version = preferred.min(max);
        assert!(
            version >= min,
            "{api:?}: broker supports v{min}..v{max}, test needs <= v{preferred}"
        );
        version
    }

    /// Produces one record batch to `topic`/`partition` with `acks` (Produce v3..v12, by topic
    /// name) and returns the partition's response.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        batch: Bytes,
    ) -> PartitionProduceResponse {
        let version = self.version_for(ApiKey::Produce, 12);
        let request = produce_request(topic, partition, acks, batch);
        let response = self.call(version, &request);
        assert_eq!(
            response.responses.len(),
            1,
            "one topic in the Produce response"
        );
        let topic_response = response.responses.into_iter().next().expect("topic");
        assert_eq!(topic_response.name.0.as_str(), topic);
        assert_eq!(
            topic_response.partition_responses.len(),
            1,
            "one partition in the Produce response"
        );
        topic_response
            .partition_responses
            .into_iter()
            .next()
            .expect("partition")
    }

    /// Sends a Fetch (v4..v12, by topic name) for one partition without waiting for the answer;
    /// returns (version, correlation id) for [`RawConn::receive_fetch`].
    pub fn send_fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
    ) -> (i16, i32) {
        let version = self.version_for(ApiKey::Fetch, 12);
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(64 << 20)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(offset)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(64 << 20)])]);
        (version, self.send(version, &request))
    }

    /// Reads the answer to [`RawConn::send_fetch`]: the one partition's data.
    pub fn receive_fetch(&mut self, (version, correlation_id): (i16, i32)) -> PartitionData {
        let response = self.receive::<FetchRequest>(version, correlation_id);
        assert_eq!(response.error_code, 0, "Fetch top-level error");
        assert_eq!(
            response.responses.len(),
            1,
            "one topic in the Fetch response"
        );
        let topic = response.responses.into_iter().next().expect("topic");
        assert_eq!(
            topic.partitions.len(),
            1,
            "one partition in the Fetch response"
        );
        topic.partitions.into_iter().next().expect("partition")
    }

    /// Fetch without waiting (max_wait 0, min_bytes 0).
    pub fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> PartitionData {
        let sent = self.send_fetch(topic, partition, offset, 0, 0);
        self.receive_fetch(sent)
    }

    /// Changes how long reads wait before failing.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
    }

    /// Writes `bytes` as they are (no framing).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Half-closes the connection: the broker reads end-of-stream.
    pub fn shutdown_write(&mut self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }

    /// Encodes a request header (api key, version, correlation id, client id) at
    /// `header_version` without the crate's API-key check, so unknown keys and versions can be sent.
    pub fn header_bytes(
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
        header_version: i16,
    ) -> BytesMut {
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(api_version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("millrace-raw-test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, header_version)
            .expect("encode header");
        buf
    }

    /// Sends one frame (4-byte length + `body`).
    pub fn send_frame(&mut self, body: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)
    }

    /// Reads one response frame's body.
    pub fn read_frame(&mut self) -> io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if len < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("negative frame length {len}"),
            ));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Encodes `request` at `version` with the right header version; returns its correlation id.
    pub fn send<R: Request>(&mut self, version: i16, request: &R) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let mut body =
            Self::header_bytes(R::KEY, version, correlation_id, R::header_version(version));
        request.encode(&mut body, version).expect("encode request");
        self.send_frame(&body).expect("send request");
        correlation_id
    }

    /// Sends `request` and decodes its response; checks the correlation id.
    pub fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let correlation_id = self.send(version, request);
        self.receive::<R>(version, correlation_id)
    }

    /// Reads and decodes the response to a request sent with [`RawConn::send`].
    pub fn receive<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let mut body = self.read_frame().expect("read response frame");
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .expect("decode response header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "response correlation id"
        );
        let response = R::Response::decode(&mut body, version).expect("decode response body");
        assert!(
            !body.has_remaining(),
            "{} bytes left over after decoding {:?} v{version}",
            body.remaining(),
            ApiKey::try_from(R::KEY)
        );
        response
    }

    /// Whether the broker closes the connection (end-of-stream or reset) within `timeout`.
    /// Any bytes that arrive first are discarded.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .expect("set_read_timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true, // reset by the peer
            }
        }
    }
}

/// Reads a file whole, for on-disk checks.
pub fn read_file(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes
}

/// A ProduceRequest carrying one batch for one partition.
pub fn produce_request(topic: &str, partition: i32, acks: i16, batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])])
}

/// Producer identity of an idempotent batch: (producer id, epoch, base sequence).
pub type ProducerIdentity = (i64, i16, i32);

/// One magic-v2 record batch holding `values` (no keys), timestamps `timestamp`, optionally
/// idempotent, encoded by the kafka-protocol crate.
pub fn record_batch(
    values: &[&[u8]],
    timestamp: i64,
    compression: Compression,
    producer: Option<ProducerIdentity>,
) -> Bytes {
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if base_sequence < 0 {
                -1
            } else {
                base_sequence + i as i32
            },
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// Byte range of the CRC-32C field in a magic-v2 batch header: base offset (8), batch length (4),
/// partition leader epoch (4), magic (1), then the CRC (4).
pub const BATCH_CRC_RANGE: std::ops::Range<usize> = 17..21;

/// Decodes (and decompresses) the record batches of a fetched partition:
/// (offset, value) per record, in log order.
pub fn fetched_values(data: &PartitionData) -> Vec<(i64, Option<Bytes>)> {
    let mut records = data.records.clone().unwrap_or_default();
    if records.is_empty() {
        return Vec::new();
    }
    RecordBatchDecoder::decode_all(&mut records)
        .expect("decode fetched record batches")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|record| (record.offset, record.value))
        .collect()
}
