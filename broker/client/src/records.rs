//! Record batches on the client side: encoding a producer batch (with compression and
//! idempotence fields), decoding fetched bytes into records, and Kafka's default partitioner.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::{
    indexmap::IndexMap,
    protocol::StrBytes,
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    },
};

use crate::error::{Error, Result};

/// A header: name and optional value.
pub type Header = (String, Option<Bytes>);

/// Producer-side identity of a batch, for idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    /// Sequence of the batch's first record; -1 when not idempotent.
    pub(crate) base_sequence: i32,
}

/// One record as the producer holds it until its batch is encoded.
#[derive(Debug, Clone)]
pub(crate) struct PendingRecord {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    pub(crate) headers: Vec<Header>,
    pub(crate) timestamp: i64,
}

impl PendingRecord {
    /// An upper estimate of the record's encoded size (varint overheads included).
    pub(crate) fn estimated_size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 10)
            .sum();
        21 + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
    }
}

/// Encodes records as one v2 batch (offsets relative from 0; the broker assigns the real ones).
pub(crate) fn encode_batch(
    records: &[PendingRecord],
    compression: Compression,
    identity: ProducerIdentity,
) -> Result<Bytes> {
    let wire: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: identity.producer_id,
            producer_epoch: identity.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if identity.base_sequence < 0 {
                -1
            } else {
                // Kafka's rule: sequences wrap from i32::MAX to 0.
                ((i64::from(identity.base_sequence) + i as i64) % (i64::from(i32::MAX) + 1)) as i32
            },
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::with_capacity(
        records
            .iter()
            .map(PendingRecord::estimated_size)
            .sum::<usize>()
            + 61,
    );
    RecordBatchEncoder::encode(
        &mut buf,
        wire.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| Error::Records {
        what: format!(
            "could not encode a batch of {} records ({compression:?})",
            records.len()
        ),
        source: e.into(),
    })?;
    Ok(buf.freeze())
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Whether the timestamp is the producer's (`CreateTime`) or the broker's (`LogAppendTime`).
    pub timestamp_type: TimestampKind,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Leader epoch of the batch (-1 if unknown).
    pub leader_epoch: i32,
}

/// A record's timestamp type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker on append.
    LogAppendTime,
}

impl TimestampKind {
    /// Kafka's name, as the console consumer prints it.
    pub fn name(self) -> &'static str {
        match self {
            TimestampKind::CreateTime => "CreateTime",
            TimestampKind::LogAppendTime => "LogAppendTime",
        }
    }
}

/// What decoding a fetched record set gives: the records at or after `from`, and the offset
/// to fetch next (past the last complete batch, even if all its records were skipped).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) records: Vec<ConsumerRecord>,
    pub(crate) next_offset: Option<i64>,
}

/// Decodes the batches in a fetch response's `records` bytes. A batch cut off at the end
/// (brokers stop at the size limit mid-batch) is ignored; control batches (transaction
/// markers) are skipped; records before `from` (earlier records of a batch that starts before
/// the fetch offset) are dropped.
pub(crate) fn decode_fetched(
    topic: &str,
    partition: i32,
    mut data: Bytes,
    from: i64,
) -> Result<Decoded> {
    let mut out = Decoded::default();
    while data.len() >= 12 {
        let length = (&data[8..12]).get_i32();
        let Ok(size) = usize::try_from(length) else {
            break;
        };
        if data.len() < 12 + size {
            break;
        }
        let mut batch = data.split_to(12 + size);
        let magic = batch.get(16).copied().unwrap_or(0);
        if magic != 2 {
            return Err(Error::Records {
                what: format!("{topic}-{partition}: unsupported record batch magic {magic}"),
                source: "only magic v2 batches are supported".into(),
            });
        }
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| Error::Records {
            what: format!("{topic}-{partition}: could not decode a fetched batch"),
            source: e.into(),
        })?;
        for r in set.records {
            out.next_offset = Some(
                out.next_offset
                    .map_or(r.offset + 1, |n: i64| n.max(r.offset + 1)),
            );
            if r.control || r.offset < from {
                continue;
            }
            out.records.push(ConsumerRecord {
                topic: topic.to_string(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                timestamp_type: match r.timestamp_type {
                    TimestampType::Creation => TimestampKind::CreateTime,
                    TimestampType::LogAppend => TimestampKind::LogAppendTime,
                },
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                leader_epoch: r.partition_leader_epoch,
            });
        }
    }
    Ok(out)
}

/// Kafka's `Utils.murmur2`, which the default partitioner hashes keys with; the same key goes
/// to the same partition as with the Java client.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data),
                *expected,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    fn record(value: &str, ts: i64) -> PendingRecord {
        PendingRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
            timestamp: ts,
        }
    }

    #[test]
    fn encoded_batches_decode_with_every_codec_and_a_torn_tail_is_ignored() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let identity = ProducerIdentity {
                producer_id: 7,
                producer_epoch: 1,
                base_sequence: 10,
            };
            let batch = encode_batch(&[record("a", 100), record("b", 101)], codec, identity)
                .expect("encode");
            assert_eq!(batch[21..23], [0, codec as u8], "{codec:?} attribute bits");
            let mut data = BytesMut::from(&batch[..]);
            data.extend_from_slice(&batch[..batch.len() / 2]);
            let decoded = decode_fetched("t", 0, data.freeze(), 1).expect("decode");
            // Offsets are relative from 0 here; `from` = 1 drops the first record.
            assert_eq!(decoded.records.len(), 1, "{codec:?}");
            assert_eq!(decoded.records[0].value.as_deref(), Some(&b"b"[..]));
            assert_eq!(
                decoded.records[0].headers,
                vec![("h".to_string(), Some(Bytes::from_static(b"v")))]
            );
            assert_eq!(decoded.next_offset, Some(2));
        }
    }
}
