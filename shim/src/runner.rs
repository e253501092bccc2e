//! The seam between the shim's logic and the processes it runs (runc above all).
//!
//! Inside the shim every child exit is collected by the reaper (the shim is a child subreaper
//! and reaps with `waitpid(-1)`), so nothing may wait for a child on its own: the shim's
//! [`Runner`] hands the wait to the reaper. Tests and one-shot commands (`delete`) use
//! [`DirectRunner`], which waits the ordinary way.

use std::io::{self, Write};
use std::process::{Command, ExitStatus, Output, Stdio};

/// Runs a command to completion.
pub trait Runner: Send + Sync {
    /// Spawns `cmd` with the stdio it was configured with and waits for it to exit.
    fn status(&self, cmd: &mut Command) -> io::Result<ExitStatus>;

    /// Spawns `cmd` with stdout and stderr captured, writes `stdin` to it (or gives it
    /// `/dev/null`), waits, and returns its output.
    fn output(&self, cmd: &mut Command, stdin: Option<&[u8]>) -> io::Result<Output>;
}

/// Waits for children itself: for tests and for processes that are not a subreaper's.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectRunner;

impl Runner for DirectRunner {
    fn status(&self, cmd: &mut Command) -> io::Result<ExitStatus> {
        cmd.status()
    }

    fn output(&self, cmd: &mut Command, stdin: Option<&[u8]>) -> io::Result<Output> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        match stdin {
            None => {
                cmd.stdin(Stdio::null());
                cmd.output()
            }
            Some(input) => {
                cmd.stdin(Stdio::piped());
                let mut child = cmd.spawn()?;
                if let Some(mut w) = child.stdin.take() {
                    w.write_all(input)?;
                }
                child.wait_with_output()
            }
        }
    }
}
