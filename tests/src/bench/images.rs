//! Images: `corralctl images import` (content written through corrald, layers unpacked into
//! overlayfs) against `ctr images import` on a private containerd 1.6, in one run.
//!
//! Each import runs against a fresh daemon on a fresh root, so no blob is already there; the
//! daemon's peak RSS is its `VmHWM` after the import. Then, on one daemon each: `images
//! export` of the big image, and `images ls` over 100 image names.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::daemon::{containerd_config, corrald_cmd, met, ms, run_cli, spread, start_timed, Proc};
use super::{field_kib, timed};
use crate::harness::containerd::{ContainerdOptions, PrivateContainerd};
use crate::harness::TempRoot;
use crate::oci_archive::{generated_layers, write_image};

/// Imports of each archive per side.
pub const IMPORT_RUNS: usize = 3;
/// Runs of `images ls`.
pub const LS_RUNS: usize = 5;
/// Image names for `images ls`.
pub const LS_IMAGES: usize = 100;
/// The generated image: about this many uncompressed bytes, in this many layers.
pub const BIG_BYTES: usize = 100 << 20;
pub const BIG_LAYERS: usize = 5;
const BIG_NAME: &str = "docker.io/corral/bench-big:latest";
const BUSYBOX_NAME: &str = "docker.io/corral/busybox:latest";
const NAMESPACE: &str = "bench";
const DEADLINE: Duration = Duration::from_secs(300);
/// Targets: import time against containerd's, and corrald's peak RSS.
const IMPORT_FACTOR: f64 = 0.8;
const PEAK_RSS_TARGET_KIB: u64 = 16 * 1024;

/// `VmHWM` of `pid`, KiB.
pub(super) fn peak_rss(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    field_kib(&status, "VmHWM:").ok_or_else(|| format!("no VmHWM for {pid}"))
}

/// Makes a CLI command against one daemon from its arguments.
pub(super) type Cli<'a> = Box<dyn Fn(&[&str]) -> Command + 'a>;

/// One daemon under test, fresh on its own root, and how to run its CLI against it.
pub(super) struct Side<'a> {
    /// The CLI's name, for messages.
    pub(super) name: &'static str,
    pub(super) proc: Proc,
    _temp: TempRoot,
    pub(super) cli: Cli<'a>,
}

pub(super) fn corral_side(bin_dir: &Path) -> Result<Side<'static>, String> {
    let t = TempRoot::new().map_err(|e| format!("temp root: {e}"))?;
    let sock = t.join("corral.sock");
    let (proc, _) = start_timed(&mut corrald_cmd(bin_dir, &t, &sock)?, &sock)?;
    let ctl = bin_dir.join("corralctl");
    Ok(Side {
        name: "corralctl",
        proc,
        _temp: t,
        cli: Box::new(move |args| {
            let mut cmd = Command::new(&ctl);
            cmd.arg("-a").arg(&sock).args(["-n", NAMESPACE]).args(args);
            cmd
        }),
    })
}

pub(super) fn containerd_side(pc: &PrivateContainerd) -> Result<Side<'_>, String> {
    let t = TempRoot::new().map_err(|e| format!("temp root: {e}"))?;
    let (config, grpc) = containerd_config(&t)?;
    let mut cmd = pc.command("containerd");
    cmd.arg("--config").arg(&config);
    let (proc, _) = start_timed(&mut cmd, &grpc)?;
    Ok(Side {
        name: "ctr",
        proc,
        _temp: t,
        cli: Box::new(move |args| {
            let mut cmd = pc.command("ctr");
            cmd.arg("--address")
                .arg(&grpc)
                .args(["-n", NAMESPACE])
                .args(args);
            cmd
        }),
    })
}

/// Import times (ms) and peak RSS (KiB) of `runs` imports of `archive`, each on a new
/// daemon made by `side`.
fn imports<'a>(
    what: &str,
    archive: &Path,
    side: &dyn Fn() -> Result<Side<'a>, String>,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let mut times = Vec::new();
    let mut peaks = Vec::new();
    let path = archive.to_string_lossy().into_owned();
    for _ in 0..IMPORT_RUNS {
        let s = side()?;
        let took = run_cli(what, &mut (s.cli)(&["images", "import", &path]))?;
        times.push(ms(took));
        peaks.push(peak_rss(s.proc.0.id())? as f64);
    }
    Ok((times, peaks))
}

pub(super) fn line(
    out: &mut String,
    figure: &str,
    ours: &[f64],
    refs: &[f64],
    unit: &str,
) -> Result<(f64, f64), String> {
    let o = spread(ours)?;
    let r = spread(refs)?;
    let _ = write!(
        out,
        "| {figure} | {:.0} / {:.0} / {:.0} {unit} | {:.0} / {:.0} / {:.0} {unit} | {:.2} ",
        o.min,
        o.median,
        o.max,
        r.min,
        r.median,
        r.max,
        o.median / r.median
    );
    Ok((o.median, r.median))
}

/// Runs the section and returns its Markdown.
pub fn run(bin_dir: &Path) -> Result<String, String> {
    let pc = PrivateContainerd::start_with(ContainerdOptions::default())
        .map_err(|e| format!("starting containerd: {e}"))?;
    let work = TempRoot::new().map_err(|e| format!("temp root: {e}"))?;
    let big = work.join("bench-big.tar");
    write_image(&big, BIG_NAME, &generated_layers(BIG_BYTES, BIG_LAYERS, 7))
        .map_err(|e| format!("writing {}: {e}", big.display()))?;
    let busybox: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-oci.tar");
    let big_len = std::fs::metadata(&big).map(|m| m.len()).unwrap_or(0);

    let ours = || corral_side(bin_dir);
    let refs = || containerd_side(&pc);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Images: corralctl + corrald against ctr + containerd 1.6\n"
    );
    let _ = writeln!(
        out,
        "Import and unpack (overlayfs) of the busybox fixture and of a generated image ({:.0} MiB \
         uncompressed in {BIG_LAYERS} gzip layers, a {:.0} MiB archive), each import on a new \
         daemon with a fresh root, {IMPORT_RUNS} runs, min / median / max; peak daemon RSS is \
         the daemon's `VmHWM` after the import. Export of the generated image and `images ls` \
         over {LS_IMAGES} names ({LS_RUNS} runs) on one daemon each.\n",
        BIG_BYTES as f64 / (1 << 20) as f64,
        big_len as f64 / (1 << 20) as f64
    );
    let _ = writeln!(out, "| figure | Corral | containerd | ratio | target | |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for (label, archive) in [("busybox", &busybox), ("generated", &big)] {
        let (ot, op) = imports("corralctl images import", archive, &ours)?;
        let (rt, rp) = imports("ctr images import", archive, &refs)?;
        let (o, r) = line(
            &mut out,
            &format!("import + unpack, {label}"),
            &ot,
            &rt,
            "ms",
        )?;
        let _ = writeln!(
            out,
            "| ≤ {IMPORT_FACTOR}× | {} |",
            met(o <= IMPORT_FACTOR * r)
        );
        let (o, _) = line(
            &mut out,
            &format!("peak daemon RSS, {label}"),
            &op,
            &rp,
            "KiB",
        )?;
        let _ = writeln!(
            out,
            "| ≤ 16 MiB | {} |",
            met(o <= PEAK_RSS_TARGET_KIB as f64)
        );
    }

    // Export and ls on one daemon each, after importing the big image.
    let sides = [ours()?, refs()?];
    let path = big.to_string_lossy().into_owned();
    let mut export = [Vec::new(), Vec::new()];
    let mut ls = [Vec::new(), Vec::new()];
    for (i, s) in sides.iter().enumerate() {
        run_cli("import", &mut (s.cli)(&["images", "import", &path]))?;
        for _ in 0..IMPORT_RUNS {
            let target = work.join(format!("export-{i}.tar"));
            let t = target.to_string_lossy().into_owned();
            let took = run_cli(
                "images export",
                &mut (s.cli)(&["images", "export", &t, BIG_NAME]),
            )?;
            export[i].push(ms(took));
        }
        run_cli(
            "import",
            &mut (s.cli)(&["images", "import", &busybox.to_string_lossy()]),
        )?;
        for n in 2..LS_IMAGES {
            let name = format!("docker.io/corral/busybox:tag-{n}");
            run_cli(
                "images tag",
                &mut (s.cli)(&["images", "tag", BUSYBOX_NAME, &name]),
            )?;
        }
        for _ in 0..LS_RUNS {
            let (took, o) = timed(&mut (s.cli)(&["images", "ls"]), DEADLINE)?;
            let lines = o.stdout.iter().filter(|b| **b == b'\n').count();
            if !o.status.success() || lines < LS_IMAGES {
                return Err(format!(
                    "images ls: {} with {lines} lines: {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            ls[i].push(ms(took));
        }
    }
    line(&mut out, "export, generated", &export[0], &export[1], "ms")?;
    let _ = writeln!(out, "| | |");
    line(
        &mut out,
        &format!("`images ls`, {LS_IMAGES} images"),
        &ls[0],
        &ls[1],
        "ms",
    )?;
    let _ = writeln!(out, "| | |");
    drop(sides);
    drop(pc);
    Ok(out)
}
