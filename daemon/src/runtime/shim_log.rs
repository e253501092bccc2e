//! The shims' logs: each bundle has a fifo `log` that its shim writes its log into (the shim
//! points its stderr at it), and corrald copies what comes out onto its own stderr, as
//! containerd does. One thread serves every shim, polling their fifos, so a hundred shims
//! cost no more threads than one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

/// The log fifos being copied, and a pipe that wakes the copier when the set changes.
pub struct ShimLogs {
    inner: Arc<Inner>,
}

struct Inner {
    fifos: Mutex<HashMap<PathBuf, File>>,
    wake_tx: OwnedFd,
    wake_rx: OwnedFd,
    running: Mutex<bool>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for ShimLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimLogs").finish_non_exhaustive()
    }
}

impl ShimLogs {
    /// A copier with no fifos yet; its thread starts with the first one.
    pub fn new() -> io::Result<ShimLogs> {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        Ok(ShimLogs {
            inner: Arc::new(Inner {
                fifos: Mutex::default(),
                wake_tx: tx,
                wake_rx: rx,
                running: Mutex::new(false),
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// Creates (if needed) and opens `<bundle>/log` as containerd does (read-write, so it
    /// never reads as ended between two writers), and copies it from now on.
    pub fn add(&self, bundle: &Path) -> io::Result<()> {
        let path = bundle.join("log");
        match nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(io::Error::other(format!("mkfifo {}: {e}", path.display()))),
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)?;
        if let Ok(mut fifos) = self.inner.fifos.lock() {
            fifos.insert(bundle.to_path_buf(), file);
        }
        self.ensure_thread()?;
        self.wake();
        Ok(())
    }

    /// Stops copying the log of `bundle`, after draining what is buffered.
    pub fn remove(&self, bundle: &Path) {
        let file = self
            .inner
            .fifos
            .lock()
            .ok()
            .and_then(|mut f| f.remove(bundle));
        if let Some(mut f) = file {
            copy_available(&mut f);
        }
        self.wake();
    }

    /// How many logs are being copied.
    pub fn len(&self) -> usize {
        self.inner.fifos.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// Whether no log is being copied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn wake(&self) {
        let _ = nix::unistd::write(self.inner.wake_tx.as_fd(), &[1u8]);
    }

    fn ensure_thread(&self) -> io::Result<()> {
        let mut running = self
            .inner
            .running
            .lock()
            .map_err(|_| io::Error::other("shim log state poisoned"))?;
        if *running {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        std::thread::Builder::new()
            .name("shim-logs".into())
            .stack_size(64 * 1024)
            .spawn(move || copy_loop(&inner))?;
        *running = true;
        Ok(())
    }
}

impl Drop for ShimLogs {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        if let Ok(mut f) = self.inner.fifos.lock() {
            f.clear();
        }
        self.wake();
    }
}

/// Copies whatever `f` has now onto stderr.
fn copy_available(f: &mut File) {
    let mut buf = [0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let _ = io::stderr().write_all(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn copy_loop(inner: &Inner) {
    while !inner.stopped.load(Ordering::SeqCst) {
        // Duplicates, so the set can change while this thread waits.
        let files: Vec<File> = match inner.fifos.lock() {
            Ok(f) => f.values().filter_map(|f| f.try_clone().ok()).collect(),
            Err(_) => return,
        };
        let mut fds = Vec::with_capacity(files.len() + 1);
        fds.push(PollFd::new(inner.wake_rx.as_fd(), PollFlags::POLLIN));
        for f in &files {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("shim logs: poll: {e}");
                return;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            let mut drain = [0u8; 64];
            while matches!(nix::unistd::read(inner.wake_rx.as_raw_fd(), &mut drain), Ok(n) if n > 0)
            {
            }
        }
        for (i, mut f) in files.into_iter().enumerate() {
            if ready[i + 1] {
                copy_available(&mut f);
            }
        }
    }
}
