//! containerd's docker resolver, fetcher and pusher over the OCI distribution API: a
//! reference becomes a [`Repository`] (its hosts from the hosts configuration), a tag or
//! digest resolves to a descriptor (`HEAD`, then `GET` when the registry sends no digest),
//! blobs and manifests are fetched from an offset (HTTP ranges), and pushed: blobs that are
//! missing (monolithic or chunked uploads, or a cross-repository mount), then manifests.
//! A mirror (a host that is not the reference's own) gets containerd's `ns` query.

use std::io::{self, Read};
use std::sync::Arc;

use super::auth::{Authorizer, Credentials};
use super::error::{RegistryError, Result};
use super::hosts::{configure_hosts, Capabilities, HostOptions};
use super::transport::{query_escape, status_error, Body, Endpoint};
use crate::image::digest::{Digest, Digester};
use crate::image::media_types as mt;
use crate::image::ocispec::Descriptor;
use crate::image::reference;

/// The media types a resolve accepts (containerd's `Accept` header).
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";
/// The largest manifest read when a registry does not say its digest (containerd's
/// `MaxManifestSize`).
const MAX_MANIFEST: u64 = 4 << 20;
/// Blobs up to this size go up in one `PUT`; larger ones in `PATCH` chunks of this size.
pub const CHUNK_UPLOAD: u64 = 32 << 20;

/// Makes repositories for references: the hosts configuration and the credentials.
#[derive(Clone)]
pub struct Resolver {
    opts: HostOptions,
    auth: Arc<Authorizer>,
}

impl Resolver {
    /// A resolver with the command's host options and credentials.
    pub fn new(opts: HostOptions, credentials: Option<Credentials>) -> Resolver {
        Resolver {
            opts,
            auth: Arc::new(Authorizer::new(credentials)),
        }
    }

    /// The repository `reference` (`host/path[:tag][@digest]`, as containerd's
    /// `reference.Parse` reads it) names.
    pub fn repository(&self, reference_str: &str) -> Result<Repository> {
        let named = reference::parse(reference_str).map_err(|e| {
            RegistryError::InvalidArgument(format!(
                "failed to resolve reference {reference_str:?}: {e}"
            ))
        })?;
        if named.domain.is_empty() || named.path.is_empty() {
            return Err(RegistryError::InvalidArgument(format!(
                "failed to resolve reference {reference_str:?}: reference must name a host and a repository"
            )));
        }
        let hosts = configure_hosts(&named.domain, &self.opts)?;
        let endpoints = hosts
            .into_iter()
            .map(|h| Endpoint::new(h, &self.opts, self.auth.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Repository {
            reference: reference_str.to_string(),
            host: named.domain,
            path: named.path,
            tag: named.tag,
            digest: named.digest,
            endpoints,
            chunk_size: CHUNK_UPLOAD,
        })
    }
}

/// One repository of a registry and the endpoints that serve it.
pub struct Repository {
    /// The reference it was made from.
    pub reference: String,
    /// The reference's host (`docker.io`, `127.0.0.1:5000`).
    pub host: String,
    /// The repository path (`library/alpine`).
    pub path: String,
    /// The tag, empty when none.
    pub tag: String,
    /// The digest, empty when none.
    pub digest: String,
    endpoints: Vec<Endpoint>,
    /// Blobs larger than this are uploaded in `PATCH` chunks of this size.
    chunk_size: u64,
}

/// How a blob push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The registry had it.
    Exists,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Uploaded.
    Uploaded,
}

fn is_manifest_type(media_type: &str) -> bool {
    mt::is_manifest(media_type) || mt::is_index(media_type)
}

impl Repository {
    /// The same repository uploading blobs larger than `n` bytes in chunks of `n`.
    pub fn with_chunk_size(mut self, n: u64) -> Repository {
        self.chunk_size = n.max(1);
        self
    }

    fn scope(&self, push: bool) -> String {
        format!(
            "repository:{}:{}",
            self.path,
            if push { "pull,push" } else { "pull" }
        )
    }

    /// The endpoints with `caps`, in order.
    fn endpoints(&self, caps: Capabilities) -> Result<Vec<&Endpoint>> {
        let out: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.host.capabilities.has(caps))
            .collect();
        if out.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "{}: no hosts with the capability to serve it",
                self.reference
            )));
        }
        Ok(out)
    }

    /// `<path>/<rest>` with containerd's `ns` query when the endpoint is a mirror.
    fn url(&self, ep: &Endpoint, rest: &str) -> String {
        let url = ep.url(&self.path, rest);
        let proxy = ep.host.host != self.host
            && !(self.host == "docker.io" && ep.host.host == "registry-1.docker.io");
        if proxy {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}ns={}", query_escape(&self.host))
        } else {
            url
        }
    }

    /// Resolves the reference to the descriptor of its manifest or index.
    pub fn resolve(&self) -> Result<Descriptor> {
        let (object, caps) = if !self.digest.is_empty() {
            Digest::parse(&self.digest)
                .map_err(|e| RegistryError::InvalidArgument(e.to_string()))?;
            (self.digest.clone(), Capabilities::PULL)
        } else {
            let tag = if self.tag.is_empty() {
                "latest"
            } else {
                &self.tag
            };
            (tag.to_string(), Capabilities::RESOLVE)
        };
        let scopes = [self.scope(false)];
        let mut last: Option<RegistryError> = None;
        for ep in self.endpoints(caps)? {
            let url = self.url(ep, &format!("manifests/{object}"));
            let headers = [("Accept", ACCEPT.to_string())];
            let resp = match ep.send("HEAD", &url, &headers, &scopes, Body::Empty) {
                Ok(r) => r,
                Err(e) => {
                    log::debug!("resolve on {}: {e}", ep.host.host);
                    last = Some(e);
                    continue;
                }
            };
            if resp.status() == 404 {
                last = Some(RegistryError::NotFound(self.reference.clone()));
                continue;
            }
            if !resp.status().is_success() {
                let e = status_error(&self.reference, "HEAD", &url, resp);
                log::debug!("resolve on {}: {e}", ep.host.host);
                last = Some(e);
                continue;
            }
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .unwrap_or_default()
            };
            let media_type = header("Content-Type");
            let mut digest = header("Docker-Content-Digest");
            let mut size: i64 = header("Content-Length").parse().unwrap_or(0);
            if !self.digest.is_empty() {
                if !digest.is_empty() && digest != self.digest {
                    return Err(RegistryError::DigestMismatch {
                        what: self.reference.clone(),
                        expected: self.digest.clone(),
                        actual: digest,
                    });
                }
                digest = self.digest.clone();
            }
            if digest.is_empty() || size == 0 {
                // No digest or size in the answer to HEAD: GET the manifest and hash it.
                let mut resp = ep.send("GET", &url, &headers, &scopes, Body::Empty)?;
                if !resp.status().is_success() {
                    return Err(status_error(&self.reference, "GET", &url, resp));
                }
                let data = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_MANIFEST)
                    .read_to_vec()
                    .map_err(|e| RegistryError::Status(format!("reading {url}: {e}")))?;
                let actual = Digest::from_bytes(&data).to_string();
                if !digest.is_empty() && digest != actual {
                    return Err(RegistryError::DigestMismatch {
                        what: self.reference.clone(),
                        expected: digest,
                        actual,
                    });
                }
                digest = actual;
                size = data.len() as i64;
            }
            let media_type = media_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            if !is_manifest_type(&media_type) {
                return Err(RegistryError::InvalidArgument(format!(
                    "{}: unsupported media type {media_type:?}",
                    self.reference
                )));
            }
            return Ok(Descriptor::new(&media_type, &digest, size));
        }
        Err(last.unwrap_or_else(|| RegistryError::NotFound(self.reference.clone())))
    }

    /// The bytes of `desc` from `offset` on, from the first endpoint that has them.
    pub fn fetch(&self, desc: &Descriptor, offset: i64) -> Result<Box<dyn Read + Send>> {
        let kind = if is_manifest_type(&desc.media_type) {
            "manifests"
        } else {
            "blobs"
        };
        let scopes = [self.scope(false)];
        let mut last: Option<RegistryError> = None;
        for ep in self.endpoints(Capabilities::PULL)? {
            let url = self.url(ep, &format!("{kind}/{}", desc.digest));
            let mut headers = vec![("Accept", format!("{}, */*", desc.media_type))];
            if offset > 0 {
                headers.push(("Range", format!("bytes={offset}-")));
            }
            let resp = match ep.send("GET", &url, &headers, &scopes, Body::Empty) {
                Ok(r) => r,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            if status == 404 {
                last = Some(RegistryError::NotFound(format!("content at {url}")));
                continue;
            }
            if !(200..300).contains(&status) {
                last = Some(status_error(&desc.digest, "GET", &url, resp));
                continue;
            }
            let mut reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
            if offset > 0 && status != 206 {
                // The registry ignored the range: skip to the offset.
                log::debug!("{url}: no range support, skipping {offset} bytes");
                let skipped = io::copy(&mut (&mut reader).take(offset as u64), &mut io::sink())
                    .map_err(|e| RegistryError::io(format!("reading {url}"), e))?;
                if skipped != offset as u64 {
                    return Err(RegistryError::Status(format!(
                        "{url}: content ended at {skipped}, before offset {offset}"
                    )));
                }
            }
            return Ok(reader);
        }
        Err(last.unwrap_or_else(|| RegistryError::NotFound(desc.digest.clone())))
    }

    /// Whether the registry has `desc` (HEAD on the first push endpoint).
    pub fn exists(&self, desc: &Descriptor) -> Result<bool> {
        let ep = self.endpoints(Capabilities::PUSH)?[0];
        let kind = if is_manifest_type(&desc.media_type) {
            "manifests"
        } else {
            "blobs"
        };
        let url = self.url(ep, &format!("{kind}/{}", desc.digest));
        let headers = [("Accept", format!("{}, */*", desc.media_type))];
        let resp = ep.send("HEAD", &url, &headers, &[self.scope(true)], Body::Empty)?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(&desc.digest, "HEAD", &url, resp)),
        }
    }

    /// Uploads the blob `desc` unless the registry has it; `mount_from` is another
    /// repository of the same registry that holds it; `open` gives its bytes.
    pub fn push_blob<'a>(
        &self,
        desc: &Descriptor,
        mount_from: Option<&str>,
        open: &mut dyn FnMut() -> Result<Box<dyn Read + 'a>>,
    ) -> Result<Pushed> {
        if self.exists(desc)? {
            return Ok(Pushed::Exists);
        }
        let ep = self.endpoints(Capabilities::PUSH)?[0];
        let mut scopes = vec![self.scope(true)];
        let mut url = self.url(ep, "blobs/uploads/");
        if let Some(from) = mount_from.filter(|f| *f != self.path) {
            scopes.push(format!("repository:{from}:pull"));
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!(
                "{url}{sep}mount={}&from={}",
                query_escape(&desc.digest),
                query_escape(from)
            );
        }
        let resp = ep.send("POST", &url, &[], &scopes, Body::Bytes(&[]))?;
        let status = resp.status().as_u16();
        if status == 201 {
            return Ok(Pushed::Mounted);
        }
        if status != 202 {
            return Err(status_error(&desc.digest, "POST", &url, resp));
        }
        let mut location = upload_location(ep, &url, &resp)?;
        let size = desc.size.max(0) as u64;
        let mut src = open()?;
        if size > self.chunk_size {
            let mut offset = 0u64;
            while offset < size {
                let n = self.chunk_size.min(size - offset);
                let mut chunk = (&mut src).take(n);
                let headers = [
                    ("Content-Type", "application/octet-stream".to_string()),
                    ("Content-Range", format!("{offset}-{}", offset + n - 1)),
                ];
                let resp = ep.send(
                    "PATCH",
                    &location,
                    &headers,
                    &scopes,
                    Body::Stream(&mut chunk, n),
                )?;
                if resp.status().as_u16() != 202 {
                    return Err(status_error(&desc.digest, "PATCH", &location, resp));
                }
                location = upload_location(ep, &location, &resp)?;
                offset += n;
            }
            let put = with_digest(&location, &desc.digest);
            let resp = ep.send("PUT", &put, &[], &scopes, Body::Bytes(&[]))?;
            if resp.status().as_u16() != 201 {
                return Err(status_error(&desc.digest, "PUT", &put, resp));
            }
        } else {
            let put = with_digest(&location, &desc.digest);
            let headers = [("Content-Type", "application/octet-stream".to_string())];
            let mut body = (&mut src).take(size);
            let resp = ep.send(
                "PUT",
                &put,
                &headers,
                &scopes,
                Body::Stream(&mut body, size),
            )?;
            if resp.status().as_u16() != 201 {
                return Err(status_error(&desc.digest, "PUT", &put, resp));
            }
        }
        Ok(Pushed::Uploaded)
    }

    /// Puts the manifest or index `data` under `reference` (a tag or its digest).
    pub fn push_manifest(&self, desc: &Descriptor, data: &[u8], reference: &str) -> Result<()> {
        let ep = self.endpoints(Capabilities::PUSH)?[0];
        let url = self.url(ep, &format!("manifests/{reference}"));
        let headers = [("Content-Type", desc.media_type.clone())];
        let resp = ep.send(
            "PUT",
            &url,
            &headers,
            &[self.scope(true)],
            Body::Bytes(data),
        )?;
        if !resp.status().is_success() {
            return Err(status_error(&desc.digest, "PUT", &url, resp));
        }
        Ok(())
    }
}

/// `url` with `digest=<digest>` added to its query.
fn with_digest(url: &str, digest: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={}", query_escape(digest))
}

/// The absolute URL of an upload's `Location`.
fn upload_location(
    ep: &Endpoint,
    request_url: &str,
    resp: &ureq::http::Response<ureq::Body>,
) -> Result<String> {
    let loc = resp
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            RegistryError::Status(format!(
                "{request_url}: the registry sent no upload location"
            ))
        })?;
    if loc.starts_with("http://") || loc.starts_with("https://") {
        Ok(loc.to_string())
    } else if loc.starts_with('/') {
        Ok(format!("{}://{}{loc}", ep.host.scheme, ep.host.host))
    } else {
        Err(RegistryError::Status(format!(
            "{request_url}: unusable upload location {loc:?}"
        )))
    }
}

/// Checks `data` (a whole document or blob) against `desc`'s size and digest.
pub fn verify(desc: &Descriptor, data: &[u8]) -> Result<()> {
    if desc.size > 0 && data.len() as i64 != desc.size {
        return Err(RegistryError::DigestMismatch {
            what: desc.digest.clone(),
            expected: format!("{} ({} bytes)", desc.digest, desc.size),
            actual: format!("{} bytes", data.len()),
        });
    }
    let expected =
        Digest::parse(&desc.digest).map_err(|e| RegistryError::InvalidArgument(e.to_string()))?;
    let mut d = Digester::for_algorithm(expected.algorithm())
        .map_err(|e| RegistryError::InvalidArgument(e.to_string()))?;
    d.update(data);
    let actual = d.finish();
    if actual != expected {
        return Err(RegistryError::DigestMismatch {
            what: desc.digest.clone(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MANIFEST: &[u8] =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
    const BLOB: &[u8] = b"0123456789abcdef";

    /// A registry that wants a bearer token from its own `/token`, serving one manifest
    /// and one blob (with ranges); counts token requests. Each connection serves one
    /// request.
    fn fake_registry(tokens: Arc<AtomicUsize>) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let me = host.clone();
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let (mut auth, mut range) = (String::new(), String::new());
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_string(),
                        "range" => range = v.trim().to_string(),
                        _ => {}
                    }
                }
                let token = "Bearer tok-1";
                let reply = |status: &str, headers: &[String], body: &[u8]| {
                    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
                    for h in headers {
                        out.push_str(h);
                        out.push_str("\r\n");
                    }
                    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                    let mut bytes = out.into_bytes();
                    if method != "HEAD" {
                        bytes.extend_from_slice(body);
                    }
                    bytes
                };
                let out = if path == "/stop" {
                    let _ = conn.write_all(&reply("200 OK", &[], b""));
                    return;
                } else if path.starts_with("/token?") {
                    assert!(path.contains("service=fake"), "{path}");
                    assert!(
                        path.contains("scope=repository%3Alib%2Fimg%3Apull"),
                        "{path}"
                    );
                    tokens.fetch_add(1, Ordering::SeqCst);
                    reply("200 OK", &[], br#"{"token":"tok-1","expires_in":300}"#)
                } else if auth != token {
                    reply(
                        "401 Unauthorized",
                        &[format!(
                            "WWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"fake\",scope=\"repository:lib/img:pull\""
                        )],
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                    )
                } else if path == "/v2/lib/img/manifests/v1" {
                    reply(
                        "200 OK",
                        &[
                            format!("Content-Type: {}", mt::OCI_MANIFEST),
                            format!("Docker-Content-Digest: {}", Digest::from_bytes(MANIFEST)),
                        ],
                        MANIFEST,
                    )
                } else if path.starts_with("/v2/lib/img/blobs/") {
                    match range
                        .strip_prefix("bytes=")
                        .and_then(|r| r.strip_suffix('-'))
                    {
                        Some(from) => {
                            let from: usize = from.parse().unwrap();
                            reply("206 Partial Content", &[], &BLOB[from..])
                        }
                        None => reply("200 OK", &[], BLOB),
                    }
                } else {
                    reply("404 Not Found", &[], b"")
                };
                let _ = conn.write_all(&out);
            }
        });
        (host, handle)
    }

    #[test]
    fn bearer_challenges_resolve_and_ranges() {
        let tokens = Arc::new(AtomicUsize::new(0));
        let (host, server) = fake_registry(tokens.clone());
        let resolver = Resolver::new(HostOptions::default(), None);
        let repo = resolver.repository(&format!("{host}/lib/img:v1")).unwrap();
        let desc = repo.resolve().unwrap();
        assert_eq!(desc.media_type, mt::OCI_MANIFEST);
        assert_eq!(desc.digest, Digest::from_bytes(MANIFEST).to_string());
        assert_eq!(desc.size, MANIFEST.len() as i64);
        let blob = Descriptor::new(mt::OCI_LAYER, &Digest::from_bytes(BLOB).to_string(), 16);
        let mut rest = Vec::new();
        repo.fetch(&blob, 10)
            .unwrap()
            .read_to_end(&mut rest)
            .unwrap();
        assert_eq!(rest, b"abcdef");
        // One token serves both requests.
        assert_eq!(tokens.load(Ordering::SeqCst), 1);
        let err = resolver
            .repository(&format!("{host}/lib/img:missing"))
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        ureq::get(format!("http://{host}/stop")).call().ok();
        server.join().unwrap();
    }

    #[test]
    fn verify_tells_size_and_digest_apart() {
        let desc = Descriptor::new(mt::OCI_LAYER, &Digest::from_bytes(BLOB).to_string(), 16);
        verify(&desc, BLOB).unwrap();
        let e = verify(&desc, b"short").unwrap_err().to_string();
        assert!(
            e.contains("digest mismatch") && e.contains("5 bytes"),
            "{e}"
        );
        let e = verify(&desc, b"0123456789abcdeX").unwrap_err().to_string();
        assert!(e.contains("digest mismatch"), "{e}");
    }
}
