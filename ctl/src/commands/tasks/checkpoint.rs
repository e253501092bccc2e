//! `tasks checkpoint`: the task dumped by the runtime (CRIU through runc), paused for the
//! duration as containerd's client pauses it. Corral writes a checkpoint only into the
//! directory `--image-path` names; a checkpoint image in the content store is not made
//! yet, and corrald says so.

use clap::Args;
use corral_protocols::rpc::Code;
use corral_protocols::runtime::v2::runc::options::oci::CheckpointOptions;
use corral_protocols::services::tasks::v1::tasks::{
    CheckpointTaskRequest, PauseTaskRequest, ResumeTaskRequest,
};
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;
use corral_protocols::types::task::task::Status as TaskStatus;
use protobuf::MessageField;

use super::{load_container, required_id, task_state};
use crate::commands::container_flags::RUNC_RUNTIMES;
use crate::commands::{status_message, CtlError, CtlResult, Env};

/// `tasks checkpoint`'s flags.
#[derive(Debug, Clone, Args)]
#[command(override_usage = "corralctl tasks checkpoint [flags] CONTAINER")]
pub struct CheckpointCommand {
    /// stop the container after the checkpoint
    #[arg(long)]
    pub exit: bool,
    /// path to criu image files
    #[arg(long = "image-path", value_name = "DIR")]
    pub image_path: Option<String>,
    /// path to criu work files and logs
    #[arg(long = "work-path", value_name = "DIR")]
    pub work_path: Option<String>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: Option<String>,
}

/// Checkpoints as ctr does: runc's checkpoint options for runc runtimes, the task paused
/// around the dump unless it was already, and (for a checkpoint image) its name printed.
pub fn run(env: &Env, cmd: &CheckpointCommand) -> CtlResult {
    let id = required_id(cmd.id.clone())?;
    let conn = env.connect()?;
    let container = load_container(&conn, env, &id)?;
    let state = task_state(&conn, env, &id, "")?;
    let image_path = cmd.image_path.clone().unwrap_or_default();
    let mut req = CheckpointTaskRequest {
        container_id: id.clone(),
        ..Default::default()
    };
    if RUNC_RUNTIMES.contains(&container.runtime.name.as_str()) {
        let opts = CheckpointOptions {
            exit: cmd.exit,
            image_path: image_path.clone(),
            work_path: cmd.work_path.clone().unwrap_or_default(),
            ..Default::default()
        };
        req.options = MessageField::some(
            corral_protocols::pack(&opts)
                .map_err(|e| CtlError::new(format!("encoding checkpoint options: {e}")))?,
        );
    }
    let tasks = TasksClient::new(conn);
    let paused = state.status.enum_value_or_default() == TaskStatus::PAUSED;
    if !paused {
        let pause = PauseTaskRequest {
            container_id: id.clone(),
            ..Default::default()
        };
        tasks.pause(&env.ctx, &pause)?;
    }
    let result = tasks.checkpoint(&env.ctx, &req);
    if !paused {
        let resume = ResumeTaskRequest {
            container_id: id.clone(),
            ..Default::default()
        };
        // The task may be gone after `--exit`; containerd ignores this answer too.
        if let Err(s) = tasks.resume(&env.ctx, &resume) {
            log::debug!("resuming {id}: {}", status_message(&s));
        }
    }
    let resp = match result {
        Ok(r) => r,
        Err(s) if s.code() == Code::UNIMPLEMENTED => {
            return Err(CtlError::new(format!(
                "checkpoint {id}: not supported by corrald: {}",
                status_message(&s)
            )))
        }
        Err(s) => return Err(s.into()),
    };
    if image_path.is_empty() {
        // A checkpoint image would be written to the content store and named here.
        return Err(CtlError::new(format!(
            "checkpoint {id}: corrald returned {} descriptors, but checkpoint images are not supported yet; use --image-path",
            resp.descriptors.len()
        )));
    }
    Ok(())
}
