//! The task list over the shims (containerd's `ShimManager` and `TaskManager`): creating a
//! task starts its shim in a new bundle; deleting it deletes the task in the shim, shuts the
//! shim down and removes the bundle; a shim whose connection ends unasked is cleaned up with
//! its `delete` run and its task reported as exited; after a restart every bundle is looked
//! at again and its shim reconnected or cleaned up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use corral_protocols::events::task::{TaskDelete, TaskExit};
use corral_protocols::runtime::v2::task::shim::CreateTaskRequest;
use corral_protocols::types::mount::Mount as MountPb;
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;

use super::binary::{Resolver, ShimBinary, CLEANUP_TIMEOUT};
use super::bundle::{self, Bundle, Retired};
use super::shim::{is_closed, Ending, Exit, Shim, LOAD_TIMEOUT};
use super::shim_log::ShimLogs;
use super::sweeper::Sweeper;
use super::{RuntimeError, RuntimeResult};
use crate::events::Exchange;

/// Where the runtime keeps its files and what it tells shims.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The daemon root (work dirs).
    pub root: PathBuf,
    /// The daemon state (bundles).
    pub state: PathBuf,
    /// corrald's socket, given to shims as `-address` and `TTRPC_ADDRESS`.
    pub address: String,
    /// Start shims with `-debug`.
    pub debug: bool,
    /// Directories searched for shim binaries before `$PATH`.
    pub shim_dirs: Vec<PathBuf>,
}

/// What a new task is made of (containerd's `runtime.CreateOpts`).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// The OCI spec (JSON), written to the bundle's `config.json`.
    pub spec: Vec<u8>,
    /// The runtime name or shim path.
    pub runtime: String,
    /// The container's runtime options.
    pub runtime_options: Option<Any>,
    /// The request's task options (preferred over the runtime options).
    pub task_options: Option<Any>,
    /// The root filesystem's mounts, mounted by the shim on `<bundle>/rootfs`.
    pub rootfs: Vec<MountPb>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    /// A checkpoint directory to restore from.
    pub checkpoint: String,
}

type Key = (String, String);

struct Inner {
    config: RuntimeConfig,
    resolver: Resolver,
    tasks: Mutex<HashMap<Key, Arc<Shim>>>,
    exchange: Exchange,
    logs: ShimLogs,
    /// Removes the bundles of deleted tasks after `Delete` has answered.
    sweeper: Sweeper,
    /// Set when corrald stops: connections ending then are not shims dying.
    stopping: std::sync::atomic::AtomicBool,
}

/// The tasks of every namespace, each served by its shim. Cheap to clone.
#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TaskManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskManager")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn key(ns: &str, id: &str) -> Key {
    (ns.to_string(), id.to_string())
}

impl TaskManager {
    /// A manager with no tasks; [`load_existing`](Self::load_existing) finds those a previous
    /// corrald left running.
    pub fn new(config: RuntimeConfig, exchange: Exchange) -> RuntimeResult<TaskManager> {
        let logs = ShimLogs::new().map_err(RuntimeError::io("creating the shim log copier"))?;
        Ok(TaskManager {
            inner: Arc::new(Inner {
                resolver: Resolver::new(config.shim_dirs.clone()),
                config,
                tasks: Mutex::default(),
                exchange,
                logs,
                sweeper: Sweeper::default(),
                stopping: Default::default(),
            }),
        })
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Shim>>> {
        // A poisoned lock means a panic elsewhere; corrald aborts on panic, so never here.
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The task `id` in `ns`.
    pub fn get(&self, ns: &str, id: &str) -> Option<Arc<Shim>> {
        self.tasks().get(&key(ns, id)).cloned()
    }

    /// The tasks of `ns` (of every namespace with `None`), sorted by id.
    pub fn list(&self, ns: Option<&str>) -> Vec<Arc<Shim>> {
        let mut v: Vec<Arc<Shim>> = self
            .tasks()
            .iter()
            .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
            .map(|(_, s)| Arc::clone(s))
            .collect();
        v.sort_by(|a, b| a.id().cmp(b.id()));
        v
    }

    /// How many tasks are live.
    pub fn len(&self) -> usize {
        self.tasks().len()
    }

    /// Whether there is no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells the manager corrald is stopping: shims stay up, and their connections closing
    /// is not taken for their death. Bundles of deleted tasks still being removed are
    /// waited for.
    pub fn detach(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if !self.inner.sweeper.flush(CLEANUP_TIMEOUT) {
            log::warn!("deleted bundles still being removed; the next start removes the rest");
        }
    }

    fn binary(&self, bundle: &Bundle, runtime: &str) -> RuntimeResult<ShimBinary> {
        Ok(ShimBinary {
            path: self.inner.resolver.resolve(runtime)?,
            bundle: bundle.clone(),
            address: self.inner.config.address.clone(),
            debug: self.inner.config.debug,
        })
    }

    /// Creates task `id` in `ns`: a bundle, a shim started for it, and the task created in
    /// the shim (containerd's `TaskManager.Create`). Returns the task's pid.
    pub fn create(&self, ns: &str, id: &str, opts: CreateOpts) -> RuntimeResult<(Arc<Shim>, u32)> {
        if self.get(ns, id).is_some() {
            return Err(RuntimeError::AlreadyExists(format!("task {id}")));
        }
        let cfg = &self.inner.config;
        let bundle = Bundle::create(&cfg.root, &cfg.state, ns, id, &opts.spec)?;
        let shim = match self.start_shim(&bundle, &opts) {
            Ok(s) => s,
            Err(e) => {
                self.inner.logs.remove(&bundle.path);
                if let Err(c) = bundle.delete() {
                    log::warn!("removing the bundle of {ns}/{id}: {c}");
                }
                return Err(RuntimeError::Other(format!("failed to start shim: {e}")));
            }
        };
        {
            let mut tasks = self.tasks();
            if tasks.contains_key(&key(ns, id)) {
                drop(tasks);
                self.discard(&shim);
                return Err(RuntimeError::AlreadyExists(format!("task {id}")));
            }
            tasks.insert(key(ns, id), Arc::clone(&shim));
        }
        let req = CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.path.to_string_lossy().into_owned(),
            rootfs: opts.rootfs.clone(),
            terminal: opts.terminal,
            stdin: opts.stdin.clone(),
            stdout: opts.stdout.clone(),
            stderr: opts.stderr.clone(),
            checkpoint: opts.checkpoint.clone(),
            options: MessageField::from_option(opts.task_options.or(opts.runtime_options)),
            ..Default::default()
        };
        match shim.task().create(&shim.ctx(None), &req) {
            Ok(resp) => Ok((shim, resp.pid)),
            Err(s) => {
                self.remove_if_same(&shim);
                self.discard(&shim);
                Err(RuntimeError::Shim(corral_protocols::rpc::Status::new(
                    s.code(),
                    format!("failed to create shim task: {}", s.message()),
                )))
            }
        }
    }

    /// Starts the shim of `bundle` and connects to it.
    fn start_shim(&self, bundle: &Bundle, opts: &CreateOpts) -> RuntimeResult<Arc<Shim>> {
        let binary = self.binary(bundle, &opts.runtime)?;
        self.inner
            .logs
            .add(&bundle.path)
            .map_err(RuntimeError::io("opening the shim log"))?;
        let options = opts.task_options.as_ref().or(opts.runtime_options.as_ref());
        let started = binary.start(options)?;
        bundle.write_file("shim-binary-path", binary.path.to_string_lossy().as_bytes())?;
        match self.connect(bundle, binary.clone(), &opts.runtime, &started.address) {
            Ok(s) => Ok(s),
            Err(e) => {
                if let Err(c) = binary.delete() {
                    log::warn!("cleaning up the shim of {}: {c}", bundle.id);
                }
                Err(e)
            }
        }
    }

    fn connect(
        &self,
        bundle: &Bundle,
        binary: ShimBinary,
        runtime: &str,
        address: &str,
    ) -> RuntimeResult<Arc<Shim>> {
        let ending = Arc::new(Ending::default());
        let hook = {
            let weak = Arc::downgrade(&self.inner);
            let ending = Arc::clone(&ending);
            let (ns, id) = (bundle.namespace.clone(), bundle.id.clone());
            Box::new(move || shim_closed(&weak, &ns, &id, &ending))
        };
        let shim = Shim::connect(
            bundle.clone(),
            binary,
            runtime.to_string(),
            address,
            ending,
            hook,
        )?;
        Ok(Arc::new(shim))
    }

    /// Gets rid of a shim whose task never made it into the list, or failed to create:
    /// delete, shutdown, close, and the bundle removed.
    fn discard(&self, shim: &Shim) {
        if let Err(s) = shim.delete_task() {
            log::debug!("deleting the failed task {}: {s}", shim.id());
        }
        shim.shutdown();
        shim.ending.retire();
        shim.close();
        self.finish(shim);
    }

    fn remove_if_same(&self, shim: &Arc<Shim>) -> bool {
        let mut tasks = self.tasks();
        let k = key(shim.namespace(), shim.id());
        if tasks.get(&k).is_some_and(|s| Arc::ptr_eq(s, shim)) {
            tasks.remove(&k);
            true
        } else {
            false
        }
    }

    /// Waits for the connection's end, then stops copying the shim's log and takes the
    /// bundle away: renamed at once, its files removed in the background.
    fn finish(&self, shim: &Shim) {
        if shim.ending.wait(CLEANUP_TIMEOUT).is_none() {
            log::warn!(
                "the shim of {}/{} did not close",
                shim.namespace(),
                shim.id()
            );
        }
        self.inner.logs.remove(&shim.bundle.path);
        match shim.bundle.retire() {
            Ok(retired) => self.inner.sweeper.sweep(retired),
            Err(e) => log::error!(
                "failed to delete bundle of {}/{}: {e}",
                shim.namespace(),
                shim.id()
            ),
        }
    }

    /// Deletes task `id` in `ns` (containerd's `shimTask.delete`): the task in the shim, then
    /// the shim and the bundle. A running task is the shim's `FailedPrecondition`, and the
    /// task stays.
    pub fn delete(&self, ns: &str, id: &str) -> RuntimeResult<Exit> {
        let shim = self
            .get(ns, id)
            .ok_or_else(|| RuntimeError::NotFound(format!("task {id}")))?;
        let result = shim.delete_task();
        let shim_err = match result {
            Ok(resp) => {
                self.remove_if_same(&shim);
                shim.ending.retire();
                shim.shutdown();
                shim.close();
                self.finish(&shim);
                return Ok(Exit::from(&resp));
            }
            Err(s) if is_closed(&s) => s,
            Err(s) if s.code() == corral_protocols::rpc::Code::NOT_FOUND => s,
            Err(s) => return Err(RuntimeError::Shim(s)),
        };
        // The shim is gone or lost the task: the on-close cleanup reports its exit.
        shim.shutdown();
        shim.close();
        self.finish(&shim);
        self.remove_if_same(&shim);
        Err(RuntimeError::Shim(shim_err))
    }

    /// Finds the tasks a previous corrald (or containerd) left: every bundle under the state
    /// directory is reconnected to its shim, or cleaned up when the shim is gone; work dirs
    /// without a task are removed (containerd's `loadExistingTasks`). `runtime_of` gives a
    /// container's runtime name when a bundle has no `shim-binary-path`.
    pub fn load_existing(&self, runtime_of: &dyn Fn(&str, &str) -> Option<String>) {
        let cfg = self.inner.config.clone();
        let state = bundle::state_dir(&cfg.state);
        for ns in visible_dirs(&state) {
            for hidden in hidden_dirs(&state.join(&ns)) {
                remove_leftover(Retired::leftover_bundle(hidden));
            }
            for id in visible_dirs(&state.join(&ns)) {
                self.load_one(&ns, &id, runtime_of);
            }
            let work = bundle::work_root(&cfg.root).join(&ns);
            for hidden in hidden_dirs(&work) {
                remove_leftover(Retired::leftover_work(hidden));
            }
            for id in visible_dirs(&work) {
                if self.get(&ns, &id).is_none() {
                    if let Err(e) = std::fs::remove_dir_all(work.join(&id)) {
                        log::error!("cleanup working dir {}: {e}", work.join(&id).display());
                    }
                }
            }
        }
    }

    fn load_one(&self, ns: &str, id: &str, runtime_of: &dyn Fn(&str, &str) -> Option<String>) {
        let b = Bundle::load(&self.inner.config.state, ns, id);
        let empty = std::fs::read_dir(&b.path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        if empty {
            let _ = b.delete();
            return;
        }
        let runtime = match b.read_file("shim-binary-path") {
            Ok(Some(p)) if !p.is_empty() => Some(p),
            _ => runtime_of(ns, id),
        };
        let Some(runtime) = runtime else {
            log::error!("loading task {ns}/{id}: no shim binary path and no container");
            let _ = b.delete();
            return;
        };
        let binary = match self.binary(&b, &runtime) {
            Ok(bin) => bin,
            Err(e) => {
                log::error!("loading task {ns}/{id}: failed to resolve runtime path: {e}");
                let _ = b.delete();
                return;
            }
        };
        let reconnect = || -> RuntimeResult<Arc<Shim>> {
            let address = b
                .read_file("address")?
                .ok_or_else(|| RuntimeError::NotFound("address file".into()))?;
            self.inner
                .logs
                .add(&b.path)
                .map_err(RuntimeError::io("opening the shim log"))?;
            let shim = self.connect(&b, binary.clone(), &runtime, address.trim())?;
            shim.connect_probe(LOAD_TIMEOUT)?;
            Ok(shim)
        };
        match reconnect() {
            Ok(shim) => {
                log::info!("reconnected to the shim of {ns}/{id}");
                self.tasks().insert(key(ns, id), shim);
            }
            Err(e) => {
                log::warn!("loading task {ns}/{id}: {e}; cleaning up after the dead shim");
                self.inner.logs.remove(&b.path);
                cleanup_dead_shim(&binary);
            }
        }
    }
}

/// The names of the directories in `dir` that do not start with `.`.
fn visible_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = dir_names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The directories in `dir` whose names start with `.`: bundles and work dirs renamed for
/// removal by a corrald that stopped before removing them.
fn hidden_dirs(dir: &Path) -> Vec<PathBuf> {
    dir_names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .map(|n| dir.join(n))
        .collect()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

fn remove_leftover(retired: Retired) {
    if let Err(e) = retired.remove() {
        log::error!("removing a deleted bundle left by the last run: {e}");
    }
}

/// Runs the shim's `delete` and removes the bundle (containerd's `binary.Delete`); the exit
/// it reports, or containerd's 255 when it reports none.
fn cleanup_dead_shim(binary: &ShimBinary) -> Exit {
    let exit = match binary.delete() {
        Ok(resp) => Exit::from(&resp),
        Err(e) => {
            log::warn!(
                "failed to clean up after shim of {}/{} disconnected: {e}",
                binary.bundle.namespace,
                binary.bundle.id
            );
            Exit::unknown()
        }
    };
    if let Err(e) = binary.bundle.delete() {
        log::error!("failed to delete bundle of {}: {e}", binary.bundle.id);
    }
    exit
}

/// The on-close hook of a shim's connection. A task deleted through the API needs nothing
/// more; otherwise the shim died (or was killed): it is cleaned up like containerd's
/// `cleanupAfterDeadShim`, and a task still listed is reported exited and deleted.
fn shim_closed(inner: &Weak<Inner>, ns: &str, id: &str, ending: &Arc<Ending>) {
    let Some(inner) = inner.upgrade() else {
        return;
    };
    if ending.is_retired() || inner.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        ending.finish(Exit::unknown());
        return;
    }
    let listed = inner
        .tasks
        .lock()
        .ok()
        .and_then(|t| t.get(&key(ns, id)).cloned());
    let Some(shim) = listed.filter(|s| Arc::ptr_eq(&s.ending, ending)) else {
        ending.finish(Exit::unknown());
        return;
    };
    log::warn!("shim of {ns}/{id} disconnected; cleaning up");
    inner.logs.remove(&shim.bundle.path);
    let exit = cleanup_dead_shim(&shim.binary);
    let still_listed = match inner.tasks.lock() {
        Ok(mut t) => {
            let k = key(ns, id);
            if t.get(&k).is_some_and(|s| Arc::ptr_eq(s, &shim)) {
                t.remove(&k);
                true
            } else {
                false
            }
        }
        Err(_) => false,
    };
    ending.finish(exit.clone());
    if still_listed {
        publish_exit(&inner.exchange, ns, id, &exit);
    }
}

fn publish_exit(exchange: &Exchange, ns: &str, id: &str, exit: &Exit) {
    let ev = TaskExit {
        container_id: id.to_string(),
        id: id.to_string(),
        pid: exit.pid,
        exit_status: exit.status,
        exited_at: MessageField::some(exit.exited_at.clone()),
        ..Default::default()
    };
    if let Err(e) = exchange.publish(ns, "/tasks/exit", &ev) {
        log::error!("publishing the exit of {ns}/{id}: {e}");
    }
    let ev = TaskDelete {
        container_id: id.to_string(),
        pid: exit.pid,
        exit_status: exit.status,
        exited_at: MessageField::some(exit.exited_at.clone()),
        ..Default::default()
    };
    if let Err(e) = exchange.publish(ns, "/tasks/delete", &ev) {
        log::error!("publishing the deletion of {ns}/{id}: {e}");
    }
}

/// How long `Wait` waits for a dead shim's cleanup to say how the task ended.
pub const DEAD_SHIM_WAIT: Duration = Duration::from_secs(10);
