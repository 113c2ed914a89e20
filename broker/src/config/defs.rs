//! The table of every configuration key the broker understands. `docs/CONFIGURATION.md` is
//! written from this table; a test keeps the two in step.

/// Kafka's config types, numbered as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// true/false.
    Boolean = 1,
    /// Free text.
    String = 2,
    /// 32-bit integer.
    Int = 3,
    /// 64-bit integer.
    Long = 5,
    /// Floating point.
    Double = 6,
    /// Comma-separated list.
    List = 7,
    /// A secret; never echoed.
    Password = 9,
}

/// A value check beyond the type; the error says why, for the user.
pub type Check = fn(&str) -> Result<(), String>;

/// One configuration key.
#[derive(Debug)]
pub struct ConfigDef {
    /// Kafka's property name.
    pub name: &'static str,
    /// Its type.
    pub ty: ConfigType,
    /// The default, as text (`None`: unset).
    pub default: Option<&'static str>,
    /// Smallest allowed value for integers.
    pub min: i64,
    /// For a topic config: the broker key that supplies its cluster-wide default.
    pub broker_synonym: Option<&'static str>,
    /// Whether AlterConfigs may change it at run time (topic configs always may).
    pub dynamic: bool,
    /// Extra validation beyond the type.
    pub check: Option<Check>,
    /// What it means.
    pub doc: &'static str,
}

const fn broker(
    name: &'static str,
    ty: ConfigType,
    default: Option<&'static str>,
    min: i64,
    dynamic: bool,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        ty,
        default,
        min,
        broker_synonym: None,
        dynamic,
        check: None,
        doc,
    }
}

const fn topic(
    name: &'static str,
    synonym: &'static str,
    ty: ConfigType,
    min: i64,
    check: Option<Check>,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        ty,
        default: None,
        min,
        broker_synonym: Some(synonym),
        dynamic: true,
        check,
        doc,
    }
}

/// [`broker`] with a validator.
const fn checked(def: ConfigDef, check: Check) -> ConfigDef {
    ConfigDef {
        check: Some(check),
        ..def
    }
}

fn protocol_map(v: &str) -> Result<(), String> {
    super::listener::parse_protocol_map(v).map(|_| ())
}

fn port(v: &str) -> Result<(), String> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("expected a port number, 1 to 65535".into()),
    }
}

fn keystore_type(v: &str) -> Result<(), String> {
    match v.to_ascii_uppercase().as_str() {
        "PEM" | "JKS" | "PKCS12" => Ok(()),
        _ => Err("expected PEM, JKS or PKCS12".into()),
    }
}

fn cleanup_policy(v: &str) -> Result<(), String> {
    for p in v.split(',').map(str::trim) {
        if !matches!(p, "delete" | "compact") {
            return Err(format!(
                "`{p}` is not a cleanup policy; use delete, compact or both"
            ));
        }
    }
    Ok(())
}

fn timestamp_type(v: &str) -> Result<(), String> {
    match v {
        "CreateTime" | "LogAppendTime" => Ok(()),
        _ => Err("expected CreateTime or LogAppendTime".into()),
    }
}

fn compression_type(v: &str) -> Result<(), String> {
    match v {
        "producer" => Ok(()),
        "gzip" | "snappy" | "lz4" | "zstd" | "uncompressed" => Err(format!(
            "broker-side recompression to `{v}` is not supported; use `producer` (batches are stored as the producer compressed them)"
        )),
        _ => Err("expected producer, uncompressed, gzip, snappy, lz4 or zstd".into()),
    }
}

fn positive_ratio(v: &str) -> Result<(), String> {
    match v.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(()),
        _ => Err("expected a number between 0 and 1".into()),
    }
}

use ConfigType::{Boolean, Double, Int, List, Long};

/// Every key, broker keys first, then topic keys.
pub static DEFS: &[ConfigDef] = &[
    broker("node.id", Int, Some("1"), 0, false, "This node's id in the cluster (alias `broker.id`)."),
    broker("listeners", List, Some("PLAINTEXT://127.0.0.1:9092"), 0, false, "Where this node listens: comma-separated `NAME://host:port`. An empty host or 0.0.0.0 listens on every interface. A name (case-insensitive, kept upper case) can be anything `listener.security.protocol.map` maps; names in `controller.listener.names` are controller listeners, the others Kafka listeners. Only PLAINTEXT listeners are served: one mapped to SSL, SASL_PLAINTEXT or SASL_SSL stops start-up (TLS and SASL are not implemented yet)."),
    broker("advertised.listeners", List, None, 0, false, "The addresses given to clients, `NAME://host:port`, each naming a Kafka listener of `listeners` (not a controller listener). A client is answered (Metadata, DescribeCluster, FindCoordinator) with the brokers' addresses for the listener its request arrived on; a broker that does not advertise that listener is left out. Defaults to `listeners` (a wildcard host is advertised as `localhost`)."),
    checked(broker("listener.security.protocol.map", List, Some(super::listener::DEFAULT_PROTOCOL_MAP), 0, false, "Each listener's security protocol, `NAME:PROTOCOL,...` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL). A listener missing from it is an error. When this key is unset, controller listeners not in the default map are PLAINTEXT (as in Kafka's KRaft mode)."), protocol_map),
    broker("inter.broker.listener.name", ConfigType::String, Some("PLAINTEXT"), 0, false, "The listener brokers will use to replicate from one another: must be an advertised listener. Checked and recorded; there is no replication between brokers yet."),
    broker("log.dirs", List, Some("./data"), 0, false, "Directories holding partition logs (alias `log.dir`). The first also holds the broker's metadata."),
    broker("admin.listener", ConfigType::String, Some("127.0.0.1:9180"), 0, false, "HTTP address (IP:port) serving `/metrics` (Prometheus), `/livez` and `/readyz`. When set, it wins over `admin.http.port`."),
    checked(broker("admin.http.port", Int, None, 1, false, "Port of the HTTP admin server on every interface (`0.0.0.0:PORT`), as the Kubernetes operator renders it. Used only when `admin.listener` is not set: an explicit `admin.listener` (e.g. `--override admin.listener=127.0.1.2:8080`) takes precedence."), port),
    broker("broker.rack", ConfigType::String, None, 0, false, "The rack (zone) of this broker, reported in Metadata and DescribeCluster."),
    broker("process.roles", List, Some("broker,controller"), 0, false, "What this node runs: `broker`, `controller`, or both (combined mode). Controllers are Raft voters of the metadata quorum; a broker-only node follows the metadata log as a Raft learner."),
    broker("controller.quorum.voters", List, None, 0, false, "The metadata quorum's voters, `id@host:port,...` (the controller listeners). Unset: a quorum of one in this process, with no controller listener (the single-node default)."),
    broker("controller.listener.names", List, Some("CONTROLLER"), 0, false, "Names in `listeners` that are controller listeners (gRPC: Raft and broker registration, PLAINTEXT) rather than Kafka listeners. Without one, a voter listens on its own `controller.quorum.voters` address."),
    broker("cluster.id", ConfigType::String, None, 0, false, "The cluster id the first active controller writes to the metadata log (22 characters of URL-safe base64, as `kafka-storage random-uuid` prints). Unset: a random one."),
    broker("broker.heartbeat.interval.ms", Int, Some("2000"), 10, false, "How often a broker heartbeats to the active controller."),
    broker("broker.session.timeout.ms", Int, Some("9000"), 10, false, "A broker whose heartbeats stop for this long is fenced: it leads nothing and is left out of Metadata until it heartbeats again."),
    broker("controller.quorum.election.timeout.ms", Int, Some("1000"), 10, false, "A voter that hears no leader for between this and twice this long starts an election."),
    broker("controller.quorum.request.timeout.ms", Int, Some("2000"), 10, false, "Deadline of one Raft or controller RPC."),
    broker("metadata.log.max.snapshot.interval.records", Long, Some("1000"), 1, false, "Take a metadata snapshot after this many new log entries, and drop the entries it covers (Kafka counts bytes, `metadata.log.max.record.bytes.between.snapshots`; openraft counts entries)."),
    broker("auto.create.topics.enable", Boolean, Some("true"), 0, false, "Create a topic when a client asks Metadata for one that does not exist."),
    broker("num.partitions", Int, Some("1"), 1, true, "Partitions of an auto-created topic, and of CreateTopics asking for the default (-1)."),
    broker("default.replication.factor", Int, Some("1"), 1, true, "Replication factor of auto-created topics and of CreateTopics asking for the default."),
    broker("delete.topic.enable", Boolean, Some("true"), 0, false, "Whether DeleteTopics is allowed."),
    broker("socket.request.max.bytes", Int, Some("104857600"), 1, false, "Largest request frame accepted; a larger length prefix closes the connection before anything is allocated."),
    broker("connections.max.idle.ms", Long, Some("600000"), 1, false, "Idle connections are closed after this long."),
    broker("log.retention.check.interval.ms", Long, Some("300000"), 1, false, "How often retention (time and size) is applied and `segment.ms` rolls are checked."),
    broker("log.flush.scheduler.interval.ms", Long, Some("1000"), 1, false, "How often logs are checked for a due `flush.ms` flush."),
    broker("log.flush.offset.checkpoint.interval.ms", Long, Some("60000"), 1, false, "How often the recovery-point, log-start-offset and high-watermark checkpoint files are written."),
    broker("log.retention.hours", Int, None, -1, false, "Retention in hours; used when `log.retention.ms` and `log.retention.minutes` are unset (Kafka's default is 168)."),
    broker("log.retention.minutes", Int, None, -1, false, "Retention in minutes; used when `log.retention.ms` is unset."),
    broker("log.roll.hours", Int, None, 1, false, "Roll period in hours; used when `log.roll.ms` is unset."),
    broker("log.cleanup.policy", List, Some("delete"), 0, true, "Default of `cleanup.policy`."),
    broker("log.retention.ms", Long, Some("604800000"), -1, true, "Default of `retention.ms`."),
    broker("log.retention.bytes", Long, Some("-1"), -1, true, "Default of `retention.bytes`."),
    broker("log.segment.bytes", Int, Some("1073741824"), 14, true, "Default of `segment.bytes`."),
    broker("log.roll.ms", Long, Some("604800000"), 1, true, "Default of `segment.ms`."),
    broker("log.index.size.max.bytes", Int, Some("10485760"), 8, true, "Default of `segment.index.bytes`."),
    broker("log.index.interval.bytes", Int, Some("4096"), 0, true, "Default of `index.interval.bytes`."),
    broker("log.flush.interval.messages", Long, Some("9223372036854775807"), 1, true, "Default of `flush.messages`."),
    broker("log.flush.interval.ms", Long, Some("9223372036854775807"), 0, true, "Default of `flush.ms`."),
    broker("message.max.bytes", Int, Some("1048588"), 0, true, "Default of `max.message.bytes`."),
    broker("log.message.timestamp.type", ConfigType::String, Some("CreateTime"), 0, true, "Default of `message.timestamp.type`."),
    broker("log.message.timestamp.before.max.ms", Long, Some("9223372036854775807"), 0, true, "Default of `message.timestamp.before.max.ms`."),
    broker("log.message.timestamp.after.max.ms", Long, Some("3600000"), 0, true, "Default of `message.timestamp.after.max.ms`."),
    broker("min.insync.replicas", Int, Some("1"), 1, true, "Default of the topic's `min.insync.replicas`."),
    broker("compression.type", ConfigType::String, Some("producer"), 0, true, "Default of the topic's `compression.type`."),
    broker("log.cleaner.enable", Boolean, Some("true"), 0, false, "Run the log cleaner, which compacts topics whose `cleanup.policy` includes `compact`."),
    broker("log.cleaner.backoff.ms", Long, Some("15000"), 1, false, "How often the log cleaner looks for compacted logs that are due for cleaning."),
    broker("log.cleaner.delete.retention.ms", Long, Some("86400000"), 0, true, "Default of `delete.retention.ms`."),
    broker("log.cleaner.min.cleanable.ratio", Double, Some("0.5"), 0, true, "Default of `min.cleanable.dirty.ratio`."),
    broker("log.cleaner.min.compaction.lag.ms", Long, Some("0"), 0, true, "Default of `min.compaction.lag.ms`."),
    broker("log.cleaner.max.compaction.lag.ms", Long, Some("9223372036854775807"), 1, true, "Default of `max.compaction.lag.ms`."),
    broker("log.segment.delete.delay.ms", Long, Some("60000"), 0, true, "Default of `file.delete.delay.ms`."),
    broker("unclean.leader.election.enable", Boolean, Some("false"), 0, true, "Default of the topic's `unclean.leader.election.enable`."),
    broker("offsets.topic.replication.factor", Int, Some("1"), 1, false, "Replication factor of `__consumer_offsets`, used when it is created (on the first FindCoordinator); capped at the number of live brokers."),
    broker("offsets.topic.num.partitions", Int, Some("50"), 1, false, "Partitions of `__consumer_offsets`, used when it is created (on the first FindCoordinator); a group's partition is `abs(groupId.hashCode()) % partitions`, as in Kafka."),
    broker("offsets.topic.segment.bytes", Int, Some("104857600"), 14, false, "`segment.bytes` of `__consumer_offsets`, used when it is created (kept small so compaction can work)."),
    broker("offsets.retention.minutes", Int, Some("10080"), 1, false, "Committed offsets of a group expire this long after it became empty (or, for a group that only commits offsets, after their commit)."),
    broker("offsets.retention.check.interval.ms", Long, Some("600000"), 1, false, "How often expired committed offsets are removed."),
    broker("offset.metadata.max.bytes", Int, Some("4096"), 0, false, "Largest metadata string an OffsetCommit may store with an offset (OFFSET_METADATA_TOO_LARGE beyond)."),
    broker("group.initial.rebalance.delay.ms", Int, Some("3000"), 0, false, "How long the first rebalance of an empty group waits for more members, extended while new ones arrive (up to the rebalance timeout)."),
    broker("group.min.session.timeout.ms", Int, Some("6000"), 0, false, "Smallest `session.timeout.ms` a member may ask for (INVALID_SESSION_TIMEOUT below)."),
    broker("group.max.session.timeout.ms", Int, Some("1800000"), 0, false, "Largest `session.timeout.ms` a member may ask for (INVALID_SESSION_TIMEOUT above)."),
    broker("group.max.size", Int, Some("2147483647"), 1, false, "Most members a group may have (GROUP_MAX_SIZE_REACHED beyond)."),
    topic("cleanup.policy", "log.cleanup.policy", List, 0, Some(cleanup_policy), "`delete` (retention by time and size), `compact` (keep the latest record per key) or both."),
    topic("retention.ms", "log.retention.ms", Long, -1, None, "Segments whose newest record is older than this are deleted (-1: keep forever)."),
    topic("retention.bytes", "log.retention.bytes", Long, -1, None, "Oldest segments are deleted while the partition is larger than this (-1: no limit)."),
    topic("segment.bytes", "log.segment.bytes", Int, 14, None, "A segment is rolled when it would grow past this size."),
    topic("segment.ms", "log.roll.ms", Long, 1, None, "A non-empty segment is rolled after this long, so retention can delete it."),
    topic("segment.index.bytes", "log.index.size.max.bytes", Int, 8, None, "Largest offset index of a segment; a full index rolls the segment."),
    topic("index.interval.bytes", "log.index.interval.bytes", Int, 0, None, "Bytes of log between two offset-index entries."),
    topic("flush.messages", "log.flush.interval.messages", Long, 1, None, "fsync after this many messages (default: never by count; rely on replication and the page cache)."),
    topic("flush.ms", "log.flush.interval.ms", Long, 0, None, "fsync when the oldest unflushed data is this old (default: never by time)."),
    topic("max.message.bytes", "message.max.bytes", Int, 0, None, "Largest record batch (after compression) the topic accepts; larger ones get MESSAGE_TOO_LARGE."),
    topic("message.timestamp.type", "log.message.timestamp.type", ConfigType::String, 0, Some(timestamp_type), "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock."),
    topic("message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", Long, 0, None, "With CreateTime, reject batches whose timestamp is further than this in the past."),
    topic("message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", Long, 0, None, "With CreateTime, reject batches whose timestamp is further than this in the future."),
    topic("min.insync.replicas", "min.insync.replicas", Int, 1, None, "With acks=all, the fewest in-sync replicas that must have a write (a single-node broker always has one)."),
    topic("compression.type", "compression.type", ConfigType::String, 0, Some(compression_type), "Only `producer` is supported: batches are stored as the producer compressed them."),
    topic("delete.retention.ms", "log.cleaner.delete.retention.ms", Long, 0, None, "How long tombstones are kept on a compacted topic."),
    topic("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", Double, 0, Some(positive_ratio), "Compaction starts when this fraction of the log is uncleaned."),
    topic("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", Long, 0, None, "A record stays uncompacted for at least this long."),
    topic("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", Long, 1, None, "A record becomes eligible for compaction at most this long after it is written."),
    topic("file.delete.delay.ms", "log.segment.delete.delay.ms", Long, 0, None, "Kept for compatibility; deleted segments are unlinked at once (open readers keep their file)."),
    topic("unclean.leader.election.enable", "unclean.leader.election.enable", Boolean, 0, None, "Allow an out-of-sync replica to become leader, losing data."),
];

/// Keys set per listener as `listener.name.<listener>.<key>` (Kafka's prefix: the listener name
/// in lower case). They are recognised so that a configuration the Kubernetes operator renders
/// parses, and start-up then fails on the listener's protocol (TLS/SASL are not implemented yet)
/// rather than on an unknown key. No PLAINTEXT listener reads them.
pub static LISTENER_DEFS: &[ConfigDef] = &[
    broker("sasl.enabled.mechanisms", List, None, 0, false, "SASL mechanisms the listener offers (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`). Only meaningful for a SASL listener, which this build does not serve yet."),
    checked(broker("ssl.keystore.type", ConfigType::String, None, 0, false, "`PEM` (with the two locations below), `JKS` or `PKCS12`. Only meaningful for a TLS listener, which this build does not serve yet."), keystore_type),
    broker("ssl.certificate.location", ConfigType::String, None, 0, false, "PEM file with the listener's certificate chain (Millrace's key: Kafka takes inline PEM or a keystore file). Only meaningful for a TLS listener, which this build does not serve yet."),
    broker("ssl.key.location", ConfigType::String, None, 0, false, "PEM file with the listener's private key (Millrace's key). Only meaningful for a TLS listener, which this build does not serve yet."),
];
