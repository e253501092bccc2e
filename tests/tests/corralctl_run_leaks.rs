//! `corralctl run` through a private corrald, as a user runs it: 100 sequential `run --rm` of
//! the bundled busybox image leave nothing behind (no descriptor in corrald, mount, process,
//! cgroup, bundle, runc state, shim socket, container or snapshot), and `--net-host` shares
//! the host's network while the default gives a container only its own loopback.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_tests::harness::procs::{descendants, processes, ProcessInfo};
use corral_tests::harness::{leaked_processes, mounts_under, wait_for};
use corral_tests::run_env::RunEnv;

/// Sequential `run --rm`s of the leak test.
const RUNS: usize = 100;
/// Descriptors corrald may hold after the last run beyond those it held after the first
/// (a lazily opened file, a connection not yet closed by a client that just exited).
const FD_SLACK: usize = 4;
/// How long shims may take to exit after their task is deleted.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// The processes that mention the test's directory, corrald itself aside: shims (their
/// `-address` is under it) and anything they started.
fn leftovers(env: &RunEnv) -> Vec<ProcessInfo> {
    let daemon = env.d().pid() as i32;
    leaked_processes(env.temp.marker())
        .into_iter()
        .filter(|p| p.pid != daemon)
        .collect()
}

fn wait_for_no_leftovers(env: &RunEnv) {
    if wait_for(EXIT_DEADLINE, "the shims to exit", || {
        leftovers(env).is_empty()
    })
    .is_err()
    {
        panic!(
            "processes left: {:?}; log: {}",
            leftovers(env),
            env.d().log_text()
        );
    }
}

/// corrald's open descriptors.
fn fd_count(env: &RunEnv) -> usize {
    fs::read_dir(format!("/proc/{}/fd", env.d().pid()))
        .unwrap()
        .count()
}

/// The entries of a directory (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Where a task's files live: bundles under the state, work directories under the root,
/// runc's state and the shims' sockets beside corrald's socket.
fn task_dirs(env: &RunEnv) -> Vec<PathBuf> {
    let v2 = "io.containerd.runtime.v2.task";
    vec![
        env.temp.state().join(v2).join(env.ns),
        env.temp.root().join(v2).join(env.ns),
        env.temp.join("run/runc").join(env.ns),
        env.temp.join("run/s"),
        env.fifo_dir(),
    ]
}

/// `snapshots ls`, one line per snapshot (header skipped), sorted.
fn snapshot_lines(env: &RunEnv) -> BTreeSet<String> {
    env.ok(&["snapshots", "ls"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn a_hundred_run_rm_leave_nothing() {
    let Some(env) = RunEnv::start("run-leaks", "") else {
        return;
    };
    let snapshots = snapshot_lines(&env);
    assert!(!snapshots.is_empty(), "the import unpacked no snapshot");

    let started = Instant::now();
    let out = run(&env, &["--rm"], "leak0", &["echo", "first"]);
    assert_eq!(out, "first\n");
    wait_for_no_leftovers(&env);
    let fds_after_first = fd_count(&env);
    for i in 1..RUNS {
        run(&env, &["--rm"], &format!("leak{i}"), &["true"]);
    }
    let took = started.elapsed();
    eprintln!(
        "{RUNS} × corralctl run --rm: {took:?} ({:?} each)",
        took / RUNS as u32
    );

    wait_for_no_leftovers(&env);
    let fds = fd_count(&env);
    eprintln!("corrald's descriptors: {fds_after_first} after the first run, {fds} after the last");
    assert!(
        fds <= fds_after_first + FD_SLACK,
        "corrald's descriptors grew from {fds_after_first} after the first run to {fds}"
    );
    let table = processes();
    let children = descendants(&table, &[env.d().pid() as i32]);
    assert!(children.is_empty(), "corrald's children left: {children:?}");
    assert_eq!(
        mounts_under(env.temp.path()).unwrap(),
        Vec::<PathBuf>::new()
    );
    for dir in task_dirs(&env) {
        assert_eq!(
            entries(&dir),
            Vec::<String>::new(),
            "left in {}",
            dir.display()
        );
    }
    assert_eq!(env.ok(&["containers", "ls", "-q"]), "");
    assert_eq!(env.ok(&["tasks", "ls", "-q"]), "");
    assert_eq!(snapshot_lines(&env), snapshots, "snapshots changed");
    let (_, container_cgroups) = env.new_cgroups();
    assert!(
        container_cgroups.is_empty(),
        "container cgroups left: {container_cgroups:?}"
    );
    env.finish();
}

/// The interface names of a `/proc/net/dev` text, sorted.
fn interfaces(net_dev: &str) -> BTreeSet<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

#[test]
fn net_host_shares_the_hosts_interfaces() {
    let Some(env) = RunEnv::start("run-net", "") else {
        return;
    };
    let host = interfaces(&fs::read_to_string("/proc/net/dev").unwrap());
    assert!(host.len() > 1, "the host has only {host:?}");
    let shared = run(
        &env,
        &["--rm", "--net-host"],
        "nethost",
        &["cat", "/proc/net/dev"],
    );
    assert_eq!(interfaces(&shared), host, "{shared}");
    let own = run(&env, &["--rm"], "netown", &["cat", "/proc/net/dev"]);
    assert_eq!(
        interfaces(&own),
        BTreeSet::from(["lo".to_string()]),
        "{own}"
    );
    wait_for_no_leftovers(&env);
    assert_eq!(env.ok(&["containers", "ls", "-q"]), "");
    env.finish();
}

/// `corralctl run FLAGS --fifo-dir <temp>/fifo busybox ID ARGS...`: its stdout.
fn run(env: &RunEnv, flags: &[&str], id: &str, args: &[&str]) -> String {
    env.ok(&env.run_args(flags, id, args))
}
