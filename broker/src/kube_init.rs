//! `millrace kube-init`: the init step of a broker pod the Kubernetes operator runs.
//!
//! The operator renders one ConfigMap per cluster: `server.properties`, shared by every broker,
//! and `node-<ordinal>.properties` for each pod (`node.id`, `process.roles`, `listeners`,
//! `advertised.listeners`). A StatefulSet pod knows only its own name, so this step picks its
//! file and writes the one properties file `millrace serve --config` reads.
//!
//! # Expected flow
//! 1. The ordinal is the pod name's numeric suffix after its last `-` (`demo-broker-2` → 2).
//! 2. `DIR/server.properties` and `DIR/node-<ordinal>.properties` are read.
//! 3. With `--rack-label KEY`, node `--node-name` is read from the Kubernetes API
//!    (`GET /api/v1/nodes/NODE`; `KUBECONFIG` when set, else the pod's service account) and
//!    `broker.rack=<its label KEY>` is appended. Later lines win in a properties file, so this
//!    overrides any `broker.rack` above it.
//! 4. The result goes to `--out` atomically (a temporary file in the same directory, renamed),
//!    so the broker never reads half a file, even if the init container is restarted midway.
//!
//! # Errors
//! Each names what to fix, and the pod's init container then fails where `kubectl get pods`
//! shows it: a pod name with no ordinal, a missing file, the API server unreachable or refusing
//! (the broker's ServiceAccount needs `get` on `nodes`), a node without the label.
//!
//! The properties themselves are not checked here: `millrace serve` checks them, with the same
//! table, when it starts.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::Node;

/// The arguments of `millrace kube-init`.
#[derive(Debug, clap::Args)]
pub struct KubeInitArgs {
    /// The mounted ConfigMap: holds `server.properties` and `node-<ordinal>.properties`.
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,
    /// The properties file to write (for `millrace serve --config FILE`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// This pod's name (`metadata.name`), whose numeric suffix picks the node file.
    #[arg(long, value_name = "NAME")]
    pub pod_name: String,
    /// The node the pod runs on (`spec.nodeName`), for `--rack-label`.
    #[arg(long, value_name = "NODE")]
    pub node_name: Option<String>,
    /// Append `broker.rack=` with this label of the node (e.g. `topology.kubernetes.io/zone`).
    #[arg(long, value_name = "KEY", requires = "node_name")]
    pub rack_label: Option<String>,
}

/// Why the init step failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeInitError {
    /// The pod name has no numeric suffix.
    #[error("pod name `{pod_name}` does not end in `-<ordinal>`, so its node-<ordinal>.properties cannot be chosen")]
    NoOrdinal {
        /// The pod name given.
        pod_name: String,
    },
    /// A file could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The output could not be written.
    #[error("failed to write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Neither a kubeconfig nor the in-cluster service account was found.
    #[error("no Kubernetes API configuration (KUBECONFIG or the pod's service account) to read node labels with")]
    Config(#[source] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("failed to set up the Kubernetes API client")]
    Client(#[source] kube::Error),
    /// The API server did not give the node.
    #[error("failed to read node `{node}` from the Kubernetes API (the broker's ServiceAccount needs `get` on nodes)")]
    GetNode {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The node lacks the rack label.
    #[error("node `{node}` has no label `{label}`, so this broker's rack (broker.rack) is unknown: label the node, or change the cluster's rack topology key")]
    MissingLabel {
        /// The node.
        node: String,
        /// The label key.
        label: String,
    },
}

/// The StatefulSet ordinal of `pod_name`: the number after its last `-`.
pub fn ordinal(pod_name: &str) -> Result<u32, KubeInitError> {
    pod_name
        .rsplit_once('-')
        .map(|(_, suffix)| suffix)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| KubeInitError::NoOrdinal {
            pod_name: pod_name.to_string(),
        })
}

/// `DIR/server.properties` followed by `DIR/node-<ordinal>.properties`, each under a comment
/// naming it.
pub fn assemble(config_dir: &Path, pod_name: &str) -> Result<String, KubeInitError> {
    let node_file = format!("node-{}.properties", ordinal(pod_name)?);
    let mut out = String::new();
    for name in ["server.properties", node_file.as_str()] {
        let path = config_dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|source| KubeInitError::Read {
            path: path.clone(),
            source,
        })?;
        out.push_str(&format!("# {}\n", path.display()));
        out.push_str(&text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// The line that sets the rack from a node label, under a comment saying where it came from.
pub fn rack_lines(node: &str, label: &str, value: &str) -> String {
    format!("# label {label} of node {node}\nbroker.rack={value}\n")
}

/// Writes `text` to `path` atomically: a temporary file beside it, synced, then renamed over it.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), KubeInitError> {
    let failed = |source| KubeInitError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| failed(std::io::Error::other("not a file path")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(e));
    }
    // Make the rename itself durable; a directory that cannot be opened (some volume types)
    // still has the file, so this is best effort.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The value of label `label` of node `node`.
pub async fn node_label(
    client: kube::Client,
    node: &str,
    label: &str,
) -> Result<String, KubeInitError> {
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let n = nodes
        .get(node)
        .await
        .map_err(|source| KubeInitError::GetNode {
            node: node.to_string(),
            source,
        })?;
    n.metadata
        .labels
        .and_then(|mut labels| labels.remove(label))
        .ok_or_else(|| KubeInitError::MissingLabel {
            node: node.to_string(),
            label: label.to_string(),
        })
}

/// Runs the init step (see the module docs); returns what was written, for the log.
pub async fn run(args: &KubeInitArgs) -> Result<String, KubeInitError> {
    // Files first: a missing one is reported without waiting on the API server.
    let mut text = assemble(&args.config_dir, &args.pod_name)?;
    if let (Some(label), Some(node)) = (&args.rack_label, &args.node_name) {
        let config = kube::Config::infer().await.map_err(KubeInitError::Config)?;
        let client = kube::Client::try_from(config).map_err(KubeInitError::Client)?;
        let rack = node_label(client, node, label).await?;
        text.push_str(&rack_lines(node, label, &rack));
    }
    write_atomically(&args.out, &text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ordinal_is_the_pod_names_numeric_suffix() {
        assert_eq!(ordinal("demo-broker-0").unwrap(), 0);
        assert_eq!(ordinal("demo-broker-12").unwrap(), 12);
        for bad in [
            "demo",
            "demo-broker-",
            "demo-broker-x1",
            "demo-broker-+1",
            "demo-1-broker",
        ] {
            let e = ordinal(bad).unwrap_err();
            assert!(matches!(&e, KubeInitError::NoOrdinal { pod_name } if pod_name == bad));
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn the_node_file_follows_the_shared_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The last line of server.properties lacks its newline: the node file must not run on.
        std::fs::write(dir.path().join("server.properties"), "num.partitions=6").unwrap();
        std::fs::write(dir.path().join("node-0.properties"), "node.id=0\n").unwrap();
        std::fs::write(dir.path().join("node-1.properties"), "node.id=1\n").unwrap();
        let text = assemble(dir.path(), "demo-broker-1").expect("assembled");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["num.partitions=6", "node.id=1"]);
        assert!(text.contains("node-1.properties\n"), "{text}");
        let props = crate::config::Properties::parse_file_text("out", &text).expect("parses");
        assert_eq!(props.get("node.id"), Some("1"));

        let e = assemble(dir.path(), "demo-broker-2").unwrap_err();
        assert!(
            matches!(&e, KubeInitError::Read { path, .. } if path.ends_with("node-2.properties"))
        );
        assert!(e.to_string().contains("node-2.properties"), "{e}");
    }

    #[test]
    fn the_rack_line_wins_over_an_earlier_one() {
        let text = String::from("broker.rack=stale\n") + &rack_lines("n1", "zone", "zone-b");
        let props = crate::config::Properties::parse_file_text("out", &text).expect("parses");
        assert_eq!(props.get("broker.rack"), Some("zone-b"));
    }

    #[test]
    fn the_output_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("server.properties");
        std::fs::write(&out, "old=1\nlonger than the new content\n").unwrap();
        write_atomically(&out, "node.id=0\n").expect("written");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "node.id=0\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["server.properties"], "no temporary file is left");
        let e = write_atomically(&dir.path().join("missing/out"), "x").unwrap_err();
        assert!(matches!(e, KubeInitError::Write { .. }));
    }
}
