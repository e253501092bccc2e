//! Walking an image's content as containerd's `images` package does (`images/handlers.go`,
//! `images/image.go`): the children of an index or manifest, the manifest for a platform,
//! the config and its diff IDs, the platforms an image offers, whether its content is all
//! there (`Check`) and its size.

use super::content::{read_blob, ContentStore};
use super::error::{ImageError, Result};
use super::media_types as mt;
use super::ocispec::Platform;
use super::ocispec::{from_json, validate_media_type, Descriptor, ImageConfig, Index, Manifest};
use super::platforms::{normalize, Matcher};

/// How deep indexes may nest before a walk gives up (containerd has no limit; a cycle would
/// never end).
const MAX_DEPTH: usize = 32;

/// What a walk handler says about a descriptor.
pub enum Visit {
    /// Walk these children next.
    Children(Vec<Descriptor>),
    /// Do not walk below this descriptor (`images.ErrSkipDesc`).
    Skip,
}

/// `images.Walk`: calls `handler` on each descriptor, depth first, siblings in order.
pub fn walk(
    handler: &mut dyn FnMut(&Descriptor) -> Result<Visit>,
    descs: &[Descriptor],
) -> Result<()> {
    walk_at(handler, descs, 0)
}

fn walk_at(
    handler: &mut dyn FnMut(&Descriptor) -> Result<Visit>,
    descs: &[Descriptor],
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(ImageError::InvalidArgument(format!(
            "image content nests more than {MAX_DEPTH} levels deep"
        )));
    }
    for desc in descs {
        if let Visit::Children(children) = handler(desc)? {
            if !children.is_empty() {
                walk_at(handler, &children, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Reads a manifest or index after checking that it is what `desc` says it is.
fn read_document(store: &dyn ContentStore, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    let data = read_blob(store, desc)?;
    validate_media_type(&data, &desc.media_type)
        .map_err(|e| e.context(format_args!("{what}: invalid desc {}", desc.digest)))?;
    Ok(data)
}

/// `images.Children`: a manifest's config and layers, an index's manifests; nothing for
/// layers, configs and types containerd does not know.
pub fn children(store: &dyn ContentStore, desc: &Descriptor) -> Result<Vec<Descriptor>> {
    if mt::is_manifest(&desc.media_type) {
        let data = read_document(store, desc, "children")?;
        let m: Manifest = from_json(&data, &format!("manifest {}", desc.digest))?;
        let mut out = vec![m.config];
        out.extend(m.layers);
        Ok(out)
    } else if mt::is_index(&desc.media_type) {
        let data = read_document(store, desc, "children")?;
        let idx: Index = from_json(&data, &format!("index {}", desc.digest))?;
        Ok(idx.manifests)
    } else {
        if !mt::is_layer(&desc.media_type) && !mt::is_known_config(&desc.media_type) {
            log::debug!(
                "encountered unknown type {}; children may not be fetched",
                desc.media_type
            );
        }
        Ok(Vec::new())
    }
}

/// Sorts an index's manifests by `matcher`'s preference, those without a platform last.
pub fn sort_by_platform(descs: &mut [Descriptor], matcher: &Matcher) {
    descs.sort_by(|a, b| matcher.compare(a.platform.as_ref(), b.platform.as_ref()));
}

/// Keeps the descriptors without a platform and those `matcher` takes
/// (`images.FilterPlatforms`).
pub fn filter_platforms(descs: Vec<Descriptor>, matcher: &Matcher) -> Vec<Descriptor> {
    descs
        .into_iter()
        .filter(|d| d.platform.as_ref().is_none_or(|p| matcher.matches(p)))
        .collect()
}

/// The platform an image config declares, normalized.
pub fn config_platform(store: &dyn ContentStore, config: &Descriptor) -> Result<Platform> {
    let data = read_blob(store, config)?;
    let c: ImageConfig = from_json(&data, &format!("image config {}", config.digest))?;
    Ok(normalize(&Platform {
        os: c.os,
        architecture: c.architecture,
        ..Platform::default()
    }))
}

/// `images.Manifest`: the manifest `image` resolves to for `matcher` (the best match of an
/// index, a manifest as it is).
pub fn manifest(
    store: &dyn ContentStore,
    image: &Descriptor,
    matcher: Option<&Matcher>,
) -> Result<Manifest> {
    let mut found: Vec<Manifest> = Vec::new();
    let mut was_index = false;
    walk(
        &mut |desc| {
            if mt::is_manifest(&desc.media_type) {
                let data = read_document(store, desc, "manifest")?;
                let m: Manifest = from_json(&data, &format!("manifest {}", desc.digest))?;
                if desc.digest != image.digest {
                    if let Some(matcher) = matcher {
                        match &desc.platform {
                            Some(p) if !matcher.matches(p) => return Ok(Visit::Skip),
                            Some(_) => {}
                            None => {
                                if !matcher.matches(&config_platform(store, &m.config)?) {
                                    return Ok(Visit::Skip);
                                }
                            }
                        }
                    }
                }
                found.push(m);
                Ok(Visit::Skip)
            } else if mt::is_index(&desc.media_type) {
                let data = read_document(store, desc, "manifest")?;
                let idx: Index = from_json(&data, &format!("index {}", desc.digest))?;
                let Some(matcher) = matcher else {
                    return Ok(Visit::Children(idx.manifests));
                };
                let mut descs = filter_platforms(idx.manifests, matcher);
                sort_by_platform(&mut descs, matcher);
                was_index = true;
                descs.truncate(1);
                Ok(Visit::Children(descs))
            } else {
                Err(ImageError::NotFound(format!(
                    "unexpected media type {} for {}: not found",
                    desc.media_type, desc.digest
                )))
            }
        },
        std::slice::from_ref(image),
    )?;
    match found.into_iter().next() {
        Some(m) => Ok(m),
        None if was_index => Err(ImageError::NotFound(format!(
            "no match for platform in manifest {}: not found",
            image.digest
        ))),
        None => Err(ImageError::NotFound(format!(
            "manifest {}: not found",
            image.digest
        ))),
    }
}

/// `images.Config`: the config descriptor of the manifest for `matcher`.
pub fn config(
    store: &dyn ContentStore,
    image: &Descriptor,
    matcher: Option<&Matcher>,
) -> Result<Descriptor> {
    Ok(manifest(store, image, matcher)?.config)
}

/// `images.RootFS`: the diff IDs a config lists, bottom first.
pub fn rootfs(store: &dyn ContentStore, config: &Descriptor) -> Result<Vec<String>> {
    diff_ids(&read_blob(store, config)?, &config.digest)
}

/// The diff IDs the image config `data` (blob `digest`) lists, bottom first.
pub fn diff_ids(data: &[u8], digest: &str) -> Result<Vec<String>> {
    let c: ImageConfig = from_json(data, &format!("image config {digest}"))?;
    Ok(c.rootfs.diff_ids)
}

/// `images.Platforms`: every platform the image offers (an index's manifest platforms, or
/// the config's).
pub fn platforms(store: &dyn ContentStore, image: &Descriptor) -> Result<Vec<Platform>> {
    let mut out = Vec::new();
    walk(
        &mut |desc| {
            if let Some(p) = &desc.platform {
                out.push(p.clone());
                return Ok(Visit::Skip);
            }
            if mt::is_config(&desc.media_type) {
                out.push(config_platform(store, desc)?);
            }
            Ok(Visit::Children(children(store, desc)?))
        },
        std::slice::from_ref(image),
    )?;
    Ok(out)
}

/// What `images.Check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckResult {
    /// Whether the manifest resolved, so `required` is the whole image.
    pub available: bool,
    /// The config and layers the image needs.
    pub required: Vec<Descriptor>,
    /// Those the store has.
    pub present: Vec<Descriptor>,
    /// Those it lacks.
    pub missing: Vec<Descriptor>,
}

/// `images.Check`: whether the store holds everything the image needs for `matcher`.
pub fn check(
    store: &dyn ContentStore,
    image: &Descriptor,
    matcher: &Matcher,
) -> Result<CheckResult> {
    let m = match manifest(store, image, Some(matcher)) {
        Ok(m) => m,
        Err(e) if e.is_not_found() => {
            return Ok(CheckResult {
                available: false,
                required: vec![image.clone()],
                present: Vec::new(),
                missing: vec![image.clone()],
            })
        }
        Err(e) => return Err(e.context(format_args!("failed to check image {}", image.digest))),
    };
    let mut result = CheckResult {
        available: true,
        ..CheckResult::default()
    };
    result.required.push(m.config);
    result.required.extend(m.layers);
    for desc in &result.required {
        match store.info(&desc.digest) {
            Ok(_) => result.present.push(desc.clone()),
            Err(e) if e.is_not_found() => result.missing.push(desc.clone()),
            Err(e) => return Err(e.context(format_args!("failed to check image {}", desc.digest))),
        }
    }
    Ok(result)
}

/// `images.Image.Size`: the sizes of the target and what it needs for `matcher` (the first
/// matching manifest of an index), summed. On error, the sum so far and the error.
pub fn size(
    store: &dyn ContentStore,
    image: &Descriptor,
    matcher: &Matcher,
) -> (i64, Option<ImageError>) {
    let mut total = 0i64;
    let result = walk(
        &mut |desc| {
            if desc.size < 0 {
                return Err(ImageError::InvalidArgument(format!(
                    "invalid size {} in {} ({})",
                    desc.size, desc.digest, desc.media_type
                )));
            }
            total += desc.size;
            let mut kids = filter_platforms(children(store, desc)?, matcher);
            if mt::is_index(&desc.media_type) {
                sort_by_platform(&mut kids, matcher);
                if kids.is_empty() {
                    return Err(ImageError::NotFound(
                        "no match for platform in manifest: not found".into(),
                    ));
                }
                kids.truncate(1);
            }
            Ok(Visit::Children(kids))
        },
        std::slice::from_ref(image),
    );
    (total, result.err())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::content::memory::MemoryStore;
    use crate::image::ocispec::Descriptor;

    /// A one-layer image in `store`: (index, manifest, config, layer) descriptors.
    pub fn sample(store: &MemoryStore, arch: &str) -> (Descriptor, Descriptor, Descriptor) {
        let layer = store.put(format!("layer-{arch}").as_bytes());
        let config_json = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
        );
        let config = Descriptor::new(
            mt::OCI_CONFIG,
            &store.put(config_json.as_bytes()),
            config_json.len() as i64,
        );
        let layer_desc =
            Descriptor::new(mt::OCI_LAYER, &layer, format!("layer-{arch}").len() as i64);
        let manifest_json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[{}]}}"#,
            mt::OCI_MANIFEST,
            config.to_go_json(),
            layer_desc.to_go_json()
        );
        let manifest = Descriptor::new(
            mt::OCI_MANIFEST,
            &store.put(manifest_json.as_bytes()),
            manifest_json.len() as i64,
        );
        (manifest, config, layer_desc)
    }

    fn platform(arch: &str) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            ..Platform::default()
        }
    }

    fn index(store: &MemoryStore, manifests: &[Descriptor]) -> Descriptor {
        let json = Index::go_json(manifests);
        Descriptor::new(
            mt::OCI_INDEX,
            &store.put(json.as_bytes()),
            json.len() as i64,
        )
    }

    #[test]
    fn manifests_resolve_by_platform() {
        let store = MemoryStore::default();
        let (mut amd, amd_config, _) = sample(&store, "amd64");
        let (mut arm, arm_config, _) = sample(&store, "arm64");
        amd.platform = Some(platform("amd64"));
        arm.platform = Some(platform("arm64"));
        let idx = index(&store, &[arm.clone(), amd.clone()]);
        let amd64 = Matcher::only(&platform("amd64"));
        assert_eq!(
            config(&store, &idx, Some(&amd64)).unwrap().digest,
            amd_config.digest
        );
        let arm64 = Matcher::only(&platform("arm64"));
        assert_eq!(
            config(&store, &idx, Some(&arm64)).unwrap().digest,
            arm_config.digest
        );
        let s390 = Matcher::only(&platform("s390x"));
        let err = manifest(&store, &idx, Some(&s390)).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(err
            .to_string()
            .starts_with("no match for platform in manifest"));
        // A manifest without a platform in the index is matched by its config.
        let mut bare = amd.clone();
        bare.platform = None;
        let idx2 = index(&store, &[bare]);
        assert!(manifest(&store, &idx2, Some(&amd64)).is_ok());
        assert!(manifest(&store, &idx2, Some(&s390)).is_err());
        // A manifest target is taken as it is.
        assert!(manifest(&store, &arm, Some(&amd64)).is_ok());
        let mut ps: Vec<String> = platforms(&store, &idx)
            .unwrap()
            .iter()
            .map(crate::image::platforms::format)
            .collect();
        ps.sort();
        assert_eq!(ps, ["linux/amd64", "linux/arm64"]);
        assert_eq!(
            platforms(&store, &amd)
                .unwrap()
                .iter()
                .map(crate::image::platforms::format)
                .collect::<Vec<_>>(),
            ["linux/amd64"]
        );
    }

    #[test]
    fn check_and_size_count_what_the_platform_needs() {
        let store = MemoryStore::default();
        let (mut amd, config, layer) = sample(&store, "amd64");
        amd.platform = Some(platform("amd64"));
        let (mut arm, _, _) = sample(&store, "arm64");
        arm.platform = Some(platform("arm64"));
        let idx = index(&store, &[arm, amd.clone()]);
        let m = Matcher::only(&platform("amd64"));
        let (total, err) = size(&store, &idx, &m);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(total, idx.size + amd.size + config.size + layer.size);
        let r = check(&store, &idx, &m).unwrap();
        assert!(r.available);
        assert_eq!(r.required.len(), 2);
        assert!(r.missing.is_empty());
        assert_eq!(
            rootfs(&store, &config).unwrap(),
            std::slice::from_ref(&layer.digest)
        );
        store.blobs.borrow_mut().remove(&layer.digest);
        let r = check(&store, &idx, &m).unwrap();
        assert_eq!(r.missing.len(), 1);
        store.blobs.borrow_mut().remove(&amd.digest);
        let r = check(&store, &idx, &m).unwrap();
        assert!(!r.available);
        let (partial, err) = size(&store, &idx, &m);
        assert!(err.unwrap().is_not_found());
        assert_eq!(partial, idx.size + amd.size);
    }

    #[test]
    fn walks_stop_at_cycles() {
        let store = MemoryStore::default();
        // An index that lists a manifest descriptor pointing back at an index digest.
        let json = r#"{"schemaVersion":2,"manifests":[]}"#;
        let inner = Descriptor::new(
            mt::OCI_INDEX,
            &store.put(json.as_bytes()),
            json.len() as i64,
        );
        let mut chain = inner;
        for _ in 0..40 {
            chain = index(&store, &[chain]);
        }
        let err = walk(&mut |d| Ok(Visit::Children(children(&store, d)?)), &[chain]).unwrap_err();
        assert!(err.to_string().contains("levels deep"), "{err}");
    }
}
