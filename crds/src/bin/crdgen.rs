//! Writes every Millrace CRD to `crds/<kind>.yaml` (or to the directory given as the only
//! argument). `--check` compares instead of writing and fails on any difference, for CI.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut check = false;
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            other => dir = PathBuf::from(other),
        }
    }
    let mut stale = Vec::new();
    for (file, crd) in millrace_crds::all() {
        let path = dir.join(file);
        let text = millrace_crds::render(&crd)?;
        if check {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            if committed != text {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
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
