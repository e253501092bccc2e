//! The generated OCI archives the benchmarks import are ones containerd 1.6 imports, checks
//! and unpacks.

use corral_tests::harness::{require_root, require_tool, PrivateContainerd, TempRoot};
use corral_tests::oci_archive::{generated_layers, write_image};

#[test]
fn containerd_imports_and_unpacks_a_generated_image() {
    if !require_root("runs containerd") || require_tool("containerd").is_none() {
        return;
    }
    let work = TempRoot::new().unwrap();
    let archive = work.join("gen.tar");
    let name = "docker.io/corral/generated:v1";
    let manifest = write_image(&archive, name, &generated_layers(3 << 20, 3, 1)).unwrap();
    let pc = PrivateContainerd::start().unwrap();
    let ns = pc.namespace().to_string();
    pc.ctr(["-n", &ns, "images", "import", archive.to_str().unwrap()])
        .unwrap();
    let ls = pc.ctr(["-n", &ns, "images", "ls"]).unwrap();
    assert!(ls.contains(name) && ls.contains(&manifest), "{ls}");
    let check = pc.ctr(["-n", &ns, "images", "check"]).unwrap();
    // Config and three layers present, unpacked.
    assert!(
        check.contains("complete (4/4)") && check.contains(" true"),
        "{check}"
    );
    // Unpacked: three committed layers in the default snapshotter.
    let snaps = pc.ctr(["-n", &ns, "snapshots", "ls"]).unwrap();
    assert_eq!(
        snaps.lines().filter(|l| l.contains("Committed")).count(),
        3,
        "{snaps}"
    );
}
