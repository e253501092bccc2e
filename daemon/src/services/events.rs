//! containerd's `Events` service over the [`Exchange`](crate::events::Exchange):
//! `Publish` (namespaced: the envelope gets the caller's namespace), `Forward` (the envelope
//! as given, validated) and `Subscribe` (a server stream of the envelopes the filters
//! select, until the caller goes away).

use std::sync::Arc;
use std::time::Duration;

use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet, Status, StreamSender};
use corral_protocols::services::events::v1::events::{
    Envelope, ForwardRequest, PublishRequest, SubscribeRequest,
};
use corral_protocols::services::events::v1::events_rpc::{register_events, Events};
use protobuf::well_known_types::empty::Empty;
use protobuf::Message;

use super::Context;
use crate::events::EventError;

/// How often a subscriber with nothing to send checks whether its caller went away.
const POLL: Duration = Duration::from_millis(200);

struct Service {
    ctx: Arc<Context>,
}

impl Events for Service {
    fn publish(&self, ctx: &RequestContext, req: PublishRequest) -> RpcResult<Empty> {
        let ns = super::namespace(ctx)?;
        let event = req
            .event
            .into_option()
            .ok_or_else(|| Status::invalid_argument("event must be set: invalid argument"))?;
        self.ctx.exchange.publish_any(&ns, &req.topic, event)?;
        Ok(Empty::new())
    }

    fn forward(&self, _ctx: &RequestContext, req: ForwardRequest) -> RpcResult<Empty> {
        let envelope = req
            .envelope
            .into_option()
            .ok_or_else(|| Status::invalid_argument("envelope must be set: invalid argument"))?;
        self.ctx.exchange.publish_envelope(envelope)?;
        Ok(Empty::new())
    }

    fn subscribe(
        &self,
        ctx: &RequestContext,
        req: SubscribeRequest,
        out: &StreamSender<Envelope>,
    ) -> RpcResult<()> {
        let sub = self.ctx.exchange.subscribe(&req.filters)?;
        loop {
            if ctx.is_cancelled() {
                return Err(ctx.cancelled_status());
            }
            match sub.recv_timeout(POLL) {
                Ok(Some(env)) => out.send(&env)?,
                Ok(None) => {}
                Err(EventError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// containerd's ttrpc-socket service `containerd.services.events.ttrpc.v1.Events`: shims
/// call its `Forward` (the only method) with their task events.
struct ShimEvents {
    ctx: Arc<Context>,
}

impl shim_events::Events for ShimEvents {
    fn forward(&self, _ctx: &RequestContext, req: shim_events::ForwardRequest) -> RpcResult<Empty> {
        let envelope = req
            .envelope
            .into_option()
            .ok_or_else(|| Status::invalid_argument("envelope must be set: invalid argument"))?;
        // The two envelopes share their field numbers and types: one decodes the other.
        let bytes = envelope
            .write_to_bytes()
            .map_err(|e| Status::internal(format!("encoding the envelope: {e}")))?;
        let envelope = Envelope::parse_from_bytes(&bytes)
            .map_err(|e| Status::invalid_argument(format!("envelope: {e}: invalid argument")))?;
        self.ctx.exchange.publish_envelope(envelope)?;
        Ok(Empty::new())
    }
}

mod shim_events {
    pub use corral_protocols::services::ttrpc::events::v1::events::ForwardRequest;
    pub use corral_protocols::services::ttrpc::events::v1::events_rpc::{register_events, Events};
}

/// Registers the service, and the ttrpc one shims forward their events to.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    register_events(
        set,
        Arc::new(Service {
            ctx: Arc::clone(ctx),
        }),
    );
    shim_events::register_events(
        set,
        Arc::new(ShimEvents {
            ctx: Arc::clone(ctx),
        }),
    );
}
