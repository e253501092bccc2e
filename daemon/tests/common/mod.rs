//! What the daemon's wire tests share: the services' context on a temporary directory,
//! served by a real ttrpc server to a client over a socket pair.

#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_daemon::events::Subscription;
use corral_daemon::metadata::store::Store;
use corral_daemon::services::{register_all, Context};
use corral_protocols::rpc::{CallContext, Client, Server, ServerConfig, ServiceSet};
use corral_protocols::services::leases::v1::leases::CreateRequest;
use corral_protocols::services::leases::v1::leases_rpc::LeasesClient;

/// Every service over one context.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub ctx: Arc<Context>,
    pub server: Server,
    pub client: Client,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("meta.db")).expect("store");
        let ctx = Arc::new(
            Context::open(store, dir.path().join("root"), dir.path().join("state"))
                .expect("context"),
        );
        let mut set = ServiceSet::new();
        register_all(&mut set, &ctx);
        let server = Server::new(set, ServerConfig::default());
        let client = Self::connect_to(&server);
        Harness {
            dir,
            ctx,
            server,
            client,
        }
    }

    fn connect_to(server: &Server) -> Client {
        let (a, b) = UnixStream::pair().expect("socket pair");
        server.serve_connection(a).expect("serve");
        Client::from_stream(b).expect("client")
    }

    /// Another connection to the same server.
    pub fn connect(&self) -> Client {
        Self::connect_to(&self.server)
    }

    /// The daemon root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn leases(&self) -> LeasesClient {
        LeasesClient::new(self.client.clone())
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> Subscription {
        self.ctx.exchange.subscribe(&[]).expect("subscribe")
    }

    /// Creates lease `id` in `namespace` and returns a call context holding it (what a
    /// containerd client does around writes, so the collector keeps them).
    pub fn lease(&self, namespace: &str, id: &str) -> CallContext {
        self.leases()
            .create(
                &ns(namespace),
                &CreateRequest {
                    id: id.into(),
                    ..Default::default()
                },
            )
            .expect("create lease");
        ns(namespace).with_lease(id)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.ctx.gc.stop();
        self.server.shutdown(Duration::from_secs(2));
    }
}

/// A call context in namespace `name`, with a deadline.
pub fn ns(name: &str) -> CallContext {
    CallContext::new()
        .with_namespace(name)
        .with_timeout(Duration::from_secs(10))
}

/// True when the test may mount; off CI a missing root skips (with a line saying so), on CI
/// it fails.
pub fn can_mount(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(!ci, "CI=true and {test} needs root to mount");
    eprintln!("skipping {test}: needs root to mount");
    false
}
