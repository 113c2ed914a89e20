//! Opening a log: listing the directory, loading or recovering segments, and rebuilding the
//! leader-epoch cache and producer state.
//!
//! # Expected flow
//!
//! 1. Create the directory if needed; remove our leftovers (`*.deleted`, temporary checkpoint
//!    and snapshot files, the cleaner's `*.cleaned` files and index `*.swap` files) and index
//!    files whose `.log` is gone. Other files are left alone.
//! 2. Finish a cleaner swap a crash interrupted after its commit point: a `<B>.log.swap`
//!    replaces the segments with a base in `[B, max(N, B + 1))`, `N` being one past its last
//!    offset (see `Log::swap_cleaned` for why that range is exact); its indexes are rebuilt.
//! 3. Open every segment and load its index files.
//! 4. Decide which segments to recover: after a clean shutdown none; otherwise the one holding
//!    the recovery point and every later one (all of them without a recovery point).
//! 5. A segment that is not recovered is still checked: its indexes must be sane and a walk
//!    from its last index entry must end exactly at the end of its file. If not, it is
//!    recovered after all.
//! 6. Recovery re-validates every batch and truncates at the first bad or torn one; when that
//!    happens in the unflushed range, every later segment is deleted, as in Kafka.
//! 7. Recovered segments are fsynced, so the recovery point becomes the log end.
//! 8. Leader epochs found in recovered batches extend the cache; the cache is cut to the log.
//! 9. Producer state = newest usable snapshot at or below the log end + replay of the batch
//!    headers after it.
//!
//! # Guarantees
//!
//! Every whole, valid batch before the first torn or corrupt one survives; nothing after it
//! does. Offsets never go backwards: a log start offset beyond the recovered data restarts the
//! log empty at the log start rather than reusing offsets.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use super::{
    clean::{load_cleaner_checkpoint, CLEANER_CHECKPOINT},
    ensure_dir, remove_leftover, Log, Scratch,
};
use crate::{
    checkpoint::{fsync_dir, tmp_path},
    cleaner::{is_cleaned_leftover, rename, SWAP_SUFFIX},
    config::LogConfig,
    epoch::{LeaderEpochCache, LEADER_EPOCH_CHECKPOINT},
    error::{io_err, LogError},
    producer::ProducerStateManager,
    scan::{FileScanner, Scanned, HEADER_CHUNK},
    segment::{file_name, Segment},
};

/// What the directory holds, by offset.
#[derive(Debug, Default)]
struct Listing {
    bases: BTreeSet<i64>,
    snapshots: BTreeMap<i64, PathBuf>,
    /// Bases of `<base>.log.swap` files: cleaner swaps past their commit point.
    swaps: Vec<i64>,
    /// Files were removed, so the directory needs an fsync.
    changed: bool,
}

impl Log {
    /// Opens (or creates) the partition directory `dir`.
    ///
    /// `recovery_point` is the offset up to which data is known to be flushed (`None`: recover
    /// everything); `log_start_offset` comes from the broker's checkpoint (`None`: the first
    /// segment's base); `clean_shutdown` says the log dir had a clean-shutdown marker, so only
    /// cheap checks run. See the module docs for the steps.
    ///
    /// The high watermark starts at the log start offset; the broker sets it.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        recovery_point: Option<i64>,
        log_start_offset: Option<i64>,
        clean_shutdown: bool,
    ) -> Result<Log, LogError> {
        let created = ensure_dir(dir)?;
        let mut listing = list_dir(dir)?;
        complete_swaps(dir, &mut listing)?;
        let mut dir_changed = created || listing.changed;
        let epochs = LeaderEpochCache::load(dir)?;

        let mut segments = Vec::with_capacity(listing.bases.len());
        let mut sane = Vec::with_capacity(listing.bases.len());
        for &base in &listing.bases {
            let (segment, ok) = Segment::open(dir, base)?;
            segments.push(segment);
            sane.push(ok);
        }
        let recover_from = match (clean_shutdown, recovery_point) {
            (true, _) => segments.len(),
            (false, None) => 0,
            (false, Some(rp)) => segments
                .partition_point(|s| s.base_offset <= rp)
                .saturating_sub(1),
        };

        // Epochs seen in recovered batches, newer than the checkpoint knows.
        let mut new_epochs: Vec<(i32, i64)> = Vec::new();
        let mut latest_epoch = epochs.latest_epoch().unwrap_or(-1);
        let mut i = 0;
        while i < segments.len() {
            let unflushed = i >= recover_from;
            let needs_recovery = unflushed || !sane[i] || !segments[i].scan_tail()?;
            if needs_recovery {
                if !unflushed {
                    tracing::warn!(segment = %segments[i].log_path().display(), "segment failed its sanity check; recovering it");
                }
                let truncated = segments[i].recover(&config, &mut |h| {
                    if h.partition_leader_epoch() > latest_epoch {
                        latest_epoch = h.partition_leader_epoch();
                        new_epochs.push((latest_epoch, h.base_offset()));
                    }
                })?;
                if i + 1 < segments.len() {
                    // An inactive segment's time index ends with its max timestamp, as if it
                    // had been rolled normally.
                    segments[i].finish(&config)?;
                }
                if truncated > 0 {
                    tracing::warn!(segment = %segments[i].log_path().display(), truncated, "truncated invalid tail");
                    if unflushed && i + 1 < segments.len() {
                        for later in segments.drain(i + 1..) {
                            later.delete()?;
                        }
                        dir_changed = true;
                    }
                }
            }
            i += 1;
        }

        let first_base = segments.first().map(|s| s.base_offset);
        let leo = segments.last().map(|s| s.next_offset);
        let log_start = log_start_offset
            .unwrap_or(first_base.unwrap_or(0))
            .max(first_base.unwrap_or(i64::MIN))
            .max(0);
        if leo.is_none_or(|leo| log_start > leo) {
            // No data, or less than the log start: start empty at the log start.
            if leo.is_some() {
                tracing::warn!(dir = %dir.display(), log_start, "log start offset is past the recovered data; starting empty");
            }
            for segment in segments.drain(..) {
                segment.delete()?;
            }
            segments.push(Segment::create(dir, log_start, None)?);
            dir_changed = true;
            new_epochs.clear();
        }
        if dir_changed {
            fsync_dir(dir)?;
        }

        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: log_start,
            high_watermark: log_start,
            recovery_point: log_start,
            epochs,
            producers: ProducerStateManager::default(),
            snapshots: std::mem::take(&mut listing.snapshots),
            last_flush_ms: None,
            scratch: Scratch::default(),
            first_dirty_offset: load_cleaner_checkpoint(dir).unwrap_or(log_start),
            truncations: 0,
            cleaning: false,
            closed: false,
        };
        for (epoch, start) in new_epochs {
            log.epochs.assign(epoch, start)?;
        }
        let leo = log.log_end_offset();
        log.epochs.truncate_from_end(leo)?;
        log.epochs.truncate_from_start(log.log_start_offset)?;
        // fsync what recovery rebuilt (and rewrite its index files) before claiming it durable.
        log.flush()?;
        log.rebuild_producer_state()?;
        tracing::debug!(
            dir = %dir.display(),
            log_start = log.log_start_offset,
            log_end = leo,
            segments = log.segments.len(),
            "opened log"
        );
        Ok(log)
    }

    /// Rebuilds producer state from the newest usable snapshot at or below the log end and the
    /// batch headers after it; snapshots past the log end are deleted first.
    pub(super) fn rebuild_producer_state(&mut self) -> Result<(), LogError> {
        let leo = self.log_end_offset();
        self.delete_snapshots_after(leo)?;
        let (state, from) = match ProducerStateManager::load_latest(&mut self.snapshots, leo)? {
            Some((state, offset)) => (state, offset),
            None => (ProducerStateManager::default(), i64::MIN),
        };
        self.producers = state;
        let first = if from == i64::MIN {
            0
        } else {
            self.segment_index_for(from)
        };
        let producers = &mut self.producers;
        for segment in &self.segments[first..] {
            let start = if segment.base_offset <= from {
                segment.lookup(from)
            } else {
                0
            };
            segment.visit_batches(start, &mut |loc, header| {
                if loc.base_offset >= from {
                    producers.replay(header);
                }
                true
            })?;
        }
        Ok(())
    }
}

/// Lists segment and snapshot files, removing leftovers this crate (or Kafka) left behind.
fn list_dir(dir: &Path) -> Result<Listing, LogError> {
    let mut listing = Listing::default();
    let mut index_files = Vec::new();
    let epoch_tmp = tmp_path(&dir.join(LEADER_EPOCH_CHECKPOINT));
    let cleaner_tmp = tmp_path(&dir.join(CLEANER_CHECKPOINT));
    for entry in fs::read_dir(dir).map_err(io_err("list log directory", dir))? {
        let entry = entry.map_err(io_err("list log directory", dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Kafka renames a segment to `*.deleted` before removing it; a crash can leave them.
        // A cleaned segment that was never committed, or index files of an interrupted swap
        // (they are rebuilt from the swapped-in segment).
        let cleaner_leftover = is_cleaned_leftover(&name)
            || name.ends_with(&format!(".index.{SWAP_SUFFIX}"))
            || name.ends_with(&format!(".timeindex.{SWAP_SUFFIX}"));
        if name.ends_with(".deleted")
            || name.ends_with(".snapshot.tmp")
            || path == epoch_tmp
            || path == cleaner_tmp
            || cleaner_leftover
        {
            remove_leftover(&path)?;
            listing.changed = true;
            continue;
        }
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(offset) = stem.parse::<i64>() else {
            continue;
        };
        match suffix {
            "log" => {
                listing.bases.insert(offset);
            }
            "index" | "timeindex" => index_files.push((offset, path)),
            "snapshot" => {
                listing.snapshots.insert(offset, path);
            }
            s if s == format!("log.{SWAP_SUFFIX}") => listing.swaps.push(offset),
            _ => {}
        }
    }
    for (offset, path) in index_files {
        if !listing.bases.contains(&offset) {
            tracing::warn!(file = %path.display(), "index file without a segment");
            remove_leftover(&path)?;
            listing.changed = true;
        }
    }
    Ok(listing)
}

/// Step 2 of the module docs: finishes the cleaner swaps a crash interrupted after their commit
/// point, the rename to `<base>.log.swap`.
fn complete_swaps(dir: &Path, listing: &mut Listing) -> Result<(), LogError> {
    listing.swaps.sort_unstable();
    for base in std::mem::take(&mut listing.swaps) {
        let swap = dir.join(format!("{}.{SWAP_SUFFIX}", file_name(base, "log")));
        let next = next_offset_of(&swap, base)?;
        let replaced: Vec<i64> = listing
            .bases
            .range(base..next.max(base + 1))
            .copied()
            .collect();
        tracing::warn!(segment = %swap.display(), ?replaced, "completing an interrupted swap of a cleaned segment");
        for old in replaced {
            for kind in ["log", "index", "timeindex"] {
                remove_leftover(&dir.join(file_name(old, kind)))?;
            }
            listing.bases.remove(&old);
        }
        // Whatever index files carry the base now belong to the replaced segment.
        for kind in ["index", "timeindex"] {
            remove_leftover(&dir.join(file_name(base, kind)))?;
        }
        rename(&swap, &dir.join(file_name(base, "log")))?;
        listing.bases.insert(base);
        listing.changed = true;
    }
    Ok(())
}

/// One past the last offset of the whole batches at the start of a segment file; `base` if it
/// holds none. A torn tail is left for recovery to cut.
fn next_offset_of(path: &Path, base: i64) -> Result<i64, LogError> {
    let file = fs::File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    let mut scanner = FileScanner::new(&file, path, 0, len, HEADER_CHUNK);
    let mut next = base;
    while let Scanned::Batch { header, .. } = scanner.next(false)? {
        next = next.max(header.last_offset() + 1);
    }
    Ok(next)
}
