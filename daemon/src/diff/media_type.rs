//! Layer media types containerd applies, and the compression each declares (containerd's
//! `images.DiffCompression`, which decides whether the diff applier decompresses a stream).

use super::error::{DiffError, DiffResult};

/// Docker schema 2 layer, uncompressed (or compressed without saying so).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker schema 2 foreign layer, uncompressed (or compressed without saying so).
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// Docker schema 2 layer, gzip.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker schema 2 foreign layer, gzip.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// OCI layer; `+gzip` and `+zstd` name its compression.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI non-distributable layer; `+gzip` and `+zstd` name its compression.
pub const OCI_LAYER_NON_DISTRIBUTABLE: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";

/// What a layer media type says about the compression of its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// A plain tar: the stream is applied as it is, without looking for compression.
    Uncompressed,
    /// A Docker type that may have been compressed without saying so: sniff.
    Unknown,
    /// Gzip (sniffed all the same, as containerd does).
    Gzip,
    /// Zstandard (sniffed all the same, as containerd does).
    Zstd,
}

impl Declared {
    /// True when the stream goes through compression detection (containerd's
    /// `compression.DecompressStream`), false when it is read as a plain tar.
    pub fn sniffs(self) -> bool {
        self != Declared::Uncompressed
    }
}

/// The compression `media_type` declares, as containerd's `images.DiffCompression` decides
/// it; a type that is not a layer is refused with containerd's `GetProcessor` error.
///
/// Suffixes (`+gzip`, `+zstd`, ...) are sorted, as containerd sorts them, so the last one in
/// alphabetical order names the compression of an OCI type; a Docker type with any suffix is
/// "wrapped" and read as it is. Encrypted layers (`+encrypted`) need a decryption stream
/// processor, which Corral does not have: they are refused as not implemented.
pub fn diff_compression(media_type: &str) -> DiffResult<Declared> {
    let mut parts = media_type.split('+');
    let base = parts.next().unwrap_or_default();
    let mut extensions: Vec<&str> = parts.collect();
    extensions.sort_unstable();
    if extensions.contains(&"encrypted") {
        return Err(DiffError::UnsupportedMediaType(media_type.to_string()));
    }
    match base {
        DOCKER_LAYER | DOCKER_LAYER_FOREIGN if extensions.is_empty() => Ok(Declared::Unknown),
        DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP if extensions.is_empty() => {
            Ok(Declared::Gzip)
        }
        DOCKER_LAYER | DOCKER_LAYER_FOREIGN | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP => {
            Ok(Declared::Uncompressed)
        }
        OCI_LAYER | OCI_LAYER_NON_DISTRIBUTABLE => Ok(match extensions.last() {
            Some(&"gzip") => Declared::Gzip,
            Some(&"zstd") => Declared::Zstd,
            _ => Declared::Uncompressed,
        }),
        _ => Err(DiffError::UnsupportedMediaType(media_type.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_containerd_accepts() {
        let cases = [
            (OCI_LAYER, Declared::Uncompressed),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Declared::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Declared::Zstd,
            ),
            (OCI_LAYER_NON_DISTRIBUTABLE, Declared::Uncompressed),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Declared::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Declared::Zstd,
            ),
            (DOCKER_LAYER, Declared::Unknown),
            (DOCKER_LAYER_FOREIGN, Declared::Unknown),
            (DOCKER_LAYER_GZIP, Declared::Gzip),
            (DOCKER_LAYER_FOREIGN_GZIP, Declared::Gzip),
            // A wrapped Docker type is read as it is.
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip+other",
                Declared::Uncompressed,
            ),
            // An unknown OCI suffix is not a compression.
            (
                "application/vnd.oci.image.layer.v1.tar+foo",
                Declared::Uncompressed,
            ),
        ];
        for (media_type, want) in cases {
            assert_eq!(diff_compression(media_type).unwrap(), want, "{media_type}");
        }
        assert!(!Declared::Uncompressed.sniffs());
        assert!(Declared::Unknown.sniffs() && Declared::Gzip.sniffs() && Declared::Zstd.sniffs());
    }

    #[test]
    fn other_types_are_refused_like_containerd() {
        for media_type in [
            "",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/octet-stream",
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        ] {
            let e = diff_compression(media_type).unwrap_err();
            assert!(
                matches!(e, DiffError::UnsupportedMediaType(_)),
                "{media_type}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "failed to get stream processor for {media_type}: no processor for media-type"
                )
            );
        }
    }
}
