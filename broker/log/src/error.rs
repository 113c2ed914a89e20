//! The one error type of the storage layer.

use std::{io, path::PathBuf};

/// Everything a [`Log`](crate::Log) operation can fail with.
///
/// Each variant is one outcome the broker maps to one Kafka error code, so the broker never has to
/// look inside a message string. Messages describe this layer only; an underlying cause sits in
/// `#[source]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A batch failed a structural check: sizes, magic, CRC, record count vs. offsets, compression
    /// codec. Kafka: `CORRUPT_MESSAGE`.
    #[error("corrupt record batch: {reason}")]
    CorruptRecord {
        /// What was wrong, for the broker's log line.
        reason: String,
    },
    /// One batch is larger than `max.message.bytes`. Kafka: `MESSAGE_TOO_LARGE`.
    #[error("record batch of {size} bytes exceeds max.message.bytes ({max})")]
    RecordTooLarge {
        /// Size of the offending batch in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A `CreateTime` timestamp is outside the accepted window around the broker's clock.
    /// Kafka: `INVALID_TIMESTAMP`.
    #[error("invalid timestamp {timestamp}: {reason}")]
    InvalidTimestamp {
        /// The offending timestamp (ms since the epoch).
        timestamp: i64,
        /// Which bound it broke.
        reason: String,
    },
    /// A batch is well formed but not acceptable here, e.g. a null key on a compacted topic.
    /// Kafka: `INVALID_RECORD`.
    #[error("invalid record: {reason}")]
    InvalidRecord {
        /// Why the record was refused.
        reason: String,
    },
    /// The requested offset is outside the range this operation accepts.
    /// Kafka: `OFFSET_OUT_OF_RANGE`.
    ///
    /// `log_end` is the exclusive upper bound that applied: the log end offset for reads, the
    /// high watermark for `delete_records_before`.
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The offset that was asked for.
        requested: i64,
        /// The log start offset at the time.
        log_start: i64,
        /// The upper bound that applied (see above).
        log_end: i64,
    },
    /// An idempotent batch does not continue its producer's sequence.
    /// Kafka: `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    #[error("producer {producer_id}: expected sequence {expected}, received {received}")]
    OutOfOrderSequence {
        /// The producer id of the batch.
        producer_id: i64,
        /// The first sequence number this log would have accepted.
        expected: i32,
        /// The batch's base sequence.
        received: i32,
    },
    /// An idempotent batch carries an epoch older than the producer's current one (a zombie).
    /// Kafka: `INVALID_PRODUCER_EPOCH`.
    #[error("producer {producer_id}: epoch {received} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id of the batch.
        producer_id: i64,
        /// The epoch this log knows for the producer.
        current: i16,
        /// The epoch in the batch.
        received: i16,
    },
    /// Kafka: `UNKNOWN_PRODUCER_ID`. Reserved for the broker's mapping: since KIP-360 Kafka's
    /// `ProducerAppendInfo` accepts any sequence from a producer it has no state for, and so does
    /// this log, so leader appends do not return it today.
    #[error("unknown producer id {producer_id}")]
    UnknownProducerId {
        /// The producer id of the batch.
        producer_id: i64,
    },
    /// A follower append whose batches do not continue the log: an offset below the next one
    /// expected. Kafka: `UnexpectedAppendOffsetException` / `OffsetsOutOfOrderException`.
    #[error("append offset {received} is below the next expected offset {expected}")]
    NonMonotonicOffset {
        /// The smallest base offset the log would have accepted.
        expected: i64,
        /// The offending batch's base offset.
        received: i64,
    },
    /// A file this layer owns (checkpoint, producer snapshot) has content it cannot parse.
    #[error("corrupt file {}: {reason}", .path.display())]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A file-system operation failed. Kafka: `KAFKA_STORAGE_ERROR`.
    #[error("failed to {op} {}", .path.display())]
    Io {
        /// The operation, phrased to follow "failed to", e.g. "append to".
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl LogError {
    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        LogError::CorruptRecord {
            reason: reason.into(),
        }
    }
}

/// Builds a `map_err` closure that turns an `io::Error` into [`LogError::Io`].
pub(crate) fn io_err(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io { op, path, source }
}
