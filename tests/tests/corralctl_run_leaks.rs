//! `corralctl run` through a private corrald, as a user runs it: 100 sequential `run --rm` of
//! the bundled busybox image leave nothing behind (no descriptor in corrald, mount, process,
//! cgroup, bundle, runc state, shim socket, container or snapshot), and `--net-host` shares
//! the host's network while the default gives a container only its own loopback.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use corral_tests::ctl::{corralctl, stderr, stdout};
use corral_tests::harness::cgroups::{cgroup_mounts, CgroupSnapshot};
use corral_tests::harness::procs::{descendants, processes, ProcessInfo};
use corral_tests::harness::{
    leaked_processes, mounts_under, require_root, require_tool, run_with_deadline, wait_for,
    Corrald, TempRoot,
};

const IMAGE: &str = "docker.io/corral/busybox:latest";
/// Sequential `run --rm`s of the leak test.
const RUNS: usize = 100;
/// Descriptors corrald may hold after the last run beyond those it held after the first
/// (a lazily opened file, a connection not yet closed by a client that just exited).
const FD_SLACK: usize = 4;
/// Deadline of one corralctl command.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);
/// How long shims may take to exit after their task is deleted.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// A private corrald with busybox imported, in namespace `ns`.
struct Env {
    ns: &'static str,
    d: Option<Corrald>,
    cgroups: CgroupSnapshot,
    temp: TempRoot,
}

impl Env {
    fn start(ns: &'static str) -> Option<Env> {
        if !require_root("runs containers") || require_tool("runc").is_none() {
            return None;
        }
        let cgroups = CgroupSnapshot::take().unwrap();
        let temp = TempRoot::new().unwrap();
        let d = Corrald::start(&temp, "corrald.log", "").unwrap();
        let env = Env {
            ns,
            d: Some(d),
            cgroups,
            temp,
        };
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-oci.tar");
        env.ok(&["images", "import", fixture.to_str().unwrap()]);
        Some(env)
    }

    fn d(&self) -> &Corrald {
        self.d.as_ref().expect("corrald is running")
    }

    /// `corralctl -a SOCKET -n NS ARGS...` within [`COMMAND_DEADLINE`], never panicking.
    fn ctl(&self, args: &[&str]) -> Output {
        let mut cmd = corralctl();
        cmd.arg("-a").arg(self.d().socket()).args(["-n", self.ns]);
        cmd.args(args);
        let out = run_with_deadline(&mut cmd, COMMAND_DEADLINE)
            .unwrap_or_else(|e| panic!("corralctl {args:?}: {e}; log: {}", self.d().log_text()));
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
        out
    }

    /// [`ctl`](Self::ctl) that must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "corralctl {args:?}: {}\nstdout: {}\nstderr: {}\ncorrald's log: {}",
            out.status,
            stdout(&out),
            stderr(&out),
            self.d().log_text()
        );
        stdout(&out)
    }

    /// The processes that mention the test's directory, corrald itself aside: shims (their
    /// `-address` is under it) and anything they started.
    fn leftovers(&self) -> Vec<ProcessInfo> {
        let daemon = self.d().pid() as i32;
        leaked_processes(self.temp.marker())
            .into_iter()
            .filter(|p| p.pid != daemon)
            .collect()
    }

    fn wait_for_no_leftovers(&self) {
        if wait_for(EXIT_DEADLINE, "the shims to exit", || {
            self.leftovers().is_empty()
        })
        .is_err()
        {
            panic!(
                "processes left: {:?}; log: {}",
                self.leftovers(),
                self.d().log_text()
            );
        }
    }

    /// corrald's open descriptors.
    fn fd_count(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.d().pid()))
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
    fn task_dirs(&self) -> Vec<PathBuf> {
        let v2 = "io.containerd.runtime.v2.task";
        vec![
            self.temp.state().join(v2).join(self.ns),
            self.temp.root().join(v2).join(self.ns),
            self.temp.join("run/runc").join(self.ns),
            self.temp.join("run/s"),
            self.temp.join("fifo"),
        ]
    }

    /// This namespace's cgroups made since the start: `<mount>/<ns>` (the parent the
    /// containers' `/<ns>/<id>` cgroups go under), and the directories below it.
    fn new_cgroups(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let mut parents = Vec::new();
        let mut children = Vec::new();
        for mount in cgroup_mounts().unwrap_or_default() {
            let top = mount.mount_point.join(self.ns);
            if !top.is_dir() || self.cgroups.contains(&top) {
                continue;
            }
            if let Ok(dir) = fs::read_dir(&top) {
                children.extend(
                    dir.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.is_dir()),
                );
            }
            parents.push(top);
        }
        (parents, children)
    }

    /// Stops corrald cleanly and asserts the namespace left no container cgroup; dropping
    /// then removes its empty parents.
    fn finish(mut self) {
        if let Some(d) = self.d.take() {
            d.stop_clean(Duration::from_secs(20));
        }
        let (_, children) = self.new_cgroups();
        assert!(children.is_empty(), "container cgroups left: {children:?}");
        let (parents, _) = self.new_cgroups();
        let left = self.cgroups.remove_new(&parents, EXIT_DEADLINE);
        assert!(left.is_empty(), "cgroups left: {left:?}");
    }
}

impl Drop for Env {
    /// Also after a failure: corrald, its shims and their containers killed, mounts and files
    /// removed, then the cgroups the containers made (children before parents).
    fn drop(&mut self) {
        drop(self.d.take());
        if let Err(e) = self.temp.cleanup() {
            eprintln!("cleaning up {}: {e}", self.temp.path().display());
        }
        let (parents, children) = self.new_cgroups();
        let left = self
            .cgroups
            .remove_new(&[children, parents].concat(), EXIT_DEADLINE);
        if !left.is_empty() {
            eprintln!("cgroups left: {left:?}");
        }
    }
}

/// `snapshots ls`, one line per snapshot (header skipped), sorted.
fn snapshot_lines(env: &Env) -> BTreeSet<String> {
    env.ok(&["snapshots", "ls"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn a_hundred_run_rm_leave_nothing() {
    let Some(env) = Env::start("run-leaks") else {
        return;
    };
    let snapshots = snapshot_lines(&env);
    assert!(!snapshots.is_empty(), "the import unpacked no snapshot");

    let started = Instant::now();
    let out = run(&env, &["--rm"], "leak0", &["echo", "first"]);
    assert_eq!(out, "first\n");
    env.wait_for_no_leftovers();
    let fds_after_first = env.fd_count();
    for i in 1..RUNS {
        run(&env, &["--rm"], &format!("leak{i}"), &["true"]);
    }
    let took = started.elapsed();
    eprintln!(
        "{RUNS} × corralctl run --rm: {took:?} ({:?} each)",
        took / RUNS as u32
    );

    env.wait_for_no_leftovers();
    let fds = env.fd_count();
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
    for dir in env.task_dirs() {
        assert_eq!(
            Env::entries(&dir),
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
    let Some(env) = Env::start("run-net") else {
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
    env.wait_for_no_leftovers();
    assert_eq!(env.ok(&["containers", "ls", "-q"]), "");
    env.finish();
}

/// `corralctl run FLAGS --fifo-dir <temp>/fifo busybox ID ARGS...`: its stdout.
fn run(env: &Env, flags: &[&str], id: &str, args: &[&str]) -> String {
    let fifo_dir = env.temp.join("fifo");
    let mut argv = vec!["run"];
    argv.extend_from_slice(flags);
    argv.extend(["--fifo-dir", fifo_dir.to_str().unwrap(), IMAGE, id]);
    argv.extend_from_slice(args);
    env.ok(&argv)
}
