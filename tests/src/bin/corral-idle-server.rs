//! A ttrpc server on Corral's rpc layer with a few containerd services, for `make bench` to
//! measure an idle server's threads and memory. Usage: `corral-idle-server SOCKET`.

use std::os::unix::net::UnixListener;
use std::process::ExitCode;
use std::sync::Arc;

use corral_protocols::rpc::{RequestContext, RpcResult, Server, ServerConfig, ServiceSet};
use corral_protocols::services::version::v1::version::VersionResponse;
use corral_protocols::services::version::v1::version_rpc::{register_version, Version};
use protobuf::well_known_types::empty::Empty;

struct IdleVersion;

impl Version for IdleVersion {
    fn version(&self, _ctx: &RequestContext, _req: Empty) -> RpcResult<VersionResponse> {
        let mut v = VersionResponse::new();
        v.version = corral_protocols::version::VERSION.into();
        v.revision = corral_protocols::version::REVISION.into();
        Ok(v)
    }
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: corral-idle-server SOCKET");
        return ExitCode::from(2);
    };
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("corral-idle-server: listening on {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut set = ServiceSet::new();
    register_version(&mut set, Arc::new(IdleVersion));
    let server = Server::new(set, ServerConfig::default());
    println!("ready");
    match server.serve(&listener) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corral-idle-server: {e}");
            ExitCode::FAILURE
        }
    }
}
