//! What the operator reads back from the cluster before building the model: the external
//! addresses Kubernetes allocated to the per-broker Services of NodePort and LoadBalancer
//! listeners. Pure: the reconcile loop fetches the objects, this decides what they mean.

use super::{Names, Observed};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use millrace_crds::{cluster::ListenerType, Cluster};
use std::collections::BTreeMap;

/// Node address types in the order a NodePort listener prefers them: an address reachable from
/// outside the cluster first, a resolvable name before a bare IP.
const NODE_ADDRESS_PREFERENCE: &[&str] = &[
    "ExternalDNS",
    "ExternalIP",
    "InternalDNS",
    "InternalIP",
    "Hostname",
];

impl Observed {
    /// The external addresses of `cluster`'s brokers, from its per-broker Services, the broker
    /// pods (which node each runs on) and those nodes. A broker whose address is not allocated
    /// yet (no load-balancer ingress, pod not scheduled, node without an address) is left out.
    pub fn from_objects(
        cluster: &Cluster,
        services: &[Service],
        pods: &[Pod],
        nodes: &[Node],
    ) -> Self {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let ns = cluster.metadata.namespace.clone().unwrap_or_default();
        let names = Names::new(&name, &ns);
        let mut external_addresses = BTreeMap::new();
        for l in cluster
            .spec
            .listeners
            .iter()
            .filter(|l| l.type_ != ListenerType::Internal)
        {
            let mut per_broker = BTreeMap::new();
            for id in 0..cluster.spec.replicas {
                let svc_name = names.external_broker_service(&l.name, id);
                let Some(svc) = services
                    .iter()
                    .find(|s| s.metadata.name.as_deref() == Some(svc_name.as_str()))
                else {
                    continue;
                };
                let addr = match l.type_ {
                    ListenerType::LoadBalancer => {
                        load_balancer_host(svc).map(|h| format!("{h}:{}", l.port))
                    }
                    ListenerType::NodePort => {
                        let pod = names.pod(id);
                        node_port(svc)
                            .zip(node_host(&pod, pods, nodes))
                            .map(|(p, h)| format!("{h}:{p}"))
                    }
                    ListenerType::Internal => None,
                };
                if let Some(addr) = addr {
                    per_broker.insert(id, addr);
                }
            }
            external_addresses.insert(l.name.clone(), per_broker);
        }
        Observed { external_addresses }
    }
}

fn load_balancer_host(svc: &Service) -> Option<String> {
    let ingress = svc
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?;
    ingress.hostname.clone().or_else(|| ingress.ip.clone())
}

fn node_port(svc: &Service) -> Option<i32> {
    svc.spec.as_ref()?.ports.as_ref()?.first()?.node_port
}

fn node_host(pod: &str, pods: &[Pod], nodes: &[Node]) -> Option<String> {
    let node_name = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod))?
        .spec
        .as_ref()?
        .node_name
        .clone()?;
    let node = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name.as_str()))?;
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    NODE_ADDRESS_PREFERENCE
        .iter()
        .find_map(|t| addresses.iter().find(|a| a.type_ == *t))
        .map(|a| a.address.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::example_cluster;
    use millrace_crds::cluster::ListenerType;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service parses")
    }

    #[test]
    fn load_balancer_ingress_becomes_the_advertised_address() {
        let c = example_cluster();
        let services = vec![
            svc(json!({"metadata": {"name": "demo-broker-0-external"},
                       "status": {"loadBalancer": {"ingress": [{"hostname": "lb0.example.com"}]}}})),
            svc(json!({"metadata": {"name": "demo-broker-1-external"},
                       "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})),
            // Not allocated yet.
            svc(
                json!({"metadata": {"name": "demo-broker-2-external"}, "status": {"loadBalancer": {}}}),
            ),
        ];
        let o = Observed::from_objects(&c, &services, &[], &[]);
        assert_eq!(
            o.external_addresses["external"],
            BTreeMap::from([
                (0, "lb0.example.com:9094".to_string()),
                (1, "203.0.113.7:9094".to_string())
            ])
        );
    }

    #[test]
    fn node_port_uses_the_brokers_node_address_by_preference() {
        let mut c = example_cluster();
        c.spec.listeners[1].type_ = ListenerType::NodePort;
        c.spec.replicas = 2;
        let services = vec![
            svc(
                json!({"metadata": {"name": "demo-broker-0-external"}, "spec": {"ports": [{"port": 9094, "nodePort": 31000}]}}),
            ),
            svc(
                json!({"metadata": {"name": "demo-broker-1-external"}, "spec": {"ports": [{"port": 9094, "nodePort": 31001}]}}),
            ),
        ];
        let pods: Vec<Pod> = vec![
            serde_json::from_value(json!({"metadata": {"name": "demo-broker-0"}, "spec": {"nodeName": "n1", "containers": []}})).expect("pod"),
            // demo-broker-1 is not scheduled yet.
            serde_json::from_value(json!({"metadata": {"name": "demo-broker-1"}, "spec": {"containers": []}})).expect("pod"),
        ];
        let nodes: Vec<Node> = vec![serde_json::from_value(json!({"metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "ExternalIP", "address": "198.51.100.5"}]}}))
            .expect("node")];
        let o = Observed::from_objects(&c, &services, &pods, &nodes);
        assert_eq!(
            o.external_addresses["external"],
            BTreeMap::from([(0, "198.51.100.5:31000".to_string())])
        );
    }
}
