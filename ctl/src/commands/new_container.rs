//! ctr's `run.NewContainer` (cmd/ctr/commands/run/run_unix.go, containerd 1.6.20) and the
//! client's `NewContainer`: the container `containers create` (and `run`) makes from
//! [`ContainerFlags`], its spec built with the options ctr applies, in ctr's order, and
//! created in corrald. A container from an image gets its snapshot here too
//! ([`from_image`]).

mod from_image;

use std::collections::BTreeMap;
use std::path::Path;

use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::runtime::v2::runc::options::oci::Options as RuncOptions;
use corral_protocols::services::containers::v1::containers::{
    container, Container, CreateContainerRequest,
};
use corral_protocols::services::containers::v1::containers_rpc::ContainersClient;
use corral_protocols::types::mount::Mount;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;

use super::background::Background;
use super::container_flags::{ContainerFlags, Target, RUNC_RUNTIMES};
use super::{parse_labels, CtlError, CtlResult, Env};
use crate::image::lease::TempLease;
use crate::spec::image_config::ImageConfig;
use crate::spec::user::UserRoot;
use crate::spec::{paths, Spec, SpecError, SPEC_TYPE_URL};

/// The type URL of containerd's `runtimeoptions.v1.Options` (a runtime's config file path).
pub const RUNTIME_OPTIONS_TYPE_URL: &str = "runtimeoptions.v1.Options";

/// `cpu-shares` when the flag is not given: ctr's `containers create` has no such flag and
/// sets none; `run` defaults it to 1024.
pub const CREATE_CPU_SHARES: i64 = 0;

/// Creates the container `target` names, as ctr's `NewContainer` does, and returns the
/// record corrald stored; `cpu_shares` applies when `--cpu-shares` is not given.
///
/// With `--config` the spec comes from the file; with `--rootfs` the spec's root is the
/// directory. Otherwise the reference names an image: it is unpacked for the snapshotter if
/// it is not yet, and the container gets a new snapshot keyed by its id on the image's
/// chain ID, prepared under a temporary lease and removed again if anything after it fails
/// (see [`from_image`]). The record is created here because that snapshot is only safe from
/// the garbage collector once the record refers to it: callers must not create it again.
pub fn container_record(
    env: &Env,
    flags: &ContainerFlags,
    target: &Target,
    cpu_shares: i64,
) -> CtlResult<Created> {
    flags.check_supported()?;
    let client = env.connect()?;
    let labels = parse_labels(&flags.labels);
    let (id, spec, runtime) = match target {
        Target::Config { id } => {
            let runtime = runtime_options(flags)?;
            let path = flags.config.as_deref().unwrap_or_default();
            let bytes = std::fs::read(path).map_err(|e| {
                SpecError::io("open", Path::new(path), &e).context("cannot load spec config file")
            })?;
            (id, Spec::from_json(&bytes)?, runtime)
        }
        Target::Reference {
            reference,
            id,
            args,
        } => {
            if !flags.rootfs {
                return from_image::new_container(
                    &client, env, flags, reference, id, args, cpu_shares,
                );
            }
            let rootfs = paths::abs(reference)?;
            let checked = SpecFlags::check(flags)?;
            let runtime = runtime_options(flags)?;
            let root = SpecRoot::Dir(&rootfs);
            let spec = new_spec(&env.namespace, id, &root, args, &checked, cpu_shares)?;
            (id, spec, runtime)
        }
    };
    let record = new_record(id, labels, flags, runtime, spec)?;
    Ok(Created {
        record: create(&client, &env.ctx, record)?,
        rootfs: None,
        lease: None,
    })
}

/// A container just created.
#[derive(Debug)]
pub struct Created {
    /// Its record, as corrald stored it.
    pub record: Container,
    /// The mounts of the snapshot made for it, when one was: its task's root filesystem,
    /// with no `Snapshots.Mounts` call.
    pub rootfs: Option<Vec<Mount>>,
    /// The temporary lease the snapshot was made under. The record holds the snapshot now,
    /// so the lease can go; dropped, it is deleted at once (with a synchronous collection).
    pub lease: Option<TempLease>,
}

impl Created {
    /// Deletes the temporary lease, as containerd's client does once its work is done.
    pub fn release_lease(&mut self) {
        if let Some(lease) = self.lease.take() {
            from_image::release(lease);
        }
    }

    /// [`release_lease`](Self::release_lease) on a thread of its own, to overlap the calls
    /// that come next; join it before the command ends.
    pub fn release_lease_in_background(&mut self) -> Option<Background<()>> {
        self.lease
            .take()
            .map(|lease| Background::spawn("lease-release", move || from_image::release(lease)))
    }
}

/// The record of container `id` for `spec`, with `labels` (also set as the spec's
/// annotations, ctr's last option) and the runtime `flags` name.
fn new_record(
    id: &str,
    labels: BTreeMap<String, String>,
    flags: &ContainerFlags,
    runtime_options: Option<Any>,
    mut spec: Spec,
) -> Result<Container, SpecError> {
    spec.with_annotations(&parse_labels(&flags.labels));
    Ok(Container {
        id: id.to_string(),
        labels: labels.into_iter().collect(),
        runtime: MessageField::some(container::Runtime {
            name: flags.runtime.clone(),
            options: runtime_options.into(),
            ..Default::default()
        }),
        spec: MessageField::some(Any {
            type_url: SPEC_TYPE_URL.to_string(),
            value: spec.to_vec()?,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Creates `record` in corrald (`Containers.Create`); the record as corrald stored it.
fn create(client: &Client, ctx: &CallContext, record: Container) -> CtlResult<Container> {
    let req = CreateContainerRequest {
        container: MessageField::some(record.clone()),
        ..Default::default()
    };
    let resp = ContainersClient::new(client.clone()).create(ctx, &req)?;
    Ok(resp.container.into_option().unwrap_or(record))
}

/// Where the container's root filesystem comes from, as its spec sees it.
#[derive(Debug, Clone, Copy)]
pub enum SpecRoot<'a> {
    /// `--rootfs DIR`: the spec's root is this absolute directory, where users resolve.
    Dir(&'a str),
    /// An image: its config applies (`WithImageConfig`), the root stays the default spec's
    /// `rootfs` (relative to the bundle), and users resolve in the container's snapshot.
    Image {
        /// The image's runtime configuration.
        config: &'a ImageConfig,
        /// Where the container's snapshot is read for users and groups.
        users: UserRoot<'a>,
    },
}

impl SpecRoot<'_> {
    fn users(&self) -> UserRoot<'_> {
        match self {
            SpecRoot::Dir(dir) => UserRoot::Dir(Path::new(dir)),
            SpecRoot::Image { users, .. } => *users,
        }
    }
}

/// [`ContainerFlags`] with the values ctr checks before it contacts containerd checked, in
/// ctr's order, and parsed: annotations, capability names, the seccomp flags, the CPU
/// limits and the namespaces to join.
#[derive(Debug)]
pub struct SpecFlags<'a> {
    flags: &'a ContainerFlags,
    annotations: BTreeMap<String, String>,
    namespaces: Vec<LinuxNamespace>,
}

impl<'a> SpecFlags<'a> {
    /// Checks `flags` as ctr does while it collects its spec options.
    pub fn check(flags: &'a ContainerFlags) -> Result<SpecFlags<'a>, SpecError> {
        let invalid = |m: &str| SpecError::InvalidArgument(m.to_string());
        let mut annotations = BTreeMap::new();
        for a in &flags.annotations {
            let (k, v) = a.split_once('=').ok_or_else(|| {
                SpecError::InvalidArgument(format!("invalid key=value format annotation: {a}"))
            })?;
            annotations.insert(k.to_string(), v.to_string());
        }
        for caps in [&flags.cap_add, &flags.cap_drop] {
            if caps.iter().any(|c| !c.starts_with("CAP_")) {
                return Err(invalid("capabilities must be specified with 'CAP_' prefix"));
            }
        }
        if !flags.seccomp
            && flags
                .seccomp_profile
                .as_deref()
                .is_some_and(|p| !p.is_empty())
        {
            return Err(invalid(
                "seccomp must be set to true, if using a custom seccomp-profile",
            ));
        }
        if (flags.cpu_quota != -1 || flags.cpu_period != 0) && flags.cpus > 0.0 {
            return Err(invalid("cpus and quota/period should be used separately"));
        }
        let namespaces = flags
            .with_ns
            .iter()
            .map(|ns| join_namespace(ns))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SpecFlags {
            flags,
            annotations,
            namespaces,
        })
    }
}

/// ctr's spec for container `id` in `namespace`: the default Unix spec, the environment and
/// mounts, then the root (`root`: a directory, or an image's config), then each remaining
/// flag's option in ctr's order (`--user` and `--hostname` where ctr 1.7 applies them).
/// `cpu_shares` applies when `--cpu-shares` is not given.
pub fn new_spec(
    namespace: &str,
    id: &str,
    root: &SpecRoot,
    args: &[String],
    checked: &SpecFlags,
    cpu_shares: i64,
) -> Result<Spec, SpecError> {
    let flags = checked.flags;
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
    match root {
        SpecRoot::Dir(dir) => spec.with_rootfs_path(dir),
        SpecRoot::Image { config, .. } => spec.with_image_config(config, root.users())?,
    }
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
        spec.with_user(user, root.users())?;
        spec.with_additional_gids(user, root.users())?;
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
    if !checked.annotations.is_empty() {
        spec.with_annotations(&checked.annotations);
    }
    if !flags.cap_add.is_empty() {
        spec.with_added_capabilities(&flags.cap_add);
    }
    if !flags.cap_drop.is_empty() {
        spec.with_dropped_capabilities(&flags.cap_drop);
    }
    let profile = flags.seccomp_profile.as_deref().filter(|p| !p.is_empty());
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
        spec.with_cpu_cfs(flags.cpu_quota, flags.cpu_period);
    }
    for ns in &checked.namespaces {
        spec.with_linux_namespace(ns.clone());
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
        let flags = flags(args);
        let checked = SpecFlags::check(&flags)?;
        new_spec(
            "ns",
            "c1",
            &SpecRoot::Dir("/r"),
            &[],
            &checked,
            CREATE_CPU_SHARES,
        )
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
    fn flags_are_checked_in_ctrs_order_before_anything_is_made() {
        let f = flags(&[
            "--cpus",
            "1",
            "--cpu-quota",
            "5",
            "--cap-add",
            "SYS_ADMIN",
            "--annotation",
            "x",
        ]);
        assert_eq!(
            SpecFlags::check(&f).unwrap_err().to_string(),
            "invalid key=value format annotation: x"
        );
        let f = flags(&["--cpus", "1", "--cpu-quota", "5", "--cap-drop", "KILL"]);
        assert_eq!(
            SpecFlags::check(&f).unwrap_err().to_string(),
            "capabilities must be specified with 'CAP_' prefix"
        );
        // Files are read later, while the spec is made.
        let f = flags(&["--env-file", "/nope/env", "--device", "/nope/dev"]);
        assert!(SpecFlags::check(&f).is_ok());
    }

    #[test]
    fn image_specs_take_the_config_where_ctr_does() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nweb:x:1000:1001::/srv:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nadm:x:4:web\n").unwrap();
        let config = ImageConfig {
            user: "web".into(),
            env: vec!["PATH=/bin".into(), "A=image".into()],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["cmd".into()],
            working_dir: "/srv".into(),
            ..Default::default()
        };
        let root = SpecRoot::Image {
            config: &config,
            users: UserRoot::TempMount(dir.path()),
        };
        let make = |args: &[&str], command: &[&str]| {
            let f = flags(args);
            let checked = SpecFlags::check(&f).unwrap();
            let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
            new_spec("ns", "c1", &root, &command, &checked, CREATE_CPU_SHARES)
                .unwrap()
                .to_json()
                .unwrap()
        };
        let v = make(&[], &[]);
        assert_eq!(v["root"], json!({"path": "rootfs"}));
        assert_eq!(v["process"]["args"], json!(["/entry", "cmd"]));
        assert_eq!(v["process"]["env"], json!(["PATH=/bin", "A=image"]));
        assert_eq!(v["process"]["cwd"], "/srv");
        assert_eq!(
            v["process"]["user"],
            json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 4]})
        );
        // The flags come after the image: they win, and the command replaces the entrypoint.
        let v = make(
            &[
                "--env",
                "A=flag",
                "--read-only",
                "--cwd",
                "/w",
                "-u",
                "0",
                "-t",
            ],
            &["sh", "-c", "x"],
        );
        assert_eq!(v["root"], json!({"path": "rootfs", "readonly": true}));
        assert_eq!(v["process"]["args"], json!(["sh", "-c", "x"]));
        assert_eq!(
            v["process"]["env"],
            json!(["PATH=/bin", "A=flag", "TERM=xterm"])
        );
        assert_eq!(v["process"]["cwd"], "/w");
        assert_eq!(
            v["process"]["user"],
            json!({"uid": 0, "gid": 0, "additionalGids": [0]})
        );
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
