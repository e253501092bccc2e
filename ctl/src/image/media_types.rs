//! The media types containerd knows (`images/mediatypes.go` and the OCI image spec), what
//! kind of object each names, and the garbage-collection label a parent puts on its child
//! (`images.ChildGCLabels`).

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
/// Docker foreign gzip layer.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// containerd checkpoint (a known config type).
pub const CONTAINERD_CHECKPOINT: &str =
    "application/vnd.containerd.container.criu.checkpoint.criu.tar";
/// containerd checkpoint config (a known config type).
pub const CONTAINERD_CHECKPOINT_CONFIG: &str =
    "application/vnd.containerd.container.checkpoint.config.v1+proto";

/// Annotation holding an image's full name (`images.AnnotationImageName`).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation holding a manifest's reference name, a tag (`ocispec.AnnotationRefName`).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether `mt` is a manifest containerd reads (`images.IsManifestType`).
pub fn is_manifest(mt: &str) -> bool {
    mt == DOCKER_MANIFEST || mt == OCI_MANIFEST
}

/// Whether `mt` is an index or manifest list (`images.IsIndexType`).
pub fn is_index(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
}

/// Whether `mt` is a config containerd knows, checkpoints included (`images.IsKnownConfig`).
pub fn is_known_config(mt: &str) -> bool {
    matches!(
        mt,
        DOCKER_CONFIG | OCI_CONFIG | CONTAINERD_CHECKPOINT | CONTAINERD_CHECKPOINT_CONFIG
    )
}

/// Whether `mt` is an image config (`images.IsConfigType`).
pub fn is_config(mt: &str) -> bool {
    mt == DOCKER_CONFIG || mt == OCI_CONFIG
}

/// Whether `mt` is a layer (`images.IsLayerType`): any OCI layer type, or a Docker layer
/// type with any `+` suffix.
pub fn is_layer(mt: &str) -> bool {
    if mt.starts_with("application/vnd.oci.image.layer.") {
        return true;
    }
    let base = mt.split('+').next().unwrap_or(mt);
    matches!(
        base,
        DOCKER_LAYER | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN | DOCKER_LAYER_FOREIGN_GZIP
    )
}

/// Whether `mt` is a layer that must not be redistributed (`images.IsNonDistributable`).
pub fn is_non_distributable(mt: &str) -> bool {
    mt.starts_with("application/vnd.oci.image.layer.nondistributable.")
        || mt.starts_with("application/vnd.docker.image.rootfs.foreign.")
}

/// The label key prefix a parent uses to reference a child of media type `mt`
/// (`images.ChildGCLabels`). A key ending in `.` gets the child's index appended; the others
/// get one only from the second child on.
pub fn child_gc_label(mt: &str) -> &'static str {
    if is_known_config(mt) {
        "containerd.io/gc.ref.content.config"
    } else if is_manifest(mt) {
        "containerd.io/gc.ref.content.m."
    } else if is_layer(mt) {
        "containerd.io/gc.ref.content.l."
    } else {
        "containerd.io/gc.ref.content."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_containerd() {
        assert!(is_layer("application/vnd.oci.image.layer.v1.tar+gzip"));
        assert!(is_layer("application/vnd.oci.image.layer.v1.tar+zstd"));
        assert!(is_layer(DOCKER_LAYER_GZIP));
        assert!(is_layer(
            "application/vnd.docker.image.rootfs.diff.tar.gzip+encrypted"
        ));
        assert!(!is_layer(OCI_CONFIG));
        assert!(is_manifest(DOCKER_MANIFEST) && is_manifest(OCI_MANIFEST));
        assert!(is_index(OCI_INDEX) && is_index(DOCKER_MANIFEST_LIST));
        assert!(is_known_config(CONTAINERD_CHECKPOINT) && !is_config(CONTAINERD_CHECKPOINT));
        assert!(is_non_distributable(DOCKER_LAYER_FOREIGN_GZIP));
        assert!(!is_non_distributable(DOCKER_LAYER_GZIP));
    }

    #[test]
    fn gc_labels_by_kind() {
        assert_eq!(
            child_gc_label(OCI_CONFIG),
            "containerd.io/gc.ref.content.config"
        );
        assert_eq!(
            child_gc_label(DOCKER_MANIFEST),
            "containerd.io/gc.ref.content.m."
        );
        assert_eq!(
            child_gc_label("application/vnd.oci.image.layer.v1.tar+gzip"),
            "containerd.io/gc.ref.content.l."
        );
        assert_eq!(child_gc_label(OCI_INDEX), "containerd.io/gc.ref.content.");
        assert_eq!(child_gc_label(""), "containerd.io/gc.ref.content.");
    }
}
