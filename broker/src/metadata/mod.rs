//! Kafka's text form of UUIDs (topic ids, cluster ids). The cluster metadata itself lives in the
//! Raft metadata log: see [`crate::cluster`].

use uuid::Uuid;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka prints UUIDs as URL-safe base64 without padding (22 characters).
pub fn kafka_uuid_string(id: Uuid) -> String {
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    out
}

/// Parses Kafka's 22-character form back into a UUID.
pub fn parse_kafka_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 22 {
        return None;
    }
    let mut acc: u128 = 0;
    for (i, c) in text.bytes().enumerate() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u128;
        // 22 × 6 = 132 bits: the last character carries 2 bits and 4 of padding.
        acc = if i == 21 {
            (acc << 2) | (v >> 4)
        } else {
            (acc << 6) | v
        };
    }
    Some(Uuid::from_u128(acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_strings_match_kafkas_format() {
        let id = Uuid::from_bytes([0; 16]);
        assert_eq!(kafka_uuid_string(id), "AAAAAAAAAAAAAAAAAAAAAA");
        let id = Uuid::from_bytes([0xff; 16]);
        assert_eq!(kafka_uuid_string(id), "_____________________w");
        for _ in 0..100 {
            let id = Uuid::new_v4();
            assert_eq!(parse_kafka_uuid(&kafka_uuid_string(id)), Some(id));
        }
        assert_eq!(parse_kafka_uuid("not a uuid"), None);
    }
}
