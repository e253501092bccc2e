//! Digests: go-digest's syntax (checked by [`validate_digest`]), the split into algorithm and
//! hex that names a blob's file, and the running sha256 of a write.

use std::io;

use sha2::{Digest as _, Sha256};

use super::error::{ContentError, ContentResult};
use crate::metadata::content::validate_digest;

/// The algorithm every write is digested with (go-digest's `Canonical`), and so the only
/// directory under `blobs/` a commit creates.
pub const CANONICAL: &str = "sha256";

/// `digest` split into its algorithm and hex, once it passes go-digest's validation. Valid
/// digests hold only `[0-9a-f]` after the colon and a known algorithm before it, so the two
/// parts are safe as path components. An invalid one is `InvalidArgument` with containerd's
/// message (`cannot calculate blob path from invalid digest: ...`).
pub fn split(digest: &str) -> ContentResult<(&str, &str)> {
    let invalid = |reason: &str| {
        ContentError::InvalidArgument(format!(
            "cannot calculate blob path from invalid digest: {reason}"
        ))
    };
    validate_digest(digest).map_err(invalid)?;
    digest
        .split_once(':')
        .ok_or_else(|| invalid("invalid checksum digest format"))
}

/// The running sha256 of a write (go-digest's `Digester` for the canonical algorithm).
#[derive(Clone, Default)]
pub struct Digester(Sha256);

impl Digester {
    /// A digester that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Forgets everything seen so far.
    pub fn reset(&mut self) {
        self.0 = Sha256::new();
    }

    /// The digest of everything seen so far, `sha256:<hex>`; the digester goes on.
    pub fn digest(&self) -> String {
        let sum = self.0.clone().finalize();
        let mut out = String::with_capacity(CANONICAL.len() + 1 + 2 * sum.len());
        out.push_str(CANONICAL);
        out.push(':');
        for b in sum {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digester({})", self.digest())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The canonical digest of `data` (go-digest's `FromBytes`).
pub fn from_bytes(data: &[u8]) -> String {
    let mut d = Digester::new();
    d.update(data);
    d.digest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_protocols::rpc::Code;

    #[test]
    fn digests_like_sha256sum() {
        assert_eq!(
            from_bytes(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut d = Digester::new();
        d.update(b"hello ");
        let partial = d.digest();
        d.update(b"world\n");
        assert_eq!(
            d.digest(),
            "sha256:a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
        );
        assert_eq!(partial, from_bytes(b"hello "));
        d.reset();
        assert_eq!(d.digest(), from_bytes(b""));
    }

    #[test]
    fn splits_only_valid_digests() {
        let good = from_bytes(b"x");
        assert_eq!(split(&good).unwrap(), ("sha256", &good[7..]));
        let long = format!("sha512:{}", "0".repeat(128));
        assert_eq!(split(&long).unwrap().0, "sha512");
        for bad in [
            "sha256:../../x",
            "../../etc/passwd",
            "sha256:",
            "",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256/../x:aa",
        ] {
            let e = split(bad).unwrap_err();
            assert_eq!(e.code(), Code::INVALID_ARGUMENT, "{bad:?}");
            assert!(
                e.to_string()
                    .starts_with("cannot calculate blob path from invalid digest: "),
                "{e}"
            );
        }
        let hostile = format!("sha256:{}/..", "a".repeat(62));
        assert!(split(&hostile).is_err());
    }
}
