//! Sequential batch reading from a segment file with positioned reads into a reused buffer.
//!
//! Recovery, index rebuilds, producer-state rebuilds and offset lookups all walk a segment batch
//! by batch. Reading each header with its own syscall would cost one `pread` per batch; this
//! reads a chunk at a time and only re-reads when a batch (or, in header-only mode, a header)
//! does not fit in what is buffered.

use std::{fs::File, os::unix::fs::FileExt, path::Path};

use crate::{
    batch::{BatchHeader, HEADER_SIZE},
    error::{io_err, LogError},
};

/// Chunk size for header-only walks: a few index intervals' worth of small batches.
pub(crate) const HEADER_CHUNK: usize = 16 * 1024;
/// Chunk size for walks that read every byte (recovery).
pub(crate) const FULL_CHUNK: usize = 1024 * 1024;

/// What the scanner found at its position.
pub(crate) enum Scanned<'b> {
    /// A batch that parsed; the view holds the whole batch only if asked for.
    Batch {
        position: u64,
        header: BatchHeader<'b>,
    },
    /// Bytes at `position` are not a batch, or the batch runs past the end: a torn or corrupt
    /// tail. The scanner does not advance past it.
    Invalid { position: u64, reason: String },
    /// Reached the end cleanly, on a batch boundary.
    End,
}

/// Walks the batches in `[start, end)` of a file.
pub(crate) struct FileScanner<'f> {
    file: &'f File,
    path: &'f Path,
    /// File position of the next batch.
    position: u64,
    end: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
    chunk: usize,
}

impl<'f> FileScanner<'f> {
    pub(crate) fn new(file: &'f File, path: &'f Path, start: u64, end: u64, chunk: usize) -> Self {
        FileScanner {
            file,
            path,
            position: start,
            end,
            buf: Vec::new(),
            buf_start: start,
            chunk,
        }
    }

    /// Returns the next batch; with `whole` the view holds all of its bytes (for a CRC check),
    /// otherwise at least its header.
    pub(crate) fn next(&mut self, whole: bool) -> Result<Scanned<'_>, LogError> {
        let position = self.position;
        if position >= self.end {
            return Ok(Scanned::End);
        }
        let left = self.end - position;
        if left < HEADER_SIZE as u64 {
            return Ok(Scanned::Invalid {
                position,
                reason: format!("{left} trailing bytes are too few for a batch header"),
            });
        }
        self.fill(position, HEADER_SIZE)?;
        let size = match BatchHeader::parse(self.buffered(position)) {
            Ok(header) => header.size() as u64,
            Err(e) => {
                return Ok(Scanned::Invalid {
                    position,
                    reason: e.to_string(),
                })
            }
        };
        if size > left {
            return Ok(Scanned::Invalid {
                position,
                reason: format!("batch of {size} bytes runs past the end ({left} bytes left)"),
            });
        }
        if whole {
            // `size` fits in memory: it came from an i32 length.
            self.fill(position, size as usize)?;
        }
        self.position = position + size;
        match BatchHeader::parse(self.buffered(position)) {
            Ok(header) => Ok(Scanned::Batch { position, header }),
            Err(e) => Ok(Scanned::Invalid {
                position,
                reason: e.to_string(),
            }),
        }
    }

    fn buffered(&self, position: u64) -> &[u8] {
        let from = (position - self.buf_start) as usize;
        &self.buf[from..]
    }

    /// Makes sure `buf` holds `[position, position + len)`, reading a chunk from `position`.
    fn fill(&mut self, position: u64, len: usize) -> Result<(), LogError> {
        let buf_end = self.buf_start + self.buf.len() as u64;
        if position >= self.buf_start && position + len as u64 <= buf_end {
            return Ok(());
        }
        let want = (len.max(self.chunk) as u64).min(self.end - position) as usize;
        self.buf.resize(want, 0);
        self.buf_start = position;
        self.file
            .read_exact_at(&mut self.buf, position)
            .map_err(io_err("read segment", self.path))
    }
}
