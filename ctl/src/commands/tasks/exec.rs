//! `tasks exec`: another process in a running container, its spec the container's process
//! with ctr's changes (arguments, terminal, `--cwd`, `--user`).

use std::path::Path;

use clap::Args;
use corral_protocols::rpc::Client;
use corral_protocols::services::containers::v1::containers::Container;
use corral_protocols::services::snapshots::v1::snapshots::MountsRequest;
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::services::tasks::v1::tasks::ExecProcessRequest;
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;

use super::process::{follow, raw_console, Process, ProcessRef};
use super::{container_spec, load_container, required_id, task_state, ExitStatus};
use crate::cio::console::RawGuard;
use crate::cio::signals::Signals;
use crate::cio::{Io, Streams, WinSize};
use crate::commands::{CtlError, CtlResult, Env};
use crate::image::mount::{try_readonly, TempMount};
use crate::spec::user::UserRoot;
use crate::spec::Spec;

/// The type URL containerd gives an OCI process spec (`specs.Process` in `typeurl`).
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// `tasks exec`'s flags and arguments.
#[derive(Debug, Clone, Args)]
pub struct ExecCommand {
    /// working directory of the new process
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// allocate a TTY for the container
    #[arg(short = 't', long)]
    pub tty: bool,
    /// detach from the task after it has started execution
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// exec specific id for the process
    #[arg(long = "exec-id", value_name = "ID", required = true)]
    pub exec_id: String,
    /// directory used for storing IO FIFOs
    #[arg(long = "fifo-dir", value_name = "DIR")]
    pub fifo_dir: Option<String>,
    /// log uri for custom shim logging
    #[arg(long = "log-uri", value_name = "URI")]
    pub log_uri: Option<String>,
    /// user id or name
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: Option<String>,
    /// The command and its arguments.
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// Runs the exec as ctr does: spec, IO, `Exec`, `Wait`, `Start`, then (unless detached)
/// the process followed to its exit and deleted; its exit status.
pub fn run(env: &Env, cmd: &ExecCommand) -> CtlResult<ExitStatus> {
    let id = required_id(cmd.id.clone())?;
    let signals = Signals::start()?;
    let conn = env.connect()?;
    let container = load_container(&conn, env, &id)?;
    let mut spec = container_spec(&container)?;
    if let Some(user) = cmd.user.as_deref().filter(|u| !u.is_empty()) {
        with_user(&conn, env, &container, &mut spec, user)?;
    }
    task_state(&conn, env, &id, "")?;

    let fifo_dir = cmd.fifo_dir.clone().unwrap_or_default();
    let log_uri = cmd.log_uri.clone().unwrap_or_default();
    let raw = match (cmd.tty, log_uri.is_empty(), fifo_dir.is_empty()) {
        (true, false, _) => return Err(CtlError::new("can't use log-uri with tty")),
        (_, false, false) => return Err(CtlError::new("can't use log-uri with fifo-dir")),
        (true, ..) => Some(raw_console(&signals)?),
        _ => None,
    };
    let console = raw.as_ref().map(RawGuard::console);
    let size = console.and_then(|c| c.size().ok());
    let spec = exec_process(&mut spec, &cmd.args, cmd.tty, cmd.cwd.as_deref(), size)?;
    let mut io = match console {
        Some(c) => Io::create(Path::new(&fifo_dir), &cmd.exec_id, Streams::terminal(c)?)?,
        None if !log_uri.is_empty() => Io::log_uri(&log_uri)?,
        None => Io::create(Path::new(&fifo_dir), &cmd.exec_id, Streams::stdio()?)?,
    };
    let target = ProcessRef::new(
        TasksClient::new(conn.clone()),
        env.ctx.clone(),
        &id,
        &cmd.exec_id,
    );
    let config = io.config().clone();
    let req = ExecProcessRequest {
        container_id: id.clone(),
        exec_id: cmd.exec_id.clone(),
        terminal: config.terminal,
        stdin: config.stdin,
        stdout: config.stdout,
        stderr: config.stderr,
        spec: MessageField::some(Any {
            type_url: PROCESS_TYPE_URL.to_string(),
            value: spec,
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Err(s) = TasksClient::new(conn.clone()).exec(&env.ctx, &req) {
        io.cancel();
        io.wait();
        if let Err(e) = io.close() {
            log::warn!("{e}");
        }
        return Err(s.into());
    }
    let mut process = Process::new(target, 0, Some(io));
    let result = (|| {
        let waiter = process.wait()?;
        process.start()?;
        if cmd.detach {
            return Ok(None);
        }
        follow(&process, waiter, &signals, console).map(Some)
    })();
    match result {
        Ok(None) => Ok(0),
        Ok(Some(status)) => {
            // ctr's deferred delete: tried, its failure not reported.
            if let Err(e) = process.delete() {
                log::debug!("deleting exec {}: {e}", cmd.exec_id);
            }
            Ok(status)
        }
        Err(e) => {
            if !cmd.detach {
                if let Err(d) = process.delete() {
                    log::debug!("deleting exec {}: {d}", cmd.exec_id);
                }
            }
            Err(e)
        }
    }
}

/// The exec's process spec as ctr builds it from the container's (whose `--user` was
/// applied already): the terminal flag, the arguments, `--cwd`; as JSON. With a terminal
/// its size is set too (`consoleSize`, which runc gives the new pty), so the process never
/// sees the pty's initial 0x0 (ctr only resizes once the exec has started).
pub fn exec_process(
    spec: &mut Spec,
    args: &[String],
    tty: bool,
    cwd: Option<&str>,
    size: Option<WinSize>,
) -> CtlResult<Vec<u8>> {
    let process = spec.process();
    process.set_terminal(Some(tty));
    if let Some(size) = size.filter(|_| tty) {
        let console = oci_spec::runtime::BoxBuilder::default()
            .height(u64::from(size.height))
            .width(u64::from(size.width))
            .build()
            .map_err(|e| CtlError::new(format!("console size: {e}")))?;
        process.set_console_size(Some(console));
    }
    process.set_args((!args.is_empty()).then(|| args.to_vec()));
    if let Some(cwd) = cwd.filter(|c| !c.is_empty()) {
        process.set_cwd(cwd.into());
    }
    let json = spec.to_json()?;
    let process = json
        .get("process")
        .cloned()
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    serde_json::to_vec(&process).map_err(|e| CtlError::new(format!("encoding the process: {e}")))
}

/// containerd's `oci.WithUser` for a container: names resolved in its root directory, or
/// in its snapshot mounted read-only for the duration.
fn with_user(
    conn: &Client,
    env: &Env,
    container: &Container,
    spec: &mut Spec,
    user: &str,
) -> CtlResult {
    if container.snapshotter.is_empty() && container.snapshot_key.is_empty() {
        let root = spec
            .oci()
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        spec.with_user(user, UserRoot::Dir(&root))?;
        return Ok(());
    }
    if container.snapshotter.is_empty() {
        return Err(CtlError::new("no snapshotter set for container"));
    }
    if container.snapshot_key.is_empty() {
        return Err(CtlError::new("rootfs snapshot not created for container"));
    }
    let req = MountsRequest {
        snapshotter: container.snapshotter.clone(),
        key: container.snapshot_key.clone(),
        ..Default::default()
    };
    let mut mounts = SnapshotsClient::new(conn.clone())
        .mounts(&env.ctx, &req)?
        .mounts;
    try_readonly(&mut mounts);
    let temp = TempMount::new(&mounts).map_err(|e| CtlError::new(e.to_string()))?;
    let result = spec.with_user(user, UserRoot::TempMount(temp.path()));
    temp.release().map_err(|e| CtlError::new(e.to_string()))?;
    Ok(result?)
}
