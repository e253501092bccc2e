//! OOM notifications for the shim's event loop.
//!
//! [`OomWatcher`] owns one epoll file descriptor ([`OomWatcher::as_raw_fd`]) that becomes
//! readable (level-triggered `EPOLLIN`) when a watched cgroup may have an OOM to report. The
//! caller puts that one descriptor in its own epoll/poll set and calls
//! [`OomWatcher::drain`] when it is readable; `drain` never blocks and returns the ids of
//! the containers that had an OOM since the last call. Nothing spins: every descriptor
//! `drain` is told about is either read empty or dropped.
//!
//! * cgroup v1 (legacy and hybrid hosts, as containerd): an eventfd registered with the
//!   memory cgroup's `memory.oom_control` through `cgroup.event_control`. The kernel signals
//!   it on every OOM in the cgroup, and once more when the cgroup is removed; a signal
//!   whose cgroup directory is gone drops the watch silently instead of reporting.
//! * cgroup v2: an inotify watch (`IN_MODIFY`) on `memory.events`; an OOM is reported when
//!   its `oom_kill` counter grows past the value last seen (the value at [`OomWatcher::add`]
//!   to begin with, so earlier kills are not reported again). When the file goes away
//!   (`IN_IGNORED`, or reads failing with `ENOENT`/`ENODEV`) the watch is dropped silently.
//!
//! [`OomWatcher::remove`] and `Drop` close every descriptor; closing the eventfd also ends
//! the kernel's v1 registration.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::fs::{CgroupFs, CgroupMode};
use super::parse::{kv_values, read_optional, KvValue};
use super::CgroupError;

/// Watches containers' cgroups for OOM kills. See the module documentation.
#[derive(Debug)]
pub struct OomWatcher {
    fs: CgroupFs,
    epoll: Epoll,
    watches: HashMap<u64, Watch>,
    tokens: HashMap<String, u64>,
    next_token: u64,
}

#[derive(Debug)]
struct Watch {
    id: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    V1 {
        efd: EventFd,
        dir: PathBuf,
    },
    V2 {
        inotify: Inotify,
        events: PathBuf,
        last_oom_kill: u64,
    },
}

impl Kind {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Kind::V1 { efd, .. } => efd.as_fd(),
            Kind::V2 { inotify, .. } => inotify.as_fd(),
        }
    }
}

/// What one readiness notification meant.
struct Outcome {
    oom: bool,
    gone: bool,
}

impl OomWatcher {
    /// A watcher locating cgroups through `fs` (its mode picks v1 or v2, as containerd).
    pub fn new(fs: CgroupFs) -> Result<Self, CgroupError> {
        let epoll =
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|source| CgroupError::Sys {
                op: "epoll_create1",
                source,
            })?;
        Ok(Self {
            fs,
            epoll,
            watches: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 1,
        })
    }

    /// Watches the memory cgroup of process `pid` under `container_id`, replacing an
    /// earlier watch of that id. Errors: [`CgroupError::ProcessNotFound`], the cgroup gone
    /// ([`CgroupError::CgroupNotFound`]), no memory controller
    /// ([`CgroupError::NotMounted`]), or a failing system call.
    pub fn add(&mut self, container_id: &str, pid: i32) -> Result<(), CgroupError> {
        let cgroups = self.fs.proc_cgroups(pid)?;
        match self.fs.mode() {
            CgroupMode::Unified => {
                let dir = self
                    .fs
                    .v2_dir(&cgroups)
                    .ok_or_else(|| CgroupError::NotMounted {
                        what: format!("cgroup v2 group of process {pid}"),
                    })?;
                self.add_v2_dir(container_id, &dir)
            }
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let dir =
                    self.fs
                        .v1_dir(&cgroups, "memory")
                        .ok_or_else(|| CgroupError::NotMounted {
                            what: "cgroup v1 memory controller".into(),
                        })?;
                self.add_v1_dir(container_id, &dir)
            }
            CgroupMode::Unavailable => Err(CgroupError::NotMounted {
                what: "cgroup file system".into(),
            }),
        }
    }

    /// Watches the cgroup v1 memory cgroup directory `dir` under `container_id`.
    pub fn add_v1_dir(&mut self, container_id: &str, dir: &Path) -> Result<(), CgroupError> {
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(
            |source| CgroupError::Sys {
                op: "eventfd",
                source,
            },
        )?;
        let control_path = dir.join("memory.oom_control");
        let control =
            File::open(&control_path).map_err(|e| missing_or_io(dir, &control_path, e))?;
        let event_control = dir.join("cgroup.event_control");
        let registration = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
        OpenOptions::new()
            .write(true)
            .open(&event_control)
            .and_then(|mut f| f.write_all(registration.as_bytes()))
            .map_err(|e| missing_or_io(dir, &event_control, e))?;
        // The registration keeps what it needs; `memory.oom_control` may close now.
        drop(control);
        self.insert(
            container_id,
            Kind::V1 {
                efd,
                dir: dir.to_path_buf(),
            },
        )
    }

    /// Watches the cgroup v2 group directory `dir` under `container_id`.
    pub fn add_v2_dir(&mut self, container_id: &str, dir: &Path) -> Result<(), CgroupError> {
        let events = dir.join("memory.events");
        let inotify =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(|source| {
                CgroupError::Sys {
                    op: "inotify_init1",
                    source,
                }
            })?;
        inotify
            .add_watch(&events, AddWatchFlags::IN_MODIFY)
            .map_err(|errno| match errno {
                Errno::ENOENT | Errno::ENODEV | Errno::ENOTDIR => missing(dir, &events),
                source => CgroupError::Sys {
                    op: "inotify_add_watch",
                    source,
                },
            })?;
        // Read after the watch is in place, so a kill in between is not lost.
        let last_oom_kill = read_oom_kill(&events)?.ok_or_else(|| missing(dir, &events))?;
        self.insert(
            container_id,
            Kind::V2 {
                inotify,
                events,
                last_oom_kill,
            },
        )
    }

    fn insert(&mut self, container_id: &str, kind: Kind) -> Result<(), CgroupError> {
        self.remove(container_id);
        let token = self.next_token;
        self.next_token += 1;
        self.epoll
            .add(kind.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(|source| CgroupError::Sys {
                op: "epoll_ctl",
                source,
            })?;
        self.watches.insert(
            token,
            Watch {
                id: container_id.to_string(),
                kind,
            },
        );
        self.tokens.insert(container_id.to_string(), token);
        Ok(())
    }

    /// Stops watching `container_id` and closes its descriptors; nothing if not watched.
    pub fn remove(&mut self, container_id: &str) {
        if let Some(token) = self.tokens.remove(container_id) {
            self.drop_token(token);
        }
    }

    fn drop_token(&mut self, token: u64) {
        if let Some(w) = self.watches.remove(&token) {
            // Closing the descriptor removes it from the epoll set anyway; deleting first
            // keeps the set exact even if someone else holds a duplicate.
            let _ = self.epoll.delete(w.kind.fd());
            if self.tokens.get(&w.id) == Some(&token) {
                self.tokens.remove(&w.id);
            }
        }
    }

    /// Whether `container_id` is watched.
    pub fn contains(&self, container_id: &str) -> bool {
        self.tokens.contains_key(container_id)
    }

    /// How many containers are watched.
    pub fn len(&self) -> usize {
        self.watches.len()
    }

    /// True when nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// Blocks until [`drain`](Self::drain) may have something to say, or `timeout` passes
    /// (`None`: no limit). True when readable; false on timeout or a signal. For callers
    /// that give the watcher a thread of its own, and for tests.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, CgroupError> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            // Round up so a short wait does not become a busy poll of 0 ms.
            Some(d) => EpollTimeout::try_from(d.saturating_add(Duration::from_nanos(999_999)))
                .unwrap_or(EpollTimeout::MAX),
        };
        let mut events = [EpollEvent::empty(); 1];
        match self.epoll.wait(&mut events, timeout) {
            Ok(n) => Ok(n > 0),
            Err(Errno::EINTR) => Ok(false),
            Err(source) => Err(CgroupError::Sys {
                op: "epoll_wait",
                source,
            }),
        }
    }

    /// The containers that had an OOM since the last call, each once, without blocking.
    /// Watches whose cgroup went away are dropped along the way.
    pub fn drain(&mut self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut events = [EpollEvent::empty(); 64];
        // Every ready descriptor is consumed or dropped below, so a second round only finds
        // descriptors that became ready meanwhile; the bound keeps it finite regardless.
        for _ in 0..=(self.watches.len() / events.len() + 1) {
            let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("oom watcher: epoll_wait: {e}");
                    break;
                }
            };
            for ev in &events[..n] {
                let token = ev.data();
                let Some(w) = self.watches.get_mut(&token) else {
                    continue;
                };
                let outcome = check(w);
                if outcome.oom && !out.contains(&w.id) {
                    out.push(w.id.clone());
                }
                if outcome.gone {
                    log::debug!("oom watcher: cgroup of {} is gone, no longer watched", w.id);
                    self.drop_token(token);
                }
            }
            if n < events.len() {
                break;
            }
        }
        out
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

impl AsRawFd for OomWatcher {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.0.as_raw_fd()
    }
}

/// Consumes a watch's readiness and says whether it meant an OOM, or the end of its cgroup.
fn check(w: &mut Watch) -> Outcome {
    match &mut w.kind {
        Kind::V1 { efd, dir } => match efd.read() {
            Ok(_) => {
                // The kernel also signals when the cgroup is removed.
                let gone = std::fs::symlink_metadata(dir.as_path()).is_err();
                Outcome { oom: !gone, gone }
            }
            Err(Errno::EAGAIN) => Outcome {
                oom: false,
                gone: false,
            },
            Err(e) => {
                log::warn!(
                    "oom watcher: {}: reading eventfd: {e}; no longer watched",
                    w.id
                );
                Outcome {
                    oom: false,
                    gone: true,
                }
            }
        },
        Kind::V2 {
            inotify,
            events,
            last_oom_kill,
        } => {
            let mut ignored = false;
            loop {
                match inotify.read_events() {
                    Ok(evs) if evs.is_empty() => break,
                    Ok(evs) => {
                        ignored |= evs
                            .iter()
                            .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                    }
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        log::warn!(
                            "oom watcher: {}: reading inotify: {e}; no longer watched",
                            w.id
                        );
                        return Outcome {
                            oom: false,
                            gone: true,
                        };
                    }
                }
            }
            match read_oom_kill(events) {
                Ok(Some(n)) => {
                    let oom = n > *last_oom_kill;
                    *last_oom_kill = (*last_oom_kill).max(n);
                    Outcome { oom, gone: ignored }
                }
                Ok(None) => Outcome {
                    oom: false,
                    gone: true,
                },
                Err(e) => {
                    log::warn!("oom watcher: {}: {e}", w.id);
                    Outcome {
                        oom: false,
                        gone: ignored,
                    }
                }
            }
        }
    }
}

/// The `oom_kill` counter of a `memory.events` file (0 when the key is absent); `None` when
/// the file is gone.
fn read_oom_kill(path: &Path) -> Result<Option<u64>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    Ok(Some(match kv_values(path, &text)?.get("oom_kill") {
        Some(KvValue::Num(n)) => *n,
        _ => 0,
    }))
}

/// The error for a cgroup file that is not there: the cgroup is gone, or (its directory
/// still there) the controller is not enabled for it.
fn missing(dir: &Path, file: &Path) -> CgroupError {
    if std::fs::symlink_metadata(dir).is_err() {
        CgroupError::CgroupNotFound {
            path: dir.to_path_buf(),
        }
    } else {
        CgroupError::NotMounted {
            what: format!("{} (memory controller)", file.display()),
        }
    }
}

fn missing_or_io(dir: &Path, file: &Path, e: std::io::Error) -> CgroupError {
    if super::parse::is_missing(&e) {
        missing(dir, file)
    } else {
        CgroupError::io(file, e)
    }
}
