//! containerd's `Containers` service (`services/containers/local.go`, `helpers.go`) over the
//! metadata store. Namespaced: every call needs the request namespace.
//!
//! Events after commit: `/containers/create`, `/containers/update`, `/containers/delete`.
//! Filters on `List`/`ListStream` select on containerd's container fields (`id`, `image`,
//! `runtime.name`, `labels.<key>`), as its `adaptContainer` does.

use std::sync::Arc;

use corral_protocols::events::container::{
    container_create, ContainerCreate, ContainerDelete, ContainerUpdate,
};
use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet, Status, StreamSender};
use corral_protocols::services::containers::v1::containers::{
    container, Container as ContainerPb, CreateContainerRequest, CreateContainerResponse,
    DeleteContainerRequest, GetContainerRequest, GetContainerResponse, ListContainerMessage,
    ListContainersRequest, ListContainersResponse, UpdateContainerRequest, UpdateContainerResponse,
};
use corral_protocols::services::containers::v1::containers_rpc::{register_containers, Containers};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::well_known_types::timestamp::Timestamp as TimestampPb;
use protobuf::MessageField;

use super::namespaces::publish;
use super::{namespace, Context};
use crate::filter::{Adaptor, Filter};
use crate::metadata::container::{self as store, AnyValue, Container, Runtime};
use crate::metadata::encoding::Timestamp;

/// The `containerd.services.containers.v1.Containers` service.
pub struct ContainersService {
    ctx: Arc<Context>,
}

impl ContainersService {
    pub fn new(ctx: Arc<Context>) -> Self {
        ContainersService { ctx }
    }

    /// The containers of `ns` that match every filter (containerd's `Store.List(filters...)`).
    fn select(&self, ns: &str, filters: &[String]) -> RpcResult<Vec<Container>> {
        let filter = Filter::parse_all(filters).map_err(Status::from)?;
        let all = self.ctx.store.view(|tx| store::list(tx, ns))?;
        Ok(all
            .into_iter()
            .filter(|c| filter.matches(&ContainerFields(c)))
            .collect())
    }
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    register_containers(set, Arc::new(ContainersService::new(Arc::clone(ctx))));
}

/// A container's fields as filters see them (containerd's `adaptContainer`): present only
/// when not empty.
pub struct ContainerFields<'a>(pub &'a Container);

impl Adaptor for ContainerFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        let c = self.0;
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match path {
            ["id"] => non_empty(&c.id),
            ["image"] => non_empty(&c.image),
            ["runtime", "name"] => non_empty(&c.runtime.name),
            ["labels", key @ ..] if !key.is_empty() => c.labels.get(&key.join(".")).cloned(),
            _ => None,
        }
    }
}

pub(super) fn any_to_pb(a: &AnyValue) -> Any {
    Any {
        type_url: a.type_url.clone(),
        value: a.value.clone(),
        ..Default::default()
    }
}

pub(super) fn any_from_pb(a: &Any) -> AnyValue {
    AnyValue::new(a.type_url.clone(), a.value.clone())
}

/// A stored time on the wire; the zero time (never set) is left out, as gogo leaves it.
pub(super) fn time_to_pb(t: Timestamp) -> MessageField<TimestampPb> {
    MessageField::some(t.into())
}

/// A record as containerd's `containerToProto` sends it.
pub fn container_to_pb(c: &Container) -> ContainerPb {
    container_into_pb(c.clone())
}

/// [`container_to_pb`] taking the record, so its spec and extensions move instead of being
/// copied (lists send every spec).
pub fn container_into_pb(c: Container) -> ContainerPb {
    let any = |a: AnyValue| Any {
        type_url: a.type_url,
        value: a.value,
        ..Default::default()
    };
    ContainerPb {
        id: c.id,
        labels: c.labels.into_iter().collect(),
        image: c.image,
        runtime: MessageField::some(container::Runtime {
            name: c.runtime.name,
            options: c.runtime.options.map(any).into(),
            ..Default::default()
        }),
        spec: c.spec.map(any).into(),
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        created_at: time_to_pb(c.created_at),
        updated_at: time_to_pb(c.updated_at),
        extensions: c.extensions.into_iter().map(|(k, v)| (k, any(v))).collect(),
        ..Default::default()
    }
}

/// A request's container as containerd's `containerFromProto` reads it (times are the
/// store's to set).
pub fn container_from_pb(pb: &ContainerPb) -> Container {
    let runtime = pb
        .runtime
        .as_ref()
        .map(|r| Runtime {
            name: r.name.clone(),
            options: r.options.as_ref().map(any_from_pb),
        })
        .unwrap_or_default();
    Container {
        id: pb.id.clone(),
        labels: pb
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        image: pb.image.clone(),
        runtime,
        spec: pb.spec.as_ref().map(any_from_pb),
        snapshotter: pb.snapshotter.clone(),
        snapshot_key: pb.snapshot_key.clone(),
        extensions: pb
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), any_from_pb(v)))
            .collect(),
        ..Default::default()
    }
}

impl Containers for ContainersService {
    fn get(
        &self,
        ctx: &RequestContext,
        req: GetContainerRequest,
    ) -> RpcResult<GetContainerResponse> {
        let ns = namespace(ctx)?;
        let c = self.ctx.store.view(|tx| store::get(tx, &ns, &req.id))?;
        Ok(GetContainerResponse {
            container: MessageField::some(container_to_pb(&c)),
            ..Default::default()
        })
    }

    fn list(
        &self,
        ctx: &RequestContext,
        req: ListContainersRequest,
    ) -> RpcResult<ListContainersResponse> {
        let ns = namespace(ctx)?;
        let cs = self.select(&ns, &req.filters)?;
        Ok(ListContainersResponse {
            containers: cs.into_iter().map(container_into_pb).collect(),
            ..Default::default()
        })
    }

    fn list_stream(
        &self,
        ctx: &RequestContext,
        req: ListContainersRequest,
        out: &StreamSender<ListContainerMessage>,
    ) -> RpcResult<()> {
        let ns = namespace(ctx)?;
        // Read in one transaction, as containerd does, then stream without holding it.
        let containers = self.select(&ns, &req.filters)?;
        if ctx.is_cancelled() {
            return Err(ctx.cancelled_status());
        }
        out.send_all(containers.into_iter().map(|c| ListContainerMessage {
            container: MessageField::some(container_into_pb(c)),
            ..Default::default()
        }))
    }

    fn create(
        &self,
        ctx: &RequestContext,
        req: CreateContainerRequest,
    ) -> RpcResult<CreateContainerResponse> {
        let ns = namespace(ctx)?;
        let c = container_from_pb(req.container.as_ref().unwrap_or_default());
        let created = self.ctx.store.update(|tx| store::create(tx, &ns, &c))?;
        publish(
            &self.ctx,
            &ns,
            "/containers/create",
            &ContainerCreate {
                id: created.id.clone(),
                image: created.image.clone(),
                runtime: MessageField::some(container_create::Runtime {
                    name: created.runtime.name.clone(),
                    options: created.runtime.options.as_ref().map(any_to_pb).into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        Ok(CreateContainerResponse {
            container: MessageField::some(container_to_pb(&created)),
            ..Default::default()
        })
    }

    fn update(
        &self,
        ctx: &RequestContext,
        req: UpdateContainerRequest,
    ) -> RpcResult<UpdateContainerResponse> {
        let ns = namespace(ctx)?;
        let c = container_from_pb(req.container.as_ref().unwrap_or_default());
        if c.id.is_empty() {
            return Err(Status::invalid_argument("Container.ID required"));
        }
        let paths: Vec<String> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.clone())
            .unwrap_or_default();
        let updated = self
            .ctx
            .store
            .update(|tx| store::update(tx, &ns, &c, &paths))?;
        publish(
            &self.ctx,
            &ns,
            "/containers/update",
            &ContainerUpdate {
                id: updated.id.clone(),
                image: updated.image.clone(),
                labels: updated
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                snapshot_key: updated.snapshot_key.clone(),
                ..Default::default()
            },
        );
        Ok(UpdateContainerResponse {
            container: MessageField::some(container_to_pb(&updated)),
            ..Default::default()
        })
    }

    fn delete(&self, ctx: &RequestContext, req: DeleteContainerRequest) -> RpcResult<Empty> {
        let ns = namespace(ctx)?;
        self.ctx
            .store
            .update(|tx| store::delete(tx, &ns, &req.id))?;
        self.ctx.gc.mutated(true);
        publish(
            &self.ctx,
            &ns,
            "/containers/delete",
            &ContainerDelete {
                id: req.id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }
}
