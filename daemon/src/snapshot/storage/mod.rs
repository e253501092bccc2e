//! The snapshotters' own metadata store (containerd 1.6 `snapshots/storage`): a bolt file
//! `metadata.db` in the snapshotter's root, laid out byte for byte as containerd writes it, so
//! either daemon reads the other's snapshots.
//!
//! - [`schema`]: bucket and key names, parents index keys;
//! - [`metastore`]: opening the file and running transactions;
//! - [`snapshots`]: the records (create, commit, remove, info, update, walk, id map).

pub mod metastore;
pub mod schema;
pub mod snapshots;

pub use metastore::{MetaStore, ReadTx, Reader, WriteTx};
pub use snapshots::{
    commit_active, create_snapshot, get_info, get_snapshot, id_map, remove, update_info, walk_info,
    Snapshot,
};

#[cfg(test)]
mod tests;
