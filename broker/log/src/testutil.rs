//! Test helpers: real record batches built with kafka-protocol's encoder.

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    indexmap::IndexMap,
    records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType as WireTimestampType,
    },
};

/// Builds one v2 batch. Defaults: non-idempotent, uncompressed, keys `k<i>`, 16-byte values,
/// timestamps 1000, 1001, ...
#[derive(Debug, Clone)]
pub(crate) struct BatchBuilder {
    timestamps: Vec<i64>,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    value_size: usize,
    null_keys: bool,
    compression: Compression,
    /// Explicit (key, value) per record, overriding the generated ones.
    entries: Option<Vec<(Option<Bytes>, Option<Bytes>)>>,
}

impl BatchBuilder {
    pub(crate) fn new(records: usize) -> Self {
        BatchBuilder {
            timestamps: (0..records as i64).map(|i| 1000 + i).collect(),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            value_size: 16,
            null_keys: false,
            compression: Compression::None,
            entries: None,
        }
    }

    /// One record per (key, value); `None` value is a tombstone. Timestamps 1000, 1001, ...
    /// unless [`BatchBuilder::timestamps`] is called afterwards.
    pub(crate) fn keyed(entries: &[(&str, Option<&str>)]) -> Self {
        let mut builder = BatchBuilder::new(entries.len());
        builder.entries = Some(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        Some(Bytes::copy_from_slice(k.as_bytes())),
                        v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                    )
                })
                .collect(),
        );
        builder
    }

    /// One record per timestamp.
    pub(crate) fn timestamps(mut self, timestamps: &[i64]) -> Self {
        self.timestamps = timestamps.to_vec();
        self
    }

    pub(crate) fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub(crate) fn value_size(mut self, size: usize) -> Self {
        self.value_size = size;
        self
    }

    pub(crate) fn null_keys(mut self) -> Self {
        self.null_keys = true;
        self
    }

    pub(crate) fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    pub(crate) fn build(&self) -> BytesMut {
        let records: Vec<Record> = self
            .timestamps
            .iter()
            .enumerate()
            .map(|(i, &timestamp)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: self.producer_id,
                producer_epoch: self.producer_epoch,
                timestamp_type: WireTimestampType::Creation,
                offset: i as i64,
                // The encoder splits batches where offset - sequence changes, so even a
                // non-idempotent batch (base sequence -1) needs consecutive sequences.
                sequence: self.base_sequence.wrapping_add(i as i32),
                timestamp,
                key: match &self.entries {
                    Some(entries) => entries[i].0.clone(),
                    None => (!self.null_keys).then(|| Bytes::from(format!("k{i}"))),
                },
                value: match &self.entries {
                    Some(entries) => entries[i].1.clone(),
                    None => Some(Bytes::from(vec![(i % 251) as u8; self.value_size])),
                },
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: self.compression,
            },
        )
        .expect("encoding test records");
        buf
    }
}

/// Decodes every batch in `bytes` into (offset, timestamp, value) per record.
pub(crate) fn decode_records(bytes: &Bytes) -> Vec<(i64, i64, Option<Bytes>)> {
    let mut buf = bytes.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decoding stored batches")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| (r.offset, r.timestamp, r.value))
        .collect()
}
