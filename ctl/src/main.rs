//! corralctl's entry point: parse, run one command, print `corralctl: <message>` on failure.

use std::process::ExitCode;

use clap::Parser;
use corral_ctl::cli::{Cli, Command};
use corral_ctl::commands::{self, CtlResult, Env};
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
        .format_target(false)
        .format_timestamp(None)
        .init();
    let mut ctx = CallContext::new().with_namespace(&cli.namespace);
    if let Some(t) = cli.timeout {
        ctx = ctx.with_timeout(t);
    }
    let env = Env {
        address: cli.address,
        namespace: cli.namespace,
        ctx,
    };
    match run(&env, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corralctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(env: &Env, command: Command) -> CtlResult {
    match command {
        Command::Version => {
            print!("{}", version::client_section());
            let server = version::server_section(&env.address, &env.ctx)
                .map_err(|e| commands::CtlError::new(e.to_string()))?;
            println!();
            print!("{server}");
            Ok(())
        }
        Command::Namespaces(cmd) => commands::namespaces::run(env, cmd),
        Command::Containers(cmd) => commands::containers::run(env, cmd),
        Command::Images(cmd) => commands::images::run(env, cmd),
        Command::Content(cmd) => commands::content::run(env, cmd),
        Command::Snapshots(cmd) => commands::snapshots::run(env, cmd),
        Command::Leases(cmd) => commands::leases::run(env, cmd),
        Command::Events { filters } => commands::events::run(env, filters),
        Command::Info => commands::info::run(env),
        Command::Plugins(cmd) => commands::plugins::run(env, cmd),
    }
}
