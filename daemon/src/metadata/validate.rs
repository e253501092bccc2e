//! containerd's identifier and label rules (shared with the shim, in `corral_protocols`).

pub use corral_protocols::identifiers::*;
