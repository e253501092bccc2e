//! corrald's entry point.

use std::process::ExitCode;

use corral_daemon::cli::{Cli, Command, ConfigCommand, DbCommand, Invocation, HELP};
use corral_daemon::config::Config;
use corral_daemon::metadata::bolt::{open_db, OpenMode};
use corral_daemon::metadata::{check, dump};

fn db(cmd: &DbCommand) -> Result<ExitCode, String> {
    let (DbCommand::Dump(target) | DbCommand::Check(target)) = cmd;
    let path = target.path();
    if !path.exists() {
        return Err(format!("{}: no such file", path.display()));
    }
    let db = open_db(&path, OpenMode::ReadOnly).map_err(|e| e.to_string())?;
    match cmd {
        DbCommand::Dump(_) => {
            dump::dump(&db, &mut std::io::stdout().lock()).map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Check(_) => {
            let problems = check::check(&db).map_err(|e| e.to_string())?;
            if problems.is_empty() {
                println!("{}: ok", path.display());
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    println!("{}: {p}", path.display());
                }
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("corrald: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = match Cli::from_env() {
        Ok(Invocation::Run(cli)) => cli,
        Ok(Invocation::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!(
                "corrald {} (revision {})",
                corral_protocols::version::VERSION,
                corral_protocols::version::REVISION
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("corrald: {e}\n\nFor more information, try 'corrald --help'.");
            return ExitCode::from(2);
        }
    };
    match &cli.command {
        Some(Command::Config(ConfigCommand::Default)) => {
            print!("{}", Config::default_toml());
            ExitCode::SUCCESS
        }
        Some(Command::Db(cmd)) => db(cmd).unwrap_or_else(fail),
        None => {
            let config = match cli.load_config() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match corral_daemon::server::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}
