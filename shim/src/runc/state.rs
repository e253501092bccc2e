//! What `runc state` and `runc ps --format json` print.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A container's status as the OCI runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// runc is still setting the container up.
    Creating,
    /// Created, init waiting for `start`.
    Created,
    /// Init runs.
    Running,
    /// runc is freezing the cgroup.
    Pausing,
    /// Frozen.
    Paused,
    /// Init has exited (or is a zombie).
    Stopped,
    /// Any other word a runtime may print.
    #[serde(other)]
    Unknown,
}

impl ContainerStatus {
    /// The word runc prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Pausing => "pausing",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `runc state <id>` output. runc 1.1 prints
/// `{"ociVersion","id","pid","status","bundle","rootfs","created","owner"}` and `annotations`
/// when the spec has any; crun prints the same keys. Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The OCI runtime spec version the runtime implements.
    #[serde(rename = "ociVersion", default)]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Init's pid in the host's pid namespace; 0 once stopped.
    #[serde(default)]
    pub pid: i32,
    /// Status.
    pub status: ContainerStatus,
    /// Bundle directory.
    #[serde(default)]
    pub bundle: PathBuf,
    /// Root filesystem path (runc prints `rootfs`; `rootFS` accepted too).
    #[serde(default, alias = "rootFS")]
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 as printed.
    #[serde(default)]
    pub created: String,
    /// Owner (empty for root).
    #[serde(default)]
    pub owner: String,
    /// The spec's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Parses `runc ps --format json` output: a JSON array of pids, or `null` (runc prints it for
/// a stopped container).
pub fn parse_ps(out: &[u8]) -> Result<Vec<i32>, serde_json::Error> {
    let pids: Option<Vec<i32>> = serde_json::from_slice(out)?;
    Ok(pids.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `runc state` (runc 1.1.5) for a created container.
    const RUNC_STATE: &str = r#"{
  "ociVersion": "1.0.2-dev",
  "id": "t1",
  "pid": 22804,
  "status": "created",
  "bundle": "/tmp/exp/b",
  "rootfs": "/tmp/exp/b/rootfs",
  "created": "2026-11-23T15:02:38.156776528Z",
  "owner": ""
}"#;

    #[test]
    fn parses_runc_state() {
        let s: State = serde_json::from_str(RUNC_STATE).unwrap();
        assert_eq!(s.oci_version, "1.0.2-dev");
        assert_eq!(s.id, "t1");
        assert_eq!(s.pid, 22804);
        assert_eq!(s.status, ContainerStatus::Created);
        assert_eq!(s.bundle, PathBuf::from("/tmp/exp/b"));
        assert_eq!(s.rootfs, PathBuf::from("/tmp/exp/b/rootfs"));
        assert_eq!(s.created, "2026-11-23T15:02:38.156776528Z");
        assert_eq!(s.owner, "");
        assert!(s.annotations.is_empty());
    }

    #[test]
    fn parses_annotations_rootfs_alias_and_unknown_fields() {
        let s: State = serde_json::from_str(
            r#"{"ociVersion":"1.0.0","id":"web","pid":0,"status":"stopped","bundle":"/b",
                "rootFS":"/b/rootfs","created":"2023-01-01T00:00:00Z","owner":"root",
                "annotations":{"io.kubernetes.cri.sandbox-id":"abc","k":"v"},
                "systemd-scope":"x.scope"}"#,
        )
        .unwrap();
        assert_eq!(s.status, ContainerStatus::Stopped);
        assert_eq!(s.pid, 0);
        assert_eq!(s.rootfs, PathBuf::from("/b/rootfs"));
        assert_eq!(s.owner, "root");
        assert_eq!(s.annotations["io.kubernetes.cri.sandbox-id"], "abc");
        assert_eq!(s.annotations.len(), 2);
    }

    #[test]
    fn every_status_word() {
        for (word, status) in [
            ("creating", ContainerStatus::Creating),
            ("created", ContainerStatus::Created),
            ("running", ContainerStatus::Running),
            ("pausing", ContainerStatus::Pausing),
            ("paused", ContainerStatus::Paused),
            ("stopped", ContainerStatus::Stopped),
            ("weird", ContainerStatus::Unknown),
        ] {
            let s: State =
                serde_json::from_str(&format!(r#"{{"id":"x","pid":1,"status":"{word}"}}"#))
                    .unwrap();
            assert_eq!(s.status, status, "{word}");
            if status != ContainerStatus::Unknown {
                assert_eq!(status.as_str(), word);
                assert_eq!(status.to_string(), word);
            }
        }
    }

    #[test]
    fn state_missing_required_fields_is_an_error() {
        assert!(serde_json::from_str::<State>(r#"{"pid":1}"#).is_err());
        assert!(serde_json::from_str::<State>("container does not exist").is_err());
    }

    #[test]
    fn parses_ps() {
        assert_eq!(parse_ps(b"[25440,25492]").unwrap(), vec![25440, 25492]);
        assert_eq!(parse_ps(b"[22804]\n").unwrap(), vec![22804]);
        assert_eq!(parse_ps(b"null").unwrap(), Vec::<i32>::new());
        assert_eq!(parse_ps(b"[]").unwrap(), Vec::<i32>::new());
        assert!(parse_ps(b"").is_err());
        assert!(parse_ps(b"UID PID\n").is_err());
    }
}
