//! Corral's overlayfs and native snapshotters on real mounts, and against a real containerd
//! 1.6 sharing their roots: containerd's unpacked layers read and mounted by Corral, and
//! Corral's snapshots listed, inspected, mounted and extended by containerd (`ctr snapshots`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use corral_daemon::metadata::schema::db_path;
use corral_daemon::metadata::snapshot as meta;
use corral_daemon::metadata::store::Store;
use corral_daemon::snapshot::continuity::disk_usage;
use corral_daemon::snapshot::native::{self, NativeSnapshotter};
use corral_daemon::snapshot::overlay::{self, OverlayConfig, OverlaySnapshotter};
use corral_daemon::snapshot::{filter_inherited_labels, Info, Kind, Mount, Snapshotter, Usage};
use corral_protocols::rpc::Code;
use corral_tests::harness::containerd::NO_GC;
use corral_tests::harness::{
    mounts_under, require_root, require_tool, ContainerdOptions, PrivateContainerd, TempRoot,
};
use corral_tests::labels;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The chain id (= diff id) of the busybox fixture's only layer.
const CHAIN: &str = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Mounts made by a test, unmounted (innermost first) when dropped, also on panic.
struct Mounted(PathBuf);

impl Mounted {
    /// Mounts `mounts` on `target` (created when missing) the way containerd's
    /// `mount.All` does for the options snapshotters return: `ro`/`rw`/`bind`/`rbind` are
    /// flags, the rest is data; a read-only bind is remounted read-only.
    fn new(mounts: &[Mount], target: &Path) -> Mounted {
        fs::create_dir_all(target).unwrap();
        let guard = Mounted(target.to_path_buf());
        for m in mounts {
            let mut flags = MsFlags::empty();
            let mut data = Vec::new();
            for o in &m.options {
                match o.as_str() {
                    "ro" => flags.insert(MsFlags::MS_RDONLY),
                    "rw" => flags.remove(MsFlags::MS_RDONLY),
                    "bind" => flags.insert(MsFlags::MS_BIND),
                    "rbind" => flags.insert(MsFlags::MS_BIND | MsFlags::MS_REC),
                    other => data.push(other),
                }
            }
            let data = data.join(",");
            let fstype = (m.kind != "bind").then_some(m.kind.as_str());
            mount(
                Some(m.source.as_str()),
                target,
                fstype,
                flags,
                (!data.is_empty()).then_some(data.as_str()),
            )
            .unwrap_or_else(|e| panic!("mount {m:?} on {}: {e}", target.display()));
            if flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
                mount(
                    None::<&str>,
                    target,
                    None::<&str>,
                    flags | MsFlags::MS_REMOUNT,
                    None::<&str>,
                )
                .unwrap_or_else(|e| panic!("remount {} read-only: {e}", target.display()));
            }
        }
        guard
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for _ in 0..16 {
            if umount2(&self.0, MntFlags::empty()).is_err()
                && umount2(&self.0, MntFlags::MNT_DETACH).is_err()
            {
                return;
            }
        }
    }
}

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `ctr snapshots mounts` prints `mount -t <type> <source> <target> -o <options>`.
fn parse_ctr_mount(line: &str) -> (Mount, String) {
    let t: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (t.len(), t[0], t[1], t[5]),
        (7, "mount", "-t", "-o"),
        "{line}"
    );
    (Mount::new(t[2], t[3], t[6].split(',')), t[4].to_string())
}

/// Rows of a `ctr` table, split on whitespace, header included.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn overlay_layers_stack_on_real_mounts() {
    if !require_root("mounts overlays") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let sn = OverlaySnapshotter::new(temp.join("overlayfs"), OverlayConfig::default()).unwrap();
    let snapshots = temp.join("overlayfs/snapshots");
    let mnt = temp.join("mnt");

    // Layer 1: a base mounted as a plain bind.
    let m = sn.prepare("l1-work", None, &none()).unwrap();
    assert_eq!(m[0].kind, "bind");
    {
        let _m = Mounted::new(&m, &mnt);
        fs::write(mnt.join("a.txt"), b"one").unwrap();
        fs::create_dir(mnt.join("dir")).unwrap();
        fs::write(mnt.join("dir/gone"), b"x").unwrap();
    }
    sn.commit("l1", "l1-work", &none()).unwrap();

    // Layer 2 over it: changes a file, deletes one (a whiteout in the upper dir), adds one.
    let m = sn.prepare("l2-work", Some("l1"), &none()).unwrap();
    assert_eq!(m[0].kind, "overlay");
    {
        let _m = Mounted::new(&m, &mnt);
        assert_eq!(fs::read(mnt.join("a.txt")).unwrap(), b"one");
        fs::write(mnt.join("a.txt"), b"two").unwrap();
        fs::remove_file(mnt.join("dir/gone")).unwrap();
        fs::write(mnt.join("b.txt"), b"bee").unwrap();
    }
    sn.commit("l2", "l2-work", &none()).unwrap();
    let l2 = sn.stat("l2").unwrap();
    let l2_id: u64 = 2;
    let whiteout = fs::symlink_metadata(sn.upper_path(l2_id).join("dir/gone")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "real overlayfs records the deletion as a 0/0 whiteout"
    );
    assert_eq!(l2.parent.as_deref(), Some("l1"));

    // Layer 3 over both: its active usage is measured now, then stored by the commit.
    let m = sn.prepare("l3-work", Some("l2"), &none()).unwrap();
    let lower = m[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap()
        .to_string();
    assert_eq!(
        lower,
        format!(
            "{}:{}",
            sn.upper_path(2).display(),
            sn.upper_path(1).display()
        )
    );
    {
        let _m = Mounted::new(&m, &mnt);
        fs::write(mnt.join("c.txt"), vec![b'c'; 20_000]).unwrap();
    }
    let active = sn.usage("l3-work").unwrap();
    assert_eq!(active.inodes, 2, "fs/ and c.txt");
    assert!(active.size >= 20_000, "{active:?}");
    sn.commit("l3", "l3-work", &none()).unwrap();
    assert_eq!(sn.usage("l3").unwrap(), active);
    // l1: fs/, a.txt, dir, dir/gone. l2: fs/, a.txt, b.txt, dir (copied up), the whiteout.
    assert_eq!(sn.usage("l1").unwrap().inodes, 4);
    assert_eq!(sn.usage("l2").unwrap().inodes, 5);

    // A view of the top shows the union, read-only.
    let m = sn.view("top", Some("l3"), &none()).unwrap();
    assert!(!m[0].options.iter().any(|o| o.starts_with("upperdir=")));
    {
        let _m = Mounted::new(&m, &mnt);
        assert_eq!(fs::read(mnt.join("a.txt")).unwrap(), b"two");
        assert_eq!(fs::read(mnt.join("b.txt")).unwrap(), b"bee");
        assert_eq!(fs::read(mnt.join("c.txt")).unwrap().len(), 20_000);
        assert!(mnt.join("dir").is_dir());
        assert!(!mnt.join("dir/gone").exists());
        let err = fs::write(mnt.join("d.txt"), b"no").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    }
    // A view of one layer is that layer's directory, bound read-only.
    let m = sn.view("l1-view", Some("l1"), &none()).unwrap();
    {
        let _m = Mounted::new(&m, &mnt);
        assert_eq!(fs::read(mnt.join("a.txt")).unwrap(), b"one");
        assert!(mnt.join("dir/gone").exists());
        assert!(fs::write(mnt.join("x"), b"").is_err());
    }

    // Parents are refused while they have children.
    for parent in ["l1", "l2", "l3"] {
        let err = sn.remove(parent).unwrap_err();
        assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");
        assert!(err
            .to_string()
            .contains("cannot remove snapshot with child"));
    }

    // Cleanup removes directories no record names and keeps the others.
    for orphan in ["99/fs", "new-123456/fs", "rm-42"] {
        fs::create_dir_all(snapshots.join(orphan)).unwrap();
    }
    sn.cleanup().unwrap();
    assert_eq!(entries(&snapshots), ["1", "2", "3", "4", "5"]);

    for key in ["top", "l1-view", "l3", "l2", "l1"] {
        sn.remove(key).unwrap();
    }
    assert!(entries(&snapshots).is_empty());
    let mut left = Vec::new();
    sn.walk(&[], &mut |i| {
        left.push(i.name.clone());
        Ok(())
    })
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(mounts_under(temp.path()).unwrap().is_empty());
}

#[test]
fn containerds_unpacked_layer_is_read_and_mounted_by_corral() {
    if !require_root("runs a private containerd") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    let mut c = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        extra_config: NO_GC.into(),
        ..ContainerdOptions::default()
    })
    .unwrap();
    let ns = c.namespace().to_string();
    let tar = fixture("busybox-oci.tar");
    c.ctr(["images", "import", tar.to_str().unwrap()]).unwrap();
    let status = c.stop_daemon().unwrap();
    assert!(status.success() || status.code().is_none(), "{status}");

    let root = OverlaySnapshotter::default_root(c.root());
    let sn = OverlaySnapshotter::new(&root, OverlayConfig::default()).unwrap();
    let mut committed: Vec<Info> = Vec::new();
    sn.walk(&["kind==committed".to_string()], &mut |i| {
        committed.push(i.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(committed.len(), 1, "{committed:?}");
    let layer = &committed[0];
    assert!(
        layer.name.starts_with(&format!("{ns}/")) && layer.name.ends_with(&format!("/{CHAIN}")),
        "{}",
        layer.name
    );
    assert_eq!(layer.parent, None);
    // containerd passes a backend only `containerd.io/snapshot/` labels: none here.
    assert!(layer.labels.is_empty(), "{:?}", layer.labels);
    assert!(layer.created.secs > 1_700_000_000);
    // meta.db names the same backend snapshot for the chain id.
    let store = Store::open_read_only(db_path(c.root())).unwrap();
    let record = store
        .view(|tx| meta::get(tx, &ns, overlay::NAME, CHAIN))
        .unwrap();
    assert_eq!(record.backend_name, layer.name);
    drop(store);

    // Usage as containerd's Go code counted it at commit, which ours agrees with.
    let usage = sn.usage(&layer.name).unwrap();
    assert_eq!(usage.inodes, 30, "{usage:?}");
    let (id, _, _) = sn
        .metastore()
        .view(|tx| corral_daemon::snapshot::storage::get_info(tx, &layer.name))
        .unwrap();
    assert_eq!(disk_usage(&sn.upper_path(id)).unwrap(), usage);

    // A view of it, mounted, is busybox.
    let view = format!("{ns}/100/corral-view");
    let m = sn.view(&view, Some(&layer.name), &none()).unwrap();
    assert_eq!(
        m,
        [Mount::new(
            "bind",
            sn.upper_path(id).display().to_string(),
            ["ro", "rbind"]
        )]
    );
    let mnt = c.temp().join("mnt");
    {
        let _m = Mounted::new(&m, &mnt);
        let busybox = fs::metadata(mnt.join("bin/busybox")).unwrap();
        assert!(busybox.is_file() && busybox.len() > 100_000);
        assert_eq!(busybox.mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read_link(mnt.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::metadata(mnt.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
    }
    sn.remove(&view).unwrap();
    sn.cleanup().unwrap();
    assert_eq!(entries(&root.join("snapshots")), [id.to_string()]);
    drop(sn);
    assert!(mounts_under(c.temp().path()).unwrap().is_empty());
    c.stop().unwrap();
}

/// The snapshots one test builds in each snapshotter: base (committed, with `hello`), work
/// (active on base), ro (view of base).
struct Built {
    base: String,
    work: String,
    work_mounts: Vec<Mount>,
    base_usage: Usage,
}

/// Records `key` in meta.db and prepares it in the backend, as containerd's metadata layer
/// does; returns the backend name.
fn prepare_both(
    store: &Store,
    ns: &str,
    sn: &dyn Snapshotter,
    key: &str,
    parent: Option<&str>,
    view: bool,
) -> (String, Vec<Mount>) {
    let meta_labels = labels(&[("corral.test", key)]);
    let rec = store
        .update(|tx| meta::create(tx, ns, sn.name(), key, parent, &meta_labels))
        .unwrap();
    let backend_parent = parent.map(|p| {
        store
            .view(|tx| meta::get(tx, ns, sn.name(), p))
            .unwrap()
            .backend_name
    });
    let inherited = filter_inherited_labels(&meta_labels);
    let mounts = if view {
        sn.view(&rec.backend_name, backend_parent.as_deref(), &inherited)
    } else {
        sn.prepare(&rec.backend_name, backend_parent.as_deref(), &inherited)
    }
    .unwrap();
    (rec.backend_name, mounts)
}

fn build(store: &Store, ns: &str, sn: &dyn Snapshotter, mnt: &Path) -> Built {
    let (work0, m) = prepare_both(store, ns, sn, "base-work", None, false);
    {
        let _m = Mounted::new(&m, mnt);
        fs::write(mnt.join("hello"), format!("from corral's {}\n", sn.name())).unwrap();
        fs::create_dir(mnt.join("etc")).unwrap();
    }
    let rec = store
        .update(|tx| meta::commit(tx, ns, sn.name(), "base", "base-work", &none()))
        .unwrap();
    sn.commit(&rec.backend_name, &work0, &none()).unwrap();
    let base_usage = sn.usage(&rec.backend_name).unwrap();
    let (work, work_mounts) = prepare_both(store, ns, sn, "work", Some("base"), false);
    prepare_both(store, ns, sn, "ro", Some("base"), true);
    Built {
        base: rec.backend_name,
        work,
        work_mounts,
        base_usage,
    }
}

#[test]
fn containerd_lists_and_mounts_corrals_snapshots() {
    if !require_root("runs a private containerd") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    const NS: &str = "corral-snapshots";
    let dir = TempRoot::new().unwrap();
    let root = dir.root().to_path_buf();
    let mnt = dir.join("mnt");
    let (over, nat) = {
        let store = Store::open(db_path(&root)).unwrap();
        let o = OverlaySnapshotter::new(
            OverlaySnapshotter::default_root(&root),
            OverlayConfig::default(),
        )
        .unwrap();
        let n = NativeSnapshotter::new(NativeSnapshotter::default_root(&root)).unwrap();
        let built = (build(&store, NS, &o, &mnt), build(&store, NS, &n, &mnt));
        // Everything closed: containerd waits forever for a bolt lock someone holds.
        built
    };

    let mut c = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        extra_config: NO_GC.into(),
        root: Some(root.clone()),
        ..ContainerdOptions::default()
    })
    .unwrap();
    for (name, built) in [(overlay::NAME, &over), (native::NAME, &nat)] {
        let snap = |args: &[&str]| -> String {
            let mut all = vec!["-n", NS, "snapshots", "--snapshotter", name];
            all.extend_from_slice(args);
            c.ctr(all)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", c.log_tail(20)))
        };
        // `ls` asks the backend for each snapshot's kind: containerd reads our metadata.db.
        assert_eq!(
            rows(&snap(&["ls"])),
            [
                vec!["KEY", "PARENT", "KIND"],
                vec!["base", "Committed"],
                vec!["ro", "base", "View"],
                vec!["work", "base", "Active"],
            ],
            "{name}"
        );
        let info: serde_json::Value = serde_json::from_str(&snap(&["info", "work"])).unwrap();
        assert_eq!(info["Kind"], "Active", "{name}: {info}");
        assert_eq!(info["Parent"], "base", "{name}: {info}");
        assert_eq!(info["Labels"]["corral.test"], "work", "{name}: {info}");
        // containerd asks the backend for the usage Corral stored at commit.
        let usage = rows(&snap(&["usage", "-b", "base"]));
        assert_eq!(
            usage[1],
            [
                "base".to_string(),
                built.base_usage.size.to_string(),
                built.base_usage.inodes.to_string()
            ],
            "{name}"
        );

        // containerd's mounts are ours, and they mount.
        let target = dir.join(format!("ctr-target-{name}"));
        let printed = snap(&["mounts", target.to_str().unwrap(), "work"]);
        let (m, printed_target) = parse_ctr_mount(printed.trim());
        assert_eq!(printed_target, target.display().to_string());
        assert_eq!(vec![m.clone()], built.work_mounts, "{name}");
        {
            let _m = Mounted::new(&[m], &target);
            assert_eq!(
                fs::read_to_string(target.join("hello")).unwrap(),
                format!("from corral's {name}\n")
            );
            fs::write(target.join("written-through-ctr-mounts"), b"ok").unwrap();
        }
        let (view_mount, _) = parse_ctr_mount(snap(&["mounts", "/x", "ro"]).trim());
        assert!(
            view_mount.options.contains(&"ro".to_string()),
            "{view_mount:?}"
        );

        // containerd builds on Corral's layer, in Corral's metadata.db.
        snap(&["prepare", "ctr-made", "base"]);
    }
    let status = c.stop_daemon().unwrap();
    assert!(status.success() || status.code().is_none(), "{status}");

    let store = Store::open_read_only(db_path(&root)).unwrap();
    let o = OverlaySnapshotter::new(
        OverlaySnapshotter::default_root(&root),
        OverlayConfig::default(),
    )
    .unwrap();
    let n = NativeSnapshotter::new(NativeSnapshotter::default_root(&root)).unwrap();
    for (sn, built) in [(&o as &dyn Snapshotter, &over), (&n, &nat)] {
        let rec = store
            .view(|tx| meta::get(tx, NS, sn.name(), "ctr-made"))
            .unwrap();
        let made = sn.stat(&rec.backend_name).unwrap();
        assert_eq!(made.kind, Kind::Active, "{}", sn.name());
        assert_eq!(made.parent.as_deref(), Some(built.base.as_str()));
        let m = sn.mounts(&rec.backend_name).unwrap();
        {
            let _m = Mounted::new(&m, &mnt);
            assert_eq!(
                fs::read_to_string(mnt.join("hello")).unwrap(),
                format!("from corral's {}\n", sn.name())
            );
        }
        let err = sn.remove(&built.base).unwrap_err();
        assert_eq!(err.code(), Code::FAILED_PRECONDITION);
        // What was written through ctr's mounts is in the active snapshot.
        let work = sn.usage(&built.work).unwrap();
        assert!(work.inodes >= 2, "{work:?}");
        sn.cleanup().unwrap();
    }
    drop((o, n, store));
    assert!(mounts_under(dir.path()).unwrap().is_empty());
    c.stop().unwrap();
}
