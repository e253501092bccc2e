//! Go's `omitempty` for a spec's JSON: the fields of containerd's vendored runtime-spec
//! structs (v1.0.2-dev) that Go leaves out when they hold their zero value (`""`, `false`,
//! `0`, an empty list or map), and `null`s, which Go writes for none of the fields a spec
//! uses. Pointer fields (`*int64` limits, `*LinuxCPU`, ...) keep a zero; they are not listed.
//!
//! oci-spec models many of those fields as `Option`s that serialize `Some(false)` or
//! `Some(vec![])`, and a hand-written config file may hold them too: [`strip`] removes them,
//! so the JSON is the one Go would write for the same spec.

use serde_json::{Map, Value};

/// The struct a JSON object holds, to know which of its fields are `omitempty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Spec,
    Process,
    User,
    Capabilities,
    Root,
    Mount,
    Hooks,
    Hook,
    Linux,
    Namespace,
    Resources,
    DeviceCgroup,
    Cpu,
    BlockIo,
    Network,
    Seccomp,
    Syscall,
    SeccompArg,
    IntelRdt,
    Personality,
}

/// How a field's value nests: one object, or a list of objects.
#[derive(Debug, Clone, Copy)]
enum Nest {
    None,
    Object(Kind),
    List(Kind),
}

/// One field: whether Go omits its zero value, and what it holds.
type Field = (&'static str, bool, Nest);

fn fields(kind: Kind) -> &'static [Field] {
    use Kind::*;
    match kind {
        Spec => &[
            ("hostname", true, Nest::None),
            ("mounts", true, Nest::List(Mount)),
            ("annotations", true, Nest::None),
            ("process", false, Nest::Object(Process)),
            ("root", false, Nest::Object(Root)),
            ("hooks", false, Nest::Object(Hooks)),
            ("linux", false, Nest::Object(Linux)),
        ],
        Process => &[
            ("terminal", true, Nest::None),
            ("args", true, Nest::None),
            ("commandLine", true, Nest::None),
            ("env", true, Nest::None),
            ("rlimits", true, Nest::None),
            ("noNewPrivileges", true, Nest::None),
            ("apparmorProfile", true, Nest::None),
            ("selinuxLabel", true, Nest::None),
            ("user", false, Nest::Object(User)),
            ("capabilities", false, Nest::Object(Capabilities)),
        ],
        User => &[
            ("additionalGids", true, Nest::None),
            ("username", true, Nest::None),
        ],
        Capabilities => &[
            ("bounding", true, Nest::None),
            ("effective", true, Nest::None),
            ("inheritable", true, Nest::None),
            ("permitted", true, Nest::None),
            ("ambient", true, Nest::None),
        ],
        Root => &[("readonly", true, Nest::None)],
        Mount => &[
            ("type", true, Nest::None),
            ("source", true, Nest::None),
            ("options", true, Nest::None),
        ],
        Hooks => &[
            ("prestart", true, Nest::List(Hook)),
            ("createRuntime", true, Nest::List(Hook)),
            ("createContainer", true, Nest::List(Hook)),
            ("startContainer", true, Nest::List(Hook)),
            ("poststart", true, Nest::List(Hook)),
            ("poststop", true, Nest::List(Hook)),
        ],
        Hook => &[("args", true, Nest::None), ("env", true, Nest::None)],
        Linux => &[
            ("uidMappings", true, Nest::None),
            ("gidMappings", true, Nest::None),
            ("sysctl", true, Nest::None),
            ("cgroupsPath", true, Nest::None),
            ("namespaces", true, Nest::List(Namespace)),
            ("devices", true, Nest::None),
            ("rootfsPropagation", true, Nest::None),
            ("maskedPaths", true, Nest::None),
            ("readonlyPaths", true, Nest::None),
            ("mountLabel", true, Nest::None),
            ("resources", false, Nest::Object(Resources)),
            ("seccomp", false, Nest::Object(Seccomp)),
            ("intelRdt", false, Nest::Object(IntelRdt)),
            ("personality", false, Nest::Object(Personality)),
        ],
        Namespace => &[("path", true, Nest::None)],
        Resources => &[
            ("devices", true, Nest::List(DeviceCgroup)),
            ("hugepageLimits", true, Nest::None),
            ("rdma", true, Nest::None),
            ("unified", true, Nest::None),
            ("cpu", false, Nest::Object(Cpu)),
            ("blockIO", false, Nest::Object(BlockIo)),
            ("network", false, Nest::Object(Network)),
        ],
        DeviceCgroup => &[("type", true, Nest::None), ("access", true, Nest::None)],
        Cpu => &[("cpus", true, Nest::None), ("mems", true, Nest::None)],
        BlockIo => &[
            ("weightDevice", true, Nest::None),
            ("throttleReadBpsDevice", true, Nest::None),
            ("throttleWriteBpsDevice", true, Nest::None),
            ("throttleReadIOPSDevice", true, Nest::None),
            ("throttleWriteIOPSDevice", true, Nest::None),
        ],
        Network => &[("priorities", true, Nest::None)],
        Seccomp => &[
            ("architectures", true, Nest::None),
            ("flags", true, Nest::None),
            ("listenerPath", true, Nest::None),
            ("listenerMetadata", true, Nest::None),
            ("syscalls", true, Nest::List(Syscall)),
        ],
        Syscall => &[("args", true, Nest::List(SeccompArg))],
        SeccompArg => &[("valueTwo", true, Nest::None)],
        IntelRdt => &[
            ("closID", true, Nest::None),
            ("l3CacheSchema", true, Nest::None),
            ("memBwSchema", true, Nest::None),
        ],
        Personality => &[("flags", true, Nest::None)],
    }
}

/// True for the values Go's `omitempty` leaves out.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Removes, throughout a spec's JSON, the fields Go would not write.
pub fn strip(spec: &mut Value) {
    strip_kind(spec, Kind::Spec);
}

fn strip_kind(v: &mut Value, kind: Kind) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    obj.retain(|_, value| !value.is_null());
    for (name, omitempty, nest) in fields(kind) {
        strip_field(obj, name, *omitempty, *nest);
    }
}

fn strip_field(obj: &mut Map<String, Value>, name: &str, omitempty: bool, nest: Nest) {
    let Some(value) = obj.get_mut(name) else {
        return;
    };
    match nest {
        Nest::None => {}
        Nest::Object(kind) => strip_kind(value, kind),
        Nest::List(kind) => {
            if let Some(items) = value.as_array_mut() {
                for item in items {
                    strip_kind(item, kind);
                }
            }
        }
    }
    if omitempty && is_zero(value) {
        obj.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zero_values_of_omitempty_fields_go_and_pointers_stay() {
        let mut v = json!({
            "ociVersion": "",
            "hostname": "",
            "annotations": {},
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0, "additionalGids": []},
                "cwd": "", "oomScoreAdj": 0, "capabilities": {"bounding": []}},
            "root": {"path": "", "readonly": false},
            "mounts": [{"destination": "/x", "type": "", "source": "", "options": []}],
            "linux": {
                "resources": {"devices": [{"allow": false, "type": "", "access": null}],
                    "memory": {"limit": 0}, "cpu": {"shares": 0, "cpus": ""}, "pids": {"limit": 0}},
                "namespaces": [{"type": "pid", "path": ""}],
                "seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]}
            }
        });
        strip(&mut v);
        assert_eq!(
            v,
            json!({
                "ociVersion": "",
                "process": {"user": {"uid": 0, "gid": 0}, "cwd": "", "oomScoreAdj": 0,
                    "capabilities": {}},
                "root": {"path": ""},
                "mounts": [{"destination": "/x"}],
                "linux": {
                    "resources": {"devices": [{"allow": false}], "memory": {"limit": 0},
                        "cpu": {"shares": 0}, "pids": {"limit": 0}},
                    "namespaces": [{"type": "pid"}],
                    "seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}
                }
            })
        );
    }
}
