//! Parsing the stdio strings containerd sends (`CreateTaskRequest.stdin/stdout/stderr`).
//!
//! The forms are the ones containerd's Go shim accepts (`pkg/process/io.go`):
//! * a plain path (no scheme) or `fifo://<path>`: a fifo the client made (or, as in Go, an
//!   existing regular file, appended to);
//! * `file:///abs/path`: a log file, appended to and created (mode 0644) with its parents;
//! * `binary:///abs/path?k=v&k2`: a logging binary.
//!
//! Go's `url.Parse` decides the scheme: a leading `[A-Za-z][A-Za-z0-9+.-]*:`. The path part is
//! percent-decoded, the query is split and decoded the way Go's `url.ParseQuery` does.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::IoError;

/// Where one stdio stream goes (or comes from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A fifo the client created (or any existing path, opened as Go opens it).
    Fifo(PathBuf),
    /// `file://`: append to a file, creating it.
    File(PathBuf),
    /// `binary://`: a logging binary that reads the process's output.
    Binary(BinaryUri),
}

/// A parsed `binary://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinaryUri {
    /// Absolute path of the logging binary.
    pub path: PathBuf,
    /// Its arguments, built as Go's `NewBinaryCmd` builds them: for every distinct query key
    /// (in order of first appearance, where Go's map order is random) the key itself,
    /// verbatim (no dash is added), followed by its first value (`""` for a bare `k`).
    pub args: Vec<OsString>,
}

/// Parses one stdio string. `""` means "not connected" and gives `None`.
pub(crate) fn parse(stream: &'static str, s: &str) -> Result<Option<Target>, IoError> {
    if s.is_empty() {
        return Ok(None);
    }
    let invalid = |reason: &str| IoError::InvalidUri {
        stream,
        uri: s.to_string(),
        reason: reason.to_string(),
    };
    let Some((scheme, rest)) = split_scheme(s) else {
        // No scheme: a path, taken verbatim as Go does.
        return Ok(Some(Target::Fifo(PathBuf::from(s))));
    };
    // Go drops the fragment before anything else.
    let rest = rest.split_once('#').map_or(rest, |(a, _)| a);
    let (hier, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let (host, raw_path) = match hier.strip_prefix("//") {
        Some(auth) => match auth.find('/') {
            Some(i) => (&auth[..i], &auth[i..]),
            None => (auth, ""),
        },
        None => ("", hier),
    };
    let path = PathBuf::from(OsString::from_vec(
        unescape(raw_path, false).ok_or_else(|| invalid("invalid percent-escape in the path"))?,
    ));
    match scheme.as_str() {
        "fifo" | "file" | "binary" => {}
        other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
    }
    if !host.is_empty() {
        return Err(invalid(&format!(
            "a host ({host:?}) is not allowed; write {scheme}:///absolute/path"
        )));
    }
    if raw_path.is_empty() {
        return Err(invalid("no path"));
    }
    match scheme.as_str() {
        "fifo" => Ok(Some(Target::Fifo(path))),
        "file" => {
            if !path.is_absolute() {
                return Err(invalid("the path must be absolute"));
            }
            Ok(Some(Target::File(path)))
        }
        _ => {
            if !path.is_absolute() {
                return Err(invalid("the path must be absolute"));
            }
            Ok(Some(Target::Binary(BinaryUri {
                path,
                args: query_args(query.unwrap_or("")),
            })))
        }
    }
}

/// Splits `scheme:rest` when `s` starts with a URL scheme as Go's `url.Parse` sees one; the
/// scheme comes back lower-cased.
fn split_scheme(s: &str) -> Option<(String, &str)> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    Some((scheme.to_ascii_lowercase(), &s[colon + 1..]))
}

/// Go's `NewBinaryCmd` argument list from a raw query (see [`BinaryUri::args`]). Pairs Go's
/// `url.ParseQuery` rejects (a `;` in them, a bad percent-escape) are skipped, as
/// `URL.Query()` skips them.
fn query_args(query: &str) -> Vec<OsString> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut args = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (unescape(k, true), unescape(v, true)) else {
            continue;
        };
        if keys.contains(&k) {
            continue;
        }
        keys.push(k.clone());
        args.push(OsString::from_vec(k));
        args.push(OsString::from_vec(v));
    }
    args
}

/// Percent-decoding; `plus` also turns `+` into a space (query components).
fn unescape(s: &str, plus: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn plain_paths_and_fifo_scheme() {
        assert_eq!(parse("stdout", "").unwrap(), None);
        assert_eq!(
            parse("stdout", "/run/containerd/fifo/1/x-stdout").unwrap(),
            Some(Target::Fifo("/run/containerd/fifo/1/x-stdout".into()))
        );
        assert_eq!(
            parse("stdout", "fifo:///run/f").unwrap(),
            Some(Target::Fifo("/run/f".into()))
        );
        assert_eq!(
            parse("stdout", "relative/fifo").unwrap(),
            Some(Target::Fifo("relative/fifo".into()))
        );
        // A colon later in a path is no scheme.
        assert_eq!(
            parse("stdout", "/a:b").unwrap(),
            Some(Target::Fifo("/a:b".into()))
        );
    }

    #[test]
    fn file_uri() {
        assert_eq!(
            parse("stdout", "file:///var/log/x%20y.log").unwrap(),
            Some(Target::File("/var/log/x y.log".into()))
        );
        assert_eq!(
            parse("stdout", "FILE:///l").unwrap(),
            Some(Target::File("/l".into()))
        );
        let e = parse("stdout", "file://host/x").unwrap_err().to_string();
        assert!(e.contains("host"), "{e}");
        assert!(parse("stdout", "file:rel").is_err());
        assert!(parse("stdout", "file://").is_err());
        let e = parse("stderr", "http://x/y").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid stderr URI \"http://x/y\": unsupported scheme \"http\""
        );
    }

    #[test]
    fn binary_uri_args_like_go() {
        assert_eq!(
            parse(
                "stdout",
                "binary:///usr/bin/logger?-id=web&k2&b=x+y%21&-id=again"
            )
            .unwrap(),
            Some(Target::Binary(BinaryUri {
                path: "/usr/bin/logger".into(),
                args: os(&["-id", "web", "k2", "", "b", "x y!"]),
            }))
        );
        assert_eq!(
            parse("stdout", "binary:///l").unwrap(),
            Some(Target::Binary(BinaryUri {
                path: "/l".into(),
                args: vec![]
            }))
        );
        // Go skips pairs with a ';' or a bad escape, and empty pairs.
        assert_eq!(query_args("a;b=1&&c=%zz&d=%41"), os(&["d", "A"]));
        assert!(parse("stdout", "binary:///bad%zzpath").is_err());
    }
}
