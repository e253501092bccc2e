//! The containerd client's `task` and `process` for ctr's foreground commands: creating a
//! task with its IO (`tasks.NewTask`), attaching to one, starting, waiting, forwarding
//! signals or resizing the terminal while it runs, and deleting it with containerd's
//! checks.

use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use corral_protocols::rpc::{CallContext, Client, Code, RpcResult};
use corral_protocols::runtime::v2::runc::options::oci::Options as RuncOptions;
use corral_protocols::services::containers::v1::containers::Container;
use corral_protocols::services::snapshots::v1::snapshots::MountsRequest;
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::services::tasks::v1::tasks::{
    CloseIORequest, CreateTaskRequest, DeleteProcessRequest, DeleteResponse, DeleteTaskRequest,
    GetRequest, KillRequest, ResizePtyRequest, StartRequest, WaitRequest, WaitResponse,
};
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;
use corral_protocols::types::mount::Mount;
use corral_protocols::types::task::task::{Process as ProcessState, Status as TaskStatus};
use protobuf::MessageField;

use super::{write_pid_file, ExitStatus};
use crate::cio::console::RawGuard;
use crate::cio::signals::{Forwarded, Signals};
use crate::cio::{Config, Console, Io, Streams};
use crate::commands::container_flags::RUNC_RUNTIMES;
use crate::commands::{status_message, CtlError, CtlResult, Env};

/// Stack of the thread that waits for an exit.
const WAIT_STACK: usize = 64 * 1024;

/// What identifies a process to the Tasks service, with a connection to it: cheap to clone
/// into the signal thread and the stdin copy.
#[derive(Clone)]
pub struct ProcessRef {
    tasks: TasksClient,
    ctx: CallContext,
    container_id: String,
    exec_id: String,
}

impl ProcessRef {
    /// Process `exec_id` (`""`: the init process) of container `container_id`.
    pub fn new(tasks: TasksClient, ctx: CallContext, container_id: &str, exec_id: &str) -> Self {
        ProcessRef {
            tasks,
            ctx,
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
        }
    }

    /// The container's id.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The exec id; `""` for the task's init process.
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    /// `Kill`, with `all` for every process of the container.
    pub fn kill(&self, signal: u32, all: bool) -> RpcResult<()> {
        let req = KillRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            signal,
            all,
            ..Default::default()
        };
        self.tasks.kill(&self.ctx, &req).map(drop)
    }

    /// `ResizePty`.
    pub fn resize(&self, width: u32, height: u32) -> RpcResult<()> {
        let req = ResizePtyRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            width,
            height,
            ..Default::default()
        };
        self.tasks.resize_pty(&self.ctx, &req).map(drop)
    }

    /// `CloseIO` of stdin.
    pub fn close_stdin(&self) -> RpcResult<()> {
        let req = CloseIORequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            stdin: true,
            ..Default::default()
        };
        self.tasks.close_io(&self.ctx, &req).map(drop)
    }

    /// `Get`: the process's state.
    pub fn state(&self) -> RpcResult<ProcessState> {
        let req = GetRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            ..Default::default()
        };
        self.tasks
            .get(&self.ctx, &req)
            .map(|r| r.process.into_option().unwrap_or_default())
    }

    /// `Wait` on a thread of its own; its answer is taken from the [`Waiter`].
    pub fn wait(&self) -> CtlResult<Waiter> {
        let me = self.clone();
        thread::Builder::new()
            .name("wait".into())
            .stack_size(WAIT_STACK)
            .spawn(move || {
                let req = WaitRequest {
                    container_id: me.container_id.clone(),
                    exec_id: me.exec_id.clone(),
                    ..Default::default()
                };
                me.tasks.wait(&me.ctx, &req)
            })
            .map(Waiter)
            .map_err(|e| CtlError::new(format!("starting the wait: {e}")))
    }
}

/// An outstanding `Wait` (the channel containerd's `Wait` returns).
#[derive(Debug)]
pub struct Waiter(JoinHandle<RpcResult<WaitResponse>>);

impl Waiter {
    /// Blocks until the process has exited; its exit status (`ExitStatus.Result`).
    pub fn exit_status(self) -> CtlResult<ExitStatus> {
        match self.0.join() {
            Ok(Ok(resp)) => Ok(resp.exit_status),
            Ok(Err(s)) => Err(s.into()),
            Err(_) => Err(CtlError::new("waiting for the process failed")),
        }
    }
}

/// A task's init process or an exec process, with the IO corralctl holds for it.
pub struct Process {
    target: ProcessRef,
    pid: u32,
    io: Option<Io>,
}

impl Process {
    /// A process created (or found) with `io`.
    pub fn new(target: ProcessRef, pid: u32, io: Option<Io>) -> Process {
        Process { target, pid, io }
    }

    /// How the Tasks service knows it.
    pub fn target(&self) -> &ProcessRef {
        &self.target
    }

    /// Its pid (0 until the task is created; the exec's once started).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn is_exec(&self) -> bool {
        !self.target.exec_id.is_empty()
    }

    /// `Start`. From then on the end of the caller's input is passed on with `CloseIO`
    /// (ctr's `stdinCloser`; ctr arms it when the process is created, but a shim may set up
    /// an exec's stdin only while starting it and miss an earlier `CloseIO`). On failure the
    /// IO is given up (and, for an exec, its fifos removed).
    pub fn start(&mut self) -> CtlResult {
        let req = StartRequest {
            container_id: self.target.container_id.clone(),
            exec_id: self.target.exec_id.clone(),
            ..Default::default()
        };
        match self.target.tasks.start(&self.target.ctx, &req) {
            Ok(resp) => {
                self.pid = resp.pid;
                if let Some(io) = &self.io {
                    let target = self.target.clone();
                    io.on_stdin_eof(move || {
                        log::debug!("stdin ended: closing the process's stdin");
                        if let Err(s) = target.close_stdin() {
                            log::debug!("closing stdin: {}", status_message(&s));
                        }
                    });
                }
                Ok(())
            }
            Err(s) => {
                let exec = self.is_exec();
                if let Some(io) = &mut self.io {
                    io.cancel();
                    if exec {
                        io.wait();
                    }
                    close_io(io);
                }
                Err(s.into())
            }
        }
    }

    /// `Wait` on its own thread.
    pub fn wait(&self) -> CtlResult<Waiter> {
        self.target.wait()
    }

    /// Deletes it as the containerd client does: a task only once it is stopped (or created
    /// without a pid), an exec only once it is not running; the IO's copies finished first,
    /// its fifos removed after.
    pub fn delete(&mut self) -> CtlResult<DeleteResponse> {
        if self.is_exec() {
            self.delete_exec()
        } else {
            self.delete_task(true)
        }
    }

    /// Deletes the process once its `Wait` has answered: it is stopped, so a task is not
    /// asked for its state first (corrald refuses to delete a running one anyway).
    pub fn delete_exited(&mut self) -> CtlResult<DeleteResponse> {
        if self.is_exec() {
            self.delete_exec()
        } else {
            self.delete_task(false)
        }
    }

    /// Refuses to delete a task that is neither stopped nor created without a process
    /// (containerd's client); a state it cannot learn lets the delete go on.
    fn check_stopped(&self) -> CtlResult {
        let status = match self.target.state() {
            Ok(p) => p.status.enum_value_or_default(),
            Err(s) if s.code() == Code::NOT_FOUND => return Err(s.into()),
            // Any other failure lets the delete go on, as containerd's client does.
            Err(_) => TaskStatus::UNKNOWN,
        };
        match status {
            TaskStatus::STOPPED | TaskStatus::UNKNOWN => Ok(()),
            TaskStatus::CREATED if self.pid == 0 => Ok(()),
            other => Err(CtlError::new(format!(
                "task must be stopped before deletion: {}: failed precondition",
                status_word(other)
            ))),
        }
    }

    /// Deletes the task; `check` asks its state first, as containerd's client does.
    fn delete_task(&mut self, check: bool) -> CtlResult<DeleteResponse> {
        if check {
            self.check_stopped()?;
        }
        if let Some(io) = &mut self.io {
            // Containerd 1.6.20's client closes the fifos before it waits for the copies,
            // which can lose the end of the output; the copies finish first here, as in
            // later containerd.
            io.cancel();
            io.wait();
        }
        let req = DeleteTaskRequest {
            container_id: self.target.container_id.clone(),
            ..Default::default()
        };
        let resp = self.target.tasks.delete(&self.target.ctx, &req)?;
        if let Some(io) = &mut self.io {
            close_io(io);
        }
        Ok(resp)
    }

    fn delete_exec(&mut self) -> CtlResult<DeleteResponse> {
        let state = self.target.state()?;
        let status = state.status.enum_value_or_default();
        if matches!(
            status,
            TaskStatus::RUNNING | TaskStatus::PAUSED | TaskStatus::PAUSING
        ) {
            return Err(CtlError::new(format!(
                "current process state: {}, process must be stopped before deletion: failed precondition",
                status_word(status)
            )));
        }
        let req = DeleteProcessRequest {
            container_id: self.target.container_id.clone(),
            exec_id: self.target.exec_id.clone(),
            ..Default::default()
        };
        let resp = self.target.tasks.delete_process(&self.target.ctx, &req)?;
        if let Some(io) = &mut self.io {
            io.cancel();
            io.wait();
            close_io(io);
        }
        Ok(resp)
    }

    /// Deletes a task that never ran (its start failed), skipping the client's state check,
    /// so that nothing of a failed `run` stays behind.
    pub fn discard(&mut self) {
        if let Some(io) = &mut self.io {
            io.cancel();
        }
        let req = DeleteTaskRequest {
            container_id: self.target.container_id.clone(),
            ..Default::default()
        };
        if let Err(s) = self.target.tasks.delete(&self.target.ctx, &req) {
            log::warn!(
                "deleting task {}: {}",
                self.target.container_id,
                status_message(&s)
            );
        }
        if let Some(io) = &mut self.io {
            io.wait();
            close_io(io);
        }
    }

    /// `--force`: kills every process with `SIGKILL` and waits for the exit before a delete
    /// (containerd's `WithProcessKill`).
    pub fn kill_for_delete(&self) -> CtlResult {
        let waiter = self.wait()?;
        match self.target.kill(nix::libc::SIGKILL as u32, true) {
            Ok(()) => {}
            Err(s) if s.code() == Code::FAILED_PRECONDITION => return Ok(()),
            Err(s) if s.code() != Code::NOT_FOUND => return Err(s.into()),
            Err(_) => {}
        }
        // The exit status does not matter: the process is being deleted.
        let _ = waiter.exit_status();
        Ok(())
    }
}

fn close_io(io: &mut Io) {
    if let Err(e) = io.close() {
        log::warn!("{e}");
    }
}

/// A process status as containerd's client spells it (`ProcessStatus`, lower case).
pub fn status_word(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::UNKNOWN => "unknown",
        TaskStatus::CREATED => "created",
        TaskStatus::RUNNING => "running",
        TaskStatus::STOPPED => "stopped",
        TaskStatus::PAUSED => "paused",
        TaskStatus::PAUSING => "pausing",
    }
}

/// The caller's terminal for `-t` (containerd/console's `Current`), raw until the guard is
/// dropped (ctr's `SetRaw` and deferred `Reset`), and reset by the signal thread should a
/// signal end corralctl first.
pub fn raw_console(signals: &Signals) -> CtlResult<RawGuard> {
    let console = Arc::new(Console::current()?);
    signals.restore_on_exit(Arc::clone(&console));
    Ok(console.raw()?)
}

/// How a new task's streams are connected (the arguments of ctr's `tasks.NewTask`).
#[derive(Debug, Clone, Copy)]
pub struct NewTaskOpts<'a> {
    /// `-t`: the caller's terminal (already raw).
    pub console: Option<&'a Arc<Console>>,
    /// `--null-io`.
    pub null_io: bool,
    /// `--log-uri`.
    pub log_uri: Option<&'a str>,
    /// `--fifo-dir` (`""`: the default).
    pub fifo_dir: &'a Path,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// The snapshot's mounts, when the caller has them; otherwise `Snapshots.Mounts` is
    /// asked, as containerd's client does.
    pub rootfs: Option<&'a [Mount]>,
}

/// The IO ctr's `NewTask` picks: the terminal, nothing, a log URI, or the caller's stdio.
fn new_io(id: &str, opts: &NewTaskOpts<'_>) -> CtlResult<Io> {
    if let Some(console) = opts.console {
        if opts.null_io {
            return Err(CtlError::new("tty and null-io cannot be used together"));
        }
        return Ok(Io::create(opts.fifo_dir, id, Streams::terminal(console)?)?);
    }
    if opts.null_io {
        return Ok(Io::null());
    }
    match opts.log_uri.filter(|u| !u.is_empty()) {
        Some(uri) => Ok(Io::log_uri(uri)?),
        None => Ok(Io::create(opts.fifo_dir, id, Streams::stdio()?)?),
    }
}

/// Creates the container's task (`tasks.NewTask` and the client's `NewTask`): its IO, the
/// snapshot's mounts as its root filesystem, `--no-pivot` as runc options, then `Create`.
pub fn new_task(
    conn: &Client,
    env: &Env,
    container: &Container,
    opts: &NewTaskOpts<'_>,
) -> CtlResult<Process> {
    let mut io = new_io(&container.id, opts)?;
    let created = create_task(conn, env, container, opts, io.config());
    let pid = match created {
        Ok(pid) => pid,
        Err(e) => {
            io.cancel();
            io.wait();
            close_io(&mut io);
            return Err(e);
        }
    };
    let target = ProcessRef::new(
        TasksClient::new(conn.clone()),
        env.ctx.clone(),
        &container.id,
        "",
    );
    Ok(Process::new(target, pid, Some(io)))
}

fn create_task(
    conn: &Client,
    env: &Env,
    container: &Container,
    opts: &NewTaskOpts<'_>,
    config: &Config,
) -> CtlResult<u32> {
    let mut req = CreateTaskRequest {
        container_id: container.id.clone(),
        terminal: config.terminal,
        stdin: config.stdin.clone(),
        stdout: config.stdout.clone(),
        stderr: config.stderr.clone(),
        ..Default::default()
    };
    if let Some(rootfs) = opts.rootfs {
        req.rootfs = rootfs.to_vec();
    } else if !container.snapshot_key.is_empty() {
        if container.snapshotter.is_empty() {
            return Err(CtlError::new(
                "unable to resolve rootfs mounts without snapshotter on container: invalid argument",
            ));
        }
        let mreq = MountsRequest {
            snapshotter: container.snapshotter.clone(),
            key: container.snapshot_key.clone(),
            ..Default::default()
        };
        req.rootfs = SnapshotsClient::new(conn.clone())
            .mounts(&env.ctx, &mreq)?
            .mounts;
    }
    if opts.no_pivot {
        let runtime = &container.runtime.name;
        if !RUNC_RUNTIMES.contains(&runtime.as_str()) {
            return Err(CtlError::new(format!(
                "--no-pivot is only supported for the {} runtimes, not {runtime:?}",
                RUNC_RUNTIMES.join(" and ")
            )));
        }
        let options = RuncOptions {
            no_pivot_root: true,
            ..Default::default()
        };
        req.options = MessageField::some(
            corral_protocols::pack(&options)
                .map_err(|e| CtlError::new(format!("encoding task options: {e}")))?,
        );
    }
    let resp = TasksClient::new(conn.clone()).create(&env.ctx, &req)?;
    Ok(resp.pid)
}

/// The running task of container `id` with its fifos attached to the caller's stdio
/// (`Container.Task` with `cio.NewAttach(cio.WithStdio)`); no IO for a task in an unknown
/// state, which has no fifos.
pub fn attach_task(conn: &Client, env: &Env, id: &str) -> CtlResult<Process> {
    let state = super::task_state(conn, env, id, "")?;
    let target = ProcessRef::new(TasksClient::new(conn.clone()), env.ctx.clone(), id, "");
    let io = if state.status.enum_value_or_default() == TaskStatus::UNKNOWN {
        None
    } else {
        let config = Config {
            terminal: state.terminal,
            stdin: state.stdin.clone(),
            stdout: state.stdout.clone(),
            stderr: state.stderr.clone(),
        };
        Some(Io::attach(config, Streams::stdio()?)?)
    };
    Ok(Process::new(target, state.pid, io))
}

/// The task of container `id` with its fifos loaded for removal, not copied
/// (`Container.Task` with `cio.Load`).
pub fn load_task(conn: &Client, env: &Env, id: &str) -> CtlResult<Process> {
    super::load_container(conn, env, id)?;
    let state = super::task_state(conn, env, id, "")?;
    let target = ProcessRef::new(TasksClient::new(conn.clone()), env.ctx.clone(), id, "");
    let io = (state.status.enum_value_or_default() != TaskStatus::UNKNOWN).then(|| {
        Io::load(Config {
            terminal: state.terminal,
            stdin: state.stdin.clone(),
            stdout: state.stdout.clone(),
            stderr: state.stderr.clone(),
        })
    });
    Ok(Process::new(target, state.pid, io))
}

/// Sends the terminal's size now and on every window change (ctr's
/// `HandleConsoleResize`); failures are logged, never fatal.
pub fn handle_console_resize(target: &ProcessRef, console: &Arc<Console>, signals: &Signals) {
    let size = match console.size() {
        Ok(s) => s,
        Err(e) => {
            log::error!("console resize: {e}");
            return;
        }
    };
    if let Err(s) = target.resize(u32::from(size.width), u32::from(size.height)) {
        log::error!("resize pty: {}", status_message(&s));
    }
    let (target, console) = (target.clone(), Arc::clone(console));
    signals.resize(Arc::new(move || match console.size() {
        Ok(size) => {
            if let Err(s) = target.resize(u32::from(size.width), u32::from(size.height)) {
                log::error!("resize pty: {}", status_message(&s));
            }
        }
        Err(e) => log::error!("get pty size: {e}"),
    }));
}

/// Sends the terminal's size before the process starts, so that it never sees the pty's
/// initial 0x0 (ctr resizes only after `Start`; that follows in [`follow`] too).
pub fn resize_before_start(target: &ProcessRef, console: Option<&Arc<Console>>) {
    let Some(size) = console.and_then(|c| c.size().ok()) else {
        return;
    };
    if let Err(s) = target.resize(u32::from(size.width), u32::from(size.height)) {
        log::debug!("resize pty before start: {}", status_message(&s));
    }
}

/// Sends every signal corralctl gets on to the process until it is gone (ctr's
/// `ForwardAllSignals`).
pub fn forward_all_signals(target: &ProcessRef, signals: &Signals) {
    let target = target.clone();
    signals.forward(Arc::new(move |signo| {
        let Ok(signal) = u32::try_from(signo) else {
            return Forwarded::Sent;
        };
        match target.kill(signal, false) {
            Ok(()) => Forwarded::Sent,
            Err(s) if s.code() == Code::NOT_FOUND => {
                log::debug!("not forwarding signal {signo}: {}", status_message(&s));
                Forwarded::Gone
            }
            Err(s) => {
                log::error!("forward signal {signo}: {}", status_message(&s));
                Forwarded::Sent
            }
        }
    }));
}

/// The foreground part of `run`, `start`, `exec` and `attach`: the terminal resized or the
/// signals forwarded until the process exits; its exit status.
pub fn follow(
    process: &Process,
    waiter: Waiter,
    signals: &Signals,
    console: Option<&Arc<Console>>,
) -> CtlResult<ExitStatus> {
    match console {
        Some(console) => handle_console_resize(process.target(), console, signals),
        None => forward_all_signals(process.target(), signals),
    }
    let status = waiter.exit_status();
    signals.stop();
    status
}

/// ctr's sequence after `NewTask` for `run` and `tasks start`: `Wait` (unless detached),
/// the pid file, `Start`, then either nothing more (`detach`) or the process followed to
/// its exit and deleted. The exit status is the process's.
pub fn run_task(
    task: &mut Process,
    signals: &Signals,
    console: Option<&Arc<Console>>,
    detach: bool,
    pid_file: Option<&str>,
) -> CtlResult<ExitStatus> {
    let waiter = if detach { None } else { Some(task.wait()) };
    let started = (|| {
        let waiter = waiter.transpose()?;
        if let Some(path) = pid_file {
            write_pid_file(path, task.pid())?;
        }
        resize_before_start(task.target(), console);
        if waiter.is_some() {
            // Signals that come while the task starts are forwarded once `follow` sets up
            // forwarding (ctr loses them, or dies of them).
            signals.hold();
        }
        task.start()?;
        Ok::<_, CtlError>(waiter)
    })();
    let waiter = match started {
        Ok(w) => w,
        Err(e) => {
            signals.stop();
            task.discard();
            return Err(e);
        }
    };
    let Some(waiter) = waiter else {
        return Ok(0);
    };
    let status = match follow(task, waiter, signals, console) {
        Ok(s) => s,
        Err(e) => {
            // As ctr's deferred delete: tried, its failure not reported.
            if let Err(d) = task.delete() {
                log::debug!("deleting the task: {d}");
            }
            return Err(e);
        }
    };
    task.delete_exited()?;
    Ok(status)
}
