//! containerd's `Client.Import` (`import.go`): read an archive into the content store, walk
//! its index for the platforms asked for, put containerd's garbage-collection labels on each
//! index and manifest (`images.SetChildrenLabels`), and record an image for every name the
//! index gives (`io.containerd.image.name`, or `org.opencontainers.image.ref.name` through
//! the name translator), for each manifest's digest when asked, and for the index itself
//! under `--index-name`.
//!
//! The caller holds the lease the content is written under (in the store's context).

use std::collections::BTreeMap;
use std::io::Read;

use super::content::{read_blob, ContentStore};
use super::error::{ImageError, Result};
use super::handlers::{children, filter_platforms, walk, Visit};
use super::image_store::{Image, ImageStore};
use super::importer::import_index;
use super::media_types::{child_gc_label, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use super::ocispec::{from_json, Descriptor, Index};
use super::platforms::Matcher;
use super::progress::Observer;
use super::reference::RefTranslator;

/// What `ctr images import`'s flags ask of an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Turns OCI ref names into image names (`WithImageRefTranslator`).
    pub ref_translator: Option<RefTranslator>,
    /// Also name each manifest `<prefix>@<digest>` (`WithDigestRef(DigestTranslator)`).
    pub digest_prefix: Option<String>,
    /// No digest name for a manifest that got a name (`--skip-digest-for-named`).
    pub skip_digest_for_named: bool,
    /// Name the index itself (`WithIndexName`).
    pub index_name: Option<String>,
    /// Which platforms' manifests to label and keep (`platforms.All` for
    /// `--all-platforms`).
    pub platforms: Matcher,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            ref_translator: None,
            digest_prefix: None,
            skip_digest_for_named: false,
            index_name: None,
            platforms: Matcher::default_host(),
        }
    }
}

/// containerd's `imageName`: the full-name annotation, else the OCI ref name translated.
fn image_name(annotations: &BTreeMap<String, String>, t: Option<&RefTranslator>) -> String {
    if let Some(name) = annotations
        .get(ANNOTATION_IMAGE_NAME)
        .filter(|n| !n.is_empty())
    {
        return name.clone();
    }
    match annotations
        .get(ANNOTATION_REF_NAME)
        .filter(|n| !n.is_empty())
    {
        Some(r) => match t {
            Some(t) => t.translate(r),
            None => r.clone(),
        },
        None => String::new(),
    }
}

/// containerd's `SetChildrenLabels`: labels `parent` with a reference to each child.
pub fn set_children_labels(
    store: &dyn ContentStore,
    parent: &Descriptor,
    children: &[Descriptor],
) -> Result<()> {
    if children.is_empty() {
        return Ok(());
    }
    let mut labels = BTreeMap::new();
    let mut fields = Vec::new();
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for child in children {
        let base = child_gc_label(&child.media_type);
        let n = counts.entry(base).or_insert(0);
        let key = if *n > 0 || base.ends_with('.') {
            format!("{base}{n}")
        } else {
            base.to_string()
        };
        *n += 1;
        fields.push(format!("labels.{key}"));
        labels.insert(key, child.digest.clone());
    }
    store.update(&parent.digest, &labels, &fields)?;
    Ok(())
}

/// Imports the archive `reader`: the images it names, created or re-pointed.
pub fn import(
    store: &dyn ContentStore,
    images: &dyn ImageStore,
    reader: &mut dyn Read,
    opts: &ImportOptions,
    observer: &mut dyn Observer,
) -> Result<Vec<Image>> {
    let index = import_index(store, reader, observer)?;
    let mut imgs: Vec<Image> = Vec::new();
    if let Some(name) = &opts.index_name {
        imgs.push(Image::new(name, index.clone()));
    }
    let mut found_children = false;
    walk(
        &mut |desc| {
            let kids = if desc.digest == index.digest {
                let data = read_blob(store, desc)?;
                let idx: Index = from_json(&data, "index.json")?;
                for m in &idx.manifests {
                    let name = image_name(&m.annotations, opts.ref_translator.as_ref());
                    if !name.is_empty() {
                        imgs.push(Image::new(&name, m.clone()));
                    }
                    if opts.skip_digest_for_named && !name.is_empty() {
                        continue;
                    }
                    if let Some(prefix) = &opts.digest_prefix {
                        imgs.push(Image::new(&format!("{prefix}@{}", m.digest), m.clone()));
                    }
                }
                idx.manifests
            } else {
                children(store, desc)?
            };
            let kids = filter_platforms(kids, &opts.platforms);
            set_children_labels(store, desc, &kids)?;
            found_children |= !kids.is_empty();
            Ok(Visit::Children(kids))
        },
        std::slice::from_ref(&index),
    )?;
    if !found_children {
        return Err(ImageError::Unknown("image might be filtered out".into()));
    }
    let mut out = Vec::with_capacity(imgs.len());
    for img in &imgs {
        let stored = match images.update(img, &["target".to_string()]) {
            Ok(i) => i,
            Err(e) if e.is_not_found() => images.create(img)?,
            Err(e) => return Err(e),
        };
        out.push(stored);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::content::memory::MemoryStore;
    use crate::image::digest::Digest;
    use crate::image::image_store::memory::MemoryImages;
    use crate::image::importer::tests::{tar_of, CONFIG};
    use crate::image::media_types as mt;
    use crate::image::ocispec::Platform;
    use crate::image::progress::Quiet;

    /// An OCI layout archive of one image: (archive, manifest digest, config digest, layer
    /// digest).
    fn layout(annotations: &str, arch: &str) -> (Vec<u8>, String, String, String) {
        let layer = b"layer bytes".to_vec();
        let layer_d = Digest::from_bytes(&layer);
        let config = String::from_utf8(CONFIG.to_vec())
            .unwrap()
            .replace("amd64", arch);
        let config_d = Digest::from_bytes(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer_d}","size":{}}}]}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_CONFIG,
            config.len(),
            mt::OCI_LAYER,
            layer.len()
        );
        let manifest_d = Digest::from_bytes(manifest.as_bytes());
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{manifest_d}","size":{},"annotations":{{{annotations}}},"platform":{{"architecture":"{arch}","os":"linux"}}}}]}}"#,
            mt::OCI_MANIFEST,
            manifest.len()
        );
        let path = |d: &Digest| format!("blobs/sha256/{}", d.encoded());
        let tar = tar_of(
            &[
                ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
                ("index.json", index.as_bytes()),
                (&path(&manifest_d), manifest.as_bytes()),
                (&path(&config_d), config.as_bytes()),
                (&path(&layer_d), &layer),
            ],
            &[],
        );
        (
            tar,
            manifest_d.to_string(),
            config_d.to_string(),
            layer_d.to_string(),
        )
    }

    fn amd64() -> Matcher {
        Matcher::only(&Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            ..Platform::default()
        })
    }

    #[test]
    fn names_and_gc_labels_follow_containerd() {
        let (tar, manifest, config, layer) = layout(
            r#""io.containerd.image.name":"docker.io/corral/busybox:latest","org.opencontainers.image.ref.name":"latest""#,
            "amd64",
        );
        let store = MemoryStore::default();
        let images = MemoryImages::default();
        let opts = ImportOptions {
            ref_translator: Some(RefTranslator::AddPrefix("import-x".into())),
            digest_prefix: Some("import-x".into()),
            platforms: amd64(),
            ..ImportOptions::default()
        };
        let imgs = import(&store, &images, &mut tar.as_slice(), &opts, &mut Quiet).unwrap();
        let names: Vec<&str> = imgs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker.io/corral/busybox:latest".to_string(),
                format!("import-x@{manifest}")
            ]
        );
        assert_eq!(imgs[0].target.digest, manifest);
        assert_eq!(
            imgs[0].target.annotations["org.opencontainers.image.ref.name"],
            "latest"
        );
        let m = store.labels(&manifest);
        assert_eq!(m["containerd.io/gc.ref.content.config"], config);
        assert_eq!(m["containerd.io/gc.ref.content.l.0"], layer);
        assert_eq!(m.len(), 2);
        // The index (index.json as it was in the archive) references the manifest.
        let indexes: Vec<BTreeMap<String, String>> = store
            .blobs
            .borrow()
            .values()
            .map(|(_, l)| l.clone())
            .filter(|l| l.contains_key("containerd.io/gc.ref.content.m.0"))
            .collect();
        assert_eq!(indexes.len(), 1);
        assert_eq!(indexes[0]["containerd.io/gc.ref.content.m.0"], manifest);
        assert!(store.labels(&config).is_empty());
        // Importing again re-points the same records.
        let again = import(&store, &images, &mut tar.as_slice(), &opts, &mut Quiet).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(images.0.borrow().len(), 2);
    }

    #[test]
    fn ref_names_take_the_base_name_and_filtered_platforms_fail() {
        let (tar, manifest, _, _) = layout(r#""org.opencontainers.image.ref.name":"1.0""#, "arm64");
        let store = MemoryStore::default();
        let images = MemoryImages::default();
        let opts = ImportOptions {
            ref_translator: Some(RefTranslator::FilterPrefix("docker.io/x/y".into())),
            index_name: Some("my-index".into()),
            skip_digest_for_named: true,
            digest_prefix: Some("docker.io/x/y".into()),
            platforms: Matcher::All,
        };
        let imgs = import(&store, &images, &mut tar.as_slice(), &opts, &mut Quiet).unwrap();
        let names: Vec<&str> = imgs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["my-index", "docker.io/x/y:1.0"]);
        assert_eq!(imgs[0].target.media_type, mt::OCI_INDEX);
        assert_eq!(imgs[1].target.digest, manifest);

        let store = MemoryStore::default();
        let opts = ImportOptions {
            platforms: amd64(),
            ..ImportOptions::default()
        };
        let err = import(&store, &images, &mut tar.as_slice(), &opts, &mut Quiet).unwrap_err();
        assert_eq!(err.to_string(), "image might be filtered out");
        assert!(store.labels(&manifest).is_empty());
    }

    #[test]
    fn label_keys_count_per_kind() {
        let store = MemoryStore::default();
        let parent = store.put(b"parent");
        let kids = [
            Descriptor::new(mt::OCI_CONFIG, "sha256:c1", 1),
            Descriptor::new(mt::OCI_CONFIG, "sha256:c2", 1),
            Descriptor::new(mt::OCI_LAYER, "sha256:l0", 1),
            Descriptor::new(mt::OCI_LAYER, "sha256:l1", 1),
            Descriptor::new("application/x-other", "sha256:o", 1),
        ];
        set_children_labels(&store, &Descriptor::new("", &parent, 6), &kids).unwrap();
        let l = store.labels(&parent);
        assert_eq!(l["containerd.io/gc.ref.content.config"], "sha256:c1");
        assert_eq!(l["containerd.io/gc.ref.content.config1"], "sha256:c2");
        assert_eq!(l["containerd.io/gc.ref.content.l.0"], "sha256:l0");
        assert_eq!(l["containerd.io/gc.ref.content.l.1"], "sha256:l1");
        assert_eq!(l["containerd.io/gc.ref.content.0"], "sha256:o");
    }
}
