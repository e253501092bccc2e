//! `tasks kill`: a signal to a task, one of its execs, or every process of it.

use clap::Args;
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;

use super::process::ProcessRef;
use super::signal::{parse_signal, stop_signal};
use super::{load_container, required_id, task_state};
use crate::commands::{CtlError, CtlResult, Env};

/// The signal without `--signal` or a stop-signal label (ctr's `defaultSignal`).
pub const DEFAULT_SIGNAL: u32 = nix::libc::SIGTERM as u32;

/// `tasks kill`'s flags.
#[derive(Debug, Clone, Args)]
#[command(override_usage = "corralctl tasks kill [flags] CONTAINER")]
pub struct KillCommand {
    /// signal to send to the container
    #[arg(short = 's', long, value_name = "SIGNAL")]
    pub signal: Option<String>,
    /// process ID to kill
    #[arg(long = "exec-id", value_name = "ID")]
    pub exec_id: Option<String>,
    /// send signal to all processes inside the container (`-a` after `kill`, as in ctr;
    /// the global address is then `--address`)
    #[arg(long)]
    pub all: bool,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: Option<String>,
}

/// Sends the signal, checked and chosen in ctr's order.
pub fn run(env: &Env, cmd: &KillCommand) -> CtlResult {
    let id = required_id(cmd.id.clone())?;
    let exec_id = cmd.exec_id.clone().unwrap_or_default();
    if cmd.all && !exec_id.is_empty() {
        return Err(CtlError::new("specify an exec-id or all; not both"));
    }
    let conn = env.connect()?;
    let container = load_container(&conn, env, &id)?;
    let signal = match cmd.signal.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => parse_signal(s)?,
        None => stop_signal(&container, DEFAULT_SIGNAL)?,
    };
    task_state(&conn, env, &id, "")?;
    let target = ProcessRef::new(TasksClient::new(conn), env.ctx.clone(), &id, &exec_id);
    target.kill(signal, cmd.all)?;
    Ok(())
}
