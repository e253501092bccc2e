//! What the snapshotters report, mapped onto containerd's error kinds.
//!
//! Messages are containerd's (`snapshots/storage/bolt.go`, `snapshots/overlay/overlay.go`,
//! `snapshots/native/native.go`): a kind-less description followed by the kind
//! (`snapshot does not exist: not found`), and the snapshotter's context in front of what the
//! store said (`failed to create snapshot: snapshot web: already exists`). Wrapping keeps the
//! kind, as Go's `%w` does.

use std::io;

use corral_protocols::rpc::{Code, Status};

use crate::filter::FilterError;
use crate::metadata::bolt::BoltError;
use crate::metadata::encoding::EncodingError;

/// A snapshot operation that did not happen (its metadata change, if any, was rolled back).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// `snapshot does not exist: not found`
    #[error("{}", suffixed(.0, "not found"))]
    NotFound(String),
    /// `snapshot web: already exists`
    #[error("{}", suffixed(.0, "already exists"))]
    AlreadyExists(String),
    /// `parent "base" is not committed snapshot: invalid argument`
    #[error("{}", suffixed(.0, "invalid argument"))]
    InvalidArgument(String),
    /// `cannot remove snapshot with child: failed precondition`
    #[error("{}", suffixed(.0, "failed precondition"))]
    FailedPrecondition(String),
    /// A walk filter that does not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The file system cannot hold this snapshotter (no d_type, no overlayfs), in
    /// containerd's words.
    #[error("{0}")]
    Unsupported(String),
    /// Opening or transacting on `metadata.db`.
    #[error(transparent)]
    Bolt(#[from] BoltError),
    /// A stored value that does not decode: the file is not what containerd writes.
    #[error("{path}: {error}")]
    Encoding { path: String, error: EncodingError },
    /// The bolt transaction itself failed.
    #[error("metadata.db: {0}")]
    Storage(String),
    /// A file system operation on the snapshot directories.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Another error with the snapshotter's words in front (`failed to commit snapshot: ...`);
    /// its kind is the inner error's.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<SnapshotError>,
    },
}

/// containerd's errdefs put the kind at the end of a message (`...: not found`); add it unless
/// the message already ends with it.
fn suffixed(message: &str, kind: &str) -> String {
    if message.ends_with(&format!(": {kind}")) || message == kind {
        message.to_string()
    } else {
        format!("{message}: {kind}")
    }
}

impl SnapshotError {
    /// The gRPC code containerd answers with for this kind of error.
    pub fn code(&self) -> Code {
        match self {
            SnapshotError::NotFound(_) => Code::NOT_FOUND,
            SnapshotError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            SnapshotError::InvalidArgument(_) | SnapshotError::Filter(_) => Code::INVALID_ARGUMENT,
            SnapshotError::FailedPrecondition(_) | SnapshotError::Unsupported(_) => {
                Code::FAILED_PRECONDITION
            }
            SnapshotError::Bolt(BoltError::InUse { .. }) => Code::UNAVAILABLE,
            SnapshotError::Bolt(_) | SnapshotError::Encoding { .. } | SnapshotError::Storage(_) => {
                Code::INTERNAL
            }
            // containerd passes OS errors through unchanged: they reach the client as Unknown.
            SnapshotError::Io { .. } => Code::UNKNOWN,
            SnapshotError::Context { source, .. } => source.code(),
        }
    }

    /// Whether this is (or wraps) a not-found error.
    pub fn is_not_found(&self) -> bool {
        self.code() == Code::NOT_FOUND
    }

    /// This error with `context` in front, keeping its kind.
    pub fn context(self, context: impl Into<String>) -> Self {
        SnapshotError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// A file system error, with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        SnapshotError::Io {
            context: context.into(),
            source,
        }
    }

    /// An encoding error at `path` (`v1/snapshots/default/4/web/createdat`).
    pub fn encoding(path: impl Into<String>, error: EncodingError) -> Self {
        SnapshotError::Encoding {
            path: path.into(),
            error,
        }
    }
}

impl From<bbolt_rs::Error> for SnapshotError {
    fn from(e: bbolt_rs::Error) -> Self {
        SnapshotError::Storage(e.to_string())
    }
}

impl From<SnapshotError> for Status {
    fn from(e: SnapshotError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Adds the snapshotter's words in front of an error, as containerd's `fmt.Errorf("...: %w")`.
pub trait Context<T> {
    /// The error with `context` in front.
    fn context(self, context: &str) -> SnapshotResult<T>;
}

impl<T> Context<T> for SnapshotResult<T> {
    fn context(self, context: &str) -> SnapshotResult<T> {
        self.map_err(|e| e.context(context))
    }
}

/// Result of a snapshot operation.
pub type SnapshotResult<T> = Result<T, SnapshotError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_follow_containerd() {
        let e = SnapshotError::NotFound("snapshot does not exist".into());
        assert_eq!(e.to_string(), "snapshot does not exist: not found");
        assert_eq!(e.code(), Code::NOT_FOUND);
        let e = SnapshotError::AlreadyExists("snapshot web".into())
            .context("failed to create snapshot");
        assert_eq!(
            e.to_string(),
            "failed to create snapshot: snapshot web: already exists"
        );
        assert_eq!(e.code(), Code::ALREADY_EXISTS);
        let e = SnapshotError::FailedPrecondition(
            "cannot remove snapshot with child: failed precondition".into(),
        );
        assert_eq!(
            e.to_string(),
            "cannot remove snapshot with child: failed precondition"
        );
        assert_eq!(e.code(), Code::FAILED_PRECONDITION);
        let e = SnapshotError::io(
            "failed to rename",
            io::Error::from_raw_os_error(libc::EXDEV),
        );
        assert_eq!(e.code(), Code::UNKNOWN);
        assert!(e.to_string().starts_with("failed to rename: "), "{e}");
        let status: Status = SnapshotError::InvalidArgument("bad".into()).into();
        assert_eq!(status.code(), Code::INVALID_ARGUMENT);
        assert_eq!(status.message(), "bad: invalid argument");
        let e = SnapshotError::Bolt(BoltError::InUse {
            path: "/x/metadata.db".into(),
            holder: Some(7),
        });
        assert_eq!(e.code(), Code::UNAVAILABLE);
        assert!(SnapshotError::NotFound("x".into())
            .context("y")
            .is_not_found());
    }
}
