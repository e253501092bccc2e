//! `make bench`: Corral's figures beside their references, measured in the same run, written to
//! `docs/benchmarks.md`.
//!
//! Measured now: release binary sizes (against Debian's containerd 1.6 binaries), an idle
//! ttrpc server's threads and memory with 0, 1 and 20 connected clients (Corral's rpc layer
//! against Go's ttrpc 1.1.1, the version containerd 1.6 links, serving the same Version call),
//! and the shim under a private containerd 1.6 against containerd's Go shim and bare runc
//! ([`corral_tests::bench::shim`]), and containers run through corrald against containerd 1.6
//! and bare runc ([`corral_tests::bench::tasks`]). Needs root, containerd, runc and Go.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::services::version::v1::version_rpc::VersionClient;
use corral_tests::bench::{kib, ratio, shim, tasks, usage, Usage};

/// Idle time before reading memory: longer than the rpc layer's handler idle timeout.
const SETTLE: Duration = Duration::from_secs(6);

fn main() -> ExitCode {
    // Binaries just built sit in the page cache as dirty pages, which smaps counts as private
    // dirty memory of every process mapping them until they are written back: write them
    // back first, so memory figures show what a process really owns.
    nix::unistd::sync();
    // `corral-bench --meta-only`: just the metadata store section, printed, not written.
    // `corral-bench --daemon-only`: just the daemon section, printed, not written.
    // `corral-bench --images-only`: just the images section, printed, not written.
    // `corral-bench --tasks-only`: just the tasks section, printed, not written.
    // `corral-bench --registry-only`: just the registry pull section, printed, not written.
    let result = match std::env::args().nth(1).as_deref() {
        Some("--meta-only") => meta_section(),
        Some("--daemon-only") => daemon_section(),
        Some("--images-only") => images_section(),
        Some("--tasks-only") => tasks_section(),
        Some("--registry-only") => registry_section(),
        _ => run(),
    };
    match result {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("corral-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn run() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating myself: {e}"))?;
    let bin_dir = exe
        .parent()
        .ok_or("the bench binary has no directory")?
        .to_path_buf();
    // Fail before measuring anything when the shim benchmark cannot run.
    let busybox = repo_root().join("tests/fixtures/busybox-oci.tar");
    let shim_tools = shim::tools(&bin_dir, &busybox)?;
    let tasks_tools = tasks::tools(&bin_dir, &busybox)?;
    let mut report = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        report,
        "Written by `make bench` on {} ({} cores, kernel {}). Every Corral figure stands beside its \
         reference measured in the same run; ratios are Corral / reference (below 1 is better).\n",
        today(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        read_trim("/proc/sys/kernel/osrelease"),
    );

    report.push_str(&sizes(&bin_dir)?);
    report.push_str(&idle_servers(&bin_dir)?);
    report.push_str(&shim::run(&shim_tools)?);
    report.push_str(&meta_section()?);
    report.push_str(&daemon_section()?);
    report.push_str(&images_section()?);
    report.push_str(&registry_section()?);
    report.push_str(&tasks::run(&tasks_tools)?);

    let out = repo_root().join("docs/benchmarks.md");
    std::fs::write(&out, &report).map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(report)
}

fn meta_section() -> Result<String, String> {
    corral_tests::bench::meta::run(&repo_root().join("target/go-bolt-bench"))
}

fn daemon_section() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating myself: {e}"))?;
    let bin_dir = exe.parent().ok_or("the bench binary has no directory")?;
    corral_tests::bench::daemon::run(bin_dir)
}

fn images_section() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating myself: {e}"))?;
    let bin_dir = exe.parent().ok_or("the bench binary has no directory")?;
    corral_tests::bench::images::run(bin_dir)
}

fn registry_section() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating myself: {e}"))?;
    let bin_dir = exe.parent().ok_or("the bench binary has no directory")?;
    corral_tests::bench::registry::run(bin_dir)
}

fn tasks_section() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating myself: {e}"))?;
    let bin_dir = exe.parent().ok_or("the bench binary has no directory")?;
    let tools = tasks::tools(bin_dir, &repo_root().join("tests/fixtures/busybox-oci.tar"))?;
    tasks::run(&tools)
}

fn today() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn size_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn sizes(bin_dir: &Path) -> Result<String, String> {
    let pairs = [
        (
            "containerd-shim-corral-v2",
            "/usr/bin/containerd-shim-runc-v2",
        ),
        ("corrald", "/usr/bin/containerd"),
        ("corralctl", "/usr/bin/ctr"),
    ];
    let mut out = String::from(
        "## Release binary sizes\n\nStripped release builds (`make release`) against Debian 12's containerd 1.6.20 binaries. \
         Corral's binaries do much less than containerd's today (see the README's status table), so these \
         ratios will rise as they gain features; they are here to watch the trend.\n\n\
         | binary | size | reference | reference size | ratio |\n|---|---|---|---|---|\n",
    );
    for (ours, reference) in pairs {
        let ours_path = bin_dir.join(ours);
        let ours_size = size_of(&ours_path).ok_or_else(|| {
            format!(
                "{} is missing: run `make release` first",
                ours_path.display()
            )
        })?;
        let (ref_size, r) = match size_of(Path::new(reference)) {
            Some(s) => (kib(s), ratio(ours_size as f64, s as f64)),
            None => ("not installed".into(), "n/a".into()),
        };
        let _ = writeln!(
            out,
            "| `{ours}` | {} | `{reference}` | {ref_size} | {r} |",
            kib(ours_size)
        );
    }
    out.push('\n');
    Ok(out)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server that prints one line once it listens.
fn start_server(cmd: &mut Command, sock: &Path) -> Result<Proc, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {cmd:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("waiting for {cmd:?}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{} never accepted connections", sock.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(proc)
}

/// Connects `n` clients, makes one call on each, lets the server settle, and measures it.
fn measure(pid: i32, sock: &Path, n: usize) -> Result<(Usage, Vec<Client>), String> {
    let addr = format!("unix://{}", sock.display());
    let ctx = CallContext::new().with_timeout(Duration::from_secs(10));
    let mut clients = Vec::new();
    for _ in 0..n {
        let c = Client::connect(&addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
        VersionClient::new(c.clone())
            .version(&ctx, &Default::default())
            .map_err(|e| format!("Version on {addr}: {e}"))?;
        clients.push(c);
    }
    std::thread::sleep(SETTLE);
    Ok((usage(pid)?, clients))
}

fn idle_servers(bin_dir: &Path) -> Result<String, String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let ours_sock = tmp.path().join("corral.sock");
    let crate_sock = tmp.path().join("crate.sock");
    let go_sock = tmp.path().join("go.sock");
    let go_out = repo_root().join("target/go-interop");
    let go =
        corral_tests::go::build(&go_out).map_err(|e| format!("building the Go server: {e}"))?;

    let ours = start_server(
        Command::new(bin_dir.join("corral-idle-server")).arg(&ours_sock),
        &ours_sock,
    )?;
    let ttrpc_crate = start_server(
        Command::new(bin_dir.join("ttrpc-crate-idle-server")).arg(&crate_sock),
        &crate_sock,
    )?;
    let reference = start_server(
        Command::new(&go.server).arg("-socket").arg(&go_sock),
        &go_sock,
    )?;
    let mut out = String::from(
        "## Idle ttrpc server\n\nA server answering containerd's Version call, measured after each client made one call and \
         the server sat idle for 6 s. Corral: `corral-idle-server` (its rpc layer, release build). Reference: a Go server on \
         Debian's ttrpc 1.1.1 (what containerd 1.6 and its shims link), `tests/go/src/corral-interop/server`. Also measured: \
         the same Rust service on the `ttrpc` crate's own sync server (`ttrpc-crate-idle-server`, default thread settings), \
         which Corral's layer replaces. Ratios are Corral / Go.\n\n\
         | clients | Corral threads | ttrpc crate threads | Go threads | Corral RSS | ttrpc crate RSS | Go RSS | RSS ratio | Corral Pss | ttrpc crate Pss | Go Pss | Pss ratio |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut keep = Vec::new();
    let mut connected = 0;
    for n in [0usize, 1, 20] {
        let extra = n - connected;
        let (u, c1) = measure(ours.0.id() as i32, &ours_sock, extra)?;
        let (t, c2) = measure(ttrpc_crate.0.id() as i32, &crate_sock, extra)?;
        let (g, c3) = measure(reference.0.id() as i32, &go_sock, extra)?;
        keep.push(c1);
        keep.push(c2);
        keep.push(c3);
        connected = n;
        let _ = writeln!(
            out,
            "| {n} | {} | {} | {} | {} KiB | {} KiB | {} KiB | {} | {} KiB | {} KiB | {} KiB | {} |",
            u.threads,
            t.threads,
            g.threads,
            u.rss_kib,
            t.rss_kib,
            g.rss_kib,
            ratio(u.rss_kib as f64, g.rss_kib as f64),
            u.pss_kib,
            t.pss_kib,
            g.pss_kib,
            ratio(u.pss_kib as f64, g.pss_kib as f64),
        );
    }
    out.push('\n');
    drop(keep);
    Ok(out)
}
