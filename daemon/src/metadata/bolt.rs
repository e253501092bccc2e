//! Opening containerd-compatible bolt files (meta.db, overlayfs metadata.db) with `bbolt-rs`.
//!
//! The crate is only ever handed a file that has passed our own checks (see the design
//! note bbolt-rs.md, pitfalls 1, 2 and 4):
//! * the file lock is probed without blocking, so a file held by containerd or another corrald
//!   fails at once with [`BoltError::InUse`] instead of hanging forever;
//! * both meta pages are validated here (magic, version, page size, FNV-1a checksum, page ids
//!   inside the file), and so are the pages the crate reads while opening (the freelist, every
//!   id in it, and the root bucket's page header), so a truncated or garbage file gives
//!   [`BoltError::Corrupt`] and is never modified. Release builds abort on a panic, so these
//!   checks, not unwinding, are what keep a damaged file from taking the daemon down at open
//!   (damage found later panics, as it makes containerd's Go bbolt panic); builds that unwind
//!   (tests) also catch a panic left inside the crate during open;
//! * a new file is created 0644 and made durable (file and directory entry fsynced).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

pub use bbolt_rs::{Bolt, DbApi, DbRwAPI, TxRef, TxRwRef};

/// bolt's magic number (Go bbolt, and bbolt-rs with its `compat` feature).
pub const MAGIC: u32 = 0xED0C_DAED;
/// The only data file version bolt knows.
pub const VERSION: u32 = 2;
/// Mode of a newly created database file (containerd opens meta.db with 0644).
pub const FILE_MODE: u32 = 0o644;
/// Mode of a parent directory we create (containerd's plugin root: `os.MkdirAll(ic.Root, 0711)`).
pub const DIR_MODE: u32 = 0o711;

/// Offset of the meta struct inside a meta page (after the 16-byte page header).
const META_OFFSET: usize = 16;
/// magic, version, page_size, flags (4 x u32), root {pgid, seq}, freelist, pgid, txid (5 x u64).
const META_CHECKSUMMED_LEN: usize = 16 + 5 * 8;
const PAGE_FLAG_BRANCH: u16 = 0x01;
const PAGE_FLAG_LEAF: u16 = 0x02;
const PAGE_FLAG_META: u16 = 0x04;
const PAGE_FLAG_FREELIST: u16 = 0x10;
/// Bytes of a page header: id u64, flags u16, count u16, overflow u32.
const PAGE_HEADER_LEN: usize = 16;
const MIN_PAGE_SIZE: u32 = 512;
const MAX_PAGE_SIZE: u32 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Exclusive lock; the file and its parent directory are created when missing.
    ReadWrite,
    /// Shared lock; the file must exist. Writing through such a [`Db`] is refused.
    ReadOnly,
}

#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    #[error("{} is in use by another process{}", path.display(), holder_suffix(*holder))]
    InUse { path: PathBuf, holder: Option<u32> },
    #[error("{} is not a valid bolt database: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Bolt {
        path: PathBuf,
        source: bbolt_rs::Error,
    },
    #[error("{} is opened read-only", path.display())]
    ReadOnly { path: PathBuf },
}

fn holder_suffix(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!(" (pid {pid})"),
        None => String::new(),
    }
}

/// An open bolt database. Clone it to use it from another thread.
#[derive(Clone)]
pub struct Db {
    bolt: Bolt,
    path: PathBuf,
    mode: OpenMode,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Db {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> OpenMode {
        self.mode
    }

    /// Runs `f` in a read-only transaction.
    pub fn view<'tx, F>(&'tx self, f: F) -> Result<(), BoltError>
    where
        F: FnMut(TxRef<'tx>) -> bbolt_rs::Result<()>,
    {
        self.bolt.view(f).map_err(|source| self.err(source))
    }

    /// Runs `f` in a read-write transaction, committed when `f` returns `Ok`.
    pub fn update<'tx, F>(&'tx mut self, f: F) -> Result<(), BoltError>
    where
        F: FnMut(TxRwRef<'tx>) -> bbolt_rs::Result<()>,
    {
        if self.mode == OpenMode::ReadOnly {
            // The crate would write into a read-only mapping.
            return Err(BoltError::ReadOnly {
                path: self.path.clone(),
            });
        }
        let path = self.path.clone();
        self.bolt
            .update(f)
            .map_err(|source| BoltError::Bolt { path, source })
    }

    fn err(&self, source: bbolt_rs::Error) -> BoltError {
        BoltError::Bolt {
            path: self.path.clone(),
            source,
        }
    }
}

/// Opens (or, for [`OpenMode::ReadWrite`], creates) the bolt file at `path`.
pub fn open_db(path: impl AsRef<Path>, mode: OpenMode) -> Result<Db, BoltError> {
    let path = path.as_ref().to_path_buf();
    let io_err = |source: io::Error| BoltError::Io {
        path: path.clone(),
        source,
    };

    let exists = match fs::metadata(&path) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound && mode == OpenMode::ReadWrite => false,
        Err(e) => return Err(io_err(e)),
    };

    if exists {
        probe_lock(&path, mode)?;
        validate_file(&path)?;
    } else if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(parent)
            .map_err(io_err)?;
    }

    let opened = panic::catch_unwind(AssertUnwindSafe(|| match mode {
        OpenMode::ReadWrite => Bolt::open(&path),
        OpenMode::ReadOnly => Bolt::open_ro(path.clone()).map(ro_into_bolt),
    }));
    let bolt = match opened {
        Ok(Ok(bolt)) => bolt,
        Ok(Err(source)) => return Err(BoltError::Bolt { path, source }),
        Err(payload) => {
            let reason = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic while opening".to_string());
            return Err(BoltError::Corrupt {
                path,
                reason: format!("bbolt-rs panicked: {reason}"),
            });
        }
    };

    if !exists {
        make_durable(&path).map_err(io_err)?;
    }
    Ok(Db { bolt, path, mode })
}

/// `Bolt::open_ro` returns `impl DbApi`; in bbolt-rs 1.3.10 (pinned) that is a `Bolt`.
fn ro_into_bolt(db: impl DbApi + 'static) -> Bolt {
    let any: Box<dyn std::any::Any> = Box::new(db);
    *any.downcast::<Bolt>()
        .expect("bbolt-rs 1.3.10 Bolt::open_ro returns a Bolt")
}

/// chmod 0644 (the crate creates 0600) and fsync the file and its directory entry.
fn make_durable(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))?;
    File::open(path)?.sync_all()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Takes and releases the lock bolt would take, without blocking, on a separate descriptor.
fn probe_lock(path: &Path, mode: OpenMode) -> Result<(), BoltError> {
    let file = File::open(path).map_err(|source| BoltError::Io {
        path: path.into(),
        source,
    })?;
    let op = match mode {
        OpenMode::ReadWrite => libc::LOCK_EX,
        OpenMode::ReadOnly => libc::LOCK_SH,
    };
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = file
                .metadata()
                .ok()
                .and_then(|m| lock_holder(m.dev(), m.ino()));
            return Err(BoltError::InUse {
                path: path.into(),
                holder,
            });
        }
        return Err(BoltError::Io {
            path: path.into(),
            source: err,
        });
    }
    // Closing the descriptor releases the lock.
    drop(file);
    Ok(())
}

/// The pid holding a FLOCK on the file (dev, ino), read from /proc/locks.
fn lock_holder(dev: u64, ino: u64) -> Option<u32> {
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let dev_id = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let mut inode_only = None;
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters have "->" after the id.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[1] != "FLOCK" {
            continue;
        }
        let Ok(pid) = fields[4].parse::<u32>() else {
            continue;
        };
        if fields[5] == dev_id {
            return Some(pid);
        }
        if inode_only.is_none() && fields[5].rsplit(':').next() == Some(&ino.to_string()) {
            inode_only = Some(pid);
        }
    }
    inode_only
}

/// Checks the file's meta pages the way bolt does, so the crate is never handed a file it could
/// panic on. Only reads.
fn validate_file(path: &Path) -> Result<(), BoltError> {
    let corrupt = |reason: String| BoltError::Corrupt {
        path: path.into(),
        reason,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|source| BoltError::Io {
            path: path.into(),
            source,
        })?;
    let len = file
        .metadata()
        .map_err(|source| BoltError::Io {
            path: path.into(),
            source,
        })?
        .len();
    let mut head = vec![0u8; (len.min(2 * MAX_PAGE_SIZE as u64)) as usize];
    file.read_exact(&mut head).map_err(|source| BoltError::Io {
        path: path.into(),
        source,
    })?;

    // Page size: from meta 0, else from a valid meta 1 at any plausible page size.
    let page_size = match parse_meta(&head, 0) {
        Ok(m) => m.page_size,
        Err(e0) => {
            let mut ps = MIN_PAGE_SIZE;
            loop {
                if let Ok(m) = parse_meta(&head, ps as usize) {
                    if m.page_size == ps {
                        break ps;
                    }
                }
                ps *= 2;
                if ps > MAX_PAGE_SIZE {
                    return Err(corrupt(format!("meta page 0: {e0}; no valid meta page 1")));
                }
            }
        }
    } as u64;
    if len < 2 * page_size {
        return Err(corrupt(format!(
            "file is {len} bytes, shorter than two {page_size}-byte meta pages"
        )));
    }
    let metas = [parse_meta(&head, 0), parse_meta(&head, page_size as usize)];
    let mut best: Option<Meta> = None;
    let mut errors = Vec::new();
    for (i, m) in metas.into_iter().enumerate() {
        let m = m.and_then(|m| {
            if m.page_size as u64 != page_size {
                return Err(format!(
                    "page size {} differs from {page_size}",
                    m.page_size
                ));
            }
            if m.pgid < 2 || m.pgid.saturating_mul(page_size) > len {
                return Err(format!(
                    "high water mark page {} is beyond the file's {} pages",
                    m.pgid,
                    len / page_size
                ));
            }
            if m.root >= m.pgid || m.root < 2 || m.freelist >= m.pgid || m.freelist < 2 {
                return Err(format!(
                    "root page {} or freelist page {} outside 2..{}",
                    m.root, m.freelist, m.pgid
                ));
            }
            Ok(m)
        });
        match m {
            Ok(m) if best.as_ref().is_none_or(|b| m.txid > b.txid) => best = Some(m),
            Ok(_) => {}
            Err(e) => errors.push(format!("meta page {i}: {e}")),
        }
    }
    let Some(meta) = best else {
        return Err(corrupt(errors.join("; ")));
    };
    check_freelist(&mut file, page_size, &meta).map_err(&corrupt)?;
    let root = read_page(&mut file, page_size, meta.root, &meta)
        .map_err(|e| corrupt(format!("root page: {e}")))?;
    if root.flags & (PAGE_FLAG_BRANCH | PAGE_FLAG_LEAF) == 0 {
        return Err(corrupt(format!(
            "root page {} is not a branch or leaf page (flags {:#06x})",
            meta.root, root.flags
        )));
    }
    Ok(())
}

/// A page: its header and its bytes (overflow pages included).
struct Page {
    flags: u16,
    count: u16,
    bytes: Vec<u8>,
}

/// Reads page `id` whole, checking its header's id and that it ends below the high water mark.
fn read_page(file: &mut File, page_size: u64, id: u64, meta: &Meta) -> Result<Page, String> {
    use std::io::{Seek, SeekFrom};
    let io = |e: io::Error| format!("reading page {id}: {e}");
    let corrupt = |reason: String| reason;
    let mut header = [0u8; PAGE_HEADER_LEN];
    file.seek(SeekFrom::Start(id * page_size)).map_err(io)?;
    file.read_exact(&mut header)
        .map_err(|_| corrupt(format!("page {id} is past the end of the file")))?;
    let stored = u64::from_le_bytes(header[0..8].try_into().unwrap_or_default());
    let flags = u16::from_le_bytes([header[8], header[9]]);
    let count = u16::from_le_bytes([header[10], header[11]]);
    let overflow = u32::from_le_bytes(header[12..16].try_into().unwrap_or_default()) as u64;
    if stored != id {
        return Err(corrupt(format!("page {id} says it is page {stored}")));
    }
    if id.saturating_add(overflow) >= meta.pgid {
        return Err(corrupt(format!(
            "page {id} with {overflow} overflow pages runs past the high water mark {}",
            meta.pgid
        )));
    }
    let mut bytes = vec![0u8; ((overflow + 1) * page_size) as usize];
    file.seek(SeekFrom::Start(id * page_size)).map_err(io)?;
    file.read_exact(&mut bytes)
        .map_err(|_| corrupt(format!("page {id} is cut off by the end of the file")))?;
    Ok(Page {
        flags,
        count,
        bytes,
    })
}

/// The freelist bolt loads at open: a freelist page whose ids all lie in `2..pgid`.
fn check_freelist(file: &mut File, page_size: u64, meta: &Meta) -> Result<(), String> {
    let fail = |what: String| format!("freelist page {}: {what}", meta.freelist);
    let page = read_page(file, page_size, meta.freelist, meta).map_err(fail)?;
    if page.flags & PAGE_FLAG_FREELIST == 0 {
        return Err(fail(format!(
            "not a freelist page (flags {:#06x})",
            page.flags
        )));
    }
    let body = &page.bytes[PAGE_HEADER_LEN..];
    let u64_at = |i: usize| -> Option<u64> {
        body.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // A count of 0xFFFF means the real count is the first element.
    let (count, first) = if page.count == 0xFFFF {
        let n = u64_at(0).ok_or_else(|| fail("cut off".into()))?;
        (n, 1usize)
    } else {
        (u64::from(page.count), 0usize)
    };
    let count = usize::try_from(count).map_err(|_| fail(format!("{count} ids")))?;
    if first.saturating_add(count).saturating_mul(8) > body.len() {
        return Err(fail(format!("{count} ids do not fit in the page")));
    }
    for i in first..first + count {
        let id = u64_at(i).ok_or_else(|| fail("cut off".into()))?;
        if id < 2 || id >= meta.pgid {
            return Err(fail(format!("free page id {id} outside 2..{}", meta.pgid)));
        }
    }
    Ok(())
}

struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    pgid: u64,
    txid: u64,
}

/// Parses and checks the meta page at byte offset `at` of `buf`.
fn parse_meta(buf: &[u8], at: usize) -> Result<Meta, String> {
    let start = at + META_OFFSET;
    let Some(meta) = buf.get(start..start + META_CHECKSUMMED_LEN + 8) else {
        return Err("file too short for a meta page".into());
    };
    let u16_at = |o: usize| u16::from_le_bytes(buf[at + o..at + o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(meta[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(meta[o..o + 8].try_into().unwrap());
    let magic = u32_at(0);
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#010x}"));
    }
    let version = u32_at(4);
    if version != VERSION {
        return Err(format!("version {version}, want {VERSION}"));
    }
    let want = u64_at(META_CHECKSUMMED_LEN);
    let got = fnv1a64(&meta[..META_CHECKSUMMED_LEN]);
    if got != want {
        return Err(format!("checksum {got:#018x}, stored {want:#018x}"));
    }
    if u16_at(8) & PAGE_FLAG_META == 0 {
        return Err("page is not flagged as a meta page".into());
    }
    let page_size = u32_at(8);
    if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(format!("page size {page_size}"));
    }
    Ok(Meta {
        page_size,
        root: u64_at(16),
        freelist: u64_at(32),
        pgid: u64_at(40),
        txid: u64_at(48),
    })
}

fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/containerd-1.6")
            .join(name)
    }

    #[test]
    fn new_file_has_bolt_magic_and_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("io.containerd.metadata.v1.bolt/meta.db");
        let mut db = open_db(&path, OpenMode::ReadWrite).unwrap();
        db.update(|mut tx| {
            use bbolt_rs::{BucketRwApi, TxRwRefApi};
            let mut b = tx.create_bucket_if_not_exists("v1")?;
            b.put("version", [0x06])?;
            Ok(())
        })
        .unwrap();
        drop(db);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[16..20], &[0xed, 0xda, 0x0c, 0xed]);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o7777,
            0o711
        );
        // Reopens (read-only too) and passes our own validation.
        let db = open_db(&path, OpenMode::ReadOnly).unwrap();
        let mut found = false;
        db.view(|tx| {
            use bbolt_rs::{BucketApi, TxApi};
            found = tx
                .bucket("v1")
                .and_then(|b| b.get("version").map(|v| v == [6]))
                == Some(true);
            Ok(())
        })
        .unwrap();
        assert!(found);
    }

    #[test]
    fn read_only_refuses_writes() {
        let db = open_db(fixture("meta.db"), OpenMode::ReadOnly).unwrap();
        let mut db2 = db.clone();
        let err = db2.update(|_| Ok(())).unwrap_err();
        assert!(matches!(err, BoltError::ReadOnly { .. }), "{err}");
    }

    #[test]
    fn opens_containerd_fixture_read_only() {
        let db = open_db(fixture("meta.db"), OpenMode::ReadOnly).unwrap();
        let mut version = None;
        db.view(|tx| {
            use bbolt_rs::{BucketApi, TxApi};
            version = tx
                .bucket("v1")
                .and_then(|b| b.get("version").map(|v| v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(version, Some(vec![0x06]));
    }

    fn assert_corrupt_untouched(path: &Path, mode: OpenMode) {
        let before = fs::read(path).unwrap();
        let err = open_db(path, mode).unwrap_err();
        assert!(matches!(err, BoltError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(path).unwrap(), before, "refused file was modified");
    }

    #[test]
    fn garbage_and_truncated_files_are_corrupt_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        fs::write(
            &garbage,
            (0..20000u32).map(|i| (i * 7 + 3) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        let small = dir.path().join("small.db");
        fs::write(&small, b"not a database").unwrap();
        let empty = dir.path().join("empty.db");
        fs::write(&empty, b"").unwrap();
        let fixture_bytes = fs::read(fixture("meta.db")).unwrap();
        let truncated = dir.path().join("truncated.db");
        fs::write(&truncated, &fixture_bytes[..8 * 4096]).unwrap();
        let one_page = dir.path().join("one-page.db");
        fs::write(&one_page, &fixture_bytes[..4096 + 100]).unwrap();
        for p in [&garbage, &small, &empty, &truncated, &one_page] {
            for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
                assert_corrupt_untouched(p, mode);
            }
        }
        let err = open_db(&one_page, OpenMode::ReadOnly)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shorter than two 4096-byte meta pages"),
            "{err}"
        );
    }

    #[test]
    fn a_garbage_freelist_is_refused_before_the_crate_reads_it() {
        // Meta pages are valid, but both freelist pages are garbage: bbolt-rs would unwrap a
        // None while loading the freelist (read-write opens preload it), and release builds
        // abort on a panic.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let mut bytes = fs::read(fixture("meta.db")).unwrap();
        for page in [36usize, 38] {
            bytes[page * 4096..(page + 1) * 4096].fill(0xff);
        }
        fs::write(&path, &bytes).unwrap();
        let err = open_db(&path, OpenMode::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("freelist page"), "{err}");
        assert!(!err.to_string().contains("panicked"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn freelist_ids_and_the_root_page_are_checked() {
        let original = fs::read(fixture("meta.db")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        // The fixture opens as it is.
        fs::write(&path, &original).unwrap();
        open_db(&path, OpenMode::ReadOnly).unwrap();
        let meta = {
            let mut f = File::open(&path).unwrap();
            let mut head = vec![0u8; 8192];
            f.read_exact(&mut head).unwrap();
            let (a, b) = (
                parse_meta(&head, 0).unwrap(),
                parse_meta(&head, 4096).unwrap(),
            );
            if a.txid > b.txid {
                a
            } else {
                b
            }
        };
        // A free page id beyond the high water mark.
        let mut bytes = original.clone();
        let fl = meta.freelist as usize * 4096;
        bytes[fl + 10..fl + 12].copy_from_slice(&1u16.to_le_bytes());
        bytes[fl + 16..fl + 24].copy_from_slice(&(meta.pgid + 5).to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let err = open_db(&path, OpenMode::ReadWrite).unwrap_err().to_string();
        assert!(err.contains("free page id"), "{err}");
        // A root page that is not a branch or leaf page.
        let mut bytes = original.clone();
        let root = meta.root as usize * 4096;
        bytes[root + 8..root + 10].copy_from_slice(&PAGE_FLAG_FREELIST.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let err = open_db(&path, OpenMode::ReadWrite).unwrap_err().to_string();
        assert!(err.contains("root page"), "{err}");
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "refused files stay untouched"
        );
    }

    /// Kills the child's whole process group (flock and its command) and reaps it.
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // SAFETY: signals the process group we created for the child.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }

    #[test]
    fn locked_file_is_in_use_with_pid() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        fs::copy(fixture("meta.db"), &path).unwrap();
        // util-linux flock(1) takes the exclusive flock bolt's writer holds, then runs the command;
        // /proc/locks names flock's own pid, which is our child.
        let mut cmd = Command::new("flock");
        cmd.arg("-x")
            .arg(&path)
            .args(["-c", "echo locked; exec sleep 30"]);
        cmd.stdout(std::process::Stdio::piped()).process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => KillOnDrop(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                eprintln!("skipped: flock(1) from util-linux is not installed");
                return;
            }
            Err(e) => panic!("spawn flock: {e}"),
        };
        let mut buf = [0u8; 7];
        child
            .0
            .stdout
            .take()
            .unwrap()
            .read_exact(&mut buf)
            .expect("child took the lock");
        let pid = child.0.id();

        for mode in [OpenMode::ReadOnly, OpenMode::ReadWrite] {
            let start = Instant::now();
            let err = open_db(&path, mode).unwrap_err();
            assert!(start.elapsed() < Duration::from_secs(2), "open blocked");
            match &err {
                BoltError::InUse { holder, .. } => assert_eq!(*holder, Some(pid)),
                other => panic!("want InUse, got {other}"),
            }
            assert_eq!(
                err.to_string(),
                format!(
                    "{} is in use by another process (pid {pid})",
                    path.display()
                )
            );
        }
        drop(child);
        // The holder's processes take a moment to die and let go of the lock.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match open_db(&path, OpenMode::ReadWrite) {
                Ok(_) => break,
                Err(BoltError::InUse { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("the file stayed locked: {e}"),
            }
        }
    }
}
