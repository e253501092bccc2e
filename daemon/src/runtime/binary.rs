//! The shim binary: which one a runtime name means (containerd's `BinaryName` and lookup
//! order) and its two one-shot runs, `start` and `delete`, with the flags, environment and
//! stdin containerd gives them (`runtime/v2/binary.go`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corral_protocols::runtime::v2::task::shim::DeleteResponse;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use protobuf::well_known_types::any::Any;
use protobuf::Message;

use super::bundle::Bundle;
use super::{RuntimeError, RuntimeResult};

/// How long a shim's `start` may take before it is killed.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// containerd's `io.containerd.timeout.shim.cleanup`: how long `delete` may take.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// `containerd-shim-<a>-<b>` for runtime `x.y.<a>.<b>`; `None` for a name with fewer than
/// two dotted parts (containerd's `BinaryName`).
pub fn binary_name(runtime: &str) -> Option<String> {
    let parts: Vec<&str> = runtime.split('.').collect();
    if parts.len() < 2 {
        return None;
    }
    let n = parts.len();
    Some(format!("containerd-shim-{}-{}", parts[n - 2], parts[n - 1]))
}

/// Finds shim binaries as containerd does and remembers what it found, per binary name.
#[derive(Debug, Default)]
pub struct Resolver {
    cache: Mutex<HashMap<String, PathBuf>>,
    /// Directories searched before `$PATH` (Corral's `--shim-dir`, and tests).
    extra_dirs: Vec<PathBuf>,
}

impl Resolver {
    /// A resolver that looks in `extra_dirs` first, then where containerd looks.
    pub fn new(extra_dirs: Vec<PathBuf>) -> Resolver {
        Resolver {
            cache: Mutex::default(),
            extra_dirs,
        }
    }

    /// The shim binary for `runtime`: an absolute path as given (it must exist), else the
    /// binary named after the runtime in the extra directories, on `$PATH`, or beside
    /// corrald.
    pub fn resolve(&self, runtime: &str) -> RuntimeResult<PathBuf> {
        if runtime.is_empty() {
            return Err(RuntimeError::InvalidArgument("no runtime name".into()));
        }
        let path = Path::new(runtime);
        if path.is_absolute() {
            return match std::fs::metadata(path) {
                Ok(_) => Ok(path.to_path_buf()),
                Err(e) => Err(RuntimeError::Other(format!(
                    "invalid custom binary path: stat {runtime}: {e}"
                ))),
            };
        }
        let name = binary_name(runtime).ok_or_else(|| {
            RuntimeError::InvalidArgument(format!(
                "invalid runtime name {runtime}, correct runtime name should be either format like `io.containerd.runc.v1` or a full path to the binary"
            ))
        })?;
        if let Some(p) = self.cache.lock().ok().and_then(|c| c.get(&name).cloned()) {
            return Ok(p);
        }
        let mut dirs: Vec<PathBuf> = self.extra_dirs.clone();
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        if let Some(own) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            dirs.push(own);
        }
        let found = dirs
            .iter()
            .map(|d| d.join(&name))
            .find(|p| is_executable(p))
            .ok_or_else(|| {
                RuntimeError::NotFound(format!("runtime {runtime:?} binary not installed {name:?}"))
            })?;
        let found = std::path::absolute(&found).unwrap_or(found);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(name, found.clone());
        }
        Ok(found)
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A shim binary bound to one bundle, with what containerd tells every run of it.
#[derive(Debug, Clone)]
pub struct ShimBinary {
    /// The binary.
    pub path: PathBuf,
    /// The bundle it runs in.
    pub bundle: Bundle,
    /// corrald's socket: `-address` and `TTRPC_ADDRESS` (shims call `Events.Forward` there).
    pub address: String,
    /// Pass `-debug`.
    pub debug: bool,
}

/// What `start` printed: where the shim listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedShim {
    /// A ttrpc address (`unix:///...`).
    pub address: String,
}

impl ShimBinary {
    fn command(&self, action: &str, with_bundle_flag: bool) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("-namespace")
            .arg(&self.bundle.namespace)
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("corrald")))
            .arg("-id")
            .arg(&self.bundle.id);
        if with_bundle_flag {
            cmd.arg("-bundle").arg(&self.bundle.path);
        }
        if self.debug {
            cmd.arg("-debug");
        }
        cmd.arg(action)
            .current_dir(&self.bundle.path)
            .env("TTRPC_ADDRESS", &self.address)
            .env("GOMAXPROCS", "2")
            .process_group(0);
        cmd
    }

    /// Runs `start` with the task options (an `Any`, or none) on stdin, and reads the address
    /// it prints (plain, or containerd 1.7's JSON bootstrap with `"protocol":"ttrpc"`).
    pub fn start(&self, options: Option<&Any>) -> RuntimeResult<StartedShim> {
        let stdin = match options {
            Some(a) => a
                .write_to_bytes()
                .map_err(|e| RuntimeError::Other(format!("encoding the task options: {e}")))?,
            None => Vec::new(),
        };
        let cmd = self.command("start", false);
        let out = run(cmd, &stdin, START_TIMEOUT, "start")?;
        if !out.success {
            return Err(RuntimeError::Other(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.combined).trim()
            )));
        }
        parse_address(&String::from_utf8_lossy(&out.stdout))
    }

    /// Runs `delete` (the cleanup containerd runs for a shim that went away) and decodes the
    /// `DeleteResponse` it prints.
    pub fn delete(&self) -> RuntimeResult<DeleteResponse> {
        let cmd = self.command("delete", true);
        let out = run(cmd, &[], CLEANUP_TIMEOUT, "delete")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            log::warn!(
                "cleanup warnings for {}/{}: {}",
                self.bundle.namespace,
                self.bundle.id,
                stderr.trim()
            );
        }
        if !out.success {
            return Err(RuntimeError::Other(format!(
                "{} delete: {}: {}",
                self.path.display(),
                out.status,
                stderr.trim()
            )));
        }
        DeleteResponse::parse_from_bytes(&out.stdout)
            .map_err(|e| RuntimeError::Other(format!("decoding the delete response: {e}")))
    }
}

/// containerd 1.7's bootstrap parameters (`shim.BootstrapParams`).
#[derive(serde::Deserialize)]
struct Bootstrap {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    address: String,
    #[serde(default)]
    protocol: String,
}

/// The address `start` printed.
pub fn parse_address(printed: &str) -> RuntimeResult<StartedShim> {
    let text = printed.trim();
    // containerd 1.7: JSON with a version below 2, or that does not parse, is a plain address.
    if let Ok(b) = serde_json::from_str::<Bootstrap>(text) {
        if b.version > 2 {
            return Err(RuntimeError::NotImplemented(format!(
                "unsupported shim bootstrap version {}",
                b.version
            )));
        }
        if b.version == 2 {
            if b.protocol != "ttrpc" {
                return Err(RuntimeError::NotImplemented(format!(
                    "shim protocol {:?}: corrald speaks ttrpc only",
                    b.protocol
                )));
            }
            return non_empty(&b.address);
        }
    }
    non_empty(text)
}

fn non_empty(address: &str) -> RuntimeResult<StartedShim> {
    if address.is_empty() {
        return Err(RuntimeError::Other("the shim printed no address".into()));
    }
    Ok(StartedShim {
        address: address.to_string(),
    })
}

struct RunOutput {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// stdout and stderr in the order they arrived (Go's `CombinedOutput`).
    combined: Vec<u8>,
}

/// Runs `cmd` with `stdin` as its input, collecting stdout and stderr until it exits or
/// `timeout` passes (then its process group is killed).
fn run(mut cmd: Command, stdin: &[u8], timeout: Duration, what: &str) -> RuntimeResult<RunOutput> {
    let program: OsString = cmd.get_program().to_os_string();
    let name = Path::new(&program).display().to_string();
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(RuntimeError::io(format!("running {name} {what}")))?;
    let result = collect(&mut child, stdin, timeout);
    if result.is_err() {
        kill_group(&child);
    }
    let status = child
        .wait()
        .map_err(RuntimeError::io(format!("waiting for {name} {what}")))?;
    let (stdout, stderr, combined) =
        result.map_err(|e| RuntimeError::Other(format!("{name} {what}: {e}")))?;
    Ok(RunOutput {
        success: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
        combined,
    })
}

fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

type Collected = (Vec<u8>, Vec<u8>, Vec<u8>);

fn collect(child: &mut Child, stdin: &[u8], timeout: Duration) -> Result<Collected, String> {
    let deadline = Instant::now() + timeout;
    if let Some(mut input) = child.stdin.take() {
        // A shim reads its options before anything else; a few hundred bytes fit the pipe.
        if let Err(e) = input.write_all(stdin) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(format!("writing stdin: {e}"));
            }
        }
    }
    let mut out = child.stdout.take().ok_or("no stdout pipe")?;
    let mut err = child.stderr.take().ok_or("no stderr pipe")?;
    let (mut stdout, mut stderr, mut combined) = (Vec::new(), Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    let mut buf = [0u8; 4096];
    while out_open || err_open {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out after {timeout:?}"));
        }
        let ms = u16::try_from(left.as_millis().min(10_000)).unwrap_or(10_000);
        let mut fds = Vec::with_capacity(2);
        if out_open {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        if err_open {
            fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 0;
        if out_open {
            if ready[i] {
                match out.read(&mut buf) {
                    Ok(0) => out_open = false,
                    Ok(n) => {
                        stdout.extend_from_slice(&buf[..n]);
                        combined.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("reading stdout: {e}")),
                }
            }
            i += 1;
        }
        if err_open && ready[i] {
            match err.read(&mut buf) {
                Ok(0) => err_open = false,
                Ok(n) => {
                    stderr.extend_from_slice(&buf[..n]);
                    combined.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading stderr: {e}")),
            }
        }
    }
    Ok((stdout, stderr, combined))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_names_take_the_last_two_parts() {
        assert_eq!(
            binary_name("io.containerd.runc.v2").as_deref(),
            Some("containerd-shim-runc-v2")
        );
        assert_eq!(
            binary_name("io.containerd.corral.v2").as_deref(),
            Some("containerd-shim-corral-v2")
        );
        assert_eq!(binary_name("a.b").as_deref(), Some("containerd-shim-a-b"));
        assert_eq!(binary_name("runc"), None);
    }

    #[test]
    fn resolution_follows_containerds_order_and_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("containerd-shim-test-v9");
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = Resolver::new(vec![dir.path().to_path_buf()]);
        assert_eq!(r.resolve("io.containerd.test.v9").unwrap(), bin);
        assert_eq!(r.resolve(bin.to_str().unwrap()).unwrap(), bin);
        let e = r.resolve("io.containerd.absent.v9").unwrap_err();
        assert_eq!(
            e.to_string(),
            "runtime \"io.containerd.absent.v9\" binary not installed \"containerd-shim-absent-v9\": not found"
        );
        assert!(matches!(
            r.resolve("runc").unwrap_err(),
            RuntimeError::InvalidArgument(_)
        ));
        assert!(r.resolve("/nonexistent/shim").is_err());
    }

    #[test]
    fn start_output_is_a_plain_address_or_a_bootstrap() {
        assert_eq!(
            parse_address("unix:///run/corral/s/ab\n").unwrap().address,
            "unix:///run/corral/s/ab"
        );
        assert_eq!(
            parse_address(r#"{"version":2,"address":"unix:///s/x","protocol":"ttrpc"}"#)
                .unwrap()
                .address,
            "unix:///s/x"
        );
        assert!(matches!(
            parse_address(r#"{"version":2,"address":"unix:///s/x","protocol":"grpc"}"#),
            Err(RuntimeError::NotImplemented(_))
        ));
        assert!(matches!(
            parse_address(r#"{"version":3,"address":"x","protocol":"ttrpc"}"#),
            Err(RuntimeError::NotImplemented(_))
        ));
        assert!(parse_address("  \n").is_err());
    }

    #[test]
    fn runs_collect_output_and_time_out() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo err >&2; exit 3"]);
        let out = run(cmd, b"in", Duration::from_secs(10), "test").unwrap();
        assert!(!out.success);
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr, b"err\n");
        let mut cmd = Command::new("sleep");
        cmd.arg("30").process_group(0);
        let started = Instant::now();
        assert!(run(cmd, b"", Duration::from_millis(200), "test").is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
