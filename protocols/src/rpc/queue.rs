//! A small bounded queue between a connection's reader thread and the thread that consumes a
//! stream, with an end marker that carries why the stream ended.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::status::Status;

/// What a pop yields.
#[derive(Debug)]
pub(crate) enum Pop<T> {
    Item(T),
    /// The producer closed the queue: `None` for a clean end, or the reason it failed.
    End(Option<Status>),
    TimedOut,
}

/// Why a push failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// Still full after the push's timeout.
    Full,
    /// The queue was closed; nothing more is taken.
    Closed,
}

struct State<T> {
    items: VecDeque<T>,
    end: Option<Option<Status>>,
    /// Threads waiting in `pop` / `push`: a change wakes someone only when someone waits, so
    /// a stream of messages between two busy threads costs no wake-up system call each.
    poppers: usize,
    pushers: usize,
}

pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    capacity: usize,
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                end: None,
                poppers: 0,
                pushers: 0,
            }),
            changed: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `item`, waiting up to `timeout` for room.
    pub(crate) fn push(&self, item: T, timeout: Duration) -> Result<(), PushError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock().map_err(|_| PushError::Closed)?;
        loop {
            if st.end.is_some() {
                return Err(PushError::Closed);
            }
            if st.items.len() < self.capacity {
                st.items.push_back(item);
                if st.poppers > 0 {
                    self.changed.notify_all();
                }
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PushError::Full);
            }
            st.pushers += 1;
            let woken = self.changed.wait_timeout(st, left);
            st = woken.map_err(|_| PushError::Closed)?.0;
            st.pushers -= 1;
        }
    }

    /// Marks the end of the stream; the first reason given wins. Items already queued are
    /// still handed out before the end.
    pub(crate) fn close(&self, reason: Option<Status>) {
        if let Ok(mut st) = self.state.lock() {
            if st.end.is_none() {
                st.end = Some(reason);
            }
        }
        self.changed.notify_all();
    }

    /// Like [`close`](Self::close), but drops what is queued: for a consumer that went away.
    pub(crate) fn abandon(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.items.clear();
            if st.end.is_none() {
                st.end = Some(None);
            }
        }
        self.changed.notify_all();
    }

    /// Takes the next item, waiting up to `timeout` (forever with `None`).
    pub(crate) fn pop(&self, timeout: Option<Duration>) -> Pop<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let Ok(mut st) = self.state.lock() else {
            return Pop::End(Some(Status::internal("stream state poisoned")));
        };
        loop {
            if let Some(item) = st.items.pop_front() {
                if st.pushers > 0 {
                    self.changed.notify_all();
                }
                return Pop::Item(item);
            }
            if let Some(end) = &st.end {
                return Pop::End(end.clone());
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Pop::TimedOut;
                    }
                    Some(left)
                }
            };
            st.poppers += 1;
            let woken = match left {
                None => self.changed.wait(st).ok(),
                Some(left) => self.changed.wait_timeout(st, left).ok().map(|(g, _)| g),
            };
            st = match woken {
                Some(g) => g,
                None => return Pop::End(Some(Status::internal("stream state poisoned"))),
            };
            st.poppers -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_then_end() {
        let q = Queue::new(2);
        q.push(1, Duration::ZERO).unwrap();
        q.push(2, Duration::ZERO).unwrap();
        assert_eq!(q.push(3, Duration::from_millis(5)), Err(PushError::Full));
        q.close(Some(Status::cancelled("gone")));
        assert_eq!(q.push(4, Duration::ZERO), Err(PushError::Closed));
        assert!(matches!(q.pop(None), Pop::Item(1)));
        assert!(matches!(q.pop(None), Pop::Item(2)));
        assert!(matches!(q.pop(None), Pop::End(Some(_))));
    }

    #[test]
    fn pop_times_out_and_a_waiting_push_gets_room() {
        let q = std::sync::Arc::new(Queue::new(1));
        assert!(matches!(
            q.pop(Some(Duration::from_millis(5))),
            Pop::TimedOut
        ));
        q.push(1, Duration::ZERO).unwrap();
        let q2 = q.clone();
        let h = std::thread::spawn(move || q2.push(2, Duration::from_secs(30)));
        assert!(matches!(q.pop(None), Pop::Item(1)));
        h.join().unwrap().unwrap();
        assert!(matches!(q.pop(None), Pop::Item(2)));
    }
}
