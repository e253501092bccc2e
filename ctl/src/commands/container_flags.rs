//! The flags and arguments that describe a new container, shared by `containers create` and
//! `run`: ctr 1.6's `ContainerFlags`, its snapshotter flags and `run`'s platform
//! flags, with ctr's names, defaults and help texts, plus Corral's `--user` and
//! `--hostname` (ctr 1.7's).
//!
//! Flags for features Corral does not have yet are parsed, so a ctr command line is never a
//! usage error, and refused by [`ContainerFlags::check_supported`] with
//! `--X is not supported yet`: never silently ignored.

use clap::Args;

use super::{CtlError, CtlResult};

/// Corral's default runtime (conventions.md).
pub const DEFAULT_RUNTIME: &str = "io.containerd.corral.v2";

/// Runtimes that take runc's options (`containerd.runc.v1.Options`): containerd's runc shim
/// and Corral's.
pub const RUNC_RUNTIMES: &[&str] = &["io.containerd.runc.v2", DEFAULT_RUNTIME];

/// What a new container is made of, as ctr's flags say it.
#[derive(Debug, Clone, Default, Args)]
pub struct ContainerFlags {
    /// snapshotter name. Empty value stands for the default value.
    #[arg(long, env = "CORRAL_SNAPSHOTTER", value_name = "NAME")]
    pub snapshotter: Option<String>,
    /// labels added to the new snapshot for this container.
    #[arg(long = "snapshotter-label", value_name = "KEY=VALUE")]
    pub snapshotter_labels: Vec<String>,
    /// path to the runtime-specific spec config file
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<String>,
    /// specify the working directory of the process
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// specify additional container environment variables (e.g. FOO=bar)
    #[arg(long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// specify additional container environment variables in a file(e.g. FOO=bar, one per line)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Option<String>,
    /// specify additional labels (e.g. foo=bar)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// specify additional OCI annotations (e.g. foo=bar)
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// specify additional container mount (e.g. type=bind,src=/tmp,dst=/host,options=rbind:ro)
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,
    /// enable host networking for the container
    #[arg(long = "net-host")]
    pub net_host: bool,
    /// run privileged container
    #[arg(long)]
    pub privileged: bool,
    /// set the containers filesystem as readonly
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// runtime name
    #[arg(long, default_value = DEFAULT_RUNTIME, value_name = "NAME")]
    pub runtime: String,
    /// optional runtime config path
    #[arg(long = "runtime-config-path", value_name = "PATH")]
    pub runtime_config_path: Option<String>,
    /// allocate a TTY for the container
    #[arg(short = 't', long)]
    pub tty: bool,
    /// specify existing Linux namespaces to join at container runtime (format '<nstype>:<path>')
    #[arg(long = "with-ns", value_name = "NSTYPE:PATH")]
    pub with_ns: Vec<String>,
    /// file path to write the task's pid
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<String>,
    /// add gpus to the container
    #[arg(long, value_name = "N")]
    pub gpus: Vec<i64>,
    /// turn off OCI spec's NoNewPrivileges feature flag
    #[arg(long = "allow-new-privs")]
    pub allow_new_privs: bool,
    /// memory limit (in bytes) for the container
    #[arg(long = "memory-limit", default_value = "0", value_parser = parse_go_u64, value_name = "BYTES")]
    pub memory_limit: u64,
    /// file path to a device to add to the container; or a path to a directory tree of devices to add to the container
    #[arg(long = "device", value_name = "PATH")]
    pub devices: Vec<String>,
    /// add Linux capabilities (Set capabilities with 'CAP_' prefix)
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// drop Linux capabilities (Set capabilities with 'CAP_' prefix)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// enable the default seccomp profile
    #[arg(long)]
    pub seccomp: bool,
    /// file path to custom seccomp profile. seccomp must be set to true, before using seccomp-profile
    #[arg(long = "seccomp-profile", value_name = "FILE")]
    pub seccomp_profile: Option<String>,
    /// enable AppArmor with the default profile with the specified name, e.g. "cri-containerd.apparmor.d"
    #[arg(long = "apparmor-default-profile", value_name = "NAME")]
    pub apparmor_default_profile: Option<String>,
    /// enable AppArmor with an existing custom profile
    #[arg(long = "apparmor-profile", value_name = "NAME")]
    pub apparmor_profile: Option<String>,
    /// name of the RDT class to associate the container with. Specifies a Class of Service (CLOS) for cache and memory bandwidth management.
    #[arg(long = "rdt-class", value_name = "CLASS")]
    pub rdt_class: Option<String>,
    /// use custom rootfs that is not managed by containerd snapshotter
    #[arg(long)]
    pub rootfs: bool,
    /// disable use of pivot-root (linux only)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Limit CPU CFS quota
    #[arg(long = "cpu-quota", default_value = "-1", value_parser = parse_go_i64, allow_hyphen_values = true, value_name = "QUOTA")]
    pub cpu_quota: i64,
    /// Limit CPU CFS period
    #[arg(long = "cpu-period", default_value = "0", value_parser = parse_go_u64, value_name = "PERIOD")]
    pub cpu_period: u64,
    /// set the propagation of the container rootfs
    #[arg(long = "rootfs-propagation", value_name = "MODE")]
    pub rootfs_propagation: Option<String>,
    /// specify runc-compatible binary
    #[arg(long = "runc-binary", value_name = "BINARY")]
    pub runc_binary: Option<String>,
    /// specify runc-compatible root
    #[arg(long = "runc-root", value_name = "DIR")]
    pub runc_root: Option<String>,
    /// start runc with systemd cgroup manager
    #[arg(long = "runc-systemd-cgroup")]
    pub runc_systemd_cgroup: bool,
    /// run inside a user namespace with the specified UID mapping range; specified with the format `container-uid:host-uid:length`
    #[arg(long, value_name = "MAP")]
    pub uidmap: Option<String>,
    /// run inside a user namespace with the specified GID mapping range; specified with the format `container-gid:host-gid:length`
    #[arg(long, value_name = "MAP")]
    pub gidmap: Option<String>,
    /// provide the user namespace ID remapping to the snapshotter via label options; requires snapshotter support
    #[arg(long = "remap-labels")]
    pub remap_labels: bool,
    /// set the CFS cpu quota
    #[arg(long, default_value = "0", value_parser = parse_go_f64, value_name = "CPUS")]
    pub cpus: f64,
    /// set the cpu shares [`run` default: 1024; `containers create` sets none unless given]
    #[arg(long = "cpu-shares", value_parser = parse_go_i64, allow_hyphen_values = true, value_name = "SHARES")]
    pub cpu_shares: Option<i64>,
    /// cgroup path (To disable use of cgroup, set to "" explicitly)
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// run image for specific platform
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// enable cni networking for the container
    #[arg(long)]
    pub cni: bool,
    /// Username or user id, group optional (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Set the container's host name
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
}

/// The positional arguments of `create` and `run`: `IMAGE|ROOTFS ID [COMMAND [ARG...]]`,
/// or only `ID` with `--config`.
#[derive(Debug, Clone, Default, Args)]
pub struct ContainerArgs {
    /// The image, or the root filesystem directory with --rootfs (the container id with
    /// --config).
    #[arg(value_name = "IMAGE|ROOTFS")]
    pub reference: Option<String>,
    /// The container id.
    #[arg(value_name = "CONTAINER")]
    pub id: Option<String>,
    /// The command and its arguments (the image's when none).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// What the positional arguments name, once read as ctr reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `--config FILE ID`: the spec comes from the file.
    Config {
        /// The container id.
        id: String,
    },
    /// `IMAGE|ROOTFS ID [COMMAND...]`.
    Reference {
        /// The image reference, or the rootfs directory with `--rootfs`.
        reference: String,
        /// The container id.
        id: String,
        /// The process arguments; empty means the default.
        args: Vec<String>,
    },
}

impl Target {
    /// The container id.
    pub fn id(&self) -> &str {
        match self {
            Target::Config { id } | Target::Reference { id, .. } => id,
        }
    }
}

impl ContainerArgs {
    /// Reads the arguments as ctr's `containers create` does, with its messages.
    pub fn target(&self, config: bool) -> CtlResult<Target> {
        let invalid = |m: &str| CtlError::new(format!("{m}: invalid argument"));
        if config {
            if self.id.is_some() || !self.command.is_empty() {
                return Err(invalid(
                    "with spec config file, only container id should be provided",
                ));
            }
            return match &self.reference {
                Some(id) if !id.is_empty() => Ok(Target::Config { id: id.clone() }),
                _ => Err(invalid("container id must be provided")),
            };
        }
        let reference = match &self.reference {
            Some(r) if !r.is_empty() => r.clone(),
            _ => return Err(invalid("image ref must be provided")),
        };
        match &self.id {
            Some(id) if !id.is_empty() => Ok(Target::Reference {
                reference,
                id: id.clone(),
                args: self.command.clone(),
            }),
            _ => Err(invalid("container id must be provided")),
        }
    }
}

impl ContainerFlags {
    /// Refuses the flags whose feature Corral does not have yet, naming the first one given.
    pub fn check_supported(&self) -> CtlResult {
        let given = [
            ("--cni", self.cni),
            ("--gpus", !self.gpus.is_empty()),
            ("--uidmap", self.uidmap.is_some()),
            ("--gidmap", self.gidmap.is_some()),
            ("--remap-labels", self.remap_labels),
            (
                "--apparmor-default-profile",
                self.apparmor_default_profile.is_some(),
            ),
            ("--apparmor-profile", self.apparmor_profile.is_some()),
            ("--rdt-class", self.rdt_class.is_some()),
            // containerd's default seccomp profile is not reproduced; a profile file is.
            ("--seccomp", self.seccomp && self.seccomp_profile.is_none()),
        ];
        match given.iter().find(|(_, set)| *set) {
            Some((flag, _)) => Err(CtlError::new(format!("{flag} is not supported yet"))),
            None => Ok(()),
        }
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`, as urfave/cli reads integer flags: decimal, or
/// `0x`, `0o`, `0b` or a leading `0` for hex, octal and binary, `_` between digits.
pub fn parse_go_i64(s: &str) -> Result<i64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let magnitude = parse_go_magnitude(body).ok_or_else(|| invalid_syntax(s))?;
    let value = if neg {
        0i128 - i128::from(magnitude)
    } else {
        i128::from(magnitude)
    };
    i64::try_from(value).map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
pub fn parse_go_u64(s: &str) -> Result<u64, String> {
    parse_go_magnitude(s).ok_or_else(|| invalid_syntax(s))
}

/// Go's `strconv.ParseFloat(s, 64)` for the usual spellings.
pub fn parse_go_f64(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
}

fn invalid_syntax(s: &str) -> String {
    format!("strconv.ParseInt: parsing {s:?}: invalid syntax")
}

fn parse_go_magnitude(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.strip_prefix('_').unwrap_or(d))
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.strip_prefix('_').unwrap_or(d))
    } else if lower.len() > 1 && lower.starts_with('0') {
        let d = &lower[1..];
        (8, d.strip_prefix('_').unwrap_or(d))
    } else {
        (10, lower.as_str())
    };
    // Underscores only between digits, as in Go literals.
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    u64::from_str_radix(&digits.replace('_', ""), radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_like_urfave_cli() {
        assert_eq!(parse_go_i64("-1"), Ok(-1));
        assert_eq!(parse_go_i64("0x10"), Ok(16));
        assert_eq!(parse_go_i64("010"), Ok(8));
        assert_eq!(parse_go_i64("1_000"), Ok(1000));
        assert!(parse_go_i64("_1").is_err());
        assert_eq!(parse_go_u64("0b101"), Ok(5));
        assert_eq!(parse_go_u64("1048576"), Ok(1 << 20));
        assert!(parse_go_u64("-1").is_err());
        assert!(parse_go_u64("1k").is_err());
        assert_eq!(parse_go_f64("1.5"), Ok(1.5));
        assert!(parse_go_f64("x").is_err());
        assert!(parse_go_i64("99999999999999999999").is_err());
    }

    #[test]
    fn arguments_read_like_ctr() {
        let args = ContainerArgs {
            reference: Some("/r".into()),
            id: Some("c".into()),
            command: vec!["sh".into(), "-c".into()],
        };
        assert_eq!(
            args.target(false).unwrap(),
            Target::Reference {
                reference: "/r".into(),
                id: "c".into(),
                args: vec!["sh".into(), "-c".into()]
            }
        );
        assert_eq!(
            args.target(true).unwrap_err().to_string(),
            "with spec config file, only container id should be provided: invalid argument"
        );
        let only = ContainerArgs {
            reference: Some("c".into()),
            ..Default::default()
        };
        assert_eq!(
            only.target(true).unwrap(),
            Target::Config { id: "c".into() }
        );
        assert_eq!(
            only.target(false).unwrap_err().to_string(),
            "container id must be provided: invalid argument"
        );
        assert_eq!(
            ContainerArgs::default()
                .target(false)
                .unwrap_err()
                .to_string(),
            "image ref must be provided: invalid argument"
        );
    }

    #[test]
    fn unsupported_flags_are_named() {
        let mut f = ContainerFlags::default();
        assert!(f.check_supported().is_ok());
        f.seccomp = true;
        assert_eq!(
            f.check_supported().unwrap_err().to_string(),
            "--seccomp is not supported yet"
        );
        f.seccomp_profile = Some("p.json".into());
        assert!(f.check_supported().is_ok());
        f.cni = true;
        assert_eq!(
            f.check_supported().unwrap_err().to_string(),
            "--cni is not supported yet"
        );
    }
}
