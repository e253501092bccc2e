//! Builds Corral's Go ttrpc interop programs (`tests/go/`, see `tests/go/README.md`).
//!
//! The programs use Debian's Go ttrpc 1.1.1 and containerd 1.6.20's own Go types
//! (`golang-go`, `golang-github-containerd-ttrpc-dev`, `golang-github-containerd-containerd-dev`),
//! built in GOPATH mode: no module proxy, no network.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `golang-*-dev` packages put their sources (a GOPATH).
pub const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// Name of the client binary in the output directory.
pub const CLIENT_BIN: &str = "corral-interop-client";
/// Name of the server binary in the output directory.
pub const SERVER_BIN: &str = "corral-interop-server";

const CLIENT_PKG: &str = "corral-interop/client";
const SERVER_PKG: &str = "corral-interop/server";

/// Paths of the built Go interop programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoInterop {
    /// `client -socket PATH -namespace NS [-checks abcdef]`: Go ttrpc client that checks a
    /// Rust ttrpc server.
    pub client: PathBuf,
    /// `server -socket PATH`: Go ttrpc server that Rust clients call.
    pub server: PathBuf,
}

/// The repository root (the parent of the `tests` crate).
fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.join(".."))
}

/// `<repo>/tests/go`, the GOPATH entry that holds the programs' sources.
pub fn go_src_root() -> PathBuf {
    repo_root().join("tests").join("go")
}

/// Finds an executable called `name` on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// True when the Go toolchain is on `PATH` and Debian's Go ttrpc and containerd sources are
/// installed, i.e. when [`build`] can work.
pub fn go_available() -> bool {
    let src = Path::new(DEBIAN_GOPATH).join("src/github.com/containerd");
    find_on_path("go").is_some()
        && src.join("ttrpc").is_dir()
        && src.join("containerd/api").is_dir()
}

/// Builds both interop programs into `out_dir` (created if needed) as [`CLIENT_BIN`] and
/// [`SERVER_BIN`], with the Go build cache in `out_dir/gocache`.
///
/// A failed build returns an error carrying `go`'s stderr; a missing `go` returns
/// `ErrorKind::NotFound`.
pub fn build(out_dir: &Path) -> io::Result<GoInterop> {
    let client = build_package(out_dir, CLIENT_PKG, CLIENT_BIN)?;
    let server = build_package(out_dir, SERVER_PKG, SERVER_BIN)?;
    Ok(GoInterop { client, server })
}

/// Builds one Go package of `tests/go/src` (e.g. `corral-bolt-bench`, which needs
/// Debian's `golang-github-coreos-bbolt-dev`) into `out_dir/bin_name`, the same way as
/// [`build`]: GOPATH mode, no network, the Go build cache in `out_dir/gocache`.
pub fn build_package(out_dir: &Path, pkg: &str, bin_name: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(out_dir)?;
    let out_dir = std::path::absolute(out_dir)?;
    let go = find_on_path("go").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "`go` not found on PATH (install Debian's golang-go)",
        )
    })?;
    let gocache = out_dir.join("gocache");
    std::fs::create_dir_all(&gocache)?;
    let gopath = std::env::join_paths([go_src_root().as_os_str(), OsStr::new(DEBIAN_GOPATH)])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let bin = out_dir.join(bin_name);
    let output = Command::new(&go)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(pkg)
        .current_dir(go_src_root())
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", &gocache)
        .env("GOFLAGS", "")
        .env("GOENV", "off")
        .env("CGO_ENABLED", "0")
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("running `{} build {pkg}`: {e}", go.display()),
            )
        })?;
    if !output.status.success() || !bin.is_file() {
        return Err(io::Error::other(format!(
            "`go build -o {} {pkg}` (GO111MODULE=off, GOPATH={}) failed with {}:\n{}{}",
            bin.display(),
            gopath.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
        )));
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_both_programs() {
        if !go_available() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "Go toolchain or Debian's Go ttrpc/containerd sources missing on CI"
            );
            eprintln!("skipping: Go toolchain or Debian's Go ttrpc/containerd sources missing");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let built = build(dir.path()).expect("go build");
        assert!(built.client.is_file());
        assert!(built.server.is_file());
    }
}
