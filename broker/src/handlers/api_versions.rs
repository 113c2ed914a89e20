//! ApiVersions: what this broker implements, exactly (see [`crate::protocol::SUPPORTED`]).

use bytes::Bytes;
use kafka_protocol::{
    messages::{
        api_versions_response::ApiVersion, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
    },
    ResponseError,
};

use super::Ctx;
use crate::protocol::{encode_response, SUPPORTED};

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

/// Answers with every implemented API and its version range.
pub fn handle(_ctx: &Ctx<'_>, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys())
}

/// Kafka's answer to an ApiVersions request of a version newer than it serves: a v0 response
/// with UNSUPPORTED_VERSION and the full list, from which the client picks a version it shares.
pub fn unsupported_version_response(correlation_id: i32) -> anyhow::Result<Bytes> {
    let resp = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &resp)
}
