//! Whether a file system fills in `d_type` in directory entries (containerd's
//! `fs.SupportsDType`): overlayfs needs it, and xfs formatted with `ftype=0` lacks it.

use std::fs;
use std::io;
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Reads the entries of `path` (creating a dummy file first when it is empty, so there is one
/// to look at) and answers false when any comes back as `DT_UNKNOWN`.
pub fn supports_dtype(path: &Path) -> io::Result<bool> {
    let empty = fs::read_dir(path)?.next().is_none();
    let dummy = if empty {
        Some(Dummy::create(path)?)
    } else {
        None
    };
    let mut dir = Dir::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())?;
    let mut visited = 0usize;
    for entry in dir.iter() {
        let entry = entry?;
        visited += 1;
        if entry.file_type().is_none() {
            return Ok(false);
        }
    }
    drop(dummy);
    if visited == 0 {
        return Err(io::Error::other(format!(
            "did not hit any dirent during iteration {}",
            path.display()
        )));
    }
    Ok(true)
}

/// A file made only so a directory has an entry; removed on drop.
struct Dummy(std::path::PathBuf);

impl Dummy {
    fn create(dir: &Path) -> io::Result<Dummy> {
        let path = dir.join(format!("fsutils-dummy{}", std::process::id()));
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Dummy(path))
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0) {
            log::warn!("removing {}: {e}", self.0.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_file_systems_have_dtype_and_no_dummy_is_left() {
        let dir = tempfile::tempdir().unwrap();
        assert!(supports_dtype(dir.path()).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(supports_dtype(dir.path()).unwrap());
        assert!(supports_dtype(&dir.path().join("missing")).is_err());
    }
}
