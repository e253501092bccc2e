//! A ttrpc server on plain threads: one reader thread per connection, and every call on a
//! handler thread of its own (from an idle pool or new), so a call that blocks (`Wait`, a
//! subscription, a stream) never holds up another on the same connection.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use protobuf::Message;

use super::context::{CancelToken, Metadata, RequestContext};
use super::frame::{
    self, read_frame, FrameError, FLAG_NO_DATA, FLAG_REMOTE_CLOSED, MAX_BODY, TYPE_DATA,
    TYPE_REQUEST, TYPE_RESPONSE,
};
use super::pool::Pool;
use super::queue::{PushError, Queue};
use super::service::{Handler, ServiceSet};
use super::socket::peer_is_same_user;
use super::status::{RpcResult, Status};
use super::stream::{RawReceiver, RawSender};

/// Inbound queues of the client and bidi streams open on one connection, by stream id.
type StreamTable = Mutex<HashMap<u32, Arc<Queue<Vec<u8>>>>>;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Calls in flight at once, over all connections; beyond it calls get `ResourceExhausted`.
    pub max_in_flight: usize,
    /// How long a handler thread waits for work before it exits.
    pub idle_timeout: Duration,
    /// Stack size of handler threads.
    pub handler_stack_size: usize,
    /// Stack size of connection reader threads.
    pub reader_stack_size: usize,
    /// Messages buffered per client stream before the reader waits for the handler.
    pub stream_buffer: usize,
    /// How long the reader waits for room in a full stream buffer before failing that stream.
    pub stream_full_timeout: Duration,
    /// How long one write to a peer may block before the connection is dropped.
    pub write_timeout: Duration,
    /// Accept only peers whose uid and gid equal this process's (the shim's rule).
    pub require_same_user: bool,
    /// A name for the threads, shown by `ps -T`.
    pub thread_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            idle_timeout: Duration::from_secs(5),
            handler_stack_size: 256 * 1024,
            reader_stack_size: 64 * 1024,
            stream_buffer: 64,
            stream_full_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(60),
            require_same_user: false,
            thread_name: "ttrpc".into(),
        }
    }
}

/// One connection as handlers see it: a locked writer and the cancel switch that fires when
/// the connection goes away.
pub(crate) struct Conn {
    writer: Mutex<UnixStream>,
    cancel: CancelToken,
}

impl Conn {
    /// Writes one frame whole; frames from different handlers never interleave.
    pub(crate) fn send(&self, stream_id: u32, kind: u8, flags: u8, body: &[u8]) -> io::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection closed",
            ));
        }
        let buf = frame::encode_frame(stream_id, kind, flags, body)?;
        self.send_encoded(&buf)
    }

    /// Writes already encoded whole frames in one go.
    pub(crate) fn send_encoded(&self, buf: &[u8]) -> io::Result<()> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection closed",
            ));
        }
        let mut w = self
            .writer
            .lock()
            .map_err(|_| io::Error::other("connection writer poisoned"))?;
        let result = io::Write::write_all(&mut *w, buf);
        if result.is_err() {
            // A peer that stops reading or vanished: drop the connection so the reader and
            // every handler on it wind down.
            let _ = w.shutdown(std::net::Shutdown::Both);
            self.cancel.cancel();
        }
        result
    }

    pub(crate) fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    fn respond(&self, stream_id: u32, result: RpcResult<Vec<u8>>) {
        let mut resp = ttrpc::proto::Response::new();
        match result {
            Ok(payload) => resp.payload = payload,
            Err(status) => resp.status = protobuf::MessageField::some(status.to_proto()),
        }
        let body = match resp.write_to_bytes() {
            Ok(b) if b.len() <= MAX_BODY => b,
            Ok(b) => {
                let status = Status::resource_exhausted(format!(
                    "response of {} bytes exceeds the maximum message size of {MAX_BODY}",
                    b.len()
                ));
                let mut resp = ttrpc::proto::Response::new();
                resp.status = protobuf::MessageField::some(status.to_proto());
                resp.write_to_bytes().unwrap_or_default()
            }
            Err(e) => {
                log::error!("encoding a response on stream {stream_id}: {e}");
                return;
            }
        };
        if let Err(e) = self.send(stream_id, TYPE_RESPONSE, 0, &body) {
            log::debug!("answering stream {stream_id}: {e}");
        }
    }

    /// Ends a server stream: a closing data frame when it went well, a response otherwise.
    fn finish_stream(&self, stream_id: u32, result: RpcResult<()>) {
        match result {
            Ok(()) => {
                if let Err(e) =
                    self.send(stream_id, TYPE_DATA, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, &[])
                {
                    log::debug!("closing stream {stream_id}: {e}");
                }
            }
            Err(status) => self.respond(stream_id, Err(status)),
        }
    }
}

struct Shared {
    services: ServiceSet,
    config: ServerConfig,
    pool: Pool,
    in_flight: AtomicUsize,
    stopping: AtomicBool,
    listener_fd: Mutex<Option<RawFd>>,
    conns: Mutex<HashMap<u64, (UnixStream, CancelToken)>>,
    next_conn: AtomicU64,
    drained: Mutex<()>,
    drained_cv: Condvar,
}

/// A ttrpc server for a set of services.
#[derive(Clone)]
pub struct Server(Arc<Shared>);

impl Server {
    /// A server for `services`.
    pub fn new(services: ServiceSet, config: ServerConfig) -> Self {
        let pool = Pool::new(
            &config.thread_name,
            config.idle_timeout,
            config.handler_stack_size,
        );
        Server(Arc::new(Shared {
            services,
            config,
            pool,
            in_flight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            listener_fd: Mutex::new(None),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            drained: Mutex::new(()),
            drained_cv: Condvar::new(),
        }))
    }

    /// Accepts connections on `listener` until [`shutdown`](Self::shutdown). Runs on the
    /// calling thread.
    pub fn serve(&self, listener: &UnixListener) -> io::Result<()> {
        if let Ok(mut fd) = self.0.listener_fd.lock() {
            *fd = Some(listener.as_raw_fd());
        }
        loop {
            if self.0.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    if self.0.stopping.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    if let Err(e) = self.serve_connection(stream) {
                        log::warn!("ttrpc: not serving a connection: {e}");
                    }
                }
                Err(_) if self.0.stopping.load(Ordering::SeqCst) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_transient_accept_error(&e) => {
                    // Out of file descriptors or memory: back off instead of spinning.
                    log::warn!("ttrpc: accept: {e}");
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Serves one already-connected stream on a reader thread of its own.
    pub fn serve_connection(&self, stream: UnixStream) -> io::Result<()> {
        if self.0.config.require_same_user && !peer_is_same_user(&stream)? {
            log::warn!("ttrpc: refused a peer with another uid or gid");
            return Ok(());
        }
        stream.set_write_timeout(Some(self.0.config.write_timeout))?;
        let writer = stream.try_clone()?;
        let handle = stream.try_clone()?;
        let id = self.0.next_conn.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            writer: Mutex::new(writer),
            cancel: CancelToken::default(),
        });
        if let Ok(mut conns) = self.0.conns.lock() {
            conns.insert(id, (handle, conn.cancel.clone()));
        }
        let shared = Arc::clone(&self.0);
        let spawned = thread::Builder::new()
            .name(format!("{}-conn", self.0.config.thread_name))
            .stack_size(self.0.config.reader_stack_size)
            .spawn(move || {
                read_loop(&shared, stream, &conn);
                conn.cancel.cancel();
                if let Ok(mut conns) = shared.conns.lock() {
                    conns.remove(&id);
                }
                shared.drained_cv.notify_all();
            });
        if let Err(e) = spawned {
            if let Ok(mut conns) = self.0.conns.lock() {
                conns.remove(&id);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Stops accepting, waits up to `grace` for calls in flight to finish, then closes every
    /// connection (cancelling what still runs) and waits up to `grace` again for them to go.
    pub fn shutdown(&self, grace: Duration) {
        self.0.stopping.store(true, Ordering::SeqCst);
        if let Ok(fd) = self.0.listener_fd.lock() {
            if let Some(fd) = *fd {
                // Wakes a thread blocked in accept(); the caller still owns (and closes) the
                // listener.
                let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
            }
        }
        let deadline = Instant::now() + grace;
        self.wait_until(deadline, |s| s.in_flight.load(Ordering::SeqCst) == 0);
        if let Ok(conns) = self.0.conns.lock() {
            for (stream, cancel) in conns.values() {
                cancel.cancel();
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        let deadline = Instant::now() + grace;
        self.wait_until(deadline, |s| {
            s.conns.lock().map(|c| c.is_empty()).unwrap_or(true)
                && s.in_flight.load(Ordering::SeqCst) == 0
        });
    }

    fn wait_until(&self, deadline: Instant, done: impl Fn(&Shared) -> bool) {
        let Ok(mut guard) = self.0.drained.lock() else {
            return;
        };
        while !done(&self.0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            guard = match self
                .0
                .drained_cv
                .wait_timeout(guard, left.min(Duration::from_millis(100)))
            {
                Ok((g, _)) => g,
                Err(_) => return,
            };
        }
    }

    /// Calls being handled now.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.0.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Handler threads alive (busy or idle).
    pub fn handler_threads(&self) -> usize {
        self.0.pool.threads()
    }

    /// Every registered `/service/method` path.
    pub fn methods(&self) -> Vec<(String, super::MethodKind)> {
        self.0.services.methods()
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    )
}

/// Counts a call in flight until dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.drained_cv.notify_all();
    }
}

fn read_loop(shared: &Arc<Shared>, mut stream: UnixStream, conn: &Arc<Conn>) {
    let streams: Arc<StreamTable> = Arc::default();
    let mut last_id = 0u32;
    loop {
        let frame = match read_frame(&mut stream) {
            Ok(f) => f,
            Err(FrameError::Oversized {
                stream_id, length, ..
            }) => {
                conn.respond(
                    stream_id,
                    Err(Status::resource_exhausted(format!(
                        "message length {length} exceeds the maximum message size of {MAX_BODY}"
                    ))),
                );
                continue;
            }
            Err(FrameError::Closed) => break,
            Err(FrameError::Io(e)) => {
                log::debug!("ttrpc: connection ended: {e}");
                break;
            }
        };
        if frame.stream_id % 2 != 1 {
            conn.respond(
                frame.stream_id,
                Err(Status::invalid_argument(
                    "StreamID must be odd for client initiated streams",
                )),
            );
            continue;
        }
        match frame.kind {
            TYPE_REQUEST => {
                if frame.stream_id <= last_id {
                    conn.respond(
                        frame.stream_id,
                        Err(Status::invalid_argument(
                            "StreamID cannot be re-used and must increment",
                        )),
                    );
                    continue;
                }
                last_id = frame.stream_id;
                if let Err(status) = start_call(
                    shared,
                    conn,
                    &streams,
                    frame.stream_id,
                    frame.flags,
                    &frame.body,
                ) {
                    conn.respond(frame.stream_id, Err(status));
                }
            }
            TYPE_DATA => {
                let queue = streams
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&frame.stream_id).cloned());
                let Some(queue) = queue else {
                    conn.respond(
                        frame.stream_id,
                        Err(Status::invalid_argument("StreamID is no longer active")),
                    );
                    continue;
                };
                let closing = frame.flags & FLAG_REMOTE_CLOSED != 0;
                if closing && !frame.body.is_empty() {
                    // Fails the stream through its handler, so the client gets one answer.
                    queue.close(Some(Status::invalid_argument(
                        "data close message cannot include data",
                    )));
                    continue;
                }
                if frame.flags & FLAG_NO_DATA == 0 {
                    match queue.push(frame.body, shared.config.stream_full_timeout) {
                        Ok(()) | Err(PushError::Closed) => {}
                        Err(PushError::Full) => queue.close(Some(Status::resource_exhausted(
                            "stream receive buffer is full: the handler does not keep up",
                        ))),
                    }
                }
                if closing {
                    queue.close(None);
                }
            }
            other => log::debug!("ttrpc: ignoring a frame of type {other:#x}"),
        }
    }
    // The peer is gone: fail every stream still reading from it.
    if let Ok(open) = streams.lock() {
        for queue in open.values() {
            queue.close(Some(Status::cancelled("connection closed")));
        }
    };
}

fn start_call(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    streams: &Arc<StreamTable>,
    stream_id: u32,
    flags: u8,
    body: &[u8],
) -> RpcResult<()> {
    let req = ttrpc::proto::Request::parse_from_bytes(body)
        .map_err(|e| Status::invalid_argument(format!("unmarshal request error: {e}")))?;
    let handler = shared.services.lookup(&req.service, &req.method)?;
    if shared.stopping.load(Ordering::SeqCst) {
        return Err(Status::unavailable("server is shutting down"));
    }
    if shared.in_flight.fetch_add(1, Ordering::SeqCst) >= shared.config.max_in_flight {
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        return Err(Status::resource_exhausted(format!(
            "too many calls in flight (limit {})",
            shared.config.max_in_flight
        )));
    }
    let guard = InFlight(Arc::clone(shared));
    let path = format!("/{}/{}", req.service, req.method);
    let timeout = (req.timeout_nano > 0).then(|| Duration::from_nanos(req.timeout_nano as u64));
    let ctx = RequestContext::new(
        path.clone(),
        Metadata::from_pairs(&req.metadata),
        timeout,
        conn.cancel.clone(),
    );
    let conn2 = Arc::clone(conn);
    let payload = req.payload;
    let job: Box<dyn FnOnce() + Send> = match &*handler {
        Handler::Unary(_) => Box::new(move || {
            let _guard = guard;
            let Handler::Unary(f) = &*handler else { return };
            let result = guarded(&path, || f(&ctx, &payload));
            conn2.respond(stream_id, result);
        }),
        Handler::ServerStream(_) => Box::new(move || {
            let _guard = guard;
            let Handler::ServerStream(f) = &*handler else {
                return;
            };
            let sender = RawSender {
                conn: Arc::clone(&conn2),
                stream_id,
            };
            let result = guarded(&path, || f(&ctx, &payload, &sender));
            conn2.finish_stream(stream_id, result);
        }),
        Handler::ClientStream(_) | Handler::Bidi(_) => {
            let queue = Arc::new(Queue::new(shared.config.stream_buffer));
            // A message in the request itself is the stream's first (Go ttrpc does the same).
            if !payload.is_empty() {
                let _ = queue.push(payload, Duration::ZERO);
            }
            if flags & FLAG_REMOTE_CLOSED != 0 {
                queue.close(None);
            }
            if let Ok(mut open) = streams.lock() {
                open.insert(stream_id, Arc::clone(&queue));
            }
            let streams = Arc::clone(streams);
            Box::new(move || {
                let _guard = guard;
                let mut receiver = RawReceiver {
                    queue: Arc::clone(&queue),
                    deadline: ctx.deadline(),
                    path: path.clone(),
                };
                match &*handler {
                    Handler::ClientStream(f) => {
                        let result = guarded(&path, || f(&ctx, &mut receiver));
                        unregister(&streams, stream_id, &queue);
                        conn2.respond(stream_id, result);
                    }
                    Handler::Bidi(f) => {
                        let sender = RawSender {
                            conn: Arc::clone(&conn2),
                            stream_id,
                        };
                        let result = guarded(&path, || f(&ctx, &mut receiver, &sender));
                        unregister(&streams, stream_id, &queue);
                        conn2.finish_stream(stream_id, result);
                    }
                    _ => {}
                }
            })
        }
    };
    shared
        .pool
        .execute(job)
        .map_err(|e| Status::resource_exhausted(format!("no thread for the call: {e}")))
}

fn unregister(streams: &StreamTable, id: u32, queue: &Queue<Vec<u8>>) {
    queue.abandon();
    if let Ok(mut open) = streams.lock() {
        open.remove(&id);
    }
}

/// Runs a handler; a panic (in builds that unwind) becomes `Internal` instead of a lost call.
fn guarded<T>(path: &str, f: impl FnOnce() -> RpcResult<T>) -> RpcResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error!("ttrpc: handler of {path} panicked");
        Err(Status::internal(format!("{path}: handler failed")))
    })
}
