//! The overlayfs snapshotter without mounting anything: directories, modes, mounts, usage,
//! errors. The mounts themselves are exercised in `tests/tests/snapshotters.rs`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use corral_protocols::rpc::Code;

use super::*;

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The options containerd puts in front of an overlay's directories on this machine.
fn leading_options(sn: &OverlaySnapshotter) -> Vec<String> {
    let mut o = Vec::new();
    if check::supports_index() {
        o.push("index=off".to_string());
    }
    if sn.userxattr {
        o.push("userxattr".to_string());
    }
    o
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn layout_modes_and_mounts_are_containerds() {
    let dir = tempfile::tempdir().unwrap();
    let root = OverlaySnapshotter::default_root(dir.path());
    let sn = OverlaySnapshotter::new(&root, OverlayConfig::default()).unwrap();
    assert_eq!(sn.name(), "overlayfs");
    assert_eq!(sn.root(), root);
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("snapshots")), 0o700);
    assert_eq!(mode(&root.join("metadata.db")), 0o600);

    let m = sn.prepare("extract", None, &none()).unwrap();
    let up1 = sn.upper_path(1).display().to_string();
    assert_eq!(m, [Mount::new("bind", up1.clone(), ["rw", "rbind"])]);
    assert_eq!(mode(&root.join("snapshots/1")), 0o700);
    assert_eq!(mode(&sn.upper_path(1)), 0o755);
    assert_eq!(mode(&sn.work_path(1)), 0o711);
    assert_eq!(entries(&root.join("snapshots")), ["1"]);

    fs::create_dir(sn.upper_path(1).join("bin")).unwrap();
    fs::write(sn.upper_path(1).join("bin/tool"), vec![1u8; 5000]).unwrap();
    let active = sn.usage("extract").unwrap();
    assert_eq!(active.inodes, 3);
    assert!(active.size >= 5000);
    sn.commit("base", "extract", &none()).unwrap();
    let base = sn.stat("base").unwrap();
    assert_eq!((base.kind, base.parent.as_deref()), (Kind::Committed, None));
    assert_eq!(sn.usage("base").unwrap(), active);
    // The layer's directory stays; its work dir is containerd's too.
    assert_eq!(entries(&root.join("snapshots/1")), ["fs", "work"]);

    let m = sn.prepare("top", Some("base"), &none()).unwrap();
    let mut want = leading_options(&sn);
    want.push(format!("workdir={}", sn.work_path(2).display()));
    want.push(format!("upperdir={}", sn.upper_path(2).display()));
    want.push(format!("lowerdir={up1}"));
    assert_eq!(
        m,
        [Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: want
        }]
    );
    assert_eq!(sn.mounts("top").unwrap(), m);

    // A view of one parent is that parent's layer, read-only, and gets no work dir.
    let m = sn.view("v1", Some("base"), &none()).unwrap();
    assert_eq!(m, [Mount::new("bind", up1.clone(), ["ro", "rbind"])]);
    assert_eq!(entries(&root.join("snapshots/3")), ["fs"]);

    fs::write(sn.upper_path(2).join("new"), b"x").unwrap();
    sn.commit("layer2", "top", &none()).unwrap();
    let m = sn.view("v2", Some("layer2"), &none()).unwrap();
    let mut want = leading_options(&sn);
    want.push(format!("lowerdir={}:{up1}", sn.upper_path(2).display()));
    assert_eq!(m[0].options, want);
    assert_eq!(m[0].kind, "overlay");
    let m = sn.view("lonely", None, &none()).unwrap();
    assert_eq!(m[0].options, ["ro", "rbind"]);
    assert_eq!(m[0].source, sn.upper_path(5).display().to_string());

    let mut kinds = Vec::new();
    sn.walk(&[], &mut |i| {
        kinds.push((i.name.clone(), i.kind));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        kinds,
        [
            ("base".to_string(), Kind::Committed),
            ("layer2".into(), Kind::Committed),
            ("lonely".into(), Kind::View),
            ("v1".into(), Kind::View),
            ("v2".into(), Kind::View)
        ]
    );
    let mut committed = Vec::new();
    sn.walk(&["kind==committed".into()], &mut |i| {
        committed.push(i.name.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(committed, ["base", "layer2"]);
}

#[test]
fn errors_carry_containerds_words_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sn = OverlaySnapshotter::new(dir.path(), OverlayConfig::default()).unwrap();
    sn.prepare("a", None, &none()).unwrap();
    let cases: Vec<(SnapshotResult<Vec<Mount>>, Code, &str)> = vec![
        (
            sn.prepare("a", None, &none()),
            Code::ALREADY_EXISTS,
            "failed to create snapshot: snapshot a: already exists",
        ),
        (
            sn.prepare("b", Some("a"), &none()),
            Code::INVALID_ARGUMENT,
            "failed to create snapshot: parent \"a\" is not committed snapshot: invalid argument",
        ),
        (
            sn.view("b", Some("nope"), &none()),
            Code::NOT_FOUND,
            "failed to create snapshot: missing parent \"nope\" bucket: not found",
        ),
        (
            sn.mounts("nope"),
            Code::NOT_FOUND,
            "failed to get active mount: snapshot does not exist: not found",
        ),
    ];
    for (r, code, msg) in cases {
        let e = r.unwrap_err();
        assert_eq!((e.code(), e.to_string().as_str()), (code, msg));
    }
    // The failed prepares left no new-XXXXXX directory behind.
    assert_eq!(entries(&dir.path().join("snapshots")), ["1"]);

    sn.commit("base", "a", &none()).unwrap();
    let e = sn.mounts("base").unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to get active mount: requested snapshot base not active or view: failed precondition"
    );
    let e = sn.commit("base", "gone", &none()).unwrap_err();
    assert_eq!(e.to_string(), "snapshot does not exist: not found");
    sn.view("v", Some("base"), &none()).unwrap();
    let e = sn.commit("c", "v", &none()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to commit snapshot: snapshot \"v\" is not active: failed precondition"
    );
    let e = sn.remove("base").unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert_eq!(
        e.to_string(),
        "failed to remove: cannot remove snapshot with child: failed precondition"
    );
    let e = sn.stat("nope").unwrap_err();
    assert_eq!(e.to_string(), "snapshot does not exist: not found");
    let e = sn.usage("nope").unwrap_err();
    assert!(e.is_not_found());
}

#[test]
fn remove_and_cleanup_reclaim_directories() {
    let dir = tempfile::tempdir().unwrap();
    let sn = OverlaySnapshotter::new(dir.path(), OverlayConfig::default()).unwrap();
    let snapshots = dir.path().join("snapshots");
    sn.prepare("a", None, &none()).unwrap();
    sn.commit("base", "a", &none()).unwrap();
    sn.prepare("b", Some("base"), &none()).unwrap();
    fs::create_dir_all(sn.upper_path(2).join("x/y")).unwrap();
    fs::set_permissions(
        sn.upper_path(2).join("x"),
        fs::Permissions::from_mode(0o500),
    )
    .unwrap();
    sn.remove("b").unwrap();
    assert_eq!(entries(&snapshots), ["1"]);
    let e = sn.remove("b").unwrap_err();
    assert_eq!(e.to_string(), "failed to remove: snapshot b: not found");

    // Leftovers of crashes and of containerd's asynchronous removal.
    for d in ["7", "new-123456", "rm-9"] {
        fs::create_dir_all(snapshots.join(d).join("fs")).unwrap();
    }
    sn.cleanup().unwrap();
    assert_eq!(entries(&snapshots), ["1"]);
    sn.remove("base").unwrap();
    assert!(entries(&snapshots).is_empty());
    sn.cleanup().unwrap();
}

#[test]
fn upperdir_label_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let config = OverlayConfig {
        upperdir_label: true,
    };
    let sn = OverlaySnapshotter::new(dir.path(), config).unwrap();
    let labels: BTreeMap<String, String> =
        [("containerd.io/snapshot/x".to_string(), "1".to_string())].into();
    sn.prepare("a", None, &labels).unwrap();
    let info = sn.stat("a").unwrap();
    assert_eq!(info.labels["containerd.io/snapshot/x"], "1");
    assert_eq!(
        info.labels[UPPERDIR_LABEL],
        sn.upper_path(1).display().to_string()
    );
    let ask = Info {
        name: "a".into(),
        labels: [("containerd.io/snapshot/y".to_string(), "2".to_string())].into(),
        ..Info::default()
    };
    let updated = sn
        .update(&ask, &["labels.containerd.io/snapshot/y".into()])
        .unwrap();
    assert_eq!(updated.labels.len(), 3);
    assert_eq!(updated.labels["containerd.io/snapshot/y"], "2");
    // The upperdir label is never stored.
    let (_, stored, _) = sn
        .metastore()
        .view(|tx| storage::get_info(tx, "a"))
        .unwrap();
    assert!(!stored.labels.contains_key(UPPERDIR_LABEL));
    let mut seen = Vec::new();
    sn.walk(&[], &mut |i| {
        seen.push(i.labels.contains_key(UPPERDIR_LABEL));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, [true]);
}

#[test]
fn the_child_layer_takes_the_parents_owner() {
    if !is_root() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true and root is missing: this test cannot be skipped on CI"
        );
        eprintln!("skipping: root missing (chown)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sn = OverlaySnapshotter::new(dir.path(), OverlayConfig::default()).unwrap();
    sn.prepare("a", None, &none()).unwrap();
    std::os::unix::fs::lchown(sn.upper_path(1), Some(1234), Some(5678)).unwrap();
    sn.commit("base", "a", &none()).unwrap();
    sn.prepare("b", Some("base"), &none()).unwrap();
    let m = fs::metadata(sn.upper_path(2)).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
}

/// containerd's own store, with the directories it would have: our mounts for its
/// snapshots are the ones containerd returns.
#[test]
fn mounts_for_containerds_store() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/containerd-1.6/overlayfs-metadata.db");
    fs::copy(fixture, dir.path().join("metadata.db")).unwrap();
    for id in [1, 2, 4, 5, 6] {
        fs::create_dir_all(dir.path().join(format!("snapshots/{id}/fs"))).unwrap();
    }
    let sn = OverlaySnapshotter::new(dir.path(), OverlayConfig::default()).unwrap();
    let m = sn.mounts("default/4/web").unwrap();
    let mut want = leading_options(&sn);
    want.push(format!("workdir={}", sn.work_path(4).display()));
    want.push(format!("upperdir={}", sn.upper_path(4).display()));
    want.push(format!("lowerdir={}", sn.upper_path(1).display()));
    assert_eq!(m[0].options, want);
    let chain = "default/2/sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";
    let stat = sn.stat(chain).unwrap();
    assert_eq!(stat.kind, Kind::Committed);
    assert_eq!(
        sn.usage(chain).unwrap(),
        Usage {
            inodes: 30,
            size: 2_019_328
        }
    );
    sn.cleanup().unwrap();
    assert_eq!(
        entries(&dir.path().join("snapshots")),
        ["1", "2", "4", "5", "6"]
    );
    let m = sn.prepare("default/7/next", Some(chain), &none()).unwrap();
    assert!(m[0]
        .options
        .iter()
        .any(|o| o == &format!("upperdir={}", sn.upper_path(7).display())));
}
