//! Paths as containerd's client treats them: Go's `filepath.Clean` and `filepath.Abs`, and
//! continuity's `fs.RootPath`, which resolves a path inside a root directory with every
//! symlink kept inside that root.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::SpecError;

/// Go's `filepath.Clean` on a Unix path: the shortest equivalent path by lexical
/// processing; `""` becomes `"."`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Abs`: `path` joined to the working directory when relative, cleaned.
pub fn abs(path: &str) -> Result<String, SpecError> {
    if path.starts_with('/') {
        return Ok(clean(path));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| SpecError::Unknown(format!("getwd: {}", super::io_reason(&e))))?;
    Ok(clean(&format!("{}/{path}", cwd.to_string_lossy())))
}

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS` is 40; continuity
/// allows 255).
const MAX_SYMLINKS: usize = 255;

/// continuity's `fs.RootPath(root, path)`: `path` resolved under `root` as if `root` were
/// `/`: `..` stops at the root and absolute symlink targets restart from it. A missing
/// component ends the resolution, with the rest appended unresolved.
pub fn root_path(root: &Path, path: &str) -> Result<PathBuf, SpecError> {
    let mut pending: Vec<OsString> = components(path.as_bytes());
    pending.reverse();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(SpecError::InvalidArgument(format!(
                        "too many links in {}",
                        candidate.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| SpecError::io("readlink", &candidate, &e))?;
                let bytes = target.as_os_str().as_bytes();
                if bytes.starts_with(b"/") {
                    resolved.clear();
                }
                let mut more = components(bytes);
                more.reverse();
                pending.extend(more);
            }
            Ok(_) => resolved.push(part),
            Err(_) => {
                resolved.push(part);
                resolved.extend(pending.drain(..).rev());
                break;
            }
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

fn components(bytes: &[u8]) -> Vec<OsString> {
    bytes
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .map(|p| OsString::from_vec(p.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_is_gos() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b/../c/", "a/c"),
            ("/../x", "/x"),
            ("../../x", "../../x"),
            ("/a//b/./c/..", "/a/b"),
            ("a/..", "."),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
        assert_eq!(abs("/x/../y/").unwrap(), "/y");
        assert!(abs("rel").unwrap().starts_with('/'));
    }

    #[test]
    fn root_path_keeps_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/etc")).unwrap();
        std::fs::write(root.join("real/etc/passwd"), "x").unwrap();
        std::os::unix::fs::symlink("/real/etc", root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../real", root.join("up")).unwrap();
        assert_eq!(
            root_path(root, "/etc/passwd").unwrap(),
            root.join("real/etc/passwd")
        );
        assert_eq!(
            root_path(root, "/up/etc/passwd").unwrap(),
            root.join("real/etc/passwd")
        );
        assert_eq!(
            root_path(root, "/missing/x").unwrap(),
            root.join("missing/x")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(root_path(root, "/loop").is_err());
    }
}
