//! corralctl: a command line for corrald, shaped like containerd's `ctr`.

pub mod cio;
pub mod cli;
pub mod commands;
pub mod image;
pub mod registry;
pub mod spec;
pub mod version;
