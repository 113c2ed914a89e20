//! The Raft transport: openraft's RPCs carried over the controller listener's gRPC service.
//!
//! Each RPC's request and result (`Result<Response, RaftError>`) travel as serde-JSON in a
//! [`proto::Payload`]: a remote Raft error comes back as data and is handed to openraft as a
//! `RemoteError`, while a transport failure (refused, reset, deadline) becomes `Unreachable`, so
//! openraft backs off from a dead peer instead of hammering it.

use std::time::Duration;

use openraft::{
    error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable},
    network::{RPCOption, RaftNetwork, RaftNetworkFactory},
    raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    },
    BasicNode,
};
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::{Channel, Endpoint};

use super::{NodeId, Raft, TypeConfig};

/// The generated gRPC code of `proto/controller.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("millrace.controller");
}

use proto::{raft_client::RaftClient, Payload};

/// Encodes a value as a payload.
pub fn encode<T: Serialize>(value: &T) -> Result<Payload, tonic::Status> {
    serde_json::to_vec(value)
        .map(|json| Payload { json })
        .map_err(|e| tonic::Status::internal(format!("encoding failed: {e}")))
}

/// Decodes a payload.
pub fn decode<T: DeserializeOwned>(payload: &Payload) -> Result<T, tonic::Status> {
    serde_json::from_slice(&payload.json)
        .map_err(|e| tonic::Status::invalid_argument(format!("undecodable payload: {e}")))
}

/// A lazily connecting channel to `addr` (`host:port`) with the given per-call deadline.
pub fn channel(addr: &str, timeout: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// Makes one [`Peer`] per target node.
#[derive(Debug, Clone)]
pub struct Network {
    /// Deadline of one RPC (`controller.quorum.request.timeout.ms`).
    pub timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            client: channel(&node.addr, self.timeout).map(RaftClient::new).ok(),
            addr: node.addr.clone(),
        }
    }
}

/// The connection to one other node.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    addr: String,
    /// `None` when the address does not even parse: every call is then unreachable.
    client: Option<RaftClient<Channel>>,
}

/// A transport-level failure.
#[derive(Debug, thiserror::Error)]
#[error("controller {target} at {addr}: {message}")]
struct TransportError {
    target: NodeId,
    addr: String,
    message: String,
}

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        rpc: &Req,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |message: String| {
            RPCError::Unreachable(Unreachable::new(&TransportError {
                target: self.target,
                addr: self.addr.clone(),
                message,
            }))
        };
        let Some(client) = self.client.as_mut() else {
            return Err(unreachable("the address is not a valid host:port".into()));
        };
        let payload = encode(rpc).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        let reply = match method {
            Method::AppendEntries => client.append_entries(payload).await,
            Method::Vote => client.vote(payload).await,
            Method::InstallSnapshot => client.install_snapshot(payload).await,
        }
        .map_err(|s| unreachable(s.message().to_string()))?;
        let result: Result<Resp, E> =
            decode(reply.get_ref()).map_err(|s| RPCError::Network(NetworkError::new(&s)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Method::AppendEntries, &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Method::InstallSnapshot, &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Method::Vote, &rpc).await
    }
}

/// The server side of the Raft service: hands each RPC to the local Raft node.
#[derive(Clone)]
pub struct RaftService {
    /// The local node.
    pub raft: Raft,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

#[tonic::async_trait]
impl proto::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.raft.append_entries(rpc).await).map(tonic::Response::new)
    }

    async fn vote(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = decode(request.get_ref())?;
        encode(&self.raft.vote(rpc).await).map(tonic::Response::new)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.raft.install_snapshot(rpc).await).map(tonic::Response::new)
    }
}
