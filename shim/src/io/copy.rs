//! The copy thread: one per process that needs copying, polling all of its descriptor pairs.
//!
//! A pair moves bytes from a source (the stdin fifo, a pipe from the process, a pty master) to
//! a sink (a pipe to the process, a fifo, a log file, a pty master) through one `PIPE_BUF`
//! buffer, so a write to a fifo or pipe is all-or-nothing and two pairs sharing one sink
//! (stdout and stderr into one fifo) never interleave inside a chunk. Every descriptor is
//! non-blocking; the thread sleeps in `poll()` and never spins. A pair ends when its source
//! reaches end-of-file (a pty master's `EIO` once the slave is closed counts as one) and its
//! buffer is flushed, or when its sink breaks (`EPIPE`, `EIO`); a descriptor is closed as soon
//! as no live pair uses it, so the client sees end-of-file on a fifo the moment the process's
//! output has been copied, without waiting for the task to be deleted.
//!
//! The thread exits when no pair is left, or when told to: `finish` stops the input pairs
//! (stdin) at once and lets the output pairs drain until a deadline, then stops everything.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use log::{debug, warn};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::fifo::{pipe, set_nonblocking};
use super::{IoError, COPY_THREAD_STACK};

/// `PIPE_BUF`: writes of at most this size to a pipe or fifo are atomic.
const BUF_SIZE: usize = 4096;

const RUN: u8 = 0;
const DRAIN: u8 = 1;
const STOP: u8 = 2;

/// What the copy thread is to copy, built before it starts.
#[derive(Default)]
pub(crate) struct Plan {
    fds: Vec<OwnedFd>,
    pairs: Vec<PairSpec>,
}

struct PairSpec {
    name: &'static str,
    src: usize,
    dst: usize,
    input: bool,
}

impl Plan {
    /// Adds a descriptor; the returned index names it in [`Plan::add_pair`].
    pub(crate) fn add_fd(&mut self, fd: OwnedFd) -> usize {
        self.fds.push(fd);
        self.fds.len() - 1
    }

    /// Copies from descriptor `src` to descriptor `dst`. `input` marks the stdin pair, which
    /// `finish` stops without draining.
    pub(crate) fn add_pair(&mut self, name: &'static str, src: usize, dst: usize, input: bool) {
        self.pairs.push(PairSpec {
            name,
            src,
            dst,
            input,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// A running copy thread.
pub(crate) struct Copier {
    ctl: Arc<AtomicU8>,
    wake: OwnedFd,
    /// A second read end of the wake-up pipe, so writing to it never meets `EPIPE` (or
    /// `SIGPIPE`) after the thread has gone.
    _wake_reader: OwnedFd,
    done: Arc<Done>,
    thread: Option<JoinHandle<()>>,
}

/// Set when the thread is about to exit (after it closed every descriptor).
#[derive(Default)]
struct Done {
    flag: Mutex<bool>,
    cv: Condvar,
}

/// Sets [`Done`] when dropped, however the thread's function ends.
struct DoneGuard(Arc<Done>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        *self.0.flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.0.cv.notify_all();
    }
}

impl Copier {
    /// Starts the thread; descriptors no pair uses are closed.
    pub(crate) fn spawn(plan: Plan) -> Result<Copier, IoError> {
        let sys = |op: &'static str| move |e: std::io::Error| IoError::Sys { op, cause: e };
        for fd in &plan.fds {
            set_nonblocking(fd).map_err(sys("making a stdio descriptor non-blocking"))?;
        }
        let (wake_r, wake_w) = pipe("making the copy thread's wake-up pipe")?;
        let wake_reader = wake_r
            .try_clone()
            .map_err(sys("duplicating the wake-up pipe"))?;
        set_nonblocking(&wake_r).map_err(sys("making the wake-up pipe non-blocking"))?;
        set_nonblocking(&wake_w).map_err(sys("making the wake-up pipe non-blocking"))?;
        let ctl = Arc::new(AtomicU8::new(RUN));
        let done = Arc::new(Done::default());
        let guard = DoneGuard(done.clone());
        let thread_ctl = ctl.clone();
        let thread = thread::Builder::new()
            .name("corral-io".into())
            .stack_size(COPY_THREAD_STACK)
            .spawn(move || run(plan, thread_ctl, wake_r, guard))
            .map_err(sys("starting the stdio copy thread"))?;
        Ok(Copier {
            ctl,
            wake: wake_w,
            _wake_reader: wake_reader,
            done,
            thread: Some(thread),
        })
    }

    fn signal(&self, state: u8) {
        self.ctl.fetch_max(state, Ordering::SeqCst);
        // A full pipe already holds a wake-up; nothing else can fail here.
        let _ = nix::unistd::write(&self.wake, &[state]);
    }

    /// Stops the stdin pair, waits until every output pair has reached end-of-file and been
    /// flushed or `deadline` passes, then stops the thread and waits for it.
    pub(crate) fn finish(mut self, deadline: Instant) {
        self.signal(DRAIN);
        let mut done = self.done.flag.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!("stdio copy did not finish in time; dropping the rest of the output");
                break;
            }
            done = match self.done.cv.wait_timeout(done, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        drop(done);
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.signal(STOP);
            let _ = t.join();
        }
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Pair {
    name: &'static str,
    src: usize,
    dst: usize,
    input: bool,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl Pair {
    fn pending(&self) -> bool {
        self.start < self.end
    }
}

/// What one step did to a pair.
enum Step {
    Going,
    Done,
}

/// Descriptors shared by pairs, each closed when its last user is gone.
struct Slots {
    fds: Vec<Option<OwnedFd>>,
    users: Vec<usize>,
}

impl Slots {
    fn release(&mut self, i: usize) {
        self.users[i] = self.users[i].saturating_sub(1);
        if self.users[i] == 0 {
            self.fds[i] = None;
        }
    }
}

fn run(plan: Plan, ctl: Arc<AtomicU8>, wake: OwnedFd, done: DoneGuard) {
    let mut slots = Slots {
        users: vec![0; plan.fds.len()],
        fds: plan.fds.into_iter().map(Some).collect(),
    };
    let mut pairs: Vec<Pair> = plan
        .pairs
        .into_iter()
        .map(|p| {
            slots.users[p.src] += 1;
            slots.users[p.dst] += 1;
            Pair {
                name: p.name,
                src: p.src,
                dst: p.dst,
                input: p.input,
                buf: vec![0; BUF_SIZE],
                start: 0,
                end: 0,
                eof: false,
            }
        })
        .collect();
    // Close what no pair uses.
    for i in 0..slots.fds.len() {
        if slots.users[i] == 0 {
            slots.fds[i] = None;
        }
    }

    loop {
        match ctl.load(Ordering::SeqCst) {
            STOP => break,
            DRAIN => pairs.retain(|p| {
                if p.input {
                    slots.release(p.src);
                    slots.release(p.dst);
                }
                !p.input
            }),
            _ => {}
        }
        if pairs.is_empty() {
            break;
        }

        // One poll entry per pair: its sink while it holds data, else its source.
        let revents: Vec<PollFlags> = {
            let mut fds = Vec::with_capacity(pairs.len() + 1);
            fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
            for p in &pairs {
                let (slot, ev) = if p.pending() {
                    (p.dst, PollFlags::POLLOUT)
                } else {
                    (p.src, PollFlags::POLLIN)
                };
                // Every live pair's descriptors are open (released only when it ends).
                let Some(fd) = slots.fds[slot].as_ref() else {
                    continue;
                };
                fds.push(PollFd::new(fd.as_fd(), ev));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    warn!("stdio copy: poll failed: {e}; stopping");
                    break;
                }
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        if revents.len() != pairs.len() + 1 {
            warn!("stdio copy: a descriptor went missing; stopping");
            break;
        }
        if !revents[0].is_empty() {
            let mut b = [0u8; 16];
            while matches!(nix::unistd::read(wake.as_raw_fd(), &mut b), Ok(n) if n > 0) {}
        }
        let mut i = 0;
        let mut k = 1;
        while i < pairs.len() {
            let rev = revents[k];
            k += 1;
            if rev.is_empty() {
                i += 1;
                continue;
            }
            match step(&mut pairs[i], &slots, rev) {
                Step::Going => i += 1,
                Step::Done => {
                    let p = pairs.remove(i);
                    debug!("stdio copy: {} done", p.name);
                    slots.release(p.src);
                    slots.release(p.dst);
                }
            }
        }
    }
    // Every descriptor is closed before `finish` hears of it.
    drop(slots);
    drop(done);
}

/// Moves data for one pair whose polled descriptor reported `rev`.
fn step(p: &mut Pair, slots: &Slots, rev: PollFlags) -> Step {
    let (Some(src), Some(dst)) = (slots.fds[p.src].as_ref(), slots.fds[p.dst].as_ref()) else {
        return Step::Done;
    };
    if !p.pending() {
        match nix::unistd::read(src.as_raw_fd(), &mut p.buf) {
            Ok(0) => p.eof = true,
            Ok(n) => {
                p.start = 0;
                p.end = n;
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {
                // Hung up with nothing to read: the end, whatever read says.
                if rev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)
                    && !rev.contains(PollFlags::POLLIN)
                {
                    p.eof = true;
                }
            }
            // A pty master once every slave descriptor is closed.
            Err(Errno::EIO) => p.eof = true,
            Err(e) => {
                warn!("stdio copy: reading {}: {e}", p.name);
                p.eof = true;
            }
        }
    }
    while p.pending() {
        match nix::unistd::write(dst, &p.buf[p.start..p.end]) {
            Ok(n) => p.start += n,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => break,
            Err(e) => {
                // The reader is gone (EPIPE) or the terminal is (EIO): nothing more to do.
                if e != Errno::EPIPE && e != Errno::EIO {
                    warn!("stdio copy: writing {}: {e}", p.name);
                }
                return Step::Done;
            }
        }
    }
    if !p.pending() {
        p.start = 0;
        p.end = 0;
        if p.eof {
            return Step::Done;
        }
    }
    Step::Going
}
