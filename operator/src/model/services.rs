//! The Services: a headless one for per-pod DNS, a ClusterIP one for internal clients, and per
//! external listener a bootstrap Service plus one Service per broker (a client must reach the
//! one broker that leads its partition, not any broker).

use super::{config::kafka_listener_name, labels, ClusterModel};
use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};
use millrace_crds::cluster::{ports, Listener, ListenerType};
use std::collections::BTreeMap;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn listener_port(l: &Listener) -> ServicePort {
    port(&kafka_listener_name(l).to_lowercase(), l.port)
}

fn external_type(l: &Listener) -> &'static str {
    match l.type_ {
        ListenerType::LoadBalancer => "LoadBalancer",
        ListenerType::NodePort | ListenerType::Internal => "NodePort",
    }
}

impl ClusterModel {
    /// The headless Service behind the pods' DNS names
    /// (`<cluster>-broker-<n>.<cluster>-brokers.<ns>.svc`).
    ///
    /// `publishNotReadyAddresses`: a broker is ready only once it has joined the quorum, and the
    /// quorum forms only when the controllers can resolve each other, so names must exist before
    /// readiness.
    pub fn desired_headless_service(&self) -> Service {
        let mut ports = vec![
            port("replication", ports::REPLICATION),
            port("controller", ports::CONTROLLER),
        ];
        ports.extend(self.listeners().iter().map(listener_port));
        Service {
            metadata: self.meta(self.names().headless_service()),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                publish_not_ready_addresses: Some(true),
                selector: Some(self.selector_labels()),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    /// The ClusterIP Service whose address is the internal `bootstrap.servers`; `None` when the
    /// cluster has no internal listener.
    pub fn desired_bootstrap_service(&self) -> Option<Service> {
        let ports: Vec<ServicePort> = self
            .listeners()
            .iter()
            .filter(|l| l.type_ == ListenerType::Internal)
            .map(listener_port)
            .collect();
        if ports.is_empty() {
            return None;
        }
        Some(Service {
            metadata: self.meta(self.names().bootstrap_service()),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(self.selector_labels()),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        })
    }

    /// For every NodePort or LoadBalancer listener: a bootstrap Service over all brokers and one
    /// Service per broker, selecting its pod by the StatefulSet's pod-name label.
    pub fn desired_external_services(&self) -> Vec<Service> {
        let names = self.names();
        let mut out = Vec::new();
        for l in self.external_listeners() {
            out.push(Service {
                metadata: self.meta(names.external_bootstrap_service(&l.name)),
                spec: Some(ServiceSpec {
                    type_: Some(external_type(l).into()),
                    selector: Some(self.selector_labels()),
                    ports: Some(vec![listener_port(l)]),
                    ..ServiceSpec::default()
                }),
                status: None,
            });
            for id in 0..self.spec.replicas {
                let mut selector = self.selector_labels();
                selector.insert(labels::POD_NAME.into(), names.pod(id));
                out.push(Service {
                    metadata: self.meta(names.external_broker_service(&l.name, id)),
                    spec: Some(ServiceSpec {
                        type_: Some(external_type(l).into()),
                        selector: Some(selector),
                        ports: Some(vec![listener_port(l)]),
                        ..ServiceSpec::default()
                    }),
                    status: None,
                });
            }
        }
        out
    }

    /// Where clients find each listener: `listener name → bootstrap.servers`, for status. For
    /// external listeners this is known only once their addresses are observed.
    pub fn bootstrap_servers(&self) -> BTreeMap<String, Option<String>> {
        let names = self.names();
        self.listeners()
            .iter()
            .map(|l| {
                let servers = match l.type_ {
                    ListenerType::Internal => Some(format!("{}:{}", names.bootstrap_dns(), l.port)),
                    ListenerType::NodePort | ListenerType::LoadBalancer => {
                        (!self.config.pending_external_listeners().contains(&l.name)).then(|| {
                            (0..self.spec.replicas)
                                .filter_map(|id| self.config.node(id))
                                .filter_map(|node| node.get("advertised.listeners"))
                                .filter_map(|adv| {
                                    let prefix = format!("{}://", kafka_listener_name(l));
                                    adv.split(',').find_map(|e| e.strip_prefix(&prefix))
                                })
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                    }
                };
                (l.name.clone(), servers)
            })
            .collect()
    }
}
