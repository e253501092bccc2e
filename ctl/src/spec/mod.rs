//! OCI runtime specs as containerd 1.6's client generates them (its `oci` package): the
//! default Unix spec ([`Spec::default_unix`]), the options `ctr` applies on top of it (methods
//! named after containerd's `With...` options, in [`opts`], [`user`] and, for an image's
//! runtime configuration, [`image_config`]), and the JSON containerd stores.
//!
//! The model is `oci_spec::runtime::Spec`, with one exception: capability sets. oci-spec
//! keeps them as hash sets of known names, while containerd keeps ordered lists of any
//! `CAP_` string, and the order is part of the stored spec. So [`Spec`] holds the process's
//! capabilities itself, as ordered lists ([`CapabilitySets`]), and puts them in place when it
//! writes JSON.
//!
//! The JSON is written as Go's `encoding/json` writes containerd's vendored runtime-spec
//! structs (v1.0.2-dev): fields that are `omitempty` in Go are left out when zero
//! ([`omitempty`]).

pub mod caps;
pub mod defaults;
pub mod devices;
pub mod image_config;
pub mod mounts;
pub mod omitempty;
pub mod opts;
pub mod paths;
pub mod user;

use serde_json::Value;

/// The runtime-spec version containerd 1.6.20 vendors (`specs.Version`), written as
/// `ociVersion` in every spec it generates.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// The type URL containerd stores a container's spec under (`typeurl` registration of
/// `specs.Spec`).
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// Why a spec could not be generated; messages are ctr's for the same mistakes.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A value given by the user is malformed (containerd's `InvalidArgument`).
    #[error("{0}")]
    InvalidArgument(String),
    /// Something the spec refers to does not exist: a file, a device, a user (`NotFound`).
    #[error("{0}")]
    NotFound(String),
    /// Reading a file or the system failed otherwise (`Unknown`).
    #[error("{0}")]
    Unknown(String),
}

impl SpecError {
    /// An I/O failure on `path`, worded as Go's `*PathError` (`open /x: no such file or
    /// directory`); a missing file is [`SpecError::NotFound`].
    pub fn io(op: &str, path: &std::path::Path, e: &std::io::Error) -> SpecError {
        let msg = format!("{op} {}: {}", path.display(), io_reason(e));
        if e.kind() == std::io::ErrorKind::NotFound {
            SpecError::NotFound(msg)
        } else {
            SpecError::Unknown(msg)
        }
    }

    /// The same error with `prefix: ` in front of its message.
    pub fn context(self, prefix: &str) -> SpecError {
        match self {
            SpecError::InvalidArgument(m) => SpecError::InvalidArgument(format!("{prefix}: {m}")),
            SpecError::NotFound(m) => SpecError::NotFound(format!("{prefix}: {m}")),
            SpecError::Unknown(m) => SpecError::Unknown(format!("{prefix}: {m}")),
        }
    }
}

/// An I/O error's reason as Go spells errno: lower case, without Rust's `(os error N)`.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.find(" (os error").map_or(s.as_str(), |i| &s[..i]);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The process's capability sets, each an ordered list as containerd keeps it; `None` is a
/// nil list (left out of the JSON, as is an empty one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    /// The bounding set.
    pub bounding: Option<Vec<String>>,
    /// The effective set.
    pub effective: Option<Vec<String>>,
    /// The inheritable set.
    pub inheritable: Option<Vec<String>>,
    /// The permitted set.
    pub permitted: Option<Vec<String>>,
    /// The ambient set.
    pub ambient: Option<Vec<String>>,
}

impl CapabilitySets {
    /// The sets in JSON order with their names.
    fn named(&self) -> [(&'static str, &Option<Vec<String>>); 5] {
        [
            ("bounding", &self.bounding),
            ("effective", &self.effective),
            ("inheritable", &self.inheritable),
            ("permitted", &self.permitted),
            ("ambient", &self.ambient),
        ]
    }

    fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (name, set) in self.named() {
            if let Some(list) = set {
                if !list.is_empty() {
                    map.insert(name.to_string(), Value::from(list.clone()));
                }
            }
        }
        Value::Object(map)
    }

    /// Reads `process.capabilities` as Go reads it into `[]string` fields.
    fn from_json(v: &Value) -> Result<CapabilitySets, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "process.capabilities is not an object".to_string())?;
        let list = |name: &str| -> Result<Option<Vec<String>>, String> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_string).ok_or_else(|| {
                            format!("process.capabilities.{name}: {i} is not a string")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(other) => Err(format!(
                    "process.capabilities.{name}: {other} is not an array"
                )),
            }
        };
        Ok(CapabilitySets {
            bounding: list("bounding")?,
            effective: list("effective")?,
            inheritable: list("inheritable")?,
            permitted: list("permitted")?,
            ambient: list("ambient")?,
        })
    }
}

/// An OCI runtime spec being generated: oci-spec's model plus ordered capability sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    oci: oci_spec::runtime::Spec,
    /// `process.capabilities`; the `oci` model's own field is kept `None`.
    capabilities: Option<CapabilitySets>,
}

impl Spec {
    /// Reads a spec as containerd's `oci.WithSpecFromBytes` does: the JSON replaces the whole
    /// spec. Fields unknown to the OCI runtime spec are dropped.
    pub fn from_json(bytes: &[u8]) -> Result<Spec, SpecError> {
        let fail = |e: String| {
            SpecError::InvalidArgument(format!(
                "decoding spec config file failed, current supported OCI runtime-spec : v{OCI_VERSION}: {e}"
            ))
        };
        let mut doc: Value = serde_json::from_slice(bytes).map_err(|e| fail(e.to_string()))?;
        if !doc.is_object() {
            return Err(fail("the spec is not a JSON object".into()));
        }
        let capabilities = match doc
            .get_mut("process")
            .and_then(Value::as_object_mut)
            .and_then(|p| p.remove("capabilities"))
        {
            None | Some(Value::Null) => None,
            Some(v) => Some(CapabilitySets::from_json(&v).map_err(fail)?),
        };
        omitempty::strip(&mut doc);
        let oci = serde_json::from_value(doc).map_err(|e| fail(e.to_string()))?;
        Ok(Spec { oci, capabilities })
    }

    /// Wraps an oci-spec model. Its capability sets, if any, become ordered lists sorted by
    /// name (a set has no order of its own).
    pub fn from_oci(mut oci: oci_spec::runtime::Spec) -> Spec {
        let capabilities = oci.process_mut().as_mut().and_then(|p| {
            let caps = p.capabilities().clone()?;
            p.set_capabilities(None);
            let list = |set: &Option<oci_spec::runtime::Capabilities>| {
                set.as_ref().map(|s| {
                    let mut names: Vec<String> = s
                        .iter()
                        .filter_map(|c| match serde_json::to_value(c) {
                            Ok(Value::String(name)) => Some(name),
                            _ => None,
                        })
                        .collect();
                    names.sort();
                    names
                })
            };
            Some(CapabilitySets {
                bounding: list(caps.bounding()),
                effective: list(caps.effective()),
                inheritable: list(caps.inheritable()),
                permitted: list(caps.permitted()),
                ambient: list(caps.ambient()),
            })
        });
        Spec { oci, capabilities }
    }

    /// oci-spec's model of everything but the capability sets.
    pub fn oci(&self) -> &oci_spec::runtime::Spec {
        &self.oci
    }

    /// The model, to change it; set capabilities through [`Spec::capabilities_mut`].
    pub fn oci_mut(&mut self) -> &mut oci_spec::runtime::Spec {
        &mut self.oci
    }

    /// The process's capability sets, when it has any.
    pub fn capabilities(&self) -> Option<&CapabilitySets> {
        self.capabilities.as_ref()
    }

    /// The capability sets, created empty (with an empty process) when missing, as
    /// containerd's `setCapabilities` does.
    pub fn capabilities_mut(&mut self) -> &mut CapabilitySets {
        self.process();
        self.capabilities
            .get_or_insert_with(CapabilitySets::default)
    }

    /// Replaces the capability sets (`None` removes the `capabilities` object).
    pub fn set_capabilities(&mut self, caps: Option<CapabilitySets>) {
        self.capabilities = caps;
    }

    /// The spec as JSON, with Go's field rules.
    pub fn to_json(&self) -> Result<Value, SpecError> {
        let mut v = serde_json::to_value(&self.oci)
            .map_err(|e| SpecError::Unknown(format!("encoding the spec: {e}")))?;
        if let Some(caps) = &self.capabilities {
            if let Some(process) = v.get_mut("process").and_then(Value::as_object_mut) {
                process.insert("capabilities".into(), caps.to_json());
            }
        }
        omitempty::strip(&mut v);
        Ok(v)
    }

    /// The spec's JSON bytes, as stored in the container record's `Any`.
    pub fn to_vec(&self) -> Result<Vec<u8>, SpecError> {
        serde_json::to_vec(&self.to_json()?)
            .map_err(|e| SpecError::Unknown(format!("encoding the spec: {e}")))
    }

    /// The process, created empty when missing (containerd's `setProcess`).
    pub fn process(&mut self) -> &mut oci_spec::runtime::Process {
        self.oci.process_mut().get_or_insert_with(zero_process)
    }

    /// The root, created empty when missing (`setRoot`).
    pub fn root(&mut self) -> &mut oci_spec::runtime::Root {
        self.oci.root_mut().get_or_insert_with(zero_root)
    }

    /// The Linux section, created empty when missing (`setLinux`).
    pub fn linux(&mut self) -> &mut oci_spec::runtime::Linux {
        self.oci.linux_mut().get_or_insert_with(zero_linux)
    }

    /// The Linux resources, created empty (with the Linux section) when missing
    /// (`setResources`).
    pub fn resources(&mut self) -> &mut oci_spec::runtime::LinuxResources {
        self.linux()
            .resources_mut()
            .get_or_insert_with(Default::default)
    }
}

// oci-spec's `Default` impls of `Process`, `Root` and `Linux` are runc's example config, not
// Go's zero structs: these are the zero values.

/// Go's zero `specs.Process`.
pub(crate) fn zero_process() -> oci_spec::runtime::Process {
    let mut p = oci_spec::runtime::Process::default();
    p.set_terminal(None)
        .set_console_size(None)
        .set_user(Default::default())
        .set_args(None)
        .set_command_line(None)
        .set_env(None)
        .set_cwd(Default::default())
        .set_capabilities(None)
        .set_rlimits(None)
        .set_no_new_privileges(None)
        .set_apparmor_profile(None)
        .set_oom_score_adj(None)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);
    p
}

/// Go's zero `specs.Root`.
pub(crate) fn zero_root() -> oci_spec::runtime::Root {
    let mut r = oci_spec::runtime::Root::default();
    r.set_path(Default::default()).set_readonly(None);
    r
}

/// Go's zero `specs.Linux`.
pub(crate) fn zero_linux() -> oci_spec::runtime::Linux {
    let mut l = oci_spec::runtime::Linux::default();
    l.set_net_devices(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None)
        .set_sysctl(None)
        .set_resources(None)
        .set_cgroups_path(None)
        .set_namespaces(None)
        .set_devices(None)
        .set_seccomp(None)
        .set_rootfs_propagation(None)
        .set_masked_paths(None)
        .set_readonly_paths(None)
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_values_are_gos_not_runcs_example() {
        let from = |v: Value| v;
        assert_eq!(
            serde_json::to_value(zero_process()).unwrap(),
            from(serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": ""}))
        );
        assert_eq!(
            serde_json::to_value(zero_root()).unwrap(),
            serde_json::json!({"path": ""})
        );
        assert_eq!(
            serde_json::to_value(zero_linux()).unwrap(),
            serde_json::json!({})
        );
        let mut s = Spec::from_json(b"{}").unwrap();
        s.process();
        s.resources();
        assert_eq!(
            s.to_json().unwrap(),
            serde_json::json!({"ociVersion": "", "process": {"user": {"uid": 0, "gid": 0}, "cwd": ""}, "linux": {"resources": {}}})
        );
    }

    #[test]
    fn capabilities_keep_their_order_and_any_name() {
        let mut s = Spec::from_json(b"{}").unwrap();
        s.capabilities_mut().bounding = Some(vec!["CAP_KILL".into(), "CAP_CHOWN".into()]);
        s.capabilities_mut().effective = Some(vec!["CAP_NOT_A_CAP".into()]);
        s.capabilities_mut().permitted = Some(vec![]);
        let v = s.to_json().unwrap();
        assert_eq!(
            v["process"]["capabilities"],
            serde_json::json!({"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_NOT_A_CAP"]})
        );
        let back = Spec::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(back.to_json().unwrap(), v);
    }

    #[test]
    fn config_files_lose_go_zero_values_and_keep_the_rest() {
        let text = br#"{"ociVersion":"1.0.2","hostname":"","process":{"terminal":false,
            "user":{"uid":0,"gid":0},"args":["sh"],"env":[],"cwd":"/","noNewPrivileges":true,
            "capabilities":{"bounding":["CAP_KILL"],"ambient":[]}},
            "root":{"path":"rootfs","readonly":false},"mounts":[],
            "linux":{"namespaces":[{"type":"pid","path":""}],"cgroupsPath":"",
            "resources":{"devices":[{"allow":false,"access":"rwm"}],"cpu":{"shares":0}}}}"#;
        let spec = Spec::from_json(text).unwrap();
        assert_eq!(
            spec.to_json().unwrap(),
            serde_json::json!({
                "ociVersion": "1.0.2",
                "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
                    "noNewPrivileges": true, "capabilities": {"bounding": ["CAP_KILL"]}},
                "root": {"path": "rootfs"},
                "linux": {"namespaces": [{"type": "pid"}],
                    "resources": {"devices": [{"allow": false, "access": "rwm"}],
                        "cpu": {"shares": 0}}}
            })
        );
    }

    #[test]
    fn bad_config_files_say_why() {
        for text in [
            &b"{"[..],
            b"[]",
            b"{\"process\":{\"capabilities\":{\"bounding\":[1]}}}",
        ] {
            let e = Spec::from_json(text).unwrap_err().to_string();
            assert!(
                e.starts_with(
                    "decoding spec config file failed, current supported OCI runtime-spec : v1.0.2-dev: "
                ),
                "{e}"
            );
        }
    }
}
