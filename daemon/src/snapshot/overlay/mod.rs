//! The overlayfs snapshotter (containerd 1.6 `snapshots/overlay`): each snapshot is a
//! directory `snapshots/<id>` holding `fs/` (its layer, the overlay's upper directory while
//! active) and, for an active one, `work/` (the overlay's work directory); a committed
//! snapshot's `fs/` is a lower directory of the snapshots above it.
//!
//! Layout and mounts are containerd's, so containerd mounts what Corral prepared and the
//! other way round. One deliberate difference: `Remove` deletes the snapshot's directory
//! right away (renamed to `rm-<id>` first), where containerd's plugin configures its
//! snapshotter to leave that to the next `Cleanup`.

pub mod check;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::continuity::{disk_usage, supports_dtype};
use super::dirs::{self, SNAPSHOTS_DIR};
use super::error::{Context, SnapshotError, SnapshotResult};
use super::info::{Info, Kind, Usage};
use super::mount::Mount;
use super::storage::{self, MetaStore, Snapshot};
use super::Snapshotter;
use crate::filter::Filter;

/// The name the snapshotter is registered under.
pub const NAME: &str = "overlayfs";
/// Its directory under the daemon root.
pub const PLUGIN_DIR: &str = "io.containerd.snapshotter.v1.overlayfs";
/// The label carrying a snapshot's upper directory, with `upperdir_label` on.
pub const UPPERDIR_LABEL: &str = "containerd.io/snapshot/overlay.upperdir";

/// `[plugins."io.containerd.snapshotter.v1.overlayfs"]` (the root itself is the caller's:
/// `root_path`, else `<root>/io.containerd.snapshotter.v1.overlayfs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayConfig {
    /// `upperdir_label`: add [`UPPERDIR_LABEL`] to the info `stat`, `update` and `walk`
    /// return (never stored).
    pub upperdir_label: bool,
}

/// The overlayfs snapshotter over one root.
#[derive(Debug)]
pub struct OverlaySnapshotter {
    root: PathBuf,
    snapshots: PathBuf,
    ms: MetaStore,
    upperdir_label: bool,
    /// Mount with `index=off` (the module knows the option).
    index_off: bool,
    /// Mount with `userxattr` (inside a user namespace).
    userxattr: bool,
}

impl OverlaySnapshotter {
    /// Opens (creating it 0700 when missing) the snapshotter at `root`, as containerd's
    /// `NewSnapshotter`: the root must support d_type; `metadata.db` and `snapshots/` are
    /// made there. A root whose `metadata.db` another process holds fails at once.
    pub fn new(root: impl Into<PathBuf>, config: OverlayConfig) -> SnapshotResult<Self> {
        let root = root.into();
        dirs::make_dir_all(&root, 0o700)?;
        let dtype = supports_dtype(&root)
            .map_err(|e| SnapshotError::io(format!("checking d_type on {}", root.display()), e))?;
        if !dtype {
            return Err(check::no_dtype(&root));
        }
        let ms = MetaStore::open(root.join(storage::schema::FILE_NAME))?;
        let snapshots = root.join(SNAPSHOTS_DIR);
        dirs::make_dir_all(&snapshots, 0o700)?;
        let userxattr = check::needs_userxattr(&root).unwrap_or_else(|e| {
            log::warn!("cannot detect whether \"userxattr\" option needs to be used, assuming to be false: {e}");
            false
        });
        Ok(OverlaySnapshotter {
            root,
            snapshots,
            ms,
            upperdir_label: config.upperdir_label,
            index_off: check::supports_index(),
            userxattr,
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

    /// `snapshots/<id>/fs`: the layer, or an active snapshot's upper directory.
    pub fn upper_path(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string()).join("fs")
    }

    /// `snapshots/<id>/work`: an active snapshot's overlay work directory.
    pub fn work_path(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string()).join("work")
    }

    fn label_upperdir(&self, info: &mut Info, id: u64) {
        if self.upperdir_label {
            info.labels.insert(
                UPPERDIR_LABEL.to_string(),
                self.upper_path(id).display().to_string(),
            );
        }
    }

    /// containerd's `mounts`: a bind of the snapshot's own `fs/` without parents; a read-only
    /// bind of the parent's `fs/` for a view of one parent; otherwise an overlay whose lower
    /// directories are the parents' `fs/`, nearest first.
    fn mounts_of(&self, s: &Snapshot) -> Vec<Mount> {
        let path = |p: PathBuf| p.display().to_string();
        if s.parent_ids.is_empty() {
            let flag = if s.kind == Kind::View { "ro" } else { "rw" };
            return vec![Mount::new(
                "bind",
                path(self.upper_path(s.id)),
                [flag, "rbind"],
            )];
        }
        let mut options = Vec::new();
        if self.index_off {
            options.push("index=off".to_string());
        }
        if self.userxattr {
            options.push("userxattr".to_string());
        }
        if s.kind == Kind::Active {
            options.push(format!("workdir={}", path(self.work_path(s.id))));
            options.push(format!("upperdir={}", path(self.upper_path(s.id))));
        } else if s.parent_ids.len() == 1 {
            return vec![Mount::new(
                "bind",
                path(self.upper_path(s.parent_ids[0])),
                ["ro", "rbind"],
            )];
        }
        let lower: Vec<String> = s
            .parent_ids
            .iter()
            .map(|id| path(self.upper_path(*id)))
            .collect();
        options.push(format!("lowerdir={}", lower.join(":")));
        vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options,
        }]
    }

    /// containerd's `createSnapshot`: `new-XXXXXX/{fs,work}` made, the record written, `fs/`
    /// given the parent layer's owner, the directory renamed to `snapshots/<id>`, all inside
    /// the write transaction; on any failure the directory goes again.
    fn create_snapshot(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> SnapshotResult<Vec<Mount>> {
        let mut temp: Option<PathBuf> = None;
        let mut placed: Option<PathBuf> = None;
        let result = self.ms.update(|tx| {
            let td = self
                .prepare_directory(kind, &mut temp)
                .map_err(|e| SnapshotError::io("failed to create prepare snapshot dir", e))?;
            let s = storage::create_snapshot(tx, kind, key, parent, labels)
                .context("failed to create snapshot")?;
            if let Some(pid) = s.parent_ids.first() {
                let st = fs::metadata(self.upper_path(*pid))
                    .map_err(|e| SnapshotError::io("failed to stat parent", e))?;
                std::os::unix::fs::lchown(td.join("fs"), Some(st.uid()), Some(st.gid()))
                    .map_err(|e| SnapshotError::io("failed to chown", e))?;
            }
            let path = self.snapshots.join(s.id.to_string());
            fs::rename(&td, &path).map_err(|e| SnapshotError::io("failed to rename", e))?;
            temp = None;
            placed = Some(path);
            dirs::sync_dir(&self.snapshots)
                .map_err(|e| SnapshotError::io(format!("sync {}", self.snapshots.display()), e))?;
            Ok(s)
        });
        match result {
            Ok(s) => Ok(self.mounts_of(&s)),
            Err(e) => {
                if let Some(td) = temp {
                    dirs::remove_logged(&td);
                }
                if let Some(path) = placed {
                    if let Err(rm) = fs::remove_dir_all(&path) {
                        log::error!(
                            "failed to reclaim snapshot directory {}, directory may need removal: {rm}",
                            path.display()
                        );
                        return Err(e.context(format!("failed to remove path: {rm}")));
                    }
                }
                Err(e)
            }
        }
    }

    /// `new-XXXXXX` with `fs/` (0755) and, for an active snapshot, `work/` (0711). `temp`
    /// names the directory as soon as it exists, so the caller removes it on failure.
    fn prepare_directory(&self, kind: Kind, temp: &mut Option<PathBuf>) -> io::Result<PathBuf> {
        let td = dirs::make_temp_dir(&self.snapshots)?;
        *temp = Some(td.clone());
        fs::DirBuilder::new().mode(0o755).create(td.join("fs"))?;
        if kind == Kind::Active {
            fs::DirBuilder::new().mode(0o711).create(td.join("work"))?;
        }
        Ok(td)
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn name(&self) -> &'static str {
        NAME
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn stat(&self, key: &str) -> SnapshotResult<Info> {
        let (id, mut info, _) = self.ms.view(|tx| storage::get_info(tx, key))?;
        self.label_upperdir(&mut info, id);
        Ok(info)
    }

    fn update(&self, info: &Info, field_paths: &[String]) -> SnapshotResult<Info> {
        self.ms.update(|tx| {
            let mut updated = storage::update_info(tx, info, field_paths)?;
            if self.upperdir_label {
                let (id, _, _) = storage::get_info(tx, &updated.name)?;
                self.label_upperdir(&mut updated, id);
            }
            Ok(updated)
        })
    }

    fn usage(&self, key: &str) -> SnapshotResult<Usage> {
        let (id, info, usage) = self.ms.view(|tx| storage::get_info(tx, key))?;
        if info.kind != Kind::Active {
            return Ok(usage);
        }
        let upper = self.upper_path(id);
        disk_usage(&upper).map_err(|e| SnapshotError::io("failed to compute usage", e))
    }

    fn mounts(&self, key: &str) -> SnapshotResult<Vec<Mount>> {
        let s = self
            .ms
            .view(|tx| storage::get_snapshot(tx, key))
            .context("failed to get active mount")?;
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
            let usage = disk_usage(&self.upper_path(id))
                .map_err(|e| SnapshotError::io("failed to compute usage", e))?;
            storage::commit_active(tx, key, name, usage, labels)
                .context("failed to commit snapshot")?;
            Ok(())
        })
    }

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
        let infos = self.ms.view(|tx| {
            let mut infos = storage::walk_info(tx, &filter)?;
            if self.upperdir_label {
                for info in &mut infos {
                    let (id, _, _) = storage::get_info(tx, &info.name)?;
                    self.label_upperdir(info, id);
                }
            }
            Ok(infos)
        })?;
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
mod tests;
