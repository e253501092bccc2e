//! Corral's sync ttrpc layer: containerd's ttrpc wire protocol with its streaming extension
//! (data frames and their flags, as Go's ttrpc 1.2 speaks it), on plain threads.
//!
//! The `ttrpc` crate provides the frame and envelope types; its own sync server and client
//! are unary-only, so the server, client and stream plumbing live here. Generated service
//! code (see `build.rs`) registers handlers in a [`ServiceSet`] and wraps a [`Client`].

mod client;
mod context;
pub mod frame;
mod pool;
mod queue;
mod server;
mod service;
mod socket;
mod status;
mod stream;

pub use client::{BidiStream, Client, ClientStreamWriter, OnClose, ServerStreamReader};
pub use context::{
    CallContext, CancelToken, Metadata, RequestContext, LEASE_KEY, NAMESPACE_GRPC_KEY,
    NAMESPACE_KEY,
};
pub use server::{Server, ServerConfig};
pub use service::{MethodKind, ServiceSet};
pub use socket::{peer_is_same_user, Address};
pub use status::{Code, RpcResult, Status};
pub use stream::{StreamReceiver, StreamSender};
