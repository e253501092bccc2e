//! The temporary lease containerd's client holds while it imports or unpacks
//! (`Client.WithLease`): a random id, `containerd.io/gc.expire` 24 hours ahead, deleted when
//! the work is done, so nothing written meanwhile is collected before an image refers to it.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_protocols::rpc::CallContext;
use corral_protocols::services::leases::v1::leases::{CreateRequest, DeleteRequest};
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;

use super::error::{ImageError, Result};

/// The label containerd's collector reads a lease's expiry from.
pub const EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// How long containerd's client leases last.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// A lease this process created, deleted by [`TempLease::release`] or, if that never
/// happens (an error returned early), on drop with a synchronous collection, so what the
/// failed work wrote is gone when the command exits.
pub struct TempLease {
    client: LeasesClient,
    ctx: CallContext,
    id: String,
    released: bool,
}

impl TempLease {
    /// Creates a lease with `id` (a random one when `None`), expiring after `expires`, with
    /// `labels`. `ctx` is the namespace's context, without a lease.
    pub fn create(
        client: LeasesClient,
        ctx: &CallContext,
        id: Option<String>,
        expires: Duration,
        labels: HashMap<String, String>,
    ) -> Result<TempLease> {
        let id = id.unwrap_or_else(random_id);
        let mut req = CreateRequest {
            id: id.clone(),
            labels,
            ..Default::default()
        };
        let at = SystemTime::now() + expires;
        let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        req.labels.insert(
            EXPIRE_LABEL.to_string(),
            crate::commands::format::rfc3339(secs),
        );
        client.create(ctx, &req)?;
        Ok(TempLease {
            client,
            ctx: ctx.clone(),
            id,
            released: false,
        })
    }

    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `ctx` with this lease attached: what is written or prepared with it is held.
    pub fn attach(&self, ctx: &CallContext) -> CallContext {
        ctx.clone().with_lease(&self.id)
    }

    /// Deletes the lease, as containerd's client does when the work is done (`sync`: wait for
    /// a collection that removes whatever nothing else refers to).
    pub fn release(mut self, sync: bool) -> Result<()> {
        self.released = true;
        self.delete(sync)
    }

    /// Leaves the lease in place (it expires on its own), as `ctr images mount` does.
    pub fn keep(mut self) {
        self.released = true;
    }

    fn delete(&self, sync: bool) -> Result<()> {
        let req = DeleteRequest {
            id: self.id.clone(),
            sync,
            ..Default::default()
        };
        match self.client.delete(&self.ctx, &req) {
            Ok(_) => Ok(()),
            Err(s) => {
                let e = ImageError::from(s);
                if e.is_not_found() {
                    Ok(())
                } else {
                    Err(e.context(format_args!("deleting lease {}", self.id)))
                }
            }
        }
    }
}

impl std::fmt::Debug for TempLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempLease")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for TempLease {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.delete(true) {
                log::warn!("{e}");
            }
        }
    }
}

/// A lease id as containerd's `leases.WithRandomID` makes one, `<nanoseconds>-<random>`,
/// with a random part that is always a valid identifier (containerd's base64 may end in `-`
/// or `_`, which corrald's identifier rules refuse).
pub fn random_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.subsec_nanos(), random_alnum(6))
}

/// `n` random characters from `[a-z0-9]`.
pub fn random_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random_bytes(n)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// `n` random bytes from the kernel (the clock, if that fails: uniqueness, not secrecy).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            ^ u128::from(std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_identifiers() {
        let re = |s: &str| {
            s.split(['.', '_', '-'])
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
        };
        for _ in 0..100 {
            let id = random_id();
            assert!(re(&id), "{id}");
        }
        assert_ne!(random_id(), random_id());
        assert_eq!(random_alnum(10).len(), 10);
    }
}
