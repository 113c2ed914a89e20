//! Per-partition configuration, with Kafka's topic-config names and defaults.

use std::time::Duration;

/// How a batch's timestamps are set: Kafka's `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps, within the configured bounds around the broker's clock.
    #[default]
    CreateTime,
    /// Stamp every batch with the broker's clock at append time.
    LogAppendTime,
}

/// A partition's topic configuration. `Default` gives Kafka's defaults.
///
/// The broker may swap it at run time with [`Log::set_config`](crate::Log::set_config): every
/// field is read at the moment it applies, so a change takes effect on the next append, roll,
/// flush or retention pass.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty active segment this long after it was created.
    pub segment_ms: Duration,
    /// `segment.index.bytes`: the largest an index file may get; a full index forces a roll.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: log bytes between two offset-index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms`: `None` keeps data forever (Kafka's -1).
    pub retention_ms: Option<Duration>,
    /// `retention.bytes`: `None` for no size limit (Kafka's -1, the default).
    pub retention_bytes: Option<u64>,
    /// `flush.messages`: fsync once this many messages are unflushed; `None` never by count.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync when the last flush is this old; `None` never by time.
    pub flush_ms: Option<Duration>,
    /// `max.message.bytes`: the largest batch (whole, header included) a producer may append.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far a `CreateTime` timestamp may lag the broker.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far a `CreateTime` timestamp may lead the broker.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` contains `delete`: retention deletes old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`: records must have keys, and the cleaner keeps the
    /// latest record per key (see [`crate::cleaner`]).
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long a tombstone survives once the cleaner has first seen it
    /// (the delete horizon it stamps on the batch, KIP-534).
    pub delete_retention_ms: Duration,
    /// `min.cleanable.dirty.ratio`: the cleaner runs when dirty bytes / (clean + dirty bytes)
    /// exceed this.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a segment whose newest record is younger than this is not
    /// cleaned yet.
    pub min_compaction_lag_ms: Duration,
    /// `max.compaction.lag.ms`: a log whose oldest dirty record is older than this is cleaned
    /// whatever its dirty ratio, and its active segment rolls this often. `Duration::MAX`: no bound.
    pub max_compaction_lag_ms: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        const DAY: Duration = Duration::from_secs(24 * 60 * 60);
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * DAY),
            retention_bytes: None,
            flush_messages: None,
            flush_ms: None,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: DAY,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: Duration::ZERO,
            max_compaction_lag_ms: Duration::MAX,
        }
    }
}

impl LogConfig {
    /// `segment.bytes` as the log applies it: file positions in the index are 32-bit signed in
    /// Kafka's format, so a segment can never grow past `i32::MAX` bytes whatever the setting.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(i32::MAX as u64)
    }

    /// `segment.ms` as rolls apply it: on a compacted topic the active segment (which the cleaner
    /// never touches) also rolls at `max.compaction.lag.ms`, as Kafka's `LogConfig.maxSegmentMs`.
    pub(crate) fn effective_segment_ms(&self) -> Duration {
        if self.cleanup_compact {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }

    /// How many entries of `entry_size` bytes fit in an index file of `segment.index.bytes`.
    pub(crate) fn max_index_entries(&self, entry_size: usize) -> usize {
        usize::try_from(self.segment_index_bytes / entry_size as u64).unwrap_or(usize::MAX)
    }
}

/// Converts a `Duration` config to Kafka's millisecond arithmetic, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
