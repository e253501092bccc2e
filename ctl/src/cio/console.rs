//! The caller's terminal, as containerd's `console` package handles it for ctr: found among
//! the standard streams, put in raw mode for `-t` and restored afterwards, and its window
//! size read for `ResizePty`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;

use nix::sys::termios::{self, SetArg, Termios};

/// Terminal settings as plain data (nix's `Termios` is not `Sync`).
type Settings = nix::libc::termios;

use super::CioError;

/// A terminal's window size (containerd/console's `WinSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

// `TIOCGWINSZ`: nix has no call that reads a terminal's window size.
nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// A terminal and the settings it had when it was found, which [`Console::reset`] puts
/// back.
#[derive(Debug)]
pub struct Console {
    file: File,
    original: Settings,
}

impl Console {
    /// The first of stderr, stdout and stdin that is a terminal (containerd/console's
    /// `Current`, which tries them in that order).
    pub fn current() -> Result<Console, CioError> {
        let (stderr, stdout, stdin) = (io::stderr(), io::stdout(), io::stdin());
        let streams: [BorrowedFd<'_>; 3] = [stderr.as_fd(), stdout.as_fd(), stdin.as_fd()];
        let found = streams.into_iter().find_map(|fd| Console::from_fd(fd).ok());
        found.ok_or(CioError::NotAConsole)
    }

    /// `fd` as a console, if it is a terminal.
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Console, CioError> {
        let original: Settings = termios::tcgetattr(fd)
            .map_err(|_| CioError::NotAConsole)?
            .into();
        let file = File::from(
            fd.try_clone_to_owned()
                .map_err(|e| CioError::io("duplicating the console", e))?,
        );
        Ok(Console { file, original })
    }

    /// A new handle on the terminal, for reading or writing.
    pub fn file(&self) -> Result<File, CioError> {
        self.file
            .try_clone()
            .map_err(|e| CioError::io("duplicating the console", e))
    }

    /// Raw mode (`cfmakeraw`): no echo, no line editing, no signals from keys, no output
    /// processing; every byte goes through as typed.
    pub fn set_raw(&self) -> Result<(), CioError> {
        let mut raw = termios::tcgetattr(&self.file)
            .map_err(|e| CioError::io("getting the terminal's settings", e))?;
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&self.file, SetArg::TCSANOW, &raw)
            .map_err(|e| CioError::io("setting the terminal raw", e))
    }

    /// Puts back the settings the terminal had when it was found.
    pub fn reset(&self) -> Result<(), CioError> {
        termios::tcsetattr(&self.file, SetArg::TCSANOW, &Termios::from(self.original))
            .map_err(|e| CioError::io("restoring the terminal", e))
    }

    /// Raw mode until the returned guard is dropped (or [`reset`](Self::reset) is called).
    pub fn raw(self: &Arc<Self>) -> Result<RawGuard, CioError> {
        self.set_raw()?;
        Ok(RawGuard(Arc::clone(self)))
    }

    /// The window size.
    pub fn size(&self) -> Result<WinSize, CioError> {
        let mut ws = nix::libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a
        // live, writable `winsize` for the duration of the call; the descriptor is ours.
        unsafe { tiocgwinsz(self.file.as_raw_fd(), &mut ws) }
            .map_err(|e| CioError::io("getting the terminal's size", e))?;
        Ok(WinSize {
            width: ws.ws_col,
            height: ws.ws_row,
        })
    }
}

/// Keeps a console raw; restores it when dropped.
#[derive(Debug)]
pub struct RawGuard(Arc<Console>);

impl RawGuard {
    /// The console.
    pub fn console(&self) -> &Arc<Console> {
        &self.0
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.reset() {
            log::error!("{e}");
        }
    }
}
