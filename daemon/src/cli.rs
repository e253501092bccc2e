//! corrald's command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{log_level, Config, DEFAULT_CONFIG_PATH};

/// The daemon root when none is given (containerd's is `/var/lib/containerd`).
pub const DEFAULT_ROOT: &str = crate::config::DEFAULT_ROOT;

/// corrald: containerd's API over ttrpc for small machines.
#[derive(Debug, Parser)]
#[command(
    name = "corrald",
    version = corral_protocols::version::VERSION,
    about = "corrald: containerd's API over ttrpc for small machines",
    long_about = "corrald serves containerd's API (namespaces, containers, images, content, \
                  leases, snapshots, diff, tasks, events, version, introspection) over ttrpc, \
                  keeping its metadata in a bolt file laid out like containerd's meta.db.\n\n\
                  Without a command it runs the daemon; flags override the configuration \
                  file. `corrald config default` prints the default configuration; \
                  `corrald db` reads a meta.db (Corral's or containerd's).",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version.
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    /// The configuration file (containerd's version 2 format).
    #[arg(short = 'c', long, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// The persistent root (config `root`).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The runtime state directory (config `state`).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The socket to serve on (config `[ttrpc] address`).
    #[arg(short = 'a', long, value_name = "ADDRESS")]
    pub address: Option<String>,
    /// trace, debug, info, warn or error (config `[debug] level`).
    #[arg(short = 'l', long, value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

fn parse_level(s: &str) -> Result<String, String> {
    match log_level(s) {
        Some(_) => Ok(s.to_string()),
        None => Err(format!(
            "unknown level (one of {})",
            crate::config::LOG_LEVELS.join(", ")
        )),
    }
}

impl Cli {
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

/// corrald's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work with the metadata database (meta.db).
    #[command(subcommand)]
    Db(DbCommand),
}

/// `corrald config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration.
    Default,
}

/// `corrald db ...`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Print the whole bolt tree of meta.db, one bucket or key a line.
    Dump(DbTarget),
    /// Check meta.db's bolt structure and containerd's schema; exits 1 on problems.
    Check(DbTarget),
}

/// Which file: `--file`, or the meta.db under `--root`.
#[derive(Debug, Args)]
pub struct DbTarget {
    /// The database file itself.
    #[arg(long, conflicts_with = "root")]
    pub file: Option<PathBuf>,
    /// A daemon root (corrald's or containerd's); its io.containerd.metadata.v1.bolt/meta.db.
    #[arg(long)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_targets() {
        let cli = Cli::try_parse_from(["corrald", "db", "dump", "--root", "/var/lib/containerd"])
            .unwrap();
        let Some(Command::Db(DbCommand::Dump(t))) = cli.command else {
            panic!("parsed {cli:?}")
        };
        assert_eq!(
            t.path(),
            PathBuf::from("/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db")
        );
        assert!(
            Cli::try_parse_from(["corrald", "db", "check", "--file", "a", "--root", "b"]).is_err()
        );
    }

    #[test]
    fn flags_override_the_file() {
        let cli = Cli::try_parse_from([
            "corrald",
            "--root",
            "/r",
            "--state",
            "/s",
            "-a",
            "/s/x.sock",
            "-l",
            "debug",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.config, PathBuf::from(DEFAULT_CONFIG_PATH));
        let mut config = Config::default();
        cli.apply(&mut config);
        assert_eq!(config.root, PathBuf::from("/r"));
        assert_eq!(config.state, PathBuf::from("/s"));
        assert_eq!(config.ttrpc.address, "/s/x.sock");
        assert_eq!(config.debug.level, "debug");
        assert!(Cli::try_parse_from(["corrald", "--log-level", "loud"]).is_err());
        let cli = Cli::try_parse_from(["corrald", "config", "default"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Config(ConfigCommand::Default))
        ));
    }
}
