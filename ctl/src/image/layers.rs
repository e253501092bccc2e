//! Finding a file of a snapshot in its layer directories, without mounting the snapshot:
//! overlayfs's merge worked out for one path. The directories of the snapshot's one mount
//! are searched top first (an overlay's upper dir, then its lower dirs; a bind mount's
//! source alone): the topmost entry of a name wins, a whiteout (a 0:0 character device)
//! hides the name below it, and an opaque directory hides the directories below it, as the
//! snapshotter's applier writes them. What this cannot be sure of (a symlink on the way,
//! overlayfs's redirect and metacopy attributes, a mount of another kind) is
//! [`Found::Unsure`], and the caller mounts the snapshot instead.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use corral_protocols::types::mount::Mount;
use corral_protocols::xattr;
use nix::libc;

/// What a path of the merged view is, as far as the layers tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file: this one, in the layer that shows it.
    File(PathBuf),
    /// Nothing is there.
    Missing,
    /// Only mounting can tell.
    Unsure,
}

/// The directories a snapshot's mount merges, top first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers {
    dirs: Vec<PathBuf>,
    /// `trusted.overlay.` or, with the `userxattr` option, `user.overlay.`.
    xattr_prefix: &'static str,
}

impl Layers {
    /// The layers of `mounts` when they are one overlay or one bind mount of absolute
    /// directories; `None` otherwise.
    pub fn of(mounts: &[Mount]) -> Option<Layers> {
        let [m] = mounts else {
            return None;
        };
        let is_bind = m.type_ == "bind" || m.options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let source = PathBuf::from(&m.source);
            return source.is_absolute().then(|| Layers {
                dirs: vec![source],
                xattr_prefix: "trusted.overlay.",
            });
        }
        if m.type_ != "overlay" {
            return None;
        }
        let (mut upper, mut lower) = (None, None);
        let mut xattr_prefix = "trusted.overlay.";
        for o in &m.options {
            if let Some(v) = o.strip_prefix("upperdir=") {
                upper = Some(v);
            } else if let Some(v) = o.strip_prefix("lowerdir=") {
                lower = Some(v);
            } else if o == "userxattr" {
                xattr_prefix = "user.overlay.";
            }
        }
        // Escaped colons and data-only lower layers (`::`) are past what this reads.
        let lower = lower.filter(|l| !l.contains('\\') && !l.contains("::"))?;
        let dirs: Vec<PathBuf> = upper
            .into_iter()
            .chain(lower.split(':'))
            .map(PathBuf::from)
            .collect();
        dirs.iter()
            .all(|d| d.is_absolute())
            .then_some(Layers { dirs, xattr_prefix })
    }

    /// Where the absolute `path` of the merged view is.
    pub fn find(&self, path: &str) -> Found {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.is_empty() || parts.contains(&"..") {
            return Found::Unsure;
        }
        let mut current = self.dirs.clone();
        for (i, name) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut next: Vec<PathBuf> = Vec::new();
            for dir in &current {
                let p = dir.join(name);
                let md = match std::fs::symlink_metadata(&p) {
                    Ok(md) => md,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(_) => return Found::Unsure,
                };
                let kind = md.file_type();
                if kind.is_char_device() && md.rdev() == 0 {
                    // A whiteout: nothing of this name below shows.
                    break;
                }
                let topmost = next.is_empty();
                if !kind.is_dir() && !topmost {
                    // A non-directory under a directory of the same name is hidden.
                    break;
                }
                if last {
                    return if kind.is_file() && !self.has(&p, "metacopy") {
                        Found::File(p)
                    } else {
                        Found::Unsure
                    };
                }
                if !kind.is_dir() || self.has(&p, "redirect") {
                    return Found::Unsure;
                }
                let opaque = match self.get(&p, "opaque") {
                    Xattr::Absent => false,
                    Xattr::Is(v) if v == b"y" => true,
                    Xattr::Is(_) | Xattr::Unreadable => return Found::Unsure,
                };
                next.push(p);
                if opaque {
                    break;
                }
            }
            if next.is_empty() {
                return Found::Missing;
            }
            current = next;
        }
        Found::Unsure
    }

    fn has(&self, path: &Path, name: &str) -> bool {
        !matches!(self.get(path, name), Xattr::Absent)
    }

    fn get(&self, path: &Path, name: &str) -> Xattr {
        let name = format!("{}{name}", self.xattr_prefix);
        match xattr::lgetxattr(path, OsStr::new(&name)) {
            Ok(v) => Xattr::Is(v),
            // None there, or no xattrs at all on this file system: no overlay marker either.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOTSUP)) => {
                Xattr::Absent
            }
            Err(_) => Xattr::Unreadable,
        }
    }
}

/// An extended attribute's value, or why there is none.
enum Xattr {
    Absent,
    Is(Vec<u8>),
    Unreadable,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn overlay(upper: &Path, lowers: &[&Path]) -> Mount {
        let lower: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
        Mount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                "workdir=/w".into(),
                format!("upperdir={}", upper.display()),
                format!("lowerdir={}", lower.join(":")),
            ],
            ..Default::default()
        }
    }

    fn whiteout(path: &Path) -> bool {
        nix::sys::stat::mknod(
            path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .is_ok()
    }

    /// An upper dir and two lower dirs in `t`, each with an empty `etc`.
    fn three_layers(t: &tempfile::TempDir) -> (PathBuf, PathBuf, PathBuf) {
        let dirs = ["up", "l1", "l2"].map(|n| t.path().join(n));
        for d in &dirs {
            fs::create_dir_all(d.join("etc")).unwrap();
        }
        let [up, l1, l2] = dirs;
        (up, l1, l2)
    }

    #[test]
    fn the_topmost_layer_wins_and_whiteouts_hide() {
        let t = tempfile::tempdir().unwrap();
        let (up, l1, l2) = three_layers(&t);
        fs::write(l2.join("etc/group"), "old").unwrap();
        fs::write(l1.join("etc/group"), "new").unwrap();
        fs::write(l2.join("etc/passwd"), "root").unwrap();
        let layers = Layers::of(&[overlay(&up, &[&l1, &l2])]).unwrap();
        assert_eq!(layers.find("/etc/group"), Found::File(l1.join("etc/group")));
        assert_eq!(
            layers.find("/etc/passwd"),
            Found::File(l2.join("etc/passwd"))
        );
        assert_eq!(layers.find("/etc/shadow"), Found::Missing);
        assert_eq!(layers.find("/nope/group"), Found::Missing);
        assert_eq!(layers.find("/etc/../etc/group"), Found::Unsure);

        if whiteout(&l1.join("etc/passwd")) {
            assert_eq!(layers.find("/etc/passwd"), Found::Missing);
        }
        // A directory made opaque hides the lower layers' files.
        if fs::remove_dir_all(l1.join("etc")).is_ok() && whiteout(&l1.join("etc")) {
            assert_eq!(layers.find("/etc/group"), Found::Missing);
        }
    }

    /// Sets a `user.` attribute (allowed to a file's owner on most file systems); false
    /// where the file system refuses.
    fn set_user_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
        xattr::lsetxattr(path, OsStr::new(name), value).is_ok()
    }

    #[test]
    fn an_opaque_directory_hides_the_layers_below() {
        let t = tempfile::tempdir().unwrap();
        let (up, l1, l2) = three_layers(&t);
        fs::write(l2.join("etc/group"), "below").unwrap();
        fs::write(l2.join("etc/passwd"), "below").unwrap();
        fs::write(l1.join("etc/passwd"), "above").unwrap();
        let mut m = overlay(&up, &[&l1, &l2]);
        m.options.push("userxattr".into());
        let layers = Layers::of(&[m]).unwrap();
        assert_eq!(layers.find("/etc/group"), Found::File(l2.join("etc/group")));
        if !set_user_xattr(&l1.join("etc"), "user.overlay.opaque", b"y") {
            eprintln!("skipping the opaque case: no user xattrs here");
            return;
        }
        assert_eq!(layers.find("/etc/group"), Found::Missing);
        assert_eq!(
            layers.find("/etc/passwd"),
            Found::File(l1.join("etc/passwd"))
        );
        // Markers this does not read are left to a mount.
        assert!(set_user_xattr(&l1.join("etc"), "user.overlay.opaque", b"x"));
        assert_eq!(layers.find("/etc/passwd"), Found::Unsure);
        assert!(set_user_xattr(&l1.join("etc"), "user.overlay.opaque", b"y"));
        assert!(set_user_xattr(
            &l1.join("etc/passwd"),
            "user.overlay.metacopy",
            b""
        ));
        assert_eq!(layers.find("/etc/passwd"), Found::Unsure);
    }

    #[test]
    fn symlinks_and_odd_mounts_are_left_to_a_real_mount() {
        let t = tempfile::tempdir().unwrap();
        let (up, l1) = (t.path().join("up"), t.path().join("l1"));
        fs::create_dir_all(l1.join("private/etc")).unwrap();
        fs::create_dir_all(&up).unwrap();
        fs::write(l1.join("private/etc/group"), "g").unwrap();
        std::os::unix::fs::symlink("/private/etc", l1.join("etc")).unwrap();
        let layers = Layers::of(&[overlay(&up, &[&l1])]).unwrap();
        assert_eq!(layers.find("/etc/group"), Found::Unsure);
        assert_eq!(
            layers.find("/private/etc/group"),
            Found::File(l1.join("private/etc/group"))
        );

        let bind = Mount {
            type_: "bind".into(),
            source: l1.display().to_string(),
            options: vec!["rbind".into(), "ro".into()],
            ..Default::default()
        };
        assert_eq!(
            Layers::of(std::slice::from_ref(&bind))
                .unwrap()
                .find("/private/etc/group"),
            Found::File(l1.join("private/etc/group"))
        );
        assert_eq!(Layers::of(&[bind.clone(), bind]), None);
        let tmpfs = Mount {
            type_: "tmpfs".into(),
            source: "tmpfs".into(),
            ..Default::default()
        };
        assert_eq!(Layers::of(&[tmpfs]), None);
        let relative = Mount {
            options: vec!["lowerdir=a:b".into()],
            ..overlay(&up, &[&l1])
        };
        assert_eq!(Layers::of(&[relative]), None);
    }
}
