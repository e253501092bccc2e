//! `corrald` as a daemon: configuration errors, `config default`, the socket's modes, a call
//! through it, one daemon per root and state, stale sockets, systemd readiness, and a clean
//! stop on SIGTERM.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_daemon::config::Config;
use corral_protocols::rpc::{CallContext, Client, Code};
use corral_protocols::services::version::v1::version_rpc::VersionClient;
use corral_tests::bins::corral_binary;
use corral_tests::harness::{
    require_root, run_with_deadline, wait_for_socket, ChildGuard, TempRoot,
};
use nix::sys::signal::Signal;
use protobuf::well_known_types::empty::Empty;

const DEADLINE: Duration = Duration::from_secs(10);

fn corrald() -> Command {
    Command::new(corral_binary("corrald").unwrap())
}

/// `corrald` with `--root`, `--state` and `--address` inside `temp`, and a minimal config
/// file of its own (never /etc/corral/config.toml).
fn daemon_cmd(temp: &TempRoot, root: &Path, state: &Path, socket: &Path) -> Command {
    let config = temp.join("config.toml");
    fs::write(&config, "version = 2\n").unwrap();
    let mut cmd = corrald();
    cmd.arg("--config")
        .arg(config)
        .arg("--root")
        .arg(root)
        .arg("--state")
        .arg(state)
        .arg("--address")
        .arg(socket)
        .env_remove("NOTIFY_SOCKET");
    cmd
}

fn start(temp: &TempRoot, root: &Path, state: &Path, socket: &Path, log: &str) -> ChildGuard {
    spawn_logged(temp, daemon_cmd(temp, root, state, socket), log)
}

fn spawn_logged(temp: &TempRoot, mut cmd: Command, log: &str) -> ChildGuard {
    let log = fs::File::create(temp.join(log)).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    ChildGuard::spawn("corrald", &mut cmd).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn log_of(temp: &TempRoot, name: &str) -> String {
    fs::read_to_string(temp.join(name)).unwrap_or_default()
}

#[test]
fn config_errors_name_file_line_and_key() {
    let temp = TempRoot::new().unwrap();
    let path = temp.join("config.toml");
    fs::write(
        &path,
        "version = 2\n\n[ttrpc]\n  address = \"/x.sock\"\n  adress = \"/y.sock\"\n",
    )
    .unwrap();
    let out = run_with_deadline(corrald().arg("--config").arg(&path), DEADLINE).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "corrald: {}:5: unknown key \"ttrpc.adress\"",
            path.display()
        )
    );

    fs::write(&path, "version = 2\n[debug]\nlevel = 3\n").unwrap();
    let out = run_with_deadline(corrald().arg("-c").arg(&path), DEADLINE).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "corrald: {}:3: key \"debug.level\": ",
            path.display()
        )),
        "{err}"
    );

    // A file named on the command line must exist.
    let missing = temp.join("missing.toml");
    let out = run_with_deadline(corrald().arg("-c").arg(&missing), DEADLINE).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!("corrald: {}: ", missing.display())),
        "{err}"
    );
}

#[test]
fn config_default_loads_back_to_the_defaults() {
    let out = run_with_deadline(corrald().args(["config", "default"]), DEADLINE).unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("version = 2"), "{text}");
    let config = Config::parse(Path::new("default.toml"), &text).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn serves_locks_notifies_and_stops_cleanly() {
    if !require_root("corrald chowns its socket to [ttrpc] uid:gid (root:root)") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let root = temp.root().to_path_buf();
    let state = temp.state().to_path_buf();
    // The socket's directory does not exist yet: corrald creates it 0711.
    let socket = temp.join("run/corral.sock");

    let notify_path = temp.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(DEADLINE)).unwrap();

    let mut cmd = daemon_cmd(&temp, &root, &state, &socket);
    cmd.env("NOTIFY_SOCKET", &notify_path);
    let started = Instant::now();
    let mut daemon = spawn_logged(&temp, cmd, "corrald.log");

    let mut buf = [0u8; 256];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1: {e}; log: {}", log_of(&temp, "corrald.log")));
    assert_eq!(&buf[..n], b"READY=1");
    wait_for_socket(&socket, DEADLINE).unwrap();
    eprintln!("exec to READY=1 and socket up: {:?}", started.elapsed());

    assert_eq!(mode(&socket), 0o660);
    assert_eq!(mode(socket.parent().unwrap()), 0o711);
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&state), 0o711);

    // A call through the socket: the Version service, and an unknown method.
    let client = Client::connect(&format!("unix://{}", socket.display())).unwrap();
    let v = VersionClient::new(client.clone())
        .version(&CallContext::new(), &Empty::new())
        .unwrap();
    assert_eq!(v.version, corral_protocols::version::VERSION);
    let err = client
        .unary::<Empty, Empty>(
            &CallContext::new(),
            "containerd.services.nothing.v1.Nothing",
            "Nothing",
            &Empty::new(),
        )
        .unwrap_err();
    assert_eq!(err.code(), Code::UNIMPLEMENTED, "{err:?}");

    let pid = daemon.pid();
    // A second daemon on the same state fails at once, naming the first.
    let other_socket = temp.join("other/corral.sock");
    let t = Instant::now();
    let mut cmd = daemon_cmd(&temp, &temp.join("root2"), &state, &other_socket);
    let out = run_with_deadline(&mut cmd, DEADLINE).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        err.contains(&format!(
            "corrald: state directory {} is in use by another corrald (pid {pid})",
            state.display()
        )),
        "{err}"
    );
    // ... and on the same root.
    let mut cmd = daemon_cmd(&temp, &root, &temp.join("state2"), &other_socket);
    let out = run_with_deadline(&mut cmd, DEADLINE).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("corrald: root {}: ", root.display()))
            && err.contains(&format!("in use by another process (pid {pid})")),
        "{err}"
    );
    // ... and on the same socket with its own root and state.
    let mut cmd = daemon_cmd(&temp, &temp.join("root3"), &temp.join("state3"), &socket);
    let out = run_with_deadline(&mut cmd, DEADLINE).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "corrald: another daemon is serving on {}",
            socket.display()
        )),
        "{err}"
    );
    // The first daemon still serves.
    assert!(daemon.is_running());
    wait_for_socket(&socket, DEADLINE).unwrap();

    // SIGTERM: exit 0, socket removed, meta.db consistent.
    drop(client);
    daemon.signal(Signal::SIGTERM).unwrap();
    let status = daemon
        .wait_timeout(DEADLINE)
        .unwrap()
        .expect("corrald stopped after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", log_of(&temp, "corrald.log"));
    assert!(!socket.exists(), "socket left behind");
    let log = log_of(&temp, "corrald.log");
    assert!(
        log.contains(&format!("serving on unix://{}", socket.display())),
        "{log}"
    );
    let out = run_with_deadline(
        corrald().args(["db", "check", "--root"]).arg(&root),
        DEADLINE,
    )
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.ends_with(": ok\n"), "{stdout}");
}

#[test]
fn a_stale_socket_is_replaced() {
    if !require_root("corrald chowns its socket to [ttrpc] uid:gid (root:root)") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let socket: PathBuf = temp.state().join("corral.sock");
    // A socket file nobody listens on, as a killed daemon leaves it.
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut daemon = start(&temp, temp.root(), temp.state(), &socket, "corrald.log");
    wait_for_socket(&socket, DEADLINE)
        .unwrap_or_else(|e| panic!("{e}; log: {}", log_of(&temp, "corrald.log")));
    let client = Client::connect(&format!("unix://{}", socket.display())).unwrap();
    VersionClient::new(client)
        .version(&CallContext::new(), &Empty::new())
        .unwrap();
    assert!(log_of(&temp, "corrald.log").contains("removing stale socket"));
    daemon.signal(Signal::SIGINT).unwrap();
    let status = daemon.wait_timeout(DEADLINE).unwrap().expect("stopped");
    assert_eq!(status.code(), Some(0));
    assert!(!socket.exists());
}
