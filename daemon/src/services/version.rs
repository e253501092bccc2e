//! containerd's `Version` service: Corral's release version and source revision.

use std::sync::Arc;

use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet};
use corral_protocols::services::version::v1::version::VersionResponse;
use corral_protocols::services::version::v1::version_rpc::{register_version, Version};
use corral_protocols::version::{REVISION, VERSION};
use protobuf::well_known_types::empty::Empty;

use super::Context;

struct Service;

impl Version for Service {
    fn version(&self, _ctx: &RequestContext, _req: Empty) -> RpcResult<VersionResponse> {
        let mut resp = VersionResponse::new();
        resp.version = VERSION.to_string();
        resp.revision = REVISION.to_string();
        Ok(resp)
    }
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, _ctx: &Arc<Context>) {
    register_version(set, Arc::new(Service));
}
