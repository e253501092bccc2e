//! containerd's `Client.Fetch` for `ctr images pull`: resolve the reference, fetch the index
//! or manifest, the manifests for the platforms asked for, their configs and then their
//! layers on a few threads, each blob through the content store's resumable ingest under
//! containerd's reference key (`remotes.MakeRefKey`), verified by digest and size, with
//! containerd's garbage-collection labels on each parent and the distribution-source label
//! on each blob; then the image record. What the store has already is not fetched again.
//!
//! The caller holds the lease (in the store's context) until the image record exists.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::resolver::Repository;
use super::workers::transfer_all;
use crate::image::content::{ContentStore, RemoteContent, WriteProgress, WriteRequest, Written};
use crate::image::digest::Digest;
use crate::image::handlers::{children, filter_platforms};
use crate::image::image_store::{Image, ImageStore};
use crate::image::import::set_children_labels;
use crate::image::media_types as mt;
use crate::image::ocispec::Descriptor;
use crate::image::platforms::Matcher;
use crate::image::progress::Observer;
use crate::image::{ImageError, Result};

/// The label prefix containerd records where a blob came from (`labels.LabelDistributionSource`).
pub const DISTRIBUTION_SOURCE_LABEL: &str = "containerd.io/distribution.source.";
/// Layers fetched at once (ctr's `--max-concurrent-downloads` default of 3).
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;
/// Docker's schema 1 manifests, which containerd no longer fetches.
const DOCKER_MANIFEST_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What a pull fetches.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The platforms whose manifests are fetched (`platforms.All` for `--all-platforms`).
    pub platforms: Matcher,
    /// Layers fetched at once.
    pub max_concurrent_downloads: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            platforms: Matcher::default_host(),
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
        }
    }
}

/// containerd's `remotes.MakeRefKey`: the ingest reference of `desc`.
pub fn make_ref_key(desc: &Descriptor) -> String {
    let key = match desc.annotations.get(mt::ANNOTATION_REF_NAME) {
        Some(name) => format!("{name}@{}", desc.digest),
        None => desc.digest.clone(),
    };
    let m = desc.media_type.as_str();
    let prefix = if mt::is_manifest(m) {
        "manifest"
    } else if mt::is_index(m) {
        "index"
    } else if mt::is_layer(m) {
        "layer"
    } else if mt::is_known_config(m) {
        "config"
    } else {
        log::warn!("reference for unknown type: {m}");
        "unknown"
    };
    format!("{prefix}-{key}")
}

/// The distribution-source label `repo`'s blobs get: key and value.
pub fn distribution_source(repo: &Repository) -> (String, String) {
    (
        format!("{DISTRIBUTION_SOURCE_LABEL}{}", repo.host),
        repo.path.clone(),
    )
}

/// Fetches one blob into `store` (nothing when it is there), resuming an earlier ingest.
pub fn fetch_blob(
    repo: &Repository,
    store: &dyn ContentStore,
    desc: &Descriptor,
    progress: &mut dyn FnMut(WriteProgress),
) -> Result<()> {
    if desc.size <= 0 {
        return Err(ImageError::InvalidArgument(format!(
            "unable to fetch descriptor ({}) which reports content size of zero",
            desc.digest
        )));
    }
    let expected = Digest::parse(&desc.digest)?;
    let (key, value) = distribution_source(repo);
    let req = WriteRequest {
        reference: make_ref_key(desc),
        size: desc.size,
        expected: Some(expected),
        labels: BTreeMap::from([(key, value)]),
    };
    let written = store
        .write_from(
            &req,
            &mut |offset| repo.fetch(desc, offset).map_err(ImageError::from),
            progress,
        )
        .map_err(|e| e.context(format_args!("failed to fetch {}", req.reference)))?;
    if let Written::Existed(d) = written {
        let (key, value) = distribution_source(repo);
        append_label(store, d.as_str(), &key, &value)?;
    }
    Ok(())
}

/// Adds `value` to the comma-separated label `key` of `digest`, as containerd's
/// `AppendDistributionSourceLabel` does for content it already had.
fn append_label(store: &dyn ContentStore, digest: &str, key: &str, value: &str) -> Result<()> {
    let info = store.info(digest)?;
    let current = info.labels.get(key).map(String::as_str).unwrap_or("");
    if current.split(',').any(|v| v == value) {
        return Ok(());
    }
    let joined = if current.is_empty() {
        value.to_string()
    } else {
        format!("{current},{value}")
    };
    store.update(
        digest,
        &BTreeMap::from([(key.to_string(), joined)]),
        &[format!("labels.{key}")],
    )?;
    Ok(())
}

/// Resolves `repo`'s reference and fetches the image into `store`; the descriptor it
/// resolved to. Progress goes to `observer` under each blob's reference key.
pub fn fetch(
    repo: &Repository,
    store: &RemoteContent,
    opts: &FetchOptions,
    observer: &mut dyn Observer,
) -> Result<Descriptor> {
    let root = repo.resolve().map_err(|e| {
        ImageError::from(e).context(format_args!(
            "failed to resolve reference {:?}",
            repo.reference
        ))
    })?;
    log::debug!("resolved {} to {}", repo.reference, root.digest);
    observer.resolved(&repo.reference);
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<Descriptor> = VecDeque::from([root.clone()]);
    // Documents first, in order (they say what comes next); layers afterwards, in parallel.
    while let Some(desc) = queue.pop_front() {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        if mt::is_layer(&desc.media_type) {
            layers.push(desc);
            continue;
        }
        if desc.media_type == DOCKER_MANIFEST_SCHEMA1 {
            return Err(ImageError::Unimplemented(format!(
                "{} not supported",
                desc.media_type
            )));
        }
        let key = make_ref_key(&desc);
        fetch_blob(repo, store, &desc, &mut |p| observer.blob(&key, p))?;
        let kids = children(store, &desc)?;
        let kids = if mt::is_index(&desc.media_type) {
            filter_platforms(kids, &opts.platforms)
        } else {
            kids
        };
        set_children_labels(store, &desc, &kids)?;
        queue.extend(kids);
    }
    // The layers on a few threads at once; the first failure stops the rest.
    let threads = opts.max_concurrent_downloads;
    transfer_all(&layers, threads, "fetch", observer, &|desc, progress| {
        fetch_blob(repo, store, desc, progress)
    })?;
    Ok(root)
}

/// Creates the image record `name` for `target`, or points the existing one at it
/// (containerd's `createNewImage`).
pub fn record_image(images: &dyn ImageStore, name: &str, target: &Descriptor) -> Result<Image> {
    let img = Image::new(name, target.clone());
    match images.create(&img) {
        Ok(i) => Ok(i),
        Err(e) if e.is_already_exists() => images.update(&img, &["target".to_string()]),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::content::memory::MemoryStore;

    #[test]
    fn distribution_sources_are_appended_once() {
        let store = MemoryStore::default();
        let d = store.put(b"blob");
        let key = "containerd.io/distribution.source.reg.example";
        append_label(&store, &d, key, "a/b").unwrap();
        append_label(&store, &d, key, "c/d").unwrap();
        append_label(&store, &d, key, "a/b").unwrap();
        assert_eq!(store.labels(&d)[key], "a/b,c/d");
    }

    #[test]
    fn ref_keys_are_containerds() {
        let d = |m: &str| Descriptor::new(m, "sha256:ab", 1);
        assert_eq!(make_ref_key(&d(mt::OCI_MANIFEST)), "manifest-sha256:ab");
        assert_eq!(make_ref_key(&d(mt::DOCKER_MANIFEST)), "manifest-sha256:ab");
        assert_eq!(make_ref_key(&d(mt::OCI_INDEX)), "index-sha256:ab");
        assert_eq!(make_ref_key(&d(mt::DOCKER_LAYER_GZIP)), "layer-sha256:ab");
        assert_eq!(make_ref_key(&d(mt::OCI_CONFIG)), "config-sha256:ab");
        assert_eq!(make_ref_key(&d("text/plain")), "unknown-sha256:ab");
        let mut named = d(mt::OCI_MANIFEST);
        named
            .annotations
            .insert(mt::ANNOTATION_REF_NAME.to_string(), "3.20".to_string());
        assert_eq!(make_ref_key(&named), "manifest-3.20@sha256:ab");
    }
}
