//! Running `millrace` tools from the tests (`tools_*.rs`): each call starts the binary under
//! test as a user would, feeds it stdin, and returns its exit code, stdout and stderr, with a
//! deadline so a hung tool fails the test instead of hanging it.
//!
//! State is then checked through an independent path — rdkafka (librdkafka) or raw
//! protocol requests from `common` — never through the tool itself.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use kafka_protocol::messages::ApiKey;

use crate::common::Broker;

/// How long one tool run may take (debug build, two busy cores).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// What a tool run produced.
#[derive(Debug)]
pub struct Run {
    /// The command line, for failure messages.
    pub command: String,
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts exit code 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "`{}` failed:\n{self}", self.command);
        &self.stdout
    }

    /// Asserts a non-zero exit code and returns stderr.
    pub fn failed(&self) -> &str {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "`{}` should have failed:\n{self}",
            self.command
        );
        &self.stderr
    }

    /// Stdout parsed as JSON (asserts success first).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("`{}` printed invalid JSON ({e}):\n{self}", self.command))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `millrace ARGS` with `stdin`.
pub fn millrace(args: &[&str], stdin: &[u8]) -> Run {
    let command = format!("millrace {}", args.join(" "));
    let mut child = Command::new(env!("CARGO_BIN_EXE_millrace"))
        .args(args)
        .env_remove("MILLRACE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn millrace");
    let pid = child.id();
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    // Writing and waiting happen on other threads, so a large output cannot deadlock the pipes
    // and a hung tool is noticed by the deadline below.
    std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TOOL_TIMEOUT) {
        Ok(output) => {
            let output = output.expect("wait for millrace");
            Run {
                command,
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("`{command}` did not finish within {TOOL_TIMEOUT:?}");
        }
    }
}

/// Runs a tool against `broker`: `line` is the command line after `millrace`, split on
/// whitespace (`"topics create --topic t"`); `--bootstrap-server` is added.
pub fn tool(broker: &Broker, line: &str) -> Run {
    tool_with_stdin(broker, line, b"")
}

/// Like [`tool`], with bytes for stdin.
pub fn tool_with_stdin(broker: &Broker, line: &str, stdin: &[u8]) -> Run {
    let bootstrap = broker.bootstrap();
    let mut all: Vec<&str> = line.split_whitespace().collect();
    all.extend(["--bootstrap-server", bootstrap.as_str()]);
    millrace(&all, stdin)
}

/// Runs `f` on a fresh tokio runtime (for millrace-client calls from the blocking tests).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Whether the broker advertises the consumer-group APIs the group tools need.
pub fn serves_group_apis(broker: &Broker) -> bool {
    let mut conn = crate::common::RawConn::connect(broker.kafka_addr());
    let response = conn.call(
        3,
        &kafka_protocol::messages::ApiVersionsRequest::default()
            .with_client_software_name(kafka_protocol::protocol::StrBytes::from_static_str(
                "tools-tests",
            ))
            .with_client_software_version(kafka_protocol::protocol::StrBytes::from_static_str("0")),
    );
    let advertised = |api: ApiKey| response.api_keys.iter().any(|k| k.api_key == api as i16);
    [
        ApiKey::FindCoordinator,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
    ]
    .into_iter()
    .all(advertised)
}
