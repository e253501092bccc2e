//! corrald: serves containerd's API over ttrpc on plain threads.
//!
//! This version has no services yet: it answers `--version` and `--help`. The command-line
//! definition lives here so that tests and docs can read it.

pub mod cli;
pub mod metadata;
