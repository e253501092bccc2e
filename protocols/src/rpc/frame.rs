//! ttrpc frames: a 10-byte big-endian header (length, stream id, type, flags) and a body.

use std::io::{self, Read, Write};

pub use ttrpc::proto::MessageHeader;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = ttrpc::proto::MESSAGE_HEADER_LENGTH;
/// The largest body a peer may send (4 MiB, as in Go's ttrpc).
pub const MAX_BODY: usize = ttrpc::proto::MESSAGE_LENGTH_MAX;

/// Frame type: a request, which opens a stream.
pub const TYPE_REQUEST: u8 = ttrpc::proto::MESSAGE_TYPE_REQUEST;
/// Frame type: the final response of a stream.
pub const TYPE_RESPONSE: u8 = ttrpc::proto::MESSAGE_TYPE_RESPONSE;
/// Frame type: one streamed message.
pub const TYPE_DATA: u8 = ttrpc::proto::MESSAGE_TYPE_DATA;

/// Flag: the sender sends nothing more on this stream.
pub const FLAG_REMOTE_CLOSED: u8 = ttrpc::proto::FLAG_REMOTE_CLOSED;
/// Flag (requests): the sender will send data frames after the request.
pub const FLAG_REMOTE_OPEN: u8 = ttrpc::proto::FLAG_REMOTE_OPEN;
/// Flag (data): the frame carries no message.
pub const FLAG_NO_DATA: u8 = ttrpc::proto::FLAG_NO_DATA;

/// One frame read off a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream_id: u32,
    pub kind: u8,
    pub flags: u8,
    pub body: Vec<u8>,
}

/// What reading a frame can run into.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The header announced a body over [`MAX_BODY`]; the body was read and thrown away, so the
    /// connection is still in step and the stream can be answered.
    #[error("message length {length} exceeds the maximum message size of {MAX_BODY}")]
    Oversized {
        stream_id: u32,
        kind: u8,
        length: u32,
    },
    /// The connection failed or ended inside a frame.
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
}

/// Reads one whole frame. Oversized bodies are discarded (as Go's ttrpc does) and reported so
/// that the caller can answer on that stream and go on.
pub fn read_frame(r: &mut impl Read) -> Result<Frame, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mh = MessageHeader::from(header);
    let length = mh.length as usize;
    if length > MAX_BODY {
        let skipped = io::copy(&mut r.take(mh.length as u64), &mut io::sink())?;
        if skipped < mh.length as u64 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        return Err(FrameError::Oversized {
            stream_id: mh.stream_id,
            kind: mh.type_,
            length: mh.length,
        });
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    Ok(Frame {
        stream_id: mh.stream_id,
        kind: mh.type_,
        flags: mh.flags,
        body,
    })
}

/// Encodes a frame's header and body into one buffer, so that it goes out in one write and
/// frames written by different threads never interleave.
pub fn encode_frame(stream_id: u32, kind: u8, flags: u8, body: &[u8]) -> io::Result<Vec<u8>> {
    if body.len() > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message length {} exceeds the maximum message size of {MAX_BODY}",
                body.len()
            ),
        ));
    }
    let mh = MessageHeader {
        length: body.len() as u32,
        stream_id,
        type_: kind,
        flags,
    };
    let mut buf: Vec<u8> = mh.into();
    buf.extend_from_slice(body);
    Ok(buf)
}

/// Appends one frame carrying `msg` to `buf`, encoding the message in place (no separate body
/// buffer): for streams that gather many frames into one write.
pub fn append_frame<M: protobuf::Message>(
    buf: &mut Vec<u8>,
    stream_id: u32,
    kind: u8,
    flags: u8,
    msg: &M,
) -> io::Result<()> {
    let len = msg.compute_size() as usize;
    if len > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message length {len} exceeds the maximum message size of {MAX_BODY}"),
        ));
    }
    let header: Vec<u8> = MessageHeader {
        length: len as u32,
        stream_id,
        type_: kind,
        flags,
    }
    .into();
    let start = buf.len();
    buf.reserve(header.len() + len);
    buf.extend_from_slice(&header);
    if let Err(e) = msg.write_to_vec(buf) {
        buf.truncate(start);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
    }
    Ok(())
}

/// Writes one frame with a single `write_all`.
pub fn write_frame(
    w: &mut impl Write,
    stream_id: u32,
    kind: u8,
    flags: u8,
    body: &[u8],
) -> io::Result<()> {
    let buf = encode_frame(stream_id, kind, flags, body)?;
    w.write_all(&buf)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_spec_example() {
        let buf = encode_frame(1, TYPE_REQUEST, 0, b"hello").unwrap();
        assert_eq!(&buf[..HEADER_LEN], &[0, 0, 0, 5, 0, 0, 0, 1, 1, 0]);
        assert_eq!(&buf[HEADER_LEN..], b"hello");
        // The same frame appended with the message encoded in place.
        let mut sv = protobuf::well_known_types::wrappers::StringValue::new();
        sv.value = "hello".into();
        let body = protobuf::Message::write_to_bytes(&sv).unwrap();
        let mut appended = b"xy".to_vec();
        super::append_frame(&mut appended, 1, 1, 0, &sv).unwrap();
        assert_eq!(&appended[..2], b"xy");
        assert_eq!(
            appended[2..],
            super::encode_frame(1, 1, 0, &body).unwrap()[..]
        );
    }

    #[test]
    fn reads_frames_split_and_coalesced() {
        let mut wire = encode_frame(3, TYPE_DATA, FLAG_REMOTE_CLOSED, b"ab").unwrap();
        wire.extend(encode_frame(5, TYPE_REQUEST, 0, b"").unwrap());
        // A reader that hands out one byte at a time.
        struct Trickle(Vec<u8>, usize);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[self.1];
                self.1 += 1;
                Ok(1)
            }
        }
        let mut r = Trickle(wire, 0);
        let a = read_frame(&mut r).unwrap();
        assert_eq!(
            (a.stream_id, a.kind, a.flags, a.body.as_slice()),
            (3, TYPE_DATA, 1, &b"ab"[..])
        );
        let b = read_frame(&mut r).unwrap();
        assert_eq!((b.stream_id, b.kind, b.body.len()), (5, TYPE_REQUEST, 0));
        assert!(matches!(read_frame(&mut r), Err(FrameError::Closed)));
    }

    #[test]
    fn oversized_body_is_skipped_and_the_next_frame_still_reads() {
        let mut wire = Vec::new();
        let big = (MAX_BODY + 1) as u32;
        wire.extend_from_slice(&big.to_be_bytes());
        wire.extend_from_slice(&7u32.to_be_bytes());
        wire.extend_from_slice(&[TYPE_REQUEST, 0]);
        wire.resize(wire.len() + MAX_BODY + 1, 0xAA);
        wire.extend(encode_frame(9, TYPE_REQUEST, 0, b"x").unwrap());
        let mut r = io::Cursor::new(wire);
        match read_frame(&mut r) {
            Err(FrameError::Oversized {
                stream_id, length, ..
            }) => {
                assert_eq!((stream_id, length), (7, big));
            }
            other => panic!("expected oversized, got {other:?}"),
        }
        assert_eq!(read_frame(&mut r).unwrap().stream_id, 9);
    }

    #[test]
    fn truncated_frames_are_errors_not_panics() {
        let wire = encode_frame(1, TYPE_REQUEST, 0, b"hello").unwrap();
        for cut in 1..wire.len() {
            let mut r = io::Cursor::new(wire[..cut].to_vec());
            assert!(
                matches!(read_frame(&mut r), Err(FrameError::Io(_))),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn refuses_to_encode_oversized_bodies() {
        assert!(encode_frame(1, TYPE_DATA, 0, &vec![0; MAX_BODY + 1]).is_err());
    }
}
