//! Reading cgroup files: missing files, numbers the way containerd's cgroups library reads
//! them, and `key value` files.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::CgroupError;

/// Reads a whole file; `None` when it does not exist. A file of a cgroup that was removed
/// while open answers `ENODEV`, which counts as missing too.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(CgroupError::io(path, e)),
    }
}

/// Not found, or gone with its cgroup (`ENODEV`).
pub(crate) fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// A decimal `u64` as containerd's `parseUint` reads it: negative numbers (any size) are 0,
/// anything else that is not all digits is `None`.
pub(crate) fn parse_uint(s: &str) -> Option<u64> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if digits(s) {
        return s.parse().ok();
    }
    match s.strip_prefix('-') {
        Some(rest) if digits(rest) => Some(0),
        _ => None,
    }
}

/// Reads a single-number file (`memory.usage_in_bytes`): `None` when missing, an error when
/// the content is not a number.
pub(crate) fn read_uint(path: &Path) -> Result<Option<u64>, CgroupError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let t = text.trim();
    parse_uint(t)
        .map(Some)
        .ok_or_else(|| CgroupError::malformed(path, format!("expected a number, got {t:?}")))
}

/// Splits a `key value` file (`memory.stat`, `cpu.stat`, `memory.events`) into pairs. Every
/// non-blank line must have exactly two fields.
pub(crate) fn kv_pairs<'a>(
    path: &Path,
    text: &'a str,
) -> Result<Vec<(&'a str, &'a str)>, CgroupError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => continue,
            (Some(k), Some(v), None) => out.push((k, v)),
            _ => {
                return Err(CgroupError::malformed(
                    path,
                    format!("line {}: expected \"key value\", got {line:?}", i + 1),
                ))
            }
        }
    }
    Ok(out)
}

/// A `key value` file whose values must all be numbers (cgroup v1's reading).
pub(crate) fn kv_numbers(path: &Path, text: &str) -> Result<HashMap<String, u64>, CgroupError> {
    let mut out = HashMap::new();
    for (k, v) in kv_pairs(path, text)? {
        let n = parse_uint(v).ok_or_else(|| {
            CgroupError::malformed(path, format!("{k}: expected a number, got {v:?}"))
        })?;
        out.insert(k.to_string(), n);
    }
    Ok(out)
}

/// A value of a cgroup v2 `key value` file: containerd keeps what is not a number as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvValue {
    Num(u64),
    Text(String),
}

/// A `key value` file read the cgroup v2 way (values that are not numbers kept as text).
pub(crate) fn kv_values(path: &Path, text: &str) -> Result<HashMap<String, KvValue>, CgroupError> {
    Ok(kv_pairs(path, text)?
        .into_iter()
        .map(|(k, v)| {
            let value = match parse_uint(v) {
                Some(n) => KvValue::Num(n),
                None => KvValue::Text(v.to_string()),
            };
            (k.to_string(), value)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_like_containerd() {
        assert_eq!(parse_uint("0"), Some(0));
        assert_eq!(parse_uint("9223372036854771712"), Some(9223372036854771712));
        assert_eq!(parse_uint("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_uint("18446744073709551616"), None);
        assert_eq!(parse_uint("-1"), Some(0));
        assert_eq!(parse_uint("-99999999999999999999999"), Some(0));
        assert_eq!(parse_uint("max"), None);
        assert_eq!(parse_uint(""), None);
        assert_eq!(parse_uint("+5"), None);
        assert_eq!(parse_uint("-"), None);
    }

    #[test]
    fn kv_files() {
        let p = Path::new("/x/memory.stat");
        let m = kv_numbers(p, "cache 1\nrss 2\n\n").unwrap();
        assert_eq!(m["cache"], 1);
        assert_eq!(m["rss"], 2);
        let e = kv_numbers(p, "cache 1\nrss 2 3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/x/memory.stat: line 2: expected \"key value\", got \"rss 2 3\""
        );
        let e = kv_numbers(p, "cache lots\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/x/memory.stat: cache: expected a number, got \"lots\""
        );
        let v = kv_values(p, "a 1\nb max\n").unwrap();
        assert_eq!(v["a"], KvValue::Num(1));
        assert_eq!(v["b"], KvValue::Text("max".into()));
    }

    #[test]
    fn optional_reads() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_optional(&dir.path().join("nope")).unwrap(), None);
        assert_eq!(read_uint(&dir.path().join("nope")).unwrap(), None);
        std::fs::write(dir.path().join("n"), "42\n").unwrap();
        assert_eq!(read_uint(&dir.path().join("n")).unwrap(), Some(42));
        std::fs::write(dir.path().join("bad"), "4x2\n").unwrap();
        let e = read_uint(&dir.path().join("bad")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("bad: expected a number, got \"4x2\""),
            "{e}"
        );
    }
}
