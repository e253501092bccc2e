//! [`Corrald`]: a real `corrald` of the test's own, on a [`TempRoot`]'s root and state, with
//! its own config file and socket, stopped (and reaped) when dropped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::services::version::v1::version::VersionResponse;
use corral_protocols::services::version::v1::version_rpc::VersionClient;
use nix::sys::signal::Signal;

use super::{wait_for_socket, ChildGuard, TempRoot};
use crate::bins::corral_binary;

/// How long corrald gets to start answering.
const START: Duration = Duration::from_secs(10);

/// A running corrald.
pub struct Corrald {
    guard: ChildGuard,
    socket: PathBuf,
    log: PathBuf,
}

impl Corrald {
    /// Starts corrald on `temp`'s root and state, serving `<temp>/run/corral.sock`, logging
    /// to `<temp>/<log>`, with `extra_config` appended to a `version = 2` config file.
    pub fn start(temp: &TempRoot, log: &str, extra_config: &str) -> io::Result<Corrald> {
        Self::start_with(temp, log, extra_config, false)
    }

    /// [`start`](Self::start) in a mount namespace of its own with a private `/run` (what a
    /// shim that insists on `/run/containerd`, such as containerd's Go shim, needs so the
    /// host's is never touched). Its socket stays reachable: it is under `temp`.
    pub fn start_private_run(
        temp: &TempRoot,
        log: &str,
        extra_config: &str,
    ) -> io::Result<Corrald> {
        Self::start_with(temp, log, extra_config, true)
    }

    fn start_with(
        temp: &TempRoot,
        log: &str,
        extra_config: &str,
        private_run: bool,
    ) -> io::Result<Corrald> {
        let socket = temp.join("run/corral.sock");
        let config = temp.join("corrald.toml");
        fs::write(&config, format!("version = 2\n{extra_config}"))?;
        let log = temp.join(log);
        let file = fs::File::create(&log)?;
        let mut cmd = Command::new(corral_binary("corrald")?);
        cmd.arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(temp.root())
            .arg("--state")
            .arg(temp.state())
            .arg("--address")
            .arg(&socket)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if private_run {
            super::ns::with_private_run(&mut cmd);
        }
        let guard = ChildGuard::spawn("corrald", &mut cmd)?;
        temp.register_pid(guard.pid())?;
        let d = Corrald { guard, socket, log };
        wait_for_socket(&d.socket, START)
            .map_err(|e| io::Error::other(format!("{e}; corrald's log: {}", d.log_text())))?;
        Ok(d)
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`.
    pub fn address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A new client connection.
    pub fn client(&self) -> io::Result<Client> {
        Client::connect(&self.address())
    }

    /// A call context in `namespace` with a 10 s deadline.
    pub fn ctx(namespace: &str) -> CallContext {
        CallContext::new()
            .with_namespace(namespace)
            .with_timeout(Duration::from_secs(10))
    }

    /// corrald's answer to Version, on a new connection with a 10 s deadline.
    pub fn version(&self) -> io::Result<VersionResponse> {
        VersionClient::new(self.client()?)
            .version(
                &CallContext::new().with_timeout(Duration::from_secs(10)),
                &Default::default(),
            )
            .map_err(|s| io::Error::other(format!("Version: {s}")))
    }

    /// What corrald logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// SIGKILL, and reaped.
    pub fn kill(mut self) -> io::Result<ExitStatus> {
        self.guard.kill()
    }

    /// Where it logs.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGTERM, and asserts it exits 0 within `deadline` and removes its socket (panics with
    /// its log otherwise).
    pub fn stop_clean(self, deadline: Duration) {
        let socket = self.socket.clone();
        self.stop_ok(deadline);
        assert!(!socket.exists(), "socket left behind");
    }

    /// SIGTERM, and asserts it exits 0 within `deadline` (panics with its log otherwise).
    pub fn stop_ok(self, deadline: Duration) {
        let log = self.log.clone();
        let log_text = || fs::read_to_string(&log).unwrap_or_default();
        let t = std::time::Instant::now();
        match self.terminate(deadline) {
            Ok(Some(status)) => {
                assert_eq!(status.code(), Some(0), "corrald's log: {}", log_text())
            }
            Ok(None) => panic!(
                "corrald still running {deadline:?} after SIGTERM; log: {}",
                log_text()
            ),
            Err(e) => panic!("stopping corrald: {e}; log: {}", log_text()),
        }
        eprintln!("corrald stopped {:?} after SIGTERM", t.elapsed());
    }

    /// SIGTERM; the exit status once it is gone (within `deadline`).
    pub fn terminate(mut self, deadline: Duration) -> io::Result<Option<ExitStatus>> {
        self.guard.signal(Signal::SIGTERM)?;
        self.guard.wait_timeout(deadline)
    }
}
