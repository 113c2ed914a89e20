//! One segment: a `.log` file of record batches plus its `.index` and `.timeindex`.
//!
//! A segment knows positions and offsets within itself; the [`Log`](crate::Log) decides when to
//! roll, what to validate and what to delete.

use std::{
    fs::{File, OpenOptions},
    io::IoSlice,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::UNIX_EPOCH,
};

use crate::{
    batch::{BatchHeader, NO_TIMESTAMP},
    config::LogConfig,
    error::{io_err, LogError},
    index::{remove_if_exists, Index, IndexEntry, OffsetEntry, TimeEntry},
    scan::{FileScanner, Scanned, FULL_CHUNK, HEADER_CHUNK},
    TimestampType,
};

/// File name of a segment file: the base offset zero-padded to 20 digits, as Kafka names them.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// A batch inside an append's blob, already validated and given its offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchMeta {
    /// Byte position in the blob.
    pub(crate) position: usize,
    pub(crate) size: usize,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
}

/// Where a batch sits in a segment, with the header fields lookups need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    pub(crate) position: u64,
    pub(crate) size: u64,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) timestamp_type: TimestampType,
}

impl Located {
    fn of(position: u64, header: &BatchHeader<'_>) -> Self {
        Located {
            position,
            size: header.size() as u64,
            base_offset: header.base_offset(),
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp(),
            timestamp_type: header.timestamp_type(),
        }
    }
}

/// The indexes of a segment plus the running state that decides their next entries. Kept apart
/// from the file handle so a scan can borrow the file while the indexes are updated.
#[derive(Debug)]
pub(crate) struct SegmentIndexes {
    base_offset: i64,
    pub(crate) offset: Index<OffsetEntry>,
    pub(crate) time: Index<TimeEntry>,
    /// Largest batch max timestamp seen; `NO_TIMESTAMP` if none.
    pub(crate) max_timestamp: i64,
    /// Last offset of the first batch whose max timestamp is `max_timestamp` (Kafka's "shallow"
    /// offset of the max timestamp); -1 if none.
    pub(crate) offset_of_max_timestamp: i64,
    /// Log bytes appended since the last offset-index entry.
    bytes_since_entry: u64,
}

impl SegmentIndexes {
    /// Accounts for one batch written at `position`, adding index entries as Kafka's
    /// `LogSegment.append` does: an offset entry (keyed by the batch's last offset) once more
    /// than `index.interval.bytes` were written since the last one, and at the same time a time
    /// entry if the max timestamp grew.
    pub(crate) fn on_batch(
        &mut self,
        position: u64,
        last_offset: i64,
        max_timestamp: i64,
        size: u64,
        config: &LogConfig,
    ) {
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.offset_of_max_timestamp = last_offset;
        }
        if self.bytes_since_entry > config.index_interval_bytes {
            let relative = u32::try_from(last_offset - self.base_offset);
            let position = u32::try_from(position);
            if let (Ok(relative_offset), Ok(position)) = (relative, position) {
                if self.offset.len() < config.max_index_entries(OffsetEntry::SIZE) {
                    self.offset.push(OffsetEntry {
                        relative_offset,
                        position,
                    });
                }
                self.maybe_append_time(false, config);
            }
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += size;
    }

    /// Appends (max timestamp so far, its offset) to the time index if the timestamp grew.
    /// `force` skips the full check: Kafka always records the final max when a segment becomes
    /// inactive, so a rolled segment's largest timestamp survives a restart.
    pub(crate) fn maybe_append_time(&mut self, force: bool, config: &LogConfig) {
        let last_ts = self.time.last().map_or(NO_TIMESTAMP, |e| e.timestamp);
        if self.max_timestamp <= last_ts {
            return;
        }
        if !force && self.time.len() >= config.max_index_entries(TimeEntry::SIZE) {
            return;
        }
        if let Ok(relative_offset) = u32::try_from(self.offset_of_max_timestamp - self.base_offset)
        {
            self.time.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset,
            });
        }
    }

    /// Empty indexes for a segment at `base_offset` whose files are `offset_path` and
    /// `time_path` (the cleaner writes a segment under temporary names).
    pub(crate) fn new(base_offset: i64, offset_path: PathBuf, time_path: PathBuf) -> Self {
        SegmentIndexes {
            base_offset,
            offset: Index::empty(offset_path),
            time: Index::empty(time_path),
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: -1,
            bytes_since_entry: 0,
        }
    }

    fn reset(&mut self) {
        self.offset.clear();
        self.time.clear();
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_entry = 0;
    }

    pub(crate) fn is_full(&self, config: &LogConfig) -> bool {
        self.offset.len() >= config.max_index_entries(OffsetEntry::SIZE)
            || self.time.len() >= config.max_index_entries(TimeEntry::SIZE)
    }
}

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    /// Shared with the fetches being sent from it ([`Segment::file_handle`]), so that deleting
    /// the segment does not pull the file from under them, and they cost no descriptor.
    log: Arc<File>,
    /// Bytes of whole batches in the file. Invariant: the file is exactly this long except
    /// transiently inside a write.
    pub(crate) size: u64,
    /// One past the last offset stored here (`base_offset` when empty). Exact for the segment
    /// that was scanned last; for others it is what their scan found.
    pub(crate) next_offset: i64,
    pub(crate) indexes: SegmentIndexes,
    /// When the segment was created, by the caller's clock; `None` until a clock reading is
    /// first seen after a reload, as Kafka restarts the segment.ms clock on load.
    pub(crate) created_ms: Option<i64>,
    /// Log bytes written since the last fsync.
    dirty: bool,
}

impl Segment {
    /// Creates the three files of a new, empty segment. The caller fsyncs the directory.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        now_ms: Option<i64>,
    ) -> Result<Self, LogError> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .map_err(io_err("create segment", &log_path))?;
        let mut segment = Segment::with_indexes(
            base_offset,
            log_path,
            log,
            Index::empty(dir.join(file_name(base_offset, "index"))),
            Index::empty(dir.join(file_name(base_offset, "timeindex"))),
        );
        segment.indexes.offset.create_file()?;
        segment.indexes.time.create_file()?;
        segment.created_ms = now_ms;
        Ok(segment)
    }

    /// Opens an existing segment. Returns it with `true` if both index files loaded as whole
    /// entries and pass [`Segment::indexes_sane`]; `false` means they must be rebuilt.
    pub(crate) fn open(dir: &Path, base_offset: i64) -> Result<(Self, bool), LogError> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(io_err("open segment", &log_path))?;
        let offset_path = dir.join(file_name(base_offset, "index"));
        let time_path = dir.join(file_name(base_offset, "timeindex"));
        let offset = Index::load(offset_path.clone())?;
        let time = Index::load(time_path.clone())?;
        let loaded = offset.is_some() && time.is_some();
        let mut segment = Segment::with_indexes(
            base_offset,
            log_path,
            log,
            offset.unwrap_or_else(|| Index::empty(offset_path)),
            time.unwrap_or_else(|| Index::empty(time_path)),
        );
        segment.size = segment
            .log
            .metadata()
            .map_err(io_err("stat segment", &segment.log_path))?
            .len();
        let sane = loaded && segment.indexes_sane().is_ok();
        Ok((segment, sane))
    }

    fn with_indexes(
        base_offset: i64,
        log_path: PathBuf,
        log: File,
        offset: Index<OffsetEntry>,
        time: Index<TimeEntry>,
    ) -> Self {
        let mut indexes = SegmentIndexes::new(base_offset, PathBuf::new(), PathBuf::new());
        indexes.offset = offset;
        indexes.time = time;
        Segment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size: 0,
            next_offset: base_offset,
            indexes,
            created_ms: None,
            dirty: false,
        }
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Kafka's index sanity check, a little stricter: entries strictly increasing, positions
    /// inside the file.
    pub(crate) fn indexes_sane(&self) -> Result<(), String> {
        let mut previous: Option<&OffsetEntry> = None;
        for entry in self.indexes.offset.entries() {
            if u64::from(entry.position) >= self.size {
                return Err(format!(
                    "index position {} past the log end",
                    entry.position
                ));
            }
            if let Some(p) = previous {
                if entry.relative_offset <= p.relative_offset || entry.position <= p.position {
                    return Err("offset index entries are not increasing".into());
                }
            }
            previous = Some(entry);
        }
        let time = self.indexes.time.entries();
        if time.windows(2).any(|w| {
            w[1].timestamp <= w[0].timestamp || w[1].relative_offset < w[0].relative_offset
        }) {
            return Err("time index entries are not increasing".into());
        }
        Ok(())
    }

    /// Re-derives the running state (next offset, max timestamp) from the indexes and a walk of
    /// the batches after the last offset-index entry. Cheap: at most an index interval plus one
    /// batch of headers. Returns false if the walk does not end exactly on a batch boundary at
    /// the end of the file, or disagrees with the indexes: the segment then needs [`recover`].
    ///
    /// [`recover`]: Segment::recover
    pub(crate) fn scan_tail(&mut self) -> Result<bool, LogError> {
        let base = self.base_offset;
        let (start, expect_last) = match self.indexes.offset.last() {
            Some(e) => (
                u64::from(e.position),
                Some(base + i64::from(e.relative_offset)),
            ),
            None => (0, None),
        };
        match self.indexes.time.last() {
            Some(e) => {
                self.indexes.max_timestamp = e.timestamp;
                self.indexes.offset_of_max_timestamp = base + i64::from(e.relative_offset);
            }
            None => {
                self.indexes.max_timestamp = NO_TIMESTAMP;
                self.indexes.offset_of_max_timestamp = -1;
            }
        }
        let mut scanner =
            FileScanner::new(&self.log, &self.log_path, start, self.size, HEADER_CHUNK);
        let mut next = base;
        let mut first = true;
        loop {
            let header = match scanner.next(false)? {
                Scanned::End => break,
                Scanned::Invalid { .. } => return Ok(false),
                Scanned::Batch { header, .. } => header,
            };
            if first && expect_last.is_some_and(|l| l != header.last_offset()) {
                return Ok(false);
            }
            first = false;
            if header.base_offset() < next || header.last_offset_delta() < 0 {
                return Ok(false);
            }
            let max_ts = header.max_timestamp();
            let idx = &mut self.indexes;
            if max_ts > idx.max_timestamp
                || (max_ts == idx.max_timestamp
                    && header.last_offset() < idx.offset_of_max_timestamp)
            {
                idx.max_timestamp = max_ts;
                idx.offset_of_max_timestamp = header.last_offset();
            }
            next = header.last_offset() + 1;
        }
        if expect_last.is_some() && first {
            // The last index entry points at the end of the file: not a batch.
            return Ok(false);
        }
        if self.indexes.offset_of_max_timestamp >= next {
            return Ok(false);
        }
        self.indexes.bytes_since_entry = self.size - start;
        self.next_offset = next;
        Ok(true)
    }

    /// Crash recovery of this segment: re-validates every batch (sizes, magic, CRC, increasing
    /// offsets), truncates the file at the first invalid or torn one and rebuilds both indexes.
    /// `on_batch` sees every valid batch (the log uses it for the leader-epoch cache).
    /// Returns the number of bytes truncated.
    pub(crate) fn recover(
        &mut self,
        config: &LogConfig,
        on_batch: &mut dyn FnMut(&BatchHeader<'_>),
    ) -> Result<u64, LogError> {
        let file_len = self
            .log
            .metadata()
            .map_err(io_err("stat segment", &self.log_path))?
            .len();
        self.indexes.reset();
        let mut scanner = FileScanner::new(&self.log, &self.log_path, 0, file_len, FULL_CHUNK);
        let mut next = self.base_offset;
        let mut valid = 0u64;
        loop {
            let (position, header) = match scanner.next(true)? {
                Scanned::End => break,
                Scanned::Invalid { position, reason } => {
                    tracing::warn!(segment = %self.log_path.display(), position, %reason, "torn or corrupt batch; truncating");
                    break;
                }
                Scanned::Batch { position, header } => (position, header),
            };
            let problem = if !header.crc_valid() {
                Some("CRC mismatch")
            } else if header.base_offset() < next || header.last_offset_delta() < 0 {
                Some("offsets do not increase")
            } else if header.last_offset() - self.base_offset > i64::from(i32::MAX) {
                Some("offset too far from the segment base")
            } else {
                None
            };
            if let Some(reason) = problem {
                tracing::warn!(segment = %self.log_path.display(), position, reason, "invalid batch; truncating");
                break;
            }
            on_batch(&header);
            let size = header.size() as u64;
            self.indexes.on_batch(
                position,
                header.last_offset(),
                header.max_timestamp(),
                size,
                config,
            );
            next = header.last_offset() + 1;
            valid = position + size;
        }
        let truncated = file_len - valid;
        if truncated > 0 {
            self.log
                .set_len(valid)
                .map_err(io_err("truncate segment", &self.log_path))?;
        }
        self.size = valid;
        self.next_offset = next;
        // Recovered data came from the page cache or disk; either way it has to be fsynced
        // before the recovery point may move past it.
        self.dirty = true;
        Ok(truncated)
    }

    /// Writes validated batches at the end of the file and indexes them. `pieces` are the
    /// batches' bytes in order, `len` bytes in all, written with positioned vectored writes (one
    /// for a request of up to 512 batches), so a leader can pass each patched header apart from
    /// its records, which stay in the request buffer. `metas` positions are relative to the
    /// first byte of `pieces`.
    pub(crate) fn append(
        &mut self,
        pieces: &mut [IoSlice<'_>],
        len: usize,
        metas: &[BatchMeta],
        config: &LogConfig,
    ) -> Result<(), LogError> {
        let start = self.size;
        if let Err(e) = write_all_vectored_at(&self.log, pieces, start) {
            // Cut off a partial write so the file still ends on a batch boundary. If even this
            // fails, the next append overwrites the garbage, and recovery would truncate it.
            if let Err(trunc) = self.log.set_len(start) {
                tracing::warn!(segment = %self.log_path.display(), error = %trunc, "could not cut a failed append");
            }
            return Err(io_err("append to", &self.log_path)(e));
        }
        self.dirty = true;
        for m in metas {
            self.indexes.on_batch(
                start + m.position as u64,
                m.last_offset,
                m.max_timestamp,
                m.size as u64,
                config,
            );
        }
        self.size += len as u64;
        if let Some(last) = metas.last() {
            self.next_offset = last.last_offset + 1;
        }
        Ok(())
    }

    /// File position from which to scan for `offset`: the entry of the largest indexed offset
    /// at or below it, else the start of the file.
    pub(crate) fn lookup(&self, offset: i64) -> u64 {
        let entries = self.indexes.offset.entries();
        let n =
            entries.partition_point(|e| self.base_offset + i64::from(e.relative_offset) <= offset);
        n.checked_sub(1)
            .map_or(0, |i| u64::from(entries[i].position))
    }

    /// The first batch at or after `start` whose last offset is >= `offset`.
    pub(crate) fn find_batch(&self, offset: i64, start: u64) -> Result<Option<Located>, LogError> {
        let mut scanner =
            FileScanner::new(&self.log, &self.log_path, start, self.size, HEADER_CHUNK);
        loop {
            match scanner.next(false)? {
                Scanned::End => return Ok(None),
                Scanned::Invalid { position, reason } => {
                    return Err(LogError::corrupt(format!(
                        "segment {} at position {position}: {reason}",
                        self.log_path.display()
                    )))
                }
                Scanned::Batch { position, header } => {
                    if header.last_offset() >= offset {
                        return Ok(Some(Located::of(position, &header)));
                    }
                }
            }
        }
    }

    /// Walks headers from `start`, calling `visit` for each until it returns false.
    pub(crate) fn visit_batches(
        &self,
        start: u64,
        visit: &mut dyn FnMut(&Located, &BatchHeader<'_>) -> bool,
    ) -> Result<(), LogError> {
        let mut scanner =
            FileScanner::new(&self.log, &self.log_path, start, self.size, HEADER_CHUNK);
        loop {
            match scanner.next(false)? {
                Scanned::End => return Ok(()),
                Scanned::Invalid { position, reason } => {
                    return Err(LogError::corrupt(format!(
                        "segment {} at position {position}: {reason}",
                        self.log_path.display()
                    )))
                }
                Scanned::Batch { position, header } => {
                    if !visit(&Located::of(position, &header), &header) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Offset of the time-index entry with the largest timestamp strictly below `timestamp`:
    /// every record up to that offset is older than `timestamp`, so a search may start after it.
    /// (Kafka looks up `<=`, which can skip an earlier record with an equal timestamp.)
    pub(crate) fn offset_before_timestamp(&self, timestamp: i64) -> Option<i64> {
        let entries = self.indexes.time.entries();
        let n = entries.partition_point(|e| e.timestamp < timestamp);
        n.checked_sub(1)
            .map(|i| self.base_offset + i64::from(entries[i].relative_offset))
    }

    /// Reads `len` bytes at `position` with one positioned read.
    /// The size and last offset of the batch starting at `position`, from its header alone;
    /// `None` at the end of the segment or where no whole, valid header is.
    pub(crate) fn batch_at(&self, position: u64) -> Result<Option<(u64, i64)>, LogError> {
        if position + crate::batch::HEADER_SIZE as u64 > self.size {
            return Ok(None);
        }
        let head = self.read(position, crate::batch::HEADER_SIZE)?;
        Ok(crate::batch::BatchHeader::parse(&head)
            .ok()
            .map(|h| (h.size() as u64, h.last_offset())))
    }

    /// The segment file, shared: it stays open while the handle lives.
    pub(crate) fn file_handle(&self) -> Arc<File> {
        self.log.clone()
    }

    pub(crate) fn read(&self, position: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0; len];
        self.log
            .read_exact_at(&mut buf, position)
            .map_err(io_err("read segment", &self.log_path))?;
        Ok(buf)
    }

    /// Drops every batch from the one containing `offset` on. Returns the new next offset:
    /// `offset` if it fell on a batch boundary, else the base of the batch it fell inside (a
    /// batch is never split).
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<i64, LogError> {
        let Some(batch) = self.find_batch(offset, self.lookup(offset))? else {
            self.next_offset = self.next_offset.min(offset);
            return Ok(offset);
        };
        let new_next = batch.base_offset.min(offset);
        self.log
            .set_len(batch.position)
            .map_err(io_err("truncate segment", &self.log_path))?;
        self.size = batch.position;
        self.dirty = true;
        let base = self.base_offset;
        self.indexes
            .offset
            .truncate_while(|e| u64::from(e.position) < batch.position);
        self.indexes
            .time
            .truncate_while(|e| base + i64::from(e.relative_offset) < batch.base_offset);
        if !self.scan_tail()? {
            return Err(LogError::corrupt(format!(
                "segment {} is inconsistent after truncation",
                self.log_path.display()
            )));
        }
        self.next_offset = self.next_offset.max(new_next);
        self.indexes.offset.persist(false)?;
        self.indexes.time.persist(false)?;
        Ok(self.next_offset)
    }

    /// Called when the segment stops being the active one, and on close: records the final
    /// max timestamp in the time index and brings the index files up to date.
    pub(crate) fn finish(&mut self, config: &LogConfig) -> Result<(), LogError> {
        self.indexes.maybe_append_time(true, config);
        self.indexes.offset.persist(false)?;
        self.indexes.time.persist(false)
    }

    /// Whether the segment has data or index bytes not yet fsynced.
    pub(crate) fn needs_flush(&self) -> bool {
        self.dirty
    }

    /// fsyncs the log file and both indexes.
    pub(crate) fn flush(&mut self) -> Result<(), LogError> {
        self.indexes.offset.persist(true)?;
        self.indexes.time.persist(true)?;
        if self.dirty {
            self.log
                .sync_data()
                .map_err(io_err("fsync segment", &self.log_path))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Removes the segment's files. The caller fsyncs the directory.
    pub(crate) fn delete(self) -> Result<(), LogError> {
        self.remove_files()
    }

    /// Unlinks the segment's files but keeps the open handle, so the segment stays readable
    /// until it is dropped (the cleaner replaces segments this way). The caller fsyncs the
    /// directory.
    pub(crate) fn remove_files(&self) -> Result<(), LogError> {
        remove_if_exists(&self.log_path)?;
        self.indexes.offset.delete_file()?;
        self.indexes.time.delete_file()
    }

    /// A second handle on the `.log` file, for reading it without borrowing the segment (the
    /// cleaner reads sealed segments while the log's lock is released).
    pub(crate) fn clone_file(&self) -> Result<File, LogError> {
        self.log
            .try_clone()
            .map_err(io_err("duplicate the handle of", &self.log_path))
    }

    /// Bytes the offset and time index files take (what Kafka's cleaner groups by).
    pub(crate) fn index_bytes(&self) -> (u64, u64) {
        (
            (self.indexes.offset.len() * OffsetEntry::SIZE) as u64,
            (self.indexes.time.len() * TimeEntry::SIZE) as u64,
        )
    }

    /// The timestamp retention compares with: the largest record timestamp, or the file's
    /// modification time when no record has one (Kafka's `LogSegment.largestTimestamp`).
    pub(crate) fn retention_timestamp(&self) -> i64 {
        if self.indexes.max_timestamp >= 0 {
            return self.indexes.max_timestamp;
        }
        self.log
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(NO_TIMESTAMP, |d| {
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            })
    }
}

/// Linux's limit on buffers per vectored write (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// `pwritev` until every byte of `pieces` is written at `offset` onwards, retrying short writes
/// and interruptions. `pieces` is consumed (advanced) as it goes.
fn write_all_vectored_at(
    file: &File,
    mut pieces: &mut [IoSlice<'_>],
    mut offset: u64,
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut pieces, 0); // skip leading empty pieces
    while !pieces.is_empty() {
        let batch = &pieces[..pieces.len().min(IOV_MAX)];
        let at =
            i64::try_from(offset).map_err(|_| std::io::Error::other("file offset overflow"))?;
        match nix::sys::uio::pwritev(file, batch, at) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the file took no bytes",
                ))
            }
            Ok(n) => {
                offset += n as u64;
                IoSlice::advance_slices(&mut pieces, n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
