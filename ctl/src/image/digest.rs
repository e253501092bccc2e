//! Content digests as go-digest reads them (`sha256:<hex>`; sha384 and sha512 are valid
//! syntax too), computed in sha256 (go-digest's canonical algorithm, the only one corrald's
//! content store writes), and the OCI chain ID that names an unpacked layer stack.

use std::fmt;

use sha2::{Digest as _, Sha256};

use super::error::{ImageError, Result};

/// A validated digest, `<algorithm>:<lower-case hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

/// The algorithms go-digest registers by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `sha256`, the canonical one.
    Sha256,
    /// `sha384`.
    Sha384,
    /// `sha512`.
    Sha512,
}

impl Algorithm {
    /// The algorithm called `name`.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// The algorithm's name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }
}

impl Digest {
    /// Reads and validates `s` as go-digest's `Parse` does.
    pub fn parse(s: &str) -> Result<Digest> {
        let invalid = |why: &str| ImageError::InvalidArgument(format!("{s:?}: {why}"));
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(invalid("invalid checksum digest format"));
        };
        if alg.is_empty() || hex.is_empty() {
            return Err(invalid("invalid checksum digest format"));
        }
        let Some(algorithm) = Algorithm::from_name(alg) else {
            return Err(invalid("unsupported digest algorithm"));
        };
        if hex.len() != algorithm.hex_len() {
            return Err(invalid("invalid checksum digest length"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid("invalid checksum digest format"));
        }
        Ok(Digest(s.to_string()))
    }

    /// The sha256 digest of `data` (`digest.FromBytes`).
    pub fn from_bytes(data: &[u8]) -> Digest {
        let mut d = Digester::new();
        d.update(data);
        d.finish()
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        let name = self.0.split_once(':').map_or("", |(a, _)| a);
        Algorithm::from_name(name).unwrap_or(Algorithm::Sha256)
    }

    /// The hex part.
    pub fn encoded(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }

    /// The whole digest as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computes the sha256 digest of data fed in pieces.
#[derive(Default)]
pub struct Digester(Sha256);

impl Digester {
    /// A digester that has seen nothing.
    pub fn new() -> Digester {
        Digester::default()
    }

    /// A digester for `algorithm`; only sha256 is computed.
    pub fn for_algorithm(algorithm: Algorithm) -> Result<Digester> {
        match algorithm {
            Algorithm::Sha256 => Ok(Digester::new()),
            other => Err(ImageError::Unimplemented(format!(
                "{} digests are not supported: corrald stores sha256 blobs",
                other.name()
            ))),
        }
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in self.0.finalize() {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }
}

/// The chain ID of a stack of layers by their diff IDs, bottom first (image-spec's
/// `identity.ChainID`): the first diff ID, then `sha256(previous + " " + next)` for each
/// layer above. `None` for no layers.
pub fn chain_id<D: AsRef<str>>(diff_ids: &[D]) -> Option<String> {
    let mut iter = diff_ids.iter();
    let mut chain = iter.next()?.as_ref().to_string();
    for d in iter {
        chain = Digest::from_bytes(format!("{chain} {}", d.as_ref()).as_bytes()).0;
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_like_go_digest() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.encoded().len(), 64);
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
    }

    #[test]
    fn digests_data() {
        assert_eq!(Digest::from_bytes(b"").as_str(), EMPTY);
        let mut d = Digester::new();
        d.update(b"hello ");
        d.update(b"world");
        assert_eq!(
            d.finish().as_str(),
            "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert!(Digester::for_algorithm(Algorithm::Sha512).is_err());
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        assert_eq!(chain_id::<&str>(&[]), None);
        let a = "sha256:9b9b86516aad0b3f47ccf5f7950f5641442515099a26cb9a9d53d3b0d25870cf";
        assert_eq!(chain_id(&[a]).as_deref(), Some(a));
        let b = EMPTY;
        let two = chain_id(&[a, b]).unwrap();
        assert_eq!(two, Digest::from_bytes(format!("{a} {b}").as_bytes()).0);
        let three = chain_id(&[a, b, a]).unwrap();
        assert_eq!(three, Digest::from_bytes(format!("{two} {a}").as_bytes()).0);
    }
}
