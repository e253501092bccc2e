//! Names inside the target: cleaning an archive name, and resolving a path under a root the
//! way a chroot would (continuity's `fs.RootPath`, which containerd's applier uses for every
//! entry's parent): symbolic links are followed, but an absolute link target starts again at
//! the root and `..` never climbs above it, so the result is always inside the root.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use super::error::{DiffError, DiffResult};

/// How many symbolic links one resolution may follow (continuity's limit).
const MAX_LINKS: usize = 255;

/// An archive name cleaned like Go's `filepath.Clean`, as the components of a path relative
/// to the target. Empty for the target itself (`.`, `./`).
///
/// Unlike containerd, which bounds such names at the root, an absolute name and a name whose
/// `..` climbs above the root are refused: no image tool writes them, and they are the mark
/// of a hostile archive.
pub fn clean_name(name: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if name.first() == Some(&b'/') {
        return Err("absolute name");
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err("name climbs above the root");
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// A relative path made of `parts`.
pub fn join_parts(parts: &[&[u8]]) -> PathBuf {
    let mut path = PathBuf::new();
    for part in parts {
        path.push(OsStr::from_bytes(part));
    }
    path
}

/// `root` joined with `path` (relative, or absolute meaning "from the root"), every symbolic
/// link on the way resolved inside `root`. The last component is resolved too; components
/// that do not exist are taken as they are.
///
/// A loop of links is [`DiffError::InvalidEntry`] (`too many links`), as is a component under
/// something that is not a directory; other `lstat` failures are I/O errors. `entry` names
/// the archive entry in those errors.
pub fn root_path(root: &Path, path: &Path, entry: &[u8]) -> DiffResult<PathBuf> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0usize;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        let meta = match std::fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                resolved.push(part);
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(DiffError::entry(
                    entry,
                    format!("{} is not a directory", inside_display(&resolved)),
                ))
            }
            Err(e) => return Err(DiffError::io("lstat", candidate, e)),
        };
        if !meta.file_type().is_symlink() {
            resolved.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(DiffError::entry(entry, "too many links"));
        }
        let target =
            std::fs::read_link(&candidate).map_err(|e| DiffError::io("readlink", &candidate, e))?;
        if target.is_absolute() {
            resolved.clear();
        }
        push_front(&mut pending, &target);
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

/// Puts the components of `path` (`.` and the root dropped, `..` kept) before `pending`.
fn push_front(pending: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from_vec(b"..".to_vec())),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
}

/// A path inside the target for messages: `"/usr/lib"`.
fn inside_display(resolved: &[OsString]) -> String {
    let mut path = PathBuf::from("/");
    path.extend(resolved);
    format!("{:?}", path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn clean(name: &str) -> Result<String, &'static str> {
        clean_name(name.as_bytes()).map(|parts| {
            parts
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
    }

    #[test]
    fn names_are_cleaned_like_go() {
        assert_eq!(clean("a/b/c").unwrap(), "a/b/c");
        assert_eq!(clean("./a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(clean("a/../b").unwrap(), "b");
        assert_eq!(clean("./").unwrap(), "");
        assert_eq!(clean(".").unwrap(), "");
        assert_eq!(clean("").unwrap(), "");
        assert_eq!(clean("a/..").unwrap(), "");
    }

    #[test]
    fn escaping_names_are_refused() {
        assert_eq!(clean("/etc/passwd"), Err("absolute name"));
        assert_eq!(clean("../x"), Err("name climbs above the root"));
        assert_eq!(clean("a/../../x"), Err("name climbs above the root"));
        assert_eq!(clean("./.."), Err("name climbs above the root"));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();
        symlink("up/usr", root.join("chain")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();

        let rp = |p: &str| root_path(&root, Path::new(p), b"entry").unwrap();
        assert_eq!(rp(""), root);
        assert_eq!(rp("lib/x"), root.join("usr/lib/x"));
        assert_eq!(rp("lib"), root.join("usr/lib"));
        assert_eq!(rp("abs/passwd"), root.join("etc/passwd"));
        assert_eq!(rp("up"), root);
        assert_eq!(rp("up/etc"), root.join("etc"));
        assert_eq!(rp("chain/lib"), root.join("usr/lib"));
        assert_eq!(rp("/usr/../../x"), root.join("x"));
        assert_eq!(rp("missing/deeper"), root.join("missing/deeper"));

        let e = root_path(&root, Path::new("loop1/x"), b"loop1/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid archive entry \"loop1/x\": too many links: invalid argument"
        );
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let e = root_path(dir.path(), Path::new("file/x/y"), b"file/x/y/z").unwrap_err();
        assert!(matches!(e, DiffError::InvalidEntry { .. }), "{e}");
    }
}
