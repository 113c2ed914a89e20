//! `millrace produce` and `millrace consume` against a real broker. What the console producer
//! writes is read back with librdkafka (an independent decoder of keys, headers and every
//! compression codec); what the console consumer prints was written with librdkafka.

mod common;
mod tools_support;

use std::time::Duration;

use common::{create_topic, read_to_end, Broker};
use rdkafka::{
    message::{Header, Headers, OwnedHeaders},
    producer::FutureRecord,
    Message,
};
use tools_support::{tool, tool_with_stdin};

fn text(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

#[test]
fn console_producer_parses_keys_and_headers() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "lines", 2, &[]);

    let input = b"h1=a;h2=b|k1:first value\n|k2:second:with colon\nh3=c|NULL:tombstone-key-null\n";
    let out = tool_with_stdin(
        &broker,
        "produce --topic lines --partition 1 --property parse.key=true --property key.separator=: --property parse.headers=true --property headers.delimiter=| --property headers.separator=; --property headers.key.separator== --property null.marker=NULL",
        input,
    );
    out.ok();
    let messages = read_to_end(&bootstrap, "lines", 1, 0);
    assert_eq!(messages.len(), 3);
    let keys: Vec<Option<String>> = messages.iter().map(|m| text(m.key())).collect();
    let values: Vec<Option<String>> = messages.iter().map(|m| text(m.payload())).collect();
    assert_eq!(keys, [Some("k1".into()), Some("k2".into()), None]);
    assert_eq!(
        values,
        [
            Some("first value".into()),
            Some("second:with colon".into()),
            Some("tombstone-key-null".into())
        ]
    );
    let headers = messages[0].headers().expect("headers on the first record");
    let pairs: Vec<(String, Option<String>)> = headers
        .iter()
        .map(|h| (h.key.to_string(), text(h.value)))
        .collect();
    assert_eq!(
        pairs,
        [
            ("h1".to_string(), Some("a".to_string())),
            ("h2".to_string(), Some("b".to_string()))
        ]
    );
    assert!(messages[1].headers().is_none_or(|h| h.count() == 0));
    assert!(
        read_to_end(&bootstrap, "lines", 0, 0).is_empty(),
        "--partition 1 wrote only there"
    );

    // A line without the separator fails the run with its line number.
    let bad = tool_with_stdin(
        &broker,
        "produce --topic lines --property parse.key=true",
        b"no tab here\n",
    );
    assert!(bad.failed().contains("line 1"), "{bad}");
}

#[test]
fn console_producer_compresses_with_every_codec_and_keyed_records_follow_murmur2() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "codecs", 1, &[]);
    let mut expected = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let lines: Vec<String> = (0..50)
            .map(|i| format!("{codec} record {i} {}", "x".repeat(i)))
            .collect();
        expected.extend(lines.iter().cloned());
        let input = lines.join("\n") + "\n";
        let line = format!(
            "produce --topic codecs --compression-codec {codec} --request-required-acks all"
        );
        tool_with_stdin(&broker, &line, input.as_bytes()).ok();
    }
    let values: Vec<String> = read_to_end(&bootstrap, "codecs", 0, 0)
        .iter()
        .filter_map(|m| text(m.payload()))
        .collect();
    assert_eq!(values, expected);

    // Keyed records land where Kafka's Java client puts them: toPositive(murmur2(key)) % 4.
    create_topic(&bootstrap, "keyed", 4, &[]);
    tool_with_stdin(
        &broker,
        "produce --topic keyed --property parse.key=true",
        b"21\ta\nfoobar\tb\nabc\tc\n",
    )
    .ok();
    let partition_of = |key: &str| {
        (0..4)
            .find(|p| {
                read_to_end(&bootstrap, "keyed", *p, 0)
                    .iter()
                    .any(|m| m.key() == Some(key.as_bytes()))
            })
            .expect("key written somewhere")
    };
    // The hashes are Kafka's own murmur2 test vectors (UtilsTest).
    assert_eq!(partition_of("21"), ((-973_932_308i32 & 0x7fff_ffff) % 4));
    assert_eq!(
        partition_of("foobar"),
        ((-790_332_482i32 & 0x7fff_ffff) % 4)
    );
    assert_eq!(partition_of("abc"), ((479_470_107i32 & 0x7fff_ffff) % 4));
}

/// A record to write with librdkafka: (partition, key, value, headers).
type Spec<'a> = (i32, Option<&'a str>, &'a str, &'a [(&'a str, &'a str)]);

fn produce_with_rdkafka(bootstrap: &str, topic: &str, records: &[Spec<'_>]) {
    let producer = common::producer(bootstrap, &[]);
    for (partition, key, value, headers) in records {
        let mut owned = OwnedHeaders::new();
        for (k, v) in *headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = FutureRecord::to(topic)
            .partition(*partition)
            .payload(*value)
            .headers(owned)
            .timestamp(1_700_000_000_000);
        if let Some(k) = key {
            record = record.key(*k);
        }
        futures::executor::block_on(producer.send(record, Duration::from_secs(30)))
            .expect("delivered");
    }
}

#[test]
fn console_consumer_prints_what_was_asked() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "news", 2, &[]);
    produce_with_rdkafka(
        &bootstrap,
        "news",
        &[
            (0, Some("k0"), "zero", &[("source", "a")]),
            (0, None, "one", &[]),
            (1, Some("k2"), "two", &[]),
        ],
    );

    // Value only, by default; every partition, from the beginning.
    let plain = tool(
        &broker,
        "consume --topic news --from-beginning --max-messages 3",
    );
    let mut lines: Vec<&str> = plain.ok().lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["one", "two", "zero"]);
    assert!(
        plain.stderr.contains("Processed a total of 3 messages"),
        "{plain}"
    );

    // Kafka's DefaultMessageFormatter layout with every print property.
    let full = tool(
        &broker,
        "consume --topic news --partition 0 --offset earliest --max-messages 2 --property print.timestamp=true --property print.partition=true --property print.offset=true --property print.headers=true --property print.key=true",
    );
    assert_eq!(
        full.ok(),
        "CreateTime:1700000000000\tPartition:0\tOffset:0\tsource:a\tk0\tzero\n\
         CreateTime:1700000000000\tPartition:0\tOffset:1\tNO_HEADERS\tnull\tone\n"
    );

    // An exact offset, JSON lines.
    let json = tool(
        &broker,
        "consume --topic news --partition 0 --offset 1 --max-messages 1 --output json",
    );
    let record: serde_json::Value = serde_json::from_str(json.ok().trim()).expect("one JSON line");
    assert_eq!(record["offset"], 1);
    assert_eq!(record["value"], "one");
    assert_eq!(record["key"], serde_json::Value::Null);

    // Only new records (none come): the idle timeout ends the run.
    let idle = tool(&broker, "consume --topic news --timeout-ms 1500");
    assert_eq!(idle.ok(), "");
    assert!(
        idle.stderr.contains("Processed a total of 0 messages"),
        "{idle}"
    );
}

#[test]
fn consume_with_a_group_resumes_from_its_commits() {
    let broker = Broker::start(&[]);
    if !tools_support::serves_group_apis(&broker) {
        eprintln!("SKIPPED: the broker does not advertise the consumer-group APIs (FindCoordinator, OffsetCommit/Fetch, ...) in ApiVersions yet");
        return;
    }
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "resume", 1, &[]);
    produce_with_rdkafka(
        &bootstrap,
        "resume",
        &[
            (0, None, "a", &[]),
            (0, None, "b", &[]),
            (0, None, "c", &[]),
            (0, None, "d", &[]),
        ],
    );

    let first = tool(
        &broker,
        "consume --topic resume --group readers --from-beginning --max-messages 2",
    );
    assert_eq!(first.ok(), "a\nb\n");
    let second = tool(
        &broker,
        "consume --topic resume --group readers --max-messages 2",
    );
    assert_eq!(second.ok(), "c\nd\n");

    // The commits are the group's, as librdkafka reads them.
    let consumer = common::consumer_at(
        &bootstrap,
        "resume",
        0,
        rdkafka::Offset::Beginning,
        &[("group.id", "readers")],
    );
    let committed = rdkafka::consumer::Consumer::committed(&consumer, Duration::from_secs(30))
        .expect("committed offsets");
    let offset = committed
        .find_partition("resume", 0)
        .expect("partition")
        .offset();
    assert_eq!(offset, rdkafka::Offset::Offset(4));
}
