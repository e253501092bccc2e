//! corralctl's global flags and commands, named as `ctr` names them.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::commands::containers::ContainersCommand;
use crate::commands::content::ContentCommand;
use crate::commands::images::ImagesCommand;
use crate::commands::leases::LeasesCommand;
use crate::commands::namespaces::NamespacesCommand;
use crate::commands::plugins::PluginsCommand;
use crate::commands::snapshots::SnapshotsCommand;

/// The daemon socket when neither `--address` nor `CORRAL_ADDRESS` says otherwise.
pub const DEFAULT_ADDRESS: &str = "/run/corral/corral.sock";

/// corralctl: drive corrald the way ctr drives containerd.
#[derive(Debug, Parser)]
#[command(
    name = "corralctl",
    version = corral_protocols::version::VERSION,
    about = "corralctl: a ctr-shaped command line for corrald",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version.
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    /// Address of corrald's ttrpc socket.
    #[arg(short = 'a', long, env = "CORRAL_ADDRESS", default_value = DEFAULT_ADDRESS, global = true)]
    pub address: String,
    /// Namespace to work in.
    #[arg(
        short = 'n',
        long,
        env = "CORRAL_NAMESPACE",
        default_value = "default",
        global = true
    )]
    pub namespace: String,
    /// Timeout for each call to corrald (e.g. 10s, 500ms, 2m); none by default.
    #[arg(long, value_parser = parse_duration, global = true)]
    pub timeout: Option<Duration>,
    /// Log debug information.
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands this version has, named and aliased as `ctr` names them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// provides information about corrald plugins
    #[command(visible_alias = "plugin", subcommand)]
    Plugins(PluginsCommand),
    /// print the client and server versions
    Version,
    /// manage containers
    #[command(visible_aliases = ["c", "container"], subcommand)]
    Containers(ContainersCommand),
    /// manage content
    #[command(subcommand)]
    Content(ContentCommand),
    /// display corrald events
    #[command(visible_alias = "event")]
    Events {
        /// Filters, as containerd reads them (e.g. topic~=/namespaces/).
        filters: Vec<String>,
    },
    /// manage images
    #[command(visible_aliases = ["image", "i"], subcommand)]
    Images(ImagesCommand),
    /// print the server info
    Info,
    /// manage leases
    #[command(subcommand)]
    Leases(LeasesCommand),
    /// manage namespaces
    #[command(visible_aliases = ["namespace", "ns"], subcommand)]
    Namespaces(NamespacesCommand),
    /// manage snapshots
    #[command(visible_alias = "snapshot")]
    Snapshots(SnapshotsCommand),
}

/// Go durations (`10s`, `1.5m`, `1h30m`, `0`), read as ctr reads them.
pub use corral_protocols::duration::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10y").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(
            parse_duration("1m0.5s").unwrap(),
            Duration::from_millis(60_500)
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1h30").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn nouns_and_verbs_take_ctrs_aliases() {
        for args in [
            &["corralctl", "ns", "ls", "-q"][..],
            &["corralctl", "namespace", "rm", "a", "b"],
            &["corralctl", "c", "rm", "--keep-snapshot", "web"],
            &["corralctl", "container", "del", "web"],
            &["corralctl", "containers", "remove", "web"],
            &["corralctl", "c", "ls", "labels.app==web"],
            &["corralctl", "leases", "rm", "--sync", "l1"],
            &[
                "corralctl",
                "leases",
                "create",
                "--id",
                "l1",
                "--expires",
                "1h",
                "a=b",
            ],
            &["corralctl", "event"],
            &["corralctl", "plugin", "ls", "-d"],
            &["corralctl", "info"],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(Cli::try_parse_from(["corralctl", "leases", "create", "--expires", "1y"]).is_err());
        assert!(Cli::try_parse_from(["corralctl", "ns", "rm"]).is_err());
    }

    #[test]
    fn global_flags_parse_before_and_after_the_command() {
        let cli =
            Cli::try_parse_from(["corralctl", "-n", "edge", "version", "-a", "/tmp/s"]).unwrap();
        assert_eq!(cli.namespace, "edge");
        assert_eq!(cli.address, "/tmp/s");
    }
}
