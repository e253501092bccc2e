//! Applying real layers with `corral_daemon::diff`: the busybox fixture's layer lands with the
//! diff ID and the files the fixtures README lists, and a layer with whiteouts applied in
//! overlay mode into an upper directory, mounted with real overlayfs over its lower, shows
//! exactly the tree a native apply of both layers into one directory gives.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use corral_daemon::diff::{apply, ApplyOptions, Compression, WhiteoutMode};
use corral_tests::harness::{mounts_under, require_root, TempRoot};
use nix::mount::{mount, MsFlags};

const LAYER_DIGEST: &str = "bd45cf941c51781cb1b4cc87cb6a526cf6bb5e3e85bf34876acfb6992c3b1029";
const LAYER_DIFF_ID: &str =
    "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";
const BUSYBOX_LINKS: [&str; 20] = [
    "sh", "ls", "echo", "cat", "true", "false", "sleep", "env", "id", "hostname", "ps", "top",
    "mkdir", "rm", "touch", "wc", "grep", "head", "dd", "yes",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The members of a plain (ustar/GNU) tar archive, name to data: enough to take a blob out
/// of the OCI archive fixture.
fn tar_members(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let field = |block: &[u8], range: std::ops::Range<usize>| {
        let raw = &block[range];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        String::from_utf8(raw[..end].to_vec()).unwrap()
    };
    let mut members = BTreeMap::new();
    let mut offset = 0;
    while offset + 512 <= archive.len() {
        let block = &archive[offset..offset + 512];
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let mut name = field(block, 0..100);
        if &block[257..263] == b"ustar\0" {
            let prefix = field(block, 345..500);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let size = usize::from_str_radix(field(block, 124..136).trim(), 8).unwrap();
        let data = archive[offset + 512..offset + 512 + size].to_vec();
        members.insert(name, data);
        offset += 512 + size.div_ceil(512) * 512;
    }
    members
}

/// A ustar archive written by hand (the test crate has no tar writer).
struct TarWriter {
    out: Vec<u8>,
}

impl TarWriter {
    fn new() -> Self {
        TarWriter { out: Vec::new() }
    }

    fn octal(field: &mut [u8], value: u64) {
        let text = format!("{:0width$o}\0", value, width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    }

    fn entry(mut self, name: &str, typeflag: u8, mode: u32, link: &str, data: &[u8]) -> Self {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        Self::octal(&mut h[100..108], u64::from(mode));
        Self::octal(&mut h[108..116], 0);
        Self::octal(&mut h[116..124], 0);
        Self::octal(&mut h[124..136], data.len() as u64);
        Self::octal(&mut h[136..148], 1_600_000_000);
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        Self::octal(&mut h[329..337], 0);
        Self::octal(&mut h[337..345], 0);
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len().div_ceil(512) * 512, 0);
        self
    }

    fn dir(self, name: &str, mode: u32) -> Self {
        self.entry(name, b'5', mode, "", b"")
    }

    fn file(self, name: &str, mode: u32, data: &str) -> Self {
        self.entry(name, b'0', mode, "", data.as_bytes())
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, b'2', 0o777, target, b"")
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0; 1024]);
        self.out
    }
}

#[test]
fn busybox_layer_lands_with_its_diff_id_and_files() {
    if !require_root("applies a layer owned by root (lchown)") {
        return;
    }
    let archive = std::fs::read(fixture("busybox-oci.tar")).unwrap();
    let members = tar_members(&archive);
    let layer = &members[&format!("blobs/sha256/{LAYER_DIGEST}")];
    assert_eq!(layer.len(), 1_028_485);

    let temp = TempRoot::new().unwrap();
    let rootfs = temp.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let options = ApplyOptions {
        media_type: Some("application/vnd.oci.image.layer.v1.tar+gzip".into()),
        ..ApplyOptions::default()
    };
    let applied = apply(&layer[..], &rootfs, &options).unwrap();
    assert_eq!(applied.diff_id, LAYER_DIFF_ID);
    assert_eq!(applied.compression, Compression::Gzip);

    let meta = |p: &str| std::fs::symlink_metadata(rootfs.join(p)).unwrap();
    let busybox = meta("bin/busybox");
    assert!(busybox.is_file());
    assert_eq!(busybox.mode() & 0o7777, 0o755);
    assert!(busybox.len() > 1_000_000);
    for link in BUSYBOX_LINKS {
        let path = rootfs.join("bin").join(link);
        assert!(
            meta(&format!("bin/{link}")).file_type().is_symlink(),
            "{link}"
        );
        assert_eq!(std::fs::read_link(&path).unwrap(), Path::new("busybox"));
    }
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/group")).unwrap(),
        "root:x:0:\n"
    );
    for dir in ["bin", "etc", "dev", "proc", "sys"] {
        let m = meta(dir);
        assert!(m.is_dir(), "{dir}");
        assert_eq!(m.mode() & 0o7777, 0o755, "{dir}");
    }
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    for empty in ["dev", "proc", "sys", "tmp"] {
        assert_eq!(std::fs::read_dir(rootfs.join(empty)).unwrap().count(), 0);
    }
    // Every entry has mtime 0 and root ownership, directories included (their times are
    // set after their contents).
    let tree = Tree::read(&rootfs);
    assert_eq!(tree.0.len() + 1, 30, "30 inodes counting the root");
    for name in tree.0.keys() {
        let m = meta(name);
        assert_eq!((m.mtime(), m.uid(), m.gid()), (0, 0, 0), "{name}");
    }
}

/// What the comparison looks at for each path: type, mode, owner and content.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        data: Vec<u8>,
    },
    Symlink {
        target: PathBuf,
        uid: u32,
        gid: u32,
    },
    Other {
        kind: &'static str,
        mode: u32,
        rdev: u64,
    },
}

/// A directory tree, path (relative) to node.
#[derive(Debug, PartialEq, Eq)]
struct Tree(BTreeMap<String, Node>);

impl Tree {
    fn read(root: &Path) -> Tree {
        let mut nodes = BTreeMap::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let m = std::fs::symlink_metadata(&path).unwrap();
                let name = path.strip_prefix(root).unwrap().display().to_string();
                let (mode, uid, gid) = (m.mode() & 0o7777, m.uid(), m.gid());
                let t = m.file_type();
                let node = if t.is_dir() {
                    pending.push(path.clone());
                    Node::Dir { mode, uid, gid }
                } else if t.is_file() {
                    let data = std::fs::read(&path).unwrap();
                    Node::File {
                        mode,
                        uid,
                        gid,
                        data,
                    }
                } else if t.is_symlink() {
                    let target = std::fs::read_link(&path).unwrap();
                    Node::Symlink { target, uid, gid }
                } else {
                    let kind = if t.is_char_device() { "char" } else { "other" };
                    Node::Other {
                        kind,
                        mode,
                        rdev: m.rdev(),
                    }
                };
                nodes.insert(name, node);
            }
        }
        Tree(nodes)
    }
}

/// The base layer.
fn lower_layer() -> Vec<u8> {
    TarWriter::new()
        .dir("a/", 0o755)
        .file("a/keep", 0o644, "keep")
        .file("a/gone", 0o644, "gone")
        .dir("a/b/", 0o700)
        .file("a/b/deep", 0o600, "deep")
        .dir("opaque/", 0o755)
        .file("opaque/old", 0o644, "old")
        .dir("opaque/sub/", 0o755)
        .file("opaque/sub/old2", 0o644, "old2")
        .dir("gonedir/", 0o755)
        .file("gonedir/x", 0o644, "x")
        .dir("lower-only/", 0o2750)
        .file("lower-only/victim", 0o644, "victim")
        .file("lower-only/stays", 0o644, "stays")
        .file("top", 0o644, "top v1")
        .symlink("link", "a/keep")
        .finish()
}

/// A layer with whiteouts, an opaque directory (its marker among its entries), a parent that
/// only the lower has, and replacements.
fn upper_layer() -> Vec<u8> {
    TarWriter::new()
        .file("a/.wh.gone", 0o644, "")
        .file("a/b/deep2", 0o640, "deep2")
        .file(".wh.gonedir", 0o644, "")
        .dir("opaque/", 0o750)
        .file("opaque/new", 0o644, "new")
        .file("opaque/.wh..wh..opq", 0o644, "")
        .dir("opaque/sub/", 0o755)
        .file("lower-only/.wh.victim", 0o644, "")
        .file("top", 0o600, "top v2")
        .symlink("link", "top")
        .file("fresh", 0o4755, "fresh")
        .finish()
}

#[test]
fn overlay_apply_matches_a_native_apply_of_both_layers() {
    if !require_root("mounts overlayfs, creates whiteout devices and trusted xattrs") {
        return;
    }
    let temp = TempRoot::new().unwrap();
    let (lower, upper, work, merged, native) = (
        temp.join("lower"),
        temp.join("upper"),
        temp.join("work"),
        temp.join("merged"),
        temp.join("native"),
    );
    for dir in [&lower, &upper, &work, &merged, &native] {
        std::fs::create_dir(dir).unwrap();
    }

    // The reference: both layers applied natively into one directory.
    let native_options = ApplyOptions::default();
    apply(&lower_layer()[..], &native, &native_options).unwrap();
    apply(&upper_layer()[..], &native, &native_options).unwrap();

    // The overlay way: the base as the lower, the second layer into the upper directory.
    apply(&lower_layer()[..], &lower, &native_options).unwrap();
    let overlay_options = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay {
            lowers: vec![lower.clone()],
            user_xattr: false,
        },
        ..ApplyOptions::default()
    };
    apply(&upper_layer()[..], &upper, &overlay_options).unwrap();
    let whiteout = std::fs::symlink_metadata(upper.join("a/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);

    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .unwrap();
    // TempRoot unmounts it when dropped, even if an assertion below fails.
    assert_eq!(mounts_under(&merged).unwrap(), vec![merged.clone()]);

    let merged_tree = Tree::read(&merged);
    let native_tree = Tree::read(&native);
    assert_eq!(merged_tree, native_tree);

    // And the tree is what the two layers mean.
    let names: Vec<&str> = native_tree.0.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "a",
            "a/b",
            "a/b/deep",
            "a/b/deep2",
            "a/keep",
            "fresh",
            "link",
            "lower-only",
            "lower-only/stays",
            "opaque",
            "opaque/new",
            "opaque/sub",
            "top",
        ]
    );
    assert_eq!(
        native_tree.0["lower-only"],
        Node::Dir {
            mode: 0o2750,
            uid: 0,
            gid: 0
        }
    );
    assert_eq!(
        native_tree.0["fresh"],
        Node::File {
            mode: 0o4755,
            uid: 0,
            gid: 0,
            data: b"fresh".to_vec()
        }
    );

    let mut temp = temp;
    temp.cleanup().unwrap();
    assert!(mounts_under(&merged).unwrap().is_empty());
}
