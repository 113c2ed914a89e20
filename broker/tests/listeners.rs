//! Named listeners, as the Kubernetes operator renders them.
//!
//! - A broker started from exactly the keys the operator renders (`server.properties` followed by
//!   `node-0.properties`, loopback hosts for the pod DNS names) becomes ready, its admin server on
//!   `admin.http.port`; `--override admin.listener=…` moves the admin server off it.
//! - Metadata, DescribeCluster and FindCoordinator answer with the addresses of the listener the
//!   request arrived on; a listener the broker does not advertise gets no brokers.
//! - A SASL_SSL listener stops start-up with an error naming it.

mod common;

use std::{
    fs,
    net::{SocketAddr, TcpListener},
    path::Path,
};

use common::*;
use kafka_protocol::{
    messages::{
        ApiKey, DescribeClusterRequest, FindCoordinatorRequest, MetadataRequest, MetadataResponse,
    },
    protocol::StrBytes,
};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The (host, port) of every broker a Metadata request through `bootstrap` lists, via librdkafka.
fn brokers_via(bootstrap: &str) -> Vec<(String, i32)> {
    let client: BaseConsumer = client_config(bootstrap).create().expect("client");
    let metadata = client
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .expect("metadata");
    metadata
        .brokers()
        .iter()
        .map(|b| (b.host().to_string(), b.port()))
        .collect()
}

/// A raw Metadata request (no topics), for what librdkafka hides (an empty broker list).
fn raw_metadata(addr: SocketAddr) -> MetadataResponse {
    let mut conn = RawConn::connect(addr);
    let version = conn.version_for(ApiKey::Metadata, 12);
    conn.call(
        version,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
}

/// A loopback host 127.0.N.1 (N in 30..40, apart from the cluster tests' 40 and up) whose
/// ports 9091–9093 are free, so the rendered listener ports can stay as rendered.
fn loopback_host() -> String {
    (30..40)
        .map(|n| format!("127.0.{n}.1"))
        .find(|h| {
            [9091u16, 9092, 9093].iter().all(|p| {
                let addr: SocketAddr = format!("{h}:{p}").parse().expect("address");
                TcpListener::bind(addr).is_ok()
            })
        })
        .expect("a loopback host with ports 9091-9093 free")
}

/// What the operator renders for node 0 (see `cargo run -p millrace-operator -- render
/// operator/src/fixtures/full-cluster.yaml`), with `host` for the pods' DNS names, a one-voter quorum (one
/// process), `admin_port` for 8080 and `data` for the volume.
fn rendered_properties(host: &str, admin_port: u16, data: &Path) -> String {
    format!(
        "admin.http.port={admin_port}
auto.create.topics.enable=false
controller.listener.names=CONTROLLER
controller.quorum.voters=0@{host}:9093
default.replication.factor=3
inter.broker.listener.name=REPLICATION
listener.security.protocol.map=CONTROLLER:PLAINTEXT,REPLICATION:PLAINTEXT,PLAIN:PLAINTEXT
log.dirs={data}
log.retention.hours=168
min.insync.replicas=2
num.partitions=6
advertised.listeners=REPLICATION://{host}:9091,PLAIN://{host}:9092
listeners=REPLICATION://{host}:9091,PLAIN://{host}:9092,CONTROLLER://{host}:9093
node.id=0
process.roles=broker,controller
",
        data = data.display()
    )
}

#[test]
fn operator_rendered_properties_start_a_broker() {
    let host = loopback_host();
    let http_port = free_port();
    let mut broker = Broker::at(&host, 9092, http_port, &[]).bare();
    let config = broker.dir().join("server.properties");
    fs::write(
        &config,
        rendered_properties(&host, http_port, &broker.data_dir()),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path").to_string();
    broker.set_args(&["--config", &config]);
    broker.launch();
    // admin.http.port listens on every interface: reachable on this host too.
    broker.wait_ready();
    let (code, _) = http_get(SocketAddr::from(([127, 0, 0, 1], http_port)), "/readyz")
        .expect("/readyz on 127.0.0.1");
    assert_eq!(code, 200);

    // Each client listener describes the broker by its own port.
    assert_eq!(brokers_via(&format!("{host}:9092")), [(host.clone(), 9092)]);
    assert_eq!(brokers_via(&format!("{host}:9091")), [(host.clone(), 9091)]);

    // An explicit admin.listener wins over the file's admin.http.port.
    assert!(broker.terminate().success());
    let admin: SocketAddr = format!("{host}:{}", free_port()).parse().expect("address");
    let admin_override = format!("admin.listener={admin}");
    broker.set_args(&["--config", &config, "--override", &admin_override]);
    broker.set_admin_addr(admin);
    broker.restart();
    assert!(
        !matches!(
            http_get(SocketAddr::from(([127, 0, 0, 1], http_port)), "/readyz"),
            Ok((200, _))
        ),
        "the admin server still answers on admin.http.port {http_port}"
    );
}

#[test]
fn a_sasl_listener_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = "127.0.0.1";
    let text = rendered_properties(host, free_port(), &dir.path().join("data"))
        .replace("PLAIN:PLAINTEXT", "PLAIN:PLAINTEXT,EXTERNAL:SASL_SSL")
        .replace(
            &format!("CONTROLLER://{host}:9093"),
            &format!("EXTERNAL://{host}:9094,CONTROLLER://{host}:9093"),
        )
        + "listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-512\n\
           listener.name.external.ssl.certificate.location=/etc/millrace/tls/external/tls.crt\n\
           listener.name.external.ssl.key.location=/etc/millrace/tls/external/tls.key\n\
           listener.name.external.ssl.keystore.type=PEM\n";
    let config = dir.path().join("server.properties");
    fs::write(&config, text).expect("write config");
    let output = run_to_exit(
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        dir.path(),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("listener `EXTERNAL` is mapped to SASL_SSL")
            && stderr.contains("TLS and SASL are not implemented yet"),
        "{stderr}"
    );
}

#[test]
fn answers_name_the_listener_the_request_came_in_on() {
    let (plain, client, hidden, admin) = (free_port(), free_port(), free_port(), free_port());
    let listeners = format!(
        "PLAINTEXT://127.0.0.1:{plain},CLIENT://127.0.0.1:{client},HIDDEN://127.0.0.1:{hidden}"
    );
    let advertised = format!("PLAINTEXT://127.0.0.1:{plain},CLIENT://localhost:{client}");
    let mut broker = Broker::at(
        "127.0.0.1",
        plain,
        admin,
        &[
            ("listeners", &listeners),
            ("advertised.listeners", &advertised),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CLIENT:PLAINTEXT,HIDDEN:PLAINTEXT",
            ),
            ("offsets.topic.num.partitions", "1"),
        ],
    );
    broker.launch();
    broker.wait_ready();
    let port = |p: u16| i32::from(p);
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

    // Metadata, through librdkafka.
    assert_eq!(
        brokers_via(&format!("127.0.0.1:{plain}")),
        [("127.0.0.1".to_string(), port(plain))]
    );
    assert_eq!(
        brokers_via(&format!("127.0.0.1:{client}")),
        [("localhost".to_string(), port(client))]
    );
    // A listener the broker does not advertise: served, but no broker to name (Kafka's rule).
    let m = raw_metadata(addr(hidden));
    assert!(m.brokers.is_empty(), "{:?}", m.brokers);

    // DescribeCluster.
    for p in [plain, client] {
        let mut conn = RawConn::connect(addr(p));
        let version = conn.version_for(ApiKey::DescribeCluster, 1);
        let r = conn.call(
            version,
            &DescribeClusterRequest::default().with_endpoint_type(1),
        );
        assert_eq!(r.error_code, 0);
        let ports: Vec<i32> = r.brokers.iter().map(|b| b.port).collect();
        assert_eq!(ports, [port(p)], "DescribeCluster via port {p}");
    }

    // FindCoordinator (v3: one key; the first call creates __consumer_offsets, which then loads).
    let coordinator = |p: u16| {
        let mut conn = RawConn::connect(addr(p));
        let mut answer = None;
        let found = wait_until(READY_TIMEOUT, || {
            let r = conn.call(
                3,
                &FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_static_str("listeners-group")),
            );
            let ok = r.error_code == 0;
            answer = Some(r);
            ok
        });
        let r = answer.expect("an answer");
        assert!(found, "FindCoordinator via port {p}: {r:?}");
        (r.host.to_string(), r.port)
    };
    assert_eq!(coordinator(plain), ("127.0.0.1".to_string(), port(plain)));
    assert_eq!(coordinator(client), ("localhost".to_string(), port(client)));
    let mut conn = RawConn::connect(addr(hidden));
    let r = conn.call(
        3,
        &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("listeners-group")),
    );
    assert_ne!(r.error_code, 0, "no coordinator address for HIDDEN: {r:?}");
}
