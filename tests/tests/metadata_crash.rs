//! Crash safety of the metadata store: a writer (`meta-writer`) commits one namespace per
//! transaction and acknowledges each commit on stdout; it is SIGKILLed at pseudo-random
//! points, mid-commit. After every kill the file must pass `check` and hold every
//! acknowledged namespace with its label; the next writer carries on from there.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_daemon::metadata::bolt::{open_db, OpenMode};
use corral_daemon::metadata::check::check;
use corral_daemon::metadata::namespace;
use corral_daemon::metadata::store::Store;
use corral_tests::bins::corral_binary;

const ROUNDS: usize = 20;
/// For the whole test; each round usually takes a fraction of a second.
const DEADLINE: Duration = Duration::from_secs(60);

/// Kills and reaps the writer, whatever happens to the test.
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A deterministic xorshift sequence: the same kill points on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Starts the writer at `start`; its acknowledgements arrive on the channel (the reader
/// thread ends, closing the channel, when the writer's stdout closes).
fn start_writer(path: &Path, start: u64) -> (Writer, mpsc::Receiver<u64>) {
    let bin = corral_binary("meta-writer").expect("meta-writer binary");
    let mut child = Command::new(bin)
        .arg(path)
        .arg(start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn meta-writer");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let i = line.trim().parse::<u64>().expect("writer prints numbers");
            if tx.send(i).is_err() {
                break;
            }
        }
    });
    (Writer(child), rx)
}

/// The indexes of the `n<i>` namespaces in the file, checking each one's label.
fn present(path: &Path) -> BTreeSet<u64> {
    let store = Store::open_read_only(path).expect("open read-only");
    let all = store.view(|tx| namespace::list(tx)).expect("list");
    all.into_iter()
        .map(|ns| {
            let i: u64 = ns
                .name
                .strip_prefix('n')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected namespace {:?}", ns.name));
            let seq = ns.labels.get("seq").map(String::as_str);
            assert_eq!(seq, Some(i.to_string().as_str()), "label of {}", ns.name);
            i
        })
        .collect()
}

#[test]
fn acknowledged_commits_survive_sigkill() {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next = 0u64;
    let mut acked_total = 0u64;
    for round in 0..ROUNDS {
        let target = 5 + rng.next() % 196;
        let (mut writer, acks) = start_writer(&path, next);
        let mut acked: Option<u64> = None;
        let mut seen = 0;
        while seen < target {
            let left = deadline.saturating_duration_since(Instant::now());
            match acks.recv_timeout(left) {
                Ok(i) => {
                    assert_eq!(i, next + seen, "acknowledgements in order");
                    acked = Some(i);
                    seen += 1;
                }
                Err(e) => {
                    let status = writer.0.try_wait();
                    panic!(
                        "round {round}: writer gave {seen} of {target} acknowledgements ({e:?}, \
                         status {status:?})"
                    );
                }
            }
        }
        // It is still writing: this lands at an arbitrary point of a commit.
        writer.0.kill().expect("SIGKILL");
        let status = writer.0.wait().expect("reap");
        assert!(!status.success(), "round {round}: killed writer {status}");
        // Acknowledgements written before the kill count too: read them to the pipe's end.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match acks.recv_timeout(left) {
                Ok(i) => acked = Some(i),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("round {round}: the writer's stdout never closed: {e:?}"),
            }
        }
        let acked = acked.expect("at least one acknowledgement");
        acked_total += acked + 1 - next;

        let db = open_db(&path, OpenMode::ReadOnly).expect("open after kill");
        let problems = check(&db).expect("check runs");
        assert!(problems.is_empty(), "round {round}: {problems:#?}");
        drop(db);

        let have = present(&path);
        for i in 0..=acked {
            assert!(
                have.contains(&i),
                "round {round}: acknowledged n{i} is missing"
            );
        }
        let highest = *have.last().expect("namespaces present");
        // At most the commit in flight when the kill landed got through unacknowledged.
        assert!(
            highest <= acked + 1,
            "round {round}: n{highest} was never started"
        );
        assert_eq!(
            have.len() as u64,
            highest + 1,
            "round {round}: gaps in {have:?}"
        );
        next = highest + 1;
    }
    eprintln!(
        "{ROUNDS} SIGKILLs, {acked_total} acknowledged commits, {} in the file, in {:?}",
        next,
        started.elapsed()
    );
}
