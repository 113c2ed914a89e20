//! What the control-plane tests share: starting the v1.20 control plane from
//! `../shared/k8s-testenv`, clients (admin, or with a token of the chart's ServiceAccount), and
//! polling with a deadline.

#![allow(dead_code)] // each test binary uses its own subset

pub mod kubelet;

use anyhow::{bail, Context as _, Result};
use kube::{
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};
use std::{
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

pub const NS: &str = "e2e";
/// Every wait's deadline; generous for a loaded 2-core machine, it only turns a hang into a failure.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The control plane's binaries, the k8s-testenv scripts and the tool directory (helm, kubectl).
pub fn locate() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let cache = std::env::var_os("MILLRACE_K8S_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/millrace-k8s")))
        .ok_or("no HOME or MILLRACE_K8S_CACHE")?;
    let bin = std::env::var_os("MILLRACE_CONTROL_PLANE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("cp-1.20/bin"));
    let testenv = std::env::var_os("MILLRACE_K8S_TESTENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/k8s-testenv"));
    let tools = cache.join("bin");
    for p in [
        bin.join("kube-apiserver"),
        bin.join("kube-controller-manager"),
        testenv.join("start-control-plane-1.20.sh"),
        tools.join("helm"),
        tools.join("kubectl"),
    ] {
        if !p.exists() {
            return Err(format!(
                "{} not found (run operator/tests/setup-k8s-testenv.sh --with-control-plane-1.20)",
                p.display()
            ));
        }
    }
    Ok((bin, testenv, tools))
}

pub fn free_ports() -> Result<(u16, u16)> {
    let api = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    for _ in 0..50 {
        let ep = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if ep < u16::MAX
            && ep != api
            && ep + 1 != api
            && TcpListener::bind(("127.0.0.1", ep + 1)).is_ok()
        {
            return Ok((api, ep));
        }
    }
    bail!("no free port pair for etcd")
}

/// The running control plane; stopped by its pid files when dropped, even when the test fails.
pub struct ControlPlane {
    pub run_dir: PathBuf,
    pub testenv: PathBuf,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(self.testenv.join("stop-control-plane.sh"))
            .arg(&self.run_dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

pub async fn start() -> Result<Option<(ControlPlane, Client, PathBuf)>> {
    let (bin, testenv, tools) = match locate() {
        Ok(found) => found,
        Err(why) => {
            eprintln!("SKIPPED control_plane: {why}");
            return Ok(None);
        }
    };
    let (port, etcd_port) = free_ports()?;
    let run_dir =
        std::env::temp_dir().join(format!("millrace-cp120-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let cp = ControlPlane {
        run_dir: run_dir.clone(),
        testenv: testenv.clone(),
    };
    let out = Command::new(testenv.join("start-control-plane-1.20.sh"))
        .arg(&bin)
        .arg(&run_dir)
        .arg(port.to_string())
        .arg(etcd_port.to_string())
        .output()
        .context("starting the control plane")?;
    if !out.status.success() {
        bail!(
            "control plane did not start: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let client = client_from(&std::fs::read_to_string(run_dir.join("kubeconfig"))?).await?;
    Ok(Some((cp, client, tools)))
}

pub async fn client_from(kubeconfig: &str) -> Result<Client> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Install the chart's ServiceAccount and RBAC (watching only [`NS`]) with kubectl, and return a
/// client that authenticates with a token of that ServiceAccount.
pub async fn operator_client(cp: &ControlPlane, tools: &Path) -> Result<Client> {
    let kubeconfig = cp.run_dir.join("kubeconfig");
    let run = |cmd: &mut Command| -> Result<String> {
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    };
    let rendered = run(Command::new(tools.join("helm"))
        .args(["template", "millrace"])
        .arg(workspace_root().join("charts/millrace"))
        .args([
            "--namespace",
            "millrace-system",
            "--set",
            &format!("watchNamespaces={{{NS}}}"),
        ])
        .args([
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ]))?;
    let manifest = cp.run_dir.join("operator-rbac.yaml");
    std::fs::write(&manifest, rendered)?;
    run(Command::new(tools.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["create", "namespace", "millrace-system"]))?;
    run(Command::new(tools.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("apply")
        .arg("-f")
        .arg(&manifest))?;
    let token = run(Command::new(tools.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "-n",
            "millrace-system",
            "create",
            "token",
            "millrace-operator",
        ]))?;
    let admin = std::fs::read_to_string(&kubeconfig)?;
    if !admin.contains("token: test-admin-token") {
        bail!("unexpected kubeconfig from start-control-plane-1.20.sh");
    }
    client_from(&admin.replace(
        "token: test-admin-token",
        &format!("token: {}", token.trim()),
    ))
    .await
}

/// Poll `check` until it returns `Some`, or fail after [`DEADLINE`] saying what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    eventually_within(DEADLINE, what, check).await
}

/// [`eventually`] with its own deadline.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
