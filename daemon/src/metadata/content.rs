//! Content records (containerd's `metadata/content.go`): committed blobs under
//! `v1/<ns>/content/blob/<digest>/` (`createdat`, `updatedat`, `size`, `labels/`) and active
//! writes under `v1/<ns>/content/ingests/<ref>/` (`ref`, `expireat`, `expected`). The bytes
//! themselves live in the content store's backend; this module keeps only the records.

use std::collections::BTreeMap;

use bbolt_rs::{BucketApi, BucketRwApi};

use super::encoding::Timestamp;
use super::error::{MetaError, MetaResult};
use super::namespace;
use super::record::{
    read_map, read_string, read_time, read_varint, write_map, write_time, write_varint,
};
use super::schema::{
    BLOB, CONTENT, CREATED_AT, EXPECTED, EXPIRE_AT, INGESTS, LABELS, REF, SIZE, UPDATED_AT,
};
use super::store::{Reader, WriteTx};
use super::validate::validate_labels;

/// A committed blob's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub digest: String,
    pub size: i64,
    pub labels: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An active write's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingest {
    /// The client's reference (the bucket name).
    pub reference: String,
    /// The backend's ingest key, `"<ns>/<seq>/<ref>"`.
    pub backend_ref: String,
    /// When a write that no lease holds may be cleaned up.
    pub expire_at: Option<Timestamp>,
    /// The digest a shared write expects (written under the "shared" policy only).
    pub expected: Option<String>,
}

/// go-digest's `Digest.Validate`: `<algorithm>:<encoded>` with sha256/sha384/sha512 and
/// lowercase hex of the right length. The error is go-digest's message.
pub fn validate_digest(d: &str) -> Result<(), &'static str> {
    const FORMAT: &str = "invalid checksum digest format";
    let Some(i) = d.find(':').filter(|&i| i > 0 && i + 1 < d.len()) else {
        return Err(FORMAT);
    };
    let (alg, enc) = (&d[..i], &d[i + 1..]);
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            // go-digest's DigestRegexpAnchored decides between the two messages.
            let alg_ok = alg.split(['.', '+', '_', '-']).all(|run| {
                !run.is_empty()
                    && run
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
            let enc_ok = enc
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
            return Err(if alg_ok && enc_ok {
                "unsupported digest algorithm"
            } else {
                FORMAT
            });
        }
    };
    if enc.len() != len {
        return Err("invalid checksum digest length");
    }
    if !enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(FORMAT);
    }
    Ok(())
}

fn blob_not_found(digest: &str) -> MetaError {
    MetaError::NotFound(format!("content digest {digest}"))
}

fn ingest_not_found(reference: &str) -> MetaError {
    MetaError::NotFound(format!("reference {reference}"))
}

fn validate_info_labels(labels: &BTreeMap<String, String>) -> MetaResult<()> {
    validate_labels(labels).map_err(|e| MetaError::InvalidArgument(format!("info.Labels: {e}")))
}

fn read_info<'tx, B: BucketApi<'tx>>(b: &B, ns: &str, digest: &str) -> MetaResult<Info> {
    let path = format!("v1/{ns}/content/blob/{digest}");
    Ok(Info {
        digest: digest.to_string(),
        size: read_varint(b, SIZE, &path)?.unwrap_or_default(),
        labels: read_map(b, LABELS),
        created_at: read_time(b, CREATED_AT, &path)?.unwrap_or_default(),
        updated_at: read_time(b, UPDATED_AT, &path)?.unwrap_or_default(),
    })
}

fn write_info<'tx, B: BucketRwApi<'tx>>(b: &mut B, info: &Info) -> MetaResult<()> {
    write_time(b, CREATED_AT, info.created_at)?;
    write_time(b, UPDATED_AT, info.updated_at)?;
    write_map(b, LABELS, &info.labels)?;
    write_varint(b, SIZE, info.size)
}

/// Runs `f` on `v1/<ns>/content/<sub>` when it exists.
fn with_content<'tx, R: Reader<'tx>, T>(
    tx: &R,
    ns: &str,
    sub: &[u8],
    f: impl FnOnce(&bbolt_rs::BucketImpl<'tx, '_>) -> MetaResult<T>,
) -> Option<MetaResult<T>> {
    let v1 = tx.v1()?;
    let n = v1.bucket(ns.as_bytes())?;
    let c = n.bucket(CONTENT)?;
    let b = c.bucket(sub)?;
    Some(f(&b))
}

/// One blob's record (containerd's `Content.Info`).
pub fn info<'tx>(tx: &impl Reader<'tx>, ns: &str, digest: &str) -> MetaResult<Info> {
    with_content(tx, ns, BLOB, |blobs| {
        let b = blobs
            .bucket(digest.as_bytes())
            .ok_or_else(|| blob_not_found(digest))?;
        read_info(&b, ns, digest)
    })
    .unwrap_or_else(|| Err(blob_not_found(digest)))
}

/// Every blob record of a namespace, in digest order (containerd's `Walk`, unfiltered);
/// keys that are not digests are skipped, as containerd does.
pub fn list<'tx>(tx: &impl Reader<'tx>, ns: &str) -> MetaResult<Vec<Info>> {
    with_content(tx, ns, BLOB, |blobs| {
        blobs
            .iter_buckets()
            .filter_map(|(k, b)| {
                let d = std::str::from_utf8(k).ok()?;
                validate_digest(d).ok()?;
                Some(read_info(&b, ns, d))
            })
            .collect()
    })
    .unwrap_or_else(|| Ok(Vec::new()))
}

fn exists<'tx>(tx: &impl Reader<'tx>, ns: &str, sub: &[u8], key: &str) -> bool {
    with_content(tx, ns, sub, |b| Ok(b.bucket(key.as_bytes()).is_some()))
        .is_some_and(|r| r.unwrap_or(false))
}

/// Opens `v1/<ns>/content/<sub>` for writing (creating the namespace and buckets) and runs
/// `f` on it.
fn with_content_mut<T>(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    sub: &[u8],
    f: impl FnOnce(&mut bbolt_rs::BucketRwImpl<'_, '_>) -> MetaResult<T>,
) -> MetaResult<T> {
    namespace::ensure(tx, ns)?;
    let mut v1 = tx.v1_mut()?;
    let mut n = v1
        .bucket_mut(ns.as_bytes())
        .ok_or_else(|| MetaError::Storage(format!("namespace {ns:?} vanished")))?;
    let mut c = n.create_bucket_if_not_exists(CONTENT)?;
    let mut b = c.create_bucket_if_not_exists(sub)?;
    f(&mut b)
}

/// Records a committed blob (what containerd's writer `Commit` stores): created and
/// updated times are now. A blob already recorded in the namespace is `AlreadyExists`
/// (`content <digest>`).
pub fn add_blob(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    digest: &str,
    size: i64,
    labels: &BTreeMap<String, String>,
) -> MetaResult<Info> {
    validate_info_labels(labels)?;
    if let Err(e) = validate_digest(digest) {
        return Err(MetaError::InvalidArgument(format!(
            "digest {digest:?} invalid: {e}: invalid argument"
        )));
    }
    if exists(tx, ns, BLOB, digest) {
        return Err(MetaError::AlreadyExists(format!("content {digest}")));
    }
    let now = Timestamp::now();
    let info = Info {
        digest: digest.to_string(),
        size,
        labels: labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        created_at: now,
        updated_at: now,
    };
    with_content_mut(tx, ns, BLOB, |blobs| {
        let mut b = blobs.create_bucket(digest.as_bytes())?;
        write_info(&mut b, &info)
    })?;
    Ok(info)
}

/// Updates a blob's labels (containerd's `Content.Update`): with no field paths the labels
/// are replaced; otherwise only `labels` and `labels.<key>` may be named. Size and creation
/// time are kept, the update time is now.
pub fn update<S: AsRef<str>>(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    info: &Info,
    field_paths: &[S],
) -> MetaResult<Info> {
    let mut updated = self::info(tx, ns, &info.digest)?;
    if field_paths.is_empty() {
        updated.labels = info.labels.clone();
    }
    for path in field_paths {
        let path = path.as_ref();
        if let Some(key) = path.strip_prefix("labels.") {
            let v = info.labels.get(key).cloned().unwrap_or_default();
            updated.labels.insert(key.to_string(), v);
        } else if path == "labels" {
            updated.labels = info.labels.clone();
        } else {
            return Err(MetaError::InvalidArgument(format!(
                "cannot update {path:?} field on content info {:?}: invalid argument",
                info.digest
            )));
        }
    }
    updated.labels.retain(|_, v| !v.is_empty());
    validate_info_labels(&updated.labels)?;
    updated.updated_at = Timestamp::now();
    with_content_mut(tx, ns, BLOB, |blobs| {
        let mut b = blobs
            .bucket_mut(updated.digest.as_bytes())
            .ok_or_else(|| blob_not_found(&updated.digest))?;
        write_info(&mut b, &updated)
    })?;
    Ok(updated)
}

/// Removes a blob's record from a namespace (containerd's `Content.Delete`; the backend
/// blob goes at the next garbage collection if no namespace records it).
pub fn delete_blob(tx: &mut WriteTx<'_, '_>, ns: &str, digest: &str) -> MetaResult<()> {
    if !exists(tx, ns, BLOB, digest) {
        return Err(blob_not_found(digest));
    }
    with_content_mut(tx, ns, BLOB, |blobs| {
        Ok(blobs.delete_bucket(digest.as_bytes())?)
    })
}

fn read_ingest<'tx, B: BucketApi<'tx>>(b: &B, ns: &str, reference: &str) -> MetaResult<Ingest> {
    let path = format!("v1/{ns}/content/ingests/{reference}");
    Ok(Ingest {
        reference: reference.to_string(),
        backend_ref: read_string(b, REF),
        expire_at: read_time(b, EXPIRE_AT, &path)?,
        expected: b
            .get(EXPECTED)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
    })
}

/// Records (or re-opens) an active write, as containerd's `Writer` does: a new reference
/// gets the backend ref `"<ns>/<seq>/<ref>"`, seq being the next sequence of the ingest's own
/// bucket; an existing one keeps its backend ref. `expires` (for writes no lease holds) and
/// `expected` (shared writes) are written when given. Returns the backend ref.
pub fn create_ingest(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    reference: &str,
    expires: Option<Timestamp>,
    expected: Option<&str>,
) -> MetaResult<String> {
    if reference.is_empty() {
        return Err(MetaError::InvalidArgument(
            "ref must not be empty: invalid argument".into(),
        ));
    }
    with_content_mut(tx, ns, INGESTS, |ingests| {
        let mut b = ingests.create_bucket_if_not_exists(reference.as_bytes())?;
        let backend_ref = match b.get(REF) {
            Some(r) => String::from_utf8_lossy(r).into_owned(),
            None => {
                let seq = b.next_sequence()?;
                let r = format!("{ns}/{seq}/{reference}");
                b.put(REF, r.as_bytes())?;
                r
            }
        };
        if let Some(t) = expires {
            write_time(&mut b, EXPIRE_AT, t)?;
        }
        if let Some(d) = expected {
            b.put(EXPECTED, d.as_bytes())?;
        }
        Ok(backend_ref)
    })
}

/// One active write's record; one without a backend ref is `NotFound`, as in containerd.
pub fn get_ingest<'tx>(tx: &impl Reader<'tx>, ns: &str, reference: &str) -> MetaResult<Ingest> {
    let ingest = with_content(tx, ns, INGESTS, |ingests| {
        let b = ingests
            .bucket(reference.as_bytes())
            .ok_or_else(|| ingest_not_found(reference))?;
        read_ingest(&b, ns, reference)
    })
    .unwrap_or_else(|| Err(ingest_not_found(reference)))?;
    if ingest.backend_ref.is_empty() {
        return Err(ingest_not_found(reference));
    }
    Ok(ingest)
}

/// Every active write's record of a namespace, in reference order.
pub fn list_ingests<'tx>(tx: &impl Reader<'tx>, ns: &str) -> MetaResult<Vec<Ingest>> {
    with_content(tx, ns, INGESTS, |ingests| {
        ingests
            .iter_buckets()
            .map(|(k, b)| read_ingest(&b, ns, &String::from_utf8_lossy(k)))
            .collect()
    })
    .unwrap_or_else(|| Ok(Vec::new()))
}

/// Removes an active write's record (containerd's `Abort` and the end of `Commit`) and
/// returns it, so the caller knows the backend ref to abort (when `expected` is unset).
pub fn delete_ingest(tx: &mut WriteTx<'_, '_>, ns: &str, reference: &str) -> MetaResult<Ingest> {
    let ingest = get_ingest(tx, ns, reference)?;
    with_content_mut(tx, ns, INGESTS, |ingests| {
        Ok(ingests.delete_bucket(reference.as_bytes())?)
    })?;
    Ok(ingest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::store::Store;
    #[allow(unused_imports)]
    use crate::metadata::test_support::labels as map;
    #[allow(unused_imports)]
    use crate::metadata::test_support::store;
    use corral_protocols::rpc::Code;

    const MANIFEST: &str =
        "sha256:6abfdf51754e174ff484e1bc94c12bae92afe269e6aa36d9f93b05ec496f13f6";
    const LAYER: &str = "sha256:bd45cf941c51781cb1b4cc87cb6a526cf6bb5e3e85bf34876acfb6992c3b1029";
    const CONFIG: &str = "sha256:e22153cfbf8f11421b36c58b76686beaedcc6a033ac908cc4647d3e57807f0f0";
    const CHAIN: &str = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";

    #[test]
    fn digests_validate_like_go_digest() {
        assert_eq!(validate_digest(MANIFEST), Ok(()));
        assert_eq!(
            validate_digest(&format!("sha512:{}", "a".repeat(128))),
            Ok(())
        );
        for (d, e) in [
            ("", "invalid checksum digest format"),
            ("sha256", "invalid checksum digest format"),
            (":abc", "invalid checksum digest format"),
            ("sha256:", "invalid checksum digest format"),
            ("sha256:abc", "invalid checksum digest length"),
            ("md5:abc", "unsupported digest algorithm"),
            ("MD5:abc", "invalid checksum digest format"),
        ] {
            assert_eq!(validate_digest(d), Err(e), "{d:?}");
        }
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(
            validate_digest(&upper),
            Err("invalid checksum digest format")
        );
    }

    #[test]
    fn blobs_add_info_list_update_delete() {
        let (_d, s) = store();
        let added = s
            .update(|tx| add_blob(tx, "default", CONFIG, 1234, &map(&[("a", "1"), ("e", "")])))
            .unwrap();
        assert_eq!(added.labels, map(&[("a", "1")]));
        assert_eq!(added.created_at, added.updated_at);
        assert_eq!(s.view(|tx| info(tx, "default", CONFIG)).unwrap(), added);
        let err = s
            .update(|tx| add_blob(tx, "default", CONFIG, 1, &BTreeMap::new()))
            .unwrap_err();
        assert_eq!(err.code(), Code::ALREADY_EXISTS);
        assert_eq!(err.to_string(), format!("content {CONFIG}: already exists"));
        // Another namespace has its own records.
        s.update(|tx| add_blob(tx, "edge", CONFIG, 1234, &BTreeMap::new()))
            .unwrap();
        s.update(|tx| add_blob(tx, "default", LAYER, 5, &BTreeMap::new()))
            .unwrap();
        let digests: Vec<_> = s
            .view(|tx| list(tx, "default"))
            .unwrap()
            .into_iter()
            .map(|i| i.digest)
            .collect();
        assert_eq!(digests, [LAYER, CONFIG]);

        let change = Info {
            digest: CONFIG.into(),
            size: 1,
            labels: map(&[("b", "2"), ("a", "")]),
            ..Default::default()
        };
        let got = s
            .update(|tx| update(tx, "default", &change, &["labels.b", "labels.a"]))
            .unwrap();
        assert_eq!(got.labels, map(&[("b", "2")]));
        assert_eq!(got.size, 1234);
        assert_eq!(got.created_at, added.created_at);
        assert!(got.updated_at >= added.updated_at);
        assert_eq!(s.view(|tx| info(tx, "default", CONFIG)).unwrap(), got);
        let got = s
            .update(|tx| {
                update::<&str>(
                    tx,
                    "default",
                    &Info {
                        labels: map(&[("c", "3")]),
                        ..change.clone()
                    },
                    &[],
                )
            })
            .unwrap();
        assert_eq!(got.labels, map(&[("c", "3")]));
        let got = s
            .update(|tx| update(tx, "default", &change, &["labels"]))
            .unwrap();
        assert_eq!(got.labels, map(&[("b", "2")]));
        let err = s
            .update(|tx| update(tx, "default", &change, &["size"]))
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        assert_eq!(
            err.to_string(),
            format!("cannot update \"size\" field on content info \"{CONFIG}\": invalid argument")
        );
        let bad = Info {
            labels: map(&[("", "x")]),
            ..change.clone()
        };
        let err = s
            .update(|tx| update(tx, "default", &bad, &["labels"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "info.Labels: label key must not be empty: invalid argument"
        );

        s.update(|tx| delete_blob(tx, "default", CONFIG)).unwrap();
        let err = s.view(|tx| info(tx, "default", CONFIG)).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(
            err.to_string(),
            format!("content digest {CONFIG}: not found")
        );
        let err = s
            .update(|tx| delete_blob(tx, "default", CONFIG))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        let err = s
            .update(|tx| update(tx, "nowhere", &change, &["labels"]))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(s.view(|tx| info(tx, "edge", CONFIG)).unwrap().size, 1234);
        assert!(s.view(|tx| list(tx, "nowhere")).unwrap().is_empty());
        let err = s
            .update(|tx| add_blob(tx, "default", "sha256:short", 1, &BTreeMap::new()))
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
    }

    #[test]
    fn blob_size_is_a_zigzag_varint() {
        let (_d, s) = store();
        s.update(|tx| add_blob(tx, "default", MANIFEST, 405, &BTreeMap::new()))
            .unwrap();
        let raw = s
            .view(|tx| {
                with_content(tx, "default", BLOB, |b| {
                    Ok(b.bucket(MANIFEST.as_bytes())
                        .unwrap()
                        .get(SIZE)
                        .unwrap()
                        .to_vec())
                })
                .unwrap()
            })
            .unwrap();
        assert_eq!(raw, [0xaa, 0x06]);
    }

    #[test]
    fn ingests() {
        let (_d, s) = store();
        let t = Timestamp::new(1_704_067_200, 5);
        let bref = s
            .update(|tx| create_ingest(tx, "default", "layer-1", Some(t), None))
            .unwrap();
        assert_eq!(bref, "default/1/layer-1");
        // Re-opening keeps the backend ref.
        let again = s
            .update(|tx| create_ingest(tx, "default", "layer-1", None, Some(LAYER)))
            .unwrap();
        assert_eq!(again, bref);
        let bref2 = s
            .update(|tx| create_ingest(tx, "edge", "cfg", None, None))
            .unwrap();
        assert_eq!(bref2, "edge/1/cfg");
        let got = s.view(|tx| get_ingest(tx, "default", "layer-1")).unwrap();
        assert_eq!(
            got,
            Ingest {
                reference: "layer-1".into(),
                backend_ref: bref.clone(),
                expire_at: Some(t),
                expected: Some(LAYER.into()),
            }
        );
        s.update(|tx| create_ingest(tx, "default", "a-first", None, None))
            .unwrap();
        let refs: Vec<_> = s
            .view(|tx| list_ingests(tx, "default"))
            .unwrap()
            .into_iter()
            .map(|i| (i.reference, i.backend_ref, i.expire_at))
            .collect();
        assert_eq!(
            refs,
            [
                ("a-first".to_string(), "default/1/a-first".to_string(), None),
                ("layer-1".to_string(), bref.clone(), Some(t)),
            ]
        );
        assert_eq!(
            s.update(|tx| delete_ingest(tx, "default", "layer-1"))
                .unwrap(),
            got
        );
        let err = s
            .view(|tx| get_ingest(tx, "default", "layer-1"))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(err.to_string(), "reference layer-1: not found");
        let err = s
            .update(|tx| delete_ingest(tx, "default", "layer-1"))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        // A recreated reference gets the next sequence of a new bucket: 1 again.
        let bref = s
            .update(|tx| create_ingest(tx, "default", "layer-1", None, None))
            .unwrap();
        assert_eq!(bref, "default/1/layer-1");
        let err = s
            .update(|tx| create_ingest(tx, "default", "", None, None))
            .unwrap_err();
        assert_eq!(err.to_string(), "ref must not be empty: invalid argument");
    }

    #[test]
    fn reads_containerds_blobs() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/containerd-1.6/meta.db");
        let s = Store::open_read_only(fixture).unwrap();
        for ns in ["default", "edge"] {
            let blobs = s.view(|tx| list(tx, ns)).unwrap();
            let got: Vec<_> = blobs.iter().map(|i| (i.digest.as_str(), i.size)).collect();
            assert_eq!(got, [(MANIFEST, 405), (LAYER, 1_028_485), (CONFIG, 400)]);
            assert_eq!(
                blobs[0].labels,
                map(&[
                    ("containerd.io/gc.ref.content.config", CONFIG),
                    ("containerd.io/gc.ref.content.l.0", LAYER),
                ])
            );
            assert_eq!(
                blobs[1].labels,
                map(&[("containerd.io/uncompressed", CHAIN)])
            );
            let mut config = map(&[("containerd.io/gc.ref.snapshot.overlayfs", CHAIN)]);
            if ns == "default" {
                config.insert("fixture".into(), "config".into());
            }
            assert_eq!(blobs[2].labels, config);
            for b in &blobs {
                assert!(b.created_at <= b.updated_at);
                assert!(b.created_at.secs > 1_700_000_000);
            }
            assert_eq!(&s.view(|tx| info(tx, ns, CONFIG)).unwrap(), &blobs[2]);
            assert!(s.view(|tx| list_ingests(tx, ns)).unwrap().is_empty());
        }
    }
}
