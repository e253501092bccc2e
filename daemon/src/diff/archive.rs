//! Writing a layer's entries into a directory as containerd's `archive.Apply` does
//! (`applyNaive`, `createTarFile`, `mkparent`), entry by entry:
//!
//! 1. the name is cleaned; names that are absolute or climb above the root are refused;
//! 2. its parent is resolved inside the root like a chroot ([`root_path`]) and created if
//!    missing (in an overlay upper directory, with the attributes the lowers give it);
//! 3. whiteouts are applied (see [`whiteout`](super::whiteout)) and go no further;
//! 4. whatever is in the way is removed, except a directory under a directory entry, which
//!    is kept and takes the entry's metadata;
//! 5. the entry is created, then owner, xattrs, mode (after the owner, which can clear
//!    setuid bits) and times are set on it, never through a symbolic link;
//! 6. directory times are set again once every entry is written.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;

use super::error::{DiffError, DiffResult};
use super::root_path::{clean_name, join_parts, root_path};
use super::stream::read_error;
use super::sys;
use super::tar_reader::{
    Entry, Timestamp, TYPE_BLOCK, TYPE_CHAR, TYPE_DIR, TYPE_FIFO, TYPE_LINK, TYPE_PAX_GLOBAL,
    TYPE_REG, TYPE_SYMLINK,
};
use super::whiteout::{self, Whiteout};
use super::WhiteoutMode;

/// Size of the buffer file data is copied through.
const COPY_BUFFER: usize = 32 * 1024;
/// The latest time `utimensat` takes from Go's `os.Chtimes` (the largest int64 of
/// nanoseconds); later times, like times before the epoch, become the epoch (containerd's
/// `boundTime`).
const MAX_TIME: Timestamp = Timestamp {
    secs: i64::MAX / 1_000_000_000,
    nanos: (i64::MAX % 1_000_000_000) as u32,
};

/// Applies entries to one target directory.
pub struct Applier<'a> {
    root: PathBuf,
    mode: &'a WhiteoutMode,
    /// Paths this layer wrote, for opaque markers in a full view.
    unpacked: HashSet<PathBuf>,
    /// Directories written, with their times, set again at the end.
    dirs: Vec<(PathBuf, Timestamp, Timestamp)>,
    in_user_ns: bool,
    buffer: Vec<u8>,
}

impl<'a> Applier<'a> {
    /// An applier writing into `root` (an existing directory).
    pub fn new(root: &Path, mode: &'a WhiteoutMode) -> Self {
        Applier {
            root: root.to_path_buf(),
            mode,
            unpacked: HashSet::new(),
            dirs: Vec::new(),
            in_user_ns: sys::running_in_user_ns(),
            buffer: Vec::new(),
        }
    }

    /// Applies one entry whose data (for a regular file) is read from `data`.
    pub fn apply_entry(&mut self, entry: &Entry, data: &mut impl Read) -> DiffResult<()> {
        if entry.typeflag == TYPE_PAX_GLOBAL {
            log::debug!(
                "PAX global extended header {:?} ignored",
                entry.display_name()
            );
            return Ok(());
        }
        let parts =
            clean_name(&entry.name).map_err(|reason| DiffError::entry(&entry.name, reason))?;
        let Some((base, parent_parts)) = parts.split_last() else {
            log::debug!("file {:?} ignored: resolved to root", entry.display_name());
            return Ok(());
        };
        if matches!(entry.typeflag, TYPE_BLOCK | TYPE_CHAR) && self.in_user_ns {
            log::warn!(
                "file {:?} ignored: devices cannot be created in a user namespace",
                entry.display_name()
            );
            return Ok(());
        }
        let parent = root_path(&self.root, &join_parts(parent_parts), &entry.name)?;
        let path = parent.join(OsStr::from_bytes(base));
        if parent != self.root {
            self.mkparent(&parent, &entry.name)?;
        }

        match whiteout::classify(base).map_err(|reason| DiffError::entry(&entry.name, reason))? {
            Whiteout::None => {}
            Whiteout::Opaque => {
                return match self.mode {
                    WhiteoutMode::Native => whiteout::native_opaque(&parent, &self.unpacked),
                    WhiteoutMode::Overlay { user_xattr, .. } => {
                        whiteout::overlay_opaque(&parent, *user_xattr)
                    }
                }
            }
            Whiteout::Remove(original) => {
                return match self.mode {
                    WhiteoutMode::Native => whiteout::native_remove(&parent, original),
                    WhiteoutMode::Overlay { .. } => {
                        let (uid, gid) = owner(entry)?;
                        whiteout::overlay_remove(&parent, original, uid, gid)
                    }
                }
            }
        }

        // Whatever is in the way goes, except a directory under a directory entry: the two
        // merge, and the directory takes the entry's metadata.
        if let Ok(existing) = fs::symlink_metadata(&path) {
            if !(existing.is_dir() && entry.typeflag == TYPE_DIR) {
                whiteout::remove_all(&path)?;
            }
        }

        self.create(entry, &path, data)?;

        if entry.typeflag == TYPE_DIR {
            let (atime, mtime) = times(entry);
            self.dirs.push((path.clone(), atime, mtime));
        }
        if matches!(self.mode, WhiteoutMode::Native) {
            self.unpacked.insert(path);
        }
        Ok(())
    }

    /// Sets the directories' times again, now that nothing more is written into them.
    pub fn finish(self) -> DiffResult<()> {
        for (path, atime, mtime) in &self.dirs {
            sys::set_times(path, *atime, *mtime)
                .map_err(|e| DiffError::io("set times of", path, e))?;
        }
        Ok(())
    }

    /// Creates the entry at `path` (nothing is there) and sets its metadata.
    fn create(&mut self, entry: &Entry, path: &Path, data: &mut impl Read) -> DiffResult<()> {
        let mode = (entry.mode & 0o7777) as u32;
        match entry.typeflag {
            TYPE_DIR => {
                let is_dir = fs::symlink_metadata(path)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                if !is_dir {
                    mkdir(path, mode)?;
                }
            }
            TYPE_REG => self.write_file(path, mode, data)?,
            TYPE_BLOCK | TYPE_CHAR | TYPE_FIFO => {
                let kind = match entry.typeflag {
                    TYPE_BLOCK => SFlag::S_IFBLK,
                    TYPE_CHAR => SFlag::S_IFCHR,
                    _ => SFlag::S_IFIFO,
                };
                let major = device_number(entry, entry.dev_major, "major")?;
                let minor = device_number(entry, entry.dev_minor, "minor")?;
                sys::mknod(path, kind, mode, major, minor)
                    .map_err(|e| DiffError::io("mknod", path, e))?;
            }
            TYPE_LINK => self.hard_link(entry, path)?,
            TYPE_SYMLINK => std::os::unix::fs::symlink(OsStr::from_bytes(&entry.link_name), path)
                .map_err(|e| DiffError::io("symlink", path, e))?,
            other => {
                return Err(DiffError::entry(
                    &entry.name,
                    format!("unhandled tar header type {other}"),
                ))
            }
        }

        let (uid, gid) = owner(entry)?;
        sys::lchown(path, uid, gid).map_err(|e| DiffError::io("lchown", path, e))?;
        set_xattrs(entry, path)?;
        // After lchown, which may clear setuid and setgid bits. A link has no mode of its own.
        if entry.typeflag != TYPE_SYMLINK {
            let is_link = fs::symlink_metadata(path)
                .map_err(|e| DiffError::io("lstat", path, e))?
                .file_type()
                .is_symlink();
            if !is_link {
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(|e| DiffError::io("chmod", path, e))?;
            }
        }
        let (atime, mtime) = times(entry);
        sys::set_times(path, atime, mtime).map_err(|e| DiffError::io("set times of", path, e))
    }

    /// A new regular file with the entry's data; exactly the entry's size must be read.
    fn write_file(&mut self, path: &Path, mode: u32, data: &mut impl Read) -> DiffResult<()> {
        let mut file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| DiffError::io("create", path, e))?;
        // The umask took bits away.
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| DiffError::io("chmod", path, e))?;
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; COPY_BUFFER];
        }
        loop {
            let n = match data.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            file.write_all(&self.buffer[..n])
                .map_err(|e| DiffError::io("write", path, e))?;
        }
        Ok(())
    }

    /// A hard link to an entry already in the target, its name resolved inside the target
    /// (a link to a symbolic link links the symbolic link itself).
    fn hard_link(&self, entry: &Entry, path: &Path) -> DiffResult<()> {
        let parts = clean_name(&entry.link_name).map_err(|reason| {
            DiffError::entry(&entry.name, format!("hard link target: {reason}"))
        })?;
        let Some((base, parent_parts)) = parts.split_last() else {
            return Err(DiffError::entry(&entry.name, "hard link to the root"));
        };
        let parent = root_path(&self.root, &join_parts(parent_parts), &entry.name)?;
        let target = parent.join(OsStr::from_bytes(base));
        let missing = || {
            DiffError::entry(
                &entry.name,
                format!(
                    "hard link target {:?} does not exist",
                    String::from_utf8_lossy(&entry.link_name)
                ),
            )
        };
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => {
                return Err(DiffError::entry(&entry.name, "hard link to a directory"))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Err(missing()),
            Err(e) => return Err(DiffError::io("lstat", &target, e)),
        }
        sys::hard_link(&target, path).map_err(|e| DiffError::io("link", path, e))
    }

    /// Creates the missing directories down to `path` (inside the root, the root itself
    /// excluded), each 0755, or, in an overlay upper directory, with the owner, mode, times
    /// and xattrs (not `trusted.*`) of the same directory in the nearest lower that has it
    /// (containerd's `mkparent` with `WithParents`).
    fn mkparent(&self, path: &Path, entry_name: &[u8]) -> DiffResult<()> {
        let mut missing = Vec::new();
        let mut current = path.to_path_buf();
        loop {
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => break,
                Ok(_) => {
                    return Err(DiffError::entry(
                        entry_name,
                        format!("parent {} is not a directory", current.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(DiffError::io("lstat", &current, e)),
            }
            missing.push(current.clone());
            match current.parent() {
                Some(parent) if parent != self.root && parent.starts_with(&self.root) => {
                    current = parent.to_path_buf();
                }
                _ => break,
            }
        }
        for dir in missing.iter().rev() {
            if let Err(e) = mkdir(dir, 0o755) {
                let exists = fs::symlink_metadata(dir)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                if !exists {
                    return Err(e);
                }
            }
            self.copy_from_lowers(dir, entry_name)?;
        }
        Ok(())
    }

    /// Gives a directory just created in an upper directory the attributes of the same
    /// directory in the nearest lower; a lower with something else there stops the search.
    fn copy_from_lowers(&self, dir: &Path, entry_name: &[u8]) -> DiffResult<()> {
        let WhiteoutMode::Overlay { lowers, .. } = self.mode else {
            return Ok(());
        };
        let Ok(relative) = dir.strip_prefix(&self.root) else {
            return Ok(());
        };
        for lower in lowers {
            let lower_path = root_path(lower, relative, entry_name)?;
            match fs::symlink_metadata(&lower_path) {
                Ok(meta) if meta.is_dir() => {
                    copy_dir_info(&meta, dir)?;
                    return copy_up_xattrs(dir, &lower_path);
                }
                // Replaced in that lower: nothing to inherit.
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(DiffError::io("lstat", lower_path, e)),
            }
        }
        log::debug!(
            "parent directory {} not found in lowers: default permissions (0755) used",
            dir.display()
        );
        Ok(())
    }
}

/// `mkdir` with exactly `mode` (the umask undone).
fn mkdir(path: &Path, mode: u32) -> DiffResult<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| DiffError::io("mkdir", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| DiffError::io("chmod", path, e))
}

/// The entry's numeric owner, refused when it is not a valid id.
fn owner(entry: &Entry) -> DiffResult<(u32, u32)> {
    let id = |value: i64, what: &str| {
        u32::try_from(value)
            .ok()
            .filter(|&v| v != u32::MAX)
            .ok_or_else(|| DiffError::entry(&entry.name, format!("invalid {what} {value}")))
    };
    Ok((id(entry.uid, "uid")?, id(entry.gid, "gid")?))
}

fn device_number(entry: &Entry, value: i64, what: &str) -> DiffResult<u64> {
    u32::try_from(value)
        .map(u64::from)
        .map_err(|_| DiffError::entry(&entry.name, format!("invalid device {what} {value}")))
}

/// The times to set: access time the later of atime and mtime, both bounded to what
/// `utimensat` takes (containerd's `boundTime(latestTime(...))`).
fn times(entry: &Entry) -> (Timestamp, Timestamp) {
    let bound = |t: Timestamp| {
        if t.secs < 0 || t > MAX_TIME {
            Timestamp::default()
        } else {
            t
        }
    };
    let atime = entry.atime.map_or(entry.mtime, |a| a.max(entry.mtime));
    (bound(atime), bound(entry.mtime))
}

/// Sets the entry's `SCHILY.xattr.*` attributes. Like containerd, skips `trusted.*` ones,
/// `user.*` ones on what is neither a file nor a directory, and any the file system does not
/// support, with a warning.
fn set_xattrs(entry: &Entry, path: &Path) -> DiffResult<()> {
    for (name, value) in entry.xattrs() {
        let shown = String::from_utf8_lossy(name);
        if name.starts_with(b"trusted.") {
            log::warn!(
                "ignored xattr {shown} in archive: admin attributes from archive not supported"
            );
            continue;
        }
        let Err(e) = sys::lsetxattr(path, name, value, 0) else {
            continue;
        };
        match e.raw_os_error() {
            Some(libc::ENOTSUP) => {
                log::warn!("ignored xattr {shown} in archive: {e}");
                continue;
            }
            Some(libc::EPERM) if name.starts_with(b"user.") => {
                let plain = fs::symlink_metadata(path)
                    .map(|m| m.is_file() || m.is_dir())
                    .unwrap_or(true);
                if !plain {
                    log::warn!("ignored xattr {shown} in archive: {e}");
                    continue;
                }
            }
            _ => {}
        }
        return Err(DiffError::io("set xattr", path, e));
    }
    Ok(())
}

/// Owner, mode and times of a lower's directory onto `path` (containerd's `copyDirInfo`).
fn copy_dir_info(lower: &fs::Metadata, path: &Path) -> DiffResult<()> {
    if let Err(e) = sys::lchown(path, lower.uid(), lower.gid()) {
        // Some file systems refuse even a no-op chown; that is not an error.
        let same = fs::symlink_metadata(path)
            .map(|m| m.uid() == lower.uid() && m.gid() == lower.gid())
            .unwrap_or(false);
        if !(e.kind() == io::ErrorKind::PermissionDenied && same) {
            return Err(DiffError::io("lchown", path, e));
        }
    }
    fs::set_permissions(path, fs::Permissions::from_mode(lower.mode() & 0o7777))
        .map_err(|e| DiffError::io("chmod", path, e))?;
    let atime = Timestamp::new(lower.atime(), lower.atime_nsec());
    let mtime = Timestamp::new(lower.mtime(), lower.mtime_nsec());
    sys::set_times(path, atime, mtime).map_err(|e| DiffError::io("set times of", path, e))
}

/// A lower directory's xattrs onto `dst`, `trusted.*` (overlayfs' own, among others) left
/// out and existing ones kept (containerd's `copyUpXAttrs`).
fn copy_up_xattrs(dst: &Path, src: &Path) -> DiffResult<()> {
    let ignorable = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::ENODATA));
    let names = match sys::llistxattr(src) {
        Ok(names) => names,
        Err(e) if ignorable(&e) => return Ok(()),
        Err(e) => return Err(DiffError::io("list xattrs of", src, e)),
    };
    for name in names {
        if name.starts_with(b"trusted.") {
            continue;
        }
        let value = match sys::lgetxattr(src, &name) {
            Ok(value) => value,
            Err(e) if ignorable(&e) => continue,
            Err(e) => return Err(DiffError::io("get xattr of", src, e)),
        };
        match sys::lsetxattr(dst, &name, &value, sys::XATTR_CREATE) {
            Ok(()) => {}
            Err(e) if ignorable(&e) || e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(DiffError::io("set xattr", dst, e)),
        }
    }
    Ok(())
}
