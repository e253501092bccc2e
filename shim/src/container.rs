//! A container the shim runs: its bundle, its runc, its init process and its execs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::options::RuncOptions;
use crate::process::Process;
use crate::runc::Runc;

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runc: Runc,
    pub options: RuncOptions,
    pub init: Arc<Process>,
    /// Whether the shim mounted the rootfs (and so unmounts it).
    pub rootfs_mounted: bool,
    /// True when the container shares the host's (or another) pid namespace: its processes
    /// are not killed by the kernel with its init, so the shim kills them.
    pub kill_all_on_exit: bool,
    /// Just before `runc create` ran: exits of the init's pid before this are not its own.
    pub created_at: Instant,
    execs: Mutex<HashMap<String, Arc<Process>>>,
}

impl Container {
    pub fn new(
        id: &str,
        bundle: &Path,
        runc: Runc,
        options: RuncOptions,
        init: Arc<Process>,
        rootfs_mounted: bool,
        created_at: Instant,
    ) -> Self {
        Self {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            runc,
            options,
            init,
            rootfs_mounted,
            kill_all_on_exit: kill_all_on_exit(bundle),
            created_at,
            execs: Mutex::new(HashMap::new()),
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    pub fn execs(&self) -> MutexGuard<'_, HashMap<String, Arc<Process>>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The init (empty `exec_id`) or the exec with that id.
    pub fn process(&self, exec_id: &str) -> Option<Arc<Process>> {
        if exec_id.is_empty() {
            Some(Arc::clone(&self.init))
        } else {
            self.execs().get(exec_id).cloned()
        }
    }

    /// Every process: init first.
    pub fn processes(&self) -> Vec<Arc<Process>> {
        let mut all = vec![Arc::clone(&self.init)];
        all.extend(self.execs().values().cloned());
        all
    }
}

/// containerd's rule: kill every process of the container when its init exits, unless the
/// spec gives it a pid namespace of its own (a `pid` namespace without a path).
pub fn kill_all_on_exit(bundle: &Path) -> bool {
    let Ok(bytes) = std::fs::read(bundle.join("config.json")) else {
        return true;
    };
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return true;
    };
    let own_pidns = spec
        .pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .is_some_and(|list| {
            list.iter().any(|ns| {
                ns.get("type").and_then(|t| t.as_str()) == Some("pid")
                    && ns
                        .get("path")
                        .and_then(|p| p.as_str())
                        .unwrap_or("")
                        .is_empty()
            })
        });
    !own_pidns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_all_unless_the_container_has_its_own_pid_namespace() {
        let dir = tempfile::tempdir().unwrap();
        assert!(kill_all_on_exit(dir.path()));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        assert!(!kill_all_on_exit(dir.path()));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#,
        )
        .unwrap();
        assert!(kill_all_on_exit(dir.path()));
    }
}
