//! The namespaced snapshotter: one backend [`Snapshotter`] seen through meta.db, as containerd
//! 1.6's metadata layer (`metadata/snapshot.go`) shows it to its clients.
//!
//! Clients name snapshots by a key of their namespace; meta.db maps that key to a record
//! (`v1/<ns>/snapshots/<snapshotter>/<key>`, see [`crate::metadata::snapshot`]) whose `name`
//! is the key the backend knows (`"<ns>/<seq>/<key>"`). So two namespaces may use the same key,
//! parents are resolved within the namespace, and labels live in meta.db (only the
//! `containerd.io/snapshot/` ones are handed to the backend).
//!
//! - Every change runs in one meta.db write transaction, the backend call included, so a
//!   backend that refuses rolls the record back (containerd does the same for `Commit` and
//!   `Update`; for `Prepare`/`View` it reserves the sequence number in a first transaction).
//! - `Remove` deletes the record only; the backend snapshot goes at the next garbage
//!   collection ([`crate::gc::SnapshotSweeper`]), as containerd's metadata layer leaves it.
//! - A request's lease (`containerd-lease`) holds what it creates: a new snapshot is added
//!   to it as resource `snapshots/<snapshotter>`, a committed or removed key leaves it.
//! - Changes that create or remove backend snapshots hold the snapshot lock shared, so the
//!   collector's backend sweep (which holds it alone) never sees a backend snapshot whose
//!   record is not yet committed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use corral_protocols::rpc::{Code, Status};

use super::error::SnapshotError;
use super::info::{Info, Usage};
use super::mount::Mount;
use super::{filter_inherited_labels, Snapshotter};
use crate::filter::{Filter, FilterError};
use crate::metadata::error::MetaError;
use crate::metadata::lease::{self, Resource};
use crate::metadata::snapshot::{self as records, SnapshotRecord};
use crate::metadata::store::{Store, WriteTx};

/// A namespaced snapshot operation that did not happen; meta.db was left as it was.
#[derive(Debug, thiserror::Error)]
pub enum NamespacedError {
    /// What meta.db refused (missing or duplicate keys, bad labels, a missing lease...).
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// What the backend snapshotter refused.
    #[error(transparent)]
    Backend(#[from] SnapshotError),
    /// A `List` filter that does not parse.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// An `Update` that names no snapshot (containerd answers a bare `invalid argument`).
    #[error("invalid argument")]
    NameRequired,
    /// The backend says a snapshot under a brand-new backend name already exists: an
    /// inconsistency, answered as `Unknown` so a client does not take it for its own
    /// duplicate (containerd's `unexpected error from snapshotter`).
    #[error("unexpected error from snapshotter: {0}: unknown")]
    Unexpected(SnapshotError),
}

impl NamespacedError {
    /// The gRPC code containerd answers with for this error.
    pub fn code(&self) -> Code {
        match self {
            NamespacedError::Meta(e) => e.code(),
            NamespacedError::Backend(e) => e.code(),
            NamespacedError::Filter(e) => e.code(),
            NamespacedError::NameRequired => Code::INVALID_ARGUMENT,
            NamespacedError::Unexpected(_) => Code::UNKNOWN,
        }
    }
}

impl From<NamespacedError> for Status {
    fn from(e: NamespacedError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Result of a namespaced snapshot operation.
pub type NamespacedResult<T> = Result<T, NamespacedError>;

/// What a request names: the namespace it works in and the lease it holds, if any.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The request namespace (already validated).
    pub namespace: &'a str,
    /// The `containerd-lease` the request carries.
    pub lease: Option<&'a str>,
}

impl<'a> Scope<'a> {
    /// A scope without a lease.
    pub fn new(namespace: &'a str) -> Self {
        Scope {
            namespace,
            lease: None,
        }
    }

    /// The same scope under `lease` (none when `None` or empty).
    pub fn with_lease(mut self, lease: Option<&'a str>) -> Self {
        self.lease = lease.filter(|l| !l.is_empty());
        self
    }
}

/// One backend snapshotter behind meta.db (containerd's metadata `snapshotter`).
#[derive(Clone)]
pub struct NamespacedSnapshotter {
    store: Store,
    backend: Arc<dyn Snapshotter>,
    lock: Arc<RwLock<()>>,
}

/// The info a client sees: the backend's kind and labels, with meta.db's key, parent key,
/// labels (which win over the backend's) and times (containerd's `overlayInfo`).
fn client_info(backend: Info, rec: &SnapshotRecord) -> Info {
    let mut labels = backend.labels;
    labels.extend(rec.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    Info {
        kind: backend.kind,
        name: rec.key.clone(),
        parent: rec.parent.clone(),
        labels,
        created: rec.created_at,
        updated: rec.updated_at,
    }
}

/// containerd's message for a missing snapshot, from the record lookup.
fn does_not_exist(key: &str) -> MetaError {
    MetaError::NotFound(format!("snapshot {key} does not exist"))
}

/// The resource type a lease holds a snapshot of `snapshotter` under.
fn lease_resource(snapshotter: &str, key: &str) -> Resource {
    Resource::new(format!("snapshots/{snapshotter}"), key)
}

/// Adds `key` to the scope's lease (containerd's `addSnapshotLease`): a lease that does not
/// exist is `NotFound`.
fn add_to_lease(
    tx: &mut WriteTx<'_, '_>,
    scope: Scope<'_>,
    snapshotter: &str,
    key: &str,
) -> Result<(), MetaError> {
    let Some(id) = scope.lease else {
        return Ok(());
    };
    match lease::get(&*tx, scope.namespace, id) {
        Ok(_) => {}
        Err(e) if e.code() == Code::NOT_FOUND => {
            return Err(MetaError::NotFound("lease does not exist".into()))
        }
        Err(e) => return Err(e),
    }
    lease::add_resource(tx, scope.namespace, id, &lease_resource(snapshotter, key))
}

/// Takes `key` out of the scope's lease (containerd's `removeSnapshotLease`); a lease that
/// does not exist holds nothing, which is fine.
fn remove_from_lease(
    tx: &mut WriteTx<'_, '_>,
    scope: Scope<'_>,
    snapshotter: &str,
    key: &str,
) -> Result<(), MetaError> {
    let Some(id) = scope.lease else {
        return Ok(());
    };
    match lease::get(&*tx, scope.namespace, id) {
        Ok(_) => lease::delete_resource(tx, scope.namespace, id, &lease_resource(snapshotter, key)),
        Err(e) if e.code() == Code::NOT_FOUND => Ok(()),
        Err(e) => Err(e),
    }
}

impl NamespacedSnapshotter {
    /// `backend` behind the records of `store`; `lock` is the lock the collector's sweep of
    /// this backend holds alone.
    pub fn new(store: Store, backend: Arc<dyn Snapshotter>, lock: Arc<RwLock<()>>) -> Self {
        NamespacedSnapshotter {
            store,
            backend,
            lock,
        }
    }

    /// The snapshotter's name (`overlayfs`, `native`): the bucket its records live in.
    pub fn name(&self) -> &'static str {
        self.backend.name()
    }

    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read().unwrap_or_else(|p| p.into_inner())
    }

    fn alone(&self) -> RwLockWriteGuard<'_, ()> {
        self.lock.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one meta.db write transaction: committed when it returns `Ok`, rolled back
    /// with its error otherwise (a backend error included).
    fn transact<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_, '_>) -> NamespacedResult<T>,
    ) -> NamespacedResult<T> {
        let mut other: Option<NamespacedError> = None;
        let result = self.store.update(|tx| {
            f(tx).map_err(|e| match e {
                NamespacedError::Meta(m) => m,
                e => {
                    other = Some(e);
                    MetaError::Storage("rolled back after a snapshotter error".into())
                }
            })
        });
        match (result, other) {
            (Err(_), Some(e)) => Err(e),
            (result, _) => result.map_err(NamespacedError::from),
        }
    }

    /// The record of `key` in `ns`.
    fn record(&self, ns: &str, key: &str) -> NamespacedResult<SnapshotRecord> {
        let rec = self
            .store
            .view(|tx| records::get(tx, ns, self.name(), key))?;
        if rec.backend_name.is_empty() {
            return Err(does_not_exist(key).into());
        }
        Ok(rec)
    }

    /// Creates the active snapshot `key` on committed snapshot `parent` (none: an empty
    /// one) and returns its mounts. `labels` are stored in meta.db; the backend gets the
    /// `containerd.io/snapshot/` ones.
    pub fn prepare(
        &self,
        scope: Scope<'_>,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> NamespacedResult<Vec<Mount>> {
        self.create(scope, key, parent, labels, false)
    }

    /// Creates the read-only snapshot `key` of committed snapshot `parent` and returns its
    /// mounts.
    pub fn view(
        &self,
        scope: Scope<'_>,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> NamespacedResult<Vec<Mount>> {
        self.create(scope, key, parent, labels, true)
    }

    /// containerd's `createSnapshot`: the record (checked: labels, target, key and parent),
    /// the lease, then the backend's `Prepare`/`View` under the new backend name.
    fn create(
        &self,
        scope: Scope<'_>,
        key: &str,
        parent: Option<&str>,
        labels: &BTreeMap<String, String>,
        read_only: bool,
    ) -> NamespacedResult<Vec<Mount>> {
        let _shared = self.shared();
        let ns = scope.namespace;
        let name = self.name();
        let parent = parent.filter(|p| !p.is_empty());
        let inherited = filter_inherited_labels(labels);
        let mut created: Option<String> = None;
        let result = self.transact(|tx| {
            let rec = records::create(tx, ns, name, key, parent, labels)?;
            let backend_parent = match parent {
                Some(p) => Some(records::get(&*tx, ns, name, p)?.backend_name),
                None => None,
            };
            add_to_lease(tx, scope, name, key)?;
            let made = if read_only {
                self.backend
                    .view(&rec.backend_name, backend_parent.as_deref(), &inherited)
            } else {
                self.backend
                    .prepare(&rec.backend_name, backend_parent.as_deref(), &inherited)
            };
            match made {
                Ok(mounts) => {
                    created = Some(rec.backend_name);
                    Ok(mounts)
                }
                // The name is new: only an inconsistent backend can already have it. Our
                // backends never see the target label, so this is not containerd's
                // "target snapshot from snapshotter" case either.
                Err(e) if e.code() == Code::ALREADY_EXISTS => Err(NamespacedError::Unexpected(e)),
                Err(e) => Err(e.into()),
            }
        });
        if result.is_err() {
            // The backend made it but the transaction did not commit: nothing refers to it.
            if let Some(made) = created {
                if let Err(e) = self.backend.remove(&made) {
                    log::error!(
                        "snapshotter {name}: failed to clean up unreferenced snapshot {made}: {e}"
                    );
                }
            }
        }
        result
    }

    /// The mounts of active or view snapshot `key`.
    pub fn mounts(&self, ns: &str, key: &str) -> NamespacedResult<Vec<Mount>> {
        let rec = self.record(ns, key)?;
        Ok(self.backend.mounts(&rec.backend_name)?)
    }

    /// Commits active snapshot `key` as `name` with `labels` (containerd's `Commit`): the
    /// record moves to `name` under a new backend name, the lease holds `name` instead of
    /// `key`, and the backend commits to the new name.
    pub fn commit(
        &self,
        scope: Scope<'_>,
        name: &str,
        key: &str,
        labels: &BTreeMap<String, String>,
    ) -> NamespacedResult<()> {
        let _shared = self.shared();
        let ns = scope.namespace;
        let sn = self.name();
        let inherited = filter_inherited_labels(labels);
        let mut committed: Option<String> = None;
        let result = self.transact(|tx| {
            // Read before the record moves; the errors come from `commit`, in its order.
            let old = records::get(&*tx, ns, sn, key).ok();
            let new = records::commit(tx, ns, sn, name, key, labels)?;
            let old = old.ok_or_else(|| does_not_exist(key))?;
            add_to_lease(tx, scope, sn, name)?;
            remove_from_lease(tx, scope, sn, key)?;
            if let Err(e) = self
                .backend
                .commit(&new.backend_name, &old.backend_name, &inherited)
            {
                if e.is_not_found() {
                    log::error!(
                        "snapshotter {sn}: uncommittable snapshot {key:?}: missing in backend, snapshot should be removed: {e}"
                    );
                }
                return Err(e.into());
            }
            committed = Some(new.backend_name);
            Ok(())
        });
        if let (Err(e), Some(bname)) = (&result, &committed) {
            log::error!(
                "snapshotter {sn}: uncommittable snapshot {key:?}: transaction failed after commit to {bname}, snapshot should be removed: {e}"
            );
        }
        result
    }

    /// Removes the record of `key` (containerd's `Remove`): refused while snapshots have it
    /// as parent; the lease lets go of it. The backend snapshot is left to the next garbage
    /// collection.
    pub fn remove(&self, scope: Scope<'_>, key: &str) -> NamespacedResult<()> {
        let _shared = self.shared();
        let sn = self.name();
        self.transact(|tx| {
            records::remove(tx, scope.namespace, sn, key)?;
            remove_from_lease(tx, scope, sn, key)?;
            Ok(())
        })
    }

    /// The info of `key`: kind from the backend, the rest from meta.db.
    pub fn stat(&self, ns: &str, key: &str) -> NamespacedResult<Info> {
        let rec = self
            .store
            .view(|tx| records::get(tx, ns, self.name(), key))?;
        let backend = self.backend.stat(&rec.backend_name)?;
        Ok(client_info(backend, &rec))
    }

    /// Changes the labels of `info.name` as `field_paths` say (none or `labels`: all of them;
    /// `labels.<key>`: one; anything else is `InvalidArgument`), in meta.db and, for the
    /// `containerd.io/snapshot/` ones, in the backend (containerd's `Update`).
    pub fn update(&self, ns: &str, info: &Info, field_paths: &[String]) -> NamespacedResult<Info> {
        if info.name.is_empty() {
            return Err(NamespacedError::NameRequired);
        }
        let _shared = self.shared();
        let sn = self.name();
        let paths: Vec<&str> = field_paths.iter().map(String::as_str).collect();
        let mut backend_updated = false;
        let result = self.transact(|tx| {
            let rec = records::update_labels(tx, ns, sn, &info.name, &info.labels, &paths)?;
            let inner = Info {
                name: rec.backend_name.clone(),
                labels: filter_inherited_labels(&rec.labels),
                ..Info::default()
            };
            let backend = self.backend.update(&inner, field_paths)?;
            backend_updated = true;
            Ok(client_info(backend, &rec))
        });
        if let (Err(e), true) = (&result, backend_updated) {
            log::error!(
                "snapshotter {sn}: transaction failed after updating snapshot {:?} in the backend: {e}",
                info.name
            );
        }
        result
    }

    /// The snapshots of `ns` the filters match (containerd's snapshot filters: `name`,
    /// `parent`, `kind`, `labels.<key>`; any filter may match, none matches all), in key
    /// order. A record whose backend snapshot is gone is left out.
    pub fn walk(&self, ns: &str, filters: &[String]) -> NamespacedResult<Vec<Info>> {
        let filter = Filter::parse_all(filters)?;
        let recs = self.store.view(|tx| records::list(tx, ns, self.name()))?;
        let mut out = Vec::new();
        for rec in &recs {
            let backend = match self.backend.stat(&rec.backend_name) {
                Ok(info) => info,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let info = client_info(backend, rec);
            if filter.matches(&info) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The resources `key` takes, as the backend counts them.
    pub fn usage(&self, ns: &str, key: &str) -> NamespacedResult<Usage> {
        let rec = self.record(ns, key)?;
        Ok(self.backend.usage(&rec.backend_name)?)
    }

    /// The backend's cleanup: directories no backend record refers to go. Holds the snapshot
    /// lock alone, as the collector's sweep does.
    pub fn cleanup(&self) -> NamespacedResult<()> {
        let _alone = self.alone();
        Ok(self.backend.cleanup()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::test_support::labels;
    use crate::snapshot::native::NativeSnapshotter;
    use crate::snapshot::Kind;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        sn: NamespacedSnapshotter,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("meta.db")).unwrap();
        let backend = NativeSnapshotter::new(dir.path().join("native")).unwrap();
        let sn = NamespacedSnapshotter::new(store.clone(), Arc::new(backend), Arc::default());
        Fixture {
            _dir: dir,
            store,
            sn,
        }
    }

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn keys_are_per_namespace_and_backend_names_follow_the_sequence() {
        let f = fixture();
        let a = Scope::new("a");
        let b = Scope::new("b");
        f.sn.prepare(a, "work", None, &none()).unwrap();
        f.sn.prepare(b, "work", None, &none()).unwrap();
        let ra = f
            .store
            .view(|tx| records::get(tx, "a", "native", "work"))
            .unwrap();
        let rb = f
            .store
            .view(|tx| records::get(tx, "b", "native", "work"))
            .unwrap();
        assert_eq!(ra.backend_name, "a/1/work");
        assert_eq!(rb.backend_name, "b/1/work");
        f.sn.commit(a, "base", "work", &none()).unwrap();
        let info = f.sn.stat("a", "base").unwrap();
        assert_eq!(info.kind, Kind::Committed);
        assert_eq!(info.name, "base");
        assert_eq!(f.sn.stat("b", "work").unwrap().kind, Kind::Active);
        let err = f.sn.stat("b", "base").unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(err.to_string(), "snapshot base does not exist: not found");
        // The backend knows both under their namespaced names.
        assert_eq!(f.sn.backend.stat("a/2/base").unwrap().kind, Kind::Committed);
        assert_eq!(f.sn.backend.stat("b/1/work").unwrap().kind, Kind::Active);
    }

    #[test]
    fn a_backend_refusal_rolls_the_record_back() {
        let f = fixture();
        let s = Scope::new("default");
        f.sn.prepare(s, "active", None, &none()).unwrap();
        // The backend refuses an active parent; meta.db keeps no record and no number.
        let err =
            f.sn.prepare(s, "child", Some("active"), &none())
                .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
        assert_eq!(
            err.to_string(),
            "failed to create snapshot: parent \"default/1/active\" is not committed snapshot: invalid argument"
        );
        f.store
            .view(|tx| {
                assert!(!records::exists(tx, "default", "native", "child"));
                assert_eq!(records::sequence(tx, "default", "native"), 1);
                let active = records::get(tx, "default", "native", "active")?;
                assert!(active.children.is_empty());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn leases_hold_what_is_created_and_follow_commits_and_removals() {
        let f = fixture();
        f.store
            .update(|tx| lease::create(tx, "default", "l1", &none()))
            .unwrap();
        let held = |f: &Fixture| -> Vec<String> {
            f.store
                .view(|tx| lease::list_resources(tx, "default", "l1"))
                .unwrap()
                .into_iter()
                .map(|r| format!("{}:{}", r.kind, r.id))
                .collect()
        };
        let s = Scope::new("default").with_lease(Some("l1"));
        f.sn.prepare(s, "work", None, &none()).unwrap();
        assert_eq!(held(&f), ["snapshots/native:work"]);
        f.sn.commit(s, "base", "work", &none()).unwrap();
        assert_eq!(held(&f), ["snapshots/native:base"]);
        f.sn.view(s, "ro", Some("base"), &none()).unwrap();
        f.sn.remove(s, "ro").unwrap();
        assert_eq!(held(&f), ["snapshots/native:base"]);

        // An unknown lease refuses the creation, and nothing is recorded.
        let gone = Scope::new("default").with_lease(Some("nope"));
        let err = f.sn.prepare(gone, "x", None, &none()).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(err.to_string(), "lease does not exist: not found");
        assert_eq!(f.sn.walk("default", &[]).unwrap().len(), 1);
        // Removing under an unknown lease is fine.
        f.sn.prepare(Scope::new("default"), "y", None, &none())
            .unwrap();
        f.sn.remove(gone, "y").unwrap();
    }

    #[test]
    fn info_merges_meta_labels_and_times_over_the_backend() {
        let f = fixture();
        let s = Scope::new("default");
        let l = labels(&[
            ("containerd.io/snapshot/x", "1"),
            ("app", "web"),
            ("containerd.io/gc.root", "now"),
        ]);
        f.sn.prepare(s, "work", None, &l).unwrap();
        let rec = f
            .store
            .view(|tx| records::get(tx, "default", "native", "work"))
            .unwrap();
        // Only the inherited label reaches the backend.
        let inner = f.sn.backend.stat(&rec.backend_name).unwrap();
        assert_eq!(inner.labels, labels(&[("containerd.io/snapshot/x", "1")]));
        let info = f.sn.stat("default", "work").unwrap();
        assert_eq!(info.labels, l);
        assert_eq!(info.created, rec.created_at);
        assert_eq!(info.updated, rec.updated_at);
        assert_eq!(info.parent, None);

        // Update: meta.db labels, the inherited ones in the backend too.
        let up = Info {
            name: "work".into(),
            labels: labels(&[("containerd.io/snapshot/x", "2"), ("app", "db")]),
            ..Info::default()
        };
        let got =
            f.sn.update(
                "default",
                &up,
                &[
                    "labels.containerd.io/snapshot/x".into(),
                    "labels.app".into(),
                ],
            )
            .unwrap();
        assert_eq!(
            got.labels,
            labels(&[
                ("containerd.io/snapshot/x", "2"),
                ("app", "db"),
                ("containerd.io/gc.root", "now"),
            ])
        );
        assert!(got.updated >= info.updated);
        let inner = f.sn.backend.stat(&rec.backend_name).unwrap();
        assert_eq!(inner.labels, labels(&[("containerd.io/snapshot/x", "2")]));
        let err = f.sn.update("default", &up, &["parent".into()]).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        let err = f.sn.update("default", &Info::default(), &[]).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        assert_eq!(err.to_string(), "invalid argument");
    }

    #[test]
    fn walk_filters_on_client_fields_and_skips_missing_backends() {
        let f = fixture();
        let s = Scope::new("default");
        f.sn.prepare(s, "w", None, &none()).unwrap();
        f.sn.commit(s, "base", "w", &labels(&[("tier", "1")]))
            .unwrap();
        f.sn.prepare(s, "work", Some("base"), &none()).unwrap();
        f.sn.view(s, "ro", Some("base"), &none()).unwrap();
        let names = |filters: &[&str]| -> Vec<String> {
            let filters: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
            f.sn.walk("default", &filters)
                .unwrap()
                .into_iter()
                .map(|i| i.name)
                .collect()
        };
        assert_eq!(names(&[]), ["base", "ro", "work"]);
        assert_eq!(names(&["kind==view"]), ["ro"]);
        assert_eq!(names(&["parent==base"]), ["ro", "work"]);
        assert_eq!(names(&["name==work", "labels.tier==1"]), ["base", "work"]);
        assert_eq!(names(&["kind==active,parent==base"]), ["work"]);
        let err = f.sn.walk("default", &["kind=".into()]).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        // A record whose backend snapshot went is not listed.
        let rec = f
            .store
            .view(|tx| records::get(tx, "default", "native", "ro"))
            .unwrap();
        f.sn.backend.remove(&rec.backend_name).unwrap();
        assert_eq!(names(&[]), ["base", "work"]);
    }

    #[test]
    fn remove_keeps_the_backend_and_refuses_parents() {
        let f = fixture();
        let s = Scope::new("default");
        f.sn.prepare(s, "w", None, &none()).unwrap();
        f.sn.commit(s, "base", "w", &none()).unwrap();
        f.sn.prepare(s, "work", Some("base"), &none()).unwrap();
        let err = f.sn.remove(s, "base").unwrap_err();
        assert_eq!(err.code(), Code::FAILED_PRECONDITION);
        assert_eq!(
            err.to_string(),
            "cannot remove snapshot with child: failed precondition"
        );
        f.sn.remove(s, "work").unwrap();
        assert_eq!(
            f.sn.stat("default", "work").unwrap_err().code(),
            Code::NOT_FOUND
        );
        // The backend snapshot stays for the collector.
        assert_eq!(
            f.sn.backend.stat("default/3/work").unwrap().kind,
            Kind::Active
        );
        let err = f.sn.mounts("default", "work").unwrap_err();
        assert_eq!(err.to_string(), "snapshot work does not exist: not found");
        let err = f.sn.usage("default", "work").unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
    }
}
