//! [`Sweeper`]: removes retired bundles on a thread of its own, so a task's `Delete` answers
//! once its bundle is renamed away rather than once every file in it is unlinked (on a disk
//! mounted with `discard`, a few hundred microseconds per directory).

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::bundle::Retired;

/// The sweeping thread's stack: it only walks directories.
const STACK: usize = 64 * 1024;

/// Removes [`Retired`] bundles in the background. The thread starts with the first bundle.
#[derive(Debug, Default)]
pub struct Sweeper {
    queue: Mutex<Option<Sender<Retired>>>,
    pending: Arc<Pending>,
}

/// How many retired bundles are queued or being removed.
#[derive(Debug, Default)]
struct Pending {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Pending {
    fn add(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn done(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.idle.notify_all();
        }
    }
}

impl Sweeper {
    /// Queues `retired` for removal; removes it here when no thread can be had.
    pub fn sweep(&self, retired: Retired) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_none() {
            *queue = self.start();
        }
        let Some(tx) = queue.as_ref() else {
            remove(retired);
            return;
        };
        self.pending.add();
        if let Err(mpsc::SendError(retired)) = tx.send(retired) {
            *queue = None;
            self.pending.done();
            remove(retired);
        }
    }

    fn start(&self) -> Option<Sender<Retired>> {
        let (tx, rx) = mpsc::channel();
        let pending = Arc::clone(&self.pending);
        let spawned = thread::Builder::new()
            .name("bundle-sweeper".into())
            .stack_size(STACK)
            .spawn(move || sweep_all(&rx, &pending));
        match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                log::warn!("starting the bundle sweeper: {e}; removing bundles inline");
                None
            }
        }
    }

    /// Waits up to `timeout` for every queued bundle to be removed; whether they all were.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut n = self.pending.count.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = match self.pending.idle.wait_timeout(n, left) {
                Ok((n, _)) => n,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

fn sweep_all(rx: &Receiver<Retired>, pending: &Pending) {
    while let Ok(retired) = rx.recv() {
        remove(retired);
        pending.done();
    }
}

fn remove(retired: Retired) {
    if let Err(e) = retired.remove() {
        log::error!("failed to delete bundle: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bundle::Bundle;

    #[test]
    fn retired_bundles_are_gone_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let sweeper = Sweeper::default();
        assert!(sweeper.flush(Duration::ZERO), "nothing queued yet");
        for i in 0..20 {
            let b = Bundle::create(&root, &state, "ns", &format!("c{i}"), b"{}").unwrap();
            std::fs::write(b.path.join("address"), b"unix:///x").unwrap();
            let retired = b.retire().unwrap();
            // The name is free at once, before the files are removed.
            assert!(!b.path.exists());
            sweeper.sweep(retired);
        }
        assert!(sweeper.flush(Duration::from_secs(10)));
        for ns_dir in [
            state.join("io.containerd.runtime.v2.task/ns"),
            root.join("io.containerd.runtime.v2.task/ns"),
        ] {
            let left: Vec<_> = std::fs::read_dir(&ns_dir).unwrap().collect();
            assert!(left.is_empty(), "{left:?} left in {}", ns_dir.display());
        }
    }

    #[test]
    fn a_bundle_whose_rootfs_holds_files_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let b = Bundle::create(&root, &state, "ns", "full", b"{}").unwrap();
        std::fs::write(b.rootfs().join("precious"), b"x").unwrap();
        let sweeper = Sweeper::default();
        sweeper.sweep(b.retire().unwrap());
        assert!(sweeper.flush(Duration::from_secs(10)));
        let hidden = state.join("io.containerd.runtime.v2.task/ns/.full");
        assert_eq!(std::fs::read(hidden.join("rootfs/precious")).unwrap(), b"x");
    }
}
