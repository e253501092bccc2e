//! Leases: `v1/<ns>/leases/<id>/` with `createdat`, `labels/` and the resources the lease
//! holds, as containerd 1.6 (`metadata/leases.go`) stores them:
//!
//! ```text
//! content/<digest> = ""                  type "content"
//! snapshots/<snapshotter>/<key> = ""     type "snapshots/<snapshotter>"
//! ingests/<ref> = ""                     type "ingests"
//! ```
//!
//! A lease has no `updatedat`.

use std::collections::BTreeMap;

use bbolt_rs::{BucketApi, BucketRwApi, BucketRwImpl};

use super::content::validate_digest;
use super::encoding::Timestamp;
use super::error::{MetaError, MetaResult};
use super::namespace;
use super::record::{read_map, read_time, write_map, write_time};
use super::schema::{CONTENT, CREATED_AT, INGESTS, LABELS, LEASES, SNAPSHOTS};
use super::store::{Reader, WriteTx};
use super::validate::{validate_identifier, validate_labels};

/// A lease (containerd's `leases.Lease`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// `createdat`; the zero value when the record has none.
    pub created_at: Timestamp,
}

/// A resource a lease holds (containerd's `leases.Resource { ID, Type }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    /// A digest (`content`), a snapshot key (`snapshots/<snapshotter>`) or an ingest ref
    /// (`ingests`).
    pub id: String,
    /// `content`, `ingests` or `snapshots/<snapshotter>` (containerd's `Type`).
    pub kind: String,
}

impl Resource {
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Resource {
            id: id.into(),
            kind: kind.into(),
        }
    }
}

fn not_found(id: &str) -> MetaError {
    MetaError::NotFound(format!("lease {id:?}"))
}

fn read_lease<'tx, B: BucketApi<'tx>>(ns: &str, id: &str, b: &B) -> MetaResult<Lease> {
    let path = format!("v1/{ns}/leases/{id}");
    Ok(Lease {
        id: id.to_string(),
        labels: read_map(b, LABELS),
        created_at: read_time(b, CREATED_AT, &path)?.unwrap_or_default(),
    })
}

/// Creates a lease (containerd's `Leases.Create`); its `createdat` is now.
pub fn create(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    id: &str,
    labels: &BTreeMap<String, String>,
) -> MetaResult<Lease> {
    validate_identifier("lease", id)?;
    validate_labels(labels)?;
    namespace::ensure(tx, ns)?;
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1
        .bucket_mut(ns.as_bytes())
        .ok_or_else(|| MetaError::Storage(format!("namespace {ns:?} vanished")))?;
    let mut leases = nsb.create_bucket_if_not_exists(LEASES)?;
    if leases.bucket(id.as_bytes()).is_some() {
        return Err(MetaError::AlreadyExists(format!("lease {id:?}")));
    }
    let mut b = leases.create_bucket(id.as_bytes())?;
    let created_at = Timestamp::now();
    write_time(&mut b, CREATED_AT, created_at)?;
    write_map(&mut b, LABELS, labels)?;
    Ok(Lease {
        id: id.to_string(),
        labels: labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        created_at,
    })
}

/// One lease.
pub fn get<'tx>(tx: &impl Reader<'tx>, ns: &str, id: &str) -> MetaResult<Lease> {
    let v1 = tx.v1().ok_or_else(|| not_found(id))?;
    let nsb = v1.bucket(ns.as_bytes()).ok_or_else(|| not_found(id))?;
    let leases = nsb.bucket(LEASES).ok_or_else(|| not_found(id))?;
    let b = leases.bucket(id.as_bytes()).ok_or_else(|| not_found(id))?;
    read_lease(ns, id, &b)
}

/// Every lease of `ns`, in id order (empty when the namespace has none).
pub fn list<'tx>(tx: &impl Reader<'tx>, ns: &str) -> MetaResult<Vec<Lease>> {
    let Some(v1) = tx.v1() else {
        return Ok(Vec::new());
    };
    let Some(nsb) = v1.bucket(ns.as_bytes()) else {
        return Ok(Vec::new());
    };
    let Some(leases) = nsb.bucket(LEASES) else {
        return Ok(Vec::new());
    };
    leases
        .iter_buckets()
        .map(|(k, b)| read_lease(ns, &String::from_utf8_lossy(k), &b))
        .collect()
}

/// Deletes a lease and its references (containerd's `Leases.Delete`).
pub fn delete(tx: &mut WriteTx<'_, '_>, ns: &str, id: &str) -> MetaResult<()> {
    get(tx, ns, id)?;
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1.bucket_mut(ns.as_bytes()).ok_or_else(|| not_found(id))?;
    let mut leases = nsb.bucket_mut(LEASES).ok_or_else(|| not_found(id))?;
    leases.delete_bucket(id.as_bytes())?;
    Ok(())
}

/// The bucket path under the lease and the key of a resource, checked as containerd's
/// `parseLeaseResource` does (content ids are normalised digests).
fn parse_resource(r: &Resource) -> MetaResult<(Vec<String>, String)> {
    let keys: Vec<String> = r.kind.split('/').map(str::to_string).collect();
    let typ = &r.kind;
    match keys[0].as_bytes() {
        CONTENT | INGESTS => {
            if keys.len() != 1 {
                return Err(MetaError::InvalidArgument(format!(
                    "invalid resource type {typ}"
                )));
            }
            if keys[0].as_bytes() == CONTENT {
                if let Err(e) = validate_digest(&r.id) {
                    return Err(MetaError::InvalidArgument(format!(
                        "invalid content resource id {}: {e}",
                        r.id
                    )));
                }
            }
        }
        SNAPSHOTS => {
            if keys.len() != 2 || keys[1].is_empty() {
                return Err(MetaError::InvalidArgument(format!(
                    "invalid snapshot resource type {typ}"
                )));
            }
        }
        // containerd answers NotImplemented here.
        _ => {
            return Err(MetaError::Unimplemented(format!(
                "resource type {typ} not supported yet"
            )))
        }
    }
    if r.id.is_empty() {
        return Err(MetaError::InvalidArgument(format!(
            "invalid {typ} resource id: must not be empty"
        )));
    }
    Ok((keys, r.id.clone()))
}

/// Adds a reference from the lease to a resource (containerd's `Leases.AddResource`).
pub fn add_resource(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    lease: &str,
    r: &Resource,
) -> MetaResult<()> {
    get(tx, ns, lease)?;
    let (keys, id) = parse_resource(r)?;
    with_lease_mut(tx, ns, lease, |lb| {
        let mut first = lb.create_bucket_if_not_exists(keys[0].as_bytes())?;
        if let Some(sub) = keys.get(1) {
            let mut second = first.create_bucket_if_not_exists(sub.as_bytes())?;
            second.put(id.as_bytes(), [])?;
        } else {
            first.put(id.as_bytes(), [])?;
        }
        Ok(())
    })
}

/// Removes a reference (containerd's `Leases.DeleteResource`); a reference the lease does not
/// hold is not an error.
pub fn delete_resource(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    lease: &str,
    r: &Resource,
) -> MetaResult<()> {
    get(tx, ns, lease)?;
    let (keys, id) = parse_resource(r)?;
    with_lease_mut(tx, ns, lease, |lb| {
        let Some(mut first) = lb.bucket_mut(keys[0].as_bytes()) else {
            return Ok(());
        };
        if let Some(sub) = keys.get(1) {
            if let Some(mut second) = first.bucket_mut(sub.as_bytes()) {
                second.delete(id.as_bytes())?;
            }
        } else {
            first.delete(id.as_bytes())?;
        }
        Ok(())
    })
}

/// Runs `f` on the bucket of `lease` in `ns` for writing (`NotFound` when it is missing).
fn with_lease_mut<'tx, T>(
    tx: &mut WriteTx<'_, 'tx>,
    ns: &str,
    lease: &str,
    f: impl FnOnce(&mut BucketRwImpl<'tx, '_>) -> MetaResult<T>,
) -> MetaResult<T> {
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1
        .bucket_mut(ns.as_bytes())
        .ok_or_else(|| not_found(lease))?;
    let mut leases = nsb.bucket_mut(LEASES).ok_or_else(|| not_found(lease))?;
    let mut lb = leases
        .bucket_mut(lease.as_bytes())
        .ok_or_else(|| not_found(lease))?;
    f(&mut lb)
}

/// The resources a lease holds, in containerd's order: content, ingests, then snapshots by
/// snapshotter.
pub fn list_resources<'tx>(
    tx: &impl Reader<'tx>,
    ns: &str,
    lease: &str,
) -> MetaResult<Vec<Resource>> {
    let v1 = tx.v1().ok_or_else(|| not_found(lease))?;
    let nsb = v1.bucket(ns.as_bytes()).ok_or_else(|| not_found(lease))?;
    let leases = nsb.bucket(LEASES).ok_or_else(|| not_found(lease))?;
    let lb = leases
        .bucket(lease.as_bytes())
        .ok_or_else(|| not_found(lease))?;
    let mut out = Vec::new();
    for kind in [CONTENT, INGESTS] {
        if let Some(b) = lb.bucket(kind) {
            for (k, _) in b.iter_entries() {
                out.push(Resource::new(
                    String::from_utf8_lossy(kind),
                    String::from_utf8_lossy(k),
                ));
            }
        }
    }
    if let Some(sb) = lb.bucket(SNAPSHOTS) {
        for (sn, b) in sb.iter_buckets() {
            let kind = format!("snapshots/{}", String::from_utf8_lossy(sn));
            for (k, _) in b.iter_entries() {
                out.push(Resource::new(kind.clone(), String::from_utf8_lossy(k)));
            }
        }
    }
    Ok(out)
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

    const DIGEST: &str = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";

    #[test]
    fn create_get_list_delete() {
        let (_d, s) = store();
        let l = labels(&[
            ("containerd.io/gc.expire", "2030-01-01T00:00:00Z"),
            ("x", ""),
        ]);
        let made = s.update(|tx| create(tx, "edge", "pull-1", &l)).unwrap();
        assert_eq!(
            made.labels,
            labels(&[("containerd.io/gc.expire", "2030-01-01T00:00:00Z")])
        );
        assert!(made.created_at.secs > 1_700_000_000);
        assert_eq!(s.view(|tx| get(tx, "edge", "pull-1")).unwrap(), made);
        s.update(|tx| create(tx, "edge", "bare", &BTreeMap::new()))
            .unwrap();
        let ids: Vec<_> = s
            .view(|tx| list(tx, "edge"))
            .unwrap()
            .into_iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(ids, ["bare", "pull-1"]);
        // The namespace was created with its labels bucket; no updatedat on leases.
        s.view(|tx| {
            let v1 = tx.v1().unwrap();
            let ns = v1.bucket(b"edge").unwrap();
            assert!(ns.bucket(LABELS).is_some());
            let b = ns.bucket(LEASES).unwrap();
            let bare = b.bucket(b"bare").unwrap();
            assert!(bare.get(b"updatedat").is_none());
            assert!(bare.bucket(LABELS).is_none());
            Ok(())
        })
        .unwrap();
        assert!(s.view(|tx| list(tx, "nowhere")).unwrap().is_empty());

        let err = s
            .update(|tx| create(tx, "edge", "pull-1", &BTreeMap::new()))
            .unwrap_err();
        assert_eq!(err.code(), Code::ALREADY_EXISTS);
        assert_eq!(err.to_string(), "lease \"pull-1\": already exists");

        s.update(|tx| delete(tx, "edge", "pull-1")).unwrap();
        let err = s.view(|tx| get(tx, "edge", "pull-1")).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(err.to_string(), "lease \"pull-1\": not found");
        let err = s.update(|tx| delete(tx, "edge", "pull-1")).unwrap_err();
        assert_eq!(err.to_string(), "lease \"pull-1\": not found");
        let err = s.update(|tx| delete(tx, "other", "x")).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
    }

    #[test]
    fn bad_ids_and_labels_are_invalid() {
        let (_d, s) = store();
        for id in ["", "no spaces", "a/b"] {
            let err = s
                .update(|tx| create(tx, "default", id, &BTreeMap::new()))
                .unwrap_err();
            assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{id:?}");
        }
        let big = labels(&[("k", &"v".repeat(5000))]);
        let err = s.update(|tx| create(tx, "default", "l", &big)).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        assert!(s.view(|tx| list(tx, "default")).unwrap().is_empty());
    }

    #[test]
    fn resources() {
        let (_d, s) = store();
        s.update(|tx| create(tx, "default", "l1", &BTreeMap::new()))
            .unwrap();
        let content = Resource::new("content", DIGEST);
        let ingest = Resource::new("ingests", "default-pull-ref");
        let snap = Resource::new("snapshots/overlayfs", "web");
        let snap2 = Resource::new("snapshots/native", "x");
        for r in [&snap, &content, &ingest, &snap2, &content] {
            s.update(|tx| add_resource(tx, "default", "l1", r)).unwrap();
        }
        let got = s.view(|tx| list_resources(tx, "default", "l1")).unwrap();
        assert_eq!(
            got,
            [content.clone(), ingest.clone(), snap2.clone(), snap.clone()]
        );
        // Stored as containerd stores them: set members with empty values.
        s.view(|tx| {
            let v1 = tx.v1().unwrap();
            let ns = v1.bucket(b"default").unwrap();
            let leases = ns.bucket(LEASES).unwrap();
            let l = leases.bucket(b"l1").unwrap();
            assert_eq!(
                l.bucket(CONTENT).unwrap().get(DIGEST.as_bytes()),
                Some(&[][..])
            );
            let sn = l.bucket(SNAPSHOTS).unwrap();
            assert_eq!(sn.bucket(b"overlayfs").unwrap().get(b"web"), Some(&[][..]));
            Ok(())
        })
        .unwrap();

        s.update(|tx| delete_resource(tx, "default", "l1", &snap))
            .unwrap();
        s.update(|tx| delete_resource(tx, "default", "l1", &content))
            .unwrap();
        // Absent references are fine.
        s.update(|tx| delete_resource(tx, "default", "l1", &content))
            .unwrap();
        s.update(|tx| delete_resource(tx, "default", "l1", &Resource::new("snapshots/btrfs", "a")))
            .unwrap();
        let got = s.view(|tx| list_resources(tx, "default", "l1")).unwrap();
        assert_eq!(got, [ingest, snap2]);

        let err = s
            .update(|tx| add_resource(tx, "default", "nope", &content))
            .unwrap_err();
        assert_eq!(err.to_string(), "lease \"nope\": not found");
        let err = s
            .view(|tx| list_resources(tx, "default", "nope"))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        let err = s
            .update(|tx| delete_resource(tx, "default", "nope", &content))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
    }

    #[test]
    fn resource_validation_matches_containerd() {
        let (_d, s) = store();
        s.update(|tx| create(tx, "default", "l1", &BTreeMap::new()))
            .unwrap();
        let cases = [
            (
                Resource::new("images", "x"),
                "resource type images not supported yet",
            ),
            (
                Resource::new("content/x", DIGEST),
                "invalid resource type content/x",
            ),
            (
                Resource::new("ingests/x", "r"),
                "invalid resource type ingests/x",
            ),
            (
                Resource::new("snapshots", "k"),
                "invalid snapshot resource type snapshots",
            ),
            (
                Resource::new("snapshots/a/b", "k"),
                "invalid snapshot resource type snapshots/a/b",
            ),
            (
                Resource::new("content", "nodigest"),
                "invalid content resource id nodigest: invalid checksum digest format",
            ),
            (
                Resource::new("content", "sha256:abc"),
                "invalid content resource id sha256:abc: invalid checksum digest length",
            ),
            (
                Resource::new("content", "md5:abc"),
                "invalid content resource id md5:abc: unsupported digest algorithm",
            ),
        ];
        for (r, msg) in cases {
            let err = s
                .update(|tx| add_resource(tx, "default", "l1", &r))
                .unwrap_err();
            let want = if r.kind == "images" {
                Code::UNIMPLEMENTED
            } else {
                Code::INVALID_ARGUMENT
            };
            assert_eq!(err.code(), want, "{r:?}");
            let kind = if want == Code::UNIMPLEMENTED {
                "not implemented"
            } else {
                "invalid argument"
            };
            let msg = format!("{msg}: {kind}");
            assert_eq!(err.to_string(), msg);
            let err = s
                .update(|tx| delete_resource(tx, "default", "l1", &r))
                .unwrap_err();
            assert_eq!(err.to_string(), msg);
        }
        let upper = DIGEST.to_uppercase().replace("SHA256", "sha256");
        assert_eq!(
            validate_digest(&upper),
            Err("invalid checksum digest format")
        );
        assert_eq!(validate_digest(DIGEST), Ok(()));
        assert_eq!(
            validate_digest(":abc"),
            Err("invalid checksum digest format")
        );
        assert_eq!(
            validate_digest("sha256:"),
            Err("invalid checksum digest format")
        );
        assert!(s
            .view(|tx| list_resources(tx, "default", "l1"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn reads_containerds_lease() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/containerd-1.6/meta.db");
        let s = Store::open_read_only(fixture).unwrap();
        let all = s.view(|tx| list(tx, "default")).unwrap();
        assert_eq!(
            all,
            [Lease {
                id: "fixture-lease".into(),
                labels: labels(&[("keep", "1")]),
                // 0x010000000ee296407d34b3d688ffff
                created_at: Timestamp::new(1_795_443_069, 884_201_096),
            }]
        );
        assert!(s
            .view(|tx| list_resources(tx, "default", "fixture-lease"))
            .unwrap()
            .is_empty());
        assert!(s.view(|tx| list(tx, "edge")).unwrap().is_empty());
    }
}
