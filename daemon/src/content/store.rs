//! The content store backend of one daemon root (containerd's `content/local` store):
//! blobs by digest, active writes by reference. It knows nothing of namespaces or labels;
//! the metadata layer keeps those and hands it backend references (`<ns>/<seq>/<ref>`).

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{ContentError, ContentResult};
use super::ingest::{self, IngestPaths, Status};
use super::layout;
use super::locks::RefLocks;
use super::reader::BlobReader;
use super::writer::Writer;
use crate::metadata::content::validate_digest;
use crate::metadata::encoding::Timestamp;

/// How long opening a writer waits for another writer of the same reference to let go
/// before answering `Unavailable`. containerd tries ten times with random sleeps of up to
/// 1, 2, 4, ... 512 ms, about half a second in all on average.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_millis(500);

/// The digest algorithms go-digest knows, and so the `blobs/` directories a walk reads.
const ALGORITHMS: [&str; 3] = ["sha256", "sha384", "sha512"];

/// A committed blob, as containerd's local store describes it from the file alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub digest: String,
    pub size: u64,
    /// The file's modification time: the commit time.
    pub created_at: Timestamp,
    /// The file's access time (containerd's `getATime`).
    pub updated_at: Timestamp,
}

impl Info {
    fn from_metadata(digest: String, meta: &fs::Metadata) -> Self {
        Info {
            digest,
            size: meta.len(),
            created_at: Timestamp::new(meta.mtime(), meta.mtime_nsec() as u32),
            updated_at: Timestamp::new(meta.atime(), meta.atime_nsec() as u32),
        }
    }
}

/// The content store in one plugin directory (`<root>/io.containerd.content.v1.content`).
/// Clones share the table of references being written.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    locks: Arc<RefLocks>,
    lock_wait: Duration,
}

impl Store {
    /// Opens the store in `root` (the plugin directory, see [`layout::store_path`]),
    /// creating it and its `ingest/` directory as containerd does (mode 0777 before the
    /// umask; `blobs/` appears with the first commit).
    pub fn open(root: impl AsRef<Path>) -> ContentResult<Store> {
        let root = root.as_ref().to_path_buf();
        let ingest = layout::ingest_root(&root);
        DirBuilder::new()
            .recursive(true)
            .mode(0o777)
            .create(&ingest)
            .map_err(|e| ContentError::io(format!("mkdir {}", ingest.display()), e))?;
        Ok(Store {
            root,
            locks: Arc::default(),
            lock_wait: DEFAULT_LOCK_WAIT,
        })
    }

    /// The same store, with writers waiting up to `wait` for a held reference.
    pub fn with_lock_wait(mut self, wait: Duration) -> Store {
        self.lock_wait = wait;
        self
    }

    /// The plugin directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (`blobs/<algorithm>/<hex>`); `InvalidArgument` for a
    /// digest that is not go-digest's syntax.
    pub fn blob_path(&self, digest: &str) -> ContentResult<PathBuf> {
        layout::blob_path(&self.root, digest)
    }

    /// The ingest directory of a backend reference (`ingest/<hex of sha256(ref)>`).
    pub fn ingest_path(&self, reference: &str) -> PathBuf {
        self.ingest_paths(reference).dir
    }

    fn ingest_paths(&self, reference: &str) -> IngestPaths {
        IngestPaths::new(&layout::ingest_root(&self.root), reference)
    }

    /// A blob's size and times (containerd's `Info`): `NotFound` (`content <digest>`) when
    /// it is not there.
    pub fn info(&self, digest: &str) -> ContentResult<Info> {
        let p = self
            .blob_path(digest)
            .map_err(|e| e.context("calculating blob info path"))?;
        match fs::metadata(&p) {
            Ok(meta) if meta.is_file() => Ok(Info::from_metadata(digest.to_string(), &meta)),
            Ok(_) => {
                log::warn!("content store: {} is not a regular file", p.display());
                Err(ContentError::NotFound(format!("content {digest}")))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(format!("content {digest}")))
            }
            Err(e) => Err(ContentError::io(format!("stat {}", p.display()), e)),
        }
    }

    /// Opens a blob for reading (containerd's `ReaderAt`).
    pub fn reader(&self, digest: &str) -> ContentResult<BlobReader> {
        let p = self
            .blob_path(digest)
            .map_err(|e| e.context("calculating blob path for ReaderAt"))?;
        let not_found = || {
            ContentError::NotFound(format!(
                "blob {digest} expected at {}: blob not found",
                p.display()
            ))
        };
        let file = match fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(ContentError::io(format!("open {}", p.display()), e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| ContentError::io(format!("stat {}", p.display()), e))?;
        if !meta.is_file() {
            return Err(not_found());
        }
        Ok(BlobReader::new(file, meta.len()))
    }

    /// Every blob under `blobs/`, by algorithm then digest (containerd's `Walk`, unfiltered).
    /// Files whose names are not digests, and anything that is not a regular file, are
    /// skipped with a log line; a store without `blobs/` yet has no blobs.
    pub fn walk(&self) -> ContentResult<Vec<Info>> {
        let blobs = layout::blobs_dir(&self.root);
        let mut out = Vec::new();
        for algorithm in ALGORITHMS {
            let dir = blobs.join(algorithm);
            let names = match sorted_names(&dir) {
                Ok(names) => names,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ContentError::io(format!("read {}", dir.display()), e)),
            };
            for name in names {
                let path = dir.join(&name);
                let digest = format!("{algorithm}:{name}");
                if let Err(e) = validate_digest(&digest) {
                    log::warn!(
                        "content store: invalid digest for blob path {}: {e}",
                        path.display()
                    );
                    continue;
                }
                let meta = match fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    // Deleted while we walk.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(ContentError::io(format!("stat {}", path.display()), e)),
                };
                if !meta.is_file() {
                    log::warn!("content store: {} is not a regular file", path.display());
                    continue;
                }
                out.push(Info::from_metadata(digest, &meta));
            }
        }
        Ok(out)
    }

    /// Removes a blob (containerd's `Delete`); `NotFound` (`content <digest>`) when it is not
    /// there.
    pub fn delete(&self, digest: &str) -> ContentResult<()> {
        let p = self
            .blob_path(digest)
            .map_err(|e| e.context("calculating blob path for delete"))?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(format!("content {digest}")))
            }
            Err(e) => Err(ContentError::io(format!("remove {}", p.display()), e)),
        }
    }

    /// Opens a writer on the backend reference `reference` (containerd's `Writer`), new or
    /// resuming the ingest already on disk at its end. `total` is the announced size (0 is
    /// unknown, as in containerd; more than `i64::MAX` is `InvalidArgument`); when `expected`
    /// names a blob that already exists the answer is `AlreadyExists`. A reference held by
    /// another writer is `Unavailable` once the store's lock wait has passed.
    pub fn writer(
        &self,
        reference: &str,
        total: Option<u64>,
        expected: Option<&str>,
    ) -> ContentResult<Writer> {
        if reference.is_empty() {
            return Err(ContentError::InvalidArgument(
                "ref must not be empty".into(),
            ));
        }
        let total = match total {
            Some(t) if i64::try_from(t).is_err() => {
                return Err(ContentError::InvalidArgument(format!(
                    "total {t} out of range"
                )))
            }
            Some(0) | None => None,
            t => t,
        };
        let lock = self.locks.lock(reference, self.lock_wait)?;
        Writer::open(&self.root, reference, total, expected, lock)
    }

    /// True while a writer holds `reference`.
    pub fn is_locked(&self, reference: &str) -> bool {
        self.locks.is_held(reference)
    }

    /// An active write's status as it is on disk (containerd's `Status`); `NotFound` when
    /// there is no such ingest.
    pub fn status(&self, reference: &str) -> ContentResult<Status> {
        ingest::read_status(&self.ingest_paths(reference))
    }

    /// Every active write on disk, by reference (containerd's `ListStatuses`, unfiltered).
    /// An ingest that vanishes while listed is left out; one that does not decode (or whose
    /// directory is not named by its ref) is left out with a log line, so one damaged ingest
    /// never hides the others.
    pub fn list_statuses(&self) -> ContentResult<Vec<Status>> {
        let root = layout::ingest_root(&self.root);
        let names = match sorted_names(&root) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ContentError::io(format!("read {}", root.display()), e)),
        };
        let mut out = Vec::new();
        for name in names {
            let paths = IngestPaths {
                dir: root.join(&name),
            };
            match ingest::read_status(&paths) {
                Ok(status) if self.ingest_paths(&status.reference).dir == paths.dir => {
                    out.push(status)
                }
                Ok(status) => log::warn!(
                    "content store: ingest {} holds ref {:?}, which is not its name",
                    paths.dir.display(),
                    status.reference
                ),
                Err(ContentError::NotFound(m)) => {
                    log::debug!("content store: skipping ingest {name}: {m}")
                }
                Err(e) => log::warn!(
                    "content store: skipping damaged ingest {}: {e}",
                    paths.dir.display()
                ),
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Removes an active write (containerd's `Abort`); `NotFound` when there is none.
    pub fn abort(&self, reference: &str) -> ContentResult<()> {
        let dir = self.ingest_path(reference);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ContentError::NotFound(format!("ingest ref {reference:?}")))
            }
            Err(e) => Err(ContentError::io(format!("remove {}", dir.display()), e)),
        }
    }
}

/// The entry names of `dir` that are UTF-8, sorted; others are logged and skipped (no
/// digest or ingest name has any other byte).
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(raw) => log::warn!(
                "content store: skipping {}/{}",
                dir.display(),
                raw.to_string_lossy()
            ),
        }
    }
    names.sort();
    Ok(names)
}
