//! `containerd.task.v2.Task`: the shim's service, over the containers it runs.
//!
//! Lifecycle steps that start a process (Create, Start) and the handling of exits share one
//! lock, so a process's start event always goes out before its exit event, and an exit that
//! arrives before its pid is known is kept until the pid is.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use corral_protocols::events::task::{
    TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO,
    TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use corral_protocols::rpc::{RequestContext, RpcResult, Status};
use corral_protocols::runtime::v2::runc::options::oci::{CheckpointOptions, ProcessDetails};
use corral_protocols::runtime::v2::task::shim::*;
use corral_protocols::runtime::v2::task::shim_rpc::Task;
use protobuf::well_known_types::empty::Empty;
use protobuf::{Message, MessageField};

use crate::container::Container;
use crate::events::{pack, timestamp, Publisher};
use crate::io::{IoOptions, ProcessIo, StdioSpec};
use crate::mount::{self, Mount};
use crate::options::RuncOptions;
use crate::process::{check, ExitInfo, Op, Process, State};
use crate::reaper::Exit;
use crate::runc::{self, Runc, RuncError};
use crate::runner::Runner;

/// Exits of pids not known (yet) kept for matching; older ones are dropped.
const UNMATCHED_EXITS: usize = 1024;
/// How long an unmatched exit is kept.
const UNMATCHED_AGE: Duration = Duration::from_secs(60);

/// Identifiers containerd accepts (InvalidArgument with containerd's message otherwise).
pub fn validate_id(kind: &str, id: &str) -> RpcResult<()> {
    corral_protocols::identifiers::validate_identifier(kind, id).map_err(Status::from)
}

fn runc_status(e: RuncError) -> Status {
    Status::new(e.code(), e.to_string())
}

/// What the shim knows beyond its containers.
pub struct Config {
    pub namespace: String,
    /// The daemon's socket (`-address`): runc state lives beside it.
    pub address: String,
    pub debug: bool,
}

struct Lifecycle {
    unmatched: VecDeque<Exit>,
}

/// Exits waiting for the exit worker, which runs only while there are some.
#[derive(Default)]
struct ExitQueue {
    exits: VecDeque<Exit>,
    worker: bool,
}

/// Shared with the reaper thread, which drains it when its descriptor is readable.
pub type SharedOom = Arc<Mutex<crate::cgroup::OomWatcher>>;

/// The Task service.
pub struct TaskService {
    config: Config,
    oom: Option<SharedOom>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    lifecycle: Mutex<Lifecycle>,
    exit_queue: Mutex<ExitQueue>,
    publisher: Publisher,
    runner: Arc<dyn Runner>,
    on_shutdown: Box<dyn Fn() + Send + Sync>,
}

impl TaskService {
    pub fn new(
        config: Config,
        oom: Option<SharedOom>,
        publisher: Publisher,
        runner: Arc<dyn Runner>,
        on_shutdown: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            oom,
            containers: Mutex::new(HashMap::new()),
            lifecycle: Mutex::new(Lifecycle {
                unmatched: VecDeque::new(),
            }),
            exit_queue: Mutex::default(),
            publisher,
            runner,
            on_shutdown,
        })
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lifecycle(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn container(&self, id: &str) -> RpcResult<Arc<Container>> {
        self.containers()
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("container {id:?}: not found")))
    }

    fn process(&self, id: &str, exec_id: &str) -> RpcResult<(Arc<Container>, Arc<Process>)> {
        let c = self.container(id)?;
        let p = c.process(exec_id).ok_or_else(|| {
            Status::not_found(format!(
                "process {exec_id:?} of container {id:?}: not found"
            ))
        })?;
        Ok((c, p))
    }

    /// Whether any container is left (the shim stays while one is).
    pub fn is_empty(&self) -> bool {
        self.containers().is_empty()
    }

    /// Takes an exit from the reaper (on its thread, so this never blocks): queues it and
    /// makes sure a worker handles the queue. The worker is a thread of its own, so that the
    /// reaper never waits for a lifecycle step (which may itself wait for the reaper), and it
    /// exits when the queue is empty, so an idle shim keeps no thread for exits.
    pub fn queue_exit(self: &Arc<Self>, exit: Exit) {
        let mut q = self.exit_queue.lock().unwrap_or_else(|p| p.into_inner());
        q.exits.push_back(exit);
        if q.worker {
            return;
        }
        q.worker = true;
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("exits".into())
            .stack_size(128 * 1024)
            .spawn(move || me.drain_exits());
        if let Err(e) = spawned {
            q.worker = false;
            log::error!("no thread to handle exits, {} waiting: {e}", q.exits.len());
        }
    }

    fn drain_exits(&self) {
        loop {
            let exit = {
                let mut q = self.exit_queue.lock().unwrap_or_else(|p| p.into_inner());
                match q.exits.pop_front() {
                    Some(e) => e,
                    None => {
                        q.worker = false;
                        drop(q);
                        crate::memory::trim_heap();
                        return;
                    }
                }
            };
            let mut lc = self.lifecycle();
            if !self.apply_exit(exit) {
                lc.unmatched.push_back(exit);
                if lc.unmatched.len() > UNMATCHED_EXITS {
                    lc.unmatched.pop_front();
                }
            }
        }
    }

    /// Matches an exit to a running process; false when no process has that pid (yet).
    /// Called with the lifecycle lock held.
    fn apply_exit(&self, exit: Exit) -> bool {
        let containers: Vec<Arc<Container>> = self.containers().values().cloned().collect();
        for c in containers {
            for p in c.processes() {
                let (pid, state) = {
                    let inner = p.lock();
                    (inner.pid, inner.state)
                };
                if pid != exit.pid || state == State::Stopped || pid == 0 {
                    continue;
                }
                let is_init = p.exec_id.is_empty();
                if is_init && c.kill_all_on_exit {
                    // Processes sharing the host's pid namespace outlive their init: end them.
                    if let Err(e) = c.runc.kill(&*self.runner, &c.id, libc::SIGKILL, true) {
                        log::debug!("killing the rest of {}: {e}", c.id);
                    }
                }
                let info = ExitInfo {
                    status: exit.status,
                    at: exit.at,
                };
                p.set_exited(info);
                let mut ev = TaskExit::new();
                ev.container_id = c.id.clone();
                ev.id = if is_init {
                    c.id.clone()
                } else {
                    p.exec_id.clone()
                };
                ev.pid = pid as u32;
                ev.exit_status = exit.status;
                ev.exited_at = MessageField::some(timestamp(exit.at));
                self.publisher.publish("/tasks/exit", &ev);
                return true;
            }
        }
        false
    }

    /// After a pid became known: apply an exit of that pid that came before it. Only exits
    /// at or after `since` (just before the process was created) count: an older exit of the
    /// same pid belongs to another process (a runc invocation, or a pid since reused).
    /// Lifecycle lock held.
    fn claim_early_exit(&self, lc: &mut Lifecycle, pid: i32, since: Instant) {
        let pos = lc
            .unmatched
            .iter()
            .position(|e| e.pid == pid && e.reaped >= since);
        if let Some(exit) = pos.and_then(|p| lc.unmatched.remove(p)) {
            self.apply_exit(exit);
        }
        // Exits nobody claimed within a minute never will be.
        lc.unmatched.retain(|e| e.reaped.elapsed() < UNMATCHED_AGE);
    }

    fn runc_for(&self, bundle: &Path, options: &RuncOptions) -> RpcResult<Runc> {
        let root =
            crate::address::runc_root(&self.config.address, &options.root, &self.config.namespace)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Runc::new(runc::Config {
            binary: options.binary().to_string(),
            root,
            log: bundle.join("log.json"),
            systemd_cgroup: options.systemd_cgroup,
            criu: (!options.criu_path.is_empty()).then(|| PathBuf::from(&options.criu_path)),
            debug: self.config.debug,
        })
        .map_err(runc_status)
    }

    fn io_options(&self, container_id: &str, bundle: &Path, options: &RuncOptions) -> IoOptions {
        IoOptions {
            io_uid: options.io_uid,
            io_gid: options.io_gid,
            container_id: container_id.to_string(),
            namespace: self.config.namespace.clone(),
            runtime_dir: bundle.to_path_buf(),
        }
    }

    fn read_pid(path: &Path) -> RpcResult<i32> {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| Status::internal(format!("no pid in {}", path.display())))
    }

    fn create_inner(
        &self,
        req: &CreateTaskRequest,
        lc: &mut Lifecycle,
    ) -> RpcResult<CreateTaskResponse> {
        validate_id("container", &req.id)?;
        if self.containers().contains_key(&req.id) {
            return Err(Status::already_exists(format!(
                "container {:?}: already exists",
                req.id
            )));
        }
        if !req.checkpoint.is_empty() {
            return Err(Status::unimplemented(
                "restoring from a checkpoint is not supported",
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let options = RuncOptions::from_any(req.options.as_ref())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let runc = self.runc_for(&bundle, &options)?;
        options
            .write_to_bundle(&bundle)
            .map_err(|e| Status::internal(format!("writing options to the bundle: {e}")))?;

        let rootfs = bundle.join("rootfs");
        let mounts: Vec<Mount> = req
            .rootfs
            .iter()
            .map(|m| Mount {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        if !mounts.is_empty() {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| Status::internal(format!("creating {}: {e}", rootfs.display())))?;
            if let Err(e) = mount::mount_all(&mounts, &rootfs) {
                let _ = mount::unmount_all(&rootfs);
                return Err(Status::internal(e.to_string()));
            }
        }
        let cleanup = |runc: &Runc| {
            let _ = runc.delete(&*self.runner, &req.id, true);
            if !mounts.is_empty() {
                if let Err(e) = mount::unmount_all(&rootfs) {
                    log::warn!("{e}");
                }
            }
        };

        let stdio = StdioSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let mut io = match ProcessIo::prepare(
            &stdio,
            &self.io_options(&req.id, &bundle, &options),
            Arc::clone(&self.runner),
        ) {
            Ok(io) => io,
            Err(e) => {
                cleanup(&runc);
                return Err(Status::failed_precondition(e.to_string()));
            }
        };
        let pid_file = bundle.join("init.pid");
        let since = Instant::now();
        let opts = runc::CreateOpts {
            pid_file: pid_file.clone(),
            console_socket: io.console_socket().map(Path::to_path_buf),
            no_pivot: options.no_pivot_root,
            no_new_keyring: options.no_new_keyring,
        };
        let created = runc.create(&*self.runner, &req.id, &bundle, &opts, io.take_runc_stdio());
        if let Err(e) = created {
            io.finish(Duration::from_secs(1));
            cleanup(&runc);
            return Err(runc_status(e));
        }
        if let Err(e) = io.start() {
            io.finish(Duration::from_secs(1));
            cleanup(&runc);
            return Err(Status::internal(e.to_string()));
        }
        let pid = match Self::read_pid(&pid_file) {
            Ok(p) => p,
            Err(e) => {
                io.finish(Duration::from_secs(1));
                cleanup(&runc);
                return Err(e);
            }
        };
        let init = Arc::new(Process::new("", stdio.clone(), Vec::new()));
        {
            let mut inner = init.lock();
            inner.pid = pid;
            inner.io = Some(io);
        }
        let container = Arc::new(Container::new(
            &req.id,
            &bundle,
            runc,
            options,
            init,
            !mounts.is_empty(),
            since,
        ));
        self.containers().insert(req.id.clone(), container);
        if let Some(oom) = &self.oom {
            let added = oom.lock().map(|mut w| w.add(&req.id, pid));
            if let Ok(Err(e)) = added {
                log::warn!("watching {} for OOM: {e}", req.id);
            }
        }

        let mut ev = TaskCreate::new();
        ev.container_id = req.id.clone();
        ev.bundle = req.bundle.clone();
        ev.rootfs = req.rootfs.to_vec();
        let mut tio = TaskIO::new();
        tio.stdin = stdio.stdin;
        tio.stdout = stdio.stdout;
        tio.stderr = stdio.stderr;
        tio.terminal = stdio.terminal;
        ev.io = MessageField::some(tio);
        ev.checkpoint = req.checkpoint.clone();
        ev.pid = pid as u32;
        self.publisher.publish("/tasks/create", &ev);
        self.claim_early_exit(lc, pid, since);

        let mut resp = CreateTaskResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    fn start_exec(&self, c: &Container, p: &Process) -> RpcResult<i32> {
        let stdio = p.stdio.clone();
        let mut io = ProcessIo::prepare(
            &stdio,
            &self.io_options(&c.id, &c.bundle, &c.options),
            Arc::clone(&self.runner),
        )
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let pid_file = c.bundle.join(format!("{}.pid", p.exec_id));
        let opts = runc::ExecOpts {
            pid_file: pid_file.clone(),
            console_socket: io.console_socket().map(Path::to_path_buf),
        };
        if let Err(e) = c.runc.exec(
            &*self.runner,
            &c.id,
            &p.spec,
            &c.bundle,
            &opts,
            io.take_runc_stdio(),
        ) {
            io.finish(Duration::from_secs(1));
            return Err(runc_status(e));
        }
        if let Err(e) = io.start() {
            io.finish(Duration::from_secs(1));
            return Err(Status::internal(e.to_string()));
        }
        let pid = Self::read_pid(&pid_file)?;
        let mut inner = p.lock();
        inner.pid = pid;
        if inner.close_stdin_pending {
            io.close_stdin();
        }
        inner.io = Some(io);
        Ok(pid)
    }

    fn delete_process(&self, c: &Container, p: &Process) -> RpcResult<DeleteResponse> {
        let (pid, exit, io) = {
            let mut inner = p.lock();
            check(inner.state, Op::Delete)?;
            (inner.pid, inner.exit, inner.io.take())
        };
        if let Some(io) = io {
            io.finish(Duration::from_secs(2));
        }
        let mut resp = DeleteResponse::new();
        resp.pid = pid as u32;
        if let Some(exit) = exit {
            resp.exit_status = exit.status;
            resp.exited_at = MessageField::some(timestamp(exit.at));
        }
        if p.exec_id.is_empty() {
            // runc's cleanup and the rootfs unmount run side by side: they touch different
            // things, and unmounting an overlay syncs its upper file system, which often
            // takes longer than `runc delete` (a container still in runc's mount namespace
            // keeps its own mount, so the unmount here never pulls a root from under it).
            let (deleted, unmounted) = std::thread::scope(|scope| {
                let unmount = c.rootfs_mounted.then(|| {
                    std::thread::Builder::new()
                        .name("unmount".into())
                        .stack_size(64 * 1024)
                        .spawn_scoped(scope, || mount::unmount_all(&c.rootfs()))
                });
                let deleted = c.runc.delete(&*self.runner, &c.id, true);
                let unmounted = match unmount {
                    None => Ok(()),
                    Some(Ok(handle)) => handle.join().unwrap_or_else(|_| {
                        Err(std::io::Error::other("the unmount thread failed"))
                    }),
                    // No thread: unmount here instead.
                    Some(Err(_)) => mount::unmount_all(&c.rootfs()),
                };
                (deleted, unmounted)
            });
            if let Err(e) = deleted {
                if !e.is_not_found() {
                    return Err(runc_status(e));
                }
            }
            unmounted.map_err(|e| Status::internal(e.to_string()))?;
            self.containers().remove(&c.id);
            if let Some(oom) = &self.oom {
                if let Ok(mut w) = oom.lock() {
                    w.remove(&c.id);
                }
            }
            let mut ev = TaskDelete::new();
            ev.container_id = c.id.clone();
            ev.pid = resp.pid;
            ev.exit_status = resp.exit_status;
            ev.exited_at = resp.exited_at.clone();
            ev.id = c.id.clone();
            self.publisher.publish("/tasks/delete", &ev);
        } else {
            c.execs().remove(&p.exec_id);
        }
        Ok(resp)
    }

    /// Called from the OOM watcher for each container whose cgroup ran out of memory.
    pub fn oom(&self, container_id: &str) {
        let mut ev = TaskOOM::new();
        ev.container_id = container_id.to_string();
        self.publisher.publish("/tasks/oom", &ev);
    }
}

impl Task for TaskService {
    fn state(&self, _ctx: &RequestContext, req: StateRequest) -> RpcResult<StateResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let inner = p.lock();
        let mut resp = StateResponse::new();
        resp.id = if p.exec_id.is_empty() {
            c.id.clone()
        } else {
            p.exec_id.clone()
        };
        resp.bundle = c.bundle.display().to_string();
        resp.pid = inner.pid as u32;
        resp.status = inner.state.to_proto().into();
        resp.stdin = p.stdio.stdin.clone();
        resp.stdout = p.stdio.stdout.clone();
        resp.stderr = p.stdio.stderr.clone();
        resp.terminal = p.stdio.terminal;
        if let Some(exit) = inner.exit {
            resp.exit_status = exit.status;
            resp.exited_at = MessageField::some(timestamp(exit.at));
        }
        resp.exec_id = p.exec_id.clone();
        Ok(resp)
    }

    fn create(
        &self,
        _ctx: &RequestContext,
        req: CreateTaskRequest,
    ) -> RpcResult<CreateTaskResponse> {
        let mut lc = self.lifecycle();
        let created = self.create_inner(&req, &mut lc);
        crate::memory::trim_heap();
        created
    }

    fn start(&self, _ctx: &RequestContext, req: StartRequest) -> RpcResult<StartResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let mut lc = self.lifecycle();
        check(p.state(), Op::Start)?;
        // The init was created earlier: its exit may predate this call.
        let since = if p.exec_id.is_empty() {
            c.created_at
        } else {
            Instant::now()
        };
        let pid = if p.exec_id.is_empty() {
            c.runc.start(&*self.runner, &c.id).map_err(runc_status)?;
            let pid = p.pid();
            p.lock().state = State::Running;
            let mut ev = TaskStart::new();
            ev.container_id = c.id.clone();
            ev.pid = pid as u32;
            self.publisher.publish("/tasks/start", &ev);
            pid
        } else {
            let pid = self.start_exec(&c, &p)?;
            p.lock().state = State::Running;
            let mut ev = TaskExecStarted::new();
            ev.container_id = c.id.clone();
            ev.exec_id = p.exec_id.clone();
            ev.pid = pid as u32;
            self.publisher.publish("/tasks/exec-started", &ev);
            pid
        };
        self.claim_early_exit(&mut lc, pid, since);
        let mut resp = StartResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    fn delete(&self, _ctx: &RequestContext, req: DeleteRequest) -> RpcResult<DeleteResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let _lc = self.lifecycle();
        let deleted = self.delete_process(&c, &p);
        crate::memory::trim_heap();
        deleted
    }

    fn pids(&self, _ctx: &RequestContext, req: PidsRequest) -> RpcResult<PidsResponse> {
        let c = self.container(&req.id)?;
        let pids = c.runc.ps(&*self.runner, &c.id).map_err(runc_status)?;
        let execs: HashMap<i32, String> = c
            .execs()
            .values()
            .map(|p| (p.pid(), p.exec_id.clone()))
            .collect();
        let mut resp = PidsResponse::new();
        for pid in pids {
            let mut info = corral_protocols::types::task::task::ProcessInfo::new();
            info.pid = pid as u32;
            if let Some(exec_id) = execs.get(&pid) {
                let mut d = ProcessDetails::new();
                d.exec_id = exec_id.clone();
                info.info = MessageField::some(pack(&d));
            }
            resp.processes.push(info);
        }
        Ok(resp)
    }

    fn pause(&self, _ctx: &RequestContext, req: PauseRequest) -> RpcResult<Empty> {
        let c = self.container(&req.id)?;
        let mut inner = c.init.lock();
        check(inner.state, Op::Pause)?;
        c.runc.pause(&*self.runner, &c.id).map_err(runc_status)?;
        inner.state = State::Paused;
        drop(inner);
        let mut ev = TaskPaused::new();
        ev.container_id = c.id.clone();
        self.publisher.publish("/tasks/paused", &ev);
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &RequestContext, req: ResumeRequest) -> RpcResult<Empty> {
        let c = self.container(&req.id)?;
        let mut inner = c.init.lock();
        check(inner.state, Op::Resume)?;
        c.runc.resume(&*self.runner, &c.id).map_err(runc_status)?;
        inner.state = State::Running;
        drop(inner);
        let mut ev = TaskResumed::new();
        ev.container_id = c.id.clone();
        self.publisher.publish("/tasks/resumed", &ev);
        Ok(Empty::new())
    }

    fn checkpoint(&self, _ctx: &RequestContext, req: CheckpointTaskRequest) -> RpcResult<Empty> {
        let c = self.container(&req.id)?;
        // Without criu: FailedPrecondition naming what was looked for.
        c.runc.check_criu().map_err(runc_status)?;
        let mut opts = CheckpointOptions::new();
        if let Some(any) = req.options.as_ref() {
            if !any.value.is_empty() {
                opts = CheckpointOptions::parse_from_bytes(&any.value)
                    .map_err(|e| Status::invalid_argument(format!("checkpoint options: {e}")))?;
            }
        }
        let image = if opts.image_path.is_empty() {
            req.path.clone()
        } else {
            opts.image_path.clone()
        };
        let ck = runc::CheckpointOpts {
            image_path: PathBuf::from(&image),
            work_path: (!opts.work_path.is_empty()).then(|| PathBuf::from(&opts.work_path)),
            parent_path: None,
            exit: opts.exit,
            open_tcp: opts.open_tcp,
            external_unix_sockets: opts.external_unix_sockets,
            terminal: opts.terminal,
            file_locks: opts.file_locks,
            empty_namespaces: opts.empty_namespaces.clone(),
            cgroups_mode: (!opts.cgroups_mode.is_empty()).then(|| opts.cgroups_mode.clone()),
        };
        c.runc
            .checkpoint(&*self.runner, &c.id, &ck)
            .map_err(runc_status)?;
        let mut ev = TaskCheckpointed::new();
        ev.container_id = c.id.clone();
        ev.checkpoint = image;
        self.publisher.publish("/tasks/checkpointed", &ev);
        Ok(Empty::new())
    }

    fn kill(&self, _ctx: &RequestContext, req: KillRequest) -> RpcResult<Empty> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let (state, pid) = {
            let inner = p.lock();
            (inner.state, inner.pid)
        };
        check(state, Op::Kill)?;
        if p.exec_id.is_empty() {
            c.runc
                .kill(&*self.runner, &c.id, req.signal as i32, req.all)
                .map_err(|e| {
                    if e.is_not_found() || e.is_not_running() {
                        Status::not_found("process already finished")
                    } else {
                        runc_status(e)
                    }
                })?;
        } else {
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
                .map_err(|_| Status::invalid_argument(format!("signal {}: invalid", req.signal)))?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).map_err(|e| {
                if e == nix::errno::Errno::ESRCH {
                    Status::not_found("process already finished")
                } else {
                    Status::internal(format!("signalling pid {pid}: {e}"))
                }
            })?;
        }
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &RequestContext, req: ExecProcessRequest) -> RpcResult<Empty> {
        let c = self.container(&req.id)?;
        validate_id("exec", &req.exec_id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Status::invalid_argument("exec needs a process spec"))?;
        let stdio = StdioSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        {
            let mut execs = c.execs();
            if execs.contains_key(&req.exec_id) {
                return Err(Status::already_exists(format!(
                    "id {}: already exists",
                    req.exec_id
                )));
            }
            execs.insert(
                req.exec_id.clone(),
                Arc::new(Process::new(&req.exec_id, stdio, spec)),
            );
        }
        let mut ev = TaskExecAdded::new();
        ev.container_id = c.id.clone();
        ev.exec_id = req.exec_id.clone();
        self.publisher.publish("/tasks/exec-added", &ev);
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &RequestContext, req: ResizePtyRequest) -> RpcResult<Empty> {
        let (_c, p) = self.process(&req.id, &req.exec_id)?;
        let inner = p.lock();
        // Like containerd's shim, resizing a process without a terminal is a no-op.
        if let Some(io) = inner.io.as_ref().filter(|io| io.is_terminal()) {
            io.resize(req.width, req.height)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
        }
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &RequestContext, req: CloseIORequest) -> RpcResult<Empty> {
        let (_c, p) = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            let mut inner = p.lock();
            match inner.io.as_ref() {
                Some(io) => io.close_stdin(),
                None => inner.close_stdin_pending = true,
            }
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &RequestContext, req: UpdateTaskRequest) -> RpcResult<Empty> {
        let c = self.container(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Status::invalid_argument("update needs resources"))?;
        c.runc
            .update(&*self.runner, &c.id, &resources)
            .map_err(runc_status)?;
        Ok(Empty::new())
    }

    fn wait(&self, ctx: &RequestContext, req: WaitRequest) -> RpcResult<WaitResponse> {
        let (_c, p) = self.process(&req.id, &req.exec_id)?;
        let exit = p.wait(ctx)?;
        let mut resp = WaitResponse::new();
        resp.exit_status = exit.status;
        resp.exited_at = MessageField::some(timestamp(exit.at));
        Ok(resp)
    }

    fn stats(&self, _ctx: &RequestContext, req: StatsRequest) -> RpcResult<StatsResponse> {
        let c = self.container(&req.id)?;
        let pid = c.init.pid();
        let fs = crate::cgroup::CgroupFs::host().map_err(|e| Status::internal(e.to_string()))?;
        let stats = crate::cgroup::stats_for_pid(&fs, pid)
            .map_err(|e| Status::new(e.code(), e.to_string()))?;
        let mut resp = StatsResponse::new();
        resp.stats = MessageField::some(stats.to_any());
        Ok(resp)
    }

    fn connect(&self, _ctx: &RequestContext, req: ConnectRequest) -> RpcResult<ConnectResponse> {
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        if let Ok(c) = self.container(&req.id) {
            resp.task_pid = c.init.pid() as u32;
        }
        resp.version = corral_protocols::version::VERSION.to_string();
        Ok(resp)
    }

    fn shutdown(&self, _ctx: &RequestContext, _req: ShutdownRequest) -> RpcResult<Empty> {
        if self.is_empty() {
            (self.on_shutdown)();
        }
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_containerds_rules() {
        for ok in ["web", "a.b-c_d", "A1", &"x".repeat(76)] {
            validate_id("container", ok).unwrap();
        }
        for bad in ["", "-a", "a-", "a..b", "a b", "ü", &"x".repeat(77), "../x"] {
            let e = validate_id("container", bad).unwrap_err();
            assert_eq!(
                e.code(),
                corral_protocols::rpc::Code::INVALID_ARGUMENT,
                "{bad}"
            );
        }
    }
}
