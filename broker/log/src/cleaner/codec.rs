//! Record bodies for the cleaner: bounded decompression, decoding with kafka-protocol's
//! `RecordBatchDecoder`, and re-encoding the retained records of a batch.
//!
//! Re-encoding is done here rather than with `RecordBatchEncoder` because Kafka's cleaner keeps
//! the original batch's base offset, last offset delta, producer id, epoch and base sequence when
//! it drops records (`MemoryRecords.buildRetainedRecordsInto`), and may write a batch with no
//! records at all; the encoder derives all of those from the records it is given. The records
//! section is compressed with kafka-protocol's compressors, so the codec and its framing stay
//! what the producer chose.

use std::{cell::Cell, io::Read};

use bytes::{BufMut, Bytes};
use kafka_protocol::{
    compression::{Compressor, Gzip, Lz4, Snappy, Zstd},
    records::{Compression, Record, RecordBatchDecoder},
};

use crate::batch::{
    self, BatchHeader, COMPRESSION_MASK, DELETE_HORIZON_FLAG, HEADER_SIZE, MAGIC_V2, NO_TIMESTAMP,
};

/// Why a batch's records could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Decompressing would produce more than `limit` bytes.
    #[error("records decompress to more than {limit} bytes")]
    TooLarge {
        /// The bound that applied.
        limit: usize,
    },
    /// The records do not parse, or the codec is unknown.
    #[error("records do not decode: {0}")]
    Malformed(String),
}

/// Decodes the records of one whole batch, refusing to decompress more than `limit` bytes.
pub(crate) fn decode_records(batch: &[u8], limit: usize) -> Result<Vec<Record>, DecodeError> {
    let exceeded = Cell::new(false);
    let mut buf = Bytes::copy_from_slice(batch);
    let decompress = |records: &mut Bytes, codec: Compression| {
        decompress(records, codec, limit).map_err(|e| {
            if matches!(e, DecodeError::TooLarge { .. }) {
                exceeded.set(true);
            }
            e.into()
        })
    };
    match RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(decompress)) {
        Ok(set) => Ok(set.records),
        Err(_) if exceeded.get() => Err(DecodeError::TooLarge { limit }),
        Err(e) => Err(DecodeError::Malformed(format!("{e:#}"))),
    }
}

/// Decompresses a records section into at most `limit` bytes.
fn decompress(records: &Bytes, codec: Compression, limit: usize) -> Result<Bytes, DecodeError> {
    let malformed = |e: std::io::Error| DecodeError::Malformed(format!("{codec:?}: {e}"));
    match codec {
        Compression::None => Ok(records.clone()),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(&records[..]), limit)
            .map_err(|e| e.or_malformed(malformed)),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&records[..]).map_err(malformed)?;
            read_bounded(decoder, limit).map_err(|e| e.or_malformed(malformed))
        }
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(&records[..]).map_err(malformed)?;
            read_bounded(decoder, limit).map_err(|e| e.or_malformed(malformed))
        }
        Compression::Snappy => snappy(records, limit),
    }
}

/// A bounded read's failure: over the limit, or an error of the decoder.
enum ReadError {
    TooLarge(usize),
    Io(std::io::Error),
}

impl ReadError {
    fn or_malformed(self, malformed: impl Fn(std::io::Error) -> DecodeError) -> DecodeError {
        match self {
            ReadError::TooLarge(limit) => DecodeError::TooLarge { limit },
            ReadError::Io(e) => malformed(e),
        }
    }
}

/// Reads `reader` to its end, or fails as soon as it yields more than `limit` bytes: the output
/// buffer never grows past `limit + 1`, whatever the compressed input claims.
fn read_bounded(reader: impl Read, limit: usize) -> Result<Bytes, ReadError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(ReadError::Io)?;
    if out.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

/// Java's snappy-java ("xerial") stream header, which Kafka's producers write: magic, then a
/// version and a compatible version (4 bytes each); blocks follow as u32 BE length + raw block.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER: usize = 16;

/// Snappy in the xerial framing (or a single raw block, which some clients send), checking each
/// block's announced length against `limit` before allocating for it.
fn snappy(records: &Bytes, limit: usize) -> Result<Bytes, DecodeError> {
    let malformed = |e: snap::Error| DecodeError::Malformed(format!("Snappy: {e}"));
    let data = &records[..];
    let mut out = Vec::new();
    let append = |block: &[u8], out: &mut Vec<u8>| -> Result<(), DecodeError> {
        let len = snap::raw::decompress_len(block).map_err(malformed)?;
        if out.len().saturating_add(len) > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(malformed)?;
        out.truncate(start + written);
        Ok(())
    };
    if data.len() < XERIAL_HEADER || &data[..XERIAL_MAGIC.len()] != XERIAL_MAGIC {
        append(data, &mut out)?;
        return Ok(Bytes::from(out));
    }
    let mut position = XERIAL_HEADER;
    while position < data.len() {
        let Some(length) = data.get(position..position + 4) else {
            return Err(DecodeError::Malformed(
                "Snappy: truncated block length".into(),
            ));
        };
        let length = batch::be_u32(length, 0) as usize;
        position += 4;
        let Some(block) = data.get(position..position.saturating_add(length)) else {
            return Err(DecodeError::Malformed("Snappy: truncated block".into()));
        };
        append(block, &mut out)?;
        position += length;
    }
    Ok(Bytes::from(out))
}

/// How a retained batch is to be written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rewrite {
    /// The delete horizon to stamp (attribute bit 6, carried in `baseTimestamp`), if any.
    pub(crate) delete_horizon: Option<i64>,
}

/// Writes a batch holding `records`, which come from the batch `original` (in offset order),
/// appending it to `out`. Base offset, last offset delta, leader epoch, producer id, epoch, base
/// sequence, timestamp type, transactional and control flags and the codec are the original's;
/// the max timestamp is recomputed for `CreateTime` (kept for `LogAppendTime`). Returns the
/// batch's max timestamp.
pub(crate) fn write_batch(
    original: &BatchHeader<'_>,
    records: &[&Record],
    rewrite: Rewrite,
    out: &mut Vec<u8>,
) -> Result<i64, String> {
    let Some(first) = records.first() else {
        return Ok(write_empty_batch(original, out));
    };
    let base_offset = original.base_offset();
    let base_timestamp = rewrite.delete_horizon.unwrap_or(first.timestamp);
    let max_timestamp = match original.timestamp_type() {
        crate::TimestampType::LogAppendTime => original.max_timestamp(),
        crate::TimestampType::CreateTime => records
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(NO_TIMESTAMP),
    };
    let mut body = Vec::new();
    let mut record = Vec::new();
    for r in records {
        record.clear();
        record.push(0); // attributes: unused in v2
        put_varlong(&mut record, r.timestamp.wrapping_sub(base_timestamp));
        let delta = i32::try_from(r.offset - base_offset)
            .map_err(|_| format!("offset {} is too far from base {base_offset}", r.offset))?;
        put_varint(&mut record, delta);
        put_bytes(&mut record, r.key.as_deref())?;
        put_bytes(&mut record, r.value.as_deref())?;
        put_varint(&mut record, length(r.headers.len())?);
        for (key, value) in &r.headers {
            put_bytes(&mut record, Some(key.as_str().as_bytes()))?;
            put_bytes(&mut record, value.as_deref())?;
        }
        put_varint(&mut body, length(record.len())?);
        body.extend_from_slice(&record);
    }

    let codec = original.compression();
    let mut attributes = original.attributes() & !DELETE_HORIZON_FLAG;
    if rewrite.delete_horizon.is_some() {
        attributes |= DELETE_HORIZON_FLAG;
    }
    let start = out.len();
    put_header(
        out,
        original,
        attributes,
        base_timestamp,
        max_timestamp,
        length(records.len())?,
    );
    let compressed = match codec {
        0 => {
            out.extend_from_slice(&body);
            Ok(())
        }
        1 => compress::<Gzip>(out, &body),
        2 => compress::<Snappy>(out, &body),
        3 => compress::<Lz4>(out, &body),
        4 => compress::<Zstd>(out, &body),
        other => Err(format!("unknown compression codec {other}")),
    };
    if let Err(e) = compressed {
        out.truncate(start);
        return Err(format!("cannot compress records: {e}"));
    }
    if out.len() - start > i32::MAX as usize {
        out.truncate(start);
        return Err("re-encoded batch is larger than 2 GiB".into());
    }
    batch::seal(&mut out[start..]);
    Ok(max_timestamp)
}

/// Kafka's `DefaultRecordBatch.writeEmptyHeader`: a batch with no records that keeps the
/// original's offsets and producer fields, so an idempotent producer's last sequence survives
/// compaction. Uncompressed, no base timestamp, the original max timestamp. Returns it.
fn write_empty_batch(original: &BatchHeader<'_>, out: &mut Vec<u8>) -> i64 {
    let attributes = original.attributes() & !(COMPRESSION_MASK | DELETE_HORIZON_FLAG);
    let start = out.len();
    let max_timestamp = original.max_timestamp();
    put_header(out, original, attributes, NO_TIMESTAMP, max_timestamp, 0);
    batch::seal(&mut out[start..]);
    max_timestamp
}

/// Writes the 61-byte v2 header with length and CRC left zero (see [`batch::seal`]).
fn put_header(
    out: &mut Vec<u8>,
    original: &BatchHeader<'_>,
    attributes: i16,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
) {
    let start = out.len();
    out.extend_from_slice(&original.base_offset().to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // batchLength, sealed later
    out.extend_from_slice(&original.partition_leader_epoch().to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, sealed later
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&original.last_offset_delta().to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&original.producer_id().to_be_bytes());
    out.extend_from_slice(&original.producer_epoch().to_be_bytes());
    out.extend_from_slice(&original.base_sequence().to_be_bytes());
    out.extend_from_slice(&record_count.to_be_bytes());
    debug_assert_eq!(out.len() - start, HEADER_SIZE);
}

/// Appends `body` compressed with codec `C` (kafka-protocol's, so the framing is the one its
/// decoder and Kafka clients expect).
fn compress<C: Compressor<Vec<u8>>>(out: &mut Vec<u8>, body: &[u8]) -> Result<(), String> {
    C::compress(out, |buf| {
        buf.put_slice(body);
        Ok(())
    })
    .map_err(|e| format!("{e:#}"))
}

fn length(n: usize) -> Result<i32, String> {
    i32::try_from(n).map_err(|_| format!("length {n} does not fit a record field"))
}

/// A nullable byte field: varint length (-1 for null) then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<(), String> {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, length(b.len())?);
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

/// Zig-zag varint, as Kafka's `ByteUtils.writeVarint`. An `i32` zig-zags to the same number as
/// its sign-extended `i64`, so both share one encoder.
fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_varlong(out, i64::from(value));
}

/// Zig-zag varlong, as Kafka's `ByteUtils.writeVarlong`.
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::BatchBuilder;

    fn header(bytes: &[u8]) -> BatchHeader<'_> {
        BatchHeader::parse(bytes).expect("valid batch")
    }

    #[test]
    fn varints_match_kafkas_encoding() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (63, &[126]),
            (-64, &[127]),
            (64, &[128, 1]),
            (300, &[216, 4]),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, *value);
            assert_eq!(&out[..], *expected, "{value}");
        }
    }

    #[test]
    fn rewriting_every_record_reproduces_an_equivalent_batch() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = BatchBuilder::new(4).compression(compression).build();
            let original = header(&bytes);
            let records = decode_records(&bytes, 1 << 20).expect("decode");
            let kept: Vec<&Record> = records.iter().collect();
            let mut out = Vec::new();
            write_batch(
                &original,
                &kept,
                Rewrite {
                    delete_horizon: None,
                },
                &mut out,
            )
            .expect("write");
            let rewritten = header(&out);
            assert!(rewritten.crc_valid(), "{compression:?}");
            assert_eq!(rewritten.compression(), original.compression());
            assert_eq!(rewritten.last_offset_delta(), original.last_offset_delta());
            assert_eq!(rewritten.max_timestamp(), original.max_timestamp());
            assert_eq!(decode_records(&out, 1 << 20).expect("decode"), records);
        }
    }

    #[test]
    fn a_dropped_record_leaves_a_gap_and_the_batch_keeps_its_offsets() {
        let bytes = BatchBuilder::new(3).producer(9, 1, 10).build();
        let mut bytes = bytes.to_vec();
        batch::set_base_offset(&mut bytes, 100);
        let original = header(&bytes);
        let records = decode_records(&bytes, 1 << 20).expect("decode");
        let mut out = Vec::new();
        write_batch(
            &original,
            &[&records[1]],
            Rewrite {
                delete_horizon: Some(5_000),
            },
            &mut out,
        )
        .expect("write");
        let rewritten = header(&out);
        assert_eq!(rewritten.base_offset(), 100);
        assert_eq!(rewritten.last_offset(), 102);
        assert_eq!(rewritten.record_count(), 1);
        assert_eq!(rewritten.base_sequence(), 10);
        assert_eq!(rewritten.last_sequence(), 12);
        assert!(rewritten.has_delete_horizon());
        assert_eq!(rewritten.base_timestamp(), 5_000);
        let back = decode_records(&out, 1 << 20).expect("decode");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].offset, 101);
        assert_eq!(back[0].timestamp, records[1].timestamp);
        assert_eq!(back[0].key, records[1].key);
    }

    #[test]
    fn an_empty_batch_keeps_offsets_and_sequence() {
        let bytes = BatchBuilder::new(2)
            .producer(9, 1, 4)
            .compression(Compression::Gzip)
            .build();
        let original = header(&bytes);
        let mut out = Vec::new();
        write_batch(
            &original,
            &[],
            Rewrite {
                delete_horizon: None,
            },
            &mut out,
        )
        .expect("write");
        let empty = header(&out);
        assert!(empty.crc_valid());
        assert_eq!(empty.size(), HEADER_SIZE);
        assert_eq!(empty.record_count(), 0);
        assert_eq!(empty.compression(), 0);
        assert_eq!(empty.last_offset_delta(), 1);
        assert_eq!(empty.last_sequence(), 5);
        assert!(decode_records(&out, 1 << 20).expect("decode").is_empty());
    }

    #[test]
    fn decompression_stops_at_the_limit_for_every_codec() {
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = BatchBuilder::new(4)
                .value_size(64 * 1024)
                .compression(compression)
                .build();
            assert!(bytes.len() < 64 * 1024, "{compression:?} compresses");
            assert!(
                matches!(
                    decode_records(&bytes, 64 * 1024),
                    Err(DecodeError::TooLarge { limit: 65536 })
                ),
                "{compression:?}"
            );
            assert_eq!(decode_records(&bytes, 1 << 20).expect("decode").len(), 4);
        }
    }
}
