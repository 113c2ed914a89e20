//! `millrace dump-log` on the files a real broker wrote: batches, records, CRC checks and index
//! sanity. The records were produced with librdkafka, so the expected offsets, keys and values
//! are known independently of the tool.

mod common;
mod tools_support;

use std::path::PathBuf;

use common::{create_topic, Broker};
use rdkafka::producer::FutureRecord;
use tools_support::millrace;

/// Produces `batches` batches of `per_batch` records (librdkafka, one flush per batch), then
/// stops the broker cleanly so the indexes are on disk. Returns the partition directory.
fn partition_with_batches(
    broker: &mut Broker,
    codec: &str,
    batches: usize,
    per_batch: usize,
) -> PathBuf {
    let bootstrap = broker.bootstrap();
    // One index entry per batch, so the index checks have entries to check.
    create_topic(&bootstrap, "dumped", 1, &[("index.interval.bytes", "1")]);
    let producer = common::producer(
        &bootstrap,
        &[("compression.type", codec), ("linger.ms", "50")],
    );
    for b in 0..batches {
        let sends: Vec<_> = (0..per_batch)
            .map(|i| {
                let key = format!("key-{b}-{i}");
                let value = format!("value-{b}-{i}");
                producer
                    .send_result(
                        FutureRecord::to("dumped")
                            .partition(0)
                            .key(&key)
                            .payload(&value),
                    )
                    .expect("queued")
            })
            .collect();
        for s in sends {
            futures::executor::block_on(s)
                .expect("sent")
                .expect("delivered");
        }
    }
    drop(producer);
    assert!(broker.terminate().success(), "clean shutdown");
    broker.data_dir().join("dumped-0")
}

fn segment(dir: &std::path::Path, ext: &str) -> String {
    dir.join(format!("00000000000000000000.{ext}"))
        .to_str()
        .expect("utf-8")
        .to_string()
}

#[test]
fn batches_records_and_indexes_of_a_real_segment() {
    let mut broker = Broker::start(&[]);
    let dir = partition_with_batches(&mut broker, "gzip", 3, 4);

    let out = millrace(
        &[
            "dump-log",
            "--files",
            &segment(&dir, "log"),
            "--print-data-log",
        ],
        b"",
    );
    let text = out.ok();
    let batch_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("baseOffset:"))
        .collect();
    let record_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| offset:"))
        .collect();
    assert!(text.contains("Log starting offset: 0"), "{text}");
    assert!(
        batch_lines
            .iter()
            .all(|l| l.ends_with("isvalid: true") && l.contains("compresscodec: gzip")),
        "{text}"
    );
    assert_eq!(record_lines.len(), 12, "{text}");
    assert!(
        record_lines[0].starts_with("| offset: 0 CreateTime: "),
        "{text}"
    );
    assert!(
        record_lines.iter().all(|l| l.contains(" sequence: -1 ")),
        "not idempotent: {text}"
    );
    assert!(
        record_lines[0].ends_with("key: key-0-0 payload: value-0-0"),
        "{text}"
    );
    assert!(record_lines[11].starts_with("| offset: 11 "), "{text}");
    assert!(
        record_lines[11].ends_with("key: key-2-3 payload: value-2-3"),
        "{text}"
    );

    let json = millrace(
        &[
            "dump-log",
            "--files",
            &segment(&dir, "log"),
            "--deep-iteration",
            "--output",
            "json",
        ],
        b"",
    )
    .json();
    let batches = json["files"][0]["batches"].as_array().expect("batches");
    let counted: i64 = batches
        .iter()
        .map(|b| b["count"].as_i64().expect("count"))
        .sum();
    assert_eq!(counted, 12);
    assert_eq!(batches.last().expect("batch")["last_offset"], 11);
    assert!(batches.iter().all(|b| b["crc_valid"] == true));
    // Without --print-data-log, keys and values stay out of the output.
    assert_eq!(batches[0]["records"][0]["key"], serde_json::Value::Null);

    // Indexes: entries printed, and checked against the segment beside them.
    let index = millrace(
        &[
            "dump-log",
            "--files",
            &format!("{},{}", segment(&dir, "index"), segment(&dir, "timeindex")),
        ],
        b"",
    );
    let text = index.ok();
    assert!(
        text.lines()
            .any(|l| l.starts_with("offset: ") && l.contains(" position: ")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("timestamp: ")), "{text}");
    let sanity = millrace(
        &[
            "dump-log",
            "--index-sanity-check",
            "--files",
            &segment(&dir, "index"),
        ],
        b"",
    );
    assert!(sanity.ok().contains("passed sanity check."), "{sanity}");
}

#[test]
fn corruption_is_reported_and_fails_the_run() {
    let mut broker = Broker::start(&[]);
    let dir = partition_with_batches(&mut broker, "none", 2, 3);
    let log = segment(&dir, "log");
    let mut bytes = std::fs::read(&log).expect("read segment");
    // Flip a byte inside the first batch's records (covered by the CRC), and tear the tail.
    let last = bytes.len() - 1;
    bytes[70] ^= 0xff;
    bytes.truncate(last - 5);
    std::fs::write(&log, &bytes).expect("write segment");

    let out = millrace(&["dump-log", "--files", &log], b"");
    let stdout = out.stdout.clone();
    out.failed();
    assert!(
        stdout
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("Dumping ")),
        "{out}"
    );
    assert!(stdout.contains("isvalid: false"), "{out}");
    assert!(stdout.contains("fails its CRC check"), "{out}");
    assert!(stdout.contains("invalid bytes at position"), "{out}");

    // An index entry that points where no batch starts.
    let index = segment(&dir, "index");
    let mut entries = std::fs::read(&index).expect("read index");
    assert!(entries.len() >= 8, "the broker wrote index entries");
    entries[4..8].copy_from_slice(&3u32.to_be_bytes());
    std::fs::write(&index, &entries).expect("write index");
    let sanity = millrace(
        &["dump-log", "--index-sanity-check", "--files", &index],
        b"",
    );
    let stdout = sanity.stdout.clone();
    sanity.failed();
    assert!(stdout.contains("no batch starts"), "{sanity}");

    let wrong = millrace(
        &[
            "dump-log",
            "--files",
            "/nonexistent/00000000000000000000.log",
        ],
        b"",
    );
    assert!(wrong.failed().contains("failed to read"), "{wrong}");
}
