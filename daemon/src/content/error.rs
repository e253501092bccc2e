//! What the content store reports, mapped onto containerd's error kinds.

use std::io;

use corral_protocols::rpc::{Code, Status};

/// A content store operation that did not happen (or, for [`ContentError::Io`] after a
/// commit's rename, happened but could not be made durable).
///
/// The messages are containerd's `content/local` messages; the kinds map onto the gRPC codes
/// containerd's `errdefs` gives them (see [`ContentError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// `content sha256:...: not found`
    #[error("{0}: not found")]
    NotFound(String),
    /// `content sha256:...: already exists`
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// A digest or reference that cannot name anything (`sha256:../../x`).
    #[error("{0}: invalid argument")]
    InvalidArgument(String),
    /// A commit whose size or digest is not the one the client expects, or a closed writer.
    #[error("{0}: failed precondition")]
    FailedPrecondition(String),
    /// `ref default/1/layer locked for 2ms (since ...): unavailable`: another writer holds
    /// the reference.
    #[error("{0}: unavailable")]
    Unavailable(String),
    /// An error containerd returns without a kind (`Truncate: unsupported size`, a damaged
    /// ingest whose ref file names another reference).
    #[error("{0}")]
    Unknown(String),
    /// The file system refused an operation.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path (`open .../ingest/<hex>/data`).
        context: String,
        source: io::Error,
    },
}

impl ContentError {
    /// The gRPC code containerd answers with for this kind of error. Errors without a kind
    /// (file system errors included) are `Unknown`, as containerd's server sends them.
    pub fn code(&self) -> Code {
        match self {
            ContentError::NotFound(_) => Code::NOT_FOUND,
            ContentError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ContentError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ContentError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ContentError::Unavailable(_) => Code::UNAVAILABLE,
            ContentError::Unknown(_) | ContentError::Io { .. } => Code::UNKNOWN,
        }
    }

    /// A file system error while doing `context`.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        ContentError::Io {
            context: context.into(),
            source,
        }
    }

    /// The same error with `prefix: ` in front of its message (containerd's `%w` wrapping);
    /// the kind is kept.
    pub(crate) fn context(self, prefix: &str) -> Self {
        match self {
            ContentError::NotFound(m) => ContentError::NotFound(format!("{prefix}: {m}")),
            ContentError::AlreadyExists(m) => ContentError::AlreadyExists(format!("{prefix}: {m}")),
            ContentError::InvalidArgument(m) => {
                ContentError::InvalidArgument(format!("{prefix}: {m}"))
            }
            ContentError::FailedPrecondition(m) => {
                ContentError::FailedPrecondition(format!("{prefix}: {m}"))
            }
            ContentError::Unavailable(m) => ContentError::Unavailable(format!("{prefix}: {m}")),
            ContentError::Unknown(m) => ContentError::Unknown(format!("{prefix}: {m}")),
            ContentError::Io { context, source } => ContentError::Io {
                context: format!("{prefix}: {context}"),
                source,
            },
        }
    }
}

impl From<ContentError> for Status {
    fn from(e: ContentError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Result of a content store operation.
pub type ContentResult<T> = Result<T, ContentError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_follow_containerd() {
        let cases = [
            (
                ContentError::NotFound("content sha256:ab".into()),
                "content sha256:ab: not found",
                Code::NOT_FOUND,
            ),
            (
                ContentError::AlreadyExists("content sha256:ab".into()),
                "content sha256:ab: already exists",
                Code::ALREADY_EXISTS,
            ),
            (
                ContentError::InvalidArgument("ref must not be empty".into()),
                "ref must not be empty: invalid argument",
                Code::INVALID_ARGUMENT,
            ),
            (
                ContentError::FailedPrecondition("unexpected commit size 1, expected 2".into()),
                "unexpected commit size 1, expected 2: failed precondition",
                Code::FAILED_PRECONDITION,
            ),
            (
                ContentError::Unavailable("ref x locked".into()),
                "ref x locked: unavailable",
                Code::UNAVAILABLE,
            ),
            (
                ContentError::Unknown("Truncate: unsupported size".into()),
                "Truncate: unsupported size",
                Code::UNKNOWN,
            ),
            (
                ContentError::io("open /x", io::Error::from_raw_os_error(libc::EACCES)),
                "open /x: Permission denied (os error 13)",
                Code::UNKNOWN,
            ),
        ];
        for (e, message, code) in cases {
            assert_eq!(e.to_string(), message);
            assert_eq!(e.code(), code);
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, message));
        }
        let e = ContentError::InvalidArgument("bad".into()).context("calculating blob path");
        assert_eq!(
            e.to_string(),
            "calculating blob path: bad: invalid argument"
        );
        assert_eq!(e.code(), Code::INVALID_ARGUMENT);
    }
}
