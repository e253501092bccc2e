//! Cgroups left behind by killed containers.
//!
//! When a test's containers are killed instead of deleted (the test failed, or cleanup is
//! forced), runc never removes their cgroups (`/sys/fs/cgroup/<controller>/<namespace>/<id>`).
//! [`CgroupSnapshot`] records which cgroup directories existed before the test started, so
//! cleanup removes only directories created since, and never one of the host's.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::mounts::{mount_table, MountEntry};
use super::wait::wait_for;

/// How deep [`CgroupSnapshot::take`] walks below a cgroup mount.
const MAX_DEPTH: usize = 32;

/// The set of cgroup directories that existed when it was taken, under every cgroup
/// (v1 or v2) mount of this process.
#[derive(Debug, Clone, Default)]
pub struct CgroupSnapshot {
    mounts: Vec<PathBuf>,
    dirs: HashSet<PathBuf>,
}

impl CgroupSnapshot {
    /// Walks every cgroup mount. Unreadable directories are skipped.
    pub fn take() -> io::Result<CgroupSnapshot> {
        let mounts: Vec<PathBuf> = cgroup_mounts()?
            .into_iter()
            .map(|m| m.mount_point)
            .collect();
        let mut dirs = HashSet::new();
        for mount in &mounts {
            walk(mount, 0, &mut dirs);
        }
        Ok(CgroupSnapshot { mounts, dirs })
    }

    /// True when `dir` existed when the snapshot was taken.
    pub fn contains(&self, dir: &Path) -> bool {
        self.dirs.contains(dir)
    }

    /// Removes each of `dirs` and then its ancestors, stopping at the first one that existed
    /// in the snapshot, is a cgroup mount, or is not empty. Waits up to `deadline` for the
    /// killed processes to leave the cgroups. Returns the new directories that are still
    /// there (empty when all went).
    pub fn remove_new(&self, dirs: &[PathBuf], deadline: Duration) -> Vec<PathBuf> {
        let candidates: Vec<&PathBuf> = dirs.iter().filter(|d| !self.contains(d)).collect();
        let _ = wait_for(deadline, "new cgroups to be removed", || {
            candidates.iter().all(|dir| self.remove_with_ancestors(dir))
        });
        candidates
            .into_iter()
            .filter(|d| d.exists())
            .cloned()
            .collect()
    }

    /// Removes `dir` and its new, empty ancestors; true when `dir` is gone.
    fn remove_with_ancestors(&self, dir: &Path) -> bool {
        let mut current = Some(dir);
        while let Some(d) = current {
            if self.contains(d) || self.mounts.iter().any(|m| m == d) {
                break;
            }
            if !self.mounts.iter().any(|m| d.starts_with(m)) {
                break;
            }
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => break,
            }
            current = d.parent();
        }
        !dir.exists()
    }
}

/// The cgroups a test's containers make under a containerd namespace (`<mount>/<ns>/<id>`, the
/// default cgroup path of ctr's and corralctl's specs): what was there when it was made is
/// left alone, what is new is removed when it is dropped (runc removes a container's own
/// cgroup, never the namespace's parent).
#[derive(Debug)]
pub struct NamespaceCgroups {
    before: CgroupSnapshot,
    namespace: String,
}

impl NamespaceCgroups {
    /// Remembers the cgroups there are now.
    pub fn watch(namespace: &str) -> io::Result<NamespaceCgroups> {
        Ok(NamespaceCgroups {
            before: CgroupSnapshot::take()?,
            namespace: namespace.to_string(),
        })
    }

    /// The namespace's directories made since [`watch`](Self::watch).
    pub fn new_dirs(&self) -> Vec<PathBuf> {
        self.before
            .mounts
            .iter()
            .map(|m| m.join(&self.namespace))
            .filter(|d| d.exists() && !self.before.contains(d))
            .collect()
    }

    /// Removes them (waiting up to `deadline` for their processes to go); what stays.
    pub fn remove(&self, deadline: Duration) -> Vec<PathBuf> {
        self.before.remove_new(&self.new_dirs(), deadline)
    }
}

impl Drop for NamespaceCgroups {
    fn drop(&mut self) {
        let left = self.remove(Duration::from_secs(10));
        if !left.is_empty() {
            eprintln!("cgroups left behind: {left:?}");
        }
    }
}

fn walk(dir: &Path, depth: usize, dirs: &mut HashSet<PathBuf>) {
    dirs.insert(dir.to_path_buf());
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), depth + 1, dirs);
        }
    }
}

/// The cgroup (v1 and v2) mounts of this process.
pub fn cgroup_mounts() -> io::Result<Vec<MountEntry>> {
    Ok(mount_table()?
        .into_iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .collect())
}

/// The directories of the cgroups process `pid` belongs to, one per hierarchy mounted in this
/// process's mount namespace (from `/proc/<pid>/cgroup`).
pub fn cgroup_dirs_of(pid: i32) -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let mounts = cgroup_mounts()?;
    Ok(text
        .lines()
        .filter_map(|line| {
            // hierarchy-id:controllers:path
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let mount = mounts.iter().find(|m| hierarchy_matches(m, controllers))?;
            let relative = Path::new(path).strip_prefix(&mount.root).ok()?;
            Some(mount.mount_point.join(relative))
        })
        .collect())
}

/// True when `mount` is the hierarchy `controllers` (from `/proc/<pid>/cgroup`) names:
/// empty is the v2 hierarchy, otherwise every controller must be among the mount's options.
fn hierarchy_matches(mount: &MountEntry, controllers: &str) -> bool {
    if controllers.is_empty() {
        return mount.fs_type == "cgroup2";
    }
    mount.fs_type == "cgroup"
        && controllers
            .split(',')
            .all(|c| mount.super_options.split(',').any(|o| o == c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hierarchies() {
        let mount = |fs_type: &str, options: &str| MountEntry {
            id: 1,
            parent_id: 0,
            root: PathBuf::from("/"),
            mount_point: PathBuf::from("/sys/fs/cgroup/x"),
            fs_type: fs_type.into(),
            source: "cgroup".into(),
            super_options: options.into(),
        };
        assert!(hierarchy_matches(&mount("cgroup2", "rw"), ""));
        assert!(!hierarchy_matches(&mount("cgroup", "rw,cpu"), ""));
        assert!(hierarchy_matches(
            &mount("cgroup", "rw,cpu,cpuacct"),
            "cpu,cpuacct"
        ));
        assert!(!hierarchy_matches(
            &mount("cgroup", "rw,cpu"),
            "cpu,cpuacct"
        ));
        assert!(hierarchy_matches(
            &mount("cgroup", "rw,name=systemd"),
            "name=systemd"
        ));
    }

    #[test]
    fn finds_own_cgroups() {
        let dirs = cgroup_dirs_of(std::process::id() as i32).unwrap();
        for dir in &dirs {
            assert!(dir.is_dir(), "{} is not a directory", dir.display());
        }
    }
}
