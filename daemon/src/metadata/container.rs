//! Containers: `v1/<ns>/containers/<id>/`, written exactly as containerd 1.6 does
//! (`metadata/containers.go`): `createdat`, `updatedat`, `spec` (Any), `image`, `snapshotter`,
//! `snapshotKey`, `runtime/{name,options}`, `extensions/<name>` (Any), `labels/`, and
//! `sandboxid` (1.7) when set.
//!
//! Behaviour kept from containerd on purpose:
//! - the `extensions` bucket is only ever added to: extensions missing from a later write stay
//!   stored (containerd's `WriteExtensions` never deletes), and `extensions.<name>` for a name
//!   the request lacks stores an empty Any;
//! - `runtime` and `snapshotter` are not paths of an update mask (they answer "cannot update");
//!   with an empty mask, a different runtime name or snapshotter is refused as immutable and
//!   the runtime options are kept as stored.

use std::collections::BTreeMap;

use bbolt_rs::{BucketApi, BucketRwApi};

use super::encoding::{decode_any, Timestamp};
use super::error::{MetaError, MetaResult};
use super::namespace;
use super::record::{read_any, read_map, read_string, read_time, write_any, write_map, write_time};
use super::schema::{
    CONTAINERS, CREATED_AT, EXTENSIONS, IMAGE, LABELS, NAME, OPTIONS, RUNTIME, SANDBOX_ID,
    SNAPSHOTTER, SNAPSHOT_KEY, SPEC, UPDATED_AT,
};
use super::store::{Reader, WriteTx};
use super::validate::{validate_identifier, validate_labels};

/// A protobuf `google.protobuf.Any`: a type URL and the serialized message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnyValue {
    pub type_url: String,
    pub value: Vec<u8>,
}

impl AnyValue {
    pub fn new(type_url: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        AnyValue {
            type_url: type_url.into(),
            value: value.into(),
        }
    }
}

/// The runtime a container runs with (`io.containerd.runc.v2`) and its options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    pub name: String,
    pub options: Option<AnyValue>,
}

/// A container record (containerd's `containers.Container`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub image: String,
    pub runtime: Runtime,
    /// The OCI spec, as an Any (type URL `types.containerd.io/opencontainers/runtime-spec/1/Spec`,
    /// value the spec's JSON). Required.
    pub spec: Option<AnyValue>,
    pub snapshotter: String,
    pub snapshot_key: String,
    pub extensions: BTreeMap<String, AnyValue>,
    /// containerd 1.7's sandbox; stored only when not empty.
    pub sandbox_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The field paths an empty update mask stands for (containerd's full replace).
const FULL_REPLACE: &[&str] = &["labels", "spec", "extensions", "image", "snapshotkey"];

fn invalid(msg: String) -> MetaError {
    MetaError::InvalidArgument(format!("{msg}: invalid argument"))
}

/// One container.
pub fn get<'tx>(tx: &impl Reader<'tx>, ns: &str, id: &str) -> MetaResult<Container> {
    let not_found = || MetaError::NotFound(format!("container {id:?} in namespace {ns:?}"));
    let v1 = tx.v1().ok_or_else(not_found)?;
    let nsb = v1.bucket(ns.as_bytes()).ok_or_else(not_found)?;
    let cs = nsb.bucket(CONTAINERS).ok_or_else(not_found)?;
    let b = cs.bucket(id.as_bytes()).ok_or_else(not_found)?;
    read_container(&b, ns, id)
}

/// Every container of a namespace, in id order.
pub fn list<'tx>(tx: &impl Reader<'tx>, ns: &str) -> MetaResult<Vec<Container>> {
    let Some(v1) = tx.v1() else {
        return Ok(Vec::new());
    };
    let Some(nsb) = v1.bucket(ns.as_bytes()) else {
        return Ok(Vec::new());
    };
    let Some(cs) = nsb.bucket(CONTAINERS) else {
        return Ok(Vec::new());
    };
    cs.iter_buckets()
        .map(|(id, b)| read_container(&b, ns, &String::from_utf8_lossy(id)))
        .collect()
}

fn exists<'tx>(tx: &impl Reader<'tx>, ns: &str, id: &str) -> bool {
    tx.v1()
        .as_ref()
        .and_then(|v1| v1.bucket(ns.as_bytes()))
        .as_ref()
        .and_then(|b| b.bucket(CONTAINERS))
        .is_some_and(|cs| cs.bucket(id.as_bytes()).is_some())
}

/// Creates a container (containerd's `Containers.Create`): validated, stamped with
/// `created_at = updated_at = now`; the namespace is created when missing.
pub fn create(tx: &mut WriteTx<'_, '_>, ns: &str, c: &Container) -> MetaResult<Container> {
    validate(c, "create container failed validation")?;
    namespace::ensure(tx, ns)?;
    if exists(tx, ns, &c.id) {
        return Err(MetaError::AlreadyExists(format!("container {:?}", c.id)));
    }
    let mut out = c.clone();
    out.created_at = Timestamp::now();
    out.updated_at = out.created_at;
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1
        .bucket_mut(ns.as_bytes())
        .ok_or_else(|| MetaError::Storage(format!("namespace {ns:?} vanished")))?;
    let mut cs = nsb.create_bucket_if_not_exists(CONTAINERS)?;
    let mut b = cs.create_bucket(out.id.as_bytes())?;
    write_container(&mut b, &out)?;
    Ok(out)
}

/// Updates the fields of `c` named by `field_paths` (containerd's field mask; empty = every
/// mutable field) and returns the container as written.
pub fn update(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    c: &Container,
    field_paths: &[String],
) -> MetaResult<Container> {
    if c.id.is_empty() {
        return Err(invalid("must specify a container id".into()));
    }
    let has_bucket = tx
        .v1()
        .as_ref()
        .and_then(|v1| v1.bucket(ns.as_bytes()))
        .is_some_and(|b| b.bucket(CONTAINERS).is_some());
    if !has_bucket {
        return Err(MetaError::NotFound(format!(
            "cannot update container {:?} in namespace {ns:?}",
            c.id
        )));
    }
    if !exists(tx, ns, &c.id) {
        return Err(MetaError::NotFound(format!("container {:?}", c.id)));
    }
    let mut updated = get(tx, ns, &c.id)?;
    let created_at = updated.created_at;

    let full: Vec<String>;
    let paths = if field_paths.is_empty() {
        if updated.snapshotter != c.snapshotter {
            return Err(invalid("container.Snapshotter field is immutable".into()));
        }
        if updated.runtime.name != c.runtime.name {
            return Err(invalid("container.Runtime.Name field is immutable".into()));
        }
        full = FULL_REPLACE.iter().map(|p| p.to_string()).collect();
        &full[..]
    } else {
        field_paths
    };

    for path in paths {
        if let Some(key) = path.strip_prefix("labels.") {
            let v = c.labels.get(key).cloned().unwrap_or_default();
            updated.labels.insert(key.to_string(), v);
            continue;
        }
        if let Some(key) = path.strip_prefix("extensions.") {
            let v = c.extensions.get(key).cloned().unwrap_or_default();
            updated.extensions.insert(key.to_string(), v);
            continue;
        }
        match path.as_str() {
            "labels" => updated.labels = c.labels.clone(),
            "spec" => updated.spec = c.spec.clone(),
            "extensions" => updated.extensions = c.extensions.clone(),
            "image" => updated.image = c.image.clone(),
            "snapshotkey" => updated.snapshot_key = c.snapshot_key.clone(),
            _ => {
                return Err(invalid(format!(
                    "cannot update {path:?} field on {:?}",
                    c.id
                )))
            }
        }
    }
    // An empty label value deletes the label (it is not stored).
    updated.labels.retain(|_, v| !v.is_empty());

    validate(&updated, "update failed validation")?;
    updated.created_at = created_at;
    updated.updated_at = Timestamp::now();

    let gone = || MetaError::NotFound(format!("container {:?}", c.id));
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1.bucket_mut(ns.as_bytes()).ok_or_else(gone)?;
    let mut cs = nsb.bucket_mut(CONTAINERS).ok_or_else(gone)?;
    let mut b = cs.bucket_mut(c.id.as_bytes()).ok_or_else(gone)?;
    write_container(&mut b, &updated)?;
    Ok(updated)
}

/// Deletes a container (its snapshot and content are the garbage collector's).
pub fn delete(tx: &mut WriteTx<'_, '_>, ns: &str, id: &str) -> MetaResult<()> {
    let has_bucket = tx
        .v1()
        .as_ref()
        .and_then(|v1| v1.bucket(ns.as_bytes()))
        .is_some_and(|b| b.bucket(CONTAINERS).is_some());
    if !has_bucket {
        return Err(MetaError::NotFound(format!(
            "cannot delete container {id:?} in namespace {ns:?}"
        )));
    }
    if !exists(tx, ns, id) {
        // containerd formats this one with %v: no quotes.
        return Err(MetaError::NotFound(format!("container {id}")));
    }
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1
        .bucket_mut(ns.as_bytes())
        .ok_or_else(|| MetaError::NotFound(format!("container {id}")))?;
    let mut cs = nsb
        .bucket_mut(CONTAINERS)
        .ok_or_else(|| MetaError::NotFound(format!("container {id}")))?;
    cs.delete_bucket(id.as_bytes())?;
    Ok(())
}

/// containerd's `validateContainer`; `context` prefixes the container-specific messages.
fn validate(c: &Container, context: &str) -> MetaResult<()> {
    validate_identifier("container", &c.id)?;
    if c.extensions.keys().any(String::is_empty) {
        return Err(invalid(format!(
            "{context}: container.Extension keys must not be zero-length"
        )));
    }
    validate_labels(&c.labels)?;
    if c.runtime.name.is_empty() {
        return Err(invalid(format!(
            "{context}: container.Runtime.Name must be set"
        )));
    }
    if c.spec.is_none() {
        return Err(invalid(format!("{context}: container.Spec must be set")));
    }
    if !c.snapshot_key.is_empty() && c.snapshotter.is_empty() {
        return Err(invalid(format!(
            "{context}: container.Snapshotter must be set if container.SnapshotKey is set"
        )));
    }
    Ok(())
}

fn any_of(v: Option<(String, Vec<u8>)>) -> Option<AnyValue> {
    v.map(|(type_url, value)| AnyValue { type_url, value })
}

fn read_container<'tx, B: BucketApi<'tx>>(b: &B, ns: &str, id: &str) -> MetaResult<Container> {
    let path = format!("v1/{ns}/containers/{id}");
    let (runtime_name, runtime_options) = match b.bucket(RUNTIME) {
        Some(r) => (
            read_string(&r, NAME),
            any_of(read_any(&r, OPTIONS, &format!("{path}/runtime"))?),
        ),
        None => (String::new(), None),
    };
    let mut extensions = BTreeMap::new();
    if let Some(e) = b.bucket(EXTENSIONS) {
        for (k, raw) in e.iter_entries() {
            let name = String::from_utf8_lossy(k).into_owned();
            let (type_url, value) = decode_any(raw)
                .map_err(|err| MetaError::encoding(format!("{path}/extensions/{name}"), err))?;
            extensions.insert(name, AnyValue { type_url, value });
        }
    }
    Ok(Container {
        id: id.to_string(),
        labels: read_map(b, LABELS),
        image: read_string(b, IMAGE),
        runtime: Runtime {
            name: runtime_name,
            options: runtime_options,
        },
        spec: any_of(read_any(b, SPEC, &path)?),
        snapshotter: read_string(b, SNAPSHOTTER),
        snapshot_key: read_string(b, SNAPSHOT_KEY),
        extensions,
        sandbox_id: read_string(b, SANDBOX_ID),
        created_at: read_time(b, CREATED_AT, &path)?.unwrap_or_default(),
        updated_at: read_time(b, UPDATED_AT, &path)?.unwrap_or_default(),
    })
}

/// containerd's `writeContainer`, key for key.
fn write_container<'tx, B: BucketRwApi<'tx>>(b: &mut B, c: &Container) -> MetaResult<()> {
    write_time(b, CREATED_AT, c.created_at)?;
    write_time(b, UPDATED_AT, c.updated_at)?;
    if let Some(spec) = &c.spec {
        write_any(b, SPEC, &spec.type_url, &spec.value)?;
    }
    b.put(IMAGE, c.image.as_bytes())?;
    b.put(SNAPSHOTTER, c.snapshotter.as_bytes())?;
    b.put(SNAPSHOT_KEY, c.snapshot_key.as_bytes())?;
    if b.bucket(RUNTIME).is_some() {
        b.delete_bucket(RUNTIME)?;
    }
    {
        let mut r = b.create_bucket(RUNTIME)?;
        r.put(NAME, c.runtime.name.as_bytes())?;
        if let Some(o) = &c.runtime.options {
            write_any(&mut r, OPTIONS, &o.type_url, &o.value)?;
        }
    }
    if !c.extensions.is_empty() {
        let mut e = b.create_bucket_if_not_exists(EXTENSIONS)?;
        for (name, ext) in &c.extensions {
            write_any(&mut e, name.as_bytes(), &ext.type_url, &ext.value)?;
        }
    }
    write_map(b, LABELS, &c.labels)?;
    if !c.sandbox_id.is_empty() {
        b.put(SANDBOX_ID, c.sandbox_id.as_bytes())?;
    }
    Ok(())
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

    const SPEC_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

    fn full(id: &str) -> Container {
        Container {
            id: id.into(),
            labels: labels(&[("app", "web"), ("tier", "edge")]),
            image: "docker.io/library/busybox:latest".into(),
            runtime: Runtime {
                name: "io.containerd.runc.v2".into(),
                options: Some(AnyValue::new(
                    "containerd.runc.v1.Options",
                    b"\x10\x01".to_vec(),
                )),
            },
            spec: Some(AnyValue::new(
                SPEC_URL,
                br#"{"ociVersion":"1.0.2"}"#.to_vec(),
            )),
            snapshotter: "overlayfs".into(),
            snapshot_key: id.into(),
            extensions: [("ext".to_string(), AnyValue::new("t/x", b"abc".to_vec()))].into(),
            sandbox_id: "sb".into(),
            ..Default::default()
        }
    }

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trips_every_field() {
        let (_d, s) = store();
        let c = full("web");
        let created = s.update(|tx| create(tx, "edge", &c)).unwrap();
        assert_ne!(created.created_at, Timestamp::default());
        assert_eq!(created.created_at, created.updated_at);
        let got = s.view(|tx| get(tx, "edge", "web")).unwrap();
        assert_eq!(got, created);
        assert_eq!(
            Container {
                created_at: Timestamp::default(),
                updated_at: Timestamp::default(),
                ..got
            },
            c
        );
        // Minimal container: empty image and key still written, no options/sandbox/labels.
        let min = Container {
            id: "min".into(),
            runtime: Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            },
            spec: Some(AnyValue::new(SPEC_URL, b"{}".to_vec())),
            ..Default::default()
        };
        s.update(|tx| create(tx, "edge", &min)).unwrap();
        let raw = s
            .view(|tx| {
                let v1 = tx.v1().unwrap();
                let b = v1.bucket(b"edge").unwrap();
                let cs = b.bucket(CONTAINERS).unwrap();
                let m = cs.bucket(b"min").unwrap();
                let keys: Vec<String> = m
                    .iter_entries()
                    .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                    .collect();
                let buckets = crate::metadata::record::bucket_names(&m);
                let rt: Vec<String> = m
                    .bucket(RUNTIME)
                    .unwrap()
                    .iter_entries()
                    .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                    .collect();
                Ok((keys, buckets, rt))
            })
            .unwrap();
        assert_eq!(
            raw.0,
            [
                "createdat",
                "image",
                "snapshotKey",
                "snapshotter",
                "spec",
                "updatedat"
            ]
        );
        assert_eq!(raw.1, ["runtime"]);
        assert_eq!(raw.2, ["name"]);
        let ids: Vec<_> = s
            .view(|tx| list(tx, "edge"))
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["min", "web"]);
        assert!(s.view(|tx| list(tx, "nowhere")).unwrap().is_empty());
    }

    #[test]
    fn not_found_and_already_exists() {
        let (_d, s) = store();
        let err = s.view(|tx| get(tx, "default", "web")).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(
            err.to_string(),
            "container \"web\" in namespace \"default\": not found"
        );
        let err = s.update(|tx| delete(tx, "default", "web")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot delete container \"web\" in namespace \"default\": not found"
        );
        let err = s
            .update(|tx| update(tx, "default", &full("web"), &[]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot update container \"web\" in namespace \"default\": not found"
        );
        s.update(|tx| create(tx, "default", &full("web"))).unwrap();
        let err = s
            .update(|tx| create(tx, "default", &full("web")))
            .unwrap_err();
        assert_eq!(err.code(), Code::ALREADY_EXISTS);
        assert_eq!(err.to_string(), "container \"web\": already exists");
        let err = s
            .update(|tx| update(tx, "default", &full("db"), &[]))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(err.to_string(), "container \"db\": not found");
        let err = s.update(|tx| delete(tx, "default", "db")).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(err.to_string(), "container db: not found");
        s.update(|tx| delete(tx, "default", "web")).unwrap();
        assert!(s.view(|tx| list(tx, "default")).unwrap().is_empty());
        // The namespace was created by the first create and stays.
        assert!(s.view(|tx| Ok(namespace::exists(tx, "default"))).unwrap());
    }

    #[test]
    fn validation_errors() {
        let (_d, s) = store();
        let cases: Vec<(Container, &str)> = vec![
            (
                Container {
                    runtime: Runtime::default(),
                    ..full("a")
                },
                "create container failed validation: container.Runtime.Name must be set: invalid argument",
            ),
            (
                Container {
                    spec: None,
                    ..full("a")
                },
                "create container failed validation: container.Spec must be set: invalid argument",
            ),
            (
                Container {
                    snapshotter: String::new(),
                    ..full("a")
                },
                "create container failed validation: container.Snapshotter must be set if container.SnapshotKey is set: invalid argument",
            ),
            (
                Container {
                    extensions: [(String::new(), AnyValue::default())].into(),
                    ..full("a")
                },
                "create container failed validation: container.Extension keys must not be zero-length: invalid argument",
            ),
            (
                full("bad id"),
                r#"container "bad id": identifier must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument"#,
            ),
            (
                Container {
                    labels: labels(&[("k", &"v".repeat(5000))]),
                    ..full("a")
                },
                "label key and value greater than maximum size (4096 bytes), key: k: invalid argument",
            ),
        ];
        for (c, msg) in cases {
            let err = s.update(|tx| create(tx, "default", &c)).unwrap_err();
            assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{msg}");
            assert_eq!(err.to_string(), msg);
        }
        // Nothing was written, not even the namespace.
        assert!(!s.view(|tx| Ok(namespace::exists(tx, "default"))).unwrap());
        let err = s.update(|tx| create(tx, "bad ns", &full("a"))).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
    }

    #[test]
    fn mask_updates() {
        let (_d, s) = store();
        let orig = s.update(|tx| create(tx, "default", &full("web"))).unwrap();
        let upd = |c: &Container, p: &[&str]| s.update(|tx| update(tx, "default", c, &paths(p)));

        let mut req = full("web");
        req.labels = labels(&[("app", "api"), ("new", "1")]);
        req.image = "other:1".into();
        req.snapshot_key = "k2".into();
        req.spec = Some(AnyValue::new(SPEC_URL, b"{\"x\":1}".to_vec()));
        req.extensions = [("ext2".to_string(), AnyValue::new("t/y", b"y".to_vec()))].into();
        req.runtime.options = None;

        // labels.<key>: one label set, one removed (absent from the request).
        let got = upd(&req, &["labels.new", "labels.tier"]).unwrap();
        assert_eq!(got.labels, labels(&[("app", "web"), ("new", "1")]));
        assert_eq!(got.image, orig.image);
        assert_eq!(got.created_at, orig.created_at);
        assert!(got.updated_at >= orig.updated_at);
        assert_eq!(s.view(|tx| get(tx, "default", "web")).unwrap(), got);

        let got = upd(&req, &["labels"]).unwrap();
        assert_eq!(got.labels, req.labels);
        let got = upd(&req, &["image"]).unwrap();
        assert_eq!(got.image, "other:1");
        let got = upd(&req, &["spec"]).unwrap();
        assert_eq!(got.spec, req.spec);
        let got = upd(&req, &["snapshotkey"]).unwrap();
        assert_eq!(got.snapshot_key, "k2");
        // Runtime options are not part of any mask: kept.
        assert_eq!(got.runtime, orig.runtime);

        // extensions.<name>: added; the others stay.
        let got = upd(&req, &["extensions.ext2"]).unwrap();
        assert_eq!(got.extensions.len(), 2);
        // "extensions": containerd returns the request's map but never deletes stored ones.
        let got = upd(&req, &["extensions"]).unwrap();
        assert_eq!(got.extensions, req.extensions);
        let stored = s.view(|tx| get(tx, "default", "web")).unwrap();
        assert_eq!(stored.extensions.len(), 2);

        // Unknown and immutable paths.
        for p in ["runtime", "snapshotter", "bogus"] {
            let err = upd(&req, &[p]).unwrap_err();
            assert_eq!(err.code(), Code::INVALID_ARGUMENT);
            assert_eq!(
                err.to_string(),
                format!("cannot update \"{p}\" field on \"web\": invalid argument")
            );
        }
        // Empty mask: full replace of the mutable fields, immutables checked.
        let mut req2 = req.clone();
        req2.runtime.name = "io.containerd.other".into();
        let err = upd(&req2, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container.Runtime.Name field is immutable: invalid argument"
        );
        let mut req3 = req.clone();
        req3.snapshotter = "native".into();
        let err = upd(&req3, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container.Snapshotter field is immutable: invalid argument"
        );
        req.labels = labels(&[("only", "this")]);
        req.image = "third:3".into();
        let got = upd(&req, &[]).unwrap();
        assert_eq!(got.labels, req.labels);
        assert_eq!(got.image, "third:3");
        assert_eq!(got.created_at, orig.created_at);

        // Update validation.
        let mut bad = req.clone();
        bad.spec = None;
        let err = upd(&bad, &["spec"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "update failed validation: container.Spec must be set: invalid argument"
        );
        let err = upd(&Container::default(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "must specify a container id: invalid argument"
        );
    }

    #[test]
    fn reads_containerds_containers() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let s = Store::open_read_only(root.join("containerd-1.6/meta.db")).unwrap();
        let all = s.view(|tx| list(tx, "default")).unwrap();
        let ids: Vec<_> = all.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["job", "web"]);

        let web = s.view(|tx| get(tx, "default", "web")).unwrap();
        assert_eq!(
            web.labels,
            labels(&[
                ("app", "web"),
                ("io.containerd.image.config.stop-signal", "SIGTERM"),
                ("tier", "edge"),
            ])
        );
        assert_eq!(web.image, "docker.io/corral/busybox:latest");
        assert_eq!(
            web.runtime,
            Runtime {
                name: "io.containerd.runc.v2".into(),
                options: Some(AnyValue::new("containerd.runc.v1.Options", Vec::new())),
            }
        );
        assert_eq!(web.snapshotter, "overlayfs");
        assert_eq!(web.snapshot_key, "web");
        assert!(web.extensions.is_empty());
        assert_eq!(web.sandbox_id, "");
        assert_eq!(web.created_at, web.updated_at);
        assert_eq!(web.spec.as_ref().unwrap().type_url, SPEC_URL);

        let job = s.view(|tx| get(tx, "default", "job")).unwrap();
        let spec = job.spec.unwrap();
        assert_eq!(spec.type_url, SPEC_URL);
        assert_eq!(
            spec.value,
            std::fs::read(root.join("job-spec.json")).unwrap()
        );
        let text = String::from_utf8(spec.value).unwrap();
        assert!(text.contains(r#""args":["env"]"#));
        assert!(text.contains(r#""A=1""#));
        // 0x0ee296407d = 63_931_039_869 s since year 1, 0x33222e2f ns.
        assert_eq!(
            job.created_at,
            Timestamp::new(63_931_039_869 - 62_135_596_800, 0x3322_2e2f)
        );
        assert!(s.view(|tx| list(tx, "edge")).unwrap().is_empty());
    }
}
