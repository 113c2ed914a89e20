//! The records of `__consumer_offsets`, in Kafka's own formats, so Kafka's tools
//! (`kafka-dump-log --offsets-decoder`, `kafka-console-consumer` with the offsets formatter) read
//! what this broker writes, and a log copied from Kafka loads here.
//!
//! Every record has a version-prefixed key and a version-prefixed value (Kafka's
//! `MessageUtil.toVersionPrefixedBytes`); a null value is a tombstone that compaction removes
//! after `delete.retention.ms`. The key's leading int16 says what the record is:
//!
//! | key version | key | value versions written / read |
//! |---|---|---|
//! | 0, 1 | `OffsetCommitKey { group, topic, partition }` | 3 (1 when an expire timestamp is set) / 0–4 |
//! | 2 | `GroupMetadataKey { group }` | 3 / 0–4 |
//! | 3+ | KIP-848 and share-group records | skipped |
//!
//! Schemas (`group-coordinator/src/main/resources/common/message/*.json` in Apache Kafka):
//!
//! ```text
//! OffsetCommitValue   offset i64, [v3+] leaderEpoch i32, metadata string, commitTimestamp i64,
//!                     [v1] expireTimestamp i64                                (v4+ flexible)
//! GroupMetadataValue  protocolType string, generation i32, protocol string?, leader string?,
//!                     [v2+] currentStateTimestamp i64, members [MemberMetadata] (v4+ flexible)
//! MemberMetadata      memberId string, [v3+] groupInstanceId string?, clientId string,
//!                     clientHost string, [v1+] rebalanceTimeout i32, sessionTimeout i32,
//!                     subscription bytes, assignment bytes
//! ```
//!
//! The codec is written here because `kafka-protocol` has no types for these records and keeps
//! its primitive encoders private. Decoding never trusts a length: every read is bounds-checked
//! against the record, so a corrupt record is an error, never a panic or a large allocation.

use bytes::{BufMut, Bytes, BytesMut};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Key version of offset commits (Kafka writes 1; 0 is the same schema).
const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version of group metadata.
const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// Value versions written, as Kafka 3.x/4.x write them.
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;
/// Highest value version either record has; v4 is the first flexible one.
const MAX_VALUE_VERSION: i16 = 4;

/// A record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record ends before a field does.
    #[error("record truncated reading {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A length or value no valid record has.
    #[error("invalid {field} in record")]
    Invalid {
        /// The field.
        field: &'static str,
    },
    /// A value version newer than this broker knows.
    #[error("unsupported {record} version {version}")]
    UnsupportedVersion {
        /// Which record.
        record: &'static str,
        /// Its version.
        version: i16,
    },
}

/// Java's `String.hashCode`: over UTF-16 code units, `h = 31 * h + c` with wrapping arithmetic.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group: `Utils.abs(groupId.hashCode) % partitions`,
/// where Kafka's `Utils.abs` maps `i32::MIN` to 0 (plain `abs` would overflow).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = java_string_hash(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// What a `__consumer_offsets` key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// A committed offset of one partition for one group.
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A group's membership and assignment.
    GroupMetadata {
        /// Group id.
        group: String,
    },
    /// A record type this broker does not use (KIP-848 consumer groups, share groups).
    Other(i16),
}

/// `OffsetCommitValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The committed offset.
    pub offset: i64,
    /// Leader epoch of the last consumed record; -1 when unknown.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// Wall-clock time of the commit (ms since the epoch).
    pub commit_timestamp: i64,
    /// Explicit expiry of OffsetCommit v2–v4's `retention_time_ms` (value version 1 only).
    pub expire_timestamp: Option<i64>,
}

/// `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    /// Protocol type (`consumer`, `connect`, …); empty for none.
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// The selected protocol (assignor); `None` for an empty group.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When the group entered its state (ms since the epoch); `None` when not recorded.
    pub current_state_timestamp: Option<i64>,
    /// Members with their subscription and assignment.
    pub members: Vec<MemberValue>,
}

/// `MemberMetadata` of a [`GroupValue`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    /// Member id.
    pub member_id: String,
    /// Static membership id (KIP-345).
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host as Kafka prints it (`/127.0.0.1`).
    pub client_host: String,
    /// Rebalance timeout in ms.
    pub rebalance_timeout_ms: i32,
    /// Session timeout in ms.
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

// ------------------------------------------------------------------------------------- encoding

fn put_string(buf: &mut BytesMut, s: &str) {
    // Strings longer than i16::MAX cannot be in a valid request, so they never reach here;
    // saturate rather than wrap if one ever does.
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    buf.put_i16(len);
    buf.put_slice(&s.as_bytes()[..len as usize]);
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
    buf.put_slice(b);
}

/// The key of a partition's committed offset.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + group.len() + topic.len());
    buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_string(&mut buf, group);
    put_string(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

/// The key of a group's metadata.
pub fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(GROUP_METADATA_KEY_VERSION);
    put_string(&mut buf, group);
    buf.freeze()
}

/// Encodes an offset value: version 3, or version 1 when it carries an expire timestamp.
pub fn encode_offset_value(v: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + v.metadata.len());
    match v.expire_timestamp {
        Some(expire) => {
            buf.put_i16(OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY);
            buf.put_i64(v.offset);
            put_string(&mut buf, &v.metadata);
            buf.put_i64(v.commit_timestamp);
            buf.put_i64(expire);
        }
        None => {
            buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
            buf.put_i64(v.offset);
            buf.put_i32(v.leader_epoch);
            put_string(&mut buf, &v.metadata);
            buf.put_i64(v.commit_timestamp);
        }
    }
    buf.freeze()
}

/// Encodes a group metadata value, version 3.
pub fn encode_group_value(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_nullable_string(&mut buf, v.protocol.as_deref());
    put_nullable_string(&mut buf, v.leader.as_deref());
    buf.put_i64(v.current_state_timestamp.unwrap_or(-1));
    buf.put_i32(i32::try_from(v.members.len()).unwrap_or(i32::MAX));
    for m in &v.members {
        put_string(&mut buf, &m.member_id);
        put_nullable_string(&mut buf, m.group_instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

// ------------------------------------------------------------------------------------- decoding

/// A bounds-checked reader over one key or value; `flexible` selects compact lengths.
struct Reader<'a> {
    buf: &'a [u8],
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(RecordError::Truncated { field });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        let b = self.take(2, field)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        let b = self.take(4, field)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn varint(&mut self, field: &'static str) -> Result<u32, RecordError> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = self.take(1, field)?[0];
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::Invalid { field })
    }

    /// A length: int16/int32 in classic versions, unsigned varint (length + 1) in flexible ones.
    /// `None` is null.
    fn length(&mut self, wide: bool, field: &'static str) -> Result<Option<usize>, RecordError> {
        let len = if self.flexible {
            i64::from(self.varint(field)?) - 1
        } else if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(RecordError::Invalid { field }),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| RecordError::Invalid { field }),
        }
    }

    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        let Some(len) = self.length(false, field)? else {
            return Ok(None);
        };
        let bytes = self.take(len, field)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| RecordError::Invalid { field })
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        self.nullable_string(field)?
            .ok_or(RecordError::Invalid { field })
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        match self.length(true, field)? {
            Some(len) => Ok(Bytes::copy_from_slice(self.take(len, field)?)),
            None => Ok(Bytes::new()),
        }
    }

    fn array_len(&mut self, field: &'static str) -> Result<usize, RecordError> {
        let len = self.length(true, field)?.unwrap_or(0);
        // Every element takes at least one byte: a longer count is corrupt, and checking it
        // here keeps a bad count from reserving memory.
        if len > self.buf.len() {
            return Err(RecordError::Invalid { field });
        }
        Ok(len)
    }

    /// Skips a flexible version's tagged fields (none of which this broker needs).
    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.varint("tagged fields")?;
        for _ in 0..count {
            self.varint("tag")?;
            let size = self.varint("tagged field size")? as usize;
            self.take(size, "tagged field")?;
        }
        Ok(())
    }
}

/// Decodes a `__consumer_offsets` key.
pub fn decode_key(key: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader {
        buf: key,
        flexible: false,
    };
    let version = r.i16("key version")?;
    match version {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.string("group")?,
            topic: r.string("topic")?,
            partition: r.i32("partition")?,
        }),
        2 => Ok(RecordKey::GroupMetadata {
            group: r.string("group")?,
        }),
        other => Ok(RecordKey::Other(other)),
    }
}

/// Decodes an `OffsetCommitValue` of any version Kafka has written.
pub fn decode_offset_value(value: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader {
        buf: value,
        flexible: false,
    };
    let version = r.i16("offset value version")?;
    if !(0..=MAX_VALUE_VERSION).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            record: "OffsetCommitValue",
            version,
        });
    }
    r.flexible = version >= 4;
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 {
        r.i32("leader epoch")?
    } else {
        -1
    };
    let metadata = r.string("metadata")?;
    let commit_timestamp = r.i64("commit timestamp")?;
    let expire_timestamp = if version == 1 {
        Some(r.i64("expire timestamp")?).filter(|t| *t >= 0)
    } else {
        None
    };
    r.skip_tagged_fields()?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp,
    })
}

/// Decodes a `GroupMetadataValue` of any version Kafka has written.
pub fn decode_group_value(value: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader {
        buf: value,
        flexible: false,
    };
    let version = r.i16("group value version")?;
    if !(0..=MAX_VALUE_VERSION).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            record: "GroupMetadataValue",
            version,
        });
    }
    r.flexible = version >= 4;
    let protocol_type = r.string("protocol type")?;
    let generation = r.i32("generation")?;
    let protocol = r.nullable_string("protocol")?;
    let leader = r.nullable_string("leader")?;
    let current_state_timestamp = if version >= 2 {
        Some(r.i64("current state timestamp")?).filter(|t| *t >= 0)
    } else {
        None
    };
    let count = r.array_len("members")?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = r.string("member id")?;
        let group_instance_id = if version >= 3 {
            r.nullable_string("group instance id")?
        } else {
            None
        };
        let client_id = r.string("client id")?;
        let client_host = r.string("client host")?;
        let session_or_rebalance = r.i32("timeout")?;
        let (rebalance_timeout_ms, session_timeout_ms) = if version >= 1 {
            (session_or_rebalance, r.i32("session timeout")?)
        } else {
            // v0 has no rebalance timeout: Kafka used the session timeout for both.
            (session_or_rebalance, session_or_rebalance)
        };
        let subscription = r.bytes("subscription")?;
        let assignment = r.bytes("assignment")?;
        r.skip_tagged_fields()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    r.skip_tagged_fields()?;
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `partitionFor` on known inputs: "".hashCode == 0, "a" == 97,
    /// "polygenelubricants".hashCode == Integer.MIN_VALUE (a classic), which `Utils.abs` maps to 0.
    #[test]
    fn partition_for_matches_javas_string_hash_code() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        // Negative hash: "Aa" and "BB" collide at 2112; "zzzzzzzz" overflows to a negative value.
        let h = java_string_hash("zzzzzzzz");
        assert!(h < 0);
        assert_eq!(partition_for("zzzzzzzz", 50), h.abs() % 50);
        // Characters outside the BMP hash as two UTF-16 code units, as in Java.
        assert_eq!(
            java_string_hash("😀"),
            0xD83Di32.wrapping_mul(31).wrapping_add(0xDE00)
        );
    }

    #[test]
    fn offset_records_round_trip() {
        let key = offset_key("g", "orders", 7);
        assert_eq!(
            decode_key(&key),
            Ok(RecordKey::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7
            })
        );
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp: 1_700_000_000_000,
            expire_timestamp: None,
        };
        let bytes = encode_offset_value(&v);
        assert_eq!(&bytes[..2], &[0, 3], "written as value version 3");
        assert_eq!(decode_offset_value(&bytes), Ok(v.clone()));
        let with_expiry = OffsetValue {
            expire_timestamp: Some(1_800_000_000_000),
            leader_epoch: -1,
            ..v
        };
        let bytes = encode_offset_value(&with_expiry);
        assert_eq!(&bytes[..2], &[0, 1], "an expire timestamp needs version 1");
        assert_eq!(decode_offset_value(&bytes), Ok(with_expiry));
    }

    /// The exact bytes Kafka writes for OffsetCommitValue v3 (offset 5, epoch -1, "", ts 1).
    #[test]
    fn offset_value_bytes_are_kafkas() {
        let v = OffsetValue {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 1,
            expire_timestamp: None,
        };
        let expected: &[u8] = &[
            0, 3, // version
            0, 0, 0, 0, 0, 0, 0, 5, // offset
            255, 255, 255, 255, // leader epoch
            0, 0, // metadata ""
            0, 0, 0, 0, 0, 0, 0, 1, // commit timestamp
        ];
        assert_eq!(&encode_offset_value(&v)[..], expected);
        assert_eq!(
            &offset_key("g", "t", 0)[..],
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 0]
        );
    }

    #[test]
    fn group_records_round_trip() {
        assert_eq!(
            decode_key(&group_key("payments")),
            Ok(RecordKey::GroupMetadata {
                group: "payments".into()
            })
        );
        let v = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp: Some(123),
            members: vec![MemberValue {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(&encode_group_value(&v)), Ok(v));
        let empty = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            ..GroupValue::default()
        };
        assert_eq!(decode_group_value(&encode_group_value(&empty)), Ok(empty));
    }

    /// Version 4 (flexible) as a newer Kafka writes it: compact strings and tagged fields.
    #[test]
    fn flexible_group_value_decodes() {
        let mut b = BytesMut::new();
        b.put_i16(4);
        b.put_u8(9); // "consumer" (8 + 1)
        b.put_slice(b"consumer");
        b.put_i32(2);
        b.put_u8(6);
        b.put_slice(b"range");
        b.put_u8(0); // leader null
        b.put_i64(-1);
        b.put_u8(2); // one member
        for s in ["m", "", "c", "h"] {
            if s.is_empty() {
                b.put_u8(0); // group instance id null
            } else {
                b.put_u8(2);
                b.put_slice(s.as_bytes());
            }
        }
        b.put_i32(10);
        b.put_i32(20);
        b.put_u8(1); // empty subscription
        b.put_u8(3);
        b.put_slice(b"ab");
        b.put_u8(1); // one tagged field on the member
        b.put_u8(7);
        b.put_u8(1);
        b.put_u8(0xff);
        b.put_u8(0); // no tagged fields on the value
        let v = decode_group_value(&b).expect("decodes");
        assert_eq!(v.protocol.as_deref(), Some("range"));
        assert_eq!(v.leader, None);
        assert_eq!(v.current_state_timestamp, None);
        assert_eq!(v.members[0].member_id, "m");
        assert_eq!(v.members[0].group_instance_id, None);
        assert_eq!(v.members[0].session_timeout_ms, 20);
        assert_eq!(&v.members[0].assignment[..], b"ab");
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        assert!(decode_key(&[0]).is_err());
        assert!(decode_key(&[0, 1, 0, 9, b'a']).is_err());
        assert!(decode_offset_value(&[0, 9]).is_err());
        // A member count far larger than the record.
        let mut b = BytesMut::new();
        b.put_i16(3);
        put_string(&mut b, "consumer");
        b.put_i32(1);
        b.put_i16(-1);
        b.put_i16(-1);
        b.put_i64(0);
        b.put_i32(i32::MAX);
        assert!(matches!(
            decode_group_value(&b),
            Err(RecordError::Invalid { field: "members" })
        ));
        // Every truncation of a valid value fails cleanly.
        let full = encode_group_value(&GroupValue {
            protocol_type: "consumer".into(),
            members: vec![MemberValue::default()],
            ..GroupValue::default()
        });
        for n in 0..full.len() {
            assert!(
                decode_group_value(&full[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        assert_eq!(decode_key(&[0, 7]), Ok(RecordKey::Other(7)));
    }
}
