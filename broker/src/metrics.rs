//! Prometheus metrics, named after Kafka's JMX metrics so dashboards translate directly:
//! `kafka.network:type=RequestMetrics,name=RequestsPerSec,request=X` becomes
//! `kafka_network_requests_total{request="X"}`, `BrokerTopicMetrics.BytesInPerSec` becomes
//! `kafka_server_brokertopicmetrics_bytes_in_total`, and so on. Log sizes and partition counts
//! are read from the logs at scrape time rather than kept as counters that could drift.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::broker::Broker;

/// The broker's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests handled, by API.
    pub requests: IntCounterVec,
    /// Request handling latency (decode to response encoded), by API.
    pub request_seconds: HistogramVec,
    /// Requests answered with an error or refused at the frame level, by API and error.
    pub errors: IntCounterVec,
    /// Record bytes appended by producers.
    pub bytes_in: IntCounter,
    /// Record bytes returned to fetchers.
    pub bytes_out: IntCounter,
    /// Records appended.
    pub messages_in: IntCounter,
    /// Hosted partitions.
    pub partitions: IntGauge,
    /// Open client connections.
    pub connections: IntGauge,
    /// Log cleaner (compaction) activity.
    pub cleaner: CleanerMetrics,
    log_size: prometheus::IntGaugeVec,
    log_end_offset: prometheus::IntGaugeVec,
    log_start_offset: prometheus::IntGaugeVec,
}

/// The log cleaner's metrics (Kafka's `kafka.log:type=LogCleaner` group, as counters).
#[derive(Debug, Clone)]
pub struct CleanerMetrics {
    /// Passes that compacted a log.
    pub cleanings: IntCounter,
    /// Bytes of the segments rewritten.
    pub bytes_read: IntCounter,
    /// Bytes of the segments that replaced them.
    pub bytes_written: IntCounter,
    /// Passes that failed.
    pub errors: IntCounter,
    /// Unix seconds of the last pass that compacted a log.
    pub last_clean: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let gauge_vec = |name: &str, help: &str| {
            let g = prometheus::IntGaugeVec::new(Opts::new(name, help), &["topic", "partition"])
                .expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "kafka_network_request_total_time_seconds",
                "Time from a request's arrival to its response being ready (RequestMetrics.TotalTimeMs)",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["request"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(request_seconds.clone()))
            .expect("metric names are unique");
        Metrics {
            requests: counter_vec(
                "kafka_network_requests_total",
                "Requests handled (RequestMetrics.RequestsPerSec)",
                &["request"],
            ),
            errors: counter_vec(
                "kafka_network_errors_total",
                "Errors returned or connections closed for bad requests (RequestMetrics.ErrorsPerSec)",
                &["request", "error"],
            ),
            request_seconds,
            bytes_in: counter(
                "kafka_server_brokertopicmetrics_bytes_in_total",
                "Record bytes appended (BrokerTopicMetrics.BytesInPerSec)",
            ),
            bytes_out: counter(
                "kafka_server_brokertopicmetrics_bytes_out_total",
                "Record bytes fetched (BrokerTopicMetrics.BytesOutPerSec)",
            ),
            messages_in: counter(
                "kafka_server_brokertopicmetrics_messages_in_total",
                "Records appended (BrokerTopicMetrics.MessagesInPerSec)",
            ),
            partitions: gauge(
                "kafka_server_replicamanager_partition_count",
                "Partitions hosted (ReplicaManager.PartitionCount)",
            ),
            connections: gauge(
                "kafka_server_socket_server_connection_count",
                "Open client connections",
            ),
            cleaner: CleanerMetrics {
                cleanings: counter(
                    "kafka_log_cleaner_cleanings_total",
                    "Cleaning passes that compacted a log",
                ),
                bytes_read: counter(
                    "kafka_log_cleaner_bytes_read_total",
                    "Bytes of segments the cleaner rewrote",
                ),
                bytes_written: counter(
                    "kafka_log_cleaner_bytes_written_total",
                    "Bytes of the cleaned segments that replaced them (LogCleaner.cleaner-recopy-percent = written / read)",
                ),
                errors: counter(
                    "kafka_log_cleaner_errors_total",
                    "Cleaning passes that failed (the log stays consistent; the next tick retries)",
                ),
                last_clean: gauge(
                    "kafka_log_cleaner_last_clean_timestamp_seconds",
                    "Unix time of the last pass that compacted a log; 0 before the first",
                ),
            },
            log_size: gauge_vec("kafka_log_log_size_bytes", "Size of a partition's log (Log.Size)"),
            log_end_offset: gauge_vec(
                "kafka_log_log_end_offset",
                "Next offset of a partition's log (Log.LogEndOffset)",
            ),
            log_start_offset: gauge_vec(
                "kafka_log_log_start_offset",
                "First offset of a partition's log (Log.LogStartOffset)",
            ),
            registry,
        }
    }

    /// Renders the Prometheus text exposition, refreshing per-partition gauges and the
    /// cluster-level gauges a single node knows the answer to.
    pub fn render(&self, broker: &Broker) -> String {
        self.log_size.reset();
        self.log_end_offset.reset();
        self.log_start_offset.reset();
        for p in broker.all_partitions() {
            let labels = [p.tp.topic.as_str(), &p.tp.partition.to_string()];
            let log = p.log.lock();
            self.log_size
                .with_label_values(&labels)
                .set(log.size_bytes() as i64);
            self.log_end_offset
                .with_label_values(&labels)
                .set(log.log_end_offset());
            self.log_start_offset
                .with_label_values(&labels)
                .set(log.log_start_offset());
        }
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        let mut text = String::from_utf8_lossy(&out).into_owned();
        // Cluster-level gauges from the metadata image. Controller gauges are non-zero only on
        // the active controller, as Kafka reports them.
        let image = broker.image();
        let me = broker.config.node_id;
        let under_replicated = image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.leader == me && p.isr.len() < p.replicas.len())
            .count();
        let active = broker.cluster.is_active_controller();
        let (offline, live, fenced) = if active {
            let offline = image
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .filter(|p| !image.is_live(p.leader))
                .count();
            let live = image.live_brokers().count();
            (offline, live, image.brokers.len() - live)
        } else {
            (0, 0, 0)
        };
        let gauge = |text: &mut String, name: &str, help: &str, value: usize| {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            ));
        };
        gauge(
            &mut text,
            "kafka_server_replicamanager_under_replicated_partitions",
            "Partitions this broker leads with fewer in-sync replicas than replicas",
            under_replicated,
        );
        gauge(
            &mut text,
            "kafka_controller_kafkacontroller_active_controller_count",
            "1 on the active controller (the Raft leader of the metadata quorum)",
            usize::from(active),
        );
        gauge(
            &mut text,
            "kafka_controller_kafkacontroller_offline_partitions_count",
            "Partitions without a live leader (active controller only)",
            offline,
        );
        gauge(
            &mut text,
            "kafka_controller_kafkacontroller_active_broker_count",
            "Registered, unfenced brokers (active controller only)",
            live,
        );
        gauge(
            &mut text,
            "kafka_controller_kafkacontroller_fenced_broker_count",
            "Registered, fenced brokers (active controller only)",
            fenced,
        );
        gauge(
            &mut text,
            "kafka_server_metadataloader_current_metadata_offset",
            "The metadata log index this broker has applied",
            broker.reconciled_index() as usize,
        );
        text.push_str(&broker.groups.render_metrics());
        text
    }
}
