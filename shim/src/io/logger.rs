//! `binary://` logging binaries, started as containerd's Go shim starts them
//! (`pkg/process/io.go` `NewBinaryIO`, `io_util.go` `NewBinaryCmd`).
//!
//! The binary runs with the URI's path, the query as arguments ([`BinaryUri::args`]), an
//! environment of exactly `CONTAINER_ID` and `CONTAINER_NAMESPACE`, stdin/stdout/stderr on
//! `/dev/null`, fd 3 = the read end of the stdout pipe, fd 4 = the read end of the stderr pipe,
//! fd 5 = the write end of a "ready" pipe, which it closes (or writes a byte to) once it is
//! ready. The shim waits for that (up to [`LOGGER_READY_TIMEOUT`]), and keeps no end of the
//! output pipes afterwards.
//!
//! Inside the shim only the reaper may wait for children, so the binary is run through a
//! [`Runner`] on a small helper thread that lives as long as the binary. To signal it the shim
//! needs its pid, which `Runner::status` does not give: the child writes it to a close-on-exec
//! pipe between fork and exec.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::fifo::{dup_at_least, pipe};
use super::uri::BinaryUri;
use super::{poll_timeout, IoError, IoOptions, COPY_THREAD_STACK, LOGGER_READY_TIMEOUT};
use crate::runner::Runner;

/// How long the binary may take to exit once it has been sent `SIGKILL` before the shim stops
/// waiting for it (it is then left to the reaper).
const KILL_WAIT: Duration = Duration::from_secs(5);

struct Shared {
    /// `None` while running; then `Ok(status text)` or `Err(spawn error)`.
    state: Mutex<Option<Result<String, String>>>,
    cv: Condvar,
}

/// A running logging binary.
pub(crate) struct Logger {
    path: PathBuf,
    pid: i32,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Logger {
    /// Starts the binary with `out_r` as fd 3 and `err_r` as fd 4 and waits until it is ready.
    pub(crate) fn start(
        uri: &BinaryUri,
        opts: &IoOptions,
        runner: Arc<dyn Runner>,
        out_r: OwnedFd,
        err_r: OwnedFd,
    ) -> Result<Logger, IoError> {
        let path = uri.path.clone();
        let fail = |cause: String| IoError::Logger {
            path: path.clone(),
            cause,
        };
        // std reports an exec failure only after the child is gone, and its wait for that child
        // races with the shim's reaper: catch the usual causes before forking.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
            Ok(_) => return Err(fail("not an executable file".into())),
            Err(e) => return Err(fail(e.to_string())),
        }
        let sys = |e: io::Error| fail(e.to_string());
        // Numbered above 5, so putting them on 3, 4 and 5 in the child cannot clobber one.
        // (`raise` closes the originals: a stray copy of the ready pipe's write end would keep
        // us waiting for end-of-file.)
        let raise = |fd: OwnedFd| dup_at_least(fd, 6).map_err(sys);
        let out_r = raise(out_r)?;
        let err_r = raise(err_r)?;
        let (ready_r, ready_w) = pipe("making the logging binary's ready pipe")?;
        let ready_w = raise(ready_w)?;
        let (pid_r, pid_w) = pipe("making a pipe for the logging binary's pid")?;

        let mut cmd = Command::new(&path);
        cmd.args(&uri.args)
            .env_clear()
            .env("CONTAINER_ID", &opts.container_id)
            .env("CONTAINER_NAMESPACE", &opts.namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (fd3, fd4, fd5, pidw) = (
            out_r.as_raw_fd(),
            err_r.as_raw_fd(),
            ready_w.as_raw_fd(),
            pid_w.as_raw_fd(),
        );
        // SAFETY: the hook runs in the forked child and calls only async-signal-safe functions
        // (getpid, write, dup2) on descriptors that stay open in the parent until the child's
        // pid has been read, i.e. until after the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let pid = libc::getpid().to_ne_bytes();
                if libc::write(pidw, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                    return Err(io::Error::last_os_error());
                }
                for (from, to) in [(fd3, 3), (fd4, 4), (fd5, 5)] {
                    if libc::dup2(from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }

        let shared = Arc::new(Shared {
            state: Mutex::new(None),
            cv: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("corral-logger".into())
            .stack_size(COPY_THREAD_STACK)
            .spawn(move || {
                let res = panic::catch_unwind(AssertUnwindSafe(|| runner.status(&mut cmd)));
                // Only now: until the child has forked, EOF here would be premature.
                drop(pid_w);
                let res = match res {
                    Ok(Ok(status)) => Ok(status.to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the runner panicked".to_string()),
                };
                let mut st = thread_shared
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                *st = Some(res);
                thread_shared.cv.notify_all();
            })
            .map_err(sys)?;
        let mut logger = Logger {
            path: path.clone(),
            pid: 0,
            shared,
            thread: Some(thread),
        };

        let deadline = Instant::now() + LOGGER_READY_TIMEOUT;
        let mut pid = [0u8; 4];
        let got = read_full(&pid_r, &mut pid, deadline).map_err(sys)?;
        if got < pid.len() {
            // The runner returned without forking (or the child died at once).
            logger.join();
            let why = logger
                .outcome()
                .unwrap_or_else(|| "exited before it started".into());
            return Err(fail(why));
        }
        logger.pid = i32::from_ne_bytes(pid);
        // The child has its copies now; ours must go so the binary alone holds them.
        drop((out_r, err_r, ready_w, pid_r));

        let mut b = [0u8; 1];
        match read_full(&ready_r, &mut b, deadline) {
            Ok(_) => {}
            Err(e) => {
                logger.kill_now();
                return Err(fail(format!("waiting for it to be ready: {e}")));
            }
        }
        let exited = logger.shared.state.lock().map(|s| s.clone()).ok().flatten();
        match exited {
            None => {}
            Some(r) => {
                logger.join();
                let why = match r {
                    Ok(status) => format!("exited before it was ready ({status})"),
                    Err(e) => e,
                };
                return Err(fail(why));
            }
        }
        debug!("logging binary {:?} ready, pid {}", logger.path, logger.pid);
        Ok(logger)
    }

    /// Waits until the binary has exited or `deadline` passes; true if it has.
    fn wait_exit(&self, deadline: Instant) -> bool {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = match self.shared.cv.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// Sends `sig` unless the binary has been seen to exit (the check and the kill are under
    /// the lock the helper thread takes to record the exit, so a pid is never signalled after
    /// its exit was recorded).
    fn signal(&self, sig: Signal) {
        let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.is_none() && self.pid > 0 {
            if let Err(e) = kill(Pid::from_raw(self.pid), sig) {
                if e != Errno::ESRCH {
                    warn!("signalling logging binary {:?}: {e}", self.path);
                }
            }
        }
    }

    fn outcome(&self) -> Option<String> {
        match self.shared.state.lock() {
            Ok(s) => match s.as_ref() {
                Some(Ok(status)) => Some(status.clone()),
                Some(Err(e)) => Some(e.clone()),
                None => None,
            },
            Err(_) => None,
        }
    }

    fn kill_now(&mut self) {
        self.signal(Signal::SIGKILL);
        if self.wait_exit(Instant::now() + KILL_WAIT) {
            self.join();
        } else {
            self.detach();
        }
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn detach(&mut self) {
        warn!(
            "logging binary {:?} (pid {}) did not exit after SIGKILL; leaving it to the reaper",
            self.path, self.pid
        );
        self.thread = None;
    }

    /// Stops the binary as the Go shim does, with one courtesy first: lets it exit on its own
    /// (it sees end-of-file once the process's output is closed) until `deadline`, then sends
    /// `SIGTERM`, waits `grace`, and sends `SIGKILL`.
    pub(crate) fn stop(mut self, deadline: Instant, grace: Duration) {
        self.stop_inner(deadline, grace);
    }

    fn stop_inner(&mut self, deadline: Instant, grace: Duration) {
        if self.thread.is_none() {
            return;
        }
        if !self.wait_exit(deadline) {
            self.signal(Signal::SIGTERM);
            if !self.wait_exit(Instant::now() + grace) {
                warn!(
                    "logging binary {:?} did not exit {grace:?} after SIGTERM, killing it",
                    self.path
                );
                self.kill_now();
                return;
            }
        }
        self.join();
        if let Some(status) = self.outcome() {
            debug!("logging binary {:?} exited: {status}", self.path);
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        self.stop_inner(Instant::now(), super::LOGGER_TERM_GRACE);
    }
}

/// Reads until `buf` is full or end-of-file, giving up at `deadline`; returns the bytes read.
fn read_full(fd: &OwnedFd, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, poll_timeout(left)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}
