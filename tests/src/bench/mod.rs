//! `make bench`'s measurements (the `corral-bench` binary writes them to `docs/benchmarks.md`):
//! reading a process's memory and threads, summarising repeated figures, formatting them.
//!
//! - [`shim`]: `containerd-shim-corral-v2` against containerd's Go shim under one private
//!   containerd 1.6: idle memory and threads per shim, `ctr run --rm` latency, bare `runc run`.
//! - [`images`]: image import, export and listing against ctr and containerd 1.6.
//! - [`tasks`]: `corralctl run --rm` through corrald against `ctr run --rm` through containerd
//!   1.6 and bare `runc run`; daemon + shims memory with idle containers.

pub mod daemon;
pub mod images;
pub mod meta;
pub mod registry;
pub mod shim;
pub mod tasks;

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

/// Threads and memory of one process, from `/proc/PID/status` and `/proc/PID/smaps_rollup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `Threads:` of `status`.
    pub threads: u64,
    /// `VmRSS:` of `status`, KiB.
    pub rss_kib: u64,
    /// `Pss:` of `smaps_rollup`, KiB: shared pages divided among the processes sharing them.
    pub pss_kib: u64,
    /// `Private_Clean:` + `Private_Dirty:` of `smaps_rollup`, KiB: what only this process maps.
    pub private_kib: u64,
}

/// The number after `name` (e.g. `"Pss:"`) on the line starting with it: `Pss:  675 kB` → 675.
pub fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Reads the [`Usage`] of `pid`.
pub fn usage(pid: i32) -> Result<Usage, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("reading /proc/{pid}/smaps_rollup: {e}"))?;
    let field = |text: &str, file: &str, name: &str| {
        field_kib(text, name).ok_or_else(|| format!("no {name} in /proc/{pid}/{file}"))
    };
    Ok(Usage {
        threads: field(&status, "status", "Threads:")?,
        rss_kib: field(&status, "status", "VmRSS:")?,
        pss_kib: field(&rollup, "smaps_rollup", "Pss:")?,
        private_kib: field(&rollup, "smaps_rollup", "Private_Clean:")?
            + field(&rollup, "smaps_rollup", "Private_Dirty:")?,
    })
}

/// Minimum, median and maximum of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Smallest value.
    pub min: f64,
    /// Median (the mean of the two middle values for an even count).
    pub median: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Spread {
            min: sorted[0],
            median,
            max: sorted[n - 1],
        })
    }

    /// `min / median / max` with `decimals` decimals and `unit` appended (`" KiB"`, `" ms"`).
    pub fn show(&self, decimals: usize, unit: &str) -> String {
        format!(
            "{:.d$} / {:.d$} / {:.d$}{unit}",
            self.min,
            self.median,
            self.max,
            d = decimals
        )
    }
}

/// Runs `cmd` (stdin from `/dev/null`, stdout and stderr captured) and returns how long it
/// took, from just before the spawn to the moment its exit is seen, with its output.
///
/// The wait blocks in `waitid` rather than polling, so a figure is never rounded up to a poll
/// interval (the harness's [`run_with_deadline`](crate::harness::run_with_deadline) polls
/// with a back-off, which turns 40 ms into 62 ms). A watchdog kills the command after
/// `deadline`; the child is reaped only after the watchdog is done, so its pid cannot be
/// recycled under it. A non-zero exit is not an error here: look at `Output::status`.
pub fn timed(cmd: &mut Command, deadline: Duration) -> Result<(Duration, Output), String> {
    let program = format!("{:?}", cmd.get_program());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot spawn {program}: {e}"))?;
    let pid = Pid::from_raw(child.id() as i32);
    let (done, exited) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = matches!(
            exited.recv_timeout(deadline),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if timed_out {
            // Not reaped yet (the waiter leaves it a zombie at worst): still our child.
            let _ = kill(pid, Signal::SIGKILL);
        }
        timed_out
    });
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let waited = loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    let took = start.elapsed();
    if waited.is_err() {
        let _ = child.kill();
    }
    let _ = done.send(());
    let timed_out = watchdog.join().unwrap_or(true);
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    waited.map_err(|e| format!("waiting for {program}: {e}"))?;
    // A grandchild may hold the pipes open: do not wait for it forever.
    let stdout = stdout
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    let stderr = stderr
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    if timed_out {
        return Err(format!(
            "{program} did not finish within {deadline:?}; stderr: {}",
            String::from_utf8_lossy(&stderr)
        ));
    }
    Ok((
        took,
        Output {
            status,
            stdout,
            stderr,
        },
    ))
}

/// Reads a pipe to its end on a thread; the bytes arrive on the returned channel.
fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// The names (`comm`) of the threads of `pid`, sorted.
pub fn thread_names(pid: i32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim_end().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `bytes` in whole KiB, with the unit.
pub fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

/// `ours / reference` with two decimals, `n/a` without a reference.
pub fn ratio(ours: f64, reference: f64) -> String {
    if reference > 0.0 {
        format!("{:.2}", ours / reference)
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 4.0));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(s.show(1, " ms"), "1.0 / 2.5 / 4.0 ms");
    }

    #[test]
    fn reads_fields_and_own_usage() {
        let text = "Pss:     675 kB\nPss_Anon:  3 kB\nPrivate_Clean: 2 kB\n";
        assert_eq!(field_kib(text, "Pss:"), Some(675));
        assert_eq!(field_kib(text, "Private_Dirty:"), None);
        let me = usage(std::process::id() as i32).unwrap();
        assert!(me.threads >= 1 && me.rss_kib > 0 && me.pss_kib > 0 && me.private_kib > 0);
    }

    #[test]
    fn times_without_polling_and_enforces_the_deadline() {
        let (took, out) = timed(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert!(took < Duration::from_secs(5));
        let (took, _) = timed(Command::new("sleep").arg("0.04"), Duration::from_secs(10)).unwrap();
        assert!(took >= Duration::from_millis(40), "{took:?}");
        let e = timed(Command::new("sleep").arg("10"), Duration::from_millis(100)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(1.0, 4.0), "0.25");
        assert_eq!(ratio(1.0, 0.0), "n/a");
        assert_eq!(kib(2048), "2 KiB");
    }
}
