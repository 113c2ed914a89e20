//! `millrace produce`: the console producer. Each line of stdin becomes a record; with
//! `--property parse.key=true` a line is `key<key.separator>value`, and with
//! `parse.headers=true` it starts with `h1:v1,h2:v2<headers.delimiter>` — the line format of
//! `kafka-console-producer.sh`.

use std::collections::BTreeMap;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use millrace_client::{Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{connect_with, parse_key_values, report_item, ClusterArgs, Reported};

/// `millrace produce`.
#[derive(Debug, Args)]
#[command(
    after_help = "Line format properties (--property KEY=VALUE, as kafka-console-producer):
  parse.key=true           each line is KEY<key.separator>VALUE
  key.separator=S          default: a tab
  parse.headers=true       each line starts with H1:V1,H2:V2<headers.delimiter>
  headers.delimiter=S      default: a tab
  headers.separator=S      between headers; default: ,
  headers.key.separator=S  between a header's name and value; default: :
  null.marker=S            a key or value equal to S is sent as null
  ignore.error=true        a line without a key separator is sent with no key instead of failing"
)]
pub struct ProduceArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic to write to.
    #[arg(long)]
    topic: String,
    /// Write every record to this partition (default: by key, or spread when there is none).
    #[arg(long)]
    partition: Option<i32>,
    /// A line-format property, `KEY=VALUE` (repeatable; see below).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// A producer setting by its Kafka name, e.g. `acks=1`, `linger.ms=5` (repeatable).
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    producer_properties: Vec<String>,
    /// acks: 0, 1 or all (-1).
    #[arg(long, value_name = "ACKS", allow_hyphen_values = true)]
    request_required_acks: Option<String>,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, value_name = "CODEC")]
    compression_codec: Option<String>,
    /// Wait for each record to be acknowledged before reading the next line.
    #[arg(long)]
    sync: bool,
}

/// The line format.
#[derive(Debug, Clone)]
struct LineFormat {
    parse_key: bool,
    key_separator: String,
    parse_headers: bool,
    headers_delimiter: String,
    headers_separator: String,
    headers_key_separator: String,
    null_marker: Option<String>,
    ignore_error: bool,
}

impl LineFormat {
    fn from_properties(props: &BTreeMap<String, String>) -> anyhow::Result<LineFormat> {
        let mut f = LineFormat {
            parse_key: false,
            key_separator: "\t".into(),
            parse_headers: false,
            headers_delimiter: "\t".into(),
            headers_separator: ",".into(),
            headers_key_separator: ":".into(),
            null_marker: None,
            ignore_error: false,
        };
        for (k, v) in props {
            match k.as_str() {
                "parse.key" => f.parse_key = v == "true",
                "key.separator" => f.key_separator = v.clone(),
                "parse.headers" => f.parse_headers = v == "true",
                "headers.delimiter" => f.headers_delimiter = v.clone(),
                "headers.separator" => f.headers_separator = v.clone(),
                "headers.key.separator" => f.headers_key_separator = v.clone(),
                "null.marker" => f.null_marker = Some(v.clone()),
                "ignore.error" => f.ignore_error = v == "true",
                other => {
                    anyhow::bail!("unknown --property `{other}` (see `millrace produce --help`)")
                }
            }
        }
        for (name, sep) in [
            ("key.separator", &f.key_separator),
            ("headers.delimiter", &f.headers_delimiter),
        ] {
            if sep.is_empty() {
                anyhow::bail!("--property {name} must not be empty");
            }
        }
        Ok(f)
    }

    /// Splits one line into (headers, key, value).
    #[allow(clippy::type_complexity)]
    fn parse(
        &self,
        line: &str,
        number: usize,
    ) -> anyhow::Result<(Vec<(String, Option<Bytes>)>, Option<Bytes>, Option<Bytes>)> {
        let mut rest = line;
        let mut headers = Vec::new();
        if self.parse_headers {
            match rest.split_once(self.headers_delimiter.as_str()) {
                Some((h, r)) => {
                    rest = r;
                    for pair in h
                        .split(self.headers_separator.as_str())
                        .filter(|p| !p.is_empty())
                    {
                        let (name, value) = pair
                            .split_once(self.headers_key_separator.as_str())
                            .unwrap_or((pair, ""));
                        headers.push((name.to_string(), self.bytes(value)));
                    }
                }
                None if self.ignore_error => {}
                None => anyhow::bail!(
                    "line {number}: no headers delimiter {:?} in `{line}`",
                    self.headers_delimiter
                ),
            }
        }
        let (key, value) = if self.parse_key {
            match rest.split_once(self.key_separator.as_str()) {
                Some((k, v)) => (self.bytes(k), self.bytes(v)),
                None if self.ignore_error => (None, self.bytes(rest)),
                None => anyhow::bail!(
                    "line {number}: no key separator {:?} in `{line}`",
                    self.key_separator
                ),
            }
        } else {
            (None, self.bytes(rest))
        };
        Ok((headers, key, value))
    }

    fn bytes(&self, s: &str) -> Option<Bytes> {
        if self.null_marker.as_deref() == Some(s) {
            None
        } else {
            Some(Bytes::copy_from_slice(s.as_bytes()))
        }
    }
}

/// Runs `millrace produce`.
pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let props = parse_key_values(&args.properties)?
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    let format = LineFormat::from_properties(&props)?;
    let mut settings: Vec<(String, String)> = parse_key_values(&args.producer_properties)?;
    if let Some(acks) = &args.request_required_acks {
        settings.push(("acks".into(), acks.clone()));
    }
    if let Some(codec) = &args.compression_codec {
        settings.push(("compression.type".into(), codec.clone()));
    }
    // The console producer lets the broker create a missing topic, as Kafka's does.
    settings.insert(0, ("allow.auto.create.topics".into(), "true".into()));
    let mut config = ProducerConfig::default();
    let client = connect_with(&args.cluster, &settings, |k, v| config.set(k, v)).await?;
    let producer = Producer::new(client, config).await?;

    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut number = 0;
    while let Some(line) = lines.next_line().await.context("failed to read stdin")? {
        number += 1;
        let (headers, key, value) = format.parse(&line, number)?;
        let record = ProducerRecord {
            topic: args.topic.clone(),
            partition: args.partition,
            key,
            value,
            headers,
            timestamp: None,
        };
        if args.sync {
            let delivered = producer.send(record).await?.await;
            note(&failures, delivered);
        } else {
            let failures = std::sync::Arc::clone(&failures);
            producer
                .send_with_callback(record, move |delivered| note(&failures, delivered))
                .await?;
        }
    }
    producer.close().await;
    let failed = failures.load(std::sync::atomic::Ordering::Acquire);
    if failed > 0 {
        return Err(Reported(format!("{failed} of {number} records were not written")).into());
    }
    Ok(())
}

/// Reports a record that failed (the first few in full; the count comes at the end).
fn note(
    failures: &std::sync::atomic::AtomicUsize,
    delivered: millrace_client::Result<RecordMetadata>,
) {
    if let Err(e) = delivered {
        if failures.fetch_add(1, std::sync::atomic::Ordering::AcqRel) < 5 {
            report_item(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(props: &[(&str, &str)]) -> LineFormat {
        LineFormat::from_properties(
            &props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .expect("valid")
    }

    #[test]
    fn lines_split_like_kafkas_console_producer() {
        let f = format(&[
            ("parse.key", "true"),
            ("key.separator", ":"),
            ("parse.headers", "true"),
            ("headers.delimiter", "|"),
        ]);
        let (headers, key, value) = f.parse("h1:v1,h2:v2|k:v:w", 1).expect("valid line");
        assert_eq!(
            headers,
            vec![
                ("h1".into(), Some(Bytes::from("v1"))),
                ("h2".into(), Some(Bytes::from("v2")))
            ]
        );
        assert_eq!(
            (key, value),
            (Some(Bytes::from("k")), Some(Bytes::from("v:w")))
        );
        assert!(f
            .parse("no delimiter", 3)
            .expect_err("no headers")
            .to_string()
            .contains("line 3"));

        let f = format(&[("parse.key", "true"), ("null.marker", "NULL")]);
        assert_eq!(f.parse("k\tNULL", 1).expect("valid").2, None);
        assert!(LineFormat::from_properties(
            &[("bogus".to_string(), "1".to_string())]
                .into_iter()
                .collect()
        )
        .is_err());
    }
}
