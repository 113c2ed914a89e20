//! The Kafka wire protocol as this broker speaks it, with no I/O: which APIs and versions are
//! implemented, how a request frame's header is read, and how a response frame is built. The
//! message types themselves come from the `kafka-protocol` crate.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable},
};

/// One implemented API and the versions of it this broker serves.
#[derive(Debug, Clone, Copy)]
pub struct Supported {
    /// The API.
    pub key: ApiKey,
    /// Lowest version served.
    pub min: i16,
    /// Highest version served.
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> Supported {
    Supported { key, min, max }
}

/// Exactly what ApiVersions advertises: every API with a handler, at the versions the handler
/// implements. The minimums are Kafka 4.0's (it removed older versions, as did the crate).
pub const SUPPORTED: &[Supported] = &[
    api(ApiKey::Produce, 3, 13),
    api(ApiKey::Fetch, 4, 17),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::DeleteGroups, 0, 2),
];

/// The served version range of an API, if it is implemented.
pub fn supported(key: ApiKey) -> Option<Supported> {
    SUPPORTED.iter().copied().find(|s| s.key == key)
}

/// Why a request frame could not be turned into a request. Each closes the connection, as Kafka
/// does, except an ApiVersions of an unknown version, which the connection answers.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Too short to hold a request header.
    #[error("request frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// An API key this broker does not know.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A known API this broker does not implement.
    #[error("API {0:?} is not implemented by this broker")]
    Unimplemented(ApiKey),
    /// A version outside the served range.
    #[error("{key:?} version {version} is not supported (this broker serves {min}..={max})")]
    UnsupportedVersion {
        /// The API.
        key: ApiKey,
        /// Requested version.
        version: i16,
        /// Lowest served.
        min: i16,
        /// Highest served.
        max: i16,
    },
    /// The header or body does not decode.
    #[error("malformed {key:?} v{version} request")]
    Malformed {
        /// The API.
        key: ApiKey,
        /// The version.
        version: i16,
        /// The decoder's complaint.
        #[source]
        source: anyhow::Error,
    },
    /// A response could not be encoded (a bug: a field holds a value its version cannot carry).
    #[error("could not encode the {key:?} v{version} response")]
    Encode {
        /// The API.
        key: ApiKey,
        /// The version.
        version: i16,
        /// The encoder's complaint.
        #[source]
        source: anyhow::Error,
    },
}

/// The fixed start of every request: API key, version, correlation id.
#[derive(Debug, Clone, Copy)]
pub struct Prelude {
    /// Raw API key.
    pub api_key: i16,
    /// Requested version.
    pub api_version: i16,
    /// Correlation id to echo.
    pub correlation_id: i32,
}

/// Reads the prelude without consuming the frame.
pub fn prelude(frame: &[u8]) -> Result<Prelude, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let mut b = &frame[..8];
    Ok(Prelude {
        api_key: b.get_i16(),
        api_version: b.get_i16(),
        correlation_id: b.get_i32(),
    })
}

/// Decodes the request header of a frame whose API and version were already checked.
pub fn decode_header(
    key: ApiKey,
    version: i16,
    frame: &mut Bytes,
) -> Result<RequestHeader, FrameError> {
    let header_version = key.request_header_version(version);
    RequestHeader::decode(frame, header_version).map_err(|source| FrameError::Malformed {
        key,
        version,
        source,
    })
}

/// Builds a response frame: 4-byte length, response header, body.
pub fn encode_response<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> anyhow::Result<Bytes> {
    let header_version = key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size)?);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_versions_are_within_what_the_codec_knows() {
        for s in SUPPORTED {
            let codec = s.key.valid_versions();
            assert!(s.min >= codec.min && s.max <= codec.max, "{:?}", s.key);
            assert!(s.min <= s.max);
        }
    }

    #[test]
    fn prelude_needs_eight_bytes() {
        assert!(matches!(prelude(&[0, 1, 0]), Err(FrameError::TooShort(3))));
        let p = prelude(&[0, 18, 0, 3, 0, 0, 0, 7]).expect("complete");
        assert_eq!((p.api_key, p.api_version, p.correlation_id), (18, 3, 7));
    }
}
