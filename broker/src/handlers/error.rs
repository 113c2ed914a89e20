//! The one place where broker and storage errors become Kafka error codes.

use kafka_protocol::ResponseError;
use millrace_log::LogError;

use crate::{
    broker::BrokerError, cluster::controller::ControllerError, config::ConfigError,
    coordinator::group::GroupError,
};

/// The Kafka error code for a storage error.
pub fn log_error(e: &LogError) -> ResponseError {
    match e {
        LogError::CorruptRecord { .. } => ResponseError::CorruptMessage,
        LogError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        LogError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::UnknownProducerId { .. } => ResponseError::UnknownProducerId,
        LogError::Io { .. } => ResponseError::KafkaStorageError,
        _ => ResponseError::UnknownServerError,
    }
}

/// The Kafka error code for a broker-level error.
pub fn broker_error(e: &BrokerError) -> ResponseError {
    match e {
        BrokerError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        BrokerError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BrokerError::InvalidReplication(_) => ResponseError::InvalidReplicationFactor,
        BrokerError::Config(ConfigError::Unknown { .. } | ConfigError::Invalid { .. })
        | BrokerError::Config(_) => ResponseError::InvalidConfig,
        BrokerError::DeletionDisabled => ResponseError::TopicDeletionDisabled,
        BrokerError::InternalTopic(_) => ResponseError::InvalidRequest,
        BrokerError::Log { source, .. } => log_error(source),
        BrokerError::Io { .. } => ResponseError::KafkaStorageError,
        BrokerError::Controller(c) => controller_error(c),
    }
}

/// The Kafka error code for a controller refusal.
pub fn controller_error(e: &ControllerError) -> ResponseError {
    match e {
        ControllerError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        ControllerError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ControllerError::DuplicateBrokerRegistration(_) => {
            ResponseError::DuplicateBrokerRegistration
        }
        ControllerError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch,
        // Kafka's answer when the controller cannot be reached in time; clients retry it.
        ControllerError::Unavailable(_) => ResponseError::RequestTimedOut,
    }
}

/// The Kafka error code for a group coordinator outcome.
pub fn group_error(e: &GroupError) -> ResponseError {
    match e {
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
        // Kafka answers a failed __consumer_offsets write (KAFKA_STORAGE_ERROR,
        // NOT_LEADER_OR_FOLLOWER) with NOT_COORDINATOR, so clients look for it again.
        GroupError::NotCoordinator | GroupError::Storage(_) => ResponseError::NotCoordinator,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::InvalidRequest(_) => ResponseError::InvalidRequest,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::InvalidCommitOffsetSize => ResponseError::InvalidCommitOffsetSize,
    }
}

/// KIP-320: a request naming a leader epoch other than the partition's is refused — newer than
/// ours means this broker is behind (UNKNOWN_LEADER_EPOCH), older means the client is
/// (FENCED_LEADER_EPOCH). -1 skips the check.
pub fn leader_epoch(requested: i32, current: i32) -> Option<ResponseError> {
    match requested {
        r if r < 0 || r == current => None,
        r if r > current => Some(ResponseError::UnknownLeaderEpoch),
        _ => Some(ResponseError::FencedLeaderEpoch),
    }
}

/// The error's full message (with its causes), for responses that carry one.
pub fn message(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_check_follows_kip_320() {
        assert_eq!(leader_epoch(-1, 3), None);
        assert_eq!(leader_epoch(3, 3), None);
        assert_eq!(leader_epoch(4, 3), Some(ResponseError::UnknownLeaderEpoch));
        assert_eq!(leader_epoch(2, 3), Some(ResponseError::FencedLeaderEpoch));
    }
}
