//! Why a registry operation failed, said the way a user can act on it (not found,
//! unauthorized, TLS, digest mismatch), and mapped onto containerd's error kinds.

use std::io;

use crate::image::ImageError;

/// A registry operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference, manifest or blob is not in the registry.
    #[error("{0}: not found")]
    NotFound(String),
    /// The registry refused the credentials, or asked for some and none were given.
    #[error("{0}")]
    Unauthorized(String),
    /// The request or a configuration file is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The TLS handshake failed (unknown authority, bad certificate, ...).
    #[error("{0}")]
    Tls(String),
    /// The registry could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// What was fetched is not what the descriptor promised.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The blob or manifest.
        what: String,
        /// The digest the descriptor names.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// The registry answered with a status the operation does not expect.
    #[error("{0}")]
    Status(String),
    /// A local file or a stream failed.
    #[error("{context}: {}", crate::commands::io_reason(source))]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
}

/// Result of a registry operation.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        RegistryError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is a not-found error.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound(_))
    }
}

impl From<RegistryError> for ImageError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(_) => ImageError::NotFound(e.to_string()),
            RegistryError::InvalidArgument(_) | RegistryError::DigestMismatch { .. } => {
                ImageError::InvalidArgument(e.to_string())
            }
            RegistryError::Unavailable(_) => ImageError::Unavailable(e.to_string()),
            RegistryError::Io { context, source } => ImageError::Io { context, source },
            RegistryError::Unauthorized(_) | RegistryError::Tls(_) | RegistryError::Status(_) => {
                ImageError::Unknown(e.to_string())
            }
        }
    }
}

impl From<RegistryError> for crate::commands::CtlError {
    fn from(e: RegistryError) -> Self {
        crate::commands::CtlError::new(e.to_string())
    }
}
