//! corrald's command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The daemon root when none is given (containerd's is `/var/lib/containerd`).
pub const DEFAULT_ROOT: &str = "/var/lib/corral";

/// corrald: containerd's API over ttrpc for small machines.
#[derive(Debug, Parser)]
#[command(
    name = "corrald",
    version = corral_protocols::version::VERSION,
    about = "corrald: containerd's API over ttrpc for small machines",
    long_about = "corrald serves containerd's API (namespaces, containers, images, content, \
                  leases, snapshots, diff, tasks, events, version, introspection) over ttrpc, \
                  keeping its metadata in a bolt file laid out like containerd's meta.db.\n\n\
                  This version does not serve yet; `corrald db` reads a meta.db \
                  (Corral's or containerd's).",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version.
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// corrald's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with the metadata database (meta.db).
    #[command(subcommand)]
    Db(DbCommand),
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
}
