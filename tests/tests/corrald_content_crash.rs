//! `kill -9` of corrald in the middle of a content write, again and again: after each
//! restart no half-written blob is visible, the write resumes where the bytes corrald
//! acknowledged end, the finished blob verifies, and meta.db checks clean.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use corral_protocols::rpc::Code;
use corral_protocols::services::content::v1::content::{
    InfoRequest, ReadContentRequest, StatusRequest, WriteAction, WriteContentRequest,
};
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_protocols::services::leases::v1::leases::CreateRequest;
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use corral_tests::bins::corral_binary;
use corral_tests::harness::{require_root, run_with_deadline, Corrald, TempRoot};
use protobuf::EnumOrUnknown;
use sha2::{Digest, Sha256};

const SIZE: usize = 6 << 20;
const CHUNK: usize = 256 << 10;
const REF: &str = "import-layer";

fn digest(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn msg(action: WriteAction, offset: usize, data: &[u8]) -> WriteContentRequest {
    WriteContentRequest {
        action: EnumOrUnknown::new(action),
        ref_: REF.into(),
        offset: offset as i64,
        data: data.to_vec(),
        ..Default::default()
    }
}

fn blob_file(root: &Path, d: &str) -> std::path::PathBuf {
    root.join("io.containerd.content.v1.content/blobs/sha256")
        .join(d.trim_start_matches("sha256:"))
}

#[test]
fn a_killed_daemon_loses_no_acknowledged_byte_and_shows_no_partial_blob() {
    if !require_root("corrald chowns its socket to [ttrpc] uid:gid (root:root)") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 253) as u8).collect();
    let want = digest(&data);
    let ctx = Corrald::ctx("default").with_lease("import");
    let mut acknowledged = 0usize;
    for round in 0..4 {
        let d = Corrald::start(&temp, &format!("corrald-{round}.log"), "").unwrap();
        let client = d.client().unwrap();
        if round == 0 {
            LeasesClient::new(client.clone())
                .create(
                    &Corrald::ctx("default"),
                    &CreateRequest {
                        id: "import".into(),
                        ..Default::default()
                    },
                )
                .unwrap();
        } else {
            // The ingest survived with at least every acknowledged byte, and nothing of the
            // blob is visible yet.
            let st = ContentClient::new(client.clone())
                .status(
                    &ctx,
                    &StatusRequest {
                        ref_: REF.into(),
                        ..Default::default()
                    },
                )
                .unwrap_or_else(|e| panic!("round {round}: {e:?}; {}", d.log_text()))
                .status
                .unwrap();
            let offset = st.offset as usize;
            assert!(
                offset >= acknowledged && offset <= acknowledged + CHUNK,
                "round {round}: ingest at {offset}, {acknowledged} acknowledged"
            );
            assert_eq!(st.total, SIZE as i64);
            assert!(
                !blob_file(temp.root(), &want).exists(),
                "partial blob visible"
            );
            let info = ContentClient::new(client.clone()).info(
                &ctx,
                &InfoRequest {
                    digest: want.clone(),
                    ..Default::default()
                },
            );
            assert_eq!(info.unwrap_err().code(), Code::NOT_FOUND);
        }
        let content = ContentClient::new(client.clone());
        let mut w = content.write(&ctx).unwrap();
        let mut first = msg(WriteAction::STAT, 0, &[]);
        first.total = SIZE as i64;
        first.expected = want.clone();
        w.send(&first).unwrap();
        let mut offset = w.recv().unwrap().unwrap().offset as usize;
        // A few acknowledged chunks, then one in flight when the daemon dies.
        for _ in 0..(3 + round) {
            let end = (offset + CHUNK).min(SIZE);
            w.send(&msg(WriteAction::WRITE, offset, &data[offset..end]))
                .unwrap();
            offset = w.recv().unwrap().unwrap().offset as usize;
            assert_eq!(offset, end);
        }
        acknowledged = offset;
        let end = (offset + CHUNK).min(SIZE);
        w.send(&msg(WriteAction::WRITE, offset, &data[offset..end]))
            .unwrap();
        d.kill().unwrap();
    }

    // Finish: resume at the ingest's offset (rewriting from 0 if it holds less than was
    // acknowledged would be a loss) and commit.
    let d = Corrald::start(&temp, "corrald-final.log", "").unwrap();
    let content = ContentClient::new(d.client().unwrap());
    let mut w = content.write(&ctx).unwrap();
    let mut first = msg(WriteAction::STAT, 0, &[]);
    first.total = SIZE as i64;
    first.expected = want.clone();
    w.send(&first).unwrap();
    let mut offset = w.recv().unwrap().unwrap().offset as usize;
    assert!(offset >= acknowledged, "{offset} < {acknowledged}");
    while offset < SIZE {
        let end = (offset + CHUNK).min(SIZE);
        let action = if end == SIZE {
            WriteAction::COMMIT
        } else {
            WriteAction::WRITE
        };
        let mut m = msg(action, offset, &data[offset..end]);
        if action == WriteAction::COMMIT {
            m.total = SIZE as i64;
            m.expected = want.clone();
        }
        w.send(&m).unwrap();
        let r = w.recv().unwrap().unwrap();
        offset = r.offset as usize;
        if action == WriteAction::COMMIT {
            assert_eq!(r.digest, want);
        }
    }
    // The blob reads back whole and right.
    let mut back = Vec::new();
    for m in content
        .read(
            &ctx,
            &ReadContentRequest {
                digest: want.clone(),
                ..Default::default()
            },
        )
        .unwrap()
    {
        back.extend_from_slice(&m.unwrap().data);
    }
    assert_eq!(digest(&back), want);
    assert_eq!(
        fs::metadata(blob_file(temp.root(), &want)).unwrap().len(),
        SIZE as u64
    );
    let status = d.terminate(Duration::from_secs(10)).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    // meta.db is consistent.
    let out = run_with_deadline(
        Command::new(corral_binary("corrald").unwrap())
            .args(["db", "check", "--root"])
            .arg(temp.root()),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
