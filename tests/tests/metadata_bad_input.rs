//! Bad input to the metadata store: invalid namespace ids and labels are refused without a
//! trace in the file; truncated and garbage files give a clear error and stay byte for byte
//! as they were; a file held by another process is refused at once, naming that process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_daemon::metadata::error::MetaError;
use corral_daemon::metadata::namespace::{self, Namespace};
use corral_daemon::metadata::store::Store;
use corral_protocols::rpc::Code;
use corral_tests::bins::corral_binary;

fn new_store() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let store = Store::open(&path).unwrap();
    (dir, path, store)
}

fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn names(store: &Store) -> Vec<String> {
    store
        .view(|tx| namespace::list(tx))
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect()
}

#[test]
fn invalid_namespace_ids_are_refused() {
    let (_dir, _path, store) = new_store();
    let long = "a".repeat(77);
    for bad in [
        "",
        "no spaces",
        "-lead",
        "trail-",
        "a..b",
        "a/b",
        "näh",
        "v1\0",
        long.as_str(),
    ] {
        let err = store
            .update(|tx| namespace::create(tx, &ns(bad, &[])))
            .expect_err(bad);
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{bad:?}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{bad:?}")),
            "{bad:?} not quoted: {msg}"
        );
        assert!(msg.ends_with("invalid argument"), "{msg}");
    }
    // 76 characters is the limit, and is fine.
    let max = "b".repeat(76);
    store
        .update(|tx| namespace::create(tx, &ns(&max, &[])))
        .unwrap();
    assert_eq!(names(&store), [max]);
}

#[test]
fn oversized_and_empty_labels_are_refused() {
    let (_dir, _path, store) = new_store();
    let at_limit = "v".repeat(4096 - 3);
    let over = "v".repeat(4096 - 2);
    store
        .update(|tx| namespace::create(tx, &ns("ok", &[("key", &at_limit)])))
        .unwrap();
    for labels in [
        vec![("key", over.as_str())],
        vec![("fine", "1"), ("key", over.as_str())],
        vec![("", "value")],
    ] {
        let err = store
            .update(|tx| namespace::create(tx, &ns("bad", &labels)))
            .expect_err("bad label");
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
    }
    let err = store
        .update(|tx| namespace::create(tx, &ns("bad", &[("key", &over)])))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("label key and value greater than maximum size (4096 bytes)"),
        "{err}"
    );
    let err = store
        .update(|tx| namespace::set_label(tx, "ok", "key", &over))
        .unwrap_err();
    assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
    // Nothing of the refused writes reached the file.
    assert_eq!(names(&store), ["ok"]);
    let ok = store.view(|tx| namespace::get(tx, "ok")).unwrap();
    assert_eq!(
        ok.labels,
        BTreeMap::from([("key".to_string(), at_limit.clone())])
    );
}

/// Both opens fail with a "not a valid bolt database" error naming the file, which keeps
/// its bytes.
fn assert_refused_untouched(path: &Path, what: &str) {
    let before = std::fs::read(path).unwrap();
    let results = [
        ("open", Store::open(path).err()),
        ("open read-only", Store::open_read_only(path).err()),
    ];
    for (how, err) in results {
        let err = err.unwrap_or_else(|| panic!("{what}: {how} succeeded"));
        assert!(
            matches!(err, MetaError::Bolt(_)),
            "{what}: {how}: not a bolt error: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string())
                && msg.contains("is not a valid bolt database"),
            "{what}: {how}: unclear error: {msg}"
        );
    }
    assert!(
        std::fs::read(path).unwrap() == before,
        "{what}: file changed"
    );
}

#[test]
fn truncated_files_are_refused_untouched() {
    let (dir, path, store) = new_store();
    for i in 0..300 {
        let name = format!("n{i}");
        store
            .update(|tx| namespace::create(tx, &ns(&name, &[("seq", "x")])))
            .unwrap();
    }
    drop(store);
    let full = std::fs::read(&path).unwrap();
    assert!(full.len() > 8 * 4096, "{} bytes", full.len());
    let cut = dir.path().join("cut.db");
    for len in [
        0,
        1,
        100,
        4096,
        4096 + 17,
        2 * 4096,
        3 * 4096,
        full.len() / 2,
    ] {
        std::fs::write(&cut, &full[..len]).unwrap();
        assert_refused_untouched(&cut, &format!("truncated to {len} bytes"));
    }
}

#[test]
fn garbage_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let text = "this is not a bolt database\n".repeat(500).into_bytes();
    let zeros = vec![0u8; 32 * 1024];
    for (what, bytes) in [("noise", noise), ("text", text), ("zeros", zeros)] {
        std::fs::write(&path, &bytes).unwrap();
        assert_refused_untouched(&path, what);
    }
}

/// Kills and reaps the writer, whatever happens to the test.
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_file_held_by_another_process_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    // One commit, then the writer holds the store until its stdin closes.
    let mut child = Command::new(corral_binary("meta-writer").unwrap())
        .arg(&path)
        .arg("0")
        .arg("1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let writer = Writer(child);
    let pid = writer.0.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the writer acknowledges its commit");
    assert_eq!(line.trim(), "0");

    for read_only in [false, true] {
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let started = Instant::now();
        // On a thread, so a hang fails the test instead of blocking it.
        std::thread::spawn(move || {
            let r = if read_only {
                Store::open_read_only(&p).map(drop)
            } else {
                Store::open(&p).map(drop)
            };
            let _ = tx.send(r);
        });
        let result = rx
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_else(|_| panic!("open (read-only: {read_only}) still blocked after 2 s"));
        let err = result.expect_err("a locked file must not open");
        let msg = err.to_string();
        assert!(
            msg.contains("in use by another process") && msg.contains(&format!("pid {pid}")),
            "read-only {read_only}: {msg}"
        );
        assert_eq!(err.code(), Code::UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    drop(writer);
}
