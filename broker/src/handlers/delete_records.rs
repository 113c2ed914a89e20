//! DeleteRecords: move partitions' log start offsets forward (offset -1 means the high watermark).

use kafka_protocol::{
    messages::{
        delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult},
        DeleteRecordsRequest, DeleteRecordsResponse,
    },
    ResponseError,
};

use super::{error, Ctx};

/// Deletes records before each requested offset.
pub fn handle(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let broker = ctx.broker;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let topic = broker.topic(t.name.0.as_str());
                    let part = match topic.as_ref().map(|t| t.led(p.partition_index)) {
                        Some(Ok(part)) => part.clone(),
                        Some(Err(code)) => return result.with_error_code(code.code()),
                        None => {
                            return result
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        }
                    };
                    let mut log = part.log.lock();
                    let offset = if p.offset == -1 {
                        log.high_watermark()
                    } else {
                        p.offset
                    };
                    match log.delete_records_before(offset) {
                        Ok(low) => result.with_low_watermark(low),
                        Err(e) => result.with_error_code(error::log_error(&e).code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
