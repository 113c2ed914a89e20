//! One TCP connection to one broker, with pipelined requests matched by correlation id.
//!
//! # Expected flow
//! 1. [`TcpConnector::connect`] opens the socket (with a deadline) and starts two tasks: a
//!    writer that drains a queue of encoded frames into the socket, coalescing whatever is queued,
//!    and a reader that reads response frames and hands each to the request waiting for its
//!    correlation id.
//! 2. [`Channel::submit`] assigns the next correlation id, registers the waiter (unless the
//!    request expects no response, as a Produce with acks=0), and queues the frame. It does not
//!    wait for the response: any number of requests may be in flight, and Kafka answers them in
//!    order on one connection.
//! 3. The caller awaits the returned receiver, with its own deadline.
//!
//! # Errors and cancellation
//! A read or write failure closes the connection and fails every waiter with [`Error::Io`]; the
//! pool opens a new connection for the next request. Dropping a receiver is safe: the response,
//! when it comes, finds no waiter and is discarded. Frames are written by the writer task alone,
//! so a caller that is cancelled never leaves half a frame on the wire.
//!
//! The traits [`Connector`] and [`Channel`] are the seam the routing layer is written against;
//! the crate's unit tests put scripted brokers behind them to inject errors.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicI32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable, StrBytes},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufWriter},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
    sync::{mpsc, oneshot, watch},
};

use crate::error::{Error, Result};

/// A boxed, sendable future (the traits below are used as trait objects).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The response body (after its header) of one request, delivered when it arrives.
pub(crate) type Reply = oneshot::Receiver<Result<Bytes>>;

/// An encoded request body and what the connection needs to frame and match it.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) api: ApiKey,
    pub(crate) version: i16,
    pub(crate) body: Bytes,
    /// False only for Produce with acks=0, which Kafka never answers.
    pub(crate) expect_response: bool,
}

/// A connection to one broker.
pub(crate) trait Channel: Send + Sync + fmt::Debug {
    /// Queues a request; returns the receiver for its response (`None` if none is expected).
    fn submit(&self, request: Outbound) -> Result<Option<Reply>>;
    /// Whether the connection has failed or been closed (the pool then opens a new one).
    fn is_closed(&self) -> bool;
    /// Closes the connection, failing every request in flight.
    fn close(&self);
}

/// Opens connections.
pub(crate) trait Connector: Send + Sync + fmt::Debug {
    /// Connects to `addr` (`host:port`).
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<Arc<dyn Channel>>>;
}

/// Opens real TCP connections.
#[derive(Debug, Clone)]
pub(crate) struct TcpConnector {
    pub(crate) client_id: String,
    pub(crate) connect_timeout: Duration,
    /// Responses larger than this close the connection instead of being buffered.
    pub(crate) max_response_bytes: usize,
}

impl Connector for TcpConnector {
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<Arc<dyn Channel>>> {
        Box::pin(async move {
            let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| Error::Connect {
                    addr: addr.to_string(),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {:?}", self.connect_timeout),
                    ),
                })?
                .map_err(|source| Error::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
            // Requests are small and latency-sensitive; Kafka clients disable Nagle too.
            stream.set_nodelay(true).map_err(|source| Error::Connect {
                addr: addr.to_string(),
                source,
            })?;
            let channel: Arc<dyn Channel> = TcpChannel::start(stream, addr, self);
            Ok(channel)
        })
    }
}

/// Where a response goes: its waiter, and how to read its header.
#[derive(Debug)]
struct Waiter {
    api: ApiKey,
    version: i16,
    reply: oneshot::Sender<Result<Bytes>>,
}

#[derive(Debug)]
struct Shared {
    addr: String,
    client_id: StrBytes,
    next_correlation_id: AtomicI32,
    closed: AtomicBool,
    /// Set once, when the connection closes: stops the reader and writer tasks, which shut the
    /// socket down, so the broker sees the connection end at once.
    stop: watch::Sender<bool>,
    /// Invariant: holds exactly the submitted requests whose responses have not been read yet
    /// (and that expect one), until the connection fails and drains it.
    waiters: Mutex<HashMap<i32, Waiter>>,
}

impl Shared {
    /// Marks the connection closed and fails every waiter with `error`'s kind and text.
    fn fail_all(&self, error: &io::Error) {
        self.closed.store(true, Ordering::Release);
        self.stop.send_replace(true);
        let drained: Vec<Waiter> = match self.waiters.lock() {
            Ok(mut waiters) => waiters.drain().map(|(_, w)| w).collect(),
            Err(poisoned) => poisoned.into_inner().drain().map(|(_, w)| w).collect(),
        };
        for waiter in drained {
            let _ = waiter.reply.send(Err(Error::Io {
                addr: self.addr.clone(),
                source: io::Error::new(error.kind(), error.to_string()),
            }));
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Waiter>> {
        // A panic while holding this lock cannot leave the map inconsistent: each operation on
        // it is a single insert or remove.
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A TCP connection: the [`Channel`] the product uses.
#[derive(Debug)]
pub(crate) struct TcpChannel {
    shared: Arc<Shared>,
    frames: mpsc::UnboundedSender<Bytes>,
}

impl TcpChannel {
    fn start(stream: TcpStream, addr: &str, config: &TcpConnector) -> Arc<TcpChannel> {
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            next_correlation_id: AtomicI32::new(1),
            closed: AtomicBool::new(false),
            stop: watch::channel(false).0,
            waiters: Mutex::new(HashMap::new()),
        });
        let (frames, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(write, queue, Arc::clone(&shared)));
        tokio::spawn(read_loop(
            read,
            Arc::clone(&shared),
            config.max_response_bytes,
        ));
        Arc::new(TcpChannel { shared, frames })
    }

    fn frame(&self, request: &Outbound, correlation_id: i32) -> Result<Bytes> {
        let header = RequestHeader::default()
            .with_request_api_key(request.api as i16)
            .with_request_api_version(request.version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.shared.client_id.clone()));
        let header_version = request.api.request_header_version(request.version);
        let encode_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Encode {
            api: request.api,
            version: request.version,
            source,
        };
        let header_size = header
            .compute_size(header_version)
            .map_err(|e| encode_error(e.into()))?;
        let size = header_size + request.body.len();
        let length = i32::try_from(size).map_err(|e| encode_error(e.into()))?;
        let mut frame = BytesMut::with_capacity(4 + size);
        frame.put_i32(length);
        header
            .encode(&mut frame, header_version)
            .map_err(|e| encode_error(e.into()))?;
        frame.extend_from_slice(&request.body);
        Ok(frame.freeze())
    }
}

impl Channel for TcpChannel {
    fn submit(&self, request: Outbound) -> Result<Option<Reply>> {
        if self.is_closed() {
            return Err(Error::Io {
                addr: self.shared.addr.clone(),
                source: io::Error::new(io::ErrorKind::NotConnected, "connection is closed"),
            });
        }
        let correlation_id = self
            .shared
            .next_correlation_id
            .fetch_add(1, Ordering::Relaxed);
        let frame = self.frame(&request, correlation_id)?;
        let reply = if request.expect_response {
            let (tx, rx) = oneshot::channel();
            // Registered before the frame is queued, so the response cannot overtake it.
            self.shared.waiters().insert(
                correlation_id,
                Waiter {
                    api: request.api,
                    version: request.version,
                    reply: tx,
                },
            );
            Some(rx)
        } else {
            None
        };
        if self.frames.send(frame).is_err() {
            self.shared.waiters().remove(&correlation_id);
            return Err(Error::Io {
                addr: self.shared.addr.clone(),
                source: io::Error::new(io::ErrorKind::BrokenPipe, "connection writer stopped"),
            });
        }
        Ok(reply)
    }

    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.frames.is_closed()
    }

    fn close(&self) {
        self.shared.fail_all(&io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection closed by the client",
        ));
    }
}

impl Drop for TcpChannel {
    fn drop(&mut self) {
        self.shared.fail_all(&io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped by the client",
        ));
    }
}

async fn write_loop(
    write: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut out = BufWriter::with_capacity(256 * 1024, write);
    let mut stop = shared.stop.subscribe();
    loop {
        let frame = tokio::select! {
            frame = queue.recv() => frame,
            _ = stop.wait_for(|stopped| *stopped) => None,
        };
        let Some(frame) = frame else {
            break;
        };
        let mut result = out.write_all(&frame).await;
        // Coalesce whatever else is already queued into the same flush.
        while result.is_ok() {
            match queue.try_recv() {
                Ok(next) => result = out.write_all(&next).await,
                Err(_) => break,
            }
        }
        if let Err(e) = match result {
            Ok(()) => out.flush().await,
            Err(e) => Err(e),
        } {
            tracing::debug!(addr = %shared.addr, error = %e, "write failed; closing connection");
            shared.fail_all(&e);
            break;
        }
    }
    let _ = out.shutdown().await;
}

async fn read_loop(mut read: OwnedReadHalf, shared: Arc<Shared>, max_response_bytes: usize) {
    let mut stop = shared.stop.subscribe();
    let error = loop {
        // Cancelling a half-read frame is fine here: the connection is being thrown away.
        let frame = tokio::select! {
            frame = read_frame(&mut read, max_response_bytes) => frame,
            _ = stop.wait_for(|stopped| *stopped) => {
                break io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed");
            }
        };
        match frame {
            Ok(frame) => {
                if let Err(e) = deliver(&shared, frame) {
                    break e;
                }
            }
            Err(e) => break e,
        }
    };
    if !shared.closed.load(Ordering::Acquire) {
        tracing::debug!(addr = %shared.addr, error = %error, "connection lost");
    }
    shared.fail_all(&error);
}

async fn read_frame(read: &mut OwnedReadHalf, max: usize) -> io::Result<Bytes> {
    let length = read.read_i32().await?;
    let length = usize::try_from(length)
        .ok()
        .filter(|&l| l >= 4 && l <= max)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response frame length {length} is outside 4..={max}"),
            )
        })?;
    let mut frame = BytesMut::zeroed(length);
    read.read_exact(&mut frame).await?;
    Ok(frame.freeze())
}

/// Hands a response frame to its waiter. A frame nobody waits for (its caller gave up) is
/// dropped; a frame that cannot be read closes the connection.
fn deliver(shared: &Shared, mut frame: Bytes) -> io::Result<()> {
    let correlation_id = (&frame[..4]).get_i32();
    let Some(waiter) = shared.waiters().remove(&correlation_id) else {
        tracing::debug!(addr = %shared.addr, correlation_id, "dropping a response nobody waits for");
        return Ok(());
    };
    let header_version = waiter.api.response_header_version(waiter.version);
    match ResponseHeader::decode(&mut frame, header_version) {
        Ok(_) => {
            let _ = waiter.reply.send(Ok(frame));
            Ok(())
        }
        Err(e) => {
            let _ = waiter.reply.send(Err(Error::Decode {
                addr: shared.addr.clone(),
                api: waiter.api,
                version: waiter.version,
                source: e.into(),
            }));
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "undecodable response header",
            ))
        }
    }
}
