//! `tasks delete` (`del`, `remove`, `rm`): stopped tasks deleted with their fifos, or one
//! exec process; prints nothing.

use clap::Args;
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;

use super::process::{load_task, Process, ProcessRef};
use super::{task_state, ExitStatus};
use crate::commands::{CtlError, CtlResult, Env};

/// `tasks delete`'s flags.
#[derive(Debug, Clone, Args)]
#[command(override_usage = "corralctl tasks delete [flags] CONTAINER [CONTAINER, ...]")]
pub struct DeleteCommand {
    /// force delete task process
    #[arg(short = 'f', long)]
    pub force: bool,
    /// process ID to kill
    #[arg(long = "exec-id", value_name = "ID")]
    pub exec_id: Option<String>,
    /// The containers whose tasks to delete.
    #[arg(value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// Deletes as ctr does: with `--exec-id` the process of the first container, ending with
/// its exit status; else every container's task, the first failure reported after all were
/// tried, a non-zero exit status only warned about.
pub fn run(env: &Env, cmd: &DeleteCommand) -> CtlResult<ExitStatus> {
    let conn = env.connect()?;
    if let Some(exec_id) = cmd.exec_id.as_deref().filter(|e| !e.is_empty()) {
        let id = cmd.ids.first().cloned().unwrap_or_default();
        load_task(&conn, env, &id)?;
        task_state(&conn, env, &id, exec_id)?;
        let target = ProcessRef::new(
            TasksClient::new(conn.clone()),
            env.ctx.clone(),
            &id,
            exec_id,
        );
        let mut process = Process::new(target, 0, None);
        if cmd.force {
            process.kill_for_delete()?;
        }
        let resp = process.delete()?;
        return Ok(resp.exit_status);
    }
    let mut first: Option<CtlError> = None;
    for id in &cmd.ids {
        let mut task = match load_task(&conn, env, id) {
            Ok(t) => t,
            Err(e) => {
                log::error!("failed to load task from {id}: {e}");
                first.get_or_insert(e);
                continue;
            }
        };
        let deleted = if cmd.force {
            task.kill_for_delete().and_then(|()| task.delete())
        } else {
            task.delete()
        };
        match deleted {
            Ok(resp) if resp.exit_status != 0 => {
                log::warn!(
                    "task {id} exit with non-zero exit code {}",
                    resp.exit_status
                );
            }
            Ok(_) => {}
            Err(e) => {
                log::error!("unable to delete {id}: {e}");
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(0), Err)
}
