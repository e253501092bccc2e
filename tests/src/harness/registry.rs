//! A private OCI distribution registry (Debian's `docker-registry`) on 127.0.0.1, with its
//! storage under a temporary directory, optional htpasswd basic auth (bcrypt, made with
//! `htpasswd -B`) and optional TLS with a self-signed CA made with the `openssl` command;
//! stopped and removed on drop.

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::child::ChildGuard;
use super::wait::wait_for;

/// How a registry is started.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `(user, password)` for htpasswd basic auth.
    pub htpasswd: Option<(String, String)>,
    /// Serve HTTPS with a certificate for 127.0.0.1 signed by a fresh CA.
    pub tls: bool,
    /// With `tls`: require a client certificate signed by that CA.
    pub client_certs: bool,
}

/// A running registry.
pub struct Registry {
    guard: ChildGuard,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Makes `ca.crt`/`ca.key`, `server.crt`/`server.key` (for IP 127.0.0.1) and
/// `client.crt`/`client.key` in `dir`.
fn make_certs(dir: &Path) -> io::Result<()> {
    let p = |n: &str| dir.join(n);
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=corral-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.crt")))?;
    sign(
        dir,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )?;
    sign(
        dir,
        "client",
        "/CN=corral-test-client",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
}

/// Makes `<name>.key` and `<name>.crt` for `subject` in `dir`, signed by its CA, with the
/// extensions `ext`.
fn sign(dir: &Path, name: &str, subject: &str, ext: &str) -> io::Result<()> {
    let p = |suffix: &str| dir.join(format!("{name}.{suffix}"));
    run(Command::new("openssl")
        .args([
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout",
        ])
        .arg(p("key"))
        .arg("-out")
        .arg(p("csr")))?;
    fs::write(p("ext"), ext)?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
        .arg(p("csr"))
        .arg("-CA")
        .arg(dir.join("ca.crt"))
        .arg("-CAkey")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(p("crt"))
        .arg("-extfile")
        .arg(p("ext")))
}

impl Registry {
    /// Starts `docker-registry` (found at `binary`) with `opts`, waiting until it accepts
    /// connections.
    pub fn start(binary: &Path, opts: &RegistryOptions) -> io::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("corral-registry-")
            .tempdir()?;
        let port = free_port()?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if opts.tls {
            make_certs(dir.path())?;
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
            if opts.client_certs {
                config.push_str(&format!(
                    "    clientcas:\n      - {}\n",
                    dir.path().join("ca.crt").display()
                ));
            }
        }
        if let Some((user, password)) = &opts.htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .stdin(Stdio::null())
                .output()?;
            if !out.status.success() {
                return Err(io::Error::other("htpasswd failed"));
            }
            fs::write(dir.path().join("htpasswd"), &out.stdout)?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: corral-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config)?;
        let log = fs::File::create(dir.path().join("registry.log"))?;
        let guard = ChildGuard::spawn(
            "docker-registry",
            Command::new(binary)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )?;
        let mut reg = Registry {
            guard,
            dir,
            port,
            tls: opts.tls,
        };
        let up = wait_for(Duration::from_secs(20), "the registry to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if let Err(e) = up {
            let _ = reg.guard.kill();
            return Err(io::Error::other(format!("{e}: {}", reg.log())));
        }
        Ok(reg)
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA certificate (with TLS).
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("ca.crt"))
    }

    /// A client certificate and key signed by the CA (with TLS).
    pub fn client_pair(&self) -> Option<(PathBuf, PathBuf)> {
        self.tls.then(|| {
            (
                self.dir.path().join("client.crt"),
                self.dir.path().join("client.key"),
            )
        })
    }

    /// The storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file of blob `digest` (`sha256:<hex>`) in the storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage().join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }

    /// What the registry logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.guard.kill();
    }
}

/// A TCP proxy on 127.0.0.1 in front of a registry that forwards answers slowly (in
/// `chunk`-byte pieces, `pause` apart) and counts the bytes it forwarded, so a test can
/// interrupt a pull halfway and see what a resumed pull fetches. Stopped on drop.
pub struct ThrottledProxy {
    port: u16,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl ThrottledProxy {
    /// Proxies to `upstream` (`host:port`).
    pub fn start(upstream: &str, chunk: usize, pause: Duration) -> io::Result<ThrottledProxy> {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let (count, halt) = (forwarded.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c_in, mut s_out) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                std::thread::spawn(move || {
                    let _ = io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let (count, halt) = (count.clone(), halt.clone());
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; chunk];
                    loop {
                        if halt.load(Ordering::SeqCst) {
                            break;
                        }
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        count.fetch_add(n as u64, Ordering::SeqCst);
                        std::thread::sleep(pause);
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                    let _ = s_in.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Ok(ThrottledProxy {
            port,
            forwarded,
            stop,
            accept: Some(accept),
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Bytes forwarded from the registry so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ThrottledProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}
