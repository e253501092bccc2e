//! Tests of the stdio module. They run one at a time (they count this process's threads and
//! descriptors) and need no root, except `runc_terminal`, which drives runc for real.

use std::collections::BTreeMap;
use std::fs;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use super::*;
use crate::runner::DirectRunner;

static LOCK: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(10);

fn runner() -> Arc<dyn Runner> {
    Arc::new(DirectRunner)
}

/// Serializes the tests and checks that each leaves no thread and no descriptor behind.
struct LeakCheck {
    fds: BTreeMap<i32, String>,
    threads: usize,
    _lock: MutexGuard<'static, ()>,
}

fn fds() -> BTreeMap<i32, String> {
    let mut m = BTreeMap::new();
    for e in fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(t) = fs::read_link(e.path()) {
            let t = t.to_string_lossy().into_owned();
            // The directory being listed.
            if !t.starts_with("/proc/") {
                m.insert(n, t);
            }
        }
    }
    m
}

fn thread_names() -> Vec<String> {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect()
}

/// This process's threads, less the test harness's (named after their tests, `a::b`), whose
/// number changes as tests start and end.
fn threads() -> usize {
    thread_names().iter().filter(|n| !n.contains("::")).count()
}

/// Threads of this module (`corral-io`, `corral-logger`).
fn our_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("corral-"))
        .count()
}

/// Waits until exactly `n` threads of this module run (std names a thread from inside it,
/// so a just-spawned one may not carry its name yet).
fn wait_our_threads(n: usize) {
    let deadline = Instant::now() + WAIT;
    while our_threads() != n {
        assert!(
            Instant::now() < deadline,
            "expected {n} threads of ours, have {}",
            our_threads()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

impl LeakCheck {
    fn start() -> LeakCheck {
        let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(our_threads(), 0, "a previous test left a thread");
        LeakCheck {
            fds: fds(),
            threads: threads(),
            _lock: lock,
        }
    }

    /// Waits (other test modules may be busy in this process) until nothing is left over.
    fn check(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = fds();
            let leaked: Vec<_> = now
                .iter()
                .filter(|(n, t)| self.fds.get(n) != Some(t))
                .collect();
            let (t, ours) = (threads(), our_threads());
            if leaked.is_empty() && t <= self.threads && ours == 0 {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "leaked descriptors {leaked:?}; threads {t} (before {}), ours {ours}",
                    self.threads
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn mkfifo(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    nix::unistd::mkfifo(&p, Mode::from_bits_truncate(0o700)).unwrap();
    p
}

/// The read side of an output fifo, opened as ctr does: `O_RDONLY|O_NONBLOCK`, then blocking.
fn client_reader(p: &Path) -> fs::File {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .unwrap();
    let fl = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    let fl = nix::fcntl::OFlag::from_bits_truncate(fl) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(fl)).unwrap();
    f
}

/// The write side of the stdin fifo as ctr opens it (a reader, the shim, exists already).
fn client_writer(p: &Path) -> fs::File {
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .unwrap()
}

fn wait_readable(fd: impl AsFd, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut p, poll_timeout(left)).unwrap();
    assert!(n > 0, "timed out waiting for data or end-of-file");
}

/// Reads until end-of-file, failing (not hanging) if it does not come.
fn read_to_eof(f: &mut fs::File) -> String {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        wait_readable(&*f, deadline);
        match f.read(&mut buf) {
            Ok(0) => return String::from_utf8(out).unwrap(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads exactly `n` bytes.
fn read_n(f: &mut fs::File, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        wait_readable(&*f, deadline);
        let k = f.read(&mut out[got..]).unwrap();
        assert!(k > 0, "early end-of-file after {got} bytes");
        got += k;
    }
    out
}

fn stdio(fd: Option<OwnedFd>) -> Stdio {
    fd.map(Stdio::from).unwrap_or_else(Stdio::null)
}

/// Starts `sh -c script` with the process's stdio; the Command (and so every copy of the
/// descriptors in the test) is gone when this returns.
fn spawn(script: &str, s: RuncStdio) -> Child {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .stdin(stdio(s.stdin))
        .stdout(stdio(s.stdout))
        .stderr(stdio(s.stderr));
    cmd.spawn().unwrap()
}

fn wait_child(mut c: Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "child did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

fn opts(dir: &Path) -> IoOptions {
    IoOptions {
        container_id: "web".into(),
        namespace: "default".into(),
        runtime_dir: dir.to_path_buf(),
        ..Default::default()
    }
}

fn spec(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> StdioSpec {
    StdioSpec {
        stdin: stdin.into(),
        stdout: stdout.into(),
        stderr: stderr.into(),
        terminal,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn process_io_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ProcessIo>();
}

#[test]
fn fifo_pass_through_without_a_thread() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (
        mkfifo(dir.path(), "x-stdout"),
        mkfifo(dir.path(), "x-stderr"),
    );
    let mut rout = client_reader(&out);
    let mut rerr = client_reader(&err);

    let mut pio = ProcessIo::prepare(
        &spec("", s(&out), s(&err), false),
        &opts(dir.path()),
        runner(),
    )
    .unwrap();
    assert!(pio.console_socket().is_none());
    let rs: RuncStdio = pio.take_runc_stdio();
    assert!(rs.stdin.is_none());
    pio.start().unwrap();
    assert_eq!(our_threads(), 0, "direct fifos need no copy thread");
    let child = spawn("echo out; echo err >&2", rs);
    assert_eq!(read_to_eof(&mut rout), "out\n");
    assert_eq!(read_to_eof(&mut rerr), "err\n");
    assert!(wait_child(child).success());
    pio.finish(WAIT);
    drop((rout, rerr));
    leak.check();
}

#[test]
fn stdout_and_stderr_share_one_fifo() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let out = mkfifo(dir.path(), "x-stdout");
    let mut rout = client_reader(&out);
    let mut pio = ProcessIo::prepare(
        &spec("", s(&out), s(&out), false),
        &opts(dir.path()),
        runner(),
    )
    .unwrap();
    let rs: RuncStdio = pio.take_runc_stdio();
    pio.start().unwrap();
    let child = spawn("echo out; echo err >&2", rs);
    assert_eq!(read_to_eof(&mut rout), "out\nerr\n");
    wait_child(child);
    pio.finish(WAIT);
    drop(rout);
    leak.check();
}

#[test]
fn missing_fifo_is_a_clear_error() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope");
    let e =
        ProcessIo::prepare(&spec("", s(&p), "", false), &opts(dir.path()), runner()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("opening stdout fifo {p:?}: No such file or directory")
    );
    assert_eq!(e.kind(), IoErrorKind::NotFound);
    let e = ProcessIo::prepare(
        &spec("", "ftp:///x", "", false),
        &opts(dir.path()),
        runner(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), IoErrorKind::InvalidArgument);
    leak.check();
}

#[test]
fn stdin_reaches_the_process_and_ends_after_client_close_and_close_io() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (
        mkfifo(dir.path(), "x-stdin"),
        mkfifo(dir.path(), "x-stdout"),
    );
    let mut rout = client_reader(&out);
    let mut pio = ProcessIo::prepare(
        &spec(s(&inp), s(&out), "", false),
        &opts(dir.path()),
        runner(),
    )
    .unwrap();
    let rs: RuncStdio = pio.take_runc_stdio();
    assert!(rs.stdin.is_some() && rs.stdout.is_some() && rs.stderr.is_none());
    let mut child = spawn("exec cat", rs);
    pio.start().unwrap();
    // The process reads the stdin fifo itself: no copy thread.
    assert_eq!(our_threads(), 0);

    let mut w = client_writer(&inp);
    w.write_all(b"hello\n").unwrap();
    assert_eq!(read_n(&mut rout, 6), b"hello\n");
    // The client goes away: no end-of-file for the process while the shim holds stdin.
    drop(w);
    thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "cat saw a spurious EOF"
    );
    // A second client can still write.
    let mut w = client_writer(&inp);
    w.write_all(b"again\n").unwrap();
    assert_eq!(read_n(&mut rout, 6), b"again\n");
    // CloseIO, then the client closes: end-of-file.
    pio.close_stdin();
    w.write_all(b"last\n").unwrap();
    drop(w);
    assert_eq!(read_to_eof(&mut rout), "last\n");
    assert!(wait_child(child).success());
    pio.finish(WAIT);
    drop(rout);
    leak.check();
}

#[test]
fn close_io_without_a_client_ends_stdin() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (
        mkfifo(dir.path(), "x-stdin"),
        mkfifo(dir.path(), "x-stdout"),
    );
    let mut rout = client_reader(&out);
    let mut pio = ProcessIo::prepare(
        &spec(s(&inp), s(&out), "", false),
        &opts(dir.path()),
        runner(),
    )
    .unwrap();
    let child = spawn("cat; echo done", pio.take_runc_stdio::<RuncStdio>());
    pio.start().unwrap();
    pio.close_stdin();
    assert_eq!(read_to_eof(&mut rout), "done\n");
    wait_child(child);
    pio.finish(WAIT);
    drop(rout);
    leak.check();
}

#[test]
fn finish_stops_a_stdin_copy_nobody_closes() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let inp = mkfifo(dir.path(), "x-stdin");
    let mut pio =
        ProcessIo::prepare(&spec(s(&inp), "", "", false), &opts(dir.path()), runner()).unwrap();
    let child = spawn("exit 0", pio.take_runc_stdio::<RuncStdio>());
    pio.start().unwrap();
    let _w = client_writer(&inp);
    wait_child(child);
    let t = Instant::now();
    pio.finish(WAIT);
    assert!(t.elapsed() < Duration::from_secs(2), "stdin is not drained");
    drop(_w);
    leak.check();
}

#[test]
fn file_uri_appends_both_streams() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a/b/ctr.log");
    let uri = format!("file://{}", log.display());
    for _ in 0..2 {
        let mut pio =
            ProcessIo::prepare(&spec("", &uri, &uri, false), &opts(dir.path()), runner()).unwrap();
        let rs: RuncStdio = pio.take_runc_stdio();
        let (o, e) = (rs.stdout.as_ref().unwrap(), rs.stderr.as_ref().unwrap());
        let (mo, me) = (
            fs::File::from(o.try_clone().unwrap()),
            fs::File::from(e.try_clone().unwrap()),
        );
        assert_eq!(mo.metadata().unwrap().ino(), me.metadata().unwrap().ino());
        drop((mo, me));
        pio.start().unwrap();
        assert_eq!(our_threads(), 0);
        wait_child(spawn("echo out; echo err >&2", rs));
        pio.finish(WAIT);
    }
    assert_eq!(fs::read_to_string(&log).unwrap(), "out\nerr\nout\nerr\n");
    let mode = fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o711, 0o600, "mode {mode:o}");
    leak.check();
}

#[test]
fn io_uid_gives_owned_pipes_and_copies() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (
        mkfifo(dir.path(), "x-stdout"),
        mkfifo(dir.path(), "x-stderr"),
    );
    let mut rout = client_reader(&out);
    let mut rerr = client_reader(&err);
    // Root may give the pipes to anyone; anybody else only to themselves.
    let (uid, gid) = match nix::unistd::geteuid().as_raw() {
        0 => (1000, 1001),
        u => (u, nix::unistd::getegid().as_raw()),
    };
    let mut o = opts(dir.path());
    o.io_uid = uid;
    o.io_gid = gid;
    let mut pio = ProcessIo::prepare(&spec("", s(&out), s(&err), false), &o, runner()).unwrap();
    let rs: RuncStdio = pio.take_runc_stdio();
    for fd in [rs.stdout.as_ref().unwrap(), rs.stderr.as_ref().unwrap()] {
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFIFO);
        assert_eq!((st.st_uid, st.st_gid), (uid, gid));
        let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert!(link.to_string_lossy().starts_with("pipe:"), "{link:?}");
    }
    pio.start().unwrap();
    wait_our_threads(1);
    wait_child(spawn("echo out; echo err >&2", rs));
    assert_eq!(read_to_eof(&mut rout), "out\n");
    assert_eq!(read_to_eof(&mut rerr), "err\n");
    // The copy thread ends on its own once the process's output is done.
    wait_our_threads(0);
    pio.finish(WAIT);
    drop((rout, rerr));
    leak.check();
}

#[test]
fn io_uid_with_one_log_file() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ctr.log");
    let uri = format!("file://{}", log.display());
    let mut o = opts(dir.path());
    (o.io_uid, o.io_gid) = match nix::unistd::geteuid().as_raw() {
        0 => (1000, 1000),
        u => (u, nix::unistd::getegid().as_raw()),
    };
    let mut pio = ProcessIo::prepare(&spec("", &uri, &uri, false), &o, runner()).unwrap();
    let rs: RuncStdio = pio.take_runc_stdio();
    pio.start().unwrap();
    wait_child(spawn("echo out; sleep 0.1; echo err >&2", rs));
    pio.finish(WAIT);
    assert_eq!(fs::read_to_string(&log).unwrap(), "out\nerr\n");
    leak.check();
}

/// A `binary://` URI running `/bin/sh -c script` with `x=y` after it (so `$0` = `x`,
/// `$1` = `y`: the query becomes `-c <script> x y`, in order, without added dashes).
fn binary_uri(script: &str) -> String {
    let mut q = String::new();
    for b in script.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    format!("binary:///bin/sh?-c={q}&x=y")
}

#[test]
fn binary_logger_gets_fds_3_4_5_args_and_env() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let script = format!(
        "exec 5>&-; /bin/cat <&3 >{d}/out & /bin/cat <&4 >{d}/err & \
         echo \"$0 $1\" >{d}/args; /bin/cat /proc/$$/environ >{d}/env; wait"
    );
    let uri = binary_uri(&script);
    let mut pio =
        ProcessIo::prepare(&spec("", &uri, &uri, false), &opts(dir.path()), runner()).unwrap();
    wait_our_threads(1);
    let rs: RuncStdio = pio.take_runc_stdio();
    pio.start().unwrap();
    wait_child(spawn("echo out; echo err >&2", rs));
    pio.finish(WAIT);
    assert_eq!(fs::read_to_string(dir.path().join("out")).unwrap(), "out\n");
    assert_eq!(fs::read_to_string(dir.path().join("err")).unwrap(), "err\n");
    assert_eq!(
        fs::read_to_string(dir.path().join("args")).unwrap(),
        "x y\n"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("env")).unwrap(),
        "CONTAINER_ID=web\0CONTAINER_NAMESPACE=default\0"
    );
    leak.check();
}

#[test]
fn binary_logger_ignoring_sigterm_is_killed() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let uri = binary_uri("trap '' TERM; exec 5>&-; read x <&3");
    let mut pio =
        ProcessIo::prepare(&spec("", &uri, "", false), &opts(dir.path()), runner()).unwrap();
    // The process never exits: the test keeps its pipes.
    let rs: RuncStdio = pio.take_runc_stdio();
    let t = Instant::now();
    pio.shutdown(Duration::from_millis(100), Duration::from_millis(300));
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(our_threads(), 0);
    drop((rs, pio));
    leak.check();
}

#[test]
fn missing_logging_binary_fails_prepare() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let e = ProcessIo::prepare(
        &spec("", "binary:///no/such/logger?a=b", "", false),
        &opts(dir.path()),
        runner(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("starting logging binary \"/no/such/logger\": "),
        "{e}"
    );
    leak.check();
}

/// Sends `fd` with `name` over a console socket, as runc does.
fn send_console(path: &Path, name: &str, fd: impl AsFd) {
    let conn = UnixStream::connect(path).unwrap();
    let fds = [fd.as_fd().as_raw_fd()];
    sendmsg::<()>(
        conn.as_raw_fd(),
        &[IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
}

fn openpty_raw() -> (OwnedFd, OwnedFd) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut t = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
    (pty.master, pty.slave)
}

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, libc::winsize);

fn winsize(fd: impl AsFd) -> (u16, u16) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through a pointer to a live local.
    unsafe { get_winsize(fd.as_fd().as_raw_fd(), &mut ws) }.unwrap();
    (ws.ws_col, ws.ws_row)
}

#[test]
fn terminal_master_over_console_socket() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (
        mkfifo(dir.path(), "x-stdin"),
        mkfifo(dir.path(), "x-stdout"),
    );
    let mut rout = client_reader(&out);
    let mut pio = ProcessIo::prepare(
        &spec(s(&inp), s(&out), "", true),
        &opts(dir.path()),
        runner(),
    )
    .unwrap();
    let rs: RuncStdio = pio.take_runc_stdio();
    assert!(rs.stdin.is_none() && rs.stdout.is_none() && rs.stderr.is_none());
    assert_eq!(
        pio.resize(1, 1).unwrap_err().to_string(),
        "the process's terminal has not been received yet"
    );
    let sock = pio.console_socket().unwrap().to_path_buf();
    assert!(sock.starts_with(dir.path()));
    // "runc": a pty, its master sent from another thread, its slave kept as the process's.
    let (master, slave) = openpty_raw();
    let sender = {
        let sock = sock.clone();
        thread::spawn(move || send_console(&sock, "/dev/pts/99", master))
    };
    sender.join().unwrap();
    pio.start().unwrap();
    assert!(!sock.exists(), "console socket removed after use");
    wait_our_threads(1);

    let mut slave = fs::File::from(slave);
    slave.write_all(b"from the process\n").unwrap();
    assert_eq!(read_n(&mut rout, 17), b"from the process\n");
    let mut w = client_writer(&inp);
    w.write_all(b"typed\n").unwrap();
    assert_eq!(read_n(&mut slave, 6), b"typed\n");

    pio.resize(132, 43).unwrap();
    assert_eq!(winsize(&slave), (132, 43));
    pio.resize(100_000, 50).unwrap();
    assert_eq!(winsize(&slave), (65535, 50));

    // The process exits: the master reads EIO, the client sees end-of-file.
    drop(slave);
    assert_eq!(read_to_eof(&mut rout), "");
    pio.finish(WAIT);
    drop((rout, w));
    leak.check();
}

#[test]
fn resize_needs_a_terminal() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let pio = ProcessIo::prepare(&spec("", "", "", false), &opts(dir.path()), runner()).unwrap();
    let e = pio.resize(80, 24).unwrap_err();
    assert!(matches!(e, IoError::NotATerminal));
    assert_eq!(e.kind(), IoErrorKind::FailedPrecondition);
    drop(pio);
    leak.check();
}

#[test]
fn console_socket_rejects_a_non_terminal_and_times_out() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let sock = console::ConsoleSocket::bind(dir.path()).unwrap();
    let e = sock.receive_master(Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, IoError::Timeout { .. }), "{e}");
    assert_eq!(e.kind(), IoErrorKind::DeadlineExceeded);

    let (r, _w) = nix::unistd::pipe().unwrap();
    send_console(sock.path(), "/dev/pts/1", &r);
    drop(r);
    let e = sock.receive_master(WAIT).unwrap_err().to_string();
    assert!(e.contains("is not a terminal"), "{e}");
    let path = sock.path().to_path_buf();
    drop(sock);
    assert!(!path.exists());
    drop(_w);
    leak.check();
}

#[test]
fn terminal_output_to_a_logging_binary() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let uri = binary_uri(&format!(
        "exec 5>&-; /bin/cat <&3 >{d}/out; /bin/cat <&4 >{d}/err"
    ));
    let mut pio =
        ProcessIo::prepare(&spec("", &uri, "", true), &opts(dir.path()), runner()).unwrap();
    let (master, slave) = openpty_raw();
    send_console(pio.console_socket().unwrap(), "/dev/pts/7", master);
    pio.start().unwrap();
    let mut slave = fs::File::from(slave);
    slave.write_all(b"tty out\n").unwrap();
    drop(slave);
    pio.finish(WAIT);
    assert_eq!(
        fs::read_to_string(dir.path().join("out")).unwrap(),
        "tty out\n"
    );
    assert_eq!(fs::read_to_string(dir.path().join("err")).unwrap(), "");
    leak.check();
}

fn tar(args: &[&std::ffi::OsStr]) {
    let out = Command::new("tar").args(args).output().unwrap();
    assert!(out.status.success(), "tar {args:?}: {out:?}");
}

/// Unpacks the one-manifest OCI image layout `tarball` (via `scratch`) into `rootfs`.
fn unpack_oci(tarball: &Path, scratch: &Path, rootfs: &Path) {
    fs::create_dir_all(scratch).unwrap();
    fs::create_dir_all(rootfs).unwrap();
    tar(&[
        "-xf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        scratch.as_os_str(),
    ]);
    let blob = |digest: &str| {
        scratch
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
    };
    let index = json(scratch.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    for layer in manifest["layers"].as_array().unwrap() {
        let gz = layer["mediaType"].as_str().unwrap_or("").ends_with("gzip");
        let flag = if gz { "-xzf" } else { "-xf" };
        let b = blob(layer["digest"].as_str().unwrap());
        tar(&[
            flag.as_ref(),
            b.as_os_str(),
            "-C".as_ref(),
            rootfs.as_os_str(),
        ]);
    }
}

/// A busybox bundle (`tests/fixtures/busybox-oci.tar`) for driving runc for real, or why not.
struct RuncBundle {
    runc: PathBuf,
    dir: tempfile::TempDir,
    bundle: PathBuf,
    id: String,
}

impl RuncBundle {
    /// `None` (after printing why) when root, runc or the fixture is missing; on CI
    /// (`CI=true`) that is a failure instead.
    fn new(test: &str, args: &[&str], terminal: bool) -> Option<RuncBundle> {
        let skip = |why: &str| {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!ci, "{test} cannot run on CI: {why}");
            eprintln!("skipping {test}: {why}");
            None
        };
        if !nix::unistd::geteuid().is_root() {
            return skip("needs root");
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let Some(runc) = std::env::split_paths(&path)
            .map(|d| d.join("runc"))
            .find(|p| p.is_file())
        else {
            return skip("runc not installed");
        };
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/busybox-oci.tar");
        if !fixture.exists() {
            return skip(&format!("{} is missing", fixture.display()));
        }
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        unpack_oci(&fixture, &dir.path().join("image"), &bundle.join("rootfs"));
        let out = Command::new(&runc)
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = terminal.into();
        cfg["process"]["args"] = serde_json::json!(args);
        fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let id = format!("corral-io-{test}-{}", std::process::id());
        Some(RuncBundle {
            runc,
            dir,
            bundle,
            id,
        })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.runc);
        c.arg("--root")
            .arg(self.dir.path().join("runc-root"))
            .args(args);
        c
    }

    /// `runc create` with `stdio`, whose descriptors are closed when it returns; `Err` with
    /// runc's complaint.
    fn create(&self, console: Option<&Path>, rs: RuncStdio) -> Result<(), String> {
        let mut c = self.cmd(&["create", "--bundle", s(&self.bundle)]);
        if let Some(sock) = console {
            c.arg("--console-socket").arg(sock);
        }
        // runc's log goes to a file, so its stdio is the container's alone.
        c.arg("--pid-file")
            .arg(self.dir.path().join("pid"))
            .arg(&self.id)
            .stdin(stdio(rs.stdin))
            .stdout(stdio(rs.stdout))
            .stderr(stdio(rs.stderr));
        let status = c.status().unwrap();
        drop(c);
        if status.success() {
            Ok(())
        } else {
            Err(format!("runc create: {status}"))
        }
    }

    fn start(&self) {
        assert!(self.cmd(&["start", &self.id]).status().unwrap().success());
    }
}

impl Drop for RuncBundle {
    fn drop(&mut self) {
        let _ = self
            .cmd(&["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// runc itself: a terminal process, its pty master sent over `--console-socket`.
#[test]
fn runc_terminal() {
    let script = "stty -echo; echo ready; read line; echo \"got $line\"; stty size";
    let Some(rb) = RuncBundle::new("runc_terminal", &["/bin/sh", "-c", script], true) else {
        return;
    };
    let leak = LeakCheck::start();
    let dir = rb.dir.path();
    let (inp, out) = (mkfifo(dir, "x-stdin"), mkfifo(dir, "x-stdout"));
    let mut rout = client_reader(&out);
    let mut pio =
        ProcessIo::prepare(&spec(s(&inp), s(&out), "", true), &opts(dir), runner()).unwrap();
    let sock = pio.console_socket().unwrap().to_path_buf();
    rb.create(Some(&sock), pio.take_runc_stdio()).unwrap();
    pio.start().unwrap();
    pio.resize(100, 30).unwrap();
    rb.start();
    assert_eq!(read_n(&mut rout, 7), b"ready\r\n");
    let mut w = client_writer(&inp);
    w.write_all(b"hi\n").unwrap();
    pio.close_stdin();
    drop(w);
    assert_eq!(read_to_eof(&mut rout), "got hi\r\n30 100\r\n");
    pio.finish(WAIT);
    drop((rout, rb));
    leak.check();
}

/// runc itself with direct fifos and a stdin pipe: the client sees end-of-file when the
/// container's process exits, before `finish`.
#[test]
fn runc_fifos() {
    let script = "read line; echo \"out $line\"; echo err >&2";
    let Some(rb) = RuncBundle::new("runc_fifos", &["/bin/sh", "-c", script], false) else {
        return;
    };
    let leak = LeakCheck::start();
    let dir = rb.dir.path();
    let (inp, out, err) = (
        mkfifo(dir, "x-stdin"),
        mkfifo(dir, "x-stdout"),
        mkfifo(dir, "x-stderr"),
    );
    let mut rout = client_reader(&out);
    let mut rerr = client_reader(&err);
    let mut pio = ProcessIo::prepare(
        &spec(s(&inp), s(&out), s(&err), false),
        &opts(dir),
        runner(),
    )
    .unwrap();
    rb.create(None, pio.take_runc_stdio()).unwrap();
    pio.start().unwrap();
    rb.start();
    let mut w = client_writer(&inp);
    w.write_all(b"in\n").unwrap();
    assert_eq!(read_to_eof(&mut rout), "out in\n");
    assert_eq!(read_to_eof(&mut rerr), "err\n");
    drop(w);
    pio.finish(WAIT);
    drop((rout, rerr, rb));
    leak.check();
}

#[test]
fn console_socket_in_a_private_dir_when_the_path_is_too_long() {
    let leak = LeakCheck::start();
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("b".repeat(100));
    fs::create_dir(&long).unwrap();
    let mut pio = ProcessIo::prepare(&spec("", "", "", true), &opts(&long), runner()).unwrap();
    let sock = pio.console_socket().unwrap().to_path_buf();
    assert!(sock.starts_with(std::env::temp_dir()), "{sock:?}");
    assert!(sock.as_os_str().len() <= 107);
    let private = sock.parent().unwrap().to_path_buf();
    assert_eq!(
        fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // A terminal without stdout: its output is read and dropped.
    let (master, slave) = openpty_raw();
    send_console(&sock, "/dev/pts/3", master);
    pio.start().unwrap();
    assert!(!private.exists());
    let mut slave = fs::File::from(slave);
    slave.write_all(&[b'x'; 100_000]).unwrap();
    drop(slave);
    pio.finish(WAIT);
    leak.check();
}
