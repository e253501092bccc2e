//! Handler threads: taken from the idle ones or spawned, and gone after a few idle seconds, so
//! an idle process keeps none and a call that blocks never holds up another.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    idle_timeout: Duration,
    stack_size: usize,
    name: String,
}

/// A pool of handler threads without a fixed size; callers cap the work they hand it.
#[derive(Clone)]
pub(crate) struct Pool(Arc<Shared>);

impl Pool {
    pub(crate) fn new(name: &str, idle_timeout: Duration, stack_size: usize) -> Self {
        Pool(Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
                threads: 0,
            }),
            wake: Condvar::new(),
            idle_timeout,
            stack_size,
            name: name.to_string(),
        }))
    }

    /// Runs `job` on an idle thread, or on a new one when none is idle.
    pub(crate) fn execute(&self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let job: Job = Box::new(job);
        {
            let mut st = self
                .0
                .state
                .lock()
                .map_err(|_| io::Error::other("handler pool poisoned"))?;
            if st.idle > st.jobs.len() {
                st.jobs.push_back(job);
                self.0.wake.notify_one();
                return Ok(());
            }
            st.threads += 1;
        }
        let shared = Arc::clone(&self.0);
        let spawned = thread::Builder::new()
            .name(self.0.name.clone())
            .stack_size(self.0.stack_size)
            .spawn(move || worker(shared, job));
        if let Err(e) = spawned {
            if let Ok(mut st) = self.0.state.lock() {
                st.threads -= 1;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Threads alive now (busy or idle).
    pub(crate) fn threads(&self) -> usize {
        self.0.state.lock().map(|s| s.threads).unwrap_or(0)
    }
}

fn worker(shared: Arc<Shared>, first: Job) {
    // Keeps the thread count right even if a job unwinds.
    struct Leave<'a>(&'a Shared);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            if let Ok(mut st) = self.0.state.lock() {
                st.threads -= 1;
            }
        }
    }
    let _leave = Leave(&shared);
    let mut job = first;
    loop {
        job();
        let Ok(mut st) = shared.state.lock() else {
            return;
        };
        job = loop {
            if let Some(next) = st.jobs.pop_front() {
                break next;
            }
            st.idle += 1;
            let waited = shared.wake.wait_timeout(st, shared.idle_timeout);
            let Ok((guard, timeout)) = waited else {
                return;
            };
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                return;
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn blocked_jobs_do_not_starve_new_ones_and_idle_threads_exit() {
        let pool = Pool::new("t", Duration::from_millis(50), 64 * 1024);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        pool.execute(move || {
            let _ = release_rx.recv();
        })
        .unwrap();
        // A second job runs while the first still blocks.
        pool.execute(move || done_tx.send(()).unwrap()).unwrap();
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(pool.threads(), 2);
        release_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.threads() > 0 {
            assert!(Instant::now() < deadline, "idle threads did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn idle_threads_are_reused() {
        let pool = Pool::new("t", Duration::from_secs(30), 64 * 1024);
        for _ in 0..20 {
            let (tx, rx) = mpsc::channel();
            pool.execute(move || tx.send(()).unwrap()).unwrap();
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
            // Let the worker park before the next job, so reuse is what we measure.
            let deadline = Instant::now() + Duration::from_secs(10);
            while pool.0.state.lock().unwrap().idle == 0 {
                assert!(Instant::now() < deadline);
                thread::yield_now();
            }
        }
        assert_eq!(pool.threads(), 1);
    }
}
