//! Errors from runc (or a runc-compatible binary), classified into containerd's error kinds.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use corral_protocols::rpc::{Code, Status};

/// A runc command that ran and exited unsuccessfully.
#[derive(Debug)]
pub struct Failure {
    /// The binary as configured (`runc`, `crun`, a path).
    pub binary: String,
    /// The runc subcommand (`create`, `kill`, ...).
    pub command: &'static str,
    /// The container id the command was about.
    pub id: String,
    /// How it exited.
    pub status: ExitStatus,
    /// The clearest message found: the last error in the JSON log written by this
    /// invocation, else the first line of stderr, else of stdout; empty when all were silent.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}: ", self.binary, self.command, self.id)?;
        if self.message.is_empty() {
            write!(f, "{}", describe_status(self.status))
        } else {
            f.write_str(&self.message)
        }
    }
}

/// `exit status 1` / `killed by signal 9`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("wait status {}", status.into_raw()),
    }
}

/// Everything that can go wrong driving runc.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    /// `--systemd-cgroup` was asked for on a host not booted with systemd.
    #[error("SystemdCgroup requested but systemd is not running on this host")]
    SystemdNotRunning,

    /// Checkpoint needs CRIU and it is not installed (or not where `CriuPath` says).
    #[error("checkpoint needs CRIU, but {criu:?} {why}; install criu or set CriuPath in the runc options")]
    CriuNotFound {
        /// The name or path looked for.
        criu: String,
        /// `was not found on PATH`, `is not an executable file`.
        why: String,
    },

    /// The container does not exist (runc: `container does not exist`; crun: its state
    /// directory is missing).
    #[error("container {:?}: not found ({})", .0.id, .0)]
    NotFound(Failure),

    /// `create` with an id the runtime already has.
    #[error("container {:?}: already exists ({})", .0.id, .0)]
    AlreadyExists(Failure),

    /// `kill` of a process that has already exited (runc: `container not running`; crun:
    /// `No such process`).
    #[error("container {:?}: process already finished ({})", .0.id, .0)]
    ProcessFinished(Failure),

    /// An operation that needs a running container (pause, update, ...) on a stopped one.
    #[error("container {:?}: not running ({})", .0.id, .0)]
    NotRunning(Failure),

    /// The binary does not know the command (crun built without CRIU has no `checkpoint`).
    #[error("{} does not support {}: {}", .0.binary, .0.command, .0.message)]
    Unsupported(Failure),

    /// Any other unsuccessful exit.
    #[error("{0}")]
    Failed(Failure),

    /// The binary could not be started at all.
    #[error("cannot run {binary} {command}: {source}")]
    Spawn {
        /// The binary as configured.
        binary: String,
        /// The subcommand.
        command: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// Preparing the command failed (writing the exec process file, resolving a path).
    #[error("{binary} {command}: {what} {path:?}: {source}")]
    Prepare {
        /// The binary as configured.
        binary: String,
        /// The subcommand.
        command: &'static str,
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// The command succeeded but printed something that does not parse.
    #[error("{binary} {command} {id:?}: unexpected output {output:?}: {source}")]
    Decode {
        /// The binary as configured.
        binary: String,
        /// The subcommand.
        command: &'static str,
        /// The container id.
        id: String,
        /// The output (cut to 200 bytes).
        output: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl RuncError {
    /// The gRPC code containerd's errdefs would give this error.
    pub fn code(&self) -> Code {
        match self {
            Self::NotFound(_) | Self::ProcessFinished(_) => Code::NOT_FOUND,
            Self::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Self::SystemdNotRunning | Self::CriuNotFound { .. } | Self::NotRunning(_) => {
                Code::FAILED_PRECONDITION
            }
            Self::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Code::FAILED_PRECONDITION
            }
            Self::Unsupported(_) => Code::UNIMPLEMENTED,
            Self::Failed(_) | Self::Spawn { .. } | Self::Prepare { .. } => Code::UNKNOWN,
            Self::Decode { .. } => Code::INTERNAL,
        }
    }

    /// The failed command's details, when the binary ran and failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Self::NotFound(f)
            | Self::AlreadyExists(f)
            | Self::ProcessFinished(f)
            | Self::NotRunning(f)
            | Self::Unsupported(f)
            | Self::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// True for [`RuncError::NotFound`]: the container does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }

    /// True for [`RuncError::ProcessFinished`] (kill) and [`RuncError::NotRunning`] (other
    /// commands): the container exists but its init has exited.
    pub fn is_not_running(&self) -> bool {
        matches!(self, Self::ProcessFinished(_) | Self::NotRunning(_))
    }

    /// Sorts a failure into a variant by its command and message. The patterns are the
    /// messages runc 1.1 and crun 1.8 print (see the tests), plus containerd's
    /// `checkKillError` patterns for kill.
    pub(crate) fn classify(f: Failure) -> Self {
        let msg = f.message.to_ascii_lowercase();
        if msg.contains("unknown command") || msg.contains("no help topic") {
            return Self::Unsupported(f);
        }
        if f.command == "create" {
            // "does not exist" in create is about the bundle (crun: "the rootfs path ... does
            // not exist"), never about the container.
            return if msg.contains("already exists") {
                Self::AlreadyExists(f)
            } else {
                Self::Failed(f)
            };
        }
        if container_missing(&msg, &f.id) {
            return Self::NotFound(f);
        }
        if f.command == "kill"
            && (msg.contains("process already finished")
                || msg.contains("container not running")
                || msg.contains("is not running")
                || msg.contains("no such process"))
        {
            return Self::ProcessFinished(f);
        }
        if msg.contains("container not running") || msg.contains("is not running") {
            return Self::NotRunning(f);
        }
        Self::Failed(f)
    }
}

/// runc: `container does not exist` (1.1), `container "x" does not exist` (older),
/// `exec failed: container does not exist`. crun: ``error opening file `<root>/<id>/status`:
/// No such file or directory``, `cannot open directory '<root>/<id>': No such file or
/// directory`. `msg` is lower-cased.
fn container_missing(msg: &str, id: &str) -> bool {
    if msg.contains("container") && msg.contains("not exist") {
        return true;
    }
    let id = id.to_ascii_lowercase();
    msg.contains("no such file or directory")
        && [
            format!("/{id}/status"),
            format!("/{id}'"),
            format!("/{id}`"),
        ]
        .iter()
        .any(|p| msg.contains(p.as_str()))
}

impl From<RuncError> for Status {
    fn from(e: RuncError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn failure(binary: &str, command: &'static str, id: &str, message: &str) -> Failure {
        Failure {
            binary: binary.to_string(),
            command,
            id: id.to_string(),
            status: ExitStatus::from_raw(1 << 8),
            message: message.to_string(),
        }
    }

    fn kind(binary: &str, command: &'static str, id: &str, message: &str) -> &'static str {
        match RuncError::classify(failure(binary, command, id, message)) {
            RuncError::NotFound(_) => "NotFound",
            RuncError::AlreadyExists(_) => "AlreadyExists",
            RuncError::ProcessFinished(_) => "ProcessFinished",
            RuncError::NotRunning(_) => "NotRunning",
            RuncError::Unsupported(_) => "Unsupported",
            RuncError::Failed(_) => "Failed",
            other => panic!("classify gave {other:?}"),
        }
    }

    #[test]
    fn runc_messages() {
        // Observed with runc 1.1.5.
        for cmd in [
            "state", "start", "kill", "delete", "pause", "resume", "ps", "update", "exec",
        ] {
            assert_eq!(
                kind("runc", cmd, "t1", "container does not exist"),
                "NotFound"
            );
        }
        assert_eq!(
            kind(
                "runc",
                "exec",
                "t1",
                "exec failed: container does not exist"
            ),
            "NotFound"
        );
        assert_eq!(
            kind("runc", "state", "x", r#"container "x" does not exist"#),
            "NotFound"
        );
        assert_eq!(
            kind("runc", "kill", "t1", "container not running"),
            "ProcessFinished"
        );
        assert_eq!(
            kind("runc", "kill", "t1", "os: process already finished"),
            "ProcessFinished"
        );
        assert_eq!(
            kind("runc", "pause", "t1", "container not running"),
            "NotRunning"
        );
        assert_eq!(
            kind("runc", "update", "t1", "container not running"),
            "NotRunning"
        );
        assert_eq!(
            kind(
                "runc",
                "create",
                "t2",
                "runc create failed: container with given ID already exists"
            ),
            "AlreadyExists"
        );
        assert_eq!(
            kind(
                "runc",
                "create",
                "t4",
                "runc create failed: chdir /b: no such file or directory"
            ),
            "Failed"
        );
        assert_eq!(
            kind(
                "runc",
                "start",
                "t2",
                "cannot start an already running container"
            ),
            "Failed"
        );
        assert_eq!(
            kind(
                "runc",
                "delete",
                "t2",
                "cannot delete container t2 that is not stopped: running"
            ),
            "Failed"
        );
        assert_eq!(
            kind(
                "runc",
                "exec",
                "t2",
                r#"exec failed: unable to start container process: exec: "nosuchbin": executable file not found in $PATH"#
            ),
            "Failed"
        );
        assert_eq!(
            kind("runc", "resume", "t1", "container not paused"),
            "Failed"
        );
        assert_eq!(
            kind("runc", "foo", "x", "No help topic for 'foo'"),
            "Unsupported"
        );
    }

    #[test]
    fn crun_messages() {
        // crun 1.8.1 (observed, and read from its libcrun/status.c and linux.c).
        assert_eq!(
            kind(
                "crun",
                "state",
                "c1",
                "error opening file `/run/crun/c1/status`: No such file or directory"
            ),
            "NotFound"
        );
        assert_eq!(
            kind(
                "crun",
                "delete",
                "c1",
                "cannot open directory '/tmp/croot/c1': No such file or directory"
            ),
            "NotFound"
        );
        assert_eq!(
            kind(
                "crun",
                "exec",
                "c1",
                "executable file `nosuch` not found in $PATH: No such file or directory"
            ),
            "Failed"
        );
        assert_eq!(
            kind("crun", "kill", "c1", "kill container: No such process"),
            "ProcessFinished"
        );
        assert_eq!(
            kind("crun", "kill", "c1", "open pidfd: No such process"),
            "ProcessFinished"
        );
        assert_eq!(
            kind("crun", "pause", "c1", "the container `c1` is not running"),
            "NotRunning"
        );
        assert_eq!(
            kind("crun", "create", "c1", "container `c1` already exists"),
            "AlreadyExists"
        );
        assert_eq!(
            kind(
                "crun",
                "create",
                "c1",
                "the rootfs path `/b/rootfs` does not exist"
            ),
            "Failed"
        );
        assert_eq!(
            kind("crun", "checkpoint", "c1", "unknown command checkpoint"),
            "Unsupported"
        );
        assert_eq!(
            kind(
                "crun",
                "create",
                "c1",
                "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"
            ),
            "Failed"
        );
    }

    #[test]
    fn another_containers_path_is_not_ours() {
        assert_eq!(
            kind(
                "crun",
                "state",
                "c1",
                "error opening file `/run/crun/c10/status`: No such file or directory"
            ),
            "Failed"
        );
    }

    #[test]
    fn codes_and_messages() {
        let e = RuncError::classify(failure("runc", "state", "web", "container does not exist"));
        assert_eq!(e.code(), Code::NOT_FOUND);
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            r#"container "web": not found (runc state "web": container does not exist)"#
        );
        let status: Status = e.into();
        assert_eq!(status.code(), Code::NOT_FOUND);

        let e = RuncError::classify(failure("runc", "kill", "web", "container not running"));
        assert_eq!(e.code(), Code::NOT_FOUND);
        assert!(!e.is_not_found());
        assert_eq!(
            e.to_string(),
            r#"container "web": process already finished (runc kill "web": container not running)"#
        );

        let e = RuncError::classify(failure("runc", "start", "web", ""));
        assert_eq!(e.code(), Code::UNKNOWN);
        assert_eq!(e.to_string(), r#"runc start "web": exit status 1"#);
        assert_eq!(e.failure().unwrap().status.code(), Some(1));

        let mut f = failure("runc", "start", "web", "");
        f.status = ExitStatus::from_raw(9);
        assert_eq!(
            RuncError::Failed(f).to_string(),
            r#"runc start "web": killed by signal 9"#
        );

        assert_eq!(
            RuncError::SystemdNotRunning.to_string(),
            "SystemdCgroup requested but systemd is not running on this host"
        );
        assert_eq!(
            RuncError::SystemdNotRunning.code(),
            Code::FAILED_PRECONDITION
        );
        let e = RuncError::CriuNotFound {
            criu: "criu".into(),
            why: "was not found on PATH".into(),
        };
        assert_eq!(e.code(), Code::FAILED_PRECONDITION);
        assert!(e.to_string().contains("checkpoint needs CRIU"));

        let e = RuncError::Spawn {
            binary: "crun".into(),
            command: "state",
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(e.code(), Code::FAILED_PRECONDITION);
        assert!(
            !e.is_not_found(),
            "a missing binary is not a missing container"
        );

        let e = RuncError::classify(failure(
            "crun",
            "checkpoint",
            "c",
            "unknown command checkpoint",
        ));
        assert_eq!(e.code(), Code::UNIMPLEMENTED);
        assert_eq!(
            e.to_string(),
            "crun does not support checkpoint: unknown command checkpoint"
        );
    }
}
