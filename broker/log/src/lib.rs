//! `millrace-log`: Kafka's on-disk partition log, byte-compatible with Kafka's layout.
//!
//! A partition is a directory `<log.dir>/<topic>-<partition>/` holding:
//!
//! ```text
//! 00000000000000000000.log        record batches (magic v2), exactly as produced
//! 00000000000000000000.index      sparse offset index: relative offset u32 BE, position u32 BE
//! 00000000000000000000.timeindex  sparse time index: timestamp i64 BE, relative offset u32 BE
//! 00000000000000000000.snapshot   producer state at that offset (this crate's format, CRC'd)
//! leader-epoch-checkpoint         "0\n<count>\n<epoch> <start offset>\n..."
//! cleaner-offset-checkpoint       "0\n1\n<first dirty offset>\n" (compacted topics only)
//! partition.metadata              written by the broker; files we do not know are left alone
//! ```
//!
//! # Layout of the crate
//!
//! ```text
//! lib.rs          this map; re-exports
//! log.rs          Log: append (leader/follower), read, lookups, roll, retention, flush, close
//! log/recovery.rs Log::open: directory listing, segment checks and crash recovery
//! log/validate.rs produce-request validation from batch headers (Kafka's LogValidator)
//! log/clean.rs    the log's side of compaction: when to clean, snapshot, crash-safe swap
//! cleaner/        compaction (Kafka's LogCleaner): key map, segment groups, record filter;
//!                 cleaner/codec.rs: bounded decompression and re-encoding of kept records
//! segment.rs      one .log file + its indexes: append, scan, recover, truncate
//! index.rs        offset and time indexes (in memory, appended to their files)
//! scan.rs         chunked sequential reading of batches from a segment file
//! producer.rs     idempotent producer state (Kafka's ProducerStateManager) and snapshots
//! epoch.rs        leader-epoch cache and its checkpoint file
//! batch.rs        pub: zero-copy v2 batch header view and batch iterator (used by dump-log)
//! checkpoint.rs   pub: Kafka's text checkpoint files, written atomically
//! config.rs       LogConfig (Kafka topic-config names and defaults)
//! error.rs        LogError, one variant per Kafka error outcome
//! ```
//!
//! # The path of a produce and a fetch
//!
//! Produce: the broker hands [`Log::append_as_leader`] the request's records blob, which the log
//! never modifies. Headers are validated (records are not decoded, except for key checks on
//! compacted topics), offsets are assigned in a copy of each header, and the copies and the
//! untouched records go to the active segment in one positioned vectored write; index entries
//! are added every `index.interval.bytes`.
//!
//! Fetch: [`Log::read`] finds the segment by base offset, the position by the offset index and
//! a short header walk, and returns the stored bytes of whole batches with one positioned read.
//!
//! No memory maps: unsafe code is forbidden, so indexes live in memory and their files are
//! written with plain writes. Durability follows Kafka: `flush.messages` / `flush.ms`, a clean
//! close writes everything, and [`Log::open`] after a crash re-validates batches past the
//! recovery point and truncates a torn tail.

#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
mod config;
mod epoch;
mod error;
mod index;
mod log;
mod producer;
mod scan;
mod segment;
#[cfg(test)]
mod testutil;

pub use crate::{
    cleaner::{clean_shared, CleanStats},
    config::{LogConfig, TimestampType},
    error::LogError,
    log::{AppendInfo, FileSlice, Log, SegmentInfo},
    producer::ProducerEntryInfo,
};
