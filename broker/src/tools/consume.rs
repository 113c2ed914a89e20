//! `millrace consume`: the console consumer. Records are printed as `kafka-console-consumer.sh`
//! prints them (value only by default; timestamp, partition, offset, headers and key on request
//! with `--property print.X=true`), or as one JSON object per line.
//!
//! With `--group` the consumer starts at the group's committed offsets and commits its position
//! as it goes and when it stops. It does not join the group (no rebalancing): it reads every
//! partition of the topic itself, like a Kafka consumer that uses `assign()` and `commitSync()`.

use std::{
    collections::BTreeMap,
    io::Write,
    time::{Duration, Instant},
};

use clap::Args;
use millrace_client::{
    Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, SeekTo, TopicPartition,
};
use serde_json::json;

use super::{connect_with, parse_key_values, ClusterArgs, OutputArgs};

/// `millrace consume`.
#[derive(Debug, Args)]
#[command(
    after_help = "Print properties (--property KEY=VALUE, as kafka-console-consumer):
  print.timestamp=true  print.partition=true  print.offset=true  print.headers=true
  print.key=true  print.value=false  key.separator=S (default: a tab)
  line.separator=S (default: a newline)  headers.separator=S (default: ,)
  headers.key.separator=S (default: :)  null.literal=S (default: null)"
)]
pub struct ConsumeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic to read.
    #[arg(long)]
    topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<i32>,
    /// Where to start: `earliest`, `latest` or an offset (needs --partition).
    #[arg(long)]
    offset: Option<String>,
    /// Start at the beginning when there is no committed offset (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this group's committed offsets, and commit the position as records are read.
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop when no record has arrived for this long.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// A print property, `KEY=VALUE` (repeatable; see below).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// A consumer setting by its Kafka name, e.g. `fetch.max.wait.ms=100` (repeatable).
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_properties: Vec<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// How each record is printed.
#[derive(Debug, Clone)]
struct Formatter {
    timestamp: bool,
    partition: bool,
    offset: bool,
    headers: bool,
    key: bool,
    value: bool,
    key_separator: String,
    line_separator: String,
    headers_separator: String,
    headers_key_separator: String,
    null_literal: String,
}

impl Formatter {
    fn from_properties(props: &BTreeMap<String, String>) -> anyhow::Result<Formatter> {
        let mut f = Formatter {
            timestamp: false,
            partition: false,
            offset: false,
            headers: false,
            key: false,
            value: true,
            key_separator: "\t".into(),
            line_separator: "\n".into(),
            headers_separator: ",".into(),
            headers_key_separator: ":".into(),
            null_literal: "null".into(),
        };
        for (k, v) in props {
            let on = v == "true";
            match k.as_str() {
                "print.timestamp" => f.timestamp = on,
                "print.partition" => f.partition = on,
                "print.offset" => f.offset = on,
                "print.headers" => f.headers = on,
                "print.key" => f.key = on,
                "print.value" => f.value = on,
                "key.separator" => f.key_separator = v.clone(),
                "line.separator" => f.line_separator = v.clone(),
                "headers.separator" => f.headers_separator = v.clone(),
                "headers.key.separator" => f.headers_key_separator = v.clone(),
                "null.literal" => f.null_literal = v.clone(),
                other => {
                    anyhow::bail!("unknown --property `{other}` (see `millrace consume --help`)")
                }
            }
        }
        Ok(f)
    }

    /// Kafka's DefaultMessageFormatter layout: timestamp, partition, offset, headers, key,
    /// value, each followed by the key separator while more follow.
    fn format(&self, r: &ConsumerRecord) -> String {
        let text = |b: &Option<bytes::Bytes>| match b {
            Some(b) => String::from_utf8_lossy(b).into_owned(),
            None => self.null_literal.clone(),
        };
        let mut fields = Vec::new();
        if self.timestamp {
            fields.push(format!("{}:{}", r.timestamp_type.name(), r.timestamp));
        }
        if self.partition {
            fields.push(format!("Partition:{}", r.partition));
        }
        if self.offset {
            fields.push(format!("Offset:{}", r.offset));
        }
        if self.headers {
            fields.push(if r.headers.is_empty() {
                "NO_HEADERS".to_string()
            } else {
                r.headers
                    .iter()
                    .map(|(k, v)| format!("{k}{}{}", self.headers_key_separator, text(v)))
                    .collect::<Vec<_>>()
                    .join(&self.headers_separator)
            });
        }
        if self.key {
            fields.push(text(&r.key));
        }
        if self.value {
            fields.push(text(&r.value));
        }
        let mut line = fields.join(&self.key_separator);
        line.push_str(&self.line_separator);
        line
    }
}

fn record_json(r: &ConsumerRecord) -> serde_json::Value {
    let text =
        |b: &Option<bytes::Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "timestamp_type": r.timestamp_type.name(),
        "key": text(&r.key),
        "value": text(&r.value),
        "headers": r.headers.iter().map(|(k, v)| json!([k, text(v)])).collect::<Vec<_>>(),
    })
}

/// Runs `millrace consume`.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let props = parse_key_values(&args.properties)?
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    let formatter = Formatter::from_properties(&props)?;
    let settings: Vec<(String, String)> = parse_key_values(&args.consumer_properties)?;
    let mut config = ConsumerConfig {
        auto_offset_reset: if args.from_beginning {
            OffsetReset::Earliest
        } else {
            OffsetReset::Latest
        },
        ..ConsumerConfig::default()
    };
    let client = connect_with(&args.cluster, &settings, |k, v| config.set(k, v)).await?;
    let mut consumer = Consumer::new(client, config);

    match args.partition {
        Some(p) => consumer.assign([TopicPartition::new(args.topic.clone(), p)]),
        None => {
            consumer.assign_topic(&args.topic).await?;
        }
    }
    if let Some(group) = &args.group {
        consumer.seek_to_committed(group).await?;
    }
    if let Some(offset) = &args.offset {
        let to = match offset.as_str() {
            "earliest" => SeekTo::Beginning,
            "latest" => SeekTo::End,
            n => SeekTo::Offset(n.parse().map_err(|_| {
                anyhow::anyhow!("--offset `{n}` is not earliest, latest or a number")
            })?),
        };
        if args.partition.is_none() && matches!(to, SeekTo::Offset(_)) {
            anyhow::bail!("--offset with a number needs --partition");
        }
        for tp in consumer.assignment() {
            consumer.seek(tp, to);
        }
    }

    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut consumed: u64 = 0;
    let mut last_record = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let result: anyhow::Result<()> = async {
        loop {
            if args.max_messages.is_some_and(|max| consumed >= max) {
                return Ok(());
            }
            let wait = idle_limit
                .map(|limit| limit.saturating_sub(last_record.elapsed()))
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(1));
            let records = tokio::select! {
                records = consumer.poll(wait) => records?,
                _ = &mut interrupted => return Ok(()),
            };
            if records.is_empty() {
                if idle_limit.is_some_and(|limit| last_record.elapsed() >= limit) {
                    return Ok(());
                }
                continue;
            }
            last_record = Instant::now();
            let mut out = Vec::new();
            let mut rewound = std::collections::BTreeSet::new();
            for r in &records {
                if args.max_messages.is_some_and(|max| consumed >= max) {
                    // Records past the limit are not consumed: rewind each partition to its
                    // first unprinted record, so a commit does not skip them.
                    let tp = TopicPartition::new(r.topic.clone(), r.partition);
                    if rewound.insert(tp.clone()) {
                        consumer.seek(tp, SeekTo::Offset(r.offset));
                    }
                    continue;
                }
                if args.output.json() {
                    writeln!(out, "{}", record_json(r))?;
                } else {
                    out.write_all(formatter.format(r).as_bytes())?;
                }
                consumed += 1;
            }
            super::stdout_write(&out);
            if let Some(group) = &args.group {
                consumer.commit(group).await?;
            }
        }
    }
    .await;
    // Ends the same way whether the limit, the idle timeout or Ctrl-C stopped it.
    if let (Some(group), Ok(())) = (&args.group, &result) {
        consumer.commit(group).await?;
    }
    eprintln!("Processed a total of {consumed} messages");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use millrace_client::TimestampKind;

    #[test]
    fn formats_like_kafkas_default_message_formatter() {
        let record = ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 9,
            timestamp: 1234,
            timestamp_type: TimestampKind::CreateTime,
            key: Some("k".into()),
            value: None,
            headers: vec![("h".into(), Some("v".into()))],
            leader_epoch: 0,
        };
        let all: BTreeMap<String, String> = ["timestamp", "partition", "offset", "headers", "key"]
            .iter()
            .map(|p| (format!("print.{p}"), "true".to_string()))
            .collect();
        let f = Formatter::from_properties(&all).expect("valid");
        assert_eq!(
            f.format(&record),
            "CreateTime:1234\tPartition:2\tOffset:9\th:v\tk\tnull\n"
        );
        let plain = Formatter::from_properties(&BTreeMap::new()).expect("valid");
        assert_eq!(
            plain.format(&ConsumerRecord {
                value: Some("x".into()),
                ..record
            }),
            "x\n"
        );
    }
}
