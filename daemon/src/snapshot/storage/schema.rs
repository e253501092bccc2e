//! The snapshotter metastore's schema (containerd 1.6 `snapshots/storage/bolt.go`): every
//! bucket and key name, and the composite keys of the parents index.
//!
//! ```text
//! v1/
//!   snapshots/                      sequence: the last id handed out
//!     <key>/
//!       id         = uvarint          dir name: snapshots/<decimal id>
//!       kind       = 1 byte           1 View, 2 Active, 3 Committed
//!       parent     = <parent key>     omitted without a parent
//!       createdat, updatedat          Go time.MarshalBinary (UTC)
//!       labels/<k> = <v>
//!       inodes, size = varint         committed only
//!   parents/
//!     <uvarint parent id> 0x00 <uvarint child id> = <child key>
//! ```
//!
//! There is no version key.

use crate::metadata::encoding::{decode_uvarint, encode_uvarint};

/// The file inside the snapshotter's root.
pub const FILE_NAME: &str = "metadata.db";

/// The schema bucket at the root.
pub const V1: &[u8] = b"v1";
pub const SNAPSHOTS: &[u8] = b"snapshots";
pub const PARENTS: &[u8] = b"parents";

pub const ID: &[u8] = b"id";
pub const KIND: &[u8] = b"kind";
pub const PARENT: &[u8] = b"parent";
pub const CREATED_AT: &[u8] = b"createdat";
pub const UPDATED_AT: &[u8] = b"updatedat";
pub const LABELS: &[u8] = b"labels";
pub const INODES: &[u8] = b"inodes";
pub const SIZE: &[u8] = b"size";

/// The parents index key of `child` under `parent`: both ids as uvarints, a zero byte between.
pub fn parent_key(parent: u64, child: u64) -> Vec<u8> {
    let mut k = parent_prefix_key(parent);
    k.extend(encode_uvarint(child));
    k
}

/// The part of a parents index key that names the parent, separator included.
pub fn parent_prefix_key(parent: u64) -> Vec<u8> {
    let mut k = encode_uvarint(parent);
    k.push(0);
    k
}

/// The parent id a parents index key starts with; 0 (an id never handed out) for a key that
/// does not start with a uvarint, as containerd's `getParentPrefix` reads it.
pub fn parent_of_key(key: &[u8]) -> u64 {
    decode_uvarint(key).map_or(0, |(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_keys_are_containerds() {
        // From the fixture: 0x01 00 04 = "default/4/web".
        assert_eq!(parent_key(1, 4), [0x01, 0x00, 0x04]);
        assert_eq!(parent_key(300, 1), [0xac, 0x02, 0x00, 0x01]);
        assert_eq!(parent_prefix_key(300), [0xac, 0x02, 0x00]);
        assert_eq!(parent_of_key(&[0xac, 0x02, 0x00, 0x01]), 300);
        assert_eq!(parent_of_key(&[]), 0);
        assert_eq!(parent_of_key(&[0x80]), 0);
    }
}
