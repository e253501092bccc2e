//! The shim's one child reaper.
//!
//! The shim is a child subreaper, so container processes whose parent (runc) exits become its
//! children. One thread waits on a signalfd for `SIGCHLD` (and `SIGTERM`/`SIGINT`), reaps every
//! exited child with `waitpid(-1, WNOHANG)` and hands each exit to whoever subscribed: the
//! [`ReaperRunner`] waiting for a runc invocation, and the task service for container
//! processes. Nothing else in the shim waits for a child, so no exit is ever lost to a race.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Instant, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::runner::Runner;

/// One reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// The exit code, or 128 + the signal that killed it (containerd's convention).
    pub status: u32,
    pub at: SystemTime,
    /// When it was reaped, on the monotonic clock (for ordering; wall time can jump).
    pub reaped: Instant,
}

impl Exit {
    fn from_wait(ws: WaitStatus) -> Option<Exit> {
        let (pid, status) = match ws {
            WaitStatus::Exited(pid, code) => (pid, code as u32),
            WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as u32),
            _ => return None,
        };
        Some(Exit {
            pid: pid.as_raw(),
            status,
            at: SystemTime::now(),
            reaped: Instant::now(),
        })
    }

    /// The wait status as std's `ExitStatus`.
    pub fn exit_status(&self) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        if self.status > 128 && self.status < 128 + 65 {
            ExitStatus::from_raw((self.status - 128) as i32)
        } else {
            ExitStatus::from_raw(((self.status & 0xff) << 8) as i32)
        }
    }
}

/// Something else the reaper's thread watches: a file descriptor and what to do when it is
/// readable (the OOM watcher plugs in here, so it costs no thread of its own).
pub trait Watch: Send {
    fn fd(&self) -> BorrowedFd<'_>;
    fn ready(&mut self);
}

type Subscribers = Mutex<Vec<Sender<Exit>>>;
type Listener = Arc<dyn Fn(Exit) + Send + Sync>;

/// Subscribes to exits and runs the reaper thread.
#[derive(Clone)]
pub struct Reaper {
    subscribers: Arc<Subscribers>,
    listeners: Arc<Mutex<Vec<Listener>>>,
}

/// The signals the reaper thread takes over; block them in every thread before any other
/// thread starts (children get a clean mask from std's `Command`).
pub fn signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

impl Reaper {
    /// Blocks the reaper's signals in the calling thread (and so in every thread it starts
    /// afterwards), and makes this process a child subreaper.
    pub fn install() -> io::Result<Reaper> {
        signals().thread_block().map_err(io::Error::from)?;
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and touches no memory
        // of ours; nix has no wrapper for it.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Reaper {
            subscribers: Arc::default(),
            listeners: Arc::default(),
        })
    }

    /// A reaper for tests: no subreaper, no signal handling; exits are fed by hand.
    pub fn detached() -> Reaper {
        Reaper {
            subscribers: Arc::default(),
            listeners: Arc::default(),
        }
    }

    /// Calls `f` on the reaper's thread for every exit from now on. `f` must not block: it
    /// runs where exits are collected.
    pub fn on_exit(&self, f: impl Fn(Exit) + Send + Sync + 'static) {
        if let Ok(mut l) = self.listeners.lock() {
            l.push(Arc::new(f));
        }
    }

    /// Every exit from now on arrives on the returned channel.
    pub fn subscribe(&self) -> Receiver<Exit> {
        let (tx, rx) = mpsc::channel();
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(tx);
        }
        rx
    }

    /// Hands `exit` to every live subscriber, dropping the ones that went away.
    pub fn publish(&self, exit: Exit) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|s| s.send(exit).is_ok());
        }
        let listeners: Vec<Listener> = self.listeners.lock().map(|l| l.clone()).unwrap_or_default();
        for l in listeners {
            l(exit);
        }
    }

    /// Starts the reaper thread. `on_stop` runs (on that thread) for `SIGTERM`/`SIGINT`;
    /// `watches` are polled beside the signalfd.
    pub fn spawn(
        &self,
        mut watches: Vec<Box<dyn Watch>>,
        on_stop: impl Fn() + Send + 'static,
    ) -> io::Result<thread::JoinHandle<()>> {
        let sfd = SignalFd::with_flags(&signals(), SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(io::Error::from)?;
        let me = self.clone();
        thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || me.run(sfd, &mut watches, &on_stop))
    }

    fn run(&self, sfd: SignalFd, watches: &mut [Box<dyn Watch>], on_stop: &dyn Fn()) {
        // Children may have exited before the signalfd existed.
        self.reap_all();
        loop {
            let ready: Vec<bool> = {
                let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
                for w in watches.iter() {
                    fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => fds
                        .iter()
                        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                        .collect(),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        log::error!("reaper: poll: {e}");
                        return;
                    }
                }
            };
            if ready[0] {
                let mut stop = false;
                while let Ok(Some(info)) = sfd.read_signal() {
                    if info.ssi_signo == Signal::SIGTERM as u32
                        || info.ssi_signo == Signal::SIGINT as u32
                    {
                        stop = true;
                    }
                }
                // SIGCHLDs coalesce: always reap everything that is there.
                self.reap_all();
                if stop {
                    on_stop();
                }
            }
            for (w, r) in watches.iter_mut().zip(ready.iter().skip(1)) {
                if *r {
                    w.ready();
                }
            }
        }
    }

    fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return,
                Ok(ws) => {
                    if let Some(exit) = Exit::from_wait(ws) {
                        log::debug!("reaped pid {} with status {}", exit.pid, exit.status);
                        self.publish(exit);
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                // ECHILD: no children left.
                Err(_) => return,
            }
        }
    }

    /// Waits for the exit of `pid` on a subscription taken before the child was started.
    fn wait_for(rx: &Receiver<Exit>, pid: u32) -> io::Result<Exit> {
        loop {
            match rx.recv() {
                Ok(exit) if exit.pid == pid as i32 => return Ok(exit),
                Ok(_) => continue,
                Err(_) => {
                    return Err(io::Error::other(
                        "the reaper stopped before the child exited",
                    ))
                }
            }
        }
    }
}

/// Runs commands inside the shim: subscribes to the reaper before starting the child, so the
/// child's exit cannot slip past.
#[derive(Clone)]
pub struct ReaperRunner {
    reaper: Reaper,
}

impl ReaperRunner {
    pub fn new(reaper: Reaper) -> Self {
        Self { reaper }
    }
}

impl Runner for ReaperRunner {
    fn status(&self, cmd: &mut Command) -> io::Result<ExitStatus> {
        let rx = self.reaper.subscribe();
        let child = cmd.spawn()?;
        // Dropping a std Child neither waits nor kills: the reaper owns the wait.
        let pid = child.id();
        drop(child);
        Ok(Reaper::wait_for(&rx, pid)?.exit_status())
    }

    fn output(&self, cmd: &mut Command, stdin: Option<&[u8]>) -> io::Result<Output> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let rx = self.reaper.subscribe();
        let mut child = cmd.spawn()?;
        let pid = child.id();
        if let (Some(mut w), Some(input)) = (child.stdin.take(), stdin) {
            w.write_all(input)?;
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let out = child.stdout.take();
        let err = child.stderr.take();
        drop(child);
        // Read both pipes without a thread: poll them until both are closed.
        read_two(out, err, &mut stdout, &mut stderr)?;
        let exit = Reaper::wait_for(&rx, pid)?;
        Ok(Output {
            status: exit.exit_status(),
            stdout,
            stderr,
        })
    }
}

fn read_two(
    a: Option<std::process::ChildStdout>,
    b: Option<std::process::ChildStderr>,
    out_a: &mut Vec<u8>,
    out_b: &mut Vec<u8>,
) -> io::Result<()> {
    let mut a = a;
    let mut b = b;
    let mut buf = [0u8; 8192];
    while a.is_some() || b.is_some() {
        let (ra, rb) = {
            let mut fds = Vec::new();
            if let Some(a) = &a {
                fds.push(PollFd::new(a.as_fd(), PollFlags::POLLIN));
            }
            if let Some(b) = &b {
                fds.push(PollFd::new(b.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let ra = a.is_some() && ready(&fds[0]);
            let rb = b.is_some() && ready(&fds[if a.is_some() { 1 } else { 0 }]);
            (ra, rb)
        };
        if ra {
            if let Some(pipe) = a.as_mut() {
                match pipe.read(&mut buf) {
                    Ok(0) => a = None,
                    Ok(n) => out_a.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if rb {
            if let Some(pipe) = b.as_mut() {
                match pipe.read(&mut buf) {
                    Ok(0) => b = None,
                    Ok(n) => out_b.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_follow_containerds_convention() {
        let e = Exit::from_wait(WaitStatus::Exited(Pid::from_raw(5), 3)).unwrap();
        assert_eq!(e.status, 3);
        assert_eq!(e.exit_status().code(), Some(3));
        let e = Exit::from_wait(WaitStatus::Signaled(
            Pid::from_raw(5),
            Signal::SIGKILL,
            false,
        ))
        .unwrap();
        assert_eq!(e.status, 137);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(e.exit_status().signal(), Some(9));
    }

    #[test]
    fn subscribers_get_every_exit_and_gone_ones_are_dropped() {
        let r = Reaper::detached();
        let a = r.subscribe();
        let b = r.subscribe();
        drop(b);
        let exit = Exit {
            pid: 42,
            status: 0,
            at: SystemTime::now(),
            reaped: Instant::now(),
        };
        r.publish(exit);
        assert_eq!(a.recv().unwrap(), exit);
        assert_eq!(r.subscribers.lock().unwrap().len(), 1);
    }
}
