//! `corrald` against containerd's own Go client types: Debian's Go ttrpc 1.1.1 with
//! containerd 1.6.20's namespaces, containers and leases messages (the `daemonclient` program,
//! see `tests/go/README.md`), through corrald's socket.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use corral_tests::go;
use corral_tests::harness::{require, require_root, run_with_deadline, Corrald, TempRoot};

const DEADLINE: Duration = Duration::from_secs(10);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const NAMESPACE: &str = "interop";

/// Every check the Go program runs, in order; each must print `ok <check>`.
const CHECKS: &[&str] = &[
    "namespaces-crud",
    "namespaces-get-missing",
    "containers-create-get",
    "containers-list-filter",
    "containers-update-mask",
    "duplicate-create",
    "no-namespace",
    "containers-delete",
    "leases",
];

#[test]
fn go_client_with_containerd_types_against_corrald() {
    if !require_root("corrald chowns its socket to [ttrpc] uid:gid (root:root)") {
        return;
    }
    if !require(
        "go and Debian's Go ttrpc and containerd sources",
        go::go_available(),
    ) {
        return;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-interop");
    let client = go::build_package(
        &out,
        "corral-interop/daemonclient",
        "corral-interop-daemonclient",
    )
    .unwrap_or_else(|e| panic!("building the Go daemon client failed: {e}"));

    let temp = TempRoot::new().unwrap();
    let daemon = Corrald::start(&temp, "corrald.log", "").unwrap();

    let result = run_with_deadline(
        Command::new(&client)
            .arg("-socket")
            .arg(daemon.address())
            .arg("-namespace")
            .arg(NAMESPACE),
        CLIENT_TIMEOUT,
    )
    .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(
        result.status.code(),
        Some(0),
        "Go client failed\nstdout:\n{stdout}\nstderr:\n{stderr}\ncorrald log:\n{}",
        daemon.log_text()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for check in CHECKS {
        let want = format!("ok {check}");
        assert!(
            lines.contains(&want.as_str()),
            "missing `{want}`\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    // Known differences from containerd's answers (codes match; see tests/go/README.md).
    for note in lines.iter().filter(|l| l.starts_with("note ")) {
        eprintln!("{note}");
    }

    // SIGTERM: exit 0 and the socket removed.
    daemon.stop_clean(DEADLINE);
}
