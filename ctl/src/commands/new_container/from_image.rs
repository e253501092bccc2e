//! A container from an image, as ctr 1.6.20's `NewContainer` and containerd's client make
//! it: the image record (`Images.Get`), its manifest for the platform, unpacked for the
//! snapshotter when it is not (`Image.IsUnpacked`, `Image.Unpack`), then, under a temporary
//! lease (`Client.NewContainer` runs under `WithLease`):
//!
//! - the labels: the image config's (`WithImageConfigLabels`), the image record's and the
//!   `--label`s over them (`WithAdditionalContainerLabels`), and the stop signal
//!   (`WithImageStopSignal`, `SIGTERM` when the image names none);
//! - a new active snapshot keyed by the container id on the image's chain ID, with the
//!   `--snapshotter-label`s (`WithNewSnapshot`; ctr prepares an active snapshot even with
//!   `--read-only`, and the runtime mounts it read-only);
//! - the spec, with `WithImageConfig` reading users and groups from that snapshot: found
//!   in its layer directories when they tell for sure, else with the snapshot mounted
//!   read-only on a temporary directory for the duration (`mount.WithTempMount`);
//! - the record, created while the lease still holds the snapshot.
//!
//! If anything fails once the snapshot is prepared, it is removed again before the lease
//! goes, so a failed create leaves nothing behind.

use std::collections::{BTreeMap, HashMap};

use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_protocols::services::diff::v1::diff_rpc::DiffClient;
use corral_protocols::services::images::v1::images_rpc::ImagesClient;
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use corral_protocols::services::namespaces::v1::namespace_rpc::NamespacesClient;
use corral_protocols::services::snapshots::v1::snapshots::{
    PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::types::mount::Mount;

use super::{create, new_record, new_spec, runtime_options, Created, SpecFlags, SpecRoot};
use crate::commands::background::Background;
use crate::commands::container_flags::ContainerFlags;
use crate::commands::{parse_labels, CtlError, CtlResult, Env};
use crate::image::content::{read_blob, ContentStore, RemoteContent};
use crate::image::digest::chain_id;
use crate::image::error::{ImageError, Result as ImageResult};
use crate::image::handlers;
use crate::image::image_store::{Image, ImageStore, RemoteImages};
use crate::image::layers::{Found, Layers};
use crate::image::lease::{TempLease, DEFAULT_EXPIRY};
use crate::image::media_types;
use crate::image::mount::{try_readonly, TempMount};
use crate::image::ocispec::Descriptor;
use crate::image::platforms::{self, Matcher};
use crate::image::unpack::{resolve_snapshotter, Unpacker};
use crate::spec::image_config::ImageConfig;
use crate::spec::user::{UserFiles, UserRoot};

/// The container label holding the signal that stops it (`containerd.StopSignalLabel`).
pub const STOP_SIGNAL_LABEL: &str = "io.containerd.image.config.stop-signal";
/// The stop signal when the image names none (ctr's default for `WithImageStopSignal`).
pub const DEFAULT_STOP_SIGNAL: &str = "SIGTERM";
/// The most bytes a label's key and value may hold together (containerd's `labels.Validate`).
const MAX_LABEL_SIZE: usize = 4096;

/// Creates container `id` from the image `reference` on `client`, as ctr does; the record
/// corrald stored.
pub(super) fn new_container(
    client: &Client,
    env: &Env,
    flags: &ContainerFlags,
    reference: &str,
    id: &str,
    args: &[String],
    cpu_shares: i64,
) -> CtlResult<Created> {
    let ctx = &env.ctx;
    // The lease and the namespace's snapshotter are asked for beside the image: none of the
    // three needs another's answer.
    let lease = {
        let (client, ctx) = (client.clone(), ctx.clone());
        Background::spawn("lease", move || new_lease(&client, &ctx))
    };
    let snapshotter = {
        let namespaces = NamespacesClient::new(client.clone());
        let (ctx, ns) = (ctx.clone(), env.namespace.clone());
        let name = flags.snapshotter.clone().unwrap_or_default();
        Background::spawn("snapshotter", move || {
            resolve_snapshotter(&namespaces, &ctx, &ns, &name)
        })
    };
    let image = RemoteImages::new(ImagesClient::new(client.clone()), ctx.clone()).get(reference)?;
    let matcher = match flags.platform.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Matcher::only(&platforms::parse(p)?),
        None => Matcher::default_host(),
    };
    let snapshotter = snapshotter.join()?;
    let store = RemoteContent::new(ContentClient::new(client.clone()), ctx.clone());
    // The manifest and the config are read once: they give the chain ID, then the spec and
    // the labels (containerd's client reads both twice).
    let manifest = handlers::manifest(&store, &image.target, Some(&matcher))?;
    let config_json = read_blob(&store, &manifest.config)?;
    let chain =
        chain_id(&handlers::diff_ids(&config_json, &manifest.config.digest)?).unwrap_or_default();
    let parent = ensure_unpacked(client, ctx, &store, &image, &matcher, &snapshotter, chain)?;
    let checked = SpecFlags::check(flags)?;
    let runtime = runtime_options(flags)?;

    let lease = lease.join()?;
    let ctx = lease.attach(ctx);
    let config = image_config(&manifest.config, &config_json)?;
    let mut labels = container_labels(&config, &image, &flags.labels);
    let snapshot = NewSnapshot::prepare(
        SnapshotsClient::new(client.clone()),
        &ctx,
        &snapshotter,
        id,
        &parent,
        &flags.snapshotter_labels,
    )?;
    let stop_signal = if config.stop_signal.is_empty() {
        DEFAULT_STOP_SIGNAL
    } else {
        config.stop_signal.as_str()
    };
    labels.insert(STOP_SIGNAL_LABEL.to_string(), stop_signal.to_string());

    let spec = snapshot.with_users(|users| {
        let root = SpecRoot::Image {
            config: &config,
            users,
        };
        new_spec(&env.namespace, id, &root, args, &checked, cpu_shares).map_err(CtlError::from)
    })?;
    let mut record = new_record(id, labels, flags, runtime, spec)?;
    record.image = image.name.clone();
    record.snapshotter = snapshotter.clone();
    record.snapshot_key = id.to_string();
    let record = create(client, &ctx, record)?;
    let rootfs = snapshot.keep();
    Ok(Created {
        record,
        rootfs: Some(rootfs),
        lease: Some(lease),
    })
}

/// `Image.IsUnpacked` (its top snapshot, `chain`, exists), then `Image.Unpack` under a
/// lease of its own when it is not; the image's chain ID, which names its top snapshot.
fn ensure_unpacked(
    client: &Client,
    ctx: &CallContext,
    store: &dyn ContentStore,
    image: &Image,
    matcher: &Matcher,
    snapshotter: &str,
    chain: String,
) -> ImageResult<String> {
    if unpacker(client, store, ctx, snapshotter).exists(&chain)? {
        return Ok(chain);
    }
    let lease = new_lease(client, ctx)?;
    let ctx = lease.attach(ctx);
    let leased = RemoteContent::new(ContentClient::new(client.clone()), ctx.clone());
    let chain = unpacker(client, &leased, &ctx, snapshotter).unpack(image, matcher)?;
    release(lease);
    Ok(chain)
}

/// A lease as containerd's client makes one for a piece of work: a random id, the default
/// expiry, no other label.
fn new_lease(client: &Client, ctx: &CallContext) -> ImageResult<TempLease> {
    TempLease::create(
        LeasesClient::new(client.clone()),
        ctx,
        None,
        DEFAULT_EXPIRY,
        HashMap::new(),
    )
}

/// Deletes a lease once its work is done (see [`Created::release_lease`]). Like
/// containerd's client, which defers the deletion and drops its error, a failure here does
/// not fail the work: it is logged, and the lease expires on its own.
pub(super) fn release(lease: TempLease) {
    let id = lease.id().to_string();
    if let Err(e) = lease.release(false) {
        log::warn!("lease {id} was not deleted: {e}");
    }
}

/// The unpacker for `snapshotter` on `client`, reading from `store` and calling with `ctx`.
fn unpacker<'a>(
    client: &Client,
    store: &'a dyn ContentStore,
    ctx: &CallContext,
    snapshotter: &str,
) -> Unpacker<'a> {
    Unpacker {
        store,
        snapshots: SnapshotsClient::new(client.clone()),
        diff: DiffClient::new(client.clone()),
        ctx: ctx.clone(),
        snapshotter: snapshotter.to_string(),
    }
}

/// The runtime configuration in the image config blob `desc`, read as `data`: refused when
/// `desc` is not an image config (`image.Config`).
fn image_config(desc: &Descriptor, data: &[u8]) -> CtlResult<ImageConfig> {
    if !media_types::is_config(&desc.media_type) {
        return Err(CtlError::new(format!(
            "unknown image config media type {}",
            desc.media_type
        )));
    }
    Ok(ImageConfig::from_image_json(data)?)
}

/// The container's labels as ctr builds them: the image config's, then the image record's
/// (those too large to be a label are skipped with a warning, as ctr's `buildLabels`
/// does), then the `--label`s.
fn container_labels(
    config: &ImageConfig,
    image: &Image,
    label_args: &[String],
) -> BTreeMap<String, String> {
    let mut labels = config.labels.clone();
    for (k, v) in &image.labels {
        if k.len() + v.len() > MAX_LABEL_SIZE {
            log::warn!(
                "unable to add image label with key {k} to the container: label key and value length ({} bytes) greater than maximum size ({MAX_LABEL_SIZE} bytes)",
                k.len() + v.len()
            );
            continue;
        }
        labels.insert(k.clone(), v.clone());
    }
    labels.extend(parse_labels(label_args));
    labels
}

/// The container's snapshot, prepared for it; removed again when dropped unless
/// [`keep`](NewSnapshot::keep) said the container record now holds it.
struct NewSnapshot {
    client: SnapshotsClient,
    ctx: CallContext,
    snapshotter: String,
    key: String,
    /// The mounts `Prepare` returned (the same as `Snapshots.Mounts` would).
    mounts: Vec<Mount>,
    kept: bool,
}

impl NewSnapshot {
    /// `Snapshots.Prepare(key, parent)` with the `--snapshotter-label`s (`WithNewSnapshot`).
    fn prepare(
        client: SnapshotsClient,
        ctx: &CallContext,
        snapshotter: &str,
        key: &str,
        parent: &str,
        label_args: &[String],
    ) -> ImageResult<NewSnapshot> {
        let req = PrepareSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
            parent: parent.to_string(),
            labels: parse_labels(label_args).into_iter().collect(),
            ..Default::default()
        };
        let mounts = client.prepare(ctx, &req)?.mounts;
        Ok(NewSnapshot {
            client,
            ctx: ctx.clone(),
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
            mounts,
            kept: false,
        })
    }

    /// Runs `f` with the snapshot's users and groups at hand: `/etc/passwd` and `/etc/group`
    /// found in its layers when they can be, else the snapshot mounted
    /// ([`with_mounted`](Self::with_mounted)). Both read the same files; the layers spare
    /// a mount, a temporary directory and their removal. A failure is tried again on the
    /// mount, so it is told in ctr's words (`mount callback failed on <dir>: ...`).
    fn with_users<T>(&self, mut f: impl FnMut(UserRoot) -> CtlResult<T>) -> CtlResult<T> {
        if let Some(layers) = Layers::of(&self.mounts) {
            let file = |path| match layers.find(path) {
                Found::File(p) => Some(Some(p)),
                Found::Missing => Some(None),
                Found::Unsure => None,
            };
            if let (Some(passwd), Some(group)) = (file("/etc/passwd"), file("/etc/group")) {
                if let Ok(v) = f(UserRoot::Found(&UserFiles { passwd, group })) {
                    return Ok(v);
                }
            }
        }
        self.with_mounted(|mounted| f(UserRoot::TempMount(mounted)))
    }

    /// Runs `f` with the snapshot mounted read-only on a temporary directory (as
    /// containerd's user options do), unmounted and the directory removed whatever `f`
    /// returns.
    fn with_mounted<T>(&self, f: impl FnOnce(&std::path::Path) -> CtlResult<T>) -> CtlResult<T> {
        let mut mounts = self.mounts.clone();
        try_readonly(&mut mounts);
        let temp = TempMount::new(&mounts)?;
        let result = f(temp.path());
        match (temp.release(), result) {
            (Ok(()), result) => result,
            (Err(u), Ok(_)) => Err(u.into()),
            (Err(u), Err(e)) => Err(CtlError::new(format!("{u}: {e}"))),
        }
    }

    /// The container record refers to the snapshot now: it stays. Its mounts, as `Prepare`
    /// returned them.
    fn keep(mut self) -> Vec<Mount> {
        self.kept = true;
        std::mem::take(&mut self.mounts)
    }
}

impl Drop for NewSnapshot {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let req = RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: self.key.clone(),
            ..Default::default()
        };
        if let Err(s) = self.client.remove(&self.ctx, &req) {
            let e = ImageError::from(s);
            if !e.is_not_found() {
                log::warn!("removing snapshot {:?} of the failed create: {e}", self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ocispec::Descriptor;

    #[test]
    fn labels_stack_as_ctr_stacks_them() {
        let config = ImageConfig {
            labels: [
                ("from.config".to_string(), "c".to_string()),
                ("shared".to_string(), "config".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let mut image = Image::new("docker.io/x/y:z", Descriptor::default());
        image.labels.insert("shared".into(), "image".into());
        image.labels.insert("from.image".into(), "i".into());
        image
            .labels
            .insert("huge".into(), "x".repeat(MAX_LABEL_SIZE));
        let labels = container_labels(
            &config,
            &image,
            &["from.flag=f".to_string(), "bare".to_string()],
        );
        assert_eq!(
            labels,
            [
                ("bare", "true"),
                ("from.config", "c"),
                ("from.flag", "f"),
                ("from.image", "i"),
                ("shared", "image"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
        );
        let flag_wins = container_labels(&config, &image, &["shared=flag".to_string()]);
        assert_eq!(flag_wins["shared"], "flag");
    }
}
