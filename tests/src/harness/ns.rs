//! Mount namespaces: starting a command in a private one with its own `/run`, starting a
//! command inside an existing one, and finding the processes that live in one.
//!
//! containerd 1.6 and its shims write under `/run/containerd` whatever their configuration
//! says (shim sockets, fifos, runc state), so a private containerd runs in a mount namespace
//! of its own whose `/run` is a fresh tmpfs. Everything in that namespace disappears with its
//! last process, and nothing mounted there propagates to the host (propagation is private).

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{close, fchdir};

use super::procs::{processes, ProcessInfo};

/// Identity of a mount namespace: device and inode of its `nsfs` file (what
/// `readlink /proc/<pid>/ns/mnt` shows as `mnt:[<inode>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MountNs {
    dev: u64,
    ino: u64,
}

impl MountNs {
    /// The mount namespace of process `pid`.
    pub fn of_pid(pid: i32) -> io::Result<MountNs> {
        let meta = std::fs::metadata(format!("/proc/{pid}/ns/mnt"))?;
        Ok(MountNs {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The mount namespace of this process.
    pub fn current() -> io::Result<MountNs> {
        MountNs::of_pid(std::process::id() as i32)
    }

    /// Running processes (this one excluded) whose mount namespace is this one.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        let me = std::process::id() as i32;
        processes()
            .into_iter()
            .filter(|p| p.pid != me && p.state != 'Z')
            .filter(|p| MountNs::of_pid(p.pid).is_ok_and(|ns| ns == *self))
            .collect()
    }
}

impl fmt::Display for MountNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mnt:[{}]", self.ino)
    }
}

/// Makes `cmd` start in a new mount namespace where every mount is private (nothing
/// propagates to or from the host) and `/run` is a fresh, empty tmpfs. Needs root.
pub fn with_private_run(cmd: &mut Command) -> &mut Command {
    const ROOT: &CStr = c"/";
    const RUN: &CStr = c"/run";
    const TMPFS: &CStr = c"tmpfs";
    const RUN_OPTIONS: &CStr = c"mode=0755";
    let none: Option<&CStr> = None;
    // SAFETY: between fork and exec the hook only makes system calls (unshare, mount) on
    // constant C strings: no allocation, no lock, nothing a forked child of a multi-threaded
    // process may not do.
    unsafe {
        cmd.pre_exec(move || {
            unshare(CloneFlags::CLONE_NEWNS)?;
            mount(none, ROOT, none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
            mount(
                Some(TMPFS),
                RUN,
                Some(TMPFS),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(RUN_OPTIONS),
            )?;
            Ok(())
        })
    }
}

/// Opens the mount namespace of process `pid` (`/proc/<pid>/ns/mnt`) for
/// [`enter_mount_ns`]. The open file keeps the namespace alive: drop it when done.
pub fn open_mount_ns(pid: i32) -> io::Result<File> {
    File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open mount namespace of pid {pid}: {e}")))
}

/// Makes `cmd` start inside the mount namespace `ns` (from [`open_mount_ns`]). The working
/// directory the command was given (or inherits) is kept: entering a mount namespace resets
/// it to the namespace's root, so the hook re-enters it by file descriptor. Needs root.
pub fn enter_mount_ns(cmd: &mut Command, ns: Arc<File>) -> &mut Command {
    const DOT: &CStr = c".";
    // SAFETY: between fork and exec the hook only makes system calls (open, setns, fchdir,
    // close) on a constant C string and a descriptor owned by the `Arc` the closure holds:
    // no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            let cwd = open(
                DOT,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ok();
            let entered = setns(ns.as_fd(), CloneFlags::CLONE_NEWNS);
            let back = cwd.map(|fd| {
                let back = fchdir(fd);
                let _ = close(fd);
                back
            });
            entered?;
            back.unwrap_or(Ok(()))?;
            Ok(())
        })
    }
}
