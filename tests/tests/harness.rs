//! Tests of the test harness itself: cleanup must really happen (processes, mounts,
//! directories, cgroups), also when a test panics, and a private containerd must leave the
//! host alone.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_tests::harness::cgroups::cgroup_dirs_of;
use corral_tests::harness::{
    leaked_processes, mounts_under, on_ci, require, require_root, require_tool, run_with_deadline,
    wait_for, wait_for_socket, ChildGuard, ContainerdOptions, MountNs, PrivateContainerd,
    ProcessInfo, TempRoot, TreeSnapshot,
};

/// Host paths a private containerd must never create or change.
const HOST_CONTAINERD_PATHS: &[&str] =
    &["/run/containerd", "/var/lib/containerd", "/opt/containerd"];

/// A string no other process on the machine has in its command line.
fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `sleep` arguments that sleep ~1000 s and make the command line unique: GNU sleep sums them.
fn unique_sleep_args() -> (String, [String; 2]) {
    static COUNTER: AtomicU32 = AtomicU32::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let fraction = format!("0.{}{:04}", std::process::id(), n);
    (format!("1000 {fraction}"), ["1000".to_string(), fraction])
}

fn mount_tmpfs(at: &Path) {
    std::fs::create_dir_all(at).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap_or_else(|e| panic!("mount tmpfs at {}: {e}", at.display()));
}

#[test]
fn require_passes_when_available_and_follows_ci_rule_otherwise() {
    assert!(require("something present", true));
    let missing = std::panic::catch_unwind(|| require("something absent", false));
    if on_ci() {
        let message = missing.expect_err("CI=true must turn a missing requirement into a failure");
        let text = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            text.contains("CI=true and something absent is missing"),
            "{text}"
        );
    } else {
        assert!(!missing.unwrap());
    }
}

#[test]
fn wait_for_times_out_naming_what() {
    let start = Instant::now();
    let mut calls = 0;
    let err = wait_for(Duration::from_millis(150), "the moon to turn blue", || {
        calls += 1;
        false
    })
    .unwrap_err();
    assert!(err.contains("the moon to turn blue"), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(calls > 2, "polled only {calls} times");
}

#[test]
fn wait_for_returns_as_soon_as_the_condition_holds() {
    let start = Instant::now();
    let mut calls = 0;
    wait_for(Duration::from_secs(10), "the third call", || {
        calls += 1;
        calls == 3
    })
    .unwrap();
    assert_eq!(calls, 3);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn wait_for_socket_sees_a_late_listener_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let bind_path = path.clone();
    let (tx, rx) = mpsc::channel();
    let binder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let listener = UnixListener::bind(&bind_path).unwrap();
        // Keep the listener open until the test has connected.
        let _ = rx.recv_timeout(Duration::from_secs(10));
        drop(listener);
    });
    wait_for_socket(&path, Duration::from_secs(10)).unwrap();
    tx.send(()).unwrap();
    binder.join().unwrap();

    let missing = dir.path().join("never.sock");
    let err = wait_for_socket(&missing, Duration::from_millis(100)).unwrap_err();
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn child_guard_kills_and_reaps_its_child() {
    if require_tool("sleep").is_none() {
        return;
    }
    let (marker, args) = unique_sleep_args();
    let guard = ChildGuard::spawn("sleep", Command::new("sleep").args(&args)).unwrap();
    let pid = guard.pid() as i32;
    // Until the child has exec'd, its command line is still ours: wait for sleep's.
    wait_for(Duration::from_secs(10), "sleep to start", || {
        leaked_processes(&marker).len() == 1
    })
    .unwrap();
    let process = ProcessInfo::read(pid).unwrap();
    drop(guard);
    assert!(!process.is_running());
    assert!(leaked_processes(&marker).is_empty());
    // Reaped: the pid is no longer our zombie child.
    let status = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    assert!(
        status.map(|s| !s.contains(") Z ")).unwrap_or(true),
        "pid {pid} left a zombie"
    );
}

#[test]
fn child_guard_falls_back_to_sigkill() {
    if require_tool("sh").is_none() {
        return;
    }
    let marker = unique("ignores-term");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "trap '' TERM; while :; do sleep 0.05; done", &marker]);
    let mut guard = ChildGuard::spawn("stubborn", &mut cmd)
        .unwrap()
        .with_grace(Duration::from_millis(200));
    // Let the shell install its trap before it is signalled.
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let status = guard.stop().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(leaked_processes(&marker).is_empty());
}

#[test]
fn run_with_deadline_returns_output_and_kills_overruns() {
    if require_tool("sh").is_none() || require_tool("sleep").is_none() {
        return;
    }
    let output = run_with_deadline(
        Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");

    let (marker, args) = unique_sleep_args();
    let err = run_with_deadline(
        Command::new("sleep").args(&args),
        Duration::from_millis(200),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(leaked_processes(&marker).is_empty());
}

#[test]
// The children are deliberately not waited on: the TempRoot must kill and reap them.
#[allow(clippy::zombie_processes)]
fn temp_root_unmounts_kills_and_removes_even_on_panic() {
    if !require_root("mounts tmpfs inside a TempRoot") || require_tool("sleep").is_none() {
        return;
    }
    struct Sent {
        path: PathBuf,
        marker: String,
        registered: ProcessInfo,
        mentioning: ProcessInfo,
        grandchild_marker: String,
        racing_marker: String,
    }
    let (tx, rx) = mpsc::channel::<Sent>();
    let test = std::thread::spawn(move || {
        let temp = TempRoot::new().unwrap();
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("corral-test-"), "{name}");
        assert!(temp.root().is_dir() && temp.state().is_dir());
        // Stacked and nested mounts, and a path that mountinfo escapes (\040).
        mount_tmpfs(&temp.join("mnt"));
        mount_tmpfs(&temp.join("mnt"));
        mount_tmpfs(&temp.join("mnt/inner dir"));
        std::fs::write(temp.join("mnt/inner dir/file"), "x").unwrap();
        let mounted = mounts_under(temp.path()).unwrap();
        assert_eq!(mounted.len(), 3, "{mounted:?}");
        assert!(mounted.contains(&temp.join("mnt/inner dir")), "{mounted:?}");

        // One registered process; one that merely mentions the directory, with a child; and
        // one that is still forking its child when cleanup starts.
        let (_, args) = unique_sleep_args();
        let registered = Command::new("sleep")
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        temp.register_pid(registered.id()).unwrap();
        let (grandchild_marker, grandchild) = unique_sleep_args();
        let script = format!(
            "sleep {} {} & wait # {}",
            grandchild[0],
            grandchild[1],
            temp.path().display()
        );
        let spawn_sh = |script: &str| {
            Command::new("sh")
                .args(["-c", script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mentioning = spawn_sh(&script);
        wait_for(Duration::from_secs(10), "the shell's child", || {
            !leaked_processes(&grandchild_marker).is_empty()
        })
        .unwrap();
        let (racing_marker, racing) = unique_sleep_args();
        let racing_script = format!(
            "sleep {} {} & wait # {}",
            racing[0],
            racing[1],
            temp.path().display()
        );
        spawn_sh(&racing_script);
        let registered = ProcessInfo::read(registered.id() as i32).unwrap();
        let mentioning = ProcessInfo::read(mentioning.id() as i32).unwrap();
        tx.send(Sent {
            path: temp.path().to_path_buf(),
            marker: temp.marker().to_string(),
            registered,
            mentioning,
            grandchild_marker,
            racing_marker,
        })
        .unwrap();
        panic!("the test fails; the TempRoot must still clean up");
    });
    assert!(test.join().is_err(), "the thread was meant to panic");
    let sent = rx.recv().unwrap();
    assert!(
        !sent.path.exists(),
        "{} was not removed",
        sent.path.display()
    );
    assert!(mounts_under(&sent.path).unwrap().is_empty());
    assert!(
        !sent.registered.is_running(),
        "registered {} still running",
        sent.registered
    );
    assert!(
        !sent.mentioning.is_running(),
        "{} still running",
        sent.mentioning
    );
    assert!(leaked_processes(&sent.marker).is_empty());
    assert!(leaked_processes(&sent.grandchild_marker).is_empty());
    assert!(leaked_processes(&sent.racing_marker).is_empty());
}

/// Parses `ctr version`: the `Version:` line of the `Server:` section.
fn server_version(ctr_version: &str) -> Option<String> {
    let server = ctr_version.split("Server:").nth(1)?;
    let line = server
        .lines()
        .find(|l| l.trim_start().starts_with("Version:"))?;
    Some(
        line.trim_start()
            .trim_start_matches("Version:")
            .trim()
            .to_string(),
    )
}

fn host_snapshots() -> Vec<TreeSnapshot> {
    HOST_CONTAINERD_PATHS
        .iter()
        .map(|p| TreeSnapshot::take(Path::new(p)).unwrap())
        .collect()
}

fn assert_host_untouched(before: &[TreeSnapshot]) {
    for (earlier, path) in before.iter().zip(HOST_CONTAINERD_PATHS) {
        let now = TreeSnapshot::take(Path::new(path)).unwrap();
        let changes = now.changes_since(earlier);
        assert!(
            changes.is_empty(),
            "the host's {path} changed: {changes:#?}"
        );
    }
}

fn require_containerd() -> bool {
    require_root("runs a private containerd in its own mount namespace")
        && require_tool("containerd").is_some()
        && require_tool("ctr").is_some()
}

#[test]
fn private_containerd_serves_ctr_and_leaves_nothing_behind() {
    if !require_containerd() {
        return;
    }
    let host_before = host_snapshots();
    let start = Instant::now();
    let containerd = PrivateContainerd::start().unwrap();
    eprintln!("private containerd up in {:?}", start.elapsed());

    let path = containerd.temp().path().to_path_buf();
    let marker = containerd.temp().marker().to_string();
    let ns = containerd.mount_ns();
    assert_ne!(ns, MountNs::current().unwrap());
    assert_eq!(containerd.address(), path.join("containerd.sock"));
    assert!(containerd.root().starts_with(&path) && containerd.state().starts_with(&path));
    assert!(containerd.log_path().is_file());
    let config = std::fs::read_to_string(containerd.config_path()).unwrap();
    assert!(config.contains("version = 2"), "{config}");
    assert!(config.contains("\"io.containerd.grpc.v1.cri\""), "{config}");

    let version = containerd.ctr(["version"]).unwrap();
    let server = server_version(&version).unwrap_or_default();
    assert!(
        server.starts_with("1.6."),
        "server version {server:?} in:\n{version}"
    );

    containerd.ctr(["namespaces", "create", "t1"]).unwrap();
    let namespaces = containerd.ctr(["namespaces", "ls", "-q"]).unwrap();
    assert!(namespaces.lines().any(|l| l.trim() == "t1"), "{namespaces}");
    // The metadata went to our root, not the host's.
    assert!(containerd
        .root()
        .join("io.containerd.metadata.v1.bolt/meta.db")
        .is_file());

    // /run inside the namespace is containerd's own tmpfs, not the host's.
    let inside = run_with_deadline(
        containerd.command("sh").args(["-c", "ls -A /run"]),
        Duration::from_secs(10),
    )
    .unwrap();
    let listing = String::from_utf8_lossy(&inside.stdout);
    assert!(inside.status.success(), "{inside:?}");
    assert!(
        listing.lines().all(|l| l == "containerd"),
        "unexpected /run in containerd's namespace: {listing}"
    );

    // `command` keeps the working directory it is given, although it enters a namespace.
    let pwd = run_with_deadline(
        containerd.command("pwd").current_dir(containerd.state()),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&pwd.stdout).trim_end(),
        containerd.state().to_string_lossy()
    );

    let stop = Instant::now();
    drop(containerd);
    eprintln!("private containerd cleaned up in {:?}", stop.elapsed());
    eprintln!("private containerd test took {:?}", start.elapsed());

    assert!(!path.exists(), "{} was not removed", path.display());
    assert!(mounts_under(&path).unwrap().is_empty());
    assert!(
        leaked_processes(&marker).is_empty(),
        "{:?}",
        leaked_processes(&marker)
    );
    assert!(ns.processes().is_empty(), "{:?}", ns.processes());
    assert_host_untouched(&host_before);
}

#[test]
fn private_containerd_cleanup_kills_running_containers_on_panic() {
    if !require_containerd()
        || require_tool("runc").is_none()
        || require_tool("containerd-shim-runc-v2").is_none()
    {
        return;
    }
    let Some(busybox) = require_tool("busybox") else {
        return;
    };
    struct Seen {
        path: PathBuf,
        marker: String,
        ns: MountNs,
        shim: ProcessInfo,
        container: ProcessInfo,
        cgroups: Vec<PathBuf>,
    }
    let host_before = host_snapshots();
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<Seen>();
    let test = std::thread::spawn(move || {
        let containerd = PrivateContainerd::start().unwrap();
        let rootfs = containerd.temp().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).unwrap();
        let id = unique("harness");
        let rootfs_arg = rootfs.to_string_lossy().into_owned();
        containerd
            .ctr([
                "run",
                "-d",
                "--rootfs",
                &rootfs_arg,
                &id,
                "/bin/sleep",
                "1000",
            ])
            .unwrap();
        let tasks = containerd.ctr(["tasks", "ls"]).unwrap();
        let pid: i32 = tasks
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id.as_str()))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid for {id} in:\n{tasks}"));
        let container = ProcessInfo::read(pid).unwrap();
        let shim = ProcessInfo::read(container.ppid).unwrap();
        assert!(shim.cmdline.contains("containerd-shim-runc-v2"), "{shim}");
        let cgroups: Vec<PathBuf> = cgroup_dirs_of(pid)
            .unwrap()
            .into_iter()
            .filter(|d| d.ends_with(&id))
            .collect();
        assert!(!cgroups.is_empty(), "no cgroup named {id} for pid {pid}");
        tx.send(Seen {
            path: containerd.temp().path().to_path_buf(),
            marker: containerd.temp().marker().to_string(),
            ns: containerd.mount_ns(),
            shim,
            container,
            cgroups,
        })
        .unwrap();
        panic!("the test fails with a container running; cleanup must still happen");
    });
    assert!(test.join().is_err(), "the thread was meant to panic");
    eprintln!("container test took {:?}", start.elapsed());
    let seen = rx.recv().unwrap();
    assert!(
        !seen.container.is_running(),
        "container {} survived",
        seen.container
    );
    assert!(!seen.shim.is_running(), "shim {} survived", seen.shim);
    assert!(seen.ns.processes().is_empty(), "{:?}", seen.ns.processes());
    assert!(leaked_processes(&seen.marker).is_empty());
    assert!(
        !seen.path.exists(),
        "{} was not removed",
        seen.path.display()
    );
    assert!(mounts_under(&seen.path).unwrap().is_empty());
    for dir in &seen.cgroups {
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    assert_host_untouched(&host_before);
}

#[test]
fn private_containerd_start_failure_shows_the_log_and_cleans_up() {
    if !require_containerd() {
        return;
    }
    let options = ContainerdOptions {
        extra_config: "this is = = not toml".to_string(),
        ..ContainerdOptions::default()
    };
    let err = PrivateContainerd::start_with(options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("containerd exited"), "{err}");
    // The log's tail is part of the error: containerd says what is wrong with the config.
    assert!(err.to_lowercase().contains("toml"), "{err}");
    let log = err
        .split("last lines of ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no log path in: {err}"));
    let dir = log.parent().unwrap();
    assert!(dir.starts_with(std::env::temp_dir().canonicalize().unwrap()));
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
