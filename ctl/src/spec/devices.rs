//! Device nodes as containerd's `oci` package reads them from the host (oci/utils_unix.go):
//! one node (`DeviceFromPath`), or a directory tree of them (`getDevices`, `HostDevices`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::SpecError;

/// Why one path is not a device the spec can take.
#[derive(Debug)]
enum NodeError {
    /// Not a block, character or FIFO node (`ErrNotADevice`).
    NotADevice,
    /// `lstat` failed.
    Io(std::io::Error),
}

/// Go's `unix.Major` of a `dev_t`.
pub fn major(dev: u64) -> i64 {
    (((dev & 0x0000_0000_000f_ff00) >> 8) | ((dev & 0xffff_f000_0000_0000) >> 32)) as i64
}

/// Go's `unix.Minor` of a `dev_t`.
pub fn minor(dev: u64) -> i64 {
    ((dev & 0x0000_0000_0000_00ff) | ((dev & 0x0000_0fff_fff0_0000) >> 12)) as i64
}

fn node(path: &Path) -> Result<LinuxDevice, NodeError> {
    let meta = std::fs::symlink_metadata(path).map_err(NodeError::Io)?;
    let ft = meta.file_type();
    let typ = if ft.is_block_device() {
        LinuxDeviceType::B
    } else if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_fifo() {
        LinuxDeviceType::P
    } else {
        return Err(NodeError::NotADevice);
    };
    let mut dev = LinuxDevice::default();
    dev.set_path(path.to_path_buf())
        .set_typ(typ)
        .set_major(major(meta.rdev()))
        .set_minor(minor(meta.rdev()))
        .set_file_mode(Some(meta.mode() & 0o7777))
        .set_uid(Some(meta.uid()))
        .set_gid(Some(meta.gid()));
    Ok(dev)
}

/// containerd's `DeviceFromPath`: the node at `path` (not followed if a symlink).
pub fn device_from_path(path: &Path) -> Result<LinuxDevice, SpecError> {
    node(path).map_err(|e| match e {
        NodeError::NotADevice => SpecError::InvalidArgument("not a device node".into()),
        NodeError::Io(e) => SpecError::io("lstat", path, &e),
    })
}

/// containerd's `getDevices(path, "")`: the node at `path`, or every node under the
/// directory `path` in name order, skipping `pts`, `shm`, `fd`, `mqueue`, `.lxc`,
/// `.lxd-mounts` and `.udev` directories, `console`, FIFOs found in directories, and
/// anything that is not a node or vanished.
pub fn devices(path: &Path) -> Result<Vec<LinuxDevice>, SpecError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| SpecError::io("stat", path, &e).context("error stating device path"))?;
    if !meta.is_dir() {
        return Ok(vec![device_from_path(path)?]);
    }
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(path)
        .map_err(|e| SpecError::io("open", path, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| SpecError::io("readdirent", path, &e))?;
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for entry in entries {
        let name = entry.file_name();
        let full = path.join(&name);
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            let skip = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            out.extend(devices(&full)?);
            continue;
        }
        if name == "console" {
            continue;
        }
        match node(&full) {
            Ok(dev) if dev.typ() == LinuxDeviceType::P => {}
            Ok(dev) => out.push(dev),
            Err(NodeError::NotADevice) => {}
            Err(NodeError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(NodeError::Io(e)) => return Err(SpecError::io("lstat", &full, &e)),
        }
    }
    Ok(out)
}

/// Every device under the host's `/dev` (containerd's `HostDevices`).
pub fn host_devices() -> Result<Vec<LinuxDevice>, SpecError> {
    devices(Path::new("/dev"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_t_splits_like_glibc() {
        // makedev(1, 3) and makedev(259, 65536).
        assert_eq!((major(0x103), minor(0x103)), (1, 3));
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfff) << 8)
                | ((major & !0xfff) << 32)
                | (minor & 0xff)
                | ((minor & !0xff) << 12)
        };
        let dev = makedev(259, 65536);
        assert_eq!((major(dev), minor(dev)), (259, 65536));
    }

    #[test]
    fn dev_null_is_a_character_device() {
        let d = device_from_path(Path::new("/dev/null")).unwrap();
        assert_eq!(d.typ(), LinuxDeviceType::C);
        assert_eq!((d.major(), d.minor()), (1, 3));
        assert_eq!(d.file_mode(), Some(0o666));
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["path"], "/dev/null");
        assert_eq!(v["type"], "c");
    }

    #[test]
    fn files_and_missing_paths_are_errors() {
        let e = device_from_path(Path::new("/etc/passwd")).unwrap_err();
        assert_eq!(e.to_string(), "not a device node");
        let e = devices(Path::new("/dev/nope-not-here")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error stating device path: stat /dev/nope-not-here: no such file or directory"
        );
        let all = host_devices().unwrap();
        assert!(all.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!all.iter().any(|d| d.path().starts_with("/dev/pts")));
    }
}
