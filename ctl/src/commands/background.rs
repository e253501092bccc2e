//! [`Background`]: a call made on a thread of its own while the command goes on with calls
//! that do not depend on it (one connection carries them all at once), joined where its
//! result is needed.

use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// The stack of a background call's thread: a request, a response, a little decoding.
const STACK: usize = 128 * 1024;

/// A call under way; [`join`](Self::join) gives its result. Dropped unjoined, it is still
/// waited for, so what the result owns (a lease to delete, say) is dealt with before the
/// command goes on.
#[derive(Debug)]
pub struct Background<T: Send + 'static> {
    state: Option<State<T>>,
}

#[derive(Debug)]
enum State<T> {
    Running(JoinHandle<Option<T>>),
    /// No thread could be had: the call ran on the caller's.
    Done(Option<T>),
}

fn take<F>(slot: &Mutex<Option<F>>) -> Option<F> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl<T: Send + 'static> Background<T> {
    /// Starts `call` on a thread named `name`; calls it here when no thread can be had.
    pub fn spawn<F>(name: &str, call: F) -> Background<T>
    where
        F: FnOnce() -> T + Send + 'static,
    {
        // Shared so a failed spawn, which drops its closure, still leaves the call here.
        let slot = Arc::new(Mutex::new(Some(call)));
        let theirs = Arc::clone(&slot);
        let spawned = thread::Builder::new()
            .name(name.to_string())
            .stack_size(STACK)
            .spawn(move || take(&theirs).map(|call| call()));
        let state = match spawned {
            Ok(handle) => State::Running(handle),
            Err(e) => {
                log::debug!("no thread for {name} ({e}); calling inline");
                State::Done(take(&slot).map(|call| call()))
            }
        };
        Background { state: Some(state) }
    }

    /// Waits for the call and gives its result (a panic in it goes on in the caller).
    pub fn join(mut self) -> T {
        match self.state.take() {
            Some(state) => finish(state),
            None => unreachable!("a background call is joined once, by value"),
        }
    }
}

fn finish<T>(state: State<T>) -> T {
    let result = match state {
        State::Done(v) => v,
        State::Running(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
    };
    match result {
        Some(v) => v,
        None => unreachable!("the call is taken out of its slot exactly once"),
    }
}

impl<T: Send + 'static> Drop for Background<T> {
    fn drop(&mut self) {
        if let Some(State::Running(h)) = self.state.take() {
            // The result is dropped here, on the caller's thread, after the call ended.
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn results_come_back_and_calls_overlap() {
        let started = std::time::Instant::now();
        let a = Background::spawn("a", || {
            thread::sleep(Duration::from_millis(200));
            1
        });
        let b = Background::spawn("b", || {
            thread::sleep(Duration::from_millis(200));
            2
        });
        assert_eq!(a.join() + b.join(), 3);
        assert!(started.elapsed() < Duration::from_millis(390));
    }

    #[test]
    fn a_dropped_call_is_still_waited_for() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        drop(Background::spawn("slow", move || {
            thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::SeqCst);
        }));
        assert!(done.load(Ordering::SeqCst));
    }
}
