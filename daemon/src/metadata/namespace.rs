//! Namespaces: `v1/<name>/`, with `labels/` (always created, possibly empty).

use std::collections::BTreeMap;

use bbolt_rs::{BucketApi, BucketRwApi};

use super::error::{MetaError, MetaResult};
use super::record::{read_map, write_map};
use super::schema::{BLOB, CONTAINERS, CONTENT, IMAGES, LABELS, SNAPSHOTS, VERSION};
use super::store::{Reader, WriteTx};
use super::validate::{validate_identifier, validate_label, validate_labels};

/// A namespace and its labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

fn not_found(name: &str) -> MetaError {
    MetaError::NotFound(format!("namespace {name:?}"))
}

/// Every namespace, in name order.
pub fn list<'tx>(tx: &impl Reader<'tx>) -> MetaResult<Vec<Namespace>> {
    let Some(v1) = tx.v1() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, b) in v1.iter_buckets() {
        if name == VERSION {
            continue;
        }
        out.push(Namespace {
            name: String::from_utf8_lossy(name).into_owned(),
            labels: read_map(&b, LABELS),
        });
    }
    Ok(out)
}

/// One namespace.
pub fn get<'tx>(tx: &impl Reader<'tx>, name: &str) -> MetaResult<Namespace> {
    let v1 = tx.v1().ok_or_else(|| not_found(name))?;
    let b = v1.bucket(name.as_bytes()).ok_or_else(|| not_found(name))?;
    Ok(Namespace {
        name: name.to_string(),
        labels: read_map(&b, LABELS),
    })
}

/// Whether `name` exists.
pub fn exists<'tx>(tx: &impl Reader<'tx>, name: &str) -> bool {
    tx.v1()
        .is_some_and(|v1| v1.bucket(name.as_bytes()).is_some())
}

/// Creates a namespace (containerd's `Namespaces.Create`).
pub fn create(tx: &mut WriteTx<'_, '_>, ns: &Namespace) -> MetaResult<()> {
    validate_identifier("namespace", &ns.name)?;
    validate_labels(&ns.labels)?;
    if exists(tx, &ns.name) {
        return Err(MetaError::AlreadyExists(format!("namespace {:?}", ns.name)));
    }
    let mut v1 = tx.v1_mut()?;
    let mut b = v1.create_bucket(ns.name.as_bytes())?;
    b.create_bucket(LABELS)?;
    write_map(&mut b, LABELS, &ns.labels)?;
    if b.bucket(LABELS).is_none() {
        b.create_bucket(LABELS)?;
    }
    Ok(())
}

/// The namespace bucket for writing, created when missing (objects created in a namespace
/// create it, as in containerd).
pub fn ensure(tx: &mut WriteTx<'_, '_>, name: &str) -> MetaResult<()> {
    validate_identifier("namespace", name)?;
    let mut v1 = tx.v1_mut()?;
    let mut b = v1.create_bucket_if_not_exists(name.as_bytes())?;
    b.create_bucket_if_not_exists(LABELS)?;
    Ok(())
}

/// Sets one label; an empty value removes it.
pub fn set_label(tx: &mut WriteTx<'_, '_>, name: &str, key: &str, value: &str) -> MetaResult<()> {
    validate_label(key, value)?;
    if !exists(tx, name) {
        return Err(not_found(name));
    }
    let mut v1 = tx.v1_mut()?;
    let Some(mut b) = v1.bucket_mut(name.as_bytes()) else {
        return Err(not_found(name));
    };
    let mut labels = b.create_bucket_if_not_exists(LABELS)?;
    if value.is_empty() {
        labels.delete(key.as_bytes())?;
    } else {
        labels.put(key.as_bytes(), value.as_bytes())?;
    }
    Ok(())
}

/// What still lives in a namespace and keeps it from being deleted, in containerd's words.
fn contents<'tx, B: BucketApi<'tx>>(b: &B) -> Vec<&'static str> {
    let non_empty = |bucket: Option<bbolt_rs::BucketImpl<'tx, '_>>| {
        bucket
            .is_some_and(|x| x.iter_entries().next().is_some() || x.iter_buckets().next().is_some())
    };
    let mut out = Vec::new();
    if non_empty(b.bucket(IMAGES)) {
        out.push("images");
    }
    if non_empty(b.bucket(CONTENT).as_ref().and_then(|c| c.bucket(BLOB))) {
        out.push("blobs");
    }
    if non_empty(b.bucket(CONTAINERS)) {
        out.push("containers");
    }
    let snapshots = b.bucket(SNAPSHOTS).is_some_and(|s| {
        s.iter_buckets()
            .any(|(_, sn)| sn.iter_buckets().next().is_some())
    });
    if snapshots {
        out.push("snapshots");
    }
    out
}

/// Deletes an empty namespace (containerd's rule: images, blobs, containers and snapshots
/// must be gone; leases, ingests and labels go with it).
pub fn delete(tx: &mut WriteTx<'_, '_>, name: &str) -> MetaResult<()> {
    let held = {
        let v1 = tx.v1().ok_or_else(|| not_found(name))?;
        let b = v1.bucket(name.as_bytes()).ok_or_else(|| not_found(name))?;
        contents(&b)
    };
    if !held.is_empty() {
        return Err(MetaError::FailedPrecondition(format!(
            "namespace {name:?} must be empty, but it still has {}",
            held.join(", ")
        )));
    }
    tx.v1_mut()?.delete_bucket(name.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::store::Store;
    #[allow(unused_imports)]
    use crate::metadata::test_support::store;

    #[test]
    fn create_get_list_label_delete() {
        let (_d, s) = store();
        let ns = Namespace {
            name: "edge".into(),
            labels: [("site".to_string(), "lab".to_string())].into(),
        };
        s.update(|tx| create(tx, &ns)).unwrap();
        let err = s.update(|tx| create(tx, &ns)).unwrap_err();
        assert_eq!(err.to_string(), "namespace \"edge\": already exists");
        assert_eq!(s.view(|tx| get(tx, "edge")).unwrap(), ns);
        s.update(|tx| set_label(tx, "edge", "tier", "1")).unwrap();
        s.update(|tx| set_label(tx, "edge", "site", "")).unwrap();
        let got = s.view(|tx| get(tx, "edge")).unwrap();
        assert_eq!(got.labels, [("tier".to_string(), "1".to_string())].into());
        assert_eq!(s.view(|tx| list(tx)).unwrap().len(), 1);
        s.update(|tx| delete(tx, "edge")).unwrap();
        let err = s.view(|tx| get(tx, "edge")).unwrap_err();
        assert_eq!(err.code(), corral_protocols::rpc::Code::NOT_FOUND);
        assert_eq!(err.to_string(), "namespace \"edge\": not found");
    }

    #[test]
    fn bad_names_and_labels_are_invalid() {
        let (_d, s) = store();
        let bad = Namespace {
            name: "no spaces".into(),
            ..Default::default()
        };
        let err = s.update(|tx| create(tx, &bad)).unwrap_err();
        assert_eq!(err.code(), corral_protocols::rpc::Code::INVALID_ARGUMENT);
        let big = Namespace {
            name: "ok".into(),
            labels: [("k".to_string(), "v".repeat(5000))].into(),
        };
        assert!(s.update(|tx| create(tx, &big)).is_err());
        assert!(s.view(|tx| list(tx)).unwrap().is_empty());
    }

    #[test]
    fn a_namespace_with_objects_is_not_deleted() {
        let (_d, s) = store();
        s.update(|tx| {
            create(
                tx,
                &Namespace {
                    name: "busy".into(),
                    ..Default::default()
                },
            )?;
            let mut v1 = tx.v1_mut()?;
            let mut ns = v1.bucket_mut(b"busy").unwrap();
            let mut c = ns.create_bucket(CONTAINERS)?;
            c.create_bucket(b"web")?;
            Ok(())
        })
        .unwrap();
        let err = s.update(|tx| delete(tx, "busy")).unwrap_err();
        assert_eq!(err.code(), corral_protocols::rpc::Code::FAILED_PRECONDITION);
        assert_eq!(
            err.to_string(),
            "namespace \"busy\" must be empty, but it still has containers: failed precondition"
        );
    }

    #[test]
    fn reads_containerds_namespaces() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/containerd-1.6/meta.db");
        let s = Store::open_read_only(fixture).unwrap();
        let names: Vec<_> = s
            .view(|tx| list(tx))
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, ["default", "edge"]);
        let edge = s.view(|tx| get(tx, "edge")).unwrap();
        assert_eq!(edge.labels.get("site").map(String::as_str), Some("lab"));
    }
}
