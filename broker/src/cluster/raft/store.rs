//! The metadata quorum's durable state: openraft's log storage ([`LogStore`]) and state machine
//! ([`StateMachine`]), both under one directory (`<log.dir>/__cluster_metadata-0`).
//!
//! # On-disk layout
//!
//! - `raft.redb`: one redb database with two tables.
//!   - `log`: `u64` log index → serde_json of `openraft::Entry<TypeConfig>`.
//!   - `meta`: `"vote"`, `"committed"` and `"last_purged"` → serde_json of the value.
//! - `snapshot.json`: serde_json of the last built or installed snapshot: its `SnapshotMeta`
//!   (last applied log id, last membership, snapshot id) and the [`MetadataImage`]. The same
//!   bytes are what a leader sends a lagging follower.
//! - `snapshot.json.tmp`: only while a snapshot is being written.
//!
//! # Durability contract
//!
//! - Every log-store write (append, truncate, purge, vote, committed) is one redb write
//!   transaction committed with redb's default `Durability::Immediate`, i.e. fsynced, before the
//!   method returns and before `append` reports the entries flushed. redb allows one writer at a
//!   time, so writes reach disk in the order openraft issued them, as openraft requires.
//! - The state machine is *not* persisted on apply; the snapshot is. A snapshot file is replaced
//!   atomically (write the temporary file, fsync it, rename it over, fsync the directory), so a
//!   crash leaves either the old or the new snapshot, never a torn one.
//! - On restart the state machine starts from `snapshot.json`, and openraft re-applies the log
//!   from there up to the saved committed log id ([`RaftLogStorage::save_committed`]), so the
//!   image comes back as of the last committed entry, not merely the last snapshot.
//!
//! redb and file I/O run inline on the calling task: metadata writes are small and rare, and
//! openraft waits for each of them anyway.

// openraft's traits fix the error type to its 200-byte `StorageError`; boxing it in our own
// helpers would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

use std::{
    fmt::Debug,
    fs::{self, File},
    io::{self, Cursor, Write},
    ops::{Bound, RangeBounds},
    path::{Path, PathBuf},
    sync::Arc,
};

use openraft::{
    storage::{LogFlushed, RaftLogStorage, RaftStateMachine},
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend,
    RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership, Vote,
};
use parking_lot::{Mutex, RwLock};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::watch;

use super::{Applied, NodeId, TypeConfig};
use crate::cluster::image::MetadataImage;

const DB_FILE: &str = "raft.redb";
const SNAPSHOT_FILE: &str = "snapshot.json";
const SNAPSHOT_TMP: &str = "snapshot.json.tmp";

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

type Result<T, E = StorageError<NodeId>> = std::result::Result<T, E>;
type Meta = SnapshotMeta<NodeId, BasicNode>;
type Membership = StoredMembership<NodeId, BasicNode>;

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Creating the directory or reading the snapshot failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The log database could not be opened or initialised.
    #[error("cannot open the metadata log database {path}")]
    Redb {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: redb::Error,
    },
    /// The snapshot file does not parse.
    #[error("corrupt metadata snapshot {path}")]
    Json {
        /// The snapshot file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Builds openraft's I/O error; openraft treats any of these as fatal and stops the node.
fn io_err<E: std::error::Error + 'static>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &E,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, e).into()
}

/// Opens (creating if absent) the metadata log directory `dir` (e.g.
/// `<log.dir>/__cluster_metadata-0`).
pub fn open(dir: &Path) -> Result<(LogStore, StateMachine, Arc<SharedImage>), StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;

    let db_path = dir.join(DB_FILE);
    let init = || -> Result<Database, redb::Error> {
        let db = Database::create(&db_path)?;
        // Create both tables up front so that readers never meet a missing table.
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(db)
    };
    let db = init().map_err(|source| StoreError::Redb {
        path: db_path.clone(),
        source,
    })?;

    let snapshot_path = dir.join(SNAPSHOT_FILE);
    let stored = match fs::read(&snapshot_path) {
        Ok(bytes) => Some(
            serde_json::from_slice::<StoredSnapshot<MetadataImage>>(&bytes).map_err(|source| {
                StoreError::Json {
                    path: snapshot_path.clone(),
                    source,
                }
            })?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&snapshot_path)(e)),
    };
    let (meta, image) = match stored {
        Some(s) => (Some(s.meta), s.image),
        None => (None, MetadataImage::default()),
    };

    let image = Arc::new(image);
    let last_applied = meta.as_ref().and_then(|m| m.last_log_id);
    let shared = Arc::new(SharedImage::new(
        image.clone(),
        last_applied.map_or(0, |l| l.index),
    ));
    let sm = StateMachine {
        image,
        last_applied,
        membership: meta
            .as_ref()
            .map(|m| m.last_membership.clone())
            .unwrap_or_default(),
        snapshots: Arc::new(SnapshotFile {
            dir: dir.to_path_buf(),
            current: Mutex::new(meta),
        }),
        builds: 0,
        shared: shared.clone(),
    };
    Ok((LogStore { db: Arc::new(db) }, sm, shared))
}

/// The image as of the last applied entry, shared with the rest of the process.
#[derive(Debug)]
pub struct SharedImage {
    image: RwLock<Arc<MetadataImage>>,
    /// The last applied log index (0 before any).
    applied: watch::Sender<u64>,
}

impl SharedImage {
    fn new(image: Arc<MetadataImage>, applied: u64) -> Self {
        Self {
            image: RwLock::new(image),
            applied: watch::channel(applied).0,
        }
    }

    /// The current image; cheap (clones an `Arc`), and never changes under the caller.
    pub fn current(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// The last applied log index; it changes after each apply and snapshot install.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn publish(&self, image: Arc<MetadataImage>, applied: u64) {
        // Image first: whoever wakes on the index must find an image at least that new.
        *self.image.write() = image;
        self.applied.send_replace(applied);
    }
}

/// The Raft log and vote in `raft.redb`. Clones share the database and serve as log readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Runs `f` in one write transaction and commits it (fsynced: redb's default durability).
    fn write(
        &self,
        subject: ErrorSubject<NodeId>,
        f: impl FnOnce(&WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<()> {
        let run = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            f(&txn)?;
            txn.commit()?;
            Ok(())
        };
        run().map_err(|e| io_err(subject, ErrorVerb::Write, &e))
    }

    fn read<T>(
        &self,
        subject: ErrorSubject<NodeId>,
        f: impl FnOnce(&ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T> {
        let run = || f(&self.db.begin_read()?);
        run().map_err(|e| io_err(subject, ErrorVerb::Read, &e))
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &str,
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>> {
        let bytes = self.read(subject.clone(), |txn| {
            Ok(txn.open_table(META)?.get(key)?.map(|v| v.value().to_vec()))
        })?;
        bytes
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| io_err(subject, ErrorVerb::Read, &e))
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<()> {
        let bytes =
            serde_json::to_vec(value).map_err(|e| io_err(subject.clone(), ErrorVerb::Write, &e))?;
        self.write(subject, |txn| {
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
    }
}

fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>> {
    serde_json::from_slice(bytes).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, &e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let raw = self.read(ErrorSubject::Logs, |txn| {
            let table = txn.open_table(LOG)?;
            let mut raw = Vec::new();
            for item in table.range(bounds)? {
                raw.push(item?.1.value().to_vec());
            }
            Ok(raw)
        })?;
        raw.iter().map(|b| decode_entry(b)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED, ErrorSubject::Logs)?;
        let last = self.read(ErrorSubject::Logs, |txn| {
            Ok(txn
                .open_table(LOG)?
                .last()?
                .map(|(_, v)| v.value().to_vec()))
        })?;
        let last_log_id = match last {
            Some(bytes) => Some(decode_entry(&bytes)?.log_id),
            // Everything was purged (or nothing written): the log ends where the purge did.
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        self.put_meta(VOTE, vote, ErrorSubject::Vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.get_meta(VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        self.put_meta(COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>(COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| {
                serde_json::to_vec(&e)
                    .map(|b| (e.log_id.index, b))
                    .map_err(|err| io_err(ErrorSubject::Log(e.log_id), ErrorVerb::Write, &err))
            })
            .collect::<Result<Vec<_>>>()?;
        self.write(ErrorSubject::Logs, |txn| {
            let mut table = txn.open_table(LOG)?;
            for (index, bytes) in &encoded {
                table.insert(index, bytes.as_slice())?;
            }
            Ok(())
        })?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.write(ErrorSubject::Logs, |txn| {
            txn.open_table(LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let purged = serde_json::to_vec(&log_id)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        // One transaction: entries and the record of their removal go together.
        self.write(ErrorSubject::Logs, |txn| {
            txn.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            txn.open_table(META)?
                .insert(LAST_PURGED, purged.as_slice())?;
            Ok(())
        })
    }
}

/// `snapshot.json`: the snapshot's metadata and the image. Generic so that building serializes
/// a borrowed image and loading deserializes an owned one.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot<I> {
    meta: Meta,
    image: I,
}

/// The snapshot file, shared by the state machine and its snapshot builders.
#[derive(Debug)]
struct SnapshotFile {
    dir: PathBuf,
    /// The metadata of what `snapshot.json` holds. The lock also serializes writers: a builder
    /// runs in its own task and may finish while a snapshot is being installed.
    current: Mutex<Option<Meta>>,
}

impl SnapshotFile {
    /// Atomically replaces the file, unless it already holds a newer snapshot (a slow build
    /// that finishes after an install must not roll the snapshot back).
    fn save(&self, meta: &Meta, bytes: &[u8]) -> io::Result<()> {
        let mut current = self.current.lock();
        if current
            .as_ref()
            .is_some_and(|c| c.last_log_id > meta.last_log_id)
        {
            return Ok(());
        }
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
        // fsync the directory: otherwise the rename can be lost on power failure.
        File::open(&self.dir)?.sync_all()?;
        *current = Some(meta.clone());
        Ok(())
    }

    fn load(&self) -> io::Result<Option<Snapshot<TypeConfig>>> {
        let current = self.current.lock();
        let Some(meta) = current.as_ref() else {
            return Ok(None);
        };
        let bytes = fs::read(self.dir.join(SNAPSHOT_FILE))?;
        Ok(Some(Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// The metadata image as of the last applied entry, plus what openraft needs to resume.
#[derive(Debug)]
pub struct StateMachine {
    /// Shared copy-on-write with [`SharedImage`] and snapshot builders.
    ///
    /// Invariant: `image.applied_index == last_applied.index` (0 if none).
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    snapshots: Arc<SnapshotFile>,
    /// Snapshots built since open: makes snapshot ids unique.
    builds: u64,
    shared: Arc<SharedImage>,
}

impl StateMachine {
    fn publish(&self) {
        let applied = self.last_applied.map_or(0, |l| l.index);
        self.shared.publish(self.image.clone(), applied);
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Copies the image once per call if a reader or builder still holds the old one.
        let image = Arc::make_mut(&mut self.image);
        let mut replies = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Normal(batch) => image.apply(index, &batch),
                EntryPayload::Blank => image.applied_index = index,
                EntryPayload::Membership(m) => {
                    image.applied_index = index;
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            self.last_applied = Some(entry.log_id);
            replies.push(Applied);
        }
        self.publish();
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.builds += 1;
        let (term, index) = self
            .last_applied
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        SnapshotBuilder {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: format!("{term}-{index}-{}", self.builds),
            },
            image: self.image.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let received: StoredSnapshot<MetadataImage> = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| io_err(subject(), ErrorVerb::Read, &e))?;
        // openraft's `meta` is authoritative; re-encode so the file carries exactly it.
        let stored = StoredSnapshot {
            meta: meta.clone(),
            image: received.image,
        };
        let bytes =
            serde_json::to_vec(&stored).map_err(|e| io_err(subject(), ErrorVerb::Write, &e))?;
        self.snapshots
            .save(meta, &bytes)
            .map_err(|e| io_err(subject(), ErrorVerb::Write, &e))?;
        self.image = Arc::new(stored.image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.publish();
        tracing::info!(snapshot = %meta.snapshot_id, last_log_index = meta.last_log_id.map(|l| l.index), "installed a metadata snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        self.snapshots
            .load()
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))
    }
}

/// A frozen copy of the state machine (an `Arc` of the image), written out on another task.
#[derive(Debug)]
pub struct SnapshotBuilder {
    meta: Meta,
    image: Arc<MetadataImage>,
    snapshots: Arc<SnapshotFile>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let subject = || ErrorSubject::Snapshot(Some(self.meta.signature()));
        let bytes = serde_json::to_vec(&StoredSnapshot {
            meta: self.meta.clone(),
            image: &*self.image,
        })
        .map_err(|e| io_err(subject(), ErrorVerb::Write, &e))?;
        self.snapshots
            .save(&self.meta, &bytes)
            .map_err(|e| io_err(subject(), ErrorVerb::Write, &e))?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{
        storage::RaftLogStorageExt, testing::StoreBuilder, testing::Suite, CommittedLeaderId,
        StorageHelper,
    };
    use tempfile::TempDir;

    use super::*;
    use crate::cluster::image::{MetadataBatch, MetadataRecord};

    /// A fresh store in its own temporary directory, which lives as long as the guard.
    struct TempStores;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for TempStores {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachine)> {
            let dir = tempfile::tempdir()
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
            let (log, sm, _) =
                open(dir.path()).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, &e))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's conformance suite for `RaftLogStorage` + `RaftStateMachine`. It starts its own
    /// runtimes, so this is a plain test.
    #[test]
    fn openraft_conformance_suite() -> Result<()> {
        Suite::test_all(TempStores)
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn normal(term: u64, index: u64, records: Vec<MetadataRecord>) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(MetadataBatch { records }),
        }
    }

    fn feature(level: i16) -> MetadataRecord {
        MetadataRecord::FeatureLevel {
            name: "metadata.version".into(),
            level,
        }
    }

    fn indexes(entries: &[Entry<TypeConfig>]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn state_survives_reopen() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let membership = openraft::Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(1, BasicNode::new("127.0.0.1:9093"))]),
        );
        let entries = vec![
            Entry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Membership(membership.clone()),
            },
            normal(
                1,
                2,
                vec![MetadataRecord::ClusterId {
                    cluster_id: "abc".into(),
                }],
            ),
            Entry {
                log_id: log_id(2, 3),
                payload: EntryPayload::Blank,
            },
            normal(2, 4, vec![feature(7)]),
            normal(2, 5, vec![feature(8)]),
        ];
        let vote = Vote::new_committed(2, 1);

        let (snapshot_meta, snapshot_image, final_image) = {
            let (mut log, mut sm, shared) = open(dir.path())?;
            let mut applied = shared.subscribe();
            log.blocking_append(entries.clone()).await?;
            log.save_vote(&vote).await?;
            sm.apply(entries[..3].to_vec()).await?;
            assert!(applied.has_changed()?, "apply publishes the applied index");
            assert_eq!(*applied.borrow_and_update(), 3);
            assert_eq!(
                shared.current().applied_index,
                3,
                "blank entries advance the image"
            );
            let snapshot = sm.get_snapshot_builder().await.build_snapshot().await?;
            let snapshot_image = shared.current();
            // Entries 4 and 5 are committed and applied but only in the log, not the snapshot.
            sm.apply(entries[3..].to_vec()).await?;
            log.save_committed(Some(log_id(2, 5))).await?;
            log.purge(log_id(1, 2)).await?;
            (snapshot.meta, snapshot_image, shared.current())
        };
        assert_eq!(final_image.features["metadata.version"], 8);

        let (mut log, mut sm, shared) = open(dir.path())?;
        assert_eq!(log.read_vote().await?, Some(vote));
        assert_eq!(log.read_committed().await?, Some(log_id(2, 5)));
        assert_eq!(
            log.get_log_state().await?,
            LogState {
                last_purged_log_id: Some(log_id(1, 2)),
                last_log_id: Some(log_id(2, 5)),
            }
        );
        assert_eq!(log.try_get_log_entries(..).await?, entries[2..].to_vec());

        // The state machine starts from the snapshot...
        let stored_membership = StoredMembership::new(Some(log_id(1, 1)), membership);
        assert_eq!(
            sm.applied_state().await?,
            (Some(log_id(2, 3)), stored_membership.clone())
        );
        assert_eq!(shared.current(), snapshot_image);
        assert_eq!(*shared.subscribe().borrow(), 3);
        let current = sm.get_current_snapshot().await?.expect("snapshot kept");
        assert_eq!(current.meta, snapshot_meta);

        // ...and openraft's startup re-applies the committed entries after it.
        StorageHelper::new(&mut log, &mut sm)
            .get_initial_state()
            .await?;
        assert_eq!(
            sm.applied_state().await?,
            (Some(log_id(2, 5)), stored_membership)
        );
        assert_eq!(shared.current(), final_image);
        assert_eq!(*shared.subscribe().borrow(), 5);
        Ok(())
    }

    #[tokio::test]
    async fn purge_and_truncate_keep_log_state_consistent() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (mut log, _sm, _shared) = open(dir.path())?;
        let state = |purged: Option<LogId<NodeId>>, last: Option<LogId<NodeId>>| LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        };
        assert_eq!(log.get_log_state().await?, state(None, None));

        log.blocking_append((1..=6).map(|i| normal(1, i, vec![feature(1)])))
            .await?;
        assert_eq!(log.get_log_state().await?, state(None, Some(log_id(1, 6))));

        // truncate removes [5, ∞).
        log.truncate(log_id(1, 5)).await?;
        assert_eq!(log.get_log_state().await?, state(None, Some(log_id(1, 4))));
        assert_eq!(indexes(&log.try_get_log_entries(..).await?), [1, 2, 3, 4]);

        // purge removes (-∞, 2] and remembers it.
        log.purge(log_id(1, 2)).await?;
        assert_eq!(
            log.get_log_state().await?,
            state(Some(log_id(1, 2)), Some(log_id(1, 4)))
        );
        assert_eq!(indexes(&log.try_get_log_entries(..).await?), [3, 4]);
        assert!(log.try_get_log_entries(0..3).await?.is_empty());

        // A new leader's entry replaces the truncated tail.
        log.blocking_append([normal(2, 5, vec![])]).await?;
        assert_eq!(
            log.get_log_state().await?,
            state(Some(log_id(1, 2)), Some(log_id(2, 5)))
        );
        assert_eq!(indexes(&log.try_get_log_entries(4..).await?), [4, 5]);

        // Purging past the end (after a snapshot install) empties the log; it then ends at the
        // purge point and continues from there.
        log.purge(log_id(3, 7)).await?;
        assert_eq!(
            log.get_log_state().await?,
            state(Some(log_id(3, 7)), Some(log_id(3, 7)))
        );
        assert!(log.try_get_log_entries(..).await?.is_empty());
        log.blocking_append([normal(3, 8, vec![])]).await?;
        assert_eq!(
            log.get_log_state().await?,
            state(Some(log_id(3, 7)), Some(log_id(3, 8)))
        );
        assert_eq!(indexes(&log.try_get_log_entries(..).await?), [8]);
        Ok(())
    }
}
