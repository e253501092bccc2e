//! Tasks: running containers through `corrald` and Corral's shim against a private containerd
//! 1.6 with its Go shim, in the same run (the issue: "`corralctl run --rm` vs `ctr run --rm`
//! and bare `runc run`; daemon + 10 shims memory"):
//!
//! 1. latency: `corralctl run --rm busybox idN true` against `ctr run --rm busybox idN true` and
//!    a bare `runc run` of a prepared bundle, [`RUNS`] rounds, interleaved;
//! 2. memory: per side, [`IDLE_CONTAINERS`] detached `sleep`ing containers, left idle for
//!    [`IDLE`], then the Pss and RSS of the daemon plus every shim serving them.
//!
//! Both daemons are private: corrald (the release build, with the release shim first on its
//! `PATH`) on a [`TempRoot`] of its own, containerd through [`PrivateContainerd`]. Containers
//! are removed between the phases; after an error, dropping the daemons kills what is left and
//! removes the cgroups their containers made.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::daemon::{corrald_cmd, met, ms, spread, start_timed, Proc};
use super::shim::{self, IMAGE};
use super::{ratio, timed, usage, Spread, Usage};
use crate::harness::cgroups::{cgroup_mounts, CgroupSnapshot};
use crate::harness::procs::{processes, ProcessInfo};
use crate::harness::{wait_for, ContainerdOptions, PrivateContainerd, TempRoot};

/// Timed rounds of the latency phase (one run of each command per round).
pub const RUNS: usize = 40;
/// Detached idle containers per side in the memory phase.
pub const IDLE_CONTAINERS: usize = 10;
/// How long the containers idle before memory is read: longer than the 5 s after which
/// Corral's shim and rpc layer end idle handler threads.
pub const IDLE: Duration = Duration::from_millis(6500);

/// Issue target: median `corralctl run --rm` at most this many times bare `runc run`'s.
pub const TARGET_RUNC_FACTOR: f64 = 1.5;
/// Issue target: median `corralctl run --rm` at most this many times `ctr run --rm`'s.
pub const TARGET_CONTAINERD_FACTOR: f64 = 0.5;
/// Issue target: Pss of corrald plus its [`IDLE_CONTAINERS`] shims, KiB (12 MiB).
pub const TARGET_TOTAL_PSS_KIB: f64 = 12.0 * 1024.0;
/// Issue target: containerd + Go shims' Pss at least this many times Corral's.
pub const TARGET_PSS_DIVISOR: f64 = 6.0;

/// corrald's namespace for the bench's containers (its cgroups are `/<namespace>/<id>`).
const NAMESPACE: &str = "bench-tasks";
/// Deadline of one CLI command (a run, an import, a kill).
const DEADLINE: Duration = Duration::from_secs(60);
/// How long killed tasks may take to stop, and shims to exit.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// What the section needs from the machine and the build.
#[derive(Debug, Clone)]
pub struct Tools {
    /// containerd, ctr, runc, both shims and the busybox archive (as the shim section).
    pub shim: shim::Tools,
    /// The release `corrald`.
    pub corrald: PathBuf,
    /// The release `corralctl`.
    pub corralctl: PathBuf,
}

/// Checks root and every tool before anything starts; the error says what is missing.
pub fn tools(bin_dir: &Path, image: &Path) -> Result<Tools, String> {
    let shim = shim::tools(bin_dir, image)?;
    let release = |name: &str| {
        let path = bin_dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} is missing: run `make bench`, which builds the release binaries first",
                path.display()
            ))
        }
    };
    Ok(Tools {
        shim,
        corrald: release("corrald")?,
        corralctl: release("corralctl")?,
    })
}

/// Runs the section and returns its Markdown.
pub fn run(tools: &Tools) -> Result<String, String> {
    let containerd = PrivateContainerd::start_with(ContainerdOptions {
        binary: tools.shim.containerd.clone(),
        ctr: tools.shim.ctr.clone(),
        ..ContainerdOptions::default()
    })
    .map_err(|e| format!("starting a private containerd: {e}"))?;
    let corrald = PrivateCorrald::start(tools)?;
    let measured = measure(&corrald, &containerd, tools);
    let corral_stopped = corrald.stop();
    let containerd_stopped = containerd
        .stop()
        .map_err(|e| format!("cleaning up the private containerd: {e}"));
    let section = measured?;
    corral_stopped?;
    containerd_stopped?;
    Ok(section)
}

fn measure(
    corrald: &PrivateCorrald,
    containerd: &PrivateContainerd,
    tools: &Tools,
) -> Result<String, String> {
    let corral = Side::corral(corrald, &tools.shim.corral_shim)?;
    let reference = Side::containerd(containerd, &tools.shim.ctr, &tools.shim.go_shim);
    let archive = tools.shim.image.to_string_lossy().into_owned();
    for side in [&corral, &reference] {
        side.ok(&["images", "import", &archive])?;
    }
    let bare = shim::BareRunc::prepare(&corrald.temp.join("bare-runc"), &tools.shim)?;
    let spec = container_config(&corral, &corrald.temp.join("container-config.json"))?;
    let latency = latencies(&corral, &reference, &bare, &spec)?;
    let reference_memory = idle_memory(&reference)?;
    let corral_memory = idle_memory(&corral)?;
    Ok(render(tools, &latency, &corral_memory, &reference_memory))
}

/// A fresh tmpfs on `dir` (made if need be); the temporary root's cleanup unmounts it.
fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some("mode=0755,size=64m"),
    )
    .map_err(|e| format!("mounting a tmpfs on {}: {e}", dir.display()))
}

/// The `config.json` corralctl makes for the timed runs' containers (containerd's default
/// spec, the image's config and `run`'s 1024 cpu shares), written to `path` with a cgroup of
/// its own under [`NAMESPACE`], for runc alone to run.
fn container_config(corral: &Side, path: &Path) -> Result<PathBuf, String> {
    let id = "specsource";
    corral.ok(&[
        "containers",
        "create",
        "--cpu-shares",
        "1024",
        IMAGE,
        id,
        "true",
    ])?;
    let info = corral.ok(&["containers", "info", id]);
    corral.ok(&["containers", "rm", id])?;
    let info: serde_json::Value =
        serde_json::from_str(&info?).map_err(|e| format!("reading containers info: {e}"))?;
    let mut spec = info["Spec"].clone();
    if spec["root"]["path"] != "rootfs" || spec["process"]["args"] != serde_json::json!(["true"]) {
        return Err(format!("unexpected spec from containers info: {spec}"));
    }
    spec["linux"]["cgroupsPath"] = format!("/{NAMESPACE}/runcfloor").into();
    std::fs::write(path, spec.to_string())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

/// A corrald of the bench's own, on a fresh [`TempRoot`], with the release shim first on its
/// `PATH`. Dropping it kills corrald, its shims and their containers, unmounts and removes the
/// directory, and removes the cgroups made under [`NAMESPACE`] since it started.
struct PrivateCorrald {
    daemon: Option<Proc>,
    socket: PathBuf,
    ctl: PathBuf,
    cgroups: CgroupSnapshot,
    temp: TempRoot,
    stopped: bool,
}

impl PrivateCorrald {
    fn start(tools: &Tools) -> Result<PrivateCorrald, String> {
        let cgroups = CgroupSnapshot::take().map_err(|e| format!("reading the cgroups: {e}"))?;
        let temp = TempRoot::new().map_err(|e| format!("temp root: {e}"))?;
        // What containerd keeps under its private /run (a tmpfs), corrald keeps beside its
        // socket: runc's state, the shims' sockets, and here the fifos. A tmpfs of its own
        // holds them, so neither side's runs pay for a disk there.
        let run = temp.join("run");
        mount_tmpfs(&run)?;
        let socket = run.join("corral.sock");
        let bin_dir = tools
            .corrald
            .parent()
            .ok_or("corrald has no directory")?
            .to_path_buf();
        let mut path = vec![bin_dir.clone()];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let path = std::env::join_paths(path).map_err(|e| format!("PATH: {e}"))?;
        let mut cmd = corrald_cmd(&bin_dir, &temp, &socket)?;
        cmd.env("PATH", path);
        // Its command line names the directory: the directory's cleanup finds it if need be.
        let (daemon, _) = start_timed(&mut cmd, &socket)?;
        Ok(PrivateCorrald {
            daemon: Some(daemon),
            socket,
            ctl: tools.corralctl.clone(),
            cgroups,
            temp,
            stopped: false,
        })
    }

    fn pid(&self) -> Result<u32, String> {
        self.daemon
            .as_ref()
            .map(|d| d.0.id())
            .ok_or_else(|| "corrald is stopped".to_string())
    }

    /// Stops everything now, reporting what could not be cleaned up.
    fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        drop(self.daemon.take());
        let mut errors = Vec::new();
        if let Err(e) = self.temp.cleanup() {
            errors.push(format!("cleaning up corrald's directory: {e}"));
        }
        let left = self
            .cgroups
            .remove_new(&namespace_cgroups(&self.cgroups), STOP_DEADLINE);
        if !left.is_empty() {
            errors.push(format!("cgroups left: {left:?}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Drop for PrivateCorrald {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("corral-bench: {e}");
        }
    }
}

/// The cgroup directories under `<mount>/<NAMESPACE>` made since `before`, children before
/// their parents (so removing them in order can succeed).
fn namespace_cgroups(before: &CgroupSnapshot) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for mount in cgroup_mounts().unwrap_or_default() {
        let top = mount.mount_point.join(NAMESPACE);
        if !top.is_dir() || before.contains(&top) {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(&top) {
            found.extend(
                children
                    .flatten()
                    .map(|c| c.path())
                    .filter(|p| p.is_dir() && !before.contains(p)),
            );
        }
        found.push(top);
    }
    found
}

/// One daemon and its ctr-shaped CLI.
struct Side<'a> {
    /// How the report names it.
    label: &'static str,
    /// The CLI with its address (and namespace) set.
    cli: Box<dyn Fn() -> Command + 'a>,
    /// The daemon's pid.
    daemon: u32,
    /// The daemon's socket, as its shims are given it (`-address`).
    socket: PathBuf,
    /// The shim binary its containers must be served by.
    shim: PathBuf,
    /// Flags `run` gets before the image: corralctl's fifos go in corrald's directory.
    run_flags: Vec<String>,
    /// Prefix of container ids.
    prefix: &'static str,
}

impl<'a> Side<'a> {
    fn corral(d: &'a PrivateCorrald, shim: &Path) -> Result<Side<'a>, String> {
        Ok(Side {
            label: "corrald",
            cli: Box::new(move || {
                let mut cmd = Command::new(&d.ctl);
                cmd.arg("--address")
                    .arg(&d.socket)
                    .args(["--namespace", NAMESPACE])
                    .env_remove("CORRAL_ADDRESS")
                    .env_remove("CORRAL_NAMESPACE");
                cmd
            }),
            daemon: d.pid()?,
            socket: d.socket.clone(),
            shim: shim.to_path_buf(),
            run_flags: vec![
                "--fifo-dir".into(),
                d.temp.join("run/fifo").to_string_lossy().into_owned(),
            ],
            prefix: "corral",
        })
    }

    fn containerd(c: &'a PrivateContainerd, ctr: &'a Path, shim: &Path) -> Side<'a> {
        Side {
            label: "containerd",
            cli: Box::new(move || {
                // In containerd's mount namespace (its fifos are in its /run), in its namespace.
                let mut cmd = c.command(ctr);
                cmd.arg("--address").arg(c.address());
                cmd
            }),
            daemon: c.pid(),
            socket: c.address().to_path_buf(),
            shim: shim.to_path_buf(),
            run_flags: Vec::new(),
            prefix: "ctr",
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = (self.cli)();
        cmd.args(args);
        cmd
    }

    /// Runs the CLI to completion; a failure is an error with its output.
    fn output(&self, args: &[&str]) -> Result<(Duration, Output), String> {
        timed(&mut self.command(args), DEADLINE)
            .map_err(|e| format!("{} {}: {e}", self.label, args.join(" ")))
    }

    /// [`output`](Self::output) that must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> Result<String, String> {
        let (_, out) = self.output(args)?;
        self.check(args, &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn check(&self, args: &[&str], out: &Output) -> Result<(), String> {
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{}'s CLI {}: {}\nstdout: {}\nstderr: {}",
            self.label,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }

    /// `run <flags> [run flags] busybox <id> <args>`.
    fn run_args<'s>(&'s self, flags: &[&'s str], id: &'s str, args: &[&'s str]) -> Vec<&'s str> {
        let mut argv = vec!["run"];
        argv.extend_from_slice(flags);
        argv.extend(self.run_flags.iter().map(String::as_str));
        argv.extend([IMAGE, id]);
        argv.extend_from_slice(args);
        argv
    }

    /// `run --rm busybox <id> true`, timed from the spawn to the exit.
    fn run_rm(&self, id: &str) -> Result<Duration, String> {
        let args = self.run_args(&["--rm"], id, &["true"]);
        let (took, out) = self.output(&args)?;
        self.check(&args, &out)?;
        Ok(took)
    }

    /// The shim's executable must be this side's shim binary.
    fn check_binary(&self, shim: &ProcessInfo) -> Result<(), String> {
        let exe = std::fs::read_link(format!("/proc/{}/exe", shim.pid))
            .map_err(|e| format!("reading the executable of {shim}: {e}"))?;
        let wanted = std::fs::canonicalize(&self.shim)
            .map_err(|e| format!("resolving {}: {e}", self.shim.display()))?;
        if exe == wanted {
            Ok(())
        } else {
            Err(format!(
                "{shim} runs {} instead of {}",
                exe.display(),
                wanted.display()
            ))
        }
    }

    /// Task id → status (`RUNNING`, `STOPPED`...) from `tasks ls`.
    fn task_statuses(&self) -> Result<Vec<(String, String)>, String> {
        Ok(shim::task_rows(&self.ok(&["tasks", "ls"])?).collect())
    }

    /// Kills each task with `SIGKILL`, waits until none runs, deletes the tasks and the
    /// containers that exist.
    fn remove(&self, ids: &[String]) -> Result<(), String> {
        for id in ids {
            // Fails harmlessly for a task that already stopped.
            let _ = self.output(&["tasks", "kill", "--signal", "SIGKILL", id]);
        }
        let mut last_error = String::new();
        wait_for(STOP_DEADLINE, "the tasks to stop", || {
            match self.task_statuses() {
                Ok(tasks) => tasks
                    .iter()
                    .filter(|(id, _)| ids.contains(id))
                    .all(|(_, status)| status == "STOPPED"),
                Err(e) => {
                    last_error = e;
                    false
                }
            }
        })
        .map_err(|e| format!("{}: {e} {last_error}", self.label))?;
        let tasks = self.task_statuses()?;
        for id in ids.iter().filter(|id| tasks.iter().any(|(t, _)| t == *id)) {
            self.ok(&["tasks", "delete", id])?;
        }
        let containers = self.ok(&["containers", "ls", "-q"])?;
        for id in ids.iter().filter(|id| containers.lines().any(|c| c == *id)) {
            self.ok(&["containers", "delete", id])?;
        }
        Ok(())
    }

    /// The long-running shim serving container `id`: its binary is this side's shim, its
    /// command line has `-id <id>` and `-address <this daemon's socket>`, and it is not a
    /// `start` or `delete` invocation.
    fn shim_of(&self, table: &[ProcessInfo], id: &str) -> Result<ProcessInfo, String> {
        let socket = self.socket.to_string_lossy();
        let name = self
            .shim
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found: Vec<&ProcessInfo> = table
            .iter()
            .filter(|p| p.state != 'Z')
            .filter(|p| {
                let args: Vec<&str> = p.cmdline.split(' ').collect();
                args.first().is_some_and(|a| a.ends_with(name.as_str()))
                    && args.windows(2).any(|w| w == ["-id", id])
                    && args.windows(2).any(|w| {
                        w[0] == "-address" && w[1].strip_prefix("unix://").unwrap_or(w[1]) == socket
                    })
                    && !args.iter().any(|a| *a == "start" || *a == "delete")
            })
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(format!("no {name} serves container {id}")),
            many => Err(format!(
                "{} {} processes serve container {id}: {:?}",
                many.len(),
                name,
                many.iter().map(|p| p.to_string()).collect::<Vec<_>>()
            )),
        }
    }
}

/// Milliseconds of the timed runs.
struct Latencies {
    corral: Vec<f64>,
    containerd: Vec<f64>,
    runc: Vec<f64>,
    /// `runc create`, `start` and `delete` as three runs (what a runc shim makes).
    runc_steps: Vec<f64>,
    /// The same on an overlay of the busybox rootfs, mounted and unmounted as a shim does.
    overlay: Vec<f64>,
    /// The same with the timed containers' own spec.
    container_spec: Vec<f64>,
}

/// One untimed warm-up each, then [`RUNS`] rounds of `corralctl run --rm`, `ctr run --rm`,
/// bare `runc run`.
fn latencies(
    corral: &Side,
    containerd: &Side,
    bare: &shim::BareRunc,
    spec: &Path,
) -> Result<Latencies, String> {
    eprintln!("corral-bench: {RUNS} × corralctl run --rm, ctr run --rm and runc run, interleaved");
    corral.run_rm(&format!("{}warm", corral.prefix))?;
    containerd.run_rm(&format!("{}warm", containerd.prefix))?;
    bare.run("runcwarm")?;
    let mut l = Latencies {
        corral: Vec::new(),
        containerd: Vec::new(),
        runc: Vec::new(),
        runc_steps: Vec::new(),
        overlay: Vec::new(),
        container_spec: Vec::new(),
    };
    for i in 0..RUNS {
        l.corral
            .push(ms(corral.run_rm(&format!("{}run{i}", corral.prefix))?));
        l.containerd.push(ms(
            containerd.run_rm(&format!("{}run{i}", containerd.prefix))?
        ));
        l.runc.push(ms(bare.run(&format!("runcrun{i}"))?));
        l.runc_steps
            .push(ms(bare.three_steps(&format!("runcsteps{i}"))?));
        l.overlay
            .push(ms(bare.three_steps_on_overlay(&format!("runcovl{i}"), i)?));
        l.container_spec.push(ms(bare.three_steps_on_overlay_with(
            &format!("runcspec{i}"),
            i,
            spec,
        )?));
    }
    Ok(l)
}

/// Daemon and shims of one side with [`IDLE_CONTAINERS`] idle containers.
struct Memory {
    daemon: Usage,
    shims: Vec<Usage>,
}

impl Memory {
    fn shims_sum(&self, f: fn(&Usage) -> u64) -> u64 {
        self.shims.iter().map(f).sum()
    }

    fn total(&self, f: fn(&Usage) -> u64) -> u64 {
        f(&self.daemon) + self.shims_sum(f)
    }
}

/// Starts [`IDLE_CONTAINERS`] detached `sleep`s, lets everything idle, reads the daemon's and
/// each shim's memory, then removes the containers and waits for the shims to exit.
fn idle_memory(side: &Side) -> Result<Memory, String> {
    eprintln!(
        "corral-bench: {IDLE_CONTAINERS} idle containers through {}",
        side.label
    );
    let ids: Vec<String> = (0..IDLE_CONTAINERS)
        .map(|i| format!("{}idle{i}", side.prefix))
        .collect();
    let measured = start_and_read(side, &ids);
    let removed = side.remove(&ids);
    let (memory, shims) = measured?;
    removed?;
    shim::wait_exited(&shims, STOP_DEADLINE).map_err(|e| format!("{}: {e}", side.label))?;
    Ok(memory)
}

fn start_and_read(side: &Side, ids: &[String]) -> Result<(Memory, Vec<ProcessInfo>), String> {
    for id in ids {
        side.ok(&side.run_args(&["-d"], id, &["sleep", "1000000"]))?;
    }
    // Deliberately idle: the figure is what the daemon and shims cost while nobody talks to
    // them.
    std::thread::sleep(IDLE);
    let table = processes();
    let shims = ids
        .iter()
        .map(|id| side.shim_of(&table, id))
        .collect::<Result<Vec<_>, _>>()?;
    for s in &shims {
        side.check_binary(s)?;
    }
    let memory = Memory {
        daemon: usage(side.daemon as i32)?,
        shims: shims
            .iter()
            .map(|p| usage(p.pid))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if let Some(gone) = shims.iter().find(|p| !p.is_running()) {
        return Err(format!("shim {gone} exited while it was measured"));
    }
    Ok((memory, shims))
}

/// The latency verdict: Corral's median within both factors.
fn latency_met(corral: &Spread, containerd: &Spread, runc: &Spread) -> bool {
    corral.median <= TARGET_RUNC_FACTOR * runc.median
        && corral.median <= TARGET_CONTAINERD_FACTOR * containerd.median
}

/// The memory verdict: Corral's total Pss within 12 MiB and at most a sixth of containerd's.
fn memory_met(corral_pss_kib: f64, containerd_pss_kib: f64) -> bool {
    corral_pss_kib <= TARGET_TOTAL_PSS_KIB
        && corral_pss_kib * TARGET_PSS_DIVISOR <= containerd_pss_kib
}

fn render(tools: &Tools, latency: &Latencies, ours: &Memory, theirs: &Memory) -> String {
    let zero = Spread {
        min: 0.0,
        median: 0.0,
        max: 0.0,
    };
    let (c, d, r) = (
        spread(&latency.corral).unwrap_or(zero),
        spread(&latency.containerd).unwrap_or(zero),
        spread(&latency.runc).unwrap_or(zero),
    );
    let mut out =
        String::from("## Tasks: corrald and its shim against containerd 1.6 and its Go shim\n\n");
    let _ = writeln!(
        out,
        "A private corrald (release build, fresh root, Corral's release shim \
         `{}` first on its `PATH`) and a private containerd (`{}`, its default runtime: \
         containerd's Go shim `{}`) in the same run, both driving the same runc (`{}`), each \
         with the busybox fixture (`tests/fixtures/busybox-oci.tar`) imported by its own CLI. \
         Every shim measured is checked to run the expected binary. Ratios are Corral / \
         reference (below 1 is better).\n",
        shim::CORRAL_SHIM,
        shim::version_line(&tools.shim.containerd),
        tools.shim.go_shim.display(),
        shim::version_line(&tools.shim.runc),
    );
    let _ = writeln!(
        out,
        "### `run --rm` latency\n\n\
         `corralctl run --rm busybox idN true` against corrald and `ctr run --rm busybox idN \
         true` against containerd, {RUNS} timed runs each after one untimed warm-up, \
         interleaved with a bare `runc run --bundle B idN` (a bundle made with `runc spec`, \
         process `true`, no terminal, around the same busybox rootfs untarred from the image's \
         layer) so machine noise hits all alike: corralctl, ctr, runc, corralctl, ... \
         containerd keeps runc's state, its shims' sockets and ctr's fifos in its private `/run`, \
         a tmpfs; corrald's socket, with runc's state and the shims' sockets beside it, and \
         corralctl's `--fifo-dir` are on a tmpfs of their own likewise, so the host's \
         `/run/corral` is left alone. Both daemons' root and state dirs are on the disk. \
         Wall time from spawning the command to its exit (seen by a blocking `waitid`), in ms, min / median / max; the \
         target is judged on the medians.\n"
    );
    out.push_str(
        "| command | min / median / max | median / ctr's | median / bare runc's | target | |\n\
         |---|---|---|---|---|---|\n",
    );
    let _ = writeln!(
        out,
        "| `corralctl run --rm` (corrald, Corral's shim) | {} | {} | {} | ≤ {TARGET_CONTAINERD_FACTOR:.2}× ctr's and ≤ {TARGET_RUNC_FACTOR:.2}× bare runc's | {} |",
        c.show(1, " ms"),
        ratio(c.median, d.median),
        ratio(c.median, r.median),
        met(latency_met(&c, &d, &r)),
    );
    let _ = writeln!(
        out,
        "| `ctr run --rm` (containerd, Go shim) | {} | 1.00 | {} | | |",
        d.show(1, " ms"),
        ratio(d.median, r.median),
    );
    let _ = writeln!(
        out,
        "| `runc run` (bare) | {} | {} | 1.00 | | |",
        r.show(1, " ms"),
        ratio(r.median, d.median),
    );
    let (steps, overlay, own) = (
        spread(&latency.runc_steps).unwrap_or(zero),
        spread(&latency.overlay).unwrap_or(zero),
        spread(&latency.container_spec).unwrap_or(zero),
    );
    for (label, s) in [
        (
            "`runc create`, `start`, `delete` as three runs (bare)",
            &steps,
        ),
        (
            "the same three runs on a fresh overlay of the rootfs, mounted and unmounted as a \
             shim does (bare)",
            &overlay,
        ),
        (
            "the same with the timed containers' own `config.json` (containerd's default \
             spec, as corralctl makes it) (bare)",
            &own,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | | |",
            s.show(1, " ms"),
            ratio(s.median, d.median),
            ratio(s.median, r.median),
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "The last two rows are what any runc shim pays for a container on an overlayfs \
         snapshot before its own work: the overlay mounted on a bundle's `rootfs` (a fresh \
         upper dir, as a new snapshot has), runc's lifecycle as three runs in it, and the \
         unmount beside `runc delete` (it syncs what runc wrote into the upper dir); the last \
         one with the spec the timed containers get (`runc spec`'s has no cgroup path, no \
         device allow-list, 3 capabilities instead of 14). That last floor is {} bare `runc \
         run`'s median and {} ctr's; `corralctl run --rm` is {} of it, {:.1} ms more: \
         everything Corral itself does (the CLI, the daemon's calls and commits, the shim's \
         start and its calls).\n",
        ratio(own.median, r.median),
        ratio(own.median, d.median),
        ratio(c.median, own.median),
        c.median - own.median,
    );
    let _ = writeln!(
        out,
        "### Daemon and shims with {IDLE_CONTAINERS} idle containers\n\n\
         Per side, {IDLE_CONTAINERS} containers started one after the other with `run -d busybox \
         idN sleep 1000000` through its CLI, left idle for {:.1} s, then the daemon and each \
         container's shim (the process running the shim binary with `-id idN` and the daemon's \
         socket as `-address`, not its `start` invocation) measured: Pss from \
         `/proc/PID/smaps_rollup` (shared pages split among the processes mapping them), RSS \
         and threads from `/proc/PID/status`, summed. containerd's side is measured first, its \
         containers removed, then corrald's.\n",
        IDLE.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| with {IDLE_CONTAINERS} idle containers | corrald + Corral shims | containerd + Go shims | ratio | target | |\n\
         |---|---|---|---|---|---|",
    );
    let pss = |u: &Usage| u.pss_kib;
    let rss = |u: &Usage| u.rss_kib;
    let threads = |u: &Usage| u.threads;
    let (ours_pss, theirs_pss) = (ours.total(pss), theirs.total(pss));
    let pss_target = format!(
        "≤ {TARGET_TOTAL_PSS_KIB:.0} KiB (12 MiB) and ≤ 1/{TARGET_PSS_DIVISOR:.0} of containerd's"
    );
    let shims = format!("{IDLE_CONTAINERS} shims'");
    let rows: [(String, u64, u64, &str, &str, &str); 8] = [
        (
            "daemon Pss".into(),
            pss(&ours.daemon),
            pss(&theirs.daemon),
            " KiB",
            "",
            "",
        ),
        (
            format!("{shims} Pss"),
            ours.shims_sum(pss),
            theirs.shims_sum(pss),
            " KiB",
            "",
            "",
        ),
        (
            "**total Pss**".into(),
            ours_pss,
            theirs_pss,
            " KiB",
            &pss_target,
            met(memory_met(ours_pss as f64, theirs_pss as f64)),
        ),
        (
            "daemon RSS".into(),
            rss(&ours.daemon),
            rss(&theirs.daemon),
            " KiB",
            "",
            "",
        ),
        (
            format!("{shims} RSS"),
            ours.shims_sum(rss),
            theirs.shims_sum(rss),
            " KiB",
            "",
            "",
        ),
        (
            "total RSS".into(),
            ours.total(rss),
            theirs.total(rss),
            " KiB",
            "",
            "",
        ),
        (
            "daemon threads".into(),
            threads(&ours.daemon),
            threads(&theirs.daemon),
            "",
            "",
            "",
        ),
        (
            format!("{shims} threads"),
            ours.shims_sum(threads),
            theirs.shims_sum(threads),
            "",
            "",
            "",
        ),
    ];
    for (name, o, t, unit, target, verdict) in rows {
        let _ = writeln!(
            out,
            "| {name} | {o}{unit} | {t}{unit} | {} | {target} | {verdict} |",
            ratio(o as f64, t as f64)
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::shim::proc;
    use super::*;

    fn side(socket: &str) -> Side<'static> {
        Side {
            label: "test",
            cli: Box::new(|| Command::new("true")),
            daemon: 0,
            socket: PathBuf::from(socket),
            shim: PathBuf::from("/b/containerd-shim-corral-v2"),
            run_flags: vec!["--fifo-dir".into(), "/f".into()],
            prefix: "t",
        }
    }

    #[test]
    fn finds_the_serving_shim_of_this_daemon_only() {
        let table = [
            proc(1, "/b/containerd-shim-corral-v2 -namespace n -address /t/a.sock -publish-binary /b/corrald -id x1 start"),
            proc(2, "/b/containerd-shim-corral-v2 -namespace n -id x1 -address /t/a.sock"),
            proc(3, "/b/containerd-shim-corral-v2 -namespace n -id x10 -address unix:///t/a.sock"),
            proc(4, "/b/containerd-shim-corral-v2 -namespace n -id x2 -address /other.sock"),
            proc(5, "sleep 1000000 -id x2"),
        ];
        let s = side("/t/a.sock");
        assert_eq!(s.shim_of(&table, "x1").unwrap().pid, 2);
        assert_eq!(s.shim_of(&table, "x10").unwrap().pid, 3);
        assert!(s.shim_of(&table, "x2").is_err());
        let twice = [table[1].clone(), proc(6, &table[1].cmdline)];
        assert!(s.shim_of(&twice, "x1").unwrap_err().contains("2 "));
    }

    #[test]
    fn run_flags_go_before_the_image() {
        let s = side("/t/a.sock");
        assert_eq!(
            s.run_args(&["-d"], "x1", &["sleep", "1"]),
            ["run", "-d", "--fifo-dir", "/f", IMAGE, "x1", "sleep", "1"]
        );
    }

    #[test]
    fn memory_sums_and_verdicts() {
        let u = |pss, rss| Usage {
            threads: 2,
            rss_kib: rss,
            pss_kib: pss,
            private_kib: 0,
        };
        let m = Memory {
            daemon: u(2000, 4000),
            shims: vec![u(400, 1900), u(500, 2000)],
        };
        assert_eq!(m.shims_sum(|u| u.pss_kib), 900);
        assert_eq!(m.total(|u| u.pss_kib), 2900);
        assert_eq!(m.total(|u| u.rss_kib), 7900);
        assert_eq!(m.total(|u| u.threads), 6);
        assert!(memory_met(6000.0, 75_000.0));
        assert!(!memory_met(13_000.0, 100_000.0), "over 12 MiB");
        assert!(!memory_met(6000.0, 30_000.0), "less than 6× below");
        let s = |median| Spread {
            min: median,
            median,
            max: median,
        };
        assert!(latency_met(&s(40.0), &s(100.0), &s(30.0)));
        assert!(
            !latency_met(&s(50.0), &s(100.0), &s(30.0)),
            "over 1.5× runc"
        );
        assert!(!latency_met(&s(40.0), &s(70.0), &s(30.0)), "over 0.5× ctr");
    }
}
