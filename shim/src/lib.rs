//! containerd-shim-corral-v2: a runc shim for containerd's shim v2 protocol.
//!
//! containerd runs a shim binary with Go-style flags (`-namespace ns -address ... start`), so
//! the shim parses its command line the way Go's `flag` package does rather than with a
//! GNU-style parser.

pub mod flags;
