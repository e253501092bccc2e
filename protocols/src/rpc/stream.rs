//! The server side of a stream: a typed sender of data frames and a typed receiver of the
//! client's messages.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use protobuf::Message;

use super::frame::{append_frame, TYPE_DATA};
use super::queue::{Pop, Queue};
use super::server::Conn;
use super::status::{RpcResult, Status};

/// Sends data frames on one stream of one connection.
#[derive(Clone)]
pub(crate) struct RawSender {
    pub(crate) conn: Arc<Conn>,
    pub(crate) stream_id: u32,
}

impl RawSender {
    fn send(&self, body: &[u8]) -> RpcResult<()> {
        self.conn
            .send(self.stream_id, TYPE_DATA, 0, body)
            .map_err(|e| Status::cancelled(format!("sending on stream {}: {e}", self.stream_id)))
    }

    fn send_encoded(&self, frames: &[u8]) -> RpcResult<()> {
        self.conn
            .send_encoded(frames)
            .map_err(|e| Status::cancelled(format!("sending on stream {}: {e}", self.stream_id)))
    }
}

/// Sends a server stream's messages to the client.
pub struct StreamSender<T> {
    raw: RawSender,
    _msg: PhantomData<fn(&T)>,
}

impl<T: Message> StreamSender<T> {
    pub(crate) fn new(raw: RawSender) -> Self {
        Self {
            raw,
            _msg: PhantomData,
        }
    }

    /// Sends one message. Fails with `Cancelled` once the client is gone, so a handler that
    /// streams forever learns when to stop.
    pub fn send(&self, msg: &T) -> RpcResult<()> {
        if self.raw.conn.cancel_token().is_cancelled() {
            return Err(Status::cancelled("the caller went away"));
        }
        let body = msg
            .write_to_bytes()
            .map_err(|e| Status::internal(format!("encoding {}: {e}", T::NAME)))?;
        self.raw.send(&body)
    }

    /// Sends every message of `msgs`, gathering their frames into writes of about
    /// [`BATCH_BYTES`] instead of one write each: for a handler that streams a list it already
    /// has (`ListStream`), where one write per message would cost a system call and a wake-up
    /// of the client's reader per message. The frames of other calls on the connection go
    /// between batches, never inside a frame.
    pub fn send_all(&self, msgs: impl IntoIterator<Item = T>) -> RpcResult<()> {
        let mut buf = Vec::new();
        for msg in msgs {
            if self.raw.conn.cancel_token().is_cancelled() {
                return Err(Status::cancelled("the caller went away"));
            }
            append_frame(&mut buf, self.raw.stream_id, TYPE_DATA, 0, &msg).map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    Status::resource_exhausted(format!("{}: {e}", T::NAME))
                } else {
                    Status::internal(format!("encoding {}: {e}", T::NAME))
                }
            })?;
            if buf.len() >= BATCH_BYTES {
                self.raw.send_encoded(&buf)?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            self.raw.send_encoded(&buf)?;
        }
        Ok(())
    }
}

/// About how many bytes of frames [`StreamSender::send_all`] gathers into one write.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Receives the messages a client streams.
#[derive(Clone)]
pub(crate) struct RawReceiver {
    pub(crate) queue: Arc<Queue<Vec<u8>>>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) path: String,
}

/// The client's side of a client or bidirectional stream, as the handler sees it.
pub struct StreamReceiver<T> {
    raw: RawReceiver,
    _msg: PhantomData<fn() -> T>,
}

impl<T: Message> StreamReceiver<T> {
    pub(crate) fn new(raw: RawReceiver) -> Self {
        Self {
            raw,
            _msg: PhantomData,
        }
    }

    /// The next message; `None` once the client has closed its side. Errors when the
    /// connection is lost (`Cancelled`), the deadline passes (`DeadlineExceeded`), a message
    /// does not decode or the client broke the protocol (`InvalidArgument`).
    pub fn recv(&mut self) -> RpcResult<Option<T>> {
        let timeout = self
            .raw
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        match self.raw.queue.pop(timeout) {
            Pop::Item(bytes) => T::parse_from_bytes(&bytes).map(Some).map_err(|e| {
                Status::invalid_argument(format!(
                    "{}: cannot decode {}: {e}",
                    self.raw.path,
                    T::NAME
                ))
            }),
            Pop::End(None) => Ok(None),
            Pop::End(Some(status)) => Err(status),
            Pop::TimedOut => Err(Status::deadline_exceeded(format!(
                "{}: deadline passed waiting for the client",
                self.raw.path
            ))),
        }
    }
}
