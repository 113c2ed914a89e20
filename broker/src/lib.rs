//! Millrace: a Kafka-compatible broker on a durable segmented log.
//!
//! # Layout
//! - [`config`]: every configuration key, under Kafka's names, with defaults and validation.
//! - [`protocol`]: which APIs and versions are served; request framing (no I/O).
//! - [`server`]: listeners, connections, the HTTP admin port, shutdown.
//! - [`handlers`]: one module per Kafka API, from decoded request to response.
//! - [`broker`]: the broker's state — topics, partitions, producer ids — and its operations.
//! - [`partition`]: one hosted partition: its log and its append wake-up.
//! - [`cluster`]: the Raft metadata quorum: records and image, storage, transport, the active
//!   controller, placement, registration and heartbeats.
//! - [`metadata`]: Kafka's text form of UUIDs.
//! - [`coordinator`]: the group coordinator (consumer groups, committed offsets in
//!   `__consumer_offsets`).
//! - [`metrics`]: Prometheus metrics named after Kafka's JMX metrics.
//! - [`kube_init`]: `millrace kube-init`, a broker pod's init step (its properties file from the
//!   operator's ConfigMap, its rack from its node's label).
//! - Storage is the `millrace-log` crate (`broker/log`): segments, indexes, recovery, retention.
//!
//! # The path of a produce request
//! `server::connection` reads a length-prefixed frame (refusing lengths over
//! `socket.request.max.bytes` before allocating), checks the API key and version against
//! [`protocol::SUPPORTED`], decodes the header, and hands the body to [`handlers::dispatch`],
//! which decodes it with the `kafka-protocol` crate and calls `handlers::produce`. That resolves
//! each partition, and `millrace_log::Log::append_as_leader` validates the batches (sizes, CRC32C,
//! producer sequence), assigns offsets in copies of the batch headers and writes those and the
//! request's records to the segment without copying the records; the handler moves the high
//! watermark, wakes waiting fetches and answers. The response is encoded and queued to the
//! connection's writer, in request order.

pub mod broker;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod handlers;
pub mod kube_init;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod protocol;
pub mod server;
pub mod tools;
