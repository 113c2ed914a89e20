//! Conditions and the Cluster's status, computed from the model and what was observed.
//!
//! Conditions follow the Kubernetes convention: `lastTransitionTime` changes only when `status`
//! does, every condition carries the generation it describes, and a computed status equal to the
//! current one is not written (so an unchanged cluster costs no status write and no Event).

use crate::{kafka::KafkaView, model::ClusterModel};
use k8s_openapi::{
    api::{apps::v1::StatefulSet, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use millrace_crds::{
    cluster::{BrokerStatus, ListenerStatus},
    common::conditions::{DEGRADED, PROGRESSING, READY},
    ClusterStatus,
};

/// Set (or replace) the condition `type_`, keeping its `lastTransitionTime` when the status is
/// unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = match conditions.iter().find(|c| c.type_ == type_) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => Time(now),
    };
    let new = Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

/// The condition `type_`, if set.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The status for a cluster whose spec the model refused: `Ready=False` and `Degraded=True`,
/// both with the refusal's reason and message. Everything else the status said stays: the
/// brokers keep running on their last good configuration.
pub fn refused(
    current: Option<&ClusterStatus>,
    generation: Option<i64>,
    reason: &str,
    message: String,
    now: Timestamp,
) -> ClusterStatus {
    let mut s = current.cloned().unwrap_or_default();
    s.observed_generation = generation;
    set_blocked(&mut s.conditions, reason, message, generation, now);
    s
}

/// `Ready=False` and `Degraded=True`, both with `reason` and `message`: something stops the
/// resource from reaching its spec, and retrying alone will not fix it.
pub fn set_blocked(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    set_condition(
        conditions,
        READY,
        false,
        reason,
        message.clone(),
        generation,
        now,
    );
    set_condition(conditions, DEGRADED, true, reason, message, generation, now);
}

/// The Event that reports a change of the `Ready` condition from `old` to `new` (status or
/// reason), if it changed: Normal when it became ready, Warning otherwise. Publishing only
/// changes lets `kubectl describe` tell the story without repeating it every pass.
pub fn ready_event(
    old: Option<&[Condition]>,
    new: &[Condition],
) -> Option<kube::runtime::events::Event> {
    let new = condition(new, READY)?;
    let old = old.and_then(|o| condition(o, READY));
    if old.map(|o| (&o.status, &o.reason)) == Some((&new.status, &new.reason)) {
        return None;
    }
    Some(kube::runtime::events::Event {
        type_: if new.status == "True" {
            kube::runtime::events::EventType::Normal
        } else {
            kube::runtime::events::EventType::Warning
        },
        reason: new.reason.clone(),
        note: Some(new.message.clone()),
        action: "Reconcile".into(),
        secondary: None,
    })
}

/// The status of a cluster whose objects were applied: brokers from the pods, readiness from
/// the StatefulSet, listener addresses from the model.
pub fn applied(
    current: Option<&ClusterStatus>,
    generation: Option<i64>,
    model: &ClusterModel,
    seen: &Seen<'_>,
    now: Timestamp,
) -> ClusterStatus {
    let Seen {
        sts,
        pods,
        kafka,
        pdb,
    } = *seen;
    let mut s = current.cloned().unwrap_or_default();
    s.observed_generation = generation;
    let want = sts.spec.replicas.unwrap_or_default();
    let ready = sts
        .status
        .as_ref()
        .and_then(|st| st.ready_replicas)
        .unwrap_or_default();
    s.replicas = sts
        .status
        .as_ref()
        .map(|st| st.replicas)
        .unwrap_or_default();
    s.label_selector = Some(model.label_selector_string());

    let names = model.names();
    s.brokers = (0..want)
        .map(|id| {
            let pod_name = names.pod(id);
            let pod = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod_name.as_str()));
            let previous = current.and_then(|c| c.brokers.iter().find(|b| b.id == id));
            BrokerStatus {
                id,
                pod: pod_name,
                // The rack the broker registered with, as the cluster reports it; while the
                // cluster cannot be asked (or the broker is not registered), what an earlier
                // status said.
                rack: kafka
                    .and_then(|k| k.racks.get(&id).cloned())
                    .unwrap_or_else(|| previous.and_then(|b| b.rack.clone())),
                version: previous
                    .and_then(|b| b.version.clone())
                    .or_else(|| pod.map(|_| model.version().to_string())),
                ready: pod.is_some_and(pod_ready),
            }
        })
        .collect();

    if let Some(k) = kafka {
        s.cluster_id = k.cluster_id.clone().or(s.cluster_id);
        s.under_replicated_partitions = Some(k.under_replicated_partitions);
    }

    s.listeners = model
        .bootstrap_servers()
        .into_iter()
        .filter_map(|(name, servers)| {
            let l = model_listener_type(model, &name)?;
            Some(ListenerStatus {
                name,
                type_: l,
                bootstrap_servers: servers,
            })
        })
        .collect();

    let pending = model.broker_config().pending_external_listeners();
    let all_ready = ready >= want;
    let (ready_reason, ready_message) = if !all_ready {
        ("BrokersNotReady", format!("{ready}/{want} brokers ready"))
    } else if !pending.is_empty() {
        (
            "ExternalAddressPending",
            format!(
                "{ready}/{want} brokers ready; waiting for external addresses of listener(s) {}",
                pending.join(", ")
            ),
        )
    } else {
        ("BrokersReady", format!("{ready}/{want} brokers ready"))
    };
    set_condition(
        &mut s.conditions,
        READY,
        all_ready && pending.is_empty(),
        ready_reason,
        ready_message,
        generation,
        now,
    );
    set_condition(
        &mut s.conditions,
        PROGRESSING,
        !all_ready,
        if all_ready {
            "Reconciled"
        } else {
            "BrokersStarting"
        },
        if all_ready {
            "every object is applied".to_string()
        } else {
            format!("waiting for {} broker(s) to become ready", want - ready)
        },
        generation,
        now,
    );
    let (degraded, reason, message) = match pdb {
        PdbApi::V1 => (false, "AsExpected", "the spec is valid".to_string()),
        PdbApi::V1beta1 => (
            false,
            "AsExpected",
            "the spec is valid; the PodDisruptionBudget is policy/v1beta1, as this Kubernetes has no policy/v1".to_string(),
        ),
        PdbApi::Unavailable => (
            true,
            "PodDisruptionBudgetUnavailable",
            "this Kubernetes serves neither policy/v1 nor policy/v1beta1 PodDisruptionBudgets: voluntary evictions can take down several brokers at once".to_string(),
        ),
    };
    set_condition(
        &mut s.conditions,
        DEGRADED,
        degraded,
        reason,
        message,
        generation,
        now,
    );
    s
}

/// Which PodDisruptionBudget API the API server took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PdbApi {
    /// `policy/v1` (Kubernetes 1.21 and newer).
    V1,
    /// `policy/v1beta1` (older servers).
    V1beta1,
    /// Neither: the cluster runs without a disruption budget, which the status says.
    Unavailable,
}

/// What a pass observed, for [`applied`].
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    /// The StatefulSet as the apply returned it.
    pub sts: &'a StatefulSet,
    /// The broker pods.
    pub pods: &'a [Pod],
    /// The cluster's own view over Kafka, if it could be had.
    pub kafka: Option<&'a KafkaView>,
    /// Which PodDisruptionBudget API took the budget.
    pub pdb: PdbApi,
}

fn model_listener_type(
    model: &ClusterModel,
    name: &str,
) -> Option<millrace_crds::cluster::ListenerType> {
    model.listener(name).map(|l| l.type_)
}

/// Whether the pod's `Ready` condition is true.
pub(crate) fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fixtures::minimal_cluster,
        model::{Defaults, Observed},
    };
    use std::collections::BTreeMap;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut cs = Vec::new();
        set_condition(&mut cs, READY, false, "A", "a".into(), Some(1), at(10));
        set_condition(&mut cs, READY, false, "B", "b".into(), Some(2), at(20));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, Time(at(10)));
        assert_eq!(
            (cs[0].reason.as_str(), cs[0].observed_generation),
            ("B", Some(2))
        );
        set_condition(&mut cs, READY, true, "C", "c".into(), Some(2), at(30));
        assert_eq!(cs[0].last_transition_time, Time(at(30)));
        assert_eq!(cs[0].status, "True");
    }

    #[test]
    fn refused_keeps_the_rest_of_the_status() {
        let current = ClusterStatus {
            cluster_id: Some("abc".into()),
            ..ClusterStatus::default()
        };
        let s = refused(
            Some(&current),
            Some(4),
            "OperatorOwnedConfig",
            "no".into(),
            at(1),
        );
        assert_eq!(s.cluster_id.as_deref(), Some("abc"));
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(
            condition(&s.conditions, READY).map(|c| c.status.as_str()),
            Some("False")
        );
        assert_eq!(
            condition(&s.conditions, DEGRADED).map(|c| c.status.as_str()),
            Some("True")
        );
    }

    fn one_ready_broker() -> (ClusterModel, StatefulSet, Vec<Pod>) {
        let c = minimal_cluster("kf");
        let model =
            ClusterModel::from_crd(&c, &Defaults::default(), &Observed::default()).expect("valid");
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "spec": {"replicas": 1, "selector": {}, "serviceName": "kf-brokers", "template": {}},
            "status": {"replicas": 1, "readyReplicas": 1},
        }))
        .expect("a StatefulSet");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kf-broker-0"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("a Pod");
        (model, sts, vec![pod])
    }

    #[test]
    fn the_kafka_view_fills_cluster_id_racks_and_under_replicated_partitions() {
        let (model, sts, pods) = one_ready_broker();
        let now = at(1_800_000_000);
        let view = KafkaView {
            cluster_id: Some("q1Sh-9_ISia_zwGINzRvyQ".into()),
            racks: BTreeMap::from([(0, Some("zone-a".into()))]),
            under_replicated_partitions: 2,
        };
        let seen = |kafka| Seen {
            sts: &sts,
            pods: &pods,
            kafka,
            pdb: PdbApi::V1beta1,
        };
        let s = applied(None, Some(1), &model, &seen(Some(&view)), now);
        assert_eq!(s.cluster_id.as_deref(), Some("q1Sh-9_ISia_zwGINzRvyQ"));
        assert_eq!(s.brokers[0].rack.as_deref(), Some("zone-a"));
        assert!(s.brokers[0].ready);
        assert_eq!(s.under_replicated_partitions, Some(2));

        // The cluster cannot be asked on the next pass: what it said stays.
        let again = applied(Some(&s), Some(1), &model, &seen(None), now);
        assert_eq!(again, s);
        let degraded = condition(&s.conditions, DEGRADED).expect("Degraded");
        assert_eq!(degraded.status, "False");
        assert!(
            degraded.message.contains("policy/v1beta1"),
            "{}",
            degraded.message
        );

        // No budget API at all is reported, and does not make the cluster unready.
        let none = Seen {
            pdb: PdbApi::Unavailable,
            ..seen(None)
        };
        let s = applied(Some(&s), Some(1), &model, &none, now);
        let degraded = condition(&s.conditions, DEGRADED).expect("Degraded");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "PodDisruptionBudgetUnavailable")
        );
        assert_eq!(
            condition(&s.conditions, READY).map(|c| c.status.as_str()),
            Some("True")
        );
    }
}
