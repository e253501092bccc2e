//! The `start` action: containerd (or corrald) runs it in the bundle directory; it starts a
//! long-lived shim server for the container's group (or finds the one already serving it),
//! writes `address` in the bundle, prints the address and exits.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::address;
use crate::flags::Flags;
use crate::options::RuncOptions;

/// Annotations that group containers under one shim, checked in this order (as containerd's
/// runc shim does).
const GROUP_ANNOTATIONS: &[&str] = &[
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// What `start` learns from its environment.
#[derive(Debug, Clone, Default)]
pub struct StartEnv {
    /// `MAX_SHIM_VERSION` (containerd 1.7+): 2 or more asks for the JSON bootstrap.
    pub max_shim_version: Option<u32>,
}

impl StartEnv {
    pub fn from_env() -> Self {
        Self {
            max_shim_version: std::env::var("MAX_SHIM_VERSION")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        }
    }
}

/// The grouping key: a group annotation in the bundle's `config.json`, else the container id.
pub fn group_key(bundle: &Path, id: &str) -> String {
    let spec = fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if let Some(annotations) = spec.as_ref().and_then(|s| s.get("annotations")) {
        for key in GROUP_ANNOTATIONS {
            if let Some(v) = annotations.get(*key).and_then(|v| v.as_str()) {
                if !v.is_empty() {
                    return v.to_string();
                }
            }
        }
    }
    id.to_string()
}

/// How the address is printed for the caller.
pub fn format_address(socket: &Path, env: &StartEnv) -> String {
    let addr = format!("unix://{}", socket.display());
    if env.max_shim_version.unwrap_or(0) >= 2 {
        serde_json::json!({"version": 2, "address": addr, "protocol": "ttrpc"}).to_string()
    } else {
        addr
    }
}

/// Writes `address` in the bundle atomically (a temporary file renamed into place). Not
/// synced, unlike containerd's `O_SYNC` write: the file only leads a restarted daemon to a
/// live shim, and no shim outlives a power loss; after one, an empty or missing address is a
/// dead shim to the daemon either way, and it cleans up.
pub fn write_address_file(bundle: &Path, address: &str) -> io::Result<()> {
    let tmp = bundle.join(".address");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_0644()
        .open(&tmp)?;
    f.write_all(address.as_bytes())?;
    fs::rename(&tmp, bundle.join("address"))
}

trait Mode0644 {
    fn mode_0644(&mut self) -> &mut Self;
}

impl Mode0644 for fs::OpenOptions {
    fn mode_0644(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o644)
    }
}

/// Either a fresh listener, or the address of a live shim already serving the group.
enum Bound {
    New(UnixListener),
    Existing,
}

fn bind(path: &Path) -> io::Result<Bound> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match UnixListener::bind(path) {
        Ok(l) => Ok(Bound::New(l)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(Bound::Existing);
            }
            // Nobody answers: a stale socket from a shim that died.
            fs::remove_file(path)?;
            UnixListener::bind(path).map(Bound::New)
        }
        Err(e) => Err(e),
    }
}

/// Runs `start` in `bundle` and returns what to print.
pub fn start(
    flags: &Flags,
    env: &StartEnv,
    bundle: &Path,
    stdin_options: &[u8],
) -> io::Result<String> {
    if flags.id.is_empty() || flags.namespace.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "start needs -id and -namespace",
        ));
    }
    let options = RuncOptions::from_any_bytes(stdin_options)?;
    let group = group_key(bundle, &flags.id);
    let socket = address::socket_path(&flags.address, &flags.namespace, &group)?;
    let printed = format_address(&socket, env);
    let addr = format!("unix://{}", socket.display());

    let listener = match bind(&socket)? {
        Bound::Existing => {
            write_address_file(bundle, &addr)?;
            return Ok(printed);
        }
        Bound::New(l) => l,
    };
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))?;
    let result = spawn_server(flags, bundle, &listener, &options);
    if let Err(e) = result {
        let _ = fs::remove_file(&socket);
        return Err(e);
    }
    if let Err(e) = write_address_file(bundle, &addr) {
        let _ = fs::remove_file(&socket);
        return Err(e);
    }
    Ok(printed)
}

/// Starts the server: this binary again, without an action, serving the listener as fd 3, in
/// its own process group, from the bundle directory.
fn spawn_server(
    flags: &Flags,
    bundle: &Path,
    listener: &UnixListener,
    options: &RuncOptions,
) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "-namespace",
        &flags.namespace,
        "-id",
        &flags.id,
        "-address",
        &flags.address,
    ]);
    if !flags.publish_binary.is_empty() {
        cmd.args(["-publish-binary", &flags.publish_binary]);
    }
    if flags.debug {
        cmd.arg("-debug");
    }
    let tunables = match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if !t.is_empty() => format!("{t}:{}", crate::memory::GLIBC_TUNABLES),
        _ => crate::memory::GLIBC_TUNABLES.to_string(),
    };
    cmd.env("GLIBC_TUNABLES", tunables)
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec the hook only calls dup2 and fcntl, which are
    // async-signal-safe, on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 {
                if libc::dup2(fd, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id();
    // The server outlives this process; whoever inherits it (containerd is a subreaper)
    // reaps it.
    drop(child);
    adjust_oom_score(pid);
    if !options.shim_cgroup.is_empty() {
        join_cgroup(pid, &options.shim_cgroup)?;
    }
    Ok(())
}

/// The shim is a little more killable than its daemon (containerd's score + 1).
fn adjust_oom_score(pid: u32) {
    let mine = fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let score = (mine + 1).min(1000);
    if let Err(e) = fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string()) {
        log::warn!("setting the shim's oom_score_adj: {e}");
    }
}

/// Moves the server into the cgroup named by the `ShimCgroup` option: the unified hierarchy
/// when there is one with that path, else every v1 hierarchy that has it.
fn join_cgroup(pid: u32, cgroup: &str) -> io::Result<()> {
    let rel = cgroup.trim_start_matches('/');
    let base = Path::new("/sys/fs/cgroup");
    let mut targets: Vec<PathBuf> = Vec::new();
    if base.join("cgroup.controllers").exists() {
        targets.push(base.join(rel));
    } else if let Ok(entries) = fs::read_dir(base) {
        for e in entries.flatten() {
            let dir = e.path().join(rel);
            if dir.join("cgroup.procs").exists() {
                targets.push(dir);
            }
        }
    }
    if targets.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("shim cgroup {cgroup:?} does not exist"),
        ));
    }
    for dir in targets {
        fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("joining shim cgroup {}: {e}", dir.display()),
            )
        })?;
    }
    Ok(())
}

/// Reads stdin to its end (containerd writes the runtime options there, or gives /dev/null).
pub fn read_stdin() -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io::stdin().lock().read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_key_prefers_the_runc_group_annotation() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(group_key(dir.path(), "web"), "web");
        fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod","io.containerd.runc.v2.group":"g"}}"#,
        )
        .unwrap();
        assert_eq!(group_key(dir.path(), "web"), "g");
        fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod"}}"#,
        )
        .unwrap();
        assert_eq!(group_key(dir.path(), "web"), "pod");
    }

    #[test]
    fn address_is_plain_for_16_and_json_when_asked() {
        let p = Path::new("/run/containerd/s/ab");
        assert_eq!(
            format_address(p, &StartEnv::default()),
            "unix:///run/containerd/s/ab"
        );
        let json = format_address(
            p,
            &StartEnv {
                max_shim_version: Some(2),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["address"], "unix:///run/containerd/s/ab");
        assert_eq!(v["protocol"], "ttrpc");
    }

    #[test]
    fn address_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_address_file(dir.path(), "unix:///a").unwrap();
        write_address_file(dir.path(), "unix:///b").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("address")).unwrap(),
            "unix:///b"
        );
        assert!(!dir.path().join(".address").exists());
    }

    #[test]
    fn a_live_socket_is_reused_and_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s").join("x");
        let first = match bind(&sock).unwrap() {
            Bound::New(l) => l,
            Bound::Existing => panic!("nothing was listening"),
        };
        assert!(matches!(bind(&sock).unwrap(), Bound::Existing));
        drop(first);
        assert!(matches!(bind(&sock).unwrap(), Bound::New(_)));
    }
}
