//! The process table (`/proc`): finding processes a test left behind, and killing them safely.
//!
//! A process is identified by its pid *and* its start time (field 22 of `/proc/<pid>/stat`),
//! so a pid that was recycled by an unrelated process is never signalled.

use std::fmt;
use std::io;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::wait::wait_for;

/// A snapshot of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id (in this process's pid namespace).
    pub pid: i32,
    /// Parent's pid.
    pub ppid: i32,
    /// State letter from `stat` (`R`, `S`, `D`, `Z`...).
    pub state: char,
    /// Start time in clock ticks after boot; with `pid`, identifies the process.
    pub start_time: u64,
    /// Command line, arguments joined by single spaces (empty for zombies and kernel threads).
    pub cmdline: String,
}

impl ProcessInfo {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/cmdline`.
    pub fn read(pid: i32) -> io::Result<ProcessInfo> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let (state, ppid, start_time) = parse_stat(&stat).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unparsable /proc/{pid}/stat: {stat:?}"),
            )
        })?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline"))?;
        let cmdline = raw
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(ProcessInfo {
            pid,
            ppid,
            state,
            start_time,
            cmdline,
        })
    }

    /// True while this very process (same pid and start time) exists and is not a zombie.
    pub fn is_running(&self) -> bool {
        matches!(self.current_state(), Some(state) if state != 'Z' && state != 'X')
    }

    /// The state letter now, if this very process (same start time) still exists.
    pub fn current_state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        match parse_stat(&stat) {
            Some((state, _, start)) if start == self.start_time => Some(state),
            _ => None,
        }
    }

    /// Sends `signal` if the process is still this one; a process already gone is not an error.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        match kill(Pid::from_raw(self.pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl fmt::Display for ProcessInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.cmdline)
    }
}

/// Parses the fields after the `(comm)` of a `stat` line: state, ppid and start time.
/// `comm` may hold spaces and parentheses, so the split is at the last `)`.
fn parse_stat(stat: &str) -> Option<(char, i32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start_time))
}

/// Every process that could be read (processes that exit during the scan are skipped),
/// this one included.
pub fn processes() -> Vec<ProcessInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| ProcessInfo::read(pid).ok())
        .collect()
}

/// Running processes other than this one whose command line contains `marker` (for example a
/// [`TempRoot`](super::TempRoot) path): what a test asserts to be empty after cleanup.
pub fn leaked_processes(marker: &str) -> Vec<ProcessInfo> {
    let me = std::process::id() as i32;
    processes()
        .into_iter()
        .filter(|p| p.pid != me && p.state != 'Z' && p.cmdline.contains(marker))
        .collect()
}

/// The processes of `table` that descend from one of `roots` (the roots themselves excluded).
pub fn descendants(table: &[ProcessInfo], roots: &[i32]) -> Vec<ProcessInfo> {
    let mut found: Vec<ProcessInfo> = Vec::new();
    let mut frontier: Vec<i32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for p in table.iter().filter(|p| p.ppid == parent) {
            if !roots.contains(&p.pid) && !found.iter().any(|f| f.pid == p.pid) {
                found.push(p.clone());
                frontier.push(p.pid);
            }
        }
    }
    found
}

/// Stops (`SIGSTOP`) `roots` and all their descendants and returns them all, frozen: a
/// stopped process cannot fork, so after the last round no new descendant can appear. Each
/// round waits (briefly) for the processes to be stopped, then looks for children born
/// meanwhile. This process is never included.
pub fn freeze_tree(roots: &[ProcessInfo]) -> io::Result<Vec<ProcessInfo>> {
    const ROUNDS: usize = 32;
    const STOP_WAIT: Duration = Duration::from_secs(2);
    let me = std::process::id() as i32;
    let mut frozen: Vec<ProcessInfo> = Vec::new();
    let mut batch: Vec<ProcessInfo> = roots.iter().filter(|p| p.pid != me).cloned().collect();
    for _ in 0..ROUNDS {
        // Only processes verified alive (same start time) count: the children of a recycled
        // pid are someone else's.
        batch.retain(|p| p.is_running() && !frozen.iter().any(|f| f.pid == p.pid));
        if batch.is_empty() {
            break;
        }
        for p in &batch {
            p.signal(Signal::SIGSTOP)?;
        }
        // A process in uninterruptible sleep stops late; go on after a while regardless.
        let _ = wait_for(STOP_WAIT, "processes to stop", || {
            batch
                .iter()
                .all(|p| matches!(p.current_state(), None | Some('T' | 't' | 'Z' | 'X')))
        });
        frozen.append(&mut batch);
        let pids: Vec<i32> = frozen
            .iter()
            .filter(|p| p.current_state().is_some())
            .map(|p| p.pid)
            .collect();
        batch = descendants(&processes(), &pids)
            .into_iter()
            .filter(|p| p.pid != me)
            .collect();
    }
    Ok(frozen)
}

/// Kills `victims` with `SIGKILL` (each only if it is still the same process), reaps those
/// that are children of this process, and waits until all are gone. Fails, naming the
/// survivors, after `deadline`. Use [`kill_tree`] unless the processes are already frozen.
///
/// Reaping takes the exit status: do not pass the pid of a `Child` you still mean to `wait` on.
pub fn kill_and_reap(victims: &[ProcessInfo], deadline: Duration) -> io::Result<()> {
    let me = std::process::id() as i32;
    let victims: Vec<&ProcessInfo> = victims.iter().filter(|p| p.pid != me).collect();
    for p in &victims {
        p.signal(Signal::SIGKILL)?;
    }
    let gone = wait_for(deadline, "killed processes to exit", || {
        victims.iter().for_each(|p| reap_if_child(p.pid));
        victims.iter().all(|p| !p.is_running())
    });
    victims.iter().for_each(|p| reap_if_child(p.pid));
    gone.map_err(|e| {
        let left: Vec<String> = victims
            .iter()
            .filter(|p| p.is_running())
            .map(|p| p.to_string())
            .collect();
        io::Error::new(io::ErrorKind::TimedOut, format!("{e}: {}", left.join(", ")))
    })
}

/// Kills `roots` and all their descendants ([`freeze_tree`], then [`kill_and_reap`]) and
/// returns what was killed.
pub fn kill_tree(roots: &[ProcessInfo], deadline: Duration) -> io::Result<Vec<ProcessInfo>> {
    let frozen = freeze_tree(roots)?;
    kill_and_reap(&frozen, deadline)?;
    Ok(frozen)
}

/// Collects the exit status of `pid` if it is an exited child of this process; a process that
/// is not our child (`ECHILD`) or still running is left alone.
pub fn reap_if_child(pid: i32) {
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let stat = "42 (a) b (c) S 7 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        assert_eq!(parse_stat(stat), Some(('S', 7, 123456)));
        assert_eq!(parse_stat("42 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = ProcessInfo::read(std::process::id() as i32).unwrap();
        assert!(me.is_running());
        assert!(!me.cmdline.is_empty());
        assert!(processes()
            .iter()
            .any(|p| p.pid == me.pid && p.start_time == me.start_time));
    }
}
