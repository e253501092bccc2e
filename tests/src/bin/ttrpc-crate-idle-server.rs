//! The same idle Version server as `corral-idle-server`, on the `ttrpc` crate's own sync server,
//! so `make bench` can compare the two. Usage: `ttrpc-crate-idle-server SOCKET`.

use std::collections::HashMap;
use std::process::ExitCode;

use corral_protocols::services::version::v1::version::VersionResponse;
use protobuf::Message;
use ttrpc::sync::{MethodHandler, TtrpcContext};

struct VersionHandler;

impl MethodHandler for VersionHandler {
    fn handler(&self, ctx: TtrpcContext, _req: ttrpc::Request) -> ttrpc::Result<()> {
        let mut v = VersionResponse::new();
        v.version = corral_protocols::version::VERSION.into();
        v.revision = corral_protocols::version::REVISION.into();
        let mut resp = ttrpc::Response::new();
        resp.payload = v
            .write_to_bytes()
            .map_err(|e| ttrpc::Error::Others(e.to_string()))?;
        ctx.respond(ctx.mh.stream_id, resp)
    }
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: ttrpc-crate-idle-server SOCKET");
        return ExitCode::from(2);
    };
    let _ = std::fs::remove_file(&path);
    let mut methods: HashMap<String, Box<dyn MethodHandler + Send + Sync>> = HashMap::new();
    methods.insert(
        "/containerd.services.version.v1.Version/Version".into(),
        Box::new(VersionHandler),
    );
    let server = ttrpc::sync::Server::new()
        .bind(&format!("unix://{path}"))
        .map(|s| s.register_service(methods));
    let mut server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ttrpc-crate-idle-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.start() {
        eprintln!("ttrpc-crate-idle-server: {e}");
        return ExitCode::FAILURE;
    }
    println!("ready");
    loop {
        std::thread::park();
    }
}
