//! The client's connection handling against a scripted broker on a real socket: ApiVersions
//! fallback for a broker older than the client, correlation ids when responses come back in a
//! different order than the requests went out, and a timeout that closes the connection.
//!
//! The scripted broker answers only what each test needs; the behaviour under test is the
//! client's, over real TCP, with the same codec a broker uses.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        api_versions_response::ApiVersion,
        metadata_request::MetadataRequestTopic,
        metadata_response::{MetadataResponseBroker, MetadataResponseTopic},
        ApiKey, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse, RequestHeader,
        ResponseHeader, TopicName,
    },
    protocol::{Decodable, Encodable, StrBytes},
    ResponseError,
};
use millrace_client::{Client, ClientConfig, Error, Target};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A request as the scripted broker saw it.
struct Seen {
    header: RequestHeader,
    api: ApiKey,
    body: Bytes,
}

async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let length = stream.read_i32().await.ok()?;
    let mut frame = vec![0u8; usize::try_from(length).ok()?];
    stream.read_exact(&mut frame).await.ok()?;
    let mut frame = Bytes::from(frame);
    let api = ApiKey::try_from((&frame[..2]).get_i16()).ok()?;
    let version = (&frame[2..4]).get_i16();
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).ok()?;
    Some(Seen {
        header,
        api,
        body: frame,
    })
}

async fn respond<M: Encodable>(
    stream: &mut TcpStream,
    request: &RequestHeader,
    api: ApiKey,
    version: i16,
    body: &M,
) {
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(request.correlation_id)
        .encode(&mut out, api.response_header_version(version))
        .expect("header");
    body.encode(&mut out, version).expect("body");
    let mut framed = BytesMut::new();
    framed.put_i32(out.len() as i32);
    framed.extend_from_slice(&out);
    stream.write_all(&framed).await.expect("write response");
}

fn versions(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ranges
            .iter()
            .map(|&(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

fn metadata(port: u16, topic: Option<&str>) -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(7))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(i32::from(port))])
        .with_controller_id(BrokerId(7))
        .with_topics(
            topic
                .map(|t| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                })
                .into_iter()
                .collect(),
        )
}

/// Reads a Metadata request and answers it with broker 7 and `topic`.
async fn answer_metadata(stream: &mut TcpStream, port: u16, topic: Option<&str>) {
    let seen = read_request(stream).await.expect("metadata request");
    assert_eq!(seen.api, ApiKey::Metadata);
    let v = seen.header.request_api_version;
    respond(
        stream,
        &seen.header,
        ApiKey::Metadata,
        v,
        &metadata(port, topic),
    )
    .await;
}

/// Answers the ApiVersions exchange the way a broker that knows only ApiVersions v0..v2 does.
async fn old_broker_handshake(stream: &mut TcpStream) -> Vec<i16> {
    let mut asked = Vec::new();
    loop {
        let seen = read_request(stream).await.expect("ApiVersions");
        assert_eq!(seen.api, ApiKey::ApiVersions);
        let version = seen.header.request_api_version;
        asked.push(version);
        let offered = versions(&[(ApiKey::ApiVersions, 0, 2), (ApiKey::Metadata, 1, 9)]);
        if version > 2 {
            // Kafka's rule: a too-new ApiVersions gets UNSUPPORTED_VERSION in a v0 body.
            let refusal = offered.with_error_code(ResponseError::UnsupportedVersion.code());
            respond(stream, &seen.header, ApiKey::ApiVersions, 0, &refusal).await;
        } else {
            respond(stream, &seen.header, ApiKey::ApiVersions, version, &offered).await;
            return asked;
        }
    }
}

#[tokio::test]
async fn negotiates_down_and_matches_out_of_order_responses_by_correlation_id() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let broker = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let asked = old_broker_handshake(&mut stream).await;
        answer_metadata(&mut stream, port, None).await;
        // Two pipelined requests: answer the second first.
        let first = read_request(&mut stream).await.expect("first");
        let second = read_request(&mut stream).await.expect("second");
        for seen in [&second, &first] {
            let request =
                MetadataRequest::decode(&mut seen.body.clone(), seen.header.request_api_version)
                    .expect("decode");
            let name = request.topics.expect("topics")[0]
                .name
                .clone()
                .expect("name")
                .0
                .to_string();
            respond(
                &mut stream,
                &seen.header,
                ApiKey::Metadata,
                seen.header.request_api_version,
                &metadata(port, Some(&name)),
            )
            .await;
        }
        (
            asked,
            first.header.request_api_version,
            first.header.correlation_id != second.header.correlation_id,
        )
    });

    let client = Client::connect(ClientConfig::new(&format!("127.0.0.1:{port}")))
        .await
        .expect("connect");
    let node = client.node(Target::Broker(7)).await.expect("node");
    // The broker offered Metadata up to v9: that is what is spoken, not the client's v12.
    assert_eq!(node.versions().negotiate(ApiKey::Metadata), Some(9));
    let ask = |topic: &'static str| {
        let client = client.clone();
        let node = node.clone();
        async move {
            client
                .send(&node, |_| {
                    MetadataRequest::default()
                        .with_topics(Some(vec![MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_static_str(topic))))]))
                })
                .await
        }
    };
    let (a, b) = tokio::join!(ask("alpha"), ask("beta"));
    let name = |r: MetadataResponse| r.topics[0].name.clone().expect("name").0.to_string();
    assert_eq!(name(a.expect("alpha")), "alpha");
    assert_eq!(name(b.expect("beta")), "beta");

    let (asked, metadata_version, distinct) = broker.await.expect("broker task");
    assert_eq!(asked, [3, 2], "asked at v3, then at the broker's highest");
    assert_eq!(metadata_version, 9);
    assert!(distinct);
}

#[tokio::test]
async fn a_request_without_an_answer_times_out_and_the_connection_is_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let broker = tokio::spawn(async move {
        let mut connections = 0;
        loop {
            let (mut stream, _) = listener.accept().await.expect("accept");
            connections += 1;
            old_broker_handshake(&mut stream).await;
            if connections == 1 {
                // Answer the bootstrap, then swallow the next request and wait for the client
                // to give up on it: it must close the connection.
                answer_metadata(&mut stream, port, None).await;
                let _swallowed = read_request(&mut stream).await.expect("second request");
                assert!(
                    read_request(&mut stream).await.is_none(),
                    "the client closed the timed-out connection"
                );
            } else {
                answer_metadata(&mut stream, port, Some("after")).await;
                return connections;
            }
        }
    });

    let mut config = ClientConfig::new(&format!("127.0.0.1:{port}"));
    config.request_timeout = Duration::from_millis(300);
    let client = Client::connect(config).await.expect("connect");
    let node = client.node(Target::Any).await.expect("node");
    let error = client
        .send(&node, |_| MetadataRequest::default())
        .await
        .expect_err("no answer");
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    assert!(error.is_retriable());

    // The next request opens a new connection (and negotiates again).
    let node = client.node(Target::Any).await.expect("new connection");
    let response = client
        .send(&node, |_| MetadataRequest::default())
        .await
        .expect("answered");
    assert_eq!(
        response.topics[0]
            .name
            .as_ref()
            .map(|n| n.0.to_string())
            .as_deref(),
        Some("after")
    );
    assert_eq!(broker.await.expect("broker task"), 2);
}
