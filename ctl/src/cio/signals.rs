//! Signals while corralctl runs a process, on one thread of their own: forwarded to the
//! process without a terminal (ctr's `ForwardAllSignals`), window changes sent as
//! `ResizePty` with one (ctr's `HandleConsoleResize`), and otherwise what the signal would do
//! by default, after putting a raw terminal back.
//!
//! [`Signals::start`] blocks the signals in the calling thread, so it must run before any
//! other thread is spawned (the ttrpc client's reader included): every later thread
//! inherits the mask, and the signal thread reads them from a `signalfd`. Unlike `sigwait`
//! through nix, a `signalfd` also yields real-time signals, which ctr forwards too. Faults
//! (`SIGSEGV`, `SIGBUS`, `SIGFPE`, `SIGILL`, `SIGTRAP`, `SIGSYS`) are never blocked.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use nix::errno::Errno;
use nix::sys::signal::{raise, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{CioError, Console};

/// What became of a forwarded signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// Sent (or failed for a reason that does not stop forwarding).
    Sent,
    /// The process is gone (`NotFound`): forwarding stops.
    Gone,
}

/// Sends one signal (its number) to the process.
pub type Forward = Arc<dyn Fn(i32) -> Forwarded + Send + Sync>;

/// Tells the process the terminal's new size.
pub type Resize = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone, Default)]
enum Route {
    /// Nothing listens: each signal does what it does by default.
    #[default]
    Default,
    /// Every signal but `SIGURG` goes to the process.
    Forward(Forward),
    /// Forwarding found the process gone: signals are dropped until the route changes (as
    /// ctr's forwarding goroutine returns while its channel still catches them).
    Dropped,
    /// `SIGWINCH` resizes; other signals as by default.
    Resize(Resize),
    /// The process is starting: signals wait here (in order) for the route that follows,
    /// so one sent the moment the process runs is forwarded rather than lost or fatal.
    Hold(Vec<i32>),
}

/// What a signal does when nothing catches it (signal(7)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// Nothing.
    Ignore,
    /// The process stops until continued.
    Stop,
    /// The process ends.
    Terminate,
}

/// The default action of signal `signo` on Linux.
pub fn default_action(signo: i32) -> DefaultAction {
    match Signal::try_from(signo) {
        Ok(Signal::SIGCHLD | Signal::SIGCONT | Signal::SIGURG | Signal::SIGWINCH) => {
            DefaultAction::Ignore
        }
        Ok(Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU) => {
            DefaultAction::Stop
        }
        _ => DefaultAction::Terminate,
    }
}

/// The faults left unblocked: raised by the kernel for the faulting thread, never sent on.
const FAULTS: [Signal; 6] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

#[derive(Default)]
struct Shared {
    route: Mutex<Route>,
    console: Mutex<Option<Arc<Console>>>,
}

/// The signal thread's routing; cheap to share.
#[derive(Clone, Default)]
pub struct Signals {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals")
    }
}

impl Signals {
    /// Blocks every signal but the faults in the calling thread and starts the signal
    /// thread. Call it before spawning any thread.
    pub fn start() -> Result<Signals, CioError> {
        let mut mask = SigSet::all();
        for fault in FAULTS {
            mask.remove(fault);
        }
        mask.thread_block()
            .map_err(|e| CioError::io("blocking signals", e))?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
            .map_err(|e| CioError::io("signalfd", e))?;
        let signals = Signals::default();
        let shared = Arc::clone(&signals.shared);
        thread::Builder::new()
            .name("signals".into())
            .stack_size(64 * 1024)
            .spawn(move || loop {
                match fd.read_signal() {
                    Ok(Some(info)) => shared.deliver(info.ssi_signo as i32),
                    Ok(None) | Err(Errno::EINTR) => {}
                    Err(e) => {
                        log::error!("reading signals: {e}");
                        return;
                    }
                }
            })
            .map_err(|e| CioError::io("starting the signal thread", e))?;
        Ok(signals)
    }

    fn set(&self, route: Route) {
        let previous = std::mem::replace(
            &mut *self
                .shared
                .route
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            route,
        );
        // What waited while the process started goes the new way now.
        if let Route::Hold(held) = previous {
            for signo in held {
                self.shared.deliver(signo);
            }
        }
    }

    /// Keeps signals until the next route is set ([`forward`](Self::forward),
    /// [`resize`](Self::resize) or [`stop`](Self::stop)), which then gets them: set it just
    /// before starting the process.
    pub fn hold(&self) {
        self.set(Route::Hold(Vec::new()));
    }

    /// Sends every signal on with `forward` until it reports the process gone.
    pub fn forward(&self, forward: Forward) {
        self.set(Route::Forward(forward));
    }

    /// Calls `resize` on every window change.
    pub fn resize(&self, resize: Resize) {
        self.set(Route::Resize(resize));
    }

    /// Back to each signal's default action (ctr's `StopCatch`).
    pub fn stop(&self) {
        self.set(Route::Default);
    }

    /// Resets `console` before a signal ends corralctl, so a raw terminal is never left
    /// behind.
    pub fn restore_on_exit(&self, console: Arc<Console>) {
        *self
            .shared
            .console
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(console);
    }

    /// Handles signal `signo` as the signal thread does.
    pub fn deliver(&self, signo: i32) {
        self.shared.deliver(signo);
    }
}

impl Shared {
    fn deliver(&self, signo: i32) {
        let route = {
            let mut current = self.route.lock().unwrap_or_else(PoisonError::into_inner);
            if let Route::Hold(held) = &mut *current {
                held.push(signo);
                return;
            }
            current.clone()
        };
        match route {
            Route::Forward(forward) => {
                if signo == Signal::SIGURG as i32 {
                    log::debug!("ignoring signal {signo}");
                    return;
                }
                log::debug!("forwarding signal {signo}");
                if forward(signo) == Forwarded::Gone {
                    let mut current = self.route.lock().unwrap_or_else(PoisonError::into_inner);
                    if matches!(&*current, Route::Forward(f) if Arc::ptr_eq(f, &forward)) {
                        *current = Route::Dropped;
                    }
                }
            }
            Route::Dropped => log::debug!("not forwarding signal {signo}"),
            Route::Resize(resize) if signo == Signal::SIGWINCH as i32 => resize(),
            Route::Resize(_) | Route::Default => self.default_action(signo),
            // Taken care of under the lock above.
            Route::Hold(_) => {}
        }
    }

    /// What `signo` would have done had it not been blocked.
    fn default_action(&self, signo: i32) {
        match default_action(signo) {
            DefaultAction::Ignore => {}
            DefaultAction::Stop => {
                if let Err(e) = raise(Signal::SIGSTOP) {
                    log::error!("stopping: {e}");
                }
            }
            DefaultAction::Terminate => {
                if let Some(console) = self
                    .console
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                {
                    if let Err(e) = console.reset() {
                        log::error!("{e}");
                    }
                }
                // Die of the signal itself where it can be raised again with its default
                // action (unblocked in this thread only); else as a shell reports it.
                if let Ok(signal) = Signal::try_from(signo) {
                    if SigSet::from(signal).thread_unblock().is_ok() {
                        let _ = raise(signal);
                    }
                }
                std::process::exit(128 + signo);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn default_actions_follow_signal_7() {
        for (signal, action) in [
            (Signal::SIGWINCH, DefaultAction::Ignore),
            (Signal::SIGCHLD, DefaultAction::Ignore),
            (Signal::SIGTSTP, DefaultAction::Stop),
            (Signal::SIGTERM, DefaultAction::Terminate),
            (Signal::SIGUSR1, DefaultAction::Terminate),
        ] {
            assert_eq!(default_action(signal as i32), action, "{signal}");
        }
        // Real-time signals terminate.
        assert_eq!(default_action(40), DefaultAction::Terminate);
    }

    #[test]
    fn signals_held_while_a_process_starts_are_forwarded_in_order() {
        let signals = Signals::default();
        signals.hold();
        // SIGTERM would end the test process if it were acted on instead of held.
        signals.deliver(Signal::SIGUSR2 as i32);
        signals.deliver(Signal::SIGTERM as i32);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&sent);
        signals.forward(Arc::new(move |signo| {
            s.lock().unwrap().push(signo);
            Forwarded::Sent
        }));
        assert_eq!(
            *sent.lock().unwrap(),
            [Signal::SIGUSR2 as i32, Signal::SIGTERM as i32]
        );
        signals.deliver(Signal::SIGINT as i32);
        assert_eq!(sent.lock().unwrap().len(), 3);
    }

    #[test]
    fn forwarding_skips_sigurg_and_stops_when_the_process_is_gone() {
        let signals = Signals::default();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let gone_after = 2;
        let s = Arc::clone(&sent);
        signals.forward(Arc::new(move |signo| {
            let mut sent = s.lock().unwrap();
            sent.push(signo);
            if sent.len() >= gone_after {
                Forwarded::Gone
            } else {
                Forwarded::Sent
            }
        }));
        signals.deliver(Signal::SIGURG as i32);
        signals.deliver(Signal::SIGINT as i32);
        signals.deliver(42);
        // Gone: dropped from now on, not forwarded and not acted on.
        signals.deliver(Signal::SIGTERM as i32);
        assert_eq!(*sent.lock().unwrap(), [Signal::SIGINT as i32, 42]);
    }

    #[test]
    fn a_new_route_replaces_the_old_one() {
        let signals = Signals::default();
        let resized = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&resized);
        signals.resize(Arc::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        signals.deliver(Signal::SIGWINCH as i32);
        signals.deliver(Signal::SIGWINCH as i32);
        // Ignored by default: nothing happens.
        signals.deliver(Signal::SIGCHLD as i32);
        assert_eq!(resized.load(Ordering::SeqCst), 2);
        let forwarded = Arc::new(AtomicUsize::new(0));
        let f = Arc::clone(&forwarded);
        signals.forward(Arc::new(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
            Forwarded::Sent
        }));
        signals.deliver(Signal::SIGWINCH as i32);
        assert_eq!(resized.load(Ordering::SeqCst), 2);
        assert_eq!(forwarded.load(Ordering::SeqCst), 1);
        signals.stop();
        signals.deliver(Signal::SIGWINCH as i32);
        assert_eq!(forwarded.load(Ordering::SeqCst), 1);
    }
}
