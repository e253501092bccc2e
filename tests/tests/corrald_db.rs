//! `corrald db dump` and `corrald db check` on containerd's own meta.db: the fixture written by
//! containerd 1.6.20, a live private containerd's (held: a clear error at once, not a hang),
//! and the same file after that containerd stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use corral_tests::bins::corral_binary;
use corral_tests::harness::{require_root, require_tool, PrivateContainerd, TempRoot};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/containerd-1.6")
        .join(name)
}

fn corrald(args: &[&str]) -> Output {
    Command::new(corral_binary("corrald").unwrap())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn dump_of_containerds_file_matches_bolts_own_dump() {
    let db = fixture("meta.db");
    let out = corrald(&["db", "dump", "--file", db.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read(fixture("meta.db.txt")).unwrap();
    assert!(out.stdout == expected, "dump differs from meta.db.txt");
    let out = corrald(&["db", "check", "--file", db.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn damaged_files_get_a_clear_error_and_stay_untouched() {
    let temp = TempRoot::new().unwrap();
    let original = std::fs::read(fixture("meta.db")).unwrap();
    for (name, bytes) in [
        ("garbage.db", vec![0x5au8; 16384]),
        ("truncated.db", original[..8192].to_vec()),
    ] {
        let path = temp.join(name);
        std::fs::write(&path, &bytes).unwrap();
        for cmd in ["dump", "check"] {
            let out = corrald(&["db", cmd, "--file", path.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{name} {cmd}: {err}");
            assert!(err.starts_with("corrald: "), "{err}");
            assert!(
                err.contains("is not a valid bolt database"),
                "{name} {cmd}: {err}"
            );
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name} was modified");
    }
}

#[test]
fn a_live_containerds_file_is_refused_at_once_and_read_after_it_stops() {
    if !require_root("runs containerd") || require_tool("containerd").is_none() {
        return;
    }
    let mut c = PrivateContainerd::start().unwrap();
    c.ctr(["namespaces", "create", "dbtest", "site=lab"])
        .unwrap();
    let root = c.root().to_path_buf();
    let started = Instant::now();
    let out = corrald(&["db", "check", "--root", root.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains(&format!("pid {}", c.pid())), "{err}");

    // Stopped, containerd's root is Corral's to read.
    c.stop_daemon().unwrap();
    let out = corrald(&["db", "dump", "--root", root.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("[\"dbtest\"]"), "{text}");
    assert!(text.contains("\"site\" = \"lab\""), "{text}");
    let out = corrald(&["db", "check", "--root", root.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
