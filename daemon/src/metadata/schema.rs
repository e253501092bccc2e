//! containerd's meta.db schema (containerd 1.6/1.7 `metadata/buckets.go`): every bucket and
//! key name in one place. Trust these constants over containerd's comment, which says
//! `image` where the bucket is `images`.
//!
//! ```text
//! v1/                                     schema bucket
//!   version = varint(3)
//!   <namespace>/
//!     labels/<key> = <value>
//!     images/<name>/
//!       createdat, updatedat              Go time.MarshalBinary
//!       labels/, annotations/             (annotations: the target descriptor's)
//!       target/digest, mediatype, size    size: varint
//!     containers/<id>/
//!       createdat, updatedat, image, snapshotter, snapshotKey, spec (Any), sandboxid (1.7)
//!       runtime/name, runtime/options (Any)
//!       labels/, extensions/<name> (Any)
//!     snapshots/<snapshotter>/<key>/      bucket sequence numbers the backend names
//!       name = "<ns>/<seq>/<key>", parent, children/<key>, createdat, updatedat, labels/
//!     content/
//!       blob/<digest>/createdat, updatedat, size, labels/
//!       ingests/<ref>/ref, expireat, expected
//!     leases/<id>/
//!       createdat, labels/, content/<digest>, snapshots/<snapshotter>/<key>, ingests/<ref>
//! ```

/// The schema bucket at the root.
pub const SCHEMA_V1: &[u8] = b"v1";
/// The key of the database version inside the schema bucket.
pub const VERSION: &[u8] = b"version";
/// The version containerd 1.6 and 1.7 write.
pub const DB_VERSION: i64 = 3;

pub const LABELS: &[u8] = b"labels";
pub const ANNOTATIONS: &[u8] = b"annotations";
pub const IMAGES: &[u8] = b"images";
pub const CONTAINERS: &[u8] = b"containers";
pub const SNAPSHOTS: &[u8] = b"snapshots";
pub const CONTENT: &[u8] = b"content";
pub const BLOB: &[u8] = b"blob";
pub const INGESTS: &[u8] = b"ingests";
pub const LEASES: &[u8] = b"leases";
pub const SANDBOXES: &[u8] = b"sandboxes";

pub const CREATED_AT: &[u8] = b"createdat";
pub const UPDATED_AT: &[u8] = b"updatedat";
pub const EXPIRE_AT: &[u8] = b"expireat";
pub const IMAGE: &[u8] = b"image";
pub const RUNTIME: &[u8] = b"runtime";
pub const NAME: &[u8] = b"name";
pub const OPTIONS: &[u8] = b"options";
pub const SPEC: &[u8] = b"spec";
pub const SNAPSHOTTER: &[u8] = b"snapshotter";
/// camelCase, as containerd writes it.
pub const SNAPSHOT_KEY: &[u8] = b"snapshotKey";
pub const SANDBOX_ID: &[u8] = b"sandboxid";
pub const EXTENSIONS: &[u8] = b"extensions";
pub const TARGET: &[u8] = b"target";
pub const DIGEST: &[u8] = b"digest";
pub const MEDIA_TYPE: &[u8] = b"mediatype";
pub const SIZE: &[u8] = b"size";
pub const PARENT: &[u8] = b"parent";
pub const CHILDREN: &[u8] = b"children";
pub const REF: &[u8] = b"ref";
pub const EXPECTED: &[u8] = b"expected";

/// The plugin directory (under the root) and file name of the database.
pub const PLUGIN_DIR: &str = "io.containerd.metadata.v1.bolt";
pub const FILE_NAME: &str = "meta.db";

/// Where the database of a daemon root lives.
pub fn db_path(root: &std::path::Path) -> std::path::PathBuf {
    root.join(PLUGIN_DIR).join(FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_containerds() {
        assert_eq!(IMAGES, b"images");
        assert_eq!(SNAPSHOT_KEY, b"snapshotKey");
        assert_eq!(
            db_path(std::path::Path::new("/var/lib/containerd")),
            std::path::PathBuf::from("/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db")
        );
    }
}
