//! Produce-path throughput: `cargo bench -p millrace-log`.
//!
//! Appends pre-built batches (so encoding is not measured) to a log in a temporary directory
//! and reports MB/s for a few batch sizes, then reads everything back. Page-cache speed, not
//! disk speed: nothing is fsynced, as with Kafka's default flush policy.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    indexmap::IndexMap,
    records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType},
};
use millrace_log::{Log, LogConfig};

fn batch(records: usize, value_size: usize) -> BytesMut {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1 + i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(vec![7u8; value_size])),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
    buf
}

fn main() {
    const TOTAL: usize = 1 << 30;
    for (records, value_size) in [(16, 1000), (100, 10_000), (1, 100)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), LogConfig::default(), None, None, false).expect("open");
        let template = batch(records, value_size);
        let count = (TOTAL / template.len()).min(2_000_000);
        // Many request buffers, as the broker's are many, so caches see more than one.
        let requests: Vec<BytesMut> = (0..count.min(4096)).map(|_| template.clone()).collect();
        let start = Instant::now();
        for i in 0..count {
            let request = &requests[i % 4096];
            log.append_as_leader(request, 0, 1_700_000_000_000)
                .expect("append");
        }
        let elapsed = start.elapsed();
        let bytes = (count * template.len()) as f64;
        println!(
            "append {:>7}-byte batches: {:>8.0} MB/s, {:>9.0} batches/s ({} segments)",
            template.len(),
            bytes / elapsed.as_secs_f64() / 1e6,
            count as f64 / elapsed.as_secs_f64(),
            log.segment_count()
        );
        log.set_high_watermark(log.log_end_offset());
        let start = Instant::now();
        let mut offset = 0;
        let mut read = 0usize;
        while offset < log.log_end_offset() {
            let chunk = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
            let last = millrace_log::batch::batches(&chunk)
                .filter_map(Result::ok)
                .map(|b| b.last_offset())
                .last()
                .expect("a batch");
            read += chunk.len();
            offset = last + 1;
        }
        println!(
            "read   {:>7}-byte batches: {:>8.0} MB/s (1 MiB fetches)",
            template.len(),
            read as f64 / start.elapsed().as_secs_f64() / 1e6
        );
    }
}
