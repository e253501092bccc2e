//! Driving runc (or any runc-compatible binary, e.g. crun) through its command line.
//!
//! [`Runc`] builds the argument vectors runc 1.1 expects (in the order containerd's go-runc
//! uses: global flags, subcommand, its flags, the container id last) and runs every command
//! through a [`Runner`], never waiting for a child itself: inside the shim the reaper collects
//! every exit.
//!
//! Errors come from runc's JSON log (`--log <bundle>/log.json --log-format json`): for `create`
//! and `exec` runc's own stdio is the container's, so the log is the only place runc's message
//! can be read. Only lines appended during the failing invocation are considered (the file is
//! shared by all invocations for a bundle). runc's lines carry no pid, so two invocations for
//! the same bundle that fail at the same instant may each report the other's message.

mod error;
mod logfile;
mod state;

#[cfg(test)]
mod lifecycle_tests;

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

pub use error::{Failure, RuncError};
pub use logfile::{last_error, LogMark};
pub use state::{parse_ps, ContainerStatus, State};

use crate::runner::Runner;

/// The binary used when the runc options name none.
pub const DEFAULT_BINARY: &str = "runc";

/// The directory that exists only when the host was booted with systemd (`sd_booted(3)`).
pub const SYSTEMD_MARKER: &str = "/run/systemd/system";

/// runc's log file name inside a bundle.
pub const LOG_FILE: &str = "log.json";

/// How to invoke runc. Field names follow containerd's runc options where they exist; an
/// empty path means "flag not given".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The binary: `runc` (default), `crun`, or a path (options `BinaryName`).
    pub binary: String,
    /// `--root`: runc's state directory, one per namespace (`<Root>/<namespace>`).
    pub root: PathBuf,
    /// `--log` (always with `--log-format json`): `<bundle>/log.json`.
    pub log: PathBuf,
    /// `--systemd-cgroup` (options `SystemdCgroup`).
    pub systemd_cgroup: bool,
    /// `--criu` (options `CriuPath`). crun does not accept this flag.
    pub criu: Option<PathBuf>,
    /// `--debug`.
    pub debug: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            binary: DEFAULT_BINARY.to_string(),
            root: PathBuf::new(),
            log: PathBuf::new(),
            systemd_cgroup: false,
            criu: None,
            debug: false,
        }
    }
}

impl Config {
    /// containerd's layout for one container: `binary_name` (empty means `runc`), `--root
    /// <root>/<namespace>`, `--log <bundle>/log.json`.
    pub fn for_bundle(binary_name: &str, root: &Path, namespace: &str, bundle: &Path) -> Self {
        let binary = if binary_name.is_empty() {
            DEFAULT_BINARY
        } else {
            binary_name
        };
        Self {
            binary: binary.to_string(),
            root: root.join(namespace),
            log: bundle.join(LOG_FILE),
            ..Self::default()
        }
    }
}

/// The child's stdin, stdout and stderr for `create` and `exec`. runc hands its own stdio to
/// the container process, so these are the container's IO (pipe ends, fifos, files); `None`
/// is `/dev/null`. They are consumed (and the parent's copies closed) by the call.
#[derive(Debug, Default)]
pub struct RuncStdio {
    /// The process's stdin.
    pub stdin: Option<Stdio>,
    /// The process's stdout.
    pub stdout: Option<Stdio>,
    /// The process's stderr.
    pub stderr: Option<Stdio>,
}

impl RuncStdio {
    /// All three on `/dev/null` (what a terminal process, whose IO is the pty, needs).
    pub fn null() -> Self {
        Self::default()
    }
}

/// `runc create` options. (`create` is always detached: runc has no foreground create.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOpts {
    /// `--pid-file` (made absolute: runc resolves it after changing into the bundle); empty
    /// for none.
    pub pid_file: PathBuf,
    /// `--console-socket`: the AF_UNIX socket that receives the pty master.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot` (options `NoPivotRoot`).
    pub no_pivot: bool,
    /// `--no-new-keyring` (options `NoNewKeyring`).
    pub no_new_keyring: bool,
}

/// `runc exec` options. Exec is always `--detach`: runc returns once the process runs, and
/// the process's exit reaches the shim's reaper like any orphan's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOpts {
    /// `--pid-file` (made absolute); empty for none.
    pub pid_file: PathBuf,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
}

/// `runc checkpoint` options (containerd's `CheckpointOptions` plus the image path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointOpts {
    /// `--image-path`: where CRIU writes the image.
    pub image_path: PathBuf,
    /// `--work-path`: CRIU's work files and logs (`dump.log`).
    pub work_path: Option<PathBuf>,
    /// `--parent-path`: a previous pre-dump's images.
    pub parent_path: Option<PathBuf>,
    /// Stop the container after the checkpoint; `false` adds `--leave-running`.
    pub exit: bool,
    /// `--tcp-established`.
    pub open_tcp: bool,
    /// `--ext-unix-sk`.
    pub external_unix_sockets: bool,
    /// `--shell-job`.
    pub terminal: bool,
    /// `--file-locks`.
    pub file_locks: bool,
    /// `--empty-ns <ns>` each.
    pub empty_namespaces: Vec<String>,
    /// `--manage-cgroups-mode` (`soft`, `full`, `strict`).
    pub cgroups_mode: Option<String>,
}

/// A runc-compatible runtime, configured once per container. Every command runs through the
/// [`Runner`] the caller passes (the shim's reaper-backed one, or [`DirectRunner`] where no
/// reaper runs, as in `delete`).
///
/// [`DirectRunner`]: crate::runner::DirectRunner
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runc {
    config: Config,
}

/// True when the host was booted with systemd (`/run/systemd/system` exists).
pub fn systemd_running() -> bool {
    Path::new(SYSTEMD_MARKER).is_dir()
}

fn check_systemd(config: &Config, marker: &Path) -> Result<(), RuncError> {
    if config.systemd_cgroup && !marker.is_dir() {
        return Err(RuncError::SystemdNotRunning);
    }
    Ok(())
}

impl Runc {
    /// A runtime for `config`. Fails with [`RuncError::SystemdNotRunning`] when
    /// `systemd_cgroup` is set on a host without systemd (runc would fail every `create` with a
    /// less direct message).
    pub fn new(config: Config) -> Result<Self, RuncError> {
        check_systemd(&config, Path::new(SYSTEMD_MARKER))?;
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `runc create --bundle <bundle> [--pid-file F] [--console-socket S] [--no-pivot]
    /// [--no-new-keyring] <id>`, with `stdio` as runc's (and so the container's) stdio.
    pub fn create(
        &self,
        runner: &dyn Runner,
        id: &str,
        bundle: &Path,
        opts: &CreateOpts,
        stdio: RuncStdio,
    ) -> Result<(), RuncError> {
        const CMD: &str = "create";
        let mut a = args(&["create", "--bundle"]);
        a.push(bundle.into());
        if !opts.pid_file.as_os_str().is_empty() {
            a.push("--pid-file".into());
            a.push(self.absolute(CMD, &opts.pid_file)?.into());
        }
        if let Some(s) = &opts.console_socket {
            a.push("--console-socket".into());
            a.push(s.into());
        }
        if opts.no_pivot {
            a.push("--no-pivot".into());
        }
        if opts.no_new_keyring {
            a.push("--no-new-keyring".into());
        }
        a.push(id.into());
        self.run_with_stdio(runner, CMD, id, a, stdio)
    }

    /// `runc start <id>`.
    pub fn start(&self, runner: &dyn Runner, id: &str) -> Result<(), RuncError> {
        self.simple(runner, "start", id)
    }

    /// `runc state <id>`, parsed.
    pub fn state(&self, runner: &dyn Runner, id: &str) -> Result<State, RuncError> {
        let out = self.run_output(runner, "state", id, args(&["state", id]), None)?;
        serde_json::from_slice(&out.stdout).map_err(|e| self.decode_error("state", id, &out, e))
    }

    /// `runc kill [--all] <id> <signal>`. A process that already exited gives
    /// [`RuncError::ProcessFinished`].
    pub fn kill(
        &self,
        runner: &dyn Runner,
        id: &str,
        signal: i32,
        all: bool,
    ) -> Result<(), RuncError> {
        let mut a = args(&["kill"]);
        if all {
            a.push("--all".into());
        }
        a.push(id.into());
        a.push(signal.to_string().into());
        self.run_output(runner, "kill", id, a, None).map(drop)
    }

    /// `runc delete [--force] <id>`.
    pub fn delete(&self, runner: &dyn Runner, id: &str, force: bool) -> Result<(), RuncError> {
        let mut a = args(&["delete"]);
        if force {
            a.push("--force".into());
        }
        a.push(id.into());
        self.run_output(runner, "delete", id, a, None).map(drop)
    }

    /// `runc exec --process <file> [--console-socket S] --detach [--pid-file F] <id>`, the OCI
    /// `Process` JSON `process_spec` written to a private file in `spec_dir` (the bundle) for
    /// the duration of the call, `stdio` as the process's stdio.
    pub fn exec(
        &self,
        runner: &dyn Runner,
        id: &str,
        process_spec: &[u8],
        spec_dir: &Path,
        opts: &ExecOpts,
        stdio: RuncStdio,
    ) -> Result<(), RuncError> {
        const CMD: &str = "exec";
        let spec = SpecFile::write(spec_dir, process_spec).map_err(|(path, source)| {
            RuncError::Prepare {
                binary: self.config.binary.clone(),
                command: CMD,
                what: "writing the process spec",
                path,
                source,
            }
        })?;
        let mut a = args(&["exec", "--process"]);
        a.push(spec.path.as_os_str().into());
        if let Some(s) = &opts.console_socket {
            a.push("--console-socket".into());
            a.push(s.into());
        }
        a.push("--detach".into());
        if !opts.pid_file.as_os_str().is_empty() {
            a.push("--pid-file".into());
            a.push(self.absolute(CMD, &opts.pid_file)?.into());
        }
        a.push(id.into());
        let result = self.run_with_stdio(runner, CMD, id, a, stdio);
        drop(spec);
        result
    }

    /// `runc pause <id>`.
    pub fn pause(&self, runner: &dyn Runner, id: &str) -> Result<(), RuncError> {
        self.simple(runner, "pause", id)
    }

    /// `runc resume <id>`.
    pub fn resume(&self, runner: &dyn Runner, id: &str) -> Result<(), RuncError> {
        self.simple(runner, "resume", id)
    }

    /// `runc ps --format json <id>`: the pids in the container (empty once stopped).
    pub fn ps(&self, runner: &dyn Runner, id: &str) -> Result<Vec<i32>, RuncError> {
        let a = args(&["ps", "--format", "json", id]);
        let out = self.run_output(runner, "ps", id, a, None)?;
        parse_ps(&out.stdout).map_err(|e| self.decode_error("ps", id, &out, e))
    }

    /// `runc update --resources - <id>` with the OCI `LinuxResources` JSON `resources` on
    /// stdin.
    pub fn update(&self, runner: &dyn Runner, id: &str, resources: &[u8]) -> Result<(), RuncError> {
        let a = args(&["update", "--resources", "-", id]);
        self.run_output(runner, "update", id, a, Some(resources))
            .map(drop)
    }

    /// `runc checkpoint [--image-path P] [--work-path W] [--parent-path PP]
    /// [--tcp-established] [--ext-unix-sk] [--shell-job] [--file-locks]
    /// [--manage-cgroups-mode M] [--empty-ns NS]... [--leave-running] <id>`. Checks first that
    /// CRIU is installed ([`Runc::check_criu`]).
    pub fn checkpoint(
        &self,
        runner: &dyn Runner,
        id: &str,
        opts: &CheckpointOpts,
    ) -> Result<(), RuncError> {
        self.check_criu()?;
        let mut a = args(&["checkpoint"]);
        if !opts.image_path.as_os_str().is_empty() {
            a.push("--image-path".into());
            a.push(opts.image_path.as_os_str().into());
        }
        if let Some(w) = &opts.work_path {
            a.push("--work-path".into());
            a.push(w.into());
        }
        if let Some(p) = &opts.parent_path {
            a.push("--parent-path".into());
            a.push(p.into());
        }
        for (on, flag) in [
            (opts.open_tcp, "--tcp-established"),
            (opts.external_unix_sockets, "--ext-unix-sk"),
            (opts.terminal, "--shell-job"),
            (opts.file_locks, "--file-locks"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        if let Some(mode) = opts.cgroups_mode.as_deref().filter(|m| !m.is_empty()) {
            a.push("--manage-cgroups-mode".into());
            a.push(mode.into());
        }
        for ns in &opts.empty_namespaces {
            a.push("--empty-ns".into());
            a.push(ns.into());
        }
        if !opts.exit {
            a.push("--leave-running".into());
        }
        a.push(id.into());
        self.run_output(runner, "checkpoint", id, a, None).map(drop)
    }

    /// Where CRIU is: the configured `criu` path, or `criu` searched on `PATH`.
    /// [`RuncError::CriuNotFound`] (FailedPrecondition) when it is missing.
    pub fn check_criu(&self) -> Result<PathBuf, RuncError> {
        let criu = self
            .config
            .criu
            .clone()
            .unwrap_or_else(|| PathBuf::from("criu"));
        let path_var = std::env::var_os("PATH");
        find_executable(&criu, path_var.as_deref()).map_err(|why| RuncError::CriuNotFound {
            criu: criu.display().to_string(),
            why,
        })
    }

    /// True when [`Runc::check_criu`] finds CRIU.
    pub fn criu_available(&self) -> bool {
        self.check_criu().is_ok()
    }

    // ---- plumbing ----

    /// The global flags, in go-runc's order.
    fn global_args(&self) -> Vec<OsString> {
        let c = &self.config;
        let mut a = Vec::new();
        if !c.root.as_os_str().is_empty() {
            a.push("--root".into());
            a.push(c.root.as_os_str().into());
        }
        if c.debug {
            a.push("--debug".into());
        }
        if !c.log.as_os_str().is_empty() {
            a.push("--log".into());
            a.push(c.log.as_os_str().into());
            a.push("--log-format".into());
            a.push("json".into());
        }
        if let Some(criu) = &c.criu {
            a.push("--criu".into());
            a.push(criu.into());
        }
        if c.systemd_cgroup {
            a.push("--systemd-cgroup".into());
        }
        a
    }

    fn command(&self, args: Vec<OsString>) -> Command {
        let mut cmd = Command::new(&self.config.binary);
        cmd.args(self.global_args()).args(args);
        // runc treats NOTIFY_SOCKET as "I was started by systemd" and would notify on it.
        cmd.env_remove("NOTIFY_SOCKET");
        cmd
    }

    fn absolute(&self, command: &'static str, p: &Path) -> Result<PathBuf, RuncError> {
        std::path::absolute(p).map_err(|source| RuncError::Prepare {
            binary: self.config.binary.clone(),
            command,
            what: "resolving",
            path: p.to_path_buf(),
            source,
        })
    }

    fn log_mark(&self) -> Option<LogMark> {
        let log = &self.config.log;
        (!log.as_os_str().is_empty()).then(|| LogMark::new(log))
    }

    fn simple(
        &self,
        runner: &dyn Runner,
        command: &'static str,
        id: &str,
    ) -> Result<(), RuncError> {
        self.run_output(runner, command, id, args(&[command, id]), None)
            .map(drop)
    }

    /// Runs with stdout and stderr captured (commands whose stdio no container inherits).
    fn run_output(
        &self,
        runner: &dyn Runner,
        command: &'static str,
        id: &str,
        args: Vec<OsString>,
        stdin: Option<&[u8]>,
    ) -> Result<Output, RuncError> {
        let mut cmd = self.command(args);
        let mark = self.log_mark();
        let out = runner
            .output(&mut cmd, stdin)
            .map_err(|source| self.spawn_error(command, source))?;
        if out.status.success() {
            return Ok(out);
        }
        Err(self.failed(command, id, out.status, mark, &out.stderr, &out.stdout))
    }

    /// Runs with `stdio` as the child's stdio (create, exec): the message can only come from
    /// the log.
    fn run_with_stdio(
        &self,
        runner: &dyn Runner,
        command: &'static str,
        id: &str,
        args: Vec<OsString>,
        stdio: RuncStdio,
    ) -> Result<(), RuncError> {
        let mut cmd = self.command(args);
        cmd.stdin(stdio.stdin.unwrap_or_else(Stdio::null))
            .stdout(stdio.stdout.unwrap_or_else(Stdio::null))
            .stderr(stdio.stderr.unwrap_or_else(Stdio::null));
        let mark = self.log_mark();
        let status = runner.status(&mut cmd);
        // Close the parent's copies of the container's stdio now.
        drop(cmd);
        let status = status.map_err(|source| self.spawn_error(command, source))?;
        if status.success() {
            return Ok(());
        }
        Err(self.failed(command, id, status, mark, b"", b""))
    }

    fn spawn_error(&self, command: &'static str, source: io::Error) -> RuncError {
        RuncError::Spawn {
            binary: self.config.binary.clone(),
            command,
            source,
        }
    }

    fn failed(
        &self,
        command: &'static str,
        id: &str,
        status: ExitStatus,
        mark: Option<LogMark>,
        stderr: &[u8],
        stdout: &[u8],
    ) -> RuncError {
        let message = mark
            .and_then(|m| m.last_error())
            .or_else(|| first_line(stderr))
            .or_else(|| first_line(stdout))
            .unwrap_or_default();
        RuncError::classify(Failure {
            binary: self.config.binary.clone(),
            command,
            id: id.to_string(),
            status,
            message,
        })
    }

    fn decode_error(
        &self,
        command: &'static str,
        id: &str,
        out: &Output,
        source: serde_json::Error,
    ) -> RuncError {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        if output.len() > 200 {
            let mut cut = 200;
            while !output.is_char_boundary(cut) {
                cut -= 1;
            }
            output.truncate(cut);
        }
        RuncError::Decode {
            binary: self.config.binary.clone(),
            command,
            id: id.to_string(),
            output,
            source,
        }
    }
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// The first non-blank line of a command's output, trimmed (runc follows a usage error with
/// its whole help text).
fn first_line(out: &[u8]) -> Option<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Looks `name` up as a shell would: with a `/` it is a path, otherwise it is searched in
/// `path_var`. Only executable regular files count. The error says why, for a message.
fn find_executable(name: &Path, path_var: Option<&OsStr>) -> Result<PathBuf, String> {
    fn executable(p: &Path) -> bool {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    if name.as_os_str().is_empty() {
        return Err("is empty".to_string());
    }
    if name.components().count() > 1 || name.is_absolute() {
        return if executable(name) {
            Ok(name.to_path_buf())
        } else {
            Err("is not an executable file".to_string())
        };
    }
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(path_var) {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            let candidate = dir.join(name);
            if executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err("was not found on PATH".to_string())
}

/// The exec process spec, in a file of its own that is removed when dropped.
struct SpecFile {
    path: PathBuf,
}

impl SpecFile {
    fn write(dir: &Path, spec: &[u8]) -> Result<Self, (PathBuf, io::Error)> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".runc-process-{}-{n}.json", std::process::id()));
            let mut file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(f) => f,
                // Left over by an earlier shim with the same pid: take the next number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err((path, e)),
            };
            // From here on the file is ours: dropping `this` removes it on any error.
            let this = Self { path };
            if let Err(e) = file.write_all(spec) {
                return Err((this.path.clone(), e));
            }
            return Ok(this);
        }
    }
}

impl Drop for SpecFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests;
