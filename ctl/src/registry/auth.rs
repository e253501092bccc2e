//! Registry authorization as containerd's `docker.NewDockerAuthorizer` does it: nothing is
//! sent until a host answers 401 with a `WWW-Authenticate` challenge; then `Basic` sends the
//! user's credentials, and `Bearer` fetches a token from the challenge's realm (with the
//! credentials, when there are any) for the scopes the request needs, cached per host and
//! scope. Credentials are never logged.

use std::collections::HashMap;
use std::sync::Mutex;

/// A user name and its password or token (ctr's `--user user[:password]`).
#[derive(Clone, Default)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, secret: <hidden> }}",
            self.username
        )
    }
}

impl Credentials {
    /// `user[:password]` split at the first colon (the password empty without one).
    pub fn parse(user: &str) -> Credentials {
        match user.split_once(':') {
            Some((u, p)) if !u.is_empty() => Credentials {
                username: u.to_string(),
                secret: p.to_string(),
            },
            _ => Credentials {
                username: user.to_string(),
                secret: String::new(),
            },
        }
    }

    /// The `Authorization` value of HTTP basic authentication.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            base64(format!("{}:{}", self.username, self.secret).as_bytes())
        )
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One challenge of a `WWW-Authenticate` header: the scheme (lower case) and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (others are ignored).
    pub scheme: String,
    /// `realm`, `service`, `scope`, ... (keys lower case).
    pub params: HashMap<String, String>,
}

/// Parses a `WWW-Authenticate` value: `Bearer realm="…",service="…"`, `Basic realm="…"`,
/// several challenges separated by commas.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // A token followed by `=` is a parameter of the current challenge; otherwise it
        // starts a new challenge.
        let token_end = rest.find([' ', '=', ',']).unwrap_or(rest.len());
        let token = &rest[..token_end];
        let after = rest[token_end..].trim_start();
        if after.starts_with('=') && !out.is_empty() {
            let value_part = after[1..].trim_start();
            let (value, remaining) = if let Some(quoted) = value_part.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            } else {
                let end = value_part.find(',').unwrap_or(value_part.len());
                (value_part[..end].trim().to_string(), &value_part[end..])
            };
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), value);
            }
            rest = remaining.trim_start().trim_start_matches(',').trim_start();
        } else {
            if !token.is_empty() {
                out.push(Challenge {
                    scheme: token.to_ascii_lowercase(),
                    params: HashMap::new(),
                });
            }
            rest = after.trim_start_matches(',').trim_start();
            if token.is_empty() && after.is_empty() {
                break;
            }
            if token.is_empty() {
                // A stray separator: skip one character to make progress.
                rest = rest.get(1..).unwrap_or("");
            }
        }
    }
    out
}

/// How a host wants to be authorized.
#[derive(Debug, Clone)]
enum HostAuth {
    Basic,
    Bearer {
        realm: String,
        service: String,
        tokens: HashMap<String, String>,
    },
}

/// Fetches a bearer token: (realm, service, scopes, credentials) to the token.
pub type TokenFetcher<'a> =
    &'a dyn Fn(&str, &str, &[String], Option<&Credentials>) -> super::Result<String>;

/// The authorization state of one registry client: credentials, and per host the scheme its
/// challenge asked for and the tokens fetched.
#[derive(Debug, Default)]
pub struct Authorizer {
    credentials: Option<Credentials>,
    hosts: Mutex<HashMap<String, HostAuth>>,
}

impl Authorizer {
    /// An authorizer with `credentials` (anonymous when `None`).
    pub fn new(credentials: Option<Credentials>) -> Authorizer {
        Authorizer {
            credentials,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether credentials were given.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The `Authorization` value for a request to `host` needing `scopes`, when the host has
    /// challenged before (a token is fetched with `fetch` when none is cached).
    pub fn authorization(
        &self,
        host: &str,
        scopes: &[String],
        fetch: TokenFetcher<'_>,
    ) -> super::Result<Option<String>> {
        let auth = {
            let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            hosts.get(host).cloned()
        };
        match auth {
            None => Ok(None),
            Some(HostAuth::Basic) => Ok(self.credentials.as_ref().map(Credentials::basic_header)),
            Some(HostAuth::Bearer {
                realm,
                service,
                tokens,
            }) => {
                let key = scopes.join(" ");
                if let Some(t) = tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = fetch(&realm, &service, scopes, self.credentials.as_ref())?;
                let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(HostAuth::Bearer { tokens, .. }) = hosts.get_mut(host) {
                    tokens.insert(key, token.clone());
                }
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Takes a 401's challenges for `host`; whether a retry can succeed. `sent_with_auth`
    /// tells whether the refused request carried credentials: one that did not is always
    /// worth a retry once `host` has a scheme (another thread may have taken the same
    /// challenge meanwhile), one that did only when the challenge is new.
    pub fn add_challenges(&self, host: &str, header: &str, sent_with_auth: bool) -> bool {
        let challenges = parse_challenges(header);
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let previous = hosts.get(host).cloned();
        for c in &challenges {
            match c.scheme.as_str() {
                "bearer" => {
                    let realm = c.params.get("realm").cloned().unwrap_or_default();
                    if realm.is_empty() {
                        continue;
                    }
                    let known =
                        matches!(&previous, Some(HostAuth::Bearer { realm: r, .. }) if *r == realm);
                    if known && !sent_with_auth {
                        // Taken already: its tokens stay, and the request goes again with one.
                        return true;
                    }
                    let service = c.params.get("service").cloned().unwrap_or_default();
                    // A second 401 for a token we already hold means the token does not
                    // grant what is asked: drop it and try once more.
                    hosts.insert(
                        host.to_string(),
                        HostAuth::Bearer {
                            realm,
                            service,
                            tokens: HashMap::new(),
                        },
                    );
                    return !known || self.credentials.is_some();
                }
                "basic" => {
                    if self.credentials.is_none() {
                        return false;
                    }
                    let fresh = !matches!(previous, Some(HostAuth::Basic));
                    hosts.insert(host.to_string(), HostAuth::Basic);
                    return fresh || !sent_with_auth;
                }
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn challenges_parse() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/alpine:pull");
        let c = parse_challenges(r#"Basic realm="Registry Realm", Bearer realm="x""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].params["realm"], "Registry Realm");
        assert_eq!(c[1].scheme, "bearer");
    }

    #[test]
    fn basic_needs_credentials_and_retries_once() {
        let anon = Authorizer::new(None);
        assert!(!anon.add_challenges("h", r#"Basic realm="r""#, false));
        let a = Authorizer::new(Some(Credentials::parse("user:pa:ss")));
        let none: TokenFetcher<'_> = &|_, _, _, _| unreachable!();
        assert_eq!(a.authorization("h", &[], none).unwrap(), None);
        assert!(a.add_challenges("h", r#"Basic realm="r""#, false));
        assert_eq!(
            a.authorization("h", &[], none).unwrap().unwrap(),
            format!("Basic {}", base64(b"user:pa:ss"))
        );
        // Refused with the credentials: they are wrong, no retry. Refused without them
        // (sent before another thread took the challenge): retried with them.
        assert!(!a.add_challenges("h", r#"Basic realm="r""#, true));
        assert!(a.add_challenges("h", r#"Basic realm="r""#, false));
        assert!(!format!("{:?}", Credentials::parse("u:secret")).contains("secret\""));
    }

    #[test]
    fn bearer_tokens_are_fetched_per_scope() {
        let a = Authorizer::new(None);
        assert!(a.add_challenges("h", r#"Bearer realm="https://t/token",service="s""#, false));
        let calls = std::cell::Cell::new(0);
        let fetch = |realm: &str, service: &str, scopes: &[String], c: Option<&Credentials>| {
            calls.set(calls.get() + 1);
            assert_eq!(
                (realm, service, c.is_none()),
                ("https://t/token", "s", true)
            );
            Ok(format!("tok-{}", scopes.join("+")))
        };
        let scopes = vec!["repository:a:pull".to_string()];
        let h = a.authorization("h", &scopes, &fetch).unwrap().unwrap();
        assert_eq!(h, "Bearer tok-repository:a:pull");
        a.authorization("h", &scopes, &fetch).unwrap();
        assert_eq!(calls.get(), 1);
        // A request another thread sent before the challenge was known is retried, and the
        // tokens already fetched stay.
        assert!(a.add_challenges("h", r#"Bearer realm="https://t/token",service="s""#, false));
        a.authorization("h", &scopes, &fetch).unwrap();
        assert_eq!(calls.get(), 1);
        // Refused with a token of the same realm: dropped and fetched again, once.
        assert!(!a.add_challenges("h", r#"Bearer realm="https://t/token",service="s""#, true));
        a.authorization("h", &scopes, &fetch).unwrap();
        assert_eq!(calls.get(), 2);
    }
}
