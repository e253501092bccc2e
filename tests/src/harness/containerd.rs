//! [`PrivateContainerd`]: a real containerd 1.6 of the test's own, for interop tests.
//!
//! It gets its own [`TempRoot`] (root, state, temp directory, config file, log) and runs in a
//! private mount namespace whose `/run` is an empty tmpfs, because containerd and its shims
//! write under `/run/containerd` whatever the configuration says. Its sockets live in the
//! temporary directory (outside `/run`), so a test in the host namespace reaches them
//! directly; a program that needs containerd's `/run` (`ctr` creates its fifos in
//! `/run/containerd/fifo`) runs through [`PrivateContainerd::command`].
//!
//! Dropping it stops containerd (`SIGTERM`, then `SIGKILL`), kills whatever is left in its
//! mount namespace or mentions its directory (shims and their containers), removes the
//! cgroups those containers left, unmounts and removes the directory: nothing stays running
//! or mounted on the host, also when the test panics.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::cgroups::{cgroup_dirs_of, CgroupSnapshot};
use super::child::{run_with_deadline, ChildGuard};
use super::ns::{enter_mount_ns, with_private_run, MountNs};
use super::procs::{freeze_tree, kill_and_reap, processes, ProcessInfo};
use super::require::is_root;
use super::temp_root::TempRoot;
use super::wait::wait_for;

/// Plugins disabled in every private containerd: CRI (not needed, and it wants CNI and
/// host paths), `opt` (creates `/opt/containerd` on the host), the snapshotters that cannot
/// work here or probe the host (aufs runs `modprobe`), and tracing.
pub const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// Longest unix socket path the kernel accepts is 107 bytes; keep a margin.
const MAX_SOCKET_PATH: usize = 100;
/// Deadline of one [`PrivateContainerd::ctr`] call.
const CTR_DEADLINE: Duration = Duration::from_secs(60);
/// How long cleanup waits for killed processes and their cgroups.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(10);

/// Config for [`ContainerdOptions::extra_config`] that keeps containerd's garbage collector
/// from running during a test (its startup run and its mutation trigger pushed out), for
/// roots holding records whose blobs or snapshots do not exist. The harness owns
/// `disabled_plugins`, so the collector is held off rather than disabled.
pub const NO_GC: &str = r#"[plugins."io.containerd.gc.v1.scheduler"]
  pause_threshold = 0.02
  deletion_threshold = 0
  mutation_threshold = 1000000
  schedule_delay = "0s"
  startup_delay = "1h"
"#;

/// How to start a [`PrivateContainerd`].
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// containerd binary (looked up on `PATH` when it has no `/`).
    pub binary: PathBuf,
    /// ctr binary used by [`PrivateContainerd::ctr`].
    pub ctr: PathBuf,
    /// `[debug] level`: `trace`, `debug`, `info`, `warn`, `error`. Defaults to the
    /// environment variable `CORRAL_CONTAINERD_LOG_LEVEL`, else `info`.
    pub log_level: String,
    /// Directories put in front of containerd's `PATH`, where it looks for shims
    /// (`containerd-shim-corral-v2` for example).
    pub extra_path: Vec<PathBuf>,
    /// TOML appended to the generated config, e.g. `[plugins."io.containerd.gc.v1.scheduler"]`
    /// tables. It must not repeat the tables the harness writes (`[grpc]`, `[ttrpc]`,
    /// `[debug]`).
    pub extra_config: String,
    /// How long to wait for the sockets to accept connections.
    pub start_deadline: Duration,
    /// How long to wait after `SIGTERM` before `SIGKILL` when stopping.
    pub stop_grace: Duration,
    /// containerd's root, when a test prepared one (e.g. a meta.db written by Corral);
    /// default `<tmp>/root`. The caller owns and removes it.
    pub root: Option<PathBuf>,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            binary: PathBuf::from("containerd"),
            ctr: PathBuf::from("ctr"),
            log_level: std::env::var("CORRAL_CONTAINERD_LOG_LEVEL")
                .unwrap_or_else(|_| "info".to_string()),
            extra_path: Vec::new(),
            extra_config: String::new(),
            start_deadline: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            root: None,
        }
    }
}

/// A running private containerd; see the [module documentation](self).
#[derive(Debug)]
pub struct PrivateContainerd {
    daemon: ChildGuard,
    /// Held open, so its identity stays valid until the last leftover is killed.
    mount_ns: MountNs,
    ctr: PathBuf,
    address: PathBuf,
    ttrpc_address: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    cgroups_before: CgroupSnapshot,
    /// The containerd namespace this instance's `ctr` works in: unique, so the cgroup parent
    /// runc creates for it (`/<namespace>`) is this test's alone to remove.
    namespace: String,
    shut_down: bool,
    root: PathBuf,
    temp: TempRoot,
}

impl PrivateContainerd {
    /// Starts containerd with the default options.
    pub fn start() -> io::Result<PrivateContainerd> {
        PrivateContainerd::start_with(ContainerdOptions::default())
    }

    /// Starts containerd and waits until its sockets accept connections. On failure the
    /// error carries the end of containerd's log, and everything started is cleaned up.
    pub fn start_with(options: ContainerdOptions) -> io::Result<PrivateContainerd> {
        if !is_root() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a private containerd needs root (it runs in its own mount namespace)",
            ));
        }
        let temp = TempRoot::new()?;
        if temp.path().starts_with("/run") {
            return Err(io::Error::other(format!(
                "the temporary directory {} is under /run, which the private containerd \
                 replaces with its own tmpfs; set TMPDIR elsewhere",
                temp.path().display()
            )));
        }
        let address = temp.join("containerd.sock");
        let ttrpc_address = temp.join("containerd.sock.ttrpc");
        if ttrpc_address.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::other(format!(
                "socket path {} is too long for a unix socket; set a shorter TMPDIR",
                ttrpc_address.display()
            )));
        }
        let root = options
            .root
            .clone()
            .unwrap_or_else(|| temp.root().to_path_buf());
        let config_path = temp.join("config.toml");
        let log_path = temp.join("containerd.log");
        std::fs::write(
            &config_path,
            render_config(&temp, &root, &address, &ttrpc_address, &options),
        )?;
        let log = File::create(&log_path)?;
        let cgroups_before = CgroupSnapshot::take()?;

        let mut cmd = Command::new(&options.binary);
        cmd.arg("--config")
            .arg(&config_path)
            .current_dir(temp.path())
            .env("PATH", search_path(&options.extra_path)?)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        with_private_run(&mut cmd);
        let mut daemon = ChildGuard::spawn("containerd", &mut cmd)?.with_grace(options.stop_grace);
        let mount_ns = match MountNs::of_pid(daemon.pid() as i32) {
            Ok(ns) => ns,
            // It died at once (a zombie has no namespaces left): say why.
            Err(e) => {
                let status = daemon.stop()?;
                return Err(failure(
                    &log_path,
                    &format!("containerd exited with {status} ({e})"),
                ));
            }
        };
        // From here on, dropping `containerd` cleans up whatever happens next.
        let mut containerd = PrivateContainerd {
            mount_ns,
            daemon,
            ctr: options.ctr.clone(),
            address,
            ttrpc_address,
            config_path,
            log_path,
            cgroups_before,
            namespace: unique_namespace(),
            shut_down: false,
            root,
            temp,
        };
        if containerd.mount_ns == MountNs::current()? {
            return Err(containerd.failure("containerd did not get a mount namespace of its own"));
        }
        containerd.wait_until_serving(options.start_deadline)?;
        Ok(containerd)
    }

    /// Waits until both sockets accept connections, or containerd exits, or the deadline.
    fn wait_until_serving(&mut self, deadline: Duration) -> io::Result<()> {
        let sockets = [self.address.clone(), self.ttrpc_address.clone()];
        let mut exited = None;
        let daemon = &mut self.daemon;
        let waited = wait_for(deadline, "containerd's sockets", || {
            if let Ok(Some(status)) = daemon.try_wait() {
                exited = Some(status);
                return true;
            }
            sockets
                .iter()
                .all(|s| std::os::unix::net::UnixStream::connect(s).is_ok())
        });
        match (exited, waited) {
            (Some(status), _) => Err(self.failure(&format!("containerd exited with {status}"))),
            (None, Err(e)) => Err(self.failure(&e)),
            (None, Ok(())) => Ok(()),
        }
    }

    /// An error saying `what`, with the end of containerd's log.
    fn failure(&self, what: &str) -> io::Error {
        failure(&self.log_path, what)
    }

    /// The gRPC socket (`<tmp>/containerd.sock`), reachable from the host namespace.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The ttrpc socket (`<tmp>/containerd.sock.ttrpc`), where shims forward events.
    pub fn ttrpc_address(&self) -> &Path {
        &self.ttrpc_address
    }

    /// containerd's root (`<tmp>/root` unless [`ContainerdOptions::root`] said otherwise).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// containerd's state directory (`<tmp>/state`).
    pub fn state(&self) -> &Path {
        self.temp.state()
    }

    /// containerd's pid.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The file containerd's stdout and stderr go to (`<tmp>/containerd.log`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The generated `config.toml`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The temporary directory everything lives in (for fixtures such as a rootfs).
    pub fn temp(&self) -> &TempRoot {
        &self.temp
    }

    /// containerd's private mount namespace. The value holds the namespace open: a test can
    /// keep it past the drop to check that no process is left in it.
    pub fn mount_ns(&self) -> MountNs {
        self.mount_ns.clone()
    }

    /// The containerd namespace `ctr` uses here (`CONTAINERD_NAMESPACE` in [`command`]).
    ///
    /// [`command`]: Self::command
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The last `lines` lines of containerd's log (an unreadable log says so instead).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// A command that runs `program` inside containerd's mount namespace (where its `/run`
    /// is), with `CONTAINERD_ADDRESS` set to [`address`](Self::address). The working
    /// directory, environment and stdio are the caller's to set as usual.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("CONTAINERD_ADDRESS", &self.address)
            .env("CONTAINERD_NAMESPACE", &self.namespace);
        enter_mount_ns(&mut cmd, &self.mount_ns);
        cmd
    }

    /// Runs `ctr --address <socket> <args>` inside containerd's mount namespace and returns
    /// its stdout; a non-zero exit is an error carrying stderr.
    pub fn ctr<I, S>(&self, args: I) -> io::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.ctr_output(&args)?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "ctr {args:?}: {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Like [`ctr`](Self::ctr) but returns the whole output whatever the exit status (for
    /// tests that expect ctr to fail). Fails only if ctr cannot run or overruns its deadline.
    pub fn ctr_output<I, S>(&self, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(&self.ctr);
        cmd.arg("--address").arg(&self.address).args(args);
        run_with_deadline(&mut cmd, CTR_DEADLINE)
    }

    /// Stops containerd itself (SIGTERM, then SIGKILL after the grace period) and leaves its
    /// root in place until drop, so a test can read what it left on disk.
    pub fn stop_daemon(&mut self) -> io::Result<std::process::ExitStatus> {
        self.daemon.stop()
    }

    /// Stops everything and removes the directory now, reporting what went wrong (dropping
    /// does the same but can only log errors).
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    /// Stops containerd, kills what is left in its namespace, removes new cgroups, then
    /// cleans the temporary directory. Idempotent; every step runs whatever failed before.
    fn shutdown(&mut self) -> io::Result<()> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let mut errors: Vec<String> = Vec::new();
        if let Err(e) = self.daemon.stop() {
            errors.push(format!("stopping containerd: {e}"));
        }
        if let Err(e) = self.kill_leftovers() {
            errors.push(e.to_string());
        }
        if let Err(e) = self.temp.cleanup() {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(io::Error::other(errors.join("; ")))
        }
    }

    /// Kills shims, their containers and anything else in the namespace or mentioning the
    /// directory, then removes the cgroups they left that did not exist before the start.
    fn kill_leftovers(&self) -> io::Result<()> {
        let me = std::process::id() as i32;
        let marker = self.temp.marker();
        // Never match by namespace unless it is provably not ours: that would be every process.
        let by_ns = MountNs::current().is_ok_and(|own| own != self.mount_ns);
        let roots: Vec<ProcessInfo> = processes()
            .into_iter()
            .filter(|p| p.pid != me && p.state != 'Z')
            .filter(|p| p.cmdline.contains(marker) || (by_ns && self.mount_ns.contains(p.pid)))
            .collect();
        // Frozen, the containers still show their cgroups; dead, they would not.
        let victims = freeze_tree(&roots)?;
        let mut cgroups: Vec<PathBuf> = victims
            .iter()
            .filter_map(|p| cgroup_dirs_of(p.pid).ok())
            .flatten()
            .collect();
        cgroups.sort();
        cgroups.dedup();
        if !victims.is_empty() {
            log::info!(
                "private containerd: killing leftovers {:?}",
                victims.iter().map(|p| p.to_string()).collect::<Vec<_>>()
            );
        }
        let killed = kill_and_reap(&victims, CLEANUP_DEADLINE);
        let mut left = self.cgroups_before.remove_new(&cgroups, CLEANUP_DEADLINE);
        left.extend(remove_namespace_cgroups(&self.namespace, CLEANUP_DEADLINE));
        let still_in_ns = if by_ns {
            self.mount_ns.processes()
        } else {
            Vec::new()
        };
        killed?;
        if !still_in_ns.is_empty() {
            return Err(io::Error::other(format!(
                "processes still in containerd's mount namespace: {:?}",
                still_in_ns
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
            )));
        }
        if !left.is_empty() {
            return Err(io::Error::other(format!("cgroups left behind: {left:?}")));
        }
        Ok(())
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!(
                "private containerd {}: cleanup failed: {e}",
                self.temp.path().display()
            );
        }
    }
}

/// The config file: `version = 2`, everything under the temporary directory.
fn render_config(
    temp: &TempRoot,
    root: &Path,
    address: &Path,
    ttrpc_address: &Path,
    options: &ContainerdOptions,
) -> String {
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| toml_string(p)).collect();
    format!(
        "# Written by the corral test harness for a private containerd.\n\
         version = 2\n\
         root = {root}\n\
         state = {state}\n\
         temp = {tmp}\n\
         disabled_plugins = [{disabled}]\n\
         \n\
         [grpc]\n  address = {address}\n\
         \n\
         [ttrpc]\n  address = {ttrpc}\n\
         \n\
         [debug]\n  level = {level}\n\
         \n\
         {extra}\n",
        root = toml_path(root),
        state = toml_path(temp.state()),
        tmp = toml_path(&temp.join("tmp")),
        disabled = disabled.join(", "),
        address = toml_path(address),
        ttrpc = toml_path(ttrpc_address),
        level = toml_string(&options.log_level),
        extra = options.extra_config,
    )
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_path(path: &Path) -> String {
    toml_string(&path.to_string_lossy())
}

/// `extra` directories, then this process's `PATH`.
fn search_path(extra: &[PathBuf]) -> io::Result<OsString> {
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let dirs = extra
        .iter()
        .cloned()
        .chain(std::env::split_paths(&inherited));
    std::env::join_paths(dirs).map_err(io::Error::other)
}

/// An error saying `what`, with the end of containerd's log.
fn failure(log_path: &Path, what: &str) -> io::Error {
    io::Error::other(format!(
        "{what}; last lines of {}:\n{}",
        log_path.display(),
        log_tail(log_path, 40)
    ))
}

/// The last `lines` lines of a log, or why it cannot be read.
fn log_tail(path: &Path, lines: usize) -> String {
    match tail(path, lines) {
        Ok(text) => text,
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The last `lines` lines of a file (reading at most its last 64 KiB).
fn tail(path: &Path, lines: usize) -> io::Result<String> {
    const WINDOW: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

/// A namespace name no other test uses at the same time.
fn unique_namespace() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("corral-{}-{n}", std::process::id())
}

/// Removes the cgroup parents runc made for `namespace` (`<hierarchy>/<namespace>`) once the
/// containers under them are gone; returns those it could not remove.
fn remove_namespace_cgroups(namespace: &str, deadline: Duration) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(namespace)];
    if let Ok(entries) = std::fs::read_dir(root) {
        dirs.extend(entries.flatten().map(|e| e.path().join(namespace)));
    }
    let until = std::time::Instant::now() + deadline;
    let mut left = Vec::new();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(_) if std::time::Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => {
                    left.push(dir.clone());
                    break;
                }
            }
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_toml_strings() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), r#""x\u000Ay""#);
    }
}
