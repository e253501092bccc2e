//! One active write on disk: `ingest/<hex of sha256(ref)>/` holding `ref`, `data`,
//! `startedat`, `updatedat` and, when the size is known, `total` (containerd's
//! `content/local` layout), and the [`Status`] read back from it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::digest;
use super::error::{ContentError, ContentResult};
use crate::metadata::encoding::Timestamp;
use crate::metadata::text_time;

/// Mode of an ingest directory (before the umask), as containerd creates it.
pub(crate) const DIR_MODE: u32 = 0o755;
/// Mode of the files of an ingest (before the umask).
pub(crate) const FILE_MODE: u32 = 0o666;
/// The most of `ref` read back: refs are short; a larger file is damage.
const MAX_REF_LEN: u64 = 1 << 20;
/// The most of a time or total file read back.
const MAX_SMALL_FILE_LEN: u64 = 4096;

/// An active write, as containerd's `content.Status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The backend reference (`<namespace>/<seq>/<ref>` when the metadata layer opened it).
    pub reference: String,
    /// Bytes written so far.
    pub offset: u64,
    /// The size the write announced, if any (containerd's 0 is `None`).
    pub total: Option<u64>,
    /// The digest the writer was opened with; the local store does not keep it on disk, so
    /// a status read from disk has none (the metadata layer keeps it).
    pub expected: Option<String>,
    pub started_at: Timestamp,
    /// The later of the `updatedat` file and the data's modification time (the file is only
    /// rewritten when a writer closes).
    pub updated_at: Timestamp,
}

/// The paths of one ingest.
#[derive(Debug, Clone)]
pub(crate) struct IngestPaths {
    pub dir: PathBuf,
}

impl IngestPaths {
    /// The ingest of `reference` under `ingest_root`: the directory is named by the sha256
    /// of the reference, so any reference gives one plain, fixed-length name.
    pub fn new(ingest_root: &Path, reference: &str) -> Self {
        let d = digest::from_bytes(reference.as_bytes());
        let hex = d.split_once(':').map_or(d.as_str(), |(_, h)| h);
        IngestPaths {
            dir: ingest_root.join(hex),
        }
    }

    pub fn reference(&self) -> PathBuf {
        self.dir.join("ref")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn started_at(&self) -> PathBuf {
        self.dir.join("startedat")
    }

    pub fn updated_at(&self) -> PathBuf {
        self.dir.join("updatedat")
    }

    pub fn total(&self) -> PathBuf {
        self.dir.join("total")
    }
}

/// Go's `no such file or directory` for a missing path, as containerd's messages carry it.
fn missing(op: &str, path: &Path) -> ContentError {
    ContentError::NotFound(format!(
        "{op} {}: no such file or directory",
        path.display()
    ))
}

/// Reads at most `limit` bytes of `path`; a longer file is an error.
fn read_small(path: &Path, limit: u64) -> ContentResult<Vec<u8>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing("open", path)),
        Err(e) => return Err(ContentError::io(format!("open {}", path.display()), e)),
    };
    let mut out = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| ContentError::io(format!("read {}", path.display()), e))?;
    if out.len() as u64 > limit {
        return Err(ContentError::Unknown(format!(
            "{}: longer than {limit} bytes",
            path.display()
        )));
    }
    Ok(out)
}

/// A `startedat`/`updatedat` file.
fn read_time_file(path: &Path) -> ContentResult<Timestamp> {
    let text = read_small(path, MAX_SMALL_FILE_LEN)?;
    let text = std::str::from_utf8(&text).map_err(|_| {
        ContentError::Unknown(format!("could not parse timestamp file {}", path.display()))
    })?;
    text_time::parse(text).map_err(|e| {
        ContentError::Unknown(format!(
            "could not parse timestamp file {}: {e}",
            path.display()
        ))
    })
}

/// The `total` file: a positive decimal, anything else (missing, garbage, 0) is unknown, as
/// containerd reads it.
fn read_total(path: &Path) -> Option<u64> {
    let text = read_small(path, MAX_SMALL_FILE_LEN).ok()?;
    let total: i64 = std::str::from_utf8(&text).ok()?.parse().ok()?;
    u64::try_from(total).ok().filter(|&t| t > 0)
}

/// The status of the ingest in `paths.dir` (containerd's `status`): `NotFound` when its data
/// or ref file is missing; an unreadable time is an error. The ref is taken as written, not
/// checked against the directory name.
pub(crate) fn read_status(paths: &IngestPaths) -> ContentResult<Status> {
    let data = paths.data();
    let meta = match fs::metadata(&data) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing("stat", &data)),
        Err(e) => return Err(ContentError::io(format!("stat {}", data.display()), e)),
    };
    if !meta.is_file() {
        return Err(ContentError::Unknown(format!(
            "{}: not a regular file",
            data.display()
        )));
    }
    let reference = read_small(&paths.reference(), MAX_REF_LEN)?;
    let reference = String::from_utf8(reference).map_err(|_| {
        ContentError::Unknown(format!("{}: not UTF-8", paths.reference().display()))
    })?;
    let started_at =
        read_time_file(&paths.started_at()).map_err(|e| e.context("could not read startedat"))?;
    let updated_at =
        read_time_file(&paths.updated_at()).map_err(|e| e.context("could not read updatedat"))?;
    let modified = Timestamp::new(meta.mtime(), meta.mtime_nsec() as u32);
    Ok(Status {
        reference,
        offset: meta.len(),
        total: read_total(&paths.total()),
        expected: None,
        started_at,
        updated_at: updated_at.max(modified),
    })
}

/// Writes `contents` to `path` as containerd does for small files (`os.WriteFile`, 0666).
pub(crate) fn write_file(path: &Path, contents: &[u8]) -> ContentResult<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(|e| ContentError::io(format!("write {}", path.display()), e))
}

/// Writes a time file containerd's way (`writeToCompletion`): the text goes to
/// `<path>.tmp`, opened `O_SYNC`, which is then renamed over `path`, so a reader sees the old
/// time or the new one, never a torn one.
pub(crate) fn write_time_file(path: &Path, t: Timestamp) -> ContentResult<()> {
    let text = text_time::format(t)
        .map_err(|e| ContentError::Unknown(format!("{}: {e}", path.display())))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_SYNC)
        .mode(FILE_MODE)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| ContentError::io(format!("write tmp file {}", tmp.display()), e))?;
    fs::rename(&tmp, path)
        .map_err(|e| ContentError::io(format!("rename tmp file {}", tmp.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_protocols::rpc::Code;

    fn ingest(dir: &Path, reference: &str) -> IngestPaths {
        let p = IngestPaths::new(dir, reference);
        fs::create_dir(&p.dir).unwrap();
        write_file(&p.reference(), reference.as_bytes()).unwrap();
        write_file(&p.data(), b"abc").unwrap();
        write_file(&p.started_at(), b"2026-11-23T14:11:09.5Z").unwrap();
        write_file(&p.updated_at(), b"2000-01-01T01:00:00+01:00").unwrap();
        p
    }

    #[test]
    fn directory_is_the_sha256_of_the_reference() {
        let p = IngestPaths::new(Path::new("/c/ingest"), "");
        assert_eq!(
            p.dir,
            Path::new("/c/ingest/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        let hostile = IngestPaths::new(Path::new("/c/ingest"), "../../../etc/passwd");
        assert_eq!(hostile.dir.parent(), Some(Path::new("/c/ingest")));
        assert_eq!(hostile.data(), hostile.dir.join("data"));
    }

    #[test]
    fn reads_a_status_like_containerd() {
        let tmp = tempfile::tempdir().unwrap();
        let p = ingest(tmp.path(), "default/1/layer");
        let old = filetime_of(&p.data());
        let s = read_status(&p).unwrap();
        assert_eq!(s.reference, "default/1/layer");
        assert_eq!(s.offset, 3);
        assert_eq!(s.total, None);
        assert_eq!(s.expected, None);
        assert_eq!(
            s.started_at,
            text_time::parse("2026-11-23T14:11:09.5Z").unwrap()
        );
        // The data was written after updatedat's time: its mtime wins.
        assert_eq!(s.updated_at, old);

        write_time_file(&p.updated_at(), Timestamp::new(4_000_000_000, 7)).unwrap();
        assert!(!p.dir.join("updatedat.tmp").exists());
        write_file(&p.total(), b"1024").unwrap();
        let s = read_status(&p).unwrap();
        assert_eq!(s.updated_at, Timestamp::new(4_000_000_000, 7));
        assert_eq!(s.total, Some(1024));
        for garbage in [&b"-5"[..], b"0", b"12x", b"", b"99999999999999999999"] {
            write_file(&p.total(), garbage).unwrap();
            assert_eq!(read_status(&p).unwrap().total, None, "{garbage:?}");
        }
    }

    fn filetime_of(p: &Path) -> Timestamp {
        let m = fs::metadata(p).unwrap();
        Timestamp::new(m.mtime(), m.mtime_nsec() as u32)
    }

    #[test]
    fn damaged_ingests_are_errors_not_panics() {
        let tmp = tempfile::tempdir().unwrap();
        let p = ingest(tmp.path(), "r");
        fs::remove_file(p.data()).unwrap();
        let e = read_status(&p).unwrap_err();
        assert_eq!(e.code(), Code::NOT_FOUND);
        assert!(
            e.to_string().contains("/data: no such file or directory"),
            "{e}"
        );

        let p = ingest(tmp.path(), "r2");
        fs::remove_file(p.reference()).unwrap();
        assert_eq!(read_status(&p).unwrap_err().code(), Code::NOT_FOUND);

        let p = ingest(tmp.path(), "r3");
        write_file(&p.started_at(), b"yesterday").unwrap();
        let e = read_status(&p).unwrap_err();
        assert_eq!(e.code(), Code::UNKNOWN);
        assert!(
            e.to_string()
                .starts_with("could not read startedat: could not parse"),
            "{e}"
        );

        let p = ingest(tmp.path(), "r4");
        fs::remove_file(p.updated_at()).unwrap();
        let e = read_status(&p).unwrap_err();
        assert_eq!(e.code(), Code::NOT_FOUND);
        assert!(
            e.to_string().starts_with("could not read updatedat: open "),
            "{e}"
        );

        let p = ingest(tmp.path(), "r5");
        write_file(&p.reference(), &[0xff, 0xfe]).unwrap();
        assert_eq!(read_status(&p).unwrap_err().code(), Code::UNKNOWN);

        let p = ingest(tmp.path(), "r6");
        fs::remove_file(p.data()).unwrap();
        fs::create_dir(p.data()).unwrap();
        assert_eq!(read_status(&p).unwrap_err().code(), Code::UNKNOWN);

        let p = ingest(tmp.path(), "r7");
        write_file(&p.started_at(), &vec![b'1'; 5000]).unwrap();
        assert_eq!(read_status(&p).unwrap_err().code(), Code::UNKNOWN);
    }
}
