//! corrald: serves containerd's API over ttrpc on plain threads.
//!
//! - [`config`]: the configuration file; [`cli`]: the command line; [`server`]: running the
//!   daemon (socket, locks, signals, readiness).
//! - [`metadata`]: the meta.db store; [`filter`]: containerd's filter language;
//!   [`events`]: the event exchange; [`services`]: containerd's API services.

pub mod cli;
pub mod config;
pub mod content;
pub mod diff;
pub mod events;
pub mod filter;
pub mod gc;
pub mod metadata;
pub mod runtime;
pub mod server;
pub mod services;
pub mod snapshot;
