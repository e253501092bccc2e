//! OCI whiteouts (`.wh.<name>` deletes `<name>`, `.wh..wh..opq` makes its directory opaque),
//! applied either by changing a full file system view ([`native_remove`], [`native_opaque`],
//! containerd's default conversion) or by writing overlayfs' own markers into an upper
//! directory ([`overlay_remove`], [`overlay_opaque`], containerd's `OverlayConvertWhiteout`).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;

use super::error::{DiffError, DiffResult};
use super::sys;

/// Prefix of a whiteout file.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of whiteout files with a special meaning.
pub const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker.
pub const WHITEOUT_OPAQUE_DIR: &[u8] = b".wh..wh..opq";
/// The overlayfs xattr marking an opaque directory (privileged mounts).
pub const TRUSTED_OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";
/// The overlayfs xattr marking an opaque directory on `userxattr` mounts.
pub const USER_OPAQUE_XATTR: &[u8] = b"user.overlay.opaque";

/// What an entry's base name says about whiteouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary entry.
    None,
    /// `.wh..wh..opq`: the directory hides what the layers below have in it.
    Opaque,
    /// `.wh.<name>`: `<name>` is deleted.
    Remove(&'a [u8]),
}

/// Classifies a base name; a whiteout whose target is not a name inside its directory
/// (`.wh.`, `.wh..`, `.wh...`) is refused, as containerd's `validateWhiteout` refuses it.
pub fn classify(base: &[u8]) -> Result<Whiteout<'_>, String> {
    if base == WHITEOUT_OPAQUE_DIR {
        return Ok(Whiteout::Opaque);
    }
    match base.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Whiteout::None),
        Some(b"" | b"." | b"..") => Err(format!(
            "invalid whiteout name: {}",
            String::from_utf8_lossy(base)
        )),
        Some(original) => Ok(Whiteout::Remove(original)),
    }
}

/// Removes `path` and everything under it, not following a symbolic link; nothing there is
/// fine.
pub fn remove_all(path: &Path) -> DiffResult<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DiffError::io("lstat", path, e)),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(DiffError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// `.wh.<original>` in `dir` of a full view: removes `<original>`.
pub fn native_remove(dir: &Path, original: &[u8]) -> DiffResult<()> {
    remove_all(&dir.join(OsStr::from_bytes(original)))
}

/// `.wh..wh..opq` in `dir` of a full view: removes everything under `dir` that this layer did
/// not write itself (`unpacked`), whether the marker comes before or after the layer's own
/// entries of that directory. Directories the layer wrote are kept and searched, since what
/// the lower layers had in them is hidden too.
pub fn native_opaque(dir: &Path, unpacked: &HashSet<PathBuf>) -> DiffResult<()> {
    if let Err(e) = std::fs::symlink_metadata(dir) {
        return Err(DiffError::io("lstat", dir, e));
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            // Removed meanwhile (a parent was deleted).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(DiffError::io("read directory", &current, e)),
        };
        for child in entries {
            let child = child.map_err(|e| DiffError::io("read directory", &current, e))?;
            let path = child.path();
            if !unpacked.contains(&path) {
                remove_all(&path)?;
                continue;
            }
            let is_dir = child
                .file_type()
                .map_err(|e| DiffError::io("lstat", &path, e))?
                .is_dir();
            if is_dir {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// `.wh.<original>` in `dir` of an overlay upper directory: a 0/0 character device named
/// `<original>`, owned like the whiteout entry.
pub fn overlay_remove(dir: &Path, original: &[u8], uid: u32, gid: u32) -> DiffResult<()> {
    let path = dir.join(OsStr::from_bytes(original));
    sys::mknod(&path, SFlag::S_IFCHR, 0, 0, 0)
        .map_err(|e| DiffError::io("create whiteout device", &path, e))?;
    sys::lchown(&path, uid, gid).map_err(|e| DiffError::io("lchown", &path, e))
}

/// `.wh..wh..opq` in `dir` of an overlay upper directory: the opaque xattr (`trusted.` or,
/// for `userxattr` mounts, `user.overlay.opaque`) set to `y`.
pub fn overlay_opaque(dir: &Path, user_xattr: bool) -> DiffResult<()> {
    let name = if user_xattr {
        USER_OPAQUE_XATTR
    } else {
        TRUSTED_OPAQUE_XATTR
    };
    sys::lsetxattr(dir, name, b"y", 0).map_err(|e| DiffError::io("set opaque xattr on", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        assert_eq!(classify(b"file").unwrap(), Whiteout::None);
        assert_eq!(classify(b".wh").unwrap(), Whiteout::None);
        assert_eq!(classify(b".wh..wh..opq").unwrap(), Whiteout::Opaque);
        assert_eq!(classify(b".wh.file").unwrap(), Whiteout::Remove(b"file"));
        // Other meta names whiteout their literal target, as in containerd.
        assert_eq!(
            classify(b".wh..wh.plnk").unwrap(),
            Whiteout::Remove(b".wh.plnk")
        );
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            let e = classify(bad).unwrap_err();
            assert!(e.starts_with("invalid whiteout name"), "{e}");
        }
    }

    #[test]
    fn remove_all_does_not_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove_all(&link).unwrap();
        assert!(!link.exists());
        assert!(outside.join("keep").exists());
        remove_all(&dir.path().join("missing")).unwrap();
    }

    #[test]
    fn opaque_keeps_only_what_the_layer_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir_all(d.join("sub/old")).unwrap();
        std::fs::write(d.join("sub/new"), b"").unwrap();
        std::fs::write(d.join("lower"), b"").unwrap();
        std::fs::write(d.join("mine"), b"").unwrap();
        let unpacked: HashSet<PathBuf> = [d.join("mine"), d.join("sub"), d.join("sub/new")]
            .into_iter()
            .collect();
        native_opaque(&d, &unpacked).unwrap();
        assert!(d.join("mine").exists());
        assert!(d.join("sub/new").exists());
        assert!(!d.join("lower").exists());
        assert!(!d.join("sub/old").exists());
    }
}
