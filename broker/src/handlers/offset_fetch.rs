//! OffsetFetch: a group's committed offsets, for one group (v1–v7) or several (v8+, KIP-709).
//! A partition with no committed offset answers -1, as does every partition of an unknown group.

use kafka_protocol::{
    messages::{
        offset_fetch_response::{
            OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
            OffsetFetchResponseTopic, OffsetFetchResponseTopics,
        },
        GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName,
    },
    protocol::StrBytes,
};

use super::{error, Ctx};
use crate::{
    coordinator::group::{CommittedOffset, GroupError},
    partition::TopicPartition,
};

/// One partition's answer: (partition, offset, leader epoch, metadata).
type Fetched = (i32, i64, i32, String);

/// Fetches the offsets of every requested group.
pub fn handle(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let response =
                    OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch(ctx, &g.group_id, wanted) {
                    Ok(topics) => response.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(name)))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|(p, offset, epoch, metadata)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(StrBytes::from_string(
                                                        metadata,
                                                    )))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(e) => response.with_error_code(error::group_error(&e).code()),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.clone().map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let partition = |(p, offset, epoch, metadata): Fetched| {
        OffsetFetchResponsePartition::default()
            .with_partition_index(p)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(if ctx.version >= 5 { epoch } else { -1 })
            .with_metadata(Some(StrBytes::from_string(metadata)))
    };
    match fetch(ctx, &req.group_id, wanted) {
        Ok(topics) => OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(ps.into_iter().map(partition).collect())
                })
                .collect(),
        ),
        // v1 has no top-level error: every requested partition carries it.
        Err(e) if ctx.version < 2 => {
            let code = error::group_error(&e).code();
            OffsetFetchResponse::default().with_topics(
                req.topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(
                                t.partition_indexes
                                    .into_iter()
                                    .map(|p| {
                                        partition((p, -1, -1, String::new())).with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        }
        Err(e) => OffsetFetchResponse::default().with_error_code(error::group_error(&e).code()),
    }
}

/// The group's offsets of `wanted` (topic, partitions), or all of them, grouped by topic.
fn fetch(
    ctx: &Ctx<'_>,
    group_id: &GroupId,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, Vec<Fetched>)>, GroupError> {
    let partitions = wanted.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|(topic, ps)| {
                ps.iter().map(|p| TopicPartition {
                    topic: topic.clone(),
                    partition: *p,
                })
            })
            .collect()
    });
    let found = ctx
        .broker
        .groups
        .fetch_offsets(group_id.0.as_str(), partitions)?;
    let mut out: Vec<(String, Vec<Fetched>)> = Vec::new();
    for (tp, offset) in found {
        let entry = match offset {
            Some(CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                ..
            }) => (tp.partition, offset, leader_epoch, metadata),
            None => (tp.partition, -1, -1, String::new()),
        };
        match out.last_mut() {
            Some((topic, ps)) if *topic == tp.topic => ps.push(entry),
            _ => out.push((tp.topic, vec![entry])),
        }
    }
    Ok(out)
}
