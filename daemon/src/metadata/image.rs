//! Images: `v1/<ns>/images/<name>/` with `createdat`, `updatedat`, `labels/`,
//! `annotations/` (the target descriptor's, kept at image level) and
//! `target/{digest,mediatype,size}` (containerd's `metadata/images.go`).

use std::collections::BTreeMap;

use bbolt_rs::{BucketApi, BucketRwApi};

use super::content::validate_digest;
use super::encoding::Timestamp;
use super::error::{MetaError, MetaResult};
use super::namespace;
use super::record::{
    read_map, read_string, read_time, read_varint, write_map, write_time, write_varint,
};
use super::schema::{
    ANNOTATIONS, CREATED_AT, DIGEST, IMAGES, LABELS, MEDIA_TYPE, SIZE, TARGET, UPDATED_AT,
};
use super::store::{Reader, WriteTx};
use super::validate::validate_labels;

/// An OCI descriptor, as much of it as containerd stores for an image target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    pub annotations: BTreeMap<String, String>,
}

/// An image record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub target: Descriptor,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn not_found(name: &str) -> MetaError {
    MetaError::NotFound(format!("image {name:?}"))
}

fn read_image<'tx, B: BucketApi<'tx>>(b: &B, ns: &str, name: &str) -> MetaResult<Image> {
    let path = format!("v1/{ns}/images/{name}");
    let t = b.bucket(TARGET).ok_or_else(|| {
        MetaError::Storage(format!("image {name:?}: unable to read target bucket"))
    })?;
    Ok(Image {
        name: name.to_string(),
        labels: read_map(b, LABELS),
        target: Descriptor {
            media_type: read_string(&t, MEDIA_TYPE),
            digest: read_string(&t, DIGEST),
            size: read_varint(&t, SIZE, &format!("{path}/target"))?.unwrap_or_default(),
            annotations: read_map(b, ANNOTATIONS),
        },
        created_at: read_time(b, CREATED_AT, &path)?.unwrap_or_default(),
        updated_at: read_time(b, UPDATED_AT, &path)?.unwrap_or_default(),
    })
}

fn write_image<'tx, B: BucketRwApi<'tx>>(b: &mut B, image: &Image) -> MetaResult<()> {
    write_time(b, CREATED_AT, image.created_at)?;
    write_time(b, UPDATED_AT, image.updated_at)?;
    write_map(b, LABELS, &image.labels)?;
    write_map(b, ANNOTATIONS, &image.target.annotations)?;
    let mut t = b.create_bucket_if_not_exists(TARGET)?;
    t.put(DIGEST, image.target.digest.as_bytes())?;
    t.put(MEDIA_TYPE, image.target.media_type.as_bytes())?;
    write_varint(&mut t, SIZE, image.target.size)
}

/// containerd's `validateImage`: a name, valid labels and a target with a valid digest, a
/// positive size and a media type.
pub fn validate(image: &Image) -> MetaResult<()> {
    if image.name.is_empty() {
        return Err(MetaError::InvalidArgument(
            "image name must not be empty: invalid argument".into(),
        ));
    }
    validate_labels(&image.labels)
        .map_err(|e| MetaError::InvalidArgument(format!("image.Labels: {e}")))?;
    let t = &image.target;
    if let Err(e) = validate_digest(&t.digest) {
        return Err(MetaError::InvalidArgument(format!(
            "Target.Digest {:?} invalid: {e}: invalid argument",
            t.digest
        )));
    }
    if t.size <= 0 {
        return Err(MetaError::InvalidArgument(
            "Target.Size must be greater than zero: invalid argument".into(),
        ));
    }
    if t.media_type.is_empty() {
        return Err(MetaError::InvalidArgument(
            "Target.MediaType must be set: invalid argument".into(),
        ));
    }
    Ok(())
}

/// One image.
pub fn get<'tx>(tx: &impl Reader<'tx>, ns: &str, name: &str) -> MetaResult<Image> {
    let v1 = tx.v1().ok_or_else(|| not_found(name))?;
    let nsb = v1.bucket(ns.as_bytes()).ok_or_else(|| not_found(name))?;
    let images = nsb.bucket(IMAGES).ok_or_else(|| not_found(name))?;
    let b = images
        .bucket(name.as_bytes())
        .ok_or_else(|| not_found(name))?;
    read_image(&b, ns, name)
}

/// Every image of a namespace, in name order.
pub fn list<'tx>(tx: &impl Reader<'tx>, ns: &str) -> MetaResult<Vec<Image>> {
    let Some(v1) = tx.v1() else {
        return Ok(Vec::new());
    };
    let Some(nsb) = v1.bucket(ns.as_bytes()) else {
        return Ok(Vec::new());
    };
    let Some(images) = nsb.bucket(IMAGES) else {
        return Ok(Vec::new());
    };
    images
        .iter_buckets()
        .map(|(name, b)| read_image(&b, ns, &String::from_utf8_lossy(name)))
        .collect()
}

fn exists<'tx>(tx: &impl Reader<'tx>, ns: &str, name: &str) -> bool {
    let Some(v1) = tx.v1() else { return false };
    let Some(n) = v1.bucket(ns.as_bytes()) else {
        return false;
    };
    n.bucket(IMAGES)
        .is_some_and(|i| i.bucket(name.as_bytes()).is_some())
}

/// Stores `image` (with the bucket written from scratch, created and updated times given).
fn put(tx: &mut WriteTx<'_, '_>, ns: &str, image: &Image, replace: bool) -> MetaResult<()> {
    namespace::ensure(tx, ns)?;
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1
        .bucket_mut(ns.as_bytes())
        .ok_or_else(|| MetaError::Storage(format!("namespace {ns:?} vanished")))?;
    let mut images = nsb.create_bucket_if_not_exists(IMAGES)?;
    let mut b = if replace {
        images
            .bucket_mut(image.name.as_bytes())
            .ok_or_else(|| not_found(&image.name))?
    } else {
        images.create_bucket(image.name.as_bytes())?
    };
    write_image(&mut b, image)
}

/// Creates an image (containerd's `Images.Create`): created and updated times are now.
pub fn create(tx: &mut WriteTx<'_, '_>, ns: &str, image: &Image) -> MetaResult<Image> {
    validate(image)?;
    if exists(tx, ns, &image.name) {
        return Err(MetaError::AlreadyExists(format!("image {:?}", image.name)));
    }
    let now = Timestamp::now();
    let image = Image {
        created_at: now,
        updated_at: now,
        ..image.clone()
    };
    put(tx, ns, &image, false)?;
    Ok(image)
}

/// Updates an image (containerd's `Images.Update`). With no field paths every mutable field
/// is replaced; otherwise only `labels`, `labels.<key>`, `annotations`, `annotations.<key>`
/// and `target` (as a whole). The creation time is kept, the update time is now.
pub fn update<S: AsRef<str>>(
    tx: &mut WriteTx<'_, '_>,
    ns: &str,
    image: &Image,
    field_paths: &[S],
) -> MetaResult<Image> {
    if image.name.is_empty() {
        return Err(MetaError::InvalidArgument(
            "image name is required for update: invalid argument".into(),
        ));
    }
    let mut updated = get(tx, ns, &image.name)?;
    let created_at = updated.created_at;
    if field_paths.is_empty() {
        updated = image.clone();
    }
    for path in field_paths {
        let path = path.as_ref();
        if let Some(key) = path.strip_prefix("labels.") {
            let v = image.labels.get(key).cloned().unwrap_or_default();
            updated.labels.insert(key.to_string(), v);
            continue;
        }
        if let Some(key) = path.strip_prefix("annotations.") {
            let v = image
                .target
                .annotations
                .get(key)
                .cloned()
                .unwrap_or_default();
            updated.target.annotations.insert(key.to_string(), v);
            continue;
        }
        match path {
            "labels" => updated.labels = image.labels.clone(),
            "target" => updated.target = image.target.clone(),
            "annotations" => updated.target.annotations = image.target.annotations.clone(),
            _ => {
                return Err(MetaError::InvalidArgument(format!(
                    "cannot update {path:?} field on image {:?}: invalid argument",
                    image.name
                )))
            }
        }
    }
    // Empty values are not stored: what is returned is what a read gives back.
    updated.labels.retain(|_, v| !v.is_empty());
    updated.target.annotations.retain(|_, v| !v.is_empty());
    validate(&updated)?;
    updated.created_at = created_at;
    updated.updated_at = Timestamp::now();
    put(tx, ns, &updated, true)?;
    Ok(updated)
}

/// Deletes an image.
pub fn delete(tx: &mut WriteTx<'_, '_>, ns: &str, name: &str) -> MetaResult<()> {
    if !exists(tx, ns, name) {
        return Err(not_found(name));
    }
    let mut v1 = tx.v1_mut()?;
    let mut nsb = v1
        .bucket_mut(ns.as_bytes())
        .ok_or_else(|| not_found(name))?;
    let mut images = nsb.bucket_mut(IMAGES).ok_or_else(|| not_found(name))?;
    images.delete_bucket(name.as_bytes())?;
    Ok(())
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
    const NAME: &str = "docker.io/corral/busybox:latest";

    fn busybox() -> Image {
        Image {
            name: NAME.into(),
            labels: map(&[("app", "web")]),
            target: Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: MANIFEST.into(),
                size: 405,
                annotations: map(&[("org.opencontainers.image.ref.name", "latest")]),
            },
            ..Default::default()
        }
    }

    #[test]
    fn create_get_list_delete() {
        let (_d, s) = store();
        let created = s.update(|tx| create(tx, "default", &busybox())).unwrap();
        assert_ne!(created.created_at, Timestamp::default());
        assert_eq!(created.created_at, created.updated_at);
        assert_eq!(s.view(|tx| get(tx, "default", NAME)).unwrap(), created);
        let err = s
            .update(|tx| create(tx, "default", &busybox()))
            .unwrap_err();
        assert_eq!(err.code(), Code::ALREADY_EXISTS);
        assert_eq!(err.to_string(), format!("image \"{NAME}\": already exists"));

        let mut other = busybox();
        other.name = "a/first:1".into();
        s.update(|tx| create(tx, "default", &other)).unwrap();
        let names: Vec<_> = s
            .view(|tx| list(tx, "default"))
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["a/first:1", NAME]);
        assert!(s.view(|tx| list(tx, "nowhere")).unwrap().is_empty());

        s.update(|tx| delete(tx, "default", NAME)).unwrap();
        let err = s.view(|tx| get(tx, "default", NAME)).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        assert_eq!(err.to_string(), format!("image \"{NAME}\": not found"));
        let err = s.update(|tx| delete(tx, "default", NAME)).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        let err = s.update(|tx| delete(tx, "other", NAME)).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
    }

    #[test]
    fn stored_like_containerd() {
        let (_d, s) = store();
        s.update(|tx| create(tx, "default", &busybox())).unwrap();
        let (size, annotation, label) = s
            .view(|tx| {
                let v1 = tx.v1().unwrap();
                let n = v1.bucket(b"default").unwrap();
                let i = n.bucket(IMAGES).unwrap();
                let b = i.bucket(NAME.as_bytes()).unwrap();
                let t = b.bucket(TARGET).unwrap();
                let a = b.bucket(ANNOTATIONS).unwrap();
                let l = b.bucket(LABELS).unwrap();
                Ok((
                    t.get(SIZE).unwrap().to_vec(),
                    a.get(b"org.opencontainers.image.ref.name")
                        .unwrap()
                        .to_vec(),
                    l.get(b"app").unwrap().to_vec(),
                ))
            })
            .unwrap();
        assert_eq!(size, [0xaa, 0x06]);
        assert_eq!(annotation, b"latest");
        assert_eq!(label, b"web");
    }

    #[test]
    fn update_with_masks() {
        let (_d, s) = store();
        let created = s.update(|tx| create(tx, "default", &busybox())).unwrap();
        let mut change = busybox();
        change.labels = map(&[("tier", "edge"), ("app", "")]);
        change.target.annotations = map(&[("extra", "1")]);
        change.target.size = 999;

        let got = s
            .update(|tx| update(tx, "default", &change, &["labels.tier", "labels.app"]))
            .unwrap();
        assert_eq!(got.labels, map(&[("tier", "edge")]));
        assert_eq!(got.target, busybox().target);
        assert_eq!(got.created_at, created.created_at);
        assert!(got.updated_at >= created.updated_at);
        assert_eq!(s.view(|tx| get(tx, "default", NAME)).unwrap(), got);

        let got = s
            .update(|tx| update(tx, "default", &change, &["annotations.extra"]))
            .unwrap();
        assert_eq!(
            got.target.annotations,
            map(&[
                ("extra", "1"),
                ("org.opencontainers.image.ref.name", "latest")
            ])
        );
        let got = s
            .update(|tx| update(tx, "default", &change, &["annotations"]))
            .unwrap();
        assert_eq!(got.target.annotations, map(&[("extra", "1")]));
        assert_eq!(got.target.size, 405);
        let got = s
            .update(|tx| update(tx, "default", &change, &["target", "labels"]))
            .unwrap();
        assert_eq!(got.target.size, 999);
        assert_eq!(got.labels, map(&[("tier", "edge")]));
        assert_eq!(s.view(|tx| get(tx, "default", NAME)).unwrap(), got);

        // No mask: everything mutable is replaced.
        let got = s
            .update(|tx| update::<&str>(tx, "default", &busybox(), &[]))
            .unwrap();
        assert_eq!(got.labels, busybox().labels);
        assert_eq!(got.target, busybox().target);
        assert_eq!(got.created_at, created.created_at);

        let err = s
            .update(|tx| update(tx, "default", &change, &["name"]))
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        assert_eq!(
            err.to_string(),
            format!("cannot update \"name\" field on image \"{NAME}\": invalid argument")
        );
        let mut missing = busybox();
        missing.name = "nope".into();
        let err = s
            .update(|tx| update(tx, "default", &missing, &["labels"]))
            .unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND);
        // A target made invalid by an update is refused and nothing changes.
        let mut bad = busybox();
        bad.target.digest = "sha256:nope".into();
        let err = s
            .update(|tx| update(tx, "default", &bad, &["target"]))
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT);
        assert_eq!(
            s.view(|tx| get(tx, "default", NAME)).unwrap().target,
            busybox().target
        );
    }

    #[test]
    fn invalid_images_are_refused() {
        let (_d, s) = store();
        type Change = Box<dyn Fn(&mut Image)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|i| i.name.clear()),
                "image name must not be empty: invalid argument",
            ),
            (
                Box::new(|i| i.target.digest = "sha256:abc".into()),
                "Target.Digest \"sha256:abc\" invalid: invalid checksum digest length: invalid argument",
            ),
            (
                Box::new(|i| i.target.digest = "nodigest".into()),
                "Target.Digest \"nodigest\" invalid: invalid checksum digest format: invalid argument",
            ),
            (
                Box::new(|i| i.target.digest = "md5:abcd".into()),
                "Target.Digest \"md5:abcd\" invalid: unsupported digest algorithm: invalid argument",
            ),
            (
                Box::new(|i| i.target.digest = MANIFEST.to_uppercase().replace("SHA", "sha")),
                "invalid checksum digest format",
            ),
            (
                Box::new(|i| i.target.size = 0),
                "Target.Size must be greater than zero: invalid argument",
            ),
            (
                Box::new(|i| i.target.media_type.clear()),
                "Target.MediaType must be set: invalid argument",
            ),
            (
                Box::new(|i| {
                    i.labels.insert(String::new(), "x".into());
                }),
                "image.Labels: label key must not be empty: invalid argument",
            ),
        ];
        for (change, msg) in cases {
            let mut image = busybox();
            change(&mut image);
            let err = s.update(|tx| create(tx, "default", &image)).unwrap_err();
            assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{msg}");
            assert!(err.to_string().contains(msg), "{err} / {msg}");
        }
        assert!(s.view(|tx| list(tx, "default")).unwrap().is_empty());
    }

    #[test]
    fn reads_containerds_images() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/containerd-1.6/meta.db");
        let s = Store::open_read_only(fixture).unwrap();
        for ns in ["default", "edge"] {
            let images = s.view(|tx| list(tx, ns)).unwrap();
            assert_eq!(images.len(), 1);
            let image = &images[0];
            assert_eq!(image.name, NAME);
            assert!(image.labels.is_empty());
            assert_eq!(
                image.target,
                Descriptor {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    digest: MANIFEST.into(),
                    size: 405,
                    annotations: map(&[
                        ("io.containerd.image.name", NAME),
                        ("org.opencontainers.image.ref.name", "latest"),
                    ]),
                }
            );
            assert_eq!(image.created_at, image.updated_at);
            assert!(image.created_at.secs > 1_700_000_000);
            assert_eq!(&s.view(|tx| get(tx, ns, NAME)).unwrap(), image);
        }
    }
}
