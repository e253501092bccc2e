//! Snapshotters: the backends that own `<root>/io.containerd.snapshotter.v1.<name>/`, laid
//! out exactly as containerd 1.6 lays them out, so containerd lists and mounts Corral's
//! snapshots and the other way round.
//!
//! - [`Snapshotter`]: what the snapshots service calls, implemented by
//!   [`overlay::OverlaySnapshotter`] (`overlayfs`) and [`native::NativeSnapshotter`]
//!   (`native`, copying, for file systems without overlayfs).
//! - [`storage`]: the snapshotters' own `metadata.db` (containerd's `snapshots/storage`).
//! - [`continuity`]: disk usage, tree copy and d_type check (containerd's `continuity/fs`);
//!   [`dirs`]: the `snapshots/` directory (temporary, removed and orphan directories).
//! - [`info`]: [`Kind`], [`Info`], [`Usage`]; [`mount`]: [`Mount`]; [`error`]:
//!   [`SnapshotError`].
//!
//! A snapshotter knows snapshots by the backend name the metadata layer gives them
//! (`"<ns>/<seq>/<key>"`, see [`crate::metadata::snapshot`]); namespaces, leases and label
//! filtering (only `containerd.io/snapshot/` labels reach the backend) are [`namespaced`]'s.

use std::collections::BTreeMap;
use std::path::Path;

pub mod continuity;
pub mod dirs;
pub mod error;
pub mod info;
pub mod mount;
pub mod namespaced;
pub mod native;
pub mod overlay;
pub mod storage;

pub use error::{SnapshotError, SnapshotResult};
pub use info::{Info, Kind, Usage};
pub use mount::Mount;

/// Labels whose key starts with this are the only ones the metadata layer hands a backend
/// (containerd's `inheritedLabelsPrefix`).
pub const INHERITED_LABELS_PREFIX: &str = "containerd.io/snapshot/";

/// A snapshotter (containerd's `snapshots.Snapshotter`, plus `Cleanup`). Every method is
/// one transaction on the snapshotter's `metadata.db` (with the directory work it needs),
/// safe to call from several threads.
pub trait Snapshotter: Send + Sync {
    /// The name it is registered under (`overlayfs`, `native`).
    fn name(&self) -> &'static str;

    /// Its root directory (`<root>/io.containerd.snapshotter.v1.<name>`).
    fn root(&self) -> &Path;

    /// The info of the snapshot `key` (active, view or committed).
    fn stat(&self, key: &str) -> SnapshotResult<Info>;

    /// Changes the labels of `info.name` as `field_paths` say (none: all labels; `labels`:
    /// all labels; `labels.<key>`: that one) and returns the result.
    fn update(&self, info: &Info, field_paths: &[String]) -> SnapshotResult<Info>;

    /// The resources `key` takes: stored for a committed snapshot, measured now for an active
    /// one.
    fn usage(&self, key: &str) -> SnapshotResult<Usage>;

    /// The mounts of active or view snapshot `key`.
    fn mounts(&self, key: &str) -> SnapshotResult<Vec<Mount>>;

    /// Creates the writable snapshot `key` on committed snapshot `parent` and returns its
    /// mounts.
    fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> SnapshotResult<Vec<Mount>>;

    /// Creates the read-only snapshot `key` of committed snapshot `parent` and returns its
    /// mounts.
    fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> SnapshotResult<Vec<Mount>>;

    /// Commits active snapshot `key` as `name`, recording its usage; `labels` replace its
    /// labels.
    fn commit(
        &self,
        name: &str,
        key: &str,
        labels: &BTreeMap<String, String>,
    ) -> SnapshotResult<()>;

    /// Removes snapshot `key` (refused while another snapshot has it as parent): its record
    /// first, then its directory.
    fn remove(&self, key: &str) -> SnapshotResult<()>;

    /// Calls `f` with every snapshot the filters match (containerd's filter syntax; any of
    /// `filters` must match, none matches all), in name order. The snapshots are read first,
    /// so `f` may call back into the snapshotter.
    fn walk(
        &self,
        filters: &[String],
        f: &mut dyn FnMut(&Info) -> SnapshotResult<()>,
    ) -> SnapshotResult<()>;

    /// Removes the directories under `snapshots/` no record refers to (left by a crash, a
    /// failed operation or another daemon's removal).
    fn cleanup(&self) -> SnapshotResult<()>;
}

/// The labels of `labels` the metadata layer passes to a backend (containerd's
/// `snapshots.FilterInheritedLabels`).
pub fn filter_inherited_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| k.starts_with(INHERITED_LABELS_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_snapshot_labels_are_inherited() {
        let labels: BTreeMap<String, String> = [
            ("containerd.io/snapshot/overlay.upperdir", "/x"),
            ("containerd.io/snapshot.ref", "sha256:abc"),
            ("containerd.io/gc.root", "now"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let kept = filter_inherited_labels(&labels);
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            ["containerd.io/snapshot/overlay.upperdir"]
        );
    }
}
