//! `corrald` end to end: a restart keeps everything, SIGTERM under load stops cleanly,
//! malformed input on the socket does not stop it serving, and containerd opens a root that
//! corrald wrote.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use corral_protocols::rpc::frame::{
    encode_frame, read_frame, FrameError, MAX_BODY, TYPE_REQUEST, TYPE_RESPONSE,
};
use corral_protocols::rpc::{CallContext, Client, Code};
use corral_protocols::services::containers::v1::containers::{
    container, Container, CreateContainerRequest, DeleteContainerRequest, ListContainersRequest,
};
use corral_protocols::services::containers::v1::containers_rpc::ContainersClient;
use corral_protocols::services::leases::v1::leases::{CreateRequest, ListRequest};
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use corral_protocols::services::namespaces::v1::namespace::{
    CreateNamespaceRequest, ListNamespacesRequest, Namespace,
};
use corral_protocols::services::namespaces::v1::namespace_rpc::NamespacesClient;
use corral_protocols::services::version::v1::version_rpc::VersionClient;
use corral_tests::bins::corral_binary;
use corral_tests::harness::containerd::{ContainerdOptions, PrivateContainerd, NO_GC};
use corral_tests::harness::{require_root, run_with_deadline, Corrald, TempRoot};
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::{Message, MessageField};

const DEADLINE: Duration = Duration::from_secs(10);
const ROOT_REASON: &str = "corrald chowns its socket to [ttrpc] uid:gid (root:root)";

/// One corrald on `temp`'s root, state and socket.
fn start(temp: &TempRoot, log: &str) -> Corrald {
    Corrald::start(temp, log, "").unwrap()
}

fn ns(name: &str) -> CallContext {
    CallContext::new().with_namespace(name)
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn spec() -> Any {
    Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
        value: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
        ..Default::default()
    }
}

fn container(id: &str) -> Container {
    Container {
        id: id.into(),
        image: "docker.io/library/alpine:latest".into(),
        labels: labels(&[("app", id)]),
        runtime: MessageField::some(container::Runtime {
            name: "io.containerd.runc.v2".into(),
            ..Default::default()
        }),
        spec: MessageField::some(spec()),
        snapshotter: "overlayfs".into(),
        snapshot_key: format!("{id}-snapshot"),
        ..Default::default()
    }
}

fn create_container(c: &ContainersClient, namespace: &str, id: &str) {
    c.create(
        &ns(namespace),
        &CreateContainerRequest {
            container: MessageField::some(container(id)),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("create container {namespace}/{id}: {e:?}"));
}

const NAMESPACES: &[&str] = &["alpha", "beta"];
const CONTAINERS: &[&str] = &["web", "db", "cache"];
const LEASES: &[&str] = &["lease-one", "lease-two"];

/// Writes two namespaces, each with three containers and two leases.
fn populate(client: &Client) {
    let nsc = NamespacesClient::new(client.clone());
    let cc = ContainersClient::new(client.clone());
    let lc = LeasesClient::new(client.clone());
    for name in NAMESPACES {
        nsc.create(
            &CallContext::new(),
            &CreateNamespaceRequest {
                namespace: MessageField::some(Namespace {
                    name: name.to_string(),
                    labels: labels(&[("owner", name)]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("create namespace {name}: {e:?}"));
        for id in CONTAINERS {
            create_container(&cc, name, id);
        }
        for id in LEASES {
            lc.create(
                &ns(name),
                &CreateRequest {
                    id: id.to_string(),
                    labels: labels(&[("purpose", "e2e")]),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("create lease {name}/{id}: {e:?}"));
        }
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Everything [`populate`] wrote is there, labels and all.
fn check_populated(client: &Client) {
    let nsc = NamespacesClient::new(client.clone());
    let cc = ContainersClient::new(client.clone());
    let lc = LeasesClient::new(client.clone());
    let list = nsc
        .list(&CallContext::new(), &ListNamespacesRequest::new())
        .unwrap();
    let names: BTreeSet<String> = list.namespaces.iter().map(|n| n.name.clone()).collect();
    assert_eq!(names, set(NAMESPACES));
    for n in &list.namespaces {
        assert_eq!(n.labels, labels(&[("owner", &n.name)]));
    }
    for name in NAMESPACES {
        let list = cc
            .list(&ns(name), &ListContainersRequest::new())
            .unwrap_or_else(|e| panic!("list containers in {name}: {e:?}"));
        let ids: BTreeSet<String> = list.containers.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids, set(CONTAINERS), "containers in {name}");
        for c in &list.containers {
            let want = container(&c.id);
            assert_eq!(c.image, want.image);
            assert_eq!(c.labels, want.labels);
            assert_eq!(c.runtime.name, want.runtime.name);
            assert_eq!(c.spec.type_url, want.spec.type_url);
            assert_eq!(c.spec.value, want.spec.value);
            assert_eq!(c.snapshotter, want.snapshotter);
            assert_eq!(c.snapshot_key, want.snapshot_key);
        }
        let leases = lc
            .list(&ns(name), &ListRequest::new())
            .unwrap_or_else(|e| panic!("list leases in {name}: {e:?}"));
        let ids: BTreeSet<String> = leases.leases.iter().map(|l| l.id.clone()).collect();
        assert_eq!(ids, set(LEASES), "leases in {name}");
        for l in &leases.leases {
            assert_eq!(l.labels, labels(&[("purpose", "e2e")]));
        }
    }
}

fn db_check(root: &Path) {
    let out = run_with_deadline(
        Command::new(corral_binary("corrald").unwrap())
            .args(["db", "check", "--root"])
            .arg(root),
        DEADLINE,
    )
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.ends_with(": ok\n"), "{stdout}{stderr}");
}

#[test]
fn restart_keeps_everything() {
    if !require_root(ROOT_REASON) {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let d = start(&temp, "corrald-1.log");
    let client = d.client().unwrap();
    populate(&client);
    check_populated(&client);
    drop(client);
    d.stop_clean(DEADLINE);

    let d = start(&temp, "corrald-2.log");
    let client = d.client().unwrap();
    check_populated(&client);
    // And it still takes writes.
    let cc = ContainersClient::new(client.clone());
    create_container(&cc, "alpha", "after-restart");
    drop(cc);
    drop(client);
    d.stop_clean(DEADLINE);
    db_check(temp.root());
}

#[test]
fn sigterm_under_load_finishes_cleanly() {
    if !require_root(ROOT_REASON) {
        return;
    }
    const THREADS: usize = 20;
    let temp = TempRoot::new().unwrap();
    let d = start(&temp, "corrald.log");
    let address = d.address();
    let ops = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<(usize, String)>();
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let address = address.clone();
        let ops = ops.clone();
        let stop = stop.clone();
        let done_tx = done_tx.clone();
        handles.push(thread::spawn(move || {
            let namespace = format!("load{}", t % 4);
            let result = (|| -> Result<(), String> {
                let client = Client::connect(&address).map_err(|e| format!("connect: {e}"))?;
                let cc = ContainersClient::new(client);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("t{t}-{i}");
                    i += 1;
                    cc.create(
                        &ns(&namespace),
                        &CreateContainerRequest {
                            container: MessageField::some(container(&id)),
                            ..Default::default()
                        },
                    )
                    .map_err(|e| format!("create: {e:?}"))?;
                    cc.list(&ns(&namespace), &ListContainersRequest::new())
                        .map_err(|e| format!("list: {e:?}"))?;
                    cc.delete(
                        &ns(&namespace),
                        &DeleteContainerRequest {
                            id,
                            ..Default::default()
                        },
                    )
                    .map_err(|e| format!("delete: {e:?}"))?;
                    ops.fetch_add(3, Ordering::Relaxed);
                }
                Ok(())
            })();
            let _ = done_tx.send((t, result.err().unwrap_or_else(|| "stopped".into())));
        }));
    }
    drop(done_tx);

    // Let the load run until every thread has done some work.
    let t0 = Instant::now();
    while ops.load(Ordering::Relaxed) < THREADS * 30 && t0.elapsed() < DEADLINE {
        thread::sleep(Duration::from_millis(20));
    }
    let before = ops.load(Ordering::Relaxed);
    assert!(
        before >= THREADS * 3,
        "only {before} ops before SIGTERM; log: {}",
        d.log_text()
    );
    // No thread failed before the signal.
    if let Ok((t, err)) = done_rx.try_recv() {
        panic!(
            "client {t} failed before SIGTERM: {err}; log: {}",
            d.log_text()
        );
    }
    eprintln!("{before} ops in {:?} before SIGTERM", t0.elapsed());

    let log = d.log_path().to_path_buf();
    let root = temp.root().to_path_buf();
    d.stop_clean(Duration::from_secs(15));

    // Every client comes back with an error, none hangs.
    let deadline = Instant::now() + DEADLINE;
    let mut finished = Vec::new();
    while finished.len() < THREADS {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(r) => finished.push(r),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!(
                    "{} of {THREADS} clients still blocked {DEADLINE:?} after corrald exited; log: {}",
                    THREADS - finished.len(),
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    for (t, err) in &finished {
        assert_ne!(err, "stopped", "client {t} saw no error");
    }
    eprintln!("client errors after SIGTERM, e.g. {:?}", finished[0].1);
    db_check(&root);
}

/// Reads one frame with a timeout; `None` when the server hung up.
fn read_response(s: &mut UnixStream) -> Option<corral_protocols::rpc::frame::Frame> {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    match read_frame(s) {
        Ok(f) => Some(f),
        Err(FrameError::Closed) => None,
        Err(FrameError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            None
        }
        Err(e) => panic!("reading a response: {e}"),
    }
}

fn request(service: &str, method: &str, payload: Vec<u8>) -> Vec<u8> {
    ttrpc::proto::Request {
        service: service.into(),
        method: method.into(),
        payload,
        ..Default::default()
    }
    .write_to_bytes()
    .unwrap()
}

fn response_of(f: &corral_protocols::rpc::frame::Frame) -> ttrpc::proto::Response {
    assert_eq!(f.kind, TYPE_RESPONSE, "{f:?}");
    ttrpc::proto::Response::parse_from_bytes(&f.body).unwrap()
}

fn version_works(d: &Corrald) {
    let v = VersionClient::new(d.client().unwrap())
        .version(&CallContext::new().with_timeout(DEADLINE), &Empty::new())
        .unwrap_or_else(|e| panic!("version: {e:?}; log: {}", d.log_text()));
    assert_eq!(v.version, corral_protocols::version::VERSION);
}

#[test]
fn malformed_input_keeps_serving() {
    if !require_root(ROOT_REASON) {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let d = start(&temp, "corrald.log");
    let connect = || UnixStream::connect(d.socket()).unwrap();

    // Random bytes, then hang up.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = vec![0u8; 64 * 1024];
    for b in noise.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    {
        let mut s = connect();
        let _ = s.write_all(&noise);
        let _ = s.shutdown(std::net::Shutdown::Write);
        // Whatever comes back (likely nothing), the server must not hang on us forever.
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    version_works(&d);

    // A truncated frame: a header announcing 100 bytes, 10 of them, hang up.
    {
        let mut s = connect();
        let frame = encode_frame(1, TYPE_REQUEST, 0, &[7u8; 100]).unwrap();
        s.write_all(&frame[..20]).unwrap();
    }
    // A header alone, cut short.
    {
        let mut s = connect();
        s.write_all(&[0, 0, 0]).unwrap();
    }
    version_works(&d);

    // Oversized: a header over 4 MiB and that many bytes; then the server either answers
    // on that stream or hangs up, and the next request on the connection is answered or the
    // connection is closed.
    {
        let mut s = connect();
        let length = MAX_BODY as u32 + 1;
        let mut header = Vec::new();
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(&3u32.to_be_bytes());
        header.push(TYPE_REQUEST);
        header.push(0);
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        let sent = s
            .write_all(&header)
            .and_then(|_| s.write_all(&vec![0u8; length as usize]));
        if sent.is_ok() {
            if let Some(f) = read_response(&mut s) {
                assert_eq!(f.stream_id, 3, "{f:?}");
                let r = response_of(&f);
                let code = r.status.code.enum_value_or_default();
                assert_ne!(code, Code::OK, "{r:?}");
                eprintln!("oversized frame answered: {code:?} {}", r.status.message);
            } else {
                eprintln!("oversized frame: server hung up");
            }
        } else {
            eprintln!("oversized frame: server hung up while we wrote: {sent:?}");
        }
    }
    // Oversized header and hang up at once.
    {
        let mut s = connect();
        let mut header = Vec::new();
        header.extend_from_slice(&(64u32 << 20).to_be_bytes());
        header.extend_from_slice(&5u32.to_be_bytes());
        header.push(TYPE_REQUEST);
        header.push(0);
        s.write_all(&header).unwrap();
        s.write_all(&[1u8; 1000]).unwrap();
    }
    version_works(&d);

    // Valid frames on one connection: an unknown service, a garbage payload, a valid call.
    {
        let mut s = connect();
        let body = request("containerd.services.nothing.v1.Nothing", "Nothing", vec![]);
        s.write_all(&encode_frame(1, TYPE_REQUEST, 0, &body).unwrap())
            .unwrap();
        let f = read_response(&mut s).expect("answer to an unknown service");
        assert_eq!(f.stream_id, 1);
        let r = response_of(&f);
        assert_eq!(
            r.status.code.enum_value_or_default(),
            Code::UNIMPLEMENTED,
            "{r:?}"
        );

        // Field 1 (a string) with a length running past the end: not decodable.
        let body = request(
            "containerd.services.namespaces.v1.Namespaces",
            "List",
            vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01],
        );
        s.write_all(&encode_frame(3, TYPE_REQUEST, 0, &body).unwrap())
            .unwrap();
        let f = read_response(&mut s).expect("answer to a garbage payload");
        assert_eq!(f.stream_id, 3);
        let r = response_of(&f);
        assert_eq!(
            r.status.code.enum_value_or_default(),
            Code::INVALID_ARGUMENT,
            "{r:?}"
        );

        let body = request(
            "containerd.services.namespaces.v1.Namespaces",
            "List",
            ListNamespacesRequest::new().write_to_bytes().unwrap(),
        );
        s.write_all(&encode_frame(5, TYPE_REQUEST, 0, &body).unwrap())
            .unwrap();
        let f = read_response(&mut s).expect("answer to a valid call after errors");
        assert_eq!(f.stream_id, 5);
        let r = response_of(&f);
        assert_eq!(r.status.code.enum_value_or_default(), Code::OK, "{r:?}");
        corral_protocols::services::namespaces::v1::namespace::ListNamespacesResponse::parse_from_bytes(&r.payload)
            .unwrap();
    }

    // A fresh client still works, and the daemon is still the same process.
    version_works(&d);
    d.stop_clean(DEADLINE);
    db_check(temp.root());
}

#[test]
fn containerd_opens_a_corrald_root() {
    if !require_root("a private containerd needs root") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let d = start(&temp, "corrald.log");
    let client = d.client().unwrap();
    populate(&client);
    drop(client);
    d.stop_clean(DEADLINE);

    let c = PrivateContainerd::start_with(ContainerdOptions {
        root: Some(temp.root().to_path_buf()),
        extra_config: NO_GC.to_string(),
        ..Default::default()
    })
    .unwrap();
    let lines = |s: String| -> BTreeSet<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let namespaces = lines(c.ctr(["ns", "ls", "-q"]).unwrap());
    for name in NAMESPACES {
        assert!(namespaces.contains(*name), "{namespaces:?}");
    }
    let listing = c.ctr(["ns", "ls"]).unwrap();
    assert!(listing.contains("owner=alpha"), "{listing}");
    for name in NAMESPACES {
        let ids = lines(c.ctr(["-n", name, "c", "ls", "-q"]).unwrap());
        assert_eq!(ids, set(CONTAINERS), "containers in {name}");
        let info = c.ctr(["-n", name, "c", "info", "web"]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(v["Image"], "docker.io/library/alpine:latest", "{info}");
        assert_eq!(v["Runtime"]["Name"], "io.containerd.runc.v2", "{info}");
        assert_eq!(v["Labels"]["app"], "web", "{info}");
        assert_eq!(v["SnapshotKey"], "web-snapshot", "{info}");
        let leases = lines(c.ctr(["-n", name, "leases", "ls", "-q"]).unwrap());
        assert_eq!(leases, set(LEASES), "leases in {name}");
    }
    c.stop().unwrap();
}
