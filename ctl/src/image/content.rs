//! The content store as the image code sees it ([`ContentStore`]), and its implementation
//! over corrald's `Content` service ([`RemoteContent`]): `Info`, `Update`, `List` with
//! filters, `Read` as a stream, and `Write` as containerd's `content.WriteBlob` drives it
//! (STAT first, WRITE at the offset the daemon reports, COMMIT with the expected digest and
//! size; an `AlreadyExists` answer means the blob is there). Blobs stream through in chunks;
//! nothing holds a whole layer in memory.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use corral_protocols::rpc::{BidiStream, CallContext, ServerStreamReader};
use corral_protocols::services::content::v1::content::{
    AbortRequest, Info as InfoPb, InfoRequest, ListContentRequest, ReadContentRequest,
    ReadContentResponse, UpdateRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use corral_protocols::services::content::v1::content_rpc::ContentClient;
use protobuf::well_known_types::field_mask::FieldMask;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{EnumOrUnknown, MessageField};

use super::digest::{Algorithm, Digest, Digester};
use super::error::{ImageError, Result};
use super::ocispec::Descriptor;

/// Bytes per `WRITE` message (containerd copies through a 1 MiB buffer).
pub const CHUNK: usize = 256 << 10;
/// The largest JSON document (manifest, index, config) read into memory.
pub const MAX_DOCUMENT: i64 = 32 << 20;
/// How long a write waits for a reference another writer holds (`content.OpenWriter`).
const LOCKED_RETRY: Duration = Duration::from_secs(30);

/// A blob's record in the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    /// The blob's digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// When it was committed.
    pub created_at: Option<Timestamp>,
}

impl Info {
    fn from_pb(pb: &InfoPb) -> Info {
        Info {
            digest: pb.digest.clone(),
            size: pb.size,
            labels: pb
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            created_at: pb.created_at.as_ref().cloned(),
        }
    }
}

/// What a write should produce.
#[derive(Debug, Clone, Default)]
pub struct WriteRequest {
    /// The ingest reference (`tar-blobs/sha256/...`, `manifest-sha256:...`).
    pub reference: String,
    /// The size, when known (0: unknown).
    pub size: i64,
    /// The digest the content must have, when known.
    pub expected: Option<Digest>,
    /// Labels to commit the blob with.
    pub labels: BTreeMap<String, String>,
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The content was committed as a new blob.
    Committed(Digest),
    /// The store had the blob already; the source was not (entirely) read.
    Existed(Digest),
}

impl Written {
    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        match self {
            Written::Committed(d) | Written::Existed(d) => d,
        }
    }
}

/// Progress of one write, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteProgress {
    /// The write is open and waiting for data.
    Waiting,
    /// `offset` of `total` bytes (0: unknown) are written.
    Writing { offset: i64, total: i64 },
    /// Committed.
    Done { size: i64 },
    /// The store had it.
    Exists,
}

/// The content store: blob records, their bytes, and writes.
pub trait ContentStore {
    /// The record of `digest`.
    fn info(&self, digest: &str) -> Result<Info>;
    /// The bytes of `digest` from `offset` to the end, as a stream.
    fn reader(&self, digest: &str, offset: i64) -> Result<Box<dyn Read + '_>>;
    /// Sets the labels named by `fields` (`labels.<key>`; an empty value removes the label).
    fn update(
        &self,
        digest: &str,
        labels: &BTreeMap<String, String>,
        fields: &[String],
    ) -> Result<Info>;
    /// Every record matching any of `filters` (all with none).
    fn list(&self, filters: &[String]) -> Result<Vec<Info>>;
    /// Writes `src` as a blob.
    fn write(
        &self,
        req: &WriteRequest,
        src: &mut dyn Read,
        progress: &mut dyn FnMut(WriteProgress),
    ) -> Result<Written>;
    /// Abandons the ingest `reference`.
    fn abort(&self, reference: &str) -> Result<()>;
    /// Writes a blob whose bytes `open` gives from an offset, resuming an interrupted ingest
    /// of the same reference where it stopped (`content.OpenWriter` then `Copy` from the
    /// writer's offset, as containerd's fetch does). A store that cannot resume asks for
    /// offset 0.
    fn write_from(
        &self,
        req: &WriteRequest,
        open: &mut dyn FnMut(i64) -> Result<Box<dyn Read + Send>>,
        progress: &mut dyn FnMut(WriteProgress),
    ) -> Result<Written> {
        if let Some(d) = &req.expected {
            if self.info(d.as_str()).is_ok() {
                progress(WriteProgress::Exists);
                return Ok(Written::Existed(d.clone()));
            }
        }
        let mut src = open(0)?;
        self.write(req, &mut src, progress)
    }
}

/// Reads the whole blob `desc` names (`content.ReadBlob`), for documents: refused over
/// [`MAX_DOCUMENT`] bytes. containerd's client asks `Info` for the blob's size first; the
/// descriptor's size, when it has one, does that job here (a blob of another size is an
/// error either way), so a read is one call.
pub fn read_blob(store: &dyn ContentStore, desc: &Descriptor) -> Result<Vec<u8>> {
    let size = if desc.size > 0 {
        desc.size
    } else {
        store.info(&desc.digest)?.size
    };
    if size > MAX_DOCUMENT {
        return Err(ImageError::InvalidArgument(format!(
            "content {}: {} bytes is too large for a document",
            desc.digest, size
        )));
    }
    let mut data = Vec::with_capacity(size.max(0) as usize);
    store
        .reader(&desc.digest, 0)?
        .take(size.max(0) as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_error(&desc.digest, e))?;
    if data.len() as i64 != size {
        return Err(ImageError::Unknown(format!(
            "content {}: read {} bytes, expected {}: {}",
            desc.digest,
            data.len(),
            size,
            if (data.len() as i64) < size {
                "unexpected EOF"
            } else {
                "size mismatch"
            }
        )));
    }
    Ok(data)
}

/// A read failure of a blob; a status the daemon sent keeps its kind.
pub fn read_error(digest: &str, e: io::Error) -> ImageError {
    if e.get_ref().is_some_and(|i| i.is::<StatusError>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(status) = inner.downcast::<StatusError>() {
                return status.0.context(format_args!("reading {digest}"));
            }
        }
        return ImageError::Unknown(format!("reading {digest}: read failed"));
    }
    ImageError::io(format!("reading {digest}"), e)
}

/// A daemon status carried through `io::Error` by [`RemoteReader`].
#[derive(Debug)]
struct StatusError(ImageError);

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StatusError {}

/// How a write to corrald began ([`RemoteContent::begin`]).
enum Begun {
    /// Nothing to send: the content is there.
    Done(Written),
    /// The open write and the offset its ingest is at.
    Open(BidiStream<WriteContentRequest, WriteContentResponse>, i64),
}

/// The content store behind corrald's `Content` service, in one namespace and (for writes)
/// under the lease in `ctx`.
#[derive(Clone)]
pub struct RemoteContent {
    client: ContentClient,
    ctx: CallContext,
}

impl RemoteContent {
    /// The store `client` reaches, calling with `ctx` (namespace, lease, timeout).
    pub fn new(client: ContentClient, ctx: CallContext) -> RemoteContent {
        RemoteContent { client, ctx }
    }

    /// Opens a write: the first STAT, retried while another writer holds the reference.
    fn open(
        &self,
        req: &WriteRequest,
    ) -> Result<(
        BidiStream<WriteContentRequest, WriteContentResponse>,
        WriteContentResponse,
    )> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(16);
        loop {
            let mut stream = self.client.write(&self.ctx)?;
            let stat = WriteContentRequest {
                action: EnumOrUnknown::new(WriteAction::STAT),
                ref_: req.reference.clone(),
                total: req.size,
                expected: req
                    .expected
                    .as_ref()
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                ..Default::default()
            };
            match Self::exchange(&mut stream, &stat) {
                Ok(resp) => return Ok((stream, resp)),
                Err(ImageError::Unavailable(m)) if started.elapsed() < LOCKED_RETRY => {
                    log::debug!("write {}: {m}; retrying", req.reference);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the write of `req` and deals with what the daemon already has: content with
    /// the expected digest (`Done`), or a complete ingest, committed without sending it
    /// again (and started over if that commit fails). Otherwise the open write and the
    /// offset its ingest is at.
    fn begin(&self, req: &WriteRequest, progress: &mut dyn FnMut(WriteProgress)) -> Result<Begun> {
        let (mut stream, status) = match self.open(req) {
            Ok(opened) => opened,
            Err(e) if e.is_already_exists() => {
                if let Some(d) = &req.expected {
                    progress(WriteProgress::Exists);
                    return Ok(Begun::Done(Written::Existed(d.clone())));
                }
                return Err(e);
            }
            Err(e) => return Err(e.context("failed to open writer")),
        };
        progress(WriteProgress::Waiting);
        let mut offset = status.offset;
        if let Some(expected) = &req.expected {
            if req.size > 0 && offset == req.size {
                match Self::commit(&mut stream, req, offset, expected) {
                    Ok(w) => {
                        progress(WriteProgress::Exists);
                        return Ok(Begun::Done(w));
                    }
                    Err(e) => {
                        log::debug!("write {}: committing what was there: {e}", req.reference);
                        self.abort(&req.reference)?;
                        let (fresh, _) = self.open(req)?;
                        stream = fresh;
                        offset = 0;
                    }
                }
            }
        }
        Ok(Begun::Open(stream, offset))
    }

    /// One request, one answer, on an open write.
    fn exchange(
        stream: &mut BidiStream<WriteContentRequest, WriteContentResponse>,
        msg: &WriteContentRequest,
    ) -> Result<WriteContentResponse> {
        stream.send(msg)?;
        match stream.recv()? {
            Some(r) => Ok(r),
            None => Err(ImageError::Unknown(
                "the write stream ended without an answer".into(),
            )),
        }
    }

    fn commit(
        stream: &mut BidiStream<WriteContentRequest, WriteContentResponse>,
        req: &WriteRequest,
        offset: i64,
        expected: &Digest,
    ) -> Result<Written> {
        let msg = WriteContentRequest {
            action: EnumOrUnknown::new(WriteAction::COMMIT),
            total: req.size,
            offset,
            expected: expected.to_string(),
            labels: req
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Default::default()
        };
        match Self::exchange(stream, &msg) {
            Ok(resp) => {
                let _ = stream.close_send();
                if req.size != 0 && resp.offset != req.size {
                    return Err(ImageError::FailedPrecondition(format!(
                        "unexpected size: {} != {}",
                        resp.offset, req.size
                    )));
                }
                if !resp.digest.is_empty() && resp.digest != expected.as_str() {
                    return Err(ImageError::FailedPrecondition(format!(
                        "unexpected digest: {} != {expected}",
                        resp.digest
                    )));
                }
                Ok(Written::Committed(expected.clone()))
            }
            Err(e) if e.is_already_exists() => Ok(Written::Existed(expected.clone())),
            Err(e) => Err(e.context(format_args!("failed commit on ref {:?}", req.reference))),
        }
    }

    /// Streams `src` from offset `start` (the daemon's offset, or 0 to start over) and
    /// commits it. From 0 the digest is checked here too; from further on only the daemon,
    /// which has the first bytes, can check it at commit.
    fn stream_from(
        &self,
        mut stream: BidiStream<WriteContentRequest, WriteContentResponse>,
        req: &WriteRequest,
        start: i64,
        src: &mut dyn Read,
        progress: &mut dyn FnMut(WriteProgress),
    ) -> Result<Written> {
        let algorithm = req
            .expected
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let mut digester = Digester::for_algorithm(algorithm)?;
        let mut buf = vec![0u8; CHUNK];
        let mut offset = start;
        progress(WriteProgress::Writing {
            offset,
            total: req.size,
        });
        loop {
            let n = read_full(src, &mut buf)
                .map_err(|e| ImageError::io(format!("reading {}", req.reference), e))?;
            if n == 0 {
                break;
            }
            digester.update(&buf[..n]);
            buf.truncate(n);
            // The buffer travels in the message and comes back: a chunk is never copied.
            let mut msg = WriteContentRequest {
                action: EnumOrUnknown::new(WriteAction::WRITE),
                offset,
                data: std::mem::take(&mut buf),
                ..Default::default()
            };
            let sent = Self::exchange(&mut stream, &msg);
            buf = std::mem::take(&mut msg.data);
            buf.resize(CHUNK, 0);
            let resp = sent.map_err(|e| e.context("failed to send write"))?;
            if resp.offset != offset + n as i64 {
                return Err(ImageError::Unknown(format!(
                    "short write: the daemon is at {} after writing {n} bytes at {offset}",
                    resp.offset
                )));
            }
            offset = resp.offset;
            progress(WriteProgress::Writing {
                offset,
                total: req.size,
            });
        }
        if req.size != 0 && offset != req.size {
            return Err(ImageError::InvalidArgument(format!(
                "failed to read expected number of bytes: read {offset} of {}: unexpected EOF",
                req.size
            )));
        }
        let actual = digester.finish();
        let expected = match &req.expected {
            Some(expected) if start == 0 && *expected != actual => {
                return Err(ImageError::InvalidArgument(format!(
                    "content has digest {actual}, not the expected {expected}"
                )));
            }
            Some(expected) => expected.clone(),
            None if start == 0 => actual,
            None => {
                return Err(ImageError::InvalidArgument(format!(
                    "resuming {} needs the expected digest",
                    req.reference
                )))
            }
        };
        let written = Self::commit(&mut stream, req, offset, &expected)?;
        progress(match written {
            Written::Committed(_) => WriteProgress::Done { size: offset },
            Written::Existed(_) => WriteProgress::Exists,
        });
        Ok(written)
    }
}

/// Reads until `buf` is full or the source ends; the number of bytes read.
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl ContentStore for RemoteContent {
    fn info(&self, digest: &str) -> Result<Info> {
        let req = InfoRequest {
            digest: digest.to_string(),
            ..Default::default()
        };
        let resp = self.client.info(&self.ctx, &req)?;
        Ok(Info::from_pb(resp.info.as_ref().unwrap_or_default()))
    }

    fn reader(&self, digest: &str, offset: i64) -> Result<Box<dyn Read + '_>> {
        let req = ReadContentRequest {
            digest: digest.to_string(),
            offset,
            ..Default::default()
        };
        let stream = self.client.read(&self.ctx, &req)?;
        Ok(Box::new(RemoteReader {
            stream,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }))
    }

    fn update(
        &self,
        digest: &str,
        labels: &BTreeMap<String, String>,
        fields: &[String],
    ) -> Result<Info> {
        let req = UpdateRequest {
            info: MessageField::some(InfoPb {
                digest: digest.to_string(),
                labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                ..Default::default()
            }),
            update_mask: MessageField::some(FieldMask {
                paths: fields.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = self.client.update(&self.ctx, &req)?;
        Ok(Info::from_pb(resp.info.as_ref().unwrap_or_default()))
    }

    fn list(&self, filters: &[String]) -> Result<Vec<Info>> {
        let req = ListContentRequest {
            filters: filters.to_vec(),
            ..Default::default()
        };
        let mut out = Vec::new();
        for msg in self.client.list(&self.ctx, &req)? {
            out.extend(msg?.info.iter().map(Info::from_pb));
        }
        Ok(out)
    }

    fn write(
        &self,
        req: &WriteRequest,
        src: &mut dyn Read,
        progress: &mut dyn FnMut(WriteProgress),
    ) -> Result<Written> {
        let stream = match self.begin(req, progress)? {
            Begun::Done(w) => return Ok(w),
            Begun::Open(stream, _) => stream,
        };
        // A write at offset 0 makes the daemon start an interrupted ingest over.
        match self.stream_from(stream, req, 0, src, progress) {
            Ok(w) => Ok(w),
            Err(e) => {
                if let Err(abort) = self.abort(&req.reference) {
                    log::debug!("abort {}: {abort}", req.reference);
                }
                Err(e)
            }
        }
    }

    fn write_from(
        &self,
        req: &WriteRequest,
        open: &mut dyn FnMut(i64) -> Result<Box<dyn Read + Send>>,
        progress: &mut dyn FnMut(WriteProgress),
    ) -> Result<Written> {
        let (stream, mut start) = match self.begin(req, progress)? {
            Begun::Done(w) => return Ok(w),
            Begun::Open(stream, offset) => (stream, offset),
        };
        if start < 0 || (req.size > 0 && start > req.size) || req.expected.is_none() {
            start = 0;
        }
        if start > 0 {
            log::debug!("write {}: resuming at {start}", req.reference);
        }
        let result = open(start)
            .and_then(|mut src| self.stream_from(stream, req, start, &mut src, progress));
        match result {
            Ok(w) => Ok(w),
            Err(e) => {
                // A stream that broke (an interrupted download) keeps its ingest to resume
                // from; content that is wrong is thrown away.
                let keep = matches!(e, ImageError::Io { .. } | ImageError::Unavailable(_));
                if !keep {
                    if let Err(abort) = self.abort(&req.reference) {
                        log::debug!("abort {}: {abort}", req.reference);
                    }
                }
                Err(e)
            }
        }
    }

    fn abort(&self, reference: &str) -> Result<()> {
        let req = AbortRequest {
            ref_: reference.to_string(),
            ..Default::default()
        };
        match self.client.abort(&self.ctx, &req) {
            Ok(_) => Ok(()),
            Err(s) => {
                let e = ImageError::from(s);
                if e.is_not_found() {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// A blob's bytes as `Read`, from the daemon's `Read` stream.
struct RemoteReader {
    stream: ServerStreamReader<ReadContentResponse>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for RemoteReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.stream.recv() {
                Ok(Some(msg)) => {
                    self.buf = msg.data;
                    self.pos = 0;
                }
                Ok(None) => self.done = true,
                Err(s) => return Err(io::Error::other(StatusError(ImageError::from(s)))),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
pub mod memory {
    //! An in-memory [`ContentStore`] for unit tests, with the filter containerd's importer
    //! uses (`labels."<key>"==<value>`).

    use super::*;
    use std::cell::RefCell;

    /// A blob's bytes and labels.
    pub type Blob = (Vec<u8>, BTreeMap<String, String>);

    /// Blobs and labels in memory; writes are recorded.
    #[derive(Default)]
    pub struct MemoryStore {
        pub blobs: RefCell<BTreeMap<String, Blob>>,
        pub writes: RefCell<Vec<String>>,
    }

    impl MemoryStore {
        /// Adds `data` as a blob; its digest.
        pub fn put(&self, data: &[u8]) -> String {
            let d = Digest::from_bytes(data).to_string();
            self.blobs
                .borrow_mut()
                .entry(d.clone())
                .or_insert_with(|| (data.to_vec(), BTreeMap::new()));
            d
        }

        /// The labels of `digest`.
        pub fn labels(&self, digest: &str) -> BTreeMap<String, String> {
            self.blobs
                .borrow()
                .get(digest)
                .map(|b| b.1.clone())
                .unwrap_or_default()
        }
    }

    fn not_found(d: &str) -> ImageError {
        ImageError::NotFound(format!("content digest {d}: not found"))
    }

    impl ContentStore for MemoryStore {
        fn info(&self, digest: &str) -> Result<Info> {
            let blobs = self.blobs.borrow();
            let (data, labels) = blobs.get(digest).ok_or_else(|| not_found(digest))?;
            Ok(Info {
                digest: digest.to_string(),
                size: data.len() as i64,
                labels: labels.clone(),
                created_at: None,
            })
        }

        fn reader(&self, digest: &str, offset: i64) -> Result<Box<dyn Read + '_>> {
            let blobs = self.blobs.borrow();
            let (data, _) = blobs.get(digest).ok_or_else(|| not_found(digest))?;
            Ok(Box::new(io::Cursor::new(data[offset as usize..].to_vec())))
        }

        fn update(
            &self,
            digest: &str,
            labels: &BTreeMap<String, String>,
            fields: &[String],
        ) -> Result<Info> {
            {
                let mut blobs = self.blobs.borrow_mut();
                let blob = blobs.get_mut(digest).ok_or_else(|| not_found(digest))?;
                for f in fields {
                    let key = f.strip_prefix("labels.").unwrap_or(f);
                    match labels.get(key) {
                        Some(v) if !v.is_empty() => {
                            blob.1.insert(key.to_string(), v.clone());
                        }
                        _ => {
                            blob.1.remove(key);
                        }
                    }
                }
            }
            self.info(digest)
        }

        fn list(&self, filters: &[String]) -> Result<Vec<Info>> {
            let wanted: Vec<(String, String)> = filters
                .iter()
                .filter_map(|f| {
                    let rest = f.strip_prefix("labels.\"")?;
                    let (key, value) = rest.split_once("\"==")?;
                    Some((key.to_string(), value.to_string()))
                })
                .collect();
            let blobs = self.blobs.borrow();
            Ok(blobs
                .iter()
                .filter(|(_, (_, labels))| {
                    filters.is_empty()
                        || wanted
                            .iter()
                            .any(|(k, v)| labels.get(k).is_some_and(|x| x == v))
                })
                .map(|(d, (data, labels))| Info {
                    digest: d.clone(),
                    size: data.len() as i64,
                    labels: labels.clone(),
                    created_at: None,
                })
                .collect())
        }

        fn write(
            &self,
            req: &WriteRequest,
            src: &mut dyn Read,
            progress: &mut dyn FnMut(WriteProgress),
        ) -> Result<Written> {
            self.writes.borrow_mut().push(req.reference.clone());
            if let Some(d) = &req.expected {
                if self.blobs.borrow().contains_key(d.as_str()) {
                    progress(WriteProgress::Exists);
                    return Ok(Written::Existed(d.clone()));
                }
            }
            let mut data = Vec::new();
            src.read_to_end(&mut data)
                .map_err(|e| ImageError::io("reading", e))?;
            if req.size != 0 && data.len() as i64 != req.size {
                return Err(ImageError::InvalidArgument(
                    "failed to read expected number of bytes: unexpected EOF".into(),
                ));
            }
            let actual = Digest::from_bytes(&data);
            if let Some(d) = &req.expected {
                if *d != actual {
                    return Err(ImageError::InvalidArgument(format!(
                        "content has digest {actual}, not the expected {d}"
                    )));
                }
            }
            let mut blobs = self.blobs.borrow_mut();
            if blobs.contains_key(actual.as_str()) {
                return Ok(Written::Existed(actual));
            }
            blobs.insert(actual.to_string(), (data, req.labels.clone()));
            progress(WriteProgress::Done {
                size: req.size.max(0),
            });
            Ok(Written::Committed(actual))
        }

        fn abort(&self, _reference: &str) -> Result<()> {
            Ok(())
        }
    }
}
