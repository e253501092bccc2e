//! A private corrald with the busybox fixture imported, for tests that run containers through
//! `corralctl`: one namespace, commands with a deadline, and a cleanup that removes what a
//! test left (tasks, containers, processes, mounts, cgroups) whether it failed or not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::ctl::{corralctl, stderr, stdout};
use crate::harness::cgroups::{cgroup_mounts, CgroupSnapshot};
use crate::harness::{
    mounts_under, require_root, require_tool, run_with_deadline, Corrald, TempRoot,
};

/// The busybox fixture's name once imported.
pub const IMAGE: &str = "docker.io/corral/busybox:latest";
/// How long one corralctl command, or a cleanup step, may take.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// How long corrald may take to stop, and each corralctl of the cleanup.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// The busybox OCI archive in the crate's fixtures.
pub fn busybox_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-oci.tar")
}

/// One test's corrald, namespace, cgroups before it started, and directories.
pub struct RunEnv {
    /// The namespace every command runs in.
    pub ns: &'static str,
    /// The cgroups that existed before the test.
    pub cgroups: CgroupSnapshot,
    /// The test's root, state and run directories.
    pub temp: TempRoot,
    d: Option<Corrald>,
    /// The fifo directory as an argument.
    fifo_arg: String,
}

impl RunEnv {
    /// Starts corrald (with `extra_config` added to its configuration) and imports busybox;
    /// `None` (after saying why) without root or runc.
    pub fn start(ns: &'static str, extra_config: &str) -> Option<RunEnv> {
        if !require_root("runs containers") || require_tool("runc").is_none() {
            return None;
        }
        let cgroups = CgroupSnapshot::take().unwrap();
        let temp = TempRoot::new().unwrap();
        let d = Corrald::start(&temp, "corrald.log", extra_config).unwrap();
        let fifo_arg = temp.join("fifo").to_str().unwrap().to_string();
        let env = RunEnv {
            ns,
            cgroups,
            temp,
            d: Some(d),
            fifo_arg,
        };
        env.ok(&["images", "import", busybox_fixture().to_str().unwrap()]);
        Some(env)
    }

    /// The running corrald.
    pub fn d(&self) -> &Corrald {
        self.d.as_ref().expect("corrald is running")
    }

    /// Where the test's fifo sets are made.
    pub fn fifo_dir(&self) -> PathBuf {
        self.temp.join("fifo")
    }

    /// The arguments of `corralctl run FLAGS --fifo-dir <fifo_dir> busybox ID ARGS...`.
    pub fn run_args<'a>(
        &'a self,
        flags: &[&'a str],
        id: &'a str,
        args: &[&'a str],
    ) -> Vec<&'a str> {
        let mut argv = vec!["run"];
        argv.extend_from_slice(flags);
        argv.extend(["--fifo-dir", self.fifo_arg.as_str(), IMAGE, id]);
        argv.extend_from_slice(args);
        argv
    }

    /// [`fifo_dir`](Self::fifo_dir) as a `--fifo-dir` argument.
    pub fn fifo_arg(&self) -> &str {
        &self.fifo_arg
    }

    /// `corralctl -a SOCKET -n NS ARGS...`, stdin from /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = corralctl();
        cmd.arg("-a")
            .arg(self.d().socket())
            .args(["-n", self.ns])
            .args(args);
        cmd
    }

    /// Runs corralctl to its end within [`DEADLINE`]; never a panic message.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let out = run_with_deadline(&mut self.command(args), DEADLINE)
            .unwrap_or_else(|e| panic!("corralctl {args:?}: {e}; log: {}", self.d().log_text()));
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
        out
    }

    /// [`ctl`](Self::ctl) that must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
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

    /// This namespace's cgroups made since the start: `<mount>/<ns>` (the parent the
    /// containers' `/<ns>/<id>` cgroups go under), and the directories below it.
    pub fn new_cgroups(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let mut parents = Vec::new();
        let mut children = Vec::new();
        for mount in cgroup_mounts().unwrap_or_default() {
            let top = mount.mount_point.join(self.ns);
            if !top.is_dir() || self.cgroups.contains(&top) {
                continue;
            }
            if let Ok(dir) = std::fs::read_dir(&top) {
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

    /// Stops corrald cleanly and asserts that no mount and no container cgroup is left, and
    /// that the namespace's cgroup parents can be removed.
    pub fn finish(mut self) {
        if let Some(d) = self.d.take() {
            d.stop_clean(STOP_DEADLINE);
        }
        assert_eq!(
            mounts_under(self.temp.path()).unwrap(),
            Vec::<PathBuf>::new()
        );
        let (parents, children) = self.new_cgroups();
        assert!(children.is_empty(), "container cgroups left: {children:?}");
        let left = self.cgroups.remove_new(&parents, DEADLINE);
        assert!(left.is_empty(), "cgroups left: {left:?}");
    }

    /// `corralctl` of the cleanup: within [`STOP_DEADLINE`], its failures ignored.
    fn quiet(&self, d: &Corrald, args: &[&str]) -> Option<Output> {
        let mut cmd = corralctl();
        cmd.arg("-a")
            .arg(d.socket())
            .args(["-n", self.ns])
            .args(args);
        run_with_deadline(&mut cmd, STOP_DEADLINE).ok()
    }
}

impl Drop for RunEnv {
    /// Whatever a failed test left: tasks killed and deleted, containers removed, corrald
    /// stopped; then the temporary root kills what remains and unmounts, and the cgroups the
    /// containers made are removed (children before parents).
    fn drop(&mut self) {
        if let Some(d) = self.d.take() {
            let listed = |noun: &str| {
                self.quiet(&d, &[noun, "ls", "-q"])
                    .map(|o| stdout(&o).lines().map(str::to_string).collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            for id in listed("t") {
                self.quiet(&d, &["t", "kill", "--all", "-s", "KILL", &id]);
                self.quiet(&d, &["t", "rm", "-f", &id]);
            }
            for id in listed("c") {
                self.quiet(&d, &["c", "rm", &id]);
            }
            let _ = d.terminate(STOP_DEADLINE);
        }
        if let Err(e) = self.temp.cleanup() {
            eprintln!("cleaning up {}: {e}", self.temp.path().display());
        }
        let (parents, children) = self.new_cgroups();
        let left = self
            .cgroups
            .remove_new(&[children, parents].concat(), DEADLINE);
        if !left.is_empty() {
            eprintln!("cgroups left: {left:?}");
        }
    }
}
