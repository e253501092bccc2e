//! The client IO on real fifos, with this test playing the shim's side.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// A writer whose bytes the test reads back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn pipe() -> (File, File) {
    let (r, w) = nix::unistd::pipe().unwrap();
    (File::from(r), File::from(w))
}

fn is_fifo(path: &str) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_fifo_set_is_private_and_named_as_containerd_names_it() {
    let root = tempfile::tempdir().unwrap();
    let fifo_root = root.path().join("a/fifo");
    let set = FifoSet::new(&fifo_root, "web", false).unwrap();
    assert_eq!(set.dir().parent(), Some(fifo_root.as_path()));
    let name = set.dir().file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.parse::<u32>().is_ok(), "{name}");
    for dir in [&fifo_root, &set.dir().to_path_buf()] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", dir.display());
    }
    // A missing parent can be passed through (the state directory's mode), not listed.
    let parent = std::fs::metadata(root.path().join("a"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(parent & 0o066, 0, "parent is {parent:o}");
    let dir = set.dir().display().to_string();
    assert_eq!(
        set.config(),
        &Config {
            terminal: false,
            stdin: format!("{dir}/web-stdin"),
            stdout: format!("{dir}/web-stdout"),
            stderr: format!("{dir}/web-stderr"),
        }
    );
    let other = FifoSet::new(&fifo_root, "web", true).unwrap();
    assert_ne!(other.dir(), set.dir());
    assert!(other.config().terminal);
    let gone = set.dir().to_path_buf();
    set.remove().unwrap();
    other.remove().unwrap();
    assert!(!gone.exists());
    assert!(fifo_root.exists(), "the fifo directory itself stays");
}

#[test]
fn streams_are_copied_both_ways_and_stdin_ends_with_close_io() {
    let root = tempfile::tempdir().unwrap();
    let (stdin_r, mut stdin_w) = pipe();
    let (out, err) = (Sink::default(), Sink::default());
    let streams = Streams {
        stdin: Some(Box::new(stdin_r)),
        stdout: Some(Box::new(out.clone())),
        stderr: Some(Box::new(err.clone())),
        terminal: false,
    };
    let mut io = Io::create(root.path(), "job", streams).unwrap();
    let config = io.config().clone();
    for p in [&config.stdin, &config.stdout, &config.stderr] {
        assert!(is_fifo(p), "{p} is no fifo");
    }
    // Input given before the shim opens anything is kept for it.
    stdin_w.write_all(b"early ").unwrap();
    let closed = Arc::new(AtomicUsize::new(0));

    // The shim's side: the stdin fifo to read, the output fifos to write.
    let (stdin_path, stdout_path, stderr_path) = (
        config.stdin.clone(),
        config.stdout.clone(),
        config.stderr.clone(),
    );
    let shim = std::thread::spawn(move || {
        let mut from_client = File::open(&stdin_path).unwrap();
        let mut out = OpenOptions::new().write(true).open(&stdout_path).unwrap();
        let mut err = OpenOptions::new().write(true).open(&stderr_path).unwrap();
        out.write_all(b"to stdout\n").unwrap();
        err.write_all(b"to stderr\n").unwrap();
        let mut input = String::new();
        from_client.read_to_string(&mut input).unwrap();
        input
    });
    stdin_w.write_all(b"late").unwrap();
    drop(stdin_w);
    let c = Arc::clone(&closed);
    io.on_stdin_eof(move || {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let input = within(LIMIT, "the shim's read", move || shim.join().unwrap());
    assert_eq!(input, "early late");
    // The shim closed its ends: the copies end.
    within(LIMIT, "io.wait", move || {
        io.cancel();
        io.wait();
        io.close().unwrap();
    });
    assert_eq!(out.text(), "to stdout\n");
    assert_eq!(err.text(), "to stderr\n");
    let deadline = Instant::now() + LIMIT;
    while closed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(closed.load(Ordering::SeqCst), 1, "CloseIO once");
    assert!(!std::path::Path::new(&config.stdin).exists());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn a_terminal_has_no_stderr() {
    let root = tempfile::tempdir().unwrap();
    let (stdin_r, _stdin_w) = pipe();
    let out = Sink::default();
    let streams = Streams {
        stdin: Some(Box::new(stdin_r)),
        stdout: Some(Box::new(out.clone())),
        stderr: None,
        terminal: true,
    };
    let mut io = Io::create(root.path(), "tty", streams).unwrap();
    let config = io.config().clone();
    assert!(config.terminal);
    assert_eq!(config.stderr, "");
    assert!(is_fifo(&config.stdout));
    let dir = std::path::Path::new(&config.stdout)
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(!dir.join("tty-stderr").exists());
    let stdout_path = config.stdout.clone();
    let shim = std::thread::spawn(move || {
        let mut w = OpenOptions::new().write(true).open(&stdout_path).unwrap();
        w.write_all(b"\x1b[1mbold\r\n").unwrap();
    });
    within(LIMIT, "the terminal's copy", move || {
        shim.join().unwrap();
        io.wait();
        io.cancel();
        io.close().unwrap();
    });
    assert_eq!(out.text(), "\x1b[1mbold\r\n");
    assert!(!dir.exists());
}

#[test]
fn cancel_gives_up_opens_the_shim_never_answered() {
    let root = tempfile::tempdir().unwrap();
    let (stdin_r, _stdin_w) = pipe();
    let streams = Streams {
        stdin: Some(Box::new(stdin_r)),
        stdout: Some(Box::new(Sink::default())),
        stderr: Some(Box::new(Sink::default())),
        terminal: false,
    };
    let mut io = Io::create(root.path(), "never", streams).unwrap();
    within(LIMIT, "cancel, wait and close", move || {
        io.cancel();
        io.wait();
        io.close().unwrap();
    });
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn attach_copies_existing_fifos_and_load_removes_them() {
    let root = tempfile::tempdir().unwrap();
    let set = FifoSet::new(root.path(), "web", false).unwrap();
    let config = set.config().clone();
    for p in [&config.stdout, &config.stderr] {
        nix::unistd::mkfifo(p.as_str(), nix::sys::stat::Mode::from_bits_truncate(0o700)).unwrap();
    }
    // A task whose stdin is not connected: only the outputs are copied.
    let attached = Config {
        stdin: String::new(),
        ..config.clone()
    };
    let out = Sink::default();
    let streams = Streams {
        stdin: None,
        stdout: Some(Box::new(out.clone())),
        stderr: Some(Box::new(Sink::default())),
        terminal: false,
    };
    let mut io = Io::attach(attached, streams).unwrap();
    let (o, e) = (config.stdout.clone(), config.stderr.clone());
    within(LIMIT, "attached copies", move || {
        let mut w = OpenOptions::new().write(true).open(&o).unwrap();
        let _e = OpenOptions::new().write(true).open(&e).unwrap();
        w.write_all(b"attached\n").unwrap();
        drop(w);
        drop(_e);
        io.wait();
    });
    assert_eq!(out.text(), "attached\n");
    // Loading (tasks delete) removes the fifos, then the emptied directory.
    let mut loaded = Io::load(config.clone());
    assert_eq!(loaded.config(), &config);
    loaded.close().unwrap();
    assert!(!set.dir().exists());
}

#[test]
fn a_directory_with_other_files_is_kept_when_fifos_are_removed() {
    let root = tempfile::tempdir().unwrap();
    let fifo = root.path().join("x-stdout");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o700)).unwrap();
    let plain = root.path().join("x-stderr");
    std::fs::write(&plain, b"log").unwrap();
    fifo::remove_fifos(&[fifo.clone(), plain.clone()]).unwrap();
    assert!(!fifo.exists());
    assert!(plain.exists(), "only fifos are removed");
    assert!(root.path().exists());
}

#[test]
fn null_and_log_uri_connect_no_fifos() {
    let mut null = Io::null();
    assert_eq!(null.config(), &Config::default());
    null.cancel();
    null.wait();
    null.close().unwrap();
    let log = Io::log_uri("file:///var/log/web.log").unwrap();
    assert_eq!(
        log.config(),
        &Config {
            terminal: false,
            stdin: String::new(),
            stdout: "file:///var/log/web.log".into(),
            stderr: "file:///var/log/web.log".into(),
        }
    );
    assert_eq!(
        Io::log_uri(":x").unwrap_err().to_string(),
        r#"parse ":x": missing protocol scheme"#
    );
}

#[test]
fn the_stdin_closer_runs_once_whichever_comes_first() {
    let count = Arc::new(AtomicUsize::new(0));
    let arm = |closer: &copy::StdinCloser| {
        let c = Arc::clone(&count);
        closer.arm(Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        }));
    };
    let before = copy::StdinCloser::default();
    before.ended();
    arm(&before);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    before.ended();
    let after = copy::StdinCloser::default();
    arm(&after);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    after.ended();
    after.ended();
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn a_pty_is_a_console_that_goes_raw_and_back() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let size = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(&size, None).unwrap();
    let console = Arc::new(Console::from_fd(pty.slave.as_fd()).unwrap());
    assert_eq!(
        console.size().unwrap(),
        WinSize {
            width: 101,
            height: 33
        }
    );
    let cooked = tcgetattr(&pty.slave).unwrap();
    assert!(cooked
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO));
    {
        let _raw = console.raw().unwrap();
        let raw = tcgetattr(&pty.slave).unwrap();
        assert!(!raw
            .local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG));
    }
    let back = tcgetattr(&pty.slave).unwrap();
    assert_eq!(back.local_flags, cooked.local_flags);
    assert_eq!(back.input_flags, cooked.input_flags);
    assert_eq!(back.output_flags, cooked.output_flags);
    // The terminal streams read and write the console itself.
    let mut streams = Streams::terminal(&console).unwrap();
    assert!(streams.terminal && streams.stderr.is_none());
    streams.stdout.as_mut().unwrap().write_all(b"hi").unwrap();
    let mut master = File::from(pty.master);
    let mut buf = [0u8; 2];
    master.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");

    let (r, _w) = pipe();
    assert!(matches!(
        Console::from_fd(r.as_fd()),
        Err(CioError::NotAConsole)
    ));
}
