//! containerd's `Introspection` service: `Plugins` lists what Corral actually serves, in
//! containerd's plugin vocabulary (type and id), filtered on `type` and `id`; `Server`
//! answers the daemon's UUID, kept where containerd keeps it
//! (`<root>/io.containerd.service.v1.introspection-service/uuid`), so a root handed from one
//! daemon to the other keeps its identity.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet, Status};
use corral_protocols::services::introspection::v1::introspection::{
    Plugin, PluginsRequest, PluginsResponse, ServerResponse,
};
use corral_protocols::services::introspection::v1::introspection_rpc::{
    register_introspection, Introspection,
};
use protobuf::well_known_types::empty::Empty;

use super::Context;
use crate::filter::{Adaptor, Filter};

/// The directory containerd's introspection service plugin owns under the root.
pub const INTROSPECTION_DIR: &str = "io.containerd.service.v1.introspection-service";

/// One plugin as `Plugins` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginInfo {
    /// containerd's plugin type, e.g. `io.containerd.grpc.v1`.
    pub type_: &'static str,
    /// The plugin id within its type, e.g. `containers`.
    pub id: &'static str,
    /// The plugin types it depends on.
    pub requires: &'static [&'static str],
}

const METADATA: &str = "io.containerd.metadata.v1";
const EVENT: &str = "io.containerd.event.v1";
const SERVICE: &str = "io.containerd.service.v1";
const GRPC: &str = "io.containerd.grpc.v1";
const GC: &str = "io.containerd.gc.v1";
const SNAPSHOT: &str = "io.containerd.snapshotter.v1";
const CONTENT: &str = "io.containerd.content.v1";
const DIFFER: &str = "io.containerd.differ.v1";

/// What corrald runs, named as containerd names the same plugins; only what is served.
pub const PLUGINS: &[PluginInfo] = &[
    PluginInfo {
        type_: EVENT,
        id: "exchange",
        requires: &[],
    },
    PluginInfo {
        type_: METADATA,
        id: "bolt",
        requires: &[],
    },
    PluginInfo {
        type_: CONTENT,
        id: "content",
        requires: &[],
    },
    PluginInfo {
        type_: SNAPSHOT,
        id: "native",
        requires: &[],
    },
    PluginInfo {
        type_: SNAPSHOT,
        id: "overlayfs",
        requires: &[],
    },
    PluginInfo {
        type_: DIFFER,
        id: "walking",
        requires: &[METADATA],
    },
    PluginInfo {
        type_: GC,
        id: "scheduler",
        requires: &[METADATA],
    },
    PluginInfo {
        type_: SERVICE,
        id: "diff-service",
        requires: &[DIFFER],
    },
    PluginInfo {
        type_: SERVICE,
        id: "introspection-service",
        requires: &[],
    },
    PluginInfo {
        type_: SERVICE,
        id: "snapshots-service",
        requires: &[EVENT, METADATA],
    },
    PluginInfo {
        type_: GRPC,
        id: "containers",
        requires: &[METADATA, EVENT],
    },
    PluginInfo {
        type_: GRPC,
        id: "diff",
        requires: &[SERVICE],
    },
    PluginInfo {
        type_: GRPC,
        id: "events",
        requires: &[EVENT],
    },
    PluginInfo {
        type_: GRPC,
        id: "images",
        requires: &[METADATA, GC, EVENT],
    },
    PluginInfo {
        type_: GRPC,
        id: "introspection",
        requires: &[SERVICE],
    },
    PluginInfo {
        type_: GRPC,
        id: "leases",
        requires: &[METADATA],
    },
    PluginInfo {
        type_: GRPC,
        id: "namespaces",
        requires: &[METADATA, EVENT],
    },
    PluginInfo {
        type_: GRPC,
        id: "snapshots",
        requires: &[SERVICE],
    },
    PluginInfo {
        type_: GRPC,
        id: "content",
        requires: &[SERVICE],
    },
    PluginInfo {
        type_: GRPC,
        id: "version",
        requires: &[],
    },
];

impl PluginInfo {
    fn to_proto(self) -> Plugin {
        let mut p = Plugin::new();
        p.type_ = self.type_.to_string();
        p.id = self.id.to_string();
        p.requires = self.requires.iter().map(|r| r.to_string()).collect();
        p
    }
}

/// containerd's plugin adaptor: `type` and `id` (empty values match nothing).
impl Adaptor for Plugin {
    fn field(&self, path: &[&str]) -> Option<String> {
        let v = match path {
            ["type"] => &self.type_,
            ["id"] => &self.id,
            _ => return None,
        };
        (!v.is_empty()).then(|| v.clone())
    }
}

/// The plugins that match `filters` (all of them when there are none).
pub fn plugins(filters: &[String]) -> RpcResult<Vec<Plugin>> {
    let filter =
        if filters.is_empty() {
            None
        } else {
            Some(Filter::parse_all(filters).map_err(|e| {
                Status::invalid_argument(format!("failed parsing plugin filters: {e}"))
            })?)
        };
    Ok(PLUGINS
        .iter()
        .map(|p| p.to_proto())
        .filter(|p| match &filter {
            Some(f) => f.matches(p),
            None => true,
        })
        .collect())
}

/// The daemon's UUID under `root`, created on first use (containerd's `getUUID`).
pub struct Uuid {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Uuid {
    /// The UUID kept under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            path: root.join(INTROSPECTION_DIR).join("uuid"),
            lock: Mutex::new(()),
        }
    }

    /// The file that holds it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the UUID, generating and durably writing one if there is none yet.
    pub fn get(&self) -> io::Result<String> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match fs::read_to_string(&self.path) {
            Ok(s) => {
                let u = s.trim();
                if !is_uuid(u) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: invalid UUID {u:?}", self.path.display()),
                    ));
                }
                Ok(u.to_string())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.generate(),
            Err(e) => Err(e),
        }
    }

    fn generate(&self) -> io::Result<String> {
        let u = fs::read_to_string("/proc/sys/kernel/random/uuid")?
            .trim()
            .to_string();
        if !is_uuid(&u) {
            return Err(io::Error::other(format!(
                "kernel gave an invalid UUID {u:?}"
            )));
        }
        let dir = self
            .path
            .parent()
            .ok_or_else(|| io::Error::other("uuid path without a parent"))?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let tmp = dir.join(format!(".uuid.{}.tmp", std::process::id()));
        let written = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(u.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            fs::File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map(|()| u)
    }
}

/// A UUID in its 36-character text form (8-4-4-4-12 hex digits).
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

struct Service {
    uuid: Uuid,
}

impl Introspection for Service {
    fn plugins(&self, _ctx: &RequestContext, req: PluginsRequest) -> RpcResult<PluginsResponse> {
        let mut resp = PluginsResponse::new();
        resp.plugins = plugins(&req.filters)?;
        Ok(resp)
    }

    fn server(&self, _ctx: &RequestContext, _req: Empty) -> RpcResult<ServerResponse> {
        let uuid = self.uuid.get().map_err(|e| {
            Status::internal(format!("server uuid {}: {e}", self.uuid.path().display()))
        })?;
        let mut resp = ServerResponse::new();
        resp.uuid = uuid;
        Ok(resp)
    }
}

/// Registers the service.
pub fn register(set: &mut ServiceSet, ctx: &Arc<Context>) {
    register_introspection(
        set,
        Arc::new(Service {
            uuid: Uuid::new(&ctx.root),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_form() {
        assert!(is_uuid("0b5f6d2a-3c4e-4f1a-9b8c-7d6e5f4a3b2c"));
        assert!(!is_uuid("0b5f6d2a3c4e4f1a9b8c7d6e5f4a3b2c"));
        assert!(!is_uuid("0b5f6d2a-3c4e-4f1a-9b8c-7d6e5f4a3b2g"));
    }

    #[test]
    fn uuid_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let u = Uuid::new(dir.path());
        let first = u.get().unwrap();
        assert_eq!(first.len(), 36);
        assert_eq!(u.get().unwrap(), first);
        assert_eq!(Uuid::new(dir.path()).get().unwrap(), first);
        let on_disk = fs::read_to_string(dir.path().join(INTROSPECTION_DIR).join("uuid")).unwrap();
        assert_eq!(on_disk, first);
    }
}
