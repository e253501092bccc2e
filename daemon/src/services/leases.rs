//! containerd's `Leases` service (`services/leases/local.go`, `metadata/leases.go`) over the
//! metadata store. Namespaced; containerd publishes no lease events, and neither does Corral.
//!
//! The client names the lease: an empty id is refused (containerd: "lease id must be
//! provided"). `Delete`'s `sync` returns after a garbage collection that began after the
//! delete, as containerd's does.

use std::sync::Arc;

use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet, Status};
use corral_protocols::services::leases::v1::leases::{
    AddResourceRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResourceRequest,
    Lease as LeasePb, ListRequest, ListResourcesRequest, ListResourcesResponse, ListResponse,
    Resource as ResourcePb,
};
use corral_protocols::services::leases::v1::leases_rpc::{register_leases, Leases};
use protobuf::well_known_types::empty::Empty;
use protobuf::MessageField;

use super::containers::time_to_pb;
use super::{namespace, Context};
use crate::filter::{Adaptor, Filter};
use crate::metadata::lease::{self as store, Lease, Resource};

/// The `containerd.services.leases.v1.Leases` service.
pub struct LeasesService {
    ctx: Arc<Context>,
}

impl LeasesService {
    pub fn new(ctx: Arc<Context>) -> Self {
        LeasesService { ctx }
    }
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    register_leases(set, Arc::new(LeasesService::new(Arc::clone(ctx))));
}

/// A lease's fields as filters see them (containerd's `adaptLease`): `id`, `labels.<key>`.
pub struct LeaseFields<'a>(pub &'a Lease);

impl Adaptor for LeaseFields<'_> {
    fn field(&self, path: &[&str]) -> Option<String> {
        let l = self.0;
        match path {
            ["id"] => (!l.id.is_empty()).then(|| l.id.clone()),
            ["labels", key @ ..] if !key.is_empty() => l.labels.get(&key.join(".")).cloned(),
            _ => None,
        }
    }
}

fn lease_to_pb(l: &Lease) -> LeasePb {
    LeasePb {
        id: l.id.clone(),
        created_at: time_to_pb(l.created_at),
        labels: l
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

fn resource_from_pb(r: &MessageField<ResourcePb>) -> Resource {
    r.as_ref()
        .map(|r| Resource::new(r.type_.clone(), r.id.clone()))
        .unwrap_or_default()
}

fn resource_to_pb(r: &Resource) -> ResourcePb {
    ResourcePb {
        id: r.id.clone(),
        type_: r.kind.clone(),
        ..Default::default()
    }
}

impl Leases for LeasesService {
    fn create(&self, ctx: &RequestContext, req: CreateRequest) -> RpcResult<CreateResponse> {
        let ns = namespace(ctx)?;
        if req.id.is_empty() {
            return Err(Status::invalid_argument(
                "lease id must be provided: invalid argument",
            ));
        }
        let labels = req.labels.into_iter().collect();
        let lease = self
            .ctx
            .store
            .update(|tx| store::create(tx, &ns, &req.id, &labels))?;
        Ok(CreateResponse {
            lease: MessageField::some(lease_to_pb(&lease)),
            ..Default::default()
        })
    }

    fn delete(&self, ctx: &RequestContext, req: DeleteRequest) -> RpcResult<Empty> {
        let ns = namespace(ctx)?;
        self.ctx
            .store
            .update(|tx| store::delete(tx, &ns, &req.id))?;
        self.ctx.gc.mutated(true);
        if req.sync {
            self.ctx
                .gc
                .collect_and_wait()
                .map_err(|e| Status::unknown(format!("garbage collection failed: {e}")))?;
        }
        Ok(Empty::new())
    }

    fn list(&self, ctx: &RequestContext, req: ListRequest) -> RpcResult<ListResponse> {
        let ns = namespace(ctx)?;
        let filter = Filter::parse_all(&req.filters).map_err(Status::from)?;
        let all = self.ctx.store.view(|tx| store::list(tx, &ns))?;
        Ok(ListResponse {
            leases: all
                .iter()
                .filter(|l| filter.matches(&LeaseFields(l)))
                .map(lease_to_pb)
                .collect(),
            ..Default::default()
        })
    }

    fn add_resource(&self, ctx: &RequestContext, req: AddResourceRequest) -> RpcResult<Empty> {
        let ns = namespace(ctx)?;
        let r = resource_from_pb(&req.resource);
        self.ctx
            .store
            .update(|tx| store::add_resource(tx, &ns, &req.id, &r))?;
        Ok(Empty::new())
    }

    fn delete_resource(
        &self,
        ctx: &RequestContext,
        req: DeleteResourceRequest,
    ) -> RpcResult<Empty> {
        let ns = namespace(ctx)?;
        let r = resource_from_pb(&req.resource);
        self.ctx
            .store
            .update(|tx| store::delete_resource(tx, &ns, &req.id, &r))?;
        self.ctx.gc.mutated(true);
        Ok(Empty::new())
    }

    fn list_resources(
        &self,
        ctx: &RequestContext,
        req: ListResourcesRequest,
    ) -> RpcResult<ListResourcesResponse> {
        let ns = namespace(ctx)?;
        let rs = self
            .ctx
            .store
            .view(|tx| store::list_resources(tx, &ns, &req.id))?;
        Ok(ListResourcesResponse {
            resources: rs.iter().map(resource_to_pb).collect(),
            ..Default::default()
        })
    }
}
