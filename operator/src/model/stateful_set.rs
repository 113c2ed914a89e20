//! The brokers' StatefulSet, its ConfigMap and its PodDisruptionBudget.

use super::{
    config::kafka_listener_name,
    config::{CONFIG_MOUNT, DATA_MOUNT, RUN_MOUNT, SERVER_PROPERTIES, TLS_MOUNT},
    labels, ClusterModel, CONFIG_HASH_ANNOTATION,
};
use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
            EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
            ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
            SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use millrace_crds::cluster::ports;
use std::collections::BTreeMap;

/// The user the image runs as (see the Dockerfile); any non-root id works.
const RUN_AS_USER: i64 = 10001;
/// Long enough for a controlled shutdown: moving partition leadership away and flushing.
const TERMINATION_GRACE_SECONDS: i64 = 120;

impl ClusterModel {
    /// The ConfigMap with `server.properties` and the per-node files (see [`super::BrokerConfig`]).
    pub fn desired_config_map(&self) -> ConfigMap {
        ConfigMap {
            metadata: self.meta(self.names().config_map()),
            data: Some(self.config.config_map_data()),
            ..ConfigMap::default()
        }
    }

    /// The brokers' StatefulSet.
    ///
    /// - `updateStrategy: OnDelete`: a template change restarts nothing by itself; the operator
    ///   rolls brokers one at a time with Kafka-level safety checks.
    /// - `podManagementPolicy: Parallel`: with `OrderedReady`, pod 1 would wait for pod 0 to be
    ///   ready, but pod 0 is ready only once a quorum of controllers is up — a deadlock for any
    ///   quorum larger than one.
    pub fn desired_stateful_set(&self) -> StatefulSet {
        let names = self.names();
        let mut pod_labels = self
            .spec
            .pod_template
            .as_ref()
            .map(|t| t.labels.clone())
            .unwrap_or_default();
        // The operator's labels win: the selector depends on them.
        pod_labels.extend(self.labels());
        if let Some(v) = self.spec.version.as_ref() {
            pod_labels.insert("app.kubernetes.io/version".into(), v.clone());
        }
        let mut annotations = self
            .spec
            .pod_template
            .as_ref()
            .map(|t| t.annotations.clone())
            .unwrap_or_default();
        annotations.insert(CONFIG_HASH_ANNOTATION.into(), self.config.hash());

        StatefulSet {
            metadata: self.meta(names.broker_set()),
            spec: StatefulSetSpec {
                replicas: Some(self.spec.replicas),
                service_name: Some(names.headless_service()),
                selector: LabelSelector {
                    match_labels: Some(self.selector_labels()),
                    ..LabelSelector::default()
                },
                pod_management_policy: Some("Parallel".into()),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("OnDelete".into()),
                    rolling_update: None,
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        annotations: Some(annotations),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(self.pod_spec()),
                },
                volume_claim_templates: Some(vec![self.data_claim()]),
                ..StatefulSetSpec::default()
            },
            status: None,
        }
    }

    fn pod_spec(&self) -> PodSpec {
        let template = self.spec.pod_template.clone().unwrap_or_default();
        let rack_aware = self.spec.rack.is_some();
        PodSpec {
            service_account_name: Some(self.names().broker_set()),
            // Only the init step of a rack-aware cluster talks to the API server.
            automount_service_account_token: Some(rack_aware),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            init_containers: Some(vec![self.init_container()]),
            containers: vec![self.broker_container()],
            volumes: Some(self.volumes()),
            affinity: template.affinity,
            tolerations: (!template.tolerations.is_empty()).then_some(template.tolerations),
            priority_class_name: template.priority_class_name,
            topology_spread_constraints: Some(self.topology_spread()),
            ..PodSpec::default()
        }
    }

    /// Spread over racks strictly (that is what rack awareness promises) and over nodes as far as
    /// possible (two brokers on one node share a failure, but refusing to schedule is worse).
    fn topology_spread(&self) -> Vec<TopologySpreadConstraint> {
        let selector = LabelSelector {
            match_labels: Some(self.selector_labels()),
            ..LabelSelector::default()
        };
        let mut out = Vec::new();
        if let Some(rack) = &self.spec.rack {
            out.push(TopologySpreadConstraint {
                max_skew: 1,
                topology_key: rack.topology_key.clone(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(selector.clone()),
                ..TopologySpreadConstraint::default()
            });
        }
        out.push(TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(selector),
            ..TopologySpreadConstraint::default()
        });
        out
    }

    /// The init step: the same image assembles the broker's properties from the ConfigMap (its
    /// node file is picked by the pod's ordinal) and, when rack-aware, appends
    /// `broker.rack=<the node's topologyKey label>`.
    fn init_container(&self) -> Container {
        let mut args = vec![
            "kube-init".to_string(),
            format!("--config-dir={CONFIG_MOUNT}"),
            format!("--out={SERVER_PROPERTIES}"),
            "--pod-name=$(POD_NAME)".to_string(),
        ];
        if let Some(rack) = &self.spec.rack {
            args.push("--node-name=$(NODE_NAME)".into());
            args.push(format!("--rack-label={}", rack.topology_key));
        }
        Container {
            name: "init".into(),
            image: Some(self.image.clone()),
            args: Some(args),
            env: Some(vec![
                field_env("POD_NAME", "metadata.name"),
                field_env("NODE_NAME", "spec.nodeName"),
            ]),
            volume_mounts: Some(vec![
                mount("config", CONFIG_MOUNT, true),
                mount("run", RUN_MOUNT, false),
            ]),
            security_context: Some(container_security()),
            ..Container::default()
        }
    }

    fn broker_container(&self) -> Container {
        let mut container_ports = vec![
            container_port("http-admin", ports::ADMIN_HTTP),
            container_port("replication", ports::REPLICATION),
            container_port("controller", ports::CONTROLLER),
        ];
        container_ports.extend(
            self.listeners()
                .iter()
                .map(|l| container_port(&kafka_listener_name(l).to_lowercase(), l.port)),
        );
        let mut mounts = vec![
            mount("data", DATA_MOUNT, false),
            mount("config", CONFIG_MOUNT, true),
            mount("run", RUN_MOUNT, true),
        ];
        for l in self.listeners().iter().filter(|l| l.tls) {
            mounts.push(mount(
                &tls_volume(&l.name),
                &format!("{TLS_MOUNT}/{}", l.name),
                true,
            ));
        }
        Container {
            name: "broker".into(),
            image: Some(self.image.clone()),
            args: Some(vec![
                "serve".into(),
                "--config".into(),
                SERVER_PROPERTIES.into(),
            ]),
            ports: Some(container_ports),
            resources: self.spec.resources.clone(),
            volume_mounts: Some(mounts),
            // Ready means registered, metadata caught up and, after a restart, partitions back in
            // sync: what the roll waits for before touching the next broker.
            readiness_probe: Some(http_probe("/readyz", 10, 3)),
            liveness_probe: Some(http_probe("/livez", 10, 6)),
            // Log recovery after a crash can take minutes; the liveness probe must not kill a
            // broker that is still recovering.
            startup_probe: Some(http_probe("/livez", 5, 120)),
            security_context: Some(container_security()),
            ..Container::default()
        }
    }

    fn volumes(&self) -> Vec<Volume> {
        let mut v = vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: self.names().config_map(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "run".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ];
        for l in self.listeners().iter().filter(|l| l.tls) {
            if let Some(cert) = &l.certificate {
                v.push(Volume {
                    name: tls_volume(&l.name),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(cert.secret_name.clone()),
                        items: Some(vec![
                            KeyToPath {
                                key: cert.certificate.clone(),
                                path: "tls.crt".into(),
                                ..KeyToPath::default()
                            },
                            KeyToPath {
                                key: cert.key.clone(),
                                path: "tls.key".into(),
                                ..KeyToPath::default()
                            },
                        ]),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                });
            }
        }
        v
    }

    fn data_claim(&self) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                labels: Some(self.selector_labels()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: self.spec.storage.class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        self.spec.storage.size.clone(),
                    )])),
                    limits: None,
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }
    }

    /// The PodDisruptionBudget: voluntary evictions (node drains) take at most
    /// `rollout.maxUnavailable` (1) broker at a time, the same budget the operator's rolls keep.
    pub fn desired_pod_disruption_budget(&self) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: self.meta(self.names().broker_set()),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(self.spec.rollout.max_unavailable)),
                selector: Some(LabelSelector {
                    match_labels: Some(self.selector_labels()),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }
    }

    /// The pod label that selects broker `id`'s pod (set by the StatefulSet controller).
    pub fn pod_selector(&self, id: i32) -> (String, String) {
        (labels::POD_NAME.into(), self.names().pod(id))
    }

    /// The image the brokers run.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The Millrace version the brokers run.
    pub fn version(&self) -> &str {
        &self.version
    }
}

fn tls_volume(listener: &str) -> String {
    format!("tls-{listener}")
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http-admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}
