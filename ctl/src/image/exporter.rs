//! Writing images as an OCI image-layout tar, as containerd's `images/archive.Export` does:
//! `oci-layout`, an `index.json` listing each image's target with its name annotations
//! (`io.containerd.image.name` and the OCI ref name), every blob the images need for the
//! chosen platforms under `blobs/<algorithm>/<hex>` (verified against its digest as it is
//! copied), and, unless skipped, the Docker-compatible `manifest.json`. Entries are sorted by
//! name; blobs stream from the daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use super::content::{read_blob, read_error, ContentStore};
use super::digest::{Digest, Digester};
use super::error::{ImageError, Result};
use super::gojson::Object;
use super::handlers::{children, walk, Visit};
use super::media_types::{self as mt, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use super::ocispec::{from_json, Descriptor, ImageLayout, Index, Manifest};
use super::platforms::Matcher;
use super::reference::{familiarize, oci_reference_name};

/// What `ctr images export`'s flags ask for.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Which manifests of an index to take (`--platform`, else this host's, strictly).
    pub platforms: Matcher,
    /// Take every manifest of an index (`--all-platforms`).
    pub all_platforms: bool,
    /// Leave out `manifest.json` (`--skip-manifest-json`).
    pub skip_docker_manifest: bool,
    /// Leave out non-distributable layers (`--skip-non-distributable`).
    pub skip_non_distributable: bool,
}

/// A target descriptor with the name annotations the exporter adds (`addNameAnnotation`).
pub fn named_target(name: &str, target: &Descriptor) -> Descriptor {
    let mut d = target.clone();
    d.annotations
        .insert(ANNOTATION_IMAGE_NAME.to_string(), name.to_string());
    d.annotations
        .insert(ANNOTATION_REF_NAME.to_string(), oci_reference_name(name));
    d
}

/// One entry of the archive.
enum Record {
    /// A file with these bytes.
    File { mode: u32, data: Vec<u8> },
    /// A blob copied from the store.
    Blob(Box<Descriptor>),
    /// A directory.
    Dir,
}

/// A manifest that goes into `manifest.json`, with its names.
struct DockerEntry {
    manifest: Descriptor,
    names: Vec<String>,
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.encoded())
}

/// Adds the blob records for `desc` and everything below it (`getRecords`).
fn add_tree(
    store: &dyn ContentStore,
    desc: &Descriptor,
    records: &mut Vec<(String, Record)>,
    algorithms: &mut BTreeSet<&'static str>,
    opts: &ExportOptions,
) -> Result<()> {
    walk(
        &mut |d| {
            let kids = children(store, d)?;
            let digest = Digest::parse(&d.digest)?;
            if !(opts.skip_non_distributable && mt::is_non_distributable(&d.media_type)) {
                records.push((blob_path(&digest), Record::Blob(Box::new(d.clone()))));
            }
            algorithms.insert(digest.algorithm().name());
            Ok(Visit::Children(kids))
        },
        std::slice::from_ref(desc),
    )
}

/// Writes the archive of `targets` (each already named with [`named_target`]) to `out`.
pub fn export(
    store: &dyn ContentStore,
    targets: &[Descriptor],
    opts: &ExportOptions,
    out: &mut dyn Write,
) -> Result<()> {
    let mut records: Vec<(String, Record)> = vec![
        (
            "oci-layout".into(),
            Record::File {
                mode: 0o444,
                data: ImageLayout::go_json().into_bytes(),
            },
        ),
        (
            "index.json".into(),
            Record::File {
                mode: 0o644,
                data: Index::go_json(targets).into_bytes(),
            },
        ),
    ];
    let mut algorithms = BTreeSet::new();
    let mut docker: Vec<DockerEntry> = Vec::new();
    let mut resolved_index: BTreeMap<String, Option<String>> = BTreeMap::new();
    for desc in targets {
        if mt::is_manifest(&desc.media_type) {
            let at = match docker.iter().position(|e| e.manifest.digest == desc.digest) {
                Some(i) => i,
                None => {
                    add_tree(store, desc, &mut records, &mut algorithms, opts)?;
                    docker.push(DockerEntry {
                        manifest: desc.clone(),
                        names: Vec::new(),
                    });
                    docker.len() - 1
                }
            };
            if let Some(name) = desc.annotations.get(ANNOTATION_IMAGE_NAME) {
                if !name.is_empty() && !opts.skip_docker_manifest {
                    docker[at].names.push(name.clone());
                }
            }
        } else if mt::is_index(&desc.media_type) {
            let chosen = match resolved_index.get(&desc.digest) {
                Some(c) => c.clone(),
                None => {
                    let digest = Digest::parse(&desc.digest)?;
                    if !(opts.skip_non_distributable && mt::is_non_distributable(&desc.media_type))
                    {
                        records.push((blob_path(&digest), Record::Blob(Box::new(desc.clone()))));
                    }
                    let data = read_blob(store, desc)?;
                    let index: Index = from_json(&data, &format!("index {}", desc.digest))?;
                    let mut matching = Vec::new();
                    for m in &index.manifests {
                        if m.platform
                            .as_ref()
                            .is_none_or(|p| opts.platforms.matches(p))
                        {
                            matching.push(m.clone());
                        } else if !opts.all_platforms {
                            continue;
                        }
                        add_tree(store, m, &mut records, &mut algorithms, opts)?;
                    }
                    let mut chosen = None;
                    if !opts.skip_docker_manifest {
                        if matching.is_empty() {
                            return Err(ImageError::NotFound(
                                "no manifest found for platform: not found".into(),
                            ));
                        }
                        super::handlers::sort_by_platform(&mut matching, &opts.platforms);
                        let first = matching.swap_remove(0);
                        chosen = Some(first.digest.clone());
                        if !docker.iter().any(|e| e.manifest.digest == first.digest) {
                            docker.push(DockerEntry {
                                manifest: first,
                                names: Vec::new(),
                            });
                        }
                    }
                    resolved_index.insert(desc.digest.clone(), chosen.clone());
                    chosen
                }
            };
            if let Some(d) = chosen {
                if let Some(name) = desc.annotations.get(ANNOTATION_IMAGE_NAME) {
                    if !name.is_empty() {
                        if let Some(e) = docker.iter_mut().find(|e| e.manifest.digest == d) {
                            e.names.push(name.clone());
                        }
                    }
                }
            }
        } else {
            return Err(ImageError::InvalidArgument(
                "only manifests may be exported: invalid argument".into(),
            ));
        }
    }
    // containerd 1.6 writes manifest.json for a manifest target even with
    // --skip-manifest-json (with `"RepoTags":null`); 1.7 honours the flag, as Corral does.
    if !opts.skip_docker_manifest && !docker.is_empty() {
        let data = manifests_json(store, &docker)
            .map_err(|e| e.context("unable to create manifests file"))?;
        records.push((
            "manifest.json".into(),
            Record::File {
                mode: 0o644,
                data: data.into_bytes(),
            },
        ));
    }
    if !algorithms.is_empty() {
        records.push(("blobs/".into(), Record::Dir));
        for alg in &algorithms {
            records.push((format!("blobs/{alg}/"), Record::Dir));
        }
    }
    // Sorted by name, the first of each name kept (a stable sort, as Go's sort.Slice of
    // records that are equal for one name is not: they are the same blob).
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records.dedup_by(|a, b| a.0 == b.0);
    write_tar(store, &records, out)
}

/// containerd's `manifestsRecord`: `manifest.json` for `docker save` readers.
fn manifests_json(store: &dyn ContentStore, entries: &[DockerEntry]) -> Result<String> {
    let mut items = Vec::new();
    for e in entries {
        let data = read_blob(store, &e.manifest)?;
        let m: Manifest = from_json(&data, &format!("manifest {}", e.manifest.digest))?;
        let config = Digest::parse(&m.config.digest)
            .map_err(|err| err.context(format_args!("invalid manifest {:?}", e.manifest.digest)))?;
        let mut layers = Vec::new();
        for l in &m.layers {
            layers.push(blob_path(&Digest::parse(&l.digest)?));
        }
        let mut tags = Vec::new();
        for name in &e.names {
            tags.push(familiarize(name)?);
        }
        let mut item = String::new();
        Object::start(&mut item)
            .str("Config", &blob_path(&config))
            .strings("RepoTags", (!tags.is_empty()).then_some(tags.as_slice()))
            .strings("Layers", (!layers.is_empty()).then_some(layers.as_slice()))
            .end();
        items.push(item);
    }
    Ok(format!("[{}]", items.join(",")))
}

fn header(name: &str, mode: u32, size: u64, kind: tar::EntryType) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)
        .map_err(|e| ImageError::io(format!("archive entry {name}"), e))?;
    h.set_mode(mode);
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    Ok(h)
}

fn write_tar(
    store: &dyn ContentStore,
    records: &[(String, Record)],
    out: &mut dyn Write,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let write_err = |name: &str, e: io::Error| ImageError::io(format!("writing {name}"), e);
    for (name, record) in records {
        match record {
            Record::Dir => {
                let h = header(name, 0o755, 0, tar::EntryType::Directory)?;
                tar.append(&h, io::empty())
                    .map_err(|e| write_err(name, e))?;
            }
            Record::File { mode, data } => {
                let h = header(name, *mode, data.len() as u64, tar::EntryType::Regular)?;
                tar.append(&h, data.as_slice())
                    .map_err(|e| write_err(name, e))?;
            }
            Record::Blob(desc) => {
                let digest = Digest::parse(&desc.digest)?;
                if desc.size < 0 {
                    return Err(ImageError::InvalidArgument(format!(
                        "invalid size {} in {}",
                        desc.size, desc.digest
                    )));
                }
                let h = header(name, 0o444, desc.size as u64, tar::EntryType::Regular)?;
                let reader = store
                    .reader(&desc.digest, 0)
                    .map_err(|e| e.context("failed to get reader"))?;
                let mut verify = Verify {
                    inner: reader,
                    digester: Some(Digester::for_algorithm(digest.algorithm())?),
                    expected: digest,
                    size: desc.size as u64,
                    read: 0,
                };
                tar.append(&h, &mut verify).map_err(|e| {
                    if e.get_ref().is_some_and(|i| i.is::<VerifyError>()) {
                        ImageError::FailedPrecondition(
                            e.into_inner()
                                .map_or_else(|| "copy failed".to_string(), |i| i.to_string()),
                        )
                    } else if e.kind() == io::ErrorKind::UnexpectedEof {
                        ImageError::Unknown(format!("unexpected copy size for {name}"))
                    } else {
                        read_error(&desc.digest, e).context("failed to copy to tar")
                    }
                })?;
            }
        }
    }
    tar.finish()
        .map_err(|e| ImageError::io("finishing the archive", e))?;
    Ok(())
}

/// A digest mismatch found while copying a blob into the archive.
#[derive(Debug)]
struct VerifyError(String);

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VerifyError {}

/// Reads a blob for the archive, checking its size and, at its end, its digest.
struct Verify<'a> {
    inner: Box<dyn Read + 'a>,
    digester: Option<Digester>,
    expected: Digest,
    size: u64,
    read: u64,
}

impl Read for Verify<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = (self.size - self.read).min(buf.len() as u64) as usize;
        let n = if room == 0 {
            0
        } else {
            self.inner.read(&mut buf[..room])?
        };
        if n == 0 && room > 0 {
            // The blob ended before the size its descriptor gives.
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        if let Some(d) = self.digester.as_mut() {
            d.update(&buf[..n]);
        }
        self.read += n as u64;
        if self.read == self.size {
            if let Some(d) = self.digester.take() {
                let actual = d.finish();
                if actual != self.expected {
                    return Err(io::Error::other(VerifyError(format!(
                        "unexpected digest {actual} copied"
                    ))));
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::content::memory::MemoryStore;
    use crate::image::handlers::tests::sample;
    use crate::image::ocispec::Platform;

    fn entries(tar: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
                let mode = e.header().mode().unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, mode, data)
            })
            .collect()
    }

    fn opts() -> ExportOptions {
        ExportOptions {
            platforms: Matcher::only_strict(&Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                ..Platform::default()
            }),
            all_platforms: false,
            skip_docker_manifest: false,
            skip_non_distributable: false,
        }
    }

    #[test]
    fn exports_a_layout_with_names_and_manifest_json() {
        let store = MemoryStore::default();
        let (manifest, config, layer) = sample(&store, "amd64");
        let target = named_target("docker.io/corral/busybox:latest", &manifest);
        let mut out = Vec::new();
        export(&store, &[target.clone(), target.clone()], &opts(), &mut out).unwrap();
        let e = entries(&out);
        let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
        let mut blobs = [
            blob_path(&Digest::parse(&manifest.digest).unwrap()),
            blob_path(&Digest::parse(&config.digest).unwrap()),
            blob_path(&Digest::parse(&layer.digest).unwrap()),
        ];
        blobs.sort();
        let mut want = vec!["blobs/", "blobs/sha256/"];
        want.extend(blobs.iter().map(String::as_str));
        want.extend(["index.json", "manifest.json", "oci-layout"]);
        assert_eq!(names, want);
        let index: Index = from_json(&e[5].2, "index").unwrap();
        assert_eq!(index.manifests.len(), 2);
        assert_eq!(
            index.manifests[0].annotations[ANNOTATION_REF_NAME],
            "latest"
        );
        let mj: serde_json::Value = serde_json::from_slice(&e[6].2).unwrap();
        assert_eq!(
            mj[0]["RepoTags"],
            serde_json::json!(["corral/busybox:latest", "corral/busybox:latest"])
        );
        assert_eq!(
            mj[0]["Config"],
            blob_path(&Digest::parse(&config.digest).unwrap())
        );
        assert_eq!(e[7].2, br#"{"imageLayoutVersion":"1.0.0"}"#);
        assert_eq!(e[7].1, 0o444);
        assert_eq!(e[0].1, 0o755);
    }

    #[test]
    fn a_corrupt_blob_fails_the_export() {
        let store = MemoryStore::default();
        let (manifest, _, layer) = sample(&store, "amd64");
        store.blobs.borrow_mut().get_mut(&layer.digest).unwrap().0[0] ^= 1;
        let mut out = Vec::new();
        let err = export(&store, &[named_target("x", &manifest)], &opts(), &mut out).unwrap_err();
        assert!(err.to_string().contains("unexpected digest"), "{err}");
        let err = export(
            &store,
            &[Descriptor::new(mt::OCI_CONFIG, &layer.digest, 1)],
            &opts(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("only manifests may be exported"));
    }

    #[test]
    fn a_blob_shorter_than_its_descriptor_fails_the_export() {
        let store = MemoryStore::default();
        let (manifest, _, layer) = sample(&store, "amd64");
        store
            .blobs
            .borrow_mut()
            .get_mut(&layer.digest)
            .unwrap()
            .0
            .truncate(2);
        let err = export(
            &store,
            &[named_target("x", &manifest)],
            &opts(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unexpected copy size"), "{err}");
    }

    #[test]
    fn skip_manifest_json_leaves_it_out() {
        let store = MemoryStore::default();
        let (manifest, _, _) = sample(&store, "amd64");
        let mut out = Vec::new();
        let o = ExportOptions {
            skip_docker_manifest: true,
            ..opts()
        };
        export(&store, &[named_target("x", &manifest)], &o, &mut out).unwrap();
        assert!(entries(&out).iter().all(|(n, _, _)| n != "manifest.json"));
    }
}
