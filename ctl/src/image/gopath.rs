//! Go's `path` package for slash-separated names in archives: `Clean`, `Dir` and `Join`, so
//! names inside a tar resolve exactly as containerd's importer resolves them.

/// `path.Clean`: the shortest equivalent name (no `.`, no `..` that can be resolved, no
/// repeated or trailing slashes); `.` for an empty result.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `path.Dir`: everything before the last slash, cleaned.
pub fn dir(p: &str) -> String {
    match p.rfind('/') {
        Some(i) => clean(&p[..i + 1]),
        None => ".".to_string(),
    }
}

/// `path.Join`: the non-empty elements joined by slashes, cleaned; empty when all are.
pub fn join(parts: &[&str]) -> String {
    let nonempty: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if nonempty.is_empty() {
        return String::new();
    }
    clean(&nonempty.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_gos_path_package() {
        for (input, want) in [
            ("", "."),
            ("./oci-layout", "oci-layout"),
            ("blobs//sha256/./x", "blobs/sha256/x"),
            ("a/b/../c/", "a/c"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/..", "."),
            ("/", "/"),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
        assert_eq!(dir("abc/layer.tar"), "abc");
        assert_eq!(dir("layer.tar"), ".");
        assert_eq!(
            join(&[&dir("a/b/layer.tar"), "../c/layer.tar"]),
            "a/c/layer.tar"
        );
        assert_eq!(join(&[".", "x/layer.tar"]), "x/layer.tar");
        assert_eq!(join(&["", ""]), "");
    }
}
