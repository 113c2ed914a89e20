//! The committed CRD YAML is what users install, so it must be exactly what the Rust types
//! generate. Regenerate with `cargo run -p millrace-crds --bin crdgen`.

use std::path::Path;

#[test]
fn committed_crd_yaml_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for (file, crd) in millrace_crds::all() {
        let generated = millrace_crds::render(&crd).expect("CRD renders");
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if generated != committed {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "crds/{stale:?} differ from the Rust types: run `cargo run -p millrace-crds --bin crdgen` and commit"
    );
}

/// The Helm chart ships the CRDs in its own `crds/` folder (Helm installs them from there); those
/// must be the very same bytes, not copies that drift.
#[test]
fn helm_chart_crds_are_identical_to_crds_dir() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, _) in millrace_crds::all() {
        let ours = std::fs::read(root.join("crds").join(file)).expect("crds/ file exists");
        let chart_path = root.join("charts/millrace/crds").join(file);
        let chart = std::fs::read(&chart_path)
            .unwrap_or_else(|e| panic!("{} is missing: {e}", chart_path.display()));
        assert!(
            ours == chart,
            "{} differs from crds/{file}: run `cargo run -p millrace-crds --bin crdgen`",
            chart_path.display()
        );
    }
}

#[test]
fn every_crd_is_in_the_millrace_category_with_a_short_name_and_status() {
    for (file, crd) in millrace_crds::all() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["millrace".to_string()][..]),
            "{file}"
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{file}"
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        let sub = version.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some(), "{file} has a status subresource");
        assert!(
            version.additional_printer_columns.is_some(),
            "{file} has printer columns"
        );
    }
}

#[test]
fn cluster_has_a_scale_subresource_on_replicas() {
    use kube::CustomResourceExt;
    let crd = millrace_crds::Cluster::crd();
    let scale = crd.spec.versions[0]
        .subresources
        .as_ref()
        .and_then(|s| s.scale.clone())
        .expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.labelSelector")
    );
}
