//! `corralctl run`: ctr 1.6's `run` (cmd/ctr/commands/run/run.go): a container created as
//! `containers create` makes it (with `run`'s 1024 cpu shares), its task created with IO,
//! waited for, started, and then either left running (`--detach`) or followed until it
//! exits, deleted, and (with `--rm`) the container removed with its snapshot. corralctl
//! exits with the task's exit status.

use clap::Args;

use super::container_flags::{ContainerArgs, ContainerFlags, Target};
use super::containers::{delete_container, remove_container};
use super::new_container::{container_record, Created};
use super::tasks::{start_new_task, ExitStatus, StartFlags};
use super::{CtlError, CtlResult, Env};
use crate::cio::signals::Signals;

/// `cpu-shares` when `run` is not given `--cpu-shares` (ctr's flag default).
pub const RUN_CPU_SHARES: i64 = 1024;

/// `run`'s flags and arguments: its own, then the container's.
#[derive(Debug, Clone, Args)]
pub struct RunCommand {
    /// remove the container after running, cannot be used with --detach
    #[arg(long)]
    pub rm: bool,
    /// send all IO to /dev/null
    #[arg(long = "null-io")]
    pub null_io: bool,
    /// log uri
    #[arg(long = "log-uri", value_name = "URI")]
    pub log_uri: Option<String>,
    /// detach from the task after it has started execution, cannot be used with --rm
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// directory used for storing IO FIFOs
    #[arg(long = "fifo-dir", value_name = "DIR")]
    pub fifo_dir: Option<String>,
    /// What the container is made of.
    #[command(flatten)]
    pub flags: ContainerFlags,
    /// `IMAGE|ROOTFS CONTAINER [COMMAND [ARG...]]`, or `CONTAINER` with `--config`.
    #[command(flatten)]
    pub args: ContainerArgs,
}

impl RunCommand {
    /// The positional arguments read as ctr's `run` reads them, with its messages (plain,
    /// unlike `containers create`'s), and its flag checks.
    pub fn target(&self) -> CtlResult<Target> {
        let args = &self.args;
        let target = if self.flags.config.is_some() {
            if args.id.is_some() || !args.command.is_empty() {
                return Err(CtlError::new(
                    "with spec config file, only container id should be provided",
                ));
            }
            Target::Config {
                id: args.reference.clone().unwrap_or_default(),
            }
        } else {
            let reference = args.reference.clone().unwrap_or_default();
            if reference.is_empty() {
                return Err(CtlError::new("image ref must be provided"));
            }
            Target::Reference {
                reference,
                id: args.id.clone().unwrap_or_default(),
                args: args.command.clone(),
            }
        };
        if target.id().is_empty() {
            return Err(CtlError::new("container id must be provided"));
        }
        if self.rm && self.detach {
            return Err(CtlError::new(
                "flags --detach and --rm cannot be specified together",
            ));
        }
        Ok(target)
    }
}

/// Runs the container; the status corralctl exits with.
pub fn run(env: &Env, cmd: &RunCommand) -> CtlResult<ExitStatus> {
    let target = cmd.target()?;
    // Before any thread exists (the connection's reader included), so all inherit the mask.
    let signals = Signals::start()?;
    let mut created = container_record(env, &cmd.flags, &target, RUN_CPU_SHARES)?;
    // The lease goes while the task is made: nothing the task needs waits for it.
    let releasing = created.release_lease_in_background();
    let result = run_container(env, cmd, &signals, &created);
    if let Some(releasing) = releasing {
        releasing.join();
    }
    if cmd.rm && !cmd.detach {
        let id = &created.record.id;
        let removed = env.connect().and_then(|conn| match result {
            // The task ran and was deleted: the record in hand is the container's.
            Ok(_) => remove_container(&conn, env, &created.record, false),
            Err(_) => delete_container(&conn, env, id, false),
        });
        if let Err(e) = removed {
            // ctr's deferred delete reports nothing; a leftover container is worth a line.
            log::warn!("removing container {id}: {e}");
        }
    }
    result
}

fn run_container(
    env: &Env,
    cmd: &RunCommand,
    signals: &Signals,
    created: &Created,
) -> CtlResult<ExitStatus> {
    let conn = env.connect()?;
    let flags = StartFlags {
        terminal: cmd.flags.tty,
        null_io: cmd.null_io,
        log_uri: cmd.log_uri.as_deref(),
        fifo_dir: cmd.fifo_dir.as_deref(),
        no_pivot: cmd.flags.no_pivot,
        detach: cmd.detach,
        pid_file: cmd.flags.pid_file.as_deref(),
        rootfs: created.rootfs.as_deref(),
    };
    start_new_task(&conn, env, &created.record, signals, &flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunCommand,
    }

    fn parse(args: &[&str]) -> RunCommand {
        Cmd::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .unwrap()
            .run
    }

    #[test]
    fn arguments_and_flags_are_checked_as_ctr_checks_them() {
        for (args, want) in [
            (&[][..], "image ref must be provided"),
            (&["/r"], "container id must be provided"),
            (
                &["--rm", "-d", "/r", "c"],
                "flags --detach and --rm cannot be specified together",
            ),
            (
                &["--config", "s.json", "c", "sh"],
                "with spec config file, only container id should be provided",
            ),
            (&["--config", "s.json"], "container id must be provided"),
        ] {
            assert_eq!(
                parse(args).target().unwrap_err().to_string(),
                want,
                "{args:?}"
            );
        }
        let cmd = parse(&[
            "--rm",
            "--null-io",
            "--fifo-dir",
            "/f",
            "--rootfs",
            "-t",
            "/r",
            "c",
            "sh",
            "-c",
            "echo hi; exit 3",
        ]);
        assert!(cmd.rm && cmd.null_io && cmd.flags.tty && cmd.flags.rootfs);
        assert_eq!(cmd.fifo_dir.as_deref(), Some("/f"));
        assert_eq!(
            cmd.target().unwrap(),
            Target::Reference {
                reference: "/r".into(),
                id: "c".into(),
                args: vec!["sh".into(), "-c".into(), "echo hi; exit 3".into()],
            }
        );
        let cmd = parse(&[
            "-d",
            "--log-uri",
            "file:///l",
            "--pid-file",
            "/p",
            "img",
            "c",
        ]);
        assert!(cmd.detach);
        assert_eq!(cmd.log_uri.as_deref(), Some("file:///l"));
        assert_eq!(cmd.flags.pid_file.as_deref(), Some("/p"));
        assert_eq!(
            cmd.flags.cpu_shares, None,
            "run's 1024 applies in container_record"
        );
    }
}
