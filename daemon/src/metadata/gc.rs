//! Garbage collection of meta.db records, deciding exactly as containerd 1.6 does
//! (`metadata/gc.go`, `gc/gc.go`): mark everything reachable from the roots, then remove every
//! content record, snapshot record, ingest record and lease that was not marked, in one write
//! transaction. The backends (blob files, snapshot directories) are swept afterwards by the
//! caller, through [`referenced_content`] and [`referenced_snapshots`].
//!
//! Roots, per namespace:
//! - every lease not expired by its `containerd.io/gc.expire` label (RFC 3339; unparsable
//!   keeps the lease), and the content, snapshots and ingests it holds; with
//!   `containerd.io/gc.flat` those are "flat": content follows no label reference, snapshots
//!   follow their parents only;
//! - every image's target digest and its label references;
//! - every ingest whose `expireat` is in the future;
//! - every blob and snapshot labelled `containerd.io/gc.root`;
//! - every container's snapshot (`snapshotter`/`snapshotKey`) and its label references.
//!
//! Edges: `containerd.io/gc.ref.content` (alone or followed by `.` or `/` and a name) names a
//! digest; `containerd.io/gc.ref.snapshot.<snapshotter>[/name]` names a snapshot key; a
//! snapshot refers to its parent; an ingest to its expected digest. Expired leases are removed
//! too, as containerd does.

use std::collections::{BTreeSet, HashSet};

use bbolt_rs::{BucketApi, BucketRwApi};

use super::encoding::{decode_time, Timestamp};
use super::error::MetaResult;
use super::schema::{
    BLOB, CONTAINERS, CONTENT, DIGEST, EXPECTED, EXPIRE_AT, IMAGES, INGESTS, LABELS, LEASES, NAME,
    PARENT, REF, SNAPSHOTS, SNAPSHOTTER, SNAPSHOT_KEY, TARGET,
};
use super::store::{Reader, WriteTx};
use super::text_time;

/// Marks a blob or snapshot as a root.
pub const LABEL_GC_ROOT: &str = "containerd.io/gc.root";
/// Prefix of the labels that reference content.
pub const LABEL_GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Prefix of the labels that reference snapshots (`...snapshot.<snapshotter>`).
pub const LABEL_GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.";
/// A lease's expiry (RFC 3339).
pub const LABEL_GC_EXPIRE: &str = "containerd.io/gc.expire";
/// A lease whose resources do not follow their references.
pub const LABEL_GC_FLAT: &str = "containerd.io/gc.flat";

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Content,
    Snapshot,
    Lease,
    Ingest,
}

/// One collectable record: `key` is a digest (content), `<snapshotter>/<key>` (snapshot), a
/// lease id or an ingest ref.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub kind: Kind,
    pub namespace: String,
    pub key: String,
}

impl Node {
    fn new(kind: Kind, namespace: &str, key: impl Into<String>) -> Node {
        Node {
            kind,
            namespace: namespace.to_string(),
            key: key.into(),
        }
    }

    /// The snapshotter of a snapshot node.
    pub fn snapshotter(&self) -> Option<&str> {
        (self.kind == Kind::Snapshot)
            .then(|| self.key.split_once('/').map(|(s, _)| s))
            .flatten()
    }
}

/// A node waiting to be scanned; flat nodes follow parents only.
struct Gray {
    node: Node,
    flat: bool,
}

/// What a collection removed from meta.db.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The removed records, in removal order.
    pub removed: Vec<Node>,
}

impl Collected {
    /// Whether content records or ingests went (the content backend needs a sweep).
    pub fn content_dirty(&self) -> bool {
        self.removed
            .iter()
            .any(|n| matches!(n.kind, Kind::Content | Kind::Ingest))
    }

    /// The snapshotters that lost records (their backends need a sweep).
    pub fn dirty_snapshotters(&self) -> BTreeSet<String> {
        self.removed
            .iter()
            .filter_map(Node::snapshotter)
            .map(str::to_string)
            .collect()
    }
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends the content and snapshot references in the labels of `b`.
fn label_refs<'tx, B: BucketApi<'tx>>(ns: &str, b: &B, out: &mut Vec<Node>) {
    let Some(labels) = b.bucket(LABELS) else {
        return;
    };
    for (k, v) in labels.iter_entries() {
        let key = String::from_utf8_lossy(k);
        if let Some(rest) = key.strip_prefix(LABEL_GC_REF_CONTENT) {
            if rest.is_empty() || rest.starts_with('.') || rest.starts_with('/') {
                out.push(Node::new(Kind::Content, ns, utf8(v)));
            }
        } else if let Some(rest) = key.strip_prefix(LABEL_GC_REF_SNAPSHOT) {
            let snapshotter = rest.split('/').next().unwrap_or_default();
            out.push(Node::new(
                Kind::Snapshot,
                ns,
                format!("{snapshotter}/{}", utf8(v)),
            ));
        }
    }
}

fn has_label<'tx, B: BucketApi<'tx>>(b: &B, name: &str) -> bool {
    b.bucket(LABELS)
        .is_some_and(|l| l.get(name.as_bytes()).is_some())
}

/// The roots of every namespace.
fn roots<'tx>(tx: &impl Reader<'tx>, now: Timestamp) -> Vec<Gray> {
    let mut out = Vec::new();
    let Some(v1) = tx.v1() else {
        return out;
    };
    for (nsk, nsb) in v1.iter_buckets() {
        let ns = utf8(nsk);
        let mut push = |node: Node, flat: bool| out.push(Gray { node, flat });

        if let Some(leases) = nsb.bucket(LEASES) {
            for (id, lb) in leases.iter_buckets() {
                let labels = lb.bucket(LABELS);
                if let Some(exp) = labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_GC_EXPIRE.as_bytes()))
                {
                    match text_time::parse(&String::from_utf8_lossy(exp)) {
                        Ok(t) if t < now => continue,
                        Ok(_) => {}
                        Err(_) => log::info!(
                            "gc: lease {}/{}: ignoring invalid expiration value {:?}",
                            ns,
                            utf8(id),
                            utf8(exp)
                        ),
                    }
                }
                let flat = labels
                    .as_ref()
                    .is_some_and(|l| l.get(LABEL_GC_FLAT.as_bytes()).is_some());
                push(Node::new(Kind::Lease, &ns, utf8(id)), false);
                if let Some(content) = lb.bucket(CONTENT) {
                    for (d, _) in content.iter_entries() {
                        push(Node::new(Kind::Content, &ns, utf8(d)), flat);
                    }
                }
                if let Some(snaps) = lb.bucket(SNAPSHOTS) {
                    for (sn, sb) in snaps.iter_buckets() {
                        for (k, _) in sb.iter_entries() {
                            let key = format!("{}/{}", utf8(sn), utf8(k));
                            push(Node::new(Kind::Snapshot, &ns, key), flat);
                        }
                    }
                }
                if let Some(ingests) = lb.bucket(INGESTS) {
                    for (r, _) in ingests.iter_entries() {
                        push(Node::new(Kind::Ingest, &ns, utf8(r)), false);
                    }
                }
            }
        }

        if let Some(images) = nsb.bucket(IMAGES) {
            for (_, ib) in images.iter_buckets() {
                if let Some(target) = ib.bucket(TARGET) {
                    let digest = target.get(DIGEST).map(utf8).unwrap_or_default();
                    push(Node::new(Kind::Content, &ns, digest), false);
                }
                let mut refs = Vec::new();
                label_refs(&ns, &ib, &mut refs);
                for r in refs {
                    push(r, false);
                }
            }
        }

        if let Some(content) = nsb.bucket(CONTENT) {
            if let Some(ingests) = content.bucket(INGESTS) {
                for (r, ib) in ingests.iter_buckets() {
                    let alive = ib
                        .get(EXPIRE_AT)
                        .and_then(|raw| decode_time(raw).ok())
                        .is_some_and(|t| t >= now);
                    if alive {
                        push(Node::new(Kind::Ingest, &ns, utf8(r)), false);
                    }
                }
            }
            if let Some(blobs) = content.bucket(BLOB) {
                for (d, bb) in blobs.iter_buckets() {
                    if has_label(&bb, LABEL_GC_ROOT) {
                        push(Node::new(Kind::Content, &ns, utf8(d)), false);
                    }
                }
            }
        }

        if let Some(containers) = nsb.bucket(CONTAINERS) {
            for (_, cb) in containers.iter_buckets() {
                let snapshotter = cb.get(SNAPSHOTTER).map(utf8).unwrap_or_default();
                if !snapshotter.is_empty() {
                    let key = cb.get(SNAPSHOT_KEY).map(utf8).unwrap_or_default();
                    push(
                        Node::new(Kind::Snapshot, &ns, format!("{snapshotter}/{key}")),
                        false,
                    );
                }
                let mut refs = Vec::new();
                label_refs(&ns, &cb, &mut refs);
                for r in refs {
                    push(r, false);
                }
            }
        }

        if let Some(snaps) = nsb.bucket(SNAPSHOTS) {
            for (sn, sb) in snaps.iter_buckets() {
                for (k, kb) in sb.iter_buckets() {
                    if has_label(&kb, LABEL_GC_ROOT) {
                        let key = format!("{}/{}", utf8(sn), utf8(k));
                        push(Node::new(Kind::Snapshot, &ns, key), false);
                    }
                }
            }
        }
    }
    out
}

/// The nodes `g` refers to.
fn references<'tx>(tx: &impl Reader<'tx>, g: &Gray, out: &mut Vec<Gray>) {
    let Some(v1) = tx.v1() else {
        return;
    };
    let Some(nsb) = v1.bucket(g.node.namespace.as_bytes()) else {
        return;
    };
    let ns = g.node.namespace.as_str();
    let mut refs = Vec::new();
    match g.node.kind {
        Kind::Content => {
            if g.flat {
                return;
            }
            let Some(content) = nsb.bucket(CONTENT) else {
                return;
            };
            let Some(blobs) = content.bucket(BLOB) else {
                return;
            };
            let Some(b) = blobs.bucket(g.node.key.as_bytes()) else {
                return;
            };
            label_refs(ns, &b, &mut refs);
        }
        Kind::Snapshot => {
            let Some((snapshotter, key)) = g.node.key.split_once('/') else {
                return;
            };
            let Some(snaps) = nsb.bucket(SNAPSHOTS) else {
                return;
            };
            let Some(sb) = snaps.bucket(snapshotter.as_bytes()) else {
                return;
            };
            let Some(b) = sb.bucket(key.as_bytes()) else {
                return;
            };
            if let Some(parent) = b.get(PARENT).filter(|p| !p.is_empty()) {
                out.push(Gray {
                    node: Node::new(
                        Kind::Snapshot,
                        ns,
                        format!("{snapshotter}/{}", utf8(parent)),
                    ),
                    flat: g.flat,
                });
            }
            if g.flat {
                return;
            }
            label_refs(ns, &b, &mut refs);
        }
        Kind::Ingest => {
            let Some(content) = nsb.bucket(CONTENT) else {
                return;
            };
            let Some(ingests) = content.bucket(INGESTS) else {
                return;
            };
            let Some(b) = ingests.bucket(g.node.key.as_bytes()) else {
                return;
            };
            if let Some(expected) = b.get(EXPECTED).filter(|e| !e.is_empty()) {
                refs.push(Node::new(Kind::Content, ns, utf8(expected)));
            }
        }
        Kind::Lease => {}
    }
    out.extend(refs.into_iter().map(|node| Gray { node, flat: false }));
}

/// Every node reachable from the roots at time `now`.
pub fn mark<'tx>(tx: &impl Reader<'tx>, now: Timestamp) -> HashSet<Node> {
    let mut grays = roots(tx, now);
    // A node is scanned once per flatness: a flat visit must not hide a full one.
    let mut seen: HashSet<(Node, bool)> = HashSet::new();
    let mut reachable = HashSet::new();
    while let Some(g) = grays.pop() {
        if !seen.insert((g.node.clone(), g.flat)) {
            continue;
        }
        references(tx, &g, &mut grays);
        reachable.insert(g.node);
    }
    reachable
}

/// Every collectable record in meta.db.
fn all_nodes<'tx>(tx: &impl Reader<'tx>) -> Vec<Node> {
    let mut out = Vec::new();
    let Some(v1) = tx.v1() else {
        return out;
    };
    for (nsk, nsb) in v1.iter_buckets() {
        let ns = utf8(nsk);
        if let Some(leases) = nsb.bucket(LEASES) {
            for (id, _) in leases.iter_buckets() {
                out.push(Node::new(Kind::Lease, &ns, utf8(id)));
            }
        }
        if let Some(snaps) = nsb.bucket(SNAPSHOTS) {
            for (sn, sb) in snaps.iter_buckets() {
                for (k, _) in sb.iter_buckets() {
                    out.push(Node::new(
                        Kind::Snapshot,
                        &ns,
                        format!("{}/{}", utf8(sn), utf8(k)),
                    ));
                }
            }
        }
        if let Some(content) = nsb.bucket(CONTENT) {
            if let Some(ingests) = content.bucket(INGESTS) {
                for (r, _) in ingests.iter_buckets() {
                    out.push(Node::new(Kind::Ingest, &ns, utf8(r)));
                }
            }
            if let Some(blobs) = content.bucket(BLOB) {
                for (d, _) in blobs.iter_buckets() {
                    out.push(Node::new(Kind::Content, &ns, utf8(d)));
                }
            }
        }
    }
    out
}

/// Removes one record (a missing one is not an error: the sweep may reach it twice).
fn remove(tx: &mut WriteTx<'_, '_>, node: &Node) -> MetaResult<()> {
    /// Deletes sub-bucket `key` of `b` when it is there.
    fn drop_bucket<'tx, B: BucketRwApi<'tx>>(b: &mut B, key: &[u8]) -> MetaResult<()> {
        if b.bucket(key).is_some() {
            b.delete_bucket(key)?;
        }
        Ok(())
    }
    let mut v1 = tx.v1_mut()?;
    let Some(mut nsb) = v1.bucket_mut(node.namespace.as_bytes()) else {
        return Ok(());
    };
    let key = node.key.as_bytes();
    match node.kind {
        Kind::Content | Kind::Ingest => {
            let Some(mut content) = nsb.bucket_mut(CONTENT) else {
                return Ok(());
            };
            let sub = if node.kind == Kind::Content {
                BLOB
            } else {
                INGESTS
            };
            if let Some(mut b) = content.bucket_mut(sub) {
                drop_bucket(&mut b, key)?;
            }
        }
        Kind::Snapshot => {
            let Some((snapshotter, key)) = node.key.split_once('/') else {
                return Ok(());
            };
            let Some(mut snaps) = nsb.bucket_mut(SNAPSHOTS) else {
                return Ok(());
            };
            if let Some(mut sb) = snaps.bucket_mut(snapshotter.as_bytes()) {
                drop_bucket(&mut sb, key.as_bytes())?;
            }
        }
        Kind::Lease => {
            if let Some(mut leases) = nsb.bucket_mut(LEASES) {
                drop_bucket(&mut leases, key)?;
            }
        }
    }
    Ok(())
}

/// Whether any record is unreachable at `now` (a read-only look, so a collection with
/// nothing to remove need not write, and fsync, meta.db).
pub fn has_garbage<'tx>(tx: &impl Reader<'tx>, now: Timestamp) -> bool {
    let marked = mark(tx, now);
    all_nodes(tx).iter().any(|n| !marked.contains(n))
}

/// Marks and sweeps in one write transaction: every record not reachable at `now` goes.
pub fn collect(tx: &mut WriteTx<'_, '_>, now: Timestamp) -> MetaResult<Collected> {
    let marked = mark(tx, now);
    let mut collected = Collected::default();
    for node in all_nodes(tx) {
        if marked.contains(&node) {
            continue;
        }
        log::debug!(
            "gc: removing {:?} {}/{}",
            node.kind,
            node.namespace,
            node.key
        );
        remove(tx, &node)?;
        collected.removed.push(node);
    }
    Ok(collected)
}

/// What the content backend must keep: every digest some namespace has a content record for
/// or an ingest expects (a shared write may be waiting for it), and the backend ref of every
/// recorded ingest (containerd's content `garbageCollect`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContentRefs {
    pub blobs: HashSet<String>,
    pub ingests: HashSet<String>,
}

/// The content every namespace still refers to; see [`ContentRefs`].
pub fn referenced_content<'tx>(tx: &impl Reader<'tx>) -> ContentRefs {
    let mut out = ContentRefs::default();
    let Some(v1) = tx.v1() else {
        return out;
    };
    for (_, nsb) in v1.iter_buckets() {
        let Some(content) = nsb.bucket(CONTENT) else {
            continue;
        };
        if let Some(blobs) = content.bucket(BLOB) {
            out.blobs.extend(blobs.iter_buckets().map(|(d, _)| utf8(d)));
        }
        if let Some(ingests) = content.bucket(INGESTS) {
            for (_, ib) in ingests.iter_buckets() {
                if let Some(expected) = ib.get(EXPECTED).filter(|e| !e.is_empty()) {
                    out.blobs.insert(utf8(expected));
                }
                if let Some(bref) = ib.get(REF).filter(|r| !r.is_empty()) {
                    out.ingests.insert(utf8(bref));
                }
            }
        }
    }
    out
}

/// Every backend snapshot name (`<ns>/<seq>/<key>`) some namespace still has a record for
/// in `snapshotter`: the snapshots its backend must keep.
pub fn referenced_snapshots<'tx>(tx: &impl Reader<'tx>, snapshotter: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let Some(v1) = tx.v1() else {
        return out;
    };
    for (_, nsb) in v1.iter_buckets() {
        let Some(snaps) = nsb.bucket(SNAPSHOTS) else {
            continue;
        };
        if let Some(sb) = snaps.bucket(snapshotter.as_bytes()) {
            for (_, kb) in sb.iter_buckets() {
                if let Some(name) = kb.get(NAME).filter(|n| !n.is_empty()) {
                    out.insert(utf8(name));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::container::{self, AnyValue, Container, Runtime};
    use crate::metadata::image::{self, Descriptor, Image};
    use crate::metadata::lease::{self, Resource};
    use crate::metadata::store::Store;
    use crate::metadata::test_support::{labels, store};
    use crate::metadata::{content, snapshot};

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn blob(s: &Store, ns: &str, n: u8, l: &[(&str, &str)]) {
        s.update(|tx| content::add_blob(tx, ns, &digest(n), 10, &labels(l)))
            .unwrap();
    }

    fn image(s: &Store, ns: &str, name: &str, target: u8, l: &[(&str, &str)]) {
        let img = Image {
            name: name.into(),
            labels: labels(l),
            target: Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: digest(target),
                size: 10,
                annotations: BTreeMap::new(),
            },
            ..Default::default()
        };
        s.update(|tx| image::create(tx, ns, &img)).unwrap();
    }

    /// Prepares `key` on `parent` and commits it as `name`.
    fn committed(s: &Store, ns: &str, name: &str, parent: Option<&str>, l: &[(&str, &str)]) {
        let key = format!("extract-{name}");
        s.update(|tx| {
            snapshot::create(tx, ns, "overlayfs", &key, parent, &BTreeMap::new())?;
            snapshot::commit(tx, ns, "overlayfs", name, &key, &labels(l))
        })
        .unwrap();
    }

    fn run(s: &Store, now: Timestamp) -> Vec<(Kind, String, String)> {
        let garbage = s.view(|tx| Ok(has_garbage(tx, now))).unwrap();
        let c = s.update(|tx| collect(tx, now)).unwrap();
        assert_eq!(
            garbage,
            !c.removed.is_empty(),
            "has_garbage agrees with collect"
        );
        let mut out: Vec<_> = c
            .removed
            .into_iter()
            .map(|n| (n.kind, n.namespace, n.key))
            .collect();
        out.sort();
        out
    }

    fn gone(kind: Kind, ns: &str, key: impl Into<String>) -> (Kind, String, String) {
        (kind, ns.to_string(), key.into())
    }

    #[test]
    fn an_image_keeps_its_tree_and_the_rest_goes() {
        let (_d, s) = store();
        // index -> manifest -> config + layer; the config holds the unpacked snapshot chain.
        blob(
            &s,
            "default",
            2,
            &[
                ("containerd.io/gc.ref.content.config", &digest(3)),
                ("containerd.io/gc.ref.content.l.0", &digest(4)),
            ],
        );
        blob(
            &s,
            "default",
            1,
            &[("containerd.io/gc.ref.content.m.0", &digest(2))],
        );
        blob(
            &s,
            "default",
            3,
            &[("containerd.io/gc.ref.snapshot.overlayfs", "chain-2")],
        );
        blob(&s, "default", 4, &[]);
        blob(&s, "default", 5, &[]); // unreferenced
        blob(
            &s,
            "default",
            6,
            &[("containerd.io/gc.ref.contentx", &digest(5))],
        ); // not a ref
        committed(&s, "default", "chain-1", None, &[]);
        committed(&s, "default", "chain-2", Some("chain-1"), &[]);
        committed(&s, "default", "stray", None, &[]);
        image(&s, "default", "docker.io/library/busybox:latest", 1, &[]);
        let removed = run(&s, Timestamp::now());
        assert_eq!(
            removed,
            vec![
                gone(Kind::Content, "default", digest(5)),
                gone(Kind::Content, "default", digest(6)),
                gone(Kind::Snapshot, "default", "overlayfs/stray"),
            ]
        );
        // Deleting the image frees the whole tree on the next run.
        s.update(|tx| image::delete(tx, "default", "docker.io/library/busybox:latest"))
            .unwrap();
        let removed = run(&s, Timestamp::now());
        assert_eq!(removed.len(), 6, "{removed:?}");
        assert_eq!(
            s.view(|tx| Ok(referenced_content(tx))).unwrap(),
            ContentRefs::default()
        );
        assert!(s
            .view(|tx| Ok(referenced_snapshots(tx, "overlayfs")))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn roots_by_label_container_and_namespace_isolation() {
        let (_d, s) = store();
        blob(&s, "a", 1, &[("containerd.io/gc.root", "true")]);
        blob(&s, "b", 1, &[]); // same digest, other namespace, unreferenced there
        committed(
            &s,
            "a",
            "kept",
            None,
            &[("containerd.io/gc.root", "2000-01-01T00:00:00Z")],
        );
        committed(&s, "a", "base", None, &[]);
        s.update(|tx| {
            snapshot::create(
                tx,
                "a",
                "overlayfs",
                "c1-rootfs",
                Some("base"),
                &BTreeMap::new(),
            )
        })
        .unwrap();
        let c = Container {
            id: "c1".into(),
            runtime: Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            },
            spec: Some(AnyValue {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: b"{}".to_vec(),
            }),
            snapshotter: "overlayfs".into(),
            snapshot_key: "c1-rootfs".into(),
            labels: labels(&[("containerd.io/gc.ref.content.x", &digest(9))]),
            ..Default::default()
        };
        s.update(|tx| container::create(tx, "a", &c)).unwrap();
        blob(&s, "a", 9, &[]);
        let removed = run(&s, Timestamp::now());
        assert_eq!(removed, vec![gone(Kind::Content, "b", digest(1))]);
        // The backend still needs digest 1 (namespace a) and every remaining snapshot name.
        let refs = s.view(|tx| Ok(referenced_content(tx))).unwrap();
        assert_eq!(refs.blobs, [digest(1), digest(9)].into_iter().collect());
        let names = s
            .view(|tx| Ok(referenced_snapshots(tx, "overlayfs")))
            .unwrap();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("a/")));
    }

    #[test]
    fn leases_hold_until_they_expire_and_flat_leases_do_not_follow_labels() {
        let (_d, s) = store();
        let lease_with = |id: &str, l: &[(&str, &str)], res: &[Resource]| {
            s.update(|tx| {
                lease::create(tx, "default", id, &labels(l))?;
                for r in res {
                    lease::add_resource(tx, "default", id, r)?;
                }
                Ok(())
            })
            .unwrap();
        };
        blob(
            &s,
            "default",
            1,
            &[("containerd.io/gc.ref.content.l.0", &digest(2))],
        );
        blob(&s, "default", 2, &[]);
        blob(
            &s,
            "default",
            3,
            &[("containerd.io/gc.ref.content.l.0", &digest(4))],
        );
        blob(&s, "default", 4, &[]);
        committed(&s, "default", "p", None, &[]);
        committed(
            &s,
            "default",
            "c",
            Some("p"),
            &[("containerd.io/gc.ref.content", &digest(5))],
        );
        blob(&s, "default", 5, &[]);
        let now = Timestamp::now();
        let future = text_time::format(Timestamp::new(now.secs + 3600, 0)).unwrap();
        let past = text_time::format(Timestamp::new(now.secs - 3600, 0)).unwrap();
        lease_with(
            "live",
            &[("containerd.io/gc.expire", &future)],
            &[Resource::new("content", digest(1))],
        );
        lease_with(
            "flat",
            &[("containerd.io/gc.flat", "true")],
            &[
                Resource::new("content", digest(3)),
                Resource::new("snapshots/overlayfs", "c"),
            ],
        );
        lease_with("bad-expiry", &[("containerd.io/gc.expire", "soon")], &[]);
        lease_with("expired", &[("containerd.io/gc.expire", &past)], &[]);
        let removed = run(&s, now);
        assert_eq!(
            removed,
            vec![
                // The flat lease keeps 3 but not what 3's labels name; it keeps snapshot c
                // and its parent p, but not the content c's labels name.
                gone(Kind::Content, "default", digest(4)),
                gone(Kind::Content, "default", digest(5)),
                gone(Kind::Lease, "default", "expired"),
            ]
        );
        // Once "live" has expired, what it held goes too.
        let later = Timestamp::new(now.secs + 7200, 0);
        let removed = run(&s, later);
        assert_eq!(
            removed,
            vec![
                gone(Kind::Content, "default", digest(1)),
                gone(Kind::Content, "default", digest(2)),
                gone(Kind::Lease, "default", "live"),
            ]
        );
    }

    #[test]
    fn ingests_live_by_expiry_or_lease_and_keep_their_expected_blob() {
        let (_d, s) = store();
        let now = Timestamp::now();
        blob(&s, "default", 1, &[]);
        blob(&s, "default", 2, &[]);
        s.update(|tx| {
            content::create_ingest(
                tx,
                "default",
                "fresh",
                Some(Timestamp::new(now.secs + 60, 0)),
                Some(&digest(1)),
            )?;
            content::create_ingest(
                tx,
                "default",
                "stale",
                Some(Timestamp::new(now.secs - 60, 0)),
                Some(&digest(2)),
            )?;
            content::create_ingest(tx, "default", "leased", None, None)?;
            content::create_ingest(tx, "default", "orphan", None, None)?;
            lease::create(tx, "default", "l", &BTreeMap::new())?;
            lease::add_resource(tx, "default", "l", &Resource::new("ingests", "leased"))
        })
        .unwrap();
        let removed = run(&s, now);
        assert_eq!(
            removed,
            vec![
                gone(Kind::Content, "default", digest(2)),
                gone(Kind::Ingest, "default", "orphan"),
                gone(Kind::Ingest, "default", "stale"),
            ]
        );
        let c = Collected {
            removed: vec![Node::new(Kind::Snapshot, "x", "native/k")],
        };
        assert!(!c.content_dirty());
        assert_eq!(
            c.dirty_snapshotters(),
            ["native".to_string()].into_iter().collect()
        );
    }
}
