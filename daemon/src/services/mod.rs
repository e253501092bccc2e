//! containerd's API services over the metadata store: thin adaptors that validate a request,
//! call the store, publish the event containerd publishes after the change commits, and map
//! errors onto containerd's codes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use corral_protocols::rpc::{RequestContext, RpcResult, ServiceSet};

use crate::content::{ContentError, Store as ContentStore};
use crate::events::Exchange;
use crate::gc::{Collector, ContentSweeper, SnapshotSweeper};
use crate::metadata::store::Store;
use crate::runtime::{RuntimeConfig, TaskManager};
use crate::snapshot::native::NativeSnapshotter;
use crate::snapshot::overlay::{OverlayConfig, OverlaySnapshotter};
use crate::snapshot::{SnapshotError, Snapshotter};

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod snapshots;
pub mod tasks;
pub mod version;

/// What every service shares.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub exchange: Exchange,
    /// The garbage collector: told of every change, asked to run by deletes with `sync`.
    pub gc: Collector,
    /// The content store's backend (`<root>/io.containerd.content.v1.content`).
    pub content: ContentStore,
    /// Held shared while a write moves bytes into the content backend and records them, and
    /// alone while the collector sweeps the backend (containerd's `contentStore.l`), so a
    /// blob committed but not yet recorded is never swept.
    pub content_lock: Arc<RwLock<()>>,
    /// The snapshotters by name (`overlayfs` when the root's file system supports it, and
    /// `native`).
    pub snapshotters: BTreeMap<String, Arc<dyn Snapshotter>>,
    /// Held shared by snapshot changes that create or remove backend snapshots, and alone by
    /// the collector's backend sweep (containerd's `snapshotter.l`).
    pub snapshot_lock: Arc<RwLock<()>>,
    /// containerd's `content_sharing_policy = "shared"` (false: "isolated").
    pub content_shared: bool,
    /// The daemon root (persistent) and state (tmpfs) directories.
    pub root: PathBuf,
    pub state: PathBuf,
    /// The tasks and their shims.
    pub tasks: TaskManager,
}

/// The services' settings from the configuration file (containerd's plugin tables).
#[derive(Debug, Clone)]
pub struct Options {
    pub gc: crate::gc::GcConfig,
    /// `content_sharing_policy = "shared"`.
    pub content_shared: bool,
    /// The overlayfs snapshotter's `root_path`, when set.
    pub overlay_root: Option<PathBuf>,
    pub overlay: OverlayConfig,
    /// corrald's own socket, which shims are told to send their events to.
    pub address: String,
    /// Start shims with `-debug`.
    pub shim_debug: bool,
    /// Directories searched for shim binaries before `$PATH`.
    pub shim_dirs: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gc: crate::gc::GcConfig::default(),
            content_shared: true,
            overlay_root: None,
            overlay: OverlayConfig::default(),
            address: crate::config::DEFAULT_ADDRESS.to_string(),
            shim_debug: false,
            shim_dirs: Vec::new(),
        }
    }
}

impl Options {
    /// The settings `config` gives.
    pub fn from_config(config: &crate::config::Config) -> Options {
        let overlay = config.overlay();
        Options {
            gc: config.gc(),
            content_shared: config.content_shared(),
            overlay_root: (!overlay.root_path.is_empty()).then(|| PathBuf::from(overlay.root_path)),
            overlay: OverlayConfig {
                upperdir_label: overlay.upperdir_label,
            },
            address: config.ttrpc.address.clone(),
            shim_debug: config.log_level() >= log::LevelFilter::Debug,
            shim_dirs: Vec::new(),
        }
    }
}

/// What can stop the services' context from opening.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("content store: {0}")]
    Content(#[from] ContentError),
    #[error("runtime: {0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("snapshotter {name}: {source}")]
    Snapshotter {
        name: &'static str,
        source: SnapshotError,
    },
}

impl Context {
    /// The services' context for a daemon whose metadata store is `store`: the content store
    /// and the snapshotters under `root` (overlayfs is left out, with a warning, where the
    /// file system cannot host it, as containerd skips a plugin that fails to load), a new
    /// event exchange and a garbage collector with containerd's default schedule (not started).
    pub fn open(store: Store, root: PathBuf, state: PathBuf) -> Result<Context, ContextError> {
        Context::open_with(store, root, state, &Options::default())
    }

    /// [`open`](Self::open) with the settings of the configuration file.
    pub fn open_with(
        store: Store,
        root: PathBuf,
        state: PathBuf,
        options: &Options,
    ) -> Result<Context, ContextError> {
        let content = ContentStore::open(crate::content::store_path(&root))?;
        let mut snapshotters: BTreeMap<String, Arc<dyn Snapshotter>> = BTreeMap::new();
        let overlay_root = options
            .overlay_root
            .clone()
            .unwrap_or_else(|| OverlaySnapshotter::default_root(&root));
        match OverlaySnapshotter::new(overlay_root, options.overlay.clone()) {
            Ok(o) => {
                snapshotters.insert(crate::snapshot::overlay::NAME.into(), Arc::new(o));
            }
            Err(e) => log::warn!("overlayfs snapshotter not available: {e}"),
        }
        let native =
            NativeSnapshotter::new(NativeSnapshotter::default_root(&root)).map_err(|source| {
                ContextError::Snapshotter {
                    name: crate::snapshot::native::NAME,
                    source,
                }
            })?;
        snapshotters.insert(crate::snapshot::native::NAME.into(), Arc::new(native));
        let gc = Collector::new(store.clone(), options.gc.clone());
        let content_lock: Arc<RwLock<()>> = Arc::default();
        let snapshot_lock: Arc<RwLock<()>> = Arc::default();
        gc.register(Arc::new(ContentSweeper {
            content: content.clone(),
            lock: Arc::clone(&content_lock),
        }));
        for sn in snapshotters.values() {
            gc.register(Arc::new(SnapshotSweeper {
                snapshotter: Arc::clone(sn),
                lock: Arc::clone(&snapshot_lock),
            }));
        }
        let exchange = Exchange::default();
        let tasks = TaskManager::new(
            RuntimeConfig {
                root: root.clone(),
                state: state.clone(),
                address: options.address.clone(),
                debug: options.shim_debug,
                shim_dirs: options.shim_dirs.clone(),
            },
            exchange.clone(),
        )?;
        Ok(Context {
            gc,
            store,
            exchange,
            tasks,
            content,
            content_lock,
            snapshotters,
            snapshot_lock,
            content_shared: options.content_shared,
            root,
            state,
        })
    }

    /// The content store as namespaces see it, over this context's backend, lock and
    /// sharing policy (what the Content and Diff services read and write through).
    pub fn namespaced_content(&self) -> crate::content::namespaced::Content {
        crate::content::namespaced::Content::new(
            self.store.clone(),
            self.content.clone(),
            Arc::clone(&self.content_lock),
            self.content_shared,
        )
    }

    /// The snapshotter a request names (`overlayfs` when it names none, containerd's
    /// default); an unknown one is `InvalidArgument`, as containerd answers.
    pub fn snapshotter(&self, name: &str) -> RpcResult<&Arc<dyn Snapshotter>> {
        let name = if name.is_empty() {
            crate::snapshot::overlay::NAME
        } else {
            name
        };
        self.snapshotters.get(name).ok_or_else(|| {
            corral_protocols::rpc::Status::invalid_argument(format!(
                "snapshotter not loaded: {name}: invalid argument"
            ))
        })
    }
}

/// The namespace a namespaced call works in, validated; `FailedPrecondition` without one.
pub fn namespace(ctx: &RequestContext) -> RpcResult<String> {
    use corral_protocols::identifiers::{ValidationError, IDENTIFIER_PATTERN, MAX_IDENTIFIER_LEN};
    let ns = ctx.require_namespace()?;
    if let Err(e) = crate::metadata::validate::validate_identifier("namespace", ns) {
        // containerd's NamespaceRequired: "namespace validation: <identifiers.Validate>".
        let why = match e {
            ValidationError::IdentifierTooLong { id, .. } => format!(
                "identifier {id:?} greater than maximum length ({MAX_IDENTIFIER_LEN} characters)"
            ),
            ValidationError::IdentifierPattern { id, .. } => {
                format!("identifier {id:?} must match {IDENTIFIER_PATTERN}")
            }
            _ => "identifier must not be empty".into(),
        };
        return Err(corral_protocols::rpc::Status::invalid_argument(format!(
            "namespace validation: {why}: invalid argument"
        )));
    }
    Ok(ns.to_string())
}

/// Registers every service corrald serves.
pub fn register_all(set: &mut ServiceSet, ctx: &Arc<Context>) {
    namespaces::register(set, ctx);
    containers::register(set, ctx);
    content::register(set, ctx);
    diff::register(set, ctx);
    images::register(set, ctx);
    leases::register(set, ctx);
    snapshots::register(set, ctx);
    tasks::register(set, ctx);
    version::register(set, ctx);
    introspection::register(set, ctx);
    events::register(set, ctx);
}
