//! Extended attributes of a path itself (not of what a symlink points to): `llistxattr`,
//! `lgetxattr`, `lsetxattr`, for corrald's snapshotters and corralctl's reading of overlay
//! layers. nix 0.29 has no xattr calls, hence libc.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in name"))
}

/// Calls `get(buf)` (a size query when `buf` is empty) until the value fits, as the value
/// may grow between the query and the read (`ERANGE`).
fn read_sized(mut get: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = get(&mut []);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let n = get(&mut buf);
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

/// The names of the extended attributes of `path`.
pub fn llistxattr(path: &Path) -> io::Result<Vec<OsString>> {
    let p = c_string(path.as_os_str().as_bytes())?;
    let raw = read_sized(|buf| {
        // SAFETY: `p` is a NUL-terminated path; `buf` is valid for `buf.len()` bytes (a null
        // pointer with size 0 is the documented size query).
        unsafe {
            libc::llistxattr(
                p.as_ptr(),
                if buf.is_empty() {
                    std::ptr::null_mut()
                } else {
                    buf.as_mut_ptr().cast()
                },
                buf.len(),
            )
        }
    })?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| OsString::from_vec(n.to_vec()))
        .collect())
}

/// The value of extended attribute `name` of `path`.
pub fn lgetxattr(path: &Path, name: &OsStr) -> io::Result<Vec<u8>> {
    let p = c_string(path.as_os_str().as_bytes())?;
    let n = c_string(name.as_bytes())?;
    read_sized(|buf| {
        // SAFETY: `p` and `n` are NUL-terminated; `buf` is valid for `buf.len()` bytes (a
        // null pointer with size 0 is the documented size query).
        unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                n.as_ptr(),
                if buf.is_empty() {
                    std::ptr::null_mut()
                } else {
                    buf.as_mut_ptr().cast()
                },
                buf.len(),
            )
        }
    })
}

/// Sets extended attribute `name` of `path` to `value`.
pub fn lsetxattr(path: &Path, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let p = c_string(path.as_os_str().as_bytes())?;
    let n = c_string(name.as_bytes())?;
    // SAFETY: `p` and `n` are NUL-terminated; `value` is valid for `value.len()` bytes.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_a_user_attribute() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let name = OsStr::new("user.corral.test");
        match lsetxattr(&f, name, b"value") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                eprintln!("skipping: the temp file system has no user xattrs");
                return;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(llistxattr(&f).unwrap().contains(&name.to_os_string()));
        assert_eq!(lgetxattr(&f, name).unwrap(), b"value");
        lsetxattr(&f, OsStr::new("user.corral.empty"), b"").unwrap();
        assert_eq!(lgetxattr(&f, OsStr::new("user.corral.empty")).unwrap(), b"");
        let err = lgetxattr(&f, OsStr::new("user.corral.none")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODATA));
    }
}
