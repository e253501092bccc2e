//! Platform specifiers, normalization and matching as containerd 1.6's `platforms` package
//! has them: `Parse`, `Format`, `Normalize`, and the matchers `Only`, `OnlyStrict`,
//! `Ordered`, `All`, `Default` and `DefaultStrict`.

use std::cmp::Ordering;

use super::error::{ImageError, Result};
use super::ocispec::Platform;

/// The operating system this program runs on, as Go names it.
pub fn host_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    }
}

/// The architecture this program was built for, as Go names it (`GOARCH`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "loongarch64" => "loong64",
        arch => arch,
    }
}

/// The ARM variant the kernel reports (`cpuVariant`); empty on other architectures.
fn cpu_variant() -> String {
    let arch = host_arch();
    if arch != "arm" && arch != "arm64" {
        return String::new();
    }
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return String::new();
    };
    let field = |name: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let Some(mut variant) = field("Cpu architecture") else {
        return String::new();
    };
    if arch == "arm" && variant == "7" {
        if let Some(model) = field("model name") {
            if model.to_lowercase().starts_with("armv6-compatible") {
                variant = "6".into();
            }
        }
    }
    match variant.to_lowercase().as_str() {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => "unknown",
    }
    .to_string()
}

/// This host's platform (`platforms.DefaultSpec`).
pub fn default_spec() -> Platform {
    Platform {
        os: host_os().to_string(),
        architecture: host_arch().to_string(),
        variant: cpu_variant(),
        ..Platform::default()
    }
}

/// This host's platform as a specifier (`platforms.DefaultString`), e.g. `linux/amd64`.
pub fn default_string() -> String {
    format(&default_spec())
}

fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
    )
}

fn is_known_arch(arch: &str) -> bool {
    matches!(
        arch,
        "386"
            | "amd64"
            | "amd64p32"
            | "arm"
            | "armbe"
            | "arm64"
            | "arm64be"
            | "ppc64"
            | "ppc64le"
            | "loong64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "mips64p32"
            | "mips64p32le"
            | "ppc"
            | "riscv"
            | "riscv64"
            | "s390"
            | "s390x"
            | "sparc"
            | "sparc64"
            | "wasm"
    )
}

fn normalize_os(os: &str) -> String {
    if os.is_empty() {
        return host_os().to_string();
    }
    let os = os.to_lowercase();
    if os == "macos" {
        "darwin".into()
    } else {
        os
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (arch, mut variant) = (arch.to_lowercase(), variant.to_lowercase());
    let arch = match arch.as_str() {
        "i386" => {
            variant.clear();
            "386".to_string()
        }
        "x86_64" | "x86-64" | "amd64" => {
            if variant == "v1" {
                variant.clear();
            }
            "amd64".to_string()
        }
        "aarch64" | "arm64" => {
            if variant == "8" || variant == "v8" {
                variant.clear();
            }
            "arm64".to_string()
        }
        "armhf" => {
            variant = "v7".into();
            "arm".to_string()
        }
        "armel" => {
            variant = "v6".into();
            "arm".to_string()
        }
        "arm" => {
            match variant.as_str() {
                "" | "7" => variant = "v7".into(),
                "5" | "6" | "8" => variant = format!("v{variant}"),
                _ => {}
            }
            "arm".to_string()
        }
        _ => arch,
    };
    (arch, variant)
}

/// `platforms.Normalize`: lower case, canonical architecture names and variants, and this
/// host's operating system when none is given.
pub fn normalize(p: &Platform) -> Platform {
    let (architecture, variant) = normalize_arch(&p.architecture, &p.variant);
    Platform {
        os: normalize_os(&p.os),
        architecture,
        variant,
        ..p.clone()
    }
}

/// `platforms.Format`: `os/arch[/variant]`, or `unknown` without an OS.
pub fn format(p: &Platform) -> String {
    if p.os.is_empty() {
        return "unknown".to_string();
    }
    [p.os.as_str(), p.architecture.as_str(), p.variant.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

/// `platforms.Parse`: `os`, `arch`, `os/arch` or `os/arch/variant`, normalized.
pub fn parse(specifier: &str) -> Result<Platform> {
    let invalid = |msg: String| ImageError::InvalidArgument(format!("{msg}: invalid argument"));
    if specifier.contains('*') {
        return Err(invalid(format!(
            "{specifier:?}: wildcards not yet supported"
        )));
    }
    let parts: Vec<&str> = specifier.split('/').collect();
    for part in &parts {
        let ok = !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(invalid(format!(
                "{part:?} is an invalid component of {specifier:?}: platform specifier component must match \"^[A-Za-z0-9_-]+$\""
            )));
        }
    }
    let mut p = Platform::default();
    match parts.as_slice() {
        [one] => {
            p.os = normalize_os(one);
            if is_known_os(&p.os) {
                p.architecture = host_arch().to_string();
                let v = cpu_variant();
                if p.architecture == "arm" && v != "v7" {
                    p.variant = v;
                }
                return Ok(p);
            }
            (p.architecture, p.variant) = normalize_arch(one, "");
            if p.architecture == "arm" && p.variant == "v7" {
                p.variant.clear();
            }
            if is_known_arch(&p.architecture) {
                p.os = host_os().to_string();
                return Ok(p);
            }
            Err(invalid(format!(
                "{specifier:?}: unknown operating system or architecture"
            )))
        }
        [os, arch] => {
            p.os = normalize_os(os);
            (p.architecture, p.variant) = normalize_arch(arch, "");
            if p.architecture == "arm" && p.variant == "v7" {
                p.variant.clear();
            }
            Ok(p)
        }
        [os, arch, variant] => {
            p.os = normalize_os(os);
            (p.architecture, p.variant) = normalize_arch(arch, variant);
            if p.architecture == "arm64" && p.variant.is_empty() {
                p.variant = "v8".into();
            }
            Ok(p)
        }
        _ => Err(invalid(format!(
            "{specifier:?}: cannot parse platform specifier"
        ))),
    }
}

/// Which platforms an operation takes, and in what order of preference
/// (`platforms.MatchComparer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Every platform, none preferred (`platforms.All`).
    All,
    /// Any of these (normalized) platforms, preferred in this order (`platforms.Ordered`).
    Ordered(Vec<Platform>),
}

impl Matcher {
    /// `platforms.Only`: `p` and the platforms it can also run (arm/v7 runs arm/v6 and
    /// arm/v5, arm64 runs arm, amd64 runs 386), preferred in that order.
    pub fn only(p: &Platform) -> Matcher {
        Matcher::Ordered(platform_vector(&normalize(p)))
    }

    /// `platforms.OnlyStrict`: exactly `p`.
    pub fn only_strict(p: &Platform) -> Matcher {
        Matcher::Ordered(vec![normalize(p)])
    }

    /// `platforms.Ordered`: any of `ps`, preferred in order.
    pub fn ordered(ps: &[Platform]) -> Matcher {
        Matcher::Ordered(ps.iter().map(normalize).collect())
    }

    /// `platforms.Default`: this host's platform and what it can run.
    pub fn default_host() -> Matcher {
        Matcher::only(&default_spec())
    }

    /// `platforms.DefaultStrict`: exactly this host's platform.
    pub fn default_strict() -> Matcher {
        Matcher::only_strict(&default_spec())
    }

    /// Whether `p` is one of the platforms.
    pub fn matches(&self, p: &Platform) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Ordered(ps) => {
                let n = normalize(p);
                ps.iter().any(|m| same(m, &n))
            }
        }
    }

    /// Whether `a` is preferred over `b` (`Less`).
    pub fn less(&self, a: &Platform, b: &Platform) -> bool {
        let Matcher::Ordered(ps) = self else {
            return false;
        };
        let (a, b) = (normalize(a), normalize(b));
        for m in ps {
            let (am, bm) = (same(m, &a), same(m, &b));
            if am && !bm {
                return true;
            }
            if am || bm {
                return false;
            }
        }
        false
    }

    /// The order of `a` and `b` for a stable sort, descriptors without a platform last (as
    /// containerd sorts an index's manifests).
    pub fn compare(&self, a: Option<&Platform>, b: Option<&Platform>) -> Ordering {
        match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => {
                if self.less(a, b) {
                    Ordering::Less
                } else if self.less(b, a) {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            }
        }
    }
}

fn same(m: &Platform, n: &Platform) -> bool {
    m.os == n.os && m.architecture == n.architecture && m.variant == n.variant
}

fn with(p: &Platform, architecture: &str, variant: String) -> Platform {
    Platform {
        architecture: architecture.to_string(),
        os: p.os.clone(),
        os_version: p.os_version.clone(),
        os_features: p.os_features.clone(),
        variant,
    }
}

fn platform_vector(p: &Platform) -> Vec<Platform> {
    let mut v = vec![p.clone()];
    let version = |variant: &str| variant.strip_prefix('v').unwrap_or(variant).parse::<i64>();
    match p.architecture.as_str() {
        "amd64" => {
            if let Ok(n) = version(&p.variant) {
                for n in (1..n).rev() {
                    v.push(with(p, "amd64", format!("v{n}")));
                }
            }
            v.push(with(p, "386", String::new()));
        }
        "arm" => {
            if let Ok(n) = version(&p.variant) {
                if n > 5 {
                    for n in (5..n).rev() {
                        v.push(with(p, "arm", format!("v{n}")));
                    }
                }
            }
        }
        "arm64" => {
            let variant = if p.variant.is_empty() {
                "v8".to_string()
            } else {
                p.variant.clone()
            };
            v.extend(platform_vector(&with(p, "arm", variant)));
        }
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: &str) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.into(),
            ..Platform::default()
        }
    }

    #[test]
    fn parses_and_formats_like_containerd() {
        assert_eq!(parse("linux/amd64").unwrap(), p("linux", "amd64", ""));
        assert_eq!(parse("Linux/x86_64").unwrap(), p("linux", "amd64", ""));
        assert_eq!(parse("linux/arm").unwrap(), p("linux", "arm", ""));
        assert_eq!(parse("linux/arm/7").unwrap(), p("linux", "arm", "v7"));
        assert_eq!(parse("linux/arm64").unwrap(), p("linux", "arm64", ""));
        assert_eq!(parse("linux/arm64/v8").unwrap(), p("linux", "arm64", "v8"));
        assert_eq!(parse("linux/arm64/8").unwrap(), p("linux", "arm64", "v8"));
        assert_eq!(parse("linux/aarch64").unwrap(), p("linux", "arm64", ""));
        assert_eq!(parse("amd64").unwrap().os, host_os());
        assert_eq!(parse("linux").unwrap().architecture, host_arch());
        assert_eq!(parse("windows/amd64").unwrap(), p("windows", "amd64", ""));
        for bad in ["", "linux/", "a/b/c/d", "linux/*", "lin ux", "frob"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse("frob")
            .unwrap_err()
            .to_string()
            .contains("unknown operating system or architecture"));
        assert_eq!(format(&p("linux", "arm", "v7")), "linux/arm/v7");
        assert_eq!(format(&p("linux", "amd64", "")), "linux/amd64");
        assert_eq!(format(&p("", "amd64", "")), "unknown");
    }

    #[test]
    fn only_takes_what_the_platform_can_run() {
        let m = Matcher::only(&p("linux", "amd64", ""));
        assert!(m.matches(&p("linux", "amd64", "")));
        assert!(m.matches(&p("linux", "386", "")));
        assert!(m.matches(&p("", "x86_64", "")));
        assert!(!m.matches(&p("linux", "arm64", "")));
        assert!(m.less(&p("linux", "amd64", ""), &p("linux", "386", "")));
        assert!(!m.less(&p("linux", "386", ""), &p("linux", "amd64", "")));
        let strict = Matcher::only_strict(&p("linux", "amd64", ""));
        assert!(!strict.matches(&p("linux", "386", "")));
        let arm = Matcher::only(&p("linux", "arm64", ""));
        assert!(arm.matches(&p("linux", "arm", "v7")));
        assert!(arm.matches(&p("linux", "arm", "v5")));
        assert!(!arm.matches(&p("linux", "arm", "v4")));
        assert!(Matcher::All.matches(&p("windows", "arm", "")));
        assert!(!Matcher::All.less(&p("a", "b", ""), &p("c", "d", "")));
    }

    #[test]
    fn sorting_puts_preferred_first_and_unknown_last() {
        let m = Matcher::only(&p("linux", "amd64", ""));
        let mut v = [
            None,
            Some(p("linux", "386", "")),
            Some(p("linux", "arm64", "")),
            Some(p("linux", "amd64", "")),
        ];
        v.sort_by(|a, b| m.compare(a.as_ref(), b.as_ref()));
        assert_eq!(v[0], Some(p("linux", "amd64", "")));
        assert_eq!(v[1], Some(p("linux", "386", "")));
        assert_eq!(v[3], None);
    }
}
