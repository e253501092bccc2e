//! The byte streams under the archive reader: the layer blob as read ([`Source`]) and the
//! uncompressed tar as the applier consumes it ([`Digester`]).
//!
//! containerd's applier hashes every byte the decompressor yields, the tar's end-of-archive
//! blocks and any trailing padding included (it reads the stream to its end after the
//! archive), and that digest is the layer's diff ID. The digester does the same, and is also
//! where the cap on uncompressed bytes (the decompression-bomb guard) is enforced.
//!
//! Errors travel up through the decompressor as `io::Error`s; [`read_error`] tells apart a
//! failure of the source (an I/O problem), the cap, and anything else (a corrupt stream).

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::error::DiffError;

/// The layer blob: marks its read errors so that they are not taken for a corrupt archive.
pub struct Source<R>(pub R);

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), SourceFailure(e)))
    }
}

/// A read error of the layer blob itself.
#[derive(Debug)]
struct SourceFailure(io::Error);

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceFailure {}

/// The uncompressed stream went past the cap.
#[derive(Debug)]
struct LimitExceeded {
    limit: u64,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {} uncompressed bytes", self.limit)
    }
}

impl std::error::Error for LimitExceeded {}

/// How many bytes the digester gathers before handing them to its hashing thread.
const HASH_BATCH: usize = 256 * 1024;

/// sha256 on a thread of its own: the applier decompresses and writes while the hash is
/// computed beside it (on a two-core machine that takes the hash, a third of the work, off
/// the critical path). Hashes inline when no thread can be started; a hashing thread that
/// dies makes the digest an error, never a wrong value.
struct Hasher {
    pending: Vec<u8>,
    worker: Option<(
        std::sync::mpsc::SyncSender<Vec<u8>>,
        std::thread::JoinHandle<Sha256>,
    )>,
    inline: Sha256,
    broken: bool,
}

impl Hasher {
    fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let worker = std::thread::Builder::new()
            .name("diff-hash".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut h = Sha256::new();
                for chunk in rx {
                    h.update(&chunk);
                }
                h
            })
            .ok()
            .map(|handle| (tx, handle));
        Hasher {
            pending: Vec::with_capacity(HASH_BATCH),
            worker,
            inline: Sha256::new(),
            broken: false,
        }
    }

    fn update(&mut self, data: &[u8]) {
        if self.broken {
            return;
        }
        if self.worker.is_none() {
            self.inline.update(data);
            return;
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() >= HASH_BATCH {
            let full = std::mem::replace(&mut self.pending, Vec::with_capacity(HASH_BATCH));
            self.send(full);
        }
    }

    fn send(&mut self, chunk: Vec<u8>) {
        if let Some((tx, _)) = &self.worker {
            if tx.send(chunk).is_err() {
                // The thread is gone (it only ends early by panicking): what it had is lost.
                self.broken = true;
            }
        }
    }

    fn finalize(mut self) -> Option<[u8; 32]> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.send(rest);
        }
        let hasher = match self.worker.take() {
            Some((tx, handle)) => {
                drop(tx);
                handle.join().ok()
            }
            None => Some(self.inline),
        };
        match hasher {
            Some(h) if !self.broken => Some(h.finalize().into()),
            _ => {
                log::error!("diff: the hashing thread failed");
                None
            }
        }
    }
}

/// Counts and hashes (sha256) what is read through it, and fails a read that would take the
/// total past `limit`.
pub struct Digester<R> {
    inner: R,
    hasher: Hasher,
    size: u64,
    limit: u64,
}

impl<R: Read> Digester<R> {
    /// Reads `inner`, allowing at most `limit` bytes in all.
    pub fn new(inner: R, limit: u64) -> Self {
        Digester {
            inner,
            hasher: Hasher::new(),
            size: 0,
            limit,
        }
    }

    /// Bytes read so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The cap this digester enforces.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// `sha256:<hex>` of everything read; an error if the hashing thread failed.
    pub fn digest(self) -> io::Result<String> {
        let sum = self
            .hasher
            .finalize()
            .ok_or_else(|| io::Error::other("computing the diff ID failed"))?;
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for byte in sum.iter() {
            out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
        }
        Ok(out)
    }

    /// Reads (and hashes) whatever is left, to the end of the stream.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl<R: Read> Read for Digester<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let size = self.size.saturating_add(n as u64);
        if size > self.limit {
            return Err(io::Error::other(LimitExceeded { limit: self.limit }));
        }
        self.hasher.update(&buf[..n]);
        self.size = size;
        Ok(n)
    }
}

/// A copy of `e` that [`read_error`] classifies as it classifies `e`, for a decoder that only
/// lends out the errors it met.
pub fn copy_error(e: &io::Error) -> io::Error {
    let source_failure = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<SourceFailure>());
    match source_failure {
        Some(failure) => io::Error::new(
            e.kind(),
            SourceFailure(io::Error::new(failure.0.kind(), failure.0.to_string())),
        ),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The [`DiffError`] for an error met while reading the layer: the source's own failure is
/// [`DiffError::Read`], the cap is [`DiffError::TooLarge`], anything else (a corrupt
/// compressed stream, a truncated archive) is [`DiffError::InvalidArchive`].
pub fn read_error(e: io::Error) -> DiffError {
    let Some(inner) = e.get_ref() else {
        return corrupt(e);
    };
    if let Some(limit) = inner.downcast_ref::<LimitExceeded>().map(|l| l.limit) {
        return DiffError::TooLarge { limit };
    }
    if !inner.is::<SourceFailure>() {
        return corrupt(e);
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<SourceFailure>())
    {
        Some(Ok(source)) => DiffError::Read(source.0),
        _ => DiffError::Read(io::Error::other("layer read failed")),
    }
}

fn corrupt(e: io::Error) -> DiffError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        DiffError::InvalidArchive("unexpected EOF".into())
    } else {
        DiffError::InvalidArchive(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
    }

    #[test]
    fn hashes_and_counts_every_byte() {
        let mut d = Digester::new(&b"abc"[..], 10);
        assert_eq!(d.drain().unwrap(), 3);
        assert_eq!(d.size(), 3);
        // sha256("abc")
        assert_eq!(
            d.digest().unwrap(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Digester::new(&b""[..], 0).digest().unwrap(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Past the thread's batch size, in uneven reads: the same digest as one pass.
        let big: Vec<u8> = (0..3 * super::HASH_BATCH + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut d = Digester::new(std::io::BufReader::with_capacity(4093, &big[..]), u64::MAX);
        assert_eq!(d.drain().unwrap(), big.len() as u64);
        let want: String = Sha256::digest(&big)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(d.digest().unwrap(), format!("sha256:{want}"));
    }

    #[test]
    fn the_cap_stops_reading() {
        let data = [7u8; 100];
        let mut d = Digester::new(&data[..], 99);
        let e = d.drain().unwrap_err();
        assert!(matches!(read_error(e), DiffError::TooLarge { limit: 99 }));
        let mut exact = Digester::new(&data[..], 100);
        assert_eq!(exact.drain().unwrap(), 100);
    }

    #[test]
    fn errors_are_told_apart() {
        let mut source = Source(Failing);
        let e = source.read(&mut [0u8; 4]).unwrap_err();
        match read_error(e) {
            DiffError::Read(inner) => assert_eq!(inner.raw_os_error(), Some(libc::EIO)),
            other => panic!("{other:?}"),
        }
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "short");
        assert_eq!(
            read_error(eof).to_string(),
            "invalid archive: unexpected EOF: invalid argument"
        );
        let corrupt = io::Error::new(io::ErrorKind::InvalidInput, "corrupt deflate stream");
        assert!(matches!(read_error(corrupt), DiffError::InvalidArchive(_)));
    }

    #[test]
    fn copies_keep_the_classification() {
        let mut source = Source(Failing);
        let e = source.read(&mut [0u8; 4]).unwrap_err();
        assert!(matches!(read_error(copy_error(&e)), DiffError::Read(_)));
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "short");
        assert!(matches!(
            read_error(copy_error(&eof)),
            DiffError::InvalidArchive(_)
        ));
    }

    #[test]
    fn source_errors_survive_the_gzip_decoder() {
        // A gzip header, then the source fails.
        struct HeaderThenFail(usize);
        impl Read for HeaderThenFail {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
                if self.0 < HEADER.len() {
                    let n = (HEADER.len() - self.0).min(buf.len());
                    buf[..n].copy_from_slice(&HEADER[self.0..self.0 + n]);
                    self.0 += n;
                    return Ok(n);
                }
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
        }
        let mut gz = flate2::read::MultiGzDecoder::new(Source(HeaderThenFail(0)));
        let e = gz.read(&mut [0u8; 16]).unwrap_err();
        assert!(matches!(read_error(e), DiffError::Read(_)));
    }
}
