//! Where cgroups live on this host: the cgroup mounts (from `mountinfo`), the host's mode
//! (legacy, hybrid or unified, decided as containerd's cgroups library decides it) and the
//! directories of a process's cgroups (from `/proc/<pid>/cgroup`).
//!
//! Every absolute path is taken relative to a root directory, `/` on a real host, so tests
//! can lay out a fake `/proc` and `/sys/fs/cgroup` in a temporary directory.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::parse::read_optional;
use super::CgroupError;

/// Where containerd looks for the cgroup file system.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where hybrid hosts mount the cgroup v2 hierarchy next to the v1 controllers.
pub const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";

/// The host's cgroup layout, as containerd's `cgroups.Mode()` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// No cgroup file system mounted.
    Unavailable,
    /// cgroup v1 controllers only.
    Legacy,
    /// cgroup v1 controllers, plus a cgroup v2 hierarchy at `/sys/fs/cgroup/unified`.
    /// Statistics and OOM notifications use v1, as containerd does.
    Hybrid,
    /// cgroup v2 at `/sys/fs/cgroup`.
    Unified,
}

/// Which cgroup file system a mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// `cgroup` (v1): one hierarchy per controller, or a few controllers together.
    V1,
    /// `cgroup2`: the unified hierarchy.
    V2,
}

/// One cgroup mount from `mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted, as mountinfo shows it (not under the [`CgroupFs`] root).
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy appears at the mount point: `/` normally, a sub-tree
    /// inside containers (e.g. `/docker/<id>`).
    pub root: String,
    /// `cgroup` or `cgroup2`.
    pub version: CgroupVersion,
    /// The super-block options: for v1 the controllers (`memory`, `cpu`, `name=systemd`)
    /// among `rw` and friends.
    pub options: Vec<String>,
}

impl CgroupMount {
    /// True for a v1 hierarchy carrying `controller` (e.g. `memory`, `name=systemd`).
    pub fn has_controller(&self, controller: &str) -> bool {
        self.version == CgroupVersion::V1 && self.options.iter().any(|o| o == controller)
    }
}

/// A process's cgroup paths, from `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCgroups {
    /// v1 controller (or `name=<hierarchy>`) to its cgroup path.
    pub v1: BTreeMap<String, String>,
    /// The cgroup v2 path (the `0::` line), when there is one.
    pub unified: Option<String>,
}

/// Parses the content of `/proc/<pid>/cgroup`: v1 lines `N:controllers:/path`, the v2 line
/// `0::/path`. Like containerd, a line without two colons is an error.
pub fn parse_proc_cgroup(text: &str) -> Result<ProcCgroups, String> {
    let mut out = ProcCgroups::default();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("line {}: invalid cgroup entry {line:?}", i + 1));
        };
        if controllers.is_empty() {
            out.unified = Some(path.to_string());
            continue;
        }
        for c in controllers.split(',') {
            out.v1.insert(c.to_string(), path.to_string());
        }
    }
    Ok(out)
}

/// Parses `mountinfo` and keeps the cgroup and cgroup2 mounts, in mount order.
pub fn parse_mountinfo(text: &str) -> Result<Vec<CgroupMount>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let sep = fields.iter().position(|f| *f == "-");
        let (Some(sep), true) = (sep, fields.len() >= 6) else {
            return Err(format!("line {}: bad mountinfo entry {line:?}", i + 1));
        };
        if sep < 6 || fields.len() < sep + 4 {
            return Err(format!("line {}: bad mountinfo entry {line:?}", i + 1));
        }
        let version = match fields[sep + 1] {
            "cgroup" => CgroupVersion::V1,
            "cgroup2" => CgroupVersion::V2,
            _ => continue,
        };
        out.push(CgroupMount {
            mount_point: PathBuf::from(unescape(fields[4])),
            root: unescape(fields[3]),
            version,
            options: fields[sep + 3].split(',').map(str::to_string).collect(),
        });
    }
    Ok(out)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup file systems of a host (or of a fake host under a directory).
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    mounts: Vec<CgroupMount>,
    mode: CgroupMode,
}

impl CgroupFs {
    /// This host, from `/proc/self/mountinfo`.
    pub fn host() -> Result<Self, CgroupError> {
        Self::load("/")
    }

    /// The host laid out under `root`: mounts from `<root>/proc/self/mountinfo`.
    pub fn load(root: impl Into<PathBuf>) -> Result<Self, CgroupError> {
        let root = root.into();
        let path = root.join("proc/self/mountinfo");
        let text = read_optional(&path)?.ok_or_else(|| CgroupError::NotMounted {
            what: format!("proc ({} is missing)", path.display()),
        })?;
        Self::from_mountinfo(root, &text).map_err(|reason| CgroupError::malformed(path, reason))
    }

    /// A host under `root` whose mount table is `mountinfo` (mount points as the kernel shows
    /// them; files are then read under `root`).
    pub fn from_mountinfo(root: impl Into<PathBuf>, mountinfo: &str) -> Result<Self, String> {
        Ok(Self::from_mounts(root, parse_mountinfo(mountinfo)?))
    }

    /// A host under `root` with these cgroup mounts.
    pub fn from_mounts(root: impl Into<PathBuf>, mounts: Vec<CgroupMount>) -> Self {
        let mode = mode_of(&mounts);
        Self {
            root: root.into(),
            mounts,
            mode,
        }
    }

    /// The directory absolute paths are read under (`/` on a real host).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host's cgroup mode.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The cgroup mounts, in mount order.
    pub fn mounts(&self) -> &[CgroupMount] {
        &self.mounts
    }

    /// `abs` under the root.
    pub fn host_path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    /// Reads `/proc/<pid>/cgroup`; [`CgroupError::ProcessNotFound`] when the process is gone.
    pub fn proc_cgroups(&self, pid: i32) -> Result<ProcCgroups, CgroupError> {
        if pid <= 0 {
            return Err(CgroupError::ProcessNotFound { pid });
        }
        let path = self.host_path(format!("/proc/{pid}/cgroup"));
        // A process that exits while we read answers ESRCH rather than ENOENT.
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if super::parse::is_missing(&e) || e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(CgroupError::ProcessNotFound { pid })
            }
            Err(e) => return Err(CgroupError::io(path, e)),
        };
        parse_proc_cgroup(&text).map_err(|reason| CgroupError::malformed(path, reason))
    }

    /// The directory of a process's v1 cgroup for `controller` (e.g. `memory`), or `None`
    /// when the controller is not mounted or the process is not in it. The directory may
    /// have gone since.
    pub fn v1_dir(&self, cgroups: &ProcCgroups, controller: &str) -> Option<PathBuf> {
        let path = cgroups.v1.get(controller)?;
        let candidates: Vec<&CgroupMount> = self
            .mounts
            .iter()
            .filter(|m| m.has_controller(controller))
            .collect();
        let mount = candidates
            .iter()
            .find(|m| strip_cgroup_root(path, &m.root).is_some())
            .or_else(|| candidates.first())?;
        self.resolve(mount, path)
    }

    /// The directory of a process's cgroup v2 group, or `None` without a cgroup2 mount or
    /// a `0::` line.
    pub fn v2_dir(&self, cgroups: &ProcCgroups) -> Option<PathBuf> {
        let path = cgroups.unified.as_deref()?;
        let mount = self.unified_mount()?;
        self.resolve(mount, path)
    }

    /// The cgroup2 mount to use: the one at `/sys/fs/cgroup`, else the hybrid one at
    /// `/sys/fs/cgroup/unified`, else the first.
    pub fn unified_mount(&self) -> Option<&CgroupMount> {
        let v2 = |p: &str| {
            self.mounts
                .iter()
                .rev()
                .find(|m| m.mount_point == Path::new(p))
                .filter(|m| m.version == CgroupVersion::V2)
        };
        v2(CGROUP_ROOT)
            .or_else(|| v2(HYBRID_UNIFIED))
            .or_else(|| self.mounts.iter().find(|m| m.version == CgroupVersion::V2))
    }

    /// The directory for cgroup `path` of the hierarchy mounted at `mount`. Paths outside the
    /// mounted sub-tree (a cgroup namespace shows them as `/../..`) cannot be located.
    fn resolve(&self, mount: &CgroupMount, path: &str) -> Option<PathBuf> {
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        let rel = strip_cgroup_root(path, &mount.root).unwrap_or(path.trim_start_matches('/'));
        let rel = Path::new(rel);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        Some(self.host_path(&mount.mount_point).join(rel))
    }
}

/// `path` relative to the hierarchy's `root`, when it lies inside it.
fn strip_cgroup_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/').map(|r| r.trim_start_matches('/'))
}

/// containerd's `cgroups.Mode()`, decided from the mount table instead of `statfs`: cgroup2
/// at `/sys/fs/cgroup` is unified; otherwise v1 mounts make it legacy, or hybrid with a
/// cgroup2 at `/sys/fs/cgroup/unified`. Of several cgroup mounts on one mount point the last
/// wins (other file systems are not considered). A host with only a cgroup2 mount elsewhere
/// counts as unified.
fn mode_of(mounts: &[CgroupMount]) -> CgroupMode {
    let last_at = |p: &str| mounts.iter().rev().find(|m| m.mount_point == Path::new(p));
    if last_at(CGROUP_ROOT).is_some_and(|m| m.version == CgroupVersion::V2) {
        return CgroupMode::Unified;
    }
    if mounts.iter().any(|m| m.version == CgroupVersion::V1) {
        if last_at(HYBRID_UNIFIED).is_some_and(|m| m.version == CgroupVersion::V2) {
            return CgroupMode::Hybrid;
        }
        return CgroupMode::Legacy;
    }
    if mounts.iter().any(|m| m.version == CgroupVersion::V2) {
        return CgroupMode::Unified;
    }
    CgroupMode::Unavailable
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// This host's mountinfo (hybrid: v1 controllers, an empty v2 hierarchy beside them).
    pub(crate) const HYBRID_MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// This host's `/proc/self/cgroup`.
    pub(crate) const HYBRID_PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/cf915501998fcdb67e0ba13ca21cbb1f
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    /// A systemd host on cgroup v2.
    pub(crate) const UNIFIED_MOUNTINFO: &str = "\
21 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
24 21 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 24 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// A Docker-era legacy host with co-mounted controllers.
    const LEGACY_MOUNTINFO: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/net\\040cls rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
";

    #[test]
    fn hybrid_host() {
        let fs = CgroupFs::from_mountinfo("/fake", HYBRID_MOUNTINFO).unwrap();
        assert_eq!(fs.mode(), CgroupMode::Hybrid);
        assert_eq!(fs.mounts().len(), 10);
        let m = &fs.mounts()[3];
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(m.root, "/");
        assert_eq!(m.version, CgroupVersion::V1);
        assert!(m.has_controller("memory"));
        assert!(!m.has_controller("cpu"));
        assert!(fs.mounts()[8].has_controller("name=systemd"));

        let cg = parse_proc_cgroup(HYBRID_PROC_CGROUP).unwrap();
        assert_eq!(cg.v1.len(), 9);
        assert_eq!(cg.unified.as_deref(), Some("/"));
        assert_eq!(
            fs.v1_dir(&cg, "memory").unwrap(),
            Path::new("/fake/sys/fs/cgroup/memory/process_api/cf915501998fcdb67e0ba13ca21cbb1f")
        );
        assert_eq!(
            fs.v1_dir(&cg, "cpu").unwrap(),
            Path::new("/fake/sys/fs/cgroup/cpu")
        );
        assert_eq!(fs.v1_dir(&cg, "hugetlb"), None);
        assert_eq!(
            fs.v2_dir(&cg).unwrap(),
            Path::new("/fake/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn unified_host() {
        let fs = CgroupFs::from_mountinfo("/", UNIFIED_MOUNTINFO).unwrap();
        assert_eq!(fs.mode(), CgroupMode::Unified);
        let cg = parse_proc_cgroup("0::/system.slice/containerd.service\n").unwrap();
        assert!(cg.v1.is_empty());
        assert_eq!(
            fs.v2_dir(&cg).unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/containerd.service")
        );
        assert_eq!(fs.v1_dir(&cg, "memory"), None);
    }

    #[test]
    fn legacy_host_with_co_mounted_controllers() {
        let fs = CgroupFs::from_mountinfo("/", LEGACY_MOUNTINFO).unwrap();
        assert_eq!(fs.mode(), CgroupMode::Legacy);
        let cg = parse_proc_cgroup(
            "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n2:net_cls,net_prio:/\n1:name=systemd:/docker/abc\n",
        )
        .unwrap();
        assert_eq!(cg.unified, None);
        assert_eq!(
            fs.v1_dir(&cg, "cpuacct").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/docker/abc")
        );
        assert_eq!(
            fs.v1_dir(&cg, "net_prio").unwrap(),
            Path::new("/sys/fs/cgroup/net cls")
        );
        assert_eq!(fs.v2_dir(&cg), None);
    }

    #[test]
    fn nested_mount_roots_and_namespaced_paths() {
        // Inside a container the hierarchy's sub-tree is mounted at the usual place.
        let mi = "1 0 0:30 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let fs = CgroupFs::from_mountinfo("/", mi).unwrap();
        let cg = parse_proc_cgroup("4:memory:/docker/abc/child\n").unwrap();
        assert_eq!(
            fs.v1_dir(&cg, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/child")
        );
        let cg = parse_proc_cgroup("4:memory:/docker/abc\n").unwrap();
        assert_eq!(
            fs.v1_dir(&cg, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory")
        );
        let cg = parse_proc_cgroup("4:memory:/other\n").unwrap();
        assert_eq!(
            fs.v1_dir(&cg, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/other")
        );
        // A cgroup namespace shows groups outside it as `/..`: not locatable.
        let fs = CgroupFs::from_mountinfo("/", UNIFIED_MOUNTINFO).unwrap();
        let cg = parse_proc_cgroup("0::/../../user.slice\n").unwrap();
        assert_eq!(fs.v2_dir(&cg), None);
        let cg = parse_proc_cgroup("0::/gone (deleted)\n").unwrap();
        assert_eq!(fs.v2_dir(&cg).unwrap(), Path::new("/sys/fs/cgroup/gone"));
    }

    #[test]
    fn modes() {
        assert_eq!(
            CgroupFs::from_mountinfo("/", "").unwrap().mode(),
            CgroupMode::Unavailable
        );
        let only_elsewhere = "1 0 0:30 / /mnt/cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            CgroupFs::from_mountinfo("/", only_elsewhere)
                .unwrap()
                .mode(),
            CgroupMode::Unified
        );
        // A later cgroup2 mount over /sys/fs/cgroup makes a legacy host unified.
        let over = "1 0 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    2 0 0:31 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            CgroupFs::from_mountinfo("/", over).unwrap().mode(),
            CgroupMode::Unified
        );
    }

    #[test]
    fn malformed_input() {
        let e = parse_proc_cgroup("4:memory:/a\nbogus\n").unwrap_err();
        assert_eq!(e, "line 2: invalid cgroup entry \"bogus\"");
        let e = parse_mountinfo("1 0 0:30 / /x rw cgroup cgroup rw\n").unwrap_err();
        assert!(e.starts_with("line 1: bad mountinfo entry"), "{e}");
        let e = parse_mountinfo("1 0 - cgroup\n").unwrap_err();
        assert!(e.starts_with("line 1: bad mountinfo entry"), "{e}");
        assert_eq!(unescape(r"a\040b\134c\0"), "a b\\c\\0");
    }

    #[test]
    fn proc_cgroups_of_a_fake_pid() {
        let dir = tempfile::tempdir().unwrap();
        let fs = CgroupFs::from_mountinfo(dir.path(), HYBRID_MOUNTINFO).unwrap();
        std::fs::create_dir_all(dir.path().join("proc/77")).unwrap();
        std::fs::write(dir.path().join("proc/77/cgroup"), HYBRID_PROC_CGROUP).unwrap();
        let cg = fs.proc_cgroups(77).unwrap();
        assert_eq!(cg.v1["pids"], "/");
        assert!(matches!(
            fs.proc_cgroups(78),
            Err(CgroupError::ProcessNotFound { pid: 78 })
        ));
        assert!(matches!(
            fs.proc_cgroups(0),
            Err(CgroupError::ProcessNotFound { pid: 0 })
        ));
        std::fs::write(dir.path().join("proc/77/cgroup"), "junk\n").unwrap();
        let e = fs.proc_cgroups(77).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("proc/77/cgroup: line 1: invalid cgroup entry \"junk\""),
            "{e}"
        );
    }

    #[test]
    fn load_from_a_root() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            CgroupFs::load(dir.path()),
            Err(CgroupError::NotMounted { .. })
        ));
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        std::fs::write(dir.path().join("proc/self/mountinfo"), UNIFIED_MOUNTINFO).unwrap();
        let fs = CgroupFs::load(dir.path()).unwrap();
        assert_eq!(fs.mode(), CgroupMode::Unified);
        assert_eq!(fs.root(), dir.path());
        assert_eq!(fs.host_path("/proc/1"), dir.path().join("proc/1"));
    }

    #[test]
    fn this_host_parses() {
        // Whatever the layout, the real tables must parse.
        let fs = CgroupFs::host().unwrap();
        let cg = fs.proc_cgroups(std::process::id() as i32).unwrap();
        assert!(!cg.v1.is_empty() || cg.unified.is_some());
    }
}
