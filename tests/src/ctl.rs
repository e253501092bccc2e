//! Running `corralctl` in tests: a command with no address, namespace or snapshotter from the
//! environment and stdin closed, and helpers that run it against a daemon and check it exited
//! as expected, never with a Rust panic message.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::bins::corral_binary;

/// `corralctl`, with `CORRAL_ADDRESS`, `CORRAL_NAMESPACE` and `CORRAL_SNAPSHOTTER` removed.
pub fn corralctl() -> Command {
    let mut cmd = Command::new(corral_binary("corralctl").expect("corralctl is built"));
    cmd.env_remove("CORRAL_ADDRESS")
        .env_remove("CORRAL_NAMESPACE")
        .env_remove("CORRAL_SNAPSHOTTER")
        .stdin(Stdio::null());
    cmd
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `corralctl -a ADDRESS -n NS ARGS...`, asserting it did not panic.
pub fn ctl(address: &Path, ns: &str, args: &[&str]) -> Output {
    let out = corralctl()
        .arg("-a")
        .arg(address)
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("running corralctl");
    assert!(
        !stderr(&out).contains("panicked"),
        "{args:?}: {}",
        stderr(&out)
    );
    out
}

/// [`ctl`] that must succeed; its stdout.
pub fn ok(address: &Path, ns: &str, args: &[&str]) -> String {
    let out = ctl(address, ns, args);
    assert!(
        out.status.success(),
        "corralctl {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// [`ctl`] that must fail with exit code 1; its stderr.
pub fn fails(address: &Path, ns: &str, args: &[&str]) -> String {
    let out = ctl(address, ns, args);
    assert_eq!(out.status.code(), Some(1), "corralctl {args:?}: {out:?}");
    stderr(&out)
}
