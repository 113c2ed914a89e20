//! The client core: bootstrap, metadata, the connection pool, version negotiation, and
//! routing with retries. The admin API, the producer and the consumer are built on it.
//!
//! # Expected flow of a request
//! 1. The caller names a [`Target`]: any broker, the controller, a broker id, or an address
//!    (a group coordinator).
//! 2. [`Client::node`] resolves it through the cached [`Metadata`] (refreshing it when the
//!    broker is unknown) and returns the pooled connection, opening it if needed: a new
//!    connection first exchanges ApiVersions, and its [`ApiVersionTable`] is kept with it.
//! 3. [`Client::send`] picks the highest version both sides implement, lets the caller build
//!    the request for that version, and awaits the response with `request.timeout.ms`.
//! 4. [`Client::retrying`] wraps an operation: a retriable error (Kafka's classification, or a
//!    lost connection or timeout) is retried with exponential backoff until
//!    `default.api.timeout.ms`; an error that says metadata is stale (NOT_LEADER_OR_FOLLOWER,
//!    LEADER_NOT_AVAILABLE, NOT_COORDINATOR, ...) refreshes it first.
//!
//! Per-partition operations ([`Client::route_partitions`]) group partitions by leader, send one
//! request per leader, and retry only the partitions whose answer was a retriable error.
//!
//! # Guarantees
//! - One connection per broker address; requests on it are pipelined (see `connection`).
//! - Metadata refreshes are serialized: concurrent callers that find a leader missing share one
//!   refresh instead of each sending their own.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    future::Future,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use bytes::BytesMut;
use kafka_protocol::{
    messages::{
        metadata_request::MetadataRequestTopic, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
        MetadataRequest, TopicName,
    },
    protocol::{Decodable, Request, StrBytes},
    ResponseError,
};
use tokio::time::Instant;

use crate::{
    config::ClientConfig,
    connection::{Channel, Connector, Outbound, Reply, TcpConnector},
    error::{Error, KafkaCode, Result},
    metadata::{Metadata, PartitionMetadata, TopicPartition},
    versions::{client_range, ApiVersionTable},
};

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Any reachable broker (metadata, cluster-wide reads).
    Any,
    /// The controller as Metadata reports it (KRaft brokers forward to the real one).
    Controller,
    /// A broker by id.
    Broker(i32),
    /// A `host:port` that may not be in the metadata (a group coordinator's address).
    Addr(&'a str),
}

/// A pooled connection and what its broker supports.
#[derive(Debug, Clone)]
pub struct Node {
    addr: String,
    channel: Arc<dyn Channel>,
    versions: Arc<ApiVersionTable>,
}

impl Node {
    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The versions the broker advertised.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }
}

/// A connection slot: one per address, so concurrent callers open one connection, not many.
type Slot = Arc<tokio::sync::Mutex<Option<Node>>>;

struct Inner {
    config: ClientConfig,
    connector: Arc<dyn Connector>,
    metadata: RwLock<Arc<Metadata>>,
    /// Serializes refreshes.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Topics this client has asked about; a refresh covers all of them.
    wanted_topics: Mutex<BTreeSet<String>>,
    pool: Mutex<HashMap<String, Slot>>,
    /// Group id → coordinator address, from FindCoordinator.
    coordinators: Mutex<HashMap<String, String>>,
}

/// A handle on the cluster; cheap to clone, shared by admin, producer and consumer.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.inner.config.bootstrap_servers)
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

/// Locks a std mutex, ignoring poisoning: every critical section here is a single read or
/// update of a map, which a panic cannot leave half done.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Client {
    /// Connects to the cluster: reads metadata from the first bootstrap server that answers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let connector = TcpConnector {
            client_id: config.client_id.clone(),
            connect_timeout: config.connect_timeout,
            max_response_bytes: config.max_response_bytes,
        };
        let client = Client::with_connector(config, Arc::new(connector));
        client.refresh_metadata(Some(&[])).await?;
        Ok(client)
    }

    /// A client over any connector, without I/O (unit tests inject scripted brokers).
    pub(crate) fn with_connector(config: ClientConfig, connector: Arc<dyn Connector>) -> Client {
        Client {
            inner: Arc::new(Inner {
                config,
                connector,
                metadata: RwLock::new(Arc::new(Metadata::default())),
                refresh_lock: tokio::sync::Mutex::new(()),
                wanted_topics: Mutex::new(BTreeSet::new()),
                pool: Mutex::new(HashMap::new()),
                coordinators: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The cached metadata (no I/O).
    pub fn metadata(&self) -> Arc<Metadata> {
        Arc::clone(
            &self
                .inner
                .metadata
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Refreshes metadata. `None` lists every topic in the cluster; `Some(topics)` describes
    /// those topics plus every topic this client asked about before (`Some(&[])`: just those).
    pub async fn refresh_metadata(&self, topics: Option<&[String]>) -> Result<Arc<Metadata>> {
        let _serial = self.inner.refresh_lock.lock().await;
        let wanted: Option<Vec<String>> = topics.map(|topics| {
            let mut wanted = lock(&self.inner.wanted_topics);
            wanted.extend(topics.iter().cloned());
            wanted.iter().cloned().collect()
        });
        let allow_create = self.inner.config.allow_auto_topic_creation;
        let response = self
            .send_any(|version| {
                let topics = wanted.as_ref().map(|names| {
                    names
                        .iter()
                        .map(|n| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                        })
                        .collect()
                });
                MetadataRequest::default()
                    .with_topics(topics)
                    .with_allow_auto_topic_creation(allow_create && version >= 4)
            })
            .await?;
        let mut next = (*self.metadata()).clone();
        next.apply(&response, wanted.is_none());
        let next = Arc::new(next);
        *self
            .inner
            .metadata
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&next);
        Ok(next)
    }

    /// Sends a request to whichever broker answers first: connected brokers, then the
    /// metadata's brokers, then the bootstrap list.
    pub(crate) async fn send_any<R, F>(&self, build: F) -> Result<R::Response>
    where
        R: Request,
        R::Response: Send + 'static,
        F: Fn(i16) -> R,
    {
        let mut last = None;
        for addr in self.candidate_addrs() {
            let attempt = async {
                let node = self.connect_addr(&addr).await?;
                self.send(&node, &build).await
            };
            match attempt.await {
                Ok(response) => return Ok(response),
                Err(e @ (Error::Connect { .. } | Error::Io { .. } | Error::Timeout { .. })) => {
                    tracing::debug!(%addr, error = %e, "broker unreachable; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Bootstrap {
            servers: self.inner.config.bootstrap_servers.join(","),
            last: Box::new(last.unwrap_or_else(|| Error::Invalid("no broker address".into()))),
        })
    }

    fn candidate_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = Vec::new();
        let mut push = |a: String| {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        };
        let open: Vec<String> = lock(&self.inner.pool).keys().cloned().collect();
        for a in open {
            push(a);
        }
        for b in self.metadata().brokers.values() {
            push(b.addr());
        }
        for a in &self.inner.config.bootstrap_servers {
            push(a.clone());
        }
        addrs
    }

    /// The connection for `target`, opened (and its versions negotiated) if needed.
    pub async fn node(&self, target: Target<'_>) -> Result<Node> {
        match target {
            Target::Addr(addr) => self.connect_addr(addr).await,
            Target::Any => {
                let mut last = None;
                for addr in self.candidate_addrs() {
                    match self.connect_addr(&addr).await {
                        Ok(node) => return Ok(node),
                        Err(e) => last = Some(e),
                    }
                }
                Err(Error::Bootstrap {
                    servers: self.inner.config.bootstrap_servers.join(","),
                    last: Box::new(
                        last.unwrap_or_else(|| Error::Invalid("no broker address".into())),
                    ),
                })
            }
            Target::Controller => match self.metadata().controller_id {
                Some(id) => Box::pin(self.node(Target::Broker(id))).await,
                None => Box::pin(self.node(Target::Any)).await,
            },
            Target::Broker(id) => {
                let known = self.metadata().brokers.get(&id).map(|b| b.addr());
                let addr = match known {
                    Some(addr) => addr,
                    None => self
                        .refresh_metadata(Some(&[]))
                        .await?
                        .brokers
                        .get(&id)
                        .map(|b| b.addr())
                        .ok_or_else(|| {
                            Error::kafka(
                                ResponseError::BrokerNotAvailable,
                                format!("find broker {id}"),
                            )
                        })?,
                };
                self.connect_addr(&addr).await
            }
        }
    }

    async fn connect_addr(&self, addr: &str) -> Result<Node> {
        let slot: Slot = Arc::clone(lock(&self.inner.pool).entry(addr.to_string()).or_default());
        let mut guard = slot.lock().await;
        if let Some(node) = guard.as_ref().filter(|n| !n.channel.is_closed()) {
            return Ok(node.clone());
        }
        let channel = self.inner.connector.connect(addr).await?;
        let versions = match self.negotiate(addr, channel.as_ref()).await {
            Ok(v) => v,
            Err(e) => {
                channel.close();
                return Err(e);
            }
        };
        tracing::debug!(%addr, "connected");
        let node = Node {
            addr: addr.to_string(),
            channel,
            versions: Arc::new(versions),
        };
        *guard = Some(node.clone());
        Ok(node)
    }

    /// ApiVersions exchange: asks at the client's highest version; a broker that does not
    /// know it answers UNSUPPORTED_VERSION in a v0 body listing its own range, and the client
    /// asks again at the highest version the broker named.
    async fn negotiate(&self, addr: &str, channel: &dyn Channel) -> Result<ApiVersionTable> {
        let (_, mut version) = client_range(ApiKey::ApiVersions).unwrap_or((0, 0));
        for _ in 0..2 {
            let request = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("millrace-client"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let request = if version >= 3 {
                request
            } else {
                ApiVersionsRequest::default()
            };
            let body = encode(&request, version)?;
            let reply = submit_expecting(addr, channel, ApiKey::ApiVersions, version, body)?;
            let timeout = self.inner.config.request_timeout;
            let bytes = await_reply(addr, channel, ApiKey::ApiVersions, reply, timeout).await?;
            let response = ApiVersionsResponse::decode(&mut bytes.clone(), version)
                .or_else(|_| ApiVersionsResponse::decode(&mut bytes.clone(), 0))
                .map_err(|e| Error::Decode {
                    addr: addr.to_string(),
                    api: ApiKey::ApiVersions,
                    version,
                    source: e.into(),
                })?;
            if response.error_code == ResponseError::UnsupportedVersion.code() {
                let table = ApiVersionTable::from_response(&response);
                match table.broker_range(ApiKey::ApiVersions) {
                    Some((_, max)) if max < version => {
                        version = max;
                        continue;
                    }
                    _ => {}
                }
            }
            Error::check(response.error_code, || format!("ApiVersions with {addr}"))?;
            return Ok(ApiVersionTable::from_response(&response));
        }
        Err(Error::Protocol {
            addr: addr.to_string(),
            detail: "ApiVersions negotiation did not converge".into(),
        })
    }

    /// Sends a request built for the negotiated version and decodes its response.
    pub async fn send<R, F>(&self, node: &Node, build: F) -> Result<R::Response>
    where
        R: Request,
        R::Response: Send + 'static,
        F: FnOnce(i16) -> R,
    {
        let api = api_key::<R>()?;
        let version = node.versions.pick(api, &node.addr)?;
        let request = build(version);
        self.send_at(node, version, &request, self.inner.config.request_timeout)
            .await
    }

    /// Sends `request` at `version`, waiting at most `timeout` for the response.
    pub(crate) async fn send_at<R: Request>(
        &self,
        node: &Node,
        version: i16,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response>
    where
        R::Response: Send + 'static,
    {
        self.submit(node, version, request, timeout)?.await
    }

    /// Queues `request` on the connection now; the returned future waits (at most `timeout`)
    /// for its response. A connection answers in submission order, so a caller that must keep
    /// requests in order (the producer, per partition) submits in order and waits in parallel.
    pub(crate) fn submit<R: Request>(
        &self,
        node: &Node,
        version: i16,
        request: &R,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Send + 'static,
    {
        let api = api_key::<R>()?;
        let body = encode(request, version)?;
        let reply = submit_expecting(&node.addr, node.channel.as_ref(), api, version, body)?;
        let (addr, channel) = (node.addr.clone(), Arc::clone(&node.channel));
        Ok(async move {
            let bytes = await_reply(&addr, channel.as_ref(), api, reply, timeout).await?;
            R::Response::decode(&mut bytes.clone(), version).map_err(|e| Error::Decode {
                addr,
                api,
                version,
                source: e.into(),
            })
        })
    }

    /// Queues a request that gets no response (Produce with acks=0).
    pub(crate) fn send_no_response<R: Request>(
        &self,
        node: &Node,
        version: i16,
        request: &R,
    ) -> Result<()> {
        let api = api_key::<R>()?;
        let body = encode(request, version)?;
        node.channel.submit(Outbound {
            api,
            version,
            body,
            expect_response: false,
        })?;
        Ok(())
    }

    /// Runs `op` until it succeeds, fails with a non-retriable error, or the API timeout
    /// passes; refreshes metadata before retrying when the error says it is stale.
    pub async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.inner.config.api_timeout;
        let mut backoff = self.inner.config.retry_backoff;
        let mut attempt = 1u32;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !error.is_retriable() || Instant::now() + backoff >= deadline {
                return Err(error);
            }
            tracing::debug!(what, attempt, error = %error, "retrying");
            if error.invalidates_metadata() {
                self.forget_coordinators_on(&error);
                // A failed refresh is not fatal here: the retry will report what is wrong.
                if let Err(e) = self.refresh_metadata(Some(&[])).await {
                    tracing::debug!(error = %e, "metadata refresh before retry failed");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.inner.config.retry_backoff_max);
            attempt += 1;
        }
    }

    fn forget_coordinators_on(&self, error: &Error) {
        if matches!(
            error.kafka_code().map(KafkaCode::kind),
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
        ) || matches!(error, Error::Connect { .. } | Error::Io { .. })
        {
            lock(&self.inner.coordinators).clear();
        }
    }

    /// A topic's partitions, refreshing metadata if the topic is not cached. Errors with the
    /// topic's error code (e.g. UNKNOWN_TOPIC_OR_PARTITION) if the cluster reports one.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<PartitionMetadata>> {
        let cached = self.metadata().topics.get(topic).cloned();
        let meta = match cached {
            Some(t) if t.error.is_none() && !t.partitions.is_empty() => t,
            _ => self
                .refresh_metadata(Some(&[topic.to_string()]))
                .await?
                .topics
                .get(topic)
                .cloned()
                .ok_or_else(|| {
                    Error::kafka(
                        ResponseError::UnknownTopicOrPartition,
                        format!("describe topic `{topic}`"),
                    )
                })?,
        };
        if let Some(code) = meta.error {
            return Err(Error::Kafka {
                code,
                context: format!("describe topic `{topic}`"),
                message: None,
            });
        }
        Ok(meta.partitions)
    }

    /// The partition's leader per the cached metadata, refreshing once if it is unknown.
    pub async fn leader(&self, tp: &TopicPartition) -> Result<i32> {
        if let Some(leader) = self.metadata().partition(tp).and_then(|p| p.leader) {
            return Ok(leader);
        }
        let partitions = match self.partitions(&tp.topic).await {
            Ok(p) => p,
            Err(_) => {
                self.refresh_metadata(Some(std::slice::from_ref(&tp.topic)))
                    .await?;
                self.partitions(&tp.topic).await?
            }
        };
        let partition = partitions
            .iter()
            .find(|p| p.partition == tp.partition)
            .ok_or_else(|| {
                Error::kafka(
                    ResponseError::UnknownTopicOrPartition,
                    format!("find the leader of {tp}"),
                )
            })?;
        partition.leader.ok_or_else(|| Error::Kafka {
            code: partition
                .error
                .unwrap_or(KafkaCode::of(ResponseError::LeaderNotAvailable)),
            context: format!("find the leader of {tp}"),
            message: None,
        })
    }

    /// Runs a per-partition operation: groups `partitions` by leader, calls `per_leader` once
    /// per leader, and retries (after a metadata refresh) the partitions whose result was a
    /// retriable error, until each has a final result or the API timeout passes.
    pub async fn route_partitions<T, F, Fut>(
        &self,
        what: &str,
        partitions: Vec<TopicPartition>,
        mut per_leader: F,
    ) -> Vec<(TopicPartition, Result<T>)>
    where
        F: FnMut(Node, Vec<TopicPartition>) -> Fut,
        Fut: Future<Output = Result<Vec<(TopicPartition, Result<T>)>>>,
    {
        let deadline = Instant::now() + self.inner.config.api_timeout;
        let mut backoff = self.inner.config.retry_backoff;
        let mut pending = partitions;
        let mut done: Vec<(TopicPartition, Result<T>)> = Vec::new();
        loop {
            let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
            let mut retry: Vec<(TopicPartition, Error)> = Vec::new();
            for tp in pending.drain(..) {
                match self.leader(&tp).await {
                    Ok(leader) => by_leader.entry(leader).or_default().push(tp),
                    Err(e) => retry.push((tp, e)),
                }
            }
            for (leader, tps) in by_leader {
                let outcome = match self.node(Target::Broker(leader)).await {
                    Ok(node) => per_leader(node, tps.clone()).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(results) => {
                        for (tp, result) in results {
                            match result {
                                Err(e) if e.is_retriable() => retry.push((tp, e)),
                                other => done.push((tp, other)),
                            }
                        }
                    }
                    Err(e) if e.is_retriable() => {
                        retry.extend(tps.into_iter().map(|tp| (tp, clone_error(&e))));
                    }
                    Err(e) => done.extend(tps.into_iter().map(|tp| (tp, Err(clone_error(&e))))),
                }
            }
            if retry.is_empty() {
                return done;
            }
            if Instant::now() + backoff >= deadline {
                done.extend(retry.into_iter().map(|(tp, e)| (tp, Err(e))));
                return done;
            }
            tracing::debug!(
                what,
                partitions = retry.len(),
                first_error = %retry[0].1,
                "retrying partitions"
            );
            if retry.iter().any(|(_, e)| e.invalidates_metadata()) {
                if let Err(e) = self.refresh_metadata(Some(&[])).await {
                    tracing::debug!(error = %e, "metadata refresh before retry failed");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.inner.config.retry_backoff_max);
            pending = retry.into_iter().map(|(tp, _)| tp).collect();
        }
    }

    /// The coordinator of a consumer group (FindCoordinator, cached until it fails).
    pub async fn group_coordinator(&self, group: &str) -> Result<Node> {
        let cached = lock(&self.inner.coordinators).get(group).cloned();
        if let Some(addr) = cached {
            return self.connect_addr(&addr).await;
        }
        let addr = self
            .retrying("find the group coordinator", || {
                self.find_coordinator(group)
            })
            .await?;
        lock(&self.inner.coordinators).insert(group.to_string(), addr.clone());
        self.connect_addr(&addr).await
    }

    async fn find_coordinator(&self, group: &str) -> Result<String> {
        use kafka_protocol::messages::FindCoordinatorRequest;
        let node = self.node(Target::Any).await?;
        let key = StrBytes::from_string(group.to_string());
        let response = self
            .send(&node, |version| {
                if version >= 4 {
                    FindCoordinatorRequest::default()
                        .with_key_type(0)
                        .with_coordinator_keys(vec![key.clone()])
                } else {
                    FindCoordinatorRequest::default().with_key(key.clone())
                }
            })
            .await?;
        let context = || format!("find the coordinator of group `{group}`");
        if let Some(c) = response.coordinators.first() {
            Error::check_msg(c.error_code, c.error_message.as_deref(), context)?;
            return Ok(format!("{}:{}", c.host, c.port));
        }
        Error::check_msg(
            response.error_code,
            response.error_message.as_deref(),
            context,
        )?;
        Ok(format!("{}:{}", response.host, response.port))
    }

    /// Forgets a group's cached coordinator (after NOT_COORDINATOR).
    pub(crate) fn forget_coordinator(&self, group: &str) {
        lock(&self.inner.coordinators).remove(group);
    }

    /// Opens (or reuses) a connection to every broker in the metadata.
    pub async fn all_brokers(&self) -> Result<Vec<(i32, Node)>> {
        let metadata = self.refresh_metadata(Some(&[])).await?;
        let mut nodes = Vec::new();
        for id in metadata.brokers.keys() {
            nodes.push((*id, self.node(Target::Broker(*id)).await?));
        }
        Ok(nodes)
    }
}

/// Queues an encoded request that expects a response; returns the receiver for it.
fn submit_expecting(
    addr: &str,
    channel: &dyn Channel,
    api: ApiKey,
    version: i16,
    body: bytes::Bytes,
) -> Result<Reply> {
    channel
        .submit(Outbound {
            api,
            version,
            body,
            expect_response: true,
        })?
        .ok_or_else(|| Error::Protocol {
            addr: addr.to_string(),
            detail: "no reply handle for a request that expects one".into(),
        })
}

/// Waits for a response body, at most `timeout`.
async fn await_reply(
    addr: &str,
    channel: &dyn Channel,
    api: ApiKey,
    reply: Reply,
    timeout: Duration,
) -> Result<bytes::Bytes> {
    match tokio::time::timeout(timeout, reply).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Error::Io {
            addr: addr.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "connection closed before the response",
            ),
        }),
        Err(_) => {
            // As Kafka clients do: a request that timed out poisons the connection (its
            // response may still come), so the next request opens a fresh one.
            channel.close();
            Err(Error::Timeout {
                what: format!("{api:?} request to {addr}"),
                after: timeout,
            })
        }
    }
}

/// The request's API key.
fn api_key<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|()| Error::Invalid(format!("unknown API key {}", R::KEY)))
}

/// Encodes a request body at `version`.
fn encode<R: Request>(request: &R, version: i16) -> Result<bytes::Bytes> {
    let api = api_key::<R>()?;
    let mut buf = BytesMut::new();
    request
        .encode(&mut buf, version)
        .map_err(|e| Error::Encode {
            api,
            version,
            source: e.into(),
        })?;
    Ok(buf.freeze())
}

/// A copy of an error for fanning one failure out to several partitions. Sources that cannot
/// be cloned are carried over as their text.
pub(crate) fn clone_error(e: &Error) -> Error {
    match e {
        Error::Kafka {
            code,
            context,
            message,
        } => Error::Kafka {
            code: *code,
            context: context.clone(),
            message: message.clone(),
        },
        Error::Connect { addr, source } => Error::Connect {
            addr: addr.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Io { addr, source } => Error::Io {
            addr: addr.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Timeout { what, after } => Error::Timeout {
            what: what.clone(),
            after: *after,
        },
        Error::Closed(what) => Error::Closed(what),
        Error::Invalid(what) => Error::Invalid(what.clone()),
        other => Error::Protocol {
            addr: String::new(),
            detail: format!("{other}"),
        },
    }
}
