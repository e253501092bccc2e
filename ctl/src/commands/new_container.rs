//! ctr's `run.NewContainer` (cmd/ctr/commands/run/run_unix.go, containerd 1.6.20): the
//! container record that `containers create` (and later `run`) sends to corrald, built from
//! [`ContainerFlags`] with the spec options ctr applies, in ctr's order.

use std::collections::BTreeMap;
use std::path::Path;

use corral_protocols::rpc::Code;
use corral_protocols::runtime::v2::runc::options::oci::Options as RuncOptions;
use corral_protocols::services::containers::v1::containers::{container, Container};
use corral_protocols::services::images::v1::images::GetImageRequest;
use corral_protocols::services::images::v1::images_rpc::ImagesClient;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;

use super::container_flags::{ContainerFlags, Target, RUNC_RUNTIMES};
use super::{parse_labels, status_message, CtlError, CtlResult, Env};
use crate::spec::{paths, Spec, SpecError, SPEC_TYPE_URL};

/// The type URL of containerd's `runtimeoptions.v1.Options` (a runtime's config file path).
pub const RUNTIME_OPTIONS_TYPE_URL: &str = "runtimeoptions.v1.Options";

/// `cpu-shares` when the flag is not given: ctr's `containers create` has no such flag and
/// sets none; `run` defaults it to 1024.
pub const CREATE_CPU_SHARES: i64 = 0;

/// Builds the record for `target` as ctr would, looking the image up through corrald when
/// there is one. `cpu_shares` applies when `--cpu-shares` is not given.
pub fn container_record(
    env: &Env,
    flags: &ContainerFlags,
    target: &Target,
    cpu_shares: i64,
) -> CtlResult<Container> {
    flags.check_supported()?;
    let labels = parse_labels(&flags.labels);
    let mut spec = match target {
        Target::Config { .. } => {
            let path = flags.config.as_deref().unwrap_or_default();
            let bytes = std::fs::read(path).map_err(|e| {
                SpecError::io("open", Path::new(path), &e).context("cannot load spec config file")
            })?;
            Spec::from_json(&bytes)?
        }
        Target::Reference {
            reference,
            id,
            args,
            ..
        } => {
            if !flags.rootfs {
                return Err(image_unavailable(env, reference));
            }
            let rootfs = paths::abs(reference)?;
            rootfs_spec(&env.namespace, id, &rootfs, args, flags, cpu_shares)?
        }
    };
    let runtime_options = runtime_options(flags)?;
    spec.with_annotations(&labels);
    let value = spec.to_vec()?;
    Ok(Container {
        id: target.id().to_string(),
        labels: labels.into_iter().collect(),
        runtime: MessageField::some(container::Runtime {
            name: flags.runtime.clone(),
            options: runtime_options.into(),
            ..Default::default()
        }),
        spec: MessageField::some(Any {
            type_url: SPEC_TYPE_URL.to_string(),
            value,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What to say for an image reference: corrald does not make containers from images yet.
fn image_unavailable(env: &Env, reference: &str) -> CtlError {
    let client = match env.connect() {
        Ok(c) => ImagesClient::new(c),
        Err(e) => return e,
    };
    let req = GetImageRequest {
        name: reference.to_string(),
        ..Default::default()
    };
    match client.get(&env.ctx, &req) {
        Err(s) if s.code() == Code::UNIMPLEMENTED => CtlError::new(format!(
            "image {reference:?}: corrald does not serve images yet; use --rootfs DIR or --config FILE"
        )),
        Err(s) => CtlError::new(status_message(&s)),
        Ok(_) => CtlError::new(format!(
            "image {reference:?}: containers from images are not supported yet; use --rootfs DIR or --config FILE"
        )),
    }
}

/// ctr's spec for a container on the root filesystem directory `rootfs` (absolute): the
/// default Unix spec, then each flag's option in ctr's order (`--user` and `--hostname`
/// where ctr 1.7 applies them). `cpu_shares` applies when `--cpu-shares` is not given.
pub fn rootfs_spec(
    namespace: &str,
    id: &str,
    rootfs: &str,
    args: &[String],
    flags: &ContainerFlags,
    cpu_shares: i64,
) -> Result<Spec, SpecError> {
    let invalid = |m: &str| SpecError::InvalidArgument(m.to_string());
    let mut spec = Spec::default_unix(namespace, id)?;
    spec.with_default_unix_devices();
    if let Some(file) = flags.env_file.as_deref().filter(|f| !f.is_empty()) {
        spec.with_env_file(Path::new(file))?;
    }
    spec.with_env(&flags.env);
    let mounts = flags
        .mounts
        .iter()
        .map(|m| crate::spec::mounts::parse_mount_flag(m))
        .collect::<Result<Vec<_>, _>>()?;
    spec.with_mounts(mounts);
    spec.with_rootfs_path(rootfs);
    if flags.read_only {
        spec.with_rootfs_readonly();
    }
    if !args.is_empty() {
        spec.with_process_args(args);
    }
    if let Some(cwd) = flags.cwd.as_deref().filter(|c| !c.is_empty()) {
        spec.with_process_cwd(cwd);
    }
    if let Some(user) = flags.user.as_deref().filter(|u| !u.is_empty()) {
        spec.with_user(user, Path::new(rootfs))?;
        spec.with_additional_gids(user, Path::new(rootfs))?;
    }
    if flags.tty {
        spec.with_tty();
    }
    if flags.privileged {
        spec.with_privileged()?;
        spec.with_all_devices_allowed();
        spec.with_host_devices()?;
    }
    if flags.net_host {
        let hostname = host_name()?;
        spec.with_host_namespace(LinuxNamespaceType::Network);
        spec.with_host_hosts_file();
        spec.with_host_resolvconf();
        spec.with_env(&[format!("HOSTNAME={hostname}")]);
    }
    if !flags.annotations.is_empty() {
        let mut annotations = BTreeMap::new();
        for a in &flags.annotations {
            let (k, v) = a.split_once('=').ok_or_else(|| {
                SpecError::InvalidArgument(format!("invalid key=value format annotation: {a}"))
            })?;
            annotations.insert(k.to_string(), v.to_string());
        }
        spec.with_annotations(&annotations);
    }
    for (caps, add) in [(&flags.cap_add, true), (&flags.cap_drop, false)] {
        if caps.is_empty() {
            continue;
        }
        if caps.iter().any(|c| !c.starts_with("CAP_")) {
            return Err(invalid("capabilities must be specified with 'CAP_' prefix"));
        }
        if add {
            spec.with_added_capabilities(caps);
        } else {
            spec.with_dropped_capabilities(caps);
        }
    }
    let profile = flags.seccomp_profile.as_deref().filter(|p| !p.is_empty());
    if !flags.seccomp && profile.is_some() {
        return Err(invalid(
            "seccomp must be set to true, if using a custom seccomp-profile",
        ));
    }
    if let (true, Some(profile)) = (flags.seccomp, profile) {
        spec.with_seccomp_profile(Path::new(profile))?;
    }
    if flags.cpus > 0.0 {
        spec.with_cpu_cfs((flags.cpus * 100_000.0) as i64, 100_000);
    }
    let shares = flags.cpu_shares.unwrap_or(cpu_shares);
    if shares > 0 {
        spec.with_cpu_shares(shares as u64);
    }
    if flags.cpu_quota != -1 || flags.cpu_period != 0 {
        if flags.cpus > 0.0 {
            return Err(invalid("cpus and quota/period should be used separately"));
        }
        spec.with_cpu_cfs(flags.cpu_quota, flags.cpu_period);
    }
    for ns in &flags.with_ns {
        spec.with_linux_namespace(join_namespace(ns)?);
    }
    if flags.allow_new_privs {
        spec.with_new_privileges();
    }
    if let Some(cgroup) = &flags.cgroup {
        spec.with_cgroup(cgroup);
    }
    if flags.memory_limit != 0 {
        spec.with_memory_limit(flags.memory_limit);
    }
    for dev in &flags.devices {
        spec.with_devices(Path::new(dev), "rwm")?;
    }
    if let Some(p) = flags
        .rootfs_propagation
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        spec.with_rootfs_propagation(p);
    }
    if let Some(name) = flags.hostname.as_deref().filter(|h| !h.is_empty()) {
        spec.with_hostname(name);
    }
    Ok(spec)
}

/// One `--with-ns` value, `nstype:path`.
fn join_namespace(value: &str) -> Result<LinuxNamespace, SpecError> {
    let parts: Vec<&str> = value.split(':').collect();
    let [typ, path] = parts.as_slice() else {
        return Err(SpecError::InvalidArgument(
            "joining a Linux namespace using --with-ns requires the format 'nstype:path'".into(),
        ));
    };
    let valid = ["pid", "network", "uts", "mount", "user", "ipc", "cgroup"];
    let parsed: Option<LinuxNamespaceType> = valid
        .contains(typ)
        .then(|| serde_json::from_value(serde_json::Value::from(*typ)).ok())
        .flatten();
    let Some(typ) = parsed else {
        return Err(SpecError::InvalidArgument(format!(
            "the Linux namespace type specified in --with-ns is not valid: {typ}"
        )));
    };
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ)
        .set_path((!path.is_empty()).then(|| path.into()));
    Ok(ns)
}

/// Go's `os.Hostname` on Linux: the kernel's host name.
fn host_name() -> Result<String, SpecError> {
    let path = Path::new("/proc/sys/kernel/hostname");
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::io("open", path, &e).context("get hostname"))?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// ctr's `getRuntimeOptions`: runc's options for runc-compatible runtimes (Corral's shim
/// included), the config path for others that are given one, else none.
pub fn runtime_options(flags: &ContainerFlags) -> CtlResult<Option<Any>> {
    let runc_like = RUNC_RUNTIMES.contains(&flags.runtime.as_str());
    if (flags.runc_binary.is_some() || flags.runc_systemd_cgroup || flags.runc_root.is_some())
        && !runc_like
    {
        return Err(CtlError::new(format!(
            "specifying runc-binary, runc-root and runc-systemd-cgroup is only supported for the {} runtimes",
            RUNC_RUNTIMES
                .iter()
                .map(|r| format!("{r:?}"))
                .collect::<Vec<_>>()
                .join(" and ")
        )));
    }
    let pack_failed = |e: protobuf::Error| CtlError::new(format!("encoding runtime options: {e}"));
    if runc_like {
        let mut opts = RuncOptions::new();
        if let Some(binary) = flags.runc_binary.as_deref().filter(|b| !b.is_empty()) {
            opts.binary_name = binary.to_string();
        }
        if flags.runc_systemd_cgroup {
            if flags.cgroup.as_deref().unwrap_or_default().is_empty() {
                return Err(CtlError::new(
                    "option --runc-systemd-cgroup requires --cgroup to be set, e.g. \"machine.slice:foo:deadbeef\"",
                ));
            }
            opts.systemd_cgroup = true;
        }
        if let Some(root) = flags.runc_root.as_deref().filter(|r| !r.is_empty()) {
            opts.root = root.to_string();
        }
        return corral_protocols::pack(&opts).map(Some).map_err(pack_failed);
    }
    match flags
        .runtime_config_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        Some(path) => Ok(Some(Any {
            type_url: RUNTIME_OPTIONS_TYPE_URL.to_string(),
            value: runtime_config_path_options(path),
            ..Default::default()
        })),
        None => Ok(None),
    }
}

/// The encoding of `runtimeoptions.v1.Options { config_path }` (field 2, a string); the
/// message is not among the vendored protos, and this is its only use.
fn runtime_config_path_options(path: &str) -> Vec<u8> {
    let mut out = vec![0x12];
    let mut len = path.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(path.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        flags: ContainerFlags,
    }

    fn flags(args: &[&str]) -> ContainerFlags {
        Flags::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .unwrap()
            .flags
    }

    fn spec(args: &[&str]) -> Result<serde_json::Value, SpecError> {
        rootfs_spec("ns", "c1", "/r", &[], &flags(args), CREATE_CPU_SHARES)
            .map(|s| s.to_json().unwrap())
    }

    #[test]
    fn no_flags_is_ctrs_default_spec() {
        let v = spec(&[]).unwrap();
        assert_eq!(v["root"], json!({"path": "/r"}));
        assert_eq!(
            v["linux"]["resources"]["devices"].as_array().unwrap().len(),
            10
        );
        assert!(v["linux"]["resources"].get("cpu").is_none());
        assert_eq!(v["linux"]["cgroupsPath"], "/ns/c1");
    }

    #[test]
    fn flags_apply_in_ctrs_order() {
        let v = spec(&[
            "--env",
            "A=1",
            "--cwd",
            "/w",
            "-t",
            "--hostname",
            "h",
            "--read-only",
            "--cpus",
            "1.5",
            "--cpu-shares",
            "512",
            "--memory-limit",
            "1048576",
            "--annotation",
            "a=b",
            "--with-ns",
            "pid:/proc/1/ns/pid",
            "--cgroup",
            "/x",
            "--rootfs-propagation",
            "shared",
            "--allow-new-privs",
        ])
        .unwrap();
        assert_eq!(v["process"]["env"], json!(["A=1", "TERM=xterm"]));
        assert_eq!(v["process"]["cwd"], "/w");
        assert_eq!(v["process"]["terminal"], true);
        assert!(v["process"].get("noNewPrivileges").is_none());
        assert_eq!(v["hostname"], "h");
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(
            v["linux"]["resources"]["cpu"],
            json!({"shares": 512, "quota": 150000, "period": 100000})
        );
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 1048576);
        assert_eq!(v["annotations"], json!({"a": "b"}));
        assert_eq!(
            v["linux"]["namespaces"][0],
            json!({"type": "pid", "path": "/proc/1/ns/pid"})
        );
        assert_eq!(v["linux"]["cgroupsPath"], "/x");
        assert_eq!(v["linux"]["rootfsPropagation"], "shared");
    }

    #[test]
    fn bad_values_say_what_ctr_says() {
        for (args, want) in [
            (
                &["--cap-add", "SYS_ADMIN"][..],
                "capabilities must be specified with 'CAP_' prefix",
            ),
            (
                &["--annotation", "x"],
                "invalid key=value format annotation: x",
            ),
            (
                &["--cpus", "1", "--cpu-quota", "5"],
                "cpus and quota/period should be used separately",
            ),
            (
                &["--with-ns", "pid"],
                "joining a Linux namespace using --with-ns requires the format 'nstype:path'",
            ),
            (
                &["--with-ns", "time:/x"],
                "the Linux namespace type specified in --with-ns is not valid: time",
            ),
            (
                &["--seccomp-profile", "/p"],
                "seccomp must be set to true, if using a custom seccomp-profile",
            ),
            (
                &["--mount", "src=/a,bogus=1"],
                "mount option \"bogus\" not supported",
            ),
        ] {
            assert_eq!(spec(args).unwrap_err().to_string(), want, "{args:?}");
        }
    }

    #[test]
    fn runtime_options_follow_the_runtime() {
        let any = runtime_options(&flags(&[])).unwrap().unwrap();
        assert_eq!(any.type_url, "containerd.runc.v1.Options");
        assert!(any.value.is_empty());
        let any = runtime_options(&flags(&["--runc-binary", "crun"]))
            .unwrap()
            .unwrap();
        let opts = <RuncOptions as protobuf::Message>::parse_from_bytes(&any.value).unwrap();
        assert_eq!(opts.binary_name, "crun");
        assert!(runtime_options(&flags(&["--runtime", "io.x.v1"]))
            .unwrap()
            .is_none());
        let any = runtime_options(&flags(&[
            "--runtime",
            "io.x.v1",
            "--runtime-config-path",
            "/c",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(any.value, b"\x12\x02/c");
        assert!(
            runtime_options(&flags(&["--runtime", "io.x.v1", "--runc-binary", "crun"])).is_err()
        );
        assert_eq!(
            runtime_options(&flags(&["--runc-systemd-cgroup"])).unwrap_err().to_string(),
            "option --runc-systemd-cgroup requires --cgroup to be set, e.g. \"machine.slice:foo:deadbeef\""
        );
    }
}
