//! `millrace kube-init`, the init step of a broker pod: the real binary against a stand-in for
//! the Kubernetes API server (a loopback HTTP server answering `GET /api/v1/nodes/NAME`), found
//! through `KUBECONFIG` as `kube::Config::infer` finds it.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    path::Path,
    sync::{Arc, Mutex},
};

use common::*;

/// Serves `nodes` (name → labels) as the API server would, on a loopback port, for the rest of
/// the test process; returns the URL and the paths requested.
fn fake_api_server(
    nodes: BTreeMap<&str, BTreeMap<&str, &str>>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let requested = Arc::new(Mutex::new(Vec::new()));
    let seen = requested.clone();
    let nodes: BTreeMap<String, serde_json::Value> = nodes
        .into_iter()
        .map(|(name, labels)| {
            let node = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": { "name": name, "labels": labels },
            });
            (name.to_string(), node)
        })
        .collect();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // The headers: up to the blank line (a GET has no body).
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            seen.lock().expect("lock").push(path.clone());
            let name = path.split('?').next().unwrap_or_default();
            let (status, body) = match name
                .strip_prefix("/api/v1/nodes/")
                .and_then(|n| nodes.get(n))
            {
                Some(node) => ("200 OK", node.to_string()),
                None => (
                    "404 Not Found",
                    serde_json::json!({
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": format!("{name} not found"), "reason": "NotFound", "code": 404,
                    })
                    .to_string(),
                ),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, requested)
}

/// A kubeconfig naming `server`, with no credentials (the stand-in asks for none).
fn kubeconfig(dir: &Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
users:
- name: test
  user: {{}}
"
        ),
    )
    .expect("write kubeconfig");
    path.display().to_string()
}

/// The operator's ConfigMap, mounted: server.properties and two node files.
fn config_dir(dir: &Path) -> String {
    let config = dir.join("config");
    fs::create_dir(&config).expect("mkdir");
    fs::write(
        config.join("server.properties"),
        "admin.http.port=8080\nnum.partitions=6\n",
    )
    .expect("write");
    for id in 0..2 {
        fs::write(
            config.join(format!("node-{id}.properties")),
            format!("node.id={id}\nprocess.roles=broker,controller\n"),
        )
        .expect("write");
    }
    config.display().to_string()
}

fn kube_init(
    dir: &Path,
    pod: &str,
    rack: Option<(&str, &str)>,
    kubeconfig: &str,
) -> std::process::Output {
    let mut args = vec![
        "kube-init".to_string(),
        format!("--config-dir={}", dir.join("config").display()),
        format!("--out={}", dir.join("run/server.properties").display()),
        format!("--pod-name={pod}"),
    ];
    if let Some((node, label)) = rack {
        args.push(format!("--node-name={node}"));
        args.push(format!("--rack-label={label}"));
    }
    run_to_exit(&args, dir, &[("KUBECONFIG", kubeconfig)])
}

const ZONE: &str = "topology.kubernetes.io/zone";

#[test]
fn writes_the_pods_properties_with_its_nodes_rack() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, requested) = fake_api_server(BTreeMap::from([
        ("worker-a", BTreeMap::from([(ZONE, "zone-a")])),
        (
            "worker-b",
            BTreeMap::from([(ZONE, "zone-b"), ("other", "x")]),
        ),
    ]));
    let kubeconfig = kubeconfig(dir.path(), &url);
    config_dir(dir.path());
    fs::create_dir(dir.path().join("run")).expect("mkdir");

    let output = kube_init(
        dir.path(),
        "demo-broker-1",
        Some(("worker-b", ZONE)),
        &kubeconfig,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let written = fs::read_to_string(dir.path().join("run/server.properties")).expect("written");
    let lines: Vec<&str> = written.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "admin.http.port=8080",
            "num.partitions=6",
            "node.id=1",
            "process.roles=broker,controller",
            "broker.rack=zone-b",
        ]
    );
    let paths = requested.lock().expect("lock").clone();
    assert!(
        paths
            .iter()
            .all(|p| p.starts_with("/api/v1/nodes/worker-b"))
            && !paths.is_empty(),
        "{paths:?}"
    );

    // Without --rack-label the API is not asked, and the output is replaced whole.
    let output = kube_init(dir.path(), "demo-broker-0", None, "/nonexistent");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = fs::read_to_string(dir.path().join("run/server.properties")).expect("written");
    assert!(
        written.contains("node.id=0\n") && !written.contains("broker.rack"),
        "{written}"
    );
}

#[test]
fn failures_name_what_to_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, _) = fake_api_server(BTreeMap::from([("bare-node", BTreeMap::new())]));
    let kubeconfig = kubeconfig(dir.path(), &url);
    config_dir(dir.path());
    fs::create_dir(dir.path().join("run")).expect("mkdir");
    let out = dir.path().join("run/server.properties");

    for (pod, rack, expected) in [
        (
            "demo-broker-0",
            Some(("bare-node", ZONE)),
            format!("node `bare-node` has no label `{ZONE}`"),
        ),
        (
            "demo-broker-0",
            Some(("gone-node", ZONE)),
            "failed to read node `gone-node`".to_string(),
        ),
        (
            "demo-broker",
            None,
            "pod name `demo-broker` does not end in `-<ordinal>`".to_string(),
        ),
        ("demo-broker-7", None, "node-7.properties".to_string()),
    ] {
        let output = kube_init(dir.path(), pod, rack, &kubeconfig);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{pod} {rack:?} succeeded");
        assert!(stderr.contains(&expected), "{pod} {rack:?}: {stderr}");
        assert!(!out.exists(), "{pod} {rack:?} wrote {}", out.display());
    }
}
