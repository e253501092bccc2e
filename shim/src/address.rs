//! Where a shim listens: derived from the daemon address it is given, as containerd's runc
//! shim derives it, so that under a stock containerd the paths are the Go shim's own and under
//! corrald they stay inside corrald's state directory.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Longest socket path a `sockaddr_un` takes with its terminating NUL (as Go checks).
pub const MAX_SOCKET_PATH: usize = 106;

/// The daemon address as a plain path (`unix://` stripped).
pub fn daemon_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// The state directory the daemon's socket lives in: sockets go in `<it>/s`, runc state in
/// `<it>/runc`.
pub fn state_dir(address: &str) -> io::Result<PathBuf> {
    let path = Path::new(daemon_path(address));
    match path.parent() {
        Some(dir) if path.is_absolute() && !dir.as_os_str().is_empty() => Ok(dir.to_path_buf()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("-address {address:?} is not an absolute socket path"),
        )),
    }
}

/// Go's `filepath.Join` for the three parts the socket name hashes.
fn go_join(parts: &[&str]) -> String {
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    clean(&joined)
}

/// Go's `filepath.Clean` for absolute or relative slash paths.
fn clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !absolute {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let body = out.join("/");
    match (absolute, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// The shim socket for a group of containers: `<state dir>/s/<sha256(join(address, ns, group))>`.
pub fn socket_path(address: &str, namespace: &str, group: &str) -> io::Result<PathBuf> {
    let dir = state_dir(address)?;
    let key = go_join(&[daemon_path(address), namespace, group]);
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("s").join(hex);
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes",
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// Where runc keeps its state for `namespace`: `<root>/<namespace>`, with `root` from the
/// runc options or else `<state dir>/runc`.
pub fn runc_root(address: &str, options_root: &str, namespace: &str) -> io::Result<PathBuf> {
    let root = if options_root.is_empty() {
        state_dir(address)?.join("runc")
    } else {
        PathBuf::from(options_root)
    };
    Ok(root.join(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_go_shims_socket_under_containerd() {
        // sha256("/run/containerd/containerd.sock/default/web")
        let p = socket_path("/run/containerd/containerd.sock", "default", "web").unwrap();
        let expect = Sha256::digest(b"/run/containerd/containerd.sock/default/web");
        let hex: String = expect.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(p, PathBuf::from(format!("/run/containerd/s/{hex}")));
        assert_eq!(
            socket_path("unix:///run/corral/corral.sock", "edge", "x")
                .unwrap()
                .parent()
                .unwrap(),
            Path::new("/run/corral/s")
        );
    }

    #[test]
    fn joins_and_cleans_like_go() {
        assert_eq!(go_join(&["/run/c.sock/", "ns", "id"]), "/run/c.sock/ns/id");
        assert_eq!(clean("/a/./b/../c//"), "/a/c");
        assert_eq!(clean("/../a"), "/a");
    }

    #[test]
    fn runc_root_follows_the_options() {
        assert_eq!(
            runc_root("/run/containerd/containerd.sock", "", "default").unwrap(),
            PathBuf::from("/run/containerd/runc/default")
        );
        assert_eq!(
            runc_root("/run/corral/corral.sock", "/tmp/r", "edge").unwrap(),
            PathBuf::from("/tmp/r/edge")
        );
        assert!(state_dir("relative.sock").is_err());
    }

    #[test]
    fn refuses_socket_paths_that_do_not_fit() {
        let long = format!("/{}/c.sock", "x".repeat(60));
        assert!(socket_path(&long, "default", "id").is_err());
    }
}
