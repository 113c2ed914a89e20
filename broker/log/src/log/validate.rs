//! Validation of a produce request's batches, from their headers alone (Kafka's
//! `LogValidator`, minus format conversion: only magic v2 is stored).
//!
//! Checks, in order, per batch: sizes against the request, `max.message.bytes`, CRC32C, record
//! count vs. `lastOffsetDelta`, compression codec, idempotent batches carry a sequence,
//! timestamps per `message.timestamp.type`, and keys on compacted topics (the one check that
//! decodes records).

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::{
    batch::{self, BatchHeader, LOG_OVERHEAD},
    config::LogConfig,
    error::LogError,
    TimestampType,
};

/// One batch of a produce request after validation.
#[derive(Debug, Clone, Copy)]
pub(super) struct LeaderBatch {
    pub(super) position: usize,
    pub(super) size: usize,
    pub(super) record_count: i32,
    /// After any `LogAppendTime` rewrite.
    pub(super) max_timestamp: i64,
    pub(super) producer_id: i64,
    pub(super) producer_epoch: i16,
    pub(super) first_seq: i32,
    pub(super) last_seq: i32,
    /// Has a producer id and carries data (control batches are not sequence-checked).
    pub(super) idempotent: bool,
    /// The timestamp type and max timestamp must be rewritten (and the CRC recomputed).
    pub(super) rewrite_timestamp: Option<TimestampType>,
}

/// Validates the batches of a produce request and describes them in `out`.
pub(super) fn validate_leader_batches(
    records: &[u8],
    config: &LogConfig,
    now_ms: i64,
    out: &mut Vec<LeaderBatch>,
) -> Result<(), LogError> {
    if records.is_empty() {
        return Err(LogError::InvalidRecord {
            reason: "the request holds no record batch".into(),
        });
    }
    let mut position = 0;
    while position < records.len() {
        let rest = &records[position..];
        if rest.len() < LOG_OVERHEAD {
            return Err(LogError::corrupt(format!(
                "{} trailing bytes are too few for a batch",
                rest.len()
            )));
        }
        let header = BatchHeader::parse(rest).map_err(|e| LogError::corrupt(e.to_string()))?;
        let size = header.size();
        if size > rest.len() {
            return Err(LogError::corrupt(format!(
                "batch of {size} bytes runs past the end of the request ({} bytes left)",
                rest.len()
            )));
        }
        if size > config.max_message_bytes {
            return Err(LogError::RecordTooLarge {
                size,
                max: config.max_message_bytes,
            });
        }
        if !header.crc_valid() {
            return Err(LogError::corrupt(format!(
                "CRC mismatch: stored {:#010x}, computed {:#010x}",
                header.crc(),
                header.compute_crc().unwrap_or_default()
            )));
        }
        let count = header.record_count();
        if count < 1 {
            return Err(LogError::corrupt(format!(
                "record count {count} must be at least 1"
            )));
        }
        if header.last_offset_delta() != count - 1 {
            return Err(LogError::corrupt(format!(
                "lastOffsetDelta {} does not match record count {count}",
                header.last_offset_delta()
            )));
        }
        if header.compression() > 4 {
            return Err(LogError::corrupt(format!(
                "unknown compression codec {}",
                header.compression()
            )));
        }
        let idempotent = header.has_producer_id() && !header.is_control();
        if idempotent && header.base_sequence() < 0 {
            // Kafka's LogValidator: "Invalid sequence number".
            return Err(LogError::InvalidRecord {
                reason: format!(
                    "batch of producer {} has no sequence number",
                    header.producer_id()
                ),
            });
        }
        let (max_timestamp, rewrite_timestamp) = match config.timestamp_type {
            TimestampType::LogAppendTime => (now_ms, Some(TimestampType::LogAppendTime)),
            TimestampType::CreateTime => {
                check_create_time(&header, config, now_ms)?;
                // A client may not claim LogAppendTime on a CreateTime topic; Kafka clears it.
                let rewrite = (header.timestamp_type() == TimestampType::LogAppendTime)
                    .then_some(TimestampType::CreateTime);
                (header.max_timestamp(), rewrite)
            }
        };
        if config.cleanup_compact && !header.is_control() {
            check_keys(&rest[..size])?;
        }
        out.push(LeaderBatch {
            position,
            size,
            record_count: count,
            max_timestamp,
            producer_id: header.producer_id(),
            producer_epoch: header.producer_epoch(),
            first_seq: header.base_sequence(),
            last_seq: header.last_sequence(),
            idempotent,
            rewrite_timestamp,
        });
        position += size;
    }
    Ok(())
}

/// `message.timestamp.{before,after}.max.ms` from the header alone: the max timestamp must lie
/// in the window, and so must the base timestamp (a record's, or the minimum) on the old side.
/// Records without a timestamp (-1) are exempt, as in Kafka.
fn check_create_time(
    header: &BatchHeader<'_>,
    config: &LogConfig,
    now_ms: i64,
) -> Result<(), LogError> {
    let earliest = now_ms.saturating_sub(config.timestamp_before_max_ms);
    let latest = now_ms.saturating_add(config.timestamp_after_max_ms);
    let max = header.max_timestamp();
    let base = if header.has_delete_horizon() {
        max
    } else {
        header.base_timestamp()
    };
    for ts in [max, base] {
        if ts == batch::NO_TIMESTAMP {
            continue;
        }
        if ts < earliest {
            return Err(LogError::InvalidTimestamp {
                timestamp: ts,
                reason: format!(
                    "more than message.timestamp.before.max.ms ({}) before the broker time {now_ms}",
                    config.timestamp_before_max_ms
                ),
            });
        }
        if ts > latest {
            return Err(LogError::InvalidTimestamp {
                timestamp: ts,
                reason: format!(
                    "more than message.timestamp.after.max.ms ({}) after the broker time {now_ms}",
                    config.timestamp_after_max_ms
                ),
            });
        }
    }
    Ok(())
}

/// A compacted topic keeps the latest record per key, so a record without one is refused
/// (Kafka: "Compacted topic cannot accept message without key"). Needs the records decoded.
fn check_keys(batch_bytes: &[u8]) -> Result<(), LogError> {
    let mut bytes = Bytes::copy_from_slice(batch_bytes);
    let set = RecordBatchDecoder::decode(&mut bytes)
        .map_err(|e| LogError::corrupt(format!("cannot decode records: {e:#}")))?;
    if let Some(record) = set.records.iter().find(|r| r.key.is_none()) {
        return Err(LogError::InvalidRecord {
            reason: format!(
                "compacted topic cannot accept a record without a key (offset delta {})",
                record.offset - set.records.first().map_or(0, |r| r.offset)
            ),
        });
    }
    Ok(())
}
