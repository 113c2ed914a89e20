//! Sparse offset and time indexes, kept in memory and appended to their files with plain writes.
//!
//! Kafka memory-maps its index files; unsafe code is forbidden here, so each index lives in a
//! `Vec` and the file is a copy of it. Entries are appended to the file lazily (on flush, roll
//! and close) rather than on every produce: an index is only trusted after a clean shutdown or
//! below the recovery point, and both of those mean a flush wrote it. Files are exact-sized:
//! `entries * SIZE` bytes, no pre-allocation to trim.
//!
//! Formats, as in Kafka:
//! - `.index`: relative offset u32 BE + file position u32 BE (8 bytes);
//! - `.timeindex`: timestamp i64 BE + relative offset u32 BE (12 bytes).

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use crate::{
    batch::{be_i64, be_u32},
    error::{io_err, LogError},
};

/// One fixed-size index entry.
pub(crate) trait IndexEntry: Copy {
    /// Bytes per entry in the file.
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

/// `.index` entry: the batch whose last offset is `base + relative_offset` starts at `position`.
/// (Kafka keys entries by the batch's last offset since 2.x; lookups scan forward from the
/// entry, so either key would find the batch.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: be_u32(bytes, 0),
            position: be_u32(bytes, 4),
        }
    }
}

/// `.timeindex` entry: the largest timestamp of any record up to and including offset
/// `base + relative_offset` is `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        TimeEntry {
            timestamp: be_i64(bytes, 0),
            relative_offset: be_u32(bytes, 8),
        }
    }
}

/// An index file and its in-memory entries.
///
/// Invariant: the file holds exactly `entries[..on_disk]` once `trim_file` is false.
#[derive(Debug)]
pub(crate) struct Index<E> {
    path: PathBuf,
    entries: Vec<E>,
    /// How many leading entries the file already holds.
    on_disk: usize,
    /// The file may hold more than `on_disk` entries (after a truncation or a rebuild) and must
    /// be cut to size before the next append.
    trim_file: bool,
    /// Bytes were written since the last fsync.
    unsynced: bool,
}

impl<E: IndexEntry> Index<E> {
    /// A new, empty index whose file (if any) will be overwritten.
    pub(crate) fn empty(path: PathBuf) -> Self {
        Index {
            path,
            entries: Vec::new(),
            on_disk: 0,
            trim_file: true,
            unsynced: false,
        }
    }

    /// Reads the file. `Ok(None)` if it is missing or not a whole number of entries, which
    /// means the index must be rebuilt from the log.
    pub(crate) fn load(path: PathBuf) -> Result<Option<Self>, LogError> {
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read index", &path)(e)),
        };
        if bytes.len() % E::SIZE != 0 {
            return Ok(None);
        }
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Some(Index {
            path,
            on_disk: entries.len(),
            entries,
            trim_file: false,
            unsynced: false,
        }))
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn push(&mut self, entry: E) {
        self.entries.push(entry);
    }

    /// Keeps only the entries for which `keep` holds; `keep` must be true for a prefix.
    pub(crate) fn truncate_while(&mut self, keep: impl Fn(&E) -> bool) {
        let len = self.entries.partition_point(keep);
        if len < self.entries.len() {
            self.entries.truncate(len);
            if self.on_disk > len {
                self.on_disk = len;
                self.trim_file = true;
            }
        }
    }

    /// Drops every entry (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.on_disk = 0;
        self.trim_file = true;
    }

    /// Writes the entries the file lacks, one write, and fsyncs the file if `sync`.
    pub(crate) fn persist(&mut self, sync: bool) -> Result<(), LogError> {
        let pending = self.on_disk < self.entries.len() || self.trim_file;
        if !(pending || (sync && self.unsynced)) {
            return Ok(());
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(io_err("open index", &self.path))?;
        if pending {
            let start = (self.on_disk * E::SIZE) as u64;
            if self.trim_file {
                file.set_len(start)
                    .map_err(io_err("truncate index", &self.path))?;
            }
            let mut buf = Vec::with_capacity((self.entries.len() - self.on_disk) * E::SIZE);
            for entry in &self.entries[self.on_disk..] {
                entry.encode(&mut buf);
            }
            file.write_all_at(&buf, start)
                .map_err(io_err("write index", &self.path))?;
            self.on_disk = self.entries.len();
            self.trim_file = false;
            self.unsynced = true;
        }
        if sync {
            file.sync_data()
                .map_err(io_err("fsync index", &self.path))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Creates the file empty (for a new segment, so the layout matches Kafka's from the start).
    pub(crate) fn create_file(&mut self) -> Result<(), LogError> {
        File::create(&self.path).map_err(io_err("create index", &self.path))?;
        self.on_disk = 0;
        self.trim_file = false;
        Ok(())
    }

    /// Removes the file; a missing file is not an error.
    pub(crate) fn delete_file(&self) -> Result<(), LogError> {
        remove_if_exists(&self.path)
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_appends_then_trims_after_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.index");
        let mut index = Index::<OffsetEntry>::empty(path.clone());
        for i in 1..=4u32 {
            index.push(OffsetEntry {
                relative_offset: i * 10,
                position: i * 100,
            });
        }
        index.persist(true).expect("persist");
        assert_eq!(fs::metadata(&path).expect("stat").len(), 32);
        index.truncate_while(|e| e.relative_offset < 30);
        index.push(OffsetEntry {
            relative_offset: 35,
            position: 250,
        });
        index.persist(false).expect("persist");
        let reloaded = Index::<OffsetEntry>::load(path)
            .expect("load")
            .expect("whole entries");
        let offsets: Vec<u32> = reloaded
            .entries()
            .iter()
            .map(|e| e.relative_offset)
            .collect();
        assert_eq!(offsets, vec![10, 20, 35]);
        assert_eq!(reloaded.entries()[2].position, 250);
    }

    #[test]
    fn a_file_that_is_not_whole_entries_must_be_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.timeindex");
        fs::write(&path, [0u8; 13]).expect("write");
        assert!(Index::<TimeEntry>::load(path).expect("load").is_none());
        assert!(Index::<TimeEntry>::load(dir.path().join("missing"))
            .expect("load")
            .is_none());
    }
}
