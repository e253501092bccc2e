//! Test prerequisites: root, tools on `PATH`, anything else a test needs from the machine.
//!
//! The rule (conventions.md, "Tests"): when a requirement is missing, a test **fails** if the
//! environment says `CI=true`, and otherwise skips with a printed reason. Every check here
//! follows it, so a test starts with
//!
//! ```no_run
//! # use corral_tests::harness::require_root;
//! if !require_root("mounts a tmpfs") {
//!     return;
//! }
//! ```

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// True when the environment variable `CI` says we run on CI (`true` or `1`, any case).
pub fn on_ci() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// True when the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Checks one requirement: returns `true` when `available`; otherwise panics when `CI=true`
/// and prints `skipping: <what> missing` to stderr and returns `false` when not.
pub fn require(what: &str, available: bool) -> bool {
    require_because(what, available, "")
}

/// Like [`require`], with the reason the test needs `what` (printed, and part of the panic).
pub fn require_because(what: &str, available: bool, reason: &str) -> bool {
    if available {
        return true;
    }
    let test = std::thread::current()
        .name()
        .map(|n| format!(" [{n}]"))
        .unwrap_or_default();
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    };
    if on_ci() {
        panic!("CI=true and {what} is missing: this test cannot be skipped on CI{reason}{test}");
    }
    eprintln!("skipping: {what} missing{reason}{test}");
    false
}

/// Requires an effective uid of 0; `reason` says what the test does as root.
pub fn require_root(reason: &str) -> bool {
    require_because("root", is_root(), reason)
}

/// Requires the program `name` (a bare name searched on `PATH`, or a path) and returns its
/// path; `None` means "skip" (off CI) — on CI a missing tool panics.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    match find_on_path(name) {
        Some(path) => Some(path),
        None => {
            let path = std::env::var("PATH").unwrap_or_default();
            require_because(name, false, &format!("not found on PATH={path}"));
            None
        }
    }
}

/// Looks `name` up like a shell does: a name with a `/` is taken as a path, anything else is
/// searched in the directories of `PATH`. Only executable regular files count.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = Path::new(name);
        return is_executable(path).then(|| path.to_path_buf());
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(OsStr::new(name)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
