//! `corralctl containers create` as a user drives it: against a private corrald, the records
//! it creates (`c info`, `c info --spec`, `c ls`) and its errors; against a private
//! containerd 1.6, the spec `ctr` stores for the same flags, which must be the same JSON.

use std::path::PathBuf;

use corral_protocols::rpc::{CallContext, Client, Code};
use corral_protocols::services::images::v1::images::GetImageRequest;
use corral_protocols::services::images::v1::images_rpc::ImagesClient;
use corral_tests::ctl::{corralctl, ctl, fails, ok, stderr};
use corral_tests::harness::{require_root, require_tool, Corrald, PrivateContainerd, TempRoot};
use serde_json::{json, Value};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A root filesystem directory with users and groups.
fn rootfs(temp: &TempRoot) -> PathBuf {
    let dir = temp.join("rootfs");
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nweb:x:1001:\nwheel:x:10:root,web\naudio:x:29:web\n",
    )
    .unwrap();
    dir
}

#[test]
fn create_records_what_was_asked() {
    if !require_root("runs corrald on a private root") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let daemon = Corrald::start(&temp, "corrald.log", "").unwrap();
    daemon.version().expect("corrald's Version call");
    let a = daemon.socket();
    let rootfs = rootfs(&temp);
    let root = rootfs.to_str().unwrap();

    // Nothing printed on success, as ctr.
    assert_eq!(
        ok(a, "edge", &["c", "create", "--rootfs", root, "plain"]),
        ""
    );
    let info = json_of(&ok(a, "edge", &["c", "info", "plain"]));
    assert_eq!(info["ID"], "plain");
    assert_eq!(info["Image"], "");
    assert_eq!(info["Labels"], Value::Null);
    assert_eq!(info["Snapshotter"], "");
    assert_eq!(info["SnapshotKey"], "");
    assert_eq!(
        info["Runtime"],
        json!({"Name": "io.containerd.corral.v2", "Options": {"type_url": "containerd.runc.v1.Options"}})
    );
    let spec = &info["Spec"];
    assert_eq!(spec["ociVersion"], "1.0.2-dev");
    assert_eq!(spec["root"], json!({"path": root}));
    assert_eq!(spec["linux"]["cgroupsPath"], "/edge/plain");
    assert!(spec["process"].get("args").is_none(), "{spec}");

    // Flags, with the command after the id; dashes after the command are its own.
    ok(
        a,
        "edge",
        &[
            "c",
            "create",
            "--rootfs",
            "--env",
            "A=1",
            "--cwd",
            "/w",
            "--label",
            "app=web",
            "-t",
            "--hostname",
            "box",
            "-u",
            "web",
            "--memory-limit",
            "1048576",
            "--runc-binary",
            "crun",
            "--annotation",
            "note=x",
            root,
            "web",
            "sh",
            "-c",
            "echo hi",
        ],
    );
    let info = json_of(&ok(a, "edge", &["c", "info", "web"]));
    assert_eq!(info["Labels"], json!({"app": "web"}));
    assert_eq!(info["Runtime"]["Name"], "io.containerd.corral.v2");
    assert_eq!(
        info["Runtime"]["Options"]["type_url"],
        "containerd.runc.v1.Options"
    );
    // binary_name = "crun", field 6.
    assert_eq!(info["Runtime"]["Options"]["value"], "MgRjcnVu");
    let spec = json_of(&ok(a, "edge", &["c", "info", "--spec", "web"]));
    assert_eq!(spec, info["Spec"]);
    assert_eq!(spec["process"]["args"], json!(["sh", "-c", "echo hi"]));
    assert_eq!(spec["process"]["env"], json!(["A=1", "TERM=xterm"]));
    assert_eq!(spec["process"]["cwd"], "/w");
    assert_eq!(spec["process"]["terminal"], true);
    assert_eq!(
        spec["process"]["user"],
        json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 10, 29]})
    );
    assert_eq!(spec["hostname"], "box");
    assert_eq!(spec["annotations"], json!({"app": "web", "note": "x"}));
    assert_eq!(
        spec["linux"]["resources"]["memory"],
        json!({"limit": 1048576})
    );

    // A numeric user and group need no files.
    ok(
        a,
        "edge",
        &["c", "create", "--rootfs", "-u", "5:6", root, "numeric"],
    );
    let spec = json_of(&ok(a, "edge", &["c", "info", "--spec", "numeric"]));
    assert_eq!(
        spec["process"]["user"],
        json!({"uid": 5, "gid": 6, "additionalGids": [6]})
    );

    // A relative rootfs is made absolute, as ctr does.
    let out = corralctl()
        .current_dir(temp.path())
        .arg("-a")
        .arg(a)
        .args(["-n", "edge", "c", "create", "--rootfs", "rootfs/./", "rel"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let spec = json_of(&ok(a, "edge", &["c", "info", "--spec", "rel"]));
    assert_eq!(spec["root"]["path"], root);

    // --config: the file's spec, with the labels as annotations.
    let config = temp.join("config.json");
    std::fs::write(
        &config,
        r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},
            "args":["true"],"cwd":"/"},"root":{"path":"rootfs"},"hostname":""}"#,
    )
    .unwrap();
    ok(
        a,
        "edge",
        &[
            "c",
            "create",
            "--config",
            config.to_str().unwrap(),
            "--label",
            "k",
            "fromfile",
        ],
    );
    let info = json_of(&ok(a, "edge", &["c", "info", "fromfile"]));
    assert_eq!(info["Labels"], json!({"k": "true"}));
    assert_eq!(
        info["Spec"],
        json!({"ociVersion": "1.0.2", "process": {"user": {"uid": 0, "gid": 0},
            "args": ["true"], "cwd": "/"}, "root": {"path": "rootfs"},
            "annotations": {"k": "true"}})
    );

    // c ls shows them all with the runtime.
    let ls = ok(a, "edge", &["c", "ls"]);
    let rows: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["CONTAINER", "IMAGE", "RUNTIME"], "{ls}");
    for id in ["plain", "web", "numeric", "rel", "fromfile"] {
        assert!(
            rows.contains(&vec![id, "-", "io.containerd.corral.v2"]),
            "{id}: {ls}"
        );
    }
    assert_eq!(
        ok(a, "edge", &["c", "ls", "-q", "labels.app==web"]),
        "web\n"
    );
    assert_eq!(ok(a, "default", &["c", "ls", "-q"]), "");
}

#[test]
fn create_errors_are_clear() {
    if !require_root("runs corrald on a private root") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let daemon = Corrald::start(&temp, "corrald.log", "").unwrap();
    daemon.version().expect("corrald's Version call");
    let a = daemon.socket();
    let rootfs = rootfs(&temp);
    let root = rootfs.to_str().unwrap();
    let create = |extra: &[&str]| -> Vec<String> {
        ["c", "create"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let fails_with = |extra: &[&str], want: &str| {
        let args = create(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = fails(a, "edge", &args);
        assert_eq!(err, format!("corralctl: {want}\n"), "{args:?}");
    };

    ok(a, "edge", &["c", "create", "--rootfs", root, "dup"]);
    fails_with(
        &["--rootfs", root, "dup"],
        "container \"dup\": already exists",
    );
    let err = fails(a, "edge", &["c", "create", "--rootfs", root, "bad id"]);
    assert!(
        err.starts_with("corralctl: ")
            && err.contains("\"bad id\"")
            && err.contains("invalid argument"),
        "{err}"
    );

    // Missing arguments, in ctr's words.
    fails_with(&[], "image ref must be provided: invalid argument");
    fails_with(
        &["--rootfs", root],
        "container id must be provided: invalid argument",
    );
    fails_with(
        &["--config", "/x.json"],
        "container id must be provided: invalid argument",
    );
    fails_with(
        &["--config", "/x.json", "id", "sh"],
        "with spec config file, only container id should be provided: invalid argument",
    );

    // An image: corrald either does not serve images or has none by that name.
    let image = "docker.io/library/busybox:latest";
    let images = ImagesClient::new(Client::connect(a.to_str().unwrap()).unwrap());
    let served = images.get(
        &CallContext::new().with_namespace("edge"),
        &GetImageRequest {
            name: image.into(),
            ..Default::default()
        },
    );
    let want = match served {
        Err(s) if s.code() == Code::UNIMPLEMENTED => format!(
            "image \"{image}\": corrald does not serve images yet; use --rootfs DIR or --config FILE"
        ),
        Err(s) if s.code() == Code::NOT_FOUND => s.message().to_string(),
        other => panic!("Images.Get of a missing image answered {other:?}"),
    };
    fails_with(&[image, "img"], &want);

    // Flags for features Corral lacks are refused, never ignored.
    for (flags, name) in [
        (&["--cni"][..], "--cni"),
        (&["--gpus", "0"], "--gpus"),
        (&["--uidmap", "0:1000:1"], "--uidmap"),
        (&["--gidmap", "0:1000:1"], "--gidmap"),
        (&["--remap-labels"], "--remap-labels"),
        (&["--apparmor-profile", "p"], "--apparmor-profile"),
        (
            &["--apparmor-default-profile", "p"],
            "--apparmor-default-profile",
        ),
        (&["--rdt-class", "c"], "--rdt-class"),
        (&["--seccomp"], "--seccomp"),
    ] {
        let mut extra: Vec<&str> = flags.to_vec();
        extra.extend(["--rootfs", root, "unsupported"]);
        fails_with(&extra, &format!("{name} is not supported yet"));
    }

    // Bad values.
    for (flags, want) in [
        (
            &["--cap-add", "SYS_ADMIN"][..],
            "capabilities must be specified with 'CAP_' prefix".to_string(),
        ),
        (
            &["--mount", "type=bind,bogus=1"],
            "mount option \"bogus\" not supported".to_string(),
        ),
        (
            &["--annotation", "novalue"],
            "invalid key=value format annotation: novalue".to_string(),
        ),
        (
            &["--with-ns", "net"],
            "joining a Linux namespace using --with-ns requires the format 'nstype:path'"
                .to_string(),
        ),
        (
            &["--cpus", "1", "--cpu-period", "1000"],
            "cpus and quota/period should be used separately".to_string(),
        ),
        (
            &["--device", "/dev/nope-corral"],
            "error stating device path: stat /dev/nope-corral: no such file or directory"
                .to_string(),
        ),
        (
            &["--env-file", "/nope/env"],
            "open /nope/env: no such file or directory".to_string(),
        ),
        (
            &["-u", "nobody"],
            "no users found".to_string(),
        ),
        (
            &["--runtime", "io.example.v1", "--runc-binary", "crun"],
            "specifying runc-binary, runc-root and runc-systemd-cgroup is only supported for the \"io.containerd.runc.v2\" and \"io.containerd.corral.v2\" runtimes".to_string(),
        ),
    ] {
        let mut extra: Vec<&str> = flags.to_vec();
        extra.extend(["--rootfs", root, "bad"]);
        fails_with(&extra, &want);
    }
    fails_with(
        &["--config", "/nope/spec.json", "x"],
        "cannot load spec config file: open /nope/spec.json: no such file or directory",
    );
    let garbage = temp.join("garbage.json");
    std::fs::write(&garbage, "{not json").unwrap();
    let err = fails(
        a,
        "edge",
        &["c", "create", "--config", garbage.to_str().unwrap(), "x"],
    );
    assert!(
        err.starts_with(
            "corralctl: decoding spec config file failed, current supported OCI runtime-spec : v1.0.2-dev: "
        ),
        "{err}"
    );
    // A value clap cannot read is a usage error (exit 2), as everywhere in corralctl.
    let out = ctl(
        a,
        "edge",
        &[
            "c",
            "create",
            "--memory-limit",
            "lots",
            "--rootfs",
            root,
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("--memory-limit"), "{}", stderr(&out));

    // None of the failures left a record behind.
    assert_eq!(ok(a, "edge", &["c", "ls", "-q"]), "dup\n");
}

/// A flag set run through ctr and corralctl. `run` sets hold flags that ctr 1.6 has only on
/// `ctr run`: ctr creates the record there and then fails to start the empty rootfs's
/// command, which leaves the record to compare.
struct Case {
    name: &'static str,
    flags: Vec<String>,
    run: bool,
}

fn case(name: &'static str, flags: &[&str], run: bool) -> Case {
    Case {
        name,
        flags: flags.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

#[test]
fn specs_match_ctrs_on_containerd() {
    if !require_root("runs corrald and containerd on private roots") {
        return;
    }
    if require_tool("containerd").is_none() || require_tool("ctr").is_none() {
        return;
    }
    let containerd = PrivateContainerd::start().unwrap();
    let temp = TempRoot::new().unwrap();
    let daemon = Corrald::start(&temp, "corrald.log", "").unwrap();
    daemon.version().expect("corrald's Version call");
    let a = daemon.socket();
    // Both daemons work in containerd's private namespace name, so cgroupsPath is the same.
    let ns = containerd.namespace().to_string();
    let rootfs = containerd.temp().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let root = rootfs.to_str().unwrap().to_string();
    let env_file = containerd.temp().join("env");
    std::fs::write(&env_file, "FROM_FILE=1\nA=0\n").unwrap();
    let seccomp = containerd.temp().join("seccomp.json");
    std::fs::write(
        &seccomp,
        r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let cgroup = format!("/{ns}/custom-cg");
    let cases = [
        case("none", &[], false),
        case(
            "env-cwd-label-tty",
            &[
                "--env", "A=1", "--env", "B=2", "--cwd", "/w", "--label", "k=v", "-t",
            ],
            false,
        ),
        case("privileged", &["--privileged"], false),
        case("readonly-nethost", &["--read-only", "--net-host"], false),
        case(
            "caps",
            &["--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "CAP_KILL"],
            false,
        ),
        case(
            "mount",
            &["--mount", "type=bind,src=/tmp,dst=/mnt,options=rbind:ro"],
            false,
        ),
        case(
            "device",
            &["--device", "/dev/null", "--device", "/dev/zero"],
            false,
        ),
        case(
            "envfile-annotations-ns",
            &[
                "--env-file",
                env_file.to_str().unwrap(),
                "--env",
                "A=1",
                "--annotation",
                "x=y",
                "--with-ns",
                "ipc:/proc/1/ns/ipc",
                "--allow-new-privs",
                "--rootfs-propagation",
                "shared",
                "--cpu-quota",
                "5000",
                "--cpu-period",
                "10000",
                "--memory-limit",
                "67108864",
            ],
            false,
        ),
        case(
            "seccomp-profile",
            &["--seccomp", "--seccomp-profile", seccomp.to_str().unwrap()],
            false,
        ),
        case(
            "memory-cpus-shares",
            &[
                "--memory-limit",
                "1048576",
                "--cpus",
                "1.5",
                "--cpu-shares",
                "512",
            ],
            true,
        ),
        case(
            "cgroup-runc",
            &[
                "--cgroup",
                &cgroup,
                "--cpu-shares",
                "1024",
                "--runc-binary",
                "crun",
                "--runc-root",
                "/run/other-runc",
            ],
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let id = format!("cmp{i}");
        let mut ctr_args: Vec<String> = Vec::new();
        if c.run {
            ctr_args.push("run".into());
        } else {
            ctr_args.extend(["c".into(), "create".into()]);
        }
        ctr_args.extend(c.flags.iter().cloned());
        ctr_args.extend(["--rootfs".into(), root.clone(), id.clone()]);
        let cmd = ["/nonexistent", "arg1", "arg two"];
        ctr_args.extend(cmd.iter().map(|s| s.to_string()));
        let out = containerd.ctr_output(&ctr_args).unwrap();
        if !c.run {
            assert!(out.status.success(), "ctr {ctr_args:?}: {out:?}");
        }
        let mut ours: Vec<String> = vec!["c".into(), "create".into()];
        ours.extend(["--runtime".into(), "io.containerd.runc.v2".into()]);
        ours.extend(c.flags.iter().cloned());
        ours.extend(["--rootfs".into(), root.clone(), id.clone()]);
        ours.extend(cmd.iter().map(|s| s.to_string()));
        let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
        ok(a, &ns, &ours);

        let theirs = json_of(
            &containerd
                .ctr(["c", "info", &id])
                .unwrap_or_else(|e| panic!("{}: ctr c info: {e}", c.name)),
        );
        let mine = json_of(&ok(a, &ns, &["c", "info", &id]));
        for field in [
            "Labels",
            "Image",
            "Runtime",
            "SnapshotKey",
            "Snapshotter",
            "Spec",
        ] {
            if theirs[field] != mine[field] {
                failures.push(format!(
                    "{} ({:?}): {field} differs\nctr:       {}\ncorralctl: {}",
                    c.name,
                    c.flags,
                    serde_json::to_string(&theirs[field]).unwrap(),
                    serde_json::to_string(&mine[field]).unwrap()
                ));
            }
        }
        let spec_theirs = json_of(&containerd.ctr(["c", "info", "--spec", &id]).unwrap());
        let spec_mine = json_of(&ok(a, &ns, &["c", "info", "--spec", &id]));
        assert_eq!(spec_theirs, theirs["Spec"]);
        assert_eq!(spec_mine, mine["Spec"]);
    }

    // --config: both read the same file, zero values and all, into the same spec.
    let config = containerd.temp().join("config.json");
    std::fs::write(
        &config,
        r#"{"ociVersion":"1.0.2","hostname":"","process":{"terminal":false,
            "user":{"uid":0,"gid":0,"additionalGids":[]},"args":["sh"],"env":[],"cwd":"/",
            "noNewPrivileges":true,"capabilities":{"bounding":["CAP_KILL","CAP_CHOWN"],"ambient":[]},
            "rlimits":[{"type":"RLIMIT_NOFILE","hard":10,"soft":10}],"oomScoreAdj":0},
            "root":{"path":"rootfs","readonly":false},"mounts":[],"annotations":{"z":"1"},
            "linux":{"namespaces":[{"type":"pid","path":""}],"cgroupsPath":"","sysctl":{},
            "resources":{"devices":[{"allow":false,"access":"rwm"}],"cpu":{"shares":0,"cpus":""},
                "memory":{"limit":0},"pids":{"limit":0}},
            "seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],
                "action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":0,"valueTwo":0,
                "op":"SCMP_CMP_EQ"}]}]}}}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    containerd
        .ctr([
            "c", "create", "--config", config, "--label", "a=b", "fromfile",
        ])
        .unwrap();
    ok(
        a,
        &ns,
        &[
            "c",
            "create",
            "--runtime",
            "io.containerd.runc.v2",
            "--config",
            config,
            "--label",
            "a=b",
            "fromfile",
        ],
    );
    let theirs = json_of(&containerd.ctr(["c", "info", "fromfile"]).unwrap());
    let mine = json_of(&ok(a, &ns, &["c", "info", "fromfile"]));
    for field in [
        "Labels",
        "Image",
        "Runtime",
        "SnapshotKey",
        "Snapshotter",
        "Spec",
    ] {
        if theirs[field] != mine[field] {
            failures.push(format!(
                "--config: {field} differs\nctr:       {}\ncorralctl: {}",
                serde_json::to_string(&theirs[field]).unwrap(),
                serde_json::to_string(&mine[field]).unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    containerd.stop().unwrap();
}
