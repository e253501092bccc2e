//! `containerd-shim-corral-v2` against containerd's Go shim (`containerd-shim-runc-v2`), both
//! running busybox containers for one private containerd 1.6 in the same run:
//!
//! 1. idle shims: per runtime, [`IDLE_CONTAINERS`] containers `sleep`ing, each shim's RSS, Pss,
//!    private memory and threads after [`IDLE`] without a request;
//! 2. latency: `ctr run --rm ... true` through each runtime, [`RUNS`] runs each, interleaved
//!    with a bare `runc run` of the same rootfs;
//! 3. the stripped binary sizes.
//!
//! Each figure is checked against the target for Corral ([`TARGET_RSS_KIB`] and the
//! rest). Everything runs under a [`PrivateContainerd`]: containers are removed between the
//! phases, and dropping it kills whatever an error left behind.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{kib, ratio, thread_names, timed, usage, Spread, Usage};
use crate::bins::shim_path_dir;
use crate::harness::procs::processes;
use crate::harness::{
    find_on_path, is_root, wait_for, ContainerdOptions, PrivateContainerd, ProcessInfo,
};

/// The image `tests/fixtures/busybox-oci.tar` holds.
pub const IMAGE: &str = "docker.io/corral/busybox:latest";
/// Corral's runtime name (containerd looks for `containerd-shim-corral-v2` on its PATH).
pub const CORRAL_RUNTIME: &str = "io.containerd.corral.v2";
/// containerd's Go shim.
pub const GO_RUNTIME: &str = "io.containerd.runc.v2";
/// Corral's shim binary, next to the bench binary (`target/release`).
pub const CORRAL_SHIM: &str = "containerd-shim-corral-v2";
/// The reference shim: Debian's containerd 1.6 package.
pub const GO_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
/// Containers (so shims) measured per runtime.
pub const IDLE_CONTAINERS: usize = 10;
/// How long the shims sit idle before they are measured: longer than the 5 s after which
/// Corral's shim ends idle handler threads.
pub const IDLE: Duration = Duration::from_millis(6500);
/// Timed runs per command in the latency phase.
pub const RUNS: usize = 20;

/// Issue target: RSS of one idle Corral shim, KiB (2 MiB).
pub const TARGET_RSS_KIB: f64 = 2.0 * 1024.0;
/// Issue target: Pss of one idle Corral shim, KiB (0.8 MiB).
pub const TARGET_PSS_KIB: f64 = 0.8 * 1024.0;
/// Issue target: private memory (`Private_Clean` + `Private_Dirty`) of one idle shim, KiB.
pub const TARGET_PRIVATE_KIB: f64 = 0.6 * 1024.0;
/// Issue target: threads of one idle Corral shim.
pub const TARGET_THREADS: f64 = 4.0;
/// Issue target: the stripped shim binary, bytes (2 MiB).
pub const TARGET_BINARY_BYTES: u64 = 2 * 1024 * 1024;
/// Issue target: median `ctr run --rm` latency, Corral / Go shim.
pub const TARGET_LATENCY_RATIO: f64 = 1.0;

/// How long containers may take to stop, and shims to exit, after `SIGKILL`.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// Deadline of one timed `ctr run --rm` or bare `runc run`.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// What the shim benchmark needs from the machine, found by [`tools`].
#[derive(Debug, Clone)]
pub struct Tools {
    /// containerd 1.6.
    pub containerd: PathBuf,
    /// Its `ctr`.
    pub ctr: PathBuf,
    /// runc, for the bare reference (both shims use the one on containerd's PATH).
    pub runc: PathBuf,
    /// The Go shim ([`GO_SHIM`]).
    pub go_shim: PathBuf,
    /// Corral's release shim.
    pub corral_shim: PathBuf,
    /// The busybox OCI archive.
    pub image: PathBuf,
}

/// Checks root and every tool before anything starts; the error says what is missing and why.
pub fn tools(bin_dir: &Path, image: &Path) -> Result<Tools, String> {
    if !is_root() {
        return Err(
            "the shim benchmark runs a private containerd and containers, which needs \
                    root: run `make bench` as root"
                .into(),
        );
    }
    let on_path = |name: &str| {
        find_on_path(name).ok_or_else(|| {
            format!(
                "the shim benchmark needs `{name}` (Debian's containerd 1.6 and runc packages), \
                 and it is not on PATH={}",
                std::env::var("PATH").unwrap_or_default()
            )
        })
    };
    let file = |path: PathBuf, hint: &str| {
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} is missing: {hint}", path.display()))
        }
    };
    Ok(Tools {
        containerd: on_path("containerd")?,
        ctr: on_path("ctr")?,
        runc: on_path("runc")?,
        go_shim: file(
            PathBuf::from(GO_SHIM),
            "the reference shim comes with Debian's containerd package",
        )?,
        corral_shim: file(
            bin_dir.join(CORRAL_SHIM),
            "run `make bench`, which builds the release binaries first",
        )?,
        image: file(
            image.to_path_buf(),
            "the busybox fixture is part of the repository",
        )?,
    })
}

/// One runtime under test.
struct Runtime {
    /// How the report names it.
    label: &'static str,
    /// `ctr run --runtime` value.
    runtime: &'static str,
    /// File name of its shim binary, as it appears in the shim's command line.
    binary: &'static str,
    /// Prefix of the container ids it runs.
    prefix: &'static str,
}

const GO: Runtime = Runtime {
    label: "Go shim",
    runtime: GO_RUNTIME,
    binary: "containerd-shim-runc-v2",
    prefix: "go",
};

const CORRAL: Runtime = Runtime {
    label: "Corral",
    runtime: CORRAL_RUNTIME,
    binary: CORRAL_SHIM,
    prefix: "corral",
};

/// Runs the whole shim benchmark and returns its section of `docs/benchmarks.md`.
pub fn run(tools: &Tools) -> Result<String, String> {
    // Declared before the daemon, so the link outlives it.
    let links = tempfile::Builder::new()
        .prefix("corral-bench-shim-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let shim_dir =
        shim_path_dir(links.path()).map_err(|e| format!("linking the Corral shim: {e}"))?;
    let linked = std::fs::canonicalize(shim_dir.join(CORRAL_SHIM))
        .map_err(|e| format!("resolving the shim link: {e}"))?;
    let wanted = std::fs::canonicalize(&tools.corral_shim)
        .map_err(|e| format!("resolving {}: {e}", tools.corral_shim.display()))?;
    if linked != wanted {
        return Err(format!(
            "containerd would run {} instead of the release shim {}",
            linked.display(),
            wanted.display()
        ));
    }
    let containerd = PrivateContainerd::start_with(ContainerdOptions {
        binary: tools.containerd.clone(),
        ctr: tools.ctr.clone(),
        extra_path: vec![shim_dir],
        ..ContainerdOptions::default()
    })
    .map_err(|e| format!("starting a private containerd: {e}"))?;
    let measured = measure(&containerd, tools);
    let stopped = containerd.stop();
    match (measured, stopped) {
        (Ok(section), Ok(())) => Ok(section),
        (Ok(_), Err(e)) => Err(format!("cleaning up the private containerd: {e}")),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(c)) => Err(format!(
            "{e}; cleaning up the private containerd also failed: {c}"
        )),
    }
}

fn measure(c: &PrivateContainerd, tools: &Tools) -> Result<String, String> {
    ctr_ok(c, &["images", "import", &tools.image.to_string_lossy()])?;
    let go_idle = idle_shims(c, &GO)?;
    let corral_idle = idle_shims(c, &CORRAL)?;
    let bare = BareRunc::prepare(&c.temp().path().join("bare-runc"), tools)?;
    let latency = latencies(c, &tools.ctr, &bare)?;
    let sizes = (file_size(&tools.corral_shim)?, file_size(&tools.go_shim)?);
    Ok(render(tools, &corral_idle, &go_idle, sizes, &latency))
}

fn file_size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `ctr <args>` in the private containerd's namespace; a failure carries ctr's stderr and
/// the end of containerd's log.
fn ctr_ok(c: &PrivateContainerd, args: &[&str]) -> Result<String, String> {
    let out = c
        .ctr_output(args)
        .map_err(|e| format!("ctr {}: {e}", args.join(" ")))?;
    check(c, &format!("ctr {}", args.join(" ")), &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check(c: &PrivateContainerd, what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what}: {}\nstdout: {}\nstderr: {}\nlast lines of containerd's log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end(),
        c.log_tail(20)
    ))
}

/// Task id → status (`RUNNING`, `STOPPED`...) from `ctr tasks ls`.
fn task_statuses(c: &PrivateContainerd) -> Result<HashMap<String, String>, String> {
    Ok(task_rows(&ctr_ok(c, &["tasks", "ls"])?).collect())
}

/// (task id, status) of each row of a `tasks ls` table, as ctr and corralctl print it.
pub(super) fn task_rows(table: &str) -> impl Iterator<Item = (String, String)> + '_ {
    table.lines().skip(1).filter_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        Some((cols.first()?.to_string(), cols.get(2)?.to_string()))
    })
}

/// Containers started by a phase; removed (task killed and deleted, container deleted) by
/// [`remove_all`](Self::remove_all) or, after an error, on drop.
struct Containers<'a> {
    c: &'a PrivateContainerd,
    ids: Vec<String>,
}

impl Containers<'_> {
    /// `ctr tasks kill -s SIGKILL` each, waits until none runs, then `tasks delete` and
    /// `containers delete` what exists. Tried once: after a failure the private containerd's
    /// cleanup kills what is left.
    fn remove_all(&mut self) -> Result<(), String> {
        let ids = std::mem::take(&mut self.ids);
        if ids.is_empty() {
            return Ok(());
        }
        let c = self.c;
        for id in &ids {
            // Fails harmlessly for a task that never started or already stopped.
            let _ = c.ctr_output(["tasks", "kill", "-s", "SIGKILL", id]);
        }
        let mut last_error = String::new();
        wait_for(STOP_DEADLINE, "the tasks to stop", || {
            match task_statuses(c) {
                Ok(tasks) => ids
                    .iter()
                    .all(|id| tasks.get(id).is_none_or(|s| s == "STOPPED")),
                Err(e) => {
                    last_error = e;
                    false
                }
            }
        })
        .map_err(|e| format!("{e} {last_error}"))?;
        let tasks = task_statuses(c)?;
        let mut errors = Vec::new();
        for id in ids.iter().filter(|id| tasks.contains_key(*id)) {
            if let Err(e) = ctr_ok(c, &["tasks", "delete", id]) {
                errors.push(e);
            }
        }
        let containers: HashSet<String> = ctr_ok(c, &["containers", "ls", "-q"])?
            .lines()
            .map(str::to_string)
            .collect();
        for id in ids.iter().filter(|id| containers.contains(*id)) {
            if let Err(e) = ctr_ok(c, &["containers", "delete", id]) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.remove_all() {
            eprintln!("corral-bench: removing containers: {e}");
        }
    }
}

/// The long-running shim serving container `id`: its command line names `binary` and has
/// `-id <id>`, and it is not a `start` (or `delete`) invocation.
fn shim_of(table: &[ProcessInfo], rt: &Runtime, id: &str) -> Result<ProcessInfo, String> {
    let found: Vec<&ProcessInfo> = table
        .iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            let args: Vec<&str> = p.cmdline.split(' ').collect();
            args.first().is_some_and(|a| a.ends_with(rt.binary))
                && args.windows(2).any(|w| w == ["-id", id])
                && !args.iter().any(|a| *a == "start" || *a == "delete")
        })
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!("no {} process serves container {id}", rt.binary)),
        many => Err(format!(
            "{} {} processes serve container {id}: {:?}",
            many.len(),
            rt.binary,
            many.iter().map(|p| p.to_string()).collect::<Vec<_>>()
        )),
    }
}

/// Starts [`IDLE_CONTAINERS`] sleeping containers through `rt`, lets the shims idle, measures
/// each shim, removes the containers and waits for the shims to exit.
fn idle_shims(c: &PrivateContainerd, rt: &Runtime) -> Result<IdleFigures, String> {
    eprintln!(
        "corral-bench: {IDLE_CONTAINERS} idle containers through the {} ({})",
        rt.label, rt.runtime
    );
    let mut containers = Containers { c, ids: Vec::new() };
    for i in 0..IDLE_CONTAINERS {
        let id = format!("{}idle{i}", rt.prefix);
        containers.ids.push(id.clone());
        ctr_ok(
            c,
            &[
                "run",
                "-d",
                "--runtime",
                rt.runtime,
                IMAGE,
                &id,
                "sleep",
                "100000",
            ],
        )?;
    }
    // Deliberately idle: the figure is what a shim costs while nobody talks to it.
    std::thread::sleep(IDLE);
    let table = processes();
    let shims = containers
        .ids
        .iter()
        .map(|id| shim_of(&table, rt, id))
        .collect::<Result<Vec<_>, _>>()?;
    let usages = shims
        .iter()
        .map(|p| usage(p.pid))
        .collect::<Result<Vec<_>, _>>()?;
    let names = shims
        .first()
        .map(|p| thread_names(p.pid))
        .unwrap_or_default();
    if let Some(gone) = shims.iter().find(|p| !p.is_running()) {
        return Err(format!("shim {gone} exited while it was measured"));
    }
    containers.remove_all()?;
    wait_exited(&shims, STOP_DEADLINE)?;
    IdleFigures::of(&usages, names)
}

/// Waits until none of `shims` runs; the error names those still running.
pub(super) fn wait_exited(shims: &[ProcessInfo], deadline: Duration) -> Result<(), String> {
    wait_for(deadline, "the shims to exit", || {
        shims.iter().all(|p| !p.is_running())
    })
    .map_err(|e| {
        let left: Vec<String> = shims
            .iter()
            .filter(|p| p.is_running())
            .map(|p| p.to_string())
            .collect();
        format!("{e}: {left:?}")
    })
}

/// The spreads of one runtime's idle shims.
struct IdleFigures {
    rss: Spread,
    pss: Spread,
    private: Spread,
    threads: Spread,
    /// Thread names of the first shim.
    names: Vec<String>,
}

impl IdleFigures {
    fn of(usages: &[Usage], names: Vec<String>) -> Result<IdleFigures, String> {
        let spread = |f: fn(&Usage) -> u64| {
            let values: Vec<f64> = usages.iter().map(|u| f(u) as f64).collect();
            Spread::of(&values).ok_or("no shim was measured")
        };
        Ok(IdleFigures {
            rss: spread(|u| u.rss_kib)?,
            pss: spread(|u| u.pss_kib)?,
            private: spread(|u| u.private_kib)?,
            threads: spread(|u| u.threads)?,
            names,
        })
    }
}

/// A bundle around busybox's rootfs for bare `runc run` (process `true`, no terminal), the
/// baseline both benches compare the shims against.
pub(super) struct BareRunc {
    runc: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
}

impl BareRunc {
    /// Untars the OCI archive and its image's layers into `<dir>/bundle/rootfs`, and writes
    /// `config.json` with `runc spec`, changed to run `true` without a terminal. `dir` should
    /// be inside a private daemon's directory, so that its cleanup removes it (and kills a
    /// runc left running there).
    pub(super) fn prepare(dir: &Path, tools: &Tools) -> Result<BareRunc, String> {
        let oci = dir.join("oci");
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        let root = dir.join("state");
        for d in [&oci, &rootfs, &root] {
            std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        untar(&tools.image, &oci)?;
        let index = read_json(&oci.join("index.json"))?;
        let manifest = read_json(&blob(&oci, &index["manifests"][0]["digest"])?)?;
        let layers = manifest["layers"]
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or("the busybox manifest has no layers")?;
        for layer in layers {
            untar(&blob(&oci, &layer["digest"])?, &rootfs)?;
        }
        let out = Command::new(&tools.runc)
            .arg("spec")
            .current_dir(&bundle)
            .output()
            .map_err(|e| format!("runc spec: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "runc spec: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let config_path = bundle.join("config.json");
        let mut config = read_json(&config_path)?;
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = serde_json::json!(["true"]);
        std::fs::write(&config_path, config.to_string())
            .map_err(|e| format!("writing {}: {e}", config_path.display()))?;
        Ok(BareRunc {
            runc: tools.runc.clone(),
            root,
            bundle,
        })
    }

    /// `runc --root <state> run --bundle <bundle> <id>`, timed.
    pub(super) fn run(&self, id: &str) -> Result<Duration, String> {
        let mut cmd = Command::new(&self.runc);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("run")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg(id);
        let (took, out) = timed(&mut cmd, RUN_DEADLINE)?;
        if !out.status.success() {
            return Err(format!(
                "runc run {id}: {}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
        }
        Ok(took)
    }

    /// `runc create`, `runc start`, `runc delete --force` of the bundle as three runs, as a
    /// runc shim runs them (the process, `true`, has exited or is killed by the delete).
    pub(super) fn three_steps(&self, id: &str) -> Result<Duration, String> {
        let started = std::time::Instant::now();
        self.steps(&self.bundle, id)?;
        Ok(started.elapsed())
    }

    fn steps(&self, bundle: &Path, id: &str) -> Result<(), String> {
        for step in [
            &["create", "--bundle"][..],
            &["start"],
            &["delete", "--force"],
        ] {
            self.step(step, bundle, id)?;
        }
        Ok(())
    }

    fn step(&self, step: &[&str], bundle: &Path, id: &str) -> Result<(), String> {
        let mut cmd = Command::new(&self.runc);
        cmd.arg("--root").arg(&self.root).args(step);
        if step[0] == "create" {
            cmd.arg(bundle);
        }
        let status = cmd
            .arg(id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("runc {} {id}: {e}", step[0]))?;
        if !status.success() {
            return Err(format!("runc {} {id}: {status}", step[0]));
        }
        Ok(())
    }

    /// What a runc shim does around runc for a container on an overlayfs snapshot, timed:
    /// an overlay with the busybox rootfs as its lower dir and a fresh upper and work dir
    /// mounted as the `rootfs` of a bundle with the same `config.json`, `runc create`, `start`
    /// and `delete --force`, the overlay unmounted beside the delete (which syncs what runc
    /// wrote into the upper file system).
    pub(super) fn three_steps_on_overlay(
        &self,
        id: &str,
        round: usize,
    ) -> Result<Duration, String> {
        self.three_steps_on_overlay_with(id, round, &self.bundle.join("config.json"))
    }

    /// [`three_steps_on_overlay`](Self::three_steps_on_overlay) with `config` as the
    /// bundle's `config.json` (its `root.path` must be `rootfs`).
    pub(super) fn three_steps_on_overlay_with(
        &self,
        id: &str,
        round: usize,
        config: &Path,
    ) -> Result<Duration, String> {
        let dir = self.root.join(format!("overlay{round}"));
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let bundle = dir.join("bundle");
        let target = bundle.join("rootfs");
        for d in [&upper, &work, &target] {
            std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        std::fs::copy(config, bundle.join("config.json"))
            .map_err(|e| format!("copying config.json to {}: {e}", bundle.display()))?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={},index=off",
            self.bundle.join("rootfs").display(),
            upper.display(),
            work.display()
        );
        let started = std::time::Instant::now();
        nix::mount::mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| format!("mounting an overlay on {}: {e}", target.display()))?;
        let ran = self
            .step(&["create", "--bundle"], &bundle, id)
            .and_then(|()| self.step(&["start"], &bundle, id));
        let (deleted, unmounted) = std::thread::scope(|s| {
            let unmount = s.spawn(|| nix::mount::umount2(&target, nix::mount::MntFlags::empty()));
            let deleted = self.step(&["delete", "--force"], &bundle, id);
            (deleted, unmount.join())
        });
        let took = started.elapsed();
        let unmounted = match unmounted {
            Ok(Ok(())) => Ok(()),
            // Busy while runc still held it: once more, now that the delete is done.
            Ok(Err(_)) => nix::mount::umount2(&target, nix::mount::MntFlags::empty()),
            Err(_) => Err(nix::errno::Errno::EIO),
        };
        unmounted.map_err(|e| format!("unmounting {}: {e}", target.display()))?;
        ran?;
        deleted?;
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
        Ok(took)
    }
}

fn untar(archive: &Path, into: &Path) -> Result<(), String> {
    let out = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .map_err(|e| format!("running tar: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tar -xf {}: {}: {}",
            archive.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}

/// The blob file of an OCI layout for a digest such as `sha256:<hex>`.
fn blob(oci: &Path, digest: &serde_json::Value) -> Result<PathBuf, String> {
    let text = digest.as_str().unwrap_or_default();
    match text.split_once(':') {
        Some((alg, hex))
            if !alg.is_empty()
                && !hex.is_empty()
                && alg.chars().all(|c| c.is_ascii_alphanumeric())
                && hex.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Ok(oci.join("blobs").join(alg).join(hex))
        }
        _ => Err(format!("not an OCI digest: {digest}")),
    }
}

/// Milliseconds of the timed runs.
struct Latencies {
    corral: Vec<f64>,
    go: Vec<f64>,
    runc: Vec<f64>,
}

/// `ctr run --rm --runtime R busybox <id> true`, timed from spawning ctr to its exit.
fn ctr_run_rm(
    c: &PrivateContainerd,
    ctr: &Path,
    rt: &Runtime,
    id: &str,
) -> Result<Duration, String> {
    let args = ["run", "--rm", "--runtime", rt.runtime, IMAGE, id, "true"];
    let mut cmd = c.command(ctr);
    cmd.arg("--address").arg(c.address()).args(args);
    let (took, out) = timed(&mut cmd, RUN_DEADLINE)?;
    check(c, &format!("ctr {}", args.join(" ")), &out)?;
    Ok(took)
}

/// One untimed warm-up each, then [`RUNS`] rounds of Go shim, Corral, bare runc.
fn latencies(c: &PrivateContainerd, ctr: &Path, bare: &BareRunc) -> Result<Latencies, String> {
    eprintln!("corral-bench: {RUNS} × ctr run --rm (Go shim, Corral) and runc run, interleaved");
    ctr_run_rm(c, ctr, &GO, "gowarm")?;
    ctr_run_rm(c, ctr, &CORRAL, "corralwarm")?;
    bare.run("runcwarm")?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut l = Latencies {
        corral: Vec::new(),
        go: Vec::new(),
        runc: Vec::new(),
    };
    for i in 0..RUNS {
        l.go.push(ms(ctr_run_rm(c, ctr, &GO, &format!("gorun{i}"))?));
        l.corral
            .push(ms(ctr_run_rm(c, ctr, &CORRAL, &format!("corralrun{i}"))?));
        l.runc.push(ms(bare.run(&format!("runcrun{i}"))?));
    }
    Ok(l)
}

fn size_verdict(size: u64) -> String {
    if size <= TARGET_BINARY_BYTES {
        "yes".into()
    } else {
        format!(
            "**no**: {:.0}% over",
            (size as f64 / TARGET_BINARY_BYTES as f64 - 1.0) * 100.0
        )
    }
}

/// `a, b ×2, c` for sorted names `[a, b, b, c]`.
fn name_counts(names: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < names.len() {
        let n = names[i..].iter().take_while(|x| **x == names[i]).count();
        parts.push(if n == 1 {
            format!("`{}`", names[i])
        } else {
            format!("`{}` ×{n}", names[i])
        });
        i += n;
    }
    if parts.is_empty() {
        "(not read)".into()
    } else {
        parts.join(", ")
    }
}

/// `yes` when the worst (max) Corral figure is within `target`, else how far over it is.
fn verdict(s: &Spread, target: f64, decimals: usize, unit: &str) -> String {
    let over = |v: f64| (v / target - 1.0) * 100.0;
    if s.max <= target {
        "yes".into()
    } else if s.median <= target {
        format!(
            "**no**: max {:.decimals$}{unit} is {:.0}% over (median within)",
            s.max,
            over(s.max)
        )
    } else {
        format!(
            "**no**: median {:.decimals$}{unit} is {:.0}% over",
            s.median,
            over(s.median)
        )
    }
}

/// The first line `program --version` prints (`unknown version` when it prints none).
pub(super) fn version_line(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown version".into())
}

fn render(
    tools: &Tools,
    ours: &IdleFigures,
    go: &IdleFigures,
    (ours_size, go_size): (u64, u64),
    latency: &Latencies,
) -> String {
    let mut out = String::from("## Shim under containerd\n\n");
    let _ = writeln!(
        out,
        "Both shims run busybox containers (`tests/fixtures/busybox-oci.tar`) for one private \
         containerd in the same run (`{}`): Corral's `{CORRAL_SHIM}` (release build, runtime \
         `{CORRAL_RUNTIME}`) and the reference, containerd's Go shim `{GO_SHIM}` (runtime \
         `{GO_RUNTIME}`); both drive the same runc (`{}`). Ratios are Corral / Go shim. The \
         targets are the shim issue's, for Corral; a memory or thread target is met when every \
         Corral shim (the max) is within it.\n",
        version_line(&tools.containerd),
        version_line(&tools.runc),
    );
    let _ = writeln!(
        out,
        "### Idle shims\n\n\
         Per runtime, {IDLE_CONTAINERS} containers started one after the other with `ctr run -d \
         --runtime R busybox idN sleep 100000`, left idle for {:.1} s (Corral's shim ends idle \
         handler threads after 5 s), then each container's shim measured: the process whose \
         command line names the shim binary and `-id idN` and is not its `start` invocation. \
         Figures are min / median / max over the {IDLE_CONTAINERS} shims; the ratio is of the \
         medians. RSS is `VmRSS` and threads `Threads` of `/proc/PID/status`; Pss (shared pages \
         split among the processes mapping them, here mostly the {IDLE_CONTAINERS} shims of one \
         runtime) and private (`Private_Clean` + `Private_Dirty`) come from \
         `/proc/PID/smaps_rollup`. The containers of one runtime are removed before the next \
         one starts.\n",
        IDLE.as_secs_f64()
    );
    out.push_str(
        "| per shim | Corral | Go shim | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    let rows: [(&str, &Spread, &Spread, f64, String, usize, &str); 4] = [
        (
            "RSS",
            &ours.rss,
            &go.rss,
            TARGET_RSS_KIB,
            "≤ 2048 KiB (2 MiB)".into(),
            0,
            " KiB",
        ),
        (
            "Pss",
            &ours.pss,
            &go.pss,
            TARGET_PSS_KIB,
            format!("≤ {TARGET_PSS_KIB:.0} KiB (0.8 MiB)"),
            0,
            " KiB",
        ),
        (
            "private",
            &ours.private,
            &go.private,
            TARGET_PRIVATE_KIB,
            format!("≤ {TARGET_PRIVATE_KIB:.0} KiB (0.6 MiB)"),
            0,
            " KiB",
        ),
        (
            "threads",
            &ours.threads,
            &go.threads,
            TARGET_THREADS,
            format!("≤ {TARGET_THREADS:.0}"),
            0,
            "",
        ),
    ];
    for (name, o, g, target, shown, decimals, unit) in rows {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {shown} | {} |",
            o.show(decimals, unit),
            g.show(decimals, unit),
            ratio(o.median, g.median),
            verdict(o, target, decimals, unit),
        );
    }
    let _ = writeln!(
        out,
        "| binary size (stripped) | {} | {} | {} | ≤ 2048 KiB (2 MiB) | {} |\n",
        kib(ours_size),
        kib(go_size),
        ratio(ours_size as f64, go_size as f64),
        size_verdict(ours_size),
    );
    let _ = writeln!(
        out,
        "Threads of one idle Corral shim, by name: {}.\n",
        name_counts(&ours.names)
    );
    let spread = |v: &[f64]| {
        Spread::of(v).unwrap_or(Spread {
            min: 0.0,
            median: 0.0,
            max: 0.0,
        })
    };
    let (c, g, r) = (
        spread(&latency.corral),
        spread(&latency.go),
        spread(&latency.runc),
    );
    let _ = writeln!(
        out,
        "### `ctr run --rm` latency\n\n\
         `ctr run --rm --runtime R busybox idN true`, {RUNS} timed runs per runtime after one \
         untimed warm-up each, interleaved (Go shim, Corral, bare runc, Go shim, ...) so machine \
         noise hits all alike; wall time from spawning `ctr` to its exit (seen by a blocking \
         `waitid`, not a poll), in ms. Bare runc: \
         `runc run --bundle B idN` of a bundle made with `runc spec` (process `true`, no \
         terminal) around the same busybox rootfs, untarred from the image's layer: the floor a \
         shim and containerd add to.\n"
    );
    let lat_met = if c.median <= g.median * TARGET_LATENCY_RATIO {
        "yes".to_string()
    } else {
        format!("**no**: {}", ratio(c.median, g.median))
    };
    out.push_str(
        "| command | min / median / max | median / Go shim's | median / bare runc's | target | met |\n\
         |---|---|---|---|---|---|\n",
    );
    let _ = writeln!(
        out,
        "| `ctr run --rm`, Corral | {} | {} | {} | ≤ {TARGET_LATENCY_RATIO:.2} × Go shim | {lat_met} |",
        c.show(1, " ms"),
        ratio(c.median, g.median),
        ratio(c.median, r.median),
    );
    let _ = writeln!(
        out,
        "| `ctr run --rm`, Go shim | {} | 1.00 | {} | | |",
        g.show(1, " ms"),
        ratio(g.median, r.median),
    );
    let _ = writeln!(
        out,
        "| `runc run` (bare) | {} | {} | 1.00 | | |\n",
        r.show(1, " ms"),
        ratio(r.median, g.median),
    );
    out
}

/// A running process with this command line, for the tests of the shim lookups.
#[cfg(test)]
pub(super) fn proc(pid: i32, cmdline: &str) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: 1,
        state: 'S',
        start_time: 1,
        cmdline: cmdline.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_serving_shim_not_start_nor_other_ids() {
        let table = [
            proc(1, "/usr/bin/containerd-shim-runc-v2 -namespace default -address /a -publish-binary /c -id goidle1 start"),
            proc(2, "/usr/bin/containerd-shim-runc-v2 -namespace default -id goidle1 -address /a"),
            proc(3, "/usr/bin/containerd-shim-runc-v2 -namespace default -id goidle10 -address /a"),
            proc(4, "sleep 100000"),
        ];
        assert_eq!(shim_of(&table, &GO, "goidle1").unwrap().pid, 2);
        assert_eq!(shim_of(&table, &GO, "goidle10").unwrap().pid, 3);
        assert!(shim_of(&table, &GO, "goidle2").is_err());
        assert!(shim_of(&table, &CORRAL, "goidle1").is_err());
    }

    #[test]
    fn digests_name_blobs() {
        let oci = Path::new("/x");
        assert_eq!(
            blob(oci, &serde_json::json!("sha256:ab12")).unwrap(),
            Path::new("/x/blobs/sha256/ab12")
        );
        assert!(blob(oci, &serde_json::json!("sha256:../etc")).is_err());
        assert!(blob(oci, &serde_json::Value::Null).is_err());
    }

    #[test]
    fn verdicts() {
        let s = Spread {
            min: 1.0,
            median: 2.0,
            max: 3.0,
        };
        assert_eq!(verdict(&s, 3.0, 0, ""), "yes");
        assert!(verdict(&s, 2.5, 0, "").contains("max 3 is 20% over"));
        assert!(verdict(&s, 1.5, 0, "").contains("median 2 is 33% over"));
        assert_eq!(size_verdict(TARGET_BINARY_BYTES), "yes");
        let names: Vec<String> = ["a", "b", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(name_counts(&names), "`a`, `b` ×2, `c`");
    }
}
