//! Cluster metadata of a single-node broker: topics (id, partition count, config overrides),
//! dynamic broker configs, the cluster id and the producer-id high-water mark.
//!
//! It lives in one JSON document, `<first log dir>/__cluster_metadata/metadata.json`, replaced
//! atomically (write a temporary file, fsync it, rename it over, fsync the directory) on every
//! change, so a crash leaves either the old or the new document. The multi-broker issue replaces
//! this file with a Raft-replicated metadata log; the [`MetadataImage`] the rest of the broker
//! reads stays the same shape.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Properties;

/// Errors reading or writing the metadata document.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// I/O on the metadata file failed.
    #[error("failed to {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The document does not parse.
    #[error("metadata file {path} is not valid")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// One topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicRecord {
    /// Topic name.
    pub name: String,
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor as requested (a single node holds one replica).
    pub replication_factor: i16,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
}

impl TopicRecord {
    /// The overrides as validated [`Properties`] (values were validated when set).
    pub fn overrides(&self) -> Properties {
        let mut p = Properties::default();
        for (k, v) in &self.configs {
            // Values were validated when stored; a key a newer build removed is skipped.
            let _ = p.set(k, v);
        }
        p
    }
}

/// The whole metadata document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetadataImage {
    /// Cluster id (22-character base64 of a random UUID, as Kafka formats them).
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicRecord>,
    /// Dynamic cluster-wide broker config defaults.
    pub broker_configs: BTreeMap<String, String>,
    /// Producer ids below this have been handed out (or reserved) and never will be again.
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// The dynamic broker defaults as [`Properties`].
    pub fn dynamic_broker_props(&self) -> Properties {
        let mut p = Properties::default();
        for (k, v) in &self.broker_configs {
            let _ = p.set(k, v);
        }
        p
    }

    /// Finds a topic by id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicRecord> {
        self.topics.values().find(|t| t.id == id)
    }
}

/// Reads and durably replaces the metadata document.
#[derive(Debug)]
pub struct MetadataStore {
    dir: PathBuf,
}

impl MetadataStore {
    /// Opens the store under `log_dir`, creating an empty image with a fresh cluster id.
    pub fn open(log_dir: &Path) -> Result<(MetadataStore, MetadataImage), MetadataError> {
        let dir = log_dir.join("__cluster_metadata");
        fs::create_dir_all(&dir).map_err(|source| MetadataError::Io {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        let store = MetadataStore { dir };
        let path = store.path();
        let image = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| MetadataError::Parse {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let image = MetadataImage {
                    cluster_id: kafka_uuid_string(Uuid::new_v4()),
                    ..MetadataImage::default()
                };
                store.save(&image)?;
                image
            }
            Err(source) => {
                return Err(MetadataError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        Ok((store, image))
    }

    fn path(&self) -> PathBuf {
        self.dir.join("metadata.json")
    }

    /// Atomically replaces the document with `image`.
    pub fn save(&self, image: &MetadataImage) -> Result<(), MetadataError> {
        let path = self.path();
        let tmp = self.dir.join("metadata.json.tmp");
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| MetadataError::Io { op, path, source }
        };
        let bytes = serde_json::to_vec_pretty(image).map_err(|source| MetadataError::Parse {
            path: path.clone(),
            source,
        })?;
        let mut f = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        // fsync the directory: otherwise the rename can be lost on power failure.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", &self.dir))
    }
}

/// Kafka prints UUIDs as URL-safe base64 without padding (22 characters).
pub fn kafka_uuid_string(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, mut image) = MetadataStore::open(dir.path()).expect("open");
        assert_eq!(image.cluster_id.len(), 22);
        image.topics.insert(
            "t".into(),
            TopicRecord {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: 3,
                replication_factor: 1,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
        );
        image.next_producer_id = 2000;
        store.save(&image).expect("save");
        let (_, again) = MetadataStore::open(dir.path()).expect("reopen");
        assert_eq!(again, image);
    }

    #[test]
    fn uuid_strings_match_kafkas_format() {
        let id = Uuid::from_bytes([0; 16]);
        assert_eq!(kafka_uuid_string(id), "AAAAAAAAAAAAAAAAAAAAAA");
        let id = Uuid::from_bytes([0xff; 16]);
        assert_eq!(kafka_uuid_string(id), "_____________________w");
    }
}
