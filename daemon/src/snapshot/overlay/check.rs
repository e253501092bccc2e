//! What the kernel and the file system under the snapshotter root can do for overlayfs
//! (containerd 1.6 `snapshots/overlay/overlayutils/check.go` and `supportsIndex`).

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};

use crate::snapshot::continuity::supports_dtype;
use crate::snapshot::error::{SnapshotError, SnapshotResult};

/// The overlay module parameter whose presence means `index=off` is understood.
const INDEX_PARAMETER: &str = "/sys/module/overlay/parameters/index";

/// containerd's message for a root without d_type.
pub(crate) fn no_dtype(root: &Path) -> SnapshotError {
    SnapshotError::Unsupported(format!(
        "{} does not support d_type. If the backing filesystem is xfs, please reformat with \
         ftype=1 to enable d_type support",
        root.display()
    ))
}

/// Whether `root` (created 0700 when missing) can hold the overlayfs snapshotter: its file
/// system fills in d_type, and an overlay with two lower directories mounts there
/// (containerd's `overlayutils.Supported`). Needs the privilege to mount.
pub fn supported(root: &Path) -> SnapshotResult<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| SnapshotError::io(format!("mkdir {}", root.display()), e))?;
    let dtype = supports_dtype(root)
        .map_err(|e| SnapshotError::io(format!("checking d_type on {}", root.display()), e))?;
    if !dtype {
        return Err(no_dtype(root));
    }
    supports_multiple_lower_dir(root)
}

/// Mounts an overlay with two lower directories in a temporary directory under `dir` and
/// unmounts it again (containerd's `SupportsMultipleLowerDir`).
pub fn supports_multiple_lower_dir(dir: &Path) -> SnapshotResult<()> {
    let check = CheckDir::new(dir, "multiple-lowerdir-check")?;
    let data = check.overlay_data();
    let merged = check.path.join("merged");
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| SnapshotError::Unsupported(format!("failed to mount overlay: {e}")))?;
    unmount_all(&merged);
    Ok(())
}

/// Whether overlays must be mounted with `userxattr` (containerd's `NeedsUserXAttr`): only
/// inside a user namespace, not on tmpfs, and where the kernel has the option (5.11 or
/// later, or a mount with it succeeds).
pub fn needs_userxattr(dir: &Path) -> SnapshotResult<bool> {
    if !running_in_userns() {
        // Root of the initial user namespace: overlay uses trusted.* xattrs.
        return Ok(false);
    }
    if is_path_on_tmpfs(dir) {
        return Ok(false);
    }
    if kernel_at_least(5, 11) == Some(true) {
        return Ok(true);
    }
    let root = dir.join("userxattr-check");
    if let Err(e) = fs::remove_dir_all(&root) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("failed to remove check directory {}: {e}", root.display());
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)
        .map_err(|e| SnapshotError::io(format!("mkdir {}", root.display()), e))?;
    let result = (|| {
        let check = CheckDir::new(&root, "")?;
        let data = format!("{},userxattr", check.overlay_data());
        let merged = check.path.join("merged");
        match mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        ) {
            Ok(()) => {
                unmount_all(&merged);
                Ok(true)
            }
            Err(e) => {
                log::debug!("cannot mount overlay with \"userxattr\", probably the kernel does not support userxattr: {e}");
                Ok(false)
            }
        }
    })();
    if let Err(e) = fs::remove_dir_all(&root) {
        log::warn!("failed to remove check directory {}: {e}", root.display());
    }
    result
}

/// Whether the overlay module knows `index=off` (containerd's `supportsIndex`).
pub fn supports_index() -> bool {
    Path::new(INDEX_PARAMETER).exists()
}

/// Whether `path` is on a tmpfs (containerd's `IsPathOnTmpfs`); false when it cannot tell.
pub fn is_path_on_tmpfs(path: &Path) -> bool {
    match statfs(path) {
        Ok(s) => s.filesystem_type() == TMPFS_MAGIC,
        Err(e) => {
            log::warn!("could not retrieve statfs for {}: {e}", path.display());
            false
        }
    }
}

/// Whether this process runs in a user namespace other than the initial one (containerd's
/// `userns.RunningInUserNS`): the initial one maps all 2^32 ids onto themselves.
pub fn running_in_userns() -> bool {
    match fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => uid_map_is_nested(&map),
        // No user namespaces in this kernel.
        Err(_) => false,
    }
}

fn uid_map_is_nested(map: &str) -> bool {
    let first: Vec<&str> = map
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    !matches!(first.as_slice(), ["0", "0", "4294967295"])
}

/// Whether the running kernel is at least `major.minor`; `None` when its release string does
/// not say.
pub fn kernel_at_least(major: u32, minor: u32) -> Option<bool> {
    let uts = nix::sys::utsname::uname().ok()?;
    let release = uts.release().to_string_lossy().into_owned();
    let (maj, min) = parse_release(&release)?;
    Some((maj, min) >= (major, minor))
}

/// `6.1.0-13-amd64` -> (6, 1).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Unmounts everything stacked on `target` (containerd's `mount.UnmountAll`); failures are
/// logged.
fn unmount_all(target: &Path) {
    for _ in 0..64 {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return,
            Err(e) => {
                log::warn!(
                    "failed to unmount check directory {}: {e}",
                    target.display()
                );
                return;
            }
        }
    }
}

/// A temporary directory with `lower1`, `lower2`, `upper`, `work` and `merged`, removed on
/// drop.
struct CheckDir {
    path: PathBuf,
}

impl CheckDir {
    fn new(parent: &Path, prefix: &str) -> SnapshotResult<CheckDir> {
        let template = parent.join(format!("{prefix}XXXXXX"));
        let path = nix::unistd::mkdtemp(&template)
            .map_err(|e| SnapshotError::io(format!("mkdtemp {}", template.display()), e.into()))?;
        let check = CheckDir { path };
        for sub in ["lower1", "lower2", "upper", "work", "merged"] {
            let p = check.path.join(sub);
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&p)
                .map_err(|e| SnapshotError::io(format!("mkdir {}", p.display()), e))?;
        }
        Ok(check)
    }

    fn overlay_data(&self) -> String {
        let p = |s: &str| self.path.join(s).display().to_string();
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            p("lower2"),
            p("lower1"),
            p("upper"),
            p("work")
        )
    }
}

impl Drop for CheckDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            log::warn!(
                "failed to remove check directory {}: {e}",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespace_and_kernel_detection() {
        assert!(!uid_map_is_nested("         0          0 4294967295\n"));
        assert!(uid_map_is_nested("         0       1000          1\n"));
        assert!(uid_map_is_nested(""));
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("5.10.0-13-amd64"), Some((5, 10)));
        assert_eq!(parse_release("garbage"), None);
        assert!(kernel_at_least(2, 6).is_some());
    }

    #[test]
    fn overlay_is_supported_here() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true and root is missing: this test cannot be skipped on CI"
            );
            eprintln!("skipping: root missing (mounts an overlay)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("io.containerd.snapshotter.v1.overlayfs");
        supported(&root).unwrap();
        // The check leaves nothing behind.
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
        if !running_in_userns() {
            assert!(!needs_userxattr(&root).unwrap());
        }
    }
}
