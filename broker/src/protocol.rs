//! The Kafka wire protocol as this broker speaks it, with no I/O: which APIs and versions are
//! implemented, how a request frame's header is read, and how a response frame is built. The
//! message types themselves come from the `kafka-protocol` crate.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable},
};
use millrace_log::FileSlice;

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

/// An encoded response frame, as the pieces to write in order. Usually one piece; a Fetch
/// response keeps each large record set as its own piece — the very `Bytes` a log read
/// returned, or a range of the segment file that goes to the socket with `sendfile` — so the
/// records are not copied into the response buffer.
#[derive(Debug)]
pub struct Response {
    pieces: Vec<Piece>,
}

/// One piece of a [`Response`].
#[derive(Debug)]
pub enum Piece {
    /// Bytes in memory.
    Bytes(Bytes),
    /// Whole batches in a segment file.
    File(FileSlice),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::File(f) => f.len,
        }
    }
}

impl From<Bytes> for Response {
    fn from(b: Bytes) -> Self {
        Response {
            pieces: vec![Piece::Bytes(b)],
        }
    }
}

impl Response {
    /// The pieces, in the order they go on the wire.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The frame's length in bytes, its size prefix included.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(Piece::len).sum()
    }

    /// Whether the frame has no bytes (never true of an encoded response).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as one buffer, file pieces read in: for tests and tools.
    pub fn to_bytes(&self) -> std::io::Result<Bytes> {
        let mut b = BytesMut::with_capacity(self.len());
        for p in &self.pieces {
            match p {
                Piece::Bytes(bytes) => b.extend_from_slice(bytes),
                Piece::File(f) => b.extend_from_slice(&f.read()?),
            }
        }
        Ok(b.freeze())
    }
}

/// Record sets at least this large are written from where the log holds them instead of being
/// copied into the response; below it a copy is cheaper than an extra write.
pub const SPLICE_MIN: usize = 64 * 1024;

/// A sixteen-byte stand-in no metadata field will contain by accident: twelve fixed bytes
/// (one of two families) and a number.
fn marker(family: u8, index: usize) -> Bytes {
    let mut m = BytesMut::with_capacity(16);
    m.put_slice(&MARKER_PREFIX);
    m.put_u8(family);
    m.put_u32(u32::try_from(index).unwrap_or(u32::MAX));
    m.freeze()
}

const MARKER_PREFIX: [u8; 11] = [
    0xF7, 0x1B, 0x6D, 0xC2, 0x05, 0x9E, 0xA4, 0x33, 0xD8, 0x4F, 0x10,
];
const FILE_FAMILY: u8 = 0xBE;

/// The index in a [`file_marker`], if `records` is one.
fn file_marker_index(records: &[u8]) -> Option<usize> {
    let (head, index) = records.split_at_checked(12)?;
    let index: [u8; 4] = index.try_into().ok()?;
    (head[..11] == MARKER_PREFIX && head[11] == FILE_FAMILY)
        .then(|| u32::from_be_bytes(index) as usize)
}

/// The records of a Fetch partition that stay in their segment file: the handler puts this
/// marker in `records` and passes `files[index]` to [`encode_fetch_response`].
pub fn file_marker(index: usize) -> Bytes {
    marker(FILE_FAMILY, index)
}

enum Source {
    Bytes(Bytes),
    File(usize),
}

/// Encodes a Fetch response without copying its large record sets: each (and each record set
/// left in a file, marked with [`file_marker`]) stands as a marker while the codec encodes the
/// rest, then the frame is cut at the markers and the real records, with their length
/// prefixes, go in between. The bytes on the wire are exactly what [`encode_response`] makes
/// of the response with the records in place.
pub fn encode_fetch_response(
    version: i16,
    correlation_id: i32,
    mut body: kafka_protocol::messages::FetchResponse,
    files: Vec<FileSlice>,
) -> anyhow::Result<Response> {
    let mut spliced: Vec<(Bytes, Source)> = Vec::new();
    for p in body
        .responses
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut())
    {
        let Some(records) = &p.records else { continue };
        if let Some(k) = file_marker_index(records).filter(|&k| k < files.len()) {
            spliced.push((records.clone(), Source::File(k)));
        } else if records.len() >= SPLICE_MIN {
            let m = marker(0x5A, spliced.len());
            if let Some(real) = p.records.replace(m.clone()) {
                spliced.push((m, Source::Bytes(real)));
            }
        }
    }
    let skeleton = encode_response(ApiKey::Fetch, version, correlation_id, &body)?;
    if spliced.is_empty() {
        return Ok(skeleton.into());
    }
    // Flexible versions (12+) prefix bytes with an unsigned varint of length + 1, older ones
    // with an i32 length; for a 16-byte marker that is 1 and 4 bytes.
    let flexible = version >= 12;
    let marker_prefix = if flexible { 1 } else { 4 };
    // Find every marker first, so a miss falls back before anything is taken apart.
    let mut positions = Vec::with_capacity(spliced.len());
    let mut pos = 0;
    for (m, _) in &spliced {
        let found = skeleton[pos..]
            .windows(m.len())
            .position(|w| w == &m[..])
            .map(|i| pos + i)
            .filter(|&at| at >= pos + marker_prefix);
        let Some(at) = found else {
            // Cannot happen with the codec as it is; if it ever does, copy instead.
            tracing::warn!("fetch response splice marker not found; encoding with a copy");
            return encode_unspliced(version, correlation_id, body, spliced, files);
        };
        positions.push(at);
        pos = at + m.len();
    }
    let mut files: Vec<Option<FileSlice>> = files.into_iter().map(Some).collect();
    let mut pieces = Vec::with_capacity(3 * spliced.len() + 1);
    let mut pos = 0;
    let mut size = skeleton.len() - 4;
    for ((m, source), at) in spliced.into_iter().zip(positions) {
        let piece = match source {
            Source::Bytes(b) => Piece::Bytes(b),
            Source::File(k) => match files.get_mut(k).and_then(Option::take) {
                Some(f) => Piece::File(f),
                None => anyhow::bail!("fetch file range {k} is used twice"),
            },
        };
        pieces.push(Piece::Bytes(skeleton.slice(pos..at - marker_prefix)));
        let mut prefix = BytesMut::with_capacity(5);
        if flexible {
            put_unsigned_varint(&mut prefix, piece.len() + 1);
        } else {
            prefix.put_i32(i32::try_from(piece.len())?);
        }
        size = size - marker_prefix - m.len() + prefix.len() + piece.len();
        pieces.push(Piece::Bytes(prefix.freeze()));
        pieces.push(piece);
        pos = at + m.len();
    }
    pieces.push(Piece::Bytes(skeleton.slice(pos..)));
    if let Some(Piece::Bytes(first)) = pieces.first_mut() {
        let mut head = BytesMut::from(&first[..]);
        head[..4].copy_from_slice(&i32::try_from(size)?.to_be_bytes());
        *first = head.freeze();
    }
    Ok(Response { pieces })
}

/// The fallback of [`encode_fetch_response`]: put every record set back, reading file slices
/// into memory, and encode with a copy.
fn encode_unspliced(
    version: i16,
    correlation_id: i32,
    mut body: kafka_protocol::messages::FetchResponse,
    spliced: Vec<(Bytes, Source)>,
    files: Vec<FileSlice>,
) -> anyhow::Result<Response> {
    let mut real = std::collections::HashMap::new();
    for (m, source) in spliced {
        let bytes = match source {
            Source::Bytes(b) => b,
            Source::File(k) => match files.get(k) {
                Some(f) => f.read()?,
                None => anyhow::bail!("fetch file range {k} is missing"),
            },
        };
        real.insert(m, bytes);
    }
    for p in body
        .responses
        .iter_mut()
        .flat_map(|t| t.partitions.iter_mut())
    {
        if let Some(bytes) = p.records.as_ref().and_then(|r| real.remove(r)) {
            p.records = Some(bytes);
        }
    }
    Ok(encode_response(ApiKey::Fetch, version, correlation_id, &body)?.into())
}

fn put_unsigned_varint(buf: &mut BytesMut, mut v: usize) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        fetch_response::{FetchableTopicResponse, PartitionData},
        FetchResponse, TopicName,
    };

    fn fetch_response(version: i16, sizes: &[usize]) -> FetchResponse {
        let partitions = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let records: Vec<u8> = (0..n).map(|b| (b * 31 + i) as u8).collect();
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1000 + i as i64)
                    .with_records(Some(Bytes::from(records)))
            })
            .collect();
        // Topics are named up to v12 and identified by id from v13.
        let topic = if version >= 13 {
            FetchableTopicResponse::default().with_topic_id(uuid::Uuid::from_u128(0xABCD))
        } else {
            FetchableTopicResponse::default().with_topic(TopicName(
                kafka_protocol::protocol::StrBytes::from_static_str("orders"),
            ))
        };
        FetchResponse::default()
            .with_session_id(if version >= 7 { 7 } else { 0 })
            .with_responses(vec![topic.with_partitions(partitions)])
    }

    /// A file holding `bytes` after 100 bytes of something else, as a slice.
    fn file_slice(bytes: &[u8]) -> FileSlice {
        use std::io::Write;
        let mut f = tempfile::tempfile().expect("a temp file");
        f.write_all(&[0xEE; 100]).expect("write");
        f.write_all(bytes).expect("write");
        FileSlice {
            file: std::sync::Arc::new(f),
            position: 100,
            len: bytes.len(),
        }
    }

    #[test]
    fn a_spliced_fetch_response_is_byte_for_byte_the_copied_one_without_the_copy() {
        // Small, large, large enough for a 4-byte varint, small, and one left in a file.
        let sizes = [100, SPLICE_MIN, 3 << 20, 10, 200_000];
        for version in [4, 11, 12, 13, 16, 17] {
            let mut body = fetch_response(version, &sizes);
            let records: Vec<Bytes> = body.responses[0]
                .partitions
                .iter()
                .filter_map(|p| p.records.clone())
                .collect();
            let copied = encode_response(ApiKey::Fetch, version, 42, &body).expect("encodes");
            body.responses[0].partitions[4].records = Some(file_marker(0));
            let files = vec![file_slice(&records[4])];
            let spliced = encode_fetch_response(version, 42, body, files).expect("encodes");
            assert_eq!(spliced.len(), copied.len(), "v{version}");
            assert_eq!(spliced.to_bytes().expect("reads"), copied, "v{version}");
            // The two large record sets are the log's own buffers, not copies, and the file's
            // records are a file piece.
            for big in [&records[1], &records[2]] {
                assert!(
                    spliced.pieces().iter().any(|p| matches!(p,
                        Piece::Bytes(b) if b.as_ptr() == big.as_ptr() && b.len() == big.len())),
                    "v{version}: a large record set was copied"
                );
            }
            assert!(
                spliced.pieces().iter().any(|p| matches!(p,
                    Piece::File(f) if f.position == 100 && f.len == 200_000)),
                "v{version}: the file's records were read"
            );
        }
    }

    #[test]
    fn a_fetch_response_without_large_records_is_one_piece() {
        let body = fetch_response(13, &[10, 20]);
        let copied = encode_response(ApiKey::Fetch, 13, 1, &body).expect("encodes");
        let r = encode_fetch_response(13, 1, body, Vec::new()).expect("encodes");
        assert_eq!(r.pieces().len(), 1);
        assert_eq!(r.to_bytes().expect("reads"), copied);
    }

    #[test]
    fn varints_are_leb128() {
        for (v, want) in [
            (0usize, &[0x00][..]),
            (1, &[0x01]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (3 << 20, &[0x80, 0x80, 0xC0, 0x01]),
        ] {
            let mut b = BytesMut::new();
            put_unsigned_varint(&mut b, v);
            assert_eq!(&b[..], want, "{v}");
        }
    }

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
