//! The registry flags `ctr images pull` and `push` share (`commands.RegistryFlags`), and
//! the [`Resolver`] they make: `--user` with a password prompt on a terminal, `--hosts-dir`,
//! `--plain-http`, `--skip-verify`, and the default TLS settings `--tlscacert`, `--tlscert`
//! and `--tlskey` (read at once, as ctr reads them).

use std::io::{self, BufRead, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use clap::Args;
use nix::sys::termios::{self, LocalFlags, SetArg};

use super::auth::Credentials;
use super::error::{RegistryError, Result};
use super::hosts::HostOptions;
use super::resolver::Resolver;
use super::transport::{default_client, default_roots};

/// The hosts directory used when `--hosts-dir` is not given and it exists (Corral's
/// counterpart of containerd's `/etc/containerd/certs.d`).
pub const DEFAULT_HOSTS_DIR: &str = "/etc/corral/certs.d";

/// Flags for talking to a registry.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryFlags {
    /// skip SSL certificate validation
    #[arg(short = 'k', long)]
    pub skip_verify: bool,
    /// allow connections using plain HTTP
    #[arg(long)]
    pub plain_http: bool,
    /// user[:password] Registry user and password
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Custom hosts configuration directory (default /etc/corral/certs.d when it exists)
    #[arg(long)]
    pub hosts_dir: Option<PathBuf>,
    /// path to TLS root CA
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// path to TLS client certificate
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// path to TLS client key
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// dump all HTTP request/responses when interacting with container registry
    #[arg(long)]
    pub http_dump: bool,
}

impl RegistryFlags {
    /// The resolver these flags describe; asks for the password of a `--user` without one.
    pub fn resolver(&self) -> Result<Resolver> {
        let nonempty = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        let tls_ca = nonempty(&self.tlscacert)
            .map(|ca| default_roots(&ca))
            .transpose()?;
        let tls_client = match (nonempty(&self.tlscert), nonempty(&self.tlskey)) {
            (Some(cert), Some(key)) => Some(default_client(&cert, &key)?),
            (None, None) => None,
            _ => {
                return Err(RegistryError::InvalidArgument(
                    "flags --tlscert and --tlskey must be set together".into(),
                ))
            }
        };
        let options = HostOptions {
            hosts_dir: self.hosts_dir.clone().or_else(|| {
                let d = Path::new(DEFAULT_HOSTS_DIR);
                d.is_dir().then(|| d.to_path_buf())
            }),
            plain_http: self.plain_http,
            skip_verify: self.skip_verify,
            tls_ca,
            tls_client,
            http_dump: self.http_dump,
        };
        let credentials = match self.user.as_deref().filter(|u| !u.is_empty()) {
            None => None,
            Some(user) => {
                let mut c = Credentials::parse(user);
                if !user.contains(':') {
                    c.secret = prompt_password()?;
                }
                Some(c)
            }
        };
        Ok(Resolver::new(options, credentials))
    }
}

/// Reads a password: without echo on a terminal (after `Password: `), else one line of
/// standard input.
fn prompt_password() -> Result<String> {
    let stdin = io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        print!("Password: ");
        let _ = io::stdout().flush();
        let fd = stdin.as_fd();
        let saved = termios::tcgetattr(fd)
            .map_err(|e| RegistryError::io("reading the terminal", io::Error::from(e)))?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        termios::tcsetattr(fd, SetArg::TCSANOW, &quiet)
            .map_err(|e| RegistryError::io("setting the terminal", io::Error::from(e)))?;
        let read = stdin.lock().read_line(&mut line);
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &saved);
        println!();
        read.map_err(|e| RegistryError::io("reading the password", e))?;
    } else {
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| RegistryError::io("reading the password", e))?;
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
