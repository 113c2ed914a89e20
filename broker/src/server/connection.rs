//! One client connection.
//!
//! Three tasks share a connection: a reader that frames requests, the request loop that handles
//! them one at a time, and a writer. Handling one at a time is Kafka's rule (a connection is
//! muted while its request is in flight), and it is what keeps an idempotent producer's pipelined
//! batches in sequence; reading ahead and writing behind still overlap the network with the work.
//!
//! A frame that cannot be understood — a length over `socket.request.max.bytes`, an unknown API
//! key, an unsupported version, a body that does not decode — closes this connection only, after
//! a log line that says why. An ApiVersions request of a version newer than served is answered,
//! as Kafka answers it, with a v0 response carrying UNSUPPORTED_VERSION.

use std::{net::SocketAddr, panic::AssertUnwindSafe, sync::Arc, time::Instant};

use futures::FutureExt;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use millrace_log::FileSlice;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader, Interest},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
    sync::{mpsc, watch},
};

use crate::{
    broker::Broker,
    handlers,
    protocol::{self, FrameError, Piece, Response},
};

/// Requests read ahead of the one being handled.
const READ_AHEAD: usize = 8;
/// Responses encoded but not yet written.
const WRITE_BEHIND: usize = 8;
/// Largest single growth of a request buffer while its frame arrives.
const READ_CHUNK: usize = 1 << 20;
/// Largest buffer given to a frame before its bytes arrive: room for the usual largest request,
/// a produce of about 1 MiB (`batch.size`/`max.request.size` at their usual limits, plus the
/// request's own header), so that it is read into one buffer that never moves. Larger frames
/// grow by [`READ_CHUNK`] as they arrive; growing copies what was read.
const FIRST_BUFFER: usize = 4 << 20;

/// Serves a connection accepted on the listener called `listener` until the client closes it,
/// it misbehaves, it idles out, or shutdown.
pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    broker.metrics.connections.inc();
    let (rd, wr) = stream.into_split();
    let (req_tx, mut req_rx) = mpsc::channel::<Bytes>(READ_AHEAD);
    let (resp_tx, resp_rx) = mpsc::channel::<Response>(WRITE_BEHIND);

    let reader = tokio::spawn(read_frames(
        broker.clone(),
        rd,
        peer,
        req_tx,
        shutdown.clone(),
    ));
    let writer = tokio::spawn(write_frames(wr, resp_rx));

    while let Some(frame) = req_rx.recv().await {
        // A panic in a handler is a bug, but it must cost this connection only, not the broker.
        let handled = AssertUnwindSafe(handle_frame(&broker, frame, peer, &listener))
            .catch_unwind()
            .await;
        let Ok(handled) = handled else {
            tracing::error!(%peer, "request handler panicked; closing connection");
            broker
                .metrics
                .errors
                .with_label_values(&["panic", "CLOSED"])
                .inc();
            break;
        };
        match handled {
            Ok(Some(resp)) => {
                if resp_tx.send(resp).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %handlers::error::message(&e), "closing connection");
                broker
                    .metrics
                    .errors
                    .with_label_values(&[frame_error_api(&e), "CLOSED"])
                    .inc();
                break;
            }
        }
    }
    // Stop reading, let the writer flush what was answered, then close.
    reader.abort();
    drop(resp_tx);
    let _ = writer.await;
    broker.metrics.connections.dec();
}

fn frame_error_api(e: &FrameError) -> &'static str {
    match e {
        FrameError::Malformed { .. } => "malformed",
        FrameError::UnknownApiKey(_) => "unknown_api",
        FrameError::UnsupportedVersion { .. } => "unsupported_version",
        FrameError::Unimplemented(_) => "unimplemented",
        FrameError::TooShort(_) => "too_short",
        FrameError::Encode { .. } => "encode",
    }
}

/// Reads length-prefixed frames and passes them on. Ends the connection on EOF, a length
/// outside `0..=socket.request.max.bytes`, idle timeout or shutdown.
async fn read_frames(
    broker: Arc<Broker>,
    rd: OwnedReadHalf,
    peer: SocketAddr,
    tx: mpsc::Sender<Bytes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let max = broker.config.socket_request_max_bytes;
    let idle = broker.config.connections_max_idle;
    loop {
        let len = tokio::select! {
            r = tokio::time::timeout(idle, rd.read_i32()) => match r {
                Ok(Ok(len)) => len,
                Ok(Err(_)) => return, // closed by the client
                Err(_) => {
                    tracing::debug!(%peer, "closing idle connection");
                    return;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(len) = usize::try_from(len) else {
            tracing::warn!(%peer, len, "closing connection: negative frame length");
            return;
        };
        if len > max {
            // Refuse before allocating: this is what bounds a hostile length prefix.
            tracing::warn!(%peer, len, max, "closing connection: frame larger than socket.request.max.bytes");
            broker
                .metrics
                .errors
                .with_label_values(&["frame", "TOO_LARGE"])
                .inc();
            return;
        }
        // Past FIRST_BUFFER, grow the buffer as bytes arrive rather than trusting the prefix
        // with memory up front.
        let mut buf = BytesMut::with_capacity(len.min(FIRST_BUFFER));
        while buf.len() < len {
            let want = len - buf.len();
            buf.reserve(want.min(READ_CHUNK));
            match (&mut rd).take(want as u64).read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    tracing::debug!(%peer, len, got = buf.len(), "connection closed mid-frame");
                    return;
                }
                Ok(_) => {}
            }
        }
        if tx.send(buf.freeze()).await.is_err() {
            return;
        }
    }
}

async fn write_frames(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Response>) {
    while let Some(frame) = rx.recv().await {
        for piece in frame.pieces() {
            let written = match piece {
                Piece::Bytes(b) => wr.write_all(b).await,
                Piece::File(f) => send_file(&wr, f).await,
            };
            if let Err(e) = written {
                tracing::debug!(error = %e, "closing connection: write failed");
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes whole batches from a segment file to the socket with `sendfile`: the records go from
/// the page cache to the socket without passing through the broker's memory.
async fn send_file(wr: &OwnedWriteHalf, f: &FileSlice) -> std::io::Result<()> {
    let sock: &TcpStream = wr.as_ref();
    let mut offset = i64::try_from(f.position).map_err(std::io::Error::other)?;
    let end = offset + i64::try_from(f.len).map_err(std::io::Error::other)?;
    while offset < end {
        sock.writable().await?;
        let left = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let sent = sock.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile(sock, &f.file, Some(&mut offset), left)
                .map_err(std::io::Error::from)
        });
        match sent {
            // The file ended early: the segment was truncated under this fetch. The frame
            // cannot be completed, so the connection ends and the client fetches again.
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "a segment shrank while it was being sent",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Turns one frame into its response (or none, for acks=0).
async fn handle_frame(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    peer: SocketAddr,
    listener: &str,
) -> Result<Option<Response>, FrameError> {
    let p = protocol::prelude(&frame)?;
    let key = ApiKey::try_from(p.api_key).map_err(|()| FrameError::UnknownApiKey(p.api_key))?;
    let Some(s) = protocol::supported(key) else {
        return Err(FrameError::Unimplemented(key));
    };
    if p.api_version < s.min || p.api_version > s.max {
        if key == ApiKey::ApiVersions && p.api_version > s.max {
            return handlers::unsupported_version_response(p.correlation_id)
                .map(|b| Some(b.into()))
                .map_err(|source| FrameError::Encode {
                    key,
                    version: 0,
                    source,
                });
        }
        return Err(FrameError::UnsupportedVersion {
            key,
            version: p.api_version,
            min: s.min,
            max: s.max,
        });
    }
    let started = Instant::now();
    let header = protocol::decode_header(key, p.api_version, &mut frame)?;
    let name = api_name(key);
    let result = handlers::dispatch(
        broker,
        key,
        p.api_version,
        header,
        frame,
        Some(peer),
        listener,
    )
    .await;
    broker.metrics.requests.with_label_values(&[name]).inc();
    broker
        .metrics
        .request_seconds
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Kafka's request name for metrics labels.
fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        _ => "Other",
    }
}
