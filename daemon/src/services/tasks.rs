//! containerd's `Tasks` service (`services/tasks/local.go`) over the runtime's task list:
//! every call finds the container record, then its task, and asks the task's shim.
//! Namespaced. A container without a task is `NotFound` ("task ID not found"), a task that
//! is still running cannot be deleted (the shim's `FailedPrecondition`).

use std::sync::Arc;

use corral_protocols::rpc::{Code, RequestContext, RpcResult, ServiceSet, Status};
use corral_protocols::runtime::v2::runc::options::oci::CheckpointOptions;
use corral_protocols::runtime::v2::task::shim as shimpb;
use corral_protocols::services::tasks::v1::tasks::*;
use corral_protocols::services::tasks::v1::tasks_rpc::{register_tasks, Tasks};
use corral_protocols::types::metrics::Metric;
use corral_protocols::types::mount::Mount as MountPb;
use corral_protocols::types::task::task::{Process, ProcessInfo};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{Message, MessageField};

use super::{namespace, Context};
use crate::filter::{Adaptor, Filter};
use crate::metadata::container::{self as store, AnyValue, Container};
use crate::runtime::manager::{CreateOpts, DEAD_SHIM_WAIT};
use crate::runtime::shim::{is_closed, Shim};
use crate::runtime::TaskManager;
use crate::snapshot::namespaced::NamespacedSnapshotter;

struct Service {
    ctx: Arc<Context>,
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    register_tasks(
        set,
        Arc::new(Service {
            ctx: Arc::clone(ctx),
        }),
    );
}

fn any_of(a: &AnyValue) -> Any {
    Any {
        type_url: a.type_url.clone(),
        value: a.value.clone(),
        ..Default::default()
    }
}

fn task_not_found(id: &str) -> Status {
    Status::not_found(format!("task {id} not found"))
}

impl Service {
    fn tasks(&self) -> &TaskManager {
        &self.ctx.tasks
    }

    fn container(&self, ns: &str, id: &str) -> RpcResult<Container> {
        Ok(self.ctx.store.view(|tx| store::get(tx, ns, id))?)
    }

    /// The container's task (containerd's `getTask`).
    fn task(&self, ctx: &RequestContext, id: &str) -> RpcResult<Arc<Shim>> {
        let ns = namespace(ctx)?;
        self.container(&ns, id)?;
        self.tasks().get(&ns, id).ok_or_else(|| task_not_found(id))
    }

    /// The mounts of the container's snapshot, for a client that sent none.
    fn snapshot_mounts(&self, ns: &str, c: &Container) -> RpcResult<Vec<MountPb>> {
        if c.snapshot_key.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.ctx.snapshotter(&c.snapshotter)?;
        let sn = NamespacedSnapshotter::new(
            self.ctx.store.clone(),
            Arc::clone(backend),
            Arc::clone(&self.ctx.snapshot_lock),
        );
        let mounts = sn.mounts(ns, &c.snapshot_key)?;
        Ok(super::snapshots::mounts_to_pb(&mounts))
    }
}

/// The shim's process state as the Tasks service reports it (containerd's
/// `getProcessState`).
fn process_of(id: &str, s: shimpb::StateResponse) -> Process {
    Process {
        id: id.to_string(),
        pid: s.pid,
        status: s.status,
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
        terminal: s.terminal,
        exit_status: s.exit_status,
        exited_at: s.exited_at,
        ..Default::default()
    }
}

struct TaskFields<'a>(&'a Shim);

impl Adaptor for TaskFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        match path.first().copied()? {
            "id" => Some(self.0.id().to_string()),
            "namespace" => Some(self.0.namespace().to_string()),
            "runtime" => Some(self.0.runtime.clone()),
            _ => None,
        }
    }
}

impl Tasks for Service {
    fn create(
        &self,
        ctx: &RequestContext,
        req: CreateTaskRequest,
    ) -> RpcResult<CreateTaskResponse> {
        let ns = namespace(ctx)?;
        let c = self.container(&ns, &req.container_id)?;
        if req.checkpoint.is_some() {
            return Err(Status::unimplemented(
                "restoring a task from a checkpoint image is not supported yet",
            ));
        }
        let spec = c.spec.as_ref().map(|s| s.value.clone()).ok_or_else(|| {
            Status::invalid_argument(format!(
                "container {:?} has no spec: invalid argument",
                c.id
            ))
        })?;
        let mut rootfs = req.rootfs.clone();
        if rootfs.is_empty() {
            // containerd's clients send the snapshot's mounts; a client that sends none gets
            // them looked up rather than an empty root.
            rootfs = self.snapshot_mounts(&ns, &c)?;
        }
        let opts = CreateOpts {
            spec,
            runtime: if req.runtime_path.is_empty() {
                c.runtime.name.clone()
            } else {
                req.runtime_path.clone()
            },
            runtime_options: c.runtime.options.as_ref().map(any_of),
            task_options: req.options.clone().into_option(),
            rootfs,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
            checkpoint: String::new(),
        };
        let (_, pid) = self.tasks().create(&ns, &req.container_id, opts)?;
        Ok(CreateTaskResponse {
            container_id: req.container_id,
            pid,
            ..Default::default()
        })
    }

    fn start(&self, ctx: &RequestContext, req: StartRequest) -> RpcResult<StartResponse> {
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::StartRequest {
            id: t.id().to_string(),
            exec_id: req.exec_id,
            ..Default::default()
        };
        let resp = t.task().start(&t.ctx(None), &r)?;
        Ok(StartResponse {
            pid: resp.pid,
            ..Default::default()
        })
    }

    fn delete(&self, ctx: &RequestContext, req: DeleteTaskRequest) -> RpcResult<DeleteResponse> {
        let ns = namespace(ctx)?;
        self.container(&ns, &req.container_id)?;
        if self.tasks().get(&ns, &req.container_id).is_none() {
            return Err(task_not_found(&req.container_id));
        }
        let exit = self.tasks().delete(&ns, &req.container_id)?;
        Ok(DeleteResponse {
            pid: exit.pid,
            exit_status: exit.status,
            exited_at: MessageField::some(exit.exited_at),
            ..Default::default()
        })
    }

    fn delete_process(
        &self,
        ctx: &RequestContext,
        req: DeleteProcessRequest,
    ) -> RpcResult<DeleteResponse> {
        let t = self.task(ctx, &req.container_id)?;
        if req.exec_id.is_empty() {
            return Err(Status::invalid_argument(
                "exec id cannot be empty: invalid argument",
            ));
        }
        let r = shimpb::DeleteRequest {
            id: t.id().to_string(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        let resp = t.task().delete(&t.ctx(None), &r)?;
        Ok(DeleteResponse {
            id: req.exec_id,
            pid: resp.pid,
            exit_status: resp.exit_status,
            exited_at: resp.exited_at,
            ..Default::default()
        })
    }

    fn get(&self, ctx: &RequestContext, req: GetRequest) -> RpcResult<GetResponse> {
        let t = self.task(ctx, &req.container_id)?;
        let state = t.state(&req.exec_id)?;
        let id = if req.exec_id.is_empty() {
            t.id().to_string()
        } else {
            req.exec_id
        };
        Ok(GetResponse {
            process: MessageField::some(process_of(&id, state)),
            ..Default::default()
        })
    }

    fn list(&self, ctx: &RequestContext, _req: ListTasksRequest) -> RpcResult<ListTasksResponse> {
        let ns = namespace(ctx)?;
        let mut resp = ListTasksResponse::new();
        for t in self.tasks().list(Some(&ns)) {
            match t.state("") {
                Ok(s) => resp.tasks.push(process_of(t.id(), s)),
                Err(s) if s.code() == Code::NOT_FOUND => {}
                Err(s) => {
                    // containerd lists the task with what it knows (status unknown).
                    log::error!("get state for {}: {s}", t.id());
                    resp.tasks
                        .push(process_of(t.id(), shimpb::StateResponse::new()));
                }
            }
        }
        Ok(resp)
    }

    fn kill(&self, ctx: &RequestContext, req: KillRequest) -> RpcResult<Empty> {
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::KillRequest {
            id: t.id().to_string(),
            exec_id: req.exec_id,
            signal: req.signal,
            all: req.all,
            ..Default::default()
        };
        t.task().kill(&t.ctx(None), &r)
    }

    fn exec(&self, ctx: &RequestContext, req: ExecProcessRequest) -> RpcResult<Empty> {
        if req.exec_id.is_empty() {
            return Err(Status::invalid_argument(
                "exec id cannot be empty: invalid argument",
            ));
        }
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::ExecProcessRequest {
            id: t.id().to_string(),
            exec_id: req.exec_id,
            terminal: req.terminal,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            spec: req.spec,
            ..Default::default()
        };
        t.task().exec(&t.ctx(None), &r)
    }

    fn resize_pty(&self, ctx: &RequestContext, req: ResizePtyRequest) -> RpcResult<Empty> {
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::ResizePtyRequest {
            id: t.id().to_string(),
            exec_id: req.exec_id,
            width: req.width,
            height: req.height,
            ..Default::default()
        };
        t.task().resize_pty(&t.ctx(None), &r)
    }

    fn close_io(&self, ctx: &RequestContext, req: CloseIORequest) -> RpcResult<Empty> {
        let t = self.task(ctx, &req.container_id)?;
        if !req.stdin {
            return Ok(Empty::new());
        }
        let r = shimpb::CloseIORequest {
            id: t.id().to_string(),
            exec_id: req.exec_id,
            stdin: true,
            ..Default::default()
        };
        t.task().close_io(&t.ctx(None), &r)
    }

    fn pause(&self, ctx: &RequestContext, req: PauseTaskRequest) -> RpcResult<Empty> {
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::PauseRequest {
            id: t.id().to_string(),
            ..Default::default()
        };
        t.task().pause(&t.ctx(None), &r)
    }

    fn resume(&self, ctx: &RequestContext, req: ResumeTaskRequest) -> RpcResult<Empty> {
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::ResumeRequest {
            id: t.id().to_string(),
            ..Default::default()
        };
        t.task().resume(&t.ctx(None), &r)
    }

    fn list_pids(&self, ctx: &RequestContext, req: ListPidsRequest) -> RpcResult<ListPidsResponse> {
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::PidsRequest {
            id: t.id().to_string(),
            ..Default::default()
        };
        let resp = t.task().pids(&t.ctx(None), &r)?;
        Ok(ListPidsResponse {
            processes: resp
                .processes
                .into_iter()
                .map(|p| ProcessInfo {
                    pid: p.pid,
                    info: p.info,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn checkpoint(
        &self,
        ctx: &RequestContext,
        req: CheckpointTaskRequest,
    ) -> RpcResult<CheckpointTaskResponse> {
        let t = self.task(ctx, &req.container_id)?;
        // Only a checkpoint into a directory the caller names (runc's `ImagePath`) for now.
        let image_path = req
            .options
            .as_ref()
            .filter(|a| a.type_url.ends_with("containerd.runc.v1.CheckpointOptions"))
            .and_then(|a| CheckpointOptions::parse_from_bytes(&a.value).ok())
            .map(|o| o.image_path)
            .unwrap_or_default();
        if image_path.is_empty() {
            return Err(Status::unimplemented(
                "checkpoint into the content store is not supported yet; give an image path",
            ));
        }
        let r = shimpb::CheckpointTaskRequest {
            id: t.id().to_string(),
            path: image_path,
            options: req.options,
            ..Default::default()
        };
        t.task().checkpoint(&t.ctx(None), &r)?;
        Ok(CheckpointTaskResponse::new())
    }

    fn update(&self, ctx: &RequestContext, req: UpdateTaskRequest) -> RpcResult<Empty> {
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::UpdateTaskRequest {
            id: t.id().to_string(),
            resources: req.resources,
            annotations: req.annotations,
            ..Default::default()
        };
        t.task().update(&t.ctx(None), &r)
    }

    fn metrics(&self, ctx: &RequestContext, req: MetricsRequest) -> RpcResult<MetricsResponse> {
        let ns = namespace(ctx)?;
        let filter = Filter::parse_all(&req.filters)
            .map_err(|e| Status::invalid_argument(format!("{e}: invalid argument")))?;
        let mut resp = MetricsResponse::new();
        for t in self.tasks().list(Some(&ns)) {
            if !req.filters.is_empty() && !filter.matches(&TaskFields(&t)) {
                continue;
            }
            let collected = Timestamp::now();
            let r = shimpb::StatsRequest {
                id: t.id().to_string(),
                ..Default::default()
            };
            match t.task().stats(&t.ctx(None), &r) {
                Ok(s) => resp.metrics.push(Metric {
                    timestamp: MessageField::some(collected),
                    id: t.id().to_string(),
                    data: s.stats,
                    ..Default::default()
                }),
                Err(s) if s.code() == Code::NOT_FOUND => {}
                Err(s) => log::error!("collecting metrics for {}: {s}", t.id()),
            }
        }
        Ok(resp)
    }

    fn wait(&self, ctx: &RequestContext, req: WaitRequest) -> RpcResult<WaitResponse> {
        let t = self.task(ctx, &req.container_id)?;
        let r = shimpb::WaitRequest {
            id: t.id().to_string(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        match t.task().wait(&t.ctx(None), &r) {
            Ok(resp) => Ok(WaitResponse {
                exit_status: resp.exit_status,
                exited_at: resp.exited_at,
                ..Default::default()
            }),
            // The shim died under the wait: answer with what its cleanup found, as the
            // task's exit event says.
            Err(s) if is_closed(&s) && req.exec_id.is_empty() => {
                match t.ending.wait(DEAD_SHIM_WAIT) {
                    Some(exit) => Ok(WaitResponse {
                        exit_status: exit.status,
                        exited_at: MessageField::some(exit.exited_at),
                        ..Default::default()
                    }),
                    None => Err(s),
                }
            }
            Err(s) => Err(s),
        }
    }
}
