//! The content store backend (`corral_daemon::content`) against containerd 1.6 on the same
//! root, and against SIGKILL.
//!
//! - containerd imports the busybox fixture and leaves an interrupted `ctr content ingest`:
//!   the store walks and reads containerd's blobs, decodes containerd's ingest as `ctr content
//!   active` reported it, resumes it, commits it, and containerd serves the committed blob.
//! - the store starts an ingest: `ctr content active` reports it, and `ctr content ingest`
//!   resumes it from the store's bytes (its own first bytes are garbage, so a restart from 0
//!   would fail the digest check).
//! - a writer process (this test binary, re-executed) commits blobs in a loop and is
//!   SIGKILLed at arbitrary points: every blob on disk verifies, every acknowledged one is
//!   there, every ingest decodes and resumes with the right digest.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_daemon::content::digest::from_bytes;
use corral_daemon::content::{store_path, Store};
use corral_daemon::metadata::content as records;
use corral_daemon::metadata::encoding::Timestamp;
use corral_daemon::metadata::schema::db_path;
use corral_daemon::metadata::store::Store as MetaStore;
use corral_tests::harness::containerd::NO_GC;
use corral_tests::harness::{
    require_root, require_tool, wait_for, ChildGuard, ContainerdOptions, PrivateContainerd,
    TempRoot,
};

/// The blobs `ctr images import` stores from tests/fixtures/busybox-oci.tar, in digest
/// order: the archive's `index.json` (kept while the collector is held off), then the
/// manifest, the layer and the config (see the fixtures README).
const FIXTURE_BLOBS: [(&str, u64); 4] = [
    (
        "sha256:46d8e2975370af2da8ebc98bcacd4a2ad706ef7a8b07ee13dc1d668741ddbe38",
        411,
    ),
    (
        "sha256:6abfdf51754e174ff484e1bc94c12bae92afe269e6aa36d9f93b05ec496f13f6",
        405,
    ),
    (
        "sha256:bd45cf941c51781cb1b4cc87cb6a526cf6bb5e3e85bf34876acfb6992c3b1029",
        1_028_485,
    ),
    (
        "sha256:e22153cfbf8f11421b36c58b76686beaedcc6a033ac908cc4647d3e57807f0f0",
        400,
    ),
];
/// The buffer containerd's `content.Copy` fills before each write (Go 1.19's `*os.File`
/// has no `WriteTo`, so `ReadAtLeast` into 1 MiB).
const COPY_CHUNK: u64 = 1 << 20;
const DEADLINE: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// `len` deterministic, incompressible-looking bytes that start with `tag`.
fn bytes(tag: &str, len: usize) -> Vec<u8> {
    let mut out = tag.as_bytes().to_vec();
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (len as u64);
    for b in tag.bytes() {
        x = x.rotate_left(5) ^ u64::from(b);
    }
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// go-units' `HumanSize` (`%.4g` of decimal units), as `ctr content active` prints sizes.
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < units.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    let digits = if v >= 1.0 {
        v.log10().floor() as usize + 1
    } else {
        1
    };
    let mut s = format!("{v:.*}", 4usize.saturating_sub(digits));
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[unit])
}

/// `ctr content active` as ref -> size column.
fn active(cd: &PrivateContainerd, ns: &str) -> BTreeMap<String, String> {
    let out = cd.ctr(["-n", ns, "content", "active"]).unwrap();
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            Some((cols.next()?.to_string(), cols.next()?.to_string()))
        })
        .collect()
}

/// `ctr content get`, as raw bytes.
fn ctr_get(cd: &PrivateContainerd, ns: &str, digest: &str) -> Vec<u8> {
    let out = cd.ctr_output(["-n", ns, "content", "get", digest]).unwrap();
    assert!(
        out.status.success(),
        "ctr content get {digest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn start_containerd(root: &Path, containerd: &Path, ctr: &Path) -> PrivateContainerd {
    PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd.to_path_buf(),
        ctr: ctr.to_path_buf(),
        extra_config: NO_GC.into(),
        root: Some(root.to_path_buf()),
        ..Default::default()
    })
    .unwrap()
}

fn assert_read_only(path: &Path) {
    let mode = fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o333, 0, "{} has mode {mode:o}", path.display());
}

#[test]
fn store_reads_resumes_and_commits_what_containerd_wrote() {
    if !require_root("runs a private containerd") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    let dir = TempRoot::new().unwrap();
    let root = dir.root().to_path_buf();
    let mut cd = start_containerd(&root, &containerd, &ctr);
    let ns = cd.namespace().to_string();
    let tar = fixture("busybox-oci.tar");
    cd.ctr([
        OsStr::new("images"),
        OsStr::new("import"),
        OsStr::new("--no-unpack"),
        tar.as_os_str(),
    ])
    .unwrap();

    // An interrupted write: ctr sends 1.5 MiB of 3 MiB, then dies.
    let data = bytes("interrupted", 3 << 20);
    let digest = from_bytes(&data);
    let fed = 3 << 19;
    let mut cmd = cd.command(&ctr);
    cmd.arg("--address")
        .arg(cd.address())
        .args(["content", "ingest", "--expected-size"])
        .arg(data.len().to_string())
        .args(["--expected-digest", &digest, "interrupted"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut ingest = ChildGuard::spawn("ctr content ingest", &mut cmd)
        .unwrap()
        .with_grace(Duration::ZERO);
    let mut stdin = ingest.child_mut().stdin.take().unwrap();
    let first_part = data[..fed].to_vec();
    // Keeps the pipe open (returned) once everything is written, so ctr waits for more.
    let feeder = std::thread::spawn(move || stdin.write_all(&first_part).map(|()| stdin));

    let store = Store::open(store_path(&root)).unwrap();
    let backend_ref = format!("{ns}/1/interrupted");
    // Reading containerd's files while it writes: wait for a stable offset (one full copy
    // buffer, or everything fed).
    let mut offset = 0;
    wait_for(DEADLINE, "containerd's ingest to hold a full chunk", || {
        offset = store.status(&backend_ref).map(|s| s.offset).unwrap_or(0);
        offset == COPY_CHUNK || offset == fed as u64
    })
    .unwrap();
    let listed = active(&cd, &ns);
    assert_eq!(
        listed.get("interrupted"),
        Some(&human_size(offset)),
        "{listed:?}"
    );
    ingest.kill().unwrap();
    let _ = feeder.join().unwrap();
    cd.stop_daemon().unwrap();

    // containerd's blobs: the three of the image, read back intact, read-only.
    let walked: Vec<_> = store
        .walk()
        .unwrap()
        .into_iter()
        .map(|i| (i.digest, i.size))
        .collect();
    let expected: Vec<_> = FIXTURE_BLOBS
        .iter()
        .map(|(d, s)| (d.to_string(), *s))
        .collect();
    assert_eq!(walked, expected);
    for (d, size) in FIXTURE_BLOBS {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut store.reader(d).unwrap(), &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(from_bytes(&bytes), d);
        assert_eq!(store.info(d).unwrap().size, size);
        assert_read_only(&store.blob_path(d).unwrap());
    }

    // containerd's ingest, decoded from its own files.
    let dir_of_ref = store.ingest_path(&backend_ref);
    assert!(
        dir_of_ref.is_dir(),
        "same ingest directory name as containerd"
    );
    assert_eq!(
        fs::read_to_string(dir_of_ref.join("total")).unwrap(),
        data.len().to_string()
    );
    let statuses = store.list_statuses().unwrap();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    let st = &statuses[0];
    assert_eq!(st.reference, backend_ref);
    assert_eq!(st.offset, offset);
    assert_eq!(st.total, Some(data.len() as u64));
    assert!(st.started_at <= st.updated_at);
    assert!(st.started_at.secs > 1_600_000_000);
    assert_eq!(store.status(&backend_ref).unwrap(), *st);

    // The store resumes containerd's write, rebuilding the digest from its bytes...
    let mut w = store
        .writer(&backend_ref, Some(data.len() as u64), None)
        .unwrap();
    assert_eq!(w.status().offset, offset);
    assert_eq!(w.status().started_at, st.started_at);
    assert_eq!(w.digest(), from_bytes(&data[..offset as usize]));
    w.write(&data[offset as usize..]).unwrap();
    let committed = w
        .commit(Some(data.len() as u64), Some(digest.as_str()))
        .unwrap();
    assert_eq!(committed, digest);
    assert!(!dir_of_ref.exists());
    assert_read_only(&store.blob_path(&digest).unwrap());
    // ... and the metadata layer records the blob where the ingest record was.
    {
        let meta = MetaStore::open(db_path(&root)).unwrap();
        meta.update(|tx| {
            records::delete_ingest(tx, &ns, "interrupted")?;
            records::add_blob(tx, &ns, &digest, data.len() as i64, &BTreeMap::new())
        })
        .unwrap();
    }
    cd.stop().unwrap();

    // containerd serves the blob the store committed.
    let cd = start_containerd(&root, &containerd, &ctr);
    assert_eq!(ctr_get(&cd, &ns, &digest), data);
    let listed = cd.ctr(["-n", &ns, "content", "ls", "-q"]).unwrap();
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    let mut want: Vec<&str> = FIXTURE_BLOBS.iter().map(|(d, _)| *d).collect();
    want.push(&digest);
    want.sort();
    assert_eq!(listed, want);
    assert!(active(&cd, &ns).is_empty());
    cd.stop().unwrap();
}

#[test]
fn containerd_resumes_an_ingest_the_store_started() {
    if !require_root("runs a private containerd") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    let dir = TempRoot::new().unwrap();
    let root = dir.root().to_path_buf();
    let ns = "corral-content";
    let data = bytes("from corral", 300_000);
    let digest = from_bytes(&data);
    let written = 123_456usize;

    // The record first (it names the backend ref), then the bytes.
    let backend_ref = {
        let meta = MetaStore::open(db_path(&root)).unwrap();
        let now = Timestamp::now();
        let expires = Timestamp::new(now.secs + 24 * 3600, now.nanos);
        meta.update(|tx| records::create_ingest(tx, ns, "from-corral", Some(expires), None))
            .unwrap()
    };
    assert_eq!(backend_ref, format!("{ns}/1/from-corral"));
    let store = Store::open(store_path(&root)).unwrap();
    let mut w = store
        .writer(&backend_ref, Some(data.len() as u64), None)
        .unwrap();
    w.write(&data[..written]).unwrap();
    w.close().unwrap();
    let ours = store.status(&backend_ref).unwrap();

    let cd = start_containerd(&root, &containerd, &ctr);
    let listed = active(&cd, ns);
    assert_eq!(
        listed,
        BTreeMap::from([("from-corral".to_string(), human_size(written as u64))])
    );

    // ctr seeks its input to containerd's offset: the garbage before it is never sent.
    let input = dir.join("input");
    let mut garbage = vec![0xee; written];
    garbage.extend_from_slice(&data[written..]);
    fs::write(&input, &garbage).unwrap();
    let stderr = dir.join("ctr.stderr");
    let mut cmd = cd.command(&ctr);
    cmd.arg("--address")
        .arg(cd.address())
        .args(["-n", ns, "content", "ingest", "--expected-size"])
        .arg(data.len().to_string())
        .args(["--expected-digest", &digest, "from-corral"])
        .stdin(File::open(&input).unwrap())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap());
    let mut ingest = ChildGuard::spawn("ctr content ingest", &mut cmd).unwrap();
    let status = ingest.wait_timeout(DEADLINE).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "ctr content ingest: {status:?}: {}",
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    assert_eq!(ctr_get(&cd, ns, &digest), data);
    assert!(active(&cd, ns).is_empty());
    cd.stop().unwrap();

    // containerd's commit, seen from the store.
    assert!(store.list_statuses().unwrap().is_empty());
    let info = store.info(&digest).unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert!(info.created_at >= ours.started_at);
    assert_read_only(&store.blob_path(&digest).unwrap());
    assert_eq!(
        store
            .reader(&digest)
            .unwrap()
            .read_range(0, data.len())
            .unwrap(),
        data
    );
}

// ---- SIGKILL ------------------------------------------------------------------------------

/// Set (to the store directory) in the re-executed writer.
const CHILD_ROOT_ENV: &str = "CORRAL_CONTENT_CRASH_ROOT";
/// The first blob index the re-executed writer writes.
const CHILD_START_ENV: &str = "CORRAL_CONTENT_CRASH_START";
const ROUNDS: usize = 15;
/// Every `LEFT_OPEN`-th write is left as an ingest instead of being committed.
const LEFT_OPEN: u64 = 5;

/// Blob number `i`: up to ~192 KiB, unique, empty now and then.
fn crash_blob(i: u64) -> Vec<u8> {
    let len = if i.is_multiple_of(11) {
        0
    } else {
        (i as usize * 7_919) % (192 << 10)
    };
    bytes(&format!("blob {i}\n"), len)
}

fn crash_ref(i: u64) -> String {
    format!("crash/1/blob-{i}")
}

/// The writer: commits blob after blob from `start` on, printing `ack <i> <digest>` once
/// each commit has returned; every [`LEFT_OPEN`]th write stops half way (an ingest stays).
/// A write the previous writer was killed in is resumed (its bytes must be a prefix of the
/// blob) or found committed.
fn crash_writer(root: &Path, start: u64) {
    let store = Store::open(root).unwrap();
    for i in start.. {
        let data = crash_blob(i);
        let reference = crash_ref(i);
        let mut w = store
            .writer(&reference, Some(data.len() as u64), None)
            .unwrap();
        let offset = w.status().offset as usize;
        assert!(offset <= data.len(), "{reference}: offset {offset}");
        assert_eq!(w.digest(), from_bytes(&data[..offset]), "{reference}");
        let stop = if i % LEFT_OPEN == 0 {
            data.len() / 2
        } else {
            data.len()
        };
        for chunk in data[offset.min(stop)..stop].chunks(4_096 + (i as usize % 5_000)) {
            w.write(chunk).unwrap();
        }
        if stop < data.len() {
            continue;
        }
        let digest = match w.commit(Some(data.len() as u64), Some(&from_bytes(&data))) {
            Ok(d) => d,
            // Committed by the killed writer, which never said so.
            Err(e) if e.code() == corral_protocols::rpc::Code::ALREADY_EXISTS => w.digest(),
            Err(e) => panic!("{reference}: {e}"),
        };
        println!("ack {i} {digest}");
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

/// Re-executes this test binary as the writer; acknowledgements arrive on the channel, which
/// closes with the writer's stdout.
fn start_crash_writer(root: &Path, start: u64) -> (Writer, mpsc::Receiver<(u64, String)>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "commits_survive_sigkill",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT_ENV, root)
        .env(CHILD_START_ENV, start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(ack) = line.strip_prefix("ack ") else {
                continue;
            };
            let (i, d) = ack.split_once(' ').expect("ack <i> <digest>");
            if tx.send((i.parse().expect("index"), d.to_string())).is_err() {
                break;
            }
        }
    });
    (Writer(child), rx)
}

/// Checks the store after a kill: every blob verifies, every acknowledged one is there and
/// read-only, nothing else sits in `blobs/sha256`, and every ingest decodes and resumes with
/// the digest of a prefix of its blob (or lost its data in a commit's last step).
fn check_after_kill(root: &Path, acked: &BTreeMap<u64, String>, round: usize) {
    let store = Store::open(root).unwrap();
    let blobs = store.walk().unwrap();
    let on_disk = fs::read_dir(root.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs.len(), on_disk, "round {round}: stray files in blobs/");
    for info in &blobs {
        let bytes = store
            .reader(&info.digest)
            .unwrap()
            .read_range(0, info.size as usize)
            .unwrap();
        assert_eq!(bytes.len() as u64, info.size);
        assert_eq!(from_bytes(&bytes), info.digest, "round {round}: torn blob");
    }
    for (i, digest) in acked {
        let info = store
            .info(digest)
            .unwrap_or_else(|e| panic!("round {round}: acknowledged blob {i}: {e}"));
        assert_eq!(info.size, crash_blob(*i).len() as u64);
        assert_read_only(&store.blob_path(digest).unwrap());
    }
    let statuses = store.list_statuses().unwrap();
    let dirs = fs::read_dir(root.join("ingest")).unwrap().count();
    let without_data = fs::read_dir(root.join("ingest"))
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().path().join("data").exists())
        .count();
    assert_eq!(
        statuses.len() + without_data,
        dirs,
        "round {round}: undecodable ingests"
    );
    for st in statuses {
        let i: u64 = st
            .reference
            .strip_prefix("crash/1/blob-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ingest {:?}", st.reference));
        let data = crash_blob(i);
        assert_eq!(st.total, (!data.is_empty()).then_some(data.len() as u64));
        let w = store.writer(&st.reference, st.total, None).unwrap();
        let offset = w.status().offset as usize;
        assert!(offset <= data.len(), "round {round}: {}", st.reference);
        assert_eq!(
            w.digest(),
            from_bytes(&data[..offset]),
            "round {round}: {}",
            st.reference
        );
    }
}

#[test]
fn commits_survive_sigkill() {
    if let Some(root) = std::env::var_os(CHILD_ROOT_ENV) {
        let start = std::env::var(CHILD_START_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        crash_writer(Path::new(&root), start);
        return;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let dir = tempfile::tempdir().unwrap();
    let root = store_path(dir.path());
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut next = 0u64;
    for round in 0..ROUNDS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let target = 2 + rng % 30;
        let (mut writer, acks) = start_crash_writer(&root, next);
        let mut seen = 0;
        while seen < target {
            let left = deadline.saturating_duration_since(Instant::now());
            match acks.recv_timeout(left) {
                Ok((i, d)) => {
                    acked.insert(i, d);
                    seen += 1;
                }
                Err(e) => panic!(
                    "round {round}: writer gave {seen} of {target} acknowledgements ({e:?}, \
                     status {:?})",
                    writer.0.try_wait()
                ),
            }
        }
        // Still writing: the kill lands anywhere in a write or a commit.
        writer.0.kill().unwrap();
        let status = writer.0.wait().unwrap();
        assert!(!status.success(), "round {round}: {status}");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match acks.recv_timeout(left) {
                Ok((i, d)) => {
                    acked.insert(i, d);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("round {round}: the writer's stdout never closed: {e:?}"),
            }
        }
        check_after_kill(&root, &acked, round);
        next = acked.keys().next_back().map_or(0, |i| i + 1);
    }
    let left_open = Store::open(&root).unwrap().list_statuses().unwrap().len();
    assert!(left_open > 0, "the writers leave ingests behind");
    eprintln!(
        "{ROUNDS} SIGKILLs, {} acknowledged commits, {left_open} ingests, in {:?}",
        acked.len(),
        started.elapsed()
    );
}
