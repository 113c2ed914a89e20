//! The log's side of compaction: whether a log needs cleaning, the snapshot a pass works on,
//! the crash-safe swap of a cleaned group, and the cleaner checkpoint. The pass itself is in
//! [`crate::cleaner`].

use std::path::Path;

use super::Log;
use crate::{
    checkpoint::{fsync_dir, read_cleaner_offset, write_cleaner_offset},
    cleaner::{
        self, rename, CleanInput, CleanLimits, CleanStats, CleanTask, CleanedGroup,
        SegmentSnapshot, SwapStep, CLEANED_SUFFIX, SWAP_SUFFIX,
    },
    config::millis,
    error::LogError,
    segment::{file_name, Segment},
};

/// The per-partition cleaner checkpoint: the first dirty offset.
pub(crate) const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// Where a log's dirty section is and how dirty the log is (Kafka's `LogToClean`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cleanable {
    /// First offset not yet cleaned.
    pub(crate) first_dirty: i64,
    /// First offset the pass may not clean: a segment base.
    pub(crate) first_uncleanable: i64,
    /// Bytes of the segments below the first dirty offset.
    pub(crate) clean_bytes: u64,
    /// Bytes of the segments from the one holding the first dirty offset up to the first
    /// uncleanable one.
    pub(crate) cleanable_bytes: u64,
    /// The oldest dirty record is older than `max.compaction.lag.ms`.
    pub(crate) need_compaction_now: bool,
}

impl Cleanable {
    /// Dirty bytes over all bytes; 0 for an empty log.
    pub(crate) fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.cleanable_bytes;
        if total == 0 {
            0.0
        } else {
            self.cleanable_bytes as f64 / total as f64
        }
    }

    /// Kafka's `grabFilthiestCompactedLog` filter: past max lag with something to clean, or
    /// dirtier than `min.cleanable.dirty.ratio` (strictly).
    pub(crate) fn should_clean(&self, min_ratio: f64) -> bool {
        (self.need_compaction_now && self.cleanable_bytes > 0) || self.ratio() > min_ratio
    }
}

impl Log {
    /// Runs one cleaning pass if the log is compacted and due (see [`crate::cleaner`]),
    /// holding `&mut self` throughout. The broker, which shares logs behind a mutex, uses
    /// [`crate::clean_shared`] instead so the lock is not held while segments are rewritten.
    ///
    /// A log is due when, with the dirty section running from the cleaner checkpoint to the first
    /// uncleanable offset — the lowest of the high watermark, the active segment's base and the
    /// first segment whose newest record is younger than `min.compaction.lag.ms`, rounded down
    /// to a segment base (Kafka's `LogCleanerManager.cleanableOffsets`) —
    ///
    /// - dirty bytes / (clean + dirty bytes) > `min.cleanable.dirty.ratio`, or
    /// - the first batch of some dirty segment is older than `max.compaction.lag.ms` and there
    ///   are dirty bytes (Kafka's `maxCompactionDelay`).
    ///
    /// `Ok(None)`: nothing was cleaned (not compacted, not due, or the log changed meanwhile).
    pub fn clean(&mut self, now_ms: i64) -> Result<Option<CleanStats>, LogError> {
        cleaner::run(self, now_ms, CleanLimits::default())
    }

    /// Kafka's `cleanableOffsets` and `LogToClean` (see [`Log::clean`]).
    pub(crate) fn cleanable(&self, now_ms: i64) -> Result<Cleanable, LogError> {
        let log_start = self.log_start_offset;
        // A checkpoint outside the log (truncation, DeleteRecords): everything is dirty.
        let first_dirty = if self.first_dirty_offset < log_start
            || self.first_dirty_offset > self.log_end_offset()
        {
            log_start
        } else {
            self.first_dirty_offset
        };
        let active = self.segments.len() - 1;
        let first_dirty_segment = self.segment_index_for(first_dirty);
        let dirty_sealed = &self.segments[first_dirty_segment.min(active)..active];

        let mut uncleanable = self.high_watermark.min(self.segments[active].base_offset);
        let min_lag = millis(self.config.min_compaction_lag_ms);
        if min_lag > 0 {
            let horizon = now_ms.saturating_sub(min_lag);
            if let Some(young) = dirty_sealed
                .iter()
                .find(|s| s.indexes.max_timestamp > horizon)
            {
                uncleanable = uncleanable.min(young.base_offset);
            }
        }
        let uncleanable = uncleanable.max(first_dirty);
        let first_uncleanable = self.segments[self.segment_index_for(uncleanable)].base_offset;

        let clean_bytes = self
            .segments
            .iter()
            .take_while(|s| s.base_offset < first_dirty)
            .map(|s| s.size)
            .sum();
        let from = self.segment_index_for(first_dirty.min(first_uncleanable));
        let cleanable_bytes = self.segments[from..]
            .iter()
            .take_while(|s| s.base_offset < first_uncleanable)
            .map(|s| s.size)
            .sum();

        let mut need_compaction_now = false;
        if self.config.max_compaction_lag_ms != std::time::Duration::MAX {
            let clean_until = now_ms.saturating_sub(millis(self.config.max_compaction_lag_ms));
            for segment in dirty_sealed {
                let first_batch = segment.find_batch(segment.base_offset, 0)?;
                if first_batch.is_some_and(|b| b.max_timestamp > 0 && b.max_timestamp < clean_until)
                {
                    need_compaction_now = true;
                    break;
                }
            }
        }
        Ok(Cleanable {
            first_dirty,
            first_uncleanable,
            clean_bytes,
            cleanable_bytes,
            need_compaction_now,
        })
    }

    /// Step 1 of a pass: decides, and snapshots the sealed segments up to the first
    /// uncleanable offset. At most one pass runs per log at a time.
    pub(crate) fn begin_clean(
        &mut self,
        now_ms: i64,
        limits: CleanLimits,
    ) -> Result<Option<CleanTask>, LogError> {
        if !self.config.cleanup_compact || self.cleaning || self.closed {
            return Ok(None);
        }
        let c = self.cleanable(now_ms)?;
        if !c.should_clean(self.config.min_cleanable_dirty_ratio) {
            return Ok(None);
        }
        self.first_dirty_offset = c.first_dirty;
        let count = self
            .segments
            .iter()
            .take_while(|s| s.base_offset < c.first_uncleanable)
            .count();
        let mut snapshots = Vec::with_capacity(count);
        for (i, segment) in self.segments[..count].iter().enumerate() {
            let file = segment.clone_file()?;
            let modified = file.metadata().and_then(|m| m.modified()).ok();
            let (offset_index_bytes, time_index_bytes) = segment.index_bytes();
            snapshots.push(SegmentSnapshot {
                base_offset: segment.base_offset,
                file,
                path: segment.log_path().to_path_buf(),
                size: segment.size,
                upper_bound: self.upper_bound(i),
                offset_index_bytes,
                time_index_bytes,
                modified,
            });
        }
        self.cleaning = true;
        tracing::debug!(dir = %self.dir.display(), first_dirty = c.first_dirty, first_uncleanable = c.first_uncleanable, ratio = c.ratio(), max_lag = c.need_compaction_now, "cleaning log");
        Ok(Some(CleanTask::new(CleanInput {
            dir: self.dir.clone(),
            config: self.config.clone(),
            now_ms,
            limits,
            first_dirty: c.first_dirty,
            first_uncleanable: c.first_uncleanable,
            segments: snapshots,
            producer_last_offsets: self.producers.last_data_offsets().collect(),
            truncations: self.truncations,
        })))
    }

    /// Step 5 of a pass: replaces the segments a cleaned group was made from with it. Returns
    /// `Ok(false)`, changing nothing, if the log is not as the pass saw it (truncated, closed,
    /// or one of the segments deleted or grown).
    ///
    /// # The swap protocol (Kafka's `LocalLog.replaceSegments`, one group at a time)
    ///
    /// The group's segments are `B` (whose base the cleaned segment takes) and the later ones;
    /// `N` is one past the last offset the cleaned segment holds.
    ///
    /// 1. Delete the group's later segments whose base is `>= N`: every record in them was
    ///    compacted away, so the log reads the same with or without them. This makes the
    ///    cleaned segment's own offsets say which segments it replaces: exactly those with a
    ///    base in `[B, max(N, B + 1))`.
    /// 2. Rename the `.cleaned` index files to `.swap`, then `<B>.log.cleaned` to
    ///    `<B>.log.swap` and fsync the directory: the commit point.
    /// 3. Delete the replaced segments' files.
    /// 4. Rename the `.swap` files to their final names; fsync the directory.
    ///
    /// A crash before step 2's log rename leaves `.cleaned` (and perhaps index `.swap`) files,
    /// which `Log::open` deletes: the log is the old one, less segments that held nothing
    /// live. A crash after it leaves `<B>.log.swap`, which `Log::open` finishes: it deletes the
    /// segments with a base in `[B, max(N, B + 1))`, renames the swap file and rebuilds its
    /// indexes.
    ///
    /// In memory the old segments stay in the list — readable through their open handles even
    /// once unlinked — until the new one is open, so a failure midway leaves the log readable.
    pub(crate) fn swap_cleaned(
        &mut self,
        task: &mut CleanTask,
        group: CleanedGroup,
    ) -> Result<bool, LogError> {
        let Some(first) = self.group_unchanged(task, &group) else {
            return Ok(false);
        };
        let last = first + group.replaces.len();
        let base = group.base_offset;
        let files = &group.files;

        let mut dropped = false;
        for segment in &self.segments[first + 1..last] {
            if segment.base_offset >= group.next_offset {
                segment.remove_files()?;
                dropped = true;
            }
        }
        if dropped {
            fsync_dir(&self.dir)?;
        }
        crash_point(task, SwapStep::DroppedEmptied)?;

        for kind in ["index", "timeindex"] {
            rename(
                &files.path(kind, CLEANED_SUFFIX),
                &files.path(kind, SWAP_SUFFIX),
            )?;
        }
        crash_point(task, SwapStep::IndexesSwapped)?;
        rename(
            &files.path("log", CLEANED_SUFFIX),
            &files.path("log", SWAP_SUFFIX),
        )?;
        // fsync the directory: the rename is the commit point and must survive a power failure.
        fsync_dir(&self.dir)?;
        task.take_pending();
        crash_point(task, SwapStep::Committed)?;

        for segment in &self.segments[first..last] {
            segment.remove_files()?;
        }
        crash_point(task, SwapStep::OldDeleted)?;
        for kind in ["index", "timeindex"] {
            rename(
                &files.path(kind, SWAP_SUFFIX),
                &self.dir.join(file_name(base, kind)),
            )?;
        }
        crash_point(task, SwapStep::IndexesRenamed)?;
        rename(
            &files.path("log", SWAP_SUFFIX),
            &self.dir.join(file_name(base, "log")),
        )?;
        fsync_dir(&self.dir)?;

        let segment = open_cleaned(&self.dir, base, &self.config)?;
        // Dropping the old segments closes their handles; their files are already gone.
        self.segments.splice(first..last, std::iter::once(segment));
        self.prune_snapshots()?;
        tracing::debug!(dir = %self.dir.display(), base, replaced = group.replaces.len(), bytes = group.bytes, "swapped in cleaned segment");
        Ok(true)
    }

    /// Index of the group's first segment if the group is still in the log as the pass saw it.
    fn group_unchanged(&self, task: &CleanTask, group: &CleanedGroup) -> Option<usize> {
        if self.closed || task.input.truncations != self.truncations {
            return None;
        }
        let first = self
            .segments
            .iter()
            .position(|s| s.base_offset == group.base_offset)?;
        let last = first + group.replaces.len();
        // Never the active segment.
        if last >= self.segments.len() {
            return None;
        }
        let same = self.segments[first..last]
            .iter()
            .zip(&group.replaces)
            .all(|(s, &(base, size))| s.base_offset == base && s.size == size);
        same.then_some(first)
    }

    /// Step 6 of a pass, also run when it stops early: allows the next pass and, if this one
    /// completed, checkpoints its end as the new first dirty offset.
    pub(crate) fn finish_clean(
        &mut self,
        task: &CleanTask,
        completed: bool,
    ) -> Result<(), LogError> {
        self.cleaning = false;
        if completed && task.input.truncations == self.truncations && !self.closed {
            self.first_dirty_offset = task.end_offset;
            self.write_cleaner_checkpoint()?;
        }
        Ok(())
    }

    /// Kafka's `maybeTruncateCheckpoint`: after a truncation to `offset`, nothing at or above it
    /// is clean any more.
    pub(super) fn truncate_cleaner_checkpoint(&mut self, offset: i64) -> Result<(), LogError> {
        self.truncations += 1;
        if self.first_dirty_offset > offset {
            self.first_dirty_offset = offset;
            self.write_cleaner_checkpoint()?;
        }
        Ok(())
    }

    fn write_cleaner_checkpoint(&self) -> Result<(), LogError> {
        write_cleaner_offset(&self.dir.join(CLEANER_CHECKPOINT), self.first_dirty_offset)
    }

    /// The first dirty offset of this log's cleaner, as last checkpointed.
    pub fn cleaner_checkpoint(&self) -> i64 {
        self.first_dirty_offset
    }
}

/// Reads the cleaner checkpoint at open. An unreadable file only costs a full re-clean, so it
/// is logged and treated as missing rather than failing the open.
pub(super) fn load_cleaner_checkpoint(dir: &Path) -> Option<i64> {
    let path = dir.join(CLEANER_CHECKPOINT);
    match read_cleaner_offset(&path) {
        Ok(offset) => offset,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable cleaner checkpoint; the whole log counts as dirty");
            None
        }
    }
}

/// Opens a freshly swapped-in segment, rebuilding its indexes if they do not check out.
fn open_cleaned(dir: &Path, base: i64, config: &crate::LogConfig) -> Result<Segment, LogError> {
    let (mut segment, sane) = Segment::open(dir, base)?;
    if !sane || !segment.scan_tail()? {
        tracing::warn!(segment = %segment.log_path().display(), "cleaned segment's indexes do not check out; rebuilding them");
        segment.recover(config, &mut |_| {})?;
        segment.finish(config)?;
        segment.flush()?;
    }
    Ok(segment)
}

/// A test's crash injection: fails right after `step` if the task asks for it.
#[cfg(test)]
fn crash_point(task: &CleanTask, step: SwapStep) -> Result<(), LogError> {
    if task.crash_after != Some(step) {
        return Ok(());
    }
    Err(LogError::Io {
        op: "continue after a simulated crash at",
        path: std::path::PathBuf::from(format!("{step:?}")),
        source: std::io::Error::other("simulated crash"),
    })
}

#[cfg(not(test))]
#[inline(always)]
fn crash_point(_task: &CleanTask, _step: SwapStep) -> Result<(), LogError> {
    Ok(())
}
