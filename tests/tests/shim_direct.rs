//! containerd-shim-corral-v2 driven the way containerd drives it, by a test acting as the
//! daemon: `start` in the bundle, the Task service over ttrpc, events received on our own
//! `Events.Forward` server, `delete` at the end. This checks what `ctr` cannot show: the exact
//! event order, error codes, OOM events, the shim's threads, and crun through runc options.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_protocols::rpc::{
    CallContext, Client, Code, RequestContext, RpcResult, Server, ServerConfig, ServiceSet,
};
use corral_protocols::runtime::v2::runc::options::oci::Options;
use corral_protocols::runtime::v2::task::shim::*;
use corral_protocols::runtime::v2::task::shim_rpc::TaskClient;
use corral_protocols::services::ttrpc::events::v1::events::{Envelope, ForwardRequest};
use corral_protocols::services::ttrpc::events::v1::events_rpc::{register_events, Events};
use corral_protocols::types::task::task::Status as TaskStatus;
use corral_tests::bins::corral_binary;
use corral_tests::harness::{
    leaked_processes, mounts_under, require_root, require_tool, wait_for, TempRoot,
};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::{Message, MessageField};

const NS: &str = "shimtest";

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Envelope>>,
}

impl Events for Recorder {
    fn forward(&self, ctx: &RequestContext, req: ForwardRequest) -> RpcResult<Empty> {
        let env = req.envelope.into_option().unwrap_or_default();
        assert_eq!(
            ctx.namespace(),
            Some(NS),
            "events carry the namespace in metadata"
        );
        self.seen.lock().unwrap().push(env);
        Ok(Empty::new())
    }
}

impl Recorder {
    /// Topics and the id each event names, in arrival order.
    fn topics_for(&self, container: &str) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| event_container(e) == container)
            .map(|e| e.topic.clone())
            .collect()
    }
}

/// The container id inside an event (field 1 of every task event).
fn event_container(env: &Envelope) -> String {
    let value = env
        .event
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or_default();
    corral_protocols::events::task::TaskStart::parse_from_bytes(&value)
        .map(|s| s.container_id)
        .unwrap_or_default()
}

/// The daemon side: an events server, a state directory and bundles.
struct FakeDaemon {
    temp: TempRoot,
    address: PathBuf,
    recorder: Arc<Recorder>,
    server: Server,
}

impl FakeDaemon {
    fn new() -> FakeDaemon {
        let temp = TempRoot::new().unwrap();
        let state = temp.join("d");
        fs::create_dir_all(&state).unwrap();
        let address = state.join("daemon.sock");
        let ttrpc = state.join("daemon.sock.ttrpc");
        let recorder = Arc::new(Recorder::default());
        let mut set = ServiceSet::new();
        register_events(&mut set, recorder.clone());
        let server = Server::new(set, ServerConfig::default());
        let listener = UnixListener::bind(&ttrpc).unwrap();
        {
            let server = server.clone();
            std::thread::spawn(move || server.serve(&listener));
        }
        FakeDaemon {
            temp,
            address,
            recorder,
            server,
        }
    }

    /// A bundle with busybox's rootfs and a spec running `args`.
    fn bundle(
        &self,
        id: &str,
        args: &[&str],
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> PathBuf {
        let bundle = self.temp.join(format!("bundles/{id}"));
        let rootfs = bundle.join("rootfs");
        fs::create_dir_all(&rootfs).unwrap();
        corral_tests::oci_archive::busybox_rootfs(&rootfs, &self.temp.join("oci"));
        let out = Command::new("runc")
            .arg("spec")
            .current_dir(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "runc spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        spec["root"]["readonly"] = false.into();
        edit(&mut spec);
        fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        bundle
    }

    /// Runs the shim binary's `start` in `bundle`, as containerd does.
    fn start_shim(
        &self,
        id: &str,
        bundle: &Path,
        options: Option<&Options>,
        crun_ns: bool,
    ) -> TaskClient {
        let shim = corral_binary("containerd-shim-corral-v2").unwrap();
        let mut cmd = Command::new(shim);
        cmd.args(["-namespace", NS, "-address", self.address.to_str().unwrap()])
            .args(["-publish-binary", "/bin/true", "-id", id, "start"])
            .current_dir(bundle)
            .env("TTRPC_ADDRESS", self.address.with_extension("sock.ttrpc"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if crun_ns {
            hide_unified_controllers(&mut cmd, &self.temp.join("empty"));
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(o) = options {
            let mut any = Any::new();
            any.type_url = "containerd.runc.v1.Options".into();
            any.value = o.write_to_bytes().unwrap();
            std::io::Write::write_all(&mut stdin, &any.write_to_bytes().unwrap()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "shim start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "start must print nothing on stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = String::from_utf8(out.stdout).unwrap();
        assert!(addr.starts_with("unix://"), "start printed {addr:?}");
        assert_eq!(fs::read_to_string(bundle.join("address")).unwrap(), addr);
        let socket = addr.trim_start_matches("unix://");
        assert!(
            socket.starts_with(self.temp.join("d/s").to_str().unwrap()),
            "socket {socket}"
        );
        TaskClient::new(Client::connect(&addr).unwrap())
    }

    /// Runs the shim binary's `delete`, as containerd does after every task delete.
    fn delete_shim(&self, id: &str, bundle: &Path) -> DeleteResponse {
        let shim = corral_binary("containerd-shim-corral-v2").unwrap();
        let out = Command::new(shim)
            .args(["-namespace", NS, "-address", self.address.to_str().unwrap()])
            .args([
                "-publish-binary",
                "/bin/true",
                "-id",
                id,
                "-bundle",
                bundle.to_str().unwrap(),
                "delete",
            ])
            .current_dir(bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shim delete: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        DeleteResponse::parse_from_bytes(&out.stdout).unwrap()
    }

    fn assert_clean(&self) {
        let marker = self.temp.path().display().to_string();
        wait_for(
            Duration::from_secs(10),
            "the shim and its processes to exit",
            || leaked_processes(&marker).is_empty(),
        )
        .unwrap_or_else(|e| panic!("{e}: {:?}", leaked_processes(&marker)));
        assert!(mounts_under(self.temp.path()).unwrap().is_empty());
        let runc_state = self.temp.join(format!("d/runc/{NS}"));
        let left: Vec<_> = fs::read_dir(&runc_state)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "runc state left: {left:?}");
        let sockets: Vec<_> = fs::read_dir(self.temp.join("d/s"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(sockets.is_empty(), "shim sockets left: {sockets:?}");
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.server.shutdown(Duration::from_secs(1));
    }
}

/// Runs `cmd` in a private mount namespace where the hybrid hierarchy's
/// `cgroup.controllers` reads empty: crun 1.8 refuses hybrid setups whose v2 hierarchy has
/// controllers (this host's has hugetlb). The host is not touched.
fn hide_unified_controllers(cmd: &mut Command, empty: &Path) {
    fs::write(empty, "").unwrap();
    let empty = std::ffi::CString::new(empty.to_str().unwrap()).unwrap();
    let target = std::ffi::CString::new("/sys/fs/cgroup/unified/cgroup.controllers").unwrap();
    let root = std::ffi::CString::new("/").unwrap();
    // SAFETY: only raw syscalls (unshare, mount) on memory prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                empty.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn ctx() -> CallContext {
    CallContext::new()
        .with_namespace(NS)
        .with_timeout(Duration::from_secs(30))
}

fn create_req(id: &str, bundle: &Path, out: &Path) -> CreateTaskRequest {
    let mut req = CreateTaskRequest::new();
    req.id = id.into();
    req.bundle = bundle.display().to_string();
    req.stdout = format!("file://{}", out.display());
    req.stderr = format!("file://{}", out.display());
    req
}

fn id_req<T: Default>(id: &str, set: impl FnOnce(&mut T, String)) -> T {
    let mut req = T::default();
    set(&mut req, id.to_string());
    req
}

impl FakeDaemon {
    /// A bundle running `args`, its shim, and the task created and started.
    fn running(&self, id: &str, args: &[&str]) -> (PathBuf, TaskClient, u32) {
        let bundle = self.bundle(id, args, |_| {});
        let task = self.start_shim(id, &bundle, None, false);
        let out = self.temp.join(format!("{id}.out"));
        let pid = task
            .create(&ctx(), &create_req(id, &bundle, &out))
            .unwrap()
            .pid;
        task.start(&ctx(), &id_req(id, |r: &mut StartRequest, v| r.id = v))
            .unwrap();
        (bundle, task, pid)
    }

    /// containerd's teardown of a task that may still run: SIGKILL, wait, Delete, Shutdown,
    /// the `delete` binary; then checks nothing is left.
    fn remove(&self, task: &TaskClient, id: &str, bundle: &Path) {
        let mut kill = id_req(id, |r: &mut KillRequest, v| r.id = v);
        kill.signal = 9;
        let _ = task.kill(&ctx(), &kill);
        task.wait(&ctx(), &id_req(id, |r: &mut WaitRequest, v| r.id = v))
            .unwrap();
        task.delete(&ctx(), &id_req(id, |r: &mut DeleteRequest, v| r.id = v))
            .unwrap();
        let _ = task.shutdown(&ctx(), &ShutdownRequest::new());
        self.delete_shim(id, bundle);
        self.assert_clean();
    }
}

fn prerequisites() -> bool {
    require_root("runs containers")
        && require_tool("runc").is_some()
        && require_tool("tar").is_some()
}

#[test]
fn lifecycle_events_and_errors() {
    if !prerequisites() {
        return;
    }
    let d = FakeDaemon::new();
    let id = "life";
    let bundle = d.bundle(id, &["sh", "-c", "echo out; echo err >&2; exit 4"], |_| {});
    // containerd creates the shim's log fifo and keeps it open read-write.
    let log_path = bundle.join("log");
    nix::unistd::mkfifo(&log_path, nix::sys::stat::Mode::from_bits_truncate(0o700)).unwrap();
    let mut log = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&log_path)
        .unwrap();
    let task = d.start_shim(id, &bundle, None, false);
    let out = d.temp.join("life.out");

    let created = task.create(&ctx(), &create_req(id, &bundle, &out)).unwrap();
    assert!(created.pid > 0);
    let err = task
        .create(&ctx(), &create_req(id, &bundle, &out))
        .unwrap_err();
    assert_eq!(err.code(), Code::ALREADY_EXISTS);

    let mut sreq = StateRequest::new();
    sreq.id = id.into();
    let st = task.state(&ctx(), &sreq).unwrap();
    assert_eq!(st.status.enum_value(), Ok(TaskStatus::CREATED));
    assert_eq!(st.pid, created.pid);

    let mut pause = PauseRequest::new();
    pause.id = id.into();
    let err = task.pause(&ctx(), &pause).unwrap_err();
    assert_eq!(err.code(), Code::FAILED_PRECONDITION);
    assert_eq!(err.message(), "cannot pause a created process");

    let mut missing = StateRequest::new();
    missing.id = "nope".into();
    assert_eq!(
        task.state(&ctx(), &missing).unwrap_err().code(),
        Code::NOT_FOUND
    );

    let mut start = StartRequest::new();
    start.id = id.into();
    assert_eq!(task.start(&ctx(), &start).unwrap().pid, created.pid);
    let mut wait = WaitRequest::new();
    wait.id = id.into();
    assert_eq!(task.wait(&ctx(), &wait).unwrap().exit_status, 4);
    let st = task.state(&ctx(), &sreq).unwrap();
    assert_eq!(st.status.enum_value(), Ok(TaskStatus::STOPPED));
    assert_eq!(st.exit_status, 4);

    let mut kill = KillRequest::new();
    kill.id = id.into();
    kill.signal = 9;
    let err = task.kill(&ctx(), &kill).unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);

    let mut del = DeleteRequest::new();
    del.id = id.into();
    let deleted = task.delete(&ctx(), &del).unwrap();
    assert_eq!(deleted.exit_status, 4);
    assert_eq!(deleted.pid, created.pid);
    assert_eq!(fs::read_to_string(&out).unwrap(), "out\nerr\n");

    let mut conn = ConnectRequest::new();
    conn.id = id.into();
    let connected = task.connect(&ctx(), &conn).unwrap();
    assert!(connected.shim_pid > 0);

    wait_for(Duration::from_secs(10), "the delete event", || {
        d.recorder.topics_for(id).last().map(String::as_str) == Some("/tasks/delete")
    })
    .unwrap();
    assert_eq!(
        d.recorder.topics_for(id),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    for env in d.recorder.seen.lock().unwrap().iter() {
        assert_eq!(env.namespace, NS);
        assert!(env.timestamp.is_some());
        assert!(
            env.event.type_url.starts_with("containerd.events.Task"),
            "{}",
            env.event.type_url
        );
    }

    // containerd's teardown: Shutdown, then the delete binary, which must cope with a task
    // that is already gone.
    let _ = task.shutdown(&ctx(), &ShutdownRequest::new());
    let cleaned = d.delete_shim(id, &bundle);
    assert_eq!(cleaned.exit_status, 137);
    let again = d.delete_shim(id, &bundle);
    assert_eq!(again.exit_status, 137);

    let mut logged = String::new();
    let _ = log.read_to_string(&mut logged);
    assert!(logged.contains("shim serving"), "shim log: {logged:?}");
    d.assert_clean();
}

#[test]
fn exec_processes_and_their_events() {
    if !prerequisites() {
        return;
    }
    let d = FakeDaemon::new();
    let id = "execs";
    let bundle = d.bundle(id, &["sleep", "1000"], |_| {});
    let task = d.start_shim(id, &bundle, None, false);
    let out = d.temp.join("execs.out");
    task.create(&ctx(), &create_req(id, &bundle, &out)).unwrap();
    let mut start = StartRequest::new();
    start.id = id.into();
    task.start(&ctx(), &start).unwrap();

    let mut exec = ExecProcessRequest::new();
    exec.id = id.into();
    exec.exec_id = "e1".into();
    exec.stdout = format!("file://{}", d.temp.join("e1.out").display());
    let mut spec = Any::new();
    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    spec.value = serde_json::to_vec(&serde_json::json!({
        "args": ["sh", "-c", "echo from-exec; exit 2"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0}
    }))
    .unwrap();
    exec.spec = MessageField::some(spec);
    task.exec(&ctx(), &exec).unwrap();
    assert_eq!(
        task.exec(&ctx(), &exec).unwrap_err().code(),
        Code::ALREADY_EXISTS
    );
    let mut bad = exec.clone();
    bad.exec_id = "bad id".into();
    assert_eq!(
        task.exec(&ctx(), &bad).unwrap_err().code(),
        Code::INVALID_ARGUMENT
    );

    let mut s = StartRequest::new();
    s.id = id.into();
    s.exec_id = "e1".into();
    let pid = task.start(&ctx(), &s).unwrap().pid;
    assert!(pid > 0);
    let mut w = WaitRequest::new();
    w.id = id.into();
    w.exec_id = "e1".into();
    assert_eq!(task.wait(&ctx(), &w).unwrap().exit_status, 2);
    assert_eq!(
        fs::read_to_string(d.temp.join("e1.out")).unwrap(),
        "from-exec\n"
    );

    let mut pids = PidsRequest::new();
    pids.id = id.into();
    let listed = task.pids(&ctx(), &pids).unwrap();
    assert_eq!(
        listed.processes.len(),
        1,
        "only init is left: {:?}",
        listed.processes
    );

    let mut del = DeleteRequest::new();
    del.id = id.into();
    del.exec_id = "e1".into();
    assert_eq!(task.delete(&ctx(), &del).unwrap().exit_status, 2);

    let mut kill = KillRequest::new();
    kill.id = id.into();
    kill.signal = 9;
    task.kill(&ctx(), &kill).unwrap();
    let mut wait = WaitRequest::new();
    wait.id = id.into();
    assert_eq!(task.wait(&ctx(), &wait).unwrap().exit_status, 137);
    let mut del = DeleteRequest::new();
    del.id = id.into();
    task.delete(&ctx(), &del).unwrap();

    wait_for(Duration::from_secs(10), "the delete event", || {
        d.recorder.topics_for(id).last().map(String::as_str) == Some("/tasks/delete")
    })
    .unwrap();
    let topics = d.recorder.topics_for(id);
    let pos = |t: &str| {
        topics
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("{t} missing in {topics:?}"))
    };
    assert!(pos("/tasks/start") < pos("/tasks/exec-added"));
    assert!(pos("/tasks/exec-added") < pos("/tasks/exec-started"));
    assert!(pos("/tasks/exec-started") < pos("/tasks/exit"));
    assert_eq!(
        topics.iter().filter(|t| *t == "/tasks/exit").count(),
        2,
        "{topics:?}"
    );

    let _ = task.shutdown(&ctx(), &ShutdownRequest::new());
    d.delete_shim(id, &bundle);
    d.assert_clean();
}

#[test]
fn oom_kills_are_reported() {
    if !prerequisites() {
        return;
    }
    let d = FakeDaemon::new();
    let id = "oomy";
    let bundle = d.bundle(
        id,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        |spec| {
            spec["linux"]["resources"]["memory"] =
                serde_json::json!({"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024});
        },
    );
    let task = d.start_shim(id, &bundle, None, false);
    let out = d.temp.join("oomy.out");
    task.create(&ctx(), &create_req(id, &bundle, &out)).unwrap();
    let mut start = StartRequest::new();
    start.id = id.into();
    task.start(&ctx(), &start).unwrap();
    let mut wait = WaitRequest::new();
    wait.id = id.into();
    assert_eq!(task.wait(&ctx(), &wait).unwrap().exit_status, 137);
    wait_for(Duration::from_secs(10), "the OOM event", || {
        d.recorder.topics_for(id).iter().any(|t| t == "/tasks/oom")
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", d.recorder.topics_for(id)));
    let mut del = DeleteRequest::new();
    del.id = id.into();
    task.delete(&ctx(), &del).unwrap();
    let _ = task.shutdown(&ctx(), &ShutdownRequest::new());
    d.delete_shim(id, &bundle);
    d.assert_clean();
}

/// Threads of the shim server for `id` (not the `start` process, which has exited).
fn shim_threads(d: &FakeDaemon, id: &str) -> Option<(i32, usize)> {
    let marker = d.temp.path().display().to_string();
    let shim = leaked_processes(&marker).into_iter().find(|p| {
        p.cmdline.contains("containerd-shim-corral-v2") && p.cmdline.split(' ').any(|a| a == id)
    })?;
    let tasks = fs::read_dir(format!("/proc/{}/task", shim.pid))
        .ok()?
        .count();
    Some((shim.pid, tasks))
}

#[test]
fn an_idle_shim_runs_at_most_three_threads() {
    if !prerequisites() {
        return;
    }
    let d = FakeDaemon::new();
    let id = "idle";
    let (bundle, task, _) = d.running(id, &["sleep", "1000"]);
    // The listener, containerd's connection and the reaper stay; handler threads and the
    // event sender leave after their idle timeout (5 s), the exit worker when it is done.
    wait_for(
        Duration::from_secs(20),
        "the shim to settle at three threads or fewer",
        || shim_threads(&d, id).is_some_and(|(_, n)| n <= 3),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", shim_threads(&d, id)));
    d.remove(&task, id, &bundle);
}

#[test]
fn crun_through_the_runc_options() {
    if !prerequisites() || require_tool("crun").is_none() {
        return;
    }
    let d = FakeDaemon::new();
    let id = "crunny";
    let bundle = d.bundle(id, &["sh", "-c", "echo from-crun"], |_| {});
    let mut options = Options::new();
    options.binary_name = "crun".into();
    let task = d.start_shim(id, &bundle, Some(&options), true);
    let out = d.temp.join("crun.out");
    let mut req = create_req(id, &bundle, &out);
    let mut any = Any::new();
    any.type_url = "containerd.runc.v1.Options".into();
    any.value = options.write_to_bytes().unwrap();
    req.options = MessageField::some(any);
    task.create(&ctx(), &req)
        .unwrap_or_else(|e| panic!("create with crun: {e}"));
    assert_eq!(fs::read_to_string(bundle.join("runtime")).unwrap(), "crun");
    let mut start = StartRequest::new();
    start.id = id.into();
    task.start(&ctx(), &start).unwrap();
    let mut wait = WaitRequest::new();
    wait.id = id.into();
    assert_eq!(task.wait(&ctx(), &wait).unwrap().exit_status, 0);
    assert_eq!(fs::read_to_string(&out).unwrap(), "from-crun\n");
    let mut del = DeleteRequest::new();
    del.id = id.into();
    task.delete(&ctx(), &del).unwrap();
    let _ = task.shutdown(&ctx(), &ShutdownRequest::new());
    d.delete_shim(id, &bundle);
    d.assert_clean();
}

/// The v1 memory cgroup directory of `pid`, on this host's layout.
fn memory_cgroup_of(pid: u32) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    })?;
    Some(Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/')))
}

#[test]
fn update_changes_the_containers_resources() {
    if !prerequisites() {
        return;
    }
    let d = FakeDaemon::new();
    let id = "upd";
    let (bundle, task, pid) = d.running(id, &["sleep", "1000"]);

    let mut up = UpdateTaskRequest::new();
    up.id = id.into();
    let mut res = Any::new();
    res.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    res.value =
        serde_json::to_vec(&serde_json::json!({"memory": {"limit": 64 * 1024 * 1024}})).unwrap();
    up.resources = MessageField::some(res);
    task.update(&ctx(), &up).unwrap();
    if let Some(dir) = memory_cgroup_of(pid) {
        let limit = fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), (64 * 1024 * 1024).to_string());
    }
    let mut stats = StatsRequest::new();
    stats.id = id.into();
    let st = task.stats(&ctx(), &stats).unwrap();
    assert!(
        st.stats.type_url.starts_with("io.containerd.cgroups.v"),
        "{}",
        st.stats.type_url
    );
    assert!(!st.stats.value.is_empty());

    d.remove(&task, id, &bundle);
}

/// Removes a test cgroup directory (after its processes left) even when a test fails.
struct CgroupDir(PathBuf);

impl Drop for CgroupDir {
    fn drop(&mut self) {
        let _ = wait_for(Duration::from_secs(10), "the test cgroup to empty", || {
            fs::read_to_string(self.0.join("cgroup.procs"))
                .map(|s| s.trim().is_empty())
                .unwrap_or(true)
        });
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn shim_cgroup_option_moves_the_shim() {
    if !prerequisites() {
        return;
    }
    let memory = Path::new("/sys/fs/cgroup/memory");
    if !memory.join("cgroup.procs").exists() {
        eprintln!("skipping: no cgroup v1 memory hierarchy on this host");
        return;
    }
    let name = format!("corral-test-shimcg-{}", std::process::id());
    let dir = CgroupDir(memory.join(&name));
    fs::create_dir_all(&dir.0).unwrap();
    let d = FakeDaemon::new();
    let id = "cg";
    let bundle = d.bundle(id, &["true"], |_| {});
    let mut options = Options::new();
    options.shim_cgroup = format!("/{name}");
    let task = d.start_shim(id, &bundle, Some(&options), false);
    let (shim_pid, _) = shim_threads(&d, id).expect("the shim server");
    let procs = fs::read_to_string(dir.0.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == shim_pid.to_string()),
        "cgroup.procs: {procs}"
    );
    let _ = task.shutdown(&ctx(), &ShutdownRequest::new());
    d.delete_shim(id, &bundle);
    d.assert_clean();
}

#[test]
fn checkpoint_without_criu_is_a_failed_precondition() {
    if !prerequisites() {
        return;
    }
    let d = FakeDaemon::new();
    let id = "ckpt";
    let bundle = d.bundle(id, &["sleep", "1000"], |_| {});
    // Point CriuPath at nothing, so the answer does not depend on this host's criu.
    let mut options = Options::new();
    options.criu_path = d.temp.join("no-criu-here").display().to_string();
    let task = d.start_shim(id, &bundle, Some(&options), false);
    let out = d.temp.join("ckpt.out");
    let mut req = create_req(id, &bundle, &out);
    let mut any = Any::new();
    any.type_url = "containerd.runc.v1.Options".into();
    any.value = options.write_to_bytes().unwrap();
    req.options = MessageField::some(any);
    task.create(&ctx(), &req).unwrap();
    task.start(&ctx(), &id_req(id, |r: &mut StartRequest, v| r.id = v))
        .unwrap();
    let mut ck = id_req(id, |r: &mut CheckpointTaskRequest, v| r.id = v);
    ck.path = d.temp.join("ck").display().to_string();
    let err = task.checkpoint(&ctx(), &ck).unwrap_err();
    assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");
    assert!(err.message().contains("criu"), "{err}");
    assert!(d
        .recorder
        .topics_for(id)
        .iter()
        .all(|t| t != "/tasks/checkpointed"));
    d.remove(&task, id, &bundle);
}
