//! A ttrpc client on plain threads: calls from any thread share one connection, a reader
//! thread hands each frame to the call it belongs to, and every call sends its metadata
//! (namespace, lease), streams included.

use std::collections::HashMap;
use std::io;
use std::marker::PhantomData;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use protobuf::Message;

use super::context::CallContext;
use super::frame::{
    self, read_frame, FrameError, FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, TYPE_DATA,
    TYPE_REQUEST, TYPE_RESPONSE,
};
use super::queue::{Pop, PushError, Queue};
use super::socket::Address;
use super::status::{RpcResult, Status};

/// Frames buffered per call before the reader waits for the caller.
const CALL_BUFFER: usize = 64;
/// How long the reader waits for a caller that does not read its stream.
const SLOW_READER_TIMEOUT: Duration = Duration::from_secs(60);

/// A frame for one call.
#[derive(Debug)]
enum Inbound {
    Data { flags: u8, body: Vec<u8> },
    Response(Vec<u8>),
}

struct Writer {
    stream: UnixStream,
    next_id: u32,
}

struct Inner {
    writer: Mutex<Writer>,
    pending: Mutex<HashMap<u32, Arc<Queue<Inbound>>>>,
    closed: AtomicBool,
    control: UnixStream,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the reader thread once the last handle is gone.
        let _ = self.control.shutdown(std::net::Shutdown::Both);
    }
}

/// What runs when a client's connection ends.
pub type OnClose = Box<dyn FnOnce() + Send + 'static>;

/// A connection to a ttrpc server, shared by clones.
#[derive(Clone)]
pub struct Client(Arc<Inner>);

impl Client {
    /// Connects to `addr` (`unix:///path`, `unix://@name` or a bare path).
    pub fn connect(addr: &str) -> io::Result<Self> {
        Self::from_stream(Address::parse(addr)?.connect()?)
    }

    /// Speaks ttrpc over an already-connected stream.
    pub fn from_stream(stream: UnixStream) -> io::Result<Self> {
        Self::with_on_close(stream, None)
    }

    /// [`from_stream`](Self::from_stream) with a hook that runs once on the reader thread when
    /// the connection ends, whatever ended it: the peer went away, a read failed, or every
    /// handle was dropped or [`close`](Self::close)d (Go ttrpc's `WithOnClose`).
    pub fn with_on_close(stream: UnixStream, on_close: Option<OnClose>) -> io::Result<Self> {
        let reader = stream.try_clone()?;
        let control = stream.try_clone()?;
        let inner = Arc::new(Inner {
            writer: Mutex::new(Writer { stream, next_id: 1 }),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            control,
        });
        // The reader holds no strong reference, so dropping every Client ends it.
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("ttrpc-client".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                read_loop(reader, weak);
                if let Some(hook) = on_close {
                    hook();
                }
            })?;
        Ok(Client(inner))
    }

    /// Ends the connection: calls in flight fail with `Unavailable`, later ones at once, and
    /// the on-close hook runs.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        let _ = self.0.control.shutdown(std::net::Shutdown::Both);
    }

    /// Whether the connection is known to be gone.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }

    /// Opens a stream: registers it, then writes its request frame under the writer lock, so
    /// that stream ids reach the server in increasing order.
    fn open(
        &self,
        ctx: &CallContext,
        service: &str,
        method: &str,
        payload: Vec<u8>,
        flags: u8,
    ) -> RpcResult<Call> {
        if self.is_closed() {
            return Err(closed_status());
        }
        let mut req = ttrpc::proto::Request::new();
        req.service = service.to_string();
        req.method = method.to_string();
        req.payload = payload;
        req.metadata = ctx.metadata().to_pairs();
        if let Some(t) = ctx.timeout() {
            req.timeout_nano = i64::try_from(t.as_nanos()).unwrap_or(i64::MAX).max(1);
        }
        let body = req
            .write_to_bytes()
            .map_err(|e| Status::internal(format!("encoding request: {e}")))?;
        let queue = Arc::new(Queue::new(CALL_BUFFER));
        let mut w = self
            .0
            .writer
            .lock()
            .map_err(|_| Status::internal("client writer poisoned"))?;
        let id = w.next_id;
        w.next_id = w.next_id.wrapping_add(2);
        if let Ok(mut pending) = self.0.pending.lock() {
            pending.insert(id, Arc::clone(&queue));
        }
        let call = Call {
            client: self.clone(),
            id,
            queue,
            deadline: ctx.timeout().map(|t| Instant::now() + t),
            path: format!("/{service}/{method}"),
        };
        let buf = frame::encode_frame(id, TYPE_REQUEST, flags, &body)
            .map_err(|e| Status::resource_exhausted(format!("{}: {e}", call.path)))?;
        io::Write::write_all(&mut w.stream, &buf).map_err(|e| self.write_failed(e))?;
        Ok(call)
    }

    fn send_data(&self, id: u32, flags: u8, body: &[u8]) -> RpcResult<()> {
        if self.is_closed() {
            return Err(closed_status());
        }
        let buf = frame::encode_frame(id, TYPE_DATA, flags, body)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        self.write_frame(&buf)
    }

    /// Sends `msg` as a data frame of call `id`, encoded straight into the frame's buffer (a
    /// large message, a content write, is not held twice).
    fn send_message<M: Message>(&self, id: u32, msg: &M) -> RpcResult<()> {
        if self.is_closed() {
            return Err(closed_status());
        }
        let mut buf = Vec::new();
        frame::append_frame(&mut buf, id, TYPE_DATA, 0, msg).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidInput {
                Status::resource_exhausted(format!("{}: {e}", M::NAME))
            } else {
                Status::internal(format!("encoding {}: {e}", M::NAME))
            }
        })?;
        self.write_frame(&buf)
    }

    fn write_frame(&self, buf: &[u8]) -> RpcResult<()> {
        let mut w = self
            .0
            .writer
            .lock()
            .map_err(|_| Status::internal("client writer poisoned"))?;
        io::Write::write_all(&mut w.stream, buf).map_err(|e| self.write_failed(e))
    }

    fn write_failed(&self, e: io::Error) -> Status {
        self.0.closed.store(true, Ordering::SeqCst);
        let _ = self.0.control.shutdown(std::net::Shutdown::Both);
        Status::unavailable(format!("ttrpc: connection closed: {e}"))
    }

    fn forget(&self, id: u32) {
        if let Ok(mut pending) = self.0.pending.lock() {
            pending.remove(&id);
        }
    }

    /// Calls a unary method.
    pub fn unary<Req: Message, Resp: Message>(
        &self,
        ctx: &CallContext,
        service: &str,
        method: &str,
        req: &Req,
    ) -> RpcResult<Resp> {
        let payload = encode(req)?;
        let call = self.open(ctx, service, method, payload, 0)?;
        call.response()
    }

    /// Opens a server stream: one request, then messages until the server closes it.
    pub fn server_stream<Req: Message, Resp: Message>(
        &self,
        ctx: &CallContext,
        service: &str,
        method: &str,
        req: &Req,
    ) -> RpcResult<ServerStreamReader<Resp>> {
        let payload = encode(req)?;
        let call = self.open(ctx, service, method, payload, FLAG_REMOTE_CLOSED)?;
        Ok(ServerStreamReader {
            call,
            done: false,
            _msg: PhantomData,
        })
    }

    /// Opens a client stream: messages to the server, then its one response.
    pub fn client_stream<Req: Message, Resp: Message>(
        &self,
        ctx: &CallContext,
        service: &str,
        method: &str,
    ) -> RpcResult<ClientStreamWriter<Req, Resp>> {
        let call = self.open(ctx, service, method, Vec::new(), FLAG_REMOTE_OPEN)?;
        Ok(ClientStreamWriter {
            call,
            _msg: PhantomData,
        })
    }

    /// Opens a bidirectional stream.
    pub fn bidi<Req: Message, Resp: Message>(
        &self,
        ctx: &CallContext,
        service: &str,
        method: &str,
    ) -> RpcResult<BidiStream<Req, Resp>> {
        let call = self.open(ctx, service, method, Vec::new(), FLAG_REMOTE_OPEN)?;
        Ok(BidiStream {
            call,
            sent_close: false,
            done: false,
            _msg: PhantomData,
        })
    }
}

fn closed_status() -> Status {
    Status::unavailable("ttrpc: connection closed")
}

fn encode<M: Message>(msg: &M) -> RpcResult<Vec<u8>> {
    msg.write_to_bytes()
        .map_err(|e| Status::internal(format!("encoding {}: {e}", M::NAME)))
}

/// One open call: its stream id and the frames the reader hands it.
struct Call {
    client: Client,
    id: u32,
    queue: Arc<Queue<Inbound>>,
    deadline: Option<Instant>,
    path: String,
}

impl Drop for Call {
    fn drop(&mut self) {
        self.client.forget(self.id);
        self.queue.abandon();
    }
}

impl Call {
    fn next(&self) -> RpcResult<Inbound> {
        let timeout = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        match self.queue.pop(timeout) {
            Pop::Item(frame) => Ok(frame),
            Pop::End(Some(status)) => Err(status),
            Pop::End(None) => Err(closed_status()),
            Pop::TimedOut => Err(Status::deadline_exceeded(format!(
                "{}: deadline exceeded",
                self.path
            ))),
        }
    }

    /// Waits for the final response and decodes its payload.
    fn response<Resp: Message>(&self) -> RpcResult<Resp> {
        loop {
            match self.next()? {
                Inbound::Response(body) => return decode_response(&self.path, &body),
                Inbound::Data { .. } => {
                    log::debug!("{}: ignoring a data frame before the response", self.path)
                }
            }
        }
    }

    fn send<M: Message>(&self, msg: &M) -> RpcResult<()> {
        self.client.send_message(self.id, msg)
    }

    fn close_send(&self) -> RpcResult<()> {
        self.client
            .send_data(self.id, FLAG_REMOTE_CLOSED | FLAG_NO_DATA, &[])
    }

    /// The next streamed message: `Ok(None)` at a clean end.
    fn next_message<M: Message>(&self) -> RpcResult<Option<M>> {
        loop {
            match self.next()? {
                Inbound::Data { flags, body } => {
                    let closing = flags & FLAG_REMOTE_CLOSED != 0;
                    if flags & FLAG_NO_DATA == 0 {
                        let msg = M::parse_from_bytes(&body).map_err(|e| {
                            Status::internal(format!(
                                "{}: cannot decode {}: {e}",
                                self.path,
                                M::NAME
                            ))
                        })?;
                        if closing {
                            self.queue.close(None);
                        }
                        return Ok(Some(msg));
                    }
                    if closing {
                        return Ok(None);
                    }
                }
                Inbound::Response(body) => {
                    let resp = decode_envelope(&self.path, &body)?;
                    return match resp {
                        Some(status) => Err(status),
                        None => Ok(None),
                    };
                }
            }
        }
    }
}

fn decode_envelope(path: &str, body: &[u8]) -> RpcResult<Option<Status>> {
    let resp = ttrpc::proto::Response::parse_from_bytes(body)
        .map_err(|e| Status::internal(format!("{path}: cannot decode the response: {e}")))?;
    Ok(resp.status.as_ref().and_then(Status::from_proto))
}

fn decode_response<Resp: Message>(path: &str, body: &[u8]) -> RpcResult<Resp> {
    let resp = ttrpc::proto::Response::parse_from_bytes(body)
        .map_err(|e| Status::internal(format!("{path}: cannot decode the response: {e}")))?;
    if let Some(status) = resp.status.as_ref().and_then(Status::from_proto) {
        return Err(status);
    }
    Resp::parse_from_bytes(&resp.payload)
        .map_err(|e| Status::internal(format!("{path}: cannot decode {}: {e}", Resp::NAME)))
}

/// The messages of a server stream, in order.
pub struct ServerStreamReader<T> {
    call: Call,
    done: bool,
    _msg: PhantomData<fn() -> T>,
}

impl<T: Message> ServerStreamReader<T> {
    /// The next message; `None` when the server ended the stream cleanly.
    pub fn recv(&mut self) -> RpcResult<Option<T>> {
        if self.done {
            return Ok(None);
        }
        let next = self.call.next_message();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next
    }
}

impl<T: Message> Iterator for ServerStreamReader<T> {
    type Item = RpcResult<T>;

    fn next(&mut self) -> Option<Self::Item> {
        self.recv().transpose()
    }
}

/// Sends a client stream's messages, then takes the server's one response.
pub struct ClientStreamWriter<Req, Resp> {
    call: Call,
    _msg: PhantomData<fn(&Req) -> Resp>,
}

impl<Req: Message, Resp: Message> ClientStreamWriter<Req, Resp> {
    /// Sends one message.
    pub fn send(&self, msg: &Req) -> RpcResult<()> {
        self.call.send(msg)
    }

    /// Closes the sending side and waits for the response.
    pub fn close_and_recv(self) -> RpcResult<Resp> {
        // A server that already failed the call answered before our close; its answer wins.
        if let Err(e) = self.call.close_send() {
            return self.call.response::<Resp>().and(Err(e));
        }
        self.call.response()
    }
}

/// Both sides of a bidirectional stream.
pub struct BidiStream<Req, Resp> {
    call: Call,
    sent_close: bool,
    done: bool,
    _msg: PhantomData<fn(&Req) -> Resp>,
}

impl<Req: Message, Resp: Message> BidiStream<Req, Resp> {
    /// Sends one message.
    pub fn send(&self, msg: &Req) -> RpcResult<()> {
        if self.sent_close {
            return Err(Status::failed_precondition(
                "stream already closed for sending",
            ));
        }
        self.call.send(msg)
    }

    /// Tells the server nothing more comes.
    pub fn close_send(&mut self) -> RpcResult<()> {
        if !self.sent_close {
            self.sent_close = true;
            self.call.close_send()?;
        }
        Ok(())
    }

    /// The next message from the server; `None` when it ended the stream cleanly.
    pub fn recv(&mut self) -> RpcResult<Option<Resp>> {
        if self.done {
            return Ok(None);
        }
        let next = self.call.next_message();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next
    }
}

/// How much the reader takes from the socket at once: a stream of small messages (one per
/// container in `ListStream`) arrives in a few reads instead of two per frame.
const READ_BUFFER: usize = 32 * 1024;

fn read_loop(stream: UnixStream, inner: std::sync::Weak<Inner>) {
    let mut stream = io::BufReader::with_capacity(READ_BUFFER, stream);
    loop {
        let result = read_frame(&mut stream);
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let frame = match result {
            Ok(f) => f,
            Err(FrameError::Oversized {
                stream_id, length, ..
            }) => {
                let queue = inner
                    .pending
                    .lock()
                    .ok()
                    .and_then(|mut p| p.remove(&stream_id));
                if let Some(q) = queue {
                    q.close(Some(Status::resource_exhausted(format!(
                        "message length {length} exceeds the maximum message size of {}",
                        frame::MAX_BODY
                    ))));
                }
                continue;
            }
            Err(FrameError::Closed) | Err(FrameError::Io(_)) => {
                inner.closed.store(true, Ordering::SeqCst);
                if let Ok(mut pending) = inner.pending.lock() {
                    for (_, q) in pending.drain() {
                        q.close(Some(closed_status()));
                    }
                }
                return;
            }
        };
        let is_response = frame.kind == TYPE_RESPONSE;
        let inbound = match frame.kind {
            TYPE_RESPONSE => Inbound::Response(frame.body),
            TYPE_DATA => Inbound::Data {
                flags: frame.flags,
                body: frame.body,
            },
            other => {
                log::debug!("ttrpc client: ignoring a frame of type {other:#x}");
                continue;
            }
        };
        let queue = inner
            .pending
            .lock()
            .ok()
            .and_then(|p| p.get(&frame.stream_id).cloned());
        let Some(queue) = queue else {
            log::debug!("ttrpc client: frame for unknown stream {}", frame.stream_id);
            continue;
        };
        drop(inner);
        match queue.push(inbound, SLOW_READER_TIMEOUT) {
            Ok(()) | Err(PushError::Closed) => {}
            Err(PushError::Full) => queue.close(Some(Status::resource_exhausted(
                "stream receive buffer is full: the caller does not read it",
            ))),
        }
        if is_response {
            // The response is final: nothing more comes for this stream.
            queue.close(None);
        }
    }
}
