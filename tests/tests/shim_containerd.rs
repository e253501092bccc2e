//! containerd-shim-corral-v2 under a real containerd 1.6: `ctr` runs busybox containers through
//! `--runtime io.containerd.corral.v2` and everything is cleaned up afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_tests::bins::shim_path_dir;
use corral_tests::harness::{
    leaked_processes, mounts_under, require_root, require_tool, wait_for, ContainerdOptions,
    PrivateContainerd,
};

const IMAGE: &str = "docker.io/corral/busybox:latest";
const RUNTIME: &str = "io.containerd.corral.v2";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// A private containerd with the shim on its PATH and busybox imported.
fn containerd() -> Option<PrivateContainerd> {
    if !require_root("runs containers") {
        return None;
    }
    require_tool("containerd")?;
    require_tool("runc")?;
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            shim_path_dir(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect("the shim binary")
        })
        .clone();
    let c = PrivateContainerd::start_with(ContainerdOptions {
        extra_path: vec![dir],
        ..ContainerdOptions::default()
    })
    .expect("private containerd");
    let tar = fixture("busybox-oci.tar");
    c.ctr(["images", "import", tar.to_str().unwrap()])
        .expect("importing busybox");
    Some(c)
}

fn ctr_run(c: &PrivateContainerd, args: &[&str]) -> std::process::Output {
    let mut all = vec!["run", "--runtime", RUNTIME];
    all.extend_from_slice(args);
    c.ctr_output(all).expect("ctr run")
}

/// Processes that mention this containerd's directory, other than containerd itself: its
/// shims and anything they left.
fn leftovers(c: &PrivateContainerd) -> Vec<corral_tests::harness::ProcessInfo> {
    let marker = c.temp().path().display().to_string();
    leaked_processes(&marker)
        .into_iter()
        .filter(|p| p.pid != c.pid() as i32)
        .collect()
}

fn assert_clean(c: &PrivateContainerd) {
    let state = c.state().to_path_buf();
    wait_for(Duration::from_secs(10), "shims to exit", || {
        leftovers(c).is_empty()
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", leftovers(c)));
    let runc_state = c.temp().path().join("runc").join(c.namespace());
    let runc_left: Vec<_> = std::fs::read_dir(&runc_state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(runc_left.is_empty(), "runc state left: {runc_left:?}");
    assert!(
        mounts_under(c.root()).unwrap().is_empty(),
        "mounts left under the root"
    );
    let tasks = state
        .join("io.containerd.runtime.v2.task")
        .join(c.namespace());
    let left: Vec<_> = std::fs::read_dir(&tasks)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "bundles left: {left:?}");
}

#[test]
fn run_rm_prints_hello_and_exit_codes_propagate() {
    let Some(c) = containerd() else { return };
    let out = ctr_run(&c, &["--rm", IMAGE, "hello", "echo", "hello"]);
    assert!(
        out.status.success(),
        "ctr run failed: {}\n{}\ncontainerd log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log_tail(40)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");

    let out = ctr_run(&c, &["--rm", IMAGE, "three", "sh", "-c", "exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean(&c);
}

fn ok(out: &std::process::Output, what: &str, c: &PrivateContainerd) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}\ncontainerd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log_tail(40)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ctr(c: &PrivateContainerd, args: &[&str]) -> String {
    let out = c.ctr_output(args.to_vec()).expect("ctr");
    ok(&out, &args.join(" "), c)
}

/// The status column of `ctr tasks ls` for `id`.
fn task_status(c: &PrivateContainerd, id: &str) -> Option<String> {
    ctr(c, &["tasks", "ls"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&id))
        .and_then(|cols| cols.get(2).map(|s| s.to_string()))
}

fn remove(c: &PrivateContainerd, id: &str) {
    let _ = c.ctr_output(["tasks", "kill", "-a", "-s", "SIGKILL", id]);
    let _ = wait_for(Duration::from_secs(10), "the task to stop", || {
        task_status(c, id).as_deref() != Some("RUNNING")
    });
    let _ = c.ctr_output(["tasks", "delete", id]);
    let _ = c.ctr_output(["containers", "delete", id]);
}

#[test]
fn detached_task_exec_ps_pause_resume_metrics_kill_delete() {
    let Some(c) = containerd() else { return };
    ok(
        &ctr_run(
            &c,
            &[
                "-d",
                IMAGE,
                "web",
                "sh",
                "-c",
                "trap 'exit 7' TERM; while true; do sleep 0.2; done",
            ],
        ),
        "run -d",
        &c,
    );
    assert_eq!(task_status(&c, "web").as_deref(), Some("RUNNING"));

    let out = ctr(
        &c,
        &[
            "tasks",
            "exec",
            "--exec-id",
            "e1",
            "web",
            "echo",
            "from exec",
        ],
    );
    assert_eq!(out, "from exec\n");
    let out = c
        .ctr_output([
            "tasks",
            "exec",
            "--exec-id",
            "e2",
            "web",
            "sh",
            "-c",
            "exit 5",
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(5));

    let ps = ctr(&c, &["tasks", "ps", "web"]);
    assert!(ps.lines().count() >= 2, "ps: {ps}");

    ctr(&c, &["tasks", "pause", "web"]);
    assert_eq!(task_status(&c, "web").as_deref(), Some("PAUSED"));
    ctr(&c, &["tasks", "resume", "web"]);
    assert_eq!(task_status(&c, "web").as_deref(), Some("RUNNING"));

    let metrics = ctr(&c, &["tasks", "metrics", "web"]);
    assert!(
        metrics.contains("memory.usage_in_bytes") || metrics.contains("memory"),
        "metrics: {metrics}"
    );

    // SIGTERM reaches the container's trap, which exits 7.
    ctr(&c, &["tasks", "kill", "web"]);
    wait_for(Duration::from_secs(10), "web to stop", || {
        task_status(&c, "web").as_deref() == Some("STOPPED")
    })
    .unwrap();
    let deleted = c.ctr_output(["tasks", "delete", "web"]).unwrap();
    let said = String::from_utf8_lossy(&deleted.stderr).into_owned()
        + &String::from_utf8_lossy(&deleted.stdout);
    // ctr reports a non-zero exit of the deleted task as a warning.
    assert!(said.contains("exit code 7"), "tasks delete said: {said}");
    ctr(&c, &["containers", "delete", "web"]);
    assert_clean(&c);
}

#[test]
fn kill_all_and_sigkill() {
    let Some(c) = containerd() else { return };
    ok(
        &ctr_run(&c, &["-d", IMAGE, "k", "sleep", "1000"]),
        "run -d",
        &c,
    );
    ctr(
        &c,
        &[
            "tasks",
            "exec",
            "-d",
            "--exec-id",
            "bg",
            "k",
            "sleep",
            "1000",
        ],
    );
    ctr(&c, &["tasks", "kill", "--all", "-s", "SIGKILL", "k"]);
    wait_for(Duration::from_secs(10), "k to stop", || {
        task_status(&c, "k").as_deref() == Some("STOPPED")
    })
    .unwrap();
    ctr(&c, &["tasks", "delete", "k"]);
    ctr(&c, &["containers", "delete", "k"]);
    assert_clean(&c);
}

#[test]
fn terminal_through_the_console_socket() {
    let Some(c) = containerd() else { return };
    let Some(script) = require_tool("script") else {
        return;
    };
    // ctr -t needs a terminal on its own stdin: `script` gives it one.
    let cmd = format!(
        "ctr --address {} run -t --rm --runtime {RUNTIME} {IMAGE} tty1 sh -c '[ -t 0 ] && [ -t 1 ] && echo on-a-terminal'",
        c.address().display()
    );
    let out = c
        .command(&script)
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("on-a-terminal"),
        "the container said: {text:?}"
    );
    assert_clean(&c);
}

#[test]
fn detached_output_can_be_attached() {
    let Some(c) = containerd() else { return };
    ok(
        &ctr_run(
            &c,
            &[
                "-d",
                IMAGE,
                "ticker",
                "sh",
                "-c",
                "while true; do echo tick; sleep 0.2; done",
            ],
        ),
        "run -d",
        &c,
    );
    let mut attach = c
        .command("ctr")
        .args([
            "--address",
            c.address().to_str().unwrap(),
            "tasks",
            "attach",
            "ticker",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = attach.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    let _ = attach.kill();
    let _ = attach.wait();
    assert_eq!(line, "tick\n");
    remove(&c, "ticker");
    assert_clean(&c);
}

#[test]
fn a_killed_shim_is_cleaned_up_by_containerd() {
    let Some(c) = containerd() else { return };
    ok(
        &ctr_run(&c, &["-d", IMAGE, "doomed", "sleep", "1001"]),
        "run -d",
        &c,
    );
    let shims = leftovers(&c);
    let shim = shims
        .iter()
        .find(|p| {
            p.cmdline.contains("containerd-shim-corral-v2")
                && p.cmdline.split(' ').any(|a| a == "doomed")
        })
        .unwrap_or_else(|| panic!("no shim for doomed among {shims:?}"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        Duration::from_secs(15),
        "containerd to drop the task",
        || task_status(&c, "doomed").is_none(),
    )
    .unwrap();
    ctr(&c, &["containers", "delete", "doomed"]);
    wait_for(
        Duration::from_secs(10),
        "the container's process to go",
        || leaked_processes("sleep 1001").is_empty(),
    )
    .unwrap();
    assert_clean(&c);
}

#[test]
fn twenty_containers_at_once() {
    let Some(c) = containerd() else { return };
    let c = std::sync::Arc::new(c);
    let runs: Vec<_> = (0..20)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let id = format!("many{i}");
                let word = format!("n{i}");
                let out = ctr_run(&c, &["--rm", IMAGE, &id, "echo", &word]);
                (word, out)
            })
        })
        .collect();
    for r in runs {
        let (word, out) = r.join().unwrap();
        let text = ok(&out, "concurrent run", &c);
        assert_eq!(text, format!("{word}\n"));
    }
    assert_clean(&c);
}
