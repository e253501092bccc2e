//! `corralctl` driven as a user drives it: its errors without a daemon, ctr's nouns, verbs
//! and aliases in `--help`, and namespaces, containers, leases and events end to end
//! against a private corrald.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_protocols::rpc::{CallContext, Client};
use corral_protocols::services::containers::v1::containers::{Container, CreateContainerRequest};
use corral_protocols::services::containers::v1::containers_rpc::ContainersClient;
use corral_tests::ctl::{corralctl, ctl, ok, stderr, stdout};
use corral_tests::harness::{require_root, ChildGuard, Corrald, TempRoot};
use protobuf::well_known_types::any::Any;

fn run(args: &[&str]) -> Output {
    corralctl().args(args).output().unwrap()
}

#[test]
fn every_command_says_when_corrald_is_not_running() {
    let temp = TempRoot::new().unwrap();
    let sock = temp.join("absent.sock");
    let sock = sock.to_str().unwrap();
    for args in [
        &["ns", "ls"][..],
        &["namespaces", "create", "x"],
        &["c", "ls"],
        &["containers", "info", "web"],
        &["leases", "ls"],
        &["events"],
        &["info"],
        &["plugins", "ls"],
        &["version"],
    ] {
        let out = corralctl().arg("-a").arg(sock).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.ends_with(&format!(
                "corralctl: connect {sock}: no such file or directory — is corrald running?\n"
            )),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // The address comes from the environment too.
    let out = corralctl()
        .env("CORRAL_ADDRESS", sock)
        .args(["ns", "ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("corralctl: connect {sock}: no such file or directory — is corrald running?\n")
    );
}

#[test]
fn help_lists_ctrs_nouns_verbs_and_aliases() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for noun in [
        "namespaces",
        "containers",
        "leases",
        "events",
        "info",
        "plugins",
        "version",
    ] {
        assert!(help.contains(noun), "{noun} missing from:\n{help}");
    }
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["namespaces"],
            &["create", "list", "ls", "remove", "rm", "label"],
        ),
        (&["ns"], &["create", "list", "remove", "label"]),
        (&["namespace"], &["create", "list"]),
        (
            &["containers"],
            &[
                "list", "ls", "info", "label", "delete", "del", "remove", "rm",
            ],
        ),
        (&["c"], &["list", "info", "label", "delete"]),
        (&["container"], &["list", "delete"]),
        (&["leases"], &["create", "list", "ls", "delete", "rm"]),
        (&["plugins"], &["list", "ls"]),
        (&["plugin"], &["list"]),
    ];
    for (noun, verbs) in cases {
        let out = corralctl().args(*noun).arg("--help").output().unwrap();
        assert!(out.status.success(), "{noun:?}: {out:?}");
        let help = stdout(&out);
        for verb in *verbs {
            assert!(
                help.split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w == *verb),
                "{noun:?} help lacks {verb}:\n{help}"
            );
        }
    }
    for (noun, flags) in [
        (&["ns", "ls"][..], &["--quiet", "-q"][..]),
        (&["c", "ls"], &["--quiet"]),
        (&["c", "rm"], &["--keep-snapshot"]),
        (&["leases", "create"], &["--id", "--expires"]),
        (&["leases", "rm"], &["--sync"]),
        (&["plugins", "ls"], &["--detailed", "-d", "--quiet"]),
    ] {
        let out = corralctl().args(noun).arg("--help").output().unwrap();
        let help = stdout(&out);
        for flag in flags {
            assert!(help.contains(flag), "{noun:?} help lacks {flag}:\n{help}");
        }
    }
    for alias in ["event", "events"] {
        let out = corralctl().args([alias, "--help"]).output().unwrap();
        assert!(out.status.success(), "{alias}: {out:?}");
    }
}

#[test]
fn bad_arguments_are_usage_errors_not_panics() {
    let out = run(&["leases", "create", "--expires", "1y"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("panicked"));
    let out = run(&["ns", "rm"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

fn create_container(address: &Path, ns: &str, id: &str, image: &str, labels: &[(&str, &str)]) {
    let client = ContainersClient::new(Client::connect(address.to_str().unwrap()).unwrap());
    let mut c = Container::new();
    c.id = id.into();
    c.image = image.into();
    c.labels = corral_tests::labels(labels).into_iter().collect();
    c.runtime.mut_or_insert_default().name = "io.containerd.runc.v2".into();
    let mut spec = Any::new();
    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Spec".into();
    spec.value =
        format!(r#"{{"ociVersion":"1.0.2","hostname":"{id}","process":{{"args":["sh"]}}}}"#)
            .into_bytes();
    c.spec = Some(spec).into();
    c.snapshotter = "overlayfs".into();
    c.snapshot_key = id.into();
    let mut req = CreateContainerRequest::new();
    req.container = Some(c).into();
    client
        .create(&CallContext::new().with_namespace(ns), &req)
        .unwrap();
}

#[test]
fn end_to_end_against_corrald() {
    if !require_root("runs corrald on a private root") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let daemon = Corrald::start(&temp, "corrald.log", "").unwrap();
    daemon.version().expect("corrald's Version call");
    let a = daemon.socket();

    // info and plugins answer.
    let info: serde_json::Value = serde_json::from_str(&ok(a, "default", &["info"])).unwrap();
    assert!(info["server"]["uuid"].is_string(), "{info}");
    let plugins = ok(a, "default", &["plugins", "ls"]);
    assert!(plugins.starts_with("TYPE"), "{plugins}");
    assert!(plugins.contains("STATUS"), "{plugins}");

    // Namespaces.
    ok(a, "default", &["ns", "create", "edge", "a=1", "b=2"]);
    let ls = ok(a, "default", &["namespaces", "list"]);
    assert!(ls.starts_with("NAME"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["edge", "a=1,b=2"]),
        "{ls}"
    );
    ok(a, "default", &["namespace", "label", "edge", "a=", "c=3"]);
    let ls = ok(a, "default", &["ns", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["edge", "b=2,c=3"]),
        "{ls}"
    );
    assert!(ok(a, "default", &["ns", "ls", "-q"])
        .lines()
        .any(|l| l == "edge"));
    let dup = ctl(a, "default", &["ns", "create", "edge"]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).starts_with("corralctl: "), "{}", stderr(&dup));

    // Containers, created through the API.
    create_container(
        a,
        "edge",
        "web",
        "docker.io/library/nginx:latest",
        &[("app", "web")],
    );
    create_container(a, "edge", "job", "", &[("app", "batch")]);
    let ls = ok(a, "edge", &["c", "ls"]);
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["CONTAINER", "IMAGE", "RUNTIME"], "{ls}");
    assert!(
        rows.contains(&vec![
            "web",
            "docker.io/library/nginx:latest",
            "io.containerd.runc.v2"
        ]),
        "{ls}"
    );
    assert!(
        rows.contains(&vec!["job", "-", "io.containerd.runc.v2"]),
        "{ls}"
    );
    let mut quiet: Vec<String> = ok(a, "edge", &["containers", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    quiet.sort();
    assert_eq!(quiet, ["job", "web"]);
    assert_eq!(
        ok(a, "edge", &["c", "ls", "-q", "labels.app==web"]),
        "web\n"
    );
    assert_eq!(ok(a, "default", &["c", "ls", "-q"]), "");

    let info = ok(a, "edge", &["c", "info", "web"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["ID"], "web");
    assert_eq!(v["Image"], "docker.io/library/nginx:latest");
    assert_eq!(v["Labels"]["app"], "web");
    assert_eq!(v["Runtime"]["Name"], "io.containerd.runc.v2");
    assert_eq!(v["Snapshotter"], "overlayfs");
    assert_eq!(v["SnapshotKey"], "web");
    assert_eq!(v["Spec"]["hostname"], "web");
    assert_eq!(v["Spec"]["process"]["args"][0], "sh");
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'), "{info}");
    assert!(
        info.starts_with("{\n    \"ID\": \"web\",\n    \"Labels\": {"),
        "{info}"
    );
    let spec: serde_json::Value =
        serde_json::from_str(&ok(a, "edge", &["c", "info", "--spec", "web"])).unwrap();
    assert_eq!(spec["hostname"], "web");

    assert_eq!(
        ok(a, "edge", &["c", "label", "web", "tier=front", "app="]),
        "tier=front\n"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(a, "edge", &["c", "info", "web"])).unwrap();
    assert_eq!(v["Labels"], serde_json::json!({"tier": "front"}));

    let missing = ctl(a, "edge", &["c", "info", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );

    ok(a, "edge", &["c", "rm", "--keep-snapshot", "web"]);
    ok(a, "edge", &["container", "delete", "job"]);
    assert_eq!(ok(a, "edge", &["c", "ls", "-q"]), "");
    let gone = ctl(a, "edge", &["c", "rm", "web"]);
    assert_eq!(gone.status.code(), Some(1));

    // Leases.
    assert_eq!(
        ok(a, "edge", &["leases", "create", "--id", "l1", "k=v"]),
        "l1\n"
    );
    let generated = ok(a, "edge", &["leases", "create", "--expires", "0"]);
    let generated = generated.trim();
    assert!(!generated.is_empty());
    let ls = ok(a, "edge", &["leases", "ls"]);
    assert!(ls.starts_with("ID"), "{ls}");
    let l1 = ls.lines().find(|l| l.starts_with("l1 ")).expect(&ls);
    assert!(l1.contains("containerd.io/gc.expire="), "{ls}");
    assert!(l1.contains("k=v"), "{ls}");
    let g = ls.lines().find(|l| l.starts_with(generated)).expect(&ls);
    assert!(g.trim_end().ends_with(" -"), "{ls}");
    let mut ids: Vec<String> = ok(a, "edge", &["leases", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    ids.sort();
    let mut want = vec!["l1".to_string(), generated.to_string()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(
        ok(a, "edge", &["leases", "rm", "--sync", "l1", generated]),
        format!("l1\n{generated}\n")
    );
    assert_eq!(ok(a, "edge", &["leases", "ls", "-q"]), "");

    // Events: a concurrent corralctl's namespace create shows up.
    let mut events = corralctl();
    events
        .arg("-a")
        .arg(a)
        .arg("events")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut guard = ChildGuard::spawn("corralctl events", &mut events).unwrap();
    let out = guard.child_mut().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = None;
    let mut n = 0;
    while seen.is_none() && Instant::now() < deadline {
        n += 1;
        let name = format!("evt{n}");
        ok(a, "default", &["ns", "create", &name]);
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if line.contains("/namespaces/create") && line.contains(&format!("\"{name}\"")) {
                seen = Some((name.clone(), line));
                break;
            }
        }
    }
    let (name, line) = seen.expect("corralctl events saw no namespace create");
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    // <date> <time> +0000 UTC <namespace> <topic> <json>
    assert_eq!(fields[2], "+0000", "{line}");
    assert_eq!(fields[3], "UTC", "{line}");
    assert_eq!(fields[5], "/namespaces/create", "{line}");
    let ev: serde_json::Value = serde_json::from_str(fields[6]).unwrap();
    assert_eq!(ev["name"], name.as_str(), "{line}");
    guard.kill().unwrap();

    // Removing namespaces prints them; a missing one is not an error, as in ctr.
    assert_eq!(
        ok(a, "default", &["ns", "rm", "edge", "never-was"]),
        "edge\nnever-was\n"
    );
    assert!(!ok(a, "default", &["ns", "ls", "-q"])
        .lines()
        .any(|l| l == "edge"));
}

/// A daemon whose Containers service has `List` but not `ListStream` (Unimplemented, as the
/// generated trait's default answers): `c ls` falls back to `List`, as containerd's client does.
#[test]
fn containers_ls_falls_back_to_list_without_list_stream() {
    use std::sync::Arc;

    use corral_protocols::rpc::{RequestContext, RpcResult, Server, ServerConfig, ServiceSet};
    use corral_protocols::services::containers::v1::containers::{
        ListContainersRequest, ListContainersResponse,
    };
    use corral_protocols::services::containers::v1::containers_rpc::{
        register_containers, Containers,
    };

    struct OnlyList;
    impl Containers for OnlyList {
        fn list(
            &self,
            _ctx: &RequestContext,
            _req: ListContainersRequest,
        ) -> RpcResult<ListContainersResponse> {
            let mut resp = ListContainersResponse::new();
            for id in ["old-a", "old-b"] {
                let mut c = Container::new();
                c.id = id.into();
                c.image = "docker.io/library/busybox:latest".into();
                resp.containers.push(c);
            }
            Ok(resp)
        }
    }

    let temp = TempRoot::new().unwrap();
    let sock = temp.join("only-list.sock");
    let mut set = ServiceSet::new();
    register_containers(&mut set, Arc::new(OnlyList));
    let server = Server::new(set, ServerConfig::default());
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let serving = {
        let server = server.clone();
        std::thread::spawn(move || server.serve(&listener))
    };
    let out = ctl(&sock, "default", &["c", "ls", "-q"]);
    server.shutdown(Duration::from_secs(2));
    let _ = serving.join();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "old-a\nold-b\n");
}
