//! Text dump of a whole bolt file, byte for byte the format of the Go tool
//! `fixtures/scripts/bolt-dump` (so a dump made here can be diffed against one made with Go's
//! bbolt):
//!
//! ```text
//! ["v1"]
//!   ["snapshots"] seq=6
//!     "id" = 0x04
//! ```
//! Buckets print as `[name]` (plus ` seq=N` when the sequence is non-zero), keys as
//! `key = value`, two spaces of indent per level. Printable ASCII byte strings are Go-quoted,
//! others `0x` + lowercase hex, empty ones `""`; values over 120 bytes are cut to 120 and
//! followed by ` ... (N bytes)`.

use std::io::Write;

use bbolt_rs::{BucketApi, CursorApi, TxApi};

use super::bolt::{BoltError, Db};

const MAX_VALUE: usize = 120;

/// Writes the whole tree of `db` to `w` in the Go bolt-dump format.
pub fn dump(db: &Db, w: &mut impl Write) -> Result<(), BoltError> {
    let mut out = Vec::new();
    db.view(|tx| {
        // Go's tx.ForEach: the root holds only buckets.
        for (name, b) in tx.iter_buckets() {
            out.extend_from_slice(format!("[{}]{}\n", format(name), seq(&b)).as_bytes());
            walk(&mut out, &b, 1);
        }
        Ok(())
    })?;
    w.write_all(&out)
        .and_then(|_| w.flush())
        .map_err(|source| BoltError::Io {
            path: db.path().to_path_buf(),
            source,
        })
}

/// Convenience: the dump as a `String`.
pub fn dump_to_string(db: &Db) -> Result<String, BoltError> {
    let mut out = Vec::new();
    dump(db, &mut out)?;
    // Every byte written is ASCII (non-printable bytes are shown as hex).
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn walk<'tx, B: BucketApi<'tx>>(out: &mut Vec<u8>, b: &B, depth: usize) {
    let indent = "  ".repeat(depth);
    let mut c = b.cursor();
    let mut item = c.first().map(owned);
    while let Some((k, v)) = item {
        // Go: `v == nil` and `b.Bucket(k) != nil` is a nested bucket.
        match (v, b.bucket(&k)) {
            (None, Some(child)) => {
                out.extend_from_slice(
                    format!("{indent}[{}]{}\n", format(&k), seq(&child)).as_bytes(),
                );
                walk(out, &child, depth + 1);
            }
            (v, _) => {
                let v = v.unwrap_or_default();
                out.extend_from_slice(
                    format!("{indent}{} = {}\n", format(&k), format_value(&v)).as_bytes(),
                );
            }
        }
        item = c.next().map(owned);
    }
}

type Entry = (Vec<u8>, Option<Vec<u8>>);

fn owned((k, v): (&[u8], Option<&[u8]>)) -> Entry {
    (k.to_vec(), v.map(<[u8]>::to_vec))
}

fn seq<'tx, B: BucketApi<'tx>>(b: &B) -> String {
    match b.sequence() {
        0 => String::new(),
        n => format!(" seq={n}"),
    }
}

fn printable(b: &[u8]) -> bool {
    b.iter().all(|&c| (0x20..=0x7e).contains(&c))
}

/// Go's `format`: `""` when empty, `strconv.Quote` when printable ASCII, else `0x<hex>`.
pub fn format(b: &[u8]) -> String {
    if b.is_empty() {
        return "\"\"".to_string();
    }
    let mut s = String::with_capacity(b.len() * 2 + 2);
    if printable(b) {
        // strconv.Quote of printable ASCII escapes only '"' and '\\'.
        s.push('"');
        for &c in b {
            if c == b'"' || c == b'\\' {
                s.push('\\');
            }
            s.push(c as char);
        }
        s.push('"');
    } else {
        s.push_str("0x");
        for c in b {
            s.push_str(&format!("{c:02x}"));
        }
    }
    s
}

/// Go's `formatValue`: values longer than 120 bytes are cut and followed by their length.
pub fn format_value(b: &[u8]) -> String {
    if b.len() > MAX_VALUE {
        return format!("{} ... ({} bytes)", format(&b[..MAX_VALUE]), b.len());
    }
    format(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::bolt::{open_db, OpenMode};
    use std::path::{Path, PathBuf};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/containerd-1.6")
            .join(name)
    }

    fn assert_dump_matches(db_name: &str) {
        let db = open_db(fixture(db_name), OpenMode::ReadOnly).unwrap();
        let got = dump_to_string(&db).unwrap();
        let want = std::fs::read_to_string(fixture(&format!("{db_name}.txt"))).unwrap();
        if got != want {
            for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
                assert_eq!(g, w, "first difference at line {}", i + 1);
            }
            assert_eq!(got.len(), want.len(), "dumps differ in length");
        }
    }

    #[test]
    fn dump_of_containerd_meta_db_matches_go() {
        assert_dump_matches("meta.db");
    }

    #[test]
    fn dump_of_containerd_overlayfs_metadata_db_matches_go() {
        assert_dump_matches("overlayfs-metadata.db");
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(b""), "\"\"");
        assert_eq!(format(b"a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(format(&[0x01, 0xab]), "0x01ab");
        assert_eq!(format(b"tab\there"), "0x7461620968657265");
        let long = vec![b'x'; 121];
        assert_eq!(
            format_value(&long),
            format!("\"{}\" ... (121 bytes)", "x".repeat(120))
        );
        assert_eq!(
            format_value(&long[..120]),
            format!("\"{}\"", "x".repeat(120))
        );
    }
}
