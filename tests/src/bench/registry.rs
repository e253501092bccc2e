//! Registry: `corralctl images pull --plain-http` (through corrald) against `ctr images pull
//! --plain-http` on a private containerd 1.6, both from one private `docker-registry` on
//! 127.0.0.1 holding a generated multi-layer image, in one run.
//!
//! Rounds alternate between the two sides. Before each pull the image is removed with
//! `images rm --sync` (which waits for the garbage collector), and the content store and the
//! snapshotter are checked empty, so every pull fetches and unpacks every blob. The client's
//! peak RSS is its `VmHWM` at exit as `/usr/bin/time -f %M` reports it (wait4's
//! `ru_maxrss`); the daemon's peak is reset by writing 5 to `/proc/PID/clear_refs` before the
//! pull and read as `VmHWM` after it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::daemon::{met, ms, run_cli};
use super::images::{containerd_side, corral_side, line, peak_rss, Side};
use super::timed;
use crate::harness::containerd::{ContainerdOptions, PrivateContainerd};
use crate::harness::registry::{Registry, RegistryOptions};
use crate::harness::TempRoot;
use crate::oci_archive::{generated_layers, write_image};

/// Pulls per side.
pub const ROUNDS: usize = 4;
/// The generated image: about this many uncompressed bytes, in this many layers.
pub const IMAGE_BYTES: usize = 100 << 20;
pub const IMAGE_LAYERS: usize = 5;
const LOCAL_NAME: &str = "docker.io/corral/bench-pull:latest";
const DEADLINE: Duration = Duration::from_secs(300);
/// Targets: pull time against ctr's, and client + daemon peak RSS.
const PULL_FACTOR: f64 = 0.8;
const PEAK_RSS_TARGET_KIB: u64 = 24 * 1024;
const TIME: &str = "/usr/bin/time";

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS.
fn reset_peak(pid: u32) -> Result<(), String> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .map_err(|e| format!("resetting the peak RSS of {pid}: {e}"))
}

/// Lines of `args`' output on `side`.
fn lines(side: &Side<'_>, args: &[&str]) -> Result<Vec<String>, String> {
    let (_, o) = timed(&mut (side.cli)(args), DEADLINE)?;
    if !o.status.success() {
        return Err(format!(
            "{} {}: {}: {}",
            side.name,
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.trim().is_empty())
        .collect())
}

/// Removes `image` with a synchronous GC and checks that no content and no snapshot is left.
fn empty(side: &Side<'_>, image: &str) -> Result<(), String> {
    if lines(side, &["images", "ls", "-q"])?
        .iter()
        .any(|l| l == image)
    {
        run_cli(
            &format!("{} images rm --sync", side.name),
            &mut (side.cli)(&["images", "rm", "--sync", image]),
        )?;
    }
    let content = lines(side, &["content", "ls", "-q"])?;
    // `snapshots ls` prints a header line.
    let snapshots = lines(side, &["snapshots", "ls"])?;
    if !content.is_empty() || snapshots.len() > 1 {
        return Err(format!(
            "{}: after images rm --sync, content {content:?} and snapshots {snapshots:?} are left",
            side.name
        ));
    }
    Ok(())
}

/// What one pull measured.
struct Pulled {
    /// Wall time, ms.
    ms: f64,
    /// The client's peak RSS, KiB.
    client: f64,
    /// The daemon's peak RSS during the pull, KiB.
    daemon: f64,
}

/// One pull from an empty store.
fn pull(side: &Side<'_>, image: &str, scratch: &Path) -> Result<Pulled, String> {
    empty(side, image)?;
    let pid = side.proc.0.id();
    reset_peak(pid)?;
    let report = scratch.join(format!("{}-maxrss", side.name));
    let inner = (side.cli)(&["images", "pull", "--plain-http", image]);
    let mut cmd = Command::new(TIME);
    cmd.arg("-f").arg("%M").arg("-o").arg(&report);
    cmd.arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    let (took, o) = timed(&mut cmd, DEADLINE)?;
    if !o.status.success() {
        return Err(format!(
            "{} images pull: {}: {}",
            side.name,
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let daemon = peak_rss(pid)?;
    let client: u64 = std::fs::read_to_string(&report)
        .map_err(|e| format!("reading {}: {e}", report.display()))?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("no peak RSS in {}", report.display()))?;
    Ok(Pulled {
        ms: ms(took),
        client: client as f64,
        daemon: daemon as f64,
    })
}

/// Pushes the generated image to `reg` through a helper corrald; returns its remote reference.
fn push_image(bin_dir: &Path, reg: &Registry, archive: &Path) -> Result<String, String> {
    let helper = corral_side(bin_dir)?;
    let remote = format!("{}/corral/bench-pull:latest", reg.host());
    run_cli(
        "corralctl images import",
        &mut (helper.cli)(&["images", "import", &archive.to_string_lossy()]),
    )?;
    run_cli(
        "corralctl images push",
        &mut (helper.cli)(&["images", "push", "--plain-http", &remote, LOCAL_NAME]),
    )?;
    Ok(remote)
}

/// Runs the section and returns its Markdown.
pub fn run(bin_dir: &Path) -> Result<String, String> {
    let registry_bin = PathBuf::from("/usr/bin/docker-registry");
    if !registry_bin.exists() {
        return Err("docker-registry is not installed (apt-get install docker-registry)".into());
    }
    if !Path::new(TIME).exists() {
        return Err(format!("{TIME} is not installed (apt-get install time)"));
    }
    let reg = Registry::start(&registry_bin, &RegistryOptions::default())
        .map_err(|e| format!("starting the registry: {e}"))?;
    let work = TempRoot::new().map_err(|e| format!("temp root: {e}"))?;
    let archive = work.join("bench-pull.tar");
    write_image(
        &archive,
        LOCAL_NAME,
        &generated_layers(IMAGE_BYTES, IMAGE_LAYERS, 11),
    )
    .map_err(|e| format!("writing {}: {e}", archive.display()))?;
    let archive_len = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    let remote = push_image(bin_dir, &reg, &archive)?;

    let pc = PrivateContainerd::start_with(ContainerdOptions::default())
        .map_err(|e| format!("starting containerd: {e}"))?;
    let ours = corral_side(bin_dir)?;
    let refs = containerd_side(&pc)?;
    let mut times = [Vec::new(), Vec::new()];
    let mut peaks = [Vec::new(), Vec::new()];
    let mut clients = [Vec::new(), Vec::new()];
    let mut daemons = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (i, side) in [&ours, &refs].into_iter().enumerate() {
            let p = pull(side, &remote, work.path())?;
            times[i].push(p.ms);
            peaks[i].push(p.client + p.daemon);
            clients[i].push(p.client);
            daemons[i].push(p.daemon);
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Registry pull: corralctl + corrald against ctr + containerd 1.6\n"
    );
    let _ = writeln!(
        out,
        "`images pull --plain-http` of a generated image ({:.0} MiB uncompressed in \
         {IMAGE_LAYERS} gzip layers, {:.0} MiB as an archive) from a private `docker-registry` on \
         127.0.0.1, pushed once by `corralctl images push`. {ROUNDS} rounds, alternating sides, \
         min / median / max; before each pull the image is removed with `images rm --sync` and \
         the content store and snapshotter are checked empty, so every pull fetches and unpacks \
         every layer. Peak RSS is the client's peak (`ru_maxrss` at exit, from `/usr/bin/time \
         -f %M`) plus the daemon's `VmHWM` during the pull (reset before it by writing 5 to \
         `/proc/PID/clear_refs`).\n",
        IMAGE_BYTES as f64 / (1 << 20) as f64,
        archive_len as f64 / (1 << 20) as f64
    );
    let _ = writeln!(out, "| figure | Corral | containerd | ratio | target | |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let (o, r) = line(&mut out, "pull + unpack", &times[0], &times[1], "ms")?;
    let _ = writeln!(out, "| ≤ {PULL_FACTOR}× | {} |", met(o <= PULL_FACTOR * r));
    let (o, _) = line(
        &mut out,
        "peak RSS, client + daemon",
        &peaks[0],
        &peaks[1],
        "KiB",
    )?;
    let _ = writeln!(
        out,
        "| ≤ 24 MiB | {} |",
        met(o <= PEAK_RSS_TARGET_KIB as f64)
    );
    line(
        &mut out,
        "of which the client's",
        &clients[0],
        &clients[1],
        "KiB",
    )?;
    let _ = writeln!(out, "| | |");
    line(
        &mut out,
        "of which the daemon's",
        &daemons[0],
        &daemons[1],
        "KiB",
    )?;
    let _ = writeln!(out, "| | |\n");
    drop(ours);
    drop(refs);
    drop(pc);
    drop(reg);
    Ok(out)
}
