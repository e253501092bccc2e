//! corralctl's commands, one module per noun, and what they share: the connection to corrald,
//! the error every command ends with, and ctr's `KEY=VALUE` label arguments.

pub mod background;
pub mod container_flags;
pub mod containers;
pub mod content;
pub mod events;
pub mod format;
pub mod images;
pub mod info;
pub mod leases;
pub mod namespaces;
pub mod new_container;
pub mod plugins;
pub mod run;
pub mod snapshots;
pub mod tasks;

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use corral_protocols::rpc::{CallContext, Client, Code, Status};

/// Why a command failed; printed as `corralctl: <message>`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CtlError(pub String);

impl CtlError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        CtlError(message.into())
    }
}

impl From<Status> for CtlError {
    fn from(s: Status) -> Self {
        CtlError(status_message(&s))
    }
}

impl From<crate::spec::SpecError> for CtlError {
    fn from(e: crate::spec::SpecError) -> Self {
        CtlError(e.to_string())
    }
}

/// A call's status as a message: the server's words, or what is missing when corrald does
/// not serve the method yet.
pub fn status_message(s: &Status) -> String {
    if s.code() == Code::UNIMPLEMENTED && s.message().is_empty() {
        "corrald does not implement this call".to_string()
    } else if s.message().is_empty() {
        format!("{:?}", s.code()).to_lowercase().replace('_', " ")
    } else {
        s.message().to_string()
    }
}

/// Result of a command.
pub type CtlResult<T = ()> = Result<T, CtlError>;

/// What every command needs: where corrald is and the call context (namespace, timeout).
#[derive(Clone)]
pub struct Env {
    /// corrald's address, as given.
    pub address: String,
    /// The namespace every call works in (also in `ctx`).
    pub namespace: String,
    /// The namespace and timeout of every call.
    pub ctx: CallContext,
    /// The connection the command's calls share, made on first use.
    conn: Arc<Mutex<Option<Client>>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// The environment of a command calling corrald at `address` with `ctx`.
    pub fn new(address: String, namespace: String, ctx: CallContext) -> Env {
        Env {
            address,
            namespace,
            ctx,
            conn: Arc::default(),
        }
    }

    /// The connection to corrald: one for the whole command (a `run` makes some twenty
    /// calls), made again if corrald closed it.
    pub fn connect(&self) -> CtlResult<Client> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conn.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = connect(&self.address)?;
        *conn = Some(c.clone());
        Ok(c)
    }
}

/// Connects to corrald at `address`, saying so plainly when nothing listens there.
pub fn connect(address: &str) -> CtlResult<Client> {
    Client::connect(address).map_err(|e| CtlError(connect_message(address, &e)))
}

/// `connect <address>: <reason> — is corrald running?`, the reason as Go spells errno.
pub fn connect_message(address: &str, e: &io::Error) -> String {
    format!("connect {address}: {} — is corrald running?", io_reason(e))
}

/// An I/O error's reason in lower case without Rust's `(os error N)` suffix.
pub fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Reads ctr's label arguments: `KEY=VALUE` sets, `KEY=` clears (an empty value), a bare
/// `KEY` means `KEY=true`. Later arguments win.
pub fn parse_labels<S: AsRef<str>>(args: &[S]) -> BTreeMap<String, String> {
    args.iter()
        .map(|a| match a.as_ref().split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.as_ref().to_string(), "true".to_string()),
        })
        .collect()
}

/// Labels as ctr lists them: sorted `k=v` joined by commas.
pub fn join_labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.sort();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_like_ctr() {
        let l = parse_labels(&["a=1", "b=", "c", "d=x=y", "a=2"]);
        assert_eq!(l["a"], "2");
        assert_eq!(l["b"], "");
        assert_eq!(l["c"], "true");
        assert_eq!(l["d"], "x=y");
        assert_eq!(l.len(), 4);
        assert!(parse_labels::<&str>(&[]).is_empty());
    }

    #[test]
    fn labels_join_sorted() {
        let m: std::collections::HashMap<String, String> =
            [("z".into(), "1".into()), ("a".into(), "".into())].into();
        assert_eq!(join_labels(&m), "a=,z=1");
    }

    #[test]
    fn connect_errors_name_the_address() {
        let e = io::Error::from_raw_os_error(libc_enoent());
        assert_eq!(
            connect_message("/run/x.sock", &e),
            "connect /run/x.sock: no such file or directory — is corrald running?"
        );
        let err = connect("/nonexistent/corral.sock").err().unwrap();
        assert_eq!(
            err.to_string(),
            "connect /nonexistent/corral.sock: no such file or directory — is corrald running?"
        );
    }

    fn libc_enoent() -> i32 {
        2
    }

    #[test]
    fn statuses_become_messages() {
        assert_eq!(
            CtlError::from(Status::not_found("namespace \"x\": not found")).to_string(),
            "namespace \"x\": not found"
        );
        assert_eq!(
            status_message(&Status::unimplemented("")),
            "corrald does not implement this call"
        );
    }
}
