//! What the metadata store reports, mapped onto containerd's error kinds.

use corral_protocols::rpc::{Code, Status};

use super::bolt::BoltError;
use super::encoding::EncodingError;
use super::validate::ValidationError;

/// A metadata operation that did not happen; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// `container "web": not found`
    #[error("{0}: not found")]
    NotFound(String),
    /// `container "web": already exists`
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{}", suffixed(.0, "invalid argument"))]
    InvalidArgument(String),
    /// e.g. a namespace that still holds objects.
    #[error("{}", suffixed(.0, "failed precondition"))]
    FailedPrecondition(String),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Bolt(#[from] BoltError),
    /// A stored value that does not decode: the file is not what containerd writes.
    #[error("{path}: {error}")]
    Encoding { path: String, error: EncodingError },
    /// The bolt transaction itself failed.
    #[error("meta.db: {0}")]
    Storage(String),
    /// Something containerd does not implement either (an unknown lease resource type).
    #[error("{}", suffixed(.0, "not implemented"))]
    Unimplemented(String),
    /// A database version Corral does not read or write.
    #[error("{0}")]
    Version(String),
}

/// containerd's messages end with their error kind (`...: invalid argument`), as its errdefs
/// wrap them; add it unless the message already has it.
fn suffixed(message: &str, kind: &str) -> String {
    if message == kind || message.ends_with(&format!(": {kind}")) {
        message.to_string()
    } else {
        format!("{message}: {kind}")
    }
}

impl MetaError {
    /// The gRPC code containerd answers with for this kind of error.
    pub fn code(&self) -> Code {
        match self {
            MetaError::NotFound(_) => Code::NOT_FOUND,
            MetaError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            MetaError::InvalidArgument(_) | MetaError::Validation(_) => Code::INVALID_ARGUMENT,
            MetaError::FailedPrecondition(_) | MetaError::Version(_) => Code::FAILED_PRECONDITION,
            MetaError::Unimplemented(_) => Code::UNIMPLEMENTED,
            MetaError::Bolt(BoltError::InUse { .. }) => Code::UNAVAILABLE,
            MetaError::Bolt(_) | MetaError::Encoding { .. } | MetaError::Storage(_) => {
                Code::INTERNAL
            }
        }
    }

    /// An encoding error at `path` (`v1/default/containers/web/createdat`).
    pub fn encoding(path: impl Into<String>, error: EncodingError) -> Self {
        MetaError::Encoding {
            path: path.into(),
            error,
        }
    }
}

impl From<bbolt_rs::Error> for MetaError {
    fn from(e: bbolt_rs::Error) -> Self {
        MetaError::Storage(e.to_string())
    }
}

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Result of a store operation.
pub type MetaResult<T> = Result<T, MetaError>;
