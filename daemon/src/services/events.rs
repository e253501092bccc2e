//! (being written)

use std::sync::Arc;

use corral_protocols::rpc::ServiceSet;

use super::Context;

/// Registers the service.
pub fn register(_set: &mut ServiceSet, _ctx: &Arc<Context>) {}
