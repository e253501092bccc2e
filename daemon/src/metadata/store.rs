//! The store: one meta.db, read in read-only transactions (many at once) and changed in
//! read-write transactions (one at a time), each committed with fsync before it returns.
//!
//! Object modules (`namespace`, `container`, ...) work inside a transaction through
//! [`Reader`] / [`WriteTx`]; callers outside this module never see bolt types.

use std::path::{Path, PathBuf};

use bbolt_rs::{BucketApi, BucketImpl, BucketRwApi, BucketRwImpl, TxApi, TxRwRefApi};

use super::bolt::{open_db, BoltError, Db, OpenMode, TxRef, TxRwRef};
use super::encoding::{decode_varint_value, encode_varint};
use super::error::{MetaError, MetaResult};
use super::schema::{DB_VERSION, SCHEMA_V1, VERSION};

/// Marks a transaction that failed in our code (the real error travels beside it).
const ROLLBACK: &str = "corral: roll back";

/// Read access inside a transaction (read-only or read-write).
pub trait Reader<'tx> {
    /// The `v1` schema bucket.
    fn v1(&self) -> Option<BucketImpl<'tx, '_>>;
}

/// A read-only transaction.
pub struct ReadTx<'a, 'tx> {
    tx: &'a TxRef<'tx>,
}

impl<'tx> Reader<'tx> for ReadTx<'_, 'tx> {
    fn v1(&self) -> Option<BucketImpl<'tx, '_>> {
        self.tx.bucket(SCHEMA_V1)
    }
}

/// A read-write transaction.
pub struct WriteTx<'a, 'tx> {
    tx: &'a mut TxRwRef<'tx>,
}

impl<'tx> Reader<'tx> for WriteTx<'_, 'tx> {
    fn v1(&self) -> Option<BucketImpl<'tx, '_>> {
        self.tx.bucket(SCHEMA_V1)
    }
}

impl<'tx> WriteTx<'_, 'tx> {
    /// The `v1` bucket, created when missing.
    pub(super) fn v1_mut(&mut self) -> MetaResult<BucketRwImpl<'tx, '_>> {
        Ok(self.tx.create_bucket_if_not_exists(SCHEMA_V1)?)
    }
}

/// The metadata store of one daemon root.
///
/// bbolt-rs 1.3.10 can deadlock when a read-only transaction runs while a read-write one
/// commits (the two take its internal locks in opposite orders, seen under 50 concurrent
/// clients), so the store itself keeps them apart: reads share `guard`, a write holds it alone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    guard: std::sync::Arc<std::sync::RwLock<()>>,
}

impl Store {
    /// Opens (creating if needed) the database read-write. A new file gets containerd's
    /// schema bucket and version; an existing one must carry the version Corral writes.
    pub fn open(path: impl AsRef<Path>) -> MetaResult<Store> {
        let db = open_db(path.as_ref(), OpenMode::ReadWrite)?;
        let store = Store {
            db,
            guard: Default::default(),
        };
        store.init()?;
        Ok(store)
    }

    /// Opens the database read-only (for dump, check, tests).
    pub fn open_read_only(path: impl AsRef<Path>) -> MetaResult<Store> {
        let db = open_db(path.as_ref(), OpenMode::ReadOnly)?;
        let store = Store {
            db,
            guard: Default::default(),
        };
        store.view(|tx| check_version(tx.v1().as_ref().and_then(|b| b.get(VERSION))))?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> PathBuf {
        self.db.path().to_path_buf()
    }

    fn init(&self) -> MetaResult<()> {
        self.update(|tx| {
            let existing = tx.v1().and_then(|b| b.get(VERSION).map(<[u8]>::to_vec));
            match existing {
                Some(v) => check_version(Some(&v)),
                None => {
                    let mut v1 = tx.v1_mut()?;
                    v1.put(VERSION, encode_varint(DB_VERSION))?;
                    Ok(())
                }
            }
        })
    }

    /// Runs `f` in a read-only transaction.
    pub fn view<T>(&self, f: impl FnOnce(&ReadTx<'_, '_>) -> MetaResult<T>) -> MetaResult<T> {
        let _shared = self.guard.read().unwrap_or_else(|p| p.into_inner());
        let mut f = Some(f);
        let mut out: Option<MetaResult<T>> = None;
        let result = self.db.view(|tx| {
            if let Some(f) = f.take() {
                let r = ReadTx { tx: &tx };
                out = Some(f(&r));
            }
            Ok(())
        });
        finish(result, out)
    }

    /// Runs `f` in a read-write transaction: committed (and on disk) when `f` returns `Ok`,
    /// rolled back when it returns an error.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_, '_>) -> MetaResult<T>,
    ) -> MetaResult<T> {
        let _alone = self.guard.write().unwrap_or_else(|p| p.into_inner());
        let mut db = self.db.clone();
        let mut f = Some(f);
        let mut out: Option<MetaResult<T>> = None;
        let result = db.update(|mut tx| {
            let Some(f) = f.take() else {
                return Ok(());
            };
            let mut w = WriteTx { tx: &mut tx };
            let r = f(&mut w);
            let failed = r.is_err();
            out = Some(r);
            if failed {
                Err(bbolt_rs::Error::IO(std::io::Error::other(ROLLBACK)))
            } else {
                Ok(())
            }
        });
        finish(result, out)
    }
}

/// Combines the transaction's own result with the closure's.
fn finish<T>(result: Result<(), BoltError>, out: Option<MetaResult<T>>) -> MetaResult<T> {
    match (result, out) {
        (_, Some(Err(e))) => Err(e),
        (Ok(()), Some(Ok(v))) => Ok(v),
        (Err(e), _) => Err(e.into()),
        (Ok(()), None) => Err(MetaError::Storage("the transaction did not run".into())),
    }
}

/// containerd 1.6/1.7 write version 3; older files need containerd's migrations, newer ones
/// come from a containerd Corral does not know.
fn check_version(raw: Option<&[u8]>) -> MetaResult<()> {
    let Some(raw) = raw else {
        return Err(MetaError::Version(
            "meta.db has no v1/version: not a containerd metadata database".into(),
        ));
    };
    let v = decode_varint_value(raw).map_err(|e| MetaError::encoding("v1/version", e))?;
    match v {
        DB_VERSION => Ok(()),
        v if v > DB_VERSION => Err(MetaError::Version(format!(
            "meta.db has version {v}, newer than the {DB_VERSION} Corral reads and writes: \
             it was written by a newer containerd; refusing to touch it"
        ))),
        v => Err(MetaError::Version(format!(
            "meta.db has version {v}, older than {DB_VERSION}: open it once with containerd 1.6 \
             to migrate it (Corral does not migrate yet)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_the_schema_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        Store::open(&path).unwrap();
        let store = Store::open_read_only(&path).unwrap();
        let v = store
            .view(|tx| Ok(tx.v1().and_then(|b| b.get(VERSION).map(<[u8]>::to_vec))))
            .unwrap();
        assert_eq!(v.as_deref(), Some(&[0x06u8][..]));
    }

    #[test]
    fn errors_roll_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("meta.db")).unwrap();
        let r: MetaResult<()> = store.update(|tx| {
            tx.v1_mut()?.put(b"stray", b"x")?;
            Err(MetaError::InvalidArgument("no".into()))
        });
        assert!(matches!(r, Err(MetaError::InvalidArgument(_))));
        let stray = store
            .view(|tx| Ok(tx.v1().and_then(|b| b.get(b"stray").map(<[u8]>::to_vec))))
            .unwrap();
        assert!(stray.is_none());
    }

    #[test]
    fn other_versions_are_refused_untouched() {
        for (v, word) in [(4, "newer"), (2, "older")] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("meta.db");
            let store = Store::open(&path).unwrap();
            store
                .update(|tx| Ok(tx.v1_mut()?.put(VERSION, encode_varint(v))?))
                .unwrap();
            drop(store);
            let before = std::fs::read(&path).unwrap();
            let err = Store::open(&path).err().unwrap();
            assert!(err.to_string().contains(word), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), before);
        }
    }

    #[test]
    fn containerds_file_opens() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/containerd-1.6/meta.db");
        Store::open_read_only(fixture).unwrap();
    }
}
