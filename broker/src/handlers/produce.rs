//! Produce: validate and append each partition's record batches, answer with base offsets.
//!
//! On a single node the leader is the whole in-sync replica set, so `acks=1` and `acks=all` both
//! complete as soon as the batch is in the log (and the high watermark moves with it). Durability
//! against power loss follows `flush.messages`/`flush.ms`, as in Kafka.

use kafka_protocol::{
    messages::{
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ProduceRequest, ProduceResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use uuid::Uuid;

use super::{error, text, Ctx};
use crate::broker::{is_internal_topic, now_ms};

/// Appends every partition's records and reports per partition.
pub async fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> ProduceResponse {
    let broker = ctx.broker;
    let valid_acks = matches!(req.acks, -1..=1);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        // v13 names topics by id (KIP-516); earlier versions by name.
        let resolved = if ctx.version >= 13 {
            broker.topic_by_id(topic.topic_id)
        } else {
            broker.topic(topic.name.0.as_str())
        };
        let unknown = if ctx.version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut partition_responses = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let resp = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            if !valid_acks {
                partition_responses
                    .push(resp.with_error_code(ResponseError::InvalidRequiredAcks.code()));
                continue;
            }
            if req.transactional_id.is_some() {
                // Transactions come with the transaction coordinator; refuse rather than store
                // batches whose commit or abort this broker could never record.
                partition_responses.push(
                    resp.with_error_code(ResponseError::UnsupportedForMessageFormat.code())
                        .with_error_message(text(
                            "transactional produce is not supported by this broker yet",
                        )),
                );
                continue;
            }
            let partition = match resolved.as_ref().map(|t| t.led(pd.index)) {
                Some(Ok(p)) => p,
                Some(Err(code)) => {
                    partition_responses.push(resp.with_error_code(code.code()));
                    continue;
                }
                None => {
                    partition_responses.push(resp.with_error_code(unknown.code()));
                    continue;
                }
            };
            if is_internal_topic(&partition.tp.topic) {
                partition_responses.push(
                    resp.with_error_code(ResponseError::InvalidTopicException.code())
                        .with_error_message(text("cannot produce to an internal topic")),
                );
                continue;
            }
            let Some(records) = pd.records else {
                partition_responses.push(
                    resp.with_error_code(ResponseError::CorruptMessage.code())
                        .with_error_message(text("the partition's records are null")),
                );
                continue;
            };
            // The records go from the request buffer to the segment file uncopied: the log
            // writes its patched copy of each batch header beside them.
            let result = {
                let mut log = partition.log.lock();
                let r = log.append_as_leader(&records, partition.leader_epoch(), now_ms());
                if r.is_ok() {
                    let leo = log.log_end_offset();
                    log.set_high_watermark(leo);
                }
                r
            };
            match result {
                Ok(info) => {
                    partition.appended.notify_waiters();
                    if !info.duplicate {
                        broker.metrics.bytes_in.inc_by(info.bytes as u64);
                        broker
                            .metrics
                            .messages_in
                            .inc_by(info.record_count.max(0) as u64);
                    }
                    partition_responses.push(
                        resp.with_base_offset(info.first_offset)
                            .with_log_append_time_ms(info.log_append_time)
                            .with_log_start_offset(info.log_start_offset),
                    );
                }
                Err(e) => {
                    let code = error::log_error(&e);
                    tracing::debug!(partition = %partition.tp, error = %e, "produce refused");
                    broker
                        .metrics
                        .errors
                        .with_label_values(&["Produce", &format!("{code:?}")])
                        .inc();
                    partition_responses.push(
                        resp.with_error_code(code.code())
                            .with_error_message(text(error::message(&e))),
                    );
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(if ctx.version >= 13 {
                    TopicName(StrBytes::default())
                } else {
                    topic.name
                })
                .with_topic_id(if ctx.version >= 13 {
                    topic.topic_id
                } else {
                    Uuid::nil()
                })
                .with_partition_responses(partition_responses),
        );
    }
    ProduceResponse::default().with_responses(responses)
}
