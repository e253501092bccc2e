//! `--log-uri` as ctr hands it to the shim: read by Go's `url.Parse` and written back by
//! `URL.String()`, the form `cio.LogURI` puts in a task's stdout and stderr. `binary:///path`
//! (a logging binary), `file:///path` (a log file) and a bare path (a fifo or file the shim
//! opens) all pass through this way; the shim decides what they mean.

use super::CioError;

/// Which of Go's escaping rules applies (`net/url`'s `encoding` modes used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Path,
    Fragment,
}

/// A URL as Go's `url.Parse` splits it (userinfo kept in `host`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Url {
    scheme: String,
    opaque: String,
    host: Option<String>,
    path: String,
    raw_path: String,
    raw_query: Option<String>,
    fragment: Option<String>,
}

/// `uri` parsed as Go's `url.Parse` parses it, then written as `URL.String()` writes it.
/// Errors read as Go's: `parse "<uri>": <reason>`.
pub fn normalize(uri: &str) -> Result<String, CioError> {
    parse(uri)
        .map(|u| u.to_string())
        .map_err(|(input, reason)| {
            CioError::InvalidArgument(format!("parse {}: {reason}", go_quote(input)))
        })
}

/// Go's `%q` for the plain strings URLs are.
fn go_quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

type ParseError<'a> = (&'a str, String);

fn parse(raw: &str) -> Result<Url, ParseError<'_>> {
    let (before, fragment) = match raw.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (raw, None),
    };
    let mut url = parse_without_fragment(before).map_err(|e| (before, e))?;
    if let Some(f) = fragment.filter(|f| !f.is_empty()) {
        unescape(f).map_err(|e| (raw, e))?;
        url.fragment = Some(f.to_string());
    }
    Ok(url)
}

fn parse_without_fragment(raw: &str) -> Result<Url, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let mut url = Url::default();
    if raw == "*" {
        url.path = "*".into();
        return Ok(url);
    }
    let (scheme, rest) = scheme(raw)?;
    url.scheme = scheme.to_ascii_lowercase();
    let mut rest = rest;
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        url.raw_query = Some(String::new());
        rest = &rest[..rest.len() - 1];
    } else if let Some((r, q)) = rest.split_once('?') {
        rest = r;
        url.raw_query = Some(q.to_string());
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_string();
            return Ok(url);
        }
        let segment = rest.split('/').next().unwrap_or_default();
        if segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let authority = &rest[2..];
        let (authority, path) = match authority.find('/') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        };
        url.host = Some(host(authority)?);
        rest = path;
    }
    url.path = unescape(rest)?;
    if escape(&url.path, Part::Path) != rest {
        url.raw_path = rest.to_string();
    }
    Ok(url)
}

/// Go's `getScheme`: a leading `[A-Za-z][A-Za-z0-9+.-]*:`, or none.
fn scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// The authority, checked as Go checks a host's port and escapes.
fn host(authority: &str) -> Result<String, String> {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = if let Some(rest) = host.strip_prefix('[') {
        match rest.find(']') {
            Some(i) => &rest[i + 1..],
            None => return Err("missing ']' in host".into()),
        }
    } else {
        host.rfind(':').map_or("", |i| &host[i..])
    };
    let valid =
        port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(format!("invalid port {} after host", go_quote(port)));
    }
    unescape(host)?;
    Ok(authority.to_string())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Go's `unescape` for paths: `%XX` decoded, anything else kept.
fn unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = (bytes.get(i + 1).copied().and_then(hex))
                .zip(bytes.get(i + 2).copied().and_then(hex));
            let Some((hi, lo)) = pair else {
                let end = (i + 3).min(s.len());
                let bad = s.get(i..end).unwrap_or(&s[i..]);
                return Err(format!("invalid URL escape {}", go_quote(bad)));
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `shouldEscape` for paths and fragments.
fn should_escape(c: u8, part: Part) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match part {
            Part::Path => c == b'?',
            Part::Fragment => false,
        },
        b'!' | b'(' | b')' | b'*' if part == Part::Fragment => false,
        _ => true,
    }
}

/// Go's `escape`: every byte that should be escaped as `%XX` (upper-case hex).
fn escape(s: &str, part: Part) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if should_escape(b, part) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Go's `validEncoded`: `s` needs no further escaping.
fn valid_encoded(s: &str, part: Part) -> bool {
    s.bytes().all(|b| match b {
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':'
        | b'@' | b'[' | b']' | b'%' => true,
        _ => !should_escape(b, part),
    })
}

impl Url {
    /// Go's `EscapedPath`.
    fn escaped_path(&self) -> String {
        if !self.raw_path.is_empty()
            && valid_encoded(&self.raw_path, Part::Path)
            && unescape(&self.raw_path).as_deref() == Ok(self.path.as_str())
        {
            return self.raw_path.clone();
        }
        if self.path == "*" {
            return "*".into();
        }
        escape(&self.path, Part::Path)
    }
}

impl std::fmt::Display for Url {
    /// Go's `URL.String`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        if !self.scheme.is_empty() {
            out.push_str(&self.scheme);
            out.push(':');
        }
        if !self.opaque.is_empty() {
            out.push_str(&self.opaque);
        } else {
            let host = self.host.as_deref().unwrap_or_default();
            if (!self.scheme.is_empty() || !host.is_empty())
                && (!host.is_empty() || !self.path.is_empty())
            {
                out.push_str("//");
            }
            out.push_str(host);
            let path = self.escaped_path();
            if !path.is_empty() && !path.starts_with('/') && !host.is_empty() {
                out.push('/');
            }
            if out.is_empty() {
                let segment = path.split('/').next().unwrap_or_default();
                if segment.contains(':') {
                    out.push_str("./");
                }
            }
            out.push_str(&path);
        }
        if let Some(q) = &self.raw_query {
            out.push('?');
            out.push_str(q);
        }
        if let Some(frag) = &self.fragment {
            out.push('#');
            if valid_encoded(frag, Part::Fragment) {
                out.push_str(frag);
            } else {
                out.push_str(&escape(&unescape(frag).unwrap_or_default(), Part::Fragment));
            }
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_uris_pass_through_as_go_writes_them() {
        for (input, want) in [
            ("binary:///usr/bin/logger", "binary:///usr/bin/logger"),
            (
                "binary:///usr/bin/logger?id=1&tag=a%20b",
                "binary:///usr/bin/logger?id=1&tag=a%20b",
            ),
            ("file:///var/log/c.log", "file:///var/log/c.log"),
            ("FILE:///var/log/c.log", "file:///var/log/c.log"),
            ("file:/var/log/c.log", "file:///var/log/c.log"),
            ("/var/log/c.log", "/var/log/c.log"),
            ("/var/log/my log", "/var/log/my%20log"),
            ("/var/log/a%20b", "/var/log/a%20b"),
            ("fifo:///run/x", "fifo:///run/x"),
            ("file:relative.log", "file:relative.log"),
            ("relative.log", "relative.log"),
            ("binary://host/x", "binary://host/x"),
            ("file:///a?", "file:///a?"),
        ] {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn bad_uris_fail_with_gos_words() {
        for (input, want) in [
            (":x", r#"parse ":x": missing protocol scheme"#),
            ("/a%zzb", r#"parse "/a%zzb": invalid URL escape "%zz""#),
            ("/a%2", r#"parse "/a%2": invalid URL escape "%2""#),
            (
                "a:b/c:d", // A scheme makes the rest opaque: this one parses.
                "",
            ),
            (
                "1a:b",
                r#"parse "1a:b": first path segment in URL cannot contain colon"#,
            ),
            (
                "file://host:x/p",
                r#"parse "file://host:x/p": invalid port ":x" after host"#,
            ),
            (
                "/a\nb",
                "parse \"/a\\nb\": net/url: invalid control character in URL",
            ),
        ] {
            match normalize(input) {
                Ok(out) => assert!(want.is_empty(), "{input} gave {out}"),
                Err(e) => assert_eq!(e.to_string(), want, "{input}"),
            }
        }
    }
}
