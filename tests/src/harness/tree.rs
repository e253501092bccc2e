//! Snapshots of a directory tree, to prove a test did not touch a host path (for example that
//! a private containerd left the host's `/run/containerd` alone).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What is recorded of one entry: enough to notice creation, removal, rewrite or chmod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryState {
    /// `d`irectory, `f`ile, `l`ink, `s`ocket, `p`ipe, `c`har or `b`lock device.
    pub kind: char,
    /// Permission bits and file type (`st_mode`).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Inode number (a replaced file gets a new one).
    pub ino: u64,
    /// Modification time in nanoseconds since the epoch (a directory's changes when an entry
    /// is added or removed).
    pub mtime_ns: i128,
}

/// The state of every entry at and below a path (not following symlinks, not crossing into
/// other file systems), or the fact that the path did not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSnapshot {
    root: PathBuf,
    entries: BTreeMap<PathBuf, EntryState>,
}

impl TreeSnapshot {
    /// Records `root` and everything below it; an absent `root` gives an empty snapshot.
    pub fn take(root: &Path) -> io::Result<TreeSnapshot> {
        let mut entries = BTreeMap::new();
        match std::fs::symlink_metadata(root) {
            Ok(meta) => record(root, Path::new(""), &meta, meta.dev(), &mut entries)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(TreeSnapshot {
            root: root.to_path_buf(),
            entries,
        })
    }

    /// True when the root existed.
    pub fn exists(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The recorded entries, by path relative to the root (the root itself is `""`).
    pub fn entries(&self) -> &BTreeMap<PathBuf, EntryState> {
        &self.entries
    }

    /// Human-readable differences from `earlier` to `self` (empty when unchanged).
    pub fn changes_since(&self, earlier: &TreeSnapshot) -> Vec<String> {
        let mut changes = Vec::new();
        for (path, before) in &earlier.entries {
            match self.entries.get(path) {
                None => changes.push(format!("removed {}", self.root.join(path).display())),
                Some(after) if after != before => changes.push(format!(
                    "changed {}: {before:?} -> {after:?}",
                    self.root.join(path).display()
                )),
                Some(_) => {}
            }
        }
        for path in self.entries.keys() {
            if !earlier.entries.contains_key(path) {
                changes.push(format!("created {}", self.root.join(path).display()));
            }
        }
        changes
    }
}

impl fmt::Display for TreeSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.exists() {
            return write!(f, "{} (absent)", self.root.display());
        }
        write!(
            f,
            "{} ({} entries)",
            self.root.display(),
            self.entries.len()
        )
    }
}

fn record(
    root: &Path,
    relative: &Path,
    meta: &std::fs::Metadata,
    dev: u64,
    entries: &mut BTreeMap<PathBuf, EntryState>,
) -> io::Result<()> {
    let kind = kind_of(&meta.file_type());
    entries.insert(
        relative.to_path_buf(),
        EntryState {
            kind,
            mode: meta.mode(),
            size: if kind == 'd' { 0 } else { meta.size() },
            ino: meta.ino(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        },
    );
    if kind != 'd' || meta.dev() != dev {
        return Ok(());
    }
    for entry in std::fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let child = relative.join(entry.file_name());
        match std::fs::symlink_metadata(root.join(&child)) {
            Ok(meta) => record(root, &child, &meta, dev, entries)?,
            // Removed between read_dir and stat: it simply is not part of the snapshot.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn kind_of(t: &std::fs::FileType) -> char {
    if t.is_dir() {
        'd'
    } else if t.is_symlink() {
        'l'
    } else if t.is_socket() {
        's'
    } else if t.is_fifo() {
        'p'
    } else if t.is_char_device() {
        'c'
    } else if t.is_block_device() {
        'b'
    } else {
        'f'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let absent = TreeSnapshot::take(&dir.path().join("x")).unwrap();
        assert!(!absent.exists());
        std::fs::write(dir.path().join("a"), "1").unwrap();
        let before = TreeSnapshot::take(dir.path()).unwrap();
        assert!(before.changes_since(&before.clone()).is_empty());
        std::fs::write(dir.path().join("b"), "2").unwrap();
        let after = TreeSnapshot::take(dir.path()).unwrap();
        let changes = after.changes_since(&before);
        assert!(
            changes
                .iter()
                .any(|c| c.starts_with("created") && c.ends_with("/b")),
            "{changes:?}"
        );
    }
}
