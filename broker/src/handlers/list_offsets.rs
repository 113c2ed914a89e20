//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), or the
//! first offset at or after a timestamp.

use kafka_protocol::{
    messages::{
        list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
        ListOffsetsRequest, ListOffsetsResponse,
    },
    ResponseError,
};

use super::{error, Ctx};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// Looks up every requested partition's offset.
pub fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let broker = ctx.broker;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topic(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let part = match topic.as_ref().map(|t| t.led(p.partition_index)) {
                        Some(Ok(part)) => part,
                        Some(Err(code)) => return resp.with_error_code(code.code()),
                        None => {
                            return resp
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
                    };
                    if let Some(code) =
                        error::leader_epoch(p.current_leader_epoch, part.leader_epoch())
                    {
                        return resp.with_error_code(code.code());
                    }
                    let log = part.log.lock();
                    let found = match p.timestamp {
                        // With no transactions yet, the last stable offset is the high watermark.
                        LATEST => Ok(Some((log.high_watermark(), -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
                        MAX_TIMESTAMP => log.offset_of_max_timestamp(),
                        ts if ts >= 0 => log.offset_for_timestamp(ts),
                        _ => {
                            return resp.with_error_code(ResponseError::InvalidRequest.code());
                        }
                    };
                    match found {
                        Ok(Some((offset, timestamp))) => resp
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(part.leader_epoch()),
                        Ok(None) => resp,
                        Err(e) => resp.with_error_code(error::log_error(&e).code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
