//! Corral's integration-test harness: what every test under `tests/tests/` needs to drive the
//! real binaries, a private containerd and the Go interop programs, and to clean up after them.

pub mod bench;
pub mod bins;
pub mod ctl;
pub mod go;
pub mod harness;
pub mod oci_archive;
pub mod run_env;

/// A label map from pairs, for tests.
pub fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
