//! The Events, Version and Introspection services through a real ttrpc server and client.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_daemon::events::Exchange;
use corral_daemon::metadata::store::Store;
use corral_daemon::services::{self, Context};
use corral_protocols::events::namespace::NamespaceCreate;
use corral_protocols::rpc::{CallContext, Client, Code, Server, ServerConfig, ServiceSet};
use corral_protocols::services::events::v1::events::{
    Envelope, ForwardRequest, PublishRequest, SubscribeRequest,
};
use corral_protocols::services::events::v1::events_rpc::EventsClient;
use corral_protocols::services::introspection::v1::introspection::PluginsRequest;
use corral_protocols::services::introspection::v1::introspection_rpc::IntrospectionClient;
use corral_protocols::services::version::v1::version_rpc::VersionClient;
use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::empty::Empty;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{Message, MessageField};

struct Daemon {
    server: Server,
    exchange: Exchange,
    _meta: tempfile::TempDir,
}

impl Daemon {
    fn start(root: &Path) -> Daemon {
        let meta = tempfile::tempdir().unwrap();
        let ctx = Arc::new(
            Context::open(
                Store::open(meta.path().join("meta.db")).unwrap(),
                root.to_path_buf(),
                meta.path().join("state"),
            )
            .expect("context"),
        );
        let exchange = ctx.exchange.clone();
        let mut set = ServiceSet::new();
        services::register_all(&mut set, &ctx);
        let server = Server::new(
            set,
            ServerConfig {
                idle_timeout: Duration::from_millis(200),
                ..ServerConfig::default()
            },
        );
        Daemon {
            server,
            exchange,
            _meta: meta,
        }
    }

    /// A client, and a handle on its socket to cut the connection with.
    fn connect(&self) -> (Client, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        self.server.serve_connection(a).unwrap();
        let handle = b.try_clone().unwrap();
        (Client::from_stream(b).unwrap(), handle)
    }
}

fn ctx() -> CallContext {
    CallContext::new().with_timeout(Duration::from_secs(10))
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ns_create(name: &str) -> Any {
    let mut ev = NamespaceCreate::new();
    ev.name = name.to_string();
    let mut any = Any::new();
    any.type_url = "containerd.events.NamespaceCreate".into();
    any.value = ev.write_to_bytes().unwrap();
    any
}

fn publish_req(topic: &str, name: &str) -> PublishRequest {
    let mut req = PublishRequest::new();
    req.topic = topic.into();
    req.event = MessageField::some(ns_create(name));
    req
}

fn subscribe(
    client: &EventsClient,
    filters: &[&str],
) -> corral_protocols::rpc::ServerStreamReader<Envelope> {
    let mut req = SubscribeRequest::new();
    req.filters = filters.iter().map(|f| f.to_string()).collect();
    // No timeout: a subscription lasts as long as the caller wants it.
    client.subscribe(&CallContext::new(), &req).unwrap()
}

fn event_name(env: &Envelope) -> String {
    assert_eq!(env.event.type_url, "containerd.events.NamespaceCreate");
    NamespaceCreate::parse_from_bytes(&env.event.value)
        .unwrap()
        .name
}

#[test]
fn subscribe_then_publish() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(root.path());
    let (c, _h) = d.connect();
    let events = EventsClient::new(c);
    let mut stream = subscribe(&events, &[]);
    wait_until("the subscriber", || d.exchange.subscribers() == 1);

    events
        .publish(
            &ctx().with_namespace("default"),
            &publish_req("/namespaces/create", "web"),
        )
        .unwrap();
    let env = stream.recv().unwrap().unwrap();
    assert_eq!(env.namespace, "default");
    assert_eq!(env.topic, "/namespaces/create");
    assert_eq!(event_name(&env), "web");
    let ts = env.timestamp.clone().unwrap();
    let now = Timestamp::now();
    assert!(ts.seconds > 0 && (now.seconds - ts.seconds).abs() < 60);

    // Services publish through the same exchange.
    d.exchange
        .publish_any("other", "/namespaces/create", ns_create("db"))
        .unwrap();
    let env = stream.recv().unwrap().unwrap();
    assert_eq!(
        (env.namespace.as_str(), event_name(&env).as_str()),
        ("other", "db")
    );
}

#[test]
fn filters_select_topic_and_namespace() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(root.path());
    let (c, _h) = d.connect();
    let events = EventsClient::new(c);
    let mut by_topic = subscribe(&events, &[r#"topic=="/x""#]);
    let mut by_ns = subscribe(&events, &["namespace==a"]);
    let mut either = subscribe(&events, &["namespace==a", r#"topic=="/x""#]);
    wait_until("the subscribers", || d.exchange.subscribers() == 3);

    let publish = |ns: &str, topic: &str, name: &str| {
        events
            .publish(&ctx().with_namespace(ns), &publish_req(topic, name))
            .unwrap()
    };
    publish("b", "/y", "none");
    publish("a", "/y", "a-y");
    publish("b", "/x", "b-x");
    publish("a", "/x", "a-x");

    let names = |s: &mut corral_protocols::rpc::ServerStreamReader<Envelope>, n: usize| {
        (0..n)
            .map(|_| event_name(&s.recv().unwrap().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&mut by_topic, 2), ["b-x", "a-x"]);
    assert_eq!(names(&mut by_ns, 2), ["a-y", "a-x"]);
    assert_eq!(names(&mut either, 3), ["a-y", "b-x", "a-x"]);

    let mut req = SubscribeRequest::new();
    req.filters = vec!["topic==".into(), "=!".into()];
    let err = match events.subscribe(&CallContext::new(), &req) {
        Ok(mut s) => s.recv().unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
}

#[test]
fn forward_passes_the_envelope_through() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(root.path());
    let (c, _h) = d.connect();
    let events = EventsClient::new(c);
    let mut stream = subscribe(&events, &[]);
    wait_until("the subscriber", || d.exchange.subscribers() == 1);

    let mut env = Envelope::new();
    env.namespace = "shim-ns".into();
    env.topic = "/tasks/exit".into();
    let mut ts = Timestamp::new();
    ts.seconds = 1_600_000_000;
    ts.nanos = 42;
    env.timestamp = MessageField::some(ts);
    env.event = MessageField::some(ns_create("fwd"));
    let mut req = ForwardRequest::new();
    req.envelope = MessageField::some(env.clone());
    // Forward is not namespaced.
    events.forward(&ctx(), &req).unwrap();
    assert_eq!(stream.recv().unwrap().unwrap(), env);

    // Validated: no timestamp, bad namespace, bad topic.
    let mut bad = env.clone();
    bad.timestamp = MessageField::none();
    for bad in [
        bad,
        Envelope {
            namespace: "no spaces".into(),
            ..env.clone()
        },
        Envelope {
            topic: "tasks/exit".into(),
            ..env.clone()
        },
    ] {
        let mut req = ForwardRequest::new();
        req.envelope = MessageField::some(bad);
        let err = events.forward(&ctx(), &req).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
    }
}

#[test]
fn publish_needs_a_namespace_and_a_valid_topic() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(root.path());
    let (c, _h) = d.connect();
    let events = EventsClient::new(c);

    let err = events.publish(&ctx(), &publish_req("/x", "n")).unwrap_err();
    assert_eq!(err.code(), Code::FAILED_PRECONDITION, "{err}");

    for topic in ["", "x", "/", "/a//b", "/a/", "/bad topic"] {
        let err = events
            .publish(&ctx().with_namespace("default"), &publish_req(topic, "n"))
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{topic:?}: {err}");
        assert!(err.message().contains("topic"), "{err}");
    }
}

#[test]
fn a_subscriber_that_disconnects_frees_its_thread() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(root.path());
    let (c, handle) = d.connect();
    let events = EventsClient::new(c);
    let stream = subscribe(&events, &[]);
    wait_until("the subscriber", || d.exchange.subscribers() == 1);
    assert_eq!(d.server.in_flight(), 1);

    handle.shutdown(std::net::Shutdown::Both).unwrap();
    drop(stream);
    drop(events);
    wait_until("the subscription to end", || d.exchange.subscribers() == 0);
    wait_until("the call to end", || d.server.in_flight() == 0);
    wait_until("the connection to go", || d.server.connections() == 0);
    wait_until("the handler thread to exit", || {
        d.server.handler_threads() == 0
    });
}

#[test]
fn version_reports_corrals() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(root.path());
    let (c, _h) = d.connect();
    let v = VersionClient::new(c)
        .version(&ctx(), &Empty::new())
        .unwrap();
    assert_eq!(v.version, corral_protocols::version::VERSION);
    assert_eq!(v.revision, corral_protocols::version::REVISION);
}

#[test]
fn server_uuid_is_stable_across_calls_and_restarts() {
    let root = tempfile::tempdir().unwrap();
    let uuid = {
        let d = Daemon::start(root.path());
        let (c, _h) = d.connect();
        let intro = IntrospectionClient::new(c);
        let first = intro.server(&ctx(), &Empty::new()).unwrap().uuid;
        assert_eq!(first.len(), 36, "{first}");
        assert_eq!(first.matches('-').count(), 4, "{first}");
        assert_eq!(intro.server(&ctx(), &Empty::new()).unwrap().uuid, first);
        d.server.shutdown(Duration::from_secs(1));
        first
    };
    let file = root
        .path()
        .join("io.containerd.service.v1.introspection-service/uuid");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), uuid);

    let d = Daemon::start(root.path());
    let (c, _h) = d.connect();
    let again = IntrospectionClient::new(c)
        .server(&ctx(), &Empty::new())
        .unwrap()
        .uuid;
    assert_eq!(again, uuid);

    // Another root, another server.
    let other = tempfile::tempdir().unwrap();
    let d = Daemon::start(other.path());
    let (c, _h) = d.connect();
    let third = IntrospectionClient::new(c)
        .server(&ctx(), &Empty::new())
        .unwrap()
        .uuid;
    assert_ne!(third, uuid);
}

#[test]
fn plugins_lists_what_is_served_and_filters() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(root.path());
    let (c, _h) = d.connect();
    let intro = IntrospectionClient::new(c);
    let list = |filters: &[&str]| {
        let mut req = PluginsRequest::new();
        req.filters = filters.iter().map(|f| f.to_string()).collect();
        let mut ids: Vec<String> = intro
            .plugins(&ctx(), &req)
            .unwrap()
            .plugins
            .into_iter()
            .map(|p| format!("{}.{}", p.type_, p.id))
            .collect();
        ids.sort();
        ids
    };

    let all = list(&[]);
    for want in [
        "io.containerd.event.v1.exchange",
        "io.containerd.metadata.v1.bolt",
        "io.containerd.grpc.v1.containers",
        "io.containerd.grpc.v1.events",
        "io.containerd.grpc.v1.introspection",
        "io.containerd.grpc.v1.leases",
        "io.containerd.grpc.v1.namespaces",
        "io.containerd.grpc.v1.version",
    ] {
        assert!(
            all.contains(&want.to_string()),
            "{want} missing from {all:?}"
        );
    }

    // Every gRPC plugin listed is a service the server answers.
    let methods: Vec<String> = d.server.methods().into_iter().map(|(m, _)| m).collect();
    for p in all
        .iter()
        .filter_map(|p| p.strip_prefix("io.containerd.grpc.v1."))
    {
        let svc = match p {
            "namespaces" => "/containerd.services.namespaces.v1.Namespaces/".to_string(),
            other => {
                let mut cap = other.to_string();
                cap[..1].make_ascii_uppercase();
                format!("/containerd.services.{other}.v1.{cap}/")
            }
        };
        assert!(
            methods.iter().any(|m| m.starts_with(&svc)),
            "{p} listed but {svc} not served"
        );
    }

    assert_eq!(
        // Separate filters: any of them.
        list(&["id==events", "id==bolt"]),
        [
            "io.containerd.grpc.v1.events",
            "io.containerd.metadata.v1.bolt"
        ]
        .map(String::from)
    );
    assert_eq!(
        // Comma-joined: all of them.
        list(&["type==io.containerd.grpc.v1,id==version"]),
        ["io.containerd.grpc.v1.version"].map(String::from)
    );
    let grpc = list(&["type==io.containerd.grpc.v1"]);
    assert!(grpc.len() >= 6 && grpc.iter().all(|p| p.starts_with("io.containerd.grpc.v1.")));
    assert!(list(&["id==nope"]).is_empty());

    let mut req = PluginsRequest::new();
    req.filters = vec!["id==".into(), "=!".into()];
    let err = intro.plugins(&ctx(), &req).unwrap_err();
    assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
}
