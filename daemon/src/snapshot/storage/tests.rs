//! The metastore against containerd: every operation and error, and the fixture
//! `overlayfs-metadata.db` (written by containerd 1.6.20) read back and written again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bbolt_rs::BucketApi;
use corral_protocols::rpc::Code;

use super::schema::{parent_key, PARENTS, SNAPSHOTS};
use super::*;
use crate::filter::Filter;
use crate::metadata::encoding::{decode_time, Timestamp};
use crate::snapshot::error::SnapshotError;
use crate::snapshot::info::{Info, Kind, Usage};

const CHAIN: &str = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn new_store() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let ms = MetaStore::open(dir.path().join("metadata.db")).unwrap();
    (dir, ms)
}

/// A copy of the containerd fixture in a temporary directory.
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/containerd-1.6/overlayfs-metadata.db");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    std::fs::copy(src, &path).unwrap();
    (dir, path)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One line per key and bucket under `v1`, sorted: `path = hex value` or `path/ seq=N`.
/// Timestamps are checked to be containerd's UTC binary times and shown as `<time>` when
/// `mask_times` is set, so two files made at different moments compare equal.
fn dump(ms: &MetaStore, mask_times: bool) -> Vec<String> {
    fn walk<'tx, B: BucketApi<'tx>>(b: &B, prefix: &str, mask: bool, out: &mut Vec<String>) {
        for (k, v) in b.iter_entries() {
            let name = String::from_utf8_lossy(k);
            let value = if (k == b"createdat" || k == b"updatedat") && mask {
                assert_eq!(v.len(), 15, "{prefix}/{name}");
                assert_eq!((v[0], &v[13..]), (1, &[0xff, 0xff][..]), "{prefix}/{name}");
                decode_time(v).unwrap();
                "<time>".to_string()
            } else {
                hex(v)
            };
            out.push(format!("{prefix}/{} = {value}", hex(k)));
        }
        for (k, sub) in b.iter_buckets() {
            let path = format!("{prefix}/{}", hex(k));
            out.push(format!("{path}/ seq={}", sub.sequence()));
            walk(&sub, &path, mask, out);
        }
    }
    let mut out = Vec::new();
    ms.view(|tx| {
        if let Some(v1) = tx.v1() {
            walk(&v1, "v1", mask_times, &mut out);
        }
        Ok(())
    })
    .unwrap();
    out.sort();
    out
}

fn parents_index(ms: &MetaStore) -> Vec<(Vec<u8>, String)> {
    ms.view(|tx| {
        Ok(tx
            .v1()
            .and_then(|v1| {
                v1.bucket(PARENTS).map(|p| {
                    p.iter_entries()
                        .map(|(k, v)| (k.to_vec(), String::from_utf8_lossy(v).into_owned()))
                        .collect()
                })
            })
            .unwrap_or_default())
    })
    .unwrap()
}

fn sequence(ms: &MetaStore) -> u64 {
    ms.view(|tx| {
        Ok(tx
            .v1()
            .and_then(|v1| v1.bucket(SNAPSHOTS).map(|b| b.sequence()))
            .unwrap_or(0))
    })
    .unwrap()
}

fn err_of<T: std::fmt::Debug>(r: Result<T, SnapshotError>) -> (Code, String) {
    let e = r.unwrap_err();
    (e.code(), e.to_string())
}

#[test]
fn a_new_store_has_nothing() {
    let (_d, ms) = new_store();
    assert_eq!(
        err_of(ms.view(|tx| get_info(tx, "x"))),
        (Code::NOT_FOUND, "bucket does not exist: not found".into())
    );
    assert_eq!(
        err_of(ms.view(|tx| get_snapshot(tx, "x"))),
        (Code::NOT_FOUND, "bucket does not exist: not found".into())
    );
    assert_eq!(
        err_of(ms.update(|tx| remove(tx, "x"))),
        (Code::NOT_FOUND, "bucket does not exist: not found".into())
    );
    assert_eq!(
        err_of(ms.update(|tx| commit_active(tx, "x", "y", Usage::default(), &none()))),
        (Code::NOT_FOUND, "bucket does not exist: not found".into())
    );
    let info = Info {
        name: "x".into(),
        ..Info::default()
    };
    assert_eq!(
        err_of(ms.update(|tx| update_info(tx, &info, &[]))),
        (Code::NOT_FOUND, "bucket does not exist: not found".into())
    );
    let all = Filter::default();
    assert!(ms.view(|tx| walk_info(tx, &all)).unwrap().is_empty());
    assert!(ms.view(|tx| id_map(tx)).unwrap().is_empty());
    assert_eq!(
        err_of(ms.update(|tx| create_snapshot(tx, Kind::Active, "k", Some("p"), &none()))),
        (
            Code::NOT_FOUND,
            "missing parent \"p\" bucket: not found".into()
        )
    );
    // Nothing was written by the failures.
    assert!(dump(&ms, false).is_empty());
}

#[test]
fn create_commit_and_the_parents_index() {
    let (_d, ms) = new_store();
    for kind in [Kind::Committed, Kind::Unknown] {
        assert_eq!(
            err_of(ms.update(|tx| create_snapshot(tx, kind, "k", None, &none()))),
            (
                Code::INVALID_ARGUMENT,
                format!(
                    "snapshot type {kind} invalid; only snapshots of type Active or View can \
                     be created: invalid argument"
                )
            )
        );
    }
    let s = ms
        .update(|tx| create_snapshot(tx, Kind::Active, "extract", None, &labels(&[("a", "1")])))
        .unwrap();
    assert_eq!(
        s,
        Snapshot {
            kind: Kind::Active,
            id: 1,
            parent_ids: vec![]
        }
    );
    // A new store gets both buckets at once, like containerd's createBucketIfNotExists.
    assert!(dump(&ms, true).contains(&"v1/706172656e7473/ seq=0".to_string()));
    let (id, info, usage) = ms.view(|tx| get_info(tx, "extract")).unwrap();
    assert_eq!((id, info.kind, usage), (1, Kind::Active, Usage::default()));
    assert_eq!(info.labels, labels(&[("a", "1")]));
    assert_eq!(info.created, info.updated);
    assert_eq!(info.parent, None);

    assert_eq!(
        err_of(ms.update(|tx| create_snapshot(tx, Kind::Active, "extract", None, &none()))),
        (
            Code::ALREADY_EXISTS,
            "snapshot extract: already exists".into()
        )
    );
    assert_eq!(
        err_of(ms.update(|tx| create_snapshot(tx, Kind::View, "v", Some("extract"), &none()))),
        (
            Code::INVALID_ARGUMENT,
            "parent \"extract\" is not committed snapshot: invalid argument".into()
        )
    );
    assert_eq!(
        err_of(ms.update(|tx| create_snapshot(tx, Kind::Active, "", None, &none()))).0,
        Code::INVALID_ARGUMENT
    );
    // Failures took no id.
    assert_eq!(sequence(&ms), 1);

    let base_usage = Usage {
        inodes: 30,
        size: 2_019_328,
    };
    let id = ms
        .update(|tx| commit_active(tx, "extract", "base", base_usage, &labels(&[("b", "2")])))
        .unwrap();
    assert_eq!(id, 1);
    let (id, base, usage) = ms.view(|tx| get_info(tx, "base")).unwrap();
    assert_eq!((id, base.kind, usage), (1, Kind::Committed, base_usage));
    // Labels are replaced, not inherited.
    assert_eq!(base.labels, labels(&[("b", "2")]));
    assert!(base.created >= info.created);
    assert_eq!(
        err_of(ms.view(|tx| get_info(tx, "extract"))),
        (Code::NOT_FOUND, "snapshot does not exist: not found".into())
    );
    assert_eq!(
        err_of(ms.view(|tx| get_snapshot(tx, "base"))),
        (
            Code::FAILED_PRECONDITION,
            "requested snapshot base not active or view: failed precondition".into()
        )
    );

    let top = ms
        .update(|tx| create_snapshot(tx, Kind::Active, "top", Some("base"), &none()))
        .unwrap();
    assert_eq!(top.parent_ids, [1]);
    assert_eq!(top.id, 2);
    let view = ms
        .update(|tx| create_snapshot(tx, Kind::View, "v", Some("base"), &none()))
        .unwrap();
    assert_eq!(
        (view.kind, view.id, view.parent_ids.as_slice()),
        (Kind::View, 3, &[1u64][..])
    );
    assert_eq!(
        parents_index(&ms),
        [
            (parent_key(1, 2), "top".to_string()),
            (parent_key(1, 3), "v".to_string())
        ]
    );

    // Commit errors, in containerd's order and words.
    assert_eq!(
        err_of(ms.update(|tx| commit_active(tx, "top", "base", Usage::default(), &none()))),
        (
            Code::ALREADY_EXISTS,
            "committed snapshot base: already exists".into()
        )
    );
    assert_eq!(
        err_of(ms.update(|tx| commit_active(tx, "gone", "new", Usage::default(), &none()))),
        (
            Code::NOT_FOUND,
            "failed to get active snapshot \"gone\": not found".into()
        )
    );
    assert_eq!(
        err_of(ms.update(|tx| commit_active(tx, "v", "new", Usage::default(), &none()))),
        (
            Code::FAILED_PRECONDITION,
            "snapshot \"v\" is not active: failed precondition".into()
        )
    );

    ms.update(|tx| {
        commit_active(
            tx,
            "top",
            "layer2",
            Usage {
                inodes: 2,
                size: 8192,
            },
            &none(),
        )
    })
    .unwrap();
    assert_eq!(
        parents_index(&ms),
        [
            (parent_key(1, 2), "layer2".to_string()),
            (parent_key(1, 3), "v".to_string())
        ]
    );
    let work = ms
        .update(|tx| create_snapshot(tx, Kind::Active, "work", Some("layer2"), &none()))
        .unwrap();
    assert_eq!((work.id, work.parent_ids.as_slice()), (4, &[2u64, 1][..]));
    assert_eq!(ms.view(|tx| get_snapshot(tx, "work")).unwrap(), work);
    let (_, w, _) = ms.view(|tx| get_info(tx, "work")).unwrap();
    assert_eq!(w.parent.as_deref(), Some("layer2"));
    assert_eq!(sequence(&ms), 4);
    assert_eq!(
        ms.view(|tx| id_map(tx)).unwrap(),
        BTreeMap::from([
            ("1".to_string(), "base".to_string()),
            ("2".into(), "layer2".into()),
            ("3".into(), "v".into()),
            ("4".into(), "work".into()),
        ])
    );
}

#[test]
fn remove_refuses_parents_and_cleans_the_index() {
    let (_d, ms) = new_store();
    ms.update(|tx| {
        create_snapshot(tx, Kind::Active, "a", None, &none())?;
        commit_active(tx, "a", "base", Usage::default(), &none())?;
        create_snapshot(tx, Kind::Active, "b", Some("base"), &none())?;
        commit_active(tx, "b", "mid", Usage::default(), &none())?;
        create_snapshot(tx, Kind::View, "leaf", Some("mid"), &none())
    })
    .unwrap();
    for parent in ["base", "mid"] {
        assert_eq!(
            err_of(ms.update(|tx| remove(tx, parent))),
            (
                Code::FAILED_PRECONDITION,
                "cannot remove snapshot with child: failed precondition".into()
            )
        );
    }
    assert_eq!(ms.update(|tx| remove(tx, "leaf")).unwrap(), (3, Kind::View));
    assert_eq!(parents_index(&ms), [(parent_key(1, 2), "mid".to_string())]);
    assert_eq!(
        err_of(ms.update(|tx| remove(tx, "leaf"))),
        (Code::NOT_FOUND, "snapshot leaf: not found".into())
    );
    assert_eq!(
        ms.update(|tx| remove(tx, "mid")).unwrap(),
        (2, Kind::Committed)
    );
    assert_eq!(
        ms.update(|tx| remove(tx, "base")).unwrap(),
        (1, Kind::Committed)
    );
    assert!(parents_index(&ms).is_empty());
    assert!(ms.view(|tx| id_map(tx)).unwrap().is_empty());
    // Ids are never handed out twice.
    let s = ms
        .update(|tx| create_snapshot(tx, Kind::Active, "again", None, &none()))
        .unwrap();
    assert_eq!(s.id, 4);
}

#[test]
fn update_follows_containerds_field_paths() {
    let (_d, ms) = new_store();
    ms.update(|tx| {
        create_snapshot(
            tx,
            Kind::Active,
            "k",
            None,
            &labels(&[("a", "1"), ("b", "2")]),
        )
    })
    .unwrap();
    let (_, before, _) = ms.view(|tx| get_info(tx, "k")).unwrap();
    let ask = |l: &[(&str, &str)]| Info {
        name: "k".into(),
        labels: labels(l),
        ..Info::default()
    };
    let paths = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let got = ms
        .update(|tx| update_info(tx, &ask(&[("a", "9"), ("b", "x")]), &paths(&["labels.a"])))
        .unwrap();
    assert_eq!(got.labels, labels(&[("a", "9"), ("b", "2")]));
    assert_eq!(got.kind, Kind::Active);
    assert_eq!(got.created, before.created);
    assert!(got.updated >= before.updated);
    let got = ms
        .update(|tx| update_info(tx, &ask(&[]), &paths(&["labels.b"])))
        .unwrap();
    assert_eq!(got.labels, labels(&[("a", "9")]));
    let got = ms
        .update(|tx| update_info(tx, &ask(&[("c", "3")]), &paths(&["labels"])))
        .unwrap();
    assert_eq!(got.labels, labels(&[("c", "3")]));
    let got = ms
        .update(|tx| update_info(tx, &ask(&[("d", "4")]), &[]))
        .unwrap();
    assert_eq!(got.labels, labels(&[("d", "4")]));
    let (_, stored, _) = ms.view(|tx| get_info(tx, "k")).unwrap();
    assert_eq!(stored, got);
    assert_eq!(
        err_of(ms.update(|tx| update_info(tx, &ask(&[]), &paths(&["parent"])))),
        (
            Code::INVALID_ARGUMENT,
            "cannot update \"parent\" field on snapshot \"k\": invalid argument".into()
        )
    );
    let missing = Info {
        name: "nope".into(),
        ..Info::default()
    };
    assert_eq!(
        err_of(ms.update(|tx| update_info(tx, &missing, &[]))),
        (Code::NOT_FOUND, "snapshot does not exist: not found".into())
    );
    // Removing every label leaves no bucket; setting only an empty label leaves an empty one
    // (what the fixture's `scratch` shows after `ctr snapshots label scratch fixture=...`).
    ms.update(|tx| update_info(tx, &ask(&[]), &[])).unwrap();
    assert!(!dump(&ms, true).iter().any(|l| l.contains("6c6162656c73/")));
    ms.update(|tx| update_info(tx, &ask(&[]), &paths(&["labels.fixture"])))
        .unwrap();
    assert!(dump(&ms, true).contains(&format!(
        "v1/{}/{}/6c6162656c73/ seq=0",
        hex(b"snapshots"),
        hex(b"k")
    )));
}

#[test]
fn walk_applies_containerds_filters() {
    let (_d, ms) = new_store();
    ms.update(|tx| {
        create_snapshot(tx, Kind::Active, "a", None, &none())?;
        commit_active(tx, "a", "base", Usage::default(), &labels(&[("l", "1")]))?;
        create_snapshot(tx, Kind::Active, "b", Some("base"), &none())?;
        create_snapshot(tx, Kind::View, "c", Some("base"), &none())
    })
    .unwrap();
    let names = |f: &[&str]| -> Vec<String> {
        let filter = Filter::parse_all(f).unwrap();
        ms.view(|tx| walk_info(tx, &filter))
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    assert_eq!(names(&[]), ["b", "base", "c"]);
    assert_eq!(names(&["kind==committed"]), ["base"]);
    assert_eq!(names(&["kind==active", "kind==view"]), ["b", "c"]);
    assert_eq!(names(&["parent==base"]), ["b", "c"]);
    assert_eq!(names(&["labels.l==1"]), ["base"]);
    assert_eq!(names(&["name~=^b"]), ["b", "base"]);
}

/// The fixture's records as its text dump lists them.
#[test]
fn reads_containerds_fixture() {
    let (_d, path) = fixture_copy();
    let ms = MetaStore::open(&path).unwrap();
    let default_chain = format!("default/2/{CHAIN}");
    let edge_chain = format!("edge/2/{CHAIN}");
    let time = |h: &str| {
        let bytes: Vec<u8> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect();
        decode_time(&bytes).unwrap()
    };
    let committed = Usage {
        inodes: 30,
        size: 2_019_328,
    };
    // key, id, kind, parent, usage, createdat, updatedat (hex, from the dump)
    type Row<'a> = (&'a str, u64, Kind, Option<&'a str>, Usage, &'a str, &'a str);
    let want: Vec<Row> = vec![
        (
            &default_chain,
            1,
            Kind::Committed,
            None,
            committed,
            "010000000ee296407d1f1d5effffff",
            "010000000ee296407d1f1d5effffff",
        ),
        (
            "default/4/web",
            4,
            Kind::Active,
            Some(&default_chain),
            Usage::default(),
            "010000000ee296407d313338f2ffff",
            "010000000ee296407d313338f2ffff",
        ),
        (
            "default/5/job",
            5,
            Kind::Active,
            Some(&default_chain),
            Usage::default(),
            "010000000ee296407d32baa1e7ffff",
            "010000000ee296407d32baa1e7ffff",
        ),
        (
            "default/6/scratch",
            6,
            Kind::Active,
            Some(&default_chain),
            Usage::default(),
            "010000000ee296407d370bcad1ffff",
            "010000000ee296407d37c941adffff",
        ),
        (
            &edge_chain,
            2,
            Kind::Committed,
            None,
            committed,
            "010000000ee296407d240be6c5ffff",
            "010000000ee296407d240be6c5ffff",
        ),
    ];
    for (key, id, kind, parent, usage, created, updated) in &want {
        let (got_id, info, got_usage) = ms.view(|tx| get_info(tx, key)).unwrap();
        assert_eq!(got_id, *id, "{key}");
        assert_eq!(info.kind, *kind, "{key}");
        assert_eq!(info.parent.as_deref(), *parent, "{key}");
        assert_eq!(got_usage, *usage, "{key}");
        assert!(info.labels.is_empty(), "{key}");
        assert_eq!(info.created, time(created), "{key}");
        assert_eq!(info.updated, time(updated), "{key}");
    }
    assert_eq!(
        ms.view(|tx| get_info(tx, &default_chain))
            .unwrap()
            .1
            .created,
        Timestamp::new(1_795_443_069, 522_018_559)
    );
    let all = Filter::default();
    let names: Vec<String> = ms
        .view(|tx| walk_info(tx, &all))
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    let mut keys: Vec<&str> = want.iter().map(|w| w.0).collect();
    keys.sort();
    assert_eq!(names, keys);
    assert_eq!(
        ms.view(|tx| get_snapshot(tx, "default/4/web")).unwrap(),
        Snapshot {
            kind: Kind::Active,
            id: 4,
            parent_ids: vec![1]
        }
    );
    assert_eq!(
        parents_index(&ms),
        [
            (vec![0x01, 0x00, 0x04], "default/4/web".to_string()),
            (vec![0x01, 0x00, 0x05], "default/5/job".to_string()),
            (vec![0x01, 0x00, 0x06], "default/6/scratch".to_string()),
        ]
    );
    let ids = ms.view(|tx| id_map(tx)).unwrap();
    assert_eq!(
        ids.keys().map(String::as_str).collect::<Vec<_>>(),
        ["1", "2", "4", "5", "6"]
    );
    assert_eq!(ids["1"], default_chain);
    assert_eq!(sequence(&ms), 6);

    // And it keeps working the way containerd would go on.
    assert_eq!(
        err_of(ms.update(|tx| remove(tx, &default_chain))).0,
        Code::FAILED_PRECONDITION
    );
    assert_eq!(
        ms.update(|tx| remove(tx, &edge_chain)).unwrap(),
        (2, Kind::Committed)
    );
    let next = ms
        .update(|tx| create_snapshot(tx, Kind::View, "default/7/v", Some(&default_chain), &none()))
        .unwrap();
    assert_eq!((next.id, next.parent_ids.as_slice()), (7, &[1u64][..]));
}

/// containerd's history for the fixture, replayed through our code, gives the same file
/// (keys, values, bucket sequences) except for the moments in the timestamps.
#[test]
fn writes_what_containerd_writes() {
    let (_d, path) = fixture_copy();
    let theirs = dump(&MetaStore::open_read_only(&path).unwrap(), true);

    let (_d2, ms) = new_store();
    let layer = Usage {
        inodes: 30,
        size: 2_019_328,
    };
    let default_chain = format!("default/2/{CHAIN}");
    ms.update(|tx| create_snapshot(tx, Kind::Active, "default/1/extract-1 x", None, &none()))
        .unwrap();
    ms.update(|tx| commit_active(tx, "default/1/extract-1 x", &default_chain, layer, &none()))
        .unwrap();
    ms.update(|tx| create_snapshot(tx, Kind::Active, "edge/1/extract-2 x", None, &none()))
        .unwrap();
    ms.update(|tx| {
        commit_active(
            tx,
            "edge/1/extract-2 x",
            &format!("edge/2/{CHAIN}"),
            layer,
            &none(),
        )
    })
    .unwrap();
    ms.update(|tx| {
        create_snapshot(
            tx,
            Kind::Active,
            "default/3/t1",
            Some(&default_chain),
            &none(),
        )
    })
    .unwrap();
    ms.update(|tx| remove(tx, "default/3/t1")).unwrap();
    for key in ["default/4/web", "default/5/job", "default/6/scratch"] {
        ms.update(|tx| create_snapshot(tx, Kind::Active, key, Some(&default_chain), &none()))
            .unwrap();
    }
    // `ctr snapshots label scratch fixture=scratch`: the metadata layer passes the backend
    // only inherited labels, so the path names a label it does not send.
    let scratch = Info {
        name: "default/6/scratch".into(),
        ..Info::default()
    };
    ms.update(|tx| update_info(tx, &scratch, &["labels.fixture".to_string()]))
        .unwrap();

    let ours = dump(&ms, true);
    assert_eq!(ours, theirs);
    // Spot checks on the raw encodings the dump compared.
    assert!(theirs.contains(&format!(
        "v1/{}/{}/{} = 80c0f601",
        hex(b"snapshots"),
        hex(default_chain.as_bytes()),
        hex(b"size")
    )));
    assert!(theirs.contains(&format!("v1/{}/ seq=6", hex(b"snapshots"))));
}
