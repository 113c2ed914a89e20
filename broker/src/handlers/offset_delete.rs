//! OffsetDelete (KIP-496): remove a group's committed offsets, except of topics it consumes.

use kafka_protocol::{
    messages::{
        offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic},
        OffsetDeleteRequest, OffsetDeleteResponse,
    },
    ResponseError,
};

use super::{error, Ctx};
use crate::partition::TopicPartition;

/// Deletes the requested offsets.
pub fn handle(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let broker = ctx.broker;
    let mut known = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            if broker.partition_exists(t.name.0.as_str(), p.partition_index) {
                known.push(TopicPartition {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                });
            }
        }
    }
    let results = match broker.groups.delete_offsets(req.group_id.0.as_str(), known) {
        Ok(results) => results,
        Err(e) => {
            return OffsetDeleteResponse::default().with_error_code(error::group_error(&e).code())
        }
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = results
                        .iter()
                        .find(|(tp, _)| {
                            tp.topic == t.name.0.as_str() && tp.partition == p.partition_index
                        })
                        .map_or(ResponseError::UnknownTopicOrPartition.code(), |(_, e)| {
                            e.as_ref().map_or(0, |e| error::group_error(e).code())
                        });
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
