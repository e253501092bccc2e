//! containerd's `Diff` service (`services/diff`, the `walking` differ's `Apply` in
//! `diff/apply`). Namespaced: the layer must be visible in the request's namespace.
//!
//! `Apply` writes a layer blob from the content store into the snapshot its mounts describe,
//! as containerd does on Linux: a single overlay mount with an upper dir gets the layer
//! straight into the upper dir, whiteouts turned into overlay whiteouts; anything else is
//! mounted on a temporary directory under `<root>/tmpmounts` and applied through it. The
//! answer is the uncompressed layer's descriptor (its diff ID). `Diff` (making a layer from
//! two snapshots) is not built yet and answers Unimplemented.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use corral_protocols::mount::{mount_all, unmount_all, Mount};
use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet, Status};
use corral_protocols::services::diff::v1::diff::{ApplyRequest, ApplyResponse};
use corral_protocols::services::diff::v1::diff_rpc::{register_diff, Diff};
use corral_protocols::types::descriptor::Descriptor;
use protobuf::MessageField;

use super::{namespace, Context};
use crate::content::namespaced::Content as ContentStore;
use crate::diff::{apply, ApplyOptions, WhiteoutMode};
use crate::metadata::content::validate_digest;
use crate::snapshot::overlay::check::running_in_userns;

/// The media type of an applied (uncompressed) layer.
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Where layers are applied through temporary mounts (containerd's `tmpmounts`).
pub const TEMP_MOUNTS_DIR: &str = "tmpmounts";

/// The `containerd.services.diff.v1.Diff` service.
pub struct DiffService {
    content: ContentStore,
    tmpmounts: PathBuf,
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    let content = ctx.namespaced_content();
    register_diff(
        set,
        Arc::new(DiffService {
            content,
            tmpmounts: ctx.root.join(TEMP_MOUNTS_DIR),
        }),
    );
}

/// The upper dir and lower dirs of an overlay mount's options (containerd's
/// `getOverlayPath`); `None` without an upper dir.
fn overlay_paths(options: &[String]) -> Option<(PathBuf, Vec<PathBuf>)> {
    let mut upper = None;
    let mut lowers = Vec::new();
    for o in options {
        if let Some(u) = o.strip_prefix("upperdir=") {
            upper = Some(PathBuf::from(u));
        } else if let Some(l) = o.strip_prefix("lowerdir=") {
            lowers = l.split(':').map(PathBuf::from).collect();
        }
    }
    upper.map(|u| (u, lowers))
}

/// A directory a snapshot is mounted on for one apply; unmounted and removed when dropped.
struct TempMount {
    dir: PathBuf,
    mounted: bool,
}

impl TempMount {
    fn new(parent: &Path, mounts: &[Mount]) -> Result<TempMount, Status> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(parent)
            .map_err(|e| Status::unknown(format!("creating {}: {e}", parent.display())))?;
        let dir = parent.join(format!(
            "containerd-mount{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir)
            .map_err(|e| Status::unknown(format!("creating {}: {e}", dir.display())))?;
        let mut t = TempMount {
            dir,
            mounted: false,
        };
        mount_all(mounts, &t.dir).map_err(|e| Status::unknown(format!("failed to mount: {e}")))?;
        t.mounted = true;
        Ok(t)
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = unmount_all(&self.dir) {
                log::error!("diff: {e}");
                return;
            }
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            log::warn!("diff: removing {}: {e}", self.dir.display());
        }
    }
}

impl Diff for DiffService {
    fn apply(&self, ctx: &RequestContext, req: ApplyRequest) -> RpcResult<ApplyResponse> {
        let ns = namespace(ctx)?;
        let desc = req.diff.as_ref().unwrap_or_default();
        if let Err(e) = validate_digest(&desc.digest) {
            return Err(Status::invalid_argument(format!("{}: {e}", desc.digest)));
        }
        if !req.payloads.is_empty() {
            return Err(Status::unimplemented(
                "stream processor payloads are not supported: not implemented",
            ));
        }
        let mounts: Vec<Mount> = req
            .mounts
            .iter()
            .map(|m| Mount {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        let (_, blob) = self.content.reader(&ns, &desc.digest)?;
        let mut options = ApplyOptions {
            media_type: Some(desc.media_type.clone()),
            ..ApplyOptions::default()
        };
        // Overlay whiteouts are 0/0 devices, which cannot be made in a user namespace.
        let single_overlay = match mounts.as_slice() {
            [m] if m.kind == "overlay" && !running_in_userns() => {
                overlay_paths(&m.options).map(|p| (p, m))
            }
            _ => None,
        };
        let applied = match single_overlay {
            Some(((upper, lowers), m)) => {
                options.whiteouts = WhiteoutMode::Overlay {
                    lowers,
                    user_xattr: m.options.iter().any(|o| o == "userxattr"),
                };
                apply(blob, &upper, &options)?
            }
            None => {
                if mounts.is_empty() {
                    return Err(Status::invalid_argument("no mounts to apply the layer to"));
                }
                let target = TempMount::new(&self.tmpmounts, &mounts)?;
                apply(blob, &target.dir, &options)?
            }
        };
        log::debug!(
            "diff: applied {} ({} uncompressed bytes) as {}",
            desc.digest,
            applied.size,
            applied.diff_id
        );
        Ok(ApplyResponse {
            applied: MessageField::some(Descriptor {
                media_type: MEDIA_TYPE_LAYER.into(),
                digest: applied.diff_id,
                size: applied.size as i64,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}
