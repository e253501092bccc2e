//! The shim's command line, as containerd writes it and Go's `flag` package reads it: `-name
//! value`, `-name=value`, `--name` alike, boolean flags without a value, then the action.

use std::fmt;

/// What the shim was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `-v`: print the version.
    Version,
    /// `-h`/`-help`: print usage.
    Help,
    /// `start`: start (or reuse) a shim server and print its address.
    Start,
    /// `delete`: clean up after a container whose shim is gone.
    Delete,
    /// No action: run as the shim server.
    Serve,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flags {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub socket: String,
    pub debug: bool,
    pub action: Option<Action>,
}

/// A command line the shim cannot act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

const VALUE_FLAGS: &[&str] = &[
    "namespace",
    "id",
    "address",
    "publish-binary",
    "bundle",
    "socket",
];
const BOOL_FLAGS: &[&str] = &["debug", "v", "version", "h", "help"];

/// Usage text, listing the flags containerd passes.
pub const USAGE: &str = "Usage: containerd-shim-corral-v2 [flags] [start|delete]

A runc shim for containerd's shim v2 protocol (runtime io.containerd.corral.v2).

Actions:
  start     start a shim server for a container and print its address
  delete    clean up after a container whose shim is gone

Flags:
  -namespace string        namespace that owns the shim
  -id string               id of the task
  -address string          grpc address back to main containerd
  -publish-binary string   path to publish binary (used for publishing events)
  -bundle string           path to the bundle if not workdir
  -socket string           socket path to serve
  -debug                   enable debug output in logs
  -v                       show the shim version and exit
";

/// Parses `args` (without the program name).
pub fn parse<I, S>(args: I) -> Result<Flags, UsageError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut flags = Flags::default();
    let mut args = args.into_iter().map(|a| a.as_ref().to_string());
    let mut rest = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--" {
            rest.extend(args.by_ref());
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            rest.push(arg);
            rest.extend(args.by_ref());
            break;
        };
        if body.is_empty() {
            rest.push(arg);
            rest.extend(args.by_ref());
            break;
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        if BOOL_FLAGS.contains(&name.as_str()) {
            let on = match inline.as_deref() {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(other) => {
                    return Err(UsageError(format!(
                        "invalid boolean value {other:?} for -{name}"
                    )))
                }
            };
            match name.as_str() {
                "debug" => flags.debug = on,
                "v" | "version" if on => flags.action = Some(Action::Version),
                "h" | "help" if on => flags.action = Some(Action::Help),
                _ => {}
            }
            continue;
        }
        if !VALUE_FLAGS.contains(&name.as_str()) {
            return Err(UsageError(format!(
                "flag provided but not defined: -{name}"
            )));
        }
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .ok_or_else(|| UsageError(format!("flag needs an argument: -{name}")))?,
        };
        match name.as_str() {
            "namespace" => flags.namespace = value,
            "id" => flags.id = value,
            "address" => flags.address = value,
            "publish-binary" => flags.publish_binary = value,
            "bundle" => flags.bundle = value,
            "socket" => flags.socket = value,
            _ => {}
        }
    }
    if flags.action.is_none() {
        flags.action = Some(match rest.first().map(String::as_str) {
            None => Action::Serve,
            Some("start") => Action::Start,
            Some("delete") => Action::Delete,
            Some(other) => return Err(UsageError(format!("unknown action {other:?}"))),
        });
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containerds_start_invocation() {
        let f = parse([
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "web",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "default");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert_eq!(f.id, "web");
        assert!(f.debug);
        assert_eq!(f.action, Some(Action::Start));
    }

    #[test]
    fn accepts_go_flag_spellings() {
        let f = parse(["--namespace=edge", "-bundle=/b", "-debug=false", "delete"]).unwrap();
        assert_eq!((f.namespace.as_str(), f.bundle.as_str()), ("edge", "/b"));
        assert!(!f.debug);
        assert_eq!(f.action, Some(Action::Delete));
        assert_eq!(parse(["-v"]).unwrap().action, Some(Action::Version));
        assert_eq!(parse(["--help"]).unwrap().action, Some(Action::Help));
        assert_eq!(
            parse(Vec::<String>::new()).unwrap().action,
            Some(Action::Serve)
        );
    }

    #[test]
    fn refuses_what_go_would_refuse() {
        assert!(parse(["-nope"])
            .unwrap_err()
            .0
            .contains("not defined: -nope"));
        assert!(parse(["-id"]).unwrap_err().0.contains("needs an argument"));
        assert!(parse(["-debug=maybe"]).is_err());
        assert!(parse(["frobnicate"])
            .unwrap_err()
            .0
            .contains("unknown action"));
    }
}
