//! The system calls the applier makes. None follows a symbolic link in the last component of
//! its path (the parents were resolved inside the target before).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{makedev, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, Gid, Uid};

use super::tar_reader::Timestamp;

/// `XATTR_CREATE`: fail rather than replace an attribute that exists.
pub const XATTR_CREATE: libc::c_int = libc::XATTR_CREATE;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "attribute name contains a NUL byte",
        )
    })
}

/// `lchown(2)`: numeric owner and group of `path` itself.
pub fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    fchownat(
        None,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// `mknod(2)`: a device or a fifo of `kind` with permission bits `perm` (umask applies).
pub fn mknod(path: &Path, kind: SFlag, perm: u32, major: u64, minor: u64) -> io::Result<()> {
    nix::sys::stat::mknod(
        path,
        kind,
        Mode::from_bits_truncate(perm as libc::mode_t),
        makedev(major, minor),
    )
    .map_err(io::Error::from)
}

/// `utimensat(2)` on `path` itself: access and modification times.
pub fn set_times(path: &Path, atime: Timestamp, mtime: Timestamp) -> io::Result<()> {
    let spec = |t: Timestamp| TimeSpec::new(t.secs, i64::from(t.nanos));
    nix::sys::stat::utimensat(
        None,
        path,
        &spec(atime),
        &spec(mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// `link(2)`: a new name `path` for `target` (a symbolic link itself, not what it points to).
pub fn hard_link(target: &Path, path: &Path) -> io::Result<()> {
    linkat(None, target, None, path, AtFlags::empty()).map_err(io::Error::from)
}

/// `lsetxattr(2)`.
pub fn lsetxattr(path: &Path, name: &[u8], value: &[u8], flags: libc::c_int) -> io::Result<()> {
    let path = c_path(path)?;
    let name = c_name(name)?;
    // SAFETY: nix has no xattr calls. Both strings are NUL-terminated CStrings that outlive
    // the call, and `value` is a valid slice whose length is passed with it.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `llistxattr(2)`: the names of the extended attributes of `path` itself.
pub fn llistxattr(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let path = c_path(path)?;
    let list = sized_call(|buf| {
        // SAFETY: nix has no xattr calls. `path` is a NUL-terminated CString that outlives
        // the call; `buf` is a writable slice (or null with length 0 to ask for the size).
        unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    })?;
    Ok(list
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// `lgetxattr(2)`: the value of attribute `name` of `path` itself.
pub fn lgetxattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let path = c_path(path)?;
    let name = c_name(name)?;
    sized_call(|buf| {
        // SAFETY: nix has no xattr calls. Both strings are NUL-terminated CStrings that
        // outlive the call; `buf` is a writable slice whose length is passed with it.
        unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    })
}

/// Runs a "size, then data" xattr call: first with an empty buffer to learn the size, then
/// with a buffer that large, again if the value grew in between.
fn sized_call(mut call: impl FnMut(&mut [u8]) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    for _ in 0..8 {
        let size = call(&mut []);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        let got = call(&mut buf);
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// True when this process runs in a user namespace other than the initial one, where devices
/// cannot be created (containerd's `userns.RunningInUserNS`).
pub fn running_in_user_ns() -> bool {
    let Ok(map) = std::fs::read_to_string("/proc/self/uid_map") else {
        return false;
    };
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|fields: &Vec<&str>| !fields.is_empty())
        .collect();
    !(lines.is_empty() || lines == [vec!["0", "0", "4294967295"]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        match lsetxattr(&file, b"user.corral", b"value", 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                eprintln!("skipping: no user xattrs on {}", dir.path().display());
                return;
            }
            Err(e) => panic!("{e}"),
        }
        assert_eq!(lgetxattr(&file, b"user.corral").unwrap(), b"value");
        assert!(llistxattr(&file)
            .unwrap()
            .contains(&b"user.corral".to_vec()));
        let again = lsetxattr(&file, b"user.corral", b"other", XATTR_CREATE).unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
        let missing = lgetxattr(&file, b"user.none").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENODATA));
    }

    #[test]
    fn times_are_set_on_links_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("f", &link).unwrap();
        let t = Timestamp {
            secs: 1_000_000,
            nanos: 5,
        };
        set_times(&link, t, t).unwrap();
        let link_meta = std::fs::symlink_metadata(&link).unwrap();
        let file_meta = std::fs::metadata(&file).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((link_meta.mtime(), link_meta.mtime_nsec()), (1_000_000, 5));
        assert_ne!(file_meta.mtime(), 1_000_000);
    }
}
