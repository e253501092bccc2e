//! corrald's Tasks service over real shims and runc, on the wire: a task's whole life with
//! its events, containerd's error codes, a shim killed under a task, corrald killed while
//! tasks run (and one exits meanwhile), and containerd's Go shim under corrald.
//!
//! Containers use a busybox root filesystem directory (`containers create --rootfs`), so
//! these tests need no image store; `corralctl run` is tested in corralctl_run.rs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_protocols::events::task::TaskExit;
use corral_protocols::rpc::{CallContext, Client, Code};
use corral_protocols::services::containers::v1::containers::GetContainerRequest;
use corral_protocols::services::containers::v1::containers_rpc::ContainersClient;
use corral_protocols::services::events::v1::events::{PublishRequest, SubscribeRequest};
use corral_protocols::services::events::v1::events_rpc::EventsClient;
use corral_protocols::services::tasks::v1::tasks::*;
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;
use corral_protocols::types::task::task::{Process, Status as TaskStatus};
use corral_tests::ctl::ok;
use corral_tests::harness::cgroups::NamespaceCgroups;
use corral_tests::harness::procs::ProcessInfo;
use corral_tests::harness::{
    mounts_under, require_root, require_tool, wait_for, wait_for_some, Corrald, TempRoot,
};
use protobuf::Message;

const NS: &str = "tasks-test";
const DEADLINE: Duration = Duration::from_secs(20);

struct Env {
    d: Option<Corrald>,
    rootfs: PathBuf,
    cgroups: NamespaceCgroups,
    temp: TempRoot,
}

impl Env {
    fn start(private_run: bool) -> Option<Env> {
        if !require_root("runs containers") || require_tool("runc").is_none() {
            return None;
        }
        let cgroups = NamespaceCgroups::watch(NS).unwrap();
        let temp = TempRoot::new().unwrap();
        let rootfs = temp.join("rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        corral_tests::oci_archive::busybox_rootfs(&rootfs, &temp.join("scratch"));
        let d = if private_run {
            Corrald::start_private_run(&temp, "corrald.log", "[debug]\nlevel = \"debug\"\n")
        } else {
            Corrald::start(&temp, "corrald.log", "[debug]\nlevel = \"debug\"\n")
        }
        .unwrap();
        Some(Env {
            d: Some(d),
            rootfs,
            cgroups,
            temp,
        })
    }

    fn d(&self) -> &Corrald {
        self.d.as_ref().expect("corrald is running")
    }

    fn tasks(&self) -> TasksClient {
        TasksClient::new(self.d().client().unwrap())
    }

    fn ctx() -> CallContext {
        Corrald::ctx(NS)
    }

    /// `corralctl c create --rootfs` a container running `args`.
    fn container(&self, id: &str, flags: &[&str], args: &[&str]) {
        let rootfs = self.rootfs.to_str().unwrap();
        let mut argv = vec!["c", "create", "--rootfs"];
        argv.extend_from_slice(flags);
        argv.push(rootfs);
        argv.push(id);
        argv.extend_from_slice(args);
        ok(self.d().socket(), NS, &argv);
    }

    fn create_task(&self, id: &str) -> Result<u32, corral_protocols::rpc::Status> {
        let out = self.temp.join(format!("{id}.out"));
        let req = CreateTaskRequest {
            container_id: id.into(),
            stdout: format!("file://{}", out.display()),
            stderr: format!("file://{}", out.display()),
            ..Default::default()
        };
        self.tasks().create(&Self::ctx(), &req).map(|r| r.pid)
    }

    fn output(&self, id: &str) -> String {
        fs::read_to_string(self.temp.join(format!("{id}.out"))).unwrap_or_default()
    }

    fn state(&self, id: &str) -> Result<Process, corral_protocols::rpc::Status> {
        let req = GetRequest {
            container_id: id.into(),
            ..Default::default()
        };
        self.tasks()
            .get(&Self::ctx(), &req)
            .map(|r| r.process.unwrap_or_default())
    }

    fn start_task(&self, id: &str) -> u32 {
        let req = StartRequest {
            container_id: id.into(),
            ..Default::default()
        };
        self.tasks().start(&Self::ctx(), &req).unwrap().pid
    }

    fn kill(&self, id: &str, signal: u32) {
        let req = KillRequest {
            container_id: id.into(),
            signal,
            ..Default::default()
        };
        self.tasks().kill(&Self::ctx(), &req).unwrap();
    }

    fn wait_status(&self, id: &str, want: TaskStatus) {
        wait_for(DEADLINE, &format!("task {id} to be {want:?}"), || {
            self.state(id)
                .is_ok_and(|p| p.status.enum_value_or_default() == want)
        })
        .unwrap_or_else(|e| panic!("{e}; log: {}", self.d().log_text()));
    }

    fn delete(&self, id: &str) -> Result<DeleteResponse, corral_protocols::rpc::Status> {
        let req = DeleteTaskRequest {
            container_id: id.into(),
            ..Default::default()
        };
        self.tasks().delete(&Self::ctx(), &req)
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.temp
            .state()
            .join("io.containerd.runtime.v2.task")
            .join(NS)
            .join(id)
    }

    fn work(&self, id: &str) -> PathBuf {
        self.temp
            .root()
            .join("io.containerd.runtime.v2.task")
            .join(NS)
            .join(id)
    }

    /// Stops corrald cleanly and checks nothing the tasks made is left.
    fn finish(mut self) {
        if let Some(d) = self.d.take() {
            d.stop_clean(Duration::from_secs(20));
        }
        let tasks = self
            .temp
            .state()
            .join("io.containerd.runtime.v2.task")
            .join(NS);
        let left: Vec<_> = fs::read_dir(&tasks)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "bundles left: {left:?}");
        assert_eq!(
            mounts_under(self.temp.path()).unwrap(),
            Vec::<PathBuf>::new()
        );
        // Shims exit on their own after Shutdown, as containerd's do.
        if wait_for(DEADLINE, "the shims to exit", || {
            shims_of(&self.temp).is_empty()
        })
        .is_err()
        {
            panic!("shims left: {:?}", shims_of(&self.temp));
        }
        let leaked = self.cgroups.remove(DEADLINE);
        assert!(leaked.is_empty(), "cgroups left: {leaked:?}");
    }
}

/// The shim processes serving `temp`'s corrald.
fn shims_of(temp: &TempRoot) -> Vec<ProcessInfo> {
    corral_tests::harness::procs::processes()
        .into_iter()
        .filter(|p| {
            p.state != 'Z'
                && p.cmdline.contains("containerd-shim")
                && p.cmdline.contains(temp.marker())
        })
        .collect()
}

/// Subscribes to this namespace's task events; returns once the subscription is known to be
/// in place (a probe event published after it came through).
fn subscribe(d: &Corrald) -> std::sync::mpsc::Receiver<(String, Vec<u8>)> {
    let client = d.client().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let req = SubscribeRequest {
        filters: vec![format!("namespace=={NS},topic~=\"^/tasks/\"")],
        ..Default::default()
    };
    let mut stream = EventsClient::new(client.clone())
        .subscribe(&CallContext::new(), &req)
        .unwrap();
    let probe_client = client.clone();
    std::thread::spawn(move || {
        let _keep: Client = client;
        while let Ok(Some(env)) = stream.recv() {
            let value = env.event.value.clone();
            if tx.send((env.topic, value)).is_err() {
                return;
            }
        }
    });
    let events = EventsClient::new(probe_client);
    loop {
        let probe = PublishRequest {
            topic: "/tasks/probe".into(),
            event: protobuf::MessageField::some(
                protobuf::well_known_types::any::Any::pack(
                    &protobuf::well_known_types::empty::Empty::new(),
                )
                .unwrap(),
            ),
            ..Default::default()
        };
        events.publish(&Env::ctx(), &probe).unwrap();
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((topic, _)) if topic == "/tasks/probe" => {
                // Drain the other probes.
                while rx.recv_timeout(Duration::from_millis(50)).is_ok() {}
                return rx;
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("event stream ended: {e}"),
        }
    }
}

fn next_topics(
    rx: &std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    n: usize,
) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(DEADLINE)
                .unwrap_or_else(|_| panic!("event {i} of {n} never came"))
        })
        .collect()
}

#[test]
fn a_task_lives_reports_and_leaves_nothing() {
    let Some(env) = Env::start(false) else { return };
    let events = subscribe(env.d());
    env.container(
        "life",
        &["--hostname", "life"],
        &["/bin/sh", "-c", "echo hello from $(hostname); exit 3"],
    );

    let pid = env.create_task("life").unwrap();
    assert!(pid > 0);
    let p = env.state("life").unwrap();
    assert_eq!(p.status.enum_value_or_default(), TaskStatus::CREATED);
    assert_eq!(p.id, "life");
    assert_eq!(p.pid, pid);
    let bundle = env.bundle("life");
    for f in [
        "config.json",
        "address",
        "shim-binary-path",
        "log",
        "rootfs",
        "work",
    ] {
        assert!(bundle.join(f).exists(), "bundle lacks {f}");
    }
    assert_eq!(
        fs::read_link(bundle.join("work")).unwrap(),
        env.work("life")
    );

    // Wait before Start, as ctr does.
    let waiter = {
        let tasks = env.tasks();
        std::thread::spawn(move || {
            let req = WaitRequest {
                container_id: "life".into(),
                ..Default::default()
            };
            tasks.wait(&CallContext::new().with_namespace(NS), &req)
        })
    };
    assert_eq!(env.start_task("life"), pid);
    let waited = waiter.join().unwrap().unwrap();
    assert_eq!(waited.exit_status, 3);
    assert!(
        env.output("life").contains("hello from life"),
        "{}",
        env.output("life")
    );
    let p = env.state("life").unwrap();
    assert_eq!(p.status.enum_value_or_default(), TaskStatus::STOPPED);
    assert_eq!(p.exit_status, 3);

    let list = env
        .tasks()
        .list(&Env::ctx(), &ListTasksRequest::new())
        .unwrap();
    assert_eq!(list.tasks.len(), 1);
    let deleted = env.delete("life").unwrap();
    assert_eq!(deleted.exit_status, 3);
    assert_eq!(deleted.pid, pid);
    assert!(!bundle.exists() && !env.work("life").exists());
    let gone = env.state("life").unwrap_err();
    assert_eq!(gone.code(), Code::NOT_FOUND);
    assert_eq!(gone.message(), "task life not found");

    let got: Vec<String> = next_topics(&events, 4)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        got,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    ok(env.d().socket(), NS, &["c", "rm", "life"]);
    env.finish();
}

#[test]
fn task_errors_use_containerds_codes() {
    let Some(env) = Env::start(false) else { return };
    let missing = env.create_task("nobody").unwrap_err();
    assert_eq!(missing.code(), Code::NOT_FOUND, "{missing:?}");
    assert_eq!(
        missing.message(),
        format!("container \"nobody\" in namespace \"{NS}\": not found")
    );

    env.container("busy", &[], &["/bin/sleep", "600"]);
    env.create_task("busy").unwrap();
    let twice = env.create_task("busy").unwrap_err();
    assert_eq!(twice.code(), Code::ALREADY_EXISTS, "{twice:?}");
    env.start_task("busy");
    let running = env.delete("busy").unwrap_err();
    assert_eq!(running.code(), Code::FAILED_PRECONDITION, "{running:?}");
    assert_eq!(
        env.state("busy").unwrap().status.enum_value_or_default(),
        TaskStatus::RUNNING
    );
    // Another namespace sees no task.
    let other = TasksClient::new(env.d().client().unwrap())
        .list(&Corrald::ctx("elsewhere"), &ListTasksRequest::new())
        .unwrap();
    assert!(other.tasks.is_empty());
    // No namespace at all is refused.
    let none = env
        .tasks()
        .list(&CallContext::new(), &ListTasksRequest::new())
        .unwrap_err();
    assert_eq!(none.code(), Code::FAILED_PRECONDITION);

    env.kill("busy", 9);
    env.wait_status("busy", TaskStatus::STOPPED);
    assert_eq!(env.delete("busy").unwrap().exit_status, 137);
    let again = env.delete("busy").unwrap_err();
    assert_eq!(again.code(), Code::NOT_FOUND);
    ok(env.d().socket(), NS, &["c", "rm", "busy"]);
    env.finish();
}

#[test]
fn closing_an_execs_stdin_before_it_starts_still_ends_its_input() {
    let Some(env) = Env::start(false) else { return };
    env.container("io", &[], &["/bin/sleep", "600"]);
    env.create_task("io").unwrap();
    env.start_task("io");
    // The exec's process is the container's, running cat.
    let containers = ContainersClient::new(env.d().client().unwrap());
    let c = containers
        .get(
            &Env::ctx(),
            &GetContainerRequest {
                id: "io".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .container
        .unwrap();
    let spec: serde_json::Value = serde_json::from_slice(&c.spec.value).unwrap();
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(["/bin/cat"]);
    let stdin = env.temp.join("e1-stdin");
    nix::unistd::mkfifo(&stdin, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Held open until the exec started (a fifo with no end open loses what it holds).
    let mut writer = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&stdin)
        .unwrap();
    let exec = ExecProcessRequest {
        container_id: "io".into(),
        exec_id: "e1".into(),
        stdin: stdin.to_string_lossy().into_owned(),
        stdout: format!("file://{}", env.temp.join("e1.out").display()),
        spec: protobuf::MessageField::some(protobuf::well_known_types::any::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process).unwrap(),
            ..Default::default()
        }),
        ..Default::default()
    };
    env.tasks().exec(&Env::ctx(), &exec).unwrap();
    let close = CloseIORequest {
        container_id: "io".into(),
        exec_id: "e1".into(),
        stdin: true,
        ..Default::default()
    };
    env.tasks().close_io(&Env::ctx(), &close).unwrap();
    let start = StartRequest {
        container_id: "io".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    env.tasks().start(&Env::ctx(), &start).unwrap();
    // The client's end goes; the shim's own writer went with the early CloseIO, so cat's
    // input ends.
    std::io::Write::write_all(&mut writer, b"through\n").unwrap();
    drop(writer);
    let wait = WaitRequest {
        container_id: "io".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    let waited = env
        .tasks()
        .wait(&Env::ctx().with_timeout(DEADLINE), &wait)
        .unwrap_or_else(|e| panic!("cat never saw the end of its input: {e}"));
    assert_eq!(waited.exit_status, 0);
    assert_eq!(env.output("e1"), "through\n");
    let del = DeleteProcessRequest {
        container_id: "io".into(),
        exec_id: "e1".into(),
        ..Default::default()
    };
    env.tasks().delete_process(&Env::ctx(), &del).unwrap();
    env.kill("io", 9);
    env.wait_status("io", TaskStatus::STOPPED);
    env.delete("io").unwrap();
    ok(env.d().socket(), NS, &["c", "rm", "io"]);
    env.finish();
}

#[test]
fn a_killed_shim_is_noticed_and_its_task_reported_exited() {
    let Some(env) = Env::start(false) else { return };
    env.container("victim", &[], &["/bin/sleep", "600"]);
    env.create_task("victim").unwrap();
    let pid = env.start_task("victim");
    let events = subscribe(env.d());
    let waiter = {
        let tasks = env.tasks();
        std::thread::spawn(move || {
            let req = WaitRequest {
                container_id: "victim".into(),
                ..Default::default()
            };
            tasks.wait(&CallContext::new().with_namespace(NS), &req)
        })
    };
    let shim = shims_of(&env.temp);
    assert_eq!(shim.len(), 1, "{shim:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim[0].pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let waited = waiter.join().unwrap().unwrap();
    assert_eq!(waited.exit_status, 137, "log: {}", env.d().log_text());
    let got = next_topics(&events, 2);
    assert_eq!(got[0].0, "/tasks/exit");
    let exit = TaskExit::parse_from_bytes(&got[0].1).unwrap();
    assert_eq!(
        (exit.container_id.as_str(), exit.exit_status),
        ("victim", 137)
    );
    assert_eq!(got[1].0, "/tasks/delete");
    assert_eq!(env.state("victim").unwrap_err().code(), Code::NOT_FOUND);
    // The container's process went with it, and so did the bundle.
    wait_for(DEADLINE, "the container's process to go", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    })
    .unwrap();
    assert!(!env.bundle("victim").exists());
    ok(env.d().socket(), NS, &["c", "rm", "victim"]);
    env.finish();
}

#[test]
fn a_shim_that_died_while_corrald_was_down_is_cleaned_up_at_restart() {
    let Some(mut env) = Env::start(false) else {
        return;
    };
    env.container("alive", &[], &["/bin/sleep", "600"]);
    env.create_task("alive").unwrap();
    env.start_task("alive");
    env.container("dead", &[], &["/bin/sleep", "600"]);
    env.create_task("dead").unwrap();
    let dead_pid = env.start_task("dead");
    env.d.take().unwrap().kill().unwrap();
    // While corrald is down, the shim of "dead" is killed; its container keeps running.
    let shim = shims_of(&env.temp)
        .into_iter()
        .find(|p| p.cmdline.contains("-id dead"))
        .expect("the shim of dead");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(DEADLINE, "the shim to die", || {
        !shims_of(&env.temp).iter().any(|p| p.pid == shim.pid)
    })
    .unwrap();
    // And a deletion was cut short between renaming a bundle and its work dir away and
    // removing them.
    let gone_bundle = env.bundle("alive").with_file_name(".gone");
    let gone_work = env.work("alive").with_file_name(".gone");
    fs::create_dir_all(gone_bundle.join("rootfs")).unwrap();
    fs::write(gone_bundle.join("config.json"), b"{}").unwrap();
    fs::create_dir_all(&gone_work).unwrap();
    fs::write(gone_work.join("state"), b"x").unwrap();
    env.d =
        Some(Corrald::start(&env.temp, "corrald2.log", "[debug]\nlevel = \"debug\"\n").unwrap());
    wait_for(DEADLINE, "the leftovers of a cut deletion to go", || {
        !gone_bundle.exists() && !gone_work.exists()
    })
    .unwrap_or_else(|e| panic!("{e}; log: {}", env.d().log_text()));
    // The live one is found again; the dead one's shim ran its cleanup: the container's
    // process is gone, its bundle and work dir too, and its record stays.
    wait_for(DEADLINE, "the orphaned container to be killed", || {
        !Path::new(&format!("/proc/{dead_pid}")).exists()
            || fs::read_to_string(format!("/proc/{dead_pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    })
    .unwrap_or_else(|e| panic!("{e}; log: {}", env.d().log_text()));
    assert_eq!(env.state("dead").unwrap_err().code(), Code::NOT_FOUND);
    assert!(!env.bundle("dead").exists() && !env.work("dead").exists());
    assert_eq!(
        env.state("alive").unwrap().status.enum_value_or_default(),
        TaskStatus::RUNNING
    );
    let list = env
        .tasks()
        .list(&Env::ctx(), &ListTasksRequest::new())
        .unwrap();
    assert_eq!(list.tasks.len(), 1);
    env.kill("alive", 9);
    env.wait_status("alive", TaskStatus::STOPPED);
    env.delete("alive").unwrap();
    for id in ["alive", "dead"] {
        ok(env.d().socket(), NS, &["c", "rm", id]);
    }
    env.finish();
}

#[test]
fn corrald_killed_and_restarted_finds_its_tasks() {
    let Some(mut env) = Env::start(false) else {
        return;
    };
    let ids = ["r1", "r2", "r3", "r4", "r5"];
    for id in ids {
        let stop = format!("while [ ! -e /stop-{id} ]; do sleep 0.1; done; exit 7");
        env.container(id, &[], &["/bin/sh", "-c", &stop]);
        env.create_task(id).unwrap();
        env.start_task(id);
    }
    let pids: Vec<u32> = ids.iter().map(|id| env.state(id).unwrap().pid).collect();
    env.d.take().unwrap().kill().unwrap();
    // While corrald is down, r3 exits.
    fs::write(env.rootfs.join("stop-r3"), b"").unwrap();
    wait_for(DEADLINE, "r3's process to exit", || {
        !Path::new(&format!("/proc/{}", pids[2])).exists()
            || fs::read_to_string(format!("/proc/{}/stat", pids[2]))
                .is_ok_and(|s| s.contains(") Z "))
    })
    .unwrap();
    env.d =
        Some(Corrald::start(&env.temp, "corrald2.log", "[debug]\nlevel = \"debug\"\n").unwrap());
    let list = wait_for_some(DEADLINE, "five tasks listed", || {
        let l = env
            .tasks()
            .list(&Env::ctx(), &ListTasksRequest::new())
            .ok()?;
        (l.tasks.len() == 5).then_some(l)
    })
    .unwrap_or_else(|e| panic!("{e}; log: {}", env.d().log_text()));
    for (i, t) in list.tasks.iter().enumerate() {
        assert_eq!(t.id, ids[i]);
        assert_eq!(t.pid, pids[i]);
    }
    env.wait_status("r3", TaskStatus::STOPPED);
    assert_eq!(env.state("r3").unwrap().exit_status, 7);
    for id in ["r1", "r2", "r4", "r5"] {
        assert_eq!(
            env.state(id).unwrap().status.enum_value_or_default(),
            TaskStatus::RUNNING,
            "{id}"
        );
    }
    // The reconnected shims still take orders.
    for id in ids {
        fs::write(env.rootfs.join(format!("stop-{id}")), b"").unwrap();
    }
    for id in ids {
        env.wait_status(id, TaskStatus::STOPPED);
        assert_eq!(env.delete(id).unwrap().exit_status, 7, "{id}");
        ok(env.d().socket(), NS, &["c", "rm", id]);
    }
    env.finish();
}

#[test]
fn containerds_go_shim_runs_tasks_under_corrald() {
    let Some(env) = Env::start(true) else { return };
    if require_tool("containerd-shim-runc-v2").is_none() {
        return;
    }
    env.container(
        "goshim",
        &["--runtime", "io.containerd.runc.v2"],
        &["/bin/sh", "-c", "echo via go; exit 5"],
    );
    env.create_task("goshim")
        .unwrap_or_else(|e| panic!("{e}; log: {}", env.d().log_text()));
    let bundle = env.bundle("goshim");
    let binary = fs::read_to_string(bundle.join("shim-binary-path")).unwrap();
    assert!(binary.ends_with("containerd-shim-runc-v2"), "{binary}");
    env.start_task("goshim");
    env.wait_status("goshim", TaskStatus::STOPPED);
    assert_eq!(env.delete("goshim").unwrap().exit_status, 5);
    assert_eq!(env.output("goshim"), "via go\n");
    ok(env.d().socket(), NS, &["c", "rm", "goshim"]);
    env.finish();
}
