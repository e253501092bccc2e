//! What applying a layer reports, mapped onto containerd's error kinds.

use std::io;
use std::path::PathBuf;

use corral_protocols::rpc::{Code, Status};

/// A layer that was not (completely) applied. What was written inside the target before the
/// error may stay there: the caller discards the snapshot. Nothing is ever written outside it.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A media type that is not a layer containerd applies (containerd's `GetProcessor`
    /// error, `diff.ErrNoProcessor`).
    #[error("failed to get stream processor for {0}: no processor for media-type")]
    UnsupportedMediaType(String),
    /// An entry of a kind containerd would unpack but Corral does not (sparse files).
    #[error("archive entry {entry:?}: {what} not supported: not implemented")]
    UnsupportedEntry { entry: String, what: &'static str },
    /// A hostile or malformed entry: a name that leaves the target, a bad link, a bad
    /// whiteout, a header field out of range.
    #[error("invalid archive entry {entry:?}: {reason}: invalid argument")]
    InvalidEntry { entry: String, reason: String },
    /// A stream that is not a valid (compressed) tar archive.
    #[error("invalid archive: {0}: invalid argument")]
    InvalidArchive(String),
    /// More uncompressed bytes than the configured cap (a decompression bomb).
    #[error("layer exceeds the limit of {limit} uncompressed bytes: invalid argument")]
    TooLarge { limit: u64 },
    /// More entries than the configured cap.
    #[error("layer has more than {limit} entries: invalid argument")]
    TooManyEntries { limit: u64 },
    /// Options that cannot work (a target that is not a directory).
    #[error("{0}: invalid argument")]
    InvalidOptions(String),
    /// Reading the layer's bytes failed (the content store, not the archive).
    #[error("failed to read layer: {0}")]
    Read(#[source] io::Error),
    /// A file system operation in the target (or a lower) failed.
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl DiffError {
    /// The gRPC code containerd answers with for this kind of error.
    pub fn code(&self) -> Code {
        match self {
            DiffError::UnsupportedMediaType(_) | DiffError::UnsupportedEntry { .. } => {
                Code::UNIMPLEMENTED
            }
            DiffError::InvalidEntry { .. }
            | DiffError::InvalidArchive(_)
            | DiffError::TooLarge { .. }
            | DiffError::TooManyEntries { .. }
            | DiffError::InvalidOptions(_) => Code::INVALID_ARGUMENT,
            // containerd passes a failed syscall on as it is: errdefs.ToGRPC makes it Unknown.
            DiffError::Read(_) | DiffError::Io { .. } => Code::UNKNOWN,
        }
    }

    /// An entry refused for `reason`.
    pub(crate) fn entry(name: &[u8], reason: impl Into<String>) -> Self {
        DiffError::InvalidEntry {
            entry: String::from_utf8_lossy(name).into_owned(),
            reason: reason.into(),
        }
    }

    /// A failed file system operation `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DiffError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<DiffError> for Status {
    fn from(e: DiffError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Result of applying a layer.
pub type DiffResult<T> = Result<T, DiffError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_containerd_kinds() {
        let cases = [
            (
                DiffError::UnsupportedMediaType("text/plain".into()),
                Code::UNIMPLEMENTED,
            ),
            (
                DiffError::UnsupportedEntry {
                    entry: "sparse".into(),
                    what: "sparse files are",
                },
                Code::UNIMPLEMENTED,
            ),
            (DiffError::entry(b"../x", "escapes"), Code::INVALID_ARGUMENT),
            (DiffError::TooLarge { limit: 1 }, Code::INVALID_ARGUMENT),
            (
                DiffError::io("mkdir", "/x", io::Error::from_raw_os_error(libc::ENOSPC)),
                Code::UNKNOWN,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error}");
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn messages_name_the_entry() {
        let e = DiffError::entry(b"a/../../etc/passwd", "name climbs above the root");
        assert_eq!(
            e.to_string(),
            "invalid archive entry \"a/../../etc/passwd\": name climbs above the root: \
             invalid argument"
        );
        assert_eq!(
            DiffError::UnsupportedMediaType("text/plain".into()).to_string(),
            "failed to get stream processor for text/plain: no processor for media-type"
        );
    }
}
