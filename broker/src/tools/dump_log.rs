//! `millrace dump-log`: decodes a partition's files offline, like `kafka-dump-log.sh` — the
//! batches of a `.log` segment (offsets, producer fields, CRC check) and optionally each record,
//! and the entries of an `.index` or `.timeindex`, checked against the segment beside them.
//!
//! It reads Kafka's format, so it works on Kafka's own files too (trailing zero entries of a
//! pre-allocated Kafka index are treated as its end). Problems found — a CRC mismatch, a torn
//! batch, an index entry that points nowhere — are listed, and make the exit code non-zero.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use kafka_protocol::records::RecordBatchDecoder;
use millrace_log::batch::{batches, BatchHeader};
use serde_json::json;

use super::{print_json, OutputArgs, Reported};

/// `millrace dump-log`.
#[derive(Debug, Args)]
pub struct DumpLogArgs {
    /// Files to decode: `.log`, `.index` or `.timeindex` (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Decode every record of every batch.
    #[arg(long)]
    deep_iteration: bool,
    /// Print record keys and values (implies --deep-iteration).
    #[arg(long)]
    print_data_log: bool,
    /// Only check index files against their segment; print no entries.
    #[arg(long)]
    index_sanity_check: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `millrace dump-log`.
pub async fn run(args: DumpLogArgs) -> anyhow::Result<()> {
    let mut problems = 0;
    let mut docs = Vec::new();
    for file in &args.files {
        let dump = dump_file(file, &args)?;
        problems += dump.problems.len();
        if args.output.json() {
            docs.push(dump.json);
        } else {
            for line in &dump.lines {
                outln!("{line}");
            }
            for p in &dump.problems {
                outln!("{p}");
            }
        }
    }
    if args.output.json() {
        print_json(&json!({ "files": docs }))?;
    }
    if problems > 0 {
        return Err(Reported(format!("{problems} problem(s) found")).into());
    }
    Ok(())
}

/// What dumping one file produced.
struct Dump {
    lines: Vec<String>,
    problems: Vec<String>,
    json: serde_json::Value,
}

fn dump_file(path: &Path, args: &DumpLogArgs) -> anyhow::Result<Dump> {
    let bytes =
        std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let base_offset = base_offset(path)?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("log") => Ok(dump_segment(
            path,
            &bytes,
            base_offset,
            args.deep_iteration || args.print_data_log,
            args.print_data_log,
        )),
        Some("index") => dump_index(
            path,
            &bytes,
            base_offset,
            args.index_sanity_check,
            IndexKind::Offset,
        ),
        Some("timeindex") => dump_index(
            path,
            &bytes,
            base_offset,
            args.index_sanity_check,
            IndexKind::Time,
        ),
        _ => anyhow::bail!("{}: not a .log, .index or .timeindex file", path.display()),
    }
}

/// A segment file's base offset, from its 20-digit name.
fn base_offset(path: &Path) -> anyhow::Result<i64> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    stem.parse().with_context(|| {
        format!(
            "{}: the file name is not a base offset (like 00000000000000000000.log)",
            path.display()
        )
    })
}

fn codec_name(codec: u8) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

fn dump_segment(path: &Path, bytes: &[u8], base: i64, deep: bool, print_data: bool) -> Dump {
    let mut lines = vec![
        format!("Dumping {}", path.display()),
        format!("Log starting offset: {base}"),
    ];
    let mut problems = Vec::new();
    let mut json_batches = Vec::new();
    let mut iter = batches(bytes);
    let mut last_offset: Option<i64> = None;
    loop {
        let position = iter.position();
        let Some(next) = iter.next() else {
            break;
        };
        let header = match next {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!(
                    "Found {} invalid bytes at position {position} of {}: {e}",
                    bytes.len() - position,
                    path.display()
                ));
                break;
            }
        };
        let valid = header.crc_valid();
        if !valid {
            problems.push(format!(
                "Batch at position {position} (offsets {}..{}) fails its CRC check: stored {}, computed {}",
                header.base_offset(),
                header.last_offset(),
                header.crc(),
                header.compute_crc().unwrap_or_default()
            ));
        }
        if let Some(prev) = last_offset {
            if header.base_offset() <= prev {
                problems.push(format!(
                    "Batch at position {position} starts at offset {}, not after the previous batch's last offset {prev}",
                    header.base_offset()
                ));
            }
        }
        last_offset = Some(header.last_offset());
        lines.push(batch_line(&header, position, valid));
        let mut records_json = Vec::new();
        if deep {
            match RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(header.bytes())) {
                Ok(set) => {
                    for r in set.records {
                        // As Kafka prints it: no sequence at all when the batch has none.
                        let sequence = if header.base_sequence() < 0 {
                            -1
                        } else {
                            r.sequence
                        };
                        let size = |b: &Option<Bytes>| b.as_ref().map_or(-1, |b| b.len() as i64);
                        let text = |b: &Option<Bytes>| {
                            b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
                        };
                        let header_keys: Vec<String> =
                            r.headers.keys().map(|k| k.to_string()).collect();
                        let mut line = format!(
                            "| offset: {} {}: {} keySize: {} valueSize: {} sequence: {} headerKeys: [{}]",
                            r.offset,
                            timestamp_name(&header),
                            r.timestamp,
                            size(&r.key),
                            size(&r.value),
                            sequence,
                            header_keys.join(",")
                        );
                        if r.control {
                            line.push_str(" isControl: true");
                        } else if print_data {
                            line.push_str(&format!(
                                " key: {} payload: {}",
                                text(&r.key).unwrap_or_else(|| "null".into()),
                                text(&r.value).unwrap_or_else(|| "null".into())
                            ));
                        }
                        lines.push(line);
                        records_json.push(json!({
                            "offset": r.offset,
                            "timestamp": r.timestamp,
                            "key_size": size(&r.key),
                            "value_size": size(&r.value),
                            "sequence": sequence,
                            "header_keys": header_keys,
                            "control": r.control,
                            "key": if print_data { text(&r.key) } else { None },
                            "value": if print_data { text(&r.value) } else { None },
                        }));
                    }
                }
                Err(e) => {
                    problems.push(format!("Batch at position {position} does not decode: {e}"))
                }
            }
        }
        let mut batch = json!({
            "base_offset": header.base_offset(),
            "last_offset": header.last_offset(),
            "count": header.record_count(),
            "base_sequence": header.base_sequence(),
            "last_sequence": header.last_sequence(),
            "producer_id": header.producer_id(),
            "producer_epoch": header.producer_epoch(),
            "partition_leader_epoch": header.partition_leader_epoch(),
            "transactional": header.is_transactional(),
            "control": header.is_control(),
            "position": position,
            "timestamp_type": timestamp_name(&header),
            "max_timestamp": header.max_timestamp(),
            "size": header.size(),
            "magic": header.magic(),
            "compression": codec_name(header.compression()),
            "crc": header.crc(),
            "crc_valid": valid,
        });
        if deep {
            batch["records"] = json!(records_json);
        }
        json_batches.push(batch);
    }
    let json = json!({
        "file": path.display().to_string(),
        "type": "log",
        "base_offset": base,
        "batches": json_batches,
        "problems": problems,
    });
    Dump {
        lines,
        problems,
        json,
    }
}

fn timestamp_name(h: &BatchHeader<'_>) -> &'static str {
    match h.timestamp_type() {
        millrace_log::TimestampType::CreateTime => "CreateTime",
        millrace_log::TimestampType::LogAppendTime => "LogAppendTime",
    }
}

/// Kafka's batch line.
fn batch_line(h: &BatchHeader<'_>, position: usize, valid: bool) -> String {
    format!(
        "baseOffset: {} lastOffset: {} count: {} baseSequence: {} lastSequence: {} producerId: {} producerEpoch: {} \
         partitionLeaderEpoch: {} isTransactional: {} isControl: {} deleteHorizonMs: {} position: {} {}: {} size: {} \
         magic: {} compresscodec: {} crc: {} isvalid: {}",
        h.base_offset(),
        h.last_offset(),
        h.record_count(),
        h.base_sequence(),
        h.last_sequence(),
        h.producer_id(),
        h.producer_epoch(),
        h.partition_leader_epoch(),
        h.is_transactional(),
        h.is_control(),
        if h.has_delete_horizon() { h.base_timestamp().to_string() } else { "OptionalLong.empty".into() },
        position,
        timestamp_name(h),
        h.max_timestamp(),
        h.size(),
        h.magic(),
        codec_name(h.compression()),
        h.crc(),
        valid
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexKind {
    Offset,
    Time,
}

/// One index entry: (offset, position) for `.index`, (offset, timestamp) for `.timeindex`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    value: i64,
}

fn read_entries(bytes: &[u8], base: i64, kind: IndexKind) -> (Vec<Entry>, usize) {
    let size = match kind {
        IndexKind::Offset => 8,
        IndexKind::Time => 12,
    };
    let mut entries = Vec::new();
    for (i, chunk) in bytes.chunks_exact(size).enumerate() {
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let (relative, value) = match kind {
            IndexKind::Offset => (be32(&chunk[0..4]), i64::from(be32(&chunk[4..8]))),
            IndexKind::Time => {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&chunk[0..8]);
                (be32(&chunk[8..12]), i64::from_be_bytes(ts))
            }
        };
        // Kafka pre-allocates index files with zeros: an all-zero entry after the first ends it.
        if i > 0 && relative == 0 && value == 0 {
            break;
        }
        entries.push(Entry {
            offset: base + i64::from(relative),
            value,
        });
    }
    (entries, bytes.len() % size)
}

fn dump_index(
    path: &Path,
    bytes: &[u8],
    base: i64,
    sanity_only: bool,
    kind: IndexKind,
) -> anyhow::Result<Dump> {
    let (entries, trailing) = read_entries(bytes, base, kind);
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    if !sanity_only {
        lines.push(format!("Dumping {}", path.display()));
        for e in &entries {
            lines.push(match kind {
                IndexKind::Offset => format!("offset: {} position: {}", e.offset, e.value),
                IndexKind::Time => format!("timestamp: {} offset: {}", e.value, e.offset),
            });
        }
    }
    if trailing != 0 {
        problems.push(format!(
            "{}: {trailing} trailing bytes do not make a whole entry",
            path.display()
        ));
    }
    for pair in entries.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let ordered = match kind {
            IndexKind::Offset => b.offset > a.offset && b.value > a.value,
            IndexKind::Time => b.offset >= a.offset && b.value >= a.value,
        };
        if !ordered {
            problems.push(format!(
                "{}: entry (offset {}, {}) does not follow (offset {}, {}) in order",
                path.display(),
                b.offset,
                b.value,
                a.offset,
                a.value
            ));
        }
    }
    let segment = path.with_extension("log");
    let checked_against_log = match std::fs::read(&segment) {
        Ok(log) => {
            problems.extend(check_against_log(path, &entries, &log, kind));
            true
        }
        Err(_) => false,
    };
    if sanity_only && problems.is_empty() {
        lines.push(format!("{} passed sanity check.", path.display()));
    }
    if !checked_against_log {
        lines.push(format!(
            "(no {} beside it: entries were not checked against the log)",
            segment.display()
        ));
    }
    let json = json!({
        "file": path.display().to_string(),
        "type": match kind { IndexKind::Offset => "index", IndexKind::Time => "timeindex" },
        "base_offset": base,
        "entries": if sanity_only { json!(null) } else {
            json!(entries.iter().map(|e| match kind {
                IndexKind::Offset => json!({"offset": e.offset, "position": e.value}),
                IndexKind::Time => json!({"offset": e.offset, "timestamp": e.value}),
            }).collect::<Vec<_>>())
        },
        "checked_against_log": checked_against_log,
        "problems": problems,
    });
    Ok(Dump {
        lines,
        problems,
        json,
    })
}

/// Checks each entry against the segment: an offset entry must point at the start of the batch
/// whose last offset it names; a time entry's timestamp must be the largest timestamp of the
/// log up to the batch holding its offset.
fn check_against_log(path: &Path, entries: &[Entry], log: &[u8], kind: IndexKind) -> Vec<String> {
    let mut problems = Vec::new();
    // (position, base offset, last offset, running max timestamp) of each whole batch.
    let mut layout = Vec::new();
    let mut max_ts = i64::MIN;
    let mut iter = batches(log);
    loop {
        let position = iter.position();
        match iter.next() {
            Some(Ok(h)) => {
                max_ts = max_ts.max(h.max_timestamp());
                layout.push((position as i64, h.base_offset(), h.last_offset(), max_ts));
            }
            _ => break,
        }
    }
    for e in entries {
        match kind {
            IndexKind::Offset => match layout.iter().find(|b| b.0 == e.value) {
                Some(&(_, _, last, _)) if last == e.offset => {}
                Some(&(_, _, last, _)) => problems.push(format!(
                    "Mismatches in {}: index offset {} points at a batch whose last offset is {last}",
                    path.display(),
                    e.offset
                )),
                None => problems.push(format!(
                    "Mismatches in {}: index offset {} points at position {}, where no batch starts",
                    path.display(),
                    e.offset,
                    e.value
                )),
            },
            IndexKind::Time => match layout.iter().find(|b| b.1 <= e.offset && e.offset <= b.2) {
                Some(&(_, _, _, ts)) if ts == e.value => {}
                Some(&(_, _, _, ts)) => problems.push(format!(
                    "Found timestamp mismatch in {}: index timestamp {} for offset {}, log timestamp {ts}",
                    path.display(),
                    e.value,
                    e.offset
                )),
                None => problems.push(format!(
                    "Mismatches in {}: time index offset {} is in no batch of the segment",
                    path.display(),
                    e.offset
                )),
            },
        }
    }
    problems
}
