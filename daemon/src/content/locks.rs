//! One writer per ingest reference at a time (containerd's `content/local/locks.go`): an
//! in-process table of held references, shared by the clones of one [`Store`].
//!
//! A held reference is a [`RefLock`] guard; dropping it releases the reference, so no error
//! path can leak one. Taking a held reference waits up to the store's lock wait (containerd
//! retries ten times with growing random sleeps, about half a second in all) for its release,
//! then fails with containerd's `Unavailable` error.
//!
//! [`Store`]: super::Store

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::error::{ContentError, ContentResult};
use crate::metadata::text_time;

/// The references held in one store.
#[derive(Debug, Default)]
pub(crate) struct RefLocks {
    /// Held reference -> since when.
    held: Mutex<HashMap<String, SystemTime>>,
    /// Signalled whenever a reference is released.
    released: Condvar,
}

/// A held reference; dropping it releases the reference.
#[derive(Debug)]
pub(crate) struct RefLock {
    locks: Arc<RefLocks>,
    reference: String,
}

impl RefLocks {
    fn table(&self) -> MutexGuard<'_, HashMap<String, SystemTime>> {
        // The table stays consistent whatever panicked while holding it: every change is
        // one insert or one remove.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `reference`, waiting up to `wait` for another holder to release it.
    pub(crate) fn lock(
        self: &Arc<Self>,
        reference: &str,
        wait: Duration,
    ) -> ContentResult<RefLock> {
        let deadline = Instant::now() + wait;
        let mut held = self.table();
        loop {
            let Some(&since) = held.get(reference) else {
                held.insert(reference.to_string(), SystemTime::now());
                return Ok(RefLock {
                    locks: Arc::clone(self),
                    reference: reference.to_string(),
                });
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(locked(reference, since));
            }
            held = self
                .released
                .wait_timeout(held, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// True when `reference` is held (for tests and diagnostics).
    pub(crate) fn is_held(&self, reference: &str) -> bool {
        self.table().contains_key(reference)
    }
}

/// containerd's `ref <ref> locked for <duration> (since <time>): unavailable`.
fn locked(reference: &str, since: SystemTime) -> ContentError {
    let held_for = SystemTime::now().duration_since(since).unwrap_or_default();
    let since = text_time::format(since.into()).unwrap_or_else(|e| e.to_string());
    ContentError::Unavailable(format!(
        "ref {reference} locked for {held_for:?} (since {since})"
    ))
}

impl Drop for RefLock {
    fn drop(&mut self) {
        self.locks.table().remove(&self.reference);
        self.locks.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_protocols::rpc::Code;

    #[test]
    fn one_holder_per_reference() {
        let locks = Arc::new(RefLocks::default());
        let a = locks.lock("default/1/a", Duration::ZERO).unwrap();
        let b = locks.lock("default/1/b", Duration::ZERO).unwrap();
        let err = locks.lock("default/1/a", Duration::ZERO).unwrap_err();
        assert_eq!(err.code(), Code::UNAVAILABLE);
        let msg = err.to_string();
        assert!(msg.starts_with("ref default/1/a locked for "), "{msg}");
        assert!(msg.ends_with("Z): unavailable"), "{msg}");
        drop(a);
        assert!(!locks.is_held("default/1/a"));
        assert!(locks.is_held("default/1/b"));
        let _a = locks.lock("default/1/a", Duration::ZERO).unwrap();
        drop(b);
        assert!(!locks.is_held("default/1/b"));
    }

    #[test]
    fn a_waiter_gets_the_reference_when_it_is_released() {
        let locks = Arc::new(RefLocks::default());
        let first = locks.lock("r", Duration::ZERO).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || {
                tx.send(()).unwrap();
                locks.lock("r", Duration::from_secs(30)).map(|_| ())
            })
        };
        rx.recv().unwrap();
        drop(first);
        waiter.join().unwrap().unwrap();
        assert!(!locks.is_held("r"));
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline() {
        let locks = Arc::new(RefLocks::default());
        let _held = locks.lock("r", Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = locks.lock("r", Duration::from_millis(50)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(err.code(), Code::UNAVAILABLE);
    }
}
