//! The error every image operation ends with: containerd's error kinds (`errdefs`), each
//! carrying a message shaped like containerd's (`content sha256:...: not found`).

use std::io;

use corral_protocols::rpc::{Code, Status};

/// Why an image operation failed, by containerd's error kind.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The object does not exist (`errdefs.ErrNotFound`).
    #[error("{0}")]
    NotFound(String),
    /// The object exists already (`errdefs.ErrAlreadyExists`).
    #[error("{0}")]
    AlreadyExists(String),
    /// The input is malformed (`errdefs.ErrInvalidArgument`): a bad archive, digest, name or
    /// document.
    #[error("{0}")]
    InvalidArgument(String),
    /// The system is not in the state the operation needs (`errdefs.ErrFailedPrecondition`).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The resource is busy or the daemon is gone (`errdefs.ErrUnavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// The operation or media type is not supported (`errdefs.ErrNotImplemented`).
    #[error("{0}")]
    Unimplemented(String),
    /// Anything else (`errdefs.ErrUnknown`).
    #[error("{0}")]
    Unknown(String),
    /// A local file or stream failed.
    #[error("{context}: {}", crate::commands::io_reason(source))]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
}

/// Result of an image operation.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code containerd maps this kind to.
    pub fn code(&self) -> Code {
        match self {
            ImageError::NotFound(_) => Code::NOT_FOUND,
            ImageError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ImageError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ImageError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ImageError::Unavailable(_) => Code::UNAVAILABLE,
            ImageError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ImageError::Unknown(_) | ImageError::Io { .. } => Code::UNKNOWN,
        }
    }

    /// Whether this is a not-found error (`errdefs.IsNotFound`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ImageError::NotFound(_))
    }

    /// Whether this is an already-exists error (`errdefs.IsAlreadyExists`).
    pub fn is_already_exists(&self) -> bool {
        matches!(self, ImageError::AlreadyExists(_))
    }

    /// The same kind with `prefix: ` in front of the message, as Go's `fmt.Errorf("...: %w")`
    /// wraps an error without changing what `errdefs` says it is.
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        let wrap = |m: String| format!("{prefix}: {m}");
        match self {
            ImageError::NotFound(m) => ImageError::NotFound(wrap(m)),
            ImageError::AlreadyExists(m) => ImageError::AlreadyExists(wrap(m)),
            ImageError::InvalidArgument(m) => ImageError::InvalidArgument(wrap(m)),
            ImageError::FailedPrecondition(m) => ImageError::FailedPrecondition(wrap(m)),
            ImageError::Unavailable(m) => ImageError::Unavailable(wrap(m)),
            ImageError::Unimplemented(m) => ImageError::Unimplemented(wrap(m)),
            ImageError::Unknown(m) => ImageError::Unknown(wrap(m)),
            ImageError::Io { context, source } => ImageError::Io {
                context: wrap(context),
                source,
            },
        }
    }
}

impl From<Status> for ImageError {
    fn from(s: Status) -> Self {
        let message = crate::commands::status_message(&s);
        match s.code() {
            Code::NOT_FOUND => ImageError::NotFound(message),
            Code::ALREADY_EXISTS => ImageError::AlreadyExists(message),
            Code::INVALID_ARGUMENT | Code::OUT_OF_RANGE => ImageError::InvalidArgument(message),
            Code::FAILED_PRECONDITION => ImageError::FailedPrecondition(message),
            Code::UNAVAILABLE => ImageError::Unavailable(message),
            Code::UNIMPLEMENTED => ImageError::Unimplemented(message),
            _ => ImageError::Unknown(message),
        }
    }
}

impl From<ImageError> for crate::commands::CtlError {
    fn from(e: ImageError) -> Self {
        crate::commands::CtlError::new(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_kind_and_message() {
        let e = ImageError::from(Status::not_found("content sha256:ab: not found"));
        assert!(e.is_not_found());
        assert_eq!(e.code(), Code::NOT_FOUND);
        assert_eq!(e.to_string(), "content sha256:ab: not found");
        let e = e.context("failed to read blob");
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "failed to read blob: content sha256:ab: not found"
        );
        assert!(ImageError::from(Status::already_exists("x")).is_already_exists());
        assert_eq!(
            ImageError::from(Status::internal("boom")).code(),
            Code::UNKNOWN
        );
    }

    #[test]
    fn io_errors_read_like_go() {
        let e = ImageError::io("open x.tar", io::Error::from_raw_os_error(2));
        assert_eq!(e.to_string(), "open x.tar: no such file or directory");
    }
}
