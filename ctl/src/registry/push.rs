//! containerd's `remotes.PushContent` for `ctr images push`: the image's content, children
//! before parents (layers and configs, then manifests, then the index), each blob the
//! registry lacks uploaded (or mounted from the repository it was pulled from, as its
//! distribution-source label says), manifests by digest, the image's own manifest or index
//! under the reference's tag.

use std::collections::HashSet;
use std::io::{self, Read};

use super::error::RegistryError;
use super::pull::make_ref_key;
use super::resolver::{Pushed, Repository};
use super::workers::transfer_all;
use crate::image::content::{read_blob, ContentStore, WriteProgress};
use crate::image::handlers::{children, filter_platforms};
use crate::image::media_types as mt;
use crate::image::ocispec::Descriptor;
use crate::image::platforms::Matcher;
use crate::image::progress::Observer;
use crate::image::{ImageError, Result};

/// Counts what is read, for progress.
struct Counting<'a> {
    inner: Box<dyn Read + 'a>,
    done: i64,
    total: i64,
    report: &'a mut dyn FnMut(WriteProgress),
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as i64;
        (self.report)(WriteProgress::Writing {
            offset: self.done,
            total: self.total,
        });
        Ok(n)
    }
}

/// The descriptors to push, children before their parents.
fn push_order(
    store: &dyn ContentStore,
    target: &Descriptor,
    platforms: &Matcher,
) -> Result<Vec<Descriptor>> {
    fn visit(
        store: &dyn ContentStore,
        desc: &Descriptor,
        platforms: &Matcher,
        seen: &mut HashSet<String>,
        out: &mut Vec<Descriptor>,
        depth: usize,
    ) -> Result<()> {
        if depth > 32 || !seen.insert(desc.digest.clone()) {
            return Ok(());
        }
        let kids = children(store, desc)?;
        let kids = if mt::is_index(&desc.media_type) {
            filter_platforms(kids, platforms)
        } else {
            kids
        };
        for k in &kids {
            visit(store, k, platforms, seen, out, depth + 1)?;
        }
        out.push(desc.clone());
        Ok(())
    }
    let mut out = Vec::new();
    visit(store, target, platforms, &mut HashSet::new(), &mut out, 0)?;
    Ok(out)
}

/// Another repository of the same registry that holds `desc`, from its distribution-source
/// label.
fn mount_source(store: &dyn ContentStore, repo: &Repository, desc: &Descriptor) -> Option<String> {
    let info = store.info(&desc.digest).ok()?;
    let key = format!("{}{}", super::pull::DISTRIBUTION_SOURCE_LABEL, repo.host);
    info.labels
        .get(&key)?
        .split(',')
        .map(str::trim)
        .find(|r| !r.is_empty() && *r != repo.path)
        .map(str::to_string)
}

fn local(e: ImageError) -> RegistryError {
    RegistryError::Status(e.to_string())
}

/// Layers uploaded at once (ctr's `--max-concurrent-uploaded-layers` default of 3).
pub const DEFAULT_CONCURRENT_UPLOADS: usize = 3;

/// Pushes `target` (the local image's) to `repo`, under its tag (or digest): the blobs
/// first, on at most `threads` threads, then the manifests and indexes, children first.
pub fn push(
    repo: &Repository,
    store: &(dyn ContentStore + Sync),
    target: &Descriptor,
    platforms: &Matcher,
    threads: usize,
    observer: &mut dyn Observer,
) -> Result<()> {
    let is_doc = |d: &Descriptor| mt::is_manifest(&d.media_type) || mt::is_index(&d.media_type);
    let (docs, blobs): (Vec<Descriptor>, Vec<Descriptor>) = push_order(store, target, platforms)?
        .into_iter()
        .partition(is_doc);
    let blobs: Vec<Descriptor> = blobs
        .into_iter()
        .filter(|d| {
            let skip = mt::is_non_distributable(&d.media_type);
            if skip {
                log::debug!("skipping non-distributable {}", d.digest);
            }
            !skip
        })
        .collect();
    transfer_all(&blobs, threads, "push", observer, &|desc, progress| {
        push_blob(repo, store, desc, progress)
    })?;
    for desc in &docs {
        let key = make_ref_key(desc);
        let data = read_blob(store, desc)?;
        let reference = if desc.digest == target.digest && repo.digest.is_empty() {
            if repo.tag.is_empty() {
                "latest".to_string()
            } else {
                repo.tag.clone()
            }
        } else {
            desc.digest.clone()
        };
        observer.blob(&key, WriteProgress::Waiting);
        repo.push_manifest(desc, &data, &reference)
            .map_err(|e| ImageError::from(e).context(format_args!("failed to push {key}")))?;
        observer.blob(&key, WriteProgress::Done { size: desc.size });
    }
    Ok(())
}

/// Uploads one blob the registry lacks, or mounts it from another repository.
fn push_blob(
    repo: &Repository,
    store: &dyn ContentStore,
    desc: &Descriptor,
    progress: &mut dyn FnMut(WriteProgress),
) -> Result<()> {
    let key = make_ref_key(desc);
    let from = mount_source(store, repo, desc);
    let pushed = {
        let mut report_cell = Some(&mut *progress);
        repo.push_blob(desc, from.as_deref(), &mut || {
            let inner = store.reader(&desc.digest, 0).map_err(local)?;
            let report = report_cell
                .take()
                .ok_or_else(|| RegistryError::Status(format!("{}: opened twice", desc.digest)))?;
            Ok(Box::new(Counting {
                inner,
                done: 0,
                total: desc.size,
                report,
            }))
        })
        .map_err(|e| ImageError::from(e).context(format_args!("failed to push {key}")))?
    };
    progress(match pushed {
        Pushed::Exists | Pushed::Mounted => WriteProgress::Exists,
        Pushed::Uploaded => WriteProgress::Done { size: desc.size },
    });
    Ok(())
}
