//! Writes every Millrace CRD to `crds/<kind>.yaml` and the same bytes to the Helm chart's
//! `charts/millrace/crds/` (Helm installs CRDs only from inside the chart). `--check` compares
//! instead of writing and fails on any difference, for CI.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut check = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            other => bail!("unknown argument {other:?} (only --check)"),
        }
    }
    let crds_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chart_dir = crds_dir.join("../charts/millrace/crds");
    let mut stale = Vec::new();
    for (file, crd) in millrace_crds::all() {
        let text = millrace_crds::render(&crd)?;
        for path in [crds_dir.join(file), chart_dir.join(file)] {
            if check {
                let committed = std::fs::read_to_string(&path).unwrap_or_default();
                if committed != text {
                    stale.push(path.display().to_string());
                }
            } else {
                std::fs::write(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale CRD YAML: {} (run `cargo run -p millrace-crds --bin crdgen`)",
            stale.join(", ")
        );
    }
    Ok(())
}
