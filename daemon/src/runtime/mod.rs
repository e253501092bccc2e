//! containerd's runtime v2 for corrald: shims started from runtime names, their bundles, a
//! ttrpc client per shim, and the task list the Tasks service works on.
//!
//! - [`binary`]: runtime name to shim binary, and the shim's `start` and `delete` runs.
//! - [`bundle`]: `<state>/io.containerd.runtime.v2.task/<ns>/<id>` and its work dir.
//! - [`shim`]: one live shim: its client, its log fifo, how it ended.
//! - [`manager`]: the task list: create, delete, load after a restart, clean up dead shims.
//! - [`sweeper`]: removes deleted tasks' bundles in the background.

pub mod binary;
pub mod bundle;
pub mod manager;
pub mod shim;
pub mod shim_log;
pub mod sweeper;

use corral_protocols::rpc::Status;

pub use manager::{RuntimeConfig, TaskManager};

/// The plugin directory name of the v2 runtime, under both root and state.
pub const PLUGIN_DIR: &str = "io.containerd.runtime.v2.task";

/// What can go wrong starting, talking to or cleaning up after a shim.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}: invalid argument")]
    InvalidArgument(String),
    #[error("{0}: not implemented")]
    NotImplemented(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The shim answered with an error status.
    #[error("{0}")]
    Shim(Status),
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let what = what.into();
        move |source| RuntimeError::Io { what, source }
    }
}

impl From<Status> for RuntimeError {
    fn from(s: Status) -> Self {
        RuntimeError::Shim(s)
    }
}

impl From<RuntimeError> for Status {
    fn from(e: RuntimeError) -> Status {
        match e {
            RuntimeError::NotFound(_) => Status::not_found(e.to_string()),
            RuntimeError::AlreadyExists(_) => Status::already_exists(e.to_string()),
            RuntimeError::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
            RuntimeError::NotImplemented(_) => Status::unimplemented(e.to_string()),
            RuntimeError::Shim(s) => s,
            RuntimeError::Io { .. } | RuntimeError::Other(_) => Status::unknown(e.to_string()),
        }
    }
}

/// Result of runtime operations.
pub type RuntimeResult<T> = Result<T, RuntimeError>;
