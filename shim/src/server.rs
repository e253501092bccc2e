//! The long-lived shim: what `start` launches. It serves the Task service on the socket
//! `start` bound (fd 3) until containerd shuts it down.
//!
//! Threads when idle: this one (accepting), one reader per daemon connection, and the reaper
//! (which also watches for OOM kills). Handler threads, the exit worker, the event sender and
//! copy threads for terminals come when there is work and leave when it is done.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use corral_protocols::rpc::{Server, ServerConfig, ServiceSet};
use corral_protocols::runtime::v2::task::shim_rpc::register_task;

use crate::events::Publisher;
use crate::flags::Flags;
use crate::reaper::{Reaper, ReaperRunner, Watch};
use crate::service::{Config, SharedOom, TaskService};

/// The OOM watcher's descriptor in the reaper's poll loop: readable when a watched cgroup ran
/// out of memory.
struct OomWatch {
    fd: OwnedFd,
    watcher: SharedOom,
    service: Arc<TaskService>,
}

impl OomWatch {
    fn new(watcher: SharedOom, service: Arc<TaskService>) -> io::Result<Self> {
        let fd = {
            let w = watcher
                .lock()
                .map_err(|_| io::Error::other("OOM watcher poisoned"))?;
            w.as_fd().try_clone_to_owned()?
        };
        Ok(Self {
            fd,
            watcher,
            service,
        })
    }
}

impl Watch for OomWatch {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn ready(&mut self) {
        let ids = match self.watcher.lock() {
            Ok(mut w) => w.drain(),
            Err(_) => return,
        };
        for id in ids {
            log::info!("container {id} ran out of memory");
            self.service.oom(&id);
        }
    }
}

/// How long shutdown waits for calls in flight and queued events.
const GRACE: Duration = Duration::from_secs(5);

/// Points stderr (and so the log) at the bundle's `log` fifo, which containerd reads.
fn log_to_fifo(bundle: &Path) {
    let path = bundle.join("log");
    if !path.exists() {
        return;
    }
    match OpenOptions::new().write(true).open(&path) {
        Ok(f) => {
            if let Err(e) = nix::unistd::dup2(f.as_raw_fd(), 2) {
                log::warn!("sending the log to {}: {e}", path.display());
            }
        }
        Err(e) => log::warn!("opening {}: {e}", path.display()),
    }
}

fn listener(flags: &Flags) -> io::Result<UnixListener> {
    if flags.socket.is_empty() {
        // SAFETY: `start` hands this process the listening socket as fd 3, and nothing else
        // in this process has claimed fd 3 before this point.
        let fd = unsafe { OwnedFd::from_raw_fd(3) };
        let l = UnixListener::from(fd);
        l.local_addr()?;
        Ok(l)
    } else {
        let path = crate::address::daemon_path(&flags.socket);
        let _ = std::fs::remove_file(path);
        UnixListener::bind(path)
    }
}

fn socket_path_of(listener: &UnixListener) -> Option<PathBuf> {
    listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
}

/// Runs the shim server until shutdown.
pub fn serve(flags: &Flags) -> io::Result<()> {
    crate::memory::tune_allocator();
    // Before any thread exists: block the reaper's signals and become a subreaper.
    let reaper = Reaper::install()?;
    let bundle = std::env::current_dir()?;
    log_to_fifo(&bundle);
    let listener = listener(flags)?;
    let socket_path = socket_path_of(&listener);
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    let publisher = Publisher::new(&ttrpc_address, &flags.namespace);
    let runner = Arc::new(ReaperRunner::new(reaper.clone()));

    let server_slot: Arc<std::sync::OnceLock<Server>> = Arc::default();
    let stop = {
        let slot = Arc::clone(&server_slot);
        move || {
            if let Some(server) = slot.get() {
                let server = server.clone();
                // Off the calling thread: shutdown waits for calls in flight, which may
                // include the caller's own.
                let _ = thread::Builder::new()
                    .name("shutdown".into())
                    .stack_size(64 * 1024)
                    .spawn(move || server.shutdown(GRACE));
            }
        }
    };
    let oom = match crate::cgroup::CgroupFs::host().and_then(crate::cgroup::OomWatcher::new) {
        Ok(w) => Some(Arc::new(Mutex::new(w))),
        Err(e) => {
            log::warn!("no OOM events: {e}");
            None
        }
    };
    let service = TaskService::new(
        Config {
            namespace: flags.namespace.clone(),
            address: flags.address.clone(),
            debug: flags.debug,
        },
        oom.clone(),
        publisher.clone(),
        runner,
        Box::new(stop.clone()),
    );
    let mut set = ServiceSet::new();
    register_task(&mut set, service.clone());
    let server = Server::new(
        set,
        ServerConfig {
            require_same_user: true,
            thread_name: "shim".into(),
            handler_stack_size: 256 * 1024,
            ..ServerConfig::default()
        },
    );
    let _ = server_slot.set(server.clone());

    {
        let service = Arc::clone(&service);
        reaper.on_exit(move |exit| service.queue_exit(exit));
    }
    let mut watches: Vec<Box<dyn Watch>> = Vec::new();
    if let Some(oom) = oom {
        match OomWatch::new(oom, Arc::clone(&service)) {
            Ok(w) => watches.push(Box::new(w)),
            Err(e) => log::warn!("no OOM events: {e}"),
        }
    }
    reaper.spawn(watches, stop)?;

    log::info!(
        "shim serving namespace {} id {} on {}",
        flags.namespace,
        flags.id,
        socket_path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "fd 3".into())
    );
    server.serve(&listener)?;
    server.shutdown(GRACE);
    publisher.drain(GRACE);
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }
    log::info!("shim exiting");
    Ok(())
}
