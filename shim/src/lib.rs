//! containerd-shim-corral-v2: a runc shim for containerd's shim v2 protocol.
//!
//! - [`flags`], [`start`], [`delete`], [`server`]: the binary contract (`start` launches the
//!   long-lived server, `delete` cleans up after a dead one).
//! - [`service`]: the `containerd.task.v2.Task` service over [`container`]s and their
//!   [`process`]es.
//! - [`runc`]: runc's command line; [`runner`] and [`reaper`]: running children and reaping
//!   every exit in one place.
//! - [`io`]: process stdio; [`mount`]: the rootfs; [`cgroup`]: stats and OOM.
//! - [`events`]: task events to the daemon; [`options`]: the runc options; [`address`]: where
//!   sockets and runc state go.

pub mod address;
pub mod cgroup;
pub mod container;
pub mod delete;
pub mod events;
pub mod flags;
pub mod io;
pub mod memory;
pub use corral_protocols::mount;
pub mod options;
pub mod process;
pub mod reaper;
pub mod runc;
pub mod runner;
pub mod server;
pub mod service;
pub mod start;
