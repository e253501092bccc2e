//! The mount table as this process sees it (`/proc/self/mountinfo`), and unmounting
//! everything below a directory.
//!
//! Mount points in `mountinfo` escape space, tab, newline and backslash as octal (`\040`,
//! `\011`, `\012`, `\134`); [`decode_octal_escapes`] undoes that, so paths compare equal to
//! the real ones.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// One line of `/proc/<pid>/mountinfo` (see proc(5)); only the fields the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Unique mount id.
    pub id: u32,
    /// Id of the parent mount.
    pub parent_id: u32,
    /// Root of the mount inside its file system (`/` unless a bind mount of a subdirectory).
    pub root: PathBuf,
    /// Where it is mounted, relative to this process's root.
    pub mount_point: PathBuf,
    /// File system type (`tmpfs`, `overlay`, `cgroup2`...).
    pub fs_type: String,
    /// Mount source (`tmpfs`, `/dev/vda`, `overlay`...).
    pub source: String,
    /// Per-superblock options (for cgroup v1 they name the controllers).
    pub super_options: String,
}

/// Decodes the octal escapes (`\ooo`) that the kernel uses in `mountinfo` fields.
pub fn decode_octal_escapes(field: &str) -> OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && is_octal_triplet(&bytes[i + 1..i + 4]) {
            let value = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            // Three octal digits can exceed a byte (\777); such a field is not an escape.
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

fn is_octal_triplet(digits: &[u8]) -> bool {
    digits.len() == 3 && digits.iter().all(|d| (b'0'..=b'7').contains(d))
}

/// Parses the text of a `mountinfo` file; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let id = fields.next()?.parse().ok()?;
    let parent_id = fields.next()?.parse().ok()?;
    let _major_minor = fields.next()?;
    let root = PathBuf::from(decode_octal_escapes(fields.next()?));
    let mount_point = PathBuf::from(decode_octal_escapes(fields.next()?));
    let mut tail = after.split(' ');
    let fs_type = tail.next()?.to_string();
    let source = decode_octal_escapes(tail.next()?)
        .to_string_lossy()
        .into_owned();
    let super_options = tail.next().unwrap_or_default().to_string();
    Some(MountEntry {
        id,
        parent_id,
        root,
        mount_point,
        fs_type,
        source,
        super_options,
    })
}

/// The mount table of this process.
pub fn mount_table() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// Every mount point at or below `path`, in mount-table order (a parent before what is mounted
/// on top of or below it). `path` is canonicalised first when it exists.
pub fn mounts_under(path: &Path) -> io::Result<Vec<PathBuf>> {
    let base = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    Ok(mount_table()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(&base))
        .collect())
}

/// Unmounts everything at or below `path`, deepest first, falling back to a lazy unmount
/// (`MNT_DETACH`) for a busy mount; repeats until nothing is left (stacked mounts need one
/// round each). Fails, naming the mounts left, when that does not converge.
pub fn unmount_all_under(path: &Path) -> io::Result<()> {
    const ROUNDS: usize = 16;
    let mut last_errors = Vec::new();
    for _ in 0..ROUNDS {
        let mut mounts = mounts_under(path)?;
        if mounts.is_empty() {
            return Ok(());
        }
        // Latest-mounted first, then deepest first: children go before their parents.
        mounts.reverse();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        last_errors.clear();
        for mount in &mounts {
            if umount2(mount.as_path(), MntFlags::empty()).is_ok() {
                continue;
            }
            if let Err(e) = umount2(mount.as_path(), MntFlags::MNT_DETACH) {
                last_errors.push(format!("{}: {e}", mount.display()));
            }
        }
    }
    let left = mounts_under(path)?;
    if left.is_empty() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "could not unmount {:?} under {} ({})",
        left,
        path.display(),
        last_errors.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            decode_octal_escapes(r"/tmp/a\040b"),
            OsString::from("/tmp/a b")
        );
        assert_eq!(
            decode_octal_escapes(r"/x\134y\011z"),
            OsString::from("/x\\y\tz")
        );
        assert_eq!(decode_octal_escapes(r"/x\04"), OsString::from(r"/x\04"));
        assert_eq!(decode_octal_escapes(r"\777"), OsString::from(r"\777"));
    }

    #[test]
    fn parses_a_line() {
        let text =
            "36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    garbage\n";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!((e.id, e.parent_id), (36, 35));
        assert_eq!(e.root, PathBuf::from("/mnt1"));
        assert_eq!(e.mount_point, PathBuf::from("/mnt 2"));
        assert_eq!(e.fs_type, "ext3");
        assert_eq!(e.source, "/dev/root");
        assert_eq!(e.super_options, "rw,errors=continue");
    }
}
