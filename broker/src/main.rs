//! The `millrace` command: the broker (`serve`, the default), the tools Kafka users expect
//! (`topics`, `configs`, `groups`, `produce`, `consume`, `dump-log`, `perf`; see `tools`) and a
//! broker pod's init step (`kube-init`).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use millrace::{
    broker::Broker,
    config::{BrokerConfig, Properties},
    kube_init, tools,
};

/// mimalloc keeps freed memory for reuse: request and fetch buffers of up to a few MiB are
/// allocated per request, and with glibc's malloc each one was a fresh mmap whose pages faulted
/// in and were zeroed — a quarter of the broker's CPU time under a produce load (perf, 1 KiB
/// records).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "millrace",
    version,
    about = "A Kafka-compatible streaming broker, and the tools to run one",
    long_about = None,
    after_help = "Every tool takes --bootstrap-server HOST:PORT (default 127.0.0.1:9092) and speaks the Kafka protocol, so it works with any Kafka-compatible cluster. `millrace <tool> --help` shows its options."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    Serve(ServeArgs),
    /// Create, list, describe, alter (add partitions) and delete topics.
    Topics(tools::topics::TopicsArgs),
    /// Describe, alter and delete dynamic configs of topics and brokers.
    Configs(tools::configs::ConfigsArgs),
    /// List, describe and delete consumer groups; reset, export and import their offsets.
    Groups(tools::groups::GroupsArgs),
    /// Console producer: send lines from stdin as records.
    Produce(tools::produce::ProduceArgs),
    /// Console consumer: print records to stdout.
    Consume(tools::consume::ConsumeArgs),
    /// Decode log segment, offset index and time index files offline.
    DumpLog(tools::dump_log::DumpLogArgs),
    /// Measure produce or consume throughput and latency.
    Perf(tools::perf::PerfArgs),
    /// A broker pod's init step: write its properties file from the operator's ConfigMap
    /// (server.properties + node-<ordinal>.properties) and, with --rack-label, its node's label
    /// as broker.rack.
    KubeInit(kube_init::KubeInitArgs),
}

#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// A Kafka-style properties file (`key=value` lines).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Set one property, overriding the file and the environment: `--override log.dirs=/var/lib/millrace`.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    // The broker logs at info; a tool only says something when it is worth a warning, so its
    // stdout and stderr stay what the user asked for.
    let default_level = match command {
        // openraft narrates every vote and append at info; its warnings are what matter.
        Command::Serve(_) => "info,openraft=warn",
        // An init container's log is read when the pod does not start: say what was written.
        Command::KubeInit(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MILLRACE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match command {
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // The same report `main() -> anyhow::Result` would print.
                eprintln!("Error: {e:?}");
                ExitCode::FAILURE
            }
        },
        Command::Topics(args) => tools::run(tools::topics::run(args)),
        Command::Configs(args) => tools::run(tools::configs::run(args)),
        Command::Groups(args) => tools::run(tools::groups::run(args)),
        Command::Produce(args) => tools::run(tools::produce::run(args)),
        Command::Consume(args) => tools::run(tools::consume::run(args)),
        Command::DumpLog(args) => tools::run(tools::dump_log::run(args)),
        Command::Perf(args) => tools::run(tools::perf::run(args)),
        Command::KubeInit(args) => match kube_init_main(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:?}");
                ExitCode::FAILURE
            }
        },
    }
}

fn kube_init_main(args: &kube_init::KubeInitArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let written = runtime.block_on(kube_init::run(args))?;
    tracing::info!(
        out = %args.out.display(),
        lines = written.lines().count(),
        rack = written.lines().rev().find_map(|l| l.strip_prefix("broker.rack=")),
        "wrote the broker's properties"
    );
    Ok(())
}

/// Resolves the configuration: file, then `MILLRACE_*` environment, then `--override` flags.
fn load_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut props = Properties::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read config file {}", path.display()))?;
        props.merge(&Properties::parse_file_text(
            &path.display().to_string(),
            &text,
        )?);
    }
    props.merge(&Properties::from_env(
        std::env::vars().filter(|(k, _)| k != "MILLRACE_LOG"),
    )?);
    for o in &args.overrides {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--override `{o}` is not KEY=VALUE"))?;
        let mut one = Properties::default();
        one.set(k.trim(), v)?;
        props.merge(&one);
    }
    Ok(BrokerConfig::from_props(props)?)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    tracing::info!(node_id = config.node_id, log_dirs = ?config.log_dirs, "starting millrace");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let broker = Broker::open(config)
            .await
            .context("failed to open the broker's data")?;
        millrace::server::run(broker).await
    })
}
