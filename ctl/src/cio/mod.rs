//! ctr's client IO (containerd's `cio` package, 1.6.20) on plain threads: how a task's or an
//! exec's standard streams reach the caller.
//!
//! | ctr's choice | what the shim is given | what runs here |
//! |---|---|---|
//! | plain (`cio.NewCreator(WithStreams(stdin, stdout, stderr))`) | three fifos in a new private directory under the fifo directory | one thread per stream |
//! | `-t` (`WithStreams(con, con, nil)`, `WithTerminal`) | stdin and stdout fifos, no stderr, `terminal` | two threads, the caller's terminal raw ([`console`]) |
//! | `--null-io` (`cio.NullIO`) | nothing | nothing |
//! | `--log-uri` (`cio.LogURI`) | the URI as stdout and stderr ([`log_uri`]) | nothing |
//! | `attach` (`cio.NewAttach(WithStdio)`) | (the task's own fifos) | one thread per stream |
//! | `tasks delete` (`cio.Load`) | (the task's own fifos) | nothing; the fifos are removed at the end |
//!
//! A process's [`Io`] follows containerd's `cio.IO` contract: [`Io::cancel`] gives up fifo
//! opens still waiting for the shim, [`Io::wait`] waits until the output has been copied to
//! its end, [`Io::close`] removes the fifos. Signals (forwarding, window changes) are in
//! [`signals`].

pub mod console;
mod copy;
pub mod fifo;
pub mod log_uri;
pub mod signals;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use console::{Console, WinSize};
pub use fifo::{FifoSet, DEFAULT_FIFO_DIR};

use copy::{spawn_input, spawn_output, StdinCloser};
use fifo::FifoOpener;

/// Which way one stream's data flows, with its end on the caller's side.
enum Direction {
    /// From the caller into the process's stdin fifo.
    Input(Box<dyn Read + Send>),
    /// From a process's output fifo to the caller.
    Output(Box<dyn Write + Send>),
}

/// Why client IO could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CioError {
    /// The arguments cannot work together or do not parse (`errdefs.ErrInvalidArgument`).
    #[error("{0}")]
    InvalidArgument(String),
    /// A terminal was asked for but none of the standard streams is one
    /// (containerd/console's `ErrNotAConsole`).
    #[error("provided file is not a console")]
    NotAConsole,
    /// A system call failed: `<what>: <reason>`.
    #[error("{what}: {}", crate::commands::io_reason(source))]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: io::Error,
    },
}

impl CioError {
    /// An I/O failure while doing `what`.
    pub fn io(what: impl Into<String>, source: impl Into<io::Error>) -> CioError {
        CioError::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The stream paths a process is created with (`cio.Config`); `""` = not connected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Whether a terminal was allocated.
    pub terminal: bool,
    /// The stdin path.
    pub stdin: String,
    /// The stdout path (or URI).
    pub stdout: String,
    /// The stderr path (or URI).
    pub stderr: String,
}

/// Where a process's streams are copied from and to (`cio.Streams`); `None` leaves a
/// stream unconnected.
#[derive(Default)]
pub struct Streams {
    /// Copied into the process's stdin.
    pub stdin: Option<Box<dyn Read + Send>>,
    /// Receives the process's stdout.
    pub stdout: Option<Box<dyn Write + Send>>,
    /// Receives the process's stderr (never read with a terminal).
    pub stderr: Option<Box<dyn Write + Send>>,
    /// A terminal is allocated (`cio.WithTerminal`).
    pub terminal: bool,
}

impl Streams {
    /// The caller's own stdin, stdout and stderr (`cio.WithStdio`), unbuffered.
    pub fn stdio() -> Result<Streams, CioError> {
        Ok(Streams {
            stdin: Some(Box::new(dup_std(io::stdin().as_fd(), "stdin")?)),
            stdout: Some(Box::new(dup_std(io::stdout().as_fd(), "stdout")?)),
            stderr: Some(Box::new(dup_std(io::stderr().as_fd(), "stderr")?)),
            terminal: false,
        })
    }

    /// A terminal: input from and output to `console`, no stderr
    /// (`WithStreams(con, con, nil)`, `WithTerminal`).
    pub fn terminal(console: &Console) -> Result<Streams, CioError> {
        Ok(Streams {
            stdin: Some(Box::new(console.file()?)),
            stdout: Some(Box::new(console.file()?)),
            stderr: None,
            terminal: true,
        })
    }
}

fn dup_std(fd: std::os::fd::BorrowedFd<'_>, name: &str) -> Result<File, CioError> {
    let owned: OwnedFd = fd
        .try_clone_to_owned()
        .map_err(|e| CioError::io(format!("duplicating {name}"), e))?;
    Ok(File::from(owned))
}

/// What [`Io::close`] removes.
#[derive(Debug)]
enum Cleanup {
    /// Nothing.
    None,
    /// The private directory a new fifo set was made in.
    Dir(FifoSet),
    /// A task's fifos that are still fifos, then their directories if empty
    /// (the client's `loadFifos`).
    Fifos(Vec<PathBuf>),
}

/// The IO of one process: its configuration, and the threads copying its streams.
pub struct Io {
    config: Config,
    openers: Vec<Arc<FifoOpener>>,
    outputs: Vec<JoinHandle<()>>,
    stdin_closer: Option<Arc<StdinCloser>>,
    cleanup: Cleanup,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("config", &self.config)
            .field("copying", &self.outputs.len())
            .field("cleanup", &self.cleanup)
            .finish()
    }
}

impl Io {
    /// A new fifo set for process `id` in a private directory under `fifo_dir` (the default
    /// when empty), with copying started (`cio.NewCreator(...)(id)`). The fifos exist when
    /// this returns; the copying threads open them as the shim opens its ends.
    pub fn create(fifo_dir: &Path, id: &str, streams: Streams) -> Result<Io, CioError> {
        let set = FifoSet::new(fifo_dir, id, streams.terminal)?;
        let mut config = set.config().clone();
        if streams.stdin.is_none() {
            config.stdin.clear();
        }
        if streams.stdout.is_none() {
            config.stdout.clear();
        }
        if streams.stderr.is_none() {
            config.stderr.clear();
        }
        let mut io = Io::without_copies(config, Cleanup::Dir(set));
        if let Err(e) = io.start_copies(streams) {
            if let Err(c) = io.close() {
                log::warn!("{c}");
            }
            return Err(e);
        }
        Ok(io)
    }

    /// Copies the streams of a running process whose fifos are `config`'s
    /// (`cio.NewAttach(...)` on the task's fifo set).
    pub fn attach(config: Config, streams: Streams) -> Result<Io, CioError> {
        let cleanup = Cleanup::Fifos(fifo_paths(&config));
        let mut io = Io::without_copies(config, cleanup);
        io.start_copies(streams)?;
        Ok(io)
    }

    /// The IO of a process whose fifos are `config`'s, not copied; [`close`](Self::close)
    /// removes them (`cio.Load`).
    pub fn load(config: Config) -> Io {
        let cleanup = Cleanup::Fifos(fifo_paths(&config));
        Io::without_copies(config, cleanup)
    }

    /// Nothing connected (`cio.NullIO`).
    pub fn null() -> Io {
        Io::without_copies(Config::default(), Cleanup::None)
    }

    /// The shim writes stdout and stderr to `uri` itself (`cio.LogURI`); `uri` is read as
    /// Go's `url.Parse` reads it and given on as its `String()`.
    pub fn log_uri(uri: &str) -> Result<Io, CioError> {
        let uri = log_uri::normalize(uri)?;
        let config = Config {
            stdout: uri.clone(),
            stderr: uri,
            ..Default::default()
        };
        Ok(Io::without_copies(config, Cleanup::None))
    }

    fn without_copies(config: Config, cleanup: Cleanup) -> Io {
        Io {
            config,
            openers: Vec::new(),
            outputs: Vec::new(),
            stdin_closer: None,
            cleanup,
        }
    }

    /// containerd's `copyIO`: opens each connected fifo (creating a missing one) and starts
    /// its copying thread. Stderr is not read with a terminal. On failure the copies started
    /// are given up and waited for.
    fn start_copies(&mut self, streams: Streams) -> Result<(), CioError> {
        let Streams {
            stdin,
            stdout,
            stderr,
            ..
        } = streams;
        let stderr = stderr.filter(|_| !self.config.terminal);
        let plan = [
            (
                "stdin",
                self.config.stdin.clone(),
                stdin.map(Direction::Input),
            ),
            (
                "stdout",
                self.config.stdout.clone(),
                stdout.map(Direction::Output),
            ),
            (
                "stderr",
                self.config.stderr.clone(),
                stderr.map(Direction::Output),
            ),
        ];
        for (name, path, direction) in plan {
            let Some(direction) = direction.filter(|_| !path.is_empty()) else {
                continue;
            };
            if let Err(e) = self.start_copy(name, Path::new(&path), direction) {
                self.cancel();
                self.wait();
                return Err(e);
            }
        }
        Ok(())
    }

    fn start_copy(
        &mut self,
        name: &'static str,
        path: &Path,
        direction: Direction,
    ) -> Result<(), CioError> {
        match direction {
            Direction::Input(reader) => {
                let opener = FifoOpener::new(path, name, true)?;
                let closer = Arc::new(StdinCloser::default());
                spawn_input(Arc::clone(&opener), reader, Arc::clone(&closer))?;
                self.openers.push(opener);
                self.stdin_closer = Some(closer);
            }
            Direction::Output(writer) => {
                let opener = FifoOpener::new(path, name, false)?;
                let handle = spawn_output(Arc::clone(&opener), writer, name)?;
                self.openers.push(opener);
                self.outputs.push(handle);
            }
        }
        Ok(())
    }

    /// The paths to create the process with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs `close` once the caller's stdin has ended (ctr's `stdinCloser`, which sends
    /// `CloseIO`); at once if it ended already. Does nothing when stdin is not copied.
    pub fn on_stdin_eof(&self, close: impl FnOnce() + Send + 'static) {
        if let Some(closer) = &self.stdin_closer {
            closer.arm(Box::new(close));
        }
    }

    /// Gives up the fifo opens still waiting for the shim (`IO.Cancel`); streams already
    /// open are copied to their end.
    pub fn cancel(&self) {
        for opener in &self.openers {
            opener.cancel();
        }
    }

    /// Waits until stdout and stderr are copied to their end (`IO.Wait`). Stdin is not
    /// waited for: the caller's input may never end.
    pub fn wait(&mut self) {
        for handle in self.outputs.drain(..) {
            if handle.join().is_err() {
                log::error!("a copying thread panicked");
            }
        }
    }

    /// Removes the fifos (`IO.Close`): a private directory entirely; a task's fifos (those
    /// still fifos) and then their directories if empty.
    pub fn close(&mut self) -> Result<(), CioError> {
        remove(&mut self.cleanup)
    }
}

fn fifo_paths(config: &Config) -> Vec<PathBuf> {
    [&config.stdin, &config.stdout, &config.stderr]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn remove(cleanup: &mut Cleanup) -> Result<(), CioError> {
    match std::mem::replace(cleanup, Cleanup::None) {
        Cleanup::None => Ok(()),
        Cleanup::Dir(set) => set.remove(),
        Cleanup::Fifos(paths) => fifo::remove_fifos(&paths),
    }
}

#[cfg(test)]
mod tests;
