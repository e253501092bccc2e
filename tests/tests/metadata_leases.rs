//! Leases written by Corral into a meta.db are what a real containerd 1.6 lists (`ctr leases
//! ls`), and the leases containerd creates and deletes there (`ctr leases create/delete`)
//! Corral reads back, with Corral's resources untouched.

use corral_tests::labels;
use std::collections::BTreeMap;
use std::process::Command;

use corral_daemon::metadata::lease::{self, Lease, Resource};
use corral_daemon::metadata::schema::db_path;
use corral_daemon::metadata::store::Store;
use corral_tests::harness::{
    require_root, require_tool, ContainerdOptions, PrivateContainerd, TempRoot,
};

const NS: &str = "corral-leases";
const DIGEST: &str = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";

/// `ctr`'s `CreatedAt.Local().Format(time.RFC3339)`, made by `date` in the same zone.
fn rfc3339_local(secs: i64) -> String {
    let out = Command::new("date")
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg("+%Y-%m-%dT%H:%M:%S%:z")
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap().trim().to_string();
    match s.strip_suffix("+00:00") {
        Some(base) => format!("{base}Z"),
        None => s,
    }
}

fn rows(ls: &str) -> Vec<Vec<String>> {
    ls.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn resources() -> Vec<Resource> {
    vec![
        Resource::new("content", DIGEST),
        Resource::new("ingests", "corral-pull-ref"),
        Resource::new("snapshots/overlayfs", "web"),
    ]
}

#[test]
fn containerd_lists_and_changes_corrals_leases() {
    if !require_root("runs a private containerd") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    let dir = TempRoot::new().unwrap();
    let root = dir.root().to_path_buf();
    let (a, b) = {
        let store = Store::open(db_path(&root)).unwrap();
        store
            .update(|tx| {
                let a = lease::create(
                    tx,
                    NS,
                    "corral-a",
                    &labels(&[("app", "corral"), ("containerd.io/gc.flat", "true")]),
                )?;
                for r in resources() {
                    lease::add_resource(tx, NS, "corral-a", &r)?;
                }
                let b = lease::create(tx, NS, "corral-b", &BTreeMap::new())?;
                Ok((a, b))
            })
            .unwrap()
    };

    let mut c = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        extra_config: corral_tests::harness::containerd::NO_GC.into(),
        root: Some(root.clone()),
        ..ContainerdOptions::default()
    })
    .unwrap();

    let ls = c.ctr(["-n", NS, "leases", "ls"]).unwrap();
    assert_eq!(
        rows(&ls),
        [
            vec![
                "ID".to_string(),
                "CREATED".into(),
                "AT".into(),
                "LABELS".into()
            ],
            vec![
                "corral-a".into(),
                rfc3339_local(a.created_at.secs),
                "app=corral,containerd.io/gc.flat=true".into()
            ],
            vec![
                "corral-b".into(),
                rfc3339_local(b.created_at.secs),
                "-".into()
            ],
        ],
        "{ls}"
    );
    let quiet = c.ctr(["-n", NS, "leases", "ls", "-q"]).unwrap();
    assert_eq!(quiet, "corral-a\ncorral-b\n");
    let filtered = c
        .ctr(["-n", NS, "leases", "ls", "-q", "labels.app==corral"])
        .unwrap();
    assert_eq!(filtered, "corral-a\n");

    c.ctr([
        "-n",
        NS,
        "leases",
        "create",
        "--id",
        "ctr-made",
        "--expires",
        "0",
        "made=by-ctr",
    ])
    .unwrap();
    c.ctr(["-n", NS, "leases", "delete", "corral-b"]).unwrap();
    let out = c
        .ctr_output(["-n", NS, "leases", "delete", "nope"])
        .unwrap();
    assert!(!out.status.success());
    let quiet = c.ctr(["-n", NS, "leases", "ls", "-q"]).unwrap();
    assert_eq!(quiet, "corral-a\nctr-made\n");
    let status = c.stop_daemon().unwrap();
    assert!(status.success() || status.code().is_none(), "{status}");

    let store = Store::open_read_only(db_path(&root)).unwrap();
    let all = store.view(|tx| lease::list(tx, NS)).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0], a);
    let made: &Lease = &all[1];
    assert_eq!(made.id, "ctr-made");
    assert_eq!(made.labels, labels(&[("made", "by-ctr")]));
    assert!(made.created_at >= a.created_at);
    assert_eq!(
        store
            .view(|tx| lease::list_resources(tx, NS, "corral-a"))
            .unwrap(),
        resources()
    );
    assert!(store
        .view(|tx| lease::list_resources(tx, NS, "ctr-made"))
        .unwrap()
        .is_empty());
    let err = store.view(|tx| lease::get(tx, NS, "corral-b")).unwrap_err();
    assert_eq!(err.to_string(), "lease \"corral-b\": not found");
    drop(store);
    c.stop().unwrap();
}
