//! Unix socket addresses as containerd writes them, and the same-user peer check.

use std::io;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{getegid, geteuid};

/// A socket address: a path, or a name in Linux's abstract namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Path(PathBuf),
    Abstract(String),
}

impl Address {
    /// Reads `unix:///path`, `unix://@name` or a bare path.
    pub fn parse(addr: &str) -> io::Result<Self> {
        let rest = match addr.strip_prefix("unix://") {
            Some(rest) => rest,
            None if addr.contains("://") => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("address {addr:?}: only unix sockets are supported"),
                ))
            }
            None => addr,
        };
        if let Some(name) = rest.strip_prefix('@') {
            return Ok(Address::Abstract(name.to_string()));
        }
        if rest.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("address {addr:?} names no socket"),
            ));
        }
        Ok(Address::Path(PathBuf::from(rest)))
    }

    /// The socket path, for path addresses.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Address::Path(p) => Some(p),
            Address::Abstract(_) => None,
        }
    }

    fn socket_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Address::Path(p) => SocketAddr::from_pathname(p),
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())
            }
        }
    }

    /// Connects to the address.
    pub fn connect(&self) -> io::Result<UnixStream> {
        UnixStream::connect_addr(&self.socket_addr()?)
    }

    /// Listens on the address.
    pub fn bind(&self) -> io::Result<std::os::unix::net::UnixListener> {
        std::os::unix::net::UnixListener::bind_addr(&self.socket_addr()?)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Path(p) => write!(f, "unix://{}", p.display()),
            Address::Abstract(n) => write!(f, "unix://@{n}"),
        }
    }
}

/// Whether the peer runs with this process's effective uid and gid (checked with
/// `SO_PEERCRED` before any frame is read, as containerd's shims do).
pub fn peer_is_same_user(stream: &UnixStream) -> io::Result<bool> {
    let cred = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
    Ok(cred.uid() == geteuid().as_raw() && cred.gid() == getegid().as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_containerd_addresses() {
        assert_eq!(
            Address::parse("unix:///run/containerd/s/ab").unwrap(),
            Address::Path("/run/containerd/s/ab".into())
        );
        assert_eq!(
            Address::parse("/run/corral/corral.sock").unwrap(),
            Address::Path("/run/corral/corral.sock".into())
        );
        assert_eq!(
            Address::parse("unix://@/containerd-shim/x.sock").unwrap(),
            Address::Abstract("/containerd-shim/x.sock".into())
        );
        assert!(Address::parse("tcp://127.0.0.1:1").is_err());
        assert!(Address::parse("unix://").is_err());
        assert_eq!(
            Address::parse("unix:///a/b").unwrap().to_string(),
            "unix:///a/b"
        );
    }

    #[test]
    fn a_socketpair_peer_is_the_same_user() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(peer_is_same_user(&a).unwrap());
    }
}
