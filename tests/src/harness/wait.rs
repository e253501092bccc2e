//! Waiting on a condition with a deadline (never a bare sleep-and-hope).
//!
//! Polls start every few milliseconds and back off to [`MAX_POLL`], so a condition that holds
//! quickly is noticed quickly and a slow one does not burn a CPU. The condition is checked one
//! last time at the deadline, so a deadline of zero still checks once.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// First pause between two checks.
pub const FIRST_POLL: Duration = Duration::from_millis(2);
/// Longest pause between two checks.
pub const MAX_POLL: Duration = Duration::from_millis(100);

/// Polls `cond` until it returns `true` or `deadline` has passed; the error names `what`.
pub fn wait_for(
    deadline: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    wait_for_some(deadline, what, || cond().then_some(()))
}

/// Polls `probe` until it returns `Some(value)` and returns that value, or fails after
/// `deadline` with an error naming `what`.
pub fn wait_for_some<T>(
    deadline: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    let end = start + deadline;
    let mut pause = FIRST_POLL;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= end {
            return Err(format!(
                "timed out after {:?} waiting for {what}",
                now.duration_since(start)
            ));
        }
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Waits until a `UnixStream` connect to `path` succeeds (the listener is up and accepting).
/// The error names the socket and the last connect error.
pub fn wait_for_socket(path: &Path, deadline: Duration) -> Result<(), String> {
    let mut last_error = String::from("not tried");
    let what = format!("socket {} to accept connections", path.display());
    wait_for(deadline, &what, || match UnixStream::connect(path) {
        Ok(_) => true,
        Err(e) => {
            last_error = e.to_string();
            false
        }
    })
    .map_err(|e| format!("{e} (last connect error: {last_error})"))
}
