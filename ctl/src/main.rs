//! corralctl's entry point: parse, run one command, print `corralctl: <message>` on failure.

use std::process::ExitCode;

use clap::Parser;
use corral_ctl::cli::{Cli, Command};
use corral_ctl::version;
use corral_protocols::rpc::CallContext;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(if cli.debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        })
        .init();
    let mut ctx = CallContext::new().with_namespace(&cli.namespace);
    if let Some(t) = cli.timeout {
        ctx = ctx.with_timeout(t);
    }
    match cli.command {
        Command::Version => {
            print!("{}", version::client_section());
            match version::server_section(&cli.address, &ctx) {
                Ok(server) => {
                    println!();
                    print!("{server}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("corralctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
