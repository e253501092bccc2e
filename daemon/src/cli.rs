//! corrald's command line.

use clap::Parser;

/// corrald: containerd's API over ttrpc for small machines.
#[derive(Debug, Parser)]
#[command(
    name = "corrald",
    version = corral_protocols::version::VERSION,
    about = "corrald: containerd's API over ttrpc for small machines",
    long_about = "corrald serves containerd's API (namespaces, containers, images, content, \
                  leases, snapshots, diff, tasks, events, version, introspection) over ttrpc, \
                  keeping its metadata in a bolt file laid out like containerd's meta.db.\n\n\
                  This version does not serve yet: it only answers --version and --help.",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version.
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    pub version: Option<bool>,
}
