//! corralctl's global flags and commands, named as `ctr` names them.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::commands::containers::ContainersCommand;
use crate::commands::content::ContentCommand;
use crate::commands::images::ImagesCommand;
use crate::commands::leases::LeasesCommand;
use crate::commands::namespaces::NamespacesCommand;
use crate::commands::plugins::PluginsCommand;
use crate::commands::run::RunCommand;
use crate::commands::snapshots::SnapshotsCommand;
use crate::commands::tasks::TasksCommand;

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
    /// run a container
    #[command(
        override_usage = "corralctl run [flags] IMAGE|ROOTFS CONTAINER [COMMAND] [ARG...]\n       corralctl run [flags] --config SPEC.json CONTAINER"
    )]
    Run(Box<RunCommand>),
    /// manage snapshots
    #[command(visible_alias = "snapshot")]
    Snapshots(SnapshotsCommand),
    /// manage tasks
    #[command(visible_aliases = ["t", "task"], subcommand)]
    Tasks(TasksCommand),
}

/// The command line with ctr's one short flag that clashes with a global one translated:
/// after `tasks kill`, `-a` is `--all` (ctr reads global flags only before the command, so
/// there `-a` names the address only in front of `tasks`).
pub fn ctr_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<OsString> {
    let mut out: Vec<OsString> = args.into_iter().collect();
    let takes_value =
        |a: &str| matches!(a, "-a" | "--address" | "-n" | "--namespace" | "--timeout");
    let mut noun = false;
    let mut i = 1;
    while i < out.len() {
        let arg = out[i].to_str().unwrap_or_default();
        if arg == "--" {
            break;
        }
        if arg.starts_with('-') {
            i += if takes_value(arg) { 2 } else { 1 };
            continue;
        }
        if !noun {
            if !matches!(arg, "tasks" | "task" | "t") {
                return out;
            }
            noun = true;
            i += 1;
            continue;
        }
        if arg != "kill" {
            return out;
        }
        for later in out.iter_mut().skip(i + 1) {
            if later == "--" {
                break;
            }
            if later == "-a" {
                *later = OsString::from("--all");
            }
        }
        break;
    }
    out
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
    fn run_and_tasks_take_ctrs_flags_and_aliases() {
        for args in [
            &[
                "corralctl",
                "run",
                "--rm",
                "--rootfs",
                "/r",
                "web",
                "sh",
                "-c",
                "exit 3",
            ][..],
            &[
                "corralctl",
                "run",
                "-d",
                "-t",
                "--fifo-dir",
                "/f",
                "img",
                "web",
            ],
            &[
                "corralctl",
                "run",
                "--null-io",
                "--cpu-shares",
                "512",
                "img",
                "web",
            ],
            &[
                "corralctl",
                "run",
                "--log-uri",
                "file:///l",
                "--pid-file",
                "/p",
                "i",
                "c",
            ],
            &["corralctl", "run", "--config", "spec.json", "web"],
            &["corralctl", "t", "ls", "-q"],
            &["corralctl", "task", "list"],
            &[
                "corralctl",
                "tasks",
                "start",
                "--null-io",
                "-d",
                "--no-pivot",
                "web",
            ],
            &[
                "corralctl",
                "tasks",
                "start",
                "--log-uri",
                "binary:///l",
                "--pid-file",
                "/p",
                "web",
            ],
            &["corralctl", "tasks", "attach", "web"],
            &[
                "corralctl",
                "t",
                "exec",
                "--exec-id",
                "e1",
                "-t",
                "--cwd",
                "/",
                "web",
                "sh",
                "-c",
                "id",
            ],
            &[
                "corralctl",
                "t",
                "exec",
                "--exec-id",
                "e1",
                "--user",
                "1000:1000",
                "-d",
                "web",
                "ls",
                "-l",
            ],
            &["corralctl", "t", "kill", "-s", "SIGUSR1", "--all", "web"],
            &[
                "corralctl",
                "t",
                "kill",
                "--signal",
                "9",
                "--exec-id",
                "e1",
                "web",
            ],
            &["corralctl", "t", "ps", "web"],
            &["corralctl", "t", "pause", "web"],
            &["corralctl", "t", "resume", "web"],
            &["corralctl", "t", "metrics", "--format", "json", "web"],
            &["corralctl", "t", "metric", "web"],
            &["corralctl", "t", "rm", "-f", "a", "b"],
            &["corralctl", "t", "del", "--exec-id", "e1", "web"],
            &["corralctl", "t", "remove", "web"],
            &["corralctl", "t", "delete", "web"],
            &[
                "corralctl",
                "t",
                "checkpoint",
                "--exit",
                "--image-path",
                "/c",
                "web",
            ],
        ] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        // An exec needs its id.
        assert!(Cli::try_parse_from(["corralctl", "t", "exec", "web", "sh"]).is_err());
        // The command's own flags belong to it.
        let cli = Cli::try_parse_from([
            "corralctl",
            "t",
            "exec",
            "--exec-id",
            "e",
            "web",
            "sh",
            "-c",
            "x",
            "--cwd",
            "/",
        ])
        .unwrap();
        let Command::Tasks(crate::commands::tasks::TasksCommand::Exec(e)) = cli.command else {
            panic!("not an exec");
        };
        assert_eq!(e.args, ["sh", "-c", "x", "--cwd", "/"]);
        assert_eq!(e.cwd, None);
        let cli =
            Cli::try_parse_from(["corralctl", "run", "--rm", "/r", "web", "ls", "-l"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not a run");
        };
        assert!(run.rm);
        assert_eq!(run.args.command, ["ls", "-l"]);
    }

    #[test]
    fn kill_takes_ctrs_short_all_flag() {
        let parse = |args: &[&str]| {
            let args = ctr_args(args.iter().map(OsString::from));
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Tasks(crate::commands::tasks::TasksCommand::Kill(k)) = cli.command else {
                panic!("not a kill");
            };
            (cli.address, k)
        };
        let (address, k) = parse(&["corralctl", "-a", "/s", "t", "kill", "-a", "-s", "9", "web"]);
        assert_eq!(address, "/s");
        assert!(k.all);
        assert_eq!(k.id.as_deref(), Some("web"));
        let (_, k) = parse(&["corralctl", "-n", "t", "tasks", "kill", "web"]);
        assert!(!k.all);
        // Elsewhere `-a` stays the address.
        let args = ctr_args(["corralctl", "c", "ls", "-a", "/s"].map(OsString::from));
        assert_eq!(args[3], "-a");
        let args = ctr_args(["corralctl", "t", "ls", "-a", "/s"].map(OsString::from));
        assert_eq!(args[3], "-a");
    }

    #[test]
    fn global_flags_parse_before_and_after_the_command() {
        let cli =
            Cli::try_parse_from(["corralctl", "-n", "edge", "version", "-a", "/tmp/s"]).unwrap();
        assert_eq!(cli.namespace, "edge");
        assert_eq!(cli.address, "/tmp/s");
    }
}
