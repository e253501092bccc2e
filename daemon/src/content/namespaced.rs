//! The content store as the Content service sees it (containerd's `metadata/content.go`):
//! the backend's bytes seen through each namespace's records in meta.db. A namespace sees a
//! blob only once it has a record; writes are ingests recorded per namespace and reference,
//! with the backend ref `"<ns>/<seq>/<ref>"`; a write under a lease is held by it, one
//! without expires after 24 hours; under the "shared" policy (containerd's default) a write
//! whose expected digest the backend already holds claims that blob without copying it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use corral_protocols::rpc::{Code, Status};

use super::{BlobReader, ContentError, Store as Backend, Writer};
use crate::metadata::content::{self as records, Info};
use crate::metadata::encoding::Timestamp;
use crate::metadata::error::MetaError;
use crate::metadata::lease::{self, Resource};
use crate::metadata::store::Store;

/// How long a write no lease holds is kept (containerd's 24 hours).
pub const INGEST_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// An error of either layer, with the kind each one gives.
#[derive(Debug, thiserror::Error)]
pub enum ContentStoreError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Backend(#[from] ContentError),
}

impl ContentStoreError {
    pub fn code(&self) -> Code {
        match self {
            ContentStoreError::Meta(e) => e.code(),
            ContentStoreError::Backend(e) => e.code(),
        }
    }
}

impl From<ContentStoreError> for Status {
    fn from(e: ContentStoreError) -> Status {
        match e {
            ContentStoreError::Meta(e) => e.into(),
            ContentStoreError::Backend(e) => e.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ContentStoreError>;

/// An active write's state, as the Content service reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStatus {
    /// The client's reference.
    pub reference: String,
    pub offset: u64,
    pub total: u64,
    pub expected: String,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The namespaced content store.
#[derive(Clone)]
pub struct Content {
    meta: Store,
    backend: Backend,
    /// Shared by every change that moves bytes into the backend and records them; the
    /// collector's backend sweep takes it alone.
    lock: Arc<RwLock<()>>,
    /// containerd's `content_sharing_policy = "shared"`.
    shared: bool,
}

impl Content {
    pub fn new(meta: Store, backend: Backend, lock: Arc<RwLock<()>>, shared: bool) -> Self {
        Content {
            meta,
            backend,
            lock,
            shared,
        }
    }

    fn shared_lock(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.lock.read().unwrap_or_else(|p| p.into_inner())
    }

    /// A blob's record in `ns`.
    pub fn info(&self, ns: &str, digest: &str) -> Result<Info> {
        Ok(self.meta.view(|tx| records::info(tx, ns, digest))?)
    }

    /// Changes a blob's labels (containerd's field paths: none, `labels`, `labels.<key>`).
    pub fn update(&self, ns: &str, info: &Info, paths: &[String]) -> Result<Info> {
        let _shared = self.shared_lock();
        Ok(self
            .meta
            .update(|tx| records::update(tx, ns, info, paths))?)
    }

    /// Every blob record of `ns`.
    pub fn list(&self, ns: &str) -> Result<Vec<Info>> {
        Ok(self.meta.view(|tx| records::list(tx, ns))?)
    }

    /// Removes `ns`'s record of a blob (and the lease's hold on it); the bytes go at the
    /// next collection if no namespace records them.
    pub fn delete(&self, ns: &str, lease: Option<&str>, digest: &str) -> Result<()> {
        let _shared = self.shared_lock();
        self.meta.update(|tx| {
            records::delete_blob(tx, ns, digest)?;
            if let Some(l) = lease {
                match lease::delete_resource(tx, ns, l, &Resource::new("content", digest)) {
                    Ok(()) | Err(MetaError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The bytes of a blob `ns` has a record of.
    pub fn reader(&self, ns: &str, digest: &str) -> Result<(Info, BlobReader)> {
        let info = self.info(ns, digest)?;
        let reader = self.backend.reader(digest)?;
        Ok((info, reader))
    }

    /// The state of `ns`'s write `reference`.
    pub fn status(&self, ns: &str, reference: &str) -> Result<WriteStatus> {
        let ingest = self
            .meta
            .view(|tx| records::get_ingest(tx, ns, reference))?;
        let st = self.backend.status(&ingest.backend_ref)?;
        Ok(WriteStatus {
            reference: reference.to_string(),
            offset: st.offset,
            total: st.total.unwrap_or(0),
            expected: st.expected.unwrap_or_default(),
            started_at: st.started_at,
            updated_at: st.updated_at,
        })
    }

    /// The state of every write of `ns` that the backend still has.
    pub fn list_statuses(&self, ns: &str) -> Result<Vec<WriteStatus>> {
        let ingests = self.meta.view(|tx| records::list_ingests(tx, ns))?;
        let mut out = Vec::new();
        for i in ingests.into_iter().filter(|i| !i.backend_ref.is_empty()) {
            match self.backend.status(&i.backend_ref) {
                Ok(st) => out.push(WriteStatus {
                    reference: i.reference,
                    offset: st.offset,
                    total: st.total.unwrap_or(0),
                    expected: st.expected.unwrap_or_default(),
                    started_at: st.started_at,
                    updated_at: st.updated_at,
                }),
                Err(e) if e.code() == Code::NOT_FOUND => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Abandons `ns`'s write `reference`: its record goes, and the backend's ingest unless
    /// it is a shared write that never copied anything.
    pub fn abort(&self, ns: &str, lease: Option<&str>, reference: &str) -> Result<()> {
        let _shared = self.shared_lock();
        let ingest = self.meta.update(|tx| {
            let ingest = records::delete_ingest(tx, ns, reference)?;
            if let Some(l) = lease {
                match lease::delete_resource(tx, ns, l, &Resource::new("ingests", reference)) {
                    Ok(()) | Err(MetaError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(ingest)
        })?;
        if ingest.expected.is_none() {
            match self.backend.abort(&ingest.backend_ref) {
                Ok(()) => {}
                Err(e) if e.code() == Code::NOT_FOUND => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Opens (or resumes) `ns`'s write `reference` of a blob of `total` bytes (0: unknown)
    /// and digest `expected` (empty: unknown). A blob `ns` already records is
    /// `AlreadyExists` (`content <digest>`), after the lease takes hold of it.
    pub fn writer(
        &self,
        ns: &str,
        lease: Option<&str>,
        reference: &str,
        total: i64,
        expected: &str,
    ) -> Result<NamespacedWriter> {
        if reference.is_empty() {
            return Err(MetaError::InvalidArgument(
                "ref must not be empty: invalid argument".into(),
            )
            .into());
        }
        let _shared = self.shared_lock();
        let mut size = total;
        // The shared policy: a blob the backend holds (for another namespace) is claimed.
        let mut shared = false;
        if !expected.is_empty() && self.shared {
            if let Ok(info) = self.backend.info(expected) {
                if size == 0 || size as u64 == info.size {
                    shared = true;
                    size = info.size as i64;
                }
            }
        }
        enum Opened {
            Exists,
            Ingest(String),
        }
        let opened = self.meta.update(|tx| {
            if !expected.is_empty() && records::info(tx, ns, expected).is_ok() {
                if let Some(l) = lease {
                    lease::add_resource(tx, ns, l, &Resource::new("content", expected))?;
                }
                return Ok(Opened::Exists);
            }
            let expires = if lease.is_some() {
                None
            } else {
                Some(Timestamp::from(
                    std::time::SystemTime::now() + INGEST_EXPIRY,
                ))
            };
            let bref =
                records::create_ingest(tx, ns, reference, expires, shared.then_some(expected))?;
            if let Some(l) = lease {
                lease::add_resource(tx, ns, l, &Resource::new("ingests", reference))?;
            }
            Ok(Opened::Ingest(bref))
        })?;
        let bref = match opened {
            Opened::Exists => {
                return Err(MetaError::AlreadyExists(format!("content {expected}")).into())
            }
            Opened::Ingest(bref) => bref,
        };
        let inner = if shared {
            None
        } else {
            let announced = (total > 0).then_some(total as u64);
            Some(self.backend.writer(&bref, announced, None)?)
        };
        Ok(NamespacedWriter {
            content: self.clone(),
            ns: ns.to_string(),
            lease: lease.map(str::to_string),
            reference: reference.to_string(),
            bref,
            inner,
            size,
            expected: expected.to_string(),
            started: Timestamp::now(),
        })
    }
}

/// One namespace's active write.
pub struct NamespacedWriter {
    content: Content,
    ns: String,
    lease: Option<String>,
    reference: String,
    bref: String,
    /// The backend writer; `None` while a shared write has copied nothing.
    inner: Option<Writer>,
    size: i64,
    expected: String,
    started: Timestamp,
}

impl NamespacedWriter {
    /// Where the write stands.
    pub fn status(&self) -> WriteStatus {
        match &self.inner {
            Some(w) => {
                let st = w.status();
                WriteStatus {
                    reference: self.reference.clone(),
                    offset: st.offset,
                    total: st.total.unwrap_or(0),
                    expected: st.expected.unwrap_or_default(),
                    started_at: st.started_at,
                    updated_at: st.updated_at,
                }
            }
            None => WriteStatus {
                reference: self.reference.clone(),
                offset: self.size.max(0) as u64,
                total: self.size.max(0) as u64,
                expected: self.expected.clone(),
                started_at: self.started,
                updated_at: self.started,
            },
        }
    }

    /// The digest of what was written (a shared write's expected digest).
    pub fn digest(&self) -> String {
        match &self.inner {
            Some(w) => w.digest(),
            None => self.expected.clone(),
        }
    }

    /// A shared write that is written to after all: copy the shared blob's first `size`
    /// bytes into a real ingest first (containerd's `createAndCopy`).
    fn materialize(&mut self, size: u64) -> Result<&mut Writer> {
        if self.inner.is_none() {
            let mut w = self.content.backend.writer(&self.bref, None, None)?;
            if size > 0 {
                let r = self.content.backend.reader(&self.expected)?;
                let mut off = 0u64;
                let mut buf = vec![0u8; 1 << 20];
                while off < size {
                    let want = ((size - off) as usize).min(buf.len());
                    let n = r
                        .read_at(&mut buf[..want], off)
                        .map_err(|e| ContentError::io("copying a shared blob", e))?;
                    if n == 0 {
                        break;
                    }
                    w.write(&buf[..n])?;
                    off += n as u64;
                }
            }
            self.inner = Some(w);
        }
        match self.inner.as_mut() {
            Some(w) => Ok(w),
            None => Err(ContentError::Unknown("writer vanished".into()).into()),
        }
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() && self.inner.is_none() {
            return Ok(());
        }
        self.materialize(0)?.write(data)?;
        Ok(())
    }

    pub fn truncate(&mut self, size: u64) -> Result<()> {
        if self.inner.is_none() {
            self.materialize(size)?;
            return Ok(());
        }
        self.materialize(0)?.truncate(size)?;
        Ok(())
    }

    /// Commits the write as a blob of `size` bytes (0: unchecked) and digest `expected`
    /// (empty: unchecked), recorded in the namespace with `labels`; the ingest record goes and
    /// the lease holds the blob instead. A blob the namespace already had is `AlreadyExists`
    /// after all that, as in containerd.
    pub fn commit(
        &mut self,
        size: i64,
        expected: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<String> {
        crate::metadata::validate::validate_labels(labels).map_err(MetaError::from)?;
        let content = self.content.clone();
        let _shared = content.shared_lock();
        let (actual, size) = match self.inner.as_mut() {
            None => {
                if size != 0 && size != self.size {
                    return Err(MetaError::FailedPrecondition(format!(
                        "{:?} failed size validation: {} != {size}",
                        self.reference, self.size
                    ))
                    .into());
                }
                if !expected.is_empty() && expected != self.expected {
                    return Err(MetaError::FailedPrecondition(format!(
                        "{:?} unexpected digest",
                        self.reference
                    ))
                    .into());
                }
                (self.expected.clone(), self.size)
            }
            Some(w) => {
                let offset = w.status().offset as i64;
                if size != 0 && size != offset {
                    return Err(MetaError::FailedPrecondition(format!(
                        "{:?} failed size validation: {offset} != {size}",
                        self.reference
                    ))
                    .into());
                }
                let want = (!expected.is_empty()).then_some(expected);
                match w.commit(Some(offset as u64), want) {
                    Ok(_) => {}
                    Err(e) if e.code() == Code::ALREADY_EXISTS => {}
                    Err(e) => return Err(e.into()),
                }
                (w.digest(), offset)
            }
        };
        let ns = self.ns.clone();
        let lease = self.lease.clone();
        let reference = self.reference.clone();
        let existed = content.meta.update(|tx| {
            let existed = match records::add_blob(tx, &ns, &actual, size, labels) {
                Ok(_) => false,
                Err(MetaError::AlreadyExists(_)) => true,
                Err(e) => return Err(e),
            };
            match records::delete_ingest(tx, &ns, &reference) {
                Ok(_) | Err(MetaError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            if let Some(l) = lease.as_deref() {
                match lease::delete_resource(tx, &ns, l, &Resource::new("ingests", &reference)) {
                    Ok(()) | Err(MetaError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                lease::add_resource(tx, &ns, l, &Resource::new("content", &actual))?;
            }
            Ok(existed)
        })?;
        if existed {
            return Err(MetaError::AlreadyExists(format!("content {actual}")).into());
        }
        Ok(actual)
    }
}
