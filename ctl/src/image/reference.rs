//! Image references as containerd reads them: Docker's grammar and normalization
//! (`reference/docker`: `docker.io/library/` added, `:latest` by default, and the familiar
//! form for `manifest.json`), containerd's own `reference.Parse` (the OCI ref name is its
//! object part), and the name translators `ctr images import` applies.

use super::error::{ImageError, Result};

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO: &str = "library";
const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A parsed Docker reference: `[domain/]path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The registry host (and port), empty when the reference has none.
    pub domain: String,
    /// The repository path.
    pub path: String,
    /// The tag, empty when none.
    pub tag: String,
    /// The digest, empty when none.
    pub digest: String,
}

impl Named {
    /// The repository name: `domain/path`, or `path` without a domain.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())?;
        if !self.tag.is_empty() {
            write!(f, ":{}", self.tag)?;
        }
        if !self.digest.is_empty() {
            write!(f, "@{}", self.digest)?;
        }
        Ok(())
    }
}

fn invalid(what: &str) -> ImageError {
    ImageError::InvalidArgument(what.to_string())
}

/// `[a-z0-9]+` runs separated by `.`, `_`, `__` or any number of `-`.
fn is_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A host name (components of letters, digits and inner `-`, joined by `.`) with an optional
/// `:port`.
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|c| word(*c) || *c == b'.' || *c == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[[:xdigit:]]{32,}`.
fn is_digest_like(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Docker's `reference.Parse`: the grammar, anchored; the first path component is the
/// domain when it reads as one and more components follow.
pub fn parse(s: &str) -> Result<Named> {
    let matches = |s: &str| -> Option<Named> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !is_digest_like(d) {
                    return None;
                }
                (r, d.to_string())
            }
            None => (s, String::new()),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], rest[i + 1..].to_string()),
            _ => (rest, String::new()),
        };
        if !tag.is_empty() && !is_tag(&tag) || rest.ends_with(':') {
            return None;
        }
        let parts: Vec<&str> = name.split('/').collect();
        let (domain, path) =
            if parts.len() > 1 && is_domain(parts[0]) && parts[1..].iter().all(|p| is_component(p))
            {
                (parts[0].to_string(), parts[1..].join("/"))
            } else if parts.iter().all(|p| is_component(p)) {
                (String::new(), name.to_string())
            } else {
                return None;
            };
        Some(Named {
            domain,
            path,
            tag,
            digest,
        })
    };
    let Some(named) = matches(s) else {
        if s.is_empty() {
            return Err(invalid("repository name must have at least one component"));
        }
        if matches(&s.to_lowercase()).is_some() {
            return Err(invalid("repository name must be lowercase"));
        }
        return Err(invalid("invalid reference format"));
    };
    if named.name().len() > NAME_TOTAL_LENGTH_MAX {
        return Err(invalid(&format!(
            "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )));
    }
    if !named.digest.is_empty() {
        super::digest::Digest::parse(&named.digest)?;
    }
    Ok(named)
}

fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.find('/') {
        Some(i) if name[..i].contains(['.', ':']) || &name[..i] == "localhost" => {
            (name[..i].to_string(), name[i + 1..].to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO}/{remainder}");
    }
    (domain, remainder)
}

/// Docker's `ParseNormalizedNamed`: `busybox` is `docker.io/library/busybox`.
pub fn parse_normalized_named(s: &str) -> Result<Named> {
    if s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return Err(invalid(&format!(
            "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )));
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote = remainder.split(':').next().unwrap_or("");
    if remote.to_lowercase() != remote {
        return Err(invalid(
            "invalid reference format: repository name must be lowercase",
        ));
    }
    let named = parse(&format!("{domain}/{remainder}"))?;
    if named.path.is_empty() {
        return Err(invalid(&format!("reference {s} has no name")));
    }
    Ok(named)
}

/// Docker's `ParseDockerRef`, as `String()`: normalized, `:latest` when neither tag nor
/// digest is given, and the tag dropped when both are.
pub fn normalize_docker_ref(s: &str) -> Result<String> {
    let mut named = parse_normalized_named(s)
        .map_err(|e| e.context(format_args!("normalize image ref {s:?}")))?;
    if !named.tag.is_empty() && !named.digest.is_empty() {
        named.tag.clear();
    } else if named.tag.is_empty() && named.digest.is_empty() {
        named.tag = DEFAULT_TAG.to_string();
    }
    Ok(named.to_string())
}

/// The familiar form `manifest.json` uses (containerd's `familiarizeReference`):
/// `docker.io/library/busybox:latest` is `busybox:latest`.
pub fn familiarize(s: &str) -> Result<String> {
    let mut named =
        parse_normalized_named(s).map_err(|e| e.context(format_args!("failed to parse {s:?}")))?;
    if named.tag.is_empty() && named.digest.is_empty() {
        named.tag = DEFAULT_TAG.to_string();
    }
    if named.domain == DEFAULT_DOMAIN {
        named.domain.clear();
        if let Some(rest) = named.path.strip_prefix("library/") {
            if !rest.contains('/') {
                named.path = rest.to_string();
            }
        }
    }
    Ok(named.to_string())
}

/// The object part of containerd's `reference.Parse` (what follows the first `:` or `@` of
/// the path), which containerd takes as the OCI ref name; the whole name when it does not
/// parse (`ociReferenceName`).
pub fn oci_reference_name(name: &str) -> String {
    let parsed = || -> Option<String> {
        if name.contains("://") {
            return None;
        }
        let (host, path) = match name.find('/') {
            Some(i) => (&name[..i], &name[i..]),
            None => (name, ""),
        };
        if host.is_empty() || !valid_url_host(host) {
            return None;
        }
        let object = match path.find([':', '@']) {
            Some(i) => {
                let o = &path[i..];
                o.strip_prefix(':').unwrap_or(o).to_string()
            }
            None => String::new(),
        };
        Some(object)
    };
    parsed().unwrap_or_else(|| name.to_string())
}

/// What Go's `url.Parse` accepts as a host: a port after the last `:` must be digits.
fn valid_url_host(host: &str) -> bool {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => {
                let rest = &host[i + 1..];
                rest.is_empty()
                    || rest
                        .strip_prefix(':')
                        .is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()))
            }
            None => false,
        };
    }
    match host.rfind(':') {
        Some(i) => host[i + 1..].bytes().all(|c| c.is_ascii_digit()),
        None => true,
    }
}

/// How `ctr images import` turns an OCI ref name into an image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefTranslator {
    /// `archive.AddRefPrefix`: a bare tag becomes `prefix:tag`; full names stay.
    AddPrefix(String),
    /// `archive.FilterRefPrefix`: like `AddPrefix`, but full names outside `prefix` are
    /// dropped (empty).
    FilterPrefix(String),
}

impl RefTranslator {
    /// The image name for OCI ref name `r`; empty to skip it.
    pub fn translate(&self, r: &str) -> String {
        let (prefix, check) = match self {
            RefTranslator::AddPrefix(p) => (p, false),
            RefTranslator::FilterPrefix(p) => (p, true),
        };
        if r.contains(['/', ':', '@']) {
            if check && !is_image_prefix(r, prefix) {
                return String::new();
            }
            return r.to_string();
        }
        format!("{prefix}:{r}")
    }
}

fn is_image_prefix(s: &str, prefix: &str) -> bool {
    if !s.starts_with(prefix) {
        return false;
    }
    match s.as_bytes().get(prefix.len()) {
        None => true,
        Some(b'/' | b':' | b'@') => true,
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_refs_normalize() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("corral/busybox:latest", "docker.io/corral/busybox:latest"),
            ("docker.io/corral/busybox", "docker.io/corral/busybox:latest"),
            ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("quay.io/a/b-c__d.e:v1.0", "quay.io/a/b-c__d.e:v1.0"),
            (
                "busybox:1@sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf",
                "docker.io/library/busybox@sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf",
            ),
        ] {
            assert_eq!(normalize_docker_ref(input).unwrap(), want, "{input}");
        }
        for bad in ["", "Busybox", "a:b:c", "a/B", "a//b", "-a", "a:", "UPPER/x"] {
            assert!(normalize_docker_ref(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_docker_ref("Busybox")
            .unwrap_err()
            .to_string()
            .contains("must be lowercase"));
        assert!(normalize_docker_ref(&"a".repeat(64).replace('a', "b")).is_err());
    }

    #[test]
    fn familiar_names_drop_the_defaults() {
        assert_eq!(
            familiarize("docker.io/library/busybox:latest").unwrap(),
            "busybox:latest"
        );
        assert_eq!(
            familiarize("docker.io/corral/busybox:latest").unwrap(),
            "corral/busybox:latest"
        );
        assert_eq!(familiarize("busybox").unwrap(), "busybox:latest");
        assert_eq!(familiarize("quay.io/a/b:1").unwrap(), "quay.io/a/b:1");
    }

    #[test]
    fn oci_ref_names_are_the_object() {
        assert_eq!(
            oci_reference_name("docker.io/corral/busybox:latest"),
            "latest"
        );
        assert_eq!(
            oci_reference_name("docker.io/corral/busybox@sha256:abc"),
            "@sha256:abc"
        );
        assert_eq!(oci_reference_name("docker.io/corral/busybox"), "");
        assert_eq!(oci_reference_name("localhost:5000/a:t"), "t");
        // No host that url.Parse accepts: the whole name.
        assert_eq!(oci_reference_name("busybox:latest"), "busybox:latest");
        assert_eq!(oci_reference_name("/x:y"), "/x:y");
    }

    #[test]
    fn translators_follow_ctr() {
        let add = RefTranslator::AddPrefix("import-2024-01-02".into());
        assert_eq!(add.translate("latest"), "import-2024-01-02:latest");
        assert_eq!(add.translate("docker.io/a/b:1"), "docker.io/a/b:1");
        let filter = RefTranslator::FilterPrefix("docker.io/a/b".into());
        assert_eq!(filter.translate("1"), "docker.io/a/b:1");
        assert_eq!(filter.translate("docker.io/a/b:2"), "docker.io/a/b:2");
        assert_eq!(filter.translate("docker.io/a/bc:2"), "");
        assert_eq!(filter.translate("docker.io/x:2"), "");
    }
}
