//! A real 3-node cluster: three `millrace` processes (each broker + controller) on their own
//! loopback hosts 127.0.N.1–3, agreeing on metadata through the Raft quorum.
//!
//! - Placement: replicas on distinct racks, replicas and leaders balanced, explicit
//!   assignments honoured and checked, and real clients producing and consuming across
//!   leaders on different brokers (a broker refuses partitions it does not lead).
//! - Controller failover: SIGKILL the active controller; another is elected and topics can
//!   still be created; after enough metadata churn the killed node rejoins from a snapshot.
//! - Broker fencing: SIGKILL a broker; it is fenced within the session timeout, Metadata stops
//!   routing to it, its partitions go offline; restarted, it is unfenced and leads them again
//!   with its data intact.
//!
//! Failover times are printed (`cargo test --test cluster -- --nocapture` shows them).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{SocketAddr, TcpListener},
    sync::atomic::{AtomicU8, Ordering},
    time::{Duration, Instant},
};

use common::*;
use kafka_protocol::{records::Compression, ResponseError};
use rdkafka::{
    admin::{NewPartitions, NewTopic, TopicReplication},
    consumer::{BaseConsumer, Consumer},
    producer::FutureRecord,
    Offset,
};

/// Short timers, so fencing and elections happen within a test's patience.
const SESSION_MS: u64 = 3000;
const TIMERS: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "300"),
    ("controller.quorum.election.timeout.ms", "300"),
    ("controller.quorum.request.timeout.ms", "1000"),
    ("metadata.log.max.snapshot.interval.records", "20"),
    ("offsets.topic.num.partitions", "3"),
];

static NEXT_NET: AtomicU8 = AtomicU8::new(0);

/// Three nodes; `nodes[i]` has node id `i + 1`.
struct Cluster {
    nodes: Vec<Broker>,
    racks: Vec<String>,
    net: u8,
    voters: String,
}

fn ports_free(hosts: &[String]) -> bool {
    hosts.iter().all(|h| {
        [9092u16, 9093, 9180].iter().all(|p| {
            let addr: SocketAddr = format!("{h}:{p}").parse().expect("address");
            TcpListener::bind(addr).is_ok()
        })
    })
}

impl Cluster {
    fn start(racks: &[&str]) -> Cluster {
        // Each cluster gets its own 127.0.N.0/24: fixed ports, no clash between tests.
        let (net, hosts) = loop {
            let net = 40 + NEXT_NET.fetch_add(1, Ordering::SeqCst);
            assert!(net < 250, "no free loopback network for a cluster");
            let hosts: Vec<String> = (1..=racks.len())
                .map(|i| format!("127.0.{net}.{i}"))
                .collect();
            if ports_free(&hosts) {
                break (net, hosts);
            }
        };
        let voters = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| format!("{}@{h}:9093", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Broker> = hosts
            .iter()
            .zip(racks)
            .enumerate()
            .map(|(i, (host, rack))| {
                let id = (i + 1).to_string();
                let mut overrides: Vec<(&str, &str)> = vec![
                    ("node.id", &id),
                    ("controller.quorum.voters", &voters),
                    ("broker.rack", rack),
                ];
                overrides.extend_from_slice(TIMERS);
                Broker::at(host, 9092, 9180, &overrides)
            })
            .collect();
        eprintln!("cluster on 127.0.{net}.1-{}", nodes.len());
        for n in &mut nodes {
            n.launch();
        }
        for n in &mut nodes {
            n.wait_ready();
        }
        Cluster {
            nodes,
            racks: racks.iter().map(|r| r.to_string()).collect(),
            net,
            voters,
        }
    }

    fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Broker::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&mut self, id: i32) -> &mut Broker {
        &mut self.nodes[(id - 1) as usize]
    }

    fn rack(&self, id: i32) -> &str {
        &self.racks[(id - 1) as usize]
    }
}

/// What a Metadata response says about one topic: partition → (leader, replicas, isr).
type Layout = BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)>;

/// Metadata as `via` sees it: live broker ids, and the topic's layout (empty if unknown).
fn metadata(via: &str, topic: &str) -> (BTreeSet<i32>, Layout) {
    let consumer: BaseConsumer = client_config(via).create().expect("client");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let brokers = md.brokers().iter().map(|b| b.id()).collect();
    let layout = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions())
        .map(|p| {
            (
                p.id(),
                (p.leader(), p.replicas().to_vec(), p.isr().to_vec()),
            )
        })
        .collect();
    (brokers, layout)
}

/// Waits until `via` describes `topic` with `partitions` partitions, each with a leader.
fn wait_for_layout(via: &str, topic: &str, partitions: usize) -> Layout {
    let mut layout = Layout::new();
    let ok = wait_until(CLIENT_TIMEOUT, || {
        layout = metadata(via, topic).1;
        layout.len() == partitions && layout.values().all(|(l, _, _)| *l >= 0)
    });
    assert!(
        ok,
        "{topic} never showed {partitions} led partitions: {layout:?}"
    );
    layout
}

fn create(bootstrap: &str, topic: NewTopic<'_>) -> Result<(), rdkafka::types::RDKafkaErrorCode> {
    let results =
        futures::executor::block_on(admin(bootstrap).create_topics([&topic], &admin_opts()))
            .expect("CreateTopics request");
    match &results[0] {
        Ok(_) => Ok(()),
        Err((_, code)) => Err(*code),
    }
}

/// The node that reports itself the active controller, among those given (1-based ids).
fn active_controller(c: &Cluster, among: &[i32]) -> Option<i32> {
    among
        .iter()
        .copied()
        .find(|id| c.nodes[(*id - 1) as usize].is_active_controller())
}

fn counts(ids: impl Iterator<Item = i32>) -> BTreeMap<i32, usize> {
    let mut m = BTreeMap::new();
    for id in ids {
        *m.entry(id).or_default() += 1;
    }
    m
}

#[test]
fn placement_is_rack_aware_and_balanced_and_clients_use_every_leader() {
    let c = Cluster::start(&["rack-a", "rack-b", "rack-c"]);
    let bootstrap = c.bootstrap();

    create(
        &bootstrap,
        NewTopic::new("spread", 12, TopicReplication::Fixed(3)),
    )
    .expect("create spread");
    let layout = wait_for_layout(&bootstrap, "spread", 12);
    for (p, (leader, replicas, isr)) in &layout {
        let racks: BTreeSet<&str> = replicas.iter().map(|r| c.rack(*r)).collect();
        assert_eq!(
            racks.len(),
            3,
            "partition {p}: replicas {replicas:?} share a rack"
        );
        assert_eq!(
            *leader, replicas[0],
            "partition {p}: the preferred leader leads"
        );
        assert_eq!(
            isr,
            &vec![*leader],
            "partition {p}: followers do not replicate yet"
        );
    }
    let leaders = counts(layout.values().map(|(l, _, _)| *l));
    assert_eq!(
        leaders,
        BTreeMap::from([(1, 4), (2, 4), (3, 4)]),
        "leaders balanced"
    );

    create(
        &bootstrap,
        NewTopic::new("single", 6, TopicReplication::Fixed(1)),
    )
    .expect("create single");
    let single = wait_for_layout(&bootstrap, "single", 6);
    let leaders = counts(single.values().map(|(l, _, _)| *l));
    assert_eq!(
        leaders,
        BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
        "RF 1 balanced too"
    );

    // Explicit assignments are honoured exactly, and checked against the registered brokers.
    let manual: &[&[i32]] = &[&[3, 1], &[2, 3]];
    create(
        &bootstrap,
        NewTopic::new("manual", 2, TopicReplication::Variable(manual)),
    )
    .expect("create manual");
    let m = wait_for_layout(&bootstrap, "manual", 2);
    assert_eq!(m[&0].1, vec![3, 1]);
    assert_eq!(m[&1].1, vec![2, 3]);
    let bad: &[&[i32]] = &[&[1, 9]];
    assert_eq!(
        create(
            &bootstrap,
            NewTopic::new("bad", 1, TopicReplication::Variable(bad))
        ),
        Err(rdkafka::types::RDKafkaErrorCode::InvalidReplicaAssignment)
    );
    assert_eq!(
        create(
            &bootstrap,
            NewTopic::new("too-many", 1, TopicReplication::Fixed(4))
        ),
        Err(rdkafka::types::RDKafkaErrorCode::InvalidReplicationFactor)
    );

    // CreatePartitions places the new partitions the same way.
    let grown = futures::executor::block_on(
        admin(&bootstrap).create_partitions([&NewPartitions::new("spread", 15)], &admin_opts()),
    )
    .expect("CreatePartitions request");
    assert!(grown[0].is_ok(), "{grown:?}");
    let layout = wait_for_layout(&bootstrap, "spread", 15);
    for p in 12..15 {
        let racks: BTreeSet<&str> = layout[&p].1.iter().map(|r| c.rack(*r)).collect();
        assert_eq!(racks.len(), 3, "new partition {p} spans the racks");
    }

    // A real client produces to every partition (so to all three leaders) and reads back.
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    for p in 0..15 {
        for i in 0..3 {
            let value = format!("p{p}-m{i}");
            futures::executor::block_on(
                producer.send(
                    FutureRecord::<(), _>::to("spread")
                        .partition(p)
                        .payload(&value),
                    Duration::from_secs(30),
                ),
            )
            .unwrap_or_else(|(e, _)| panic!("produce to partition {p}: {e}"));
        }
    }
    for p in 0..15 {
        let consumer = consumer_at(&bootstrap, "spread", p, Offset::Beginning, &[]);
        let got: Vec<String> = consume(&consumer, 3, CLIENT_TIMEOUT)
            .iter()
            .map(|m| {
                String::from_utf8_lossy(rdkafka::Message::payload(m).unwrap_or_default())
                    .into_owned()
            })
            .collect();
        assert_eq!(
            got,
            (0..3).map(|i| format!("p{p}-m{i}")).collect::<Vec<_>>()
        );
    }

    // A broker that does not lead a partition refuses to write it.
    let (p, (leader, _, _)) = layout.iter().next().expect("a partition");
    let other = (1..=3).find(|b| b != leader).expect("another broker");
    let mut raw = RawConn::connect(c.nodes[(other - 1) as usize].kafka_addr());
    let batch = record_batch(&[b"x"], now_ms(), Compression::None, None);
    let r = raw.produce("spread", *p, 1, batch);
    assert_eq!(r.error_code, ResponseError::NotLeaderOrFollower.code());
}

#[test]
fn killing_the_active_controller_elects_another_and_it_rejoins_from_a_snapshot() {
    let mut c = Cluster::start(&["r1", "r2", "r3"]);
    let mut active = None;
    assert!(wait_until(CLIENT_TIMEOUT, || {
        active = active_controller(&c, &[1, 2, 3]);
        active.is_some()
    }));
    let active = active.expect("active controller");
    c.node(active).kill9();
    let killed_at = Instant::now();
    let survivor_ids: Vec<i32> = (1..=3).filter(|id| *id != active).collect();
    let survivors: String = (1..=3)
        .filter(|id| *id != active)
        .map(|id| c.nodes[(id - 1) as usize].bootstrap())
        .collect::<Vec<_>>()
        .join(",");

    // A new controller is elected among the survivors, and topics can be created again.
    let mut new_active = None;
    assert!(wait_until(Duration::from_secs(60), || {
        new_active = active_controller(&c, &survivor_ids);
        new_active.is_some()
    }));
    let elected_after = killed_at.elapsed();
    create(
        &survivors,
        NewTopic::new("after-failover", 2, TopicReplication::Fixed(1)),
    )
    .expect("create after failover");
    eprintln!(
        "controller failover: node {active} killed; node {new_active:?} active after {elected_after:?}; a topic created {:?} after the kill",
        killed_at.elapsed()
    );
    // Until its session expires the dead node still counts as live, and may get replicas;
    // once it is fenced, new partitions avoid it.
    assert!(wait_until(Duration::from_millis(SESSION_MS * 5), || {
        !metadata(&survivors, "after-failover").0.contains(&active)
    }));
    create(
        &survivors,
        NewTopic::new("after-fencing", 4, TopicReplication::Fixed(1)),
    )
    .expect("create after fencing");
    let layout = wait_for_layout(&survivors, "after-fencing", 4);
    assert!(
        layout.values().all(|(l, _, _)| *l != active),
        "no partition placed on the fenced node: {layout:?}"
    );

    // Churn well past the snapshot interval (20 entries), so the leader's log no longer holds
    // what the killed node missed: it can only catch up from a snapshot.
    for i in 0..15 {
        let name = format!("churn-{i}");
        create(
            &survivors,
            NewTopic::new(&name, 1, TopicReplication::Fixed(1)),
        )
        .expect("churn create");
        if i % 2 == 0 {
            let deleted = futures::executor::block_on(
                admin(&survivors).delete_topics(&[&name], &admin_opts()),
            )
            .expect("DeleteTopics request");
            assert!(deleted[0].is_ok(), "{deleted:?}");
        }
    }
    let restarted_at = Instant::now();
    c.node(active).restart();
    eprintln!(
        "killed controller rejoined and was ready after {:?}",
        restarted_at.elapsed()
    );
    let rejoined = c.node(active).bootstrap();
    assert!(wait_until(CLIENT_TIMEOUT, || metadata(
        &rejoined, "churn-13"
    )
    .1
    .len()
        == 1));
    assert!(
        metadata(&rejoined, "churn-12").1.is_empty(),
        "a deleted topic stays deleted"
    );
    assert!(
        c.node(active)
            .log()
            .contains("installed a metadata snapshot"),
        "the rejoining node caught up from a snapshot"
    );
    // And it takes part again: a topic created through it is seen by everyone.
    create(
        &rejoined,
        NewTopic::new("via-rejoined", 3, TopicReplication::Fixed(3)),
    )
    .expect("create");
    wait_for_layout(&c.bootstrap(), "via-rejoined", 3);
}

#[test]
fn a_killed_broker_is_fenced_and_unfenced_when_it_restarts() {
    let mut c = Cluster::start(&["r1", "r2", "r3"]);
    let bootstrap = c.bootstrap();
    create(
        &bootstrap,
        NewTopic::new("f", 6, TopicReplication::Fixed(1)),
    )
    .expect("create");
    let layout = wait_for_layout(&bootstrap, "f", 6);
    let mut controller = None;
    assert!(wait_until(CLIENT_TIMEOUT, || {
        controller = active_controller(&c, &[1, 2, 3]);
        controller.is_some()
    }));
    let controller = controller.expect("controller");
    let victim = (1..=3)
        .find(|id| *id != controller)
        .expect("a non-controller broker");
    let led: Vec<i32> = layout
        .iter()
        .filter(|(_, (l, _, _))| *l == victim)
        .map(|(p, _)| *p)
        .collect();
    assert!(!led.is_empty(), "broker {victim} leads some of {layout:?}");
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    for p in &led {
        futures::executor::block_on(
            producer.send(
                FutureRecord::<(), _>::to("f")
                    .partition(*p)
                    .payload("before"),
                Duration::from_secs(30),
            ),
        )
        .expect("produce before the kill");
    }
    drop(producer);

    c.node(victim).kill9();
    let killed_at = Instant::now();
    let witness = c.nodes[(controller - 1) as usize].bootstrap();
    let mut seen = (BTreeSet::new(), Layout::new());
    assert!(
        wait_until(Duration::from_millis(SESSION_MS * 5), || {
            seen = metadata(&witness, "f");
            !seen.0.contains(&victim)
        }),
        "broker {victim} still listed: {seen:?}"
    );
    eprintln!(
        "broker {victim} fenced {:?} after SIGKILL (session timeout {SESSION_MS} ms)",
        killed_at.elapsed()
    );
    for p in &led {
        assert_eq!(
            seen.1[p].0, -1,
            "partition {p} is offline, not moved to a replica without its data"
        );
    }

    c.node(victim).restart();
    let restarted = Instant::now();
    let layout = wait_for_layout(&witness, "f", 6);
    eprintln!(
        "broker {victim} unfenced and leading again {:?} after restart",
        restarted.elapsed()
    );
    let (brokers, _) = metadata(&witness, "f");
    assert!(brokers.contains(&victim));
    for p in &led {
        assert_eq!(layout[p].0, victim, "partition {p} led by its broker again");
        let (low, high) = watermarks(&bootstrap, "f", *p);
        assert_eq!((low, high), (0, 1), "partition {p} kept its record");
    }
}

#[test]
fn the_dev_cluster_script_starts_three_ready_nodes_and_stops_them() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/dev-cluster.sh");
    let out = dir.path().join("script.out");
    let mut child = Command::new("bash")
        .arg(script)
        .env("DEV_CLUSTER_BIN", env!("CARGO_BIN_EXE_millrace"))
        .env("DEV_CLUSTER_DATA", dir.path().join("data"))
        .stdout(Stdio::from(std::fs::File::create(&out).expect("out file")))
        .stderr(Stdio::null())
        .spawn()
        .expect("run scripts/dev-cluster.sh");
    let ready = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("3-node cluster ready"))
    });
    let described = ready.then(|| {
        create(
            "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292",
            NewTopic::new("dev", 6, TopicReplication::Fixed(3)),
        )
        .map(|_| wait_for_layout("127.0.0.1:9292", "dev", 6))
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the script");
    let status = child.wait().expect("wait for the script");
    assert!(
        ready,
        "not ready: {}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    let layout = described.expect("ran").expect("created");
    assert!(layout.values().all(|(_, replicas, _)| replicas.len() == 3));
    assert!(status.success(), "script ended with {status}");
    // Every node stopped: its Kafka port is free again.
    for port in [9092, 9192, 9292] {
        assert!(
            wait_until(Duration::from_secs(30), || TcpListener::bind((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "port {port} still in use after the script stopped"
        );
    }
}

#[test]
fn deletions_and_config_changes_reach_every_broker() {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let c = Cluster::start(&["r1", "r2", "r3"]);
    let bootstrap = c.bootstrap();
    create(
        &bootstrap,
        NewTopic::new("gone", 6, TopicReplication::Fixed(3)),
    )
    .expect("create");
    wait_for_layout(&bootstrap, "gone", 6);
    let dirs_of = |n: &Broker| -> Vec<String> {
        std::fs::read_dir(n.data_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|f| f.starts_with("gone-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Every broker holds replicas (RF 3 on 3 brokers: all six partitions each).
    for n in &c.nodes {
        assert!(
            wait_until(CLIENT_TIMEOUT, || dirs_of(n).len() == 6),
            "{:?}",
            dirs_of(n)
        );
    }

    // A topic config altered through broker 1 is what broker 3 describes.
    let alter = AlterConfig::new(ResourceSpecifier::Topic("gone")).set("retention.ms", "123456");
    let altered = futures::executor::block_on(
        admin(&c.nodes[0].bootstrap()).alter_configs([&alter], &admin_opts()),
    )
    .expect("AlterConfigs request");
    assert!(altered[0].is_ok(), "{altered:?}");
    let mut value = None;
    assert!(
        wait_until(CLIENT_TIMEOUT, || {
            let described = futures::executor::block_on(
                admin(&c.nodes[2].bootstrap())
                    .describe_configs([&ResourceSpecifier::Topic("gone")], &admin_opts()),
            )
            .expect("DescribeConfigs request");
            value = described[0]
                .as_ref()
                .ok()
                .and_then(|r| r.get("retention.ms"))
                .and_then(|e| e.value.clone());
            value.as_deref() == Some("123456")
        }),
        "broker 3 sees retention.ms={value:?}"
    );

    // Deleted through broker 2: every broker removes its replicas.
    let deleted = futures::executor::block_on(
        admin(&c.nodes[1].bootstrap()).delete_topics(&["gone"], &admin_opts()),
    )
    .expect("DeleteTopics request");
    assert!(deleted[0].is_ok(), "{deleted:?}");
    for n in &c.nodes {
        assert!(
            wait_until(CLIENT_TIMEOUT, || dirs_of(n).is_empty()),
            "{:?}",
            dirs_of(n)
        );
    }
}

#[test]
fn a_broker_only_node_follows_the_metadata_log_and_leads_partitions() {
    let c = Cluster::start(&["r1", "r2", "r3"]);
    let host = format!("127.0.{}.4", c.net);
    // Its controller listener, where the leader replicates the log to it as a learner.
    let listeners = format!("PLAINTEXT://{host}:9092,CONTROLLER://{host}:9093");
    let mut broker4 = Broker::at(
        &host,
        9092,
        9180,
        &[
            &[
                ("node.id", "4"),
                ("process.roles", "broker"),
                ("controller.quorum.voters", c.voters.as_str()),
                ("broker.rack", "r4"),
                ("listeners", listeners.as_str()),
            ][..],
            TIMERS,
        ]
        .concat(),
    );
    broker4.launch();
    broker4.wait_ready();
    let bootstrap = format!("{},{}", c.bootstrap(), broker4.bootstrap());
    let (brokers, _) = metadata(&broker4.bootstrap(), "none");
    assert_eq!(brokers, BTreeSet::from([1, 2, 3, 4]));
    create(
        &bootstrap,
        NewTopic::new("four", 8, TopicReplication::Fixed(1)),
    )
    .expect("create");
    let layout = wait_for_layout(&broker4.bootstrap(), "four", 8);
    let led: Vec<i32> = layout
        .iter()
        .filter(|(_, (l, _, _))| *l == 4)
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(
        led.len(),
        2,
        "the broker-only node leads its share: {layout:?}"
    );
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    for p in &led {
        futures::executor::block_on(
            producer.send(
                FutureRecord::<(), _>::to("four")
                    .partition(*p)
                    .payload("on four"),
                Duration::from_secs(30),
            ),
        )
        .expect("produce to a partition led by the broker-only node");
        assert_eq!(watermarks(&bootstrap, "four", *p), (0, 1));
    }
    assert!(
        !broker4.is_active_controller(),
        "a broker-only node never becomes the controller"
    );
}

#[test]
fn consumer_groups_find_their_coordinator_on_any_broker() {
    use rdkafka::consumer::CommitMode;
    let c = Cluster::start(&["r1", "r2", "r3"]);
    let bootstrap = c.bootstrap();
    create(
        &bootstrap,
        NewTopic::new("orders", 3, TopicReplication::Fixed(1)),
    )
    .expect("create");
    wait_for_layout(&bootstrap, "orders", 3);
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    for p in 0..3 {
        for i in 0..4 {
            futures::executor::block_on(
                producer.send(
                    FutureRecord::<(), _>::to("orders")
                        .partition(p)
                        .payload(&format!("{p}-{i}")),
                    Duration::from_secs(30),
                ),
            )
            .expect("produce");
        }
    }
    // Several groups, so their coordinators land on different brokers.
    for group in ["billing", "shipping", "audit"] {
        let consumer: BaseConsumer = client_config(&bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["orders"]).expect("subscribe");
        let mut got = 0;
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        while got < 12 {
            assert!(
                Instant::now() < deadline,
                "group {group} consumed {got} of 12"
            );
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                m.expect("consume");
                got += 1;
            }
        }
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
        let committed = consumer
            .committed(Duration::from_secs(10))
            .expect("committed offsets");
        for p in 0..3 {
            let offset = committed
                .find_partition("orders", p)
                .map(|e| e.offset())
                .expect("partition");
            assert_eq!(offset, Offset::Offset(4), "group {group} partition {p}");
        }
    }
    let (_, offsets) = metadata(&bootstrap, "__consumer_offsets");
    assert_eq!(offsets.len(), 3, "created on the first FindCoordinator");
    let leaders: BTreeSet<i32> = offsets.values().map(|(l, _, _)| *l).collect();
    assert_eq!(
        leaders.len(),
        3,
        "coordinators spread over the brokers: {offsets:?}"
    );
}
