//! Where the content store keeps things under its plugin directory, exactly as containerd
//! 1.6's `content/local` does:
//!
//! ```text
//! <root>/io.containerd.content.v1.content/
//!   blobs/<algorithm>/<hex>      committed blobs, read-only (sha256 is the only algorithm
//!                                a commit produces)
//!   ingest/<hex of sha256(ref)>/ one directory per active write (see `ingest`)
//! ```

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::digest;
use super::error::{ContentError, ContentResult};

/// The content store's plugin directory under a daemon root.
pub const PLUGIN_DIR: &str = "io.containerd.content.v1.content";
/// Mode of the directories a commit creates under `blobs/` (before the umask).
const BLOB_DIR_MODE: u32 = 0o755;

/// Where the content store of a daemon root lives.
pub fn store_path(daemon_root: &Path) -> PathBuf {
    daemon_root.join(PLUGIN_DIR)
}

/// `<store>/blobs`.
pub(crate) fn blobs_dir(store: &Path) -> PathBuf {
    store.join("blobs")
}

/// `<store>/ingest`.
pub(crate) fn ingest_root(store: &Path) -> PathBuf {
    store.join("ingest")
}

/// `<store>/blobs/<algorithm>/<hex>` for a valid digest; an invalid one (anything that could
/// leave that directory included) is `InvalidArgument`.
pub(crate) fn blob_path(store: &Path, digest: &str) -> ContentResult<PathBuf> {
    let (algorithm, hex) = digest::split(digest)?;
    Ok(blobs_dir(store).join(algorithm).join(hex))
}

/// fsyncs a directory, so the entries created, renamed or removed in it are on disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes sure `<store>/blobs/<algorithm>` exists; a directory created here is made durable
/// (its parent fsynced) before a blob is renamed into it. Returns the directory.
pub(crate) fn ensure_blob_dir(store: &Path, algorithm: &str) -> ContentResult<PathBuf> {
    let blobs = blobs_dir(store);
    let dir = blobs.join(algorithm);
    for (path, parent) in [(&blobs, store), (&dir, blobs.as_path())] {
        match DirBuilder::new().mode(BLOB_DIR_MODE).create(path) {
            Ok(()) => sync_dir(parent)
                .map_err(|e| ContentError::io(format!("sync {}", parent.display()), e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ContentError::io(format!("mkdir {}", path.display()), e)),
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn paths_are_containerds() {
        let store = store_path(Path::new("/var/lib/containerd"));
        assert_eq!(
            store,
            Path::new("/var/lib/containerd/io.containerd.content.v1.content")
        );
        let d = digest::from_bytes(b"x");
        assert_eq!(
            blob_path(&store, &d).unwrap(),
            store.join("blobs/sha256").join(&d[7..])
        );
        assert!(blob_path(&store, "sha256:../../../etc").is_err());
        assert_eq!(ingest_root(&store), store.join("ingest"));
    }

    #[test]
    fn creates_the_blob_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ensure_blob_dir(tmp.path(), "sha256").unwrap();
        assert_eq!(dir, tmp.path().join("blobs/sha256"));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o700, 0o700);
        assert_eq!(mode & 0o022, 0, "never group or world writable");
        assert_eq!(ensure_blob_dir(tmp.path(), "sha256").unwrap(), dir);
    }
}
