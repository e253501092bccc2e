//! The integration-test harness: prerequisites, temporary directories, processes, mounts and
//! a private containerd, all cleaned up even when a test panics.
//!
//! One module per job:
//! - [`require`](mod@require): root and tools a test needs; fails on CI (`CI=true`), skips
//!   elsewhere.
//! - [`wait`]: waiting on a condition or a socket with a deadline.
//! - [`temp_root`]: [`TempRoot`], a per-test directory that kills, unmounts and removes.
//! - [`child`]: [`ChildGuard`], a child process stopped and reaped on drop, and
//!   [`run_with_deadline`].
//! - [`procs`]: the process table: [`leaked_processes`], killing safely by pid + start time.
//! - [`mounts`]: the mount table: [`mounts_under`], [`unmount_all_under`].
//! - [`ns`]: mount namespaces: a private `/run`, entering another process's namespace.
//! - [`cgroups`]: removing the cgroups killed containers leave.
//! - [`tree`]: [`TreeSnapshot`], proving a host directory was not touched.
//! - [`containerd`]: [`PrivateContainerd`], a real containerd 1.6 of the test's own;
//!   [`corrald`](mod@corrald): [`Corrald`], a real corrald of the test's own.
//!
//! A typical test:
//!
//! ```no_run
//! use corral_tests::harness::{require_root, require_tool, PrivateContainerd};
//!
//! if !require_root("runs containerd") || require_tool("containerd").is_none() {
//!     return;
//! }
//! let containerd = PrivateContainerd::start().unwrap();
//! let version = containerd.ctr(["version"]).unwrap();
//! assert!(version.contains("1.6"));
//! // Dropping `containerd` stops it and removes everything it left.
//! ```

pub mod cgroups;
pub mod child;
pub mod containerd;
pub mod corrald;
pub mod mounts;
pub mod ns;
pub mod procs;
pub mod registry;
pub mod require;
pub mod temp_root;
pub mod tree;
pub mod wait;

pub use child::{run_with_deadline, ChildGuard};
pub use containerd::{ContainerdOptions, PrivateContainerd};
pub use corrald::Corrald;
pub use mounts::{mounts_under, unmount_all_under};
pub use ns::MountNs;
pub use procs::{leaked_processes, ProcessInfo};
pub use require::{
    find_on_path, is_root, on_ci, require, require_because, require_root, require_tool,
};
pub use temp_root::TempRoot;
pub use tree::TreeSnapshot;
pub use wait::{wait_for, wait_for_socket, wait_for_some};
