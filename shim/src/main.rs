//! containerd-shim-corral-v2's entry point.

use std::process::ExitCode;

use corral_protocols::version::{REVISION, VERSION};
use corral_shim::flags::{self, Action, USAGE};

const NAME: &str = "containerd-shim-corral-v2";

fn main() -> ExitCode {
    let parsed = match flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{NAME}: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match parsed.action {
        Some(Action::Version) => {
            println!("{NAME}:\n  Version:  {VERSION}\n  Revision: {REVISION}\n  Runtime:  io.containerd.corral.v2");
            ExitCode::SUCCESS
        }
        Some(Action::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(Action::Start) | Some(Action::Delete) | Some(Action::Serve) | None => {
            eprintln!(
                "{NAME}: running containers is not implemented in this version ({VERSION}); \
                 only -v and -h work"
            );
            ExitCode::FAILURE
        }
    }
}
