//! Test fixtures: the examples from `deploy/examples/` (so the tests exercise what users see)
//! and a minimal Cluster, with the metadata the API server would have set.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use millrace_crds::{Cluster, ClusterSpec, MirrorMaker};

fn with_server_metadata(meta: &mut ObjectMeta, uid: &str) {
    meta.uid = Some(uid.into());
    meta.generation = Some(1);
    meta.resource_version = Some("1".into());
}

/// `deploy/examples/cluster.yaml`: 3 rack-aware brokers, an internal and a TLS+SCRAM
/// LoadBalancer listener.
pub(crate) fn example_cluster() -> Cluster {
    let mut c: Cluster = serde_yaml::from_str(include_str!("../../deploy/examples/cluster.yaml"))
        .expect("the example Cluster parses");
    with_server_metadata(&mut c.metadata, "11111111-1111-1111-1111-111111111111");
    c
}

/// `deploy/examples/mirrormaker.yaml`.
pub(crate) fn example_mirror_maker() -> MirrorMaker {
    let mut m: MirrorMaker =
        serde_yaml::from_str(include_str!("../../deploy/examples/mirrormaker.yaml"))
            .expect("the example MirrorMaker parses");
    with_server_metadata(&mut m.metadata, "22222222-2222-2222-2222-222222222222");
    m
}

/// One broker, defaults everywhere, in namespace `ns1`.
pub(crate) fn minimal_cluster(name: &str) -> Cluster {
    let spec: ClusterSpec = serde_json::from_value(serde_json::json!({
        "replicas": 1,
        "storage": {"size": "1Gi"},
    }))
    .expect("minimal spec parses");
    let mut c = Cluster::new(name, spec);
    c.metadata.namespace = Some("ns1".into());
    with_server_metadata(&mut c.metadata, "33333333-3333-3333-3333-333333333333");
    c
}
