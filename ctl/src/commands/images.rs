//! `corralctl images` (`image`, `i`): pull, push, import, export, list, check, tag, label,
//! delete, mount, unmount and usage, with ctr 1.6's names, aliases, flags and tables (`usage`
//! is ctr 1.7's). Pull, push and import run in the client, as ctr's do: content streams
//! between the registry (or archive) and corrald's content store under a lease, and is
//! unpacked through the `Snapshots` and `Diff` services, so any client of corrald sees the
//! same result and corrald itself never talks to a registry.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_protocols::services::diff::v1::diff_rpc::DiffClient;
use corral_protocols::services::images::v1::images_rpc::ImagesClient;
use corral_protocols::services::leases::v1::leases::DeleteRequest;
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use corral_protocols::services::namespaces::v1::namespace_rpc::NamespacesClient;
use corral_protocols::services::snapshots::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
    UsageRequest, ViewSnapshotRequest,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;

use super::format::tabwrite;
use super::{join_labels, parse_labels, CtlError, CtlResult, Env};
use crate::image::content::{ContentStore, RemoteContent};
use crate::image::digest::Digest;
use crate::image::exporter::{export, named_target, ExportOptions};
use crate::image::handlers::{check, platforms, size};
use crate::image::image_store::{Image, ImageStore, RemoteImages};
use crate::image::import::{import, ImportOptions};
use crate::image::lease::{TempLease, DEFAULT_EXPIRY};
use crate::image::mount::{mount_all, unmount_all};
use crate::image::platforms::{self as plat, Matcher};
use crate::image::progress::{bytes, Observer, Quiet, TerminalProgress};
use crate::image::reference::RefTranslator;
use crate::image::unpack::{image_chain_id, resolve_snapshotter, Unpacker, GC_SNAPSHOT_LABEL};
use crate::image::{ImageError, Result as ImageResult};
use crate::registry::flags::RegistryFlags;
use crate::registry::pull::{fetch, record_image, FetchOptions, DEFAULT_CONCURRENT_DOWNLOADS};
use crate::registry::push::push;

/// The snapshotter flag ctr's image commands share.
#[derive(Debug, Clone, Args)]
pub struct SnapshotterFlag {
    /// snapshotter name. Empty value stands for the default value.
    #[arg(long, env = "CORRAL_SNAPSHOTTER")]
    pub snapshotter: Option<String>,
}

impl SnapshotterFlag {
    /// The name given, empty for the default.
    pub fn name(&self) -> &str {
        self.snapshotter.as_deref().unwrap_or("")
    }
}

/// `images import`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ImportCommand {
    /// base image name for added images, when provided only images with this name prefix are imported
    #[arg(long)]
    pub base_name: Option<String>,
    /// whether to create digest images (default: false)
    #[arg(long)]
    pub digests: bool,
    /// skip applying --digests option to images named in the importing tar (use it in conjunction with --digests)
    #[arg(long)]
    pub skip_digest_for_named: bool,
    /// image name to keep index as, by default index is discarded
    #[arg(long)]
    pub index_name: Option<String>,
    /// imports content for all platforms, false by default
    #[arg(long)]
    pub all_platforms: bool,
    /// imports content for specific platform
    #[arg(long)]
    pub platform: Option<String>,
    /// skip unpacking the images, false by default
    #[arg(long)]
    pub no_unpack: bool,
    /// compress uncompressed blobs when creating manifest (Docker format only)
    #[arg(long)]
    pub compress_blobs: bool,
    #[command(flatten)]
    pub snapshotter: SnapshotterFlag,
    /// The archive to import (`-` for stdin).
    #[arg(value_name = "in")]
    pub input: String,
}

/// `images pull`'s flags.
#[derive(Debug, Clone, Args)]
pub struct PullCommand {
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub snapshotter: SnapshotterFlag,
    /// Pull content from a specific platform
    #[arg(long)]
    pub platform: Vec<String>,
    /// pull content and metadata from all platforms
    #[arg(long)]
    pub all_platforms: bool,
    /// Print the resulting image's chain ID
    #[arg(long)]
    pub print_chainid: bool,
    /// Set the max concurrent downloads for each pull
    #[arg(long, default_value_t = DEFAULT_CONCURRENT_DOWNLOADS)]
    pub max_concurrent_downloads: usize,
    /// The image to pull (`host/repository[:tag][@digest]`).
    #[arg(value_name = "ref")]
    pub reference: String,
}

/// `images push`'s flags.
#[derive(Debug, Clone, Args)]
pub struct PushCommand {
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// push content from a specific platform
    #[arg(long)]
    pub platform: Option<String>,
    /// digest of manifest
    #[arg(long, value_name = "DIGEST")]
    pub manifest: Option<String>,
    /// media type of manifest digest
    #[arg(long, value_name = "TYPE", default_value = crate::image::media_types::OCI_MANIFEST)]
    pub manifest_type: String,
    /// Set the max concurrent uploaded layers for each push
    #[arg(long, value_name = "N", default_value_t = crate::registry::push::DEFAULT_CONCURRENT_UPLOADS)]
    pub max_concurrent_uploaded_layers: usize,
    /// Where to push (`host/repository[:tag]`).
    #[arg(value_name = "remote")]
    pub remote: String,
    /// The local image (the remote name when not given).
    #[arg(value_name = "local")]
    pub local: Option<String>,
}

/// `images export`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ExportCommand {
    /// do not add Docker compatible manifest.json to archive
    #[arg(long)]
    pub skip_manifest_json: bool,
    /// do not add non-distributable blobs such as Windows layers to archive
    #[arg(long)]
    pub skip_non_distributable: bool,
    /// Pull content from a specific platform
    #[arg(long)]
    pub platform: Vec<String>,
    /// exports content from all platforms
    #[arg(long)]
    pub all_platforms: bool,
    /// The archive to write (`-` for stdout).
    #[arg(value_name = "out")]
    pub output: String,
    /// The images to export.
    #[arg(value_name = "image", required = true)]
    pub images: Vec<String>,
}

/// The subcommands of `images`.
#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// check existing images to ensure all content is available locally
    Check {
        /// print only the ready image refs (fully downloaded and unpacked)
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        snapshotter: SnapshotterFlag,
        /// Filters, as containerd reads them.
        filters: Vec<String>,
    },
    /// export images
    #[command(override_usage = "corralctl images export [flags] <out> <image> ...")]
    Export(ExportCommand),
    /// import images
    #[command(override_usage = "corralctl images import [flags] <in>")]
    Import(Box<ImportCommand>),
    /// pull an image from a remote
    #[command(override_usage = "corralctl images pull [flags] <ref>")]
    Pull(Box<PullCommand>),
    /// push an image to a remote
    #[command(override_usage = "corralctl images push [flags] <remote> [<local>]")]
    Push(Box<PushCommand>),
    /// list images known to corrald
    #[command(visible_alias = "ls")]
    List {
        /// print only the image refs
        #[arg(short, long)]
        quiet: bool,
        /// Filters, as containerd reads them (e.g. name==docker.io/library/busybox:latest).
        filters: Vec<String>,
    },
    /// mount an image to a target path
    Mount {
        /// Enable write support on the mount
        #[arg(long)]
        rw: bool,
        /// Mount the image for the specified platform
        #[arg(long, default_value_t = plat::default_string())]
        platform: String,
        #[command(flatten)]
        snapshotter: SnapshotterFlag,
        /// The image.
        #[arg(value_name = "ref")]
        reference: String,
        /// Where to mount it.
        #[arg(value_name = "target")]
        target: String,
    },
    /// unmount the image from the target
    Unmount {
        /// remove the snapshot after a successful unmount
        #[arg(long)]
        rm: bool,
        #[command(flatten)]
        snapshotter: SnapshotterFlag,
        /// The mount point.
        #[arg(value_name = "target")]
        target: String,
    },
    /// remove one or more images by reference
    #[command(visible_aliases = ["del", "remove", "rm"])]
    Delete {
        /// Synchronously remove image and all associated resources
        #[arg(long)]
        sync: bool,
        /// The images to remove.
        #[arg(required = true, value_name = "ref")]
        refs: Vec<String>,
    },
    /// tag an image
    Tag {
        /// force target_ref to be created, regardless if it already exists
        #[arg(long)]
        force: bool,
        /// The image to tag.
        #[arg(value_name = "source_ref")]
        source: String,
        /// The new names.
        #[arg(value_name = "target_ref", required = true)]
        targets: Vec<String>,
    },
    /// set and clear labels for an image
    Label {
        /// replace all labels
        #[arg(short, long)]
        replace_all: bool,
        /// The image.
        #[arg(value_name = "name")]
        name: String,
        /// Labels, KEY=VALUE; an empty value clears the label.
        labels: Vec<String>,
    },
    /// Display usage of snapshots for a given image ref
    Usage {
        #[command(flatten)]
        snapshotter: SnapshotterFlag,
        /// The image.
        #[arg(value_name = "ref")]
        reference: String,
    },
}

/// The services the image commands use, on one connection.
struct Services {
    client: Client,
    namespace: String,
    ctx: CallContext,
}

impl Services {
    fn connect(env: &Env) -> CtlResult<Services> {
        Ok(Services {
            client: env.connect()?,
            namespace: env.namespace.clone(),
            ctx: env.ctx.clone(),
        })
    }

    fn content(&self, ctx: &CallContext) -> RemoteContent {
        RemoteContent::new(ContentClient::new(self.client.clone()), ctx.clone())
    }

    fn images(&self, ctx: &CallContext) -> RemoteImages {
        RemoteImages::new(ImagesClient::new(self.client.clone()), ctx.clone())
    }

    fn leases(&self) -> LeasesClient {
        LeasesClient::new(self.client.clone())
    }

    fn snapshots(&self) -> SnapshotsClient {
        SnapshotsClient::new(self.client.clone())
    }

    fn lease(&self) -> ImageResult<TempLease> {
        TempLease::create(
            self.leases(),
            &self.ctx,
            None,
            DEFAULT_EXPIRY,
            HashMap::new(),
        )
    }

    fn snapshotter(&self, name: &str) -> ImageResult<String> {
        resolve_snapshotter(
            &NamespacesClient::new(self.client.clone()),
            &self.ctx,
            &self.namespace,
            name,
        )
    }

    fn unpacker<'a>(
        &self,
        store: &'a dyn ContentStore,
        ctx: &CallContext,
        snapshotter: &str,
    ) -> Unpacker<'a> {
        Unpacker {
            store,
            snapshots: self.snapshots(),
            diff: DiffClient::new(self.client.clone()),
            ctx: ctx.clone(),
            snapshotter: snapshotter.to_string(),
        }
    }
}

/// Runs one `images` subcommand.
pub fn run(env: &Env, cmd: ImagesCommand) -> CtlResult {
    match cmd {
        ImagesCommand::Import(c) => self::import_command(env, &c),
        ImagesCommand::Pull(c) => self::pull_command(env, &c),
        ImagesCommand::Push(c) => self::push_command(env, &c),
        ImagesCommand::Export(c) => self::export_command(env, &c),
        ImagesCommand::List { quiet, filters } => list(env, quiet, &filters),
        ImagesCommand::Check {
            quiet,
            snapshotter,
            filters,
        } => self::check_command(env, quiet, snapshotter.name(), &filters),
        ImagesCommand::Tag {
            force,
            source,
            targets,
        } => tag(env, force, &source, &targets),
        ImagesCommand::Label {
            replace_all,
            name,
            labels,
        } => label(env, replace_all, &name, &labels),
        ImagesCommand::Delete { sync, refs } => delete(env, sync, &refs),
        ImagesCommand::Mount {
            rw,
            platform,
            snapshotter,
            reference,
            target,
        } => mount(env, rw, &platform, snapshotter.name(), &reference, &target),
        ImagesCommand::Unmount {
            rm,
            snapshotter,
            target,
        } => unmount(env, rm, snapshotter.name(), &target),
        ImagesCommand::Usage {
            snapshotter,
            reference,
        } => usage(env, snapshotter.name(), &reference),
    }
}

/// `import-<yyyy-MM-dd>`, the name prefix ctr gives images named only by a tag.
fn default_prefix(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let date = super::format::rfc3339(secs);
    format!("import-{}", &date[..10])
}

/// The options `import`'s flags ask for.
fn import_options(c: &ImportCommand, now: SystemTime) -> CtlResult<ImportOptions> {
    if c.skip_digest_for_named && !c.digests {
        return Err(CtlError::new(
            "--skip-digest-for-named must be specified with --digests option",
        ));
    }
    let (prefix, translator) = match c.base_name.as_deref().filter(|b| !b.is_empty()) {
        None => {
            let p = default_prefix(now);
            (p.clone(), RefTranslator::AddPrefix(p))
        }
        Some(base) => (
            base.to_string(),
            RefTranslator::FilterPrefix(base.to_string()),
        ),
    };
    let platform = c.platform.as_deref().map(plat::parse).transpose()?;
    let platforms = if c.all_platforms {
        Matcher::All
    } else if let Some(p) = &platform {
        Matcher::only_strict(p)
    } else {
        Matcher::default_host()
    };
    Ok(ImportOptions {
        ref_translator: Some(translator),
        digest_prefix: c.digests.then_some(prefix),
        skip_digest_for_named: c.skip_digest_for_named,
        index_name: c.index_name.clone().filter(|n| !n.is_empty()),
        platforms,
    })
}

fn import_command(env: &Env, c: &ImportCommand) -> CtlResult {
    let opts = import_options(c, SystemTime::now())?;
    if c.compress_blobs {
        return Err(CtlError::new(
            "--compress-blobs is not supported by corralctl: import the archive without it",
        ));
    }
    let mut input: Box<dyn Read> =
        if c.input == "-" {
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(&c.input).map_err(|e| {
                CtlError::new(format!("open {}: {}", c.input, super::io_reason(&e)))
            })?)
        };
    let svc = Services::connect(env)?;
    // Names that exist before the import: an image this import creates and then cannot
    // unpack is removed again, so a refused layer leaves no image behind (ctr leaves it).
    let existed: std::collections::HashSet<String> = svc
        .images(&svc.ctx)
        .list(&[])
        .map(|l| l.into_iter().map(|i| i.name).collect())
        .unwrap_or_default();
    let terminal = io::stdout().is_terminal();
    let mut table = TerminalProgress::new();
    let mut quiet = Quiet;
    let observer: &mut dyn Observer = if terminal { &mut table } else { &mut quiet };
    let imgs = {
        let lease = svc.lease()?;
        let ctx = lease.attach(&svc.ctx);
        let store = svc.content(&ctx);
        let imgs = import(&store, &svc.images(&ctx), &mut input, &opts, observer);
        if terminal {
            table.finish();
        }
        let imgs = imgs?;
        lease.release(false)?;
        imgs
    };
    if c.no_unpack {
        return Ok(());
    }
    let snapshotter = svc.snapshotter(c.snapshotter.name())?;
    let matcher = match c.platform.as_deref() {
        Some(p) => Matcher::only_strict(&plat::parse(p)?),
        None => Matcher::default_host(),
    };
    for img in &imgs {
        print!("unpacking {} ({})...", img.name, img.target.digest);
        let _ = io::stdout().flush();
        if let Err(e) = unpack(&svc, img, &matcher, &snapshotter) {
            println!();
            let images = svc.images(&svc.ctx);
            for created in imgs.iter().filter(|i| !existed.contains(&i.name)) {
                if let Err(d) = images.delete(&created.name, true) {
                    log::warn!(
                        "removing image {} after the failed unpack: {d}",
                        created.name
                    );
                }
            }
            return Err(e);
        }
        println!("done");
    }
    Ok(())
}

/// ctr's `images pull`: fetch under a lease, record the image, unpack it for each platform.
fn pull_command(env: &Env, c: &PullCommand) -> CtlResult {
    let mut platforms = Vec::new();
    for p in &c.platform {
        platforms.push(
            plat::parse(p)
                .map_err(|e| CtlError::new(format!("unable to parse platform {p}: {e}")))?,
        );
    }
    let matcher = if c.all_platforms {
        Matcher::All
    } else if platforms.is_empty() {
        Matcher::default_host()
    } else {
        Matcher::ordered(&platforms)
    };
    let resolver = c.registry.resolver()?;
    let repo = resolver.repository(&c.reference)?;
    let svc = Services::connect(env)?;
    let snapshotter = svc.snapshotter(c.snapshotter.name())?;
    let terminal = io::stdout().is_terminal();
    let mut table = TerminalProgress::new();
    let mut quiet = Quiet;
    let observer: &mut dyn Observer = if terminal { &mut table } else { &mut quiet };
    // The lease holds what is fetched until the image record refers to it, and what is
    // unpacked until the snapshots are committed.
    let lease = svc.lease()?;
    let ctx = lease.attach(&svc.ctx);
    let store = svc.content(&ctx);
    let opts = FetchOptions {
        platforms: matcher,
        max_concurrent_downloads: c.max_concurrent_downloads.max(1),
    };
    let fetched = fetch(&repo, &store, &opts, observer);
    if terminal {
        table.finish();
    }
    let target = fetched?;
    let img = record_image(&svc.images(&ctx), &c.reference, &target)?;
    if c.all_platforms {
        platforms = platforms_of(&store, &img.target)?;
    }
    if platforms.is_empty() {
        platforms.push(plat::default_spec());
    }
    let start = std::time::Instant::now();
    for p in &platforms {
        println!("unpacking {} {}...", plat::format(p), img.target.digest);
        let chain = svc
            .unpacker(&store, &ctx, &snapshotter)
            .unpack(&img, &Matcher::only(p))?;
        if c.print_chainid {
            println!("image chain ID: {chain}");
        }
    }
    lease.release(false)?;
    println!("done: {:?}\t", start.elapsed());
    Ok(())
}

/// The platforms of an image's manifests (`images.Platforms`).
fn platforms_of(
    store: &dyn ContentStore,
    target: &crate::image::ocispec::Descriptor,
) -> CtlResult<Vec<crate::image::ocispec::Platform>> {
    platforms(store, target)
        .map_err(|e| CtlError::new(format!("unable to resolve image platforms: {e}")))
}

/// ctr's `images push`: the local image's content (or, with `--manifest`, that manifest's),
/// then its manifest under the tag.
fn push_command(env: &Env, c: &PushCommand) -> CtlResult {
    let local = c.local.as_deref().unwrap_or(&c.remote);
    let matcher = match &c.platform {
        Some(p) => Matcher::only(
            &plat::parse(p)
                .map_err(|e| CtlError::new(format!("unable to parse platform {p}: {e}")))?,
        ),
        None => Matcher::All,
    };
    let manifest = match c.manifest.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Some(
            crate::image::digest::Digest::parse(m)
                .map_err(|e| CtlError::new(format!("invalid manifest digest: {e}")))?,
        ),
        None => None,
    };
    let resolver = c.registry.resolver()?;
    let repo = resolver.repository(&c.remote)?;
    let svc = Services::connect(env)?;
    let store = svc.content(&svc.ctx);
    let target = match manifest {
        // As ctr: that digest with the given media type; its size is the stored blob's.
        Some(digest) => {
            let digest = digest.to_string();
            let info = store.info(&digest)?;
            crate::image::ocispec::Descriptor {
                media_type: c.manifest_type.clone(),
                digest,
                size: info.size,
                ..Default::default()
            }
        }
        None => {
            svc.images(&svc.ctx)
                .get(local)
                .map_err(|e| CtlError::new(format!("unable to resolve image to manifest: {e}")))?
                .target
        }
    };
    let terminal = io::stdout().is_terminal();
    let mut table = TerminalProgress::uploading();
    let mut quiet = Quiet;
    let observer: &mut dyn Observer = if terminal { &mut table } else { &mut quiet };
    let threads = c.max_concurrent_uploaded_layers;
    let pushed = push(&repo, &store, &target, &matcher, threads, observer);
    if terminal {
        table.finish();
    }
    pushed?;
    Ok(())
}

/// ctr's `snapshots unpack DIGEST`: unpacks, for this machine's platform, the first image
/// whose target is `digest` ("manifest not found" when none is).
pub fn unpack_by_digest(env: &Env, digest: &str, snapshotter: &str) -> CtlResult {
    crate::image::digest::Digest::parse(digest)
        .map_err(|e| CtlError::new(format!("{digest:?}: {e}")))?;
    let svc = Services::connect(env)?;
    let images = svc
        .images(&svc.ctx)
        .list(&[])
        .map_err(|e| CtlError::new(format!("failed listing images: {e}")))?;
    let Some(img) = images.iter().find(|i| i.target.digest == digest) else {
        return Err(CtlError::new("manifest not found"));
    };
    let snapshotter = svc.snapshotter(snapshotter)?;
    print!("unpacking {digest} ({})...", img.target.media_type);
    let _ = io::stdout().flush();
    if let Err(e) = unpack(&svc, img, &Matcher::default_host(), &snapshotter) {
        println!();
        return Err(e);
    }
    println!("done");
    Ok(())
}

/// `Image.Unpack` under a lease of its own.
fn unpack(svc: &Services, img: &Image, matcher: &Matcher, snapshotter: &str) -> CtlResult<String> {
    let lease = svc.lease()?;
    let ctx = lease.attach(&svc.ctx);
    let store = svc.content(&ctx);
    let chain = svc
        .unpacker(&store, &ctx, snapshotter)
        .unpack(img, matcher)?;
    lease.release(false)?;
    Ok(chain)
}

fn export_command(env: &Env, c: &ExportCommand) -> CtlResult {
    let platforms = if c.platform.is_empty() {
        Matcher::default_strict()
    } else {
        let mut all = Vec::new();
        for p in &c.platform {
            all.push(
                plat::parse(p)
                    .map_err(|e| CtlError::new(format!("invalid platform {p:?}: {e}")))?,
            );
        }
        Matcher::ordered(&all)
    };
    let opts = ExportOptions {
        platforms,
        all_platforms: c.all_platforms,
        skip_docker_manifest: c.skip_manifest_json,
        skip_non_distributable: c.skip_non_distributable,
    };
    let svc = Services::connect(env)?;
    let images = svc.images(&svc.ctx);
    let mut targets = Vec::new();
    for name in &c.images {
        let img = images.get(name)?;
        targets.push(named_target(name, &img.target));
    }
    let store = svc.content(&svc.ctx);
    if c.output == "-" {
        let mut out = io::stdout().lock();
        export(&store, &targets, &opts, &mut out)?;
        out.flush()
            .map_err(|e| CtlError::new(format!("writing: {}", super::io_reason(&e))))?;
        return Ok(());
    }
    let mut file = File::create(&c.output)
        .map_err(|e| CtlError::new(format!("open {}: {}", c.output, super::io_reason(&e))))?;
    let result = export(&store, &targets, &opts, &mut io::BufWriter::new(&mut file));
    if let Err(e) = result {
        drop(file);
        let _ = std::fs::remove_file(&c.output);
        return Err(e.into());
    }
    file.sync_all()
        .map_err(|e| CtlError::new(format!("writing {}: {}", c.output, super::io_reason(&e))))?;
    Ok(())
}

fn list(env: &Env, quiet: bool, filters: &[String]) -> CtlResult {
    let svc = Services::connect(env)?;
    let images = svc
        .images(&svc.ctx)
        .list(filters)
        .map_err(|e| CtlError::new(format!("failed to list images: {e}")))?;
    if quiet {
        for img in &images {
            println!("{}", img.name);
        }
        return Ok(());
    }
    let store = svc.content(&svc.ctx);
    let host = Matcher::default_host();
    let mut rows = Vec::new();
    for img in &images {
        let (total, err) = size(&store, &img.target, &host);
        if let Some(e) = err {
            log::error!("failed calculating size for image {}: {e}", img.name);
        }
        let platforms = match platforms(&store, &img.target) {
            Ok(ps) => {
                let mut names: Vec<String> = ps.iter().map(plat::format).collect();
                names.sort();
                names.dedup();
                names.join(",")
            }
            Err(e) => {
                log::error!("failed resolving platform for image {}: {e}", img.name);
                String::new()
            }
        };
        rows.push(ListRow {
            image: img.clone(),
            size: total,
            platforms,
        });
    }
    print!("{}", list_output(&rows));
    Ok(())
}

/// One line of `images list`.
pub struct ListRow {
    /// The record.
    pub image: Image,
    /// Its size for this host's platform.
    pub size: i64,
    /// Its platforms, formatted and joined (empty: unknown).
    pub platforms: String,
}

/// ctr's REF TYPE DIGEST SIZE PLATFORMS LABELS table.
pub fn list_output(rows: &[ListRow]) -> String {
    let mut text = String::from("REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t\n");
    for r in rows {
        let labels = if r.image.labels.is_empty() {
            "-".to_string()
        } else {
            join_labels(&r.image.labels)
        };
        let platforms = if r.platforms.is_empty() {
            "-"
        } else {
            &r.platforms
        };
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t\n",
            r.image.name,
            r.image.target.media_type,
            r.image.target.digest,
            bytes(r.size),
            platforms,
            labels
        ));
    }
    tabwrite(&text, 1, 1)
}

/// Whether `image` is unpacked in `snapshotter` (`Image.IsUnpacked`).
fn is_unpacked(
    svc: &Services,
    store: &dyn ContentStore,
    image: &Image,
    matcher: &Matcher,
    snapshotter: &str,
) -> ImageResult<bool> {
    let chain = image_chain_id(store, image, matcher)?;
    svc.unpacker(store, &svc.ctx, snapshotter).exists(&chain)
}

fn check_command(env: &Env, quiet: bool, snapshotter: &str, filters: &[String]) -> CtlResult {
    let svc = Services::connect(env)?;
    let images = svc
        .images(&svc.ctx)
        .list(filters)
        .map_err(|e| CtlError::new(format!("failed listing images: {e}")))?;
    if images.is_empty() {
        log::debug!("no images found");
        return Ok(());
    }
    let snapshotter = svc.snapshotter(snapshotter)?;
    let store = svc.content(&svc.ctx);
    let host = Matcher::default_host();
    let mut exit: Option<CtlError> = None;
    let mut text = String::new();
    if !quiet {
        text.push_str("REF\tTYPE\tDIGEST\tSTATUS\tSIZE\tUNPACKED\t\n");
    }
    for img in &images {
        let mut complete = true;
        let (status, size_text) = match check(&store, &img.target, &host) {
            Err(e) => {
                log::error!("unable to check {}: {e}", img.name);
                exit.get_or_insert_with(|| {
                    CtlError::new(format!("unable to check {}: {e}", img.name))
                });
                complete = false;
                ("error".to_string(), "-".to_string())
            }
            Ok(r) => {
                let required: i64 = r.required.iter().map(|d| d.size).sum();
                let present: i64 = r.present.iter().map(|d| d.size).sum();
                let mut status = "complete".to_string();
                if !r.missing.is_empty() {
                    status = "incomplete".into();
                    complete = false;
                }
                if r.available {
                    status.push_str(&format!(" ({}/{})", r.present.len(), r.required.len()));
                    (status, format!("{}/{}", bytes(present), bytes(required)))
                } else {
                    complete = false;
                    (
                        format!("unavailable ({}/?)", r.present.len()),
                        format!("{}/?", bytes(present)),
                    )
                }
            }
        };
        let unpacked = match is_unpacked(&svc, &store, img, &host, &snapshotter) {
            Ok(u) => u,
            Err(e) => {
                log::error!("unable to check unpack for {}: {e}", img.name);
                exit.get_or_insert_with(|| {
                    CtlError::new(format!("unable to check unpack for {}: {e}", img.name))
                });
                false
            }
        };
        if quiet {
            if complete {
                println!("{}", img.name);
            }
        } else {
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\n",
                img.name, img.target.media_type, img.target.digest, status, size_text, unpacked
            ));
        }
    }
    if !quiet {
        print!("{}", tabwrite(&text, 1, 1));
    }
    exit.map_or(Ok(()), Err)
}

fn tag(env: &Env, force: bool, source: &str, targets: &[String]) -> CtlResult {
    let svc = Services::connect(env)?;
    let lease = svc.lease()?;
    let ctx = lease.attach(&svc.ctx);
    let images = svc.images(&ctx);
    let mut image = images.get(source)?;
    for target in targets {
        image.name = target.clone();
        match images.create(&image) {
            Ok(_) => {}
            Err(e) if e.is_already_exists() && force => {
                images.delete(target, false)?;
                images.create(&image)?;
            }
            Err(e) => return Err(e.into()),
        }
        println!("{target}");
    }
    lease.release(false)?;
    Ok(())
}

fn label(env: &Env, replace_all: bool, name: &str, args: &[String]) -> CtlResult {
    let svc = Services::connect(env)?;
    let images = svc.images(&svc.ctx);
    let labels = parse_labels(args);
    if labels.is_empty() {
        // ctr would send an update without field paths (which containerd refuses); the
        // labels as they are is the useful answer.
        let img = images.get(name)?;
        println!("{}", join_labels(&img.labels));
        return Ok(());
    }
    let fields: Vec<String> = labels
        .keys()
        .map(|k| {
            if replace_all {
                "labels".to_string()
            } else {
                format!("labels.{k}")
            }
        })
        .collect();
    let image = Image {
        name: name.to_string(),
        labels,
        ..Image::default()
    };
    let updated = images.update(&image, &fields)?;
    println!("{}", join_labels(&updated.labels));
    Ok(())
}

fn delete(env: &Env, sync: bool, refs: &[String]) -> CtlResult {
    let svc = Services::connect(env)?;
    let images = svc.images(&svc.ctx);
    let mut exit: Option<CtlError> = None;
    let last = refs.len().saturating_sub(1);
    for (i, r) in refs.iter().enumerate() {
        match images.delete(r, sync && i == last) {
            Ok(()) => println!("{r}"),
            Err(e) if e.is_not_found() => log::warn!("{r}: image not found"),
            Err(e) => {
                log::error!("unable to delete {r}: {e}");
                exit.get_or_insert_with(|| CtlError::new(format!("unable to delete {r}: {e}")));
            }
        }
    }
    exit.map_or(Ok(()), Err)
}

/// The lease id `images mount` uses when corrald refuses the target path as one (ctr names
/// the lease after the target; corrald holds lease ids to its identifier rules).
pub fn mount_lease_id(target: &str) -> String {
    let d = Digest::from_bytes(target.as_bytes());
    format!("mount-{}", &d.encoded()[..16])
}

fn mount(
    env: &Env,
    rw: bool,
    platform: &str,
    snapshotter: &str,
    reference: &str,
    target: &str,
) -> CtlResult {
    let svc = Services::connect(env)?;
    let snapshotter = svc.snapshotter(snapshotter)?;
    let labels = HashMap::from([(
        format!("{GC_SNAPSHOT_LABEL}{snapshotter}"),
        target.to_string(),
    )]);
    let create = |id: &str| {
        TempLease::create(
            svc.leases(),
            &svc.ctx,
            Some(id.to_string()),
            DEFAULT_EXPIRY,
            labels.clone(),
        )
    };
    let lease = match create(target) {
        Ok(l) => Some(l),
        Err(ImageError::InvalidArgument(_)) => match create(&mount_lease_id(target)) {
            Ok(l) => Some(l),
            Err(e) if e.is_already_exists() => None,
            Err(e) => return Err(e.into()),
        },
        Err(e) if e.is_already_exists() => None,
        Err(e) => return Err(e.into()),
    };
    let ctx = lease
        .as_ref()
        .map_or_else(|| svc.ctx.clone(), |l| l.attach(&svc.ctx));
    let p = plat::parse(platform)
        .map_err(|e| CtlError::new(format!("unable to parse platform {platform}: {e}")))?;
    let matcher = Matcher::only(&p);
    let img = svc.images(&ctx).get(reference)?;
    let store = svc.content(&ctx);
    let unpacker = svc.unpacker(&store, &ctx, &snapshotter);
    let chain = unpacker
        .unpack(&img, &matcher)
        .map_err(|e| CtlError::new(format!("error unpacking image: {e}")))?;
    println!("{chain}");
    let snapshots = svc.snapshots();
    let mounts = if rw {
        let req = PrepareSnapshotRequest {
            snapshotter: snapshotter.clone(),
            key: target.to_string(),
            parent: chain.clone(),
            ..Default::default()
        };
        snapshots.prepare(&ctx, &req).map(|r| r.mounts)
    } else {
        let req = ViewSnapshotRequest {
            snapshotter: snapshotter.clone(),
            key: target.to_string(),
            parent: chain.clone(),
            ..Default::default()
        };
        snapshots.view(&ctx, &req).map(|r| r.mounts)
    };
    let mounts = match mounts.map_err(ImageError::from) {
        Ok(m) => m,
        Err(e) if e.is_already_exists() => {
            let req = MountsRequest {
                snapshotter: snapshotter.clone(),
                key: target.to_string(),
                ..Default::default()
            };
            snapshots.mounts(&ctx, &req)?.mounts
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = mount_all(&mounts, Path::new(target)) {
        let req = RemoveSnapshotRequest {
            snapshotter: snapshotter.clone(),
            key: target.to_string(),
            ..Default::default()
        };
        if let Err(s) = snapshots.remove(&ctx, &req) {
            let s = ImageError::from(s);
            if !s.is_not_found() {
                eprintln!("Error cleaning up snapshot after mount error: {s}");
            }
        }
        return Err(e.into());
    }
    if let Some(l) = lease {
        l.keep();
    }
    println!("{target}");
    Ok(())
}

fn unmount(env: &Env, rm: bool, snapshotter: &str, target: &str) -> CtlResult {
    let svc = Services::connect(env)?;
    unmount_all(Path::new(target))?;
    if rm {
        let snapshotter = svc.snapshotter(snapshotter)?;
        for id in [target.to_string(), mount_lease_id(target)] {
            let req = DeleteRequest {
                id,
                ..Default::default()
            };
            if let Err(s) = svc.leases().delete(&svc.ctx, &req) {
                let e = ImageError::from(s);
                if !e.is_not_found() && !matches!(e, ImageError::InvalidArgument(_)) {
                    return Err(CtlError::new(format!("error deleting lease: {e}")));
                }
            }
        }
        let req = RemoveSnapshotRequest {
            snapshotter,
            key: target.to_string(),
            ..Default::default()
        };
        if let Err(s) = svc.snapshots().remove(&svc.ctx, &req) {
            let e = ImageError::from(s);
            if !e.is_not_found() {
                return Err(CtlError::new(format!("error removing snapshot: {e}")));
            }
        }
    }
    println!("{target}");
    Ok(())
}

fn usage(env: &Env, snapshotter: &str, reference: &str) -> CtlResult {
    let svc = Services::connect(env)?;
    let snapshotter = if snapshotter.is_empty() {
        crate::image::unpack::DEFAULT_SNAPSHOTTER.to_string()
    } else {
        snapshotter.to_string()
    };
    let img = svc
        .images(&svc.ctx)
        .get(reference)
        .map_err(|e| CtlError::new(format!("failed to ensure if image {reference} exists: {e}")))?;
    let store = svc.content(&svc.ctx);
    let host = Matcher::default_host();
    let unpacked = is_unpacked(&svc, &store, &img, &host, &snapshotter).map_err(|e| {
        CtlError::new(format!(
            "failed to ensure if image {reference} has been unpacked in snapshotter {snapshotter}: {e}"
        ))
    })?;
    if !unpacked {
        return Err(CtlError::new(format!(
            "image {reference} isn't unpacked in snapshotter {snapshotter}"
        )));
    }
    let snapshots = svc.snapshots();
    let mut text = String::from("KEY\tSIZE\tINODES\t\n");
    let mut key = image_chain_id(&store, &img, &host)?;
    while !key.is_empty() {
        let req = UsageRequest {
            snapshotter: snapshotter.clone(),
            key: key.clone(),
            ..Default::default()
        };
        let u = snapshots.usage(&svc.ctx, &req).map_err(|s| {
            CtlError::new(format!(
                "failed to get usage for snapshot {key}: {}",
                ImageError::from(s)
            ))
        })?;
        text.push_str(&format!("{key}\t{}\t{}\t\n", bytes(u.size), u.inodes));
        let req = StatSnapshotRequest {
            snapshotter: snapshotter.clone(),
            key: key.clone(),
            ..Default::default()
        };
        let info = snapshots.stat(&svc.ctx, &req).map_err(|s| {
            CtlError::new(format!(
                "failed to ensure if snapshot {key} has parent or not: {}",
                ImageError::from(s)
            ))
        })?;
        key = info
            .info
            .as_ref()
            .map(|i| i.parent.clone())
            .unwrap_or_default();
    }
    print!("{}", tabwrite(&text, 1, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ocispec::Descriptor;
    use std::time::Duration;

    fn import_cmd(args: &[&str]) -> ImportCommand {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            c: ImportCommand,
        }
        let mut all = vec!["import"];
        all.extend_from_slice(args);
        <P as clap::Parser>::try_parse_from(all).unwrap().c
    }

    #[test]
    fn import_flags_become_ctrs_options() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let o = import_options(&import_cmd(&["x.tar"]), now).unwrap();
        assert_eq!(
            o.ref_translator,
            Some(RefTranslator::AddPrefix("import-2023-11-14".into()))
        );
        assert_eq!(o.digest_prefix, None);
        assert_eq!(o.platforms, Matcher::default_host());
        let o = import_options(
            &import_cmd(&[
                "--base-name",
                "foo/bar",
                "--digests",
                "--all-platforms",
                "x.tar",
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            o.ref_translator,
            Some(RefTranslator::FilterPrefix("foo/bar".into()))
        );
        assert_eq!(o.digest_prefix.as_deref(), Some("foo/bar"));
        assert_eq!(o.platforms, Matcher::All);
        let o = import_options(&import_cmd(&["--platform", "linux/arm64", "x.tar"]), now).unwrap();
        assert!(!o.platforms.matches(&plat::parse("linux/arm/v7").unwrap()));
        assert!(o.platforms.matches(&plat::parse("linux/arm64").unwrap()));
        let err = import_options(&import_cmd(&["--skip-digest-for-named", "x.tar"]), now)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "--skip-digest-for-named must be specified with --digests option"
        );
        assert!(import_options(&import_cmd(&["--platform", "a/b/c/d", "x.tar"]), now).is_err());
    }

    #[test]
    fn list_prints_ctrs_table() {
        let mut img = Image::new(
            "docker.io/corral/busybox:latest",
            Descriptor::new(
                "application/vnd.oci.image.manifest.v1+json",
                "sha256:6abfdf51754e174ff484e1bc94c12bae92afe269e6aa36d9f93b05ec496f13f6",
                405,
            ),
        );
        let rows = [ListRow {
            image: img.clone(),
            size: 1_029_290,
            platforms: "linux/amd64".into(),
        }];
        assert_eq!(
            list_output(&rows),
            "REF                             TYPE                                       DIGEST                                                                  SIZE       PLATFORMS   LABELS \n\
             docker.io/corral/busybox:latest application/vnd.oci.image.manifest.v1+json sha256:6abfdf51754e174ff484e1bc94c12bae92afe269e6aa36d9f93b05ec496f13f6 1005.2 KiB linux/amd64 -      \n"
        );
        img.labels.insert("b".into(), "2".into());
        img.labels.insert("a".into(), "1".into());
        let rows = [ListRow {
            image: img,
            size: 0,
            platforms: String::new(),
        }];
        let out = list_output(&rows);
        assert!(out.lines().nth(1).unwrap().contains(" 0.0 B "), "{out}");
        assert!(out.lines().nth(1).unwrap().contains(" - "), "{out}");
        assert!(
            out.lines().nth(1).unwrap().trim_end().ends_with("a=1,b=2"),
            "{out}"
        );
    }

    #[test]
    fn mount_leases_fall_back_to_an_identifier() {
        let id = mount_lease_id("/tmp/x/mnt");
        assert!(id.starts_with("mount-") && id.len() == 22);
        assert_eq!(id, mount_lease_id("/tmp/x/mnt"));
        assert_ne!(id, mount_lease_id("/tmp/y/mnt"));
    }
}
