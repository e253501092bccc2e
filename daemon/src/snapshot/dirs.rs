//! The `snapshots/` directory both snapshotters keep beside their `metadata.db`:
//! `snapshots/<id>` per snapshot, `new-XXXXXX` while one is being made, `rm-<id>` while one
//! is being removed, and anything no record refers to found and removed by `Cleanup`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::error::{SnapshotError, SnapshotResult};

/// The directory of snapshot directories inside a snapshotter root.
pub const SNAPSHOTS_DIR: &str = "snapshots";

/// Creates `dir` (and missing parents) with `mode`; an existing directory is fine.
pub fn make_dir_all(dir: &Path, mode: u32) -> SnapshotResult<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| SnapshotError::io(format!("mkdir {}", dir.display()), e))
}

/// A new, empty directory `new-XXXXXX` (mode 0700) in `snapshots`.
pub fn make_temp_dir(snapshots: &Path) -> io::Result<PathBuf> {
    let template = snapshots.join("new-XXXXXX");
    nix::unistd::mkdtemp(&template).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("failed to create temp dir in {}: {e}", snapshots.display()),
        )
    })
}

/// Makes the entries of `dir` (a rename into it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a directory tree, logging (not returning) a failure: what is left, nothing
/// refers to, and `Cleanup` will try again.
pub fn remove_logged(path: &Path) {
    match fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("failed to remove directory {}: {e}", path.display()),
    }
}

/// The path `snapshots/rm-<id>` a removed snapshot's directory is renamed to before its
/// contents go, so a half-deleted tree never sits under a snapshot's name.
pub fn removal_path(snapshots: &Path, id: u64) -> PathBuf {
    snapshots.join(format!("rm-{id}"))
}

/// Renames `snapshots/<id>` away and deletes it; a directory that is already gone is fine.
/// Failures are logged: the record is gone already, and `Cleanup` removes leftovers.
pub fn discard(snapshots: &Path, id: u64) {
    let path = snapshots.join(id.to_string());
    let renamed = removal_path(snapshots, id);
    match fs::rename(&path, &renamed) {
        Ok(()) => remove_logged(&renamed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            log::warn!("failed to rename {} away: {e}", path.display());
            remove_logged(&path);
        }
    }
}

/// The entries of `snapshots` whose name is not the id of a record in `ids` (containerd's
/// `getCleanupDirectories`).
pub fn orphans(snapshots: &Path, ids: &BTreeMap<String, String>) -> SnapshotResult<Vec<PathBuf>> {
    let read = |e| SnapshotError::io(format!("reading {}", snapshots.display()), e);
    let mut out = Vec::new();
    for entry in fs::read_dir(snapshots).map_err(read)? {
        let entry = entry.map_err(read)?;
        let name = entry.file_name();
        if !ids.contains_key(name.to_string_lossy().as_ref()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_entries_without_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        for d in ["1", "2", "new-abc", "rm-7"] {
            fs::create_dir(s.join(d)).unwrap();
        }
        fs::write(s.join("stray"), b"").unwrap();
        let ids = BTreeMap::from([("1".to_string(), "a".to_string()), ("9".into(), "b".into())]);
        assert_eq!(
            orphans(s, &ids).unwrap(),
            [
                s.join("2"),
                s.join("new-abc"),
                s.join("rm-7"),
                s.join("stray")
            ]
        );
        let t = make_temp_dir(s).unwrap();
        assert!(t.file_name().unwrap().to_string_lossy().starts_with("new-"));
        fs::create_dir_all(s.join("2/fs/deep")).unwrap();
        discard(s, 2);
        assert!(!s.join("2").exists() && !s.join("rm-2").exists());
        discard(s, 2);
    }
}
