//! `corralctl run` and `corralctl tasks` against a real corrald, its shims and runc, with the
//! busybox fixture imported as an image: output and exit codes, stdin, `--rm`, `--null-io`,
//! `--log-uri`, detached tasks listed, inspected, paused, exec'ed into, attached to and
//! signalled, signals forwarded by corralctl, and `-t` through a pty whose settings come
//! back whatever ends corralctl.
//!
//! Each test has its own corrald, namespace and fifo directory; whatever a test leaves
//! (tasks, containers, processes) is removed when its [`Env`] is dropped, failed or not.

use std::fs;
use std::io::{Read, Write};
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use corral_tests::ctl::{stderr, stdout};
use corral_tests::harness::procs::ProcessInfo;
use corral_tests::harness::{wait_for, ChildGuard};
use corral_tests::run_env::{RunEnv, DEADLINE, IMAGE};
use nix::sys::signal::Signal;
use nix::sys::termios::{tcgetattr, LocalFlags};

/// One test's corrald, namespace and directories, and what these tests do with them.
struct Env(RunEnv);

impl Deref for Env {
    type Target = RunEnv;

    fn deref(&self) -> &RunEnv {
        &self.0
    }
}

impl Env {
    /// Starts corrald (logging at debug level) and imports the image; `None` (after saying
    /// why) without root or runc.
    fn start(ns: &'static str) -> Option<Env> {
        RunEnv::start(ns, "[debug]\nlevel = \"debug\"\n").map(Env)
    }

    /// Runs corralctl with `input` on its stdin.
    fn ctl_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn("corralctl", &mut cmd).unwrap();
        let mut stdin = guard.child_mut().stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = Collector::start(guard.child_mut().stdout.take().unwrap());
        let err = Collector::start(guard.child_mut().stderr.take().unwrap());
        let status = guard
            .wait_timeout(DEADLINE)
            .unwrap()
            .unwrap_or_else(|| panic!("corralctl {args:?} still running after {DEADLINE:?}"));
        writer.join().unwrap();
        Output {
            status,
            stdout: out.finish(),
            stderr: err.finish(),
        }
    }

    /// Starts corralctl in the background with its output collected.
    fn spawn(&self, args: &[&str]) -> Running {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn("corralctl", &mut cmd).unwrap();
        let out = Collector::start(guard.child_mut().stdout.take().unwrap());
        let err = Collector::start(guard.child_mut().stderr.take().unwrap());
        Running { guard, out, err }
    }

    fn ids(&self, noun: &str) -> Vec<String> {
        self.ok(&[noun, "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The task's pid and status from `tasks ls`.
    fn task_row(&self, id: &str) -> Option<(u32, String)> {
        self.ok(&["t", "ls"]).lines().skip(1).find_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells.first() == Some(&id)).then(|| (cells[1].parse().unwrap(), cells[2].to_string()))
        })
    }

    fn wait_status(&self, id: &str, status: &str) {
        wait_for(DEADLINE, &format!("task {id} to be {status}"), || {
            self.task_row(id).is_some_and(|(_, s)| s == status)
        })
        .unwrap();
    }

    /// Nothing of `--rm`'d containers is left: no task, no container, no snapshot but the
    /// image's, no bundle, no fifo set, no shim.
    fn assert_nothing_left(&self) {
        assert_eq!(self.ids("t"), Vec::<String>::new());
        assert_eq!(self.ids("c"), Vec::<String>::new());
        let snapshots = self.ok(&["snapshots", "ls"]);
        assert_eq!(
            snapshots.lines().count(),
            2,
            "only the image's: {snapshots}"
        );
        let bundles = self
            .temp
            .state()
            .join("io.containerd.runtime.v2.task")
            .join(self.ns);
        let left: Vec<_> = fs::read_dir(&bundles)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "bundles left: {left:?}");
        let fifos: Vec<_> = fs::read_dir(self.fifo_dir())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(fifos.is_empty(), "fifo sets left: {fifos:?}");
        wait_for(DEADLINE, "the shims to exit", || self.shims().is_empty())
            .unwrap_or_else(|e| panic!("{e}: {:?}", self.shims()));
    }

    fn shims(&self) -> Vec<ProcessInfo> {
        corral_tests::harness::procs::processes()
            .into_iter()
            .filter(|p| {
                p.state != 'Z'
                    && p.cmdline.contains("containerd-shim")
                    && p.cmdline.contains(self.temp.marker())
            })
            .collect()
    }

    /// Checks that nothing is left, stops corrald cleanly and checks that no mount or
    /// cgroup is left.
    fn finish(self) {
        self.assert_nothing_left();
        self.0.finish();
    }
}

/// Reads a pipe to its end on a thread, keeping what came so far readable.
struct Collector {
    bytes: Arc<Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Collector {
    fn start(mut pipe: impl Read + Send + 'static) -> Collector {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let b = Arc::clone(&bytes);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Collector { bytes, thread }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, what: &str) {
        wait_for(DEADLINE, &format!("{what:?} in the output"), || {
            self.text().contains(what)
        })
        .unwrap_or_else(|e| panic!("{e}; output so far: {:?}", self.text()));
    }

    fn finish(self) -> Vec<u8> {
        let _ = self.thread.join();
        Arc::try_unwrap(self.bytes)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_default()
    }
}

/// A corralctl running in the background.
struct Running {
    guard: ChildGuard,
    out: Collector,
    err: Collector,
}

impl Running {
    /// Its exit status, stdout and stderr, once it ends (within the deadline).
    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let status = self
            .guard
            .wait_timeout(DEADLINE)
            .unwrap()
            .unwrap_or_else(|| panic!("corralctl still running; output: {:?}", self.out.text()));
        let out = String::from_utf8_lossy(&self.out.finish()).into_owned();
        let err = String::from_utf8_lossy(&self.err.finish()).into_owned();
        (status, out, err)
    }
}

#[test]
fn run_prints_output_passes_stdin_and_exits_with_the_tasks_status() {
    let Some(env) = Env::start("run-output") else {
        return;
    };

    let out = env.ctl(&env.run_args(
        &["--rm"],
        "r1",
        &["sh", "-c", "echo hi; echo oops >&2; exit 3"],
    ));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(stderr(&out), "oops\n");

    let out = env.ctl_input(
        &env.run_args(
            &["--rm"],
            "r2",
            &["sh", "-c", "read l; echo \"got $l\"; cat"],
        ),
        b"one\ntwo\nthree\n",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "got one\ntwo\nthree\n");

    // A large input and output go through whole.
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| b"abcdefghij\n"[i as usize % 11])
        .collect();
    let out = env.ctl_input(&env.run_args(&["--rm"], "r3", &["cat"]), &big);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.stdout == big, "the output differs from the input");

    let out = env.ctl(&[
        "run",
        "--rm",
        "--null-io",
        IMAGE,
        "r4",
        "sh",
        "-c",
        "echo nothing; exit 2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");

    let log = env.temp.join("logs/r5.log");
    let uri = format!("file://{}", log.display());
    let out = env.ctl(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        IMAGE,
        "r5",
        "sh",
        "-c",
        "echo to-log; echo to-log-err >&2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("to-log\n") && logged.contains("to-log-err\n"),
        "{logged:?}"
    );

    // -t without a terminal: refused, and --rm still removes the container.
    let out = env.ctl(&["run", "--rm", "-t", IMAGE, "r6", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "corralctl: provided file is not a console\n");
    let out = env.ctl(&["run", "--rm", "-d", IMAGE, "r7"]);
    assert_eq!(
        stderr(&out),
        "corralctl: flags --detach and --rm cannot be specified together\n"
    );

    env.finish();
}

#[test]
fn detached_tasks_are_listed_inspected_exec_ed_attached_and_signalled() {
    let Some(env) = Env::start("run-detached") else {
        return;
    };
    let fifo = env.fifo_arg();
    let pid_file = env.temp.join("d1.pid");
    let script =
        "trap 'echo hello' USR2; trap 'echo bye; exit 9' USR1; while true; do sleep 0.2; done";
    let out = env.ok(&env.run_args(
        &["-d", "--pid-file", pid_file.to_str().unwrap()],
        "d1",
        &["sh", "-c", script],
    ));
    assert_eq!(out, "", "detached: nothing printed");
    let (pid, status) = env.task_row("d1").unwrap();
    assert_eq!(status, "RUNNING");
    assert_eq!(fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    assert_eq!(env.ids("t"), ["d1"]);
    let table = env.ok(&["t", "ls"]);
    assert!(table.starts_with("TASK    PID "), "{table}");

    let ps = env.ok(&["t", "ps", "d1"]);
    assert!(ps.starts_with("PID "), "{ps}");
    assert!(
        ps.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "{ps}"
    );

    let metrics = env.ok(&["t", "metrics", "d1"]);
    let lines: Vec<&str> = metrics.lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[1].starts_with("d1 "),
        "{metrics}"
    );
    assert!(lines[3].starts_with("METRIC "), "{metrics}");
    assert!(metrics.contains("pids.current"), "{metrics}");
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["t", "metric", "--format", "json", "d1"])).unwrap();
    assert!(json["pids"]["current"].as_u64().unwrap() >= 1, "{json}");

    env.ok(&["t", "pause", "d1"]);
    env.wait_status("d1", "PAUSED");
    env.ok(&["t", "resume", "d1"]);
    env.wait_status("d1", "RUNNING");

    let out = env.ctl(&[
        "t",
        "exec",
        "--exec-id",
        "e1",
        "--fifo-dir",
        fifo,
        "d1",
        "sh",
        "-c",
        "echo in-exec; echo e >&2; exit 6",
    ]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert_eq!(
        (stdout(&out).as_str(), stderr(&out).as_str()),
        ("in-exec\n", "e\n")
    );
    let out = env.ctl_input(
        &[
            "t",
            "exec",
            "--exec-id",
            "e2",
            "--fifo-dir",
            fifo,
            "d1",
            "cat",
        ],
        b"piped\n",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out), "piped\n");
    let out = env.ok(&[
        "t",
        "exec",
        "--exec-id",
        "e3",
        "--fifo-dir",
        fifo,
        "--user",
        "1000:1000",
        "--cwd",
        "/tmp",
        "d1",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(out, "1000\n/tmp\n");
    let out = env.ctl(&["t", "exec", "d1", "true"]);
    assert_ne!(out.status.code(), Some(0), "an exec needs its id");

    // Attach: what the task writes reaches it, then its end, with its status.
    let attach = env.spawn(&["t", "attach", "d1"]);
    env.ok(&["t", "kill", "-s", "USR2", "d1"]);
    attach.out.wait_for("hello\n");
    env.ok(&["t", "kill", "-s", "SIGUSR1", "d1"]);
    let (status, out, err) = attach.finish();
    assert_eq!(status.code(), Some(9), "{out:?} {err:?}");
    assert_eq!(out, "hello\nbye\n");
    // attach deletes the ended task, with its fifos.
    assert_eq!(env.ids("t"), Vec::<String>::new());
    let out = env.ctl(&["t", "kill", "d1"]);
    assert_eq!(
        stderr(&out),
        "corralctl: no running task found: task d1 not found: not found\n"
    );
    env.ok(&["c", "rm", "d1"]);

    // A task stopped by a kill is deleted by `tasks rm`, whose fifos go with it.
    env.ok(&env.run_args(&["-d"], "d2", &["sleep", "1000"]));
    let out = env.ctl(&["t", "rm", "d2"]);
    assert_eq!(out.status.code(), Some(1));
    // Logged for the task, then reported as the command's error, as ctr does.
    assert!(
        stderr(&out).ends_with(
            "corralctl: task must be stopped before deletion: running: failed precondition\n"
        ),
        "{}",
        stderr(&out)
    );
    env.ok(&["t", "kill", "-s", "KILL", "d2"]);
    env.wait_status("d2", "STOPPED");
    env.ok(&["t", "rm", "d2"]);
    env.ok(&["c", "rm", "d2"]);
    // -f kills first.
    env.ok(&env.run_args(&["-d"], "d3", &["sleep", "1000"]));
    env.ok(&["t", "rm", "-f", "d3"]);
    env.ok(&["c", "rm", "d3"]);

    env.finish();
}

#[test]
fn signals_sent_to_corralctl_reach_the_task() {
    let Some(env) = Env::start("run-signals") else {
        return;
    };
    let script = "trap 'echo got-term; exit 5' TERM; trap 'echo got-usr2' USR2; echo ready; \
                  while true; do sleep 0.1; done";
    let mut run = env.spawn(&env.run_args(&["--rm"], "s1", &["sh", "-c", script]));
    run.out.wait_for("ready\n");
    run.guard.signal(Signal::SIGUSR2).unwrap();
    run.out.wait_for("got-usr2\n");
    run.guard.signal(Signal::SIGTERM).unwrap();
    let (status, out, err) = run.finish();
    assert_eq!(status.code(), Some(5), "{out:?} {err:?}");
    assert_eq!(out, "ready\ngot-usr2\ngot-term\n");
    env.finish();
}

/// A pty whose slave side is given to corralctl, read from the master by a thread.
struct Pty {
    slave: OwnedFd,
    master: Collector,
    writer: fs::File,
}

impl Pty {
    fn open(rows: u16, cols: u16) -> Pty {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).unwrap();
        let master = fs::File::from(pty.master);
        let writer = master.try_clone().unwrap();
        Pty {
            slave: pty.slave,
            master: Collector::start(master),
            writer,
        }
    }

    fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().unwrap())
    }

    fn local_flags(&self) -> LocalFlags {
        tcgetattr(self.slave.as_fd()).unwrap().local_flags
    }

    fn is_raw(&self) -> bool {
        !self
            .local_flags()
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG)
    }

    /// Changes the window size, as a terminal emulator does before it sends `SIGWINCH`.
    fn set_size(&self, rows: u16, cols: u16) {
        nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ only reads the `winsize` the pointer refers to, which lives for
        // the call; the descriptor is the pty's slave, ours. nix has no call for it.
        unsafe { tiocswinsz(std::os::fd::AsRawFd::as_raw_fd(&self.slave), &size) }.unwrap();
    }

    fn spawn(&self, env: &Env, args: &[&str]) -> ChildGuard {
        let mut cmd = env.command(args);
        cmd.stdin(self.stdio())
            .stdout(self.stdio())
            .stderr(self.stdio());
        ChildGuard::spawn("corralctl -t", &mut cmd).unwrap()
    }

    /// Waits (within the deadline) for `what`, spawned on this pty, to exit with `code`.
    fn assert_exits(&self, child: &mut ChildGuard, code: i32, what: &str) {
        let status = child
            .wait_timeout(DEADLINE)
            .unwrap()
            .unwrap_or_else(|| panic!("{what} still running; output: {:?}", self.master.text()));
        assert_eq!(
            status.code(),
            Some(code),
            "{what}: {:?}",
            self.master.text()
        );
    }
}

#[test]
fn a_terminal_is_raw_while_the_task_runs_and_restored_however_corralctl_ends() {
    let Some(env) = Env::start("run-tty") else {
        return;
    };
    let fifo = env.fifo_arg();
    let mut pty = Pty::open(40, 100);
    let cooked = pty.local_flags();
    assert!(!pty.is_raw());

    let script = "stty size; read line; echo \"got:$line\"; exit 7";
    let mut run = pty.spawn(
        &env,
        &env.run_args(&["--rm", "-t"], "t1", &["sh", "-c", script]),
    );
    pty.master.wait_for("40 100\r\n");
    assert!(pty.is_raw(), "raw while the task runs");
    pty.writer.write_all(b"hello\r").unwrap();
    pty.assert_exits(&mut run, 7, "corralctl -t");
    pty.master.wait_for("got:hello\r\n");
    assert_eq!(pty.local_flags(), cooked, "restored after the task");

    // A window change reaches the task.
    let script = "trap 'stty size; exit 3' WINCH; echo ready; while true; do sleep 0.1; done";
    let mut resized = pty.spawn(
        &env,
        &env.run_args(&["--rm", "-t"], "t4", &["sh", "-c", script]),
    );
    pty.master.wait_for("ready\r\n");
    pty.set_size(50, 120);
    resized.signal(Signal::SIGWINCH).unwrap();
    pty.assert_exits(&mut resized, 3, "the resized task");
    pty.master.wait_for("50 120\r\n");
    pty.set_size(40, 100);

    // An exec with a terminal, and the window size it starts with.
    env.ok(&env.run_args(&["-d"], "t2", &["sleep", "1000"]));
    let mut exec = pty.spawn(
        &env,
        &[
            "t",
            "exec",
            "-t",
            "--exec-id",
            "x1",
            "--fifo-dir",
            fifo,
            "t2",
            "sh",
            "-c",
            "stty size; tty",
        ],
    );
    pty.assert_exits(&mut exec, 0, "exec -t");
    pty.master.wait_for("/dev/pts/");
    assert!(pty.master.text().matches("40 100\r\n").count() >= 2);
    assert_eq!(pty.local_flags(), cooked);

    // SIGTERM to corralctl itself: it ends, and puts the terminal back first.
    let mut killed = pty.spawn(&env, &env.run_args(&["-t"], "t3", &["sleep", "1000"]));
    wait_for(DEADLINE, "the terminal to go raw", || pty.is_raw()).unwrap();
    wait_for(DEADLINE, "task t3 to run", || {
        env.task_row("t3").is_some_and(|(_, s)| s == "RUNNING")
    })
    .unwrap();
    killed.signal(Signal::SIGTERM).unwrap();
    let status = killed
        .wait_timeout(DEADLINE)
        .unwrap()
        .expect("corralctl ends on SIGTERM");
    assert_eq!(status.signal(), Some(Signal::SIGTERM as i32), "{status:?}");
    assert_eq!(pty.local_flags(), cooked, "restored after a signal");

    for id in ["t2", "t3"] {
        env.ok(&["t", "kill", "-s", "KILL", id]);
        env.wait_status(id, "STOPPED");
        env.ok(&["t", "rm", id]);
        env.ok(&["c", "rm", id]);
    }
    // t3's fifo set stays, as ctr's does when it is killed; the task's removal took it.
    drop(run);
    drop(resized);
    drop(exec);
    drop(killed);
    let Pty {
        slave,
        master,
        writer,
    } = pty;
    drop((slave, writer));
    master.finish();
    env.finish();
}
