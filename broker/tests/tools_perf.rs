//! `millrace perf produce` / `perf consume` against a real broker: the figures are reported in
//! both formats, and the records really are on the broker (librdkafka's watermarks).

mod common;
mod tools_support;

use common::{create_topic, watermarks, Broker};
use tools_support::tool;

#[test]
fn perf_produce_then_consume_report_throughput_and_latency() {
    let broker = Broker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "bench", 2, &[]);

    let produced = tool(
        &broker,
        "perf produce --topic bench --num-records 5000 --record-size 100 --throughput -1 --producer-props acks=all linger.ms=2 compression.type=lz4 --output json",
    )
    .json();
    assert_eq!(produced["records_sent"], 5000);
    assert_eq!(produced["errors"], 0);
    assert_eq!(produced["bytes"], 500_000);
    assert!(produced["records_per_sec"].as_f64().expect("rate") > 0.0);
    let latency = &produced["latency_ms"];
    let p = |k: &str| latency[k].as_f64().expect("percentile");
    assert!(
        p("p50") <= p("p95")
            && p("p95") <= p("p99")
            && p("p99") <= p("p99_9")
            && p("p99_9") <= p("max"),
        "{latency}"
    );
    let written: i64 = (0..2).map(|p| watermarks(&bootstrap, "bench", p).1).sum();
    assert_eq!(written, 5000);

    let consumed = tool(
        &broker,
        "perf consume --topic bench --messages 5000 --output json",
    )
    .json();
    assert_eq!(consumed["records_consumed"], 5000);
    assert_eq!(consumed["bytes"], 500_000);
    assert!(
        consumed["latency_ms"]["max"].as_f64().expect("max")
            >= consumed["latency_ms"]["p50"].as_f64().expect("p50")
    );

    // Human output: Kafka's summary line, with the percentiles.
    let human = tool(
        &broker,
        "perf produce --topic bench --num-records 300 --record-size 1024 --throughput 1000 --producer-props acks=1",
    );
    let line = human.ok().trim().to_string();
    assert!(line.starts_with("300 records sent, "), "{human}");
    for part in [
        "records/sec",
        "MB/sec",
        "ms avg latency",
        "ms max latency",
        "ms 50th",
        "ms 95th",
        "ms 99th",
        "ms 99.9th.",
    ] {
        assert!(line.contains(part), "`{part}` missing: {line}");
    }
    // 300 records at 1000/s take at least ~0.3 s: the rate limit held.
    let rate: f64 = line
        .split(", ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("rate");
    assert!(rate <= 1100.0, "{line}");

    let short = tool(
        &broker,
        "perf consume --topic bench --messages 999999 --timeout 1000",
    );
    assert!(short.failed().contains("records arrived"), "{short}");
}
