//! `millrace-operator`: runs the controllers (`run`, the default) or prints the objects the model
//! makes from custom resources in files (`render`, for offline checks and curious users).

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use futures::future::join_all;
use kube::{runtime::events::Reporter, Client, ResourceExt};
use millrace_crds::{Cluster, MirrorMaker};
use millrace_operator::{
    http::{self, Metrics},
    kafka::KafkaAdmins,
    leader::LeaderElector,
    model::{bootstrap_servers_for, ClusterModel, Defaults, MirrorMakerModel, Observed},
    reconcile::{self, topic::run_topic_controller, Context},
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(version, about = "The Kubernetes operator for Millrace clusters")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (the default).
    Run,
    /// Print, as YAML, the objects the operator would create for the Clusters and MirrorMakers in
    /// FILES (a MirrorMaker's `cluster` endpoints are looked up among the Clusters in FILES).
    Render {
        /// YAML files with custom resources.
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    namespaces: Vec<String>,
    /// Address of the /metrics and /healthz endpoint.
    #[arg(
        long,
        env = "MILLRACE_OPERATOR_HTTP_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    http_addr: SocketAddr,
    /// Run without leader election (only with a single replica).
    #[arg(long, env = "MILLRACE_OPERATOR_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "millrace-system")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "MILLRACE_OPERATOR_LEASE",
        default_value = "millrace-operator"
    )]
    lease_name: String,
    /// This replica's identity in the Lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Image repository for brokers and mirrors; the tag is the resource's version.
    #[arg(long, env = "MILLRACE_IMAGE_REPOSITORY", default_value = "millrace")]
    image_repository: String,
    /// Version used when a resource names neither version nor image.
    #[arg(long, env = "MILLRACE_DEFAULT_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    default_version: String,
    /// How often a healthy Topic is compared with its Kafka topic again, in seconds; this is
    /// how changes made with other tools (drift) are found and undone.
    #[arg(
        long,
        env = "MILLRACE_OPERATOR_TOPIC_RESYNC_SECONDS",
        default_value_t = 120
    )]
    topic_resync_seconds: u64,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `millrace_operator=debug`.
    #[arg(long, env = "MILLRACE_OPERATOR_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.run.log).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    let defaults = Defaults {
        image_repository: cli.run.image_repository.clone(),
        version: cli.run.default_version.clone(),
    };
    match cli.command {
        Some(Command::Render { files }) => render(&files, &defaults),
        Some(Command::Run) | None => run(cli.run, defaults).await,
    }
}

/// A future that completes once `stop` turns true. `graceful_shutdown_on` needs one per
/// controller, so each gets its own receiver.
async fn stopped(mut stop: watch::Receiver<bool>) {
    // An Err means the sender is gone, which also means: stop.
    let _ = stop.wait_for(|s| *s).await;
}

async fn run(args: RunArgs, defaults: Defaults) -> Result<()> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or kubeconfig)")?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let http = tokio::spawn(http::serve(
        args.http_addr,
        metrics.clone(),
        stopped(stop_rx.clone()),
    ));

    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "millrace-operator".into());
    let elector = (!args.no_leader_election).then(|| {
        LeaderElector::new(
            client.clone(),
            &args.lease_namespace,
            &args.lease_name,
            &identity,
        )
    });
    if let Some(e) = &elector {
        tokio::select! {
            () = e.acquire() => {}
            () = stopped(stop_rx.clone()) => return Ok(()),
        }
    }
    metrics.set_leader(true);

    let reporter = Reporter {
        controller: "millrace-operator".into(),
        instance: Some(identity),
    };
    let admins = KafkaAdmins::default();
    let mut ctx = Context::new(client.clone(), defaults, reporter.clone(), metrics.clone());
    ctx.kafka = Some(admins.clone());
    let ctx = Arc::new(ctx);
    let namespaces: Vec<Option<String>> = if args.namespaces.iter().all(String::is_empty) {
        vec![None]
    } else {
        args.namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .map(Some)
            .collect()
    };
    info!(namespaces = ?namespaces, "starting controllers");
    let resync = Duration::from_secs(args.topic_resync_seconds.max(1));
    let controllers = join_all(namespaces.into_iter().flat_map(|ns| {
        let clusters = reconcile::run_cluster_controller(
            client.clone(),
            ns.clone(),
            ctx.clone(),
            stopped(stop_rx.clone()),
        );
        let topics = run_topic_controller(
            client.clone(),
            ns,
            admins.clone(),
            reporter.clone(),
            metrics.clone(),
            resync,
            stopped(stop_rx.clone()),
        );
        [
            futures::FutureExt::boxed(clusters),
            futures::FutureExt::boxed(topics),
        ]
    }));

    let lost = async {
        match &elector {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = controllers => Ok(()),
        () = lost => Err(anyhow::anyhow!("lost leadership; exiting so a fresh process can compete again")),
    };
    metrics.set_leader(false);
    if let Some(e) = &elector {
        e.release().await;
    }
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "metrics endpoint failed"),
        Err(e) => warn!(error = %e, "metrics endpoint task failed"),
    }
    result
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn render(files: &[PathBuf], defaults: &Defaults) -> Result<()> {
    use serde::Deserialize;
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut mirrors: Vec<MirrorMaker> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_json::Value::deserialize(doc)
                .with_context(|| format!("parsing {}", f.display()))?;
            let kind = v
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            match kind.as_str() {
                "Cluster" => clusters.push(with_uid(serde_json::from_value(v)?)),
                "MirrorMaker" => mirrors.push(with_uid(serde_json::from_value(v)?)),
                _ => {}
            }
        }
    }
    let mut out: Vec<serde_json::Value> = Vec::new();
    for c in &clusters {
        let m = ClusterModel::from_crd(c, defaults, &Observed::default())
            .with_context(|| format!("Cluster {}", c.name_any()))?;
        out.push(serde_json::to_value(m.desired_service_account())?);
        out.extend(
            m.desired_cluster_role_binding()
                .map(serde_json::to_value)
                .transpose()?,
        );
        out.push(serde_json::to_value(m.desired_config_map())?);
        out.push(serde_json::to_value(m.desired_headless_service())?);
        out.extend(
            m.desired_bootstrap_service()
                .map(serde_json::to_value)
                .transpose()?,
        );
        for s in m.desired_external_services() {
            out.push(serde_json::to_value(s)?);
        }
        out.push(serde_json::to_value(m.desired_pod_disruption_budget())?);
        out.push(serde_json::to_value(m.desired_stateful_set())?);
    }
    for mm in &mirrors {
        let resolve = |ep: &millrace_crds::mirror_maker::MirrorEndpoint| -> Result<String> {
            if let Some(b) = &ep.bootstrap_servers {
                return Ok(b.clone());
            }
            let wanted = ep.cluster.clone().unwrap_or_default();
            let Some(c) = clusters
                .iter()
                .find(|c| c.name_any() == wanted && c.namespace() == mm.namespace())
            else {
                bail!(
                    "MirrorMaker {}: Cluster {wanted} is not in the input files",
                    mm.name_any()
                );
            };
            Ok(bootstrap_servers_for(c, ep.listener.as_deref())?)
        };
        let m = MirrorMakerModel::from_crd(
            mm,
            defaults,
            resolve(&mm.spec.source)?,
            resolve(&mm.spec.target)?,
        )?;
        out.push(serde_json::to_value(m.desired_config_map())?);
        out.push(serde_json::to_value(m.desired_deployment())?);
    }
    for v in out {
        print!("---\n{}", serde_yaml::to_string(&v)?);
    }
    Ok(())
}

/// Objects from files have no uid; the owner references need one. A fixed placeholder keeps the
/// output stable.
fn with_uid<K: kube::Resource>(mut k: K) -> K {
    let meta = k.meta_mut();
    meta.uid
        .get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    k
}
