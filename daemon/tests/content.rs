//! The Content service through the wire: a real ttrpc server and client over a socket pair,
//! the stores in a temporary directory.

mod common;

use std::collections::HashMap;

use common::{ns, Harness};
use corral_protocols::rpc::{CallContext, Code, Status};
use corral_protocols::services::content::v1::content::{
    AbortRequest, DeleteContentRequest, Info, InfoRequest, ListContentRequest, ListStatusesRequest,
    ReadContentRequest, StatusRequest, UpdateRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use corral_protocols::services::leases::v1::leases::{DeleteRequest, ListResourcesRequest};
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;
use protobuf::well_known_types::field_mask::FieldMask;
use protobuf::{EnumOrUnknown, MessageField};
use sha2::{Digest, Sha256};

fn content(h: &Harness) -> ContentClient {
    ContentClient::new(h.client.clone())
}

fn blob_path(h: &Harness, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    h.root()
        .join("io.containerd.content.v1.content/blobs/sha256")
        .join(hex)
}

fn drop_lease(h: &Harness, name: &str, lease: &str) {
    LeasesClient::new(h.client.clone())
        .delete(
            &ns(name),
            &DeleteRequest {
                id: lease.into(),
                sync: true,
                ..Default::default()
            },
        )
        .expect("delete lease");
}

fn digest_of(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn req(action: WriteAction, reference: &str) -> WriteContentRequest {
    WriteContentRequest {
        action: EnumOrUnknown::new(action),
        ref_: reference.into(),
        ..Default::default()
    }
}

/// Sends `msgs` on one Write stream, one response per message, closing the stream at the
/// end; returns the responses or the first error.
fn write(
    c: &ContentClient,
    ctx: &CallContext,
    msgs: Vec<WriteContentRequest>,
) -> Result<Vec<WriteContentResponse>, Status> {
    let mut s = c.write(ctx)?;
    let mut out = Vec::new();
    for m in msgs {
        s.send(&m)?;
        match s.recv()? {
            Some(r) => out.push(r),
            None => break,
        }
    }
    s.close_send()?;
    Ok(out)
}

fn commit_all(c: &ContentClient, ctx: &CallContext, reference: &str, data: &[u8]) -> String {
    let d = digest_of(data);
    let mut m = req(WriteAction::COMMIT, reference);
    m.total = data.len() as i64;
    m.expected = d.clone();
    m.data = data.to_vec();
    let r = write(c, ctx, vec![m]).expect("write");
    assert_eq!(r[0].digest, d);
    assert_eq!(r[0].offset, data.len() as i64);
    d
}

fn read_all(c: &ContentClient, ctx: &CallContext, digest: &str, offset: i64, size: i64) -> Vec<u8> {
    let stream = c
        .read(
            ctx,
            &ReadContentRequest {
                digest: digest.into(),
                offset,
                size,
                ..Default::default()
            },
        )
        .expect("read");
    let mut out = Vec::new();
    for m in stream {
        let m = m.expect("read message");
        assert_eq!(m.offset as usize, offset as usize + out.len());
        out.extend_from_slice(&m.data);
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn write_read_info_update_list_delete() {
    let h = Harness::new();
    let c = content(&h);
    let cx = h.lease("default", "t");
    // 2.5 MiB in three WRITE messages after a STAT, then a COMMIT with labels.
    let data: Vec<u8> = (0..(5 << 19)).map(|i| (i % 251) as u8).collect();
    let d = digest_of(&data);
    let mut first = req(WriteAction::STAT, "layer-1");
    first.total = data.len() as i64;
    first.expected = d.clone();
    let mut msgs = vec![first];
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        let mut m = req(WriteAction::WRITE, "layer-1");
        m.offset = (i << 20) as i64;
        m.data = chunk.to_vec();
        msgs.push(m);
    }
    let mut commit = req(WriteAction::COMMIT, "layer-1");
    commit.offset = data.len() as i64;
    commit.labels = labels(&[("containerd.io/uncompressed", "sha256:abc")]);
    msgs.push(commit);
    let resp = write(&c, &cx, msgs).expect("write");
    assert_eq!(resp.len(), 5);
    assert_eq!(resp[0].action.enum_value(), Ok(WriteAction::STAT));
    assert_eq!(resp[0].total, data.len() as i64);
    assert_eq!(resp[0].offset, 0);
    assert_eq!(resp[3].offset, data.len() as i64);
    assert_eq!(resp[4].digest, d);

    let info = c
        .info(
            &cx,
            &InfoRequest {
                digest: d.clone(),
                ..Default::default()
            },
        )
        .expect("info")
        .info
        .unwrap();
    assert_eq!(info.size, data.len() as i64);
    assert_eq!(
        info.labels,
        labels(&[("containerd.io/uncompressed", "sha256:abc")])
    );
    assert!(info.created_at.is_some() && info.updated_at.is_some());
    // On disk where containerd keeps it, read-only.
    let meta = std::fs::metadata(blob_path(&h, &d)).expect("blob file");
    assert_eq!(meta.len(), data.len() as u64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o222, 0);

    // Reads: whole, a range, past the end.
    assert_eq!(read_all(&c, &cx, &d, 0, 0), data);
    assert_eq!(read_all(&c, &cx, &d, 1000, 5000), data[1000..6000].to_vec());
    assert_eq!(
        read_all(&c, &cx, &d, (2 << 20) as i64, 0),
        data[(2 << 20)..].to_vec()
    );
    let past = c
        .read(
            &cx,
            &ReadContentRequest {
                digest: d.clone(),
                offset: data.len() as i64 + 1,
                ..Default::default()
            },
        )
        .and_then(|mut s| s.recv())
        .unwrap_err();
    assert_eq!(past.code(), Code::OUT_OF_RANGE, "{past:?}");

    // Update one label by mask; list with filters.
    let small = commit_all(&c, &cx, "config", b"{\"architecture\":\"amd64\"}");
    let upd = c
        .update(
            &cx,
            &UpdateRequest {
                info: MessageField::some(Info {
                    digest: small.clone(),
                    labels: labels(&[("containerd.io/gc.ref.content.l.0", &d)]),
                    ..Default::default()
                }),
                update_mask: MessageField::some(FieldMask {
                    paths: vec!["labels.containerd.io/gc.ref.content.l.0".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .expect("update")
        .info
        .unwrap();
    assert_eq!(
        upd.labels,
        labels(&[("containerd.io/gc.ref.content.l.0", &d)])
    );
    let list = |filters: &[&str]| -> Vec<String> {
        let mut out = Vec::new();
        for block in c
            .list(
                &cx,
                &ListContentRequest {
                    filters: filters.iter().map(|f| f.to_string()).collect(),
                    ..Default::default()
                },
            )
            .expect("list")
        {
            out.extend(block.expect("block").info.into_iter().map(|i| i.digest));
        }
        out.sort();
        out
    };
    let mut both = vec![d.clone(), small.clone()];
    both.sort();
    assert_eq!(list(&[]), both);
    assert_eq!(
        list(&["labels.\"containerd.io/uncompressed\""]),
        vec![d.clone()]
    );
    assert_eq!(list(&[&format!("digest=={small}")]), vec![small.clone()]);
    assert!(c
        .list(&ns("other"), &ListContentRequest::default())
        .expect("list other")
        .all(|b| b.expect("block").info.is_empty()));

    // Delete: the record (and the lease's hold) goes at once, the bytes at the next
    // collection.
    c.delete(
        &cx,
        &DeleteContentRequest {
            digest: small.clone(),
            ..Default::default()
        },
    )
    .expect("delete");
    let gone = c
        .info(
            &cx,
            &InfoRequest {
                digest: small.clone(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(gone.code(), Code::NOT_FOUND);
    assert_eq!(gone.message(), format!("content digest {small}: not found"));
    h.ctx.gc.collect_and_wait().expect("gc");
    assert!(!blob_path(&h, &small).exists(), "unreferenced blob kept");
    assert!(blob_path(&h, &d).exists(), "leased blob removed");
    // Without the lease, a blob no image or gc.root refers to is collected, as containerd
    // collects it.
    drop_lease(&h, "default", "t");
    assert!(!blob_path(&h, &d).exists(), "unreferenced blob kept");
    // Bad digests.
    let bad = c
        .info(
            &cx,
            &InfoRequest {
                digest: "sha256:../../etc".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(bad.code(), Code::INVALID_ARGUMENT);
}

#[test]
fn writes_resume_check_offsets_and_verify_commits() {
    let h = Harness::new();
    let c = content(&h);
    let cx = h.lease("default", "t");
    let data = vec![7u8; 300_000];
    let d = digest_of(&data);
    // Write half, then go away.
    let mut m = req(WriteAction::WRITE, "resumable");
    m.total = data.len() as i64;
    m.expected = d.clone();
    m.data = data[..100_000].to_vec();
    write(&c, &cx, vec![m]).expect("first half");
    let st = c
        .status(
            &cx,
            &StatusRequest {
                ref_: "resumable".into(),
                ..Default::default()
            },
        )
        .expect("status")
        .status
        .unwrap();
    assert_eq!(
        (st.ref_.as_str(), st.offset, st.total),
        ("resumable", 100_000, 300_000)
    );
    let statuses = c
        .list_statuses(
            &cx,
            &ListStatusesRequest {
                filters: vec!["ref==resumable".into()],
                ..Default::default()
            },
        )
        .expect("statuses")
        .statuses;
    assert_eq!(statuses.len(), 1);
    // Resume: STAT tells the offset; a write at the wrong offset is OutOfRange.
    let resp = write(&c, &cx, vec![req(WriteAction::STAT, "resumable")]).expect("stat");
    assert_eq!(resp[0].offset, 100_000);
    let mut wrong = req(WriteAction::WRITE, "resumable");
    wrong.offset = 5;
    wrong.data = vec![1];
    let e = write(&c, &cx, vec![wrong]).unwrap_err();
    assert_eq!(e.code(), Code::OUT_OF_RANGE, "{e:?}");
    assert_eq!(e.message(), "write @5 must occur at current offset 100000");
    let mut rest = req(WriteAction::COMMIT, "resumable");
    rest.offset = 100_000;
    rest.data = data[100_000..].to_vec();
    rest.expected = d.clone();
    rest.total = data.len() as i64;
    let resp = write(&c, &cx, vec![rest]).expect("commit");
    assert_eq!(resp[0].digest, d);
    // The ingest is gone.
    let e = c
        .status(
            &cx,
            &StatusRequest {
                ref_: "resumable".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);

    // A digest that does not match fails the commit and keeps the ingest for a retry.
    let mut bad = req(WriteAction::COMMIT, "bad");
    bad.data = b"hello".to_vec();
    bad.expected = digest_of(b"world");
    let e = write(&c, &cx, vec![bad]).unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e:?}");
    assert!(e.message().contains("unexpected commit digest"), "{e:?}");
    // Writing from offset 0 again starts it over.
    let mut again = req(WriteAction::COMMIT, "bad");
    again.data = b"world".to_vec();
    again.expected = digest_of(b"world");
    write(&c, &cx, vec![again]).expect("retry from 0");
    // A wrong size fails too.
    let mut size = req(WriteAction::COMMIT, "sized");
    size.data = b"abc".to_vec();
    size.total = 4;
    let e = write(&c, &cx, vec![size]).unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION, "{e:?}");
    c.abort(
        &cx,
        &AbortRequest {
            ref_: "sized".into(),
            ..Default::default()
        },
    )
    .expect("abort");
    let e = c
        .abort(
            &cx,
            &AbortRequest {
                ref_: "sized".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);

    // A blob the namespace has: AlreadyExists on the first message.
    let mut dup = req(WriteAction::STAT, "dup");
    dup.expected = d.clone();
    let e = write(&c, &cx, vec![dup]).unwrap_err();
    assert_eq!(e.code(), Code::ALREADY_EXISTS, "{e:?}");
    // No reference: InvalidArgument.
    let e = write(&c, &cx, vec![req(WriteAction::STAT, "")]).unwrap_err();
    assert_eq!(e.code(), Code::INVALID_ARGUMENT);
    assert_eq!(e.message(), "first message must have a reference");
    // No namespace: FailedPrecondition.
    let e = write(&c, &CallContext::new(), vec![req(WriteAction::STAT, "x")]).unwrap_err();
    assert_eq!(e.code(), Code::FAILED_PRECONDITION);
}

#[test]
fn shared_blobs_leases_and_collection() {
    let h = Harness::new();
    let c = content(&h);
    let leases = LeasesClient::new(h.client.clone());
    let under = h.lease("a", "pull");
    let data = b"shared layer bytes".to_vec();
    let d = commit_all(&c, &under, "l", &data);
    let res = leases
        .list_resources(
            &ns("a"),
            &ListResourcesRequest {
                id: "pull".into(),
                ..Default::default()
            },
        )
        .expect("resources")
        .resources;
    assert_eq!(res.len(), 1, "{res:?}");
    assert_eq!(
        (res[0].id.as_str(), res[0].type_.as_str()),
        (d.as_str(), "content")
    );
    // The lease keeps the blob through a collection.
    h.ctx.gc.collect_and_wait().expect("gc");
    assert!(blob_path(&h, &d).exists());

    // Namespace b claims the blob by digest without sending a byte: the STAT that opens
    // the write reports it complete, and the commit at that offset records it.
    let under_b = h.lease("b", "pull");
    let mut stat = req(WriteAction::STAT, "l");
    stat.expected = d.clone();
    stat.total = data.len() as i64;
    let mut claim = req(WriteAction::COMMIT, "l");
    claim.offset = data.len() as i64;
    let r = write(&c, &under_b, vec![stat, claim]).expect("claim");
    assert_eq!(r[0].offset, data.len() as i64);
    assert_eq!(r[0].digest, d);
    assert_eq!(r[1].digest, d);
    assert_eq!(read_all(&c, &ns("b"), &d, 0, 0), data);

    // Dropping a's lease keeps the blob (b still holds it); dropping b's too frees it.
    leases
        .delete(
            &ns("a"),
            &DeleteRequest {
                id: "pull".into(),
                sync: true,
                ..Default::default()
            },
        )
        .expect("delete a");
    assert!(blob_path(&h, &d).exists());
    let e = c
        .info(
            &ns("a"),
            &InfoRequest {
                digest: d.clone(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), Code::NOT_FOUND);
    leases
        .delete(
            &ns("b"),
            &DeleteRequest {
                id: "pull".into(),
                sync: true,
                ..Default::default()
            },
        )
        .expect("delete b");
    assert!(!blob_path(&h, &d).exists(), "blob kept with no reference");
}
