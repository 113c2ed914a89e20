//! The `millrace` command: the broker (`serve`, the default) and, over time, the tools Kafka
//! users expect.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use millrace::{
    broker::Broker,
    config::{BrokerConfig, Properties},
};

#[derive(Debug, Parser)]
#[command(name = "millrace", version, about = "A Kafka-compatible streaming broker", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    Serve(ServeArgs),
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MILLRACE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args),
    }
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
    let broker = Broker::open(config).context("failed to open the broker's data")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(millrace::server::run(broker))
}
