//! Compaction tests, each on a log in its own temporary directory, asserting on what a full
//! read returns afterwards (and after reopening the directory).

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::{run, CleanLimits, SwapStep};
use crate::{batch, testutil::BatchBuilder, Log, LogConfig};

/// Broker clock for the tests.
const NOW: i64 = 1_700_000_000_000;
const SECOND: i64 = 1000;

/// (offset, key, value) of one record as read back.
type Row = (i64, String, Option<String>);

fn compacted() -> LogConfig {
    LogConfig {
        retention_ms: None,
        cleanup_delete: false,
        cleanup_compact: true,
        ..LogConfig::default()
    }
}

/// Opens (recovering everything, as after a crash) with the high watermark at the log end, as
/// a single-node broker sets it.
fn open(dir: &Path, config: LogConfig) -> Log {
    let mut log = Log::open(dir, config, None, None, false).expect("open log");
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    log
}

/// Appends one batch of (key, value) records stamped `timestamp`; the high watermark follows.
fn put_at(log: &mut Log, entries: &[(&str, Option<&str>)], timestamp: i64) -> i64 {
    put_batch(
        log,
        BatchBuilder::keyed(entries).timestamps(&vec![timestamp; entries.len()]),
    )
}

fn put(log: &mut Log, entries: &[(&str, Option<&str>)]) -> i64 {
    put_batch(log, BatchBuilder::keyed(entries))
}

/// Appends a batch and returns its first offset.
fn put_batch(log: &mut Log, builder: BatchBuilder) -> i64 {
    let bytes = builder.build();
    let info = log.append_as_leader(&bytes, 0, NOW).expect("append");
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    info.first_offset
}

/// A pass that must clean something.
fn must_clean(log: &mut Log, now_ms: i64) -> crate::CleanStats {
    log.clean(now_ms)
        .expect("clean")
        .expect("the log is due for cleaning")
}

fn row(offset: i64, key: &str, value: Option<&str>) -> Row {
    (offset, key.into(), value.map(Into::into))
}

fn seal(log: &mut Log) {
    log.force_roll().expect("roll");
}

fn text(b: Option<Bytes>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Every stored batch from the log start on, in order, as whole batch bytes.
fn all_batches(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        if bytes.is_empty() {
            break;
        }
        for b in batch::batches(&bytes) {
            let b = b.expect("whole batch");
            offset = b.last_offset() + 1;
            out.push(b.bytes().to_vec());
        }
    }
    out
}

/// A full read: every record from the log start to the log end.
fn read_all(log: &Log) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in all_batches(log) {
        let mut bytes = Bytes::from(batch);
        let set = RecordBatchDecoder::decode(&mut bytes).expect("decode stored batch");
        for r in set.records {
            rows.push((r.offset, text(r.key).unwrap_or_default(), text(r.value)));
        }
    }
    rows
}

/// The latest (offset, value) per key, as a consumer rebuilding a table would see it.
fn table(rows: &[Row]) -> BTreeMap<String, (i64, Option<String>)> {
    rows.iter()
        .map(|(o, k, v)| (k.clone(), (*o, v.clone())))
        .collect()
}

fn assert_increasing(rows: &[Row]) {
    assert!(
        rows.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets must strictly increase: {rows:?}"
    );
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("list dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

// ------------------------------------------------------------------- the latest value per key

#[test]
fn many_updates_to_few_keys_leave_the_latest_per_key_at_its_original_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 1024,
        ..compacted()
    };
    let mut log = open(dir.path(), config.clone());
    let mut latest = BTreeMap::new();
    for i in 0..200 {
        let key = format!("k{}", i % 5);
        let value = format!("v{i}");
        let offset = put(&mut log, &[(&key, Some(&value))]);
        latest.insert(key, (offset, Some(value)));
    }
    seal(&mut log);
    let segments_before = log.segment_count();
    let size_before = log.size_bytes();

    let stats = must_clean(&mut log, NOW);
    let rows = read_all(&log);
    assert_eq!(rows.len(), 5, "one record per key: {rows:?}");
    assert_eq!(table(&rows), latest);
    assert_increasing(&rows);
    assert_eq!(rows[0].0, 195, "the survivors keep their offsets");
    assert_eq!(log.log_end_offset(), 200, "the log end does not move");
    assert_eq!(log.log_start_offset(), 0, "nor does the log start");
    assert!(log.size_bytes() < size_before / 10);
    // Groups are formed from the sizes before cleaning, as in Kafka: full segments are each
    // rewritten on their own the first time, and merge on a later pass.
    assert_eq!(log.segment_count(), segments_before);
    assert_eq!(stats.records_read, 200);
    assert_eq!(stats.records_retained, 5);
    assert_eq!(stats.end_offset, 200);
    assert_eq!(log.cleaner_checkpoint(), 200);
    assert!(leftovers(dir.path()).is_empty());

    // Nothing is dirty any more, and that survives a crash-style reopen.
    assert_eq!(log.clean(NOW).expect("clean"), None);
    drop(log);
    let mut log = open(dir.path(), config);
    assert_eq!(table(&read_all(&log)), latest);
    assert_eq!(log.cleaner_checkpoint(), 200);
    assert_eq!(log.clean(NOW).expect("clean"), None);
    // Reads from an offset that was compacted away land on the next survivor.
    let bytes = log.read(3, 1 << 20, i64::MAX, true).expect("read in a gap");
    let first = batch::batches(&bytes)
        .next()
        .expect("a batch")
        .expect("whole");
    assert_eq!(first.base_offset(), 195);

    // A later pass merges the shrunken segments.
    for i in 0..10 {
        put(&mut log, &[("k0", Some(&format!("last{i}")))]);
    }
    seal(&mut log);
    must_clean(&mut log, NOW);
    // The old clean section becomes one segment; the dirty one (750 bytes before cleaning) did
    // not fit beside it within segment.bytes.
    assert_eq!(log.segment_count(), 3, "{:?}", log.segments());
    let rows = read_all(&log);
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[4], row(209, "k0", Some("last9")));
}

#[test]
fn a_pass_uses_only_what_is_new_since_the_last_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            min_cleanable_dirty_ratio: 0.0,
            ..compacted()
        },
    );
    put(&mut log, &[("a", Some("1")), ("b", Some("1"))]);
    put(&mut log, &[("a", Some("2"))]);
    seal(&mut log);
    must_clean(&mut log, NOW);
    put(&mut log, &[("b", Some("3")), ("c", Some("3"))]);
    seal(&mut log);
    let stats = must_clean(&mut log, NOW);
    assert_eq!(stats.first_dirty_offset, 3);
    assert_eq!(
        read_all(&log),
        vec![
            row(2, "a", Some("2")),
            row(3, "b", Some("3")),
            row(4, "c", Some("3")),
        ]
    );
}

// ------------------------------------------------------------------- tombstones

#[test]
fn a_tombstone_survives_one_pass_then_goes_once_delete_retention_has_passed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        delete_retention_ms: Duration::from_secs(10),
        min_cleanable_dirty_ratio: 0.0,
        ..compacted()
    };
    let mut log = open(dir.path(), config.clone());
    put(&mut log, &[("gone", Some("a")), ("stays", Some("b"))]);
    put(&mut log, &[("gone", None)]);
    seal(&mut log);

    // First pass: the value the tombstone deletes goes; the tombstone stays, with a horizon.
    let stats = must_clean(&mut log, NOW);
    assert_eq!(stats.tombstones_removed, 0);
    assert_eq!(
        read_all(&log),
        vec![row(1, "stays", Some("b")), row(2, "gone", None)]
    );
    let batches = all_batches(&log);
    let marked = batch::BatchHeader::parse(&batches[1]).expect("header");
    assert!(marked.has_delete_horizon());
    assert_eq!(marked.base_timestamp(), NOW + 10 * SECOND);

    // A pass before the horizon keeps it, even after a reopen.
    put(&mut log, &[("filler", Some("1"))]);
    seal(&mut log);
    drop(log);
    let mut log = open(dir.path(), config);
    must_clean(&mut log, NOW + 10 * SECOND - 1);
    assert!(read_all(&log).contains(&row(2, "gone", None)));

    // The first pass at or after the horizon removes it.
    put(&mut log, &[("filler", Some("2"))]);
    seal(&mut log);
    let stats = must_clean(&mut log, NOW + 10 * SECOND);
    assert_eq!(stats.tombstones_removed, 1);
    assert_eq!(
        read_all(&log),
        vec![row(1, "stays", Some("b")), row(4, "filler", Some("2"))]
    );
}

#[test]
fn a_superseded_tombstone_goes_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), compacted());
    put(&mut log, &[("k", Some("a"))]);
    put(&mut log, &[("k", None)]);
    put(&mut log, &[("k", Some("b"))]);
    seal(&mut log);
    must_clean(&mut log, NOW);
    assert_eq!(read_all(&log), vec![row(2, "k", Some("b"))]);
}

// ------------------------------------------------------------------- when a log is cleaned

#[test]
fn the_dirty_ratio_must_exceed_min_cleanable_dirty_ratio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), compacted());
    for i in 0..20 {
        put(&mut log, &[(&format!("k{i:02}"), Some("v"))]);
    }
    seal(&mut log);
    assert!(log.clean(NOW).expect("clean").is_some(), "all dirty");
    // 5 dirty batches against 20 clean ones: 20% dirty, under the default 50%.
    for i in 0..5 {
        put(&mut log, &[(&format!("k{i:02}"), Some("w"))]);
    }
    seal(&mut log);
    assert_eq!(log.clean(NOW).expect("clean"), None);
    // 25 dirty against 20 clean (the first pass removed nothing): over 50%.
    for i in 0..20 {
        put(&mut log, &[(&format!("k{i:02}"), Some("x"))]);
    }
    seal(&mut log);
    let stats = must_clean(&mut log, NOW);
    assert_eq!(stats.records_retained, 20);
    assert!(read_all(&log)
        .iter()
        .all(|(_, _, v)| v.as_deref() == Some("x")));
}

#[test]
fn segments_younger_than_min_compaction_lag_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            min_compaction_lag_ms: Duration::from_secs(60),
            min_cleanable_dirty_ratio: 0.0,
            ..compacted()
        },
    );
    put_at(
        &mut log,
        &[("k", Some("old")), ("k", Some("older"))],
        NOW - 120 * SECOND,
    );
    put_at(&mut log, &[("j", Some("old"))], NOW - 120 * SECOND);
    seal(&mut log);
    let young = log.log_end_offset();
    put_at(&mut log, &[("k", Some("new"))], NOW - 10 * SECOND);
    seal(&mut log);

    // Only the old segment is cleanable; the young one's record is not in the map yet, so the
    // old segment keeps its own latest value of `k`.
    let stats = must_clean(&mut log, NOW);
    assert_eq!(stats.end_offset, young);
    assert_eq!(
        read_all(&log),
        vec![
            row(1, "k", Some("older")),
            row(2, "j", Some("old")),
            row(3, "k", Some("new")),
        ]
    );
    // Fifty seconds later it is old enough.
    let stats = must_clean(&mut log, NOW + 50 * SECOND);
    assert_eq!(stats.end_offset, young + 1);
    assert_eq!(
        read_all(&log),
        vec![row(2, "j", Some("old")), row(3, "k", Some("new"))]
    );
}

#[test]
fn max_compaction_lag_cleans_whatever_the_ratio_and_rolls_the_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            // A ratio can never exceed 1: only the max lag can trigger a pass.
            min_cleanable_dirty_ratio: 1.0,
            max_compaction_lag_ms: Duration::from_secs(60),
            ..compacted()
        },
    );
    put_at(
        &mut log,
        &[("k", Some("a")), ("k", Some("b"))],
        NOW - 30 * SECOND,
    );
    // The active segment rolls at max.compaction.lag.ms although segment.ms is 7 days.
    assert!(!log.maybe_roll(NOW).expect("maybe_roll"));
    assert!(log.maybe_roll(NOW + 60 * SECOND + 1).expect("maybe_roll"));
    assert_eq!(log.clean(NOW).expect("clean"), None, "not past the lag yet");
    must_clean(&mut log, NOW + 31 * SECOND);
    assert_eq!(read_all(&log), vec![row(1, "k", Some("b"))]);
}

#[test]
fn the_active_segment_and_uncompacted_topics_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), compacted());
    put(&mut log, &[("k", Some("1")), ("k", Some("2"))]);
    seal(&mut log);
    put(&mut log, &[("k", Some("3")), ("k", Some("4"))]);
    let active = log.segments().last().expect("active").path.clone();
    let active_bytes = fs::read(&active).expect("read active");

    must_clean(&mut log, NOW);
    assert_eq!(fs::read(&active).expect("read active"), active_bytes);
    // The sealed part is compacted against itself only; the active segment keeps every record.
    assert_eq!(
        read_all(&log),
        vec![
            row(1, "k", Some("2")),
            row(2, "k", Some("3")),
            row(3, "k", Some("4")),
        ]
    );

    let plain_dir = tempfile::tempdir().expect("tempdir");
    let mut plain = open(
        plain_dir.path(),
        LogConfig {
            retention_ms: None,
            ..LogConfig::default()
        },
    );
    put(&mut plain, &[("k", Some("1")), ("k", Some("2"))]);
    seal(&mut plain);
    assert_eq!(plain.clean(NOW).expect("clean"), None);
}

#[test]
fn nothing_at_or_above_the_high_watermark_is_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), compacted());
    put(&mut log, &[("k", Some("1")), ("k", Some("2"))]);
    seal(&mut log);
    put(&mut log, &[("k", Some("3"))]);
    seal(&mut log);
    log.set_high_watermark(2);
    let stats = must_clean(&mut log, NOW);
    assert_eq!(stats.end_offset, 2);
    assert_eq!(read_all(&log).len(), 2, "offset 1 and the uncommitted 2");
}

// ------------------------------------------------------------------- batches

#[test]
fn compressed_batches_are_re_encoded_with_their_codec() {
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), compacted());
        put_batch(
            &mut log,
            BatchBuilder::keyed(&[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))])
                .compression(compression),
        );
        put_batch(
            &mut log,
            BatchBuilder::keyed(&[("b", Some("2"))]).compression(compression),
        );
        seal(&mut log);
        must_clean(&mut log, NOW);
        assert_eq!(
            read_all(&log),
            vec![
                row(0, "a", Some("1")),
                row(2, "c", Some("1")),
                row(3, "b", Some("2")),
            ],
            "{compression:?}"
        );
        for stored in all_batches(&log) {
            let header = batch::BatchHeader::parse(&stored).expect("header");
            assert_eq!(header.compression(), compression as u8, "{compression:?}");
            assert!(header.crc_valid());
        }
        let first = all_batches(&log)[0].clone();
        let header = batch::BatchHeader::parse(&first).expect("header");
        assert_eq!((header.base_offset(), header.last_offset()), (0, 2));
        assert_eq!(header.record_count(), 2);
    }
}

#[test]
fn a_batch_that_would_decompress_past_the_bound_is_kept_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            max_message_bytes: 4096,
            ..compacted()
        },
    );
    put(&mut log, &[("k", Some("old"))]);
    // Ten 64 KiB values of one byte repeated: a few hundred bytes of zstd, 640 KiB expanded,
    // over the bound of 64 × 4096.
    let big = "z".repeat(64 * 1024);
    let entries: Vec<(&str, Option<&str>)> = (0..10).map(|_| ("k", Some(big.as_str()))).collect();
    put_batch(
        &mut log,
        BatchBuilder::keyed(&entries).compression(Compression::Zstd),
    );
    seal(&mut log);
    let before = read_all(&log);
    let stats = must_clean(&mut log, NOW);
    assert_eq!(stats.batches_not_decoded, 1);
    // Its keys never reached the map, so the older value of `k` stays too: nothing is lost.
    assert_eq!(read_all(&log), before);
}

#[test]
fn records_without_a_key_from_before_the_topic_was_compacted_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            retention_ms: None,
            ..LogConfig::default()
        },
    );
    put_batch(&mut log, BatchBuilder::new(3).null_keys());
    put(&mut log, &[("k", Some("v"))]);
    seal(&mut log);
    log.set_config(compacted());
    must_clean(&mut log, NOW);
    assert_eq!(read_all(&log), vec![row(3, "k", Some("v"))]);
}

#[test]
fn the_last_batch_of_an_idempotent_producer_survives_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = compacted();
    let mut log = open(dir.path(), config.clone());
    put_batch(
        &mut log,
        BatchBuilder::keyed(&[("k", Some("p0"))]).producer(7, 0, 0),
    );
    put_batch(
        &mut log,
        BatchBuilder::keyed(&[("k", Some("p1")), ("j", Some("p1"))]).producer(7, 0, 1),
    );
    put(&mut log, &[("k", Some("plain")), ("j", Some("plain"))]);
    seal(&mut log);
    must_clean(&mut log, NOW);

    // The producer's first batch goes; its last one stays, empty, keeping offsets and sequence.
    let batches = all_batches(&log);
    assert_eq!(batches.len(), 2);
    let empty = batch::BatchHeader::parse(&batches[0]).expect("header");
    assert_eq!(empty.record_count(), 0);
    assert_eq!((empty.base_offset(), empty.last_offset()), (1, 2));
    assert_eq!((empty.producer_id(), empty.last_sequence()), (7, 2));
    assert_eq!(table(&read_all(&log)).len(), 2);

    // Rebuilt from the log alone (no snapshots), the producer's state is intact: a retry of
    // its last batch is still recognised.
    drop(log);
    for entry in fs::read_dir(dir.path()).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "snapshot") {
            fs::remove_file(path).expect("remove snapshot");
        }
    }
    let mut log = open(dir.path(), config);
    let state = log.producer_state(7).expect("producer state");
    assert_eq!((state.last_seq, state.last_offset), (2, 2));
    let retry = BatchBuilder::keyed(&[("k", Some("p1")), ("j", Some("p1"))])
        .producer(7, 0, 1)
        .build();
    let info = log.append_as_leader(&retry, 0, NOW).expect("retry");
    assert!(info.duplicate);
}

// ------------------------------------------------------------------- limits and interruptions

#[test]
fn a_full_key_map_ends_the_pass_early_and_the_next_one_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 512,
            min_cleanable_dirty_ratio: 0.0,
            ..compacted()
        },
    );
    for round in 0..4 {
        for k in 0..10 {
            put(&mut log, &[(&format!("k{k}"), Some(&format!("r{round}")))]);
        }
    }
    seal(&mut log);
    // Room for about ten keys per pass.
    let limits = CleanLimits { map_bytes: 10 * 50 };
    let first = run(&mut log, NOW, limits).expect("clean").expect("cleaned");
    assert!(first.end_offset < 40, "{first:?}");
    let mut passes = 1;
    while let Some(stats) = run(&mut log, NOW, limits).expect("clean") {
        passes += 1;
        assert!(passes < 20, "passes must make progress: {stats:?}");
    }
    assert_eq!(log.cleaner_checkpoint(), 40);
    let rows = read_all(&log);
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|(_, _, v)| v.as_deref() == Some("r3")));
}

#[test]
fn a_truncation_during_a_pass_stops_it_before_the_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), compacted());
    put(&mut log, &[("k", Some("1")), ("k", Some("2"))]);
    seal(&mut log);
    put(&mut log, &[("k", Some("3"))]);
    let mut task = log
        .begin_clean(NOW, CleanLimits::default())
        .expect("begin")
        .expect("due");
    task.build_offset_map().expect("map");
    let group = task.clean_next_group().expect("clean").expect("a group");
    log.truncate_to(2).expect("truncate");
    assert!(!log.swap_cleaned(&mut task, group).expect("swap"));
    task.discard_pending();
    log.finish_clean(&task, false).expect("finish");
    assert!(leftovers(dir.path()).is_empty());
    assert_eq!(
        read_all(&log),
        vec![row(0, "k", Some("1")), row(1, "k", Some("2"))]
    );
}

/// Four segments of five equal batches; the cleaner groups them two by two:
///
/// ```text
/// S0  0..5    x0..x4 = keep     x0 superseded by S3, x1..x4 survive
/// S1  5..10   k0..k4 = old-     all superseded by S2: S1 is dropped before the swap commits
/// S2  10..15  k0..k4 = new-
/// S3  15..20  x0, y1..y4 = othr
/// ```
fn crash_fixture(dir: &Path) -> (Log, LogConfig) {
    let one = BatchBuilder::keyed(&[("x0", Some("keep"))]).build().len() as u64;
    let config = LogConfig {
        segment_bytes: 5 * one,
        ..compacted()
    };
    let mut log = open(dir, config.clone());
    let segments = [
        ["x0", "x1", "x2", "x3", "x4"].map(|k| (k, "keep")),
        ["k0", "k1", "k2", "k3", "k4"].map(|k| (k, "old-")),
        ["k0", "k1", "k2", "k3", "k4"].map(|k| (k, "new-")),
        ["x0", "y1", "y2", "y3", "y4"].map(|k| (k, "othr")),
    ];
    for (key, value) in segments.iter().flatten() {
        put(&mut log, &[(key, Some(value))]);
    }
    seal(&mut log);
    assert_eq!(
        log.segment_count(),
        5,
        "four sealed segments and the active one"
    );
    let grouping = LogConfig {
        segment_bytes: 10 * one,
        ..config
    };
    log.set_config(grouping.clone());
    (log, grouping)
}

/// Runs a pass up to the first group's swap, crashing after `step` (`None`: before the swap).
fn clean_first_group_and_crash(log: &mut Log, step: Option<SwapStep>) {
    let mut task = log
        .begin_clean(NOW, CleanLimits::default())
        .expect("begin")
        .expect("due");
    task.build_offset_map().expect("map");
    let group = task.clean_next_group().expect("clean").expect("a group");
    assert_eq!(group.replaces.len(), 2, "S0 and S1 form the first group");
    assert_eq!(group.next_offset, 5, "x4 is the last survivor of S0 and S1");
    if let Some(step) = step {
        task.crash_after = Some(step);
        let crashed = log.swap_cleaned(&mut task, group);
        assert!(crashed.is_err(), "{step:?}: the simulated crash");
    }
}

#[test]
fn a_crash_at_any_step_of_the_swap_leaves_a_consistent_log() {
    let (original, compacted_rows) = {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = crash_fixture(dir.path());
        let original = read_all(&log);
        must_clean(&mut log, NOW);
        (original, read_all(&log))
    };
    assert_eq!(original.len(), 20);
    assert_eq!(compacted_rows.len(), 14);
    let without_s1: Vec<Row> = original
        .iter()
        .filter(|(o, _, _)| !(5..10).contains(o))
        .cloned()
        .collect();

    for step in [
        None,
        Some(SwapStep::DroppedEmptied),
        Some(SwapStep::IndexesSwapped),
        Some(SwapStep::Committed),
        Some(SwapStep::OldDeleted),
        Some(SwapStep::IndexesRenamed),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, config) = crash_fixture(dir.path());
        clean_first_group_and_crash(&mut log, step);
        // The process dies here: nothing else runs. Reopen as after a crash.
        drop(log);
        let mut log = open(dir.path(), config.clone());
        let rows = read_all(&log);
        assert_increasing(&rows);
        assert!(leftovers(dir.path()).is_empty(), "{step:?}");
        // Before the commit point the old segments are back (less S1, which held nothing
        // live); after it the cleaned segment is in.
        let expected = match step {
            None => &original,
            Some(SwapStep::DroppedEmptied | SwapStep::IndexesSwapped) => &without_s1,
            Some(SwapStep::Committed | SwapStep::OldDeleted | SwapStep::IndexesRenamed) => {
                &compacted_rows
            }
        };
        assert_eq!(&rows, expected, "{step:?}");
        // What a consumer rebuilding the table sees is the same in every case.
        assert_eq!(table(&rows), table(&compacted_rows), "{step:?}");
        // And the next pass finishes the job.
        log.clean(NOW).expect("clean");
        assert_eq!(read_all(&log), compacted_rows, "{step:?}");
        assert!(leftovers(dir.path()).is_empty());
    }
}

#[test]
fn a_swap_file_left_next_to_every_old_segment_replaces_only_what_it_covers() {
    // Kafka's crash window: the cleaned segment renamed `.swap` while all old segments are still
    // there (this crate's swap never leaves S1 behind, but a log written elsewhere might). The
    // swap holds offsets up to 4, so it replaces S0 only; S1 stays, and the log still reads
    // consistently — S1's records are all superseded by S2's.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut log, config) = crash_fixture(dir.path());
    let mut task = log
        .begin_clean(NOW, CleanLimits::default())
        .expect("begin")
        .expect("due");
    task.build_offset_map().expect("map");
    let group = task.clean_next_group().expect("clean").expect("a group");
    fs::rename(
        group.files.path("log", super::CLEANED_SUFFIX),
        group.files.path("log", super::SWAP_SUFFIX),
    )
    .expect("rename");
    drop(task);
    drop(log);
    let log = open(dir.path(), config);
    let rows = read_all(&log);
    assert_increasing(&rows);
    assert_eq!(rows.len(), 19, "x1..x4 from the swap, then S1, S2, S3");
    assert_eq!(rows[0].0, 1);
    assert!(leftovers(dir.path()).is_empty());
}
