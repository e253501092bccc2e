//! Corral's metadata: one bolt file laid out exactly like containerd's
//! `io.containerd.metadata.v1.bolt/meta.db`, so either daemon can open the other's root.
//!
//! - [`schema`]: every bucket and key name; [`encoding`]: containerd's value encodings;
//!   [`validate`]: identifier and label rules; [`record`]: the values all kinds share.
//! - [`bolt`]: opening the file safely (lock probe, damaged-file checks, durable creation);
//!   [`store`]: transactions; [`error`]: errors with containerd's codes.
//! - One module per object kind: [`namespace`], [`container`], [`image`], [`content`],
//!   [`lease`], [`snapshot`].
//! - [`dump`] and [`check`]: `corrald db dump` / `corrald db check`.

pub mod bolt;
pub mod check;
pub mod container;
pub mod content;
pub mod dump;
pub mod encoding;
pub mod error;
pub mod gc;
pub mod image;
pub mod lease;
pub mod namespace;
pub mod record;
pub mod schema;
pub mod snapshot;
pub mod store;
pub mod text_time;
pub mod validate;

/// Helpers the object modules' tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use super::store::Store;

    /// A new store in a temporary directory (kept alive by the returned guard).
    pub fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Store::open(dir.path().join("meta.db")).expect("new store");
        (dir, s)
    }

    /// A label map from pairs.
    pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}
