//! The store as a whole: writes, commits, resumes, locks, listings and damaged input.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use corral_protocols::rpc::Code;

use super::digest::from_bytes;
use super::*;
use crate::metadata::encoding::Timestamp;
use crate::metadata::text_time;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join(PLUGIN_DIR))
        .unwrap()
        .with_lock_wait(Duration::ZERO);
    (dir, s)
}

/// Writes `data` under `reference` and commits it.
fn put(s: &Store, reference: &str, data: &[u8]) -> String {
    let mut w = s.writer(reference, Some(data.len() as u64), None).unwrap();
    w.write(data).unwrap();
    w.commit(Some(data.len() as u64), Some(&from_bytes(data)))
        .unwrap()
}

fn read_all(s: &Store, digest: &str) -> Vec<u8> {
    let mut out = Vec::new();
    s.reader(digest).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn open_creates_the_ingest_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = store_path(dir.path());
    let s = Store::open(&root).unwrap();
    assert!(root.join("ingest").is_dir());
    assert!(
        !root.join("blobs").exists(),
        "blobs/ comes with the first commit"
    );
    assert!(s.walk().unwrap().is_empty());
    assert!(s.list_statuses().unwrap().is_empty());
    Store::open(&root).unwrap();
}

#[test]
fn write_commit_and_read_back() {
    let (_d, s) = store();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let reference = "default/1/layer";
    let mut w = s.writer(reference, Some(data.len() as u64), None).unwrap();
    assert!(s.is_locked(reference));
    let ingest = s.ingest_path(reference);
    assert_eq!(w.ingest_dir(), ingest);
    assert_eq!(fs::read(ingest.join("ref")).unwrap(), reference.as_bytes());
    assert_eq!(fs::read(ingest.join("total")).unwrap(), b"300000");
    let started = fs::read_to_string(ingest.join("startedat")).unwrap();
    assert!(started.ends_with('Z'), "{started}");
    assert_eq!(text_time::parse(&started).unwrap(), w.status().started_at);
    assert!(!ingest.join("startedat.tmp").exists());
    for chunk in data.chunks(65_536) {
        w.write(chunk).unwrap();
    }
    let st = w.status();
    assert_eq!(
        (st.reference.as_str(), st.offset, st.total),
        (reference, 300_000, Some(300_000))
    );
    assert!(st.updated_at >= st.started_at);
    assert_eq!(w.digest(), from_bytes(&data));
    let digest = w.commit(Some(300_000), Some(&from_bytes(&data))).unwrap();
    assert_eq!(digest, from_bytes(&data));
    assert_eq!(w.digest(), digest, "the digest outlives the commit");
    assert!(!s.is_locked(reference));
    assert!(!ingest.exists());

    let path = s.blob_path(&digest).unwrap();
    assert_eq!(path, s.root().join("blobs/sha256").join(&digest[7..]));
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o333, 0, "read-only blob, mode {mode:o}");
    assert_ne!(mode & 0o444, 0);
    let info = s.info(&digest).unwrap();
    assert_eq!(info.digest, digest);
    assert_eq!(info.size, 300_000);
    assert_eq!(
        info.created_at, info.updated_at,
        "both set to the commit time"
    );
    assert!(info.created_at >= st.started_at);
    assert_eq!(read_all(&s, &digest), data);
    let r = s.reader(&digest).unwrap();
    assert_eq!(r.size(), 300_000);
    assert_eq!(r.read_range(299_990, 100).unwrap(), &data[299_990..]);

    // The writer is closed now.
    let e = w.write(b"more").unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    let e = w.commit(None, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot commit on closed writer: failed precondition"
    );
    assert_eq!(w.truncate(0).unwrap_err().code(), Code::FAILED_PRECONDITION);
    w.close().unwrap();
}

#[test]
fn an_empty_blob_commits() {
    let (_d, s) = store();
    let mut w = s.writer("empty", None, None).unwrap();
    let d = w.commit(Some(0), Some(&from_bytes(b""))).unwrap();
    assert_eq!(s.info(&d).unwrap().size, 0);
    assert!(read_all(&s, &d).is_empty());
}

#[test]
fn a_dropped_writer_resumes_where_it_stopped() {
    let (_d, s) = store();
    let data = b"0123456789abcdefghij".repeat(1000);
    let reference = "default/1/resumable";
    let started = {
        let mut w = s.writer(reference, Some(data.len() as u64), None).unwrap();
        w.write(&data[..7_000]).unwrap();
        w.status().started_at
        // Dropped here: closed, not committed.
    };
    assert!(!s.is_locked(reference));
    let st = s.status(reference).unwrap();
    assert_eq!(st.reference, reference);
    assert_eq!(st.offset, 7_000);
    assert_eq!(st.total, Some(20_000));
    assert_eq!(st.expected, None);
    assert_eq!(st.started_at, started);
    let updated = fs::read_to_string(s.ingest_path(reference).join("updatedat")).unwrap();
    assert!(text_time::parse(&updated).unwrap() >= started);

    // The total may be left out on resume: the stored one holds.
    let mut w = s.writer(reference, None, None).unwrap();
    let st = w.status();
    assert_eq!(
        (st.offset, st.total, st.started_at),
        (7_000, Some(20_000), started)
    );
    assert_eq!(w.digest(), from_bytes(&data[..7_000]));
    w.write(&data[7_000..12_000]).unwrap();
    w.close().unwrap();
    assert!(!s.is_locked(reference));

    let mut w = s.writer(reference, Some(20_000), None).unwrap();
    assert_eq!(w.status().offset, 12_000);
    assert_eq!(w.digest(), from_bytes(&data[..12_000]));
    w.write(&data[12_000..]).unwrap();
    let d = w.commit(Some(20_000), Some(&from_bytes(&data))).unwrap();
    assert_eq!(read_all(&s, &d), data);
}

#[test]
fn another_total_or_a_damaged_ingest_starts_again() {
    let (_d, s) = store();
    let reference = "default/1/restart";
    let mut w = s.writer(reference, Some(10), None).unwrap();
    w.write(b"0123456789").unwrap();
    drop(w);
    let mut w = s.writer(reference, Some(4), None).unwrap();
    let st = w.status();
    assert_eq!((st.offset, st.total), (0, Some(4)));
    assert_eq!(
        fs::read(s.ingest_path(reference).join("data")).unwrap(),
        b""
    );
    assert_eq!(
        fs::read(s.ingest_path(reference).join("total")).unwrap(),
        b"4"
    );
    w.write(b"abcd").unwrap();
    drop(w);

    // Garbage in startedat: the ingest cannot resume, so it starts over, with no total.
    let dir = s.ingest_path(reference);
    fs::write(dir.join("startedat"), b"not a time").unwrap();
    let mut w = s.writer(reference, None, None).unwrap();
    assert_eq!((w.status().offset, w.status().total), (0, None));
    assert!(!dir.join("total").exists());
    w.write(b"xy").unwrap();
    assert_eq!(w.commit(Some(2), None).unwrap(), from_bytes(b"xy"));

    // A ref file naming another reference (a collision, or damage) starts over too.
    let mut w = s.writer("other", None, None).unwrap();
    w.write(b"zz").unwrap();
    drop(w);
    fs::write(s.ingest_path("other").join("ref"), b"someone-else").unwrap();
    let w = s.writer("other", None, None).unwrap();
    assert_eq!(w.status().offset, 0);
    assert_eq!(
        fs::read(s.ingest_path("other").join("ref")).unwrap(),
        b"other"
    );
}

#[test]
fn resumes_an_ingest_containerd_left_in_its_local_zone() {
    let (_d, s) = store();
    let reference = "default/3/from-containerd";
    let dir = s.ingest_path(reference);
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("ref"), reference).unwrap();
    fs::write(dir.join("data"), b"hello ").unwrap();
    fs::write(dir.join("startedat"), b"2026-11-23T15:11:09.25+01:00").unwrap();
    fs::write(dir.join("updatedat"), b"2026-11-23T15:12:00+01:00").unwrap();
    fs::write(dir.join("total"), b"12").unwrap();
    let st = s.status(reference).unwrap();
    assert_eq!(
        st.started_at,
        text_time::parse("2026-11-23T14:11:09.25Z").unwrap()
    );
    assert_eq!((st.offset, st.total), (6, Some(12)));
    let mut w = s.writer(reference, Some(12), None).unwrap();
    assert_eq!(w.status().offset, 6);
    assert_eq!(w.status().started_at, st.started_at);
    w.write(b"world\n").unwrap();
    assert_eq!(
        w.commit(Some(12), None).unwrap(),
        "sha256:a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
    );
}

#[test]
fn truncate_starts_the_write_again() {
    let (_d, s) = store();
    let mut w = s.writer("t", None, None).unwrap();
    w.write(b"abcdef").unwrap();
    let e = w.truncate(3).unwrap_err();
    assert_eq!(e.code(), Code::UNKNOWN);
    assert_eq!(e.to_string(), "Truncate: unsupported size");
    assert_eq!(w.status().offset, 6);
    w.truncate(0).unwrap();
    assert_eq!(w.status().offset, 0);
    assert_eq!(w.digest(), from_bytes(b""));
    assert_eq!(
        fs::metadata(s.ingest_path("t").join("data")).unwrap().len(),
        0
    );
    w.write(b"xyz").unwrap();
    let d = w.commit(Some(3), Some(&from_bytes(b"xyz"))).unwrap();
    assert_eq!(read_all(&s, &d), b"xyz");
}

#[test]
fn a_wrong_size_or_digest_keeps_the_ingest_for_a_retry() {
    let (_d, s) = store();
    let reference = "default/1/check";
    let mut w = s.writer(reference, None, None).unwrap();
    w.write(b"twelve bytes").unwrap();
    let e = w.commit(Some(13), None).unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert_eq!(
        e.to_string(),
        "unexpected commit size 12, expected 13: failed precondition"
    );
    assert!(
        !s.is_locked(reference),
        "the lock goes with the failed commit"
    );
    assert_eq!(s.status(reference).unwrap().offset, 12);

    let wrong = from_bytes(b"something else");
    let mut w = s.writer(reference, None, None).unwrap();
    assert_eq!(w.status().offset, 12);
    let e = w.commit(Some(12), Some(&wrong)).unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
    assert_eq!(
        e.to_string(),
        format!(
            "unexpected commit digest {}, expected {wrong}: failed precondition",
            from_bytes(b"twelve bytes")
        )
    );
    assert!(s.walk().unwrap().is_empty());
    assert_eq!(s.status(reference).unwrap().offset, 12);

    let mut w = s.writer(reference, None, None).unwrap();
    let d = w.commit(None, Some(&from_bytes(b"twelve bytes"))).unwrap();
    assert_eq!(read_all(&s, &d), b"twelve bytes");
    assert_eq!(s.status(reference).unwrap_err().code(), Code::NOT_FOUND);
}

#[test]
fn committing_an_existing_blob_is_already_exists() {
    let (_d, s) = store();
    let d = put(&s, "first", b"same bytes");
    let before = s.info(&d).unwrap();
    let mut w = s.writer("second", None, None).unwrap();
    w.write(b"same bytes").unwrap();
    let e = w.commit(Some(10), None).unwrap_err();
    assert_eq!(e.code(), Code::ALREADY_EXISTS);
    assert_eq!(e.to_string(), format!("content {d}: already exists"));
    assert_eq!(w.digest(), d);
    assert!(!s.ingest_path("second").exists(), "the ingest is removed");
    assert!(!s.is_locked("second"));
    assert_eq!(s.info(&d).unwrap(), before, "the blob is untouched");

    // Announcing a digest that exists fails before anything is written.
    let e = s.writer("third", Some(10), Some(&d)).unwrap_err();
    assert_eq!(e.code(), Code::ALREADY_EXISTS);
    assert_eq!(e.to_string(), format!("content {d}: already exists"));
    assert!(!s.ingest_path("third").exists());
    assert!(!s.is_locked("third"));
    // An expected digest that is not there yet is only remembered.
    let fresh = from_bytes(b"fresh");
    let w = s.writer("third", None, Some(&fresh)).unwrap();
    assert_eq!(w.status().expected.as_deref(), Some(fresh.as_str()));
}

#[test]
fn one_writer_per_reference() {
    let (_d, s) = store();
    let w = s.writer("default/1/busy", None, None).unwrap();
    let e = s.writer("default/1/busy", None, None).unwrap_err();
    assert_eq!(e.code(), Code::UNAVAILABLE);
    let msg = e.to_string();
    assert!(msg.starts_with("ref default/1/busy locked for "), "{msg}");
    assert!(msg.ends_with("): unavailable"), "{msg}");
    // Other references are free.
    drop(s.writer("default/1/idle", None, None).unwrap());
    drop(w);
    drop(s.writer("default/1/busy", None, None).unwrap());

    // Many threads at once: exactly one gets it.
    let threads = 8;
    let start = Arc::new(Barrier::new(threads));
    let done = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (s, start, done) = (s.clone(), Arc::clone(&start), Arc::clone(&done));
            std::thread::spawn(move || {
                start.wait();
                let got = s.writer("default/1/race", None, None);
                let code = got.as_ref().err().map(ContentError::code);
                // Hold the writer until every thread has tried.
                done.wait();
                code
            })
        })
        .collect();
    let codes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| c.is_none()).count(), 1, "{codes:?}");
    assert!(codes.iter().flatten().all(|&c| c == Code::UNAVAILABLE));
    assert!(!s.is_locked("default/1/race"));
}

#[test]
fn a_waiting_writer_gets_the_reference_when_the_first_closes() {
    let (_d, s) = store();
    let s = s.with_lock_wait(Duration::from_secs(30));
    let mut first = s.writer("r", None, None).unwrap();
    first.write(b"abc").unwrap();
    let waiter = {
        let s = s.clone();
        std::thread::spawn(move || s.writer("r", None, None).map(|w| w.status().offset))
    };
    // The waiter cannot finish while `first` is open; closing it lets the waiter resume.
    first.close().unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), 3);
}

#[test]
fn locks_do_not_leak_on_errors() {
    let (_d, s) = store();
    let e = s.writer("r", None, Some("sha256:../../etc")).unwrap_err();
    assert_eq!(e.code(), Code::INVALID_ARGUMENT);
    assert!(e
        .to_string()
        .starts_with("calculating expected blob path for writer: cannot calculate blob path"));
    assert!(!s.is_locked("r"));

    // The ingest directory cannot be made: an I/O error, and the reference is free again.
    let ingest = s.root().join("ingest");
    fs::remove_dir(&ingest).unwrap();
    fs::write(&ingest, b"not a directory").unwrap();
    let e = s.writer("r", None, None).unwrap_err();
    assert_eq!(e.code(), Code::UNKNOWN, "{e}");
    assert!(!s.is_locked("r"));
    assert!(s.list_statuses().is_err());
    fs::remove_file(&ingest).unwrap();
    fs::create_dir(&ingest).unwrap();
    drop(s.writer("r", None, None).unwrap());
}

#[test]
fn bad_arguments() {
    let (_d, s) = store();
    let e = s.writer("", None, None).unwrap_err();
    assert_eq!(e.to_string(), "ref must not be empty: invalid argument");
    let e = s.writer("r", Some(u64::MAX), None).unwrap_err();
    assert_eq!(e.code(), Code::INVALID_ARGUMENT);
    assert_eq!(
        e.to_string(),
        format!("total {} out of range: invalid argument", u64::MAX)
    );
    assert!(!s.ingest_path("r").exists());
    // A total of 0 is containerd's "unknown".
    let w = s.writer("r", Some(0), None).unwrap();
    assert_eq!(w.status().total, None);
    assert!(!s.ingest_path("r").join("total").exists());
}

#[test]
fn hostile_and_invalid_digests_never_become_paths() {
    let (dir, s) = store();
    fs::write(dir.path().join("x"), b"outside").unwrap();
    let long = format!("sha256:{}", "a".repeat(64));
    for bad in [
        "sha256:../../x",
        "sha256:../../../x",
        "../x",
        "sha256:",
        "sha256",
        "",
        "SHA256:aa",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        &long[..long.len() - 1],
        &format!("{long}/"),
        &format!("{long}\0"),
    ] {
        for (op, e) in [
            ("calculating blob info path", s.info(bad).unwrap_err()),
            (
                "calculating blob path for ReaderAt",
                s.reader(bad).map(|_| ()).unwrap_err(),
            ),
            (
                "calculating blob path for delete",
                s.delete(bad).unwrap_err(),
            ),
        ] {
            assert_eq!(e.code(), Code::INVALID_ARGUMENT, "{bad:?}: {e}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!(
                    "{op}: cannot calculate blob path from invalid digest: "
                )),
                "{msg}"
            );
            assert!(msg.ends_with(": invalid argument"), "{msg}");
        }
        assert!(s.blob_path(bad).is_err());
    }
    assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"outside");
    // Valid digests of other algorithms address blobs/<alg>/ as in containerd: none is
    // ever written there, so they are simply not found.
    let sha512 = format!("sha512:{}", "0".repeat(128));
    assert_eq!(s.info(&sha512).unwrap_err().code(), Code::NOT_FOUND);
    assert_eq!(
        s.blob_path(&sha512).unwrap(),
        s.root().join("blobs/sha512").join("0".repeat(128))
    );
    // ... and a writer expecting one cannot commit under it.
    let mut w = s.writer("r", None, Some(&sha512)).unwrap();
    w.write(b"data").unwrap();
    let e = w.commit(None, Some(&sha512)).unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
}

#[test]
fn info_reader_delete_of_missing_blobs() {
    let (_d, s) = store();
    let d = from_bytes(b"nothing");
    let e = s.info(&d).unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);
    assert_eq!(e.to_string(), format!("content {d}: not found"));
    let e = s.reader(&d).unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);
    assert!(
        e.to_string().starts_with(&format!("blob {d} expected at ")),
        "{e}"
    );
    let e = s.delete(&d).unwrap_err();
    assert_eq!(e.to_string(), format!("content {d}: not found"));

    let d = put(&s, "r", b"short-lived");
    s.delete(&d).unwrap();
    assert_eq!(s.info(&d).unwrap_err().code(), Code::NOT_FOUND);
    assert_eq!(s.delete(&d).unwrap_err().code(), Code::NOT_FOUND);
    assert!(s.walk().unwrap().is_empty());
}

#[test]
fn walk_lists_blobs_and_skips_garbage() {
    let (_d, s) = store();
    let mut digests: Vec<(String, u64)> = [&b"one"[..], b"two two", b"three three three"]
        .iter()
        .enumerate()
        .map(|(i, data)| (put(&s, &format!("r{i}"), data), data.len() as u64))
        .collect();
    digests.sort();
    let sha256 = s.root().join("blobs/sha256");
    fs::write(sha256.join("not-a-digest"), b"x").unwrap();
    fs::write(sha256.join("ABCDEF"), b"x").unwrap();
    fs::create_dir(sha256.join("a".repeat(64))).unwrap();
    std::os::unix::fs::symlink(sha256.join(&digests[0].0[7..]), sha256.join("b".repeat(64)))
        .unwrap();
    fs::create_dir_all(s.root().join("blobs/md5")).unwrap();
    fs::write(
        s.root().join("blobs/md5/d41d8cd98f00b204e9800998ecf8427e"),
        b"",
    )
    .unwrap();
    fs::write(s.root().join("blobs/stray-file"), b"").unwrap();
    let walked: Vec<_> = s
        .walk()
        .unwrap()
        .into_iter()
        .map(|i| (i.digest, i.size))
        .collect();
    assert_eq!(walked, digests);
    for info in s.walk().unwrap() {
        assert_eq!(s.info(&info.digest).unwrap(), info);
        assert_eq!(from_bytes(&read_all(&s, &info.digest)), info.digest);
    }
}

#[test]
fn list_statuses_decodes_ingests_and_skips_garbage() {
    let (_d, s) = store();
    let mut open = s.writer("default/1/open", Some(100), None).unwrap();
    open.write(b"12345").unwrap();
    let mut closed = s.writer("default/2/closed", None, None).unwrap();
    closed.write(b"abc").unwrap();
    drop(closed);

    let ingest = s.root().join("ingest");
    // A stray file, an empty directory, a directory without data.
    fs::write(ingest.join("stray"), b"x").unwrap();
    fs::create_dir(ingest.join("empty")).unwrap();
    let half = ingest.join("half");
    fs::create_dir(&half).unwrap();
    fs::write(half.join("ref"), b"half").unwrap();
    // A complete ingest with a garbled time, and one whose name is not its ref's hash.
    let copy_of = |name: &str| {
        let dir = ingest.join(name);
        fs::create_dir(&dir).unwrap();
        for f in ["ref", "data", "startedat", "updatedat"] {
            fs::copy(s.ingest_path("default/2/closed").join(f), dir.join(f)).unwrap();
        }
        dir
    };
    let garbled = copy_of(&from_bytes(b"garbled")[7..]);
    fs::write(garbled.join("ref"), b"garbled").unwrap();
    fs::write(garbled.join("updatedat"), [0xff, 0x00, 0x13]).unwrap();
    copy_of("misnamed");
    // A ref file far too large.
    let huge = copy_of(&from_bytes(b"huge")[7..]);
    fs::write(huge.join("ref"), vec![b'h'; 2 << 20]).unwrap();

    let listed = s.list_statuses().unwrap();
    let got: Vec<_> = listed
        .iter()
        .map(|st| (st.reference.as_str(), st.offset, st.total))
        .collect();
    assert_eq!(
        got,
        [
            ("default/1/open", 5, Some(100)),
            ("default/2/closed", 3, None)
        ]
    );
    assert_eq!(s.status("default/2/closed").unwrap(), listed[1]);
    assert!(s.status("garbled").is_err());
    assert_eq!(s.status("nothing").unwrap_err().code(), Code::NOT_FOUND);
    // The open writer's data is on disk as it goes.
    assert_eq!(s.status("default/1/open").unwrap().offset, 5);
    open.write(b"678").unwrap();
    assert_eq!(s.status("default/1/open").unwrap().offset, 8);
}

#[test]
fn abort_removes_an_ingest() {
    let (_d, s) = store();
    let mut w = s.writer("default/1/gone", Some(10), None).unwrap();
    w.write(b"abc").unwrap();
    drop(w);
    s.abort("default/1/gone").unwrap();
    assert!(!s.ingest_path("default/1/gone").exists());
    assert_eq!(
        s.status("default/1/gone").unwrap_err().code(),
        Code::NOT_FOUND
    );
    let e = s.abort("default/1/gone").unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);
    assert_eq!(e.to_string(), "ingest ref \"default/1/gone\": not found");
    // A new writer on the reference starts from nothing.
    let w = s.writer("default/1/gone", None, None).unwrap();
    assert_eq!((w.status().offset, w.status().total), (0, None));
}

#[test]
fn a_closed_writer_stamps_updatedat() {
    let (_d, s) = store();
    let mut w = s.writer("stamp", None, None).unwrap();
    let path = s.ingest_path("stamp").join("updatedat");
    let before = text_time::parse(&fs::read_to_string(&path).unwrap()).unwrap();
    w.write(b"x").unwrap();
    let written = w.status().updated_at;
    w.close().unwrap();
    w.close().unwrap();
    let after = text_time::parse(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(after, written);
    assert!(after >= before);
    assert!(!Path::new(&format!("{}.tmp", path.display())).exists());
    assert!(s.status("stamp").unwrap().updated_at >= Timestamp::new(after.secs, 0));
}
