//! containerd 1.6's default Unix spec (`oci.populateDefaultUnixSpec`, oci/spec.go and
//! oci/mounts.go) and the default device rules of `oci.WithDefaultUnixDevices`.

use serde_json::json;

use super::{CapabilitySets, Spec, SpecError, OCI_VERSION};

/// The capabilities a container process keeps by default (`defaultUnixCaps`), in order.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `PATH` of an image-less process environment (`defaultUnixEnv`), for image configs
/// without an `Env`.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Paths masked inside the container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// Paths made read-only inside the container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The device cgroup rules `WithDefaultUnixDevices` appends: `(major, minor)` of character
/// devices, `None` for every minor. null, random, full, tty, zero, urandom, console, the
/// pts range, ptmx.
pub const DEFAULT_DEVICE_RULES: &[(i64, Option<i64>)] = &[
    (1, Some(3)),
    (1, Some(8)),
    (1, Some(7)),
    (5, Some(0)),
    (1, Some(5)),
    (1, Some(9)),
    (5, Some(1)),
    (136, None),
    (5, Some(2)),
];

impl Spec {
    /// containerd's default Unix spec for container `id` in `namespace`: root `rootfs`, cwd
    /// `/`, uid and gid 0, the default capabilities, `RLIMIT_NOFILE` 1024, no new
    /// privileges, the default mounts, masked and read-only paths, cgroups path
    /// `/<namespace>/<id>`, every device denied, new pid, ipc, uts, mount and network
    /// namespaces.
    pub fn default_unix(namespace: &str, id: &str) -> Result<Spec, SpecError> {
        let doc = json!({
            "ociVersion": OCI_VERSION,
            "root": {"path": "rootfs"},
            "process": {
                "cwd": "/",
                "noNewPrivileges": true,
                "user": {"uid": 0, "gid": 0},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
            },
            "linux": {
                "maskedPaths": MASKED_PATHS,
                "readonlyPaths": READONLY_PATHS,
                "cgroupsPath": cgroups_path(namespace, id),
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"},
                    {"type": "ipc"},
                    {"type": "uts"},
                    {"type": "mount"},
                    {"type": "network"}
                ]
            },
            "mounts": default_mounts()
        });
        let oci = serde_json::from_value(doc)
            .map_err(|e| SpecError::Unknown(format!("building the default spec: {e}")))?;
        let mut spec = Spec::from_oci(oci);
        let caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        spec.set_capabilities(Some(CapabilitySets {
            bounding: Some(caps.clone()),
            effective: Some(caps.clone()),
            permitted: Some(caps),
            ..Default::default()
        }));
        Ok(spec)
    }
}

/// `filepath.Join("/", namespace, id)`: both are validated identifiers, so a plain join.
fn cgroups_path(namespace: &str, id: &str) -> String {
    super::paths::clean(&format!("/{namespace}/{id}"))
}

/// The default mounts (oci/mounts.go): proc, a tmpfs `/dev`, devpts, shm, mqueue, a
/// read-only sysfs and a tmpfs `/run`.
fn default_mounts() -> serde_json::Value {
    json!([
        {"destination": "/proc", "type": "proc", "source": "proc",
            "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_containerds() {
        let spec = Spec::default_unix("edge", "web").unwrap();
        let v = spec.to_json().unwrap();
        assert_eq!(v["ociVersion"], "1.0.2-dev");
        assert_eq!(v["root"], json!({"path": "rootfs"}));
        assert_eq!(v["linux"]["cgroupsPath"], "/edge/web");
        assert_eq!(
            v["process"],
            json!({
                "user": {"uid": 0, "gid": 0},
                "cwd": "/",
                "capabilities": {
                    "bounding": DEFAULT_CAPS,
                    "effective": DEFAULT_CAPS,
                    "permitted": DEFAULT_CAPS
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            })
        );
        assert_eq!(v["mounts"].as_array().unwrap().len(), 7);
        assert_eq!(v["mounts"][5]["options"][3], "ro");
        assert_eq!(
            v["linux"]["resources"],
            json!({"devices": [{"allow": false, "access": "rwm"}]})
        );
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 5);
        assert!(v.get("hostname").is_none());
        assert!(v.get("annotations").is_none());
        assert!(v["process"].get("env").is_none());
        assert!(v["process"].get("args").is_none());
    }
}
