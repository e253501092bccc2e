//! Running the daemon: directories, the locks that keep a second daemon off the same root and
//! state, the metadata store, the socket (guarded by the file system: parent 0711, socket
//! 0660, owned by `[ttrpc] uid:gid`), signals, and readiness for systemd.
//!
//! Start-up order: log → root (0700) and state (0711) → `<state>/corrald.lock` (exclusive,
//! non-blocking) → meta.db (bolt's own exclusive lock, non-blocking) → socket (a live one is
//! refused, a stale one replaced) → services → `READY=1` → serve. `SIGTERM`/`SIGINT` stop
//! accepting, let calls in flight finish for `[corral] shutdown_grace`, then the store is
//! closed and the socket removed.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use corral_protocols::rpc::{Address, Server, ServerConfig, ServiceSet};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, Signal};

use crate::config::{Config, ConfigError};
use crate::metadata::error::MetaError;
use crate::metadata::schema::db_path;
use crate::metadata::store::Store;
use crate::services::{self, Context};

/// The lock file in the state directory.
pub const LOCK_FILE: &str = "corrald.lock";

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file-system or socket operation failed; `what` says on what.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// Another corrald holds the state directory's lock.
    #[error("state directory {} is in use by another corrald{}", state.display(), pid_suffix(*pid))]
    StateInUse { state: PathBuf, pid: Option<u32> },
    /// The metadata store could not be opened (another daemon holds the root, a bad file).
    #[error("root {}: {source}", root.display())]
    Store { root: PathBuf, source: MetaError },
    /// The content store or a snapshotter could not be opened.
    #[error("root {}: {source}", root.display())]
    Plugins {
        root: PathBuf,
        source: crate::services::ContextError,
    },
    /// Something answers on the socket already.
    #[error("another daemon is serving on {0}")]
    AddressInUse(String),
    /// Signals could not be set up.
    #[error("signals: {0}")]
    Signals(nix::Error),
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Runs the daemon until `SIGTERM` or `SIGINT`. Must be called before any other thread is
/// spawned: the signals are blocked in the calling thread so every later thread inherits the
/// mask and only the signal thread receives them.
pub fn run(config: Config) -> Result<(), DaemonError> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().map_err(DaemonError::Signals)?;
    tune_allocator();

    init_logging(config.log_level());
    let daemon = Daemon::start(&config)?;
    daemon.serve(signals, config.shutdown_grace())
}

/// One malloc arena for the whole daemon instead of one per thread: each shim adds a client
/// reader thread, and every arena a thread touched keeps its pages (measured: 10 containers
/// cost corrald 2.4 MiB of Pss with per-thread arenas). Large blocks are mapped on their own
/// and free memory at the top of the heap goes back early.
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; it is called before corrald starts
    // any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 * 1024);
    }
}

fn init_logging(level: log::LevelFilter) {
    // A second init (tests running `run` twice) keeps the first logger.
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format_target(false)
        .try_init();
}

/// A started daemon: locks held, store open, socket bound, not serving yet.
pub struct Daemon {
    _state_lock: Flock<File>,
    address: Address,
    listener: UnixListener,
    server: Server,
    context: Arc<Context>,
}

impl Daemon {
    /// Everything up to serving: directories, locks, store, socket, services.
    pub fn start(config: &Config) -> Result<Daemon, DaemonError> {
        make_dir(&config.root, 0o700)?;
        make_dir(&config.state, 0o711)?;
        let state_lock = lock_state(&config.state)?;
        let store = Store::open(db_path(&config.root)).map_err(|source| DaemonError::Store {
            root: config.root.clone(),
            source,
        })?;
        let address = Address::parse(&config.ttrpc.address)
            .map_err(io_err(format!("address {:?}", config.ttrpc.address)))?;
        let listener = bind(&address, config.ttrpc.uid, config.ttrpc.gid)?;
        let context = Arc::new(
            Context::open_with(
                store,
                config.root.clone(),
                config.state.clone(),
                &crate::services::Options::from_config(config),
            )
            .map_err(|source| DaemonError::Plugins {
                root: config.root.clone(),
                source,
            })?,
        );
        // Tasks a previous corrald left running are found again before anyone can ask.
        {
            let store = context.store.clone();
            context.tasks.load_existing(&|ns: &str, id: &str| {
                store
                    .view(|tx| crate::metadata::container::get(tx, ns, id))
                    .ok()
                    .map(|c| c.runtime.name)
            });
        }
        let mut set = ServiceSet::new();
        services::register_all(&mut set, &context);
        let server = Server::new(
            set,
            ServerConfig {
                max_in_flight: config.corral.max_in_flight,
                thread_name: "corrald".into(),
                ..ServerConfig::default()
            },
        );
        // The first collection sweeps what a crash or the other daemon left behind.
        context.gc.start();
        Ok(Daemon {
            _state_lock: state_lock,
            address,
            listener,
            server,
            context,
        })
    }

    /// The socket's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The server (for stopping it from elsewhere).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Serves until one of `signals` arrives (waited for on a thread of its own), then stops:
    /// no new connections, calls in flight get `grace` to finish, the store is closed and the
    /// socket removed.
    pub fn serve(self, signals: SigSet, grace: Duration) -> Result<(), DaemonError> {
        let stopping = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        {
            let server = self.server.clone();
            let stopping = Arc::clone(&stopping);
            thread::Builder::new()
                .name("corrald-signals".into())
                .stack_size(64 * 1024)
                .spawn(move || signal_loop(signals, &server, &stopping, grace, done_tx))
                .map_err(io_err("spawning the signal thread"))?;
        }

        notify("READY=1");
        log::info!("serving on {}", self.address);
        let result = self.server.serve(&self.listener);
        if stopping.load(Ordering::SeqCst) {
            // The shutdown thread drains calls in flight; wait for it (it may be gone if it
            // could not be spawned, then recv fails at once).
            let _ = done_rx.recv();
        } else {
            self.server.shutdown(grace);
        }
        self.finish();
        result.map_err(io_err("accepting connections"))
    }

    fn finish(self) {
        let Daemon {
            _state_lock,
            address,
            listener,
            server,
            context,
        } = self;
        drop(listener);
        // Shims and their containers outlive corrald; the next one reconnects to them.
        context.tasks.detach();
        if let Some(path) = address.path() {
            if let Err(e) = fs::remove_file(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("removing {}: {e}", path.display());
                }
            }
        }
        // The services hold the store through the context; dropping the server drops them.
        drop(server);
        context.gc.stop();
        drop(context);
        log::info!("stopped");
    }
}

/// Waits for the stop signals. The first starts a graceful shutdown on a thread of its own;
/// a second one while that runs exits at once (bolt's file stays consistent: every
/// transaction commits or does not).
fn signal_loop(
    signals: SigSet,
    server: &Server,
    stopping: &Arc<AtomicBool>,
    grace: Duration,
    done: mpsc::Sender<()>,
) {
    let mut done = Some(done);
    loop {
        let signal = match signals.wait() {
            Ok(s) => s,
            Err(e) => {
                log::error!("waiting for signals: {e}");
                return;
            }
        };
        if let Some(done) = done.take() {
            log::info!("{signal}: stopping (grace {grace:?})");
            notify("STOPPING=1");
            stopping.store(true, Ordering::SeqCst);
            let s = server.clone();
            let spawned = thread::Builder::new()
                .name("corrald-shutdown".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    s.shutdown(grace);
                    let _ = done.send(());
                });
            if let Err(e) = spawned {
                log::error!("spawning the shutdown thread: {e}; stopping without grace");
                server.shutdown(Duration::ZERO);
            }
        } else {
            log::warn!("{signal} again: exiting now");
            std::process::exit(1);
        }
    }
}

/// Creates `dir` (and missing parents) and sets its mode.
fn make_dir(dir: &Path, mode: u32) -> Result<(), DaemonError> {
    let what = || format!("creating {}", dir.display());
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(io_err(what()))?;
    fs::set_permissions(dir, Permissions::from_mode(mode)).map_err(io_err(what()))
}

/// Creates missing parents of the socket with mode 0711 (existing ones are left as they are).
fn make_socket_parent(dir: &Path) -> Result<(), DaemonError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_socket_parent(parent)?;
    }
    make_dir(dir, 0o711)
}

/// Takes `<state>/corrald.lock` (exclusive, non-blocking) and writes our pid into it.
fn lock_state(state: &Path) -> Result<Flock<File>, DaemonError> {
    let path = state.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(DaemonError::StateInUse {
                state: state.into(),
                pid: text.trim().parse().ok(),
            });
        }
        Err((_, e)) => {
            return Err(DaemonError::Io {
                what: format!("locking {}", path.display()),
                source: e.into(),
            })
        }
    };
    let write = |f: &mut File| -> io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())?;
        f.sync_data()
    };
    write(&mut lock).map_err(io_err(format!("writing {}", path.display())))?;
    Ok(lock)
}

/// Binds the socket: a live socket at the path is refused, a stale one replaced; then 0660
/// and `uid:gid`.
fn bind(address: &Address, uid: u32, gid: u32) -> Result<UnixListener, DaemonError> {
    let Some(path) = address.path() else {
        return address
            .bind()
            .map_err(io_err(format!("listening on {address}")));
    };
    if let Some(parent) = path.parent() {
        make_socket_parent(parent)?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_socket() {
                return Err(DaemonError::Io {
                    what: format!("{}", path.display()),
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a socket",
                    ),
                });
            }
            if UnixStream::connect(path).is_ok() {
                return Err(DaemonError::AddressInUse(path.display().to_string()));
            }
            log::info!("removing stale socket {}", path.display());
            fs::remove_file(path).map_err(io_err(format!("removing {}", path.display())))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("{}", path.display()))(e)),
    }
    let listener = address
        .bind()
        .map_err(io_err(format!("listening on {}", path.display())))?;
    let guard = |e: io::Error, what: String| {
        let _ = fs::remove_file(path);
        DaemonError::Io { what, source: e }
    };
    fs::set_permissions(path, Permissions::from_mode(0o660))
        .map_err(|e| guard(e, format!("chmod {}", path.display())))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| guard(e, format!("chown {uid}:{gid} {}", path.display())))?;
    Ok(listener)
}

/// Sends `state` to systemd's `NOTIFY_SOCKET` (a path or an `@abstract` name), if set.
/// Failures are logged: readiness is a courtesy, not a reason to stop.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let target = target.to_string_lossy().into_owned();
    if let Err(e) = send_notify(&target, state) {
        log::warn!("notifying {target}: {e}");
    }
}

fn send_notify(target: &str, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let addr = match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => std::os::unix::net::SocketAddr::from_pathname(target)?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send_notify(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("corral-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_notify(&format!("@{name}"), "READY=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn state_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_state(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process.
        match lock_state(dir.path()) {
            Err(DaemonError::StateInUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("want StateInUse, got {:?}", other.err()),
        }
    }

    #[test]
    fn stale_socket_is_replaced_and_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.sock");
        let addr = Address::Path(path.clone());
        let live = bind(
            &addr,
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
        .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o660);
        let parent = fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(parent.permissions().mode() & 0o7777, 0o711);
        match bind(&addr, 0, 0) {
            Err(DaemonError::AddressInUse(p)) => assert_eq!(p, path.display().to_string()),
            other => panic!("want AddressInUse, got {:?}", other.err()),
        }
        drop(live); // the file stays: a stale socket
        assert!(path.exists());
        let _again = bind(
            &addr,
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
        .unwrap();
        assert!(UnixStream::connect(&path).is_ok());
    }
}
