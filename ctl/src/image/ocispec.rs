//! The OCI image-spec documents containerd 1.6 reads and writes (image-spec v1.1.0-rc2 as it
//! vendors it): descriptors, platforms, manifests, indexes, image configs and the layout
//! file. Reading goes through serde; writing goes through [`gojson`](super::gojson), so a
//! document Corral writes has the bytes, and the digest, containerd's would.

use std::collections::BTreeMap;

use corral_protocols::types::descriptor::Descriptor as DescriptorPb;
use serde::Deserialize;

use super::error::{ImageError, Result};
use super::gojson::Object;

/// The version `oci-layout` names (`ocispec.ImageLayoutVersion`).
pub const IMAGE_LAYOUT_VERSION: &str = "1.0.0";
/// The layout file's name (`ocispec.ImageLayoutFile`).
pub const IMAGE_LAYOUT_FILE: &str = "oci-layout";

/// The platform an image or manifest runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, ...).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`, ...).
    #[serde(default)]
    pub os: String,
    /// Operating system version (Windows).
    #[serde(default, rename = "os.version")]
    pub os_version: String,
    /// Required operating system features (Windows).
    #[serde(default, rename = "os.features")]
    pub os_features: Vec<String>,
    /// CPU variant (`v7` for arm/v7).
    #[serde(default)]
    pub variant: String,
}

impl Platform {
    /// Go's JSON of `ocispec.Platform`.
    pub fn to_go_json(&self) -> String {
        let mut out = String::new();
        Object::start(&mut out)
            .str("architecture", &self.architecture)
            .str("os", &self.os)
            .str_omitempty("os.version", &self.os_version)
            .strings_omitempty("os.features", &self.os_features)
            .str_omitempty("variant", &self.variant)
            .end();
        out
    }
}

/// A reference to content: what it is, its digest and size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the referenced content (validated where it is used).
    #[serde(default)]
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: i64,
    /// Where the content may be downloaded from.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Arbitrary metadata.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Embedded content, base64 as it appears in the JSON.
    #[serde(default)]
    pub data: Option<String>,
    /// The platform of a manifest in an index.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// The artifact type.
    #[serde(default)]
    pub artifact_type: String,
}

impl Descriptor {
    /// A descriptor of `media_type` with `digest` and `size` and nothing else.
    pub fn new(media_type: &str, digest: &str, size: i64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            ..Descriptor::default()
        }
    }

    /// Go's JSON of `ocispec.Descriptor`.
    pub fn to_go_json(&self) -> String {
        let mut out = String::new();
        let mut obj = Object::start(&mut out);
        obj.str_omitempty("mediaType", &self.media_type)
            .str("digest", &self.digest)
            .int("size", self.size)
            .strings_omitempty("urls", &self.urls)
            .map_omitempty("annotations", &self.annotations);
        if let Some(data) = self.data.as_deref().filter(|d| !d.is_empty()) {
            obj.str("data", data);
        }
        if let Some(p) = &self.platform {
            obj.raw("platform", &p.to_go_json());
        }
        obj.str_omitempty("artifactType", &self.artifact_type).end();
        out
    }

    /// The descriptor as the API carries it (no platform, URLs or data: containerd's
    /// `Descriptor` message has none).
    pub fn to_pb(&self) -> DescriptorPb {
        DescriptorPb {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    /// A descriptor from the API.
    pub fn from_pb(pb: &DescriptorPb) -> Descriptor {
        Descriptor {
            media_type: pb.media_type.clone(),
            digest: pb.digest.clone(),
            size: pb.size,
            annotations: pb
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Descriptor::default()
        }
    }
}

/// Go's JSON of a `[]ocispec.Descriptor` (`null` when there are none, as a nil slice is).
pub fn descriptors_go_json(descs: &[Descriptor], nil_when_empty: bool) -> String {
    if descs.is_empty() && nil_when_empty {
        return "null".to_string();
    }
    let parts: Vec<String> = descs.iter().map(Descriptor::to_go_json).collect();
    format!("[{}]", parts.join(","))
}

/// An image manifest (OCI or Docker schema 2: containerd reads both as this struct).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Schema version, 2.
    #[serde(default)]
    pub schema_version: i64,
    /// The manifest's own media type, when it says.
    #[serde(default)]
    pub media_type: String,
    /// The image config.
    #[serde(default)]
    pub config: Descriptor,
    /// The layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Schema version, 2.
    #[serde(default)]
    pub schema_version: i64,
    /// The index's own media type, when it says.
    #[serde(default)]
    pub media_type: String,
    /// The manifests, in order.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations of the index.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// Go's JSON of an `ocispec.Index` holding `manifests` (`"manifests":null` when there are
    /// none, as Go writes a nil slice).
    pub fn go_json(manifests: &[Descriptor]) -> String {
        let mut out = String::new();
        Object::start(&mut out)
            .int("schemaVersion", 2)
            .raw("manifests", &descriptors_go_json(manifests, true))
            .end();
        out
    }
}

/// The parts of an image config containerd reads: the platform and the layers' diff IDs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// The root file system.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// An image config's `rootfs`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The digests of the uncompressed layers, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// The `oci-layout` file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageLayout {
    /// The layout version, `1.0.0`.
    #[serde(default, rename = "imageLayoutVersion")]
    pub version: String,
}

impl ImageLayout {
    /// Go's JSON of the layout file for [`IMAGE_LAYOUT_VERSION`].
    pub fn go_json() -> String {
        let mut out = String::new();
        Object::start(&mut out)
            .str("imageLayoutVersion", IMAGE_LAYOUT_VERSION)
            .end();
        out
    }
}

/// Reads a JSON document of type `T` from `data`, naming `what` in the error.
pub fn from_json<T: serde::de::DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(data)
        .map_err(|e| ImageError::InvalidArgument(format!("{what}: invalid JSON: {e}")))
}

/// containerd's `validateMediaType`: `data` must be a JSON object (or `null`), must not be a
/// schema 1 manifest, and must not be an index when `mt` says manifest (or the other way
/// round). A field counts as present when it is there at all, even as `null` (Go's
/// `json.RawMessage`).
pub fn validate_media_type(data: &[u8], mt: &str) -> Result<()> {
    use super::media_types as m;
    let doc: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| ImageError::InvalidArgument(format!("invalid JSON: {e}")))?;
    let empty = serde_json::Map::new();
    let fields = match &doc {
        serde_json::Value::Object(o) => o,
        serde_json::Value::Null => &empty,
        _ => {
            return Err(ImageError::InvalidArgument(
                "invalid JSON: not an object".into(),
            ))
        }
    };
    let has = |k: &str| fields.contains_key(k);
    let media_type = fields
        .get("mediaType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if has("fsLayers") {
        return Err(ImageError::InvalidArgument(
            "media-type: schema 1 not supported".into(),
        ));
    }
    if m::is_manifest(mt) && (has("manifests") || m::is_index(media_type)) {
        return Err(ImageError::InvalidArgument(format!(
            "media-type: expected manifest but found index ({mt})"
        )));
    }
    if m::is_index(mt) && (has("config") || has("layers") || m::is_manifest(media_type)) {
        return Err(ImageError::InvalidArgument(format!(
            "media-type: expected index but found manifest ({mt})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_round_trip_in_gos_field_order() {
        let json = r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:6abfdf51754e174ff484e1bc94c12bae92afe269e6aa36d9f93b05ec496f13f6","size":405,"annotations":{"org.opencontainers.image.ref.name":"latest","io.containerd.image.name":"docker.io/corral/busybox:latest"},"platform":{"os":"linux","architecture":"amd64"}}"#;
        let d: Descriptor = from_json(json.as_bytes(), "index").unwrap();
        assert_eq!(d.size, 405);
        assert_eq!(d.platform.as_ref().unwrap().architecture, "amd64");
        assert_eq!(
            d.to_go_json(),
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:6abfdf51754e174ff484e1bc94c12bae92afe269e6aa36d9f93b05ec496f13f6","size":405,"annotations":{"io.containerd.image.name":"docker.io/corral/busybox:latest","org.opencontainers.image.ref.name":"latest"},"platform":{"architecture":"amd64","os":"linux"}}"#
        );
        let pb = d.to_pb();
        let back = Descriptor::from_pb(&pb);
        assert_eq!(back.annotations, d.annotations);
        assert!(back.platform.is_none());
    }

    #[test]
    fn indexes_and_layouts_as_go_writes_them() {
        assert_eq!(
            Index::go_json(&[]),
            r#"{"schemaVersion":2,"manifests":null}"#
        );
        let d = Descriptor::new("m", "sha256:x", 1);
        assert_eq!(
            Index::go_json(&[d]),
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"m","digest":"sha256:x","size":1}]}"#
        );
        assert_eq!(ImageLayout::go_json(), r#"{"imageLayoutVersion":"1.0.0"}"#);
    }

    #[test]
    fn media_types_are_checked_against_the_document() {
        use super::super::media_types::{OCI_INDEX, OCI_MANIFEST};
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(validate_media_type(manifest, OCI_MANIFEST).is_ok());
        assert!(validate_media_type(index, OCI_INDEX).is_ok());
        assert!(validate_media_type(manifest, OCI_INDEX).is_err());
        assert!(validate_media_type(index, OCI_MANIFEST).is_err());
        assert!(validate_media_type(br#"{"fsLayers":[]}"#, OCI_MANIFEST).is_err());
        assert!(validate_media_type(b"not json", OCI_MANIFEST).is_err());
    }
}
