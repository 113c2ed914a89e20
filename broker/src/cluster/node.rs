//! This process's place in the cluster: its Raft node (voter or learner), the controller
//! listener, the active-controller duties when it leads, and — for a broker — registration
//! and heartbeats.
//!
//! # Start-up
//! 1. Open the metadata log in `<first log dir>/__cluster_metadata-0` and start the Raft node.
//! 2. A voter whose log is empty initializes the quorum with the static voters of
//!    `controller.quorum.voters` (every voter does the same, with the same membership, which
//!    openraft allows); the single-node default is a quorum of one that elects itself.
//! 3. Serve the controller listener (gRPC), if there is one.
//! 4. A broker registers with the active controller (fenced), then heartbeats; the controller
//!    unfences it once its heartbeats report that it has applied its own registration.
//!
//! # Requests to the controller
//! [`ClusterNode::submit`] sends a [`ControllerRequest`] to the Raft leader — in-process when
//! this node leads, over gRPC otherwise — and retries on NotController until
//! `controller.quorum.request.timeout.ms` × 5 has passed.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use openraft::BasicNode;
use parking_lot::Mutex;
use tokio::sync::watch;
use tonic::transport::Channel;
use uuid::Uuid;

use super::{
    controller::{Controller, ControllerError, ControllerReply, ControllerRequest, Envelope},
    image::Registration,
    raft::{
        network::{self, proto, Network, RaftService},
        store::{self, SharedImage},
        NodeId, Raft,
    },
};
use crate::config::BrokerConfig;

/// Name of the metadata log's directory in the first log dir (Kafka's KRaft name).
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// This process in the cluster.
pub struct ClusterNode {
    /// `node.id`.
    pub node_id: i32,
    raft: Raft,
    /// The applied metadata image.
    pub image: Arc<SharedImage>,
    controller: Option<Arc<Controller>>,
    request_timeout: Duration,
    heartbeat_interval: Duration,
    /// `controller.quorum.voters`: where to ask before this node has heard from a leader (a
    /// broker-only node learns the log only after it has registered through one of them).
    voters: BTreeMap<NodeId, String>,
    /// gRPC clients of other controllers, by address.
    clients: Mutex<BTreeMap<String, proto::controller_client::ControllerClient<Channel>>>,
    /// This process's broker incarnation.
    pub incarnation_id: Uuid,
    /// The broker epoch after registration (0: not registered).
    epoch: AtomicU64,
    /// Set once the broker sent its controlled shutdown.
    stopping: AtomicBool,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

struct ControllerService {
    node: Arc<ClusterNode>,
}

#[tonic::async_trait]
impl proto::controller_server::Controller for ControllerService {
    async fn submit(
        &self,
        request: tonic::Request<proto::Payload>,
    ) -> Result<tonic::Response<proto::Payload>, tonic::Status> {
        let req: ControllerRequest = network::decode(request.get_ref())?;
        let envelope = match &self.node.controller {
            Some(c) => c.handle(req).await,
            None => Envelope {
                reply: ControllerReply::NotController {
                    leader: self.node.leader(),
                },
                index: 0,
            },
        };
        network::encode(&envelope).map(tonic::Response::new)
    }
}

impl ClusterNode {
    /// Opens the metadata log, starts Raft and the controller listener (see the module docs).
    pub async fn start(
        config: &BrokerConfig,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<ClusterNode>> {
        let c = &config.cluster;
        let dir = config.log_dirs[0].join(METADATA_DIR);
        let (log, sm, image) = store::open(&dir)
            .with_context(|| format!("failed to open the metadata log in {}", dir.display()))?;
        let election = c.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "millrace".into(),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            heartbeat_interval: (election / 4).max(10),
            install_snapshot_timeout: c.request_timeout.as_millis() as u64 * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(c.snapshot_interval),
            // Entries the snapshot covers are dropped at once: a lagging node gets the snapshot.
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        }
        .validate()
        .context("invalid Raft timing settings")?;
        let node_id = config.node_id;
        let raft = Raft::new(
            node_id as NodeId,
            Arc::new(raft_config),
            Network {
                timeout: c.request_timeout,
            },
            log,
            sm,
        )
        .await
        .context("failed to start the Raft node")?;

        if c.controller && !raft.is_initialized().await.unwrap_or(true) {
            let members: BTreeMap<NodeId, BasicNode> = if c.is_standalone() {
                BTreeMap::from([(node_id as NodeId, BasicNode::new(""))])
            } else {
                c.voters
                    .iter()
                    .map(|(id, addr)| (*id as NodeId, BasicNode::new(addr)))
                    .collect()
            };
            if let Err(e) = raft.initialize(members).await {
                // Another voter's initialization reached us first: that is the same quorum.
                tracing::debug!(error = %e, "quorum already initialized");
            }
        }
        let controller = c.controller.then(|| {
            Arc::new(Controller::new(
                node_id as NodeId,
                raft.clone(),
                image.clone(),
                c.session_timeout,
                c.cluster_id.clone(),
            ))
        });
        let node = Arc::new(ClusterNode {
            node_id,
            raft: raft.clone(),
            image,
            controller: controller.clone(),
            request_timeout: c.request_timeout,
            heartbeat_interval: c.heartbeat_interval,
            voters: c
                .voters
                .iter()
                .map(|(id, addr)| (*id as NodeId, addr.clone()))
                .collect(),
            clients: Mutex::new(BTreeMap::new()),
            incarnation_id: Uuid::new_v4(),
            epoch: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        if let Some(c) = controller {
            tokio::spawn(c.run(shutdown.clone()));
        }
        if let Some(addr) = &c.controller_listener {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("failed to bind the controller listener {addr}"))?;
            tracing::info!(address = %addr, "serving the controller listener (Raft, broker registration)");
            let incoming = tokio_stream_from(listener);
            let mut stop = shutdown.clone();
            let service = ControllerService { node: node.clone() };
            tokio::spawn(async move {
                let r = tonic::transport::Server::builder()
                    .add_service(proto::raft_server::RaftServer::new(RaftService { raft }))
                    .add_service(proto::controller_server::ControllerServer::new(service))
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stop.changed().await;
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "controller listener failed");
                }
            });
        }
        Ok(node)
    }

    /// The Raft leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this node is the active controller.
    pub fn is_active_controller(&self) -> bool {
        self.leader() == Some(self.node_id as NodeId)
    }

    /// The broker epoch (0 until registered).
    pub fn broker_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn leader_address(&self, leader: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
            .or_else(|| self.voters.get(&leader).cloned())
    }

    /// Sends `request` to the active controller (see the module docs).
    pub async fn submit(&self, request: ControllerRequest) -> Result<Envelope, ControllerError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout * 5;
        let mut metrics = self.raft.metrics();
        // The leader named by a NotController answer, and the next voter to ask when no
        // leader is known at all.
        let mut hint: Option<NodeId> = None;
        let mut next_voter = self.voters.keys().copied().cycle();
        loop {
            let leader = self.leader().or(hint.take()).or_else(|| {
                (!self.voters.is_empty())
                    .then(|| next_voter.next())
                    .flatten()
            });
            // Bounded: a leader cut off from its quorum cannot commit, and must not hang us.
            let attempt = tokio::time::timeout(self.request_timeout * 2, async {
                match leader {
                    Some(l) if l == self.node_id as NodeId => match &self.controller {
                        Some(c) => Some(c.handle(request.clone()).await),
                        None => None,
                    },
                    Some(l) => match self.leader_address(l) {
                        Some(addr) => self.remote_submit(&addr, &request).await,
                        None => None,
                    },
                    None => None,
                }
            })
            .await
            .ok()
            .flatten();
            match attempt {
                Some(Envelope {
                    reply: ControllerReply::NotController { leader },
                    ..
                }) => hint = leader,
                None => {}
                Some(envelope) => return Ok(envelope),
            }
            // Wait for a leadership change, or retry a little later.
            let wait = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                _ = metrics.changed() => {}
                _ = wait => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ControllerError::Unavailable(
                    "no active controller answered in time (is a majority of controller.quorum.voters up?)".into(),
                ));
            }
        }
    }

    async fn remote_submit(&self, addr: &str, request: &ControllerRequest) -> Option<Envelope> {
        let client = {
            let mut clients = self.clients.lock();
            match clients.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let ch = network::channel(addr, self.request_timeout).ok()?;
                    let c = proto::controller_client::ControllerClient::new(ch);
                    clients.insert(addr.to_string(), c.clone());
                    c
                }
            }
        };
        let mut client = client;
        let payload = network::encode(request).ok()?;
        match client.submit(payload).await {
            Ok(reply) => network::decode(reply.get_ref()).ok(),
            Err(e) => {
                tracing::debug!(controller = addr, error = %e, "controller request failed");
                None
            }
        }
    }

    /// Waits until the local image has applied `index`; false after `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.image.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The broker's side until `shutdown`: register, then heartbeat every
    /// `broker.heartbeat.interval.ms` with the index `reconciled` reports; register again when
    /// the controller no longer knows this incarnation. The server sends the controlled
    /// shutdown ([`ClusterNode::controlled_shutdown`]) once connections have drained.
    pub async fn run_broker(
        self: Arc<Self>,
        registration: Registration,
        reconciled: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut interval = tokio::time::interval(self.heartbeat_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => break,
            }
            let epoch = self.broker_epoch();
            let request = if epoch == 0 {
                ControllerRequest::RegisterBroker(registration.clone())
            } else {
                ControllerRequest::Heartbeat {
                    broker_id: self.node_id,
                    epoch,
                    applied_index: *reconciled.borrow(),
                }
            };
            match self.submit(request).await {
                Ok(Envelope {
                    reply: ControllerReply::Registered { epoch },
                    ..
                }) => {
                    tracing::info!(
                        broker = self.node_id,
                        epoch,
                        "registered with the controller"
                    );
                    self.epoch.store(epoch, Ordering::SeqCst);
                    // The controller unfences a broker that has applied its own registration:
                    // heartbeat as soon as it has.
                    let mut r = reconciled.clone();
                    let _ =
                        tokio::time::timeout(self.heartbeat_interval, r.wait_for(|i| *i >= epoch))
                            .await;
                    interval.reset_immediately();
                }
                Ok(Envelope {
                    reply:
                        ControllerReply::Heartbeat {
                            reregister: true, ..
                        },
                    ..
                }) => {
                    tracing::warn!(
                        broker = self.node_id,
                        "the controller does not know this registration; registering again"
                    );
                    self.epoch.store(0, Ordering::SeqCst);
                    interval.reset_immediately();
                }
                Ok(Envelope {
                    reply: ControllerReply::Failed(e),
                    ..
                }) => tracing::error!(broker = self.node_id, error = %e, "registration refused"),
                Ok(_) => {}
                Err(e) => tracing::warn!(broker = self.node_id, error = %e, "heartbeat failed"),
            }
        }
    }

    /// Asks the controller to fence this broker now (Kafka's controlled shutdown), so clients
    /// stop being routed here at once; bounded by the request timeout.
    pub async fn controlled_shutdown(&self) {
        let epoch = self.broker_epoch();
        if epoch == 0 || self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let r = tokio::time::timeout(
            self.request_timeout * 2,
            self.submit(ControllerRequest::ControlledShutdown {
                broker_id: self.node_id,
                epoch,
            }),
        )
        .await;
        tracing::info!(fenced = matches!(r, Ok(Ok(_))), "controlled shutdown");
    }

    /// Stops Raft (after the broker side is done).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// A stream of accepted connections for tonic.
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}
