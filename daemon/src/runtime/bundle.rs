//! A task's bundle as containerd 1.6 lays it out (`runtime/v2/bundle.go`): the bundle dir
//! `<state>/io.containerd.runtime.v2.task/<ns>/<id>` (0700) with `config.json`, an empty
//! `rootfs/` (0711) the shim mounts into, and `work`, a symlink to the work dir
//! `<root>/io.containerd.runtime.v2.task/<ns>/<id>` (0711).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{RuntimeError, RuntimeResult, PLUGIN_DIR};

/// A bundle on disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The task (container) id.
    pub id: String,
    /// The namespace.
    pub namespace: String,
    /// The bundle directory.
    pub path: PathBuf,
}

/// `<state>/io.containerd.runtime.v2.task`.
pub fn state_dir(state: &Path) -> PathBuf {
    state.join(PLUGIN_DIR)
}

/// `<root>/io.containerd.runtime.v2.task`.
pub fn work_root(root: &Path) -> PathBuf {
    root.join(PLUGIN_DIR)
}

fn mkdir_all(path: &Path, mode: u32) -> RuntimeResult<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(RuntimeError::io(format!("creating {}", path.display())))
}

impl Bundle {
    /// Creates the bundle of task `id` in `namespace` with the OCI spec `spec` (JSON) as its
    /// `config.json`, as containerd's `NewBundle` does. A bundle already there is
    /// `AlreadyExists`; a stale work dir is replaced.
    pub fn create(
        root: &Path,
        state: &Path,
        namespace: &str,
        id: &str,
        spec: &[u8],
    ) -> RuntimeResult<Bundle> {
        let parent = state_dir(state).join(namespace);
        mkdir_all(&parent, 0o711)?;
        let path = parent.join(id);
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists(format!(
                    "bundle {}",
                    path.display()
                )))
            }
            Err(e) => return Err(RuntimeError::io(format!("creating {}", path.display()))(e)),
        }
        let bundle = Bundle {
            id: id.to_string(),
            namespace: namespace.to_string(),
            path,
        };
        if let Err(e) = bundle.fill(root, spec) {
            if let Err(c) = bundle.delete() {
                log::warn!("removing the unfinished bundle of {id}: {c}");
            }
            return Err(e);
        }
        Ok(bundle)
    }

    fn fill(&self, root: &Path, spec: &[u8]) -> RuntimeResult<()> {
        let work_parent = work_root(root).join(&self.namespace);
        mkdir_all(&work_parent, 0o711)?;
        let work = work_parent.join(&self.id);
        let make_work = || fs::DirBuilder::new().mode(0o711).create(&work);
        match make_work() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_dir_all(&work)
                    .map_err(RuntimeError::io(format!("removing {}", work.display())))?;
                make_work().map_err(RuntimeError::io(format!("creating {}", work.display())))?;
            }
            Err(e) => return Err(RuntimeError::io(format!("creating {}", work.display()))(e)),
        }
        std::os::unix::fs::symlink(&work, self.path.join("work"))
            .map_err(RuntimeError::io("linking the work dir"))?;
        fs::DirBuilder::new()
            .mode(0o711)
            .create(self.rootfs())
            .map_err(RuntimeError::io("creating rootfs"))?;
        let config = self.path.join("config.json");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&config)
            .map_err(RuntimeError::io(format!("creating {}", config.display())))?;
        io::Write::write_all(&mut f, spec)
            .map_err(RuntimeError::io(format!("writing {}", config.display())))
    }

    /// The bundle of `id` in `namespace` as it is on disk (after a restart).
    pub fn load(state: &Path, namespace: &str, id: &str) -> Bundle {
        Bundle {
            id: id.to_string(),
            namespace: namespace.to_string(),
            path: state_dir(state).join(namespace).join(id),
        }
    }

    /// `<bundle>/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// Writes `name` in the bundle, readable by root only.
    pub fn write_file(&self, name: &str, data: &[u8]) -> RuntimeResult<()> {
        let path = self.path.join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(RuntimeError::io(format!("creating {}", path.display())))?;
        io::Write::write_all(&mut f, data)
            .map_err(RuntimeError::io(format!("writing {}", path.display())))
    }

    /// Reads `name` from the bundle; `None` when it is not there.
    pub fn read_file(&self, name: &str) -> RuntimeResult<Option<String>> {
        let path = self.path.join(name);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RuntimeError::io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Removes the bundle as containerd does: unmounts `rootfs`, renames the bundle and the
    /// work dir to `.<id>` and removes them. Removing what is already gone is fine.
    pub fn delete(&self) -> RuntimeResult<()> {
        self.retire()?.remove()
    }

    /// The part of [`delete`](Self::delete) the bundle's path waits for: `rootfs` unmounted,
    /// then the bundle and the work dir renamed to `.<id>`, so nothing is left under their
    /// names. Removing the renamed directories is the [`Retired`]'s job.
    pub fn retire(&self) -> RuntimeResult<Retired> {
        let work = fs::read_link(self.path.join("work")).ok();
        let rootfs = self.rootfs();
        corral_protocols::mount::unmount_all(&rootfs)
            .map_err(RuntimeError::io(format!("unmounting {}", rootfs.display())))?;
        let bundle = hide(&self.path)?;
        let work = match work.map(|w| hide(&w)).transpose() {
            Ok(work) => work.flatten(),
            Err(e) => {
                // The bundle is out of the way already: removed here, the error told.
                if let Err(b) = (Retired { bundle, work: None }).remove() {
                    log::warn!("{b}");
                }
                return Err(e);
            }
        };
        Ok(Retired { bundle, work })
    }
}

/// A bundle and its work dir renamed out of the way (`.<id>`), not yet removed.
#[derive(Debug)]
#[must_use = "a retired bundle stays on disk until removed"]
pub struct Retired {
    bundle: Option<PathBuf>,
    work: Option<PathBuf>,
}

impl Retired {
    /// The renamed bundle directory of a deletion that never finished (corrald stopped
    /// between the rename and the removal).
    pub fn leftover_bundle(path: PathBuf) -> Retired {
        Retired {
            bundle: Some(path),
            work: None,
        }
    }

    /// A renamed work dir left behind the same way.
    pub fn leftover_work(path: PathBuf) -> Retired {
        Retired {
            bundle: None,
            work: Some(path),
        }
    }

    /// Removes the directories. The bundle's `rootfs` must be an empty directory, as
    /// containerd requires: one that still holds files (still mounted, or written into) is
    /// an error, and the bundle is left alone rather than have its contents removed.
    pub fn remove(self) -> RuntimeResult<()> {
        if let Some(bundle) = &self.bundle {
            let rootfs = bundle.join("rootfs");
            match fs::remove_dir(&rootfs) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RuntimeError::io(format!("removing {}", rootfs.display()))(
                        e,
                    ))
                }
            }
            remove_all(bundle)?;
        }
        if let Some(work) = &self.work {
            remove_all(work)?;
        }
        Ok(())
    }
}

/// How many names [`hide`] tries before it gives up.
const HIDDEN_NAMES: u32 = 100;

/// Renames `path` to `.<name>` beside it, so a half-removed directory is never mistaken for
/// a live one; `None` when `path` is not there. While an earlier `.<name>` is still being
/// removed (a task deleted, created and deleted again at once), the next free `.<name>.<n>`
/// is taken instead: the two removals never touch each other's files.
fn hide(path: &Path) -> RuntimeResult<Option<PathBuf>> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let name = name.to_string_lossy();
    for n in 0..HIDDEN_NAMES {
        let hidden = match n {
            0 => parent.join(format!(".{name}")),
            n => parent.join(format!(".{name}.{n}")),
        };
        match fs::rename(path, &hidden) {
            Ok(()) => return Ok(Some(hidden)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {}
            Err(e) => return Err(RuntimeError::io(format!("renaming {}", path.display()))(e)),
        }
    }
    Err(RuntimeError::Other(format!(
        "renaming {}: {HIDDEN_NAMES} earlier removals of it are still under way",
        path.display()
    )))
}

fn remove_all(path: &Path) -> RuntimeResult<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io(format!("removing {}", path.display()))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn bundles_are_laid_out_as_containerds_and_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let b = Bundle::create(&root, &state, "default", "web", b"{}").unwrap();
        let path = state.join("io.containerd.runtime.v2.task/default/web");
        assert_eq!(b.path, path);
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join("rootfs")), 0o711);
        assert_eq!(fs::read(path.join("config.json")).unwrap(), b"{}");
        let work = root.join("io.containerd.runtime.v2.task/default/web");
        assert_eq!(fs::read_link(path.join("work")).unwrap(), work);
        assert_eq!(mode(&work), 0o711);

        let again = Bundle::create(&root, &state, "default", "web", b"{}").unwrap_err();
        assert!(matches!(again, RuntimeError::AlreadyExists(_)), "{again}");

        b.write_file("shim-binary-path", b"/bin/x").unwrap();
        assert_eq!(
            b.read_file("shim-binary-path").unwrap().as_deref(),
            Some("/bin/x")
        );
        assert_eq!(b.read_file("address").unwrap(), None);

        b.delete().unwrap();
        assert!(!path.exists() && !work.exists());
        assert!(!state
            .join("io.containerd.runtime.v2.task/default/.web")
            .exists());
        b.delete().unwrap();
    }

    #[test]
    fn a_task_retired_again_before_its_last_removal_gets_a_name_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let ns_dir = state.join("io.containerd.runtime.v2.task/ns");
        let mut retired = Vec::new();
        for round in 0..3 {
            let b = Bundle::create(&root, &state, "ns", "web", b"{}").unwrap();
            b.write_file("round", round.to_string().as_bytes()).unwrap();
            retired.push(b.retire().unwrap());
            assert!(!b.path.exists());
        }
        // Each round's files sit under a name of their own, none removed by another.
        let mut rounds: Vec<String> = [".web", ".web.1", ".web.2"]
            .iter()
            .map(|n| fs::read_to_string(ns_dir.join(n).join("round")).unwrap())
            .collect();
        rounds.sort();
        assert_eq!(rounds, ["0", "1", "2"]);
        for r in retired {
            r.remove().unwrap();
        }
        assert_eq!(fs::read_dir(&ns_dir).unwrap().count(), 0);
        let work = root.join("io.containerd.runtime.v2.task/ns");
        assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
    }

    #[test]
    fn a_stale_work_dir_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (root, state) = (dir.path().join("root"), dir.path().join("state"));
        let work = root.join("io.containerd.runtime.v2.task/ns/c1");
        fs::create_dir_all(&work).unwrap();
        fs::write(work.join("old"), b"x").unwrap();
        let b = Bundle::create(&root, &state, "ns", "c1", b"{}").unwrap();
        assert!(!work.join("old").exists());
        b.delete().unwrap();
    }
}
