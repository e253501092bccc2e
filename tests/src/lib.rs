//! Corral's integration-test harness: what every test under `tests/tests/` needs to drive the
//! real binaries, a private containerd and the Go interop programs, and to clean up after them.

pub mod bench;
pub mod bins;
pub mod go;
pub mod harness;
