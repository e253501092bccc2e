//! The metastore: one snapshotter's `metadata.db`, opened with the same care as meta.db
//! (lock probe, meta page validation, caught panics: [`crate::metadata::bolt::open_db`]),
//! read in read-only transactions and changed in read-write ones, each committed with fsync
//! before it returns (containerd's `snapshots/storage/metastore.go`).
//!
//! A snapshotter runs its file system work (creating, renaming, copying snapshot
//! directories) inside the write transaction, as containerd does, so a scan for orphan
//! directories never sees a directory a half-done operation is about to record.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bbolt_rs::{BucketImpl, BucketRwImpl, TxApi, TxRwRefApi};

use super::schema::V1;
use crate::metadata::bolt::{open_db, BoltError, Db, OpenMode, TxRef, TxRwRef};
use crate::snapshot::error::{SnapshotError, SnapshotResult};

/// Mode of a new `metadata.db` (containerd's metastore opens it with 0600).
pub const FILE_MODE: u32 = 0o600;

/// Marks a transaction that failed in our code (the real error travels beside it).
const ROLLBACK: &str = "corral: roll back";

/// Read access inside a transaction (read-only or read-write).
pub trait Reader<'tx> {
    /// The `v1` schema bucket, if the store has one yet.
    fn v1(&self) -> Option<BucketImpl<'tx, '_>>;
}

/// A read-only transaction.
pub struct ReadTx<'a, 'tx> {
    tx: &'a TxRef<'tx>,
}

impl<'tx> Reader<'tx> for ReadTx<'_, 'tx> {
    fn v1(&self) -> Option<BucketImpl<'tx, '_>> {
        self.tx.bucket(V1)
    }
}

/// A read-write transaction.
pub struct WriteTx<'a, 'tx> {
    tx: &'a mut TxRwRef<'tx>,
}

impl<'tx> Reader<'tx> for WriteTx<'_, 'tx> {
    fn v1(&self) -> Option<BucketImpl<'tx, '_>> {
        self.tx.bucket(V1)
    }
}

impl<'tx> WriteTx<'_, 'tx> {
    /// The `v1` bucket, created when missing.
    pub(super) fn v1_mut(&mut self) -> SnapshotResult<BucketRwImpl<'tx, '_>> {
        Ok(self.tx.create_bucket_if_not_exists(V1)?)
    }
}

/// One snapshotter's metadata store. Clone it to share it between threads.
///
/// bbolt-rs 1.3.10 can deadlock when a read-only transaction runs while a read-write one
/// commits (design note bbolt-rs.md), so reads share `guard` and a write holds it alone.
#[derive(Clone)]
pub struct MetaStore {
    db: Db,
    guard: Arc<RwLock<()>>,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("path", &self.db.path())
            .finish()
    }
}

impl MetaStore {
    /// Opens `path` read-write, creating it (mode 0600, like containerd) when missing. A file
    /// another process holds (a running containerd) is refused at once, not waited for.
    pub fn open(path: impl AsRef<Path>) -> SnapshotResult<MetaStore> {
        let path = path.as_ref();
        let existed = match fs::symlink_metadata(path) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(SnapshotError::io(format!("{}", path.display()), e)),
        };
        let db = open_db(path, OpenMode::ReadWrite)?;
        if !existed {
            fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| SnapshotError::io(format!("chmod {}", path.display()), e))?;
        }
        Ok(MetaStore {
            db,
            guard: Default::default(),
        })
    }

    /// Opens an existing `path` read-only (for inspection); writes are refused.
    pub fn open_read_only(path: impl AsRef<Path>) -> SnapshotResult<MetaStore> {
        Ok(MetaStore {
            db: open_db(path.as_ref(), OpenMode::ReadOnly)?,
            guard: Default::default(),
        })
    }

    /// The file.
    pub fn path(&self) -> PathBuf {
        self.db.path().to_path_buf()
    }

    /// Runs `f` in a read-only transaction.
    pub fn view<T>(
        &self,
        f: impl FnOnce(&ReadTx<'_, '_>) -> SnapshotResult<T>,
    ) -> SnapshotResult<T> {
        let _shared = self.guard.read().unwrap_or_else(|p| p.into_inner());
        self.run_view(f)
    }

    /// Runs `f` in a read-only transaction while no write can start or run, so what `f`
    /// reads stays true until it returns (containerd takes a write transaction for that).
    pub fn view_exclusive<T>(
        &self,
        f: impl FnOnce(&ReadTx<'_, '_>) -> SnapshotResult<T>,
    ) -> SnapshotResult<T> {
        let _alone = self.guard.write().unwrap_or_else(|p| p.into_inner());
        self.run_view(f)
    }

    fn run_view<T>(
        &self,
        f: impl FnOnce(&ReadTx<'_, '_>) -> SnapshotResult<T>,
    ) -> SnapshotResult<T> {
        let mut f = Some(f);
        let mut out: Option<SnapshotResult<T>> = None;
        let result = self.db.view(|tx| {
            if let Some(f) = f.take() {
                out = Some(f(&ReadTx { tx: &tx }));
            }
            Ok(())
        });
        finish(result, out)
    }

    /// Runs `f` in a read-write transaction: committed (and on disk) when `f` returns `Ok`,
    /// rolled back when it returns an error. An error from the commit itself is returned too,
    /// so a caller that changed files inside `f` undoes them on any error.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_, '_>) -> SnapshotResult<T>,
    ) -> SnapshotResult<T> {
        let _alone = self.guard.write().unwrap_or_else(|p| p.into_inner());
        let mut db = self.db.clone();
        let mut f = Some(f);
        let mut out: Option<SnapshotResult<T>> = None;
        let result = db.update(|mut tx| {
            let Some(f) = f.take() else {
                return Ok(());
            };
            let r = f(&mut WriteTx { tx: &mut tx });
            let failed = r.is_err();
            out = Some(r);
            if failed {
                Err(bbolt_rs::Error::IO(io::Error::other(ROLLBACK)))
            } else {
                Ok(())
            }
        });
        finish(result, out)
    }
}

/// Combines the transaction's own result with the closure's: the closure's error first, then
/// the transaction's (a failed commit).
fn finish<T>(result: Result<(), BoltError>, out: Option<SnapshotResult<T>>) -> SnapshotResult<T> {
    match (result, out) {
        (_, Some(Err(e))) => Err(e),
        (Ok(()), Some(Ok(v))) => Ok(v),
        (Err(e), _) => Err(e.into()),
        (Ok(()), None) => Err(SnapshotError::Storage("the transaction did not run".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bbolt_rs::{BucketApi, BucketRwApi};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_new_file_is_bolt_with_containerds_mode_and_no_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let ms = MetaStore::open(&path).unwrap();
        assert!(ms.view(|tx| Ok(tx.v1().is_none())).unwrap());
        drop(ms);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        // bolt's magic, as Go writes it (bbolt-rs with `compat`).
        assert_eq!(&fs::read(&path).unwrap()[16..20], &[0xed, 0xda, 0x0c, 0xed]);
    }

    #[test]
    fn errors_roll_back_and_read_only_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let ms = MetaStore::open(&path).unwrap();
        let r: SnapshotResult<()> = ms.update(|tx| {
            tx.v1_mut()?.put(b"stray", b"x")?;
            Err(SnapshotError::InvalidArgument("no".into()))
        });
        assert!(matches!(r, Err(SnapshotError::InvalidArgument(_))));
        assert!(ms.view(|tx| Ok(tx.v1().is_none())).unwrap());
        ms.update(|tx| Ok(tx.v1_mut()?.put(b"kept", b"y")?))
            .unwrap();
        let got = ms
            .view_exclusive(|tx| Ok(tx.v1().and_then(|b| b.get(b"kept").map(<[u8]>::to_vec))))
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"y"[..]));
        drop(ms);
        let ro = MetaStore::open_read_only(&path).unwrap();
        let err = ro.update(|_| Ok(())).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Bolt(BoltError::ReadOnly { .. })),
            "{err}"
        );
    }
}
