//! The file system helpers the snapshotters take from containerd's `continuity/fs`:
//! [`disk_usage`] (`fs.DiskUsage`), [`copy_dir`] (`fs.CopyDir`), [`supports_dtype`]
//! (`fs.SupportsDType`), and the extended attribute calls they need
//! ([`corral_protocols::xattr`], shared with corralctl).

pub mod copy;
pub mod dtype;
pub mod du;

pub use copy::copy_dir;
pub use dtype::supports_dtype;
pub use du::disk_usage;
