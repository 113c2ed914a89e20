//! One module per Kafka API. A handler is an async function from a decoded request (plus the
//! broker and the request's version) to a response; it never sees the socket. [`dispatch`]
//! decodes the body, calls the handler and encodes the response frame.

mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
pub mod error;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod produce;
mod sync_group;

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, RequestKind},
    protocol::StrBytes,
};

pub use api_versions::unsupported_version_response;

use crate::{
    broker::Broker,
    protocol::{encode_fetch_response, encode_response, FrameError, Response},
};

/// What a handler may need besides its request.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The broker.
    pub broker: &'a Arc<Broker>,
    /// The request's version.
    pub version: i16,
    /// The request header (client id, correlation id).
    pub header: &'a RequestHeader,
    /// The client's address, if known (DescribeGroups reports it as the member's host).
    pub peer: Option<SocketAddr>,
    /// The listener the request arrived on: brokers are described to the client by their
    /// advertised address for this listener, as Kafka does.
    pub listener: &'a str,
}

/// Kafka's "authorized operations not requested" sentinel.
pub const OPS_NOT_REQUESTED: i32 = i32::MIN;

/// `Some(text)` as a protocol string.
pub fn text(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

/// Decodes, handles and encodes one request that arrived on `listener`. `Ok(None)` means no
/// response is sent (acks=0).
pub async fn dispatch(
    broker: &Arc<Broker>,
    key: ApiKey,
    version: i16,
    header: RequestHeader,
    mut body: Bytes,
    peer: Option<SocketAddr>,
    listener: &str,
) -> Result<Option<Response>, FrameError> {
    let request =
        RequestKind::decode(key, &mut body, version).map_err(|source| FrameError::Malformed {
            key,
            version,
            source,
        })?;
    let ctx = Ctx {
        broker,
        version,
        header: &header,
        peer,
        listener,
    };
    let corr = header.correlation_id;
    let encoded = match request {
        RequestKind::Produce(r) => {
            let fire_and_forget = r.acks == 0;
            let resp = produce::handle(&ctx, r).await;
            if fire_and_forget {
                return Ok(None);
            }
            encode_response(key, version, corr, &resp)
        }
        RequestKind::Fetch(r) => {
            let (resp, files) = fetch::handle(&ctx, r).await;
            return encode_fetch_response(version, corr, resp, files)
                .map(Some)
                .map_err(|source| FrameError::Encode {
                    key,
                    version,
                    source,
                });
        }
        RequestKind::ListOffsets(r) => {
            encode_response(key, version, corr, &list_offsets::handle(&ctx, r))
        }
        RequestKind::Metadata(r) => {
            encode_response(key, version, corr, &metadata::handle(&ctx, r).await)
        }
        RequestKind::ApiVersions(r) => {
            encode_response(key, version, corr, &api_versions::handle(&ctx, r))
        }
        RequestKind::CreateTopics(r) => {
            encode_response(key, version, corr, &create_topics::handle(&ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            encode_response(key, version, corr, &delete_topics::handle(&ctx, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            encode_response(key, version, corr, &delete_records::handle(&ctx, r))
        }
        RequestKind::InitProducerId(r) => {
            encode_response(key, version, corr, &init_producer_id::handle(&ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            encode_response(key, version, corr, &describe_configs::handle(&ctx, r))
        }
        RequestKind::AlterConfigs(r) => {
            encode_response(key, version, corr, &alter_configs::handle(&ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => encode_response(
            key,
            version,
            corr,
            &alter_configs::handle_incremental(&ctx, r).await,
        ),
        RequestKind::CreatePartitions(r) => encode_response(
            key,
            version,
            corr,
            &create_partitions::handle(&ctx, r).await,
        ),
        RequestKind::DescribeCluster(r) => {
            encode_response(key, version, corr, &describe_cluster::handle(&ctx, r))
        }
        RequestKind::FindCoordinator(r) => {
            encode_response(key, version, corr, &find_coordinator::handle(&ctx, r).await)
        }
        RequestKind::JoinGroup(r) => {
            encode_response(key, version, corr, &join_group::handle(&ctx, r).await)
        }
        RequestKind::SyncGroup(r) => {
            encode_response(key, version, corr, &sync_group::handle(&ctx, r).await)
        }
        RequestKind::Heartbeat(r) => {
            encode_response(key, version, corr, &heartbeat::handle(&ctx, r))
        }
        RequestKind::LeaveGroup(r) => {
            encode_response(key, version, corr, &leave_group::handle(&ctx, r))
        }
        RequestKind::OffsetCommit(r) => {
            encode_response(key, version, corr, &offset_commit::handle(&ctx, r))
        }
        RequestKind::OffsetFetch(r) => {
            encode_response(key, version, corr, &offset_fetch::handle(&ctx, r))
        }
        RequestKind::OffsetDelete(r) => {
            encode_response(key, version, corr, &offset_delete::handle(&ctx, r))
        }
        RequestKind::ListGroups(r) => {
            encode_response(key, version, corr, &list_groups::handle(&ctx, r))
        }
        RequestKind::DescribeGroups(r) => {
            encode_response(key, version, corr, &describe_groups::handle(&ctx, r))
        }
        RequestKind::DeleteGroups(r) => {
            encode_response(key, version, corr, &delete_groups::handle(&ctx, r))
        }
        _ => return Err(FrameError::Unimplemented(key)),
    };
    encoded
        .map(|b| Some(b.into()))
        .map_err(|source| FrameError::Encode {
            key,
            version,
            source,
        })
}
