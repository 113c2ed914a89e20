//! A fetch-based consumer: assign partitions, seek, poll.
//!
//! # Expected flow
//! 1. [`Consumer::assign`] sets the partitions; each starts at `auto.offset.reset` (earliest or
//!    latest) unless [`Consumer::seek`] says otherwise.
//! 2. [`Consumer::poll`] resolves positions that are still symbolic (earliest, latest, a
//!    timestamp) with ListOffsets, then sends one Fetch per partition leader. Fetches run in
//!    their own tasks, which also decode the batches; as soon as a leader answers, the next
//!    fetch from it is sent, so the network works while the caller handles the records.
//! 3. A partition whose answer is NOT_LEADER_OR_FOLLOWER (or similar) triggers a metadata
//!    refresh and is fetched from the new leader next time; OFFSET_OUT_OF_RANGE applies
//!    `auto.offset.reset` (or fails the poll when it is `none`).
//!
//! Group membership (JoinGroup/SyncGroup) is not implemented: a consumer that wants a group's
//! committed offsets reads them with [`Consumer::seek_to_committed`] and stores its position with
//! [`Consumer::commit`], as a Kafka consumer using `assign()` does.
//!
//! Reads are `read_uncommitted`; transactional aborts are not filtered.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        BrokerId, FetchRequest, FetchResponse,
    },
    ResponseError,
};
use tokio::time::Instant;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    admin::{group_by_topic, list_offsets_at, topic_name, Admin, OffsetSpec},
    client::{Client, Target},
    config::{millis, number},
    error::{Error, KafkaCode, Result},
    metadata::TopicPartition,
    records::{decode_fetched, ConsumerRecord},
};

/// What to do when there is no valid position (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// Start at the log start.
    Earliest,
    /// Start at the log end (only new records).
    Latest,
    /// Fail the poll.
    None,
}

/// Consumer settings, under Kafka's names.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `fetch.max.wait.ms`.
    pub fetch_max_wait: Duration,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: i32,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            auto_offset_reset: OffsetReset::Latest,
        }
    }
}

impl ConsumerConfig {
    /// Sets one setting by its Kafka name; `Ok(false)` if the name is not a consumer setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "fetch.min.bytes" => self.fetch_min_bytes = number(key, value)?,
            "fetch.max.wait.ms" => self.fetch_max_wait = millis(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = number(key, value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = number(key, value)?,
            "auto.offset.reset" => {
                self.auto_offset_reset = match value.trim() {
                    "earliest" => OffsetReset::Earliest,
                    "latest" => OffsetReset::Latest,
                    "none" => OffsetReset::None,
                    other => {
                        return Err(Error::Config {
                            key: key.into(),
                            reason: format!("`{other}` is not earliest, latest or none"),
                        })
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Where to move a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The log start offset.
    Beginning,
    /// The log end offset.
    End,
    /// An exact offset.
    Offset(i64),
    /// The first record at or after this time (ms since the epoch); the end if none.
    Timestamp(i64),
}

/// A fetch in flight: the offsets it asked for, and its task.
struct InFlight {
    id: u64,
    asked: BTreeMap<TopicPartition, i64>,
    task: JoinHandle<()>,
}

/// A finished fetch: (leader, fetch id, answer).
type Finished = (i32, u64, Result<FetchAnswer>);

type FetchAnswer = Vec<(TopicPartition, PartitionAnswer)>;

enum PartitionAnswer {
    Records {
        records: Vec<ConsumerRecord>,
        next_offset: Option<i64>,
        high_watermark: i64,
    },
    Error(Error),
}

/// A consumer of assigned partitions.
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    /// Invariant: holds exactly the assigned partitions.
    positions: BTreeMap<TopicPartition, Position>,
    high_watermarks: BTreeMap<TopicPartition, i64>,
    /// Invariant: at most one fetch per leader.
    in_flight: HashMap<i32, InFlight>,
    next_fetch_id: u64,
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished_rx: mpsc::UnboundedReceiver<Finished>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    At(i64),
    Seek(SeekTo),
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("asked", &self.asked)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer on `client` with no partitions assigned.
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Consumer {
            client,
            config,
            positions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
            in_flight: HashMap::new(),
            next_fetch_id: 0,
            finished_tx,
            finished_rx,
        }
    }

    /// Replaces the assignment. Partitions kept keep their positions; new ones start at
    /// `auto.offset.reset`.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let reset = match self.config.auto_offset_reset {
            OffsetReset::Earliest => Position::Seek(SeekTo::Beginning),
            _ => Position::Seek(SeekTo::End),
        };
        let old = std::mem::take(&mut self.positions);
        for tp in partitions {
            let position = old.get(&tp).copied().unwrap_or(reset);
            self.positions.insert(tp, position);
        }
        self.high_watermarks
            .retain(|tp, _| self.positions.contains_key(tp));
        self.abandon_fetches();
    }

    /// Assigns every partition of `topic`.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<Vec<TopicPartition>> {
        let client = self.client.clone();
        let partitions = client
            .retrying("find the topic's partitions", || client.partitions(topic))
            .await?;
        let tps: Vec<TopicPartition> = partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let mut all: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        all.extend(tps.iter().cloned());
        self.assign(all);
        Ok(tps)
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// Moves a partition's position (assigning it if it is not).
    pub fn seek(&mut self, tp: TopicPartition, to: SeekTo) {
        let position = match to {
            SeekTo::Offset(o) => Position::At(o),
            other => Position::Seek(other),
        };
        self.positions.insert(tp, position);
        self.abandon_fetches();
    }

    /// The offset of the next record `poll` returns for the partition, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        match self.positions.get(tp) {
            Some(Position::At(o)) => Some(*o),
            _ => None,
        }
    }

    /// The partition's high watermark as of the last fetch.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.high_watermarks.get(tp).copied()
    }

    /// Seeks each assigned partition to `group`'s committed offset; partitions without one
    /// keep their position. Returns the partitions that had one.
    pub async fn seek_to_committed(&mut self, group: &str) -> Result<Vec<TopicPartition>> {
        let assigned = self.assignment();
        let committed = Admin::new(self.client.clone())
            .list_group_offsets(group, Some(&assigned))
            .await?;
        for (tp, c) in &committed {
            if self.positions.contains_key(tp) {
                self.positions.insert(tp.clone(), Position::At(c.offset));
            }
        }
        self.abandon_fetches();
        Ok(committed.into_keys().collect())
    }

    /// Commits the current positions for `group` (without membership, generation -1).
    pub async fn commit(&self, group: &str) -> Result<()> {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .positions
            .iter()
            .filter_map(|(tp, p)| match p {
                Position::At(o) => Some((tp.clone(), *o)),
                Position::Seek(_) => None,
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        let results = Admin::new(self.client.clone())
            .alter_group_offsets(group, &offsets)
            .await?;
        results.into_iter().try_for_each(|(_, r)| r)
    }

    fn abandon_fetches(&mut self) {
        for (_, fetch) in self.in_flight.drain() {
            fetch.task.abort();
        }
    }

    /// Returns the records that arrive within `timeout` (at least one fetch round is made,
    /// and the call returns as soon as any records are there).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.resolve_positions().await?;
            let records = self.fetch_round(deadline).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Turns symbolic positions into offsets with ListOffsets.
    async fn resolve_positions(&mut self) -> Result<()> {
        let specs: BTreeMap<TopicPartition, OffsetSpec> = self
            .positions
            .iter()
            .filter_map(|(tp, p)| match p {
                Position::Seek(SeekTo::Beginning) => Some((tp.clone(), OffsetSpec::Earliest)),
                Position::Seek(SeekTo::End) => Some((tp.clone(), OffsetSpec::Latest)),
                Position::Seek(SeekTo::Timestamp(t)) => {
                    Some((tp.clone(), OffsetSpec::Timestamp(*t)))
                }
                _ => None,
            })
            .collect();
        if specs.is_empty() {
            return Ok(());
        }
        let client = &self.client;
        let found = client
            .route_partitions(
                "resolve positions",
                specs.keys().cloned().collect(),
                |node, tps| list_offsets_at(client, node, tps, &specs),
            )
            .await;
        for (tp, result) in found {
            let listed = result?;
            let offset = if listed.offset >= 0 {
                listed.offset
            } else {
                // No record at or after the timestamp: start at the end, as Kafka's tools do.
                self.end_offset(&tp).await?
            };
            self.positions.insert(tp, Position::At(offset));
        }
        Ok(())
    }

    async fn end_offset(&self, tp: &TopicPartition) -> Result<i64> {
        let results = Admin::new(self.client.clone())
            .list_offsets(&[(tp.clone(), OffsetSpec::Latest)])
            .await;
        results
            .into_iter()
            .next()
            .map(|(_, r)| r.map(|l| l.offset))
            .unwrap_or_else(|| Err(Error::Invalid(format!("no end offset for {tp}"))))
    }

    /// Starts fetches to leaders that have none in flight, then waits for the first to
    /// answer (or the deadline) and applies every answer that is there.
    async fn fetch_round(&mut self, deadline: Instant) -> Result<Vec<ConsumerRecord>> {
        self.start_fetches(deadline).await?;
        if self.in_flight.is_empty() {
            // Nothing fetchable (no assignment, or no leader yet): wait out a backoff.
            let pause = self.client.config().retry_backoff;
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            return Ok(Vec::new());
        }
        let mut records = Vec::new();
        let Ok(Some(first)) = tokio::time::timeout_at(deadline, self.finished_rx.recv()).await
        else {
            return Ok(records);
        };
        self.apply(first, &mut records).await?;
        while let Ok(more) = self.finished_rx.try_recv() {
            self.apply(more, &mut records).await?;
        }
        // Keep the pipeline full: the next fetches go out before the caller sees the records.
        if !records.is_empty() {
            self.start_fetches(deadline).await?;
        }
        Ok(records)
    }

    async fn apply(
        &mut self,
        (leader, id, result): Finished,
        records: &mut Vec<ConsumerRecord>,
    ) -> Result<()> {
        // A fetch abandoned by a seek or a new assignment may still report; it is stale.
        let Some(fetch) = self.in_flight.remove(&leader) else {
            return Ok(());
        };
        if fetch.id != id {
            self.in_flight.insert(leader, fetch);
            return Ok(());
        }
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                if e.is_retriable() {
                    tracing::debug!(error = %e, "fetch failed; will retry");
                    if e.invalidates_metadata() {
                        self.client.refresh_metadata(Some(&[])).await?;
                    }
                    return Ok(());
                }
                return Err(e);
            }
        };
        let mut refresh = false;
        for (tp, partition) in answer {
            // Ignore answers for partitions moved (seek, unassign) since the fetch was sent.
            let asked = fetch.asked.get(&tp).copied();
            if asked.is_none() || self.positions.get(&tp) != asked.map(Position::At).as_ref() {
                continue;
            }
            match partition {
                PartitionAnswer::Records {
                    records: batch,
                    next_offset,
                    high_watermark,
                } => {
                    self.high_watermarks.insert(tp.clone(), high_watermark);
                    let next = batch
                        .last()
                        .map(|r| r.offset + 1)
                        .into_iter()
                        .chain(next_offset)
                        .max();
                    if let Some(next) = next {
                        self.positions.insert(tp, Position::At(next));
                    }
                    records.extend(batch);
                }
                PartitionAnswer::Error(e) => {
                    let kind = e.kafka_code().map(KafkaCode::kind);
                    if kind == Some(ResponseError::OffsetOutOfRange) {
                        let reset = match self.config.auto_offset_reset {
                            OffsetReset::Earliest => SeekTo::Beginning,
                            OffsetReset::Latest => SeekTo::End,
                            OffsetReset::None => return Err(e),
                        };
                        tracing::info!(%tp, offset = asked, ?reset, "offset out of range; resetting");
                        self.positions.insert(tp, Position::Seek(reset));
                    } else if e.is_retriable() {
                        refresh |= e.invalidates_metadata();
                    } else {
                        return Err(e);
                    }
                }
            }
        }
        if refresh {
            self.client.refresh_metadata(Some(&[])).await?;
        }
        Ok(())
    }

    /// Sends a Fetch to every leader of assigned partitions that has none in flight.
    async fn start_fetches(&mut self, deadline: Instant) -> Result<()> {
        let mut by_leader: BTreeMap<i32, BTreeMap<TopicPartition, i64>> = BTreeMap::new();
        let busy: Vec<TopicPartition> = self
            .in_flight
            .values()
            .flat_map(|f| f.asked.keys().cloned())
            .collect();
        for (tp, position) in &self.positions {
            let Position::At(offset) = position else {
                continue;
            };
            if busy.contains(tp) {
                continue;
            }
            match self.client.leader(tp).await {
                Ok(leader) if !self.in_flight.contains_key(&leader) => {
                    by_leader
                        .entry(leader)
                        .or_default()
                        .insert(tp.clone(), *offset);
                }
                Ok(_) => {}
                Err(e) if e.is_retriable() => {
                    tracing::debug!(%tp, error = %e, "no leader yet");
                }
                Err(e) => return Err(e),
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wait = self.config.fetch_max_wait.min(remaining);
        for (leader, asked) in by_leader {
            self.next_fetch_id += 1;
            let id = self.next_fetch_id;
            let done = self.finished_tx.clone();
            let work = fetch(
                self.client.clone(),
                self.config.clone(),
                leader,
                asked.clone(),
                wait,
            );
            let task = tokio::spawn(async move {
                let _ = done.send((leader, id, work.await));
            });
            self.in_flight.insert(leader, InFlight { id, asked, task });
        }
        Ok(())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.abandon_fetches();
    }
}

/// One Fetch round trip to `leader`, decoded.
async fn fetch(
    client: Client,
    config: ConsumerConfig,
    leader: i32,
    asked: BTreeMap<TopicPartition, i64>,
    wait: Duration,
) -> Result<FetchAnswer> {
    let node = client.node(Target::Broker(leader)).await?;
    let version = node
        .versions()
        .pick(kafka_protocol::messages::ApiKey::Fetch, node.addr())?;
    let tps: Vec<TopicPartition> = asked.keys().cloned().collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(i32::try_from(wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            group_by_topic(&tps)
                .into_iter()
                .map(|(topic, partitions)| {
                    FetchTopic::default()
                        .with_topic(topic_name(&topic))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|p| {
                                    let offset = asked
                                        .get(&TopicPartition::new(topic.clone(), p))
                                        .copied()
                                        .unwrap_or(0);
                                    FetchPartition::default()
                                        .with_partition(p)
                                        .with_current_leader_epoch(-1)
                                        .with_fetch_offset(offset)
                                        .with_last_fetched_epoch(-1)
                                        .with_log_start_offset(-1)
                                        .with_partition_max_bytes(config.max_partition_fetch_bytes)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let timeout = client.config().request_timeout + wait;
    let response: FetchResponse = client.send_at(&node, version, &request, timeout).await?;
    Error::check(response.error_code, || {
        format!("fetch from broker {leader}")
    })?;
    let mut answer = Vec::new();
    for topic in response.responses {
        let name = topic.topic.0.to_string();
        for p in topic.partitions {
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let from = asked.get(&tp).copied().unwrap_or(0);
            let result = match Error::check(p.error_code, || format!("fetch {tp} at offset {from}"))
            {
                Err(e) => PartitionAnswer::Error(e),
                Ok(()) => match decode_fetched(
                    &name,
                    p.partition_index,
                    p.records.unwrap_or_default(),
                    from,
                ) {
                    Ok(decoded) => PartitionAnswer::Records {
                        records: decoded.records,
                        next_offset: decoded.next_offset,
                        high_watermark: p.high_watermark,
                    },
                    Err(e) => PartitionAnswer::Error(e),
                },
            };
            answer.push((tp, result));
        }
    }
    Ok(answer)
}
