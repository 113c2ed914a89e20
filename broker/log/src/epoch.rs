//! The leader-epoch cache: which offset each leader epoch started at, persisted to
//! `leader-epoch-checkpoint` whenever it changes (Kafka's `LeaderEpochFileCache`).

use std::path::{Path, PathBuf};

use crate::{
    checkpoint::{read_leader_epochs, write_leader_epochs},
    error::LogError,
};

/// File name Kafka uses in the partition directory.
pub(crate) const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Invariant: epochs and start offsets both strictly increase.
#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    pub(crate) fn load(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let mut entries = read_leader_epochs(&path)?;
        // A hand-edited or foreign file could break the invariant; keep the consistent prefix.
        let keep = entries
            .windows(2)
            .position(|w| w[1].0 <= w[0].0 || w[1].1 <= w[0].1)
            .map_or(entries.len(), |i| i + 1);
        entries.truncate(keep);
        Ok(LeaderEpochCache { path, entries })
    }

    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest known one.
    /// Entries starting at or after `start_offset` are dropped first, as Kafka's `assign` does.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<(), LogError> {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return Ok(());
        }
        self.entries.retain(|&(_, start)| start < start_offset);
        self.entries.push((epoch, start_offset));
        self.persist()
    }

    /// Forgets epochs that start at or after `end_offset` (the log was truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), LogError> {
        let keep = self
            .entries
            .partition_point(|&(_, start)| start < end_offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        self.persist()
    }

    /// The log now starts at `start_offset`: drop epochs wholly below it and move the start of
    /// the one that covers it up to `start_offset`.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> Result<(), LogError> {
        let below = self
            .entries
            .partition_point(|&(_, start)| start < start_offset);
        if below == 0 {
            return Ok(());
        }
        let covering = self.entries[below - 1].0;
        let next_starts_here = self.entries.get(below).is_some_and(|e| e.1 == start_offset);
        self.entries.drain(..below);
        if !next_starts_here {
            self.entries.insert(0, (covering, start_offset));
        }
        self.persist()
    }

    fn persist(&self) -> Result<(), LogError> {
        write_leader_epochs(&self.path, &self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_truncate_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cache = LeaderEpochCache::load(dir.path()).expect("load");
        cache.assign(0, 0).expect("assign");
        cache.assign(0, 5).expect("same epoch is a no-op");
        cache.assign(2, 10).expect("assign");
        cache.assign(5, 30).expect("assign");
        assert_eq!(cache.entries(), &[(0, 0), (2, 10), (5, 30)]);
        cache.truncate_from_end(30).expect("truncate");
        assert_eq!(cache.entries(), &[(0, 0), (2, 10)]);
        cache.truncate_from_start(12).expect("truncate");
        assert_eq!(cache.entries(), &[(2, 12)]);
        let reloaded = LeaderEpochCache::load(dir.path()).expect("reload");
        assert_eq!(reloaded.entries(), &[(2, 12)]);
    }
}
