//! Opening the client's fifos and log files, and making pipes.
//!
//! Every descriptor made here is close-on-exec, so a runc or logging binary forked by another
//! thread never inherits one (which would keep a reader from seeing EOF).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::{fchown, Gid, Uid};

use super::IoError;

/// The two handles on an output fifo.
pub(crate) struct OutputFifo {
    /// Read-only, non-blocking, kept by the shim: with it the write open cannot block and a
    /// writer never gets `EPIPE` while the client is away. Never read.
    pub keep: Option<OwnedFd>,
    /// Write-only, blocking: for the process (or the copy thread).
    pub write: OwnedFd,
}

/// Opens an output path the way the Go shim's `copyPipes` does: a fifo gets a kept read
/// handle and a write handle; an existing non-fifo (a regular file, `/dev/null`) is opened
/// write-only for appending. A missing path is an error (the client makes the fifo).
pub(crate) fn open_output(what: &'static str, path: &Path) -> Result<OutputFifo, IoError> {
    let err = |e: io::Error| IoError::open(what, path, e);
    let keep = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(err)?;
    if !keep.metadata().map_err(err)?.file_type().is_fifo() {
        drop(keep);
        let f = OpenOptions::new().append(true).open(path).map_err(err)?;
        return Ok(OutputFifo {
            keep: None,
            write: f.into(),
        });
    }
    // Through our own handle, so both are on the same fifo even if the path was replaced.
    // A reader (ours) exists, so this blocking open returns at once.
    let write = open_same(&keep, OpenOptions::new().write(true)).map_err(err)?;
    Ok(OutputFifo {
        keep: Some(keep.into()),
        write,
    })
}

/// The two handles on the stdin fifo.
pub(crate) struct InputFifo {
    /// Read-only, non-blocking: the copy thread polls it.
    pub read: OwnedFd,
    /// Write-only, held by the shim until CloseIO: while it is open, reads never return a
    /// spurious end-of-file, whether or not the client has its write end open yet. `None`
    /// when the path is not a fifo (a regular file is read to its end).
    pub keepalive: Option<OwnedFd>,
}

/// Opens the stdin path: `O_RDONLY|O_NONBLOCK`, plus the shim's own write handle.
pub(crate) fn open_input(path: &Path) -> Result<InputFifo, IoError> {
    let what = "stdin fifo";
    let err = |e: io::Error| IoError::open(what, path, e);
    let read = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(err)?;
    if !read.metadata().map_err(err)?.file_type().is_fifo() {
        return Ok(InputFifo {
            read: read.into(),
            keepalive: None,
        });
    }
    let keepalive = open_same(
        &read,
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK),
    )
    .map_err(err)?;
    Ok(InputFifo {
        read: read.into(),
        keepalive: Some(keepalive),
    })
}

/// Clears `O_NONBLOCK`, so that a process given `fd` blocks on reads as it would on a pipe.
pub(crate) fn set_blocking(fd: &OwnedFd, what: &'static str) -> Result<(), IoError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let sys = |e: nix::errno::Errno| IoError::Sys {
        op: what,
        cause: io::Error::from(e),
    };
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(sys)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(sys)?;
    Ok(())
}

/// Opens the file behind `fd` again (a new open file description) through `/proc/self/fd`.
fn open_same(fd: &File, opts: &OpenOptions) -> io::Result<OwnedFd> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(opts.open(proc_path)?.into())
}

/// `file://`: creates the parent directories (0755) and opens the file for appending,
/// creating it with mode 0644.
pub(crate) fn open_log_file(what: &'static str, path: &Path) -> Result<OwnedFd, IoError> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| IoError::open(what, parent, e))?;
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| IoError::open(what, path, e))?;
    Ok(f.into())
}

/// `/dev/null` for writing: where a terminal's output goes when the client attached no stdout.
pub(crate) fn dev_null() -> Result<OwnedFd, IoError> {
    let path = Path::new("/dev/null");
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| IoError::open("/dev/null", path, e))?;
    Ok(f.into())
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd), IoError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| IoError::Sys {
        op: what,
        cause: e.into(),
    })
}

/// Gives a pipe (both ends share one inode) to `uid`/`gid`, as the Go shim does for `IoUid`
/// and `IoGid`, so a process running as that user can reopen `/proc/self/fd/N`.
pub(crate) fn chown_pipe(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), IoError> {
    fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
    )
    .map_err(|e| IoError::Sys {
        op: "changing the owner of a stdio pipe",
        cause: e.into(),
    })
}

/// Sets `O_NONBLOCK` on `fd`'s open file description.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let raw = fd.as_fd().as_raw_fd();
    let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL)?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// A close-on-exec duplicate of `fd` numbered at least `min`.
pub(crate) fn dup_at_least(fd: impl AsFd, min: i32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let new = fcntl(fd.as_fd().as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) just returned `new`, a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
