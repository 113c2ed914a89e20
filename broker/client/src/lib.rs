//! `millrace-client`: a Kafka protocol client — metadata and routing, an admin API, a producer
//! and a fetch-based consumer. It speaks only the Kafka protocol, so it works against any
//! Kafka-compatible broker; Millrace's tools, and later its replication, mirror and operator,
//! are built on it.
//!
//! # Layout
//!
//! ```text
//! lib.rs         this map; re-exports
//! error.rs       Error (the one error type) and KafkaCode: Kafka's name and a remedy per code
//! config.rs      ClientConfig (bootstrap.servers, timeouts, retries), Kafka's setting names
//! versions.rs    the API versions this client implements; negotiation with ApiVersions
//! connection.rs  one TCP connection: pipelined requests, correlation ids, reader/writer tasks;
//!                the Connector/Channel traits the routing layer is written against
//! client.rs      Client: bootstrap, metadata cache, connection pool, leader and coordinator
//!                routing, retries with backoff and metadata refresh
//! metadata.rs    Metadata, TopicPartition, brokers/topics/partitions
//! admin.rs       Admin: topics, partitions, configs, offsets, records deletion, cluster,
//!                groups and committed offsets, leader election, reassignment
//! records.rs     batch encoding (gzip/snappy/lz4/zstd), fetched-batch decoding, murmur2
//! producer.rs    Producer: per-partition batching (linger, size), acks, idempotence, retries
//! consumer.rs    Consumer: assign, seek, poll with pipelined fetches
//! ```
//!
//! # The path of a produce
//! [`Producer::send`] appends the record to its partition's batch; the producer's sender task
//! takes ready batches, asks [`Client`] for each leader's connection ([`Client::node`]: pooled,
//! with versions negotiated on connect), encodes one Produce request per leader and submits it
//! on the connection, which writes it and matches the response by correlation id. The response's
//! base offset completes each record; NOT_LEADER_OR_FOLLOWER refreshes metadata and requeues.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), millrace_client::Error> {
//! use millrace_client::{Admin, Client, ClientConfig, NewTopic, Producer, ProducerConfig, ProducerRecord};
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! Admin::new(client.clone())
//!     .create_topics(&[NewTopic { name: "events".into(), partitions: 3, replication_factor: 1, ..Default::default() }], false)
//!     .await?;
//! let producer = Producer::new(client, ProducerConfig::default()).await?;
//! let delivered = producer.send(ProducerRecord::new("events", "hello").key("k")).await?.await?;
//! println!("written at {}-{}@{}", delivered.topic, delivered.partition, delivered.offset);
//! # Ok(()) }
//! ```

#![deny(clippy::unwrap_used)]

pub mod admin;
pub mod client;
pub mod config;
pub(crate) mod connection;
pub mod consumer;
pub mod error;
pub mod metadata;
pub mod producer;
pub mod records;
pub mod versions;

#[cfg(test)]
mod tests;

pub use admin::{
    Admin, AlterConfigOp, ClusterDescription, CommittedOffset, ConfigEntry, ConfigResource,
    ConfigSource, CreatedTopic, ElectionType, GroupDescription, GroupMember, ListedGroup,
    ListedOffset, NewTopic, OffsetSpec, Reassignment,
};
pub use client::{Client, Node, Target};
pub use config::ClientConfig;
pub use consumer::{Consumer, ConsumerConfig, OffsetReset, SeekTo};
pub use error::{Error, KafkaCode, Result};
pub use kafka_protocol::records::Compression;
pub use metadata::{
    BrokerInfo, Metadata, PartitionMetadata, TopicId, TopicMetadata, TopicPartition,
};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};
pub use records::{ConsumerRecord, Header, TimestampKind};
