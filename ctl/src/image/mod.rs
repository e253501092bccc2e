//! Images on the client side, as containerd 1.6's Go client handles them for `ctr images`:
//! archives read into the content store and written back out, image records, platform
//! matching, and unpacking into snapshots, all over corrald's services (`Content`,
//! `Images`, `Leases`, `Snapshots`, `Diff`).
//!
//! One module per job, named in containerd's vocabulary:
//! - [`content`]: the content store ([`ContentStore`](content::ContentStore)) and its remote
//!   implementation over the `Content` service (streaming reads and writes).
//! - [`image_store`]: image records over the `Images` service.
//! - [`importer`]: an archive (OCI layout or `docker save`) into the content store.
//! - [`import`]: `Client.Import`: the archive's images named, labelled and recorded.
//! - [`unpack`]: layers applied into snapshots named by chain ID.
//! - [`exporter`]: images out as an OCI layout tar with `manifest.json`.
//! - [`handlers`]: walking an image: children, manifests by platform, config, check, size.
//! - [`platforms`], [`reference`](mod@reference), [`media_types`], [`digest`], [`ocispec`]: the
//!   vocabulary; [`gojson`] and [`gopath`] write JSON and resolve names exactly as Go does.
//! - [`lease`]: the temporary lease imports and unpacks hold.
//! - [`mount`]: mounting a snapshot's mounts (`images mount`), also on a temporary
//!   directory for a moment ([`TempMount`](mount::TempMount), `mount.WithTempMount`).
//! - [`progress`]: ctr's progress table on a terminal.

pub mod content;
pub mod digest;
pub mod error;
pub mod exporter;
pub mod gojson;
pub mod gopath;
pub mod handlers;
pub mod image_store;
pub mod import;
pub mod importer;
pub mod layers;
pub mod lease;
pub mod media_types;
pub mod mount;
pub mod ocispec;
pub mod platforms;
pub mod progress;
pub mod reference;
pub mod unpack;

pub use error::{ImageError, Result};
