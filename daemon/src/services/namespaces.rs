//! containerd's `Namespaces` service (`services/namespaces/local.go`) over the metadata store.
//!
//! Not a namespaced service: the namespace is named in the request. Events go out after the
//! change commits: `/namespaces/create` and `/namespaces/update` in the caller's namespace
//! (the namespace itself when the caller sent none), `/namespaces/delete` in the deleted one,
//! as containerd does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use corral_protocols::events::namespace::{NamespaceCreate, NamespaceDelete, NamespaceUpdate};
use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet, Status};
use corral_protocols::services::namespaces::v1::namespace::{
    CreateNamespaceRequest, CreateNamespaceResponse, DeleteNamespaceRequest, GetNamespaceRequest,
    GetNamespaceResponse, ListNamespacesRequest, ListNamespacesResponse, Namespace as NamespacePb,
    UpdateNamespaceRequest, UpdateNamespaceResponse,
};
use corral_protocols::services::namespaces::v1::namespace_rpc::{register_namespaces, Namespaces};
use protobuf::well_known_types::empty::Empty;

use super::Context;
use crate::metadata::namespace::{self as store, Namespace};
use crate::metadata::validate::validate_labels;

/// The `containerd.services.namespaces.v1.Namespaces` service.
pub struct NamespacesService {
    ctx: Arc<Context>,
}

impl NamespacesService {
    pub fn new(ctx: Arc<Context>) -> Self {
        NamespacesService { ctx }
    }
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    register_namespaces(set, Arc::new(NamespacesService::new(Arc::clone(ctx))));
}

/// Publishes `event` on `topic` in namespace `ns` once a change has committed. A failure to
/// publish is logged, not returned: the change is already durable.
pub(super) fn publish(
    ctx: &Context,
    ns: &str,
    topic: &str,
    event: &impl corral_protocols::TypeUrl,
) {
    if let Err(e) = ctx.exchange.publish(ns, topic, event) {
        log::warn!("publishing {topic} in namespace {ns:?}: {e}");
    }
}

fn to_pb(ns: Namespace) -> NamespacePb {
    NamespacePb {
        name: ns.name,
        labels: ns.labels.into_iter().collect(),
        ..Default::default()
    }
}

fn labels_from_pb(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Namespaces for NamespacesService {
    fn get(
        &self,
        _ctx: &RequestContext,
        req: GetNamespaceRequest,
    ) -> RpcResult<GetNamespaceResponse> {
        let ns = self.ctx.store.view(|tx| store::get(tx, &req.name))?;
        Ok(GetNamespaceResponse {
            namespace: Some(to_pb(ns)).into(),
            ..Default::default()
        })
    }

    fn list(
        &self,
        _ctx: &RequestContext,
        _req: ListNamespacesRequest,
    ) -> RpcResult<ListNamespacesResponse> {
        // containerd's List ignores `filter` too.
        let all = self.ctx.store.view(|tx| store::list(tx))?;
        Ok(ListNamespacesResponse {
            namespaces: all.into_iter().map(to_pb).collect(),
            ..Default::default()
        })
    }

    fn create(
        &self,
        ctx: &RequestContext,
        req: CreateNamespaceRequest,
    ) -> RpcResult<CreateNamespaceResponse> {
        let pb = req.namespace.into_option().unwrap_or_default();
        let ns = Namespace {
            name: pb.name.clone(),
            labels: labels_from_pb(&pb.labels),
        };
        let created = self.ctx.store.update(|tx| {
            store::create(tx, &ns)?;
            store::get(tx, &ns.name)
        })?;
        publish(
            &self.ctx,
            ctx.namespace().unwrap_or(&created.name),
            "/namespaces/create",
            &NamespaceCreate {
                name: created.name.clone(),
                labels: pb.labels,
                ..Default::default()
            },
        );
        Ok(CreateNamespaceResponse {
            namespace: Some(to_pb(created)).into(),
            ..Default::default()
        })
    }

    /// An empty mask replaces every label; `labels` (a Corral extension: containerd 1.6 refuses
    /// it) does the same; `labels.<key>` sets or (with no value in the request) removes one.
    fn update(
        &self,
        ctx: &RequestContext,
        req: UpdateNamespaceRequest,
    ) -> RpcResult<UpdateNamespaceResponse> {
        let pb = req.namespace.into_option().unwrap_or_default();
        let paths: Vec<String> = req
            .update_mask
            .into_option()
            .map(|m| m.paths)
            .unwrap_or_default();
        for path in &paths {
            if path != "labels" && !path.starts_with("labels.") {
                return Err(Status::invalid_argument(format!(
                    "cannot update {path:?} field"
                )));
            }
        }
        let name = pb.name.clone();
        let updated = self.ctx.store.update(|tx| {
            let current = store::get(tx, &name)?;
            let replace_all = paths.is_empty() || paths.iter().any(|p| p == "labels");
            if replace_all {
                validate_labels(&labels_from_pb(&pb.labels))?;
                for k in current.labels.keys() {
                    if !pb.labels.contains_key(k) {
                        store::set_label(tx, &name, k, "")?;
                    }
                }
                for (k, v) in &pb.labels {
                    store::set_label(tx, &name, k, v)?;
                }
            }
            for path in &paths {
                if let Some(key) = path.strip_prefix("labels.") {
                    let v = pb.labels.get(key).map(String::as_str).unwrap_or("");
                    store::set_label(tx, &name, key, v)?;
                }
            }
            store::get(tx, &name)
        })?;
        publish(
            &self.ctx,
            ctx.namespace().unwrap_or(&name),
            "/namespaces/update",
            &NamespaceUpdate {
                name: name.clone(),
                labels: pb.labels,
                ..Default::default()
            },
        );
        Ok(UpdateNamespaceResponse {
            namespace: Some(to_pb(updated)).into(),
            ..Default::default()
        })
    }

    fn delete(&self, _ctx: &RequestContext, req: DeleteNamespaceRequest) -> RpcResult<Empty> {
        self.ctx.store.update(|tx| store::delete(tx, &req.name))?;
        publish(
            &self.ctx,
            &req.name,
            "/namespaces/delete",
            &NamespaceDelete {
                name: req.name.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }
}
