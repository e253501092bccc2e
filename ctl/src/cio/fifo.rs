//! The fifos a process's streams go through: a new set in a private directory
//! (`cio.NewFIFOSetInDir`), and opening one end as containerd's `fifo.OpenFifo` does with
//! `O_NONBLOCK`: created if missing, opened in the background (here: on the copying thread),
//! and an open still waiting for the shim can be given up.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::stat::Mode;

use super::{CioError, Config};

/// Where fifo sets are made when no `--fifo-dir` is given: Corral's counterpart of
/// containerd's `/run/containerd/fifo`.
pub const DEFAULT_FIFO_DIR: &str = "/run/corral/fifo";

/// How often a cancelled open tries again to wake its thread (containerd's fifo package
/// retries after a `Gosched`).
const UNBLOCK_RETRY: Duration = Duration::from_millis(5);

/// A new fifo set: a directory of its own (mode 0700) under the fifo directory, and the
/// paths `<id>-stdin`, `<id>-stdout`, `<id>-stderr` in it. The fifos themselves are made
/// when they are opened.
#[derive(Debug)]
pub struct FifoSet {
    dir: PathBuf,
    config: Config,
}

impl FifoSet {
    /// Makes the set's directory under `root` (created with mode 0700 if missing; the default
    /// when empty), named with a random number as Go's `os.MkdirTemp` names it.
    pub fn new(root: &Path, id: &str, terminal: bool) -> Result<FifoSet, CioError> {
        let root = if root.as_os_str().is_empty() {
            Path::new(DEFAULT_FIFO_DIR)
        } else {
            root
        };
        // Missing parents get 0711, as corrald makes its state directory: the default
        // fifo directory is inside it, and corralctl may run before corrald ever did.
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)
                .map_err(|e| CioError::io(format!("mkdir {}", parent.display()), e))?;
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| CioError::io(format!("mkdir {}", root.display()), e))?;
        let mut tries = 0;
        let dir = loop {
            let dir = root.join(random_name());
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => tries += 1,
                Err(e) => {
                    return Err(CioError::io(
                        format!("mkdirtemp {}", root.join("*").display()),
                        e,
                    ))
                }
            }
        };
        let path = |stream: &str| dir.join(format!("{id}-{stream}")).display().to_string();
        let config = Config {
            terminal,
            stdin: path("stdin"),
            stdout: path("stdout"),
            stderr: path("stderr"),
        };
        Ok(FifoSet { dir, config })
    }

    /// The set's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The set's paths.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Removes the directory with everything in it.
    pub fn remove(self) -> Result<(), CioError> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(CioError::io(format!("removing {}", self.dir.display()), e))
            }
            _ => Ok(()),
        }
    }
}

/// A decimal `u32` from the kernel's random source, as Go names temporary directories.
fn random_name() -> String {
    let bytes = crate::image::lease::random_bytes(4);
    let mut n = 0u32;
    for b in bytes {
        n = (n << 8) | u32::from(b);
    }
    n.to_string()
}

/// Removes those of `paths` that are fifos, then their directories if that leaves them
/// empty (the containerd client's `loadFifos` closer). The first failure to remove a fifo
/// is returned; a directory that stays is not an error.
pub fn remove_fifos(paths: &[PathBuf]) -> Result<(), CioError> {
    let mut first = None;
    let mut dirs = BTreeSet::new();
    for path in paths {
        let is_fifo = fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
        if !is_fifo {
            continue;
        }
        if let Err(e) = fs::remove_file(path) {
            first.get_or_insert(CioError::io(format!("remove {}", path.display()), e));
        }
        if let Some(dir) = path.parent() {
            dirs.insert(dir.to_path_buf());
        }
    }
    for dir in dirs {
        // Not empty (or gone): left as it is, as containerd leaves it.
        let _ = fs::remove_dir(&dir);
    }
    first.map_or(Ok(()), Err)
}

#[derive(Debug, Default)]
struct OpenState {
    /// The open is no longer wanted.
    cancelled: bool,
    /// The copying thread is past its open (or will never start it).
    settled: bool,
}

/// One end of a fifo, opened on the copying thread and cancellable while the open waits for
/// the other side. The fifo is reached through a handle (`O_PATH`) taken when the opener is
/// made, so removing the path does not strand a waiting open.
#[derive(Debug)]
pub struct FifoOpener {
    path: PathBuf,
    name: &'static str,
    write: bool,
    handle: File,
    state: Mutex<OpenState>,
    changed: Condvar,
}

impl FifoOpener {
    /// Makes the fifo at `path` (mode 0700) unless something is there already, and takes a
    /// handle on it. `name` (`stdin`, ...) is for messages; `write` is the end to open.
    pub fn new(
        path: &Path,
        name: &'static str,
        write: bool,
    ) -> Result<std::sync::Arc<Self>, CioError> {
        let fail = |e: io::Error| CioError::io(format!("failed to open {name} fifo"), e);
        if fs::symlink_metadata(path).is_err() {
            match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(CioError::io(
                        format!(
                            "failed to open {name} fifo: error creating fifo {}",
                            path.display()
                        ),
                        e,
                    ))
                }
            }
        }
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_PATH)
            .open(path)
            .map_err(fail)?;
        Ok(std::sync::Arc::new(FifoOpener {
            path: path.to_path_buf(),
            name,
            write,
            handle,
            state: Mutex::new(OpenState::default()),
            changed: Condvar::new(),
        }))
    }

    /// The fifo's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stream's name (`stdin`, `stdout`, `stderr`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn state(&self) -> MutexGuard<'_, OpenState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle_path(&self) -> String {
        format!("/proc/self/fd/{}", self.handle.as_raw_fd())
    }

    /// Opens the end, blocking until the other side opens too (or at once if it has).
    /// `None` when the open was cancelled before or while it waited.
    pub fn open(&self) -> io::Result<Option<File>> {
        {
            let mut s = self.state();
            if s.cancelled {
                s.settled = true;
                self.changed.notify_all();
                return Ok(None);
            }
        }
        let opened = OpenOptions::new()
            .read(!self.write)
            .write(self.write)
            .open(self.handle_path());
        let mut s = self.state();
        s.settled = true;
        self.changed.notify_all();
        if s.cancelled {
            return Ok(None);
        }
        opened.map(Some)
    }

    /// Gives up an open that has not happened yet: wakes a thread waiting in it by briefly
    /// opening the other side without blocking, until the thread has noticed. An end
    /// already open stays open.
    pub fn cancel(&self) {
        let mut s = self.state();
        if s.settled {
            return;
        }
        s.cancelled = true;
        while !s.settled {
            drop(s);
            // A reader waiting in open wakes when a writer appears, and the other way
            // round; this handle is closed again at once.
            let _ = OpenOptions::new()
                .read(self.write)
                .write(!self.write)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(self.handle_path());
            s = self.state();
            if s.settled {
                break;
            }
            s = match self.changed.wait_timeout(s, UNBLOCK_RETRY) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}
