//! The server, frame by frame, against ttrpc's protocol rules (including the streaming
//! extension of ttrpc 1.2): what goes in on the wire and what must come back.

mod common;

use std::time::Duration;

use common::*;
use corral_protocols::rpc::frame::{
    FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, MAX_BODY, TYPE_DATA, TYPE_REQUEST,
    TYPE_RESPONSE,
};
use corral_protocols::rpc::{Code, ServerConfig};
use protobuf::well_known_types::wrappers::UInt32Value;

#[test]
fn unary_request_gets_one_response_without_status() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, 0, "Echo", &enc(&sv("hi")));
    let (status, payload) = raw.response(1);
    assert!(status.is_none());
    assert_eq!(dec_sv(&payload), "hi");
}

#[test]
fn handler_errors_carry_their_code_and_message() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, 0, "Fail", &enc(&sv("x")));
    let (status, payload) = raw.response(1);
    let status = status.unwrap();
    assert_eq!(status.code(), Code::NOT_FOUND);
    assert_eq!(status.message(), "thing \"x\": not found");
    assert!(payload.is_empty());
}

#[test]
fn server_stream_sends_data_frames_then_a_closing_empty_frame() {
    let (_server, mut raw) = raw_pair(config());
    let mut n = UInt32Value::new();
    n.value = 3;
    raw.request(1, FLAG_REMOTE_CLOSED, "Count", &enc(&n));
    for i in 0..3 {
        let f = raw.recv();
        assert_eq!((f.stream_id, f.kind, f.flags), (1, TYPE_DATA, 0));
        assert_eq!(dec_sv(&f.body), i.to_string());
    }
    let end = raw.recv();
    assert_eq!(
        (end.stream_id, end.kind, end.flags),
        (1, TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA)
    );
    assert!(end.body.is_empty());
}

#[test]
fn server_stream_with_absent_payload_gets_an_empty_request() {
    // Go's NewStream leaves the payload out for an all-default message.
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, FLAG_REMOTE_CLOSED, "Count", &[]);
    let end = raw.recv();
    assert_eq!(
        (end.kind, end.flags),
        (TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA)
    );
}

#[test]
fn client_stream_collects_data_frames_until_close() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, FLAG_REMOTE_OPEN, "Concat", &[]);
    raw.send(1, TYPE_DATA, 0, &enc(&sv("a")));
    raw.send(1, TYPE_DATA, 0, &enc(&sv("b")));
    // A zero-length data frame without NO_DATA is a valid, all-default message.
    raw.send(1, TYPE_DATA, 0, &[]);
    raw.send(1, TYPE_DATA, 0, &enc(&sv("c")));
    raw.send(1, TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, &[]);
    let (status, payload) = raw.response(1);
    assert!(status.is_none(), "{status:?}");
    assert_eq!(dec_sv(&payload), "abc");
}

#[test]
fn client_stream_takes_a_first_message_from_the_request() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, FLAG_REMOTE_OPEN, "Concat", &enc(&sv("first-")));
    raw.send(1, TYPE_DATA, 0, &enc(&sv("second")));
    raw.send(1, TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, &[]);
    assert_eq!(dec_sv(&raw.response(1).1), "first-second");
}

#[test]
fn bidi_streams_both_ways_and_each_side_closes() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, FLAG_REMOTE_OPEN, "Chat", &[]);
    for word in ["x", "y"] {
        raw.send(1, TYPE_DATA, 0, &enc(&sv(word)));
        let f = raw.recv();
        assert_eq!((f.stream_id, f.kind, f.flags), (1, TYPE_DATA, 0));
        assert_eq!(dec_sv(&f.body), format!("echo:{word}"));
    }
    raw.send(1, TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, &[]);
    let end = raw.recv();
    assert_eq!(
        (end.kind, end.flags),
        (TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA)
    );
}

#[test]
fn a_failing_stream_ends_with_a_response_carrying_the_status() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, FLAG_REMOTE_OPEN, "Chat", &[]);
    raw.send(1, TYPE_DATA, 0, &enc(&sv("fail")));
    let (status, _) = raw.response(1);
    assert_eq!(status.unwrap().code(), Code::FAILED_PRECONDITION);
}

#[test]
fn interleaved_streams_on_one_connection() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, FLAG_REMOTE_OPEN, "Concat", &[]);
    raw.request(3, FLAG_REMOTE_OPEN, "Concat", &[]);
    raw.send(3, TYPE_DATA, 0, &enc(&sv("3a")));
    raw.send(1, TYPE_DATA, 0, &enc(&sv("1a")));
    raw.send(3, TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, &[]);
    raw.send(1, TYPE_DATA, 0, &enc(&sv("1b")));
    let (_, p3) = raw.response(3);
    assert_eq!(dec_sv(&p3), "3a");
    raw.send(1, TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, &[]);
    assert_eq!(dec_sv(&raw.response(1).1), "1a1b");
}

#[test]
fn a_blocked_call_does_not_starve_another_on_the_same_connection() {
    let (server, mut raw) = raw_pair(config());
    raw.request(1, 0, "Block", &enc(&sv("")));
    raw.request(3, 0, "Echo", &enc(&sv("still here")));
    let (status, payload) = raw.response(3);
    assert!(status.is_none());
    assert_eq!(dec_sv(&payload), "still here");
    // The echo's bookkeeping ends just after its answer; the blocked call stays.
    wait_until("only the blocked call in flight", || {
        server.in_flight() == 1
    });
}

#[test]
fn a_deadline_cancels_a_blocked_call() {
    let (_server, mut raw) = raw_pair(config());
    let timeout = Duration::from_millis(50).as_nanos() as i64;
    raw.request_with(1, 0, SVC, "Block", &[], &[], timeout);
    let (status, _) = raw.response(1);
    assert_eq!(status.unwrap().code(), Code::DEADLINE_EXCEEDED);
}

#[test]
fn hang_up_cancels_calls_and_streams_and_frees_their_threads() {
    let (server, mut raw) = raw_pair(config());
    raw.request(1, 0, "Block", &[]);
    raw.request(3, FLAG_REMOTE_CLOSED, "Forever", &[]);
    raw.request(5, FLAG_REMOTE_OPEN, "Concat", &[]);
    raw.send(5, TYPE_DATA, 0, &enc(&sv("half")));
    let f = raw.recv();
    assert_eq!((f.stream_id, f.kind), (3, TYPE_DATA));
    wait_until("three calls in flight", || server.in_flight() == 3);
    drop(raw);
    wait_until("calls to end", || server.in_flight() == 0);
    wait_until("the connection to go", || server.connections() == 0);
    wait_until("idle handler threads to exit", || {
        server.handler_threads() == 0
    });
}

#[test]
fn stream_ids_must_be_odd_and_increasing() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(2, 0, "Echo", &enc(&sv("even")));
    let (status, _) = raw.response(2);
    let status = status.unwrap();
    assert_eq!(status.code(), Code::INVALID_ARGUMENT);
    assert!(status.message().contains("odd"), "{status}");

    raw.request(5, 0, "Echo", &enc(&sv("five")));
    assert!(raw.response(5).0.is_none());
    raw.request(3, 0, "Echo", &enc(&sv("three")));
    let (status, _) = raw.response(3);
    assert!(status.unwrap().message().contains("must increment"));
    raw.request(5, 0, "Echo", &enc(&sv("again")));
    assert_eq!(raw.response(5).0.unwrap().code(), Code::INVALID_ARGUMENT);
}

#[test]
fn unknown_services_and_methods_are_unimplemented() {
    let (_server, mut raw) = raw_pair(config());
    raw.request_with(1, 0, "no.such.Service", "X", &[], &[], 0);
    let (status, _) = raw.response(1);
    let status = status.unwrap();
    assert_eq!(status.code(), Code::UNIMPLEMENTED);
    assert_eq!(status.message(), "service no.such.Service");
    raw.request(3, 0, "Nope", &[]);
    let (status, _) = raw.response(3);
    assert_eq!(status.unwrap().message(), "method Nope");
}

#[test]
fn data_for_an_unknown_or_finished_stream_is_refused() {
    let (_server, mut raw) = raw_pair(config());
    raw.send(7, TYPE_DATA, 0, &enc(&sv("lost")));
    let (status, _) = raw.response(7);
    assert!(status.unwrap().message().contains("no longer active"));
    raw.request(9, 0, "Echo", &enc(&sv("done")));
    raw.response(9);
    raw.send(9, TYPE_DATA, 0, &enc(&sv("late")));
    assert_eq!(raw.response(9).0.unwrap().code(), Code::INVALID_ARGUMENT);
}

#[test]
fn a_close_frame_with_data_fails_the_stream_once() {
    let (_server, mut raw) = raw_pair(config());
    raw.request(1, FLAG_REMOTE_OPEN, "Concat", &[]);
    raw.send(1, TYPE_DATA, FLAG_REMOTE_CLOSED, &enc(&sv("sneaky")));
    let (status, _) = raw.response(1);
    let status = status.unwrap();
    assert_eq!(status.code(), Code::INVALID_ARGUMENT);
    assert!(status.message().contains("cannot include data"));
    // The connection still works.
    raw.request(3, 0, "Echo", &enc(&sv("ok")));
    assert!(raw.response(3).0.is_none());
}

#[test]
fn oversized_frames_are_skipped_and_answered_and_the_connection_stays() {
    let (_server, mut raw) = raw_pair(config());
    let len = (MAX_BODY + 1) as u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&[TYPE_REQUEST, 0]);
    bytes.resize(bytes.len() + len as usize, 0x5a);
    let writer = raw.0.try_clone().unwrap();
    let h = std::thread::spawn(move || {
        let mut w = writer;
        std::io::Write::write_all(&mut w, &bytes).unwrap();
    });
    let (status, _) = raw.response(1);
    h.join().unwrap();
    let status = status.unwrap();
    assert_eq!(status.code(), Code::RESOURCE_EXHAUSTED);
    assert!(status.message().contains("4194304"), "{status}");
    raw.request(3, 0, "Echo", &enc(&sv("after")));
    assert_eq!(dec_sv(&raw.response(3).1), "after");
}

#[test]
fn garbage_payloads_get_invalid_argument_and_the_connection_stays() {
    let (_server, mut raw) = raw_pair(config());
    // Not a ttrpc Request at all.
    raw.send(1, TYPE_REQUEST, 0, &[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let (status, _) = raw.response(1);
    let status = status.unwrap();
    assert_eq!(status.code(), Code::INVALID_ARGUMENT);
    assert!(status.message().contains("unmarshal request"), "{status}");
    // A valid request whose payload is not the method's message.
    raw.request(3, 0, "Echo", &[0x0a, 0x05, b'a']);
    let (status, _) = raw.response(3);
    assert_eq!(status.unwrap().code(), Code::INVALID_ARGUMENT);
    // A stream message that does not decode fails that stream only.
    raw.request(5, FLAG_REMOTE_OPEN, "Concat", &[]);
    raw.send(5, TYPE_DATA, 0, &[0x0a, 0x09]);
    assert_eq!(raw.response(5).0.unwrap().code(), Code::INVALID_ARGUMENT);
    // Frames of unknown types are ignored.
    raw.send(7, 0x7f, 0, b"future");
    raw.request(9, 0, "Echo", &enc(&sv("alive")));
    assert_eq!(dec_sv(&raw.response(9).1), "alive");
}

#[test]
fn random_bytes_never_take_the_server_down() {
    let server = corral_protocols::rpc::Server::new(services(), config());
    // A fixed pseudo-random sequence, so a failure reproduces.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..50 {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        server.serve_connection(a).unwrap();
        let mut junk = vec![0u8; 512];
        for byte in junk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        // Keep lengths small so the server does not wait for a body that never comes.
        junk[0] = 0;
        junk[1] = 0;
        let _ = std::io::Write::write_all(&mut b, &junk);
        drop(b);
    }
    wait_until("junk connections to close", || server.connections() == 0);
    wait_until("their calls to end", || server.in_flight() == 0);
    let (_s, mut raw) = raw_pair(config());
    raw.request(1, 0, "Echo", &enc(&sv("fine")));
    assert_eq!(dec_sv(&raw.response(1).1), "fine");
}

#[test]
fn calls_beyond_the_in_flight_cap_get_resource_exhausted() {
    let (server, mut raw) = raw_pair(ServerConfig {
        max_in_flight: 1,
        ..config()
    });
    raw.request(1, 0, "Block", &[]);
    wait_until("the blocked call", || server.in_flight() == 1);
    raw.request(3, 0, "Echo", &enc(&sv("x")));
    let (status, _) = raw.response(3);
    assert_eq!(status.unwrap().code(), Code::RESOURCE_EXHAUSTED);
}

#[test]
fn metadata_and_deadline_reach_the_handler() {
    let (_server, mut raw) = raw_pair(config());
    raw.request_with(
        1,
        0,
        SVC,
        "Whoami",
        &[],
        &[("containerd-namespace-ttrpc", "edge")],
        5_000_000_000,
    );
    assert_eq!(dec_sv(&raw.response(1).1), "edge/set");
    raw.request_with(3, 0, SVC, "Whoami", &[], &[], 0);
    let (status, _) = raw.response(3);
    let status = status.unwrap();
    assert_eq!(status.code(), Code::FAILED_PRECONDITION);
    assert_eq!(
        status.message(),
        "namespace is required: failed precondition"
    );
    let _ = TYPE_RESPONSE;
}

#[test]
fn shutdown_finishes_in_flight_calls_and_closes_connections() {
    let (server, mut raw) = raw_pair(config());
    raw.request(1, FLAG_REMOTE_CLOSED, "Forever", &[]);
    let f = raw.recv();
    assert_eq!(f.stream_id, 1);
    // A stream that never ends on its own holds shutdown for the grace period, then is
    // cancelled with its connection.
    server.shutdown(Duration::from_millis(200));
    wait_until("calls to end", || server.in_flight() == 0);
    wait_until("connections to close", || server.connections() == 0);
}
