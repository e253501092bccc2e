//! Finding a layer's compression by its magic bytes and undoing it (containerd's
//! `archive/compression.DecompressStream`): gzip, zstd or none.

use std::io::{self, BufRead, Cursor, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use super::error::{DiffError, DiffResult};
use super::stream::{copy_error, read_error};

/// The compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Zstd,
}

impl Compression {
    /// The file extension containerd names it by (`gz`, `zst`, none).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => "gz",
            Compression::Zstd => "zst",
        }
    }
}

/// How many bytes containerd peeks at to decide.
const PEEK: usize = 10;
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Zstandard skippable frames use the magic numbers 0x184D2A50 to 0x184D2A5F.
const ZSTD_SKIPPABLE_START: u32 = 0x184d_2a50;
const ZSTD_SKIPPABLE_MASK: u32 = 0xffff_fff0;

/// The compression whose magic number `prefix` starts with; anything else (including a
/// stream too short to tell) is uncompressed.
pub fn detect(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&GZIP_MAGIC) {
        return Compression::Gzip;
    }
    if prefix.starts_with(&ZSTD_MAGIC) {
        return Compression::Zstd;
    }
    // A skippable frame is only recognised with its 4-byte size after the magic.
    if prefix.len() >= 8 {
        let magic = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if magic & ZSTD_SKIPPABLE_MASK == ZSTD_SKIPPABLE_START {
            return Compression::Zstd;
        }
    }
    Compression::Uncompressed
}

/// What [`decompress_stream`] gives back: the detected compression and the uncompressed
/// stream.
pub struct Decompressed<'a> {
    pub compression: Compression,
    pub reader: Box<dyn Read + 'a>,
}

/// Peeks at the start of `stream` and returns a reader of its uncompressed bytes. An empty
/// stream is an (empty) uncompressed one, as in containerd.
///
/// Read errors of `stream` travel through unchanged (see [`read_error`]); a corrupt
/// compressed stream reads as an `InvalidData` error.
pub fn decompress_stream<'a, R: BufRead + 'a>(mut stream: R) -> DiffResult<Decompressed<'a>> {
    let mut prefix = Vec::with_capacity(PEEK);
    let mut buf = [0u8; PEEK];
    while prefix.len() < PEEK {
        match stream.read(&mut buf[..PEEK - prefix.len()]) {
            Ok(0) => break,
            Ok(n) => prefix.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        }
    }
    let compression = detect(&prefix);
    let whole = Cursor::new(prefix).chain(stream);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::Uncompressed => Box::new(whole),
        // Like Go's gzip reader, read every member of a multi-member stream.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(whole)),
        Compression::Zstd => Box::new(ZstdFrames::new(whole)?),
    };
    Ok(Decompressed {
        compression,
        reader,
    })
}

/// A minimal zstd frame (1 KiB window, one empty last block). Decoding it first makes the
/// decoder check the window of every later frame against its 100 MiB limit: ruzstd checks it
/// only when a decoder is reused, and a first frame declaring a huge window would otherwise
/// let the decoder keep that much output in memory.
const PRIMER_FRAME: [u8; 9] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x01, 0x00, 0x00];

/// Every frame of a zstd stream, one after the other, skippable frames skipped and content
/// checksums verified (as Go's zstd reader does).
struct ZstdFrames<R> {
    source: R,
    decoder: FrameDecoder,
    /// A frame is being decoded (its header was read).
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> DiffResult<Self> {
        let mut decoder = FrameDecoder::new();
        decoder
            .init(&PRIMER_FRAME[..])
            .map_err(|e| DiffError::InvalidArchive(format!("zstd: {e}")))?;
        Ok(ZstdFrames {
            source,
            decoder,
            in_frame: false,
        })
    }

    /// Reads the next frame header; false at the end of the stream.
    fn start_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let want = u64::from(length);
                    let skipped = io::copy(&mut (&mut self.source).take(want), &mut io::sink())?;
                    if skipped < want {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(e) => return Err(zstd_error(e)),
            }
        }
    }

    /// The frame is over: its checksum, when it has one, must match what was decoded.
    fn end_frame(&mut self) -> io::Result<()> {
        self.in_frame = false;
        match (
            self.decoder.get_checksum_from_data(),
            self.decoder.get_calculated_checksum(),
        ) {
            (Some(stored), Some(computed)) if stored != computed => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "zstd: frame checksum mismatch",
            )),
            _ => Ok(()),
        }
    }
}

/// A ruzstd error as an `io::Error`: a failed read of the source (wrapped inside ruzstd's
/// error) is passed on as such, anything else is corrupt data.
fn zstd_error(e: FrameDecoderError) -> io::Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return copy_error(io);
        }
        cause = c.source();
    }
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if !self.start_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let wanted = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(zstd_error)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                self.end_frame()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all(stream: &[u8]) -> (Compression, Vec<u8>) {
        let d = decompress_stream(stream).unwrap();
        let mut out = Vec::new();
        let mut reader = d.reader;
        reader.read_to_end(&mut out).unwrap();
        (d.compression, out)
    }

    #[test]
    fn detects_by_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x1f, 0x8b]), Compression::Uncompressed);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 1]), Compression::Zstd);
        assert_eq!(
            detect(&[0x5a, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]),
            Compression::Zstd
        );
        assert_eq!(detect(&[0x5a, 0x2a, 0x4d, 0x18]), Compression::Uncompressed);
        assert_eq!(detect(b"ustar"), Compression::Uncompressed);
        assert_eq!(detect(b""), Compression::Uncompressed);
    }

    #[test]
    fn plain_and_empty_streams_pass_through() {
        assert_eq!(
            read_all(b"hello, world"),
            (Compression::Uncompressed, b"hello, world".to_vec())
        );
        assert_eq!(
            read_all(b"abc"),
            (Compression::Uncompressed, b"abc".to_vec())
        );
        assert_eq!(read_all(b""), (Compression::Uncompressed, Vec::new()));
    }

    #[test]
    fn gzip_members_are_all_read() {
        let mut stream = gzip(b"first ");
        stream.extend(gzip(b"second"));
        assert_eq!(
            read_all(&stream),
            (Compression::Gzip, b"first second".to_vec())
        );
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn zstd_frames_are_all_read_and_skippable_frames_skipped() {
        let mut stream = zstd(b"first ");
        // A skippable frame: magic 0x184D2A53, length 3, payload.
        stream.extend_from_slice(&[0x53, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, b'x', b'y', b'z']);
        stream.extend(zstd(&b"second ".repeat(1000)));
        let (compression, out) = read_all(&stream);
        assert_eq!(compression, Compression::Zstd);
        assert_eq!(out, [&b"first "[..], &b"second ".repeat(1000)].concat());
        // A stream that starts with a skippable frame is zstd too.
        let mut skippable_first = vec![0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0];
        skippable_first.extend(zstd(b"data"));
        assert_eq!(
            read_all(&skippable_first),
            (Compression::Zstd, b"data".to_vec())
        );
    }

    #[test]
    fn corrupt_zstd_is_an_error() {
        let mut stream = zstd(&b"payload".repeat(100));
        // The last four bytes are the content checksum.
        let last = stream.len() - 1;
        stream[last] ^= 0xff;
        let mut reader = decompress_stream(&stream[..]).unwrap().reader;
        let e = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");

        let mut truncated = zstd(&b"payload".repeat(100));
        truncated.truncate(truncated.len() - 6);
        let mut reader = decompress_stream(&truncated[..]).unwrap().reader;
        assert!(reader.read_to_end(&mut Vec::new()).is_err());

        let mut garbage_after = zstd(b"ok");
        garbage_after.extend_from_slice(b"not a frame");
        let mut reader = decompress_stream(&garbage_after[..]).unwrap().reader;
        assert!(reader.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn zstd_windows_over_the_limit_are_refused() {
        // Frame header: no single segment, window descriptor 0xf0 (log 40: 1 TiB).
        let huge = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xf0, 0x01, 0x00, 0x00];
        let mut reader = decompress_stream(&huge[..]).unwrap().reader;
        let e = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }

    #[test]
    fn a_short_first_read_still_peeks_ten_bytes() {
        // A reader that hands out one byte at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let data = gzip(b"payload");
        let d = decompress_stream(io::BufReader::new(Trickle(&data))).unwrap();
        assert_eq!(d.compression, Compression::Gzip);
        let mut out = String::new();
        let mut reader = d.reader;
        reader.read_to_string(&mut out).unwrap();
        assert_eq!(out, "payload");
    }
}
