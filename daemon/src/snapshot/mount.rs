//! A mount a snapshotter hands out (containerd's `mount.Mount`); the snapshots service turns
//! it into `containerd.types.Mount` on the wire.

/// One mount: what to mount, from where, with containerd's option strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    /// File system type: `bind` or `overlay` here.
    pub kind: String,
    /// A directory for `bind`; `overlay` for overlayfs.
    pub source: String,
    /// fstab-style options: flags (`ro`, `rbind`) and file system data (`lowerdir=...`).
    pub options: Vec<String>,
}

impl Mount {
    /// A mount of `kind` from `source` with `options`.
    pub fn new(
        kind: impl Into<String>,
        source: impl Into<String>,
        options: impl IntoIterator<Item = impl Into<String>>,
    ) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.into_iter().map(Into::into).collect(),
        }
    }
}
