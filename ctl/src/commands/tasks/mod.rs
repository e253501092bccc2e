//! `corralctl tasks` (`task`, `t`): ctr's task commands over containerd's Tasks service.
//!
//! One module per job: [`process`] is the client's view of a task or exec process and what
//! `run`, `start`, `exec` and `attach` share (creating the IO, waiting, forwarding signals);
//! [`signal`] reads signal names; [`output`] lays out the tables; [`exec`], [`kill`],
//! [`delete`] and [`checkpoint`] are the commands with more to them than one call.

pub mod checkpoint;
pub mod delete;
pub mod exec;
pub mod kill;
pub mod output;
pub mod process;
pub mod signal;

use std::io::Write as _;
use std::path::Path;

use clap::{Args, Subcommand};
use corral_protocols::rpc::{Client, Code, Status};
use corral_protocols::services::containers::v1::containers::{Container, GetContainerRequest};
use corral_protocols::services::containers::v1::containers_rpc::ContainersClient;
use corral_protocols::services::tasks::v1::tasks::{
    GetRequest, ListPidsRequest, ListTasksRequest, MetricsRequest, PauseTaskRequest,
    ResumeTaskRequest,
};
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;
use corral_protocols::types::mount::Mount;
use corral_protocols::types::task::task::Process as ProcessState;

use super::{status_message, CtlError, CtlResult, Env};
use crate::cio::console::RawGuard;
use crate::cio::signals::Signals;
use crate::cio::CioError;
use crate::spec::Spec;
use process::NewTaskOpts;

/// The status corralctl exits with: the process's exit status where ctr passes it on, 0
/// otherwise.
pub type ExitStatus = u32;

impl From<CioError> for CtlError {
    fn from(e: CioError) -> Self {
        CtlError::new(e.to_string())
    }
}

/// The subcommands of `tasks`, named, aliased and flagged as ctr's.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// attach to the IO of a running container
    #[command(override_usage = "corralctl tasks attach CONTAINER")]
    Attach {
        /// The container.
        #[arg(value_name = "CONTAINER")]
        id: Option<String>,
    },
    /// checkpoint a container
    Checkpoint(checkpoint::CheckpointCommand),
    /// delete one or more tasks
    #[command(visible_aliases = ["del", "remove", "rm"])]
    Delete(delete::DeleteCommand),
    /// execute additional processes in an existing container
    #[command(override_usage = "corralctl tasks exec [flags] CONTAINER CMD [ARG...]")]
    Exec(exec::ExecCommand),
    /// list tasks
    #[command(visible_alias = "ls")]
    List {
        /// print only the task id
        #[arg(short, long)]
        quiet: bool,
    },
    /// signal a container (default: SIGTERM)
    Kill(kill::KillCommand),
    /// pause an existing container
    Pause {
        /// The container.
        #[arg(value_name = "CONTAINER")]
        id: Option<String>,
    },
    /// list processes for container
    Ps {
        /// The container.
        #[arg(value_name = "CONTAINER")]
        id: Option<String>,
    },
    /// resume a paused container
    Resume {
        /// The container.
        #[arg(value_name = "CONTAINER")]
        id: Option<String>,
    },
    /// start a container that has been created
    Start(StartCommand),
    /// get a single data point of metrics for a task with the built-in Linux runtime
    #[command(visible_alias = "metric")]
    Metrics {
        /// "table" or "json"
        #[arg(long, default_value = "table")]
        format: String,
        /// The container.
        #[arg(value_name = "CONTAINER")]
        id: Option<String>,
    },
}

/// `tasks start`'s flags.
#[derive(Debug, Clone, Args)]
pub struct StartCommand {
    /// send all IO to /dev/null
    #[arg(long = "null-io")]
    pub null_io: bool,
    /// log uri
    #[arg(long = "log-uri", value_name = "URI")]
    pub log_uri: Option<String>,
    /// directory used for storing IO FIFOs
    #[arg(long = "fifo-dir", value_name = "DIR")]
    pub fifo_dir: Option<String>,
    /// file path to write the task's pid
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<String>,
    /// detach from the task after it has started execution
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// disable use of pivot-root (linux only)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: Option<String>,
}

/// Runs one `tasks` subcommand; the status corralctl exits with.
pub fn run(env: &Env, cmd: TasksCommand) -> CtlResult<ExitStatus> {
    match cmd {
        TasksCommand::Attach { id } => attach(env, &required_id(id)?),
        TasksCommand::Checkpoint(c) => checkpoint::run(env, &c).map(|()| 0),
        TasksCommand::Delete(d) => delete::run(env, &d),
        TasksCommand::Exec(e) => exec::run(env, &e),
        TasksCommand::List { quiet } => {
            let tasks = TasksClient::new(env.connect()?);
            let resp = tasks.list(&env.ctx, &ListTasksRequest::new())?;
            print!("{}", output::list(&resp.tasks, quiet));
            Ok(0)
        }
        TasksCommand::Kill(k) => kill::run(env, &k).map(|()| 0),
        TasksCommand::Pause { id } => {
            let (conn, _, task) = load_task(env, &required_id(id)?)?;
            let req = PauseTaskRequest {
                container_id: task.id.clone(),
                ..Default::default()
            };
            TasksClient::new(conn).pause(&env.ctx, &req)?;
            Ok(0)
        }
        TasksCommand::Resume { id } => {
            let (conn, _, task) = load_task(env, &required_id(id)?)?;
            let req = ResumeTaskRequest {
                container_id: task.id.clone(),
                ..Default::default()
            };
            TasksClient::new(conn).resume(&env.ctx, &req)?;
            Ok(0)
        }
        TasksCommand::Ps { id } => {
            let (conn, _, task) = load_task(env, &required_id(id)?)?;
            let req = ListPidsRequest {
                container_id: task.id.clone(),
                ..Default::default()
            };
            let resp = TasksClient::new(conn).list_pids(&env.ctx, &req)?;
            print!("{}", output::ps(&resp.processes)?);
            Ok(0)
        }
        TasksCommand::Start(s) => start(env, &s),
        TasksCommand::Metrics { format, id } => {
            metrics(env, &required_id(id)?, &format)?;
            Ok(0)
        }
    }
}

/// The container id ctr reads as the first argument.
fn required_id(id: Option<String>) -> CtlResult<String> {
    match id {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(CtlError::new("container id must be provided")),
    }
}

/// The container record (`client.LoadContainer` and its first `Info`).
pub fn load_container(conn: &Client, env: &Env, id: &str) -> CtlResult<Container> {
    let req = GetContainerRequest {
        id: id.to_string(),
        ..Default::default()
    };
    let resp = ContainersClient::new(conn.clone()).get(&env.ctx, &req)?;
    resp.container
        .into_option()
        .ok_or_else(|| CtlError::new(format!("container {id:?}: corrald sent no container")))
}

/// The container's OCI spec (`Container.Spec`).
pub fn container_spec(c: &Container) -> CtlResult<Spec> {
    let value = c
        .spec
        .as_ref()
        .map(|a| a.value.as_slice())
        .unwrap_or_default();
    if value.is_empty() {
        return Err(CtlError::new(format!(
            "container {:?} has no spec: invalid argument",
            c.id
        )));
    }
    Ok(Spec::from_json(value)?)
}

/// Whether the container's process has a terminal (`spec.Process.Terminal`).
fn spec_terminal(c: &Container) -> CtlResult<bool> {
    Ok(container_spec(c)?
        .oci()
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false))
}

/// The task's process as `Tasks.Get` reports it (`Container.Task`), `NotFound` in
/// containerd's words.
pub fn task_state(conn: &Client, env: &Env, id: &str, exec_id: &str) -> CtlResult<ProcessState> {
    let req = GetRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
        ..Default::default()
    };
    match TasksClient::new(conn.clone()).get(&env.ctx, &req) {
        Ok(resp) => Ok(resp.process.into_option().unwrap_or_default()),
        Err(s) if s.code() == Code::NOT_FOUND => {
            let what = if exec_id.is_empty() {
                "task"
            } else {
                "process"
            };
            Err(CtlError::new(format!(
                "no running {what} found: {}",
                not_found_message(&s)
            )))
        }
        Err(s) => Err(s.into()),
    }
}

/// A `NotFound` status as containerd's `errdefs.FromGRPC` words it: the server's message,
/// ending in `: not found`.
fn not_found_message(s: &Status) -> String {
    let msg = status_message(s);
    if msg.ends_with(": not found") {
        msg
    } else {
        format!("{msg}: not found")
    }
}

/// Connects, loads the container and its task.
fn load_task(env: &Env, id: &str) -> CtlResult<(Client, Container, ProcessState)> {
    let conn = env.connect()?;
    let container = load_container(&conn, env, id)?;
    let mut task = task_state(&conn, env, id, "")?;
    if task.id.is_empty() {
        task.id = id.to_string();
    }
    Ok((conn, container, task))
}

/// ctr's `commands.WritePidFile`: the pid written to `.<name>` beside `path`, synced, then
/// renamed over `path`.
pub fn write_pid_file(path: &str, pid: u32) -> CtlResult {
    use std::os::unix::fs::OpenOptionsExt;
    let abs = crate::spec::paths::abs(path)?;
    let abs = Path::new(&abs);
    let name = abs.file_name().map(|n| n.to_string_lossy().into_owned());
    let dir = abs.parent().unwrap_or(Path::new("/"));
    let temp = dir.join(format!(".{}", name.unwrap_or_default()));
    let fail = |p: &Path, e: std::io::Error| {
        CtlError::new(format!("open {}: {}", p.display(), super::io_reason(&e)))
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o666)
        .custom_flags(nix::libc::O_SYNC)
        .open(&temp)
        .map_err(|e| fail(&temp, e))?;
    let written = write!(f, "{pid}");
    drop(f);
    written.map_err(|e| fail(&temp, e))?;
    std::fs::rename(&temp, abs).map_err(|e| {
        CtlError::new(format!(
            "rename {} {}: {}",
            temp.display(),
            abs.display(),
            super::io_reason(&e)
        ))
    })
}

/// `tasks start`: the created container's task, run as ctr runs it.
fn start(env: &Env, cmd: &StartCommand) -> CtlResult<ExitStatus> {
    let id = required_id(cmd.id.clone())?;
    let signals = Signals::start()?;
    let conn = env.connect()?;
    let container = load_container(&conn, env, &id)?;
    let flags = StartFlags {
        terminal: spec_terminal(&container)?,
        null_io: cmd.null_io,
        log_uri: cmd.log_uri.as_deref(),
        fifo_dir: cmd.fifo_dir.as_deref(),
        no_pivot: cmd.no_pivot,
        detach: cmd.detach,
        pid_file: cmd.pid_file.as_deref(),
        rootfs: None,
    };
    start_new_task(&conn, env, &container, &signals, &flags)
}

/// How `run` and `tasks start` start a container's new task (ctr's task flags).
pub(crate) struct StartFlags<'a> {
    /// The task gets the caller's terminal, made raw while it runs (`run -t`, or a spec
    /// with `process.terminal` for `tasks start`).
    pub terminal: bool,
    /// `--null-io`.
    pub null_io: bool,
    /// `--log-uri`.
    pub log_uri: Option<&'a str>,
    /// `--fifo-dir`.
    pub fifo_dir: Option<&'a str>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// `--detach`.
    pub detach: bool,
    /// `--pid-file`.
    pub pid_file: Option<&'a str>,
    /// The mounts of the container's snapshot when the caller has them (it just prepared
    /// it); otherwise they are asked for.
    pub rootfs: Option<&'a [Mount]>,
}

/// Creates the container's task with its IO, starts it and, unless detached, follows it to
/// its exit with signals forwarded: ctr's `NewTask` then its `run`/`start` tail.
pub(crate) fn start_new_task(
    conn: &Client,
    env: &Env,
    container: &Container,
    signals: &Signals,
    flags: &StartFlags<'_>,
) -> CtlResult<ExitStatus> {
    let raw = if flags.terminal {
        Some(process::raw_console(signals)?)
    } else {
        None
    };
    let console = raw.as_ref().map(RawGuard::console);
    let opts = NewTaskOpts {
        console,
        null_io: flags.null_io,
        log_uri: flags.log_uri,
        fifo_dir: Path::new(flags.fifo_dir.unwrap_or_default()),
        no_pivot: flags.no_pivot,
        rootfs: flags.rootfs,
    };
    let mut task = process::new_task(conn, env, container, &opts)?;
    process::run_task(&mut task, signals, console, flags.detach, flags.pid_file)
}

/// `tasks attach`: the running task's fifos copied to and from this terminal until it
/// exits; then the task is deleted, as ctr does.
fn attach(env: &Env, id: &str) -> CtlResult<ExitStatus> {
    let signals = Signals::start()?;
    let conn = env.connect()?;
    let container = load_container(&conn, env, id)?;
    let raw = if spec_terminal(&container)? {
        Some(process::raw_console(&signals)?)
    } else {
        None
    };
    let console = raw.as_ref().map(RawGuard::console);
    let mut task = process::attach_task(&conn, env, id)?;
    let result = task
        .wait()
        .and_then(|waiter| process::follow(&task, waiter, &signals, console));
    if let Err(e) = task.delete() {
        log::debug!("deleting task {id}: {e}");
    }
    result
}

/// `tasks metrics`: one sample of the task's cgroup metrics, as a table or JSON.
fn metrics(env: &Env, id: &str, format: &str) -> CtlResult {
    let (conn, _, task) = load_task(env, id)?;
    let tasks = TasksClient::new(conn.clone());
    let req = MetricsRequest {
        filters: vec![format!("id=={}", task.id)],
        ..Default::default()
    };
    let resp = tasks.metrics(&env.ctx, &req)?;
    let Some(metric) = resp.metrics.into_iter().next() else {
        task_state(&conn, env, id, "")?;
        return Err(CtlError::new("no metrics received"));
    };
    let data = output::MetricsData::decode(&metric)?;
    match format {
        "table" => print!("{}", output::metrics_table(&metric, &data)),
        "json" => println!("{}", data.json()),
        _ => return Err(CtlError::new("format must be table or json")),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
