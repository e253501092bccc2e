//! Applying image layers (containerd's diff applier, `diff/apply` over `archive.Apply`): a
//! layer blob, a tar stream possibly compressed, written into a directory exactly as
//! containerd 1.6 writes it, with hostile archives refused and nothing ever written outside
//! the target.
//!
//! - [`media_type`]: the layer types containerd applies and the compression each declares;
//!   [`compression`]: finding the compression by its magic bytes and undoing it;
//!   [`stream`]: the diff ID digest, the byte cap, read errors told apart.
//! - [`tar_reader`]: tar headers read as Go's `archive/tar` reads them, with limits;
//!   [`root_path`]: names cleaned and resolved inside the target like a chroot;
//!   [`archive`]: the entries written; [`whiteout`]: whiteouts for a full view or an overlay
//!   upper directory; [`sys`]: the system calls; [`error`]: errors with containerd's codes.
//!
//! ```no_run
//! use corral_daemon::diff::{apply, ApplyOptions};
//!
//! let blob = std::fs::File::open("layer.tar.gz")?;
//! let options = ApplyOptions {
//!     media_type: Some("application/vnd.oci.image.layer.v1.tar+gzip".into()),
//!     ..ApplyOptions::default()
//! };
//! let applied = apply(blob, std::path::Path::new("/tmp/rootfs"), &options)?;
//! println!("{} ({} bytes)", applied.diff_id, applied.size);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

pub mod archive;
pub mod compression;
pub mod error;
pub mod media_type;
pub mod root_path;
pub mod stream;
pub mod sys;
pub mod tar_reader;
pub mod whiteout;

#[cfg(test)]
mod tests;

pub use compression::Compression;
pub use error::{DiffError, DiffResult};

use archive::Applier;
use compression::decompress_stream;
use media_type::{diff_compression, Declared};
use stream::{read_error, Digester, Source};
use tar_reader::{Limits, TarReader};

/// Default cap on a layer's uncompressed bytes: 8 GiB.
pub const DEFAULT_MAX_UNCOMPRESSED_BYTES: u64 = 8 << 30;
/// Default cap on a layer's entries: 2 Mi, far beyond real images (a few hundred thousand
/// files at most) while bounding the memory the applier keeps per entry.
pub const DEFAULT_MAX_ENTRIES: u64 = 1 << 21;

/// Size of the buffers around the blob and the uncompressed stream.
const BUFFER: usize = 64 * 1024;

/// How whiteouts are applied, which depends on what the target is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The target is the full file system view (a mounted snapshot, or a directory holding
    /// the lower layers' contents): `.wh.<name>` removes `<name>`, and `.wh..wh..opq`
    /// removes everything in its directory that this layer did not write itself.
    #[default]
    Native,
    /// The target is an overlayfs upper directory (containerd's `OverlayConvertWhiteout`):
    /// `.wh.<name>` becomes a 0/0 character device `<name>`, `.wh..wh..opq` the opaque xattr
    /// on its directory. A parent directory that only the lowers have is created with their
    /// attributes.
    Overlay {
        /// The lower directories, nearest first (the order of overlayfs' `lowerdir=`).
        lowers: Vec<PathBuf>,
        /// Mark opaque directories with `user.overlay.opaque` (for mounts with `userxattr`)
        /// instead of `trusted.overlay.opaque`.
        user_xattr: bool,
    },
}

/// How to apply a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// The layer descriptor's media type. `Some`: refused unless it is a layer type
    /// containerd applies, and an uncompressed type is read without looking for compression;
    /// `None`: the compression is detected from the stream.
    pub media_type: Option<String>,
    /// How whiteouts are written.
    pub whiteouts: WhiteoutMode,
    /// The most uncompressed bytes read before the layer is refused as a decompression bomb.
    pub max_uncompressed_bytes: u64,
    /// The most entries the layer may have.
    pub max_entries: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            media_type: None,
            whiteouts: WhiteoutMode::Native,
            max_uncompressed_bytes: DEFAULT_MAX_UNCOMPRESSED_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// What an applied layer was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `sha256:<hex>` of the uncompressed stream, every byte of it (the layer's diff ID).
    pub diff_id: String,
    /// Bytes in the uncompressed stream.
    pub size: u64,
    /// The compression the stream had.
    pub compression: Compression,
}

/// Applies the layer read from `blob` to the directory `target` (see [`WhiteoutMode`]) and
/// returns its diff ID and uncompressed size.
///
/// On error, what was written inside `target` before it may stay (the caller discards the
/// snapshot); nothing is written outside `target`.
pub fn apply<R: Read>(blob: R, target: &Path, options: &ApplyOptions) -> DiffResult<Applied> {
    let declared = match &options.media_type {
        Some(media_type) => diff_compression(media_type)?,
        None => Declared::Unknown,
    };
    match std::fs::metadata(target) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(DiffError::InvalidOptions(format!(
                "apply target {} is not a directory",
                target.display()
            )))
        }
        Err(e) => return Err(DiffError::io("stat apply target", target, e)),
    }

    let source = BufReader::with_capacity(BUFFER, Source(blob));
    let (compression, stream): (Compression, Box<dyn Read + '_>) = if declared.sniffs() {
        let d = decompress_stream(source)?;
        (d.compression, d.reader)
    } else {
        (Compression::Uncompressed, Box::new(source))
    };
    let mut digester = Digester::new(
        BufReader::with_capacity(BUFFER, stream),
        options.max_uncompressed_bytes,
    );

    let limits = Limits {
        max_entries: options.max_entries,
        max_size: options.max_uncompressed_bytes,
    };
    let mut tar = TarReader::new(&mut digester, limits);
    let mut applier = Applier::new(target, &options.whiteouts);
    while let Some(entry) = tar.next_entry()? {
        applier.apply_entry(&entry, &mut tar.data())?;
    }
    applier.finish()?;
    // Like containerd, the digest covers whatever follows the archive's end too.
    digester.drain().map_err(read_error)?;

    let size = digester.size();
    let diff_id = digester.digest().map_err(read_error)?;
    log::debug!(
        "diff applied: {diff_id}, {size} bytes{}, into {}",
        match compression {
            Compression::Uncompressed => String::new(),
            other => format!(" ({})", other.extension()),
        },
        target.display()
    );
    Ok(Applied {
        diff_id,
        size,
        compression,
    })
}
