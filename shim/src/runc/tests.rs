//! Argument vectors, error plumbing and configuration, with a runner that records instead of
//! running.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;

use corral_protocols::rpc::Code;

use super::*;
use crate::runner::DirectRunner;

/// One command the recorder saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    /// `status` (stdio given by the caller) or `output` (captured).
    via: &'static str,
    argv: Vec<String>,
    stdin: Option<Vec<u8>>,
    /// For exec: the `--process` file's contents and mode while the command ran.
    process_file: Option<(Vec<u8>, u32)>,
}

/// What the next command "does".
#[derive(Debug, Default, Clone)]
struct Reply {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Appended to the `--log` file, as runc would.
    log: Vec<u8>,
}

impl Reply {
    fn ok(stdout: &[u8]) -> Self {
        Self {
            stdout: stdout.to_vec(),
            ..Self::default()
        }
    }

    fn fail(code: i32, log: &str, stderr: &str) -> Self {
        Self {
            code,
            log: log.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            ..Self::default()
        }
    }
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    replies: Mutex<VecDeque<Reply>>,
    /// Make the runner itself fail (as when the binary cannot be spawned).
    spawn_error: Mutex<Option<io::ErrorKind>>,
}

impl Recorder {
    fn new() -> Self {
        Self::default()
    }

    fn reply(&self, r: Reply) {
        self.replies.lock().unwrap().push_back(r);
    }

    fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn argv(&self) -> Vec<String> {
        let calls = self.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        calls[0].argv.clone()
    }

    fn run(&self, via: &'static str, cmd: &Command, stdin: Option<&[u8]>) -> io::Result<Output> {
        let mut argv = vec![cmd.get_program().to_string_lossy().into_owned()];
        argv.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
        let arg_after = |flag: &str| {
            argv.iter()
                .position(|a| a == flag)
                .and_then(|i| argv.get(i + 1))
                .cloned()
        };
        let process_file = arg_after("--process").map(|p| {
            let data = fs::read(&p).expect("process file exists while runc runs");
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            (data, mode)
        });
        let log = arg_after("--log");
        self.calls.lock().unwrap().push(Call {
            via,
            argv,
            stdin: stdin.map(<[u8]>::to_vec),
            process_file,
        });
        if let Some(kind) = *self.spawn_error.lock().unwrap() {
            return Err(io::Error::from(kind));
        }
        let reply = self.replies.lock().unwrap().pop_front().unwrap_or_default();
        if let (Some(log), false) = (log, reply.log.is_empty()) {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            f.write_all(&reply.log).unwrap();
        }
        Ok(Output {
            status: ExitStatus::from_raw(reply.code << 8),
            stdout: reply.stdout,
            stderr: reply.stderr,
        })
    }
}

impl Runner for Recorder {
    fn status(&self, cmd: &mut Command) -> io::Result<ExitStatus> {
        self.run("status", cmd, None).map(|o| o.status)
    }

    fn output(&self, cmd: &mut Command, stdin: Option<&[u8]>) -> io::Result<Output> {
        self.run("output", cmd, stdin)
    }
}

/// A Runc with the default config (plain `runc`, no global flags).
fn plain() -> (Runc, Recorder) {
    let rec = Recorder::new();
    let runc = Runc::new(Config::default()).unwrap();
    (runc, rec)
}

/// A Runc with every global flag (built directly: `new` refuses systemd on this host).
fn full(log: &Path, criu: &Path) -> (Runc, Recorder) {
    let rec = Recorder::new();
    let runc = Runc {
        config: Config {
            binary: "/usr/bin/crun".into(),
            root: "/run/corral/runc/default".into(),
            log: log.to_path_buf(),
            systemd_cgroup: true,
            criu: Some(criu.to_path_buf()),
            debug: true,
        },
    };
    (runc, rec)
}

fn sv(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// With runc's `log.json` in a tempdir.
fn with_log() -> (tempfile::TempDir, Runc, Recorder) {
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new();
    let config = Config::for_bundle("", &dir.path().join("root"), "default", dir.path());
    let runc = Runc::new(config).unwrap();
    (dir, runc, rec)
}

#[test]
fn global_flags_in_go_runc_order() {
    let (runc, rec) = full(Path::new("/b/log.json"), Path::new("/opt/criu"));
    runc.start(&rec, "t1").unwrap();
    assert_eq!(
        rec.argv(),
        sv(&[
            "/usr/bin/crun",
            "--root",
            "/run/corral/runc/default",
            "--debug",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "--criu",
            "/opt/criu",
            "--systemd-cgroup",
            "start",
            "t1"
        ])
    );
}

#[test]
fn for_bundle_is_containerds_layout() {
    let c = Config::for_bundle("", Path::new("/run/corral/runc"), "k8s.io", Path::new("/b"));
    assert_eq!(
        c,
        Config {
            binary: "runc".into(),
            root: "/run/corral/runc/k8s.io".into(),
            log: "/b/log.json".into(),
            systemd_cgroup: false,
            criu: None,
            debug: false,
        }
    );
    let c = Config::for_bundle("crun", Path::new("/r"), "ns", Path::new("/b"));
    assert_eq!(c.binary, "crun");

    let rec = Recorder::new();
    let runc = Runc::new(c).unwrap();
    runc.pause(&rec, "x").unwrap();
    assert_eq!(
        rec.argv(),
        sv(&[
            "crun",
            "--root",
            "/r/ns",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "pause",
            "x"
        ])
    );
}

#[test]
fn create_argv() {
    let (runc, rec) = plain();
    runc.create(
        &rec,
        "c1",
        Path::new("/b"),
        &CreateOpts::default(),
        RuncStdio::null(),
    )
    .unwrap();
    let calls = rec.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].via, "status",
        "create must run with the container's stdio"
    );
    assert_eq!(
        calls[0].argv,
        sv(&["runc", "create", "--bundle", "/b", "c1"])
    );

    let opts = CreateOpts {
        pid_file: "/b/init.pid".into(),
        console_socket: Some("/tmp/pty.sock".into()),
        no_pivot: true,
        no_new_keyring: true,
    };
    runc.create(&rec, "c1", Path::new("/b"), &opts, RuncStdio::null())
        .unwrap();
    assert_eq!(
        rec.argv(),
        sv(&[
            "runc",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--console-socket",
            "/tmp/pty.sock",
            "--no-pivot",
            "--no-new-keyring",
            "c1"
        ])
    );
}

#[test]
fn relative_pid_file_is_made_absolute() {
    let (runc, rec) = plain();
    let opts = CreateOpts {
        pid_file: "init.pid".into(),
        ..CreateOpts::default()
    };
    runc.create(&rec, "c1", Path::new("/b"), &opts, RuncStdio::null())
        .unwrap();
    let cwd = std::env::current_dir().unwrap();
    let argv = rec.argv();
    assert_eq!(argv[5], cwd.join("init.pid").to_string_lossy());
}

#[test]
fn simple_commands_argv() {
    let (runc, rec) = plain();
    runc.start(&rec, "c1").unwrap();
    runc.pause(&rec, "c1").unwrap();
    runc.resume(&rec, "c1").unwrap();
    runc.kill(&rec, "c1", 9, false).unwrap();
    runc.kill(&rec, "c1", 15, true).unwrap();
    runc.delete(&rec, "c1", false).unwrap();
    runc.delete(&rec, "c1", true).unwrap();
    let calls = rec.calls();
    let argvs: Vec<_> = calls.iter().map(|c| c.argv.clone()).collect();
    assert_eq!(
        argvs,
        vec![
            sv(&["runc", "start", "c1"]),
            sv(&["runc", "pause", "c1"]),
            sv(&["runc", "resume", "c1"]),
            sv(&["runc", "kill", "c1", "9"]),
            sv(&["runc", "kill", "--all", "c1", "15"]),
            sv(&["runc", "delete", "c1"]),
            sv(&["runc", "delete", "--force", "c1"]),
        ]
    );
    assert!(calls.iter().all(|c| c.via == "output" && c.stdin.is_none()));
}

#[test]
fn state_argv_and_parse() {
    let (runc, rec) = plain();
    rec.reply(Reply::ok(
        br#"{"ociVersion":"1.0.2-dev","id":"c1","pid":42,"status":"running","bundle":"/b","rootfs":"/b/rootfs","created":"2023-01-01T00:00:00Z","owner":"","annotations":{"a":"b"}}"#,
    ));
    let s = runc.state(&rec, "c1").unwrap();
    assert_eq!(rec.argv(), sv(&["runc", "state", "c1"]));
    assert_eq!(s.pid, 42);
    assert_eq!(s.status, ContainerStatus::Running);
    assert_eq!(s.annotations["a"], "b");

    rec.reply(Reply::ok(b"not json at all"));
    let e = runc.state(&rec, "c1").unwrap_err();
    assert!(matches!(e, RuncError::Decode { .. }), "{e:?}");
    assert_eq!(e.code(), Code::INTERNAL);
    assert!(e.to_string().contains("not json at all"), "{e}");
}

#[test]
fn ps_argv_and_parse() {
    let (runc, rec) = plain();
    rec.reply(Reply::ok(b"[25440,25492]\n"));
    assert_eq!(runc.ps(&rec, "c1").unwrap(), vec![25440, 25492]);
    assert_eq!(rec.argv(), sv(&["runc", "ps", "--format", "json", "c1"]));
    rec.reply(Reply::ok(b"null"));
    assert_eq!(runc.ps(&rec, "c1").unwrap(), Vec::<i32>::new());
    rec.calls();
}

#[test]
fn update_sends_resources_on_stdin() {
    let (runc, rec) = plain();
    let res = br#"{"pids":{"limit":50}}"#;
    runc.update(&rec, "c1", res).unwrap();
    let calls = rec.calls();
    assert_eq!(
        calls,
        vec![Call {
            via: "output",
            argv: sv(&["runc", "update", "--resources", "-", "c1"]),
            stdin: Some(res.to_vec()),
            process_file: None,
        }]
    );
}

#[test]
fn exec_writes_a_private_spec_file_and_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (runc, rec) = plain();
    let spec = br#"{"args":["sleep","5"],"cwd":"/"}"#;
    let opts = ExecOpts {
        pid_file: dir.path().join("e1.pid"),
        console_socket: Some("/tmp/c.sock".into()),
    };
    runc.exec(&rec, "c1", spec, dir.path(), &opts, RuncStdio::null())
        .unwrap();
    let calls = rec.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.via, "status", "exec must run with the process's stdio");
    assert_eq!(call.process_file, Some((spec.to_vec(), 0o600)));
    let file = PathBuf::from(&call.argv[3]);
    assert_eq!(file.parent(), Some(dir.path()));
    assert!(!file.exists(), "the process file is removed after the call");
    let pid = dir.path().join("e1.pid");
    assert_eq!(
        call.argv,
        sv(&[
            "runc",
            "exec",
            "--process",
            &file.to_string_lossy(),
            "--console-socket",
            "/tmp/c.sock",
            "--detach",
            "--pid-file",
            &pid.to_string_lossy(),
            "c1"
        ])
    );

    // No options (still detached); and a failing exec removes its file too.
    rec.reply(Reply::fail(1, "", ""));
    runc.exec(
        &rec,
        "c1",
        spec,
        dir.path(),
        &ExecOpts::default(),
        RuncStdio::null(),
    )
    .unwrap_err();
    let argv = rec.argv();
    assert_eq!(argv.len(), 6);
    assert_eq!(
        [&argv[..3], &argv[4..]].concat(),
        sv(&["runc", "exec", "--process", "--detach", "c1"])
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn exec_into_a_missing_dir_is_a_prepare_error() {
    let (runc, rec) = plain();
    let e = runc
        .exec(
            &rec,
            "c1",
            b"{}",
            Path::new("/nonexistent/dir"),
            &ExecOpts::default(),
            RuncStdio::null(),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            RuncError::Prepare {
                command: "exec",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(rec.calls().is_empty());
}

fn fake_criu(dir: &Path) -> PathBuf {
    let criu = dir.join("criu");
    fs::write(&criu, b"#!/bin/sh\n").unwrap();
    fs::set_permissions(&criu, fs::Permissions::from_mode(0o755)).unwrap();
    criu
}

#[test]
fn checkpoint_argv() {
    let dir = tempfile::tempdir().unwrap();
    let criu = fake_criu(dir.path());
    let (runc, rec) = full(&dir.path().join("log.json"), &criu);
    let opts = CheckpointOpts {
        image_path: "/img".into(),
        work_path: Some("/work".into()),
        parent_path: Some("/parent".into()),
        exit: false,
        open_tcp: true,
        external_unix_sockets: true,
        terminal: true,
        file_locks: true,
        empty_namespaces: vec!["network".into(), "ipc".into()],
        cgroups_mode: Some("soft".into()),
    };
    runc.checkpoint(&rec, "c1", &opts).unwrap();
    let argv = rec.argv();
    let sub = argv.iter().position(|a| a == "checkpoint").unwrap();
    assert_eq!(
        argv[sub..],
        sv(&[
            "checkpoint",
            "--image-path",
            "/img",
            "--work-path",
            "/work",
            "--parent-path",
            "/parent",
            "--tcp-established",
            "--ext-unix-sk",
            "--shell-job",
            "--file-locks",
            "--manage-cgroups-mode",
            "soft",
            "--empty-ns",
            "network",
            "--empty-ns",
            "ipc",
            "--leave-running",
            "c1"
        ])
    );

    let opts = CheckpointOpts {
        image_path: "/img".into(),
        exit: true,
        cgroups_mode: Some(String::new()),
        ..CheckpointOpts::default()
    };
    runc.checkpoint(&rec, "c1", &opts).unwrap();
    let argv = rec.argv();
    let sub = argv.iter().position(|a| a == "checkpoint").unwrap();
    assert_eq!(
        argv[sub..],
        sv(&["checkpoint", "--image-path", "/img", "c1"])
    );
}

#[test]
fn checkpoint_without_criu_is_a_failed_precondition() {
    let rec = Recorder::new();
    let config = Config {
        criu: Some("/nonexistent/criu".into()),
        ..Config::default()
    };
    let runc = Runc::new(config).unwrap();
    let e = runc
        .checkpoint(&rec, "c1", &CheckpointOpts::default())
        .unwrap_err();
    assert!(matches!(e, RuncError::CriuNotFound { .. }), "{e:?}");
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert_eq!(
        e.to_string(),
        "checkpoint needs CRIU, but \"/nonexistent/criu\" is not an executable file; install \
         criu or set CriuPath in the runc options"
    );
    assert!(rec.calls().is_empty(), "runc is not run without criu");
}

#[test]
fn find_executable_rules() {
    let dir = tempfile::tempdir().unwrap();
    let criu = fake_criu(dir.path());
    let plain = dir.path().join("plain");
    fs::write(&plain, b"").unwrap();
    let path_var = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();

    assert_eq!(find_executable(&criu, None), Ok(criu.clone()));
    assert_eq!(
        find_executable(Path::new("criu"), Some(&path_var)),
        Ok(criu.clone())
    );
    assert_eq!(
        find_executable(Path::new("plain"), Some(&path_var)),
        Err("was not found on PATH".to_string())
    );
    assert_eq!(
        find_executable(&plain, Some(&path_var)),
        Err("is not an executable file".to_string())
    );
    assert_eq!(
        find_executable(dir.path(), None),
        Err("is not an executable file".to_string())
    );
    assert_eq!(
        find_executable(Path::new("criu"), None),
        Err("was not found on PATH".to_string())
    );
    assert!(find_executable(Path::new(""), Some(&path_var)).is_err());
}

#[test]
fn check_criu_uses_the_configured_path() {
    let dir = tempfile::tempdir().unwrap();
    let criu = fake_criu(dir.path());
    let config = Config {
        criu: Some(criu.clone()),
        ..Config::default()
    };
    let runc = Runc::new(config).unwrap();
    assert_eq!(runc.check_criu().unwrap(), criu);
}

#[test]
fn systemd_cgroup_needs_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let on = Config {
        systemd_cgroup: true,
        ..Config::default()
    };
    let missing = dir.path().join("systemd/system");
    let e = check_systemd(&on, &missing).unwrap_err();
    assert!(matches!(e, RuncError::SystemdNotRunning));
    assert_eq!(
        e.to_string(),
        "SystemdCgroup requested but systemd is not running on this host"
    );
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert!(check_systemd(&Config::default(), &missing).is_ok());
    fs::create_dir_all(&missing).unwrap();
    assert!(check_systemd(&on, &missing).is_ok());

    // And through the constructor, against this host.
    let made = Runc::new(on);
    if systemd_running() {
        assert!(made.is_ok());
    } else {
        assert!(matches!(made, Err(RuncError::SystemdNotRunning)));
    }
}

#[test]
fn error_message_comes_from_this_invocations_log_lines() {
    let (dir, runc, rec) = with_log();
    let log = dir.path().join(LOG_FILE);
    fs::write(
        &log,
        "{\"level\":\"error\",\"msg\":\"an old failure\",\"time\":\"t\"}\n",
    )
    .unwrap();

    rec.reply(Reply::fail(
        1,
        "{\"level\":\"error\",\"msg\":\"container does not exist\",\"time\":\"t\"}\n",
        "container does not exist\n",
    ));
    let e = runc.state(&rec, "web").unwrap_err();
    let RuncError::NotFound(f) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(f.command, "state");
    assert_eq!(f.id, "web");
    assert_eq!(f.status.code(), Some(1));
    assert_eq!(f.message, "container does not exist");
    assert_eq!(e.code(), Code::NOT_FOUND);

    // A failure that wrote nothing to the log must not pick up the old lines: stderr then.
    rec.reply(Reply::fail(
        1,
        "",
        "cannot start an already running container\n",
    ));
    let e = runc.start(&rec, "web").unwrap_err();
    assert_eq!(
        e.failure().unwrap().message,
        "cannot start an already running container"
    );

    // Log lines that are not errors, garbage; stdout is the last resort.
    rec.reply(Reply {
        code: 2,
        log: b"{\"level\":\"info\",\"msg\":\"x\"}\ngarbage\n".to_vec(),
        stdout: b"\n  from stdout  \nmore\n".to_vec(),
        ..Reply::default()
    });
    let e = runc.pause(&rec, "web").unwrap_err();
    let f = e.failure().unwrap();
    assert_eq!(f.message, "from stdout");
    assert_eq!(f.status.code(), Some(2));

    // Nothing at all: the exit status.
    rec.reply(Reply::fail(3, "", ""));
    let e = runc.resume(&rec, "web").unwrap_err();
    assert_eq!(e.to_string(), r#"runc resume "web": exit status 3"#);

    // The log wins over stderr, and the last error in it over earlier ones.
    rec.reply(Reply::fail(
        1,
        "{\"level\":\"error\",\"msg\":\"container still running\"}\n{\"level\":\"error\",\"msg\":\"criu failed: type DUMP errno 0\\nlog file: dump.log\"}\n",
        "something else\n",
    ));
    let e = runc.ps(&rec, "web").unwrap_err();
    assert_eq!(
        e.failure().unwrap().message,
        "criu failed: type DUMP errno 0\nlog file: dump.log"
    );
    rec.calls();
}

#[test]
fn usage_errors_keep_only_the_first_line() {
    let (runc, rec) = plain();
    rec.reply(Reply::fail(
        1,
        "",
        "Incorrect Usage: flag provided but not defined: -bogus\n\nNAME:\n   runc kill - ...\n",
    ));
    let e = runc.kill(&rec, "c1", 9, false).unwrap_err();
    assert_eq!(
        e.failure().unwrap().message,
        "Incorrect Usage: flag provided but not defined: -bogus"
    );
    rec.calls();
}

#[test]
fn create_and_exec_errors_are_read_from_the_log() {
    let (dir, runc, rec) = with_log();
    rec.reply(Reply::fail(
        1,
        "{\"level\":\"error\",\"msg\":\"runc create failed: container with given ID already exists\",\"time\":\"t\"}\n",
        "",
    ));
    let e = runc
        .create(
            &rec,
            "web",
            dir.path(),
            &CreateOpts::default(),
            RuncStdio::null(),
        )
        .unwrap_err();
    assert!(matches!(e, RuncError::AlreadyExists(_)), "{e:?}");
    assert_eq!(e.code(), Code::ALREADY_EXISTS);

    rec.reply(Reply::fail(
        255,
        "{\"level\":\"fatal\",\"msg\":\"nsexec-1[1]: failed to open /proc/1/ns/ipc\"}\n{\"level\":\"error\",\"msg\":\"exec failed: container does not exist\"}\n",
        "",
    ));
    let e = runc
        .exec(
            &rec,
            "web",
            b"{}",
            dir.path(),
            &ExecOpts::default(),
            RuncStdio::null(),
        )
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.failure().unwrap().status.code(), Some(255));
    rec.calls();
}

#[test]
fn kill_after_exit_is_distinguishable() {
    let (_dir, runc, rec) = with_log();
    rec.reply(Reply::fail(
        1,
        "{\"level\":\"error\",\"msg\":\"container not running\"}\n",
        "",
    ));
    let e = runc.kill(&rec, "web", 9, false).unwrap_err();
    assert!(matches!(e, RuncError::ProcessFinished(_)), "{e:?}");
    rec.reply(Reply::fail(
        1,
        "{\"level\":\"error\",\"msg\":\"container not running\"}\n",
        "",
    ));
    let e = runc.pause(&rec, "web").unwrap_err();
    assert!(matches!(e, RuncError::NotRunning(_)), "{e:?}");
    rec.calls();
}

#[test]
fn spawn_failures() {
    let (runc, rec) = plain();
    *rec.spawn_error.lock().unwrap() = Some(io::ErrorKind::PermissionDenied);
    let e = runc.start(&rec, "c1").unwrap_err();
    assert!(
        matches!(
            e,
            RuncError::Spawn {
                command: "start",
                ..
            }
        ),
        "{e:?}"
    );
    let e = runc
        .create(
            &rec,
            "c1",
            Path::new("/b"),
            &CreateOpts::default(),
            RuncStdio::null(),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            RuncError::Spawn {
                command: "create",
                ..
            }
        ),
        "{e:?}"
    );

    // A binary that is not installed, for real.
    let config = Config {
        binary: "/nonexistent/bin/runc".into(),
        ..Config::default()
    };
    let runc = Runc::new(config).unwrap();
    let e = runc.state(&DirectRunner, "c1").unwrap_err();
    assert!(matches!(e, RuncError::Spawn { .. }), "{e:?}");
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert!(!e.is_not_found());
    assert!(
        e.to_string()
            .starts_with("cannot run /nonexistent/bin/runc state: "),
        "{e}"
    );
}

#[test]
fn notify_socket_is_not_passed_on() {
    let (runc, _rec) = plain();
    let cmd = runc.command(args(&["list"]));
    assert!(cmd
        .get_envs()
        .any(|(k, v)| k == "NOTIFY_SOCKET" && v.is_none()));
}

#[test]
fn runc_is_send_sync_and_debug() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Runc>();
    let (runc, _rec) = plain();
    assert!(format!("{runc:?}").contains("binary: \"runc\""));
}
