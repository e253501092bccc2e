//! containerd's API services over the metadata store: thin adaptors that validate a request,
//! call the store, publish the event containerd publishes after the change commits, and map
//! errors onto containerd's codes.

use std::path::PathBuf;
use std::sync::Arc;

use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet};

use crate::events::Exchange;
use crate::gc::Collector;
use crate::metadata::store::Store;

pub mod containers;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod version;

/// What every service shares.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub exchange: Exchange,
    /// The garbage collector: told of every change, asked to run by deletes with `sync`.
    pub gc: Collector,
    /// The daemon root (persistent) and state (tmpfs) directories.
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Context {
    /// The services' context for a daemon whose metadata store is `store`, with a new event
    /// exchange and a garbage collector with containerd's default schedule (not started).
    pub fn new(store: Store, root: PathBuf, state: PathBuf) -> Context {
        Context {
            gc: Collector::new(store.clone(), crate::gc::GcConfig::default()),
            store,
            exchange: Exchange::default(),
            root,
            state,
        }
    }
}

/// The namespace a namespaced call works in, validated; `FailedPrecondition` without one.
pub fn namespace(ctx: &RequestContext) -> RpcResult<String> {
    let ns = ctx.require_namespace()?;
    crate::metadata::validate::validate_identifier("namespace", ns)
        .map_err(corral_protocols::rpc::Status::from)?;
    Ok(ns.to_string())
}

/// Registers every service corrald serves.
pub fn register_all(set: &mut ServiceSet, ctx: &Arc<Context>) {
    namespaces::register(set, ctx);
    containers::register(set, ctx);
    images::register(set, ctx);
    leases::register(set, ctx);
    version::register(set, ctx);
    introspection::register(set, ctx);
    events::register(set, ctx);
}
