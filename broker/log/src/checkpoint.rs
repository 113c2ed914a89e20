//! Kafka's text checkpoint files, written atomically.
//!
//! Both formats Kafka keeps in text share one frame: a version line (`0`), a count line, then one
//! entry per line with space-separated fields.
//!
//! - offset checkpoints (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`,
//!   `replication-offset-checkpoint`): `<topic> <partition> <offset>`;
//! - the per-partition `leader-epoch-checkpoint`: `<epoch> <start offset>`.
//!
//! A write goes to `<file>.tmp`, is fsynced, renamed over the file, and the directory is fsynced,
//! so a crash leaves either the old file or the new one, never a torn mix.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
};

use crate::error::{io_err, LogError};

/// The only version of the text checkpoint format Kafka has.
const VERSION: u32 = 0;

/// Reads an offset checkpoint file. A missing file reads as empty, as in Kafka, where the broker
/// creates the file empty on first start.
pub fn read_offsets(path: &Path) -> Result<Vec<(String, i32, i64)>, LogError> {
    read_entries(path, |fields| {
        let [topic, partition, offset] = fields else {
            return None;
        };
        Some((
            (*topic).to_owned(),
            partition.parse().ok()?,
            offset.parse().ok()?,
        ))
    })
}

/// Atomically replaces an offset checkpoint file with `entries` (topic, partition, offset).
pub fn write_offsets(path: &Path, entries: &[(String, i32, i64)]) -> Result<(), LogError> {
    let mut text = header(entries.len());
    for (topic, partition, offset) in entries {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    write_atomic(path, text.as_bytes())
}

/// Reads a `leader-epoch-checkpoint` file as (epoch, start offset) pairs; missing reads as empty.
pub fn read_leader_epochs(path: &Path) -> Result<Vec<(i32, i64)>, LogError> {
    read_entries(path, |fields| {
        let [epoch, offset] = fields else {
            return None;
        };
        Some((epoch.parse().ok()?, offset.parse().ok()?))
    })
}

/// Atomically replaces a `leader-epoch-checkpoint` file.
pub fn write_leader_epochs(path: &Path, entries: &[(i32, i64)]) -> Result<(), LogError> {
    let mut text = header(entries.len());
    for (epoch, offset) in entries {
        text.push_str(&format!("{epoch} {offset}\n"));
    }
    write_atomic(path, text.as_bytes())
}

/// Reads the per-partition cleaner checkpoint (`cleaner-offset-checkpoint`): the first dirty
/// offset, `None` if the file is missing or empty.
pub(crate) fn read_cleaner_offset(path: &Path) -> Result<Option<i64>, LogError> {
    let entries = read_entries(path, |fields| {
        let [offset] = fields else {
            return None;
        };
        offset.parse::<i64>().ok()
    })?;
    Ok(entries.first().copied())
}

/// Atomically replaces the per-partition cleaner checkpoint with `offset`.
pub(crate) fn write_cleaner_offset(path: &Path, offset: i64) -> Result<(), LogError> {
    let mut text = header(1);
    text.push_str(&format!("{offset}\n"));
    write_atomic(path, text.as_bytes())
}

fn header(count: usize) -> String {
    format!("{VERSION}\n{count}\n")
}

/// Parses the common frame and hands each entry's whitespace-split fields to `parse_entry`.
fn read_entries<T>(
    path: &Path,
    parse_entry: impl Fn(&[&str]) -> Option<T>,
) -> Result<Vec<T>, LogError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read checkpoint", path)(e)),
    };
    let corrupt = |reason: String| LogError::CorruptFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some(v) if v.parse::<u32>().ok() == Some(VERSION) => {}
        other => return Err(corrupt(format!("unsupported version line {other:?}"))),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing or malformed entry count".into()))?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for n in 0..count {
        let line = lines
            .next()
            .ok_or_else(|| corrupt(format!("expected {count} entries, found {n}")))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let entry =
            parse_entry(&fields).ok_or_else(|| corrupt(format!("malformed entry {line:?}")))?;
        entries.push(entry);
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(corrupt(format!("more than the {count} entries announced")));
    }
    Ok(entries)
}

/// Writes `contents` to `path` so that a crash leaves either the old or the new file.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), LogError> {
    let tmp = tmp_path(path);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(contents).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    if let Some(dir) = path.parent() {
        // fsync the directory: otherwise the rename can be lost on power failure.
        fsync_dir(dir)?;
    }
    Ok(())
}

/// The temporary name [`write_atomic`] writes to: `<file>.tmp`, as Kafka names it.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// fsyncs a directory so that entries created, renamed or removed in it survive a power failure.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_kafkas_text_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("recovery-point-offset-checkpoint");
        let entries = vec![("orders".to_owned(), 0, 42), ("orders".to_owned(), 3, 7)];
        write_offsets(&path, &entries).expect("write");
        let text = fs::read_to_string(&path).expect("read back");
        assert_eq!(text, "0\n2\norders 0 42\norders 3 7\n");
        assert_eq!(read_offsets(&path).expect("parse"), entries);
        assert!(
            !tmp_path(&path).exists(),
            "the temporary file is renamed away"
        );
    }

    #[test]
    fn missing_file_reads_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_offsets(&dir.path().join("nope"))
            .expect("read")
            .is_empty());
        assert!(read_leader_epochs(&dir.path().join("nope"))
            .expect("read")
            .is_empty());
    }

    #[test]
    fn leader_epochs_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leader-epoch-checkpoint");
        write_leader_epochs(&path, &[(0, 0), (3, 120)]).expect("write");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "0\n2\n0 0\n3 120\n"
        );
        assert_eq!(
            read_leader_epochs(&path).expect("parse"),
            vec![(0, 0), (3, 120)]
        );
    }

    #[test]
    fn malformed_files_are_reported_not_guessed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        for bad in [
            "1\n0\n",
            "0\n2\nt 0 1\n",
            "0\n1\nt x 1\n",
            "0\n1\nt 0 1\nt 1 2\n",
            "",
        ] {
            fs::write(&path, bad).expect("write");
            assert!(
                matches!(read_offsets(&path), Err(LogError::CorruptFile { .. })),
                "{bad:?} must be rejected"
            );
        }
    }
}
