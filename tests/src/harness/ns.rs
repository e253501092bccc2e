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

/// A mount namespace, held open: its identity is the device and inode of its `nsfs` file
/// (what `readlink /proc/<pid>/ns/mnt` shows as `mnt:[<inode>]`).
///
/// Holding the namespace open matters: the kernel reuses the inode number of a namespace
/// that died for the next one created, so a bare number could designate another test's
/// container. While a `MountNs` (or a clone, or a command made by [`enter_mount_ns`]) exists,
/// the namespace, with whatever is mounted in it, stays alive, even with no process left.
#[derive(Debug, Clone)]
pub struct MountNs {
    dev: u64,
    ino: u64,
    handle: Arc<File>,
}

impl PartialEq for MountNs {
    fn eq(&self, other: &Self) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

impl Eq for MountNs {}

impl MountNs {
    /// Opens the mount namespace of process `pid` (`/proc/<pid>/ns/mnt`).
    pub fn of_pid(pid: i32) -> io::Result<MountNs> {
        let path = format!("/proc/{pid}/ns/mnt");
        let file = File::open(&path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open mount namespace {path}: {e}"))
        })?;
        let meta = file.metadata()?;
        Ok(MountNs {
            dev: meta.dev(),
            ino: meta.ino(),
            handle: Arc::new(file),
        })
    }

    /// The mount namespace of this process.
    pub fn current() -> io::Result<MountNs> {
        MountNs::of_pid(std::process::id() as i32)
    }

    /// True when process `pid` is in this namespace.
    pub fn contains(&self, pid: i32) -> bool {
        std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
            .is_ok_and(|m| (m.dev(), m.ino()) == (self.dev, self.ino))
    }

    /// Running processes (this one excluded) in this namespace.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        let me = std::process::id() as i32;
        processes()
            .into_iter()
            .filter(|p| p.pid != me && p.state != 'Z' && self.contains(p.pid))
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
            mount(
                none,
                ROOT,
                none,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                none,
            )?;
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

/// Makes `cmd` start inside the mount namespace `ns` (the command holds it open). The working
/// directory the command was given (or inherits) is kept: entering a mount namespace resets
/// it to the namespace's root, so the hook re-enters it by file descriptor. Needs root.
pub fn enter_mount_ns<'c>(cmd: &'c mut Command, ns: &MountNs) -> &'c mut Command {
    let ns = Arc::clone(&ns.handle);
    const DOT: &CStr = c".";
    // SAFETY: between fork and exec the hook only makes system calls (open, setns, fchdir,
    // close) on a constant C string and a descriptor kept open by the `Arc` the closure holds:
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
