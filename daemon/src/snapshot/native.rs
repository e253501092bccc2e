//! The native snapshotter (containerd 1.6 `snapshots/native`): each snapshot is a full copy
//! of its parent's tree in `snapshots/<id>`, mounted with a bind. Slow and large, but it
//! works on any file system, overlayfs or not.
//!
//! Layout and mounts are containerd's. Differences, all deliberate: the new directory is
//! made inside the write transaction (containerd makes it before), so `Cleanup` never takes
//! it for an orphan; `Remove` deletes the record before touching the directory; and there is
//! a `Cleanup` (containerd's native snapshotter has none).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::continuity::{copy_dir, disk_usage};
use super::dirs::{self, SNAPSHOTS_DIR};
use super::error::{Context, SnapshotError, SnapshotResult};
use super::info::{Info, Kind, Usage};
use super::mount::Mount;
use super::storage::{self, MetaStore, Snapshot};
use super::Snapshotter;
use crate::filter::Filter;

/// The name the snapshotter is registered under.
pub const NAME: &str = "native";
/// Its directory under the daemon root.
pub const PLUGIN_DIR: &str = "io.containerd.snapshotter.v1.native";

/// The native snapshotter over one root.
#[derive(Debug)]
pub struct NativeSnapshotter {
    root: PathBuf,
    snapshots: PathBuf,
    ms: MetaStore,
}

impl NativeSnapshotter {
    /// Opens (creating it 0700 when missing) the snapshotter at `root`, with `metadata.db`
    /// and `snapshots/` there. A root whose `metadata.db` another process holds fails at once.
    pub fn new(root: impl Into<PathBuf>) -> SnapshotResult<Self> {
        let root = root.into();
        dirs::make_dir_all(&root, 0o700)?;
        let ms = MetaStore::open(root.join(storage::schema::FILE_NAME))?;
        let snapshots = root.join(SNAPSHOTS_DIR);
        dirs::make_dir_all(&snapshots, 0o700)?;
        Ok(NativeSnapshotter {
            root,
            snapshots,
            ms,
        })
    }

    /// The snapshotter's directory under a daemon root.
    pub fn default_root(daemon_root: &Path) -> PathBuf {
        daemon_root.join(PLUGIN_DIR)
    }

    /// The metadata store (for tools and tests).
    pub fn metastore(&self) -> &MetaStore {
        &self.ms
    }

    /// `snapshots/<id>`: the snapshot's tree.
    pub fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    /// containerd's `mounts`: a bind of the snapshot's own tree, or for a view of a parent,
    /// of the parent's; `rbind` then `ro` or `rw`.
    fn mounts_of(&self, s: &Snapshot) -> Vec<Mount> {
        let flag = if s.kind == Kind::View { "ro" } else { "rw" };
        let source = match s.parent_ids.first() {
            Some(parent) if s.kind != Kind::Active => self.snapshot_dir(*parent),
            _ => self.snapshot_dir(s.id),
        };
        vec![Mount::new(
            "bind",
            source.display().to_string(),
            ["rbind", flag],
        )]
    }

    /// containerd's `createSnapshot`: an active snapshot, or one without parent, gets a
    /// directory (a copy of the parent's tree) renamed into `snapshots/<id>`; a view of a
    /// parent gets none. On failure the directory goes again.
    fn create_snapshot(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> SnapshotResult<Vec<Mount>> {
        let parent = parent.filter(|p| !p.is_empty());
        let needs_dir = kind == Kind::Active || parent.is_none();
        let mut temp: Option<PathBuf> = None;
        let mut placed: Option<PathBuf> = None;
        let result = self.ms.update(|tx| {
            if needs_dir {
                let td = dirs::make_temp_dir(&self.snapshots)
                    .map_err(|e| SnapshotError::io("failed to create temp dir", e))?;
                temp = Some(td.clone());
                fs::set_permissions(&td, fs::Permissions::from_mode(0o755)).map_err(|e| {
                    SnapshotError::io(format!("failed to chmod {} to 0755", td.display()), e)
                })?;
            }
            let s = storage::create_snapshot(tx, kind, key, parent, labels)
                .context("failed to create snapshot")?;
            if let Some(td) = temp.clone() {
                if let Some(pid) = s.parent_ids.first() {
                    copy_dir(&td, &self.snapshot_dir(*pid))
                        .map_err(|e| SnapshotError::io("copying of parent failed", e))?;
                }
                let path = self.snapshot_dir(s.id);
                fs::rename(&td, &path).map_err(|e| SnapshotError::io("failed to rename", e))?;
                temp = None;
                placed = Some(path);
                dirs::sync_dir(&self.snapshots).map_err(|e| {
                    SnapshotError::io(format!("sync {}", self.snapshots.display()), e)
                })?;
            }
            Ok(s)
        });
        match result {
            Ok(s) => Ok(self.mounts_of(&s)),
            Err(e) => {
                if let Some(td) = temp {
                    if let Err(rm) = fs::remove_dir_all(&td) {
                        return Err(e.context(format!("remove failed: {rm}")));
                    }
                }
                if let Some(path) = placed {
                    if let Err(rm) = fs::remove_dir_all(&path) {
                        return Err(e.context(format!("failed to remove path: {rm}")));
                    }
                }
                Err(e)
            }
        }
    }
}

impl Snapshotter for NativeSnapshotter {
    fn name(&self) -> &'static str {
        NAME
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn stat(&self, key: &str) -> SnapshotResult<Info> {
        Ok(self.ms.view(|tx| storage::get_info(tx, key))?.1)
    }

    fn update(&self, info: &Info, field_paths: &[String]) -> SnapshotResult<Info> {
        self.ms
            .update(|tx| storage::update_info(tx, info, field_paths))
    }

    fn usage(&self, key: &str) -> SnapshotResult<Usage> {
        let (id, info, usage) = self.ms.view(|tx| storage::get_info(tx, key))?;
        if info.kind != Kind::Active {
            return Ok(usage);
        }
        disk_usage(&self.snapshot_dir(id))
            .map_err(|e| SnapshotError::io("failed to compute usage", e))
    }

    fn mounts(&self, key: &str) -> SnapshotResult<Vec<Mount>> {
        let s = self
            .ms
            .view(|tx| storage::get_snapshot(tx, key))
            .context("failed to get snapshot mount")?;
        Ok(self.mounts_of(&s))
    }

    fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> SnapshotResult<Vec<Mount>> {
        self.create_snapshot(Kind::Active, key, parent, labels)
    }

    fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> SnapshotResult<Vec<Mount>> {
        self.create_snapshot(Kind::View, key, parent, labels)
    }

    fn commit(
        &self,
        name: &str,
        key: &str,
        labels: &BTreeMap<String, String>,
    ) -> SnapshotResult<()> {
        self.ms.update(|tx| {
            let (id, _, _) = storage::get_info(tx, key)?;
            let usage = disk_usage(&self.snapshot_dir(id))
                .map_err(|e| SnapshotError::io("failed to compute usage", e))?;
            storage::commit_active(tx, key, name, usage, labels)
                .context("failed to commit snapshot")?;
            Ok(())
        })
    }

    /// The record goes first (its own transaction); then the directory is renamed to
    /// `rm-<id>` and deleted. containerd's native snapshotter renames before its commit, so a
    /// crash between the two leaves a record whose directory is gone; this order leaves at
    /// worst an unreferenced directory, which `Cleanup` removes.
    fn remove(&self, key: &str) -> SnapshotResult<()> {
        let (id, _) = self
            .ms
            .update(|tx| storage::remove(tx, key))
            .context("failed to remove")?;
        dirs::discard(&self.snapshots, id);
        Ok(())
    }

    fn walk(
        &self,
        filters: &[String],
        f: &mut dyn FnMut(&Info) -> SnapshotResult<()>,
    ) -> SnapshotResult<()> {
        let filter = Filter::parse_all(filters)?;
        let infos = self.ms.view(|tx| storage::walk_info(tx, &filter))?;
        infos.iter().try_for_each(f)
    }

    fn cleanup(&self) -> SnapshotResult<()> {
        let orphans = self
            .ms
            .view_exclusive(|tx| dirs::orphans(&self.snapshots, &storage::id_map(tx)?))?;
        for dir in orphans {
            dirs::remove_logged(&dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::error::SnapshotError;
    use corral_protocols::rpc::Code;
    use std::os::unix::fs::MetadataExt;

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn copies_layers_and_binds_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = NativeSnapshotter::default_root(dir.path());
        let sn = NativeSnapshotter::new(&root).unwrap();
        assert_eq!(sn.name(), "native");
        assert_eq!(
            fs::metadata(root.join("snapshots")).unwrap().mode() & 0o777,
            0o700
        );

        let m = sn.prepare("a", None, &none()).unwrap();
        let a = sn.snapshot_dir(1);
        assert_eq!(
            m,
            [Mount::new("bind", a.display().to_string(), ["rbind", "rw"])]
        );
        assert_eq!(fs::metadata(&a).unwrap().mode() & 0o777, 0o755);
        fs::create_dir(a.join("etc")).unwrap();
        fs::write(a.join("etc/hostname"), b"base\n").unwrap();
        let active = sn.usage("a").unwrap();
        assert_eq!(active.inodes, 3);
        sn.commit("base", "a", &none()).unwrap();
        assert_eq!(sn.usage("base").unwrap(), active);
        assert_eq!(sn.stat("base").unwrap().kind, Kind::Committed);

        // An active child is a copy; a view of one parent is the parent itself, read-only.
        let m = sn.prepare("b", Some("base"), &none()).unwrap();
        assert_eq!(m[0].source, sn.snapshot_dir(2).display().to_string());
        assert_eq!(
            fs::read(sn.snapshot_dir(2).join("etc/hostname")).unwrap(),
            b"base\n"
        );
        fs::write(sn.snapshot_dir(2).join("etc/hostname"), b"changed\n").unwrap();
        assert_eq!(fs::read(a.join("etc/hostname")).unwrap(), b"base\n");
        let m = sn.view("v", Some("base"), &none()).unwrap();
        assert_eq!(
            m,
            [Mount::new("bind", a.display().to_string(), ["rbind", "ro"])]
        );
        assert!(!sn.snapshot_dir(3).exists());
        assert_eq!(sn.mounts("v").unwrap(), m);
        let m = sn.view("empty-view", None, &none()).unwrap();
        assert_eq!(m[0].source, sn.snapshot_dir(4).display().to_string());
        assert_eq!(m[0].options, ["rbind", "ro"]);

        let err = sn.remove("base").unwrap_err();
        assert_eq!(err.code(), Code::FAILED_PRECONDITION);
        assert_eq!(
            err.to_string(),
            "failed to remove: cannot remove snapshot with child: failed precondition"
        );
        let err = sn.mounts("base").unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to get snapshot mount: requested snapshot base not active or view: failed precondition"
        );
        sn.remove("b").unwrap();
        assert!(!sn.snapshot_dir(2).exists());
        assert!(!root.join("snapshots/rm-2").exists());
        sn.remove("v").unwrap();
        let err = sn.remove("v").unwrap_err();
        assert!(matches!(err, SnapshotError::Context { .. }), "{err}");
        assert_eq!(err.code(), Code::NOT_FOUND);

        fs::create_dir(root.join("snapshots/99")).unwrap();
        fs::create_dir(root.join("snapshots/rm-5")).unwrap();
        sn.cleanup().unwrap();
        let mut left: Vec<String> = fs::read_dir(root.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["1", "4"]);

        let mut names = Vec::new();
        sn.walk(&[], &mut |i| {
            names.push(i.name.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(names, ["base", "empty-view"]);
        let err = sn
            .walk(&["kind=="].map(String::from), &mut |_| Ok(()))
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
    }

    #[test]
    fn a_failed_prepare_leaves_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sn = NativeSnapshotter::new(dir.path()).unwrap();
        sn.prepare("a", None, &none()).unwrap();
        let err = sn.prepare("a", None, &none()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to create snapshot: snapshot a: already exists"
        );
        let err = sn.prepare("b", Some("a"), &none()).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        let entries: Vec<_> = fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["1"]);
    }
}
