//! Process stdio: fifos, log URIs, and terminals through runc's console socket.
//!
//! [`ProcessIo`] is the stdio of one process (a task's init or an exec), from before
//! `runc create/exec` to after the process exited. Its life:
//!
//! 1. [`ProcessIo::prepare`] opens what containerd named in the request ([`StdioSpec`]), starts
//!    a logging binary, makes pipes, and for a terminal listens on a console socket.
//! 2. The caller runs runc with [`ProcessIo::take_runc_stdio`] as runc's stdin/stdout/stderr
//!    (`None` = `/dev/null`) and, for a terminal, `--console-socket`
//!    [`ProcessIo::console_socket`]; then drops the [`RuncStdio`], so that the process (and its
//!    children) hold the only write ends and readers see end-of-file when it exits.
//! 3. [`ProcessIo::start`] after runc succeeded: receives the pty master and starts copying.
//! 4. [`ProcessIo::resize`] / [`ProcessIo::close_stdin`] while it runs (`ResizePty`,
//!    `CloseIO`).
//! 5. [`ProcessIo::finish`] after the process exited (at the latest on `Delete`). Dropping a
//!    `ProcessIo` does the same as `finish(Duration::ZERO)`.
//!
//! How each stream is connected:
//!
//! | stdio | what the process gets | copying |
//! |---|---|---|
//! | stdout/stderr fifo (path or `fifo://`) | the fifo itself, opened `O_WRONLY` after a kept `O_RDONLY\|O_NONBLOCK` handle | none |
//! | stdout/stderr `file:///p` | the file, `O_APPEND\|O_CREAT` 0644 | none |
//! | stdout `binary:///p?..` | pipes read by the logging binary (stderr goes there too, as in Go) | none |
//! | stdout/stderr fifo or file with `io_uid`/`io_gid` != 0 | pipes owned by that uid/gid | pipe -> fifo/file |
//! | stdin fifo | the fifo itself (made blocking); a pipe when `IoUid`/`IoGid` are set | none; fifo -> pipe with `IoUid`/`IoGid` |
//! | terminal | the pty (runc's) | stdin fifo -> master, master -> stdout fifo/file/binary |
//!
//! Where this differs from the Go shim: fifos and files are handed to the process directly
//! (Go always copies through pipes); stdin is honoured with a `binary://` stdout (Go leaves it
//! on `/dev/null`); `file://` stderr may name another file than stdout (Go sends both to
//! stdout's); the logging binary's pipes are given to `io_uid`/`io_gid` too; a terminal may
//! write to a `file://` (Go fails) and without stdout its output is read and dropped.
//!
//! Stdout and stderr naming the same fifo or file share one descriptor (or one sink). All the
//! copying of a process runs on one small thread polling all its descriptors
//! (module `copy`); a process with nothing to copy has no thread. A logging binary is waited for
//! by one helper thread for its lifetime (through the [`Runner`], since only the shim's
//! reaper may wait for children).
//!
//! Stdin: the shim holds a write handle of the stdin fifo itself until `CloseIO`, so the reader
//! never sees a spurious end-of-file before the client opened the fifo or between two
//! clients. The process sees end-of-file on stdin once `CloseIO` was called and every client
//! closed its write end (as with the Go shim), after all the data written before was
//! delivered. On a terminal, stdin's end stops the copy into the master and nothing more (no
//! `^D` is sent).

mod console;
mod copy;
mod fifo;
mod logger;
mod uri;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollTimeout;

use crate::runner::Runner;
use console::ConsoleSocket;
use copy::{Copier, Plan};
use logger::Logger;
use uri::Target;

/// How long [`ProcessIo::start`] waits for runc to send the pty master.
pub const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`ProcessIo::prepare`] waits for a logging binary to say it is ready (the Go shim
/// waits forever).
pub const LOGGER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a logging binary has between `SIGTERM` and `SIGKILL` (the Go shim's
/// `binaryIOProcTermTimeout`).
pub const LOGGER_TERM_GRACE: Duration = Duration::from_secs(12);
/// Stack of the copy thread and of the logging binary's helper thread.
pub(crate) const COPY_THREAD_STACK: usize = 64 * 1024;

/// A process's stdio as containerd sends it (`CreateTaskRequest` / `ExecProcessRequest`
/// `stdin`, `stdout`, `stderr`, `terminal`). `""` = not connected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioSpec {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

impl StdioSpec {
    /// No stream connected (containerd's `Stdio.IsNull`).
    pub fn is_null(&self) -> bool {
        self.stdin.is_empty() && self.stdout.is_empty() && self.stderr.is_empty()
    }
}

/// What [`ProcessIo::prepare`] needs besides the [`StdioSpec`].
#[derive(Debug, Clone, Default)]
pub struct IoOptions {
    /// runc options `IoUid`/`IoGid`: when either is non-zero, the process gets pipes owned
    /// by them instead of the fifos or files themselves.
    pub io_uid: u32,
    pub io_gid: u32,
    /// `CONTAINER_ID` for a logging binary.
    pub container_id: String,
    /// `CONTAINER_NAMESPACE` for a logging binary.
    pub namespace: String,
    /// Where the console socket of a terminal process goes (e.g. the bundle directory). When
    /// the socket's path would not fit a unix socket address (107 bytes), it goes into a
    /// private directory (0700) made in `$TMPDIR` (else `/tmp`) instead, as the Go shim
    /// always does.
    pub runtime_dir: PathBuf,
}

/// runc's (and so the process's) stdin, stdout and stderr; `None` = `/dev/null`.
#[derive(Debug, Default)]
pub struct RuncStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl From<RuncStdio> for crate::runc::RuncStdio {
    fn from(s: RuncStdio) -> Self {
        crate::runc::RuncStdio {
            stdin: s.stdin.map(Stdio::from),
            stdout: s.stdout.map(Stdio::from),
            stderr: s.stderr.map(Stdio::from),
        }
    }
}

/// Which containerd error kind an [`IoError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoErrorKind {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    DeadlineExceeded,
    Internal,
}

/// Errors of the stdio module.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("invalid {stream} URI {uri:?}: {reason}")]
    InvalidUri {
        stream: &'static str,
        uri: String,
        reason: String,
    },
    /// `opening stdout fifo "/run/...": No such file or directory`
    #[error("opening {what} {path:?}: {}", describe(cause))]
    Open {
        what: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("starting logging binary {path:?}: {cause}")]
    Logger { path: PathBuf, cause: String },
    #[error(
        "receiving the terminal on console socket {path:?}: {}",
        describe(cause)
    )]
    Console { path: PathBuf, cause: io::Error },
    #[error("timed out waiting for {what} on {path:?}")]
    Timeout { what: &'static str, path: PathBuf },
    #[error("{op}: {}", describe(cause))]
    Sys { op: &'static str, cause: io::Error },
    #[error("the process has no terminal")]
    NotATerminal,
    #[error("the process's terminal has not been received yet")]
    TerminalNotReady,
    #[error("the process's stdio has already been started")]
    AlreadyStarted,
}

impl IoError {
    pub(crate) fn open(what: &'static str, path: &Path, cause: io::Error) -> IoError {
        IoError::Open {
            what,
            path: path.to_path_buf(),
            cause,
        }
    }

    /// The containerd error kind (and so the status code) this error maps to.
    pub fn kind(&self) -> IoErrorKind {
        match self {
            IoError::InvalidUri { .. } => IoErrorKind::InvalidArgument,
            IoError::Open { cause, .. } if cause.kind() == io::ErrorKind::NotFound => {
                IoErrorKind::NotFound
            }
            IoError::NotATerminal | IoError::TerminalNotReady | IoError::AlreadyStarted => {
                IoErrorKind::FailedPrecondition
            }
            IoError::Timeout { .. } => IoErrorKind::DeadlineExceeded,
            _ => IoErrorKind::Internal,
        }
    }
}

/// An OS error's text without Rust's " (os error N)" suffix, as Go prints it.
fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// A poll timeout covering `left`, rounded up to whole milliseconds (never spinning at 0).
pub(crate) fn poll_timeout(left: Duration) -> PollTimeout {
    let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// A terminal process's copies, waiting for the pty master.
struct TermPlan {
    stdin: Option<OwnedFd>,
    out: OwnedFd,
}

/// The stdio of one process; see the module documentation for its life.
pub struct ProcessIo {
    terminal: bool,
    started: bool,
    runc: Option<RuncStdio>,
    console: Option<ConsoleSocket>,
    term: Option<TermPlan>,
    plan: Option<Plan>,
    /// A duplicate of the pty master, for `resize`.
    master: Option<OwnedFd>,
    /// The shim's own write handle on the stdin fifo, dropped by `close_stdin`.
    stdin_keepalive: Mutex<Option<OwnedFd>>,
    /// The shim's read handles on fifos the process uses directly.
    kept: Vec<OwnedFd>,
    copier: Option<Copier>,
    logger: Option<Logger>,
}

impl fmt::Debug for ProcessIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessIo")
            .field("terminal", &self.terminal)
            .field("started", &self.started)
            .field("console_socket", &self.console_socket())
            .field("copying", &self.copier.is_some())
            .field("logger", &self.logger.is_some())
            .finish()
    }
}

impl ProcessIo {
    fn empty(terminal: bool) -> ProcessIo {
        ProcessIo {
            terminal,
            started: false,
            runc: None,
            console: None,
            term: None,
            plan: None,
            master: None,
            stdin_keepalive: Mutex::new(None),
            kept: Vec::new(),
            copier: None,
            logger: None,
        }
    }

    /// Before runc create/exec: opens fifos and files, starts a logging binary (and waits
    /// until it is ready), makes pipes when needed, and for a terminal listens on a console
    /// socket in `opts.runtime_dir`. On error everything opened so far is closed again.
    pub fn prepare(
        spec: &StdioSpec,
        opts: &IoOptions,
        runner: Arc<dyn Runner>,
    ) -> Result<ProcessIo, IoError> {
        let stdin = match uri::parse("stdin", &spec.stdin)? {
            None => None,
            Some(Target::Fifo(p)) => Some(p),
            Some(_) => {
                return Err(IoError::InvalidUri {
                    stream: "stdin",
                    uri: spec.stdin.clone(),
                    reason: "stdin must be a fifo".into(),
                })
            }
        };
        let stdout = uri::parse("stdout", &spec.stdout)?;
        let stderr = uri::parse("stderr", &spec.stderr)?;
        let piped = opts.io_uid != 0 || opts.io_gid != 0;
        let chown = |fd: &OwnedFd| {
            if piped {
                fifo::chown_pipe(fd.as_fd(), opts.io_uid, opts.io_gid)
            } else {
                Ok(())
            }
        };

        let mut pio = ProcessIo::empty(spec.terminal);
        let stdin = match stdin {
            Some(p) => {
                let f = fifo::open_input(&p)?;
                pio.stdin_keepalive = Mutex::new(f.keepalive);
                Some(f.read)
            }
            None => None,
        };

        if spec.terminal {
            // stderr is the terminal too; its string is ignored, as in Go.
            pio.console = Some(ConsoleSocket::bind(&opts.runtime_dir)?);
            let out = match stdout {
                None => fifo::dev_null()?,
                Some(Target::Fifo(p)) => {
                    let o = fifo::open_output("stdout fifo", &p)?;
                    pio.kept.extend(o.keep);
                    o.write
                }
                Some(Target::File(p)) => fifo::open_log_file("stdout file", &p)?,
                Some(Target::Binary(b)) => {
                    let (out_r, out_w) = fifo::pipe("making the stdout pipe")?;
                    // As in Go, the binary gets a stderr pipe whose write end is closed.
                    let (err_r, _) = fifo::pipe("making the stderr pipe")?;
                    pio.logger = Some(Logger::start(&b, opts, runner, out_r, err_r)?);
                    out_w
                }
            };
            pio.term = Some(TermPlan { stdin, out });
            pio.runc = Some(RuncStdio::default());
            return Ok(pio);
        }

        let mut plan = Plan::default();
        let mut runc = RuncStdio::default();
        if let Some(read) = stdin {
            if piped {
                let (r, w) = fifo::pipe("making the stdin pipe")?;
                chown(&r)?;
                let src = plan.add_fd(read);
                let dst = plan.add_fd(w);
                plan.add_pair("stdin", src, dst, true);
                runc.stdin = Some(r);
            } else {
                // The process reads the fifo itself: no copy, no thread. The shim's write
                // handle (dropped by CloseIO) keeps it from seeing end-of-file early.
                fifo::set_blocking(&read, "making stdin blocking")?;
                // A reader stays until finish, so a client that opens the fifo late (or
                // after the process exited) never gets ENXIO.
                pio.kept.push(read.try_clone().map_err(|e| IoError::Sys {
                    op: "keeping the stdin fifo open",
                    cause: e,
                })?);
                runc.stdin = Some(read);
            }
        }

        if let Some(Target::Binary(b)) = &stdout {
            // Both streams go to the binary, whatever stderr says (as in Go).
            let (out_r, out_w) = fifo::pipe("making the stdout pipe")?;
            let (err_r, err_w) = fifo::pipe("making the stderr pipe")?;
            chown(&out_w)?;
            chown(&err_w)?;
            pio.logger = Some(Logger::start(b, opts, runner, out_r, err_r)?);
            runc.stdout = Some(out_w);
            runc.stderr = Some(err_w);
        } else {
            if let Some(Target::Binary(_)) = &stderr {
                return Err(IoError::InvalidUri {
                    stream: "stderr",
                    uri: spec.stderr.clone(),
                    reason: "a logging binary must be named by stdout".into(),
                });
            }
            let out = match &stdout {
                Some(t) => Some(pio.open_sink("stdout", t)?),
                None => None,
            };
            let shared = stderr.is_some() && stderr == stdout;
            let err = match &stderr {
                Some(t) if !shared => Some(pio.open_sink("stderr", t)?),
                _ => None,
            };
            if piped {
                let out_slot = out.map(|fd| plan.add_fd(fd));
                let err_slot = if shared {
                    out_slot
                } else {
                    err.map(|fd| plan.add_fd(fd))
                };
                for (name, slot, runc_fd) in [
                    ("stdout", out_slot, &mut runc.stdout),
                    ("stderr", err_slot, &mut runc.stderr),
                ] {
                    if let Some(sink) = slot {
                        let (r, w) = fifo::pipe("making an output pipe")?;
                        chown(&w)?;
                        let src = plan.add_fd(r);
                        plan.add_pair(name, src, sink, false);
                        *runc_fd = Some(w);
                    }
                }
            } else {
                if shared {
                    if let Some(fd) = &out {
                        runc.stderr = Some(fd.try_clone().map_err(|e| IoError::Sys {
                            op: "duplicating the stdout descriptor for stderr",
                            cause: e,
                        })?);
                    }
                } else {
                    runc.stderr = err;
                }
                runc.stdout = out;
            }
        }
        if !plan.is_empty() {
            pio.plan = Some(plan);
        }
        pio.runc = Some(runc);
        Ok(pio)
    }

    /// Opens a fifo or a `file://` for writing (`what` is "stdout" or "stderr").
    fn open_sink(&mut self, what: &'static str, t: &Target) -> Result<OwnedFd, IoError> {
        let err_what = |kind: &str| -> &'static str {
            match (what, kind) {
                ("stdout", "fifo") => "stdout fifo",
                ("stdout", _) => "stdout file",
                (_, "fifo") => "stderr fifo",
                _ => "stderr file",
            }
        };
        match t {
            Target::Fifo(p) => {
                let o = fifo::open_output(err_what("fifo"), p)?;
                self.kept.extend(o.keep);
                Ok(o.write)
            }
            Target::File(p) => fifo::open_log_file(err_what("file"), p),
            Target::Binary(_) => Err(IoError::InvalidUri {
                stream: what,
                uri: String::new(),
                reason: "unexpected logging binary".into(),
            }),
        }
    }

    /// The descriptors runc (and so the process) gets as stdin/stdout/stderr; `None` =
    /// `/dev/null`. All `None` for a terminal. Given out once (later calls get all `None`);
    /// the caller must drop them once runc returned, so that the shim holds no write end that
    /// would keep a reader from seeing end-of-file.
    ///
    /// Returns a [`RuncStdio`] or anything made from one, such as the runc module's
    /// [`crate::runc::RuncStdio`], so it can be passed straight to `Runc::create`/`exec`.
    pub fn take_runc_stdio<T: From<RuncStdio>>(&mut self) -> T {
        T::from(self.runc.take().unwrap_or_default())
    }

    /// For a terminal process, the path to pass as `runc --console-socket` (until `start`).
    pub fn console_socket(&self) -> Option<&Path> {
        self.console.as_ref().map(|c| c.path())
    }

    /// Whether this is a terminal process.
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// After runc create/exec succeeded: for a terminal, receives the pty master on the
    /// console socket (waiting up to [`CONSOLE_TIMEOUT`]) and starts copying stdin fifo ->
    /// master and master -> stdout; otherwise starts the copies the streams need (none for
    /// direct fifos and files). Once only.
    pub fn start(&mut self) -> Result<(), IoError> {
        if self.started {
            return Err(IoError::AlreadyStarted);
        }
        self.started = true;
        let plan = if self.terminal {
            let Some(console) = self.console.take() else {
                return Err(IoError::TerminalNotReady);
            };
            let (master, name) = console.receive_master(CONSOLE_TIMEOUT)?;
            log::debug!("received terminal {name}");
            drop(console);
            let Some(term) = self.term.take() else {
                return Err(IoError::TerminalNotReady);
            };
            self.master = Some(master.try_clone().map_err(|e| IoError::Sys {
                op: "duplicating the terminal",
                cause: e,
            })?);
            let mut plan = Plan::default();
            let m = plan.add_fd(master);
            if let Some(stdin) = term.stdin {
                let s = plan.add_fd(stdin);
                plan.add_pair("stdin", s, m, true);
            }
            let o = plan.add_fd(term.out);
            plan.add_pair("terminal output", m, o, false);
            Some(plan)
        } else {
            self.plan.take()
        };
        if let Some(plan) = plan {
            self.copier = Some(Copier::spawn(plan)?);
        }
        Ok(())
    }

    /// `ResizePty`: sets the terminal's size (`TIOCSWINSZ` on the master). Values above
    /// 65535 are clamped. An error for a process without a terminal (the Go shim silently
    /// ignores that case) or before [`ProcessIo::start`].
    pub fn resize(&self, width: u32, height: u32) -> Result<(), IoError> {
        if !self.terminal {
            return Err(IoError::NotATerminal);
        }
        let Some(master) = &self.master else {
            return Err(IoError::TerminalNotReady);
        };
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        console::resize(master.as_fd(), clamp(width), clamp(height)).map_err(|e| IoError::Sys {
            op: "resizing the terminal",
            cause: e,
        })
    }

    /// `CloseIO`: drops the shim's own write handle on the stdin fifo, so the process sees
    /// end-of-file on stdin once the client has closed its end too and the data before it
    /// was delivered. Idempotent; nothing happens without stdin.
    pub fn close_stdin(&self) {
        let mut k = self
            .stdin_keepalive
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *k = None;
    }

    /// After the process exited: stops the stdin copy, waits up to `deadline` for the output
    /// copies to reach end-of-file (a pty or pipe is still held open by a process's children,
    /// say), then closes everything; a logging binary gets until the same deadline to exit by
    /// itself, then `SIGTERM`, [`LOGGER_TERM_GRACE`] later `SIGKILL`. When it returns, every
    /// thread of this `ProcessIo` has exited and every descriptor is closed.
    ///
    /// The copy thread closes each output sink as soon as its source reached end-of-file,
    /// without waiting for this call: clients (ctr) wait for end-of-file on the stdout/stderr
    /// fifos before they send `Delete`.
    pub fn finish(mut self, deadline: Duration) {
        self.shutdown(deadline, LOGGER_TERM_GRACE);
    }

    fn shutdown(&mut self, deadline: Duration, grace: Duration) {
        let at = Instant::now() + deadline;
        self.runc = None;
        self.close_stdin();
        if let Some(c) = self.copier.take() {
            c.finish(at);
        }
        self.plan = None;
        self.term = None;
        self.console = None;
        self.master = None;
        self.kept.clear();
        if let Some(l) = self.logger.take() {
            l.stop(at, grace);
        }
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO, LOGGER_TERM_GRACE);
    }
}

#[cfg(test)]
mod tests;
