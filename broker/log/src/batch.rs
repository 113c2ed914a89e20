//! A zero-copy view of Kafka's record batch (magic v2) header, and an iterator over the batches
//! of a byte slice.
//!
//! Layout (big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! @0  baseOffset i64        @8  batchLength i32 (bytes after this field)
//! @12 partitionLeaderEpoch  @16 magic i8        @17 crc u32 (CRC32C of @21..end)
//! @21 attributes i16        @23 lastOffsetDelta @27 baseTimestamp i64
//! @35 maxTimestamp i64      @43 producerId i64  @51 producerEpoch i16
//! @53 baseSequence i32      @57 recordCount i32 @61 records
//! ```
//!
//! The CRC does not cover the base offset or the partition leader epoch, which is why the log can
//! assign offsets and stamp epochs in place without recomputing it.

use crate::TimestampType;

/// Bytes before `batchLength`'s coverage starts: the base offset and the length itself.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the v2 batch header, up to the first record.
pub const HEADER_SIZE: usize = 61;
/// The only batch format this log stores.
pub const MAGIC_V2: i8 = 2;
/// Producer id of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// Timestamp of a record that has none.
pub const NO_TIMESTAMP: i64 = -1;

const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// First byte covered by the CRC.
pub(crate) const CRC_START: usize = 21;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

pub(crate) const COMPRESSION_MASK: i16 = 0x07;
const LOG_APPEND_TIME_FLAG: i16 = 0x08;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;
pub(crate) const DELETE_HORIZON_FLAG: i16 = 0x40;

/// Why bytes could not be read as a v2 batch header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than the header, or than the batch length announces.
    #[error("truncated batch: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the header or batch needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// `batchLength` is too small to hold the rest of a v2 header.
    #[error("batch length {0} is smaller than a v2 batch header")]
    InvalidLength(i32),
    /// The magic byte is not 2.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
}

/// A read-only view of a v2 batch header over borrowed bytes.
///
/// Invariant: `bytes.len() >= HEADER_SIZE`, `batchLength` covers at least the header and the
/// magic is 2. The bytes may stop after the header (a header-only read from disk) or hold the
/// whole batch; [`BatchHeader::is_complete`] tells which.
#[derive(Clone, Copy)]
pub struct BatchHeader<'a> {
    bytes: &'a [u8],
}

impl<'a> BatchHeader<'a> {
    /// Checks the fixed fields and returns a view over `bytes`, which must start at a batch.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: bytes.len(),
            });
        }
        let length = be_i32(bytes, LENGTH_AT);
        if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(length));
        }
        let magic = bytes[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(BatchHeader { bytes })
    }

    /// Whole size of the batch on disk: `LOG_OVERHEAD + batchLength`.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length() as usize
    }

    /// Whether the view holds the whole batch, not just its header.
    pub fn is_complete(&self) -> bool {
        self.bytes.len() >= self.size()
    }

    /// The batch's bytes: the whole batch if complete, else as much as the view holds.
    pub fn bytes(&self) -> &'a [u8] {
        &self.bytes[..self.size().min(self.bytes.len())]
    }

    /// Whether the stored CRC matches the CRC32C of the batch; false for an incomplete view.
    pub fn crc_valid(&self) -> bool {
        self.is_complete() && self.compute_crc() == Some(self.crc())
    }

    /// CRC32C over bytes 21..end, or `None` if the view does not hold the whole batch.
    pub fn compute_crc(&self) -> Option<u32> {
        self.is_complete()
            .then(|| crc32c::crc32c(&self.bytes[CRC_START..self.size()]))
    }

    /// `baseOffset`.
    pub fn base_offset(&self) -> i64 {
        be_i64(self.bytes, 0)
    }
    /// `batchLength`: bytes after this field.
    pub fn batch_length(&self) -> i32 {
        be_i32(self.bytes, LENGTH_AT)
    }
    /// `partitionLeaderEpoch`.
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(self.bytes, LEADER_EPOCH_AT)
    }
    /// `magic`: always 2 for a parsed header.
    pub fn magic(&self) -> i8 {
        self.bytes[MAGIC_AT] as i8
    }
    /// The stored `crc`.
    pub fn crc(&self) -> u32 {
        be_u32(self.bytes, CRC_AT)
    }
    /// Raw `attributes`.
    pub fn attributes(&self) -> i16 {
        be_i16(self.bytes, ATTRIBUTES_AT)
    }
    /// Compression codec id (attribute bits 0-2): 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes() & COMPRESSION_MASK) as u8
    }
    /// Attribute bit 3.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & LOG_APPEND_TIME_FLAG != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    /// Attribute bit 4.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_FLAG != 0
    }
    /// Attribute bit 5: a transaction marker or other control batch.
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_FLAG != 0
    }
    /// Attribute bit 6: `baseTimestamp` holds the compaction delete horizon.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes() & DELETE_HORIZON_FLAG != 0
    }
    /// `lastOffsetDelta`.
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.bytes, LAST_OFFSET_DELTA_AT)
    }
    /// `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }
    /// `baseTimestamp`.
    pub fn base_timestamp(&self) -> i64 {
        be_i64(self.bytes, BASE_TIMESTAMP_AT)
    }
    /// `maxTimestamp`.
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.bytes, MAX_TIMESTAMP_AT)
    }
    /// `producerId`; -1 for a non-idempotent producer.
    pub fn producer_id(&self) -> i64 {
        be_i64(self.bytes, PRODUCER_ID_AT)
    }
    /// Whether the batch comes from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id() > NO_PRODUCER_ID
    }
    /// `producerEpoch`.
    pub fn producer_epoch(&self) -> i16 {
        be_i16(self.bytes, PRODUCER_EPOCH_AT)
    }
    /// `baseSequence`.
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.bytes, BASE_SEQUENCE_AT)
    }
    /// Sequence of the last record, wrapping past `i32::MAX` to 0 as Kafka's
    /// `DefaultRecordBatch.incrementSequence` does; -1 if the batch has no sequence.
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base < 0 {
            return base;
        }
        increment_sequence(base, self.last_offset_delta())
    }
    /// `recordCount`.
    pub fn record_count(&self) -> i32 {
        be_i32(self.bytes, RECORD_COUNT_AT)
    }
}

impl std::fmt::Debug for BatchHeader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchHeader")
            .field("base_offset", &self.base_offset())
            .field("last_offset", &self.last_offset())
            .field("size", &self.size())
            .field("leader_epoch", &self.partition_leader_epoch())
            .field("attributes", &self.attributes())
            .field("max_timestamp", &self.max_timestamp())
            .field("producer_id", &self.producer_id())
            .field("producer_epoch", &self.producer_epoch())
            .field("base_sequence", &self.base_sequence())
            .field("record_count", &self.record_count())
            .finish()
    }
}

/// Adds `delta` to a sequence number, wrapping from `i32::MAX` to 0 (Kafka's rule).
pub(crate) fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    if sequence > i32::MAX - delta {
        delta - (i32::MAX - sequence) - 1
    } else {
        sequence + delta
    }
}

/// Iterates over the whole batches of `bytes`, which must start at a batch boundary.
pub fn batches(bytes: &[u8]) -> Batches<'_> {
    Batches {
        bytes,
        position: 0,
        failed: false,
    }
}

/// Iterator returned by [`batches`]. Yields each complete batch; a batch that cannot be parsed
/// or is cut short yields one error and ends the iteration.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    bytes: &'a [u8],
    position: usize,
    failed: bool,
}

impl Batches<'_> {
    /// Byte position, within the slice, of the next batch to be yielded.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchHeader<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.bytes[self.position..];
        if rest.is_empty() || self.failed {
            return None;
        }
        let parsed = BatchHeader::parse(rest).and_then(|header| {
            if header.is_complete() {
                Ok(header)
            } else {
                Err(BatchError::Truncated {
                    needed: header.size(),
                    available: rest.len(),
                })
            }
        });
        match &parsed {
            Ok(header) => self.position += header.size(),
            Err(_) => self.failed = true,
        }
        Some(parsed)
    }
}

impl std::iter::FusedIterator for Batches<'_> {}

/// Writes the base offset; the CRC does not cover it.
pub(crate) fn set_base_offset(batch: &mut [u8], offset: i64) {
    batch[..8].copy_from_slice(&offset.to_be_bytes());
}

/// Writes the partition leader epoch; the CRC does not cover it.
pub(crate) fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Sets the timestamp type bit and `maxTimestamp`, then recomputes the CRC, which covers both.
/// `head` is the batch's first [`HEADER_SIZE`] bytes and `rest` all that follows them, so the
/// head can be a copy being patched while the records stay where they are.
pub(crate) fn set_max_timestamp(
    head: &mut [u8],
    rest: &[u8],
    timestamp_type: TimestampType,
    timestamp: i64,
) {
    let mut attributes = be_i16(head, ATTRIBUTES_AT);
    match timestamp_type {
        TimestampType::CreateTime => attributes &= !LOG_APPEND_TIME_FLAG,
        TimestampType::LogAppendTime => attributes |= LOG_APPEND_TIME_FLAG,
    }
    head[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    head[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[CRC_START..HEADER_SIZE]), rest);
    head[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Fills in `batchLength` and the CRC of a batch whose other fields are written; `batch` is the
/// whole batch and at least [`HEADER_SIZE`] long.
pub(crate) fn seal(batch: &mut [u8]) {
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

pub(crate) fn be_i16(b: &[u8], at: usize) -> i16 {
    let mut a = [0; 2];
    a.copy_from_slice(&b[at..at + 2]);
    i16::from_be_bytes(a)
}

pub(crate) fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

pub(crate) fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

pub(crate) fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::BatchBuilder;

    #[test]
    fn header_fields_match_what_the_encoder_wrote() {
        let bytes = BatchBuilder::new(3)
            .timestamps(&[100, 300, 200])
            .producer(7, 2, 40)
            .build();
        let header = BatchHeader::parse(&bytes).expect("valid batch");
        assert!(header.is_complete());
        assert_eq!(header.size(), bytes.len());
        assert_eq!(header.record_count(), 3);
        assert_eq!(header.last_offset_delta(), 2);
        assert_eq!(header.base_timestamp(), 100);
        assert_eq!(header.max_timestamp(), 300);
        assert_eq!(header.producer_id(), 7);
        assert_eq!(header.producer_epoch(), 2);
        assert_eq!(header.base_sequence(), 40);
        assert_eq!(header.last_sequence(), 42);
        assert_eq!(header.compression(), 0);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert!(header.crc_valid());
    }

    #[test]
    fn sequence_wraps_past_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 0), 5);
    }

    #[test]
    fn offsets_and_epoch_are_outside_the_crc() {
        let mut bytes = BatchBuilder::new(2).build();
        set_base_offset(&mut bytes, 1234);
        set_partition_leader_epoch(&mut bytes, 9);
        let header = BatchHeader::parse(&bytes).expect("valid batch");
        assert_eq!(header.base_offset(), 1234);
        assert_eq!(header.partition_leader_epoch(), 9);
        assert!(header.crc_valid());
    }

    #[test]
    fn set_max_timestamp_keeps_the_crc_valid() {
        let mut bytes = BatchBuilder::new(2).build();
        let (head, rest) = bytes.split_at_mut(HEADER_SIZE);
        set_max_timestamp(head, rest, TimestampType::LogAppendTime, 42);
        let header = BatchHeader::parse(&bytes).expect("valid batch");
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp(), 42);
        assert!(header.crc_valid());
    }

    #[test]
    fn iterator_yields_each_batch_then_reports_a_torn_tail() {
        let mut blob = BatchBuilder::new(1).build();
        blob.extend_from_slice(&BatchBuilder::new(4).build());
        let whole = blob.len();
        blob.extend_from_slice(&BatchBuilder::new(2).build()[..30]);
        let mut it = batches(&blob);
        assert_eq!(it.next().map(|b| b.map(|h| h.record_count())), Some(Ok(1)));
        assert_eq!(it.next().map(|b| b.map(|h| h.record_count())), Some(Ok(4)));
        assert_eq!(it.position(), whole);
        assert!(matches!(it.next(), Some(Err(BatchError::Truncated { .. }))));
        assert!(it.next().is_none());
    }

    #[test]
    fn parse_rejects_other_magics_and_short_lengths() {
        let mut bytes = BatchBuilder::new(1).build();
        bytes[MAGIC_AT] = 1;
        assert_eq!(
            BatchHeader::parse(&bytes).err(),
            Some(BatchError::UnsupportedMagic(1))
        );
        bytes[MAGIC_AT] = 2;
        bytes[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&bytes).err(),
            Some(BatchError::InvalidLength(10))
        );
    }
}
