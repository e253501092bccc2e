//! Reading a committed blob (containerd's `content.ReaderAt`): positioned reads for the
//! streaming `Read` RPC, and `Read + Seek` for everything else.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// An open blob. Positioned reads ([`read_at`](Self::read_at)) share no state, so one
/// reader may serve several ranges; [`Read`] and [`Seek`] move a cursor of its own.
#[derive(Debug)]
pub struct BlobReader {
    file: File,
    size: u64,
    position: u64,
}

impl BlobReader {
    pub(crate) fn new(file: File, size: u64) -> Self {
        BlobReader {
            file,
            size,
            position: 0,
        }
    }

    /// The blob's size when it was opened (blobs never change once committed).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads up to `buf.len()` bytes at `offset`; 0 at or past the end.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Up to `len` bytes from `offset` (fewer at the end of the blob, none past it): one chunk
    /// of a `Read` RPC's stream.
    pub fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(len);
        let mut buf = vec![0; len];
        let mut filled = 0;
        while filled < len {
            let n = self.read_at(&mut buf[filled..], offset + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )
        })?;
        self.position = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(data: &[u8]) -> (tempfile::NamedTempFile, BlobReader) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, data).unwrap();
        let r = BlobReader::new(File::open(f.path()).unwrap(), data.len() as u64);
        (f, r)
    }

    #[test]
    fn positioned_and_streamed_reads() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let (_f, mut r) = reader(&data);
        assert_eq!(r.size(), 10_000);
        assert_eq!(r.read_range(0, 10).unwrap(), &data[..10]);
        assert_eq!(r.read_range(9_995, 100).unwrap(), &data[9_995..]);
        assert!(r.read_range(10_000, 5).unwrap().is_empty());
        assert!(r.read_range(u64::MAX, 5).unwrap().is_empty());
        let mut buf = [0u8; 4];
        assert_eq!(r.read_at(&mut buf, 300).unwrap(), 4);
        assert_eq!(buf, [44, 45, 46, 47]);

        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        assert_eq!(r.seek(SeekFrom::End(-3)).unwrap(), 9_997);
        let mut tail = Vec::new();
        r.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, &data[9_997..]);
        assert_eq!(r.seek(SeekFrom::Start(1)).unwrap(), 1);
        assert_eq!(r.seek(SeekFrom::Current(2)).unwrap(), 3);
        let mut one = [0u8; 1];
        r.read_exact(&mut one).unwrap();
        assert_eq!(one[0], 3);
        assert!(r.seek(SeekFrom::Current(-10)).is_err());
        assert_eq!(r.seek(SeekFrom::End(5)).unwrap(), 10_005);
        assert_eq!(r.read(&mut one).unwrap(), 0);
    }
}
