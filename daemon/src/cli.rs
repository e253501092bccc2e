//! corrald's command line: a handful of flags and two small commands, read with `lexopt`
//! (clap cost the daemon about 200 KiB of resident code for five flags).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{log_level, Config, DEFAULT_CONFIG_PATH, LOG_LEVELS};

/// The daemon root when none is given (containerd's is `/var/lib/containerd`).
pub const DEFAULT_ROOT: &str = crate::config::DEFAULT_ROOT;

/// `corrald --help`.
pub const HELP: &str = "\
corrald: containerd's API over ttrpc for small machines

corrald serves containerd's API (namespaces, containers, images, content, leases,
snapshots, diff, tasks, events, version, introspection) over ttrpc, keeping its metadata
in a bolt file laid out like containerd's meta.db.

Without a command it runs the daemon; flags override the configuration file.

Usage: corrald [OPTIONS] [COMMAND]

Commands:
  config default            print the default configuration
  db dump [--file F | --root DIR]
                            print the whole bolt tree of meta.db, one bucket or key a line
  db check [--file F | --root DIR]
                            check meta.db's bolt structure and containerd's schema
                            (exits 1 on problems)
  help                      print this help

Options:
  -c, --config <FILE>       the configuration file (containerd's version 2 format)
                            [default: /etc/corral/config.toml]
      --root <DIR>          the persistent root (config `root`)
      --state <DIR>         the runtime state directory (config `state`)
  -a, --address <ADDRESS>   the socket to serve on (config `[ttrpc] address`)
  -l, --log-level <LEVEL>   trace, debug, info, warn, error (and containerd's warning,
                            fatal, panic) (config `[debug] level`)
  -h, --help                print this help
  -v, --version             print the version
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run the daemon, or one of its commands.
    Run(Cli),
    Help,
    Version,
}

/// corrald's flags and command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// The configuration file (containerd's version 2 format).
    pub config: PathBuf,
    /// The persistent root (config `root`).
    pub root: Option<PathBuf>,
    /// The runtime state directory (config `state`).
    pub state: Option<PathBuf>,
    /// The socket to serve on (config `[ttrpc] address`).
    pub address: Option<String>,
    /// trace, debug, info, warn or error (config `[debug] level`).
    pub log_level: Option<String>,
    pub command: Option<Command>,
}

/// corrald's commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Work with the configuration file.
    Config(ConfigCommand),
    /// Work with the metadata database (meta.db).
    Db(DbCommand),
}

/// `corrald config ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigCommand {
    /// Print the default configuration.
    Default,
}

/// `corrald db ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbCommand {
    /// Print the whole bolt tree of meta.db, one bucket or key a line.
    Dump(DbTarget),
    /// Check meta.db's bolt structure and containerd's schema; exits 1 on problems.
    Check(DbTarget),
}

/// Which file: `--file`, or the meta.db under `--root`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbTarget {
    /// The database file itself.
    pub file: Option<PathBuf>,
    /// A daemon root (corrald's or containerd's); its io.containerd.metadata.v1.bolt/meta.db.
    pub root: Option<PathBuf>,
}

impl DbTarget {
    /// The file named.
    pub fn path(&self) -> PathBuf {
        match (&self.file, &self.root) {
            (Some(f), _) => f.clone(),
            (None, Some(r)) => crate::metadata::schema::db_path(r),
            (None, None) => crate::metadata::schema::db_path(std::path::Path::new(DEFAULT_ROOT)),
        }
    }
}

/// A command line that does not parse; corrald prints it with a pointer to `--help` and
/// exits 2, as clap-based tools do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(e.to_string())
    }
}

fn text(v: OsString, what: &str) -> Result<String, UsageError> {
    v.into_string()
        .map_err(|v| UsageError(format!("{what}: {v:?} is not valid UTF-8")))
}

impl Cli {
    /// Reads the process's own command line.
    pub fn from_env() -> Result<Invocation, UsageError> {
        Self::parse_from(std::env::args_os().skip(1))
    }

    /// Reads `args` (without the program name).
    pub fn parse_from<I>(args: I) -> Result<Invocation, UsageError>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        use lexopt::prelude::*;
        let mut p = lexopt::Parser::from_args(args);
        let mut cli = Cli {
            config: PathBuf::from(DEFAULT_CONFIG_PATH),
            root: None,
            state: None,
            address: None,
            log_level: None,
            command: None,
        };
        let mut words: Vec<String> = Vec::new();
        let mut db = DbTarget::default();
        while let Some(arg) = p.next()? {
            match arg {
                Short('h') | Long("help") => return Ok(Invocation::Help),
                Short('v') | Long("version") => return Ok(Invocation::Version),
                Short('c') | Long("config") => cli.config = p.value()?.into(),
                Long("root") if words.first().map(String::as_str) == Some("db") => {
                    db.root = Some(p.value()?.into())
                }
                Long("file") if words.first().map(String::as_str) == Some("db") => {
                    db.file = Some(p.value()?.into())
                }
                Long("root") => cli.root = Some(p.value()?.into()),
                Long("state") => cli.state = Some(p.value()?.into()),
                Short('a') | Long("address") => cli.address = Some(text(p.value()?, "--address")?),
                Short('l') | Long("log-level") => {
                    let level = text(p.value()?, "--log-level")?;
                    if log_level(&level).is_none() {
                        return Err(UsageError(format!(
                            "invalid value {level:?} for --log-level: unknown level (one of {})",
                            LOG_LEVELS.join(", ")
                        )));
                    }
                    cli.log_level = Some(level);
                }
                Value(v) => words.push(text(v, "command")?),
                _ => return Err(arg.unexpected().into()),
            }
        }
        if db.file.is_some() && db.root.is_some() {
            return Err(UsageError(
                "--file and --root cannot be used together".into(),
            ));
        }
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        cli.command = match words.as_slice() {
            [] => None,
            ["help"] => return Ok(Invocation::Help),
            ["config", "default"] => Some(Command::Config(ConfigCommand::Default)),
            ["db", "dump"] => Some(Command::Db(DbCommand::Dump(db))),
            ["db", "check"] => Some(Command::Db(DbCommand::Check(db))),
            _ => {
                return Err(UsageError(format!(
                    "unknown command {:?}; commands: config default, db dump, db check",
                    words.join(" ")
                )))
            }
        };
        Ok(Invocation::Run(cli))
    }

    /// Loads the configuration file (a missing file at the default path means the
    /// defaults) and applies the flags over it.
    pub fn load_config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = Config::load(&self.config)?;
        self.apply(&mut config);
        Ok(config)
    }

    /// Applies the flags over `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(root) = &self.root {
            config.root = absolute(root);
        }
        if let Some(state) = &self.state {
            config.state = absolute(state);
        }
        if let Some(address) = &self.address {
            config.ttrpc.address = address.clone();
        }
        if let Some(level) = &self.log_level {
            config.debug.level = level.clone();
        }
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Cli {
        match Cli::parse_from(args.iter().copied()).unwrap() {
            Invocation::Run(cli) => cli,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn db_targets() {
        let cli = run(&["db", "dump", "--root", "/var/lib/containerd"]);
        let Some(Command::Db(DbCommand::Dump(t))) = cli.command else {
            panic!("parsed {cli:?}")
        };
        assert_eq!(
            t.path(),
            PathBuf::from("/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db")
        );
        assert!(cli.root.is_none(), "db's --root is not the daemon's");
        let Some(Command::Db(DbCommand::Check(t))) = run(&["db", "check", "--file", "x"]).command
        else {
            panic!()
        };
        assert_eq!(t.path(), PathBuf::from("x"));
        assert!(Cli::parse_from(["db", "check", "--file", "a", "--root", "b"]).is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let cli = run(&[
            "--root",
            "/r",
            "--state",
            "/s",
            "-a",
            "/s/x.sock",
            "-l",
            "debug",
        ]);
        assert!(cli.command.is_none());
        assert_eq!(cli.config, PathBuf::from(DEFAULT_CONFIG_PATH));
        let mut config = Config::default();
        cli.apply(&mut config);
        assert_eq!(config.root, PathBuf::from("/r"));
        assert_eq!(config.state, PathBuf::from("/s"));
        assert_eq!(config.ttrpc.address, "/s/x.sock");
        assert_eq!(config.debug.level, "debug");
        assert_eq!(
            run(&["--config=/etc/x.toml"]).config,
            PathBuf::from("/etc/x.toml")
        );
        assert_eq!(
            run(&["config", "default"]).command,
            Some(Command::Config(ConfigCommand::Default))
        );
    }

    #[test]
    fn help_version_and_usage_errors() {
        assert_eq!(Cli::parse_from(["--help"]), Ok(Invocation::Help));
        assert_eq!(Cli::parse_from(["-h"]), Ok(Invocation::Help));
        assert_eq!(Cli::parse_from(["help"]), Ok(Invocation::Help));
        assert_eq!(Cli::parse_from(["-v"]), Ok(Invocation::Version));
        for bad in [
            &["--log-level", "loud"][..],
            &["--bogus"],
            &["--root"],
            &["config"],
            &["db", "repair"],
            &["serve"],
        ] {
            let e = Cli::parse_from(bad.iter().copied()).unwrap_err();
            assert!(!e.0.is_empty(), "{bad:?}");
        }
        let e = Cli::parse_from(["--log-level", "loud"]).unwrap_err();
        assert!(e.0.contains("one of trace, debug, info, warn"), "{e}");
    }
}
