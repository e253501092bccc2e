//! An image's runtime configuration (the `config` of an OCI image config, `v1.ImageConfig`)
//! and containerd 1.6's `oci.WithImageConfig`, which makes it the container's process:
//! environment merged under the spec's own variables, entrypoint and command, working
//! directory, and the user resolved in the image's `/etc/passwd` and `/etc/group`.
//!
//! The document is read as Go's `encoding/json` reads it into `v1.Image`: field names match
//! case-insensitively (an exact match first), `null` is a zero value, and a value of the
//! wrong type fails with Go's wording.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::defaults::DEFAULT_PATH_ENV;
use super::opts::replace_or_append_env;
use super::user::UserRoot;
use super::{Spec, SpecError};

/// The parts of an image's runtime configuration a container is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `User`: `user`, `uid`, `user:group`, ... (empty: root).
    pub user: String,
    /// `Env`: `NAME=value` entries (empty: the default `PATH` only).
    pub env: Vec<String>,
    /// `Entrypoint`: what runs, before the command.
    pub entrypoint: Vec<String>,
    /// `Cmd`: the default command, or the entrypoint's default arguments.
    pub cmd: Vec<String>,
    /// `WorkingDir` (empty: `/`).
    pub working_dir: String,
    /// `Labels`: metadata the container record inherits.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`: the signal that stops the container (empty: the caller's default).
    pub stop_signal: String,
}

impl ImageConfig {
    /// Reads the `config` of the image config document `data` (`json.Unmarshal` into
    /// `v1.Image`).
    pub fn from_image_json(data: &[u8]) -> Result<ImageConfig, SpecError> {
        let doc: Value = serde_json::from_slice(data)
            .map_err(|e| SpecError::Unknown(format!("decoding the image config: {e}")))?;
        let image = match &doc {
            Value::Object(o) => o,
            Value::Null => return Ok(ImageConfig::default()),
            other => return Err(type_error(other, "Go value", "v1.Image")),
        };
        let config = match field(image, "config") {
            None | Some(Value::Null) => return Ok(ImageConfig::default()),
            Some(Value::Object(o)) => o,
            Some(other) => {
                return Err(type_error(
                    other,
                    "Go struct field Image.config",
                    "v1.ImageConfig",
                ))
            }
        };
        Ok(ImageConfig {
            user: string_field(config, "User")?,
            env: strings_field(config, "Env")?,
            entrypoint: strings_field(config, "Entrypoint")?,
            cmd: strings_field(config, "Cmd")?,
            working_dir: string_field(config, "WorkingDir")?,
            labels: labels_field(config, "Labels")?,
            stop_signal: string_field(config, "StopSignal")?,
        })
    }
}

/// The value of the field `name` as Go finds it: the key spelled exactly so, else the first
/// key equal to it ignoring case.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The JSON type of `v` as Go's decoder names it in errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `*json.UnmarshalTypeError` message.
fn type_error(v: &Value, into: &str, go_type: &str) -> SpecError {
    SpecError::Unknown(format!(
        "json: cannot unmarshal {} into {into} of type {go_type}",
        json_type(v)
    ))
}

fn config_field_error(v: &Value, name: &str, go_type: &str) -> SpecError {
    type_error(
        v,
        &format!("Go struct field ImageConfig.config.{name}"),
        go_type,
    )
}

fn string_field(config: &Map<String, Value>, name: &str) -> Result<String, SpecError> {
    match field(config, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(config_field_error(other, name, "string")),
    }
}

fn strings_field(config: &Map<String, Value>, name: &str) -> Result<Vec<String>, SpecError> {
    match field(config, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::Null => Ok(String::new()),
                Value::String(s) => Ok(s.clone()),
                other => Err(config_field_error(other, name, "string")),
            })
            .collect(),
        Some(other) => Err(config_field_error(other, name, "[]string")),
    }
}

fn labels_field(
    config: &Map<String, Value>,
    name: &str,
) -> Result<BTreeMap<String, String>, SpecError> {
    match field(config, name) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::Null => Ok((k.clone(), String::new())),
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(config_field_error(other, name, "string")),
            })
            .collect(),
        Some(other) => Err(config_field_error(other, name, "map[string]string")),
    }
}

impl Spec {
    /// containerd's `WithImageConfig` for a Linux spec: the image's environment with the
    /// spec's variables merged over it, the entrypoint followed by the command, the working
    /// directory (`/` when the image has none), and the image's user (with its additional
    /// groups) resolved in `root`, or root's additional groups when the image names no user.
    pub fn with_image_config(
        &mut self,
        config: &ImageConfig,
        root: UserRoot,
    ) -> Result<(), SpecError> {
        self.process();
        if self.oci.linux().is_none() {
            return Err(SpecError::Unknown(
                "spec does not contain Linux or Windows section".into(),
            ));
        }
        let defaults = if config.env.is_empty() {
            vec![DEFAULT_PATH_ENV.to_string()]
        } else {
            config.env.clone()
        };
        let process = self.process();
        let current = process.env().clone().unwrap_or_default();
        process.set_env(Some(replace_or_append_env(&defaults, &current)));
        let mut args = config.entrypoint.clone();
        args.extend(config.cmd.iter().cloned());
        process.set_args((!args.is_empty()).then_some(args));
        let cwd = if config.working_dir.is_empty() {
            "/"
        } else {
            config.working_dir.as_str()
        };
        process.set_cwd(cwd.into());
        if config.user.is_empty() {
            // The image's /etc/group is read even without a user, for root's groups.
            return self.with_additional_gids("root", root);
        }
        self.with_user(&config.user, root)?;
        let uid = self.process().user().uid();
        self.with_additional_gids(&uid.to_string(), root)
    }
}

#[cfg(test)]
mod tests {
    use super::super::user::test_rootfs;
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn rootfs() -> tempfile::TempDir {
        test_rootfs(
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/srv:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
            "root:x:0:\nwheel:x:10:root,web\nweb:x:1001:\naudio:x:29:web\nnogroup:x:65534:\n",
        )
    }

    fn config(doc: Value) -> ImageConfig {
        ImageConfig::from_image_json(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    /// The process a default spec with `env` (as --env sets it) gets from `doc`'s config.
    fn process(doc: Value, env: &[&str], root: &Path) -> Result<Value, SpecError> {
        let mut spec = Spec::default_unix("ns", "id").unwrap();
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        spec.with_env(&env);
        spec.with_image_config(&config(doc), UserRoot::Dir(root))?;
        Ok(spec.to_json().unwrap()["process"].clone())
    }

    #[test]
    fn documents_read_as_go_reads_them() {
        let c = config(json!({
            "architecture": "amd64",
            "config": {
                "user": "web", "ENV": ["A=1", null], "Entrypoint": ["/e"], "Cmd": null,
                "workingdir": "/w", "Labels": {"a": "1", "b": null}, "StopSignal": "SIGQUIT",
                "ExposedPorts": {"80/tcp": {}}
            }
        }));
        assert_eq!(
            c,
            ImageConfig {
                user: "web".into(),
                env: vec!["A=1".into(), "".into()],
                entrypoint: vec!["/e".into()],
                cmd: vec![],
                working_dir: "/w".into(),
                labels: [("a".into(), "1".into()), ("b".into(), "".into())].into(),
                stop_signal: "SIGQUIT".into(),
            }
        );
        // The exact spelling wins over another case.
        assert_eq!(
            config(json!({"config": {"user": "a", "User": "b"}})).user,
            "b"
        );
        assert_eq!(config(json!({})), ImageConfig::default());
        assert_eq!(config(json!({"config": null})), ImageConfig::default());
        for (doc, want) in [
            (
                json!({"config": {"Env": "A=1"}}),
                "json: cannot unmarshal string into Go struct field ImageConfig.config.Env of type []string",
            ),
            (
                json!({"config": {"Cmd": ["sh", 1]}}),
                "json: cannot unmarshal number into Go struct field ImageConfig.config.Cmd of type string",
            ),
            (
                json!({"config": {"User": 0}}),
                "json: cannot unmarshal number into Go struct field ImageConfig.config.User of type string",
            ),
            (
                json!({"config": {"Labels": ["a"]}}),
                "json: cannot unmarshal array into Go struct field ImageConfig.config.Labels of type map[string]string",
            ),
            (
                json!({"config": "x"}),
                "json: cannot unmarshal string into Go struct field Image.config of type v1.ImageConfig",
            ),
            (
                json!([]),
                "json: cannot unmarshal array into Go value of type v1.Image",
            ),
        ] {
            let e = ImageConfig::from_image_json(&serde_json::to_vec(&doc).unwrap()).unwrap_err();
            assert_eq!(e.to_string(), want, "{doc}");
        }
        assert!(ImageConfig::from_image_json(b"{").is_err());
    }

    #[test]
    fn env_merges_the_specs_variables_over_the_images() {
        let root = rootfs();
        let doc = json!({"config": {"Env": ["PATH=/bin", "A=image", "B=image"]}});
        let p = process(doc.clone(), &[], root.path()).unwrap();
        assert_eq!(p["env"], json!(["PATH=/bin", "A=image", "B=image"]));
        // Set and append, the spec's own after the image's. A bare `B` unsets nothing: `WithEnv`
        // already dropped it from the spec's empty environment before the image's came in.
        let p = process(doc, &["A=flag", "B", "C=new", "D"], root.path()).unwrap();
        assert_eq!(p["env"], json!(["PATH=/bin", "A=flag", "B=image", "C=new"]));
        // No image environment: the default PATH.
        let p = process(json!({"config": {}}), &["X=1"], root.path()).unwrap();
        assert_eq!(p["env"], json!([DEFAULT_PATH_ENV, "X=1"]));
    }

    #[test]
    fn entrypoint_and_cmd_make_the_args() {
        let root = rootfs();
        let args = |config: Value| process(json!({ "config": config }), &[], root.path());
        assert_eq!(
            args(json!({"Entrypoint": ["/e", "-x"], "Cmd": ["a", "b"]})).unwrap()["args"],
            json!(["/e", "-x", "a", "b"])
        );
        assert_eq!(
            args(json!({"Entrypoint": ["/e"]})).unwrap()["args"],
            json!(["/e"])
        );
        assert_eq!(args(json!({"Cmd": ["sh"]})).unwrap()["args"], json!(["sh"]));
        let p = args(json!({})).unwrap();
        assert!(p.get("args").is_none(), "{p}");
        assert_eq!(p["cwd"], "/");
        assert_eq!(args(json!({"WorkingDir": "/srv"})).unwrap()["cwd"], "/srv");
    }

    #[test]
    fn users_resolve_in_the_images_files() {
        let root = rootfs();
        let user = |u: &str| {
            process(json!({"config": {"User": u}}), &[], root.path()).map(|p| p["user"].clone())
        };
        // No user: root, with root's supplementary groups.
        assert_eq!(
            user("").unwrap(),
            json!({"uid": 0, "gid": 0, "additionalGids": [0, 10]})
        );
        assert_eq!(
            user("web").unwrap(),
            json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 10, 29]})
        );
        assert_eq!(
            user("1000").unwrap(),
            json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 10, 29]})
        );
        assert_eq!(
            user("web:wheel").unwrap(),
            json!({"uid": 1000, "gid": 10, "additionalGids": [10, 29]})
        );
        assert_eq!(
            user("nobody").unwrap(),
            json!({"uid": 65534, "gid": 65534, "additionalGids": [65534]})
        );
        // Unknown numeric ids need no entry.
        assert_eq!(
            user("4242").unwrap(),
            json!({"uid": 4242, "gid": 0, "additionalGids": [0]})
        );
        assert_eq!(
            user("7:8").unwrap(),
            json!({"uid": 7, "gid": 8, "additionalGids": [8]})
        );
        assert_eq!(user("ghost").unwrap_err().to_string(), "no users found");
        assert_eq!(user("web:nope").unwrap_err().to_string(), "no groups found");
    }

    #[test]
    fn lookups_in_a_temp_mount_name_it() {
        let root = rootfs();
        let mut spec = Spec::default_unix("ns", "id").unwrap();
        let c = config(json!({"config": {"User": "ghost"}}));
        let e = spec
            .with_image_config(&c, UserRoot::TempMount(root.path()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "mount callback failed on {}: no users found",
                root.path().display()
            )
        );
        assert!(matches!(e, SpecError::NotFound(_)));
        // A malformed user string is refused before any lookup, so nothing is named.
        let e = spec
            .with_user("a:b:c", UserRoot::TempMount(root.path()))
            .unwrap_err();
        assert_eq!(e.to_string(), "invalid USER value a:b:c");
        // A temporary mount need not be absolute to be looked in; a directory must be.
        let e = spec
            .with_user("web", UserRoot::Dir(Path::new("rel")))
            .unwrap_err();
        assert_eq!(e.to_string(), "rootfs absolute path is required");
    }

    #[test]
    fn a_spec_without_linux_is_refused() {
        let mut spec = Spec::from_json(b"{}").unwrap();
        let root = rootfs();
        let e = spec
            .with_image_config(&ImageConfig::default(), UserRoot::Dir(root.path()))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec does not contain Linux or Windows section"
        );
    }
}
