//! Unpacking an image into snapshots, as containerd 1.6's client does (`image.go` `Unpack`,
//! `rootfs/apply.go`): for each layer, bottom first, the snapshot named by the chain ID of
//! the layers so far is used when it exists; otherwise a snapshot keyed
//! `extract-<nanoseconds>-<random> <chainID>` is prepared on the parent chain, the layer is
//! applied into it by the `Diff` service, its diff ID is checked, and it is committed under
//! the chain ID. A freshly applied layer blob gets `containerd.io/uncompressed=<diffID>`; the
//! config gets `containerd.io/gc.ref.snapshot.<snapshotter>=<chainID>`, which holds the
//! snapshots once the lease is gone.

use std::collections::BTreeMap;

use corral_protocols::rpc::CallContext;
use corral_protocols::services::diff::v1::diff::ApplyRequest;
use corral_protocols::services::diff::v1::diff_rpc::DiffClient;
use corral_protocols::services::namespaces::v1::namespace::GetNamespaceRequest;
use corral_protocols::services::namespaces::v1::namespace_rpc::NamespacesClient;
use corral_protocols::services::snapshots::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::types::mount::Mount;
use protobuf::MessageField;

use super::content::ContentStore;
use super::digest::chain_id;
use super::error::{ImageError, Result};
use super::handlers::{manifest, rootfs};
use super::image_store::Image;
use super::importer::UNCOMPRESSED_LABEL;
use super::lease::random_bytes;
use super::ocispec::Descriptor;
use super::platforms::Matcher;

/// The snapshotter containerd uses when none is named (`containerd.DefaultSnapshotter`).
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
/// The namespace label naming a namespace's default snapshotter
/// (`defaults.DefaultSnapshotterNSLabel`).
pub const SNAPSHOTTER_NS_LABEL: &str = "containerd.io/defaults/snapshotter";
/// The config label prefix that holds an image's unpacked snapshots.
pub const GC_SNAPSHOT_LABEL: &str = "containerd.io/gc.ref.snapshot.";

/// The snapshotter to use: `name`, else the namespace's default label, else overlayfs
/// (containerd's `resolveSnapshotterName`).
pub fn resolve_snapshotter(
    namespaces: &NamespacesClient,
    ctx: &CallContext,
    namespace: &str,
    name: &str,
) -> Result<String> {
    if !name.is_empty() {
        return Ok(name.to_string());
    }
    let req = GetNamespaceRequest {
        name: namespace.to_string(),
        ..Default::default()
    };
    let label = match namespaces.get(ctx, &req) {
        Ok(resp) => resp
            .namespace
            .as_ref()
            .and_then(|n| n.labels.get(SNAPSHOTTER_NS_LABEL).cloned())
            .unwrap_or_default(),
        Err(s) => {
            let e = ImageError::from(s);
            if !e.is_not_found() {
                return Err(e);
            }
            String::new()
        }
    };
    Ok(if label.is_empty() {
        DEFAULT_SNAPSHOTTER.to_string()
    } else {
        label
    })
}

/// A layer to apply: its blob and the diff ID it must produce (`rootfs.Layer`).
#[derive(Debug, Clone)]
pub struct Layer {
    /// The uncompressed digest.
    pub diff_id: String,
    /// The blob as the manifest lists it.
    pub blob: Descriptor,
}

/// The layers of `image` for `matcher`, each paired with its diff ID (`getLayers`).
pub fn layers(
    store: &dyn ContentStore,
    image: &Image,
    matcher: &Matcher,
) -> Result<(Descriptor, Vec<Layer>)> {
    let m = manifest(store, &image.target, Some(matcher))?;
    let diff_ids = rootfs(store, &m.config).map_err(|e| e.context("failed to resolve rootfs"))?;
    if diff_ids.len() != m.layers.len() {
        return Err(ImageError::InvalidArgument(
            "mismatched image rootfs and manifest layers".into(),
        ));
    }
    let layers = diff_ids
        .into_iter()
        .zip(m.layers)
        .map(|(diff_id, blob)| Layer { diff_id, blob })
        .collect();
    Ok((m.config, layers))
}

/// The chain ID `image` unpacks to for `matcher` (`identity.ChainID(RootFS)`); empty for
/// an image without layers.
pub fn image_chain_id(
    store: &dyn ContentStore,
    image: &Image,
    matcher: &Matcher,
) -> Result<String> {
    let m = manifest(store, &image.target, Some(matcher))?;
    let diff_ids = rootfs(store, &m.config)?;
    Ok(chain_id(&diff_ids).unwrap_or_default())
}

/// A snapshotter reached through corrald's `Snapshots` service, and its `Diff` service.
pub struct Unpacker<'a> {
    /// The content store, with the lease in its context.
    pub store: &'a dyn ContentStore,
    /// The snapshots service.
    pub snapshots: SnapshotsClient,
    /// The diff service.
    pub diff: DiffClient,
    /// Namespace, lease and timeout for every call.
    pub ctx: CallContext,
    /// The snapshotter's name.
    pub snapshotter: String,
}

impl Unpacker<'_> {
    /// Whether the snapshot `key` exists.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let req = StatSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
            ..Default::default()
        };
        match self.snapshots.stat(&self.ctx, &req) {
            Ok(_) => Ok(true),
            Err(s) => {
                let e = ImageError::from(s);
                if e.is_not_found() {
                    Ok(false)
                } else {
                    Err(e.context(format_args!("failed to stat snapshot {key}")))
                }
            }
        }
    }

    /// Unpacks `image` for `matcher`; its chain ID.
    pub fn unpack(&self, image: &Image, matcher: &Matcher) -> Result<String> {
        let (config, layers) = layers(self.store, image, matcher)?;
        let mut chain: Vec<String> = Vec::with_capacity(layers.len());
        for layer in &layers {
            if self.apply_layer(layer, &chain)? {
                let labels =
                    BTreeMap::from([(UNCOMPRESSED_LABEL.to_string(), layer.diff_id.clone())]);
                self.store.update(
                    &layer.blob.digest,
                    &labels,
                    &[format!("labels.{UNCOMPRESSED_LABEL}")],
                )?;
            }
            chain.push(layer.diff_id.clone());
        }
        let rootfs = chain_id(&chain).unwrap_or_default();
        let key = format!("{GC_SNAPSHOT_LABEL}{}", self.snapshotter);
        let labels = BTreeMap::from([(key.clone(), rootfs.clone())]);
        self.store
            .update(&config.digest, &labels, &[format!("labels.{key}")])?;
        Ok(rootfs)
    }

    /// `rootfs.ApplyLayerWithOpts`: makes the snapshot for `chain` + `layer`; true when it
    /// was applied now, false when it existed.
    fn apply_layer(&self, layer: &Layer, chain: &[String]) -> Result<bool> {
        let mut full = chain.to_vec();
        full.push(layer.diff_id.clone());
        let id = chain_id(&full).unwrap_or_default();
        if self.exists(&id)? {
            return Ok(false);
        }
        match self.apply(layer, chain, &id) {
            Ok(()) => Ok(true),
            Err(e) if e.is_already_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `rootfs.applyLayers` for one layer: prepare, apply, check, commit; the extraction
    /// snapshot is removed if any step fails.
    fn apply(&self, layer: &Layer, parent_chain: &[String], id: &str) -> Result<()> {
        let parent = chain_id(parent_chain).unwrap_or_default();
        let (key, mounts) = loop {
            let key = unpack_key(id);
            let req = PrepareSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.clone(),
                parent: parent.clone(),
                ..Default::default()
            };
            match self.snapshots.prepare(&self.ctx, &req) {
                Ok(resp) => break (key, resp.mounts),
                Err(s) => {
                    let e = ImageError::from(s);
                    if e.is_already_exists() {
                        continue;
                    }
                    return Err(e.context(format_args!(
                        "failed to prepare extraction snapshot {key:?}"
                    )));
                }
            }
        };
        let result = self.apply_and_commit(layer, &key, mounts, id);
        if result.is_err() {
            let req = RemoveSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.clone(),
                ..Default::default()
            };
            if let Err(s) = self.snapshots.remove(&self.ctx, &req) {
                log::warn!("extraction snapshot {key:?} removal failed: {s}");
            }
        }
        result
    }

    fn apply_and_commit(
        &self,
        layer: &Layer,
        key: &str,
        mounts: Vec<Mount>,
        id: &str,
    ) -> Result<()> {
        let req = ApplyRequest {
            diff: MessageField::some(layer.blob.to_pb()),
            mounts,
            ..Default::default()
        };
        let applied = self.diff.apply(&self.ctx, &req).map_err(|s| {
            ImageError::from(s).context(format_args!("failed to extract layer {}", layer.diff_id))
        })?;
        let digest = applied
            .applied
            .as_ref()
            .map(|d| d.digest.clone())
            .unwrap_or_default();
        if digest != layer.diff_id {
            return Err(ImageError::FailedPrecondition(format!(
                "wrong diff id calculated on extraction {digest:?}"
            )));
        }
        let req = CommitSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            name: id.to_string(),
            key: key.to_string(),
            ..Default::default()
        };
        self.snapshots.commit(&self.ctx, &req).map_err(|s| {
            let e = ImageError::from(s);
            if e.is_already_exists() {
                e
            } else {
                e.context(format_args!("failed to commit snapshot {key}"))
            }
        })?;
        Ok(())
    }
}

/// `extract-<nanoseconds>-<base64url of 3 random bytes> <chainID>`
/// (`snapshots.UnpackKeyFormat` with `uniquePart`).
pub fn unpack_key(chain_id: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!(
        "extract-{nanos}-{} {chain_id}",
        base64_url(&random_bytes(3))
    )
}

/// Base64 with the URL alphabet and padding (Go's `base64.URLEncoding`).
fn base64_url(data: &[u8]) -> String {
    crate::commands::format::base64(data)
        .replace('+', "-")
        .replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_keys_look_like_containerds() {
        let key = unpack_key("sha256:abc");
        let (unique, chain) = key.split_once(' ').unwrap();
        assert_eq!(chain, "sha256:abc");
        let parts: Vec<&str> = unique.splitn(3, '-').collect();
        assert_eq!(parts[0], "extract");
        assert!(parts[1].parse::<u32>().is_ok());
        assert_eq!(parts[2].len(), 4);
        assert_ne!(unpack_key("x"), unpack_key("x"));
        assert_eq!(base64_url(&[0xfb, 0xff, 0xbf]), "-_-_");
    }
}
