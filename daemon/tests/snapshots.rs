//! The Snapshots service through the wire: a real ttrpc server and client over a socket pair,
//! the services' context (meta.db, overlayfs and native snapshotters, collector) in a
//! temporary directory.

mod common;

use common::{can_mount, ns, Harness};

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_daemon::events::Subscription;
use corral_protocols::events::snapshot::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use corral_protocols::rpc::{CallContext, Code, Status};
use corral_protocols::services::leases::v1::leases::{DeleteRequest, ListResourcesRequest};
use corral_protocols::services::snapshots::v1::snapshots::{
    CleanupRequest, CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, MountsRequest,
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest,
    UsageRequest, ViewSnapshotRequest,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::types::mount::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use protobuf::well_known_types::field_mask::FieldMask;
use protobuf::{Message, MessageField};

const OVERLAY: &str = "overlayfs";
const NATIVE: &str = "native";

fn snapshots(h: &Harness) -> SnapshotsClient {
    SnapshotsClient::new(h.client.clone())
}

/// `<root>/io.containerd.snapshotter.v1.<name>/snapshots`.
fn backend_dir(h: &Harness, snapshotter: &str) -> PathBuf {
    h.root()
        .join(format!("io.containerd.snapshotter.v1.{snapshotter}"))
        .join("snapshots")
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn prepare(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    key: &str,
    parent: &str,
) -> Result<Vec<Mount>, Status> {
    prepare_labelled(c, ctx, sn, key, parent, &[])
}

fn prepare_labelled(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    key: &str,
    parent: &str,
    l: &[(&str, &str)],
) -> Result<Vec<Mount>, Status> {
    c.prepare(
        ctx,
        &PrepareSnapshotRequest {
            snapshotter: sn.into(),
            key: key.into(),
            parent: parent.into(),
            labels: labels(l),
            ..Default::default()
        },
    )
    .map(|r| r.mounts)
}

fn view(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    key: &str,
    parent: &str,
) -> Result<Vec<Mount>, Status> {
    c.view(
        ctx,
        &ViewSnapshotRequest {
            snapshotter: sn.into(),
            key: key.into(),
            parent: parent.into(),
            ..Default::default()
        },
    )
    .map(|r| r.mounts)
}

fn commit(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    name: &str,
    key: &str,
    l: &[(&str, &str)],
) -> Result<(), Status> {
    c.commit(
        ctx,
        &CommitSnapshotRequest {
            snapshotter: sn.into(),
            name: name.into(),
            key: key.into(),
            labels: labels(l),
            ..Default::default()
        },
    )
    .map(|_| ())
}

fn remove(c: &SnapshotsClient, ctx: &CallContext, sn: &str, key: &str) -> Result<(), Status> {
    c.remove(
        ctx,
        &RemoveSnapshotRequest {
            snapshotter: sn.into(),
            key: key.into(),
            ..Default::default()
        },
    )
    .map(|_| ())
}

fn stat(c: &SnapshotsClient, ctx: &CallContext, sn: &str, key: &str) -> Result<Info, Status> {
    c.stat(
        ctx,
        &StatSnapshotRequest {
            snapshotter: sn.into(),
            key: key.into(),
            ..Default::default()
        },
    )
    .map(|r| r.info.unwrap_or_default())
}

fn mounts(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    key: &str,
) -> Result<Vec<Mount>, Status> {
    c.mounts(
        ctx,
        &MountsRequest {
            snapshotter: sn.into(),
            key: key.into(),
            ..Default::default()
        },
    )
    .map(|r| r.mounts)
}

fn usage(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    key: &str,
) -> Result<(i64, i64), Status> {
    c.usage(
        ctx,
        &UsageRequest {
            snapshotter: sn.into(),
            key: key.into(),
            ..Default::default()
        },
    )
    .map(|u| (u.size, u.inodes))
}

fn update(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    key: &str,
    l: &[(&str, &str)],
    paths: &[&str],
) -> Result<Info, Status> {
    c.update(
        ctx,
        &UpdateSnapshotRequest {
            snapshotter: sn.into(),
            info: MessageField::some(Info {
                name: key.into(),
                labels: labels(l),
                ..Default::default()
            }),
            update_mask: MessageField::some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .map(|r| r.info.unwrap_or_default())
}

/// Every `List` message, each as the infos it carries.
fn list_blocks(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    filters: &[&str],
) -> Result<Vec<Vec<Info>>, Status> {
    let stream = c.list(
        ctx,
        &ListSnapshotsRequest {
            snapshotter: sn.into(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        },
    )?;
    stream.map(|m| m.map(|m| m.info)).collect()
}

/// The (key, parent, kind) of every listed snapshot.
fn list(
    c: &SnapshotsClient,
    ctx: &CallContext,
    sn: &str,
    filters: &[&str],
) -> Result<Vec<(String, String, Kind)>, Status> {
    Ok(list_blocks(c, ctx, sn, filters)?
        .into_iter()
        .flatten()
        .map(|i| (i.name, i.parent, i.kind.enum_value_or_default()))
        .collect())
}

fn row(key: &str, parent: &str, kind: Kind) -> (String, String, Kind) {
    (key.to_string(), parent.to_string(), kind)
}

/// The backend directory (`snapshots/<id>`) of an active snapshot, from its mounts: a bind's
/// source or an overlay's `upperdir`, each `<dir>/fs`.
fn snapshot_dir(mounts: &[Mount]) -> PathBuf {
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let m = &mounts[0];
    let fs_dir = if m.type_ == "bind" {
        m.source.clone()
    } else {
        m.options
            .iter()
            .find_map(|o| o.strip_prefix("upperdir="))
            .unwrap_or_else(|| panic!("no upperdir in {m:?}"))
            .to_string()
    };
    let fs_dir = PathBuf::from(fs_dir);
    assert!(fs_dir.ends_with("fs"), "{}", fs_dir.display());
    fs_dir.parent().unwrap().to_path_buf()
}

/// The events published within a short while, as (topic, event) pairs.
fn drain(sub: &Subscription) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Ok(Some(env)) = sub.recv_timeout(Duration::from_millis(200)) {
        out.push((
            env.namespace.clone(),
            env.topic.clone(),
            env.event.value.clone(),
        ));
    }
    out
}

fn assert_status(r: Result<impl std::fmt::Debug, Status>, code: Code, message: &str) {
    let err = r.expect_err(message);
    assert_eq!((err.code(), err.message()), (code, message), "{err:?}");
}

#[test]
fn every_method_through_the_wire() {
    let h = Harness::new();
    let c = snapshots(&h);
    let sub = h.subscribe();
    let ctx = h.lease("default", "work");

    // Prepare a base, write nothing, commit it with labels.
    let m = prepare_labelled(&c, &ctx, OVERLAY, "base-work", "", &[("stage", "1")]).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].type_, "bind");
    assert_eq!(m[0].options, ["rw", "rbind"]);
    let base_dir = snapshot_dir(&m);
    assert!(base_dir.join("fs").is_dir());
    assert_eq!(mounts(&c, &ctx, OVERLAY, "base-work").unwrap(), m);
    let active = stat(&c, &ctx, OVERLAY, "base-work").unwrap();
    assert_eq!(active.name, "base-work");
    assert_eq!(active.kind.enum_value_or_default(), Kind::ACTIVE);
    assert_eq!(active.labels, labels(&[("stage", "1")]));
    assert!(active.created_at.seconds > 1_700_000_000);
    assert_eq!(active.created_at, active.updated_at);

    commit(&c, &ctx, OVERLAY, "base", "base-work", &[("layer", "base")]).unwrap();
    let base = stat(&c, &ctx, OVERLAY, "base").unwrap();
    assert_eq!(base.kind.enum_value_or_default(), Kind::COMMITTED);
    assert_eq!(base.parent, "");
    // A commit's labels are its own, not the active snapshot's.
    assert_eq!(base.labels, labels(&[("layer", "base")]));
    assert_status(
        stat(&c, &ctx, OVERLAY, "base-work"),
        Code::NOT_FOUND,
        "snapshot base-work does not exist: not found",
    );
    // Same backend directory, now the committed layer.
    assert!(base_dir.join("fs").is_dir());

    // An active child and a view of the base.
    let wm = prepare(&c, &ctx, OVERLAY, "work", "base").unwrap();
    assert_eq!(wm[0].type_, "overlay");
    assert!(
        wm[0]
            .options
            .contains(&format!("lowerdir={}", base_dir.join("fs").display())),
        "{wm:?}"
    );
    let vm = view(&c, &ctx, OVERLAY, "ro", "base").unwrap();
    assert_eq!(vm[0].type_, "bind");
    assert_eq!(vm[0].source, base_dir.join("fs").display().to_string());
    assert_eq!(vm[0].options, ["ro", "rbind"]);
    let ro = stat(&c, &ctx, OVERLAY, "ro").unwrap();
    assert_eq!(
        (ro.kind.enum_value_or_default(), ro.parent.as_str()),
        (Kind::VIEW, "base")
    );

    // Update: one label, then all of them.
    let up = update(
        &c,
        &ctx,
        OVERLAY,
        "work",
        &[("a", "1"), ("b", "2")],
        &["labels.a"],
    )
    .unwrap();
    assert_eq!(up.labels, labels(&[("a", "1")]));
    assert_eq!(up.parent, "base");
    assert_eq!(up.kind.enum_value_or_default(), Kind::ACTIVE);
    let up = update(&c, &ctx, OVERLAY, "work", &[("c", "3")], &[]).unwrap();
    assert_eq!(up.labels, labels(&[("c", "3")]));
    assert_eq!(
        stat(&c, &ctx, OVERLAY, "work").unwrap().labels,
        labels(&[("c", "3")])
    );

    assert_eq!(
        list(&c, &ctx, OVERLAY, &[]).unwrap(),
        [
            row("base", "", Kind::COMMITTED),
            row("ro", "base", Kind::VIEW),
            row("work", "base", Kind::ACTIVE),
        ]
    );
    // The committed base's usage is what the backend stored at commit: its empty fs dir.
    let (_, inodes) = usage(&c, &ctx, OVERLAY, "base").unwrap();
    assert_eq!(inodes, 1);

    remove(&c, &ctx, OVERLAY, "ro").unwrap();
    assert_eq!(
        list(&c, &ctx, OVERLAY, &[]).unwrap(),
        [
            row("base", "", Kind::COMMITTED),
            row("work", "base", Kind::ACTIVE),
        ]
    );
    c.cleanup(
        &ns("default"),
        &CleanupRequest {
            snapshotter: OVERLAY.into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(base_dir.join("fs").is_dir());

    // containerd's events, in order; none for the view.
    let evs = drain(&sub);
    let topics: Vec<&str> = evs.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "/snapshot/prepare",
            "/snapshot/commit",
            "/snapshot/prepare",
            "/snapshot/remove"
        ]
    );
    assert!(evs.iter().all(|(n, _, _)| n == "default"));
    let p = SnapshotPrepare::parse_from_bytes(&evs[0].2).unwrap();
    assert_eq!((p.key.as_str(), p.parent.as_str()), ("base-work", ""));
    let cm = SnapshotCommit::parse_from_bytes(&evs[1].2).unwrap();
    assert_eq!((cm.key.as_str(), cm.name.as_str()), ("base-work", "base"));
    let p = SnapshotPrepare::parse_from_bytes(&evs[2].2).unwrap();
    assert_eq!((p.key.as_str(), p.parent.as_str()), ("work", "base"));
    let r = SnapshotRemove::parse_from_bytes(&evs[3].2).unwrap();
    assert_eq!(r.key, "ro");
}

#[test]
fn errors_have_containerds_codes_and_messages() {
    let h = Harness::new();
    let c = snapshots(&h);
    let ctx = h.lease("default", "errors");
    let sub = h.subscribe();

    // No namespace, on every method.
    let none = CallContext::new();
    let no_ns = "namespace is required: failed precondition";
    assert_status(
        prepare(&c, &none, OVERLAY, "k", ""),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        view(&c, &none, OVERLAY, "k", ""),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        mounts(&c, &none, OVERLAY, "k"),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        commit(&c, &none, OVERLAY, "n", "k", &[]),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        remove(&c, &none, OVERLAY, "k"),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        stat(&c, &none, OVERLAY, "k"),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        update(&c, &none, OVERLAY, "k", &[], &[]),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        list(&c, &none, OVERLAY, &[]),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        usage(&c, &none, OVERLAY, "k"),
        Code::FAILED_PRECONDITION,
        no_ns,
    );
    assert_status(
        c.cleanup(
            &none,
            &CleanupRequest {
                snapshotter: OVERLAY.into(),
                ..Default::default()
            },
        ),
        Code::FAILED_PRECONDITION,
        no_ns,
    );

    // Snapshotter names: missing and unknown, checked before the namespace.
    assert_status(
        prepare(&c, &none, "", "k", ""),
        Code::INVALID_ARGUMENT,
        "snapshotter argument missing: invalid argument",
    );
    assert_status(
        list(&c, &ctx, "btrfs", &[]),
        Code::INVALID_ARGUMENT,
        "snapshotter not loaded: btrfs: invalid argument",
    );
    assert_status(
        stat(&c, &ctx, "btrfs", "k"),
        Code::INVALID_ARGUMENT,
        "snapshotter not loaded: btrfs: invalid argument",
    );

    // Missing keys.
    for (r, what) in [
        (stat(&c, &ctx, OVERLAY, "nope").map(|_| ()), "stat"),
        (mounts(&c, &ctx, OVERLAY, "nope").map(|_| ()), "mounts"),
        (usage(&c, &ctx, OVERLAY, "nope").map(|_| ()), "usage"),
        (remove(&c, &ctx, OVERLAY, "nope"), "remove"),
        (
            update(&c, &ctx, OVERLAY, "nope", &[], &[]).map(|_| ()),
            "update",
        ),
    ] {
        let err = r.expect_err(what);
        assert_eq!(
            (err.code(), err.message()),
            (Code::NOT_FOUND, "snapshot nope does not exist: not found"),
            "{what}"
        );
    }
    // Commit in a snapshotter bucket that does not exist yet, then in one that does.
    assert_status(
        commit(&c, &ctx, OVERLAY, "n", "nope", &[]),
        Code::NOT_FOUND,
        "can not find snapshotter \"overlayfs\": not found",
    );
    prepare(&c, &ctx, OVERLAY, "active", "").unwrap();
    assert_status(
        commit(&c, &ctx, OVERLAY, "n", "nope", &[]),
        Code::NOT_FOUND,
        "snapshot nope does not exist: not found",
    );
    assert_status(
        prepare(&c, &ctx, OVERLAY, "k", "missing"),
        Code::NOT_FOUND,
        "parent snapshot missing does not exist: not found",
    );

    // The parent must be committed: the backend refuses, and nothing is recorded.
    let err = prepare(&c, &ctx, OVERLAY, "child", "active").unwrap_err();
    assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err:?}");
    assert!(
        err.message().contains("is not committed snapshot"),
        "{err:?}"
    );
    assert_status(
        stat(&c, &ctx, OVERLAY, "child"),
        Code::NOT_FOUND,
        "snapshot child does not exist: not found",
    );

    // Duplicates.
    assert_status(
        prepare(&c, &ctx, OVERLAY, "active", ""),
        Code::ALREADY_EXISTS,
        "snapshot \"active\": already exists",
    );
    commit(&c, &ctx, OVERLAY, "base", "active", &[]).unwrap();
    prepare(&c, &ctx, OVERLAY, "active", "base").unwrap();
    assert_status(
        commit(&c, &ctx, OVERLAY, "base", "active", &[]),
        Code::ALREADY_EXISTS,
        "snapshot \"base\": already exists",
    );
    assert_status(
        prepare_labelled(
            &c,
            &ctx,
            OVERLAY,
            "x",
            "",
            &[("containerd.io/snapshot.ref", "base")],
        ),
        Code::ALREADY_EXISTS,
        "target snapshot \"base\": already exists",
    );

    // A parent with children stays.
    assert_status(
        remove(&c, &ctx, OVERLAY, "base"),
        Code::FAILED_PRECONDITION,
        "cannot remove snapshot with child: failed precondition",
    );

    // Bad labels, filters, field paths and keys.
    let long = "v".repeat(5000);
    for r in [
        prepare_labelled(&c, &ctx, OVERLAY, "y", "", &[("k", &long)]).map(|_| ()),
        prepare_labelled(&c, &ctx, OVERLAY, "y", "", &[("", "v")]).map(|_| ()),
        commit(&c, &ctx, OVERLAY, "z", "active", &[("k", &long)]),
        update(&c, &ctx, OVERLAY, "base", &[("k", &long)], &[]).map(|_| ()),
    ] {
        let err = r.expect_err("bad labels");
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err:?}");
        assert!(err.message().starts_with("info.Labels: "), "{err:?}");
    }
    assert_status(
        update(&c, &ctx, OVERLAY, "base", &[], &["parent"]),
        Code::INVALID_ARGUMENT,
        "cannot update \"parent\" field on snapshot \"base\": invalid argument",
    );
    assert_status(
        update(&c, &ctx, OVERLAY, "", &[], &[]),
        Code::INVALID_ARGUMENT,
        "invalid argument",
    );
    let err = list(&c, &ctx, OVERLAY, &["kind=="]).unwrap_err();
    assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err:?}");
    let err = prepare(&c, &ctx, OVERLAY, "", "").unwrap_err();
    assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err:?}");
    // A lease that does not exist.
    assert_status(
        prepare(&c, &ns("default").with_lease("gone"), OVERLAY, "y", ""),
        Code::NOT_FOUND,
        "lease does not exist: not found",
    );

    // Nothing that failed was recorded, and the failures published nothing.
    assert_eq!(
        list(&c, &ctx, OVERLAY, &[]).unwrap(),
        [
            row("active", "base", Kind::ACTIVE),
            row("base", "", Kind::COMMITTED),
        ]
    );
    let topics: Vec<String> = drain(&sub).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(
        topics,
        ["/snapshot/prepare", "/snapshot/commit", "/snapshot/prepare"]
    );
}

#[test]
fn leases_hold_snapshots_until_deleted() {
    let h = Harness::new();
    let c = snapshots(&h);
    let ctx = h.lease("default", "pull");
    let m = prepare(&c, &ctx, OVERLAY, "extract", "").unwrap();
    let layer_dir = snapshot_dir(&m);
    let resources = |h: &Harness| -> Vec<(String, String)> {
        h.leases()
            .list_resources(
                &ns("default"),
                &ListResourcesRequest {
                    id: "pull".into(),
                    ..Default::default()
                },
            )
            .unwrap()
            .resources
            .into_iter()
            .map(|r| (r.type_, r.id))
            .collect()
    };
    assert_eq!(
        resources(&h),
        [("snapshots/overlayfs".to_string(), "extract".to_string())]
    );
    commit(&c, &ctx, OVERLAY, "layer", "extract", &[]).unwrap();
    let vm = view(&c, &ctx, OVERLAY, "look", "layer").unwrap();
    assert_eq!(vm[0].type_, "bind");
    let wm = prepare(&c, &ctx, OVERLAY, "scratch", "layer").unwrap();
    let scratch_dir = snapshot_dir(&wm);
    assert_eq!(
        resources(&h),
        [
            ("snapshots/overlayfs".to_string(), "layer".to_string()),
            ("snapshots/overlayfs".to_string(), "look".to_string()),
            ("snapshots/overlayfs".to_string(), "scratch".to_string()),
        ]
    );
    // A removal under the lease lets go of the key.
    remove(&c, &ctx, OVERLAY, "look").unwrap();
    assert_eq!(resources(&h).len(), 2);

    // Something outside the lease, kept by a gc.root label, survives.
    prepare_labelled(
        &c,
        &ns("default"),
        OVERLAY,
        "kept",
        "",
        &[("containerd.io/gc.root", "test")],
    )
    .unwrap();

    h.leases()
        .delete(
            &ns("default"),
            &DeleteRequest {
                id: "pull".into(),
                sync: true,
                ..Default::default()
            },
        )
        .unwrap();
    // The records and the backend directories are gone when Delete returns.
    for key in ["layer", "scratch", "extract"] {
        let err = stat(&c, &ns("default"), OVERLAY, key).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND, "{key}");
    }
    assert!(!layer_dir.exists(), "{}", layer_dir.display());
    assert!(!scratch_dir.exists(), "{}", scratch_dir.display());
    assert_eq!(
        list(&c, &ns("default"), OVERLAY, &[]).unwrap(),
        [row("kept", "", Kind::ACTIVE)]
    );
    let left: Vec<String> = fs::read_dir(backend_dir(&h, OVERLAY))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn namespaces_are_isolated() {
    let h = Harness::new();
    let c = snapshots(&h);
    let a = h.lease("team-a", "l");
    let b = h.lease("team-b", "l");
    for (ctx, tag) in [(&a, "a"), (&b, "b")] {
        prepare_labelled(&c, ctx, NATIVE, "same", "", &[("owner", tag)]).unwrap();
        commit(&c, ctx, NATIVE, "base", "same", &[("owner", tag)]).unwrap();
        prepare(&c, ctx, NATIVE, "same", "base").unwrap();
    }
    assert_eq!(
        stat(&c, &a, NATIVE, "base").unwrap().labels,
        labels(&[("owner", "a")])
    );
    assert_eq!(
        stat(&c, &b, NATIVE, "base").unwrap().labels,
        labels(&[("owner", "b")])
    );
    // Different backend snapshots under the same key.
    let ma = mounts(&c, &a, NATIVE, "same").unwrap();
    let mb = mounts(&c, &b, NATIVE, "same").unwrap();
    assert_ne!(ma[0].source, mb[0].source);
    remove(&c, &a, NATIVE, "same").unwrap();
    assert_status(
        stat(&c, &a, NATIVE, "same"),
        Code::NOT_FOUND,
        "snapshot same does not exist: not found",
    );
    assert_eq!(
        stat(&c, &b, NATIVE, "same")
            .unwrap()
            .kind
            .enum_value_or_default(),
        Kind::ACTIVE
    );
    assert_eq!(
        list(&c, &a, NATIVE, &[]).unwrap(),
        [row("base", "", Kind::COMMITTED)]
    );
    assert_eq!(
        list(&c, &b, NATIVE, &[]).unwrap(),
        [
            row("base", "", Kind::COMMITTED),
            row("same", "base", Kind::ACTIVE)
        ]
    );
    // A namespace with nothing lists nothing; another snapshotter's snapshots are apart.
    assert!(list(&c, &ns("team-c"), NATIVE, &[]).unwrap().is_empty());
    assert!(list(&c, &a, OVERLAY, &[]).unwrap().is_empty());
}

#[test]
fn list_filters_and_blocks() {
    let h = Harness::new();
    let c = snapshots(&h);
    let ctx = h.lease("default", "l");
    prepare(&c, &ctx, OVERLAY, "w", "").unwrap();
    commit(&c, &ctx, OVERLAY, "base", "w", &[("tier", "base")]).unwrap();
    prepare_labelled(
        &c,
        &ctx,
        OVERLAY,
        "app",
        "base",
        &[("tier", "app"), ("a.b", "1")],
    )
    .unwrap();
    view(&c, &ctx, OVERLAY, "ro", "base").unwrap();
    let keys = |filters: &[&str]| -> Vec<String> {
        list(&c, &ctx, OVERLAY, filters)
            .unwrap()
            .into_iter()
            .map(|(k, _, _)| k)
            .collect()
    };
    assert_eq!(keys(&[]), ["app", "base", "ro"]);
    assert_eq!(keys(&["kind==committed"]), ["base"]);
    assert_eq!(keys(&["kind==view"]), ["ro"]);
    assert_eq!(keys(&["kind==active"]), ["app"]);
    assert_eq!(keys(&["parent==base"]), ["app", "ro"]);
    assert_eq!(keys(&["name==ro"]), ["ro"]);
    assert_eq!(keys(&["name~=^b"]), ["base"]);
    assert_eq!(keys(&["labels.tier"]), ["app", "base"]);
    assert_eq!(keys(&["labels.tier==app"]), ["app"]);
    assert_eq!(keys(&["labels.\"a.b\"==1"]), ["app"]);
    assert_eq!(keys(&["labels.tier!=app"]), ["base", "ro"]);
    // Any filter of the list may match; all selectors of one must.
    assert_eq!(keys(&["name==ro", "kind==committed"]), ["base", "ro"]);
    assert_eq!(keys(&["parent==base,kind==view"]), ["ro"]);
    assert!(keys(&["labels.missing"]).is_empty());

    // Streamed in messages of 100 infos, as containerd sends them.
    for i in 0..101 {
        prepare(&c, &ctx, OVERLAY, &format!("n{i:03}"), "").unwrap();
    }
    let blocks = list_blocks(&c, &ctx, OVERLAY, &[]).unwrap();
    let sizes: Vec<usize> = blocks.iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 4]);
    let blocks = list_blocks(&c, &ctx, OVERLAY, &["kind==committed"]).unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(list_blocks(&c, &ctx, OVERLAY, &["name==none"])
        .unwrap()
        .is_empty());
}

/// Mounts a snapshot's mounts on a directory and unmounts it when dropped, also on panic.
struct Mounted(PathBuf);

impl Mounted {
    fn new(mounts: &[Mount], target: &Path) -> Mounted {
        fs::create_dir_all(target).unwrap();
        let guard = Mounted(target.to_path_buf());
        for m in mounts {
            let mut flags = MsFlags::empty();
            let mut data = Vec::new();
            for o in &m.options {
                match o.as_str() {
                    "ro" => flags |= MsFlags::MS_RDONLY,
                    "rw" => {}
                    "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
                    "bind" => flags |= MsFlags::MS_BIND,
                    other => data.push(other),
                }
            }
            let data = data.join(",");
            let fstype = (m.type_ != "bind").then_some(m.type_.as_str());
            mount(
                Some(m.source.as_str()),
                target,
                fstype,
                flags,
                (!data.is_empty()).then_some(data.as_str()),
            )
            .unwrap_or_else(|e| panic!("mount {m:?} on {}: {e}", target.display()));
        }
        guard
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if umount2(&self.0, MntFlags::empty()).is_err() {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn usage_counts_what_was_written_through_the_mounts() {
    if !can_mount("usage_counts_what_was_written_through_the_mounts") {
        return;
    }
    let h = Harness::new();
    let c = snapshots(&h);
    let ctx = h.lease("default", "l");
    let target = h.dir.path().join("mnt");

    let m = prepare(&c, &ctx, OVERLAY, "base-work", "").unwrap();
    {
        let _m = Mounted::new(&m, &target);
        fs::write(target.join("hello"), b"hello from corral\n").unwrap();
    }
    commit(&c, &ctx, OVERLAY, "base", "base-work", &[]).unwrap();
    let (_, base_inodes) = usage(&c, &ctx, OVERLAY, "base").unwrap();
    assert_eq!(base_inodes, 2);

    let m = prepare(&c, &ctx, OVERLAY, "work", "base").unwrap();
    assert_eq!(m[0].type_, "overlay");
    let (before, before_inodes) = usage(&c, &ctx, OVERLAY, "work").unwrap();
    assert_eq!(before_inodes, 1);
    {
        let _m = Mounted::new(&m, &target);
        // The parent's file shows through; the new ones land in this snapshot.
        assert_eq!(
            fs::read_to_string(target.join("hello")).unwrap(),
            "hello from corral\n"
        );
        fs::write(target.join("big"), vec![7u8; 1 << 20]).unwrap();
        fs::create_dir(target.join("etc")).unwrap();
        fs::write(target.join("etc/conf"), b"x=1\n").unwrap();
    }
    let (after, after_inodes) = usage(&c, &ctx, OVERLAY, "work").unwrap();
    assert_eq!(after_inodes, 4, "fs dir, big, etc, etc/conf");
    assert!(after >= before + (1 << 20), "{before} -> {after}");

    // A commit stores what it measured.
    commit(&c, &ctx, OVERLAY, "top", "work", &[]).unwrap();
    assert_eq!(
        usage(&c, &ctx, OVERLAY, "top").unwrap(),
        (after, after_inodes)
    );
}

#[test]
fn the_collector_removes_the_backend_of_a_removed_snapshot() {
    let h = Harness::new();
    let c = snapshots(&h);
    let ctx = ns("default");
    let root = [("containerd.io/gc.root", "test")];
    let m = prepare_labelled(&c, &ctx, OVERLAY, "base-work", "", &root).unwrap();
    let base_dir = snapshot_dir(&m);
    commit(&c, &ctx, OVERLAY, "base", "base-work", &root).unwrap();
    let m = prepare(&c, &ctx, OVERLAY, "top-work", "base").unwrap();
    let top_dir = snapshot_dir(&m);
    commit(&c, &ctx, OVERLAY, "top", "top-work", &root).unwrap();
    assert_ne!(base_dir, top_dir);

    remove(&c, &ctx, OVERLAY, "top").unwrap();
    // The record went at once; the backend snapshot waits for the collector.
    assert_status(
        stat(&c, &ctx, OVERLAY, "top"),
        Code::NOT_FOUND,
        "snapshot top does not exist: not found",
    );
    h.ctx.gc.collect_and_wait().unwrap();
    assert!(!top_dir.exists(), "{}", top_dir.display());
    assert!(base_dir.join("fs").is_dir());
    let base = stat(&c, &ctx, OVERLAY, "base").unwrap();
    assert_eq!(base.kind.enum_value_or_default(), Kind::COMMITTED);
    // The parent can go now that it has no child, and its directory follows.
    remove(&c, &ctx, OVERLAY, "base").unwrap();
    h.ctx.gc.collect_and_wait().unwrap();
    assert!(!base_dir.exists(), "{}", base_dir.display());
    let left: Vec<_> = fs::read_dir(backend_dir(&h, OVERLAY)).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
