//! The container user, resolved from the root filesystem's `/etc/passwd` and `/etc/group`
//! as containerd's `oci.WithUser`, `WithUserID`, `WithUsername` and `WithAdditionalGIDs`
//! do (files read as runc's `libcontainer/user` reads them).

use std::path::{Path, PathBuf};

use super::paths::root_path;
use super::{Spec, SpecError};

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id (0 when the field is not a number, as runc reads it).
    pub uid: i64,
    /// Primary group id.
    pub gid: i64,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: i64,
    /// Member login names.
    pub members: Vec<String>,
}

/// Go's `strconv.Atoi` with runc's "errors read as 0".
fn number(field: Option<&str>) -> i64 {
    field.and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// The non-empty, trimmed lines of a file, split at `:`.
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(':').collect())
}

/// Parses `/etc/passwd` text.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .map(|f| PasswdEntry {
            name: f[0].to_string(),
            uid: number(f.get(2).copied()),
            gid: number(f.get(3).copied()),
        })
        .collect()
}

/// Parses `/etc/group` text.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .map(|f| GroupEntry {
            name: f[0].to_string(),
            gid: number(f.get(2).copied()),
            members: match f.get(3) {
                Some(list) if !list.is_empty() => list.split(',').map(str::to_string).collect(),
                _ => Vec::new(),
            },
        })
        .collect()
}

/// Why a user or group lookup found nothing usable.
#[derive(Debug)]
enum Lookup {
    /// The file does not exist.
    Missing(SpecError),
    /// Reading it failed otherwise.
    Failed(SpecError),
    /// No entry matched (`ErrNoUsersFound` / `ErrNoGroupsFound`).
    NoMatch,
}

impl Lookup {
    fn into_error(self, no_match: &str) -> SpecError {
        match self {
            Lookup::Missing(e) | Lookup::Failed(e) => e,
            Lookup::NoMatch => SpecError::NotFound(no_match.to_string()),
        }
    }
}

/// Where `/etc/passwd` and `/etc/group` are read from.
#[derive(Debug, Clone, Copy)]
enum Files<'a> {
    /// A root directory, the names resolved in it as runc resolves them.
    Root(&'a Path),
    /// The files as found without a root to resolve them in.
    Found(&'a UserFiles),
}

fn read_file(files: Files, name: &str) -> Result<String, Lookup> {
    let path = match files {
        Files::Root(root) => root_path(root, name).map_err(Lookup::Failed)?,
        Files::Found(found) => match found.get(name) {
            Some(path) => path.to_path_buf(),
            None => {
                let e = std::io::Error::from(std::io::ErrorKind::NotFound);
                return Err(Lookup::Missing(SpecError::io("open", Path::new(name), &e)));
            }
        },
    };
    std::fs::read_to_string(&path).map_err(|e| {
        let err = SpecError::io("open", &path, &e);
        if e.kind() == std::io::ErrorKind::NotFound {
            Lookup::Missing(err)
        } else {
            Lookup::Failed(err)
        }
    })
}

/// containerd's `UserFromPath`: the first passwd entry under `root` that `matches`.
fn user_from_path(
    root: Files,
    matches: impl Fn(&PasswdEntry) -> bool,
) -> Result<PasswdEntry, Lookup> {
    let text = read_file(root, "/etc/passwd")?;
    parse_passwd(&text)
        .into_iter()
        .find(|u| matches(u))
        .ok_or(Lookup::NoMatch)
}

/// containerd's `GIDFromPath`: the gid of the first group under `root` that `matches`.
fn gid_from_path(root: Files, matches: impl Fn(&GroupEntry) -> bool) -> Result<u32, Lookup> {
    let text = read_file(root, "/etc/group")?;
    parse_group(&text)
        .into_iter()
        .find(|g| matches(g))
        .map(|g| g.gid as u32)
        .ok_or(Lookup::NoMatch)
}

/// The root filesystem a user is resolved in: containerd requires an absolute path.
fn checked_root(root: &Path) -> Result<&Path, SpecError> {
    if root.is_absolute() {
        Ok(root)
    } else {
        Err(SpecError::InvalidArgument(
            "rootfs absolute path is required".into(),
        ))
    }
}

/// Where the user options read `/etc/passwd` and `/etc/group`: the spec's root directory,
/// or the container's snapshot, as containerd's options choose between `s.Root.Path` and
/// `mount.WithTempMount` of the snapshot's mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRoot<'a> {
    /// A root filesystem directory (`--rootfs`), which must be absolute.
    Dir(&'a Path),
    /// The container's snapshot mounted at this directory; a lookup failing there says so,
    /// naming the directory (`mount callback failed on <dir>: ...`).
    TempMount(&'a Path),
    /// The container's snapshot, its two files found in its layers with no mount.
    Found(&'a UserFiles),
}

/// Where a snapshot's `/etc/passwd` and `/etc/group` are, found without mounting it: each
/// the file that shows in the snapshot, `None` when it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFiles {
    /// `/etc/passwd`.
    pub passwd: Option<PathBuf>,
    /// `/etc/group`.
    pub group: Option<PathBuf>,
}

impl UserFiles {
    fn get(&self, name: &str) -> Option<&Path> {
        match name {
            "/etc/passwd" => self.passwd.as_deref(),
            "/etc/group" => self.group.as_deref(),
            _ => None,
        }
    }
}

impl<'a> From<&'a Path> for UserRoot<'a> {
    fn from(root: &'a Path) -> Self {
        UserRoot::Dir(root)
    }
}

impl UserRoot<'_> {
    /// Runs the lookup `f` on the files, as containerd runs its callbacks.
    fn lookup<T>(self, f: impl FnOnce(Files) -> Result<T, SpecError>) -> Result<T, SpecError> {
        match self {
            UserRoot::Dir(root) => f(Files::Root(checked_root(root)?)),
            UserRoot::TempMount(root) => f(Files::Root(root))
                .map_err(|e| e.context(&format!("mount callback failed on {}", root.display()))),
            UserRoot::Found(found) => f(Files::Found(found)),
        }
    }
}

impl Spec {
    fn set_uid_gid(&mut self, uid: u32, gid: u32) {
        let user = self.process().user_mut();
        user.set_uid(uid).set_gid(gid);
    }

    fn clear_additional_gids(&mut self) {
        self.process().user_mut().set_additional_gids(None);
    }

    /// containerd's `ensureAdditionalGids`: the primary gid leads the additional gids
    /// unless it is among them already.
    fn ensure_additional_gids(&mut self) {
        let user = self.process().user_mut();
        let gid = user.gid();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        if !gids.contains(&gid) {
            gids.insert(0, gid);
        }
        user.set_additional_gids(Some(gids));
    }

    /// containerd's `WithUser`: `user`, `uid`, `user:group`, `uid:gid`, `uid:group` or
    /// `user:gid`, names resolved in the root filesystem at `root`.
    pub fn with_user<'a>(
        &mut self,
        userstr: &str,
        root: impl Into<UserRoot<'a>>,
    ) -> Result<(), SpecError> {
        self.clear_additional_gids();
        let result = self.set_user(userstr, root.into());
        self.ensure_additional_gids();
        result
    }

    fn set_user(&mut self, userstr: &str, root: UserRoot) -> Result<(), SpecError> {
        let parts: Vec<&str> = userstr.split(':').collect();
        match parts.as_slice() {
            [one] => match one.parse::<i64>() {
                Ok(uid) => self.with_user_id(uid as u32, root),
                Err(_) => self.with_username(userstr, root),
            },
            [user, group] => {
                let (mut uid, mut gid) = (0u32, 0u32);
                let username = match user.parse::<i64>() {
                    Ok(v) => {
                        uid = v as u32;
                        None
                    }
                    Err(_) => Some(*user),
                };
                let groupname = match group.parse::<i64>() {
                    Ok(v) => {
                        gid = v as u32;
                        None
                    }
                    Err(_) => Some(*group),
                };
                if username.is_none() && groupname.is_none() {
                    self.set_uid_gid(uid, gid);
                    return Ok(());
                }
                let (uid, gid) = root.lookup(|root| {
                    if let Some(name) = username {
                        uid = user_from_path(root, |u| u.name == name)
                            .map_err(|e| e.into_error("no users found"))?
                            .uid as u32;
                    }
                    if let Some(name) = groupname {
                        gid = gid_from_path(root, |g| g.name == name)
                            .map_err(|e| e.into_error("no groups found"))?;
                    }
                    Ok((uid, gid))
                })?;
                self.set_uid_gid(uid, gid);
                Ok(())
            }
            _ => Err(SpecError::InvalidArgument(format!(
                "invalid USER value {userstr}"
            ))),
        }
    }

    /// containerd's `WithUserID`: uid and primary gid of the passwd entry for `uid`; when
    /// there is no passwd file or no such entry, `uid` with gid 0.
    pub fn with_user_id<'a>(
        &mut self,
        uid: u32,
        root: impl Into<UserRoot<'a>>,
    ) -> Result<(), SpecError> {
        self.clear_additional_gids();
        let result =
            root.into().lookup(
                |root| match user_from_path(root, |u| u.uid == i64::from(uid)) {
                    Ok(u) => Ok((u.uid as u32, u.gid as u32)),
                    Err(Lookup::Missing(_) | Lookup::NoMatch) => Ok((uid, 0)),
                    Err(Lookup::Failed(e)) => Err(e),
                },
            );
        let result = result.map(|(uid, gid)| self.set_uid_gid(uid, gid));
        self.ensure_additional_gids();
        result
    }

    /// containerd's `WithUsername`: uid and primary gid of the passwd entry named
    /// `username`, which must exist.
    pub fn with_username<'a>(
        &mut self,
        username: &str,
        root: impl Into<UserRoot<'a>>,
    ) -> Result<(), SpecError> {
        self.clear_additional_gids();
        let result = root.into().lookup(|root| {
            user_from_path(root, |u| u.name == username).map_err(|e| e.into_error("no users found"))
        });
        let result = result.map(|u| self.set_uid_gid(u.uid as u32, u.gid as u32));
        self.ensure_additional_gids();
        result
    }

    /// containerd's `WithAdditionalGIDs`: the groups of `/etc/group` listing the user (a
    /// name, or a uid looked up in `/etc/passwd`) as a member, after the primary gid.
    pub fn with_additional_gids<'a>(
        &mut self,
        userstr: &str,
        root: impl Into<UserRoot<'a>>,
    ) -> Result<(), SpecError> {
        self.clear_additional_gids();
        // As in containerd, the primary gid is put back only once the files were reached.
        root.into().lookup(|root| {
            let result = supplementary_gids(userstr, root).map(|gids| {
                if let Some(gids) = gids {
                    self.process().user_mut().set_additional_gids(Some(gids));
                }
            });
            self.ensure_additional_gids();
            result
        })
    }
}

/// The gids of the groups under `root` that list the user `userstr` (a name, or a uid looked
/// up in `/etc/passwd`) as a member, its own group aside; `None` when the user or the group
/// file is not there.
fn supplementary_gids(userstr: &str, root: Files) -> Result<Option<Vec<u32>>, SpecError> {
    let username = match userstr.parse::<i64>() {
        Ok(uid) => match user_from_path(root, |u| u.uid == uid) {
            Ok(u) => u.name,
            Err(Lookup::Missing(_) | Lookup::NoMatch) => return Ok(None),
            Err(Lookup::Failed(e)) => return Err(e),
        },
        Err(_) => userstr.to_string(),
    };
    match read_file(root, "/etc/group") {
        Ok(text) => Ok(Some(
            parse_group(&text)
                .into_iter()
                .filter(|g| g.name != username && g.members.contains(&username))
                .map(|g| g.gid as u32)
                .collect(),
        )),
        Err(Lookup::Missing(_) | Lookup::NoMatch) => Ok(None),
        Err(Lookup::Failed(e)) => Err(e),
    }
}

/// A temporary root filesystem with these `/etc/passwd` and `/etc/group`, for tests.
#[cfg(test)]
pub(super) fn test_rootfs(passwd: &str, group: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
    std::fs::write(dir.path().join("etc/group"), group).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        test_rootfs(
            "root:x:0:0:root:/root:/bin/sh\n\nweb:x:1000:1001::/home/web:/bin/sh\n  odd:x:zz:7\n",
            "root:x:0:\nweb:x:1001:web\nwheel:x:10:root,web\naudio:x:29:web\n",
        )
    }

    fn user(spec: &Spec) -> serde_json::Value {
        spec.to_json().unwrap()["process"]["user"].clone()
    }

    #[test]
    fn files_parse_like_runc() {
        let p = parse_passwd("a:x:1:2\n  \nb:x:q:3:g:/h:/s\n");
        assert_eq!(
            p[1],
            PasswdEntry {
                name: "b".into(),
                uid: 0,
                gid: 3
            }
        );
        let g = parse_group("g:x:5:\nh:x:6:a,b\n");
        assert!(g[0].members.is_empty());
        assert_eq!(g[1].members, ["a", "b"]);
    }

    #[test]
    fn users_resolve_like_containerd() {
        let dir = rootfs();
        let root = dir.path();
        let mut spec = Spec::default_unix("ns", "id").unwrap();
        let both = |spec: &mut Spec, u: &str| {
            spec.with_user(u, root)?;
            spec.with_additional_gids(u, root)
        };
        both(&mut spec, "web").unwrap();
        assert_eq!(
            user(&spec),
            serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 10, 29]})
        );
        both(&mut spec, "1000").unwrap();
        assert_eq!(
            user(&spec),
            serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [1001, 10, 29]})
        );
        both(&mut spec, "4242").unwrap();
        assert_eq!(
            user(&spec),
            serde_json::json!({"uid": 4242, "gid": 0, "additionalGids": [0]})
        );
        both(&mut spec, "5:6").unwrap();
        assert_eq!(
            user(&spec),
            serde_json::json!({"uid": 5, "gid": 6, "additionalGids": [6]})
        );
        both(&mut spec, "web:wheel").unwrap();
        assert_eq!(
            user(&spec),
            serde_json::json!({"uid": 1000, "gid": 10, "additionalGids": [10]})
        );
        assert_eq!(
            both(&mut spec, "nobody").unwrap_err().to_string(),
            "no users found"
        );
        assert_eq!(
            both(&mut spec, "web:nogroup").unwrap_err().to_string(),
            "no groups found"
        );
        assert_eq!(
            both(&mut spec, "a:b:c").unwrap_err().to_string(),
            "invalid USER value a:b:c"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = spec.with_user("web", empty.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("open ") && e.ends_with("/etc/passwd: no such file or directory"),
            "{e}"
        );
        spec.with_user("7", empty.path()).unwrap();
        assert_eq!(user(&spec)["uid"], 7);
        assert_eq!(
            spec.with_user("web", Path::new("rel"))
                .unwrap_err()
                .to_string(),
            "rootfs absolute path is required"
        );
    }
}
