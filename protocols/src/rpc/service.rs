//! The method table a server dispatches on, filled by the generated `register_*` functions.

use std::collections::HashMap;
use std::sync::Arc;

use protobuf::Message;

use super::context::RequestContext;
use super::status::{RpcResult, Status};
use super::stream::{RawReceiver, RawSender, StreamReceiver, StreamSender};

/// How a method exchanges messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStream,
    /// A stream of requests, one response.
    ClientStream,
    /// Streams both ways.
    Bidi,
}

type UnaryFn = dyn Fn(&RequestContext, &[u8]) -> RpcResult<Vec<u8>> + Send + Sync;
type ServerStreamFn = dyn Fn(&RequestContext, &[u8], &RawSender) -> RpcResult<()> + Send + Sync;
type ClientStreamFn = dyn Fn(&RequestContext, &mut RawReceiver) -> RpcResult<Vec<u8>> + Send + Sync;
type BidiFn = dyn Fn(&RequestContext, &mut RawReceiver, &RawSender) -> RpcResult<()> + Send + Sync;

/// One registered method, working on encoded messages.
pub(crate) enum Handler {
    Unary(Box<UnaryFn>),
    ServerStream(Box<ServerStreamFn>),
    ClientStream(Box<ClientStreamFn>),
    Bidi(Box<BidiFn>),
}

impl Handler {
    pub(crate) fn kind(&self) -> MethodKind {
        match self {
            Handler::Unary(_) => MethodKind::Unary,
            Handler::ServerStream(_) => MethodKind::ServerStream,
            Handler::ClientStream(_) => MethodKind::ClientStream,
            Handler::Bidi(_) => MethodKind::Bidi,
        }
    }
}

/// Decodes a request payload, answering `InvalidArgument` when it does not parse.
pub(crate) fn decode<M: Message>(ctx: &RequestContext, bytes: &[u8]) -> RpcResult<M> {
    M::parse_from_bytes(bytes).map_err(|e| {
        Status::invalid_argument(format!("{}: cannot decode {}: {e}", ctx.path(), M::NAME))
    })
}

fn encode<M: Message>(ctx: &RequestContext, msg: &M) -> RpcResult<Vec<u8>> {
    msg.write_to_bytes()
        .map_err(|e| Status::internal(format!("{}: cannot encode {}: {e}", ctx.path(), M::NAME)))
}

/// Services by name, each a table of methods.
#[derive(Default)]
pub struct ServiceSet {
    services: HashMap<String, HashMap<String, Arc<Handler>>>,
}

impl ServiceSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, service: &str, method: &str, handler: Handler) {
        self.services
            .entry(service.to_string())
            .or_default()
            .insert(method.to_string(), Arc::new(handler));
    }

    /// Finds a method; the error is the status to answer with, shaped like Go ttrpc's.
    pub(crate) fn lookup(&self, service: &str, method: &str) -> RpcResult<Arc<Handler>> {
        let methods = self
            .services
            .get(service)
            .ok_or_else(|| Status::unimplemented(format!("service {service}")))?;
        methods
            .get(method)
            .cloned()
            .ok_or_else(|| Status::unimplemented(format!("method {method}")))
    }

    /// Every registered `/service/method` path with its kind, sorted.
    pub fn methods(&self) -> Vec<(String, MethodKind)> {
        let mut out: Vec<_> = self
            .services
            .iter()
            .flat_map(|(s, ms)| ms.iter().map(move |(m, h)| (format!("/{s}/{m}"), h.kind())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Registers a unary method.
    pub fn unary<Req, Resp, F>(&mut self, service: &str, method: &str, f: F)
    where
        Req: Message,
        Resp: Message,
        F: Fn(&RequestContext, Req) -> RpcResult<Resp> + Send + Sync + 'static,
    {
        self.insert(
            service,
            method,
            Handler::Unary(Box::new(move |ctx, bytes| {
                let req = decode::<Req>(ctx, bytes)?;
                let resp = f(ctx, req)?;
                encode(ctx, &resp)
            })),
        );
    }

    /// Registers a server-streaming method.
    pub fn server_stream<Req, Resp, F>(&mut self, service: &str, method: &str, f: F)
    where
        Req: Message,
        Resp: Message,
        F: Fn(&RequestContext, Req, &StreamSender<Resp>) -> RpcResult<()> + Send + Sync + 'static,
    {
        self.insert(
            service,
            method,
            Handler::ServerStream(Box::new(move |ctx, bytes, raw| {
                let req = decode::<Req>(ctx, bytes)?;
                f(ctx, req, &StreamSender::new(raw.clone()))
            })),
        );
    }

    /// Registers a client-streaming method.
    pub fn client_stream<Req, Resp, F>(&mut self, service: &str, method: &str, f: F)
    where
        Req: Message,
        Resp: Message,
        F: Fn(&RequestContext, &mut StreamReceiver<Req>) -> RpcResult<Resp> + Send + Sync + 'static,
    {
        self.insert(
            service,
            method,
            Handler::ClientStream(Box::new(move |ctx, raw| {
                let mut input = StreamReceiver::new(raw.clone());
                let resp = f(ctx, &mut input)?;
                encode(ctx, &resp)
            })),
        );
    }

    /// Registers a bidirectional-streaming method.
    pub fn bidi<Req, Resp, F>(&mut self, service: &str, method: &str, f: F)
    where
        Req: Message,
        Resp: Message,
        F: Fn(&RequestContext, &mut StreamReceiver<Req>, &StreamSender<Resp>) -> RpcResult<()>
            + Send
            + Sync
            + 'static,
    {
        self.insert(
            service,
            method,
            Handler::Bidi(Box::new(move |ctx, raw_in, raw_out| {
                let mut input = StreamReceiver::new(raw_in.clone());
                f(ctx, &mut input, &StreamSender::new(raw_out.clone()))
            })),
        );
    }
}
