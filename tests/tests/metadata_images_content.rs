//! Images and content records written by Corral into a meta.db are what a real containerd
//! 1.6 lists (`ctr images ls`, `ctr content ls`), and what containerd changes there
//! (`ctr images label`, `ctr content label`) Corral reads back.
//!
//! The manifest and config blobs are also put in the content store's backend, so ctr can
//! compute the image's size and platform; the layer blob exists only as a record, which
//! `ctr content ls` lists all the same (the metadata store's walk never asks the backend).

use corral_tests::labels;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use corral_daemon::metadata::content;
use corral_daemon::metadata::image::{self, Descriptor, Image};
use corral_daemon::metadata::schema::db_path;
use corral_daemon::metadata::store::Store;
use corral_tests::harness::{
    require_root, require_tool, ContainerdOptions, PrivateContainerd, TempRoot,
};

const NS: &str = "corral-images";
const NAME: &str = "docker.io/corral/tiny:1";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
    )
}

struct Blobs {
    manifest: (String, Vec<u8>),
    config: (String, Vec<u8>),
    layer: (String, Vec<u8>),
}

/// A tiny linux/amd64 image: its layer is not a real tar (nothing unpacks it).
fn blobs() -> Blobs {
    let layer = b"corral layer bytes, never unpacked\n".repeat(10);
    let layer_d = sha256(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_d}"]}}}}"#
    )
    .into_bytes();
    let config_d = sha256(&config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_d}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    Blobs {
        manifest: (sha256(&manifest), manifest),
        config: (config_d, config),
        layer: (layer_d, layer),
    }
}

fn put_backend_blob(root: &Path, digest: &str, data: &[u8]) {
    let dir = root.join("io.containerd.content.v1.content/blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(digest.trim_start_matches("sha256:")), data).unwrap();
}

/// containerd's `progress.Bytes`: `%02.1f` of 1024-based units.
fn go_bytes(size: usize) -> String {
    let mut v = size as f64;
    let mut unit = 0;
    let units = ["B", "KiB", "MiB", "GiB"];
    while v >= 1024.0 && unit < units.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", units[unit])
}

/// Rows of a ctr table, header skipped, split on whitespace.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// A ctr label column (`k=v,k=v` or `-`) as a map.
fn label_column(col: &str) -> BTreeMap<String, String> {
    if col == "-" {
        return BTreeMap::new();
    }
    col.split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn containerd_lists_and_labels_corrals_images_and_content() {
    if !require_root("runs a private containerd") {
        return;
    }
    let (Some(containerd), Some(ctr)) = (require_tool("containerd"), require_tool("ctr")) else {
        return;
    };
    if require_tool("sha256sum").is_none() {
        return;
    }
    let dir = TempRoot::new().unwrap();
    let root = dir.root().to_path_buf();
    let b = blobs();
    let (m, c, l) = (&b.manifest, &b.config, &b.layer);
    let manifest_labels = labels(&[
        ("containerd.io/gc.ref.content.config", &c.0),
        ("containerd.io/gc.ref.content.l.0", &l.0),
    ]);
    let layer_labels = labels(&[("containerd.io/uncompressed", &l.0)]);
    let config_labels = labels(&[("fixture", "config"), ("keep", "1")]);
    let tiny = Image {
        name: NAME.into(),
        labels: labels(&[("app", "corral"), ("tier", "test")]),
        target: Descriptor {
            media_type: MANIFEST_TYPE.into(),
            digest: m.0.clone(),
            size: m.1.len() as i64,
            annotations: labels(&[("org.opencontainers.image.ref.name", "1")]),
        },
        ..Default::default()
    };
    let (written_image, written_config) = {
        let store = Store::open(db_path(&root)).unwrap();
        store
            .update(|tx| {
                let i = image::create(tx, NS, &tiny)?;
                content::add_blob(tx, NS, &m.0, m.1.len() as i64, &manifest_labels)?;
                content::add_blob(tx, NS, &l.0, l.1.len() as i64, &layer_labels)?;
                let c = content::add_blob(tx, NS, &c.0, c.1.len() as i64, &config_labels)?;
                Ok((i, c))
            })
            .unwrap()
    };
    put_backend_blob(&root, &m.0, &m.1);
    put_backend_blob(&root, &c.0, &c.1);

    let mut cd = PrivateContainerd::start_with(ContainerdOptions {
        binary: containerd,
        ctr,
        extra_config: corral_tests::harness::containerd::NO_GC.into(),
        root: Some(root.clone()),
        ..Default::default()
    })
    .unwrap();

    // Images: exactly Corral's one, with its target, size and platform from the blobs.
    let out = cd.ctr(["-n", NS, "images", "ls"]).unwrap();
    let images = rows(&out);
    assert_eq!(images.len(), 1, "{out}");
    let row = &images[0];
    assert_eq!(row[0], NAME, "{out}");
    assert_eq!(row[1], MANIFEST_TYPE, "{out}");
    assert_eq!(row[2], m.0, "{out}");
    let total = m.1.len() + c.1.len() + l.1.len();
    assert_eq!(format!("{} {}", row[3], row[4]), go_bytes(total), "{out}");
    assert_eq!(row[5], "linux/amd64", "{out}");
    assert_eq!(label_column(&row[6]), tiny.labels, "{out}");
    let out = cd.ctr(["-n", NS, "images", "ls", "-q"]).unwrap();
    assert_eq!(out, format!("{NAME}\n"));

    // Content: the three records, the layer too although the backend has no such blob.
    let out = cd.ctr(["-n", NS, "content", "ls"]).unwrap();
    let mut listed: Vec<(String, String, BTreeMap<String, String>)> = rows(&out)
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), label_column(r.last().unwrap())))
        .collect();
    listed.sort();
    let mut expected = vec![
        (
            m.0.clone(),
            format!("{}B", m.1.len()),
            manifest_labels.clone(),
        ),
        (
            c.0.clone(),
            format!("{}B", c.1.len()),
            config_labels.clone(),
        ),
        (l.0.clone(), format!("{}B", l.1.len()), layer_labels.clone()),
    ];
    expected.sort();
    assert_eq!(listed, expected, "{out}");
    // The default namespace holds nothing.
    assert!(rows(&cd.ctr(["-n", "default", "content", "ls"]).unwrap()).is_empty());

    // containerd reads the manifest bytes through Corral's record.
    let out = cd.ctr(["-n", NS, "content", "get", &m.0]).unwrap();
    assert_eq!(out.as_bytes(), m.1.as_slice());

    // containerd changes labels: one added, one removed, on a blob and on the image.
    cd.ctr(["-n", NS, "content", "label", &c.0, "by=ctr", "fixture="])
        .unwrap();
    cd.ctr(["-n", NS, "images", "label", NAME, "tier=", "seen=yes"])
        .unwrap();
    // ... and deletes the layer's record.
    cd.ctr(["-n", NS, "content", "rm", &l.0]).unwrap();
    cd.stop_daemon().unwrap();

    let store = Store::open_read_only(db_path(&root)).unwrap();
    let config = store.view(|tx| content::info(tx, NS, &c.0)).unwrap();
    assert_eq!(config.labels, labels(&[("by", "ctr"), ("keep", "1")]));
    assert_eq!(config.size, c.1.len() as i64);
    assert_eq!(config.created_at, written_config.created_at);
    assert!(config.updated_at > written_config.updated_at);
    let err = store.view(|tx| content::info(tx, NS, &l.0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("content digest {}: not found", l.0)
    );
    let digests: BTreeSet<_> = store
        .view(|tx| content::list(tx, NS))
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    assert_eq!(digests, [m.0.clone(), c.0.clone()].into());
    let manifest = store.view(|tx| content::info(tx, NS, &m.0)).unwrap();
    assert_eq!(manifest.labels, manifest_labels);

    let read = store.view(|tx| image::get(tx, NS, NAME)).unwrap();
    assert_eq!(read.labels, labels(&[("app", "corral"), ("seen", "yes")]));
    assert_eq!(read.target, tiny.target);
    assert_eq!(read.created_at, written_image.created_at);
    assert!(read.updated_at > written_image.updated_at);
    drop(store);
    cd.stop().unwrap();
}
