//! Reading a layer's tar headers as Go's `archive/tar` reads them, since containerd applies
//! what that reader yields: ustar prefixes, GNU long names and atimes, PAX records (path,
//! linkpath, uid, gid, times, size, `SCHILY.xattr.*`), legacy `\0` entries ending in `/` as
//! directories, header-only types carrying no data whatever their size field says, and the
//! same end-of-archive rules (two zero blocks, or the stream's end at a header boundary).
//!
//! The `tar` crate lays out the header blocks; this module does the rest itself so that it
//! never buffers more than it allows: PAX and GNU long-name records over 1 MiB are refused
//! (Go's limit), names and link names over `PATH_MAX`, sizes over the byte cap and entries
//! over the entry cap are refused before anything is read.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::error::{DiffError, DiffResult};
use super::stream::read_error;

/// Size of a tar block.
pub const BLOCK: u64 = 512;
/// Go's `maxSpecialFileSize`: the largest PAX or GNU long-name record accepted.
pub const MAX_SPECIAL_FILE: u64 = 1 << 20;
/// The longest name or link name accepted: `PATH_MAX` less its terminating NUL.
pub const MAX_NAME: usize = libc::PATH_MAX as usize - 1;

/// Regular file.
pub const TYPE_REG: u8 = b'0';
/// Regular file in pre-POSIX archives (a directory when its name ends with `/`).
pub const TYPE_REG_A: u8 = 0;
/// Hard link.
pub const TYPE_LINK: u8 = b'1';
/// Symbolic link.
pub const TYPE_SYMLINK: u8 = b'2';
/// Character device.
pub const TYPE_CHAR: u8 = b'3';
/// Block device.
pub const TYPE_BLOCK: u8 = b'4';
/// Directory.
pub const TYPE_DIR: u8 = b'5';
/// Named pipe.
pub const TYPE_FIFO: u8 = b'6';
/// PAX records for the next entry.
pub const TYPE_PAX: u8 = b'x';
/// PAX records for the whole archive.
pub const TYPE_PAX_GLOBAL: u8 = b'g';
/// GNU long name of the next entry.
pub const TYPE_GNU_LONG_NAME: u8 = b'L';
/// GNU long link name of the next entry.
pub const TYPE_GNU_LONG_LINK: u8 = b'K';
/// GNU sparse file (old format).
pub const TYPE_GNU_SPARSE: u8 = b'S';

const PAX_PATH: &[u8] = b"path";
const PAX_LINKPATH: &[u8] = b"linkpath";
const PAX_UID: &[u8] = b"uid";
const PAX_GID: &[u8] = b"gid";
const PAX_ATIME: &[u8] = b"atime";
const PAX_MTIME: &[u8] = b"mtime";
const PAX_CTIME: &[u8] = b"ctime";
const PAX_SIZE: &[u8] = b"size";
const PAX_UNAME: &[u8] = b"uname";
const PAX_GNAME: &[u8] = b"gname";
/// Prefix of the PAX records that carry extended attributes.
pub const PAX_XATTR: &[u8] = b"SCHILY.xattr.";
const PAX_SPARSE_MAJOR: &[u8] = b"GNU.sparse.major";
const PAX_SPARSE_MINOR: &[u8] = b"GNU.sparse.minor";
const PAX_SPARSE_MAP: &[u8] = b"GNU.sparse.map";
const PAX_SPARSE_OFFSET: &[u8] = b"GNU.sparse.offset";
const PAX_SPARSE_NUMBYTES: &[u8] = b"GNU.sparse.numbytes";

/// A point in time from a header: seconds since the epoch (may be negative) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    /// `secs` plus `nanos` (which may be negative or over a second), normalised like Go's
    /// `time.Unix`.
    pub fn new(secs: i64, nanos: i64) -> Timestamp {
        let secs = secs.saturating_add(nanos.div_euclid(1_000_000_000));
        Timestamp {
            secs,
            nanos: nanos.rem_euclid(1_000_000_000) as u32,
        }
    }
}

/// One archive entry, with its PAX records and GNU long names already merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name as the archive gives it (not cleaned).
    pub name: Vec<u8>,
    pub link_name: Vec<u8>,
    pub typeflag: u8,
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    /// The size field (after PAX); the data actually stored is 0 for header-only types.
    pub size: i64,
    pub mtime: Timestamp,
    /// From a GNU header or a PAX record; `None` when the archive has none.
    pub atime: Option<Timestamp>,
    pub dev_major: i64,
    pub dev_minor: i64,
    /// Every PAX record of the entry (the last of duplicate keys wins, as in Go).
    pub pax: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Entry {
    /// The extended attributes (`SCHILY.xattr.<name>` records), empty values included.
    pub fn xattrs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pax.iter().filter_map(|(key, value)| {
            key.strip_prefix(PAX_XATTR)
                .map(|name| (name, value.as_slice()))
        })
    }

    /// The name for messages.
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Types whose data section is empty whatever the size field says (Go's `isHeaderOnlyType`).
fn header_only(typeflag: u8) -> bool {
    matches!(
        typeflag,
        TYPE_LINK | TYPE_SYMLINK | TYPE_CHAR | TYPE_BLOCK | TYPE_DIR | TYPE_FIFO
    )
}

/// Limits the reader enforces on each entry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most entries (PAX, GNU and global headers not counted).
    pub max_entries: u64,
    /// The largest data size an entry may declare.
    pub max_size: u64,
}

/// A tar stream read header by header; the data of the current entry is read through
/// [`TarReader::data`].
pub struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not read yet.
    remaining: u64,
    /// Padding after the current entry's data.
    pad: u64,
    entries: u64,
    limits: Limits,
}

impl<R: Read> TarReader<R> {
    /// Reads the archive in `inner`, which must be at its start.
    pub fn new(inner: R, limits: Limits) -> Self {
        TarReader {
            inner,
            remaining: 0,
            pad: 0,
            entries: 0,
            limits,
        }
    }

    /// Gives back the underlying reader, positioned after the last block read.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The data of the current entry (what is left of it).
    pub fn data(&mut self) -> EntryData<'_, R> {
        EntryData { tar: self }
    }

    /// The next entry, or `None` at the end of the archive. The data of the previous entry
    /// is skipped if it was not read.
    pub fn next_entry(&mut self) -> DiffResult<Option<Entry>> {
        let mut pax: Option<BTreeMap<Vec<u8>, Vec<u8>>> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            if !self.skip_rest()? {
                return Ok(None);
            }
            let Some(block) = self.read_header_block()? else {
                return Ok(None);
            };
            let mut entry = parse_header(&block)?;
            self.set_data(&entry)?;
            match entry.typeflag {
                TYPE_PAX | TYPE_PAX_GLOBAL => {
                    let records = parse_pax(&self.read_special(&entry)?)?;
                    if entry.typeflag == TYPE_PAX_GLOBAL {
                        entry.pax = records;
                        return Ok(Some(entry));
                    }
                    pax = Some(records);
                }
                TYPE_GNU_LONG_NAME => long_name = Some(c_string(&self.read_special(&entry)?)),
                TYPE_GNU_LONG_LINK => long_link = Some(c_string(&self.read_special(&entry)?)),
                _ => {
                    if let Some(records) = pax.take() {
                        merge_pax(&mut entry, records)?;
                    }
                    if let Some(name) = long_name.take().filter(|n| !n.is_empty()) {
                        entry.name = name;
                    }
                    if let Some(link) = long_link.take().filter(|n| !n.is_empty()) {
                        entry.link_name = link;
                    }
                    if entry.typeflag == TYPE_REG_A {
                        entry.typeflag = if entry.name.ends_with(b"/") {
                            TYPE_DIR
                        } else {
                            TYPE_REG
                        };
                    }
                    self.check(&entry)?;
                    // PAX may have changed the size.
                    self.set_data(&entry)?;
                    return Ok(Some(entry));
                }
            }
        }
    }

    /// Refuses what this reader does not take: too many entries, sizes over the cap, names
    /// over `PATH_MAX`, sparse files.
    fn check(&mut self, entry: &Entry) -> DiffResult<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(DiffError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        if !header_only(entry.typeflag)
            && entry.size > 0
            && entry.size as u64 > self.limits.max_size
        {
            return Err(DiffError::TooLarge {
                limit: self.limits.max_size,
            });
        }
        if entry.name.len() > MAX_NAME {
            return Err(DiffError::entry(
                &entry.name[..64],
                format!("name of {} bytes is longer than PATH_MAX", entry.name.len()),
            ));
        }
        if entry.link_name.len() > MAX_NAME {
            return Err(DiffError::entry(
                &entry.name,
                format!(
                    "link name of {} bytes is longer than PATH_MAX",
                    entry.link_name.len()
                ),
            ));
        }
        if entry.typeflag == TYPE_GNU_SPARSE || is_pax_sparse(&entry.pax) {
            return Err(DiffError::UnsupportedEntry {
                entry: entry.display_name(),
                what: "sparse files are",
            });
        }
        Ok(())
    }

    /// Sets up the data section of the entry just read (Go's `handleRegularFile`).
    fn set_data(&mut self, entry: &Entry) -> DiffResult<()> {
        let size = if header_only(entry.typeflag) {
            0
        } else {
            entry.size
        };
        let Ok(size) = u64::try_from(size) else {
            return Err(invalid_header("negative size"));
        };
        self.remaining = size;
        self.pad = (BLOCK - size % BLOCK) % BLOCK;
        Ok(())
    }

    /// Skips the unread data and the padding of the current entry. False when the stream
    /// ends exactly where the padding would start (Go takes that for the end of the archive).
    fn skip_rest(&mut self) -> DiffResult<bool> {
        if self.remaining > 0 {
            let want = self.remaining;
            let skipped =
                io::copy(&mut (&mut self.inner).take(want), &mut io::sink()).map_err(read_error)?;
            if skipped < want {
                return Err(unexpected_eof());
            }
            self.remaining = 0;
        }
        if self.pad > 0 {
            let mut buf = [0u8; BLOCK as usize];
            let want = self.pad as usize;
            let got = read_full(&mut self.inner, &mut buf[..want])?;
            self.pad = 0;
            if got == 0 {
                return Ok(false);
            }
            if got < want {
                return Err(unexpected_eof());
            }
        }
        Ok(true)
    }

    /// The next header block; `None` at the end of the archive.
    fn read_header_block(&mut self) -> DiffResult<Option<[u8; BLOCK as usize]>> {
        let mut block = [0u8; BLOCK as usize];
        match read_full(&mut self.inner, &mut block)? {
            0 => return Ok(None),
            n if n < block.len() => return Err(unexpected_eof()),
            _ => {}
        }
        if block.iter().all(|&b| b == 0) {
            let mut second = [0u8; BLOCK as usize];
            match read_full(&mut self.inner, &mut second)? {
                0 => return Ok(None),
                n if n < second.len() => return Err(unexpected_eof()),
                _ => {}
            }
            if second.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            return Err(invalid_header("a zero block followed by a non-zero block"));
        }
        Ok(Some(block))
    }

    /// The whole data of a PAX or GNU long-name entry, refused over [`MAX_SPECIAL_FILE`].
    fn read_special(&mut self, entry: &Entry) -> DiffResult<Vec<u8>> {
        if self.remaining > MAX_SPECIAL_FILE {
            return Err(DiffError::entry(
                &entry.name,
                format!(
                    "extended header of {} bytes is over the limit of {MAX_SPECIAL_FILE}",
                    self.remaining
                ),
            ));
        }
        let mut data = Vec::with_capacity(self.remaining as usize);
        self.data().read_to_end(&mut data).map_err(read_error)?;
        Ok(data)
    }
}

/// The data of the current entry; reading past the stream's end is an `UnexpectedEof`.
pub struct EntryData<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tar.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.tar.remaining).unwrap_or(usize::MAX));
        let n = self.tar.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside an entry's data",
            ));
        }
        self.tar.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> DiffResult<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(filled)
}

fn invalid_header(why: &str) -> DiffError {
    DiffError::InvalidArchive(format!("invalid tar header ({why})"))
}

fn unexpected_eof() -> DiffError {
    DiffError::InvalidArchive("unexpected EOF".into())
}

/// The bytes before the first NUL (Go's `parseString`).
fn c_string(field: &[u8]) -> Vec<u8> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field[..end].to_vec()
}

/// An octal field, padded with spaces and NULs (Go's `parseOctal`); empty is 0.
fn parse_octal(field: &[u8]) -> Option<i64> {
    let start = field.iter().position(|&b| b != b' ' && b != 0)?;
    let end = field.iter().rposition(|&b| b != b' ' && b != 0)? + 1;
    let digits = c_string(&field[start..end]);
    let text = std::str::from_utf8(&digits).ok()?;
    u64::from_str_radix(text, 8)
        .ok()
        .and_then(|v| i64::try_from(v).ok())
}

/// A numeric field: octal, or base-256 (two's complement) when its top bit is set (Go's
/// `parseNumeric`).
fn parse_numeric(field: &[u8]) -> Option<i64> {
    let Some(&first) = field.first() else {
        return Some(0);
    };
    if first & 0x80 == 0 {
        return match field.iter().all(|&b| b == b' ' || b == 0) {
            true => Some(0),
            false => parse_octal(field),
        };
    }
    let invert: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
    let mut value: u64 = 0;
    for (i, &byte) in field.iter().enumerate() {
        let mut byte = byte ^ invert;
        if i == 0 {
            byte &= 0x7f;
        }
        if value >> 56 > 0 {
            return None;
        }
        value = value << 8 | u64::from(byte);
    }
    if value >> 63 > 0 {
        return None;
    }
    let value = value as i64;
    Some(if invert == 0xff { !value } else { value })
}

/// The header checksum both ways Go accepts: bytes summed unsigned and signed, with the
/// checksum field itself counted as spaces.
fn checksums(block: &[u8; BLOCK as usize]) -> (i64, i64) {
    let mut unsigned = 0i64;
    let mut signed = 0i64;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// One header block as Go's `readHeader` reads it.
fn parse_header(block: &[u8; BLOCK as usize]) -> DiffResult<Entry> {
    let header = tar::Header::from_byte_slice(block);
    let old = header.as_old();
    let stored = parse_octal(&old.cksum).ok_or_else(|| invalid_header("bad checksum field"))?;
    let (unsigned, signed) = checksums(block);
    if stored != unsigned && stored != signed {
        return Err(invalid_header("checksum mismatch"));
    }
    let field = |value: &[u8], what: &str| {
        parse_numeric(value).ok_or_else(|| invalid_header(&format!("bad {what} field")))
    };
    let mut entry = Entry {
        name: c_string(&old.name),
        link_name: c_string(&old.linkname),
        typeflag: old.linkflag[0],
        mode: field(&old.mode, "mode")?,
        uid: field(&old.uid, "uid")?,
        gid: field(&old.gid, "gid")?,
        size: field(&old.size, "size")?,
        mtime: Timestamp::new(field(&old.mtime, "mtime")?, 0),
        atime: None,
        dev_major: 0,
        dev_minor: 0,
        pax: BTreeMap::new(),
    };
    let mut prefix = Vec::new();
    if let Some(ustar) = header.as_ustar() {
        entry.dev_major = field(&ustar.dev_major, "devmajor")?;
        entry.dev_minor = field(&ustar.dev_minor, "devminor")?;
        if &block[508..512] == b"tar\0" {
            // The star variant: a shorter prefix, then atime and ctime.
            prefix = c_string(&block[345..476]);
            entry.atime = Some(Timestamp::new(field(&block[476..488], "atime")?, 0));
        } else {
            prefix = c_string(&ustar.prefix);
        }
    } else if let Some(gnu) = header.as_gnu() {
        entry.dev_major = field(&gnu.dev_major, "devmajor")?;
        entry.dev_minor = field(&gnu.dev_minor, "devminor")?;
        // Like Go, an atime that does not parse is ignored (old Go writers put a prefix here).
        if gnu.atime[0] != 0 {
            entry.atime = parse_numeric(&gnu.atime).map(|secs| Timestamp::new(secs, 0));
        }
    }
    if !prefix.is_empty() {
        prefix.push(b'/');
        prefix.extend_from_slice(&entry.name);
        entry.name = prefix;
    }
    Ok(entry)
}

/// The records of a PAX extended header (Go's `parsePAX`): `<length> <key>=<value>\n`.
/// GNU sparse 0.0 offset/numbytes pairs are gathered into `GNU.sparse.map`, as Go does.
fn parse_pax(data: &[u8]) -> DiffResult<BTreeMap<Vec<u8>, Vec<u8>>> {
    let bad = || invalid_header("bad PAX record");
    let mut records = BTreeMap::new();
    let mut sparse_map: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let length: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if length < 5 || length > rest.len() || length <= space + 1 {
            return Err(bad());
        }
        let record = &rest[space + 1..length];
        rest = &rest[length..];
        let Some((&b'\n', record)) = record.split_last() else {
            return Err(bad());
        };
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let valid = !key.is_empty()
            && match key {
                PAX_PATH | PAX_LINKPATH | PAX_UNAME | PAX_GNAME => !value.contains(&0),
                _ => !key.contains(&0),
            };
        if !valid {
            return Err(bad());
        }
        match key {
            PAX_SPARSE_OFFSET | PAX_SPARSE_NUMBYTES => {
                let expected = if sparse_map.len().is_multiple_of(2) {
                    PAX_SPARSE_OFFSET
                } else {
                    PAX_SPARSE_NUMBYTES
                };
                if key != expected || value.contains(&b',') {
                    return Err(bad());
                }
                sparse_map.push(value.to_vec());
            }
            _ => {
                records.insert(key.to_vec(), value.to_vec());
            }
        }
    }
    if !sparse_map.is_empty() {
        records.insert(PAX_SPARSE_MAP.to_vec(), sparse_map.join(&b','));
    }
    Ok(records)
}

/// True when the records describe a GNU sparse file Go would expand (its
/// `readGNUSparsePAXHeaders`).
fn is_pax_sparse(pax: &BTreeMap<Vec<u8>, Vec<u8>>) -> bool {
    let get = |key: &[u8]| pax.get(key).map(Vec::as_slice).unwrap_or_default();
    match (get(PAX_SPARSE_MAJOR), get(PAX_SPARSE_MINOR)) {
        (b"0", b"0" | b"1") | (b"1", b"0") => true,
        (b"", b"") => !get(PAX_SPARSE_MAP).is_empty(),
        _ => false,
    }
}

/// A decimal integer as Go's `strconv.ParseInt(s, 10, 64)` takes it (an optional sign).
fn parse_decimal(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A PAX time, `<seconds>[.<fraction>]` (Go's `parsePAXTime`): more than nine fraction
/// digits are cut, a negative time counts its fraction backwards.
fn parse_pax_time(value: &[u8]) -> Option<Timestamp> {
    let (secs, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    let secs = parse_decimal(secs)?;
    if fraction.is_empty() {
        return Some(Timestamp::new(secs, 0));
    }
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nanos: i64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + fraction.get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    if value.first() == Some(&b'-') {
        nanos = -nanos;
    }
    Some(Timestamp::new(secs, nanos))
}

/// Merges PAX records into the entry (Go's `mergePAX`); an empty value keeps the header's.
fn merge_pax(entry: &mut Entry, records: BTreeMap<Vec<u8>, Vec<u8>>) -> DiffResult<()> {
    for (key, value) in &records {
        if value.is_empty() {
            continue;
        }
        let bad = || invalid_header(&format!("bad PAX {} record", String::from_utf8_lossy(key)));
        match key.as_slice() {
            PAX_PATH => entry.name = value.clone(),
            PAX_LINKPATH => entry.link_name = value.clone(),
            PAX_UID => entry.uid = parse_decimal(value).ok_or_else(bad)?,
            PAX_GID => entry.gid = parse_decimal(value).ok_or_else(bad)?,
            PAX_ATIME => entry.atime = Some(parse_pax_time(value).ok_or_else(bad)?),
            PAX_MTIME => entry.mtime = parse_pax_time(value).ok_or_else(bad)?,
            PAX_CTIME => {
                parse_pax_time(value).ok_or_else(bad)?;
            }
            PAX_SIZE => entry.size = parse_decimal(value).ok_or_else(bad)?,
            _ => {}
        }
    }
    entry.pax = records;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMITS: Limits = Limits {
        max_entries: u64::MAX,
        max_size: u64::MAX,
    };

    fn builder() -> tar::Builder<Vec<u8>> {
        tar::Builder::new(Vec::new())
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h
    }

    fn read_all(archive: &[u8]) -> DiffResult<Vec<(Entry, Vec<u8>)>> {
        let mut tar = TarReader::new(archive, NO_LIMITS);
        let mut out = Vec::new();
        while let Some(entry) = tar.next_entry()? {
            let mut data = Vec::new();
            tar.data().read_to_end(&mut data).map_err(read_error)?;
            out.push((entry, data));
        }
        Ok(out)
    }

    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        // The length counts itself.
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    #[test]
    fn numbers_parse_like_go() {
        assert_eq!(parse_numeric(b"0000644\0"), Some(0o644));
        assert_eq!(parse_numeric(b"  644 \0"), Some(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_numeric(b""), Some(0));
        assert_eq!(parse_numeric(b"12x4"), None);
        // Base-256: positive and negative.
        assert_eq!(
            parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_numeric(&[0xff; 12]), Some(-1));
        assert_eq!(
            parse_numeric(&[0x80, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn pax_times_parse_like_go() {
        assert_eq!(parse_pax_time(b"5"), Some(Timestamp { secs: 5, nanos: 0 }));
        assert_eq!(
            parse_pax_time(b"1350244992.023960108"),
            Some(Timestamp {
                secs: 1350244992,
                nanos: 23960108
            })
        );
        assert_eq!(
            parse_pax_time(b"1.5"),
            Some(Timestamp {
                secs: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"1.1234567891"),
            Some(Timestamp {
                secs: 1,
                nanos: 123_456_789
            })
        );
        assert_eq!(
            parse_pax_time(b"-1.5"),
            Some(Timestamp {
                secs: -2,
                nanos: 500_000_000
            })
        );
        assert_eq!(parse_pax_time(b"1.x"), None);
        assert_eq!(parse_pax_time(b""), None);
    }

    #[test]
    fn pax_records_parse_and_validate() {
        let mut data = pax_record("path", "a/b");
        data.extend(pax_record("SCHILY.xattr.user.k", "v=1"));
        let records = parse_pax(&data).unwrap();
        assert_eq!(records[&b"path"[..]], b"a/b");
        assert_eq!(records[&b"SCHILY.xattr.user.k"[..]], b"v=1");
        for bad in [
            &b"3 a=\n"[..],
            b"11 path=a\n",
            b"x path=a\n",
            b"9 =value\n",
            b"11 path=a\0b\n",
            b"8 pathab",
        ] {
            assert!(parse_pax(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn reads_entries_and_data() {
        let mut b = builder();
        let mut h = header(tar::EntryType::Regular, 5);
        b.append_data(&mut h, "dir/file", &b"hello"[..]).unwrap();
        let mut h = header(tar::EntryType::Directory, 0);
        b.append_data(&mut h, "dir/", &[][..]).unwrap();
        let mut h = header(tar::EntryType::Symlink, 0);
        h.set_link_name("file").unwrap();
        b.append_data(&mut h, "dir/link", &[][..]).unwrap();
        let archive = b.into_inner().unwrap();
        let entries = read_all(&archive).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].0.name, b"dir/file");
        assert_eq!(entries[0].0.typeflag, TYPE_REG);
        assert_eq!(entries[0].0.mode, 0o644);
        assert_eq!(entries[0].0.mtime.secs, 1_700_000_000);
        assert_eq!(entries[0].1, b"hello");
        assert_eq!(entries[1].0.typeflag, TYPE_DIR);
        assert_eq!(entries[2].0.link_name, b"file");
    }

    #[test]
    fn long_names_and_pax_records_are_merged() {
        let long = format!("{}/file", "d".repeat(150));
        let mut b = builder();
        // The tar crate writes a GNU long name entry for a name this long.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(2);
        h.set_mode(0o600);
        b.append_data(&mut h, &long, &b"hi"[..]).unwrap();
        // PAX: path, uid, mtime with a fraction, an xattr.
        let mut h = header(tar::EntryType::Regular, 0);
        b.append_pax_extensions([
            ("path", &b"pax/name"[..]),
            ("uid", b"4242"),
            ("mtime", b"1600000000.25"),
            ("atime", b"1600000001"),
            ("SCHILY.xattr.user.test", b"value"),
        ])
        .unwrap();
        b.append_data(&mut h, "short", &[][..]).unwrap();
        let archive = b.into_inner().unwrap();
        let entries = read_all(&archive).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0.name, long.as_bytes());
        assert_eq!(entries[0].1, b"hi");
        let pax = &entries[1].0;
        assert_eq!(pax.name, b"pax/name");
        assert_eq!(pax.uid, 4242);
        assert_eq!(
            pax.mtime,
            Timestamp {
                secs: 1_600_000_000,
                nanos: 250_000_000
            }
        );
        assert_eq!(pax.atime.map(|t| t.secs), Some(1_600_000_001));
        assert_eq!(
            pax.xattrs().collect::<Vec<_>>(),
            vec![(&b"user.test"[..], &b"value"[..])]
        );
    }

    #[test]
    fn legacy_entries_ending_in_a_slash_are_directories() {
        // Written by hand: the tar crate drops a trailing slash from names.
        let legacy = |name: &[u8], size: u64| {
            let mut h = tar::Header::new_old();
            h.as_old_mut().linkflag = [TYPE_REG_A];
            h.set_size(size);
            h.set_mode(0o755);
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            h
        };
        let mut b = builder();
        b.append(&legacy(b"old/", 0), &[][..]).unwrap();
        b.append(&legacy(b"old/f", 1), &b"x"[..]).unwrap();
        let entries = read_all(&b.into_inner().unwrap()).unwrap();
        assert_eq!(entries[0].0.typeflag, TYPE_DIR);
        assert_eq!(entries[1].0.typeflag, TYPE_REG);
    }

    #[test]
    fn header_only_types_carry_no_data() {
        // A directory whose size field says 512: Go reads no data for it, so the next header
        // follows at once.
        let mut dir = header(tar::EntryType::Directory, 512);
        dir.set_path("d/").unwrap();
        dir.set_cksum();
        let mut file = header(tar::EntryType::Regular, 1);
        file.set_path("d/f").unwrap();
        file.set_cksum();
        let mut archive = dir.as_bytes().to_vec();
        archive.extend_from_slice(file.as_bytes());
        archive.extend_from_slice(&[b'z'; 512]);
        archive.extend_from_slice(&[0; 1024]);
        let entries = read_all(&archive).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0.name, b"d/f");
        assert_eq!(entries[1].1, b"z");
    }

    #[test]
    fn end_of_archive_rules() {
        let mut b = builder();
        let mut h = header(tar::EntryType::Regular, 3);
        b.append_data(&mut h, "f", &b"abc"[..]).unwrap();
        let full = b.into_inner().unwrap();
        // With its zero blocks, without them, with one, cut inside the padding.
        assert_eq!(read_all(&full).unwrap().len(), 1);
        assert_eq!(read_all(&full[..1024]).unwrap().len(), 1);
        assert_eq!(read_all(&full[..1536]).unwrap().len(), 1);
        // Cut right after the data, before the padding: Go's reader calls that the end.
        assert_eq!(read_all(&full[..515]).unwrap().len(), 1);
        assert!(matches!(
            read_all(&full[..600]),
            Err(DiffError::InvalidArchive(_))
        ));
        // Cut inside the data or inside a header.
        assert!(read_all(&full[..514]).is_err());
        assert!(read_all(&full[..100]).is_err());
        // A zero block then a header.
        let mut odd = vec![0u8; 512];
        odd.extend_from_slice(&full[..1024]);
        assert!(read_all(&odd).is_err());
        // Nothing at all: an empty archive.
        assert!(read_all(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_bad_checksum_is_refused() {
        let mut h = header(tar::EntryType::Regular, 0);
        h.set_path("f").unwrap();
        h.set_cksum();
        let mut block = h.as_bytes().to_vec();
        block[0] = b'g';
        block.extend_from_slice(&[0; 1024]);
        let e = read_all(&block).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid archive: invalid tar header (checksum mismatch): invalid argument"
        );
    }

    #[test]
    fn limits_are_enforced_before_reading() {
        let mut b = builder();
        for name in ["a", "b", "c"] {
            let mut h = header(tar::EntryType::Regular, 1);
            b.append_data(&mut h, name, &b"x"[..]).unwrap();
        }
        let archive = b.into_inner().unwrap();
        let limits = Limits {
            max_entries: 2,
            max_size: u64::MAX,
        };
        let mut tar = TarReader::new(&archive[..], limits);
        assert!(tar.next_entry().unwrap().is_some());
        assert!(tar.next_entry().unwrap().is_some());
        assert!(matches!(
            tar.next_entry(),
            Err(DiffError::TooManyEntries { limit: 2 })
        ));

        // A declared size over the cap, with no data behind it.
        let mut h = header(tar::EntryType::Regular, 1 << 40);
        h.set_path("huge").unwrap();
        h.set_cksum();
        let limits = Limits {
            max_entries: 10,
            max_size: 1 << 20,
        };
        let mut tar = TarReader::new(&h.as_bytes()[..], limits);
        assert!(matches!(
            tar.next_entry(),
            Err(DiffError::TooLarge { limit }) if limit == 1 << 20
        ));
    }

    #[test]
    fn oversized_extended_headers_are_refused() {
        // A PAX header declaring 2 MiB: refused before its data is read.
        let mut h = header(tar::EntryType::XHeader, 2 << 20);
        h.set_path("PaxHeaders/x").unwrap();
        h.set_cksum();
        let e = read_all(&h.as_bytes()[..]).unwrap_err();
        assert!(e.to_string().contains("over the limit of 1048576"), "{e}");

        // A GNU long name longer than PATH_MAX.
        let mut b = builder();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        b.append_data(&mut h, "x/".repeat(2100), &[][..]).unwrap();
        let e = read_all(&b.into_inner().unwrap()).unwrap_err();
        assert!(e.to_string().contains("longer than PATH_MAX"), "{e}");
    }

    #[test]
    fn sparse_files_are_not_supported() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_path("sparse").unwrap();
        h.set_size(0);
        h.set_cksum();
        let mut archive = h.as_bytes().to_vec();
        archive.extend_from_slice(&[0; 1024]);
        assert!(matches!(
            read_all(&archive),
            Err(DiffError::UnsupportedEntry { .. })
        ));

        let mut b = builder();
        b.append_pax_extensions([("GNU.sparse.major", &b"1"[..]), ("GNU.sparse.minor", b"0")])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 0);
        b.append_data(&mut h, "sparse", &[][..]).unwrap();
        assert!(matches!(
            read_all(&b.into_inner().unwrap()),
            Err(DiffError::UnsupportedEntry { .. })
        ));
    }

    #[test]
    fn global_headers_are_returned_as_such() {
        let mut g = header(tar::EntryType::XGlobalHeader, 0);
        let record = pax_record("comment", "hi");
        g.set_size(record.len() as u64);
        let mut b = builder();
        b.append_data(&mut g, "pax_global_header", &record[..])
            .unwrap();
        let mut h = header(tar::EntryType::Regular, 0);
        b.append_data(&mut h, "f", &[][..]).unwrap();
        let entries = read_all(&b.into_inner().unwrap()).unwrap();
        assert_eq!(entries[0].0.typeflag, TYPE_PAX_GLOBAL);
        assert_eq!(entries[0].0.pax[&b"comment"[..]], b"hi");
        assert_eq!(entries[1].0.name, b"f");
    }
}
