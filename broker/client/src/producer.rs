//! The producer: records are batched per partition and sent to each partition's leader.
//!
//! # Expected flow
//! 1. [`Producer::send`] picks the partition (the record's own; else Kafka's murmur2 of the
//!    key; else a "sticky" partition per topic that changes when a batch fills, as KIP-480),
//!    waits for room in `buffer.memory`, and appends the record to the partition's open batch.
//! 2. The sender task drains batches that are *ready* — full (`batch.size`), older than
//!    `linger.ms`, being flushed, or retries — whose leader is known, groups them by leader into
//!    Produce requests of at most `max.request.size`, and sends at most
//!    `max.in.flight.requests.per.connection` requests per broker at once. Requests are encoded
//!    (and compressed) in their own tasks, so compression uses every core.
//! 3. Each response completes its records: the offset is the batch's base offset plus the
//!    record's index. A retriable error (NOT_LEADER_OR_FOLLOWER, a lost connection, a timeout,
//!    ...) puts the batch back at the front of its partition's queue after a backoff and, when
//!    the error says so, refreshes metadata; other errors fail the batch's records.
//!
//! # Guarantees
//! - With idempotence (the default when acks=all, as in Kafka), the producer gets a producer id
//!   (InitProducerId) and numbers each partition's records; a retried batch keeps its numbers, so
//!   the broker writes it once even if the first attempt was written and only its answer lost,
//!   and batches are written in order even with 5 requests in flight.
//! - A batch that fails for good is not written; the partition pauses until its in-flight batches
//!   return, then later batches are renumbered to close the gap (Kafka's sequence adjustment).
//! - Every record's completion fires exactly once: with its offset, or with an error once
//!   `delivery.timeout.ms` has passed or the error is not retriable.
//!
//! # Limits
//! No transactions (transactional.id). Header names are unique within a record (the codec
//! keeps headers in a map), so a repeated name keeps its last value.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        produce_request::{PartitionProduceData, TopicProduceData},
        ApiKey, InitProducerIdRequest, ProduceRequest, ProducerId,
    },
    records::Compression,
    ResponseError,
};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::{
    admin::topic_name,
    client::{clone_error, lock, Client, Target},
    config::{boolean, millis, number},
    error::{Error, KafkaCode, Result},
    metadata::TopicPartition,
    records::{encode_batch, partition_for_key, Header, PendingRecord, ProducerIdentity},
};

/// How many replicas must have a record before the leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: no answer at all; offsets are unknown (-1).
    None,
    /// `acks=1`: the leader has it.
    Leader,
    /// `acks=all` (-1): every in-sync replica has it.
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings, under Kafka's names.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks`.
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// `batch.size`: bytes after which a batch is sent without waiting.
    pub batch_size: usize,
    /// `compression.type`.
    pub compression: Compression,
    /// `enable.idempotence`; `None` means on when acks=all and the broker supports it.
    pub idempotence: Option<bool>,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight: usize,
    /// `delivery.timeout.ms`: the time a record may take, retries included.
    pub delivery_timeout: Duration,
    /// `buffer.memory`: bytes of records waiting to be sent before `send` waits.
    pub buffer_memory: usize,
    /// `max.request.size`: the largest Produce request (and so the largest record).
    pub max_request_size: usize,
    /// `retries`: attempts after the first, within `delivery.timeout.ms`.
    pub retries: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16_384,
            compression: Compression::None,
            idempotence: None,
            max_in_flight: 5,
            delivery_timeout: Duration::from_secs(120),
            buffer_memory: 32 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            retries: u32::MAX,
        }
    }
}

impl ProducerConfig {
    /// Sets one setting by its Kafka name; `Ok(false)` if the name is not a producer setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "acks" => {
                self.acks = match value.trim() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    other => {
                        return Err(Error::Config {
                            key: key.into(),
                            reason: format!("`{other}` is not 0, 1, all or -1"),
                        })
                    }
                }
            }
            "linger.ms" => self.linger = millis(key, value)?,
            "batch.size" => self.batch_size = number(key, value)?,
            "compression.type" => self.compression = compression(value)?,
            "enable.idempotence" => self.idempotence = Some(boolean(key, value)?),
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight = number::<usize>(key, value)?.max(1)
            }
            "delivery.timeout.ms" => self.delivery_timeout = millis(key, value)?,
            "buffer.memory" => self.buffer_memory = number(key, value)?,
            "max.request.size" => self.max_request_size = number(key, value)?,
            "retries" => self.retries = number(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Parses a `compression.type` value.
pub fn compression(value: &str) -> Result<Compression> {
    Ok(match value.trim() {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => {
            return Err(Error::Config {
                key: "compression.type".into(),
                reason: format!("`{other}` is not none, gzip, snappy, lz4 or zstd"),
            })
        }
    })
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: String,
    /// Partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Timestamp in ms since the epoch; `None` for now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        self.headers.push((name.into(), Some(value.into())));
        self
    }
}

/// Where a sent record ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset (-1 with acks=0).
    pub offset: i64,
    /// The record's timestamp, or the broker's append time for LogAppendTime topics.
    pub timestamp: i64,
}

/// Resolves when the record is acknowledged or has failed for good.
#[derive(Debug)]
pub struct DeliveryFuture(oneshot::Receiver<Result<RecordMetadata>>);

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed("producer"))))
    }
}

/// A callback run (on the sender task) when a record completes.
pub type Callback = Box<dyn FnOnce(Result<RecordMetadata>) + Send>;

enum Completion {
    Future(oneshot::Sender<Result<RecordMetadata>>),
    Callback(Callback),
}

impl Completion {
    fn complete(self, result: Result<RecordMetadata>) {
        match self {
            Completion::Future(tx) => {
                let _ = tx.send(result);
            }
            Completion::Callback(f) => f(result),
        }
    }
}

struct Batch {
    tp: TopicPartition,
    records: Vec<PendingRecord>,
    completions: Vec<Completion>,
    size: usize,
    created: Instant,
    deadline: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
    /// Sequence of the first record once assigned (idempotence); -1 before.
    base_sequence: i32,
    /// Reserved `buffer.memory`, released when the batch completes.
    _memory: Vec<OwnedSemaphorePermit>,
}

impl Batch {
    fn count(&self) -> i32 {
        self.records.len() as i32
    }
}

#[derive(Default)]
struct PartitionQueue {
    /// Invariant: unsent batches in send order; retried batches are inserted by sequence.
    queue: VecDeque<Batch>,
    in_flight: usize,
    next_sequence: i32,
    /// Gaps left by batches that failed for good: (base sequence, count). While non-empty the
    /// partition sends nothing; once nothing is in flight, later batches are renumbered.
    gaps: Vec<(i32, i32)>,
}

#[derive(Default)]
struct State {
    partitions: HashMap<TopicPartition, PartitionQueue>,
    sticky: HashMap<String, i32>,
    node_in_flight: HashMap<i32, usize>,
    flushing: usize,
    closed: bool,
    /// Rotates where draining starts, so no partition is always served first.
    drain_start: usize,
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    /// (producer id, epoch) when idempotent.
    identity: Option<(i64, i16)>,
    state: Mutex<State>,
    wake: Notify,
    memory: Arc<Semaphore>,
    /// Records accepted and not yet completed.
    pending: AtomicUsize,
    idle: Notify,
    refreshing: AtomicBool,
    seed: AtomicU64,
}

/// A Kafka producer.
pub struct Producer {
    shared: Arc<Shared>,
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.shared.config)
            .field("identity", &self.shared.identity)
            .finish_non_exhaustive()
    }
}

/// One Produce request's batches and how each fared.
struct Outcome {
    leader: i32,
    results: Vec<(Batch, Result<Ack>)>,
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    base_offset: i64,
    log_append_time: i64,
}

impl Producer {
    /// Starts a producer on `client` (and gets a producer id if idempotent).
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Producer> {
        if config.idempotence == Some(true) && config.acks != Acks::All {
            return Err(Error::Config {
                key: "enable.idempotence".into(),
                reason: "idempotence needs acks=all".into(),
            });
        }
        let idempotent = match config.idempotence {
            Some(explicit) => explicit,
            None => {
                config.acks == Acks::All
                    && client
                        .node(Target::Any)
                        .await?
                        .versions()
                        .supports(ApiKey::InitProducerId)
            }
        };
        if idempotent && config.max_in_flight > 5 {
            return Err(Error::Config {
                key: "max.in.flight.requests.per.connection".into(),
                reason: "must be at most 5 with idempotence (the broker remembers 5 batches)"
                    .into(),
            });
        }
        let identity = if idempotent {
            Some(init_producer_id(&client).await?)
        } else {
            None
        };
        let memory = config.buffer_memory.clamp(1, Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            client,
            config,
            identity,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            memory: Arc::new(Semaphore::new(memory)),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            refreshing: AtomicBool::new(false),
            seed: AtomicU64::new(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1,
            ),
        });
        let sender = tokio::spawn(run(Arc::clone(&shared)));
        Ok(Producer {
            shared,
            sender: Mutex::new(Some(sender)),
        })
    }

    /// The producer id and epoch, when idempotent.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.shared.identity
    }

    /// Queues a record; the future resolves when it is acknowledged or fails. Waits while
    /// `buffer.memory` is full.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(record, Completion::Future(tx)).await?;
        Ok(DeliveryFuture(rx))
    }

    /// Queues a record; `callback` runs when it is acknowledged or fails.
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(Result<RecordMetadata>) + Send + 'static,
    ) -> Result<()> {
        self.enqueue(record, Completion::Callback(Box::new(callback)))
            .await
    }

    /// Sends everything queued now without waiting for `linger.ms`, and waits until every
    /// record accepted so far has completed.
    pub async fn flush(&self) {
        lock(&self.shared.state).flushing += 1;
        self.shared.wake.notify_one();
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        lock(&self.shared.state).flushing -= 1;
    }

    /// Flushes, then stops the sender task.
    pub async fn close(&self) {
        self.flush().await;
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
        let sender = lock(&self.sender).take();
        if let Some(handle) = sender {
            let _ = handle.await;
        }
    }

    async fn enqueue(&self, record: ProducerRecord, completion: Completion) -> Result<()> {
        let shared = &self.shared;
        if lock(&shared.state).closed {
            return Err(Error::Closed("producer"));
        }
        if record.topic.is_empty() {
            return Err(Error::Invalid("a record needs a topic".into()));
        }
        let partitions = self.partition_count(&record.topic).await?;
        let unkeyed = record.key.is_none();
        let pending = PendingRecord {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp.unwrap_or_else(now_ms),
        };
        let size = pending.estimated_size();
        if size + 200 > shared.config.max_request_size {
            return Err(Error::Kafka {
                code: KafkaCode::of(ResponseError::MessageTooLarge),
                context: format!("send a record of about {size} bytes to `{}`", record.topic),
                message: Some(format!(
                    "larger than max.request.size ({} bytes)",
                    shared.config.max_request_size
                )),
            });
        }
        let explicit = record.partition;
        if let Some(p) = explicit {
            if p < 0 || p >= partitions {
                return Err(Error::kafka(
                    ResponseError::UnknownTopicOrPartition,
                    format!(
                        "send to partition {p} of `{}`, which has {partitions} partitions",
                        record.topic
                    ),
                ));
            }
        }
        let permits =
            u32::try_from(size.min(shared.config.buffer_memory).max(1)).unwrap_or(u32::MAX);
        let memory = Arc::clone(&shared.memory)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| Error::Closed("producer"))?;
        shared.pending.fetch_add(1, Ordering::AcqRel);

        let wake = {
            let mut state = lock(&shared.state);
            let partition = match (explicit, &pending.key) {
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, partitions),
                (None, None) => match state.sticky.get(&record.topic) {
                    Some(&p) if p < partitions => p,
                    _ => {
                        let p = self.random_partition(partitions, None);
                        state.sticky.insert(record.topic.clone(), p);
                        p
                    }
                },
            };
            let tp = TopicPartition::new(record.topic.clone(), partition);
            let queue = state.partitions.entry(tp.clone()).or_default();
            let batch_size = shared.config.batch_size;
            let open = queue
                .queue
                .back_mut()
                .filter(|b| b.attempts == 0 && b.base_sequence < 0 && b.size + size <= batch_size);
            let (full, first) = match open {
                Some(batch) => {
                    batch.records.push(pending);
                    batch.completions.push(completion);
                    batch.size += size;
                    batch._memory.push(memory);
                    (batch.size >= batch_size, false)
                }
                None => {
                    let now = Instant::now();
                    queue.queue.push_back(Batch {
                        tp,
                        records: vec![pending],
                        completions: vec![completion],
                        size,
                        created: now,
                        deadline: now + shared.config.delivery_timeout,
                        attempts: 0,
                        retry_at: None,
                        base_sequence: -1,
                        _memory: vec![memory],
                    });
                    (size >= batch_size, true)
                }
            };
            if full && explicit.is_none() && unkeyed {
                // KIP-480: move unkeyed records on to another partition once a batch fills.
                let next = self.random_partition(partitions, Some(partition));
                state.sticky.insert(record.topic.clone(), next);
            }
            full || first
        };
        if wake {
            shared.wake.notify_one();
        }
        Ok(())
    }

    async fn partition_count(&self, topic: &str) -> Result<i32> {
        let cached = self
            .shared
            .client
            .metadata()
            .topics
            .get(topic)
            .filter(|t| t.error.is_none() && !t.partitions.is_empty())
            .map(|t| t.partitions.len());
        let count = match cached {
            Some(n) => n,
            None => {
                let client = &self.shared.client;
                client
                    .retrying("find the topic's partitions", || client.partitions(topic))
                    .await?
                    .len()
            }
        };
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    fn random_partition(&self, partitions: i32, avoid: Option<i32>) -> i32 {
        // xorshift64: good enough to spread sticky partitions, and no dependency.
        let mut x = self.shared.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.shared.seed.store(x, Ordering::Relaxed);
        let n = partitions.max(1) as u64;
        let p = (x % n) as i32;
        match avoid {
            Some(a) if a == p && partitions > 1 => (p + 1) % partitions,
            _ => p,
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender finishes what was queued, then exits.
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
    }
}

async fn init_producer_id(client: &Client) -> Result<(i64, i16)> {
    let response = client
        .retrying("get a producer id", || async {
            let node = client.node(Target::Any).await?;
            let response = client
                .send(&node, |_| {
                    InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_transaction_timeout_ms(i32::MAX)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                })
                .await?;
            Error::check(response.error_code, || {
                "get a producer id (InitProducerId)".into()
            })?;
            Ok(response)
        })
        .await?;
    Ok((response.producer_id.0, response.producer_epoch))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Batches taken from the queues for sending, and what else a drain pass found.
#[derive(Default)]
struct Drained {
    requests: Vec<(i32, Vec<Batch>)>,
    expired: Vec<Batch>,
    next_wake: Option<Instant>,
    need_metadata: bool,
    finished: bool,
}

impl Shared {
    fn backoff(&self, attempts: u32) -> Duration {
        let base = self.client.config().retry_backoff;
        let max = self.client.config().retry_backoff_max;
        base.saturating_mul(1 << attempts.saturating_sub(1).min(10))
            .min(max)
    }

    /// One pass over the queues: expire, renumber after gaps, and take what is ready.
    fn drain(&self, now: Instant) -> Drained {
        let config = &self.config;
        let metadata = self.client.metadata();
        let mut out = Drained::default();
        let mut state = lock(&self.state);
        let state = &mut *state;
        let urgent = state.flushing > 0 || state.closed;
        let mut keys: Vec<TopicPartition> = state.partitions.keys().cloned().collect();
        keys.sort();
        if !keys.is_empty() {
            state.drain_start = (state.drain_start + 1) % keys.len();
            keys.rotate_left(state.drain_start);
        }
        // Per leader: the requests being built (batches, bytes).
        let mut building: BTreeMap<i32, Vec<(Vec<Batch>, usize)>> = BTreeMap::new();
        let wake_at = |out: &mut Drained, at: Instant| {
            out.next_wake = Some(out.next_wake.map_or(at, |w| w.min(at)));
        };
        for tp in keys {
            let Some(part) = state.partitions.get_mut(&tp) else {
                continue;
            };
            // Records past delivery.timeout.ms fail; batches in flight are judged on return.
            let mut kept = VecDeque::with_capacity(part.queue.len());
            for batch in part.queue.drain(..) {
                if now >= batch.deadline {
                    if batch.base_sequence >= 0 {
                        part.gaps.push((batch.base_sequence, batch.count()));
                    }
                    out.expired.push(batch);
                } else {
                    kept.push_back(batch);
                }
            }
            part.queue = kept;
            if !part.gaps.is_empty() {
                if part.in_flight > 0 {
                    continue;
                }
                renumber(part);
            }
            loop {
                let queued = part.queue.len();
                let Some(front) = part.queue.front_mut() else {
                    break;
                };
                if let Some(at) = front.retry_at.filter(|&at| at > now) {
                    wake_at(&mut out, at);
                    break;
                }
                let linger_end = front.created + config.linger;
                let ready = urgent
                    || front.attempts > 0
                    || front.size >= config.batch_size
                    || now >= linger_end
                    || queued > 1;
                if !ready {
                    wake_at(&mut out, linger_end);
                    break;
                }
                let Some(leader) = metadata.partition(&tp).and_then(|p| p.leader) else {
                    out.need_metadata = true;
                    let at = now + self.client.config().retry_backoff;
                    front.retry_at = Some(at);
                    wake_at(&mut out, at);
                    break;
                };
                if self.identity.is_some() && part.in_flight >= config.max_in_flight {
                    break;
                }
                let in_flight = state.node_in_flight.get(&leader).copied().unwrap_or(0);
                let requests = building.entry(leader).or_default();
                let size = front.size;
                // One batch per partition per request (brokers refuse more from an idempotent
                // producer, and answer per partition); a partition's next batch goes in the
                // next request, which is sent after this one on the same connection.
                let slot = requests.iter().position(|(batches, bytes)| {
                    bytes + size <= config.max_request_size && !batches.iter().any(|b| b.tp == tp)
                });
                let slot = match slot {
                    Some(i) => i,
                    None if in_flight + requests.len() < config.max_in_flight => {
                        requests.push((Vec::new(), 0));
                        requests.len() - 1
                    }
                    None => break,
                };
                let Some(mut batch) = part.queue.pop_front() else {
                    break;
                };
                if self.identity.is_some() && batch.base_sequence < 0 {
                    batch.base_sequence = part.next_sequence;
                    part.next_sequence = wrap_add(part.next_sequence, batch.count());
                }
                part.in_flight += 1;
                if let Some((batches, bytes)) = requests.get_mut(slot) {
                    *bytes += batch.size;
                    batches.push(batch);
                }
            }
        }
        for (leader, requests) in building {
            for (batches, _) in requests.into_iter().filter(|(b, _)| !b.is_empty()) {
                *state.node_in_flight.entry(leader).or_default() += 1;
                out.requests.push((leader, batches));
            }
        }
        state
            .partitions
            .retain(|_, p| !p.queue.is_empty() || p.in_flight > 0 || p.next_sequence > 0);
        out.finished = state.closed
            && state
                .partitions
                .values()
                .all(|p| p.queue.is_empty() && p.in_flight == 0)
            && out.requests.is_empty();
        out
    }

    /// Applies an outcome: completes acknowledged and failed batches, requeues retriable ones.
    fn complete(self: &Arc<Shared>, outcome: Outcome) {
        let now = Instant::now();
        let mut finished: Vec<(Batch, Result<Ack>)> = Vec::new();
        let mut need_metadata = false;
        {
            let mut state = lock(&self.state);
            if let Some(n) = state.node_in_flight.get_mut(&outcome.leader) {
                *n = n.saturating_sub(1);
            }
            for (mut batch, result) in outcome.results {
                let part = state.partitions.entry(batch.tp.clone()).or_default();
                part.in_flight = part.in_flight.saturating_sub(1);
                let error = match result {
                    Ok(ack) => {
                        finished.push((batch, Ok(ack)));
                        continue;
                    }
                    Err(e) => e,
                };
                let out_of_order = error.kafka_code().map(KafkaCode::kind)
                    == Some(ResponseError::OutOfOrderSequenceNumber);
                // An out-of-order answer is expected while an earlier batch is being retried
                // or a gap is being closed: this batch then goes again after it.
                let earlier_pending = !part.gaps.is_empty()
                    || part.in_flight > 0
                    || part
                        .queue
                        .iter()
                        .any(|b| b.base_sequence >= 0 && b.base_sequence < batch.base_sequence);
                let retriable = if out_of_order {
                    self.identity.is_some() && earlier_pending
                } else {
                    error.is_retriable()
                };
                if retriable && now < batch.deadline && batch.attempts < self.config.retries {
                    need_metadata |= error.invalidates_metadata();
                    batch.attempts += 1;
                    batch.retry_at = Some(now + self.backoff(batch.attempts));
                    tracing::debug!(tp = %batch.tp, attempt = batch.attempts, error = %error, "retrying batch");
                    insert_by_sequence(&mut part.queue, batch);
                } else {
                    if batch.base_sequence >= 0 {
                        part.gaps.push((batch.base_sequence, batch.count()));
                    }
                    finished.push((batch, Err(error)));
                }
            }
        }
        if need_metadata {
            self.refresh_metadata_in_background();
        }
        for (batch, result) in finished {
            self.finish(batch, result);
        }
    }

    /// Runs a batch's completions.
    fn finish(&self, batch: Batch, result: Result<Ack>) {
        let count = batch.completions.len();
        let tp = batch.tp;
        match result {
            Ok(ack) => {
                for (i, (completion, record)) in batch
                    .completions
                    .into_iter()
                    .zip(&batch.records)
                    .enumerate()
                {
                    completion.complete(Ok(RecordMetadata {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: if ack.base_offset >= 0 {
                            ack.base_offset + i as i64
                        } else {
                            -1
                        },
                        timestamp: if ack.log_append_time >= 0 {
                            ack.log_append_time
                        } else {
                            record.timestamp
                        },
                    }));
                }
            }
            Err(error) => {
                for completion in batch.completions {
                    completion.complete(Err(clone_error(&error)));
                }
            }
        }
        if self.pending.fetch_sub(count, Ordering::AcqRel) == count {
            self.idle.notify_waiters();
        }
    }

    /// Refreshes metadata in a task of its own (one at a time), then wakes the sender.
    fn refresh_metadata_in_background(self: &Arc<Shared>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = shared.client.refresh_metadata(Some(&[])).await {
                tracing::debug!(error = %e, "producer metadata refresh failed");
            }
            shared.refreshing.store(false, Ordering::Release);
            shared.wake.notify_one();
        });
    }
}

/// Closes sequence gaps: every batch numbered after a failed one moves down by its count.
fn renumber(part: &mut PartitionQueue) {
    let mut gaps = std::mem::take(&mut part.gaps);
    gaps.sort_by_key(|&(base, _)| std::cmp::Reverse(base));
    for (base, count) in gaps {
        for batch in part.queue.iter_mut().filter(|b| b.base_sequence > base) {
            batch.base_sequence -= count;
        }
        part.next_sequence -= count;
    }
}

fn insert_by_sequence(queue: &mut VecDeque<Batch>, batch: Batch) {
    let at = if batch.base_sequence < 0 {
        0
    } else {
        queue
            .iter()
            .position(|b| b.base_sequence < 0 || b.base_sequence > batch.base_sequence)
            .unwrap_or(queue.len())
    };
    queue.insert(at, batch);
}

fn wrap_add(sequence: i32, delta: i32) -> i32 {
    ((i64::from(sequence) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// A request's place in its leader's submission order: wait for `previous` (the request
/// before it was submitted, or gave up), submit, then signal `submitted`. Dropping the sender
/// counts as the signal, so a request that fails early never blocks the next.
struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    submitted: oneshot::Sender<()>,
}

/// The sender task.
async fn run(shared: Arc<Shared>) {
    let mut last_turn: HashMap<i32, oneshot::Receiver<()>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let mut last_refresh_check = Instant::now();
    loop {
        let now = Instant::now();
        let drained = shared.drain(now);
        for batch in drained.expired {
            let error = Error::Timeout {
                what: format!("delivery of {} records to {}", batch.count(), batch.tp),
                after: shared.config.delivery_timeout,
            };
            shared.finish(batch, Err(error));
        }
        if drained.need_metadata
            || now.duration_since(last_refresh_check) > shared.client.config().metadata_max_age
        {
            last_refresh_check = now;
            shared.refresh_metadata_in_background();
        }
        for (leader, batches) in drained.requests {
            let (submitted, next) = oneshot::channel();
            let turn = Turn {
                previous: last_turn.insert(leader, next),
                submitted,
            };
            tokio::spawn(send_request(
                Arc::clone(&shared),
                leader,
                batches,
                turn,
                done_tx.clone(),
            ));
        }
        if drained.finished {
            break;
        }
        let sleep_until = drained
            .next_wake
            .unwrap_or_else(|| now + Duration::from_secs(3600));
        tokio::select! {
            _ = shared.wake.notified() => {}
            outcome = done_rx.recv() => {
                if let Some(outcome) = outcome {
                    shared.complete(outcome);
                    while let Ok(more) = done_rx.try_recv() {
                        shared.complete(more);
                    }
                }
            }
            _ = tokio::time::sleep_until(sleep_until) => {}
        }
    }
}

/// Encodes and sends one Produce request, and reports each batch's outcome.
async fn send_request(
    shared: Arc<Shared>,
    leader: i32,
    batches: Vec<Batch>,
    turn: Turn,
    done: mpsc::UnboundedSender<Outcome>,
) {
    let (pid, epoch) = shared.identity.unwrap_or((-1, -1));
    let mut encoded: Vec<(Batch, Result<Bytes>)> = Vec::with_capacity(batches.len());
    for batch in batches {
        let identity = ProducerIdentity {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: batch.base_sequence,
        };
        let bytes = encode_batch(&batch.records, shared.config.compression, identity);
        encoded.push((batch, bytes));
    }
    let mut results: Vec<(Batch, Result<Ack>)> = Vec::new();
    let mut sendable: Vec<Batch> = Vec::new();
    let mut payload: Vec<(TopicPartition, Bytes)> = Vec::new();
    for (batch, bytes) in encoded {
        match bytes {
            Ok(b) => {
                payload.push((batch.tp.clone(), b));
                sendable.push(batch);
            }
            Err(e) => results.push((batch, Err(e))),
        }
    }
    if !sendable.is_empty() {
        match produce(&shared, leader, payload, turn).await {
            Ok(Some(mut answers)) => {
                for batch in sendable {
                    let result = answers.remove(&batch.tp).unwrap_or_else(|| {
                        Err(Error::Protocol {
                            addr: format!("broker {leader}"),
                            detail: format!("the Produce response has no entry for {}", batch.tp),
                        })
                    });
                    results.push((batch, result));
                }
            }
            Ok(None) => {
                for batch in sendable {
                    results.push((
                        batch,
                        Ok(Ack {
                            base_offset: -1,
                            log_append_time: -1,
                        }),
                    ));
                }
            }
            Err(e) => {
                for batch in sendable {
                    results.push((batch, Err(clone_error(&e))));
                }
            }
        }
    }
    let _ = done.send(Outcome { leader, results });
    shared.wake.notify_one();
}

/// The Produce round trip: per-partition acknowledgements, or `None` for acks=0.
async fn produce(
    shared: &Shared,
    leader: i32,
    batches: Vec<(TopicPartition, Bytes)>,
    turn: Turn,
) -> Result<Option<HashMap<TopicPartition, Result<Ack>>>> {
    let client = &shared.client;
    let node = client.node(Target::Broker(leader)).await?;
    let version = node.versions().pick(ApiKey::Produce, node.addr())?;
    let timeout = client.config().request_timeout;
    let mut by_topic: BTreeMap<String, Vec<PartitionProduceData>> = BTreeMap::new();
    for (tp, bytes) in batches {
        by_topic.entry(tp.topic).or_default().push(
            PartitionProduceData::default()
                .with_index(tp.partition)
                .with_records(Some(bytes)),
        );
    }
    let request = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(shared.config.acks.wire())
        .with_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
        .with_topic_data(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicProduceData::default()
                        .with_name(topic_name(&topic))
                        .with_partition_data(partitions)
                })
                .collect(),
        );
    // Submit only after the previous request to this leader was submitted: requests are encoded
    // in parallel, but a partition's batches must reach the broker in sequence order.
    if let Some(previous) = turn.previous {
        let _ = previous.await;
    }
    if shared.config.acks == Acks::None {
        client.send_no_response(&node, version, &request)?;
        let _ = turn.submitted.send(());
        return Ok(None);
    }
    // The broker may take the whole timeout waiting for replicas; allow for the round trip.
    let reply = client.submit(&node, version, &request, timeout + Duration::from_secs(5))?;
    let _ = turn.submitted.send(());
    let response = reply.await?;
    let mut answers = HashMap::new();
    for topic in response.responses {
        for p in topic.partition_responses {
            let tp = TopicPartition::new(topic.name.0.to_string(), p.index);
            let code = KafkaCode::from_code(p.error_code);
            let result = match code.map(KafkaCode::kind) {
                None => Ok(Ack {
                    base_offset: p.base_offset,
                    log_append_time: p.log_append_time_ms,
                }),
                // Already written by an earlier attempt whose answer was lost.
                Some(ResponseError::DuplicateSequenceNumber) => Ok(Ack {
                    base_offset: -1,
                    log_append_time: -1,
                }),
                Some(_) => Err(Error::Kafka {
                    code: code.unwrap_or(KafkaCode::of(ResponseError::UnknownServerError)),
                    context: format!("produce to {tp}"),
                    message: p
                        .error_message
                        .map(|m| m.to_string())
                        .filter(|m| !m.is_empty()),
                }),
            };
            answers.insert(tp, result);
        }
    }
    Ok(Some(answers))
}
