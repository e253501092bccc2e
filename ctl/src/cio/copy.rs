//! The copying threads of containerd's `copyIO`: the caller's input into the stdin fifo,
//! each output fifo to the caller, with 32 KiB buffers; and ctr's `stdinCloser`, which
//! tells the shim when the input has ended.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use super::fifo::FifoOpener;
use super::CioError;

/// Buffer of one copy (containerd's `bufPool`).
const BUFFER: usize = 32 << 10;

/// Stack of a copying thread (its buffer is on the heap).
const STACK: usize = 64 * 1024;

/// What runs when the input ends.
pub type OnEof = Box<dyn FnOnce() + Send>;

#[derive(Default)]
enum CloserState {
    /// Input still flowing, nothing to run yet.
    #[default]
    Flowing,
    /// The input ended before anything was armed.
    Ended,
    /// Runs when the input ends.
    Armed(OnEof),
    /// Ran (or never will).
    Done,
}

/// ctr's `stdinCloser`: runs a callback (`CloseIO`) once the caller's input has reached its
/// end. The callback can only be armed once the process exists, which may be after the input
/// ended; then it runs when armed.
#[derive(Default)]
pub struct StdinCloser {
    state: Mutex<CloserState>,
}

impl StdinCloser {
    /// Arms `close`; runs it now if the input has ended already.
    pub fn arm(&self, close: OnEof) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::take(&mut *state) {
            CloserState::Ended => {
                *state = CloserState::Done;
                drop(state);
                close();
            }
            CloserState::Done => *state = CloserState::Done,
            CloserState::Flowing | CloserState::Armed(_) => *state = CloserState::Armed(close),
        }
    }

    /// The input has ended: runs the armed callback, or remembers it for [`arm`](Self::arm).
    pub fn ended(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::take(&mut *state) {
            CloserState::Armed(close) => {
                *state = CloserState::Done;
                drop(state);
                close();
            }
            CloserState::Flowing | CloserState::Ended => *state = CloserState::Ended,
            CloserState::Done => *state = CloserState::Done,
        }
    }
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, CioError> {
    thread::Builder::new()
        .name(format!("cio-{name}"))
        .stack_size(STACK)
        .spawn(f)
        .map_err(|e| CioError::io(format!("starting the {name} copy"), e))
}

/// Opens a fifo for a copy: `None` when the opening was cancelled, or failed (logged).
fn open_logged(opener: &FifoOpener) -> Option<File> {
    match opener.open() {
        Ok(file) => file,
        Err(e) => {
            log::error!(
                "failed to open {} fifo {}: {e}",
                opener.name(),
                opener.path().display()
            );
            None
        }
    }
}

/// Copies `input` into the stdin fifo once the shim has it open; at the input's end closes
/// the fifo and tells `closer`. Not waited for: the input may never end.
pub fn spawn_input(
    opener: Arc<FifoOpener>,
    mut input: Box<dyn Read + Send>,
    closer: Arc<StdinCloser>,
) -> Result<(), CioError> {
    spawn("stdin", move || {
        let Some(mut fifo) = open_logged(&opener) else {
            return;
        };
        let mut buf = vec![0u8; BUFFER];
        let ended = loop {
            match input.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    if let Err(e) = fifo.write_all(&buf[..n]) {
                        log::debug!("copying stdin: {e}");
                        break false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("reading stdin: {e}");
                    break false;
                }
            }
        };
        drop(fifo);
        if ended {
            closer.ended();
        }
    })
    .map(drop)
}

/// Copies an output fifo to `output` until the shim's side is closed (or `output` fails).
pub fn spawn_output(
    opener: Arc<FifoOpener>,
    mut output: Box<dyn Write + Send>,
    name: &'static str,
) -> Result<JoinHandle<()>, CioError> {
    spawn(name, move || {
        let Some(mut fifo) = open_logged(&opener) else {
            return;
        };
        let mut buf = vec![0u8; BUFFER];
        loop {
            match fifo.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                        log::debug!("copying {name}: {e}");
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("reading the {name} fifo: {e}");
                    break;
                }
            }
        }
    })
}
