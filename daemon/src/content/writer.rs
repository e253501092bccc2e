//! An active write (containerd's `content/local` writer): bytes appended to an ingest's
//! `data` while their sha256 runs alongside, then committed into `blobs/sha256/<hex>`.
//!
//! Opening a reference that already has a valid ingest resumes it at its end, re-reading the
//! data to rebuild the digest; an ingest that does not decode, names another reference or
//! announced another total is started again from nothing. The writer holds its reference's
//! lock until it is committed, closed or dropped.

use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::digest::{Digester, CANONICAL};
use super::error::{ContentError, ContentResult};
use super::ingest::{self, IngestPaths, Status, DIR_MODE, FILE_MODE};
use super::layout;
use super::locks::RefLock;
use crate::metadata::encoding::Timestamp;

/// Size of the buffer a resumed write re-reads its data with.
const REHASH_BUFFER: usize = 1 << 20;

/// An open write on one reference; see the [module documentation](self).
#[derive(Debug)]
pub struct Writer {
    store: PathBuf,
    paths: IngestPaths,
    /// `None` once committed or closed.
    file: Option<File>,
    reference: String,
    offset: u64,
    total: Option<u64>,
    expected: Option<String>,
    digester: Digester,
    started_at: Timestamp,
    updated_at: Timestamp,
    /// Released when the writer is committed, closed or dropped.
    lock: Option<RefLock>,
}

/// What a valid ingest on disk says, for resuming it.
struct Resumed {
    status: Status,
    digester: Digester,
}

fn closed(op: &str) -> ContentError {
    ContentError::FailedPrecondition(format!("cannot {op} on closed writer"))
}

impl Writer {
    /// Opens (or resumes) the write of `reference` in the store at `store`, holding `lock`
    /// (containerd's `store.writer`). The caller has checked the reference and the total.
    pub(crate) fn open(
        store: &Path,
        reference: &str,
        total: Option<u64>,
        expected: Option<&str>,
        lock: RefLock,
    ) -> ContentResult<Writer> {
        if let Some(d) = expected {
            let p = layout::blob_path(store, d)
                .map_err(|e| e.context("calculating expected blob path for writer"))?;
            if fs::metadata(&p).is_ok() {
                return Err(ContentError::AlreadyExists(format!("content {d}")));
            }
        }
        let paths = IngestPaths::new(&layout::ingest_root(store), reference);
        let mut fresh_dir = false;
        let resumed = match DirBuilder::new().mode(DIR_MODE).create(&paths.dir) {
            Ok(()) => {
                fresh_dir = true;
                None
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match resume(&paths, reference, total) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        log::info!(
                            "failed to resume the status from path {}: {e}. will recreate them",
                            paths.dir.display()
                        );
                        None
                    }
                }
            }
            Err(e) => {
                return Err(ContentError::io(
                    format!("mkdir {}", paths.dir.display()),
                    e,
                ))
            }
        };
        let opened = match resumed {
            Some(r) => open_data(&paths, r.status.offset, false).map(|file| (file, r)),
            None => start(&paths, reference, total).and_then(|status| {
                let file = open_data(&paths, 0, true)?;
                let digester = Digester::new();
                Ok((file, Resumed { status, digester }))
            }),
        };
        let (file, Resumed { status, digester }) = match opened {
            Ok(o) => o,
            Err(e) => {
                if fresh_dir {
                    // Nothing of this write exists yet: leave no half-made ingest behind.
                    if let Err(r) = fs::remove_dir_all(&paths.dir) {
                        log::warn!("removing ingest {}: {r}", paths.dir.display());
                    }
                }
                return Err(e);
            }
        };
        Ok(Writer {
            store: store.to_path_buf(),
            paths,
            file: Some(file),
            reference: reference.to_string(),
            offset: status.offset,
            total: status.total,
            expected: expected.map(str::to_string),
            digester,
            started_at: status.started_at,
            updated_at: status.updated_at,
            lock: Some(lock),
        })
    }

    /// The backend reference this writer holds.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The ingest directory (for tests and diagnostics).
    pub fn ingest_dir(&self) -> &Path {
        &self.paths.dir
    }

    /// Appends `buf` (containerd's `Write`). On an error the bytes that did reach the file
    /// are counted and digested, so offset, digest and data stay in step.
    pub fn write(&mut self, mut buf: &[u8]) -> ContentResult<()> {
        let file = self.file.as_mut().ok_or_else(|| closed("write"))?;
        let mut result = Ok(());
        while !buf.is_empty() {
            match file.write(buf) {
                Ok(0) => {
                    result = Err(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => {
                    self.digester.update(&buf[..n]);
                    self.offset += n as u64;
                    buf = &buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.updated_at = Timestamp::now();
        result.map_err(|e| ContentError::io(format!("write {}", self.paths.data().display()), e))
    }

    /// Starts the write again from nothing (containerd's `Truncate`): only size 0 is
    /// supported, as in containerd, whose Write service truncates only when a client resends
    /// from offset 0.
    pub fn truncate(&mut self, size: u64) -> ContentResult<()> {
        if size != 0 {
            return Err(ContentError::Unknown("Truncate: unsupported size".into()));
        }
        let file = self.file.as_mut().ok_or_else(|| closed("truncate"))?;
        self.offset = 0;
        self.digester.reset();
        let data = self.paths.data();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.set_len(0))
            .map_err(|e| ContentError::io(format!("truncate {}", data.display()), e))
    }

    /// Where the write stands (containerd's writer `Status`).
    pub fn status(&self) -> Status {
        Status {
            reference: self.reference.clone(),
            offset: self.offset,
            total: self.total,
            expected: self.expected.clone(),
            started_at: self.started_at,
            updated_at: self.updated_at,
        }
    }

    /// The digest of the bytes written so far (still valid after a commit).
    pub fn digest(&self) -> String {
        self.digester.digest()
    }

    /// Commits the write into `blobs/sha256/<hex>` (containerd's `Commit`) and returns its
    /// digest. `size`, when given, must be the number of bytes written (`unexpected commit
    /// size N, expected M`), and `expected` the digest (`unexpected commit digest ...,
    /// expected ...`); both are `FailedPrecondition` and keep the ingest, so a new writer can
    /// resume it. When the blob already exists the ingest is removed and the answer is
    /// `AlreadyExists` (`content <digest>`).
    ///
    /// The data is fsynced before it is renamed into place and the blob directory fsynced
    /// after, so a commit that returns is on disk and a crash leaves the blob complete or
    /// absent. The blob is made read-only and its times set to the commit time, as containerd
    /// does. The writer is closed and its reference released however the commit ends.
    pub fn commit(&mut self, size: Option<u64>, expected: Option<&str>) -> ContentResult<String> {
        let _lock = self.lock.take();
        let file = self.file.take().ok_or_else(|| closed("commit"))?;
        file.sync_all()
            .map_err(|e| ContentError::io("sync failed", e))?;
        let meta = file
            .metadata()
            .map_err(|e| ContentError::io("stat on ingest file failed", e))?;
        if let Some(size) = size.filter(|&s| s != meta.len()) {
            return Err(ContentError::FailedPrecondition(format!(
                "unexpected commit size {}, expected {size}",
                meta.len()
            )));
        }
        let digest = self.digester.digest();
        if let Some(expected) = expected.filter(|&e| e != digest) {
            return Err(ContentError::FailedPrecondition(format!(
                "unexpected commit digest {digest}, expected {expected}"
            )));
        }
        let hex = digest.split_once(':').map_or(digest.as_str(), |(_, h)| h);
        let dir = layout::ensure_blob_dir(&self.store, CANONICAL)?;
        let target = dir.join(hex);
        if fs::symlink_metadata(&target).is_ok() {
            self.remove_ingest();
            return Err(ContentError::AlreadyExists(format!("content {digest}")));
        }
        let data = self.paths.data();
        fs::rename(&data, &target).map_err(|e| {
            ContentError::io(format!("rename {} {}", data.display(), target.display()), e)
        })?;
        // The blob is in place: what follows is best effort, as in containerd, except that the
        // rename must be on disk before the commit is acknowledged.
        let now = SystemTime::now();
        if let Err(e) = file.set_times(FileTimes::new().set_accessed(now).set_modified(now)) {
            log::error!("failed to change file time to commit time of {digest}: {e}");
        }
        let read_only = meta.permissions().mode() & 0o777 & !0o333;
        if let Err(e) = file.set_permissions(Permissions::from_mode(read_only)) {
            log::error!("failed to make {digest} readonly: {e}");
        }
        if let Err(e) = file.sync_all() {
            log::error!("syncing the times and mode of {digest}: {e}");
        }
        layout::sync_dir(&dir)
            .map_err(|e| ContentError::io(format!("sync {}", dir.display()), e))?;
        self.remove_ingest();
        Ok(digest)
    }

    /// Closes the writer, keeping the write for a later writer to resume (containerd's
    /// `Close`): the data is fsynced and `updatedat` written, then the reference released.
    /// Closing a committed or closed writer does nothing.
    pub fn close(&mut self) -> ContentResult<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let _lock = self.lock.take();
        let synced = file
            .sync_all()
            .map_err(|e| ContentError::io(format!("sync {}", self.paths.data().display()), e));
        drop(file);
        let stamped = ingest::write_time_file(&self.paths.updated_at(), self.updated_at);
        synced.and(stamped)
    }

    fn remove_ingest(&self) {
        if let Err(e) = fs::remove_dir_all(&self.paths.dir) {
            log::error!(
                "failed to remove ingest directory {} of ref {}: {e}",
                self.paths.dir.display(),
                self.reference
            );
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("closing the write of {}: {e}", self.reference);
        }
    }
}

/// Reads back a valid ingest of `reference` and re-digests its data (containerd's
/// `resumeStatus`).
fn resume(paths: &IngestPaths, reference: &str, total: Option<u64>) -> ContentResult<Resumed> {
    let mut status = ingest::read_status(paths)
        .map_err(|e| e.context("failed reading status of resume write"))?;
    if status.reference != reference {
        return Err(ContentError::Unknown(format!(
            "ref key does not match: {reference} != {}",
            status.reference
        )));
    }
    if let (Some(given), Some(stored)) = (total, status.total) {
        if given != stored {
            return Err(ContentError::Unknown(format!(
                "provided total differs from status: {given} != {stored}"
            )));
        }
    }
    let data = paths.data();
    let mut file =
        File::open(&data).map_err(|e| ContentError::io(format!("open {}", data.display()), e))?;
    let mut digester = Digester::new();
    let mut buf = vec![0u8; REHASH_BUFFER];
    let mut offset = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                digester.update(&buf[..n]);
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ContentError::io(format!("read {}", data.display()), e)),
        }
    }
    status.offset = offset;
    Ok(Resumed { status, digester })
}

/// Writes the files of a new write (or one started again): `ref`, `startedat`, `updatedat`
/// and `total` when known (a stale `total` of an earlier attempt goes).
fn start(paths: &IngestPaths, reference: &str, total: Option<u64>) -> ContentResult<Status> {
    let now = Timestamp::now();
    ingest::write_file(&paths.reference(), reference.as_bytes())?;
    ingest::write_time_file(&paths.started_at(), now)?;
    ingest::write_time_file(&paths.updated_at(), now)?;
    match total {
        Some(t) => ingest::write_file(&paths.total(), t.to_string().as_bytes())?,
        None => match fs::remove_file(paths.total()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ContentError::io(
                    format!("remove {}", paths.total().display()),
                    e,
                ))
            }
        },
    }
    Ok(Status {
        reference: reference.to_string(),
        offset: 0,
        total,
        expected: None,
        started_at: now,
        updated_at: now,
    })
}

/// Opens `data` for writing at `offset`. A write started again empties it (containerd keeps
/// the old bytes and overwrites them from 0, which leaves a stale tail when the new write is
/// shorter; the tail would be committed with the blob).
fn open_data(paths: &IngestPaths, offset: u64, empty: bool) -> ContentResult<File> {
    let data = paths.data();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(empty)
        .mode(FILE_MODE)
        .open(&data)
        .map_err(|e| ContentError::io(format!("failed to open data file {}", data.display()), e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| {
        ContentError::io(
            format!(
                "could not seek to current write offset in {}",
                data.display()
            ),
            e,
        )
    })?;
    Ok(file)
}
