//! The operator's Kafka side (`kafka::ClusterAdmin` and `topic::sync_topic`) against a real
//! `millrace` broker process, without Kubernetes: topics are created, grown, reconfigured and
//! deleted as planned, and many concurrent creates share requests.
//!
//! Skips (passing, with a message) when the `millrace` binary has not been built (`cargo test
//! --workspace` builds it).

use anyhow::{bail, Context as _, Result};
use millrace_operator::{
    kafka::{AdminSource, KafkaAdmins},
    topic::{sync_topic, ConfigSource, DesiredTopic, TopicAdmin},
};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const ADDR: &str = "127.0.78.1";

fn millrace_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("millrace");
    bin.exists().then_some(bin)
}

struct Broker {
    child: Child,
    dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let log = self.dir.with_extension("log");
        if std::thread::panicking() {
            eprintln!("kafka_admin: the broker's log is {}", log.display());
        } else {
            let _ = std::fs::remove_file(log);
        }
    }
}

fn start_broker(bin: &PathBuf) -> Result<Broker> {
    let dir = std::env::temp_dir().join(format!("millrace-operator-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let child = Command::new(bin)
        .arg("serve")
        .args(["--override", &format!("listeners=PLAINTEXT://{ADDR}:9092")])
        .args(["--override", &format!("admin.listener={ADDR}:9180")])
        .args(["--override", &format!("log.dirs={}", dir.display())])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.with_extension("log"))?)
        .spawn()?;
    let broker = Broker { child, dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect((ADDR, 9092)).is_err() {
        if Instant::now() > deadline {
            bail!("the broker did not listen within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(broker)
}

/// The broker's request counts by API, from its `/metrics`.
async fn requests() -> Result<BTreeMap<String, u64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((ADDR, 9180)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("kafka_network_requests_total{request=\"")?;
            let (api, count) = rest.split_once("\"} ")?;
            Some((api.to_string(), count.trim().parse::<f64>().ok()? as u64))
        })
        .collect())
}

fn desired(name: &str, partitions: i32, config: &[(&str, &str)]) -> DesiredTopic {
    DesiredTopic {
        name: name.into(),
        partitions,
        replicas: 1,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test]
async fn topics_are_created_grown_reconfigured_and_deleted_through_the_admin() -> Result<()> {
    let Some(bin) = millrace_binary() else {
        eprintln!(
            "SKIPPED kafka_admin: the millrace binary is not built (cargo build -p millrace)"
        );
        return Ok(());
    };
    let _broker = start_broker(&bin)?;
    let admins = KafkaAdmins::default();
    let admin = admins.admin(&format!("{ADDR}:9092"));

    // Create, with a config: the topic's own config reads back as such.
    let want = desired("orders", 3, &[("retention.ms", "3600000")]);
    let plan = sync_topic(&*admin, &want).await?;
    assert_eq!(plan.actions.len(), 1, "{plan:?}");
    let seen = admin.describe("orders").await?.context("created")?;
    assert_eq!((seen.partitions, seen.replicas), (3, 1));
    assert!(!seen.topic_id.is_empty());
    let retention = &seen.config["retention.ms"];
    assert_eq!(
        (retention.value.as_str(), retention.source),
        ("3600000", ConfigSource::Topic)
    );
    assert_eq!(seen.config["cleanup.policy"].source, ConfigSource::Default);
    // In sync now: a second pass does nothing.
    assert!(sync_topic(&*admin, &want).await?.is_in_sync());

    // Grow, change one config, drop another.
    let want = desired("orders", 5, &[("cleanup.policy", "compact")]);
    let plan = sync_topic(&*admin, &want).await?;
    assert_eq!(plan.actions.len(), 2, "{plan:?}");
    let seen = admin.describe("orders").await?.context("exists")?;
    assert_eq!(seen.partitions, 5);
    assert_eq!(seen.config["cleanup.policy"].value, "compact");
    assert_eq!(seen.config["retention.ms"].source, ConfigSource::Default);
    assert!(sync_topic(&*admin, &want).await?.is_in_sync());

    // Many at once: each gets its own answer, all exist afterwards, and they shared requests.
    let before = requests().await?;
    let names: Vec<String> = (0..40).map(|i| format!("batch-{i}")).collect();
    let results = futures::future::join_all(names.iter().map(|n| {
        let admin = admin.clone();
        let want = desired(n, 2, &[("retention.ms", "60000")]);
        async move { sync_topic(&*admin, &want).await }
    }))
    .await;
    for r in results {
        r?;
    }
    let topics = admin.topics().await?;
    let made: BTreeMap<_, _> = topics
        .iter()
        .filter(|(n, _)| n.starts_with("batch-"))
        .map(|(n, t)| {
            (
                n.clone(),
                (t.partitions, t.config["retention.ms"].value.clone()),
            )
        })
        .collect();
    assert_eq!(made.len(), 40);
    assert!(
        made.values().all(|v| *v == (2, "60000".to_string())),
        "{made:?}"
    );
    let after = requests().await?;
    let sent = |api: &str| after.get(api).unwrap_or(&0) - before.get(api).unwrap_or(&0);
    assert!(
        sent("CreateTopics") >= 1,
        "the metrics count requests: {after:?}"
    );
    assert!(
        sent("CreateTopics") <= 2,
        "40 creates took {} CreateTopics",
        sent("CreateTopics")
    );
    assert!(
        sent("DescribeConfigs") <= 3,
        "40 describes took {} DescribeConfigs",
        sent("DescribeConfigs")
    );

    // Delete; deleting again is not an error.
    admin.delete("orders").await?;
    admin.delete("orders").await?;
    assert!(admin.describe("orders").await?.is_none());
    Ok(())
}
