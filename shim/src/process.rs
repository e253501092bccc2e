//! A process of a task (its init or an exec) and the states it goes through, with the
//! transitions containerd's runc shim allows and its messages for the ones it refuses.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use corral_protocols::rpc::{RequestContext, RpcResult, Status as RpcStatus};
use corral_protocols::types::task::task::Status as TaskStatus;

use crate::io::{ProcessIo, StdioSpec};

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    Stopped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }

    /// The wire status.
    pub fn to_proto(self) -> TaskStatus {
        match self {
            State::Created => TaskStatus::CREATED,
            State::Running => TaskStatus::RUNNING,
            State::Paused => TaskStatus::PAUSED,
            State::Stopped => TaskStatus::STOPPED,
        }
    }
}

/// What a process may be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Pause,
    Resume,
    Delete,
    Kill,
}

/// Checks `op` against `state`: `FailedPrecondition` with containerd's wording when the state
/// does not allow it, `NotFound` for signalling a process that has exited.
pub fn check(state: State, op: Op) -> RpcResult<()> {
    use Op::*;
    use State::*;
    let refuse = |verb: &str| {
        Err(RpcStatus::failed_precondition(format!(
            "cannot {verb} a {} process",
            state.name()
        )))
    };
    match (state, op) {
        (Created, Start) | (Created, Delete) | (Created, Kill) => Ok(()),
        (Created, Pause) => refuse("pause"),
        (Created, Resume) => refuse("resume"),
        (Running, Pause) | (Running, Kill) => Ok(()),
        (Running, Start) => refuse("start"),
        (Running, Resume) => refuse("resume"),
        (Running, Delete) => refuse("delete"),
        (Paused, Resume) | (Paused, Kill) => Ok(()),
        (Paused, Start) => refuse("start"),
        (Paused, Pause) => refuse("pause"),
        (Paused, Delete) => refuse("delete"),
        (Stopped, Delete) => Ok(()),
        (Stopped, Kill) => Err(RpcStatus::not_found("process already finished")),
        (Stopped, Start) => refuse("start"),
        (Stopped, Pause) => refuse("pause"),
        (Stopped, Resume) => refuse("resume"),
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub status: u32,
    pub at: SystemTime,
}

/// The mutable part of a process.
pub struct Inner {
    pub state: State,
    pub pid: i32,
    pub exit: Option<ExitInfo>,
    pub io: Option<ProcessIo>,
    /// `CloseIO` came before the process's IO was set up (an exec is only given its IO at
    /// Start): stdin is closed as soon as it is.
    pub close_stdin_pending: bool,
}

/// One process: the task's init (`exec_id` empty) or an exec.
pub struct Process {
    pub exec_id: String,
    pub stdio: StdioSpec,
    /// The OCI process JSON of an exec (empty for init).
    pub spec: Vec<u8>,
    inner: Mutex<Inner>,
    exited: Condvar,
}

impl Process {
    pub fn new(exec_id: &str, stdio: StdioSpec, spec: Vec<u8>) -> Self {
        Self {
            exec_id: exec_id.to_string(),
            stdio,
            spec,
            inner: Mutex::new(Inner {
                state: State::Created,
                pid: 0,
                exit: None,
                io: None,
                close_stdin_pending: false,
            }),
            exited: Condvar::new(),
        }
    }

    /// Locks the process's state.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (plain fields): go on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    pub fn pid(&self) -> i32 {
        self.lock().pid
    }

    /// Records the exit and wakes every waiter. Returns false if it had already exited.
    pub fn set_exited(&self, exit: ExitInfo) -> bool {
        let mut inner = self.lock();
        if inner.exit.is_some() {
            return false;
        }
        inner.exit = Some(exit);
        inner.state = State::Stopped;
        drop(inner);
        self.exited.notify_all();
        true
    }

    /// Blocks until the process exits, the caller goes away or its deadline passes.
    pub fn wait(&self, ctx: &RequestContext) -> RpcResult<ExitInfo> {
        let mut inner = self.lock();
        loop {
            if let Some(exit) = inner.exit {
                return Ok(exit);
            }
            if ctx.is_cancelled() {
                return Err(ctx.cancelled_status());
            }
            // Wake now and then to notice a caller that went away.
            inner = match self.exited.wait_timeout(inner, Duration::from_millis(500)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_protocols::rpc::{CancelToken, Code, Metadata};

    #[test]
    fn transitions_follow_containerds_runc_shim() {
        assert!(check(State::Created, Op::Start).is_ok());
        assert!(check(State::Running, Op::Pause).is_ok());
        assert!(check(State::Paused, Op::Resume).is_ok());
        let e = check(State::Created, Op::Pause).unwrap_err();
        assert_eq!(e.code(), Code::FAILED_PRECONDITION);
        assert_eq!(e.message(), "cannot pause a created process");
        assert_eq!(
            check(State::Running, Op::Delete).unwrap_err().message(),
            "cannot delete a running process"
        );
        let e = check(State::Stopped, Op::Kill).unwrap_err();
        assert_eq!(e.code(), Code::NOT_FOUND);
        assert_eq!(e.message(), "process already finished");
        assert!(check(State::Stopped, Op::Delete).is_ok());
    }

    #[test]
    fn wait_returns_the_exit_to_every_waiter() {
        let p = std::sync::Arc::new(Process::new("", StdioSpec::default(), Vec::new()));
        let ctx = RequestContext::new(
            "/t".into(),
            Metadata::default(),
            None,
            CancelToken::default(),
        );
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                let ctx = ctx.clone();
                std::thread::spawn(move || p.wait(&ctx).unwrap())
            })
            .collect();
        let exit = ExitInfo {
            status: 3,
            at: SystemTime::now(),
        };
        assert!(p.set_exited(exit));
        assert!(!p.set_exited(exit));
        for w in waiters {
            assert_eq!(w.join().unwrap(), exit);
        }
        assert_eq!(p.state(), State::Stopped);
    }

    #[test]
    fn wait_gives_up_when_the_caller_goes() {
        let p = Process::new("", StdioSpec::default(), Vec::new());
        let cancel = CancelToken::default();
        let ctx = RequestContext::new("/t".into(), Metadata::default(), None, cancel.clone());
        cancel.cancel();
        assert_eq!(p.wait(&ctx).unwrap_err().code(), Code::CANCELLED);
    }
}
