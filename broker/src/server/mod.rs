//! The network side: the Kafka listeners, the HTTP admin port, and shutdown.
//!
//! # Shutdown
//! 1. SIGTERM (or SIGINT) flips the shutdown signal: listeners stop accepting, `/readyz` fails.
//! 2. Each connection stops reading new requests, finishes the ones it has read, writes their
//!    responses and closes; the server waits for that, up to a deadline.
//! 3. The storage shuts down cleanly (see [`crate::broker::Broker::shutdown`]) and the process
//!    exits 0.

mod admin;
mod connection;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use crate::broker::Broker;

/// How long connections get to finish their in-flight requests at shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs the broker until a shutdown signal, then shuts it down cleanly.
pub async fn run(broker: Arc<Broker>) -> anyhow::Result<()> {
    let shutdown_tx = broker.shutdown_signal().clone();
    let shutdown_rx = shutdown_tx.subscribe();
    let mut listeners = Vec::new();
    // A controller-only node serves no Kafka clients.
    let kafka_listeners = if broker.config.cluster.broker {
        broker.config.listeners.clone()
    } else {
        Vec::new()
    };
    for l in &kafka_listeners {
        let addr = l.bind_addr();
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("failed to bind listener {}://{addr}", l.name))?;
        tracing::info!(listener = %l.name, address = %addr, "accepting Kafka clients");
        listeners.push((Arc::<str>::from(l.name.as_str()), listener));
    }
    let admin = TcpListener::bind(broker.config.admin_listener)
        .await
        .with_context(|| {
            format!(
                "failed to bind the HTTP admin server to {} (admin.listener, else admin.http.port)",
                broker.config.admin_listener
            )
        })?;
    tracing::info!(address = %broker.config.admin_listener, "serving /metrics, /livez, /readyz");

    let mut tasks = JoinSet::new();
    tasks.spawn(admin::serve(broker.clone(), admin, shutdown_rx.clone()));
    tasks.spawn(housekeeping(broker.clone(), shutdown_rx.clone()));
    // Loads __consumer_offsets, then runs group timers and offsets retention.
    tasks.spawn(crate::coordinator::group::run(
        broker.clone(),
        shutdown_rx.clone(),
    ));
    let mut accept_loops = JoinSet::new();
    for (name, listener) in listeners {
        accept_loops.spawn(accept(broker.clone(), name, listener, shutdown_rx.clone()));
    }
    broker.set_ready(true);

    wait_for_signal().await;
    tracing::info!("shutting down");
    broker.set_ready(false);
    let _ = shutdown_tx.send(true);
    // Each accept loop returns after its connections have drained (or the deadline).
    while accept_loops.join_next().await.is_some() {}
    tasks.abort_all();
    // Fence this broker at once rather than after the session timeout, then stop Raft.
    broker.cluster.controlled_shutdown().await;
    broker.cluster.shutdown().await;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.shutdown())
        .await
        .context("storage shutdown task failed")??;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Accepts connections on the listener called `name` (which its clients' requests carry, so
/// Metadata can answer with that listener's addresses) until shutdown, then drains them.
async fn accept(
    broker: Arc<Broker>,
    name: Arc<str>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    conns.spawn(connection::serve(broker.clone(), stream, peer, name.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = conns.len(),
            "connections did not drain in time; closing them"
        );
        conns.abort_all();
    }
}

/// Retention, segment rolls, scheduled flushes, checkpoints and log cleaning, each on its own
/// interval.
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let c = &broker.config;
    let mut retention = tokio::time::interval(c.retention_check_interval);
    let mut flush = tokio::time::interval(c.flush_scheduler_interval);
    let mut checkpoint = tokio::time::interval(c.checkpoint_interval);
    let mut cleaner = tokio::time::interval(c.log_cleaner_backoff);
    for t in [&mut retention, &mut flush, &mut checkpoint, &mut cleaner] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut cleaning: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        // Storage work blocks on disk: run it off the async workers.
        let b = broker.clone();
        tokio::select! {
            _ = retention.tick() => { let _ = tokio::task::spawn_blocking(move || b.apply_retention()).await; }
            _ = flush.tick() => { let _ = tokio::task::spawn_blocking(move || b.flush_due()).await; }
            _ = cleaner.tick() => {
                // Not awaited: a long pass must not hold up flushes and retention. One at a time.
                if cleaning.as_ref().is_none_or(|pass| pass.is_finished()) {
                    cleaning = Some(tokio::task::spawn_blocking(move || b.clean_logs()));
                }
            }
            _ = checkpoint.tick() => {
                let r = tokio::task::spawn_blocking(move || b.write_checkpoints()).await;
                if let Ok(Err(e)) = r {
                    tracing::error!(error = %crate::handlers::error::message(&e), "checkpoint failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
