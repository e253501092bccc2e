//! The client against the server, through the generic calls and through generated services.

mod common;

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use corral_protocols::rpc::{CallContext, Client, Code, RequestContext, Server, ServiceSet};
use corral_protocols::services::events::v1::events::{Envelope, SubscribeRequest};
use corral_protocols::services::events::v1::events_rpc::{register_events, Events, EventsClient};
use corral_protocols::services::version::v1::version::VersionResponse;
use corral_protocols::services::version::v1::version_rpc::{
    register_version, Version, VersionClient,
};
use protobuf::well_known_types::empty::Empty;
use protobuf::well_known_types::wrappers::{StringValue, UInt32Value};

fn client_pair() -> (Server, Client) {
    let server = Server::new(services(), config());
    let (a, b) = UnixStream::pair().unwrap();
    server.serve_connection(a).unwrap();
    (server, Client::from_stream(b).unwrap())
}

fn ctx() -> CallContext {
    CallContext::new()
        .with_namespace("default")
        .with_timeout(Duration::from_secs(10))
}

#[test]
fn unary_calls_and_errors() {
    let (_s, c) = client_pair();
    let r: StringValue = c.unary(&ctx(), SVC, "Echo", &sv("hello")).unwrap();
    assert_eq!(r.value, "hello");
    let err = c
        .unary::<_, StringValue>(&ctx(), SVC, "Fail", &sv("web"))
        .unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);
    assert_eq!(err.to_string(), "thing \"web\": not found");
    let err = c
        .unary::<_, StringValue>(&ctx(), SVC, "Missing", &sv(""))
        .unwrap_err();
    assert_eq!(err.code(), Code::UNIMPLEMENTED);
}

#[test]
fn namespace_and_timeout_are_sent_on_unary_calls() {
    let (_s, c) = client_pair();
    let ctx = CallContext::new()
        .with_namespace("edge")
        .with_timeout(Duration::from_secs(3));
    let r: StringValue = c.unary(&ctx, SVC, "Whoami", &sv("")).unwrap();
    assert_eq!(r.value, "edge/set");
}

#[test]
fn server_streams_iterate_to_the_end() {
    let (_s, c) = client_pair();
    let mut n = UInt32Value::new();
    n.value = 100;
    let got: Vec<String> = c
        .server_stream::<_, StringValue>(&ctx(), SVC, "Count", &n)
        .unwrap()
        .map(|m| m.unwrap().value)
        .collect();
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], "99");
}

#[test]
fn batched_server_streams_arrive_whole_and_in_order_beside_other_calls() {
    let (_s, c) = client_pair();
    // Unary calls on the same connection while the batches go out: their frames may come
    // between batches but never inside one.
    let other = {
        let c = c.clone();
        std::thread::spawn(move || {
            for i in 0..200 {
                let v = format!("u{i}");
                let r: StringValue = c.unary(&ctx(), SVC, "Echo", &sv(&v)).unwrap();
                assert_eq!(r.value, v);
            }
        })
    };
    for _ in 0..5 {
        let mut n = UInt32Value::new();
        n.value = 2000; // about 430 KiB of frames: several batches
        let got: Vec<String> = c
            .server_stream::<_, StringValue>(&ctx(), SVC, "CountAll", &n)
            .unwrap()
            .map(|m| m.unwrap().value)
            .collect();
        assert_eq!(got.len(), 2000);
        for (i, v) in got.iter().enumerate() {
            assert_eq!(v, &format!("{i:0>200}"));
        }
    }
    other.join().unwrap();
    // An empty list ends the stream cleanly.
    let mut n = UInt32Value::new();
    n.value = 0;
    let mut empty = c
        .server_stream::<_, StringValue>(&ctx(), SVC, "CountAll", &n)
        .unwrap();
    assert!(empty.recv().unwrap().is_none());
}

#[test]
fn client_streams_send_then_receive_one_response() {
    let (_s, c) = client_pair();
    let w = c
        .client_stream::<StringValue, StringValue>(&ctx(), SVC, "Concat")
        .unwrap();
    for part in ["a", "b", "c"] {
        w.send(&sv(part)).unwrap();
    }
    assert_eq!(w.close_and_recv().unwrap().value, "abc");
}

#[test]
fn bidi_streams_talk_both_ways() {
    let (_s, c) = client_pair();
    let mut b = c
        .bidi::<StringValue, StringValue>(&ctx(), SVC, "Chat")
        .unwrap();
    for i in 0..10 {
        b.send(&sv(&i.to_string())).unwrap();
        assert_eq!(b.recv().unwrap().unwrap().value, format!("echo:{i}"));
    }
    b.close_send().unwrap();
    assert!(b.recv().unwrap().is_none());
    assert!(b.send(&sv("late")).is_err());
}

#[test]
fn bidi_errors_arrive_as_status() {
    let (_s, c) = client_pair();
    let mut b = c
        .bidi::<StringValue, StringValue>(&ctx(), SVC, "Chat")
        .unwrap();
    b.send(&sv("fail")).unwrap();
    let err = b.recv().unwrap_err();
    assert_eq!(err.code(), Code::FAILED_PRECONDITION);
}

#[test]
fn timeouts_give_deadline_exceeded() {
    let (_s, c) = client_pair();
    let ctx = CallContext::new().with_timeout(Duration::from_millis(100));
    let err = c
        .unary::<_, StringValue>(&ctx, SVC, "Block", &sv(""))
        .unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
}

#[test]
fn concurrent_calls_share_one_connection() {
    let (s, c) = client_pair();
    // One call blocks the whole time; the others still finish.
    let blocker = {
        let c = c.clone();
        std::thread::spawn(move || {
            let ctx = CallContext::new().with_timeout(Duration::from_millis(500));
            c.unary::<_, StringValue>(&ctx, SVC, "Block", &sv(""))
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let v = format!("{t}-{i}");
                    let r: StringValue = c.unary(&ctx(), SVC, "Echo", &sv(&v)).unwrap();
                    assert_eq!(r.value, v);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        blocker.join().unwrap().unwrap_err().code(),
        Code::DEADLINE_EXCEEDED
    );
    drop(c);
    wait_until("the connection to close", || s.connections() == 0);
}

#[test]
fn a_server_that_goes_away_fails_pending_calls_with_unavailable() {
    let server = Server::new(services(), config());
    let (a, b) = UnixStream::pair().unwrap();
    server.serve_connection(a).unwrap();
    let c = Client::from_stream(b).unwrap();
    let mut stream = c
        .server_stream::<_, StringValue>(&ctx(), SVC, "Forever", &sv(""))
        .unwrap();
    assert!(stream.recv().unwrap().is_some());
    server.shutdown(Duration::from_millis(50));
    // Drain whatever was already sent; then the stream must fail, not hang.
    let err = loop {
        match stream.recv() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended cleanly instead of failing"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err.code(), Code::UNAVAILABLE | Code::CANCELLED),
        "{err:?}"
    );
    let err = c
        .unary::<_, StringValue>(&ctx(), SVC, "Echo", &sv(""))
        .unwrap_err();
    assert_eq!(err.code(), Code::UNAVAILABLE);
}

struct TestVersion;

impl Version for TestVersion {
    fn version(
        &self,
        _ctx: &RequestContext,
        _req: Empty,
    ) -> corral_protocols::rpc::RpcResult<VersionResponse> {
        let mut v = VersionResponse::new();
        v.version = "1.2.3".into();
        v.revision = "abc".into();
        Ok(v)
    }
}

/// An events service that streams what is published, tagged with the subscriber's filters.
struct TestEvents {
    seen_namespace: Mutex<Option<String>>,
}

impl Events for TestEvents {
    fn subscribe(
        &self,
        ctx: &RequestContext,
        req: SubscribeRequest,
        out: &corral_protocols::rpc::StreamSender<Envelope>,
    ) -> corral_protocols::rpc::RpcResult<()> {
        *self.seen_namespace.lock().unwrap() = ctx.namespace().map(str::to_string);
        for (i, f) in req.filters.iter().enumerate() {
            let mut e = Envelope::new();
            e.topic = format!("/test/{i}");
            e.namespace = f.clone();
            out.send(&e)?;
        }
        Ok(())
    }
}

#[test]
fn generated_services_serve_and_call_over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("test.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let events = Arc::new(TestEvents {
        seen_namespace: Mutex::new(None),
    });
    let mut set = ServiceSet::new();
    register_version(&mut set, Arc::new(TestVersion));
    register_events(&mut set, events.clone());
    let server = Server::new(set, config());
    let srv = server.clone();
    let acceptor = std::thread::spawn(move || srv.serve(&listener));

    let client = Client::connect(&format!("unix://{}", sock.display())).unwrap();
    let v = VersionClient::new(client.clone())
        .version(&ctx(), &Empty::new())
        .unwrap();
    assert_eq!((v.version.as_str(), v.revision.as_str()), ("1.2.3", "abc"));

    let ev = EventsClient::new(client.clone());
    let mut req = SubscribeRequest::new();
    req.filters = vec!["namespace==a".into(), "namespace==b".into()];
    let got: Vec<_> = ev
        .subscribe(&CallContext::new().with_namespace("edge"), &req)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].topic, "/test/1");
    assert_eq!(got[1].namespace, "namespace==b");
    // The namespace reaches streaming handlers too.
    assert_eq!(
        events.seen_namespace.lock().unwrap().as_deref(),
        Some("edge")
    );
    // Unimplemented methods of a registered service say so.
    let err = ev.publish(&ctx(), &Default::default()).unwrap_err();
    assert_eq!(err.code(), Code::UNIMPLEMENTED);

    drop(ev);
    drop(client);
    server.shutdown(Duration::from_secs(1));
    acceptor.join().unwrap().unwrap();
    assert_eq!(server.connections(), 0);
}

#[test]
fn dropping_a_stream_midway_leaves_the_connection_usable() {
    let (s, c) = client_pair();
    let mut n = UInt32Value::new();
    n.value = 1000;
    let mut stream = c
        .server_stream::<_, StringValue>(&ctx(), SVC, "Count", &n)
        .unwrap();
    assert_eq!(stream.recv().unwrap().unwrap().value, "0");
    drop(stream);
    // Frames still arriving for the dropped stream are discarded; other calls go on.
    for i in 0..20 {
        let r: StringValue = c.unary(&ctx(), SVC, "Echo", &sv(&i.to_string())).unwrap();
        assert_eq!(r.value, i.to_string());
    }
    wait_until("the abandoned stream's handler to finish", || {
        s.in_flight() == 0
    });
}
