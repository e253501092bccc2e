//! containerd's API and shim v2 types for Corral, generated at build time from `.proto` files
//! vendored unmodified from containerd 1.6.20 (see `protocols/README.md`), and [`rpc`], the
//! sync ttrpc layer that serves and calls them, streaming methods included.
//!
//! Modules follow containerd's Go packages: [`types`] (`api/types`), [`events`]
//! (`api/events`), `services::<name>::v1` (`api/services/...`), [`runtime::v2::task`] (the
//! shim's Task service), [`runtime::v2::runc::options`], and the cgroup metrics in
//! [`cgroups`]. Each package module holds one module per `.proto` file, named after it; files
//! with services also get `<file>_rpc` with a server trait, `register_<service>` and a
//! `<Service>Client` per service.

pub mod duration;
pub mod identifiers;
pub mod rpc;

include!(concat!(env!("OUT_DIR"), "/gen/mod.rs"));

/// Every `/service/method` path of the vendored services, with its kind.
pub mod methods {
    include!(concat!(env!("OUT_DIR"), "/gen/methods.rs"));
}

/// Corral's version, shared by its three programs.
pub mod version {
    /// The release version.
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
    /// The source revision, when the build was given one (`CORRAL_REVISION`, set by the
    /// Makefile from git).
    pub const REVISION: &str = match option_env!("CORRAL_REVISION") {
        Some(r) => r,
        None => "unknown",
    };
}
