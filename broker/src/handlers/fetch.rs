//! Fetch: return stored batches as they are, long-polling until `min_bytes` are available or
//! `max_wait_ms` passes.
//!
//! # Expected flow
//! 1. Resolve every requested partition (by name, or by topic id from v13 on).
//! 2. Arm a wake-up on each partition *before* reading, so an append between the read and the
//!    wait cannot be missed.
//! 3. Read every partition: whole batches from `fetch_offset`, at most `partition_max_bytes`
//!    each and `max_bytes` in total, except that the first partition with data always returns
//!    at least one whole batch (so a batch larger than the limits still makes progress).
//! 4. If the response holds `min_bytes`, or a partition has an error, or the deadline passed,
//!    answer; otherwise wait for an append on any partition or the deadline, and go to 2.
//!
//! Fetch sessions (KIP-227) are not kept: the response's session id is 0, which tells clients to
//! keep sending full fetch requests, as a broker with a full session cache does.

use std::{pin::pin, sync::Arc, time::Duration};

use kafka_protocol::{
    messages::{
        fetch_response::{FetchableTopicResponse, PartitionData},
        FetchRequest, FetchResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use tokio::time::Instant;
use uuid::Uuid;

use super::{error, Ctx};
use crate::{
    partition::Partition,
    protocol::{file_marker, SPLICE_MIN},
};
use bytes::Bytes;
use millrace_log::FileSlice;

/// The most a fetch is held, whatever the client asks: keeps shutdown prompt.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

struct Wanted {
    topic_index: usize,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    resolved: Option<Arc<Partition>>,
    unknown: ResponseError,
}

/// Serves one fetch request. Large record sets stay in their segment files: the response
/// carries [`file_marker`]s for them and the files come alongside, for
/// [`crate::protocol::encode_fetch_response`] to send with `sendfile`.
pub async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> (FetchResponse, Vec<FileSlice>) {
    let broker = ctx.broker;
    let by_id = ctx.version >= 13;
    let read_committed = req.isolation_level == 1;
    let mut topics_out: Vec<FetchableTopicResponse> = Vec::with_capacity(req.topics.len());
    let mut wanted = Vec::new();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let topic = if by_id {
            broker.topic_by_id(t.topic_id)
        } else {
            broker.topic(t.topic.0.as_str())
        };
        for p in &t.partitions {
            let lookup = topic.as_ref().map(|t| t.led(p.partition).cloned());
            wanted.push(Wanted {
                topic_index: ti,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                current_leader_epoch: p.current_leader_epoch,
                unknown: match &lookup {
                    Some(Err(code)) => *code,
                    _ if by_id => ResponseError::UnknownTopicId,
                    _ => ResponseError::UnknownTopicOrPartition,
                },
                resolved: lookup.and_then(Result::ok),
            });
        }
        topics_out.push(
            FetchableTopicResponse::default()
                .with_topic(if by_id {
                    TopicName(StrBytes::default())
                } else {
                    t.topic
                })
                .with_topic_id(if by_id { t.topic_id } else { Uuid::nil() }),
        );
    }

    let max_wait =
        Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(0);
    loop {
        // Arm the wake-ups first (step 2).
        let mut armed: Vec<_> = wanted
            .iter()
            .filter_map(|w| w.resolved.as_ref())
            .map(|p| Box::pin(p.appended.notified()))
            .collect();
        for n in &mut armed {
            n.as_mut().enable();
        }
        let (partitions, files, total, has_error) = read_all(&wanted, max_bytes, read_committed);
        if total >= min_bytes || has_error || armed.is_empty() || Instant::now() >= deadline {
            broker.metrics.bytes_out.inc_by(total as u64);
            for (w, pd) in wanted.iter().zip(partitions) {
                if let Some(t) = topics_out.get_mut(w.topic_index) {
                    t.partitions.push(pd);
                }
            }
            return (FetchResponse::default().with_responses(topics_out), files);
        }
        let any = futures::future::select_all(armed);
        let _ = tokio::time::timeout_at(deadline, pin!(any)).await;
    }
}

fn read_all(
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
) -> (Vec<PartitionData>, Vec<FileSlice>, usize, bool) {
    let mut total = 0usize;
    let mut has_error = false;
    let mut out = Vec::with_capacity(wanted.len());
    let mut files = Vec::new();
    for w in wanted {
        let pd = PartitionData::default()
            .with_partition_index(w.partition)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
            .with_aborted_transactions(read_committed.then(Vec::new));
        let Some(p) = &w.resolved else {
            has_error = true;
            out.push(pd.with_error_code(w.unknown.code()));
            continue;
        };
        if let Some(code) = error::leader_epoch(w.current_leader_epoch, p.leader_epoch()) {
            has_error = true;
            out.push(pd.with_error_code(code.code()));
            continue;
        }
        let log = p.log.lock();
        let hw = log.high_watermark();
        let pd = pd
            .with_high_watermark(hw)
            .with_last_stable_offset(hw)
            .with_log_start_offset(log.log_start_offset());
        let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
        // The first partition with data returns at least one whole batch (KIP-74).
        let min_one = total == 0;
        // Large reads stay in the file (sent with sendfile); small ones are read into memory,
        // where one copy costs less than another write.
        let records = match log.read_slice(w.fetch_offset, budget, hw, min_one) {
            Ok(None) => Ok(Bytes::new()),
            Ok(Some(slice)) if slice.len >= SPLICE_MIN => {
                total += slice.len;
                files.push(slice);
                Ok(file_marker(files.len() - 1))
            }
            Ok(Some(slice)) => slice.read().inspect(|b| total += b.len()).map_err(|e| {
                tracing::warn!(error = %e, "reading a fetched range failed");
                ResponseError::KafkaStorageError
            }),
            Err(e) => Err(error::log_error(&e)),
        };
        match records {
            Ok(bytes) => out.push(pd.with_records(Some(bytes))),
            Err(code) => {
                has_error = true;
                out.push(pd.with_error_code(code.code()));
            }
        }
    }
    (out, files, total, has_error)
}
