//! HTTP to registry hosts over `ureq` (blocking, rustls): one agent per host with the TLS
//! settings its configuration asks for (the system's CA bundle, or `--tlscacert`'s, plus the
//! host's `ca` files, client certificates, `skip_verify`), the host's extra headers, and
//! authorization retried once after a 401 challenge.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
use ureq::{Agent, SendBody};

use super::auth::{Authorizer, Credentials};
use super::error::{RegistryError, Result};
use super::hosts::{HostOptions, RegistryHost};

/// Where Debian (and most distributions) keep the system's CA bundle; `SSL_CERT_FILE`
/// overrides it, as Go's `x509.SystemCertPool` allows.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The largest error body or token answer read.
const SMALL_BODY: u64 = 1 << 20;

/// The system's CA certificates, read once.
fn system_roots() -> &'static Vec<Certificate<'static>> {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let env = std::env::var("SSL_CERT_FILE").ok();
        let paths = env
            .iter()
            .map(String::as_str)
            .chain(SYSTEM_BUNDLES.iter().copied());
        for p in paths {
            if let Ok(data) = std::fs::read(p) {
                let certs = pem_certificates(&data);
                log::debug!("{} system CA certificates from {p}", certs.len());
                return certs;
            }
        }
        log::debug!("no system CA bundle found");
        Vec::new()
    })
}

/// The certificates in PEM `data`; other items, and what does not parse, are skipped.
fn pem_certificates(data: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(data)
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

fn read_pem(path: &Path) -> Result<Vec<PemItem<'static>>> {
    let data = std::fs::read(path)
        .map_err(|e| RegistryError::io(format!("unable to read {}", path.display()), e))?;
    ureq::tls::parse_pem(&data)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            RegistryError::InvalidArgument(format!("unable to load {}: {e}", path.display()))
        })
}

/// The TLS settings of `host`: the system's roots, or the command's `--tlscacert` in their
/// place, plus the host's `ca` files; the host's first client pair, or the command's
/// `--tlscert` and `--tlskey` (containerd's `DefaultTLS`, which a host's settings amend).
fn tls_config(host: &RegistryHost, opts: &HostOptions) -> Result<TlsConfig> {
    let mut roots = match &opts.tls_ca {
        Some(ca) => ca.clone(),
        None => system_roots().clone(),
    };
    for ca in &host.ca_certs {
        let before = roots.len();
        roots.extend(certificates(read_pem(ca)?));
        if roots.len() == before {
            return Err(RegistryError::InvalidArgument(format!(
                "unable to load CA cert {:?}",
                ca.display()
            )));
        }
    }
    let client_cert = match (host.client_pairs.first(), &opts.tls_client) {
        (Some((cert, key)), _) => Some(client_pair(cert, key.as_deref()).map_err(|e| match e {
            RegistryError::InvalidArgument(m) => {
                RegistryError::InvalidArgument(format!("failed to load X509 key pair: {m}"))
            }
            other => other,
        })?),
        (None, client) => client.clone(),
    };
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(client_cert)
        .disable_verification(host.skip_verify.unwrap_or(opts.skip_verify))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build())
}

fn certificates(items: Vec<PemItem<'static>>) -> impl Iterator<Item = Certificate<'static>> {
    items.into_iter().filter_map(|i| match i {
        PemItem::Certificate(c) => Some(c),
        _ => None,
    })
}

/// The certificates of `--tlscacert`: all of them, at least one. Read when the command
/// starts, as ctr reads it, so a bad file fails it at once in ctr's words.
pub fn default_roots(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let data = std::fs::read(path)
        .map_err(|e| RegistryError::io(format!("failed to read {:?}", path.display()), e))?;
    let certs = pem_certificates(&data);
    if certs.is_empty() {
        return Err(RegistryError::InvalidArgument(format!(
            "failed to load TLS CAs from {:?}: invalid data",
            path.display()
        )));
    }
    Ok(certs)
}

/// `--tlscert` and `--tlskey` as a client certificate, read when the command starts.
pub fn default_client(cert: &Path, key: &Path) -> Result<ClientCert> {
    client_pair(cert, Some(key)).map_err(|e| {
        RegistryError::InvalidArgument(format!(
            "failed to load TLS client credentials (cert={:?}, key={:?}): {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// A certificate chain and its private key, from `cert` and `key` (the key in `cert`'s file
/// when `None`).
fn client_pair(cert: &Path, key: Option<&Path>) -> Result<ClientCert> {
    let items = read_pem(cert)?;
    let key_items = match key {
        Some(k) => read_pem(k)?,
        None => Vec::new(),
    };
    let mut chain = Vec::new();
    let mut private: Option<PrivateKey<'static>> = None;
    for item in items.into_iter().chain(key_items) {
        match item {
            PemItem::Certificate(c) => chain.push(c),
            PemItem::PrivateKey(k) => private = Some(k),
            _ => {}
        }
    }
    let private = private.ok_or_else(|| {
        RegistryError::InvalidArgument(format!("no private key for {}", cert.display()))
    })?;
    if chain.is_empty() {
        return Err(RegistryError::InvalidArgument(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    Ok(ClientCert::new_with_certs(&chain, private))
}

/// ctr's `--http-dump`: each request's and response's head on stderr, as Go's
/// `httputil.DumpRequest` lays it out, without bodies (blobs are large, and token answers
/// are secrets) and with credentials masked.
struct HttpDump;

/// Headers whose values are credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

impl HttpDump {
    fn headers(out: &mut String, headers: &http::HeaderMap) {
        for (name, value) in headers {
            let shown = if SECRET_HEADERS.contains(&name.as_str()) {
                "<redacted>".into()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            out.push_str(&format!("{name}: {shown}\n"));
        }
    }
}

impl ureq::middleware::Middleware for HttpDump {
    fn handle(
        &self,
        request: http::Request<SendBody>,
        next: ureq::middleware::MiddlewareNext,
    ) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
        let mut out = format!(
            "{} {} {:?}\n",
            request.method(),
            request.uri(),
            request.version()
        );
        Self::headers(&mut out, request.headers());
        eprintln!("{out}");
        let response = next.handle(request)?;
        let mut out = format!("{:?} {}\n", response.version(), response.status());
        Self::headers(&mut out, response.headers());
        eprintln!("{out}");
        Ok(response)
    }
}

/// A request body: nothing, bytes (which can be sent again after a challenge), or a stream
/// of a known length (sent once).
pub enum Body<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes from a reader.
    Stream(&'a mut dyn Read, u64),
}

/// One host with its HTTP agent.
pub struct Endpoint {
    /// The host's configuration.
    pub host: RegistryHost,
    agent: Agent,
    auth: Arc<Authorizer>,
}

impl Endpoint {
    /// The endpoint of `host`, authorizing through `auth`.
    pub fn new(host: RegistryHost, opts: &HostOptions, auth: Arc<Authorizer>) -> Result<Endpoint> {
        let mut config = Agent::config_builder();
        if opts.http_dump {
            config = config.middleware(HttpDump);
        }
        let agent = config
            .tls_config(tls_config(&host, opts)?)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .user_agent(format!("corralctl/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Endpoint { host, agent, auth })
    }

    /// `base_url` + `/<repository>/<rest>`.
    pub fn url(&self, repository: &str, rest: &str) -> String {
        format!("{}/{repository}/{rest}", self.host.base_url())
    }

    /// Sends a request needing `scopes`; after a 401 the challenge is taken and the request
    /// sent once more (not with a streamed body: the 401 is returned).
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        scopes: &[String],
        mut body: Body<'_>,
    ) -> Result<Response<ureq::Body>> {
        let mut retried = false;
        loop {
            let authorization = self.auth.authorization(
                &self.host.host,
                scopes,
                &|realm, service, scopes, creds| self.fetch_token(realm, service, scopes, creds),
            )?;
            let mut req = http::Request::builder().method(method).uri(url);
            for (k, v) in &self.host.header {
                req = req.header(k.as_str(), v.as_str());
            }
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            if let Some(a) = &authorization {
                req = req.header("Authorization", a.as_str());
            }
            let bad =
                |e: http::Error| RegistryError::InvalidArgument(format!("{method} {url:?}: {e}"));
            log::debug!("{method} {url}");
            let (sent, replayable) = match &mut body {
                Body::Empty => (
                    self.agent.run(req.body(SendBody::none()).map_err(bad)?),
                    true,
                ),
                Body::Bytes(b) => {
                    let mut src: &[u8] = b;
                    let req = req
                        .header("Content-Length", b.len().to_string())
                        .body(SendBody::from_reader(&mut src))
                        .map_err(bad)?;
                    (self.agent.run(req), true)
                }
                Body::Stream(r, len) => {
                    let req = req
                        .header("Content-Length", len.to_string())
                        .body(SendBody::from_reader(&mut **r))
                        .map_err(bad)?;
                    (self.agent.run(req), false)
                }
            };
            let resp = sent.map_err(|e| request_error(method, url, e))?;
            if resp.status() == 401 && !retried && replayable {
                let challenge = resp
                    .headers()
                    .get_all("WWW-Authenticate")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(", ");
                let sent_with_auth = authorization.is_some();
                if self
                    .auth
                    .add_challenges(&self.host.host, &challenge, sent_with_auth)
                {
                    retried = true;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// GETs a token from `realm` (`docker/auth.FetchToken`), with basic credentials when
    /// there are any.
    fn fetch_token(
        &self,
        realm: &str,
        service: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<String> {
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if !service.is_empty() {
            url.push_str(&format!("{sep}service={}", query_escape(service)));
            sep = '&';
        }
        for s in scopes {
            url.push_str(&format!("{sep}scope={}", query_escape(s)));
            sep = '&';
        }
        let mut req = http::Request::builder().method("GET").uri(&url);
        if let Some(c) = creds {
            req = req.header("Authorization", c.basic_header());
        }
        let req = req
            .body(SendBody::none())
            .map_err(|e| RegistryError::InvalidArgument(format!("GET {realm:?}: {e}")))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| request_error("GET", realm, e))?;
        let status = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            .limit(SMALL_BODY)
            .read_to_vec()
            .map_err(|e| request_error("GET", realm, e))?;
        if !status.is_success() {
            return Err(RegistryError::Unauthorized(format!(
                "failed to fetch anonymous token: unexpected status from GET request to {realm}: {status}{}",
                error_details(&body)
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Status(format!("unable to decode token response: {e}")))?;
        let token = v
            .get("token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .or_else(|| v.get("access_token").and_then(|t| t.as_str()))
            .unwrap_or_default();
        if token.is_empty() {
            return Err(RegistryError::Unauthorized(
                "no token in the token server's response".into(),
            ));
        }
        Ok(token.to_string())
    }
}

/// Percent-encodes a query value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A transport failure as containerd words it (`failed to do request: Head "url": ...`),
/// TLS failures and unreachable hosts told apart.
fn request_error(method: &str, url: &str, e: ureq::Error) -> RegistryError {
    let text = e.to_string();
    let verb = format!("{}{}", &method[..1], method[1..].to_ascii_lowercase());
    let tls = matches!(e, ureq::Error::Rustls(_) | ureq::Error::Tls(_))
        || text.contains("certificate")
        || text.contains("tls")
        || text.contains("TLS");
    if tls {
        let reason = text.strip_prefix("io: ").unwrap_or(&text);
        return RegistryError::Tls(format!(
            "failed to do request: {verb} {url:?}: tls: {reason}"
        ));
    }
    let m = format!("failed to do request: {verb} {url:?}: {text}");
    match e {
        ureq::Error::Io(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Timeout(_) => RegistryError::Unavailable(m),
        _ => RegistryError::Status(m),
    }
}

/// ` (CODE: message)` from a registry's JSON error body, empty when it has none.
pub fn error_details(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let Some(errors) = v.get("errors").and_then(|e| e.as_array()) else {
        return String::new();
    };
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("UNKNOWN");
            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            format!("{}: {msg}", code.to_ascii_lowercase())
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

/// The error for an answer with an unexpected status: not found, unauthorized, or the
/// status with the registry's error details.
pub fn status_error(
    what: &str,
    method: &str,
    url: &str,
    mut resp: Response<ureq::Body>,
) -> RegistryError {
    let status = resp.status();
    let body = resp
        .body_mut()
        .with_config()
        .limit(SMALL_BODY)
        .read_to_vec()
        .unwrap_or_default();
    let details = error_details(&body);
    match status.as_u16() {
        404 => RegistryError::NotFound(what.to_string()),
        401 | 403 => {
            let access = if matches!(method, "GET" | "HEAD") {
                "pull"
            } else {
                "push"
            };
            RegistryError::Unauthorized(format!(
                "{what}: {access} access denied, repository does not exist or may require authorization: unexpected status from {method} request to {url}: {status}{details}"
            ))
        }
        _ => RegistryError::Status(format!(
            "{what}: unexpected status from {method} request to {url}: {status}{details}"
        )),
    }
}
