//! Applying whole layers built in memory: every entry kind with its metadata, replacement
//! rules, whiteouts in both modes, the diff ID, hostile archives and the caps.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;

/// False (after saying why) when the test cannot run here; panics on CI instead.
fn needs_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root (CI=true)");
    }
    eprintln!("skipping {test}: needs root (mknod, chown, trusted xattrs)");
    false
}

/// A layer under construction.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

/// Metadata for one entry.
#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// A file owned by whoever runs the test, so that tests not about ownership run without root.
fn meta() -> Meta {
    Meta {
        mode: 0o644,
        uid: u64::from(nix::unistd::geteuid().as_raw()),
        gid: u64::from(nix::unistd::getegid().as_raw()),
        mtime: 1_600_000_000,
    }
}

impl Layer {
    fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, meta: Meta, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(meta.mode);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(meta.mtime);
        h.set_size(size);
        h
    }

    fn dir(mut self, name: &str, meta: Meta) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, meta, 0);
        self.builder.append_data(&mut h, name, &[][..]).unwrap();
        self
    }

    fn file(mut self, name: &str, data: &[u8], meta: Meta) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, meta, data.len() as u64);
        self.builder.append_data(&mut h, name, data).unwrap();
        self
    }

    fn symlink(mut self, name: &str, target: &str, meta: Meta) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, meta, 0);
        self.builder.append_link(&mut h, name, target).unwrap();
        self
    }

    fn hardlink(mut self, name: &str, target: &str, meta: Meta) -> Self {
        let mut h = Self::header(tar::EntryType::Link, meta, 0);
        self.builder.append_link(&mut h, name, target).unwrap();
        self
    }

    fn device(mut self, name: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
        let mut h = Self::header(
            kind,
            Meta {
                mode: 0o600,
                ..meta()
            },
            0,
        );
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.builder.append_data(&mut h, name, &[][..]).unwrap();
        self
    }

    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }

    /// An entry written byte for byte, for names `tar::Builder` refuses to write.
    fn raw(mut self, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Self {
        let mut h = Self::header(kind, meta(), data.len() as u64);
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname = [0; 100];
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        let out = self.builder.get_mut();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        self
    }

    fn tar(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn sha256(data: &[u8]) -> String {
    let sum = Sha256::digest(data);
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A temporary directory holding the target and, beside it, a sentinel directory that no
/// apply may touch.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("target")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/sentinel"), b"untouched").unwrap();
        Sandbox { dir }
    }

    fn target(&self) -> PathBuf {
        self.dir.path().join("target")
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.target().join(relative)
    }

    fn apply(&self, layer: &[u8]) -> DiffResult<Applied> {
        apply(layer, &self.target(), &ApplyOptions::default())
    }

    /// Nothing was written beside the target: the sandbox holds only `target` and
    /// `outside`, and `outside` only its sentinel, unchanged.
    fn assert_outside_untouched(&self) {
        let top: BTreeSet<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(top, ["outside", "target"].map(String::from).into());
        let outside: Vec<String> = std::fs::read_dir(self.dir.path().join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(outside, ["sentinel"]);
        assert_eq!(
            std::fs::read(self.dir.path().join("outside/sentinel")).unwrap(),
            b"untouched"
        );
    }
}

fn lmeta(path: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn invalid_entry(result: DiffResult<Applied>) -> String {
    match result {
        Err(e @ DiffError::InvalidEntry { .. }) => {
            assert_eq!(e.code(), corral_protocols::rpc::Code::INVALID_ARGUMENT);
            e.to_string()
        }
        other => panic!("expected an invalid entry, got {other:?}"),
    }
}

#[test]
fn every_entry_kind_lands_with_its_metadata() {
    if !needs_root("every_entry_kind_lands_with_its_metadata") {
        return;
    }
    let owned = Meta {
        mode: 0o750,
        uid: 1000,
        gid: 2000,
        mtime: 1_500_000_000,
    };
    let layer = Layer::new()
        .dir("d/", owned)
        .pax(&[
            ("SCHILY.xattr.user.origin", b"layer"),
            (
                "SCHILY.xattr.security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
            ("SCHILY.xattr.trusted.skip", b"x"),
            ("mtime", b"1400000000.5"),
            ("atime", b"1450000000.25"),
        ])
        .file(
            "d/suid",
            b"#!/bin/sh\n",
            Meta {
                mode: 0o4755,
                uid: 0,
                gid: 0,
                mtime: 0,
            },
        )
        .dir(
            "tmp/",
            Meta {
                mode: 0o1777,
                ..meta()
            },
        )
        .dir(
            "sgid/",
            Meta {
                mode: 0o2755,
                uid: 5,
                gid: 6,
                ..meta()
            },
        )
        .file(
            "d/data",
            b"contents",
            Meta {
                mode: 0o640,
                uid: 7,
                gid: 8,
                mtime: 1_234_567_890,
            },
        )
        .symlink(
            "d/link",
            "data",
            Meta {
                mode: 0o777,
                uid: 9,
                gid: 10,
                mtime: 1_111_111_111,
            },
        )
        .symlink("d/abs", "/etc/passwd", meta())
        .hardlink(
            "d/hard",
            "d/data",
            Meta {
                mode: 0o640,
                uid: 7,
                gid: 8,
                mtime: 1_234_567_890,
            },
        )
        .device("dev/null", tar::EntryType::Char, 1, 3)
        .device("dev/loop0", tar::EntryType::Block, 7, 0)
        .device("dev/fifo", tar::EntryType::Fifo, 0, 0)
        .tar();
    let sandbox = Sandbox::new();
    let applied = sandbox.apply(&layer).unwrap();
    assert_eq!(applied.diff_id, sha256(&layer));
    assert_eq!(applied.size, layer.len() as u64);

    let d = lmeta(&sandbox.path("d"));
    assert!(d.is_dir());
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 1000, 2000));
    // Set after the entries written into it.
    assert_eq!(d.mtime(), 1_500_000_000);

    let suid = lmeta(&sandbox.path("d/suid"));
    assert_eq!(suid.mode() & 0o7777, 0o4755, "setuid survives the chown");
    assert_eq!(
        (suid.mtime(), suid.mtime_nsec()),
        (1_400_000_000, 500_000_000)
    );
    assert_eq!(
        (suid.atime(), suid.atime_nsec()),
        (1_450_000_000, 250_000_000)
    );
    let xattr = |path: &str, name: &str| sys::lgetxattr(&sandbox.path(path), name.as_bytes());
    assert_eq!(xattr("d/suid", "user.origin").unwrap(), b"layer");
    assert_eq!(xattr("d/suid", "security.capability").unwrap().len(), 20);
    assert_eq!(
        xattr("d/suid", "trusted.skip").unwrap_err().raw_os_error(),
        Some(libc::ENODATA),
        "trusted xattrs from an archive are not set"
    );

    assert_eq!(lmeta(&sandbox.path("tmp")).mode() & 0o7777, 0o1777);
    let sgid = lmeta(&sandbox.path("sgid"));
    assert_eq!(
        (sgid.mode() & 0o7777, sgid.uid(), sgid.gid()),
        (0o2755, 5, 6)
    );

    let data = lmeta(&sandbox.path("d/data"));
    assert_eq!(std::fs::read(sandbox.path("d/data")).unwrap(), b"contents");
    assert_eq!(
        (data.mode() & 0o7777, data.uid(), data.gid()),
        (0o640, 7, 8)
    );
    assert_eq!(data.mtime(), 1_234_567_890);
    assert_eq!(data.atime(), 1_234_567_890, "atime defaults to mtime");
    assert_eq!(data.nlink(), 2);
    let hard = lmeta(&sandbox.path("d/hard"));
    assert_eq!(hard.ino(), data.ino());

    let link = lmeta(&sandbox.path("d/link"));
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(sandbox.path("d/link")).unwrap(),
        Path::new("data")
    );
    assert_eq!(
        (link.uid(), link.gid(), link.mtime()),
        (9, 10, 1_111_111_111)
    );
    assert_eq!(
        std::fs::read_link(sandbox.path("d/abs")).unwrap(),
        Path::new("/etc/passwd"),
        "symlink targets may point anywhere"
    );

    let null = lmeta(&sandbox.path("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o600);
    let loop0 = lmeta(&sandbox.path("dev/loop0"));
    assert!(loop0.file_type().is_block_device());
    assert_eq!(loop0.rdev(), nix::sys::stat::makedev(7, 0));
    assert!(lmeta(&sandbox.path("dev/fifo")).file_type().is_fifo());
    // A parent the layer never named is created 0755.
    assert_eq!(lmeta(&sandbox.path("dev")).mode() & 0o7777, 0o755);
    sandbox.assert_outside_untouched();
}

#[test]
fn existing_entries_are_replaced_as_containerd_does() {
    let sandbox = Sandbox::new();
    let mine = meta();
    let lower = Layer::new()
        .dir(
            "keep/",
            Meta {
                mode: 0o755,
                ..mine
            },
        )
        .file("keep/child", b"lower", mine)
        .dir(
            "dir-to-file/",
            Meta {
                mode: 0o755,
                ..mine
            },
        )
        .file("dir-to-file/child", b"", mine)
        .file("file-to-dir", b"", mine)
        .file("file-to-link", b"", mine)
        .symlink("link-to-dir", "keep", mine)
        .tar();
    sandbox.apply(&lower).unwrap();
    let upper = Layer::new()
        .dir(
            "keep/",
            Meta {
                mode: 0o700,
                ..mine
            },
        )
        .file("dir-to-file", b"now a file", mine)
        .dir(
            "file-to-dir/",
            Meta {
                mode: 0o755,
                ..mine
            },
        )
        .symlink("file-to-link", "keep", mine)
        .dir(
            "link-to-dir/",
            Meta {
                mode: 0o755,
                ..mine
            },
        )
        .tar();
    sandbox.apply(&upper).unwrap();

    assert_eq!(
        std::fs::read(sandbox.path("keep/child")).unwrap(),
        b"lower",
        "a directory entry over a directory keeps its contents"
    );
    assert_eq!(lmeta(&sandbox.path("keep")).mode() & 0o7777, 0o700);
    assert!(lmeta(&sandbox.path("dir-to-file")).is_file());
    assert!(lmeta(&sandbox.path("file-to-dir")).is_dir());
    assert!(lmeta(&sandbox.path("file-to-link"))
        .file_type()
        .is_symlink());
    let replaced = lmeta(&sandbox.path("link-to-dir"));
    assert!(
        replaced.is_dir(),
        "a directory entry replaces a symlink to a directory"
    );
    assert!(exists(&sandbox.path("keep/child")));
    sandbox.assert_outside_untouched();
}

#[test]
fn native_whiteouts_remove_and_opaque_dirs_hide_lower_contents() {
    let sandbox = Sandbox::new();
    let mine = meta();
    let lower = Layer::new()
        .file("gone", b"", mine)
        .dir(
            "gonedir/",
            Meta {
                mode: 0o755,
                ..mine
            },
        )
        .file("gonedir/inner", b"", mine)
        .dir(
            "before/",
            Meta {
                mode: 0o755,
                ..mine
            },
        )
        .file("before/old", b"", mine)
        .dir(
            "before/sub/",
            Meta {
                mode: 0o755,
                ..mine
            },
        )
        .file("before/sub/old", b"", mine)
        .dir(
            "after/",
            Meta {
                mode: 0o755,
                ..mine
            },
        )
        .file("after/old", b"", mine)
        .file("after/replaced", b"old", mine)
        .file("stays", b"", mine)
        .tar();
    sandbox.apply(&lower).unwrap();
    let upper = Layer::new()
        .file(".wh.gone", b"", mine)
        .file(".wh.gonedir", b"", mine)
        .file(".wh.never-existed", b"", mine)
        // The marker before the directory's own entries...
        .file("before/.wh..wh..opq", b"", mine)
        .file("before/new", b"", mine)
        // ...and after them.
        .file("after/new", b"", mine)
        .file("after/replaced", b"new", mine)
        .file("after/.wh..wh..opq", b"", mine)
        .tar();
    sandbox.apply(&upper).unwrap();

    assert!(!exists(&sandbox.path("gone")));
    assert!(!exists(&sandbox.path("gonedir")));
    assert!(!exists(&sandbox.path(".wh.gone")));
    assert!(!exists(&sandbox.path(".wh.never-existed")));
    let list = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(sandbox.path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(list("before"), ["new".to_string()].into());
    assert_eq!(list("after"), ["new", "replaced"].map(String::from).into());
    assert_eq!(
        std::fs::read(sandbox.path("after/replaced")).unwrap(),
        b"new"
    );
    assert!(exists(&sandbox.path("stays")));
    sandbox.assert_outside_untouched();
}

#[test]
fn overlay_whiteouts_become_devices_and_opaque_xattrs() {
    if !needs_root("overlay_whiteouts_become_devices_and_opaque_xattrs") {
        return;
    }
    let sandbox = Sandbox::new();
    // A lower with a directory only it has, with an owner, a mode, times and xattrs.
    let lower = sandbox.dir.path().join("outside/lower");
    std::fs::create_dir_all(lower.join("only-lower/deep")).unwrap();
    nix::unistd::chown(
        &lower.join("only-lower"),
        Some(nix::unistd::Uid::from_raw(33)),
        Some(nix::unistd::Gid::from_raw(44)),
    )
    .unwrap();
    std::fs::set_permissions(
        lower.join("only-lower"),
        std::os::unix::fs::PermissionsExt::from_mode(0o2750),
    )
    .unwrap();
    sys::lsetxattr(&lower.join("only-lower"), b"user.inherit", b"me", 0).unwrap();
    sys::lsetxattr(
        &lower.join("only-lower"),
        b"trusted.overlay.opaque",
        b"y",
        0,
    )
    .unwrap();
    let t = tar_reader::Timestamp {
        secs: 1_300_000_000,
        nanos: 0,
    };
    sys::set_times(&lower.join("only-lower"), t, t).unwrap();

    let layer = Layer::new()
        .file(
            "only-lower/.wh.victim",
            b"",
            Meta {
                uid: 12,
                gid: 34,
                ..meta()
            },
        )
        .dir(
            "opaque/",
            Meta {
                mode: 0o755,
                ..meta()
            },
        )
        .file("opaque/.wh..wh..opq", b"", meta())
        .file("opaque/kept", b"", meta())
        .tar();
    let upper = sandbox.target();
    let options = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay {
            lowers: vec![lower.clone()],
            user_xattr: false,
        },
        ..ApplyOptions::default()
    };
    apply(&layer[..], &upper, &options).unwrap();

    let victim = lmeta(&upper.join("only-lower/victim"));
    assert!(victim.file_type().is_char_device());
    assert_eq!(victim.rdev(), 0);
    assert_eq!((victim.uid(), victim.gid()), (12, 34));
    assert!(!exists(&upper.join("only-lower/.wh.victim")));

    // The parent that only the lower had took the lower's attributes, trusted xattrs aside.
    let parent = lmeta(&upper.join("only-lower"));
    assert_eq!(
        (parent.mode() & 0o7777, parent.uid(), parent.gid()),
        (0o2750, 33, 44)
    );
    // (Its mtime changed when the whiteout was created in it, as in containerd.)
    assert_eq!(parent.atime(), 1_300_000_000);
    assert_eq!(
        sys::lgetxattr(&upper.join("only-lower"), b"user.inherit").unwrap(),
        b"me"
    );
    assert!(sys::lgetxattr(&upper.join("only-lower"), b"trusted.overlay.opaque").is_err());

    assert_eq!(
        sys::lgetxattr(&upper.join("opaque"), b"trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert!(exists(&upper.join("opaque/kept")));
    assert!(!exists(&upper.join("opaque/.wh..wh..opq")));

    // userxattr mounts get the user.* variant.
    let user = Sandbox::new();
    let options = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay {
            lowers: Vec::new(),
            user_xattr: true,
        },
        ..ApplyOptions::default()
    };
    apply(&layer[..], &user.target(), &options).unwrap();
    assert_eq!(
        sys::lgetxattr(&user.path("opaque"), b"user.overlay.opaque").unwrap(),
        b"y"
    );
    assert!(sys::lgetxattr(&user.path("opaque"), b"trusted.overlay.opaque").is_err());
    // Without lowers, a missing parent is a plain 0755 directory.
    assert_eq!(lmeta(&user.path("only-lower")).mode() & 0o7777, 0o755);
}

#[test]
fn diff_id_is_the_digest_of_the_whole_uncompressed_stream() {
    let mut layer = Layer::new().file("a", b"alpha", meta()).tar();
    // Trailing record padding, as GNU tar writes it.
    layer.resize(10240, 0);
    let want = sha256(&layer);

    for (blob, media_type, compression) in [
        (layer.clone(), None, Compression::Uncompressed),
        (gzip(&layer), None, Compression::Gzip),
        (
            gzip(&layer),
            Some("application/vnd.oci.image.layer.v1.tar+gzip"),
            Compression::Gzip,
        ),
        (
            layer.clone(),
            Some("application/vnd.oci.image.layer.v1.tar"),
            Compression::Uncompressed,
        ),
        (zstd(&layer), None, Compression::Zstd),
        (
            zstd(&layer),
            Some("application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::Zstd,
        ),
        // A Docker layer type compressed without saying so is sniffed.
        (
            gzip(&layer),
            Some("application/vnd.docker.image.rootfs.diff.tar"),
            Compression::Gzip,
        ),
    ] {
        let sandbox = Sandbox::new();
        let options = ApplyOptions {
            media_type: media_type.map(String::from),
            ..ApplyOptions::default()
        };
        let applied = apply(&blob[..], &sandbox.target(), &options).unwrap();
        assert_eq!(applied.diff_id, want, "{media_type:?}");
        assert_eq!(applied.size, 10240);
        assert_eq!(applied.compression, compression);
        assert_eq!(std::fs::read(sandbox.path("a")).unwrap(), b"alpha");
    }

    // An empty blob is an empty layer.
    let sandbox = Sandbox::new();
    let applied = sandbox.apply(&[]).unwrap();
    assert_eq!(applied.diff_id, sha256(&[]));
    assert_eq!(applied.size, 0);
}

#[test]
fn media_types_and_streams_containerd_refuses() {
    let sandbox = Sandbox::new();
    let options = |media_type: &str| ApplyOptions {
        media_type: Some(media_type.into()),
        ..ApplyOptions::default()
    };
    let layer = Layer::new().tar();
    let e = apply(
        &layer[..],
        &sandbox.target(),
        &options("application/vnd.oci.image.manifest.v1+json"),
    )
    .unwrap_err();
    assert_eq!(e.code(), corral_protocols::rpc::Code::UNIMPLEMENTED);

    // A gzip stream under an uncompressed type is not decompressed: not a tar.
    let e = apply(
        &gzip(&layer)[..],
        &sandbox.target(),
        &options("application/vnd.oci.image.layer.v1.tar"),
    )
    .unwrap_err();
    assert!(matches!(e, DiffError::InvalidArchive(_)), "{e}");

    // A corrupt gzip stream.
    let mut corrupt = gzip(&Layer::new().file("f", &[7u8; 4096], meta()).tar());
    let middle = corrupt.len() / 2;
    corrupt[middle..].iter_mut().for_each(|b| *b = !*b);
    let e = apply(&corrupt[..], &sandbox.target(), &ApplyOptions::default()).unwrap_err();
    assert_eq!(
        e.code(),
        corral_protocols::rpc::Code::INVALID_ARGUMENT,
        "{e}"
    );

    // A target that is not a directory.
    let file = sandbox.dir.path().join("outside/sentinel");
    let e = apply(&layer[..], &file, &ApplyOptions::default()).unwrap_err();
    assert!(matches!(e, DiffError::InvalidOptions(_)), "{e}");
    sandbox.assert_outside_untouched();
}

#[test]
fn hostile_names_are_refused() {
    for (name, why) in [
        (&b"../escape"[..], "name climbs above the root"),
        (b"a/../../escape", "name climbs above the root"),
        (b"/abs/escape", "absolute name"),
        (b"dir/.wh..", "invalid whiteout name"),
        (b".wh.", "invalid whiteout name"),
    ] {
        let sandbox = Sandbox::new();
        let layer = Layer::new()
            .raw(name, tar::EntryType::Regular, b"", b"evil")
            .tar();
        let message = invalid_entry(sandbox.apply(&layer));
        assert!(message.contains(why), "{message}");
        assert!(
            message.contains(&*String::from_utf8_lossy(name)),
            "the message names the entry: {message}"
        );
        sandbox.assert_outside_untouched();
    }
}

#[test]
fn symlinks_in_parents_resolve_inside_the_target() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .symlink("abs", "/outside", meta())
        .symlink("rel", "../../../../outside", meta())
        .symlink("dotdot", "..", meta())
        .raw(b"abs/pwned", tar::EntryType::Regular, b"", b"1")
        .raw(b"rel/pwned2", tar::EntryType::Regular, b"", b"2")
        .raw(b"dotdot/outside/pwned3", tar::EntryType::Regular, b"", b"3")
        .raw(b"abs/deeper/pwned4", tar::EntryType::Directory, b"", b"")
        .tar();
    sandbox.apply(&layer).unwrap();
    // Everything landed under target/outside, the chroot view of /outside.
    for (name, data) in [("pwned", "1"), ("pwned2", "2"), ("pwned3", "3")] {
        assert_eq!(
            std::fs::read_to_string(sandbox.path("outside").join(name)).unwrap(),
            data
        );
    }
    assert!(lmeta(&sandbox.path("outside/deeper/pwned4")).is_dir());
    sandbox.assert_outside_untouched();
}

#[test]
fn hostile_links_are_refused() {
    let cases: [(&[u8], &str); 5] = [
        (b"../outside/sentinel", "climbs above the root"),
        (b"/outside/sentinel", "absolute name"),
        (b"missing", "does not exist"),
        (b"dir", "hard link to a directory"),
        (b"abs/sentinel", "does not exist"),
    ];
    for (target, why) in cases {
        let sandbox = Sandbox::new();
        let layer = Layer::new()
            .dir(
                "dir/",
                Meta {
                    mode: 0o755,
                    ..meta()
                },
            )
            .symlink("abs", "/outside", meta())
            .raw(b"link", tar::EntryType::Link, target, b"")
            .tar();
        let message = invalid_entry(sandbox.apply(&layer));
        assert!(message.contains(why), "{message}");
        assert!(message.contains("\"link\""), "{message}");
        assert!(!exists(&sandbox.path("link")));
        // The sentinel did not gain a link.
        assert_eq!(
            lmeta(&sandbox.dir.path().join("outside/sentinel")).nlink(),
            1
        );
        sandbox.assert_outside_untouched();
    }
}

#[test]
fn a_link_through_a_symlink_stays_inside() {
    if !needs_root("a_link_through_a_symlink_stays_inside") {
        return;
    }
    // `abs -> /outside` makes `abs/sentinel` mean target/outside/sentinel.
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .dir(
            "outside/",
            Meta {
                mode: 0o755,
                ..meta()
            },
        )
        .file("outside/sentinel", b"inside", meta())
        .symlink("abs", "/outside", meta())
        .hardlink("link", "abs/sentinel", meta())
        .tar();
    sandbox.apply(&layer).unwrap();
    assert_eq!(std::fs::read(sandbox.path("link")).unwrap(), b"inside");
    assert_eq!(
        lmeta(&sandbox.path("link")).ino(),
        lmeta(&sandbox.path("outside/sentinel")).ino()
    );
    sandbox.assert_outside_untouched();
}

#[test]
fn absurd_headers_are_refused() {
    // A PAX header of 2 MiB.
    let sandbox = Sandbox::new();
    let big = vec![b'a'; 2 << 20];
    let layer = Layer::new()
        .pax(&[("comment", &big)])
        .file("f", b"", meta())
        .tar();
    let message = invalid_entry(sandbox.apply(&layer));
    assert!(message.contains("over the limit"), "{message}");

    // A name longer than PATH_MAX (through a PAX path record).
    let long = "d/".repeat(2100) + "f";
    let layer = Layer::new()
        .pax(&[("path", long.as_bytes())])
        .file("f", b"", meta())
        .tar();
    let message = invalid_entry(sandbox.apply(&layer));
    assert!(message.contains("longer than PATH_MAX"), "{message}");

    // A symlink loop in a parent.
    let layer = Layer::new()
        .symlink("a", "b", meta())
        .symlink("b", "a", meta())
        .raw(b"a/x", tar::EntryType::Regular, b"", b"")
        .tar();
    let message = invalid_entry(sandbox.apply(&layer));
    assert!(message.contains("too many links"), "{message}");
    sandbox.assert_outside_untouched();
}

#[test]
fn decompression_bombs_hit_the_cap() {
    let sandbox = Sandbox::new();
    let capped = |limit: u64| ApplyOptions {
        max_uncompressed_bytes: limit,
        ..ApplyOptions::default()
    };
    // 1 MiB of zeros in a file compresses to about a kilobyte.
    let layer = Layer::new()
        .file("zeros", &vec![0u8; 1 << 20], meta())
        .tar();
    let bomb = gzip(&layer);
    assert!(bomb.len() < 8 << 10);
    let e = apply(&bomb[..], &sandbox.target(), &capped(64 << 10)).unwrap_err();
    assert!(
        matches!(e, DiffError::TooLarge { limit } if limit == 64 << 10),
        "{e}"
    );
    assert_eq!(e.code(), corral_protocols::rpc::Code::INVALID_ARGUMENT);
    assert!(
        !exists(&sandbox.path("zeros")),
        "refused before any data was written"
    );

    // Many small entries, or a tail of zeros after the archive, are counted too.
    let mut tail = Layer::new().file("small", b"x", meta()).tar();
    tail.resize(1 << 20, 0);
    let e = apply(&gzip(&tail)[..], &sandbox.target(), &capped(64 << 10));
    assert!(matches!(e, Err(DiffError::TooLarge { .. })), "{e:?}");

    let mut many = Layer::new();
    for i in 0..10 {
        many = many.file(&format!("f{i}"), b"", meta());
    }
    let options = ApplyOptions {
        max_entries: 5,
        ..ApplyOptions::default()
    };
    let e = apply(&many.tar()[..], &sandbox.target(), &options);
    assert!(
        matches!(e, Err(DiffError::TooManyEntries { limit: 5 })),
        "{e:?}"
    );
    sandbox.assert_outside_untouched();
}

#[test]
fn mutated_archives_are_refused_or_applied_but_never_escape() {
    // Deterministic pseudo-random damage (xorshift) to a layer with every kind of entry, in
    // each compression: the applier must answer (no panic) and stay inside its target.
    let me = meta();
    let layer = Layer::new()
        .dir("d/", Meta { mode: 0o755, ..me })
        .file("d/f", &b"data".repeat(300), me)
        .symlink("d/l", "../../outside", me)
        .hardlink("d/h", "d/f", me)
        .pax(&[("SCHILY.xattr.user.k", b"v")])
        .file("d/.wh.gone", b"", me)
        .file("d/.wh..wh..opq", b"", me)
        .file("x", b"", me)
        .tar();
    let iterations: u64 = std::env::var("CORRAL_DIFF_FUZZ")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for blob in [layer.clone(), gzip(&layer), zstd(&layer)] {
        for _ in 0..iterations {
            let mut damaged = blob.clone();
            for _ in 0..=(next() % 4) {
                let at = (next() % damaged.len() as u64) as usize;
                damaged[at] = next() as u8;
            }
            if next() % 5 == 0 {
                damaged.truncate((next() % damaged.len() as u64) as usize);
            }
            let sandbox = Sandbox::new();
            let options = ApplyOptions {
                max_uncompressed_bytes: 1 << 20,
                ..ApplyOptions::default()
            };
            let _ = apply(&damaged[..], &sandbox.target(), &options);
            sandbox.assert_outside_untouched();
        }
    }
}
