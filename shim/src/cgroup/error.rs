//! The cgroup module's error, one variant per containerd error kind it can end in.

use std::io;
use std::path::PathBuf;

use corral_protocols::rpc::{Code, Status};

/// What went wrong while locating a cgroup, reading its statistics or watching it for OOMs.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The process has exited: `/proc/<pid>` is gone.
    #[error("process {pid}: not found")]
    ProcessNotFound {
        /// The process asked about.
        pid: i32,
    },
    /// The cgroup directory is gone (the container was deleted).
    #[error("cgroup {}: not found", path.display())]
    CgroupNotFound {
        /// The directory that was expected.
        path: PathBuf,
    },
    /// No hierarchy on this host carries what was asked for: no cgroup file system at all, or
    /// no memory controller for OOM notifications. containerd's shim answers `NotFound`
    /// ("cgroup does not exist") in that case too.
    #[error("{what}: not mounted")]
    NotMounted {
        /// What is missing, e.g. `cgroup v1 memory controller`.
        what: String,
    },
    /// A kernel file did not have the expected shape.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the line when it helps.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A system call failed (eventfd, epoll, inotify).
    #[error("{op}: {source}")]
    Sys {
        /// The call, e.g. `epoll_create1`.
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// Encoding a metrics message failed.
    #[error("encode {what}: {source}")]
    Encode {
        /// The message name.
        what: &'static str,
        /// The cause.
        #[source]
        source: protobuf::Error,
    },
}

impl CgroupError {
    /// The gRPC code this error travels as.
    pub fn code(&self) -> Code {
        match self {
            Self::ProcessNotFound { .. }
            | Self::CgroupNotFound { .. }
            | Self::NotMounted { .. } => Code::NOT_FOUND,
            Self::Malformed { .. } | Self::Encode { .. } => Code::INTERNAL,
            Self::Io { .. } | Self::Sys { .. } => Code::UNKNOWN,
        }
    }

    /// True for the not-found kinds (process gone, cgroup gone, controller not mounted).
    pub fn is_not_found(&self) -> bool {
        self.code() == Code::NOT_FOUND
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<CgroupError> for Status {
    fn from(e: CgroupError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let e = CgroupError::ProcessNotFound { pid: 42 };
        assert_eq!(e.to_string(), "process 42: not found");
        assert!(e.is_not_found());
        let s: Status = CgroupError::CgroupNotFound {
            path: "/sys/fs/cgroup/memory/x".into(),
        }
        .into();
        assert_eq!(s.code(), Code::NOT_FOUND);
        assert_eq!(s.message(), "cgroup /sys/fs/cgroup/memory/x: not found");
        let e = CgroupError::malformed("/a/memory.stat", "line 2: expected \"key value\"");
        assert_eq!(e.code(), Code::INTERNAL);
        assert_eq!(
            e.to_string(),
            "/a/memory.stat: line 2: expected \"key value\""
        );
        let e = CgroupError::Sys {
            op: "epoll_create1",
            source: nix::errno::Errno::EMFILE,
        };
        assert_eq!(e.code(), Code::UNKNOWN);
        assert!(!e.is_not_found());
    }
}
