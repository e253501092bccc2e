//! Finding Corral's own binaries from a test: they sit beside the test executable's `deps/`
//! directory (`target/<profile>/`). `make test` builds them first (`cargo build --bins`).

use std::io;
use std::path::PathBuf;

/// The path of Corral binary `name` (`corrald`, `corralctl`, `containerd-shim-corral-v2`).
pub fn corral_binary(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other("the test executable has no directory"))?;
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is not built: run `cargo build --bins` (make test does) before the tests",
                path.display()
            ),
        ))
    }
}

/// A directory holding only a link to the shim, to put on a daemon's `PATH`.
pub fn shim_path_dir(parent: &std::path::Path) -> io::Result<PathBuf> {
    let shim = corral_binary("containerd-shim-corral-v2")?;
    let dir = parent.join("shim-bin");
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("containerd-shim-corral-v2");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(shim, &link)?;
    Ok(dir)
}
