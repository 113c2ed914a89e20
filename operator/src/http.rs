//! The operator's HTTP endpoint: `/metrics` (Prometheus text format) and `/healthz`.
//!
//! `/healthz` answers 200 while the process runs its event loop; it deliberately does not depend
//! on leadership, so a standby replica is healthy, and not on the API server, so a flaky API
//! server does not get every operator replica restarted at once.

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramTimer, IntCounter, IntGauge, Registry, TextEncoder,
};
use std::{future::Future, net::SocketAddr, sync::Arc};

/// The operator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounter,
    failures: IntCounter,
    duration: Histogram,
    leader: IntGauge,
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounter::new(
            "millrace_operator_reconciliations_total",
            "Reconcile passes started",
        )?;
        let failures = IntCounter::new(
            "millrace_operator_reconciliation_errors_total",
            "Reconcile passes that failed and will be retried",
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "millrace_operator_reconcile_duration_seconds",
                "Time of one reconcile pass",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let leader = IntGauge::new(
            "millrace_operator_leader",
            "1 while this replica holds the leader lease",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            failures,
            duration,
            leader,
        })
    }

    /// Count a pass; the returned timer records its duration when dropped.
    pub fn reconcile_started(&self) -> HistogramTimer {
        self.reconciles.inc();
        self.duration.start_timer()
    }

    /// Count a failed pass.
    pub fn reconcile_failed(&self) {
        self.failures.inc();
    }

    /// Record whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec fails only on metric families that violate the format, which
        // registration already rejected.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The router, separate from [`serve`] so it can be tested without a socket.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .with_state(metrics)
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
}

/// Serve until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_and_healthz_answer_over_http() {
        let metrics = Arc::new(Metrics::new().expect("metrics register"));
        metrics.set_leader(true);
        drop(metrics.reconcile_started());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(metrics))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        let m = get("/metrics").await;
        assert!(m.contains("millrace_operator_leader 1"), "{m}");
        assert!(
            m.contains("millrace_operator_reconciliations_total 1"),
            "{m}"
        );
        let _ = stop.send(());
        server.await.expect("join").expect("serve");
    }
}
