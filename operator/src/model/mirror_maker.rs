//! A `MirrorMaker` becomes a ConfigMap of MirrorMaker 2 style properties and a Deployment of
//! `millrace mirror`. Unlike brokers, mirrors hold no state of their own (offsets and checkpoints
//! live in the clusters), so a plain rolling Deployment is the right tool.

use super::{fnv1a_hex, labels, properties_text, Defaults, ModelError};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
            EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::Resource;
use millrace_crds::{
    cluster::{ports, ListenerType},
    common::SecretKeyRef,
    mirror_maker::{MirrorEndpoint, ReplicationPolicy},
    Cluster, MirrorMaker, MirrorMakerSpec,
};
use std::collections::BTreeMap;

const CONFIG_DIR: &str = "/etc/millrace-mirror";

/// `bootstrap.servers` for a Millrace `cluster`, through `listener` (the first internal listener
/// when `None`).
pub fn bootstrap_servers_for(
    cluster: &Cluster,
    listener: Option<&str>,
) -> Result<String, ModelError> {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let l = match listener {
        Some(wanted) => cluster
            .spec
            .listeners
            .iter()
            .find(|l| l.name == wanted)
            .ok_or_else(|| ModelError::UnknownListener {
                cluster: name.clone(),
                listener: wanted.into(),
            })?,
        None => cluster
            .spec
            .listeners
            .iter()
            .find(|l| l.type_ == ListenerType::Internal)
            .ok_or_else(|| ModelError::NoInternalListener {
                cluster: name.clone(),
            })?,
    };
    Ok(format!(
        "{}:{}",
        super::Names::new(&name, &namespace).bootstrap_dns(),
        l.port
    ))
}

/// A validated `MirrorMaker` with its endpoints resolved to bootstrap servers.
#[derive(Clone, Debug)]
pub struct MirrorMakerModel {
    name: String,
    namespace: String,
    owner: OwnerReference,
    spec: MirrorMakerSpec,
    image: String,
    source_bootstrap: String,
    target_bootstrap: String,
}

impl MirrorMakerModel {
    /// Build the model. `source_bootstrap`/`target_bootstrap` are the endpoints'
    /// `bootstrapServers`, or for a `cluster` endpoint what [`bootstrap_servers_for`] returned.
    pub fn from_crd(
        mm: &MirrorMaker,
        defaults: &Defaults,
        source_bootstrap: String,
        target_bootstrap: String,
    ) -> Result<Self, ModelError> {
        let missing = |field| ModelError::MissingMetadata {
            kind: "MirrorMaker",
            field,
        };
        Ok(MirrorMakerModel {
            name: mm.metadata.name.clone().ok_or(missing("name"))?,
            namespace: mm.metadata.namespace.clone().ok_or(missing("namespace"))?,
            owner: mm.controller_owner_ref(&()).ok_or(missing("uid"))?,
            image: mm
                .spec
                .image
                .clone()
                .unwrap_or_else(|| format!("{}:{}", defaults.image_repository, defaults.version)),
            spec: mm.spec.clone(),
            source_bootstrap,
            target_bootstrap,
        })
    }

    fn object_name(&self) -> String {
        format!("{}-mirror-maker", self.name)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::NAME.to_string(), "millrace".to_string()),
            (labels::INSTANCE.to_string(), self.name.clone()),
            (labels::COMPONENT.to_string(), "mirror-maker".to_string()),
            (
                labels::MANAGED_BY.to_string(),
                "millrace-operator".to_string(),
            ),
        ])
    }

    fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::INSTANCE.to_string(), self.name.clone()),
            (labels::COMPONENT.to_string(), "mirror-maker".to_string()),
        ])
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.object_name()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// The mirror's properties, in MirrorMaker 2's names (`<alias>.bootstrap.servers`,
    /// `<source>-><target>.topics`, …). Credentials are not in here: they are `${env:…}`
    /// references to environment variables filled from the Secrets.
    pub fn properties(&self) -> BTreeMap<String, String> {
        let s = &self.spec;
        let (src, tgt) = (&s.source.alias, &s.target.alias);
        let flow = format!("{src}->{tgt}");
        let mut p = BTreeMap::new();
        p.insert("clusters".to_string(), format!("{src},{tgt}"));
        p.insert("config.providers".into(), "env".into());
        endpoint_properties(&mut p, &s.source, &self.source_bootstrap, "SOURCE");
        endpoint_properties(&mut p, &s.target, &self.target_bootstrap, "TARGET");
        p.insert(format!("{flow}.enabled"), "true".into());
        p.insert(format!("{flow}.topics"), s.topics.include.join("|"));
        if !s.topics.exclude.is_empty() {
            p.insert(format!("{flow}.topics.exclude"), s.topics.exclude.join("|"));
        }
        p.insert(format!("{flow}.groups"), s.groups.include.join("|"));
        if !s.groups.exclude.is_empty() {
            p.insert(format!("{flow}.groups.exclude"), s.groups.exclude.join("|"));
        }
        let policy = match s.replication_policy {
            ReplicationPolicy::Prefix => "org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
            ReplicationPolicy::Identity => {
                "org.apache.kafka.connect.mirror.IdentityReplicationPolicy"
            }
        };
        p.insert("replication.policy.class".into(), policy.into());
        p.insert(
            "sync.topic.configs.enabled".into(),
            s.sync_topic_configs.to_string(),
        );
        p.insert(
            "emit.checkpoints.enabled".into(),
            s.checkpoints.enabled.to_string(),
        );
        p.insert(
            "emit.checkpoints.interval.seconds".into(),
            s.checkpoints.interval_seconds.to_string(),
        );
        p.insert(
            "sync.group.offsets.enabled".into(),
            s.checkpoints.sync_group_offsets.to_string(),
        );
        p.insert(
            "emit.heartbeats.enabled".into(),
            s.heartbeats.enabled.to_string(),
        );
        p.insert(
            "emit.heartbeats.interval.seconds".into(),
            s.heartbeats.interval_seconds.to_string(),
        );
        p
    }

    /// The ConfigMap with `mirror.properties`.
    pub fn desired_config_map(&self) -> ConfigMap {
        ConfigMap {
            metadata: self.meta(),
            data: Some(BTreeMap::from([(
                "mirror.properties".to_string(),
                properties_text(&self.properties()),
            )])),
            ..ConfigMap::default()
        }
    }

    /// The Deployment running `millrace mirror`.
    pub fn desired_deployment(&self) -> Deployment {
        let config_text = properties_text(&self.properties());
        let mut pod_labels = self.labels();
        pod_labels.extend(self.selector());
        let mut env = Vec::new();
        for (prefix, ep) in [("SOURCE", &self.spec.source), ("TARGET", &self.spec.target)] {
            if let Some(c) = &ep.credentials {
                env.push(secret_env(
                    &format!("MILLRACE_{prefix}_USERNAME"),
                    &c.username,
                ));
                env.push(secret_env(
                    &format!("MILLRACE_{prefix}_PASSWORD"),
                    &c.password,
                ));
            }
        }
        let probe = |path: &str| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::String("http-admin".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        };
        Deployment {
            metadata: self.meta(),
            spec: DeploymentSpec {
                replicas: Some(self.spec.replicas),
                selector: LabelSelector {
                    match_labels: Some(self.selector()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        // A changed config rolls the Deployment.
                        annotations: Some(BTreeMap::from([(
                            super::CONFIG_HASH_ANNOTATION.to_string(),
                            fnv1a_hex(config_text.as_bytes()),
                        )])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        automount_service_account_token: Some(false),
                        enable_service_links: Some(false),
                        security_context: Some(PodSecurityContext {
                            run_as_non_root: Some(true),
                            run_as_user: Some(10001),
                            run_as_group: Some(10001),
                            seccomp_profile: Some(SeccompProfile {
                                type_: "RuntimeDefault".into(),
                                ..SeccompProfile::default()
                            }),
                            ..PodSecurityContext::default()
                        }),
                        containers: vec![Container {
                            name: "mirror".into(),
                            image: Some(self.image.clone()),
                            args: Some(vec![
                                "mirror".into(),
                                "--config".into(),
                                format!("{CONFIG_DIR}/mirror.properties"),
                            ]),
                            env: (!env.is_empty()).then_some(env),
                            ports: Some(vec![ContainerPort {
                                name: Some("http-admin".into()),
                                container_port: ports::ADMIN_HTTP,
                                protocol: Some("TCP".into()),
                                ..ContainerPort::default()
                            }]),
                            resources: self.spec.resources.clone(),
                            volume_mounts: Some(vec![VolumeMount {
                                name: "config".into(),
                                mount_path: CONFIG_DIR.into(),
                                read_only: Some(true),
                                ..VolumeMount::default()
                            }]),
                            readiness_probe: Some(probe("/readyz")),
                            liveness_probe: Some(probe("/livez")),
                            security_context: Some(SecurityContext {
                                allow_privilege_escalation: Some(false),
                                read_only_root_filesystem: Some(true),
                                run_as_non_root: Some(true),
                                capabilities: Some(Capabilities {
                                    drop: Some(vec!["ALL".into()]),
                                    add: None,
                                }),
                                ..SecurityContext::default()
                            }),
                            ..Container::default()
                        }],
                        volumes: Some(vec![Volume {
                            name: "config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: self.object_name(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        }]),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            },
            status: None,
        }
    }
}

fn endpoint_properties(
    p: &mut BTreeMap<String, String>,
    ep: &MirrorEndpoint,
    bootstrap: &str,
    env_prefix: &str,
) {
    let a = &ep.alias;
    p.insert(format!("{a}.bootstrap.servers"), bootstrap.into());
    let protocol = match (ep.tls, ep.credentials.is_some()) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    };
    p.insert(format!("{a}.security.protocol"), protocol.into());
    if let Some(c) = &ep.credentials {
        p.insert(
            format!("{a}.sasl.mechanism"),
            c.mechanism.kafka_name().into(),
        );
        p.insert(
            format!("{a}.sasl.username"),
            format!("${{env:MILLRACE_{env_prefix}_USERNAME}}"),
        );
        p.insert(
            format!("{a}.sasl.password"),
            format!("${{env:MILLRACE_{env_prefix}_PASSWORD}}"),
        );
    }
}

fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}
