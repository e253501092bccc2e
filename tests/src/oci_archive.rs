//! Writing OCI image-layout archives (`ctr images import`'s input) of generated images, for
//! benchmarks and tests that need images bigger than the busybox fixture.

use std::io::{self, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

/// One file of a generated layer.
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
}

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Deterministic bytes that gzip to about a third of their size (a mix of text-like runs and
/// noise, like binaries and libraries in real layers).
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let word = (x >> 33) as u32;
        if word.is_multiple_of(3) {
            out.extend_from_slice(b"corral edge runtime ");
        } else {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// A tar of `files` (with their parent directories), entries owned by root, mtime 0.
pub fn layer_tar(files: &[File]) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs: Vec<String> = Vec::new();
    for f in files {
        let mut parts: Vec<&str> = f.path.split('/').collect();
        parts.pop();
        let mut dir = String::new();
        for p in parts {
            dir = if dir.is_empty() {
                p.to_string()
            } else {
                format!("{dir}/{p}")
            };
            if !dirs.contains(&dir) {
                dirs.push(dir.clone());
                let mut h = tar::Header::new_ustar();
                h.set_path(format!("{dir}/"))?;
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(0);
                h.set_cksum();
                b.append(&h, io::empty())?;
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_path(&f.path)?;
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(f.data.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, f.data.as_slice())?;
    }
    b.into_inner()
}

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data)?;
    e.finish()
}

/// Writes an OCI image-layout archive of a linux/amd64 image named `name` whose layers hold
/// `layers` (gzip-compressed) to `out`; returns the manifest digest.
pub fn write_image(out: &Path, name: &str, layers: &[Vec<File>]) -> io::Result<String> {
    let tars = layers
        .iter()
        .map(|files| layer_tar(files))
        .collect::<io::Result<Vec<_>>>()?;
    write_image_of_tars(out, name, &tars)
}

/// [`write_image`] with the layers' tar streams given as they are (for hostile layers the
/// `tar` crate refuses to write).
pub fn write_image_of_tars(out: &Path, name: &str, tars: &[Vec<u8>]) -> io::Result<String> {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in tars {
        diff_ids.push(serde_json::Value::String(digest(tar)));
        let gz = gzip(tar)?;
        let d = digest(&gz);
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d,
            "size": gz.len(),
        }));
        blobs.push((d, gz));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .map_err(io::Error::other)?;
    let config_digest = digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layer_descs,
    }))
    .map_err(io::Error::other)?;
    let manifest_digest = digest(&manifest);
    let tag = name.rsplit(':').next().unwrap_or("latest");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .map_err(io::Error::other)?;
    blobs.push((config_digest, config));
    blobs.push((manifest_digest.clone(), manifest));

    let file = std::fs::File::create(out)?;
    let mut b = tar::Builder::new(io::BufWriter::new(file));
    let mut add = |path: &str, data: &[u8]| -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_entry_type(if path.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(if path.ends_with('/') { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data)
    };
    add("blobs/", &[])?;
    add("blobs/sha256/", &[])?;
    for (d, data) in &blobs {
        add(
            &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
            data,
        )?;
    }
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    b.into_inner()?.flush()?;
    Ok(manifest_digest)
}

/// A tar of one regular file whose header names `name` exactly as given (`../x`, `/etc/x`),
/// bypassing the `tar` crate's checks.
pub fn raw_entry_tar(name: &[u8], data: &[u8]) -> io::Result<Vec<u8>> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name[..n]);
    }
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data)?;
    b.into_inner()
}

/// An image of about `total` bytes (uncompressed) in `layers` layers of files of at most
/// 4 MiB each, deterministic for a given `seed`.
pub fn generated_layers(total: usize, layers: usize, seed: u64) -> Vec<Vec<File>> {
    let per_layer = total / layers.max(1);
    (0..layers)
        .map(|l| {
            let mut files = Vec::new();
            let mut left = per_layer;
            let mut i = 0;
            while left > 0 {
                let len = left.min(4 << 20);
                files.push(File {
                    path: format!("usr/lib/corral-bench/l{l}/f{i}.bin"),
                    data: filler(len, seed ^ ((l as u64) << 32) ^ i as u64),
                });
                left -= len;
                i += 1;
            }
            files
        })
        .collect()
}

/// Unpacks the bundled busybox image's one layer (tests/fixtures/busybox-oci.tar) into
/// `rootfs`, using `scratch` for the archive's blob; panics when `tar` fails (tests only).
pub fn busybox_rootfs(rootfs: &std::path::Path, scratch: &std::path::Path) {
    let archive = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/busybox-oci.tar");
    std::fs::create_dir_all(scratch).expect("creating the scratch directory");
    let layer = "blobs/sha256/bd45cf941c51781cb1b4cc87cb6a526cf6bb5e3e85bf34876acfb6992c3b1029";
    if !scratch.join(layer).exists() {
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(scratch)
            .arg(layer)
            .status()
            .expect("running tar");
        assert!(st.success(), "tar -xf {}", archive.display());
    }
    let st = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(scratch.join(layer))
        .arg("-C")
        .arg(rootfs)
        .status()
        .expect("running tar");
    assert!(st.success(), "tar -xzf {layer}");
}
