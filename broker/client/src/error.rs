//! The one error type of the client, and Kafka error codes with their names and remedies.
//!
//! Every failure a caller can see is an [`Error`]. Errors the cluster reports carry a
//! [`KafkaCode`]: its Kafka name (`TOPIC_ALREADY_EXISTS`, exactly as Kafka's `Errors` enum and
//! the Kafka tools print it) and [`KafkaCode::hint`], a sentence saying what to do about it.
//! [`Error::is_retriable`] and [`Error::invalidates_metadata`] are what the routing layer
//! branches on; they follow Kafka's classification of each code.

use std::{fmt, io, time::Duration};

use kafka_protocol::{messages::ApiKey, ResponseError};

/// A Kafka error code as returned by a broker (never 0: success is not an error).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaCode(i16);

impl KafkaCode {
    /// The code for a non-zero wire value; `None` for 0 (no error).
    pub fn from_code(code: i16) -> Option<KafkaCode> {
        (code != 0).then_some(KafkaCode(code))
    }

    /// The code of a `kafka-protocol` error kind.
    pub fn of(error: ResponseError) -> KafkaCode {
        KafkaCode(error.code())
    }

    /// The numeric wire value.
    pub fn code(self) -> i16 {
        self.0
    }

    /// The `kafka-protocol` error kind.
    pub fn kind(self) -> ResponseError {
        ResponseError::try_from_code(self.0).unwrap_or(ResponseError::Unknown(self.0))
    }

    /// Kafka's name for the code, e.g. `NOT_LEADER_OR_FOLLOWER`.
    pub fn name(self) -> String {
        match self.kind() {
            ResponseError::Unknown(code) => format!("UNKNOWN_ERROR_CODE_{code}"),
            // The crate names each kind after Kafka's enum constant in CamelCase.
            kind => screaming_snake(&kind.to_string()),
        }
    }

    /// Whether Kafka classifies the error as transient (a retry may succeed).
    pub fn is_retriable(self) -> bool {
        self.kind().is_retriable()
    }

    /// Whether the error means the client's view of leaders or coordinators is out of date.
    pub fn invalidates_metadata(self) -> bool {
        use ResponseError as E;
        matches!(
            self.kind(),
            E::NotLeaderOrFollower
                | E::LeaderNotAvailable
                | E::UnknownTopicOrPartition
                | E::UnknownTopicId
                | E::ReplicaNotAvailable
                | E::FencedLeaderEpoch
                | E::UnknownLeaderEpoch
                | E::KafkaStorageError
                | E::NotController
                | E::NotCoordinator
                | E::CoordinatorNotAvailable
                | E::BrokerNotAvailable
        )
    }

    /// One sentence on what to do about the error.
    pub fn hint(self) -> &'static str {
        use ResponseError as E;
        match self.kind() {
            E::UnknownTopicOrPartition | E::UnknownTopicId => {
                "Check the topic name and partition (`millrace topics list`), or create the topic first."
            }
            E::TopicAlreadyExists => {
                "Pick another name, or change the existing topic with `topics alter` or `configs alter`."
            }
            E::InvalidTopicException => {
                "Use 1 to 249 characters from ASCII letters, digits, '.', '_' and '-' (not '.' or '..' alone)."
            }
            E::InvalidPartitions => {
                "Give a partition count above zero, and above the current count when adding partitions."
            }
            E::InvalidReplicationFactor => {
                "Use a replication factor between 1 and the number of brokers in the cluster."
            }
            E::InvalidReplicaAssignment => {
                "List each partition's replicas as distinct ids of live brokers, the same number for every partition."
            }
            E::InvalidConfig => {
                "Check the config name and value against the broker's configuration reference (docs/CONFIGURATION.md)."
            }
            E::PolicyViolation => "The cluster's policy refused the change; ask its operator what it allows.",
            E::TopicDeletionDisabled => "Enable topic deletion on the brokers (delete.topic.enable=true).",
            E::NotLeaderOrFollower | E::LeaderNotAvailable | E::FencedLeaderEpoch | E::UnknownLeaderEpoch => {
                "Leadership is moving; retry in a moment (the client refreshes its metadata by itself)."
            }
            E::RequestTimedOut => {
                "The broker did not finish in time; retry, and check the broker's load and replication if it persists."
            }
            E::NotEnoughReplicas | E::NotEnoughReplicasAfterAppend => {
                "Fewer replicas are in sync than min.insync.replicas; bring brokers back, or write with fewer acks."
            }
            E::MessageTooLarge | E::RecordListTooLarge => {
                "Send smaller records or batches, or raise max.message.bytes on the topic."
            }
            E::OffsetOutOfRange => {
                "Seek to an offset inside the log (earliest or latest); retention or delete-records moved the start."
            }
            E::CorruptMessage | E::InvalidRecord => {
                "The broker refused the batch as malformed; check the producer's encoding and compression."
            }
            E::UnsupportedCompressionType => "Use a compression codec the broker supports (none, gzip, snappy, lz4, zstd).",
            E::InvalidRequiredAcks => "Use acks 0, 1 or all (-1).",
            E::KafkaStorageError => "A broker's disk failed for this partition; check the broker's log directories.",
            E::OutOfOrderSequenceNumber | E::InvalidProducerEpoch | E::ProducerFenced | E::UnknownProducerId => {
                "Restart the producer: its idempotence state no longer matches the broker's."
            }
            E::CoordinatorNotAvailable | E::NotCoordinator | E::CoordinatorLoadInProgress => {
                "The group coordinator is starting or moving; retry in a moment."
            }
            E::GroupIdNotFound => "Check the group id (`millrace groups list`).",
            E::InvalidGroupId => "Give a non-empty group id.",
            E::NonEmptyGroup => "Stop the group's consumers first: only an empty group can be deleted.",
            E::GroupSubscribedToTopic => {
                "Stop the consumers subscribed to the topic before deleting its committed offsets."
            }
            E::UnknownMemberId | E::IllegalGeneration | E::RebalanceInProgress | E::FencedInstanceId => {
                "The group's membership changed; stop its consumers, or retry once the group is stable."
            }
            E::UnstableOffsetCommit => "A transaction is still committing offsets; retry in a moment.",
            E::TopicAuthorizationFailed
            | E::GroupAuthorizationFailed
            | E::ClusterAuthorizationFailed
            | E::TransactionalIdAuthorizationFailed => {
                "Grant this client's principal the needed ACL, or connect with other credentials."
            }
            E::UnsupportedVersion => {
                "The broker does not implement this request version; upgrade the broker or avoid the feature."
            }
            E::InvalidRequest => "The broker rejected the request as invalid; check the arguments.",
            E::ReassignmentInProgress => "Wait for the running reassignment to finish (or cancel it) first.",
            E::NoReassignmentInProgress => "There is no reassignment to cancel or list for this partition.",
            E::ElectionNotNeeded => "The preferred replica already leads the partition; nothing to do.",
            E::PreferredLeaderNotAvailable | E::EligibleLeadersNotAvailable => {
                "No eligible replica is in sync; bring the replicas back before electing a leader."
            }
            E::ThrottlingQuotaExceeded => "The request exceeded a quota; retry more slowly.",
            E::ResourceNotFound => "Check the resource name (a topic name or a broker id).",
            E::BrokerNotAvailable => "A broker is down; check the cluster, then retry.",
            E::UnknownServerError => "The broker failed unexpectedly; its log says why.",
            kind if kind.is_retriable() => {
                "A transient condition; retry, and check the cluster's health if it persists."
            }
            _ => "See Kafka's description of this error code; the broker's log may say more.",
        }
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Debug for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// `NotLeaderOrFollower` → `NOT_LEADER_OR_FOLLOWER`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster answered with a Kafka error code.
    #[error("{context}: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        /// The error code.
        code: KafkaCode,
        /// What was being done, e.g. "create topic `orders`".
        context: String,
        /// The broker's own error message, when it sent one.
        message: Option<String>,
    },
    /// A TCP connection could not be opened.
    #[error("could not connect to {addr}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A connection broke while requests were in flight or being sent.
    #[error("connection to {addr} failed")]
    Io {
        /// `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No response within the deadline.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// Client and broker share no version of an API.
    #[error("broker {addr} does not support {api:?} at any version this client speaks ({client_min}..={client_max}; broker: {broker})")]
    UnsupportedApi {
        /// `host:port`.
        addr: String,
        /// The API.
        api: ApiKey,
        /// Lowest version the client implements.
        client_min: i16,
        /// Highest version the client implements.
        client_max: i16,
        /// What the broker advertised, e.g. `none` or `0..=2`.
        broker: String,
    },
    /// A request could not be encoded (a bug: a field holds a value its version cannot carry).
    #[error("could not encode {api:?} v{version} request")]
    Encode {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The encoder's complaint.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A response could not be decoded.
    #[error("could not decode {api:?} v{version} response from {addr}")]
    Decode {
        /// `host:port`.
        addr: String,
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// The decoder's complaint.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The broker broke the protocol in a way decoding did not catch.
    #[error("protocol violation by {addr}: {detail}")]
    Protocol {
        /// `host:port`.
        addr: String,
        /// What was wrong.
        detail: String,
    },
    /// None of the bootstrap servers could be reached.
    #[error("none of the bootstrap servers ({servers}) answered")]
    Bootstrap {
        /// The configured list.
        servers: String,
        /// The last attempt's error.
        #[source]
        last: Box<Error>,
    },
    /// A setting is invalid.
    #[error("invalid setting `{key}`: {reason}")]
    Config {
        /// The setting's (Kafka) name.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A caller's argument is invalid (an unknown partition, an empty topic name, ...).
    #[error("{0}")]
    Invalid(String),
    /// Records could not be encoded or decoded (compression, corrupt batch).
    #[error("{what}")]
    Records {
        /// What failed.
        what: String,
        /// The codec's complaint.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The producer or consumer was closed.
    #[error("the {0} is closed")]
    Closed(&'static str),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error for a Kafka code in a response, if the code is not 0.
    pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
        match KafkaCode::from_code(code) {
            None => Ok(()),
            Some(code) => Err(Error::Kafka {
                code,
                context: context(),
                message: None,
            }),
        }
    }

    /// Like [`Error::check`], with the broker's message.
    pub fn check_msg(
        code: i16,
        message: Option<&str>,
        context: impl FnOnce() -> String,
    ) -> Result<()> {
        match KafkaCode::from_code(code) {
            None => Ok(()),
            Some(code) => Err(Error::Kafka {
                code,
                context: context(),
                message: message.filter(|m| !m.is_empty()).map(str::to_string),
            }),
        }
    }

    /// A Kafka error for `error` (used where the client itself applies Kafka's rules).
    pub fn kafka(error: ResponseError, context: impl Into<String>) -> Error {
        Error::Kafka {
            code: KafkaCode::of(error),
            context: context.into(),
            message: None,
        }
    }

    /// The Kafka error code, when the cluster reported one.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            Error::Bootstrap { last, .. } => last.kafka_code(),
            _ => None,
        }
    }

    /// Kafka's name for the error (`TOPIC_ALREADY_EXISTS`), when the cluster reported one.
    pub fn kafka_name(&self) -> Option<String> {
        self.kafka_code().map(KafkaCode::name)
    }

    /// One sentence on what to do about the error.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Kafka { code, .. } => code.hint(),
            Error::Connect { .. } | Error::Bootstrap { .. } => {
                "Check --bootstrap-server (host:port of a broker's listener) and that the broker is running."
            }
            Error::Io { .. } => "The connection dropped; check that the broker is running, then retry.",
            Error::Timeout { .. } => {
                "The cluster did not answer in time; check that it is healthy, or allow a longer timeout."
            }
            Error::UnsupportedApi { .. } => {
                "This broker does not implement the operation; use a broker version that does."
            }
            Error::Encode { .. } | Error::Decode { .. } | Error::Protocol { .. } => {
                "Client and broker disagree on the wire format; report it with the broker's version."
            }
            Error::Config { .. } => "Fix the setting named above.",
            Error::Invalid(_) => "Fix the argument named above.",
            Error::Records { .. } => "The records are corrupt or use a codec this client cannot handle.",
            Error::Closed(_) => "Create a new one; a closed producer or consumer cannot be reused.",
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Connect { .. } | Error::Io { .. } | Error::Timeout { .. } => true,
            _ => false,
        }
    }

    /// Whether the client should refresh metadata (leaders, coordinators) before retrying.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.invalidates_metadata(),
            // A broker that cannot be reached may have left the cluster or lost leadership.
            Error::Connect { .. } | Error::Io { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas() {
        let name = |e| KafkaCode::of(e).name();
        assert_eq!(
            name(ResponseError::NotLeaderOrFollower),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert_eq!(
            name(ResponseError::TopicAlreadyExists),
            "TOPIC_ALREADY_EXISTS"
        );
        assert_eq!(
            name(ResponseError::InvalidTopicException),
            "INVALID_TOPIC_EXCEPTION"
        );
        assert_eq!(
            KafkaCode::from_code(999).map(KafkaCode::name).as_deref(),
            Some("UNKNOWN_ERROR_CODE_999")
        );
        assert!(KafkaCode::from_code(0).is_none());
    }

    #[test]
    fn display_names_the_code_and_context() {
        let e = Error::check_msg(36, Some("Topic 'a' already exists."), || {
            "create topic `a`".into()
        })
        .expect_err("36 is an error");
        assert_eq!(
            e.to_string(),
            "create topic `a`: TOPIC_ALREADY_EXISTS (Topic 'a' already exists.)"
        );
        assert_eq!(e.kafka_name().as_deref(), Some("TOPIC_ALREADY_EXISTS"));
        assert!(e.hint().starts_with("Pick another name"));
        assert!(!e.is_retriable());
    }

    #[test]
    fn leader_errors_are_retriable_and_refresh_metadata() {
        for code in [
            ResponseError::NotLeaderOrFollower,
            ResponseError::LeaderNotAvailable,
        ] {
            let e = Error::kafka(code, "produce");
            assert!(e.is_retriable() && e.invalidates_metadata(), "{e}");
        }
        let e = Error::kafka(ResponseError::MessageTooLarge, "produce");
        assert!(!e.is_retriable() && !e.invalidates_metadata());
    }
}
