//! Unary ttrpc interop with Go's ttrpc 1.1.1 (the version containerd 1.6 links), both ways:
//! Debian's Go client against Corral's server, and Corral's client against a Go server that
//! checks peer credentials the way containerd does. See `tests/go/README.md` for the programs.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use corral_protocols::events::task::TaskExit;
use corral_protocols::rpc::{
    CallContext, Client, Code, RequestContext, RpcResult, Server, ServerConfig, ServiceSet, Status,
};
use corral_protocols::services::namespaces::v1::namespace::{
    CreateNamespaceRequest, CreateNamespaceResponse, GetNamespaceRequest, GetNamespaceResponse,
    ListNamespacesRequest, ListNamespacesResponse, Namespace,
};
use corral_protocols::services::namespaces::v1::namespace_rpc::{
    register_namespaces, Namespaces, NamespacesClient,
};
use corral_protocols::services::ttrpc::events::v1::events::{Envelope, ForwardRequest};
use corral_protocols::services::ttrpc::events::v1::events_rpc::EventsClient;
use corral_protocols::services::version::v1::version::VersionResponse;
use corral_protocols::services::version::v1::version_rpc::{
    register_version, Version, VersionClient,
};
use corral_tests::go::{self, GoInterop};
use corral_tests::harness::{require, wait_for_socket, ChildGuard, TempRoot};
use protobuf::well_known_types::empty::Empty;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{Message, MessageField};

/// Builds the Go programs once per test binary, into a cache that survives between runs.
fn programs() -> Option<&'static GoInterop> {
    static BUILT: OnceLock<Result<GoInterop, String>> = OnceLock::new();
    if !require(
        "go and Debian's Go ttrpc and containerd sources",
        go::go_available(),
    ) {
        return None;
    }
    let built = BUILT.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-interop");
        go::build(&out).map_err(|e| e.to_string())
    });
    match built {
        Ok(p) => Some(p),
        Err(e) => panic!("building the Go interop programs failed: {e}"),
    }
}

struct TestVersion;

impl Version for TestVersion {
    fn version(&self, _ctx: &RequestContext, _req: Empty) -> RpcResult<VersionResponse> {
        let mut v = VersionResponse::new();
        v.version = "corral-test".into();
        v.revision = "r1".into();
        Ok(v)
    }
}

/// The namespaces service the Go client's checks expect (see tests/go/README.md).
struct TestNamespaces {
    created: Mutex<Vec<Namespace>>,
}

impl Namespaces for TestNamespaces {
    fn get(
        &self,
        _ctx: &RequestContext,
        req: GetNamespaceRequest,
    ) -> RpcResult<GetNamespaceResponse> {
        Err(Status::not_found(format!(
            "namespace {:?}: not found",
            req.name
        )))
    }

    fn create(
        &self,
        _ctx: &RequestContext,
        req: CreateNamespaceRequest,
    ) -> RpcResult<CreateNamespaceResponse> {
        let ns = req.namespace.into_option().unwrap_or_default();
        self.created.lock().unwrap().push(ns.clone());
        let mut resp = CreateNamespaceResponse::new();
        resp.namespace = MessageField::some(ns);
        Ok(resp)
    }

    fn list(
        &self,
        ctx: &RequestContext,
        _req: ListNamespacesRequest,
    ) -> RpcResult<ListNamespacesResponse> {
        let mut ns = Namespace::new();
        ns.name = ctx.namespace().unwrap_or_default().to_string();
        let timeout = if ctx.deadline().is_some() {
            "set"
        } else {
            "unset"
        };
        ns.labels.insert("timeout".into(), timeout.into());
        let mut resp = ListNamespacesResponse::new();
        resp.namespaces.push(ns);
        Ok(resp)
    }
}

#[test]
fn go_client_calls_corral_server() {
    let Some(go) = programs() else { return };
    let temp = TempRoot::new().unwrap();
    let sock = temp.path().join("corral.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let namespaces = Arc::new(TestNamespaces {
        created: Mutex::new(Vec::new()),
    });
    let mut set = ServiceSet::new();
    register_version(&mut set, Arc::new(TestVersion));
    register_namespaces(&mut set, namespaces.clone());
    let server = Server::new(set, ServerConfig::default());
    let acceptor = {
        let server = server.clone();
        std::thread::spawn(move || server.serve(&listener))
    };

    let out = Command::new(&go.client)
        .args([
            "-socket",
            &format!("unix://{}", sock.display()),
            "-namespace",
            "edge",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    server.shutdown(Duration::from_secs(2));
    acceptor.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "Go client failed:\n{stdout}\n{stderr}"
    );
    for check in ["ok a ", "ok b ", "ok c ", "ok d ", "ok e ", "ok f "] {
        assert!(stdout.contains(check), "missing {check:?} in:\n{stdout}");
    }
    let created = namespaces.created.lock().unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].name, "edge");
    assert_eq!(
        created[0].labels.get("site").map(String::as_str),
        Some("lab")
    );
}

#[test]
fn corral_client_calls_go_server() {
    let Some(go) = programs() else { return };
    let temp = TempRoot::new().unwrap();
    let sock = temp.path().join("go.sock");
    let mut server = ChildGuard::spawn(
        "go ttrpc server",
        Command::new(&go.server)
            .args(["-socket", &sock.display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .unwrap();
    let stdout = server.child_mut().stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().unwrap().unwrap();
    assert_eq!(ready, r#"{"call":"ready"}"#);
    wait_for_socket(&sock, Duration::from_secs(10)).unwrap();

    let client = Client::connect(&format!("unix://{}", sock.display())).unwrap();
    let ctx = CallContext::new()
        .with_namespace("edge")
        .with_timeout(Duration::from_secs(5));

    let v = VersionClient::new(client.clone())
        .version(&ctx, &Empty::new())
        .unwrap();
    assert_eq!(
        (v.version.as_str(), v.revision.as_str()),
        ("go-ttrpc", "1.1.1")
    );

    let mut get = GetNamespaceRequest::new();
    get.name = "nowhere".into();
    let err = NamespacesClient::new(client.clone())
        .get(&ctx, &get)
        .unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);
    assert_eq!(err.message(), "namespace \"nowhere\": not found");

    // An unregistered method of a registered service: Go says Unimplemented too.
    let err = NamespacesClient::new(client.clone())
        .delete(&ctx, &Default::default())
        .unwrap_err();
    assert_eq!(err.code(), Code::UNIMPLEMENTED);

    // Events.Forward, as a shim forwards a task exit to containerd.
    let mut exit = TaskExit::new();
    exit.container_id = "web".into();
    exit.id = "web".into();
    exit.pid = 4242;
    exit.exit_status = 137;
    let mut envelope = Envelope::new();
    envelope.namespace = "edge".into();
    envelope.topic = "/tasks/exit".into();
    let mut ts = Timestamp::new();
    ts.seconds = 1_700_000_000;
    ts.nanos = 5;
    envelope.timestamp = MessageField::some(ts);
    let mut any = protobuf::well_known_types::any::Any::new();
    any.type_url = "containerd.events.TaskExit".into();
    any.value = exit.write_to_bytes().unwrap();
    envelope.event = MessageField::some(any.clone());
    let mut fwd = ForwardRequest::new();
    fwd.envelope = MessageField::some(envelope);
    EventsClient::new(client.clone())
        .forward(&ctx, &fwd)
        .unwrap();

    let line = lines.next().unwrap().unwrap();
    let got: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(got["call"], "forward");
    assert_eq!(got["namespace"], "edge");
    assert_eq!(got["topic"], "/tasks/exit");
    assert_eq!(got["timestamp_unix_nano"], 1_700_000_000_000_000_005u64);
    assert_eq!(got["type_url"], "containerd.events.TaskExit");
    let hex: String = any.value.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got["value_hex"], hex);
    assert_eq!(got["md_namespace"], "edge");

    drop(client);
    let status = server.stop().unwrap();
    assert!(status.success(), "Go server exited with {status}");
}
