//! corralctl's entry point: parse, run one command, print `corralctl: <message>` on failure.

use std::process::ExitCode;

use clap::Parser;
use corral_ctl::cli::{self, Cli, Command};
use corral_ctl::commands::tasks::ExitStatus;
use corral_ctl::commands::{self, CtlResult, Env};
use corral_ctl::version;
use corral_protocols::rpc::CallContext;

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::ctr_args(std::env::args_os()));
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
    let env = Env::new(cli.address, cli.namespace, ctx);
    match run(&env, cli.command) {
        // As Go's os.Exit does with a process's status: only its low byte reaches the parent.
        Ok(status) => ExitCode::from((status & 0xff) as u8),
        Err(e) => {
            eprintln!("corralctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command`; the status to exit with (a task's exit status for `run` and the task
/// commands that wait for one, else 0).
fn run(env: &Env, command: Command) -> CtlResult<ExitStatus> {
    let done = |r: CtlResult| r.map(|()| 0);
    match command {
        Command::Run(cmd) => commands::run::run(env, &cmd),
        Command::Tasks(cmd) => commands::tasks::run(env, cmd),
        Command::Version => {
            print!("{}", version::client_section());
            let server = version::server_section(&env.address, &env.ctx)
                .map_err(|e| commands::CtlError::new(e.to_string()))?;
            println!();
            print!("{server}");
            Ok(0)
        }
        Command::Namespaces(cmd) => done(commands::namespaces::run(env, cmd)),
        Command::Containers(cmd) => done(commands::containers::run(env, cmd)),
        Command::Images(cmd) => done(commands::images::run(env, cmd)),
        Command::Content(cmd) => done(commands::content::run(env, cmd)),
        Command::Snapshots(cmd) => done(commands::snapshots::run(env, cmd)),
        Command::Leases(cmd) => done(commands::leases::run(env, cmd)),
        Command::Events { filters } => done(commands::events::run(env, filters)),
        Command::Info => done(commands::info::run(env)),
        Command::Plugins(cmd) => done(commands::plugins::run(env, cmd)),
    }
}
