//! Idempotent-producer state: per producer id, its epoch and the metadata of its last five
//! batches, as Kafka's `ProducerStateManager` keeps it, plus snapshots of that state.
//!
//! The sequence rules follow Kafka's `ProducerAppendInfo` (3.x, after KIP-360):
//!
//! 1. A batch whose epoch equals the producer's and whose (first, last) sequence equals one of
//!    the retained batches is a duplicate: the append returns the original offsets.
//! 2. An epoch lower than the producer's is fenced: `InvalidProducerEpoch`.
//! 3. A new (higher) epoch must start at sequence 0, unless the log has no epoch for the
//!    producer at all.
//! 4. Within an epoch, the first sequence must be last + 1, wrapping from `i32::MAX` to 0.
//! 5. A producer the log has no state for (`currentEntry.producerEpoch == NO_PRODUCER_EPOCH`)
//!    may start at any sequence: its state may have been removed by retention or DeleteRecords.
//!    This is why `UNKNOWN_PRODUCER_ID` is no longer returned for a new producer.
//!
//! Snapshots are named `<20-digit offset>.snapshot`; one holds the state of every producer
//! after all batches below that offset. The format is this crate's own:
//!
//! ```text
//! magic "MRPS" | version u16 = 1 | crc32c u32 of everything after it | offset i64 | count u32
//! per producer: id i64 | epoch i16 | last timestamp i64 | batch count u8
//!   per batch:  first seq i32 | last seq i32 | first offset i64 | last offset i64 | timestamp i64
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
};

use crate::{
    batch::{be_i16, be_i32, be_i64, be_u32, BatchHeader},
    checkpoint::write_atomic,
    error::{io_err, LogError},
    index::remove_if_exists,
    segment::file_name,
};

/// How many batches per producer Kafka retains for duplicate detection: the number of
/// in-flight requests an idempotent producer may have.
pub(crate) const BATCHES_TO_RETAIN: usize = 5;
/// Epoch of a producer the log knows nothing about.
pub(crate) const NO_PRODUCER_EPOCH: i16 = -1;

const SNAPSHOT_MAGIC: &[u8; 4] = b"MRPS";
const SNAPSHOT_VERSION: u16 = 1;
/// magic + version + crc: the part not covered by the CRC.
const SNAPSHOT_PREFIX: usize = 10;

/// What a public caller can see of one producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerEntryInfo {
    /// The producer's current epoch.
    pub epoch: i16,
    /// Sequence number of its last appended record.
    pub last_seq: i32,
    /// Offset of its last appended record.
    pub last_offset: i64,
    /// Max timestamp of its last appended batch.
    pub last_timestamp: i64,
}

/// Metadata of one appended batch, enough to answer a retried duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BatchMetadata {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) timestamp: i64,
}

/// One producer's state. The retained batches live in a fixed array (oldest first) so an entry
/// can be copied into an append's scratch space without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    batches: [BatchMetadata; BATCHES_TO_RETAIN],
    len: usize,
    pub(crate) last_timestamp: i64,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: NO_PRODUCER_EPOCH,
            batches: [BatchMetadata::default(); BATCHES_TO_RETAIN],
            len: 0,
            last_timestamp: -1,
        }
    }
}

/// Outcome of checking an idempotent batch against its producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already in the log.
    Duplicate(BatchMetadata),
}

impl ProducerEntry {
    fn batches(&self) -> &[BatchMetadata] {
        &self.batches[..self.len]
    }

    fn last_batch(&self) -> Option<&BatchMetadata> {
        self.batches().last()
    }

    /// Applies the rules in the module docs to a leader append. `epoch_before_request` is the
    /// producer's epoch before this produce request (Kafka's `currentEntry`), `self` the state
    /// including earlier batches of the same request (Kafka's `updatedEntry`).
    pub(crate) fn check(
        &self,
        epoch_before_request: i16,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, LogError> {
        // Rule 1: findDuplicateBatch.
        if epoch == self.epoch {
            if let Some(dup) = self
                .batches()
                .iter()
                .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            {
                return Ok(SequenceCheck::Duplicate(*dup));
            }
        }
        // Rule 2: checkProducerEpoch.
        if epoch < self.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id,
                current: self.epoch,
                received: epoch,
            });
        }
        if epoch != self.epoch {
            // Rule 3: a new epoch restarts the sequence.
            if first_seq != 0 && self.epoch != NO_PRODUCER_EPOCH {
                return Err(LogError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    received: first_seq,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        // Rules 4 and 5.
        let last = self.last_batch().map_or(-1, |b| b.last_seq);
        let in_sequence =
            i64::from(first_seq) == i64::from(last) + 1 || (first_seq == 0 && last == i32::MAX);
        if epoch_before_request == NO_PRODUCER_EPOCH || in_sequence {
            Ok(SequenceCheck::Append)
        } else {
            Err(LogError::OutOfOrderSequence {
                producer_id,
                expected: if last == i32::MAX { 0 } else { last + 1 },
                received: first_seq,
            })
        }
    }

    /// Records an appended batch (Kafka's `appendDataBatch`): a new epoch forgets the batches
    /// of the old one; at most [`BATCHES_TO_RETAIN`] are kept.
    pub(crate) fn record(&mut self, epoch: i16, batch: BatchMetadata) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.len = 0;
        }
        if self.len == BATCHES_TO_RETAIN {
            self.batches.copy_within(1.., 0);
            self.len -= 1;
        }
        self.batches[self.len] = batch;
        self.len += 1;
        self.last_timestamp = batch.timestamp;
    }

    fn info(&self) -> ProducerEntryInfo {
        let last = self.last_batch().copied().unwrap_or(BatchMetadata {
            first_seq: -1,
            last_seq: -1,
            first_offset: -1,
            last_offset: -1,
            timestamp: -1,
        });
        ProducerEntryInfo {
            epoch: self.epoch,
            last_seq: last.last_seq,
            last_offset: last.last_offset,
            last_timestamp: self.last_timestamp,
        }
    }
}

/// Every producer's state for one partition.
#[derive(Debug, Default)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub(crate) fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }

    pub(crate) fn info(&self, producer_id: i64) -> Option<ProducerEntryInfo> {
        self.producers.get(&producer_id).map(ProducerEntry::info)
    }

    pub(crate) fn clear(&mut self) {
        self.producers.clear();
    }

    /// The last offset of each producer's last data batch: the batches the cleaner keeps, even
    /// emptied, so each producer's sequence survives a rebuild of this state from the log.
    pub(crate) fn last_data_offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.producers
            .values()
            .filter_map(|e| e.last_batch().map(|b| b.last_offset))
    }

    /// Replays a batch already in the log (recovery, follower append): no checks, as Kafka
    /// does for `AppendOrigin.REPLICATION`. Control batches carry no data sequence.
    pub(crate) fn replay(&mut self, header: &BatchHeader<'_>) {
        if !header.has_producer_id() || header.is_control() {
            return;
        }
        let meta = BatchMetadata {
            first_seq: header.base_sequence(),
            last_seq: header.last_sequence(),
            first_offset: header.base_offset(),
            last_offset: header.last_offset(),
            timestamp: header.max_timestamp(),
        };
        self.producers
            .entry(header.producer_id())
            .or_default()
            .record(header.producer_epoch(), meta);
    }

    /// Serialises the state as of `offset`.
    fn encode(&self, offset: i64) -> Vec<u8> {
        let mut body = Vec::with_capacity(12 + self.producers.len() * 64);
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        // Sorted so that equal states give equal files.
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let entry = &self.producers[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            body.push(entry.len as u8);
            for b in entry.batches() {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(SNAPSHOT_PREFIX + body.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses a snapshot; `Err` carries why it is unusable.
    fn decode(bytes: &[u8], expected_offset: i64) -> Result<Self, String> {
        if bytes.len() < SNAPSHOT_PREFIX + 12 || &bytes[..4] != SNAPSHOT_MAGIC {
            return Err("not a producer snapshot".into());
        }
        let version = be_i16(bytes, 4) as u16;
        if version != SNAPSHOT_VERSION {
            return Err(format!("unsupported snapshot version {version}"));
        }
        let body = &bytes[SNAPSHOT_PREFIX..];
        if crc32c::crc32c(body) != be_u32(bytes, 6) {
            return Err("CRC mismatch".into());
        }
        let offset = be_i64(body, 0);
        if offset != expected_offset {
            return Err(format!(
                "holds offset {offset}, its name says {expected_offset}"
            ));
        }
        let count = be_u32(body, 8) as usize;
        let mut at = 12;
        let mut producers = HashMap::with_capacity(count.min(1 << 16));
        let truncated = || "truncated snapshot".to_string();
        for _ in 0..count {
            if body.len() < at + 19 {
                return Err(truncated());
            }
            let id = be_i64(body, at);
            let mut entry = ProducerEntry {
                epoch: be_i16(body, at + 8),
                last_timestamp: be_i64(body, at + 10),
                ..ProducerEntry::default()
            };
            let n = usize::from(body[at + 18]);
            at += 19;
            if n > BATCHES_TO_RETAIN || body.len() < at + n * 32 {
                return Err(truncated());
            }
            for slot in &mut entry.batches[..n] {
                *slot = BatchMetadata {
                    first_seq: be_i32(body, at),
                    last_seq: be_i32(body, at + 4),
                    first_offset: be_i64(body, at + 8),
                    last_offset: be_i64(body, at + 16),
                    timestamp: be_i64(body, at + 24),
                };
                at += 32;
            }
            entry.len = n;
            producers.insert(id, entry);
        }
        if at != body.len() {
            return Err("trailing bytes after the last producer".into());
        }
        Ok(ProducerStateManager { producers })
    }

    /// Atomically writes the state as of `offset` to `<offset>.snapshot`.
    pub(crate) fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<(), LogError> {
        write_atomic(&snapshot_path(dir, offset), &self.encode(offset))
    }

    /// Loads the newest usable snapshot at or below `max_offset` from `snapshots`, deleting the
    /// ones that are unusable. Returns the state and the offset it is valid at.
    pub(crate) fn load_latest(
        snapshots: &mut BTreeMap<i64, PathBuf>,
        max_offset: i64,
    ) -> Result<Option<(Self, i64)>, LogError> {
        let candidates: Vec<i64> = snapshots
            .range(..=max_offset)
            .rev()
            .map(|(o, _)| *o)
            .collect();
        for offset in candidates {
            let Some(path) = snapshots.get(&offset).cloned() else {
                continue;
            };
            let bytes = fs::read(&path).map_err(io_err("read producer snapshot", &path))?;
            match Self::decode(&bytes, offset) {
                Ok(state) => return Ok(Some((state, offset))),
                Err(reason) => {
                    tracing::warn!(snapshot = %path.display(), %reason, "deleting unusable producer snapshot");
                    remove_if_exists(&path)?;
                    snapshots.remove(&offset);
                }
            }
        }
        Ok(None)
    }
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(file_name(offset, "snapshot"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_seq: i32, last_seq: i32, first_offset: i64) -> BatchMetadata {
        BatchMetadata {
            first_seq,
            last_seq,
            first_offset,
            last_offset: first_offset + i64::from(last_seq - first_seq),
            timestamp: 1,
        }
    }

    #[test]
    fn only_the_last_five_batches_are_retained() {
        let mut entry = ProducerEntry::default();
        for i in 0..7 {
            entry.record(0, meta(i, i, i64::from(i)));
        }
        let firsts: Vec<i32> = entry.batches().iter().map(|b| b.first_seq).collect();
        assert_eq!(firsts, vec![2, 3, 4, 5, 6]);
        assert_eq!(
            entry.check(0, 1, 0, 2, 2).expect("check"),
            SequenceCheck::Duplicate(meta(2, 2, 2))
        );
        assert!(matches!(
            entry.check(0, 1, 0, 1, 1),
            Err(LogError::OutOfOrderSequence {
                expected: 7,
                received: 1,
                ..
            })
        ));
    }

    #[test]
    fn sequence_wraps_from_i32_max_to_zero() {
        let mut entry = ProducerEntry::default();
        entry.record(3, meta(i32::MAX - 1, i32::MAX, 10));
        assert_eq!(
            entry.check(3, 1, 3, 0, 4).expect("check"),
            SequenceCheck::Append
        );
    }

    #[test]
    fn new_producers_may_start_anywhere_but_new_epochs_start_at_zero() {
        let fresh = ProducerEntry::default();
        assert_eq!(
            fresh.check(NO_PRODUCER_EPOCH, 1, 0, 17, 17).expect("check"),
            SequenceCheck::Append
        );
        let mut known = ProducerEntry::default();
        known.record(0, meta(0, 4, 0));
        assert!(matches!(
            known.check(0, 1, 1, 5, 5),
            Err(LogError::OutOfOrderSequence {
                expected: 0,
                received: 5,
                ..
            })
        ));
        assert_eq!(
            known.check(0, 1, 1, 0, 0).expect("check"),
            SequenceCheck::Append
        );
    }

    #[test]
    fn snapshot_round_trips_and_detects_corruption() {
        let mut state = ProducerStateManager::default();
        let mut entry = ProducerEntry::default();
        entry.record(2, meta(0, 9, 100));
        entry.record(2, meta(10, 19, 110));
        state.insert(42, entry);
        state.insert(7, ProducerEntry::default());
        let bytes = state.encode(120);
        let back = ProducerStateManager::decode(&bytes, 120).expect("decode");
        assert_eq!(back.producers, state.producers);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(ProducerStateManager::decode(&bad, 120).is_err());
        assert!(ProducerStateManager::decode(&bytes, 121).is_err());
    }
}
