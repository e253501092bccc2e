//! runc's console socket and the pty master it sends.
//!
//! For a terminal process the shim listens on a unix socket and passes its path as
//! `runc create/exec --console-socket`. runc makes the pty inside the container, connects,
//! and sends the master with one `sendmsg`: the data is the slave's name (`/dev/pts/N`), the
//! control message is `SCM_RIGHTS` with exactly one descriptor (go-runc's `recvFd`).

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::IoError;

/// Longest path a unix socket address takes (108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Longest slave name accepted, as go-runc.
const MAX_NAME: usize = 4096;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A listening console socket; the socket file (and the private directory made for it, if
/// any) is removed when this is dropped.
pub(crate) struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
    private_dir: Option<PathBuf>,
}

impl ConsoleSocket {
    /// Listens on a fresh socket `pty-<shim pid>-<n>.sock` in `dir`, or, when that path is too
    /// long for a socket address, on `pty.sock` in a new private directory in the temporary
    /// directory (what the Go shim always does).
    pub(crate) fn bind(dir: &Path) -> Result<ConsoleSocket, IoError> {
        let name = format!(
            "pty-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        if path.as_os_str().as_bytes().len() <= MAX_SOCKET_PATH {
            // A file left by a dead shim that had our pid.
            let _ = std::fs::remove_file(&path);
            return Self::listen(path, None);
        }
        let template = std::env::temp_dir().join("corral-pty-XXXXXX");
        let private = nix::unistd::mkdtemp(&template)
            .map_err(|e| IoError::open("console socket directory", &template, e.into()))?;
        let path = private.join("pty.sock");
        if path.as_os_str().as_bytes().len() > MAX_SOCKET_PATH {
            let _ = std::fs::remove_dir(&private);
            return Err(IoError::open(
                "console socket",
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("path longer than {MAX_SOCKET_PATH} bytes"),
                ),
            ));
        }
        Self::listen(path, Some(private))
    }

    fn listen(path: PathBuf, private_dir: Option<PathBuf>) -> Result<ConsoleSocket, IoError> {
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                if let Some(d) = &private_dir {
                    let _ = std::fs::remove_dir(d);
                }
                return Err(IoError::open("console socket", &path, e));
            }
        };
        // From here on, dropping `sock` cleans up.
        let sock = ConsoleSocket {
            listener,
            path,
            private_dir,
        };
        sock.listener
            .set_nonblocking(true)
            .map_err(|e| IoError::open("console socket", &sock.path, e))?;
        Ok(sock)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts runc's connection and receives the pty master, giving up after `timeout`.
    /// Returns the master (close-on-exec, non-blocking) and the slave's name runc sent.
    pub(crate) fn receive_master(&self, timeout: Duration) -> Result<(OwnedFd, String), IoError> {
        let deadline = Instant::now() + timeout;
        let conn = loop {
            wait_readable(self.listener.as_fd(), deadline, &self.path)?;
            match self.listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.err(e)),
            }
        };
        conn.set_nonblocking(true).map_err(|e| self.err(e))?;
        let mut name = vec![0u8; MAX_NAME];
        // Room for more than the one descriptor expected, so extra ones are received (and
        // closed) rather than truncated away.
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 8]);
        loop {
            wait_readable(conn.as_fd(), deadline, &self.path)?;
            let mut iov = [IoSliceMut::new(&mut name)];
            let msg = match recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(self.err(e.into())),
            };
            // Own every descriptor that arrived first, so none leaks on an error below.
            let mut fds = Vec::new();
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        for fd in raw {
                            // SAFETY: the kernel just installed `fd` in our table for this
                            // message; nothing else refers to it.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
            }
            let n = msg.bytes;
            let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
            if n == 0 && fds.is_empty() {
                return Err(self.err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the OCI runtime closed the console socket without sending a terminal",
                )));
            }
            if fds.len() != 1 || truncated {
                return Err(self.err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected one descriptor, got {}{}",
                        fds.len(),
                        if truncated { " (truncated)" } else { "" }
                    ),
                )));
            }
            if n >= MAX_NAME {
                return Err(self.err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "terminal name too long",
                )));
            }
            let Some(master) = fds.pop() else {
                continue;
            };
            let tty_name = String::from_utf8_lossy(&name[..n]).into_owned();
            match nix::unistd::isatty(master.as_raw_fd()) {
                Ok(true) => {}
                _ => {
                    return Err(self.err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the descriptor received for {tty_name:?} is not a terminal"),
                    )))
                }
            }
            super::fifo::set_nonblocking(&master).map_err(|e| self.err(e))?;
            return Ok((master, tty_name));
        }
    }

    fn err(&self, e: io::Error) -> IoError {
        IoError::Console {
            path: self.path.clone(),
            cause: e,
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(d) = &self.private_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Waits until `fd` is readable or `deadline` passes.
fn wait_readable(fd: BorrowedFd<'_>, deadline: Instant, path: &Path) -> Result<(), IoError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(IoError::Timeout {
                what: "the terminal from the OCI runtime",
                path: path.to_path_buf(),
            });
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, super::poll_timeout(left)) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(IoError::Console {
                    path: path.to_path_buf(),
                    cause: e.into(),
                })
            }
        }
    }
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// `TIOCSWINSZ` on a terminal: `width` columns, `height` rows.
pub(crate) fn resize(fd: BorrowedFd<'_>, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which outlives the call.
    unsafe { set_winsize(fd.as_raw_fd(), &ws) }?;
    Ok(())
}
