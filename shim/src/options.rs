//! containerd's runc options (`containerd.runc.v1.Options`): read from the task's options Any
//! and kept in the bundle as `options.json`, the way containerd's runc shim keeps them, so that
//! `delete` finds the runc binary and root of a shim that is gone.

use std::io;
use std::path::Path;

use corral_protocols::runtime::v2::runc::options::oci::Options as OptionsProto;
use protobuf::well_known_types::any::Any;
use protobuf::Message;
use serde::{Deserialize, Serialize};

/// Type URL containerd writes for runc options.
pub const OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// The options, with the JSON names containerd's shim uses in `options.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuncOptions {
    #[serde(skip_serializing_if = "is_false")]
    pub no_pivot_root: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub no_new_keyring: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub shim_cgroup: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub io_uid: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub io_gid: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub binary_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub criu_path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub systemd_cgroup: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub criu_image_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub criu_work_path: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RuncOptions {
    /// Reads the options from an Any; an absent or empty Any means defaults. Another type is
    /// an error naming it.
    pub fn from_any(any: Option<&Any>) -> io::Result<Self> {
        let Some(any) = any else {
            return Ok(Self::default());
        };
        if any.type_url.is_empty() && any.value.is_empty() {
            return Ok(Self::default());
        }
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        if name != OPTIONS_TYPE_URL {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "runtime options of type {:?} are not runc options ({OPTIONS_TYPE_URL})",
                    any.type_url
                ),
            ));
        }
        let o = OptionsProto::parse_from_bytes(&any.value).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("decoding runc options: {e}"),
            )
        })?;
        Ok(Self {
            no_pivot_root: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            shim_cgroup: o.shim_cgroup,
            io_uid: o.io_uid,
            io_gid: o.io_gid,
            binary_name: o.binary_name,
            root: o.root,
            criu_path: o.criu_path,
            systemd_cgroup: o.systemd_cgroup,
            criu_image_path: o.criu_image_path,
            criu_work_path: o.criu_work_path,
        })
    }

    /// Reads options from raw bytes of an encoded Any (what `start` gets on stdin).
    pub fn from_any_bytes(bytes: &[u8]) -> io::Result<Self> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let any = Any::parse_from_bytes(bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("decoding the options on stdin: {e}"),
            )
        })?;
        Self::from_any(Some(&any))
    }

    /// The runc binary: `BinaryName` or `runc`.
    pub fn binary(&self) -> &str {
        if self.binary_name.is_empty() {
            "runc"
        } else {
            &self.binary_name
        }
    }

    /// Writes `options.json` and `runtime` into the bundle.
    pub fn write_to_bundle(&self, bundle: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        std::fs::write(bundle.join("options.json"), json)?;
        std::fs::write(bundle.join("runtime"), self.binary())
    }

    /// Reads `options.json` from the bundle; a missing file means defaults.
    pub fn read_from_bundle(bundle: &Path) -> io::Result<Self> {
        match std::fs::read(bundle.join("options.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", bundle.join("options.json").display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_snake_case_and_omits_defaults() {
        let o = RuncOptions {
            binary_name: "crun".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"binary_name":"crun","systemd_cgroup":true}"#
        );
        assert_eq!(
            serde_json::to_string(&RuncOptions::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn reads_the_any_containerd_sends() {
        let mut p = OptionsProto::new();
        p.binary_name = "crun".into();
        p.root = "/r".into();
        p.io_uid = 1000;
        let mut any = Any::new();
        any.type_url = OPTIONS_TYPE_URL.into();
        any.value = p.write_to_bytes().unwrap();
        let o = RuncOptions::from_any_bytes(&any.write_to_bytes().unwrap()).unwrap();
        assert_eq!(
            (o.binary(), o.root.as_str(), o.io_uid),
            ("crun", "/r", 1000)
        );
        any.type_url = "containerd.runhcs.v1.Options".into();
        assert!(RuncOptions::from_any(Some(&any)).is_err());
        assert_eq!(
            RuncOptions::from_any_bytes(&[]).unwrap(),
            RuncOptions::default()
        );
    }

    #[test]
    fn bundle_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            RuncOptions::read_from_bundle(dir.path()).unwrap(),
            RuncOptions::default()
        );
        let o = RuncOptions {
            root: "/x".into(),
            ..Default::default()
        };
        o.write_to_bundle(dir.path()).unwrap();
        assert_eq!(RuncOptions::read_from_bundle(dir.path()).unwrap(), o);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("runtime")).unwrap(),
            "runc"
        );
    }
}
