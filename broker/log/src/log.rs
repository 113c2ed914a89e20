//! [`Log`]: one partition's segments, offsets, producer state and leader epochs.
//!
//! # Append (leader)
//!
//! 1. Validate every batch's header (sizes, magic, CRC, count vs. offsets, codec, size limit,
//!    timestamps); decode records only to check keys on a compacted topic.
//! 2. Check idempotent batches against the producer state, in a scratch copy: a duplicate ends
//!    the append with the original offsets.
//! 3. Assign offsets and the leader epoch in a copy of each batch header (outside the CRC); for
//!    `LogAppendTime` also stamp the max timestamp and recompute the CRC.
//! 4. Roll if the active segment is full, too old, its index is full, or the offsets would not
//!    fit its 32-bit relative offsets.
//! 5. One positioned vectored write of the patched headers and the request's untouched records;
//!    index entries; then commit producer state and the epoch cache.
//! 6. fsync if `flush.messages` is reached.
//!
//! Guarantees: a request is all or nothing (any invalid batch appends nothing; a failed write
//! is cut off again). The one exception is an fsync failure under `flush.messages`: the data
//! is then in the log but not known to be durable, and the error says so; as in Kafka, the
//! broker should treat it as a failed log directory. Per request the records go from the
//! caller's buffer (never modified, never copied) to the file in one write; work and allocations
//! are per batch header, not per record.

use std::{
    collections::BTreeMap,
    fs,
    io::IoSlice,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use validate::{validate_leader_batches, LeaderBatch};

use crate::{
    batch,
    checkpoint::fsync_dir,
    config::{millis, LogConfig},
    epoch::LeaderEpochCache,
    error::LogError,
    index::remove_if_exists,
    producer::{
        BatchMetadata, ProducerEntry, ProducerEntryInfo, ProducerStateManager, SequenceCheck,
    },
    segment::{BatchMeta, Located, Segment},
    TimestampType,
};

mod clean;
mod recovery;
#[cfg(test)]
mod tests;
mod validate;

/// What an append did, for the produce response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended (for a duplicate: of the original batch).
    pub first_offset: i64,
    /// Offset of the last record appended (for a duplicate: of the original batch).
    pub last_offset: i64,
    /// The broker time stamped on the batches under `LogAppendTime`; -1 under `CreateTime`.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// The request was a retry of batches already in the log; nothing was appended.
    pub duplicate: bool,
    /// Records appended (0 for a duplicate).
    pub record_count: i64,
    /// Bytes appended (0 for a duplicate).
    pub bytes: usize,
}

/// Whole batches of one segment, as a byte range of its file (see [`Log::read_slice`]).
#[derive(Debug)]
pub struct FileSlice {
    /// The segment file, shared with the log (it stays open while the slice lives).
    pub file: std::sync::Arc<std::fs::File>,
    /// Where the first batch starts.
    pub position: u64,
    /// How many bytes, always whole batches.
    pub len: usize,
}

impl FileSlice {
    /// The bytes, read into memory (for callers that cannot send from the file).
    pub fn read(&self) -> std::io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0; self.len];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(Bytes::from(buf))
    }
}

/// A segment, as tools and metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First offset the segment may hold; its file name.
    pub base_offset: i64,
    /// Size of its `.log` file.
    pub size_bytes: u64,
    /// Path of its `.log` file.
    pub path: PathBuf,
    /// Largest record timestamp in it; -1 if none.
    pub largest_timestamp: i64,
}

/// A producer's state as it would be after the batches of the current request.
#[derive(Debug, Clone, Copy)]
struct PendingProducer {
    producer_id: i64,
    epoch_before_request: i16,
    entry: ProducerEntry,
}

/// Buffers reused from one append to the next so an append allocates nothing in steady state.
#[derive(Debug, Default)]
struct Scratch {
    batches: Vec<LeaderBatch>,
    metas: Vec<BatchMeta>,
    pending: Vec<PendingProducer>,
    /// Each batch's header as it will be stored: the request's, with offsets assigned.
    heads: Vec<[u8; batch::HEADER_SIZE]>,
}

/// One partition's log: a directory of segments.
///
/// Not internally synchronised: the broker wraps it in a mutex. `read` and the lookups take
/// `&self` and only use positioned reads, so they could later run under a read lock.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: Vec<Segment>,
    /// Invariant: `log_start_offset <= high_watermark <= log_end_offset`.
    log_start_offset: i64,
    high_watermark: i64,
    /// Every offset below it is fsynced. Invariant: `<= log_end_offset`.
    recovery_point: i64,
    epochs: LeaderEpochCache,
    producers: ProducerStateManager,
    /// Producer snapshot files on disk, by offset.
    snapshots: BTreeMap<i64, PathBuf>,
    /// Broker time of the last flush triggered by a policy; `None` until a clock is seen.
    last_flush_ms: Option<i64>,
    scratch: Scratch,
    /// The cleaner's checkpoint: offsets below it are compacted. Clamped to the log when used.
    first_dirty_offset: i64,
    /// Bumped by every truncation, so a cleaning pass that began before one does not swap in
    /// segments built from records that are gone.
    truncations: u64,
    /// A cleaning pass is between its snapshot and its last swap.
    cleaning: bool,
    /// `close` ran: the cleaner leaves the files alone from then on.
    closed: bool,
}

// The broker shares logs across tasks; keep that a compile-time fact.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
};

impl Log {
    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current topic configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the topic configuration; every setting applies from its next use.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// First offset a consumer may read.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Offset below which records are committed; `log_start_offset` right after `open` until
    /// the broker sets it (from its replication checkpoint, or to the log end on a single node).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Sets the high watermark, clamped to `[log_start_offset, log_end_offset]`.
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.high_watermark = hw.clamp(self.log_start_offset, self.log_end_offset());
    }

    /// Every offset below this is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Sum of the segments' `.log` sizes.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The leader-epoch cache: (epoch, start offset) pairs, oldest first.
    pub fn leader_epoch_cache(&self) -> &[(i32, i64)] {
        self.epochs.entries()
    }

    /// Per-segment description for `dump-log` and metrics.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                size_bytes: s.size,
                path: s.log_path().to_path_buf(),
                largest_timestamp: s.indexes.max_timestamp,
            })
            .collect()
    }

    /// The state this log keeps for an idempotent producer, if any.
    pub fn producer_state(&self, producer_id: i64) -> Option<ProducerEntryInfo> {
        self.producers.info(producer_id)
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    /// Index of the segment that would hold `offset`: the last one whose base is <= it.
    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// One past the largest offset segment `i` can hold: the next segment's base, or the log end.
    fn upper_bound(&self, i: usize) -> i64 {
        self.segments
            .get(i + 1)
            .map_or_else(|| self.log_end_offset(), |s| s.base_offset)
    }

    // ---------------------------------------------------------------- append

    /// Validates a produce request's records (one or more batches) and appends them as leader.
    /// See the module docs for the steps; on any error nothing is appended.
    pub fn append_as_leader(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.append_as_leader_with(records, leader_epoch, now_ms, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn append_as_leader_with(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
        s: &mut Scratch,
    ) -> Result<AppendInfo, LogError> {
        s.batches.clear();
        s.metas.clear();
        s.pending.clear();
        validate_leader_batches(records, &self.config, now_ms, &mut s.batches)?;

        let first_offset = self.log_end_offset();
        let mut next = first_offset;
        let mut record_count = 0i64;
        for b in &s.batches {
            let last = next + i64::from(b.record_count) - 1;
            if b.idempotent {
                if let Some(original) = self.check_producer(b, next, last, &mut s.pending)? {
                    return Ok(self.duplicate_info(&original));
                }
            }
            s.metas.push(BatchMeta {
                position: b.position,
                size: b.size,
                last_offset: last,
                max_timestamp: b.max_timestamp,
            });
            record_count += i64::from(b.record_count);
            next = last + 1;
        }
        let last_offset = next - 1;

        // The request buffer is left as it is: each header is copied and patched, and the
        // write takes the patched headers and the untouched records side by side.
        s.heads.clear();
        for (b, m) in s.batches.iter().zip(&s.metas) {
            let mut head = [0u8; batch::HEADER_SIZE];
            head.copy_from_slice(&records[b.position..b.position + batch::HEADER_SIZE]);
            batch::set_base_offset(&mut head, m.last_offset - i64::from(b.record_count) + 1);
            batch::set_partition_leader_epoch(&mut head, leader_epoch);
            if let Some(timestamp_type) = b.rewrite_timestamp {
                let rest = &records[b.position + batch::HEADER_SIZE..b.position + b.size];
                batch::set_max_timestamp(&mut head, rest, timestamp_type, b.max_timestamp);
            }
            s.heads.push(head);
        }

        self.roll_if_needed(
            records.len() as u64,
            first_offset,
            last_offset,
            Some(now_ms),
        )?;
        // Before the write, as Kafka does: if the checkpoint write fails nothing was appended,
        // and an epoch starting at the log end with no data yet is harmless.
        self.epochs.assign(leader_epoch, first_offset)?;
        let Log {
            segments, config, ..
        } = self;
        let active = segments
            .last_mut()
            .expect("a log always has an active segment");
        let mut pieces: Vec<IoSlice<'_>> = Vec::with_capacity(2 * s.batches.len());
        for (b, head) in s.batches.iter().zip(&s.heads) {
            pieces.push(IoSlice::new(head));
            pieces.push(IoSlice::new(
                &records[b.position + batch::HEADER_SIZE..b.position + b.size],
            ));
        }
        active.append(&mut pieces, records.len(), &s.metas, config)?;

        for p in s.pending.drain(..) {
            self.producers.insert(p.producer_id, p.entry);
        }
        self.flush_if_too_many_messages(Some(now_ms))?;
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_append_time: match self.config.timestamp_type {
                TimestampType::LogAppendTime => now_ms,
                TimestampType::CreateTime => -1,
            },
            log_start_offset: self.log_start_offset,
            duplicate: false,
            record_count,
            bytes: records.len(),
        })
    }

    /// Checks one idempotent batch against its producer's state as updated by the earlier
    /// batches of this request, and records it there. `Some` means it is a duplicate.
    fn check_producer(
        &self,
        b: &LeaderBatch,
        first_offset: i64,
        last_offset: i64,
        pending: &mut Vec<PendingProducer>,
    ) -> Result<Option<BatchMetadata>, LogError> {
        let i = match pending.iter().position(|p| p.producer_id == b.producer_id) {
            Some(i) => i,
            None => {
                let entry = self
                    .producers
                    .get(b.producer_id)
                    .copied()
                    .unwrap_or_default();
                pending.push(PendingProducer {
                    producer_id: b.producer_id,
                    epoch_before_request: entry.epoch,
                    entry,
                });
                pending.len() - 1
            }
        };
        let p = &mut pending[i];
        match p.entry.check(
            p.epoch_before_request,
            b.producer_id,
            b.producer_epoch,
            b.first_seq,
            b.last_seq,
        )? {
            SequenceCheck::Duplicate(original) => Ok(Some(original)),
            SequenceCheck::Append => {
                p.entry.record(
                    b.producer_epoch,
                    BatchMetadata {
                        first_seq: b.first_seq,
                        last_seq: b.last_seq,
                        first_offset,
                        last_offset,
                        timestamp: b.max_timestamp,
                    },
                );
                Ok(None)
            }
        }
    }

    fn duplicate_info(&self, original: &BatchMetadata) -> AppendInfo {
        AppendInfo {
            first_offset: original.first_offset,
            last_offset: original.last_offset,
            log_append_time: match self.config.timestamp_type {
                TimestampType::LogAppendTime => original.timestamp,
                TimestampType::CreateTime => -1,
            },
            log_start_offset: self.log_start_offset,
            duplicate: true,
            record_count: 0,
            bytes: 0,
        }
    }

    /// Appends batches that already carry offsets (a follower copying its leader; later the
    /// cleaner). Checks structure, CRC and that offsets only increase; assigns nothing.
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<AppendInfo, LogError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.append_as_follower_with(records, &mut scratch.metas);
        self.scratch = scratch;
        result
    }

    fn append_as_follower_with(
        &mut self,
        records: &[u8],
        metas: &mut Vec<BatchMeta>,
    ) -> Result<AppendInfo, LogError> {
        metas.clear();
        let leo = self.log_end_offset();
        let mut expected = leo;
        let mut record_count = 0i64;
        let mut batches = batch::batches(records);
        while let Some(parsed) = batches.next() {
            let header = parsed.map_err(|e| LogError::corrupt(e.to_string()))?;
            let position = batches.position() - header.size();
            if !header.crc_valid() {
                return Err(LogError::corrupt(format!(
                    "CRC mismatch in batch at offset {}",
                    header.base_offset()
                )));
            }
            if header.last_offset_delta() < 0 || header.compression() > 4 {
                return Err(LogError::corrupt(format!(
                    "malformed batch header at offset {}",
                    header.base_offset()
                )));
            }
            if header.base_offset() < expected {
                return Err(LogError::NonMonotonicOffset {
                    expected,
                    received: header.base_offset(),
                });
            }
            metas.push(BatchMeta {
                position,
                size: header.size(),
                last_offset: header.last_offset(),
                max_timestamp: header.max_timestamp(),
            });
            record_count += i64::from(header.record_count());
            expected = header.last_offset() + 1;
        }
        let (Some(first), Some(last)) = (batch::batches(records).next(), metas.last()) else {
            return Ok(AppendInfo {
                first_offset: leo,
                last_offset: leo - 1,
                log_append_time: -1,
                log_start_offset: self.log_start_offset,
                duplicate: false,
                record_count: 0,
                bytes: 0,
            });
        };
        let first_offset = first
            .map_err(|e| LogError::corrupt(e.to_string()))?
            .base_offset();
        let last_offset = last.last_offset;

        self.roll_if_needed(records.len() as u64, first_offset, last_offset, None)?;
        let Log {
            segments, config, ..
        } = self;
        let active = segments
            .last_mut()
            .expect("a log always has an active segment");
        active.append(&mut [IoSlice::new(records)], records.len(), metas, config)?;
        if active.next_offset < expected {
            active.next_offset = expected;
        }
        for header in batch::batches(records).flatten() {
            self.producers.replay(&header);
            self.epochs
                .assign(header.partition_leader_epoch(), header.base_offset())?;
        }
        self.flush_if_too_many_messages(None)?;
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
            duplicate: false,
            record_count,
            bytes: records.len(),
        })
    }

    // ---------------------------------------------------------------- roll

    /// Kafka's `maybeRoll`: a new segment at `first_offset` if `incoming` bytes would overflow
    /// `segment.bytes`, the active segment is older than `segment.ms`, an index is full, or
    /// `last_offset` is too far from the base for a 32-bit relative offset. An empty segment is
    /// never rolled for size or time.
    fn roll_if_needed(
        &mut self,
        incoming: u64,
        first_offset: i64,
        last_offset: i64,
        now_ms: Option<i64>,
    ) -> Result<(), LogError> {
        let config = &self.config;
        let active = self
            .segments
            .last_mut()
            .expect("a log always has an active segment");
        if let (None, Some(now)) = (active.created_ms, now_ms) {
            active.created_ms = Some(now);
        }
        let offsets_overflow = last_offset - active.base_offset > i64::from(i32::MAX);
        let full = active.size > 0
            && (active.size + incoming > config.effective_segment_bytes()
                || active.indexes.is_full(config)
                || matches!((active.created_ms, now_ms), (Some(c), Some(now)) if now - c > millis(config.effective_segment_ms())));
        if full || offsets_overflow {
            self.roll(first_offset, now_ms)?;
        }
        Ok(())
    }

    /// Makes a new active segment at `new_base`.
    ///
    /// 1. Finish the old active segment: final time-index entry, index files written.
    /// 2. Create the new segment's files and fsync the directory.
    /// 3. Snapshot producer state at the log end, so recovery replays at most one segment.
    ///
    /// An empty active segment is replaced rather than kept (a follower skipping offsets).
    fn roll(&mut self, new_base: i64, now_ms: Option<i64>) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        let new_base = new_base.max(leo);
        let config = &self.config;
        let active = self
            .segments
            .last_mut()
            .expect("a log always has an active segment");
        if active.base_offset == new_base {
            // Only an empty segment can sit at the log end; there is nothing to roll.
            active.created_ms = now_ms;
            return Ok(());
        }
        let replace_empty = active.size == 0;
        if !replace_empty {
            active.finish(config)?;
        }
        let segment = Segment::create(&self.dir, new_base, now_ms)?;
        if replace_empty {
            if let Some(empty) = self.segments.pop() {
                empty.delete()?;
            }
        }
        self.segments.push(segment);
        // fsync the directory: otherwise the new segment's dirent can be lost on power failure.
        fsync_dir(&self.dir)?;
        if self.segments.len() == 1 {
            // The replaced empty segment was the only one: the log now starts at the new base.
            self.log_start_offset = self.log_start_offset.max(new_base);
            self.high_watermark = self.high_watermark.max(new_base);
            self.recovery_point = self.recovery_point.max(new_base);
        }
        tracing::debug!(dir = %self.dir.display(), base_offset = new_base, "rolled segment");
        self.take_snapshot(leo)
    }

    /// Rolls now, whatever the policies say (tests seal the active segment with it).
    #[cfg(test)]
    pub(crate) fn force_roll(&mut self) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        self.roll(leo, None)
    }

    /// Rolls if `segment.ms` (on a compacted topic at most `max.compaction.lag.ms`) has passed
    /// since the non-empty active segment was created. The broker calls this periodically so
    /// that quiet partitions roll (and become deletable, or cleanable) too.
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let segment_ms = millis(self.config.effective_segment_ms());
        let active = self.active_mut();
        let created = *active.created_ms.get_or_insert(now_ms);
        if active.size == 0 || now_ms - created <= segment_ms {
            return Ok(false);
        }
        let leo = self.log_end_offset();
        self.roll(leo, Some(now_ms))?;
        Ok(true)
    }

    // ---------------------------------------------------------------- read

    /// Reads whole batches from the one containing `offset`, up to `max_bytes`, stopping before
    /// the first batch that reaches `max_offset` (exclusive; the broker passes the high
    /// watermark). With `min_one_batch`, a first batch larger than `max_bytes` is returned
    /// whole. Reads stay within one segment, as Kafka's do; the next read continues.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Bytes, LogError> {
        let Some((segment, position, len)) =
            self.locate(offset, max_bytes, max_offset, min_one_batch)?
        else {
            return Ok(Bytes::new());
        };
        let mut buf = segment.read(position, len)?;
        // Keep whole batches, all below max_offset; the read may have cut the last one.
        let mut end = 0;
        for header in batch::batches(&buf) {
            match header {
                Ok(h) if h.last_offset() < max_offset => end += h.size(),
                _ => break,
            }
        }
        buf.truncate(end);
        Ok(Bytes::from(buf))
    }

    /// What [`Log::read`] would return, as a range of the segment file instead of bytes in
    /// memory, for a caller that writes it to a socket with `sendfile`: only the batch headers
    /// are read (to end on a whole batch below `max_offset`). `None` where `read` returns
    /// nothing. The slice shares the segment's open file, so it stays readable if the segment
    /// is deleted or replaced before it is sent, and costs no file descriptor.
    pub fn read_slice(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>, LogError> {
        let Some((segment, position, len)) =
            self.locate(offset, max_bytes, max_offset, min_one_batch)?
        else {
            return Ok(None);
        };
        let limit = position + len as u64;
        let mut end = position;
        while end < limit {
            let Some((size, last_offset)) = segment.batch_at(end)? else {
                break;
            };
            if last_offset >= max_offset || end + size > limit {
                break;
            }
            end += size;
        }
        if end == position {
            return Ok(None);
        }
        Ok(Some(FileSlice {
            file: segment.file_handle(),
            position,
            len: usize::try_from(end - position).unwrap_or(usize::MAX),
        }))
    }

    /// Where a read from `offset` starts and how many bytes it may take: the segment, the
    /// byte position of the batch holding `offset`, and the length (at most `max_bytes`, or the
    /// first batch whole with `min_one_batch`). `None` when there is nothing to read.
    fn locate(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Option<(&Segment, u64, usize)>, LogError> {
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset,
                log_end: leo,
            });
        }
        if offset == leo || offset >= max_offset {
            return Ok(None);
        }
        for segment in &self.segments[self.segment_index_for(offset)..] {
            let from = segment.lookup(offset);
            let Some(first) = segment.find_batch(offset, from)? else {
                continue;
            };
            if first.last_offset >= max_offset {
                return Ok(None);
            }
            let available = usize::try_from(segment.size - first.position).unwrap_or(usize::MAX);
            let mut len = max_bytes.min(available);
            let first_size = first.size as usize;
            if first_size > len {
                if !min_one_batch {
                    return Ok(None);
                }
                len = first_size;
            }
            return Ok(Some((segment, first.position, len)));
        }
        Ok(None)
    }

    /// ListOffsets by timestamp: the first offset (at or after the log start) whose record
    /// timestamp is >= `timestamp`, with that timestamp. Not limited by the high watermark:
    /// the broker filters for the isolation level.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.indexes.max_timestamp < timestamp
                || self.upper_bound(i) <= self.log_start_offset
            {
                continue;
            }
            let mut min_offset = segment.base_offset.max(self.log_start_offset);
            if let Some(older) = segment.offset_before_timestamp(timestamp) {
                min_offset = min_offset.max(older + 1);
            }
            let mut candidates = Vec::new();
            segment.visit_batches(segment.lookup(min_offset), &mut |loc, _| {
                if loc.last_offset >= min_offset && loc.max_timestamp >= timestamp {
                    candidates.push(*loc);
                    // A CreateTime batch whose max qualifies holds a qualifying record, so the
                    // first candidate nearly always answers; keep a few in case offsets below
                    // `min_offset` were the ones that qualified.
                    return candidates.len() < 4;
                }
                true
            })?;
            for loc in &candidates {
                if let Some(hit) = first_record(segment, loc, min_offset, |t| t >= timestamp)? {
                    return Ok(Some(hit));
                }
            }
        }
        Ok(None)
    }

    /// ListOffsets `MAX_TIMESTAMP`: offset and timestamp of the first record carrying the
    /// largest timestamp in the log.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let mut best: Option<&Segment> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.indexes.offset_of_max_timestamp < 0
                || self.upper_bound(i) <= self.log_start_offset
            {
                continue;
            }
            if best.is_none_or(|b| segment.indexes.max_timestamp > b.indexes.max_timestamp) {
                best = Some(segment);
            }
        }
        let Some(segment) = best else {
            return Ok(None);
        };
        let max = segment.indexes.max_timestamp;
        let target = segment.indexes.offset_of_max_timestamp;
        if target >= self.log_start_offset {
            if let Some(loc) = segment.find_batch(target, segment.lookup(target))? {
                if let Some(hit) = first_record(segment, &loc, self.log_start_offset, |t| t == max)?
                {
                    return Ok(Some(hit));
                }
            }
        }
        // The batch with the segment's max lies below the log start offset: find the largest
        // timestamp among the records that are still readable, the slow way.
        self.max_timestamp_by_scan()
    }

    /// The slow path of [`Log::offset_of_max_timestamp`]: only the batch that straddles the log
    /// start needs decoding (some of its records are gone); for every later batch the header's
    /// max timestamp is exact.
    fn max_timestamp_by_scan(&self) -> Result<Option<(i64, i64)>, LogError> {
        let log_start = self.log_start_offset;
        let first = self.segment_index_for(log_start);
        let mut best: Option<(i64, i64)> = None;
        let segment = &self.segments[first];
        if let Some(loc) = segment.find_batch(log_start, segment.lookup(log_start))? {
            if loc.base_offset < log_start {
                for (offset, ts) in batch_records(segment, &loc)? {
                    if offset >= log_start && best.is_none_or(|(_, b)| ts > b) {
                        best = Some((offset, ts));
                    }
                }
            }
        }
        let mut best_batch: Option<(usize, Located)> = None;
        for (i, segment) in self.segments.iter().enumerate().skip(first) {
            segment.visit_batches(segment.lookup(log_start), &mut |loc, _| {
                let best_ts = best_batch
                    .map(|(_, b)| b.max_timestamp)
                    .or(best.map(|(_, ts)| ts));
                if loc.base_offset >= log_start && best_ts.is_none_or(|b| loc.max_timestamp > b) {
                    best_batch = Some((i, *loc));
                }
                true
            })?;
        }
        match best_batch {
            Some((i, loc)) => {
                let max = loc.max_timestamp;
                first_record(&self.segments[i], &loc, log_start, |t| t == max)
            }
            None => Ok(best),
        }
    }

    // ---------------------------------------------------------------- deletion

    /// DeleteRecords: moves the log start offset up to `offset` and deletes the segments wholly
    /// below it. `offset` may not pass the high watermark. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        if offset > self.high_watermark {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset,
                log_end: self.high_watermark,
            });
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.delete_segments_below_log_start()?;
            self.epochs.truncate_from_start(self.log_start_offset)?;
        }
        Ok(self.log_start_offset)
    }

    /// Retention: deletes the oldest segments that broke `retention.ms` (largest timestamp
    /// older than `now - retention`) or `retention.bytes`, if `cleanup.policy` has `delete`,
    /// plus segments wholly below the log start offset whatever the policy. Never deletes data
    /// at or above the high watermark. Returns how many segments were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let mut deleted = self.delete_segments_below_log_start()?;
        if !self.config.cleanup_delete {
            return Ok(deleted);
        }
        if let Some(retention) = self.config.retention_ms {
            let retention = millis(retention);
            deleted += self.delete_oldest_segments(now_ms, |s| {
                now_ms.saturating_sub(s.retention_timestamp()) > retention
            })?;
        }
        if let Some(limit) = self.config.retention_bytes {
            let size = self.size_bytes();
            if size > limit {
                // Kafka's rule: delete the oldest while what is left stays >= retention.bytes.
                let mut excess = size - limit;
                deleted += self.delete_oldest_segments(now_ms, |s| {
                    if excess >= s.size {
                        excess -= s.size;
                        true
                    } else {
                        false
                    }
                })?;
            }
        }
        Ok(deleted)
    }

    fn delete_segments_below_log_start(&mut self) -> Result<usize, LogError> {
        let log_start = self.log_start_offset;
        let count = (0..self.segments.len().saturating_sub(1))
            .take_while(|&i| self.segments[i + 1].base_offset <= log_start)
            .count();
        self.remove_oldest(count)?;
        Ok(count)
    }

    /// Deletes the longest prefix of segments that satisfy `expired`, are wholly below the high
    /// watermark, and are not the empty active segment (Kafka's `deletableSegments`).
    fn delete_oldest_segments(
        &mut self,
        now_ms: i64,
        mut expired: impl FnMut(&Segment) -> bool,
    ) -> Result<usize, LogError> {
        let mut count = 0;
        for i in 0..self.segments.len() {
            let segment = &self.segments[i];
            let last_and_empty = i + 1 == self.segments.len() && segment.size == 0;
            if last_and_empty || self.upper_bound(i) > self.high_watermark || !expired(segment) {
                break;
            }
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            // Everything expired: keep an empty active segment at the log end.
            let leo = self.log_end_offset();
            self.roll(leo, Some(now_ms))?;
        }
        self.remove_oldest(count)?;
        Ok(count)
    }

    /// Removes the first `count` segments (never the active one) and moves the log start.
    fn remove_oldest(&mut self, count: usize) -> Result<(), LogError> {
        let count = count.min(self.segments.len() - 1);
        if count == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..count) {
            tracing::info!(segment = %segment.log_path().display(), "deleting segment");
            segment.delete()?;
        }
        // fsync the directory: otherwise a deleted segment can reappear after a power failure.
        fsync_dir(&self.dir)?;
        let first_base = self.segments[0].base_offset;
        self.log_start_offset = self.log_start_offset.max(first_base);
        self.high_watermark = self.high_watermark.max(self.log_start_offset);
        self.recovery_point = self.recovery_point.max(self.log_start_offset);
        self.epochs.truncate_from_start(self.log_start_offset)?;
        self.prune_snapshots()
    }

    /// Drops everything at and after `offset` (a follower diverging from its leader). A batch
    /// is never split: if `offset` falls inside one, the whole batch goes.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset <= self.segments[0].base_offset || offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset);
        }
        let keep = self.segments.partition_point(|s| s.base_offset < offset);
        if keep < self.segments.len() {
            for segment in self.segments.drain(keep..) {
                segment.delete()?;
            }
            fsync_dir(&self.dir)?;
        }
        self.active_mut().truncate_to(offset)?;
        let leo = self.log_end_offset();
        self.high_watermark = self.high_watermark.min(leo);
        self.recovery_point = self.recovery_point.min(leo);
        self.truncate_cleaner_checkpoint(leo)?;
        self.epochs.truncate_from_end(leo)?;
        self.delete_snapshots_after(leo)?;
        self.rebuild_producer_state()
    }

    /// Deletes every segment and starts empty at `offset`.
    fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        let segment = Segment::create_replacing(&self.dir, offset, &mut self.segments)?;
        self.segments.push(segment);
        fsync_dir(&self.dir)?;
        self.log_start_offset = offset;
        self.high_watermark = offset;
        self.recovery_point = offset;
        self.truncate_cleaner_checkpoint(offset)?;
        self.epochs.truncate_from_end(i64::MIN)?;
        self.delete_snapshots_after(i64::MIN)?;
        self.producers.clear();
        Ok(())
    }

    // ---------------------------------------------------------------- durability

    /// fsyncs every segment and index with unflushed data; the recovery point becomes the log
    /// end.
    pub fn flush(&mut self) -> Result<(), LogError> {
        for segment in &mut self.segments {
            segment.flush()?;
        }
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// `flush.ms`: flushes if that long has passed since the last policy flush. The first call
    /// only starts the clock.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let Some(interval) = self.config.flush_ms else {
            return Ok(false);
        };
        let last = *self.last_flush_ms.get_or_insert(now_ms);
        if now_ms - last < millis(interval) {
            return Ok(false);
        }
        self.last_flush_ms = Some(now_ms);
        if self.recovery_point >= self.log_end_offset()
            && !self.segments.iter().any(Segment::needs_flush)
        {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// `flush.messages`: Kafka counts unflushed messages as log end - recovery point.
    fn flush_if_too_many_messages(&mut self, now_ms: Option<i64>) -> Result<(), LogError> {
        let Some(limit) = self.config.flush_messages else {
            return Ok(());
        };
        let unflushed = u64::try_from(self.log_end_offset() - self.recovery_point).unwrap_or(0);
        if unflushed >= limit {
            self.flush()?;
            if now_ms.is_some() {
                self.last_flush_ms = now_ms;
            }
        }
        Ok(())
    }

    /// Clean close: record the active segment's final max timestamp, write its indexes, fsync
    /// everything and snapshot producer state at the log end, so the next open after a clean
    /// shutdown neither recovers nor replays. A cleaning pass still running swaps nothing in
    /// after this.
    pub fn close(&mut self) -> Result<(), LogError> {
        let Log {
            segments, config, ..
        } = self;
        segments
            .last_mut()
            .expect("a log always has an active segment")
            .finish(config)?;
        self.flush()?;
        let leo = self.log_end_offset();
        self.closed = true;
        self.take_snapshot(leo)
    }

    // ---------------------------------------------------------------- producer snapshots

    fn take_snapshot(&mut self, offset: i64) -> Result<(), LogError> {
        self.producers.write_snapshot(&self.dir, offset)?;
        self.snapshots
            .insert(offset, crate::producer::snapshot_path(&self.dir, offset));
        self.prune_snapshots()
    }

    /// Keeps the newest snapshot and those at segment bases (taken on roll); recovery never
    /// needs the others.
    fn prune_snapshots(&mut self) -> Result<(), LogError> {
        let Some(&newest) = self.snapshots.keys().next_back() else {
            return Ok(());
        };
        let first_base = self.segments[0].base_offset;
        let stale: Vec<i64> = self
            .snapshots
            .keys()
            .copied()
            .filter(|&o| {
                o != newest
                    && (o < first_base || self.segments[self.segment_index_for(o)].base_offset != o)
            })
            .collect();
        for offset in stale {
            if let Some(path) = self.snapshots.remove(&offset) {
                remove_if_exists(&path)?;
            }
        }
        Ok(())
    }

    fn delete_snapshots_after(&mut self, offset: i64) -> Result<(), LogError> {
        let stale = self.snapshots.split_off(&offset.saturating_add(1));
        for path in stale.values() {
            remove_if_exists(path)?;
        }
        Ok(())
    }
}

impl Segment {
    /// Deletes all `old` segments and creates an empty one at `base` (which may be the base of
    /// one of them).
    fn create_replacing(
        dir: &Path,
        base: i64,
        old: &mut Vec<Segment>,
    ) -> Result<Segment, LogError> {
        for segment in old.drain(..) {
            segment.delete()?;
        }
        Segment::create(dir, base, None)
    }
}

/// Decodes the batch at `loc` into (offset, timestamp) per record. Under LogAppendTime every
/// record carries the batch's max timestamp, whatever its own field says.
fn batch_records(segment: &Segment, loc: &Located) -> Result<Vec<(i64, i64)>, LogError> {
    let mut bytes = Bytes::from(segment.read(loc.position, loc.size as usize)?);
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| {
        LogError::corrupt(format!(
            "cannot decode batch at offset {}: {e:#}",
            loc.base_offset
        ))
    })?;
    Ok(set
        .records
        .iter()
        .map(|r| match loc.timestamp_type {
            TimestampType::LogAppendTime => (r.offset, loc.max_timestamp),
            TimestampType::CreateTime => (r.offset, r.timestamp),
        })
        .collect())
}

/// The first record of the batch at `loc`, at or after `min_offset`, whose timestamp satisfies
/// `wanted`.
fn first_record(
    segment: &Segment,
    loc: &Located,
    min_offset: i64,
    wanted: impl Fn(i64) -> bool,
) -> Result<Option<(i64, i64)>, LogError> {
    Ok(batch_records(segment, loc)?
        .into_iter()
        .find(|&(offset, ts)| offset >= min_offset && wanted(ts)))
}

/// Removes a file we own during open, e.g. a leftover temporary file.
pub(crate) fn remove_leftover(path: &Path) -> Result<(), LogError> {
    tracing::info!(file = %path.display(), "removing leftover file");
    remove_if_exists(path)
}

/// Creates the partition directory if needed, fsyncing its parent so the new entry survives.
pub(crate) fn ensure_dir(dir: &Path) -> Result<bool, LogError> {
    if dir.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(dir).map_err(crate::error::io_err("create log directory", dir))?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(true)
}
