//! Tests of the whole log, each in its own temporary directory, each asserting on what it reads
//! back from disk.

use std::{fs, path::Path, time::Duration};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;
use proptest::prelude::*;

use crate::{
    batch::{self, BatchHeader},
    testutil::{decode_records, BatchBuilder},
    AppendInfo, Log, LogConfig, LogError, TimestampType,
};

/// Broker clock for tests; the builder's default timestamps (1000, 1001, ...) are far older,
/// which the default `timestamp_before_max_ms` (unbounded) accepts.
const NOW: i64 = 1_700_000_000_000;

fn config() -> LogConfig {
    LogConfig {
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, None, None, false).expect("open log")
}

fn reopen_clean(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, None, None, true).expect("reopen log")
}

fn append(log: &mut Log, builder: BatchBuilder) -> AppendInfo {
    let bytes = builder.build();
    let info = log.append_as_leader(&bytes, 0, NOW).expect("append");
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    info
}

fn try_append(log: &mut Log, builder: BatchBuilder) -> Result<AppendInfo, LogError> {
    let bytes = builder.build();
    log.append_as_leader(&bytes, 0, NOW)
}

/// Reads the whole log, batch range by batch range, and decodes every record.
fn read_all(log: &Log) -> Vec<(i64, i64, Option<Bytes>)> {
    let mut records = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        assert!(!bytes.is_empty(), "read at {offset} returned nothing");
        let last = batch::batches(&bytes)
            .map(|b| b.expect("whole batches").last_offset())
            .last()
            .expect("at least one batch");
        records.extend(decode_records(&bytes));
        offset = last + 1;
    }
    records
}

/// (base offset, last offset) of each batch in `bytes`.
fn batch_ranges(bytes: &[u8]) -> Vec<(i64, i64)> {
    batch::batches(bytes)
        .map(|b| {
            let b = b.expect("whole batch");
            (b.base_offset(), b.last_offset())
        })
        .collect()
}

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn segment_files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

// ------------------------------------------------------------------- append and read

#[test]
fn append_and_read_back_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 2048,
            index_interval_bytes: 512,
            ..config()
        },
    );
    for i in 0..40 {
        let info = append(&mut log, BatchBuilder::new(3).value_size(64));
        assert_eq!((info.first_offset, info.last_offset), (3 * i, 3 * i + 2));
        assert_eq!(info.record_count, 3);
        assert!(!info.duplicate);
        assert_eq!(info.log_append_time, -1);
    }
    assert_eq!(log.log_end_offset(), 120);
    assert!(log.segment_count() > 3, "segment.bytes=2048 must roll");
    for segment in log.segments() {
        assert!(segment.size_bytes <= 2048);
    }
    assert_eq!(
        log.size_bytes(),
        log.segments().iter().map(|s| s.size_bytes).sum::<u64>()
    );

    let records = read_all(&log);
    assert_eq!(records.len(), 120);
    for (i, (offset, _, value)) in records.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(value.as_deref(), Some(&[(i % 3) as u8; 64][..]));
    }
    // Kafka's naming: the 20-digit base offset of each segment.
    let logs = segment_files(dir.path(), ".log");
    assert_eq!(logs.len(), log.segment_count());
    assert_eq!(logs[0], "00000000000000000000.log");
    let second = log.segments()[1].base_offset;
    assert_eq!(logs[1], format!("{second:020}.log"));
}

#[test]
fn read_respects_max_offset_max_bytes_and_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    for _ in 0..5 {
        append(&mut log, BatchBuilder::new(2));
    }
    let one = BatchBuilder::new(2).build().len();
    // Batches reaching max_offset are left out, even partially committed ones.
    assert_eq!(
        batch_ranges(&log.read(0, 1 << 20, 6, false).expect("read")),
        vec![(0, 1), (2, 3), (4, 5)]
    );
    assert_eq!(
        batch_ranges(&log.read(0, 1 << 20, 5, false).expect("read")),
        vec![(0, 1), (2, 3)]
    );
    // Reading from inside a batch returns that whole batch.
    assert_eq!(
        batch_ranges(&log.read(3, 1 << 20, 10, false).expect("read"))[0],
        (2, 3)
    );
    // max_bytes cuts at whole batches; too small for one batch gives nothing, unless min_one_batch.
    assert_eq!(
        batch_ranges(&log.read(0, 2 * one + 10, 10, false).expect("read")),
        vec![(0, 1), (2, 3)]
    );
    assert!(log.read(0, one - 1, 10, false).expect("read").is_empty());
    assert_eq!(
        batch_ranges(&log.read(0, 1, 10, true).expect("read")),
        vec![(0, 1)]
    );
    // At the log end or the max offset: empty. Beyond the log end: out of range.
    assert!(log.read(10, 100, 10, true).expect("read").is_empty());
    assert!(log.read(4, 100, 4, true).expect("read").is_empty());
    assert!(matches!(
        log.read(11, 100, 20, true),
        Err(LogError::OffsetOutOfRange {
            requested: 11,
            log_start: 0,
            log_end: 10
        })
    ));
}

#[test]
fn a_file_slice_holds_exactly_what_read_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.segment_bytes = 4096; // several segments: slices stay within one, as reads do
    let mut log = open(dir.path(), cfg);
    for i in 0..40 {
        append(&mut log, BatchBuilder::new(1 + i % 3));
    }
    let leo = log.log_end_offset();
    let one = BatchBuilder::new(2).build().len();
    for offset in 0..leo {
        for max_bytes in [1, one - 1, one, 2 * one + 7, 1 << 20] {
            for max_offset in [offset, offset + 1, offset + 5, leo, i64::MAX] {
                for min_one in [false, true] {
                    let read = log
                        .read(offset, max_bytes, max_offset, min_one)
                        .expect("read");
                    let slice = log
                        .read_slice(offset, max_bytes, max_offset, min_one)
                        .expect("slice");
                    let sliced = slice
                        .map(|s| s.read().expect("read the slice"))
                        .unwrap_or_default();
                    assert_eq!(
                        sliced, read,
                        "offset {offset} max_bytes {max_bytes} max_offset {max_offset} min_one {min_one}"
                    );
                }
            }
        }
    }
    // The slice's handle outlives the log's files.
    let slice = log
        .read_slice(0, 1 << 20, i64::MAX, true)
        .expect("slice")
        .expect("data");
    let expected = log.read(0, 1 << 20, i64::MAX, true).expect("read");
    drop(log);
    fs::remove_dir_all(dir.path()).expect("remove the log");
    assert_eq!(slice.read().expect("still readable"), expected);
}

#[test]
fn append_rolls_on_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = BatchBuilder::new(1).build().len() as u64;
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 2 * one,
            ..config()
        },
    );
    append(&mut log, BatchBuilder::new(1));
    append(&mut log, BatchBuilder::new(1));
    assert_eq!(log.segment_count(), 1, "exactly segment.bytes still fits");
    append(&mut log, BatchBuilder::new(1));
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.segments()[1].base_offset, 2);
    // A batch larger than segment.bytes still gets a segment of its own.
    append(&mut log, BatchBuilder::new(1).value_size(500));
    assert_eq!(log.segments().last().map(|s| s.base_offset), Some(3));
    assert_eq!(read_all(&log).len(), 4);
}

#[test]
fn append_and_maybe_roll_roll_on_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_ms: Duration::from_millis(1000),
            ..config()
        },
    );
    assert!(
        !log.maybe_roll(NOW).expect("maybe_roll"),
        "an empty segment never rolls"
    );
    let batch = BatchBuilder::new(1).build();
    log.append_as_leader(&batch, 0, NOW).expect("append");
    let batch = BatchBuilder::new(1).build();
    log.append_as_leader(&batch, 0, NOW + 1000).expect("append");
    assert_eq!(
        log.segment_count(),
        1,
        "segment.ms must be exceeded, not reached"
    );
    let batch = BatchBuilder::new(1).build();
    log.append_as_leader(&batch, 0, NOW + 1001).expect("append");
    assert_eq!(log.segment_count(), 2);
    assert!(!log.maybe_roll(NOW + 2001).expect("maybe_roll"));
    assert!(log.maybe_roll(NOW + 2002).expect("maybe_roll"));
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.segments()[2].base_offset, 3);
    assert!(
        !log.maybe_roll(NOW + 10_000).expect("maybe_roll"),
        "the new segment is empty"
    );
}

#[test]
fn append_rolls_when_the_index_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_index_bytes: 16, // two offset entries, one time entry
        index_interval_bytes: 0,
        ..config()
    };
    let mut log = open(dir.path(), config.clone());
    for _ in 0..12 {
        append(&mut log, BatchBuilder::new(1));
    }
    assert!(
        log.segment_count() >= 4,
        "got {} segments",
        log.segment_count()
    );
    log.close().expect("close");
    for name in segment_files(dir.path(), ".index") {
        let len = fs::metadata(dir.path().join(&name)).expect("stat").len();
        assert!(len <= 16 && len % 8 == 0, "{name} is {len} bytes");
    }
    for name in segment_files(dir.path(), ".timeindex") {
        let len = fs::metadata(dir.path().join(&name)).expect("stat").len();
        // The entry recorded when a segment becomes inactive may exceed the limit, as in Kafka.
        assert!(len <= 24 && len % 12 == 0, "{name} is {len} bytes");
    }
    let log = reopen_clean(dir.path(), config);
    assert_eq!(read_all(&log).len(), 12);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For random batch sizes, segment sizes and index intervals, a read at any offset starts
    /// with the batch that contains it, whether the index was built by appends, loaded after a
    /// clean shutdown, or rebuilt by recovery.
    #[test]
    fn read_finds_the_batch_containing_every_offset(
        batches in prop::collection::vec((1usize..6, 0usize..400), 1..40),
        segment_bytes in 400u64..6000,
        index_interval_bytes in 0u64..1500,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes, index_interval_bytes, ..config() };
        let mut log = open(dir.path(), config.clone());
        let mut expected = Vec::new();
        for (count, value_size) in &batches {
            let info = append(&mut log, BatchBuilder::new(*count).value_size(*value_size));
            expected.push((info.first_offset, info.last_offset));
        }
        let check = |log: &Log| {
            for &(first, last) in &expected {
                for offset in first..=last {
                    let bytes = log.read(offset, 1, i64::MAX, true).expect("read");
                    assert_eq!(batch_ranges(&bytes), vec![(first, last)], "offset {}", offset);
                }
            }
        };
        check(&log);
        log.close().expect("close");
        drop(log);
        check(&reopen_clean(dir.path(), config.clone()));
        for name in segment_files(dir.path(), "index") {
            fs::remove_file(dir.path().join(name)).expect("remove index");
        }
        check(&open(dir.path(), config));
    }
}

// ------------------------------------------------------------------- timestamps

/// Batches with out-of-order timestamps, spread over several segments.
fn timestamp_log(dir: &Path) -> (Log, Vec<(i64, i64)>) {
    let mut log = open(
        dir,
        LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 0,
            ..config()
        },
    );
    let batches: &[&[i64]] = &[
        &[100, 300, 200],
        &[150, 150],
        &[500, 400],
        &[450],
        &[500, 120],
        &[90, 700, 650],
        &[600],
    ];
    let mut records = Vec::new();
    for timestamps in batches {
        let info = append(&mut log, BatchBuilder::new(0).timestamps(timestamps));
        for (i, ts) in timestamps.iter().enumerate() {
            records.push((info.first_offset + i as i64, *ts));
        }
    }
    assert!(log.segment_count() > 2);
    (log, records)
}

#[test]
fn offset_for_timestamp_matches_a_brute_force_search() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, records) = timestamp_log(dir.path());
    let brute = |records: &[(i64, i64)], start: i64, ts: i64| {
        records
            .iter()
            .copied()
            .find(|&(o, t)| o >= start && t >= ts)
    };
    for ts in (0..800).step_by(7).chain([100, 150, 300, 500, 700, 701]) {
        assert_eq!(
            log.offset_for_timestamp(ts).expect("lookup"),
            brute(&records, 0, ts),
            "ts {ts}"
        );
    }
    log.delete_records_before(4).expect("delete records");
    for ts in (0..800).step_by(7) {
        assert_eq!(
            log.offset_for_timestamp(ts).expect("lookup"),
            brute(&records, 4, ts),
            "ts {ts}"
        );
    }
    // The answer survives a clean restart (time index from file) and a crash (rebuilt).
    log.close().expect("close");
    drop(log);
    let log = Log::open(dir.path(), config(), None, Some(4), true).expect("reopen");
    for ts in (0..800).step_by(13) {
        assert_eq!(
            log.offset_for_timestamp(ts).expect("lookup"),
            brute(&records, 4, ts),
            "ts {ts}"
        );
    }
}

#[test]
fn offset_of_max_timestamp_is_the_first_record_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = open(dir.path(), config());
    assert_eq!(empty.offset_of_max_timestamp().expect("lookup"), None);
    drop(empty);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, _) = timestamp_log(dir.path());
    // 700 is the second record of the sixth batch, offsets 10..=12.
    assert_eq!(
        log.offset_of_max_timestamp().expect("lookup"),
        Some((11, 700))
    );
    append(&mut log, BatchBuilder::new(0).timestamps(&[700, 700])); // offsets 14, 15
    assert_eq!(
        log.offset_of_max_timestamp().expect("lookup"),
        Some((11, 700))
    );
    log.close().expect("close");
    drop(log);
    let mut log = reopen_clean(dir.path(), config());
    assert_eq!(
        log.offset_of_max_timestamp().expect("lookup"),
        Some((11, 700))
    );
    // Once the record is below the log start (its batch still stored), the next one answers.
    log.set_high_watermark(log.log_end_offset());
    log.delete_records_before(12).expect("delete records");
    assert_eq!(
        log.offset_of_max_timestamp().expect("lookup"),
        Some((14, 700))
    );
    log.delete_records_before(15).expect("delete records");
    assert_eq!(
        log.offset_of_max_timestamp().expect("lookup"),
        Some((15, 700))
    );
}

#[test]
fn log_append_time_rewrites_the_batch_and_keeps_the_crc_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..config()
        },
    );
    let info = append(&mut log, BatchBuilder::new(3).timestamps(&[5, 6, 7]));
    assert_eq!(info.log_append_time, NOW);
    let later = BatchBuilder::new(1).build();
    log.append_as_leader(&later, 0, NOW + 10).expect("append");
    let bytes = log.read(0, 1 << 20, i64::MAX, false).expect("read");
    let headers: Vec<BatchHeader<'_>> = batch::batches(&bytes).map(|b| b.expect("batch")).collect();
    assert_eq!(headers[0].timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(headers[0].max_timestamp(), NOW);
    assert!(headers[0].crc_valid());
    assert_eq!(headers[1].max_timestamp(), NOW + 10);
    // Every record of a LogAppendTime batch carries the append time.
    assert_eq!(
        log.offset_for_timestamp(NOW).expect("lookup"),
        Some((0, NOW))
    );
    assert_eq!(
        log.offset_for_timestamp(NOW + 1).expect("lookup"),
        Some((3, NOW + 10))
    );
    assert_eq!(
        log.offset_of_max_timestamp().expect("lookup"),
        Some((3, NOW + 10))
    );
}

#[test]
fn a_request_of_many_batches_is_stored_as_sent_but_for_offsets_and_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    append(&mut log, BatchBuilder::new(5));
    // 700 batches are 1,400 pieces to write: more than one vectored write (IOV_MAX is 1,024).
    let mut request = BytesMut::new();
    for i in 0..700 {
        request.extend_from_slice(&BatchBuilder::new(1 + i % 3).build());
    }
    let sent = request.clone();
    let info = log.append_as_leader(&request, 7, NOW).expect("append");
    assert_eq!(request, sent, "the log must not modify the caller's buffer");
    assert_eq!(info.first_offset, 5);

    let stored = log.read(5, 1 << 30, i64::MAX, false).expect("read");
    assert_eq!(stored.len(), sent.len());
    let mut next = 5;
    let mut at = 0;
    for (stored_batch, sent_batch) in batch::batches(&stored).zip(batch::batches(&sent)) {
        let (stored_batch, sent_batch) = (stored_batch.expect("batch"), sent_batch.expect("batch"));
        assert_eq!(stored_batch.base_offset(), next);
        assert_eq!(stored_batch.partition_leader_epoch(), 7);
        assert!(stored_batch.crc_valid());
        let size = sent_batch.size();
        // Base offset (0..8) and leader epoch (12..16) are assigned; every other byte is as sent.
        assert_eq!(stored[at + 8..at + 12], sent[at + 8..at + 12]);
        assert_eq!(stored[at + 16..at + size], sent[at + 16..at + size]);
        next = stored_batch.last_offset() + 1;
        at += size;
    }
    assert_eq!(at, sent.len());
    assert_eq!(next, log.log_end_offset());
}

// ------------------------------------------------------------------- validation

fn assert_nothing_appended(log: &Log) {
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn corrupt_batches_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());

    let mut bad_crc = BatchBuilder::new(2).build();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let err = log.append_as_leader(&bad_crc, 0, NOW).expect_err("bad CRC");
    assert!(
        matches!(&err, LogError::CorruptRecord { reason } if reason.contains("CRC")),
        "{err}"
    );

    let mut bad_magic = BatchBuilder::new(2).build();
    bad_magic[16] = 1;
    let err = log
        .append_as_leader(&bad_magic, 0, NOW)
        .expect_err("bad magic");
    assert!(
        matches!(&err, LogError::CorruptRecord { reason } if reason.contains("magic")),
        "{err}"
    );

    let mut bad_delta = BatchBuilder::new(3).build();
    bad_delta[23..27].copy_from_slice(&5i32.to_be_bytes());
    fix_crc(&mut bad_delta);
    let err = log
        .append_as_leader(&bad_delta, 0, NOW)
        .expect_err("delta mismatch");
    assert!(
        matches!(&err, LogError::CorruptRecord { reason } if reason.contains("lastOffsetDelta")),
        "{err}"
    );

    let mut bad_codec = BatchBuilder::new(1).build();
    bad_codec[22] |= 0x07;
    fix_crc(&mut bad_codec);
    let err = log
        .append_as_leader(&bad_codec, 0, NOW)
        .expect_err("codec 7");
    assert!(
        matches!(&err, LogError::CorruptRecord { reason } if reason.contains("compression")),
        "{err}"
    );

    let mut short_length = BatchBuilder::new(1).build();
    short_length.truncate(short_length.len() - 3);
    assert!(matches!(
        log.append_as_leader(&short_length, 0, NOW),
        Err(LogError::CorruptRecord { .. })
    ));

    let mut trailing = BatchBuilder::new(1).build();
    trailing.extend_from_slice(&[0; 5]);
    assert!(matches!(
        log.append_as_leader(&trailing, 0, NOW),
        Err(LogError::CorruptRecord { .. })
    ));

    assert!(matches!(
        log.append_as_leader(&[], 0, NOW),
        Err(LogError::InvalidRecord { .. })
    ));

    // A valid batch followed by an invalid one: nothing from the request is appended.
    let mut mixed = BatchBuilder::new(2).build();
    let mut second = BatchBuilder::new(2).build();
    second[30] ^= 1;
    mixed.extend_from_slice(&second);
    assert!(matches!(
        log.append_as_leader(&mixed, 0, NOW),
        Err(LogError::CorruptRecord { .. })
    ));
    assert_nothing_appended(&log);
}

#[test]
fn oversized_batches_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            max_message_bytes: 200,
            ..config()
        },
    );
    let big = BatchBuilder::new(1).value_size(300).build();
    let size = big.len();
    assert!(matches!(
        log.append_as_leader(&big, 0, NOW),
        Err(LogError::RecordTooLarge { size: s, max: 200 }) if s == size
    ));
    assert_nothing_appended(&log);
    append(&mut log, BatchBuilder::new(1).value_size(10));
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn create_time_outside_the_window_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            timestamp_before_max_ms: 60_000,
            timestamp_after_max_ms: 1_000,
            ..config()
        },
    );
    let future = BatchBuilder::new(2).timestamps(&[NOW, NOW + 1_001]);
    assert!(
        matches!(try_append(&mut log, future), Err(LogError::InvalidTimestamp { timestamp, .. }) if timestamp == NOW + 1_001)
    );
    let past = BatchBuilder::new(2).timestamps(&[NOW - 60_001, NOW]);
    assert!(
        matches!(try_append(&mut log, past), Err(LogError::InvalidTimestamp { timestamp, .. }) if timestamp == NOW - 60_001)
    );
    assert_nothing_appended(&log);
    let edges = BatchBuilder::new(2).timestamps(&[NOW - 60_000, NOW + 1_000]);
    assert_eq!(
        try_append(&mut log, edges)
            .expect("in the window")
            .last_offset,
        1
    );
}

#[test]
fn compacted_topics_refuse_null_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            cleanup_compact: true,
            ..config()
        },
    );
    assert!(matches!(
        try_append(&mut log, BatchBuilder::new(3).null_keys()),
        Err(LogError::InvalidRecord { .. })
    ));
    // Keys are checked inside compressed batches too.
    let compressed = BatchBuilder::new(3)
        .null_keys()
        .compression(Compression::Gzip);
    assert!(matches!(
        try_append(&mut log, compressed),
        Err(LogError::InvalidRecord { .. })
    ));
    assert_nothing_appended(&log);
    append(
        &mut log,
        BatchBuilder::new(3).compression(Compression::Gzip),
    );
    assert_eq!(read_all(&log).len(), 3);
}

// ------------------------------------------------------------------- idempotence

#[test]
fn a_retried_batch_returns_its_original_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    let first = append(&mut log, BatchBuilder::new(3).producer(7, 0, 0));
    append(&mut log, BatchBuilder::new(2)); // someone else's data in between
    append(&mut log, BatchBuilder::new(1).producer(7, 0, 3));
    let size = log.size_bytes();
    let retry = append(&mut log, BatchBuilder::new(3).producer(7, 0, 0));
    assert!(retry.duplicate);
    assert_eq!(
        (retry.first_offset, retry.last_offset),
        (first.first_offset, first.last_offset)
    );
    assert_eq!(retry.record_count, 0);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(
        log.producer_state(7)
            .map(|p| (p.epoch, p.last_seq, p.last_offset)),
        Some((0, 3, 5))
    );
}

#[test]
fn sequence_and_epoch_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    // A producer the log has no state for may start at any sequence (KIP-360).
    append(&mut log, BatchBuilder::new(2).producer(1, 0, 10));
    let gap = try_append(&mut log, BatchBuilder::new(1).producer(1, 0, 13));
    assert!(matches!(
        gap,
        Err(LogError::OutOfOrderSequence {
            producer_id: 1,
            expected: 12,
            received: 13
        })
    ));
    append(&mut log, BatchBuilder::new(1).producer(1, 0, 12));
    // A new epoch must restart at 0.
    let bad_bump = try_append(&mut log, BatchBuilder::new(1).producer(1, 1, 13));
    assert!(matches!(
        bad_bump,
        Err(LogError::OutOfOrderSequence {
            expected: 0,
            received: 13,
            ..
        })
    ));
    append(&mut log, BatchBuilder::new(1).producer(1, 1, 0));
    // The old epoch is fenced.
    let zombie = try_append(&mut log, BatchBuilder::new(1).producer(1, 0, 13));
    assert!(matches!(
        zombie,
        Err(LogError::InvalidProducerEpoch {
            producer_id: 1,
            current: 1,
            received: 0
        })
    ));
    assert_eq!(log.log_end_offset(), 4);

    // Two batches of one producer in one request are checked in order; one bad batch fails
    // the request and leaves the producer's state as it was.
    let mut request = BatchBuilder::new(1).producer(1, 1, 1).build();
    request.extend_from_slice(&BatchBuilder::new(1).producer(1, 1, 3).build());
    assert!(matches!(
        log.append_as_leader(&request, 0, NOW),
        Err(LogError::OutOfOrderSequence { expected: 2, .. })
    ));
    assert_eq!(log.producer_state(1).map(|p| p.last_seq), Some(0));
    let mut request = BatchBuilder::new(1).producer(1, 1, 1).build();
    request.extend_from_slice(&BatchBuilder::new(2).producer(1, 1, 2).build());
    let info = log.append_as_leader(&request, 0, NOW).expect("in order");
    assert_eq!((info.first_offset, info.last_offset), (4, 6));
    assert_eq!(
        log.producer_state(1).map(|p| (p.last_seq, p.last_offset)),
        Some((3, 6))
    );
}

#[test]
fn producer_state_survives_a_clean_restart_and_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 400,
        ..config()
    };
    let mut log = open(dir.path(), config.clone());
    for seq in 0..10 {
        append(&mut log, BatchBuilder::new(1).producer(3, 2, seq));
    }
    assert!(log.segment_count() > 2, "rolls take snapshots");
    log.close().expect("close");
    drop(log);
    assert!(!segment_files(dir.path(), ".snapshot").is_empty());

    let mut log = reopen_clean(dir.path(), config.clone());
    assert_eq!(
        log.producer_state(3)
            .map(|p| (p.epoch, p.last_seq, p.last_offset)),
        Some((2, 9, 9))
    );
    let dup = append(&mut log, BatchBuilder::new(1).producer(3, 2, 8));
    assert!(dup.duplicate && dup.first_offset == 8);
    append(&mut log, BatchBuilder::new(1).producer(3, 2, 10));
    // Crash: no close, and every snapshot lost; state is rebuilt from the batch headers.
    drop(log);
    for name in segment_files(dir.path(), ".snapshot") {
        fs::remove_file(dir.path().join(name)).expect("remove snapshot");
    }
    let mut log = open(dir.path(), config.clone());
    assert_eq!(
        log.producer_state(3).map(|p| (p.last_seq, p.last_offset)),
        Some((10, 10))
    );
    assert!(append(&mut log, BatchBuilder::new(1).producer(3, 2, 10)).duplicate);
    assert!(matches!(
        try_append(&mut log, BatchBuilder::new(1).producer(3, 2, 12)),
        Err(LogError::OutOfOrderSequence { expected: 11, .. })
    ));
    // Crash with the roll snapshots in place: replay starts from the newest one.
    append(&mut log, BatchBuilder::new(1).producer(3, 2, 11));
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(
        log.producer_state(3).map(|p| (p.last_seq, p.last_offset)),
        Some((11, 11))
    );
}

// ------------------------------------------------------------------- recovery

/// Appends `n` single-record batches and returns each batch's end position in segment 0.
fn batches_in_one_segment(log: &mut Log, n: usize, value_size: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            append(log, BatchBuilder::new(1).value_size(value_size));
            log.size_bytes()
        })
        .collect()
}

fn first_segment(dir: &Path) -> std::path::PathBuf {
    dir.join("00000000000000000000.log")
}

#[test]
fn recovery_truncates_a_torn_batch_and_appends_continue() {
    for clean_shutdown in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(
            dir.path(),
            LogConfig {
                index_interval_bytes: 100,
                ..config()
            },
        );
        let ends = batches_in_one_segment(&mut log, 10, 50);
        drop(log); // crash: no close
        let file = fs::OpenOptions::new()
            .write(true)
            .open(first_segment(dir.path()))
            .expect("open");
        file.set_len(ends[6] + 20).expect("tear batch 7");
        drop(file);

        let mut log = Log::open(dir.path(), config(), None, None, clean_shutdown).expect("reopen");
        assert_eq!(log.log_end_offset(), 7, "clean_shutdown={clean_shutdown}");
        assert_eq!(log.recovery_point(), 7);
        assert_eq!(
            fs::metadata(first_segment(dir.path())).expect("stat").len(),
            ends[6]
        );
        assert_eq!(read_all(&log).len(), 7);
        let info = append(&mut log, BatchBuilder::new(2));
        assert_eq!((info.first_offset, info.last_offset), (7, 8));
        assert_eq!(
            read_all(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
    }
}

#[test]
fn recovery_drops_a_batch_with_a_flipped_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    let ends = batches_in_one_segment(&mut log, 5, 40);
    drop(log);
    let path = first_segment(dir.path());
    let mut bytes = fs::read(&path).expect("read");
    bytes[(ends[3] + 70) as usize] ^= 0x10; // inside the last batch's records
    fs::write(&path, &bytes).expect("write");
    let log = open(dir.path(), config());
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.size_bytes(), ends[3]);
}

#[test]
fn recovery_cuts_garbage_after_the_last_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    let ends = batches_in_one_segment(&mut log, 3, 40);
    drop(log);
    let path = first_segment(dir.path());
    let mut bytes = fs::read(&path).expect("read");
    bytes.extend((0..500u32).map(|i| (i * 31 % 256) as u8));
    fs::write(&path, &bytes).expect("write");
    let log = open(dir.path(), config());
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(fs::metadata(&path).expect("stat").len(), ends[2]);
}

#[test]
fn recovery_validates_large_batches_across_read_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    // Larger than the 16 KiB header chunk, and together larger than the 1 MiB recovery chunk.
    let ends = batches_in_one_segment(&mut log, 30, 40_000);
    drop(log);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(first_segment(dir.path()))
        .expect("open");
    file.set_len(ends[28] + 1000).expect("tear the last batch");
    drop(file);
    let log = open(dir.path(), config());
    assert_eq!(log.log_end_offset(), 29);
    assert_eq!(
        batch_ranges(&log.read(28, 1, i64::MAX, true).expect("read")),
        vec![(28, 28)]
    );
}

#[test]
fn corruption_in_an_unflushed_segment_drops_the_later_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 500,
        ..config()
    };
    let mut log = open(dir.path(), config.clone());
    for _ in 0..12 {
        append(&mut log, BatchBuilder::new(1).value_size(100));
    }
    let segments = log.segments();
    assert!(segments.len() >= 4);
    drop(log);
    let victim = &segments[1];
    let mut bytes = fs::read(&victim.path).expect("read");
    let len = bytes.len();
    bytes[len - 5] ^= 0xff; // the last batch of segment 1
    fs::write(&victim.path, &bytes).expect("write");

    // With a recovery point in segment 2, segment 1 counts as flushed: only sanity-checked.
    let log = Log::open(
        dir.path(),
        config.clone(),
        Some(segments[2].base_offset),
        None,
        false,
    )
    .expect("reopen");
    assert_eq!(log.segment_count(), segments.len());
    drop(log);
    // Without one, the corrupt batch ends the log.
    let log = open(dir.path(), config);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.log_end_offset(), segments[2].base_offset - 1);
    for later in &segments[2..] {
        assert!(
            !later.path.exists(),
            "{} must be deleted",
            later.path.display()
        );
    }
}

#[test]
fn missing_or_corrupt_indexes_are_rebuilt_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 150,
        ..config()
    };
    let mut log = open(dir.path(), config.clone());
    for i in 0..30 {
        append(
            &mut log,
            BatchBuilder::new(2)
                .timestamps(&[1000 + i, 2000 - i])
                .value_size(40),
        );
    }
    log.close().expect("close");
    drop(log);
    let indexes = segment_files(dir.path(), "index");
    let originals: Vec<Vec<u8>> = indexes
        .iter()
        .map(|n| fs::read(dir.path().join(n)).expect("read"))
        .collect();
    assert!(
        originals.iter().any(|b| !b.is_empty()),
        "the test needs real index entries"
    );

    fs::remove_file(dir.path().join(&indexes[0])).expect("remove"); // first .index
    fs::write(dir.path().join(&indexes[1]), [1, 2, 3, 4, 5]).expect("corrupt"); // first .timeindex
    fs::write(dir.path().join(&indexes[2]), [0xff; 16]).expect("corrupt"); // second .index: bad positions
    let log = reopen_clean(dir.path(), config);
    assert_eq!(read_all(&log).len(), 60);
    for (name, original) in indexes.iter().zip(&originals) {
        assert_eq!(
            &fs::read(dir.path().join(name)).expect("read"),
            original,
            "{name}"
        );
    }
}

#[test]
fn clean_open_keeps_foreign_files_and_removes_leftovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    append(&mut log, BatchBuilder::new(1));
    log.close().expect("close");
    drop(log);
    let p = |n: &str| dir.path().join(n);
    fs::write(p("partition.metadata"), "version: 0\ntopic_id: x\n").expect("write");
    fs::write(p("00000000000000000042.index"), []).expect("orphan index");
    fs::write(p("00000000000000000007.log.deleted"), [1]).expect("leftover");
    let log = reopen_clean(dir.path(), config());
    assert_eq!(log.log_end_offset(), 1);
    assert!(p("partition.metadata").exists());
    assert!(!p("00000000000000000042.index").exists());
    assert!(!p("00000000000000000007.log.deleted").exists());
}

// ------------------------------------------------------------------- retention and deletion

#[test]
fn retention_by_time_deletes_old_segments_below_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 300,
        retention_ms: Some(Duration::from_millis(10_000)),
        ..config()
    };
    let mut log = open(dir.path(), config.clone());
    for i in 0..9 {
        let ts = if i < 6 { NOW - 20_000 } else { NOW };
        append(
            &mut log,
            BatchBuilder::new(1).timestamps(&[ts]).value_size(60),
        );
    }
    let before = log.segments();
    let old = before
        .iter()
        .filter(|s| s.largest_timestamp < NOW - 10_000)
        .count();
    assert!(old >= 2 && old < before.len());

    log.set_high_watermark(before[1].base_offset);
    assert_eq!(
        log.apply_retention(NOW).expect("retention"),
        1,
        "only below the high watermark"
    );
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(log.apply_retention(NOW).expect("retention"), old - 1);
    assert_eq!(log.log_start_offset(), before[old].base_offset);
    assert!(!before[0].path.exists());
    assert!(matches!(
        log.read(0, 100, i64::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log).len() as i64, 9 - log.log_start_offset());

    // cleanup.policy=compact alone: retention does not apply.
    log.set_config(LogConfig {
        cleanup_delete: false,
        ..config
    });
    assert_eq!(log.apply_retention(NOW + 1_000_000).expect("retention"), 0);
}

#[test]
fn retention_of_everything_keeps_an_empty_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 300,
            retention_ms: Some(Duration::from_millis(1)),
            ..config()
        },
    );
    for _ in 0..5 {
        append(&mut log, BatchBuilder::new(1).value_size(60));
    }
    let count = log.segment_count();
    assert_eq!(log.apply_retention(NOW).expect("retention"), count);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(
        segment_files(dir.path(), ".log"),
        vec![format!("{:020}.log", 5)]
    );
    assert_eq!(append(&mut log, BatchBuilder::new(1)).first_offset, 5);
}

#[test]
fn retention_by_bytes_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 300,
            retention_bytes: Some(700),
            ..config()
        },
    );
    for _ in 0..12 {
        append(&mut log, BatchBuilder::new(1).value_size(60));
    }
    let deleted = log.apply_retention(NOW).expect("retention");
    assert!(deleted > 0);
    let first = log.segments()[0].size_bytes;
    assert!(log.size_bytes() >= 700);
    assert!(
        log.size_bytes() - first < 700,
        "one more deletion would go below the limit"
    );
    assert_eq!(log.apply_retention(NOW).expect("retention"), 0);
}

#[test]
fn delete_records_moves_the_log_start_and_drops_whole_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 300,
            ..config()
        },
    );
    for _ in 0..10 {
        append(&mut log, BatchBuilder::new(2).value_size(20));
    }
    let segments = log.segments();
    log.set_high_watermark(12);
    assert!(matches!(
        log.delete_records_before(13),
        Err(LogError::OffsetOutOfRange {
            requested: 13,
            log_end: 12,
            ..
        })
    ));
    let target = segments[1].base_offset + 1;
    assert_eq!(log.delete_records_before(target).expect("delete"), target);
    assert_eq!(log.segments()[0].base_offset, segments[1].base_offset);
    assert!(!segments[0].path.exists());
    assert!(matches!(
        log.read(target - 1, 100, 12, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // The batch holding the new start is still read whole; the consumer skips below it.
    let first = batch_ranges(&log.read(target, 100, 20, true).expect("read"))[0];
    assert!(first.0 < target && target <= first.1);
    assert_eq!(
        log.delete_records_before(2).expect("backwards is a no-op"),
        target
    );
}

// ------------------------------------------------------------------- flush, epochs, follower

#[test]
fn flush_policies_move_the_recovery_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            flush_messages: Some(3),
            flush_ms: Some(Duration::from_millis(100)),
            ..config()
        },
    );
    append(&mut log, BatchBuilder::new(2));
    assert_eq!(log.recovery_point(), 0);
    append(&mut log, BatchBuilder::new(1));
    assert_eq!(log.recovery_point(), 3, "flush.messages=3 reached");
    append(&mut log, BatchBuilder::new(1));
    assert!(
        !log.flush_if_due(NOW).expect("flush"),
        "flush.ms counts from the last flush"
    );
    assert!(!log.flush_if_due(NOW + 99).expect("flush"));
    assert!(log.flush_if_due(NOW + 100).expect("flush"));
    assert_eq!(log.recovery_point(), 4);
    assert!(
        !log.flush_if_due(NOW + 300).expect("flush"),
        "nothing left to flush"
    );
}

#[test]
fn leader_epochs_are_cached_and_checkpointed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), config());
    for (epoch, records) in [(0, 2), (0, 1), (3, 2), (5, 1)] {
        let bytes = BatchBuilder::new(records).build();
        log.append_as_leader(&bytes, epoch, NOW).expect("append");
    }
    assert_eq!(log.leader_epoch_cache(), &[(0, 0), (3, 3), (5, 5)]);
    let stored = log.read(3, 1, i64::MAX, true).expect("read");
    assert_eq!(
        BatchHeader::parse(&stored)
            .expect("batch")
            .partition_leader_epoch(),
        3
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).expect("read"),
        "0\n3\n0 0\n3 3\n5 5\n"
    );
    log.truncate_to(5).expect("truncate");
    assert_eq!(log.leader_epoch_cache(), &[(0, 0), (3, 3)]);
    drop(log);
    let log = open(dir.path(), config());
    assert_eq!(log.leader_epoch_cache(), &[(0, 0), (3, 3)]);
}

#[test]
fn truncate_to_drops_everything_from_an_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 300,
        ..config()
    };
    let mut log = open(dir.path(), config.clone());
    for seq in 0..8 {
        append(
            &mut log,
            BatchBuilder::new(2).producer(9, 0, 2 * seq).value_size(30),
        );
    }
    let segments_before = log.segment_count();
    log.truncate_to(9).expect("truncate inside a batch");
    assert_eq!(log.log_end_offset(), 8, "a batch is never split");
    assert!(log.segment_count() < segments_before);
    assert_eq!(log.high_watermark(), 8);
    assert_eq!(
        log.producer_state(9).map(|p| (p.last_seq, p.last_offset)),
        Some((7, 7))
    );
    assert_eq!(read_all(&log).len(), 8);
    let info = append(&mut log, BatchBuilder::new(1).producer(9, 0, 8));
    assert_eq!(info.first_offset, 8);
    log.truncate_to(0).expect("truncate everything");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
    assert_eq!(log.producer_state(9), None);
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn follower_append_copies_batches_with_their_offsets() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let mut leader = open(leader_dir.path(), config());
    for (epoch, seq) in [(1, 0), (1, 2), (4, 4)] {
        let bytes = BatchBuilder::new(2).producer(5, 0, seq).build();
        leader.append_as_leader(&bytes, epoch, NOW).expect("append");
    }
    let fetched = leader.read(0, 1 << 20, i64::MAX, false).expect("read");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut follower = open(
        dir.path(),
        LogConfig {
            segment_bytes: 200,
            ..config()
        },
    );
    let info = follower
        .append_as_follower(&fetched[..])
        .expect("follower append");
    assert_eq!(
        (info.first_offset, info.last_offset, info.record_count),
        (0, 5, 6)
    );
    assert_eq!(follower.log_end_offset(), 6);
    assert_eq!(follower.leader_epoch_cache(), &[(1, 0), (4, 4)]);
    assert_eq!(follower.producer_state(5).map(|p| p.last_seq), Some(5));
    follower.set_high_watermark(6);
    assert_eq!(read_all(&follower), read_all(&leader));
    // Offsets must move forward.
    assert!(matches!(
        follower.append_as_follower(&fetched[..]),
        Err(LogError::NonMonotonicOffset {
            expected: 6,
            received: 0
        })
    ));
    let mut bad = fetched.to_vec();
    bad[40] ^= 1;
    assert!(matches!(
        follower.append_as_follower(&bad),
        Err(LogError::CorruptRecord { .. })
    ));
}

#[test]
fn close_leaves_exact_sized_consistent_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 100,
        ..config()
    };
    let mut log = open(dir.path(), config.clone());
    for _ in 0..20 {
        append(&mut log, BatchBuilder::new(1).value_size(50));
    }
    log.close().expect("close");
    assert_eq!(log.recovery_point(), 20);
    let index = fs::read(dir.path().join("00000000000000000000.index")).expect("read index");
    assert!(!index.is_empty() && index.len() % 8 == 0);
    let entries: Vec<(u32, u32)> = index
        .chunks_exact(8)
        .map(|c| (batch::be_u32(c, 0), batch::be_u32(c, 4)))
        .collect();
    let log_bytes = fs::read(first_segment(dir.path())).expect("read log");
    for (relative, position) in entries {
        let header =
            BatchHeader::parse(&log_bytes[position as usize..]).expect("entry points at a batch");
        assert_eq!(header.last_offset(), i64::from(relative));
    }
    let timeindex = fs::read(dir.path().join("00000000000000000000.timeindex")).expect("read");
    assert_eq!(timeindex.len() % 12, 0);
    let last = &timeindex[timeindex.len() - 12..];
    assert_eq!(
        batch::be_i64(last, 0),
        1000,
        "the final max timestamp is recorded on close"
    );
    assert!(dir.path().join(format!("{:020}.snapshot", 20)).exists());
}
