//! Mounting a snapshot's mounts on a directory and taking them down again, as containerd's
//! `mount.All` and `mount.UnmountAll` do: fstab-style options become mount flags (the rest
//! is file-system data), a read-only bind is remounted read-only, and unmounting repeats
//! until nothing is mounted there. [`TempMount`] is `mount.WithTempMount`: the mounts on a
//! fresh temporary directory for as long as a caller reads them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_protocols::types::mount::Mount;
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::error::{ImageError, Result};

/// The flags and the data string `options` give (`parseMountOptions`, shared with the
/// daemon and the shim through [`corral_protocols::mount::parse_options`]); propagation
/// options are applied by a second mount.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let p = corral_protocols::mount::parse_options(options);
    (p.flags, p.propagation, p.data)
}

/// Mounts `m` on `target` (`Mount.Mount`); a read-only bind is remounted read-only, as
/// the kernel ignores `MS_RDONLY` on the first bind.
pub fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    // Overlay options longer than a page do not reach the kernel: name the lower
    // directories relative to their common parent and mount from there, as containerd does.
    let size: usize = m.options.iter().map(String::len).sum();
    if m.type_ == "overlay" && size >= PAGE_SIZE - 512 {
        if let Some((dir, options)) = compact_lowerdir(&m.options) {
            let target = std::path::absolute(target)
                .map_err(|e| ImageError::io(format!("resolve {}", target.display()), e))?;
            let back =
                std::env::current_dir().map_err(|e| ImageError::io("the current directory", e))?;
            std::env::set_current_dir(&dir)
                .map_err(|e| ImageError::io(format!("failed to mountat: {dir}"), e))?;
            let compact = Mount {
                options,
                ..m.clone()
            };
            let result = mount_raw(&compact, &target);
            if let Err(e) = std::env::set_current_dir(&back) {
                log::warn!("returning to {}: {e}", back.display());
            }
            return result;
        }
    }
    mount_raw(m, target)
}

/// The mount system calls for `m`, options as they are.
fn mount_raw(m: &Mount, target: &Path) -> Result<()> {
    let (flags, propagation, data) = parse_options(&m.options);
    if data.len() > PAGE_SIZE {
        return Err(ImageError::InvalidArgument(
            "mount options is too long".into(),
        ));
    }
    let fail = |what: &str, e: Errno| {
        ImageError::io(
            format!("{what} {} on {}", m.source, target.display()),
            std::io::Error::from(e),
        )
    };
    if !flags.contains(MsFlags::MS_REMOUNT) || !data.is_empty() {
        let fstype = (!m.type_.is_empty()).then_some(m.type_.as_str());
        mount(
            Some(m.source.as_str()),
            target,
            fstype,
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| fail("mount", e))?;
    }
    if flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .map_err(|e| fail("remount read-only", e))?;
    }
    if !propagation.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(|e| fail("set propagation of", e))?;
    }
    Ok(())
}

/// The kernel's limit on mount data (one page).
const PAGE_SIZE: usize = 4096;

/// containerd's `compactLowerdirOption`: the common parent of the lower directories and the
/// options with them relative to it; `None` when there is nothing to shorten.
fn compact_lowerdir(options: &[String]) -> Option<(String, Vec<String>)> {
    let idx = options.iter().position(|o| o.starts_with("lowerdir="))?;
    let dirs: Vec<&str> = options[idx]["lowerdir=".len()..].split(':').collect();
    if dirs.len() < 2 {
        return None;
    }
    let min = dirs.iter().min()?;
    let max = dirs.iter().max()?;
    let common_len = min
        .bytes()
        .zip(max.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let common = &min[..common_len];
    if common.is_empty() {
        return None;
    }
    // Back to the parent: the snapshot directories are numbers, so the common prefix may
    // end inside one of them.
    let parent = super::gopath::dir(common);
    if parent == "/" || parent == "." {
        return None;
    }
    let prefix = format!("{parent}/");
    let relative: Option<Vec<&str>> = dirs.iter().map(|d| d.strip_prefix(&prefix)).collect();
    let mut out: Vec<String> = options.to_vec();
    out.remove(idx);
    out.push(format!("lowerdir={}", relative?.join(":")));
    Some((prefix, out))
}

/// Mounts every mount on `target`, in order (`mount.All`).
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for m in mounts {
        mount_one(m, target)?;
    }
    Ok(())
}

/// Unmounts `target` until nothing is mounted there (`mount.UnmountAll`); nothing to do when
/// it does not exist. A busy mount is retried for a while.
pub fn unmount_all(target: &Path) -> Result<()> {
    if !target.exists() {
        return Ok(());
    }
    loop {
        let mut tries = 0;
        loop {
            match umount2(target, MntFlags::empty()) {
                Ok(()) => break,
                Err(Errno::EINVAL) => return Ok(()),
                Err(Errno::EBUSY) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(ImageError::io(
                        format!("unmount {}", target.display()),
                        std::io::Error::from(e),
                    ))
                }
            }
        }
    }
}

/// containerd's `tryReadonlyMounts`: a lone overlay mount is mounted read-only, so
/// unmounting it does not sync the whole file system.
pub fn try_readonly(mounts: &mut [Mount]) {
    if let [m] = mounts {
        if m.type_ == "overlay" {
            m.options.push("ro".to_string());
        }
    }
}

/// Mounts on a temporary directory of their own (`mount.WithTempMount`), unmounted and the
/// directory removed by [`TempMount::release`], or on drop if that never happens. The
/// directory is removed with `rmdir`, never recursively: if unmounting failed, what is
/// mounted there is left alone rather than deleted.
#[derive(Debug)]
pub struct TempMount {
    dir: PathBuf,
    released: bool,
}

/// Where temporary mounts go: `$XDG_RUNTIME_DIR`, else the temporary directory (as
/// containerd's `getTempDir`).
fn temp_mount_location() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::temp_dir(),
    }
}

impl TempMount {
    /// Creates `corral-mount<random>` (mode 0700) in the temporary mount location and mounts
    /// `mounts` on it in order. On failure nothing stays mounted or created.
    pub fn new(mounts: &[Mount]) -> Result<TempMount> {
        use std::os::unix::fs::DirBuilderExt;
        let parent = temp_mount_location();
        let mut tries = 0;
        let dir = loop {
            let dir = parent.join(format!("corral-mount{}", super::lease::random_alnum(10)));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 10 => {
                    tries += 1;
                }
                Err(e) => return Err(ImageError::io("failed to create temp dir", e)),
            }
        };
        let temp = TempMount {
            dir,
            released: false,
        };
        if let Err(e) = mount_all(mounts, &temp.dir) {
            let e = e.context(format_args!("failed to mount {}", temp.dir.display()));
            if let Err(u) = temp.release() {
                log::error!("{u}");
            }
            return Err(e);
        }
        Ok(temp)
    }

    /// The directory the mounts are on.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Unmounts everything and removes the directory. An unmount failure is an error (and
    /// the directory stays); a directory that cannot be removed is only logged, as
    /// containerd does.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.clean_up()
    }

    fn clean_up(&self) -> Result<()> {
        unmount_all(&self.dir)
            .map_err(|e| e.context(format_args!("failed to unmount {}", self.dir.display())))?;
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            log::error!(
                "failed to remove mount temp dir {}: {}",
                self.dir.display(),
                crate::commands::io_reason(&e)
            );
        }
        Ok(())
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.clean_up() {
                log::error!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn long_lowerdirs_are_made_relative() {
        let o = opts(&[
            "index=off",
            "lowerdir=/var/lib/c/snapshots/12/fs:/var/lib/c/snapshots/3/fs",
        ]);
        let (dir, compact) = compact_lowerdir(&o).unwrap();
        assert_eq!(dir, "/var/lib/c/snapshots/");
        assert_eq!(compact, opts(&["index=off", "lowerdir=12/fs:3/fs"]));
        assert!(compact_lowerdir(&opts(&["lowerdir=/a/fs"])).is_none());
        assert!(compact_lowerdir(&opts(&["lowerdir=/a:/b"])).is_none());
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let (f, _, d) = parse_options(&opts(&["ro", "rbind"]));
        assert_eq!(f, MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(d, "");
        let (f, _, d) = parse_options(&opts(&["index=off", "lowerdir=/a:/b", "ro"]));
        assert_eq!(f, MsFlags::MS_RDONLY);
        assert_eq!(d, "index=off,lowerdir=/a:/b");
        let (f, _, _) = parse_options(&opts(&["ro", "rw", "nosuid", "suid", "nodev"]));
        assert_eq!(f, MsFlags::MS_NODEV);
        let (f, p, d) = parse_options(&opts(&["rprivate"]));
        assert_eq!(f, MsFlags::empty());
        assert_eq!(p, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(d, "");
    }

    #[test]
    fn lone_overlays_mount_read_only() {
        let overlay = Mount {
            type_: "overlay".into(),
            options: opts(&["lowerdir=/a"]),
            ..Default::default()
        };
        let mut one = vec![overlay.clone()];
        try_readonly(&mut one);
        assert_eq!(one[0].options, opts(&["lowerdir=/a", "ro"]));
        let mut two = vec![overlay.clone(), overlay.clone()];
        try_readonly(&mut two);
        assert_eq!(two[0].options, opts(&["lowerdir=/a"]));
        let mut bind = vec![Mount {
            type_: "bind".into(),
            options: opts(&["rbind", "rw"]),
            ..Default::default()
        }];
        try_readonly(&mut bind);
        assert_eq!(bind[0].options, opts(&["rbind", "rw"]));
    }

    #[test]
    fn temp_mounts_clean_up_on_every_path() {
        // Nothing to mount needs no privileges: the directory comes and goes.
        let temp = TempMount::new(&[]).unwrap();
        let dir = temp.path().to_path_buf();
        assert!(dir.is_dir());
        assert!(dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("corral-mount"));
        temp.release().unwrap();
        assert!(!dir.exists());
        let dropped = TempMount::new(&[]).unwrap().path().to_path_buf();
        assert!(!dropped.exists());
        // A mount that fails leaves no directory behind.
        let bad = Mount {
            type_: "no-such-fs".into(),
            source: "none".into(),
            ..Default::default()
        };
        let e = TempMount::new(&[bad]).unwrap_err().to_string();
        let dir = e
            .strip_prefix("failed to mount ")
            .and_then(|rest| rest.split(": ").next())
            .unwrap_or_else(|| panic!("{e}"));
        assert!(dir.contains("corral-mount"), "{e}");
        assert!(!Path::new(dir).exists(), "{e}");
    }
}
