//! [`TempRoot`]: one temporary directory per test, cleaned up even when the test panics.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::child::ChildGuard;
use super::mounts::{mounts_under, unmount_all_under};
use super::procs::{kill_tree, processes, ProcessInfo};

/// Prefix of every test directory, so a leftover is easy to recognise (`/tmp/corral-test-*`).
pub const TEMP_PREFIX: &str = "corral-test-";
/// Set this environment variable to `1` to keep test directories for inspection (processes
/// are still killed and mounts still removed).
pub const KEEP_ENV: &str = "CORRAL_KEEP_TEMP";
/// How long cleanup waits for killed processes to exit.
const KILL_DEADLINE: Duration = Duration::from_secs(10);

/// A temporary directory `<temp_dir>/corral-test-XXXXXX` for one test, with `root/` and
/// `state/` subdirectories for a daemon.
///
/// Dropping it (or calling [`cleanup`](Self::cleanup)):
/// 1. stops the [`ChildGuard`]s it [adopted](Self::adopt);
/// 2. kills (`SIGKILL`) the processes [registered](Self::register_pid) with it and every
///    process whose command line mentions its path, with all their descendants (frozen
///    first, so none escapes by forking), and reaps those that are our children;
/// 3. unmounts everything mounted at or below it, deepest first (lazily if busy);
/// 4. removes it — unless something could not be unmounted, because removing the contents
///    of a mount that is still there could delete files that are not the test's.
#[derive(Debug)]
pub struct TempRoot {
    path: PathBuf,
    root: PathBuf,
    state: PathBuf,
    marker: String,
    registered: Mutex<Vec<ProcessInfo>>,
    adopted: Mutex<Vec<ChildGuard>>,
    cleaned: bool,
}

impl TempRoot {
    /// Creates the directory (mode 0700) and its `root/` and `state/` subdirectories.
    pub fn new() -> io::Result<TempRoot> {
        let dir = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(std::env::temp_dir())?;
        // From here on removal is ours (after unmounting), not `TempDir`'s.
        let kept = dir.keep();
        let path = kept.canonicalize()?;
        let root = path.join("root");
        let state = path.join("state");
        std::fs::create_dir(&root)?;
        std::fs::create_dir(&state)?;
        let marker = path.to_string_lossy().into_owned();
        Ok(TempRoot {
            path,
            root,
            state,
            marker,
            registered: Mutex::new(Vec::new()),
            adopted: Mutex::new(Vec::new()),
            cleaned: false,
        })
    }

    /// The directory itself (canonical, absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<path>/root`: a daemon's persistent root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<path>/state`: a daemon's state directory.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// `<path>/<relative>`.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// The path as a string, for [`leaked_processes`](super::leaked_processes).
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// Registers a process to kill at cleanup. Its start time is recorded, so if it has
    /// exited and the pid was reused by then, the new process is left alone. If it is our
    /// child it is reaped at cleanup: do not register the pid of a `Child` you still `wait` on.
    pub fn register_pid(&self, pid: u32) -> io::Result<()> {
        let process = ProcessInfo::read(pid as i32)?;
        lock(&self.registered).push(process);
        Ok(())
    }

    /// Takes a guarded child; it is stopped (`SIGTERM`, then `SIGKILL`) first at cleanup.
    pub fn adopt(&self, guard: ChildGuard) {
        lock(&self.adopted).push(guard);
    }

    /// Kills, unmounts and removes now (idempotent; [`Drop`] calls it and only logs errors).
    /// Every step runs even if an earlier one failed; the first error is returned.
    pub fn cleanup(&mut self) -> io::Result<()> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut first_error: Option<io::Error> = None;
        let mut note = |result: io::Result<()>| {
            if let Err(e) = result {
                log::warn!("cleaning up {}: {e}", self.path.display());
                first_error.get_or_insert(e);
            }
        };

        for mut guard in lock(&self.adopted).drain(..) {
            note(guard.stop().map(drop));
        }
        let me = std::process::id() as i32;
        let mut roots: Vec<ProcessInfo> = lock(&self.registered).drain(..).collect();
        roots.extend(
            processes()
                .into_iter()
                .filter(|p| p.pid != me && p.state != 'Z' && p.cmdline.contains(&self.marker)),
        );
        note(kill_tree(&roots, KILL_DEADLINE).map(drop));

        note(unmount_all_under(&self.path));
        let mounted = mounts_under(&self.path);
        match mounted {
            Ok(m) if m.is_empty() => {
                if std::env::var(KEEP_ENV).is_ok_and(|v| v == "1") {
                    eprintln!("{KEEP_ENV}=1: keeping {}", self.path.display());
                } else {
                    note(remove_tree(&self.path));
                }
            }
            Ok(m) => note(Err(io::Error::other(format!(
                "not removing {}: still mounted below it: {m:?}",
                self.path.display()
            )))),
            Err(e) => note(Err(e)),
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("TempRoot {}: cleanup failed: {e}", self.path.display());
        }
    }
}

/// Removes a directory tree; a tree that is already gone is fine.
fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("cannot remove {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// Locks a mutex, also after a panic poisoned it (cleanup must run anyway).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
