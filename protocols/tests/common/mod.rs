//! A test service with one method of each kind, and a raw frame-level peer.

#![allow(dead_code)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use corral_protocols::rpc::frame::{self, read_frame, Frame};
use corral_protocols::rpc::{Server, ServerConfig, ServiceSet, Status};
use protobuf::well_known_types::wrappers::{StringValue, UInt32Value};
use protobuf::Message;

pub const SVC: &str = "corral.test.Echo";

pub fn sv(s: &str) -> StringValue {
    let mut v = StringValue::new();
    v.value = s.to_string();
    v
}

/// `Echo` (unary), `Count` (server stream), `Concat` (client stream), `Chat` (bidi), `Block`
/// (unary until cancelled), `Forever` (server stream until cancelled), `Whoami` (unary:
/// answers the namespace it was sent).
pub fn services() -> ServiceSet {
    let mut s = ServiceSet::new();
    s.unary(SVC, "Echo", |_ctx, req: StringValue| Ok(sv(&req.value)));
    s.unary(SVC, "Whoami", |ctx, _req: StringValue| {
        let ns = ctx.require_namespace()?;
        let timeout = if ctx.deadline().is_some() {
            "set"
        } else {
            "unset"
        };
        Ok(sv(&format!("{ns}/{timeout}")))
    });
    s.unary(
        SVC,
        "Fail",
        |_ctx, req: StringValue| -> Result<StringValue, Status> {
            Err(Status::not_found(format!(
                "thing {:?}: not found",
                req.value
            )))
        },
    );
    s.server_stream(SVC, "Count", |_ctx, req: UInt32Value, out| {
        for i in 0..req.value {
            out.send(&sv(&i.to_string()))?;
        }
        Ok(())
    });
    s.server_stream(SVC, "CountAll", |_ctx, req: UInt32Value, out| {
        // Long values, so that the frames span several batches.
        out.send_all((0..req.value).map(|i| sv(&format!("{i:0>200}"))))
    });
    s.client_stream(SVC, "Concat", |_ctx, input| {
        let mut all = String::new();
        while let Some(m) = input.recv()? {
            let m: StringValue = m;
            all.push_str(&m.value);
        }
        Ok(sv(&all))
    });
    s.bidi(SVC, "Chat", |_ctx, input, out| {
        while let Some(m) = input.recv()? {
            let m: StringValue = m;
            if m.value == "fail" {
                return Err(Status::failed_precondition("asked to fail"));
            }
            out.send(&sv(&format!("echo:{}", m.value)))?;
        }
        Ok(())
    });
    s.unary(
        SVC,
        "Block",
        |ctx, _req: StringValue| -> Result<StringValue, Status> {
            while !ctx.wait_cancelled(Duration::from_secs(60)) {}
            Err(ctx.cancelled_status())
        },
    );
    s.server_stream(SVC, "Forever", |ctx, _req: StringValue, out| {
        let mut i = 0u64;
        loop {
            if ctx.is_cancelled() {
                return Err(ctx.cancelled_status());
            }
            out.send(&sv(&i.to_string()))?;
            i += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    s
}

pub fn config() -> ServerConfig {
    ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    }
}

/// A server with the test services and one raw connection to it.
pub fn raw_pair(config: ServerConfig) -> (Server, Raw) {
    let server = Server::new(services(), config);
    let (a, b) = UnixStream::pair().unwrap();
    server.serve_connection(a).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (server, Raw(b))
}

/// A peer that speaks frames by hand.
pub struct Raw(pub UnixStream);

impl Raw {
    pub fn send(&mut self, id: u32, kind: u8, flags: u8, body: &[u8]) {
        frame::write_frame(&mut self.0, id, kind, flags, body).unwrap();
    }

    pub fn request(&mut self, id: u32, flags: u8, method: &str, payload: &[u8]) {
        self.request_with(id, flags, SVC, method, payload, &[], 0);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn request_with(
        &mut self,
        id: u32,
        flags: u8,
        service: &str,
        method: &str,
        payload: &[u8],
        metadata: &[(&str, &str)],
        timeout_nano: i64,
    ) {
        let mut req = ttrpc::proto::Request::new();
        req.service = service.into();
        req.method = method.into();
        req.payload = payload.to_vec();
        req.timeout_nano = timeout_nano;
        for (k, v) in metadata {
            let mut kv = ttrpc::proto::KeyValue::new();
            kv.key = k.to_string();
            kv.value = v.to_string();
            req.metadata.push(kv);
        }
        self.send(
            id,
            frame::TYPE_REQUEST,
            flags,
            &req.write_to_bytes().unwrap(),
        );
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    pub fn recv(&mut self) -> Frame {
        read_frame(&mut self.0).expect("a frame from the server")
    }

    /// Reads a response frame and splits it into status and payload.
    pub fn response(&mut self, id: u32) -> (Option<Status>, Vec<u8>) {
        let f = self.recv();
        assert_eq!(f.stream_id, id, "response on the wrong stream: {f:?}");
        assert_eq!(f.kind, frame::TYPE_RESPONSE, "expected a response: {f:?}");
        assert_eq!(f.flags, 0);
        let resp = ttrpc::proto::Response::parse_from_bytes(&f.body).unwrap();
        let status = resp.status.as_ref().and_then(Status::from_proto);
        (status, resp.payload)
    }
}

pub fn enc<M: Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().unwrap()
}

pub fn dec_sv(b: &[u8]) -> String {
    StringValue::parse_from_bytes(b).unwrap().value
}

/// Waits for `cond` with a deadline.
pub fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
