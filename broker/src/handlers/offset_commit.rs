//! OffsetCommit: store a group's consumed positions in `__consumer_offsets` before answering.
//! Consumers outside group management (`assign`) commit with generation -1 and no member id.

use kafka_protocol::{
    messages::{
        offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
        OffsetCommitRequest, OffsetCommitResponse,
    },
    ResponseError,
};

use super::{error, join_group::millis, Ctx};
use crate::{
    coordinator::group::{CommitRequest, OffsetToCommit},
    partition::TopicPartition,
};

/// Commits every valid partition; unknown partitions and oversized metadata fail alone.
pub fn handle(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = ctx.broker;
    let max_metadata = broker.groups.config().offset_metadata_max_bytes;
    // v2–v4 could ask for an explicit retention (-1: the broker's default).
    let retention = ((2..=4).contains(&ctx.version) && req.retention_time_ms >= 0)
        .then(|| millis(i32::try_from(req.retention_time_ms).unwrap_or(i32::MAX)));
    // (topic index, partition, error) per requested partition; error None = to commit.
    let mut outcome: Vec<(usize, i32, Option<ResponseError>)> = Vec::new();
    let mut to_commit = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let error = if !broker.partition_exists(t.name.0.as_str(), p.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                to_commit.push((
                    TopicPartition {
                        topic: t.name.0.to_string(),
                        partition: p.partition_index,
                    },
                    OffsetToCommit {
                        offset: p.committed_offset,
                        leader_epoch: if ctx.version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata,
                    },
                ));
                None
            };
            outcome.push((ti, p.partition_index, error));
        }
    }
    let committed = if to_commit.is_empty() {
        Ok(())
    } else {
        broker.groups.commit_offsets(
            req.group_id.0.as_str(),
            CommitRequest {
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
                generation: req.generation_id_or_member_epoch,
                retention,
                offsets: to_commit,
            },
        )
    };
    let commit_code = committed.err().map_or(0, |e| error::group_error(&e).code());
    let mut topics: Vec<OffsetCommitResponseTopic> = req
        .topics
        .into_iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
        })
        .collect();
    for (ti, partition, error) in outcome {
        if let Some(t) = topics.get_mut(ti) {
            t.partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(partition)
                    .with_error_code(error.map_or(commit_code, |e| e.code())),
            );
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}
