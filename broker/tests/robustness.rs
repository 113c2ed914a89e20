//! Bad input over a raw socket. For each kind, the offending connection gets Kafka's answer (an
//! error code, or the connection closed where Kafka closes it), and afterwards:
//! - the broker process is still running,
//! - a connection opened before the bad input still gets answers,
//! - a normal rdkafka client still produces and consumes,
//! - the data stored before is intact, and the bad request stored nothing.

mod common;

use std::time::Duration;

use bytes::BufMut;
use common::*;
use futures::executor::block_on;
use kafka_protocol::{
    messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse},
    protocol::{Decodable, Encodable, StrBytes},
    records::Compression,
};
use rdkafka::{producer::FutureRecord, Message};

const CORRUPT_MESSAGE: i16 = 2;
const UNSUPPORTED_VERSION: i16 = 35;
const TOPIC: &str = "kept";

/// How long the broker gets to close a connection it should close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker holding known data, plus a connection opened before any bad input.
struct Seeded {
    broker: Broker,
    expected: Vec<Vec<u8>>,
    bystander: RawConn,
}

impl Seeded {
    fn start(overrides: &[(&str, &str)]) -> Seeded {
        let broker = Broker::start(overrides);
        let bootstrap = broker.bootstrap();
        create_topic(&bootstrap, TOPIC, 1, &[]);
        let mut seeded = Seeded {
            bystander: RawConn::connect(broker.kafka_addr()),
            broker,
            expected: Vec::new(),
        };
        for i in 0..20 {
            seeded.produce(format!("seed-{i}").into_bytes());
        }
        // The bystander has negotiated versions before the bad input arrives.
        seeded.bystander.version_for(ApiKey::Produce, 12);
        seeded
    }

    fn produce(&mut self, value: Vec<u8>) {
        let producer = producer(
            &self.broker.bootstrap(),
            &[("linger.ms", "0"), ("acks", "all")],
        );
        let delivery = block_on(
            producer
                .send_result(
                    FutureRecord::<[u8], [u8]>::to(TOPIC)
                        .partition(0)
                        .payload(&value),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("delivery")
        .unwrap_or_else(|(e, _)| panic!("produce failed: {e}"));
        assert_eq!(
            delivery.offset,
            self.expected.len() as i64,
            "offset of the new record"
        );
        self.expected.push(value);
    }

    /// The checks every test ends with.
    fn assert_still_serving(&mut self, after: &str) {
        assert!(self.broker.is_running(), "broker died after {after}");
        let response = self.bystander.call(3, &api_versions_request());
        assert_eq!(response.error_code, 0, "bystander connection after {after}");
        self.produce(format!("after {after}").into_bytes());
        let stored: Vec<Vec<u8>> = read_to_end(&self.broker.bootstrap(), TOPIC, 0, 0)
            .iter()
            .map(|m| m.payload().unwrap_or_default().to_vec())
            .collect();
        assert_eq!(stored, self.expected, "log contents after {after}");
    }
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("millrace-tests"))
        .with_client_software_version(StrBytes::from_static_str("0"))
}

/// A Produce body (v9 encoding) carrying one valid batch for the seeded topic.
fn produce_body(value: &[u8]) -> bytes::BytesMut {
    let request = produce_request(
        TOPIC,
        0,
        -1,
        record_batch(&[value], now_ms(), Compression::None, None),
    );
    let mut body = bytes::BytesMut::new();
    request.encode(&mut body, 9).expect("encode produce v9");
    body
}

#[test]
fn garbage_bytes_close_only_that_connection() {
    let mut seeded = Seeded::start(&[]);
    let addr = seeded.broker.kafka_addr();

    // An HTTP request: "GET " read as a frame length is about 1.2 GB, over any limit.
    let mut http = RawConn::connect(addr);
    http.write_raw(b"GET / HTTP/1.1\r\nHost: millrace\r\n\r\n")
        .expect("write");
    assert!(
        http.closed_within(CLOSE_TIMEOUT),
        "connection stayed open after an HTTP request"
    );

    // A plausible length followed by noise: the header cannot be decoded.
    let mut noise = RawConn::connect(addr);
    let mut frame = Vec::new();
    frame.put_i32(64);
    frame.extend_from_slice(&incompressible(64, 99));
    noise.write_raw(&frame).expect("write");
    assert!(
        noise.closed_within(CLOSE_TIMEOUT),
        "connection stayed open after 64 bytes of noise"
    );

    // A negative frame length.
    let mut negative = RawConn::connect(addr);
    negative.write_raw(&(-5i32).to_be_bytes()).expect("write");
    assert!(
        negative.closed_within(CLOSE_TIMEOUT),
        "connection stayed open after a negative length"
    );

    seeded.assert_still_serving("garbage bytes");
}

#[test]
fn a_frame_over_socket_request_max_bytes_is_refused_before_it_is_read() {
    let mut seeded = Seeded::start(&[("socket.request.max.bytes", "1048576")]);
    let mut conn = RawConn::connect(seeded.broker.kafka_addr());
    // Only the 4-byte length of a 2 MiB frame: the broker must refuse on the length alone,
    // without waiting for (or allocating) the body.
    conn.write_raw(&(2i32 << 20).to_be_bytes()).expect("write");
    assert!(
        conn.closed_within(CLOSE_TIMEOUT),
        "a 2 MiB frame length was not refused"
    );

    // Just under the limit is an ordinary request.
    let mut conn = RawConn::connect(seeded.broker.kafka_addr());
    let value = incompressible(900_000, 5);
    let response = conn.produce(
        TOPIC,
        0,
        -1,
        record_batch(&[&value], now_ms(), Compression::None, None),
    );
    assert_eq!(
        response.error_code, 0,
        "a 900 KB request under a 1 MiB limit"
    );
    assert_eq!(response.base_offset, seeded.expected.len() as i64);
    seeded.expected.push(value);

    seeded.assert_still_serving("an oversized frame length");
}

#[test]
fn a_truncated_request_is_dropped_and_nothing_is_stored() {
    let mut seeded = Seeded::start(&[]);
    let addr = seeded.broker.kafka_addr();
    let body = {
        let mut body = RawConn::header_bytes(ApiKey::Produce as i16, 9, 7, 2);
        body.extend_from_slice(&produce_body(b"never stored"));
        body
    };

    // The length promises the whole request; half arrives, then the client hangs up.
    let mut conn = RawConn::connect(addr);
    let mut frame = Vec::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body[..body.len() / 2]);
    conn.write_raw(&frame).expect("write");
    conn.shutdown_write();
    assert!(
        conn.closed_within(CLOSE_TIMEOUT),
        "broker kept a half-closed connection with a partial frame"
    );

    // The frame is complete but the request inside it is cut short: a decode error.
    let mut conn = RawConn::connect(addr);
    conn.send_frame(&body[..body.len() - 10]).expect("write");
    assert!(
        conn.closed_within(CLOSE_TIMEOUT),
        "a truncated request inside a whole frame was not refused"
    );

    seeded.assert_still_serving("truncated requests");
}

#[test]
fn an_unknown_api_key_closes_the_connection() {
    let mut seeded = Seeded::start(&[]);
    let mut conn = RawConn::connect(seeded.broker.kafka_addr());
    let mut body = RawConn::header_bytes(9999, 0, 1, 1);
    body.extend_from_slice(&[0, 0, 0, 0]);
    conn.send_frame(&body).expect("write");
    assert!(
        conn.closed_within(CLOSE_TIMEOUT),
        "unknown API key 9999 did not close the connection"
    );
    seeded.assert_still_serving("an unknown API key");
}

#[test]
fn an_unsupported_produce_version_is_refused_and_stores_nothing() {
    let mut seeded = Seeded::start(&[]);
    let mut conn = RawConn::connect(seeded.broker.kafka_addr());
    let mut body = RawConn::header_bytes(ApiKey::Produce as i16, 99, 42, 2);
    body.extend_from_slice(&produce_body(b"from the future"));
    conn.send_frame(&body).expect("write");
    conn.set_read_timeout(CLOSE_TIMEOUT);
    // Kafka closes the connection; an UNSUPPORTED_VERSION answer to this request is the other
    // acceptable outcome.
    match conn.read_frame() {
        Err(_) => {}
        Ok(response) => {
            assert!(response.len() >= 6, "short response {response:?}");
            assert_eq!(
                i32::from_be_bytes(response[..4].try_into().unwrap()),
                42,
                "correlation id"
            );
            assert!(
                response
                    .windows(2)
                    .any(|w| w == UNSUPPORTED_VERSION.to_be_bytes()),
                "Produce v99 was answered without UNSUPPORTED_VERSION: {response:?}"
            );
        }
    }
    seeded.assert_still_serving("Produce v99");
}

#[test]
fn api_versions_of_an_unknown_version_gets_a_v0_unsupported_version_answer() {
    let mut seeded = Seeded::start(&[]);
    let mut conn = RawConn::connect(seeded.broker.kafka_addr());
    let mut body = RawConn::header_bytes(ApiKey::ApiVersions as i16, 99, 5, 2);
    api_versions_request().encode(&mut body, 3).expect("encode");
    conn.send_frame(&body).expect("write");
    let mut response = conn
        .read_frame()
        .expect("ApiVersions v99 must be answered, not dropped");
    // ApiVersions responses always use response header v0: just the correlation id.
    let correlation_id = bytes::Buf::get_i32(&mut response);
    assert_eq!(correlation_id, 5);
    let decoded = ApiVersionsResponse::decode(&mut response, 0).expect("a v0 ApiVersionsResponse");
    assert_eq!(decoded.error_code, UNSUPPORTED_VERSION);
    // As Kafka does, the answer names the ApiVersions versions it does support, so a client can
    // retry with one of them.
    let api_versions = decoded
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("the error response lists ApiVersions");
    assert!(
        api_versions.min_version <= 3 && 3 <= api_versions.max_version,
        "{api_versions:?}"
    );

    // The connection stays usable for the retry.
    let retry = conn.call(3, &api_versions_request());
    assert_eq!(retry.error_code, 0);
    assert!(retry
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));
    seeded.assert_still_serving("ApiVersions v99");
}

#[test]
fn a_corrupt_batch_gets_corrupt_message_and_is_not_stored() {
    let mut seeded = Seeded::start(&[]);
    let mut conn = RawConn::connect(seeded.broker.kafka_addr());
    let batch = record_batch(
        &[b"one", b"two", b"three"],
        now_ms(),
        Compression::None,
        None,
    );

    let mut bad_crc = batch.to_vec();
    bad_crc[BATCH_CRC_RANGE.start + 2] ^= 0x01;
    let response = conn.produce(TOPIC, 0, -1, bad_crc.into());
    assert_eq!(response.error_code, CORRUPT_MESSAGE, "a flipped CRC byte");

    let mut bad_payload = batch.to_vec();
    let last = bad_payload.len() - 2;
    bad_payload[last] ^= 0x20;
    let response = conn.produce(TOPIC, 0, -1, bad_payload.into());
    assert_eq!(
        response.error_code, CORRUPT_MESSAGE,
        "a flipped payload byte under a valid-looking CRC"
    );

    // Same for a compressed batch, whose CRC covers the compressed bytes.
    let mut bad_zstd = record_batch(&[b"compressed"], now_ms(), Compression::Zstd, None).to_vec();
    bad_zstd[BATCH_CRC_RANGE.start] ^= 0x80;
    let response = conn.produce(TOPIC, 0, -1, bad_zstd.into());
    assert_eq!(
        response.error_code, CORRUPT_MESSAGE,
        "a zstd batch with a flipped CRC byte"
    );

    // The connection that sent them is still fine: it was the batch, not the frame.
    let response = conn.produce(TOPIC, 0, -1, batch.clone());
    assert_eq!(response.error_code, 0);
    assert_eq!(response.base_offset, seeded.expected.len() as i64);
    seeded
        .expected
        .extend([b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);

    seeded.assert_still_serving("corrupt batches");
}

#[test]
fn every_kind_of_bad_input_in_a_row_leaves_the_broker_serving() {
    // The same bad inputs against one broker, interleaved, to catch damage that only shows when
    // it accumulates (leaked connection state, a poisoned lock, a stuck task).
    let mut seeded = Seeded::start(&[("socket.request.max.bytes", "1048576")]);
    let addr = seeded.broker.kafka_addr();
    for round in 0..3 {
        let mut c = RawConn::connect(addr);
        c.write_raw(b"\x00\x00\x00\x08garbage!").expect("write");
        assert!(c.closed_within(CLOSE_TIMEOUT), "round {round}: garbage");

        let mut c = RawConn::connect(addr);
        c.write_raw(&(64i32 << 20).to_be_bytes()).expect("write");
        assert!(
            c.closed_within(CLOSE_TIMEOUT),
            "round {round}: oversized length"
        );

        let mut c = RawConn::connect(addr);
        let mut body = RawConn::header_bytes(9999, 0, 1, 1);
        body.extend_from_slice(&[1, 2, 3]);
        c.send_frame(&body).expect("write");
        assert!(
            c.closed_within(CLOSE_TIMEOUT),
            "round {round}: unknown API key"
        );

        let mut c = RawConn::connect(addr);
        let mut bad = record_batch(&[b"x"], now_ms(), Compression::None, None).to_vec();
        bad[BATCH_CRC_RANGE.start] ^= 0xFF;
        assert_eq!(
            c.produce(TOPIC, 0, 1, bad.into()).error_code,
            CORRUPT_MESSAGE,
            "round {round}: corrupt batch"
        );

        seeded.assert_still_serving(&format!("round {round}"));
    }
}

/// A tiny request declaring an enormous array: the released kafka-protocol decoder reserved
/// memory for every declared element up front, and the failed allocation aborted the whole
/// process. The vendored decoder (third_party/README.md) refuses the count instead.
#[test]
fn a_huge_declared_array_length_closes_the_connection_without_allocating() {
    let mut seeded = Seeded::start(&[]);
    let cases = [(3i16, 1i16, false), (3, 12, true), (0, 9, true)];
    for (round, (api_key, version, flexible)) in cases.into_iter().enumerate() {
        let mut conn = RawConn::connect(seeded.broker.kafka_addr());
        let mut body = Vec::new();
        body.put_i16(api_key);
        body.put_i16(version);
        body.put_i32(7); // correlation id
        body.put_i16(-1); // null client id
        if flexible {
            body.put_u8(0); // no header tagged fields
        }
        if api_key == 0 {
            body.put_u8(0); // null transactional id (compact string)
            body.put_i16(1); // acks
            body.put_i32(1000); // timeout
        }
        if flexible {
            // Compact array of u32::MAX - 1 elements (unsigned varint 0xffffffff).
            body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        } else {
            body.put_i32(i32::MAX);
        }
        body.extend_from_slice(&[0u8; 8]);
        let mut frame = Vec::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        conn.write_raw(&frame).expect("write");
        assert!(
            conn.closed_within(CLOSE_TIMEOUT),
            "connection stayed open after a huge array count (api {api_key} v{version})"
        );
        // The count itself was refused — not merely a reservation the allocator happened to
        // grant (mimalloc maps huge requests lazily, which would hide the abort).
        let refused = wait_until(CLOSE_TIMEOUT, || {
            seeded.broker.log().matches("bytes left").count() > round
        });
        assert!(
            refused,
            "broker log does not show the array count refused:\n{}",
            seeded.broker.log()
        );
        seeded.assert_still_serving(&format!("a huge array count (api {api_key} v{version})"));
    }
}
