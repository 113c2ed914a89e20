//! Reconcile scenarios against a mocked API server (controller-rs' `fixtures.rs` pattern): the
//! test plays the API server, answering each request the reconciler makes in order, and asserts
//! the exact method, path and body of every one. A request that is missing, extra or out of
//! order fails the scenario.

use super::*;
use crate::fixtures::{example_cluster, minimal_cluster};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use millrace_crds::ConfigValue;
use serde_json::{json, Value};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Every test's deadline for one request to arrive: generous, it only turns a hang into a
/// failure.
const DEADLINE: Duration = Duration::from_secs(10);

pub(super) fn fixed_now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid timestamp")
}

fn context() -> (Arc<Context>, ApiServer) {
    let (client, server) = ApiServer::new();
    let reporter = Reporter {
        controller: "millrace-operator".into(),
        instance: Some("test".into()),
    };
    let mut ctx = Context::new(
        client,
        Defaults::default(),
        reporter,
        Arc::new(Metrics::new().expect("metrics")),
    );
    ctx.now = fixed_now;
    (Arc::new(ctx), server)
}

/// One request as the mock API server saw it.
#[derive(Debug)]
pub(super) struct Seen {
    pub(super) path: String,
    pub(super) query: String,
    pub(super) body: Value,
}

pub(super) struct ApiServer {
    handle: Handle,
}

impl ApiServer {
    /// A mock API server and a client talking to it.
    pub(super) fn new() -> (Client, ApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), ApiServer { handle })
    }

    /// Expect the next request to be `method path`, answer it with `respond(body)`.
    pub(super) async fn expect(
        &mut self,
        method: Method,
        path: &str,
        respond: impl FnOnce(&Value) -> Value,
    ) -> Seen {
        self.expect_code(method, path, StatusCode::OK, respond)
            .await
    }

    /// Like [`ApiServer::expect`], answering with HTTP status `code`.
    pub(super) async fn expect_code(
        &mut self,
        method: Method,
        path: &str,
        code: StatusCode,
        respond: impl FnOnce(&Value) -> Value,
    ) -> Seen {
        let (req, send) = tokio::time::timeout(DEADLINE, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request arrived; expected {method} {path}"))
            .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        let seen_method = req.method().clone();
        let seen_path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let bytes = req
            .into_body()
            .collect()
            .await
            .expect("request body")
            .to_bytes();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        assert_eq!(
            (&seen_method, seen_path.as_str()),
            (&method, path),
            "unexpected request; body: {body}"
        );
        let response = respond(&body);
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(
                    serde_json::to_vec(&response).expect("serializable"),
                ))
                .expect("valid response"),
        );
        Seen {
            path: seen_path,
            query,
            body,
        }
    }

    /// Expect a server-side apply of `path` under our field manager; answers with the applied
    /// object (what the API server returns, minus the fields it would add).
    async fn expect_apply(&mut self, path: &str) -> Seen {
        self.expect_apply_with(path, |b| b.clone()).await
    }

    async fn expect_apply_with(
        &mut self,
        path: &str,
        respond: impl FnOnce(&Value) -> Value,
    ) -> Seen {
        let seen = self.expect(Method::PATCH, path, respond).await;
        assert!(
            seen.query.contains("fieldManager=millrace-operator")
                && seen.query.contains("force=true"),
            "{path} is applied with our field manager, forced: {}",
            seen.query
        );
        seen
    }

    /// After the reconciler and every client clone are gone, nothing else may have been sent.
    pub(super) async fn expect_no_more(mut self) {
        let next = tokio::time::timeout(DEADLINE, self.handle.next_request())
            .await
            .expect("the client shuts down");
        if let Some((req, _)) = next {
            panic!("unexpected extra request {} {}", req.method(), req.uri());
        }
    }
}

fn with_finalizer(mut c: Cluster) -> Cluster {
    c.metadata.finalizers = Some(vec![FINALIZER.into()]);
    c
}

fn sts_with_status(ready: i32) -> impl FnOnce(&Value) -> Value {
    move |body| {
        let mut sts = body.clone();
        let replicas = sts["spec"]["replicas"].clone();
        sts["status"] = json!({"replicas": replicas, "readyReplicas": ready});
        sts
    }
}

/// Answer a status apply as the API server does: the whole object with the new status.
fn object_with_status(c: &Cluster) -> impl FnOnce(&Value) -> Value + use<> {
    let mut obj = serde_json::to_value(c).expect("serializable");
    move |body| {
        obj["status"] = body["status"].clone();
        obj
    }
}

fn empty_pod_list(_: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})
}

const NS1: &str = "/api/v1/namespaces/ns1";

/// The reads and applies of the minimal cluster `kf` in `ns1`, in reconcile order.
async fn expect_minimal_applies(server: &mut ApiServer, ready: i32) -> Vec<Seen> {
    expect_broker_pods(server, NS1, "kf").await;
    vec![
        server
            .expect_apply(&format!("{NS1}/serviceaccounts/kf-broker"))
            .await,
        server
            .expect_apply(&format!("{NS1}/configmaps/kf-broker-config"))
            .await,
        server
            .expect_apply(&format!("{NS1}/services/kf-brokers"))
            .await,
        server
            .expect_apply(&format!("{NS1}/services/kf-bootstrap"))
            .await,
        server
            .expect_apply("/apis/policy/v1/namespaces/ns1/poddisruptionbudgets/kf-broker")
            .await,
        server
            .expect_apply_with(
                "/apis/apps/v1/namespaces/ns1/statefulsets/kf-broker",
                sts_with_status(ready),
            )
            .await,
    ]
}

/// The first read of every pass: the broker pods, by their selector.
async fn expect_broker_pods(server: &mut ApiServer, ns_path: &str, cluster: &str) {
    let pods = server
        .expect(Method::GET, &format!("{ns_path}/pods"), empty_pod_list)
        .await;
    assert!(
        pods.query.contains(&format!(
            "labelSelector=app.kubernetes.io%2Fcomponent%3Dbroker%2Cmillrace.io%2Fcluster%3D{cluster}"
        )),
        "{}",
        pods.query
    );
}

const STATUS_KF: &str = "/apis/millrace.io/v1alpha1/namespaces/ns1/clusters/kf/status";

#[tokio::test]
async fn first_pass_adds_the_finalizer_and_nothing_else() {
    let (ctx, mut server) = context();
    let cluster = Arc::new(minimal_cluster("kf"));
    let task = tokio::spawn(reconcile_cluster(cluster.clone(), ctx.clone()));
    let seen = server
        .expect(
            Method::PATCH,
            "/apis/millrace.io/v1alpha1/namespaces/ns1/clusters/kf",
            |_| serde_json::to_value(with_finalizer(minimal_cluster("kf"))).expect("serializable"),
        )
        .await;
    // A JSON patch that adds our finalizer, guarded by a test of the list it extends.
    let ops = seen.body.as_array().expect("a JSON patch");
    assert!(
        ops.iter().any(|op| op["op"] == "add"
            && (op["value"] == json!([FINALIZER]) || op["value"] == json!(FINALIZER))),
        "{}",
        seen.body
    );
    let action = task.await.expect("join").expect("reconcile");
    assert_eq!(action, Action::await_change());
    drop(ctx);
    server.expect_no_more().await;
}

#[tokio::test]
async fn creation_applies_every_object_then_writes_status_and_an_event() {
    let (ctx, mut server) = context();
    let cluster = Arc::new(with_finalizer(minimal_cluster("kf")));
    let task = tokio::spawn(reconcile_cluster(cluster.clone(), ctx.clone()));

    let applies = expect_minimal_applies(&mut server, 0).await;
    // Every applied object is complete and owned: kind, apiVersion, our labels, the owner.
    for a in &applies {
        assert!(
            a.body["apiVersion"].is_string() && a.body["kind"].is_string(),
            "{}",
            a.path
        );
        assert_eq!(
            a.body["metadata"]["labels"]["millrace.io/cluster"], "kf",
            "{}",
            a.path
        );
        assert_eq!(
            a.body["metadata"]["ownerReferences"][0]["kind"], "Cluster",
            "{}",
            a.path
        );
        assert_eq!(
            a.body["metadata"]["ownerReferences"][0]["uid"],
            "33333333-3333-3333-3333-333333333333"
        );
    }
    assert_eq!(
        applies[5].body["spec"]["updateStrategy"]["type"],
        "OnDelete"
    );

    let status = server
        .expect(Method::PATCH, STATUS_KF, object_with_status(&cluster))
        .await;
    assert!(status.query.contains("fieldManager=millrace-operator"));
    let s = &status.body["status"];
    assert_eq!(s["observedGeneration"], 1);
    assert_eq!(s["replicas"], 1);
    assert_eq!(
        s["labelSelector"],
        "app.kubernetes.io/component=broker,millrace.io/cluster=kf"
    );
    assert_eq!(
        s["brokers"],
        json!([{"id": 0, "pod": "kf-broker-0", "ready": false}])
    );
    assert_eq!(
        s["listeners"],
        json!([{"name": "plain", "type": "internal", "bootstrapServers": "kf-bootstrap.ns1.svc:9092"}])
    );
    let ready = s["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .expect("Ready condition");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "BrokersNotReady");
    assert_eq!(ready["message"], "0/1 brokers ready");
    assert_eq!(ready["lastTransitionTime"], "2027-01-15T08:00:00Z");

    let event = server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/ns1/events",
            Value::clone,
        )
        .await;
    assert_eq!(event.body["reason"], "BrokersNotReady");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["regarding"]["name"], "kf");

    let action = task.await.expect("join").expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    drop(ctx);
    server.expect_no_more().await;
}

#[tokio::test]
async fn an_unchanged_cluster_is_reapplied_without_status_write_or_event() {
    // First pass, to learn the status the operator writes.
    let (ctx, mut server) = context();
    let cluster = with_finalizer(minimal_cluster("kf"));
    let task = tokio::spawn(reconcile_cluster(Arc::new(cluster.clone()), ctx.clone()));
    expect_minimal_applies(&mut server, 1).await;
    let status = server
        .expect(Method::PATCH, STATUS_KF, object_with_status(&cluster))
        .await;
    server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/ns1/events",
            Value::clone,
        )
        .await;
    task.await.expect("join").expect("reconcile");
    drop(ctx);
    server.expect_no_more().await;

    // Second pass over the cluster as it now is: the same applies (server-side apply is
    // idempotent, and re-applying is how drift gets repaired), then nothing.
    let mut cluster = cluster;
    cluster.status =
        Some(serde_json::from_value(status.body["status"].clone()).expect("status parses"));
    let (ctx, mut server) = context();
    let task = tokio::spawn(reconcile_cluster(Arc::new(cluster), ctx.clone()));
    expect_minimal_applies(&mut server, 1).await;
    let action = task.await.expect("join").expect("reconcile");
    assert_eq!(action, Action::requeue(RESYNC));
    drop(ctx);
    server.expect_no_more().await;
}

#[tokio::test]
async fn an_operator_owned_config_key_becomes_a_condition_and_nothing_is_applied() {
    let (ctx, mut server) = context();
    let mut cluster = with_finalizer(minimal_cluster("kf"));
    cluster.spec.config.insert("log.dirs".into(), "/tmp".into());
    cluster
        .spec
        .config
        .insert("num.partitions".into(), ConfigValue::Int(3));
    let task = tokio::spawn(reconcile_cluster(Arc::new(cluster.clone()), ctx.clone()));

    expect_broker_pods(&mut server, NS1, "kf").await;
    let status = server
        .expect(Method::PATCH, STATUS_KF, object_with_status(&cluster))
        .await;
    let conditions = status.body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .clone();
    let message = "spec.config sets a key the operator manages: log.dirs; remove it";
    assert_eq!(
        conditions,
        [
            json!({"type": "Ready", "status": "False", "reason": "OperatorOwnedConfig",
                   "message": message, "observedGeneration": 1,
                   "lastTransitionTime": "2027-01-15T08:00:00Z"}),
            json!({"type": "Degraded", "status": "True", "reason": "OperatorOwnedConfig",
                   "message": message, "observedGeneration": 1,
                   "lastTransitionTime": "2027-01-15T08:00:00Z"}),
        ]
    );
    let event = server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/ns1/events",
            Value::clone,
        )
        .await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "OperatorOwnedConfig");
    assert_eq!(event.body["note"], message);

    let action = task.await.expect("join").expect("reconcile");
    assert_eq!(
        action,
        Action::await_change(),
        "a refusal waits for the user, not a timer"
    );
    drop(ctx);
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_rack_aware_external_cluster_binds_the_node_reader_and_advertises_load_balancers() {
    let (ctx, mut server) = context();
    let cluster = Arc::new(with_finalizer(example_cluster()));
    let task = tokio::spawn(reconcile_cluster(cluster.clone(), ctx.clone()));
    let ns = "/api/v1/namespaces/millrace";
    expect_broker_pods(&mut server, ns, "demo").await;
    // The Services as they are: load balancers allocated for brokers 0 and 1, not yet for 2.
    let services = server
        .expect(Method::GET, &format!("{ns}/services"), |_| {
            let lb = |id: i32, ingress: Value| {
                json!({"metadata": {"name": format!("demo-broker-{id}-external"), "namespace": "millrace"},
                       "status": {"loadBalancer": ingress}})
            };
            json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": [
                lb(0, json!({"ingress": [{"hostname": "lb0.example.com"}]})),
                lb(1, json!({"ingress": [{"ip": "203.0.113.11"}]})),
                lb(2, json!({})),
            ]})
        })
        .await;
    assert!(
        services
            .query
            .contains("labelSelector=millrace.io%2Fcluster%3Ddemo"),
        "{}",
        services.query
    );
    server
        .expect_apply(&format!("{ns}/serviceaccounts/demo-broker"))
        .await;
    let crb = server
        .expect_apply(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/millrace-broker-millrace-demo",
        )
        .await;
    assert_eq!(crb.body["roleRef"]["name"], "millrace-broker");
    assert_eq!(crb.body["subjects"][0]["namespace"], "millrace");
    let cm = server
        .expect_apply(&format!("{ns}/configmaps/demo-broker-config"))
        .await;
    let node = |id: i32| {
        cm.body["data"][format!("node-{id}.properties")]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        node(0).contains(",EXTERNAL://lb0.example.com:9094\n"),
        "{}",
        node(0)
    );
    assert!(
        node(1).contains(",EXTERNAL://203.0.113.11:9094\n"),
        "{}",
        node(1)
    );
    let advertised_2 = node(2)
        .lines()
        .find(|l| l.starts_with("advertised.listeners="))
        .unwrap_or_default()
        .to_string();
    assert!(
        !advertised_2.contains("EXTERNAL://"),
        "not advertised before it has an address: {advertised_2}"
    );
    for svc in [
        "demo-brokers",
        "demo-bootstrap",
        "demo-external-bootstrap",
        "demo-broker-0-external",
        "demo-broker-1-external",
        "demo-broker-2-external",
    ] {
        server.expect_apply(&format!("{ns}/services/{svc}")).await;
    }
    server
        .expect_apply("/apis/policy/v1/namespaces/millrace/poddisruptionbudgets/demo-broker")
        .await;
    server
        .expect_apply_with(
            "/apis/apps/v1/namespaces/millrace/statefulsets/demo-broker",
            sts_with_status(3),
        )
        .await;
    let status = server
        .expect(
            Method::PATCH,
            "/apis/millrace.io/v1alpha1/namespaces/millrace/clusters/demo/status",
            object_with_status(&cluster),
        )
        .await;
    let ready = status.body["status"]["conditions"][0].clone();
    assert_eq!(ready["reason"], "ExternalAddressPending", "{ready}");
    assert_eq!(
        ready["message"],
        "3/3 brokers ready; waiting for external addresses of listener(s) external"
    );
    server
        .expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/millrace/events",
            Value::clone,
        )
        .await;
    task.await.expect("join").expect("reconcile");
    drop(ctx);
    server.expect_no_more().await;
}

#[tokio::test]
async fn deletion_removes_the_binding_and_claims_when_asked_then_the_finalizer() {
    let (ctx, mut server) = context();
    let mut cluster = with_finalizer(minimal_cluster("kf"));
    cluster.spec.storage.delete_claim = true;
    cluster.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(fixed_now()),
    );
    let task = tokio::spawn(reconcile_cluster(Arc::new(cluster), ctx.clone()));
    server
        .expect(
            Method::DELETE,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/millrace-broker-ns1-kf",
            |_| json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )
        .await;
    let pvcs = server
        .expect(Method::DELETE, &format!("{NS1}/persistentvolumeclaims"), |_| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": []})
        })
        .await;
    assert!(
        pvcs.query.contains(
            "labelSelector=millrace.io%2Fcluster%3Dkf%2Capp.kubernetes.io%2Fcomponent%3Dbroker"
        ),
        "{}",
        pvcs.query
    );
    let fin = server
        .expect(
            Method::PATCH,
            "/apis/millrace.io/v1alpha1/namespaces/ns1/clusters/kf",
            |_| serde_json::to_value(minimal_cluster("kf")).expect("serializable"),
        )
        .await;
    assert!(
        fin.body
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op["op"] == "remove")),
        "{}",
        fin.body
    );
    task.await.expect("join").expect("reconcile");
    drop(ctx);
    server.expect_no_more().await;
}
