//! containerd-shim-corral-v2's entry point.

use std::io::Write;
use std::process::ExitCode;

use corral_protocols::version::{REVISION, VERSION};
use corral_shim::flags::{self, Action, Flags, USAGE};
use corral_shim::{delete, server, start};
use protobuf::Message;

const NAME: &str = "containerd-shim-corral-v2";

fn init_log(flags: &Flags) {
    let level = if flags.debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp_micros()
        .init();
}

fn run(flags: &Flags, action: &Action) -> Result<(), String> {
    match action {
        Action::Version => {
            println!("{NAME}:\n  Version:  {VERSION}\n  Revision: {REVISION}\n  Runtime:  io.containerd.corral.v2");
            Ok(())
        }
        Action::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Action::Start => {
            let bundle = std::env::current_dir().map_err(|e| format!("bundle directory: {e}"))?;
            let options =
                start::read_stdin().map_err(|e| format!("reading options on stdin: {e}"))?;
            let printed = start::start(flags, &start::StartEnv::from_env(), &bundle, &options)
                .map_err(|e| format!("start: {e}"))?;
            print!("{printed}");
            Ok(())
        }
        Action::Delete => {
            let bundle = if flags.bundle.is_empty() {
                std::env::current_dir().map_err(|e| format!("bundle directory: {e}"))?
            } else {
                flags.bundle.clone().into()
            };
            let resp = delete::delete(flags, &bundle).map_err(|e| format!("delete: {e}"))?;
            let bytes = resp.write_to_bytes().map_err(|e| format!("delete: {e}"))?;
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| format!("delete: writing the response: {e}"))
        }
        Action::Serve => server::serve(flags).map_err(|e| format!("serve: {e}")),
    }
}

fn main() -> ExitCode {
    let parsed = match flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{NAME}: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_log(&parsed);
    let action = parsed.action.clone().unwrap_or(Action::Serve);
    match run(&parsed, &action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            ExitCode::FAILURE
        }
    }
}
