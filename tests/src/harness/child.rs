//! Child processes that cannot outlive their test: [`ChildGuard`] stops and reaps its child on
//! drop (a panicking test included), and [`run_with_deadline`] runs a command to completion or
//! kills it.

use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::wait::wait_for_some;

/// How long [`ChildGuard::stop`] waits after `SIGTERM` before it sends `SIGKILL`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);
/// How long to wait for a process to die after `SIGKILL` (it only needs to be scheduled).
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Owns a [`Child`]; on drop sends `SIGTERM`, waits up to the grace period, sends `SIGKILL`
/// and reaps it, so a test never leaves a process or a zombie behind.
///
/// The pid is only signalled while the child is not yet reaped, so a recycled pid is never hit.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    grace: Duration,
    group: bool,
    armed: bool,
}

impl ChildGuard {
    /// Guards an already spawned child; `name` appears in errors and logs.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        ChildGuard {
            name: name.into(),
            child,
            status: None,
            grace: DEFAULT_GRACE,
            group: false,
            armed: true,
        }
    }

    /// Spawns `cmd` and guards the child; the error names the program.
    pub fn spawn(name: impl Into<String>, cmd: &mut Command) -> io::Result<Self> {
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot spawn {:?}: {e}", cmd.get_program()),
            )
        })?;
        Ok(ChildGuard::new(name, child))
    }

    /// Sets how long [`stop`](Self::stop) waits between `SIGTERM` and `SIGKILL`.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Signals the child's whole process group instead of the child alone; use it when the
    /// command was spawned with `Command::process_group(0)`, so grandchildren die too.
    pub fn signal_group(mut self) -> Self {
        self.group = true;
        self
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The wrapped child (for its pipes). Do not `wait` on it directly: use the guard's
    /// methods, which remember the exit status.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Leaves the child running when the guard is dropped (it is neither killed nor reaped).
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `deadline` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, deadline: Duration) -> io::Result<Option<ExitStatus>> {
        let mut error = None;
        let waited = wait_for_some(deadline, &self.name.clone(), || match self.try_wait() {
            Ok(status) => status,
            Err(e) => {
                error = Some(e);
                Some(ExitStatus::default())
            }
        });
        match (error, waited) {
            (Some(e), _) => Err(e),
            (None, Ok(status)) => Ok(Some(status)),
            (None, Err(_)) => Ok(None),
        }
    }

    /// Sends `signal` to the child (or its group) unless it has already exited.
    pub fn signal(&mut self, signal: Signal) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let sent = if self.group {
            killpg(pid, signal)
        } else {
            kill(pid, signal)
        };
        match sent {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(io::Error::other(format!(
                "cannot send {signal} to {} (pid {pid}): {e}",
                self.name
            ))),
        }
    }

    /// Stops the child: `SIGTERM`, up to the grace period, then `SIGKILL`; always reaps.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        if let Some(status) = self.wait_timeout(self.grace)? {
            if self.group {
                // The leader is gone; make sure the rest of its group is too.
                let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            }
            return Ok(status);
        }
        self.kill()
    }

    /// Kills the child with `SIGKILL` and reaps it.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGKILL)?;
        if self.group {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        }
        self.wait_timeout(KILL_WAIT)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} (pid {}) still running {KILL_WAIT:?} after SIGKILL",
                    self.name,
                    self.child.id()
                ),
            )
        })
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = self.stop() {
            log::warn!("stopping {}: {e}", self.name);
        }
    }
}

/// Runs `cmd` (stdin from `/dev/null`, stdout and stderr captured) and returns its output;
/// kills it and fails with `TimedOut` (showing the output so far) after `deadline`.
/// A non-zero exit is not an error here: look at `Output::status`.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> io::Result<Output> {
    let start = Instant::now();
    let program = format!("{:?}", cmd.get_program());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(program.clone(), cmd)?.with_grace(Duration::ZERO);
    let stdout = collect(guard.child_mut().stdout.take());
    let stderr = collect(guard.child_mut().stderr.take());
    let status = guard.wait_timeout(deadline)?;
    let finished = status.is_some();
    let status = match status {
        Some(status) => status,
        None => guard.kill()?,
    };
    // A grandchild may hold the pipes open: do not wait for them past the deadline.
    let remaining = deadline
        .saturating_sub(start.elapsed())
        .max(Duration::from_secs(1));
    let stdout = stdout.recv_timeout(remaining).unwrap_or_default();
    let stderr = stderr.recv_timeout(remaining).unwrap_or_default();
    if !finished {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{program} did not finish within {deadline:?}; stdout: {:?}; stderr: {:?}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ),
        ));
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Reads a pipe to its end on a thread; the bytes arrive on the returned channel.
fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("pipe-reader".into())
        .stack_size(64 * 1024);
    let spawned = reader.spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    if let Err(e) = spawned {
        log::warn!("cannot start a pipe reader: {e}");
    }
    rx
}
