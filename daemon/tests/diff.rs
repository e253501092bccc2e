//! The Diff service through the wire: layers written through Content.Write, applied with
//! Diff.Apply into overlayfs and native snapshots prepared through the Snapshots service, the
//! result read back through a view.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use common::{can_mount, ns, Harness};
use corral_protocols::mount::{mount_all, unmount_all, Mount as SysMount};
use corral_protocols::rpc::{CallContext, Code};
use corral_protocols::services::content::v1::content::{WriteAction, WriteContentRequest};
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_protocols::services::diff::v1::diff::ApplyRequest;
use corral_protocols::services::diff::v1::diff_rpc::DiffClient;
use corral_protocols::services::leases::v1::leases::CreateRequest;
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use corral_protocols::services::snapshots::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, ViewSnapshotRequest,
};
use corral_protocols::services::snapshots::v1::snapshots_rpc::SnapshotsClient;
use corral_protocols::types::descriptor::Descriptor;
use corral_protocols::types::mount::Mount;
use protobuf::{EnumOrUnknown, MessageField};
use sha2::{Digest, Sha256};

fn sha(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A tar layer: (path, contents or None for a directory).
fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                h.set_cksum();
                b.append(&h, *d).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn put(h: &Harness, cx: &CallContext, blob: &[u8]) -> String {
    let d = sha(blob);
    let c = ContentClient::new(h.client.clone());
    let mut s = c.write(cx).unwrap();
    s.send(&WriteContentRequest {
        action: EnumOrUnknown::new(WriteAction::COMMIT),
        ref_: format!("layer-{d}"),
        total: blob.len() as i64,
        expected: d.clone(),
        data: blob.to_vec(),
        ..Default::default()
    })
    .unwrap();
    s.recv().unwrap().expect("commit answer");
    s.close_send().unwrap();
    d
}

fn desc(media_type: &str, digest: &str, size: usize) -> MessageField<Descriptor> {
    MessageField::some(Descriptor {
        media_type: media_type.into(),
        digest: digest.into(),
        size: size as i64,
        ..Default::default()
    })
}

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Mounts `mounts` on a fresh directory, runs `f` on it, unmounts.
fn with_mounted<T>(h: &Harness, mounts: &[Mount], f: impl FnOnce(&Path) -> T) -> T {
    let target = h.dir.path().join("view");
    fs::create_dir_all(&target).unwrap();
    let sys: Vec<SysMount> = mounts
        .iter()
        .map(|m| SysMount {
            kind: m.type_.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
        })
        .collect();
    mount_all(&sys, &target).unwrap();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&target)));
    unmount_all(&target).unwrap();
    match out {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn apply_chain(snapshotter: &str) {
    let h = Harness::new();
    LeasesClient::new(h.client.clone())
        .create(
            &ns("default"),
            &CreateRequest {
                id: "unpack".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let cx = ns("default").with_lease("unpack");
    let sn = SnapshotsClient::new(h.client.clone());
    let diff = DiffClient::new(h.client.clone());

    // Layer 1: a directory and two files, gzip.
    let l1 = layer(&[
        ("etc", None),
        ("etc/hostname", Some(b"edge\n")),
        ("etc/motd", Some(b"hello\n")),
        ("var", None),
        ("var/old", Some(b"stale")),
    ]);
    let l1_gz = gzip(&l1);
    let d1 = put(&h, &cx, &l1_gz);
    let m = sn
        .prepare(
            &cx,
            &PrepareSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: "extract-1".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .mounts;
    let applied = diff
        .apply(
            &cx,
            &ApplyRequest {
                diff: desc(GZIP_LAYER, &d1, l1_gz.len()),
                mounts: m,
                ..Default::default()
            },
        )
        .unwrap()
        .applied
        .unwrap();
    assert_eq!(applied.media_type, TAR_LAYER);
    assert_eq!(
        applied.digest,
        sha(&l1),
        "the diff ID is the uncompressed digest"
    );
    assert_eq!(applied.size, l1.len() as i64);
    sn.commit(
        &cx,
        &CommitSnapshotRequest {
            snapshotter: snapshotter.into(),
            name: "chain-1".into(),
            key: "extract-1".into(),
            ..Default::default()
        },
    )
    .unwrap();

    // Layer 2, uncompressed: a whiteout, an opaque directory, a changed file.
    let l2 = layer(&[
        ("etc", None),
        ("etc/.wh.motd", Some(b"")),
        ("etc/hostname", Some(b"corral\n")),
        ("var", None),
        ("var/.wh..wh..opq", Some(b"")),
        ("var/new", Some(b"fresh")),
    ]);
    let d2 = put(&h, &cx, &l2);
    let m = sn
        .prepare(
            &cx,
            &PrepareSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: "extract-2".into(),
                parent: "chain-1".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .mounts;
    let applied = diff
        .apply(
            &cx,
            &ApplyRequest {
                diff: desc(TAR_LAYER, &d2, l2.len()),
                mounts: m,
                ..Default::default()
            },
        )
        .unwrap()
        .applied
        .unwrap();
    assert_eq!(applied.digest, d2);
    sn.commit(
        &cx,
        &CommitSnapshotRequest {
            snapshotter: snapshotter.into(),
            name: "chain-2".into(),
            key: "extract-2".into(),
            ..Default::default()
        },
    )
    .unwrap();

    // The view of the top shows the union with the whiteouts applied.
    let view = sn
        .view(
            &cx,
            &ViewSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: "check".into(),
                parent: "chain-2".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .mounts;
    with_mounted(&h, &view, |root| {
        assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"corral\n");
        assert!(!root.join("etc/motd").exists(), "whiteout ignored");
        assert!(!root.join("var/old").exists(), "opaque directory ignored");
        assert_eq!(fs::read(root.join("var/new")).unwrap(), b"fresh");
    });
    // Nothing left mounted or lying in tmpmounts.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(h.dir.path().to_str().unwrap()), "{mounts}");
    let tmp = h.root().join("tmpmounts");
    if tmp.exists() {
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }
}

#[test]
fn layers_apply_into_overlayfs_snapshots() {
    if can_mount("layers_apply_into_overlayfs_snapshots") {
        apply_chain("overlayfs");
    }
}

#[test]
fn layers_apply_into_native_snapshots() {
    if can_mount("layers_apply_into_native_snapshots") {
        apply_chain("native");
    }
}

#[test]
fn apply_errors_have_containerds_codes() {
    let h = Harness::new();
    let diff = DiffClient::new(h.client.clone());
    let cx = ns("default");
    let missing = sha(b"nothing");
    let code = |req: ApplyRequest| diff.apply(&cx, &req).unwrap_err().code();
    // A blob the namespace does not have.
    assert_eq!(
        code(ApplyRequest {
            diff: desc(TAR_LAYER, &missing, 7),
            mounts: vec![Mount {
                type_: "bind".into(),
                source: "/nonexistent".into(),
                options: vec!["rbind".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        Code::NOT_FOUND
    );
    // A bad digest.
    assert_eq!(
        code(ApplyRequest {
            diff: desc(TAR_LAYER, "sha256:xyz", 7),
            ..Default::default()
        }),
        Code::INVALID_ARGUMENT
    );
    // Payloads (stream processors) are not supported.
    let d = put(&h, &cx, &layer(&[("a", Some(b"1"))]));
    let mut payloads = HashMap::new();
    payloads.insert("x".to_string(), Default::default());
    assert_eq!(
        code(ApplyRequest {
            diff: desc(TAR_LAYER, &d, 1),
            payloads,
            ..Default::default()
        }),
        Code::UNIMPLEMENTED
    );
    // No mounts.
    assert_eq!(
        code(ApplyRequest {
            diff: desc(TAR_LAYER, &d, 1),
            ..Default::default()
        }),
        Code::INVALID_ARGUMENT
    );
    // A media type containerd does not apply.
    let target = h.dir.path().join("plain");
    fs::create_dir_all(&target).unwrap();
    if can_mount("apply_errors_have_containerds_codes") {
        assert_eq!(
            code(ApplyRequest {
                diff: desc("text/plain", &d, 1),
                mounts: vec![Mount {
                    type_: "bind".into(),
                    source: target.to_string_lossy().into_owned(),
                    options: vec!["rbind".into(), "rw".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            Code::UNIMPLEMENTED
        );
        // No namespace.
        let e = diff
            .apply(&CallContext::new(), &ApplyRequest::default())
            .unwrap_err();
        assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    }
}
