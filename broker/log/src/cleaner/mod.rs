//! Log compaction: Kafka's log cleaner for topics with `cleanup.policy=compact` (or
//! `compact,delete`).
//!
//! A record with key K at offset O is obsolete once the log holds a record with key K at a higher
//! offset. The cleaner removes obsolete records, and tombstones (null value) once they have been
//! kept for `delete.retention.ms`; it never renumbers: compaction leaves gaps in the offsets.
//!
//! The log is a *clean* section (already compacted) followed by a *dirty* section; the
//! boundary, the first dirty offset, is kept in `cleaner-offset-checkpoint` in the partition
//! directory. The dirty section ends at the first uncleanable offset (see [`Log::clean`]).
//!
//! # Expected flow (one pass over one log)
//!
//! 1. *Choose* (under the log's lock, [`Log::clean`]'s rules): is the dirty ratio above
//!    `min.cleanable.dirty.ratio`, or is the oldest dirty record older than
//!    `max.compaction.lag.ms`? If so, take a snapshot of the sealed segments (duplicated file
//!    handles; sealed segments never change in place) and the last data offset of every
//!    idempotent producer.
//! 2. *Map* (no lock): read the dirty section and record, per key, the offset of its latest
//!    record. The map is bounded in memory; if it fills up, this pass ends where it stopped and
//!    the next pass goes on from there.
//! 3. *Group* (no lock): consecutive segments from the start of the log up to the end of the map
//!    are grouped so that each group fits one segment (`segment.bytes`, `segment.index.bytes`,
//!    32-bit relative offsets) — Kafka's `groupSegmentsBySize`.
//! 4. *Clean* each group (no lock) into `<base>.log.cleaned` (+ `.index.cleaned`,
//!    `.timeindex.cleaned`), keeping per batch the records whose offset is the latest for their
//!    key, then fsync.
//! 5. *Swap* each cleaned group in (under the lock, [`crate::Log`]'s `swap_cleaned`): check the
//!    group's segments are still there unchanged and the log was not truncated meanwhile, then
//!    replace them crash-safely (see the swap protocol on `swap_cleaned` and its recovery in
//!    `Log::open`).
//! 6. *Checkpoint* the new first dirty offset (the end of the map).
//!
//! # Which records survive (`Filter::retain`, Kafka's `Cleaner.shouldRetainRecord`)
//!
//! - A record past the end of the map: always (it was not looked at).
//! - A record without a key: never. Appends refuse them on a compacted topic; they can only be
//!   left from before the topic became compacted, and Kafka drops them too.
//! - Otherwise the record must be the latest for its key, and a tombstone must not have passed
//!   its batch's delete horizon.
//!
//! # Tombstones and the delete horizon (KIP-534, Kafka 3.1+)
//!
//! When the cleaner rewrites a batch that keeps a tombstone and has no delete horizon yet, it
//! stamps one: attribute bit 6 set and `baseTimestamp = now + delete.retention.ms`
//! (`MemoryRecords.filterTo`: `needToSetDeleteHorizon`). A tombstone in a batch whose horizon has
//! passed is dropped by the next pass. So a tombstone always survives the pass that first sees
//! it, and then at least `delete.retention.ms`: the window in which a consumer that started
//! reading from the beginning still sees the delete. As in Kafka, a pass still has to be
//! triggered (dirty ratio or max lag) for the tombstone to go.
//!
//! # Batches
//!
//! A batch whose records all survive and that needs no horizon is copied byte for byte.
//! Otherwise its survivors are re-encoded into one batch with the original base offset, last
//! offset delta, producer id, epoch, base sequence, leader epoch, flags and codec
//! (`MemoryRecords.buildRetainedRecordsInto`). A batch left with no record is dropped — unless
//! it is the last data batch of an idempotent producer the log still tracks, which is kept as an
//! empty batch so that the producer's sequence survives a rebuild of producer state from the log
//! (`BatchRetention.RETAIN_EMPTY`). Control batches are copied as they are: there are no
//! transactions yet, so none needs removing.
//!
//! Decompression is bounded: a batch may expand to at most [`DECOMPRESSION_RATIO`] times the
//! larger of its size and `max.message.bytes`. A batch that would expand further — or whose
//! records do not decode although its CRC is right — is logged and kept as it is, and its keys
//! do not enter the map. Keeping a record too many is always safe; dropping one is not.
//!
//! # Guarantees
//!
//! - Offsets never change: every surviving record keeps its offset, every batch its base and
//!   last offset. Reads see gaps, never renumbered or reordered records.
//! - The active segment and anything at or above the high watermark are never cleaned.
//! - A crash at any step leaves a log that opens to either the old segments or the cleaned
//!   one for each group, never a mix that loses or duplicates an offset.
//! - A truncation (a follower diverging) while a pass runs makes the pass stop before its next
//!   swap; what was cleaned before the truncation stays valid.
//!
//! # Differences from Kafka
//!
//! - Kafka keeps one `cleaner-offset-checkpoint` per log directory, keyed by topic-partition;
//!   this crate keeps one per partition directory, so it travels with the partition and the log
//!   crate needs nothing from the broker.
//! - The key map holds whole keys (bounded by [`DEFAULT_MAP_BYTES`]) where Kafka holds 16-byte
//!   MD5 digests: no collisions, at the price of a smaller map for long keys.
//! - One pass cleans one log; the broker walks every compacted log each cleaner tick, rather than
//!   picking the single filthiest log per thread iteration.
//!
//! [`Log::clean`]: crate::Log::clean

mod codec;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    ops::Range,
    path::{Path, PathBuf},
    time::SystemTime,
};

use kafka_protocol::records::Record;
use parking_lot::Mutex;

use crate::{
    batch::BatchHeader,
    config::{millis, LogConfig},
    error::{io_err, LogError},
    index::remove_if_exists,
    scan::{FileScanner, Scanned, FULL_CHUNK},
    segment::{file_name, SegmentIndexes},
    Log,
};

/// How far a batch may expand when decompressed, as a multiple of the larger of its stored
/// size and `max.message.bytes`.
pub const DECOMPRESSION_RATIO: usize = 64;

/// Memory the key map of one pass may use (Kafka's `log.cleaner.dedupe.buffer.size` default).
pub const DEFAULT_MAP_BYTES: usize = 128 * 1024 * 1024;

/// Per-entry bookkeeping the map's memory accounting charges on top of the key bytes: the
/// table slot (boxed key pointer and length, offset, control byte) and the key's allocation.
const MAP_ENTRY_OVERHEAD: usize = 48;

/// Suffix of the files a group is cleaned into.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// Suffix of a cleaned group's files once the swap is committed.
pub(crate) const SWAP_SUFFIX: &str = "swap";

/// What one cleaning pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// First dirty offset when the pass began.
    pub first_dirty_offset: i64,
    /// The new first dirty offset: everything below it is clean.
    pub end_offset: i64,
    /// Segments rewritten (the clean section included).
    pub segments_read: usize,
    /// Segments that replaced them.
    pub segments_written: usize,
    /// Bytes of the segments rewritten.
    pub bytes_read: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_written: u64,
    /// Records in the rewritten segments.
    pub records_read: u64,
    /// Records that survived.
    pub records_retained: u64,
    /// Tombstones dropped because their delete horizon had passed.
    pub tombstones_removed: u64,
    /// Batches kept as they were because their records could not be decoded within the
    /// decompression bound.
    pub batches_not_decoded: u64,
}

/// Tunables of a pass that are broker-wide in Kafka rather than topic configs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CleanLimits {
    /// Bound of the key map's memory.
    pub(crate) map_bytes: usize,
}

impl Default for CleanLimits {
    fn default() -> Self {
        CleanLimits {
            map_bytes: DEFAULT_MAP_BYTES,
        }
    }
}

/// A sealed segment as the cleaner sees it, readable without the log's lock.
#[derive(Debug)]
pub(crate) struct SegmentSnapshot {
    pub(crate) base_offset: i64,
    /// A duplicated handle: stays readable even if retention unlinks the file meanwhile.
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// One past the largest offset the segment can hold: the next segment's base.
    pub(crate) upper_bound: i64,
    pub(crate) offset_index_bytes: u64,
    pub(crate) time_index_bytes: u64,
    pub(crate) modified: Option<SystemTime>,
}

/// Key → offset of the latest record with that key in the dirty section.
#[derive(Debug, Default)]
struct OffsetMap {
    offsets: HashMap<Box<[u8]>, i64>,
    /// Charged memory: key bytes plus [`MAP_ENTRY_OVERHEAD`] per key.
    bytes: usize,
    /// Last offset of the last batch whose keys are all in the map; -1 before any.
    latest_offset: i64,
}

/// The files a group is written to, under the temporary suffix given.
#[derive(Debug, Clone)]
pub(crate) struct GroupFiles {
    dir: PathBuf,
    base_offset: i64,
}

impl GroupFiles {
    /// `<base>.<kind>.<suffix>`, e.g. `00000000000000000000.log.cleaned`.
    pub(crate) fn path(&self, kind: &str, suffix: &str) -> PathBuf {
        self.dir
            .join(format!("{}.{suffix}", file_name(self.base_offset, kind)))
    }

    /// Removes whatever is left of the group's temporary files under `suffix`.
    pub(crate) fn remove(&self, suffix: &str) -> Result<(), LogError> {
        for kind in ["log", "index", "timeindex"] {
            remove_if_exists(&self.path(kind, suffix))?;
        }
        Ok(())
    }
}

/// A group written to `.cleaned` files, ready to be swapped in.
#[derive(Debug)]
pub(crate) struct CleanedGroup {
    pub(crate) base_offset: i64,
    /// (base offset, size) of each segment it replaces, oldest first.
    pub(crate) replaces: Vec<(i64, u64)>,
    /// One past the last offset the cleaned segment holds; its base offset if it is empty.
    pub(crate) next_offset: i64,
    pub(crate) files: GroupFiles,
    pub(crate) bytes: u64,
}

/// What a pass starts from, taken under the log's lock by `Log::begin_clean`.
#[derive(Debug)]
pub(crate) struct CleanInput {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) now_ms: i64,
    pub(crate) limits: CleanLimits,
    /// The dirty section the map is built from: `[first_dirty, first_uncleanable)`.
    pub(crate) first_dirty: i64,
    pub(crate) first_uncleanable: i64,
    /// Every segment from the first up to the last cleanable one, oldest first.
    pub(crate) segments: Vec<SegmentSnapshot>,
    /// Last data offset of each idempotent producer the log tracks.
    pub(crate) producer_last_offsets: HashSet<i64>,
    /// The log's truncation count when the pass began.
    pub(crate) truncations: u64,
}

/// One cleaning pass over one log, from its snapshot to its last swap.
#[derive(Debug)]
pub(crate) struct CleanTask {
    pub(crate) input: CleanInput,
    map: OffsetMap,
    /// One past the last offset this pass cleans; the next first dirty offset.
    pub(crate) end_offset: i64,
    /// Groups still to clean, as index ranges into `input.segments`.
    groups: Vec<Range<usize>>,
    pub(crate) stats: CleanStats,
    /// A group written but not swapped in yet, whose files go if the pass stops.
    pending: Option<GroupFiles>,
    /// Test hook: make `swap_cleaned` fail right after this step, as a crash would.
    #[cfg(test)]
    pub(crate) crash_after: Option<SwapStep>,
}

/// The steps of a swap (see `Log::swap_cleaned`), named for crash injection in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwapStep {
    /// Segments wholly compacted away were deleted.
    DroppedEmptied,
    /// The index files were renamed `.swap`, the log file not yet.
    IndexesSwapped,
    /// The log file was renamed `.swap`: the commit point.
    Committed,
    /// The replaced segments' files were deleted.
    OldDeleted,
    /// The index files got their final names, the log file not yet.
    IndexesRenamed,
}

impl CleanTask {
    pub(crate) fn new(input: CleanInput) -> Self {
        let first_dirty = input.first_dirty;
        CleanTask {
            input,
            map: OffsetMap {
                latest_offset: -1,
                ..OffsetMap::default()
            },
            end_offset: first_dirty,
            groups: Vec::new(),
            stats: CleanStats {
                first_dirty_offset: first_dirty,
                end_offset: first_dirty,
                ..CleanStats::default()
            },
            pending: None,
            #[cfg(test)]
            crash_after: None,
        }
    }

    /// Step 2: the key → latest offset map over the dirty section. Sets `end_offset`.
    pub(crate) fn build_offset_map(&mut self) -> Result<(), LogError> {
        let (first_dirty, first_uncleanable) =
            (self.input.first_dirty, self.input.first_uncleanable);
        let mut full = false;
        for segment in &self.input.segments {
            if segment.upper_bound <= first_dirty || segment.base_offset >= first_uncleanable {
                continue;
            }
            let mut scanner =
                FileScanner::new(&segment.file, &segment.path, 0, segment.size, FULL_CHUNK);
            loop {
                let (at, header) = match scanner.next(true)? {
                    Scanned::End => break,
                    Scanned::Invalid { position, reason } => {
                        return Err(corrupt_at(segment, position, &reason))
                    }
                    Scanned::Batch { position, header } => (position, header),
                };
                if header.last_offset() < first_dirty {
                    continue;
                }
                if header.base_offset() >= first_uncleanable {
                    break;
                }
                if !header.crc_valid() {
                    return Err(corrupt_at(segment, at, "CRC mismatch"));
                }
                if !header.is_control() {
                    let limit = decompression_limit(header.size(), &self.input.config);
                    match codec::decode_records(header.bytes(), limit) {
                        Ok(records) => {
                            if !self
                                .map
                                .try_add(&records, first_dirty, self.input.limits.map_bytes)
                            {
                                full = true;
                                break;
                            }
                        }
                        Err(e) => {
                            // Not mapping its keys is safe: older records of those keys survive.
                            tracing::warn!(segment = %segment.path.display(), offset = header.base_offset(), error = %e, "cleaner cannot decode batch; keeping it as it is");
                        }
                    }
                }
                self.map.latest_offset = header.last_offset();
            }
            if full {
                break;
            }
        }
        self.end_offset = if full {
            // Kafka: the pass ends after the last batch whose keys all made it into the map.
            (self.map.latest_offset + 1).max(first_dirty)
        } else {
            first_uncleanable
        };
        if full {
            tracing::info!(dir = %self.input.dir.display(), end = self.end_offset, keys = self.map.offsets.len(), "cleaner key map is full; this pass stops early");
        }
        self.stats.end_offset = self.end_offset;
        self.plan_groups();
        Ok(())
    }

    /// Step 3: Kafka's `groupSegmentsBySize` over the segments below `end_offset`.
    fn plan_groups(&mut self) {
        let count = self
            .input
            .segments
            .iter()
            .take_while(|s| s.base_offset < self.end_offset)
            .count();
        let max_size = self.input.config.effective_segment_bytes();
        let max_index = self.input.config.segment_index_bytes;
        let mut groups = Vec::new();
        let mut start = 0;
        while start < count {
            let first = &self.input.segments[start];
            let (mut size, mut index, mut time) =
                (first.size, first.offset_index_bytes, first.time_index_bytes);
            let mut end = start + 1;
            while end < count {
                let next = &self.input.segments[end];
                // The worst-case last offset of `next`: just below the segment after it.
                let next_last = self
                    .input
                    .segments
                    .get(end + 1)
                    .map_or(self.input.first_uncleanable, |s| s.base_offset)
                    - 1;
                let fits = size + next.size <= max_size
                    && index + next.offset_index_bytes <= max_index
                    && time + next.time_index_bytes <= max_index
                    && (next.size == 0 || next_last - first.base_offset <= i64::from(i32::MAX));
                if !fits {
                    break;
                }
                size += next.size;
                index += next.offset_index_bytes;
                time += next.time_index_bytes;
                end += 1;
            }
            groups.push(start..end);
            start = end;
        }
        // Cleaned in order, popped from the back.
        groups.reverse();
        self.groups = groups;
    }

    /// Step 4: cleans the next group into `.cleaned` files, or `None` when all are done.
    pub(crate) fn clean_next_group(&mut self) -> Result<Option<CleanedGroup>, LogError> {
        let Some(range) = self.groups.pop() else {
            return Ok(None);
        };
        let base_offset = self.input.segments[range.start].base_offset;
        let files = GroupFiles {
            dir: self.input.dir.clone(),
            base_offset,
        };
        self.pending = Some(files.clone());
        let log_path = files.path("log", CLEANED_SUFFIX);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(io_err("create cleaned segment", &log_path))?;
        let mut out = BufWriter::new(file);
        let mut indexes = SegmentIndexes::new(
            base_offset,
            files.path("index", CLEANED_SUFFIX),
            files.path("timeindex", CLEANED_SUFFIX),
        );
        let mut position = 0u64;
        let mut next_offset = base_offset;
        let mut buf = Vec::new();
        let filter = Filter {
            map: &self.map,
            now_ms: self.input.now_ms,
            config: &self.input.config,
            producer_last_offsets: &self.input.producer_last_offsets,
        };
        let stats = &mut self.stats;
        for i in range.clone() {
            let segment = &self.input.segments[i];
            let mut scanner =
                FileScanner::new(&segment.file, &segment.path, 0, segment.size, FULL_CHUNK);
            loop {
                let (at, header) = match scanner.next(true)? {
                    Scanned::End => break,
                    Scanned::Invalid { position, reason } => {
                        return Err(corrupt_at(segment, position, &reason))
                    }
                    Scanned::Batch { position, header } => (position, header),
                };
                if !header.crc_valid() {
                    return Err(corrupt_at(segment, at, "CRC mismatch"));
                }
                buf.clear();
                let Some(max_timestamp) = filter.apply(segment, &header, &mut buf, stats) else {
                    continue;
                };
                let size = buf.len() as u64;
                if position + size > i32::MAX as u64 {
                    return Err(LogError::corrupt(format!(
                        "cleaned segment {} would grow past 2 GiB",
                        log_path.display()
                    )));
                }
                out.write_all(&buf)
                    .map_err(io_err("write cleaned segment", &log_path))?;
                indexes.on_batch(
                    position,
                    header.last_offset(),
                    max_timestamp,
                    size,
                    &self.input.config,
                );
                position += size;
                next_offset = header.last_offset() + 1;
            }
            stats.segments_read += 1;
            stats.bytes_read += segment.size;
        }
        let file = out
            .into_inner()
            .map_err(|e| io_err("write cleaned segment", &log_path)(e.into_error()))?;
        // Durable before the swap can be committed; keep the replaced segments' modification
        // time, which retention falls back on, as Kafka does.
        file.sync_all()
            .map_err(io_err("fsync cleaned segment", &log_path))?;
        if let Some(modified) = self.input.segments[range.end - 1].modified {
            if let Err(e) = file.set_modified(modified) {
                tracing::debug!(file = %log_path.display(), error = %e, "could not keep the modification time");
            }
        }
        indexes.maybe_append_time(true, &self.input.config);
        indexes.offset.persist(true)?;
        indexes.time.persist(true)?;
        self.stats.segments_written += 1;
        self.stats.bytes_written += position;
        Ok(Some(CleanedGroup {
            base_offset,
            replaces: self.input.segments[range]
                .iter()
                .map(|s| (s.base_offset, s.size))
                .collect(),
            next_offset,
            files,
            bytes: position,
        }))
    }

    /// The group written but not yet swapped in, now swapped in or given up.
    pub(crate) fn take_pending(&mut self) -> Option<GroupFiles> {
        self.pending.take()
    }

    /// Removes the files of a group that was written but will not be swapped in.
    pub(crate) fn discard_pending(&mut self) {
        if let Some(files) = self.pending.take() {
            if let Err(e) = files.remove(CLEANED_SUFFIX) {
                tracing::warn!(error = %e, "could not remove a cleaned segment that was not swapped in");
            }
        }
    }
}

/// The per-record decisions of a pass, borrowed from its task while a group is written.
struct Filter<'a> {
    map: &'a OffsetMap,
    now_ms: i64,
    config: &'a LogConfig,
    producer_last_offsets: &'a HashSet<i64>,
}

impl Filter<'_> {
    /// Decides what of one batch survives and writes that to `out`: the batch as it is, its
    /// surviving records re-encoded, an empty batch, or nothing (`None`). Returns the max
    /// timestamp of what was written.
    fn apply(
        &self,
        segment: &SegmentSnapshot,
        header: &BatchHeader<'_>,
        out: &mut Vec<u8>,
        stats: &mut CleanStats,
    ) -> Option<i64> {
        let count = u64::try_from(header.record_count()).unwrap_or(0);
        stats.records_read += count;
        let verbatim = |out: &mut Vec<u8>| {
            out.extend_from_slice(header.bytes());
            Some(header.max_timestamp())
        };
        if header.is_control() {
            stats.records_retained += count;
            return verbatim(out);
        }
        let limit = decompression_limit(header.size(), self.config);
        let records = match codec::decode_records(header.bytes(), limit) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(segment = %segment.path.display(), offset = header.base_offset(), error = %e, "cleaner cannot decode batch; keeping it as it is");
                stats.batches_not_decoded += 1;
                stats.records_retained += count;
                return verbatim(out);
            }
        };
        let horizon = header.has_delete_horizon().then(|| header.base_timestamp());
        let horizon_passed = horizon.is_some_and(|h| self.now_ms >= h);
        let mut kept: Vec<&Record> = Vec::with_capacity(records.len());
        for record in &records {
            if self.retain(record, horizon_passed) {
                kept.push(record);
            } else if record.value.is_none() && record.key.is_some() && self.is_latest(record) {
                stats.tombstones_removed += 1;
            }
        }
        stats.records_retained += kept.len() as u64;
        let keeps_tombstone = kept.iter().any(|r| r.value.is_none());
        let needs_horizon = keeps_tombstone && horizon.is_none();
        if kept.len() == records.len() && !needs_horizon {
            return verbatim(out);
        }
        if kept.is_empty()
            && !(header.has_producer_id()
                && self.producer_last_offsets.contains(&header.last_offset()))
        {
            return None;
        }
        let delete_horizon = if needs_horizon {
            Some(
                self.now_ms
                    .saturating_add(millis(self.config.delete_retention_ms)),
            )
        } else {
            horizon
        };
        match codec::write_batch(header, &kept, codec::Rewrite { delete_horizon }, out) {
            Ok(max_timestamp) => Some(max_timestamp),
            Err(e) => {
                tracing::warn!(segment = %segment.path.display(), offset = header.base_offset(), error = %e, "cleaner cannot re-encode batch; keeping it as it is");
                stats.records_retained += (records.len() - kept.len()) as u64;
                out.clear();
                verbatim(out)
            }
        }
    }

    /// Kafka's `Cleaner.shouldRetainRecord` (see the module docs).
    fn retain(&self, record: &Record, horizon_passed: bool) -> bool {
        if record.offset > self.map.latest_offset {
            return true;
        }
        if record.key.is_none() {
            return false;
        }
        self.is_latest(record) && (record.value.is_some() || !horizon_passed)
    }

    /// Whether no later record with the same key is in the map.
    fn is_latest(&self, record: &Record) -> bool {
        let found = record
            .key
            .as_deref()
            .and_then(|k| self.map.offsets.get(k))
            .copied()
            .unwrap_or(-1);
        record.offset >= found
    }
}

/// How far a batch of `size` bytes may expand when decompressed.
fn decompression_limit(size: usize, config: &LogConfig) -> usize {
    size.max(config.max_message_bytes)
        .saturating_mul(DECOMPRESSION_RATIO)
}

impl OffsetMap {
    /// Adds the keyed records at or after `first_dirty` of one batch, unless that would take
    /// the map past `limit` bytes while it already holds something. Returns whether it did.
    fn try_add(&mut self, records: &[Record], first_dirty: i64, limit: usize) -> bool {
        let keyed = || {
            records
                .iter()
                .filter(move |r| r.offset >= first_dirty)
                .filter_map(|r| r.key.as_deref().map(|k| (k, r.offset)))
        };
        // Upper bound: every key new.
        let worst: usize = keyed().map(|(k, _)| k.len() + MAP_ENTRY_OVERHEAD).sum();
        if !self.offsets.is_empty() && self.bytes.saturating_add(worst) > limit {
            return false;
        }
        for (key, offset) in keyed() {
            match self.offsets.get_mut(key) {
                Some(latest) => *latest = (*latest).max(offset),
                None => {
                    self.bytes += key.len() + MAP_ENTRY_OVERHEAD;
                    self.offsets.insert(key.into(), offset);
                }
            }
        }
        true
    }
}

fn corrupt_at(segment: &SegmentSnapshot, position: u64, reason: &str) -> LogError {
    LogError::corrupt(format!(
        "cleaner: segment {} at position {position}: {reason}",
        segment.path.display()
    ))
}

/// Access to a log for the phases of a pass that need it: a `&mut Log` held throughout, or a
/// mutex locked per phase so appends and reads go on while groups are being cleaned.
pub(crate) trait LogAccess {
    /// The log, locked if it is shared.
    fn log(&mut self) -> impl std::ops::DerefMut<Target = Log> + '_;
}

impl LogAccess for &mut Log {
    fn log(&mut self) -> impl std::ops::DerefMut<Target = Log> + '_ {
        &mut **self
    }
}

impl LogAccess for &Mutex<Log> {
    fn log(&mut self) -> impl std::ops::DerefMut<Target = Log> + '_ {
        self.lock()
    }
}

/// Runs one cleaning pass on a log the broker shares behind a mutex, holding the lock only to
/// choose and snapshot, to swap each cleaned group in, and to checkpoint — not while the map is
/// built or groups are rewritten. `Ok(None)`: the log is not compacted or not dirty enough.
pub fn clean_shared(log: &Mutex<Log>, now_ms: i64) -> Result<Option<CleanStats>, LogError> {
    run(log, now_ms, CleanLimits::default())
}

/// One pass: the flow in the module docs.
pub(crate) fn run(
    mut access: impl LogAccess,
    now_ms: i64,
    limits: CleanLimits,
) -> Result<Option<CleanStats>, LogError> {
    run_with(&mut access, now_ms, limits)
}

fn run_with(
    access: &mut impl LogAccess,
    now_ms: i64,
    limits: CleanLimits,
) -> Result<Option<CleanStats>, LogError> {
    let Some(mut task) = access.log().begin_clean(now_ms, limits)? else {
        return Ok(None);
    };
    let outcome = clean_and_swap(access, &mut task);
    task.discard_pending();
    let completed = matches!(outcome, Ok(true));
    access.log().finish_clean(&task, completed)?;
    match outcome {
        Ok(true) => {
            tracing::debug!(
                first_dirty = task.stats.first_dirty_offset,
                end = task.stats.end_offset,
                bytes_read = task.stats.bytes_read,
                bytes_written = task.stats.bytes_written,
                "cleaned log"
            );
            Ok(Some(task.stats))
        }
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Steps 2–5. `Ok(false)`: the log changed under the pass (truncated, or a segment deleted)
/// and it stopped; the groups swapped in so far stay.
fn clean_and_swap(access: &mut impl LogAccess, task: &mut CleanTask) -> Result<bool, LogError> {
    task.build_offset_map()?;
    while let Some(group) = task.clean_next_group()? {
        if !access.log().swap_cleaned(task, group)? {
            tracing::info!(dir = %task.input.dir.display(), "log changed during cleaning; pass stopped");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether a file name is a cleaner's temporary file (a group written but never swapped in),
/// which `Log::open` removes.
pub(crate) fn is_cleaned_leftover(name: &str) -> bool {
    name.ends_with(&format!(".{CLEANED_SUFFIX}"))
}

/// Renames `from` to `to`, mapping the error.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), LogError> {
    fs::rename(from, to).map_err(io_err("rename", from))
}
