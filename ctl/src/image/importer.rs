//! Reading an image archive into the content store, as containerd's
//! `images/archive.ImportIndex` does: every regular file of the tar streams into a blob
//! (reference `tar-<name>`), then the archive is read as an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/`) or, without `oci-layout`, as a `docker save` archive
//! (`manifest.json`), for which the Docker schema 2 manifests and the index containerd would
//! write are written, byte for byte, so their digests are containerd's.
//!
//! Unlike containerd, a blob under `blobs/<algorithm>/<hex>` must have that digest: the
//! daemon is told it up front (so a blob it already has is not sent again) and an archive
//! whose blob does not match is refused.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};

use super::content::{ContentStore, WriteRequest};
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::gojson::Object;
use super::gopath;
use super::handlers::config_platform;
use super::media_types as mt;
use super::ocispec::{
    descriptors_go_json, from_json, Descriptor, ImageLayout, Index, IMAGE_LAYOUT_FILE,
    IMAGE_LAYOUT_VERSION,
};
use super::platforms::default_spec;
use super::progress::Observer;
use super::reference::{normalize_docker_ref, oci_reference_name};

/// The largest `oci-layout` or `manifest.json` read (containerd's `jsonLimit`).
const JSON_LIMIT: u64 = 20 << 20;
/// The label that names a compressed layer's uncompressed digest.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// One image of a `docker save` `manifest.json`.
#[derive(Debug, Clone, Default)]
struct DockerManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Reads `manifest.json` as Go reads it into containerd's struct: field names match without
/// regard to case, `null` is nothing.
fn parse_docker_manifests(data: &[u8]) -> Result<Option<Vec<DockerManifest>>> {
    let value: serde_json::Value = serde_json::from_slice(data).map_err(|e| {
        ImageError::InvalidArgument(format!("untar manifest \"manifest.json\": {e}"))
    })?;
    let items = match value {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Array(items) => items,
        _ => {
            return Err(ImageError::InvalidArgument(
                "untar manifest \"manifest.json\": not an array".into(),
            ))
        }
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for item in items {
        let mut m = DockerManifest::default();
        if let serde_json::Value::Object(fields) = item {
            for (k, v) in &fields {
                match k.to_ascii_lowercase().as_str() {
                    "config" => m.config = v.as_str().unwrap_or_default().to_string(),
                    "repotags" => m.repo_tags = strings(v),
                    "layers" => m.layers = strings(v),
                    _ => {}
                }
            }
        }
        out.push(m);
    }
    Ok(Some(out))
}

/// The digest a blob's name in an OCI layout promises (`blobs/sha256/<hex>`). Other
/// algorithms are imported as containerd does, unchecked: corrald stores sha256 blobs.
fn named_digest(name: &str) -> Option<Digest> {
    let hex = name.strip_prefix("blobs/sha256/")?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// A stream error, said plainly when the archive simply ends too soon.
fn archive_error(context: String, e: io::Error) -> ImageError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ImageError::InvalidArgument(format!(
            "{context}: unexpected EOF: the archive is truncated"
        ))
    } else {
        ImageError::io(context, e)
    }
}

/// Reads the archive `reader` into `store`; the descriptor of the index it holds (the
/// layout's `index.json`, or the one written for a Docker archive).
pub fn import_index(
    store: &dyn ContentStore,
    reader: &mut dyn Read,
    observer: &mut dyn Observer,
) -> Result<Descriptor> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| archive_error("reading the archive".into(), e))?;
    let mut layout: Option<ImageLayout> = None;
    let mut docker: Option<Vec<DockerManifest>> = None;
    let mut symlinks: BTreeMap<String, String> = BTreeMap::new();
    let mut blobs: HashMap<String, Descriptor> = HashMap::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_error("reading the archive".into(), e))?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            symlinks.insert(
                raw_name.clone(),
                gopath::join(&[&gopath::dir(&raw_name), &link]),
            );
        }
        if kind != tar::EntryType::Regular {
            if !kind.is_dir() {
                log::debug!("file type ignored: {raw_name}");
            }
            continue;
        }
        let name = gopath::clean(&raw_name);
        let size = entry.size() as i64;
        if name == IMAGE_LAYOUT_FILE {
            let data = read_json(&mut entry, size, &raw_name)?;
            layout = Some(from_json(&data, &format!("untar oci layout {raw_name:?}"))?);
        } else if name == "manifest.json" {
            let data = read_json(&mut entry, size, &raw_name)?;
            docker = parse_docker_manifests(&data)?;
        } else {
            let req = WriteRequest {
                reference: format!("tar-{name}"),
                size,
                expected: named_digest(&name),
                labels: BTreeMap::new(),
            };
            let reference = req.reference.clone();
            let mut body = Exact {
                inner: &mut entry,
                left: size.max(0) as u64,
            };
            let written = store
                .write(&req, &mut body, &mut |p| observer.blob(&reference, p))
                .map_err(|e| match e {
                    ImageError::Io { source, .. } => {
                        archive_error(format!("failed to ingest {raw_name:?}"), source)
                    }
                    e => e.context(format_args!("failed to ingest {raw_name:?}")),
                })?;
            blobs.insert(name, Descriptor::new("", written.digest().as_str(), size));
        }
    }

    if let Some(layout) = layout.filter(|l| !l.version.is_empty()) {
        if layout.version != IMAGE_LAYOUT_VERSION {
            return Err(ImageError::InvalidArgument(format!(
                "unsupported OCI version {}",
                layout.version
            )));
        }
        let mut idx = blobs.remove("index.json").ok_or_else(|| {
            ImageError::InvalidArgument(format!(
                "missing index.json in OCI layout {IMAGE_LAYOUT_VERSION}"
            ))
        })?;
        idx.media_type = mt::OCI_INDEX.to_string();
        return Ok(idx);
    }
    let Some(manifests) = docker else {
        return Err(ImageError::InvalidArgument(
            "unrecognized image format".into(),
        ));
    };
    for (name, target) in &symlinks {
        let desc = blobs.get(target).cloned().ok_or_else(|| {
            ImageError::InvalidArgument(format!(
                "no target for symlink layer from {name:?} to {target:?}"
            ))
        })?;
        blobs.insert(name.clone(), desc);
    }
    let mut index: Vec<Descriptor> = Vec::new();
    for m in &manifests {
        let mut config = blobs.get(&m.config).cloned().ok_or_else(|| {
            ImageError::InvalidArgument(format!("image config {:?} not found", m.config))
        })?;
        config.media_type = mt::DOCKER_CONFIG.to_string();
        let layers = resolve_layers(store, &m.layers, &blobs)
            .map_err(|e| e.context("failed to resolve layers"))?;
        let mut json = String::new();
        Object::start(&mut json)
            .int("schemaVersion", 2)
            .str("mediaType", mt::DOCKER_MANIFEST)
            .raw("config", &config.to_go_json())
            .raw("layers", &descriptors_go_json(&layers, false))
            .end();
        let mut desc = write_document(store, json.as_bytes(), mt::DOCKER_MANIFEST)
            .map_err(|e| e.context("write docker manifest"))?;
        let mut platform =
            config_platform(store, &config).map_err(|e| e.context("unable to resolve platform"))?;
        if platform.os == "windows" && platform.os_version.is_empty() {
            platform.os_version = default_spec().os_version;
        }
        desc.platform = Some(platform);
        if m.repo_tags.is_empty() {
            index.push(desc);
        } else {
            for tag in &m.repo_tags {
                let normalized = normalize_docker_ref(tag)?;
                let mut tagged = desc.clone();
                tagged.annotations = BTreeMap::from([
                    (mt::ANNOTATION_IMAGE_NAME.to_string(), normalized.clone()),
                    (
                        mt::ANNOTATION_REF_NAME.to_string(),
                        oci_reference_name(&normalized),
                    ),
                ]);
                index.push(tagged);
            }
        }
    }
    write_document(store, Index::go_json(&index).as_bytes(), mt::OCI_INDEX)
}

/// An entry's bytes, failing with `UnexpectedEof` when the archive ends before the entry
/// does (the tar reader itself just stops).
struct Exact<'a> {
    inner: &'a mut dyn Read,
    left: u64,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads a small JSON file of the archive (at most [`JSON_LIMIT`] bytes, as containerd).
fn read_json(entry: &mut dyn Read, size: i64, name: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    Exact {
        inner: entry,
        left: size.max(0) as u64,
    }
    .take(JSON_LIMIT)
    .read_to_end(&mut data)
    .map_err(|e| archive_error(format!("untar {name:?}"), e))?;
    Ok(data)
}

/// Writes a document containerd's importer writes (`writeManifest`), under reference
/// `manifest-<digest>`; its descriptor.
pub fn write_document(
    store: &dyn ContentStore,
    data: &[u8],
    media_type: &str,
) -> Result<Descriptor> {
    let digest = Digest::from_bytes(data);
    let req = WriteRequest {
        reference: format!("manifest-{digest}"),
        size: data.len() as i64,
        expected: Some(digest.clone()),
        labels: BTreeMap::new(),
    };
    let mut src: &[u8] = data;
    store.write(&req, &mut src, &mut |_| {})?;
    Ok(Descriptor::new(
        media_type,
        digest.as_str(),
        data.len() as i64,
    ))
}

/// Whether `head` (a blob's first bytes) starts a compressed stream containerd recognizes
/// (gzip or zstd).
fn is_compressed(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b, 0x08]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// The first `n` bytes of a blob (fewer when it is shorter).
fn head(store: &dyn ContentStore, digest: &str, n: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    store
        .reader(digest, 0)?
        .take(n as u64)
        .read_to_end(&mut buf)
        .map_err(|e| super::content::read_error(digest, e))?;
    Ok(buf)
}

/// containerd's `resolveLayers`: each layer file's descriptor with the media type its bytes
/// say; a compressed blob the store already labels as this layer's compressed form is used
/// instead of the uncompressed file.
fn resolve_layers(
    store: &dyn ContentStore,
    files: &[String],
    blobs: &HashMap<String, Descriptor>,
) -> Result<Vec<Descriptor>> {
    let mut layers = Vec::with_capacity(files.len());
    let mut by_digest: HashMap<String, usize> = HashMap::new();
    let mut filters = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let desc = blobs
            .get(f)
            .cloned()
            .ok_or_else(|| ImageError::InvalidArgument(format!("layer {f:?} not found")))?;
        by_digest.insert(desc.digest.clone(), i);
        filters.push(format!("labels.\"{UNCOMPRESSED_LABEL}\"=={}", desc.digest));
        layers.push(desc);
    }
    let known = store
        .list(&filters)
        .map_err(|e| e.context("failure checking for compressed blobs"))?;
    for info in known {
        let Some(uncompressed) = info.labels.get(UNCOMPRESSED_LABEL) else {
            continue;
        };
        let Some(&i) = by_digest.get(uncompressed) else {
            continue;
        };
        let first = head(store, &info.digest, 10)
            .map_err(|e| e.context("failed to detect media type of layer"))?;
        layers[i].digest = info.digest.clone();
        layers[i].size = info.size;
        layers[i].media_type = if first.len() < 10 || !is_compressed(&first) {
            mt::DOCKER_LAYER
        } else {
            mt::DOCKER_LAYER_GZIP
        }
        .to_string();
    }
    for (i, layer) in layers.iter_mut().enumerate() {
        if !layer.media_type.is_empty() {
            continue;
        }
        let first = head(store, &layer.digest, 10).map_err(|e| {
            e.context(format_args!(
                "failed to open {:?} ({})",
                files[i], layer.digest
            ))
        })?;
        layer.media_type = if is_compressed(&first) {
            mt::DOCKER_LAYER_GZIP
        } else {
            mt::DOCKER_LAYER
        }
        .to_string();
    }
    Ok(layers)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::content::memory::MemoryStore;
    use crate::image::content::read_blob;
    use crate::image::progress::Quiet;

    /// A tar of `(name, data)` files, plus symlinks `(name, target)`.
    pub fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        for (name, target) in links {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    pub const CONFIG: &[u8] =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf"]}}"#;

    #[test]
    fn oci_layouts_give_their_index() {
        let store = MemoryStore::default();
        let config_digest = Digest::from_bytes(CONFIG);
        let path = format!("blobs/sha256/{}", config_digest.encoded());
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let tar = tar_of(
            &[
                ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                ("./index.json", index),
                (&path, CONFIG),
            ],
            &[],
        );
        let desc = import_index(&store, &mut tar.as_slice(), &mut Quiet).unwrap();
        assert_eq!(desc.media_type, mt::OCI_INDEX);
        assert_eq!(desc.digest, Digest::from_bytes(index).as_str());
        assert!(store.info(config_digest.as_str()).is_ok());
        assert_eq!(
            store.writes.borrow().as_slice(),
            ["tar-index.json".to_string(), format!("tar-{path}")]
        );
    }

    #[test]
    fn a_blob_that_lies_about_its_digest_is_refused() {
        let store = MemoryStore::default();
        let wrong = format!("blobs/sha256/{}", Digest::from_bytes(b"other").encoded());
        let tar = tar_of(
            &[
                ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                (&wrong, CONFIG),
            ],
            &[],
        );
        let err = import_index(&store, &mut tar.as_slice(), &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("failed to ingest"), "{err}");
        assert!(err.to_string().contains("not the expected"), "{err}");
        assert!(store.blobs.borrow().is_empty());
    }

    #[test]
    fn truncated_archives_are_refused() {
        let store = MemoryStore::default();
        let big = vec![7u8; 10_000];
        let tar = tar_of(
            &[
                ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                ("blobs/x", &big),
            ],
            &[],
        );
        let cut = &tar[..3000];
        let err = import_index(&store, &mut &cut[..], &mut Quiet).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn other_layouts_are_refused() {
        let store = MemoryStore::default();
        let tar = tar_of(&[("README", b"hi")], &[]);
        let err = import_index(&store, &mut tar.as_slice(), &mut Quiet).unwrap_err();
        assert_eq!(err.to_string(), "unrecognized image format");
        let tar = tar_of(&[("oci-layout", br#"{"imageLayoutVersion":"2.0.0"}"#)], &[]);
        let err = import_index(&store, &mut tar.as_slice(), &mut Quiet).unwrap_err();
        assert_eq!(err.to_string(), "unsupported OCI version 2.0.0");
        let tar = tar_of(&[("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)], &[]);
        let err = import_index(&store, &mut tar.as_slice(), &mut Quiet).unwrap_err();
        assert_eq!(err.to_string(), "missing index.json in OCI layout 1.0.0");
    }

    #[test]
    fn docker_archives_become_containerds_manifests() {
        let store = MemoryStore::default();
        let layer = b"not really a tar, but uncompressed";
        let manifest_json = br#"[{"Config":"cfg.json","RepoTags":["busybox:latest","corral/bb:1"],"Layers":["abc/layer.tar","link/layer.tar"]}]"#;
        let tar = tar_of(
            &[
                ("manifest.json", manifest_json),
                ("cfg.json", CONFIG),
                ("abc/layer.tar", layer),
                ("abc/VERSION", b"1.0"),
            ],
            &[("link/layer.tar", "../abc/layer.tar")],
        );
        let idx = import_index(&store, &mut tar.as_slice(), &mut Quiet).unwrap();
        assert_eq!(idx.media_type, mt::OCI_INDEX);
        let index: Index = from_json(&read_blob(&store, &idx).unwrap(), "index").unwrap();
        assert_eq!(index.manifests.len(), 2);
        let m = &index.manifests[0];
        assert_eq!(m.media_type, mt::DOCKER_MANIFEST);
        assert_eq!(
            m.annotations[mt::ANNOTATION_IMAGE_NAME],
            "docker.io/library/busybox:latest"
        );
        assert_eq!(m.annotations[mt::ANNOTATION_REF_NAME], "latest");
        assert_eq!(
            index.manifests[1].annotations[mt::ANNOTATION_IMAGE_NAME],
            "docker.io/corral/bb:1"
        );
        let p = m.platform.as_ref().unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "amd64"));
        let layer_digest = Digest::from_bytes(layer);
        let config_digest = Digest::from_bytes(CONFIG);
        let expected = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer_digest}","size":{}}},{{"mediaType":"{}","digest":"{layer_digest}","size":{}}}]}}"#,
            mt::DOCKER_MANIFEST,
            mt::DOCKER_CONFIG,
            CONFIG.len(),
            mt::DOCKER_LAYER,
            layer.len(),
            mt::DOCKER_LAYER,
            layer.len()
        );
        assert_eq!(m.digest, Digest::from_bytes(expected.as_bytes()).as_str());
        let index_json = format!(
            "{{\"schemaVersion\":2,\"manifests\":[{},{}]}}",
            m.to_go_json(),
            index.manifests[1].to_go_json()
        );
        assert_eq!(
            idx.digest,
            Digest::from_bytes(index_json.as_bytes()).as_str()
        );
    }

    #[test]
    fn docker_layers_take_a_known_compressed_blob() {
        let store = MemoryStore::default();
        let layer = b"uncompressed layer bytes";
        let gz = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3];
        let gz_digest = store.put(&gz);
        let labels = BTreeMap::from([(
            UNCOMPRESSED_LABEL.to_string(),
            Digest::from_bytes(layer).to_string(),
        )]);
        store
            .update(
                &gz_digest,
                &labels,
                &[format!("labels.{UNCOMPRESSED_LABEL}")],
            )
            .unwrap();
        let tar = tar_of(
            &[
                (
                    "manifest.json",
                    br#"[{"Config":"c.json","Layers":["l.tar"]}]"#,
                ),
                ("c.json", CONFIG),
                ("l.tar", layer),
            ],
            &[],
        );
        let idx = import_index(&store, &mut tar.as_slice(), &mut Quiet).unwrap();
        let index: Index = from_json(&read_blob(&store, &idx).unwrap(), "index").unwrap();
        assert!(index.manifests[0].annotations.is_empty());
        let manifest: crate::image::ocispec::Manifest =
            from_json(&read_blob(&store, &index.manifests[0]).unwrap(), "m").unwrap();
        assert_eq!(manifest.layers[0].digest, gz_digest);
        assert_eq!(manifest.layers[0].media_type, mt::DOCKER_LAYER_GZIP);
        assert_eq!(manifest.layers[0].size, gz.len() as i64);
    }
}
