//! corrald's entry point.

use std::process::ExitCode;

use clap::Parser;
use corral_daemon::cli::Cli;

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!(
        "corrald: serving is not implemented in this version ({}); try --help",
        corral_protocols::version::VERSION
    );
    ExitCode::FAILURE
}
