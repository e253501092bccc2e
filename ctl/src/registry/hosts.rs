//! Registry hosts as containerd's `remotes/docker/config` configures them: a hosts
//! directory with `<host>/hosts.toml` (`server`, then `[host."…"]` mirrors tried first, in
//! file order, each with `capabilities`, `ca`, `client`, `skip_verify`, `header` and
//! `override_path`), `<host:port>` also looked up as `<host_port_>`, then `_default`; without
//! a file, `docker.io` is `https://registry-1.docker.io/v2`, a loopback host is plain HTTP,
//! anything else HTTPS (or plain HTTP with `--plain-http`).

use std::path::{Path, PathBuf};
use ureq::tls::{Certificate, ClientCert};

use super::error::{RegistryError, Result};

/// What a host may be used for (containerd's `HostCapabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Fetch content by digest.
    pub const PULL: Capabilities = Capabilities(1);
    /// Resolve a tag to a digest.
    pub const RESOLVE: Capabilities = Capabilities(2);
    /// Push content and tags.
    pub const PUSH: Capabilities = Capabilities(4);
    /// All three.
    pub const ALL: Capabilities = Capabilities(7);

    /// Whether every capability of `other` is in `self`.
    pub fn has(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

/// One endpoint of a registry.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryHost {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and port.
    pub host: String,
    /// The API prefix, `/v2` unless `override_path` says otherwise.
    pub path: String,
    /// What the host may be used for.
    pub capabilities: Capabilities,
    /// Headers sent with every request.
    pub header: Vec<(String, String)>,
    /// CA certificates trusted on top of the system's.
    pub ca_certs: Vec<PathBuf>,
    /// Client certificate and key files (the key in the certificate file when `None`).
    pub client_pairs: Vec<(PathBuf, Option<PathBuf>)>,
    /// Skip TLS verification (`None`: the command's `--skip-verify`).
    pub skip_verify: Option<bool>,
}

impl RegistryHost {
    /// The base URL of the API: `scheme://host/path`.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.path)
    }
}

/// What the command line says about hosts (ctr's `--hosts-dir`, `--plain-http`,
/// `--skip-verify`, `--tlscacert`, `--tlscert`, `--tlskey`, `--http-dump`).
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The hosts directory, when one is used.
    pub hosts_dir: Option<PathBuf>,
    /// Plain HTTP for hosts without a configured scheme.
    pub plain_http: bool,
    /// Skip TLS verification unless a host says otherwise.
    pub skip_verify: bool,
    /// CA certificates every host is verified against instead of the system's (a host's
    /// own `ca` files are added to them): `--tlscacert`'s, read once.
    pub tls_ca: Option<Vec<Certificate<'static>>>,
    /// A client certificate for hosts with none of their own: `--tlscert` and `--tlskey`,
    /// read once.
    pub tls_client: Option<ClientCert>,
    /// Print every request and response head on stderr (ctr's `--http-dump`).
    pub http_dump: bool,
}

/// Whether `host` (with or without a port) is the loopback (`docker.IsLocalhost`).
pub fn is_localhost(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => match host.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        },
    };
    if name == "localhost" {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// `host:port` as a directory name: `host_port_` (containerd's `hostDirectory`).
fn host_directory(host: &str) -> String {
    match host.rfind(':') {
        Some(i) if i > 0 => format!("{}_{}_", &host[..i], &host[i + 1..]),
        _ => host.to_string(),
    }
}

/// The directory of `host` under `root`, when one exists (`HostDirFromRoot`).
pub fn host_dir(root: &Path, host: &str) -> Result<Option<PathBuf>> {
    let mut candidates = Vec::new();
    let dir = host_directory(host);
    if dir != host {
        candidates.push(root.join(dir));
    }
    candidates.push(root.join(host));
    candidates.push(root.join("_default"));
    for p in candidates {
        match std::fs::metadata(&p) {
            Ok(_) => return Ok(Some(p)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RegistryError::io(format!("stat {}", p.display()), e)),
        }
    }
    Ok(None)
}

/// The endpoints for `host`, mirrors first, the registry itself last (`ConfigureHosts`).
pub fn configure_hosts(host: &str, opts: &HostOptions) -> Result<Vec<RegistryHost>> {
    let mut hosts = Vec::new();
    if let Some(root) = &opts.hosts_dir {
        if let Some(dir) = host_dir(root, host)? {
            hosts = load_host_dir(&dir)?;
        }
    }
    if hosts.is_empty() {
        hosts.push(empty_host());
    }
    if let Some(last) = hosts.last_mut().filter(|h| h.host.is_empty()) {
        if host == "docker.io" {
            last.scheme = "https".into();
            last.host = "registry-1.docker.io".into();
        } else if is_localhost(host) {
            last.host = host.to_string();
            // A loopback registry is plain HTTP unless asked otherwise, as containerd's.
            last.scheme = "http".into();
            last.skip_verify = Some(true);
        } else {
            last.host = host.to_string();
            last.scheme = if opts.plain_http { "http" } else { "https" }.into();
        }
        last.path = "/v2".into();
        last.capabilities = Capabilities::ALL;
    }
    Ok(hosts)
}

fn empty_host() -> RegistryHost {
    RegistryHost {
        scheme: String::new(),
        host: String::new(),
        path: String::new(),
        capabilities: Capabilities::ALL,
        header: Vec::new(),
        ca_certs: Vec::new(),
        client_pairs: Vec::new(),
        skip_verify: None,
    }
}

/// Reads `dir/hosts.toml`; a directory without one is the default host.
fn load_host_dir(dir: &Path) -> Result<Vec<RegistryHost>> {
    let file = dir.join("hosts.toml");
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => parse_hosts_file(dir, &text).map_err(|e| match e {
            RegistryError::InvalidArgument(m) => {
                RegistryError::InvalidArgument(format!("{}: {m}", file.display()))
            }
            e => e,
        }),
        Ok(_) => Ok(vec![empty_host()]),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![empty_host()]),
        Err(e) => Err(RegistryError::io(format!("read {}", file.display()), e)),
    }
}

fn invalid(m: impl Into<String>) -> RegistryError {
    RegistryError::InvalidArgument(m.into())
}

/// Parses a `hosts.toml` whose relative paths are under `base`.
pub fn parse_hosts_file(base: &Path, text: &str) -> Result<Vec<RegistryHost>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| invalid(format!("failed to parse TOML: {e}")))?;
    let mut hosts = Vec::new();
    if let Some(entries) = table.get("host") {
        let entries = entries
            .as_table()
            .ok_or_else(|| invalid("invalid `host` tree"))?;
        // The mirrors are tried in the order the file lists them (containerd sorts by line).
        let mut names: Vec<(usize, &String)> =
            entries.keys().map(|k| (position_of(text, k), k)).collect();
        names.sort();
        for (_, name) in names {
            let config = entries[name]
                .as_table()
                .ok_or_else(|| invalid(format!("invalid host {name:?}")))?;
            hosts.push(parse_host_config(name, base, config)?);
        }
    }
    let server = match table.get("server") {
        None => "",
        Some(v) => v
            .as_str()
            .ok_or_else(|| invalid("invalid type for \"server\""))?,
    };
    hosts.push(parse_host_config(server, base, &table)?);
    Ok(hosts)
}

/// Where `[host."name"]` starts in `text` (the end when it cannot be found).
fn position_of(text: &str, name: &str) -> usize {
    let forms = [format!("\"{name}\""), format!("'{name}'"), name.to_string()];
    forms
        .iter()
        .filter_map(|f| {
            text.match_indices(f.as_str())
                .find(|(i, _)| text[..*i].trim_end().ends_with("host."))
                .map(|(i, _)| i)
        })
        .min()
        .unwrap_or(usize::MAX)
}

fn strings(v: &toml::Value, what: &str) -> Result<Vec<String>> {
    match v {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("unable to cast {i:?} to string")))
            })
            .collect(),
        other => Err(invalid(format!(
            "invalid type {} for {what:?}",
            other.type_str()
        ))),
    }
}

fn abs(p: &str, base: &Path) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn parse_host_config(server: &str, base: &Path, config: &toml::Table) -> Result<RegistryHost> {
    let mut result = empty_host();
    let override_path = config
        .get("override_path")
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    if !server.is_empty() {
        let server = if server.starts_with("http") {
            server.to_string()
        } else {
            format!("https://{server}")
        };
        let (scheme, rest) = server
            .split_once("://")
            .ok_or_else(|| invalid(format!("unable to parse server {server}")))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(invalid(format!("unable to parse server {server}")));
        }
        result.scheme = scheme.to_string();
        result.host = host.to_string();
        let mut path = crate::image::gopath::clean(path);
        if path == "." || path == "/" {
            path.clear();
        }
        if !path.ends_with("/v2") && !override_path {
            path.push_str("/v2");
        }
        result.path = path;
    }
    result.skip_verify = match config.get("skip_verify") {
        None => None,
        Some(v) => Some(
            v.as_bool()
                .ok_or_else(|| invalid("invalid type for \"skip_verify\""))?,
        ),
    };
    if let Some(caps) = config.get("capabilities") {
        let mut c = 0u8;
        for name in strings(caps, "capabilities")? {
            c |= match name.to_ascii_lowercase().as_str() {
                "pull" => Capabilities::PULL.0,
                "resolve" => Capabilities::RESOLVE.0,
                "push" => Capabilities::PUSH.0,
                _ => return Err(invalid(format!("unknown capability {name}"))),
            };
        }
        result.capabilities = Capabilities(c);
    }
    if let Some(ca) = config.get("ca") {
        result.ca_certs = strings(ca, "ca")?.iter().map(|p| abs(p, base)).collect();
    }
    if let Some(client) = config.get("client") {
        match client {
            toml::Value::String(s) => result.client_pairs.push((abs(s, base), None)),
            toml::Value::Array(items) => {
                for item in items {
                    match item {
                        toml::Value::String(s) => result.client_pairs.push((abs(s, base), None)),
                        toml::Value::Array(_) => {
                            let pair = strings(item, "client")?;
                            let [cert, key] = pair.as_slice() else {
                                return Err(invalid(format!(
                                    "invalid pair {item:?} for \"client\""
                                )));
                            };
                            result
                                .client_pairs
                                .push((abs(cert, base), Some(abs(key, base))));
                        }
                        other => {
                            return Err(invalid(format!(
                                "invalid type {} for \"client\"",
                                other.type_str()
                            )))
                        }
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "invalid type {} for \"client\"",
                    other.type_str()
                )))
            }
        }
    }
    if let Some(header) = config.get("header") {
        let header = header
            .as_table()
            .ok_or_else(|| invalid("invalid type for \"header\""))?;
        for (key, value) in header {
            for v in strings(value, &format!("header {key}"))? {
                result.header.push((key.clone(), v));
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_io_and_loopback_defaults() {
        let opts = HostOptions::default();
        let h = configure_hosts("docker.io", &opts).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].base_url(), "https://registry-1.docker.io/v2");
        let h = configure_hosts("127.0.0.1:5000", &opts).unwrap();
        assert_eq!(h[0].base_url(), "http://127.0.0.1:5000/v2");
        let h = configure_hosts("registry.example:5000", &opts).unwrap();
        assert_eq!(h[0].base_url(), "https://registry.example:5000/v2");
        let plain = HostOptions {
            plain_http: true,
            ..HostOptions::default()
        };
        let h = configure_hosts("registry.example", &plain).unwrap();
        assert_eq!(h[0].base_url(), "http://registry.example/v2");
        assert!(is_localhost("localhost:5000"));
        assert!(is_localhost("[::1]:80"));
        assert!(!is_localhost("example.com"));
    }

    #[test]
    fn hosts_toml_lists_mirrors_in_file_order() {
        let text = r#"
server = "https://registry.example"

[host."https://zz-mirror.example"]
  capabilities = ["pull", "resolve"]
  ca = "ca.crt"
  header = { X-Token = "abc", X-Multi = ["a", "b"] }

[host."http://aa-mirror.example:5000/custom"]
  capabilities = ["pull"]
  skip_verify = true
  client = [["client.crt", "/abs/client.key"]]
  override_path = true
"#;
        let hosts =
            parse_hosts_file(Path::new("/etc/corral/certs.d/registry.example"), text).unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0].base_url(), "https://zz-mirror.example/v2");
        assert!(hosts[0].capabilities.has(Capabilities::RESOLVE));
        assert!(!hosts[0].capabilities.has(Capabilities::PUSH));
        assert_eq!(
            hosts[0].ca_certs,
            vec![PathBuf::from("/etc/corral/certs.d/registry.example/ca.crt")]
        );
        assert_eq!(hosts[0].header.len(), 3);
        assert_eq!(hosts[1].base_url(), "http://aa-mirror.example:5000/custom");
        assert_eq!(hosts[1].skip_verify, Some(true));
        assert_eq!(
            hosts[1].client_pairs,
            vec![(
                PathBuf::from("/etc/corral/certs.d/registry.example/client.crt"),
                Some(PathBuf::from("/abs/client.key"))
            )]
        );
        assert_eq!(hosts[2].base_url(), "https://registry.example/v2");
        assert!(hosts[2].capabilities.has(Capabilities::ALL));
    }

    #[test]
    fn bad_files_are_refused() {
        let base = Path::new("/x");
        assert!(parse_hosts_file(base, "[host.\"h\"]\ncapabilities = [\"fly\"]").is_err());
        assert!(parse_hosts_file(base, "server = 3").is_err());
        assert!(parse_hosts_file(base, "not toml [").is_err());
    }

    #[test]
    fn host_directories_are_found_like_containerds() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("reg.example_5000_")).unwrap();
        std::fs::write(
            root.path().join("reg.example_5000_/hosts.toml"),
            "server = \"http://reg.example:5000\"\n",
        )
        .unwrap();
        let opts = HostOptions {
            hosts_dir: Some(root.path().to_path_buf()),
            ..HostOptions::default()
        };
        let h = configure_hosts("reg.example:5000", &opts).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].base_url(), "http://reg.example:5000/v2");
        assert_eq!(host_dir(root.path(), "other.example").unwrap(), None);
    }
}
