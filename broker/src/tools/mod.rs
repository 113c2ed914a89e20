//! The command-line tools Kafka users reach for, as `millrace` subcommands. Each speaks only
//! the Kafka protocol (through `millrace-client`), so each works against any Kafka-compatible
//! cluster, not only Millrace.
//!
//! # Layout
//! ```text
//! mod.rs       shared flags (--bootstrap-server, --output), connecting, tables, error reports
//! topics.rs    topics create | list | describe | alter | delete
//! configs.rs   configs describe | alter | delete (topics and brokers)
//! groups.rs    groups list | describe | delete | reset-offsets | export | import
//! produce.rs   console producer (stdin lines → records)
//! consume.rs   console consumer (records → stdout)
//! dump_log.rs  dump-log: decode .log/.index/.timeindex files offline
//! perf.rs      perf produce | perf consume: throughput and latency percentiles
//! ```
//!
//! # Conventions
//! Human output goes to stdout in Kafka's own shapes (so habits and scripts carry over);
//! `--output json` prints one JSON document (or one per record, for `consume`) instead.
//! Errors go to stderr as the Kafka error name, what was being done, and one sentence on what
//! to do; any error makes the exit code non-zero, including a failure of one item among many.

/// `println!` for tool output: a closed stdout (`millrace topics list | head -1`) ends the tool
/// quietly, where `println!` would panic.
macro_rules! outln {
    () => {
        $crate::tools::stdout_write(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::tools::stdout_write(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

pub mod configs;
pub mod consume;
pub mod dump_log;
pub mod groups;
pub mod perf;
pub mod produce;
pub mod topics;

use std::{future::Future, path::PathBuf, process::ExitCode};

use anyhow::Context;
use millrace_client::{Client, ClientConfig};

/// How to reach the cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// A broker's Kafka listener to start from (`host:port`, comma-separated for several).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// A properties file of client settings (`client.id`, `request.timeout.ms`, ...).
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<PathBuf>,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Text for people, shaped like Kafka's own tools print it.
    Human,
    /// JSON for scripts.
    Json,
}

/// The `--output` flag.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

impl OutputArgs {
    /// Whether JSON was asked for.
    pub fn json(&self) -> bool {
        self.output == Output::Json
    }
}

/// A failure already reported on stderr (item by item); only the exit code is left to set.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// Runs a tool on a fresh runtime; reports its error on stderr and turns it into the exit code.
pub fn run<F>(tool: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tool) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error: the whole chain, then what to do when the client knows.
pub fn report(e: &anyhow::Error) {
    if let Some(reported) = e.downcast_ref::<Reported>() {
        eprintln!("Error: {reported}");
        return;
    }
    eprintln!("Error: {e:#}");
    if let Some(client_error) = e
        .chain()
        .find_map(|c| c.downcast_ref::<millrace_client::Error>())
    {
        eprintln!("  What to do: {}", client_error.hint());
    }
}

/// Prints one item's failure; the caller carries on and fails at the end.
pub fn report_item(e: &millrace_client::Error) {
    eprintln!("Error: {e}");
    eprintln!("  What to do: {}", e.hint());
}

/// Connects to the cluster with the tool's client settings.
pub async fn connect(args: &ClusterArgs) -> anyhow::Result<Client> {
    connect_with(args, &[], |_, _| Ok(false)).await
}

/// Connects, applying `--command-config` and then `extra` settings; `own` gets first try at
/// each key (a producer or consumer setting) and returns whether it took it.
pub async fn connect_with(
    args: &ClusterArgs,
    extra: &[(String, String)],
    mut own: impl FnMut(&str, &str) -> millrace_client::Result<bool>,
) -> anyhow::Result<Client> {
    let mut config = ClientConfig::new(&args.bootstrap_server);
    config.client_id = "millrace-tools".into();
    let mut settings = Vec::new();
    if let Some(path) = &args.command_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read --command-config {}", path.display()))?;
        settings.extend(parse_properties(&text)?);
    }
    settings.extend(extra.iter().cloned());
    for (key, value) in &settings {
        if own(key, value)? || config.set(key, value)? {
            continue;
        }
        anyhow::bail!(
            "unknown client setting `{key}` (use Kafka's names, e.g. client.id, acks, linger.ms)"
        );
    }
    Ok(Client::connect(config).await?)
}

/// Parses `key=value` lines (`#` and `!` start comments).
pub fn parse_properties(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(parse_key_value)
        .collect()
}

/// Parses repeated `KEY=VALUE` flags.
pub fn parse_key_values(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items.iter().map(|s| parse_key_value(s)).collect()
}

/// Parses one `KEY=VALUE`.
pub fn parse_key_value(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        outln!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints a JSON value, pretty.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Writes to stdout; if the reader has gone away (a closed pipe), exits quietly with success,
/// as a tool killed by SIGPIPE would have stopped. Other write errors are reported and fail.
pub fn stdout_write(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("Error: failed to write to stdout: {e}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}

/// A JSON object for an item's failure: Kafka's error name, the message, what to do.
pub fn json_error(e: &millrace_client::Error) -> serde_json::Value {
    serde_json::json!({
        "error": e.kafka_name(),
        "message": e.to_string(),
        "hint": e.hint(),
    })
}

/// Turns per-item failures into the tool's result: each is reported, and any makes it fail.
pub fn finish<K: std::fmt::Display>(
    results: Vec<(K, millrace_client::Result<()>)>,
    what: &str,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for (_, result) in &results {
        if let Err(e) = result {
            report_item(e);
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(Reported(format!("{failed} of {} {what} failed", results.len())).into());
    }
    Ok(())
}
