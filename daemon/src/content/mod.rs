//! The content store's backend: blob bytes on disk exactly where and how containerd 1.6's
//! `content/local` keeps them, so a containerd root and a corrald root are interchangeable.
//!
//! ```text
//! <root>/io.containerd.content.v1.content/
//!   blobs/sha256/<hex>                 committed blobs, read-only, mtime = commit time
//!   ingest/<hex of sha256(ref)>/       one directory per active write:
//!     ref                              the backend reference ("<ns>/<seq>/<ref>")
//!     data                             the bytes written so far
//!     startedat, updatedat             RFC 3339 text, written via "<file>.tmp" + rename
//!     total                            the announced size, in decimal, when known
//! ```
//!
//! - [`Store`]: blobs ([`Store::info`], [`Store::reader`], [`Store::walk`],
//!   [`Store::delete`]) and ingests ([`Store::writer`], [`Store::status`],
//!   [`Store::list_statuses`], [`Store::abort`]).
//! - [`Writer`]: one active write (write, truncate, status, digest, commit, close).
//! - [`BlobReader`]: positioned reads of a blob.
//! - [`ContentError`]: errors with containerd's kinds and messages.
//! - [`digest`]: digest syntax and the running sha256; [`layout`]: the paths. Times in
//!   ingest files use [`crate::metadata::text_time`].
//!
//! Namespaces, labels and the ingest records live in the metadata store
//! ([`crate::metadata::content`]); this module holds only the bytes.

pub mod digest;
pub mod error;
mod ingest;
pub mod layout;
mod locks;
pub mod namespaced;
mod reader;
mod store;
mod writer;

pub use error::{ContentError, ContentResult};
pub use ingest::Status;
pub use layout::{store_path, PLUGIN_DIR};
pub use reader::BlobReader;
pub use store::{Info, Store, DEFAULT_LOCK_WAIT};
pub use writer::Writer;

#[cfg(test)]
mod tests;
