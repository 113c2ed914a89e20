//! A real network partition: three `millrace` nodes, each in its own network namespace joined
//! by a bridge, and the active controller's link cut (`ip link set … down`). The majority
//! elects a new controller and keeps accepting metadata writes; the isolated node, still
//! believing it leads, cannot commit anything, so a topic created through it never appears;
//! when the link comes back it rejoins as a follower and sees what the majority wrote.
//!
//! Needs root and iproute2 (`ip netns`), as CI has. The namespaces, veths and bridge are
//! named after this process and removed when the test ends (or at the next run's start).

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use rdkafka::{
    admin::{NewTopic, TopicReplication},
    consumer::{BaseConsumer, Consumer},
};

/// Runs `ip` with `args`; panics with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three namespaces on one bridge, 10.<net>.0.1–3, with the bridge (and so the test) at .254.
struct Net {
    prefix: String,
    net: u8,
}

impl Net {
    fn create() -> Net {
        let prefix = format!("mr{}", std::process::id() % 100_000);
        let net = 200 + (std::process::id() % 50) as u8;
        let n = Net { prefix, net };
        n.remove();
        let br = n.bridge();
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&["addr", "add", &format!("10.{}.0.254/24", n.net), "dev", &br]);
        ip(&["link", "set", &br, "up"]);
        for i in 1..=3 {
            let ns = n.ns(i);
            let veth = n.veth(i);
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &veth, "master", &br, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", n.host(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        n
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }
    fn ns(&self, i: i32) -> String {
        format!("{}n{i}", self.prefix)
    }
    fn veth(&self, i: i32) -> String {
        format!("{}v{i}", self.prefix)
    }
    fn host(&self, i: i32) -> String {
        format!("10.{}.0.{i}", self.net)
    }

    /// Cuts (or restores) node `i`'s only link.
    fn set_link(&self, i: i32, up: bool) {
        ip(&["link", "set", &self.veth(i), if up { "up" } else { "down" }]);
    }

    fn remove(&self) {
        for i in 1..=3 {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .output();
            let _ = Command::new("ip")
                .args(["link", "del", &self.veth(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .output();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("client");
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .is_ok_and(|md| {
            md.topics()
                .iter()
                .any(|t| t.error().is_none() && !t.partitions().is_empty())
        })
}

#[test]
fn an_isolated_controller_loses_the_quorum_and_the_majority_carries_on() {
    let net = Net::create();
    let voters = (1..=3)
        .map(|i| format!("{i}@{}:9093", net.host(i)))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Broker> = (1..=3)
        .map(|i| {
            let id = i.to_string();
            Broker::at(
                &net.host(i),
                9092,
                9180,
                &[
                    ("node.id", &id),
                    ("controller.quorum.voters", &voters),
                    ("broker.session.timeout.ms", "3000"),
                    ("broker.heartbeat.interval.ms", "300"),
                    ("controller.quorum.election.timeout.ms", "300"),
                    ("controller.quorum.request.timeout.ms", "1000"),
                ],
            )
            .in_netns(&net.ns(i))
        })
        .collect();
    for n in &mut nodes {
        n.launch();
    }
    for n in &mut nodes {
        n.wait_ready();
    }
    let mut old = None;
    assert!(wait_until(CLIENT_TIMEOUT, || {
        old = (1..=3).find(|i| nodes[(*i - 1) as usize].is_active_controller());
        old.is_some()
    }));
    let old = old.expect("controller");
    let majority: Vec<i32> = (1..=3).filter(|i| *i != old).collect();
    let majority_bootstrap = majority
        .iter()
        .map(|i| nodes[(*i - 1) as usize].bootstrap())
        .collect::<Vec<_>>()
        .join(",");

    net.set_link(old, false);
    let cut = Instant::now();

    // The majority elects a new controller and keeps taking metadata writes.
    let mut new = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            new = majority
                .iter()
                .copied()
                .find(|i| nodes[(*i - 1) as usize].is_active_controller());
            new.is_some()
        }),
        "the majority never elected a new controller"
    );
    eprintln!(
        "majority elected controller {new:?} {:?} after the cut",
        cut.elapsed()
    );
    let admin_majority = admin(&majority_bootstrap);
    let created = futures::executor::block_on(admin_majority.create_topics(
        [&NewTopic::new(
            "majority-side",
            2,
            TopicReplication::Fixed(1),
        )],
        &admin_opts(),
    ))
    .expect("CreateTopics request");
    assert!(created[0].is_ok(), "majority write: {created:?}");
    eprintln!(
        "majority accepted a metadata write {:?} after the cut",
        cut.elapsed()
    );

    // The isolated node cannot commit: a topic created through it (from inside its namespace,
    // the only place it can be reached) is refused.
    let isolated_bootstrap = nodes[(old - 1) as usize].bootstrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &net.ns(old)])
        .arg(env!("CARGO_BIN_EXE_millrace"))
        .args([
            "topics",
            "create",
            "--bootstrap-server",
            &isolated_bootstrap,
        ])
        .args(["--topic", "minority-side", "--partitions", "1"])
        .output()
        .expect("run millrace topics create");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the minority accepted a write: {stderr}"
    );
    eprintln!("minority refused the write: {}", stderr.trim());

    // Heal: the old controller rejoins as a follower and sees the majority's write; the
    // minority's never happened.
    net.set_link(old, true);
    let rejoin = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || topic_exists(
            &isolated_bootstrap,
            "majority-side"
        )),
        "the healed node never caught up"
    );
    eprintln!(
        "healed node caught up {:?} after the link came back",
        rejoin.elapsed()
    );
    assert!(!topic_exists(&majority_bootstrap, "minority-side"));
    assert!(!topic_exists(&isolated_bootstrap, "minority-side"));
    // One active controller, on the majority side.
    let mut active = Vec::new();
    assert!(
        wait_until(CLIENT_TIMEOUT, || {
            active = (1..=3)
                .filter(|i| nodes[(*i - 1) as usize].is_active_controller())
                .collect();
            active.len() == 1 && active[0] != old
        }),
        "after healing, the active controllers are {active:?} (old leader {old})"
    );
}
