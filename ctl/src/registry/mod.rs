//! Registries: pulling and pushing images over the OCI distribution API, as containerd 1.6's
//! `remotes/docker` does for `ctr images pull` and `push`, on plain threads (`ureq`,
//! rustls; no async runtime).
//!
//! - [`hosts`]: the hosts configuration (`hosts.toml` under a hosts directory) and defaults.
//! - [`transport`]: HTTP per host (TLS settings, headers) with authorization retries.
//! - [`auth`]: credentials, `WWW-Authenticate` challenges, basic and bearer tokens.
//! - [`resolver`]: a reference's repository: resolve, fetch, push.
//! - [`pull`] and [`push`]: the whole operations against corrald's content store and images.
//! - [`flags`]: the command-line flags and the resolver they make.
//! - [`error`]: what failed, by kind.

pub mod auth;
pub mod error;
pub mod flags;
pub mod hosts;
pub mod pull;
pub mod push;
pub mod resolver;
pub mod transport;
pub mod workers;

pub use error::{RegistryError, Result};
