//! Snapshot metadata: `v1/<ns>/snapshots/<snapshotter>/<key>/`, as containerd 1.6's
//! metadata snapshotter (`metadata/snapshot.go`) keeps it. Only the records: the backend
//! snapshotter (which knows the snapshot by its backend name) is driven elsewhere.
//!
//! ```text
//! name     = "<ns>/<seq>/<key>"   seq: NextSequence of the <snapshotter> bucket
//! parent   = <parent key>         omitted without a parent
//! children/<child key> = ""
//! createdat, updatedat, labels/
//! ```

use std::collections::BTreeMap;

use bbolt_rs::{BucketApi, BucketRwApi};

use super::encoding::Timestamp;
use super::error::{MetaError, MetaResult};
use super::namespace;
use super::record::{read_map, read_string, read_time, write_map, write_time};
use super::schema::{CHILDREN, CREATED_AT, LABELS, NAME, PARENT, SNAPSHOTS, UPDATED_AT};
use super::store::{Reader, WriteTx};
use super::validate::validate_labels;

/// The label naming the committed snapshot a `Prepare`/`View` targets.
pub const LABEL_SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// One snapshot's metadata record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The metadata key (the name clients use).
    pub key: String,
    pub snapshotter: String,
    /// `name`: the key the backend snapshotter knows, `"<ns>/<seq>/<key>"`.
    pub backend_name: String,
    /// The parent's metadata key.
    pub parent: Option<String>,
    /// Keys of the children, in key order.
    pub children: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// containerd's message for a missing snapshot: `snapshot web does not exist: not found`.
fn not_found(key: &str) -> MetaError {
    MetaError::NotFound(format!("snapshot {key} does not exist"))
}

fn parent_not_found(parent: &str) -> MetaError {
    MetaError::NotFound(format!("parent snapshot {parent} does not exist"))
}

fn check_labels(labels: &BTreeMap<String, String>) -> MetaResult<()> {
    validate_labels(labels).map_err(|e| MetaError::InvalidArgument(format!("info.Labels: {e}")))
}

fn read_record<'tx, B: BucketApi<'tx>>(
    ns: &str,
    snapshotter: &str,
    key: &str,
    b: &B,
) -> MetaResult<SnapshotRecord> {
    let path = format!("v1/{ns}/snapshots/{snapshotter}/{key}");
    let parent = read_string(b, PARENT);
    let children = b
        .bucket(CHILDREN)
        .map(|c| {
            c.iter_entries()
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Ok(SnapshotRecord {
        key: key.to_string(),
        snapshotter: snapshotter.to_string(),
        backend_name: read_string(b, NAME),
        parent: (!parent.is_empty()).then_some(parent),
        children,
        labels: read_map(b, LABELS),
        created_at: read_time(b, CREATED_AT, &path)?.unwrap_or_default(),
        updated_at: read_time(b, UPDATED_AT, &path)?.unwrap_or_default(),
    })
}

/// One snapshot's record.
pub fn get<'tx>(
    tx: &impl Reader<'tx>,
    ns: &str,
    snapshotter: &str,
    key: &str,
) -> MetaResult<SnapshotRecord> {
    let v1 = tx.v1().ok_or_else(|| not_found(key))?;
    let nsb = v1.bucket(ns.as_bytes()).ok_or_else(|| not_found(key))?;
    let sbs = nsb.bucket(SNAPSHOTS).ok_or_else(|| not_found(key))?;
    let sb = sbs
        .bucket(snapshotter.as_bytes())
        .ok_or_else(|| not_found(key))?;
    let b = sb.bucket(key.as_bytes()).ok_or_else(|| not_found(key))?;
    read_record(ns, snapshotter, key, &b)
}

/// Whether `key` exists.
pub fn exists<'tx>(tx: &impl Reader<'tx>, ns: &str, snapshotter: &str, key: &str) -> bool {
    get(tx, ns, snapshotter, key).is_ok()
}

/// Every snapshot of one snapshotter in `ns`, in key order.
pub fn list<'tx>(
    tx: &impl Reader<'tx>,
    ns: &str,
    snapshotter: &str,
) -> MetaResult<Vec<SnapshotRecord>> {
    let Some(v1) = tx.v1() else {
        return Ok(Vec::new());
    };
    let Some(nsb) = v1.bucket(ns.as_bytes()) else {
        return Ok(Vec::new());
    };
    let Some(sbs) = nsb.bucket(SNAPSHOTS) else {
        return Ok(Vec::new());
    };
    let Some(sb) = sbs.bucket(snapshotter.as_bytes()) else {
        return Ok(Vec::new());
    };
    sb.iter_buckets()
        .map(|(k, b)| read_record(ns, snapshotter, &String::from_utf8_lossy(k), &b))
        .collect()
}

/// The snapshotters that have a bucket in `ns`, in name order.
pub fn snapshotters<'tx>(tx: &impl Reader<'tx>, ns: &str) -> Vec<String> {
    let Some(v1) = tx.v1() else {
        return Vec::new();
    };
    let Some(nsb) = v1.bucket(ns.as_bytes()) else {
        return Vec::new();
    };
    let Some(sbs) = nsb.bucket(SNAPSHOTS) else {
        return Vec::new();
    };
    sbs.iter_buckets()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// The bolt sequence of the `<snapshotter>` bucket: the last number handed out in a backend
/// name (0 when the bucket is missing).
pub fn sequence<'tx>(tx: &impl Reader<'tx>, ns: &str, snapshotter: &str) -> u64 {
    let Some(v1) = tx.v1() else {
        return 0;
    };
    let Some(nsb) = v1.bucket(ns.as_bytes()) else {
        return 0;
    };
    let Some(sbs) = nsb.bucket(SNAPSHOTS) else {
        return 0;
    };
    sbs.bucket(snapshotter.as_bytes())
        .map_or(0, |b| b.sequence())
}

/// Records a new active or view snapshot (what containerd's `Prepare` / `View` write): a new
/// backend name `"<ns>/<seq>/<key>"`, the parent (which must exist) and the key added to the
/// parent's children.
pub fn create(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    snapshotter: &str,
    key: &str,
    parent: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> MetaResult<SnapshotRecord> {
    check_labels(labels)?;
    if key.is_empty() {
        return Err(MetaError::InvalidArgument(
            "snapshot key must not be empty".into(),
        ));
    }
    if snapshotter.is_empty() {
        return Err(MetaError::InvalidArgument(
            "snapshotter name must not be empty".into(),
        ));
    }
    let parent = parent.filter(|p| !p.is_empty());
    namespace::ensure(tx, ns)?;
    let now = Timestamp::now();
    {
        let mut v1 = tx.v1_mut()?;
        let mut nsb = v1
            .bucket_mut(ns.as_bytes())
            .ok_or_else(|| MetaError::Storage(format!("namespace {ns:?} vanished")))?;
        let mut sbs = nsb.create_bucket_if_not_exists(SNAPSHOTS)?;
        let mut sb = sbs.create_bucket_if_not_exists(snapshotter.as_bytes())?;
        if let Some(target) = labels.get(LABEL_SNAPSHOT_REF).filter(|t| !t.is_empty()) {
            if sb.bucket(target.as_bytes()).is_some() {
                return Err(MetaError::AlreadyExists(format!(
                    "target snapshot {target:?}"
                )));
            }
        }
        if sb.bucket(key.as_bytes()).is_some() {
            return Err(MetaError::AlreadyExists(format!("snapshot {key:?}")));
        }
        if let Some(p) = parent {
            if sb.bucket(p.as_bytes()).is_none() {
                return Err(parent_not_found(p));
            }
        }
        let seq = sb.next_sequence()?;
        let backend_name = format!("{ns}/{seq}/{key}");
        if let Some(p) = parent {
            let mut pb = sb
                .bucket_mut(p.as_bytes())
                .ok_or_else(|| parent_not_found(p))?;
            let mut children = pb.create_bucket_if_not_exists(CHILDREN)?;
            children.put(key.as_bytes(), [])?;
        }
        let mut b = sb.create_bucket(key.as_bytes())?;
        if let Some(p) = parent {
            b.put(PARENT, p.as_bytes())?;
        }
        write_time(&mut b, CREATED_AT, now)?;
        write_time(&mut b, UPDATED_AT, now)?;
        write_map(&mut b, LABELS, labels)?;
        b.put(NAME, backend_name.as_bytes())?;
    }
    get(tx, ns, snapshotter, key)
}

/// Commits active snapshot `key` as `name` (containerd's `Commit`, metadata side): a new
/// bucket `name` with a new backend name from the sequence, the same parent (whose children
/// now list `name` instead of `key`), new timestamps and `labels`; `key` is removed.
/// Children of `key`, which containerd never lets an active snapshot have, move to `name`.
pub fn commit(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    snapshotter: &str,
    name: &str,
    key: &str,
    labels: &BTreeMap<String, String>,
) -> MetaResult<SnapshotRecord> {
    check_labels(labels)?;
    if name.is_empty() {
        return Err(MetaError::InvalidArgument(
            "snapshot name must not be empty".into(),
        ));
    }
    let no_snapshotter =
        || MetaError::NotFound(format!("can not find snapshotter {snapshotter:?}"));
    let v1 = tx.v1().ok_or_else(no_snapshotter)?;
    let nsb = v1.bucket(ns.as_bytes()).ok_or_else(no_snapshotter)?;
    let sbs = nsb.bucket(SNAPSHOTS).ok_or_else(no_snapshotter)?;
    let sb = sbs
        .bucket(snapshotter.as_bytes())
        .ok_or_else(no_snapshotter)?;
    if sb.bucket(name.as_bytes()).is_some() {
        return Err(MetaError::AlreadyExists(format!("snapshot {name:?}")));
    }
    let old = match sb.bucket(key.as_bytes()) {
        Some(b) => read_record(ns, snapshotter, key, &b)?,
        None => return Err(not_found(key)),
    };
    if let Some(p) = &old.parent {
        if sb.bucket(p.as_bytes()).is_none() {
            return Err(parent_not_found(p));
        }
    }
    let now = Timestamp::now();
    {
        let mut v1 = tx.v1_mut()?;
        let mut nsb = v1.bucket_mut(ns.as_bytes()).ok_or_else(no_snapshotter)?;
        let mut sbs = nsb.bucket_mut(SNAPSHOTS).ok_or_else(no_snapshotter)?;
        let mut sb = sbs
            .bucket_mut(snapshotter.as_bytes())
            .ok_or_else(no_snapshotter)?;
        let seq = sb.next_sequence()?;
        let backend_name = format!("{ns}/{seq}/{name}");
        if let Some(p) = &old.parent {
            let mut pb = sb
                .bucket_mut(p.as_bytes())
                .ok_or_else(|| parent_not_found(p))?;
            let mut children = pb.create_bucket_if_not_exists(CHILDREN)?;
            children.delete(key.as_bytes())?;
            children.put(name.as_bytes(), [])?;
        }
        for child in &old.children {
            if let Some(mut cb) = sb.bucket_mut(child.as_bytes()) {
                cb.put(PARENT, name.as_bytes())?;
            }
        }
        {
            let mut b = sb.create_bucket(name.as_bytes())?;
            b.put(NAME, backend_name.as_bytes())?;
            if let Some(p) = &old.parent {
                b.put(PARENT, p.as_bytes())?;
            }
            if !old.children.is_empty() {
                let mut children = b.create_bucket(CHILDREN)?;
                for child in &old.children {
                    children.put(child.as_bytes(), [])?;
                }
            }
            write_time(&mut b, CREATED_AT, now)?;
            write_time(&mut b, UPDATED_AT, now)?;
            write_map(&mut b, LABELS, labels)?;
        }
        sb.delete_bucket(key.as_bytes())?;
    }
    get(tx, ns, snapshotter, name)
}

/// Removes a snapshot's record (containerd's `Remove`, metadata side): refused while it has
/// children; the key leaves its parent's children.
pub fn remove(tx: &mut WriteTx<'_, '_>, ns: &str, snapshotter: &str, key: &str) -> MetaResult<()> {
    let rec = get(tx, ns, snapshotter, key)?;
    if !rec.children.is_empty() {
        return Err(MetaError::FailedPrecondition(
            "cannot remove snapshot with child: failed precondition".into(),
        ));
    }
    if let Some(p) = &rec.parent {
        if !exists(tx, ns, snapshotter, p) {
            return Err(parent_not_found(p));
        }
    }
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1.bucket_mut(ns.as_bytes()).ok_or_else(|| not_found(key))?;
    let mut sbs = nsb.bucket_mut(SNAPSHOTS).ok_or_else(|| not_found(key))?;
    let mut sb = sbs
        .bucket_mut(snapshotter.as_bytes())
        .ok_or_else(|| not_found(key))?;
    if let Some(p) = &rec.parent {
        if let Some(mut pb) = sb.bucket_mut(p.as_bytes()) {
            if let Some(mut children) = pb.bucket_mut(CHILDREN) {
                children.delete(key.as_bytes())?;
            }
        }
    }
    sb.delete_bucket(key.as_bytes())?;
    Ok(())
}

/// Updates a snapshot's labels (containerd's `Update`, metadata side). `field_paths` empty
/// replaces all labels; `labels` replaces all; `labels.<k>` sets (or, with no value in
/// `labels`, removes) one. Any other path is `InvalidArgument`. `updatedat` becomes now.
pub fn update_labels(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    snapshotter: &str,
    key: &str,
    labels: &BTreeMap<String, String>,
    field_paths: &[&str],
) -> MetaResult<SnapshotRecord> {
    if key.is_empty() {
        return Err(MetaError::InvalidArgument("invalid argument".into()));
    }
    let rec = get(tx, ns, snapshotter, key)?;
    let mut new = rec.labels.clone();
    if field_paths.is_empty() {
        new = labels.clone();
    }
    for path in field_paths {
        if let Some(k) = path.strip_prefix("labels.") {
            new.insert(k.to_string(), labels.get(k).cloned().unwrap_or_default());
        } else if *path == "labels" {
            new = labels.clone();
        } else {
            return Err(MetaError::InvalidArgument(format!(
                "cannot update {path:?} field on snapshot {key:?}"
            )));
        }
    }
    check_labels(&new)?;
    {
        let mut v1 = tx.v1_mut()?;
        let mut nsb = v1.bucket_mut(ns.as_bytes()).ok_or_else(|| not_found(key))?;
        let mut sbs = nsb.bucket_mut(SNAPSHOTS).ok_or_else(|| not_found(key))?;
        let mut sb = sbs
            .bucket_mut(snapshotter.as_bytes())
            .ok_or_else(|| not_found(key))?;
        let mut b = sb
            .bucket_mut(key.as_bytes())
            .ok_or_else(|| not_found(key))?;
        write_time(&mut b, UPDATED_AT, Timestamp::now())?;
        write_map(&mut b, LABELS, &new)?;
    }
    get(tx, ns, snapshotter, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::store::Store;
    #[allow(unused_imports)]
    use crate::metadata::test_support::labels;
    #[allow(unused_imports)]
    use crate::metadata::test_support::store;
    use corral_protocols::rpc::Code;

    const CHAIN: &str = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";
    const OV: &str = "overlayfs";

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn numbering_follows_containerd() {
        // The fixture's history: unpack (prepare extract, commit chain), a removed snapshot,
        // then web, job and scratch: default/2/<chain>, default/4/web, .../5/job, .../6/scratch.
        let (_d, s) = store();
        let ex = s
            .update(|tx| create(tx, "default", OV, "extract-1", None, &none()))
            .unwrap();
        assert_eq!(ex.backend_name, "default/1/extract-1");
        assert_eq!(ex.parent, None);
        assert_eq!(ex.created_at, ex.updated_at);
        let ref_label = labels(&[("containerd.io/snapshot.ref", CHAIN)]);
        let c = s
            .update(|tx| commit(tx, "default", OV, CHAIN, "extract-1", &ref_label))
            .unwrap();
        assert_eq!(c.backend_name, format!("default/2/{CHAIN}"));
        assert_eq!(c.labels, ref_label);
        assert!(!s
            .view(|tx| Ok(exists(tx, "default", OV, "extract-1")))
            .unwrap());
        s.update(|tx| create(tx, "default", OV, "tmp", Some(CHAIN), &none()))
            .unwrap();
        s.update(|tx| remove(tx, "default", OV, "tmp")).unwrap();
        // A failed create takes no number.
        let err = s
            .update(|tx| create(tx, "default", OV, CHAIN, None, &none()))
            .unwrap_err();
        assert_eq!(err.code(), Code::ALREADY_EXISTS);
        assert_eq!(
            err.to_string(),
            format!("snapshot {CHAIN:?}: already exists")
        );
        for (key, n) in [("web", 4), ("job", 5), ("scratch", 6)] {
            let r = s
                .update(|tx| create(tx, "default", OV, key, Some(CHAIN), &none()))
                .unwrap();
            assert_eq!(r.backend_name, format!("default/{n}/{key}"));
            assert_eq!(r.parent.as_deref(), Some(CHAIN));
        }
        assert_eq!(s.view(|tx| Ok(sequence(tx, "default", OV))).unwrap(), 6);
        // Another namespace and snapshotter count on their own.
        let e = s
            .update(|tx| create(tx, "edge", OV, "a", None, &none()))
            .unwrap();
        assert_eq!(e.backend_name, "edge/1/a");
        let n = s
            .update(|tx| create(tx, "default", "native", "a", None, &none()))
            .unwrap();
        assert_eq!(n.backend_name, "default/1/a");
        let chain = s.view(|tx| get(tx, "default", OV, CHAIN)).unwrap();
        assert_eq!(chain.children, ["job", "scratch", "web"]);
        let keys: Vec<_> = s
            .view(|tx| list(tx, "default", OV))
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(keys, ["job", "scratch", CHAIN, "web"]);
        assert_eq!(
            s.view(|tx| Ok(snapshotters(tx, "default"))).unwrap(),
            ["native", OV]
        );
    }

    #[test]
    fn commit_moves_the_child_link() {
        let (_d, s) = store();
        s.update(|tx| {
            create(tx, "default", OV, "base", None, &none())?;
            create(
                tx,
                "default",
                OV,
                "work",
                Some("base"),
                &labels(&[("a", "1")]),
            )
        })
        .unwrap();
        let c = s
            .update(|tx| commit(tx, "default", OV, "layer2", "work", &labels(&[("b", "2")])))
            .unwrap();
        assert_eq!(c.backend_name, "default/3/layer2");
        assert_eq!(c.parent.as_deref(), Some("base"));
        assert_eq!(c.labels, labels(&[("b", "2")]));
        let base = s.view(|tx| get(tx, "default", OV, "base")).unwrap();
        assert_eq!(base.children, ["layer2"]);
        let err = s.view(|tx| get(tx, "default", OV, "work")).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(err.to_string(), "snapshot work does not exist: not found");

        // Errors, in containerd's order and words; nothing changes.
        let err = s
            .update(|tx| commit(tx, "default", OV, "base", "gone", &none()))
            .unwrap_err();
        assert_eq!(err.to_string(), "snapshot \"base\": already exists");
        let err = s
            .update(|tx| commit(tx, "default", OV, "new", "gone", &none()))
            .unwrap_err();
        assert_eq!(err.to_string(), "snapshot gone does not exist: not found");
        let err = s
            .update(|tx| commit(tx, "default", "btrfs", "new", "gone", &none()))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(
            err.to_string(),
            "can not find snapshotter \"btrfs\": not found"
        );
        let big = labels(&[("k", &"v".repeat(5000))]);
        let err = s
            .update(|tx| commit(tx, "default", OV, "new", "layer2", &big))
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        assert!(err
            .to_string()
            .starts_with("info.Labels: label key and value"));
        assert_eq!(s.view(|tx| Ok(sequence(tx, "default", OV))).unwrap(), 3);
    }

    #[test]
    fn create_and_remove_rules() {
        let (_d, s) = store();
        let err = s
            .update(|tx| create(tx, "default", OV, "k", Some("missing"), &none()))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(
            err.to_string(),
            "parent snapshot missing does not exist: not found"
        );
        s.update(|tx| create(tx, "default", OV, "base", None, &none()))
            .unwrap();
        let err = s
            .update(|tx| {
                create(
                    tx,
                    "default",
                    OV,
                    "x",
                    None,
                    &labels(&[(LABEL_SNAPSHOT_REF, "base")]),
                )
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "target snapshot \"base\": already exists");
        s.update(|tx| create(tx, "default", OV, "child", Some("base"), &none()))
            .unwrap();
        let err = s
            .update(|tx| remove(tx, "default", OV, "base"))
            .unwrap_err();
        assert_eq!(err.code(), Code::FAILED_PRECONDITION);
        assert_eq!(
            err.to_string(),
            "cannot remove snapshot with child: failed precondition"
        );
        s.update(|tx| remove(tx, "default", OV, "child")).unwrap();
        let base = s.view(|tx| get(tx, "default", OV, "base")).unwrap();
        assert!(base.children.is_empty());
        s.update(|tx| remove(tx, "default", OV, "base")).unwrap();
        let err = s
            .update(|tx| remove(tx, "default", OV, "base"))
            .unwrap_err();
        assert_eq!(err.to_string(), "snapshot base does not exist: not found");
        assert!(s.view(|tx| list(tx, "default", OV)).unwrap().is_empty());
        assert_eq!(s.view(|tx| Ok(sequence(tx, "default", OV))).unwrap(), 2);
    }

    #[test]
    fn update_labels_field_paths() {
        let (_d, s) = store();
        let made = s
            .update(|tx| {
                create(
                    tx,
                    "default",
                    OV,
                    "k",
                    None,
                    &labels(&[("a", "1"), ("b", "2")]),
                )
            })
            .unwrap();
        let r = s
            .update(|tx| {
                update_labels(
                    tx,
                    "default",
                    OV,
                    "k",
                    &labels(&[("a", "9"), ("b", "x")]),
                    &["labels.a"],
                )
            })
            .unwrap();
        assert_eq!(r.labels, labels(&[("a", "9"), ("b", "2")]));
        assert!(r.updated_at >= made.updated_at);
        assert_eq!(r.created_at, made.created_at);
        let r = s
            .update(|tx| update_labels(tx, "default", OV, "k", &none(), &["labels.b"]))
            .unwrap();
        assert_eq!(r.labels, labels(&[("a", "9")]));
        let r = s
            .update(|tx| update_labels(tx, "default", OV, "k", &labels(&[("c", "3")]), &["labels"]))
            .unwrap();
        assert_eq!(r.labels, labels(&[("c", "3")]));
        let r = s
            .update(|tx| update_labels(tx, "default", OV, "k", &labels(&[("d", "4")]), &[]))
            .unwrap();
        assert_eq!(r.labels, labels(&[("d", "4")]));
        let err = s
            .update(|tx| update_labels(tx, "default", OV, "k", &none(), &["parent"]))
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        assert_eq!(
            err.to_string(),
            "cannot update \"parent\" field on snapshot \"k\": invalid argument"
        );
        let err = s
            .update(|tx| update_labels(tx, "default", OV, "nope", &none(), &[]))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        let r = s.view(|tx| get(tx, "default", OV, "k")).unwrap();
        assert_eq!(r.labels, labels(&[("d", "4")]));
    }

    #[test]
    fn reads_containerds_snapshots() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/containerd-1.6/meta.db");
        let s = Store::open_read_only(fixture).unwrap();
        let all = s.view(|tx| list(tx, "default", OV)).unwrap();
        let keys: Vec<_> = all.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["job", "scratch", CHAIN, "web"]);
        let chain = &all[2];
        assert_eq!(chain.backend_name, format!("default/2/{CHAIN}"));
        assert_eq!(chain.parent, None);
        assert_eq!(chain.children, ["job", "scratch", "web"]);
        assert!(chain.labels.is_empty());
        assert_eq!(chain.created_at, Timestamp::new(1_795_443_069, 521_823_949));
        assert_eq!(chain.updated_at, chain.created_at);
        let scratch = &all[1];
        assert_eq!(scratch.backend_name, "default/6/scratch");
        assert_eq!(scratch.parent.as_deref(), Some(CHAIN));
        assert_eq!(
            scratch.labels,
            labels(&[
                ("containerd.io/gc.root", "2026-11-23T14:11:09Z"),
                ("fixture", "scratch")
            ])
        );
        assert_eq!(
            scratch.created_at,
            Timestamp::new(1_795_443_069, 923_937_938)
        );
        assert_eq!(
            scratch.updated_at,
            Timestamp::new(1_795_443_069, 935_889_409)
        );
        let web = &all[3];
        assert_eq!(web.backend_name, "default/4/web");
        assert_eq!(web.parent.as_deref(), Some(CHAIN));
        assert!(web.children.is_empty());
        assert_eq!(web.created_at, Timestamp::new(1_795_443_069, 825_786_743));
        assert_eq!(all[0].backend_name, "default/5/job");
        assert_eq!(
            all[0].created_at,
            Timestamp::new(1_795_443_069, 851_512_118)
        );
        let edge = s.view(|tx| list(tx, "edge", OV)).unwrap();
        assert_eq!(edge.len(), 1);
        assert_eq!(edge[0].backend_name, format!("edge/2/{CHAIN}"));
        assert!(edge[0].children.is_empty());
        s.view(|tx| {
            assert_eq!(sequence(tx, "default", OV), 6);
            assert_eq!(sequence(tx, "edge", OV), 2);
            assert_eq!(snapshotters(tx, "default"), [OV]);
            Ok(())
        })
        .unwrap();
        let err = s.view(|tx| get(tx, "default", OV, "nope")).unwrap_err();
        assert_eq!(err.to_string(), "snapshot nope does not exist: not found");
    }
}
