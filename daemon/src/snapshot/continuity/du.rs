//! Disk usage of a directory tree, counted as containerd's `fs.DiskUsage` (continuity 0.3,
//! `du_unix.go`) counts it: every inode once (hard links are one inode), the root included,
//! symlinks not followed, size = allocated blocks x 512.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::snapshot::info::Usage;

/// `st_blocks` counts 512-byte units.
const BLOCK_UNIT: i64 = 512;

/// The usage of the tree at `root`. Any entry that cannot be read fails the whole count, as
/// containerd's walk does.
pub fn disk_usage(root: &Path) -> io::Result<Usage> {
    let mut inodes: HashSet<(u64, u64)> = HashSet::new();
    let mut size: i64 = 0;
    let mut count = |m: &fs::Metadata| {
        if inodes.insert((m.dev(), m.ino())) {
            size = size.saturating_add(i64::try_from(m.blocks()).unwrap_or(i64::MAX) * BLOCK_UNIT);
        }
    };
    let with_path =
        |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));

    let top = fs::symlink_metadata(root).map_err(|e| with_path(root, e))?;
    count(&top);
    let mut dirs: Vec<PathBuf> = Vec::new();
    if top.is_dir() {
        dirs.push(root.to_path_buf());
    }
    // Iterative, so a deep tree cannot exhaust a small thread stack.
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| with_path(&dir, e))? {
            let entry = entry.map_err(|e| with_path(&dir, e))?;
            let path = entry.path();
            let m = fs::symlink_metadata(&path).map_err(|e| with_path(&path, e))?;
            count(&m);
            if m.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(Usage {
        inodes: inodes.len() as i64,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_inodes_once_and_allocated_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fs");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/file"), vec![7u8; 10_000]).unwrap();
        fs::hard_link(root.join("a/b/file"), root.join("link")).unwrap();
        std::os::unix::fs::symlink("/does/not/exist", root.join("dangling")).unwrap();
        fs::write(root.join("empty"), b"").unwrap();

        let u = disk_usage(&root).unwrap();
        // fs, a, b, file (= link), dangling, empty.
        assert_eq!(u.inodes, 6);
        let blocks: i64 = ["", "a", "a/b", "a/b/file", "dangling", "empty"]
            .iter()
            .map(|p| fs::symlink_metadata(root.join(p)).unwrap().blocks() as i64 * 512)
            .sum();
        assert_eq!(u.size, blocks);
        assert!(u.size >= 10_000);

        let err = disk_usage(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
