//! containerd's `Snapshots` service (`services/snapshots/service.go`, with the events of
//! `services/snapshots/snapshotters.go`) over the namespaced snapshotters
//! ([`crate::snapshot::namespaced`]). Namespaced; a request's `containerd-lease` holds the
//! snapshots it creates.
//!
//! The snapshotter is named by each request: an empty name is `InvalidArgument`
//! ("snapshotter argument missing"), an unknown one too ("snapshotter not loaded: X"),
//! checked before the namespace, as containerd does.
//!
//! Events after commit, as containerd publishes them: `/snapshot/prepare` (not for `View`),
//! `/snapshot/commit`, `/snapshot/remove`. `List` streams its infos in messages of 100.
//! `Remove` deletes the record and tells the collector, which removes the backend snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_protocols::events::snapshot::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet, Status, StreamSender};
use corral_protocols::services::snapshots::v1::snapshots::{
    CleanupRequest, CommitSnapshotRequest, Info as InfoPb, Kind as KindPb, ListSnapshotsRequest,
    ListSnapshotsResponse, MountsRequest, MountsResponse, PrepareSnapshotRequest,
    PrepareSnapshotResponse, RemoveSnapshotRequest, StatSnapshotRequest, StatSnapshotResponse,
    UpdateSnapshotRequest, UpdateSnapshotResponse, UsageRequest, UsageResponse,
    ViewSnapshotRequest, ViewSnapshotResponse,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::{register_snapshots, Snapshots};
use corral_protocols::types::mount::Mount as MountPb;
use protobuf::well_known_types::empty::Empty;
use protobuf::{EnumOrUnknown, MessageField};

use super::containers::time_to_pb;
use super::namespaces::publish;
use super::{namespace, Context};
use crate::snapshot::namespaced::{NamespacedSnapshotter, Scope};
use crate::snapshot::{Info, Kind, Mount};

/// How many infos one `List` message carries (containerd's service sends blocks of 100).
pub const LIST_BLOCK: usize = 100;

/// The `containerd.services.snapshots.v1.Snapshots` service.
pub struct SnapshotsService {
    ctx: Arc<Context>,
}

impl SnapshotsService {
    pub fn new(ctx: Arc<Context>) -> Self {
        SnapshotsService { ctx }
    }

    /// The snapshotter a request names, behind meta.db (containerd's `getSnapshotter`).
    fn snapshotter(&self, name: &str) -> RpcResult<NamespacedSnapshotter> {
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "snapshotter argument missing: invalid argument",
            ));
        }
        let backend = self.ctx.snapshotter(name)?;
        Ok(NamespacedSnapshotter::new(
            self.ctx.store.clone(),
            Arc::clone(backend),
            Arc::clone(&self.ctx.snapshot_lock),
        ))
    }
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    register_snapshots(set, Arc::new(SnapshotsService::new(Arc::clone(ctx))));
}

/// Mounts on the wire (containerd's `fromMounts`; no target).
pub fn mounts_to_pb(mounts: &[Mount]) -> Vec<MountPb> {
    mounts
        .iter()
        .map(|m| MountPb {
            type_: m.kind.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
            ..Default::default()
        })
        .collect()
}

/// A kind on the wire (containerd's `fromKind`: anything neither active nor view is sent
/// as committed).
fn kind_to_pb(kind: Kind) -> KindPb {
    match kind {
        Kind::Active => KindPb::ACTIVE,
        Kind::View => KindPb::VIEW,
        Kind::Committed | Kind::Unknown => KindPb::COMMITTED,
    }
}

/// An info on the wire (containerd's `fromInfo`).
pub fn info_to_pb(info: &Info) -> InfoPb {
    InfoPb {
        name: info.name.clone(),
        parent: info.parent.clone().unwrap_or_default(),
        kind: EnumOrUnknown::new(kind_to_pb(info.kind)),
        created_at: time_to_pb(info.created),
        updated_at: time_to_pb(info.updated),
        labels: info
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

/// A request's info as `Update` reads it: its name and labels (the rest is not updatable).
pub fn info_from_pb(pb: &InfoPb) -> Info {
    Info {
        name: pb.name.clone(),
        parent: (!pb.parent.is_empty()).then(|| pb.parent.clone()),
        labels: pb
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Info::default()
    }
}

fn labels_from_pb(labels: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Snapshots for SnapshotsService {
    fn prepare(
        &self,
        ctx: &RequestContext,
        req: PrepareSnapshotRequest,
    ) -> RpcResult<PrepareSnapshotResponse> {
        log::debug!("prepare snapshot {:?} on parent {:?}", req.key, req.parent);
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let scope = Scope::new(&ns).with_lease(ctx.lease());
        let parent = (!req.parent.is_empty()).then_some(req.parent.as_str());
        let mounts = sn.prepare(scope, &req.key, parent, &labels_from_pb(&req.labels))?;
        self.ctx.gc.mutated(false);
        publish(
            &self.ctx,
            &ns,
            "/snapshot/prepare",
            &SnapshotPrepare {
                key: req.key.clone(),
                parent: req.parent.clone(),
                ..Default::default()
            },
        );
        Ok(PrepareSnapshotResponse {
            mounts: mounts_to_pb(&mounts),
            ..Default::default()
        })
    }

    fn view(
        &self,
        ctx: &RequestContext,
        req: ViewSnapshotRequest,
    ) -> RpcResult<ViewSnapshotResponse> {
        log::debug!("prepare view snapshot {:?} of {:?}", req.key, req.parent);
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let scope = Scope::new(&ns).with_lease(ctx.lease());
        let parent = (!req.parent.is_empty()).then_some(req.parent.as_str());
        let mounts = sn.view(scope, &req.key, parent, &labels_from_pb(&req.labels))?;
        // containerd publishes no event for a view.
        self.ctx.gc.mutated(false);
        Ok(ViewSnapshotResponse {
            mounts: mounts_to_pb(&mounts),
            ..Default::default()
        })
    }

    fn mounts(&self, ctx: &RequestContext, req: MountsRequest) -> RpcResult<MountsResponse> {
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let mounts = sn.mounts(&ns, &req.key)?;
        Ok(MountsResponse {
            mounts: mounts_to_pb(&mounts),
            ..Default::default()
        })
    }

    fn commit(&self, ctx: &RequestContext, req: CommitSnapshotRequest) -> RpcResult<Empty> {
        log::debug!("commit snapshot {:?} as {:?}", req.key, req.name);
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let scope = Scope::new(&ns).with_lease(ctx.lease());
        sn.commit(scope, &req.name, &req.key, &labels_from_pb(&req.labels))?;
        self.ctx.gc.mutated(false);
        publish(
            &self.ctx,
            &ns,
            "/snapshot/commit",
            &SnapshotCommit {
                key: req.key.clone(),
                name: req.name.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    fn remove(&self, ctx: &RequestContext, req: RemoveSnapshotRequest) -> RpcResult<Empty> {
        log::debug!("remove snapshot {:?}", req.key);
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let scope = Scope::new(&ns).with_lease(ctx.lease());
        sn.remove(scope, &req.key)?;
        // The backend snapshot is the collector's to remove.
        self.ctx.gc.mutated(true);
        publish(
            &self.ctx,
            &ns,
            "/snapshot/remove",
            &SnapshotRemove {
                key: req.key.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    fn stat(
        &self,
        ctx: &RequestContext,
        req: StatSnapshotRequest,
    ) -> RpcResult<StatSnapshotResponse> {
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let info = sn.stat(&ns, &req.key)?;
        Ok(StatSnapshotResponse {
            info: MessageField::some(info_to_pb(&info)),
            ..Default::default()
        })
    }

    fn update(
        &self,
        ctx: &RequestContext,
        req: UpdateSnapshotRequest,
    ) -> RpcResult<UpdateSnapshotResponse> {
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let info = info_from_pb(req.info.as_ref().unwrap_or_default());
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        let updated = sn.update(&ns, &info, &paths)?;
        // Dropping a gc label may leave the snapshot unreferenced; the collector finds out
        // at its next run, as containerd's does.
        self.ctx.gc.mutated(false);
        Ok(UpdateSnapshotResponse {
            info: MessageField::some(info_to_pb(&updated)),
            ..Default::default()
        })
    }

    fn list(
        &self,
        ctx: &RequestContext,
        req: ListSnapshotsRequest,
        out: &StreamSender<ListSnapshotsResponse>,
    ) -> RpcResult<()> {
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let infos = sn.walk(&ns, &req.filters)?;
        if ctx.is_cancelled() {
            return Err(ctx.cancelled_status());
        }
        out.send_all(infos.chunks(LIST_BLOCK).map(|block| ListSnapshotsResponse {
            info: block.iter().map(info_to_pb).collect(),
            ..Default::default()
        }))
    }

    fn usage(&self, ctx: &RequestContext, req: UsageRequest) -> RpcResult<UsageResponse> {
        let sn = self.snapshotter(&req.snapshotter)?;
        let ns = namespace(ctx)?;
        let usage = sn.usage(&ns, &req.key)?;
        Ok(UsageResponse {
            size: usage.size,
            inodes: usage.inodes,
            ..Default::default()
        })
    }

    /// containerd 1.6 answers `Unimplemented` here (its metadata layer hides the backend's
    /// `Cleanup`); Corral runs the backend's cleanup, which only removes directories no
    /// backend record refers to.
    fn cleanup(&self, ctx: &RequestContext, req: CleanupRequest) -> RpcResult<Empty> {
        let sn = self.snapshotter(&req.snapshotter)?;
        namespace(ctx)?;
        sn.cleanup()?;
        Ok(Empty::new())
    }
}
