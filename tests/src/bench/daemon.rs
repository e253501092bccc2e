//! The daemon, `corrald` with `corralctl`, against a private containerd 1.6 with Debian's `ctr`,
//! measured in the same run: idle memory, memory with 1,000 containers, time from exec to a
//! connectable socket, `c ls` over 1,000 containers, container create+delete through each
//! CLI, and stripped sizes.
//!
//! Containers are created the way a user creates them, with each daemon's CLI:
//! `corralctl c create --rootfs` on corrald and `ctr c create --rootfs` on containerd, same
//! flags, same namespace and root filesystem directory, so both daemons hold the same specs
//! (corralctl generates the spec ctr does). Create+delete is `c create --rootfs` then `c rm`,
//! two process runs on each side.

use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::services::version::v1::version_rpc::VersionClient;

use super::{kib, ratio, timed, usage, Spread};
use crate::harness::containerd::{ContainerdOptions, PrivateContainerd, DISABLED_PLUGINS};
use crate::harness::TempRoot;

/// Idle time before reading memory (longer than the rpc layer's handler idle timeout).
const SETTLE: Duration = Duration::from_secs(6);
/// Containers created in each daemon.
pub const CONTAINERS: usize = 1_000;
/// Repetitions of the ready time and of `c ls`.
pub const READY_RUNS: usize = 5;
pub const LS_RUNS: usize = 5;
/// Create+delete pairs.
pub const CREATE_RM_RUNS: usize = 20;
const NAMESPACE: &str = "bench";
/// A pause between one side's runs and the other's.
const PAUSE: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(60);

/// Targets from the issue.
const IDLE_PSS_TARGET_KIB: f64 = 3.0 * 1024.0;
const IDLE_PSS_FACTOR: f64 = 10.0;
const READY_TARGET_MS: f64 = 10.0;
const REF_FACTOR: f64 = 0.25;
const SIZE_TARGET_BYTES: f64 = 8_000_000.0;

pub(super) struct Proc(pub(super) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one CLI command to completion and returns how long it took; a failure is an error
/// carrying its stderr.
pub(super) fn run_cli(what: &str, cmd: &mut Command) -> Result<Duration, String> {
    let (took, out) = timed(cmd, DEADLINE)?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    Ok(took)
}

pub(super) fn connect(sock: &Path) -> Result<Client, String> {
    let addr = format!("unix://{}", sock.display());
    Client::connect(&addr).map_err(|e| format!("connecting to {addr}: {e}"))
}

/// Spawns `cmd` and returns it with the time until `sock` accepts a connection.
pub(super) fn start_timed(cmd: &mut Command, sock: &Path) -> Result<(Proc, Duration), String> {
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {cmd:?}: {e}"))?;
    let mut proc = Proc(child);
    loop {
        if UnixStream::connect(sock).is_ok() {
            return Ok((proc, start.elapsed()));
        }
        if let Ok(Some(status)) = proc.0.try_wait() {
            return Err(format!("{cmd:?} exited {status} before listening"));
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{} never accepted connections", sock.display()));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

pub(super) fn corrald_cmd(bin_dir: &Path, t: &TempRoot, sock: &Path) -> Result<Command, String> {
    let config = t.join("corrald.toml");
    std::fs::write(&config, "version = 2\n").map_err(|e| format!("writing config: {e}"))?;
    let mut cmd = Command::new(bin_dir.join("corrald"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(t.root())
        .arg("--state")
        .arg(t.state())
        .arg("--address")
        .arg(sock)
        .env_remove("NOTIFY_SOCKET");
    Ok(cmd)
}

/// A containerd config like the harness's, on its own root, state and sockets under `t`.
pub(super) fn containerd_config(t: &TempRoot) -> Result<(PathBuf, PathBuf), String> {
    let grpc = t.join("c.sock");
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| format!("{p:?}")).collect();
    let text = format!(
        "version = 2\nroot = {:?}\nstate = {:?}\ntemp = {:?}\ndisabled_plugins = [{}]\n\n\
         [grpc]\n  address = {:?}\n\n[ttrpc]\n  address = {:?}\n\n[debug]\n  level = \"info\"\n",
        t.root().display().to_string(),
        t.state().display().to_string(),
        t.join("tmp").display().to_string(),
        disabled.join(", "),
        grpc.display().to_string(),
        t.join("c.sock.ttrpc").display().to_string(),
    );
    let config = t.join("containerd.toml");
    std::fs::write(&config, text).map_err(|e| format!("writing config: {e}"))?;
    Ok((config, grpc))
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(super) fn spread(values: &[f64]) -> Result<Spread, String> {
    Spread::of(values).ok_or_else(|| "no measurements".to_string())
}

pub(super) fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

fn stripped_size(path: &Path) -> Result<u64, String> {
    let tmp = tempfile::NamedTempFile::new().map_err(|e| format!("temp file: {e}"))?;
    let out = Command::new("strip")
        .arg("-o")
        .arg(tmp.path())
        .arg(path)
        .output()
        .map_err(|e| format!("strip {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "strip {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::metadata(tmp.path())
        .map(|m| m.len())
        .map_err(|e| format!("stat: {e}"))
}

/// Runs the section and returns its Markdown.
pub fn run(bin_dir: &Path) -> Result<String, String> {
    let ctl = bin_dir.join("corralctl");
    let pc = PrivateContainerd::start_with(ContainerdOptions::default())
        .map_err(|e| format!("starting containerd: {e}"))?;

    // Ready time: fresh roots each run, median of READY_RUNS.
    let mut ours_ready = Vec::new();
    let mut ref_ready = Vec::new();
    for _ in 0..READY_RUNS {
        let t = TempRoot::new().map_err(|e| format!("temp root: {e}"))?;
        let sock = t.join("corral.sock");
        let (p, took) = start_timed(&mut corrald_cmd(bin_dir, &t, &sock)?, &sock)?;
        ours_ready.push(ms(took));
        drop(p);
        let t = TempRoot::new().map_err(|e| format!("temp root: {e}"))?;
        let (config, grpc) = containerd_config(&t)?;
        let mut cmd = pc.command("containerd");
        cmd.arg("--config").arg(&config);
        let (p, took) = start_timed(&mut cmd, &grpc)?;
        ref_ready.push(ms(took));
        drop(p);
    }
    let ours_ready = spread(&ours_ready)?;
    let ref_ready = spread(&ref_ready)?;

    // The corrald measured below.
    let t = TempRoot::new().map_err(|e| format!("temp root: {e}"))?;
    let sock = t.join("corral.sock");
    let (ours, _) = start_timed(&mut corrald_cmd(bin_dir, &t, &sock)?, &sock)?;
    let ours_pid = ours.0.id() as i32;
    let ref_pid = pc.pid() as i32;
    let ours_client = connect(&sock)?;
    let vctx = CallContext::new().with_timeout(Duration::from_secs(10));
    VersionClient::new(ours_client)
        .version(&vctx, &Default::default())
        .map_err(|e| format!("Version on corrald: {e}"))?;
    std::thread::sleep(SETTLE);
    let ours_idle = usage(ours_pid)?;
    let ref_idle = usage(ref_pid)?;

    // 1,000 containers in each, created by each daemon's CLI with the same flags.
    let rootfs = pc.temp().join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|e| format!("rootfs: {e}"))?;
    let corralctl = |args: &[&str]| {
        let mut cmd = Command::new(&ctl);
        cmd.arg("-a").arg(&sock).args(["-n", NAMESPACE]).args(args);
        cmd
    };
    let ctr = |args: &[&str]| {
        let mut cmd = pc.command("ctr");
        cmd.arg("--address")
            .arg(pc.address())
            .args(["-n", NAMESPACE])
            .args(args);
        cmd
    };
    let root = rootfs.to_string_lossy().into_owned();
    let create_args = |id: &str, label: &str| -> Vec<String> {
        ["c", "create", "--label", label, "--rootfs", &root, id]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    for i in 0..CONTAINERS {
        let id = format!("c-{i:04}");
        let label = format!("app={id}");
        let args = create_args(&id, &label);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&format!("corralctl c create {id}"), &mut corralctl(&args))?;
        run_cli(&format!("ctr c create {id}"), &mut ctr(&args))?;
    }
    std::thread::sleep(SETTLE);
    let ours_full = usage(ours_pid)?;
    let ref_full = usage(ref_pid)?;

    // c ls over 1,000: each side's runs together, after a pause, so neither side is measured
    // while the other daemon is still busy with its last answer (containerd's Go garbage
    // collector runs on after a large list).
    let ls = |what: &str, mut cmd: Command| -> Result<f64, String> {
        let (d, out) = timed(&mut cmd, DEADLINE)?;
        let lines = out.stdout.iter().filter(|b| **b == b'\n').count();
        if !out.status.success() || lines < CONTAINERS {
            return Err(format!(
                "{what}: {} with {lines} lines: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(ms(d))
    };
    let mut ours_ls = Vec::new();
    let mut ref_ls = Vec::new();
    std::thread::sleep(PAUSE);
    for _ in 0..LS_RUNS {
        let mut cmd = Command::new(&ctl);
        cmd.arg("-a").arg(&sock).args(["-n", NAMESPACE, "c", "ls"]);
        ours_ls.push(ls("corralctl c ls", cmd)?);
    }
    std::thread::sleep(PAUSE);
    for _ in 0..LS_RUNS {
        let mut cmd = pc.command("ctr");
        cmd.arg("--address")
            .arg(pc.address())
            .args(["-n", NAMESPACE, "c", "ls"]);
        ref_ls.push(ls("ctr c ls", cmd)?);
    }
    let ours_ls = spread(&ours_ls)?;
    let ref_ls = spread(&ref_ls)?;

    // create+delete: `c create --rootfs` then `c rm`, two process runs on each side.
    let mut ours_cr = Vec::new();
    let mut ref_cr = Vec::new();
    for i in 0..CREATE_RM_RUNS {
        let id = format!("cr-{i:02}");
        let create = ["c", "create", "--rootfs", &root, &id];
        let rm = ["c", "rm", &id];
        let d = run_cli(&format!("corralctl c create {id}"), &mut corralctl(&create))?
            + run_cli(&format!("corralctl c rm {id}"), &mut corralctl(&rm))?;
        ours_cr.push(ms(d));
        let d = run_cli(&format!("ctr c create {id}"), &mut ctr(&create))?
            + run_cli(&format!("ctr c rm {id}"), &mut ctr(&rm))?;
        ref_cr.push(ms(d));
    }
    let ours_cr = spread(&ours_cr)?;
    let ref_cr = spread(&ref_cr)?;
    drop(ours);

    // Stripped sizes.
    let ours_size = stripped_size(&bin_dir.join("corrald"))? + stripped_size(&ctl)?;
    let ref_size = stripped_size(Path::new("/usr/bin/containerd"))?
        + stripped_size(Path::new("/usr/bin/ctr"))?;

    let mut out =
        String::from("## Daemon: corrald and corralctl against containerd 1.6 and ctr\n\n");
    let _ = writeln!(
        out,
        "corrald (release build, fresh root) beside a private containerd 1.6 (Debian's, CRI and the \
         harness's other plugins disabled), in one run. Memory after {} s idle, from `/proc/PID/status` \
         and `smaps_rollup`. Ready: from spawn until the socket (containerd: its gRPC socket) accepts a \
         connection, polled every 0.2 ms, each start on a fresh root, min / median / max of {READY_RUNS}. \
         {CONTAINERS} containers are created in namespace `{NAMESPACE}` with each daemon's CLI, \
         `corralctl c create --label app=ID --rootfs DIR ID` and the same `ctr c create` command on \
         the same directory, so both daemons hold the same specs. `c ls`: wall time of \
         `corralctl -a SOCK -n {NAMESPACE} c ls` and `ctr -n {NAMESPACE} c ls` over the {CONTAINERS}, \
         {LS_RUNS} runs of each side in a row after a 2 s pause (so neither runs while the other \
         daemon is still busy). Create+delete: wall time of `corralctl -a SOCK -n {NAMESPACE} c create --rootfs \
         DIR ID` plus `corralctl c rm ID` (two process runs) against `ctr c create --rootfs DIR ID` plus \
         `ctr c rm ID`, min / median / max of {CREATE_RM_RUNS} pairs. Sizes: `strip`ped copies.\n",
        SETTLE.as_secs(),
    );
    out.push_str(
        "| figure | corrald | containerd | ratio | target | |\n|---|---|---|---|---|---|\n",
    );
    let idle_ok = (ours_idle.pss_kib as f64) <= IDLE_PSS_TARGET_KIB
        && (ours_idle.pss_kib as f64) * IDLE_PSS_FACTOR <= ref_idle.pss_kib as f64;
    let _ = writeln!(
        out,
        "| idle RSS | {} KiB | {} KiB | {} | | |",
        ours_idle.rss_kib,
        ref_idle.rss_kib,
        ratio(ours_idle.rss_kib as f64, ref_idle.rss_kib as f64)
    );
    let _ = writeln!(
        out,
        "| idle Pss | {} KiB | {} KiB | {} | ≤ 3 MiB and ≤ 0.10× | {} |",
        ours_idle.pss_kib,
        ref_idle.pss_kib,
        ratio(ours_idle.pss_kib as f64, ref_idle.pss_kib as f64),
        met(idle_ok)
    );
    let _ = writeln!(
        out,
        "| idle threads | {} | {} | | | |",
        ours_idle.threads, ref_idle.threads
    );
    let _ = writeln!(
        out,
        "| RSS with {CONTAINERS} containers | {} KiB | {} KiB | {} | | |",
        ours_full.rss_kib,
        ref_full.rss_kib,
        ratio(ours_full.rss_kib as f64, ref_full.rss_kib as f64)
    );
    let _ = writeln!(
        out,
        "| Pss with {CONTAINERS} containers | {} KiB | {} KiB | {} | | |",
        ours_full.pss_kib,
        ref_full.pss_kib,
        ratio(ours_full.pss_kib as f64, ref_full.pss_kib as f64)
    );
    let _ = writeln!(
        out,
        "| ready (min / median / max) | {} | {} | {} | ≤ 10 ms | {} |",
        ours_ready.show(2, " ms"),
        ref_ready.show(2, " ms"),
        ratio(ours_ready.median, ref_ready.median),
        met(ours_ready.median <= READY_TARGET_MS)
    );
    let _ = writeln!(
        out,
        "| `c ls`, {CONTAINERS} containers | {} | {} | {} | ≤ 0.25× | {} |",
        ours_ls.show(2, " ms"),
        ref_ls.show(2, " ms"),
        ratio(ours_ls.median, ref_ls.median),
        met(ours_ls.median <= REF_FACTOR * ref_ls.median)
    );
    let _ = writeln!(
        out,
        "| create+delete (`c create --rootfs` + `c rm`) | {} | {} | {} | ≤ 0.25× | {} |",
        ours_cr.show(2, " ms"),
        ref_cr.show(2, " ms"),
        ratio(ours_cr.median, ref_cr.median),
        met(ours_cr.median <= REF_FACTOR * ref_cr.median)
    );
    let _ = writeln!(
        out,
        "| stripped size, daemon + CLI | {} | {} | {} | ≤ 8 MB | {} |",
        kib(ours_size),
        kib(ref_size),
        ratio(ours_size as f64, ref_size as f64),
        met(ours_size as f64 <= SIZE_TARGET_BYTES)
    );
    out.push('\n');
    pc.stop().map_err(|e| format!("stopping containerd: {e}"))?;
    Ok(out)
}
