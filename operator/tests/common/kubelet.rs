//! A kubelet played by the test (DESIGN.md §3, layer 5): the v1.20 control plane has no
//! scheduler, kubelet or container runtime, so this loop does their part for the pods of the
//! two images we ship, with real processes:
//! - a pending pod is bound to a fake node (`pods/binding`, as the scheduler does);
//! - a bound pod is started: its volumes become directories (a ConfigMap's keys as files, an
//!   emptyDir, and a claim's directory that outlives the pod, like a PersistentVolume), its
//!   init container and then its main container run as the `millrace` or `millrace-operator`
//!   binary with the pod's args and env (`$(VAR)` and `fieldRef` resolved), with a token of the
//!   pod's ServiceAccount as its Kubernetes credentials;
//! - the pod's network namespace is played by its own loopback address: `0.0.0.0` in what the
//!   pod is told to listen on becomes that address, and every process sees a hosts file that
//!   resolves pod and Service DNS names to pod addresses (a private mount namespace per process,
//!   `unshare -m`, so the machine's /etc/hosts is untouched);
//! - the readiness probe is polled and written to the pod's status, which the StatefulSet
//!   controller and the operator read;
//! - a deleted pod's process gets SIGTERM (SIGKILL after the grace period), then the pod is
//!   removed; a process that exits is restarted, as `restartPolicy: Always` does.

use super::DEADLINE;
use anyhow::{bail, Context as _, Result};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Container, Node, Pod},
    jiff::Timestamp,
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    Api, Client, ResourceExt,
};
use serde_json::json;
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::{Child, Command},
    sync::watch,
};

/// What the kubelet needs to run pods.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Where pods' directories and logs go.
    pub root: PathBuf,
    /// The admin kubeconfig (its token is replaced by ServiceAccount tokens).
    pub admin_kubeconfig: PathBuf,
    /// kubectl, to mint ServiceAccount tokens.
    pub kubectl: PathBuf,
    /// The `millrace` binary (image `millrace:*`).
    pub millrace: PathBuf,
    /// The `millrace-operator` binary (image `millrace-operator:*`).
    pub operator: PathBuf,
    /// Each pod's address, by `namespace/name` (or a prefix of it, for pods with generated
    /// names), and the DNS names that resolve to it.
    pub addresses: BTreeMap<String, (String, Vec<String>)>,
    /// Extra environment for every operator container (test-only settings).
    pub operator_env: Vec<(String, String)>,
    /// The fake nodes: name and zone label.
    pub nodes: Vec<(String, String)>,
}

impl Setup {
    fn hosts_file(&self) -> PathBuf {
        self.root.join("hosts")
    }

    /// The address of pod `namespace/name`, if this test plays it.
    fn address(&self, key: &str) -> Option<String> {
        self.addresses
            .iter()
            .filter(|(k, _)| key.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, (ip, _))| ip.clone())
    }

    /// Run `program args` with the pod network's hosts file (and nothing of the test's
    /// environment but `env`).
    pub fn command(&self, program: &Path, args: &[String], env: &[(String, String)]) -> Command {
        let mut c = Command::new("unshare");
        c.args([
            "-m",
            "--",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        ])
        .arg(self.hosts_file())
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true);
        c
    }
}

/// The processes the kubelet runs: `namespace/name` → pid.
pub type Pids = std::sync::Arc<std::sync::Mutex<BTreeMap<String, u32>>>;

/// A running pod.
struct Running {
    namespace: String,
    name: String,
    child: Child,
    ip: String,
    ready: Option<bool>,
    restarts: i32,
    probe: Option<(String, u16)>,
    container: String,
    image: String,
}

/// Start the kubelet loop; it runs until `stop` turns true, then stops every process it
/// started. Returns the task and the live view of its processes.
pub async fn start(
    client: Client,
    setup: Setup,
    stop: watch::Receiver<bool>,
) -> Result<(tokio::task::JoinHandle<Result<()>>, Pids)> {
    std::fs::create_dir_all(&setup.root)?;
    let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts.push_str("\n# pods and Services of the kubelet played by the test\n");
    for (ip, names) in setup.addresses.values() {
        hosts.push_str(&format!("{ip} {}\n", names.join(" ")));
    }
    std::fs::write(setup.hosts_file(), hosts)?;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, zone) in &setup.nodes {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": zone,
            }},
        }))?;
        nodes.create(&PostParams::default(), &node).await?;
    }
    let pids = Pids::default();
    Ok((tokio::spawn(run(client, setup, stop, pids.clone())), pids))
}

async fn run(
    client: Client,
    setup: Setup,
    mut stop: watch::Receiver<bool>,
    pids: Pids,
) -> Result<()> {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut failures: HashMap<String, (Instant, String)> = HashMap::new();
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        if let Err(e) = pass(&client, &setup, &mut running, &mut failures).await {
            eprintln!("kubelet: pass failed: {e:#}");
        }
        *pids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = running
            .values()
            .filter_map(|r| Some((format!("{}/{}", r.namespace, r.name), r.child.id()?)))
            .collect();
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    };
    for (_, r) in running.drain() {
        terminate(r).await;
    }
    pids.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    result
}

/// Whether process `pid` still exists.
pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn pass(
    client: &Client,
    setup: &Setup,
    running: &mut HashMap<String, Running>,
    failures: &mut HashMap<String, (Instant, String)>,
) -> Result<()> {
    let all: Api<Pod> = Api::all(client.clone());
    let pods = all.list(&ListParams::default()).await?.items;
    let present: Vec<String> = pods.iter().filter_map(|p| p.uid()).collect();
    // Pods that are gone: their processes stop.
    let gone: Vec<String> = running
        .keys()
        .filter(|uid| !present.contains(uid))
        .cloned()
        .collect();
    for uid in gone {
        if let Some(r) = running.remove(&uid) {
            terminate(r).await;
        }
    }
    for pod in pods {
        let (Some(uid), Some(ns)) = (pod.uid(), pod.namespace()) else {
            continue;
        };
        let name = pod.name_any();
        let key = format!("{ns}/{name}");
        let Some(ip) = setup.address(&key) else {
            continue; // not a pod this test plays
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(r) = running.remove(&uid) {
                terminate(r).await;
            }
            let _ = api
                .delete(
                    &name,
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..DeleteParams::default()
                    },
                )
                .await;
            continue;
        }
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let Some(node) = node else {
            bind(&api, &name, setup).await?;
            continue;
        };
        match running.get_mut(&uid) {
            None => {
                if failures
                    .get(&uid)
                    .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(2))
                {
                    continue;
                }
                match start_pod(client, setup, &pod, &node, &ip).await {
                    Ok(r) => {
                        failures.remove(&uid);
                        running.insert(uid, r);
                    }
                    Err(e) => {
                        eprintln!("kubelet: {key} did not start: {e:#}");
                        failures.insert(uid, (Instant::now(), format!("{e:#}")));
                    }
                }
            }
            Some(r) => {
                if let Some(status) = r.child.try_wait()? {
                    eprintln!("kubelet: {key} exited ({status}); restarting");
                    let restarts = r.restarts + 1;
                    running.remove(&uid);
                    if let Ok(mut r) = start_pod(client, setup, &pod, &node, &ip).await {
                        r.restarts = restarts;
                        running.insert(uid, r);
                    }
                    continue;
                }
                let ready = match &r.probe {
                    Some((path, port)) => probe(&r.ip, *port, path).await,
                    None => true,
                };
                if r.ready != Some(ready) {
                    write_status(&api, r, ready).await?;
                    r.ready = Some(ready);
                }
            }
        }
    }
    Ok(())
}

async fn bind(api: &Api<Pod>, name: &str, setup: &Setup) -> Result<()> {
    // Brokers spread over the zones by ordinal; anything else goes to the first node.
    let ordinal: usize = name
        .rsplit('-')
        .next()
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    let node = &setup.nodes[ordinal % setup.nodes.len()].0;
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    api.create_subresource::<serde_json::Value, serde_json::Value>(
        "binding",
        name,
        &PostParams::default(),
        &binding,
    )
    .await
    .with_context(|| format!("binding {name} to {node}"))?;
    Ok(())
}

/// A kubeconfig whose user is the ServiceAccount `sa` of `ns`.
fn kubeconfig_for(setup: &Setup, ns: &str, sa: &str) -> Result<PathBuf> {
    let out = std::process::Command::new(&setup.kubectl)
        .arg("--kubeconfig")
        .arg(&setup.admin_kubeconfig)
        .args(["-n", ns, "create", "token", sa])
        .output()?;
    if !out.status.success() {
        bail!(
            "kubectl create token {sa}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let token = String::from_utf8(out.stdout)?;
    let admin = std::fs::read_to_string(&setup.admin_kubeconfig)?;
    let path = setup.root.join(format!("kubeconfig-{ns}-{sa}"));
    std::fs::write(
        &path,
        admin.replace(
            "token: test-admin-token",
            &format!("token: {}", token.trim()),
        ),
    )?;
    Ok(path)
}

/// `$(VAR)` references in `s`, from `env`.
fn expand(s: &str, env: &[(String, String)]) -> String {
    env.iter()
        .fold(s.to_string(), |s, (k, v)| s.replace(&format!("$({k})"), v))
}

/// Replace each mount path in `s` by its directory (longest first, so nested mounts win).
fn remap(s: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut s = s.to_string();
    for (path, dir) in mounts {
        s = s.replace(path.as_str(), &dir.to_string_lossy());
    }
    s
}

/// The container's env with `fieldRef`s resolved.
fn env_of(c: &Container, pod: &Pod, node: &str) -> Vec<(String, String)> {
    c.env
        .iter()
        .flatten()
        .filter_map(|e| {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => match from.field_ref.as_ref()?.field_path.as_str() {
                    "metadata.name" => pod.name_any(),
                    "metadata.namespace" => pod.namespace()?,
                    "spec.nodeName" => node.to_string(),
                    _ => return None,
                },
                _ => return None,
            };
            Some((e.name.clone(), value))
        })
        .collect()
}

/// Each volume mount of `c` as (mount path, directory), longest path first.
fn mounts_of(c: &Container, volumes: &BTreeMap<String, PathBuf>) -> Vec<(String, PathBuf)> {
    let mut m: Vec<(String, PathBuf)> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|vm| Some((vm.mount_path.clone(), volumes.get(&vm.name)?.clone())))
        .collect();
    m.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    m
}

async fn start_pod(
    client: &Client,
    setup: &Setup,
    pod: &Pod,
    node: &str,
    ip: &str,
) -> Result<Running> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let spec = pod.spec.as_ref().context("pod without spec")?;
    let dir = setup.root.join("pods").join(&ns).join(&name);
    std::fs::create_dir_all(&dir)?;

    // Volumes.
    let mut volumes: BTreeMap<String, PathBuf> = BTreeMap::new();
    for v in spec.volumes.iter().flatten() {
        let path = dir.join("volumes").join(&v.name);
        if let Some(cm) = &v.config_map {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            let data = cms.get(&cm.name).await?.data.unwrap_or_default();
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path)?;
            for (k, text) in data {
                std::fs::write(path.join(k), text)?;
            }
        } else if let Some(claim) = &v.persistent_volume_claim {
            // The claim's directory outlives the pod, as a bound volume does.
            let path = setup.root.join("volumes").join(&ns).join(&claim.claim_name);
            std::fs::create_dir_all(&path)?;
            volumes.insert(v.name.clone(), path);
            continue;
        } else {
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path)?;
        }
        volumes.insert(v.name.clone(), path);
    }

    let sa = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let kubeconfig = kubeconfig_for(setup, &ns, &sa)?;
    let log_path = setup.root.join(format!("{ns}-{name}.log"));
    let log = || -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?)
    };

    let program = |c: &Container| -> Result<PathBuf> {
        let image = c.image.clone().unwrap_or_default();
        if image.starts_with("millrace-operator:") {
            Ok(setup.operator.clone())
        } else if image.starts_with("millrace:") {
            Ok(setup.millrace.clone())
        } else {
            bail!("no binary plays image {image}")
        }
    };
    let base_env = |c: &Container| -> Vec<(String, String)> {
        let mut env = env_of(c, pod, node);
        env.push(("KUBECONFIG".into(), kubeconfig.to_string_lossy().into()));
        env.push(("HOME".into(), dir.to_string_lossy().into()));
        env
    };

    // Init containers run to completion, in order.
    for c in spec.init_containers.iter().flatten() {
        let env = base_env(c);
        let mounts = mounts_of(c, &volumes);
        let args: Vec<String> = c
            .args
            .iter()
            .flatten()
            .map(|a| remap(&expand(a, &env), &mounts))
            .collect();
        let status = setup
            .command(&program(c)?, &args, &env)
            .stdout(log()?)
            .stderr(log()?)
            .status()
            .await?;
        if !status.success() {
            bail!(
                "init container {} failed ({status}); see {}",
                c.name,
                log_path.display()
            );
        }
    }
    // What the init step wrote is in the pod's filesystem: map its paths and addresses too.
    for c in spec.init_containers.iter().flatten() {
        for (_, d) in mounts_of(c, &volumes) {
            if d.starts_with(&dir) && d.join("server.properties").exists() {
                let f = d.join("server.properties");
                let main = spec.containers.first().context("no container")?;
                let text = std::fs::read_to_string(&f)?;
                let text = remap(&text, &mounts_of(main, &volumes)).replace("0.0.0.0", ip);
                std::fs::write(&f, text)?;
            }
        }
    }

    let c = spec.containers.first().context("no container")?;
    let mut env: Vec<(String, String)> = base_env(c)
        .into_iter()
        .map(|(k, v)| (k, v.replace("0.0.0.0", ip)))
        .collect();
    let mut args: Vec<String> = {
        let mounts = mounts_of(c, &volumes);
        c.args
            .iter()
            .flatten()
            .map(|a| remap(&expand(a, &env), &mounts))
            .collect()
    };
    let probe = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .map(|h| {
            let port = match &h.port {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(named) => c
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(named.as_str()))
                    .map_or(0, |p| p.container_port),
            };
            (
                h.path.clone().unwrap_or_else(|| "/".into()),
                u16::try_from(port).unwrap_or(0),
            )
        });
    let image = c.image.clone().unwrap_or_default();
    if image.starts_with("millrace-operator:") {
        env.extend(setup.operator_env.iter().cloned());
    } else if let Some((_, port)) = &probe {
        // The broker's admin port listens on every interface of its pod: here, its address.
        args.push("--override".into());
        args.push(format!("admin.listener={ip}:{port}"));
    }
    let child = setup
        .command(&program(c)?, &args, &env)
        .stdout(log()?)
        .stderr(log()?)
        .stdin(Stdio::null())
        .spawn()?;
    let r = Running {
        namespace: ns.clone(),
        name: name.clone(),
        child,
        ip: ip.to_string(),
        ready: None,
        restarts: 0,
        probe,
        container: c.name.clone(),
        image,
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    write_status(&api, &r, false).await?;
    Ok(r)
}

async fn write_status(api: &Api<Pod>, r: &Running, ready: bool) -> Result<()> {
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let ready_s = if ready { "True" } else { "False" };
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": r.ip,
        "podIPs": [{"ip": r.ip}],
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": ready_s, "lastTransitionTime": now},
            {"type": "Ready", "status": ready_s, "lastTransitionTime": now},
        ],
        "containerStatuses": [{
            "name": r.container, "image": r.image, "imageID": "", "ready": ready,
            "restartCount": r.restarts, "started": true,
            "state": {"running": {"startedAt": now}},
        }],
    }});
    api.patch_status(&r.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("status of {}/{}", r.namespace, r.name))?;
    Ok(())
}

/// An HTTP GET of `path` answered 200.
async fn probe(ip: &str, port: u16, path: &str) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.ends_with(b" 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// SIGTERM, then SIGKILL if the process has not exited within the deadline.
async fn terminate(mut r: Running) {
    if let Some(pid) = r.child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(DEADLINE, r.child.wait())
        .await
        .is_err()
    {
        let _ = r.child.kill().await;
    }
}
