//! `corrald` against containerd's own Go client types: Debian's Go ttrpc 1.1.1 with
//! containerd 1.6.20's namespaces, containers and leases messages (the `daemonclient` program,
//! see `tests/go/README.md`), through corrald's socket.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_tests::bins::corral_binary;
use corral_tests::go;
use corral_tests::harness::{
    require, require_root, run_with_deadline, wait_for_socket, ChildGuard, TempRoot,
};
use nix::sys::signal::Signal;

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

fn log_of(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

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
    let socket = temp.join("run/corral.sock");
    let config = temp.join("config.toml");
    fs::write(&config, "version = 2\n").unwrap();
    let log_path = temp.join("corrald.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(corral_binary("corrald").unwrap());
    cmd.arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(temp.root())
        .arg("--state")
        .arg(temp.state())
        .arg("--address")
        .arg(&socket)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut daemon = ChildGuard::spawn("corrald", &mut cmd).unwrap();
    wait_for_socket(&socket, DEADLINE)
        .unwrap_or_else(|e| panic!("{e}; corrald log: {}", log_of(&log_path)));

    let result = run_with_deadline(
        Command::new(&client)
            .arg("-socket")
            .arg(format!("unix://{}", socket.display()))
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
        log_of(&log_path)
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

    daemon.signal(Signal::SIGTERM).unwrap();
    let status = daemon
        .wait_timeout(DEADLINE)
        .unwrap()
        .expect("corrald stopped after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", log_of(&log_path));
    assert!(!socket.exists(), "socket left behind");
}
