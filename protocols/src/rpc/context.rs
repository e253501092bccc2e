//! Per-call context: request metadata (namespace, lease), deadlines and cancellation.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::status::{RpcResult, Status};

/// Metadata key containerd uses for the namespace on ttrpc.
pub const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";
/// Metadata key containerd uses for the namespace on gRPC (accepted too).
pub const NAMESPACE_GRPC_KEY: &str = "containerd-namespace";
/// Metadata key containerd uses for the lease.
pub const LEASE_KEY: &str = "containerd-lease";

/// Request metadata: a multimap with lower-cased keys, as Go's ttrpc keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, Vec<String>>);

impl Metadata {
    /// Adds a value under `key`.
    pub fn add(&mut self, key: &str, value: impl Into<String>) {
        self.0
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
    }

    /// Replaces every value under `key` with `value`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_ascii_lowercase(), vec![value.into()]);
    }

    /// The first value under `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(&key.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value under `key`.
    pub fn get_all(&self, key: &str) -> &[String] {
        self.0
            .get(&key.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Reads the wire form.
    pub fn from_pairs(pairs: &[ttrpc::proto::KeyValue]) -> Self {
        let mut md = Self::default();
        for kv in pairs {
            md.add(&kv.key, kv.value.clone());
        }
        md
    }

    /// The wire form.
    pub fn to_pairs(&self) -> Vec<ttrpc::proto::KeyValue> {
        let mut out = Vec::new();
        for (key, values) in &self.0 {
            for value in values {
                let mut kv = ttrpc::proto::KeyValue::new();
                kv.key = key.clone();
                kv.value = value.clone();
                out.push(kv);
            }
        }
        out
    }
}

/// A one-way switch that threads can wait on: set when a call's connection goes away.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<(Mutex<bool>, Condvar)>);

impl CancelToken {
    /// Flips the switch and wakes every waiter.
    pub fn cancel(&self) {
        let (lock, cv) = &*self.0;
        if let Ok(mut c) = lock.lock() {
            *c = true;
        }
        cv.notify_all();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0 .0.lock().map(|c| *c).unwrap_or(true)
    }

    /// Waits up to `timeout` for cancellation; true when cancelled.
    pub fn wait(&self, timeout: Duration) -> bool {
        let (lock, cv) = &*self.0;
        let Ok(guard) = lock.lock() else { return true };
        match cv.wait_timeout_while(guard, timeout, |c| !*c) {
            Ok((c, _)) => *c,
            Err(_) => true,
        }
    }
}

/// What a server handler knows about the call it serves.
#[derive(Debug, Clone)]
pub struct RequestContext {
    path: String,
    metadata: Metadata,
    deadline: Option<Instant>,
    cancel: CancelToken,
}

impl RequestContext {
    /// A context for a call to `path` (`/service/method`).
    pub fn new(
        path: String,
        metadata: Metadata,
        timeout: Option<Duration>,
        cancel: CancelToken,
    ) -> Self {
        Self {
            path,
            metadata,
            deadline: timeout.map(|t| Instant::now() + t),
            cancel,
        }
    }

    /// The `/service/method` path of the call.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The namespace the caller sent (gRPC key first, then ttrpc's, as containerd reads them).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata
            .get(NAMESPACE_GRPC_KEY)
            .or_else(|| self.metadata.get(NAMESPACE_KEY))
            .filter(|ns| !ns.is_empty())
    }

    /// The namespace, or `FailedPrecondition` when the caller sent none.
    pub fn require_namespace(&self) -> RpcResult<&str> {
        self.namespace().ok_or_else(|| {
            Status::failed_precondition("namespace is required: failed precondition")
        })
    }

    /// The lease the caller sent, if any.
    pub fn lease(&self) -> Option<&str> {
        self.metadata.get(LEASE_KEY).filter(|l| !l.is_empty())
    }

    /// The caller's deadline, if it set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True once the caller's connection is gone or its deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled() || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The status to give up with once [`is_cancelled`](Self::is_cancelled) says so.
    pub fn cancelled_status(&self) -> Status {
        if self.cancel.is_cancelled() {
            Status::cancelled("the caller went away")
        } else {
            Status::deadline_exceeded("the caller's deadline passed")
        }
    }

    /// Waits up to `timeout` (cut short by the deadline) for cancellation; true when the call
    /// is cancelled. Lets a long-blocking handler notice a caller that went away.
    pub fn wait_cancelled(&self, timeout: Duration) -> bool {
        let timeout = match self.deadline {
            Some(d) => timeout.min(d.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        self.cancel.wait(timeout) || self.is_cancelled()
    }

    /// The connection's cancel token.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }
}

/// What a client sends with a call: metadata and an optional timeout.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    metadata: Metadata,
    timeout: Option<Duration>,
}

impl CallContext {
    /// An empty context: no metadata, no timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `namespace` the way containerd does on ttrpc.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.metadata.set(NAMESPACE_KEY, namespace);
        self
    }

    /// Sends `lease` under containerd's lease key.
    pub fn with_lease(mut self, lease: &str) -> Self {
        self.metadata.set(LEASE_KEY, lease);
        self
    }

    /// Adds one metadata value.
    pub fn with_metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.add(key, value);
        self
    }

    /// Gives up after `timeout` (also sent to the server as the call's deadline).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The metadata to send.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The timeout, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_case_insensitive_and_multi_valued() {
        let mut md = Metadata::default();
        md.add("Containerd-Namespace-TTRPC", "edge");
        md.add("x", "1");
        md.add("X", "2");
        assert_eq!(md.get(NAMESPACE_KEY), Some("edge"));
        assert_eq!(md.get_all("x"), &["1".to_string(), "2".to_string()]);
        assert_eq!(Metadata::from_pairs(&md.to_pairs()), md);
    }

    #[test]
    fn namespace_prefers_the_grpc_key_and_ignores_empty_values() {
        let mut md = Metadata::default();
        md.add(NAMESPACE_KEY, "ttrpc-ns");
        let ctx = RequestContext::new("/a/b".into(), md.clone(), None, CancelToken::default());
        assert_eq!(ctx.namespace(), Some("ttrpc-ns"));
        md.add(NAMESPACE_GRPC_KEY, "grpc-ns");
        let ctx = RequestContext::new("/a/b".into(), md, None, CancelToken::default());
        assert_eq!(ctx.namespace(), Some("grpc-ns"));

        let mut empty = Metadata::default();
        empty.add(NAMESPACE_KEY, "");
        let ctx = RequestContext::new("/a/b".into(), empty, None, CancelToken::default());
        let err = ctx.require_namespace().unwrap_err();
        assert_eq!(err.code(), super::super::Code::FAILED_PRECONDITION);
    }

    #[test]
    fn cancel_wakes_waiters_and_deadlines_cancel() {
        let token = CancelToken::default();
        let t2 = token.clone();
        let h = std::thread::spawn(move || t2.wait(Duration::from_secs(30)));
        token.cancel();
        assert!(h.join().unwrap());
        let ctx = RequestContext::new(
            "/a/b".into(),
            Metadata::default(),
            Some(Duration::from_millis(1)),
            CancelToken::default(),
        );
        assert!(ctx.wait_cancelled(Duration::from_secs(5)));
        assert_eq!(
            ctx.cancelled_status().code(),
            super::super::Code::DEADLINE_EXCEEDED
        );
    }
}
