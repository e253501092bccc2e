//! corralctl's global flags and commands, named as `ctr` names them.

use std::time::Duration;

use clap::{Parser, Subcommand};

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

/// The commands this version has.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the client and server versions.
    Version,
}

/// Reads a Go-style duration: a number with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {s:?} needs a unit (ns, us, ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?}: {num:?} is not a number"))?;
    let secs = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("duration {s:?}: unknown unit {other:?}")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("duration {s:?}: {e}"))
}

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
    }

    #[test]
    fn global_flags_parse_before_and_after_the_command() {
        let cli =
            Cli::try_parse_from(["corralctl", "-n", "edge", "version", "-a", "/tmp/s"]).unwrap();
        assert_eq!(cli.namespace, "edge");
        assert_eq!(cli.address, "/tmp/s");
    }
}
