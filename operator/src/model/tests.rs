//! Model tests: plain values in, plain objects out (Strimzi's KafkaClusterTest style).

use super::*;
use crate::fixtures::{example_cluster, minimal_cluster};
use millrace_crds::ConfigValue;

fn model(c: &Cluster) -> ClusterModel {
    ClusterModel::from_crd(c, &Defaults::default(), &Observed::default()).expect("valid cluster")
}

#[test]
fn node_ids_roles_and_quorum_voters_follow_the_pod_ordinals() {
    let mut c = minimal_cluster("kf");
    c.spec.replicas = 5;
    c.spec.controllers = 3;
    let m = model(&c);
    let cfg = m.broker_config();
    assert_eq!(
        cfg.shared()["controller.quorum.voters"],
        "0@kf-broker-0.kf-brokers.ns1.svc:9093,1@kf-broker-1.kf-brokers.ns1.svc:9093,\
         2@kf-broker-2.kf-brokers.ns1.svc:9093"
    );
    for id in 0..5 {
        let node = cfg.node(id).expect("one node file per broker");
        assert_eq!(node["node.id"], id.to_string());
        let controller = id < 3;
        assert_eq!(
            node["process.roles"],
            if controller {
                "broker,controller"
            } else {
                "broker"
            }
        );
        // Broker-only nodes too: they are Raft learners the controller pushes the log to.
        assert!(
            node["listeners"].ends_with(",CONTROLLER://0.0.0.0:9093"),
            "{}",
            node["listeners"]
        );
        assert_eq!(
            node["advertised.listeners"],
            format!(
                "REPLICATION://kf-broker-{id}.kf-brokers.ns1.svc:9091,\
                 PLAIN://kf-broker-{id}.kf-brokers.ns1.svc:9092"
            )
        );
    }
    assert!(cfg.node(5).is_none());
}

#[test]
fn config_map_has_shared_and_per_node_properties_files() {
    let m = model(&minimal_cluster("kf"));
    let cm = m.desired_config_map();
    let data = cm.data.expect("data");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["node-0.properties", "server.properties"]
    );
    let server = &data["server.properties"];
    assert!(
        server.contains("log.dirs=/var/lib/millrace/data\n"),
        "{server}"
    );
    assert!(server.contains(
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,REPLICATION:PLAINTEXT,PLAIN:PLAINTEXT\n"
    ));
    assert!(data["node-0.properties"].starts_with("advertised.listeners=REPLICATION://"));
}

#[test]
fn user_config_is_merged_into_server_properties() {
    let mut c = minimal_cluster("kf");
    c.spec
        .config
        .insert("num.partitions".into(), ConfigValue::Int(6));
    c.spec
        .config
        .insert("log.cleanup.policy".into(), "compact".into());
    let server = model(&c).desired_config_map().data.expect("data")["server.properties"].clone();
    assert!(server.contains("num.partitions=6\n"));
    assert!(server.contains("log.cleanup.policy=compact\n"));
}

#[test]
fn operator_owned_keys_are_refused_with_every_key_named() {
    let mut c = minimal_cluster("kf");
    c.spec
        .config
        .insert("listeners".into(), "PLAIN://:1".into());
    c.spec.config.insert("node.id".into(), ConfigValue::Int(7));
    c.spec
        .config
        .insert("listener.name.plain.ssl.key.location".into(), "/x".into());
    c.spec
        .config
        .insert("num.partitions".into(), ConfigValue::Int(6));
    let err = ClusterModel::from_crd(&c, &Defaults::default(), &Observed::default())
        .expect_err("owned keys are refused");
    assert_eq!(
        err,
        ModelError::OperatorOwnedConfig {
            keys: vec![
                "listener.name.plain.ssl.key.location".into(),
                "listeners".into(),
                "node.id".into()
            ]
        }
    );
    assert_eq!(err.reason(), "OperatorOwnedConfig");
    assert_eq!(
        err.to_string(),
        "spec.config sets keys the operator manages: listener.name.plain.ssl.key.location, \
         listeners, node.id; remove them"
    );
}

#[test]
fn one_owned_key_reads_naturally() {
    let mut c = minimal_cluster("kf");
    c.spec.config.insert("broker.rack".into(), "a".into());
    let err = ClusterModel::from_crd(&c, &Defaults::default(), &Observed::default())
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "spec.config sets a key the operator manages: broker.rack; remove it"
    );
}

#[test]
fn properties_are_escaped_as_java_reads_them() {
    let props = BTreeMap::from([
        ("a key=x".to_string(), " leading space".to_string()),
        ("multi".to_string(), "line1\nline2\\end".to_string()),
        ("plain".to_string(), "a=b:c".to_string()),
    ]);
    assert_eq!(
        properties_text(&props),
        "a\\ key\\=x=\\ leading space\nmulti=line1\\nline2\\\\end\nplain=a=b:c\n"
    );
}

#[test]
fn tls_and_sasl_listeners_get_protocols_and_certificate_paths() {
    let m = model(&example_cluster());
    let shared = m.broker_config().shared();
    assert_eq!(
        shared["listener.security.protocol.map"],
        "CONTROLLER:PLAINTEXT,REPLICATION:PLAINTEXT,PLAIN:PLAINTEXT,EXTERNAL:SASL_SSL"
    );
    assert_eq!(
        shared["listener.name.external.sasl.enabled.mechanisms"],
        "SCRAM-SHA-512"
    );
    assert_eq!(
        shared["listener.name.external.ssl.certificate.location"],
        "/etc/millrace/tls/external/tls.crt"
    );
    let sts = m.desired_stateful_set();
    let pod = sts.spec.template.spec.expect("pod spec");
    let tls = pod
        .volumes
        .expect("volumes")
        .into_iter()
        .find(|v| v.name == "tls-external")
        .expect("the listener's Secret is mounted");
    assert_eq!(
        tls.secret.and_then(|s| s.secret_name).as_deref(),
        Some("demo-external-tls")
    );
}

#[test]
fn external_listeners_are_advertised_only_once_their_address_is_known() {
    let c = example_cluster();
    let m = model(&c);
    assert_eq!(m.broker_config().pending_external_listeners(), ["external"]);
    assert!(
        !m.broker_config().node(0).expect("node 0")["advertised.listeners"].contains("EXTERNAL")
    );
    assert_eq!(m.bootstrap_servers()["external"], None);

    let observed = Observed {
        external_addresses: BTreeMap::from([(
            "external".to_string(),
            (0..3)
                .map(|id| (id, format!("203.0.113.{}:9094", 10 + id)))
                .collect(),
        )]),
    };
    let m = ClusterModel::from_crd(&c, &Defaults::default(), &observed).expect("valid");
    assert!(m.broker_config().pending_external_listeners().is_empty());
    assert!(
        m.broker_config().node(2).expect("node 2")["advertised.listeners"]
            .ends_with(",EXTERNAL://203.0.113.12:9094")
    );
    assert_eq!(
        m.bootstrap_servers()["external"].as_deref(),
        Some("203.0.113.10:9094,203.0.113.11:9094,203.0.113.12:9094")
    );
    assert_eq!(
        m.bootstrap_servers()["plain"].as_deref(),
        Some("demo-bootstrap.millrace.svc:9092")
    );
}

#[test]
fn headless_service_publishes_not_ready_pods_on_every_port() {
    let svc = model(&minimal_cluster("kf")).desired_headless_service();
    assert_eq!(svc.metadata.name.as_deref(), Some("kf-brokers"));
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    let ports: Vec<i32> = spec.ports.expect("ports").iter().map(|p| p.port).collect();
    assert_eq!(ports, [9091, 9093, 9092]);
}

#[test]
fn external_services_one_bootstrap_plus_one_per_broker() {
    let m = model(&example_cluster());
    let svcs = m.desired_external_services();
    let names: Vec<_> = svcs
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(
        names,
        [
            "demo-external-bootstrap",
            "demo-broker-0-external",
            "demo-broker-1-external",
            "demo-broker-2-external"
        ]
    );
    for s in &svcs {
        assert_eq!(
            s.spec.as_ref().and_then(|s| s.type_.as_deref()),
            Some("LoadBalancer")
        );
    }
    let one = svcs[2]
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .expect("selector");
    assert_eq!(one[labels::POD_NAME], "demo-broker-1");
    // The internal bootstrap Service carries only internal listeners.
    let boot = m
        .desired_bootstrap_service()
        .expect("has an internal listener");
    let ports: Vec<i32> = boot
        .spec
        .expect("spec")
        .ports
        .expect("ports")
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [9092]);
}

#[test]
fn no_bootstrap_service_without_an_internal_listener() {
    let mut c = example_cluster();
    c.spec.listeners.retain(|l| l.name == "external");
    assert!(model(&c).desired_bootstrap_service().is_none());
}

#[test]
fn stateful_set_is_on_delete_parallel_with_claims_probes_and_non_root() {
    let m = model(&example_cluster());
    let sts = m.desired_stateful_set();
    assert_eq!(sts.metadata.name.as_deref(), Some("demo-broker"));
    let spec = sts.spec;
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("demo-brokers"));
    assert_eq!(
        spec.update_strategy.and_then(|u| u.type_).as_deref(),
        Some("OnDelete")
    );
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let claim = &spec.volume_claim_templates.expect("claims")[0];
    let size = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .map(|r| r["storage"].0.clone());
    assert_eq!(size.as_deref(), Some("20Gi"));

    let pod = spec.template.spec.expect("pod spec");
    let psc = pod.security_context.expect("pod security context");
    assert_eq!(psc.run_as_non_root, Some(true));
    let broker = &pod.containers[0];
    assert_eq!(broker.image.as_deref(), Some("millrace:0.1.0"));
    assert_eq!(
        broker.args.as_deref(),
        Some(
            &[
                "serve".to_string(),
                "--config".into(),
                "/var/run/millrace/server.properties".into()
            ][..]
        )
    );
    let ready = broker
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("readiness");
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    let live = broker
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("liveness");
    assert_eq!(live.path.as_deref(), Some("/livez"));
    let csc = broker
        .security_context
        .as_ref()
        .expect("container security context");
    assert_eq!(csc.read_only_root_filesystem, Some(true));
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    assert_eq!(broker.resources, example_cluster().spec.resources);
}

#[test]
fn rack_awareness_adds_init_args_token_spread_and_binding() {
    let m = model(&example_cluster());
    let pod = m
        .desired_stateful_set()
        .spec
        .template
        .spec
        .expect("pod spec");
    let init = &pod.init_containers.expect("init")[0];
    assert_eq!(
        init.image, pod.containers[0].image,
        "the init step runs the same image"
    );
    let args = init.args.clone().expect("args");
    assert!(
        args.contains(&"--rack-label=topology.kubernetes.io/zone".to_string()),
        "{args:?}"
    );
    assert!(args.contains(&"--node-name=$(NODE_NAME)".to_string()));
    assert_eq!(pod.automount_service_account_token, Some(true));
    let spread = pod.topology_spread_constraints.expect("spread");
    assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
    assert_eq!(spread[0].when_unsatisfiable, "DoNotSchedule");
    let crb = m
        .desired_cluster_role_binding()
        .expect("rack-aware clusters get a binding");
    assert_eq!(
        crb.metadata.name.as_deref(),
        Some("millrace-broker-millrace-demo")
    );
    assert_eq!(crb.role_ref.name, BROKER_CLUSTER_ROLE);
    assert!(
        crb.metadata.owner_references.is_none(),
        "cluster-scoped: no namespaced owner"
    );

    let plain = model(&minimal_cluster("kf"));
    let pod = plain
        .desired_stateful_set()
        .spec
        .template
        .spec
        .expect("pod spec");
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(!pod.init_containers.expect("init")[0]
        .args
        .clone()
        .unwrap_or_default()
        .iter()
        .any(|a| a.starts_with("--rack-label")));
    assert!(plain.desired_cluster_role_binding().is_none());
}

#[test]
fn pod_template_fields_are_applied_and_operator_labels_win() {
    let mut c = example_cluster();
    let t = c.spec.pod_template.as_mut().expect("template");
    t.labels.insert(labels::CLUSTER.into(), "hijack".into());
    let sts = model(&c).desired_stateful_set();
    let meta = sts.spec.template.metadata.expect("metadata");
    let l = meta.labels.expect("labels");
    assert_eq!(l["team"], "streaming");
    assert_eq!(l[labels::CLUSTER], "demo");
    assert!(meta
        .annotations
        .expect("annotations")
        .contains_key(CONFIG_HASH_ANNOTATION));
    let pod = sts.spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("streaming-critical")
    );
    assert_eq!(
        pod.tolerations.expect("tolerations")[0].key.as_deref(),
        Some("dedicated")
    );
}

#[test]
fn config_hash_changes_with_config_only() {
    let a = model(&minimal_cluster("kf"));
    let mut c = minimal_cluster("kf");
    c.spec.storage.delete_claim = true;
    assert_eq!(a.broker_config().hash(), model(&c).broker_config().hash());
    c.spec
        .config
        .insert("num.partitions".into(), ConfigValue::Int(3));
    assert_ne!(a.broker_config().hash(), model(&c).broker_config().hash());
}

#[test]
fn every_namespaced_object_is_owned_by_the_cluster() {
    let m = model(&example_cluster());
    let mut metas = vec![
        m.desired_config_map().metadata,
        m.desired_headless_service().metadata,
        m.desired_stateful_set().metadata,
        m.desired_pod_disruption_budget().metadata,
        m.desired_service_account().metadata,
    ];
    metas.extend(m.desired_bootstrap_service().map(|s| s.metadata));
    metas.extend(
        m.desired_external_services()
            .into_iter()
            .map(|s| s.metadata),
    );
    for meta in metas {
        let owners = meta.owner_references.expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "Cluster");
        assert_eq!(owners[0].name, "demo");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("millrace"));
    }
}

#[test]
fn pdb_allows_one_broker_down() {
    let pdb = model(&example_cluster()).desired_pod_disruption_budget();
    let spec = pdb.spec.expect("spec");
    assert_eq!(
        spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert!(spec.min_available.is_none());
}

#[test]
fn image_comes_from_spec_then_version_then_operator_default() {
    let mut c = minimal_cluster("kf");
    let d = Defaults {
        image_repository: "registry.local/millrace".into(),
        version: "9.9.9".into(),
    };
    let image = |c: &Cluster| {
        ClusterModel::from_crd(c, &d, &Observed::default())
            .expect("valid")
            .image()
            .to_string()
    };
    assert_eq!(image(&c), "registry.local/millrace:9.9.9");
    c.spec.version = Some("1.2.3".into());
    assert_eq!(image(&c), "registry.local/millrace:1.2.3");
    c.spec.image = Some("mine:dev".into());
    assert_eq!(image(&c), "mine:dev");
}

#[test]
fn label_selector_string_matches_the_stateful_set_selector() {
    let m = model(&minimal_cluster("kf"));
    assert_eq!(
        m.label_selector_string(),
        "app.kubernetes.io/component=broker,millrace.io/cluster=kf"
    );
}

mod mirror {
    use super::*;
    use crate::fixtures::example_mirror_maker;

    #[test]
    fn cluster_endpoint_resolves_to_its_bootstrap_service() {
        let c = example_cluster();
        assert_eq!(
            bootstrap_servers_for(&c, None).as_deref(),
            Ok("demo-bootstrap.millrace.svc:9092")
        );
        assert_eq!(
            bootstrap_servers_for(&c, Some("nope")),
            Err(ModelError::UnknownListener {
                cluster: "demo".into(),
                listener: "nope".into()
            })
        );
    }

    #[test]
    fn properties_use_mirror_maker_2_names_and_env_credentials() {
        let mm = example_mirror_maker();
        let m = MirrorMakerModel::from_crd(
            &mm,
            &Defaults::default(),
            "kafka-dc1.example.com:9093".into(),
            "demo-bootstrap.millrace.svc:9092".into(),
        )
        .expect("valid");
        let p = m.properties();
        assert_eq!(p["clusters"], "dc1,demo");
        assert_eq!(p["dc1.bootstrap.servers"], "kafka-dc1.example.com:9093");
        assert_eq!(p["dc1.security.protocol"], "SASL_SSL");
        assert_eq!(p["dc1.sasl.password"], "${env:MILLRACE_SOURCE_PASSWORD}");
        assert_eq!(p["demo.security.protocol"], "PLAINTEXT");
        assert_eq!(p["dc1->demo.topics.exclude"], "__.*|_schemas");
        assert_eq!(
            p["replication.policy.class"],
            "org.apache.kafka.connect.mirror.DefaultReplicationPolicy"
        );
        assert_eq!(p["sync.group.offsets.enabled"], "true");

        let d = m.desired_deployment();
        assert_eq!(d.metadata.name.as_deref(), Some("dc1-to-demo-mirror-maker"));
        assert_eq!(d.spec.replicas, Some(2));
        let pod = d.spec.template.spec.expect("pod");
        let env = pod.containers[0].env.clone().expect("env");
        let pw = env
            .iter()
            .find(|e| e.name == "MILLRACE_SOURCE_PASSWORD")
            .expect("password env");
        let sel = pw
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("from secret");
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("dc1-mirror-credentials", "password")
        );
        assert_eq!(
            d.metadata.owner_references.expect("owned")[0].kind,
            "MirrorMaker"
        );
    }
}
