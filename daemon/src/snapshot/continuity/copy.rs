//! Copying a directory tree the way containerd's `fs.CopyDir` (continuity 0.3) does for the
//! native snapshotter: owners, modes (set-id and sticky bits included), access and
//! modification times, extended attributes, hard links (kept as links), symlinks, devices,
//! fifos and sockets.
//!
//! Two differences, both deliberate: directory times are set after the directory is filled
//! (continuity sets them first, so filling it changes its mtime), and the walk is iterative
//! (no recursion on a small thread stack).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use corral_protocols::xattr::{lgetxattr, llistxattr, lsetxattr};

fn at(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Copies the tree under `src` into `dst` (created when missing; its mode becomes `src`'s).
/// Extended attributes that cannot be read or set (`security.*` usually) are skipped with a
/// debug log, as the native snapshotter asks of continuity.
pub fn copy_dir(dst: &Path, src: &Path) -> io::Result<()> {
    let top = fs::metadata(src).map_err(|e| at(src, "failed to stat", e))?;
    if !top.is_dir() {
        return Err(io::Error::other(format!(
            "source {} is not directory",
            src.display()
        )));
    }
    match fs::metadata(dst) {
        Ok(m) if !m.is_dir() => {
            return Err(io::Error::other(format!(
                "cannot copy to non-directory: {}",
                dst.display()
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(dst)?,
        Err(e) => return Err(at(dst, "failed to stat", e)),
    }

    // Files with more than one link, by (dev, ino): the first copy, to link the others to.
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // Directories to finish (owner, mode, times, xattrs) once their contents are in place.
    let mut dirs = vec![(src.to_path_buf(), dst.to_path_buf(), top)];
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from, to)) = pending.pop() {
        let mut entries = fs::read_dir(&from)
            .map_err(|e| at(&from, "failed to read", e))?
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| at(&from, "failed to read", e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let source = entry.path();
            let target = to.join(entry.file_name());
            let m = fs::symlink_metadata(&source).map_err(|e| at(&source, "failed to stat", e))?;
            let ft = m.file_type();
            if ft.is_dir() {
                make_dir(&target)?;
                dirs.push((source.clone(), target.clone(), m));
                pending.push((source, target));
                continue;
            }
            if ft.is_file() {
                let first = (m.nlink() > 1)
                    .then(|| links.get(&(m.dev(), m.ino())).cloned())
                    .flatten();
                match first {
                    Some(first) => fs::hard_link(&first, &target)
                        .map_err(|e| at(&target, "failed to create hard link", e))?,
                    None => {
                        fs::copy(&source, &target)
                            .map_err(|e| at(&source, "failed to copy files", e))?;
                        if m.nlink() > 1 {
                            links.insert((m.dev(), m.ino()), target.clone());
                        }
                    }
                }
            } else if ft.is_symlink() {
                let link =
                    fs::read_link(&source).map_err(|e| at(&source, "failed to read link", e))?;
                symlink(&link, &target).map_err(|e| at(&target, "failed to create symlink", e))?;
            } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket()
            {
                copy_irregular(&target, &m)?;
            } else {
                log::warn!("unsupported mode: {}: {:o}", source.display(), m.mode());
                continue;
            }
            copy_file_info(&m, &target)?;
            copy_xattrs(&target, &source);
        }
    }
    // Deepest first: setting a directory's times after its children are done keeps them.
    for (source, target, m) in dirs.iter().rev() {
        copy_file_info(m, target)?;
        copy_xattrs(target, source);
    }
    Ok(())
}

/// A directory the walk fills; owner and mode come later.
fn make_dir(path: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        r => r.map_err(|e| at(path, "failed to mkdir", e)),
    }
}

/// Devices, fifos and sockets: a new node of the same type and device number.
fn copy_irregular(target: &Path, m: &fs::Metadata) -> io::Result<()> {
    let kind = SFlag::from_bits_truncate(m.mode() & libc::S_IFMT);
    let perm = Mode::from_bits_truncate(m.mode() & 0o7777);
    let ft = m.file_type();
    let rdev = if ft.is_block_device() || ft.is_char_device() {
        m.rdev()
    } else {
        0
    };
    mknod(target, kind, perm, rdev).map_err(|e| {
        at(
            target,
            "failed to create irregular file",
            io::Error::from(e),
        )
    })
}

/// Owner, mode (not for symlinks, which have none of their own) and times, as continuity's
/// `copyFileInfo`; a refused chown is fine when the owner already matches (NFS says EPERM).
fn copy_file_info(m: &fs::Metadata, target: &Path) -> io::Result<()> {
    if let Err(e) = std::os::unix::fs::lchown(target, Some(m.uid()), Some(m.gid())) {
        let same = e.kind() == io::ErrorKind::PermissionDenied
            && fs::symlink_metadata(target).is_ok_and(|t| t.uid() == m.uid() && t.gid() == m.gid());
        if !same {
            return Err(at(target, "failed to chown", e));
        }
    }
    if !m.file_type().is_symlink() {
        fs::set_permissions(target, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| at(target, "failed to chmod", e))?;
    }
    let atime = TimeSpec::new(m.atime(), m.atime_nsec());
    let mtime = TimeSpec::new(m.mtime(), m.mtime_nsec());
    utimensat(
        None,
        target,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| at(target, "failed to utime", io::Error::from(e)))
}

/// Extended attributes from `source` onto `target`; failures are logged and skipped.
fn copy_xattrs(target: &Path, source: &Path) {
    let names = match llistxattr(source) {
        Ok(names) => names,
        Err(e) => {
            log::debug!("failed to list xattrs on {}: {e}", source.display());
            return;
        }
    };
    for name in names {
        let copied = lgetxattr(source, &name).and_then(|v| lsetxattr(target, &name, &v));
        if let Err(e) = copied {
            log::debug!(
                "failed to copy xattr {:?} from {} to {}: {e}",
                name,
                source.display(),
                target.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn set_times(path: &Path, secs: i64) {
        let t = TimeSpec::new(secs, 123_456_789);
        utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
    }

    #[test]
    fn copies_modes_links_times_and_special_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("d/e")).unwrap();
        fs::write(src.join("d/e/file"), b"hello").unwrap();
        fs::set_permissions(src.join("d/e/file"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::hard_link(src.join("d/e/file"), src.join("hard")).unwrap();
        symlink("d/e/file", src.join("sym")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        fs::set_permissions(src.join("d"), fs::Permissions::from_mode(0o1777)).unwrap();
        let xattr = OsStr::new("user.corral.copy");
        let has_xattrs = lsetxattr(&src.join("d/e/file"), xattr, b"v").is_ok();
        set_times(&src.join("d/e/file"), 1_000_000);
        set_times(&src.join("sym"), 2_000_000);
        set_times(&src.join("d/e"), 3_000_000);
        set_times(&src.join("d"), 4_000_000);

        let dst = dir.path().join("dst");
        fs::create_dir(&dst).unwrap();
        copy_dir(&dst, &src).unwrap();

        let meta = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap();
        assert_eq!(fs::read(dst.join("d/e/file")).unwrap(), b"hello");
        assert_eq!(meta("d/e/file").mode() & 0o7777, 0o4751);
        assert_eq!(meta("d").mode() & 0o7777, 0o1777);
        assert_eq!(meta("hard").ino(), meta("d/e/file").ino());
        assert_eq!(meta("d/e/file").nlink(), 2);
        assert_eq!(
            fs::read_link(dst.join("sym")).unwrap(),
            Path::new("d/e/file")
        );
        assert!(meta("fifo").file_type().is_fifo());
        assert_eq!(meta("fifo").mode() & 0o7777, 0o640);
        for (p, secs) in [
            ("d/e/file", 1_000_000),
            ("sym", 2_000_000),
            ("d/e", 3_000_000),
            ("d", 4_000_000),
        ] {
            let m = meta(p);
            assert_eq!((m.mtime(), m.mtime_nsec()), (secs, 123_456_789), "{p}");
        }
        let (s, d) = (fs::metadata(&src).unwrap(), fs::metadata(&dst).unwrap());
        assert_eq!(d.mode() & 0o7777, s.mode() & 0o7777);
        assert_eq!((d.mtime(), d.mtime_nsec()), (s.mtime(), s.mtime_nsec()));
        assert_eq!(
            (meta("d/e/file").uid(), meta("d/e/file").gid()),
            (s.uid(), s.gid())
        );
        if has_xattrs {
            assert_eq!(lgetxattr(&dst.join("d/e/file"), xattr).unwrap(), b"v");
        }

        let file = dir.path().join("plain");
        fs::write(&file, b"").unwrap();
        assert!(copy_dir(&file, &src)
            .unwrap_err()
            .to_string()
            .contains("non-directory"));
        assert!(copy_dir(&dst, &file)
            .unwrap_err()
            .to_string()
            .contains("is not directory"));
    }

    #[test]
    fn copies_owners_and_devices_as_root() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true and root is missing: this test cannot be skipped on CI"
            );
            eprintln!("skipping: root missing (chown and mknod of a device)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("owned"), b"x").unwrap();
        std::os::unix::fs::lchown(src.join("owned"), Some(1234), Some(5678)).unwrap();
        symlink("owned", src.join("link")).unwrap();
        std::os::unix::fs::lchown(src.join("link"), Some(42), Some(43)).unwrap();
        mknod(
            &src.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        let dst = dir.path().join("dst");
        copy_dir(&dst, &src).unwrap();
        let m = fs::symlink_metadata(dst.join("owned")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        let l = fs::symlink_metadata(dst.join("link")).unwrap();
        assert_eq!((l.uid(), l.gid()), (42, 43));
        let n = fs::symlink_metadata(dst.join("null")).unwrap();
        assert!(n.file_type().is_char_device());
        assert_eq!(n.rdev(), nix::sys::stat::makedev(1, 3));
    }
}
