//! `corralctl images` against a private corrald, and against a private containerd 1.6 on the
//! same content: the busybox fixture (an OCI layout) and a `docker save` archive built here
//! from its blobs are imported, listed, checked, unpacked into the chain-ID snapshot, mounted,
//! exported and imported again, deleted without leftovers, refused when damaged, and handed
//! between the two daemons both ways.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_daemon::content::digest::from_bytes as digest_of;
use corral_daemon::diff::compression::decompress_stream;
use corral_protocols::rpc::{CallContext, Client, Code};
use corral_protocols::services::content::v1::content::ListContentRequest;
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_protocols::services::snapshots::v1::snapshots::{
    Kind, ListSnapshotsRequest, StatSnapshotRequest,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::services::version::v1::version_rpc::VersionClient;
use corral_tests::bins::corral_binary;
use corral_tests::ctl::{corralctl, ctl, fails, ok, stderr, stdout};
use corral_tests::harness::{
    mounts_under, require_root, require_tool, wait_for_socket, ChildGuard, ContainerdOptions,
    PrivateContainerd, TempRoot,
};

const IMAGE: &str = "docker.io/corral/busybox:latest";
const MANIFEST: &str = "sha256:6abfdf51754e174ff484e1bc94c12bae92afe269e6aa36d9f93b05ec496f13f6";
const CONFIG: &str = "sha256:e22153cfbf8f11421b36c58b76686beaedcc6a033ac908cc4647d3e57807f0f0";
const LAYER: &str = "sha256:bd45cf941c51781cb1b4cc87cb6a526cf6bb5e3e85bf34876acfb6992c3b1029";
/// The layer's diff ID, which is the chain ID of the one-layer image.
const CHAIN: &str = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-oci.tar")
}

// ---- running corralctl ----

/// Rows of a table, split on whitespace, header included.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

// ---- a private corrald ----

struct Daemon {
    guard: ChildGuard,
    address: PathBuf,
}

impl Daemon {
    /// Stops corrald (SIGTERM), so another daemon may open its root.
    fn stop(mut self) {
        let status = self.guard.stop().unwrap();
        assert!(status.success(), "corrald exited with {status}");
    }
}

/// Starts corrald with `root` and `temp`'s state directory.
fn start_corrald(temp: &TempRoot, root: &Path) -> Daemon {
    let address = temp.join("corral.sock");
    let mut cmd = Command::new(corral_binary("corrald").unwrap());
    cmd.arg("--root")
        .arg(root)
        .arg("--state")
        .arg(temp.state())
        .arg("--address")
        .arg(&address)
        .stdout(Stdio::null())
        .stderr(fs::File::create(temp.join("corrald.log")).unwrap());
    let guard = ChildGuard::spawn("corrald", &mut cmd).unwrap();
    temp.register_pid(guard.pid()).unwrap();
    wait_for_socket(&address, Duration::from_secs(10)).unwrap();
    let client = Client::connect(address.to_str().unwrap()).unwrap();
    VersionClient::new(client)
        .version(&CallContext::new(), &Default::default())
        .unwrap();
    Daemon { guard, address }
}

/// Runs corrald's garbage collector to completion: a lease created and deleted with
/// `--sync` (as `ctr` can do to containerd).
fn collect_corrald(a: &Path, ns: &str) {
    let id = ok(a, ns, &["leases", "create", "--expires", "0"]);
    ok(a, ns, &["leases", "rm", "--sync", id.trim()]);
}

/// Every blob corrald's namespace `ns` lists, with its labels.
fn corrald_content(a: &Path, ns: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let client = ContentClient::new(Client::connect(a.to_str().unwrap()).unwrap());
    let ctx = CallContext::new().with_namespace(ns);
    let mut out = BTreeMap::new();
    for msg in client.list(&ctx, &ListContentRequest::new()).unwrap() {
        for info in msg.unwrap().info {
            out.insert(info.digest.clone(), info.labels.into_iter().collect());
        }
    }
    out
}

fn stat_snapshot(a: &Path, ns: &str, key: &str) -> Result<(Kind, String), Code> {
    let client = SnapshotsClient::new(Client::connect(a.to_str().unwrap()).unwrap());
    let ctx = CallContext::new().with_namespace(ns);
    let req = StatSnapshotRequest {
        snapshotter: "overlayfs".into(),
        key: key.into(),
        ..Default::default()
    };
    match client.stat(&ctx, &req) {
        Ok(r) => {
            let info = r.info.unwrap();
            Ok((info.kind.enum_value().unwrap(), info.parent))
        }
        Err(s) => Err(s.code()),
    }
}

/// The keys of every snapshot in `ns` (overlayfs).
fn snapshot_keys(a: &Path, ns: &str) -> Vec<String> {
    let client = SnapshotsClient::new(Client::connect(a.to_str().unwrap()).unwrap());
    let ctx = CallContext::new().with_namespace(ns);
    let req = ListSnapshotsRequest {
        snapshotter: "overlayfs".into(),
        ..Default::default()
    };
    let mut keys: Vec<String> = Vec::new();
    for msg in client.list(&ctx, &req).unwrap() {
        keys.extend(msg.unwrap().info.into_iter().map(|i| i.name));
    }
    keys.sort();
    keys
}

/// Entries of a directory (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn blob_files(root: &Path) -> Vec<String> {
    entries(&root.join("io.containerd.content.v1.content/blobs/sha256"))
}

fn snapshot_dirs(root: &Path) -> Vec<String> {
    entries(&root.join("io.containerd.snapshotter.v1.overlayfs/snapshots"))
}

// ---- archives ----

/// The files of a plain tar (ustar, short names), in order.
fn read_tar(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= data.len() {
        let h = &data[at..at + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let name = String::from_utf8(h[..100].split(|b| *b == 0).next().unwrap().to_vec()).unwrap();
        let size_field = std::str::from_utf8(&h[124..136]).unwrap();
        let size =
            usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        let kind = h[156];
        at += 512;
        if kind == b'0' || kind == 0 {
            out.push((name, data[at..at + size].to_vec()));
        }
        at += size.div_ceil(512) * 512;
    }
    out
}

/// A plain ustar archive of `files`, mtime 0, owned by root.
fn write_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let mut field = |at: usize, len: usize, value: u64| {
            let s = format!("{value:0w$o}\0", w = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        field(100, 8, 0o644);
        field(108, 8, 0);
        field(116, 8, 0);
        field(124, 12, data.len() as u64);
        field(136, 12, 0);
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn blob<'a>(files: &'a [(String, Vec<u8>)], digest: &str) -> &'a [u8] {
    let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    &files.iter().find(|(n, _)| *n == name).unwrap().1
}

/// A `docker save` archive of the fixture's image: `manifest.json`, the config as
/// `<hex>.json`, and the layer uncompressed as `<id>/layer.tar` beside a `VERSION` file.
fn docker_archive(path: &Path) {
    let oci = read_tar(&fs::read(fixture()).unwrap());
    let config = blob(&oci, CONFIG).to_vec();
    let mut layer = Vec::new();
    decompress_stream(blob(&oci, LAYER))
        .unwrap()
        .reader
        .read_to_end(&mut layer)
        .unwrap();
    assert_eq!(digest_of(&layer), CHAIN);
    let hex = CONFIG.trim_start_matches("sha256:");
    let manifest = format!(
        r#"[{{"Config":"{hex}.json","RepoTags":["corral/busybox:docker"],"Layers":["0123abcd/layer.tar"]}}]"#
    );
    let files = vec![
        ("manifest.json".to_string(), manifest.into_bytes()),
        (format!("{hex}.json"), config),
        ("0123abcd/VERSION".to_string(), b"1.0".to_vec()),
        ("0123abcd/layer.tar".to_string(), layer),
    ];
    fs::write(path, write_tar(&files)).unwrap();
}

// ---- a private containerd ----

/// `ctr content ls` as digest -> labels.
fn containerd_content(
    c: &PrivateContainerd,
    ns: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = c.ctr(["-n", ns, "content", "ls"]).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').filter(|c| !c.is_empty()).collect();
        let labels = cols.last().unwrap();
        let labels: BTreeMap<String, String> = if *labels == "-" {
            BTreeMap::new()
        } else {
            labels
                .split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect()
        };
        out.insert(cols[0].to_string(), labels);
    }
    out
}

/// Runs containerd's collector to completion.
fn collect_containerd(c: &PrivateContainerd, ns: &str) {
    let id = c
        .ctr(["-n", ns, "leases", "create", "--expires", "0"])
        .unwrap();
    c.ctr(["-n", ns, "leases", "rm", "--sync", id.trim()])
        .unwrap();
}

/// Removes the cgroups runc made for namespace `ns` (`<hierarchy>/<ns>`), once empty.
struct NamespaceCgroups(String);

impl Drop for NamespaceCgroups {
    fn drop(&mut self) {
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![root.join(&self.0)];
        if let Ok(rd) = fs::read_dir(root) {
            dirs.extend(rd.flatten().map(|e| e.path().join(&self.0)));
        }
        let until = Instant::now() + Duration::from_secs(10);
        for dir in dirs.into_iter().filter(|d| d.is_dir()) {
            while fs::remove_dir(&dir).is_err() && dir.exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Checks a mounted busybox root file system.
fn assert_busybox(mnt: &Path) {
    let busybox = fs::symlink_metadata(mnt.join("bin/busybox")).unwrap();
    assert!(busybox.is_file() && busybox.len() > 100_000, "{busybox:?}");
    assert_eq!(busybox.permissions().mode() & 0o7777, 0o755);
    for link in ["sh", "ls", "echo", "cat"] {
        assert_eq!(
            fs::read_link(mnt.join("bin").join(link)).unwrap(),
            Path::new("busybox"),
            "{link}"
        );
    }
    assert_eq!(
        fs::metadata(mnt.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::read_to_string(mnt.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
}

// ---- tests ----

#[test]
fn images_help_has_ctrs_verbs_and_aliases() {
    for noun in ["images", "image", "i"] {
        let out = corralctl().args([noun, "--help"]).output().unwrap();
        assert!(out.status.success(), "{noun}: {out:?}");
        let help = stdout(&out);
        for verb in [
            "check", "export", "import", "list", "ls", "mount", "unmount", "delete", "del",
            "remove", "rm", "tag", "label", "usage",
        ] {
            assert!(
                help.split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w == verb),
                "{noun} help lacks {verb}:\n{help}"
            );
        }
    }
    for (verb, flags) in [
        (
            "import",
            &[
                "--base-name",
                "--digests",
                "--skip-digest-for-named",
                "--index-name",
                "--all-platforms",
                "--platform",
                "--no-unpack",
                "--compress-blobs",
                "--snapshotter",
            ][..],
        ),
        (
            "export",
            &[
                "--skip-manifest-json",
                "--skip-non-distributable",
                "--platform",
                "--all-platforms",
            ],
        ),
        ("ls", &["--quiet", "-q"]),
        ("check", &["--quiet", "--snapshotter"]),
        ("tag", &["--force"]),
        ("label", &["--replace-all"]),
        ("rm", &["--sync"]),
        ("mount", &["--rw", "--platform", "--snapshotter"]),
        ("unmount", &["--rm"]),
        ("usage", &["--snapshotter"]),
    ] {
        let out = corralctl()
            .args(["images", verb, "--help"])
            .output()
            .unwrap();
        let help = stdout(&out);
        for flag in flags {
            assert!(
                help.contains(flag),
                "images {verb} help lacks {flag}:\n{help}"
            );
        }
    }
    // Missing arguments are usage errors.
    for args in [
        &["images", "import"][..],
        &["images", "export", "out.tar"],
        &["i", "tag", "a"],
    ] {
        let out = corralctl().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn oci_archive_imports_lists_checks_unpacks_and_mounts() {
    if !require_root("runs corrald and mounts a snapshot") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let daemon = start_corrald(&temp, temp.root());
    let a = daemon.address.as_path();
    let tar = fixture();
    let tar = tar.to_str().unwrap();

    // Not a terminal: only ctr's unpack line.
    let out = ok(a, "default", &["images", "import", tar]);
    assert_eq!(out, format!("unpacking {IMAGE} ({MANIFEST})...done\n"));

    let ls = ok(a, "default", &["images", "ls"]);
    assert_eq!(
        rows(&ls),
        [
            vec!["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"],
            vec![
                IMAGE,
                MANIFEST_TYPE,
                MANIFEST,
                "1005.2",
                "KiB",
                "linux/amd64",
                "-"
            ],
        ]
    );
    assert_eq!(ok(a, "default", &["i", "ls", "-q"]), format!("{IMAGE}\n"));
    let filtered = ok(a, "default", &["images", "list", "-q", "name==nothing"]);
    assert_eq!(filtered, "");

    let check = ok(a, "default", &["images", "check"]);
    assert_eq!(
        rows(&check),
        [
            vec!["REF", "TYPE", "DIGEST", "STATUS", "SIZE", "UNPACKED"],
            vec![
                IMAGE,
                MANIFEST_TYPE,
                MANIFEST,
                "complete",
                "(2/2)",
                "1004.8",
                "KiB/1004.8",
                "KiB",
                "true"
            ],
        ]
    );
    assert_eq!(
        ok(a, "default", &["images", "check", "-q"]),
        format!("{IMAGE}\n")
    );

    // The blobs and their labels, once the import's leftovers (index.json) are collected.
    collect_corrald(a, "default");
    let content = corrald_content(a, "default");
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        content,
        BTreeMap::from([
            (
                MANIFEST.to_string(),
                labels(&[
                    ("containerd.io/gc.ref.content.config", CONFIG),
                    ("containerd.io/gc.ref.content.l.0", LAYER)
                ])
            ),
            (
                CONFIG.to_string(),
                labels(&[("containerd.io/gc.ref.snapshot.overlayfs", CHAIN)])
            ),
            (
                LAYER.to_string(),
                labels(&[("containerd.io/uncompressed", CHAIN)])
            ),
        ])
    );
    assert_eq!(
        stat_snapshot(a, "default", CHAIN),
        Ok((Kind::COMMITTED, String::new()))
    );
    // No extraction snapshot and no lease are left behind.
    assert_eq!(snapshot_keys(a, "default"), [CHAIN]);
    assert_eq!(rows(&ok(a, "default", &["leases", "ls", "-q"])).len(), 0);

    // Importing again changes nothing.
    ok(a, "default", &["images", "import", tar]);
    collect_corrald(a, "default");
    assert_eq!(corrald_content(a, "default"), content);

    // usage walks the chain.
    let usage = rows(&ok(a, "default", &["images", "usage", IMAGE]));
    assert_eq!(usage[0], ["KEY", "SIZE", "INODES"]);
    assert_eq!(usage.len(), 2);
    assert_eq!((usage[1][0].as_str(), usage[1][3].as_str()), (CHAIN, "30"));

    // tag and label.
    assert_eq!(
        ok(
            a,
            "default",
            &["images", "tag", IMAGE, "corral/bb:1", "corral/bb:2"]
        ),
        "corral/bb:1\ncorral/bb:2\n"
    );
    let err = fails(a, "default", &["images", "tag", IMAGE, "corral/bb:1"]);
    assert!(err.contains("already exists"), "{err}");
    ok(
        a,
        "default",
        &["images", "tag", "--force", IMAGE, "corral/bb:1"],
    );
    assert_eq!(
        ok(
            a,
            "default",
            &["images", "label", "corral/bb:1", "a=1", "b"]
        ),
        "a=1,b=true\n"
    );
    assert_eq!(
        ok(a, "default", &["images", "label", "corral/bb:1", "b="]),
        "a=1\n"
    );
    let ls = ok(a, "default", &["images", "ls", "labels.a==1"]);
    assert_eq!(rows(&ls)[1][0], "corral/bb:1");
    assert_eq!(rows(&ls)[1].last().unwrap(), "a=1");
    let out = ctl(
        a,
        "default",
        &["images", "rm", "corral/bb:1", "nope:1", "corral/bb:2"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "corral/bb:1\ncorral/bb:2\n");
    assert!(
        stderr(&out).contains("nope:1: image not found"),
        "{}",
        stderr(&out)
    );

    // mount: a read-only view of the chain, busybox inside; unmount --rm leaves nothing.
    let mnt = temp.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    assert_eq!(
        ok(a, "default", &["images", "mount", IMAGE, m]),
        format!("{CHAIN}\n{m}\n")
    );
    assert_busybox(&mnt);
    assert!(
        fs::write(mnt.join("x"), b"x").is_err(),
        "the view is read-only"
    );
    assert_eq!(
        stat_snapshot(a, "default", m),
        Ok((Kind::VIEW, CHAIN.to_string()))
    );
    assert_eq!(
        ok(a, "default", &["images", "unmount", "--rm", m]),
        format!("{m}\n")
    );
    assert!(mounts_under(&mnt).unwrap().is_empty());
    assert_eq!(stat_snapshot(a, "default", m), Err(Code::NOT_FOUND));
    assert_eq!(rows(&ok(a, "default", &["leases", "ls", "-q"])).len(), 0);
    // --rw: a writable snapshot on the chain.
    ok(a, "default", &["images", "mount", "--rw", IMAGE, m]);
    fs::write(mnt.join("written"), b"rw").unwrap();
    assert_eq!(
        stat_snapshot(a, "default", m),
        Ok((Kind::ACTIVE, CHAIN.to_string()))
    );
    ok(a, "default", &["images", "unmount", "--rm", m]);
    assert!(mounts_under(&mnt).unwrap().is_empty());
    assert!(!mnt.join("written").exists());
    daemon.stop();
}

#[test]
fn export_then_import_in_a_fresh_namespace_gives_the_same_digests() {
    if !require_root("runs corrald") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let daemon = start_corrald(&temp, temp.root());
    let a = daemon.address.as_path();
    ok(
        a,
        "first",
        &["images", "import", fixture().to_str().unwrap()],
    );
    ok(a, "first", &["images", "tag", IMAGE, "corral/again:2"]);
    let out = temp.join("export.tar");
    let o = out.to_str().unwrap();
    assert_eq!(
        ok(
            a,
            "first",
            &["images", "export", o, IMAGE, "corral/again:2"]
        ),
        ""
    );
    let files = read_tar(&fs::read(&out).unwrap());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut want = vec![blob(MANIFEST), blob(LAYER), blob(CONFIG)];
    want.sort();
    want.extend(["index.json", "manifest.json", "oci-layout"].map(String::from));
    assert_eq!(names, want);
    for (name, data) in &files {
        if name.starts_with("blobs/") {
            assert_eq!(blob(&digest_of(data)), *name);
        }
    }
    let index: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|f| f.0 == "index.json").unwrap().1).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    assert_eq!(
        manifests[0]["annotations"]["io.containerd.image.name"],
        IMAGE
    );
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    assert_eq!(
        manifests[1]["annotations"]["io.containerd.image.name"],
        "corral/again:2"
    );
    let docker: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|f| f.0 == "manifest.json").unwrap().1).unwrap();
    assert_eq!(
        docker,
        serde_json::json!([{
            "Config": blob(CONFIG),
            "RepoTags": ["corral/busybox:latest", "corral/again:2"],
            "Layers": [blob(LAYER)],
        }])
    );
    // Without manifest.json.
    let bare = temp.join("bare.tar");
    ok(
        a,
        "first",
        &[
            "images",
            "export",
            "--skip-manifest-json",
            bare.to_str().unwrap(),
            IMAGE,
        ],
    );
    assert!(read_tar(&fs::read(&bare).unwrap())
        .iter()
        .all(|f| f.0 != "manifest.json"));

    // Into a fresh namespace: the same images, digests and labels.
    ok(a, "second", &["images", "import", o]);
    let names = |ns: &str| -> Vec<(String, String)> {
        rows(&ok(a, ns, &["images", "ls"]))
            .into_iter()
            .skip(1)
            .map(|r| (r[0].clone(), r[2].clone()))
            .collect()
    };
    assert_eq!(names("second"), names("first"));
    collect_corrald(a, "first");
    collect_corrald(a, "second");
    assert_eq!(corrald_content(a, "second"), corrald_content(a, "first"));
    assert_eq!(
        stat_snapshot(a, "second", CHAIN),
        Ok((Kind::COMMITTED, String::new()))
    );
    // Unknown images and platforms are refused.
    let err = fails(a, "first", &["images", "export", o, "nope:1"]);
    assert!(err.contains("not found"), "{err}");
    daemon.stop();
}

#[test]
fn delete_sync_leaves_no_blob_and_no_snapshot() {
    if !require_root("runs corrald") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let daemon = start_corrald(&temp, temp.root());
    let a = daemon.address.as_path();
    let archive = temp.join("docker.tar");
    docker_archive(&archive);
    ok(
        a,
        "default",
        &["images", "import", fixture().to_str().unwrap()],
    );
    ok(
        a,
        "default",
        &["images", "import", archive.to_str().unwrap()],
    );
    collect_corrald(a, "default");
    // As containerd's importer does, the Docker manifest takes the gzip blob the store
    // already labels as the uncompressed layer's, so the uncompressed copy is not kept.
    let content = corrald_content(a, "default");
    assert_eq!(content.len(), 4, "{content:?}");
    let docker_manifest = content
        .iter()
        .find(|(d, _)| ![MANIFEST, CONFIG, LAYER].contains(&d.as_str()))
        .unwrap();
    assert_eq!(
        docker_manifest.1["containerd.io/gc.ref.content.l.0"], LAYER,
        "{content:?}"
    );
    assert_eq!(blob_files(temp.root()).len(), 4);
    assert_eq!(snapshot_dirs(temp.root()).len(), 1);
    let out = ok(
        a,
        "default",
        &[
            "images",
            "rm",
            "--sync",
            IMAGE,
            "docker.io/corral/busybox:docker",
        ],
    );
    assert_eq!(out, format!("{IMAGE}\ndocker.io/corral/busybox:docker\n"));
    assert_eq!(ok(a, "default", &["images", "ls", "-q"]), "");
    assert!(corrald_content(a, "default").is_empty());
    assert_eq!(blob_files(temp.root()), Vec::<String>::new());
    assert_eq!(snapshot_dirs(temp.root()), Vec::<String>::new());
    assert!(snapshot_keys(a, "default").is_empty());
    daemon.stop();
}

#[test]
fn damaged_archives_are_refused_and_leave_nothing() {
    if !require_root("runs corrald") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let daemon = start_corrald(&temp, temp.root());
    let a = daemon.address.as_path();
    let whole = fs::read(fixture()).unwrap();

    // Cut in the middle of the layer (the manifest before it is already written).
    let truncated = temp.join("truncated.tar");
    fs::write(&truncated, &whole[..600_000]).unwrap();
    let err = fails(
        a,
        "default",
        &["images", "import", truncated.to_str().unwrap()],
    );
    let layer_file = format!("blobs/sha256/{}", LAYER.trim_start_matches("sha256:"));
    assert_eq!(
        err,
        format!(
            "corralctl: failed to ingest {layer_file:?}: unexpected EOF: the archive is truncated\n"
        )
    );

    // A blob whose bytes do not match its name.
    let mut files = read_tar(&whole);
    let config_file = format!("blobs/sha256/{}", CONFIG.trim_start_matches("sha256:"));
    let config = files.iter_mut().find(|f| f.0 == config_file).unwrap();
    config.1 = String::from_utf8(config.1.clone())
        .unwrap()
        .replace("\"sh\"", "\"ls\"")
        .into_bytes();
    let actual = digest_of(&config.1);
    let lying = temp.join("lying.tar");
    fs::write(&lying, write_tar(&files)).unwrap();
    let err = fails(a, "default", &["images", "import", lying.to_str().unwrap()]);
    assert_eq!(
        err,
        format!(
            "corralctl: failed to ingest {config_file:?}: content has digest {actual}, not the expected {CONFIG}\n"
        )
    );

    // Not an image archive; not there at all; a platform the archive does not have.
    let other = temp.join("other.tar");
    fs::write(&other, write_tar(&[("README".into(), b"hi".to_vec())])).unwrap();
    let err = fails(a, "default", &["images", "import", other.to_str().unwrap()]);
    assert_eq!(err, "corralctl: unrecognized image format\n");
    let err = fails(a, "default", &["images", "import", "/nonexistent.tar"]);
    assert_eq!(
        err,
        "corralctl: open /nonexistent.tar: no such file or directory\n"
    );
    let err = fails(
        a,
        "default",
        &[
            "images",
            "import",
            "--platform",
            "linux/arm64",
            fixture().to_str().unwrap(),
        ],
    );
    assert_eq!(err, "corralctl: image might be filtered out\n");

    // Nothing is left: no image, no blob (listed or on disk), no ingest, no lease.
    assert_eq!(ok(a, "default", &["images", "ls", "-q"]), "");
    assert!(corrald_content(a, "default").is_empty());
    assert_eq!(blob_files(temp.root()), Vec::<String>::new());
    assert_eq!(
        entries(&temp.root().join("io.containerd.content.v1.content/ingest")),
        Vec::<String>::new()
    );
    assert_eq!(ok(a, "default", &["leases", "ls", "-q"]), "");
    daemon.stop();
}

#[test]
fn content_and_labels_equal_containerds() {
    if !require_root("runs corrald and a private containerd") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    let c = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        ..ContainerdOptions::default()
    })
    .unwrap();
    let temp = TempRoot::new().unwrap();
    let daemon = start_corrald(&temp, temp.root());
    let a = daemon.address.as_path();
    let archive = c.temp().join("docker.tar");
    docker_archive(&archive);
    let oci = fixture();
    for (ns, file, extra) in [
        ("oci", oci.as_path(), &[][..]),
        ("docker", archive.as_path(), &[][..]),
        (
            "named",
            oci.as_path(),
            &["--index-name", "my-index", "--digests"][..],
        ),
        (
            "base",
            oci.as_path(),
            &["--base-name", "docker.io/corral/busybox"][..],
        ),
    ] {
        let mut args = vec!["-n", ns, "images", "import"];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        let theirs = c.ctr(&args).unwrap();
        let ours = ok(a, ns, &args[2..]);
        assert_eq!(ours, theirs, "{ns}");
        let theirs = c.ctr(["-n", ns, "images", "ls"]).unwrap();
        assert_eq!(ok(a, ns, &["images", "ls"]), theirs, "{ns}");
        collect_containerd(&c, ns);
        collect_corrald(a, ns);
        assert_eq!(corrald_content(a, ns), containerd_content(&c, ns), "{ns}");
        let check = c.ctr(["-n", ns, "images", "check"]).unwrap();
        assert_eq!(ok(a, ns, &["images", "check"]), check, "{ns}");
    }
    // The same archive exported by both: the same index.json and manifest.json.
    let theirs = c.temp().join("theirs.tar");
    let ours = c.temp().join("ours.tar");
    c.ctr([
        "-n",
        "oci",
        "images",
        "export",
        theirs.to_str().unwrap(),
        IMAGE,
    ])
    .unwrap();
    ok(
        a,
        "oci",
        &["images", "export", ours.to_str().unwrap(), IMAGE],
    );
    let (theirs, ours) = (
        read_tar(&fs::read(&theirs).unwrap()),
        read_tar(&fs::read(&ours).unwrap()),
    );
    assert_eq!(ours, theirs);
    // Both refuse a platform the archive lacks, in the same words.
    let args = [
        "images",
        "import",
        "--platform",
        "linux/arm64",
        oci.to_str().unwrap(),
    ];
    let out = c
        .ctr_output(["-n", "refused"].iter().chain(args.iter()))
        .unwrap();
    assert!(!out.status.success());
    let theirs = stderr(&out);
    let ours = fails(a, "refused", &args);
    assert!(
        theirs
            .trim_end()
            .ends_with(ours.trim_start_matches("corralctl: ").trim_end()),
        "{theirs} / {ours}"
    );
    daemon.stop();
    c.stop().unwrap();
}

#[test]
fn containerd_runs_the_image_corrald_imported() {
    if !require_root("runs corrald, then containerd on its root") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    if require_tool("runc").is_none() {
        return;
    }
    let ns = format!("corral-images-{}", std::process::id());
    let _cgroups = NamespaceCgroups(ns.clone());
    let temp = TempRoot::new().unwrap();
    let root = temp.join("shared-root");
    fs::create_dir(&root).unwrap();
    let daemon = start_corrald(&temp, &root);
    ok(
        &daemon.address,
        &ns,
        &["images", "import", fixture().to_str().unwrap()],
    );
    daemon.stop();

    let c = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        root: Some(root.clone()),
        ..ContainerdOptions::default()
    })
    .unwrap();
    let ctr = |args: &[&str]| -> String {
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        c.ctr(&all)
            .unwrap_or_else(|e| panic!("ctr {args:?}: {e}\n{}", c.log_tail(30)))
    };
    let ls = rows(&ctr(&["images", "ls"]));
    assert_eq!(ls[1][..3], [IMAGE, MANIFEST_TYPE, MANIFEST]);
    let check = rows(&ctr(&["images", "check"]));
    assert_eq!(check[1].last().unwrap(), "true", "{check:?}");
    assert_eq!(
        ctr(&["run", "--rm", IMAGE, "t", "echo", "hello"]),
        "hello\n"
    );
    // containerd's own collector keeps everything the image holds.
    collect_containerd(&c, &ns);
    assert_eq!(rows(&ctr(&["images", "check"]))[1].last().unwrap(), "true");
    assert_eq!(
        rows(&ctr(&["snapshots", "ls"]))[1],
        [CHAIN.to_string(), "Committed".to_string()]
    );
    c.stop().unwrap();
}

#[test]
fn corralctl_mounts_the_image_containerd_imported() {
    if !require_root("runs containerd, then corrald on its root") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    let mut c = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        ..ContainerdOptions::default()
    })
    .unwrap();
    let ns = c.namespace().to_string();
    c.ctr(["images", "import", fixture().to_str().unwrap()])
        .unwrap();
    let status = c.stop_daemon().unwrap();
    assert!(status.success() || status.code().is_none(), "{status}");

    let temp = TempRoot::new().unwrap();
    let daemon = start_corrald(&temp, c.root());
    let a = daemon.address.as_path();
    let ls = rows(&ok(a, &ns, &["images", "ls"]));
    assert_eq!(ls[1][..3], [IMAGE, MANIFEST_TYPE, MANIFEST]);
    assert_eq!(
        rows(&ok(a, &ns, &["images", "check"]))[1].last().unwrap(),
        "true"
    );
    let mnt = temp.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    assert_eq!(
        ok(a, &ns, &["images", "mount", IMAGE, m]),
        format!("{CHAIN}\n{m}\n")
    );
    assert_busybox(&mnt);
    ok(a, &ns, &["images", "unmount", "--rm", m]);
    assert!(mounts_under(&mnt).unwrap().is_empty());
    // Nothing was unpacked again: the one snapshot containerd made, once the view is
    // collected.
    assert_eq!(snapshot_keys(a, &ns), [CHAIN]);
    collect_corrald(a, &ns);
    assert_eq!(snapshot_dirs(c.root()).len(), 1);
    daemon.stop();
    c.stop().unwrap();
}

/// ctr's `snapshots unpack DIGEST`: an image imported with `--no-unpack` is unpacked by its
/// target digest; an unknown digest is "manifest not found".
#[test]
fn snapshots_unpack_unpacks_an_image_by_digest() {
    if !require_root("mounts and owns snapshots") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let d = start_corrald(&temp, temp.root());
    let a = d.address.clone();
    ok(
        &a,
        "u",
        &[
            "images",
            "import",
            "--no-unpack",
            fixture().to_str().unwrap(),
        ],
    );
    assert_eq!(stat_snapshot(&a, "u", CHAIN), Err(Code::NOT_FOUND));
    let out = ok(&a, "u", &["snapshots", "unpack", MANIFEST]);
    assert_eq!(
        out,
        format!("unpacking {MANIFEST} ({MANIFEST_TYPE})...done\n")
    );
    assert_eq!(stat_snapshot(&a, "u", CHAIN).unwrap().0, Kind::COMMITTED);
    let missing = format!("sha256:{}", "0".repeat(64));
    let err = fails(&a, "u", &["snapshots", "unpack", &missing]);
    assert!(err.contains("manifest not found"), "{err}");
    let err = fails(&a, "u", &["snapshots", "unpack", "not-a-digest"]);
    assert!(err.contains("not-a-digest"), "{err}");
    d.stop();
}

/// A layer that climbs out of its root is refused at import: a clear error naming the entry,
/// nothing written outside the snapshot, no image record and no snapshot left behind.
#[test]
fn a_hostile_layer_is_refused_and_leaves_nothing() {
    if !require_root("mounts and owns snapshots") {
        return;
    }
    use corral_tests::oci_archive::{layer_tar, raw_entry_tar, write_image_of_tars, File};
    let temp = TempRoot::new().unwrap();
    let d = start_corrald(&temp, temp.root());
    let a = d.address.clone();
    let base = layer_tar(&[File {
        path: "etc/motd".into(),
        data: b"hello\n".to_vec(),
    }])
    .unwrap();
    let sentinel = temp.join("outside");
    fs::create_dir_all(&sentinel).unwrap();
    for (what, evil) in [
        (
            "dot-dot",
            raw_entry_tar(b"../../../../../../../../escape", b"x").unwrap(),
        ),
        ("absolute", raw_entry_tar(b"/escape", b"x").unwrap()),
    ] {
        let archive = temp.join(format!("{what}.tar"));
        write_image_of_tars(
            &archive,
            &format!("docker.io/corral/{what}:v1"),
            &[base.clone(), evil],
        )
        .unwrap();
        let err = fails(&a, "h", &["images", "import", archive.to_str().unwrap()]);
        assert!(err.contains("escape"), "{what}: {err}");
        assert!(!Path::new("/escape").exists(), "{what}: wrote /escape");
        assert_eq!(fs::read_dir(&sentinel).unwrap().count(), 0);
        let images = ok(&a, "h", &["images", "ls", "-q"]);
        assert!(!images.contains(what), "{what}: image left: {images}");
    }
    // The extraction snapshots are gone; only the good base layer may stay committed.
    collect_corrald(&a, "h");
    let keys = snapshot_keys(&a, "h");
    assert!(keys.iter().all(|k| !k.starts_with("extract-")), "{keys:?}");
    d.stop();
}
