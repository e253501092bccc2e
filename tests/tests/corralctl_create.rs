//! `corralctl containers create` as a user drives it: against a private corrald, the records
//! it creates (`c info`, `c info --spec`, `c ls`) and its errors; against a private
//! containerd 1.6, the spec `ctr` stores for the same flags, which must be the same JSON.
//! Containers from images (the busybox fixture, and generated images with a full runtime
//! config) are compared the same way, with their snapshots, and deleted with them.

use std::path::PathBuf;

use std::io::Write;
use std::path::Path;
use std::process::Output;

use corral_protocols::services::snapshots::v1::snapshots::MountsRequest;
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::services::tasks::v1::tasks::{
    CreateTaskRequest, DeleteTaskRequest, KillRequest, StartRequest, WaitRequest,
};
use corral_protocols::services::tasks::v1::tasks_rpc::TasksClient;
use corral_tests::ctl::{corralctl, ctl, fails, ok, stderr, stdout};
use corral_tests::harness::{
    mounts_under, require_root, require_tool, wait_for, Corrald, PrivateContainerd, TempRoot,
};
use corral_tests::oci_archive::{digest, layer_tar, File};
use serde_json::{json, Value};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A corrald on `temp` that answers its Version call.
fn start_corrald(temp: &TempRoot) -> Corrald {
    let daemon = Corrald::start(temp, "corrald.log", "").unwrap();
    daemon.version().expect("corrald's Version call");
    daemon
}

/// A private containerd, and a corrald on a temporary root beside it; `None` (after saying
/// why) without root, containerd or ctr.
fn corrald_and_containerd(why: &str) -> Option<(PrivateContainerd, TempRoot, Corrald)> {
    if !require_root(why) {
        return None;
    }
    if require_tool("containerd").is_none() || require_tool("ctr").is_none() {
        return None;
    }
    let containerd = PrivateContainerd::start().unwrap();
    let temp = TempRoot::new().unwrap();
    let daemon = start_corrald(&temp);
    Some((containerd, temp, daemon))
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
    let daemon = start_corrald(&temp);
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
    let daemon = start_corrald(&temp);
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

    // An image corrald does not have, in containerd's words.
    let image = "docker.io/library/busybox:latest";
    fails_with(&[image, "img"], &format!("image \"{image}\": not found"));

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
    let Some((containerd, _temp, daemon)) =
        corrald_and_containerd("runs corrald and containerd on private roots")
    else {
        return;
    };
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
        failures.extend(differences(
            &format!("{} ({:?})", c.name, c.flags),
            &theirs,
            &mine,
            RECORD_FIELDS,
        ));
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
    failures.extend(differences("--config", &theirs, &mine, RECORD_FIELDS));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    containerd.stop().unwrap();
}

// ---- containers from images ----

/// The busybox fixture's name.
const BUSYBOX: &str = "docker.io/corral/busybox:latest";
/// The busybox fixture's one layer's diff ID: the chain ID its containers' snapshots sit on.
const BUSYBOX_CHAIN: &str =
    "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";
/// The fields of `c info` both daemons must agree on.
const RECORD_FIELDS: &[&str] = &[
    "Labels",
    "Image",
    "Runtime",
    "SnapshotKey",
    "Snapshotter",
    "Spec",
];
/// The fields of `snapshots info` both daemons must agree on.
const SNAPSHOT_FIELDS: &[&str] = &["Kind", "Name", "Parent", "Labels"];

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-oci.tar")
}

/// What differs between ctr's JSON and corralctl's in `fields`, one message per field.
fn differences(what: &str, theirs: &Value, mine: &Value, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .filter(|f| theirs[**f] != mine[**f])
        .map(|f| {
            format!(
                "{what}: {f} differs\nctr:       {}\ncorralctl: {}",
                serde_json::to_string(&theirs[*f]).unwrap(),
                serde_json::to_string(&mine[*f]).unwrap()
            )
        })
        .collect()
}

/// Writes an OCI layout archive of the linux/amd64 image `name`, one layer of `files` and the
/// runtime configuration `config`, to `out`; returns the layer's diff ID (the chain ID).
fn write_configured_image(out: &Path, name: &str, config: Value, files: &[File]) -> String {
    let tar = layer_tar(files).unwrap();
    let diff_id = digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest), "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name}}],
    }))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for blob in [&layer, &config, &manifest] {
        let d = digest(blob);
        add(&format!("blobs/sha256/{}", &d["sha256:".len()..]), blob);
    }
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
    diff_id
}

/// `corralctl -a A -n NS ARGS` with `TMPDIR=tmp` (and no `XDG_RUNTIME_DIR`), where it mounts
/// snapshots to read users from.
fn ctl_in(a: &Path, ns: &str, tmp: &Path, args: &[&str]) -> Output {
    let out = corralctl()
        .env("TMPDIR", tmp)
        .env_remove("XDG_RUNTIME_DIR")
        .arg("-a")
        .arg(a)
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(!stderr(&out).contains("panicked"), "{args:?}: {out:?}");
    out
}

/// The keys of a `snapshots ls` table, sorted.
fn snapshot_keys(table: &str) -> Vec<String> {
    let mut keys: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    keys.sort();
    keys
}

/// An error message (the last line; log lines before it differ in format) without the
/// program's `ctr: ` or `corralctl: ` and with the temporary directory a failed user lookup
/// names (`mount callback failed on <dir>: ...`) replaced.
fn normalized_error(text: &str) -> String {
    let text = text.trim_end();
    let text = text.rsplit('\n').next().unwrap_or(text);
    let text = text
        .strip_prefix("ctr: ")
        .or_else(|| text.strip_prefix("corralctl: "))
        .unwrap_or(text);
    match text.split_once("mount callback failed on ") {
        Some((before, rest)) => match rest.split_once(": ") {
            Some((_, after)) => format!("{before}mount callback failed on <dir>: {after}"),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

/// A container created through both ctr and corralctl.
struct ImageCase {
    name: &'static str,
    image: String,
    flags: Vec<String>,
    args: Vec<String>,
}

fn image_case(name: &'static str, image: &str, flags: &[&str], args: &[&str]) -> ImageCase {
    ImageCase {
        name,
        image: image.to_string(),
        flags: flags.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn image_containers_match_ctrs_on_containerd() {
    let Some((containerd, temp, daemon)) =
        corrald_and_containerd("runs corrald and containerd on private roots and mounts snapshots")
    else {
        return;
    };
    let a = daemon.socket();
    // Both daemons work in containerd's private namespace name, so cgroupsPath is the same.
    let ns = containerd.namespace().to_string();
    let tmp = temp.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let ours = |args: &[&str]| ctl_in(a, &ns, &tmp, args);
    let import_both = |archive: &Path| {
        let archive = archive.to_str().unwrap();
        containerd.ctr(["images", "import", archive]).unwrap();
        ok(a, &ns, &["images", "import", archive]);
    };

    // The fixture, with an image label, and images with a full runtime config whose users
    // and groups live in the image.
    import_both(&fixture());
    containerd
        .ctr(["images", "label", BUSYBOX, "team=image", "from.image=1"])
        .unwrap();
    ok(
        a,
        &ns,
        &["images", "label", BUSYBOX, "team=image", "from.image=1"],
    );
    let files = [
        File {
            path: "etc/passwd".into(),
            data: b"root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/srv:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n".to_vec(),
        },
        File {
            path: "etc/group".into(),
            data: b"root:x:0:\nwheel:x:10:root,web\nweb:x:1001:\naudio:x:29:web\nnogroup:x:65534:\n"
                .to_vec(),
        },
    ];
    let full = |user: &str| {
        json!({
            "User": user,
            "Env": ["PATH=/bin", "A=image", "B=image"],
            "Entrypoint": ["/bin/entry", "--flag"],
            "Cmd": ["default"],
            "WorkingDir": "/srv",
            "Labels": {"img.label": "1", "shared": "image"},
            "StopSignal": "SIGQUIT"
        })
    };
    let configured = |tag: &str| format!("docker.io/corral/configured:{tag}");
    let mut configured_chain = String::new();
    for (tag, config) in [
        ("web", full("web")),
        ("uid", full("1000")),
        ("group", full("web:wheel")),
        ("ghost", full("ghost")),
        ("bare", json!({})),
    ] {
        let archive = temp.join(format!("configured-{tag}.tar"));
        configured_chain = write_configured_image(&archive, &configured(tag), config, &files);
        import_both(&archive);
    }

    let cases = [
        image_case("plain", BUSYBOX, &[], &[]),
        image_case("args", BUSYBOX, &[], &["echo", "hi there", "-n"]),
        image_case(
            "env",
            BUSYBOX,
            &["--env", "A=1", "--env", "PATH=/x", "--env", "B"],
            &[],
        ),
        image_case("cwd", BUSYBOX, &["--cwd", "/tmp"], &[]),
        image_case("read-only", BUSYBOX, &["--read-only"], &[]),
        image_case("tty", BUSYBOX, &["-t"], &[]),
        image_case("native", BUSYBOX, &["--snapshotter", "native"], &[]),
        image_case(
            "snapshotter-labels",
            BUSYBOX,
            &["--snapshotter-label", "k=v", "--snapshotter-label", "bare"],
            &[],
        ),
        image_case(
            "labels",
            BUSYBOX,
            &["--label", "app=web", "--label", "team=flag"],
            &[],
        ),
        image_case("net-host", BUSYBOX, &["--net-host"], &[]),
        image_case("privileged", BUSYBOX, &["--privileged"], &[]),
        image_case("user-name", &configured("web"), &[], &[]),
        image_case(
            "user-id-env-args",
            &configured("uid"),
            &["--env", "A=flag", "--env", "C=new"],
            &["override", "args"],
        ),
        image_case(
            "user-group-label-cwd",
            &configured("group"),
            &["--label", "shared=flag", "--cwd", "/w"],
            &[],
        ),
        image_case("bare-config", &configured("bare"), &[], &[]),
    ];
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let id = format!("img{i}");
        let mut tail: Vec<&str> = vec![c.image.as_str(), id.as_str()];
        tail.extend(c.args.iter().map(String::as_str));
        let flags: Vec<&str> = c.flags.iter().map(String::as_str).collect();
        let mut ctr_args = vec!["c", "create"];
        ctr_args.extend(&flags);
        ctr_args.extend(&tail);
        containerd
            .ctr(&ctr_args)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let mut our_args = vec!["c", "create", "--runtime", "io.containerd.runc.v2"];
        our_args.extend(&flags);
        our_args.extend(&tail);
        let out = ours(&our_args);
        assert!(out.status.success(), "{}: {out:?}", c.name);
        assert_eq!(stdout(&out), "", "{}: create prints nothing", c.name);

        let theirs = json_of(&containerd.ctr(["c", "info", &id]).unwrap());
        let mine = json_of(&ok(a, &ns, &["c", "info", &id]));
        failures.extend(differences(c.name, &theirs, &mine, RECORD_FIELDS));
        assert_eq!(mine["Spec"]["root"]["path"], "rootfs", "{}", c.name);

        let snapshotter = match c.flags.iter().position(|f| f == "--snapshotter") {
            Some(at) => c.flags[at + 1].as_str(),
            None => "overlayfs",
        };
        let info = ["snapshots", "--snapshotter", snapshotter, "info", &id];
        let theirs = json_of(&containerd.ctr(info).unwrap());
        let mine = json_of(&ok(a, &ns, &info));
        failures.extend(differences(
            &format!("{} snapshot", c.name),
            &theirs,
            &mine,
            SNAPSHOT_FIELDS,
        ));
        let parent = if c.image == BUSYBOX {
            BUSYBOX_CHAIN
        } else {
            configured_chain.as_str()
        };
        // ctr prepares an active snapshot even with --read-only.
        assert_eq!(mine["Kind"], "Active", "{}: {mine}", c.name);
        assert_eq!(mine["Parent"], parent, "{}: {mine}", c.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // What the comparisons rest on: users resolved from each image's files, labels stacked.
    let spec_of = |id: &str| json_of(&ok(a, &ns, &["c", "info", "--spec", id]));
    let info_of = |id: &str| json_of(&ok(a, &ns, &["c", "info", id]));
    assert_eq!(
        spec_of("img0")["process"]["user"],
        json!({"uid": 0, "gid": 0, "additionalGids": [0]})
    );
    assert_eq!(
        spec_of("img11")["process"]["user"],
        json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 10, 29]})
    );
    assert_eq!(
        spec_of("img13")["process"]["user"],
        json!({"uid": 1000, "gid": 10, "additionalGids": [10, 29]})
    );
    assert_eq!(
        spec_of("img14")["process"]["user"],
        json!({"uid": 0, "gid": 0, "additionalGids": [0, 10]})
    );
    assert_eq!(
        spec_of("img12")["process"]["args"],
        json!(["override", "args"])
    );
    assert_eq!(
        info_of("img13")["Labels"],
        json!({"img.label": "1", "shared": "flag",
            "io.containerd.image.config.stop-signal": "SIGQUIT"})
    );
    assert_eq!(
        info_of("img8")["Labels"],
        json!({"app": "web", "team": "flag", "from.image": "1",
            "io.containerd.image.config.stop-signal": "SIGTERM"})
    );

    // Corralctl's -u (ctr 1.7's): the user resolved in the image's files, the rest of the
    // spec as ctr 1.6 made it without the flag.
    for (image, base, user, want) in [
        (
            BUSYBOX.to_string(),
            "img0",
            "0:0",
            json!({"uid": 0, "gid": 0, "additionalGids": [0]}),
        ),
        (
            BUSYBOX.to_string(),
            "img0",
            "root",
            json!({"uid": 0, "gid": 0, "additionalGids": [0]}),
        ),
        (
            configured("web"),
            "img11",
            "nobody",
            json!({"uid": 65534, "gid": 65534, "additionalGids": [65534]}),
        ),
        (
            configured("web"),
            "img11",
            "1000:10",
            json!({"uid": 1000, "gid": 10, "additionalGids": [10]}),
        ),
        (
            configured("web"),
            "img11",
            "web",
            json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 10, 29]}),
        ),
    ] {
        let id = format!("user-{}", user.replace(':', "."));
        let out = ours(&[
            "c",
            "create",
            "--runtime",
            "io.containerd.runc.v2",
            "-u",
            user,
            &image,
            &id,
        ]);
        assert!(out.status.success(), "-u {user}: {out:?}");
        let mut want_spec = json_of(&containerd.ctr(["c", "info", "--spec", base]).unwrap());
        want_spec["process"]["user"] = want;
        want_spec["linux"]["cgroupsPath"] = json!(format!("/{ns}/{id}"));
        assert_eq!(spec_of(&id), want_spec, "-u {user}");
        ok(a, &ns, &["c", "rm", &id]);
    }

    // --platform (ctr 1.6 has it on `run` only): the host's platform, as without it.
    let out = ours(&[
        "c",
        "create",
        "--runtime",
        "io.containerd.runc.v2",
        "--platform",
        "linux/amd64",
        BUSYBOX,
        "amd64",
    ]);
    assert!(out.status.success(), "{out:?}");
    let mut want_spec = spec_of("img0");
    want_spec["linux"]["cgroupsPath"] = json!(format!("/{ns}/amd64"));
    assert_eq!(spec_of("amd64"), want_spec);
    ok(a, &ns, &["c", "rm", "amd64"]);

    // Errors in ctr's words, and nothing left behind by a failed create.
    let compare_error = |what: &str, ctr_args: &[&str], our_args: &[&str]| {
        let out = containerd.ctr_output(ctr_args).unwrap();
        assert!(!out.status.success(), "{what}: ctr {ctr_args:?} succeeded");
        let out_ours = ours(our_args);
        assert_eq!(out_ours.status.code(), Some(1), "{what}: {out_ours:?}");
        assert_eq!(
            normalized_error(&stderr(&out_ours)),
            normalized_error(&stderr(&out)),
            "{what}"
        );
    };
    let missing = "docker.io/corral/missing:latest";
    compare_error(
        "unknown image",
        &["c", "create", missing, "nope"],
        &["c", "create", missing, "nope"],
    );
    // The id of an image container: its snapshot key is taken, and the snapshot stays.
    compare_error(
        "id with a snapshot",
        &["c", "create", BUSYBOX, "img0"],
        &["c", "create", BUSYBOX, "img0"],
    );
    let info = ["snapshots", "info", "img0"];
    assert_eq!(json_of(&ok(a, &ns, &info))["Kind"], "Active");
    // The id of a container without a snapshot: the new snapshot is removed again.
    let rootfs = temp.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let rootfs = rootfs.to_str().unwrap();
    containerd
        .ctr(["c", "create", "--rootfs", rootfs, "taken"])
        .unwrap();
    ok(a, &ns, &["c", "create", "--rootfs", rootfs, "taken"]);
    compare_error(
        "id of a rootfs container",
        &["c", "create", BUSYBOX, "taken"],
        &["c", "create", BUSYBOX, "taken"],
    );
    let gone = |key: &str| {
        let err = fails(a, &ns, &["snapshots", "info", key]);
        assert!(err.contains("not found"), "{key}: {err}");
    };
    gone("taken");
    // A user the image does not have: found missing in the mounted snapshot.
    compare_error(
        "unknown image user",
        &["c", "create", &configured("ghost"), "ghost"],
        &["c", "create", &configured("ghost"), "ghost"],
    );
    gone("ghost");
    let err = fails(a, &ns, &["c", "info", "ghost"]);
    assert!(err.contains("not found"), "{err}");
    // -u with a name the image lacks, after the snapshot was prepared.
    let out = ours(&["c", "create", "-u", "nobody", BUSYBOX, "no-nobody"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        normalized_error(&stderr(&out)) == "mount callback failed on <dir>: no users found",
        "{}",
        stderr(&out)
    );
    gone("no-nobody");
    // Every temporary mount is gone, and so is every lease.
    assert_eq!(
        mounts_under(&tmp).unwrap(),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "{:?}",
        std::fs::read_dir(&tmp).unwrap().collect::<Vec<_>>()
    );
    assert_eq!(ok(a, &ns, &["leases", "ls", "-q"]), "");

    // Deleting: the snapshot goes with the container unless kept, in both. The snapshots are
    // made collector roots first, so only the delete itself can remove them.
    for id in ["img0", "img1", "img2", "img6"] {
        let snapshotter = if id == "img6" { "native" } else { "overlayfs" };
        let label = [
            "snapshots",
            "--snapshotter",
            snapshotter,
            "label",
            id,
            "containerd.io/gc.root=test",
        ];
        containerd.ctr(label).unwrap();
        ok(a, &ns, &label);
    }
    for args in [
        &["c", "rm", "img0", "img2"][..],
        &["c", "delete", "--keep-snapshot", "img1"],
        &["c", "rm", "img6"],
    ] {
        containerd.ctr(args).unwrap();
        assert_eq!(ok(a, &ns, args), "", "{args:?}");
    }
    gone("img0");
    gone("img2");
    assert_eq!(
        json_of(&ok(a, &ns, &["snapshots", "info", "img1"]))["Kind"],
        "Active"
    );
    compare_error(
        "info of a deleted container",
        &["c", "info", "img1"],
        &["c", "info", "img1"],
    );
    compare_error(
        "deleting a missing container",
        &["c", "rm", "img0"],
        &["c", "rm", "img0"],
    );
    for snapshotter in ["overlayfs", "native"] {
        let ls = ["snapshots", "--snapshotter", snapshotter, "ls"];
        // containerd leaves the snapshots of its failed creates to its collector.
        let theirs: Vec<String> = snapshot_keys(&containerd.ctr(ls).unwrap())
            .into_iter()
            .filter(|k| k != "taken" && k != "ghost")
            .collect();
        assert_eq!(snapshot_keys(&ok(a, &ns, &ls)), theirs, "{snapshotter}");
    }
    containerd.stop().unwrap();
}

#[test]
fn deleting_a_container_deletes_its_stopped_task_and_refuses_a_running_one() {
    if !require_root("runs corrald and a container") || require_tool("runc").is_none() {
        return;
    }
    let ns = "rm-task";
    let cgroups = corral_tests::harness::cgroups::NamespaceCgroups::watch(ns).unwrap();
    let temp = TempRoot::new().unwrap();
    let daemon = start_corrald(&temp);
    let a = daemon.socket();
    ok(a, ns, &["images", "import", fixture().to_str().unwrap()]);
    ok(a, ns, &["c", "create", BUSYBOX, "busy", "sleep", "60"]);

    // A task made as ctr makes one: on the container's snapshot.
    let client = daemon.client().unwrap();
    let ctx = Corrald::ctx(ns);
    let mounts = SnapshotsClient::new(client.clone())
        .mounts(
            &ctx,
            &MountsRequest {
                snapshotter: "overlayfs".into(),
                key: "busy".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .mounts;
    let tasks = TasksClient::new(client);
    let create = |id: &str| {
        tasks
            .create(
                &ctx,
                &CreateTaskRequest {
                    container_id: id.into(),
                    rootfs: mounts.clone(),
                    ..Default::default()
                },
            )
            .unwrap_or_else(|s| panic!("{s}; corrald's log: {}", daemon.log_text()))
    };
    create("busy");
    let start = StartRequest {
        container_id: "busy".into(),
        ..Default::default()
    };
    tasks.start(&ctx, &start).unwrap();
    // ctr's `c rm` refuses a running task, and leaves everything as it was.
    let refused = ctl(a, ns, &["c", "rm", "busy"]);
    let delete_task = || {
        tasks.delete(
            &ctx,
            &DeleteTaskRequest {
                container_id: "busy".into(),
                ..Default::default()
            },
        )
    };
    if refused.status.code() != Some(1) {
        let _ = delete_task();
    }
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert_eq!(
        normalized_error(&stderr(&refused)),
        "cannot delete a non stopped container: {running 0 0001-01-01 00:00:00 +0000 UTC}"
    );
    assert_eq!(
        json_of(&ok(a, ns, &["snapshots", "info", "busy"]))["Kind"],
        "Active"
    );
    // The library call behind `run --rm` (containerd's Container.Delete) refuses any task.
    let kill = KillRequest {
        container_id: "busy".into(),
        signal: 9,
        ..Default::default()
    };
    tasks.kill(&ctx, &kill).unwrap();
    let wait = WaitRequest {
        container_id: "busy".into(),
        ..Default::default()
    };
    assert_eq!(tasks.wait(&ctx, &wait).unwrap().exit_status, 137);
    // A stopped task goes first, then the container and its snapshot.
    ok(a, ns, &["c", "rm", "busy"]);
    assert_eq!(
        delete_task().unwrap_err().code(),
        corral_protocols::rpc::Code::NOT_FOUND
    );
    let err = fails(a, ns, &["snapshots", "info", "busy"]);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(ok(a, ns, &["c", "ls", "-q"]), "");
    // The bundle is renamed away before the delete answers, and its files removed soon after.
    let bundles = temp.state().join("io.containerd.runtime.v2.task").join(ns);
    let names = || -> Vec<String> {
        std::fs::read_dir(&bundles)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(!names().contains(&"busy".to_string()), "{:?}", names());
    wait_for(
        std::time::Duration::from_secs(10),
        "the bundle's removal",
        || names().is_empty(),
    )
    .unwrap();
    drop(daemon);
    assert_eq!(
        cgroups.remove(std::time::Duration::from_secs(10)),
        Vec::<PathBuf>::new()
    );
}
