//! Running the broker: the command line, where configuration comes from (properties file,
//! `--override`, `MILLRACE_*` environment variables), refusal of unknown keys, and the HTTP admin
//! endpoints.

mod common;

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
};

use common::*;
use futures::executor::block_on;
use rdkafka::{admin::ResourceSpecifier, consumer::Consumer};

fn serve_args(dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "serve".to_string(),
        "--override".to_string(),
        format!("listeners=PLAINTEXT://127.0.0.1:{}", free_port()),
        "--override".to_string(),
        format!("admin.listener=127.0.0.1:{}", free_port()),
        "--override".to_string(),
        format!("log.dirs={}", dir.join("data").display()),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn unknown_or_invalid_config_keys_stop_the_broker_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            serve_args(dir.path(), &["--override", "no.such.setting=1"]),
            "no.such.setting",
        ),
        (
            serve_args(dir.path(), &["--override", "num.partitions=zero"]),
            "num.partitions",
        ),
        (
            {
                let file = dir.path().join("bad.properties");
                std::fs::write(
                    &file,
                    "# a comment\nnum.partitions=2\nlog.retention.bogus=7\n",
                )
                .unwrap();
                serve_args(dir.path(), &["--config", file.to_str().unwrap()])
            },
            "log.retention.bogus",
        ),
    ];
    for (args, key) in cases {
        let output = run_to_exit(&args, dir.path(), &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{args:?} exited successfully");
        assert!(
            stderr.contains(key) || stdout.contains(key),
            "the error for {args:?} does not name {key}:\n{stderr}{stdout}"
        );
    }
}

#[test]
fn config_file_environment_and_overrides_all_apply() {
    let config_dir = tempfile::tempdir().expect("tempdir");
    let file = config_dir.path().join("server.properties");
    std::fs::write(&file, "# Kafka-style properties\nnum.partitions=5\n").unwrap();
    let broker = Broker::start_with(
        &[("message.max.bytes", "2000000")],
        &["--config", file.to_str().unwrap()],
        &[("MILLRACE_LOG_RETENTION_HOURS", "2")],
    );
    let bootstrap = broker.bootstrap();

    // num.partitions from the file: an auto-created topic gets 5 partitions.
    let consumer: rdkafka::consumer::BaseConsumer = client_config(&bootstrap)
        .set("group.id", "millrace-tests-never-committed")
        // librdkafka consumers ask Metadata not to create topics unless told otherwise.
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("consumer");
    let mut partitions = 0;
    assert!(
        wait_until(CLIENT_TIMEOUT, || {
            let metadata = consumer
                .fetch_metadata(Some("from-file"), CLIENT_TIMEOUT)
                .expect("metadata");
            partitions = metadata.topics()[0].partitions().len();
            metadata.topics()[0].error().is_none() && partitions > 0
        }),
        "auto-created topic never appeared"
    );
    assert_eq!(partitions, 5, "num.partitions from the properties file");

    // The other two show up as the topic's inherited defaults.
    create_topic(&bootstrap, "inherits", 1, &[]);
    let described = block_on(
        admin(&bootstrap).describe_configs([&ResourceSpecifier::Topic("inherits")], &admin_opts()),
    )
    .expect("DescribeConfigs");
    let config = described.into_iter().next().unwrap().expect("config");
    let value = |name: &str| {
        config
            .get(name)
            .and_then(|e| e.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        value("retention.ms"),
        "7200000",
        "log.retention.hours=2 from MILLRACE_LOG_RETENTION_HOURS"
    );
    assert_eq!(
        value("max.message.bytes"),
        "2000000",
        "message.max.bytes from --override"
    );
}

/// Kills the process when dropped, so a failed assertion does not leave it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_arguments_means_serve_with_data_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka_port = free_port();
    let admin_port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_millrace"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MILLRACE_") {
            command.env_remove(key);
        }
    }
    let mut child = KillOnDrop(
        command
            .current_dir(dir.path())
            // Only the ports differ from the defaults, so that tests can run side by side.
            .env(
                "MILLRACE_LISTENERS",
                format!("PLAINTEXT://127.0.0.1:{kafka_port}"),
            )
            .env("MILLRACE_ADMIN_LISTENER", format!("127.0.0.1:{admin_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn millrace"),
    );
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin_port));
    assert!(
        wait_until(READY_TIMEOUT, || {
            assert!(
                child.0.try_wait().expect("try_wait").is_none(),
                "millrace with no arguments exited"
            );
            matches!(http_get(admin_addr, "/readyz"), Ok((200, _)))
        }),
        "millrace with no arguments never became ready"
    );
    let bootstrap = format!("127.0.0.1:{kafka_port}");
    create_topic(&bootstrap, "here", 1, &[]);
    assert!(
        dir.path().join("data").join("here-0").is_dir(),
        "default log.dirs is ./data: no data/here-0 in the working directory"
    );
}

#[test]
fn admin_endpoints_report_liveness_readiness_and_metrics() {
    let broker = Broker::start(&[]);
    assert_eq!(broker.http_get("/livez").expect("/livez").0, 200);
    assert_eq!(broker.http_get("/readyz").expect("/readyz").0, 200);
    assert_eq!(broker.http_get("/no-such-page").expect("GET").0, 404);

    // Some traffic, so per-API series exist.
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "metered", 1, &[]);
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    block_on(
        producer
            .send_result(
                rdkafka::producer::FutureRecord::<[u8], [u8]>::to("metered")
                    .partition(0)
                    .payload(&b"x"[..]),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue"),
    )
    .expect("delivery")
    .expect("produce");

    let (status, body) = broker.http_get("/metrics").expect("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE"), "not Prometheus text:\n{body}");
    // A histogram of request latency exists (per API, as the brief asks).
    assert!(
        body.contains("_bucket{"),
        "no latency histogram in /metrics:\n{body}"
    );
}
