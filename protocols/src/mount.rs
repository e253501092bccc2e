//! Mounting what containerd describes as `containerd.types.Mount` (a task's rootfs in the
//! shim, a snapshot to apply a layer into in the daemon), and unmounting it again, as
//! containerd's `mount` package does on Linux.

use std::io;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// One mount: a type, a source and containerd's option strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Flags and data string for mount(2), from containerd's option list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub flags: MsFlags,
    /// Flags applied by a second, propagation-only mount (`shared`, `private`, ...).
    pub propagation: MsFlags,
    pub data: String,
}

/// Splits containerd's options into mount flags and the data string, as containerd's
/// `mount_linux.go` does.
pub fn parse_options(options: &[String]) -> Parsed {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        let (clear, set) = match opt.as_str() {
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "atime" => (true, MsFlags::MS_NOATIME),
            "bind" => (false, MsFlags::MS_BIND),
            "defaults" => (false, MsFlags::empty()),
            "dev" => (true, MsFlags::MS_NODEV),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "mand" => (false, MsFlags::MS_MANDLOCK),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "nodev" => (false, MsFlags::MS_NODEV),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "nomand" => (true, MsFlags::MS_MANDLOCK),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "suid" => (true, MsFlags::MS_NOSUID),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                propagation |= match opt.as_str() {
                    "private" => MsFlags::MS_PRIVATE,
                    "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                    "shared" => MsFlags::MS_SHARED,
                    "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
                    "slave" => MsFlags::MS_SLAVE,
                    "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    "unbindable" => MsFlags::MS_UNBINDABLE,
                    _ => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                };
                continue;
            }
            _ => {
                data.push(opt.clone());
                continue;
            }
        };
        if clear {
            flags.remove(set);
        } else {
            flags.insert(set);
        }
    }
    Parsed {
        flags,
        propagation,
        data: data.join(","),
    }
}

/// Mounts `m` on `target`. A bind mount asked to be read-only is remounted read-only, since
/// the kernel ignores `MS_RDONLY` on the first bind.
pub fn mount_one(m: &Mount, target: &Path) -> io::Result<()> {
    let p = parse_options(&m.options);
    let data = (!p.data.is_empty()).then_some(p.data.as_str());
    let source = (!m.source.is_empty()).then_some(m.source.as_str());
    let fstype = (!m.kind.is_empty() && m.kind != "bind").then_some(m.kind.as_str());
    mount(source, target, fstype, p.flags, data).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "mounting {} {:?} on {}: {e}",
                if m.kind.is_empty() { "bind" } else { &m.kind },
                m.source,
                target.display()
            ),
        )
    })?;
    if p.flags.contains(MsFlags::MS_BIND) && p.flags.contains(MsFlags::MS_RDONLY) {
        let remount = p.flags | MsFlags::MS_REMOUNT;
        mount(None::<&str>, target, None::<&str>, remount, None::<&str>).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("remounting {} read-only: {e}", target.display()),
            )
        })?;
    }
    if !p.propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            p.propagation,
            None::<&str>,
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("setting propagation on {}: {e}", target.display()),
            )
        })?;
    }
    Ok(())
}

/// Mounts each of `mounts` on `target` in order (containerd's `mount.All`).
pub fn mount_all(mounts: &[Mount], target: &Path) -> io::Result<()> {
    for m in mounts {
        mount_one(m, target)?;
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (deepest first); a path with nothing mounted is
/// fine. Falls back to a lazy unmount when the mount is busy.
pub fn unmount_all(target: &Path) -> io::Result<()> {
    for _ in 0..64 {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => match umount2(target, MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(nix::errno::Errno::EINVAL) => return Ok(()),
                Err(e) => return Err(unmount_error(target, e)),
            },
            Err(e) => return Err(unmount_error(target, e)),
        }
    }
    Err(io::Error::other(format!(
        "{} still mounted after 64 unmounts",
        target.display()
    )))
}

fn unmount_error(target: &Path, e: nix::errno::Errno) -> io::Error {
    io::Error::new(
        io::Error::from(e).kind(),
        format!("unmounting {}: {e}", target.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_become_data() {
        let p = parse_options(&opts(&[
            "index=off",
            "workdir=/w",
            "upperdir=/u",
            "lowerdir=/l1:/l2",
        ]));
        assert_eq!(p.flags, MsFlags::empty());
        assert_eq!(p.data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let p = parse_options(&opts(&["rbind", "ro", "nosuid", "rw", "rprivate"]));
        assert!(p
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID));
        assert!(!p.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert!(p.data.is_empty());
    }

    #[test]
    fn unmounting_an_unmounted_dir_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        unmount_all(dir.path()).unwrap();
    }
}
